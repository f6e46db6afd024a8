//! `CALLSYNC_MAPPING` on HubSpot: the business's own properties written
//! from each call through ingest, a worker and crm-sim, asserting on the
//! simulator's records, the ledger and the queues. Each mode; a second
//! call; a redelivery; a write HubSpot applied but answered with a 5xx; an
//! older call after a newer one; an option the enumeration lacks (skipped
//! and counted); a property missing (paused, then resumed once created);
//! a malformed file (start-up refused with one line).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use callsync_tests::app::{AppBuilder, TestApp};
use callsync_tests::harness::{run_check, voicedock_marker, worker_command};
use callsync_tests::mapping::{
    line, mapping_file, one_contact, paused_for_setup, ready_again, report, requests_of_two_calls,
    skipped, sync, sync_call,
};
use callsync_tests::sim::{Fault, Record, Snapshot};
use serde_json::{Value, json};

const MAPPING: &str = r#"
[[contact]]
property = "ai_intent"
from = "analysis.intent"

[[contact]]
property = "ai_first_topic"
from = "analysis.topic"
mode = "if_empty"

[[contact]]
property = "ai_call_log"
from = "summary"
mode = "append"

[[contact]]
property = "ai_follow_up"
from = "analysis.follow_up_needed"

[[call]]
property = "ai_topic"
from = "analysis.topic"

[[call]]
property = "ai_score"
from = "analysis.score"
"#;

/// The properties the business created in HubSpot for [`MAPPING`]; all but
/// those named in `missing`.
fn define_properties(app: &TestApp, missing: &[&str]) {
    let sim = &app.env.sim;
    let define = |object: &str, name: &str, kind: &str, field: &str, options: &[(&str, &str)]| {
        if !missing.contains(&name) {
            sim.define_hubspot_property(object, name, kind, field, options);
        }
    };
    define(
        "contacts",
        "ai_intent",
        "enumeration",
        "select",
        &[("sales", "Sales enquiry"), ("support", "Support")],
    );
    define("contacts", "ai_first_topic", "string", "text", &[]);
    define("contacts", "ai_call_log", "string", "textarea", &[]);
    define(
        "contacts",
        "ai_follow_up",
        "bool",
        "booleancheckbox",
        &[("true", "Yes"), ("false", "No")],
    );
    define("calls", "ai_topic", "string", "text", &[]);
    define("calls", "ai_score", "number", "number", &[]);
}

fn builder(tag: &str) -> AppBuilder {
    let path = mapping_file(tag, MAPPING);
    TestApp::builder()
        .crm("hubspot")
        .worker_set("CALLSYNC_MAPPING", path.to_str().unwrap())
}

/// One in-process worker with [`MAPPING`] and every property defined.
async fn app(tag: &str) -> TestApp {
    started(tag, &[], false, &[]).await
}

/// An app with [`MAPPING`] whose properties, but `missing`, were created
/// before its one worker (a process when `process`) starts with `vars`.
async fn started(tag: &str, missing: &[&str], process: bool, vars: &[(&str, &str)]) -> TestApp {
    let mut app = builder(tag).workers(0).start().await;
    define_properties(&app, missing);
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

fn contact<'a>(s: &'a Snapshot, phone: &str) -> &'a Record {
    one_contact(s, "phone", phone)
}

fn call_record<'a>(s: &'a Snapshot, id: &str) -> &'a Record {
    let marker = voicedock_marker(id);
    s.calls
        .iter()
        .find(|c| c.prop("callsync_marker") == Some(marker.as_str()))
        .unwrap_or_else(|| panic!("no call record for {id}: {:?}", s.calls))
}

