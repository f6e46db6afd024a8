//! Scenario 7: a backlog of new callers on HubSpot's lowest limits. Every
//! call comes from a number the CRM has never seen, so each one searches
//! (and finds nothing) before it creates the contact: three replicas drain
//! the backlog on 100 requests per rolling 10 s and 5 searches per second,
//! both simulated and refused with 429 and no `Retry-After`, as HubSpot
//! refuses. A third of the calls ask for a follow-up.
//!
//! What the design promises, and the row shows: nearly nothing is refused,
//! and the backlog drains close to the least time the two limits allow,
//! which takes every replica's share of the search budget being used while
//! any replica has searches waiting. Each replica's searches and its time
//! held back by its own budgets are shown, so that a replica that paces the
//! others shows.

use std::collections::BTreeMap;

use anyhow::Context;
use serde::Serialize;

use super::backlog::{Cost, hubspot_sim};
use super::batch::{Batch, CrmHeld, check_crm};
use super::{Budgets, Drained, Options, ReplicaCounts, WorkerEnv, drain_on_limits, in_worker_env};
use crate::sim::RateLimit;

/// HubSpot's general limit at its lowest tier, and its search limit, in
/// the workers' notation (also their defaults for HubSpot).
const LIMIT: &str = "100/10s";
const SEARCH_LIMIT: &str = "5/1s";
const REPLICAS: usize = 3;

#[derive(Debug, Clone, Serialize)]
pub struct NewCallersRow {
    pub calls: usize,
    /// Calls that ask for a follow-up.
    pub flagged: usize,
    pub replicas: usize,
    pub limit: String,
    pub search_limit: String,
    /// The calls' CRM requests, refused ones included.
    pub crm_requests: u64,
    /// The workers' one-time set-up requests, sent during the backlog too.
    pub setup_requests: u64,
    pub crm_requests_per_call: f64,
    /// The calls' CRM requests by operation.
    pub by_operation: BTreeMap<String, u64>,
    pub searches: u64,
    pub searches_per_call: f64,
    /// 429s, and those of them the search limit gave.
    pub rate_limited: u64,
    pub search_rate_limited: u64,
    /// 429s over every request sent during the backlog, set-up included.
    pub ratio_429: f64,
    pub seconds: f64,
    /// The least time the limits allow: every request (set-up included)
    /// at 10 a second or the searches at 5 a second, whichever is longer.
    pub minimum_seconds: f64,
    pub time_over_minimum: f64,
    /// Each replica's own account, in the order they were started.
    pub per_replica: Vec<ReplicaCounts>,
    #[serde(flatten)]
    pub crm: CrmHeld,
    /// Messages left in the parking queue.
    pub parked: u32,
}

/// New caller `i`'s number in E.164.
fn caller(i: usize) -> String {
    format!("+3165{i:07}")
}

pub async fn run(options: &Options) -> anyhow::Result<NewCallersRow> {
    let (sim, general) = hubspot_sim(LIMIT)?;
    let calls = options.new_callers_calls;
    in_worker_env(sim, &options.worker_vars, async |env| {
        measure(env, calls, general).await
    })
    .await
}

async fn measure(
    env: &WorkerEnv,
    calls: usize,
    general: RateLimit,
) -> anyhow::Result<NewCallersRow> {
    let batch = Batch::new(calls, caller, |i| i % 3 == 0);
    let budgets = Budgets::new(LIMIT, SEARCH_LIMIT);
    let Drained {
        before,
        snapshot,
        seconds,
        per_replica,
    } = drain_on_limits(env, REPLICAS, &budgets, &batch).await?;
    let crm = check_crm(&snapshot, &batch).context("new callers")?;

    let cost = Cost::between(&before, &snapshot.stats, general);
    let (requests, searches) = (cost.requests, cost.searches);
    Ok(NewCallersRow {
        calls,
        flagged: batch.task_markers.len(),
        replicas: REPLICAS,
        limit: LIMIT.to_owned(),
        search_limit: SEARCH_LIMIT.to_owned(),
        crm_requests: requests,
        setup_requests: cost.setup,
        crm_requests_per_call: requests as f64 / calls as f64,
        searches,
        searches_per_call: searches as f64 / calls as f64,
        rate_limited: cost.stats.rate_limited,
        search_rate_limited: cost.stats.search_rate_limited,
        ratio_429: cost.ratio_429(),
        seconds,
        minimum_seconds: cost.minimum_seconds,
        time_over_minimum: seconds / cost.minimum_seconds.max(1e-9),
        per_replica,
        by_operation: cost.stats.by_operation,
        crm,
        parked: env.parked_messages().await?,
    })
}

/// The scenario's tables: the backlog, then each replica's account.
pub fn render(n: &NewCallersRow) -> String {
    let mut out = format!(
        "\n| new callers | calls | replicas | limits | CRM requests | per call | searches | per call | 429s (search) | 429 share | time s | minimum s | time / minimum | CRM call records / tasks / contacts | parked |\n|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n| HubSpot, a third flagged | {} | {} | {}, search {} | {} | {:.2} | {} | {:.2} | {} ({}) | {:.4} | {:.1} | {:.1} | {:.2} | {} / {} / {} | {} |\n",
        n.calls,
        n.replicas,
        n.limit,
        n.search_limit,
        n.crm_requests,
        n.crm_requests_per_call,
        n.searches,
        n.searches_per_call,
        n.rate_limited,
        n.search_rate_limited,
        n.ratio_429,
        n.seconds,
        n.minimum_seconds,
        n.time_over_minimum,
        n.crm.crm_call_records,
        n.crm.crm_tasks,
        n.crm.crm_contacts,
        n.parked
    );
    out.push_str("\n| new callers, replica | messages done | searches sent | held back by its budgets, s | retries |\n|---:|---:|---:|---:|---:|\n");
    for (i, r) in n.per_replica.iter().enumerate() {
        out.push_str(&format!(
            "| {} | {} | {} | {:.1} | {} |\n",
            i + 1,
            r.messages,
            r.searches,
            r.throttled_seconds,
            r.retries
        ));
    }
    out
}
