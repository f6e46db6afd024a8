// Routes return ready-made error responses; boxing them would only add noise.
#![allow(clippy::result_large_err)]

//! The HubSpot CRM v3 endpoints the worker uses, with HubSpot's rules:
//! custom properties must exist before they are written, e-mails are unique
//! (409 with the existing id), associations need a known contact and the
//! right type id, and search only sees records once they are indexed.

use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::{ConnectionKill, Dialect, Kind, Record, Shared, State as SimState, guarded};

pub fn router(shared: Shared) -> Router {
    Router::new()
        .route("/crm/v3/properties/{object}/groups", post(create_group))
        .route("/crm/v3/properties/{object}", post(create_property))
        .route("/crm/v3/objects/{object}/search", post(search))
        .route("/crm/v3/objects/{object}", post(create))
        .route("/crm/v3/objects/{object}/{id}", get(read).patch(update))
        .with_state(shared)
}

fn error(status: StatusCode, category: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({ "status": "error", "category": category, "message": message.into() })),
    )
        .into_response()
}

fn kind(object: &str) -> Option<Kind> {
    match object {
        "contacts" => Some(Kind::Contacts),
        "calls" => Some(Kind::Calls),
        "tasks" => Some(Kind::Tasks),
        _ => None,
    }
}

fn parse(body: &Bytes) -> Result<Value, Response> {
    serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            format!("invalid JSON: {e}"),
        )
    })
}

/// Rejects writes of custom properties that were never defined.
fn check_properties(
    state: &SimState,
    object: &str,
    properties: &Map<String, Value>,
) -> Result<(), Response> {
    for name in properties.keys() {
        if name.starts_with("callsync_") && !state.properties.contains(&format!("{object}.{name}"))
        {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
                format!("Property values were not valid: PROPERTY_DOESNT_EXIST \"{name}\""),
            ));
        }
    }
    Ok(())
}

fn view(record: &Record) -> Value {
    json!({ "id": record.id, "properties": record.properties, "archived": false })
}

async fn create_group(
    State(shared): State<Shared>,
    kill: Option<Extension<ConnectionKill>>,
    headers: HeaderMap,
    Path(object): Path<String>,
    body: Bytes,
) -> Response {
    guarded(
        &shared,
        kill.as_deref(),
        "create_group",
        Dialect::RetryAfter,
        shared.bearer_ok(&headers),
        |state| {
            let body = match parse(&body) {
                Ok(b) => b,
                Err(r) => return r,
            };
            let Some(name) = body["name"].as_str() else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "VALIDATION_ERROR",
                    "name is required",
                );
            };
            if !state.groups.insert(format!("{object}.{name}")) {
                return error(
                    StatusCode::CONFLICT,
                    "OBJECT_ALREADY_EXISTS",
                    "Property group already exists",
                );
            }
            (StatusCode::CREATED, Json(json!({ "name": name }))).into_response()
        },
    )
    .await
}

async fn create_property(
    State(shared): State<Shared>,
    kill: Option<Extension<ConnectionKill>>,
    headers: HeaderMap,
    Path(object): Path<String>,
    body: Bytes,
) -> Response {
    guarded(
        &shared,
        kill.as_deref(),
        "create_property",
        Dialect::RetryAfter,
        shared.bearer_ok(&headers),
        |state| {
            let body = match parse(&body) {
                Ok(b) => b,
                Err(r) => return r,
            };
            let (Some(name), Some(_), Some(_), Some(group)) = (
                body["name"].as_str(),
                body["type"].as_str(),
                body["fieldType"].as_str(),
                body["groupName"].as_str(),
            ) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "VALIDATION_ERROR",
                    "name, type, fieldType and groupName are required",
                );
            };
            if !state.groups.contains(&format!("{object}.{group}")) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "VALIDATION_ERROR",
                    format!("property group {group} does not exist"),
                );
            }
            if !state.properties.insert(format!("{object}.{name}")) {
                return error(
                    StatusCode::CONFLICT,
                    "OBJECT_ALREADY_EXISTS",
                    format!("Property {name} already exists"),
                );
            }
            (StatusCode::CREATED, Json(json!({ "name": name }))).into_response()
        },
    )
    .await
}

async fn search(
    State(shared): State<Shared>,
    kill: Option<Extension<ConnectionKill>>,
    headers: HeaderMap,
    Path(object): Path<String>,
    body: Bytes,
) -> Response {
    let operation = match object.as_str() {
        "contacts" => "search_contacts",
        "calls" => "search_calls",
        "tasks" => "search_tasks",
        _ => "search_other",
    };
    guarded(
        &shared,
        kill.as_deref(),
        operation,
        Dialect::RetryAfter,
        shared.bearer_ok(&headers),
        |state| {
            let Some(kind) = kind(&object) else {
                return error(
                    StatusCode::NOT_FOUND,
                    "OBJECT_NOT_FOUND",
                    "unknown object type",
                );
            };
            let body = match parse(&body) {
                Ok(b) => b,
                Err(r) => return r,
            };
            let groups = body["filterGroups"].as_array().cloned().unwrap_or_default();
            let mut conditions = Vec::new();
            for group in &groups {
                let mut all = Vec::new();
                for filter in group["filters"].as_array().cloned().unwrap_or_default() {
                    if filter["operator"] != "EQ" {
                        return error(
                            StatusCode::BAD_REQUEST,
                            "VALIDATION_ERROR",
                            "crm-sim supports EQ only",
                        );
                    }
                    let (Some(property), Some(value)) =
                        (filter["propertyName"].as_str(), filter["value"].as_str())
                    else {
                        return error(
                            StatusCode::BAD_REQUEST,
                            "VALIDATION_ERROR",
                            "filter needs propertyName and value",
                        );
                    };
                    all.push((property.to_owned(), value.to_owned()));
                }
                conditions.push(all);
            }
            let limit = body["limit"].as_u64().unwrap_or(10) as usize;
            // Records are kept in creation order, which is also createdate ascending.
            let results: Vec<Value> = state
                .records(kind)
                .iter()
                .filter(|r| state.indexed(r))
                .filter(|r| {
                    conditions.is_empty()
                        || conditions
                            .iter()
                            .any(|all| all.iter().all(|(p, v)| r.prop(p) == Some(v.as_str())))
                })
                .take(limit)
                .map(view)
                .collect();
            Json(json!({ "total": results.len(), "results": results })).into_response()
        },
    )
    .await
}

