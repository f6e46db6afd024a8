//! `CALLSYNC_MAPPING` on Salesforce: the fields' types read from
//! `GET /sobjects/{Contact,Lead,Task}/describe`, each rule checked against
//! its field, and values written in the record's JSON.
//!
//! `[[contact]]` rules go on the Contact or the Lead the call is on, so
//! each must name a field both objects have; `[[call]]` rules go on the
//! call's Task. Describe gives each field its `type`, `length`,
//! `createable`, `updateable`, `picklistValues` (`value`, `label`,
//! `active`) and `restrictedPicklist`
//! (https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_calls_describesobjects_describesobjectresult.htm,
//! Field and FieldType). The REST API reads a record's JSON into the
//! field's type: a number as a JSON number, a checkbox as `true`/`false`,
//! a date as `YYYY-MM-DD`, a date-time as ISO 8601; anything else is a 400
//! `JSON_PARSER_ERROR`. A picklist takes a value's API name (`value`, not
//! the label); a multi-select picklist its values joined by `;`.

use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::crm::CrmError;
use crate::mapping::apply::Bound;
use crate::mapping::field::{self, Choice, Conversion, FieldType};
use crate::mapping::{Mapping, Rule};

/// A Long Text Area's largest `length`, used when describe gives none.
const MAX_LONG_TEXT: usize = 131_072;
/// A Text field's largest `length`, likewise.
const MAX_STRING: usize = 255;

/// The standard fields callsync writes on a Contact or Lead (its own
/// `Callsync_*` custom fields are refused by prefix).
const OWN_CONTACT: &[&str] = &["Phone", "Email", "FirstName", "LastName"];
/// The standard fields of the call's (and the follow-up's) Task.
const OWN_TASK: &[&str] = &[
    "WhoId",
    "Subject",
    "Description",
    "CallType",
    "CallDisposition",
    "Status",
    "Priority",
    "ActivityDate",
    "CallDurationInSeconds",
    "TaskSubtype",
];

/// One field of `describe`'s `fields`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Definition {
    pub name: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub length: usize,
    /// Absent reads as false: a field describe does not call writable is
    /// not written.
    #[serde(default)]
    pub createable: bool,
    #[serde(default)]
    pub updateable: bool,
    #[serde(default)]
    pub picklist_values: Vec<PicklistValue>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PicklistValue {
    pub value: String,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub active: bool,
}

impl Definition {
    /// The field's type and the longest text it holds.
    fn field_type(&self) -> (FieldType, usize) {
        let length = |default: usize| {
            if self.length > 0 {
                self.length
            } else {
                default
            }
        };
        match self.kind.as_str() {
            // Phone and URL fields take any text; an Email field refuses
            // one that is not an address (`INVALID_EMAIL_ADDRESS`, REST API
            // status codes), which no per-call check here tells apart, so
            // it falls to the refused types below.
            "string" | "phone" | "url" => (FieldType::Text, length(MAX_STRING)),
            "textarea" => (FieldType::Text, length(MAX_LONG_TEXT)),
            "double" | "currency" | "percent" => (FieldType::Number, MAX_LONG_TEXT),
            "boolean" => (FieldType::Bool, MAX_LONG_TEXT),
            "date" => (FieldType::Date, MAX_LONG_TEXT),
            "datetime" => (FieldType::DateTime, MAX_LONG_TEXT),
            // Only active values: a restricted picklist refuses an inactive
            // one (`INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST`), and an
            // unrestricted one would show it as a value nobody can pick.
            "picklist" | "multipicklist" => (
                FieldType::Enum(
                    self.picklist_values
                        .iter()
                        .filter(|p| p.active)
                        .map(|p| Choice {
                            value: p.value.clone(),
                            label: p.label.clone().unwrap_or_else(|| p.value.clone()),
                        })
                        .collect(),
                ),
                MAX_LONG_TEXT,
            ),
            // `email`, see above. `int` is a standard field's type (custom Number fields are
            // `double`); a fractional value would be refused, so it is not
            // written, like references, ids, addresses and the like.
            other => (FieldType::Other(other.to_owned()), MAX_LONG_TEXT),
        }
    }
}

/// The mapping checked against the org's fields.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    pub contact: Vec<Bound>,
    pub lead: Vec<Bound>,
    pub call: Vec<Bound>,
}

impl Resolved {
    /// Checks every rule against the described fields; the first rule that
    /// cannot work is a set-up error naming the field, the rule's line and
    /// the problem.
    pub fn check(
        mapping: &Mapping,
        contact: &[Definition],
        lead: &[Definition],
        task: &[Definition],
    ) -> Result<Self, CrmError> {
        Ok(Self {
            contact: bind(mapping, &mapping.contact, contact, "Contact", OWN_CONTACT)?,
            lead: bind(mapping, &mapping.contact, lead, "Lead", OWN_CONTACT)?,
            call: bind(mapping, &mapping.call, task, "Task", OWN_TASK)?,
        })
    }

    /// The contact rules of a record: a Lead's or a Contact's.
    pub fn of(&self, sobject: &str) -> &[Bound] {
        if sobject == "Lead" {
            &self.lead
        } else {
            &self.contact
        }
    }
}

