//! The benchmark: how fast callsync accepts and syncs, as ratios to
//! ceilings measured in the same run, on loopback only.
//!
//! 1. Ingest against its ceilings, at several connection counts: (a) an axum
//!    endpoint that only checks the HMAC, (b) bare lapin publishes with
//!    confirms to a quorum queue, (c) an axum endpoint that checks the HMAC
//!    as (d) does, publishes with a confirm and nothing else, (d)
//!    `callsync-ingest` with everything on, logging included.
//! 2. Worker throughput with crm-sim answering after 0 and 50 ms, 1 and 3
//!    replicas; CRM requests per call; lag from queueing to synced.
//! 3. Rate limits: crm-sim at HubSpot's 190 requests per 10 s, 3 replicas.
//! 4. Peak RSS of the ingest and worker processes.
//! 5. Each source's signature verification against voicedock's, and
//!    (d) per source (see `per_source`).
//! 6. Known callers in mixed formats on HubSpot's general and search
//!    limits, 3 replicas (see `known_callers`).
//! 7. A backlog of new callers on HubSpot's lowest general limit and its
//!    search limit, 3 replicas (see `new_callers`).
//! 8. Webhook → CRM latency on an idle system, per stage (see `latency`).
//! 9. The worker's peak RSS under a backlog of 10 000 calls (see `memory`).
//! 10. CRM requests per call with a mapping using every mode (see `mapping`).
//!
//! Every server under test runs in a child process (see `roles`). Any
//! subset of the scenarios can be run ([`Scenario`]).

mod backlog;
pub mod batch;
pub mod inspect;
pub mod known_callers;
pub mod latency;
pub mod load;
pub mod mapping;
pub mod memory;
pub mod new_callers;
pub mod per_source;
pub mod roles;

use std::net::SocketAddr;

use anyhow::Context;
use std::time::{Duration, Instant};

use callsync_shared::signature::sign_timestamped;
use callsync_shared::topology::{CALL_REPORT_KEY, Topology, headers};
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
    QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use serde::Serialize;
use sqlx::Connection;

use crate::harness::{AMQP_URL, PG_SERVER, delete_topology};
use crate::sim::{CrmSim, RateLimit, SimConfig};
use batch::{Batch, CrmHeld, check_crm};
use load::{Measured, Shot};
use roles::Child;

const SECRET: &str = "bench-secret";

/// The benchmark workers' retry tiers, in seconds (short: nothing should
/// need them, and cleanup deletes their queues).
const RETRY_SECS: [u64; 3] = [1, 2, 5];

/// The scenarios, by the name `--scenario` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// 1: ingest against its ceilings (and ingest's memory).
    Ingest,
    /// 2: worker throughput (and the workers' memory).
    Workers,
    /// 3: HubSpot's general limit, new callers.
    RateLimit,
    /// 5: each source's verification cost and ingest throughput.
    Sources,
    /// 6: known callers in mixed formats on HubSpot's limits.
    KnownCallers,
    /// 7: a backlog of new callers on HubSpot's lowest limits.
    NewCallers,
    /// 8: webhook → CRM latency on an idle system, per stage.
    Latency,
    /// 9: the worker's memory under a backlog queued before it starts.
    WorkerMemory,
    /// 10: CRM requests per call with a mapping using every mode.
    Mapping,
    /// 11: the CPU cost of ingest's read of a body, whole tree against skimmed.
    Inspect,
}

impl Scenario {
    pub const ALL: [Scenario; 10] = [
        Scenario::Ingest,
        Scenario::Workers,
        Scenario::RateLimit,
        Scenario::Sources,
        Scenario::KnownCallers,
        Scenario::NewCallers,
        Scenario::Latency,
        Scenario::WorkerMemory,
        Scenario::Mapping,
        Scenario::Inspect,
    ];
}

/// What to run, and how big.
#[derive(Debug, Clone)]
pub struct Options {
    /// The scenarios to run, in [`Scenario::ALL`]'s order whatever this one.
    pub scenarios: Vec<Scenario>,
    pub seconds_per_cell: f64,
    /// How many times (b), (c) and (d) are measured, in turn, per
    /// connection count: b, c, d, b, c, d, ... (the JSON keeps the name
    /// `pairs` it had when (b) was measured once).
    pub pairs: usize,
    pub warmup_seconds: f64,
    pub concurrencies: Vec<usize>,
    pub worker_calls: usize,
    pub rate_limit_calls: usize,
    /// The simulated CRM's limit for scenario 3 (requests per 10 s).
    pub rate_limit: usize,
    /// Scenario 5: timed batches per source, and verifications per batch.
    pub verify_batches: usize,
    pub verify_iterations: u64,
    /// Scenario 5: rounds of (d) per source (0: verification only), and
    /// at how many connections.
    pub source_rounds: usize,
    pub source_connections: usize,
    /// Scenario 6: calls, from a fifth as many known callers.
    pub known_callers_calls: usize,
    /// Scenario 7: calls, each from a new caller.
    pub new_callers_calls: usize,
    /// Scenario 8: measured calls of each kind of caller, per CRM.
    pub latency_calls: usize,
    /// Scenario 9: calls queued before the worker starts.
    pub backlog_memory_calls: usize,
    /// Scenario 10: calls of each kind of caller, per CRM.
    pub mapping_calls: usize,
    /// Scenario 1: more variables for (d), `callsync-ingest` (to measure
    /// it with other settings than its defaults).
    pub ingest_vars: Vec<(String, String)>,
    /// More variables for every worker a scenario starts (to measure the
    /// workers with other settings than the scenario's).
    pub worker_vars: Vec<(String, String)>,
}

impl Options {
    /// The full run (a few minutes on two cores).
    pub fn full() -> Self {
        // Cells are 2 s (they were 5 s) so that five rounds of (b), (c)
        // and (d) per connection count keep scenario 1 near three minutes;
        // rounds alternated in time say more than one long cell each.
        Self {
            scenarios: Scenario::ALL.to_vec(),
            seconds_per_cell: 2.0,
            warmup_seconds: 0.5,
            pairs: 5,
            concurrencies: vec![1, 16, 64],
            worker_calls: 2_000,
            rate_limit_calls: 1_000,
            rate_limit: 190,
            // About 10 s of verifying in all.
            verify_batches: 15,
            verify_iterations: 20_000,
            source_rounds: 3,
            source_connections: 16,
            known_callers_calls: 1_000,
            new_callers_calls: 300,
            latency_calls: 50,
            backlog_memory_calls: 10_000,
            mapping_calls: 100,
            ingest_vars: Vec::new(),
            worker_vars: Vec::new(),
        }
    }