async fn create(
    State(shared): State<Shared>,
    kill: Option<Extension<ConnectionKill>>,
    headers: HeaderMap,
    Path(object): Path<String>,
    body: Bytes,
) -> Response {
    let operation = match object.as_str() {
        "contacts" => "create_contact",
        "calls" => "create_call",
        "tasks" => "create_task",
        _ => "create_other",
    };
    guarded(
        &shared,
        kill.as_deref(),
        operation,
        Dialect::RetryAfter,
        shared.bearer_ok(&headers),
        |state| {
            let Some(kind) = kind(&object) else {
                return error(
                    StatusCode::NOT_FOUND,
                    "OBJECT_NOT_FOUND",
                    "unknown object type",
                );
            };
            let body = match parse(&body) {
                Ok(b) => b,
                Err(r) => return r,
            };
            let properties = body["properties"].as_object().cloned().unwrap_or_default();
            if let Err(r) = check_properties(state, &object, &properties) {
                return r;
            }
            let mut associations = Vec::new();
            match kind {
                Kind::Contacts => {
                    if let Some(email) = properties.get("email").and_then(Value::as_str)
                        && let Some(existing) = state
                            .contacts
                            .iter()
                            .find(|c| c.prop("email") == Some(email))
                    {
                        return error(
                            StatusCode::CONFLICT,
                            "CONFLICT",
                            format!("Contact already exists. Existing ID: {}", existing.id),
                        );
                    }
                }
                Kind::Calls | Kind::Tasks => {
                    let expected_type = if kind == Kind::Calls { 194 } else { 204 };
                    if properties.get("hs_timestamp").is_none() {
                        return error(
                            StatusCode::BAD_REQUEST,
                            "VALIDATION_ERROR",
                            "hs_timestamp is required",
                        );
                    }
                    for association in body["associations"].as_array().cloned().unwrap_or_default()
                    {
                        let Some(to) = association["to"]["id"].as_str() else {
                            return error(
                                StatusCode::BAD_REQUEST,
                                "VALIDATION_ERROR",
                                "association without to.id",
                            );
                        };
                        let type_ok = association["types"].as_array().is_some_and(|types| {
                            types
                                .iter()
                                .any(|t| t["associationTypeId"] == expected_type)
                        });
                        if !type_ok {
                            return error(
                                StatusCode::BAD_REQUEST,
                                "VALIDATION_ERROR",
                                format!("association type must be {expected_type}"),
                            );
                        }
                        if !state.contacts.iter().any(|c| c.id == to) {
                            return error(
                                StatusCode::BAD_REQUEST,
                                "VALIDATION_ERROR",
                                format!("contact {to} does not exist"),
                            );
                        }
                        associations.push(to.to_owned());
                    }
                }
            }
            let record = state.insert(kind, properties, associations);
            (StatusCode::CREATED, Json(view(&record))).into_response()
        },
    )
    .await
}

async fn read(
    State(shared): State<Shared>,
    kill: Option<Extension<ConnectionKill>>,
    headers: HeaderMap,
    Path((object, id)): Path<(String, String)>,
) -> Response {
    guarded(
        &shared,
        kill.as_deref(),
        "get_contact",
        Dialect::RetryAfter,
        shared.bearer_ok(&headers),
        |state| {
            let Some(kind) = kind(&object) else {
                return error(
                    StatusCode::NOT_FOUND,
                    "OBJECT_NOT_FOUND",
                    "unknown object type",
                );
            };
            match state.records(kind).iter().find(|r| r.id == id) {
                Some(record) => Json(view(record)).into_response(),
                None => error(
                    StatusCode::NOT_FOUND,
                    "OBJECT_NOT_FOUND",
                    "resource not found",
                ),
            }
        },
    )
    .await
}

async fn update(
    State(shared): State<Shared>,
    kill: Option<Extension<ConnectionKill>>,
    headers: HeaderMap,
    Path((object, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    guarded(
        &shared,
        kill.as_deref(),
        "update_contact",
        Dialect::RetryAfter,
        shared.bearer_ok(&headers),
        |state| {
            let Some(kind) = kind(&object) else {
                return error(
                    StatusCode::NOT_FOUND,
                    "OBJECT_NOT_FOUND",
                    "unknown object type",
                );
            };
            let body = match parse(&body) {
                Ok(b) => b,
                Err(r) => return r,
            };
            let properties = body["properties"].as_object().cloned().unwrap_or_default();
            if let Err(r) = check_properties(state, &object, &properties) {
                return r;
            }
            match state.records_mut(kind).iter_mut().find(|r| r.id == id) {
                Some(record) => {
                    record.properties.extend(properties);
                    Json(view(record)).into_response()
                }
                None => error(
                    StatusCode::NOT_FOUND,
                    "OBJECT_NOT_FOUND",
                    "resource not found",
                ),
            }
        },
    )
    .await
}
