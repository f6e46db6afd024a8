//! Lenient accessors over provider JSON: a field of the wrong type reads as
//! absent instead of failing the whole report.

use serde_json::{Map, Value};

use crate::phone::{Phone, Region};
use crate::report::Caller;

/// The first of `keys` present in `object` (for snake_case/camelCase twins).
pub fn field<'a>(object: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a Value> {
    keys.iter()
        .find_map(|k| object.get(*k))
        .filter(|v| !v.is_null())
}

pub fn object<'a>(object: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a Map<String, Value>> {
    field(object, keys).and_then(Value::as_object)
}

/// The object a format wraps its report in (`message`, `call`, `data`):
/// unlike the lenient accessors, its absence refuses the body. `path` is
/// how the error names it.
pub fn envelope<'a>(
    body: &'a Map<String, Value>,
    key: &str,
    format: &'static str,
    path: &'static str,
) -> Result<&'a Map<String, Value>, super::ParseError> {
    object(body, &[key]).ok_or(super::ParseError::MissingEnvelope { format, path })
}

/// A non-empty string; numbers are accepted and written in decimal, because
/// providers are not consistent about ids (`"12345"` vs `12345`).
pub fn text(object: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    match field(object, keys)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A non-negative number of seconds, from an integer, a float or a numeric string.
pub fn seconds(object: &Map<String, Value>, keys: &[&str]) -> Option<std::time::Duration> {
    let value = match field(object, keys)? {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    duration_secs(value)
}

/// `secs` seconds as a duration; `None` when negative, not a number, or
/// too long for one. A provider's number is read with this rather than
/// `Duration::from_secs_f64`, which panics on such values.
pub fn duration_secs(secs: f64) -> Option<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(secs).ok()
}

/// A flag that may be a boolean or a string such as `"true"`/`"yes"`.
pub fn flag(object: &Map<String, Value>, keys: &[&str]) -> bool {
    match field(object, keys) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => {
            matches!(s.trim().to_ascii_lowercase().as_str(), "true" | "yes" | "1")
        }
        Some(Value::Number(n)) => n.as_i64() == Some(1),
        _ => false,
    }
}

/// Whether an analysis asks for a follow-up, in either case style.
pub fn follow_up(analysis: &Map<String, Value>) -> bool {
    flag(analysis, &["follow_up_needed", "followUpNeeded"])
}

/// Adds the platform's own verdict, `call_successful` in its analysis
/// `block` (Retell, ElevenLabs), to the customer's analysis fields, where
/// the CRM shows it; a field of that name the customer defined wins.
pub fn add_verdict(analysis: &mut Map<String, Value>, block: Option<&Map<String, Value>>) {
    if let Some(successful) = block.and_then(|b| field(b, &["call_successful"])) {
        analysis
            .entry("call_successful")
            .or_insert_with(|| successful.clone());
    }
}

/// The caller an object describes by its `number_keys`, `name` and
/// `email` (VoiceDock's and Vapi's `customer`, Post-Call's `callerDetails`).
pub fn caller(object: Option<&Map<String, Value>>, number_keys: &[&str], region: Region) -> Caller {
    Caller {
        phone: object
            .and_then(|o| text(o, number_keys))
            .map(|n| Phone::parse(&n, region)),
        name: object.and_then(|o| text(o, &["name"])),
        email: object.and_then(|o| text(o, &["email"])),
    }
}

/// `object` without `known` keys: what a format carries that callsync does not map.
pub fn without(object: &Map<String, Value>, known: &[&str]) -> Map<String, Value> {
    object
        .iter()
        .filter(|(k, _)| !known.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A non-negative finite number, from a number or a numeric string.
pub fn number(object: &Map<String, Value>, keys: &[&str]) -> Option<f64> {
    let value = match field(object, keys)? {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    (value.is_finite() && value >= 0.0).then_some(value)
}

/// An RFC 3339 / ISO 8601 date-time string.
pub fn rfc3339(object: &Map<String, Value>, keys: &[&str]) -> Option<time::OffsetDateTime> {
    let text = text(object, keys)?;
    time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339).ok()
}

/// A Unix time in milliseconds.
pub fn unix_millis(object: &Map<String, Value>, keys: &[&str]) -> Option<time::OffsetDateTime> {
    // A float beyond i64 saturates, and is out of range either way.
    crate::time::from_unix_ms(number(object, keys)? as i64)
}

/// A Unix time in seconds.
pub fn unix_seconds(object: &Map<String, Value>, keys: &[&str]) -> Option<time::OffsetDateTime> {
    let secs = number(object, keys)?;
    time::OffsetDateTime::from_unix_timestamp_nanos((secs * 1e9) as i128).ok()
}

/// `start + duration`, for platforms that send a start and a length only;
/// `None` when the sum is past the last representable time (a length no
/// call has), where `+` would panic.
pub fn end_of(
    start: Option<time::OffsetDateTime>,
    duration: Option<std::time::Duration>,
) -> Option<time::OffsetDateTime> {
    start?.checked_add(time::Duration::try_from(duration?).ok()?)
}

/// A sentiment word or score as the platform wrote it.
pub fn sentiment(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A transcript sent as text, one `Role: words` turn per line (Vapi,
/// Retell, Bland). A line without a short role prefix keeps role `unknown`.
pub fn text_transcript(text: &str) -> Option<crate::report::Transcript> {
    use crate::report::{Transcript, TranscriptLine};
    let lines: Vec<TranscriptLine> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| match line.split_once(':') {
            Some((role, content))
                if !role.is_empty()
                    && role.len() <= 20
                    && role.chars().all(|c| c.is_alphanumeric() || c == '_') =>
            {
                TranscriptLine {
                    role: role.to_lowercase(),
                    content: content.trim().to_owned(),
                }
            }
            _ => TranscriptLine {
                role: "unknown".to_owned(),
                content: line.to_owned(),
            },
        })
        .collect();
    (!lines.is_empty()).then_some(Transcript::Lines(lines))
}

/// A transcript sent as an array of turns (`{role, <content_key>}`).
pub fn turns(value: Option<&Value>, content_keys: &[&str]) -> Option<crate::report::Transcript> {
    turns_of(value, &["role"], content_keys)
}

/// A transcript sent as an array of turns whose speaker is at one of
/// `role_keys` and whose words are at one of `content_keys`.
pub fn turns_of(
    value: Option<&Value>,
    role_keys: &[&str],
    content_keys: &[&str],
) -> Option<crate::report::Transcript> {
    use crate::report::{Transcript, TranscriptLine};
    let lines: Vec<TranscriptLine> = value?
        .as_array()?
        .iter()
        .filter_map(Value::as_object)
        .filter_map(|turn| {
            Some(TranscriptLine {
                role: text(turn, role_keys).unwrap_or_else(|| "unknown".to_owned()),
                content: text(turn, content_keys)?,
            })
        })
        .collect();
    (!lines.is_empty()).then_some(Transcript::Lines(lines))
}

/// What a call's metadata may tell about the contact: a CRM record id
/// (`crm_id`), a name and an e-mail.
#[derive(Debug, Default)]
pub struct Hints {
    pub crm_id: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
}

impl Hints {
    /// Reads the first of `objects` that has each hint.
    pub fn from(objects: &[Option<&Map<String, Value>>]) -> Self {
        let first = |keys: &[&str]| objects.iter().flatten().find_map(|m| text(m, keys));
        Self {
            crm_id: first(&["crm_id", "crmId"]),
            name: first(&["name", "customer_name", "customerName"]),
            email: first(&["email", "customer_email", "customerEmail"]),
        }
    }
}
