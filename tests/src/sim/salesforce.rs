// Routes return ready-made error responses; boxing them would only add noise.
#![allow(clippy::result_large_err)]

//! The Salesforce REST endpoints the worker uses: SOSL search over phone
//! and e-mail fields, Contact create/read/update, and Task upsert and read by
//! the External ID field `Callsync_Marker__c`. The API limit answers 403
//! `REQUEST_LIMIT_EXCEEDED`, as Salesforce does.
//!
//! Every field written must exist on the sObject: a standard field of the
//! object reference, or one of the custom fields the README asks an admin to
//! create. Anything else is refused with `INVALID_FIELD`, as Salesforce does.
//!
//! `POST /services/oauth2/token` issues the current session token for the
//! client credentials and refresh-token grants, so the worker's token
//! renewal can be tested with [`super::CrmSim::expire_token`].

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde_json::{Map, Value, json};

use super::{Answer, Call, Dialect, Kind, Limits, Shared, State as SimState};

/// The connected app crm-sim's token endpoint accepts.
pub const OAUTH_CLIENT_ID: &str = "crm-sim-client";
pub const OAUTH_CLIENT_SECRET: &str = "crm-sim-client-secret";
/// The refresh token it accepts with `grant_type=refresh_token`.
pub const OAUTH_REFRESH_TOKEN: &str = "crm-sim-refresh-token";

pub fn router(shared: Shared) -> Router {
    Router::new()
        .route("/services/oauth2/token", post(oauth_token))
        .route("/services/data/{version}/", get(resources))
        .route("/services/data/{version}/search/", get(search))
        .route(
            "/services/data/{version}/sobjects/Contact",
            post(create_contact),
        )
        .route(
            "/services/data/{version}/sobjects/{object}/{id}",
            get(read_object).patch(update_object),
        )
        .route(
            "/services/data/{version}/sobjects/Task/Callsync_Marker__c/{marker}",
            get(read_task).patch(upsert_task),
        )
        .with_state(shared)
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!([{ "errorCode": code, "message": message.into() }])),
    )
        .into_response()
}

fn parse(body: &Bytes) -> Result<Value, Response> {
    serde_json::from_slice(body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, "JSON_PARSER_ERROR", e.to_string()))
}

/// A body's fields, parsed and refused if `sobject` lacks any of them.
fn fields_of(sobject: &str, body: &Bytes) -> Result<Map<String, Value>, Response> {
    let fields = parse(body)?.as_object().cloned().unwrap_or_default();
    check_fields(sobject, &fields)?;
    check_picklists(sobject, &fields)?;
    Ok(fields)
}

/// Salesforce's 400 for a request it will not apply.
fn bad_request(code: &str, message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, code, message)
}

fn not_found(message: &str) -> Response {
    error(StatusCode::NOT_FOUND, "NOT_FOUND", message)
}

/// The records the `{object}/{id}` routes serve: contacts and leads, both
/// kept with the contacts; any other sObject is a 404.
fn contact_like(object: &str) -> Result<(), Response> {
    if object != "Contact" && object != "Lead" {
        return Err(not_found("The requested resource does not exist"));
    }
    Ok(())
}

