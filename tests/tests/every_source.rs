//! The same end-to-end scenarios for every built-in source: a platform's
//! signed webhook goes through ingest and a worker into crm-sim (HubSpot).
//! Test names read `<scenario>::<source>`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use callsync_shared::Source;
use callsync_tests::app::TestApp;
use callsync_tests::harness::fixture;
use callsync_tests::sources::{configure_every_source, signed_headers, wrongly_signed_headers};
use reqwest::StatusCode;
use serde_json::Value;

/// One platform's examples, and what callsync must make of them.
struct Case {
    /// A final report that asks for a follow-up.
    final_report: &'static str,
    /// Its call id, as the platform wrote it.
    call_id: &'static str,
    /// A later delivery of the same call (Bland's second POST adds the
    /// corrected transcript; the others resend the same body).
    second_delivery: &'static str,
    /// An event on the same URL that is not a final report, and its type.
    other_event: Option<(&'static str, &'static str)>,
}

fn case(source: Source) -> Case {
    match source {
        Source::Voicedock => Case {
            final_report: "voicedock_follow_up.json",
            call_id: "0b6f1c3e-7a57-4f0e-9d38-3c1de1f0a2b4",
            second_delivery: "voicedock_follow_up.json",
            other_event: Some(("voicedock_004_status_update.json", "status-update")),
        },
        // The Post-Call format has one event type only.
        Source::Postcall => Case {
            final_report: "postcall_follow_up.json",
            call_id: "65a1c0ffee0ddba11c0ffee1",
            second_delivery: "postcall_follow_up.json",
            other_event: None,
        },
        Source::Vapi => Case {
            final_report: "vapi_end_of_call_report.json",
            call_id: "7b1c3a52-2f0e-4d8e-9a51-0c6f2d9e4b17",
            second_delivery: "vapi_end_of_call_report.json",
            other_event: Some(("vapi_status_update.json", "status-update")),
        },
        Source::Retell => Case {
            final_report: "retell_call_analyzed.json",
            call_id: "Jabr9TXYYJHfvl6Syypi88rdAHYHmcq6",
            second_delivery: "retell_call_analyzed.json",
            other_event: Some(("retell_call_ended.json", "call_ended")),
        },
        Source::Elevenlabs => Case {
            final_report: "elevenlabs_post_call_transcription.json",
            call_id: "conv_01jxk1wejhenk8x8tt9enzxw4a",
            second_delivery: "elevenlabs_post_call_transcription.json",
            other_event: Some(("elevenlabs_post_call_audio.json", "post_call_audio")),
        },
        Source::Bland => Case {
            final_report: "bland_post_call.json",
            call_id: "9d404c1b-6a23-4426-953a-a52c392ff8f1",
            second_delivery: "bland_post_call_corrected.json",
            other_event: Some(("bland_live_event.json", "queue")),
        },
    }
}

fn marker(source: Source) -> String {
    format!("callsync:{source}:{}", case(source).call_id)
}

/// Ingest and `workers` workers, every source's credentials configured.
async fn app(workers: usize) -> TestApp {
    configure_every_source(TestApp::builder().workers(workers))
        .start()
        .await
}

/// Posts `body` as `source` signs it; returns the status and the answer.
async fn deliver(app: &TestApp, source: Source, body: Vec<u8>) -> (StatusCode, Value) {
    let headers = signed_headers(source, &body);
    app.post(&format!("/webhooks/{source}"), &headers, body)
        .await
}

async fn a_signed_final_report_creates_the_contact_the_call_and_the_follow_up(source: Source) {
    let app = app(1).await;
    let (status, answer) = deliver(&app, source, fixture(case(source).final_report)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["accepted"], Value::Bool(true), "{answer}");

    let s = app.settle().await;
    assert_eq!(s.call_markers(), vec![marker(source)]);
    assert_eq!(
        s.task_markers(),
        vec![marker(source)],
        "the report asks for a follow-up"
    );
    assert_eq!(s.contacts.len(), 1, "{:#?}", s.contacts);
    let call = &s.calls[0];
    assert_eq!(
        call.associations,
        vec![s.contacts[0].id.clone()],
        "the call is on the caller's contact"
    );
    let platform = source.platform();
    assert!(
        call.properties
            .values()
            .any(|v| v.as_str().is_some_and(|t| t.contains(platform))),
        "the call record names {platform}: {:#?}",
        call.properties
    );
    assert_eq!(app.env.ledger().await.counts().await.unwrap().parked, 0);
    app.shutdown().await;
}

