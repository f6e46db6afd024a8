//! Provider formats: raw webhook bytes in, a [`CallReport`] (or the news that
//! the event is not a final report) out.
//!
//! Parsers are lenient about everything except the call id: a field with an
//! unexpected type is ignored, unknown fields are kept in `analysis` or
//! `extra`, and a phone number that cannot be normalised is kept raw. The call
//! id is the one thing without which a report cannot be de-duplicated, so its
//! absence is the only reason (besides invalid JSON) to refuse a body.

mod postcall;
mod value;
mod voicedock;

use time::OffsetDateTime;

use crate::phone::Region;
use crate::report::{CallId, CallReport, Source};

/// What a parser needs besides the body.
#[derive(Debug, Clone, Copy)]
pub struct ParseContext {
    /// When ingest received the webhook: the end time of formats without one.
    pub received_at: OffsetDateTime,
    /// Region for phone numbers written in national format.
    pub region: Region,
}

/// A successfully read webhook body.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// A final call report, to be synced.
    Report(Box<CallReport>),
    /// A valid event that is not a final call report (`status-update`, ...).
    Ignored { event: String },
}

/// What ingest needs to know of a body: whether it is a final report, and
/// of which call. Reading it skips everything else (phone normalisation in
/// particular), which keeps the webhook's answer fast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Envelope {
    Final(CallId),
    Ignored(String),
}

/// Why a body cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    #[error("body is JSON but not an object")]
    NotAnObject,
    #[error("{format} payload has no {path} object")]
    MissingEnvelope {
        format: &'static str,
        path: &'static str,
    },
    #[error("{format} payload has no call id (expected a non-empty string at {path})")]
    MissingCallId {
        format: &'static str,
        path: &'static str,
    },
}

impl ParseError {
    /// True when the body is not JSON at all (400); otherwise the JSON lacks
    /// what a call report needs (422).
    pub fn is_syntax(&self) -> bool {
        matches!(self, ParseError::NotJson(_))
    }
}

fn object(body: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, ParseError> {
    let json: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ParseError::NotJson(e.to_string()))?;
    match json {
        serde_json::Value::Object(object) => Ok(object),
        _ => Err(ParseError::NotAnObject),
    }
}

/// Reads only what ingest needs; refuses exactly what [`parse`] refuses.
pub fn inspect(source: Source, body: &[u8]) -> Result<Envelope, ParseError> {
    let object = object(body)?;
    match source {
        Source::Voicedock => voicedock::inspect(&object),
        Source::Postcall => postcall::inspect(&object),
    }
}

/// Parses a webhook body of the given source.
pub fn parse(source: Source, body: &[u8], ctx: &ParseContext) -> Result<Parsed, ParseError> {
    let object = object(body)?;
    match source {
        Source::Voicedock => voicedock::parse(object, ctx),
        Source::Postcall => postcall::parse(object, ctx),
    }
}
