//! Publishing one message with a publisher confirm: the only way callsync
//! hands a message to the broker (ingest accepting a webhook, the worker
//! moving a message to a retry or parking queue, an operator replaying a
//! parked one).
//!
//! A message counts as handed over only when the broker acknowledged it
//! *and* routed it: it is published `mandatory`, so an exchange with no
//! matching queue returns it instead of confirming and dropping it. Every
//! other answer — a nack, a returned message, no answer within the
//! deadline, a broken channel — is an error, and the caller must keep its
//! own copy (not answer the webhook 2xx, not acknowledge the original).

use std::time::Duration;

use lapin::options::BasicPublishOptions;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation};
use time::OffsetDateTime;

use crate::report::CallId;
use crate::sources::Source;
use crate::time::unix_ms;
use crate::topology::headers;

/// Why the broker did not take a message. Every variant means "not taken".
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("broker did not confirm within {0:?}")]
    ConfirmTimeout(Duration),
    #[error("broker refused the message (nack)")]
    Nacked,
    #[error("broker could not route the message ({0})")]
    Unroutable(String),
    #[error("broker channel error")]
    Channel(#[from] lapin::Error),
}

impl PublishError {
    /// True when the channel itself is suspect (no answer, or an error on
    /// it) and should be replaced rather than used again. A nack or a
    /// returned message is an answer: the channel is fine.
    pub fn channel_is_broken(&self) -> bool {
        matches!(self, Self::ConfirmTimeout(_) | Self::Channel(_))
    }
}

/// Where a message goes: an exchange and a routing key.
#[derive(Debug, Clone, Copy)]
pub struct Destination<'a> {
    pub exchange: &'a str,
    pub routing_key: &'a str,
}

/// Publishes `body` to `to` on `channel` (which must be in confirm mode)
/// and waits at most `timeout` for the broker's confirm.
pub async fn publish_confirmed(
    channel: &Channel,
    to: Destination<'_>,
    body: &[u8],
    properties: BasicProperties,
    timeout: Duration,
) -> Result<(), PublishError> {
    let confirmation = tokio::time::timeout(timeout, async {
        channel
            .basic_publish(
                to.exchange.into(),
                to.routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                body,
                properties,
            )
            .await?
            .await
    })
    .await
    .map_err(|_| PublishError::ConfirmTimeout(timeout))??;
    interpret(confirmation)
}

/// The properties of a call report on the calls queue: what the worker
/// reads (source, receipt time) and what operators' tooling shows (call id,
/// who published it, what ingest verified: `verified_by`). Ingest and the reconciler publish through this one
/// function, so that a report found by polling a platform is the same
/// message as one that came by webhook.
pub fn report_properties(
    source: Source,
    call_id: &CallId,
    message_id: &str,
    received_at: OffsetDateTime,
    app_id: &str,
    verified_by: Option<&str>,
) -> BasicProperties {
    let mut table = FieldTable::default();
    headers::set_text(&mut table, headers::SOURCE, source.as_str());
    headers::set_int(&mut table, headers::RECEIVED_AT, unix_ms(received_at));
    if let Some(verified_by) = verified_by {
        headers::set_text(&mut table, headers::VERIFIED_BY, verified_by);
    }
    headers::set_text(&mut table, headers::CALL_ID, call_id.as_str());
    BasicProperties::default()
        // Persistent: the message survives a broker restart once confirmed.
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(message_id.into())
        .with_timestamp(u64::try_from(received_at.unix_timestamp()).unwrap_or(0))
        .with_app_id(app_id.into())
        .with_headers(table)
}

/// What a confirmation means for the message.
fn interpret(confirmation: Confirmation) -> Result<(), PublishError> {
    match confirmation {
        Confirmation::Ack(None) => Ok(()),
        // A returned message is confirmed (acked) by the broker after it
        // was returned: routed nowhere, so not taken.
        Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
            Err(PublishError::Unroutable(returned.reply_text.to_string()))
        }
        Confirmation::Nack(None) => Err(PublishError::Nacked),
        // Only possible on a channel not in confirm mode, which every
        // caller sets up first; without a confirm nothing is proven.
        Confirmation::NotRequested => Err(PublishError::Nacked),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_plain_ack_means_the_broker_took_the_message() {
        assert!(interpret(Confirmation::Ack(None)).is_ok());
        assert!(matches!(
            interpret(Confirmation::Nack(None)),
            Err(PublishError::Nacked)
        ));
        assert!(matches!(
            interpret(Confirmation::NotRequested),
            Err(PublishError::Nacked)
        ));
    }

    #[test]
    fn an_answer_from_the_broker_leaves_the_channel_usable_and_silence_does_not() {
        assert!(!PublishError::Nacked.channel_is_broken());
        assert!(!PublishError::Unroutable("NO_ROUTE".into()).channel_is_broken());
        assert!(PublishError::ConfirmTimeout(Duration::from_secs(1)).channel_is_broken());
    }
}
