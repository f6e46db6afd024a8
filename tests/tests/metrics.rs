//! After an end-to-end run, the counters of both services moved by exactly
//! what happened. The worker runs as its own process so that its registry
//! holds only its own measurements.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use callsync_tests::harness::{TestEnv, fixture, post, post_voicedock};
use callsync_tests::wait::eventually;

const WAIT: Duration = Duration::from_secs(30);

/// The sum of every series of `name` whose labels include all of `labels`.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let matches = series_name == name
                && labels.iter().all(|(k, v)| {
                    series_labels
                        .split(',')
                        .any(|pair| pair == format!("{k}=\"{v}\""))
                });
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

async fn scrape(base_url: &str) -> String {
    reqwest::get(format!("{base_url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_of_both_services_count_what_happened() {
    let env = TestEnv::new().await;
    let ingest = env.start_ingest().await;
    let worker = env.spawn_worker_process().await;
    let client = reqwest::Client::new();
    let before = scrape(&ingest.base_url).await;

    post_voicedock(
        &client,
        &ingest,
        fixture("voicedock_000_end_of_call_report.json"),
    )
    .await;
    post_voicedock(&client, &ingest, fixture("voicedock_follow_up.json")).await;
    env.wait_for_crm(WAIT, |s| s.calls.len() == 2 && s.tasks.len() == 1)
        .await;
    post_voicedock(
        &client,
        &ingest,
        fixture("voicedock_000_end_of_call_report.json"),
    )
    .await;
    post_voicedock(
        &client,
        &ingest,
        fixture("voicedock_004_status_update.json"),
    )
    .await;
    post(
        &client,
        &ingest,
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
        || scrape(&worker.base_url),
        |text| {
            metric(
                text,
                "callsync_worker_messages_total",
                &[("outcome", "duplicate")],
            ) >= 1.0
        },
    )
    .await;
    let after = scrape(&ingest.base_url).await;
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
    assert_eq!(w("callsync_worker_in_flight", &[]), 0.0);
    assert!(!worker_text.contains("5c4d030f"), "no call ids in labels");
    worker.kill().await;
    ingest.stop().await;
}
