// Routes return ready-made error responses; boxing them would only add noise.
#![allow(clippy::result_large_err)]

//! The Salesforce REST endpoints the worker uses: SOSL search over phone
//! and e-mail fields, Contact create/read/update, and Task upsert and read by
//! the External ID field `Callsync_Marker__c`. The API limit answers 403
//! `REQUEST_LIMIT_EXCEEDED`, as Salesforce does.
//!
//! Every field written must exist on the sObject: a standard field of the
//! object reference, or one of the custom fields the set-up guide
//! (`docs/crm/salesforce.md`) asks an admin to create, unless [`Org`] says
//! the admin has not. Anything else is refused with `INVALID_FIELD`, as
//! Salesforce does, and `GET /sobjects/{object}/describe` lists what exists.
//! `TaskSubtype` is create-only; an External ID shared by several Tasks
//! answers 300; a duplicate rule may refuse a new Contact.
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

mod opportunities;
mod types;

pub(crate) use opportunities::default_pipelines;

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
        .route("/services/data/{version}/sobjects/Task", post(create_task))
        .route(
            "/services/data/{version}/sobjects/{object}/describe",
            get(describe),
        )
        .route(
            "/services/data/{version}/sobjects/{object}/{id}",
            get(read_object).patch(update_object),
        )
        .route(
            "/services/data/{version}/sobjects/Task/Callsync_Marker__c/{marker}",
            get(read_task).patch(upsert_task),
        )
        .merge(opportunities::routes())
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
fn fields_of(
    state: &SimState,
    sobject: &str,
    body: &Bytes,
) -> Result<Map<String, Value>, Response> {
    let fields = parse(body)?.as_object().cloned().unwrap_or_default();
    check_fields(state, sobject, &fields)?;
    check_picklists(sobject, &fields)?;
    types::check_types(state, sobject, &fields)?;
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

/// The custom fields an admin creates once (the set-up guide): the
/// last-call fields on Contact and Lead, the External ID on Task; each with
/// the type Salesforce's describe gives it.
const LAST_CALL_FIELDS: &[(&str, &str)] = &[
    ("Callsync_Last_Call_At__c", "datetime"),
    ("Callsync_Last_Call_Summary__c", "textarea"),
    ("Callsync_Last_Sentiment__c", "string"),
];
const TASK_CUSTOM_FIELDS: &[(&str, &str)] = &[("Callsync_Marker__c", "string")];
/// The External ID an Opportunity is upserted by, like the Task marker
/// (the org has it unless [`Org::missing_fields`] names it).
const OPPORTUNITY_CUSTOM_FIELDS: &[(&str, &str)] = &[("Callsync_Marker__c", "string")];

/// The org's set-up as an admin left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Org {
    /// Custom fields the admin has not created (or hidden from the user):
    /// `(object, field)`.
    pub missing_fields: Vec<(String, String)>,
    /// Whether `Callsync_Marker__c` is marked External ID (the guide asks
    /// it): when not, Salesforce refuses upserts and reads by it.
    pub marker_external_id: bool,
    /// Whether `Callsync_Marker__c` is marked Unique (the guide asks it):
    /// when not, two Tasks may carry one marker.
    pub marker_unique: bool,
    /// An active duplicate rule on Contact matching an existing Contact's
    /// e-mail, with the "Alert" action: the API refuses the save unless
    /// `Sforce-Duplicate-Rule-Header: allowSave=true` is sent.
    pub email_duplicate_rule: bool,
    /// Every OpportunityContactRole: (its id, OpportunityId, ContactId).
    pub contact_roles: Vec<(String, String, String)>,
}

impl Default for Org {
    fn default() -> Self {
        Self {
            missing_fields: Vec::new(),
            marker_external_id: true,
            marker_unique: true,
            email_duplicate_rule: false,
            contact_roles: Vec::new(),
        }
    }
}

