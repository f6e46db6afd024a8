//! `CALLSYNC_MAPPING` on GoHighLevel: contact custom fields written from
//! each call through ingest, a worker and crm-sim, asserting on the
//! simulator's contacts, the ledger and the queues. Each mode over two
//! calls and a redelivery; a write GoHighLevel applied but answered with a
//! 5xx; an older call after a newer one; an option the field lacks
//! (skipped and counted); a field missing (paused, then resumed once
//! created); a contact the upsert matched though the search missed it
//! (its history kept); `[[call]]` rules (refused at start-up); the
//! requests a call costs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use callsync_shared::config::Env;
use callsync_tests::app::TestApp;
use callsync_tests::harness::run_check;
use callsync_tests::mapping::{
    line, mapping_file, one_contact, paused_for_setup, refused_at_start, report,
    requests_of_two_calls, skipped, sync, synced,
};
use callsync_tests::sim::{Fault, Record, SimConfig, Snapshot};
use serde_json::json;

/// The mapping of every test: the intent (an option field) and the score
/// (a number field) by their keys, the first topic by its id, the call
/// log (line 10) by its key.
fn mapping(first_topic_id: &str) -> String {
    format!(
        "[[contact]]\nproperty = \"contact.ai_intent\"\nfrom = \"analysis.intent\"\n\n\
         [[contact]]\nproperty = \"{first_topic_id}\"\nfrom = \"analysis.topic\"\nmode = \"if_empty\"\n\n\
         [[contact]]\nproperty = \"contact.ai_call_log\"\nfrom = \"summary\"\nmode = \"append\"\n\n\
         [[contact]]\nproperty = \"contact.ai_score\"\nfrom = \"analysis.score\"\n"
    )
}

/// The same fields with `overwrite` rules only.
const OVERWRITE_ONLY: &str = "[[contact]]\nproperty = \"contact.ai_intent\"\nfrom = \"analysis.intent\"\n\n\
     [[contact]]\nproperty = \"contact.ai_score\"\nfrom = \"analysis.score\"\n";

/// Creates the contact fields in crm-sim as an admin would, the call log
/// only when `with_call_log`; returns the mapping naming them.
fn define_fields(app: &TestApp, with_call_log: bool) -> String {
    mapping(&field_ids(app, with_call_log)["ai_first_topic"])
}

/// Creates the contact fields; returns their ids by name.
fn field_ids(app: &TestApp, with_call_log: bool) -> BTreeMap<&'static str, String> {
    let sim = &app.env.sim;
    let mut ids = BTreeMap::new();
    let mut define = |name: &'static str, data_type: &str, options: &[&str]| {
        let field = sim.define_gohighlevel_field("contact", name, data_type, options);
        ids.insert(name, field.id);
    };
    define("ai_intent", "SINGLE_OPTIONS", &["Sales enquiry", "Support"]);
    define("ai_first_topic", "TEXT", &[]);
    if with_call_log {
        define("ai_call_log", "LARGE_TEXT", &[]);
    }
    define("ai_score", "NUMERICAL", &[]);
    ids
}

/// A GoHighLevel app whose one worker (a process when `process`) starts
/// with `text` as its mapping (none when `None`) and `vars`.
async fn started(
    tag: &str,
    text: Option<&str>,
    with_call_log: bool,
    process: bool,
    vars: &[(&str, &str)],
) -> (TestApp, Env) {
    let mut app = TestApp::builder()
        .crm("gohighlevel")
        .workers(0)
        .start()
        .await;
    let full = define_fields(&app, with_call_log);
    let mut env = app.worker_env();
    if let Some(text) = text {
        let text = if text.is_empty() { full.as_str() } else { text };
        env = env.with(
            "CALLSYNC_MAPPING",
            mapping_file(tag, text).to_str().unwrap(),
        );
    }
    for (name, value) in vars {
        env = env.with(*name, *value);
    }
    if process {
        app.add_worker_process_with(env.clone()).await;
    } else {
        app.add_worker_with(env.clone()).await;
    }
    (app, env)
}

/// An app with the full mapping and every field.
async fn app(tag: &str) -> TestApp {
    started(tag, Some(""), true, false, &[]).await.0
}

fn lines(ids: &[&str]) -> String {
    ids.iter().map(|id| line(id)).collect::<Vec<_>>().join("\n")
}

fn contact<'a>(s: &'a Snapshot, phone: &str) -> &'a Record {
    one_contact(s, "phone", phone)
}

