//! Ingest publishes over several broker connections (lanes), each with its
//! confirm channel: every accepted report is on the calls queue exactly
//! once, whichever lane took it, and a lane whose connection drops is
//! replaced while the others go on publishing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use callsync_tests::app::TestApp;
use callsync_tests::harness::{TcpProxy, voicedock_report};
use callsync_tests::wait::eventually;
use futures_util::future::join_all;
use reqwest::StatusCode;

use callsync_tests::harness::WAIT;

const PHONE: &str = "+31612345678";

/// Ingest's `/readyz` body, which says how many lanes are usable.
async fn readiness(app: &TestApp) -> (StatusCode, String) {
    let response = app
        .client
        .get(format!("{}/readyz", app.ingest.base_url))
        .send()
        .await
        .expect("ingest answers /readyz");
    let status = response.status();
    (status, response.text().await.expect("a readiness body"))
}

/// Waits until ingest says `usable` of its three lanes are usable.
async fn wait_for_usable_lanes(app: &TestApp, usable: usize) {
    let expected = format!("ready: {usable} of 3 broker connections usable");
    eventually(
        WAIT,
        "ingest's readiness",
        || readiness(app),
        |(status, body)| *status == StatusCode::OK && *body == expected,
    )
    .await;
}

/// Posts one report per id, `at_once` of them concurrently at a time,
/// asserting each was accepted.
async fn post_all(app: &TestApp, ids: &[String], at_once: usize) {
    for chunk in ids.chunks(at_once) {
        let posts = chunk
            .iter()
            .map(|id| app.post_voicedock(voicedock_report(id, PHONE, false)));
        join_all(posts).await;
    }
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reports_posted_at_once_over_several_connections_are_each_queued_exactly_once() {
    let app = TestApp::builder()
        .ingest_set("CALLSYNC_PUBLISH_CONNECTIONS", "3")
        .workers(0)
        .start()
        .await;
    wait_for_usable_lanes(&app, 3).await;

    let ids: Vec<String> = (0..120).map(|i| format!("lanes-{i:03}")).collect();
    post_all(&app, &ids, 40).await;

    // Each 202 came after the broker confirmed that report, so all of them
    // are queued now: none missing, none twice.
    assert_eq!(sorted(app.take_queued_call_ids().await), ids);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dropped_broker_connection_is_replaced_while_the_others_go_on_publishing() {
    let proxy = TcpProxy::start("127.0.0.1:5672").await;
    let app = TestApp::builder()
        .ingest_set("CALLSYNC_AMQP_URL", &proxy.amqp_url())
        .ingest_set("CALLSYNC_PUBLISH_CONNECTIONS", "3")
        .workers(0)
        .start()
        .await;
    wait_for_usable_lanes(&app, 3).await;

    // One connection drops and cannot come back for now.
    proxy.cut_oldest();
    wait_for_usable_lanes(&app, 2).await;
    let during: Vec<String> = (0..30).map(|i| format!("during-{i:02}")).collect();
    post_all(&app, &during, 10).await;

    // Its lane reconnects and takes its share again.
    proxy.restore();
    wait_for_usable_lanes(&app, 3).await;
    assert_eq!(proxy.open_connections(), 3, "one connection per lane");
    let after: Vec<String> = (0..30).map(|i| format!("after-{i:02}")).collect();
    post_all(&app, &after, 10).await;

    let expected = sorted([during, after].concat());
    assert_eq!(sorted(app.take_queued_call_ids().await), expected);
    app.shutdown().await;
}
