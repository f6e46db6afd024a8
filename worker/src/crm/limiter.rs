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
//! allows 5 searches per second per account whatever the general limit);
//! a search draws on both ([`Budgets`]). Fixed parts suit the search budget
//! badly: 5 among three workers is 2 + 2 + 1, so the worker with one search
//! a second paces a backlog of new callers while the others leave theirs
//! unused. So once the ledger is connected the workers take their searches
//! from one window log in it ([`SharedWindow`]), each search a slot, and the
//! whole budget goes to whichever workers have searches waiting; the parts
//! above remain the rule while the ledger cannot be reached.

use std::collections::VecDeque;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

/// Added to a window: the CRM counts a request when it arrives, we when we
/// send it, and arrival delays vary (a new connection's handshake). Without
/// a margin, a request sent just as our window frees a slot can land inside
/// the CRM's window and be refused.
///
/// Why a fraction of the window and not one fixed margin: a budget kept
/// busy sends `max` requests per window plus margin, so the margin costs
/// the same share of the budget's rate as it is of the window. 250 ms is a
/// fortieth of HubSpot's 10 s window but a quarter of its 1 s search
/// window, which then gave 4 searches a second of the 5 allowed; a
/// fortieth of every window costs each budget 2.5 %. The floor keeps a
/// margin for delays that do not shrink with the window; the ceiling keeps
/// long windows (`40000/1d`) from holding a slot minutes longer for a
/// delay of milliseconds.
fn arrival_margin(window: Duration) -> Duration {
    (window / ARRIVAL_MARGIN_FRACTION).clamp(MIN_ARRIVAL_MARGIN, MAX_ARRIVAL_MARGIN)
}

/// The margin is this fraction of the window ([`arrival_margin`]).
const ARRIVAL_MARGIN_FRACTION: u32 = 40;
const MIN_ARRIVAL_MARGIN: Duration = Duration::from_millis(20);
const MAX_ARRIVAL_MARGIN: Duration = Duration::from_millis(250);

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

