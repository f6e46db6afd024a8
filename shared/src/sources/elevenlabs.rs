//! ElevenLabs Agents post-call webhooks (`{"type", "event_timestamp",
//! "data"}`); the final report is `post_call_transcription`. ElevenLabs
//! signs with `ElevenLabs-Signature: t=<s>,v0=<hex>`.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::value::{
    Hints, add_verdict, end_of, field, follow_up, object, seconds, sentiment, text, turns,
    unix_seconds, without,
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

const FORMAT: &str = "elevenlabs";
/// The only event type that is a final call report.
pub const FINAL_EVENT: &str = "post_call_transcription";
pub const SIGNATURE_HEADER: &str = "ElevenLabs-Signature";

pub(super) const PROVIDER: Provider = Provider {
    name: FORMAT,
    platform: "ElevenLabs",
    credentials: &[Credential {
        suffix: "SECRET",
        scheme: "ElevenLabs' HMAC signature",
        verifier: |c| {
            Ok(Arc::new(ElevenLabsSignature {
                secrets: c.values,
                tolerance_secs: c.tolerance_secs,
            }))
        },
    }],
    // The SDKs refuse a timestamp more than 30 minutes old.
    tolerance_secs: Some(1_800),
    inspect,
    reads: super::skim::Reads::values(&[&["type"], &["data", "conversation_id"]]),
    parse,
};

/// ElevenLabs' signature as its SDKs' `construct_event` checks it: the
/// header is comma-separated `t=<unix s>` and `v0=<hex>` parts in any
/// order, and `v0` is the HMAC-SHA256 under the webhook secret of
/// `"{t}.{raw body}"`. The SDK refuses only old timestamps; callsync
/// refuses one as far in the future too, since a sender's clock far ahead
/// is as suspect as a replay.
#[derive(Debug, Clone)]
pub struct ElevenLabsSignature {
    pub secrets: Vec<Secret>,
    pub tolerance_secs: u64,
}

impl Verifier for ElevenLabsSignature {
    fn verify(&self, request: &Request<'_>) -> Result<(), AuthError> {
        let header = request.required_header(SIGNATURE_HEADER)?;
        let malformed = AuthError::MalformedSignature {
            header: SIGNATURE_HEADER,
            expected: "t=<unix seconds>,v0=<64 lowercase hex digits>",
        };
        let mut stamp = None;
        let mut digest = None;
        for part in header.split(',') {
            if let Some(t) = part.strip_prefix("t=") {
                stamp = Some(t);
            } else if let Some(v0) = part.strip_prefix("v0=") {
                digest = Some(v0);
            }
        }
        let (Some(stamp), Some(digest)) = (stamp, digest) else {
            return Err(malformed);
        };
        if stamp.is_empty() || !stamp.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AuthError::MalformedTimestamp {
                header: SIGNATURE_HEADER,
                unit: "seconds",
            });
        }
        let presented = hex_digest(digest, true).ok_or(malformed.clone())?;
        let sent_secs: i128 = stamp.parse().map_err(|_| malformed)?;
        within_tolerance(
            SIGNATURE_HEADER,
            sent_secs * 1_000,
            request.now_ms(),
            self.tolerance_secs,
        )?;
        let parts: [&[u8]; 3] = [stamp.as_bytes(), b".", request.body];
        any_secret_signs(&self.secrets, &parts, &presented)
    }
}

/// Keys of `data` that map onto canonical fields; the rest go to `extra`.
const KNOWN: &[&str] = &[
    "conversation_id",
    "transcript",
    "metadata",
    "analysis",
    "conversation_initiation_client_data",
    "agent_id",
];

fn data(body: &Map<String, Value>) -> Result<&Map<String, Value>, ParseError> {
    super::value::envelope(body, "data", FORMAT, "\"data\"")
}

fn inspect(body: &Body) -> Result<Envelope, ParseError> {
    typed_envelope(
        text(body, &["type"]),
        FINAL_EVENT,
        || Ok(text(data(body)?, &["conversation_id"])),
        FORMAT,
        "data.conversation_id",
    )
}

