//! Scenario 8: webhook → CRM latency on an idle system. Every CRM answer
//! takes 50 ms; calls are posted to `callsync-ingest` one at a time, each
//! after the previous one is synced, and timed from ingest's 202 to the
//! moment crm-sim holds the call record (the record's creation, measured
//! in the simulator, which runs in the benchmark's own process).
//!
//! A new caller's record needs three CRM requests in a row (search, create
//! contact, call record); a known caller's (one the ledger remembers) one.
//! The CRM's own time is that count × 50 ms; what is left is callsync's:
//! the queue, the ledger and the worker. Each stage's time comes from the
//! worker's own histograms (`callsync_worker_queue_wait_seconds`,
//! `_ledger_seconds`, `_crm_request_seconds`, `_sync_seconds`): as calls
//! are one at a time, a histogram's sum grows by exactly one call's time.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use callsync_shared::signature::sign_timestamped;
use serde::Serialize;

use super::batch::{Batch, check_crm, marker};
use super::roles::Child;
use super::{
    Budgets, CrmLeft, Options, PerCrm, SECRET, WorkerEnv, per_crm, percentile, start_ingest,
};
use crate::sim::SimConfig;

/// How long crm-sim takes to answer every request.
pub const CRM_LATENCY: Duration = Duration::from_millis(50);
/// The CRMs measured.
const CRMS: [&str; 2] = ["hubspot", "pipedrive"];
/// Callers (each calling twice) before the measured calls: the worker's
/// one-time set-up, connection pools and caches are warm by then.
const WARM_UP_CALLERS: usize = 3;

/// The worker's operations that come after the call record in a call's
/// steps (the last-call fields, the follow-up): not part of the time until
/// the call is readable.
const AFTER_THE_RECORD: [&str; 4] = [
    "update_contact",
    "update_person",
    "create_task",
    "create_activity",
];

/// One CRM's latency for one kind of caller.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyRow {
    pub crm: &'static str,
    /// `new` (never seen) or `known` (the ledger remembers the contact).
    pub caller: &'static str,
    pub calls: usize,
    pub crm_latency_ms: u64,
    /// CRM requests sent one after another until the record exists (the
    /// record's own included), fewest and most over the calls.
    pub requests_until_readable: (u64, u64),
    /// 202 → the call record exists.
    pub readable_p50_ms: f64,
    pub readable_p99_ms: f64,
    /// The CRM's own time: `requests_until_readable` × its latency (median).
    pub crm_ms: f64,
    /// Per call, the latency minus the CRM's own time.
    pub overhead_p50_ms: f64,
    pub overhead_p99_ms: f64,
    /// The worker's stages, from its histograms.
    pub stages: Vec<StageRow>,
}

/// One stage's time per call.
#[derive(Debug, Clone, Serialize)]
pub struct StageRow {
    pub stage: String,
    /// How many calls went through it, and its observations per call.
    pub calls: usize,
    pub per_call: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The latency rows, and what each CRM held.
pub type LatencyReport = PerCrm<LatencyRow, CrmLeft>;

/// Who calls: warm-up callers first (a first call and a repeat each),
/// then `calls` new callers, then each of them again.
struct Plan {
    calls: usize,
}

impl Plan {
    fn len(&self) -> usize {
        2 * WARM_UP_CALLERS + 2 * self.calls
    }

    /// Call `i`'s caller: a number of its own per caller.
    fn phone(&self, i: usize) -> String {
        let w = WARM_UP_CALLERS;
        let k = if i < 2 * w {
            i % w
        } else {
            w + (i - 2 * w) % self.calls
        };
        format!("+3166{k:07}")
    }

    /// Whether call `i` is measured, and as which kind of caller.
    fn kind(&self, i: usize) -> Option<&'static str> {
        let first = 2 * WARM_UP_CALLERS;
        match i {
            _ if i < first => None,
            _ if i < first + self.calls => Some("new"),
            _ => Some("known"),
        }
    }
}

pub async fn run(options: &Options) -> anyhow::Result<LatencyReport> {
    let sim = SimConfig {
        latency: CRM_LATENCY,
        ..SimConfig::default()
    };
    let calls = options.latency_calls.max(1);
    per_crm(&CRMS, &sim, &options.worker_vars, async |env, crm| {
        measure(env, crm, calls).await
    })
    .await
    .context("latency")
}

/// One call's measurement.
struct Timed {
    kind: &'static str,
    readable: Duration,
    requests_until_readable: u64,
    /// Each stage's seconds and observations in this call.
    stages: BTreeMap<String, (f64, u64)>,
}

