//! Each kind of failure on its own: a worker killed mid-call, rate limits,
//! requests applied but never answered, server errors, permanent rejections
//! and graceful shutdown. Every test ends by comparing the markers of the
//! CRM's records with the calls that were sent.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use callsync_shared::topology::{CALL_REPORT_KEY, headers};
use callsync_tests::app::TestApp;
use callsync_tests::harness::{
    AMQP_URL, FOLLOW_UP_CALL_ID, FOLLOW_UP_MARKER, SEED_000_CALL_ID, SEED_000_MARKER, fixture,
    voicedock_marker, voicedock_report,
};
use callsync_tests::sim::{Fault, Snapshot};
use callsync_tests::wait::eventually;
use lapin::options::BasicPublishOptions;
use lapin::types::FieldTable;

const SEED_000: &str = "voicedock_000_end_of_call_report.json";
const FOLLOW_UP: &str = "voicedock_follow_up.json";

/// Sends the fixture `name` to a default app whose CRM fails `operation`
/// with `fault` `times` times, and returns the app and the CRM once settled.
async fn settled_after(name: &str, faults: &[(&'static str, Fault, u32)]) -> (TestApp, Snapshot) {
    let app = TestApp::spawn().await;
    for (operation, fault, times) in faults {
        app.env.sim.inject(operation, *fault, *times);
    }
    app.post_fixture(name).await;
    let s = app.settle().await;
    (app, s)
}

/// [`settled_after`] for the follow-up report, asserting that it was synced
/// (nothing parked) and left exactly its call record, its task and one
/// contact, whatever `operations` suffered: `fault` `times` times each.
async fn follow_up_synced_once_after(
    operations: &[&'static str],
    fault: Fault,
    times: u32,
) -> (TestApp, Snapshot) {
    let faults: Vec<_> = operations.iter().map(|op| (*op, fault, times)).collect();
    let (app, s) = settled_after(FOLLOW_UP, &faults).await;
    app.assert_ledger(1, 0).await;
    assert_follow_up_synced_once(&s);
    (app, s)
}

/// Asserts that the follow-up report left exactly its call record, its
/// task and one contact.
fn assert_follow_up_synced_once(s: &Snapshot) {
    assert_eq!(s.call_markers(), [FOLLOW_UP_MARKER]);
    assert_eq!(s.task_markers(), [FOLLOW_UP_MARKER]);
    assert_eq!(s.contacts.len(), 1, "{:#?}", s.contacts);
}

/// The number of `operation` requests the CRM received.
fn requests(s: &Snapshot, operation: &str) -> u64 {
    s.stats.by_operation.get(operation).copied().unwrap_or(0)
}

/// Asserts how many requests of each of the named operations the CRM received.
fn assert_requests(s: &Snapshot, expected: &[(&str, u64)], why: &str) {
    let received: Vec<(&str, u64)> = expected
        .iter()
        .map(|(operation, _)| (*operation, requests(s, operation)))
        .collect();
    assert_eq!(received, expected, "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_between_steps_and_restarted_completes_the_call_without_duplicating_a_step()
{
    let mut app = TestApp::builder()
        .workers(0)
        .worker_processes(1)
        .start()
        .await;
    // The task is created in the CRM but its answer never comes: the worker
    // is stuck after three of four steps when it is killed.
    app.env.sim.inject("create_task", Fault::ApplyThenHang, 1);
    app.post_fixture(FOLLOW_UP).await;
    app.wait_for_crm("the task was created", |s| s.tasks.len() == 1)
        .await;
    app.kill_worker(0).await;
    assert_eq!(
        app.ledger_counts().await.synced,
        0,
        "the killed worker did not finish the call"
    );

    app.add_worker().await;
    let s = app.settle().await;
    assert_follow_up_synced_once(&s);
    app.assert_ledger(1, 0).await;
    assert_requests(
        &s,
        &[("create_call", 1), ("create_task", 1)],
        "the call step was not repeated and the task was adopted, not re-created",
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_request_waits_for_retry_after_and_the_call_is_synced_once() {
    let app = TestApp::spawn().await;
    let limited = Fault::RateLimited {
        retry_after_secs: Some(1),
    };
    app.env.sim.inject("create_call", limited, 2);
    let started = std::time::Instant::now();
    app.post_fixture(SEED_000).await;
    app.wait_for_crm("the call record was created", |s| s.calls.len() == 1)
        .await;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "two Retry-After: 1 waits were honoured"
    );
    let s = app.settle().await;
    assert_eq!(s.stats.rate_limited, 2);
    assert_eq!(requests(&s, "create_call"), 3);
    assert_eq!(s.call_markers(), [SEED_000_MARKER]);
    app.assert_ledger(1, 0).await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_applied_but_answered_with_a_reset_is_adopted_not_repeated() {
    let (app, s) = settled_after(SEED_000, &[("create_call", Fault::ApplyThenReset, 1)]).await;
    app.assert_ledger(1, 0).await;
    assert_eq!(s.stats.resets, 1);
    assert_eq!(
        s.call_markers(),
        [SEED_000_MARKER],
        "the call created before the reset is the only one"
    );
    assert_eq!(requests(&s, "create_call"), 1);
    assert!(requests(&s, "search_calls") >= 1, "the marker was searched");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_applied_but_answered_500_is_adopted_not_repeated() {
    // A 5xx may come after the CRM committed the request: its outcome is
    // unknown, so the marker is searched before anything is created again.
    let applied_then_500 = Fault::ApplyThenServerError;
    let (app, s) =
        follow_up_synced_once_after(&["create_call", "create_task"], applied_then_500, 1).await;
    assert_eq!(s.stats.applied_server_errors, 2);
    assert_eq!(requests(&s, "create_call"), 1);
    assert_eq!(requests(&s, "create_task"), 1);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_create_applied_but_reset_does_not_create_a_second_contact() {
    let (app, s) = follow_up_synced_once_after(&["create_contact"], Fault::ApplyThenReset, 1).await;
    assert_eq!(s.stats.resets, 1);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_and_the_call_is_synced_once() {
    let (app, s) =
        follow_up_synced_once_after(&["create_contact", "create_task"], Fault::ServerError, 2)
            .await;
    assert_eq!(s.stats.server_errors, 4);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanently_rejected_call_is_parked_with_its_reason() {
    let (app, s) = settled_after(SEED_000, &[("create_call", Fault::Status(400), 1)]).await;
    app.assert_ledger(0, 1).await;
    let reason = app.parked_reason(SEED_000_CALL_ID).await;
    assert!(
        reason.contains("call_log: CRM rejected the request (400)"),
        "{reason}"
    );
    assert_eq!(s.call_markers(), Vec::<String>::new());
    assert_requests(
        &s,
        &[("create_call", 1)],
        "a permanent error is not retried",
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_that_outlasts_every_retry_tier_is_parked() {
    let app = TestApp::builder()
        .set("CALLSYNC_RETRY_DELAYS", "1s")
        .start()
        .await;
    app.env.sim.inject("create_call", Fault::ServerError, 1_000);
    app.post_fixture(SEED_000).await;
    let s = app.settle().await;
    app.assert_ledger(0, 1).await;
    let parked = app.the_parked(SEED_000_CALL_ID).await;
    assert!(
        parked.reason.starts_with("gave up after 2 attempts"),
        "{parked:?}"
    );
    assert_eq!(parked.attempts, Some(2));
    assert_eq!(s.call_markers(), Vec::<String>::new());
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_cannot_be_parsed_is_parked_at_once() {
    let app = TestApp::spawn().await;
    let connection = callsync_shared::broker::connect(AMQP_URL, "callsync-tests")
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let mut table = FieldTable::default();
    headers::set_text(&mut table, headers::SOURCE, "voicedock");
    channel
        .basic_publish(
            app.env.topology.exchange().as_str().into(),
            CALL_REPORT_KEY.into(),
            BasicPublishOptions::default(),
            b"not json at all",
            lapin::BasicProperties::default().with_headers(table),
        )
        .await
        .unwrap();
    let _ = connection.close(200, "done".into()).await;
    let s = app.settle().await;
    // The message has no call id: the ledger never hears of it.
    let reason = app.parked_reason("").await;
    assert!(
        reason.starts_with("unparseable: body is not valid JSON"),
        "{reason}"
    );
    assert_eq!(s.stats.requests, 0, "nothing reached the CRM");
    app.assert_ledger(0, 0).await;
    app.shutdown().await;
}

/// Sends the follow-up report to an app whose CRM answers slowly, stops its
/// only worker (gracefully) as soon as it talks to the CRM, and asserts the
/// worker finished and acknowledged the call before it exited.
async fn a_stopped_worker_finishes_its_call(mut app: TestApp) {
    app.post_fixture(FOLLOW_UP).await;
    app.wait_for_crm("the worker talks to the CRM", |s| s.stats.requests > 0)
        .await;
    app.stop_worker(0).await;
    // Not settled: what the CRM holds the moment the worker is gone.
    let s = app.snapshot();
    assert_eq!(
        (s.call_markers(), s.task_markers()),
        (
            vec![FOLLOW_UP_MARKER.to_owned()],
            vec![FOLLOW_UP_MARKER.to_owned()]
        ),
        "the call in flight was finished before exit"
    );
    assert_eq!(
        app.take_queued_call_ids().await,
        Vec::<String>::new(),
        "and acknowledged"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_finishes_the_call_in_flight() {
    a_stopped_worker_finishes_its_call(TestApp::with_latency(Duration::from_millis(300)).await)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_process_finishes_its_call_and_exits_cleanly_on_sigterm() {
    let app = TestApp::builder()
        .latency(Duration::from_millis(300))
        .workers(0)
        .worker_processes(1)
        .start()
        .await;
    a_stopped_worker_finishes_its_call(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_that_times_out_after_being_applied_is_found_by_its_marker_not_repeated() {
    let (app, s) = settled_after(SEED_000, &[("create_call", Fault::ApplyThenHang, 1)]).await;
    app.assert_ledger(1, 0).await;
    assert_eq!(s.call_markers(), [SEED_000_MARKER]);
    assert_eq!(requests(&s, "create_call"), 1);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_deleted_in_the_crm_is_looked_up_again_instead_of_reused() {
    let (app, s) = settled_after(SEED_000, &[]).await;
    assert_eq!(s.contacts.len(), 1, "{:#?}", s.contacts);
    let first = s.contacts[0].id.clone();
    // A human merges the contact away; the ledger still remembers it.
    app.env.sim.delete_contact(&first);
    let second_call = String::from_utf8(fixture(SEED_000))
        .unwrap()
        .replace(SEED_000_CALL_ID, "after-the-merge");
    app.post_voicedock(second_call.into_bytes()).await;
    let s = app.settle().await;
    app.assert_ledger(2, 0).await;
    let after_the_merge = voicedock_marker("after-the-merge");
    assert_eq!(
        s.call_markers(),
        [SEED_000_MARKER.to_owned(), after_the_merge.clone()]
    );
    assert_eq!(s.contacts.len(), 1, "a new contact for the caller");
    let replacement = &s.contacts[0].id;
    assert_ne!(replacement, &first);
    let latest = s
        .calls
        .iter()
        .find(|c| c.marker() == Some(after_the_merge.clone()))
        .unwrap();
    assert_eq!(latest.associations, vec![replacement.clone()]);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_whose_follow_up_date_is_out_of_range_is_parked_not_retried_forever() {
    let app = TestApp::spawn().await;
    let body = String::from_utf8(fixture(FOLLOW_UP))
        .unwrap()
        .replace("2025-12-14T09:15:00.000Z", "9999-12-31T23:00:00.000Z");
    app.post_voicedock(body.into_bytes()).await;
    let s = app.settle().await;
    app.assert_ledger(0, 1).await;
    let reason = app.parked_reason(FOLLOW_UP_CALL_ID).await;
    assert!(
        reason.contains("follow-up due date is out of range"),
        "{reason}"
    );
    assert_eq!(
        (s.call_markers(), s.task_markers()),
        (vec![FOLLOW_UP_MARKER.to_owned()], vec![]),
        "the call is recorded; no task at an impossible date"
    );
    app.shutdown().await;
}

/// A worker stopped with SIGTERM while it holds a full prefetch of calls
/// logs nothing at ERROR (an alert on error logs must not page for a
/// deploy), and the calls it did not finish are synced by its successor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_under_load_logs_no_error() {
    let mut app = TestApp::builder()
        .latency(Duration::from_millis(200))
        .workers(0)
        .start()
        .await;
    let log = std::env::temp_dir().join(format!("callsync-shutdown-{}.log", app.env.id));
    let env = app
        .worker_env()
        .with("CALLSYNC_LOG", "info")
        .with("CALLSYNC_LOG_FORMAT", "json")
        // Less grace than the work in hand needs: some calls are abandoned
        // unacknowledged, the hardest clean stop.
        .with("CALLSYNC_SHUTDOWN_GRACE", "1s");
    let first = app.add_logged_worker_process(env, &log).await;
    let ids: Vec<String> = (0..40).map(|i| format!("shutdown-load-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        app.post_voicedock(voicedock_report(id, &format!("+3162000{i:04}"), false))
            .await;
    }
    app.wait_for_crm("the worker is busy with the CRM", |s| {
        s.stats.requests >= 10
    })
    .await;
    app.stop_worker(first).await;

    let text = std::fs::read_to_string(&log).expect("the worker's log");
    let _ = std::fs::remove_file(&log);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.iter().any(|l| l.contains("shutting down")),
        "the log was captured: {text}"
    );
    let errors: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("\"level\":\"ERROR\""))
        .collect();
    assert!(
        errors.is_empty(),
        "ERROR lines on a clean stop: {errors:#?}"
    );

    app.add_worker().await;
    let s = app.settle().await;
    let mut expected: Vec<String> = ids.iter().map(|id| voicedock_marker(id)).collect();
    expected.sort();
    assert_eq!(s.call_markers(), expected);
    app.assert_ledger(40, 0).await;
    app.shutdown().await;
}

/// A retry the broker cannot route (the first tier lost its binding, as
/// after an operator's mistake) is not dropped: the delivery goes back to
/// the calls queue, and the call syncs when it comes round again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_the_broker_cannot_route_returns_the_call_to_its_queue() {
    let app = TestApp::spawn().await;
    app.wait_for_worker_readiness(0, reqwest::StatusCode::OK)
        .await;
    let topology = &app.env.topology;
    let first_tier = app.env.retry_delays()[0];
    let connection = callsync_shared::broker::connect(AMQP_URL, "callsync-tests")
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .queue_unbind(
            topology.retry_queue(first_tier).as_str().into(),
            topology.retry_exchange().as_str().into(),
            callsync_shared::topology::Topology::retry_key(first_tier)
                .as_str()
                .into(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let _ = connection.close(200, "done".into()).await;
    // The contact search is tried four times in-process; four 503s send
    // the call to the first tier, which cannot take it.
    app.env.sim.inject("search_contacts", Fault::ServerError, 4);
    app.post_fixture(SEED_000).await;
    let s = app.settle().await;
    app.assert_ledger(1, 0).await;
    assert_eq!(s.call_markers(), [SEED_000_MARKER]);
    assert_eq!(s.stats.server_errors, 4, "the 503s did happen");
    assert!(app.parked().await.is_empty(), "nothing is parked");
    app.shutdown().await;
}

/// A 403 for one record (a record the integration user may not touch),
/// without a scope or API refusal in its body, parks that call alone: the
/// worker does not pause, and the next call syncs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_crm_forbids_parks_that_call_and_the_worker_goes_on() {
    let (app, s) = settled_after(SEED_000, &[("create_call", Fault::Status(403), 1)]).await;
    app.assert_ledger(0, 1).await;
    let parked = app.the_parked(SEED_000_CALL_ID).await;
    assert!(parked.reason.contains("403"), "{parked:?}");
    // Parked at its first delivery: one attempt, which a replay counts on from.
    assert_eq!(parked.attempts, Some(1));
    assert_eq!(s.call_markers(), Vec::<String>::new());
    let (status, body) = app.worker_readiness(0).await;
    assert_eq!(status, reqwest::StatusCode::OK, "not paused: {body}");
    app.post_fixture(FOLLOW_UP).await;
    let s = app.settle().await;
    assert_eq!(s.call_markers(), [FOLLOW_UP_MARKER]);
    app.assert_ledger(1, 1).await;
    app.shutdown().await;
}

/// The queue depths are what dashboards and the parked-messages alert read:
/// a parked call shows as one message in the parking queue, and the work
/// queue it left is reported, empty. (The worker runs as its own process so
/// that its registry holds only its own gauges.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_call_counts_in_the_published_depth_of_the_parking_queue() {
    let app = TestApp::builder()
        .workers(0)
        .worker_processes(1)
        .start()
        .await;
    app.env.sim.inject("create_call", Fault::Status(400), 1);
    app.post_fixture(SEED_000).await;
    app.settle().await;
    app.assert_ledger(0, 1).await;

    let metrics = format!("{}/metrics", app.worker_url(0));
    let parking = app.env.topology.parking_queue();
    let calls = app.env.topology.calls_queue();
    let depth = |text: &str, queue: &str| {
        callsync_tests::prometheus::value(text, "callsync_queue_messages", &[("queue", queue)])
    };
    // Depths are read every 15 s, the first time when the worker connects.
    let text = eventually(
        Duration::from_secs(45),
        "the parking queue's depth is published as 1",
        // Only the depth series, so that a failure prints what matters.
        || async {
            let text = app.client.get(&metrics).send().await.unwrap();
            let text = text.text().await.unwrap();
            text.lines()
                .filter(|line| line.starts_with("callsync_queue_messages"))
                .collect::<Vec<_>>()
                .join("\n")
        },
        |text| depth(text, &parking) == 1.0,
    )
    .await;
    assert!(
        callsync_tests::prometheus::exposed(&text, "callsync_queue_messages", &[("queue", &calls)]),
        "the work queue's depth is published: {text}"
    );
    assert_eq!(depth(&text, &calls), 0.0);
    app.shutdown().await;
}
