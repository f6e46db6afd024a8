//! A refused credential or an unreachable CRM pauses the worker instead of
//! parking every call: the calls wait in the queue with their attempts
//! untouched, `/readyz` says why, `callsync_worker_paused` is set, and the
//! worker resumes by itself when its probe succeeds (or when restarted with
//! the right credential). Workers run as processes so that their metrics
//! are their own. Test names read `<scenario>::<crm>`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use callsync_shared::config::Env;
use callsync_tests::app::TestApp;
use callsync_tests::harness::{TcpProxy, WAIT, voicedock_marker, voicedock_report};
use callsync_tests::prometheus;
use callsync_tests::sim::Snapshot;
use callsync_tests::sim::salesforce::{OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET};
use callsync_tests::wait::{eventually, throughout};
use reqwest::StatusCode;

/// Probes come at most a second apart in these tests (a minute in
/// production), so a fixed credential is noticed quickly.
const PROBE_MAX: &str = "1s";

/// `n` reports of new callers, the first with a follow-up; their markers.
fn reports(tag: &str, n: usize) -> (Vec<Vec<u8>>, Vec<String>) {
    (0..n)
        .map(|i| {
            let id = format!("pause-{tag}-{i}");
            let body = voicedock_report(&id, &format!("+3161234{i:04}"), i == 0);
            (body, voicedock_marker(&id))
        })
        .unzip()
}

/// Waits until worker 0 pauses for `reason`, with a detail naming
/// `names`, and all `n` calls wait in the calls queue (none held by a
/// worker, none parked, none in the CRM).
async fn assert_paused(app: &TestApp, reason: &str, names: &[&str], n: u32) {
    let detail = app.wait_for_pause(0, reason).await;
    assert!(
        names.iter().all(|name| detail.contains(name)),
        "the pause names {names:?}: {detail}"
    );
    eventually(
        WAIT,
        "every call waits in the calls queue",
        || app.calls_waiting(),
        |depth| *depth == n,
    )
    .await;
    assert!(app.parked().await.is_empty(), "nothing is parked");
    let s = app.snapshot();
    assert!(s.calls.is_empty() && s.tasks.is_empty(), "{s:?}");
}

/// Checks for `seconds` that nothing is parked `while_` the CRM refuses
/// or is away: a paused worker holds its calls back instead of parking them.
async fn nothing_parked_for(app: &TestApp, seconds: u64, while_: &str) {
    throughout(
        Duration::from_secs(seconds),
        &format!("nothing is parked while {while_}"),
        || app.parked(),
        |parked| parked.is_empty(),
    )
    .await;
}

/// A worker process that probes at most [`PROBE_MAX`] apart.
fn paused_app(crm: &'static str) -> callsync_tests::app::AppBuilder {
    TestApp::builder()
        .crm(crm)
        .workers(0)
        .worker_processes(1)
        .worker_set("CALLSYNC_PAUSE_PROBE_MAX", PROBE_MAX)
}

/// Posts the reports.
async fn post_all(app: &TestApp, bodies: Vec<Vec<u8>>) {
    for body in bodies {
        app.post_voicedock(body).await;
    }
}

/// Once the app settled, each call of `markers` has one call record, the
/// ledger holds them all synced and nothing is parked: what every test
/// here ends with, whatever else it checks. Returns the settled CRM.
async fn assert_all_synced(app: &TestApp, markers: &[String]) -> Snapshot {
    let s = app.settle().await;
    let mut expected = markers.to_vec();
    expected.sort();
    assert_eq!(s.call_markers(), expected);
    app.assert_ledger(i64::try_from(markers.len()).unwrap(), 0)
        .await;
    assert!(app.parked().await.is_empty(), "nothing is parked");
    s
}