/// [`Call::guarded`] with Salesforce's bearer token check and wording
/// (a 401 `INVALID_SESSION_ID`, the API limit as 403).
async fn guard<F>(call: &Call, operation: &'static str, apply: F) -> Response
where
    F: FnOnce(&mut SimState) -> Answer,
{
    let authorized = call.shared.bearer_ok(&call.headers);
    call.guarded(
        operation,
        Limits::General,
        Dialect::Salesforce,
        authorized,
        apply,
    )
    .await
}

fn digits(text: &str) -> String {
    text.chars().filter(char::is_ascii_digit).collect()
}

/// An 18-character id with Salesforce's key prefix for the object.
fn sf_id(prefix: &str, n: &str) -> String {
    format!("{prefix}{n:0>15}")
}

fn unescape(term: &str) -> String {
    let mut out = String::new();
    let mut escaped = false;
    for c in term.chars() {
        if c == '\\' && !escaped {
            escaped = true;
            continue;
        }
        escaped = false;
        out.push(c);
    }
    out
}

/// Contact's standard fields a client can set (read-only and
/// feature-dependent ones such as `RecordTypeId` are left out).
/// https://developer.salesforce.com/docs/atlas.en-us.230.0.object_reference.meta/object_reference/sforce_api_objects_contact.htm
const CONTACT_FIELDS: &[&str] = &[
    "AccountId",
    "AssistantName",
    "AssistantPhone",
    "Birthdate",
    "Department",
    "Description",
    "DoNotCall",
    "Email",
    "EmailBouncedDate",
    "EmailBouncedReason",
    "Fax",
    "FirstName",
    "HasOptedOutOfEmail",
    "HasOptedOutOfFax",
    "HomePhone",
    "LastName",
    "LeadSource",
    "MailingCity",
    "MailingCountry",
    "MailingPostalCode",
    "MailingState",
    "MailingStreet",
    "MiddleName",
    "MobilePhone",
    "OtherCity",
    "OtherCountry",
    "OtherPhone",
    "OtherPostalCode",
    "OtherState",
    "OtherStreet",
    "OwnerId",
    "Phone",
    "ReportsToId",
    "Salutation",
    "Suffix",
    "Title",
];

/// Lead's standard fields a client can set.
/// https://developer.salesforce.com/docs/platform/field-reference/references/field-reference/salesforce-field-reference-lead.html
const LEAD_FIELDS: &[&str] = &[
    "AnnualRevenue",
    "City",
    "Company",
    "Country",
    "Description",
    "DoNotCall",
    "Email",
    "Fax",
    "FirstName",
    "HasOptedOutOfEmail",
    "HasOptedOutOfFax",
    "Industry",
    "LastName",
    "LeadSource",
    "MiddleName",
    "MobilePhone",
    "NumberOfEmployees",
    "OwnerId",
    "Phone",
    "PostalCode",
    "Rating",
    "Salutation",
    "State",
    "Status",
    "Street",
    "Suffix",
    "Title",
    "Website",
];

/// Task's standard fields a client can set (`AccountId`, `IsClosed` and
/// `IsHighPriority` are derived and read-only).
/// https://developer.salesforce.com/docs/atlas.en-us.248.0.api.meta/api/sforce_api_objects_task.htm
const TASK_FIELDS: &[&str] = &[
    "ActivityDate",
    "CallDisposition",
    "CallDurationInSeconds",
    "CallObject",
    "CallType",
    "Description",
    "IsReminderSet",
    "OwnerId",
    "Priority",
    "ReminderDateTime",
    "Status",
    "Subject",
    "TaskSubtype",
    "Type",
    "WhatId",
    "WhoId",
];

/// The custom fields an admin creates once (README, "Salesforce"): the
/// last-call fields on Contact and Lead, the External ID on Task.
const LAST_CALL_FIELDS: &[&str] = &[
    "Callsync_Last_Call_At__c",
    "Callsync_Last_Call_Summary__c",
    "Callsync_Last_Sentiment__c",
];
const TASK_CUSTOM_FIELDS: &[&str] = &["Callsync_Marker__c"];

/// Refuses a body naming a field `sobject` does not have, as Salesforce
/// does on create, update and upsert: 400 `INVALID_FIELD`, "No such column
/// '<field>' on sobject of type <sobject>", for the first such field.
/// Field names are case-insensitive; `attributes` is the record's metadata.
/// https://developer.salesforce.com/docs/atlas.en-us.222.0.api_rest.meta/api_rest/errorcodes.htm
/// (the message as Salesforce words it: https://github.com/MinnPost/object-sync-for-salesforce/issues/194)
fn check_fields(sobject: &str, body: &Map<String, Value>) -> Result<(), Response> {
    let (standard, custom) = match sobject {
        "Contact" => (CONTACT_FIELDS, LAST_CALL_FIELDS),
        "Lead" => (LEAD_FIELDS, LAST_CALL_FIELDS),
        _ => (TASK_FIELDS, TASK_CUSTOM_FIELDS),
    };
    let known = |name: &str| {
        name == "attributes"
            || standard
                .iter()
                .chain(custom)
                .any(|f| f.eq_ignore_ascii_case(name))
    };
    match body.keys().find(|name| !known(name)) {
        None => Ok(()),
        Some(name) => Err(error(
            StatusCode::BAD_REQUEST,
            "INVALID_FIELD",
            format!("No such column '{name}' on sobject of type {sobject}"),
        )),
    }
}

/// The OAuth 2.0 token endpoint. Token requests are not API calls (they do
/// not count against the API limit), so they bypass the rate limit and the
/// injected faults and are only counted under `oauth_token`.
async fn oauth_token(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut state = shared.lock();
    state.count_unguarded("oauth_token");
    let field = |name: &str| form.get(name).map(String::as_str);
    let client_ok = field("client_id") == Some(OAUTH_CLIENT_ID)
        && field("client_secret") == Some(OAUTH_CLIENT_SECRET);
    let grant_ok = match field("grant_type") {
        Some("client_credentials") => true,
        Some("refresh_token") => field("refresh_token") == Some(OAUTH_REFRESH_TOKEN),
        _ => false,
    };
    if !client_ok {
        let body =
            json!({ "error": "invalid_client", "error_description": "invalid client credentials" });
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    }
    if state.oauth_revoked {
        // Salesforce's answer for a revoked or expired refresh token (OAuth
        // 2.0 token flow errors, "expired access/refresh token").
        let body = json!({ "error": "invalid_grant", "error_description": "expired access/refresh token" });
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    }
    if !grant_ok {
        let body =
            json!({ "error": "invalid_grant", "error_description": "authentication failure" });
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    }
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1");
    Json(json!({
        "access_token": state.config.token.clone(),
        "instance_url": format!("http://{host}"),
        "token_type": "Bearer",
        "issued_at": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis().to_string())
            .unwrap_or_default(),
    }))
    .into_response()
}