    /// Tiny sizes: proves the benchmark runs, measures nothing worth quoting.
    pub fn smoke() -> Self {
        Self {
            scenarios: Scenario::ALL.to_vec(),
            seconds_per_cell: 0.5,
            warmup_seconds: 0.1,
            pairs: 2,
            concurrencies: vec![1, 4],
            worker_calls: 30,
            rate_limit_calls: 40,
            rate_limit: 100,
            verify_batches: 3,
            verify_iterations: 200,
            source_rounds: 1,
            source_connections: 4,
            known_callers_calls: 40,
            new_callers_calls: 30,
            latency_calls: 3,
            backlog_memory_calls: 100,
            mapping_calls: 3,
            ingest_vars: Vec::new(),
            worker_vars: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub postgres: String,
    pub load_generator: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct IngestRow {
    pub variant: &'static str,
    pub cells: Vec<Measured>,
}

/// (d) against its ceilings at one connection count, one value per
/// round of (b), (c) and (d).
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    pub concurrency: usize,
    pub pairs: usize,
    pub d_over_c: Spread,
    /// Each round's (d) against the same round's (b).
    pub d_over_b: Spread,
}

/// The median, minimum and maximum of some values, and the values.
#[derive(Debug, Clone, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub values: Vec<f64>,
}

impl Spread {
    pub fn of(values: Vec<f64>) -> Self {
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = match n {
            0 => f64::NAN,
            _ if n % 2 == 1 => sorted[n / 2],
            _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        };
        Self {
            median,
            min: sorted.first().copied().unwrap_or(f64::NAN),
            max: sorted.last().copied().unwrap_or(f64::NAN),
            values,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkerRow {
    pub workload: &'static str,
    pub crm_latency_ms: u64,
    pub replicas: usize,
    pub calls: usize,
    pub seconds: f64,
    pub synced_per_sec: f64,
    /// CRM requests for the calls, set-up requests excluded.
    pub crm_requests: u64,
    pub crm_requests_per_call: f64,
    pub lag_p50_ms: f64,
    pub lag_p99_ms: f64,
    #[serde(flatten)]
    pub crm: CrmHeld,
    /// Messages left in the parking queue.
    pub parked: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct RateLimitRow {
    pub calls: usize,
    pub replicas: usize,
    pub limit: String,
    pub crm_requests: u64,
    pub rate_limited: u64,
    pub ratio_429: f64,
    pub seconds: f64,
    pub theoretical_min_seconds: f64,
    pub time_over_minimum: f64,
    #[serde(flatten)]
    pub crm: CrmHeld,
    /// Messages left in the parking queue.
    pub parked: u32,
}

/// Peak RSS; `None` when the scenario that measures it did not run.
#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    pub ingest_peak_rss_mib: Option<f64>,
    pub worker_peak_rss_mib: Option<f64>,
}

/// CPU time per webhook of (c) and (d) over all their alternated cells,
/// warm-ups included: each process's CPU time over the messages it put
/// in its queue (every one a 202, none consumed until the purge counts it).
#[derive(Debug, Clone, Serialize)]
pub struct IngestCpu {
    pub c_micros_per_webhook: f64,
    pub d_micros_per_webhook: f64,
    pub c_webhooks: u64,
    pub d_webhooks: u64,
}

/// What a run measured; a scenario that did not run leaves its part empty.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub scenarios: Vec<Scenario>,
    pub ingest: Vec<IngestRow>,
    pub ingest_cpu: Option<IngestCpu>,
    pub ratios: Vec<Ratio>,
    pub workers: Vec<WorkerRow>,
    pub rate_limit: Option<RateLimitRow>,
    pub sources: Vec<per_source::SourceRow>,
    pub known_callers: Option<known_callers::KnownCallersRow>,
    pub new_callers: Option<new_callers::NewCallersRow>,
    pub latency: Option<latency::LatencyReport>,
    pub backlog_memory: Option<memory::BacklogMemoryRow>,
    pub mapping: Option<mapping::MappingReport>,
    pub inspect: Vec<inspect::InspectRow>,
    pub memory: Memory,
}

/// A voicedock end-of-call report of about 2 KiB.
pub fn body_2k(call_id: &str, phone: &str, follow_up: bool) -> Vec<u8> {
    let mut value = serde_json::json!({ "message": {
        "type": "end-of-call-report",
        "timestamp": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "call": { "id": call_id, "type": "inbound_phone_call", "status": "ended" },
        "phone_number": { "number": "+31850835037", "name": "Bench" },
        "customer": { "number": phone },
        "duration_seconds": 84,
        "summary": "",
        "analysis": { "sentiment": 7, "intent": "sales", "resolved": true, "follow_up_needed": follow_up }
    }});
    let base = serde_json::to_vec(&value).unwrap_or_default().len();
    value["message"]["summary"] = serde_json::json!("x".repeat(2048usize.saturating_sub(base)));
    serde_json::to_vec(&value).unwrap_or_default()
}

fn signed_shot(addr: SocketAddr) -> Shot {
    let body = body_2k("bench-call", "+31612345678", false);
    let ts = time::OffsetDateTime::now_utc().unix_timestamp().to_string();
    Shot {
        url: format!("http://{addr}/webhooks/voicedock"),
        headers: vec![
            ("X-Webhook-Timestamp", ts.clone()),
            ("X-Webhook-Signature", sign_timestamped(SECRET, &ts, &body)),
            ("Content-Type", "application/json".to_owned()),
        ],
        body,
    }
}

async fn amqp() -> anyhow::Result<(lapin::Connection, lapin::Channel)> {
    let connection = callsync_shared::broker::connect(AMQP_URL, "callsync-bench").await?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok((connection, channel))
}

/// Empties `queue` and says how many messages it held (0 when the purge
/// failed).
async fn purge(channel: &lapin::Channel, queue: &str) -> u32 {
    channel
        .queue_purge(queue.into(), QueuePurgeOptions::default())
        .await
        .unwrap_or(0)
}

fn pairs(list: &[(&str, String)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

/// Runs the chosen scenarios and returns the report.
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    let chosen = |scenario| options.scenarios.contains(&scenario);
    let mut report = Report {
        machine: machine().await,
        scenarios: Scenario::ALL.into_iter().filter(|s| chosen(*s)).collect(),
        ingest: Vec::new(),
        ingest_cpu: None,
        ratios: Vec::new(),
        workers: Vec::new(),
        rate_limit: None,
        sources: Vec::new(),
        known_callers: None,
        new_callers: None,
        latency: None,
        backlog_memory: None,
        mapping: None,
        inspect: Vec::new(),
        memory: Memory {
            ingest_peak_rss_mib: None,
            worker_peak_rss_mib: None,
        },
    };
    if chosen(Scenario::Ingest) {
        let measured = ingest_scenario(options).await?;
        (report.ingest, report.ratios) = (measured.rows, measured.ratios);
        report.ingest_cpu = Some(measured.cpu);
        report.memory.ingest_peak_rss_mib = Some(measured.ingest_rss);
    }
    if chosen(Scenario::Sources) {
        report.sources = per_source::run(options).await?;
    }
    if chosen(Scenario::Workers) {
        let (workers, rss) = worker_scenarios(options).await?;
        report.workers = workers;
        report.memory.worker_peak_rss_mib = Some(rss);
    }
    if chosen(Scenario::RateLimit) {
        report.rate_limit = Some(rate_limit_scenario(options).await?);
    }
    if chosen(Scenario::KnownCallers) {
        report.known_callers = Some(known_callers::run(options).await?);
    }
    if chosen(Scenario::NewCallers) {
        report.new_callers = Some(new_callers::run(options).await?);
    }
    if chosen(Scenario::Latency) {
        report.latency = Some(latency::run(options).await?);
    }
    if chosen(Scenario::WorkerMemory) {
        report.backlog_memory = Some(memory::run(options).await?);
    }
    if chosen(Scenario::Mapping) {
        report.mapping = Some(mapping::run(options).await?);
    }
    if chosen(Scenario::Inspect) {
        report.inspect = inspect::run(options)?;
    }
    Ok(report)
}

/// Scenario 2's workloads, in the order of the table: what they are, the
/// CRM's latency in ms, the replicas, and whether the callers are known
/// contacts.
const WORKLOADS: [(&str, u64, usize, bool); 5] = [
    ("new contact + follow-up", 0, 1, false),
    ("new contact + follow-up", 0, 3, false),
    ("new contact + follow-up", 50, 1, false),
    ("new contact + follow-up", 50, 3, false),
    ("known contact, no follow-up", 0, 3, true),
];

/// Scenario 2's workloads; returns them and the largest worker's peak RSS.
async fn worker_scenarios(options: &Options) -> anyhow::Result<(Vec<WorkerRow>, f64)> {
    let mut workers = Vec::new();
    let mut worker_rss: f64 = 0.0;
    for (workload, latency_ms, replicas, known_contacts) in WORKLOADS {
        let sim = SimConfig {
            latency: Duration::from_millis(latency_ms),
            ..SimConfig::default()
        };
        let calls = options.worker_calls;
        let (row, rss) = in_worker_env(sim, &options.worker_vars, async |env| {
            measure_workers(env, workload, calls, latency_ms, replicas, known_contacts).await
        })
        .await?;
        worker_rss = worker_rss.max(rss);
        workers.push(row);
    }
    Ok((workers, worker_rss))
}

async fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or_else(|| "unknown".to_owned(), |m| m.trim().to_owned());
    let kernel = std::fs::read_to_string("/proc/version")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    let postgres = match sqlx::PgConnection::connect(&format!("{PG_SERVER}/postgres")).await {
        Ok(mut c) => sqlx::query_scalar::<_, String>("SHOW server_version")
            .fetch_one(&mut c)
            .await
            .unwrap_or_default(),
        Err(_) => "unknown".to_owned(),
    };
    Machine {
        cpus: std::thread::available_parallelism().map_or(1, usize::from),
        cpu_model,
        kernel,
        postgres,
        load_generator: "in-process Rust: reqwest (hyper) client, fixed connections, keep-alive"
            .to_owned(),
    }
}

async fn ingest_scenario(options: &Options) -> anyhow::Result<IngestMeasured> {
    with_topology(async |channel, topology| {
        let bare_queue = format!("{}.bare", topology.prefix());
        let mut args = FieldTable::default();
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString(LongString::from("quorum")),
        );
        channel
            .queue_declare(
                bare_queue.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                args,
            )
            .await?;
        let result = measure_ingest(options, channel, topology, &bare_queue).await;
        let _ = channel
            .queue_delete(bare_queue.as_str().into(), QueueDeleteOptions::default())
            .await;
        result
    })
    .await
}

/// Runs `measure` with a confirm channel and a topology of a prefix of its
/// own, then deletes the topology and closes the connection, whatever
/// happened (the child processes die with their handles): the ingest
/// scenarios must not leave exchanges and queues behind.
async fn with_topology<T>(
    measure: impl AsyncFnOnce(&lapin::Channel, &Topology) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let id = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let topology = Topology::new(format!("bench-{id}"));
    let (connection, channel) = amqp().await?;
    let result = measure(&channel, &topology).await;
    delete_topology(&channel, &topology, &[]).await;
    let _ = connection.close(200, "done".into()).await;
    result
}

async fn measure_ingest(
    options: &Options,
    channel: &lapin::Channel,
    topology: &Topology,
    bare_queue: &str,
) -> anyhow::Result<IngestMeasured> {
    let hmac = measure_hmac_only(options).await?;
    let mut measured = alternate_b_c_and_d(options, channel, topology, bare_queue).await?;
    measured.rows.insert(0, hmac);
    Ok(measured)
}

/// Scenario 1's results: rows (a) to (d), (d)'s ratios, ingest's peak RSS
/// and the CPU per webhook of (c) and (d).
struct IngestMeasured {
    rows: Vec<IngestRow>,
    ratios: Vec<Ratio>,
    ingest_rss: f64,
    cpu: IngestCpu,
}

fn cell_times(options: &Options) -> (Duration, Duration) {
    (
        Duration::from_secs_f64(options.warmup_seconds),
        Duration::from_secs_f64(options.seconds_per_cell),
    )
}

/// (a) HMAC only.
async fn measure_hmac_only(options: &Options) -> anyhow::Result<IngestRow> {
    let (warmup, duration) = cell_times(options);
    let (child, addr) = Child::start(
        "hmac-only",
        |addr| {
            pairs(&[
                ("BENCH_ADDR", addr.to_string()),
                ("CALLSYNC_VOICEDOCK_SECRET", SECRET.to_owned()),
            ])
        },
        None,
    )
    .await?;
    let mut cells = Vec::new();
    for &c in &options.concurrencies {
        let sample = load::http(&signed_shot(addr), c, warmup, duration).await;
        cells.push(Measured::pooled(&[sample]));
    }
    child.stop().await;
    Ok(IngestRow {
        variant: "(a) axum + HMAC check only",
        cells,
    })
}

/// (b), (c) and (d), measured in turn (b, c, d, b, c, d, ...) at each
/// connection count, so that whatever else the machine does in the meantime
/// weighs on all three alike. (b) publishes from the benchmark's own
/// connection; both servers stay up throughout (an idle one only answers
/// broker heartbeats), so that no cell pays for a start. The table pools
/// each variant's runs; the ratios are per round of three.
async fn alternate_b_c_and_d(
    options: &Options,
    channel: &lapin::Channel,
    topology: &Topology,
    bare_queue: &str,
) -> anyhow::Result<IngestMeasured> {
    let (warmup, duration) = cell_times(options);
    let body = body_2k("bench-call", "+31612345678", false);
    let (confirm, confirm_addr) = start_bare_confirm(bare_queue).await?;
    let (ingest, ingest_addr) = start_ingest(topology, &options.ingest_vars).await?;
    // Both processes' CPU from here on counts, readiness checks excluded.
    let cpu_before = (confirm.cpu_seconds(), ingest.cpu_seconds());
    let (mut c_webhooks, mut d_webhooks) = (0u64, 0u64);
    let (mut b_cells, mut c_cells, mut d_cells) = (Vec::new(), Vec::new(), Vec::new());
    let mut ratios = Vec::new();
    for &conc in &options.concurrencies {
        let (mut b_runs, mut c_runs, mut d_runs) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..options.pairs {
            b_runs
                .push(load::publish(channel, "", bare_queue, &body, conc, warmup, duration).await);
            purge(channel, bare_queue).await;
            c_runs.push(load::http(&signed_shot(confirm_addr), conc, warmup, duration).await);
            c_webhooks += u64::from(purge(channel, bare_queue).await);
            d_runs.push(load::http(&signed_shot(ingest_addr), conc, warmup, duration).await);
            d_webhooks += u64::from(purge(channel, &topology.calls_queue()).await);
        }
        ratios.push(pair_ratios(conc, &b_runs, &c_runs, &d_runs));
        b_cells.push(Measured::pooled(&b_runs));
        c_cells.push(Measured::pooled(&c_runs));
        d_cells.push(Measured::pooled(&d_runs));
    }
    let per_webhook = |seconds: f64, webhooks: u64| seconds * 1e6 / webhooks.max(1) as f64;
    let cpu = IngestCpu {
        c_micros_per_webhook: per_webhook(confirm.cpu_seconds() - cpu_before.0, c_webhooks),
        d_micros_per_webhook: per_webhook(ingest.cpu_seconds() - cpu_before.1, d_webhooks),
        c_webhooks,
        d_webhooks,
    };
    let ingest_rss = ingest.peak_rss_mib();
    ingest.stop().await;
    confirm.stop().await;
    Ok(IngestMeasured {
        rows: vec![
            IngestRow {
                variant: "(b) lapin publish + confirm, quorum queue",
                cells: b_cells,
            },
            IngestRow {
                variant: "(c) axum + HMAC + publish + confirm",
                cells: c_cells,
            },
            IngestRow {
                variant: "(d) callsync-ingest",
                cells: d_cells,
            },
        ],
        ratios,
        ingest_rss,
        cpu,
    })
}

/// (d) over (c) and over (b), round by round.
fn pair_ratios(
    concurrency: usize,
    b: &[load::Sample],
    c: &[load::Sample],
    d: &[load::Sample],
) -> Ratio {
    let d_over = |base: &dyn Fn(usize) -> f64| -> Vec<f64> {
        d.iter()
            .enumerate()
            .map(|(i, run)| run.accepted_per_sec() / base(i).max(1e-9))
            .collect()
    };
    Ratio {
        concurrency,
        pairs: d.len(),
        d_over_c: Spread::of(d_over(&|i| c[i].accepted_per_sec())),
        d_over_b: Spread::of(d_over(&|i| b[i].accepted_per_sec())),
    }
}

async fn start_bare_confirm(bare_queue: &str) -> anyhow::Result<(Child, SocketAddr)> {
    Child::start(
        "bare-confirm",
        |addr| {
            pairs(&[
                ("BENCH_ADDR", addr.to_string()),
                ("BENCH_AMQP_URL", AMQP_URL.to_owned()),
                ("BENCH_QUEUE", bare_queue.to_owned()),
                ("CALLSYNC_VOICEDOCK_SECRET", SECRET.to_owned()),
            ])
        },
        None,
    )
    .await
}

/// `callsync-ingest` on `topology`, voicedock signed with the bench's
/// secret unless `credentials` say otherwise.
async fn start_ingest(
    topology: &Topology,
    credentials: &[(String, String)],
) -> anyhow::Result<(Child, SocketAddr)> {
    Child::start(
        "ingest",
        |addr| {
            let mut vars = pairs(&[
                ("CALLSYNC_INGEST_ADDR", addr.to_string()),
                ("CALLSYNC_AMQP_URL", AMQP_URL.to_owned()),
                ("CALLSYNC_AMQP_PREFIX", topology.prefix().to_owned()),
                ("CALLSYNC_VOICEDOCK_SECRET", SECRET.to_owned()),
            ]);
            vars.extend_from_slice(credentials);
            vars
        },
        Some("/readyz"),
    )
    .await
}

/// Calls by ledger status, and why one parked call was parked.
#[derive(Debug, Default)]
struct Progress {
    synced: i64,
    parked: i64,
    reason: Option<String>,
}

/// A private prefix, database and crm-sim for one worker measurement.
struct WorkerEnv {
    topology: Topology,
    database: String,
    sim: CrmSim,
    /// `--worker-var`s, given to every worker after the scenario's own.
    extra_vars: Vec<(String, String)>,
}

impl WorkerEnv {
    async fn new(sim: SimConfig, extra_vars: &[(String, String)]) -> anyhow::Result<Self> {
        let id = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
        let sim = CrmSim::start(SocketAddr::from(([127, 0, 0, 1], 0)), sim).await?;
        Ok(Self {
            topology: Topology::new(format!("bench-{id}")),
            database: format!("callsync_bench_{id}"),
            sim,
            extra_vars: extra_vars.to_vec(),
        })
    }

