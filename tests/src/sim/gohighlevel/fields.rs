//! GoHighLevel's custom fields: `GET /locations/{locationId}/customFields`
//! (`model` `contact`, `opportunity` or `all`; each field with `id`,
//! `name`, `fieldKey`, `dataType`, `picklistOptions`, `model`), `POST` of
//! a new one, and the check of `customFields: [{id | key, field_value}]` on
//! a contact or opportunity write.
//!
//! The field schema and the model query are `CustomFieldSchema` and the
//! operations of `apps/locations.json`; the data types are the `dataType`
//! enum of `apps/custom-fields.json` (TEXT, LARGE_TEXT, NUMERICAL, PHONE,
//! MONETORY, CHECKBOX, SINGLE_OPTIONS, MULTIPLE_OPTIONS, DATE,
//! TEXTBOX_LIST, FILE_UPLOAD, RADIO, EMAIL), GoHighLevel/highlevel-api-docs.
//! A contact write names a field by `id` (every item schema of a
//! contact's `customFields` in `apps/contacts.json`, `TextField`,
//! `NumericField` …, requires it); an opportunity write by `id` or `key`
//! ("Pass either `id` or `key` of custom field",
//! `customFieldsInputStringSchema` of `apps/opportunities.json`). The body
//! schemas are checked first, and none of them lets `field_value` be a
//! JSON number (`NumericField` types it `object` with the example `100`),
//! so a number field takes its number as a string.
//!
//! What GoHighLevel answers for a value its field cannot hold is not
//! documented: the simulator refuses it with its 422, the strictest
//! reading: an option field takes only its `picklistOptions`, a number
//! field only a number, a date field only `YYYY-MM-DD`, and types it does
//! not model (files, text box lists) nothing.

use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value, json};
use std::collections::HashMap;

use super::{guard, parse, unprocessable};
use crate::sim::schema::{CustomField, FieldOption, Vendor};
use crate::sim::{Call, CrmSim, Shared, State as SimState};

/// `dataType` of `ICustomField` and `CreateCustomFieldsDTO` in
/// `apps/custom-fields.json`.
const DATA_TYPES: &[&str] = &[
    "TEXT",
    "LARGE_TEXT",
    "NUMERICAL",
    "PHONE",
    "MONETORY",
    "CHECKBOX",
    "SINGLE_OPTIONS",
    "MULTIPLE_OPTIONS",
    "DATE",
    "TEXTBOX_LIST",
    "FILE_UPLOAD",
    "RADIO",
    "EMAIL",
];

/// The models a custom field belongs to (`model` of `CustomFieldSchema`).
const MODELS: &[&str] = &["contact", "opportunity"];

pub(super) fn routes() -> Router<Shared> {
    Router::new().route(
        "/locations/{location}/customFields",
        get(list_fields).post(create_field),
    )
}

fn view(field: &CustomField) -> Value {
    let options: Vec<&Value> = field.options.iter().map(|o| &o.id).collect();
    json!({
        "id": field.id,
        "name": field.name,
        "fieldKey": field.key,
        "dataType": field.field_type,
        "picklistOptions": options,
        "model": field.object,
    })
}

/// `GET /locations/{locationId}/customFields?model=`: `contact`,
/// `opportunity` or `all` (the operation's `model` enum); without it, the
/// contact fields.
async fn list_fields(
    call: Call,
    Path(_location): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    guard(&call, "list_fields", "get-custom-fields", |state| {
        let model = q.get("model").map_or("contact", String::as_str);
        if !matches!(model, "contact" | "opportunity" | "all") {
            return Err(unprocessable(vec![format!(
                "model must be one of the following values: contact, opportunity, all"
            )]));
        }
        let fields: Vec<Value> = state
            .fields
            .iter()
            .filter(|f| f.vendor == Vendor::Gohighlevel && (model == "all" || f.object == model))
            .map(view)
            .collect();
        Ok(Json(json!({ "customFields": fields })).into_response())
    })
    .await
}

/// `POST /locations/{locationId}/customFields`: `name` and `dataType`
/// required (`CreateCustomFieldsDTO`), `dataType` one of the documented
/// types, `model` `contact` (the default) or `opportunity`.
async fn create_field(call: Call, Path(_location): Path<String>, body: Bytes) -> Response {
    guard(&call, "create_field", "create-custom-field", |state| {
        let body = parse(&body)?;
        let (Some(name), Some(data_type)) = (body["name"].as_str(), body["dataType"].as_str())
        else {
            return Err(unprocessable(vec!["name and dataType are required".into()]));
        };
        if !DATA_TYPES.contains(&data_type) {
            return Err(unprocessable(vec![format!(
                "dataType must be one of the following values: {}",
                DATA_TYPES.join(", ")
            )]));
        }
        let model = body["model"].as_str().unwrap_or("contact");
        if !MODELS.contains(&model) {
            return Err(unprocessable(vec![format!(
                "model must be one of the following values: {}",
                MODELS.join(", ")
            )]));
        }
        let field = new_field(state, model, name, data_type, &[]);
        state.fields.push(field.clone());
        Ok(Json(json!({ "customField": view(&field) })).into_response())
    })
    .await
}

/// A new field of `model` with the next id; its key `<model>.<name>`
/// (spaces as underscores).
fn new_field(
    state: &SimState,
    model: &str,
    name: &str,
    data_type: &str,
    options: &[&str],
) -> CustomField {
    let id = format!("fld{:0>17}", state.fields.len() + 1);
    let key = format!("{model}.{}", name.replace(' ', "_"));
    let options = options
        .iter()
        .map(|o| FieldOption::new(json!(o), o))
        .collect();
    CustomField::new(Vendor::Gohighlevel, model, &key, name, data_type)
        .with_id(&id)
        .with_options(options)
}

