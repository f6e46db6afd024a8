//! The VoiceDock / HMS Sovereign / Flireo `{"message": {...}}` envelope
//! (seeds 000, 001, 003, 004), in its snake_case and camelCase variants.

use std::sync::Arc;

use serde_json::Value;

use super::value::{caller, field, follow_up, object, rfc3339, seconds, text, turns, without};
use super::{Body, Credential, ParseContext, ParseError, Provider, Source};
use crate::report::{CallId, CallReport};
use crate::signature::{SEED_004, TimestampedHmac, bearer_or_query};

const FORMAT: &str = "voicedock";

pub(super) const PROVIDER: Provider = Provider {
    name: FORMAT,
    platform: "VoiceDock",
    credentials: &[
        // Seed 004: a timestamped HMAC.
        Credential {
            suffix: "SECRET",
            scheme: "a timestamped HMAC-SHA256 signature",
            verifier: |c| {
                Ok(Arc::new(TimestampedHmac {
                    scheme: SEED_004,
                    secrets: c.values,
                    tolerance_secs: c.tolerance_secs,
                }))
            },
        },
        // Seed 001: a bearer token.
        Credential {
            suffix: "TOKEN",
            scheme: "a token (Authorization: Bearer or ?token=)",
            verifier: |c| Ok(bearer_or_query(c.values)),
        },
    ],
    tolerance_secs: Some(300),
    inspect: |body| super::message_envelope(body, FINAL_EVENT, FORMAT),
    reads: super::MESSAGE_READS,
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
    "ended_reason",
    "endedReason",
];

fn parse(body: Body, call_id: CallId, ctx: &ParseContext) -> Result<CallReport, ParseError> {
    let message = super::message(&body, FORMAT)?;
    let caller = caller(object(message, &["customer"]), &["number"], ctx.region);
    let (ended_at, ended_at_is_receipt_time) = ctx.ended_at(rfc3339(message, &["timestamp"]));

    let analysis = object(message, &["analysis"]).cloned().unwrap_or_default();
    let sentiment = field(&analysis, &["sentiment"]).and_then(sentiment_text);
    let follow_up_needed = follow_up(&analysis);
    let transcript = turns(field(message, &["messages"]), &["content"]);

    let crm_id = object(message, &["assistant"])
        .and_then(|a| object(a, &["metadata"]))
        .and_then(|m| text(m, &["crm_id", "crmId"]));

    Ok(CallReport {
        source: Source::Voicedock,
        call_id,
        caller,
        ended_at,
        ended_at_is_receipt_time,
        duration: seconds(message, &["duration_seconds", "durationSeconds"]),
        summary: text(message, &["summary"]),
        sentiment,
        analysis: analysis.into(),
        recording_url: text(message, &["recording_url", "recordingUrl"]),
        transcript,
        crm_id,
        called_number: object(message, &["phone_number", "phoneNumber"])
            .and_then(|n| text(n, &["number"])),
        follow_up_needed,
        extra: without(message, KNOWN),
        direction: object(message, &["call"])
            .and_then(|c| text(c, &["type"]))
            .and_then(|t| super::outcome::voicedock_direction(&t)),
        outcome: super::outcome::voicedock(
            object(message, &["call"])
                .and_then(|c| text(c, &["status"]))
                .as_deref(),
        ),
        // The seeds name "Why the call ended" only as an analysis prompt
        // placeholder ({{ended_reason}}, {{endedReason}}); read it when a
        // report carries it.
        ended_reason: text(message, &["ended_reason", "endedReason"]),
        // "All webhooks include … `assistant`: {`id`, `name`, …}" (seed 004).
        agent_id: object(message, &["assistant"]).and_then(|a| text(a, &["id"])),
    })
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