    /// The variables of a worker whose operations listen on `ops`, with
    /// its CRM budgets (`off`, or a rate such as `190/10s`).
    fn worker_vars(&self, ops: SocketAddr, budgets: &Budgets) -> Vec<(String, String)> {
        let mut vars = pairs(&[
            ("CALLSYNC_AMQP_URL", AMQP_URL.to_owned()),
            ("CALLSYNC_AMQP_PREFIX", self.topology.prefix().to_owned()),
            (
                "CALLSYNC_DATABASE_URL",
                format!("{PG_SERVER}/{}", self.database),
            ),
            ("CALLSYNC_METRICS_ADDR", ops.to_string()),
            ("CALLSYNC_CRM", "hubspot".to_owned()),
            ("CALLSYNC_HUBSPOT_TOKEN", self.sim.token()),
            ("CALLSYNC_HUBSPOT_BASE_URL", self.sim.base_url()),
            ("CALLSYNC_CRM_INDEX_LAG", "0s".to_owned()),
            ("CALLSYNC_CRM_RATE", budgets.general.clone()),
            ("CALLSYNC_CRM_SEARCH_RATE", budgets.search.clone()),
            (
                "CALLSYNC_RETRY_DELAYS",
                RETRY_SECS.map(|s| format!("{s}s")).join(","),
            ),
        ]);
        // Set after the scenario's, a variable given twice takes this value.
        vars.extend(self.extra_vars.iter().cloned());
        vars
    }