/// The checks every pause ends with: each call synced exactly once (the
/// first with its follow-up task, where the CRM has tasks), nothing
/// parked, no attempt used (no message went through a retry tier), the
/// pause over.
async fn assert_resumed_and_synced(app: &TestApp, markers: &[String]) {
    let s = assert_all_synced(app, markers).await;
    // The generic webhook carries the follow-up inside the report.
    let tasks = if app.env.crm == "webhook" {
        Vec::new()
    } else {
        vec![markers[0].clone()]
    };
    assert_eq!(s.task_markers(), tasks);
    let metrics = app.worker_metrics(0).await;
    assert_eq!(
        prometheus::value(&metrics, "callsync_worker_retries_total", &[]),
        0.0,
        "no call used up an attempt"
    );
    assert_eq!(
        prometheus::value(&metrics, "callsync_worker_paused", &[]),
        0.0
    );
    let (status, body) = app.worker_readiness(0).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// The CRM stops accepting the worker's token (rotated or revoked in the
/// CRM), three calls arrive, then the CRM accepts the token again.
async fn a_refused_token_pauses_the_worker_and_parks_nothing(crm: &'static str) {
    let app = paused_app(crm).start().await;
    let token = app.env.sim.token();
    app.env.sim.set_token("rotated-in-the-crm");
    let (bodies, markers) = reports(crm, 3);
    post_all(&app, bodies).await;

    assert_paused(&app, "credential", &["401"], 3).await;
    let metrics = app.worker_metrics(0).await;
    assert_eq!(
        prometheus::value(
            &metrics,
            "callsync_worker_paused",
            &[("reason", "credential")]
        ),
        1.0
    );

    app.env.sim.set_token(&token);
    assert_resumed_and_synced(&app, &markers).await;
    app.shutdown().await;
}

callsync_tests::for_crms!(
    [hubspot, pipedrive, gohighlevel, salesforce, webhook]:
    a_refused_token_pauses_the_worker_and_parks_nothing,
);

#[test]
fn the_suite_runs_every_registered_crm() {
    assert_eq!(LISTED_CRMS, callsync_tests::harness::crms());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_a_scope_pauses_hubspot_until_the_scope_is_granted() {
    let app = paused_app("hubspot").start().await;
    // The app may read but not write contacts (nor calls or tasks).
    app.env
        .sim
        .grant_hubspot_scopes(&["crm.objects.contacts.read", "crm.schemas.contacts.write"]);
    let (bodies, markers) = reports("scope", 2);
    post_all(&app, bodies).await;
    assert_paused(
        &app,
        "credential",
        &["MISSING_SCOPES", "crm.objects.contacts.write"],
        2,
    )
    .await;

    // Only probes that write nothing run while paused; they read the
    // token's scopes too, so the worker stays paused until the scope is
    // granted. Calls never park meanwhile.
    nothing_parked_for(&app, 3, "the scope is missing").await;
    app.env
        .sim
        .grant_hubspot_scopes(&callsync_tests::sim::hubspot::ALL_SCOPES);
    assert_resumed_and_synced(&app, &markers).await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_salesforce_grant_pauses_until_the_token_endpoint_issues_one_again() {
    let app = paused_app("salesforce")
        // An empty value counts as unset: the worker fetches its own session.
        .set("CALLSYNC_SALESFORCE_ACCESS_TOKEN", "")
        .set("CALLSYNC_SALESFORCE_CLIENT_ID", OAUTH_CLIENT_ID)
        .set("CALLSYNC_SALESFORCE_CLIENT_SECRET", OAUTH_CLIENT_SECRET)
        .start()
        .await;
    app.env.sim.revoke_oauth(true);
    let (bodies, markers) = reports("grant", 2);
    post_all(&app, bodies).await;
    assert_paused(&app, "credential", &["invalid_grant"], 2).await;
    assert_eq!(
        app.snapshot().stats.requests,
        0,
        "no API request without a session"
    );

    app.env.sim.revoke_oauth(false);
    assert_resumed_and_synced(&app, &markers).await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_restarted_with_the_right_token_syncs_what_waited() {
    let mut app = TestApp::builder().crm("pipedrive").workers(0).start().await;
    let wrong = app
        .worker_env()
        .with("CALLSYNC_PIPEDRIVE_TOKEN", "a-token-with-a-typo");
    let first = app.add_worker_process_with(wrong).await;
    let (bodies, markers) = reports("restart", 2);
    post_all(&app, bodies).await;
    assert_paused(&app, "credential", &["401"], 2).await;

    app.stop_worker(first).await;
    let fixed = app.worker_env();
    app.add_worker_process_with(fixed).await;
    assert_all_synced(&app, &markers).await;
    app.shutdown().await;
}

/// The CRM cannot be reached (every connection dropped) for longer than
/// the retry tiers take to run out; the worker pauses instead of parking,
/// and syncs everything once the CRM is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_crm_outlasting_the_retry_tiers_parks_nothing() {
    let mut app = TestApp::builder().crm("hubspot").workers(0).start().await;
    let proxy = TcpProxy::start(&app.env.sim.addr().to_string()).await;
    // Tiers of 1 s and 2 s: without the pause, every call would be parked
    // three seconds into the outage.
    let env: Env = app
        .worker_env()
        .with(
            "CALLSYNC_HUBSPOT_BASE_URL",
            format!("http://{}", proxy.addr()),
        )
        .with("CALLSYNC_RETRY_DELAYS", "1s,2s")
        .with("CALLSYNC_CRM_OUTAGE_AFTER", "2s")
        .with("CALLSYNC_CRM_TIMEOUT", "2s")
        .with("CALLSYNC_LEASE", "10s")
        .with("CALLSYNC_PAUSE_PROBE_MAX", PROBE_MAX);
    app.add_worker_process_with(env).await;
    proxy.cut();
    let (bodies, markers) = reports("outage", 4);
    post_all(&app, bodies).await;
    let detail = app.wait_for_pause(0, "crm_outage").await;
    assert!(detail.contains("none answered"), "{detail}");
    nothing_parked_for(&app, 6, "the CRM is unreachable, well past the last tier").await;

    proxy.restore();
    assert_all_synced(&app, &markers).await;
    let (status, _) = app.worker_readiness(0).await;
    assert_eq!(status, StatusCode::OK);
    app.shutdown().await;
}

/// A paused worker probes 5 s after pausing, then 10 s later, the wait
/// doubling up to `CALLSYNC_PAUSE_PROBE_MAX`: exactly two probes in its
/// first 20 s paused, however long the CRM keeps refusing, never a
/// request a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_worker_probes_less_and_less_often() {
    let app = paused_app("hubspot")
        .worker_set("CALLSYNC_PAUSE_PROBE_MAX", "1m")
        .start()
        .await;
    app.env.sim.set_token("rotated-in-the-crm");
    let (bodies, _) = reports("backoff", 1);
    post_all(&app, bodies).await;
    assert_paused(&app, "credential", &["401"], 1).await;
    let probes = || async {
        prometheus::value(
            &app.worker_metrics(0).await,
            "callsync_worker_probes_total",
            &[("outcome", "failed")],
        )
    };
    throughout(
        Duration::from_secs(20),
        "at most two probes in the first 20 s paused",
        probes,
        |n| *n <= 2.0,
    )
    .await;
    assert_eq!(probes().await, 2.0, "the paused worker kept probing");
    app.shutdown().await;
}

/// A GoHighLevel token made with the contacts scopes only, as the set-up
/// once said: the custom fields' routes refuse it for their scope. The
/// worker pauses for the set-up, naming the scope, parks nothing, and
/// resumes once the scopes are granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gohighlevel_token_without_the_custom_field_scopes_pauses_until_they_are_granted() {
    let app = paused_app("gohighlevel").start().await;
    app.env
        .sim
        .grant_gohighlevel_scopes(&["contacts.readonly", "contacts.write"]);
    let (bodies, markers) = reports("ghl-scope", 2);
    post_all(&app, bodies).await;
    assert_paused(
        &app,
        "setup",
        &[
            "locations/customFields.readonly",
            "not authorized for this scope",
        ],
        2,
    )
    .await;
    let metrics = app.worker_metrics(0).await;
    assert_eq!(
        prometheus::value(&metrics, "callsync_worker_paused", &[("reason", "setup")]),
        1.0
    );
    // The probe proves the set-up too: the worker stays paused, where a
    // probe that only read contacts would resume it into the same refusal.
    stays_paused_for_the_set_up(&app, 3).await;

    app.env
        .sim
        .grant_gohighlevel_scopes(&callsync_tests::sim::gohighlevel::ALL_SCOPES);
    assert_resumed_and_synced(&app, &markers).await;
    app.shutdown().await;
}

/// Without `contacts.write` the contact's upsert is refused for its scope:
/// a pause for the set-up, not one parked call per caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gohighlevel_token_without_contacts_write_pauses_instead_of_parking() {
    let app = paused_app("gohighlevel").start().await;
    app.env.sim.grant_gohighlevel_scopes(&[
        "contacts.readonly",
        "locations/customFields.readonly",
        "locations/customFields.write",
    ]);
    let (bodies, markers) = reports("ghl-write", 2);
    post_all(&app, bodies).await;
    assert_paused(&app, "setup", &["contacts.write"], 2).await;
    stays_paused_for_the_set_up(&app, 3).await;

    app.env
        .sim
        .grant_gohighlevel_scopes(&callsync_tests::sim::gohighlevel::ALL_SCOPES);
    assert_resumed_and_synced(&app, &markers).await;
    app.shutdown().await;
}