async fn an_event_that_is_not_a_final_report_is_answered_and_not_queued(source: Source) {
    let Some((name, event)) = case(source).other_event else {
        unreachable!("generated only for sources with other events")
    };
    // No worker: a queued message would stay in the queue to be found.
    let app = app(0).await;
    let (status, answer) = deliver(&app, source, fixture(name)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(
        answer,
        serde_json::json!({ "accepted": false, "ignored": event })
    );
    app.assert_nothing_queued().await;
    app.shutdown().await;
}

async fn a_bad_signature_is_refused_with_401_and_nothing_is_queued(source: Source) {
    let app = app(0).await;
    let body = fixture(case(source).final_report);

    let wrong = wrongly_signed_headers(source, &body);
    let path = format!("/webhooks/{source}");
    let (status, answer) = app.post(&path, &wrong, body.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    let error = answer["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("does not match"),
        "a JSON error naming the mismatch: {answer}"
    );

    // Signed correctly, then one byte of the body changed in transit
    // (Post-Call sends a token, which does not cover the body).
    if source != Source::Postcall {
        let headers = signed_headers(source, &body);
        let mut tampered = body;
        let last_brace = tampered.iter().rposition(|b| *b == b'}').unwrap();
        tampered.insert(last_brace, b' ');
        let (status, answer) = app.post(&path, &headers, tampered).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
        assert!(answer["error"].is_string(), "{answer}");
    }

    let (status, answer) = app.post(&path, &[], b"{}".to_vec()).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "no credentials at all: {answer}"
    );
    app.assert_nothing_queued().await;
    app.shutdown().await;
}

async fn the_same_call_delivered_twice_syncs_once(source: Source) {
    let app = app(1).await;
    let case = case(source);
    for name in [case.final_report, case.second_delivery] {
        let (status, answer) = deliver(&app, source, fixture(name)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{name}: {answer}");
    }
    let s = app.settle().await;
    assert_eq!(s.call_markers(), vec![marker(source)]);
    assert_eq!(s.task_markers(), vec![marker(source)]);
    assert_eq!(s.contacts.len(), 1);
    let counts = app.env.ledger().await.counts().await.unwrap();
    assert_eq!((counts.synced, counts.parked), (1, 0));
    app.shutdown().await;
}

macro_rules! for_sources {
    ($scenario:ident: $($source:ident => $variant:ident),* $(,)?) => {
        mod $scenario {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $source() {
                    super::$scenario(callsync_shared::Source::$variant).await
                }
            )*
        }
    };
    ($($scenario:ident),* $(,)?) => {$(
        for_sources!($scenario:
            voicedock => Voicedock,
            postcall => Postcall,
            vapi => Vapi,
            retell => Retell,
            elevenlabs => Elevenlabs,
            bland => Bland,
        );
    )*};
}

for_sources!(
    a_signed_final_report_creates_the_contact_the_call_and_the_follow_up,
    a_bad_signature_is_refused_with_401_and_nothing_is_queued,
    the_same_call_delivered_twice_syncs_once,
);

// Post-Call has no event but its final report.
for_sources!(an_event_that_is_not_a_final_report_is_answered_and_not_queued:
    voicedock => Voicedock,
    vapi => Vapi,
    retell => Retell,
    elevenlabs => Elevenlabs,
    bland => Bland,
);

/// The scenarios above cover exactly the registered sources.
#[test]
fn every_registered_source_has_a_case() {
    for source in Source::ALL {
        let case = case(source);
        assert!(!case.call_id.is_empty(), "{source}");
    }
    assert_eq!(
        Source::ALL.len(),
        6,
        "a new source needs its row in for_sources!"
    );
}

/// A client that sends its body too slowly is answered 408 with a clear
/// error once `CALLSYNC_REQUEST_TIMEOUT` has passed, and nothing is queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_sent_too_slowly_gets_a_408_and_nothing_is_queued() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = configure_every_source(TestApp::builder().workers(0))
        .set("CALLSYNC_REQUEST_TIMEOUT", "1s")
        .start()
        .await;
    let body = fixture("voicedock_follow_up.json");
    let headers = signed_headers(Source::Voicedock, &body);
    let addr = app.ingest.base_url.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut head = format!(
        "POST /webhooks/voicedock HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in &headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    // Half the body, then nothing: a sender that stalled.
    stream.write_all(&body[..body.len() / 2]).await.unwrap();

    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("ingest answers and closes within the timeout")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains(r#"{"error":"the body did not arrive within 1s (CALLSYNC_REQUEST_TIMEOUT); nothing was accepted"}"#),
        "{answer}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    app.assert_nothing_queued().await;
    app.shutdown().await;
}

/// Bland's delayed second POST, as its cookbook documents it (only
/// `call_id`, `corrected_transcript` and `citations`), has no caller to
/// sync: before, beside or after the final report it is answered as
/// ignored, never queued to be parked; repeating the call object, it is a
/// report of the same call, which syncs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blands_delayed_post_before_beside_or_after_the_report_syncs_the_call_once_and_parks_nothing()
 {
    let source = Source::Bland;
    let app = app(1).await;
    let delayed = fixture("bland_delayed_post.json");
    let ignored = serde_json::json!({"accepted": false, "ignored": "corrected-transcript"});

    let (status, answer) = deliver(&app, source, delayed.clone()).await;
    assert_eq!(
        (status, &answer),
        (StatusCode::ACCEPTED, &ignored),
        "before"
    );
    let (report, beside) = tokio::join!(
        deliver(&app, source, fixture(case(source).final_report)),
        deliver(&app, source, delayed.clone()),
    );
    assert_eq!(report.1["accepted"], Value::Bool(true), "{}", report.1);
    assert_eq!(beside, (StatusCode::ACCEPTED, ignored.clone()), "beside");
    let (status, answer) = deliver(&app, source, delayed).await;
    assert_eq!((status, &answer), (StatusCode::ACCEPTED, &ignored), "after");
    let (status, answer) = deliver(&app, source, fixture(case(source).second_delivery)).await;
    assert_eq!(answer["accepted"], Value::Bool(true), "{status}: {answer}");

    let s = app.settle().await;
    assert_eq!(s.call_markers(), vec![marker(source)]);
    let counts = app.env.ledger().await.counts().await.unwrap();
    assert_eq!((counts.synced, counts.parked), (1, 0));
    app.shutdown().await;
}

/// A body Bland posts while the call is still going (`completed: false`)
/// is answered as ignored and queued for nothing, so the report that
/// follows is the one the CRM gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bland_body_posted_during_the_call_is_ignored_and_the_final_report_is_the_record() {
    let source = Source::Bland;
    let app = app(1).await;
    let mut during: Value = serde_json::from_slice(&fixture("bland_post_call.json")).unwrap();
    during["completed"] = Value::Bool(false);
    during["summary"] = Value::String("Call in progress".to_owned());
    let (status, answer) = deliver(&app, source, serde_json::to_vec(&during).unwrap()).await;
    assert_eq!(
        (status, answer),
        (
            StatusCode::ACCEPTED,
            serde_json::json!({"accepted": false, "ignored": "call-not-completed"})
        )
    );
    let (_, answer) = deliver(&app, source, fixture(case(source).final_report)).await;
    assert_eq!(answer["accepted"], Value::Bool(true), "{answer}");
    let s = app.settle().await;
    assert_eq!(s.call_markers(), vec![marker(source)]);
    let body = serde_json::to_string(&s.calls[0].properties).unwrap();
    assert!(body.contains("The caller wants pricing"), "{body}");
    assert!(!body.contains("Call in progress"), "{body}");
    app.shutdown().await;
}

/// A Vapi HMAC credential set up with other options than the defaults
/// (SHA-512, base64, its own header names and prefix), described to ingest
/// with the `CALLSYNC_VAPI_*` variables: its webhooks are accepted, and the
/// default scheme's signature is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vapi_credential_with_other_options_is_verified_as_configured() {
    use base64::Engine as _;
    use hmac::{KeyInit, Mac};

    let app = configure_every_source(TestApp::builder().workers(0))
        .ingest_set("CALLSYNC_VAPI_HMAC_ALGORITHM", "sha512")
        .ingest_set("CALLSYNC_VAPI_SIGNATURE_ENCODING", "base64")
        .ingest_set("CALLSYNC_VAPI_SIGNATURE_HEADER", "x-vapi-signature")
        .ingest_set("CALLSYNC_VAPI_TIMESTAMP_HEADER", "x-vapi-timestamp")
        .ingest_set("CALLSYNC_VAPI_SIGNATURE_PREFIX", "v1=")
        .start()
        .await;
    let body = fixture(case(Source::Vapi).final_report);
    let ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).to_string();
    let mut mac =
        hmac::Hmac::<sha2::Sha512>::new_from_slice(callsync_tests::sources::VAPI_SECRET.as_bytes())
            .unwrap();
    mac.update(format!("{ms}.").as_bytes());
    mac.update(&body);
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let headers = [
        ("x-vapi-timestamp", ms),
        ("x-vapi-signature", format!("v1={signature}")),
        ("Content-Type", "application/json".to_owned()),
    ];
    let (status, answer) = app.post("/webhooks/vapi", &headers, body.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["accepted"], Value::Bool(true), "{answer}");

    let default = signed_headers(Source::Vapi, &body);
    let (status, answer) = app.post("/webhooks/vapi", &default, body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("x-vapi-timestamp"),
        "{answer}"
    );
    app.shutdown().await;
}

/// Ingest refuses to start with a Vapi credential option Vapi does not
/// document, naming the variable, instead of answering 401 to every call.
#[test]
fn ingest_refuses_to_start_with_a_vapi_option_vapi_does_not_document() {
    let env = callsync_shared::config::Env::from_pairs([
        ("CALLSYNC_VAPI_SECRET", "s"),
        ("CALLSYNC_VAPI_HMAC_ALGORITHM", "md5"),
    ]);
    let error = callsync_ingest::IngestConfig::from_env(&env).unwrap_err();
    assert_eq!(error.var, "CALLSYNC_VAPI_HMAC_ALGORITHM");
    assert!(error.message.contains("sha256, sha512 or sha1"), "{error}");
}
