// Routes return ready-made error responses; boxing them would only add noise.
#![allow(clippy::result_large_err)]

//! The HubSpot CRM v3 endpoints the worker uses, with HubSpot's rules: a
//! property must be defined on the object (a default property, or a custom
//! one created through the properties API) before it is written, e-mails are
//! unique (409 with the existing id), associations need a known contact and
//! the right type id, search only sees records once they are indexed, and a
//! missing or wrong token gets HubSpot's 401.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use callsync_shared::phone::matching::CallerNumber;

use super::{
    Answer, Call, CrmSim, Dialect, Kind, Limits, Record, Shared, State as SimState,
    reword_unauthorized,
};

mod deals;

pub use deals::DEAL_SCOPES;
pub(crate) use deals::default_pipelines;

/// HubSpot's default contact properties a client can write (the
/// `contactinformation` group and the common owner, lifecycle and
/// demographic ones). HubSpot-calculated properties (`hs_object_id`,
/// `createdate`, `lastmodifieddate`, analytics) are left out: nothing writes them.
/// https://developers.hubspot.com/docs/api/crm/properties (default properties)
const CONTACT_PROPERTIES: &[&str] = &[
    "address",
    "annualrevenue",
    "city",
    "company",
    "company_size",
    "country",
    "date_of_birth",
    "degree",
    "email",
    "fax",
    "field_of_study",
    "firstname",
    "gender",
    "graduation_date",
    "hs_buying_role",
    "hs_language",
    "hs_lead_status",
    "hs_persona",
    "hs_timezone",
    "hs_whatsapp_phone_number",
    "hubspot_owner_id",
    "industry",
    "job_function",
    "jobtitle",
    "lastname",
    "lifecyclestage",
    "marital_status",
    "message",
    "military_status",
    "mobilephone",
    "numemployees",
    "phone",
    "relationship_status",
    "salutation",
    "school",
    "seniority",
    "start_date",
    "state",
    "twitterhandle",
    "website",
    "work_email",
    "zip",
];

/// The default calling properties HubSpot lists for `POST /crm/v3/objects/calls`.
/// https://developers.hubspot.com/docs/api/crm/calls (Properties)
const CALL_PROPERTIES: &[&str] = &[
    "hs_activity_type",
    "hs_attachment_ids",
    "hs_call_body",
    "hs_call_callee_object_id",
    "hs_call_callee_object_type",
    "hs_call_direction",
    "hs_call_disposition",
    "hs_call_duration",
    "hs_call_from_number",
    "hs_call_recording_url",
    "hs_call_source",
    "hs_call_status",
    "hs_call_title",
    "hs_call_to_number",
    "hs_timestamp",
    "hubspot_owner_id",
];

/// The task properties HubSpot lists for `POST /crm/v3/objects/tasks`.
/// https://developers.hubspot.com/docs/api/crm/tasks (Properties)
const TASK_PROPERTIES: &[&str] = &[
    "hs_task_body",
    "hs_task_priority",
    "hs_task_reminders",
    "hs_task_status",
    "hs_task_subject",
    "hs_task_type",
    "hs_timestamp",
    "hubspot_owner_id",
];

pub fn router(shared: Shared) -> Router {
    Router::new()
        .route("/crm/v3/properties/{object}/groups", post(create_group))
        .route(
            "/crm/v3/properties/{object}",
            post(create_property).get(list_properties),
        )
        .route("/crm/v3/objects/{object}/search", post(search))
        .route("/crm/v3/objects/{object}", post(create).get(list))
        .route(
            "/oauth/v2/private-apps/get/access-token-info",
            post(token_info),
        )
        .route("/oauth/v1/token", post(oauth_token))
        .route("/oauth/v1/access-tokens/{token}", get(access_token_info))
        .route(
            "/crm/v3/properties/{object}/groups/{name}",
            axum::routing::patch(update_group),
        )
        .route("/crm/v3/objects/{object}/{id}", get(read).patch(update))
        .merge(deals::routes())
        .with_state(shared)
}

fn error(status: StatusCode, category: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({ "status": "error", "category": category, "message": message.into() })),
    )
        .into_response()
}

/// The collection of `object`; any other object type is a 404.
fn kind(object: &str) -> Result<Kind, Response> {
    match object {
        "contacts" => Ok(Kind::Contacts),
        "calls" => Ok(Kind::Calls),
        "tasks" => Ok(Kind::Tasks),
        _ => Err(not_found("unknown object type")),
    }
}

fn not_found(message: &str) -> Response {
    error(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", message)
}

/// HubSpot's 400 for a request it will not apply.
fn invalid(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message)
}

/// HubSpot's 409 for a record that already exists.
fn conflict(category: &str, message: impl Into<String>) -> Response {
    error(StatusCode::CONFLICT, category, message)
}

/// What a search and a create count as, on contacts, calls, tasks and any
/// other object type, in the order [`operation_on`] takes them.
const SEARCHES: [&str; 4] = [
    "search_contacts",
    "search_calls",
    "search_tasks",
    "search_other",
];
const CREATES: [&str; 4] = [
    "create_contact",
    "create_call",
    "create_task",
    "create_other",
];

