//! Pipedrive as its documentation describes it: a company domain serves the
//! API under `/api/v1` and `/api/v2` only, a v2 activity's due time is
//! `HH:MM`, and the person search compares a term with the numbers as they
//! were typed. The worker syncs a call and its follow-up through those
//! paths, and crm-sim refuses what Pipedrive would refuse.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use callsync_tests::app::TestApp;
use callsync_tests::harness::{voicedock_marker, voicedock_report};
use callsync_tests::sim::{CrmSim, SimConfig};
use reqwest::{Client, Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};

async fn sim() -> CrmSim {
    CrmSim::start(SocketAddr::from(([127, 0, 0, 1], 0)), SimConfig::default())
        .await
        .expect("crm-sim starts")
}

/// A request to Pipedrive's API with the simulator's token in its header.
fn pipedrive(sim: &CrmSim, method: Method, path: &str) -> RequestBuilder {
    Client::new()
        .request(method, format!("{}{path}", sim.base_url()))
        .header("x-api-token", sim.token())
}

async fn send(request: RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.expect("crm-sim answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipedrive_call_and_its_follow_up_sync_through_the_api_paths_of_the_company_domain() {
    let app = TestApp::builder().crm("pipedrive").workers(1).start().await;
    app.post_voicedock(voicedock_report("pd-paths", "+31650001111", true))
        .await;
    let s = app.settle().await;
    app.assert_ledger(1, 0).await;
    assert_eq!(s.call_markers(), vec![voicedock_marker("pd-paths")]);
    assert_eq!(s.task_markers(), vec![voicedock_marker("pd-paths")]);
    let task = &s.tasks[0];
    let due_time = task.prop("due_time").unwrap();
    assert!(
        due_time.len() == 5 && due_time.as_bytes()[2] == b':',
        "{due_time}"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_company_domain_serves_the_api_under_api_only() {
    let sim = sim().await;
    let (status, body) = send(pipedrive(&sim, Method::GET, "/api/v1/users/me")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for unserved in [
        "/v1/users/me",
        "/v1/notes?person_id=1",
        "/v2/persons/search?term=12&fields=phone",
    ] {
        let (status, _) = send(pipedrive(&sim, Method::GET, unserved)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{unserved}");
    }
    let (status, _) = send(
        pipedrive(&sim, Method::POST, "/v1/notes").json(&json!({ "content": "x", "person_id": 1 })),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(sim.snapshot().calls.is_empty(), "nothing stored");
}

#[tokio::test]
async fn a_v2_activity_is_refused_unless_its_due_time_is_hh_mm() {
    let sim = sim().await;
    let (_, person) =
        send(pipedrive(&sim, Method::POST, "/api/v2/persons").json(&json!({ "name": "Ada" })))
            .await;
    let person = person["data"]["id"].as_i64().unwrap();
    let activity = |due_date: &str, due_time: &str| {
        pipedrive(&sim, Method::POST, "/api/v2/activities").json(&json!({
            "subject": "Call back", "type": "call", "due_date": due_date,
            "due_time": due_time, "done": false,
            "participants": [{ "person_id": person, "primary": true }]
        }))
    };
    for refused in ["09:05:00", "9:05", "24:00", "09:60", "ab:cd", "0905"] {
        let (status, body) = send(activity("2026-05-02", refused)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}: {body}");
        assert_eq!(body["code"], "ERR_SCHEMA_VALIDATION_FAILED");
    }
    let (status, _) = send(activity("2026-02-30", "09:05")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "no such date");
    assert!(sim.snapshot().tasks.is_empty(), "nothing stored");
    let (status, body) = send(activity("2026-05-02", "09:05")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// Seeds a person whose phone was typed `number`; returns its id.
fn seed_person(sim: &CrmSim, name: &str, number: &str) -> String {
    let person = json!({
        "name": name,
        "phones": [{ "value": number, "primary": true, "label": "work" }],
        "update_time": "2025-01-01T00:00:00Z"
    });
    sim.seed_contact(person.as_object().unwrap().clone())
}

/// The ids of the persons a search answered, and its next cursor.
async fn found(sim: &CrmSim, query: &str) -> (StatusCode, Vec<String>, Value) {
    let (status, body) = send(pipedrive(
        sim,
        Method::GET,
        &format!("/api/v2/persons/search?fields=phone&{query}"),
    ))
    .await;
    let ids = body["data"]["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| i["item"]["id"].to_string())
        .collect();
    (status, ids, body["additional_data"]["next_cursor"].clone())
}

#[tokio::test]
async fn pipedrives_person_search_compares_its_term_with_numbers_as_they_were_typed() {
    let sim = sim().await;
    let spaced = seed_person(&sim, "Spaced", "06 12345678");
    let compact = seed_person(&sim, "Compact", "+31612345678");

    // A partial term must appear in the value as typed: the national
    // number is not inside "06 12345678", the last four digits are.
    let (_, ids, _) = found(&sim, "term=612345678").await;
    assert_eq!(ids, vec![compact.clone()]);
    let (_, ids, _) = found(&sim, "term=5678").await;
    assert_eq!(ids, vec![spaced.clone(), compact.clone()]);

    // exact_match compares the whole value: no digits are skipped.
    let (_, ids, _) = found(&sim, "term=0612345678&exact_match=true").await;
    assert!(ids.is_empty(), "{ids:?}");
    let (_, ids, _) = found(&sim, "term=06%2012345678&exact_match=true").await;
    assert_eq!(ids, vec![spaced.clone()]);

    // "Minimum 2 characters (or 1 if using exact_match)".
    let (status, _, _) = found(&sim, "term=8").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = found(&sim, "term=8&exact_match=true").await;
    assert_eq!(status, StatusCode::OK);

    // At most 500 a page; a smaller page names the next one.
    let (status, _, _) = found(&sim, "term=5678&limit=501").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, first, next) = found(&sim, "term=5678&limit=1").await;
    assert_eq!(first, vec![spaced]);
    let next = next.as_str().expect("a next cursor").to_owned();
    let (_, second, last) = found(&sim, &format!("term=5678&limit=1&cursor={next}")).await;
    assert_eq!(second, vec![compact]);
    assert!(last.is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_that_cannot_be_normalised_finds_the_person_who_has_it_as_typed() {
    let app = TestApp::builder().crm("pipedrive").workers(1).start().await;
    // Not a phone number libphonenumber can read: kept and searched raw.
    let typed = "switchboard 12";
    let id = seed_person(&app.env.sim, "Desk", typed);
    app.post_voicedock(voicedock_report("pd-raw", typed, false))
        .await;
    let s = app.settle().await;
    app.assert_ledger(1, 0).await;
    assert_eq!(s.contacts.len(), 1, "no contact created: {:#?}", s.contacts);
    assert_eq!(s.calls[0].associations, vec![id]);
    app.shutdown().await;
}
