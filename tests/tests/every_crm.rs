//! The same end-to-end scenarios for every supported CRM: HubSpot,
//! Pipedrive, GoHighLevel, Salesforce and the generic signed webhook, each
//! against crm-sim speaking that CRM's API. Test names read
//! `<scenario>::<crm>`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use callsync_tests::harness::{TestEnv, fixture, post_voicedock};
use callsync_tests::sim::{Fault, SimConfig, Snapshot};
use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);
const FOLLOW_UP_MARKER: &str = "callsync:voicedock:0b6f1c3e-7a57-4f0e-9d38-3c1de1f0a2b4";
const SEED_MARKER: &str = "callsync:voicedock:5c4d030f-43e3-4e65-899e-8148521e660f";

async fn env_for(crm: &'static str, config: SimConfig) -> TestEnv {
    let mut env = TestEnv::with_sim(config).await;
    env.crm = crm;
    env
}

/// The request that records the call, per CRM (for injecting faults).
fn record_operation(crm: &str) -> &'static str {
    match crm {
        "hubspot" => "create_call",
        "pipedrive" | "gohighlevel" => "create_note",
        "salesforce" => "upsert_call_task",
        "webhook" => "deliver",
        other => panic!("unknown CRM {other}"),
    }
}

fn markers(records: &[callsync_tests::sim::Record]) -> Vec<String> {
    let mut m: Vec<String> = records.iter().filter_map(|r| r.marker()).collect();
    m.sort();
    m
}

/// Whether a delivered report (webhook) asked for a follow-up.
fn delivery_flags_follow_up(s: &Snapshot, marker: &str) -> bool {
    s.calls
        .iter()
        .find(|r| r.marker().as_deref() == Some(marker))
        .is_some_and(|r| r.properties.get("follow_up_needed") == Some(&Value::Bool(true)))
}

fn report(call_id: &str, phone: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "message": {
        "type": "end-of-call-report", "timestamp": "2026-05-01T08:00:00Z",
        "call": { "id": call_id }, "customer": { "number": phone },
        "summary": format!("Call {call_id}"), "analysis": { "follow_up_needed": true }
    }}))
    .unwrap()
}

async fn reports_create_one_contact_one_call_record_and_one_follow_up(crm: &'static str) {
    let env = env_for(crm, SimConfig::default()).await;
    let ingest = env.start_ingest().await;
    let worker = env.start_worker().await;
    let client = reqwest::Client::new();
    for name in [
        "voicedock_follow_up.json",
        "voicedock_000_end_of_call_report.json",
    ] {
        let (status, answer) = post_voicedock(&client, &ingest, fixture(name)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    }
    // Synced in the ledger means every step, follow-up included, is done.
    env.wait_for_ledger(2, 0).await;
    let s = env.settle().await;
    assert_eq!(
        markers(&s.calls),
        vec![FOLLOW_UP_MARKER.to_owned(), SEED_MARKER.to_owned()]
    );

    if crm == "webhook" {
        assert!(
            s.contacts.is_empty() && s.tasks.is_empty(),
            "one request per call, nothing else"
        );
        assert!(delivery_flags_follow_up(&s, FOLLOW_UP_MARKER));
        assert!(!delivery_flags_follow_up(&s, SEED_MARKER));
        let ids: BTreeSet<_> = s
            .calls
            .iter()
            .filter_map(|r| r.prop("webhook-id"))
            .collect();
        assert_eq!(ids.len(), 2, "a stable, distinct webhook-id per call");
    } else {
        assert_eq!(s.contacts.len(), 2, "{:#?}", s.contacts);
        assert_eq!(markers(&s.tasks), vec![FOLLOW_UP_MARKER.to_owned()]);
        let task = &s.tasks[0];
        let call = s
            .calls
            .iter()
            .find(|c| c.marker().as_deref() == Some(FOLLOW_UP_MARKER))
            .unwrap();
        assert_eq!(
            task.associations, call.associations,
            "the task is on the caller's contact"
        );
        let contact = s
            .contacts
            .iter()
            .find(|c| c.associations.is_empty() && call.associations.contains(&c.id))
            .unwrap();
        let summary =
            "Caller reported a billing error and asked to be called back by the finance team.";
        assert!(
            contact
                .properties
                .values()
                .any(|v| v.as_str() == Some(summary)),
            "the contact's last-call summary is set: {:#?}",
            contact.properties
        );
    }
    worker.stop().await;
    ingest.stop().await;
}

async fn five_copies_at_once_give_one_call_record_and_one_follow_up(crm: &'static str) {
    let env = env_for(
        crm,
        SimConfig {
            latency: Duration::from_millis(50),
            ..SimConfig::default()
        },
    )
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
            .all(|(status, _)| *status == StatusCode::ACCEPTED)
    );
    env.wait_for_crm(WAIT, |s| s.calls.len() == 1).await;
    env.wait_for_ledger(1, 0).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = env.settle().await;
    assert_eq!(s.calls.len(), 1, "{:#?}", s.calls);
    if crm == "webhook" {
        assert!(delivery_flags_follow_up(&s, FOLLOW_UP_MARKER));
    } else {
        assert_eq!((s.contacts.len(), s.tasks.len()), (1, 1));
    }
    first.stop().await;
    second.stop().await;
    ingest.stop().await;
}

