//! Pipedrive's field schemas: `GET /api/v1/personFields`, `dealFields` and
//! `activityFields` (each field with its `key`, `name`, `field_type` and,
//! for `enum` and `set`, `options` `[{id, label}]`), `POST` of a new person
//! or deal field, and the check of the values a v2 write puts in
//! `custom_fields`.
//!
//! "All custom fields are referenced as randomly generated 40-character
//! hashes" (https://pipedrive.readme.io/docs/core-api-concepts-custom-fields);
//! fields are added with `POST /personFields` and `POST /dealFields` (the
//! same page); activity fields can only be listed
//! (developers.pipedrive.com/docs/api/v1/ActivityFields: "Get all activity
//! fields" is its one operation).
//!
//! v2 validates custom field values strictly: "Numeric fields no longer
//! coerce string input to number and instead throw a validation error"; a
//! monetary field is `{ "value": 2300, "currency": "EUR" }`, a single option
//! its option id, a multiple-options field an array of option ids
//! (https://pipedrive.readme.io/docs/pipedrive-api-v2-migration-guide,
//! "General API Changes" and "Custom Fields"). A value of a type the
//! simulator does not model (address, user, time ranges…) is refused: the
//! strictest reading, as no such write is made by callsync.

use axum::Router;
use axum::body::Bytes;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Map, Value, json};

use super::{Params, error, guard, invalid, ok, parse};
use crate::sim::schema::{CustomField, FieldOption, Vendor};
use crate::sim::{Call, Limits, Shared, State as SimState};

/// The field types of `field_type` in "Add a new person field" and "Add a
/// new deal field" (Pipedrive's OpenAPI description, a table of value and
/// meaning: `varchar` "Text (up to 255 characters)", `text` "Long text (up
/// to 65k characters)", `int` "Integer value", `phone` "Phone field (up to
/// 255 numbers and/or characters)", `date` "Date (format YYYY-MM-DD)", …).
/// https://developers.pipedrive.com/docs/api/v1/PersonFields#addPersonField
const FIELD_TYPES: &[&str] = &[
    "address",
    "date",
    "daterange",
    "double",
    "enum",
    "int",
    "monetary",
    "org",
    "people",
    "phone",
    "set",
    "text",
    "time",
    "timerange",
    "user",
    "varchar",
    "varchar_auto",
    "visible_to",
];

/// What `varchar`, `varchar_auto` and `phone` hold at most (the same
/// table).
const VARCHAR_MAX: usize = 255;

/// The objects with field lists: their route, the operations their list
/// and create count as, and whether fields can be added to them.
struct Object {
    name: &'static str,
    list: &'static str,
    create: Option<&'static str>,
    /// Standard fields: (key, name, field_type).
    standard: &'static [(&'static str, &'static str, &'static str)],
}

const PERSON: Object = Object {
    name: "person",
    list: "list_fields",
    create: Some("create_field"),
    standard: &[
        ("name", "Name", "varchar"),
        ("phone", "Phone", "phone"),
        ("email", "Email", "varchar"),
        ("owner_id", "Owner", "user"),
    ],
};

const DEAL: Object = Object {
    name: "deal",
    list: "list_deal_fields",
    create: Some("create_deal_field"),
    standard: &[
        ("title", "Title", "varchar"),
        ("value", "Value", "monetary"),
        ("pipeline", "Pipeline", "double"),
        ("stage_id", "Stage", "stage"),
        ("status", "Status", "status"),
        ("person_id", "Contact person", "people"),
        ("expected_close_date", "Expected close date", "date"),
    ],
};

const ACTIVITY: Object = Object {
    name: "activity",
    list: "list_activity_fields",
    create: None,
    standard: &[
        ("subject", "Subject", "varchar"),
        ("type", "Type", "varchar"),
        ("due_date", "Due date", "date"),
        ("due_time", "Due time", "time"),
        ("note", "Note", "text"),
        ("done", "Done", "enum"),
    ],
};

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/api/v1/personFields",
            get(|call, q| list(call, q, &PERSON))
                .post(|call, q, body| create(call, q, body, &PERSON)),
        )
        .route(
            "/api/v1/dealFields",
            get(|call, q| list(call, q, &DEAL)).post(|call, q, body| create(call, q, body, &DEAL)),
        )
        .route(
            "/api/v1/activityFields",
            get(|call, q| list(call, q, &ACTIVITY)),
        )
}

