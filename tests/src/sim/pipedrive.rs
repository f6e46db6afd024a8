// Routes return ready-made error responses; boxing them would only add noise.
#![allow(clippy::result_large_err)]

//! The Pipedrive endpoints the worker uses, with Pipedrive's rules: the
//! `x-api-token` header, a required person name, custom fields addressed by
//! generated keys, exact phone search on digits, notes and activities that
//! must name an existing person.

use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value, json};
use std::collections::HashMap;

use super::{ConnectionKill, Dialect, Kind, Record, Shared, State as SimState, guarded};

pub fn router(shared: Shared) -> Router {
    Router::new()
        .route("/v1/personFields", get(list_fields).post(create_field))
        .route("/api/v2/persons/search", get(search))
        .route("/api/v2/persons", axum::routing::post(create_person))
        .route(
            "/api/v2/persons/{id}",
            get(read_person).patch(update_person),
        )
        .route("/v1/notes", get(list_notes).post(create_note))
        .route(
            "/api/v2/activities",
            get(list_activities).post(create_activity),
        )
        .with_state(shared)
}

fn authorized(shared: &Shared, headers: &HeaderMap, query: &HashMap<String, String>) -> bool {
    let token = shared.token();
    headers.get("x-api-token").and_then(|v| v.to_str().ok()) == Some(token.as_str())
        || query.get("api_token") == Some(&token)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({ "success": false, "error": message.into() })),
    )
        .into_response()
}

fn ok(status: StatusCode, data: Value) -> Response {
    (status, Json(json!({ "success": true, "data": data }))).into_response()
}

fn parse(body: &Bytes) -> Result<Value, Response> {
    serde_json::from_slice(body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")))
}

fn digits(text: &str) -> String {
    text.chars().filter(char::is_ascii_digit).collect()
}

fn person_view(r: &Record) -> Value {
    json!({ "id": r.id.parse::<i64>().unwrap_or_default(), "name": r.properties.get("name"), "phones": r.properties.get("phones"), "emails": r.properties.get("emails") })
}

/// Checks custom field keys and flattens them into the record's properties.
fn custom_fields(
    state: &SimState,
    body: &Value,
    into: &mut Map<String, Value>,
) -> Result<(), Response> {
    if let Some(fields) = body["custom_fields"].as_object() {
        for (key, value) in fields {
            if !state.person_fields.iter().any(|(k, _)| k == key) {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    format!("custom field {key} does not exist"),
                ));
            }
            into.insert(key.clone(), value.clone());
        }
    }
    Ok(())
}

type Kill = Option<Extension<ConnectionKill>>;

async fn list_fields(
    State(shared): State<Shared>,
    kill: Kill,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let auth = authorized(&shared, &headers, &q);
    guarded(
        &shared,
        kill.as_deref(),
        "list_fields",
        Dialect::RateLimitReset,
        auth,
        |state| {
            let fields: Vec<Value> = state
                .person_fields
                .iter()
                .map(|(key, name)| json!({ "key": key, "name": name, "field_type": "text" }))
                .collect();
            ok(StatusCode::OK, json!(fields))
        },
    )
    .await
}

async fn create_field(
    State(shared): State<Shared>,
    kill: Kill,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let auth = authorized(&shared, &headers, &q);
    guarded(
        &shared,
        kill.as_deref(),
        "create_field",
        Dialect::RateLimitReset,
        auth,
        |state| {
            let body = match parse(&body) {
                Ok(b) => b,
                Err(r) => return r,
            };
            let (Some(name), Some(_)) = (body["name"].as_str(), body["field_type"].as_str()) else {
                return error(StatusCode::BAD_REQUEST, "name and field_type are required");
            };
            // Pipedrive keys are 40 hex characters.
            let key = format!("{:0>40x}", state.person_fields.len() + 0xca11);
            state.person_fields.push((key.clone(), name.to_owned()));
            ok(StatusCode::CREATED, json!({ "key": key, "name": name }))
        },
    )
    .await
}

