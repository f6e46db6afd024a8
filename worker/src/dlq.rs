//! Parked messages, for operators: list, show, replay, purge.
//!
//! AMQP has no "browse": messages are taken with `basic.get` and kept
//! unacknowledged while the command runs, so the queue is never left
//! without them; what is not replayed or purged is returned with
//! `basic.nack(requeue)` (or by the broker if the command dies). Replaying
//! publishes a fresh copy to the work exchange with confirms and only then
//! acknowledges the parked one, so a crash in between duplicates rather than
//! loses (and the ledger absorbs the duplicate).

use std::time::Duration;

use callsync_shared::broker;
use callsync_shared::publish::{Destination, PublishError, publish_confirmed};
use callsync_shared::time::from_unix_ms;
use callsync_shared::topology::{CALL_REPORT_KEY, Topology, headers};
use lapin::message::BasicGetMessage;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};
use time::OffsetDateTime;

/// How long a replayed copy may wait for the broker's confirm: a broker
/// that stopped answering fails the replay instead of hanging it.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of the parked-message commands.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error("broker error")]
    Broker(#[from] lapin::Error),
    #[error("the broker did not take the replayed copy of {id}; it stays parked")]
    NotConfirmed { id: String, source: PublishError },
}

/// One parked message as an operator sees it.
#[derive(Debug, Clone)]
pub struct Parked {
    /// The message id ingest gave the report (also in its 202 answer).
    pub id: String,
    pub source: String,
    pub call_id: String,
    pub reason: String,
    pub attempts: i64,
    pub parked_at: Option<OffsetDateTime>,
    pub first_error: Option<String>,
    pub last_error: Option<String>,
    pub body: Vec<u8>,
}

impl Parked {
    fn of(message: &BasicGetMessage) -> Self {
        let properties = &message.delivery.properties;
        let table = properties.headers().as_ref();
        let text = |key| headers::text(table, key).unwrap_or_default();
        let parked_ms = headers::int(table, headers::PARKED_AT);
        // Messages dead-lettered by the broker (delivery limit) carry no
        // callsync reason; RabbitMQ records its own.
        let reason = headers::text(table, headers::REASON)
            .or_else(|| {
                headers::text(table, "x-first-death-reason")
                    .map(|r| format!("dead-lettered by the broker: {r}"))
            })
            .unwrap_or_else(|| "unknown".to_owned());
        Self {
            id: properties
                .message_id()
                .as_ref()
                .map(|id| id.to_string())
                .unwrap_or_else(|| format!("tag-{}", message.delivery.delivery_tag)),
            source: text(headers::SOURCE),
            call_id: text(headers::CALL_ID),
            reason,
            attempts: headers::int(table, headers::ATTEMPTS).unwrap_or(0),
            parked_at: parked_ms.and_then(from_unix_ms),
            first_error: headers::text(table, headers::FIRST_ERROR),
            last_error: headers::text(table, headers::LAST_ERROR),
            body: message.delivery.data.clone(),
        }
    }

    /// How long it has been parked, when known.
    pub fn age(&self, now: OffsetDateTime) -> Option<Duration> {
        self.parked_at
            .and_then(|at| Duration::try_from(now - at).ok())
    }
}

/// Which parked messages a command applies to.
#[derive(Debug, Clone)]
pub enum Selection {
    All,
    /// Message ids or call ids.
    Ids(Vec<String>),
    /// Every message parked for exactly this reason.
    Reason(String),
}

impl Selection {
    fn contains(&self, parked: &Parked) -> bool {
        match self {
            Selection::All => true,
            Selection::Ids(ids) => ids
                .iter()
                .any(|id| *id == parked.id || *id == parked.call_id),
            Selection::Reason(reason) => *reason == parked.reason,
        }
    }
}

/// A connection to the broker for parked-message commands.
#[derive(Debug)]
pub struct Dlq {
    connection: Connection,
    channel: Channel,
    topology: Topology,
}

/// Messages taken from the parking queue, not yet settled.
struct Held {
    message: BasicGetMessage,
    parked: Parked,
}

impl Dlq {
    pub async fn connect(url: &str, topology: Topology) -> Result<Self, DlqError> {
        let connection = broker::connect(url, "callsync-worker-dlq").await?;
        let channel = broker::confirm_channel(&connection, &topology).await?;
        Ok(Self {
            connection,
            channel,
            topology,
        })
    }

    /// Messages in a queue of the topology, without consuming them.
    pub async fn depth(&self, queue: &str) -> Result<Option<u32>, DlqError> {
        // A passive declare of a missing queue closes the channel: use a
        // throwaway one.
        let channel = self.connection.create_channel().await?;
        let result = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await;
        let _ = channel.close(200, "done".into()).await;
        Ok(result.ok().map(|q| q.message_count()))
    }

    async fn take_all(&self, limit: usize) -> Result<Vec<Held>, DlqError> {
        let mut held = Vec::new();
        while held.len() < limit {
            let Some(message) = self
                .channel
                .basic_get(
                    self.topology.parking_queue().as_str().into(),
                    BasicGetOptions { no_ack: false },
                )
                .await?
            else {
                break;
            };
            let parked = Parked::of(&message);
            held.push(Held { message, parked });
        }
        Ok(held)
    }

