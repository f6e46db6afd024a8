//! `[[deal]]` rules through ingest, a worker and crm-sim, on each CRM: one
//! deal per matching call and rule on the call's contact, however often
//! the call is delivered and after a create the CRM applied but answered
//! with a 5xx; none for a call that does not match; a missing pipeline or
//! stage pauses the worker (nothing parked) until it exists; a malformed
//! rule stops start-up with one line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use callsync_tests::app::TestApp;
use callsync_tests::deals::{
    deal_marker, deal_markers, deals_of_call, rule, two_rules, unresolved_sales,
};
use callsync_tests::harness::{run_check, worker_command};
use callsync_tests::mapping::{
    mapping_file, one_contact, paused_for_setup, ready_again, report, sync_call,
};
use callsync_tests::sim::schema::{Pipeline, Vendor};
use callsync_tests::sim::{Fault, Snapshot};
use serde_json::json;

/// One in-process worker for `crm` with `mapping`, or a worker process
/// probing every second when `process`; `prepare` runs on the simulator
/// before the worker starts.
async fn app(
    crm: &'static str,
    tag: &str,
    mapping: &str,
    process: bool,
    prepare: impl FnOnce(&TestApp),
) -> TestApp {
    let path = mapping_file(tag, mapping);
    let mut app = TestApp::builder()
        .crm(crm)
        .worker_set("CALLSYNC_MAPPING", path.to_str().unwrap())
        .workers(0)
        .start()
        .await;
    prepare(&app);
    let env = app.worker_env();
    if process {
        app.add_worker_process_with(env.with("CALLSYNC_PAUSE_PROBE_MAX", "1s"))
            .await;
    } else {
        app.add_worker_with(env).await;
    }
    app
}

/// Every deal of `s` is associated with `contact`.
fn all_on(s: &Snapshot, contact: &str) {
    for deal in &s.deals {
        assert_eq!(deal.associations, [contact], "{deal:?}");
    }
}

// HubSpot

const HUBSPOT_PIPELINE: (&str, &str) = ("default", "appointmentscheduled");

fn hubspot_rules() -> String {
    two_rules(HUBSPOT_PIPELINE.0, HUBSPOT_PIPELINE.1)
}

#[tokio::test]
async fn hubspot_gives_a_call_one_deal_per_matching_rule_on_its_contact_however_often_delivered() {
    let app = app("hubspot", "hs-match", &hubspot_rules(), false, |_| {}).await;
    let phone = "+31612350001";
    let both = report(
        "hs-both",
        phone,
        "2026-05-01T08:00:00Z",
        unresolved_sales("pricing"),
    );
    app.post_voicedock(both.clone()).await;
    sync_call(
        &app,
        "hs-support",
        phone,
        "2026-05-01T09:00:00Z",
        json!({ "intent": "support", "resolved": false }),
    )
    .await;
    // "false" as text is not the boolean false: rule 1 only.
    sync_call(
        &app,
        "hs-text",
        phone,
        "2026-05-01T10:00:00Z",
        json!({ "intent": "sales", "resolved": "false" }),
    )
    .await;
    app.post_voicedock(both).await;
    let s = app.settle().await;
    assert_eq!(
        deal_markers(&s),
        [
            deal_marker("hs-both", 0),
            deal_marker("hs-both", 1),
            deal_marker("hs-text", 1)
        ]
    );
    assert!(deals_of_call(&s, "hs-support").is_empty());
    let contact = one_contact(&s, "phone", phone);
    all_on(&s, &contact.id);
    let first = deals_of_call(&s, "hs-both")
        .into_iter()
        .find(|d| d.marker() == Some(deal_marker("hs-both", 0)))
        .unwrap();
    assert_eq!(first.prop("dealname"), Some("AI call: pricing"));
    assert_eq!(first.prop("pipeline"), Some(HUBSPOT_PIPELINE.0));
    assert_eq!(first.prop("dealstage"), Some(HUBSPOT_PIPELINE.1));
    app.assert_ledger(3, 0).await;
}

#[tokio::test]
async fn a_deal_create_hubspot_applied_but_answered_with_a_5xx_gives_one_deal() {
    let app = app("hubspot", "hs-applied", &hubspot_rules(), false, |app| {
        app.env
            .sim
            .inject("deals_create", Fault::ApplyThenServerError, 1);
    })
    .await;
    sync_call(
        &app,
        "hs-applied",
        "+31612350002",
        "2026-05-01T08:00:00Z",
        unresolved_sales("renewal"),
    )
    .await;
    let s = settled_with(&app, 2).await;
    assert!(s.stats.applied_server_errors >= 1, "{:?}", s.stats);
    assert!(s.requests_of("deals_search") >= 1, "{:?}", s.stats);
    assert_eq!(
        deal_markers(&s),
        [deal_marker("hs-applied", 0), deal_marker("hs-applied", 1)]
    );
    app.assert_ledger(1, 0).await;
}

