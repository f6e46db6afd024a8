//! Reconciliation end to end: calls whose webhook never arrived are found
//! in the platform's call list and reach the CRM once, against platform-sim
//! (each vendor's list API as documented), the real broker and database.

// A test reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use callsync_shared::Source;
use callsync_shared::config::Env;
use callsync_tests::app::TestApp;
use callsync_tests::harness::worker_command;
use callsync_tests::platforms::{AGENT_NUMBER, PlatformSim, SimCall, Stage, webhook_body};
use callsync_tests::prometheus;
use callsync_tests::sources::{configure_every_source, signed_headers};
use callsync_tests::wait::eventually;
use reqwest::StatusCode;
use sqlx::Row;
use time::OffsetDateTime;

/// One test per platform with a list API, named `<scenario>::<source>`.
macro_rules! for_sources {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            use callsync_shared::Source;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn vapi() { super::$scenario(Source::Vapi).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn retell() { super::$scenario(Source::Retell).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn elevenlabs() { super::$scenario(Source::Elevenlabs).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn bland() { super::$scenario(Source::Bland).await }
        }
    )*};
}

for_sources!(
    calls_whose_webhook_never_arrived_reach_the_crm_once_after_one_round,
    a_webhook_and_the_reconciler_delivering_the_same_calls_sync_each_once,
    a_call_in_progress_or_not_yet_analysed_is_left_for_the_next_round,
    a_rate_limited_list_is_waited_out_and_the_round_completes,
);

const ROUND: Duration = Duration::from_secs(60);

/// `n` analysed calls that started between 20 and 80 minutes ago, each
/// from a number of its own.
fn calls(prefix: &str, n: usize) -> Vec<SimCall> {
    (0..n)
        .map(|i| {
            let ago = Duration::from_secs(20 * 60 + (i as u64 % 60) * 60 + i as u64);
            SimCall::analysed(
                &format!("{prefix}-{i:04}"),
                &format!("+3161{:07}", 1_000_000 + i),
                ago,
            )
        })
        .collect()
}

fn marker(source: Source, call: &SimCall) -> String {
    format!("callsync:{source}:{}", call.id)
}

fn markers(source: Source, calls: &[SimCall]) -> Vec<String> {
    let mut markers: Vec<String> = calls.iter().map(|c| marker(source, c)).collect();
    markers.sort();
    markers
}

/// An app with `workers` workers that do not reconcile, and platform-sim
/// holding `n` analysed calls of `source` (see [`calls`]).
async fn rig(
    source: Source,
    workers: usize,
    prefix: &str,
    n: usize,
) -> (TestApp, PlatformSim, Vec<SimCall>) {
    let app = app(workers).await;
    let sim = PlatformSim::start().await;
    let calls = calls(prefix, n);
    for call in &calls {
        sim.add(source, call.clone());
    }
    (app, sim, calls)
}

/// Once everything settled: each of `calls` is in the CRM once, with its
/// follow-up, and the ledger has them all synced and nothing parked.
async fn assert_each_synced_once(app: &TestApp, source: Source, calls: &[SimCall]) {
    let s = app.settle().await;
    assert_eq!(s.call_markers(), markers(source, calls), "every call once");
    assert_eq!(
        s.task_markers(),
        markers(source, calls),
        "every follow-up once"
    );
    let counts = app.ledger_counts().await;
    assert_eq!((counts.synced, counts.parked), (calls.len() as i64, 0));
    // Our number, also where the platform's list names it only by id
    // (Vapi's `phoneNumberId`).
    for call in &s.calls {
        assert_eq!(
            call.prop("hs_call_to_number"),
            Some(AGENT_NUMBER),
            "{:?}",
            call.marker()
        );
    }
}

/// An app whose ingest knows every source's credentials and whose
/// `workers` in-process workers do not reconcile. The simulated CRM limits
/// nothing here, and the workers are told so: the subject is what reaches
/// the CRM, not how fast (HubSpot's budgets would make 200 calls take 80 s).
async fn app(workers: usize) -> TestApp {
    configure_every_source(TestApp::builder().workers(workers))
        .worker_set("CALLSYNC_CRM_RATE", "off")
        .worker_set("CALLSYNC_CRM_SEARCH_RATE", "off")
        .start()
        .await
}

/// The variables of a worker that reconciles `source` on `sim`: no grace
/// period (the simulated calls are long over), pages of `page_size`, a
/// round every `every`.
fn reconciling(
    app: &TestApp,
    sim: &PlatformSim,
    source: Source,
    page_size: u32,
    every: &str,
) -> Env {
    let mut env = app
        .worker_env()
        .with("CALLSYNC_RECONCILE_GRACE", "0s")
        .with("CALLSYNC_RECONCILE_PAGE_SIZE", page_size.to_string())
        .with("CALLSYNC_RECONCILE_EVERY", every);
    for (name, value) in sim.vars(source) {
        env = env.with(name, value);
    }
    env
}

