//! What the backlog scenarios (known callers, new callers) share: the
//! simulator on HubSpot's limits, and the counts of what the backlog cost.

use crate::sim::{RateLimit, SimConfig, Stats};

use super::SETUP_OPERATIONS;

/// The simulator on HubSpot's limits: `limit` for every request (answered
/// with a 429 without `Retry-After`, as HubSpot does) and its documented
/// search limit. Returns the general limit as well.
pub(super) fn hubspot_sim(limit: &str) -> anyhow::Result<(SimConfig, RateLimit)> {
    let general: RateLimit = limit.parse().map_err(anyhow::Error::msg)?;
    let sim = SimConfig {
        rate_limit: Some(RateLimit {
            retry_after_secs: None,
            ..general
        }),
        search_rate_limit: Some(RateLimit::HUBSPOT_SEARCH),
        ..SimConfig::default()
    };
    Ok((sim, general))
}

/// The requests a backlog cost, between two looks at the simulator.
pub(super) struct Cost {
    /// The requests made, set-up operations taken out of `by_operation`.
    pub stats: Stats,
    /// Every request, set-up included.
    pub all_requests: u64,
    pub setup: u64,
    /// The requests the calls made.
    pub requests: u64,
    pub searches: u64,
    /// The least time the limits allow: every request at `general`'s rate
    /// or the searches at HubSpot's search rate, whichever is longer.
    pub minimum_seconds: f64,
}

impl Cost {
    pub fn between(before: &Stats, after: &Stats, general: RateLimit) -> Self {
        let mut stats = since(before, after);
        let all_requests = stats.requests;
        let setup: u64 = SETUP_OPERATIONS
            .iter()
            .filter_map(|op| stats.by_operation.remove(*op))
            .sum();
        let searches = operation(&stats, "search_contacts");
        let minimum_seconds = (all_requests as f64 / per_second(general))
            .max(searches as f64 / per_second(RateLimit::HUBSPOT_SEARCH));
        Self {
            stats,
            all_requests,
            setup,
            requests: all_requests - setup,
            searches,
            minimum_seconds,
        }
    }

    /// The share of every request answered 429.
    pub fn ratio_429(&self) -> f64 {
        self.stats.rate_limited as f64 / self.all_requests.max(1) as f64
    }
}

pub(super) fn per_second(limit: RateLimit) -> f64 {
    limit.max as f64 / limit.window.as_secs_f64()
}

pub(super) fn operation(stats: &Stats, name: &str) -> u64 {
    stats.by_operation.get(name).copied().unwrap_or(0)
}

/// The requests made between two looks at the simulator's counters.
pub(super) fn since(before: &Stats, after: &Stats) -> Stats {
    let by_operation = after
        .by_operation
        .iter()
        .map(|(op, n)| (op.clone(), n - operation(before, op)))
        .filter(|(_, n)| *n > 0)
        .collect();
    Stats {
        requests: after.requests - before.requests,
        by_operation,
        rate_limited: after.rate_limited - before.rate_limited,
        search_rate_limited: after.search_rate_limited - before.search_rate_limited,
        ..Stats::default()
    }
}
