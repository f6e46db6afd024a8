//! [`TestApp`]: the whole of callsync for one test, in the style of
//! zero-to-production's `spawn_app`: a private crm-sim, ingest, any number
//! of workers (in-process or as processes) and an HTTP client, all on the
//! test's own database and queue names.
//!
//! Its two promises make the tests strict:
//! - [`TestApp::post`] and friends assert the 202, so a refused report fails
//!   where it was sent, not later as a timeout;
//! - [`TestApp::settle`] returns the CRM's state only when nothing can change
//!   it any more: every queue of the test (work and retry tiers) is empty, no
//!   worker holds a delivery, the ledger has no call in progress and the
//!   simulator has no request left to apply, and all of that stayed so for a
//!   quiet window. A late duplicate has nowhere to hide.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use callsync_shared::config::Env;
use callsync_worker::ledger::LedgerCounts;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::{
    AMQP_URL, CrmState, POSTCALL_TOKEN, Parked, Service, TestEnv, WAIT, WorkerProcess, fixture,
    voicedock_headers, voicedock_marker, voicedock_report,
};
use crate::sim::{SimConfig, Snapshot};
use crate::wait::{eventually, eventually_every};

/// How long the state must stay unchanged, with nothing in flight, before
/// [`TestApp::settle`] trusts it. Nothing is waiting in a delay queue at
/// that point (those are checked empty), so this only has to outlast the
/// hand-over between a queue and a worker.
const QUIET: Duration = Duration::from_millis(400);

/// One worker of the app.
#[derive(Debug)]
enum Worker {
    InProcess(Service),
    Process(WorkerProcess),
}

impl Worker {
    fn base_url(&self) -> &str {
        match self {
            Worker::InProcess(s) => &s.base_url,
            Worker::Process(p) => &p.base_url,
        }
    }
}

/// callsync running for one test.
#[derive(Debug)]
pub struct TestApp {
    pub env: TestEnv,
    pub ingest: Service,
    /// The app's one HTTP client (the environment's).
    pub client: reqwest::Client,
    ingest_vars: Vec<(String, String)>,
    worker_vars: Vec<(String, String)>,
    workers: Vec<Option<Worker>>,
}

/// What a [`TestApp`] is made of, set before it starts: the simulator, the
/// CRM, variables for every service or for ingest or the workers only, and
/// how many workers run in-process and as processes.
#[derive(Debug)]
#[must_use]
pub struct AppBuilder {
    sim: SimConfig,
    crm: &'static str,
    vars: Vec<(String, String)>,
    ingest_vars: Vec<(String, String)>,
    worker_vars: Vec<(String, String)>,
    workers: usize,
    processes: usize,
    wait_for_ingest: bool,
}

impl Default for AppBuilder {
    fn default() -> Self {
        Self {
            sim: SimConfig::default(),
            crm: "hubspot",
            vars: Vec::new(),
            ingest_vars: Vec::new(),
            worker_vars: Vec::new(),
            workers: 1,
            processes: 0,
            wait_for_ingest: true,
        }
    }
}

impl AppBuilder {
    /// The simulator's configuration.
    pub fn sim(mut self, sim: SimConfig) -> Self {
        self.sim = sim;
        self
    }

    /// A simulator that answers every request `latency` late.
    pub fn latency(self, latency: Duration) -> Self {
        self.sim(SimConfig {
            latency,
            ..SimConfig::default()
        })
    }

    /// The CRM the workers sync to (crm-sim speaks them all).
    pub fn crm(mut self, crm: &'static str) -> Self {
        self.crm = crm;
        self
    }

    /// A variable for every service (see [`TestEnv::set`]).
    pub fn set(mut self, name: &str, value: &str) -> Self {
        self.vars.push((name.to_owned(), value.to_owned()));
        self
    }

    /// A variable for ingest only.
    pub fn ingest_set(mut self, name: &str, value: &str) -> Self {
        self.ingest_vars.push((name.to_owned(), value.to_owned()));
        self
    }

    /// A variable for the workers only, those started later included.
    pub fn worker_set(mut self, name: &str, value: &str) -> Self {
        self.worker_vars.push((name.to_owned(), value.to_owned()));
        self
    }

    /// How many in-process workers start with the app (one unless told).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// How many workers start as child processes, after the in-process ones.
    pub fn worker_processes(mut self, n: usize) -> Self {
        self.processes = n;
        self
    }

    /// Starts ingest without waiting until it is ready (for a test of an
    /// ingest that cannot be).
    pub fn ingest_may_stay_unready(mut self) -> Self {
        self.wait_for_ingest = false;
        self
    }

