//! Vapi server messages (`{"message": {...}}`); the final report is
//! `end-of-call-report`. Vapi signs with a timestamped HMAC whose headers
//! and timestamp unit differ from seed 004's, or sends a shared secret.

use std::sync::Arc;


use super::value::{
    Hints, caller, end_of, field, follow_up, number, object, rfc3339, seconds, sentiment, text,
    text_transcript, turns, unix_millis, without,
};
use super::{Body, Credential, ParseContext, ParseError, Provider, Source};
use crate::report::{CallId, CallReport};
use crate::signature::{
    Bearer, TimestampUnit, TimestampedHmac, TimestampedScheme, TokenPlaces,
};

const FORMAT: &str = "vapi";
/// The only message type that is a final call report.
pub const FINAL_EVENT: &str = "end-of-call-report";

pub(super) const PROVIDER: Provider = Provider {
    name: FORMAT,
    platform: "Vapi",
    credentials: &[
        Credential {
            suffix: "SECRET",
            verifier: |secrets, tolerance_secs| {
                Arc::new(TimestampedHmac {
                    scheme: SIGNATURE,
                    secrets,
                    tolerance_secs,
                })
            },
        },
        Credential {
            suffix: "TOKEN",
            verifier: |tokens, _| Arc::new(Bearer { tokens, places: TOKEN }),
        },
    ],
    tolerance_secs: Some(300),
    inspect: |body| super::message_envelope(body, FINAL_EVENT, FORMAT),
    parse,
};

/// Vapi's HMAC credential with its defaults: `x-signature` over
/// `"{x-timestamp}.{body}"`. Vapi does not document the timestamp's unit,
/// so both seconds and milliseconds are read; the `sha256=` prefix is
/// optional because the signature format is configurable.
pub const SIGNATURE: TimestampedScheme = TimestampedScheme {
    signature_header: "x-signature",
    timestamp_header: "x-timestamp",
    prefix: "sha256=",
    prefix_required: false,
    unit: TimestampUnit::SecondsOrMillis,
    expected: "<64 hex digits> or sha256=<64 hex digits>",
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

    let started = rfc3339(message, &["startedAt"]).or_else(|| call.and_then(|c| rfc3339(c, &["startedAt"])));
    let ended = rfc3339(message, &["endedAt"]).or_else(|| call.and_then(|c| rfc3339(c, &["endedAt"])));
    let duration = seconds(message, &["durationSeconds"])
        .or_else(|| number(message, &["durationMs"]).map(|ms| std::time::Duration::from_secs_f64(ms / 1_000.0)))
        .or_else(|| (ended? - started?).try_into().ok());
    // The message's own `timestamp` (ms epoch) is when Vapi sent it: after
    // the call ended, so only a fallback.
    let (ended_at, ended_at_is_receipt_time) = ctx.ended_at(
        ended
            .or_else(|| end_of(started, duration))
            .or_else(|| unix_millis(message, &["timestamp"])),
    );

    let analysis_block = object(message, &["analysis"]);
    let analysis = analysis_block
        .and_then(|a| object(a, &["structuredData"]))
        .cloned()
        .unwrap_or_default();
    let artifact = object(message, &["artifact"]);
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
        recording_url: artifact
            .and_then(|a| text(a, &["recordingUrl"]))
            .or_else(|| text(message, &["recordingUrl"])),
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

    fn hmac(secrets: &[&str]) -> TimestampedHmac {
        TimestampedHmac {
            scheme: SIGNATURE,
            secrets: secrets.iter().map(|s| Secret::new(*s)).collect(),
            tolerance_secs: 300,
        }
    }

    fn check(
        v: &dyn Verifier,
        headers: &[(&str, &str)],
        body: &[u8],
        now: i64,
    ) -> Result<(), AuthError> {
        verify_at(v, headers, body, OffsetDateTime::from_unix_timestamp(now).unwrap())
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
        assert_eq!(check(&v, &headers, BODY, TS), Err(AuthError::SignatureMismatch));
    }

    #[test]
    fn tampered_stale_future_truncated_swapped_or_missing_signatures_are_refused() {
        let v = hmac(&["vapi-secret"]);
        let good = [("x-timestamp", "1765627530"), ("x-signature", SIG_SECONDS)];
        let mut body = BODY.to_vec();
        body[12] ^= 1;
        assert_eq!(check(&v, &good, &body, TS), Err(AuthError::SignatureMismatch));
        assert!(matches!(
            check(&v, &good, BODY, TS + 301),
            Err(AuthError::StaleTimestamp { .. })
        ));
        assert!(matches!(
            check(&v, &good, BODY, TS - 301),
            Err(AuthError::StaleTimestamp { .. })
        ));
        let truncated = [("x-timestamp", "1765627530"), ("x-signature", &SIG_SECONDS[..63])];
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
        assert_eq!(check(&v, &wrong_unit, BODY, TS), Err(AuthError::SignatureMismatch));
    }

    #[test]
    fn the_shared_secret_may_come_as_x_vapi_secret_or_bearer() {
        let v = Bearer {
            tokens: vec![Secret::new("shh")],
            places: TOKEN,
        };
        assert_eq!(check(&v, &[("X-Vapi-Secret", "shh")], b"", TS), Ok(()));
        assert_eq!(check(&v, &[("Authorization", "Bearer shh")], b"", TS), Ok(()));
        assert_eq!(
            check(&v, &[("X-Vapi-Secret", "shh!")], b"", TS),
            Err(AuthError::TokenMismatch)
        );
        assert!(matches!(check(&v, &[], b"", TS), Err(AuthError::MissingToken(_))));
    }
}
