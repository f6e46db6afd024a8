//! `CALLSYNC_MAPPING` on Salesforce: the business's own fields on the
//! Contact (or Lead) and on the call's Task, written from each call through
//! ingest, a worker and crm-sim, asserting on the simulator's records, the
//! ledger and the queues. Each mode over two calls; a redelivery; a PATCH
//! Salesforce applied but answered with a 5xx; an older call after a newer
//! one; a call on a Lead; an option the picklist lacks (skipped and
//! counted); a field missing at start and one deleted while running
//! (paused, then resumed once it exists); a picklist value deactivated
//! while running (paused, then skipped); the requests a mapping costs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use callsync_tests::app::TestApp;
use callsync_tests::harness::{run_check, voicedock_marker};
use callsync_tests::mapping::{
    line, mapping_file, one_contact, paused_for_setup, ready_again, report, requests_of_two_calls,
    skipped, sync, synced,
};
use callsync_tests::sim::schema::{CustomField, FieldOption, Vendor};
use callsync_tests::sim::{Fault, Record, Snapshot};
use serde_json::{Value, json};

/// The call log's rule is on line 11.
const MAPPING: &str = r#"
[[contact]]
property = "AI_Intent__c"
from = "analysis.intent"

[[contact]]
property = "AI_First_Topic__c"
from = "analysis.topic"
mode = "if_empty"

[[contact]]
property = "AI_Call_Log__c"
from = "summary"
mode = "append"

[[contact]]
property = "AI_Follow_Up__c"
from = "analysis.follow_up_needed"

[[call]]
property = "AI_Topic__c"
from = "analysis.topic"

[[call]]
property = "AI_Score__c"
from = "analysis.score"
"#;

/// The fields the business created for [`MAPPING`] (the contact ones on
/// Contact and Lead, the call ones on Task), but those named in `missing`.
fn define_fields(app: &TestApp, missing: &[&str]) {
    let sim = &app.env.sim;
    let define = |object: &str, field: CustomField| {
        if !missing.contains(&field.key.as_str()) {
            sim.define_field(CustomField {
                object: object.to_owned(),
                ..field
            });
        }
    };
    for object in ["Contact", "Lead"] {
        let field =
            |key: &str, kind: &str| CustomField::new(Vendor::Salesforce, object, key, key, kind);
        define(
            object,
            field("AI_Intent__c", "picklist")
                .with_options(vec![
                    FieldOption::new(json!("Sales"), "Sales enquiry"),
                    FieldOption::new(json!("Support"), "Support"),
                ])
                .restricted(),
        );
        define(object, field("AI_First_Topic__c", "string"));
        define(object, field("AI_Call_Log__c", "textarea"));
        define(object, field("AI_Follow_Up__c", "boolean"));
    }
    let task = |key: &str, kind: &str| CustomField::new(Vendor::Salesforce, "Task", key, key, kind);
    define("Task", task("AI_Topic__c", "string"));
    define("Task", task("AI_Score__c", "double"));
}

/// An app with [`MAPPING`] whose fields, but `missing`, were created before
/// its one worker (a process when `process`) starts with `vars`.
async fn started(tag: &str, missing: &[&str], process: bool, vars: &[(&str, &str)]) -> TestApp {
    let path = mapping_file(tag, MAPPING);
    let mut app = TestApp::builder()
        .crm("salesforce")
        .worker_set("CALLSYNC_MAPPING", path.to_str().unwrap())
        .workers(0)
        .start()
        .await;
    define_fields(&app, missing);
    let mut env = app.worker_env();
    for (name, value) in vars {
        env = env.with(*name, *value);
    }
    if process {
        app.add_worker_process_with(env).await;
    } else {
        app.add_worker_with(env).await;
    }
    app
}

async fn app(tag: &str) -> TestApp {
    started(tag, &[], false, &[]).await
}

fn contact<'a>(s: &'a Snapshot, phone: &str) -> &'a Record {
    one_contact(s, "Phone", phone)
}

fn task<'a>(s: &'a Snapshot, id: &str) -> &'a Record {
    let marker = voicedock_marker(id);
    s.calls
        .iter()
        .find(|c| c.prop("Callsync_Marker__c") == Some(marker.as_str()))
        .unwrap_or_else(|| panic!("no Task for {id}: {:?}", s.calls))
}

