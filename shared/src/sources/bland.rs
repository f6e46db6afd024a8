//! Bland post-call webhooks: the call object itself, with no event field.
//!
//! Bland posts other bodies to the same URL: live `webhook_events` (log
//! entries with a `category`), the dashboard's "Test Webhook", and 30–60 s
//! after the report a second POST with the corrected transcript and its
//! citations. With no event field to tell them apart, a body is the final
//! report only when Bland says the call is over (`completed: true`) and it
//! carries the call (not only the corrected transcript); everything else is
//! answered as ignored, and reconciliation finds a call whose report was
//! missed.

use std::sync::Arc;

use serde_json::Value;

use super::value::{
    Hints, duration_secs, end_of, field, follow_up, number, object, rfc3339, seconds, sentiment,
    text, text_transcript, turns_of, without,
};
use super::{
    Body, Credential, Envelope, ParseContext, ParseError, Provider, Source, final_envelope,
};
use crate::config::Secret;
use crate::phone::{Phone, Region};
use crate::report::{CallId, CallReport, Caller, Direction, Transcript};
use crate::signature::{
    AuthError, Request, Verifier, any_secret_signs, bearer_or_query, hex_digest,
};

const FORMAT: &str = "bland";
pub const SIGNATURE_HEADER: &str = "X-Webhook-Signature";

pub(super) const PROVIDER: Provider = Provider {
    name: FORMAT,
    platform: "Bland AI",
    credentials: &[
        Credential {
            suffix: "SECRET",
            scheme: "Bland's HMAC-SHA256 signature",
            verifier: |c| Ok(Arc::new(BlandSignature { secrets: c.values })),
        },
        Credential {
            suffix: "TOKEN",
            scheme: "a token (Authorization: Bearer or ?token=)",
            verifier: |c| Ok(bearer_or_query(c.values)),
        },
    ],
    // Bland's signature has no timestamp, so there is no replay window.
    tolerance_secs: None,
    inspect,
    reads: READS,
    parse,
};

/// Bland's webhook signing: `X-Webhook-Signature` is the hex HMAC-SHA256
/// of the raw body under the signing secret. With no timestamp signed, a
/// replayed body verifies; the ledger makes it a duplicate.
#[derive(Debug, Clone)]
pub struct BlandSignature {
    pub secrets: Vec<Secret>,
}

impl Verifier for BlandSignature {
    fn verify(&self, request: &Request<'_>) -> Result<(), AuthError> {
        let header = request.required_header(SIGNATURE_HEADER)?;
        let presented = hex_digest(header, false).ok_or(AuthError::MalformedSignature {
            header: SIGNATURE_HEADER,
            expected: "<64 hex digits>",
        })?;
        any_secret_signs(&self.secrets, &[request.body], &presented)
    }
}

/// Top-level keys that map onto canonical fields; the rest go to `extra`.
const KNOWN: &[&str] = &[
    "call_id",
    "inbound",
    "from",
    "to",
    "started_at",
    "created_at",
    "call_length",
    "corrected_duration",
    "summary",
    "analysis",
    "concatenated_transcript",
    "corrected_transcript",
    "citations",
    "transcripts",
    "recording_url",
    "metadata",
    "call_ended_by",
];

/// The answer to a body Bland posts before its call is over, or without
/// saying so (the dashboard's test webhook).
pub const NOT_COMPLETED: &str = "call-not-completed";
/// The answer to Bland's delayed second POST when it carries only the
/// corrected transcript and citations, not the call.
pub const CORRECTED_TRANSCRIPT: &str = "corrected-transcript";

/// Keys of the immediate report's call object that the delayed POST, as
/// Bland's cookbook documents it, does not carry: a body with none of them
/// has nothing to make a CRM record of.
const CALL_FIELDS: &[&str] = &[
    "to",
    "from",
    "inbound",
    "call_length",
    "started_at",
    "summary",
    "concatenated_transcript",
    "transcripts",
];

/// What [`inspect`] reads: the event stream's `category`, `completed` and
/// `call_id`; of the delayed POST's keys and [`CALL_FIELDS`] (transcripts
/// among them) only whether they are there.
const READS: super::skim::Reads = super::skim::Reads {
    values: &[&["category"], &["completed"], &["call_id"]],
    present: &[
        &["corrected_transcript"],
        &["citations"],
        &["to"],
        &["from"],
        &["inbound"],
        &["call_length"],
        &["started_at"],
        &["summary"],
        &["concatenated_transcript"],
        &["transcripts"],
    ],
};

