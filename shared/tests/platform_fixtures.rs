//! Every platform's documented examples (final report, another event, an
//! outbound call, a web call) parse to the expected canonical report.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use callsync_shared::sources::{Envelope, ParseContext, Parsed, inspect, parse};
use callsync_shared::{CallReport, Direction, Outcome, Region, Source, Transcript};
use serde_json::json;
use time::macros::datetime;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

fn ctx() -> ParseContext {
    ParseContext {
        received_at: datetime!(2026-02-01 00:00:00 UTC),
        region: Region::US,
    }
}

fn report(source: Source, name: &str) -> CallReport {
    match parse(source, &fixture(name), &ctx()) {
        Ok(Parsed::Report(report)) => *report,
        other => panic!("{name}: expected a call report, got {other:?}"),
    }
}

fn ignored(source: Source, name: &str) -> String {
    let body = fixture(name);
    let Ok(Envelope::Ignored(event)) = inspect(source, &body) else {
        panic!("{name}: expected an ignored event");
    };
    assert_eq!(
        parse(source, &body, &ctx()),
        Ok(Parsed::Ignored {
            event: event.clone()
        })
    );
    event
}

fn phone(r: &CallReport) -> Option<&str> {
    r.caller.phone.as_ref().and_then(|p| p.e164.as_deref())
}

fn lines(r: &CallReport) -> Vec<(String, String)> {
    match &r.transcript {
        Some(Transcript::Lines(lines)) => lines
            .iter()
            .map(|l| (l.role.clone(), l.content.clone()))
            .collect(),
        other => panic!("expected transcript lines, got {other:?}"),
    }
}

#[test]
fn a_vapi_end_of_call_report_parses_to_the_expected_report() {
    let r = report(Source::Vapi, "vapi_end_of_call_report.json");
    assert_eq!(r.source, Source::Vapi);
    assert_eq!(r.call_id.as_str(), "7b1c3a52-2f0e-4d8e-9a51-0c6f2d9e4b17");
    assert_eq!(phone(&r), Some("+14155550132"));
    assert_eq!(r.caller.name.as_deref(), Some("Dana Whitfield"));
    assert_eq!(
        r.caller.email.as_deref(),
        Some("dana.whitfield@example.com")
    );
    assert_eq!(r.called_number.as_deref(), Some("+14155550100"));
    assert_eq!(r.ended_at, datetime!(2026-01-01 08:01:57.4 UTC));
    assert!(!r.ended_at_is_receipt_time);
    assert_eq!(r.duration, Some(Duration::from_secs_f64(117.4)));
    assert!(r.summary.as_deref().unwrap().starts_with("Dana asked why"));
    assert_eq!(r.sentiment.as_deref(), Some("negative"));
    assert_eq!(r.analysis["intent"], json!("billing_dispute"));
    assert!(r.follow_up_needed);
    assert_eq!(
        r.recording_url.as_deref(),
        Some("https://storage.vapi.ai/7b1c3a52-2f0e-4d8e-9a51-0c6f2d9e4b17-1767254517.wav")
    );
    let turns = lines(&r);
    assert_eq!(turns.len(), 4);
    assert_eq!(turns[2].0, "user");
    assert_eq!(r.crm_id, None, "metadata without crm_id");
    assert_eq!(r.ended_reason.as_deref(), Some("customer-ended-call"));
    assert!(!r.extra.contains_key("endedReason"), "mapped, so not extra");
}

#[test]
fn a_vapi_status_update_is_not_a_report() {
    assert_eq!(
        ignored(Source::Vapi, "vapi_status_update.json"),
        "status-update"
    );
}

#[test]
fn a_vapi_outbound_call_names_the_number_called_and_the_crm_hint() {
    let r = report(Source::Vapi, "vapi_outbound_call.json");
    assert_eq!(phone(&r), Some("+14155550177"));
    assert_eq!(r.called_number.as_deref(), Some("+14155550100"));
    assert_eq!(r.crm_id.as_deref(), Some("901"));
    assert_eq!(
        r.duration,
        Some(Duration::from_secs(12)),
        "endedAt - startedAt"
    );
    assert!(!r.follow_up_needed);
    assert_eq!(lines(&r)[0].0, "ai");
}

#[test]
fn a_vapi_web_call_has_no_number() {
    let r = report(Source::Vapi, "vapi_web_call.json");
    assert!(r.caller.phone.is_none() && r.caller.email.is_none() && r.crm_id.is_none());
    assert_eq!(r.ended_at, datetime!(2026-01-03 09:06:40 UTC));
}

