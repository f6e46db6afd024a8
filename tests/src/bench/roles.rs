//! The servers under test, each in a child process of its own (the bench
//! binary started again with `--role <name>`), so that each one's memory is
//! its own and the load generator does not share its runtime.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use callsync_ingest::auth::SourceAuth;
use callsync_shared::Source;
use callsync_shared::config::Env;
use lapin::Channel;
use lapin::options::ConfirmSelectOptions;

use super::load::confirmed_publish;

/// Runs the role named on the command line until SIGTERM.
pub async fn run(role: &str) -> anyhow::Result<()> {
    let env = Env::from_pairs(
        std::env::vars().filter(|(k, _)| k.starts_with("CALLSYNC_") || k.starts_with("BENCH_")),
    );
    match role {
        "hmac-only" => serve(hmac_only(&env)?, &env).await,
        "bare-confirm" => serve(bare_confirm(&env).await?, &env).await,
        // The binary's own start-up, logging included.
        "ingest" => callsync_ingest::serve(callsync_ingest::IngestConfig::from_env(&env)?).await,
        "worker" => {
            let config = callsync_worker::WorkerConfig::from_env(&env)?;
            // As `callsync-worker` does before it builds the worker.
            config.log.init();
            let worker = callsync_worker::Worker::build(config).await?;
            worker
                .run_until(callsync_shared::shutdown::signal())
                .await?;
            Ok(())
        }
        other => anyhow::bail!("unknown role {other}"),
    }
}

async fn serve(router: Router, env: &Env) -> anyhow::Result<()> {
    let addr: SocketAddr = env.required("BENCH_ADDR")?.parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, router)
        .with_graceful_shutdown(callsync_shared::shutdown::signal())
        .await?;
    Ok(())
}

/// The voicedock check `callsync-ingest` makes: its own code, configured
/// from `CALLSYNC_VOICEDOCK_SECRET` as ingest is.
fn voicedock_auth(env: &Env) -> anyhow::Result<Arc<SourceAuth>> {
    Ok(Arc::new(SourceAuth::from_env(env, Source::Voicedock)?))
}

fn verified(auth: &SourceAuth, headers: &HeaderMap, body: &[u8]) -> bool {
    auth.verify(headers, None, body, time::OffsetDateTime::now_utc())
        .is_ok()
}

/// Baseline (a): an endpoint that only checks the HMAC on the raw body.
fn hmac_only(env: &Env) -> anyhow::Result<Router> {
    Ok(Router::new()
        .route(
            "/webhooks/voicedock",
            post(
                |State(auth): State<Arc<SourceAuth>>, headers: HeaderMap, body: Bytes| async move {
                    if verified(&auth, &headers, &body) {
                        (StatusCode::ACCEPTED, "{\"accepted\":true}")
                    } else {
                        (StatusCode::UNAUTHORIZED, "{}")
                    }
                },
            ),
        )
        .with_state(voicedock_auth(env)?))
}

/// What the (c) endpoint holds: the check, and the channel to publish on.
#[derive(Clone)]
struct Confirming {
    auth: Arc<SourceAuth>,
    channel: Channel,
    queue: String,
    /// Owned here because the channel must not outlive its connection.
    _connection: Arc<lapin::Connection>,
}

/// Baseline (c): an endpoint that checks the HMAC as (d) does, publishes
/// the body with a confirm and answers; nothing else (no parsing, no
/// headers, no logging), so that (d)/(c) is what the rest of ingest costs.
async fn bare_confirm(env: &Env) -> anyhow::Result<Router> {
    let connection =
        callsync_shared::broker::connect(&env.required("BENCH_AMQP_URL")?, "bench-bare-confirm")
            .await?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let state = Confirming {
        auth: voicedock_auth(env)?,
        channel,
        queue: env.required("BENCH_QUEUE")?,
        _connection: Arc::new(connection),
    };
    Ok(Router::new()
        .route("/webhooks/voicedock", post(publish_confirmed))
        .with_state(state))
}

