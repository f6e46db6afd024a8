//! Provider formats: raw webhook bytes in, a [`CallReport`] (or the news that
//! the event is not a final report) out.
//!
//! A source is one file: a [`Provider`] holding its name, the credentials it
//! accepts (and so its variables), how it tells a final report from other
//! events, and how it parses one. Registering it is one line of
//! [`registry!`]; ingest's routes, configuration, metric labels and error
//! messages, and the worker's parsing, all come from here.
//!
//! Parsers are lenient about everything except the call id: a field with an
//! unexpected type is ignored, unknown fields are kept in `analysis` or
//! `extra`, and a phone number that cannot be normalised is kept raw. The call
//! id is the one thing without which a report cannot be de-duplicated, so its
//! absence is the only reason (besides invalid JSON) to refuse a body.

mod outcome;
mod skim;
mod value;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::config::{ConfigError, Env, Secret};
use crate::phone::Region;
use crate::report::{CallId, CallReport};
use crate::signature::Verifier;

/// Declares every built-in source: `Variant => module`, one line each.
/// Generates the [`Source`] enum, [`Source::ALL`] and [`Source::provider`].
macro_rules! registry {
    ($($variant:ident => $module:ident),* $(,)?) => {
        $(pub mod $module;)*

        /// A webhook source: the `{source}` segment of `POST /webhooks/{source}`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Source {
            $($variant),*
        }

        impl Source {
            /// Every built-in source, in registration order.
            pub const ALL: [Source; [$(stringify!($variant)),*].len()] = [$(Source::$variant),*];

            /// What this source is: its name, credentials and parser.
            pub fn provider(self) -> &'static Provider {
                match self {
                    $(Source::$variant => &$module::PROVIDER),*
                }
            }
        }
    };
}

registry! {
    Voicedock => voicedock,
    Postcall => postcall,
    Vapi => vapi,
    Retell => retell,
    Elevenlabs => elevenlabs,
    Bland => bland,
}

/// A webhook body: every format is a JSON object.
pub type Body = Map<String, Value>;

/// One source's definition. Everything outside this module reads a source
/// through it instead of matching on its name.
#[derive(Debug)]
pub struct Provider {
    /// The path segment, the marker's middle part and the metric label.
    pub name: &'static str,
    /// The platform's own name, for people reading CRM records.
    pub platform: &'static str,
    /// Every credential the source can be configured with; each one
    /// configured must pass.
    pub credentials: &'static [Credential],
    /// The default replay window, when a scheme carries a timestamp
    /// (`CALLSYNC_<SOURCE>_TOLERANCE_SECS` overrides it).
    pub tolerance_secs: Option<u64>,
    /// Reads the event type and call id only: what ingest needs.
    pub inspect: fn(&Body) -> Result<Envelope, ParseError>,
    /// Every value `inspect` reads, as a path of keys: ingest builds only
    /// these of a body (see [`inspect`]). A value it reads and this omits
    /// would look absent to ingest alone, and one listed as read for its
    /// presence would look like `true`; `tests::inspect_reads_the_same_on_a_skimmed_body_as_on_the_whole`
    /// holds every source to its list.
    pub reads: skim::Reads,
    /// Reads a whole final report, whose call id `inspect` found: what the
    /// worker needs.
    pub parse: fn(Body, CallId, &ParseContext) -> Result<CallReport, ParseError>,
}