    /// [`WorkerEnv::worker_vars`] pointed at crm-sim as `crm` (`hubspot`,
    /// `pipedrive`, `gohighlevel`, `salesforce`) instead of HubSpot.
    fn worker_vars_for(
        &self,
        crm: &str,
        ops: SocketAddr,
        budgets: &Budgets,
    ) -> Vec<(String, String)> {
        let mut vars: Vec<(String, String)> = self
            .worker_vars(ops, budgets)
            .into_iter()
            .filter(|(k, _)| k != "CALLSYNC_CRM" && !k.starts_with("CALLSYNC_HUBSPOT_"))
            .collect();
        let (token, base) = (self.sim.token(), self.sim.base_url());
        let prefix = format!("CALLSYNC_{}", crm.to_uppercase());
        let credentials = match crm {
            "salesforce" => vec![
                ("CALLSYNC_SALESFORCE_ACCESS_TOKEN".to_owned(), token),
                ("CALLSYNC_SALESFORCE_INSTANCE_URL".to_owned(), base),
            ],
            _ => vec![
                (format!("{prefix}_TOKEN"), token),
                (format!("{prefix}_BASE_URL"), base),
            ],
        };
        vars.push(("CALLSYNC_CRM".to_owned(), crm.to_owned()));
        vars.extend(credentials);
        if crm == "gohighlevel" {
            // The one location crm-sim serves.
            vars.extend(pairs(&[(
                "CALLSYNC_GOHIGHLEVEL_LOCATION_ID",
                "loc-callsync-test".to_owned(),
            )]));
        }
        vars
    }