#[tokio::test]
async fn a_hubspot_call_with_one_matching_deal_rule_costs_one_deal_create() {
    let one_rule = rule(
        r#""analysis.intent" = "sales""#,
        HUBSPOT_PIPELINE.0,
        HUBSPOT_PIPELINE.1,
        "Lead",
    );
    let app = app("hubspot", "hs-cost", &one_rule, false, |_| {}).await;
    sync_call(
        &app,
        "hs-cost",
        "+31612350003",
        "2026-05-01T08:00:00Z",
        json!({ "intent": "sales" }),
    )
    .await;
    let s = settled_with(&app, 1).await;
    let per_call: Vec<(&String, &u64)> = s.stats.by_operation.iter().collect();
    println!("hubspot requests, one call with one matching deal rule: {per_call:?}");
    assert_eq!(s.requests_of("deals_create"), 1, "{per_call:?}");
    assert_eq!(s.requests_of("deals_search"), 0, "{per_call:?}");
    assert_eq!(s.requests_of("deals_pipelines"), 1, "read once, at start");
}

#[tokio::test]
async fn a_missing_hubspot_stage_pauses_the_worker_and_check_names_it_until_it_exists() {
    let missing = |app: &TestApp| {
        app.env.sim.set_pipelines(
            Vendor::Hubspot,
            vec![Pipeline::new(
                "default",
                "Sales Pipeline",
                &[("qualifiedtobuy", "Qualified To Buy")],
            )],
        );
    };
    let app = app("hubspot", "hs-missing", &hubspot_rules(), true, missing).await;
    app.post_voicedock(report(
        "hs-wait",
        "+31612350004",
        "2026-05-01T08:00:00Z",
        unresolved_sales("x"),
    ))
    .await;
    let detail = paused_for_setup(&app, 1).await;
    assert!(
        detail.contains("stage \"appointmentscheduled\" does not exist")
            && detail.contains("line 1"),
        "{detail}"
    );
    let (ok, lines) = run_check(&app.worker_env()).await;
    assert!(!ok, "{lines:?}");
    assert!(
        lines.iter().any(|l| l.starts_with('✗')
            && l.contains("appointmentscheduled")
            && l.contains("line 1")),
        "{lines:?}"
    );
    assert!(app.snapshot().deals.is_empty());

    app.env.sim.set_pipelines(
        Vendor::Hubspot,
        vec![Pipeline::new(
            "default",
            "Sales Pipeline",
            &[("appointmentscheduled", "Appointment Scheduled")],
        )],
    );
    let s = settled_with(&app, 2).await;
    assert_eq!(deals_of_call(&s, "hs-wait").len(), 2);
    app.assert_ledger(1, 0).await;
    ready_again(&app).await;
}

/// Waits until the app is at rest and holds `deals` deals.
async fn settled_with(app: &TestApp, deals: usize) -> Snapshot {
    app.wait_for_crm(&format!("{deals} deals"), |s| s.deals.len() >= deals)
        .await;
    let s = app.settle().await;
    assert_eq!(s.deals.len(), deals, "{:?}", deal_markers(&s));
    s
}

// Start-up

/// Runs the worker with `mapping` for `crm` until it stops by itself; its
/// one stderr line naming `CALLSYNC_MAPPING`, and the file's path.
async fn refused(crm: &'static str, tag: &str, mapping: &str) -> (String, String) {
    let app = TestApp::builder().crm(crm).workers(0).start().await;
    let path = mapping_file(tag, mapping);
    let env = app
        .worker_env()
        .with("CALLSYNC_MAPPING", path.to_str().unwrap());
    let output = tokio::time::timeout(Duration::from_secs(30), worker_command(&env).output())
        .await
        .expect("the worker stops at start-up")
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("CALLSYNC_MAPPING"))
        .collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert_eq!(app.calls_waiting().await, 0);
    (lines[0].to_owned(), path.display().to_string())
}

#[tokio::test]
async fn a_malformed_deal_rule_stops_start_up_with_one_line_naming_file_and_line() {
    let cases = [
        (
            "no-pipeline",
            "[[deal]]\nwhen = {}\nstage = \"s\"\nname = \"n\"\n",
            "line 1: [[deal]] needs pipeline",
        ),
        (
            "when-text",
            "[[deal]]\npipeline = \"p\"\nstage = \"s\"\nname = \"n\"\nwhen = \"sales\"\n",
            "line 5: [[deal]] when must be a table",
        ),
        (
            "placeholder",
            "[[deal]]\nwhen = {}\npipeline = \"p\"\nstage = \"s\"\n\nname = \"AI: {caller.phone}\"\n",
            "line 6: [[deal]] name: placeholder {caller.phone}: unknown value",
        ),
    ];
    for (tag, mapping, expected) in cases {
        let (line, path) = refused("hubspot", tag, mapping).await;
        assert!(
            line.contains(&format!("CALLSYNC_MAPPING: {path} {expected}")),
            "{line}"
        );
    }
}
