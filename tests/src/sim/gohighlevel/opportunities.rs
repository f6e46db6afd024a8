//! GoHighLevel's pipelines and opportunities: `GET
//! /opportunities/pipelines?locationId=` (get-pipelines, scope
//! `opportunities.readonly`) and `POST /opportunities/`
//! (create-opportunity, scope `opportunities.write`), as
//! `apps/opportunities.json` of GoHighLevel/highlevel-api-docs lists them;
//! the scopes are enforced like every other GoHighLevel route.
//!
//! A create is validated against the file's `CreateDto` (required
//! `pipelineId`, `locationId`, `name`, `status`, `contactId`; `status` one
//! of its enum) and refused for a key it does not declare, as the other
//! bodies are. The file does not say what becomes of an unknown pipeline,
//! a stage of another pipeline, an unknown contact or the `all` status
//! (a search filter, not a state an opportunity can be in): the
//! simulator refuses each (the strictest reading) with GoHighLevel's 400,
//! and puts an opportunity created without a stage in its pipeline's
//! first stage.
//!
//! `GET /opportunities/search` (search-opportunity, scope
//! `opportunities.readonly`) needs `location_id`, filters by `contact_id`
//! and pages by `limit` ("will allow maximum up to 100 and default will be
//! 2") and `page`; each opportunity shows its custom field values as
//! `customFields: [{id, fieldValue}]` (`SearchOpportunitiesResponseSchema`,
//! `CustomFieldResponseSchema`). A `limit` beyond 100 or not a number is
//! refused with the 422 of a bad query, the strictest reading.

use axum::body::Bytes;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};
use std::collections::HashMap;

use super::{checked, error, guard, insert, located, location_missing};
use crate::sim::schema::{Pipeline, Vendor};
use crate::sim::{Call, Kind, Record, Shared};

/// The scopes of the opportunity routes (their `security` in
/// `apps/opportunities.json`), which a new simulator's token holds too.
pub const OPPORTUNITY_SCOPES: [&str; 2] = ["opportunities.readonly", "opportunities.write"];

/// The statuses an opportunity can be in (`status` of `CreateDto` less
/// `all`).
const STATUSES: &[&str] = &["open", "won", "lost", "abandoned"];

/// The simulator's location starts with one pipeline (ids in GoHighLevel's
/// forms: 20 characters for a pipeline, a UUID for a stage); a test sets
/// others with [`crate::sim::CrmSim::set_pipelines`].
pub(crate) fn default_pipelines() -> Vec<Pipeline> {
    vec![Pipeline::new(
        "VDm7RPYC2GLUvdpKmBfC",
        "Sales Pipeline",
        &[
            ("7915dedc-8f18-44d5-8bc3-77c04e994a10", "New Lead"),
            ("3a1e7c52-6d0b-4c55-9a43-2f0c3e8b1d21", "Contacted"),
            ("c2d7f0e4-91b3-4f6a-8e25-5b7a9d0c4e38", "Proposal Sent"),
            ("f4b8a1c9-2e6d-4a07-b3f5-8c1d9e2a7b64", "Closed"),
        ],
    )]
}

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/opportunities/pipelines", get(pipelines))
        .route("/opportunities/", post(create))
        .route("/opportunities/search", get(search))
}

/// `GET /opportunities/search`.
async fn search(call: Call, Query(q): Query<HashMap<String, String>>) -> Response {
    guard(
        &call,
        "search_opportunities",
        "search-opportunity",
        |state| {
            if q.get("location_id").is_none_or(|l| l.is_empty()) {
                return Err(super::unprocessable(vec![
                    "location_id should not be empty".into(),
                ]));
            }
            let number = |key: &str, default: usize, max: usize| match q.get(key) {
                None => Ok(default),
                Some(text) => text
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=max).contains(n))
                    .ok_or_else(|| {
                        super::unprocessable(vec![format!(
                            "{key} must be a number from 1 to {max}"
                        )])
                    }),
            };
            let limit = number("limit", 2, 100)?;
            let page = number("page", 1, usize::MAX)?;
            let contact = q.get("contact_id");
            let matching: Vec<Value> = state
                .deals
                .iter()
                .filter(|d| d.properties.contains_key("pipelineStageId"))
                .filter(|d| contact.is_none_or(|c| d.associations.contains(c)))
                .map(|d| {
                    let mut view = opportunity_view(d);
                    let stored = d
                        .properties
                        .get("customFields")
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default();
                    let values = super::fields::values_of(state, "opportunity", &stored);
                    let values: Vec<Value> = values
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|v| json!({ "id": v["id"], "fieldValue": v["value"] }))
                        .collect();
                    view.insert("customFields".into(), json!(values));
                    Value::Object(view)
                })
                .collect();
            let total = matching.len();
            let shown: Vec<Value> = matching
                .into_iter()
                .skip(limit.saturating_mul(page - 1))
                .take(limit)
                .collect();
            Ok(Json(json!({ "opportunities": shown, "meta": { "total": total } })).into_response())
        },
    )
    .await
}

