//! The values of a call a rule can name, and their typed value for one call.

use std::fmt;
use std::str::FromStr;

use callsync_shared::CallReport;
use serde_json::Value as Json;
use time::OffsetDateTime;

/// A value of a call (`from = "…"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum From {
    /// `analysis.<key>`: a key of the structured analysis, whatever the
    /// platform calls it.
    Analysis(String),
    Summary,
    Sentiment,
    Direction,
    Outcome,
    EndedReason,
    DurationSeconds,
    EndedAt,
    RecordingUrl,
    AgentId,
    Source,
    CallId,
    CallerNumber,
    CallerName,
    CallerEmail,
}

/// The names `from` accepts besides `analysis.<key>`, with their values.
const NAMED: &[(&str, From)] = &[
    ("summary", From::Summary),
    ("sentiment", From::Sentiment),
    ("direction", From::Direction),
    ("outcome", From::Outcome),
    ("ended_reason", From::EndedReason),
    ("duration_seconds", From::DurationSeconds),
    ("ended_at", From::EndedAt),
    ("recording_url", From::RecordingUrl),
    ("agent_id", From::AgentId),
    ("source", From::Source),
    ("call_id", From::CallId),
    ("caller.number", From::CallerNumber),
    ("caller.name", From::CallerName),
    ("caller.email", From::CallerEmail),
];

impl FromStr for From {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if let Some(key) = text.strip_prefix("analysis.")
            && !key.trim().is_empty()
        {
            return Ok(From::Analysis(key.to_owned()));
        }
        NAMED
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(_, from)| from.clone())
            .ok_or_else(|| {
                let names: Vec<&str> = NAMED.iter().map(|(n, _)| *n).collect();
                format!(
                    "unknown value {text:?}; expected analysis.<key> or one of {}",
                    names.join(", ")
                )
            })
    }
}

impl fmt::Display for From {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            From::Analysis(key) => write!(f, "analysis.{key}"),
            other => {
                let name = NAMED
                    .iter()
                    .find(|(_, from)| from == other)
                    .map_or("?", |(name, _)| name);
                f.write_str(name)
            }
        }
    }
}

/// What a value can be, whatever the call: the check of a rule against its
/// field's type at start-up uses this, so that a rule that could only ever
/// fail (text into a number field) is a set-up error, not a skipped field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Number,
    Time,
    /// An analysis value: text, number, true/false, a list… decided per
    /// call, so it is converted per call and skipped when it does not fit.
    Any,
}

impl From {
    pub fn kind(&self) -> Kind {
        match self {
            From::Analysis(_) => Kind::Any,
            From::DurationSeconds => Kind::Number,
            From::EndedAt => Kind::Time,
            _ => Kind::Text,
        }
    }

    /// This call's value, if it has one.
    pub fn resolve(&self, report: &CallReport) -> Option<Value> {
        let text = |t: Option<&str>| {
            t.map(str::trim)
                .filter(|t| !t.is_empty())
                .map(|t| Value::Text(t.to_owned()))
        };
        match self {
            From::Analysis(key) => analysis_value(report, key),
            From::Summary => text(report.summary.as_deref()),
            From::Sentiment => text(report.sentiment.as_deref()),
            From::Direction => report.direction.map(|d| Value::Text(d.as_str().to_owned())),
            From::Outcome => report.outcome.map(|o| Value::Text(o.as_str().to_owned())),
            From::EndedReason => text(report.ended_reason.as_deref()),
            From::DurationSeconds => report.duration.map(|d| Value::Number(d.as_secs_f64())),
            // A receipt time stands in for an end time the format lacks;
            // it is the call's `ended_at` everywhere else too.
            From::EndedAt => Some(Value::Time(report.ended_at)),
            From::RecordingUrl => text(report.recording_url.as_deref()),
            From::AgentId => text(report.agent_id.as_deref()),
            From::Source => Some(Value::Text(report.source.to_string())),
            From::CallId => Some(Value::Text(report.call_id.to_string())),
            From::CallerNumber => text(report.caller.phone.as_ref().map(|p| p.best())),
            From::CallerName => text(report.caller.name.as_deref()),
            From::CallerEmail => text(report.caller.email.as_deref()),
        }
    }
}

fn analysis_value(report: &CallReport, key: &str) -> Option<Value> {
    let entry = serde_json::to_value(&report.analysis).ok()?;
    match entry.get(key)? {
        Json::Null => None,
        Json::String(text) if text.trim().is_empty() => None,
        Json::String(text) => Some(Value::Text(text.trim().to_owned())),
        Json::Bool(flag) => Some(Value::Bool(*flag)),
        Json::Number(n) => n.as_f64().map(Value::Number),
        other => Some(Value::Text(other.to_string())),
    }
}

