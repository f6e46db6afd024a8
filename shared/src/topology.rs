//! The RabbitMQ topology, declared from this one place by both services.
//!
//! ```text
//!  ingest ──publish──▶ [callsync] ──call.report──▶ (callsync.calls) ──▶ worker
//!                          ▲                            │ delivery limit
//!                          │ TTL expired                ▼ (broker dead-letter)
//!  worker ──retry──▶ [callsync.retry] ──<tier>──▶ (callsync.retry.<tier>)
//!  worker ──park───▶ [callsync.parked] ────────▶ (callsync.parked) ◀── operator: dlq
//! ```
//!
//! Declarations are idempotent: each service declares what it publishes to or
//! consumes from at every (re)connect, so the start-up order does not matter and
//! a broker that lost its definitions gets them back. Queue arguments are
//! constants because RabbitMQ refuses a re-declaration whose arguments differ
//! (`PRECONDITION_FAILED`): both services must always agree.

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

use crate::config::format_duration;

/// The default prefix of every exchange and queue name.
pub const DEFAULT_PREFIX: &str = "callsync";

/// The routing key of call reports on the main exchange.
pub const CALL_REPORT_KEY: &str = "call.report";

/// How often the broker redelivers one message before dead-lettering it to the
/// parking queue. Normal retries go through the delay queues and are new
/// messages; this limit only stops a message that crashes its consumer (or is
/// requeued during shutdowns) from circulating forever.
pub const DELIVERY_LIMIT: i64 = 20;

/// The default retry delays, one delay queue each.
pub const DEFAULT_RETRY_DELAYS: [Duration; 5] = [
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
    Duration::from_secs(3_600),
];

/// Message headers callsync reads and writes.
pub mod headers {
    /// The webhook source (`voicedock`, `postcall`), set by ingest.
    pub const SOURCE: &str = "source";
    /// When ingest received the webhook, Unix milliseconds, set by ingest.
    pub const RECEIVED_AT: &str = "received_at";
    /// What ingest checked before it took the webhook (each configured
    /// credential's scheme and variable), for operators' tooling; absent
    /// on a report the reconciler found in a platform's call list.
    pub const VERIFIED_BY: &str = "verified_by";
    /// The provider's call id, set by ingest for operators' tooling.
    pub const CALL_ID: &str = "call_id";
    /// How many processing attempts failed so far.
    pub const ATTEMPTS: &str = "x-callsync-attempts";
    /// Why a message was parked.
    pub const REASON: &str = "x-callsync-reason";
    /// The first and the last transient error of a retried message.
    pub const FIRST_ERROR: &str = "x-callsync-first-error";
    pub const LAST_ERROR: &str = "x-callsync-last-error";
    /// When the message was parked, Unix milliseconds.
    pub const PARKED_AT: &str = "x-callsync-parked-at";

    use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

    /// A header's text, whichever string type the publisher used.
    pub fn text(table: Option<&FieldTable>, key: &str) -> Option<String> {
        match table?.inner().get(key)? {
            AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
            AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
            _ => None,
        }
    }

    /// A header's integer value, whichever integer type the publisher used.
    pub fn int(table: Option<&FieldTable>, key: &str) -> Option<i64> {
        match table?.inner().get(key)? {
            AMQPValue::ShortShortInt(n) => Some(i64::from(*n)),
            AMQPValue::ShortShortUInt(n) => Some(i64::from(*n)),
            AMQPValue::ShortInt(n) => Some(i64::from(*n)),
            AMQPValue::ShortUInt(n) => Some(i64::from(*n)),
            AMQPValue::LongInt(n) => Some(i64::from(*n)),
            AMQPValue::LongUInt(n) => Some(i64::from(*n)),
            AMQPValue::LongLongInt(n) => Some(*n),
            AMQPValue::Timestamp(n) => i64::try_from(*n).ok(),
            _ => None,
        }
    }

    /// Sets a text header.
    pub fn set_text(table: &mut FieldTable, key: &str, value: &str) {
        table.insert(
            ShortString::from(key),
            AMQPValue::LongString(LongString::from(value)),
        );
    }

    /// Sets an integer header.
    pub fn set_int(table: &mut FieldTable, key: &str, value: i64) {
        table.insert(ShortString::from(key), AMQPValue::LongLongInt(value));
    }
}

/// Exchange and queue names under one prefix. Tests use a unique prefix per
/// test so that they can share one broker and run in parallel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    prefix: String,
}

impl Default for Topology {
    fn default() -> Self {
        Self::new(DEFAULT_PREFIX)
    }
}

impl Topology {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The direct exchange ingest publishes call reports to.
    pub fn exchange(&self) -> String {
        self.prefix.clone()
    }

    /// The quorum queue workers consume.
    pub fn calls_queue(&self) -> String {
        format!("{}.calls", self.prefix)
    }

