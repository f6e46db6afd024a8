// Routes return ready-made error responses; boxing them would only add noise.
#![allow(clippy::result_large_err)]

//! The GoHighLevel endpoints the worker uses. Every request body is
//! validated against GoHighLevel's own OpenAPI file (`tests/specs/gohighlevel`,
//! public domain), so a request the real API would refuse for its shape is
//! refused here too; the `Version` header and the location id are required.
//!
//! The OpenAPI file does not forbid extra keys, but the API does: a body key
//! the endpoint does not declare is a 422 "property X should not exist".
//!
//! Contacts follow the location's "Allow Duplicate Contact" setting, off by
//! default: `POST /contacts/` refuses a phone or e-mail another contact has,
//! and `POST /contacts/upsert` updates that contact instead of adding one.
//! [`Location`] changes the setting, and can switch the upsert merge off
//! entirely so that a test shows what holds without it.

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::{
    Answer, Call, CrmSim, Dialect, Kind, Limits, Record, Shared, State as SimState,
    reword_unauthorized,
};

const SPEC: &str = include_str!("../../specs/gohighlevel/contacts.json");
/// GoHighLevel's OpenAPI file for locations, with its custom fields routes.
const LOCATIONS_SPEC: &str = include_str!("../../specs/gohighlevel/locations.json");
/// GoHighLevel's OpenAPI file for opportunities and their pipelines.
const OPPORTUNITIES_SPEC: &str = include_str!("../../specs/gohighlevel/opportunities.json");

mod fields;
mod opportunities;

pub use opportunities::OPPORTUNITY_SCOPES;
pub(crate) use opportunities::default_pipelines;

/// Every scope of the routes the worker uses: what a new simulator's token
/// holds, with [`OPPORTUNITY_SCOPES`].
pub const ALL_SCOPES: [&str; 4] = [
    "contacts.readonly",
    "contacts.write",
    "locations/customFields.readonly",
    "locations/customFields.write",
];

/// The scopes the OpenAPI files list in the `security` of the operation
/// `operation_id`, as in `"security": [{"bearer": ["contacts.readonly"]}]`
/// (GoHighLevel/highlevel-api-docs, `apps/contacts.json` and
/// `apps/locations.json`).
fn scopes_of(operation_id: &str) -> &'static [String] {
    static SCOPES: OnceLock<HashMap<String, Vec<String>>> = OnceLock::new();
    let all = SCOPES.get_or_init(|| {
        let mut all = HashMap::new();
        for file in [SPEC, LOCATIONS_SPEC, OPPORTUNITIES_SPEC] {
            let spec: Value = serde_json::from_str(file).expect("the OpenAPI file is JSON");
            let operations = spec["paths"]
                .as_object()
                .into_iter()
                .flat_map(|paths| paths.values())
                .filter_map(Value::as_object)
                .flat_map(|methods| methods.values());
            for operation in operations {
                let Some(id) = operation["operationId"].as_str() else {
                    continue;
                };
                let scopes = operation["security"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s["bearer"].as_array())
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect();
                all.insert(id.to_owned(), scopes);
            }
        }
        all
    });
    all.get(operation_id)
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("operation {operation_id} is not in the OpenAPI files"))
}

/// The marketplace app crm-sim's token endpoint accepts.
pub const OAUTH_CLIENT_ID: &str = "crm-sim-ghl-client";
pub const OAUTH_CLIENT_SECRET: &str = "crm-sim-ghl-client-secret";
/// The refresh token a new simulator accepts (once: it rotates).
pub const OAUTH_REFRESH_TOKEN: &str = "crm-sim-ghl-refresh-0";

pub fn router(shared: Shared) -> Router {
    Router::new()
        .route("/oauth/token", post(oauth_token))
        .route("/contacts/search/duplicate", get(duplicate))
        .route("/contacts/search", post(search))
        .route("/contacts/", post(create_contact))
        .route("/contacts/upsert", post(upsert))
        .route("/contacts/{id}", get(read).put(update))
        .route("/contacts/{id}/notes", children(&NOTE))
        .route("/contacts/{id}/tasks", children(&TASK))
        .merge(fields::routes())
        .merge(opportunities::routes())
        .with_state(shared)
}

