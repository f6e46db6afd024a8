//! Scenario 9: the worker's memory under a backlog. The calls are queued
//! before the worker starts (10 000 in the full run), each from a new
//! caller, a third asking for a follow-up; one worker drains them against
//! crm-sim answering at once, and its peak resident memory (`VmHWM`) is
//! read once the last call is synced.
//!
//! What the design promises, and the row shows: the worker holds at most
//! its prefetch of messages at a time, so its memory does not grow with
//! the backlog (the goal is under 100 MB for 10 000 calls).

use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use super::batch::{Batch, CrmHeld, check_crm};
use super::roles::Child;
use super::{Budgets, Options, WorkerEnv, in_worker_env, start_workers, wait_synced};
use crate::sim::SimConfig;

#[derive(Debug, Clone, Serialize)]
pub struct BacklogMemoryRow {
    /// Calls queued before the worker started.
    pub calls: usize,
    pub crm_latency_ms: u64,
    pub seconds: f64,
    pub synced_per_sec: f64,
    /// The worker's peak resident memory while draining.
    pub worker_peak_rss_mib: f64,
    #[serde(flatten)]
    pub crm: CrmHeld,
    /// Messages left in the parking queue.
    pub parked: u32,
}

/// New caller `i`'s number in E.164.
fn caller(i: usize) -> String {
    format!("+3167{i:07}")
}

pub async fn run(options: &Options) -> anyhow::Result<BacklogMemoryRow> {
    let calls = options.backlog_memory_calls.max(1);
    in_worker_env(SimConfig::default(), &options.worker_vars, async |env| {
        measure(env, calls).await
    })
    .await
}

async fn measure(env: &WorkerEnv, calls: usize) -> anyhow::Result<BacklogMemoryRow> {
    let batch = Batch::new(calls, caller, |i| i % 3 == 0);
    env.preload(&batch.bodies).await?;
    let started = Instant::now();
    let (workers, _) = start_workers(env, 1, &Budgets::off()).await?;
    wait_synced(env, calls, Duration::from_secs(1_800)).await?;
    let seconds = started.elapsed().as_secs_f64();
    let rss = workers.iter().map(Child::peak_rss_mib).fold(0.0, f64::max);
    for w in workers {
        w.stop().await;
    }
    let crm = check_crm(&env.sim.snapshot(), &batch).context("backlog memory")?;
    Ok(BacklogMemoryRow {
        calls,
        crm_latency_ms: 0,
        seconds,
        synced_per_sec: calls as f64 / seconds,
        worker_peak_rss_mib: rss,
        crm,
        parked: env.parked_messages().await?,
    })
}

/// The scenario's table.
pub fn render(row: &BacklogMemoryRow) -> String {
    format!(
        "\n| worker under a backlog | calls queued first | CRM latency | time s | synced/s | worker peak RSS | CRM call records / tasks / contacts | parked |\n|---|---:|---:|---:|---:|---:|---:|---:|\n| 1 worker, new callers, a third flagged | {} | {} ms | {:.1} | {:.0} | {:.1} MiB | {} / {} / {} | {} |\n",
        row.calls,
        row.crm_latency_ms,
        row.seconds,
        row.synced_per_sec,
        row.worker_peak_rss_mib,
        row.crm.crm_call_records,
        row.crm.crm_tasks,
        row.crm.crm_contacts,
        row.parked
    )
}
