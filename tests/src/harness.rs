//! Starting callsync for a test: real RabbitMQ and PostgreSQL, a private
//! `crm-sim`, and names no other test uses.
//!
//! Every [`TestEnv`] gets its own exchange and queue prefix on the broker and
//! its own database, so tests run in parallel and repeatedly; both are
//! deleted when the environment is dropped. A missing service fails the test
//! with a message saying how to start it, never a silent skip.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use callsync_ingest::{App, IngestConfig};
use callsync_shared::Source;
use callsync_shared::config::Env;
use callsync_shared::signature::sign_timestamped;
use callsync_shared::topology::{Topology, headers};
use callsync_worker::ledger::Ledger;
use callsync_worker::{Worker, WorkerConfig};
use lapin::options::{
    BasicGetOptions, ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use reqwest::StatusCode;
use sqlx::Connection;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::sim::{CrmSim, SimConfig, Snapshot};
use crate::wait::eventually;

/// The broker tests use.
pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// The PostgreSQL server tests use; each test creates its own database on it.
pub const PG_SERVER: &str = "postgres://postgres@127.0.0.1:5432";

/// How long [`TestEnv::settle`] waits for callsync to come to rest: long
/// enough for the longest retry delay a test configures, several times over.
pub const SETTLE_DEADLINE: Duration = Duration::from_secs(120);

/// How long a test waits for one expected state before it fails with what
/// it last saw.
pub const WAIT: Duration = Duration::from_secs(30);

/// The call ids and markers of the shared fixtures' calls: seed 000 (and
/// seeds 001 and 003, the same call) and the flagged follow-up report.
pub const SEED_000_CALL_ID: &str = "5c4d030f-43e3-4e65-899e-8148521e660f";
pub const SEED_000_MARKER: &str = "callsync:voicedock:5c4d030f-43e3-4e65-899e-8148521e660f";
pub const FOLLOW_UP_CALL_ID: &str = "0b6f1c3e-7a57-4f0e-9d38-3c1de1f0a2b4";
pub const FOLLOW_UP_MARKER: &str = "callsync:voicedock:0b6f1c3e-7a57-4f0e-9d38-3c1de1f0a2b4";

/// The marker callsync writes on the records of a voicedock call.
pub fn voicedock_marker(call_id: &str) -> String {
    format!("callsync:voicedock:{call_id}")
}

/// A voicedock end-of-call report for `call_id` from `phone`, ended
/// 2026-05-01T08:00:00Z, summarised as "Call {call_id}", asking for a
/// follow-up or not.
pub fn voicedock_report(call_id: &str, phone: &str, follow_up: bool) -> Vec<u8> {
    voicedock_report_at(call_id, phone, follow_up, "2026-05-01T08:00:00Z")
}

/// [`voicedock_report`] for a call that ended at `ended_at`.
pub fn voicedock_report_at(call_id: &str, phone: &str, follow_up: bool, ended_at: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "message": {
        "type": "end-of-call-report", "timestamp": ended_at,
        "call": { "id": call_id }, "customer": { "number": phone },
        "summary": format!("Call {call_id}"),
        "analysis": { "follow_up_needed": follow_up }
    }}))
    .expect("a report serialises")
}

/// The HMAC secret and tokens every test environment configures.
pub const VOICEDOCK_SECRET: &str = "test-voicedock-secret";
pub const POSTCALL_TOKEN: &str = "test-postcall-token";

/// Reads a fixture of the shared crate (the seed examples).
pub fn fixture(name: &str) -> Vec<u8> {
    let path = fixtures_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()))
}

/// The shared crate's fixtures: the seed examples and every platform's
/// documented webhooks, named `<source>_<what>.json`.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures")
}

/// Fails with instructions when RabbitMQ or PostgreSQL is not listening.
pub async fn require_services() {
    for (name, addr) in [
        ("RabbitMQ", "127.0.0.1:5672"),
        ("PostgreSQL", "127.0.0.1:5432"),
    ] {
        let reachable =
            tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
                .await
                .is_ok_and(|r| r.is_ok());
        assert!(
            reachable,
            "{name} is not reachable at {addr}: the end-to-end tests need it. \
             Start the local services with scripts/services.sh (see docs/testing.md)."
        );
    }
}

