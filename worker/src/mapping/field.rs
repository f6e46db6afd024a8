//! A CRM field's type, as callsync understands it, and the conversion of a
//! call's value into it. Each adapter reads its CRM's schema into
//! [`FieldType`] and writes a [`Conversion`] in its own wire format.

use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};

use super::Mode;
use super::value::{From, Kind, Value};

/// One option of an enumeration field: the value the API takes and the
/// label people see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub value: String,
    pub label: String,
}

/// What a CRM field holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldType {
    /// One or several lines of text.
    Text,
    Number,
    /// A checkbox: true or false.
    Bool,
    /// A calendar day.
    Date,
    DateTime,
    /// One of the listed options.
    Enum(Vec<Choice>),
    /// A type callsync does not write (a file, a calculation…), by the
    /// CRM's own name.
    Other(String),
}

impl FieldType {
    fn describe(&self) -> String {
        match self {
            FieldType::Text => "text field".to_owned(),
            FieldType::Number => "number field".to_owned(),
            FieldType::Bool => "checkbox".to_owned(),
            FieldType::Date => "date field".to_owned(),
            FieldType::DateTime => "date-time field".to_owned(),
            FieldType::Enum(_) => "enumeration".to_owned(),
            FieldType::Other(name) => format!("field of type {name}"),
        }
    }
}

/// Whether `from` can go into a field of type `field` with `mode` for
/// every call; the error says why not. A value that fits some calls only
/// (an analysis value, a text matched to an option) passes here and is
/// checked per call by [`convert`].
pub fn check(from: &From, mode: Mode, field: &FieldType) -> Result<(), String> {
    if let FieldType::Other(_) = field {
        return Err(format!(
            "it is a {}, which callsync cannot write",
            field.describe()
        ));
    }
    if mode == Mode::Append && *field != FieldType::Text {
        return Err(format!(
            "mode append adds lines of text, and it is a {}",
            field.describe()
        ));
    }
    let fits = matches!(
        (from.kind(), field),
        (Kind::Any, _)
            | (_, FieldType::Text)
            | (Kind::Text | Kind::Number, FieldType::Enum(_))
            | (Kind::Number, FieldType::Number)
            | (Kind::Time, FieldType::Date | FieldType::DateTime)
    );
    if fits {
        return Ok(());
    }
    let what = match from.kind() {
        Kind::Text => "text",
        Kind::Number => "a number",
        Kind::Time => "a time",
        Kind::Any => "a value",
    };
    Err(format!("{from} is {what} and it is a {}", field.describe()))
}

/// A value converted to its field's type.
#[derive(Debug, Clone, PartialEq)]
pub enum Conversion {
    Text(String),
    Number(f64),
    Bool(bool),
    Date(Date),
    DateTime(OffsetDateTime),
    /// An enumeration option's value (never its label).
    Option(String),
}

/// Why one call's value does not fit its field: the field is skipped for
/// this call, with a warning and a metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    NotAnOption(String),
    NotANumber(String),
    NotABool(String),
    NotATime(String),
    /// The field's text would pass the CRM's length limit.
    TooLong(usize),
}

impl Skip {
    /// The metric's `reason` label.
    pub fn reason(&self) -> &'static str {
        match self {
            Skip::NotAnOption(_) => "not_an_option",
            Skip::NotANumber(_) => "not_a_number",
            Skip::NotABool(_) => "not_a_boolean",
            Skip::NotATime(_) => "not_a_time",
            Skip::TooLong(_) => "too_long",
        }
    }
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::NotAnOption(v) => write!(f, "{v:?} is not one of the field's options"),
            Skip::NotANumber(v) => write!(f, "{v:?} is not a number"),
            Skip::NotABool(v) => write!(f, "{v:?} is not true or false"),
            Skip::NotATime(v) => write!(f, "{v:?} is not a date or an RFC 3339 time"),
            Skip::TooLong(max) => write!(f, "the text would be longer than {max} characters"),
        }
    }
}

/// Converts one call's value into `field`'s type.
pub fn convert(value: &Value, field: &FieldType) -> Result<Conversion, Skip> {
    match field {
        FieldType::Text | FieldType::Other(_) => Ok(Conversion::Text(value.to_text())),
        FieldType::Number => match value {
            Value::Number(n) => Ok(Conversion::Number(*n)),
            Value::Text(t) => t
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite())
                .map(Conversion::Number)
                .ok_or_else(|| Skip::NotANumber(t.clone())),
            other => Err(Skip::NotANumber(other.to_text())),
        },
        FieldType::Bool => match value {
            Value::Bool(b) => Ok(Conversion::Bool(*b)),
            Value::Text(t) => match t.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" => Ok(Conversion::Bool(true)),
                "false" | "no" => Ok(Conversion::Bool(false)),
                _ => Err(Skip::NotABool(t.clone())),
            },
            other => Err(Skip::NotABool(other.to_text())),
        },
        FieldType::Date => time_of(value).map(|t| Conversion::Date(t.date())),
        FieldType::DateTime => time_of(value).map(Conversion::DateTime),
        FieldType::Enum(options) => {
            let text = value.to_text();
            let wanted = text.trim();
            options
                .iter()
                .find(|o| o.value == wanted)
                .or_else(|| {
                    options
                        .iter()
                        .find(|o| o.label.trim().eq_ignore_ascii_case(wanted))
                })
                .map(|o| Conversion::Option(o.value.clone()))
                .ok_or(Skip::NotAnOption(text))
        }
    }
}