/// Sends `call`'s webhook as the platform would, and asserts the 202.
async fn deliver(app: &TestApp, source: Source, call: &SimCall) {
    let body = webhook_body(source, call);
    let headers = signed_headers(source, &body);
    let (status, answer) = app
        .post(&format!("/webhooks/{source}"), &headers, body)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
}

/// The ledger's calls by who published them, whether ingest verified them
/// and whether their receipt time is known: (publisher, verified, timed,
/// calls).
async fn came_by(app: &TestApp) -> Vec<(String, bool, bool, i64)> {
    let ledger = app.env.ledger().await;
    sqlx::query_as(
        "SELECT published_by, verified_by IS NOT NULL, received_at IS NOT NULL, count(*)
           FROM calls GROUP BY 1, 2, 3 ORDER BY 1",
    )
    .fetch_all(ledger.pool())
    .await
    .expect("the ledger answers")
}

/// The reconciler's row for `source`: pages of the round in progress, its
/// cursor, and when a round last succeeded.
#[derive(Debug, Clone, PartialEq)]
struct RoundRow {
    pages: i32,
    next_cursor: Option<String>,
    last_success_at: Option<OffsetDateTime>,
    last_error: Option<String>,
    /// What the last finished round listed and queued (for the console).
    last_listed: Option<i64>,
    last_queued: Option<i64>,
}

async fn round_row(app: &TestApp, source: Source) -> Option<RoundRow> {
    let ledger = app.env.ledger().await;
    let row = sqlx::query(
        "SELECT pages, next_cursor, last_success_at, last_error, last_listed, last_queued
           FROM reconcile_rounds WHERE source = $1",
    )
    .bind(source.as_str())
    .fetch_optional(ledger.pool())
    .await
    .expect("the reconcile_rounds table");
    row.map(|row| RoundRow {
        pages: row.get("pages"),
        next_cursor: row.get("next_cursor"),
        last_success_at: row.get("last_success_at"),
        last_error: row.get("last_error"),
        last_listed: row.get("last_listed"),
        last_queued: row.get("last_queued"),
    })
}

/// Waits until a round of `source` has succeeded after `after`.
async fn round_done(app: &TestApp, source: Source, after: OffsetDateTime) -> RoundRow {
    eventually(
        ROUND,
        &format!("a {source} reconcile round to succeed"),
        || round_row(app, source),
        |row| {
            row.as_ref()
                .and_then(|r| r.last_success_at)
                .is_some_and(|at| at > after)
        },
    )
    .await
    .expect("a round row")
}

fn reconciled(metrics: &str, source: Source, outcome: &str) -> f64 {
    prometheus::value(
        metrics,
        "callsync_reconcile_calls_total",
        &[("source", source.as_str()), ("outcome", outcome)],
    )
}

async fn calls_whose_webhook_never_arrived_reach_the_crm_once_after_one_round(source: Source) {
    let (mut app, sim, calls) = rig(source, 1, "lost", 200).await;
    // 70 % arrive by webhook, 30 % are lost on the way.
    let (delivered, lost): (Vec<&SimCall>, Vec<&SimCall>) = calls
        .iter()
        .partition(|c| c.id.ends_with(['0', '1', '2', '3', '4', '5', '6']));
    assert_eq!((delivered.len(), lost.len()), (140, 60));
    for call in &delivered {
        deliver(&app, source, call).await;
    }
    let before = app.settle().await;
    assert_eq!(before.call_markers().len(), 140);

    let started = OffsetDateTime::now_utc();
    let reconciler = app
        .add_worker_process_with(reconciling(&app, &sim, source, 50, "1h"))
        .await;
    let row = round_done(&app, source, started).await;
    assert_eq!(row.last_error, None);
    assert_eq!(
        (row.last_listed, row.last_queued),
        (Some(200), Some(60)),
        "the finished round keeps what it listed and queued"
    );
    assert_each_synced_once(&app, source, &calls).await;
    // The ledger says how each came: by webhook, verified, or from the list.
    assert_eq!(
        came_by(&app).await,
        vec![
            ("callsync-ingest".to_owned(), true, true, 140),
            ("callsync-reconcile".to_owned(), false, true, 60),
        ]
    );

    let metrics = app.worker_metrics(reconciler).await;
    assert_eq!(reconciled(&metrics, source, "queued"), 60.0, "{metrics}");
    assert_eq!(reconciled(&metrics, source, "known"), 140.0);
    assert_eq!(reconciled(&metrics, source, "unfinished"), 0.0);
    assert!(
        sim.answered(source, "list") >= 4,
        "200 calls in pages of 50 take at least four pages: {:?}",
        sim.seen(source).len()
    );
    // Only the calls the ledger did not know cost a request each.
    let fetched = sim.answered(source, "get");
    if source == Source::Vapi {
        assert_eq!(fetched, 0, "Vapi's list holds whole calls");
        assert_eq!(
            sim.answered(source, "get_phone_number"),
            1,
            "our number looked up once for the 60 calls on it"
        );
    } else {
        assert_eq!(fetched, 60, "one get per lost call, none per known one");
    }
    app.shutdown().await;
}