fn field<'a>(record: &'a Record, name: &str) -> Option<&'a Value> {
    record.properties.get(name).filter(|v| !v.is_null())
}

#[tokio::test]
async fn each_mode_writes_the_contact_and_task_fields_of_a_first_and_a_second_call() {
    let app = app("modes").await;
    let phone = "+31612350001";
    let s = sync(
        &app,
        "sf-map-1",
        report(
            "sf-map-1",
            phone,
            "2026-05-01T08:00:00Z",
            json!({ "intent": "Sales enquiry", "topic": "pricing", "score": 7, "follow_up_needed": true }),
        ),
    )
    .await;
    let c = contact(&s, phone);
    assert_eq!(
        c.prop("AI_Intent__c"),
        Some("Sales"),
        "matched by its label"
    );
    assert_eq!(c.prop("AI_First_Topic__c"), Some("pricing"));
    assert_eq!(c.prop("AI_Call_Log__c"), Some(line("sf-map-1").as_str()));
    assert_eq!(field(c, "AI_Follow_Up__c"), Some(&json!(true)));
    let first = task(&s, "sf-map-1");
    assert_eq!(first.prop("AI_Topic__c"), Some("pricing"));
    assert_eq!(field(first, "AI_Score__c"), Some(&json!(7.0)));

    let s = sync(
        &app,
        "sf-map-2",
        report(
            "sf-map-2",
            phone,
            "2026-05-01T09:00:00Z",
            json!({ "intent": "support", "topic": "billing", "score": 4.5, "follow_up_needed": false }),
        ),
    )
    .await;
    let c = contact(&s, phone);
    assert_eq!(
        c.prop("AI_Intent__c"),
        Some("Support"),
        "overwrite: the newest call, matched by its label case-insensitively"
    );
    assert_eq!(
        c.prop("AI_First_Topic__c"),
        Some("pricing"),
        "if_empty: kept"
    );
    assert_eq!(
        c.prop("AI_Call_Log__c"),
        Some(format!("{}\n{}", line("sf-map-1"), line("sf-map-2")).as_str()),
        "append: one line per call"
    );
    assert_eq!(field(c, "AI_Follow_Up__c"), Some(&json!(false)));
    let second = task(&s, "sf-map-2");
    assert_eq!(second.prop("AI_Topic__c"), Some("billing"));
    assert_eq!(field(second, "AI_Score__c"), Some(&json!(4.5)));
    app.assert_ledger(2, 0).await;
}

#[tokio::test]
async fn a_redelivered_call_appends_its_line_once() {
    let app = app("redelivery").await;
    let phone = "+31612350002";
    let first = report(
        "sf-redo-1",
        phone,
        "2026-05-01T08:00:00Z",
        json!({ "intent": "support" }),
    );
    sync(&app, "sf-redo-1", first).await;
    let second = report(
        "sf-redo-2",
        phone,
        "2026-05-01T09:00:00Z",
        json!({ "intent": "support" }),
    );
    sync(&app, "sf-redo-2", second.clone()).await;
    app.post_voicedock(second).await;
    let s = app.settle().await;
    assert_eq!(
        contact(&s, phone).prop("AI_Call_Log__c"),
        Some(format!("{}\n{}", line("sf-redo-1"), line("sf-redo-2")).as_str())
    );
    app.assert_ledger(2, 0).await;
}

#[tokio::test]
async fn a_patch_salesforce_applied_but_answered_with_a_5xx_appends_its_line_once() {
    let app = app("applied").await;
    let phone = "+31612350003";
    sync(
        &app,
        "sf-applied-1",
        report(
            "sf-applied-1",
            phone,
            "2026-05-01T08:00:00Z",
            json!({ "topic": "a" }),
        ),
    )
    .await;
    // The second call's Contact PATCH is applied, then answered 500: the
    // worker cannot know, and writes again.
    app.env
        .sim
        .inject("update_contact", Fault::ApplyThenServerError, 1);
    let s = sync(
        &app,
        "sf-applied-2",
        report(
            "sf-applied-2",
            phone,
            "2026-05-01T09:00:00Z",
            json!({ "topic": "b" }),
        ),
    )
    .await;
    assert!(
        s.stats.applied_server_errors >= 1,
        "the fault was hit: {:?}",
        s.stats
    );
    assert!(s.requests_of("update_contact") >= 2, "{:?}", s.stats);
    assert_eq!(
        contact(&s, phone).prop("AI_Call_Log__c"),
        Some(format!("{}\n{}", line("sf-applied-1"), line("sf-applied-2")).as_str())
    );
    app.assert_ledger(2, 0).await;
}