async fn search(
    State(shared): State<Shared>,
    kill: Kill,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let auth = authorized(&shared, &headers, &q);
    guarded(
        &shared,
        kill.as_deref(),
        "search_person",
        Dialect::RateLimitReset,
        auth,
        |state| {
            let (Some(term), Some(field)) = (q.get("term"), q.get("fields")) else {
                return error(StatusCode::BAD_REQUEST, "term and fields are required");
            };
            if q.get("exact_match").map(String::as_str) != Some("true") {
                return error(
                    StatusCode::BAD_REQUEST,
                    "crm-sim supports exact_match=true only",
                );
            }
            let matches = |r: &Record| -> bool {
                let values = r
                    .properties
                    .get(if field == "phone" { "phones" } else { "emails" });
                values.and_then(Value::as_array).is_some_and(|list| {
                    list.iter().filter_map(|v| v["value"].as_str()).any(|v| {
                        if field == "phone" {
                            digits(v) == *term
                        } else {
                            v.eq_ignore_ascii_case(term)
                        }
                    })
                })
            };
            let items: Vec<Value> = state
                .contacts
                .iter()
                .filter(|r| state.indexed(r) && matches(r))
                .map(|r| json!({ "result_score": 1.0, "item": person_view(r) }))
                .collect();
            ok(StatusCode::OK, json!({ "items": items }))
        },
    )
    .await
}

async fn create_person(
    State(shared): State<Shared>,
    kill: Kill,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let auth = authorized(&shared, &headers, &q);
    guarded(
        &shared,
        kill.as_deref(),
        "create_person",
        Dialect::RateLimitReset,
        auth,
        |state| {
            let body = match parse(&body) {
                Ok(b) => b,
                Err(r) => return r,
            };
            let Some(name) = body["name"].as_str().filter(|n| !n.is_empty()) else {
                return error(StatusCode::BAD_REQUEST, "name is required");
            };
            let mut properties = Map::new();
            properties.insert("name".into(), json!(name));
            for list in ["phones", "emails"] {
                if let Some(values) = body[list].as_array() {
                    properties.insert(list.into(), json!(values));
                }
            }
            if let Some(phone) = body["phones"][0]["value"].as_str() {
                properties.insert("phone".into(), json!(phone));
            }
            if let Err(r) = custom_fields(state, &body, &mut properties) {
                return r;
            }
            let record = state.insert(Kind::Contacts, properties, Vec::new());
            ok(StatusCode::OK, person_view(&record))
        },
    )
    .await
}

async fn read_person(
    State(shared): State<Shared>,
    kill: Kill,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    Path(id): Path<String>,
) -> Response {
    let auth = authorized(&shared, &headers, &q);
    guarded(
        &shared,
        kill.as_deref(),
        "get_person",
        Dialect::RateLimitReset,
        auth,
        |state| match state.contacts.iter().find(|r| r.id == id) {
            Some(r) => ok(StatusCode::OK, person_view(r)),
            None => error(StatusCode::NOT_FOUND, "Person not found"),
        },
    )
    .await
}

async fn update_person(
    State(shared): State<Shared>,
    kill: Kill,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let auth = authorized(&shared, &headers, &q);
    guarded(
        &shared,
        kill.as_deref(),
        "update_person",
        Dialect::RateLimitReset,
        auth,
        |state| {
            let body = match parse(&body) {
                Ok(b) => b,
                Err(r) => return r,
            };
            let mut changes = Map::new();
            if let Err(r) = custom_fields(state, &body, &mut changes) {
                return r;
            }
            match state.contacts.iter_mut().find(|r| r.id == id) {
                Some(r) => {
                    r.properties.extend(changes);
                    ok(StatusCode::OK, person_view(r))
                }
                None => error(StatusCode::NOT_FOUND, "Person not found"),
            }
        },
    )
    .await
}

