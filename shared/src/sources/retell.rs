//! Retell webhooks (`{"event", "call"}`); the final report is
//! `call_analyzed` (`call_ended` comes first, without the analysis).
//! Retell signs with the API key: `x-retell-signature: v=<ms>,d=<hex>`.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::value::{
    Hints, add_verdict, duration_secs, end_of, field, follow_up, number, object, sentiment, text,
    text_transcript, unix_millis, without,
};
use super::{
    Body, Credential, Envelope, ParseContext, ParseError, Provider, Source, typed_envelope,
};
use crate::config::Secret;
use crate::phone::Phone;
use crate::report::{CallId, CallReport, Caller};
use crate::signature::{
    AuthError, Request, Verifier, any_secret_signs, hex_digest, within_tolerance,
};

const FORMAT: &str = "retell";
/// The only event that is a final call report.
pub const FINAL_EVENT: &str = "call_analyzed";
pub const SIGNATURE_HEADER: &str = "x-retell-signature";

pub(super) const PROVIDER: Provider = Provider {
    name: FORMAT,
    platform: "Retell AI",
    credentials: &[Credential {
        suffix: "API_KEY",
        scheme: "Retell's x-retell-signature",
        verifier: |c| {
            Ok(Arc::new(RetellSignature {
                keys: c.values,
                tolerance_secs: c.tolerance_secs,
            }))
        },
    }],
    // The SDK's `verify` allows five minutes either way.
    tolerance_secs: Some(300),
    inspect,
    reads: super::skim::Reads::values(&[&["event"], &["call", "call_id"]]),
    parse,
};

/// Retell's signature, as its SDKs' `verify` checks it: the header matches
/// `v=(\d+),d=([0-9a-f]{64})` exactly, the timestamp (ms) is within the
/// tolerance either way, and the digest is HMAC-SHA256 under the API key of
/// the raw body immediately followed by the timestamp's digits.
#[derive(Debug, Clone)]
pub struct RetellSignature {
    pub keys: Vec<Secret>,
    pub tolerance_secs: u64,
}

impl Verifier for RetellSignature {
    fn verify(&self, request: &Request<'_>) -> Result<(), AuthError> {
        let header = request.required_header(SIGNATURE_HEADER)?;
        let malformed = AuthError::MalformedSignature {
            header: SIGNATURE_HEADER,
            expected: "v=<ms>,d=<64 lowercase hex digits>",
        };
        let (stamp, digest) = header
            .strip_prefix("v=")
            .and_then(|rest| rest.split_once(",d="))
            .ok_or(malformed.clone())?;
        if stamp.is_empty() || !stamp.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed);
        }
        let presented = hex_digest(digest, true).ok_or(malformed.clone())?;
        let sent_ms: i128 = stamp.parse().map_err(|_| malformed)?;
        within_tolerance(
            SIGNATURE_HEADER,
            sent_ms,
            request.now_ms(),
            self.tolerance_secs,
        )?;
        any_secret_signs(&self.keys, &[request.body, stamp.as_bytes()], &presented)
    }
}

/// Keys of `call` that map onto canonical fields; the rest go to `extra`.
const KNOWN: &[&str] = &[
    "call_id",
    "direction",
    "from_number",
    "to_number",
    "start_timestamp",
    "end_timestamp",
    "duration_ms",
    "call_analysis",
    "transcript",
    "transcript_object",
    "transcript_with_tool_calls",
    "recording_url",
    "metadata",
    "retell_llm_dynamic_variables",
    "disconnection_reason",
    "agent_id",
];

fn call(body: &Map<String, Value>) -> Result<&Map<String, Value>, ParseError> {
    super::value::envelope(body, "call", FORMAT, "\"call\"")
}

fn inspect(body: &Body) -> Result<Envelope, ParseError> {
    typed_envelope(
        text(body, &["event"]),
        FINAL_EVENT,
        || Ok(text(call(body)?, &["call_id"])),
        FORMAT,
        "call.call_id",
    )
}

