//! The types of Salesforce fields, as `describe` gives them (`type`,
//! `picklistValues` `[{value, label, active}]`, `restrictedPicklist`), and
//! the check of a written value against its field's type.
//!
//! The REST API reads a record's JSON into the field types, and a value it
//! cannot read as the field's type fails the request with 400
//! `JSON_PARSER_ERROR`, "Cannot deserialize instance of <type> from <token>
//! value <value> or request may be missing a required field at [line:…,
//! column:…]", as answered for a date field given a date-time
//! (qoretechnologies/qore#3908), a date-time without its `T`
//! (restforce/restforce#897) and a date given an object
//! (forcedotcom/SalesforceMobileSDK-ReactNative#194); the simulator leaves
//! out the position. A value outside a restricted picklist is refused with
//! `INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST`, "bad value for restricted
//! picklist field: <value>"
//! (https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/errorcodes.htm,
//! https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_calls_concepts_core_data_objects.htm,
//! StatusCode). Field types: `DescribeSObjectResult.fields[].type`
//! (https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_calls_describesobjects_describesobjectresult.htm,
//! "FieldType"). Whether Salesforce reads a number sent as a string (or a
//! string sent as a number) is not documented: the simulator takes the
//! strictest reading and refuses both. `null` clears a field of any type.

use axum::response::Response;
use serde_json::{Map, Value, json};

use super::bad_request;
use crate::sim::State as SimState;
use crate::sim::schema::{FieldOption, Vendor};

/// A field as `describe` types it.
#[derive(Debug, Clone)]
pub(super) struct Typed {
    pub name: String,
    pub kind: String,
    pub picklist: Vec<FieldOption>,
    pub restricted: bool,
    pub custom: bool,
}

impl Typed {
    fn standard(name: &str, kind: &str) -> Self {
        Self {
            name: name.to_owned(),
            kind: kind.to_owned(),
            picklist: Vec::new(),
            restricted: false,
            custom: false,
        }
    }

    fn picklist(name: &str, values: &[&str], restricted: bool) -> Self {
        Self {
            picklist: values
                .iter()
                .map(|v| FieldOption::new(json!(v), v))
                .collect(),
            restricted,
            ..Self::standard(name, "picklist")
        }
    }

    /// The longest text the field holds: a Text field's 255 characters at
    /// most, a Long Text Area's 131,072 (Salesforce Help, "Custom Field
    /// Types": Text "up to 255 characters", Text Area (Long) "up to
    /// 131,072 characters"; Email 80, Phone 40, URL 255).
    fn length(&self) -> usize {
        match self.kind.as_str() {
            "textarea" => 131_072,
            "string" | "url" | "picklist" => 255,
            "email" => 80,
            "phone" => 40,
            "multipicklist" => 4_099,
            _ => 0,
        }
    }

    /// The field as `describe` lists it. Every typed field is writable by
    /// callsync's user (`createable`, `updateable`).
    pub fn describe(&self) -> Value {
        let values: Vec<Value> = self
            .picklist
            .iter()
            .map(|o| json!({ "value": o.id, "label": o.label, "active": o.active, "defaultValue": false }))
            .collect();
        json!({
            "name": self.name,
            "type": self.kind,
            "custom": self.custom,
            "picklistValues": values,
            "restrictedPicklist": self.restricted,
            "length": self.length(),
            "createable": true,
            "updateable": true,
        })
    }
}

/// Opportunity's `Role` values on a new org (object reference,
/// OpportunityContactRole, `Role`).
const CONTACT_ROLES: &[&str] = &[
    "Business User",
    "Decision Maker",
    "Economic Buyer",
    "Economic Decision Maker",
    "Evaluator",
    "Executive Sponsor",
    "Influencer",
    "Technical Buyer",
    "Other",
];

/// The standard fields of `sobject` the simulator types (the others of
/// Contact, Lead and Task are described as strings and not checked).
/// Opportunity's `StageName` is a picklist of the org's OpportunityStage
/// values and restricted to them (object reference, Opportunity:
/// "StageName … Picklist … Required. Current stage of this record. The
/// StageName field controls several other fields on an opportunity",
/// its values those of the OpportunityStage object).
/// https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_opportunity.htm
/// https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_opportunitycontactrole.htm
fn standard(state: &SimState, sobject: &str) -> Vec<Typed> {
    match sobject {
        "Opportunity" => {
            let stages: Vec<&str> = state
                .pipelines_of(Vendor::Salesforce)
                .iter()
                .flat_map(|p| p.stages.iter().map(|s| s.id.as_str()))
                .collect();
            vec![
                Typed::standard("Name", "string"),
                Typed::picklist("StageName", &stages, true),
                Typed::standard("CloseDate", "date"),
                Typed::standard("Amount", "currency"),
                Typed::standard("Probability", "percent"),
                Typed::standard("Description", "textarea"),
                Typed::standard("NextStep", "string"),
                Typed::picklist("Type", &["Existing Business", "New Business"], false),
                Typed::picklist(
                    "LeadSource",
                    &[
                        "Web",
                        "Phone Inquiry",
                        "Partner Referral",
                        "Purchased List",
                        "Other",
                    ],
                    false,
                ),
                Typed::standard("AccountId", "reference"),
                Typed::standard("CampaignId", "reference"),
                Typed::standard("OwnerId", "reference"),
            ]
        }
        "OpportunityContactRole" => vec![
            Typed::standard("OpportunityId", "reference"),
            Typed::standard("ContactId", "reference"),
            Typed::picklist("Role", CONTACT_ROLES, false),
            Typed::standard("IsPrimary", "boolean"),
        ],
        _ => Vec::new(),
    }
}

