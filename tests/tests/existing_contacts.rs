//! A caller whose number a human typed into the CRM in any format lands on
//! that contact, for every CRM with contacts: HubSpot, Pipedrive,
//! GoHighLevel and Salesforce, each against crm-sim storing numbers as
//! typed and searching them as the vendor documents. Test names read
//! `<scenario>::<crm>`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Instant;

use callsync_tests::app::TestApp;
use callsync_tests::harness::{TestEnv, WAIT};
use callsync_tests::sim::{RateLimit, SimConfig, Snapshot};
use callsync_tests::wait::eventually;
use serde_json::{Map, Value, json};

/// Where a number was typed: the record's main phone field, or its mobile.
#[derive(Clone, Copy)]
enum Field {
    Main,
    Mobile,
}

/// Ingest and one worker syncing to `crm`; contacts are seeded before
/// the first report is posted.
async fn app_for(crm: &'static str) -> TestApp {
    TestApp::builder().crm(crm).workers(1).start().await
}

/// A contact as a human would have typed it into `crm`, last modified at
/// `updated` (RFC 3339).
fn typed_contact(
    crm: &str,
    name: &str,
    number: &str,
    field: Field,
    updated: &str,
) -> Map<String, Value> {
    let contact = match (crm, field) {
        ("hubspot", Field::Main) => {
            json!({ "firstname": name, "phone": number, "lastmodifieddate": updated })
        }
        ("hubspot", Field::Mobile) => {
            json!({ "firstname": name, "mobilephone": number, "lastmodifieddate": updated })
        }
        ("pipedrive", Field::Main) => json!({
            "name": name, "phones": [{ "value": number, "primary": true, "label": "work" }], "update_time": updated
        }),
        ("pipedrive", Field::Mobile) => json!({
            "name": name,
            "phones": [{ "value": "", "primary": true, "label": "work" }, { "value": number, "primary": false, "label": "mobile" }],
            "update_time": updated
        }),
        // A GoHighLevel contact has one phone field.
        ("gohighlevel", _) => json!({ "name": name, "phone": number, "dateUpdated": updated }),
        ("salesforce", Field::Main) => json!({
            "LastName": name, "Phone": number, "LastModifiedDate": salesforce_time(updated)
        }),
        ("salesforce", Field::Mobile) => json!({
            "LastName": name, "MobilePhone": number, "LastModifiedDate": salesforce_time(updated)
        }),
        (other, _) => panic!("unknown CRM {other}"),
    };
    contact.as_object().unwrap().clone()
}

/// Seeds a contact; Salesforce ids carry the Contact key prefix `003`.
fn seed(env: &TestEnv, contact: Map<String, Value>) -> String {
    if env.crm != "salesforce" {
        return env.sim.seed_contact(contact);
    }
    let n = env.sim.snapshot().contacts.len();
    let id = format!("003{n:0>15}");
    env.sim.seed_contact_with_id(&id, contact);
    id
}

/// Salesforce writes `2026-01-01T00:00:00.000+0000`.
fn salesforce_time(rfc3339: &str) -> String {
    rfc3339.replace('Z', ".000+0000")
}

/// The request that searches contacts, per CRM.
fn search_operation(crm: &str) -> &'static str {
    match crm {
        "hubspot" | "gohighlevel" => "search_contacts",
        "pipedrive" => "search_person",
        "salesforce" => "search",
        other => panic!("unknown CRM {other}"),
    }
}

fn report(call_id: &str, phone: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({ "message": {
        "type": "end-of-call-report", "timestamp": "2026-05-01T08:00:00Z",
        "call": { "id": call_id }, "customer": { "number": phone },
        "summary": format!("Call {call_id}")
    }}))
    .unwrap()
}

