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
//! heartbeat table (see `crate::ledger`); when the division leaves a
//! remainder, the first workers in id order take one more each, so that
//! the parts add up to the whole limit ([`Share::part`]: HubSpot's 5
//! searches a second among three workers are 2 + 2 + 1, not 1 + 1 + 1). A
//! 429 pauses all of this worker's CRM requests (not just the message that
//! got it) for `Retry-After`.
//!
//! Searches have a budget of their own beside the general one (HubSpot
//! allows 5 searches per second per account whatever the general limit),
//! shared the same way; a search draws on both ([`Budgets`]).

use std::collections::VecDeque;
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard};
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

/// This worker's place among the live workers sharing the budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// Live workers, this one included (≥ 1).
    pub workers: usize,
    /// How many live workers come before this one in id order.
    pub rank: usize,
}

impl Share {
    /// A worker on its own.
    pub const ALONE: Share = Share {
        workers: 1,
        rank: 0,
    };

    /// This worker's part of `max` requests: the even share, plus one for
    /// the first `max % workers` workers, so that the parts add up to
    /// `max`; at least one, so that no worker is starved (more workers than
    /// requests per window then overshoot, and the CRM's 429 is honoured).
    pub fn part(self, max: usize) -> usize {
        let workers = self.workers.max(1);
        let extra = usize::from(self.rank < max % workers);
        (max / workers + extra).max(1)
    }
}

/// Which budgets a request draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// Only the general budget.
    General,
    /// The search budget and the general one: CRMs limit searches apart
    /// (HubSpot: 5 per second per account) and count them in the general
    /// limit too.
    Search,
}

/// The budgets one worker's CRM requests draw on: the general request
/// budget (`CALLSYNC_CRM_RATE`) and the search budget
/// (`CALLSYNC_CRM_SEARCH_RATE`), both divided among the live workers.
#[derive(Debug)]
pub struct Budgets {
    general: Limiter,
    search: Limiter,
}

impl Budgets {
    /// `None` leaves that budget unlimited on our side.
    pub fn new(rate: Option<Rate>, search_rate: Option<Rate>) -> Self {
        Self {
            general: Limiter::new(rate),
            search: Limiter::new(search_rate),
        }
    }

    /// Unlimited: for adapters under test.
    pub fn unlimited() -> Self {
        Self::new(None, None)
    }

    pub fn rate(&self) -> Option<Rate> {
        self.general.rate()
    }

    pub fn search_rate(&self) -> Option<Rate> {
        self.search.rate()
    }

    /// Sets this worker's share of both budgets.
    pub fn set_share(&self, share: Share) {
        self.general.set_share(share);
        self.search.set_share(share);
    }

    /// Waits until a request of `kind` may be sent, and counts it in every
    /// budget it draws on at the same instant: counting a search in one
    /// budget while it still waits for the other would let that budget's
    /// window free the slot before the CRM's does.
    pub async fn acquire(&self, kind: RequestKind) {
        match kind {
            RequestKind::General => acquire_all(&[&self.general]).await,
            // Always locked in this order: search, then general.
            RequestKind::Search => acquire_all(&[&self.search, &self.general]).await,
        }
    }

    /// Pauses every request of this worker (searches draw on the general
    /// budget, so they wait too).
    pub fn pause(&self, duration: Duration) {
        self.general.pause(duration);
    }
}

