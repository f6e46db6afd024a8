// Routes return ready-made error responses; boxing them would only add noise.
#![allow(clippy::result_large_err)]

//! The GoHighLevel endpoints the worker uses. Every request body is
//! validated against GoHighLevel's own OpenAPI file (`tests/specs/gohighlevel`,
//! public domain), so a request the real API would refuse for its shape is
//! refused here too; the `Version` header and the location id are required.

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::{ConnectionKill, Dialect, Kind, Record, Shared, State as SimState, guarded};

const SPEC: &str = include_str!("../../specs/gohighlevel/contacts.json");

pub fn router(shared: Shared) -> Router {
    Router::new()
        .route(
            "/locations/{location}/customFields",
            get(list_fields).post(create_field),
        )
        .route("/contacts/search/duplicate", get(duplicate))
        .route("/contacts/upsert", post(upsert))
        .route("/contacts/{id}", get(read).put(update))
        .route("/contacts/{id}/notes", get(list_notes).post(create_note))
        .route("/contacts/{id}/tasks", get(list_tasks).post(create_task))
        .with_state(shared)
}

/// A validator for the request body schema `name` of the OpenAPI file.
fn validator(name: &str) -> &'static jsonschema::Validator {
    static VALIDATORS: OnceLock<HashMap<String, jsonschema::Validator>> = OnceLock::new();
    let all = VALIDATORS.get_or_init(|| {
        let spec: Value = serde_json::from_str(SPEC).expect("the OpenAPI file is JSON");
        [
            "UpsertContactDto",
            "UpdateContactDto",
            "NotesDTO",
            "CreateTaskParams",
        ]
        .into_iter()
        .map(|schema| {
            // The whole file is the root so that `#/components/...` references resolve.
            let mut root = json!({ "components": spec["components"].clone() });
            root["$ref"] = json!(format!("#/components/schemas/{schema}"));
            let validator = jsonschema::validator_for(&root)
                .unwrap_or_else(|e| panic!("schema {schema} compiles: {e}"));
            (schema.to_owned(), validator)
        })
        .collect()
    });
    &all[name]
}

/// Checks a body against its schema; the error names what is wrong.
fn check(schema: &str, body: &Value) -> Result<(), Response> {
    let errors: Vec<String> = validator(schema)
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("request does not match {schema}: {}", errors.join("; ")),
        ))
    }
}

fn authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    shared.bearer_ok(headers)
}

fn version_ok(headers: &HeaderMap) -> Result<(), Response> {
    match headers.get("version").and_then(|v| v.to_str().ok()) {
        Some("2021-07-28") => Ok(()),
        _ => Err(error(
            StatusCode::BAD_REQUEST,
            "Version header 2021-07-28 is required",
        )),
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({ "statusCode": status.as_u16(), "message": message.into() })),
    )
        .into_response()
}

fn parse(body: &Bytes) -> Result<Value, Response> {
    serde_json::from_slice(body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")))
}

fn contact_view(r: &Record) -> Value {
    let mut view = Map::new();
    view.insert("id".into(), json!(r.id));
    for key in [
        "phone",
        "email",
        "firstName",
        "lastName",
        "name",
        "locationId",
    ] {
        if let Some(v) = r.properties.get(key) {
            view.insert(key.into(), v.clone());
        }
    }
    Value::Object(view)
}

/// GoHighLevel ids are 20-character strings; the simulator prefixes its numbers.
fn ghl_id(n: &str) -> String {
    format!("ghl{n:0>17}")
}

fn insert(
    state: &mut SimState,
    kind: Kind,
    properties: Map<String, Value>,
    associations: Vec<String>,
) -> Record {
    let mut record = state.insert(kind, properties, associations);
    let id = ghl_id(&record.id);
    if let Some(stored) = state
        .records_mut(kind)
        .iter_mut()
        .find(|r| r.id == record.id)
    {
        stored.id = id.clone();
    }
    record.id = id;
    record
}

/// Custom fields are written by id; the stored property is the field's key.
fn apply_custom_fields(
    state: &SimState,
    body: &Value,
    into: &mut Map<String, Value>,
) -> Result<(), Response> {
    for field in body["customFields"].as_array().into_iter().flatten() {
        let id = field["id"].as_str().unwrap_or_default();
        let Some((_, key)) = state.person_fields.iter().find(|(i, _)| i == id) else {
            return Err(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("custom field {id:?} does not exist"),
            ));
        };
        if let Some(value) = field.get("field_value") {
            into.insert(key.trim_start_matches("contact.").to_owned(), value.clone());
        }
    }
    Ok(())
}

