//! Salesforce sessions expire. A worker configured with a connected app's
//! client credentials fetches its own token, renews it once when Salesforce
//! answers 401 (however many requests were refused at the same moment), and
//! sends the refused request again; wrong credentials pause the worker
//! with the token endpoint's reason, the call waiting in the queue. crm-sim plays Salesforce and its token endpoint.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use callsync_tests::app::{AppBuilder, TestApp};
use callsync_tests::harness::WAIT;
use callsync_tests::harness::{
    FOLLOW_UP_MARKER, SEED_000_MARKER, voicedock_marker, voicedock_report,
};
use callsync_tests::sim::Snapshot;
use callsync_tests::sim::salesforce::{OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET, OAUTH_REFRESH_TOKEN};
use callsync_tests::wait::eventually;
use futures_util::future::join_all;

/// A Salesforce app whose worker has no access token, only the connected
/// app's credentials.
fn oauth_app(client_secret: &str) -> AppBuilder {
    TestApp::builder()
        .crm("salesforce")
        // An empty value counts as unset.
        .set("CALLSYNC_SALESFORCE_ACCESS_TOKEN", "")
        .set("CALLSYNC_SALESFORCE_CLIENT_ID", OAUTH_CLIENT_ID)
        .set("CALLSYNC_SALESFORCE_CLIENT_SECRET", client_secret)
}

fn token_requests(s: &Snapshot) -> u64 {
    s.requests_of("oauth_token")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_client_credentials_fetches_its_own_token_and_syncs_the_call() {
    let app = oauth_app(OAUTH_CLIENT_SECRET).start().await;
    app.post_fixture("voicedock_follow_up.json").await;
    let s = app.settle().await;
    app.assert_ledger(1, 0).await;
    assert_eq!(s.call_markers(), [FOLLOW_UP_MARKER]);
    assert_eq!(s.task_markers(), [FOLLOW_UP_MARKER]);
    assert_eq!(s.contacts.len(), 1);
    assert_eq!(s.stats.unauthorized, 0);
    assert_eq!(token_requests(&s), 1);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_is_renewed_once_for_all_refused_requests_and_nothing_is_lost() {
    let app = oauth_app(OAUTH_CLIENT_SECRET).start().await;
    app.post_voicedock(voicedock_report("first", "+31611000000", false))
        .await;
    let s = app.settle().await;
    assert_eq!(s.call_markers(), [voicedock_marker("first")]);
    assert_eq!(token_requests(&s), 1);

    app.env.sim.expire_token();
    // Several calls at once: their requests meet the expired session together.
    let ids: Vec<String> = (0..6).map(|i| format!("after-expiry-{i}")).collect();
    join_all(ids.iter().enumerate().map(|(i, id)| {
        app.post_voicedock(voicedock_report(
            id,
            &format!("+3161100000{}", i + 1),
            false,
        ))
    }))
    .await;
    let s = app.settle().await;
    let mut markers: Vec<String> = ids.iter().map(|id| voicedock_marker(id)).collect();
    markers.push(voicedock_marker("first"));
    assert_eq!(s.call_markers(), markers);
    assert_eq!(s.contacts.len(), 7);
    assert!(s.stats.unauthorized >= 1, "the old session was refused");
    assert_eq!(token_requests(&s), 2, "one renewal, shared");
    app.assert_ledger(7, 0).await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_token_is_exchanged_for_the_session() {
    let app = oauth_app(OAUTH_CLIENT_SECRET)
        .set("CALLSYNC_SALESFORCE_REFRESH_TOKEN", OAUTH_REFRESH_TOKEN)
        .start()
        .await;
    app.post_fixture("voicedock_000_end_of_call_report.json")
        .await;
    let s = app.settle().await;
    app.assert_ledger(1, 0).await;
    assert_eq!(s.call_markers(), [SEED_000_MARKER]);
    assert_eq!(token_requests(&s), 1);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_client_credentials_pause_the_worker_with_the_token_endpoints_reason() {
    let app = oauth_app("not-the-secret").start().await;
    app.post_fixture("voicedock_000_end_of_call_report.json")
        .await;
    let detail = app.wait_for_pause(0, "credential").await;
    assert!(detail.contains("invalid_client"), "{detail}");
    eventually(
        WAIT,
        "the call waits in the queue",
        || app.calls_waiting(),
        |n| *n == 1,
    )
    .await;
    assert!(app.parked().await.is_empty());
    let s = app.snapshot();
    assert!(s.contacts.is_empty() && s.calls.is_empty());
    assert_eq!(s.stats.requests, 0, "no API request without a token");
    app.shutdown().await;
}