/// One test's private slice of the broker, the database server and a CRM.
#[derive(Debug)]
pub struct TestEnv {
    pub id: String,
    pub topology: Topology,
    pub database_url: String,
    pub sim: CrmSim,
    /// Extra variables applied to every service started from this environment.
    pub overrides: Vec<(String, String)>,
    /// The `CALLSYNC_CRM` workers of this environment sync to (crm-sim
    /// serves every supported CRM's API).
    pub crm: &'static str,
    /// The one HTTP client of this environment (and of its [`crate::app::TestApp`]).
    pub client: reqwest::Client,
    /// The operations URLs of every worker started from this environment,
    /// for [`TestEnv::settle`] to ask what they hold.
    workers: std::sync::Mutex<Vec<String>>,
}

/// Every CRM callsync supports, for the parameterised end-to-end suite:
/// the worker's registry, so a new CRM cannot be left out.
pub fn crms() -> Vec<&'static str> {
    callsync_worker::crm::supported().collect()
}

/// The CRMs that keep contacts: all but the generic webhook, which only
/// receives calls.
pub fn crms_with_contacts() -> Vec<&'static str> {
    crms().into_iter().filter(|crm| *crm != "webhook").collect()
}

impl TestEnv {
    pub async fn new() -> Self {
        Self::with_sim(SimConfig::default()).await
    }

    pub async fn with_sim(config: SimConfig) -> Self {
        require_services().await;
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let sim = CrmSim::start(SocketAddr::from(([127, 0, 0, 1], 0)), config)
            .await
            .expect("crm-sim starts");
        Self {
            topology: Topology::new(format!("test-{id}")),
            database_url: format!("{PG_SERVER}/callsync_test_{id}"),
            sim,
            overrides: Vec::new(),
            crm: "hubspot",
            // No request of a test may hang it: every one has a deadline.
            client: reqwest::Client::builder()
                .timeout(WAIT)
                .build()
                .expect("an HTTP client"),
            workers: std::sync::Mutex::default(),
            id,
        }
    }

    /// Sets a variable for every service started afterwards.
    pub fn set(&mut self, name: &str, value: &str) {
        self.overrides.push((name.to_owned(), value.to_owned()));
    }

    fn apply_overrides(&self, mut env: Env) -> Env {
        for (k, v) in &self.overrides {
            env = env.with(k.clone(), v.clone());
        }
        env
    }

    /// Ingest's variables for this environment.
    pub fn ingest_env(&self) -> Env {
        self.apply_overrides(
            Env::default()
                .with("CALLSYNC_AMQP_URL", AMQP_URL)
                .with("CALLSYNC_AMQP_PREFIX", self.topology.prefix())
                .with("CALLSYNC_INGEST_ADDR", "127.0.0.1:0")
                .with("CALLSYNC_VOICEDOCK_SECRET", VOICEDOCK_SECRET)
                .with("CALLSYNC_POSTCALL_TOKEN", POSTCALL_TOKEN)
                .with("CALLSYNC_SHUTDOWN_GRACE", "5s"),
        )
    }

    /// The worker's variables for this environment: short retry delays and
    /// leases so that recovery paths finish within a test's time.
    pub fn worker_env(&self) -> Env {
        self.apply_overrides(
            self.crm_env(no_platform_apis(Env::default()))
                .with("CALLSYNC_AMQP_URL", AMQP_URL)
                .with("CALLSYNC_AMQP_PREFIX", self.topology.prefix())
                .with("CALLSYNC_DATABASE_URL", &self.database_url)
                .with("CALLSYNC_METRICS_ADDR", "127.0.0.1:0")
                .with("CALLSYNC_RETRY_DELAYS", "1s,2s,3s")
                .with("CALLSYNC_CRM_TIMEOUT", "2s")
                .with("CALLSYNC_LEASE", "5s")
                .with("CALLSYNC_CRM_INDEX_LAG", "0s")
                .with("CALLSYNC_SHUTDOWN_GRACE", "5s")
                .with("CALLSYNC_PREFETCH", "8"),
        )
    }

    /// The variables that point a worker at crm-sim as `self.crm`.
    fn crm_env(&self, env: Env) -> Env {
        let token = self.sim.token();
        let base = self.sim.base_url();
        let env = env.with("CALLSYNC_CRM", self.crm);
        match self.crm {
            "hubspot" | "pipedrive" | "gohighlevel" => {
                let prefix = format!("CALLSYNC_{}", self.crm.to_uppercase());
                let env = env
                    .with(format!("{prefix}_TOKEN"), token)
                    .with(format!("{prefix}_BASE_URL"), base);
                if self.crm == "gohighlevel" {
                    env.with("CALLSYNC_GOHIGHLEVEL_LOCATION_ID", "loc-callsync-test")
                } else {
                    env
                }
            }
            "salesforce" => env
                .with("CALLSYNC_SALESFORCE_ACCESS_TOKEN", token)
                .with("CALLSYNC_SALESFORCE_INSTANCE_URL", base),
            "webhook" => env
                .with("CALLSYNC_WEBHOOK_SECRET", token)
                .with("CALLSYNC_WEBHOOK_URL", format!("{base}/hooks/callsync")),
            other => panic!("unknown CRM {other}"),
        }
    }