/// `GET /services/data/vXX.X/`: the resources of an API version (REST API
/// developer guide, "Resources by Version"). Authenticated and read-only.
async fn resources(call: Call, Path(version): Path<String>) -> Response {
    guard(&call, "resources", |_| {
        Ok(Json(json!({
            "sobjects": format!("/services/data/{version}/sobjects"),
            "search": format!("/services/data/{version}/search"),
            "limits": format!("/services/data/{version}/limits"),
        }))
        .into_response())
    })
    .await
}

async fn search(call: Call, Query(q): Query<HashMap<String, String>>) -> Response {
    guard(&call, "search", |state| {
        let malformed = |message: &str| bad_request("MALFORMED_SEARCH", message);
        let query = q.get("q").ok_or_else(|| malformed("q is required"))?;
        let (Some(open), Some(close)) = (query.find('{'), query.rfind('}')) else {
            return Err(malformed("FIND {term} expected"));
        };
        let term = unescape(&query[open + 1..close]);
        let by_phone = query.contains("IN PHONE FIELDS");
        let by_email = query.contains("IN EMAIL FIELDS");
        if !by_phone && !by_email {
            return Err(malformed("crm-sim supports PHONE and EMAIL fields"));
        }
        let records: Vec<Value> = state
            .contacts
            .iter()
            .filter(|r| state.indexed(r))
            .filter(|r| {
                (by_phone && has_phone_digits(r, &term))
                    || (by_email
                        && r.prop("Email")
                            .is_some_and(|e| e.eq_ignore_ascii_case(&term)))
            })
            .map(|r| {
                let mut view = Map::new();
                view.insert("attributes".into(), json!({ "type": "Contact" }));
                view.insert("Id".into(), json!(r.id));
                // Values come back as stored, in the fields RETURNING names.
                for field in returned_fields(query) {
                    if let Some(v) = r.properties.get(&field) {
                        view.insert(field, v.clone());
                    }
                }
                Value::Object(view)
            })
            .collect();
        Ok(Json(json!({ "searchRecords": records })).into_response())
    })
    .await
}