/// The operation a request on `object` counts as, from `operations` (one
/// of [`SEARCHES`] and [`CREATES`]).
fn operation_on(object: &str, operations: [&'static str; 4]) -> &'static str {
    let [contacts, calls, tasks, other] = operations;
    match object {
        "contacts" => contacts,
        "calls" => calls,
        "tasks" => tasks,
        _ => other,
    }
}

fn parse(body: &Bytes) -> Result<Value, Response> {
    serde_json::from_slice(body).map_err(|e| invalid(format!("invalid JSON: {e}")))
}

/// The `properties` of a create or update body, refused if the object does
/// not have them all.
fn written_properties(
    state: &SimState,
    object: &str,
    body: &Value,
) -> Result<Map<String, Value>, Response> {
    let properties = body["properties"].as_object().cloned().unwrap_or_default();
    check_properties(state, object, &properties)?;
    check_call_values(object, &properties)?;
    check_custom_values(state, object, &properties)?;
    Ok(properties)
}

/// Whether `name` is a property of `object`: a default one, or a custom one
/// created through the properties API.
fn defined(state: &SimState, object: &str, name: &str) -> bool {
    let defaults = match object {
        "contacts" => CONTACT_PROPERTIES,
        "calls" => CALL_PROPERTIES,
        "tasks" => TASK_PROPERTIES,
        _ => &[],
    };
    defaults.contains(&name) || state.properties.contains(&format!("{object}.{name}"))
}

/// Refuses a write naming any property the object does not have, as HubSpot
/// does: 400 `VALIDATION_ERROR` whose message lists one
/// `PROPERTY_DOESNT_EXIST` entry per unknown property (the shape of
/// https://developers.hubspot.com/changelog/upcoming-property-validations-rules-will-be-enforced-for-apis-and-integrations).
fn check_properties(
    state: &SimState,
    object: &str,
    properties: &Map<String, Value>,
) -> Result<(), Response> {
    let errors: Vec<Value> = properties
        .keys()
        .filter(|name| !defined(state, object, name))
        .map(|name| {
            let message = format!("Property \"{name}\" does not exist");
            json!({
                "isValid": false,
                "message": message,
                "error": "PROPERTY_DOESNT_EXIST",
                "name": name,
                "localizedErrorMessage": message,
            })
        })
        .collect();
    if errors.is_empty() {
        return Ok(());
    }
    Err(invalid(format!(
        "Property values were not valid: {}",
        Value::Array(errors)
    )))
}

/// HubSpot's answer to a missing or wrong token (the error shape of
/// https://developers.hubspot.com/docs/faq/api-error-responses, the message of
/// https://developers.hubspot.com/changelog/improvements-to-authentication-errors-for-v3-endpoints-in-developer-preview-program).
fn unauthorized() -> Value {
    json!({
        "status": "error",
        "message": "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
        "correlationId": uuid::Uuid::new_v4().to_string(),
        "category": "INVALID_AUTHENTICATION"
    })
}

/// [`Call::guarded`] with HubSpot's bearer token and scope checks and its
/// 401 body; the search endpoints count against `Limits::Search`, as
/// HubSpot limits them apart.
async fn guard<F>(call: &Call, operation: &'static str, limits: Limits, apply: F) -> Response
where
    F: FnOnce(&mut SimState) -> Answer,
{
    let authorized = call.shared.bearer_ok(&call.headers);
    let scope = required_scope(operation);
    let response = call
        .guarded(
            operation,
            limits,
            Dialect::RetryAfter,
            authorized,
            |state| match scope.filter(|scope| !state.hubspot_scopes.iter().any(|s| s == scope)) {
                Some(scope) => Err(missing_scope(scope)),
                None => apply(state),
            },
        )
        .await;
    reword_unauthorized(response, unauthorized())
}

/// The scopes HubSpot's API reference lists for each endpoint the worker
/// uses: reading and writing contacts, calls and tasks need the contacts
/// object scopes (the calls and tasks references list
/// `crm.objects.contacts.read` and `.write`); the properties API on
/// contacts needs `crm.schemas.contacts.write` (checked in its handlers,
/// which know the object).
fn required_scope(operation: &str) -> Option<&'static str> {
    match operation {
        "get_contact" | "list_objects" | "read_properties" => Some("crm.objects.contacts.read"),
        op if op.starts_with("search_") => Some("crm.objects.contacts.read"),
        op if op.starts_with("create_") && op != "create_group" && op != "create_property" => {
            Some("crm.objects.contacts.write")
        }
        "update_contact" => Some("crm.objects.contacts.write"),
        _ => None,
    }
}

/// Every scope a complete callsync private app has; a new simulator's
/// token holds them all.
pub const ALL_SCOPES: [&str; 3] = [
    "crm.objects.contacts.read",
    "crm.objects.contacts.write",
    "crm.schemas.contacts.write",
];

/// HubSpot's 403 for a token without a scope the endpoint needs.
fn missing_scope(scope: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        Json(json!({
            "status": "error",
            "message": "This app hasn't been granted all required scopes to make this call. Read more about required scopes here: https://developers.hubspot.com/scopes.",
            "category": "MISSING_SCOPES",
            "errors": [{
                "message": "One or more of the following scopes are required.",
                "context": { "requiredGranularScopes": [scope] }
            }]
        })),
    )
        .into_response()
}

/// Properties and groups on contacts need the contacts schema scope, on
/// deals the deals schema scope (`crm.schemas.<object>.write`, see
/// `deals.rs`).
fn schema_scope(state: &SimState, object: &str) -> Result<(), Response> {
    let scope = match object {
        "contacts" => "crm.schemas.contacts.write",
        "deals" => "crm.schemas.deals.write",
        _ => return Ok(()),
    };
    if !state.hubspot_scopes.iter().any(|s| s == scope) {
        return Err(missing_scope(scope));
    }
    Ok(())
}

/// `GET /crm/v3/objects/{object}?limit=n`: the first records, oldest first.
async fn list(
    call: Call,
    Path(object): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    guard(&call, "list_objects", Limits::General, |state| {
        let kind = kind(&object)?;
        let limit = query
            .get("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .unwrap_or(10)
            .clamp(1, 100);
        let results: Vec<Value> = state.records(kind).iter().take(limit).map(view).collect();
        Ok(Json(json!({ "results": results })).into_response())
    })
    .await
}

/// `POST /oauth/v2/private-apps/get/access-token-info` with `tokenKey`: the
/// private app token's scopes (developers.hubspot.com/docs/api/private-apps).
/// It is documented for private apps only: whether it describes a service
/// key or an OAuth access token is not, so the simulator refuses them
/// (the strictest reading).
async fn token_info(State(shared): State<Shared>, body: Bytes) -> Response {
    let state = shared.lock();
    let key = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|b| b["tokenKey"].as_str().map(str::to_owned));
    if key.as_deref() != Some(state.config.token.as_str())
        || state.hubspot.credential != Credential::PrivateApp
    {
        return (StatusCode::UNAUTHORIZED, Json(unauthorized())).into_response();
    }
    Json(json!({
        "userId": 1,
        "hubId": 1,
        "appId": 1,
        "scopes": state.hubspot_scopes,
    }))
    .into_response()
}

fn view(record: &Record) -> Value {
    json!({ "id": record.id, "properties": record.properties, "archived": false })
}

async fn create_group(call: Call, Path(object): Path<String>, body: Bytes) -> Response {
    guard(&call, "create_group", Limits::General, |state| {
        schema_scope(state, &object)?;
        let body = parse(&body)?;
        let Some(name) = body["name"].as_str() else {
            return Err(invalid("name is required"));
        };
        if !state.groups.insert(format!("{object}.{name}")) {
            return Err(conflict(
                "OBJECT_ALREADY_EXISTS",
                "Property group already exists",
            ));
        }
        Ok((StatusCode::CREATED, Json(json!({ "name": name }))).into_response())
    })
    .await
}

async fn create_property(call: Call, Path(object): Path<String>, body: Bytes) -> Response {
    guard(&call, "create_property", Limits::General, |state| {
        schema_scope(state, &object)?;
        let body = parse(&body)?;
        let (Some(name), Some(kind), Some(field_type), Some(group)) = (
            body["name"].as_str(),
            body["type"].as_str(),
            body["fieldType"].as_str(),
            body["groupName"].as_str(),
        ) else {
            return Err(invalid("name, type, fieldType and groupName are required"));
        };
        if !PROPERTY_TYPES.contains(&kind) {
            return Err(invalid(format!(
                "{kind} is not a valid property type: one of {}",
                PROPERTY_TYPES.join(", ")
            )));
        }
        if !state.groups.contains(&format!("{object}.{group}")) {
            return Err(invalid(format!("property group {group} does not exist")));
        }
        if !state.properties.insert(format!("{object}.{name}")) {
            return Err(conflict(
                "OBJECT_ALREADY_EXISTS",
                format!("Property {name} already exists"),
            ));
        }
        let options: Vec<Value> = body["options"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|o| json!({ "label": o["label"], "value": o["value"], "hidden": false }))
            .collect();
        state.hubspot.definitions.insert(
            format!("{object}.{name}"),
            json!({
                "name": name,
                "type": kind,
                "fieldType": field_type,
                "groupName": group,
                "options": options,
                "modificationMetadata": { "readOnlyValue": false, "archivable": true, "readOnlyDefinition": false },
            }),
        );
        Ok((StatusCode::CREATED, Json(json!({ "name": name }))).into_response())
    })
    .await
}

/// The property types HubSpot's properties API takes: "`bool`, `enumeration`,
/// `date`, `datetime`, `string`, `number`" (HubSpot/hubspot-api-nodejs
/// `codegen/crm/properties/models/PropertyCreate.ts`, `PropertyCreateTypeEnum`;
/// `phone_number` is left out: no callsync property is one).
const PROPERTY_TYPES: &[&str] = &[
    "bool",
    "enumeration",
    "date",
    "datetime",
    "string",
    "number",
];

/// `GET /crm/v3/properties/{objectType}`: every property of the object,
/// `{ "results": [ { name, label, type, fieldType, options, … } ] }`
/// (https://developers.hubspot.com/docs/api-reference/crm-properties-v3/core/get-crm-v3-properties-objectType).
/// The defaults are listed as single-line text, except those listed in
/// [`DEFAULT_ENUMERATIONS`]; a custom property as it was created. Reading
/// needs the object's read scope (the properties API reference lists
/// `crm.objects.contacts.read` among the scopes that allow it).
async fn list_properties(call: Call, Path(object): Path<String>) -> Response {
    guard(&call, "read_properties", Limits::General, |state| {
        kind(&object)?;
        let defaults = match object.as_str() {
            "contacts" => CONTACT_PROPERTIES,
            "calls" => CALL_PROPERTIES,
            "tasks" => TASK_PROPERTIES,
            _ => &[],
        };
        let mut results: Vec<Value> = defaults
            .iter()
            .map(|name| {
                let enumeration = DEFAULT_ENUMERATIONS
                    .iter()
                    .chain(CALL_ENUMERATIONS.iter().filter(|_| object == "calls"))
                    .find(|(n, _)| n == name);
                match enumeration {
                    Some((_, options)) => json!({
                        "name": name, "label": name, "type": "enumeration", "fieldType": "select",
                        "options": options.iter().map(|o| json!({"label": o, "value": o, "hidden": false})).collect::<Vec<_>>(),
                    }),
                    None => json!({
                        "name": name, "label": name, "type": "string", "fieldType": "text", "options": [],
                    }),
                }
            })
            .collect();
        let prefix = format!("{object}.");
        let mut custom: Vec<(&String, &Value)> = state
            .hubspot
            .definitions
            .iter()
            .filter(|(key, _)| key.starts_with(&prefix))
            .collect();
        custom.sort_by_key(|(key, _)| *key);
        results.extend(custom.into_iter().map(|(_, def)| def.clone()));
        Ok(Json(json!({ "results": results })).into_response())
    })
    .await
}

/// Default contact properties that are enumerations, with the internal
/// values HubSpot lists for them (lifecycle stage: "subscriber, lead,
/// marketingqualifiedlead, salesqualifiedlead, opportunity, customer,
/// evangelist, other"; lead status: "NEW, OPEN, IN_PROGRESS,
/// OPEN_DEAL, UNQUALIFIED, ATTEMPTED_TO_CONTACT, CONNECTED, BAD_TIMING",
/// https://knowledge.hubspot.com/properties/hubspots-default-contact-properties).
const DEFAULT_ENUMERATIONS: &[(&str, &[&str])] = &[
    (
        "lifecyclestage",
        &[
            "subscriber",
            "lead",
            "marketingqualifiedlead",
            "salesqualifiedlead",
            "opportunity",
            "customer",
            "evangelist",
            "other",
        ],
    ),
    (
        "hs_lead_status",
        &[
            "NEW",
            "OPEN",
            "IN_PROGRESS",
            "OPEN_DEAL",
            "UNQUALIFIED",
            "ATTEMPTED_TO_CONTACT",
            "CONNECTED",
            "BAD_TIMING",
        ],
    ),
];

/// Refuses a value a custom property's type cannot hold, as HubSpot does:
/// 400 `VALIDATION_ERROR` listing one entry per property. The codes and
/// messages HubSpot documents or is seen answering: `INVALID_OPTION`, "…
/// was not one of the allowed options" (the changelog above; a label is
/// not an option's value), and for a number `INVALID_INTEGER`, "… was not
/// a valid number." (also for a decimal in exponent notation, as HubSpot
/// answered `1.4210854715202004e-14`:
/// Atlas-Authority/marketing-automation issue 206). For `bool`, `date`
/// and `datetime` HubSpot's codes are not documented: the simulator takes
/// the strictest reading of the properties guide ("bool … `true` or
/// `false`"; a date "must be … midnight UTC" in milliseconds or
/// `YYYY-MM-DD`; a datetime in milliseconds or ISO 8601) and names them
/// `INVALID_BOOLEAN`, `INVALID_DATE` and `INVALID_DATETIME`.
/// https://developers.hubspot.com/docs/api-reference/crm-properties-v3/guide
fn check_custom_values(
    state: &SimState,
    object: &str,
    properties: &Map<String, Value>,
) -> Result<(), Response> {
    let errors: Vec<Value> = properties
        .iter()
        .filter_map(|(name, value)| {
            let def = state.hubspot.definitions.get(&format!("{object}.{name}"))?;
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Null => return None,
                other => other.to_string(),
            };
            // An empty value clears the property, whatever its type.
            if text.is_empty() {
                return None;
            }
            let (code, message) = match def["type"].as_str().unwrap_or_default() {
                "number" if !is_plain_number(&text) => {
                    ("INVALID_INTEGER", format!("{text} was not a valid number."))
                }
                "bool" if text != "true" && text != "false" => (
                    "INVALID_BOOLEAN",
                    format!("{text} was not a valid boolean."),
                ),
                "date" if !is_midnight_date(&text) => (
                    "INVALID_DATE",
                    format!("{text} is not a valid date at midnight UTC."),
                ),
                "datetime" if !is_datetime(&text) => (
                    "INVALID_DATETIME",
                    format!("{text} was not a valid datetime."),
                ),
                "enumeration" => {
                    let options: Vec<&str> = def["options"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|o| o["value"].as_str())
                        .collect();
                    // A multiple checkboxes property takes `;`-separated options.
                    let each: Vec<&str> = if def["fieldType"] == "checkbox" {
                        text.split(';').collect()
                    } else {
                        vec![text.as_str()]
                    };
                    if each.iter().all(|v| options.contains(v)) {
                        return None;
                    }
                    (
                        "INVALID_OPTION",
                        format!(
                            "{text} was not one of the allowed options: [{}]",
                            options.join(", ")
                        ),
                    )
                }
                _ => return None,
            };
            Some(json!({
                "isValid": false,
                "message": message,
                "error": code,
                "name": name,
                "localizedErrorMessage": message,
                "propertyValue": text,
            }))
        })
        .collect();
    if errors.is_empty() {
        return Ok(());
    }
    Err(invalid(format!(
        "Property values were not valid: {}",
        Value::Array(errors)
    )))
}