#[test]
fn vapi_structured_outputs_are_read_into_the_analysis_by_name_and_set_the_follow_up_flag() {
    let r = report(Source::Vapi, "vapi_structured_outputs.json");
    assert!(r.follow_up_needed, "the output named follow_up_needed");
    assert_eq!(r.analysis["follow_up_needed"], json!(true));
    assert_eq!(
        r.analysis["appointment"],
        json!({"service": "cleaning", "preferredWeek": "2026-W03"})
    );
    // On a clash the Structured Output wins over analysis.structuredData…
    assert_eq!(r.analysis["intent"], json!("reschedule"));
    // …unless it has no result.
    assert_eq!(r.sentiment.as_deref(), Some("neutral"));
    assert_eq!(
        r.summary.as_deref(),
        Some("Sam wants to move his cleaning to next week and asked for a call back.")
    );
}

#[test]
fn a_vapi_recording_is_the_mono_combined_url_then_the_stereo_url_then_the_deprecated_field() {
    let r = report(Source::Vapi, "vapi_structured_outputs.json");
    assert_eq!(
        r.recording_url.as_deref(),
        Some("https://storage.vapi.ai/c4e1f0a2-6b3d-4f8e-9a7c-2d5b8e1f4a60-mono.wav")
    );
    let mut body: serde_json::Value =
        serde_json::from_slice(&fixture("vapi_structured_outputs.json")).unwrap();
    let artifact = &mut body["message"]["artifact"];
    artifact["recordingUrl"] = json!("https://storage.vapi.ai/deprecated.wav");
    artifact["recording"]["mono"]
        .as_object_mut()
        .unwrap()
        .remove("combinedUrl");
    let read = |body: &serde_json::Value| match parse(
        Source::Vapi,
        &serde_json::to_vec(body).unwrap(),
        &ctx(),
    ) {
        Ok(Parsed::Report(r)) => r.recording_url,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        read(&body).as_deref(),
        Some("https://storage.vapi.ai/c4e1f0a2-6b3d-4f8e-9a7c-2d5b8e1f4a60-stereo.wav")
    );
    body["message"]["artifact"]
        .as_object_mut()
        .unwrap()
        .remove("recording");
    assert_eq!(
        read(&body).as_deref(),
        Some("https://storage.vapi.ai/deprecated.wav")
    );
}

#[test]
fn a_retell_call_analyzed_event_parses_to_the_expected_report() {
    let r = report(Source::Retell, "retell_call_analyzed.json");
    assert_eq!(r.source, Source::Retell);
    assert_eq!(r.call_id.as_str(), "Jabr9TXYYJHfvl6Syypi88rdAHYHmcq6");
    assert_eq!(
        phone(&r),
        Some("+12137771234"),
        "from_number on an inbound call"
    );
    assert_eq!(r.called_number.as_deref(), Some("+12137770000"));
    assert_eq!(r.caller.name.as_deref(), Some("Jordan Alvarez"));
    assert_eq!(r.ended_at, datetime!(2026-01-01 10:01:55.736 UTC));
    assert_eq!(r.duration, Some(Duration::from_millis(115_736)));
    assert!(r.summary.as_deref().unwrap().starts_with("Jordan wants"));
    assert_eq!(r.sentiment.as_deref(), Some("Neutral"));
    assert_eq!(r.analysis["appointment_change"], json!("reschedule"));
    assert_eq!(r.analysis["call_successful"], json!(true));
    assert!(r.follow_up_needed);
    assert_eq!(r.crm_id.as_deref(), Some("5521"));
    assert!(
        r.recording_url
            .as_deref()
            .unwrap()
            .ends_with("recording.wav")
    );
    assert_eq!(lines(&r)[1].0, "user");
    assert_eq!(r.ended_reason.as_deref(), Some("user_hangup"));
    assert!(
        !r.extra.contains_key("disconnection_reason"),
        "mapped, so not extra"
    );
}

#[test]
fn a_retell_call_ended_event_is_not_the_final_report() {
    assert_eq!(
        ignored(Source::Retell, "retell_call_ended.json"),
        "call_ended"
    );
}