/// Every typed field of `sobject`: its typed standard fields, callsync's
/// custom fields the org has, and the custom fields a test defined.
pub(super) fn typed_fields(state: &SimState, sobject: &str) -> Vec<Typed> {
    let callsync = super::custom_fields_of(state, sobject)
        .into_iter()
        .map(|(name, kind)| Typed {
            custom: true,
            ..Typed::standard(name, kind)
        });
    let defined = state.fields_of(Vendor::Salesforce, sobject).map(|f| Typed {
        name: f.key.clone(),
        kind: f.field_type.clone(),
        picklist: f.options.clone(),
        restricted: f.restricted,
        custom: true,
    });
    standard(state, sobject)
        .into_iter()
        .chain(callsync)
        .chain(defined)
        .collect()
}

/// The JSON token a value is, as Salesforce's parser names it.
fn token(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "VALUE_STRING",
        Value::Number(n) if n.is_f64() => "VALUE_NUMBER_FLOAT",
        Value::Number(_) => "VALUE_NUMBER_INT",
        Value::Bool(true) => "VALUE_TRUE",
        Value::Bool(false) => "VALUE_FALSE",
        Value::Array(_) => "START_ARRAY",
        Value::Object(_) => "START_OBJECT",
        Value::Null => "VALUE_NULL",
    }
}

fn is_date(text: &str) -> bool {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text, format).is_ok()
}

/// `2026-05-01T08:00:00.000Z`, `…+02:00` or Salesforce's own `…+0000`.
fn is_datetime(text: &str) -> bool {
    let rfc3339 = |t: &str| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).is_ok()
    };
    let colon_less = text.len() > 5
        && text.is_char_boundary(text.len() - 2)
        && rfc3339(&format!(
            "{}:{}",
            &text[..text.len() - 2],
            &text[text.len() - 2..]
        ));
    rfc3339(text) || colon_less
}

/// Whether `value` can be read as `kind` (the Java type Salesforce's parser
/// names, when it cannot).
fn readable(kind: &str, value: &Value) -> Result<(), &'static str> {
    let ok = match kind {
        "string" | "textarea" | "phone" | "email" | "url" | "picklist" | "multipicklist"
        | "reference" | "id" | "combobox" | "encryptedstring" => value.is_string(),
        "double" | "currency" | "percent" => value.is_number(),
        "int" => value.is_i64() || value.is_u64(),
        "boolean" => value.is_boolean(),
        "date" => value.as_str().is_some_and(is_date),
        "datetime" => value.as_str().is_some_and(is_datetime),
        _ => true,
    };
    let java = match kind {
        "double" | "currency" | "percent" => "double",
        "int" => "int",
        "boolean" => "boolean",
        "date" => "date",
        "datetime" => "datetime",
        _ => "string",
    };
    if ok { Ok(()) } else { Err(java) }
}

/// Refuses the first field of `fields` whose value its type cannot hold.
pub(super) fn check_types(
    state: &SimState,
    sobject: &str,
    fields: &Map<String, Value>,
) -> Result<(), Response> {
    let typed = typed_fields(state, sobject);
    for (name, value) in fields {
        let Some(field) = typed.iter().find(|f| f.name.eq_ignore_ascii_case(name)) else {
            continue;
        };
        if value.is_null() {
            continue;
        }
        // STRING_TOO_LONG, "<field>: data value too large: <value> (max
        // length=<n>)" (REST API developer guide, status codes; StatusCode
        // in the SOAP API's core data objects).
        let length = field.length();
        if length > 0
            && let Some(text) = value.as_str()
            && text.chars().count() > length
        {
            return Err(bad_request(
                "STRING_TOO_LONG",
                format!(
                    "{}: data value too large: {text} (max length={length})",
                    field.name
                ),
            ));
        }
        if let Err(java) = readable(&field.kind, value) {
            return Err(bad_request(
                "JSON_PARSER_ERROR",
                format!(
                    "Cannot deserialize instance of {java} from {} value {value} or request may be missing a required field",
                    token(value)
                ),
            ));
        }
        if field.restricted {
            let text = value.as_str().unwrap_or_default();
            let values: Vec<&str> = if field.kind == "multipicklist" {
                text.split(';').collect()
            } else {
                vec![text]
            };
            if let Some(bad) = values
                .into_iter()
                .find(|v| !field.picklist.iter().any(|o| o.active && o.id == *v))
            {
                return Err(bad_request(
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    format!(
                        "{}: bad value for restricted picklist field: {bad}",
                        field.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_read_as_their_field_types_or_refused() {
        assert!(readable("date", &json!("2026-05-01")).is_ok());
        assert_eq!(readable("date", &json!("01/05/2026")), Err("date"));
        assert!(readable("datetime", &json!("2026-05-01T08:00:00.000Z")).is_ok());
        assert!(readable("datetime", &json!("2026-05-01T08:00:00.000+0000")).is_ok());
        assert_eq!(readable("datetime", &json!("2026-05-01")), Err("datetime"));
        assert_eq!(
            readable("datetime", &json!("2026-05-01T08:00é")),
            Err("datetime")
        );
        assert_eq!(readable("double", &json!("12")), Err("double"));
        assert!(readable("currency", &json!(12.5)).is_ok());
        assert_eq!(readable("boolean", &json!("true")), Err("boolean"));
        assert_eq!(readable("string", &json!(5)), Err("string"));
    }
}