    /// Publishes `calls` reports as ingest would.
    async fn preload(&self, calls: &[Vec<u8>]) -> anyhow::Result<()> {
        self.preload_from(0, calls).await
    }

    /// [`WorkerEnv::preload`] of a batch's calls from call `first` on (their
    /// call id headers counting from there).
    async fn preload_from(&self, first: usize, calls: &[Vec<u8>]) -> anyhow::Result<()> {
        let (connection, channel) = amqp().await?;
        self.topology.declare_core(&channel).await?;
        let mut pending = Vec::new();
        for (i, body) in (first..).zip(calls) {
            let mut table = FieldTable::default();
            headers::set_text(&mut table, headers::SOURCE, "voicedock");
            headers::set_text(&mut table, headers::CALL_ID, &batch::call_id(i));
            let now_ms = callsync_shared::time::unix_ms(time::OffsetDateTime::now_utc());
            headers::set_int(&mut table, headers::RECEIVED_AT, now_ms);
            pending.push(
                channel
                    .basic_publish(
                        self.topology.exchange().as_str().into(),
                        CALL_REPORT_KEY.into(),
                        BasicPublishOptions {
                            mandatory: true,
                            ..BasicPublishOptions::default()
                        },
                        body,
                        lapin::BasicProperties::default()
                            .with_delivery_mode(2)
                            .with_headers(table),
                    )
                    .await?,
            );
        }
        for confirm in pending {
            anyhow::ensure!(confirm.await?.is_ack(), "preload not confirmed");
        }
        let _ = connection.close(200, "done".into()).await;
        Ok(())
    }

    /// How far the ledger is: synced and parked calls.
    async fn progress(&self) -> Progress {
        let Ok(mut c) =
            sqlx::PgConnection::connect(&format!("{PG_SERVER}/{}", self.database)).await
        else {
            return Progress::default();
        };
        sqlx::query_as(
            "SELECT count(*) FILTER (WHERE status = 'synced'),
                    count(*) FILTER (WHERE status = 'parked'),
                    max(last_error) FILTER (WHERE status = 'parked')
             FROM calls",
        )
        .fetch_one(&mut c)
        .await
        .map(|(synced, parked, reason)| Progress {
            synced,
            parked,
            reason,
        })
        .unwrap_or_default()
    }