fn inspect(body: &Body) -> Result<Envelope, ParseError> {
    // The event stream's entries, `{level, message, category, call_id,
    // timestamp}` (docs.bland.ai/api-v1/get/event-stream).
    if let Some(category) = text(body, &["category"]) {
        return Ok(Envelope::Ignored(category));
    }
    // "Delayed webhook payload (arrives 30 to 60 seconds later)":
    // `corrected_transcript` and `citations` (Bland-com/bland-ai-cookbooks
    // @ 62d2620d, `10-call-analysis/README.md`). Whether it repeats the call
    // object is not documented: when it does, it is a report like the
    // first; when it does not, it has no caller to sync and is ignored.
    let delayed = ["corrected_transcript", "citations"]
        .iter()
        .any(|key| body.contains_key(*key));
    if delayed && !CALL_FIELDS.iter().any(|key| field(body, &[key]).is_some()) {
        return Ok(Envelope::Ignored(CORRECTED_TRANSCRIPT.to_owned()));
    }
    // `completed`: "Whether the call has been completed. If it differs from
    // the value of 'queue_status', this will be the most up-to-date status"
    // (docs.bland.ai/api-v1/get/calls-id). Only a boolean `true` counts: a
    // body Bland posts during the call, or one it does not mark, is not the
    // report, and taking it as one would make the real report a duplicate.
    if field(body, &["completed"]) != Some(&Value::Bool(true)) {
        return Ok(Envelope::Ignored(NOT_COMPLETED.to_owned()));
    }
    final_envelope(text(body, &["call_id"]), FORMAT, "call_id")
}

fn parse(body: Body, call_id: CallId, ctx: &ParseContext) -> Result<CallReport, ParseError> {
    // The customer is `from` on an inbound call and `to` on an outbound one.
    let inbound = field(&body, &["inbound"]).and_then(Value::as_bool) == Some(true);
    let (customer, ours) = if inbound {
        ("from", "to")
    } else {
        ("to", "from")
    };
    let metadata = object(&body, &["metadata"]);
    let hints = Hints::from(&[metadata]);

    let analysis = object(&body, &["analysis"]).cloned().unwrap_or_default();
    let variables = object(&body, &["variables"]);
    let follow_up_needed = follow_up(&analysis) || variables.is_some_and(follow_up);

    // `call_length` is in minutes; `end_at` is the scheduled cut-off, not
    // when the call ended, so the end is the start plus the length.
    let duration = number(&body, &["call_length"])
        .and_then(|minutes| duration_secs(minutes * 60.0))
        .or_else(|| seconds(&body, &["corrected_duration"]));
    let started = rfc3339(&body, &["started_at", "created_at"]);
    let (ended_at, ended_at_is_receipt_time) = ctx.ended_at(end_of(started, duration));

    Ok(CallReport {
        source: Source::Bland,
        call_id,
        caller: Caller {
            phone: text(&body, &[customer]).map(|n| phone(&n, ctx.region)),
            name: hints.name,
            email: hints.email,
        },
        ended_at,
        ended_at_is_receipt_time,
        duration,
        summary: text(&body, &["summary"]),
        sentiment: field(&analysis, &["sentiment"]).and_then(sentiment),
        follow_up_needed,
        analysis: analysis.into(),
        recording_url: text(&body, &["recording_url"]),
        transcript: transcript(&body),
        crm_id: hints.crm_id,
        called_number: text(&body, &[ours]),
        extra: without(&body, KNOWN),
        // `inbound`: "Will be `false` for outbound calls"
        // (docs.bland.ai/api-v1/get/calls-id); absent, no direction.
        direction: field(&body, &["inbound"])
            .and_then(Value::as_bool)
            .map(|inbound| {
                if inbound {
                    Direction::Inbound
                } else {
                    Direction::Outbound
                }
            }),
        outcome: super::outcome::bland(
            text(&body, &["answered_by"]).as_deref(),
            text(&body, &["queue_status"]).as_deref(),
        ),
        ended_reason: text(&body, &["call_ended_by"]),
        // Bland's call object names no agent: a call is sent with a task
        // or a pathway, not an agent id.
        agent_id: None,
    })
}