/// A validator for the request body schema `name` of the OpenAPI file.
fn validator(name: &str) -> &'static jsonschema::Validator {
    static VALIDATORS: OnceLock<HashMap<String, jsonschema::Validator>> = OnceLock::new();
    let all = VALIDATORS.get_or_init(|| {
        [
            (SPEC, "CreateContactDto"),
            (SPEC, "UpsertContactDto"),
            (SPEC, "UpdateContactDto"),
            (SPEC, "NotesDTO"),
            (SPEC, "CreateTaskParams"),
            (OPPORTUNITIES_SPEC, "CreateDto"),
        ]
        .into_iter()
        .map(|(file, schema)| {
            let spec: Value = serde_json::from_str(file).expect("the OpenAPI file is JSON");
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

/// The body keys the OpenAPI file declares for `schema`, plus the keys the
/// API accepts without the file declaring them.
fn declared(schema: &str) -> &'static [String] {
    static DECLARED: OnceLock<HashMap<String, Vec<String>>> = OnceLock::new();
    let all = DECLARED.get_or_init(|| {
        // Schema names differ between the files, but for the custom field
        // inputs they share.
        let schemas = [SPEC, OPPORTUNITIES_SPEC].into_iter().flat_map(|file| {
            let spec: Value = serde_json::from_str(file).expect("the OpenAPI file is JSON");
            spec["components"]["schemas"]
                .as_object()
                .cloned()
                .unwrap_or_default()
        });
        schemas
            .map(|(name, schema)| {
                let mut keys: Vec<String> = schema["properties"]
                    .as_object()
                    .map(|p| p.keys().cloned().collect())
                    .unwrap_or_default();
                if name == "UpdateContactDto" {
                    // `PUT /contacts/{id}` takes these though the file omits them.
                    // https://github.com/GoHighLevel/highlevel-api-docs/issues/314
                    keys.extend(["companyName", "keyword", "ssn", "type"].map(String::from));
                }
                (name, keys)
            })
            .collect()
    });
    all.get(schema).map_or(&[], Vec::as_slice)
}

/// Checks a body against its schema and refuses keys the schema does not
/// declare, the way GoHighLevel's validation does: one 422 listing every
/// problem, each undeclared key as "property <key> should not exist".
/// https://github.com/GoHighLevel/highlevel-api-docs/issues/314
/// https://github.com/GoHighLevel/highlevel-api-docs/issues/262
fn check(schema: &str, body: &Value) -> Result<(), Response> {
    let known = declared(schema);
    let mut errors: Vec<String> = body
        .as_object()
        .into_iter()
        .flat_map(Map::keys)
        .filter(|key| !known.contains(key))
        .map(|key| format!("property {key} should not exist"))
        .collect();
    errors.extend(
        validator(schema)
            .iter_errors(body)
            .map(|e| format!("{} at {}", e, e.instance_path())),
    );
    if errors.is_empty() {
        Ok(())
    } else {
        Err(unprocessable(errors))
    }
}

/// GoHighLevel's 422 (`UnprocessableDTO` of the OpenAPI file's common schemas).
fn unprocessable(messages: Vec<String>) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({ "statusCode": 422, "message": messages, "error": "Unprocessable Entity" })),
    )
        .into_response()
}

/// GoHighLevel's answer to a missing or wrong token (`UnauthorizedDTO` of
/// the OpenAPI file's common schemas).
fn unauthorized() -> Value {
    json!({
        "statusCode": 401,
        "message": "Invalid token: access token is invalid",
        "error": "Unauthorized"
    })
}

/// GoHighLevel's answer to a token that lacks the scope of the route: a
/// 401 as for a bad token (the OpenAPI files document only "401:
/// Unauthorized" for every route), worded as GoHighLevel words it to
/// integrators ("The token is not authorized for this scope.").
fn scope_refused() -> Value {
    json!({
        "statusCode": 401,
        "message": "The token is not authorized for this scope.",
        "error": "Unauthorized"
    })
}