#[tokio::test]
async fn each_mode_writes_the_business_fields_of_a_first_and_a_second_call() {
    let app = app("modes").await;
    let phone = "+31612340001";
    let s = sync_call(&app, "map-1", phone, "2026-05-01T08:00:00Z", json!({ "intent": "Sales enquiry", "topic": "pricing", "score": 7, "follow_up_needed": true })).await;
    let c = contact(&s, phone);
    assert_eq!(c.prop("ai_intent"), Some("sales"), "matched by its label");
    assert_eq!(c.prop("ai_first_topic"), Some("pricing"));
    assert_eq!(c.prop("ai_call_log"), Some(line("map-1").as_str()));
    assert_eq!(c.prop("ai_follow_up"), Some("true"));
    let first = call_record(&s, "map-1");
    assert_eq!(first.prop("ai_topic"), Some("pricing"));
    assert_eq!(first.prop("ai_score"), Some("7"));

    let s = sync_call(
        &app,
        "map-2",
        phone,
        "2026-05-01T09:00:00Z",
        json!({ "intent": "support", "topic": "billing", "score": 4.5, "follow_up_needed": false }),
    )
    .await;
    let c = contact(&s, phone);
    assert_eq!(
        c.prop("ai_intent"),
        Some("support"),
        "overwrite: the newest call"
    );
    assert_eq!(c.prop("ai_first_topic"), Some("pricing"), "if_empty: kept");
    assert_eq!(
        c.prop("ai_call_log"),
        Some(format!("{}\n{}", line("map-1"), line("map-2")).as_str()),
        "append: one line per call"
    );
    assert_eq!(c.prop("ai_follow_up"), Some("false"));
    let second = call_record(&s, "map-2");
    assert_eq!(second.prop("ai_topic"), Some("billing"));
    assert_eq!(second.prop("ai_score"), Some("4.5"));
    app.assert_ledger(2, 0).await;
}

#[tokio::test]
async fn a_redelivered_call_appends_its_line_once() {
    let app = app("redelivery").await;
    let phone = "+31612340002";
    let first = report(
        "redo-1",
        phone,
        "2026-05-01T08:00:00Z",
        json!({ "intent": "support" }),
    );
    sync(&app, "redo-1", first).await;
    let second = report(
        "redo-2",
        phone,
        "2026-05-01T09:00:00Z",
        json!({ "intent": "support" }),
    );
    sync(&app, "redo-2", second.clone()).await;
    app.post_voicedock(second).await;
    let s = app.settle().await;
    assert_eq!(
        contact(&s, phone).prop("ai_call_log"),
        Some(format!("{}\n{}", line("redo-1"), line("redo-2")).as_str())
    );
    app.assert_ledger(2, 0).await;
}

#[tokio::test]
async fn a_write_hubspot_applied_but_answered_with_a_5xx_appends_its_line_once() {
    let app = app("applied").await;
    let phone = "+31612340003";
    sync_call(
        &app,
        "applied-1",
        phone,
        "2026-05-01T08:00:00Z",
        json!({ "topic": "a" }),
    )
    .await;
    // The second call's contact update is applied, then answered 500: the
    // worker cannot know, and writes again.
    app.env
        .sim
        .inject("update_contact", Fault::ApplyThenServerError, 1);
    let s = sync_call(
        &app,
        "applied-2",
        phone,
        "2026-05-01T09:00:00Z",
        json!({ "topic": "b" }),
    )
    .await;
    assert!(
        s.stats.applied_server_errors >= 1,
        "the fault was hit: {:?}",
        s.stats
    );
    assert!(s.requests_of("update_contact") >= 2, "{:?}", s.stats);
    assert_eq!(
        contact(&s, phone).prop("ai_call_log"),
        Some(format!("{}\n{}", line("applied-1"), line("applied-2")).as_str())
    );
    app.assert_ledger(2, 0).await;
}

#[tokio::test]
async fn an_older_call_after_a_newer_one_overwrites_nothing_and_still_appends_its_line() {
    let app = app("older").await;
    let phone = "+31612340004";
    sync_call(
        &app,
        "newer",
        phone,
        "2026-05-01T09:00:00Z",
        json!({ "intent": "support", "follow_up_needed": false }),
    )
    .await;
    let s = sync_call(
        &app,
        "older",
        phone,
        "2026-05-01T08:00:00Z",
        json!({ "intent": "sales", "topic": "late", "follow_up_needed": true }),
    )
    .await;
    let c = contact(&s, phone);
    assert_eq!(c.prop("ai_intent"), Some("support"), "the newer call's");
    assert_eq!(c.prop("ai_follow_up"), Some("false"), "the newer call's");
    assert_eq!(
        c.prop("ai_first_topic"),
        Some("late"),
        "if_empty: the field was empty, whichever call fills it"
    );
    assert_eq!(
        c.prop("ai_call_log"),
        Some(format!("{}\n{}", line("newer"), line("older")).as_str())
    );
    assert_eq!(call_record(&s, "older").prop("ai_topic"), Some("late"));
    app.assert_ledger(2, 0).await;
}