/// One call's value, typed.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    Number(f64),
    Bool(bool),
    Time(OffsetDateTime),
}

impl Value {
    /// Its text form, for a text field (a time as RFC 3339, a whole
    /// number without a fraction).
    pub fn to_text(&self) -> String {
        match self {
            Value::Text(text) => text.clone(),
            Value::Number(n) => number_text(*n),
            Value::Bool(flag) => flag.to_string(),
            Value::Time(at) => at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|_| at.to_string()),
        }
    }
}

/// A number as text: `12` for a whole number, else its shortest decimal form.
pub fn number_text(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{n:.0}")
    } else {
        n.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callsync_shared::{CallId, Direction, Outcome, Phone, Region, Source};
    use std::time::Duration;

    fn report() -> CallReport {
        let analysis = serde_json::json!({
            "intent": "billing",
            "score": 8,
            "resolved": false,
            "empty": "  ",
            "none": null,
            "tags": ["a", "b"],
        });
        CallReport {
            source: Source::Vapi,
            call_id: CallId::new("c-1").unwrap(),
            caller: callsync_shared::Caller {
                phone: Some(Phone::parse("+31612345678", Region::US)),
                name: Some("Ada".into()),
                email: None,
            },
            ended_at: time::macros::datetime!(2026-05-01 10:00 UTC),
            ended_at_is_receipt_time: false,
            duration: Some(Duration::from_millis(95_500)),
            summary: Some("Asked about an invoice".into()),
            sentiment: None,
            analysis: analysis.as_object().cloned().unwrap().into(),
            recording_url: None,
            transcript: None,
            crm_id: None,
            called_number: None,
            direction: Some(Direction::Outbound),
            ended_reason: Some("customer-ended-call".into()),
            outcome: Some(Outcome::Connected),
            agent_id: Some("agent-7".into()),
            follow_up_needed: false,
            extra: Default::default(),
        }
    }

    fn value(from: &str) -> Option<Value> {
        from.parse::<From>().unwrap().resolve(&report())
    }

    #[test]
    fn every_named_value_is_read_from_the_report() {
        assert_eq!(
            value("summary"),
            Some(Value::Text("Asked about an invoice".into()))
        );
        assert_eq!(value("direction"), Some(Value::Text("outbound".into())));
        assert_eq!(value("outcome"), Some(Value::Text("connected".into())));
        assert_eq!(
            value("ended_reason"),
            Some(Value::Text("customer-ended-call".into()))
        );
        assert_eq!(value("duration_seconds"), Some(Value::Number(95.5)));
        assert_eq!(
            value("ended_at"),
            Some(Value::Time(time::macros::datetime!(2026-05-01 10:00 UTC)))
        );
        assert_eq!(value("agent_id"), Some(Value::Text("agent-7".into())));
        assert_eq!(value("source"), Some(Value::Text("vapi".into())));
        assert_eq!(value("call_id"), Some(Value::Text("c-1".into())));
        assert_eq!(
            value("caller.number"),
            Some(Value::Text("+31612345678".into()))
        );
        assert_eq!(value("caller.name"), Some(Value::Text("Ada".into())));
    }

    #[test]
    fn a_value_the_call_does_not_have_is_none() {
        for absent in [
            "sentiment",
            "recording_url",
            "caller.email",
            "analysis.missing",
            "analysis.none",
            "analysis.empty",
        ] {
            assert_eq!(value(absent), None, "{absent}");
        }
    }

    #[test]
    fn analysis_values_keep_their_json_type() {
        assert_eq!(
            value("analysis.intent"),
            Some(Value::Text("billing".into()))
        );
        assert_eq!(value("analysis.score"), Some(Value::Number(8.0)));
        assert_eq!(value("analysis.resolved"), Some(Value::Bool(false)));
        assert_eq!(
            value("analysis.tags"),
            Some(Value::Text("[\"a\",\"b\"]".into()))
        );
    }

    #[test]
    fn each_name_reads_back_as_itself() {
        for (name, _) in NAMED {
            assert_eq!(name.parse::<From>().unwrap().to_string(), *name);
        }
        assert_eq!(
            "analysis.x".parse::<From>().unwrap().to_string(),
            "analysis.x"
        );
        assert!("analysis.".parse::<From>().is_err());
        assert!("Summary".parse::<From>().is_err());
    }

    #[test]
    fn values_read_as_text_for_a_text_field() {
        assert_eq!(Value::Number(8.0).to_text(), "8");
        assert_eq!(Value::Number(95.5).to_text(), "95.5");
        assert_eq!(Value::Bool(true).to_text(), "true");
        assert_eq!(
            Value::Time(time::macros::datetime!(2026-05-01 10:00 UTC)).to_text(),
            "2026-05-01T10:00:00Z"
        );
    }
}
