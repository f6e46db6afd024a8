//! `CALLSYNC_MAPPING` on HubSpot: the properties' types read from the
//! properties API, each rule checked against its property, and the values
//! of one call written as HubSpot takes them.
//!
//! `GET /crm/v3/properties/{objectType}` lists every property of an object
//! with its `type` (`string`, `number`, `date`, `datetime`, `enumeration`,
//! `bool`), `fieldType`, `options` (`label`, `value`) and
//! `modificationMetadata.readOnlyValue`
//! (https://developers.hubspot.com/docs/api-reference/crm-properties-v3/core/get-crm-v3-properties-objectType;
//! HubSpot/hubspot-api-nodejs `codegen/crm/properties/models/Property.ts`).
//! Values are written as strings: a number in plain decimal notation
//! (HubSpot refuses `1.42e-14` with `INVALID_INTEGER`, "… was not a valid
//! number"), `true`/`false` for a `bool`, a `date` as the milliseconds of
//! its midnight UTC and a `datetime` as milliseconds, an enumeration by
//! its option's internal `value` (a label is refused with `INVALID_OPTION`)
//! (https://developers.hubspot.com/docs/api-reference/crm-properties-v3/guide,
//! "Property values").

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use callsync_shared::time::unix_ms;
use serde::Deserialize;
use serde_json::{Map, Value as Json};

use crate::crm::CrmError;
use crate::mapping::apply::{self, Bound};
use crate::mapping::field::{self, Choice, Conversion, FieldType};
use crate::mapping::value::number_text;
use crate::mapping::{Mapping, Rule};

/// The properties callsync writes itself on each object: a rule naming one
/// would race callsync's own value in the same request.
const OWN_CONTACT: &[&str] = &[
    "callsync_last_call_at",
    "callsync_last_call_summary",
    "callsync_last_sentiment",
    "phone",
    "email",
    "firstname",
    "lastname",
];
const OWN_CALL: &[&str] = &[
    "callsync_marker",
    "hs_timestamp",
    "hs_call_title",
    "hs_call_body",
    "hs_call_direction",
    "hs_call_status",
    "hs_call_disposition",
    "hs_call_duration",
    "hs_call_recording_url",
    "hs_call_from_number",
    "hs_call_to_number",
];

/// HubSpot's limit on a string property's value: 65,536 characters
/// (https://knowledge.hubspot.com/properties/property-field-types-in-hubspot,
/// "Single-line text … Multi-line text").
pub const MAX_TEXT: usize = 65_536;

/// One property as the properties API lists it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Definition {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub field_type: String,
    #[serde(default)]
    pub options: Vec<OptionDef>,
    #[serde(default)]
    pub modification_metadata: Option<Modification>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OptionDef {
    pub label: String,
    pub value: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Modification {
    #[serde(default)]
    pub read_only_value: bool,
}

/// The list `GET /crm/v3/properties/{object}` answers.
#[derive(Debug, Deserialize)]
pub struct Definitions {
    pub results: Vec<Definition>,
}

impl Definition {
    /// The property's type as callsync writes it.
    pub fn field_type(&self) -> FieldType {
        match (self.kind.as_str(), self.field_type.as_str()) {
            ("string", "text" | "textarea" | "" | "phonenumber") => FieldType::Text,
            ("number", _) => FieldType::Number,
            ("bool", _) => FieldType::Bool,
            ("date", _) => FieldType::Date,
            ("datetime", _) => FieldType::DateTime,
            // A multiple checkboxes property is an enumeration too; one
            // option is one of its values. Hidden options are kept: HubSpot
            // accepts them through the API, it only hides them in forms.
            ("enumeration", _) => FieldType::Enum(
                self.options
                    .iter()
                    .map(|o| Choice {
                        value: o.value.clone(),
                        label: o.label.clone(),
                    })
                    .collect(),
            ),
            (kind, field) => FieldType::Other(format!("{kind}/{field}")),
        }
    }
}

/// The mapping checked against the account's properties.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    pub contact: Vec<Bound>,
    pub call: Vec<Bound>,
}

