//! `[[deal]]` rules through ingest, a worker and crm-sim, on each CRM: one
//! deal per matching call and rule on the call's contact, however often
//! the call is delivered and after a create the CRM applied but answered
//! with a 5xx; none for a call that does not match; a missing pipeline or
//! stage pauses the worker (nothing parked) until it exists; a malformed
//! rule stops start-up with one line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use callsync_tests::app::TestApp;
use callsync_tests::deals::{
    deal_marker, deal_marker_of, deal_markers, deal_name, deals_of_call, rule, two_rules,
    unresolved_sales,
};
use callsync_tests::harness::run_check;
use callsync_tests::mapping::{
    mapping_file, paused_for_setup, ready_again, refused_at_start, report, sync_call,
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

/// A CRM's deal set-up in crm-sim: the pipeline and stage the rules
/// name, and the simulator's operations of a deal create and of the
/// request that finds a deal by its marker.
struct Target {
    crm: &'static str,
    vendor: Vendor,
    pipeline: &'static str,
    stage: &'static str,
    /// A stage id of the same pipeline that is not `stage`.
    other_stage: &'static str,
    create: &'static str,
    find: &'static str,
}

const HUBSPOT: Target = Target {
    crm: "hubspot",
    vendor: Vendor::Hubspot,
    pipeline: "default",
    stage: "appointmentscheduled",
    other_stage: "qualifiedtobuy",
    create: "deals_create",
    find: "deals_search",
};

const PIPEDRIVE: Target = Target {
    crm: "pipedrive",
    vendor: Vendor::Pipedrive,
    pipeline: "1",
    stage: "3",
    other_stage: "9",
    create: "create_deal",
    find: "list_deals",
};

/// Salesforce names no pipeline: its stages are the org's `StageName`
/// values, and the adoption of an unknown outcome is the upsert by marker
/// sent again.
const SALESFORCE: Target = Target {
    crm: "salesforce",
    vendor: Vendor::Salesforce,
    pipeline: "default",
    stage: "Qualification",
    other_stage: "Prospecting",
    create: "upsert_opportunity",
    find: "upsert_opportunity",
};

const GOHIGHLEVEL: Target = Target {
    crm: "gohighlevel",
    vendor: Vendor::Gohighlevel,
    pipeline: "VDm7RPYC2GLUvdpKmBfC",
    stage: "3a1e7c52-6d0b-4c55-9a43-2f0c3e8b1d21",
    other_stage: "7915dedc-8f18-44d5-8bc3-77c04e994a10",
    create: "create_opportunity",
    find: "search_opportunities",
};

impl Target {
    fn rules(&self) -> String {
        two_rules(self.pipeline, self.stage)
    }

    /// The pipeline with `stage` as its one stage.
    fn pipeline_with(&self, stage: &str) -> Vec<Pipeline> {
        vec![Pipeline::new(self.pipeline, "Sales", &[(stage, "Stage")])]
    }
}

/// The one contact of `s`, with every deal of `s` associated with it; on
/// Salesforce by exactly one OpportunityContactRole each.
fn all_on_the_one_contact(app: &TestApp, target: &Target, s: &Snapshot) {
    assert_eq!(s.contacts.len(), 1, "{:?}", s.contacts);
    let contact = &s.contacts[0].id;
    for deal in &s.deals {
        assert_eq!(deal.associations, std::slice::from_ref(contact), "{deal:?}");
    }
    if target.vendor == Vendor::Salesforce {
        let mut roles = app.env.sim.opportunity_contact_roles();
        roles.sort();
        let mut expected: Vec<(String, String)> = s
            .deals
            .iter()
            .map(|d| (d.id.clone(), contact.clone()))
            .collect();
        expected.sort();
        assert_eq!(roles, expected, "one role per Opportunity");
    }
}

/// A call matching both rules gets two deals, a second delivery none more;
/// a call matching none gets none; a call whose `resolved` is the text
/// "false" (not the boolean) matches rule 1 only. All on the caller's one
/// contact, with the rule's name.
async fn one_deal_per_matching_rule(target: &Target, phone: &str) {
    let tag = format!("{}-match", target.crm);
    let app = app(target.crm, &tag, &target.rules(), false, |_| {}).await;
    let id = |what: &str| format!("{tag}-{what}");
    let both = report(
        &id("both"),
        phone,
        "2026-05-01T08:00:00Z",
        unresolved_sales("pricing"),
    );
    app.post_voicedock(both.clone()).await;
    sync_call(
        &app,
        &id("support"),
        phone,
        "2026-05-01T09:00:00Z",
        json!({ "intent": "support", "resolved": false }),
    )
    .await;
    sync_call(
        &app,
        &id("text"),
        phone,
        "2026-05-01T10:00:00Z",
        json!({ "intent": "sales", "resolved": "false" }),
    )
    .await;
    app.post_voicedock(both).await;
    let s = settled_with(&app, 3).await;
    assert_eq!(
        deal_markers(&s),
        [
            deal_marker(&id("both"), 0),
            deal_marker(&id("both"), 1),
            deal_marker(&id("text"), 1)
        ]
    );
    assert!(deals_of_call(&s, &id("support")).is_empty());
    all_on_the_one_contact(&app, target, &s);
    let first = deals_of_call(&s, &id("both"))
        .into_iter()
        .find(|d| deal_marker_of(d) == Some(deal_marker(&id("both"), 0)))
        .unwrap();
    assert_eq!(deal_name(first), Some("AI call: pricing"));
    app.assert_ledger(3, 0).await;
}

/// The first deal create is applied and answered with a 5xx: the worker
/// finds the deal by its marker instead of creating it again.
async fn applied_then_5xx(target: &Target, phone: &str) {
    let tag = format!("{}-applied", target.crm);
    let app = app(target.crm, &tag, &target.rules(), false, |app| {
        app.env
            .sim
            .inject(target.create, Fault::ApplyThenServerError, 1);
    })
    .await;
    sync_call(
        &app,
        &tag,
        phone,
        "2026-05-01T08:00:00Z",
        unresolved_sales("renewal"),
    )
    .await;
    let s = settled_with(&app, 2).await;
    assert!(s.stats.applied_server_errors >= 1, "{:?}", s.stats);
    assert!(s.requests_of(target.find) >= 1, "{:?}", s.stats);
    assert_eq!(
        deal_markers(&s),
        [deal_marker(&tag, 0), deal_marker(&tag, 1)]
    );
    all_on_the_one_contact(&app, target, &s);
    app.assert_ledger(1, 0).await;
}

/// One call matching one rule: one deal create, no marker search; prints
/// every request the call and the worker's start cost.
async fn one_rule_costs_one_create(target: &Target, phone: &str) {
    let tag = format!("{}-cost", target.crm);
    let one_rule = rule(
        r#""analysis.intent" = "sales""#,
        target.pipeline,
        target.stage,
        "Lead",
    );
    let app = app(target.crm, &tag, &one_rule, false, |_| {}).await;
    sync_call(
        &app,
        &tag,
        phone,
        "2026-05-01T08:00:00Z",
        json!({ "intent": "sales" }),
    )
    .await;
    let s = settled_with(&app, 1).await;
    let requests: Vec<(&String, &u64)> = s.stats.by_operation.iter().collect();
    println!(
        "{} requests, the worker's start and one call with one matching deal rule: {requests:?}",
        target.crm
    );
    assert_eq!(s.requests_of(target.create), 1, "{requests:?}");
    if target.find != target.create {
        assert_eq!(s.requests_of(target.find), 0, "{requests:?}");
    }
}

/// The rules' stage is missing from the pipeline: the worker pauses with
/// the call held and nothing parked, `check` names the rule's line, and
/// once the stage exists the call gets its deals.
async fn missing_stage_pauses(target: &Target, phone: &str) {
    let tag = format!("{}-missing", target.crm);
    let app = app(target.crm, &tag, &target.rules(), true, |app| {
        app.env
            .sim
            .set_pipelines(target.vendor, target.pipeline_with(target.other_stage));
    })
    .await;
    app.post_voicedock(report(
        &tag,
        phone,
        "2026-05-01T08:00:00Z",
        unresolved_sales("x"),
    ))
    .await;
    let detail = paused_for_setup(&app, 1).await;
    let problem = format!("stage \"{}\" does not exist", target.stage);
    assert!(
        detail.contains(&problem) && detail.contains("line 1"),
        "{detail}"
    );
    let (ok, lines) = run_check(&app.worker_env()).await;
    assert!(!ok, "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with('✗') && l.contains(&problem) && l.contains("line 1")),
        "{lines:?}"
    );
    assert!(app.snapshot().deals.is_empty());

    app.env
        .sim
        .set_pipelines(target.vendor, target.pipeline_with(target.stage));
    let s = settled_with(&app, 2).await;
    assert_eq!(deals_of_call(&s, &tag).len(), 2);
    app.assert_ledger(1, 0).await;
    ready_again(&app).await;
}

/// Waits until the app holds `deals` deals and is at rest; exactly those.
async fn settled_with(app: &TestApp, deals: usize) -> Snapshot {
    app.wait_for_crm(&format!("{deals} deals"), |s| s.deals.len() >= deals)
        .await;
    let s = app.settle().await;
    assert_eq!(s.deals.len(), deals, "{:?}", deal_markers(&s));
    s
}

// HubSpot

#[tokio::test]
async fn hubspot_gives_a_call_one_deal_per_matching_rule_on_its_contact_however_often_delivered() {
    one_deal_per_matching_rule(&HUBSPOT, "+31612350001").await;
}

#[tokio::test]
async fn a_deal_create_hubspot_applied_but_answered_with_a_5xx_gives_one_deal() {
    applied_then_5xx(&HUBSPOT, "+31612350002").await;
}

#[tokio::test]
async fn a_hubspot_call_with_one_matching_deal_rule_costs_one_deal_create() {
    one_rule_costs_one_create(&HUBSPOT, "+31612350003").await;
}

#[tokio::test]
async fn a_missing_hubspot_stage_pauses_the_worker_and_check_names_it_until_it_exists() {
    missing_stage_pauses(&HUBSPOT, "+31612350004").await;
}

#[tokio::test]
async fn a_hubspot_stage_deleted_while_running_pauses_the_worker_until_it_exists_again() {
    let target = &HUBSPOT;
    let tag = "hubspot-deleted";
    let app = app(target.crm, tag, &target.rules(), true, |_| {}).await;
    let phone = "+31612350005";
    sync_call(
        &app,
        &format!("{tag}-1"),
        phone,
        "2026-05-01T08:00:00Z",
        unresolved_sales("a"),
    )
    .await;
    settled_with(&app, 2).await;
    let before = app.env.sim.pipelines(target.vendor);
    app.env
        .sim
        .set_pipelines(target.vendor, target.pipeline_with(target.other_stage));
    app.post_voicedock(report(
        &format!("{tag}-2"),
        phone,
        "2026-05-01T09:00:00Z",
        unresolved_sales("b"),
    ))
    .await;
    let detail = paused_for_setup(&app, 1).await;
    assert!(detail.contains(target.stage), "{detail}");
    app.env.sim.set_pipelines(target.vendor, before);
    let s = settled_with(&app, 4).await;
    assert_eq!(deals_of_call(&s, &format!("{tag}-2")).len(), 2);
    app.assert_ledger(2, 0).await;
}

// Pipedrive

#[tokio::test]
async fn pipedrive_gives_a_call_one_deal_per_matching_rule_on_its_person_however_often_delivered() {
    one_deal_per_matching_rule(&PIPEDRIVE, "+31612350011").await;
}

#[tokio::test]
async fn a_deal_create_pipedrive_applied_but_answered_with_a_5xx_gives_one_deal() {
    applied_then_5xx(&PIPEDRIVE, "+31612350012").await;
}

#[tokio::test]
async fn a_pipedrive_call_with_one_matching_deal_rule_costs_one_deal_create() {
    one_rule_costs_one_create(&PIPEDRIVE, "+31612350013").await;
}

#[tokio::test]
async fn a_missing_pipedrive_stage_pauses_the_worker_and_check_names_it_until_it_exists() {
    missing_stage_pauses(&PIPEDRIVE, "+31612350014").await;
}

// Start-up

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
        let (line, path) = refused_at_start("hubspot", tag, mapping).await;
        assert!(
            line.contains(&format!("CALLSYNC_MAPPING: {path} {expected}")),
            "{line}"
        );
    }
}

