//! Every bad input of the contract gets its status code, a clear JSON error,
//! and changes nothing: the calls queue stays empty.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use callsync_ingest::{App, IngestConfig};
use callsync_shared::signature::sign_timestamped;
use callsync_tests::harness::{
    POSTCALL_TOKEN, Service, TestEnv, VOICEDOCK_SECRET, fixture, post, post_voicedock,
};
use reqwest::StatusCode;
use serde_json::Value;

async fn assert_nothing_queued(env: &TestEnv) {
    // Publishing is confirmed before the answer, so a queued message would
    // already be counted here.
    assert_eq!(
        env.queue_depth(&env.topology.calls_queue()).await,
        0,
        "nothing may be queued"
    );
}

fn error_text(answer: &Value) -> &str {
    answer["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message in {answer}"))
}

fn now() -> String {
    time::OffsetDateTime::now_utc().unix_timestamp().to_string()
}

async fn setup() -> (TestEnv, Service, reqwest::Client) {
    let env = TestEnv::new().await;
    let ingest = env.start_ingest().await;
    (env, ingest, reqwest::Client::new())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_signed_report_is_queued_once() {
    let (env, ingest, client) = setup().await;
    let (status, answer) = post_voicedock(
        &client,
        &ingest,
        fixture("voicedock_000_end_of_call_report.json"),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(answer["accepted"], true);
    assert_eq!(env.queue_depth(&env.topology.calls_queue()).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_without_a_signature_is_rejected_with_401() {
    let (env, ingest, client) = setup().await;
    let (status, answer) = post(
        &client,
        &ingest,
        "/webhooks/voicedock",
        &[],
        fixture("voicedock_000_end_of_call_report.json"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_text(&answer), "missing X-Webhook-Timestamp header");
    assert_nothing_queued(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_signed_with_another_secret_is_rejected_with_401() {
    let (env, ingest, client) = setup().await;
    let body = fixture("voicedock_000_end_of_call_report.json");
    let ts = now();
    let headers = [
        ("X-Webhook-Timestamp", ts.clone()),
        (
            "X-Webhook-Signature",
            sign_timestamped("not-the-secret", &ts, &body),
        ),
    ];
    let (status, answer) = post(&client, &ingest, "/webhooks/voicedock", &headers, body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        error_text(&answer),
        "signature does not match any configured secret"
    );
    assert_nothing_queued(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_changed_after_signing_is_rejected_with_401() {
    let (env, ingest, client) = setup().await;
    let body = fixture("voicedock_000_end_of_call_report.json");
    let ts = now();
    let signature = sign_timestamped(VOICEDOCK_SECRET, &ts, &body);
    let mut tampered = body.clone();
    let at = tampered.iter().position(|b| *b == b'8').unwrap();
    tampered[at] = b'9';
    let headers = [
        ("X-Webhook-Timestamp", ts),
        ("X-Webhook-Signature", signature),
    ];
    let (status, _) = post(&client, &ingest, "/webhooks/voicedock", &headers, tampered).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_nothing_queued(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_signature_is_rejected_with_401() {
    let (env, ingest, client) = setup().await;
    let body = fixture("voicedock_000_end_of_call_report.json");
    let old = (time::OffsetDateTime::now_utc().unix_timestamp() - 600).to_string();
    let headers = [
        ("X-Webhook-Timestamp", old.clone()),
        (
            "X-Webhook-Signature",
            sign_timestamped(VOICEDOCK_SECRET, &old, &body),
        ),
    ];
    let (status, answer) = post(&client, &ingest, "/webhooks/voicedock", &headers, body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        error_text(&answer).contains("outside the 300s tolerance"),
        "{answer}"
    );
    assert_nothing_queued(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postcall_report_with_a_wrong_token_is_rejected_with_401_and_a_query_token_is_accepted() {
    let (env, ingest, client) = setup().await;
    let body = fixture("postcall_002_example.json");
    let wrong = [("Authorization", "Bearer guessed".to_owned())];
    let (status, answer) = post(&client, &ingest, "/webhooks/postcall", &wrong, body.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        error_text(&answer),
        "bearer token does not match any configured token"
    );
    let (status, _) = post(&client, &ingest, "/webhooks/postcall", &[], body.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_nothing_queued(&env).await;

    let path = format!("/webhooks/postcall?token={POSTCALL_TOKEN}");
    let (status, _) = post(&client, &ingest, &path, &[], body).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(env.queue_depth(&env.topology.calls_queue()).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_secret_and_a_token_configured_both_are_required() {
    let mut env = TestEnv::new().await;
    env.set("CALLSYNC_VOICEDOCK_TOKEN", "vd-token");
    let ingest = env.start_ingest().await;
    let client = reqwest::Client::new();
    let body = fixture("voicedock_000_end_of_call_report.json");
    let (status, answer) = post_voicedock(&client, &ingest, body.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(error_text(&answer).contains("missing bearer token"));
    assert_nothing_queued(&env).await;
    let mut headers = callsync_tests::harness::voicedock_headers(&body);
    headers.push(("Authorization", "Bearer vd-token".to_owned()));
    let (status, _) = post(&client, &ingest, "/webhooks/voicedock", &headers, body).await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_source_is_rejected_with_404() {
    let (env, ingest, client) = setup().await;
    let (status, answer) = post(&client, &ingest, "/webhooks/nosuch", &[], b"{}".to_vec()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        error_text(&answer),
        format!(
            "unknown source \"nosuch\"; built-in sources are {}",
            callsync_shared::Source::names()
        )
    );
    assert_nothing_queued(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_without_credentials_is_refused_with_404() {
    let mut env = TestEnv::new().await;
    env.set("CALLSYNC_POSTCALL_TOKEN", "");
    let ingest = env.start_ingest().await;
    let client = reqwest::Client::new();
    let (status, answer) = post(
        &client,
        &ingest,
        "/webhooks/postcall",
        &[],
        fixture("postcall_002_example.json"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        error_text(&answer).contains("set CALLSYNC_POSTCALL_TOKEN"),
        "{answer}"
    );
    assert_nothing_queued(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicitly_opened_source_accepts_unauthenticated_reports() {
    let mut env = TestEnv::new().await;
    env.set("CALLSYNC_POSTCALL_TOKEN", "");
    env.set("CALLSYNC_POSTCALL_ALLOW_UNAUTHENTICATED", "true");
    let ingest = env.start_ingest().await;
    let client = reqwest::Client::new();
    let (status, _) = post(
        &client,
        &ingest,
        "/webhooks/postcall",
        &[],
        fixture("postcall_002_example.json"),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(env.queue_depth(&env.topology.calls_queue()).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_rejected_with_413() {
    let mut env = TestEnv::new().await;
    env.set("CALLSYNC_MAX_BODY_BYTES", "1024");
    let ingest = env.start_ingest().await;
    let client = reqwest::Client::new();
    let big = fixture("voicedock_001_end_of_call_report_full.json");
    assert!(big.len() > 1024);
    let (status, answer) = post_voicedock(&client, &ingest, big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        error_text(&answer),
        "body is larger than 1024 bytes (CALLSYNC_MAX_BODY_BYTES)"
    );
    assert_nothing_queued(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_json_is_rejected_with_400() {
    let (env, ingest, client) = setup().await;
    let (status, answer) = post_voicedock(&client, &ingest, b"message=hello".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        error_text(&answer).starts_with("body is not valid JSON"),
        "{answer}"
    );
    // The documented status-update example, with its `{ ... }` placeholders.
    let (status, _) = post_voicedock(
        &client,
        &ingest,
        fixture("voicedock_004_status_update_as_documented.txt"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_nothing_queued(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_without_a_call_id_is_rejected_with_422() {
    let (env, ingest, client) = setup().await;
    let body = br#"{"message":{"type":"end-of-call-report","summary":"no id"}}"#.to_vec();
    let (status, answer) = post_voicedock(&client, &ingest, body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        error_text(&answer),
        "voicedock payload has no call id (expected a non-empty string at message.call.id)"
    );
    assert_nothing_queued(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_update_is_acknowledged_but_not_queued() {
    let (env, ingest, client) = setup().await;
    let (status, answer) = post_voicedock(
        &client,
        &ingest,
        fixture("voicedock_004_status_update.json"),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        answer,
        serde_json::json!({ "accepted": false, "ignored": "status-update" })
    );
    assert_nothing_queued(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_broker_ingest_is_not_ready_and_answers_503() {
    let mut env = TestEnv::new().await;
    // Port 1 on loopback: nothing listens, connections are refused at once.
    env.set("CALLSYNC_AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f");
    let config = IngestConfig::from_env(&env.ingest_env()).unwrap();
    let app = App::build(config).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);

    let body = fixture("voicedock_000_end_of_call_report.json");
    let mut request = client
        .post(format!("{base}/webhooks/voicedock"))
        .body(body.clone());
    for (k, v) in callsync_tests::harness::voicedock_headers(&body) {
        request = request.header(k, v);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let answer: Value = response.json().await.unwrap();
    assert!(
        error_text(&answer).contains("not connected to the broker"),
        "{answer}"
    );
    let _ = stop.send(());
    let _ = task.await;
}