/// The best transcript a body carries: the corrected one (an object of
/// `segments`, `{speaker, text, confidence, start_time, end_time}`, as the
/// cookbook documents it, or text), else the call's own
/// `concatenated_transcript`.
fn transcript(body: &Body) -> Option<Transcript> {
    let corrected = match field(body, &["corrected_transcript"]) {
        Some(Value::Object(corrected)) => {
            turns_of(field(corrected, &["segments"]), &["speaker"], &["text"])
        }
        Some(Value::String(corrected)) => text_transcript(corrected),
        _ => None,
    };
    corrected.or_else(|| text(body, &["concatenated_transcript"]).and_then(|t| text_transcript(&t)))
}

/// Bland writes numbers without their `+`. Ten bare digits are a North
/// American number: Bland's own examples write US numbers so (`"to":
/// "5551234567"` in docs.bland.ai/api-v1/get/calls), whatever region the
/// operator's own customers are in. Eleven or more bare digits are an
/// international number, since no national plan is that long. Anything
/// else (a number with spaces, brackets or a trunk prefix) is read in the
/// default region.
fn phone(raw: &str, region: Region) -> Phone {
    let bare = raw.bytes().all(|b| b.is_ascii_digit());
    let international = match raw.len() {
        10 if bare => Some(format!("+1{raw}")),
        11.. if bare => Some(format!("+{raw}")),
        _ => None,
    };
    if let Some(international) = international {
        let parsed = Phone::parse(&international, region);
        if parsed.e164.is_some() {
            return Phone {
                raw: raw.to_owned(),
                ..parsed
            };
        }
    }
    Phone::parse(raw, region)
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;
    use crate::signature::verify_at;

    // Computed independently:
    //   printf '%s' '{"call_id":"c-1","inbound":true}' | openssl dgst -sha256 -hmac bland-secret
    // and with -hmac bland-old for OLD.
    const BODY: &[u8] = br#"{"call_id":"c-1","inbound":true}"#;
    const SIG: &str = "636821ccaeeed967ebc38888771b3c775f0c9003321b1de646efa7bbec509308";
    const OLD: &str = "e276ea955118c492908d1fe178fbd73ec6b8b5a72c836aeb6331dad6e6101c4e";

    fn check(secrets: &[&str], headers: &[(&str, &str)], body: &[u8]) -> Result<(), AuthError> {
        let v = BlandSignature {
            secrets: secrets.iter().map(|s| Secret::new(*s)).collect(),
        };
        verify_at(&v, headers, body, OffsetDateTime::UNIX_EPOCH)
    }

    #[test]
    fn a_body_signed_with_any_configured_secret_verifies() {
        let both = ["bland-secret", "bland-old"];
        assert_eq!(check(&both, &[(SIGNATURE_HEADER, SIG)], BODY), Ok(()));
        assert_eq!(check(&both, &[("x-webhook-signature", OLD)], BODY), Ok(()));
        assert_eq!(
            check(&["bland-secret"], &[(SIGNATURE_HEADER, OLD)], BODY),
            Err(AuthError::SignatureMismatch)
        );
    }

    #[test]
    fn a_changed_byte_a_short_digest_or_a_missing_header_is_refused() {
        let mut body = BODY.to_vec();
        body[2] ^= 1;
        assert_eq!(
            check(&["bland-secret"], &[(SIGNATURE_HEADER, SIG)], &body),
            Err(AuthError::SignatureMismatch)
        );
        assert!(matches!(
            check(&["bland-secret"], &[(SIGNATURE_HEADER, &SIG[..60])], BODY),
            Err(AuthError::MalformedSignature { .. })
        ));
        let prefixed = format!("sha256={SIG}");
        assert!(matches!(
            check(&["bland-secret"], &[(SIGNATURE_HEADER, &prefixed)], BODY),
            Err(AuthError::MalformedSignature { .. })
        ));
        assert_eq!(
            check(&["bland-secret"], &[], BODY),
            Err(AuthError::MissingHeader(SIGNATURE_HEADER))
        );
    }

    #[test]
    fn a_number_without_its_plus_is_read_as_international() {
        let uk = phone("447700900123", Region::US);
        assert_eq!(uk.e164.as_deref(), Some("+447700900123"));
        assert_eq!(uk.raw, "447700900123");
        let national = phone("(415) 555-0132", Region::US);
        assert_eq!(national.e164.as_deref(), Some("+14155550132"));
        let gb: Region = "GB".parse().unwrap();
        let north_american = phone("4155550132", gb);
        assert_eq!(north_american.e164.as_deref(), Some("+14155550132"));
        assert_eq!(
            phone("020 7946 0018", gb).e164.as_deref(),
            Some("+442079460018")
        );
    }
}