/// [`Call::guarded`] with GoHighLevel's bearer token and the scopes the
/// OpenAPI files list for `operation_id` (both checked before the input,
/// as an API gateway does), the `Version` header every endpoint requires
/// (checked once admitted, as the API checks its input), and GoHighLevel's
/// 401 bodies.
async fn guard<F>(call: &Call, operation: &'static str, operation_id: &str, apply: F) -> Response
where
    F: FnOnce(&mut SimState) -> Answer,
{
    let token_ok = call.shared.bearer_ok(&call.headers);
    let scoped = {
        let granted = &call.shared.lock().gohighlevel_scopes;
        scopes_of(operation_id).iter().all(|s| granted.contains(s))
    };
    let response = call
        .guarded(
            operation,
            Limits::General,
            Dialect::RetryAfter,
            token_ok && scoped,
            |state| {
                version_ok(&call.headers)?;
                apply(state)
            },
        )
        .await;
    let body = if token_ok {
        scope_refused()
    } else {
        unauthorized()
    };
    reword_unauthorized(response, body)
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

/// The contact fields the simulator keeps from a create or upsert body and
/// shows in a contact, less those only one of the two has.
const CONTACT_FIELDS: [&str; 6] = [
    "phone",
    "email",
    "firstName",
    "lastName",
    "name",
    "locationId",
];

/// The fields of `from` named in `keys`, those it has.
fn pick<'a>(
    from: &Map<String, Value>,
    keys: impl IntoIterator<Item = &'a str>,
) -> Map<String, Value> {
    keys.into_iter()
        .filter_map(|key| Some((key.to_owned(), from.get(key)?.clone())))
        .collect()
}

/// A contact as GoHighLevel answers it. `additionalPhones` is shown as
/// stored: a seeded contact holds it in the shape of the search doc's
/// sample, `"additionalPhones": ["123456789", "987654321"]`
/// (https://doc.clickup.com/8631005/d/h/87cpx-158396/6e629989abe7fad), or
/// as objects with a `phone`, the other shape GoHighLevel has answered.
fn contact_view(r: &Record) -> Value {
    let mut view = Map::new();
    view.insert("id".into(), json!(r.id));
    let shown = CONTACT_FIELDS
        .into_iter()
        .chain(["country", "dateUpdated", "additionalPhones"]);
    view.extend(pick(&r.properties, shown));
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
    state.insert_as(kind, properties, associations, ghl_id)
}

/// `GET /contacts/search/duplicate`: the contact whose phone is `number`
/// (the doc's form: "+1423164516", URL-encoded) or whose e-mail is
/// `email`. The phone is compared with the E.164 GoHighLevel holds, whole:
/// a national form finds nothing (the strictest reading; the matching is
/// not documented).
async fn duplicate(call: Call, Query(q): Query<HashMap<String, String>>) -> Response {
    guard(
        &call,
        "search_duplicate",
        "get-duplicate-contact",
        |state| {
            if q.get("locationId").is_none_or(String::is_empty) {
                return Err(location_missing());
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
            Ok(Json(json!({ "contact": found.map(contact_view) })).into_response())
        },
    )
    .await
}

/// `POST /contacts/search`: filters, nested in `AND`/`OR` groups, on the
/// contact's phone or e-mail. Other fields and operators are refused with a
/// 422. https://highlevel.stoplight.io/docs/integrations/dbe4f3a00a106-search-contacts
///
/// A phone is held in E.164 ([`stored_phone`]), and the search doc asks for
/// the country code in a phone value ("Do pass in the correct country
/// code") without saying how a term is compared. The simulator takes the
/// strictest reading: `eq` is the whole stored E.164 string, `contains` a
/// run of characters of it (letters and digits only, as the doc says). So
/// `+31612345678` is found by `eq +31612345678` and by `contains 612345678`,
/// never by a national form (`0612345678`, `06 12345678`) or digits that
/// are not contiguous in it.
async fn search(call: Call, body: Bytes) -> Response {
    guard(
        &call,
        "search_contacts",
        "search-contacts-advanced",
        |state| {
            let body = parse(&body)?;
            located(&body)?;
            // `pageLimit` is "required" (search doc); without it GoHighLevel
            // answers 422 (GoHighLevel/highlevel-api-docs#31).
            let Some(limit) = body["pageLimit"].as_u64() else {
                return Err(unprocessable(vec!["pageLimit must be a number".into()]));
            };
            let group = json!({ "group": "AND", "filters": body["filters"].clone() });
            check_filter(&group).map_err(|message| unprocessable(vec![message]))?;
            let limit = usize::try_from(limit).unwrap_or(usize::MAX);
            let contacts: Vec<Value> = state
                .contacts
                .iter()
                .filter(|r| state.indexed(r) && filter_matches(&group, r))
                .take(limit)
                .map(contact_view)
                .collect();
            Ok(Json(json!({ "contacts": contacts, "total": contacts.len() })).into_response())
        },
    )
    .await
}

fn check_filter(filter: &Value) -> Result<(), String> {
    if let Some(group) = filter["group"].as_str() {
        if !matches!(group, "AND" | "OR") {
            return Err(format!("group must be AND or OR, not {group}"));
        }
        return filter["filters"]
            .as_array()
            .ok_or("a group needs filters")?
            .iter()
            .try_for_each(check_filter);
    }
    match (filter["field"].as_str(), filter["operator"].as_str()) {
        // "contains … does not support special characters" (search doc): a
        // phone value for `contains` is letters and digits only.
        (Some("phone"), Some("contains"))
            if filter["value"]
                .as_str()
                .is_some_and(|v| !v.chars().all(|c| c.is_ascii_alphanumeric())) =>
        {
            Err(format!(
                "contains does not support special characters: {filter}"
            ))
        }
        (Some("phone" | "email"), Some("eq" | "contains")) if filter["value"].is_string() => Ok(()),
        _ => Err(format!(
            "crm-sim supports eq and contains on phone and email: {filter}"
        )),
    }
}

fn filter_matches(filter: &Value, record: &Record) -> bool {
    let children = || filter["filters"].as_array().into_iter().flatten();
    match filter["group"].as_str() {
        Some("OR") => children().any(|f| filter_matches(f, record)),
        Some(_) => children().all(|f| filter_matches(f, record)),
        None => {
            let field = filter["field"].as_str().unwrap_or_default();
            let value = filter["value"].as_str().unwrap_or_default();
            let stored = record.prop(field).unwrap_or_default();
            match (field, filter["operator"].as_str()) {
                (_, Some("eq")) => !stored.is_empty() && stored.eq_ignore_ascii_case(value),
                ("phone", Some("contains")) => !value.is_empty() && stored.contains(value),
                (_, Some("contains")) => {
                    !stored.is_empty() && stored.to_lowercase().contains(&value.to_lowercase())
                }
                _ => false,
            }
        }
    }
}

/// The phone GoHighLevel holds for `typed`: its E.164 form, a national
/// number read in the contact's `country` (ISO 3166-1 alpha-2, the values of
/// GoHighLevel's country list, https://marketplace.gohighlevel.com/docs/other/country)
/// or, without one, the location's. GoHighLevel keeps contacts' phones in
/// E.164 (its search doc's samples, `"phone": "+123456789"`, and its ask
/// for the country code in searches); which country a national number is
/// read in is not documented, and neither is what becomes of a number no
/// country makes valid: the simulator keeps that one as typed, so that only
/// `eq` with the same text finds it.
pub fn stored_phone(typed: &str, country: Option<&str>, location_country: &str) -> String {
    // A number with its `+` needs no country (and the parser, given one,
    // would keep the `(0)` of `+31 (0)6 …`).
    let region = (!typed.trim_start().starts_with('+'))
        .then(|| {
            country
                .unwrap_or(location_country)
                .parse::<phonenumber::country::Id>()
                .ok()
        })
        .flatten();
    phonenumber::parse(region, typed)
        .ok()
        .filter(phonenumber::is_valid)
        .map_or_else(
            || typed.to_owned(),
            |n| n.format().mode(phonenumber::Mode::E164).to_string(),
        )
}

/// `properties` with the phone as GoHighLevel would hold it.
fn normalise_phone(location: &Location, properties: &mut Map<String, Value>) {
    let Some(typed) = properties.get("phone").and_then(Value::as_str) else {
        return;
    };
    let country = properties.get("country").and_then(Value::as_str);
    let phone = stored_phone(typed, country, location.country);
    properties.insert("phone".into(), json!(phone));
}

/// The location's contact settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// "Allow Duplicate Contact" (off by default): when off, a phone or
    /// e-mail belongs to one contact; when on, `POST /contacts/` and an
    /// upsert asking `createNewIfDuplicateAllowed` add a contact regardless.
    /// https://help.gohighlevel.com/support/solutions/articles/48001181714-allow-duplicate-contact-explained
    /// (and `createNewIfDuplicateAllowed` in the OpenAPI file).
    pub allow_duplicate_contacts: bool,
    /// Whether an upsert updates the contact with the same phone or e-mail
    /// (what GoHighLevel always does unless duplicates are allowed and
    /// asked for). Off, every upsert adds a contact: harsher than any real
    /// location, for showing that one contact per caller does not depend
    /// on the merge.
    pub upsert_merges: bool,
    /// The location's country (ISO 3166-1 alpha-2): where a national
    /// number without a contact country is read ([`stored_phone`]).
    pub country: &'static str,
}

impl Default for Location {
    fn default() -> Self {
        Self {
            allow_duplicate_contacts: false,
            upsert_merges: true,
            country: "US",
        }
    }
}

/// `POST /oauth/token`, GoHighLevel's token endpoint (OAuth 2.0: Get
/// Access Token): form fields `client_id`, `client_secret`,
/// `grant_type=refresh_token`, `refresh_token`, `user_type`. Each exchange
/// issues the current access token and a **new** refresh token; the one
/// used stops working, as GoHighLevel's do. Token requests are not API
/// calls: no rate limit, no faults, counted under `oauth_token`.
async fn oauth_token(
    State(shared): State<Shared>,
    axum::extract::Form(form): axum::extract::Form<HashMap<String, String>>,
) -> Response {
    let mut state = shared.lock();
    let requests = state.count_unguarded("oauth_token");
    let field = |name: &str| form.get(name).map(String::as_str);
    let refused = |error: &str, description: &str| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": error, "error_description": description })),
        )
            .into_response()
    };
    if field("client_id") != Some(OAUTH_CLIENT_ID)
        || field("client_secret") != Some(OAUTH_CLIENT_SECRET)
    {
        return refused("invalid_client", "client credentials are invalid");
    }
    if field("grant_type") != Some("refresh_token")
        || !matches!(field("user_type"), Some("Location" | "Company"))
    {
        return refused("invalid_request", "grant_type and user_type are required");
    }
    if state.oauth_revoked
        || field("refresh_token") != Some(state.gohighlevel_refresh_token.as_str())
    {
        return refused("invalid_grant", "refresh token is invalid");
    }
    state.gohighlevel_refresh_token = format!("crm-sim-ghl-refresh-{requests}");
    Json(json!({
        "access_token": state.config.token.clone(),
        "token_type": "Bearer",
        "expires_in": 86399,
        "refresh_token": state.gohighlevel_refresh_token.clone(),
        "scope": "contacts.readonly contacts.write locations/customFields.readonly locations/customFields.write",
        "userType": "Location",
        "locationId": "loc-callsync-test",
    }))
    .into_response()
}

