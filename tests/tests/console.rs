//! The operator console (`callsync-worker console`), page by page and action
//! by action, against real RabbitMQ and PostgreSQL with crm-sim as the CRM:
//! nothing is served without a token, every change needs its session's
//! CSRF token, a parked call found by its number typed another way is
//! replayed and then synced (in the ledger and in the CRM), a purge removes
//! one parked call, a replay of one reason replays all its calls, the
//! overview says why the workers are paused and shows the CRM budget in
//! use and its 429s from Prometheus, and no page shows a secret or the
//! call's summary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::response::IntoResponse;
use callsync_tests::app::TestApp;
use callsync_tests::console::{CONSOLE_TOKEN, ConsoleUnderTest, Page};
use callsync_tests::harness::{
    SEED_000_CALL_ID, SEED_000_MARKER, WAIT, voicedock_marker, voicedock_report, worker_command,
};
use callsync_tests::sim::Fault;
use callsync_tests::wait::eventually;
use reqwest::StatusCode;

/// A default app whose CRM refused seed 000's call record with `status`,
/// settled with the call parked; and the message id ingest gave the report.
async fn app_with_seed_000_parked(status: u16) -> (TestApp, String) {
    let app = TestApp::spawn().await;
    app.env.sim.inject("create_call", Fault::Status(status), 1);
    let answer = app
        .post_fixture("voicedock_000_end_of_call_report.json")
        .await;
    let s = app.settle().await;
    assert_eq!(s.call_markers(), Vec::<String>::new());
    assert_eq!(parked_call_ids(&app).await, [SEED_000_CALL_ID]);
    (app, answer["id"].as_str().unwrap().to_owned())
}

async fn parked_call_ids(app: &TestApp) -> Vec<String> {
    app.parked().await.into_iter().map(|p| p.call_id).collect()
}

/// A connection pool on the app's ledger.
async fn ledger(app: &TestApp) -> sqlx::PgPool {
    sqlx::PgPool::connect(&app.env.database_url)
        .await
        .expect("connect to the app's ledger")
}

fn story_path(call_id: &str) -> String {
    format!("/calls/voicedock/{call_id}")
}

/// Asserts a page answered 200 and returns it.
fn ok(page: Page, what: &str) -> Page {
    assert_eq!(page.status, StatusCode::OK, "{what}: {}", page.body);
    page
}

