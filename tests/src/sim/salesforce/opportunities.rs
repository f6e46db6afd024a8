//! Salesforce Opportunities and OpportunityContactRoles: `POST
//! /sobjects/Opportunity`, upsert and read by the External ID field
//! `Callsync_Marker__c` (`PATCH`/`GET
//! /sobjects/Opportunity/Callsync_Marker__c/{marker}`, as the Task
//! marker), and `POST /sobjects/OpportunityContactRole`, which ties an
//! Opportunity to a Contact.
//!
//! An Opportunity requires `Name`, `StageName` and `CloseDate` (object
//! reference, Opportunity: each "Required"); a missing one is
//! `REQUIRED_FIELD_MISSING`, "Required fields are missing: [<fields>]".
//! `StageName` is restricted to the org's OpportunityStage values
//! ([`super::types`]). An OpportunityContactRole requires `OpportunityId`
//! and `ContactId`, each naming an existing record, else
//! `INVALID_CROSS_REFERENCE_KEY` (object reference,
//! OpportunityContactRole; REST API status codes).
//! https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_opportunity.htm
//! https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_opportunitycontactrole.htm
//! https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/dome_upsert.htm

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::{bad_request, fields_of, guard, not_found, sf_id};
use crate::sim::schema::Pipeline;
use crate::sim::{Call, Kind, Shared, State as SimState};

/// Opportunity's standard fields a client can set.
pub(super) const OPPORTUNITY_FIELDS: &[&str] = &[
    "AccountId",
    "Amount",
    "CampaignId",
    "CloseDate",
    "Description",
    "LeadSource",
    "Name",
    "NextStep",
    "OwnerId",
    "Probability",
    "StageName",
    "Type",
];

/// OpportunityContactRole's fields a client can set.
pub(super) const CONTACT_ROLE_FIELDS: &[&str] =
    &["ContactId", "IsPrimary", "OpportunityId", "Role"];

/// A new org's OpportunityStage values, in order (the "Stage" picklist of
/// a Developer Edition org; object reference, OpportunityStage). The
/// simulator keeps them as one pipeline whose stages are the values.
pub(crate) fn default_pipelines() -> Vec<Pipeline> {
    let stages = [
        "Prospecting",
        "Qualification",
        "Needs Analysis",
        "Value Proposition",
        "Id. Decision Makers",
        "Perception Analysis",
        "Proposal/Price Quote",
        "Negotiation/Review",
        "Closed Won",
        "Closed Lost",
    ]
    .map(|s| (s, s));
    vec![Pipeline::new("OpportunityStage", "Stage", &stages)]
}

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/services/data/{version}/sobjects/Opportunity",
            post(create),
        )
        .route(
            "/services/data/{version}/sobjects/Opportunity/Callsync_Marker__c/{marker}",
            axum::routing::get(read_marked).patch(upsert),
        )
        .route(
            "/services/data/{version}/sobjects/OpportunityContactRole",
            post(create_role),
        )
        .route(
            "/services/data/{version}/sobjects/Opportunity/{id}/OpportunityContactRoles",
            axum::routing::get(roles_of),
        )
}

/// `GET /sobjects/Opportunity/{id}/OpportunityContactRoles`: the roles of
/// an existing Opportunity (404 for another id).
async fn roles_of(call: Call, Path((_, id)): Path<(String, String)>) -> Response {
    guard(&call, "get_opportunity_contact_roles", |state| {
        if state.find(Kind::Deals, &id).is_none() {
            return Err(not_found("The requested resource does not exist"));
        }
        let records: Vec<Value> = state
            .salesforce
            .contact_roles
            .iter()
            .filter(|(_, opportunity, _)| *opportunity == id)
            .map(|(role, opportunity, contact)| {
                json!({
                    "attributes": { "type": "OpportunityContactRole",
                                    "url": format!("/services/data/v60.0/sobjects/OpportunityContactRole/{role}") },
                    "Id": role, "OpportunityId": opportunity, "ContactId": contact,
                })
            })
            .collect();
        Ok(Json(json!({ "totalSize": records.len(), "done": true, "records": records }))
            .into_response())
    })
    .await
}

/// Refuses an Opportunity without all of its required fields.
fn required(fields: &Map<String, Value>) -> Result<(), Response> {
    let missing: Vec<&str> = ["Name", "StageName", "CloseDate"]
        .into_iter()
        .filter(|f| fields.get(*f).is_none_or(|v| v.is_null() || v == ""))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(bad_request(
        "REQUIRED_FIELD_MISSING",
        format!("Required fields are missing: [{}]", missing.join(", ")),
    ))
}

fn created(id: &str, upsert: bool) -> Response {
    let mut body = json!({ "id": id, "success": true, "errors": [] });
    if upsert {
        body["created"] = json!(true);
    }
    (StatusCode::CREATED, Json(body)).into_response()
}