#[tokio::test]
async fn an_option_the_enumeration_lacks_skips_that_field_with_a_metric_and_the_call_syncs() {
    let app = started("option", &[], true, &[]).await;
    let phone = "+31612340005";
    let s = sync_call(
        &app,
        "refund",
        phone,
        "2026-05-01T08:00:00Z",
        json!({ "intent": "refund", "topic": "money back", "score": "high" }),
    )
    .await;
    let c = contact(&s, phone);
    assert_eq!(c.prop("ai_intent"), None, "not an option: left as it is");
    assert_eq!(c.prop("ai_first_topic"), Some("money back"));
    let call = call_record(&s, "refund");
    assert_eq!(call.prop("ai_score"), None, "not a number: skipped");
    assert_eq!(call.prop("ai_topic"), Some("money back"));
    app.assert_ledger(1, 0).await;
    let metrics = app.worker_metrics(0).await;
    let skipped = |property: &str, reason: &str| skipped(&metrics, "hubspot", property, reason);
    assert_eq!(skipped("ai_intent", "not_an_option"), 1.0, "{metrics}");
    assert_eq!(skipped("ai_score", "not_a_number"), 1.0, "{metrics}");
}

#[tokio::test]
async fn a_missing_property_pauses_the_worker_and_check_names_it_until_it_is_created() {
    let app = started(
        "missing",
        &["ai_call_log"],
        true,
        &[("CALLSYNC_PAUSE_PROBE_MAX", "1s")],
    )
    .await;
    let phone = "+31612340006";
    for (id, at) in [("gap-1", "08:00"), ("gap-2", "09:00")] {
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
        detail.contains("\"ai_call_log\" does not exist") && detail.contains("line 11"),
        "{detail}"
    );
    assert!(app.snapshot().calls.is_empty());

    let (ok, lines) = run_check(&app.worker_env()).await;
    assert!(!ok, "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with('✗') && l.contains("ai_call_log") && l.contains("line 11")),
        "{lines:?}"
    );

    define_properties(&app, &[]);
    app.wait_for_crm("both calls recorded once resumed", |s| s.calls.len() == 2)
        .await;
    let s = app.settle().await;
    // The calls waited together and may be written in either order: each
    // line once is the rule.
    let mut lines: Vec<&str> = contact(&s, phone)
        .prop("ai_call_log")
        .unwrap_or_default()
        .lines()
        .collect();
    lines.sort_unstable();
    assert_eq!(lines, [line("gap-1"), line("gap-2")]);
    app.assert_ledger(2, 0).await;
    ready_again(&app).await;
}

#[tokio::test]
async fn a_property_deleted_while_running_pauses_the_worker_until_it_exists_again() {
    let app = started("deleted", &[], true, &[("CALLSYNC_PAUSE_PROBE_MAX", "1s")]).await;
    let phone = "+31612340007";
    let first = report(
        "del-1",
        phone,
        "2026-05-01T08:00:00Z",
        json!({ "topic": "a" }),
    );
    sync(&app, "del-1", first).await;
    app.env.sim.delete_hubspot_property("calls", "ai_topic");
    app.post_voicedock(report(
        "del-2",
        phone,
        "2026-05-01T09:00:00Z",
        json!({ "topic": "b" }),
    ))
    .await;
    let detail = paused_for_setup(&app, 1).await;
    assert!(detail.contains("ai_topic"), "{detail}");
    define_properties(&app, &[]);
    let s = sync_waited(&app, "del-2").await;
    assert_eq!(call_record(&s, "del-2").prop("ai_topic"), Some("b"));
    app.assert_ledger(2, 0).await;
}

