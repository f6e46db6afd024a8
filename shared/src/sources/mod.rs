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
use crate::report::{CallReport, Source};

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

/// Parses a webhook body of the given source.
pub fn parse(source: Source, body: &[u8], ctx: &ParseContext) -> Result<Parsed, ParseError> {
    let json: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ParseError::NotJson(e.to_string()))?;
    let serde_json::Value::Object(object) = json else {
        return Err(ParseError::NotAnObject);
    };
    match source {
        Source::Voicedock => voicedock::parse(object, ctx),
        Source::Postcall => postcall::parse(object, ctx),
    }
}