impl CrmSim {
    /// The refresh token GoHighLevel's token endpoint accepts now.
    pub fn gohighlevel_refresh_token(&self) -> String {
        self.shared.lock().gohighlevel_refresh_token.clone()
    }

    /// The scopes GoHighLevel's token holds from now on (a new simulator's
    /// token holds [`ALL_SCOPES`] and [`OPPORTUNITY_SCOPES`]).
    pub fn grant_gohighlevel_scopes(&self, scopes: &[&str]) {
        self.shared.lock().gohighlevel_scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
    }

    /// Changes the GoHighLevel location's contact settings.
    pub fn set_gohighlevel_location(&self, location: Location) {
        self.shared.lock().gohighlevel = location;
    }

    /// Adds a contact as a human typing it into GoHighLevel long ago would
    /// have (already indexed): its phone held as GoHighLevel holds it
    /// ([`stored_phone`], read in the contact's `country`). Returns its id.
    pub fn seed_gohighlevel_contact(&self, mut properties: Map<String, Value>) -> String {
        let location = self.shared.lock().gohighlevel;
        normalise_phone(&location, &mut properties);
        self.seed_contact(properties)
    }
}

/// The contact fields the simulator keeps from a create or upsert body.
fn contact_properties(state: &SimState, body: &Value) -> Result<Map<String, Value>, Response> {
    let kept = CONTACT_FIELDS.into_iter().chain(["source", "country"]);
    let mut properties = pick(body.as_object().unwrap_or(&Map::new()), kept);
    normalise_phone(&state.gohighlevel, &mut properties);
    properties.extend(fields::custom_fields(state, "contact", body)?);
    Ok(properties)
}

