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

use std::time::{Duration, Instant};

use callsync_shared::config::Env;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::{
    AMQP_URL, POSTCALL_TOKEN, Service, TestEnv, WorkerProcess, fixture, voicedock_headers,
};
use crate::sim::{SimConfig, Snapshot};

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

/// callsync running for one test.
#[derive(Debug)]
pub struct TestApp {
    pub env: TestEnv,
    pub ingest: Service,
    pub client: reqwest::Client,
    workers: Vec<Option<Worker>>,
}

impl TestApp {
    /// Ingest and one in-process worker syncing to HubSpot on a default crm-sim.
    pub async fn spawn() -> Self {
        Self::spawn_with(TestEnv::new().await, 1).await
    }

    /// Ingest and `workers` in-process workers syncing to `crm` on a
    /// simulator configured by `sim`.
    pub async fn for_crm(crm: &'static str, sim: SimConfig, workers: usize) -> Self {
        let mut env = TestEnv::with_sim(sim).await;
        env.crm = crm;
        Self::spawn_with(env, workers).await
    }

    /// Starts ingest and `workers` in-process workers for `env`.
    pub async fn spawn_with(env: TestEnv, workers: usize) -> Self {
        let ingest = env.start_ingest().await;
        let mut app = Self {
            env,
            ingest,
            client: reqwest::Client::new(),
            workers: Vec::new(),
        };
        for _ in 0..workers {
            app.add_worker().await;
        }
        app
    }

    /// Starts one more in-process worker; returns its index.
    pub async fn add_worker(&mut self) -> usize {
        let env = self.env.worker_env();
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
                let status = p.terminate(Duration::from_secs(30)).await;
                assert!(status.success(), "the worker exits cleanly: {status}");
            }
            Worker::InProcess(s) => s.stop().await,
        }
    }

    /// Posts a body to ingest; returns the status and the JSON answer.
    pub async fn post(
        &self,
        path: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        crate::harness::post(&self.client, &self.ingest, path, headers, body).await
    }

    /// Posts a signed voicedock report and asserts it was accepted.
    pub async fn post_voicedock(&self, body: Vec<u8>) -> Value {
        let headers = voicedock_headers(&body);
        let (status, answer) = self.post("/webhooks/voicedock", &headers, body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "ingest refused: {answer}");
        answer
    }

    /// Posts a postcall report with its token and asserts it was accepted.
    pub async fn post_postcall(&self, body: Vec<u8>) -> Value {
        let headers = vec![
            ("Authorization", format!("Bearer {POSTCALL_TOKEN}")),
            ("Content-Type", "application/json".to_owned()),
        ];
        let (status, answer) = self.post("/webhooks/postcall", &headers, body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "ingest refused: {answer}");
        answer
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

    /// Waits until nothing can change the CRM any more (see the module
    /// comment) and returns what it holds. Fails after `deadline` with what
    /// was still moving.
    pub async fn settle(&self) -> Snapshot {
        self.env.settle().await
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

/// [`TestApp::settle`] for a [`TestEnv`] and the operations URLs of the
/// workers started for it (those that are gone count as holding nothing).
pub async fn settle(env: &TestEnv, workers: &[String], deadline: Duration) -> Snapshot {
    let connection = callsync_shared::broker::connect(AMQP_URL, "callsync-tests-settle")
        .await
        .expect("broker connection");
    let channel = connection.create_channel().await.expect("channel");
    let mut queues = vec![env.topology.calls_queue()];
    queues.extend(
        env.retry_delays()
            .into_iter()
            .map(|d| env.topology.retry_queue(d)),
    );
    let ledger = env.ledger().await;
    let client = reqwest::Client::new();
    let until = Instant::now() + deadline;
    let mut still_since: Option<(Instant, (usize, usize, usize))> = None;
    loop {
        let mut queued = 0;
        for q in &queues {
            // A tier no service declared is simply empty.
            let probe = connection.create_channel().await.expect("channel");
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
        if motion.still() {
            match still_since {
                Some((since, records)) if records == motion.records => {
                    if since.elapsed() >= QUIET {
                        let _ = channel.close(200, "done".into()).await;
                        let _ = connection.close(200, "done".into()).await;
                        return snapshot;
                    }
                }
                _ => still_since = Some((Instant::now(), motion.records)),
            }
        } else {
            still_since = None;
        }
        assert!(
            Instant::now() < until,
            "callsync did not settle within {deadline:?}; still moving: {motion:?}; simulator stats: {:?}",
            snapshot.stats
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
