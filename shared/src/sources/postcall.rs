//! The flat Post-Call payload (seed 002): `callId`, `callerDetails`,
//! `callAnalysis`. It has one event type and no end time: the call is taken
//! to have ended when ingest received it.

use serde_json::Value;

use super::value::{caller, field, follow_up, object, text, without};
use super::{
    Body, Credential, Envelope, ParseContext, ParseError, Provider, Source, final_envelope,
};
use crate::report::{CallId, CallReport, Transcript};
use crate::signature::bearer_or_query;

const FORMAT: &str = "postcall";

pub(super) const PROVIDER: Provider = Provider {
    name: FORMAT,
    platform: "Post-Call",
    // The format has no signature of its own: only tokens apply.
    credentials: &[Credential {
        suffix: "TOKEN",
        scheme: "a token (Authorization: Bearer or ?token=)",
        verifier: |c| Ok(bearer_or_query(c.values)),
    }],
    tolerance_secs: None,
    inspect,
    reads: super::skim::Reads::values(&[&["callId"]]),
    parse,
};

/// Top-level keys that map onto canonical fields; the rest go to `extra`.
const KNOWN: &[&str] = &[
    "callId",
    "recordingUri",
    "transcriptUri",
    "callerDetails",
    "callAnalysis",
];
/// Keys of `callerDetails` that map onto canonical fields.
const KNOWN_CALLER: &[&str] = &["name", "phoneNumber", "email"];

/// The call id: the format has one event type only.
fn inspect(body: &Body) -> Result<Envelope, ParseError> {
    final_envelope(text(body, &["callId"]), FORMAT, "callId")
}

fn parse(body: Body, call_id: CallId, ctx: &ParseContext) -> Result<CallReport, ParseError> {
    let details = object(&body, &["callerDetails"]);
    let caller = caller(details, &["phoneNumber"], ctx.region);

    let analysis = object(&body, &["callAnalysis"])
        .cloned()
        .unwrap_or_default();
    // `mood` is the short human word ("Positive"); the `sentiment` object is
    // free-form, so it is only used when it is a plain string.
    let sentiment = text(&analysis, &["mood"]).or_else(|| match field(&analysis, &["sentiment"]) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    });

    let mut extra = without(&body, KNOWN);
    if let Some(details) = details {
        let unmapped = without(details, KNOWN_CALLER);
        if !unmapped.is_empty() {
            extra.insert("callerDetails".to_owned(), Value::Object(unmapped));
        }
    }

    Ok(CallReport {
        source: Source::Postcall,
        call_id,
        caller,
        ended_at: ctx.received_at,
        ended_at_is_receipt_time: true,
        duration: None,
        summary: text(&analysis, &["summary"]),
        sentiment,
        follow_up_needed: follow_up(&analysis),
        analysis: analysis.into(),
        recording_url: text(&body, &["recordingUri"]),
        transcript: text(&body, &["transcriptUri"]).map(Transcript::Uri),
        crm_id: None,
        called_number: None,
        extra,
        // The format documents no direction, ended reason or agent
        // (`callAnalysis.callOutcome` is the business result, "Demo
        // Scheduled", not what happened on the line).
        direction: None,
        ended_reason: None,
        outcome: None,
        agent_id: None,
    })
}
