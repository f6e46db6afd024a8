//! Broker connections that drop: ingest and workers reconnect, `/readyz`
//! tells the truth meanwhile, and nothing accepted is lost.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use callsync_tests::harness::{
    FOLLOW_UP_MARKER, SEED_000_MARKER, TcpProxy, TestEnv, fixture, post_voicedock,
    wait_for_readiness,
};
use callsync_tests::wait::eventually;
use reqwest::StatusCode;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_reports_not_ready_while_the_broker_is_unreachable_and_recovers_after() {
    let proxy = TcpProxy::start("127.0.0.1:5672").await;
    let mut env = TestEnv::new().await;
    env.set("CALLSYNC_AMQP_URL", &proxy.amqp_url());
    let ingest = env.start_ingest().await;
    let client = reqwest::Client::new();

    proxy.cut();
    wait_for_readiness(&ingest.base_url, StatusCode::SERVICE_UNAVAILABLE, WAIT).await;
    let (status, _) = post_voicedock(
        &client,
        &ingest,
        fixture("voicedock_000_end_of_call_report.json"),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "nothing is accepted without a confirm"
    );
    assert_eq!(env.queue_depth(&env.topology.calls_queue()).await, 0);

    proxy.restore();
    wait_for_readiness(&ingest.base_url, StatusCode::OK, WAIT).await;
    let (status, _) = post_voicedock(
        &client,
        &ingest,
        fixture("voicedock_000_end_of_call_report.json"),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(env.queue_depth(&env.topology.calls_queue()).await, 1);
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_broker_connection_drops_reconnects_and_syncs_what_was_queued() {
    let proxy = TcpProxy::start("127.0.0.1:5672").await;
    let env = TestEnv::new().await;
    let ingest = env.start_ingest().await;
    let worker_env = env.worker_env().with("CALLSYNC_AMQP_URL", proxy.amqp_url());
    let worker = env.start_worker_with(worker_env).await;
    let client = reqwest::Client::new();

    proxy.cut();
    wait_for_readiness(&worker.base_url, StatusCode::SERVICE_UNAVAILABLE, WAIT).await;
    // Ingest (direct connection) keeps accepting while the worker is cut off.
    for fixture_name in [
        "voicedock_000_end_of_call_report.json",
        "voicedock_follow_up.json",
    ] {
        let (status, _) = post_voicedock(&client, &ingest, fixture(fixture_name)).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    assert_eq!(env.sim.snapshot().calls.len(), 0);

    proxy.restore();
    wait_for_readiness(&worker.base_url, StatusCode::OK, WAIT).await;
    env.wait_for_crm(WAIT, |s| s.calls.len() == 2 && s.tasks.len() == 1)
        .await;
    let s = env.settle().await;
    assert_eq!(s.call_markers(), [FOLLOW_UP_MARKER, SEED_000_MARKER]);
    assert_eq!(s.task_markers(), [FOLLOW_UP_MARKER]);
    assert_eq!(s.contacts.len(), 2, "{:#?}", s.contacts);
    worker.stop().await;
    ingest.stop().await;
}

fn spool_dir(env: &TestEnv) -> String {
    std::env::temp_dir()
        .join(format!("callsync-spool-{}", env.id))
        .to_string_lossy()
        .into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_spool_reports_arriving_during_a_broker_outage_are_accepted_and_delivered_later() {
    let proxy = TcpProxy::start("127.0.0.1:5672").await;
    let mut env = TestEnv::new().await;
    let dir = spool_dir(&env);
    env.set("CALLSYNC_AMQP_URL", &proxy.amqp_url());
    env.set("CALLSYNC_SPOOL_DIR", &dir);
    let ingest = env.start_ingest().await;
    // The worker talks to the broker directly: only ingest's link is cut.
    let worker_env = env
        .worker_env()
        .with("CALLSYNC_AMQP_URL", callsync_tests::harness::AMQP_URL);
    let worker = env.start_worker_with(worker_env).await;
    let client = reqwest::Client::new();

    proxy.cut();
    wait_for_readiness(&ingest.base_url, StatusCode::SERVICE_UNAVAILABLE, WAIT).await;
    for name in [
        "voicedock_000_end_of_call_report.json",
        "voicedock_follow_up.json",
    ] {
        let (status, answer) = post_voicedock(&client, &ingest, fixture(name)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        assert_eq!(answer["spooled"], true);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        env.sim.snapshot().calls.len(),
        0,
        "nothing reached the broker yet"
    );

    proxy.restore();
    env.wait_for_crm(WAIT, |s| s.calls.len() == 2 && s.tasks.len() == 1)
        .await;
    let s = env.settle().await;
    assert_eq!(s.call_markers(), [FOLLOW_UP_MARKER, SEED_000_MARKER]);
    assert_eq!(s.task_markers(), [FOLLOW_UP_MARKER]);
    assert_eq!(s.contacts.len(), 2, "{:#?}", s.contacts);
    let segments: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| std::fs::metadata(e.path()).is_ok_and(|m| m.len() > 0))
        .collect();
    assert!(
        segments.is_empty(),
        "confirmed entries are deleted: {segments:?}"
    );
    worker.stop().await;
    ingest.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spooled_reports_survive_an_ingest_restart() {
    let proxy = TcpProxy::start("127.0.0.1:5672").await;
    let mut env = TestEnv::new().await;
    let dir = spool_dir(&env);
    env.set("CALLSYNC_AMQP_URL", &proxy.amqp_url());
    env.set("CALLSYNC_SPOOL_DIR", &dir);
    let ingest = env.start_ingest().await;
    let client = reqwest::Client::new();
    proxy.cut();
    wait_for_readiness(&ingest.base_url, StatusCode::SERVICE_UNAVAILABLE, WAIT).await;
    let (status, answer) = post_voicedock(
        &client,
        &ingest,
        fixture("voicedock_000_end_of_call_report.json"),
    )
    .await;
    assert_eq!(
        (status, answer["spooled"].clone()),
        (StatusCode::ACCEPTED, serde_json::json!(true))
    );
    ingest.stop().await;

    proxy.restore();
    let restarted = env.start_ingest().await;
    env.wait_for_queue_depth(&env.topology.calls_queue(), 1)
        .await;
    restarted.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_answers_503_instead_of_growing() {
    let proxy = TcpProxy::start("127.0.0.1:5672").await;
    let mut env = TestEnv::new().await;
    let dir = spool_dir(&env);
    env.set("CALLSYNC_AMQP_URL", &proxy.amqp_url());
    env.set("CALLSYNC_SPOOL_DIR", &dir);
    env.set("CALLSYNC_SPOOL_MAX_BYTES", "1000");
    let ingest = env.start_ingest().await;
    let client = reqwest::Client::new();
    proxy.cut();
    wait_for_readiness(&ingest.base_url, StatusCode::SERVICE_UNAVAILABLE, WAIT).await;
    let body = fixture("voicedock_000_end_of_call_report.json");
    let (first, _) = post_voicedock(&client, &ingest, body.clone()).await;
    assert_eq!(first, StatusCode::ACCEPTED);
    let (second, answer) = post_voicedock(&client, &ingest, body).await;
    assert_eq!(second, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        answer["error"].as_str().unwrap().contains("spool is full"),
        "{answer}"
    );
    ingest.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_database_connections_are_terminated_finishes_the_call_once() {
    let env = TestEnv::with_sim(callsync_tests::sim::SimConfig {
        latency: Duration::from_millis(200),
        ..callsync_tests::sim::SimConfig::default()
    })
    .await;
    let ingest = env.start_ingest().await;
    let worker = env.start_worker().await;
    post_voicedock(
        &reqwest::Client::new(),
        &ingest,
        fixture("voicedock_follow_up.json"),
    )
    .await;
    env.wait_for_crm(WAIT, |s| s.stats.requests > 0).await;
    let terminated = env.terminate_database_connections().await;
    assert!(terminated > 0, "the worker's connections were terminated");
    env.wait_for_crm(WAIT, |s| s.calls.len() == 1 && s.tasks.len() == 1)
        .await;
    let s = env.settle().await;
    assert_eq!(s.call_markers(), [FOLLOW_UP_MARKER]);
    assert_eq!(s.task_markers(), [FOLLOW_UP_MARKER]);
    assert_eq!(s.contacts.len(), 1, "{:#?}", s.contacts);
    worker.stop().await;
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_is_not_ready_while_its_database_is_unreachable_and_syncs_once_it_is_back() {
    let proxy = TcpProxy::start("127.0.0.1:5432").await;
    let env = TestEnv::new().await;
    let ingest = env.start_ingest().await;
    let url = env
        .database_url
        .replace("127.0.0.1:5432", &proxy.addr().to_string());
    let worker = env
        .start_worker_with(env.worker_env().with("CALLSYNC_DATABASE_URL", url))
        .await;

    proxy.cut();
    wait_for_readiness(&worker.base_url, StatusCode::SERVICE_UNAVAILABLE, WAIT).await;
    let (status, _) = post_voicedock(
        &reqwest::Client::new(),
        &ingest,
        fixture("voicedock_follow_up.json"),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        env.sim.snapshot().calls.len(),
        0,
        "nothing is synced without the ledger"
    );

    proxy.restore();
    wait_for_readiness(&worker.base_url, StatusCode::OK, WAIT).await;
    env.wait_for_crm(WAIT, |s| s.calls.len() == 1 && s.tasks.len() == 1)
        .await;
    let s = env.settle().await;
    assert_eq!(s.call_markers(), [FOLLOW_UP_MARKER]);
    assert_eq!(s.task_markers(), [FOLLOW_UP_MARKER]);
    assert_eq!(s.contacts.len(), 1, "{:#?}", s.contacts);
    worker.stop().await;
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ingest_under_load_recovers_from_many_broker_cuts_and_delivers_everything_it_accepted() {
    let proxy = TcpProxy::start("127.0.0.1:5672").await;
    let mut env = TestEnv::new().await;
    let dir = spool_dir(&env);
    env.set("CALLSYNC_AMQP_URL", &proxy.amqp_url());
    env.set("CALLSYNC_SPOOL_DIR", &dir);
    env.set("CALLSYNC_CONFIRM_TIMEOUT", "1s");
    let ingest = env.start_ingest().await;
    let client = reqwest::Client::new();

    // Sixteen senders post distinct reports while the link is cut and
    // restored again and again, so cuts land in every phase: publishes
    // awaiting confirms, reconnects half done, spool replays under way.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let senders: Vec<_> = (0..16)
        .map(|sender| {
            let (client, stop) = (client.clone(), std::sync::Arc::clone(&stop));
            let base_url = ingest.base_url.clone();
            tokio::spawn(async move {
                let mut accepted = Vec::new();
                let mut n = 0u32;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    n += 1;
                    let body = serde_json::to_vec(&serde_json::json!({ "message": {
                        "type": "end-of-call-report",
                        "call": { "id": format!("cut-{sender}-{n}") },
                        "customer": { "number": "+31612345678" }
                    }}))
                    .unwrap();
                    let mut request = client
                        .post(format!("{base_url}/webhooks/voicedock"))
                        .timeout(Duration::from_secs(10))
                        .body(body.clone());
                    for (k, v) in callsync_tests::harness::voicedock_headers(&body) {
                        request = request.header(k, v);
                    }
                    match request.send().await {
                        Ok(r) if r.status() == StatusCode::ACCEPTED => {
                            accepted.push(format!("cut-{sender}-{n}"));
                        }
                        _ => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
                accepted
            })
        })
        .collect();
    for round in 0..12u64 {
        tokio::time::sleep(Duration::from_millis(150 + 37 * (round % 5))).await;
        proxy.cut();
        tokio::time::sleep(Duration::from_millis(50 + 61 * (round % 4))).await;
        proxy.restore();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut accepted = std::collections::BTreeSet::new();
    for sender in senders {
        accepted.extend(sender.await.unwrap());
    }
    assert!(!accepted.is_empty(), "nothing was accepted at all");

    // Every accepted report, published directly or spooled, reaches the
    // queue: compared by call id, so a lost report is never made up for by
    // a repeated one. Spool replays may repeat an entry (the worker's
    // ledger absorbs it); reports that were published but refused to the
    // sender (a confirm lost in a cut) may be there too.
    wait_for_readiness(&ingest.base_url, StatusCode::OK, WAIT).await;
    let queued = std::sync::Mutex::new(std::collections::BTreeSet::new());
    let queue = env.topology.calls_queue();
    eventually(
        WAIT,
        "every accepted report is in the queue",
        || async {
            let taken = env.take_call_ids(&queue).await;
            let mut queued = queued.lock().unwrap();
            queued.extend(taken);
            accepted.difference(&queued).cloned().collect::<Vec<_>>()
        },
        Vec::is_empty,
    )
    .await;
    let queued = queued.into_inner().unwrap();
    let sent = |id: &String| id.starts_with("cut-");
    assert!(
        queued.iter().all(sent),
        "only reports that were sent: {queued:?}"
    );
    ingest.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}
