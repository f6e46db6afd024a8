//! Applying a mapping's rules to one call: which fields it writes, with
//! which values, given the fields' current values. CRM-neutral: each
//! adapter binds the rules to its fields' types ([`Bound`]) and writes a
//! converted value in its own wire format.

use callsync_shared::CallReport;
use serde_json::{Map, Value as Json};

use super::field::{self, Conversion, FieldType};
use super::value::number_text;
use super::{Mode, Rule};

/// A rule with the type of its field.
#[derive(Debug, Clone)]
pub struct Bound {
    pub rule: Rule,
    pub field: FieldType,
    /// The longest text the field holds, in characters.
    pub max_len: usize,
    /// The field holds a list of options (one call writes one).
    pub multiple: bool,
}

/// The fields whose current value a write must read first (`if_empty`,
/// `append`).
pub fn read_first(rules: &[Bound]) -> Vec<&str> {
    rules
        .iter()
        .filter(|b| b.rule.mode != Mode::Overwrite)
        .map(|b| b.rule.property.as_str())
        .collect()
}

/// Whether a field's current value counts as empty.
fn is_empty(value: Option<&Json>) -> bool {
    match value {
        None | Some(Json::Null) => true,
        Some(Json::String(text)) => text.trim().is_empty(),
        Some(Json::Array(items)) => items.is_empty(),
        Some(_) => false,
    }
}

/// A converted value's text, for an appended line.
fn converted_text(value: &Conversion) -> String {
    match value {
        Conversion::Text(text) | Conversion::Option(text) => text.clone(),
        Conversion::Number(n) => number_text(*n),
        Conversion::Bool(b) => b.to_string(),
        Conversion::Date(day) => day.to_string(),
        Conversion::DateTime(at) => at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
    }
}

/// Which contact rules a write carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// A new contact: every rule, into empty fields.
    New,
    /// The contact's newest call: every rule, `current` its values.
    Newest,
    /// An older call: `if_empty` and `append` only; `overwrite` follows
    /// the newest call.
    Older,
}

/// The contact properties `report` writes; `current` holds the values of
/// [`read_first`] (empty for a new contact); `wire` writes a converted
/// value as the CRM takes it.
pub fn contact_values(
    rules: &[Bound],
    report: &CallReport,
    write: Write,
    current: &Map<String, Json>,
    wire: &dyn Fn(&Bound, &Conversion) -> Json,
    skipped: &mut dyn FnMut(&Bound, &field::Skip),
) -> Map<String, Json> {
    let mut out = Map::new();
    for bound in rules {
        let rule = &bound.rule;
        if write == Write::Older && rule.mode == Mode::Overwrite {
            continue;
        }
        let now = current
            .get(&rule.property)
            .and_then(Json::as_str)
            .unwrap_or_default();
        if rule.mode == Mode::IfEmpty && !is_empty(current.get(&rule.property)) {
            continue;
        }
        let Some(value) = rule.from.resolve(report) else {
            continue;
        };
        let converted = match field::convert(&value, &bound.field) {
            Ok(c) => c,
            Err(skip) => {
                skipped(bound, &skip);
                continue;
            }
        };
        let written = if rule.mode == Mode::Append {
            let text = converted_text(&converted);
            // One line per call, carrying its marker: a call whose line is
            // already there (an earlier attempt applied) adds nothing.
            let marker = report.marker();
            if now.lines().any(|l| l.ends_with(&format!("[{marker}]"))) {
                continue;
            }
            let line = format!("{} [{marker}]", text.replace(['\r', '\n'], " "));
            let joined = if now.is_empty() {
                line
            } else {
                format!("{now}\n{line}")
            };
            Conversion::Text(joined)
        } else {
            converted
        };
        if let Conversion::Text(text) = &written
            && text.chars().count() > bound.max_len
        {
            skipped(bound, &field::Skip::TooLong(bound.max_len));
            continue;
        }
        out.insert(rule.property.clone(), wire(bound, &written));
    }
    out
}

/// The call record's mapped properties: a new record, so every mode writes.
pub fn call_values(
    rules: &[Bound],
    report: &CallReport,
    wire: &dyn Fn(&Bound, &Conversion) -> Json,
    skipped: &mut dyn FnMut(&Bound, &field::Skip),
) -> Map<String, Json> {
    let mut out = Map::new();
    for bound in rules {
        let Some(value) = bound.rule.from.resolve(report) else {
            continue;
        };
        match field::convert(&value, &bound.field) {
            Ok(Conversion::Text(text)) if text.chars().count() > bound.max_len => {
                skipped(bound, &field::Skip::TooLong(bound.max_len));
            }
            Ok(converted) => {
                out.insert(bound.rule.property.clone(), wire(bound, &converted));
            }
            Err(skip) => skipped(bound, &skip),
        }
    }
    out
}

/// Logs and counts a mapped value this call cannot write (an option the
/// enumeration does not list…): the field is left as it is, the rest of
/// the call syncs.
pub fn skipped(
    crm: &'static str,
    report: &CallReport,
    object: &str,
    bound: &Bound,
    skip: &field::Skip,
) {
    tracing::warn!(
        call_id = %report.call_id,
        object,
        property = %bound.rule.property,
        from = %bound.rule.from,
        reason = skip.reason(),
        "mapped value skipped: {skip}"
    );
    metrics::counter!(
        "callsync_worker_mapping_skipped_total",
        "crm" => crm,
        "property" => bound.rule.property.clone(),
        "reason" => skip.reason()
    )
    .increment(1);
}