    /// Messages in the parking queue: calls an operator would have to
    /// replay (counted there too, as not every parked message has a
    /// ledger row).
    async fn parked_messages(&self) -> anyhow::Result<u32> {
        let (connection, channel) = amqp().await?;
        let queue = channel
            .queue_declare(
                self.topology.parking_queue().as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await;
        let _ = connection.close(200, "done".into()).await;
        Ok(queue?.message_count())
    }

    /// Milliseconds from `since` to each call's sync, sorted.
    async fn lags_ms(&self, since: time::OffsetDateTime) -> Vec<f64> {
        let Ok(mut c) =
            sqlx::PgConnection::connect(&format!("{PG_SERVER}/{}", self.database)).await
        else {
            return Vec::new();
        };
        let synced: Vec<time::OffsetDateTime> =
            sqlx::query_scalar("SELECT synced_at FROM calls WHERE synced_at IS NOT NULL")
                .fetch_all(&mut c)
                .await
                .unwrap_or_default();
        let mut lags: Vec<f64> = synced
            .iter()
            .map(|t| (*t - since).as_seconds_f64() * 1_000.0)
            .collect();
        lags.sort_by(f64::total_cmp);
        lags
    }

    async fn cleanup(&self) {
        if let Ok((connection, channel)) = amqp().await {
            delete_topology(
                &channel,
                &self.topology,
                &RETRY_SECS.map(Duration::from_secs),
            )
            .await;
            let _ = connection.close(200, "done".into()).await;
        }
        if let Ok(mut admin) = sqlx::PgConnection::connect(&format!("{PG_SERVER}/postgres")).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.database
            )))
            .execute(&mut admin)
            .await;
        }
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

/// The operations that are a worker's one-time set-up (its custom
/// properties ensured on its first call), not any call's.
const SETUP_OPERATIONS: [&str; 3] = ["create_group", "create_property", "read_properties"];

/// Requests that are one-time set-up, not per call.
fn setup_requests(stats: &crate::sim::Stats) -> u64 {
    SETUP_OPERATIONS
        .iter()
        .filter_map(|op| stats.by_operation.get(*op))
        .sum()
}

/// The workers' client-side CRM budgets (`CALLSYNC_CRM_RATE` and
/// `CALLSYNC_CRM_SEARCH_RATE`).
#[derive(Debug, Clone)]
struct Budgets {
    general: String,
    search: String,
}

impl Budgets {
    fn new(general: impl Into<String>, search: impl Into<String>) -> Self {
        Self {
            general: general.into(),
            search: search.into(),
        }
    }