/// Creates a note or activity for an existing person.
fn create_for_person(
    state: &mut SimState,
    kind: Kind,
    person: Option<i64>,
    properties: Map<String, Value>,
) -> Response {
    let Some(person) = person.map(|p| p.to_string()) else {
        return error(StatusCode::BAD_REQUEST, "person_id is required");
    };
    if !state.contacts.iter().any(|c| c.id == person) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("person {person} does not exist"),
        );
    }
    let record = state.insert(kind, properties, vec![person]);
    ok(
        StatusCode::CREATED,
        json!({ "id": record.id.parse::<i64>().unwrap_or_default() }),
    )
}

fn list_for_person(
    state: &SimState,
    kind: Kind,
    q: &HashMap<String, String>,
    field: &str,
) -> Response {
    let Some(person) = q.get("person_id") else {
        return error(StatusCode::BAD_REQUEST, "person_id is required");
    };
    let items: Vec<Value> = state
        .records(kind)
        .iter()
        .filter(|r| r.associations.contains(person))
        .map(|r| json!({ "id": r.id.parse::<i64>().unwrap_or_default(), field: r.properties.get(field) }))
        .collect();
    ok(StatusCode::OK, json!(items))
}

async fn create_note(
    State(shared): State<Shared>,
    kill: Kill,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let auth = authorized(&shared, &headers, &q);
    guarded(
        &shared,
        kill.as_deref(),
        "create_note",
        Dialect::RateLimitReset,
        auth,
        |state| {
            let body = match parse(&body) {
                Ok(b) => b,
                Err(r) => return r,
            };
            let Some(content) = body["content"].as_str() else {
                return error(StatusCode::BAD_REQUEST, "content is required");
            };
            let mut properties = Map::new();
            properties.insert("content".into(), json!(content));
            create_for_person(state, Kind::Calls, body["person_id"].as_i64(), properties)
        },
    )
    .await
}

async fn list_notes(
    State(shared): State<Shared>,
    kill: Kill,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let auth = authorized(&shared, &headers, &q);
    guarded(
        &shared,
        kill.as_deref(),
        "list_notes",
        Dialect::RateLimitReset,
        auth,
        |state| list_for_person(state, Kind::Calls, &q, "content"),
    )
    .await
}

async fn create_activity(
    State(shared): State<Shared>,
    kill: Kill,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let auth = authorized(&shared, &headers, &q);
    guarded(
        &shared,
        kill.as_deref(),
        "create_activity",
        Dialect::RateLimitReset,
        auth,
        |state| {
            let body = match parse(&body) {
                Ok(b) => b,
                Err(r) => return r,
            };
            let date_ok = body["due_date"]
                .as_str()
                .is_some_and(|d| d.len() == 10 && d.as_bytes()[4] == b'-');
            let time_ok = body["due_time"]
                .as_str()
                .is_none_or(|t| t.len() == 5 && t.as_bytes()[2] == b':');
            if body["subject"].as_str().is_none() || body["type"] != "call" || !date_ok || !time_ok
            {
                return error(
                    StatusCode::BAD_REQUEST,
                    "subject, type call, due_date YYYY-MM-DD and due_time HH:MM are required",
                );
            }
            let mut properties = Map::new();
            for key in ["subject", "type", "due_date", "due_time", "note", "done"] {
                if let Some(v) = body.get(key) {
                    properties.insert(key.into(), v.clone());
                }
            }
            create_for_person(
                state,
                Kind::Tasks,
                body["participants"][0]["person_id"].as_i64(),
                properties,
            )
        },
    )
    .await
}

async fn list_activities(
    State(shared): State<Shared>,
    kill: Kill,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let auth = authorized(&shared, &headers, &q);
    guarded(
        &shared,
        kill.as_deref(),
        "list_activities",
        Dialect::RateLimitReset,
        auth,
        |state| list_for_person(state, Kind::Tasks, &q, "note"),
    )
    .await
}
