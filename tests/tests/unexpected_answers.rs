//! A CRM that answers a success in a shape callsync does not expect costs
//! no call: GoHighLevel's additional phones are read in the shape its docs
//! show (strings) and in the other one (objects), and any other unexpected
//! body is a counted failure that is retried, logged by its shape alone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use callsync_tests::app::TestApp;
use callsync_tests::harness::{voicedock_marker, voicedock_report};
use callsync_tests::prometheus;
use callsync_tests::sim::Fault;
use serde_json::{Value, json};

/// A caller whose GoHighLevel contact also holds other numbers, in the
/// shape `additional_phones` gives, is recorded on that contact.
async fn a_contact_with_additional_phones_is_found(additional_phones: Value) {
    let app = TestApp::builder()
        .crm("gohighlevel")
        .workers(1)
        .start()
        .await;
    let id = app.env.sim.seed_contact(
        json!({
            "name": "Known", "phone": "+31612345678", "dateUpdated": "2025-01-01T00:00:00Z",
            "additionalPhones": additional_phones,
        })
        .as_object()
        .cloned()
        .unwrap(),
    );
    app.post_voicedock(voicedock_report("extra-phones", "+31612345678", false))
        .await;
    let s = app.settle().await;
    assert_eq!(s.call_markers(), [voicedock_marker("extra-phones")]);
    assert_eq!(s.calls[0].associations, [id]);
    assert_eq!(s.contacts.len(), 1, "no second contact: {s:#?}");
    app.assert_ledger(1, 0).await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gohighlevel_contact_with_additional_phones_as_the_docs_show_them_is_found() {
    a_contact_with_additional_phones_is_found(json!(["+31201234567", "0612345679"])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gohighlevel_contact_with_additional_phones_as_objects_is_found() {
    a_contact_with_additional_phones_is_found(json!([{ "phone": "+31201234567" }])).await;
}

/// GoHighLevel answers the note's creation 200 with a body that is not a
/// note, once: the call is retried (not parked), recorded once, and the
/// answer counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_in_an_unexpected_shape_is_retried_counted_and_never_parks_the_call() {
    let app = TestApp::builder()
        .crm("gohighlevel")
        .workers(0)
        .worker_processes(1)
        .start()
        .await;
    app.env.sim.inject("create_note", Fault::Status(200), 1);
    app.post_voicedock(voicedock_report("odd-shape", "+31612345670", false))
        .await;
    let s = app.settle().await;
    assert_eq!(s.call_markers(), [voicedock_marker("odd-shape")]);
    app.assert_ledger(1, 0).await;
    assert!(app.parked().await.is_empty());
    let metrics = app.worker_metrics(0).await;
    assert_eq!(
        prometheus::value(
            &metrics,
            "callsync_worker_crm_unexpected_responses_total",
            &[("crm", "gohighlevel"), ("operation", "create_note")]
        ),
        1.0
    );
    assert_eq!(
        prometheus::value(
            &metrics,
            "callsync_worker_messages_total",
            &[("outcome", "parked")]
        ),
        0.0
    );
    app.shutdown().await;
}