impl super::CrmSim {
    /// Changes the Salesforce org's set-up.
    pub fn set_salesforce_org(&self, org: Org) {
        self.shared.lock().salesforce = org;
    }

    /// Deletes a custom field a test defined on `sobject` (an admin
    /// deleting it while the worker runs).
    pub fn delete_salesforce_field(&self, sobject: &str, name: &str) {
        self.shared.lock().fields.retain(|f| {
            !(f.vendor == super::schema::Vendor::Salesforce
                && f.object == sobject
                && f.key.eq_ignore_ascii_case(name))
        });
    }

    /// Adds a Task to the org as if an earlier request had created it:
    /// the call's (`TaskSubtype` Call) or a follow-up, carrying `marker`.
    pub fn seed_salesforce_task(&self, marker: &str, who: &str, call: bool) -> String {
        let mut state = self.shared.lock();
        let mut properties = Map::new();
        properties.insert("Callsync_Marker__c".into(), json!(marker));
        properties.insert("WhoId".into(), json!(who));
        let kind = if call {
            properties.insert("TaskSubtype".into(), json!("Call"));
            Kind::Calls
        } else {
            Kind::Tasks
        };
        state
            .insert_as(kind, properties, vec![who.to_owned()], |n| sf_id("00T", n))
            .id
    }
}

/// Every custom field the simulator's org can hold: object, API name and
/// the `type` its describe gives.
pub fn custom_fields() -> Vec<(&'static str, &'static str, &'static str)> {
    let on = |object: &'static str, fields: &'static [(&'static str, &'static str)]| {
        fields
            .iter()
            .map(move |(name, kind)| (object, *name, *kind))
    };
    on("Task", TASK_CUSTOM_FIELDS)
        .chain(on("Contact", LAST_CALL_FIELDS))
        .chain(on("Lead", LAST_CALL_FIELDS))
        .collect()
}

/// The custom fields of `sobject` that exist in the org.
fn custom_fields_of(state: &SimState, sobject: &str) -> Vec<(&'static str, &'static str)> {
    let all = match sobject {
        "Contact" | "Lead" => LAST_CALL_FIELDS,
        "Task" => TASK_CUSTOM_FIELDS,
        "Opportunity" => OPPORTUNITY_CUSTOM_FIELDS,
        _ => &[],
    };
    all.iter()
        .filter(|(name, _)| {
            !state
                .salesforce
                .missing_fields
                .iter()
                .any(|(o, f)| o == sobject && f == name)
        })
        .copied()
        .collect()
}

