//! `CALLSYNC_MAPPING` on GoHighLevel: the contact custom fields' types
//! read from `GET /locations/{locationId}/customFields?model=contact`, each
//! `[[contact]]` rule checked against its field, and values written as
//! `customFields: [{id, field_value}]` on the contact update.
//!
//! A rule names its field by the `fieldKey` GoHighLevel shows
//! (`contact.ai_intent`) or by its `id`; the write names it by `id`, which
//! every item schema of `UpdateContactDto.customFields` requires
//! (`TextField`, `NumericField`, … in `apps/contacts.json`,
//! GoHighLevel/highlevel-api-docs). The listing (`CustomFieldSchema` of
//! `apps/locations.json`) gives `id`, `fieldKey`, `dataType` and
//! `picklistOptions`, a list of the options' texts; the data types are the
//! `dataType` enum of `apps/custom-fields.json`.
//!
//! How each type takes its value follows the item schemas: `TextField`,
//! `LargeTextField`, `SingleSelectField` and `RadioField` a string;
//! `CheckboxField` and `MultiSelectField` a list of strings (the options);
//! `NumericField` and `MonetoryField` are typed `object` with the example
//! `100`, which no schema lets be a JSON number beside the string ones, so
//! a number is sent as its decimal text. A `DATE` value's format is not
//! documented; callsync sends `YYYY-MM-DD`, the strictest reading.
//! GoHighLevel documents no length limit for text fields; callsync keeps a
//! `TEXT` field within 255 characters and a `LARGE_TEXT` within 65,535
//! (an `append` line that would pass them is skipped), so a write never
//! depends on an undocumented limit being generous.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::crm::CrmError;
use crate::mapping::Mapping;
use crate::mapping::apply::Bound;
use crate::mapping::field::{self, Choice, Conversion, FieldType};
use crate::mapping::value::number_text;

/// `LARGE_TEXT` (multi-line): no documented limit; see the module doc.
const MAX_LARGE_TEXT: usize = 65_535;
/// `TEXT` and `PHONE` (single line): no documented limit; see the module doc.
const MAX_TEXT: usize = 255;

/// One field as `GET /locations/{locationId}/customFields` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct Definition {
    pub id: String,
    #[serde(default, rename = "fieldKey")]
    pub field_key: String,
    #[serde(default, rename = "dataType")]
    pub data_type: String,
    #[serde(default, rename = "picklistOptions")]
    pub picklist_options: Option<Vec<Json>>,
}

impl Definition {
    /// The field's type, its longest text, and whether it holds a list.
    fn field_type(&self) -> (FieldType, usize, bool) {
        let options = || {
            FieldType::Enum(
                self.picklist_options
                    .iter()
                    .flatten()
                    .filter_map(Json::as_str)
                    .map(|o| Choice {
                        value: o.to_owned(),
                        label: o.to_owned(),
                    })
                    .collect(),
            )
        };
        match self.data_type.as_str() {
            "TEXT" | "PHONE" => (FieldType::Text, MAX_TEXT, false),
            "LARGE_TEXT" => (FieldType::Text, MAX_LARGE_TEXT, false),
            "NUMERICAL" | "MONETORY" => (FieldType::Number, MAX_TEXT, false),
            "DATE" => (FieldType::Date, MAX_TEXT, false),
            "SINGLE_OPTIONS" | "RADIO" => (options(), MAX_TEXT, false),
            // GoHighLevel's CHECKBOX is a set of ticked options, not a
            // true/false box: a list, as MULTIPLE_OPTIONS.
            "MULTIPLE_OPTIONS" | "CHECKBOX" => (options(), MAX_TEXT, true),
            // EMAIL is left out: its validation is not documented.
            other => (FieldType::Other(other.to_owned()), MAX_TEXT, false),
        }
    }
}

/// The `[[contact]]` rules bound to their fields, with each field's id by
/// the rule's `property`.
#[derive(Debug, Default)]
pub struct Resolved {
    pub bound: Vec<Bound>,
    pub ids: BTreeMap<String, String>,
}