async fn publish_confirmed(
    State(state): State<Confirming>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    if !verified(&state.auth, &headers, &body) {
        return (StatusCode::UNAUTHORIZED, "{}");
    }
    if confirmed_publish(&state.channel, "", &state.queue, &body).await {
        (StatusCode::ACCEPTED, "{\"accepted\":true}")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "{}")
    }
}

/// The services' logging as the container image sets it (the default
/// level, JSON lines). Their lines go to the child's stdout, which is
/// /dev/null: every event is still filtered, formatted and written, as in
/// production, without a terminal's cost. The baselines install no logging.
pub const PRODUCTION_LOGGING: [(&str, &str); 2] =
    [("CALLSYNC_LOG", "info"), ("CALLSYNC_LOG_FORMAT", "json")];

/// A role running as a child process.
#[derive(Debug)]
pub struct Child {
    child: tokio::process::Child,
    pub name: String,
}

impl Child {
    /// Starts `--role role` on a free port with the variables `env_for`
    /// gives for that address, and waits until it listens (and, with
    /// `ready_path`, answers it with 200). A port can be taken by another
    /// process between choosing and binding it: the child then exits and
    /// another port is tried; readiness counts only while our child lives.
    pub async fn start(
        role: &str,
        env_for: impl Fn(SocketAddr) -> Vec<(String, String)>,
        ready_path: Option<&str>,
    ) -> anyhow::Result<(Self, SocketAddr)> {
        for _ in 0..5 {
            let addr = free_addr().await;
            let mut command = tokio::process::Command::new(std::env::current_exe()?);
            command
                .args(["--role", role])
                .env_clear()
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .kill_on_drop(true);
            if let Ok(path) = std::env::var("PATH") {
                command.env("PATH", path);
            }
            for (k, v) in PRODUCTION_LOGGING {
                command.env(k, v);
            }
            for (k, v) in env_for(addr) {
                command.env(k, v);
            }
            let mut child = command.spawn()?;
            let deadline = Instant::now() + Duration::from_secs(60);
            let client = reqwest::Client::new();
            loop {
                if child.try_wait()?.is_some() {
                    break;
                }
                let up = match ready_path {
                    None => tokio::net::TcpStream::connect(addr).await.is_ok(),
                    Some(path) => client
                        .get(format!("http://{addr}{path}"))
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success()),
                };
                if up && child.try_wait()?.is_none() {
                    return Ok((
                        Self {
                            child,
                            name: role.to_owned(),
                        },
                        addr,
                    ));
                }
                anyhow::ensure!(Instant::now() < deadline, "{role} did not become ready");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        anyhow::bail!("{role} could not start on a free port in five attempts")
    }

    /// Peak resident memory so far (`VmHWM`), in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        let Some(pid) = self.child.id() else {
            return 0.0;
        };
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
            .map_or(0.0, |kb| kb / 1024.0)
    }

    /// CPU time the process has used so far, user and system, all threads.
    /// `/proc/<pid>/stat` counts it in clock ticks of `USER_HZ`, which the
    /// kernel fixes at 100 a second for user space on every architecture
    /// Linux runs callsync on.
    pub fn cpu_seconds(&self) -> f64 {
        const USER_HZ: f64 = 100.0;
        let Some(pid) = self.child.id() else {
            return 0.0;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // The command name (field 2) may hold spaces: count from after it.
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let ticks: f64 = after_name
            .split_whitespace()
            // Fields 14 and 15 (utime, stime); field 3 is the first here.
            .skip(11)
            .take(2)
            .filter_map(|t| t.parse::<f64>().ok())
            .sum();
        ticks / USER_HZ
    }

    /// SIGTERM and wait, as an orchestrator stops a container.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = tokio::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
    }
}

/// A free loopback port.
pub async fn free_addr() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    listener.local_addr().expect("addr")
}
