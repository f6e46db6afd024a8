//! Exactly one effect per call, however often and however concurrently it
//! is delivered, and one contact per new phone number across replicas.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use callsync_tests::harness::{TestEnv, fixture, post_voicedock};
use callsync_tests::sim::{Fault, SimConfig, Snapshot};
use futures_util::future::join_all;
use reqwest::StatusCode;

const WAIT: Duration = Duration::from_secs(20);

/// A voicedock report for `call_id` from `phone` asking for a follow-up.
fn report(call_id: &str, phone: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "message": {
            "type": "end-of-call-report",
            "timestamp": "2026-03-01T10:00:00.000Z",
            "call": { "id": call_id },
            "customer": { "number": phone },
            "duration_seconds": 30,
            "summary": format!("Call {call_id}"),
            "analysis": { "sentiment": 5, "follow_up_needed": true }
        }
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_delivery_sent_five_times_in_a_row_creates_one_call_and_one_task() {
    let env = TestEnv::new().await;
    let ingest = env.start_ingest().await;
    let worker = env.start_worker().await;
    let client = reqwest::Client::new();
    let body = fixture("voicedock_follow_up.json");
    for _ in 0..5 {
        let (status, _) = post_voicedock(&client, &ingest, body.clone()).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    env.wait_for_crm(WAIT, |s| s.calls.len() == 1 && s.tasks.len() == 1)
        .await;
    // Wait until all five deliveries were consumed, then check nothing more appeared.
    wait_for_empty_queue(&env).await;
    let s = env.settle().await;
    assert_eq!((s.contacts.len(), s.calls.len(), s.tasks.len()), (1, 1, 1));
    worker.stop().await;
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_delivery_sent_five_times_at_once_to_two_workers_creates_one_call_and_one_task() {
    // Latency keeps the first delivery in flight while the others arrive.
    let env = TestEnv::with_sim(SimConfig {
        latency: Duration::from_millis(100),
        ..SimConfig::default()
    })
    .await;
    let ingest = env.start_ingest().await;
    let first = env.start_worker().await;
    let second = env.start_worker().await;
    let client = reqwest::Client::new();
    let body = fixture("voicedock_follow_up.json");
    let answers = join_all((0..5).map(|_| post_voicedock(&client, &ingest, body.clone()))).await;
    assert!(
        answers
            .iter()
            .all(|(status, _)| *status == StatusCode::ACCEPTED),
        "{answers:?}"
    );
    env.wait_for_crm(WAIT, |s| s.calls.len() == 1 && s.tasks.len() == 1)
        .await;
    wait_for_empty_queue(&env).await;
    let s = env.settle().await;
    assert_eq!((s.contacts.len(), s.calls.len(), s.tasks.len()), (1, 1, 1));
    let counts = env.ledger().await.counts().await.unwrap();
    assert_eq!((counts.synced, counts.pending, counts.parked), (1, 0, 0));
    first.stop().await;
    second.stop().await;
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_given_two_calls_from_one_new_number_create_one_contact() {
    let env = TestEnv::with_sim(SimConfig {
        latency: Duration::from_millis(150),
        ..SimConfig::default()
    })
    .await;
    let ingest = env.start_ingest().await;
    let first = env.start_worker().await;
    let second = env.start_worker().await;
    let client = reqwest::Client::new();
    let calls = [
        "same-number-a",
        "same-number-b",
        "same-number-c",
        "same-number-d",
    ];
    let answers = join_all(
        calls
            .iter()
            .map(|id| post_voicedock(&client, &ingest, report(id, "+442071838750"))),
    )
    .await;
    assert!(
        answers
            .iter()
            .all(|(status, _)| *status == StatusCode::ACCEPTED)
    );
    env.wait_for_crm(WAIT, |s| s.calls.len() == 4 && s.tasks.len() == 4)
        .await;
    let s = env.settle().await;
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
            .all(|c| c.associations == vec![contact.clone()])
    );
    assert!(
        s.tasks
            .iter()
            .all(|t| t.associations == vec![contact.clone()])
    );
    first.stop().await;
    second.stop().await;
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_older_call_does_not_overwrite_the_newer_last_call_fields() {
    let env = TestEnv::new().await;
    let ingest = env.start_ingest().await;
    let worker = env.start_worker().await;
    let client = reqwest::Client::new();
    let newer = serde_json::json!({ "message": {
        "type": "end-of-call-report", "timestamp": "2026-03-02T10:00:00Z",
        "call": { "id": "newer" }, "customer": { "number": "+14155550100" }, "summary": "newer call"
    }});
    let older = serde_json::json!({ "message": {
        "type": "end-of-call-report", "timestamp": "2026-03-01T10:00:00Z",
        "call": { "id": "older" }, "customer": { "number": "+14155550100" }, "summary": "older call"
    }});
    post_voicedock(&client, &ingest, serde_json::to_vec(&newer).unwrap()).await;
    env.wait_for_crm(WAIT, |s| s.calls.len() == 1).await;
    post_voicedock(&client, &ingest, serde_json::to_vec(&older).unwrap()).await;
    env.wait_for_crm(WAIT, |s| s.calls.len() == 2).await;
    let s = env.settle().await;
    assert_eq!(s.contacts.len(), 1);
    assert_eq!(
        s.contacts[0].prop("callsync_last_call_summary"),
        Some("newer call")
    );
    worker.stop().await;
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_call_waits_for_an_older_update_in_flight_instead_of_being_overwritten_by_it() {
    let env = TestEnv::new().await;
    let contact = env.sim.seed_contact(
        serde_json::json!({ "phone": "+14155550111" })
            .as_object()
            .unwrap()
            .clone(),
    );
    // The older call's update reaches the CRM first but is applied late,
    // after the newer call's update would have been, had it been sent.
    env.sim.inject(
        "update_contact",
        Fault::Slow(Duration::from_millis(1500)),
        1,
    );
    let ingest = env.start_ingest().await;
    let worker = env.start_worker().await;
    let client = reqwest::Client::new();
    let call = |id: &str, at: &str| {
        serde_json::to_vec(&serde_json::json!({ "message": {
            "type": "end-of-call-report", "timestamp": at,
            "call": { "id": id }, "customer": { "number": "+14155550111" },
            "summary": format!("{id} call")
        }}))
        .unwrap()
    };
    let updates = |s: &Snapshot| {
        s.stats
            .by_operation
            .get("update_contact")
            .copied()
            .unwrap_or(0)
    };
    let slow = Duration::from_millis(1500);
    post_voicedock(&client, &ingest, call("older", "2026-03-01T10:00:00Z")).await;
    env.wait_for_crm(WAIT, |s| updates(s) == 1).await;
    // The older update is now inside the CRM and applied at `applied`.
    let applied = tokio::time::Instant::now() + slow;
    post_voicedock(&client, &ingest, call("newer", "2026-03-02T10:00:00Z")).await;
    env.wait_for_crm(WAIT, |s| s.calls.len() == 2 && updates(s) == 2)
        .await;
    tokio::time::sleep_until(applied + Duration::from_millis(500)).await;
    let s = env.settle().await;
    assert_eq!(s.contacts.len(), 1);
    assert_eq!(s.contacts[0].id, contact);
    assert_eq!(
        s.contacts[0].prop("callsync_last_call_summary"),
        Some("newer call")
    );
    assert_eq!(s.stats.slow, 1, "the older update was the slow one");
    worker.stop().await;
    ingest.stop().await;
}

async fn wait_for_empty_queue(env: &TestEnv) {
    env.wait_for_queue_depth(&env.topology.calls_queue(), 0)
        .await;
    // Ready count 0 does not mean unacknowledged ones are done; give them time.
    tokio::time::sleep(Duration::from_millis(300)).await;
}