/// A field as the list shows it.
fn view(field: &CustomField) -> Value {
    let mut view = json!({
        "id": field.id.parse::<i64>().unwrap_or_default(),
        "key": field.key,
        "name": field.name,
        "field_type": field.field_type,
        "edit_flag": true,
    });
    if matches!(field.field_type.as_str(), "enum" | "set") {
        let options: Vec<Value> = field
            .options
            .iter()
            .map(|o| json!({ "id": o.id, "label": o.label }))
            .collect();
        view["options"] = json!(options);
    }
    view
}

async fn list(call: Call, Query(q): Params, object: &'static Object) -> Response {
    guard(&call, object.list, Limits::General, Some(&q), |state| {
        let standard = object.standard.iter().enumerate().map(|(i, (key, name, kind))| {
            json!({ "id": i + 1, "key": key, "name": name, "field_type": kind, "edit_flag": false })
        });
        let custom = state.fields_of(Vendor::Pipedrive, object.name).map(view);
        let fields: Vec<Value> = standard.chain(custom).collect();
        Ok(ok(StatusCode::OK, json!(fields)))
    })
    .await
}

/// `POST /api/v1/personFields` and `/dealFields`: `name` and `field_type`
/// required, `options` (`[{label}]`) for `enum` and `set`, each given an
/// id.
async fn create(call: Call, Query(q): Params, body: Bytes, object: &'static Object) -> Response {
    let operation = object.create.unwrap_or("create_field");
    guard(&call, operation, Limits::General, Some(&q), |state| {
        let body = parse(&body)?;
        let (Some(name), Some(field_type)) = (body["name"].as_str(), body["field_type"].as_str())
        else {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "name and field_type are required",
            ));
        };
        if !FIELD_TYPES.contains(&field_type) {
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!(
                    "field_type {field_type} is not one of {}",
                    FIELD_TYPES.join(", ")
                ),
            ));
        }
        let labels: Vec<&str> = body["options"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| o["label"].as_str())
            .collect();
        if matches!(field_type, "enum" | "set") && labels.is_empty() {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "options are required for a field of type enum or set",
            ));
        }
        let field = new_field(state, object.name, name, field_type, &labels);
        state.fields.push(field.clone());
        Ok(ok(StatusCode::CREATED, view(&field)))
    })
    .await
}

/// A new field of `object` with the next id and a 40-character key; its
/// options numbered on from every option the account has.
fn new_field(
    state: &SimState,
    object: &str,
    name: &str,
    field_type: &str,
    labels: &[&str],
) -> CustomField {
    let n = state.fields.len() + 0xca11;
    let first_option = state.fields.iter().map(|f| f.options.len()).sum::<usize>() + 1;
    let options = labels
        .iter()
        .enumerate()
        .map(|(i, label)| FieldOption::new(json!(first_option + i), label))
        .collect();
    CustomField::new(
        Vendor::Pipedrive,
        object,
        &format!("{n:0>40x}"),
        name,
        field_type,
    )
    .with_id(&(9000 + state.fields.len()).to_string())
    .with_options(options)
}

impl crate::sim::CrmSim {
    /// Adds a Pipedrive field to `object` (`person`, `deal`, `activity`)
    /// as an admin would (options labelled `labels`); returns it, with its
    /// key and its options' ids.
    pub fn define_pipedrive_field(
        &self,
        object: &str,
        name: &str,
        field_type: &str,
        labels: &[&str],
    ) -> CustomField {
        let mut state = self.shared.lock();
        let field = new_field(&state, object, name, field_type, labels);
        state.fields.push(field.clone());
        field
    }
}