/// A time, or a text holding an RFC 3339 time or a `YYYY-MM-DD` day
/// (midnight UTC).
fn time_of(value: &Value) -> Result<OffsetDateTime, Skip> {
    match value {
        Value::Time(at) => Ok(*at),
        Value::Text(t) => {
            let t = t.trim();
            OffsetDateTime::parse(t, &Rfc3339)
                .ok()
                .or_else(|| {
                    let format = time::macros::format_description!("[year]-[month]-[day]");
                    Date::parse(t, format)
                        .ok()
                        .map(|d| d.midnight().assume_utc())
                })
                .ok_or_else(|| Skip::NotATime(t.to_owned()))
        }
        other => Err(Skip::NotATime(other.to_text())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(text: &str) -> From {
        text.parse().unwrap()
    }

    fn options() -> FieldType {
        FieldType::Enum(vec![
            Choice {
                value: "sales".into(),
                label: "Sales enquiry".into(),
            },
            Choice {
                value: "support".into(),
                label: "Support".into(),
            },
        ])
    }

    #[test]
    fn a_value_that_can_never_fit_its_field_is_a_set_up_error() {
        let err = check(&from("summary"), Mode::Overwrite, &FieldType::Number).unwrap_err();
        assert_eq!(err, "summary is text and it is a number field");
        assert!(check(&from("ended_at"), Mode::Overwrite, &FieldType::Number).is_err());
        assert!(check(&from("duration_seconds"), Mode::Overwrite, &FieldType::Bool).is_err());
        assert!(check(&from("caller.name"), Mode::Overwrite, &FieldType::Date).is_err());
        assert!(
            check(
                &from("summary"),
                Mode::Overwrite,
                &FieldType::Other("file".into())
            )
            .is_err()
        );
    }

    #[test]
    fn append_needs_a_text_field() {
        assert!(check(&from("summary"), Mode::Append, &FieldType::Text).is_ok());
        let err = check(&from("analysis.x"), Mode::Append, &options()).unwrap_err();
        assert!(err.contains("append"), "{err}");
    }

    #[test]
    fn a_value_that_fits_some_calls_passes_the_check() {
        for field in [
            FieldType::Text,
            FieldType::Number,
            FieldType::Bool,
            FieldType::Date,
            options(),
        ] {
            assert!(check(&from("analysis.x"), Mode::Overwrite, &field).is_ok());
        }
        assert!(check(&from("outcome"), Mode::Overwrite, &options()).is_ok());
        assert!(check(&from("duration_seconds"), Mode::IfEmpty, &FieldType::Text).is_ok());
        assert!(check(&from("ended_at"), Mode::Overwrite, &FieldType::Date).is_ok());
    }

    #[test]
    fn an_enumeration_value_is_matched_to_an_options_value_or_its_label() {
        let field = options();
        assert_eq!(
            convert(&Value::Text("support".into()), &field),
            Ok(Conversion::Option("support".into()))
        );
        assert_eq!(
            convert(&Value::Text("sales enquiry".into()), &field),
            Ok(Conversion::Option("sales".into()))
        );
        let skipped = convert(&Value::Text("refund".into()), &field).unwrap_err();
        assert_eq!(skipped.reason(), "not_an_option");
    }

    #[test]
    fn booleans_numbers_and_times_convert_or_skip() {
        assert_eq!(
            convert(&Value::Bool(true), &FieldType::Bool),
            Ok(Conversion::Bool(true))
        );
        assert_eq!(
            convert(&Value::Text("No".into()), &FieldType::Bool),
            Ok(Conversion::Bool(false))
        );
        assert_eq!(
            convert(&Value::Text(" 42.5 ".into()), &FieldType::Number),
            Ok(Conversion::Number(42.5))
        );
        assert_eq!(
            convert(&Value::Text("lots".into()), &FieldType::Number)
                .unwrap_err()
                .reason(),
            "not_a_number"
        );
        assert_eq!(
            convert(&Value::Text("2026-05-01".into()), &FieldType::Date),
            Ok(Conversion::Date(time::macros::date!(2026 - 05 - 01)))
        );
        assert_eq!(
            convert(&Value::Text("soon".into()), &FieldType::DateTime)
                .unwrap_err()
                .reason(),
            "not_a_time"
        );
        assert_eq!(
            convert(&Value::Number(3.0), &FieldType::Text),
            Ok(Conversion::Text("3".into()))
        );
    }
}
