//! The canonical call report: what every provider format is parsed into.
//!
//! Everything after the parsing boundary works with these types, never with
//! provider JSON paths, so a new provider is a new source file and nothing else.

use std::fmt;
use std::ops::Index;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::phone::Phone;
pub use crate::sources::{Source, UnknownSource};

/// The provider's identifier of a call: non-empty, at most 200 printable characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CallId(String);

impl CallId {
    pub const MAX_LEN: usize = 200;

    /// Accepts a trimmed, non-empty id without control characters.
    pub fn new(raw: &str) -> Option<Self> {
        let id = raw.trim();
        let ok = !id.is_empty()
            && id.chars().count() <= Self::MAX_LEN
            && !id.chars().any(char::is_control);
        ok.then(|| Self(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The person who called, as far as the provider knows them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Caller {
    pub phone: Option<Phone>,
    pub name: Option<String>,
    pub email: Option<String>,
}

impl Caller {
    /// A name for task subjects: the caller's name, else the masked-free raw
    /// number, else "unknown caller".
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .or_else(|| self.phone.as_ref().map(|p| p.best().to_owned()))
            .unwrap_or_else(|| "unknown caller".to_owned())
    }
}

/// One line of a transcript.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TranscriptLine {
    pub role: String,
    pub content: String,
}

/// A transcript, inline or by reference.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transcript {
    Lines(Vec<TranscriptLine>),
    Uri(String),
}

/// The provider's structured analysis, verbatim, unknown keys included:
/// whatever the customer asked their agent to extract, so its keys are the
/// customer's and only its text form is callsync's.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Analysis(Map<String, Value>);

impl Analysis {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// One `key: value` line per entry, in key order: a string as it is,
    /// anything else as JSON. Every CRM record shows the analysis this way.
    pub fn lines(&self) -> impl Iterator<Item = String> + '_ {
        self.0.iter().map(|(key, value)| match value {
            Value::String(text) => format!("{key}: {text}"),
            other => format!("{key}: {other}"),
        })
    }
}

impl From<Map<String, Value>> for Analysis {
    fn from(entries: Map<String, Value>) -> Self {
        Self(entries)
    }
}

impl Index<&str> for Analysis {
    type Output = Value;

    /// The value under `key`; panics when there is none, as a map does.
    fn index(&self, key: &str) -> &Value {
        &self.0[key]
    }
}

/// Which way a call went, from our side: the customer called us, or we
/// (the AI agent) called the customer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened on the line, normalised from the platform's own ended
/// reason (the mapping tables are in `sources/outcome.rs`). Only what a
/// platform documents is mapped: a reason callsync cannot place is no
/// outcome at all, never a guess.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Someone (or something, for an inbound call: the caller) was on the
    /// line and the call ran its course.
    Connected,
    /// The call reached an answering machine or voicemail.
    Voicemail,
    /// The number called did not answer.
    NoAnswer,
    /// The number called was busy.
    Busy,
    /// The call failed: an error of the platform, the telephony provider
    /// or the configuration, before or during the call.
    Failed,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Connected,
        Outcome::Voicemail,
        Outcome::NoAnswer,
        Outcome::Busy,
        Outcome::Failed,
    ];

    /// The contract's name: `connected`, `voicemail`, `no_answer`, `busy`, `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Connected => "connected",
            Outcome::Voicemail => "voicemail",
            Outcome::NoAnswer => "no_answer",
            Outcome::Busy => "busy",
            Outcome::Failed => "failed",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finished call, in callsync's own terms.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallReport {
    pub source: Source,
    pub call_id: CallId,
    pub caller: Caller,
    /// When the call ended; for formats without an end time, when ingest received it.
    #[serde(with = "time::serde::rfc3339")]
    pub ended_at: OffsetDateTime,
    /// True when `ended_at` is the receipt time because the payload has none.
    pub ended_at_is_receipt_time: bool,
    pub duration: Option<Duration>,
    pub summary: Option<String>,
    /// A short sentiment for the contact's last-call field (`8/10`, `Positive`).
    pub sentiment: Option<String>,
    pub analysis: Analysis,
    pub recording_url: Option<String>,
    pub transcript: Option<Transcript>,
    /// A CRM record id the provider was told about (`assistant.metadata.crm_id`).
    pub crm_id: Option<String>,
    /// Our number (the agent's), whichever way the call went: the number
    /// called on an inbound call, the number calling on an outbound one.
    pub called_number: Option<String>,
    /// Which way the call went, when the platform says so (a web call, or
    /// a format without the field, has none).
    #[serde(default)]
    pub direction: Option<Direction>,
    /// The platform's own reason the call ended, as it wrote it.
    #[serde(default)]
    pub ended_reason: Option<String>,
    /// The ended reason normalised; `None` when the platform says nothing
    /// callsync can map.
    #[serde(default)]
    pub outcome: Option<Outcome>,
    /// The platform's id of the assistant or agent that took the call.
    #[serde(default)]
    pub agent_id: Option<String>,
    pub follow_up_needed: bool,
    /// Fields of the payload that callsync does not map, kept for CRMs and
    /// receivers that want them.
    pub extra: Map<String, Value>,
}

