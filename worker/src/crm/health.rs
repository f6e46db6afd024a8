//! Whether the CRM answers at all, judged from every request the worker
//! sends it.
//!
//! One failed request says little (a 502 from one node, a reset); a CRM
//! that has not answered a single request for minutes is down, and walking
//! every call through the retry tiers into the parking queue would only
//! make work for an operator. An outage is declared when requests have
//! failed transiently (no connection, timeout, 5xx) for at least
//! `outage_after` without one answer in between, and at least
//! [`MIN_FAILURES`] of them did: then the worker pauses and probes instead
//! (see `lifecycle.rs`). Any answer that is not a 5xx — a 2xx, a 404, a
//! 429, even a 401 — proves the CRM is up and ends the failing streak.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The fewest failed requests that can make an outage, however long the
/// first of them was ago: one request that hung for the whole window is
/// not a pattern.
pub const MIN_FAILURES: u32 = 5;

/// The CRM's health as this worker sees it.
#[derive(Debug)]
pub struct CrmHealth {
    outage_after: Duration,
    streak: Mutex<Option<Streak>>,
}

/// Failed requests with no answer in between.
#[derive(Debug, Clone, Copy)]
struct Streak {
    since: Instant,
    failures: u32,
}

impl CrmHealth {
    /// `outage_after` is `CALLSYNC_CRM_OUTAGE_AFTER`.
    pub fn new(outage_after: Duration) -> Self {
        Self {
            outage_after,
            streak: Mutex::new(None),
        }
    }

    /// The CRM answered (any status below 500).
    pub fn answered(&self) {
        *self.lock() = None;
    }

    /// A request failed transiently: no connection, a timeout or a 5xx.
    pub fn failed(&self) {
        self.failed_at(Instant::now());
    }

    fn failed_at(&self, now: Instant) {
        let mut streak = self.lock();
        match streak.as_mut() {
            Some(streak) => streak.failures += 1,
            None => {
                *streak = Some(Streak {
                    since: now,
                    failures: 1,
                });
            }
        }
    }

    /// A description of the outage, when the failing streak makes one.
    pub fn outage(&self) -> Option<String> {
        self.outage_at(Instant::now())
    }

    fn outage_at(&self, now: Instant) -> Option<String> {
        let streak = (*self.lock())?;
        let failing_for = now.saturating_duration_since(streak.since);
        (failing_for >= self.outage_after && streak.failures >= MIN_FAILURES).then(|| {
            format!(
                "{} requests in a row failed over {}s, none answered",
                streak.failures,
                failing_for.as_secs()
            )
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Streak>> {
        self.streak
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(60);

    #[test]
    fn failures_for_the_whole_window_make_an_outage() {
        let health = CrmHealth::new(WINDOW);
        let start = Instant::now();
        for i in 0..MIN_FAILURES {
            health.failed_at(start + Duration::from_secs(u64::from(i) * 15));
        }
        assert!(health.outage_at(start + WINDOW).is_some());
        assert!(
            health
                .outage_at(start + WINDOW - Duration::from_secs(1))
                .is_none()
        );
    }

    #[test]
    fn one_answer_ends_the_streak() {
        let health = CrmHealth::new(WINDOW);
        let start = Instant::now();
        for _ in 0..MIN_FAILURES {
            health.failed_at(start);
        }
        health.answered();
        health.failed_at(start + WINDOW);
        assert!(health.outage_at(start + WINDOW * 2).is_none());
        assert!(health.outage_at(start + WINDOW * 3).is_none());
    }

    #[test]
    fn a_few_slow_failures_are_not_an_outage_however_long_ago() {
        let health = CrmHealth::new(WINDOW);
        let start = Instant::now();
        for _ in 1..MIN_FAILURES {
            health.failed_at(start);
        }
        assert!(health.outage_at(start + WINDOW * 10).is_none());
        health.failed_at(start + WINDOW);
        assert!(health.outage_at(start + WINDOW * 10).is_some());
    }
}