async fn a_webhook_and_the_reconciler_delivering_the_same_calls_sync_each_once(source: Source) {
    // No worker yet: the webhooks wait in the queue, so the ledger knows
    // none of the calls and the reconciler queues every one of them too.
    let mut app = app(0).await;
    let sim = PlatformSim::start().await;
    let calls = calls("race", 40);
    for call in &calls {
        sim.add(source, call.clone());
        deliver(&app, source, call).await;
    }
    let started = OffsetDateTime::now_utc();
    let reconciler = app
        .add_worker_process_with(reconciling(&app, &sim, source, 100, "1h"))
        .await;
    app.add_worker().await;
    round_done(&app, source, started).await;
    assert_each_synced_once(&app, source, &calls).await;
    let metrics = app.worker_metrics(reconciler).await;
    let queued = reconciled(&metrics, source, "queued");
    assert!(
        queued > 0.0,
        "the reconciler must have delivered calls the webhooks also delivered: {metrics}"
    );
    app.shutdown().await;
}

async fn a_call_in_progress_or_not_yet_analysed_is_left_for_the_next_round(source: Source) {
    let mut app = app(0).await;
    let sim = PlatformSim::start().await;
    let mut calls = calls("stage", 6);
    calls[0].stage = Stage::InProgress;
    // Ended two minutes ago, its analysis still running.
    calls[1].stage = Stage::Ended;
    calls[1].started_at = OffsetDateTime::now_utc() - Duration::from_secs(5 * 60);
    for call in &calls {
        sim.add(source, call.clone());
    }
    let started = OffsetDateTime::now_utc();
    let reconciler = app
        .add_worker_process_with(reconciling(&app, &sim, source, 100, "2s"))
        .await;
    round_done(&app, source, started).await;
    let s = app.settle().await;
    // Bland has no "analysed" flag: an ended call is finished there.
    let first_round: Vec<&SimCall> = calls
        .iter()
        .filter(|c| {
            c.stage == Stage::Analysed || (source == Source::Bland && c.stage == Stage::Ended)
        })
        .collect();
    let mut expected: Vec<String> = first_round.iter().map(|c| marker(source, c)).collect();
    expected.sort();
    assert_eq!(s.call_markers(), expected, "unfinished calls wait");
    let metrics = app.worker_metrics(reconciler).await;
    assert!(reconciled(&metrics, source, "unfinished") >= (6 - first_round.len()) as f64);

    sim.set_stage(source, &calls[0].id, Stage::Analysed);
    sim.set_stage(source, &calls[1].id, Stage::Analysed);
    let now = OffsetDateTime::now_utc();
    round_done(&app, source, now).await;
    assert_each_synced_once(&app, source, &calls).await;
    app.shutdown().await;
}

async fn a_rate_limited_list_is_waited_out_and_the_round_completes(source: Source) {
    let (mut app, sim, calls) = rig(source, 1, "limited", 30).await;
    sim.rate_limit_next(source, 3);
    let started = OffsetDateTime::now_utc();
    let reconciler = app
        .add_worker_process_with(reconciling(&app, &sim, source, 10, "1h"))
        .await;
    let row = round_done(&app, source, started).await;
    assert_eq!(
        row.last_error, None,
        "the 429s were waited out within the round"
    );
    assert_eq!(sim.rate_limited(source), 3);
    assert_each_synced_once(&app, source, &calls).await;
    let metrics = app.worker_metrics(reconciler).await;
    assert_eq!(
        prometheus::value(
            &metrics,
            "callsync_reconcile_rate_limited_total",
            &[("source", source.as_str())]
        ),
        3.0,
        "{metrics}"
    );
    app.shutdown().await;
}