    /// Starts the simulator, ingest and the workers.
    pub async fn start(self) -> TestApp {
        let mut env = TestEnv::with_sim(self.sim).await;
        env.crm = self.crm;
        for (name, value) in &self.vars {
            env.set(name, value);
        }
        let ingest_env = with_vars(env.ingest_env(), &self.ingest_vars);
        let ingest = if self.wait_for_ingest {
            env.start_ingest_with(ingest_env).await
        } else {
            env.launch_ingest(ingest_env).await
        };
        let mut app = TestApp {
            client: env.client.clone(),
            env,
            ingest,
            ingest_vars: self.ingest_vars,
            worker_vars: self.worker_vars,
            workers: Vec::new(),
        };
        for _ in 0..self.workers {
            app.add_worker().await;
        }
        for _ in 0..self.processes {
            app.add_worker_process_with(app.worker_env()).await;
        }
        app
    }
}

fn with_vars(mut env: Env, vars: &[(String, String)]) -> Env {
    for (name, value) in vars {
        env = env.with(name.clone(), value.clone());
    }
    env
}

impl TestApp {
    /// Ingest and one in-process worker syncing to HubSpot on a default crm-sim.
    pub async fn spawn() -> Self {
        Self::builder().start().await
    }

    /// An app to configure before it starts.
    pub fn builder() -> AppBuilder {
        AppBuilder::default()
    }

    /// Ingest and `workers` in-process workers syncing to `crm` on a
    /// simulator configured by `sim`.
    pub async fn for_crm(crm: &'static str, sim: SimConfig, workers: usize) -> Self {
        Self::builder()
            .crm(crm)
            .sim(sim)
            .workers(workers)
            .start()
            .await
    }

    /// Ingest and one worker syncing to HubSpot on a simulator that
    /// answers every request `latency` late.
    pub async fn with_latency(latency: Duration) -> Self {
        Self::builder().latency(latency).start().await
    }

    /// Ingest and two workers racing on `crm`, on a simulator that answers
    /// every request `latency` late (so that deliveries overlap).
    pub async fn racing(crm: &'static str, latency: Duration) -> Self {
        Self::builder()
            .crm(crm)
            .latency(latency)
            .workers(2)
            .start()
            .await
    }

    /// Ingest's variables for this app.
    pub fn ingest_env(&self) -> Env {
        with_vars(self.env.ingest_env(), &self.ingest_vars)
    }

    /// The workers' variables for this app.
    pub fn worker_env(&self) -> Env {
        with_vars(self.env.worker_env(), &self.worker_vars)
    }

    /// Starts one more in-process worker; returns its index.
    pub async fn add_worker(&mut self) -> usize {
        let env = self.worker_env();
        self.add_worker_with(env).await
    }

    /// [`TestApp::add_worker`] with other variables.
    pub async fn add_worker_with(&mut self, env: Env) -> usize {
        let worker = self.env.start_worker_with(env).await;
        self.workers.push(Some(Worker::InProcess(worker)));
        self.workers.len() - 1
    }

    /// Starts one more worker as a child process (SIGKILL-able); returns its index.
    pub async fn add_worker_process_with(&mut self, env: Env) -> usize {
        let worker = self.env.spawn_worker_process_with(env).await;
        self.workers.push(Some(Worker::Process(worker)));
        self.workers.len() - 1
    }

    /// [`TestApp::add_worker_process_with`], writing the worker's log to
    /// `log`.
    pub async fn add_logged_worker_process(&mut self, env: Env, log: &std::path::Path) -> usize {
        let worker = self.env.spawn_worker_process_logging(env, Some(log)).await;
        self.workers.push(Some(Worker::Process(worker)));
        self.workers.len() - 1
    }

