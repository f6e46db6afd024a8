//! Exactly one effect per call, however often and however concurrently it
//! is delivered, and one contact per new phone number across replicas.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use callsync_tests::app::TestApp;
use callsync_tests::harness::{FOLLOW_UP_MARKER, voicedock_marker, voicedock_report_at};
use callsync_tests::sim::{Fault, Snapshot};
use futures_util::future::join_all;
use serde_json::json;

/// The app settled after `copies` copies of the follow-up report, sent at
/// once or one after another, hold one contact, one call and one task,
/// and the ledger one synced call.
async fn one_call_and_one_task_from(app: TestApp, copies: usize, at_once: bool) {
    let body = callsync_tests::harness::fixture("voicedock_follow_up.json");
    if at_once {
        join_all((0..copies).map(|_| app.post_voicedock(body.clone()))).await;
    } else {
        for _ in 0..copies {
            app.post_voicedock(body.clone()).await;
        }
    }
    let s = app.settle().await;
    assert_eq!(s.call_markers(), [FOLLOW_UP_MARKER]);
    assert_eq!(s.task_markers(), [FOLLOW_UP_MARKER]);
    assert_eq!(s.contacts.len(), 1, "{:#?}", s.contacts);
    app.assert_ledger(1, 0).await;
    app.shutdown().await;
}

/// Posts a report for `call_id` from `phone` that ended `at`.
async fn post_call(app: &TestApp, call_id: &str, phone: &str, at: &str) {
    app.post_voicedock(voicedock_report_at(call_id, phone, false, at))
        .await;
}

/// The markers of the calls "newer" and "older", sorted.
fn newer_and_older() -> [String; 2] {
    [voicedock_marker("newer"), voicedock_marker("older")]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_delivery_sent_five_times_in_a_row_creates_one_call_and_one_task() {
    one_call_and_one_task_from(TestApp::spawn().await, 5, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_delivery_sent_five_times_at_once_to_two_workers_creates_one_call_and_one_task() {
    // Latency keeps the first delivery in flight while the others arrive.
    let app = TestApp::racing("hubspot", Duration::from_millis(100)).await;
    one_call_and_one_task_from(app, 5, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_given_two_calls_from_one_new_number_create_one_contact() {
    let app = TestApp::racing("hubspot", Duration::from_millis(150)).await;
    let calls = [
        "same-number-a",
        "same-number-b",
        "same-number-c",
        "same-number-d",
    ];
    let markers = app
        .post_reports_at_once(&calls, "+442071838750", true)
        .await;
    let s = app.settle().await;
    app.assert_ledger(4, 0).await;
    assert_eq!(s.call_markers(), markers);
    assert_eq!(s.task_markers(), markers);
    assert_eq!(
        s.contacts.len(),
        1,
        "one new number, one contact: {:#?}",
        s.contacts
    );
    let contact = &s.contacts[0].id;
    assert!(
        s.calls
            .iter()
            .chain(&s.tasks)
            .all(|r| r.associations == vec![contact.clone()]),
        "every call and task is on the one contact: {s:#?}"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_older_call_does_not_overwrite_the_newer_last_call_fields() {
    let app = TestApp::spawn().await;
    let phone = "+14155550100";
    post_call(&app, "newer", phone, "2026-03-02T10:00:00Z").await;
    // The newer call is synced completely before the older one arrives.
    assert_eq!(
        app.settle().await.call_markers(),
        [voicedock_marker("newer")]
    );
    post_call(&app, "older", phone, "2026-03-01T10:00:00Z").await;
    let s = app.settle().await;
    assert_eq!(s.call_markers(), newer_and_older());
    assert_eq!(s.contacts.len(), 1, "{:#?}", s.contacts);
    assert_eq!(
        s.contacts[0].prop("callsync_last_call_summary"),
        Some("Call newer")
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_call_waits_for_an_older_update_in_flight_instead_of_being_overwritten_by_it() {
    let app = TestApp::spawn().await;
    let phone = "+14155550111";
    let contact = app
        .env
        .sim
        .seed_contact(json!({ "phone": phone }).as_object().unwrap().clone());
    // The older call's update reaches the CRM first but is applied late,
    // after the newer call's update would have been, had it been sent.
    app.env.sim.inject(
        "update_contact",
        Fault::Slow(Duration::from_millis(1500)),
        1,
    );
    let updates = |s: &Snapshot| {
        s.stats
            .by_operation
            .get("update_contact")
            .copied()
            .unwrap_or(0)
    };
    post_call(&app, "older", phone, "2026-03-01T10:00:00Z").await;
    app.wait_for_crm("the older call's update reached the CRM", |s| {
        updates(s) == 1
    })
    .await;
    // The older update is inside the CRM, not applied yet.
    post_call(&app, "newer", phone, "2026-03-02T10:00:00Z").await;
    // Settling waits for the slow update to be applied, too.
    let s = app.settle().await;
    assert_eq!(s.call_markers(), newer_and_older());
    assert_eq!(updates(&s), 2, "{:?}", s.stats.by_operation);
    assert_eq!(s.contacts.len(), 1);
    assert_eq!(s.contacts[0].id, contact);
    assert_eq!(
        s.contacts[0].prop("callsync_last_call_summary"),
        Some("Call newer")
    );
    assert_eq!(s.stats.slow, 1, "the older update was the slow one");
    app.shutdown().await;
}