fn parse(body: Body, call_id: CallId, ctx: &ParseContext) -> Result<CallReport, ParseError> {
    let data = data(&body)?;
    let metadata = object(data, &["metadata"]);
    // Present for telephony calls only; a web (widget) conversation has none.
    let phone_call = metadata.and_then(|m| object(m, &["phone_call"]));
    let hints = Hints::from(&[object(data, &["conversation_initiation_client_data"])
        .and_then(|c| object(c, &["dynamic_variables"]))]);

    let report = object(data, &["analysis"]);
    // `data_collection_results` is `{id: {value, rationale, ...}}`: the CRM
    // wants the values.
    let mut analysis: Map<String, Value> = report
        .and_then(|a| object(a, &["data_collection_results"]))
        .map(|results| {
            results
                .iter()
                .map(|(id, result)| {
                    let value = result
                        .as_object()
                        .and_then(|r| r.get("value"))
                        .unwrap_or(result);
                    (id.clone(), value.clone())
                })
                .collect()
        })
        .unwrap_or_default();
    let follow_up_needed = follow_up(&analysis);
    add_verdict(&mut analysis, report);

    let duration = metadata.and_then(|m| seconds(m, &["call_duration_secs"]));
    let started = metadata.and_then(|m| unix_seconds(m, &["start_time_unix_secs"]));
    let (ended_at, ended_at_is_receipt_time) = ctx
        .ended_at(end_of(started, duration).or_else(|| unix_seconds(&body, &["event_timestamp"])));

    Ok(CallReport {
        source: Source::Elevenlabs,
        call_id,
        caller: Caller {
            phone: phone_call
                .and_then(|p| text(p, &["external_number"]))
                .map(|n| Phone::parse(&n, ctx.region)),
            name: hints.name,
            email: hints.email,
        },
        ended_at,
        ended_at_is_receipt_time,
        duration,
        summary: report.and_then(|a| text(a, &["transcript_summary"])),
        sentiment: field(&analysis, &["sentiment"]).and_then(sentiment),
        follow_up_needed,
        analysis: analysis.into(),
        // Audio comes in its own event (`post_call_audio`), not as a link.
        recording_url: None,
        transcript: turns(field(data, &["transcript"]), &["message"]),
        crm_id: hints.crm_id,
        called_number: phone_call.and_then(|p| text(p, &["agent_number"])),
        extra: without(data, KNOWN),
        direction: phone_call
            .and_then(|p| text(p, &["direction"]))
            .and_then(|d| super::outcome::direction_word(&d)),
        outcome: super::outcome::elevenlabs(text(data, &["status"]).as_deref()),
        ended_reason: metadata.and_then(|m| text(m, &["termination_reason"])),
        agent_id: text(data, &["agent_id"]),
    })
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;
    use crate::signature::verify_at;

    // The body, secret and time of the SDK's test_construct_event_mocked_time
    // (elevenlabs-python, tests/test_webhooks.py); the SDK test computes its
    // digest at run time, so it was computed here independently with Python:
    //   python3 -c "import hmac,hashlib,json; body=json.dumps({'event_type':
    //     'speech.completed','id':'123456'}); print(hmac.new(b'test_secret',
    //     ('1600000000.'+body).encode(), hashlib.sha256).hexdigest())"
    // and with b'rotated_secret' for ROTATED.
    const BODY: &[u8] = br#"{"event_type": "speech.completed", "id": "123456"}"#;
    const T: i64 = 1_600_000_000;
    const DIGEST: &str = "f8a0d1dc33ee963cb54d2f31514555995e93313c9d2042c030adbb82b87fae13";
    const ROTATED: &str = "7691d9bc8e275e7efa9713e830716608940ba8500b7a6521733a6ed0bd4df09e";

    fn verifier(secrets: &[&str]) -> ElevenLabsSignature {
        ElevenLabsSignature {
            secrets: secrets.iter().map(|s| Secret::new(*s)).collect(),
            tolerance_secs: 1_800,
        }
    }

    fn check(
        v: &ElevenLabsSignature,
        header: &str,
        body: &[u8],
        now: i64,
    ) -> Result<(), AuthError> {
        let headers = [("elevenlabs-signature", header)];
        verify_at(
            v,
            &headers,
            body,
            OffsetDateTime::from_unix_timestamp(now).unwrap(),
        )
    }

    #[test]
    fn a_signature_computed_independently_verifies_in_either_part_order() {
        let v = verifier(&["test_secret"]);
        assert_eq!(check(&v, &format!("t={T},v0={DIGEST}"), BODY, T), Ok(()));
        // The SDK reads the parts by prefix, not by position.
        assert_eq!(check(&v, &format!("v0={DIGEST},t={T}"), BODY, T), Ok(()));
    }

    #[test]
    fn rotation_accepts_any_configured_secret() {
        let v = verifier(&["test_secret", "rotated_secret"]);
        assert_eq!(check(&v, &format!("t={T},v0={ROTATED}"), BODY, T), Ok(()));
        assert_eq!(
            check(
                &verifier(&["test_secret"]),
                &format!("t={T},v0={ROTATED}"),
                BODY,
                T
            ),
            Err(AuthError::SignatureMismatch)
        );
    }

    #[test]
    fn a_changed_byte_a_stale_or_future_time_and_a_short_digest_are_refused() {
        let v = verifier(&["test_secret"]);
        let header = format!("t={T},v0={DIGEST}");
        let mut body = BODY.to_vec();
        body[3] ^= 1;
        assert_eq!(
            check(&v, &header, &body, T),
            Err(AuthError::SignatureMismatch)
        );
        assert_eq!(check(&v, &header, BODY, T + 1_800), Ok(()));
        assert!(matches!(
            check(&v, &header, BODY, T + 1_801),
            Err(AuthError::StaleTimestamp { .. })
        ));
        assert!(matches!(
            check(&v, &header, BODY, T - 1_801),
            Err(AuthError::StaleTimestamp { .. })
        ));
        assert!(matches!(
            check(&v, &format!("t={T},v0={}", &DIGEST[..62]), BODY, T),
            Err(AuthError::MalformedSignature { .. })
        ));
        // The timestamp is part of what is signed.
        assert_eq!(
            check(&v, &format!("t={},v0={DIGEST}", T + 1), BODY, T),
            Err(AuthError::SignatureMismatch)
        );
    }

    #[test]
    fn headers_without_both_parts_are_refused() {
        let v = verifier(&["test_secret"]);
        for bad in ["invalid_format", &format!("t={T}"), &format!("v0={DIGEST}")] {
            assert!(
                matches!(
                    check(&v, bad, BODY, T),
                    Err(AuthError::MalformedSignature { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            check(&v, &format!("t=-{T},v0={DIGEST}"), BODY, T),
            Err(AuthError::MalformedTimestamp { .. })
        ));
        let missing = verify_at(&v, &[], BODY, OffsetDateTime::UNIX_EPOCH);
        assert_eq!(missing, Err(AuthError::MissingHeader(SIGNATURE_HEADER)));
    }
}
