//! What the `CALLSYNC_MAPPING` suites (one per CRM) share: the mapping
//! file, the calls they post and the waits for them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Value, json};

use crate::app::TestApp;
use crate::harness::{voicedock_marker, worker_command};
use crate::sim::{Record, Snapshot};

/// Writes `text` to a mapping file of its own (named after `tag`, the
/// process and a fresh id, so parallel tests never share one); returns its
/// path.
pub fn mapping_file(tag: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "callsync-mapping-{tag}-{}-{}.toml",
        std::process::id(),
        uuid::Uuid::new_v4()
    ));
    std::fs::write(&path, text).expect("the mapping file is written");
    path
}

/// A voicedock report of `id` from `phone`, ended at `ended_at`, with
/// `analysis`; its summary is "Call {id}".
pub fn report(id: &str, phone: &str, ended_at: &str, analysis: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({ "message": {
        "type": "end-of-call-report", "timestamp": ended_at,
        "call": { "id": id }, "customer": { "number": phone },
        "summary": format!("Call {id}"),
        "analysis": analysis,
    }}))
    .expect("a report serializes")
}

/// The line call `id` appends: its summary and its marker.
pub fn line(id: &str) -> String {
    format!("Call {id} [{}]", voicedock_marker(id))
}

/// The one contact whose `field` holds `phone`.
pub fn one_contact<'a>(s: &'a Snapshot, field: &str, phone: &str) -> &'a Record {
    let found: Vec<&Record> = s
        .contacts
        .iter()
        .filter(|c| c.prop(field) == Some(phone))
        .collect();
    assert_eq!(found.len(), 1, "one contact for {phone}: {:?}", s.contacts);
    found[0]
}

/// Waits until call `id`, posted earlier, is recorded, and for the
/// workers to settle.
pub async fn synced(app: &TestApp, id: &str) -> Snapshot {
    let marker = voicedock_marker(id);
    app.wait_for_crm(&format!("call {id} recorded"), |s| {
        s.call_markers().contains(&marker)
    })
    .await;
    app.settle().await
}

/// Posts `body` and waits until the call is synced.
pub async fn sync(app: &TestApp, id: &str, body: Vec<u8>) -> Snapshot {
    app.post_voicedock(body).await;
    synced(app, id).await
}

/// Posts [`report`]'s call and waits until it is synced.
pub async fn sync_call(
    app: &TestApp,
    id: &str,
    phone: &str,
    ended_at: &str,
    analysis: Value,
) -> Snapshot {
    sync(app, id, report(id, phone, ended_at, analysis)).await
}

/// Syncs two calls from `phone` an hour apart (`{prefix}-1` at 08:00 and
/// `{prefix}-2` at 09:00, both with `analysis`) and returns the requests
/// the CRM received by operation, its one-time `setup` operations left
/// out. Both calls must end synced and nothing parked.
pub async fn requests_of_two_calls(
    app: &TestApp,
    prefix: &str,
    phone: &str,
    analysis: Value,
    setup: &[&str],
) -> BTreeMap<String, u64> {
    for (n, at) in [(1, "08:00"), (2, "09:00")] {
        let id = format!("{prefix}-{n}");
        let ended_at = format!("2026-05-01T{at}:00Z");
        sync_call(app, &id, phone, &ended_at, analysis.clone()).await;
    }
    let s = app.settle().await;
    app.assert_ledger(2, 0).await;
    s.stats
        .by_operation
        .into_iter()
        .filter(|(op, _)| !setup.contains(&op.as_str()))
        .collect()
}

/// `callsync_worker_mapping_skipped_total` for `crm`'s `property` and
/// `reason` in a worker's `metrics`.
pub fn skipped(metrics: &str, crm: &str, property: &str, reason: &str) -> f64 {
    crate::prometheus::value(
        metrics,
        "callsync_worker_mapping_skipped_total",
        &[("crm", crm), ("property", property), ("reason", reason)],
    )
}

/// Waits until worker 0 pauses for an incomplete set-up with `waiting`
/// calls held in the calls queue and nothing parked; returns the pause's
/// detail (what `/readyz` says).
pub async fn paused_for_setup(app: &TestApp, waiting: u32) -> String {
    let detail = app.wait_for_pause(0, "setup").await;
    crate::wait::eventually(
        crate::harness::WAIT,
        "the calls wait in the calls queue",
        || app.calls_waiting(),
        |n| *n == waiting,
    )
    .await;
    assert!(app.parked().await.is_empty(), "nothing is parked");
    detail
}

/// Worker 0 is ready again and `callsync-worker check` passes.
pub async fn ready_again(app: &TestApp) {
    let (status, body) = app.worker_readiness(0).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    let (ok, lines) = crate::harness::run_check(&app.worker_env()).await;
    assert!(ok, "{lines:?}");
}

/// Starts a worker for `crm` with `mapping` (a file named after `tag`)
/// and asserts it stops at start-up with exactly one line naming
/// `CALLSYNC_MAPPING`, having queued nothing; returns that line and the
/// file's path.
pub async fn refused_at_start(crm: &'static str, tag: &str, mapping: &str) -> (String, String) {
    let app = TestApp::builder().crm(crm).workers(0).start().await;
    let path = mapping_file(tag, mapping);
    let env = app
        .worker_env()
        .with("CALLSYNC_MAPPING", path.to_str().expect("a UTF-8 path"));
    let output = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        worker_command(&env).output(),
    )
    .await
    .expect("the worker stops at start-up")
    .expect("the worker runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("CALLSYNC_MAPPING"))
        .collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert_eq!(app.calls_waiting().await, 0);
    (lines[0].to_owned(), path.display().to_string())
}
