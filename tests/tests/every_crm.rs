//! The same end-to-end scenarios for every supported CRM: HubSpot,
//! Pipedrive, GoHighLevel, Salesforce and the generic signed webhook, each
//! against crm-sim speaking that CRM's API. Test names read
//! `<scenario>::<crm>`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use callsync_tests::app::TestApp;
use callsync_tests::harness::{FOLLOW_UP_MARKER, SEED_000_CALL_ID, SEED_000_MARKER};
use callsync_tests::sim::{Fault, SimConfig, Snapshot};
use futures_util::future::join_all;
use serde_json::Value;

const SEED_000: &str = "voicedock_000_end_of_call_report.json";
const FOLLOW_UP: &str = "voicedock_follow_up.json";

/// An app syncing to `crm` with one worker and a default simulator.
async fn app_for(crm: &'static str) -> TestApp {
    TestApp::for_crm(crm, SimConfig::default(), 1).await
}

/// The request that records the call, per CRM (for injecting faults).
fn record_operation(crm: &str) -> &'static str {
    match crm {
        "hubspot" => "create_call",
        "pipedrive" | "gohighlevel" => "create_note",
        "salesforce" => "create_call_task",
        "webhook" => "deliver",
        other => panic!("unknown CRM {other}"),
    }
}

/// Whether a delivered report (webhook) asked for a follow-up.
fn delivery_flags_follow_up(s: &Snapshot, marker: &str) -> bool {
    s.calls
        .iter()
        .find(|r| r.marker().as_deref() == Some(marker))
        .is_some_and(|r| r.properties.get("follow_up_needed") == Some(&Value::Bool(true)))
}

/// The distinct `webhook-id`s of the deliveries the receiver got.
fn webhook_ids(s: &Snapshot) -> BTreeSet<&str> {
    s.calls
        .iter()
        .filter_map(|r| r.prop("webhook-id"))
        .collect()
}

