// Routes return ready-made error responses; boxing them would only add noise.
#![allow(clippy::result_large_err)]

//! The Pipedrive endpoints the worker uses, with Pipedrive's rules: the
//! `x-api-token` header, a required person name, custom fields addressed by
//! generated keys, a person search that compares its term with the values
//! as typed (see [`search`]), notes and activities that must name an
//! existing person.
//!
//! The two API versions differ the way Pipedrive's do. v1 (notes, person
//! fields) is lenient: a body key it does not know is dropped, and lists page
//! by `start`/`limit`. v2 (persons, activities) validates its input: an
//! unknown body key or a `limit` over 500 is a 400, and lists page by cursor.
//! https://pipedrive.readme.io/docs/pipedrive-api-v2-migration-guide
//! https://pipedrive.readme.io/docs/core-api-concepts-pagination
//!
//! Like a company domain, it serves both versions under `/api/` only: "Each
//! request must be made to the API endpoint
//! https://{COMPANYDOMAIN}.pipedrive.com/api/v1"
//! (https://pipedrive.readme.io/docs/core-api-concepts-requests), and "Only
//! /api/v2/... prefix is supported. Previously both /api/v1/... and /v1/...
//! could be used." (https://pipedrive.readme.io/docs/pipedrive-api-v2-migration-guide).
//! Whether a company domain still answers `/v1/…` is not settled, so the
//! simulator takes the strictest reading: `/v1/…` and `/v2/…` are not
//! found (404), as any path Pipedrive does not serve.

use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value, json};
use std::collections::HashMap;

use super::{
    Answer, Call, CrmSim, Dialect, Kind, Limits, Record, Shared, State as SimState,
    reword_unauthorized,
};
use crate::sim::schema::Vendor;

mod deals;
mod fields;

pub(crate) use deals::default_pipelines;

/// The largest page Pipedrive serves, and the page it serves by default.
/// https://pipedrive.readme.io/docs/core-api-concepts-pagination
const MAX_LIMIT: usize = 500;
const DEFAULT_LIMIT: usize = 100;

/// The body keys `POST /v1/notes` documents; v1 drops any other key
/// without a word (it is not stored, and nothing says so).
/// https://developers.pipedrive.com/docs/api/v1/Notes#addNote
const NOTE_KEYS: &[&str] = &[
    "content",
    "lead_id",
    "deal_id",
    "person_id",
    "org_id",
    "project_id",
    "user_id",
    "add_time",
    "pinned_to_lead_flag",
    "pinned_to_deal_flag",
    "pinned_to_organization_flag",
    "pinned_to_person_flag",
    "pinned_to_project_flag",
];

/// The body keys `POST`/`PATCH /api/v2/persons` accept.
/// https://developers.pipedrive.com/docs/api/v1/Persons#addPerson (API v2)
const PERSON_KEYS: &[&str] = &[
    "name",
    "owner_id",
    "org_id",
    "add_time",
    "update_time",
    "emails",
    "phones",
    "visible_to",
    "label_ids",
    "marketing_status",
    "custom_fields",
];

/// The body keys `POST /api/v2/activities` accepts (`person_id` is
/// read-only in v2: the person is a participant).
/// https://developers.pipedrive.com/docs/api/v1/Activities#addActivity (API v2)
const ACTIVITY_KEYS: &[&str] = &[
    "subject",
    "type",
    "owner_id",
    "deal_id",
    "lead_id",
    "org_id",
    "project_id",
    "due_date",
    "due_time",
    "duration",
    "busy",
    "done",
    "location",
    "participants",
    "attendees",
    "public_description",
    "priority",
    "note",
];

pub fn router(shared: Shared) -> Router {
    Router::new()
        .route("/api/v1/users/me", get(current_user))
        .route("/api/v2/persons/search", get(search))
        .route("/api/v2/persons", axum::routing::post(create_person))
        .route(
            "/api/v2/persons/{id}",
            get(read_person).patch(update_person),
        )
        .route("/api/v1/notes", get(list_notes).post(create_note))
        .route(
            "/api/v2/activities",
            get(list_activities).post(create_activity),
        )
        .merge(fields::routes())
        .merge(deals::routes())
        .with_state(shared)
}

/// The query of a v1 request, where v1 also takes the token (as
/// `api_token`); v2 takes it in the `x-api-token` header only.
/// https://www.innovaty.co/guide/pipedrive-api-v2-migration (Authentication)
/// A request's query parameters.
type Params = Query<HashMap<String, String>>;

type V1Query<'a> = Option<&'a HashMap<String, String>>;

