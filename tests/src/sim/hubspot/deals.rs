//! HubSpot's deal pipelines and deals: `GET /crm/v3/pipelines/deals`,
//! `POST /crm/v3/objects/deals` and `POST /crm/v3/objects/deals/search`,
//! each needing the deals object scopes.
//!
//! "When creating a new deal, you should include the following properties
//! in the request: dealname, dealstage, and if you have multiple
//! pipelines, pipeline. If a pipeline isn't specified, the default
//! pipeline will be used", and "You must use the internal ID of a deal
//! stage or pipeline" (https://developers.hubspot.com/docs/api/crm/deals).
//! The simulator reads "should" strictly: a deal without `dealname` or
//! `dealstage` is refused. A deal is associated with a contact by the
//! `HUBSPOT_DEFINED` association type 3, deal to contact
//! (https://developers.hubspot.com/docs/guides/api/crm/associations/associations-v4,
//! "Association type IDs"). A `pipeline` or `dealstage` the account does
//! not have (a label instead of the internal id among them) is refused as
//! any enumeration value that is not an option: 400 `VALIDATION_ERROR`
//! with an `INVALID_OPTION` entry; a stage is an option only of its own
//! pipeline (the pipelines API lists stages per pipeline:
//! https://developers.hubspot.com/docs/guides/api/crm/pipelines).
//! The default pipeline and its stages are those of a new account
//! ("Sales Pipeline": Appointment Scheduled … Closed Lost).

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::{check_properties, guard, invalid, missing_scope, parse, search_in, view};
use crate::sim::schema::{Pipeline, Vendor};
use crate::sim::{Call, Kind, Limits, Shared, State as SimState};

/// The scopes of the deal endpoints, which a new simulator's token holds
/// too (https://developers.hubspot.com/docs/guides/api/crm/objects/deals,
/// "Scope requirements").
/// `crm.schemas.deals.write` is the properties API's scope for deal
/// properties (the properties reference lists `crm.schemas.<object>.write`
/// per object: https://developers.hubspot.com/docs/api-reference/crm-properties-v3/guide,
/// "Scope requirements"), which a deal marker property needs.
pub const DEAL_SCOPES: [&str; 3] = [
    "crm.objects.deals.read",
    "crm.objects.deals.write",
    "crm.schemas.deals.write",
];

/// HubSpot's default deal properties a client writes.
/// https://knowledge.hubspot.com/properties/hubspots-default-deal-properties
const DEAL_PROPERTIES: &[&str] = &[
    "amount",
    "closedate",
    "dealname",
    "dealstage",
    "dealtype",
    "description",
    "hs_priority",
    "hubspot_owner_id",
    "pipeline",
];

/// Deal to contact, HubSpot-defined.
const DEAL_TO_CONTACT: i64 = 3;

/// A new account's deal pipeline.
pub(crate) fn default_pipelines() -> Vec<Pipeline> {
    vec![Pipeline::new(
        "default",
        "Sales Pipeline",
        &[
            ("appointmentscheduled", "Appointment Scheduled"),
            ("qualifiedtobuy", "Qualified To Buy"),
            ("presentationscheduled", "Presentation Scheduled"),
            ("decisionmakerboughtin", "Decision Maker Bought-In"),
            ("contractsent", "Contract Sent"),
            ("closedwon", "Closed Won"),
            ("closedlost", "Closed Lost"),
        ],
    )]
}

/// The deal routes; their paths are more specific than the object routes'
/// (`/crm/v3/objects/{object}`), which they take precedence over.
pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/crm/v3/pipelines/deals", get(pipelines))
        .route("/crm/v3/objects/deals", post(create))
        .route("/crm/v3/objects/deals/search", post(search))
        .route("/crm/v3/objects/deals/{id}", get(read))
}

/// Refuses a token without `scope`, as the object routes do.
fn scoped(state: &SimState, scope: &'static str) -> Result<(), Response> {
    if state.hubspot_scopes.iter().any(|s| s == scope) {
        Ok(())
    } else {
        Err(missing_scope(scope))
    }
}

async fn pipelines(call: Call) -> Response {
    guard(&call, "deals_pipelines", Limits::General, |state| {
        scoped(state, "crm.objects.deals.read")?;
        let results: Vec<Value> = state
            .pipelines_of(Vendor::Hubspot)
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let stages: Vec<Value> = p
                    .stages
                    .iter()
                    .enumerate()
                    .map(|(j, s)| json!({ "id": s.id, "label": s.label, "displayOrder": j, "archived": false }))
                    .collect();
                json!({ "id": p.id, "label": p.label, "displayOrder": i, "stages": stages, "archived": false })
            })
            .collect();
        Ok(Json(json!({ "results": results })).into_response())
    })
    .await
}