/// A reconciler killed in the middle of a round: another replica takes the
/// round over once the lease runs out and resumes at the page that was
/// next, so the pages already walked are not listed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconciler_killed_mid_round_is_resumed_from_its_checkpoint() {
    let source = Source::Retell;
    let (mut app, sim, calls) = rig(source, 1, "resume", 60).await;
    sim.slow_lists(source, Duration::from_millis(600));
    let env = reconciling(&app, &sim, source, 10, "1h");
    let first = app.add_worker_process_with(env.clone()).await;
    let row = eventually(
        ROUND,
        "the first reconciler to checkpoint two pages",
        || round_row(&app, source),
        |row| row.as_ref().is_some_and(|r| r.pages >= 2),
    )
    .await
    .expect("a round row");
    app.kill_worker(first).await;
    let checkpoint = round_row(&app, source).await.expect("a round row");
    let cursor = checkpoint.next_cursor.clone().expect("a cursor mid-round");
    let listed_before = sim
        .seen(source)
        .iter()
        .filter(|s| s.operation == "list")
        .count();
    assert!(checkpoint.pages >= row.pages);

    let started = OffsetDateTime::now_utc();
    app.add_worker_process_with(env).await;
    round_done(&app, source, started).await;
    let lists: Vec<String> = sim
        .seen(source)
        .into_iter()
        .filter(|s| s.operation == "list")
        .map(|s| s.request)
        .skip(listed_before)
        .collect();
    assert!(
        lists
            .first()
            .is_some_and(|body| body.contains(&format!("\"{cursor}\""))),
        "the successor's first list request resumes at {cursor}: {lists:#?}"
    );
    assert!(
        lists.iter().all(|body| body.contains("pagination_key")),
        "no page of the round was listed from the start again: {lists:#?}"
    );
    assert_each_synced_once(&app, source, &calls).await;
    app.shutdown().await;
}

/// Two replicas configured to reconcile the same platform every second:
/// rounds follow one another, never overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_never_reconcile_a_platform_at_once() {
    let source = Source::Elevenlabs;
    let (mut app, sim, calls) = rig(source, 0, "replicas", 30).await;
    sim.slow_lists(source, Duration::from_millis(200));
    let env = reconciling(&app, &sim, source, 10, "1s");
    app.add_worker_with(env.clone()).await;
    app.add_worker_with(env).await;
    eventually(
        ROUND,
        "several rounds (four pages each)",
        || async { sim.answered(source, "list") },
        |lists| *lists >= 16,
    )
    .await;
    assert_eq!(
        sim.most_lists_in_flight(source),
        1,
        "two rounds of one platform ran at the same time"
    );
    assert_each_synced_once(&app, source, &calls).await;
    app.shutdown().await;
}