    async fn put_back(held: Vec<Held>) {
        for h in held {
            let _ = h
                .message
                .delivery
                .nack(BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                })
                .await;
        }
    }

    /// Up to `limit` parked messages, oldest first; they stay parked.
    pub async fn list(&self, limit: usize) -> Result<Vec<Parked>, DlqError> {
        let held = self.take_all(limit).await?;
        let list = held.iter().map(|h| h.parked.clone()).collect();
        Self::put_back(held).await;
        Ok(list)
    }

    /// One parked message by message id or call id.
    pub async fn show(&self, id: &str) -> Result<Option<Parked>, DlqError> {
        let held = self.take_all(usize::MAX).await?;
        let found = held
            .iter()
            .find(|h| h.parked.id == id || h.parked.call_id == id)
            .map(|h| h.parked.clone());
        Self::put_back(held).await;
        Ok(found)
    }

    /// Republishes the selected messages to the work queue, then removes
    /// them from the parking queue. Returns the replayed messages.
    pub async fn replay(&self, selection: &Selection) -> Result<Vec<Parked>, DlqError> {
        let held = self.take_all(usize::MAX).await?;
        let (chosen, rest): (Vec<_>, Vec<_>) = held
            .into_iter()
            .partition(|h| selection.contains(&h.parked));
        Self::put_back(rest).await;
        let mut replayed = Vec::new();
        let mut chosen = chosen.into_iter();
        while let Some(h) = chosen.next() {
            if let Err(e) = self.republish(&h.message).await {
                Self::put_back(std::iter::once(h).chain(chosen).collect()).await;
                return Err(e);
            }
            h.message.delivery.ack(BasicAckOptions::default()).await?;
            replayed.push(h.parked);
        }
        Ok(replayed)
    }

    async fn republish(&self, message: &BasicGetMessage) -> Result<(), DlqError> {
        publish_confirmed(
            &self.channel,
            Destination {
                exchange: self.topology.exchange().as_str(),
                routing_key: CALL_REPORT_KEY,
            },
            &message.delivery.data,
            fresh_start(&message.delivery.properties),
            CONFIRM_TIMEOUT,
        )
        .await
        .map_err(|source| DlqError::NotConfirmed {
            id: Parked::of(message).id,
            source,
        })
    }

    /// Deletes parked messages parked longer ago than `age`; returns them.
    pub async fn purge_older_than(&self, age: Duration) -> Result<Vec<Parked>, DlqError> {
        let now = OffsetDateTime::now_utc();
        let held = self.take_all(usize::MAX).await?;
        let (old, rest): (Vec<_>, Vec<_>) = held
            .into_iter()
            .partition(|h| h.parked.age(now).is_some_and(|a| a > age));
        Self::put_back(rest).await;
        let mut purged = Vec::new();
        for h in old {
            h.message.delivery.ack(BasicAckOptions::default()).await?;
            purged.push(h.parked);
        }
        Ok(purged)
    }

    /// Deletes the selected parked messages; returns them.
    pub async fn purge(&self, selection: &Selection) -> Result<Vec<Parked>, DlqError> {
        let held = self.take_all(usize::MAX).await?;
        let (chosen, rest): (Vec<_>, Vec<_>) = held
            .into_iter()
            .partition(|h| selection.contains(&h.parked));
        Self::put_back(rest).await;
        let mut purged = Vec::new();
        for h in chosen {
            h.message.delivery.ack(BasicAckOptions::default()).await?;
            purged.push(h.parked);
        }
        Ok(purged)
    }

    /// Closes the channel, then the connection (see `broker::close_channel`).
    pub async fn close(self) {
        broker::close_channel(&self.channel, "done").await;
        broker::close(&self.connection, "done").await;
    }
}

/// The parked message's properties with its failure history cleared, so a
/// replayed call gets every retry again.
fn fresh_start(properties: &BasicProperties) -> BasicProperties {
    let mut table = FieldTable::default();
    if let Some(original) = properties.headers() {
        for (key, value) in original.inner() {
            let k = key.as_str();
            if !k.starts_with("x-callsync-")
                && !k.starts_with("x-death")
                && !k.starts_with("x-first-death")
                && !k.starts_with("x-last-death")
            {
                table.insert(key.clone(), value.clone());
            }
        }
    }
    properties.clone().with_headers(table).with_delivery_mode(2)
}

/// `3d4h`, `12m`, `40s`.
pub fn format_age(age: Duration) -> String {
    let s = age.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3_599 => format!("{}m{}s", s / 60, s % 60),
        3_600..=86_399 => format!("{}h{}m", s / 3_600, (s % 3_600) / 60),
        _ => format!("{}d{}h", s / 86_400, (s % 86_400) / 3_600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_short_and_readable() {
        assert_eq!(format_age(Duration::from_secs(42)), "42s");
        assert_eq!(format_age(Duration::from_secs(3 * 60 + 5)), "3m5s");
        assert_eq!(format_age(Duration::from_secs(2 * 3_600 + 120)), "2h2m");
        assert_eq!(
            format_age(Duration::from_secs(3 * 86_400 + 4 * 3_600)),
            "3d4h"
        );
    }

    #[test]
    fn a_replay_starts_the_failure_history_afresh() {
        let mut table = FieldTable::default();
        headers::set_text(&mut table, headers::SOURCE, "voicedock");
        headers::set_int(&mut table, headers::ATTEMPTS, 6);
        headers::set_text(&mut table, headers::REASON, "gave up");
        headers::set_text(&mut table, "x-first-death-reason", "delivery_limit");
        let fresh = fresh_start(&BasicProperties::default().with_headers(table));
        let t = fresh.headers().as_ref();
        assert_eq!(
            headers::text(t, headers::SOURCE).as_deref(),
            Some("voicedock")
        );
        assert_eq!(headers::int(t, headers::ATTEMPTS), None);
        assert_eq!(headers::text(t, headers::REASON), None);
        assert_eq!(headers::text(t, "x-first-death-reason"), None);
    }
}
