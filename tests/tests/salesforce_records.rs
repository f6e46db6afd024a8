//! Salesforce's answers beyond the plain create, each met on day one by
//! some org: a call's Task that exists already (the upsert may not send the
//! create-only `TaskSubtype`), a marker two Tasks share (the upsert's 300),
//! and a duplicate rule refusing a new Contact (`DUPLICATES_DETECTED`).
//! Each ends synced once and parks nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use callsync_tests::app::TestApp;
use callsync_tests::contacts::seed;
use callsync_tests::harness::{fixture, voicedock_marker, voicedock_report};
use callsync_tests::sim::SimConfig;
use callsync_tests::sim::salesforce::Org;
use serde_json::json;

fn contact(name: &str, phone: &str) -> serde_json::Map<String, serde_json::Value> {
    json!({ "LastName": name, "Phone": phone, "LastModifiedDate": "2025-01-01T00:00:00.000+0000" })
        .as_object()
        .cloned()
        .unwrap()
}

/// The call's Task was created by an earlier attempt that never learnt
/// it (the answer was lost and the marker search missed it): recording
/// the call again updates that Task without `TaskSubtype`, which
/// Salesforce refuses on update.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_task_exists_already_is_synced_onto_it_without_updating_its_subtype() {
    let app = TestApp::builder()
        .crm("salesforce")
        .workers(1)
        .start()
        .await;
    let known = seed(&app.env, contact("Known", "+31612345678"));
    let marker = voicedock_marker("task-exists");
    let task = app.env.sim.seed_salesforce_task(&marker, &known, true);
    app.post_voicedock(voicedock_report("task-exists", "+31612345678", false))
        .await;
    let s = app.settle().await;
    assert_eq!(s.call_markers(), [marker]);
    assert_eq!(s.calls[0].id, task);
    assert_eq!(s.calls[0].prop("TaskSubtype"), Some("Call"));
    assert_eq!(s.calls[0].prop("Status"), Some("Completed"), "updated");
    app.assert_ledger(1, 0).await;
    app.shutdown().await;
}

/// Without the Unique flag two follow-up Tasks came to carry one marker;
/// Salesforce answers the upsert by it with 300. The call is recorded, no
/// third Task is made, nothing is parked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marker_two_tasks_share_is_answered_300_and_the_first_task_stands_for_the_call() {
    let app = TestApp::builder()
        .crm("salesforce")
        .workers(1)
        .start()
        .await;
    app.env.sim.set_salesforce_org(Org {
        marker_unique: false,
        ..Org::default()
    });
    let known = seed(&app.env, contact("Known", "+31612345678"));
    let follow_up = format!("{}:follow-up", voicedock_marker("shared-marker"));
    app.env.sim.seed_salesforce_task(&follow_up, &known, false);
    app.env.sim.seed_salesforce_task(&follow_up, &known, false);
    app.post_voicedock(voicedock_report("shared-marker", "+31612345678", true))
        .await;
    let s = app.settle().await;
    assert_eq!(s.call_markers(), [voicedock_marker("shared-marker")]);
    assert_eq!(s.tasks.len(), 2, "no third follow-up: {:#?}", s.tasks);
    app.assert_ledger(1, 0).await;
    assert!(app.parked().await.is_empty());
    app.shutdown().await;
}

/// A Contact with the caller's e-mail was created a moment ago (the search
/// index does not show it yet) and the org's duplicate rule matches on
/// e-mail: the new Contact is refused with `DUPLICATES_DETECTED`, and the
/// call goes on the Contact the rule named, with its last-call fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_rule_refusing_the_new_contact_puts_the_call_on_the_contact_it_matched() {
    let app = TestApp::builder()
        .crm("salesforce")
        .sim(SimConfig {
            index_lag: std::time::Duration::from_secs(60),
            ..SimConfig::default()
        })
        .workers(1)
        .start()
        .await;
    app.env.sim.set_salesforce_org(Org {
        email_duplicate_rule: true,
        ..Org::default()
    });
    let created: serde_json::Value = reqwest::Client::new()
        .post(format!(
            "{}/services/data/v60.0/sobjects/Contact",
            app.env.sim.base_url()
        ))
        .bearer_auth(app.env.sim.token())
        .json(&json!({ "LastName": "Smith", "Email": "john.smith@example.com" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let existing = created["id"].as_str().unwrap().to_owned();
    app.post_postcall(fixture("postcall_002_example.json"))
        .await;
    let s = app.settle().await;
    assert_eq!(
        s.contacts.len(),
        1,
        "no duplicate contact: {:#?}",
        s.contacts
    );
    assert_eq!(s.calls.len(), 1);
    assert_eq!(s.calls[0].associations, [existing]);
    assert!(
        s.contacts[0].prop("Callsync_Last_Call_At__c").is_some(),
        "the last-call fields are set on it: {:#?}",
        s.contacts[0]
    );
    app.assert_ledger(1, 0).await;
    app.shutdown().await;
}