fn authorized(call: &Call, query: V1Query<'_>) -> bool {
    let token = call.shared.token();
    call.headers
        .get("x-api-token")
        .and_then(|v| v.to_str().ok())
        == Some(token.as_str())
        || query.and_then(|q| q.get("api_token")) == Some(&token)
}

/// Pipedrive's answer to a missing or wrong token, whatever the endpoint
/// (status: https://pipedrive.readme.io/docs/marketplace-oauth-and-api-proxy-status-codes;
/// the body as the API gateway sends it).
fn unauthorized() -> Value {
    json!({
        "success": false,
        "error": "unauthorized access",
        "errorCode": 401,
        "error_info": "Please check developers.pipedrive.com for more information about Pipedrive API."
    })
}

/// [`Call::guarded`] with Pipedrive's token check, rate-limit headers and
/// 401 body, counting the request against `limits`: the Search API
/// endpoints have a limit of their own (10 requests per 2 s per token).
/// https://pipedrive.readme.io/docs/core-api-concepts-rate-limiting
async fn guard<F>(
    call: &Call,
    operation: &'static str,
    limits: Limits,
    query: V1Query<'_>,
    apply: F,
) -> Response
where
    F: FnOnce(&mut SimState) -> Answer,
{
    let authorized = authorized(call, query);
    let response = call
        .guarded(
            operation,
            limits,
            Dialect::RateLimitReset,
            authorized,
            apply,
        )
        .await;
    reword_unauthorized(response, unauthorized())
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

/// A v2 input validation failure.
fn invalid(message: impl Into<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({
            "success": false,
            "error": message.into(),
            "code": "ERR_SCHEMA_VALIDATION_FAILED",
            "error_info": "Please check developers.pipedrive.com for more information about Pipedrive API.",
            "data": null,
            "additional_data": null
        })),
    )
        .into_response()
}

/// Refuses a v2 body with a key the endpoint does not define: v2 validates
/// its input strictly (a deleted custom field's key fails the whole request
/// with `ERR_SCHEMA_VALIDATION_FAILED`).
/// https://pipedrive.readme.io/docs/pipedrive-api-v2-migration-guide (General API Changes)
fn check_v2_keys(body: &Value, known: &[&str]) -> Result<(), Response> {
    let unknown: Vec<&String> = body
        .as_object()
        .into_iter()
        .flat_map(Map::keys)
        .filter(|key| !known.contains(&key.as_str()))
        .collect();
    match unknown.first() {
        None => Ok(()),
        Some(key) => Err(invalid(format!(
            "Validation failed: {key}: Parameter '{key}' is not allowed"
        ))),
    }
}