/// Checks for `seconds` that worker 0 stays paused for the set-up and
/// parks nothing.
async fn stays_paused_for_the_set_up(app: &TestApp, seconds: u64) {
    throughout(
        Duration::from_secs(seconds),
        "the worker stays paused for the set-up and parks nothing",
        || async { (app.worker_readiness(0).await, app.parked().await) },
        |((status, body), parked)| {
            *status == StatusCode::SERVICE_UNAVAILABLE
                && body["paused"]["reason"] == "setup"
                && parked.is_empty()
        },
    )
    .await;
}

/// Followed without one custom field, the Salesforce set-up would refuse
/// every call with `INVALID_FIELD` ("No such column"): the worker pauses
/// for the set-up naming the field, parks nothing, and resumes once the
/// admin creates it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_salesforce_custom_field_pauses_until_the_admin_creates_it() {
    use callsync_tests::sim::salesforce::Org;
    let app = paused_app("salesforce").start().await;
    app.env.sim.set_salesforce_org(Org {
        missing_fields: vec![("Contact".into(), "Callsync_Last_Call_At__c".into())],
        ..Org::default()
    });
    let (bodies, markers) = reports("sf-field", 2);
    post_all(&app, bodies).await;
    assert_paused(&app, "setup", &["Contact.Callsync_Last_Call_At__c"], 2).await;
    stays_paused_for_the_set_up(&app, 3).await;

    app.env.sim.set_salesforce_org(Org::default());
    assert_resumed_and_synced(&app, &markers).await;
    app.shutdown().await;
}

/// A field deleted after the worker prepared (its describe passed): the
/// first write naming it is refused with `INVALID_FIELD`, and that pauses
/// too instead of parking the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_salesforce_field_deleted_while_running_pauses_instead_of_parking() {
    use callsync_tests::sim::salesforce::Org;
    let app = paused_app("salesforce").start().await;
    let (bodies, markers) = reports("sf-deleted", 2);
    let mut bodies = bodies.into_iter();
    app.post_voicedock(bodies.next().unwrap()).await;
    app.wait_for_crm("the first call is recorded", |s| s.calls.len() == 1)
        .await;
    app.env.sim.set_salesforce_org(Org {
        missing_fields: vec![("Task".into(), "Callsync_Marker__c".into())],
        ..Org::default()
    });
    app.post_voicedock(bodies.next().unwrap()).await;
    let detail = app.wait_for_pause(0, "setup").await;
    assert!(detail.contains("Callsync_Marker__c"), "{detail}");
    stays_paused_for_the_set_up(&app, 2).await;

    app.env.sim.set_salesforce_org(Org::default());
    assert_resumed_and_synced(&app, &markers).await;
    app.shutdown().await;
}