/// The contacts the call `call_id` was recorded on.
fn call_contacts(s: &Snapshot, call_id: &str) -> Vec<String> {
    let marker = format!("callsync:voicedock:{call_id}");
    s.calls
        .iter()
        .find(|c| c.marker().as_deref() == Some(marker.as_str()))
        .map(|c| c.associations.clone())
        .unwrap_or_else(|| panic!("no call record for {call_id}: {:#?}", s.calls))
}

/// Posts one report per (call id, caller) and returns the settled CRM.
async fn send_calls(app: &TestApp, calls: &[(&str, &str)]) -> Snapshot {
    for (call_id, caller) in calls {
        app.post_voicedock(report(call_id, caller)).await;
    }
    let s = app.settle().await;
    app.assert_ledger(calls.len() as i64, 0).await;
    s
}

async fn a_number_typed_in_any_format_finds_its_contact_and_creates_none(crm: &'static str) {
    let app = app_for(crm).await;
    let env = &app.env;
    let typed = [
        (
            "national-trunk-zero",
            "06 12345678",
            Field::Main,
            "+31612345678",
        ),
        (
            "international-spaces",
            "+31 6 2345 6789",
            Field::Main,
            "+31623456789",
        ),
        ("idd-prefix", "0031634567890", Field::Main, "+31634567890"),
        (
            "bracketed-trunk",
            "+31 (0)6 45678901",
            Field::Main,
            "+31645678901",
        ),
        (
            "us-parentheses",
            "(415) 555-0123",
            Field::Main,
            "+14155550123",
        ),
        ("us-dashes", "513-227-1572", Field::Main, "+15132271572"),
        ("mobile-only", "06 56789012", Field::Mobile, "+31656789012"),
        (
            "country-code-without-plus",
            "31667890123",
            Field::Main,
            "+31667890123",
        ),
    ];
    let mut expected = Vec::new();
    for (name, number, field, caller) in typed {
        let id = seed(
            env,
            typed_contact(crm, name, number, field, "2025-01-01T00:00:00Z"),
        );
        expected.push((name, id, caller));
    }
    let calls: Vec<(&str, &str)> = expected.iter().map(|(n, _, c)| (*n, *c)).collect();
    let s = send_calls(&app, &calls).await;
    assert_eq!(
        s.contacts.len(),
        typed.len(),
        "no contact created: {:#?}",
        s.contacts
    );
    for (name, id, _) in &expected {
        assert_eq!(
            call_contacts(&s, name),
            vec![id.clone()],
            "the {name} call is on its contact"
        );
    }
}

async fn a_number_sharing_only_the_last_seven_digits_is_another_person(crm: &'static str) {
    let app = app_for(crm).await;
    let env = &app.env;
    // Both hold 2345678 at the end; the first even holds the caller's whole
    // national number inside its digits, so every CRM's search returns it.
    let decoys = [
        seed(
            env,
            typed_contact(
                crm,
                "Decoy US",
                "+1 (961) 234-5678",
                Field::Main,
                "2025-01-01T00:00:00Z",
            ),
        ),
        seed(
            env,
            typed_contact(
                crm,
                "Decoy NL",
                "+31 6 9234 5678",
                Field::Main,
                "2025-01-01T00:00:00Z",
            ),
        ),
    ];
    let s = send_calls(&app, &[("new-caller", "+31612345678")]).await;
    assert_eq!(
        s.contacts.len(),
        3,
        "a contact is created for the caller: {:#?}",
        s.contacts
    );
    let on = call_contacts(&s, "new-caller");
    assert_eq!(on.len(), 1);
    assert!(!decoys.contains(&on[0]), "the call is not on a decoy");
    let created = s.contacts.iter().find(|c| c.id == on[0]).unwrap();
    assert!(
        created
            .properties
            .values()
            .any(|v| v.to_string().contains("+31612345678")),
        "the new contact holds the number in E.164: {:#?}",
        created.properties
    );
}