/// HubSpot's `INVALID_OPTION` refusal of `value` for `name`.
fn invalid_option(name: &str, value: &str, options: &[&str]) -> Response {
    let message = format!(
        "{value} was not one of the allowed options: [{}]",
        options.join(", ")
    );
    invalid(format!(
        "Property values were not valid: {}",
        json!([{
            "isValid": false,
            "message": message,
            "error": "INVALID_OPTION",
            "name": name,
            "localizedErrorMessage": message,
        }])
    ))
}

/// Checks a deal's pipeline and stage; the pipeline it lands in.
fn placement(state: &SimState, properties: &Map<String, Value>) -> Result<String, Response> {
    let pipelines = state.pipelines_of(Vendor::Hubspot);
    let named = properties.get("pipeline").and_then(Value::as_str);
    let pipeline = match named {
        Some(id) => pipelines.iter().find(|p| p.id == id).ok_or_else(|| {
            let ids: Vec<&str> = pipelines.iter().map(|p| p.id.as_str()).collect();
            invalid_option("pipeline", id, &ids)
        })?,
        None => pipelines
            .first()
            .ok_or_else(|| invalid("the account has no deal pipeline"))?,
    };
    let Some(stage) = properties.get("dealstage").and_then(Value::as_str) else {
        return Err(invalid("dealstage is required"));
    };
    if pipeline.stage(stage).is_none() {
        let ids: Vec<&str> = pipeline.stages.iter().map(|s| s.id.as_str()).collect();
        return Err(invalid_option("dealstage", stage, &ids));
    }
    Ok(pipeline.id.clone())
}

/// The contacts a deal body associates it with: known contacts, each by
/// the `HUBSPOT_DEFINED` type 3.
fn contacts(state: &SimState, body: &Value) -> Result<Vec<String>, Response> {
    let mut contacts = Vec::new();
    for association in body["associations"].as_array().into_iter().flatten() {
        let Some(to) = association["to"]["id"].as_str() else {
            return Err(invalid("association without to.id"));
        };
        let type_ok = association["types"].as_array().is_some_and(|types| {
            types.iter().any(|t| {
                t["associationTypeId"] == DEAL_TO_CONTACT
                    && t["associationCategory"] == "HUBSPOT_DEFINED"
            })
        });
        if !type_ok {
            return Err(invalid(format!(
                "association type must be {DEAL_TO_CONTACT} (HUBSPOT_DEFINED)"
            )));
        }
        if !state.contacts.iter().any(|c| c.id == to) {
            return Err(invalid(format!("contact {to} does not exist")));
        }
        contacts.push(to.to_owned());
    }
    Ok(contacts)
}

async fn create(call: Call, body: Bytes) -> Response {
    guard(&call, "deals_create", Limits::General, |state| {
        scoped(state, "crm.objects.deals.write")?;
        let body = parse(&body)?;
        let mut properties = body["properties"].as_object().cloned().unwrap_or_default();
        // The default properties are known; any other must have been
        // created on deals through the properties API.
        let custom: Map<String, Value> = properties
            .iter()
            .filter(|(name, _)| !DEAL_PROPERTIES.contains(&name.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        check_properties(state, "deals", &custom)?;
        if properties
            .get("dealname")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(invalid("dealname is required"));
        }
        let pipeline = placement(state, &properties)?;
        properties.insert("pipeline".into(), json!(pipeline));
        let contacts = contacts(state, &body)?;
        let record = state.insert(Kind::Deals, properties, contacts);
        Ok((StatusCode::CREATED, Json(view(&record))).into_response())
    })
    .await
}

/// `POST /crm/v3/objects/deals/search`: as the other objects' searches
/// (a marker property found once indexed), under the search limit.
async fn search(call: Call, body: Bytes) -> Response {
    guard(&call, "deals_search", Limits::Search, |state| {
        scoped(state, "crm.objects.deals.read")?;
        search_in(state, Kind::Deals, &parse(&body)?)
    })
    .await
}

async fn read(call: Call, Path(id): Path<String>) -> Response {
    guard(&call, "deals_get", Limits::General, |state| {
        scoped(state, "crm.objects.deals.read")?;
        let record = state
            .find(Kind::Deals, &id)
            .ok_or_else(|| super::not_found("resource not found"))?;
        Ok(Json(view(record)).into_response())
    })
    .await
}