/// The limiter of one budget in one worker process.
#[derive(Debug)]
pub struct Limiter {
    rate: Option<Rate>,
    /// This worker's share, refreshed from the ledger.
    share: Mutex<Share>,
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
            share: Mutex::new(Share::ALONE),
            state: Mutex::new(State::default()),
        }
    }

    pub fn rate(&self) -> Option<Rate> {
        self.rate
    }

    /// Sets this worker's share of the budget.
    pub fn set_share(&self, share: Share) {
        *self
            .share
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = share;
    }

    /// This worker's part of the budget (see [`Share::part`]).
    fn own_max(&self, rate: Rate) -> usize {
        self.share
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .part(rate.max as usize)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How long until a request may be sent (`None`: now), without
    /// counting it.
    fn wait(&self, state: &mut State, now: Instant) -> Option<Duration> {
        if let Some(until) = state.paused_until {
            if until > now {
                return Some(until - now);
            }
            state.paused_until = None;
        }
        let rate = self.rate?;
        let window = rate.window + ARRIVAL_MARGIN;
        while state
            .sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            state.sent.pop_front();
        }
        if state.sent.len() < self.own_max(rate) {
            None
        } else {
            // The oldest request leaves the window at `front + window`.
            state.sent.front().map(|t| (*t + window) - now)
        }
    }

    fn count(&self, state: &mut State, now: Instant) {
        if self.rate.is_some() {
            state.sent.push_back(now);
        }
    }

    /// Waits until a request may be sent, and counts it.
    pub async fn acquire(&self) {
        acquire_all(&[self]).await;
    }

    /// Pauses every request of this worker for `duration` (a 429's
    /// `Retry-After`, or a default when the CRM sent none).
    pub fn pause(&self, duration: Duration) {
        let mut state = self.lock();
        let until = Instant::now() + duration;
        if state.paused_until.is_none_or(|current| current < until) {
            state.paused_until = Some(until);
        }
    }
}

/// Waits until every one of `limiters` has room, then counts the request in
/// all of them at once. Callers pass limiters in one fixed order, so two
/// requests never lock them in opposite orders.
async fn acquire_all(limiters: &[&Limiter]) {
    loop {
        let wait = {
            let mut states: Vec<_> = limiters.iter().map(|l| l.lock()).collect();
            let now = Instant::now();
            let wait = limiters
                .iter()
                .zip(states.iter_mut())
                .filter_map(|(limiter, state)| limiter.wait(state, now))
                .max();
            if wait.is_none() {
                for (limiter, state) in limiters.iter().zip(states.iter_mut()) {
                    limiter.count(state, now);
                }
            }
            wait
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
        limiter.set_share(Share {
            workers: 2,
            rank: 0,
        });
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

    #[tokio::test(start_paused = true)]
    async fn a_search_waits_for_the_search_budget_while_other_requests_go_on() {
        let budgets = Budgets::new(
            Some(Rate {
                max: 100,
                window: Duration::from_secs(10),
            }),
            Some(Rate {
                max: 5,
                window: Duration::from_secs(1),
            }),
        );
        let start = Instant::now();
        for _ in 0..5 {
            budgets.acquire(RequestKind::Search).await;
        }
        budgets.acquire(RequestKind::General).await;
        assert_eq!(start.elapsed(), Duration::ZERO, "five searches and a write");
        budgets.acquire(RequestKind::Search).await;
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(1) + ARRIVAL_MARGIN,
            "the sixth search waits for the search window"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_search_counts_against_the_general_budget_too() {
        let budgets = Budgets::new(
            Some(Rate {
                max: 2,
                window: Duration::from_secs(10),
            }),
            Some(Rate {
                max: 5,
                window: Duration::from_secs(1),
            }),
        );
        let start = Instant::now();
        budgets.acquire(RequestKind::Search).await;
        budgets.acquire(RequestKind::Search).await;
        budgets.acquire(RequestKind::General).await;
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(10) + ARRIVAL_MARGIN,
            "two searches used the general budget up"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_search_budget_is_divided_among_workers() {
        let budgets = Budgets::new(
            None,
            Some(Rate {
                max: 5,
                window: Duration::from_secs(1),
            }),
        );
        // The last of three workers: five searches are 2 + 2 + 1.
        budgets.set_share(Share {
            workers: 3,
            rank: 2,
        });
        let start = Instant::now();
        budgets.acquire(RequestKind::Search).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        budgets.acquire(RequestKind::Search).await;
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(1) + ARRIVAL_MARGIN,
            "the third worker's part of five is one search per second"
        );
    }

    #[test]
    fn the_parts_of_a_budget_add_up_to_the_whole() {
        for max in 1..=20 {
            for workers in 1..=max {
                let parts: usize = (0..workers)
                    .map(|rank| Share { workers, rank }.part(max))
                    .sum();
                assert_eq!(parts, max, "{max} among {workers}");
            }
        }
        let part = |rank| Share { workers: 3, rank }.part(5);
        assert_eq!((part(0), part(1), part(2)), (2, 2, 1));
        // More workers than requests: each still gets one.
        assert_eq!(
            Share {
                workers: 7,
                rank: 6
            }
            .part(5),
            1
        );
    }
}