async fn of_two_contacts_with_the_number_the_main_phone_most_recently_updated_wins(
    crm: &'static str,
) {
    let app = app_for(crm).await;
    let env = &app.env;
    seed(
        env,
        typed_contact(
            crm,
            "Older",
            "06 12345678",
            Field::Main,
            "2025-01-01T00:00:00Z",
        ),
    );
    let newer = seed(
        env,
        typed_contact(
            crm,
            "Newer",
            "+31 6 1234 5678",
            Field::Main,
            "2026-01-01T00:00:00Z",
        ),
    );
    if crm != "gohighlevel" {
        // Updated last of all, but the number is only its mobile.
        seed(
            env,
            typed_contact(
                crm,
                "Mobile",
                "0612345678",
                Field::Mobile,
                "2026-06-01T00:00:00Z",
            ),
        );
    }
    let s = send_calls(&app, &[("twice-known", "+31612345678")]).await;
    assert_eq!(call_contacts(&s, "twice-known"), vec![newer]);
    assert_eq!(s.contacts.len(), if crm == "gohighlevel" { 2 } else { 3 });
}

async fn a_repeat_caller_costs_no_search(crm: &'static str) {
    let app = app_for(crm).await;
    let env = &app.env;
    let contact = seed(
        env,
        typed_contact(
            crm,
            "Known",
            "06 12345678",
            Field::Main,
            "2025-01-01T00:00:00Z",
        ),
    );
    let searches = |s: &Snapshot| {
        s.stats
            .by_operation
            .get(search_operation(crm))
            .copied()
            .unwrap_or(0)
    };
    let after_first = searches(&send_calls(&app, &[("first", "+31612345678")]).await);
    assert!(after_first >= 1, "the first call searched");
    app.post_voicedock(report("second", "+31612345678")).await;
    let s = app.settle().await;
    app.assert_ledger(2, 0).await;
    assert_eq!(
        searches(&s),
        after_first,
        "the second call searched nothing"
    );
    assert_eq!(call_contacts(&s, "first"), vec![contact.clone()]);
    assert_eq!(call_contacts(&s, "second"), vec![contact]);
    assert_eq!(s.contacts.len(), 1);
    app.shutdown().await;
}

/// Waits until every worker's heartbeat has seen all `n`, so that each
/// takes its share of the budgets before the backlog arrives, as in steady
/// operation.
async fn wait_until_workers_see_each_other(app: &TestApp, n: usize) {
    for i in 0..n {
        let url = format!("{}/metrics", app.worker_url(i));
        eventually(
            WAIT,
            "the workers see each other",
            || async {
                let text = app
                    .env
                    .client
                    .get(&url)
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                text.lines()
                    .find(|l| l.starts_with("callsync_worker_live_workers"))
                    .map(str::to_owned)
            },
            |line| {
                line.as_deref()
                    .is_some_and(|l| l.ends_with(&format!(" {n}")))
            },
        )
        .await;
    }
}