/// The phone fields SOSL's `IN PHONE FIELDS` searches.
const PHONE_FIELDS: &[&str] = &[
    "Phone",
    "MobilePhone",
    "HomePhone",
    "OtherPhone",
    "AssistantPhone",
];

/// SOSL matches a phone search term against the digits of every phone field,
/// partial matches included, whatever punctuation the number was typed with.
/// https://developer.salesforce.com/docs/atlas.en-us.soql_sosl.meta/soql_sosl/sforce_api_calls_sosl_find.htm
fn has_phone_digits(record: &super::Record, term: &str) -> bool {
    let wanted = digits(term);
    !wanted.is_empty()
        && PHONE_FIELDS
            .iter()
            .filter_map(|f| record.prop(f))
            .any(|p| digits(p).contains(&wanted))
}

/// The fields the `Contact(...)` part of a RETURNING clause names.
fn returned_fields(query: &str) -> Vec<String> {
    let Some(start) = query.find("Contact(") else {
        return Vec::new();
    };
    let rest = &query[start + "Contact(".len()..];
    let list = rest.split(')').next().unwrap_or_default();
    let list = list.split(" ORDER BY").next().unwrap_or_default();
    list.split(',')
        .map(|f| f.trim().to_owned())
        .filter(|f| !f.is_empty() && f != "Id")
        .collect()
}

async fn create_contact(call: Call, body: Bytes) -> Response {
    guard(&call, "create_contact", |state| {
        let properties = fields_of("Contact", &body)?;
        if properties
            .get("LastName")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(bad_request(
                "REQUIRED_FIELD_MISSING",
                "Required fields are missing: [LastName]",
            ));
        }
        let record = state.insert_as(Kind::Contacts, properties, Vec::new(), |n| sf_id("003", n));
        Ok((
            StatusCode::CREATED,
            Json(json!({ "id": record.id, "success": true, "errors": [] })),
        )
            .into_response())
    })
    .await
}

async fn read_object(
    call: Call,
    Path((_, object, id)): Path<(String, String, String)>,
) -> Response {
    guard(&call, "get_contact", |state| {
        contact_like(&object)?;
        let record = state
            .find(Kind::Contacts, &id)
            .ok_or_else(|| not_found("The requested resource does not exist"))?;
        let mut view = record.properties.clone();
        view.insert("Id".into(), json!(record.id));
        Ok(Json(Value::Object(view)).into_response())
    })
    .await
}