/// No page may show a credential, the broker's password or what was said
/// on the call (seed 000's summary).
fn assert_shows_no_secret(app: &TestApp, page: &Page) {
    for secret in [
        CONSOLE_TOKEN,
        app.env.sim.token().as_str(),
        "guest:guest",
        "Customer asked about opening hours",
    ] {
        assert!(
            !page.body.contains(secret),
            "a page shows {secret:?}: {}",
            page.body
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_served_without_a_token_and_a_login_sets_a_strict_cookie_without_it() {
    let app = TestApp::spawn().await;
    let console = ConsoleUnderTest::start(app.worker_env()).await;

    for path in [
        "/",
        "/calls?phone=123",
        "/parked",
        &story_path(SEED_000_CALL_ID),
    ] {
        let page = console.get(path, None).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}: {}", page.body);
        let to = page.location.unwrap();
        assert!(to.starts_with("/login?next="), "{path} → {to}");
        assert!(page.body.is_empty(), "{path} shows nothing: {}", page.body);
    }
    for path in [
        "/parked/replay",
        "/parked/replay-reason",
        "/parked/purge",
        "/logout",
    ] {
        let page = console
            .post(path, None, &[("id", "x"), ("csrf", "x")])
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(page.location.as_deref(), Some("/login"), "{path}");
    }
    let forged = console
        .get("/", Some("callsync_console=abc.99999999999.00"))
        .await;
    assert_eq!(forged.status, StatusCode::SEE_OTHER, "{}", forged.body);

    let wrong = console.get_bearer("/", "not-the-console-token-0123").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(
        wrong.body.contains("not one of the console's tokens"),
        "{}",
        wrong.body
    );
    let right = ok(console.get_bearer("/", CONSOLE_TOKEN).await, "bearer");
    assert!(right.body.contains("<h1>Overview</h1>"), "{}", right.body);

    let form = ok(console.get("/login?next=/parked", None).await, "login form");
    assert!(
        form.body.contains(r#"<label for="token">"#),
        "{}",
        form.body
    );
    assert!(form.body.contains(r#"value="/parked""#), "{}", form.body);
    let refused = console
        .post(
            "/login",
            None,
            &[("token", "console-token-guess-0000000000")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.set_cookie, None);
    assert!(refused.body.contains("not one of the console's tokens"));
    let off_site = console
        .post(
            "/login",
            None,
            &[("token", CONSOLE_TOKEN), ("next", "//evil.example/")],
        )
        .await;
    assert_eq!(off_site.location.as_deref(), Some("/"));

    let login = console
        .post(
            "/login",
            None,
            &[("token", CONSOLE_TOKEN), ("next", "/parked")],
        )
        .await;
    assert_eq!(login.status, StatusCode::SEE_OTHER);
    assert_eq!(login.location.as_deref(), Some("/parked"));
    let set = login.set_cookie.unwrap();
    for flag in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(flag), "{set} lacks {flag}");
    }
    assert!(
        !set.contains(CONSOLE_TOKEN),
        "the cookie holds the token: {set}"
    );
    let cookie = set.split(';').next().unwrap().to_owned();
    let overview = ok(console.get("/", Some(&cookie)).await, "overview");
    assert_shows_no_secret(&app, &overview);

    // Signing out needs the CSRF token too, then the cookie is cleared.
    let no_csrf = console.post("/logout", Some(&cookie), &[]).await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);
    let out = console
        .post(
            "/logout",
            Some(&cookie),
            &[("csrf", &ConsoleUnderTest::csrf(&overview))],
        )
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.set_cookie.unwrap().contains("Max-Age=0"));

    // The probes answer without a credential and say nothing of the calls.
    assert_eq!(
        ok(console.get("/readyz", None).await, "readyz").body,
        "ready"
    );
    assert_eq!(
        ok(console.get("/healthz", None).await, "healthz").body,
        "ok"
    );
    let css = ok(console.get("/console.css", None).await, "style sheet");
    assert!(css.body.contains("body{"));
    let missing = console.get("/nosuch", Some(&cookie)).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    console.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_call_found_by_its_number_typed_another_way_is_replayed_and_then_synced() {
    let (app, message_id) = app_with_seed_000_parked(400).await;
    let console = ConsoleUnderTest::start(app.worker_env()).await;
    let cookie = console.login().await;
    let reason = "call_log: CRM rejected the request (400)";

    // The caller was +31612345678; typed with spaces, it is found.
    let search = ok(
        console
            .get("/calls?phone=%2B31+6+12+34+56+78", Some(&cookie))
            .await,
        "search by number",
    );
    assert!(search.body.contains(SEED_000_CALL_ID), "{}", search.body);
    assert!(search.body.contains("+31612345678"), "{}", search.body);
    let other = ok(
        console
            .get("/calls?phone=%2B1+415+555+0100", Some(&cookie))
            .await,
        "search by another number",
    );
    assert!(!other.body.contains(SEED_000_CALL_ID));
    assert!(other.body.contains("No call matches"));
    let by_status = ok(
        console
            .get("/calls?status=parked&source=voicedock", Some(&cookie))
            .await,
        "search by status",
    );
    assert!(by_status.body.contains(SEED_000_CALL_ID));
    // A call id's beginning finds it; another beginning does not.
    let by_id = ok(
        console
            .get(
                &format!("/calls?call_id={}", &SEED_000_CALL_ID[..8]),
                Some(&cookie),
            )
            .await,
        "search by the beginning of a call id",
    );
    assert!(by_id.body.contains(SEED_000_CALL_ID), "{}", by_id.body);
    let other_id = ok(
        console.get("/calls?call_id=5c4d030e", Some(&cookie)).await,
        "search by another call id",
    );
    assert!(!other_id.body.contains(SEED_000_CALL_ID));
    // The parked call never named its contact as synced, but its contact
    // step did: searching by that contact finds it.
    let contact: String = sqlx::query_scalar(
        "SELECT crm_object_id FROM call_steps WHERE call_id = $1 AND step = 'contact'",
    )
    .bind(SEED_000_CALL_ID)
    .fetch_one(&ledger(&app).await)
    .await
    .expect("the parked call's contact step");
    let by_contact = ok(
        console
            .get(&format!("/calls?contact={contact}"), Some(&cookie))
            .await,
        "search by contact",
    );
    assert!(
        by_contact.body.contains(SEED_000_CALL_ID),
        "{}",
        by_contact.body
    );
    let no_contact = ok(
        console
            .get("/calls?contact=no-such-contact", Some(&cookie))
            .await,
        "search by another contact",
    );
    assert!(!no_contact.body.contains(SEED_000_CALL_ID));
    let bad = console.get("/calls?status=lost", Some(&cookie)).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let bad = console.get("/calls?from=friday", Some(&cookie)).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    for path in [
        "/calls?page=last",
        "/parked/confirm",
        "/parked/confirm?action=delete",
    ] {
        let bad = console.get(path, Some(&cookie)).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(
            bad.body.contains("<h1>Cannot read the request</h1>"),
            "{path}: {}",
            bad.body
        );
    }

    let parked = ok(console.get("/parked", Some(&cookie)).await, "parked");
    assert!(parked.body.contains(reason), "{}", parked.body);
    assert!(parked.body.contains(SEED_000_CALL_ID));
    assert_shows_no_secret(&app, &parked);

    let story = ok(
        console
            .get(&story_path(SEED_000_CALL_ID), Some(&cookie))
            .await,
        "story",
    );
    assert!(story.body.contains(reason), "{}", story.body);
    assert!(story.body.contains(&message_id), "{}", story.body);
    assert!(
        story
            .body
            .contains("https://app.hubspot.com/contacts/4242/record/0-1/"),
        "the contact step links to HubSpot: {}",
        story.body
    );
    assert!(story.body.contains("phone:+31612345678"), "{}", story.body);
    // How it came, as its first claim recorded it from the message.
    for shown in [
        "by webhook, through ingest",
        "Received by ingest",
        "a timestamped HMAC-SHA256 signature (CALLSYNC_VOICEDOCK_SECRET)",
    ] {
        assert!(story.body.contains(shown), "{shown}: {}", story.body);
    }
    assert_shows_no_secret(&app, &story);

    let confirm = ok(
        console
            .get(
                &format!("/parked/confirm?action=replay&id={message_id}"),
                Some(&cookie),
            )
            .await,
        "confirmation",
    );
    let csrf = ConsoleUnderTest::csrf(&confirm);

    // Without the CSRF token, or with another session's, nothing happens.
    let refused = console
        .post("/parked/replay", Some(&cookie), &[("id", &message_id)])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(refused.body.contains("Nothing was changed"));
    let other_session = console.login().await;
    let refused = console
        .post(
            "/parked/replay",
            Some(&other_session),
            &[("id", &message_id), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(parked_call_ids(&app).await, [SEED_000_CALL_ID]);
    assert!(app.snapshot().call_markers().is_empty());

    let replayed = ok(
        console
            .post(
                "/parked/replay",
                Some(&cookie),
                &[("id", &message_id), ("csrf", &csrf)],
            )
            .await,
        "replay",
    );
    assert!(
        replayed.body.contains(r#"<span class="ok">synced</span>"#),
        "{}",
        replayed.body
    );
    let s = app.settle().await;
    assert_eq!(s.call_markers(), [SEED_000_MARKER]);
    app.assert_ledger(1, 0).await;
    assert!(parked_call_ids(&app).await.is_empty());

    let story = ok(
        console
            .get(&story_path(SEED_000_CALL_ID), Some(&cookie))
            .await,
        "story after the replay",
    );
    assert!(story.body.contains(r#"<span class="ok">synced</span>"#));
    assert!(story.body.contains("call_log"));
    let gone = console
        .get(
            &format!("/parked/confirm?action=replay&id={message_id}"),
            Some(&cookie),
        )
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    console.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_a_reason_replays_each_of_its_calls_and_a_purge_removes_one() {
    let app = TestApp::spawn().await;
    app.env.sim.inject("create_call", Fault::Status(400), 3);
    let ids = ["console-reason-1", "console-reason-2", "console-purged"];
    let mut message_ids = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let answer = app
            .post_voicedock(voicedock_report(id, &format!("+3161234000{i}"), false))
            .await;
        message_ids.push(answer["id"].as_str().unwrap().to_owned());
        app.settle().await;
    }
    let mut parked = parked_call_ids(&app).await;
    parked.sort();
    assert_eq!(
        parked,
        ["console-purged", "console-reason-1", "console-reason-2"]
    );
    let console = ConsoleUnderTest::start(app.worker_env()).await;
    let cookie = console.login().await;

    let confirm = ok(
        console
            .get(
                &format!("/parked/confirm?action=purge&id={}", message_ids[2]),
                Some(&cookie),
            )
            .await,
        "purge confirmation",
    );
    assert!(confirm.body.contains("console-purged"));
    let csrf = ConsoleUnderTest::csrf(&confirm);
    let refused = console
        .post(
            "/parked/purge",
            Some(&cookie),
            &[("id", &message_ids[2]), ("csrf", "0")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(parked_call_ids(&app).await.len(), 3);
    let purged = ok(
        console
            .post(
                "/parked/purge",
                Some(&cookie),
                &[("id", &message_ids[2]), ("csrf", &csrf)],
            )
            .await,
        "purge",
    );
    assert!(
        purged.body.contains("Purged 1 parked message(s)"),
        "{}",
        purged.body
    );
    let mut parked = parked_call_ids(&app).await;
    parked.sort();
    assert_eq!(parked, ["console-reason-1", "console-reason-2"]);

    let reasons: Vec<String> = app.parked().await.into_iter().map(|p| p.reason).collect();
    assert_eq!(reasons[0], reasons[1], "one reason for both");
    let reason = reasons[0].as_str();
    let confirm = ok(
        console
            .get(
                &format!(
                    "/parked/confirm?action=replay-reason&reason={}",
                    urlencode(reason)
                ),
                Some(&cookie),
            )
            .await,
        "replay-reason confirmation",
    );
    assert!(
        confirm.body.contains("Replay 2 call(s)"),
        "{}",
        confirm.body
    );
    let refused = console
        .post(
            "/parked/replay-reason",
            Some(&cookie),
            &[("reason", reason)],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let replayed = ok(
        console
            .post(
                "/parked/replay-reason",
                Some(&cookie),
                &[
                    ("reason", reason),
                    ("csrf", &ConsoleUnderTest::csrf(&confirm)),
                ],
            )
            .await,
        "replay a reason",
    );
    assert_eq!(
        replayed
            .body
            .matches(r#"<span class="ok">synced</span>"#)
            .count(),
        2,
        "{}",
        replayed.body
    );
    let s = app.settle().await;
    assert_eq!(
        s.call_markers(),
        [
            voicedock_marker("console-reason-1"),
            voicedock_marker("console-reason-2")
        ]
    );
    assert!(parked_call_ids(&app).await.is_empty());
    // The purged call never reached the CRM; the ledger still says parked.
    let story = ok(
        console
            .get(&story_path("console-purged"), Some(&cookie))
            .await,
        "story",
    );
    assert!(
        story.body.contains(r#"<span class="bad">parked</span>"#),
        "{}",
        story.body
    );
    console.stop().await;
    app.shutdown().await;
}

fn urlencode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_says_why_the_workers_are_paused_as_readyz_does() {
    let app = TestApp::spawn().await;
    let console = ConsoleUnderTest::start(app.worker_env()).await;
    let cookie = console.login().await;
    let calm = ok(console.get("/", Some(&cookie)).await, "overview");
    assert!(calm.body.contains("none paused"), "{}", calm.body);
    assert!(calm.body.contains(&app.env.topology.parking_queue()));
    assert!(calm.body.contains("http://grafana.test:3000"));

    app.env.sim.set_token("rotated-in-the-crm");
    app.post_voicedock(voicedock_report("console-paused", "+31612340001", false))
        .await;
    let detail = app.wait_for_pause(0, "credential").await;
    let paused = eventually(
        WAIT,
        "the overview shows the pause",
        || async { console.get("/", Some(&cookie)).await.body },
        |body| body.contains("paused; calls wait in the queue"),
    )
    .await;
    assert!(paused.contains("credential"), "{paused}");
    let shown = maud_escape(&detail);
    assert!(
        paused.contains(&shown),
        "the /readyz detail {detail:?} in {paused}"
    );
    console.stop().await;
    app.shutdown().await;
}

/// What maud makes of text (the characters it escapes).
fn maud_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_refuses_to_start_without_a_token_in_one_line() {
    let app = TestApp::spawn().await;
    let output = worker_command(&app.worker_env())
        .arg("console")
        .output()
        .await
        .expect("the command runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(
            "callsync-worker: configuration error: CALLSYNC_CONSOLE_TOKEN: is required"
        ),
        "{stderr}"
    );
    app.shutdown().await;
}

/// A Prometheus HTTP API answering each instant query with the number
/// `answers` gives it, as Prometheus documents the answer; `None`: 500.
async fn prometheus(answers: fn(&str) -> Option<&'static str>) -> String {
    use axum::extract::Query;
    use std::collections::HashMap;
    let app = axum::Router::new().route(
        "/api/v1/query",
        axum::routing::get(move |Query(q): Query<HashMap<String, String>>| async move {
            let query = q.get("query").cloned().unwrap_or_default();
            match answers(&query) {
                Some(value) => axum::Json(serde_json::json!({
                    "status": "success",
                    "data": {"resultType": "vector",
                             "result": [{"metric": {}, "value": [1_800_000_000.0, value]}]}
                }))
                .into_response(),
                None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_shows_the_crm_budget_in_use_and_its_429s_from_prometheus() {
    let app = TestApp::spawn().await;
    let url = prometheus(|query| match query {
        "sum(rate(callsync_worker_crm_request_seconds_count[5m]))" => Some("5"),
        "sum(increase(callsync_worker_crm_rate_limited_total[1h]))" => Some("3"),
        "sum(increase(callsync_worker_crm_rate_limited_total[1d]))" => Some("17"),
        "sum(increase(callsync_worker_crm_throttled_seconds_count[1h]))" => Some("42"),
        _ => None,
    })
    .await;
    let env = app
        .worker_env()
        .with("CALLSYNC_CRM_RATE", "100/10s")
        .with("CALLSYNC_CONSOLE_PROMETHEUS_URL", &url);
    let console = ConsoleUnderTest::start(env).await;
    let cookie = console.login().await;
    let overview = ok(console.get("/", Some(&cookie)).await, "overview");
    for shown in ["5.00", "50 % of 100/10s", "3 / 17", ">42<"] {
        assert!(
            overview.body.contains(shown),
            "{shown} in {}",
            overview.body
        );
    }
    console.stop().await;

    // Prometheus refusing: the overview says so and shows the rest.
    let url = prometheus(|_| None).await;
    let console = ConsoleUnderTest::start(
        app.worker_env()
            .with("CALLSYNC_CONSOLE_PROMETHEUS_URL", &url),
    )
    .await;
    let cookie = console.login().await;
    let overview = ok(console.get("/", Some(&cookie)).await, "overview");
    assert!(
        overview.body.contains("Prometheus answered 500"),
        "{}",
        overview.body
    );
    assert!(overview.body.contains("none paused"));
    console.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_listed_newest_first_fifty_a_page_and_filtered_by_time() {
    let app = TestApp::spawn().await;
    let ledger = app.env.ledger().await;
    // 60 synced calls, one a minute, the newest a minute ago.
    sqlx::query(
        "INSERT INTO calls (source, call_id, status, attempts, first_seen_at, synced_at)
         SELECT 'vapi', 'paged-' || lpad(n::text, 2, '0'), 'synced', 1,
                now() - make_interval(mins => 61 - n), now() - make_interval(mins => 61 - n)
           FROM generate_series(1, 60) AS n",
    )
    .execute(ledger.pool())
    .await
    .unwrap();
    let console = ConsoleUnderTest::start(app.worker_env()).await;
    let cookie = console.login().await;

    let first = ok(
        console.get("/calls?source=vapi", Some(&cookie)).await,
        "page 0",
    );
    let newest = first.body.find("paged-60").expect("the newest call");
    let older = first.body.find("paged-59").expect("the next one");
    assert!(newest < older, "newest first");
    assert!(first.body.contains("paged-11") && !first.body.contains("paged-10<"));
    assert!(
        first.body.contains(r#"rel="next""#),
        "a link to older calls"
    );
    let second = ok(
        console
            .get("/calls?source=vapi&page=1", Some(&cookie))
            .await,
        "page 1",
    );
    assert_eq!(second.body.matches("/calls/vapi/paged-").count(), 10);
    assert!(second.body.contains("paged-01") && !second.body.contains(r#"rel="next""#));

    // The last 10 minutes hold the 9 calls first seen 1 to 9 minutes ago
    // (give or take the minute boundary), none older.
    let from = (time::OffsetDateTime::now_utc() - time::Duration::minutes(10))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let recent = ok(
        console
            .get(
                &format!(
                    "/calls?from={}",
                    form_urlencoded::byte_serialize(from.as_bytes()).collect::<String>()
                ),
                Some(&cookie),
            )
            .await,
        "from ten minutes ago",
    );
    let shown = recent.body.matches("/calls/vapi/paged-").count();
    assert!((9..=10).contains(&shown), "{shown} calls: {}", recent.body);
    assert!(!recent.body.contains("paged-40"));
    console.stop().await;
    app.shutdown().await;
}
