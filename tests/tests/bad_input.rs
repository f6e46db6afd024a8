//! Every bad input of the contract gets its status code, a clear JSON error,
//! and changes nothing: the calls queue stays empty.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use callsync_shared::signature::sign_timestamped;
use callsync_tests::app::{AppBuilder, TestApp};
use callsync_tests::harness::{
    POSTCALL_TOKEN, SEED_000_CALL_ID, VOICEDOCK_SECRET, fixture, voicedock_headers,
};
use callsync_tests::wait::throughout;
use reqwest::StatusCode;
use serde_json::{Value, json};

const SEED_000: &str = "voicedock_000_end_of_call_report.json";

/// Ingest alone: what it queues stays in the queue for the test to read.
fn ingest_only() -> AppBuilder {
    TestApp::builder().workers(0)
}

async fn ingest() -> TestApp {
    ingest_only().start().await
}

/// Ingest alone with the variable `name` set to `value`.
async fn ingest_with(name: &str, value: &str) -> TestApp {
    ingest_only().set(name, value).start().await
}

/// The call id of the postcall example (seed 002).
const POSTCALL_002_CALL_ID: &str = "693bff62619c51fac21acf50";

/// Posts `body` to `path`, asserts ingest answered `status` with a JSON
/// error and queued nothing, and returns the error's text. Publishing is
/// confirmed before the answer, so a queued message would already be there.
async fn refused(
    app: &TestApp,
    status: StatusCode,
    path: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> String {
    let answer = app.post_expecting(status, path, headers, body).await;
    app.assert_nothing_queued().await;
    error_text(&answer).to_owned()
}

/// [`refused`] with 401 for a voicedock report sent with `headers`.
async fn unauthorized_voicedock(
    app: &TestApp,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> String {
    refused(
        app,
        StatusCode::UNAUTHORIZED,
        "/webhooks/voicedock",
        headers,
        body,
    )
    .await
}

/// [`refused`] for a request without signature or token headers.
async fn refused_unsigned(app: &TestApp, status: StatusCode, path: &str, body: Vec<u8>) -> String {
    refused(app, status, path, &[], body).await
}

/// [`refused`] for a voicedock report signed like the provider signs it.
async fn refused_voicedock(app: &TestApp, status: StatusCode, body: Vec<u8>) -> String {
    refused(
        app,
        status,
        "/webhooks/voicedock",
        &voicedock_headers(&body),
        body,
    )
    .await
}

fn error_text(answer: &Value) -> &str {
    answer["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message in {answer}"))
}

/// Signature headers for `body` signed with `secret` at `timestamp`.
fn signed(secret: &str, timestamp: i64, body: &[u8]) -> [(&'static str, String); 2] {
    let ts = timestamp.to_string();
    let signature = sign_timestamped(secret, &ts, body);
    [
        ("X-Webhook-Timestamp", ts),
        ("X-Webhook-Signature", signature),
    ]
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_signed_report_is_queued_once() {
    let app = ingest().await;
    let answer = app.post_voicedock(fixture(SEED_000)).await;
    assert_eq!(answer["accepted"], true);
    assert_eq!(app.take_queued_call_ids().await, [SEED_000_CALL_ID]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_without_a_signature_is_rejected_with_401() {
    let app = ingest().await;
    let error = refused_unsigned(
        &app,
        StatusCode::UNAUTHORIZED,
        "/webhooks/voicedock",
        fixture(SEED_000),
    )
    .await;
    assert_eq!(error, "missing X-Webhook-Timestamp header");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_signed_with_another_secret_is_rejected_with_401() {
    let app = ingest().await;
    let body = fixture(SEED_000);
    let headers = signed("not-the-secret", now(), &body);
    let error = unauthorized_voicedock(&app, &headers, body).await;
    assert_eq!(error, "signature does not match any configured secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_changed_after_signing_is_rejected_with_401() {
    let app = ingest().await;
    let body = fixture(SEED_000);
    let headers = signed(VOICEDOCK_SECRET, now(), &body);
    let mut tampered = body.clone();
    let at = tampered.iter().position(|b| *b == b'8').unwrap();
    tampered[at] = b'9';
    let error = unauthorized_voicedock(&app, &headers, tampered).await;
    assert_eq!(error, "signature does not match any configured secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_signature_is_rejected_with_401() {
    let app = ingest().await;
    let body = fixture(SEED_000);
    let headers = signed(VOICEDOCK_SECRET, now() - 600, &body);
    let error = unauthorized_voicedock(&app, &headers, body).await;
    assert!(error.contains("outside the 300s tolerance"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postcall_report_with_a_wrong_token_is_rejected_with_401_and_a_query_token_is_accepted() {
    let app = ingest().await;
    let body = fixture("postcall_002_example.json");
    let wrong = [("Authorization", "Bearer guessed".to_owned())];
    let error = refused(
        &app,
        StatusCode::UNAUTHORIZED,
        "/webhooks/postcall",
        &wrong,
        body.clone(),
    )
    .await;
    assert_eq!(error, "bearer token does not match any configured token");
    refused_unsigned(
        &app,
        StatusCode::UNAUTHORIZED,
        "/webhooks/postcall",
        body.clone(),
    )
    .await;

    let path = format!("/webhooks/postcall?token={POSTCALL_TOKEN}");
    app.post_expecting(StatusCode::ACCEPTED, &path, &[], body)
        .await;
    assert_eq!(app.take_queued_call_ids().await, [POSTCALL_002_CALL_ID]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_secret_and_a_token_configured_both_are_required() {
    let app = ingest_with("CALLSYNC_VOICEDOCK_TOKEN", "vd-token").await;
    let body = fixture(SEED_000);
    let error = refused_voicedock(&app, StatusCode::UNAUTHORIZED, body.clone()).await;
    assert!(error.contains("missing bearer token"), "{error}");
    let mut headers = voicedock_headers(&body);
    headers.push(("Authorization", "Bearer vd-token".to_owned()));
    app.post_expecting(StatusCode::ACCEPTED, "/webhooks/voicedock", &headers, body)
        .await;
    assert_eq!(app.take_queued_call_ids().await, [SEED_000_CALL_ID]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_source_is_rejected_with_404() {
    let app = ingest().await;
    let error = refused_unsigned(
        &app,
        StatusCode::NOT_FOUND,
        "/webhooks/nosuch",
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(
        error,
        format!(
            "unknown source \"nosuch\"; built-in sources are {}",
            callsync_shared::Source::names()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_without_credentials_is_refused_with_404() {
    let app = ingest_with("CALLSYNC_POSTCALL_TOKEN", "").await;
    let error = refused_unsigned(
        &app,
        StatusCode::NOT_FOUND,
        "/webhooks/postcall",
        fixture("postcall_002_example.json"),
    )
    .await;
    assert!(error.contains("set CALLSYNC_POSTCALL_TOKEN"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicitly_opened_source_accepts_unauthenticated_reports() {
    let app = ingest_only()
        .set("CALLSYNC_POSTCALL_TOKEN", "")
        .set("CALLSYNC_POSTCALL_ALLOW_UNAUTHENTICATED", "true")
        .start()
        .await;
    app.post_expecting(
        StatusCode::ACCEPTED,
        "/webhooks/postcall",
        &[],
        fixture("postcall_002_example.json"),
    )
    .await;
    assert_eq!(app.take_queued_call_ids().await, [POSTCALL_002_CALL_ID]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_rejected_with_413() {
    let app = ingest_with("CALLSYNC_MAX_BODY_BYTES", "1024").await;
    let big = fixture("voicedock_001_end_of_call_report_full.json");
    assert!(big.len() > 1024);
    let error = refused_voicedock(&app, StatusCode::PAYLOAD_TOO_LARGE, big).await;
    assert_eq!(
        error,
        "body is larger than 1024 bytes (CALLSYNC_MAX_BODY_BYTES)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_json_is_rejected_with_400() {
    let app = ingest().await;
    let error = refused_voicedock(&app, StatusCode::BAD_REQUEST, b"message=hello".to_vec()).await;
    assert!(error.starts_with("body is not valid JSON"), "{error}");
    // The documented status-update example, with its `{ ... }` placeholders.
    refused_voicedock(
        &app,
        StatusCode::BAD_REQUEST,
        fixture("voicedock_004_status_update_as_documented.txt"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_without_a_call_id_is_rejected_with_422() {
    let app = ingest().await;
    let body = br#"{"message":{"type":"end-of-call-report","summary":"no id"}}"#.to_vec();
    let error = refused_voicedock(&app, StatusCode::UNPROCESSABLE_ENTITY, body).await;
    assert_eq!(
        error,
        "voicedock payload has no call id (expected a non-empty string at message.call.id)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_update_is_acknowledged_but_not_queued() {
    let app = ingest().await;
    let answer = app
        .post_voicedock(fixture("voicedock_004_status_update.json"))
        .await;
    assert_eq!(
        answer,
        json!({ "accepted": false, "ignored": "status-update" })
    );
    app.assert_nothing_queued().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_broker_ingest_is_not_ready_and_answers_503() {
    // Port 1 on loopback: nothing listens, connections are refused at once.
    let app = ingest_only()
        .set("CALLSYNC_AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f")
        .ingest_may_stay_unready()
        .start()
        .await;
    let status = |path: &'static str| {
        let request = app
            .client
            .get(format!("{}{path}", app.ingest.base_url))
            .send();
        async move { request.await.map(|r| r.status()).ok() }
    };
    // Long enough for the publisher's first connection attempts to fail.
    throughout(
        Duration::from_millis(200),
        "ingest stays unready without a broker",
        || status("/readyz"),
        |s| *s == Some(StatusCode::SERVICE_UNAVAILABLE),
    )
    .await;
    assert_eq!(status("/healthz").await, Some(StatusCode::OK));

    // No queue to look into: the broker never saw this test's topology.
    let answer = app
        .post_voicedock_expecting(StatusCode::SERVICE_UNAVAILABLE, fixture(SEED_000))
        .await;
    assert!(
        error_text(&answer).contains("not connected to the broker"),
        "{answer}"
    );
}
