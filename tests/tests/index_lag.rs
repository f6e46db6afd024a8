//! The CRM's search index lags its writes, and a create whose outcome is
//! unknown may have been applied: the worker must wait for the index
//! (`CALLSYNC_CRM_INDEX_LAG`) before it searches for the marker, or it
//! creates the record a second time. The negative control proves that the
//! lag really is exercised: a worker told the lag is zero does duplicate.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use callsync_tests::app::TestApp;
use callsync_tests::harness::SEED_000_MARKER;
use callsync_tests::sim::{Fault, SimConfig};

/// Sends seed 000 once while the simulator's index lags two seconds and
/// its call record's create is applied but answered with a reset; returns
/// the markers of the call records once everything settled.
async fn call_records_after_a_reset_create(worker_index_lag: &str) -> Vec<String> {
    let app = TestApp::builder()
        .sim(SimConfig {
            index_lag: Duration::from_secs(2),
            ..SimConfig::default()
        })
        .set("CALLSYNC_CRM_INDEX_LAG", worker_index_lag)
        .start()
        .await;
    app.env.sim.inject("create_call", Fault::ApplyThenReset, 1);
    app.post_fixture("voicedock_000_end_of_call_report.json")
        .await;
    let s = app.settle().await;
    assert_eq!(s.stats.resets, 1, "the reset was injected");
    assert_eq!(s.contacts.len(), 1, "{:#?}", s.contacts);
    app.shutdown().await;
    s.call_markers()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_waits_out_the_index_lag_adopts_the_record_its_reset_create_made() {
    assert_eq!(
        call_records_after_a_reset_create("3s").await,
        [SEED_000_MARKER]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_told_the_index_has_no_lag_creates_the_record_twice_under_a_lagging_index() {
    // The negative control: if this ever gives one record, the simulator's lag is
    // not being exercised and the test above proves nothing.
    assert_eq!(
        call_records_after_a_reset_create("0s").await,
        [SEED_000_MARKER, SEED_000_MARKER]
    );
}