fn parse(body: &Bytes) -> Result<Value, Response> {
    serde_json::from_slice(body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")))
}

/// A v2 body, parsed and refused for any key beyond `known`.
fn v2_body(body: &Bytes, known: &[&str]) -> Result<Value, Response> {
    let body = parse(body)?;
    check_v2_keys(&body, known)?;
    Ok(body)
}

fn person_view(r: &Record) -> Value {
    json!({ "id": r.id.parse::<i64>().unwrap_or_default(), "name": r.properties.get("name"), "phones": r.properties.get("phones"), "emails": r.properties.get("emails"), "update_time": r.properties.get("update_time") })
}

/// A person as `GET /api/v2/persons/{id}` shows it: with its
/// `custom_fields` object, every custom field of the account by key, `null`
/// when empty (https://pipedrive.readme.io/docs/pipedrive-api-v2-migration-guide,
/// "Custom Fields").
fn person_read_view(state: &SimState, r: &Record) -> Value {
    let mut view = person_view(r);
    let fields: Map<String, Value> = state
        .fields_of(Vendor::Pipedrive, "person")
        .map(|field| {
            let value = r.properties.get(&field.key).cloned();
            (field.key.clone(), value.unwrap_or(Value::Null))
        })
        .collect();
    view["custom_fields"] = Value::Object(fields);
    view
}

/// A person as a search item shows it: phones and e-mails as plain strings.
fn search_item(r: &Record) -> Value {
    let values = |list: &str| -> Vec<Value> {
        r.properties
            .get(list)
            .and_then(Value::as_array)
            .map(|l| l.iter().map(|v| v["value"].clone()).collect())
            .unwrap_or_default()
    };
    json!({
        "id": r.id.parse::<i64>().unwrap_or_default(),
        "type": "person",
        "name": r.properties.get("name"),
        "phones": values("phones"),
        "emails": values("emails"),
        "update_time": r.properties.get("update_time"),
    })
}

/// `GET /v1/users/me`: the token's own user (Pipedrive API reference,
/// Users: "Get current user data").
async fn current_user(call: Call, Query(q): Params) -> Response {
    guard(&call, "current_user", Limits::General, Some(&q), |_| {
        Ok(ok(
            StatusCode::OK,
            json!({ "id": 1, "name": "crm-sim user", "company_id": 1, "active_flag": true }),
        ))
    })
    .await
}

/// `GET /api/v2/persons/search` on `fields=phone` or `fields=email`, as
/// Pipedrive documents it (developers.pipedrive.com/docs/api/v1/Persons,
/// "Search persons", API v2):
///
/// - `term`: "The search term to look for. Minimum 2 characters (or 1 if
///   using exact_match)."
/// - `exact_match`: "When enabled, only full exact matches against the given
///   term are returned. It is not case sensitive." The whole stored value
///   must equal the term, ignoring case.
/// - `limit`: "If not provided, 100 items will be returned. Please note that
///   a maximum value of 500 is allowed."; `cursor` pages on, and
///   `additional_data.next_cursor` names the next page.
///
/// How a term without `exact_match` is compared with a stored number is not
/// documented, and Pipedrive documents no normalisation of phone numbers.
/// The simulator takes the strictest reading: the term must appear, ignoring
/// case, in the value as it was typed. Spaces, dashes, brackets, a `+` or a
/// trunk 0 are not skipped, so `612345678` does not find `06 12345678`,
/// while `5678` does.
async fn search(call: Call, Query(q): Params) -> Response {
    guard(&call, "search_person", Limits::Search, None, |state| {
        let (Some(term), Some(field)) = (q.get("term"), q.get("fields")) else {
            return Err(invalid("term and fields are required"));
        };
        let exact = q.get("exact_match").map(String::as_str) == Some("true");
        let shortest = if exact { 1 } else { 2 };
        if term.chars().count() < shortest {
            return Err(invalid(format!(
                "Validation failed: term: must be at least {shortest} characters long"
            )));
        }
        let term = term.to_lowercase();
        let list = if field == "phone" { "phones" } else { "emails" };
        let matches = |r: &Record| -> bool {
            r.properties
                .get(list)
                .and_then(Value::as_array)
                .is_some_and(|values| {
                    values
                        .iter()
                        .filter_map(|v| v["value"].as_str())
                        .map(str::to_lowercase)
                        .any(|v| if exact { v == term } else { v.contains(&term) })
                })
        };
        // Search items list phones and e-mails as typed strings.
        let items: Vec<(i64, Value)> = state
            .contacts
            .iter()
            .filter(|r| state.indexed(r) && matches(r))
            .map(|r| {
                let id = r.id.parse::<i64>().unwrap_or_default();
                (id, json!({ "result_score": 1.0, "item": search_item(r) }))
            })
            .collect();
        let (page, next) = cursor_slice(items, &q)?;
        Ok(Json(json!({
            "success": true,
            "data": { "items": page },
            "additional_data": { "next_cursor": next }
        }))
        .into_response())
    })
    .await
}

async fn create_person(call: Call, body: Bytes) -> Response {
    guard(&call, "create_person", Limits::General, None, |state| {
        let body = v2_body(&body, PERSON_KEYS)?;
        let Some(name) = body["name"].as_str().filter(|n| !n.is_empty()) else {
            return Err(invalid(
                "Validation failed: name: Parameter 'name' is required",
            ));
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
        properties.extend(fields::custom_fields(state, "person", &body)?);
        let record = state.insert(Kind::Contacts, properties, Vec::new());
        Ok(ok(StatusCode::OK, person_view(&record)))
    })
    .await
}

async fn read_person(call: Call, Path(id): Path<String>) -> Response {
    guard(&call, "get_person", Limits::General, None, |state| {
        let person = state
            .find(Kind::Contacts, &id)
            .ok_or_else(person_not_found)?;
        Ok(ok(StatusCode::OK, person_read_view(state, person)))
    })
    .await
}

fn person_not_found() -> Response {
    error(StatusCode::NOT_FOUND, "Person not found")
}

async fn update_person(call: Call, Path(id): Path<String>, body: Bytes) -> Response {
    guard(&call, "update_person", Limits::General, None, |state| {
        let body = v2_body(&body, PERSON_KEYS)?;
        let changes = fields::custom_fields(state, "person", &body)?;
        let person = state
            .update(Kind::Contacts, &id, changes)
            .ok_or_else(person_not_found)?;
        Ok(ok(StatusCode::OK, person_view(person)))
    })
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

/// The records of `kind` on the person `q` names (all of them without one),
/// oldest first, as the list item Pipedrive returns.
fn for_person(
    state: &SimState,
    kind: Kind,
    q: &HashMap<String, String>,
    field: &str,
) -> Vec<(i64, Value)> {
    let person = q.get("person_id");
    state
        .records(kind)
        .iter()
        .filter(|r| person.is_none_or(|p| r.associations.contains(p)))
        .map(|r| {
            let id = r.id.parse::<i64>().unwrap_or_default();
            let person_id = r.associations.first().and_then(|p| p.parse::<i64>().ok());
            (
                id,
                json!({ "id": id, "person_id": person_id, field: r.properties.get(field) }),
            )
        })
        .collect()
}

/// A v1 page: `start`/`limit`, with `limit` capped at 500 (the documented
/// maximum; v1 serves at most that many and reports the limit it used), an
/// empty page as `data: null`, and `next_start` only when there is more.
/// https://pipedrive.readme.io/docs/core-api-concepts-pagination (Offset pagination)
fn offset_page(items: Vec<(i64, Value)>, q: &HashMap<String, String>) -> Response {
    let start = q
        .get("start")
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(0);
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0)
        .unwrap_or(DEFAULT_LIMIT)
        .min(MAX_LIMIT);
    let more = items.len() > start + limit;
    let page: Vec<Value> = items
        .into_iter()
        .skip(start)
        .take(limit)
        .map(|(_, item)| item)
        .collect();
    let mut pagination =
        json!({ "start": start, "limit": limit, "more_items_in_collection": more });
    if more {
        pagination["next_start"] = json!(start + limit);
    }
    let data = if page.is_empty() {
        Value::Null
    } else {
        json!(page)
    };
    Json(json!({ "success": true, "data": data, "additional_data": { "pagination": pagination } }))
        .into_response()
}

/// The opaque v2 cursor naming the first item of the next page.
fn cursor(id: i64) -> String {
    format!("cs{id:x}")
}

/// A v2 page: `cursor`/`limit`; a `limit` over 500 (or not a positive
/// number) and a cursor this API did not issue are 400s, as v2 validates
/// its parameters; `next_cursor` is null on the last page.
/// https://pipedrive.readme.io/docs/core-api-concepts-pagination (Cursor pagination)
fn cursor_page(items: Vec<(i64, Value)>, q: &HashMap<String, String>) -> Response {
    match cursor_slice(items, q) {
        Ok((page, next)) => Json(
            json!({ "success": true, "data": page, "additional_data": { "next_cursor": next } }),
        )
        .into_response(),
        Err(refused) => refused,
    }
}

/// The page of `items` (id, item) a v2 `cursor`/`limit` names, and the
/// cursor of the next page (`None` on the last one).
fn cursor_slice(
    items: Vec<(i64, Value)>,
    q: &HashMap<String, String>,
) -> Result<(Vec<Value>, Option<String>), Response> {
    let limit = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => DEFAULT_LIMIT,
        Some(Ok(l)) if (1..=MAX_LIMIT).contains(&l) => l,
        Some(_) => {
            return Err(invalid(format!(
                "Validation failed: limit: Parameter 'limit' must be an integer from 1 to {MAX_LIMIT}"
            )));
        }
    };
    let from = match q.get("cursor") {
        None => i64::MIN,
        Some(c) => match c
            .strip_prefix("cs")
            .and_then(|hex| i64::from_str_radix(hex, 16).ok())
        {
            Some(id) => id,
            None => return Err(invalid("Validation failed: cursor: Invalid cursor")),
        },
    };
    let mut rest = items.into_iter().filter(|(id, _)| *id >= from);
    let page: Vec<Value> = rest.by_ref().take(limit).map(|(_, item)| item).collect();
    let next = rest.next().map(|(id, _)| cursor(id));
    Ok((page, next))
}

async fn create_note(call: Call, Query(q): Params, body: Bytes) -> Response {
    guard(&call, "create_note", Limits::General, Some(&q), |state| {
        let body = parse(&body)?;
        let Some(content) = body["content"].as_str() else {
            return Err(error(StatusCode::BAD_REQUEST, "content is required"));
        };
        // v1 keeps the keys it knows and drops the rest.
        let mut properties = Map::new();
        for key in NOTE_KEYS.iter().filter(|k| **k != "person_id") {
            if let Some(value) = body.get(*key) {
                properties.insert((*key).to_owned(), value.clone());
            }
        }
        properties.insert("content".into(), json!(content));
        Ok(create_for_person(
            state,
            Kind::Calls,
            body["person_id"].as_i64(),
            properties,
        ))
    })
    .await
}

async fn list_notes(call: Call, Query(q): Params) -> Response {
    guard(&call, "list_notes", Limits::General, Some(&q), |state| {
        Ok(offset_page(
            for_person(state, Kind::Calls, &q, "content"),
            &q,
        ))
    })
    .await
}

async fn create_activity(call: Call, body: Bytes) -> Response {
    guard(&call, "create_activity", Limits::General, None, |state| {
        let body = v2_body(&body, ACTIVITY_KEYS)?;
        let date_ok = body["due_date"].as_str().is_some_and(calendar_date);
        let time_ok = body["due_time"].as_str().is_none_or(clock_time);
        if body["subject"].as_str().is_none() || body["type"] != "call" || !date_ok {
            return Err(invalid(
                "subject, type call and due_date YYYY-MM-DD are required",
            ));
        }
        if !time_ok {
            return Err(invalid(format!(
                "Validation failed: due_time: {} is not a time in the format HH:MM",
                body["due_time"]
            )));
        }
        let mut properties = Map::new();
        for key in ["subject", "type", "due_date", "due_time", "note", "done"] {
            if let Some(v) = body.get(key) {
                properties.insert(key.into(), v.clone());
            }
        }
        Ok(create_for_person(
            state,
            Kind::Tasks,
            body["participants"][0]["person_id"].as_i64(),
            properties,
        ))
    })
    .await
}

/// A `due_date` as Pipedrive documents it: "Format: YYYY-MM-DD", a real
/// calendar date.
fn calendar_date(text: &str) -> bool {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    text.len() == 10 && time::Date::parse(text, format).is_ok()
}

/// A `due_time` in the one input format Pipedrive documents: "The due time
/// of the activity in UTC. Format: HH:MM" (the v1 reference,
/// pipedrive/client-nodejs `docs/ActivityPostObject.md`). The v2 reference
/// says only "The due time of the activity" for `POST /api/v2/activities`,
/// and its example answers show `"due_time":"15:00:00"`
/// (developers.pipedrive.com/docs/api/v1/Activities, API v2), so which
/// formats v2 accepts on input is not settled: the simulator holds a
/// request to the documented `HH:MM` (00:00 to 23:59) and refuses any
/// other (`HH:MM:SS`, `9:05`, `24:00`), as a v2 validator could.
fn clock_time(text: &str) -> bool {
    let bytes = text.as_bytes();
    let two_digits = |at: usize, max: u8| {
        bytes[at].is_ascii_digit()
            && bytes[at + 1].is_ascii_digit()
            && (bytes[at] - b'0') * 10 + (bytes[at + 1] - b'0') <= max
    };
    bytes.len() == 5 && bytes[2] == b':' && two_digits(0, 23) && two_digits(3, 59)
}

async fn list_activities(call: Call, Query(q): Params) -> Response {
    guard(&call, "list_activities", Limits::General, None, |state| {
        Ok(cursor_page(for_person(state, Kind::Tasks, &q, "note"), &q))
    })
    .await
}

impl CrmSim {
    /// Adds notes to a Pipedrive person as if humans had written them long
    /// ago, in order (they list before anything created later).
    pub fn seed_pipedrive_notes(&self, person: &str, contents: impl IntoIterator<Item = String>) {
        let mut s = self.shared.lock();
        for content in contents {
            let id = s.new_id();
            let mut properties = Map::new();
            properties.insert("content".into(), json!(content));
            s.calls.push(Record {
                id,
                properties,
                associations: vec![person.to_owned()],
                created: None,
            });
        }
    }
}

impl CrmSim {
    /// Creates a person field as the business would in Pipedrive's
    /// settings; returns its key and its options' ids, in order.
    pub fn define_pipedrive_person_field(
        &self,
        name: &str,
        field_type: &str,
        labels: &[&str],
    ) -> (String, Vec<i64>) {
        let field = self.define_pipedrive_field("person", name, field_type, labels);
        let ids = field.options.iter().filter_map(|o| o.id.as_i64()).collect();
        (field.key, ids)
    }

    /// Gives a person field the key `key` (for a test whose mapping named
    /// a key before the field existed).
    pub fn rename_pipedrive_person_field(&self, from: &str, key: &str) {
        let mut state = self.shared.lock();
        if let Some(field) = state
            .fields
            .iter_mut()
            .find(|f| f.vendor == Vendor::Pipedrive && f.object == "person" && f.key == from)
        {
            key.clone_into(&mut field.key);
        }
    }

    /// Deletes a person field, as an admin would.
    pub fn delete_pipedrive_person_field(&self, key: &str) {
        let mut state = self.shared.lock();
        state
            .fields
            .retain(|f| !(f.vendor == Vendor::Pipedrive && f.object == "person" && f.key == key));
    }
}