    /// Worker `i`'s `/readyz`: its status and JSON body.
    pub async fn worker_readiness(&self, i: usize) -> (StatusCode, Value) {
        let response = self
            .client
            .get(format!("{}/readyz", self.worker_url(i)))
            .send()
            .await
            .expect("the worker answers /readyz");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Waits until worker `i` reports a pause for `reason` on `/readyz`;
    /// returns the pause's detail.
    pub async fn wait_for_pause(&self, i: usize, reason: &str) -> String {
        let (_, body) = eventually(
            WAIT,
            &format!("worker {i} reports a pause for {reason}"),
            || self.worker_readiness(i),
            |(status, body)| {
                *status == StatusCode::SERVICE_UNAVAILABLE && body["paused"]["reason"] == reason
            },
        )
        .await;
        body["paused"]["detail"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Worker `i`'s `/metrics` text.
    pub async fn worker_metrics(&self, i: usize) -> String {
        self.client
            .get(format!("{}/metrics", self.worker_url(i)))
            .send()
            .await
            .expect("the worker answers /metrics")
            .text()
            .await
            .expect("a metrics body")
    }

    /// Messages ready in the app's calls queue.
    pub async fn calls_waiting(&self) -> u32 {
        self.env.queue_depth(&self.env.topology.calls_queue()).await
    }

    /// The operations URL (`/readyz`, `/metrics`) of worker `i`.
    pub fn worker_url(&self, i: usize) -> &str {
        self.workers[i].as_ref().expect("a live worker").base_url()
    }

    /// Kills worker `i` without a graceful shutdown: a process gets SIGKILL,
    /// an in-process worker is aborted (its connections drop, nothing is
    /// acknowledged, no lease is released).
    pub async fn kill_worker(&mut self, i: usize) {
        match self.workers[i].take().expect("a live worker") {
            Worker::Process(p) => p.kill().await,
            Worker::InProcess(s) => drop(s),
        }
    }

    /// Stops worker `i` gracefully (the SIGTERM path).
    pub async fn stop_worker(&mut self, i: usize) {
        match self.workers[i].take().expect("a live worker") {
            Worker::Process(p) => {
                let status = p.terminate(Duration::from_secs(20)).await;
                assert!(status.success(), "the worker exits cleanly: {status}");
            }
            Worker::InProcess(s) => s.stop().await,
        }
    }

    /// Stops ingest gracefully, runs `while_stopped`, and starts it again
    /// with the same variables.
    pub async fn restart_ingest(&mut self, while_stopped: impl FnOnce()) {
        self.ingest.halt().await;
        while_stopped();
        self.ingest = self.env.start_ingest_with(self.ingest_env()).await;
    }

    /// Waits until ingest's `/readyz` answers `status`.
    pub async fn wait_for_ingest_readiness(&self, status: StatusCode) {
        self.env
            .wait_for_readiness(&self.ingest.base_url, status)
            .await;
    }

    /// Waits until worker `i`'s `/readyz` answers `status`.
    pub async fn wait_for_worker_readiness(&self, i: usize, status: StatusCode) {
        self.env
            .wait_for_readiness(self.worker_url(i), status)
            .await;
    }

    /// Posts a body to ingest; returns the status and the JSON answer
    /// (`Null` when there is none). The caller asserts the status.
    pub async fn post(
        &self,
        path: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .post(format!("{}{path}", self.ingest.base_url))
            .body(body);
        for (k, v) in headers {
            request = request.header(*k, v);
        }
        let response = request.send().await.expect("ingest answers");
        let status = response.status();
        let json = response.json().await.unwrap_or(Value::Null);
        (status, json)
    }

    /// Posts a body to ingest, asserts that it answered `expected` and
    /// returns the JSON answer.
    pub async fn post_expecting(
        &self,
        expected: StatusCode,
        path: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Value {
        let (status, answer) = self.post(path, headers, body).await;
        assert_eq!(status, expected, "ingest answered {path}: {answer}");
        answer
    }

    /// Posts a signed voicedock report and asserts that ingest answered `expected`.
    pub async fn post_voicedock_expecting(&self, expected: StatusCode, body: Vec<u8>) -> Value {
        let headers = voicedock_headers(&body);
        self.post_expecting(expected, "/webhooks/voicedock", &headers, body)
            .await
    }

    /// Posts a signed voicedock report and asserts it was accepted.
    pub async fn post_voicedock(&self, body: Vec<u8>) -> Value {
        self.post_voicedock_expecting(StatusCode::ACCEPTED, body)
            .await
    }

    /// Posts a postcall report with its token and asserts it was accepted.
    pub async fn post_postcall(&self, body: Vec<u8>) -> Value {
        let headers = vec![
            ("Authorization", format!("Bearer {POSTCALL_TOKEN}")),
            ("Content-Type", "application/json".to_owned()),
        ];
        self.post_expecting(StatusCode::ACCEPTED, "/webhooks/postcall", &headers, body)
            .await
    }

    /// Posts a voicedock report for each of `call_ids`, all from `phone`
    /// and all at once, asserting each was accepted; returns their markers,
    /// sorted, to compare with the CRM's.
    pub async fn post_reports_at_once(
        &self,
        call_ids: &[&str],
        phone: &str,
        follow_up: bool,
    ) -> Vec<String> {
        let posts = call_ids
            .iter()
            .map(|id| self.post_voicedock(voicedock_report(id, phone, follow_up)));
        futures_util::future::join_all(posts).await;
        let mut markers: Vec<String> = call_ids.iter().map(|id| voicedock_marker(id)).collect();
        markers.sort();
        markers
    }

    /// Posts a fixture of the shared crate (voicedock or postcall by its
    /// name) and asserts it was accepted.
    pub async fn post_fixture(&self, name: &str) -> Value {
        if name.starts_with("postcall") {
            self.post_postcall(fixture(name)).await
        } else {
            self.post_voicedock(fixture(name)).await
        }
    }

    /// What the CRM holds now (for a check in the middle of a test; judge
    /// the end with [`TestApp::settle`]).
    pub fn snapshot(&self) -> Snapshot {
        self.env.sim.snapshot()
    }

    /// Polls the CRM simulator until `done` holds, or fails after [`WAIT`]
    /// naming `what` and the simulator's last state.
    pub async fn wait_for_crm(&self, what: &str, done: impl Fn(&Snapshot) -> bool) -> Snapshot {
        let seen = eventually(
            WAIT,
            what,
            || async { CrmState(self.snapshot()) },
            |seen| done(&seen.0),
        )
        .await;
        seen.0
    }

    /// Waits until nothing can change the CRM any more (see the module
    /// comment) and returns what it holds. Fails after `deadline` with what
    /// was still moving.
    pub async fn settle(&self) -> Snapshot {
        self.env.settle().await
    }

    /// The ledger's calls by status.
    pub async fn ledger_counts(&self) -> LedgerCounts {
        self.env
            .ledger()
            .await
            .counts()
            .await
            .expect("ledger counts")
    }

    /// Asserts that the ledger counts `synced` synced and `parked` parked
    /// calls and none in progress (as it does once the app settled).
    pub async fn assert_ledger(&self, synced: i64, parked: i64) {
        assert_eq!(
            self.ledger_counts().await,
            LedgerCounts {
                synced,
                pending: 0,
                parked
            },
            "the ledger's calls: synced, pending, parked"
        );
    }

    /// Every parked message's call id and reason; they stay parked.
    pub async fn parked(&self) -> Vec<Parked> {
        self.env.parked().await
    }

    /// The reason of the one parked message, which must be for `call_id`.
    pub async fn parked_reason(&self, call_id: &str) -> String {
        self.the_parked(call_id).await.reason
    }

    /// The one parked message, which must be for `call_id`.
    pub async fn the_parked(&self, call_id: &str) -> Parked {
        let mut parked = self.parked().await;
        match parked.as_slice() {
            [one] if one.call_id == call_id => parked.remove(0),
            _ => panic!("expected exactly {call_id} parked, found {parked:#?}"),
        }
    }

    /// Takes every message ready in the calls queue off it and returns
    /// their call ids, in queue order.
    pub async fn take_queued_call_ids(&self) -> Vec<String> {
        self.env
            .take_call_ids(&self.env.topology.calls_queue())
            .await
    }

    /// Asserts that the calls queue is empty. Publishing is confirmed
    /// before ingest answers, so a queued message would already be there.
    pub async fn assert_nothing_queued(&self) {
        assert_eq!(
            self.take_queued_call_ids().await,
            Vec::<String>::new(),
            "nothing may be queued"
        );
    }

    /// Takes messages off the calls queue until every id of `expected` was
    /// among them, or fails after [`WAIT`] naming the missing ones; returns
    /// the ids of every message taken.
    pub async fn take_queued_until(&self, expected: &BTreeSet<String>) -> BTreeSet<String> {
        let taken = std::sync::Mutex::new(BTreeSet::new());
        eventually(
            WAIT,
            "every expected call id reaches the calls queue; missing",
            || async {
                let ids = self.take_queued_call_ids().await;
                let mut taken = taken.lock().unwrap();
                taken.extend(ids);
                expected.difference(&taken).cloned().collect::<Vec<_>>()
            },
            Vec::is_empty,
        )
        .await;
        taken.into_inner().unwrap()
    }

    /// Stops every worker gracefully, then ingest.
    pub async fn shutdown(mut self) {
        for i in 0..self.workers.len() {
            if self.workers[i].is_some() {
                self.stop_worker(i).await;
            }
        }
        self.ingest.stop().await;
    }
}

/// What might still change the CRM, as seen at one moment.
#[derive(Debug, PartialEq, Eq)]
struct Motion {
    /// Messages waiting in the work queue and the delay queues.
    queued: u32,
    /// Deliveries the workers hold; `None` when a worker did not answer.
    in_flight: Option<usize>,
    /// Calls the ledger has in progress.
    pending: i64,
    /// Requests the simulator admitted and has not applied yet.
    applying: u64,
    /// The CRM's record counts, to see that they stayed put.
    records: (usize, usize, usize),
}

impl Motion {
    fn still(&self) -> bool {
        self.queued == 0 && self.in_flight == Some(0) && self.pending == 0 && self.applying == 0
    }
}

/// One look at callsync by [`settle`]: what was moving, how long it has
/// been still, and the CRM's state.
struct Rest {
    motion: Motion,
    still_for: Duration,
    snapshot: Snapshot,
}

impl std::fmt::Debug for Rest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rest")
            .field("motion", &self.motion)
            .field("still_for", &self.still_for)
            .field("simulator_stats", &self.snapshot.stats)
            .finish()
    }
}

/// [`TestApp::settle`] for a [`TestEnv`] and the operations URLs of the
/// workers started for it (those that are gone count as holding nothing).
pub async fn settle(env: &TestEnv, workers: &[String], deadline: Duration) -> Snapshot {
    let mut queues = vec![env.topology.calls_queue()];
    queues.extend(
        env.retry_delays()
            .into_iter()
            .map(|d| env.topology.retry_queue(d)),
    );
    let ledger = env.ledger().await;
    // Since when nothing moved, and the record counts it has held since.
    let still_since = std::cell::Cell::new(None::<(Instant, (usize, usize, usize))>);
    let rest = eventually_every(
        Duration::from_millis(100),
        deadline,
        "callsync comes to rest (nothing queued, held, pending or applying, for a quiet window)",
        || async {
            let queued = queued(&queues).await;
            let in_flight = held(&env.client, workers).await;
            let pending = ledger.counts().await.expect("ledger counts").pending;
            let snapshot = env.sim.snapshot();
            let motion = Motion {
                queued,
                in_flight,
                pending,
                applying: snapshot.stats.pending_applies,
                records: (
                    snapshot.contacts.len(),
                    snapshot.calls.len(),
                    snapshot.tasks.len(),
                ),
            };
            let still_for = match still_since.get() {
                Some((since, records)) if motion.still() && records == motion.records => {
                    since.elapsed()
                }
                _ if motion.still() => {
                    still_since.set(Some((Instant::now(), motion.records)));
                    Duration::ZERO
                }
                _ => {
                    still_since.set(None);
                    Duration::ZERO
                }
            };
            Rest {
                motion,
                still_for,
                snapshot,
            }
        },
        |rest| rest.motion.still() && rest.still_for >= QUIET,
    )
    .await;
    rest.snapshot
}

/// Messages waiting in `queues`; a tier no service declared is simply empty.
/// Each look uses a connection of its own: the broker closes the channel of
/// every probe of a missing queue, and a connection has a bounded number of
/// channels, which a long settle would otherwise use up.
async fn queued(queues: &[String]) -> u32 {
    let connection = callsync_shared::broker::connect(AMQP_URL, "callsync-tests-settle")
        .await
        .expect("broker connection");
    let connection = &connection;
    let mut queued = 0;
    for q in queues {
        // A passive declare of a missing queue closes its channel: one each.
        let probe = probe_channel(connection).await;
        if let Ok(declared) = probe
            .queue_declare(
                q.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
        {
            queued += declared.message_count();
            let _ = probe.close(200, "done".into()).await;
        }
    }
    let _ = connection.close(200, "done".into()).await;
    queued
}

/// A new channel. The broker's close of the previous probe (a missing queue)
/// can reach the client after it handed out the next channel, which then
/// reports that close: try again a few times.
async fn probe_channel(connection: &lapin::Connection) -> lapin::Channel {
    let mut attempt = 0;
    loop {
        match connection.create_channel().await {
            Ok(channel) => return channel,
            Err(e) if attempt < 5 => {
                attempt += 1;
                tracing::debug!(error = %e, "probe channel refused; trying again");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("channel: {e}"),
        }
    }
}

/// Deliveries the workers at `workers` hold; `None` when one did not answer.
async fn held(client: &reqwest::Client, workers: &[String]) -> Option<usize> {
    let mut in_flight = Some(0);
    for url in workers {
        let held = match client
            .get(format!("{url}/readyz"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
        {
            Ok(r) => r
                .json::<Value>()
                .await
                .ok()
                .and_then(|v| v["in_flight"].as_u64())
                .map(|n| n as usize),
            // A worker that is gone holds nothing: the broker returned
            // its deliveries to the queue, where they are counted.
            Err(e) if e.is_connect() => Some(0),
            Err(_) => None,
        };
        in_flight = match (in_flight, held) {
            (Some(sum), Some(n)) => Some(sum + n),
            _ => None,
        };
    }
    in_flight
}
