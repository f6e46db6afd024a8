//! platform-sim refuses what each platform's API refuses, so that a
//! reconciliation test passing against it says something about the real
//! APIs. Each rule cites the vendor documentation in `tests/src/platforms`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use callsync_shared::Source;
use callsync_tests::platforms::{
    AGENT_NUMBER, PHONE_NUMBER_ID, PlatformSim, SOURCES, SimCall, api_key,
};
use reqwest::{RequestBuilder, StatusCode};
use serde_json::{Value, json};

/// A list request to `source`, with `query` (or, for Retell, `body`), and
/// the key sent as `auth` does it.
fn list(
    client: &reqwest::Client,
    sim: &PlatformSim,
    source: Source,
    query: &[(&str, &str)],
    body: Value,
) -> RequestBuilder {
    let base = sim.api_url(source);
    match source {
        Source::Vapi => client.get(format!("{base}/call")).query(query),
        Source::Retell => client.post(format!("{base}/v3/list-calls")).json(&body),
        Source::Elevenlabs => client
            .get(format!("{base}/v1/convai/conversations"))
            .query(query),
        Source::Bland => client.get(format!("{base}/v1/calls")).query(query),
        other => panic!("{other} has no list API"),
    }
}

/// The key as the platform wants it.
fn keyed(source: Source, request: RequestBuilder, key: &str) -> RequestBuilder {
    match source {
        Source::Vapi | Source::Retell => request.bearer_auth(key),
        Source::Elevenlabs => request.header("xi-api-key", key),
        Source::Bland => request.header("authorization", key),
        other => panic!("{other} has no list API"),
    }
}

/// A list request and what the platform answers it: the platform, the
/// query (or, for Retell, the body), and the status.
type ListCase = (
    Source,
    &'static [(&'static str, &'static str)],
    Value,
    StatusCode,
);

/// `request` with the platform's own key.
fn with_key(source: Source, request: RequestBuilder) -> RequestBuilder {
    keyed(source, request, api_key(source))
}

async fn status(request: RequestBuilder) -> StatusCode {
    request.send().await.expect("platform-sim answers").status()
}

/// The JSON answer to a list request of `source` sent with its key.
async fn listed(sim: &PlatformSim, source: Source, query: &[(&str, &str)], body: Value) -> Value {
    let client = reqwest::Client::new();
    with_key(source, list(&client, sim, source, query, body))
        .send()
        .await
        .expect("platform-sim answers")
        .json()
        .await
        .expect("a JSON answer")
}

