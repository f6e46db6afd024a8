//! Moving a message on: to a delay queue for a later attempt, or to the
//! parking queue with the reason it cannot be processed.
//!
//! Both publish a copy with confirms *before* the original is acknowledged
//! (an error means the copy is not the broker's, and the original must be
//! returned to the queue, never acknowledged):
//! a crash between the two leaves both copies, and the ledger turns the extra
//! one into a duplicate. The reverse order could lose the call.

use std::time::Duration;

use callsync_shared::publish::{Destination, PublishError, publish_confirmed};
use callsync_shared::topology::{CALL_REPORT_KEY, Topology, headers};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};
use time::OffsetDateTime;

/// Where a failed message goes next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Retry after the delay of tier `index`.
    Delay {
        index: usize,
        delay: Duration,
    },
    Park,
}

/// The retry policy: which tier a message with `attempts` failures goes to.
#[derive(Debug, Clone)]
pub struct RetryTiers {
    delays: Vec<Duration>,
}

impl RetryTiers {
    pub fn new(delays: Vec<Duration>) -> Self {
        Self { delays }
    }

    /// `failed_attempts` counted failures so far (≥ 1 after a counted failure,
    /// 0 for a retry that does not count). After the last tier: park.
    pub fn route(&self, failed_attempts: u32) -> Route {
        let index = failed_attempts.saturating_sub(1) as usize;
        match self.delays.get(index) {
            Some(delay) => Route::Delay {
                index,
                delay: *delay,
            },
            None => Route::Park,
        }
    }
}

/// Publishes retry and parking copies on a confirm-mode channel.
#[derive(Debug, Clone)]
pub struct Republisher {
    channel: Channel,
    topology: Topology,
    confirm_timeout: Duration,
}

/// The failure history carried in a message's headers.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub attempts: u32,
    pub first_error: Option<String>,
}

impl History {
    pub fn of(properties: &BasicProperties) -> Self {
        let table = properties.headers().as_ref();
        Self {
            attempts: headers::int(table, headers::ATTEMPTS)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
            first_error: headers::text(table, headers::FIRST_ERROR),
        }
    }
}

impl Republisher {
    pub fn new(channel: Channel, topology: Topology, confirm_timeout: Duration) -> Self {
        Self {
            channel,
            topology,
            confirm_timeout,
        }
    }

    /// Publishes a copy to the delay queue of `delay`.
    pub async fn delay(
        &self,
        body: &[u8],
        properties: &BasicProperties,
        attempts: u32,
        error: &str,
        delay: Duration,
    ) -> Result<(), PublishError> {
        let props = with_history(properties, attempts, error, None);
        self.publish(
            &self.topology.retry_exchange(),
            &Topology::retry_key(delay),
            body,
            props,
        )
        .await
    }

    /// Publishes an unchanged copy to the calls queue: the message goes
    /// back to work with its history (and attempt count) as it was.
    pub async fn put_back(
        &self,
        body: &[u8],
        properties: &BasicProperties,
    ) -> Result<(), PublishError> {
        self.publish(
            self.topology.exchange().as_str(),
            CALL_REPORT_KEY,
            body,
            properties.clone(),
        )
        .await
    }

    /// Publishes a copy to the parking queue with `reason`.
    pub async fn park(
        &self,
        body: &[u8],
        properties: &BasicProperties,
        attempts: u32,
        reason: &str,
    ) -> Result<(), PublishError> {
        let props = with_history(properties, attempts, reason, Some(reason));
        self.publish(&self.topology.parking_exchange(), "", body, props)
            .await
    }

    async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), PublishError> {
        publish_confirmed(
            &self.channel,
            Destination {
                exchange,
                routing_key,
            },
            body,
            properties,
            self.confirm_timeout,
        )
        .await
    }
}

/// The original properties with the failure history updated.
fn with_history(
    properties: &BasicProperties,
    attempts: u32,
    error: &str,
    park_reason: Option<&str>,
) -> BasicProperties {
    let mut table: FieldTable = properties.headers().clone().unwrap_or_default();
    let error = truncate(error);
    headers::set_int(&mut table, headers::ATTEMPTS, i64::from(attempts));
    if headers::text(Some(&table), headers::FIRST_ERROR).is_none() {
        headers::set_text(&mut table, headers::FIRST_ERROR, &error);
    }
    headers::set_text(&mut table, headers::LAST_ERROR, &error);
    if let Some(reason) = park_reason {
        headers::set_text(&mut table, headers::REASON, &truncate(reason));
        let now_ms = callsync_shared::time::unix_ms(OffsetDateTime::now_utc());
        headers::set_int(&mut table, headers::PARKED_AT, now_ms);
    }
    properties.clone().with_headers(table).with_delivery_mode(2)
}

/// Headers travel with every copy: keep error texts short.
fn truncate(text: &str) -> String {
    const MAX: usize = 500;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiers() -> RetryTiers {
        RetryTiers::new(vec![Duration::from_secs(5), Duration::from_secs(30)])
    }

    #[test]
    fn the_first_failure_goes_to_the_first_tier() {
        assert_eq!(
            tiers().route(1),
            Route::Delay {
                index: 0,
                delay: Duration::from_secs(5)
            }
        );
        assert_eq!(tiers().route(0), tiers().route(1));
    }

    #[test]
    fn a_failure_after_the_last_tier_parks_the_message() {
        assert_eq!(
            tiers().route(2),
            Route::Delay {
                index: 1,
                delay: Duration::from_secs(30)
            }
        );
        assert_eq!(tiers().route(3), Route::Park);
    }

    #[test]
    fn history_keeps_the_first_error_and_updates_the_last() {
        let first = with_history(&BasicProperties::default(), 1, "boom 1", None);
        let second = with_history(&first, 2, "boom 2", Some("gave up"));
        let table = second.headers().as_ref();
        assert_eq!(headers::int(table, headers::ATTEMPTS), Some(2));
        assert_eq!(
            headers::text(table, headers::FIRST_ERROR).as_deref(),
            Some("boom 1")
        );
        assert_eq!(
            headers::text(table, headers::LAST_ERROR).as_deref(),
            Some("boom 2")
        );
        assert_eq!(
            headers::text(table, headers::REASON).as_deref(),
            Some("gave up")
        );
        // Milliseconds since the epoch: `dlq list` shows when it was parked.
        let now_ms = callsync_shared::time::unix_ms(OffsetDateTime::now_utc());
        let parked_at = headers::int(table, headers::PARKED_AT).unwrap();
        assert!(
            (now_ms - parked_at).abs() < 60_000,
            "{parked_at} vs {now_ms}"
        );
        // The consumer reads the history back from the headers.
        let history = History::of(&second);
        assert_eq!(history.attempts, 2);
        assert_eq!(history.first_error.as_deref(), Some("boom 1"));
    }
}