async fn two_workers_and_one_new_number_give_one_contact(crm: &'static str) {
    let env = env_for(
        crm,
        SimConfig {
            latency: Duration::from_millis(100),
            ..SimConfig::default()
        },
    )
    .await;
    let ingest = env.start_ingest().await;
    let first = env.start_worker().await;
    let second = env.start_worker().await;
    let client = reqwest::Client::new();
    let ids = ["one-number-a", "one-number-b", "one-number-c"];
    join_all(
        ids.iter()
            .map(|id| post_voicedock(&client, &ingest, report(id, "+61291234567"))),
    )
    .await;
    env.wait_for_crm(WAIT, |s| {
        s.calls.len() == 3 && (crm == "webhook" || s.tasks.len() == 3)
    })
    .await;
    let s = env.settle().await;
    if crm == "webhook" {
        assert!(s.contacts.is_empty());
    } else {
        assert_eq!(s.contacts.len(), 1, "{:#?}", s.contacts);
        let contact = &s.contacts[0].id;
        assert!(
            s.calls
                .iter()
                .all(|c| c.associations == vec![contact.clone()])
        );
        assert_eq!(s.tasks.len(), 3);
    }
    first.stop().await;
    second.stop().await;
    ingest.stop().await;
}

async fn a_permanently_refused_record_is_parked(crm: &'static str) {
    let env = env_for(crm, SimConfig::default()).await;
    env.sim.inject(record_operation(crm), Fault::Status(400), 1);
    let ingest = env.start_ingest().await;
    let worker = env.start_worker().await;
    post_voicedock(
        &reqwest::Client::new(),
        &ingest,
        fixture("voicedock_000_end_of_call_report.json"),
    )
    .await;
    env.wait_for_queue_depth(&env.topology.parking_queue(), 1)
        .await;
    assert_eq!(env.ledger().await.counts().await.unwrap().parked, 1);
    assert!(env.sim.snapshot().calls.is_empty());
    worker.stop().await;
    ingest.stop().await;
}

async fn a_rate_limited_crm_is_waited_for_and_the_call_synced_once(crm: &'static str) {
    let env = env_for(crm, SimConfig::default()).await;
    env.sim.inject(
        record_operation(crm),
        Fault::RateLimited {
            retry_after_secs: Some(1),
        },
        2,
    );
    let ingest = env.start_ingest().await;
    let worker = env.start_worker().await;
    post_voicedock(
        &reqwest::Client::new(),
        &ingest,
        fixture("voicedock_000_end_of_call_report.json"),
    )
    .await;
    env.wait_for_crm(WAIT, |s| s.calls.len() == 1).await;
    let s = env.settle().await;
    assert_eq!(s.stats.rate_limited, 2);
    assert_eq!(s.stats.by_operation.get(record_operation(crm)), Some(&3));
    worker.stop().await;
    ingest.stop().await;
}

async fn a_record_applied_but_answered_with_a_reset_is_not_repeated(crm: &'static str) {
    let env = env_for(crm, SimConfig::default()).await;
    env.sim
        .inject(record_operation(crm), Fault::ApplyThenReset, 1);
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
    assert_eq!(s.stats.resets, 1);
    if crm == "webhook" {
        // Sent again with the same webhook-id: the receiver de-duplicates.
        let ids: BTreeSet<_> = s
            .calls
            .iter()
            .filter_map(|r| r.prop("webhook-id"))
            .collect();
        assert_eq!(ids.len(), 1);
        // The delivery that was applied and its resend, which the worker
        // cannot tell apart from a lost one (a webhook has no search).
        assert_eq!(s.calls.len(), 2, "{:#?}", s.calls);
    } else {
        assert_eq!(s.calls.len(), 1, "found by its marker, not created again");
        assert_eq!((s.contacts.len(), s.tasks.len()), (1, 1));
    }
    worker.stop().await;
    ingest.stop().await;
}

macro_rules! for_every_crm {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn hubspot() { super::$scenario("hubspot").await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn pipedrive() { super::$scenario("pipedrive").await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn gohighlevel() { super::$scenario("gohighlevel").await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn salesforce() { super::$scenario("salesforce").await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn webhook() { super::$scenario("webhook").await }
        }
    )*};
}

for_every_crm!(
    reports_create_one_contact_one_call_record_and_one_follow_up,
    five_copies_at_once_give_one_call_record_and_one_follow_up,
    two_workers_and_one_new_number_give_one_contact,
    a_permanently_refused_record_is_parked,
    a_rate_limited_crm_is_waited_for_and_the_call_synced_once,
    a_record_applied_but_answered_with_a_reset_is_not_repeated,
);
