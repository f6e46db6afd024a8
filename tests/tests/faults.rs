//! Each kind of failure on its own: a worker killed mid-call, rate limits,
//! requests applied but never answered, server errors, permanent rejections
//! and graceful shutdown. Every test ends by counting the CRM's records.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use callsync_shared::topology::{CALL_REPORT_KEY, headers};
use callsync_tests::harness::{AMQP_URL, TestEnv, fixture, post_voicedock};
use callsync_tests::sim::{Fault, SimConfig};
use lapin::options::BasicPublishOptions;
use lapin::types::FieldTable;
use reqwest::StatusCode;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_between_steps_and_restarted_completes_the_call_without_duplicating_a_step()
{
    let env = TestEnv::new().await;
    // The task is created in the CRM but its answer never comes: the worker
    // is stuck after three of four steps when it is killed.
    env.sim.inject("create_task", Fault::ApplyThenHang, 1);
    let ingest = env.start_ingest().await;
    let worker = env.spawn_worker_process().await;
    let client = reqwest::Client::new();
    let (status, _) = post_voicedock(&client, &ingest, fixture("voicedock_follow_up.json")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    env.wait_for_crm(WAIT, |s| s.tasks.len() == 1).await;
    worker.kill().await;

    let ledger = env.ledger().await;
    assert_eq!(
        ledger.counts().await.unwrap().synced,
        0,
        "the killed worker did not finish the call"
    );

    let restarted = env.start_worker().await;
    env.wait_for_ledger(1, 0).await;
    let s = env.settle().await;
    assert_eq!((s.contacts.len(), s.calls.len(), s.tasks.len()), (1, 1, 1));
    assert_eq!(
        s.stats.by_operation.get("create_call"),
        Some(&1),
        "the call step was not repeated"
    );
    assert_eq!(
        s.stats.by_operation.get("create_task"),
        Some(&1),
        "the task was adopted, not re-created"
    );
    restarted.stop().await;
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_request_waits_for_retry_after_and_the_call_is_synced_once() {
    let env = TestEnv::new().await;
    env.sim.inject(
        "create_call",
        Fault::RateLimited {
            retry_after_secs: Some(1),
        },
        2,
    );
    let ingest = env.start_ingest().await;
    let worker = env.start_worker().await;
    let started = std::time::Instant::now();
    post_voicedock(
        &reqwest::Client::new(),
        &ingest,
        fixture("voicedock_000_end_of_call_report.json"),
    )
    .await;
    env.wait_for_crm(WAIT, |s| s.calls.len() == 1).await;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "two Retry-After: 1 waits were honoured"
    );
    let s = env.settle().await;
    assert_eq!(s.stats.rate_limited, 2);
    assert_eq!(s.stats.by_operation.get("create_call"), Some(&3));
    assert_eq!(s.calls.len(), 1);
    worker.stop().await;
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_applied_but_answered_with_a_reset_is_adopted_not_repeated() {
    let env = TestEnv::new().await;
    env.sim.inject("create_call", Fault::ApplyThenReset, 1);
    let ingest = env.start_ingest().await;
    let worker = env.start_worker().await;
    post_voicedock(
        &reqwest::Client::new(),
        &ingest,
        fixture("voicedock_000_end_of_call_report.json"),
    )
    .await;
    env.wait_for_ledger(1, 0).await;
    let s = env.settle().await;
    assert_eq!(s.stats.resets, 1);
    assert_eq!(
        s.calls.len(),
        1,
        "the call created before the reset is the only one"
    );
    assert_eq!(s.stats.by_operation.get("create_call"), Some(&1));
    assert!(
        s.stats
            .by_operation
            .get("search_calls")
            .is_some_and(|n| *n >= 1),
        "the marker was searched"
    );
    worker.stop().await;
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_create_applied_but_reset_does_not_create_a_second_contact() {
    let env = TestEnv::new().await;
    env.sim.inject("create_contact", Fault::ApplyThenReset, 1);
    let ingest = env.start_ingest().await;
    let worker = env.start_worker().await;
    post_voicedock(
        &reqwest::Client::new(),
        &ingest,
        fixture("voicedock_follow_up.json"),
    )
    .await;
    env.wait_for_ledger(1, 0).await;
    let s = env.settle().await;
    assert_eq!((s.contacts.len(), s.calls.len(), s.tasks.len()), (1, 1, 1));
    worker.stop().await;
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_and_the_call_is_synced_once() {
    let env = TestEnv::new().await;
    env.sim.inject("create_contact", Fault::ServerError, 2);
    env.sim.inject("create_task", Fault::ServerError, 2);
    let ingest = env.start_ingest().await;
    let worker = env.start_worker().await;
    post_voicedock(
        &reqwest::Client::new(),
        &ingest,
        fixture("voicedock_follow_up.json"),
    )
    .await;
    env.wait_for_ledger(1, 0).await;
    let s = env.settle().await;
    assert_eq!(s.stats.server_errors, 4);
    assert_eq!((s.contacts.len(), s.calls.len(), s.tasks.len()), (1, 1, 1));
    worker.stop().await;
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanently_rejected_call_is_parked_with_its_reason() {
    let env = TestEnv::new().await;
    env.sim.inject("create_call", Fault::Status(400), 1);
    let ingest = env.start_ingest().await;
    let worker = env.start_worker().await;
    post_voicedock(
        &reqwest::Client::new(),
        &ingest,
        fixture("voicedock_000_end_of_call_report.json"),
    )
    .await;
    env.wait_for_ledger(0, 1).await;
    assert_eq!(env.queue_depth(&env.topology.parking_queue()).await, 1);
    let reason = env.parked_reason().await;
    assert!(
        reason.contains("call_log: CRM rejected the request (400)"),
        "{reason}"
    );
    let s = env.sim.snapshot();
    assert!(s.calls.is_empty());
    assert_eq!(
        s.stats.by_operation.get("create_call"),
        Some(&1),
        "a permanent error is not retried"
    );
    worker.stop().await;
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_that_outlasts_every_retry_tier_is_parked() {
    let mut env = TestEnv::new().await;
    env.set("CALLSYNC_RETRY_DELAYS", "1s");
    env.sim.inject("create_call", Fault::ServerError, 1_000);
    let ingest = env.start_ingest().await;
    let worker = env.start_worker().await;
    post_voicedock(
        &reqwest::Client::new(),
        &ingest,
        fixture("voicedock_000_end_of_call_report.json"),
    )
    .await;
    env.wait_for_ledger(0, 1).await;
    let reason = env.parked_reason().await;
    assert!(reason.starts_with("gave up after 2 attempts"), "{reason}");
    assert!(env.sim.snapshot().calls.is_empty());
    worker.stop().await;
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_cannot_be_parsed_is_parked_at_once() {
    let env = TestEnv::new().await;
    let worker = env.start_worker().await;
    let connection = callsync_shared::broker::connect(AMQP_URL, "callsync-tests")
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let mut table = FieldTable::default();
    headers::set_text(&mut table, headers::SOURCE, "voicedock");
    channel
        .basic_publish(
            env.topology.exchange().as_str().into(),
            CALL_REPORT_KEY.into(),
            BasicPublishOptions::default(),
            b"not json at all",
            lapin::BasicProperties::default().with_headers(table),
        )
        .await
        .unwrap();
    env.wait_for_queue_depth(&env.topology.parking_queue(), 1)
        .await;
    let reason = env.parked_reason().await;
    assert!(
        reason.starts_with("unparseable: body is not valid JSON"),
        "{reason}"
    );
    assert_eq!(
        env.sim.snapshot().stats.requests,
        0,
        "nothing reached the CRM"
    );
    let _ = connection.close(200, "done".into()).await;
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_finishes_the_call_in_flight() {
    let env = TestEnv::with_sim(SimConfig {
        latency: Duration::from_millis(300),
        ..SimConfig::default()
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
    // Stop as soon as the worker is talking to the CRM.
    env.wait_for_crm(WAIT, |s| s.stats.requests > 0).await;
    worker.stop().await;
    let s = env.sim.snapshot();
    assert_eq!(
        (s.calls.len(), s.tasks.len()),
        (1, 1),
        "the call in flight was finished before exit"
    );
    assert_eq!(
        env.queue_depth(&env.topology.calls_queue()).await,
        0,
        "and acknowledged"
    );
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_process_finishes_its_call_and_exits_cleanly_on_sigterm() {
    let env = TestEnv::with_sim(SimConfig {
        latency: Duration::from_millis(300),
        ..SimConfig::default()
    })
    .await;
    let ingest = env.start_ingest().await;
    let worker = env.spawn_worker_process().await;
    post_voicedock(
        &reqwest::Client::new(),
        &ingest,
        fixture("voicedock_follow_up.json"),
    )
    .await;
    env.wait_for_crm(WAIT, |s| s.stats.requests > 0).await;
    let status = worker.terminate(Duration::from_secs(20)).await;
    assert!(status.success(), "exit status {status:?}");
    let s = env.sim.snapshot();
    assert_eq!(
        (s.calls.len(), s.tasks.len()),
        (1, 1),
        "the call in flight was finished before exit"
    );
    assert_eq!(env.queue_depth(&env.topology.calls_queue()).await, 0);
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_that_times_out_after_being_applied_is_found_by_its_marker_not_repeated() {
    let env = TestEnv::new().await;
    env.sim.inject("create_call", Fault::ApplyThenHang, 1);
    let ingest = env.start_ingest().await;
    let worker = env.start_worker().await;
    post_voicedock(
        &reqwest::Client::new(),
        &ingest,
        fixture("voicedock_000_end_of_call_report.json"),
    )
    .await;
    env.wait_for_ledger(1, 0).await;
    let s = env.settle().await;
    assert_eq!(s.calls.len(), 1);
    assert_eq!(s.stats.by_operation.get("create_call"), Some(&1));
    worker.stop().await;
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_deleted_in_the_crm_is_looked_up_again_instead_of_reused() {
    let env = TestEnv::new().await;
    let ingest = env.start_ingest().await;
    let worker = env.start_worker().await;
    let client = reqwest::Client::new();
    post_voicedock(
        &client,
        &ingest,
        fixture("voicedock_000_end_of_call_report.json"),
    )
    .await;
    env.wait_for_ledger(1, 0).await;
    let first = env.sim.snapshot().contacts[0].id.clone();
    // A human merges the contact away; the ledger still remembers it.
    env.sim.delete_contact(&first);
    let second_call = String::from_utf8(fixture("voicedock_000_end_of_call_report.json"))
        .unwrap()
        .replace("5c4d030f-43e3-4e65-899e-8148521e660f", "after-the-merge");
    post_voicedock(&client, &ingest, second_call.into_bytes()).await;
    env.wait_for_ledger(2, 0).await;
    let s = env.settle().await;
    assert_eq!(s.contacts.len(), 1, "a new contact for the caller");
    let replacement = &s.contacts[0].id;
    assert_ne!(replacement, &first);
    let latest = s
        .calls
        .iter()
        .find(|c| c.marker().as_deref() == Some("callsync:voicedock:after-the-merge"))
        .unwrap();
    assert_eq!(latest.associations, vec![replacement.clone()]);
    worker.stop().await;
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_whose_follow_up_date_is_out_of_range_is_parked_not_retried_forever() {
    let env = TestEnv::new().await;
    let ingest = env.start_ingest().await;
    let worker = env.start_worker().await;
    let body = String::from_utf8(fixture("voicedock_follow_up.json"))
        .unwrap()
        .replace("2025-12-14T09:15:00.000Z", "9999-12-31T23:00:00.000Z");
    post_voicedock(&reqwest::Client::new(), &ingest, body.into_bytes()).await;
    env.wait_for_ledger(0, 1).await;
    let reason = env.parked_reason().await;
    assert!(
        reason.contains("follow-up due date is out of range"),
        "{reason}"
    );
    let s = env.sim.snapshot();
    assert_eq!(
        (s.calls.len(), s.tasks.len()),
        (1, 0),
        "the call is recorded; no task at an impossible date"
    );
    worker.stop().await;
    ingest.stop().await;
}