fn bind(
    mapping: &Mapping,
    rules: &[Rule],
    defs: &[Definition],
    object: &str,
    own: &[&str],
) -> Result<Vec<Bound>, CrmError> {
    rules
        .iter()
        .map(|rule| {
            let problem = |text: String| CrmError::Setup {
                detail: format!(
                    "CALLSYNC_MAPPING ({}): {object} field {:?} {text}",
                    mapping.at(rule),
                    rule.property
                ),
            };
            let name = rule.property.as_str();
            if own.iter().any(|o| o.eq_ignore_ascii_case(name))
                || name.to_ascii_lowercase().starts_with("callsync_")
            {
                return Err(problem(
                    "is written by callsync itself; map the value to another field".to_owned(),
                ));
            }
            // API names are case-insensitive in Salesforce.
            let def = defs
                .iter()
                .find(|d| d.name.eq_ignore_ascii_case(name))
                .ok_or_else(|| {
                    problem(format!(
                        "does not exist in Salesforce (or its field-level security hides it from callsync's user); create it (Setup › Object Manager › {object} › Fields & Relationships) or remove the rule"
                    ))
                })?;
            // A new Contact is created with its mapped fields, and a Task
            // may be upserted (an update): each needs both.
            if !def.createable || !def.updateable {
                return Err(problem(
                    "is read-only for callsync's user (describe: not createable and updateable); make it editable or remove the rule".to_owned(),
                ));
            }
            let (field, max_len) = def.field_type();
            field::check(&rule.from, rule.mode, &field)
                .map_err(|why| problem(format!("cannot take the value: {why}")))?;
            Ok(Bound {
                rule: Rule {
                    // Written as describe spells it.
                    property: def.name.clone(),
                    ..rule.clone()
                },
                field,
                max_len,
                multiple: def.kind == "multipicklist",
            })
        })
        .collect()
}

/// A converted value as the REST API reads it.
pub fn wire(_bound: &Bound, value: &Conversion) -> Json {
    match value {
        Conversion::Text(text) | Conversion::Option(text) => json!(text),
        Conversion::Number(n) => json!(n),
        Conversion::Bool(b) => json!(b),
        Conversion::Date(day) => json!(day.to_string()),
        Conversion::DateTime(at) => json!(super::datetime(*at)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn mapping(text: &str) -> Mapping {
        crate::mapping::file::parse(Path::new("mapping.toml"), text).unwrap()
    }

    fn def(name: &str, kind: &str, writable: bool) -> Definition {
        Definition {
            name: name.into(),
            kind: kind.into(),
            length: 0,
            createable: writable,
            updateable: writable,
            picklist_values: vec![
                PicklistValue {
                    value: "Hot".into(),
                    label: Some("Hot lead".into()),
                    active: true,
                },
                PicklistValue {
                    value: "Cold".into(),
                    label: None,
                    active: false,
                },
            ],
        }
    }

    fn problem(rules: &str, fields: &[Definition]) -> String {
        Resolved::check(&mapping(rules), fields, fields, &[])
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_missing_read_only_own_or_ill_typed_field_is_a_set_up_error_naming_its_line() {
        let fields = [
            def("Score__c", "double", true),
            def("Formula__c", "string", false),
            def("Owner__c", "reference", true),
            def("Mail__c", "email", true),
        ];
        let rule = |property: &str, from: &str| {
            format!("[[contact]]\nproperty = \"{property}\"\nfrom = \"{from}\"\n")
        };
        let missing = problem(&rule("Gone__c", "summary"), &fields);
        assert!(missing.contains("line 1") && missing.contains("\"Gone__c\" does not exist"));
        assert!(problem(&rule("Formula__c", "summary"), &fields).contains("read-only"));
        assert!(problem(&rule("Phone", "summary"), &fields).contains("written by callsync"));
        assert!(
            problem(&rule("callsync_last_call_at__c", "summary"), &fields)
                .contains("written by callsync")
        );
        assert!(problem(&rule("Score__c", "summary"), &fields).contains("number field"));
        assert!(problem(&rule("Owner__c", "caller.name"), &fields).contains("reference"));
        assert!(problem(&rule("Mail__c", "caller.email"), &fields).contains("email"));
        let ok = Resolved::check(
            &mapping(&rule("score__c", "duration_seconds")),
            &fields,
            &fields,
            &[],
        )
        .unwrap();
        assert_eq!(
            ok.contact[0].rule.property, "Score__c",
            "as describe spells it"
        );
    }

    #[test]
    fn a_picklist_offers_its_active_values_matched_by_value_or_label() {
        let (field, _) = def("Rating__c", "picklist", true).field_type();
        let value = |text: &str| field::convert(&crate::mapping::Value::Text(text.into()), &field);
        assert_eq!(value("hot lead"), Ok(Conversion::Option("Hot".into())));
        assert_eq!(value("Hot"), Ok(Conversion::Option("Hot".into())));
        assert_eq!(value("Cold").unwrap_err().reason(), "not_an_option");
    }

    #[test]
    fn values_are_written_as_the_rest_api_reads_each_type() {
        let (field, max) = def("Notes__c", "textarea", true).field_type();
        assert_eq!((field, max), (FieldType::Text, MAX_LONG_TEXT));
        let bound = Bound {
            rule: mapping("[[call]]\nproperty = \"X__c\"\nfrom = \"summary\"\n").call[0].clone(),
            field: FieldType::Bool,
            max_len: 0,
            multiple: false,
        };
        assert_eq!(wire(&bound, &Conversion::Bool(true)), json!(true));
        assert_eq!(wire(&bound, &Conversion::Number(4.5)), json!(4.5));
        let at = time::macros::datetime!(2026-05-01 10:00 +02:00);
        assert_eq!(
            wire(&bound, &Conversion::DateTime(at)),
            json!("2026-05-01T08:00:00.000Z")
        );
        assert_eq!(
            wire(&bound, &Conversion::Date(at.date())),
            json!("2026-05-01")
        );
    }
}