    /// Starts ingest in-process with `env` and waits until it is ready.
    pub async fn start_ingest_with(&self, env: Env) -> Service {
        let service = self.launch_ingest(env).await;
        self.wait_for_readiness(&service.base_url, StatusCode::OK)
            .await;
        service
    }

    /// Starts ingest in-process without waiting until it is ready (for a
    /// test of an ingest that cannot be).
    pub async fn launch_ingest(&self, env: Env) -> Service {
        let config = IngestConfig::from_env(&env).expect("ingest config");
        let app = App::build(config).await.expect("ingest starts");
        Service::spawn(app.local_addr(), |stopped| async move {
            let _ = app.run_until(stopped).await;
        })
    }

    /// Starts a worker in-process with `env` and waits until it consumes.
    pub async fn start_worker_with(&self, env: Env) -> Service {
        let config = WorkerConfig::from_env(&env).expect("worker config");
        let worker = Worker::build(config).await.expect("worker starts");
        let service = Service::spawn(worker.ops_addr(), |stopped| async move {
            let _ = worker.run_until(stopped).await;
        });
        self.wait_for_readiness(&service.base_url, StatusCode::OK)
            .await;
        self.workers.lock().unwrap().push(service.base_url.clone());
        service
    }

    /// Starts the worker program with `env` as a child process (for tests
    /// that kill it with SIGKILL) and waits until it consumes.
    ///
    /// A free port is picked and handed to the child, which may lose it to
    /// another process before it binds; then the child exits and another
    /// port is tried. Readiness counts only while our child is alive, so a
    /// stranger answering on the port is never mistaken for it.
    pub async fn spawn_worker_process_with(&self, env: Env) -> WorkerProcess {
        self.spawn_worker_process_logging(env, None).await
    }

    /// [`TestEnv::spawn_worker_process_with`], writing the worker's log
    /// (at `CALLSYNC_LOG` from `env`, `warn` when unset) to `log` when given.
    pub async fn spawn_worker_process_logging(
        &self,
        env: Env,
        log: Option<&std::path::Path>,
    ) -> WorkerProcess {
        for _ in 0..5 {
            let port = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let level = env.raw("CALLSYNC_LOG").unwrap_or("warn").to_owned();
            let env = env
                .clone()
                .with("CALLSYNC_METRICS_ADDR", format!("127.0.0.1:{port}"))
                .with("CALLSYNC_LOG", level);
            let stdout = match log {
                Some(path) => Stdio::from(std::fs::File::create(path).expect("a log file")),
                None => Stdio::null(),
            };
            let child = worker_command(&env)
                .stdout(stdout)
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .expect("the worker process starts");
            let child = std::sync::Mutex::new(child);
            let base_url = format!("http://127.0.0.1:{port}");
            let exited = || child.lock().unwrap().try_wait().ok().flatten().is_some();
            let seen = eventually(
                WAIT,
                "the worker process answers /readyz with 200 or exits",
                || {
                    let gone = exited();
                    let readyz = self.client.get(format!("{base_url}/readyz")).send();
                    async move {
                        if gone {
                            return ProcessStart::Exited;
                        }
                        ProcessStart::Answered(readyz.await.map(|r| r.status()).ok())
                    }
                },
                |seen| {
                    matches!(
                        seen,
                        ProcessStart::Exited | ProcessStart::Answered(Some(StatusCode::OK))
                    )
                },
            )
            .await;
            // Lost the port (or failed): try another. Ready counts only
            // while our child is alive, never for a stranger on the port.
            if matches!(seen, ProcessStart::Answered(_)) && !exited() {
                self.workers.lock().unwrap().push(base_url.clone());
                let child = child.into_inner().unwrap();
                return WorkerProcess { child, base_url };
            }
        }
        panic!("the worker process could not start on a free port in five attempts");
    }