fn insert(state: &mut SimState, fields: Map<String, Value>) -> String {
    state
        .insert_as(Kind::Deals, fields, Vec::new(), |n| sf_id("006", n))
        .id
}

async fn create(call: Call, body: Bytes) -> Response {
    guard(&call, "create_opportunity", |state| {
        let fields = fields_of(state, "Opportunity", &body)?;
        required(&fields)?;
        let id = insert(state, fields);
        Ok(created(&id, false))
    })
    .await
}

/// The Opportunities carrying `marker`.
fn marked(state: &SimState, marker: &str) -> Vec<String> {
    state
        .deals
        .iter()
        .filter(|d| d.prop("Callsync_Marker__c") == Some(marker))
        .map(|d| d.id.clone())
        .collect()
}

/// Refuses a path by `Callsync_Marker__c` while Opportunity lacks it or it
/// is not an External ID.
fn by_external_id(state: &SimState) -> Result<(), Response> {
    let exists = super::custom_fields_of(state, "Opportunity")
        .iter()
        .any(|(name, _)| *name == "Callsync_Marker__c");
    if exists && state.salesforce.marker_external_id {
        return Ok(());
    }
    Err(not_found(
        "Provided external ID field does not exist or is not accessible: Callsync_Marker__c",
    ))
}

/// The one Opportunity marked `marker`, or the 300 listing several.
fn one_marked(state: &SimState, marker: &str) -> Result<Option<String>, Response> {
    let ids = marked(state, marker);
    if ids.len() > 1 {
        let urls: Vec<String> = ids
            .iter()
            .map(|id| format!("/services/data/v60.0/sobjects/Opportunity/{id}"))
            .collect();
        return Err((StatusCode::MULTIPLE_CHOICES, Json(json!(urls))).into_response());
    }
    Ok(ids.into_iter().next())
}

async fn read_marked(call: Call, Path((_, marker)): Path<(String, String)>) -> Response {
    guard(&call, "get_opportunity", |state| {
        by_external_id(state)?;
        let id = one_marked(state, &marker)?
            .ok_or_else(|| not_found("The requested resource does not exist"))?;
        let deal = state
            .find(Kind::Deals, &id)
            .ok_or_else(|| not_found("gone"))?;
        let mut view = deal.properties.clone();
        view.insert("Id".into(), json!(id));
        Ok(Json(Value::Object(view)).into_response())
    })
    .await
}

/// `PATCH /sobjects/Opportunity/Callsync_Marker__c/{marker}`: updates the
/// Opportunity with the marker (200, `created` false) or creates one (201,
/// its required fields then checked).
async fn upsert(call: Call, Path((_, marker)): Path<(String, String)>, body: Bytes) -> Response {
    guard(&call, "upsert_opportunity", |state| {
        by_external_id(state)?;
        let mut fields = fields_of(state, "Opportunity", &body)?;
        fields.insert("Callsync_Marker__c".into(), json!(marker));
        if let Some(id) = one_marked(state, &marker)? {
            state.update(Kind::Deals, &id, fields);
            return Ok(
                Json(json!({ "id": id, "success": true, "created": false, "errors": [] }))
                    .into_response(),
            );
        }
        required(&fields)?;
        let id = insert(state, fields);
        Ok(created(&id, true))
    })
    .await
}

/// `POST /sobjects/OpportunityContactRole`: the Contact becomes one of the
/// Opportunity's (the simulator associates the two).
async fn create_role(call: Call, body: Bytes) -> Response {
    guard(&call, "create_opportunity_contact_role", |state| {
        let fields = fields_of(state, "OpportunityContactRole", &body)?;
        let id_of = |name: &str| fields.get(name).and_then(Value::as_str).map(str::to_owned);
        let (Some(opportunity), Some(contact)) = (id_of("OpportunityId"), id_of("ContactId"))
        else {
            return Err(bad_request(
                "REQUIRED_FIELD_MISSING",
                "Required fields are missing: [OpportunityId, ContactId]",
            ));
        };
        if state.find(Kind::Contacts, &contact).is_none() {
            return Err(bad_request(
                "INVALID_CROSS_REFERENCE_KEY",
                format!("invalid cross reference id: ContactId {contact}"),
            ));
        }
        let Some(deal) = state.find_mut(Kind::Deals, &opportunity) else {
            return Err(bad_request(
                "INVALID_CROSS_REFERENCE_KEY",
                format!("invalid cross reference id: OpportunityId {opportunity}"),
            ));
        };
        if !deal.associations.contains(&contact) {
            deal.associations.push(contact.clone());
        }
        let n = state.new_id();
        let role = sf_id("00K", &n);
        state
            .salesforce
            .contact_roles
            .push((role.clone(), opportunity, contact));
        Ok(created(&role, false))
    })
    .await
}