/// One way a source can authenticate its webhooks, configured by one variable.
#[derive(Debug)]
pub struct Credential {
    /// The variable's last part: `CALLSYNC_<SOURCE>_<suffix>`.
    pub suffix: &'static str,
    /// What the credential checks, in operators' words (shown with each
    /// call it let in: the console's "verified by").
    pub scheme: &'static str,
    /// The check, from the configured values; a scheme whose sender has
    /// options reads them here, and refuses at start-up what it cannot check.
    pub verifier: fn(Configured<'_>) -> Result<Arc<dyn Verifier>, ConfigError>,
}

/// What a credential's check is built from, once, at start-up.
#[derive(Debug)]
pub struct Configured<'a> {
    pub source: Source,
    /// The credential variable's values (a comma-separated list, for rotation).
    pub values: Vec<Secret>,
    /// The replay window of a scheme with a timestamp.
    pub tolerance_secs: u64,
    /// Every variable, for a scheme's options (`CALLSYNC_<SOURCE>_…`).
    pub env: &'a Env,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        self.provider().name
    }

    /// The platform's own name ("Vapi", "Retell AI").
    pub fn platform(self) -> &'static str {
        self.provider().platform
    }

    /// `CALLSYNC_<SOURCE>_<suffix>`: the name of one of this source's variables.
    pub fn var(self, suffix: &str) -> String {
        format!("CALLSYNC_{}_{suffix}", self.as_str().to_ascii_uppercase())
    }

    /// The built-in sources' names, for error messages.
    pub fn names() -> String {
        Source::ALL.map(Source::as_str).join(", ")
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Source {
    type Err = UnknownSource;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Source::ALL
            .into_iter()
            .find(|source| source.as_str() == s)
            .ok_or_else(|| UnknownSource(s.to_owned()))
    }
}

