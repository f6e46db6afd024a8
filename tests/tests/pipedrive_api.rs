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
