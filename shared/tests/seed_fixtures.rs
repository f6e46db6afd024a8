//! Every seed example parses to the expected canonical report.

use std::time::Duration;

use callsync_shared::sources::{ParseContext, ParseError, Parsed, parse};
use callsync_shared::{CallReport, Region, Source, Transcript};
use time::macros::datetime;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

fn ctx() -> ParseContext {
    ParseContext {
        received_at: datetime!(2026-01-02 03:04:05 UTC),
        region: Region::US,
    }
}

fn report(source: Source, name: &str) -> CallReport {
    match parse(source, &fixture(name), &ctx()) {
        Ok(Parsed::Report(report)) => *report,
        other => panic!("{name}: expected a call report, got {other:?}"),
    }
}

#[test]
fn seed_000_snake_case_report_parses_to_the_expected_report() {
    let r = report(Source::Voicedock, "voicedock_000_end_of_call_report.json");
    assert_eq!(r.source, Source::Voicedock);
    assert_eq!(r.call_id.as_str(), "5c4d030f-43e3-4e65-899e-8148521e660f");
    let phone = r.caller.phone.as_ref().unwrap();
    assert_eq!(phone.e164.as_deref(), Some("+31612345678"));
    assert_eq!(r.caller.name, None);
    assert_eq!(r.ended_at, datetime!(2025-12-13 12:05:30 UTC));
    assert!(!r.ended_at_is_receipt_time);
    assert_eq!(r.duration, Some(Duration::from_secs(84)));
    assert_eq!(
        r.summary.as_deref(),
        Some(
            "Customer asked about opening hours and wanted to schedule an appointment for next week."
        )
    );
    assert_eq!(r.sentiment.as_deref(), Some("8/10"));
    assert_eq!(r.analysis["primary_topic"], "Schedule appointment");
    assert_eq!(r.analysis["conversation_quality"], "Good");
    assert_eq!(r.called_number.as_deref(), Some("+31850835037"));
    assert_eq!(r.crm_id, None);
    assert_eq!(r.recording_url, None);
    assert_eq!(r.transcript, None);
    assert!(!r.follow_up_needed);
    assert_eq!(
        r.marker(),
        "callsync:voicedock:5c4d030f-43e3-4e65-899e-8148521e660f"
    );
}

#[test]
fn seed_001_full_report_carries_crm_id_transcript_and_recording() {
    let r = report(
        Source::Voicedock,
        "voicedock_001_end_of_call_report_full.json",
    );
    assert_eq!(r.call_id.as_str(), "5c4d030f-43e3-4e65-899e-8148521e660f");
    assert_eq!(r.crm_id.as_deref(), Some("12345"));
    let Some(Transcript::Lines(lines)) = &r.transcript else {
        panic!("expected an inline transcript, got {:?}", r.transcript);
    };
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1].role, "user");
    assert_eq!(
        lines[1].content,
        "I would like to schedule an appointment for next week."
    );
    assert!(
        r.recording_url
            .as_deref()
            .unwrap()
            .starts_with("https://example.supabase.co/storage/v1/object/sign/recordings/")
    );
    assert_eq!(r.analysis["main_topic"], "Scheduling appointment");
    assert_eq!(r.duration, Some(Duration::from_secs(84)));
}

#[test]
fn seed_003_camel_case_report_parses_like_the_snake_case_one() {
    let r = report(
        Source::Voicedock,
        "voicedock_003_end_of_call_report_camel_case.json",
    );
    assert_eq!(r.call_id.as_str(), "5c4d030f-43e3-4e65-899e-8148521e660f");
    assert_eq!(r.duration, Some(Duration::from_secs(84)));
    assert_eq!(r.called_number.as_deref(), Some("+31850835037"));
    assert_eq!(
        r.summary.as_deref(),
        Some("Klant vroeg naar openingstijden en wilde een afspraak maken voor volgende week.")
    );
    // Dutch analysis keys are kept as they are.
    assert_eq!(r.analysis["hoofdonderwerp"], "Afspraak maken");
    assert_eq!(r.analysis["vraag_beantwoord"], true);
    assert_eq!(r.sentiment.as_deref(), Some("8/10"));
}