/// A backlog on HubSpot's real limits (190 per 10 s, and 5 searches per
/// second per account) with three replicas and the default search budget:
/// nearly nothing is refused. 50 known callers (typed in mixed formats) and
/// 25 new ones call twice each: 150 calls, some 430 requests (23 s of the
/// general budget) of which 75–100 are searches, and the search budget is
/// what paces it: each replica takes 5 ÷ 3, i.e. one search per 1.25 s
/// window, so about 40 s. More calls would take the test past a minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_on_hubspot_limits_with_three_replicas_is_almost_never_refused() {
    const WORKERS: usize = 3;
    let app = TestApp::builder()
        .crm("hubspot")
        .sim(SimConfig {
            rate_limit: Some("190/10s".parse().unwrap()),
            search_rate_limit: Some(RateLimit::HUBSPOT_SEARCH),
            ..SimConfig::default()
        })
        .workers(WORKERS)
        .worker_set("CALLSYNC_CRM_RATE", "190/10s")
        .start()
        .await;
    let env = &app.env;

    // Dutch mobiles +31 6 1000 0000…: each known one typed in one of four ways.
    let mut known = BTreeMap::new();
    for i in 0..50 {
        let typed = match i % 4 {
            0 => format!("06 1000{i:04}"),
            1 => format!("+31 6 1000 {i:04}"),
            2 => format!("003161000{i:04}"),
            _ => format!("+31 (0)6 1000{i:04}"),
        };
        let contact = typed_contact(
            "hubspot",
            &format!("Known {i}"),
            &typed,
            Field::Main,
            "2026-01-01T00:00:00Z",
        );
        known.insert(format!("+3161000{i:04}"), seed(env, contact));
    }
    let new: Vec<String> = (0..25).map(|i| format!("+3162000{i:04}")).collect();
    wait_until_workers_see_each_other(&app, WORKERS).await;
    let before = env.sim.snapshot().stats;

    let callers: Vec<&String> = known.keys().chain(new.iter()).collect();
    let mut calls = Vec::new();
    for round in 0..2 {
        for (n, caller) in callers.iter().enumerate() {
            calls.push((format!("backlog-{round}-{n}"), caller.as_str()));
        }
    }
    let started = Instant::now();
    for (call_id, caller) in &calls {
        app.post_voicedock(report(call_id, caller)).await;
    }
    let s = app.settle().await;
    let elapsed = started.elapsed();
    app.assert_ledger(calls.len() as i64, 0).await;

    for (call_id, caller) in &calls {
        let marker = format!("callsync:voicedock:{call_id}");
        let records = s
            .calls
            .iter()
            .filter(|c| c.marker().as_deref() == Some(marker.as_str()))
            .count();
        assert_eq!(records, 1, "{call_id} synced once");
        if let Some(contact) = known.get(*caller) {
            assert_eq!(
                call_contacts(&s, call_id),
                vec![contact.clone()],
                "{call_id}"
            );
        }
    }
    assert_eq!(s.calls.len(), calls.len());
    assert_eq!(
        s.contacts.len(),
        known.len() + new.len(),
        "one contact per new caller, none for a known one"
    );

    let requests = s.stats.requests - before.requests;
    let refused = s.stats.rate_limited - before.rate_limited;
    let ratio = refused as f64 / requests as f64;
    println!(
        "requests={requests} refused={refused} (search: {}) ratio={ratio:.4} searches={} elapsed={elapsed:.1?}",
        s.stats.search_rate_limited,
        s.stats
            .by_operation
            .get("search_contacts")
            .copied()
            .unwrap_or(0),
    );
    assert!(
        ratio < 0.01,
        "{refused} of {requests} requests refused ({ratio:.4}); by operation: {:?}",
        s.stats.by_operation
    );
    app.shutdown().await;
}

/// One module per scenario holding one test per CRM in the bracketed list.
/// Test names must be identifiers, so the list is written out; the test
/// below holds it equal to the worker's registry.
macro_rules! for_crms {
    (@listed [$($crm:ident),* $(,)?]) => {
        const LISTED_CRMS: &[&str] = &[$(stringify!($crm)),*];
    };
    (@scenario $scenario:ident [$($crm:ident),* $(,)?]) => {
        mod $scenario {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $crm() { super::$scenario(stringify!($crm)).await }
        )*}
    };
    ($crms:tt: $($scenario:ident),* $(,)?) => {
        for_crms!(@listed $crms);
        $(for_crms!(@scenario $scenario $crms);)*
    };
}

for_crms!(
    [hubspot, pipedrive, gohighlevel, salesforce]:
    a_number_typed_in_any_format_finds_its_contact_and_creates_none,
    a_number_sharing_only_the_last_seven_digits_is_another_person,
    of_two_contacts_with_the_number_the_main_phone_most_recently_updated_wins,
    a_repeat_caller_costs_no_search,
);

#[test]
fn the_suite_runs_every_registered_crm_that_keeps_contacts() {
    assert_eq!(LISTED_CRMS, callsync_tests::harness::crms_with_contacts());
}