#[test]
fn a_retell_outbound_call_takes_the_customer_from_to_number() {
    let r = report(Source::Retell, "retell_outbound_call.json");
    assert_eq!(phone(&r), Some("+12137775678"));
    assert_eq!(r.called_number.as_deref(), Some("+12137770000"));
    assert_eq!(r.sentiment.as_deref(), Some("Positive"));
    assert!(!r.follow_up_needed);
}

#[test]
fn a_retell_web_call_has_no_number() {
    let r = report(Source::Retell, "retell_web_call.json");
    assert!(r.caller.phone.is_none() && r.crm_id.is_none() && r.called_number.is_none());
}

#[test]
fn an_elevenlabs_post_call_transcription_parses_to_the_expected_report() {
    let r = report(
        Source::Elevenlabs,
        "elevenlabs_post_call_transcription.json",
    );
    assert_eq!(r.source, Source::Elevenlabs);
    assert_eq!(r.call_id.as_str(), "conv_01jxk1wejhenk8x8tt9enzxw4a");
    assert_eq!(phone(&r), Some("+14155550143"));
    assert_eq!(r.called_number.as_deref(), Some("+14155550199"));
    assert_eq!(r.caller.name.as_deref(), Some("Sam Okafor"));
    assert_eq!(r.crm_id.as_deref(), Some("8812"));
    // start_time_unix_secs + call_duration_secs
    assert_eq!(r.ended_at, datetime!(2026-01-01 12:00:58 UTC));
    assert_eq!(r.duration, Some(Duration::from_secs(58)));
    assert!(
        r.summary
            .as_deref()
            .unwrap()
            .starts_with("The caller wants a solar quote")
    );
    assert!(r.follow_up_needed);
    assert_eq!(r.analysis["roof_type"], json!("pitched"));
    assert_eq!(r.analysis["call_successful"], json!("success"));
    assert_eq!(r.sentiment, None, "ElevenLabs has no sentiment of its own");
    assert_eq!(r.recording_url, None);
    assert_eq!(lines(&r).len(), 3);
}

#[test]
fn an_elevenlabs_audio_event_is_not_a_report() {
    assert_eq!(
        ignored(Source::Elevenlabs, "elevenlabs_post_call_audio.json"),
        "post_call_audio"
    );
}

#[test]
fn an_elevenlabs_outbound_call_takes_the_external_number() {
    let r = report(Source::Elevenlabs, "elevenlabs_outbound_call.json");
    assert_eq!(phone(&r), Some("+14155550188"));
    assert!(!r.follow_up_needed);
    assert_eq!(r.crm_id, None);
}

#[test]
fn an_elevenlabs_web_conversation_has_no_number() {
    let r = report(Source::Elevenlabs, "elevenlabs_web_call.json");
    assert!(r.caller.phone.is_none() && r.crm_id.is_none());
    assert_eq!(r.ended_at, datetime!(2026-01-03 08:47:20 UTC));
}

#[test]
fn a_bland_post_call_webhook_parses_to_the_expected_report() {
    let r = report(Source::Bland, "bland_post_call.json");
    assert_eq!(r.source, Source::Bland);
    assert_eq!(r.call_id.as_str(), "9d404c1b-6a23-4426-953a-a52c392ff8f1");
    assert_eq!(
        phone(&r),
        Some("+14155550154"),
        "from on an inbound call, + added"
    );
    assert_eq!(r.called_number.as_deref(), Some("+14155550100"));
    // started_at + call_length minutes, not the scheduled end_at
    assert_eq!(r.ended_at, datetime!(2026-01-01 10:02:24 UTC));
    assert_eq!(r.duration, Some(Duration::from_secs(144)));
    assert!(
        r.summary
            .as_deref()
            .unwrap()
            .starts_with("The caller wants pricing")
    );
    assert_eq!(r.sentiment.as_deref(), Some("positive"));
    assert_eq!(r.analysis["seats"], json!(40));
    assert!(r.follow_up_needed, "flagged in variables");
    assert_eq!(r.crm_id.as_deref(), Some("30412"));
    assert!(r.recording_url.is_some());
    assert_eq!(lines(&r)[0].0, "user");
}

