//! `CALLSYNC_MAPPING` on Pipedrive: the person fields' types read from
//! `GET /api/v1/personFields`, each `[[contact]]` rule checked against its
//! field, and values written into API v2's `custom_fields` object.
//!
//! A rule's `property` is the field's key: for a custom field, the
//! "randomly generated 40-character hash" Pipedrive gives it
//! (https://pipedrive.readme.io/docs/core-api-concepts-custom-fields).
//! Types (developers.pipedrive.com/docs/api/v1/PersonFields, `field_type`):
//! `varchar`, `varchar_auto` and `phone` hold "up to 255 characters",
//! `text` "up to 65k"; `double` a number, which v2 takes as a JSON number
//! only ("Numeric fields no longer coerce string input to number",
//! https://pipedrive.readme.io/docs/pipedrive-api-v2-migration-guide);
//! `enum` one option and `set` several, by the option's integer `id`;
//! `date` "format YYYY-MM-DD". Pipedrive has no checkbox type.

use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::crm::CrmError;
use crate::mapping::apply::Bound;
use crate::mapping::field::{self, Choice, Conversion, FieldType};
use crate::mapping::{Mapping, Rule};

/// "Long text (up to 65k characters)"; read as 65,535.
const MAX_TEXT: usize = 65_535;
/// "Text (up to 255 characters)".
const MAX_VARCHAR: usize = 255;

/// One field as `GET /api/v1/personFields` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct Definition {
    pub key: String,
    #[serde(default)]
    pub field_type: String,
    #[serde(default)]
    pub options: Option<Vec<OptionDef>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OptionDef {
    pub id: i64,
    pub label: String,
}

impl Definition {
    fn field_type(&self) -> (FieldType, usize) {
        match self.field_type.as_str() {
            "varchar" | "varchar_auto" | "phone" => (FieldType::Text, MAX_VARCHAR),
            "text" => (FieldType::Text, MAX_TEXT),
            "double" => (FieldType::Number, MAX_TEXT),
            "date" => (FieldType::Date, MAX_TEXT),
            "enum" | "set" => (
                FieldType::Enum(
                    self.options
                        .iter()
                        .flatten()
                        .map(|o| Choice {
                            value: o.id.to_string(),
                            label: o.label.clone(),
                        })
                        .collect(),
                ),
                MAX_TEXT,
            ),
            other => (FieldType::Other(other.to_owned()), MAX_TEXT),
        }
    }
}

/// Whether `key` is a custom field's: 40 hexadecimal characters. The
/// standard person fields (`name`, `phone`, …) live outside
/// `custom_fields` in v2 and are callsync's to write.
fn is_custom(key: &str) -> bool {
    key.len() == 40 && key.chars().all(|c| c.is_ascii_hexdigit())
}

/// Checks every `[[contact]]` rule against the listed fields; `own` are
/// the keys of callsync's last-call fields.
pub fn check(
    mapping: &Mapping,
    fields: &[Definition],
    own: &[String],
) -> Result<Vec<Bound>, CrmError> {
    mapping
        .contact
        .iter()
        .map(|rule: &Rule| {
            let problem = |text: String| CrmError::Setup {
                detail: format!(
                    "CALLSYNC_MAPPING ({}): person field {:?} {text}",
                    mapping.at(rule),
                    rule.property
                ),
            };
            if own.contains(&rule.property) {
                return Err(problem(
                    "is written by callsync itself; map the value to another field".to_owned(),
                ));
            }
            if !is_custom(&rule.property) {
                return Err(problem(
                    "is not a custom field's key (40 hexadecimal characters, shown in Pipedrive under Settings › Data fields › the field's API key)".to_owned(),
                ));
            }
            let def = fields.iter().find(|f| f.key == rule.property).ok_or_else(|| {
                problem("does not exist in Pipedrive; create it (Settings › Data fields › Person) or remove the rule".to_owned())
            })?;
            let (field, max_len) = def.field_type();
            field::check(&rule.from, rule.mode, &field)
                .map_err(|why| problem(format!("cannot take the value: {why}")))?;
            Ok(Bound {
                rule: rule.clone(),
                field,
                max_len,
                multiple: def.field_type == "set",
            })
        })
        .collect()
}

/// A converted value as API v2 takes it in `custom_fields`.
pub fn wire(bound: &Bound, value: &Conversion) -> Json {
    match value {
        Conversion::Text(text) => json!(text),
        Conversion::Number(n) => json!(n),
        Conversion::Bool(b) => json!(b.to_string()),
        Conversion::Date(day) => json!(day.to_string()),
        Conversion::DateTime(at) => json!(at.date().to_string()),
        Conversion::Option(id) => {
            let id: Json = id.parse::<i64>().map_or_else(|_| json!(id), |n| json!(n));
            // A `set` takes its options as a list; one call names one.
            if bound.multiple { json!([id]) } else { id }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn mapping(text: &str) -> Mapping {
        crate::mapping::file::parse(Path::new("mapping.toml"), text).unwrap()
    }

    #[test]
    fn a_rule_naming_a_standard_field_a_missing_one_or_callsyncs_own_is_a_set_up_error() {
        let key = "a".repeat(40);
        let fields = vec![Definition {
            key: key.clone(),
            field_type: "double".into(),
            options: None,
        }];
        let text = |property: &str, from: &str| {
            let rules = format!("[[contact]]\nproperty = \"{property}\"\nfrom = \"{from}\"\n");
            check(&mapping(&rules), &fields, &["b".repeat(40)])
                .unwrap_err()
                .to_string()
        };
        assert!(text("name", "caller.name").contains("not a custom field's key"));
        assert!(text(&"c".repeat(40), "summary").contains("does not exist in Pipedrive"));
        assert!(text(&"b".repeat(40), "summary").contains("written by callsync itself"));
        assert!(text(&key, "summary").contains("summary is text and it is a number field"));
        let ok = format!("[[contact]]\nproperty = \"{key}\"\nfrom = \"duration_seconds\"\n");
        assert_eq!(check(&mapping(&ok), &fields, &[]).unwrap().len(), 1);
    }
}