impl CallReport {
    /// The marker written into every CRM record callsync creates for this call,
    /// so that a record whose creation had an unknown outcome can be found again.
    pub fn marker(&self) -> String {
        marker(self.source, &self.call_id)
    }

    /// The numbers the call went from and to. `caller` is always the
    /// customer and `called_number` always ours, so an outbound call goes
    /// from ours to theirs and any other (inbound, or of unknown direction,
    /// read as inbound as before directions were known) from theirs to ours.
    pub fn from_to(&self) -> (Option<&str>, Option<&str>) {
        let theirs = self.caller.phone.as_ref().map(|p| p.best());
        let ours = self.called_number.as_deref();
        match self.direction {
            Some(Direction::Outbound) => (ours, theirs),
            Some(Direction::Inbound) | None => (theirs, ours),
        }
    }
}

/// `callsync:<source>:<call id>`.
pub fn marker(source: Source, call_id: &CallId) -> String {
    format!("callsync:{source}:{call_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_id_must_be_printable_and_not_empty() {
        assert!(CallId::new("  ").is_none());
        assert!(CallId::new("a\u{0}b").is_none());
        assert!(CallId::new(&"x".repeat(201)).is_none());
        assert_eq!(CallId::new(" abc ").unwrap().as_str(), "abc");
    }

    #[test]
    fn analysis_lines_show_strings_bare_and_other_values_as_json() {
        let analysis = Analysis::from(
            serde_json::json!({ "intent": "billing", "score": 8, "tags": ["a"], "done": true })
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
        let lines: Vec<String> = analysis.lines().collect();
        assert_eq!(
            lines,
            ["done: true", "intent: billing", "score: 8", "tags: [\"a\"]"]
        );
        assert_eq!(
            serde_json::to_value(&analysis).unwrap()["intent"],
            "billing",
            "serialised as the plain map"
        );
    }

    #[test]
    fn direction_and_outcome_have_the_contracts_names() {
        assert_eq!(
            serde_json::to_value(Direction::Outbound).unwrap(),
            "outbound"
        );
        assert_eq!(Direction::Inbound.to_string(), "inbound");
        let names: Vec<String> = Outcome::ALL
            .iter()
            .map(|o| {
                serde_json::to_value(o)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(
            names,
            ["connected", "voicemail", "no_answer", "busy", "failed"]
        );
        for outcome in Outcome::ALL {
            assert_eq!(serde_json::to_value(outcome).unwrap(), outcome.as_str());
        }
    }

    #[test]
    fn an_outbound_call_goes_from_our_number_to_theirs() {
        let mut report = CallReport {
            source: Source::Retell,
            call_id: CallId::new("c-1").unwrap(),
            caller: Caller {
                phone: Some(Phone::parse("+12137775678", crate::Region::US)),
                ..Caller::default()
            },
            ended_at: OffsetDateTime::UNIX_EPOCH,
            ended_at_is_receipt_time: false,
            duration: None,
            summary: None,
            sentiment: None,
            analysis: Analysis::default(),
            recording_url: None,
            transcript: None,
            crm_id: None,
            called_number: Some("+12137770000".to_owned()),
            direction: Some(Direction::Outbound),
            ended_reason: None,
            outcome: None,
            agent_id: None,
            follow_up_needed: false,
            extra: Map::new(),
        };
        assert_eq!(
            report.from_to(),
            (Some("+12137770000"), Some("+12137775678"))
        );
        report.direction = Some(Direction::Inbound);
        assert_eq!(
            report.from_to(),
            (Some("+12137775678"), Some("+12137770000"))
        );
        report.direction = None;
        assert_eq!(
            report.from_to(),
            (Some("+12137775678"), Some("+12137770000")),
            "an unknown direction is written as inbound"
        );
    }

    #[test]
    fn the_marker_names_source_and_call() {
        let id = CallId::new("693bff62619c51fac21acf50").unwrap();
        assert_eq!(
            marker(Source::Postcall, &id),
            "callsync:postcall:693bff62619c51fac21acf50"
        );
    }
}
