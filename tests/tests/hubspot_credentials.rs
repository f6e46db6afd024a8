//! The HubSpot credentials a customer can create today: a service key, or a
//! public app's OAuth (a refresh token the worker exchanges for 30-minute
//! access tokens), beside an existing legacy private app's token. Each
//! syncs calls, and `callsync-worker check` reads (or proves) each one's
//! scopes. crm-sim plays HubSpot's token endpoints and refuses what HubSpot
//! refuses: a wrong client secret, a spent or unknown refresh token, an
//! expired access token, and a non-HTTPS call recording URL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use callsync_shared::config::Env;
use callsync_tests::app::{AppBuilder, TestApp};
use callsync_tests::harness::{self, run_check, voicedock_marker, voicedock_report};
use callsync_tests::sim::hubspot::{
    Credential, OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET, OAUTH_REFRESH_TOKEN,
};
use callsync_tests::sim::{CrmSim, SimConfig};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

/// A worker configured with a service key instead of a private app token.
fn with_service_key(app: AppBuilder, key: &str) -> AppBuilder {
    // An empty value counts as unset: no private app token.
    app.set("CALLSYNC_HUBSPOT_TOKEN", "")
        .set("CALLSYNC_HUBSPOT_SERVICE_KEY", key)
}

/// A worker configured with a public app's OAuth client and refresh token.
fn public_app() -> AppBuilder {
    TestApp::builder()
        .crm("hubspot")
        .set("CALLSYNC_HUBSPOT_TOKEN", "")
        .set("CALLSYNC_HUBSPOT_CLIENT_ID", OAUTH_CLIENT_ID)
        .set("CALLSYNC_HUBSPOT_CLIENT_SECRET", OAUTH_CLIENT_SECRET)
        .set("CALLSYNC_HUBSPOT_REFRESH_TOKEN", OAUTH_REFRESH_TOKEN)
}

/// The lines `check` printed and whether it exited 0.
async fn check(env: &Env) -> (bool, Vec<String>) {
    run_check(env).await
}

/// The one line of `lines` about `requirement`.
fn line<'a>(lines: &'a [String], requirement: &str) -> &'a str {
    let found: Vec<&String> = lines
        .iter()
        .filter(|l| {
            l.chars()
                .skip(2)
                .collect::<String>()
                .starts_with(&format!("{requirement}:"))
        })
        .collect();
    assert_eq!(found.len(), 1, "one line about {requirement}: {lines:#?}");
    found[0]
}

async fn post_calls(app: &TestApp, tag: &str, n: usize) -> Vec<String> {
    let mut markers = Vec::new();
    for i in 0..n {
        let id = format!("hs-{tag}-{i}");
        app.post_voicedock(voicedock_report(&id, &format!("+3164000{i:04}"), false))
            .await;
        markers.push(voicedock_marker(&id));
    }
    markers
}