/// A decimal without exponent: `-12`, `3.5`.
fn is_plain_number(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let mut parts = digits.splitn(2, '.');
    let whole = parts.next().unwrap_or_default();
    let fraction = parts.next();
    !whole.is_empty()
        && whole.chars().all(|c| c.is_ascii_digit())
        && fraction.is_none_or(|f| !f.is_empty() && f.chars().all(|c| c.is_ascii_digit()))
}

fn is_midnight_date(text: &str) -> bool {
    if let Ok(ms) = text.parse::<i64>() {
        return ms.rem_euclid(86_400_000) == 0;
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text, format).is_ok()
}

fn is_datetime(text: &str) -> bool {
    text.parse::<i64>().is_ok()
        || time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).is_ok()
        || is_midnight_date(text)
}

async fn search(call: Call, Path(object): Path<String>, body: Bytes) -> Response {
    let operation = operation_on(&object, SEARCHES);
    guard(&call, operation, Limits::Search, |state| {
        let kind = kind(&object)?;
        search_in(state, kind, &parse(&body)?)
    })
    .await
}

/// The records of `kind` a search body's filters match, once indexed,
/// oldest first and at most `limit` of them.
fn search_in(state: &SimState, kind: Kind, body: &Value) -> Answer {
    let groups = body["filterGroups"].as_array().cloned().unwrap_or_default();
    check_limits(&groups)?;
    let conditions = groups
        .iter()
        .map(|group| {
            group["filters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(Filter::parse)
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<Vec<_>, _>>()?;
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
                    .any(|all| all.iter().all(|f| f.matches(r)))
        })
        .take(limit)
        .map(|r| view_of(r, asked(&body["properties"])))
        .collect();
    Ok(Json(json!({ "total": results.len(), "results": results })).into_response())
}

/// The properties a search or read asks for, `None` when it names none.
fn asked(properties: &Value) -> Option<Vec<String>> {
    let names: Vec<String> = match properties {
        Value::Array(list) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Value::String(csv) => csv.split(',').map(str::trim).map(str::to_owned).collect(),
        _ => Vec::new(),
    };
    (!names.is_empty()).then_some(names)
}

/// A record as a search or read answers it: HubSpot returns "a default set
/// of properties" (`createdate`, `hs_object_id`, `lastmodifieddate`) plus
/// those the request names in `properties`, not every property
/// (https://developers.hubspot.com/docs/api-reference/search/guide,
/// "Return specific properties"; the objects API's `properties` query
/// parameter). A request naming none gets the record as stored.
fn view_of(record: &Record, asked: Option<Vec<String>>) -> Value {
    let Some(asked) = asked else {
        return view(record);
    };
    let properties: Map<String, Value> = record
        .properties
        .iter()
        .filter(|(name, _)| {
            asked.iter().any(|a| a == *name)
                || ["createdate", "hs_object_id", "lastmodifieddate"].contains(&name.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    json!({ "id": record.id, "properties": properties, "archived": false })
}

async fn create(call: Call, Path(object): Path<String>, body: Bytes) -> Response {
    let operation = operation_on(&object, CREATES);
    guard(&call, operation, Limits::General, |state| {
        let kind = kind(&object)?;
        let body = parse(&body)?;
        let properties = written_properties(state, &object, &body)?;
        let associations = match kind {
            Kind::Contacts => {
                unique_email(state, &properties)?;
                Vec::new()
            }
            // Deals have routes of their own (`deals.rs`).
            Kind::Deals => return Err(not_found("unknown object type")),
            Kind::Calls | Kind::Tasks => {
                if properties.get("hs_timestamp").is_none() {
                    return Err(invalid("hs_timestamp is required"));
                }
                secure_recording(&properties)?;
                associations(state, kind, &body)?
            }
        };
        let record = state.insert(kind, properties, associations);
        Ok((StatusCode::CREATED, Json(view(&record))).into_response())
    })
    .await
}

/// Refuses a call whose `hs_call_recording_url` is not HTTPS: "Only HTTPS,
/// secure URLs will be accepted."
/// (https://developers.hubspot.com/docs/api-reference/legacy/crm/activities/calls/guide).
/// Whether HubSpot refuses the whole call or drops the value is not
/// settled; the simulator takes the strictest reading and refuses the call
/// with HubSpot's property validation error.
fn secure_recording(properties: &Map<String, Value>) -> Result<(), Response> {
    let Some(url) = properties.get("hs_call_recording_url") else {
        return Ok(());
    };
    let secure = url
        .as_str()
        .and_then(|u| u.get(..8))
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"));
    if secure {
        return Ok(());
    }
    let message = format!(
        "{url} is not a valid value for hs_call_recording_url: only HTTPS URLs are accepted"
    );
    Err(invalid(format!(
        "Property values were not valid: {}",
        json!([{
            "isValid": false,
            "message": message,
            "error": "INVALID_URL",
            "name": "hs_call_recording_url",
            "localizedErrorMessage": message,
        }])
    )))
}

/// Refuses a contact whose e-mail another contact has: 409 naming it.
fn unique_email(state: &SimState, properties: &Map<String, Value>) -> Result<(), Response> {
    if let Some(email) = properties.get("email").and_then(Value::as_str)
        && let Some(existing) = state
            .contacts
            .iter()
            .find(|c| c.prop("email") == Some(email))
    {
        return Err(conflict(
            "CONFLICT",
            format!("Contact already exists. Existing ID: {}", existing.id),
        ));
    }
    Ok(())
}

/// The contacts a call or task body associates it with, each checked: a
/// known contact, with the association type of the object (194 for a
/// call, 204 for a task).
fn associations(state: &SimState, kind: Kind, body: &Value) -> Result<Vec<String>, Response> {
    let expected_type = if kind == Kind::Calls { 194 } else { 204 };
    let mut associations = Vec::new();
    for association in body["associations"].as_array().into_iter().flatten() {
        let Some(to) = association["to"]["id"].as_str() else {
            return Err(invalid("association without to.id"));
        };
        let type_ok = association["types"].as_array().is_some_and(|types| {
            types
                .iter()
                .any(|t| t["associationTypeId"] == expected_type)
        });
        if !type_ok {
            return Err(invalid(format!("association type must be {expected_type}")));
        }
        if !state.contacts.iter().any(|c| c.id == to) {
            return Err(invalid(format!("contact {to} does not exist")));
        }
        associations.push(to.to_owned());
    }
    Ok(associations)
}

async fn read(
    call: Call,
    Path((object, id)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    guard(&call, "get_contact", Limits::General, |state| {
        let kind = kind(&object)?;
        let record = state
            .find(kind, &id)
            .ok_or_else(|| not_found("resource not found"))?;
        let asked = query
            .get("properties")
            .and_then(|p| asked(&Value::String(p.clone())));
        Ok(Json(view_of(record, asked)).into_response())
    })
    .await
}

async fn update(call: Call, Path((object, id)): Path<(String, String)>, body: Bytes) -> Response {
    guard(&call, "update_contact", Limits::General, |state| {
        let kind = kind(&object)?;
        let body = parse(&body)?;
        let properties = written_properties(state, &object, &body)?;
        let record = state
            .update(kind, &id, properties)
            .ok_or_else(|| not_found("resource not found"))?;
        Ok(Json(view(record)).into_response())
    })
    .await
}

/// HubSpot's search limits: at most 5 filterGroups, 6 filters in a group
/// and 18 filters in all; more is a 400.
/// https://developers.hubspot.com/docs/api-reference/search/guide
fn check_limits(groups: &[Value]) -> Result<(), Response> {
    let sizes: Vec<usize> = groups
        .iter()
        .map(|g| g["filters"].as_array().map_or(0, Vec::len))
        .collect();
    let total: usize = sizes.iter().sum();
    if groups.len() > 5 || sizes.iter().any(|n| *n > 6) || total > 18 {
        return Err(invalid(format!(
            "Search request exceeds limits: {} filterGroups (max 5), {total} filters (max 18, 6 per group)",
            groups.len()
        )));
    }
    Ok(())
}

/// One search filter: `EQ`, `IN` or `CONTAINS_TOKEN` (with `*` wildcards).
enum Filter {
    Eq(String, String),
    In(String, Vec<String>),
    ContainsToken(String, String),
}

impl Filter {
    fn parse(filter: &Value) -> Result<Self, Response> {
        let Some(property) = filter["propertyName"].as_str().map(str::to_owned) else {
            return Err(invalid("filter needs propertyName"));
        };
        let value = filter["value"].as_str().map(str::to_owned);
        match (filter["operator"].as_str(), value) {
            (Some("EQ"), Some(v)) => Ok(Filter::Eq(property, v)),
            (Some("CONTAINS_TOKEN"), Some(v)) => Ok(Filter::ContainsToken(property, v)),
            (Some("IN"), _) => {
                let values = filter["values"]
                    .as_array()
                    .map(|vs| {
                        vs.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    })
                    .ok_or_else(|| invalid("IN needs values"))?;
                Ok(Filter::In(property, values))
            }
            (Some("EQ" | "CONTAINS_TOKEN"), None) => Err(invalid("filter needs a value")),
            _ => Err(invalid("crm-sim supports EQ, IN and CONTAINS_TOKEN only")),
        }
    }

    fn matches(&self, record: &Record) -> bool {
        match self {
            // HubSpot compares string values case-insensitively.
            Filter::Eq(p, v) => value_of(record, p).is_some_and(|x| x.eq_ignore_ascii_case(v)),
            Filter::In(p, vs) => {
                value_of(record, p).is_some_and(|x| vs.iter().any(|v| x.eq_ignore_ascii_case(v)))
            }
            Filter::ContainsToken(p, v) => value_of(record, p)
                .is_some_and(|x| x.split_whitespace().any(|token| token_matches(token, v))),
        }
    }
}

/// A token against a `CONTAINS_TOKEN` value, where `*` stands for any text.
fn token_matches(token: &str, pattern: &str) -> bool {
    let token = token.to_ascii_lowercase();
    let pattern = pattern.to_ascii_lowercase();
    match (pattern.strip_prefix('*'), pattern.strip_suffix('*')) {
        (Some(rest), _) if rest.ends_with('*') => token.contains(rest.trim_end_matches('*')),
        (Some(rest), _) => token.ends_with(rest),
        (None, Some(rest)) => token.starts_with(rest),
        (None, None) => token == pattern,
    }
}

/// A property's value, HubSpot's calculated phone properties included.
fn value_of(record: &Record, property: &str) -> Option<String> {
    match property {
        "hs_searchable_calculated_phone_number" => record.prop("phone").map(searchable_number),
        "hs_searchable_calculated_mobile_number" => {
            record.prop("mobilephone").map(searchable_number)
        }
        _ => record.prop(property).map(str::to_owned),
    }
}

/// What HubSpot stores in `hs_searchable_calculated_*`: "HubSpot only uses
/// the area code and local number", digits only; a `+`/`00` country code
/// and a trunk `0` are dropped, a country code typed without them is kept
/// (`513-227-1572` → `5132271572`, `+33655555555` → `655555555`,
/// `08180854296` → `8180854296`).
/// https://developers.hubspot.com/docs/api-reference/search/guide
///
/// HubSpot stores it once per write; the simulator works it out per
/// search and record, so it remembers each typed number's: parsing every
/// contact's number on every search, under the simulator's lock, made a
/// search over a few thousand contacts cost tens of milliseconds, and the
/// benchmark's worker throughput measured the simulator.
pub fn searchable_number(typed: &str) -> String {
    static KNOWN: std::sync::LazyLock<Mutex<HashMap<String, String>>> =
        std::sync::LazyLock::new(Mutex::default);
    let mut known = KNOWN.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(number) = known.get(typed) {
        return number.clone();
    }
    let number = calculate_searchable_number(typed);
    known.insert(typed.to_owned(), number.clone());
    number
}

fn calculate_searchable_number(typed: &str) -> String {
    let trimmed = typed.trim();
    let international = trimmed
        .strip_prefix('+')
        .or_else(|| trimmed.strip_prefix("00"));
    if let Some(rest) = international
        && let Some(number) = CallerNumber::parse(&format!("+{rest}"), callsync_shared::Region::US)
    {
        return number.nsn().to_owned();
    }
    let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
    digits.trim_start_matches('0').to_owned()
}

/// The kind of credential the account gave callsync: what the token
/// endpoints describe and refuse depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// A legacy private app's static token (a new simulator's).
    PrivateApp,
    /// A service key: a static token too, which no documented endpoint
    /// describes.
    ServiceKey,
    /// A public app's OAuth access token, issued by `POST /oauth/v1/token`.
    PublicApp,
}

/// The HubSpot account's credential state.
#[derive(Debug, Clone)]
pub struct Account {
    pub(crate) credential: Credential,
    /// The one refresh token the token endpoint accepts now.
    pub(crate) refresh_token: String,
    /// How many refresh-token exchanges there have been.
    exchanges: u64,
    /// The custom properties' definitions (`type`, `fieldType`,
    /// `options`), by `object.name`.
    pub(crate) definitions: HashMap<String, Value>,
}

impl Default for Account {
    fn default() -> Self {
        Self {
            credential: Credential::PrivateApp,
            refresh_token: OAUTH_REFRESH_TOKEN.to_owned(),
            exchanges: 0,
            definitions: HashMap::new(),
        }
    }
}

/// The public app crm-sim knows, and the refresh token a new simulator
/// accepts (once: see [`oauth_token`]).
pub const OAUTH_CLIENT_ID: &str = "crm-sim-hubspot-client";
pub const OAUTH_CLIENT_SECRET: &str = "crm-sim-hubspot-client-secret";
pub const OAUTH_REFRESH_TOKEN: &str = "crm-sim-hubspot-refresh-0";

/// HubSpot's OAuth error body (`status`, `message`, `correlationId`, as
/// its other errors).
fn oauth_refused(status: &str, message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({
            "status": status,
            "message": message,
            "correlationId": uuid::Uuid::new_v4().to_string(),
        })),
    )
        .into_response()
}

/// `POST /oauth/v1/token`, form-encoded `grant_type=refresh_token`,
/// `client_id`, `client_secret`, `refresh_token` (HubSpot/hubspot-api-nodejs
/// `codegen/oauth/apis/TokensApi.ts`: `localVarPath = '/oauth/v1/token'`,
/// `application/x-www-form-urlencoded`). It answers the access token, its
/// lifetime ("expires after 30 minutes",
/// https://developers.hubspot.com/docs/api-reference/auth-oauth-v3/guide)
/// and a refresh token.
///
/// Refused as HubSpot refuses: a wrong client id or secret, a grant other
/// than the refresh token, and a refresh token that is unknown or spent.
/// Whether HubSpot rotates refresh tokens is not settled (the v1 guide
/// says to store the one from the installation; the newer API is
/// described as OAuth 2.1, which allows rotating them): the simulator
/// takes the strictest reading, and each exchange spends the refresh
/// token used and issues a new one. Token requests are not API calls: no
/// rate limit, no faults, counted under `oauth_token`.
async fn oauth_token(
    State(shared): State<Shared>,
    axum::extract::Form(form): axum::extract::Form<HashMap<String, String>>,
) -> Response {
    let mut state = shared.lock();
    state.count_unguarded("oauth_token");
    let field = |name: &str| form.get(name).map(String::as_str);
    if field("client_id") != Some(OAUTH_CLIENT_ID) {
        return oauth_refused("BAD_CLIENT_ID", "missing or invalid client id");
    }
    if field("client_secret") != Some(OAUTH_CLIENT_SECRET) {
        return oauth_refused("BAD_CLIENT_SECRET", "missing or invalid client secret");
    }
    if field("grant_type") != Some("refresh_token") {
        return oauth_refused("BAD_GRANT_TYPE", "grant_type must be refresh_token here");
    }
    if state.oauth_revoked || field("refresh_token") != Some(state.hubspot.refresh_token.as_str()) {
        return oauth_refused("BAD_REFRESH_TOKEN", "missing or unknown refresh token");
    }
    state.hubspot.exchanges += 1;
    state.hubspot.refresh_token = format!("crm-sim-hubspot-refresh-{}", state.hubspot.exchanges);
    state.hubspot.credential = Credential::PublicApp;
    Json(json!({
        "token_type": "bearer",
        "access_token": state.config.token.clone(),
        "refresh_token": state.hubspot.refresh_token.clone(),
        "expires_in": 1800,
    }))
    .into_response()
}

/// `GET /oauth/v1/access-tokens/{token}`: an OAuth access token's metadata,
/// its `scopes` among them (HubSpot/hubspot-api-nodejs
/// `codegen/oauth/apis/AccessTokensApi.ts`, `AccessTokenInfoResponse`). It
/// describes OAuth access tokens; a token it does not know (expired, or a
/// static one) is answered 404, as an unknown resource is (the answer to
/// an unknown token is not documented).
async fn access_token_info(State(shared): State<Shared>, Path(token): Path<String>) -> Response {
    let mut state = shared.lock();
    state.count_unguarded("access_token_info");
    if token != state.config.token || state.hubspot.credential != Credential::PublicApp {
        return not_found("token not found");
    }
    Json(json!({
        "token": token,
        "user": "callsync@example.com",
        "hub_id": 1,
        "app_id": 1,
        "expires_in": 1800,
        "user_id": 1,
        "token_type": "access",
        "scopes": state.hubspot_scopes,
    }))
    .into_response()
}

/// `PATCH /crm/v3/properties/{object}/groups/{name}` (HubSpot/hubspot-api-nodejs
/// `codegen/crm/properties/apis/GroupsApi.ts`): renames a group; a group that
/// does not exist is a 404, once the schema scope is held.
async fn update_group(
    call: Call,
    Path((object, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    guard(&call, "update_group", Limits::General, |state| {
        schema_scope(state, &object)?;
        let body = parse(&body)?;
        if !state.groups.contains(&format!("{object}.{name}")) {
            return Err(not_found("property group not found"));
        }
        Ok(Json(json!({ "name": name, "label": body["label"] })).into_response())
    })
    .await
}

impl CrmSim {
    /// The refresh token HubSpot's token endpoint accepts now.
    pub fn hubspot_refresh_token(&self) -> String {
        self.shared.lock().hubspot.refresh_token.clone()
    }

    /// From now on the account's token is a service key (or, with
    /// [`Credential::PrivateApp`], a legacy private app's token).
    pub fn set_hubspot_credential(&self, credential: Credential) {
        self.shared.lock().hubspot.credential = credential;
    }

    /// Creates a custom property as the business would in HubSpot's
    /// settings: `kind` is its `type` (`string`, `number`, `bool`, `date`,
    /// `datetime`, `enumeration`), `options` its (value, label) pairs.
    pub fn define_hubspot_property(
        &self,
        object: &str,
        name: &str,
        kind: &str,
        field_type: &str,
        options: &[(&str, &str)],
    ) {
        let mut state = self.shared.lock();
        state.properties.insert(format!("{object}.{name}"));
        state.hubspot.definitions.insert(
            format!("{object}.{name}"),
            json!({
                "name": name,
                "label": name,
                "type": kind,
                "fieldType": field_type,
                "groupName": "contactinformation",
                "options": options.iter().map(|(v, l)| json!({"value": v, "label": l, "hidden": false})).collect::<Vec<_>>(),
                "modificationMetadata": { "readOnlyValue": false },
            }),
        );
    }

    /// Deletes a custom property, as an admin would in HubSpot's settings.
    pub fn delete_hubspot_property(&self, object: &str, name: &str) {
        let mut state = self.shared.lock();
        state.properties.remove(&format!("{object}.{name}"));
        state
            .hubspot
            .definitions
            .remove(&format!("{object}.{name}"));
    }
}

/// The values HubSpot documents for the call properties callsync writes
/// from a call's direction and outcome: `hs_call_direction` "`INBOUND` …
/// `OUTBOUND`"; `hs_call_status` "The statuses are `BUSY`,
/// `CALLING_CRM_USER`, `CANCELED`, `COMPLETED`, `CONNECTING`, `FAILED`,
/// `IN_PROGRESS`, `NO_ANSWER`, `QUEUED`, and `RINGING`"; and
/// `hs_call_disposition`, "the internal GUID value" of a call outcome, of
/// which the guide lists the defaults (Busy, Connected, Left live message,
/// Left voicemail, No answer, Wrong number)
/// (https://developers.hubspot.com/docs/guides/api/crm/engagements/calls).
/// An account may add its own outcomes; the simulated account has the
/// defaults only.
const CALL_ENUMERATIONS: &[(&str, &[&str])] = &[
    ("hs_call_direction", &["INBOUND", "OUTBOUND"]),
    (
        "hs_call_status",
        &[
            "BUSY",
            "CALLING_CRM_USER",
            "CANCELED",
            "COMPLETED",
            "CONNECTING",
            "FAILED",
            "IN_PROGRESS",
            "NO_ANSWER",
            "QUEUED",
            "RINGING",
        ],
    ),
    (
        "hs_call_disposition",
        &[
            "9d9162e7-6cf3-4944-bf63-4dff82258764",
            "f240bbac-87c9-4f6e-bf70-924b57d47db7",
            "a4c4c377-d246-4b32-a13b-75a56a4cd0ff",
            "b2cf5968-551e-4856-9783-52b3da59a7d0",
            "73a0d17f-1163-4015-bdd5-ec830791da20",
            "17b47fee-58de-441e-a44c-c6300d46f273",
        ],
    ),
];

/// Refuses a call written with a direction, status or outcome outside
/// HubSpot's documented set. HubSpot refuses an enumeration value that is not one of
/// the property's options with 400 `VALIDATION_ERROR`, one
/// `INVALID_OPTION` entry per property ("… was not one of the allowed
/// options", the shape of
/// https://developers.hubspot.com/changelog/upcoming-property-validations-rules-will-be-enforced-for-apis-and-integrations).
/// Whether HubSpot matches the options case-insensitively is not
/// documented: the simulator takes the strictest reading and compares
/// exactly.
fn check_call_values(object: &str, properties: &Map<String, Value>) -> Result<(), Response> {
    if object != "calls" {
        return Ok(());
    }
    let errors: Vec<Value> = CALL_ENUMERATIONS
        .iter()
        .filter_map(|(name, options)| {
            let value = properties.get(*name)?;
            if value.as_str().is_some_and(|v| options.contains(&v)) {
                return None;
            }
            let message = format!(
                "{value} was not one of the allowed options: [{}]",
                options.join(", ")
            );
            Some(json!({
                "isValid": false,
                "message": message,
                "error": "INVALID_OPTION",
                "name": name,
                "localizedErrorMessage": message,
            }))
        })
        .collect();
    if errors.is_empty() {
        return Ok(());
    }
    Err(invalid(format!(
        "Property values were not valid: {}",
        Value::Array(errors)
    )))
}
