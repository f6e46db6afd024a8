//! Keeping a worker under the CRM's rate limit, and pausing it when the CRM
//! says it is over anyway.
//!
//! CRMs limit requests per rolling window (HubSpot: 100–190 per 10 s per
//! app). A token bucket only guarantees that when its burst and rate are
//! tuned together (burst + rate × window ≤ limit); a sliding-window log
//! enforces the limit exactly as the CRM counts it, so that is what this is:
//! the times of the last `max` requests, and a new request waits until the
//! oldest of them leaves the window.
//!
//! The budget is shared by every worker replica: each worker takes
//! `limit ÷ live workers`, with the live count read from the ledger's
//! heartbeat table (see `crate::ledger`). A 429 pauses all of this worker's
//! CRM requests (not just the message that got it) for `Retry-After`.

use std::collections::VecDeque;
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Added to the window: the CRM counts a request when it arrives, we when we
/// send it, and arrival delays vary (a new connection's handshake). Without
/// a margin, a request sent just as our window frees a slot can land inside
/// the CRM's window and be refused.
const ARRIVAL_MARGIN: Duration = Duration::from_millis(250);

/// A request budget: `max` requests per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub max: u32,
    pub window: Duration,
}

impl FromStr for Rate {
    type Err = String;

    /// `100/10s`, `5/1s`, `40000/1d`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let expected = || format!("expected <requests>/<window> such as 100/10s, got {s:?}");
        let (max, window) = s.split_once('/').ok_or_else(expected)?;
        let max: u32 = max.trim().parse().map_err(|_| expected())?;
        let window = callsync_shared::config::parse_duration(window).map_err(|_| expected())?;
        if max == 0 || window.is_zero() {
            return Err(expected());
        }
        Ok(Self { max, window })
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}",
            self.max,
            callsync_shared::config::format_duration(self.window)
        )
    }
}

/// The limiter of one worker process, shared by all its CRM requests.
#[derive(Debug)]
pub struct Limiter {
    rate: Option<Rate>,
    /// How many workers share the budget (≥ 1), refreshed from the ledger.
    share: AtomicUsize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    sent: VecDeque<Instant>,
    paused_until: Option<Instant>,
}

impl Limiter {
    /// `None` means no client-side limit (429s are still honoured).
    pub fn new(rate: Option<Rate>) -> Self {
        Self {
            rate,
            share: AtomicUsize::new(1),
            state: Mutex::new(State::default()),
        }
    }

    pub fn rate(&self) -> Option<Rate> {
        self.rate
    }

    /// Sets how many workers share the budget.
    pub fn set_share(&self, workers: usize) {
        self.share.store(workers.max(1), Ordering::Relaxed);
    }

    /// This worker's part of the budget: at least one request per window.
    fn own_max(&self, rate: Rate) -> usize {
        let share = self.share.load(Ordering::Relaxed).max(1);
        (rate.max as usize / share).max(1)
    }

    /// Waits until a request may be sent, and counts it.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut state = self
                    .state
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let now = Instant::now();
                match state.paused_until {
                    Some(until) if until > now => Some(until - now),
                    _ => {
                        state.paused_until = None;
                        match self.rate {
                            None => None,
                            Some(rate) => {
                                let window = rate.window + ARRIVAL_MARGIN;
                                while state
                                    .sent
                                    .front()
                                    .is_some_and(|t| now.duration_since(*t) >= window)
                                {
                                    state.sent.pop_front();
                                }
                                let max = self.own_max(rate);
                                if state.sent.len() < max {
                                    state.sent.push_back(now);
                                    None
                                } else {
                                    // The oldest request leaves the window at `front + window`.
                                    state.sent.front().map(|t| (*t + window) - now)
                                }
                            }
                        }
                    }
                }
            };
            match wait {
                None => return,
                Some(wait) => {
                    metrics::histogram!("callsync_worker_crm_throttled_seconds")
                        .record(wait.as_secs_f64());
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Pauses every request of this worker for `duration` (a 429's
    /// `Retry-After`, or a default when the CRM sent none).
    pub fn pause(&self, duration: Duration) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let until = Instant::now() + duration;
        if state.paused_until.is_none_or(|current| current < until) {
            state.paused_until = Some(until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_print_back() {
        let rate: Rate = "190/10s".parse().unwrap();
        assert_eq!(
            rate,
            Rate {
                max: 190,
                window: Duration::from_secs(10)
            }
        );
        assert_eq!(rate.to_string(), "190/10s");
        assert!("0/10s".parse::<Rate>().is_err());
        assert!("fast".parse::<Rate>().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn no_more_than_the_budget_is_sent_in_any_window() {
        let limiter = Limiter::new(Some(Rate {
            max: 3,
            window: Duration::from_secs(10),
        }));
        let start = Instant::now();
        for _ in 0..3 {
            limiter.acquire().await;
        }
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "the first three go at once"
        );
        limiter.acquire().await;
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(10) + ARRIVAL_MARGIN,
            "the fourth waits for the window (and the arrival margin)"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_is_divided_among_workers() {
        let limiter = Limiter::new(Some(Rate {
            max: 4,
            window: Duration::from_secs(10),
        }));
        limiter.set_share(2);
        let start = Instant::now();
        limiter.acquire().await;
        limiter.acquire().await;
        limiter.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(10) + ARRIVAL_MARGIN);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_every_request_until_it_ends() {
        let limiter = Limiter::new(None);
        limiter.pause(Duration::from_secs(7));
        limiter.pause(Duration::from_secs(2));
        let start = Instant::now();
        limiter.acquire().await;
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(7),
            "a shorter pause does not shorten a longer one"
        );
    }
}