/// The `custom_fields` of a v2 body for `object`, each key a field of the
/// object and each value of its type; flattened into the record's
/// properties. An unknown key fails the whole request, as v2 does for a
/// deleted field's key (migration guide, "General API Changes").
pub(super) fn custom_fields(
    state: &SimState,
    object: &str,
    body: &Value,
) -> Result<Map<String, Value>, Response> {
    let mut into = Map::new();
    let Some(values) = body.get("custom_fields") else {
        return Ok(into);
    };
    let Some(values) = values.as_object() else {
        return Err(invalid(
            "Validation failed: custom_fields: must be an object",
        ));
    };
    for (key, value) in values {
        let Some(field) = state
            .fields_of(Vendor::Pipedrive, object)
            .find(|f| &f.key == key)
        else {
            return Err(invalid(format!(
                "Validation failed: custom_fields.{key}: Unknown custom field"
            )));
        };
        check_value(field, value).map_err(|problem| {
            invalid(format!("Validation failed: custom_fields.{key}: {problem}"))
        })?;
        into.insert(key.clone(), value.clone());
    }
    Ok(into)
}

/// Whether `value` is one a v2 write can give `field` (`null` clears any).
fn check_value(field: &CustomField, value: &Value) -> Result<(), String> {
    if value.is_null() {
        return Ok(());
    }
    let option = |v: &Value| v.is_i64() && field.has_option(v);
    match field.field_type.as_str() {
        "varchar" | "varchar_auto" | "phone" => match value.as_str() {
            Some(text) if text.chars().count() <= VARCHAR_MAX => Ok(()),
            Some(_) => Err(format!("must be at most {VARCHAR_MAX} characters")),
            None => Err("must be a string".into()),
        },
        "text" => value
            .is_string()
            .then_some(())
            .ok_or("must be a string".into()),
        "int" => value
            .is_i64()
            .then_some(())
            .ok_or("must be an integer".into()),
        "double" => value
            .is_number()
            .then_some(())
            .ok_or("must be a number".into()),
        "monetary" => {
            let amount = value["value"].is_number();
            let currency = value["currency"].as_str().is_some_and(|c| c.len() == 3);
            (amount && currency)
                .then_some(())
                .ok_or("must be an object with a number value and a currency code".into())
        }
        "date" => value
            .as_str()
            .is_some_and(super::calendar_date)
            .then_some(())
            .ok_or("must be a date in the format YYYY-MM-DD".into()),
        "enum" => option(value).then_some(()).ok_or(format!(
            "{value} is not the id of one of the field's options"
        )),
        "set" => value
            .as_array()
            .is_some_and(|ids| ids.iter().all(option))
            .then_some(())
            .ok_or(format!("{value} is not an array of the field's option ids")),
        other => Err(format!(
            "crm-sim does not model values of field type {other}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(field_type: &str) -> CustomField {
        CustomField::new(Vendor::Pipedrive, "person", "k", "F", field_type).with_options(vec![
            FieldOption::new(json!(7), "Hot"),
            FieldOption::new(json!(8), "Cold"),
        ])
    }

    #[test]
    fn a_value_is_checked_against_its_fields_type_as_v2_validates_it() {
        let accepted = [
            ("varchar", json!("text")),
            ("text", json!("long text")),
            ("double", json!(1.5)),
            ("monetary", json!({ "value": 2300, "currency": "EUR" })),
            ("date", json!("2026-05-01")),
            ("enum", json!(7)),
            ("set", json!([7, 8])),
            ("enum", Value::Null),
        ];
        for (kind, value) in accepted {
            assert!(check_value(&field(kind), &value).is_ok(), "{kind} {value}");
        }
        let refused = [
            ("varchar", json!("x".repeat(256))),
            ("varchar", json!(5)),
            ("double", json!("1.5")),
            ("int", json!(1.5)),
            ("phone", json!("1".repeat(256))),
            ("monetary", json!(2300)),
            ("date", json!("2026-02-30")),
            ("enum", json!("Hot")),
            ("enum", json!(9)),
            ("set", json!([7, 9])),
            ("address", json!("Main Street 1")),
        ];
        for (kind, value) in refused {
            assert!(check_value(&field(kind), &value).is_err(), "{kind} {value}");
        }
    }
}