async fn list_fields(
    State(shared): State<Shared>,
    kill: Kill,
    headers: HeaderMap,
    Path(_location): Path<String>,
) -> Response {
    let auth = authorized(&shared, &headers);
    guarded(&shared, kill.as_deref(), "list_fields", Dialect::RetryAfter, auth, |state| {
        if let Err(r) = version_ok(&headers) {
            return r;
        }
        let fields: Vec<Value> = state
            .person_fields
            .iter()
            .map(|(id, key)| json!({ "id": id, "fieldKey": key, "name": key.trim_start_matches("contact.").replace('_', " ") }))
            .collect();
        Json(json!({ "customFields": fields })).into_response()
    })
    .await
}

async fn create_field(
    State(shared): State<Shared>,
    kill: Kill,
    headers: HeaderMap,
    Path(_location): Path<String>,
    body: Bytes,
) -> Response {
    let auth = authorized(&shared, &headers);
    guarded(
        &shared,
        kill.as_deref(),
        "create_field",
        Dialect::RetryAfter,
        auth,
        |state| {
            if let Err(r) = version_ok(&headers) {
                return r;
            }
            let body = match parse(&body) {
                Ok(b) => b,
                Err(r) => return r,
            };
            let (Some(name), Some(_)) = (body["name"].as_str(), body["dataType"].as_str()) else {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "name and dataType are required",
                );
            };
            let key = format!("contact.{}", name.replace(' ', "_"));
            let id = format!("fld{:0>17}", state.person_fields.len() + 1);
            state.person_fields.push((id.clone(), key.clone()));
            Json(json!({ "customField": { "id": id, "fieldKey": key, "name": name } }))
                .into_response()
        },
    )
    .await
}

type Kill = Option<Extension<ConnectionKill>>;

async fn duplicate(
    State(shared): State<Shared>,
    kill: Kill,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let auth = authorized(&shared, &headers);
    guarded(
        &shared,
        kill.as_deref(),
        "search_duplicate",
        Dialect::RetryAfter,
        auth,
        |state| {
            if let Err(r) = version_ok(&headers) {
                return r;
            }
            if q.get("locationId").is_none_or(String::is_empty) {
                return error(StatusCode::UNPROCESSABLE_ENTITY, "locationId is required");
            }
            let found = state
                .contacts
                .iter()
                .filter(|r| state.indexed(r))
                .find(|r| {
                    q.get("number")
                        .is_some_and(|n| r.prop("phone") == Some(n.as_str()))
                        || q.get("email").is_some_and(|e| {
                            r.prop("email").is_some_and(|x| x.eq_ignore_ascii_case(e))
                        })
                });
            Json(json!({ "contact": found.map(contact_view) })).into_response()
        },
    )
    .await
}

async fn upsert(
    State(shared): State<Shared>,
    kill: Kill,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let auth = authorized(&shared, &headers);
    guarded(
        &shared,
        kill.as_deref(),
        "upsert_contact",
        Dialect::RetryAfter,
        auth,
        |state| {
            if let Err(r) = version_ok(&headers) {
                return r;
            }
            let body = match parse(&body) {
                Ok(b) => b,
                Err(r) => return r,
            };
            if let Err(r) = check("UpsertContactDto", &body) {
                return r;
            }
            if body["locationId"].as_str().is_none_or(str::is_empty) {
                return error(StatusCode::UNPROCESSABLE_ENTITY, "locationId is required");
            }
            let mut properties = Map::new();
            for key in [
                "phone",
                "email",
                "firstName",
                "lastName",
                "name",
                "locationId",
                "source",
            ] {
                if let Some(v) = body.get(key) {
                    properties.insert(key.into(), v.clone());
                }
            }
            if let Err(r) = apply_custom_fields(state, &body, &mut properties) {
                return r;
            }
            // Upsert: GoHighLevel's duplicate rules match on phone or e-mail.
            let existing = state.contacts.iter_mut().find(|r| {
                body["phone"]
                    .as_str()
                    .is_some_and(|p| r.prop("phone") == Some(p))
                    || body["email"]
                        .as_str()
                        .is_some_and(|e| r.prop("email") == Some(e))
            });
            if let Some(existing) = existing {
                existing.properties.extend(properties);
                return Json(json!({ "new": false, "contact": contact_view(existing) }))
                    .into_response();
            }
            let record = insert(state, Kind::Contacts, properties, Vec::new());
            Json(json!({ "new": true, "contact": contact_view(&record) })).into_response()
        },
    )
    .await
}

async fn read(
    State(shared): State<Shared>,
    kill: Kill,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let auth = authorized(&shared, &headers);
    guarded(
        &shared,
        kill.as_deref(),
        "get_contact",
        Dialect::RetryAfter,
        auth,
        |state| {
            if let Err(r) = version_ok(&headers) {
                return r;
            }
            match state.contacts.iter().find(|r| r.id == id) {
                Some(r) => Json(json!({ "contact": contact_view(r) })).into_response(),
                None => error(StatusCode::BAD_REQUEST, "Contact not found"),
            }
        },
    )
    .await
}