#[tokio::test]
async fn an_older_call_after_a_newer_one_overwrites_nothing_and_still_appends_its_line() {
    let app = app("older").await;
    let phone = "+31612350004";
    sync(
        &app,
        "sf-newer",
        report(
            "sf-newer",
            phone,
            "2026-05-01T09:00:00Z",
            json!({ "intent": "support", "follow_up_needed": false }),
        ),
    )
    .await;
    let s = sync(
        &app,
        "sf-older",
        report(
            "sf-older",
            phone,
            "2026-05-01T08:00:00Z",
            json!({ "intent": "sales", "topic": "late", "follow_up_needed": true }),
        ),
    )
    .await;
    let c = contact(&s, phone);
    assert_eq!(c.prop("AI_Intent__c"), Some("Support"), "the newer call's");
    assert_eq!(
        field(c, "AI_Follow_Up__c"),
        Some(&json!(false)),
        "the newer call's"
    );
    assert_eq!(
        c.prop("AI_First_Topic__c"),
        Some("late"),
        "if_empty: the field was empty, whichever call fills it"
    );
    assert_eq!(
        c.prop("AI_Call_Log__c"),
        Some(format!("{}\n{}", line("sf-newer"), line("sf-older")).as_str())
    );
    assert_eq!(task(&s, "sf-older").prop("AI_Topic__c"), Some("late"));
    app.assert_ledger(2, 0).await;
}

#[tokio::test]
async fn a_call_on_a_lead_writes_the_leads_fields() {
    let app = app("lead").await;
    let phone = "+31612350008";
    let lead = "00Q000000000042AAA";
    app.env.sim.seed_contact_with_id(
        lead,
        json!({ "LastName": "Lead", "Phone": phone, "LastModifiedDate": "2025-01-01T00:00:00.000+0000" })
            .as_object()
            .cloned()
            .unwrap(),
    );
    let s = sync(
        &app,
        "sf-lead",
        report(
            "sf-lead",
            phone,
            "2026-05-01T08:00:00Z",
            json!({ "intent": "Sales", "topic": "demo" }),
        ),
    )
    .await;
    let c = contact(&s, phone);
    assert_eq!(c.id, lead);
    assert_eq!(c.prop("AI_Intent__c"), Some("Sales"));
    assert_eq!(c.prop("AI_First_Topic__c"), Some("demo"));
    assert_eq!(c.prop("AI_Call_Log__c"), Some(line("sf-lead").as_str()));
    app.assert_ledger(1, 0).await;
}

#[tokio::test]
async fn an_option_the_picklist_lacks_skips_that_field_with_a_metric_and_the_call_syncs() {
    let app = started("option", &[], true, &[]).await;
    let phone = "+31612350005";
    let s = sync(
        &app,
        "sf-refund",
        report(
            "sf-refund",
            phone,
            "2026-05-01T08:00:00Z",
            json!({ "intent": "refund", "topic": "money back", "score": "high" }),
        ),
    )
    .await;
    let c = contact(&s, phone);
    assert_eq!(
        field(c, "AI_Intent__c"),
        None,
        "not an option: left as it is"
    );
    assert_eq!(c.prop("AI_First_Topic__c"), Some("money back"));
    let call = task(&s, "sf-refund");
    assert_eq!(field(call, "AI_Score__c"), None, "not a number: skipped");
    assert_eq!(call.prop("AI_Topic__c"), Some("money back"));
    app.assert_ledger(1, 0).await;
    assert!(app.parked().await.is_empty());
    let metrics = app.worker_metrics(0).await;
    let skipped = |property: &str, reason: &str| skipped(&metrics, "salesforce", property, reason);
    assert_eq!(skipped("AI_Intent__c", "not_an_option"), 1.0, "{metrics}");
    assert_eq!(skipped("AI_Score__c", "not_a_number"), 1.0, "{metrics}");
}