/// The contact that already has the phone (checked first) or e-mail of
/// `properties` (a body's, the phone as stored), and which of the two
/// matched.
fn duplicate_of(
    state: &SimState,
    properties: &Map<String, Value>,
) -> Option<(usize, &'static str)> {
    let matching = |field: &'static str| {
        let value = properties.get(field)?.as_str()?;
        let i = state
            .contacts
            .iter()
            .position(|r| r.prop(field) == Some(value))?;
        Some((i, field))
    };
    matching("phone").or_else(|| matching("email"))
}

/// The checks create and upsert share; the body when it passes.
fn contact_body(body: &Bytes, schema: &str) -> Result<Value, Response> {
    let body = checked(body, schema)?;
    located(&body)?;
    Ok(body)
}

/// A body parsed and checked against `schema` of the OpenAPI file.
fn checked(body: &Bytes, schema: &str) -> Result<Value, Response> {
    let body = parse(body)?;
    check(schema, &body)?;
    Ok(body)
}

/// Refuses a body without the location id every contact request names.
fn located(body: &Value) -> Result<(), Response> {
    if body["locationId"].as_str().is_none_or(str::is_empty) {
        return Err(location_missing());
    }
    Ok(())
}

fn location_missing() -> Response {
    unprocessable(vec!["locationId should not be empty".into()])
}