#[test]
fn seed_002_post_call_example_uses_the_receipt_time_and_keeps_caller_details() {
    let r = report(Source::Postcall, "postcall_002_example.json");
    assert_eq!(r.source, Source::Postcall);
    assert_eq!(r.call_id.as_str(), "693bff62619c51fac21acf50");
    let phone = r.caller.phone.as_ref().unwrap();
    assert_eq!(phone.e164.as_deref(), Some("+15551234567"));
    assert_eq!(phone.raw, "+1-555-123-4567");
    assert_eq!(r.caller.name.as_deref(), Some("John Smith"));
    assert_eq!(r.caller.email.as_deref(), Some("john.smith@example.com"));
    assert_eq!(r.ended_at, ctx().received_at);
    assert!(r.ended_at_is_receipt_time);
    assert_eq!(r.duration, None);
    assert_eq!(
        r.summary.as_deref(),
        Some("Customer called to schedule a product demo...")
    );
    assert_eq!(r.sentiment.as_deref(), Some("Positive"));
    assert_eq!(r.analysis["score"], 85);
    assert_eq!(r.analysis["callOutcome"], "Demo Scheduled");
    assert_eq!(
        r.transcript,
        Some(Transcript::Uri(
            "https://storage.example.com/transcripts/transcript_693bff62619c51fac21acf50.json"
                .to_owned()
        ))
    );
    assert!(
        r.recording_url
            .as_deref()
            .unwrap()
            .ends_with("call_recording.ogg")
    );
    // Caller details callsync does not map are kept, not dropped.
    assert_eq!(r.extra["callerDetails"]["city"], "New York");
    assert_eq!(
        r.extra["callerDetails"]["scheduledTime"],
        "2025-01-20T10:00:00Z"
    );
    assert!(!r.follow_up_needed);
}

#[test]
fn seed_002_curl_test_payload_parses_without_analysis() {
    let r = report(Source::Postcall, "postcall_002_curl_test.json");
    assert_eq!(r.call_id.as_str(), "test-call-123");
    assert_eq!(r.caller.name.as_deref(), Some("Test User"));
    assert_eq!(
        r.caller.phone.unwrap().e164.as_deref(),
        Some("+15550000000")
    );
    assert_eq!(r.summary, None);
    assert!(r.analysis.is_empty());
}

#[test]
fn seed_004_status_update_is_recognised_as_not_final() {
    let parsed = parse(
        Source::Voicedock,
        &fixture("voicedock_004_status_update.json"),
        &ctx(),
    );
    assert_eq!(
        parsed,
        Ok(Parsed::Ignored {
            event: "status-update".to_owned()
        })
    );
}

#[test]
fn seed_004_status_update_as_documented_is_not_json() {
    // The documentation shows `{ ... }` placeholders; such a body is refused as not JSON.
    let parsed = parse(
        Source::Voicedock,
        &fixture("voicedock_004_status_update_as_documented.txt"),
        &ctx(),
    );
    assert!(matches!(parsed, Err(ParseError::NotJson(_))), "{parsed:?}");
}

#[test]
fn follow_up_flags_are_read_in_both_spellings() {
    let vd = report(Source::Voicedock, "voicedock_follow_up.json");
    assert!(vd.follow_up_needed);
    assert_eq!(vd.sentiment.as_deref(), Some("3/10"));
    let pc = report(Source::Postcall, "postcall_follow_up.json");
    assert!(pc.follow_up_needed);
}

#[test]
fn a_national_number_is_normalised_with_the_configured_region() {
    let ctx = ParseContext {
        region: "NL".parse().unwrap(),
        ..ctx()
    };
    let Ok(Parsed::Report(r)) = parse(Source::Postcall, &fixture("postcall_follow_up.json"), &ctx)
    else {
        panic!("expected a report");
    };
    assert_eq!(
        r.caller.phone.unwrap().e164.as_deref(),
        Some("+31201234567")
    );
}

