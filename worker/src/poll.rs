//! Polling with doubling pauses, for waiting on something another party
//! changes: a call or contact another worker holds, a database coming back,
//! a CRM accepting requests again. The first tries come quickly, for the
//! common short wait; later ones back off, so that a long wait costs little.
//!
//! Failed requests are retried with `backon`; these are not retries of a
//! failure but waits for a state, often cancelled by shutdown, and their
//! pauses are exact (no jitter), so a log can say when the next try comes.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// Pauses between the tries of a poll: `first`, then each twice the one
/// before, up to `max`.
#[derive(Debug, Clone)]
pub struct Doubling {
    next: Duration,
    max: Duration,
}

impl Doubling {
    pub fn new(first: Duration, max: Duration) -> Self {
        Self {
            next: first.min(max),
            max,
        }
    }

    /// The pause to take now; the next one is twice as long, up to `max`.
    pub fn pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = (pause * 2).min(self.max);
        pause
    }

    /// The pause after the one taken last (for "next try in" logs).
    pub fn upcoming(&self) -> Duration {
        self.next
    }

    /// Takes the next pause, unless `cancel` resolves first: then its output.
    pub async fn sleep_unless<T>(&mut self, cancel: impl Future<Output = T>) -> Option<T> {
        let pause = self.pause();
        tokio::select! {
            () = tokio::time::sleep(pause) => None,
            stopped = cancel => Some(stopped),
        }
    }

    /// These pauses for `total` from now, after which the poll gives up.
    pub fn within(self, total: Duration) -> Bounded {
        Bounded {
            pauses: self,
            deadline: Instant::now() + total,
        }
    }
}

/// Doubling pauses until a deadline.
#[derive(Debug, Clone)]
pub struct Bounded {
    pauses: Doubling,
    deadline: Instant,
}

impl Bounded {
    /// The pause to take before trying again, or `None` once the deadline
    /// has passed: the last try was the last.
    pub fn pause(&mut self) -> Option<Duration> {
        (Instant::now() < self.deadline).then(|| self.pauses.pause())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn first_pauses(mut pauses: Doubling, n: usize) -> Vec<Duration> {
        (0..n).map(|_| pauses.pause()).collect()
    }

    #[test]
    fn pauses_double_from_the_first_up_to_the_longest() {
        let busy = Doubling::new(ms(25), ms(400));
        assert_eq!(
            first_pauses(busy, 7),
            [25, 50, 100, 200, 400, 400, 400].map(ms)
        );
        let database = Doubling::new(ms(250), Duration::from_secs(5));
        assert_eq!(
            first_pauses(database, 7),
            [250, 500, 1000, 2000, 4000, 5000, 5000].map(ms)
        );
    }

    #[test]
    fn a_first_pause_longer_than_the_longest_is_cut_to_it() {
        let probes = Doubling::new(Duration::from_secs(5), Duration::from_secs(2));
        assert_eq!(first_pauses(probes, 2), [2000, 2000].map(ms));
    }

    #[test]
    fn the_upcoming_pause_is_the_next_one_taken() {
        let mut probes = Doubling::new(Duration::from_secs(5), Duration::from_secs(60));
        assert_eq!(probes.upcoming(), Duration::from_secs(5));
        probes.pause();
        assert_eq!(probes.upcoming(), Duration::from_secs(10));
        assert_eq!(probes.pause(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_bounded_poll_pauses_until_its_deadline_and_then_gives_up() {
        let mut pauses = Doubling::new(ms(100), ms(100)).within(ms(250));
        let mut taken = Vec::new();
        while let Some(pause) = pauses.pause() {
            tokio::time::sleep(pause).await;
            taken.push(pause);
        }
        // At 0, 100 and 200 ms there is time left; at 300 ms there is none.
        assert_eq!(taken, [100, 100, 100].map(ms));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_ends_early_with_what_cancelled_it_or_runs_its_length() {
        let mut pauses = Doubling::new(ms(400), ms(400));
        let started = Instant::now();
        let cancel = async {
            tokio::time::sleep(ms(100)).await;
            "shutting down"
        };
        assert_eq!(pauses.sleep_unless(cancel).await, Some("shutting down"));
        assert_eq!(started.elapsed(), ms(100));
        let never = std::future::pending::<()>();
        assert_eq!(pauses.sleep_unless(never).await, None);
        assert_eq!(started.elapsed(), ms(500));
    }
}
