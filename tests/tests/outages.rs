//! Broker connections that drop: ingest and workers reconnect, `/readyz`
//! tells the truth meanwhile, and nothing accepted is lost.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use callsync_tests::app::{AppBuilder, TestApp};
use callsync_tests::harness::{
    FOLLOW_UP_MARKER, SEED_000_CALL_ID, SEED_000_MARKER, TcpProxy, fixture, voicedock_report,
};
use callsync_tests::wait::{eventually, throughout};
use futures_util::future::join_all;
use reqwest::StatusCode;

const SEED_000: &str = "voicedock_000_end_of_call_report.json";
const FOLLOW_UP: &str = "voicedock_follow_up.json";

/// A spool directory of its own, removed when the test ends.
struct SpoolDir(PathBuf);

impl SpoolDir {
    fn new() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self(std::env::temp_dir().join(format!("callsync-spool-{id}")))
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }

    /// The segments that still hold entries (confirmed ones are deleted).
    fn filled_segments(&self) -> Vec<PathBuf> {
        std::fs::read_dir(&self.0)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for SpoolDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An app whose ingest reaches the broker through `proxy`, spooling to
/// `spool` if given; its workers connect directly.
fn ingest_through(proxy: &TcpProxy, spool: Option<&SpoolDir>) -> AppBuilder {
    let app = TestApp::builder().ingest_set("CALLSYNC_AMQP_URL", &proxy.amqp_url());
    match spool {
        Some(dir) => app.ingest_set("CALLSYNC_SPOOL_DIR", dir.path()),
        None => app,
    }
}

/// A proxy to the broker, a spool directory, and an app (configured
/// further by `configure`) whose ingest reaches the broker through the
/// proxy and spools there.
async fn spooling_app(
    configure: impl FnOnce(AppBuilder) -> AppBuilder,
) -> (TcpProxy, SpoolDir, TestApp) {
    let proxy = TcpProxy::start("127.0.0.1:5672").await;
    let spool = SpoolDir::new();
    let app = configure(ingest_through(&proxy, Some(&spool)))
        .start()
        .await;
    (proxy, spool, app)
}

/// Cuts ingest off the broker and waits until it says so.
async fn cut_ingest(proxy: &TcpProxy, app: &TestApp) {
    proxy.cut();
    app.wait_for_ingest_readiness(StatusCode::SERVICE_UNAVAILABLE)
        .await;
}

/// Posts the fixture `name` while ingest is cut off and asserts it was
/// accepted into the spool.
async fn post_spooled(app: &TestApp, name: &str) {
    let answer = app.post_voicedock(fixture(name)).await;
    assert_eq!(answer["spooled"], true, "{answer}");
}

/// Asserts the app settled with seed 000 and the follow-up report synced
/// once each.
async fn assert_both_fixtures_synced_once(app: &TestApp) {
    let s = app.settle().await;
    assert_eq!(s.call_markers(), [FOLLOW_UP_MARKER, SEED_000_MARKER]);
    assert_eq!(s.task_markers(), [FOLLOW_UP_MARKER]);
    assert_eq!(s.contacts.len(), 2, "{:#?}", s.contacts);
    app.assert_ledger(2, 0).await;
}

/// Asserts the app settled with the follow-up report synced once.
async fn assert_follow_up_synced_once(app: &TestApp) {
    let s = app.settle().await;
    assert_eq!(s.call_markers(), [FOLLOW_UP_MARKER]);
    assert_eq!(s.task_markers(), [FOLLOW_UP_MARKER]);
    assert_eq!(s.contacts.len(), 1, "{:#?}", s.contacts);
    app.assert_ledger(1, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_reports_not_ready_while_the_broker_is_unreachable_and_recovers_after() {
    let proxy = TcpProxy::start("127.0.0.1:5672").await;
    let app = ingest_through(&proxy, None).workers(0).start().await;

    cut_ingest(&proxy, &app).await;
    let answer = app
        .post_voicedock_expecting(StatusCode::SERVICE_UNAVAILABLE, fixture(SEED_000))
        .await;
    assert!(
        answer["error"].is_string(),
        "nothing is accepted without a confirm: {answer}"
    );
    assert_eq!(app.take_queued_call_ids().await, Vec::<String>::new());

    proxy.restore();
    app.wait_for_ingest_readiness(StatusCode::OK).await;
    app.post_voicedock(fixture(SEED_000)).await;
    assert_eq!(app.take_queued_call_ids().await, [SEED_000_CALL_ID]);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_broker_connection_drops_reconnects_and_syncs_what_was_queued() {
    let proxy = TcpProxy::start("127.0.0.1:5672").await;
    let app = TestApp::builder()
        .worker_set("CALLSYNC_AMQP_URL", &proxy.amqp_url())
        .start()
        .await;

    proxy.cut();
    app.wait_for_worker_readiness(0, StatusCode::SERVICE_UNAVAILABLE)
        .await;
    // Ingest (direct connection) keeps accepting while the worker is cut off.
    app.post_fixture(SEED_000).await;
    app.post_fixture(FOLLOW_UP).await;
    assert_eq!(app.snapshot().call_markers(), Vec::<String>::new());

    proxy.restore();
    app.wait_for_worker_readiness(0, StatusCode::OK).await;
    assert_both_fixtures_synced_once(&app).await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_spool_reports_arriving_during_a_broker_outage_are_accepted_and_delivered_later() {
    // The worker talks to the broker directly: only ingest's link is cut.
    let (proxy, spool, app) = spooling_app(|app| app).await;

    cut_ingest(&proxy, &app).await;
    post_spooled(&app, SEED_000).await;
    post_spooled(&app, FOLLOW_UP).await;
    // Only time can show that the spool holds what it accepted while the
    // link is down: half a second of nothing queued and nothing synced.
    throughout(
        Duration::from_millis(500),
        "nothing reaches the broker while ingest is cut off",
        || async {
            let queued = app.env.queue_depth(&app.env.topology.calls_queue()).await;
            (queued, app.snapshot().call_markers())
        },
        |(queued, markers)| *queued == 0 && markers.is_empty(),
    )
    .await;

    proxy.restore();
    // Once the spool is empty, every entry was confirmed by the broker, so
    // settling cannot return before the replay.
    eventually(
        Duration::from_secs(30),
        "ingest replays its spool; segments still filled",
        || async { spool.filled_segments() },
        Vec::is_empty,
    )
    .await;
    assert_both_fixtures_synced_once(&app).await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spooled_reports_survive_an_ingest_restart() {
    let proxy = TcpProxy::start("127.0.0.1:5672").await;
    let spool = SpoolDir::new();
    let mut app = ingest_through(&proxy, Some(&spool))
        .workers(0)
        .start()
        .await;
    cut_ingest(&proxy, &app).await;
    post_spooled(&app, SEED_000).await;

    app.restart_ingest(|| proxy.restore()).await;
    let expected = BTreeSet::from([SEED_000_CALL_ID.to_owned()]);
    assert_eq!(app.take_queued_until(&expected).await, expected);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_answers_503_instead_of_growing() {
    let (proxy, _spool, app) = spooling_app(|app| {
        app.ingest_set("CALLSYNC_SPOOL_MAX_BYTES", "1000")
            .workers(0)
    })
    .await;
    cut_ingest(&proxy, &app).await;
    post_spooled(&app, SEED_000).await;
    let answer = app
        .post_voicedock_expecting(StatusCode::SERVICE_UNAVAILABLE, fixture(SEED_000))
        .await;
    assert!(
        answer["error"].as_str().unwrap().contains("spool is full"),
        "{answer}"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_database_connections_are_terminated_finishes_the_call_once() {
    let app = TestApp::with_latency(Duration::from_millis(200)).await;
    app.post_fixture(FOLLOW_UP).await;
    app.wait_for_crm("the worker talks to the CRM", |s| s.stats.requests > 0)
        .await;
    let terminated = app.env.terminate_database_connections().await;
    assert!(terminated > 0, "the worker's connections were terminated");
    assert_follow_up_synced_once(&app).await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_is_not_ready_while_its_database_is_unreachable_and_syncs_once_it_is_back() {
    let proxy = TcpProxy::start("127.0.0.1:5432").await;
    let mut app = TestApp::builder().workers(0).start().await;
    let url = app
        .env
        .database_url
        .replace("127.0.0.1:5432", &proxy.addr().to_string());
    let env = app.worker_env().with("CALLSYNC_DATABASE_URL", url);
    let worker = app.add_worker_with(env).await;

    proxy.cut();
    app.wait_for_worker_readiness(worker, StatusCode::SERVICE_UNAVAILABLE)
        .await;
    app.post_fixture(FOLLOW_UP).await;
    // Only time can show that nothing is synced without the ledger. The
    // outage outlasts the pool's five-second wait for a connection, so the
    // worker's claim fails and it holds the message until the database is
    // back (a shorter one is only a slow connection).
    throughout(
        Duration::from_secs(7),
        "nothing is synced without the ledger",
        || async { app.snapshot().call_markers() },
        Vec::is_empty,
    )
    .await;

    proxy.restore();
    app.wait_for_worker_readiness(worker, StatusCode::OK).await;
    assert_follow_up_synced_once(&app).await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ingest_under_load_recovers_from_many_broker_cuts_and_delivers_everything_it_accepted() {
    let (proxy, _spool, app) =
        spooling_app(|app| app.ingest_set("CALLSYNC_CONFIRM_TIMEOUT", "1s").workers(0)).await;

    // Sixteen senders post distinct reports while the link is cut and
    // restored again and again, so cuts land in every phase: publishes
    // awaiting confirms, reconnects half done, spool replays under way.
    let stop = AtomicBool::new(false);
    let sender = |sender: usize| {
        let (app, stop) = (&app, &stop);
        async move {
            let mut accepted = Vec::new();
            let mut n = 0u32;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let id = format!("cut-{sender}-{n}");
                let body = voicedock_report(&id, "+31612345678", false);
                let headers = callsync_tests::harness::voicedock_headers(&body);
                let (status, answer) = app.post("/webhooks/voicedock", &headers, body).await;
                // A refusal is allowed (the link is down); anything else is not.
                match status {
                    StatusCode::ACCEPTED => accepted.push(id),
                    StatusCode::SERVICE_UNAVAILABLE => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    other => panic!("ingest answered {other} under load: {answer}"),
                }
            }
            accepted
        }
    };
    // The cuts are the load's rhythm, not waits for a state.
    let cuts = async {
        for round in 0..12u64 {
            tokio::time::sleep(Duration::from_millis(150 + 37 * (round % 5))).await;
            proxy.cut();
            tokio::time::sleep(Duration::from_millis(50 + 61 * (round % 4))).await;
            proxy.restore();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, Ordering::SeqCst);
    };
    let (accepted, ()) = tokio::join!(join_all((0..16).map(sender)), cuts);
    let accepted: BTreeSet<String> = accepted.into_iter().flatten().collect();
    assert!(!accepted.is_empty(), "nothing was accepted at all");

    // Every accepted report, published directly or spooled, reaches the
    // queue: compared by call id, so a lost report is never made up for by
    // a repeated one. Spool replays may repeat an entry (the worker's
    // ledger absorbs it); reports that were published but refused to the
    // sender (a confirm lost in a cut) may be there too.
    app.wait_for_ingest_readiness(StatusCode::OK).await;
    let queued = app.take_queued_until(&accepted).await;
    assert!(
        queued.iter().all(|id| id.starts_with("cut-")),
        "only reports that were sent: {queued:?}"
    );
    app.shutdown().await;
}
