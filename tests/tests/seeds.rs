//! Every seed example travels the whole way: webhook → ingest → RabbitMQ →
//! worker → ledger → crm-sim, and lands as the right CRM records.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use callsync_tests::app::TestApp;
use callsync_tests::harness::{FOLLOW_UP_MARKER, SEED_000_MARKER};
use callsync_tests::sim::{Record, Snapshot};
use serde_json::{Map, Value, json};

fn the_only<'a>(records: &'a [Record], what: &str) -> &'a Record {
    assert_eq!(
        records.len(),
        1,
        "expected exactly one {what}, found {records:#?}"
    );
    &records[0]
}

fn properties(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

/// [`sync_one`] on a default app.
async fn sync_fixture(name: &str, marker: &str, follow_up: bool) -> Snapshot {
    sync_one(TestApp::spawn().await, name, marker, follow_up).await
}

/// Sends one fixture through `app` and returns the CRM's state once it
/// settled: the call's record carries `marker`, and so does a task exactly
/// when the call asked for a follow-up.
async fn sync_one(app: TestApp, name: &str, marker: &str, follow_up: bool) -> Snapshot {
    let answer = app.post_fixture(name).await;
    assert_eq!(answer["accepted"], true, "{answer}");
    assert!(
        answer["id"].as_str().is_some_and(|id| !id.is_empty()),
        "{answer}"
    );
    let snapshot = app.settle().await;
    assert_eq!(snapshot.call_markers(), [marker], "one call record");
    let tasks: &[&str] = if follow_up { &[marker] } else { &[] };
    assert_eq!(snapshot.task_markers(), tasks, "a task only when flagged");
    // Synced in the ledger means every step is done, the contact update included.
    app.assert_ledger(1, 0).await;
    app.shutdown().await;
    snapshot
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_000_creates_one_contact_and_one_call_with_the_report_fields() {
    let s = sync_fixture(
        "voicedock_000_end_of_call_report.json",
        SEED_000_MARKER,
        false,
    )
    .await;

    let contact = the_only(&s.contacts, "contact");
    assert_eq!(contact.prop("phone"), Some("+31612345678"));
    assert_eq!(contact.prop("callsync_last_call_at"), Some("1765627530000"));
    assert_eq!(
        contact.prop("callsync_last_call_summary"),
        Some(
            "Customer asked about opening hours and wanted to schedule an appointment for next week."
        )
    );
    assert_eq!(contact.prop("callsync_last_sentiment"), Some("8/10"));

    let call = the_only(&s.calls, "call record");
    assert_eq!(call.associations, vec![contact.id.clone()]);
    assert_eq!(call.prop("callsync_marker"), Some(SEED_000_MARKER));
    assert_eq!(call.prop("hs_timestamp"), Some("1765627530000"));
    assert_eq!(call.prop("hs_call_duration"), Some("84000"));
    assert_eq!(call.prop("hs_call_from_number"), Some("+31612345678"));
    assert_eq!(call.prop("hs_call_to_number"), Some("+31850835037"));
    assert_eq!(call.prop("hs_call_status"), Some("COMPLETED"));
    let body = call.prop("hs_call_body").unwrap();
    assert!(
        body.contains("Customer asked about opening hours"),
        "{body}"
    );
    assert!(
        body.contains("primary_topic: Schedule appointment"),
        "{body}"
    );
    assert!(body.contains(SEED_000_MARKER), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_001_uses_the_crm_id_hint_and_records_the_recording() {
    let app = TestApp::spawn().await;
    app.env.sim.seed_contact_with_id(
        "12345",
        properties(json!({ "phone": "+31600000000", "firstname": "Known" })),
    );
    let s = sync_one(
        app,
        "voicedock_001_end_of_call_report_full.json",
        SEED_000_MARKER,
        false,
    )
    .await;

    let contact = the_only(&s.contacts, "contact");
    assert_eq!(
        contact.id, "12345",
        "the crm_id hint names the contact; none is created"
    );
    assert_eq!(contact.prop("callsync_last_sentiment"), Some("8/10"));
    let call = the_only(&s.calls, "call record");
    assert_eq!(call.associations, vec!["12345".to_owned()]);
    assert!(
        call.prop("hs_call_recording_url")
            .unwrap()
            .starts_with("https://example.supabase.co/storage/v1/object/sign/recordings/")
    );
    assert!(
        call.prop("hs_call_body")
            .unwrap()
            .contains("user: I would like to schedule an appointment")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_003_camel_case_report_lands_like_the_snake_case_one() {
    let s = sync_fixture(
        "voicedock_003_end_of_call_report_camel_case.json",
        SEED_000_MARKER,
        false,
    )
    .await;
    let contact = the_only(&s.contacts, "contact");
    assert_eq!(contact.prop("phone"), Some("+31612345678"));
    assert_eq!(
        contact.prop("callsync_last_call_summary"),
        Some("Klant vroeg naar openingstijden en wilde een afspraak maken voor volgende week.")
    );
    let call = the_only(&s.calls, "call record");
    assert_eq!(call.prop("hs_call_duration"), Some("84000"));
    assert_eq!(call.prop("hs_call_to_number"), Some("+31850835037"));
    assert!(
        call.prop("hs_call_body")
            .unwrap()
            .contains("hoofdonderwerp: Afspraak maken")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_002_post_call_example_creates_a_named_contact_with_email() {
    let app = TestApp::spawn().await;
    let before = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let s = sync_one(
        app,
        "postcall_002_example.json",
        "callsync:postcall:693bff62619c51fac21acf50",
        false,
    )
    .await;
    let after = time::OffsetDateTime::now_utc().unix_timestamp() * 1000 + 1000;

    let contact = the_only(&s.contacts, "contact");
    assert_eq!(contact.prop("phone"), Some("+15551234567"));
    assert_eq!(contact.prop("firstname"), Some("John"));
    assert_eq!(contact.prop("lastname"), Some("Smith"));
    assert_eq!(contact.prop("email"), Some("john.smith@example.com"));
    assert_eq!(contact.prop("callsync_last_sentiment"), Some("Positive"));

    let call = the_only(&s.calls, "call record");
    assert_eq!(
        call.prop("callsync_marker"),
        Some("callsync:postcall:693bff62619c51fac21acf50")
    );
    // postcall has no end time: the receipt time, carried by ingest, is used.
    let at: i64 = call.prop("hs_timestamp").unwrap().parse().unwrap();
    assert!(
        (before..=after).contains(&at),
        "{at} not within receipt window {before}..{after}"
    );
    assert!(
        call.prop("hs_call_body")
            .unwrap()
            .contains("transcript_693bff62619c51fac21acf50.json")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_002_curl_test_payload_creates_a_contact_without_analysis() {
    let s = sync_fixture(
        "postcall_002_curl_test.json",
        "callsync:postcall:test-call-123",
        false,
    )
    .await;
    let contact = the_only(&s.contacts, "contact");
    assert_eq!(contact.prop("phone"), Some("+15550000000"));
    assert_eq!(contact.prop("firstname"), Some("Test"));
    let call = the_only(&s.calls, "call record");
    assert_eq!(
        call.prop("callsync_marker"),
        Some("callsync:postcall:test-call-123")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flagged_voicedock_call_creates_one_follow_up_task_due_a_day_after_the_call() {
    let s = sync_fixture("voicedock_follow_up.json", FOLLOW_UP_MARKER, true).await;
    let contact = the_only(&s.contacts, "contact");
    assert_eq!(contact.prop("phone"), Some("+31687654321"));
    let task = the_only(&s.tasks, "task");
    assert_eq!(task.associations, vec![contact.id.clone()]);
    // 2025-12-14T09:15:00Z + 1 day.
    assert_eq!(task.prop("hs_timestamp"), Some("1765790100000"));
    assert_eq!(task.prop("hs_task_type"), Some("CALL"));
    assert_eq!(task.prop("hs_task_status"), Some("NOT_STARTED"));
    assert_eq!(
        task.prop("hs_task_subject"),
        Some("Follow up: call from +31687654321")
    );
    let body = task.prop("hs_task_body").unwrap();
    assert!(body.contains("billing error"), "{body}");
    assert!(body.contains(FOLLOW_UP_MARKER), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flagged_postcall_call_uses_the_default_region_and_names_the_caller_in_the_task() {
    let app = TestApp::builder()
        .set("CALLSYNC_DEFAULT_REGION", "NL")
        .set("CALLSYNC_FOLLOW_UP_DUE", "2h")
        .start()
        .await;
    let s = sync_one(
        app,
        "postcall_follow_up.json",
        "callsync:postcall:65a1c0ffee0ddba11c0ffee1",
        true,
    )
    .await;
    let contact = the_only(&s.contacts, "contact");
    assert_eq!(contact.prop("phone"), Some("+31201234567"));
    let call = the_only(&s.calls, "call record");
    let task = the_only(&s.tasks, "task");
    assert_eq!(
        task.prop("hs_task_subject"),
        Some("Follow up: call from Maria Jansen")
    );
    let called: i64 = call.prop("hs_timestamp").unwrap().parse().unwrap();
    let due: i64 = task.prop("hs_timestamp").unwrap().parse().unwrap();
    assert_eq!(
        due - called,
        2 * 3600 * 1000,
        "due CALLSYNC_FOLLOW_UP_DUE after the call"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_caller_is_found_by_phone_and_not_created_again() {
    let app = TestApp::spawn().await;
    let existing = app.env.sim.seed_contact(properties(
        json!({ "mobilephone": "+31612345678", "firstname": "Anna" }),
    ));
    let s = sync_one(
        app,
        "voicedock_000_end_of_call_report.json",
        SEED_000_MARKER,
        false,
    )
    .await;
    let contact = the_only(&s.contacts, "contact");
    assert_eq!(contact.id, existing);
    assert_eq!(contact.prop("firstname"), Some("Anna"));
    assert_eq!(contact.prop("callsync_last_sentiment"), Some("8/10"));
    assert_eq!(
        the_only(&s.calls, "call record").associations,
        vec![existing]
    );
}
