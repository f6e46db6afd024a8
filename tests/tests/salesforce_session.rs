//! Salesforce sessions expire. A worker configured with a connected app's
//! client credentials fetches its own token, renews it once when Salesforce
//! answers 401 (however many requests were refused at the same moment), and
//! sends the refused request again; wrong credentials park the call with the
//! token endpoint's reason. crm-sim plays Salesforce and its token endpoint.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use callsync_tests::harness::{TestEnv, fixture, post_voicedock};
use callsync_tests::sim::SimConfig;
use callsync_tests::sim::salesforce::{OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET, OAUTH_REFRESH_TOKEN};
use futures_util::future::join_all;

const WAIT: Duration = Duration::from_secs(30);

/// A Salesforce environment whose worker has no access token, only the
/// connected app's credentials.
async fn oauth_env(client_secret: &str) -> TestEnv {
    let mut env = TestEnv::with_sim(SimConfig::default()).await;
    env.crm = "salesforce";
    // An empty value counts as unset.
    env.set("CALLSYNC_SALESFORCE_ACCESS_TOKEN", "");
    env.set("CALLSYNC_SALESFORCE_CLIENT_ID", OAUTH_CLIENT_ID);
    env.set("CALLSYNC_SALESFORCE_CLIENT_SECRET", client_secret);
    env
}

fn report(call_id: &str, phone: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "message": {
        "type": "end-of-call-report", "timestamp": "2026-05-01T08:00:00Z",
        "call": { "id": call_id }, "customer": { "number": phone },
        "summary": format!("Call {call_id}"), "analysis": { "follow_up_needed": false }
    }}))
    .unwrap()
}

fn token_requests(env: &TestEnv) -> u64 {
    env.sim
        .snapshot()
        .stats
        .by_operation
        .get("oauth_token")
        .copied()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_client_credentials_fetches_its_own_token_and_syncs_the_call() {
    let env = oauth_env(OAUTH_CLIENT_SECRET).await;
    let ingest = env.start_ingest().await;
    let worker = env.start_worker().await;
    post_voicedock(
        &reqwest::Client::new(),
        &ingest,
        fixture("voicedock_follow_up.json"),
    )
    .await;
    env.wait_for_crm(WAIT, |s| s.calls.len() == 1 && s.tasks.len() == 1)
        .await;
    let s = env.settle().await;
    assert_eq!(s.contacts.len(), 1);
    assert_eq!(s.stats.unauthorized, 0);
    assert_eq!(token_requests(&env), 1);
    worker.stop().await;
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_is_renewed_once_for_all_refused_requests_and_nothing_is_lost() {
    let env = oauth_env(OAUTH_CLIENT_SECRET).await;
    let ingest = env.start_ingest().await;
    let worker = env.start_worker().await;
    let client = reqwest::Client::new();
    post_voicedock(&client, &ingest, report("first", "+31611000000")).await;
    env.wait_for_crm(WAIT, |s| s.calls.len() == 1).await;
    assert_eq!(token_requests(&env), 1);

    env.sim.expire_token();
    // Several calls at once: their requests meet the expired session together.
    join_all((0..6).map(|i| {
        post_voicedock(
            &client,
            &ingest,
            report(
                &format!("after-expiry-{i}"),
                &format!("+3161100000{}", i + 1),
            ),
        )
    }))
    .await;
    env.wait_for_crm(WAIT, |s| s.calls.len() == 7).await;
    let s = env.settle().await;
    assert_eq!(s.contacts.len(), 7);
    assert!(s.stats.unauthorized >= 1, "the old session was refused");
    assert_eq!(token_requests(&env), 2, "one renewal, shared");
    let counts = env.ledger().await.counts().await.unwrap();
    assert_eq!((counts.synced, counts.parked), (7, 0));
    worker.stop().await;
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_token_is_exchanged_for_the_session() {
    let mut env = oauth_env(OAUTH_CLIENT_SECRET).await;
    env.set("CALLSYNC_SALESFORCE_REFRESH_TOKEN", OAUTH_REFRESH_TOKEN);
    let ingest = env.start_ingest().await;
    let worker = env.start_worker().await;
    post_voicedock(
        &reqwest::Client::new(),
        &ingest,
        fixture("voicedock_000_end_of_call_report.json"),
    )
    .await;
    env.wait_for_crm(WAIT, |s| s.calls.len() == 1).await;
    assert_eq!(token_requests(&env), 1);
    worker.stop().await;
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_client_credentials_park_the_call_with_the_token_endpoints_reason() {
    let env = oauth_env("not-the-secret").await;
    let ingest = env.start_ingest().await;
    let worker = env.start_worker().await;
    post_voicedock(
        &reqwest::Client::new(),
        &ingest,
        fixture("voicedock_000_end_of_call_report.json"),
    )
    .await;
    env.wait_for_queue_depth(&env.topology.parking_queue(), 1)
        .await;
    let reason = env.parked_reason().await;
    assert!(reason.contains("invalid_client"), "{reason}");
    let s = env.sim.snapshot();
    assert!(s.contacts.is_empty() && s.calls.is_empty());
    assert_eq!(s.stats.requests, 0, "no API request without a token");
    worker.stop().await;
    ingest.stop().await;
}