/// `POST /contacts/`: adds a contact, or, when the location does not allow
/// duplicates, refuses one whose phone or e-mail a contact already has with
/// the 400 GoHighLevel sends, naming that contact.
async fn create_contact(call: Call, body: Bytes) -> Response {
    guard(&call, "create_contact", "create-contact", |state| {
        let body = contact_body(&body, "CreateContactDto")?;
        let properties = contact_properties(state, &body)?;
        if !state.gohighlevel.allow_duplicate_contacts
            && let Some((i, field)) = duplicate_of(state, &properties)
        {
            let existing = &state.contacts[i];
            return Err((
                StatusCode::BAD_REQUEST,
                Json(json!({
                    "statusCode": 400,
                    "message": "This location does not allow duplicated contacts.",
                    "meta": {
                        "contactId": existing.id,
                        "contactName": existing.properties.get("name"),
                        "matchingField": field,
                    }
                })),
            )
                .into_response());
        }
        let record = insert(state, Kind::Contacts, properties, Vec::new());
        Ok((
            StatusCode::CREATED,
            Json(json!({ "contact": contact_view(&record) })),
        )
            .into_response())
    })
    .await
}

/// `POST /contacts/upsert`: updates the contact with the body's phone or
/// e-mail, else adds one (see [`Location`] for when it always adds).
async fn upsert(call: Call, body: Bytes) -> Response {
    guard(&call, "upsert_contact", "upsert-contact", |state| {
        let body = contact_body(&body, "UpsertContactDto")?;
        let properties = contact_properties(state, &body)?;
        let location = state.gohighlevel;
        let always_new = !location.upsert_merges
            || (location.allow_duplicate_contacts && body["createNewIfDuplicateAllowed"] == true);
        let existing = if always_new {
            None
        } else {
            duplicate_of(state, &properties).map(|(i, _)| i)
        };
        if let Some(i) = existing {
            let existing = &mut state.contacts[i];
            existing.properties.extend(properties);
            return Ok(
                Json(json!({ "new": false, "contact": contact_view(existing) })).into_response(),
            );
        }
        let record = insert(state, Kind::Contacts, properties, Vec::new());
        Ok(Json(json!({ "new": true, "contact": contact_view(&record) })).into_response())
    })
    .await
}

async fn read(call: Call, Path(id): Path<String>) -> Response {
    guard(&call, "get_contact", "get-contact", |state| {
        let contact = state
            .find(Kind::Contacts, &id)
            .ok_or_else(contact_not_found)?;
        let mut view = contact_view(contact);
        view["customFields"] = fields::values_of(state, "contact", &contact.properties);
        Ok(Json(json!({ "contact": view })).into_response())
    })
    .await
}