/// Waits until call `id`, posted earlier, is synced.
async fn sync_waited(app: &TestApp, id: &str) -> Snapshot {
    let marker = voicedock_marker(id);
    app.wait_for_crm(&format!("call {id} recorded"), |s| {
        s.call_markers().contains(&marker)
    })
    .await;
    app.settle().await
}

/// A mapping of `overwrite` rules only, on the same properties.
const OVERWRITE_ONLY: &str = r#"
[[contact]]
property = "ai_intent"
from = "analysis.intent"

[[contact]]
property = "ai_follow_up"
from = "analysis.follow_up_needed"

[[call]]
property = "ai_topic"
from = "analysis.topic"
"#;

/// The CRM requests of a new caller's call and of a repeat call, with
/// `mapping` (or none), the one-time set-up left out.
async fn hubspot_requests_of_two_calls(tag: &str, mapping: Option<&str>) -> BTreeMap<String, u64> {
    let mut app = TestApp::builder().crm("hubspot").workers(0).start().await;
    define_properties(&app, &[]);
    let mut env = app.worker_env();
    if let Some(text) = mapping {
        env = env.with(
            "CALLSYNC_MAPPING",
            mapping_file(tag, text).to_str().unwrap(),
        );
    }
    app.add_worker_with(env).await;
    let analysis = json!({ "intent": "sales", "topic": "pricing", "follow_up_needed": false });
    let setup = ["create_group", "create_property", "read_properties"];
    requests_of_two_calls(&app, "cost", "+31612340009", analysis, &setup).await
}

/// What a mapping costs in HubSpot requests: `overwrite` rides in the
/// requests callsync sends anyway (the contact's create or last-call
/// PATCH, the call's create); `if_empty` and `append` read the contact's
/// fields before the PATCH of a repeat call (a new contact is empty).
#[tokio::test]
async fn overwrite_costs_no_request_and_if_empty_or_append_one_read_per_repeat_call() {
    let none = hubspot_requests_of_two_calls("cost-none", None).await;
    let expected: BTreeMap<String, u64> = [
        ("search_contacts", 1),
        ("create_contact", 1),
        ("create_call", 2),
        ("update_contact", 1),
    ]
    .into_iter()
    .map(|(op, n)| (op.to_owned(), n))
    .collect();
    assert_eq!(none, expected, "without a mapping");
    let overwrite = hubspot_requests_of_two_calls("cost-overwrite", Some(OVERWRITE_ONLY)).await;
    assert_eq!(overwrite, expected, "overwrite rules add no request");
    let full = hubspot_requests_of_two_calls("cost-full", Some(MAPPING)).await;
    let mut with_read = expected.clone();
    with_read.insert("get_contact".to_owned(), 1);
    assert_eq!(
        full, with_read,
        "if_empty and append: one read on the repeat call"
    );
}

/// A mapping of `overwrite` and `if_empty` rules only.
const WITHOUT_APPEND: &str = r#"
[[contact]]
property = "ai_intent"
from = "analysis.intent"

[[contact]]
property = "ai_first_topic"
from = "analysis.topic"
mode = "if_empty"
"#;

/// A caller HubSpot already has is found by the phone search, which
/// returns the mapped `if_empty` properties with the contact: its first
/// call's update needs no read, and a field already filled is kept.
#[tokio::test]
async fn if_empty_costs_no_read_for_a_contact_the_search_just_found() {
    let mut app = TestApp::builder().crm("hubspot").workers(0).start().await;
    define_properties(&app, &[]);
    let filled = "+31612340011";
    let empty = "+31612340012";
    for (phone, topic) in [(filled, Some("typed by a human")), (empty, None)] {
        let mut properties = serde_json::Map::new();
        properties.insert("phone".into(), json!(phone));
        if let Some(topic) = topic {
            properties.insert("ai_first_topic".into(), json!(topic));
        }
        app.env.sim.seed_contact(properties);
    }
    let env = app.worker_env().with(
        "CALLSYNC_MAPPING",
        mapping_file("searched", WITHOUT_APPEND).to_str().unwrap(),
    );
    app.add_worker_with(env).await;
    for (id, phone) in [("found-1", filled), ("found-2", empty)] {
        let body = report(
            id,
            phone,
            "2026-05-01T08:00:00Z",
            json!({ "intent": "sales", "topic": "pricing" }),
        );
        sync(&app, id, body).await;
    }
    let s = app.settle().await;
    assert_eq!(
        contact(&s, filled).prop("ai_first_topic"),
        Some("typed by a human")
    );
    assert_eq!(contact(&s, empty).prop("ai_first_topic"), Some("pricing"));
    assert_eq!(contact(&s, empty).prop("ai_intent"), Some("sales"));
    assert_eq!(s.requests_of("get_contact"), 0, "{:?}", s.stats);
    assert_eq!(s.requests_of("update_contact"), 2, "{:?}", s.stats);
    assert!(s.contacts.len() == 2, "no contact created");
    app.assert_ledger(2, 0).await;
}