#[tokio::test]
async fn every_platform_answers_its_key_and_refuses_a_wrong_or_missing_one() {
    let sim = PlatformSim::start().await;
    let client = reqwest::Client::new();
    for source in SOURCES {
        let request = || list(&client, &sim, source, &[], json!({}));
        assert_eq!(
            status(with_key(
                source,
                list(&client, &sim, source, &[], json!({}))
            ))
            .await,
            StatusCode::OK,
            "{source} with its key"
        );
        assert_eq!(
            status(keyed(source, request(), "not-the-key")).await,
            StatusCode::UNAUTHORIZED,
            "{source} with a wrong key"
        );
        assert_eq!(
            status(request()).await,
            StatusCode::UNAUTHORIZED,
            "{source} without a key"
        );
    }
    // Bland wants the key alone; "Bearer <key>" is another key.
    let bearer =
        list(&client, &sim, Source::Bland, &[], json!({})).bearer_auth(api_key(Source::Bland));
    assert_eq!(status(bearer).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn each_platform_refuses_a_page_larger_than_its_maximum_and_parameters_it_does_not_know() {
    let sim = PlatformSim::start().await;
    let client = reqwest::Client::new();
    let ok = StatusCode::OK;
    let refused = StatusCode::BAD_REQUEST;
    let retell_v2_filter = json!({"filter_criteria": {"start_timestamp": {"lower_threshold": 1}}});
    // (platform, query, body (Retell's), what the platform answers)
    let cases: [ListCase; 12] = [
        // Vapi: `limit` at most 1000; validation refuses unknown properties.
        (Source::Vapi, &[("limit", "1000")], json!({}), ok),
        (Source::Vapi, &[("limit", "1001")], json!({}), refused),
        (Source::Vapi, &[("page", "2")], json!({}), refused),
        (
            Source::Vapi,
            &[("createdAtGe", "yesterday")],
            json!({}),
            refused,
        ),
        // Retell: a typed body; unknown keys and a limit over 1000 refused
        // (v2's filter shape is not v3's).
        (Source::Retell, &[], json!({"limit": 1000}), ok),
        (Source::Retell, &[], json!({"limit": 1001}), refused),
        (Source::Retell, &[], json!({"cursor": "x"}), refused),
        (Source::Retell, &[], retell_v2_filter, refused),
        // ElevenLabs: `page_size` at most 100, answered 422 as FastAPI does.
        (Source::Elevenlabs, &[("page_size", "100")], json!({}), ok),
        (
            Source::Elevenlabs,
            &[("page_size", "101")],
            json!({}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        // Bland: only the parameters its reference lists.
        (Source::Bland, &[("from", "0"), ("to", "10")], json!({}), ok),
        (
            Source::Bland,
            &[("start_date", "2026-11-30")],
            json!({}),
            refused,
        ),
    ];
    for (source, query, body, expected) in cases {
        let what = format!("{source} {query:?} {body}");
        let request = with_key(source, list(&client, &sim, source, query, body));
        assert_eq!(status(request).await, expected, "{what}");
    }
}

#[tokio::test]
async fn pages_hold_at_most_what_was_asked_and_a_cursor_leads_on() {
    let sim = PlatformSim::start().await;
    for i in 0..5 {
        let call = SimCall::analysed(
            &format!("page-{i}"),
            "+31612000009",
            Duration::from_secs(600 + i * 60),
        );
        sim.add(Source::Retell, call.clone());
        sim.add(Source::Elevenlabs, call);
    }
    let first = listed(&sim, Source::Retell, &[], json!({"limit": 2})).await;
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    assert_eq!(first["has_more"], json!(true));
    let key = first["pagination_key"].as_str().unwrap();
    let body = json!({"limit": 3, "pagination_key": key});
    let last = listed(&sim, Source::Retell, &[], body).await;
    assert_eq!(last["items"].as_array().unwrap().len(), 3);
    assert_eq!(last["has_more"], json!(false));

    let page = listed(&sim, Source::Elevenlabs, &[("page_size", "4")], json!({})).await;
    assert_eq!(page["conversations"].as_array().unwrap().len(), 4);
    assert_eq!(page["has_more"], json!(true));
    assert!(
        page["conversations"][0].get("external_number").is_none()
            && page["conversations"][0].get("analysis").is_none(),
        "the list holds summaries only: {page}"
    );
}

#[tokio::test]
async fn an_injected_429_carries_no_retry_after_as_no_platform_documents_one() {
    let sim = PlatformSim::start().await;
    let client = reqwest::Client::new();
    for source in SOURCES {
        sim.rate_limit_next(source, 1);
        let response = with_key(source, list(&client, &sim, source, &[], json!({})))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(response.headers().get("retry-after").is_none());
        assert_eq!(sim.rate_limited(source), 1);
    }
}

/// Vapi's `Call` names its number by `phoneNumberId` only, and
/// `GET /phone-number/{id}` (Bearer; `id` of format uuid) answers the
/// number: the simulator lists calls so and refuses what Vapi refuses.
#[tokio::test]
async fn vapi_lists_calls_by_phone_number_id_and_answers_the_number_only_to_its_key() {
    let sim = PlatformSim::start().await;
    sim.add(
        Source::Vapi,
        SimCall::analysed("by-id", "+31612000010", Duration::from_secs(600)),
    );
    let listed = listed(&sim, Source::Vapi, &[], json!({})).await;
    assert_eq!(listed[0]["phoneNumberId"], json!(PHONE_NUMBER_ID));
    assert!(listed[0].get("phoneNumber").is_none(), "{listed}");

    let client = reqwest::Client::new();
    let number = |id: &str| client.get(format!("{}/phone-number/{id}", sim.api_url(Source::Vapi)));
    let answer: Value = with_key(Source::Vapi, number(PHONE_NUMBER_ID))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["number"], json!(AGENT_NUMBER));
    for (request, expected) in [
        (number(PHONE_NUMBER_ID), StatusCode::UNAUTHORIZED),
        (
            keyed(Source::Vapi, number(PHONE_NUMBER_ID), "not-the-key"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            with_key(Source::Vapi, number("0f0e0d0c-0b0a-4908-8706-050403020100")),
            StatusCode::NOT_FOUND,
        ),
        (
            with_key(Source::Vapi, number("front-desk")),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        assert_eq!(status(request).await, expected);
    }
    assert_eq!(sim.answered(Source::Vapi, "get_phone_number"), 1);
}