#[test]
fn blands_second_post_in_the_documented_shape_is_a_report_of_the_same_call_with_the_corrected_transcript()
 {
    let first = report(Source::Bland, "bland_post_call.json");
    let second = report(Source::Bland, "bland_post_call_corrected.json");
    assert_eq!(first.marker(), second.marker());
    assert_eq!(
        lines(&second),
        vec![
            (
                "user".to_owned(),
                "Hi, I need pricing for forty seats.".to_owned()
            ),
            (
                "assistant".to_owned(),
                "Happy to help, a rep will call you tomorrow.".to_owned()
            ),
        ],
        "corrected_transcript.segments, not the first POST's transcript"
    );
    assert!(!second.extra.contains_key("citations"));
    assert_eq!(phone(&second), phone(&first));
}

#[test]
fn blands_delayed_post_carrying_only_the_corrected_transcript_is_ignored_not_refused() {
    assert_eq!(
        ignored(Source::Bland, "bland_delayed_post.json"),
        "corrected-transcript"
    );
}

#[test]
fn a_bland_body_posted_before_the_call_completed_or_without_saying_so_is_not_the_report() {
    let mut during =
        serde_json::from_slice::<serde_json::Value>(&fixture("bland_post_call.json")).unwrap();
    during["completed"] = json!(false);
    during["queue_status"] = json!("started");
    let mut unmarked = during.clone();
    unmarked.as_object_mut().unwrap().remove("completed");
    // What a dashboard test may send: Bland does not document its body.
    let test = json!({"call_id": "test-call", "message": "Test webhook"});
    let as_text = json!({"call_id": "c-1", "completed": "true", "from": "+14155550154"});
    for body in [during, unmarked, test, as_text] {
        let body = serde_json::to_vec(&body).unwrap();
        assert_eq!(
            inspect(Source::Bland, &body),
            Ok(Envelope::Ignored("call-not-completed".to_owned()))
        );
        assert_eq!(
            parse(Source::Bland, &body, &ctx()),
            Ok(Parsed::Ignored {
                event: "call-not-completed".to_owned()
            })
        );
    }
}

#[test]
fn ten_bare_digits_from_bland_are_a_north_american_number_whatever_the_default_region() {
    let gb = ParseContext {
        region: "GB".parse().unwrap(),
        ..ctx()
    };
    let Ok(Parsed::Report(r)) = parse(Source::Bland, &fixture("bland_outbound_call.json"), &gb)
    else {
        panic!("expected a report");
    };
    assert_eq!(r.caller.phone.as_ref().unwrap().raw, "4155550166");
    assert_eq!(phone(&r), Some("+14155550166"));
}

#[test]
fn a_bland_live_event_is_not_a_report() {
    assert_eq!(ignored(Source::Bland, "bland_live_event.json"), "queue");
}

#[test]
fn a_bland_outbound_call_takes_the_customer_from_to() {
    let r = report(Source::Bland, "bland_outbound_call.json");
    assert_eq!(phone(&r), Some("+14155550166"));
    assert_eq!(r.called_number.as_deref(), Some("+14155550100"));
    assert_eq!(r.duration, Some(Duration::from_secs(45)));
    assert!(!r.follow_up_needed);
    assert!(r.analysis.is_empty(), "analysis: null");
}

#[test]
fn a_bland_web_call_has_no_number() {
    let r = report(Source::Bland, "bland_web_call.json");
    assert!(r.caller.phone.is_none() && r.crm_id.is_none());
}

#[test]
fn a_body_without_the_call_id_is_refused_for_every_new_platform() {
    for (source, body, path) in [
        (
            Source::Vapi,
            json!({"message": {"type": "end-of-call-report", "call": {}}}),
            "message.call.id",
        ),
        (
            Source::Retell,
            json!({"event": "call_analyzed", "call": {"call_id": " "}}),
            "call.call_id",
        ),
        (
            Source::Elevenlabs,
            json!({"type": "post_call_transcription", "data": {}}),
            "data.conversation_id",
        ),
        (
            Source::Bland,
            json!({"completed": true, "summary": "no id"}),
            "call_id",
        ),
    ] {
        let body = serde_json::to_vec(&body).unwrap();
        let error = parse(source, &body, &ctx()).unwrap_err();
        assert!(!error.is_syntax());
        assert!(error.to_string().contains(path), "{source}: {error}");
        assert_eq!(inspect(source, &body).unwrap_err(), error);
    }
}

#[test]
fn a_missing_envelope_is_named() {
    for (source, path) in [
        (Source::Vapi, "\"message\""),
        (Source::Retell, "\"call\""),
        (Source::Elevenlabs, "\"data\""),
    ] {
        let error = parse(source, b"{}", &ctx()).unwrap_err();
        assert!(error.to_string().contains(path), "{source}: {error}");
    }
}