/// Runs `callsync-worker backfill <args>` with `env`; returns the exit
/// code, stdout and stderr.
async fn backfill(env: &Env, args: &[&str]) -> (i32, String, String) {
    let output = worker_command(env)
        .arg("backfill")
        .args(args)
        .output()
        .await
        .expect("the CLI runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_dry_run_counts_without_queuing_and_backfill_queues_and_sums_up() {
    let source = Source::Bland;
    let (mut app, sim, calls) = rig(source, 1, "backfill", 30).await;
    for call in &calls[..10] {
        deliver(&app, source, call).await;
    }
    assert_eq!(app.settle().await.call_markers().len(), 10);
    app.stop_worker(0).await;
    let env = reconciling(&app, &sim, source, 7, "1h");

    let (code, stdout, stderr) =
        backfill(&env, &["--source", "bland", "--since", "3h", "--dry-run"]).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("dry run: nothing is queued"), "{stdout}");
    assert!(
        stdout.contains("listed 30, known 10, to queue 20, unfinished 0, unreadable 0"),
        "{stdout}"
    );
    assert_eq!(
        app.take_queued_call_ids().await,
        Vec::<String>::new(),
        "a dry run queues nothing"
    );
    assert_eq!(sim.answered(source, "get"), 0, "a dry run fetches no call");

    let (code, stdout, stderr) = backfill(&env, &["--source", "bland", "--since", "3h"]).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("listed 30, known 10, queued 20, unfinished 0, unreadable 0"),
        "{stdout}"
    );
    let lost: BTreeSet<String> = calls[10..].iter().map(|c| c.id.clone()).collect();
    let queued: BTreeSet<String> = app.take_queued_until(&lost).await;
    assert_eq!(
        queued, lost,
        "exactly the calls without a webhook are queued"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_from_which_the_window_leaves_calls_out_queues_only_the_window() {
    let source = Source::Vapi;
    let app = app(0).await;
    let sim = PlatformSim::start().await;
    let recent = SimCall::analysed(
        "window-recent",
        "+31612000001",
        Duration::from_secs(30 * 60),
    );
    let old = SimCall::analysed("window-old", "+31612000002", Duration::from_secs(5 * 3600));
    sim.add(source, recent.clone());
    sim.add(source, old);
    let env = reconciling(&app, &sim, source, 100, "1h");
    let (code, stdout, stderr) = backfill(&env, &["--source", "vapi", "--since", "2h"]).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("listed 1, known 0, queued 1"), "{stdout}");
    let expected = BTreeSet::from([recent.id.clone()]);
    assert_eq!(app.take_queued_until(&expected).await, expected);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_refuses_a_source_without_a_list_api_a_missing_key_and_a_wrong_one() {
    let app = app(0).await;
    let sim = PlatformSim::start().await;
    let env = reconciling(&app, &sim, Source::Vapi, 100, "1h");

    let (code, _, stderr) = backfill(&env, &["--source", "voicedock", "--since", "1h"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("documents no API to list past calls"),
        "{stderr}"
    );

    let (code, _, stderr) = backfill(&env, &["--source", "retell", "--since", "1h"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("CALLSYNC_RETELL_API_KEY"), "{stderr}");

    let wrong = env.clone().with("CALLSYNC_VAPI_API_KEY", "not-the-key");
    let (code, _, stderr) = backfill(&wrong, &["--source", "vapi", "--since", "1h"]).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("refused the API key (401): check CALLSYNC_VAPI_API_KEY"),
        "{stderr}"
    );
    assert_eq!(app.take_queued_call_ids().await, Vec::<String>::new());
    app.shutdown().await;
}

/// The alert's inputs: every replica reports when any replica last
/// finished a round, and how often rounds are due.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_reports_the_last_successful_round_and_the_interval() {
    let source = Source::Retell;
    let mut app = app(0).await;
    let sim = PlatformSim::start().await;
    sim.add(
        source,
        SimCall::analysed("metric-1", "+31612000003", Duration::from_secs(1800)),
    );
    let env = reconciling(&app, &sim, source, 100, "1s");
    let a = app.add_worker_process_with(env.clone()).await;
    let b = app.add_worker_process_with(env).await;
    let started = OffsetDateTime::now_utc();
    let row = round_done(&app, source, started).await;
    let at = row.last_success_at.unwrap().unix_timestamp() as f64;
    for worker in [a, b] {
        let metrics = eventually(
            Duration::from_secs(20),
            "the last successful round in the metrics",
            || app.worker_metrics(worker),
            |m| {
                prometheus::value(
                    m,
                    "callsync_reconcile_last_success_timestamp_seconds",
                    &[("source", "retell")],
                ) >= at
            },
        )
        .await;
        assert_eq!(
            prometheus::value(
                &metrics,
                "callsync_reconcile_interval_seconds",
                &[("source", "retell")]
            ),
            1.0
        );
    }
    app.shutdown().await;
}

/// A refused API key fails every round with a reason naming the variable,
/// and the stall alert's input still moves: before any round succeeded,
/// the last success reported is when the worker started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_api_key_fails_the_round_naming_the_variable_and_the_stall_alert_can_fire() {
    let source = Source::Vapi;
    let (mut app, sim, _calls) = rig(source, 0, "refused", 3).await;
    let env = reconciling(&app, &sim, source, 100, "1h").with("CALLSYNC_VAPI_API_KEY", "revoked");
    let started = OffsetDateTime::now_utc().unix_timestamp() as f64;
    let worker = app.add_worker_process_with(env).await;
    let row = eventually(
        ROUND,
        "the round to fail",
        || round_row(&app, source),
        |row| row.as_ref().is_some_and(|r| r.last_error.is_some()),
    )
    .await
    .expect("a round row");
    assert_eq!(
        row.last_error.as_deref(),
        Some("Vapi refused the API key (401): check CALLSYNC_VAPI_API_KEY")
    );
    assert_eq!(row.last_success_at, None);
    let metrics = app.worker_metrics(worker).await;
    let reported = prometheus::value(
        &metrics,
        "callsync_reconcile_last_success_timestamp_seconds",
        &[("source", "vapi")],
    );
    assert!(
        (started - 5.0..=started + 30.0).contains(&reported),
        "reported {reported}, started {started}"
    );
    assert_eq!(
        prometheus::value(
            &metrics,
            "callsync_reconcile_rounds_total",
            &[("source", "vapi"), ("outcome", "failed")]
        ),
        1.0
    );
    assert_eq!(app.take_queued_call_ids().await, Vec::<String>::new());
    app.shutdown().await;
}