    /// Against a CRM without limits, the worker needs none of its own (a
    /// search budget left at HubSpot's default would pace every workload at
    /// five searches a second).
    fn off() -> Self {
        Self::new("off", "off")
    }
}

async fn start_workers(
    env: &WorkerEnv,
    replicas: usize,
    budgets: &Budgets,
) -> anyhow::Result<(Vec<Child>, Vec<SocketAddr>)> {
    let mut workers = Vec::new();
    let mut addrs = Vec::new();
    for _ in 0..replicas {
        let (worker, ops) = Child::start(
            "worker",
            |ops| env.worker_vars(ops, budgets),
            Some("/readyz"),
        )
        .await?;
        workers.push(worker);
        addrs.push(ops);
    }
    Ok((workers, addrs))
}

/// Waits until every worker's heartbeat has seen all of them, so that each
/// takes its share of the budgets before the backlog arrives, as in steady
/// operation.
async fn wait_for_replicas(addrs: &[SocketAddr]) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let all = format!(" {}", addrs.len());
    for addr in addrs {
        loop {
            let text = client
                .get(format!("http://{addr}/metrics"))
                .send()
                .await?
                .text()
                .await?;
            if text
                .lines()
                .any(|l| l.starts_with("callsync_worker_live_workers") && l.ends_with(&all))
            {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "workers did not see each other");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

async fn wait_synced(env: &WorkerEnv, calls: usize, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let progress = env.progress().await;
        // A parked call never syncs: fail now rather than at the deadline.
        anyhow::ensure!(
            progress.parked == 0,
            "{} calls parked, e.g. because: {}",
            progress.parked,
            progress.reason.unwrap_or_default()
        );
        if progress.synced as usize >= calls {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} of {calls} calls synced within {limit:?}",
            progress.synced
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `measure` in a [`WorkerEnv`] of its own on a simulator configured
/// by `sim`, and cleans up whatever happened: a failed measurement must not
/// leave queues and a database behind (its worker processes die with it).
async fn in_worker_env<T>(
    sim: SimConfig,
    extra_vars: &[(String, String)],
    measure: impl AsyncFnOnce(&WorkerEnv) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let env = WorkerEnv::new(sim, extra_vars).await?;
    let result = measure(&env).await;
    env.cleanup().await;
    result
}

/// A scenario run on several CRMs: its rows, every CRM's in turn, and what
/// each CRM held afterwards.
#[derive(Debug, Clone, Serialize)]
pub struct PerCrm<R, H> {
    pub rows: Vec<R>,
    pub crms: Vec<H>,
}

/// What a scenario left in one CRM: the records checked, and the parking
/// queue.
#[derive(Debug, Clone, Serialize)]
pub struct CrmLeft {
    pub crm: &'static str,
    #[serde(flatten)]
    pub held: CrmHeld,
    /// Messages left in the parking queue.
    pub parked: u32,
}

/// Runs `measure` once per CRM of `crms`, each in a [`WorkerEnv`] of its own
/// on a simulator configured by `sim`.
async fn per_crm<R, H>(
    crms: &[&'static str],
    sim: &SimConfig,
    extra_vars: &[(String, String)],
    measure: impl AsyncFn(&WorkerEnv, &'static str) -> anyhow::Result<(Vec<R>, H)>,
) -> anyhow::Result<PerCrm<R, H>> {
    let mut report = PerCrm {
        rows: Vec::new(),
        crms: Vec::new(),
    };
    for &crm in crms {
        let (rows, held) =
            in_worker_env(sim.clone(), extra_vars, async |env| measure(env, crm).await)
                .await
                .with_context(|| format!("on {crm}"))?;
        report.rows.extend(rows);
        report.crms.push(held);
    }
    Ok(report)
}

/// What a backlog drained on the CRM's limits left.
struct Drained {
    /// The simulator's counters once the workers were up, before the backlog.
    before: crate::sim::Stats,
    /// The simulator once the workers stopped.
    snapshot: crate::sim::Snapshot,
    seconds: f64,
    /// Each replica's own account of the backlog, from its metrics.
    per_replica: Vec<ReplicaCounts>,
}

/// One replica's account of a backlog, read from its `/metrics` just
/// before it stops: how the work and the budgets were spread.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplicaCounts {
    /// Messages it finished (synced, duplicate, retried, parked, ...).
    pub messages: u64,
    /// Search requests it sent, refused ones included.
    pub searches: u64,
    /// Seconds its requests waited for its own budgets, summed over requests.
    pub throttled_seconds: f64,
    /// Calls it sent to a retry tier.
    pub retries: u64,
}

impl ReplicaCounts {
    /// Reads the counts from a worker's Prometheus text.
    fn from_metrics(text: &str) -> Self {
        let mut counts = Self::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((name, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let value: f64 = value.parse().unwrap_or(0.0);
            let metric = name.split('{').next().unwrap_or(name);
            match metric {
                "callsync_worker_messages_total" => counts.messages += value as u64,
                "callsync_worker_crm_request_seconds_count"
                    if name.contains("operation=\"search_") =>
                {
                    counts.searches += value as u64;
                }
                "callsync_worker_crm_throttled_seconds_sum" => counts.throttled_seconds += value,
                "callsync_worker_retries_total" => counts.retries += value as u64,
                _ => {}
            }
        }
        counts
    }
}

/// Each worker's [`ReplicaCounts`], in `addrs`' order.
async fn replica_counts(addrs: &[SocketAddr]) -> anyhow::Result<Vec<ReplicaCounts>> {
    let client = reqwest::Client::new();
    let mut counts = Vec::new();
    for addr in addrs {
        let text = client
            .get(format!("http://{addr}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        counts.push(ReplicaCounts::from_metrics(&text));
    }
    Ok(counts)
}

/// Starts `replicas` workers with `budgets` and waits until they see one
/// another, then times `batch` from queued to all synced, and stops them:
/// how the scenarios on the CRM's limits measure (each replica takes its
/// share of the budgets before the backlog arrives, as in steady operation).
async fn drain_on_limits(
    env: &WorkerEnv,
    replicas: usize,
    budgets: &Budgets,
    batch: &Batch,
) -> anyhow::Result<Drained> {
    let (workers, addrs) = start_workers(env, replicas, budgets).await?;
    wait_for_replicas(&addrs).await?;
    let before = env.sim.snapshot().stats;
    let started = Instant::now();
    env.preload(&batch.bodies).await?;
    wait_synced(env, batch.bodies.len(), Duration::from_secs(900)).await?;
    let seconds = started.elapsed().as_secs_f64();
    let per_replica = replica_counts(&addrs).await?;
    for w in workers {
        w.stop().await;
    }
    Ok(Drained {
        before,
        snapshot: env.sim.snapshot(),
        seconds,
        per_replica,
    })
}

async fn measure_workers(
    env: &WorkerEnv,
    workload: &'static str,
    calls: usize,
    latency_ms: u64,
    replicas: usize,
    known_contacts: bool,
) -> anyhow::Result<(WorkerRow, f64)> {
    // Every call from a caller of its own; flagged unless the contact is known.
    let batch = Batch::new(calls, |i| format!("+3162{i:07}"), |_| !known_contacts);
    if known_contacts {
        for phone in &batch.callers {
            env.sim.seed_contact(
                serde_json::json!({ "phone": phone })
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            );
        }
    }
    // Start the workers first (their start-up is not throughput), then queue the batch.
    let (workers, _) = start_workers(env, replicas, &Budgets::off()).await?;
    let queued_at = time::OffsetDateTime::now_utc();
    let started = Instant::now();
    env.preload(&batch.bodies).await?;
    wait_synced(env, calls, Duration::from_secs(600)).await?;
    let seconds = started.elapsed().as_secs_f64();
    let rss = workers.iter().map(Child::peak_rss_mib).fold(0.0, f64::max);
    for w in workers {
        w.stop().await;
    }
    let snapshot = env.sim.snapshot();
    let crm = check_crm(&snapshot, &batch).with_context(|| {
        format!("worker workload {workload:?}, CRM latency {latency_ms} ms, {replicas} replicas")
    })?;
    let stats = snapshot.stats;
    let crm_requests = stats.requests - setup_requests(&stats);
    let lags = env.lags_ms(queued_at).await;
    Ok((
        WorkerRow {
            workload,
            crm_latency_ms: latency_ms,
            replicas,
            calls,
            seconds,
            synced_per_sec: calls as f64 / seconds,
            crm_requests,
            crm_requests_per_call: crm_requests as f64 / calls as f64,
            lag_p50_ms: percentile(&lags, 0.5),
            lag_p99_ms: percentile(&lags, 0.99),
            crm,
            parked: env.parked_messages().await?,
        },
        rss,
    ))
}

async fn rate_limit_scenario(options: &Options) -> anyhow::Result<RateLimitRow> {
    let window = Duration::from_secs(10);
    let limit = RateLimit {
        max: options.rate_limit,
        window,
        retry_after_secs: None,
    };
    let sim = SimConfig {
        rate_limit: Some(limit),
        ..SimConfig::default()
    };
    in_worker_env(sim, &options.worker_vars, async |env| {
        measure_rate_limit(env, options, window).await
    })
    .await
}

async fn measure_rate_limit(
    env: &WorkerEnv,
    options: &Options,
    window: Duration,
) -> anyhow::Result<RateLimitRow> {
    let calls = options.rate_limit_calls;
    // Realistic traffic: a tenth as many callers as calls, a third flagged.
    let callers = (calls / 10).max(1);
    let batch = Batch::new(
        calls,
        |i| format!("+3163{:07}", i % callers),
        |i| i % 3 == 0,
    );
    // The simulated CRM limits no search here, so neither do the workers.
    let budgets = Budgets::new(format!("{}/10s", options.rate_limit), "off");
    let Drained {
        before,
        snapshot,
        seconds,
        ..
    } = drain_on_limits(env, 3, &budgets, &batch).await?;
    let crm = check_crm(&snapshot, &batch).context("rate-limit measurement")?;
    let stats = snapshot.stats;
    let requests = stats.requests - before.requests;
    let per_second = options.rate_limit as f64 / window.as_secs_f64();
    let minimum = requests as f64 / per_second;
    Ok(RateLimitRow {
        calls,
        replicas: 3,
        limit: format!("{}/10s", options.rate_limit),
        crm_requests: requests,
        rate_limited: stats.rate_limited,
        ratio_429: stats.rate_limited as f64 / requests.max(1) as f64,
        seconds,
        theoretical_min_seconds: minimum,
        time_over_minimum: seconds / minimum.max(1e-9),
        crm,
        parked: env.parked_messages().await?,
    })
}

/// The report as text tables (also docs/performance.md's figures);
/// a scenario that did not run has no table.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let m = &report.machine;
    out.push_str(&format!(
        "Machine: {} CPUs ({}), {}, PostgreSQL {}; load generator: {}\n",
        m.cpus, m.cpu_model, m.kernel, m.postgres, m.load_generator
    ));
    if !report.ingest.is_empty() {
        out.push_str(&render_ingest(report));
    }
    out.push_str(&per_source::render(&report.sources));
    if !report.workers.is_empty() {
        out.push_str(&render_workers(&report.workers));
    }
    if let Some(r) = &report.rate_limit {
        out.push_str(&format!(
            "\n| rate limit | calls | replicas | CRM requests | 429s | 429 ratio | time s | minimum s | time / minimum | CRM call records / tasks | parked |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n| {} | {} | {} | {} | {} | {:.4} | {:.1} | {:.1} | {:.2} | {} / {} | {} |\n",
            r.limit, r.calls, r.replicas, r.crm_requests, r.rate_limited, r.ratio_429, r.seconds, r.theoretical_min_seconds, r.time_over_minimum, r.crm.crm_call_records, r.crm.crm_tasks, r.parked
        ));
    }
    if let Some(k) = &report.known_callers {
        out.push_str(&known_callers::render(k));
    }
    if let Some(n) = &report.new_callers {
        out.push_str(&new_callers::render(n));
    }
    if let Some(l) = &report.latency {
        out.push_str(&latency::render(l));
    }
    if let Some(m) = &report.backlog_memory {
        out.push_str(&memory::render(m));
    }
    if let Some(m) = &report.mapping {
        out.push_str(&mapping::render(m));
    }
    out.push_str(&inspect::render(&report.inspect));
    let rss =
        |mib: Option<f64>| mib.map_or_else(|| "not measured".to_owned(), |m| format!("{m:.1} MiB"));
    if report.memory.ingest_peak_rss_mib.is_some() || report.memory.worker_peak_rss_mib.is_some() {
        out.push_str(&format!(
            "\n| process | peak RSS |\n|---|---:|\n| callsync-ingest (scenario 1) | {} |\n| callsync-worker (scenario 2, largest replica) | {} |\n",
            rss(report.memory.ingest_peak_rss_mib),
            rss(report.memory.worker_peak_rss_mib)
        ));
    }
    out
}

fn render_ingest(report: &Report) -> String {
    let mut out = String::new();
    out.push_str("\n| ingest variant | connections | accepted/s | p50 ms | p99 ms | failed |\n|---|---:|---:|---:|---:|---:|\n");
    for row in &report.ingest {
        for c in &row.cells {
            out.push_str(&format!(
                "| {} | {} | {:.0} | {:.2} | {:.2} | {} |\n",
                row.variant, c.concurrency, c.accepted_per_sec, c.p50_ms, c.p99_ms, c.failed
            ));
        }
    }
    out.push_str(&format!(
        "\n(b), (c) and (d): {} runs each per connection count, in turn; the rows above pool them.\n",
        report.ratios.first().map_or(0, |r| r.pairs)
    ));
    out.push_str("\n| connections | (d)/(c) median | min | max | (d)/(b) median | min | max |\n|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in &report.ratios {
        let (c, b) = (&r.d_over_c, &r.d_over_b);
        out.push_str(&format!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
            r.concurrency, c.median, c.min, c.max, b.median, b.min, b.max
        ));
    }
    if let Some(cpu) = &report.ingest_cpu {
        out.push_str(&format!(
            "\n| CPU per webhook, all cells | (c) | (d) | (d)/(c) |\n|---|---:|---:|---:|\n| µs (webhooks) | {:.1} ({}) | {:.1} ({}) | {:.2} |\n",
            cpu.c_micros_per_webhook,
            cpu.c_webhooks,
            cpu.d_micros_per_webhook,
            cpu.d_webhooks,
            cpu.d_micros_per_webhook / cpu.c_micros_per_webhook.max(1e-9)
        ));
    }
    out
}

fn render_workers(workers: &[WorkerRow]) -> String {
    let mut out = String::new();
    out.push_str("\n| worker workload | CRM latency | replicas | calls | synced/s | CRM requests/call | lag p50 s | lag p99 s | CRM call records / tasks | parked |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for w in workers {
        out.push_str(&format!(
            "| {} | {} ms | {} | {} | {:.1} | {:.2} | {:.2} | {:.2} | {} / {} | {} |\n",
            w.workload,
            w.crm_latency_ms,
            w.replicas,
            w.calls,
            w.synced_per_sec,
            w.crm_requests_per_call,
            w.lag_p50_ms / 1_000.0,
            w.lag_p99_ms / 1_000.0,
            w.crm.crm_call_records,
            w.crm.crm_tasks,
            w.parked
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::Spread;

    #[test]
    fn the_median_of_five_pairs_is_the_middle_one_and_the_values_keep_their_order() {
        let spread = Spread::of(vec![0.9, 0.7, 1.1, 0.8, 1.0]);
        assert_eq!((spread.median, spread.min, spread.max), (0.9, 0.7, 1.1));
        assert_eq!(spread.values, [0.9, 0.7, 1.1, 0.8, 1.0]);
    }

    #[test]
    fn the_median_of_two_pairs_is_their_mean() {
        let spread = Spread::of(vec![1.2, 0.8]);
        assert!((spread.median - 1.0).abs() < 1e-12);
        assert_eq!((spread.min, spread.max), (0.8, 1.2));
    }
}