fn contact_not_found() -> Response {
    error(StatusCode::BAD_REQUEST, "Contact not found")
}

async fn update(call: Call, Path(id): Path<String>, body: Bytes) -> Response {
    guard(&call, "update_contact", "update-contact", |state| {
        let body = checked(&body, "UpdateContactDto")?;
        let changes = fields::custom_fields(state, "contact", &body)?;
        let contact = state
            .update(Kind::Contacts, &id, changes)
            .ok_or_else(contact_not_found)?;
        Ok(Json(json!({ "succeded": true, "contact": contact_view(contact) })).into_response())
    })
    .await
}

/// What a contact's notes and tasks differ in: where they are kept, what
/// their requests count as, their body schema and fields, and the keys
/// their answers use.
#[derive(Debug)]
struct Child {
    kind: Kind,
    create: &'static str,
    list: &'static str,
    /// The operationIds of creating and listing in the OpenAPI file.
    create_id: &'static str,
    list_id: &'static str,
    schema: &'static str,
    /// The body fields kept (a missing one is kept as null).
    fields: &'static [&'static str],
    one: &'static str,
    many: &'static str,
}

/// Notes are where the worker writes calls.
const NOTE: Child = Child {
    kind: Kind::Calls,
    create: "create_note",
    list: "list_notes",
    create_id: "create-note",
    list_id: "get-all-notes",
    schema: "NotesDTO",
    fields: &["body"],
    one: "note",
    many: "notes",
};

const TASK: Child = Child {
    kind: Kind::Tasks,
    create: "create_task",
    list: "list_tasks",
    create_id: "create-task",
    list_id: "get-all-tasks",
    schema: "CreateTaskParams",
    fields: &["title", "body", "dueDate", "completed"],
    one: "task",
    many: "tasks",
};

/// The routes of a contact's notes or tasks.
fn children(child: &'static Child) -> MethodRouter<Shared> {
    get(move |call: Call, Path(id): Path<String>| list_children(call, id, child)).post(
        move |call: Call, Path(id): Path<String>, body: Bytes| create_child(call, id, body, child),
    )
}

/// `POST /contacts/{id}/notes` and `…/tasks`: a note or task on an
/// existing contact.
async fn create_child(call: Call, contact: String, body: Bytes, child: &Child) -> Response {
    guard(&call, child.create, child.create_id, |state| {
        let body = checked(&body, child.schema)?;
        if !state.contacts.iter().any(|c| c.id == contact) {
            return Err(contact_not_found());
        }
        let properties = child
            .fields
            .iter()
            .map(|key| ((*key).to_owned(), body[*key].clone()))
            .collect();
        let record = insert(state, child.kind, properties, vec![contact.clone()]);
        let mut view = record.properties.clone();
        view.insert("id".into(), json!(record.id));
        view.insert("contactId".into(), json!(contact));
        Ok((StatusCode::CREATED, Json(json!({ child.one: view }))).into_response())
    })
    .await
}

/// `GET /contacts/{id}/notes` and `…/tasks`.
async fn list_children(call: Call, contact: String, child: &Child) -> Response {
    guard(&call, child.list, child.list_id, |state| {
        let items: Vec<Value> = state
            .records(child.kind)
            .iter()
            .filter(|r| r.associations.contains(&contact))
            .map(|r| {
                let mut view = r.properties.clone();
                view.insert("id".into(), json!(r.id));
                Value::Object(view)
            })
            .collect();
        Ok(Json(json!({ child.many: items })).into_response())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phone_is_held_in_e164_read_in_the_contacts_country_or_else_the_locations() {
        let held = |typed, country| stored_phone(typed, country, "US");
        assert_eq!(held("06 12345678", Some("NL")), "+31612345678");
        assert_eq!(held("+31 (0)6 45678901", None), "+31645678901");
        assert_eq!(held("0031634567890", Some("NL")), "+31634567890");
        assert_eq!(held("31667890123", Some("NL")), "+31667890123");
        assert_eq!(held("(415) 555-0123", None), "+14155550123");
        assert_eq!(held("513-227-1572", Some("US")), "+15132271572");
        // Read in the location's country (US), a Dutch national number is no number.
        assert_eq!(held("06 12345678", None), "06 12345678");
    }

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