impl CrmSim {
    /// Adds a GoHighLevel custom field to `model` (`contact`,
    /// `opportunity`) as an admin would, with `options` as its
    /// `picklistOptions`; returns it with its id and key.
    pub fn define_gohighlevel_field(
        &self,
        model: &str,
        name: &str,
        data_type: &str,
        options: &[&str],
    ) -> CustomField {
        let mut state = self.shared.lock();
        let field = new_field(&state, model, name, data_type, options);
        state.fields.push(field.clone());
        field
    }
}

/// The `customFields` of a body for `model`, each naming a field of the
/// model by `id` or `key` and holding a value of its type; kept as
/// properties named by the field's key without the model (a contact's
/// `contact.callsync_last_call_at` as `callsync_last_call_at`).
pub(super) fn custom_fields(
    state: &SimState,
    model: &str,
    body: &Value,
) -> Result<Map<String, Value>, Response> {
    let mut into = Map::new();
    let prefix = format!("{model}.");
    for entry in body["customFields"].as_array().into_iter().flatten() {
        let id = entry["id"].as_str();
        let key = entry["key"].as_str();
        // The documented example names a field by its key without the
        // model (`my_custom_field`); the full `fieldKey` is taken too.
        let field = state
            .fields_of(Vendor::Gohighlevel, model)
            .find(|f| match id {
                Some(id) => f.id == id,
                None => key.is_some_and(|k| f.key == k || f.key.strip_prefix(&prefix) == Some(k)),
            });
        let Some(field) = field else {
            let named = id.or(key).unwrap_or_default();
            return Err(unprocessable(vec![format!(
                "custom field {named:?} does not exist"
            )]));
        };
        let Some(value) = entry.get("field_value") else {
            continue;
        };
        check_value(field, value).map_err(|problem| {
            unprocessable(vec![format!("custom field {}: {problem}", field.key)])
        })?;
        let stored = field.key.strip_prefix(&prefix).unwrap_or(&field.key);
        into.insert(stored.to_owned(), value.clone());
    }
    Ok(into)
}

/// A record's custom field values as `GET /contacts/{contactId}` shows
/// them: `customFields: [{id, value}]` (`CustomFieldSchema` of
/// `apps/contacts.json`), one item per field holding a value.
pub(super) fn values_of(state: &SimState, model: &str, properties: &Map<String, Value>) -> Value {
    let prefix = format!("{model}.");
    let values: Vec<Value> = state
        .fields_of(Vendor::Gohighlevel, model)
        .filter_map(|f| {
            let stored = f.key.strip_prefix(&prefix).unwrap_or(&f.key);
            let value = properties.get(stored).filter(|v| !v.is_null())?;
            Some(json!({ "id": f.id, "value": value }))
        })
        .collect();
    Value::Array(values)
}

/// Whether `value` is one `field` can hold.
fn check_value(field: &CustomField, value: &Value) -> Result<(), String> {
    let option = |v: &Value| v.is_string() && field.has_option(v);
    let ok = match field.field_type.as_str() {
        "TEXT" | "LARGE_TEXT" | "PHONE" | "EMAIL" => value.is_string(),
        "NUMERICAL" | "MONETORY" => value
            .as_str()
            .is_some_and(|v| v.trim().parse::<f64>().is_ok_and(f64::is_finite)),
        "DATE" => value.as_str().is_some_and(|v| {
            let format = time::macros::format_description!("[year]-[month]-[day]");
            time::Date::parse(v, format).is_ok()
        }),
        "SINGLE_OPTIONS" | "RADIO" => option(value),
        "MULTIPLE_OPTIONS" | "CHECKBOX" => value
            .as_array()
            .is_some_and(|values| values.iter().all(option)),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{value} is not a value of a {} field{}",
            field.field_type,
            if field.options.is_empty() {
                String::new()
            } else {
                let options: Vec<&Value> = field.options.iter().map(|o| &o.id).collect();
                format!(" with the options {}", json!(options))
            }
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(data_type: &str) -> CustomField {
        CustomField::new(Vendor::Gohighlevel, "contact", "contact.f", "f", data_type).with_options(
            vec![
                FieldOption::new(json!("Hot"), "Hot"),
                FieldOption::new(json!("Cold"), "Cold"),
            ],
        )
    }

    #[test]
    fn a_value_is_checked_against_its_fields_data_type() {
        let accepted = [
            ("TEXT", json!("text")),
            ("LARGE_TEXT", json!("long")),
            ("NUMERICAL", json!("12.5")),
            ("DATE", json!("2026-05-01")),
            ("SINGLE_OPTIONS", json!("Hot")),
            ("CHECKBOX", json!(["Hot", "Cold"])),
        ];
        for (kind, value) in accepted {
            assert!(check_value(&field(kind), &value).is_ok(), "{kind} {value}");
        }
        let refused = [
            ("TEXT", json!(5)),
            ("NUMERICAL", json!("twelve")),
            ("NUMERICAL", json!(12)),
            ("DATE", json!("01/05/2026")),
            ("SINGLE_OPTIONS", json!("Warm")),
            ("MULTIPLE_OPTIONS", json!(["Hot", "Warm"])),
            ("FILE_UPLOAD", json!("x")),
        ];
        for (kind, value) in refused {
            assert!(check_value(&field(kind), &value).is_err(), "{kind} {value}");
        }
    }
}