fn parse(body: Body, call_id: CallId, ctx: &ParseContext) -> Result<CallReport, ParseError> {
    let call = call(&body)?;

    // The customer is the caller of an inbound call and the number called
    // by an outbound one; web calls have neither number.
    let outbound = text(call, &["direction"]).is_some_and(|d| d.eq_ignore_ascii_case("outbound"));
    let (customer, ours) = if outbound {
        ("to_number", "from_number")
    } else {
        ("from_number", "to_number")
    };
    let hints = Hints::from(&[
        object(call, &["metadata"]),
        object(call, &["retell_llm_dynamic_variables"]),
    ]);

    let call_analysis = object(call, &["call_analysis"]);
    let mut analysis = call_analysis
        .and_then(|a| object(a, &["custom_analysis_data"]))
        .cloned()
        .unwrap_or_default();
    let follow_up_needed = follow_up(&analysis);
    add_verdict(&mut analysis, call_analysis);

    let started = unix_millis(call, &["start_timestamp"]);
    let duration = number(call, &["duration_ms"]).and_then(|ms| duration_secs(ms / 1_000.0));
    let (ended_at, ended_at_is_receipt_time) =
        ctx.ended_at(unix_millis(call, &["end_timestamp"]).or_else(|| end_of(started, duration)));

    Ok(CallReport {
        source: Source::Retell,
        call_id,
        caller: Caller {
            phone: text(call, &[customer]).map(|n| Phone::parse(&n, ctx.region)),
            name: hints.name,
            email: hints.email,
        },
        ended_at,
        ended_at_is_receipt_time,
        duration,
        summary: call_analysis.and_then(|a| text(a, &["call_summary"])),
        sentiment: call_analysis
            .and_then(|a| field(a, &["user_sentiment"]))
            .and_then(sentiment),
        follow_up_needed,
        analysis: analysis.into(),
        recording_url: text(call, &["recording_url"]),
        transcript: text(call, &["transcript"]).and_then(|t| text_transcript(&t)),
        crm_id: hints.crm_id,
        called_number: text(call, &[ours]),
        extra: without(call, KNOWN),
        direction: text(call, &["direction"]).and_then(|d| super::outcome::direction_word(&d)),
        outcome: super::outcome::retell(
            text(call, &["disconnection_reason"]).as_deref(),
            call_analysis.and_then(|a| field(a, &["in_voicemail"])) == Some(&Value::Bool(true)),
            text(call, &["call_status"]).as_deref(),
        ),
        ended_reason: text(call, &["disconnection_reason"]),
        agent_id: text(call, &["agent_id"]),
    })
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;
    use crate::signature::verify_at;

    // Retell's own test vector (retell-python-sdk, tests/test_webhook_auth.py):
    // BODY, API_KEY and TIMESTAMP below sign to EXPECTED_DIGEST; also checked
    // with Python's hmac: hmac.new(b'test-api-key',
    //   b'{"event":"call_ended"}1700000000000', hashlib.sha256).hexdigest()
    const BODY: &[u8] = br#"{"event":"call_ended"}"#;
    const API_KEY: &str = "test-api-key";
    const TIMESTAMP: i64 = 1_700_000_000_000;
    const EXPECTED_DIGEST: &str =
        "07024cabe7dd8f6d1c6e4a8324ca92c812e6ad4a7ee506c04f7e462e3321823e";

    fn verifier(keys: &[&str]) -> RetellSignature {
        RetellSignature {
            keys: keys.iter().map(|k| Secret::new(*k)).collect(),
            tolerance_secs: 300,
        }
    }

    fn check(
        v: &RetellSignature,
        signature: &str,
        body: &[u8],
        now_ms: i64,
    ) -> Result<(), AuthError> {
        let headers = [("X-Retell-Signature", signature)];
        verify_at(
            v,
            &headers,
            body,
            crate::time::from_unix_ms(now_ms).unwrap(),
        )
    }

    fn signature() -> String {
        format!("v={TIMESTAMP},d={EXPECTED_DIGEST}")
    }

    #[test]
    fn the_sdk_test_vector_verifies() {
        assert_eq!(
            check(&verifier(&[API_KEY]), &signature(), BODY, TIMESTAMP),
            Ok(())
        );
    }

    #[test]
    fn rotation_accepts_any_configured_api_key() {
        let v = verifier(&["key-new", API_KEY]);
        assert_eq!(check(&v, &signature(), BODY, TIMESTAMP), Ok(()));
        assert_eq!(
            check(&verifier(&["wrong-api-key"]), &signature(), BODY, TIMESTAMP),
            Err(AuthError::SignatureMismatch)
        );
    }

    #[test]
    fn a_tampered_body_is_refused() {
        let v = verifier(&[API_KEY]);
        assert_eq!(
            check(&v, &signature(), br#"{"event":"call_ended"} "#, TIMESTAMP),
            Err(AuthError::SignatureMismatch)
        );
        assert_eq!(
            check(&v, &signature(), br#"{"event":"call_endee"}"#, TIMESTAMP),
            Err(AuthError::SignatureMismatch)
        );
    }

    #[test]
    fn the_window_is_five_minutes_inclusive_either_way() {
        let v = verifier(&[API_KEY]);
        let timeout = 300_000;
        assert_eq!(check(&v, &signature(), BODY, TIMESTAMP + timeout), Ok(()));
        assert!(matches!(
            check(&v, &signature(), BODY, TIMESTAMP + timeout + 1),
            Err(AuthError::StaleTimestamp { .. })
        ));
        assert_eq!(check(&v, &signature(), BODY, TIMESTAMP - timeout), Ok(()));
        assert!(matches!(
            check(&v, &signature(), BODY, TIMESTAMP - timeout - 1),
            Err(AuthError::StaleTimestamp { .. })
        ));
    }

    #[test]
    fn malformed_signatures_from_the_sdk_tests_are_refused() {
        let v = verifier(&[API_KEY]);
        for bad in [
            String::new(),
            format!("v={TIMESTAMP}"),
            format!("d={EXPECTED_DIGEST},v={TIMESTAMP}"),
            format!("prefix-v={TIMESTAMP},d={EXPECTED_DIGEST}"),
            format!("v={TIMESTAMP},d={EXPECTED_DIGEST}-suffix"),
            format!("v={TIMESTAMP},d=not-hex"),
            format!("v={TIMESTAMP},d={}", &EXPECTED_DIGEST[2..]),
            format!("v=-{TIMESTAMP},d={EXPECTED_DIGEST}"),
            format!("v={TIMESTAMP},d={EXPECTED_DIGEST},extra=value"),
            format!("v={TIMESTAMP},d={}", EXPECTED_DIGEST.to_uppercase()),
        ] {
            assert!(
                matches!(
                    check(&v, &bad, BODY, TIMESTAMP),
                    Err(AuthError::MalformedSignature { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_missing_header_is_named() {
        let v = verifier(&[API_KEY]);
        let result = verify_at(&v, &[], BODY, OffsetDateTime::UNIX_EPOCH);
        assert_eq!(result, Err(AuthError::MissingHeader(SIGNATURE_HEADER)));
    }
}