// Salesforce

#[tokio::test]
async fn salesforce_gives_a_call_one_opportunity_per_matching_rule_with_one_contact_role() {
    one_deal_per_matching_rule(&SALESFORCE, "+31612350021").await;
}

#[tokio::test]
async fn an_opportunity_upsert_salesforce_applied_but_answered_with_a_5xx_gives_one_opportunity() {
    applied_then_5xx(&SALESFORCE, "+31612350022").await;
}

#[tokio::test]
async fn a_contact_role_salesforce_applied_but_answered_with_a_5xx_is_created_once() {
    let target = &SALESFORCE;
    let tag = "salesforce-role";
    let app = app(target.crm, tag, &target.rules(), false, |app| {
        app.env.sim.inject(
            "create_opportunity_contact_role",
            Fault::ApplyThenServerError,
            1,
        );
    })
    .await;
    sync_call(
        &app,
        tag,
        "+31612350025",
        "2026-05-01T08:00:00Z",
        unresolved_sales("roles"),
    )
    .await;
    let s = settled_with(&app, 2).await;
    assert!(s.stats.applied_server_errors >= 1, "{:?}", s.stats);
    all_on_the_one_contact(&app, target, &s);
    app.assert_ledger(1, 0).await;
}

#[tokio::test]
async fn a_salesforce_call_with_one_matching_deal_rule_costs_one_upsert_and_its_role() {
    one_rule_costs_one_create(&SALESFORCE, "+31612350023").await;
}

#[tokio::test]
async fn a_missing_salesforce_stage_pauses_the_worker_and_check_names_it_until_it_exists() {
    missing_stage_pauses(&SALESFORCE, "+31612350024").await;
}

// GoHighLevel

#[tokio::test]
async fn gohighlevel_gives_a_call_one_opportunity_per_matching_rule_on_its_contact() {
    one_deal_per_matching_rule(&GOHIGHLEVEL, "+31612350031").await;
}

#[tokio::test]
async fn an_opportunity_gohighlevel_applied_but_answered_with_a_5xx_gives_one_opportunity() {
    applied_then_5xx(&GOHIGHLEVEL, "+31612350032").await;
}

#[tokio::test]
async fn a_gohighlevel_call_with_one_matching_deal_rule_costs_one_opportunity_create() {
    one_rule_costs_one_create(&GOHIGHLEVEL, "+31612350033").await;
}

#[tokio::test]
async fn a_missing_gohighlevel_stage_pauses_the_worker_and_check_names_it_until_it_exists() {
    missing_stage_pauses(&GOHIGHLEVEL, "+31612350034").await;
}