async fn update_object(
    call: Call,
    Path((_, object, id)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    guard(&call, "update_contact", |state| {
        contact_like(&object)?;
        let fields = fields_of(&object, &body)?;
        state
            .update(Kind::Contacts, &id, fields)
            .ok_or_else(|| not_found("The requested resource does not exist"))?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}

/// The Task with external id `marker`, in calls (TaskSubtype Call) or tasks.
fn find_task<'a>(state: &'a mut SimState, marker: &str) -> Option<&'a mut super::Record> {
    let in_calls = state
        .calls
        .iter()
        .position(|r| r.prop("Callsync_Marker__c") == Some(marker));
    match in_calls {
        Some(i) => state.calls.get_mut(i),
        None => state
            .tasks
            .iter_mut()
            .find(|r| r.prop("Callsync_Marker__c") == Some(marker)),
    }
}

async fn read_task(call: Call, Path((_, marker)): Path<(String, String)>) -> Response {
    guard(&call, "get_task", |state| {
        let task = find_task(state, &marker).ok_or_else(|| {
            not_found("Provided external ID field does not exist or is not accessible")
        })?;
        Ok(Json(json!({ "Id": task.id, "Callsync_Marker__c": marker })).into_response())
    })
    .await
}

async fn upsert_task(
    call: Call,
    Path((_, marker)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let operation = if marker.ends_with(":follow-up") {
        "upsert_follow_up_task"
    } else {
        "upsert_call_task"
    };
    guard(&call, operation, |state| {
        let mut properties = fields_of("Task", &body)?;
        properties.insert("Callsync_Marker__c".into(), json!(marker));
        if let Some(existing) = find_task(state, &marker) {
            // An update may not change TaskSubtype, as in Salesforce.
            if properties
                .get("TaskSubtype")
                .is_some_and(|s| Some(s) != existing.properties.get("TaskSubtype"))
            {
                return Err(bad_request(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    "TaskSubtype cannot be updated",
                ));
            }
            existing.properties.extend(properties);
            let id = existing.id.clone();
            return Ok(
                Json(json!({ "id": id, "success": true, "created": false, "errors": [] }))
                    .into_response(),
            );
        }
        let who = new_task_owner(state, &properties)?;
        let kind = if properties.get("TaskSubtype") == Some(&json!("Call")) {
            Kind::Calls
        } else {
            Kind::Tasks
        };
        let record = state.insert_as(kind, properties, vec![who], |n| sf_id("00T", n));
        Ok((
            StatusCode::CREATED,
            Json(json!({ "id": record.id, "success": true, "created": true, "errors": [] })),
        )
            .into_response())
    })
    .await
}

/// The contact a new Task belongs to (`WhoId`, required and existing),
/// once its `ActivityDate` is a date.
fn new_task_owner(state: &SimState, task: &Map<String, Value>) -> Result<String, Response> {
    let Some(who) = task.get("WhoId").and_then(Value::as_str) else {
        return Err(bad_request("REQUIRED_FIELD_MISSING", "WhoId is required"));
    };
    if !state.contacts.iter().any(|c| c.id == who) {
        return Err(bad_request(
            "INVALID_CROSS_REFERENCE_KEY",
            format!("invalid cross reference id {who}"),
        ));
    }
    if task
        .get("ActivityDate")
        .and_then(Value::as_str)
        .is_none_or(|d| d.len() != 10)
    {
        return Err(bad_request(
            "INVALID_TYPE",
            "ActivityDate must be YYYY-MM-DD",
        ));
    }
    Ok(who.to_owned())
}

/// Task's `CallType`: "Inbound, Internal, or Outbound" (Salesforce object
/// reference, Task:
/// https://developer.salesforce.com/docs/atlas.en-us.248.0.api.meta/api/sforce_api_objects_task.htm).
const CALL_TYPES: &[&str] = &["Inbound", "Internal", "Outbound"];

/// Refuses a Task whose `CallType` is not one of its documented values.
/// Salesforce refuses a value outside a restricted picklist with 400
/// `INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST`, "bad value for restricted
/// picklist field: <value>"
/// (https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_calls_concepts_core_data_objects.htm,
/// StatusCode). Whether `CallType` is restricted in every org is not
/// settled by the object reference: the simulator takes the strictest
/// reading and refuses any other value.
fn check_picklists(sobject: &str, fields: &Map<String, Value>) -> Result<(), Response> {
    if sobject != "Task" {
        return Ok(());
    }
    match fields.get("CallType") {
        None => Ok(()),
        Some(value) if value.as_str().is_some_and(|v| CALL_TYPES.contains(&v)) => Ok(()),
        Some(value) => Err(bad_request(
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            format!(
                "bad value for restricted picklist field: {}",
                value.as_str().unwrap_or_default()
            ),
        )),
    }
}
