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
use lapin::{BasicProperties, Channel, Confirmation};

/// Why the broker did not take a message. Every variant means "not taken".
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("broker did not confirm within {0:?}")]
    ConfirmTimeout(Duration),
    #[error("broker refused the message (nack)")]
    Nacked,
    #[error("broker could not route the message ({0})")]
    Unroutable(String),
    #[error("broker channel error: {0}")]
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