/// Runs the worker with `env` and returns its exit status and stderr;
/// it must stop by itself.
async fn start_up(env: &callsync_shared::config::Env) -> (bool, String) {
    let output = tokio::time::timeout(Duration::from_secs(30), worker_command(env).output())
        .await
        .expect("the worker stops at start-up")
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_malformed_mapping_stops_the_worker_at_start_up_with_one_line() {
    let app = TestApp::builder().crm("hubspot").workers(0).start().await;
    let path = mapping_file(
        "malformed",
        "[[contact]]\nproperty = \"ai_intent\"\nfrom = \"analysis.intent\"\nmode = \"replace\"\n",
    );
    let env = app
        .worker_env()
        .with("CALLSYNC_MAPPING", path.to_str().unwrap());
    let (ok, stderr) = start_up(&env).await;
    assert!(!ok);
    let expected = format!(
        "CALLSYNC_MAPPING: {} line 4: unknown mode \"replace\"; expected overwrite, if_empty or append",
        path.display()
    );
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("CALLSYNC_MAPPING"))
        .collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].ends_with(&expected), "{stderr}");
    assert_eq!(app.calls_waiting().await, 0);
}

#[tokio::test]
async fn a_mapping_set_for_a_crm_that_cannot_write_it_stops_start_up() {
    let app = TestApp::builder().crm("webhook").workers(0).start().await;
    let path = mapping_file("webhook", MAPPING);
    let env = app
        .worker_env()
        .with("CALLSYNC_MAPPING", path.to_str().unwrap());
    let (ok, stderr) = start_up(&env).await;
    assert!(!ok);
    assert!(
        stderr.contains(
            "CALLSYNC_MAPPING: is set, and CALLSYNC_CRM=webhook does not write mapped fields yet"
        ),
        "{stderr}"
    );
}

// Pipedrive: `[[contact]]` rules on person fields, named by their keys.

/// The person fields of the Pipedrive tests, by role, and the intent's
/// option ids (Sales enquiry, Support).
struct PipedriveFields {
    intent: String,
    intent_ids: Vec<i64>,
    first_topic: String,
    call_log: String,
    score: String,
}

/// Creates the person fields in crm-sim, but the call log when
/// `without_call_log`; returns them with the mapping naming them (the call
/// log's rule on line 10).
fn pipedrive_fields(app: &TestApp, call_log_key: Option<&str>) -> (PipedriveFields, String) {
    let sim = &app.env.sim;
    let (intent, intent_ids) =
        sim.define_pipedrive_person_field("AI intent", "enum", &["Sales enquiry", "Support"]);
    let (first_topic, _) = sim.define_pipedrive_person_field("AI first topic", "varchar", &[]);
    let call_log = match call_log_key {
        Some(key) => key.to_owned(),
        None => {
            sim.define_pipedrive_person_field("AI call log", "text", &[])
                .0
        }
    };
    let (score, _) = sim.define_pipedrive_person_field("AI score", "double", &[]);
    let mapping = format!(
        "[[contact]]\nproperty = \"{intent}\"\nfrom = \"analysis.intent\"\n\n\
         [[contact]]\nproperty = \"{first_topic}\"\nfrom = \"analysis.topic\"\nmode = \"if_empty\"\n\n\
         [[contact]]\nproperty = \"{call_log}\"\nfrom = \"summary\"\nmode = \"append\"\n\n\
         [[contact]]\nproperty = \"{score}\"\nfrom = \"analysis.score\"\n"
    );
    let fields = PipedriveFields {
        intent,
        intent_ids,
        first_topic,
        call_log,
        score,
    };
    (fields, mapping)
}