async fn measure(
    env: &WorkerEnv,
    crm: &'static str,
    calls: usize,
) -> anyhow::Result<(Vec<LatencyRow>, CrmLeft)> {
    let plan = Plan { calls };
    // Every call asks for a follow-up, so that each step has its timing.
    let batch = Batch::new(plan.len(), |i| plan.phone(i), |_| true);
    let (ingest, ingest_addr) = start_ingest(&env.topology, &[]).await?;
    let (worker, ops) = Child::start(
        "worker",
        |ops| env.worker_vars_for(crm, ops, &Budgets::off()),
        Some("/readyz"),
    )
    .await?;
    let client = reqwest::Client::new();
    let mut timed = Vec::new();
    let mut before = metrics_text(&client, ops).await?;
    for (i, body) in batch.bodies.iter().enumerate() {
        let call = one_call(env, &client, ingest_addr, ops, i, body, &before).await?;
        before = call.1;
        if let Some(kind) = plan.kind(i) {
            timed.push(Timed { kind, ..call.0 });
        }
    }
    worker.stop().await;
    ingest.stop().await;
    let held = check_crm(&env.sim.snapshot(), &batch)?;
    let parked = env.parked_messages().await?;
    anyhow::ensure!(parked == 0, "{parked} calls parked");
    let rows = ["new", "known"]
        .into_iter()
        .map(|kind| row(crm, kind, timed.iter().filter(|t| t.kind == kind)))
        .collect();
    Ok((rows, CrmLeft { crm, held, parked }))
}

/// Posts call `i` to ingest, times it until its record exists in the CRM,
/// waits until the worker has finished it and reads the worker's stage
/// timings for it (the difference from `before`, the metrics before it).
/// Returns the measurement and the metrics after the call.
async fn one_call(
    env: &WorkerEnv,
    client: &reqwest::Client,
    ingest: SocketAddr,
    ops: SocketAddr,
    i: usize,
    body: &[u8],
    before: &str,
) -> anyhow::Result<(Timed, String)> {
    let ts = time::OffsetDateTime::now_utc().unix_timestamp().to_string();
    let response = client
        .post(format!("http://{ingest}/webhooks/voicedock"))
        .header("X-Webhook-Timestamp", &ts)
        .header("X-Webhook-Signature", sign_timestamped(SECRET, &ts, body))
        .header("Content-Type", "application/json")
        .body(body.to_vec())
        .send()
        .await?;
    let accepted = Instant::now();
    anyhow::ensure!(
        response.status() == reqwest::StatusCode::ACCEPTED,
        "ingest answered {}",
        response.status()
    );
    let created = record_created(env, &marker(&super::batch::call_id(i))).await?;
    let after = synced(client, ops, i + 1).await?;
    let stages = stage_deltas(before, &after);
    let requests_until_readable = stages
        .iter()
        .filter_map(|(stage, (_, n))| {
            let op = stage.strip_prefix(CRM_STAGE)?;
            (!AFTER_THE_RECORD.contains(&op)).then_some(*n)
        })
        .sum();
    Ok((
        Timed {
            kind: "warm-up",
            readable: created.saturating_duration_since(accepted),
            requests_until_readable,
            stages,
        },
        after,
    ))
}

/// When crm-sim created the call record carrying `marker` (waits for it).
async fn record_created(env: &WorkerEnv, marker: &str) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let created = env
            .sim
            .snapshot()
            .calls
            .iter()
            .find(|r| r.marker().as_deref() == Some(marker))
            .and_then(|r| r.created);
        if let Some(created) = created {
            return Ok(created);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no call record {marker} within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Waits until the worker counts `calls` synced, nothing parked; returns
/// its metrics then.
async fn synced(client: &reqwest::Client, ops: SocketAddr, calls: usize) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = metrics_text(client, ops).await?;
        let count = |outcome| {
            crate::prometheus::value(
                &text,
                "callsync_worker_messages_total",
                &[("outcome", outcome)],
            )
        };
        anyhow::ensure!(count("parked") == 0.0, "a call was parked");
        if count("synced") >= calls as f64 {
            return Ok(text);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "call {calls} not synced within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn metrics_text(client: &reqwest::Client, ops: SocketAddr) -> anyhow::Result<String> {
    Ok(client
        .get(format!("http://{ops}/metrics"))
        .send()
        .await?
        .text()
        .await?)
}

/// The prefix of a CRM request's stage name (followed by its operation).
const CRM_STAGE: &str = "CRM ";
/// The stages in the order of a call's steps.
const QUEUE_STAGE: &str = "queue wait (received → delivered)";
const LEDGER_STAGE: &str = "ledger statements";
const SYNC_STAGE: &str = "sync (claim → synced)";

/// Each stage's histogram sum and count in a worker's metrics.
fn stage_sums(text: &str) -> BTreeMap<String, (f64, u64)> {
    let mut sums: BTreeMap<String, (f64, u64)> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let value: f64 = value.parse().unwrap_or(0.0);
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        let (family, is_sum) = match (name.strip_suffix("_sum"), name.strip_suffix("_count")) {
            (Some(family), _) => (family, true),
            (_, Some(family)) => (family, false),
            _ => continue,
        };
        let stage = match family {
            "callsync_worker_queue_wait_seconds" => QUEUE_STAGE.to_owned(),
            "callsync_worker_ledger_seconds" => LEDGER_STAGE.to_owned(),
            "callsync_worker_sync_seconds" => SYNC_STAGE.to_owned(),
            "callsync_worker_crm_request_seconds" => {
                format!("{CRM_STAGE}{}", label(labels, "operation"))
            }
            _ => continue,
        };
        let entry = sums.entry(stage).or_default();
        if is_sum {
            entry.0 += value;
        } else {
            entry.1 += value as u64;
        }
    }
    sums
}