#[tokio::test]
async fn a_missing_field_pauses_the_worker_and_check_names_it_until_it_is_created() {
    let app = started(
        "missing",
        &["AI_Call_Log__c"],
        true,
        &[("CALLSYNC_PAUSE_PROBE_MAX", "1s")],
    )
    .await;
    let phone = "+31612350006";
    for (id, at) in [("sf-gap-1", "08:00"), ("sf-gap-2", "09:00")] {
        app.post_voicedock(report(
            id,
            phone,
            &format!("2026-05-01T{at}:00Z"),
            json!({ "intent": "sales" }),
        ))
        .await;
    }
    let detail = paused_for_setup(&app, 2).await;
    assert!(
        detail.contains("\"AI_Call_Log__c\" does not exist") && detail.contains("line 11"),
        "{detail}"
    );
    assert!(app.snapshot().calls.is_empty());

    let (ok, lines) = run_check(&app.worker_env()).await;
    assert!(!ok, "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with('✗') && l.contains("AI_Call_Log__c") && l.contains("line 11")),
        "{lines:?}"
    );

    define_fields(
        &app,
        &[
            "AI_Intent__c",
            "AI_First_Topic__c",
            "AI_Follow_Up__c",
            "AI_Topic__c",
            "AI_Score__c",
        ],
    );
    app.wait_for_crm("both calls recorded once resumed", |s| s.calls.len() == 2)
        .await;
    let s = app.settle().await;
    // The calls waited together and may be written in either order: each
    // line once is the rule.
    let mut lines: Vec<&str> = contact(&s, phone)
        .prop("AI_Call_Log__c")
        .unwrap_or_default()
        .lines()
        .collect();
    lines.sort_unstable();
    assert_eq!(lines, [line("sf-gap-1"), line("sf-gap-2")]);
    app.assert_ledger(2, 0).await;
    ready_again(&app).await;
}

#[tokio::test]
async fn a_field_deleted_while_running_pauses_the_worker_until_it_exists_again() {
    let app = started("deleted", &[], true, &[("CALLSYNC_PAUSE_PROBE_MAX", "1s")]).await;
    let phone = "+31612350007";
    let first = report(
        "sf-del-1",
        phone,
        "2026-05-01T08:00:00Z",
        json!({ "topic": "a" }),
    );
    sync(&app, "sf-del-1", first).await;
    app.env.sim.delete_salesforce_field("Task", "AI_Topic__c");
    app.post_voicedock(report(
        "sf-del-2",
        phone,
        "2026-05-01T09:00:00Z",
        json!({ "topic": "b" }),
    ))
    .await;
    let detail = paused_for_setup(&app, 1).await;
    assert!(detail.contains("AI_Topic__c"), "{detail}");
    app.env.sim.define_field(CustomField::new(
        Vendor::Salesforce,
        "Task",
        "AI_Topic__c",
        "AI_Topic__c",
        "string",
    ));
    let s = synced(&app, "sf-del-2").await;
    assert_eq!(task(&s, "sf-del-2").prop("AI_Topic__c"), Some("b"));
    app.assert_ledger(2, 0).await;
}

/// A mapping of `overwrite` rules only, on the same fields.
const OVERWRITE_ONLY: &str = r#"
[[contact]]
property = "AI_Intent__c"
from = "analysis.intent"

[[contact]]
property = "AI_Follow_Up__c"
from = "analysis.follow_up_needed"

[[call]]
property = "AI_Topic__c"
from = "analysis.topic"
"#;

