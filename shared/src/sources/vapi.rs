//! Vapi server messages (`{"message": {...}}`); the final report is
//! `end-of-call-report`. Vapi signs with a timestamped HMAC whose headers
//! and timestamp unit differ from seed 004's, or sends a shared secret.

mod signing;

use std::sync::Arc;

use super::value::{
    Hints, caller, duration_secs, end_of, field, follow_up, number, object, rfc3339, seconds,
    sentiment, text, text_transcript, turns, unix_millis, without,
};
use super::{Body, Credential, ParseContext, ParseError, Provider, Source};
use crate::report::{CallId, CallReport};
use crate::signature::{Bearer, TokenPlaces};

pub use signing::{Algorithm, Encoding, OPTION_SUFFIXES, Options, Part, VapiHmac, token_places};

const FORMAT: &str = "vapi";
/// The only message type that is a final call report.
pub const FINAL_EVENT: &str = "end-of-call-report";

pub(super) const PROVIDER: Provider = Provider {
    name: FORMAT,
    platform: "Vapi",
    credentials: &[
        // Vapi's HMAC credential, with its options (`CALLSYNC_VAPI_*`, see
        // [`signing`]).
        Credential {
            suffix: "SECRET",
            scheme: "Vapi's HMAC credential",
            verifier: |c| {
                VapiHmac::from_env(c.env, c.source, &c.values, c.tolerance_secs)
                    .map(|v| Arc::new(v) as _)
            },
        },
        Credential {
            suffix: "TOKEN",
            scheme: "Vapi's bearer token credential",
            verifier: |c| {
                Ok(Arc::new(Bearer {
                    tokens: c.values,
                    places: signing::token_places(c.env, c.source)?,
                }))
            },
        },
    ],
    tolerance_secs: Some(300),
    inspect: |body| super::message_envelope(body, FINAL_EVENT, FORMAT),
    reads: super::MESSAGE_READS,
    parse,
};

/// Vapi's shared-secret credentials: the legacy `X-Vapi-Secret` header or a
/// bearer token.
pub const TOKEN: TokenPlaces = TokenPlaces {
    header: Some("X-Vapi-Secret"),
    query: false,
    described: "X-Vapi-Secret or Authorization: Bearer <token>",
};

/// Keys of `message` that map onto canonical fields; the rest go to `extra`.
const KNOWN: &[&str] = &[
    "type",
    "timestamp",
    "call",
    "customer",
    "phoneNumber",
    "startedAt",
    "endedAt",
    "durationSeconds",
    "durationMs",
    "analysis",
    "artifact",
    "summary",
    "transcript",
    "messages",
    "recordingUrl",
    "assistant",
    "endedReason",
];

fn parse(body: Body, call_id: CallId, ctx: &ParseContext) -> Result<CallReport, ParseError> {
    let message = super::message(&body, FORMAT)?;
    let call = object(message, &["call"]);

    // `call.customer` is the other party in both directions: the caller of
    // an inbound call, the number called by an outbound one.
    let customer = call
        .and_then(|c| object(c, &["customer"]))
        .or_else(|| object(message, &["customer"]));
    let hints = Hints::from(&[
        call.and_then(|c| object(c, &["assistantOverrides"]))
            .and_then(|o| object(o, &["metadata"])),
        object(message, &["assistant"]).and_then(|a| object(a, &["metadata"])),
        call.and_then(|c| object(c, &["metadata"])),
    ]);
    let caller = caller(customer, &["number"], ctx.region);

    let started =
        rfc3339(message, &["startedAt"]).or_else(|| call.and_then(|c| rfc3339(c, &["startedAt"])));
    let ended =
        rfc3339(message, &["endedAt"]).or_else(|| call.and_then(|c| rfc3339(c, &["endedAt"])));
    let duration = seconds(message, &["durationSeconds"])
        .or_else(|| number(message, &["durationMs"]).and_then(|ms| duration_secs(ms / 1_000.0)))
        .or_else(|| (ended? - started?).try_into().ok());
    // The message's own `timestamp` (ms epoch) is when Vapi sent it: after
    // the call ended, so only a fallback.
    let (ended_at, ended_at_is_receipt_time) = ctx.ended_at(
        ended
            .or_else(|| end_of(started, duration))
            .or_else(|| unix_millis(message, &["timestamp"])),
    );

    let analysis_block = object(message, &["analysis"]);
    let artifact = object(message, &["artifact"]);
    let analysis = analysis(analysis_block, artifact);
    let transcript = artifact
        .and_then(|a| turns(field(a, &["messages"]), &["message", "content"]))
        .or_else(|| {
            artifact
                .and_then(|a| text(a, &["transcript"]))
                .or_else(|| text(message, &["transcript"]))
                .and_then(|t| text_transcript(&t))
        });
    // The report's `endedReason` (required in ServerMessageEndOfCallReport),
    // else the call's.
    let ended_reason =
        text(message, &["endedReason"]).or_else(|| call.and_then(|c| text(c, &["endedReason"])));

    Ok(CallReport {
        source: Source::Vapi,
        call_id,
        caller,
        ended_at,
        ended_at_is_receipt_time,
        duration,
        summary: analysis_block
            .and_then(|a| text(a, &["summary"]))
            .or_else(|| text(message, &["summary"])),
        sentiment: field(&analysis, &["sentiment"]).and_then(sentiment),
        follow_up_needed: follow_up(&analysis),
        analysis: analysis.into(),
        recording_url: recording_url(message, artifact),
        transcript,
        crm_id: hints.crm_id,
        called_number: object(message, &["phoneNumber"]).and_then(|n| text(n, &["number"])),
        extra: without(message, KNOWN),
        direction: call
            .and_then(|c| text(c, &["type"]))
            .and_then(|t| super::outcome::vapi_direction(&t)),
        outcome: ended_reason.as_deref().and_then(super::outcome::vapi),
        ended_reason,
        agent_id: call.and_then(|c| text(c, &["assistantId"])),
    })
}