/// A label's value in a series' `{…}` text.
fn label<'a>(labels: &'a str, name: &str) -> &'a str {
    labels
        .trim_end_matches('}')
        .split(',')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix("=\""))
        .map_or("", |v| v.trim_end_matches('"'))
}

/// What each stage added between two readings of the metrics.
fn stage_deltas(before: &str, after: &str) -> BTreeMap<String, (f64, u64)> {
    let before = stage_sums(before);
    stage_sums(after)
        .into_iter()
        .filter_map(|(stage, (sum, count))| {
            let (s0, c0) = before.get(&stage).copied().unwrap_or_default();
            (count > c0).then(|| (stage, (sum - s0, count - c0)))
        })
        .collect()
}

fn row<'a>(
    crm: &'static str,
    caller: &'static str,
    calls: impl Iterator<Item = &'a Timed>,
) -> LatencyRow {
    let calls: Vec<&Timed> = calls.collect();
    // Whole milliseconds: 3 × 50 is 150, not 150.00000000000003.
    let crm_ms_of = |t: &Timed| (t.requests_until_readable * CRM_LATENCY.as_millis() as u64) as f64;
    let sorted = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v
    };
    let readable = sorted(
        calls
            .iter()
            .map(|t| t.readable.as_secs_f64() * 1e3)
            .collect(),
    );
    let overhead = sorted(
        calls
            .iter()
            .map(|t| t.readable.as_secs_f64() * 1e3 - crm_ms_of(t))
            .collect(),
    );
    let requests = calls.iter().map(|t| t.requests_until_readable);
    LatencyRow {
        crm,
        caller,
        calls: calls.len(),
        crm_latency_ms: CRM_LATENCY.as_millis() as u64,
        requests_until_readable: (
            requests.clone().min().unwrap_or(0),
            requests.max().unwrap_or(0),
        ),
        readable_p50_ms: percentile(&readable, 0.5),
        readable_p99_ms: percentile(&readable, 0.99),
        crm_ms: percentile(&sorted(calls.iter().map(|t| crm_ms_of(t)).collect()), 0.5),
        overhead_p50_ms: percentile(&overhead, 0.5),
        overhead_p99_ms: percentile(&overhead, 0.99),
        stages: stages(&calls),
    }
}

/// Each stage's per-call time over `calls`, in the order of a call's steps.
fn stages(calls: &[&Timed]) -> Vec<StageRow> {
    let mut names: Vec<&String> = calls.iter().flat_map(|t| t.stages.keys()).collect();
    names.sort_by_key(|name| (stage_order(name), name.as_str()));
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let seen: Vec<(f64, u64)> = calls
                .iter()
                .filter_map(|t| t.stages.get(name).copied())
                .collect();
            let mut ms: Vec<f64> = seen.iter().map(|(s, _)| s * 1e3).collect();
            ms.sort_by(f64::total_cmp);
            let observations: u64 = seen.iter().map(|(_, n)| n).sum();
            StageRow {
                stage: name.clone(),
                calls: seen.len(),
                per_call: observations as f64 / seen.len().max(1) as f64,
                p50_ms: percentile(&ms, 0.5),
                p99_ms: percentile(&ms, 0.99),
            }
        })
        .collect()
}

/// Where a stage sits in a call: the queue, the ledger, the CRM requests
/// in step order, then the whole sync.
fn stage_order(stage: &str) -> usize {
    const STEPS: [&str; 9] = [
        "search_contact",
        "search_person",
        "create_contact",
        "create_person",
        "create_call",
        "create_note",
        "update_contact",
        "update_person",
        "create_task",
    ];
    match stage {
        QUEUE_STAGE => 0,
        LEDGER_STAGE => 1,
        SYNC_STAGE => 100,
        _ => stage
            .strip_prefix(CRM_STAGE)
            .and_then(|op| STEPS.iter().position(|s| *s == op))
            .map_or(50, |p| 2 + p),
    }
}