/// Direction, their number and ours, the platform's ended reason and its
/// outcome, as one tuple to compare.
type Line<'a> = (
    Option<Direction>,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    Option<Outcome>,
);

fn line(r: &CallReport) -> Line<'_> {
    (
        r.direction,
        phone(r),
        r.called_number.as_deref(),
        r.ended_reason.as_deref(),
        r.outcome,
    )
}

#[test]
fn every_platforms_inbound_report_says_inbound_and_how_it_ended() {
    use Direction::Inbound;
    for (source, name, expected, agent) in [
        (
            Source::Vapi,
            "vapi_end_of_call_report.json",
            (
                Some(Inbound),
                Some("+14155550132"),
                Some("+14155550100"),
                Some("customer-ended-call"),
                Some(Outcome::Connected),
            ),
            Some("1f2e3d4c-5b6a-4978-8a7b-6c5d4e3f2a1b"),
        ),
        (
            Source::Retell,
            "retell_call_analyzed.json",
            (
                Some(Inbound),
                Some("+12137771234"),
                Some("+12137770000"),
                Some("user_hangup"),
                Some(Outcome::Connected),
            ),
            Some("oBeDLoLOeuAbiuaMFXRtDOLriTJ5tSxD"),
        ),
        (
            Source::Elevenlabs,
            "elevenlabs_post_call_transcription.json",
            (
                Some(Inbound),
                Some("+14155550143"),
                Some("+14155550199"),
                Some("end_call tool was called."),
                None,
            ),
            Some("agent_8401k1ttj5cfe9bbtjq6tqgj8gws"),
        ),
        (
            Source::Bland,
            "bland_post_call.json",
            (
                Some(Inbound),
                Some("+14155550154"),
                Some("+14155550100"),
                Some("USER"),
                Some(Outcome::Connected),
            ),
            None,
        ),
        (
            Source::Voicedock,
            "voicedock_000_end_of_call_report.json",
            (
                Some(Inbound),
                Some("+31612345678"),
                Some("+31850835037"),
                None,
                None,
            ),
            None,
        ),
        (
            Source::Voicedock,
            "voicedock_003_end_of_call_report_camel_case.json",
            (
                Some(Inbound),
                Some("+31612345678"),
                Some("+31850835037"),
                None,
                None,
            ),
            None,
        ),
    ] {
        let r = report(source, name);
        assert_eq!(line(&r), expected, "{name}");
        assert_eq!(r.agent_id.as_deref(), agent, "{name}");
        assert_eq!(
            r.from_to(),
            (phone(&r), r.called_number.as_deref()),
            "{name}: theirs to ours"
        );
    }
}

#[test]
fn every_platforms_outbound_call_names_the_number_called_as_the_caller() {
    use Direction::Outbound;
    for (source, name, expected) in [
        (
            Source::Vapi,
            "vapi_outbound_call.json",
            (
                Some(Outbound),
                Some("+14155550177"),
                Some("+14155550100"),
                Some("assistant-ended-call"),
                Some(Outcome::Connected),
            ),
        ),
        (
            Source::Vapi,
            "vapi_outbound_voicemail.json",
            (
                Some(Outbound),
                Some("+14155550178"),
                Some("+14155550100"),
                Some("voicemail"),
                Some(Outcome::Voicemail),
            ),
        ),
        (
            Source::Vapi,
            "vapi_outbound_no_answer.json",
            (
                Some(Outbound),
                Some("+14155550179"),
                Some("+14155550100"),
                Some("customer-did-not-answer"),
                Some(Outcome::NoAnswer),
            ),
        ),
        (
            Source::Retell,
            "retell_outbound_call.json",
            (
                Some(Outbound),
                Some("+12137775678"),
                Some("+12137770000"),
                Some("agent_hangup"),
                Some(Outcome::Connected),
            ),
        ),
        (
            Source::Retell,
            "retell_outbound_no_answer.json",
            (
                Some(Outbound),
                Some("+12137775679"),
                Some("+12137770000"),
                Some("dial_no_answer"),
                Some(Outcome::NoAnswer),
            ),
        ),
        (
            Source::Retell,
            "retell_outbound_voicemail.json",
            (
                Some(Outbound),
                Some("+12137775680"),
                Some("+12137770000"),
                Some("agent_hangup"),
                Some(Outcome::Voicemail),
            ),
        ),
        (
            Source::Elevenlabs,
            "elevenlabs_outbound_call.json",
            (
                Some(Outbound),
                Some("+14155550188"),
                Some("+14155550199"),
                None,
                None,
            ),
        ),
        (
            Source::Elevenlabs,
            "elevenlabs_outbound_failed.json",
            (
                Some(Outbound),
                Some("+14155550189"),
                Some("+14155550199"),
                Some("Call failed to connect"),
                Some(Outcome::Failed),
            ),
        ),
        (
            Source::Bland,
            "bland_outbound_call.json",
            (
                Some(Outbound),
                Some("+14155550166"),
                Some("+14155550100"),
                Some("ASSISTANT"),
                Some(Outcome::Connected),
            ),
        ),
        (
            Source::Bland,
            "bland_outbound_voicemail.json",
            (
                Some(Outbound),
                Some("+14155550167"),
                Some("+14155550100"),
                Some("ASSISTANT"),
                Some(Outcome::Voicemail),
            ),
        ),
    ] {
        let r = report(source, name);
        assert_eq!(line(&r), expected, "{name}");
        assert_eq!(
            r.from_to(),
            (r.called_number.as_deref(), phone(&r)),
            "{name}: ours to theirs"
        );
    }
}

