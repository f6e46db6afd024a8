//! After an end-to-end run, the counters of both services moved by exactly
//! what happened. The worker runs as its own process so that its registry
//! holds only its own measurements.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use callsync_tests::app::TestApp;
use callsync_tests::harness::{FOLLOW_UP_MARKER, SEED_000_MARKER, WAIT};
use callsync_tests::wait::eventually;
use reqwest::StatusCode;

fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    callsync_tests::prometheus::value(text, name, labels)
}

async fn scrape(app: &TestApp, base_url: &str) -> String {
    app.client
        .get(format!("{base_url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_of_both_services_count_what_happened() {
    let app = TestApp::builder()
        .workers(0)
        .worker_processes(1)
        .start()
        .await;
    let (ingest, worker) = (app.ingest.base_url.as_str(), app.worker_url(0));
    let before = scrape(&app, ingest).await;

    app.post_fixture("voicedock_000_end_of_call_report.json")
        .await;
    app.post_fixture("voicedock_follow_up.json").await;
    let s = app.settle().await;
    assert_eq!(s.call_markers(), [FOLLOW_UP_MARKER, SEED_000_MARKER]);
    assert_eq!(s.task_markers(), [FOLLOW_UP_MARKER]);
    // A duplicate, an ignored status update and a stale signature.
    app.post_fixture("voicedock_000_end_of_call_report.json")
        .await;
    let ignored = app.post_fixture("voicedock_004_status_update.json").await;
    assert_eq!(ignored["accepted"], false, "{ignored}");
    app.post_expecting(
        StatusCode::UNAUTHORIZED,
        "/webhooks/voicedock",
        &[
            ("X-Webhook-Timestamp", "1".to_owned()),
            ("X-Webhook-Signature", "sha256=00".to_owned()),
        ],
        b"{}".to_vec(),
    )
    .await;

    let worker_text = eventually(
        WAIT,
        "the worker counted the duplicate delivery",
        || scrape(&app, worker),
        |text| {
            metric(
                text,
                "callsync_worker_messages_total",
                &[("outcome", "duplicate")],
            ) >= 1.0
        },
    )
    .await;
    let after = scrape(&app, ingest).await;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        metric(&after, name, labels) - metric(&before, name, labels)
    };

    assert_eq!(
        delta(
            "callsync_ingest_requests_total",
            &[("source", "voicedock"), ("status", "202")]
        ),
        4.0
    );
    assert_eq!(
        delta(
            "callsync_ingest_requests_total",
            &[("source", "voicedock"), ("status", "401")]
        ),
        1.0
    );
    assert_eq!(
        delta(
            "callsync_ingest_signature_failures_total",
            &[("reason", "stale_timestamp")]
        ),
        1.0
    );
    assert_eq!(
        delta("callsync_ingest_publish_confirm_seconds_count", &[]),
        3.0,
        "three reports were published"
    );

    let w = |name: &str, labels: &[(&str, &str)]| metric(&worker_text, name, labels);
    assert_eq!(
        w("callsync_worker_messages_total", &[("outcome", "synced")]),
        2.0
    );
    assert_eq!(
        w(
            "callsync_worker_messages_total",
            &[("outcome", "duplicate")]
        ),
        1.0
    );
    assert_eq!(
        w(
            "callsync_worker_crm_request_seconds_count",
            &[
                ("crm", "hubspot"),
                ("operation", "create_call"),
                ("status", "201")
            ]
        ),
        2.0
    );
    assert_eq!(
        w(
            "callsync_worker_crm_request_seconds_count",
            &[("operation", "create_task")]
        ),
        1.0
    );
    assert_eq!(w("callsync_worker_sync_lag_seconds_count", &[]), 2.0);
    assert_eq!(w("callsync_worker_sync_seconds_count", &[]), 2.0);
    // Each report's first delivery waited in the queue once; the duplicate
    // is a report of its own, delivered once.
    assert_eq!(w("callsync_worker_queue_wait_seconds_count", &[]), 3.0);
    let statements = |statement| {
        w(
            "callsync_worker_ledger_seconds_count",
            &[("statement", statement)],
        )
    };
    // Two claims taken; the duplicate's claim found none to take and read
    // the call's status.
    assert_eq!(statements("claim"), 4.0, "{worker_text}");
    assert_eq!(statements("complete"), 2.0);
    // Each record created: the two call records and the task.
    assert_eq!(statements("start_step"), 3.0, "{worker_text}");
    assert_eq!(w("callsync_worker_in_flight", &[]), 0.0);
    assert!(!worker_text.contains("5c4d030f"), "no call ids in labels");
    assert_eq!(app.settle().await.call_markers(), s.call_markers());
    app.shutdown().await;
}
