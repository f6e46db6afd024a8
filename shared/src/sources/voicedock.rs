//! The VoiceDock / HMS Sovereign / Flireo `{"message": {...}}` envelope
//! (seeds 000, 001, 003, 004), in its snake_case and camelCase variants.

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use std::sync::Arc;

use super::value::{field, flag, object, seconds, text, without};
use super::{
    Credential, Envelope, ParseContext, ParseError, Parsed, Provider, Source, typed_envelope,
};
use crate::phone::Phone;
use crate::report::{CallReport, Caller, Transcript, TranscriptLine};
use crate::signature::{SEED_004, TimestampedHmac, bearer_or_query};

const FORMAT: &str = "voicedock";

pub(super) const PROVIDER: Provider = Provider {
    name: FORMAT,
    platform: "VoiceDock",
    credentials: &[
        // Seed 004: a timestamped HMAC.
        Credential {
            suffix: "SECRET",
            verifier: |secrets, tolerance_secs| {
                Arc::new(TimestampedHmac {
                    scheme: SEED_004,
                    secrets,
                    tolerance_secs,
                })
            },
        },
        // Seed 001: a bearer token.
        Credential {
            suffix: "TOKEN",
            verifier: bearer_or_query,
        },
    ],
    tolerance_secs: Some(300),
    inspect,
    parse,
};
/// The only event type that is a final call report.
pub const FINAL_EVENT: &str = "end-of-call-report";

/// Keys of `message` that map onto canonical fields; the rest go to `extra`.
const KNOWN: &[&str] = &[
    "type",
    "timestamp",
    "call",
    "phone_number",
    "phoneNumber",
    "customer",
    "duration_seconds",
    "durationSeconds",
    "summary",
    "analysis",
    "messages",
    "recording_url",
    "recordingUrl",
    "assistant",
];

fn message(body: &Map<String, Value>) -> Result<&Map<String, Value>, ParseError> {
    super::value::envelope(body, "message", FORMAT, "\"message\"")
}

/// The event type and call id: all ingest needs to accept or refuse a body.
fn inspect(body: &Map<String, Value>) -> Result<Envelope, ParseError> {
    let message = message(body)?;
    typed_envelope(
        text(message, &["type"]),
        FINAL_EVENT,
        object(message, &["call"]).and_then(|call| text(call, &["id"])),
        FORMAT,
        "message.call.id",
    )
}

fn parse(body: Map<String, Value>, ctx: &ParseContext) -> Result<Parsed, ParseError> {
    let call_id = match inspect(&body)? {
        Envelope::Ignored(event) => return Ok(Parsed::Ignored { event }),
        Envelope::Final(call_id) => call_id,
    };
    let message = message(&body)?;

    let customer = object(message, &["customer"]);
    let caller = Caller {
        phone: customer
            .and_then(|c| text(c, &["number"]))
            .map(|n| Phone::parse(&n, ctx.region)),
        name: customer.and_then(|c| text(c, &["name"])),
        email: customer.and_then(|c| text(c, &["email"])),
    };

    let (ended_at, ended_at_is_receipt_time) = text(message, &["timestamp"])
        .and_then(|t| OffsetDateTime::parse(&t, &Rfc3339).ok())
        .map_or((ctx.received_at, true), |t| (t, false));

    let analysis = object(message, &["analysis"]).cloned().unwrap_or_default();
    let sentiment = field(&analysis, &["sentiment"]).and_then(sentiment_text);
    let follow_up_needed = flag(&analysis, &["follow_up_needed", "followUpNeeded"]);

    let transcript = field(message, &["messages"])
        .and_then(Value::as_array)
        .map(|lines| {
            lines
                .iter()
                .filter_map(Value::as_object)
                .filter_map(|line| {
                    Some(TranscriptLine {
                        role: text(line, &["role"]).unwrap_or_else(|| "unknown".to_owned()),
                        content: text(line, &["content"])?,
                    })
                })
                .collect::<Vec<_>>()
        })
        .filter(|lines| !lines.is_empty())
        .map(Transcript::Lines);

    let crm_id = object(message, &["assistant"])
        .and_then(|a| object(a, &["metadata"]))
        .and_then(|m| text(m, &["crm_id", "crmId"]));

    Ok(Parsed::Report(Box::new(CallReport {
        source: Source::Voicedock,
        call_id,
        caller,
        ended_at,
        ended_at_is_receipt_time,
        duration: seconds(message, &["duration_seconds", "durationSeconds"]),
        summary: text(message, &["summary"]),
        sentiment,
        analysis,
        recording_url: text(message, &["recording_url", "recordingUrl"]),
        transcript,
        crm_id,
        called_number: object(message, &["phone_number", "phoneNumber"])
            .and_then(|n| text(n, &["number"])),
        follow_up_needed,
        extra: without(message, KNOWN),
    })))
}

/// Sentiment is a 1–10 score in the documented analysis schema; customers
/// may define it as a word instead, which is kept as written.
fn sentiment_text(value: &Value) -> Option<String> {
    match value {
        Value::Number(n) => Some(format!("{n}/10")),
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    }
}