/// A Pipedrive app whose worker (a process when `process`) starts with
/// the mapping of [`pipedrive_fields`].
async fn pipedrive_app(
    tag: &str,
    call_log_key: Option<&str>,
    process: bool,
    vars: &[(&str, &str)],
) -> (TestApp, PipedriveFields, callsync_shared::config::Env) {
    let mut app = TestApp::builder().crm("pipedrive").workers(0).start().await;
    let (fields, mapping) = pipedrive_fields(&app, call_log_key);
    let mut env = app.worker_env().with(
        "CALLSYNC_MAPPING",
        mapping_file(tag, &mapping).to_str().unwrap(),
    );
    for (name, value) in vars {
        env = env.with(*name, *value);
    }
    if process {
        app.add_worker_process_with(env.clone()).await;
    } else {
        app.add_worker_with(env.clone()).await;
    }
    (app, fields, env)
}

fn field<'a>(record: &'a Record, key: &str) -> Option<&'a Value> {
    record.properties.get(key).filter(|v| !v.is_null())
}

#[tokio::test]
async fn each_mode_writes_pipedrive_person_fields_once_per_call_however_often_delivered() {
    let (app, f, _) = pipedrive_app("pd-modes", None, false, &[]).await;
    let phone = "+31612340101";
    sync_call(
        &app,
        "pd-1",
        phone,
        "2026-05-01T08:00:00Z",
        json!({ "intent": "Sales enquiry", "topic": "pricing", "score": 7 }),
    )
    .await;
    let second = report(
        "pd-2",
        phone,
        "2026-05-01T09:00:00Z",
        json!({ "intent": "support", "topic": "billing", "score": 4.5 }),
    );
    sync(&app, "pd-2", second.clone()).await;
    app.post_voicedock(second).await;
    let s = app.settle().await;
    let c = contact(&s, phone);
    assert_eq!(
        field(c, &f.intent),
        Some(&json!(f.intent_ids[1])),
        "overwrite: the newest call's option, by its id"
    );
    assert_eq!(
        field(c, &f.first_topic),
        Some(&json!("pricing")),
        "if_empty: kept"
    );
    assert_eq!(
        field(c, &f.call_log),
        Some(&json!(format!("{}\n{}", line("pd-1"), line("pd-2"))))
    );
    assert_eq!(field(c, &f.score), Some(&json!(4.5)), "a JSON number");
    app.assert_ledger(2, 0).await;
}

#[tokio::test]
async fn an_older_pipedrive_call_overwrites_nothing_and_a_write_applied_then_failed_appends_once() {
    let (app, f, _) = pipedrive_app("pd-older", None, false, &[]).await;
    let phone = "+31612340102";
    sync_call(
        &app,
        "pd-new",
        phone,
        "2026-05-01T09:00:00Z",
        json!({ "intent": "Support" }),
    )
    .await;
    app.env
        .sim
        .inject("update_person", Fault::ApplyThenServerError, 1);
    let s = sync_call(
        &app,
        "pd-old",
        phone,
        "2026-05-01T08:00:00Z",
        json!({ "intent": "Sales enquiry", "topic": "late" }),
    )
    .await;
    assert!(s.stats.applied_server_errors >= 1, "{:?}", s.stats);
    let c = contact(&s, phone);
    assert_eq!(field(c, &f.intent), Some(&json!(f.intent_ids[1])));
    assert_eq!(field(c, &f.first_topic), Some(&json!("late")));
    assert_eq!(
        field(c, &f.call_log),
        Some(&json!(format!("{}\n{}", line("pd-new"), line("pd-old"))))
    );
    app.assert_ledger(2, 0).await;
}

