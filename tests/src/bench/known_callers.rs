//! Scenario 6: known callers in mixed formats. Every caller is a contact a
//! human typed into HubSpot, in one of five formats; each calls five times,
//! the calls spread through one backlog that three replicas drain on
//! HubSpot's real limits, both simulated: 190 requests per rolling 10 s and
//! 5 searches per second, refused with 429 and no `Retry-After`, as HubSpot
//! refuses. A third of the calls ask for a follow-up.
//!
//! What the design promises, and the row shows: each caller is searched
//! once (the ledger remembers the contact it found), so a repeat call costs
//! the call record and the last-call fields only (2 requests, 3 with a
//! follow-up); nearly nothing is refused; and the backlog drains close to
//! the least time the two limits allow.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;
use serde::Serialize;

use super::backlog::{Cost, hubspot_sim, operation};
use super::batch::{Batch, CrmHeld, call_id, check_crm, marker};
use super::{Budgets, Drained, Options, WorkerEnv, drain_on_limits, in_worker_env};
use crate::contacts::{Field, typed_contact, typed_dutch_mobile};
use crate::sim::{RateLimit, Snapshot};

/// HubSpot's general limit at the tier the benchmark assumes, and its
/// search limit, in the workers' notation.
const LIMIT: &str = "190/10s";
const SEARCH_LIMIT: &str = "5/1s";
const REPLICAS: usize = 3;
/// The calls of each known caller.
const CALLS_PER_CALLER: usize = 5;

#[derive(Debug, Clone, Serialize)]
pub struct KnownCallersRow {
    pub calls: usize,
    pub callers: usize,
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
    pub searches_per_caller: f64,
    /// Requests per call besides the caller's search and the follow-up
    /// task: the call record and the last-call fields, what a repeat call
    /// costs without a follow-up (at most 2).
    pub besides_search_and_task_per_call: f64,
    pub tasks_per_flagged_call: f64,
    /// 429s, and those of them the search limit gave.
    pub rate_limited: u64,
    pub search_rate_limited: u64,
    /// 429s over every request sent during the backlog, set-up included.
    pub ratio_429: f64,
    pub seconds: f64,
    /// The least time the limits allow: every request (set-up included)
    /// at 19 a second or the searches at 5 a second, whichever is longer.
    pub minimum_seconds: f64,
    pub time_over_minimum: f64,
    #[serde(flatten)]
    pub crm: CrmHeld,
    /// Messages left in the parking queue.
    pub parked: u32,
}

/// Caller `k`'s number in E.164.
fn caller(k: usize) -> String {
    format!("+3164{k:07}")
}

pub async fn run(options: &Options) -> anyhow::Result<KnownCallersRow> {
    let (sim, general) = hubspot_sim(LIMIT)?;
    let calls = options.known_callers_calls;
    in_worker_env(sim, &options.worker_vars, async |env| {
        measure(env, calls, general).await
    })
    .await
}

async fn measure(
    env: &WorkerEnv,
    calls: usize,
    general: RateLimit,
) -> anyhow::Result<KnownCallersRow> {
    let callers = (calls / CALLS_PER_CALLER).max(1);
    let mut contact_of = BTreeMap::new();
    for k in 0..callers {
        let typed = typed_dutch_mobile(&caller(k), k);
        let contact = typed_contact(
            "hubspot",
            &format!("Known {k}"),
            &typed,
            Field::Main,
            "2026-01-01T00:00:00Z",
        );
        contact_of.insert(caller(k), env.sim.seed_contact(contact));
    }
    // Round robin: a caller's calls are spread through the backlog, so
    // that repeat calls arrive while the first may still be in flight.
    let batch = Batch::new(calls, |i| caller(i % callers), |i| i % 3 == 0);

    let budgets = Budgets::new(LIMIT, SEARCH_LIMIT);
    let Drained {
        before,
        snapshot,
        seconds,
        ..
    } = drain_on_limits(env, REPLICAS, &budgets, &batch).await?;
    let crm = check_crm(&snapshot, &batch).context("known callers")?;
    check_on_their_contacts(&snapshot, calls, callers, &contact_of)?;

    let cost = Cost::between(&before, &snapshot.stats, general);
    let (requests, searches) = (cost.requests, cost.searches);
    let tasks = operation(&cost.stats, "create_task");
    let flagged = batch.task_markers.len();
    let per_call = |n: u64| n as f64 / calls as f64;
    Ok(KnownCallersRow {
        calls,
        callers,
        flagged,
        replicas: REPLICAS,
        limit: LIMIT.to_owned(),
        search_limit: SEARCH_LIMIT.to_owned(),
        crm_requests: requests,
        setup_requests: cost.setup,
        crm_requests_per_call: per_call(requests),
        searches,
        searches_per_call: per_call(searches),
        searches_per_caller: searches as f64 / callers as f64,
        besides_search_and_task_per_call: per_call(requests.saturating_sub(searches + tasks)),
        tasks_per_flagged_call: tasks as f64 / flagged.max(1) as f64,
        rate_limited: cost.stats.rate_limited,
        search_rate_limited: cost.stats.search_rate_limited,
        ratio_429: cost.ratio_429(),
        seconds,
        minimum_seconds: cost.minimum_seconds,
        time_over_minimum: seconds / cost.minimum_seconds.max(1e-9),
        by_operation: cost.stats.by_operation,
        crm,
        parked: env.parked_messages().await?,
    })
}

/// Every call is recorded on its caller's seeded contact, whatever format
/// the number was typed in: a call on another contact fails the run.
fn check_on_their_contacts(
    snapshot: &Snapshot,
    calls: usize,
    callers: usize,
    contact_of: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    let on: BTreeMap<String, &Vec<String>> = snapshot
        .calls
        .iter()
        .filter_map(|r| Some((r.marker()?, &r.associations)))
        .collect();
    let mut wrong = BTreeSet::new();
    for i in 0..calls {
        let marker = marker(&call_id(i));
        let expected = &contact_of[&caller(i % callers)];
        if on
            .get(&marker)
            .is_none_or(|a| a.as_slice() != [expected.clone()])
        {
            wrong.insert(marker);
        }
    }
    anyhow::ensure!(
        wrong.is_empty(),
        "{} calls are not on their caller's contact, e.g. {:?}",
        wrong.len(),
        wrong.iter().take(5).collect::<Vec<_>>()
    );
    Ok(())
}

/// The scenario's table.
pub fn render(k: &KnownCallersRow) -> String {
    format!(
        "\n| known callers in mixed formats | calls / callers | replicas | limits | CRM requests | per call | searches | per caller | besides search and task, per call | tasks per flagged call | 429s (search) | 429 share | time s | minimum s | time / minimum | CRM call records / tasks / contacts | parked |\n|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n| HubSpot, a third flagged | {} / {} | {} | {}, search {} | {} | {:.2} | {} | {:.2} | {:.2} | {:.2} | {} ({}) | {:.4} | {:.1} | {:.1} | {:.2} | {} / {} / {} | {} |\n",
        k.calls,
        k.callers,
        k.replicas,
        k.limit,
        k.search_limit,
        k.crm_requests,
        k.crm_requests_per_call,
        k.searches,
        k.searches_per_caller,
        k.besides_search_and_task_per_call,
        k.tasks_per_flagged_call,
        k.rate_limited,
        k.search_rate_limited,
        k.ratio_429,
        k.seconds,
        k.minimum_seconds,
        k.time_over_minimum,
        k.crm.crm_call_records,
        k.crm.crm_tasks,
        k.crm.crm_contacts,
        k.parked
    )
}
