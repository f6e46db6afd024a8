//! A GoHighLevel marketplace app's tokens: the worker exchanges its refresh
//! token for an access token, renews it when GoHighLevel answers 401, and
//! keeps the refresh token each exchange returns (the one used stops
//! working) in the ledger, so that other replicas and a restarted worker use
//! the newest instead of the spent one they were configured with. crm-sim
//! plays GoHighLevel and its rotating token endpoint.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use callsync_tests::app::{AppBuilder, TestApp};
use callsync_tests::harness::{self, voicedock_marker, voicedock_report};
use callsync_tests::sim::Snapshot;
use callsync_tests::sim::gohighlevel::{OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET, OAUTH_REFRESH_TOKEN};

fn marketplace_app() -> AppBuilder {
    TestApp::builder()
        .crm("gohighlevel")
        // An empty value counts as unset: no private integration token.
        .set("CALLSYNC_GOHIGHLEVEL_TOKEN", "")
        .set("CALLSYNC_GOHIGHLEVEL_CLIENT_ID", OAUTH_CLIENT_ID)
        .set("CALLSYNC_GOHIGHLEVEL_CLIENT_SECRET", OAUTH_CLIENT_SECRET)
        .set("CALLSYNC_GOHIGHLEVEL_REFRESH_TOKEN", OAUTH_REFRESH_TOKEN)
}

fn token_requests(s: &Snapshot) -> u64 {
    s.requests_of("oauth_token")
}

async fn post_calls(app: &TestApp, tag: &str, n: usize) -> Vec<String> {
    let mut markers = Vec::new();
    for i in 0..n {
        let id = format!("ghl-oauth-{tag}-{i}");
        app.post_voicedock(voicedock_report(&id, &format!("+3163000{i:04}"), false))
            .await;
        markers.push(voicedock_marker(&id));
    }
    markers
}

async fn stored_refresh_token(app: &TestApp) -> String {
    harness::stored_refresh_token(&app.env, "gohighlevel").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_and_a_restart_renew_with_the_newest_refresh_token() {
    let mut app = marketplace_app().workers(2).start().await;
    let mut markers = post_calls(&app, "first", 4).await;
    let s = app.settle().await;
    assert!(token_requests(&s) >= 1, "{:?}", s.stats.by_operation);
    assert_eq!(
        stored_refresh_token(&app).await,
        app.env.sim.gohighlevel_refresh_token()
    );

    // Every access token stops working; both replicas renew, one after the
    // other, each with the refresh token the other left.
    app.env.sim.expire_token();
    markers.extend(post_calls(&app, "expired", 6).await);
    let s = app.settle().await;
    assert_eq!(
        stored_refresh_token(&app).await,
        app.env.sim.gohighlevel_refresh_token()
    );
    assert_ne!(
        app.env.sim.gohighlevel_refresh_token(),
        OAUTH_REFRESH_TOKEN,
        "the configured refresh token is spent"
    );
    let before_restart = token_requests(&s);

    // A new worker still configured with the spent token renews with the
    // stored one.
    app.stop_worker(0).await;
    app.stop_worker(1).await;
    app.env.sim.expire_token();
    app.add_worker().await;
    markers.extend(post_calls(&app, "restarted", 2).await);
    let s = app.settle().await;
    assert!(token_requests(&s) > before_restart);

    markers.sort();
    assert_eq!(s.call_markers(), markers);
    assert!(app.parked().await.is_empty(), "no call parked or refused");
    app.assert_ledger(12, 0).await;
    app.shutdown().await;
}
