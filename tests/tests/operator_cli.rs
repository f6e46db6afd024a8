//! The operator commands of `callsync-worker`, end to end against RabbitMQ:
//! a call is parked, listed, shown, replayed and then synced; another is
//! purged; `status` shows queue depths and ledger counts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use callsync_tests::app::TestApp;
use callsync_tests::harness::{SEED_000_CALL_ID, SEED_000_MARKER, worker_command};
use callsync_tests::sim::Fault;

/// A default app whose CRM refused seed 000's call record with `status`,
/// settled with the call parked; and the message id ingest gave the report.
async fn app_with_seed_000_parked(status: u16) -> (TestApp, String) {
    let app = TestApp::spawn().await;
    app.env.sim.inject("create_call", Fault::Status(status), 1);
    let answer = app
        .post_fixture("voicedock_000_end_of_call_report.json")
        .await;
    let s = app.settle().await;
    assert_eq!(s.call_markers(), Vec::<String>::new());
    assert_eq!(parked_call_ids(&app).await, [SEED_000_CALL_ID]);
    (app, answer["id"].as_str().unwrap().to_owned())
}

/// Runs `callsync-worker <args>` with the app's worker variables and
/// returns its stdout.
async fn cli(app: &TestApp, args: &[&str]) -> String {
    let output = worker_command(&app.worker_env())
        .args(args)
        .output()
        .await
        .expect("the CLI runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        output.status.success(),
        "callsync-worker {args:?} failed: {stderr}\n{stdout}"
    );
    stdout.into_owned()
}

/// The call ids of the parked messages (which stay parked).
async fn parked_call_ids(app: &TestApp) -> Vec<String> {
    app.parked().await.into_iter().map(|p| p.call_id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_call_is_listed_shown_replayed_and_then_synced() {
    let (app, message_id) = app_with_seed_000_parked(400).await;

    let list = cli(&app, &["dlq", "list"]).await;
    assert!(list.contains(&message_id), "{list}");
    assert!(list.contains(SEED_000_CALL_ID), "{list}");
    assert!(
        list.contains("call_log: CRM rejected the request (400)"),
        "{list}"
    );
    assert!(list.contains("1 parked message(s)"), "{list}");
    assert_eq!(
        parked_call_ids(&app).await,
        [SEED_000_CALL_ID],
        "listing keeps the message parked"
    );

    let show = cli(&app, &["dlq", "show", SEED_000_CALL_ID]).await;
    assert!(show.contains("source:      voicedock"), "{show}");
    assert!(
        show.contains("\"end-of-call-report\""),
        "the body is shown: {show}"
    );

    let status = cli(&app, &["status"]).await;
    assert!(
        status.contains(&format!("{}.parked", app.env.topology.prefix())),
        "{status}"
    );
    assert!(
        status.contains("ledger: 0 synced, 0 pending, 1 parked"),
        "{status}"
    );

    let replay = cli(&app, &["dlq", "replay", &message_id]).await;
    assert!(replay.contains("1 message(s) replayed"), "{replay}");
    let s = app.settle().await;
    assert_eq!(s.call_markers(), [SEED_000_MARKER]);
    app.assert_ledger(1, 0).await;
    assert_eq!(parked_call_ids(&app).await, Vec::<String>::new());
    let status = cli(&app, &["status"]).await;
    assert!(
        status.contains("ledger: 1 synced, 0 pending, 0 parked"),
        "{status}"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_removes_only_messages_parked_longer_ago_than_asked() {
    let (app, _) = app_with_seed_000_parked(422).await;

    let kept = cli(&app, &["dlq", "purge", "--older-than", "1h"]).await;
    assert!(
        kept.contains("0 message(s) parked more than 1h0m ago purged"),
        "{kept}"
    );
    assert_eq!(parked_call_ids(&app).await, [SEED_000_CALL_ID]);

    // The message must be older than the second asked for: only time does that.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let purged = cli(&app, &["dlq", "purge", "--older-than", "1s"]).await;
    assert!(purged.contains("1 message(s)"), "{purged}");
    assert_eq!(parked_call_ids(&app).await, Vec::<String>::new());

    let replay_nothing = cli(&app, &["dlq", "replay", "--all"]).await;
    assert!(
        replay_nothing.contains("0 message(s) replayed"),
        "{replay_nothing}"
    );
    assert_eq!(app.settle().await.call_markers(), Vec::<String>::new());
    app.shutdown().await;
}