/// The scenario's tables: latency per CRM and kind of caller, then each
/// stage's time.
pub fn render(report: &LatencyReport) -> String {
    let mut out = format!(
        "\n| latency, 202 → readable in the CRM ({} ms per CRM answer) | caller | calls | CRM requests until readable | p50 ms | p99 ms | CRM's own ms | overhead p50 ms | overhead p99 ms |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n",
        CRM_LATENCY.as_millis()
    );
    for r in &report.rows {
        let (least, most) = r.requests_until_readable;
        let requests = if least == most {
            least.to_string()
        } else {
            format!("{least}–{most}")
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.1} | {:.1} | {:.0} | {:.1} | {:.1} |\n",
            r.crm,
            r.caller,
            r.calls,
            requests,
            r.readable_p50_ms,
            r.readable_p99_ms,
            r.crm_ms,
            r.overhead_p50_ms,
            r.overhead_p99_ms
        ));
    }
    out.push_str("\n| stage (worker metrics) | CRM | caller | calls | per call | p50 ms | p99 ms |\n|---|---|---|---:|---:|---:|---:|\n");
    for r in &report.rows {
        for s in &r.stages {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {:.1} | {:.2} | {:.2} |\n",
                s.stage, r.crm, r.caller, s.calls, s.per_call, s.p50_ms, s.p99_ms
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "\
# TYPE callsync_worker_crm_request_seconds histogram
callsync_worker_crm_request_seconds_sum{crm=\"hubspot\",operation=\"create_call\",status=\"201\"} 0.5
callsync_worker_crm_request_seconds_count{crm=\"hubspot\",operation=\"create_call\",status=\"201\"} 10
callsync_worker_ledger_seconds_sum{statement=\"claim\"} 0.02
callsync_worker_ledger_seconds_count{statement=\"claim\"} 10
";

    const AFTER: &str = "\
callsync_worker_crm_request_seconds_bucket{crm=\"hubspot\",operation=\"create_call\",status=\"201\",le=\"0.1\"} 11
callsync_worker_crm_request_seconds_sum{crm=\"hubspot\",operation=\"create_call\",status=\"201\"} 0.552
callsync_worker_crm_request_seconds_count{crm=\"hubspot\",operation=\"create_call\",status=\"201\"} 11
callsync_worker_crm_request_seconds_sum{crm=\"hubspot\",operation=\"update_contact\",status=\"200\"} 0.051
callsync_worker_crm_request_seconds_count{crm=\"hubspot\",operation=\"update_contact\",status=\"200\"} 1
callsync_worker_ledger_seconds_sum{statement=\"claim\"} 0.021
callsync_worker_ledger_seconds_count{statement=\"claim\"} 11
callsync_worker_ledger_seconds_sum{statement=\"complete\"} 0.002
callsync_worker_ledger_seconds_count{statement=\"complete\"} 1
";

    #[test]
    fn a_stage_is_what_its_histogram_sum_grew_by_and_an_unchanged_one_is_absent() {
        let deltas = stage_deltas(BEFORE, AFTER);
        let near = |stage: &str, ms: f64, n: u64| {
            let (s, c) = deltas[stage];
            assert!((s * 1e3 - ms).abs() < 1e-6 && c == n, "{stage}: {deltas:?}");
        };
        near("CRM create_call", 52.0, 1);
        near("CRM update_contact", 51.0, 1);
        // Every statement of the ledger adds up into one stage.
        near(LEDGER_STAGE, 3.0, 2);
        assert_eq!(deltas.len(), 3, "{deltas:?}");
        assert!(stage_deltas(AFTER, AFTER).is_empty());
    }

    #[test]
    fn the_warm_up_is_not_measured_and_a_known_caller_calls_again_from_a_new_callers_number() {
        let plan = Plan { calls: 4 };
        let first = 2 * WARM_UP_CALLERS;
        assert_eq!(plan.len(), first + 8);
        assert!((0..first).all(|i| plan.kind(i).is_none()));
        assert_eq!(plan.kind(first), Some("new"));
        assert_eq!(plan.kind(first + 4), Some("known"));
        assert_eq!(plan.phone(first + 1), plan.phone(first + 5));
        assert_ne!(plan.phone(first), plan.phone(first + 1));
        assert_ne!(plan.phone(0), plan.phone(first));
    }
}