impl Serialize for Source {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Source {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown source {0:?}")]
pub struct UnknownSource(pub String);

/// What a parser needs besides the body.
#[derive(Debug, Clone, Copy)]
pub struct ParseContext {
    /// When ingest received the webhook: the end time of formats without one.
    pub received_at: OffsetDateTime,
    /// Region for phone numbers written in national format.
    pub region: Region,
}

impl ParseContext {
    /// `ended_at` and `ended_at_is_receipt_time` of a report: the end the
    /// payload gave, or else the receipt time.
    fn ended_at(&self, found: Option<OffsetDateTime>) -> (OffsetDateTime, bool) {
        found.map_or((self.received_at, true), |at| (at, false))
    }
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

/// The common shape of a typed format's `inspect`: an event type other
/// than `final_event` is ignored, without reading further (other events
/// may lack the object the call id is in); otherwise the call id is
/// required. A missing type is read as a final report: some senders omit
/// it, and a payload carrying a call id must never be silently dropped.
fn typed_envelope(
    event: Option<String>,
    final_event: &str,
    call_id: impl FnOnce() -> Result<Option<String>, ParseError>,
    format: &'static str,
    path: &'static str,
) -> Result<Envelope, ParseError> {
    if let Some(event) = event
        && event != final_event
    {
        return Ok(Envelope::Ignored(event));
    }
    final_envelope(call_id()?, format, path)
}

/// A final report, of the call `call_id` names (at `path` in the body).
fn final_envelope(
    call_id: Option<String>,
    format: &'static str,
    path: &'static str,
) -> Result<Envelope, ParseError> {
    call_id
        .and_then(|id| CallId::new(&id))
        .map(Envelope::Final)
        .ok_or(ParseError::MissingCallId { format, path })
}

/// The `message` object of a server message (VoiceDock, Vapi).
fn message<'a>(body: &'a Body, format: &'static str) -> Result<&'a Body, ParseError> {
    value::envelope(body, "message", format, "\"message\"")
}

/// What [`message_envelope`] reads.
const MESSAGE_READS: skim::Reads =
    skim::Reads::values(&[&["message", "type"], &["message", "call", "id"]]);

/// `inspect` of a server message, `{"message": {"type", "call": {"id"}}}`:
/// unlike the other typed formats, even an ignored event needs `message`.
fn message_envelope(
    body: &Body,
    final_event: &str,
    format: &'static str,
) -> Result<Envelope, ParseError> {
    let message = message(body, format)?;
    typed_envelope(
        value::text(message, &["type"]),
        final_event,
        || Ok(value::object(message, &["call"]).and_then(|call| value::text(call, &["id"]))),
        format,
        "message.call.id",
    )
}

fn object(body: &[u8]) -> Result<Map<String, Value>, ParseError> {
    let json: Value =
        serde_json::from_slice(body).map_err(|e| ParseError::NotJson(e.to_string()))?;
    match json {
        Value::Object(object) => Ok(object),
        _ => Err(ParseError::NotAnObject),
    }
}

/// Reads only what ingest needs; refuses exactly what [`parse`] refuses.
/// The body is checked whole, but only the values the source's `inspect`
/// reads are built: a long transcript costs a pass of the parser, not a
/// tree of allocations.
pub fn inspect(source: Source, body: &[u8]) -> Result<Envelope, ParseError> {
    let provider = source.provider();
    (provider.inspect)(&skim::skim(body, provider.reads)?)
}

/// Parses a webhook body of the given source: what [`inspect`] refuses is
/// refused, what it ignores is ignored, and a final report is read whole.
pub fn parse(source: Source, body: &[u8], ctx: &ParseContext) -> Result<Parsed, ParseError> {
    let provider = source.provider();
    let body = object(body)?;
    match (provider.inspect)(&body)? {
        Envelope::Ignored(event) => Ok(Parsed::Ignored { event }),
        Envelope::Final(call_id) => {
            (provider.parse)(body, call_id, ctx).map(|report| Parsed::Report(Box::new(report)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sources_round_trip_through_their_path_names() {
        for source in Source::ALL {
            assert_eq!(source.as_str().parse::<Source>().unwrap(), source);
            let json = serde_json::to_string(&source).unwrap();
            assert_eq!(json, format!("\"{source}\""));
            assert_eq!(serde_json::from_str::<Source>(&json).unwrap(), source);
        }
        assert!("nosuch".parse::<Source>().is_err());
        assert!("Vapi".parse::<Source>().is_err(), "names are lowercase");
    }

    #[test]
    fn names_and_variables_are_unique_and_lowercase() {
        let mut names: Vec<_> = Source::ALL.map(Source::as_str).to_vec();
        assert!(
            names
                .iter()
                .all(|n| n.chars().all(|c| c.is_ascii_lowercase()))
        );
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Source::ALL.len());
        assert_eq!(Source::Postcall.var("TOKEN"), "CALLSYNC_POSTCALL_TOKEN");
    }

    /// Each documented body, and each with every value one of the paths
    /// reads taken away, set to null or replaced by the wrong type, read by
    /// every source: `inspect` answers on the skimmed body what it answers
    /// on the whole one.
    #[test]
    fn inspect_reads_the_same_on_a_skimmed_body_as_on_the_whole() {
        let dir = format!("{}/fixtures", env!("CARGO_MANIFEST_DIR"));
        let mut bodies = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            if let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&bytes) {
                bodies.push(Value::Object(body));
            }
        }
        assert!(bodies.len() >= 20, "the fixtures are read");
        let mut variants = Vec::new();
        for body in &bodies {
            variants.push(body.clone());
            for source in Source::ALL {
                let reads = source.provider().reads;
                for path in reads.values.iter().chain(reads.present) {
                    let pointer: String = path.iter().map(|k| format!("/{k}")).collect();
                    for replacement in [None, Some(Value::Null), Some(json!(7)), Some(json!(["x"]))]
                    {
                        let mut variant = body.clone();
                        let (parent, key) = pointer.rsplit_once('/').unwrap();
                        let Some(Value::Object(map)) = variant.pointer_mut(parent) else {
                            continue;
                        };
                        match &replacement {
                            None => map.remove(key),
                            Some(value) => map.insert(key.to_owned(), value.clone()),
                        };
                        variants.push(variant);
                    }
                }
            }
        }
        let mut compared = 0;
        for body in &variants {
            let bytes = serde_json::to_vec(body).unwrap();
            for source in Source::ALL {
                let whole = (source.provider().inspect)(&object(&bytes).unwrap());
                assert_eq!(inspect(source, &bytes), whole, "{source}: {body}");
                compared += 1;
            }
        }
        assert!(compared > 1_000, "{compared} comparisons");
    }

    #[test]
    fn every_source_accepts_at_least_one_credential() {
        for source in Source::ALL {
            assert!(!source.provider().credentials.is_empty(), "{source}");
        }
    }
}