async fn reports_create_one_contact_one_call_record_and_one_follow_up(crm: &'static str) {
    let app = app_for(crm).await;
    app.post_fixture(FOLLOW_UP).await;
    app.post_fixture(SEED_000).await;
    let s = app.settle().await;
    // Synced in the ledger means every step, follow-up included, is done.
    app.assert_ledger(2, 0).await;
    assert_eq!(s.call_markers(), [FOLLOW_UP_MARKER, SEED_000_MARKER]);

    if crm == "webhook" {
        assert!(
            s.contacts.is_empty() && s.tasks.is_empty(),
            "one request per call, nothing else"
        );
        assert!(delivery_flags_follow_up(&s, FOLLOW_UP_MARKER));
        assert!(!delivery_flags_follow_up(&s, SEED_000_MARKER));
        assert_eq!(
            webhook_ids(&s).len(),
            2,
            "a stable, distinct webhook-id per call"
        );
    } else {
        assert_eq!(s.contacts.len(), 2, "{:#?}", s.contacts);
        assert_eq!(s.task_markers(), [FOLLOW_UP_MARKER]);
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
    app.shutdown().await;
}

async fn five_copies_at_once_give_one_call_record_and_one_follow_up(crm: &'static str) {
    let app = TestApp::racing(crm, Duration::from_millis(50)).await;
    let body = callsync_tests::harness::fixture(FOLLOW_UP);
    join_all((0..5).map(|_| app.post_voicedock(body.clone()))).await;
    let s = app.settle().await;
    app.assert_ledger(1, 0).await;
    assert_eq!(s.call_markers(), [FOLLOW_UP_MARKER]);
    if crm == "webhook" {
        assert!(delivery_flags_follow_up(&s, FOLLOW_UP_MARKER));
    } else {
        assert_eq!(s.contacts.len(), 1, "{:#?}", s.contacts);
        assert_eq!(s.task_markers(), [FOLLOW_UP_MARKER]);
    }
    app.shutdown().await;
}

async fn two_workers_and_one_new_number_give_one_contact(crm: &'static str) {
    let app = TestApp::racing(crm, Duration::from_millis(100)).await;
    let ids = ["one-number-a", "one-number-b", "one-number-c"];
    let markers = app.post_reports_at_once(&ids, "+61291234567", true).await;
    let s = app.settle().await;
    app.assert_ledger(3, 0).await;
    assert_eq!(s.call_markers(), markers);
    if crm == "webhook" {
        assert!(s.contacts.is_empty() && s.tasks.is_empty());
    } else {
        assert_eq!(s.contacts.len(), 1, "{:#?}", s.contacts);
        let contact = &s.contacts[0].id;
        assert!(
            s.calls
                .iter()
                .all(|c| c.associations == vec![contact.clone()])
        );
        assert_eq!(s.task_markers(), markers);
    }
    app.shutdown().await;
}

async fn a_permanently_refused_record_is_parked(crm: &'static str) {
    let app = app_for(crm).await;
    app.env
        .sim
        .inject(record_operation(crm), Fault::Status(400), 1);
    app.post_fixture(SEED_000).await;
    let s = app.settle().await;
    app.assert_ledger(0, 1).await;
    let parked: Vec<String> = app.parked().await.into_iter().map(|p| p.call_id).collect();
    assert_eq!(parked, [SEED_000_CALL_ID]);
    assert_eq!(s.call_markers(), Vec::<String>::new());
    app.shutdown().await;
}

async fn a_rate_limited_crm_is_waited_for_and_the_call_synced_once(crm: &'static str) {
    let app = app_for(crm).await;
    let limited = Fault::RateLimited {
        retry_after_secs: Some(1),
    };
    app.env.sim.inject(record_operation(crm), limited, 2);
    app.post_fixture(SEED_000).await;
    let s = app.settle().await;
    app.assert_ledger(1, 0).await;
    assert_eq!(s.call_markers(), [SEED_000_MARKER]);
    assert_eq!(s.stats.rate_limited, 2);
    assert_eq!(s.stats.by_operation.get(record_operation(crm)), Some(&3));
    app.shutdown().await;
}

async fn a_record_applied_but_answered_with_a_reset_is_not_repeated(crm: &'static str) {
    let app = app_for(crm).await;
    app.env
        .sim
        .inject(record_operation(crm), Fault::ApplyThenReset, 1);
    app.post_fixture(FOLLOW_UP).await;
    let s = app.settle().await;
    app.assert_ledger(1, 0).await;
    assert_eq!(s.stats.resets, 1);
    if crm == "webhook" {
        // Sent again with the same webhook-id: the receiver de-duplicates.
        assert_eq!(webhook_ids(&s).len(), 1);
        // The delivery that was applied and its resend, which the worker
        // cannot tell apart from a lost one (a webhook has no search).
        assert_eq!(
            s.call_markers(),
            [FOLLOW_UP_MARKER, FOLLOW_UP_MARKER],
            "{:#?}",
            s.calls
        );
    } else {
        assert_eq!(
            s.call_markers(),
            [FOLLOW_UP_MARKER],
            "found by its marker, not created again"
        );
        assert_eq!(s.contacts.len(), 1, "{:#?}", s.contacts);
        assert_eq!(s.task_markers(), [FOLLOW_UP_MARKER]);
    }
    app.shutdown().await;
}

callsync_tests::for_crms!(
    [hubspot, pipedrive, gohighlevel, salesforce, webhook]:
    reports_create_one_contact_one_call_record_and_one_follow_up,
    five_copies_at_once_give_one_call_record_and_one_follow_up,
    two_workers_and_one_new_number_give_one_contact,
    a_permanently_refused_record_is_parked,
    a_rate_limited_crm_is_waited_for_and_the_call_synced_once,
    a_record_applied_but_answered_with_a_reset_is_not_repeated,
);

#[test]
fn the_suite_runs_every_registered_crm() {
    assert_eq!(LISTED_CRMS, callsync_tests::harness::crms());
}