#[tokio::test]
async fn an_option_pipedrive_lacks_skips_that_field_with_a_metric() {
    let (app, f, _) = pipedrive_app("pd-option", None, true, &[]).await;
    let phone = "+31612340103";
    let s = sync_call(
        &app,
        "pd-refund",
        phone,
        "2026-05-01T08:00:00Z",
        json!({ "intent": "refund", "topic": "money back", "score": "high" }),
    )
    .await;
    let c = contact(&s, phone);
    assert_eq!(field(c, &f.intent), None);
    assert_eq!(field(c, &f.score), None);
    assert_eq!(field(c, &f.first_topic), Some(&json!("money back")));
    app.assert_ledger(1, 0).await;
    let metrics = app.worker_metrics(0).await;
    let skipped = |property: &str, reason: &str| skipped(&metrics, "pipedrive", property, reason);
    assert_eq!(skipped(&f.intent, "not_an_option"), 1.0, "{metrics}");
    assert_eq!(skipped(&f.score, "not_a_number"), 1.0, "{metrics}");
}

#[tokio::test]
async fn a_missing_pipedrive_field_pauses_the_worker_until_it_is_created() {
    let missing = "f".repeat(40);
    let (app, _, env) = pipedrive_app(
        "pd-missing",
        Some(&missing),
        true,
        &[("CALLSYNC_PAUSE_PROBE_MAX", "1s")],
    )
    .await;
    app.post_voicedock(report(
        "pd-gap",
        "+31612340104",
        "2026-05-01T08:00:00Z",
        json!({ "intent": "Support" }),
    ))
    .await;
    let detail = paused_for_setup(&app, 1).await;
    assert!(
        detail.contains(&format!("\"{missing}\" does not exist in Pipedrive"))
            && detail.contains("line 10"),
        "{detail}"
    );
    let (ok, lines) = run_check(&env).await;
    assert!(
        !ok && lines.iter().any(|l| l.contains(&missing)),
        "{lines:?}"
    );
    // The admin creates the field; crm-sim gives it the key the mapping names.
    let (created, _) = app
        .env
        .sim
        .define_pipedrive_person_field("AI call log", "text", &[]);
    app.env
        .sim
        .rename_pipedrive_person_field(&created, &missing);
    let s = sync_waited(&app, "pd-gap").await;
    assert_eq!(
        field(contact(&s, "+31612340104"), &missing),
        Some(&json!(line("pd-gap")))
    );
    app.assert_ledger(1, 0).await;
}

/// The Pipedrive requests of a new caller's call and a repeat call, the
/// one-time set-up (listing and creating person fields) left out.
async fn pipedrive_requests_of_two_calls(tag: &str, mapped: bool) -> BTreeMap<String, u64> {
    let (app, _, _) = if mapped {
        pipedrive_app(tag, None, false, &[]).await
    } else {
        let mut app = TestApp::builder().crm("pipedrive").workers(0).start().await;
        let (fields, _) = pipedrive_fields(&app, None);
        let env = app.worker_env();
        app.add_worker_with(env.clone()).await;
        (app, fields, env)
    };
    let analysis = json!({ "intent": "Support", "topic": "pricing", "score": 3 });
    let setup = ["list_fields", "create_field"];
    requests_of_two_calls(&app, "pd-cost", "+31612340105", analysis, &setup).await
}

#[tokio::test]
async fn a_pipedrive_mapping_with_if_empty_or_append_costs_one_read_per_repeat_call() {
    let none = pipedrive_requests_of_two_calls("pd-cost-none", false).await;
    let full = pipedrive_requests_of_two_calls("pd-cost-full", true).await;
    let mut expected = none.clone();
    *expected.entry("get_person".to_owned()).or_default() += 1;
    assert_eq!(full, expected, "without a mapping: {none:?}");
}

#[tokio::test]
async fn call_rules_for_pipedrive_stop_start_up_naming_their_line() {
    let app = TestApp::builder().crm("pipedrive").workers(0).start().await;
    let path = mapping_file("pd-call", MAPPING);
    let env = app
        .worker_env()
        .with("CALLSYNC_MAPPING", path.to_str().unwrap());
    let (ok, stderr) = start_up(&env).await;
    assert!(!ok);
    assert!(
        stderr.contains(&format!(
            "CALLSYNC_MAPPING: {} line 20: [[call]] rules cannot be written to pipedrive",
            path.display()
        )),
        "{stderr}"
    );
}