/// The call's structured analysis: the deprecated `analysis.structuredData`
/// and the results of the assistant's Structured Outputs, by name.
///
/// Vapi recommends Structured Outputs over the `analysisPlan`, whose
/// `structuredDataPlan` is `deprecated: true` ("If you're configuring call
/// analysis for the first time, start with structured outputs",
/// VapiAI/docs @ eabfa530 `fern/assistants/call-analysis.mdx`). Their
/// results arrive as `artifact.structuredOutputs`, `{<output id>: {name,
/// result}}` (`fern/assistants/structured-outputs.mdx`, "Access extracted
/// data"). On a name both carry, the Structured Output wins: it is the
/// mechanism Vapi maintains, and an assistant moving to it keeps the old
/// plan only until the move is done. A result that is `null` (the output
/// did not run) takes nothing away. A result named `follow_up_needed` is
/// the follow-up flag, like the key of that name in `structuredData`.
fn analysis(analysis_block: Option<&Body>, artifact: Option<&Body>) -> Body {
    let mut analysis = analysis_block
        .and_then(|a| object(a, &["structuredData"]))
        .cloned()
        .unwrap_or_default();
    let outputs = artifact.and_then(|a| object(a, &["structuredOutputs"]));
    for output in outputs.into_iter().flat_map(|o| o.values()) {
        let Some(output) = output.as_object() else {
            continue;
        };
        if let (Some(name), Some(result)) = (text(output, &["name"]), field(output, &["result"])) {
            analysis.insert(name, result.clone());
        }
    }
    analysis
}