/// Refuses a body naming a field `sobject` does not have, as Salesforce
/// does on create, update and upsert: 400 `INVALID_FIELD`, "No such column
/// '<field>' on sobject of type <sobject>", for the first such field.
/// Field names are case-insensitive; `attributes` is the record's metadata.
/// https://developer.salesforce.com/docs/atlas.en-us.222.0.api_rest.meta/api_rest/errorcodes.htm
/// (the message as Salesforce words it: https://github.com/MinnPost/object-sync-for-salesforce/issues/194)
fn check_fields(
    state: &SimState,
    sobject: &str,
    body: &Map<String, Value>,
) -> Result<(), Response> {
    let standard = match sobject {
        "Contact" => CONTACT_FIELDS,
        "Lead" => LEAD_FIELDS,
        "Opportunity" => opportunities::OPPORTUNITY_FIELDS,
        "OpportunityContactRole" => opportunities::CONTACT_ROLE_FIELDS,
        _ => TASK_FIELDS,
    };
    let custom = custom_fields_of(state, sobject);
    let known = |name: &str| {
        name == "attributes"
            || standard.iter().any(|f| f.eq_ignore_ascii_case(name))
            || custom.iter().any(|(f, _)| f.eq_ignore_ascii_case(name))
            || state
                .fields_of(super::schema::Vendor::Salesforce, sobject)
                .any(|f| f.key.eq_ignore_ascii_case(name))
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

/// `IN PHONE FIELDS`: a record matches when one of its phone fields holds
/// one of the search's terms (`FIND {a OR b}`: "Look for … Joe Smith or Joe
/// Smythe", SOSL FIND examples) as a whole number. Salesforce does not
/// document how phone fields are tokenised; its one phone example searches
/// a number's bare digits and expects it typed with punctuation ("Example
/// of phoneNumber format: 4155551212", SOAP API sample search() call), and
/// SOSL finds partial terms only with wildcards ("Wildcards", SOSL FIND).
/// The strictest reading of both: punctuation is ignored, and the digits
/// must be equal, never a part of the number (`612345678` does not find
/// `06 12345678`; `0612345678` does).
/// https://developer.salesforce.com/docs/atlas.en-us.soql_sosl.meta/soql_sosl/sforce_api_calls_sosl_find.htm
/// https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sample_search_call.htm
fn has_phone_digits(record: &super::Record, term: &str) -> bool {
    let wanted: Vec<String> = search_terms(term)
        .iter()
        .map(|t| digits(t))
        .filter(|d| !d.is_empty())
        .collect();
    PHONE_FIELDS
        .iter()
        .filter_map(|f| record.prop(f))
        .any(|p| wanted.contains(&digits(p)))
}

/// The terms of a FIND clause joined by `OR`.
fn search_terms(term: &str) -> Vec<String> {
    term.split(" OR ")
        .flat_map(|t| t.split(" or "))
        .map(|t| t.trim().trim_matches('"').to_owned())
        .filter(|t| !t.is_empty())
        .collect()
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

/// `GET /sobjects/{object}/describe`: the object's fields the user sees,
/// each with its `name`, `type` and `externalId` (REST API developer guide,
/// sObject Describe; `DescribeSObjectResult.fields`). Standard fields are
/// listed as strings: callsync reads only its own fields' types; they are
/// listed as neither `createable` nor `updateable`, the strictest reading,
/// so that no mapping onto an untyped field is ever accepted.
async fn describe(call: Call, Path((_, object)): Path<(String, String)>) -> Response {
    guard(&call, "describe", |state| {
        let standard = match object.as_str() {
            "Contact" => CONTACT_FIELDS,
            "Lead" => LEAD_FIELDS,
            "Task" => TASK_FIELDS,
            "Opportunity" => opportunities::OPPORTUNITY_FIELDS,
            "OpportunityContactRole" => opportunities::CONTACT_ROLE_FIELDS,
            _ => return Err(not_found("The requested resource does not exist")),
        };
        let typed = types::typed_fields(state, &object);
        let unique = state.salesforce.marker_unique;
        let external = state.salesforce.marker_external_id;
        // Standard fields without a type of their own are listed as strings:
        // callsync reads only its own fields' types.
        let untyped = standard
            .iter()
            .filter(|name| !typed.iter().any(|t| t.name == **name))
            .map(|name| json!({ "name": name, "type": "string", "externalId": false, "unique": false, "createable": false, "updateable": false }));
        let typed = typed.iter().map(|field| {
            let marker = field.name == "Callsync_Marker__c";
            let mut view = field.describe();
            view["externalId"] = json!(marker && external);
            view["unique"] = json!(marker && unique && object == "Task");
            view
        });
        let fields: Vec<Value> = untyped.chain(typed).collect();
        Ok(Json(json!({ "name": object, "fields": fields })).into_response())
    })
    .await
}

/// The Contact an "Alert" duplicate rule matching on e-mail finds for a new
/// Contact with `properties`, unless the request carries
/// `Sforce-Duplicate-Rule-Header: allowSave=true`. Salesforce refuses the
/// save with `DUPLICATES_DETECTED` and a `duplicateResult` naming the
/// matched records ("Use one of these records?").
/// https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/headers_duplicaterules.htm
fn duplicate_rule(
    state: &SimState,
    headers: &HeaderMap,
    properties: &Map<String, Value>,
) -> Answer {
    let allow_save = headers
        .get("sforce-duplicate-rule-header")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.replace(' ', "").eq_ignore_ascii_case("allowSave=true"));
    let email = properties.get("Email").and_then(Value::as_str);
    let matched = state.contacts.iter().find(|c| {
        email.is_some_and(|e| c.prop("Email").is_some_and(|x| x.eq_ignore_ascii_case(e)))
    });
    match matched {
        Some(existing) if state.salesforce.email_duplicate_rule && !allow_save => Err((
            StatusCode::BAD_REQUEST,
            Json(json!([{
                "duplicateResult": {
                    "allowSave": true,
                    "duplicateRule": "Callsync_Test_Contact_Rule",
                    "duplicateRuleEntityType": "Contact",
                    "errorMessage": "You're creating a duplicate record. We recommend you use an existing record instead.",
                    "matchResults": [{
                        "entityType": "Contact",
                        "errors": [],
                        "matchEngine": "ExactMatchEngine",
                        "matchRecords": [{
                            "additionalInformation": [],
                            "fieldDiffs": [],
                            "matchConfidence": 100.0,
                            "record": {
                                "attributes": { "type": "Contact", "url": format!("/services/data/v60.0/sobjects/Contact/{}", existing.id) },
                                "Id": existing.id
                            }
                        }],
                        "rule": "Callsync_Test_Email_Match",
                        "size": 1,
                        "success": true
                    }]
                },
                "errorCode": "DUPLICATES_DETECTED",
                "message": "You're creating a duplicate record. We recommend you use an existing record instead."
            }])),
        )
            .into_response()),
        _ => Ok(StatusCode::OK.into_response()),
    }
}

async fn create_contact(call: Call, body: Bytes) -> Response {
    let headers = call.headers.clone();
    guard(&call, "create_contact", |state| {
        let properties = fields_of(state, "Contact", &body)?;
        duplicate_rule(state, &headers, &properties)?;
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

/// `GET /sobjects/{object}/{id}`, with `?fields=` the fields named only:
/// "If you specify fields that don't exist or are inaccessible to you by
/// field-level security, a 400 error response is returned" (REST API
/// developer guide, Get Field Values from a Standard Object Record); the
/// simulator answers it as a write naming such a field, `INVALID_FIELD`.
/// https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/dome_get_field_values.htm
async fn read_object(
    call: Call,
    Path((_, object, id)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    guard(&call, "get_contact", |state| {
        contact_like(&object)?;
        let named: Option<Map<String, Value>> = query.get("fields").map(|list| {
            list.split(',')
                .map(|f| (f.trim().to_owned(), Value::Null))
                .collect()
        });
        if let Some(named) = &named {
            check_fields(state, &object, named)?;
        }
        let record = state
            .find(Kind::Contacts, &id)
            .ok_or_else(|| not_found("The requested resource does not exist"))?;
        let mut view: Map<String, Value> = match &named {
            None => record.properties.clone(),
            Some(named) => named
                .keys()
                .map(|f| {
                    let value = record
                        .properties
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(f))
                        .map_or(Value::Null, |(_, v)| v.clone());
                    (f.clone(), value)
                })
                .collect(),
        };
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
        let fields = fields_of(state, &object, &body)?;
        state
            .update(Kind::Contacts, &id, fields)
            .ok_or_else(|| not_found("The requested resource does not exist"))?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}

/// The ids of the Tasks with external id `marker`, calls (TaskSubtype
/// Call) first.
fn tasks_marked(state: &SimState, marker: &str) -> Vec<String> {
    state
        .calls
        .iter()
        .chain(&state.tasks)
        .filter(|r| r.prop("Callsync_Marker__c") == Some(marker))
        .map(|r| r.id.clone())
        .collect()
}

/// The one Task with external id `marker`, `None` when there is none, or
/// Salesforce's 300 when several share it: "If the external ID value
/// matches multiple records, a 300 response is returned", listing them
/// (REST API developer guide, upsert by external ID).
fn one_task_marked(state: &SimState, marker: &str) -> Result<Option<String>, Response> {
    let ids = tasks_marked(state, marker);
    if ids.len() > 1 {
        let urls: Vec<String> = ids
            .iter()
            .map(|id| format!("/services/data/v60.0/sobjects/Task/{id}"))
            .collect();
        return Err((StatusCode::MULTIPLE_CHOICES, Json(json!(urls))).into_response());
    }
    Ok(ids.into_iter().next())
}

fn task_mut<'a>(state: &'a mut SimState, id: &str) -> Option<&'a mut super::Record> {
    state
        .calls
        .iter_mut()
        .chain(state.tasks.iter_mut())
        .find(|r| r.id == id)
}

/// Refuses a read or upsert by `Callsync_Marker__c` while it is missing or
/// not marked External ID, as Salesforce answers a path naming a field
/// that is not one: 404 "Provided external ID field does not exist or is
/// not accessible".
fn by_external_id(state: &SimState) -> Result<(), Response> {
    let exists = custom_fields_of(state, "Task")
        .iter()
        .any(|(name, _)| *name == "Callsync_Marker__c");
    if exists && state.salesforce.marker_external_id {
        return Ok(());
    }
    Err(not_found(
        "Provided external ID field does not exist or is not accessible: Callsync_Marker__c",
    ))
}

async fn read_task(call: Call, Path((_, marker)): Path<(String, String)>) -> Response {
    guard(&call, "get_task", |state| {
        by_external_id(state)?;
        let id = one_task_marked(state, &marker)?
            .ok_or_else(|| not_found("The requested resource does not exist"))?;
        Ok(Json(json!({ "Id": id, "Callsync_Marker__c": marker })).into_response())
    })
    .await
}

/// `POST /sobjects/Task`. A marker another Task carries is refused with
/// `DUPLICATE_VALUE` while the field is Unique ("duplicate value found:
/// <field> duplicates value on record with id: <id>", REST API developer
/// guide, status codes and error responses).
async fn create_task(call: Call, body: Bytes) -> Response {
    let operation =
        if serde_json::from_slice::<Value>(&body).is_ok_and(|b| b["TaskSubtype"] == "Call") {
            "create_call_task"
        } else {
            "create_task"
        };
    guard(&call, operation, |state| {
        let properties = fields_of(state, "Task", &body)?;
        if let Some(marker) = properties.get("Callsync_Marker__c").and_then(Value::as_str)
            && state.salesforce.marker_unique
            && let Some(existing) = tasks_marked(state, marker).first()
        {
            return Err(bad_request(
                "DUPLICATE_VALUE",
                format!(
                    "duplicate value found: Callsync_Marker__c duplicates value on record with id: {existing}"
                ),
            ));
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
            Json(json!({ "id": record.id, "success": true, "errors": [] })),
        )
            .into_response())
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
        by_external_id(state)?;
        let mut properties = fields_of(state, "Task", &body)?;
        properties.insert("Callsync_Marker__c".into(), json!(marker));
        if let Some(id) = one_task_marked(state, &marker)? {
            // TaskSubtype's properties are "Create, Filter, Group, Nillable,
            // Restricted picklist, Sort", without Update (object reference,
            // Task): an update that names it is refused whatever its value,
            // as Salesforce refuses any field not updateable.
            if properties.contains_key("TaskSubtype") {
                return Err(bad_request(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    "Unable to create/update fields: TaskSubtype. Please check the security settings of this field and verify that it is read/write for your profile or permission set.",
                ));
            }
            let existing = task_mut(state, &id).ok_or_else(|| not_found("gone"))?;
            existing.properties.extend(properties);
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