    /// The ledger of this environment (the worker created the database).
    pub async fn ledger(&self) -> Ledger {
        Ledger::connect(&self.database_url, 2, "hubspot", Duration::from_secs(5))
            .await
            .expect("ledger opens")
    }

    /// Messages ready in a queue of this environment.
    pub async fn queue_depth(&self, queue: &str) -> u32 {
        let connection = callsync_shared::broker::connect(AMQP_URL, "callsync-tests")
            .await
            .expect("broker connection");
        let channel = connection.create_channel().await.expect("channel");
        let q = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("queue exists");
        let _ = connection.close(200, "done".into()).await;
        q.message_count()
    }

    /// Takes every message ready in `queue` off it and returns their call
    /// ids (the `call_id` header ingest sets).
    pub async fn take_call_ids(&self, queue: &str) -> Vec<String> {
        read_headers(queue, true, |table| {
            headers::text(table, headers::CALL_ID).unwrap_or_default()
        })
        .await
    }

    /// Every parked message's call id, reason and attempts (the `call_id`,
    /// `x-callsync-reason` and `x-callsync-attempts` headers), in queue order. They stay parked: each
    /// is read unacknowledged and returned when the channel closes.
    pub async fn parked(&self) -> Vec<Parked> {
        read_headers(&self.topology.parking_queue(), false, |table| Parked {
            call_id: headers::text(table, headers::CALL_ID).unwrap_or_default(),
            reason: headers::text(table, headers::REASON).unwrap_or_default(),
            attempts: headers::int(table, headers::ATTEMPTS),
        })
        .await
    }

    /// Polls `GET {base_url}/readyz` until it answers `status`, or fails
    /// after [`WAIT`] with what it last answered.
    pub async fn wait_for_readiness(&self, base_url: &str, status: StatusCode) {
        let _answered = eventually(
            WAIT,
            &format!("{base_url}/readyz answers {status}"),
            || async {
                self.client
                    .get(format!("{base_url}/readyz"))
                    .send()
                    .await
                    .map(|r| r.status())
                    .map_err(|e| e.to_string())
            },
            |answer| answer.as_ref().is_ok_and(|s| *s == status),
        )
        .await;
    }

    /// Waits until nothing can change the CRM any more and returns what it
    /// holds: duplicates arrive late, so "exactly one" is only judged once
    /// every queue is empty, no worker holds a delivery, the ledger has no
    /// call in progress and the simulator nothing left to apply (see
    /// [`crate::app::settle`]).
    pub async fn settle(&self) -> Snapshot {
        self.settle_within(SETTLE_DEADLINE).await
    }

    /// [`TestEnv::settle`] with another deadline (the long runs).
    pub async fn settle_within(&self, deadline: Duration) -> Snapshot {
        let workers = self.workers.lock().unwrap().clone();
        crate::app::settle(self, &workers, deadline).await
    }

    /// Terminates every connection to this environment's database (what a
    /// database restart does to a worker), returning how many there were.
    pub async fn terminate_database_connections(&self) -> usize {
        let mut admin = sqlx::PgConnection::connect(&format!("{PG_SERVER}/postgres"))
            .await
            .expect("admin connection");
        let terminated: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(format!("callsync_test_{}", self.id))
        .fetch_all(&mut admin)
        .await
        .expect("pg_terminate_backend");
        terminated.into_iter().filter(|t| *t).count()
    }

    /// Deletes this environment's queues, exchanges and database.
    pub async fn cleanup(&self) {
        cleanup(self.topology.clone(), self.retry_delays(), self.id.clone()).await;
    }

    /// Every retry delay a service of this environment may have declared a
    /// queue for: the defaults, the test default and any override.
    pub fn retry_delays(&self) -> Vec<Duration> {
        let mut delays: Vec<Duration> = callsync_shared::topology::DEFAULT_RETRY_DELAYS.to_vec();
        delays.extend([1, 2, 3].map(Duration::from_secs));
        for (name, value) in &self.overrides {
            if name == "CALLSYNC_RETRY_DELAYS" {
                delays.extend(
                    value
                        .split(',')
                        .filter_map(|d| callsync_shared::config::parse_duration(d).ok()),
                );
            }
        }
        delays.sort();
        delays.dedup();
        delays
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        // Drop cannot await: clean up on a thread with its own runtime, so that
        // a failed test leaves nothing behind either.
        let topology = self.topology.clone();
        let delays = self.retry_delays();
        let id = self.id.clone();
        let _ = std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                runtime.block_on(cleanup(topology, delays, id));
            }
        })
        .join();
    }
}