impl Resolved {
    /// Checks every rule of `mapping` against the listed properties; the
    /// first rule that cannot work is a set-up error naming the property,
    /// the rule's line and the problem.
    pub fn check(
        mapping: &Mapping,
        contacts: &[Definition],
        calls: &[Definition],
    ) -> Result<Self, CrmError> {
        let bind = |rules: &[Rule], defs: &[Definition], object: &str, own: &[&str]| {
            let by_name: HashMap<&str, &Definition> =
                defs.iter().map(|d| (d.name.as_str(), d)).collect();
            rules
                .iter()
                .map(|rule| {
                    let problem = |text: String| CrmError::Setup {
                        detail: format!(
                            "CALLSYNC_MAPPING ({}): {object} property {:?} {text}",
                            mapping.at(rule),
                            rule.property
                        ),
                    };
                    if own.contains(&rule.property.as_str()) {
                        return Err(problem(
                            "is written by callsync itself; map the value to another property"
                                .to_owned(),
                        ));
                    }
                    let def = by_name.get(rule.property.as_str()).ok_or_else(|| {
                        problem(format!(
                            "does not exist in HubSpot; create it (Settings › Properties › {object}) or remove the rule"
                        ))
                    })?;
                    if def
                        .modification_metadata
                        .as_ref()
                        .is_some_and(|m| m.read_only_value)
                    {
                        return Err(problem("is read-only in HubSpot".to_owned()));
                    }
                    let field = def.field_type();
                    field::check(&rule.from, rule.mode, &field)
                        .map_err(|why| problem(format!("cannot take the value: {why}")))?;
                    Ok(Bound {
                        rule: rule.clone(),
                        field,
                        max_len: MAX_TEXT,
                        // A multiple checkboxes property takes `;`-separated
                        // values: one option is written as it is.
                        multiple: false,
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Self {
            contact: bind(&mapping.contact, contacts, "contact", OWN_CONTACT)?,
            call: bind(&mapping.call, calls, "call", OWN_CALL)?,
        })
    }

    /// The contact properties whose current value a write must read first
    /// (`if_empty`, `append`).
    pub fn read_first(&self) -> Vec<&str> {
        apply::read_first(&self.contact)
    }

    /// The `if_empty` contact properties, which a contact search can
    /// return along with the contact.
    pub fn if_empty_only(&self) -> impl Iterator<Item = &str> {
        self.contact
            .iter()
            .filter(|b| b.rule.mode == crate::mapping::Mode::IfEmpty)
            .map(|b| b.rule.property.as_str())
    }
}

/// How long a search's values stand in for a read: the contact step and the
/// update step of one call follow each other within seconds; a later
/// attempt reads the contact again.
const SEARCHED_FOR: Duration = Duration::from_secs(30);

/// The mapped `if_empty` values the phone search returned with the contact
/// it found, kept until that call's update takes them.
#[derive(Debug, Default)]
pub struct Searched(Mutex<HashMap<String, Found>>);

/// When a search found a contact, and its mapped `if_empty` values.
type Found = (Instant, Map<String, Json>);

impl Searched {
    pub fn remember(&self, contact: &str, values: Map<String, Json>) {
        let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        kept.retain(|_, (at, _)| at.elapsed() < SEARCHED_FOR);
        kept.insert(contact.to_owned(), (Instant::now(), values));
    }

    /// The values found for `contact`, if recent; once.
    pub fn take(&self, contact: &str) -> Option<Map<String, Json>> {
        let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        kept.remove(contact)
            .filter(|(at, _)| at.elapsed() < SEARCHED_FOR)
            .map(|(_, values)| values)
    }
}

/// A converted value as HubSpot takes it: every property value a string.
pub fn wire(_bound: &Bound, value: &Conversion) -> Json {
    Json::String(wire_text(value))
}

fn wire_text(value: &Conversion) -> String {
    match value {
        Conversion::Text(text) => text.clone(),
        Conversion::Number(n) => number_text(*n),
        Conversion::Bool(b) => b.to_string(),
        Conversion::Date(day) => unix_ms(day.midnight().assume_utc()).to_string(),
        Conversion::DateTime(at) => unix_ms(*at).to_string(),
        Conversion::Option(value) => value.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::apply::Write;
    use callsync_shared::CallReport;
    use serde_json::Map;
    use std::path::Path;

    fn mapping(text: &str) -> Mapping {
        crate::mapping::file::parse(Path::new("mapping.toml"), text).unwrap()
    }

    fn def(name: &str, kind: &str, field_type: &str, options: &[(&str, &str)]) -> Definition {
        serde_json::from_value(serde_json::json!({
            "name": name,
            "type": kind,
            "fieldType": field_type,
            "options": options.iter().map(|(v, l)| serde_json::json!({"value": v, "label": l})).collect::<Vec<_>>(),
        }))
        .unwrap()
    }

    fn contacts() -> Vec<Definition> {
        vec![
            def(
                "ai_intent",
                "enumeration",
                "select",
                &[("sales", "Sales"), ("support", "Support")],
            ),
            def("ai_history", "string", "textarea", &[]),
            def("ai_first_topic", "string", "text", &[]),
            def("ai_score", "number", "number", &[]),
        ]
    }

    fn report(id: &str, analysis: serde_json::Value) -> CallReport {
        crate::mapping::test_report(id, analysis)
    }

    const RULES: &str = r#"
[[contact]]
property = "ai_intent"
from = "analysis.intent"
[[contact]]
property = "ai_history"
from = "summary"
mode = "append"
[[contact]]
property = "ai_first_topic"
from = "analysis.topic"
mode = "if_empty"
"#;

    #[test]
    fn a_property_the_account_lacks_is_a_set_up_error_naming_it_and_its_line() {
        let error = Resolved::check(&mapping(RULES), &contacts()[..2], &[]).unwrap_err();
        let text = error.to_string();
        assert!(matches!(error, CrmError::Setup { .. }));
        assert!(text.contains("mapping.toml line 9"), "{text}");
        assert!(
            text.contains("\"ai_first_topic\" does not exist in HubSpot"),
            "{text}"
        );
    }

    #[test]
    fn text_into_a_number_property_or_onto_callsyncs_own_is_a_set_up_error() {
        let rules = "[[contact]]\nproperty = \"ai_score\"\nfrom = \"summary\"\n";
        let text = Resolved::check(&mapping(rules), &contacts(), &[])
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("summary is text and it is a number field"),
            "{text}"
        );
        let rules = "[[contact]]\nproperty = \"firstname\"\nfrom = \"caller.name\"\n";
        let text = Resolved::check(&mapping(rules), &contacts(), &[])
            .unwrap_err()
            .to_string();
        assert!(text.contains("written by callsync itself"), "{text}");
    }

    #[test]
    fn each_mode_writes_as_it_says_and_an_appended_line_is_written_once() {
        let resolved = Resolved::check(&mapping(RULES), &contacts(), &[]).unwrap();
        let mut skips = Vec::new();
        let call = report(
            "c1",
            serde_json::json!({"intent": "Sales", "topic": "pricing"}),
        );
        let mut current = Map::new();
        current.insert("ai_first_topic".into(), "billing".into());
        current.insert("ai_history".into(), "earlier [callsync:vapi:c0]".into());
        let values = apply::contact_values(
            &resolved.contact,
            &call,
            Write::Newest,
            &current,
            &wire,
            &mut |b, s| skips.push((b.rule.property.clone(), s.reason())),
        );
        assert_eq!(values["ai_intent"], "sales", "matched by its label");
        assert_eq!(
            values["ai_history"],
            "earlier [callsync:vapi:c0]\nAsked about pricing [callsync:vapi:c1]"
        );
        assert!(
            !values.contains_key("ai_first_topic"),
            "not empty: left as it is"
        );
        current.insert("ai_history".into(), values["ai_history"].clone());
        let again = apply::contact_values(
            &resolved.contact,
            &call,
            Write::Newest,
            &current,
            &wire,
            &mut |_, _| {},
        );
        assert!(!again.contains_key("ai_history"), "{again:?}");
        let older = apply::contact_values(
            &resolved.contact,
            &call,
            Write::Older,
            &Map::new(),
            &wire,
            &mut |_, _| {},
        );
        assert!(
            !older.contains_key("ai_intent"),
            "overwrite follows the newest call"
        );
        assert_eq!(older["ai_first_topic"], "pricing");
        assert!(skips.is_empty());
    }

    #[test]
    fn an_option_the_enumeration_lacks_skips_that_field_only() {
        let resolved = Resolved::check(&mapping(RULES), &contacts(), &[]).unwrap();
        let mut skips = Vec::new();
        let call = report("c2", serde_json::json!({"intent": "refund"}));
        let values = apply::contact_values(
            &resolved.contact,
            &call,
            Write::New,
            &Map::new(),
            &wire,
            &mut |b, s| skips.push((b.rule.property.clone(), s.reason())),
        );
        assert_eq!(skips, [("ai_intent".to_owned(), "not_an_option")]);
        assert!(values.contains_key("ai_history"));
    }

    #[test]
    fn values_are_written_as_hubspot_takes_them() {
        assert_eq!(
            wire_text(&Conversion::Number(0.000_000_000_000_014)),
            "0.000000000000014"
        );
        assert_eq!(wire_text(&Conversion::Bool(true)), "true");
        assert_eq!(
            wire_text(&Conversion::Date(time::macros::date!(2026 - 05 - 01))),
            "1777593600000"
        );
    }
}