#[test]
fn unknown_fields_never_fail_a_report() {
    let body = br#"{"message":{"type":"end-of-call-report","call":{"id":"x1"},
        "customer":{"number":12345},"summary":{"text":"nested"},"durationSeconds":"12.5",
        "analysis":{"follow_up_needed":"yes","brand_new":{"nested":[1,2]}},
        "surprise":"kept"}}"#;
    let Ok(Parsed::Report(r)) = parse(Source::Voicedock, body, &ctx()) else {
        panic!("expected a report");
    };
    assert_eq!(r.summary, None, "a mistyped summary is ignored, not fatal");
    assert_eq!(r.duration, Some(Duration::from_millis(12_500)));
    assert!(r.follow_up_needed);
    assert_eq!(r.analysis["brand_new"]["nested"][1], 2);
    assert_eq!(r.extra["surprise"], "kept");
    assert_eq!(r.ended_at, ctx().received_at, "no timestamp: receipt time");
    assert!(r.ended_at_is_receipt_time);
}

#[test]
fn an_unnormalisable_phone_number_is_kept_raw_and_flagged() {
    let body = br#"{"callId":"p1","callerDetails":{"phoneNumber":"ask reception"}}"#;
    let Ok(Parsed::Report(r)) = parse(Source::Postcall, body, &ctx()) else {
        panic!("expected a report");
    };
    let phone = r.caller.phone.unwrap();
    assert!(phone.is_unnormalised());
    assert_eq!(phone.raw, "ask reception");
}

#[test]
fn a_body_without_a_call_id_is_refused_naming_the_expected_path() {
    let vd = parse(
        Source::Voicedock,
        br#"{"message":{"type":"end-of-call-report","call":{}}}"#,
        &ctx(),
    );
    assert_eq!(
        vd.unwrap_err().to_string(),
        "voicedock payload has no call id (expected a non-empty string at message.call.id)"
    );
    let pc = parse(Source::Postcall, br#"{"callId":"   "}"#, &ctx());
    assert!(matches!(pc, Err(ParseError::MissingCallId { .. })));
    let no_envelope = parse(Source::Voicedock, br#"{"callId":"x"}"#, &ctx());
    assert!(matches!(
        no_envelope,
        Err(ParseError::MissingEnvelope { .. })
    ));
    let array = parse(Source::Postcall, b"[1]", &ctx());
    assert_eq!(array, Err(ParseError::NotAnObject));
}

#[test]
fn a_body_that_is_not_json_is_a_syntax_error() {
    let err = parse(Source::Postcall, b"callId=1", &ctx()).unwrap_err();
    assert!(err.is_syntax());
    let err = parse(Source::Postcall, b"{}", &ctx()).unwrap_err();
    assert!(!err.is_syntax());
}

#[test]
fn inspecting_a_body_agrees_with_parsing_it() {
    use callsync_shared::sources::{Envelope, inspect};
    let cases: Vec<(Source, Vec<u8>)> = vec![
        (
            Source::Voicedock,
            fixture("voicedock_000_end_of_call_report.json"),
        ),
        (
            Source::Voicedock,
            fixture("voicedock_001_end_of_call_report_full.json"),
        ),
        (
            Source::Voicedock,
            fixture("voicedock_003_end_of_call_report_camel_case.json"),
        ),
        (
            Source::Voicedock,
            fixture("voicedock_004_status_update.json"),
        ),
        (
            Source::Voicedock,
            fixture("voicedock_004_status_update_as_documented.txt"),
        ),
        (Source::Postcall, fixture("postcall_002_example.json")),
        (Source::Postcall, b"{\"callId\":\"\"}".to_vec()),
        (Source::Voicedock, b"{\"callId\":\"x\"}".to_vec()),
        (Source::Postcall, b"[]".to_vec()),
    ];
    for (source, body) in cases {
        let parsed = parse(source, &body, &ctx());
        match (inspect(source, &body), parsed) {
            (Ok(Envelope::Final(id)), Ok(Parsed::Report(report))) => assert_eq!(id, report.call_id),
            (Ok(Envelope::Ignored(a)), Ok(Parsed::Ignored { event: b })) => assert_eq!(a, b),
            (Err(a), Err(b)) => assert_eq!(a, b),
            (inspected, parsed) => panic!("inspect {inspected:?} but parse {parsed:?}"),
        }
    }
}