impl Rate {
    /// The window as we count it: the CRM's, plus the margin for a
    /// request's arrival ([`arrival_margin`]).
    fn counted_window(self) -> Duration {
        self.window + arrival_margin(self.window)
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

/// A window log that every worker takes from (the ledger's): `max`
/// requests in any `window`, whichever workers send them.
#[async_trait]
pub trait SharedWindow: Send + Sync + std::fmt::Debug {
    /// Takes one of `rate.max` slots if one left `window` (`Ok(None)`), or
    /// says how long until the oldest does; `Err` when the log cannot be
    /// reached.
    async fn take(&self, rate: Rate, window: Duration) -> Result<Option<Duration>, String>;
}

/// The search budget as a [`SharedWindow`], and this worker's turn at it.
#[derive(Debug)]
struct SharedSearches {
    window: Arc<dyn SharedWindow>,
    /// One search of this worker at a time asks the log, first come first
    /// served: the others queue here rather than each polling the ledger.
    turn: tokio::sync::Mutex<()>,
}

/// The budgets one worker's CRM requests draw on: the general request
/// budget (`CALLSYNC_CRM_RATE`), divided among the live workers, and the
/// search budget (`CALLSYNC_CRM_SEARCH_RATE`), taken from a window log all
/// workers share once there is one ([`Budgets::share_searches`]), else
/// divided as the general one.
#[derive(Debug)]
pub struct Budgets {
    general: Limiter,
    search: Limiter,
    shared_searches: OnceLock<SharedSearches>,
}

impl Budgets {
    /// `None` leaves that budget unlimited on our side.
    pub fn new(rate: Option<Rate>, search_rate: Option<Rate>) -> Self {
        Self {
            general: Limiter::new(rate),
            search: Limiter::new(search_rate),
            shared_searches: OnceLock::new(),
        }
    }

    /// From now on, searches take their budget from `window`, which every
    /// worker shares, instead of this worker's part of it. Without a search
    /// budget this changes nothing.
    pub fn share_searches(&self, window: Arc<dyn SharedWindow>) {
        if self.search.rate.is_some() {
            let _ = self.shared_searches.set(SharedSearches {
                window,
                turn: tokio::sync::Mutex::new(()),
            });
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
        match (kind, self.shared_searches.get(), self.search.rate) {
            (RequestKind::General, _, _) => {
                acquire_all(&[&self.general]).await;
            }
            (RequestKind::Search, Some(shared), Some(rate)) => {
                self.acquire_shared_search(shared, rate).await;
            }
            // Always locked in this order: search, then general.
            (RequestKind::Search, _, _) => {
                acquire_all(&[&self.search, &self.general]).await;
            }
        }
    }

    /// A search from the shared window: this worker's general budget is
    /// counted first and given back if the window has no slot, so that the
    /// search is counted in both within the one round trip to the log.
    async fn acquire_shared_search(&self, shared: &SharedSearches, rate: Rate) {
        let _turn = shared.turn.lock().await;
        loop {
            let counted = acquire_all(&[&self.general]).await;
            let wait = match shared.window.take(rate, rate.counted_window()).await {
                Ok(None) => return,
                Ok(Some(wait)) => wait,
                Err(error) => {
                    // The parts are the rule while the log is away; searches
                    // counted in it meanwhile still lie within its window.
                    self.general.uncount(counted);
                    tracing::debug!(%error, "the shared search budget is unreachable; using this worker's part");
                    acquire_all(&[&self.search, &self.general]).await;
                    return;
                }
            };
            self.general.uncount(counted);
            metrics::histogram!("callsync_worker_crm_throttled_seconds").record(wait.as_secs_f64());
            tokio::time::sleep(wait).await;
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
        let window = rate.counted_window();
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

    /// Gives back a request counted at `at` that was not sent after all.
    fn uncount(&self, at: Instant) {
        let mut state = self.lock();
        if let Some(i) = state.sent.iter().rposition(|t| *t == at) {
            state.sent.remove(i);
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
/// all of them at once, and returns the instant it was counted at. Callers
/// pass limiters in one fixed order, so two requests never lock them in
/// opposite orders.
async fn acquire_all(limiters: &[&Limiter]) -> Instant {
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
            (wait, now)
        };
        match wait {
            (None, now) => return now,
            (Some(wait), _) => {
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
            Duration::from_millis(10_250),
            "the fourth waits for the window and its margin, a fortieth of it"
        );
    }

    #[test]
    fn the_arrival_margin_is_a_fortieth_of_the_window_within_its_floor_and_ceiling() {
        let margin = |ms| arrival_margin(Duration::from_millis(ms));
        assert_eq!(margin(10_000), Duration::from_millis(250), "HubSpot's 10 s");
        assert_eq!(margin(1_000), Duration::from_millis(25), "its 1 s searches");
        assert_eq!(margin(100), Duration::from_millis(20), "the floor");
        assert_eq!(
            margin(86_400_000),
            Duration::from_millis(250),
            "a day's window keeps the ceiling"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_one_second_budget_sends_within_a_fortieth_of_its_rate() {
        // HubSpot's five searches a second: a margin of a quarter of the
        // window would let only 4 a second through.
        let limiter = Limiter::new(Some(Rate {
            max: 5,
            window: Duration::from_secs(1),
        }));
        let start = Instant::now();
        for _ in 0..50 {
            limiter.acquire().await;
        }
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(1_025) * 9,
            "fifty requests, five a window of 1.025 s: the tenth window's start"
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
        assert_eq!(start.elapsed(), Duration::from_millis(10_250));
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
            Duration::from_millis(1_025),
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
            Duration::from_millis(10_250),
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
            Duration::from_millis(1_025),
            "the third worker's part of five is one search per second"
        );
    }

    /// The ledger's window log, in memory: `max` requests in any window,
    /// whichever worker takes them.
    #[derive(Debug, Default)]
    struct MemoryWindow {
        taken: Mutex<VecDeque<Instant>>,
        /// Answers `Err` while set, as an unreachable ledger.
        unreachable: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl SharedWindow for MemoryWindow {
        async fn take(&self, rate: Rate, window: Duration) -> Result<Option<Duration>, String> {
            if self.unreachable.load(std::sync::atomic::Ordering::SeqCst) {
                return Err("connection refused".to_owned());
            }
            let now = Instant::now();
            let mut taken = self.taken.lock().unwrap();
            while taken
                .front()
                .is_some_and(|t| now.duration_since(*t) >= window)
            {
                taken.pop_front();
            }
            if taken.len() < rate.max as usize {
                taken.push_back(now);
                Ok(None)
            } else {
                Ok(taken.front().map(|t| (*t + window) - now))
            }
        }
    }

    const FIVE_A_SECOND: Rate = Rate {
        max: 5,
        window: Duration::from_secs(1),
    };

    /// Three workers' budgets, searches shared through one window, each
    /// worker holding its part of three (2 + 2 + 1) for the fallback.
    fn three_workers(general: Option<Rate>, window: &Arc<MemoryWindow>) -> Vec<Arc<Budgets>> {
        (0..3)
            .map(|rank| {
                let budgets = Budgets::new(general, Some(FIVE_A_SECOND));
                budgets.set_share(Share { workers: 3, rank });
                budgets.share_searches(window.clone());
                Arc::new(budgets)
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_alone_with_searches_waiting_takes_the_whole_shared_search_budget() {
        let window = Arc::new(MemoryWindow::default());
        let workers = three_workers(None, &window);
        // The third worker, whose part of five would be one.
        let third = &workers[2];
        let start = Instant::now();
        for _ in 0..5 {
            third.acquire(RequestKind::Search).await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "all five at once");
        third.acquire(RequestKind::Search).await;
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(1_025),
            "the sixth waits for the shared window"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn workers_sharing_the_search_budget_send_all_of_it_and_never_more_together() {
        let window = Arc::new(MemoryWindow::default());
        let workers = three_workers(None, &window);
        let sent = Arc::new(Mutex::new(Vec::new()));
        let start = Instant::now();
        let mut searching = Vec::new();
        // Each worker with searches waiting, more than the budget allows.
        for (worker, budgets) in workers.iter().enumerate() {
            for _ in 0..20 {
                let (budgets, sent) = (budgets.clone(), sent.clone());
                searching.push(tokio::spawn(async move {
                    budgets.acquire(RequestKind::Search).await;
                    sent.lock().unwrap().push((start.elapsed(), worker));
                }));
            }
        }
        for search in searching {
            search.await.unwrap();
        }
        let mut sent = sent.lock().unwrap().clone();
        sent.sort();
        let window = Duration::from_millis(1_025);
        for (i, (at, _)) in sent.iter().enumerate() {
            let within = sent[i..]
                .iter()
                .take_while(|(t, _)| *t - *at < window)
                .count();
            assert!(within <= 5, "{within} searches within a window from {at:?}");
        }
        // Sixty searches, five a window: the twelfth window's five end it.
        assert_eq!(sent.len(), 60);
        assert_eq!(sent.last().unwrap().0, window * 11);
        // No fixed parts: the worker whose part would be one sent as many
        // as the others, give or take one window's worth.
        let by = |worker| sent.iter().filter(|(_, w)| *w == worker).count();
        assert!(by(2) >= 15, "the third worker sent {}", by(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_search_waiting_for_the_shared_window_holds_no_general_budget() {
        let window = Arc::new(MemoryWindow::default());
        // Two general requests per window for each of the three workers.
        let general = Some(Rate {
            max: 6,
            window: Duration::from_secs(10),
        });
        let workers = three_workers(general, &window);
        let second = workers[1].clone();
        // Other workers' five searches fill the window...
        let start = Instant::now();
        window.taken.lock().unwrap().extend([start; 5]);
        // ...so this search waits for it...
        let waiting = tokio::spawn(async move {
            second.acquire(RequestKind::Search).await;
            start.elapsed()
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        // ...and leaves its worker's general budget to others meanwhile.
        workers[1].acquire(RequestKind::General).await;
        workers[1].acquire(RequestKind::General).await;
        assert_eq!(start.elapsed(), Duration::from_millis(100));
        assert_eq!(
            waiting.await.unwrap(),
            Duration::from_millis(100 + 10_250),
            "then it waits for the general budget the two used"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn while_the_shared_window_is_unreachable_a_worker_keeps_to_its_part() {
        let window = Arc::new(MemoryWindow::default());
        window
            .unreachable
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let workers = three_workers(None, &window);
        let start = Instant::now();
        workers[2].acquire(RequestKind::Search).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        workers[2].acquire(RequestKind::Search).await;
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(1_025),
            "the third worker's part of five is one search a window"
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