async fn stored_refresh_token(app: &TestApp) -> String {
    harness::stored_refresh_token(&app.env, "hubspot").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_key_syncs_calls_and_check_proves_each_scope_by_use() {
    // crm-sim accepts one bearer token: here it is the service key.
    let key = SimConfig::default().token;
    let builder = TestApp::builder().crm("hubspot").workers(1);
    let app = with_service_key(builder, &key).start().await;
    app.env.sim.set_hubspot_credential(Credential::ServiceKey);
    let markers = post_calls(&app, "key", 2).await;
    let s = app.settle().await;
    assert_eq!(s.call_markers(), sorted(markers));
    app.assert_ledger(2, 0).await;

    let (success, lines) = check(&app.worker_env()).await;
    assert!(success, "{lines:#?}");
    for scope in [
        "crm.objects.contacts.read",
        "crm.objects.contacts.write",
        "crm.schemas.contacts.write",
    ] {
        assert!(line(&lines, &format!("permission {scope}")).starts_with('✓'));
    }
    // The private-app endpoint, which does not describe a service key, is
    // not what proved them.
    assert_eq!(app.snapshot().requests_of("token_info"), 0);

    // A key without the write scopes: the probes that need them are refused.
    app.env
        .sim
        .grant_hubspot_scopes(&["crm.objects.contacts.read"]);
    let (success, lines) = check(&app.worker_env()).await;
    assert!(!success, "{lines:#?}");
    assert!(line(&lines, "permission crm.objects.contacts.read").starts_with('✓'));
    for scope in ["crm.objects.contacts.write", "crm.schemas.contacts.write"] {
        let missing = line(&lines, &format!("permission {scope}"));
        assert!(
            missing.starts_with('✗') && missing.contains("missing"),
            "{missing}"
        );
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_apps_tokens_are_renewed_by_two_replicas_and_a_restart_without_spending_one_twice()
{
    let mut app = public_app().workers(2).start().await;
    let mut markers = post_calls(&app, "first", 4).await;
    let s = app.settle().await;
    assert!(
        s.requests_of("oauth_token") >= 1,
        "{:?}",
        s.stats.by_operation
    );
    assert_eq!(
        stored_refresh_token(&app).await,
        app.env.sim.hubspot_refresh_token()
    );

    // Every access token expires (HubSpot's live 30 minutes); both replicas
    // renew, one after the other, each with the refresh token the other
    // left. A spent one would be refused and pause the worker.
    app.env.sim.expire_token();
    markers.extend(post_calls(&app, "expired", 6).await);
    let s = app.settle().await;
    assert_eq!(
        stored_refresh_token(&app).await,
        app.env.sim.hubspot_refresh_token()
    );
    assert_ne!(app.env.sim.hubspot_refresh_token(), OAUTH_REFRESH_TOKEN);
    let before_restart = s.requests_of("oauth_token");

    // A new worker still configured with the spent refresh token renews
    // with the stored one.
    app.stop_worker(0).await;
    app.stop_worker(1).await;
    app.env.sim.expire_token();
    app.add_worker().await;
    markers.extend(post_calls(&app, "restarted", 2).await);
    let s = app.settle().await;
    assert!(s.requests_of("oauth_token") > before_restart);
    assert_eq!(s.call_markers(), sorted(markers));
    assert!(app.parked().await.is_empty(), "no call parked or refused");
    app.assert_ledger(12, 0).await;

    // `check` reads the access token's scopes from HubSpot's OAuth
    // access-token endpoint.
    let (success, lines) = check(&app.worker_env()).await;
    assert!(success, "{lines:#?}");
    assert!(line(&lines, "permission crm.schemas.contacts.write").starts_with('✓'));
    assert!(app.snapshot().requests_of("access_token_info") >= 1);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_refresh_token_pauses_the_worker_and_the_call_waits_unparked() {
    let app = public_app()
        .set("CALLSYNC_HUBSPOT_REFRESH_TOKEN", "uninstalled-app-token")
        .workers(1)
        .start()
        .await;
    app.post_voicedock(voicedock_report("hs-refused", "+31640002222", false))
        .await;
    let detail = app.wait_for_pause(0, "credential").await;
    assert!(detail.contains("BAD_REFRESH_TOKEN"), "{detail}");
    assert!(app.parked().await.is_empty(), "nothing parked");
    assert!(app.snapshot().calls.is_empty());
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_client_secret_fails_checks_credential_line_naming_the_variables() {
    let app = public_app().workers(0).start().await;
    let env = app
        .worker_env()
        .with("CALLSYNC_HUBSPOT_CLIENT_SECRET", "not-the-secret");
    let (success, lines) = check(&env).await;
    assert!(!success, "{lines:#?}");
    let credential = line(&lines, "hubspot credential accepted");
    assert!(
        credential.starts_with('✗')
            && credential.contains("BAD_CLIENT_SECRET")
            && credential.contains("CALLSYNC_HUBSPOT_CLIENT_ID"),
        "{credential}"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_with_an_http_recording_url_is_recorded_with_the_url_in_its_body_only() {
    let app = TestApp::builder().crm("hubspot").workers(1).start().await;
    let report = |id: &str, url: &str| {
        serde_json::to_vec(&json!({ "message": {
            "type": "end-of-call-report", "timestamp": "2026-05-01T08:00:00Z",
            "call": { "id": id }, "customer": { "number": "+31640001111" },
            "summary": "Asked about pricing", "recordingUrl": url
        }}))
        .unwrap()
    };
    app.post_voicedock(report("plain-http", "http://recordings.example/plain.mp3"))
        .await;
    app.post_voicedock(report("secure", "https://recordings.example/secure.mp3"))
        .await;
    let s = app.settle().await;
    app.assert_ledger(2, 0).await;
    let call = |id: &str| {
        let marker = voicedock_marker(id);
        s.calls
            .iter()
            .find(|c| c.marker().as_deref() == Some(marker.as_str()))
            .unwrap_or_else(|| panic!("no call {id}: {:#?}", s.calls))
            .clone()
    };
    let plain = call("plain-http");
    assert_eq!(plain.prop("hs_call_recording_url"), None, "{plain:#?}");
    assert!(
        plain
            .prop("hs_call_body")
            .is_some_and(|b| b.contains("http://recordings.example/plain.mp3")),
        "{plain:#?}"
    );
    let secure = call("secure");
    assert_eq!(
        secure.prop("hs_call_recording_url"),
        Some("https://recordings.example/secure.mp3")
    );
    app.shutdown().await;
}

// crm-sim refuses what HubSpot refuses.

async fn sim() -> CrmSim {
    CrmSim::start(SocketAddr::from(([127, 0, 0, 1], 0)), SimConfig::default())
        .await
        .expect("crm-sim starts")
}

async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.expect("crm-sim answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn exchange(sim: &CrmSim, secret: &str, refresh: &str) -> (StatusCode, Value) {
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", OAUTH_CLIENT_ID),
        ("client_secret", secret),
        ("refresh_token", refresh),
    ];
    send(
        Client::new()
            .post(format!("{}/oauth/v1/token", sim.base_url()))
            .form(&form),
    )
    .await
}

#[tokio::test]
async fn hubspots_token_endpoint_refuses_a_wrong_secret_and_a_spent_or_unknown_refresh_token() {
    let sim = sim().await;
    let (status, body) = exchange(&sim, "wrong", OAUTH_REFRESH_TOKEN).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["status"], "BAD_CLIENT_SECRET");

    let (status, body) = exchange(&sim, OAUTH_CLIENT_SECRET, OAUTH_REFRESH_TOKEN).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["expires_in"], 1800);
    let next = body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(next, OAUTH_REFRESH_TOKEN);

    // The refresh token used is spent; an unknown one was never valid.
    for refused in [OAUTH_REFRESH_TOKEN, "never-issued"] {
        let (status, body) = exchange(&sim, OAUTH_CLIENT_SECRET, refused).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
        assert_eq!(body["status"], "BAD_REFRESH_TOKEN");
    }
    let (status, _) = exchange(&sim, OAUTH_CLIENT_SECRET, &next).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn an_expired_hubspot_access_token_is_refused_with_401() {
    let sim = sim().await;
    let (_, body) = exchange(&sim, OAUTH_CLIENT_SECRET, OAUTH_REFRESH_TOKEN).await;
    let issued = body["access_token"].as_str().unwrap().to_owned();
    let list = |token: &str| {
        Client::new()
            .get(format!(
                "{}/crm/v3/objects/contacts?limit=1",
                sim.base_url()
            ))
            .bearer_auth(token)
    };
    assert_eq!(send(list(&issued)).await.0, StatusCode::OK);
    sim.expire_token();
    let (status, body) = send(list(&issued)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["category"], "INVALID_AUTHENTICATION");
    // Its metadata is gone with it.
    let info = Client::new().get(format!(
        "{}/oauth/v1/access-tokens/{issued}",
        sim.base_url()
    ));
    assert_eq!(send(info).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_private_app_token_endpoint_does_not_describe_a_service_key() {
    let sim = sim().await;
    let info = || {
        Client::new()
            .post(format!(
                "{}/oauth/v2/private-apps/get/access-token-info",
                sim.base_url()
            ))
            .json(&json!({ "tokenKey": sim.token() }))
    };
    let (status, body) = send(info()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["scopes"].is_array());
    sim.set_hubspot_credential(Credential::ServiceKey);
    assert_eq!(send(info()).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn hubspot_refuses_a_call_whose_recording_url_is_not_https() {
    let sim = sim().await;
    let client = Client::new();
    let contact = send(
        client
            .post(format!("{}/crm/v3/objects/contacts", sim.base_url()))
            .bearer_auth(sim.token())
            .json(&json!({ "properties": { "phone": "+31640001111" } })),
    )
    .await
    .1["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let call = |url: &str| {
        client
            .post(format!("{}/crm/v3/objects/calls", sim.base_url()))
            .bearer_auth(sim.token())
            .json(&json!({
                "properties": { "hs_timestamp": "1777622400000", "hs_call_recording_url": url },
                "associations": [{ "to": { "id": contact }, "types": [{
                    "associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 194 }] }]
            }))
    };
    let (status, body) = send(call("http://recordings.example/r.mp3")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("hs_call_recording_url")
    );
    assert!(sim.snapshot().calls.is_empty(), "nothing stored");
    assert_eq!(
        send(call("https://recordings.example/r.mp3")).await.0,
        StatusCode::CREATED
    );
}

fn sorted(mut markers: Vec<String>) -> Vec<String> {
    markers.sort();
    markers
}