/// The recording: `artifact.recording.mono.combinedUrl`, else
/// `artifact.recording.stereoUrl`, else the deprecated `artifact.recordingUrl`
/// (Vapi's openapi `Artifact.recordingUrl`: `deprecated: true`, replaced by
/// `Artifact.recording`, whose `Recording.mono` is `Mono.combinedUrl`,
/// "the combined recording url for the call").
fn recording_url(message: &Body, artifact: Option<&Body>) -> Option<String> {
    let recording = artifact.and_then(|a| object(a, &["recording"]));
    recording
        .and_then(|r| object(r, &["mono"]))
        .and_then(|mono| text(mono, &["combinedUrl"]))
        .or_else(|| recording.and_then(|r| text(r, &["stereoUrl"])))
        .or_else(|| artifact.and_then(|a| text(a, &["recordingUrl"])))
        .or_else(|| text(message, &["recordingUrl"]))
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;
    use crate::config::Secret;
    use crate::signature::{AuthError, Verifier, verify_at};

    // Computed independently with Python's standard library:
    //   python3 -c "import hmac,hashlib; print(hmac.new(b'vapi-secret',
    //     b'1765627530.' + BODY, hashlib.sha256).hexdigest())"
    // and with b'1765627530123.' + BODY for the millisecond timestamp.
    const BODY: &[u8] = br#"{"message":{"type":"end-of-call-report","call":{"id":"call-1"}}}"#;
    const SIG_SECONDS: &str = "fee47819ab45f828032dc09d3ede19c134bc6bbe2f6a19ea94a206f8edb0a855";
    const SIG_MILLIS: &str = "952475801a975f9ccaabbc9ded2da2847f19297a6d22e4eb8a74957229e5ec97";
    const TS: i64 = 1_765_627_530;

    fn hmac(secrets: &[&str]) -> VapiHmac {
        let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
        VapiHmac::new(
            Options::vapi_default(),
            &secrets,
            false,
            300,
            "CALLSYNC_VAPI_SECRET",
        )
        .unwrap()
    }

    fn check(
        v: &dyn Verifier,
        headers: &[(&str, &str)],
        body: &[u8],
        now: i64,
    ) -> Result<(), AuthError> {
        verify_at(
            v,
            headers,
            body,
            OffsetDateTime::from_unix_timestamp(now).unwrap(),
        )
    }

    #[test]
    fn a_signature_over_seconds_or_milliseconds_is_accepted_with_or_without_prefix() {
        let v = hmac(&["vapi-secret"]);
        let prefixed = format!("sha256={SIG_SECONDS}");
        for (ts, sig) in [
            ("1765627530", SIG_SECONDS),
            ("1765627530", prefixed.as_str()),
            ("1765627530123", SIG_MILLIS),
        ] {
            let headers = [("x-timestamp", ts), ("x-signature", sig)];
            assert_eq!(check(&v, &headers, BODY, TS + 60), Ok(()), "{ts} {sig}");
        }
    }

    #[test]
    fn rotation_accepts_any_configured_secret() {
        let v = hmac(&["next-secret", "vapi-secret"]);
        let headers = [("x-timestamp", "1765627530"), ("x-signature", SIG_SECONDS)];
        assert_eq!(check(&v, &headers, BODY, TS), Ok(()));
        let v = hmac(&["next-secret"]);
        assert_eq!(
            check(&v, &headers, BODY, TS),
            Err(AuthError::SignatureMismatch)
        );
    }

    #[test]
    fn tampered_stale_future_truncated_swapped_or_missing_signatures_are_refused() {
        let v = hmac(&["vapi-secret"]);
        let good = [("x-timestamp", "1765627530"), ("x-signature", SIG_SECONDS)];
        let mut body = BODY.to_vec();
        body[12] ^= 1;
        assert_eq!(
            check(&v, &good, &body, TS),
            Err(AuthError::SignatureMismatch)
        );
        assert!(matches!(
            check(&v, &good, BODY, TS + 301),
            Err(AuthError::StaleTimestamp { .. })
        ));
        assert!(matches!(
            check(&v, &good, BODY, TS - 301),
            Err(AuthError::StaleTimestamp { .. })
        ));
        let truncated = [
            ("x-timestamp", "1765627530"),
            ("x-signature", &SIG_SECONDS[..63]),
        ];
        assert!(matches!(
            check(&v, &truncated, BODY, TS),
            Err(AuthError::MalformedSignature { .. })
        ));
        let swapped = [("x-timestamp", SIG_SECONDS), ("x-signature", "1765627530")];
        assert!(matches!(
            check(&v, &swapped, BODY, TS),
            Err(AuthError::MalformedTimestamp { .. })
        ));
        assert_eq!(
            check(&v, &good[..1], BODY, TS),
            Err(AuthError::MissingHeader("x-signature"))
        );
        // The millisecond signature does not verify a seconds timestamp.
        let wrong_unit = [("x-timestamp", "1765627530"), ("x-signature", SIG_MILLIS)];
        assert_eq!(
            check(&v, &wrong_unit, BODY, TS),
            Err(AuthError::SignatureMismatch)
        );
    }

    #[test]
    fn the_shared_secret_may_come_as_x_vapi_secret_or_bearer() {
        let v = Bearer {
            tokens: vec![Secret::new("shh")],
            places: TOKEN,
        };
        assert_eq!(check(&v, &[("X-Vapi-Secret", "shh")], b"", TS), Ok(()));
        assert_eq!(
            check(&v, &[("Authorization", "Bearer shh")], b"", TS),
            Ok(())
        );
        assert_eq!(
            check(&v, &[("X-Vapi-Secret", "shh!")], b"", TS),
            Err(AuthError::TokenMismatch)
        );
        assert!(matches!(
            check(&v, &[], b"", TS),
            Err(AuthError::MissingToken(_))
        ));
    }
}