#[tokio::test]
async fn each_mode_writes_gohighlevel_contact_fields_over_two_calls_and_a_redelivery_adds_nothing()
{
    let app = app("modes").await;
    let phone = "+31612340201";
    let s = sync(
        &app,
        "ghl-1",
        report(
            "ghl-1",
            phone,
            "2026-05-01T08:00:00Z",
            json!({ "intent": "Sales enquiry", "topic": "pricing", "score": 7 }),
        ),
    )
    .await;
    let c = contact(&s, phone);
    assert_eq!(c.prop("ai_intent"), Some("Sales enquiry"));
    assert_eq!(c.prop("ai_first_topic"), Some("pricing"));
    assert_eq!(c.prop("ai_call_log"), Some(line("ghl-1").as_str()));
    assert_eq!(c.prop("ai_score"), Some("7"), "a number as its text");
    let second = report(
        "ghl-2",
        phone,
        "2026-05-01T09:00:00Z",
        json!({ "intent": "support", "topic": "billing", "score": 4.5 }),
    );
    sync(&app, "ghl-2", second.clone()).await;
    app.post_voicedock(second).await;
    let s = app.settle().await;
    let c = contact(&s, phone);
    assert_eq!(
        c.prop("ai_intent"),
        Some("Support"),
        "overwrite: the newest call's option, matched by its text"
    );
    assert_eq!(c.prop("ai_first_topic"), Some("pricing"), "if_empty: kept");
    assert_eq!(
        c.prop("ai_call_log"),
        Some(lines(&["ghl-1", "ghl-2"]).as_str())
    );
    assert_eq!(c.prop("ai_score"), Some("4.5"));
    assert_eq!(s.contacts.len(), 1);
    app.assert_ledger(2, 0).await;
}

#[tokio::test]
async fn a_gohighlevel_update_applied_but_answered_with_a_5xx_appends_its_line_once() {
    let app = app("applied").await;
    let phone = "+31612340202";
    sync(
        &app,
        "ghl-a1",
        report("ghl-a1", phone, "2026-05-01T08:00:00Z", json!({})),
    )
    .await;
    // The second call's contact update is applied, then answered 500: the
    // worker cannot know, and writes again after reading the field.
    app.env
        .sim
        .inject("update_contact", Fault::ApplyThenServerError, 1);
    let s = sync(
        &app,
        "ghl-a2",
        report("ghl-a2", phone, "2026-05-01T09:00:00Z", json!({})),
    )
    .await;
    assert!(s.stats.applied_server_errors >= 1, "{:?}", s.stats);
    assert!(s.requests_of("update_contact") >= 2, "{:?}", s.stats);
    assert_eq!(
        contact(&s, phone).prop("ai_call_log"),
        Some(lines(&["ghl-a1", "ghl-a2"]).as_str())
    );
    app.assert_ledger(2, 0).await;
}

#[tokio::test]
async fn an_older_gohighlevel_call_after_a_newer_one_overwrites_nothing_and_still_appends() {
    let app = app("older").await;
    let phone = "+31612340203";
    sync(
        &app,
        "ghl-new",
        report(
            "ghl-new",
            phone,
            "2026-05-01T09:00:00Z",
            json!({ "intent": "Support", "score": 9 }),
        ),
    )
    .await;
    let s = sync(
        &app,
        "ghl-old",
        report(
            "ghl-old",
            phone,
            "2026-05-01T08:00:00Z",
            json!({ "intent": "Sales enquiry", "topic": "late", "score": 1 }),
        ),
    )
    .await;
    let c = contact(&s, phone);
    assert_eq!(c.prop("ai_intent"), Some("Support"), "the newer call's");
    assert_eq!(c.prop("ai_score"), Some("9"), "the newer call's");
    assert_eq!(
        c.prop("ai_first_topic"),
        Some("late"),
        "if_empty: was empty"
    );
    assert_eq!(
        c.prop("ai_call_log"),
        Some(lines(&["ghl-new", "ghl-old"]).as_str()),
        "lines in the order the calls were written"
    );
    app.assert_ledger(2, 0).await;
}