/// Checks every `[[contact]]` rule against the listed contact fields;
/// `own` are the ids of callsync's last-call fields.
pub fn check(
    mapping: &Mapping,
    fields: &[Definition],
    own: &[String],
) -> Result<Resolved, CrmError> {
    let mut resolved = Resolved::default();
    for rule in &mapping.contact {
        let problem = |text: String| CrmError::Setup {
            detail: format!(
                "CALLSYNC_MAPPING ({}): contact field {:?} {text}",
                mapping.at(rule),
                rule.property
            ),
        };
        let def = fields
            .iter()
            .find(|f| f.field_key == rule.property || f.id == rule.property)
            .ok_or_else(|| {
                problem(
                    "does not exist in GoHighLevel; create it (Settings › Custom Fields, \
                     object Contact) or remove the rule; name it by its key (contact.…) \
                     or its id"
                        .to_owned(),
                )
            })?;
        if own.contains(&def.id) {
            return Err(problem(
                "is written by callsync itself; map the value to another field".to_owned(),
            ));
        }
        let (field, max_len, multiple) = def.field_type();
        field::check(&rule.from, rule.mode, &field)
            .map_err(|why| problem(format!("cannot take the value: {why}")))?;
        resolved.ids.insert(rule.property.clone(), def.id.clone());
        resolved.bound.push(Bound {
            rule: rule.clone(),
            field,
            max_len,
            multiple,
        });
    }
    Ok(resolved)
}

/// A converted value as a contact write's `field_value` takes it.
pub fn wire(bound: &Bound, value: &Conversion) -> Json {
    match value {
        Conversion::Text(text) => json!(text),
        Conversion::Number(n) => json!(number_text(*n)),
        Conversion::Bool(b) => json!(b.to_string()),
        Conversion::Date(day) => json!(day.to_string()),
        Conversion::DateTime(at) => json!(at.date().to_string()),
        // A list field takes its options as a list; one call names one.
        Conversion::Option(option) if bound.multiple => json!([option]),
        Conversion::Option(option) => json!(option),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn mapping(text: &str) -> Mapping {
        crate::mapping::file::parse(Path::new("mapping.toml"), text).unwrap()
    }

    fn def(id: &str, key: &str, data_type: &str, options: &[&str]) -> Definition {
        Definition {
            id: id.into(),
            field_key: key.into(),
            data_type: data_type.into(),
            picklist_options: Some(options.iter().map(|o| json!(o)).collect()),
        }
    }

    fn refusal(fields: &[Definition], property: &str, from: &str, mode: &str) -> String {
        let text = format!(
            "[[contact]]\nproperty = \"{property}\"\nfrom = \"{from}\"\nmode = \"{mode}\"\n"
        );
        check(&mapping(&text), fields, &["own1".into()])
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_missing_field_callsyncs_own_or_a_type_that_cannot_hold_the_value_is_a_set_up_error() {
        let fields = [
            def("num1", "contact.ai_score", "NUMERICAL", &[]),
            def("own1", "contact.callsync_last_call_at", "LARGE_TEXT", &[]),
            def("opt1", "contact.ai_intent", "SINGLE_OPTIONS", &["Sales"]),
            def("file1", "contact.ai_file", "FILE_UPLOAD", &[]),
        ];
        let missing = refusal(&fields, "contact.ai_nope", "summary", "overwrite");
        assert!(
            missing.contains("does not exist in GoHighLevel"),
            "{missing}"
        );
        assert!(missing.contains("line 1"), "{missing}");
        let own = refusal(&fields, "own1", "summary", "overwrite");
        assert!(own.contains("written by callsync itself"), "{own}");
        let number = refusal(&fields, "contact.ai_score", "summary", "overwrite");
        assert!(
            number.contains("summary is text and it is a number field"),
            "{number}"
        );
        let append = refusal(&fields, "opt1", "analysis.x", "append");
        assert!(append.contains("append"), "{append}");
        let file = refusal(&fields, "contact.ai_file", "summary", "overwrite");
        assert!(file.contains("FILE_UPLOAD"), "{file}");
    }

    #[test]
    fn a_rule_names_its_field_by_key_or_id_and_is_written_by_id() {
        let fields = [
            def("num1", "contact.ai_score", "NUMERICAL", &[]),
            def("box1", "contact.ai_tags", "CHECKBOX", &["Hot", "Cold"]),
        ];
        let text = "[[contact]]\nproperty = \"contact.ai_score\"\nfrom = \"duration_seconds\"\n\n\
                    [[contact]]\nproperty = \"box1\"\nfrom = \"analysis.tag\"\n";
        let resolved = check(&mapping(text), &fields, &[]).unwrap();
        assert_eq!(resolved.ids["contact.ai_score"], "num1");
        assert_eq!(resolved.ids["box1"], "box1");
        let score = &resolved.bound[0];
        assert_eq!(wire(score, &Conversion::Number(4.5)), json!("4.5"));
        let tags = &resolved.bound[1];
        assert!(tags.multiple);
        assert_eq!(
            wire(tags, &Conversion::Option("Hot".into())),
            json!(["Hot"])
        );
    }
}