    /// The direct exchange of the delay queues, one routing key per tier.
    pub fn retry_exchange(&self) -> String {
        format!("{}.retry", self.prefix)
    }

    /// The delay queue of one tier, named by its delay (`callsync.retry.30s`)
    /// so that changing the tiers creates new queues instead of conflicting
    /// with the arguments of existing ones.
    pub fn retry_queue(&self, delay: Duration) -> String {
        format!("{}.retry.{}", self.prefix, format_duration(delay))
    }

    /// The routing key of one tier on the retry exchange.
    pub fn retry_key(delay: Duration) -> String {
        format_duration(delay)
    }

    /// The fanout exchange that parks messages (also the dead-letter exchange
    /// of the calls queue).
    pub fn parking_exchange(&self) -> String {
        format!("{}.parked", self.prefix)
    }

    /// The queue holding parked messages until an operator replays or purges them.
    pub fn parking_queue(&self) -> String {
        format!("{}.parked", self.prefix)
    }

    /// Declares what both services need: the main exchange, the calls queue
    /// and the parking exchange and queue. Ingest calls this so that a report
    /// published before any worker started is routed, not returned.
    pub async fn declare_core(&self, channel: &Channel) -> Result<(), lapin::Error> {
        exchange(channel, &self.exchange(), ExchangeKind::Direct).await?;
        exchange(channel, &self.parking_exchange(), ExchangeKind::Fanout).await?;

        let mut parked = quorum_args();
        insert(&mut parked, "x-overflow", "reject-publish");
        queue(channel, &self.parking_queue(), parked).await?;
        bind(channel, &self.parking_queue(), &self.parking_exchange(), "").await?;

        let mut calls = quorum_args();
        calls.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(DELIVERY_LIMIT),
        );
        insert(
            &mut calls,
            "x-dead-letter-exchange",
            &self.parking_exchange(),
        );
        // At-least-once dead-lettering keeps a message in the source queue until
        // the parking queue confirmed it: the broker's own dead-lettering loses nothing.
        insert(&mut calls, "x-dead-letter-strategy", "at-least-once");
        insert(&mut calls, "x-overflow", "reject-publish");
        queue(channel, &self.calls_queue(), calls).await?;
        bind(
            channel,
            &self.calls_queue(),
            &self.exchange(),
            CALL_REPORT_KEY,
        )
        .await
    }

    /// Declares the delay queues: each holds messages for its delay, then the
    /// broker dead-letters them back onto the main exchange. A waiting message
    /// therefore holds no consumer slot and survives a worker crash.
    pub async fn declare_retry_tiers(
        &self,
        channel: &Channel,
        delays: &[Duration],
    ) -> Result<(), lapin::Error> {
        exchange(channel, &self.retry_exchange(), ExchangeKind::Direct).await?;
        for delay in delays {
            let mut args = quorum_args();
            let ttl_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
            args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl_ms));
            insert(&mut args, "x-dead-letter-exchange", &self.exchange());
            insert(&mut args, "x-dead-letter-routing-key", CALL_REPORT_KEY);
            insert(&mut args, "x-dead-letter-strategy", "at-least-once");
            insert(&mut args, "x-overflow", "reject-publish");
            let name = self.retry_queue(*delay);
            queue(channel, &name, args).await?;
            bind(
                channel,
                &name,
                &self.retry_exchange(),
                &Self::retry_key(*delay),
            )
            .await?;
        }
        Ok(())
    }
}

fn quorum_args() -> FieldTable {
    let mut args = FieldTable::default();
    // Quorum queues replicate across a cluster and, unlike classic mirrored
    // queues, keep confirmed messages through a node failure.
    insert(&mut args, "x-queue-type", "quorum");
    args
}

fn insert(args: &mut FieldTable, key: &str, value: &str) {
    args.insert(
        ShortString::from(key),
        AMQPValue::LongString(LongString::from(value)),
    );
}

async fn exchange(channel: &Channel, name: &str, kind: ExchangeKind) -> Result<(), lapin::Error> {
    channel
        .exchange_declare(
            name.into(),
            kind,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
}

async fn queue(channel: &Channel, name: &str, args: FieldTable) -> Result<(), lapin::Error> {
    channel
        .queue_declare(
            name.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            args,
        )
        .await
        .map(drop)
}

async fn bind(
    channel: &Channel,
    queue: &str,
    exchange: &str,
    key: &str,
) -> Result<(), lapin::Error> {
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_derived_from_one_prefix() {
        let t = Topology::default();
        assert_eq!(t.exchange(), "callsync");
        assert_eq!(t.calls_queue(), "callsync.calls");
        assert_eq!(t.retry_queue(Duration::from_secs(120)), "callsync.retry.2m");
        assert_eq!(t.parking_queue(), "callsync.parked");
        assert_eq!(Topology::retry_key(Duration::from_secs(3_600)), "1h");
    }
}