#[test]
fn web_calls_and_the_post_call_format_have_no_direction_or_outcome() {
    for (source, name) in [
        (Source::Vapi, "vapi_web_call.json"),
        (Source::Retell, "retell_web_call.json"),
        (Source::Elevenlabs, "elevenlabs_web_call.json"),
        (Source::Postcall, "postcall_002_example.json"),
    ] {
        let r = report(source, name);
        assert_eq!(r.direction, None, "{name}");
        if source == Source::Postcall {
            assert_eq!((r.ended_reason, r.outcome, r.agent_id), (None, None, None));
        }
    }
}

#[test]
fn an_unknown_ended_reason_is_kept_but_gives_no_outcome() {
    let mut body: serde_json::Value =
        serde_json::from_slice(&fixture("vapi_outbound_call.json")).unwrap();
    body["message"]["endedReason"] = json!("a-reason-vapi-adds-later");
    let parsed = parse(Source::Vapi, &serde_json::to_vec(&body).unwrap(), &ctx());
    let Ok(Parsed::Report(r)) = parsed else {
        panic!("{parsed:?}")
    };
    assert_eq!(r.ended_reason.as_deref(), Some("a-reason-vapi-adds-later"));
    assert_eq!(r.outcome, None);
    assert_eq!(r.direction, Some(Direction::Outbound));
}

/// A length no call has (beyond what a `Duration` holds, or ending past
/// the last representable time) is read as no length, never a panic: found
/// by the property tests (`parser_properties.rs`).
#[test]
fn a_call_length_beyond_any_call_is_no_length_not_a_panic() {
    for (source, name, pointers) in [
        (
            Source::Retell,
            "retell_call_analyzed.json",
            &["/call/duration_ms", "/call/end_timestamp"][..],
        ),
        (
            Source::Elevenlabs,
            "elevenlabs_post_call_transcription.json",
            &["/data/metadata/call_duration_secs"][..],
        ),
        (
            Source::Vapi,
            "vapi_end_of_call_report.json",
            &[
                "/message/durationSeconds",
                "/message/durationMs",
                "/message/endedAt",
            ][..],
        ),
        (
            Source::Bland,
            "bland_post_call.json",
            &["/call_length", "/corrected_duration"][..],
        ),
    ] {
        for huge in [json!(1e300), json!(1e15)] {
            let mut body: serde_json::Value = serde_json::from_slice(&fixture(name)).unwrap();
            for pointer in pointers {
                let slot = body.pointer_mut(pointer).unwrap();
                *slot = if pointer.ends_with("endedAt") || pointer.ends_with("end_timestamp") {
                    serde_json::Value::Null
                } else {
                    huge.clone()
                };
            }
            let bytes = serde_json::to_vec(&body).unwrap();
            let Ok(Parsed::Report(r)) = parse(source, &bytes, &ctx()) else {
                panic!("{source}: expected a report");
            };
            assert!(
                r.duration.is_none() || huge == json!(1e15),
                "{source}: {:?}",
                r.duration
            );
            // The end falls back to what else the body says, or receipt.
            assert_eq!(r.ended_at.year(), 2026, "{source} {huge}: {}", r.ended_at);
        }
    }
}