/// The CRM requests of a new caller's call and of a repeat call, with
/// `mapping` (or none), the one-time set-up left out.
async fn salesforce_requests_of_two_calls(
    tag: &str,
    mapping: Option<&str>,
) -> BTreeMap<String, u64> {
    let mut app = TestApp::builder()
        .crm("salesforce")
        .workers(0)
        .start()
        .await;
    define_fields(&app, &[]);
    let mut env = app.worker_env();
    if let Some(text) = mapping {
        env = env.with(
            "CALLSYNC_MAPPING",
            mapping_file(tag, text).to_str().unwrap(),
        );
    }
    app.add_worker_with(env).await;
    let analysis = json!({ "intent": "sales", "topic": "pricing", "follow_up_needed": false });
    let setup = ["describe", "oauth_token", "resources"];
    requests_of_two_calls(&app, "sf-cost", "+31612350009", analysis, &setup).await
}

/// What a mapping costs in Salesforce requests: `overwrite` rides in the
/// requests callsync sends anyway (the Contact's create or last-call
/// PATCH, the Task's create); `if_empty` and `append` read the Contact's
/// fields before the PATCH of a repeat call (a new Contact is empty).
#[tokio::test]
async fn overwrite_costs_no_request_and_if_empty_or_append_one_read_per_repeat_call() {
    let none = salesforce_requests_of_two_calls("cost-none", None).await;
    eprintln!("no mapping: {none:?}");
    let expected: BTreeMap<String, u64> = [
        ("search", 1),
        ("create_contact", 1),
        ("create_call_task", 2),
        ("update_contact", 1),
    ]
    .into_iter()
    .map(|(op, n)| (op.to_owned(), n))
    .collect();
    assert_eq!(none, expected);
    let overwrite = salesforce_requests_of_two_calls("cost-overwrite", Some(OVERWRITE_ONLY)).await;
    assert_eq!(overwrite, none, "overwrite rides in the same requests");
    let full = salesforce_requests_of_two_calls("cost-full", Some(MAPPING)).await;
    let mut with_read = none.clone();
    with_read.insert("get_contact".to_owned(), 1);
    assert_eq!(full, with_read, "one read of the repeat caller's fields");
}

/// An admin deactivates a picklist value while the worker runs: the PATCH
/// naming it is refused (`INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST`), which
/// pauses the worker instead of parking the call; its probe describes the
/// objects again, and the call syncs with the value skipped and counted.
#[tokio::test]
async fn a_picklist_value_deactivated_while_running_is_skipped_after_a_pause_and_nothing_is_parked()
{
    let app = started(
        "deactivated",
        &[],
        true,
        &[("CALLSYNC_PAUSE_PROBE_MAX", "1s")],
    )
    .await;
    let phone = "+31612350010";
    sync(
        &app,
        "sf-active",
        report(
            "sf-active",
            phone,
            "2026-05-01T08:00:00Z",
            json!({ "intent": "Support" }),
        ),
    )
    .await;
    for object in ["Contact", "Lead"] {
        app.env.sim.delete_salesforce_field(object, "AI_Intent__c");
        let mut retired = FieldOption::new(json!("Support"), "Support");
        retired.active = false;
        app.env.sim.define_field(
            CustomField::new(
                Vendor::Salesforce,
                object,
                "AI_Intent__c",
                "AI_Intent__c",
                "picklist",
            )
            .with_options(vec![
                FieldOption::new(json!("Sales"), "Sales enquiry"),
                retired,
            ])
            .restricted(),
        );
    }
    let s = sync(
        &app,
        "sf-retired",
        report(
            "sf-retired",
            phone,
            "2026-05-01T09:00:00Z",
            json!({ "intent": "Support", "topic": "after" }),
        ),
    )
    .await;
    assert!(
        s.requests_of("update_contact") >= 2,
        "the refused PATCH, then the one after the pause: {:?}",
        s.stats
    );
    let c = contact(&s, phone);
    assert_eq!(c.prop("AI_Intent__c"), Some("Support"), "left as it was");
    assert_eq!(
        c.prop("AI_Call_Log__c"),
        Some(format!("{}\n{}", line("sf-active"), line("sf-retired")).as_str())
    );
    assert!(app.parked().await.is_empty(), "nothing is parked");
    app.assert_ledger(2, 0).await;
    let metrics = app.worker_metrics(0).await;
    let skipped = skipped(&metrics, "salesforce", "AI_Intent__c", "not_an_option");
    assert_eq!(skipped, 1.0, "{metrics}");
}