/// `GET /opportunities/pipelines?locationId=`: `{pipelines: [{id, name,
/// stages, locationId}]}` (`GetPipelinesSuccessfulResponseDto`).
async fn pipelines(call: Call, Query(q): Query<HashMap<String, String>>) -> Response {
    guard(&call, "list_pipelines", "get-pipelines", |state| {
        let Some(location) = q.get("locationId").filter(|l| !l.is_empty()) else {
            return Err(location_missing());
        };
        let pipelines: Vec<Value> = state
            .pipelines_of(Vendor::Gohighlevel)
            .iter()
            .map(|p| {
                let stages: Vec<Value> = p
                    .stages
                    .iter()
                    .enumerate()
                    .map(|(i, s)| json!({ "id": s.id, "name": s.label, "position": i }))
                    .collect();
                json!({ "id": p.id, "name": p.label, "stages": stages, "locationId": location })
            })
            .collect();
        Ok(Json(json!({ "pipelines": pipelines })).into_response())
    })
    .await
}

fn bad_request(message: String) -> Response {
    error(StatusCode::BAD_REQUEST, message)
}

fn opportunity_view(r: &Record) -> Map<String, Value> {
    let mut view = r.properties.clone();
    view.insert("id".into(), json!(r.id));
    view
}

/// `POST /opportunities/`.
async fn create(call: Call, body: Bytes) -> Response {
    guard(&call, "create_opportunity", "create-opportunity", |state| {
        let body = checked(&body, "CreateDto")?;
        located(&body)?;
        let text = |key: &str| body[key].as_str().unwrap_or_default().to_owned();
        let (pipeline_id, contact_id, status) =
            (text("pipelineId"), text("contactId"), text("status"));
        let Some(pipeline) = state
            .pipelines_of(Vendor::Gohighlevel)
            .iter()
            .find(|p| p.id == pipeline_id)
        else {
            return Err(bad_request(format!("Pipeline {pipeline_id} not found")));
        };
        let stage = match body["pipelineStageId"].as_str() {
            Some(id) => pipeline.stage(id).ok_or_else(|| {
                bad_request(format!(
                    "Stage {id} is not a stage of pipeline {pipeline_id}"
                ))
            })?,
            None => pipeline
                .stages
                .first()
                .ok_or_else(|| bad_request(format!("Pipeline {pipeline_id} has no stage")))?,
        };
        let stage_id = stage.id.clone();
        if !STATUSES.contains(&status.as_str()) {
            return Err(bad_request(format!(
                "status must be one of {}",
                STATUSES.join(", ")
            )));
        }
        if state.find(Kind::Contacts, &contact_id).is_none() {
            return Err(bad_request("Contact not found".into()));
        }
        let mut properties = Map::new();
        for key in ["name", "pipelineId", "status", "contactId", "locationId"] {
            properties.insert(key.into(), body[key].clone());
        }
        properties.insert("pipelineStageId".into(), json!(stage_id));
        if let Some(value) = body.get("monetaryValue") {
            properties.insert("monetaryValue".into(), value.clone());
        }
        let custom = super::fields::custom_fields(state, "opportunity", &body)?;
        if !custom.is_empty() {
            properties.insert("customFields".into(), Value::Object(custom));
        }
        let record = insert(state, Kind::Deals, properties, vec![contact_id]);
        Ok((
            StatusCode::CREATED,
            Json(json!({ "opportunity": Value::Object(opportunity_view(&record)) })),
        )
            .into_response())
    })
    .await
}