#[tokio::test]
async fn an_option_gohighlevel_lacks_skips_that_field_with_a_metric_and_the_call_syncs() {
    let (app, _) = started("option", Some(""), true, true, &[]).await;
    let phone = "+31612340204";
    let s = sync(
        &app,
        "ghl-refund",
        report(
            "ghl-refund",
            phone,
            "2026-05-01T08:00:00Z",
            json!({ "intent": "refund", "topic": "money back", "score": "high" }),
        ),
    )
    .await;
    let c = contact(&s, phone);
    assert_eq!(c.properties.get("ai_intent"), None);
    assert_eq!(c.properties.get("ai_score"), None);
    assert_eq!(c.prop("ai_first_topic"), Some("money back"));
    assert_eq!(c.prop("ai_call_log"), Some(line("ghl-refund").as_str()));
    app.assert_ledger(1, 0).await;
    let metrics = app.worker_metrics(0).await;
    let skipped = |property: &str, reason: &str| skipped(&metrics, "gohighlevel", property, reason);
    assert_eq!(
        skipped("contact.ai_intent", "not_an_option"),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        skipped("contact.ai_score", "not_a_number"),
        1.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn a_missing_gohighlevel_field_pauses_the_worker_until_it_is_created() {
    let (app, env) = started(
        "missing",
        Some(""),
        false,
        true,
        &[("CALLSYNC_PAUSE_PROBE_MAX", "1s")],
    )
    .await;
    let phone = "+31612340205";
    app.post_voicedock(report(
        "ghl-gap",
        phone,
        "2026-05-01T08:00:00Z",
        json!({ "intent": "Support" }),
    ))
    .await;
    let detail = paused_for_setup(&app, 1).await;
    assert!(
        detail.contains("contact field \"contact.ai_call_log\" does not exist in GoHighLevel")
            && detail.contains("line 10"),
        "{detail}"
    );
    let (ok, lines) = run_check(&env).await;
    assert!(
        !ok && lines
            .iter()
            .any(|l| l.contains("contact.ai_call_log") && l.contains("line 10")),
        "{lines:?}"
    );
    app.env
        .sim
        .define_gohighlevel_field("contact", "ai_call_log", "LARGE_TEXT", &[]);
    let s = synced(&app, "ghl-gap").await;
    let c = contact(&s, phone);
    assert_eq!(c.prop("ai_call_log"), Some(line("ghl-gap").as_str()));
    assert_eq!(c.prop("ai_intent"), Some("Support"));
    app.assert_ledger(1, 0).await;
}

/// A contact GoHighLevel has but its search does not show yet (a human
/// added it a moment ago): the upsert matches it by phone. Its history and
/// its filled field are kept, and the call's line is added after them.
#[tokio::test]
async fn a_contact_the_upsert_matched_keeps_its_history_and_gets_the_calls_line_after_it() {
    let mut app = TestApp::builder()
        .crm("gohighlevel")
        .sim(SimConfig {
            index_lag: Duration::from_secs(60),
            ..SimConfig::default()
        })
        .workers(0)
        .start()
        .await;
    let ids = field_ids(&app, true);
    let text = mapping(&ids["ai_first_topic"]);
    let phone = "+31612340207";
    let created = reqwest::Client::new()
        .post(format!("{}/contacts/upsert", app.env.sim.base_url()))
        .bearer_auth("sim-token")
        .header("Version", "2021-07-28")
        .json(&json!({
            "locationId": "loc-1", "phone": phone, "name": "Ann",
            "customFields": [
                { "id": ids["ai_call_log"], "field_value": "Met at the fair" },
                { "id": ids["ai_first_topic"], "field_value": "catalogue" },
            ]
        }))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{created:?}");
    let env = app.worker_env().with(
        "CALLSYNC_MAPPING",
        mapping_file("matched", &text).to_str().unwrap(),
    );
    app.add_worker_with(env).await;
    let s = sync(
        &app,
        "ghl-match",
        report(
            "ghl-match",
            phone,
            "2026-05-01T08:00:00Z",
            json!({ "intent": "Support", "topic": "pricing" }),
        ),
    )
    .await;
    assert_eq!(s.requests_of("search_contacts"), 1, "the search missed it");
    let c = contact(&s, phone);
    assert_eq!(
        c.prop("ai_call_log"),
        Some(format!("Met at the fair\n{}", line("ghl-match")).as_str())
    );
    assert_eq!(
        c.prop("ai_first_topic"),
        Some("catalogue"),
        "if_empty: kept"
    );
    assert_eq!(c.prop("ai_intent"), Some("Support"));
    app.assert_ledger(1, 0).await;
}

#[tokio::test]
async fn call_rules_for_gohighlevel_stop_start_up_naming_their_line() {
    let text = "[[contact]]\nproperty = \"contact.ai_intent\"\nfrom = \"analysis.intent\"\n\n\
                [[call]]\nproperty = \"contact.ai_topic\"\nfrom = \"analysis.topic\"\n";
    let (line, path) = refused_at_start("gohighlevel", "call", text).await;
    assert!(
        line.contains(&format!(
            "CALLSYNC_MAPPING: {path} line 5: [[call]] rules cannot be written to gohighlevel"
        )),
        "{line}"
    );
}

/// The GoHighLevel requests of a new caller's call and a repeat call with
/// `text` as the mapping (the full one when empty, none when `None`), the
/// one-time set-up (listing and creating fields) left out.
async fn gohighlevel_requests_of_two_calls(tag: &str, text: Option<&str>) -> BTreeMap<String, u64> {
    let (app, _) = started(tag, text, true, false, &[]).await;
    let analysis = json!({ "intent": "Support", "topic": "pricing", "score": 3 });
    let setup = ["list_fields", "create_field"];
    requests_of_two_calls(&app, "ghl-cost", "+31612340206", analysis, &setup).await
}

/// `overwrite` rides in the upsert and the update callsync sends anyway;
/// `if_empty` and `append` cost one update of a new contact (the upsert
/// never carries them: it may match a contact the search missed) and one
/// read of a repeat caller's contact.
#[tokio::test]
async fn a_gohighlevel_mapping_costs_nothing_for_overwrite_and_one_request_a_call_for_if_empty_or_append()
 {
    let none = gohighlevel_requests_of_two_calls("cost-none", None).await;
    let overwrite = gohighlevel_requests_of_two_calls("cost-overwrite", Some(OVERWRITE_ONLY)).await;
    let full = gohighlevel_requests_of_two_calls("cost-full", Some("")).await;
    assert_eq!(overwrite, none, "overwrite only");
    let mut expected = none.clone();
    *expected.entry("update_contact".to_owned()).or_default() += 1;
    *expected.entry("get_contact".to_owned()).or_default() += 1;
    assert_eq!(full, expected, "without a mapping: {none:?}");
}