async fn update(
    State(shared): State<Shared>,
    kill: Kill,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let auth = authorized(&shared, &headers);
    guarded(
        &shared,
        kill.as_deref(),
        "update_contact",
        Dialect::RetryAfter,
        auth,
        |state| {
            if let Err(r) = version_ok(&headers) {
                return r;
            }
            let body = match parse(&body) {
                Ok(b) => b,
                Err(r) => return r,
            };
            if let Err(r) = check("UpdateContactDto", &body) {
                return r;
            }
            let mut changes = Map::new();
            if let Err(r) = apply_custom_fields(state, &body, &mut changes) {
                return r;
            }
            match state.contacts.iter_mut().find(|r| r.id == id) {
                Some(r) => {
                    r.properties.extend(changes);
                    Json(json!({ "succeded": true, "contact": contact_view(r) })).into_response()
                }
                None => error(StatusCode::BAD_REQUEST, "Contact not found"),
            }
        },
    )
    .await
}

fn create_child(
    state: &mut SimState,
    kind: Kind,
    contact: &str,
    properties: Map<String, Value>,
    key: &str,
) -> Response {
    if !state.contacts.iter().any(|c| c.id == contact) {
        return error(StatusCode::BAD_REQUEST, "Contact not found");
    }
    let record = insert(state, kind, properties, vec![contact.to_owned()]);
    let mut view = record.properties.clone();
    view.insert("id".into(), json!(record.id));
    view.insert("contactId".into(), json!(contact));
    (StatusCode::CREATED, Json(json!({ key: view }))).into_response()
}

fn list_children(state: &SimState, kind: Kind, contact: &str, key: &str) -> Response {
    let items: Vec<Value> = state
        .records(kind)
        .iter()
        .filter(|r| r.associations.iter().any(|a| a == contact))
        .map(|r| {
            let mut view = r.properties.clone();
            view.insert("id".into(), json!(r.id));
            Value::Object(view)
        })
        .collect();
    Json(json!({ key: items })).into_response()
}

async fn create_note(
    State(shared): State<Shared>,
    kill: Kill,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let auth = authorized(&shared, &headers);
    guarded(
        &shared,
        kill.as_deref(),
        "create_note",
        Dialect::RetryAfter,
        auth,
        |state| {
            if let Err(r) = version_ok(&headers) {
                return r;
            }
            let body = match parse(&body) {
                Ok(b) => b,
                Err(r) => return r,
            };
            if let Err(r) = check("NotesDTO", &body) {
                return r;
            }
            let mut properties = Map::new();
            properties.insert("body".into(), body["body"].clone());
            create_child(state, Kind::Calls, &id, properties, "note")
        },
    )
    .await
}

async fn list_notes(
    State(shared): State<Shared>,
    kill: Kill,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let auth = authorized(&shared, &headers);
    guarded(
        &shared,
        kill.as_deref(),
        "list_notes",
        Dialect::RetryAfter,
        auth,
        |state| {
            if let Err(r) = version_ok(&headers) {
                return r;
            }
            list_children(state, Kind::Calls, &id, "notes")
        },
    )
    .await
}

async fn create_task(
    State(shared): State<Shared>,
    kill: Kill,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let auth = authorized(&shared, &headers);
    guarded(
        &shared,
        kill.as_deref(),
        "create_task",
        Dialect::RetryAfter,
        auth,
        |state| {
            if let Err(r) = version_ok(&headers) {
                return r;
            }
            let body = match parse(&body) {
                Ok(b) => b,
                Err(r) => return r,
            };
            if let Err(r) = check("CreateTaskParams", &body) {
                return r;
            }
            let mut properties = Map::new();
            for key in ["title", "body", "dueDate", "completed"] {
                properties.insert(key.into(), body[key].clone());
            }
            create_child(state, Kind::Tasks, &id, properties, "task")
        },
    )
    .await
}

async fn list_tasks(
    State(shared): State<Shared>,
    kill: Kill,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let auth = authorized(&shared, &headers);
    guarded(
        &shared,
        kill.as_deref(),
        "list_tasks",
        Dialect::RetryAfter,
        auth,
        |state| {
            if let Err(r) = version_ok(&headers) {
                return r;
            }
            list_children(state, Kind::Tasks, &id, "tasks")
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_schemas_accept_a_well_formed_task_and_refuse_an_incomplete_one() {
        let good = json!({ "title": "Follow up", "body": "x", "dueDate": "2026-01-01T10:00:00Z", "completed": false });
        assert!(check("CreateTaskParams", &good).is_ok());
        let missing_due = json!({ "title": "Follow up", "completed": false });
        assert!(check("CreateTaskParams", &missing_due).is_err());
        let wrong_type =
            json!({ "title": "Follow up", "dueDate": "2026-01-01T10:00:00Z", "completed": "no" });
        assert!(check("CreateTaskParams", &wrong_type).is_err());
    }
}