/// Reads every message ready in `queue`, in order, on a connection of its
/// own, and returns `read` of each one's headers: with `take` the messages
/// are acknowledged as read (gone), without it they return to the queue
/// when the connection closes: taking a queue's call ids and listing the
/// parked messages differ in that only.
async fn read_headers<T>(
    queue: &str,
    take: bool,
    read: impl Fn(Option<&FieldTable>) -> T,
) -> Vec<T> {
    let connection = callsync_shared::broker::connect(AMQP_URL, "callsync-tests")
        .await
        .expect("broker connection");
    let channel = connection.create_channel().await.expect("channel");
    let mut read_ones = Vec::new();
    while let Some(message) = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: take })
        .await
        .unwrap_or_else(|e| panic!("basic.get on {queue}: {e}"))
    {
        read_ones.push(read(message.delivery.properties.headers().as_ref()));
    }
    let _ = connection.close(200, "done".into()).await;
    read_ones
}

/// Deletes what `topology` declared: the work, parking and `delays`' retry
/// queues, and the three exchanges. Best effort: cleanup must not fail a run.
pub async fn delete_topology(channel: &lapin::Channel, topology: &Topology, delays: &[Duration]) {
    let mut queues = vec![topology.calls_queue(), topology.parking_queue()];
    queues.extend(delays.iter().map(|d| topology.retry_queue(*d)));
    for q in queues {
        let _ = channel
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    for e in [
        topology.exchange(),
        topology.retry_exchange(),
        topology.parking_exchange(),
    ] {
        let _ = channel
            .exchange_delete(e.as_str().into(), ExchangeDeleteOptions::default())
            .await;
    }
}

async fn cleanup(topology: Topology, delays: Vec<Duration>, id: String) {
    if let Ok(connection) =
        callsync_shared::broker::connect(AMQP_URL, "callsync-tests-cleanup").await
    {
        if let Ok(channel) = connection.create_channel().await {
            delete_topology(&channel, &topology, &delays).await;
        }
        let _ = connection.close(200, "cleanup".into()).await;
    }
    if let Ok(mut admin) = sqlx::PgConnection::connect(&format!("{PG_SERVER}/postgres")).await {
        // `id` is twelve hex digits made by this harness, never outside input.
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS callsync_test_{id} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await;
    }
}

/// A service running in-process.
#[derive(Debug)]
pub struct Service {
    pub base_url: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Service {
    /// Runs `run` on the runtime; it ends when the future it is given
    /// completes, which [`Service::stop`] makes happen.
    fn spawn<Fut>(
        addr: SocketAddr,
        run: impl FnOnce(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut,
    ) -> Self
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(Box::pin(async {
            let _ = stopped.await;
        })));
        Self {
            base_url: format!("http://{addr}"),
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Graceful shutdown: the same path as SIGTERM.
    pub async fn stop(mut self) {
        self.halt().await;
    }

    /// [`Service::stop`], keeping the value (to put another in its place).
    pub async fn halt(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// A `callsync-worker` child process.
#[derive(Debug)]
pub struct WorkerProcess {
    child: tokio::process::Child,
    pub base_url: String,
}

impl WorkerProcess {
    /// SIGKILL: no graceful shutdown, no acknowledgements, no lease release.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }

    /// SIGTERM, as Docker and Kubernetes send it; waits for the exit.
    pub async fn terminate(mut self, timeout: Duration) -> std::process::ExitStatus {
        let pid = self.child.id().expect("running child").to_string();
        let sent = tokio::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .expect("kill command");
        assert!(sent.success(), "SIGTERM could not be sent");
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .expect("the worker exits within the timeout")
            .expect("exit status")
    }
}

/// The path of a workspace binary next to the test executable.
pub fn binary(name: &str) -> PathBuf {
    let mut dir = std::env::current_exe().expect("test executable path");
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with cargo test --workspace",
        path.display()
    );
    path
}

/// Signs a voicedock body like the provider does (seed 004), now.
pub fn voicedock_headers(body: &[u8]) -> Vec<(&'static str, String)> {
    let ts = time::OffsetDateTime::now_utc().unix_timestamp().to_string();
    let signature = sign_timestamped(VOICEDOCK_SECRET, &ts, body);
    vec![
        ("X-Webhook-Timestamp", ts),
        ("X-Webhook-Signature", signature),
        ("X-Webhook-Event", "end-of-call-report".to_owned()),
        ("Content-Type", "application/json".to_owned()),
    ]
}

/// A TCP proxy in front of a service, to cut a service's connections
/// without touching anyone else's (other tests share the same broker).
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    state: std::sync::Arc<ProxyState>,
    task: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct ProxyState {
    up: std::sync::atomic::AtomicBool,
    connections: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
}

impl TcpProxy {
    /// Starts forwarding a free local port to `upstream`.
    pub async fn start(upstream: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = std::sync::Arc::new(ProxyState::default());
        state.up.store(true, std::sync::atomic::Ordering::SeqCst);
        let upstream = upstream.to_owned();
        let shared = std::sync::Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                if !shared.up.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                let handle = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                shared
                    .connections
                    .lock()
                    .unwrap()
                    .push(handle.abort_handle());
            }
        });
        Self { addr, state, task }
    }

    /// The proxy's own address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// An AMQP URL through this proxy.
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.addr)
    }

    /// Drops every open connection and refuses new ones until [`TcpProxy::restore`].
    pub fn cut(&self) {
        self.state
            .up
            .store(false, std::sync::atomic::Ordering::SeqCst);
        for connection in self.state.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    /// Drops the oldest open connection and refuses new ones until
    /// [`TcpProxy::restore`]: one connection of several is lost and cannot
    /// come back, while the others stay up.
    pub fn cut_oldest(&self) {
        self.state
            .up
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let mut connections = self.state.connections.lock().unwrap();
        connections.retain(|c| !c.is_finished());
        if !connections.is_empty() {
            connections.remove(0).abort();
        }
    }

    /// How many connections are open through the proxy.
    pub fn open_connections(&self) -> usize {
        let mut connections = self.state.connections.lock().unwrap();
        connections.retain(|c| !c.is_finished());
        connections.len()
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.state
            .up
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

/// The worker program (`callsync-worker`, built as `worker-process`) with
/// exactly the variables of `env` (and `PATH`), for the tests that run it as
/// a process or call its operator commands.
/// Points every platform's call-list API at a closed local port, so that a
/// worker given an API key by a test that does not also give it
/// platform-sim's URL fails its rounds here instead of calling a vendor.
/// A test that reconciles sets `CALLSYNC_<SOURCE>_API_URL` itself.
fn no_platform_apis(env: Env) -> Env {
    Source::ALL
        .into_iter()
        .filter(|s| callsync_worker::reconcile::api(*s).is_some())
        .fold(env, |env, source| {
            env.with(source.var("API_URL"), "http://127.0.0.1:9/no-platform-api")
        })
}

/// Runs `callsync-worker check` with `env`: whether it exited 0, and the
/// lines it printed.
pub async fn run_check(env: &Env) -> (bool, Vec<String>) {
    let output = worker_command(env)
        .arg("check")
        .output()
        .await
        .expect("the CLI runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    (
        output.status.success(),
        stdout.lines().map(str::to_owned).collect(),
    )
}

/// The refresh token the ledger keeps for `crm` (a self-renewing OAuth
/// credential's newest).
pub async fn stored_refresh_token(env: &TestEnv, crm: &str) -> String {
    let ledger = env.ledger().await;
    sqlx::query_scalar("SELECT refresh_token FROM oauth_refresh_tokens WHERE crm = $1")
        .bind(crm)
        .fetch_one(ledger.pool())
        .await
        .expect("a stored refresh token")
}

pub fn worker_command(env: &Env) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(binary("worker-process"));
    command.env_clear();
    if let Ok(path) = std::env::var("PATH") {
        command.env("PATH", path);
    }
    for (k, v) in env.pairs() {
        command.env(k, v);
    }
    command
}

/// One parked message, as [`TestEnv::parked`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parked {
    pub call_id: String,
    pub reason: String,
    /// The deliveries that failed, as the message's history counts them.
    pub attempts: Option<i64>,
}

/// What a worker process showed while it started.
#[derive(Debug)]
enum ProcessStart {
    Exited,
    Answered(Option<StatusCode>),
}

/// The simulator's state as a failed wait prints it: the counts, the
/// markers and the request counters, not every property of every record.
pub struct CrmState(pub Snapshot);

impl std::fmt::Debug for CrmState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.0;
        f.debug_struct("CrmState")
            .field("contacts", &s.contacts.len())
            .field("call_markers", &s.call_markers())
            .field("task_markers", &s.task_markers())
            .field("stats", &s.stats)
            .finish()
    }
}
