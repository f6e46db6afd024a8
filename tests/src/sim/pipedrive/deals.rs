//! Pipedrive's pipelines, stages and deals: `GET /api/v1/pipelines`,
//! `GET /api/v1/stages?pipeline_id=` (and their v2 forms, paged by
//! cursor), and `POST`/`GET /api/v2/deals` (v2,
//! as the worker's other writes: persons and activities).
//!
//! A deal needs a `title` ("required", Add a deal, API v2); `person_id`,
//! `pipeline_id` and `stage_id` must name a person, pipeline and stage the
//! account has, and a stage must belong to the pipeline named with it; a
//! deal given a pipeline only starts in its first stage, a deal given
//! neither in the first stage of the first pipeline; `status` is `open`,
//! `won` or `lost`; `value` is a number (v2 coerces no strings).
//! https://developers.pipedrive.com/docs/api/v1/Deals#addDeal (API v2)
//! https://pipedrive.readme.io/docs/pipedrive-api-v2-migration-guide
//! What Pipedrive answers for a stage of another pipeline is not
//! documented: the simulator refuses it, the strictest reading.

use axum::Router;
use axum::body::Bytes;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Map, Value, json};

use super::{Params, cursor_page, guard, invalid, ok, v2_body};
use crate::sim::schema::{Pipeline, Vendor};
use crate::sim::{Call, Kind, Limits, Record, Shared};

/// The body keys `POST /api/v2/deals` accepts.
/// https://developers.pipedrive.com/docs/api/v1/Deals#addDeal (API v2)
const DEAL_KEYS: &[&str] = &[
    "title",
    "owner_id",
    "person_id",
    "org_id",
    "pipeline_id",
    "stage_id",
    "value",
    "currency",
    "add_time",
    "update_time",
    "stage_change_time",
    "is_deleted",
    "status",
    "probability",
    "lost_reason",
    "visible_to",
    "close_time",
    "won_time",
    "lost_time",
    "expected_close_date",
    "label_ids",
    "custom_fields",
];

const STATUSES: &[&str] = &["open", "won", "lost"];

/// The simulator's account starts with one pipeline of five stages, as a
/// new Pipedrive company's default pipeline has (Qualified … Negotiations
/// Started; the API reference does not list them, so nothing should rely
/// on their names); a test sets others with
/// [`crate::sim::CrmSim::set_pipelines`].
pub(crate) fn default_pipelines() -> Vec<Pipeline> {
    vec![Pipeline::new(
        "1",
        "Pipeline",
        &[
            ("1", "Qualified"),
            ("2", "Contact Made"),
            ("3", "Demo Scheduled"),
            ("4", "Proposal Made"),
            ("5", "Negotiations Started"),
        ],
    )]
}

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/v1/pipelines", get(pipelines))
        .route("/api/v1/stages", get(stages))
        .route("/api/v2/pipelines", get(pipelines_v2))
        .route("/api/v2/stages", get(stages_v2))
        .route("/api/v2/deals", get(list_deals).post(create_deal))
}

fn number(id: &str) -> i64 {
    id.parse().unwrap_or_default()
}

async fn pipelines(call: Call, Query(q): Params) -> Response {
    guard(&call, "list_pipelines", Limits::General, Some(&q), |state| {
        let pipelines: Vec<Value> = state
            .pipelines_of(Vendor::Pipedrive)
            .iter()
            .enumerate()
            .map(|(i, p)| json!({ "id": number(&p.id), "name": p.label, "order_nr": i + 1, "active": true }))
            .collect();
        Ok(ok(StatusCode::OK, json!(pipelines)))
    })
    .await
}

/// `GET /api/v1/stages`: every stage, or those of `pipeline_id`. A
/// `pipeline_id` the account does not have lists no stage.
async fn stages(call: Call, Query(q): Params) -> Response {
    guard(&call, "list_stages", Limits::General, Some(&q), |state| {
        let wanted = q.get("pipeline_id");
        let stages: Vec<Value> = state
            .pipelines_of(Vendor::Pipedrive)
            .iter()
            .filter(|p| wanted.is_none_or(|w| *w == p.id))
            .flat_map(|p| {
                p.stages.iter().enumerate().map(|(i, s)| {
                    json!({ "id": number(&s.id), "name": s.label, "pipeline_id": number(&p.id), "order_nr": i + 1 })
                })
            })
            .collect();
        Ok(ok(StatusCode::OK, json!(stages)))
    })
    .await
}

/// `GET /api/v2/pipelines`: the pipelines, by cursor (v2 lists page by
/// cursor and validate their parameters).
/// https://developers.pipedrive.com/docs/api/v1/Pipelines#getPipelines (API v2)
async fn pipelines_v2(call: Call, Query(q): Params) -> Response {
    guard(&call, "list_pipelines", Limits::General, None, |state| {
        let pipelines = state
            .pipelines_of(Vendor::Pipedrive)
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let id = number(&p.id);
                (
                    id,
                    json!({ "id": id, "name": p.label, "order_nr": i + 1, "is_deleted": false }),
                )
            })
            .collect();
        Ok(cursor_page(pipelines, &q))
    })
    .await
}

/// `GET /api/v2/stages`: the stages, or those of `pipeline_id` (an
/// integer: v2 coerces no other text), by cursor.
/// https://developers.pipedrive.com/docs/api/v1/Stages#getStages (API v2)
async fn stages_v2(call: Call, Query(q): Params) -> Response {
    guard(&call, "list_stages", Limits::General, None, |state| {
        let wanted = match q.get("pipeline_id").map(|p| p.parse::<i64>()) {
            None => None,
            Some(Ok(id)) => Some(id),
            Some(Err(_)) => {
                return Err(invalid(
                    "Validation failed: pipeline_id: must be an integer",
                ));
            }
        };
        let stages = state
            .pipelines_of(Vendor::Pipedrive)
            .iter()
            .filter(|p| wanted.is_none_or(|w| w == number(&p.id)))
            .flat_map(|p| {
                p.stages.iter().enumerate().map(|(i, s)| {
                    let id = number(&s.id);
                    (id, json!({ "id": id, "name": s.label, "pipeline_id": number(&p.id), "order_nr": i + 1, "is_deleted": false }))
                })
            })
            .collect();
        Ok(cursor_page(stages, &q))
    })
    .await
}

fn deal_view(r: &Record) -> Value {
    let mut view = r.properties.clone();
    view.insert("id".into(), json!(number(&r.id)));
    Value::Object(view)
}

/// The pipeline and stage a deal lands in: those named (the stage one of
/// the pipeline's), else the first stage of the pipeline named or of the
/// first pipeline.
fn placement(pipelines: &[Pipeline], body: &Value) -> Result<(i64, i64), Response> {
    let id = |key: &str| -> Result<Option<String>, Response> {
        match &body[key] {
            Value::Null => Ok(None),
            Value::Number(n) if n.is_i64() => Ok(Some(n.to_string())),
            other => Err(invalid(format!(
                "Validation failed: {key}: must be an integer, not {other}"
            ))),
        }
    };
    let (pipeline_id, stage_id) = (id("pipeline_id")?, id("stage_id")?);
    let pipeline = match (&pipeline_id, &stage_id) {
        (Some(p), _) => pipelines.iter().find(|x| &x.id == p),
        (None, Some(s)) => pipelines.iter().find(|x| x.stage(s).is_some()),
        (None, None) => pipelines.first(),
    };
    let Some(pipeline) = pipeline else {
        let what = pipeline_id.map_or_else(
            || format!("stage {}", stage_id.unwrap_or_default()),
            |p| format!("pipeline {p}"),
        );
        return Err(invalid(format!("Validation failed: {what} not found")));
    };
    let stage = match &stage_id {
        Some(s) => pipeline.stage(s).ok_or_else(|| {
            invalid(format!(
                "Validation failed: stage_id: stage {s} is not a stage of pipeline {}",
                pipeline.id
            ))
        })?,
        None => pipeline
            .stages
            .first()
            .ok_or_else(|| invalid("Validation failed: the pipeline has no stage"))?,
    };
    Ok((number(&pipeline.id), number(&stage.id)))
}

/// `POST /api/v2/deals`.
async fn create_deal(call: Call, body: Bytes) -> Response {
    guard(&call, "create_deal", Limits::General, None, |state| {
        let body = v2_body(&body, DEAL_KEYS)?;
        let Some(title) = body["title"].as_str().filter(|t| !t.is_empty()) else {
            return Err(invalid(
                "Validation failed: title: Parameter 'title' is required",
            ));
        };
        let (pipeline_id, stage_id) = placement(state.pipelines_of(Vendor::Pipedrive), &body)?;
        let status = body["status"].as_str().unwrap_or("open");
        if !STATUSES.contains(&status) {
            return Err(invalid(format!(
                "Validation failed: status: must be one of {}",
                STATUSES.join(", ")
            )));
        }
        if !body["value"].is_null() && !body["value"].is_number() {
            return Err(invalid("Validation failed: value: must be a number"));
        }
        let person = match &body["person_id"] {
            Value::Null => None,
            Value::Number(n) if n.is_i64() => Some(n.to_string()),
            other => {
                return Err(invalid(format!(
                    "Validation failed: person_id: must be an integer, not {other}"
                )));
            }
        };
        if let Some(p) = &person
            && state.find(Kind::Contacts, p).is_none()
        {
            return Err(invalid(format!("Validation failed: person {p} not found")));
        }
        let mut properties = Map::new();
        properties.insert("title".into(), json!(title));
        properties.insert("pipeline_id".into(), json!(pipeline_id));
        properties.insert("stage_id".into(), json!(stage_id));
        properties.insert("status".into(), json!(status));
        properties.insert("person_id".into(), json!(person.as_deref().map(number)));
        for key in ["value", "currency", "expected_close_date"] {
            if let Some(v) = body.get(key) {
                properties.insert(key.into(), v.clone());
            }
        }
        let custom = super::fields::custom_fields(state, "deal", &body)?;
        if !custom.is_empty() {
            properties.insert("custom_fields".into(), Value::Object(custom));
        }
        let record = state.insert(Kind::Deals, properties, person.into_iter().collect());
        Ok(ok(StatusCode::OK, deal_view(&record)))
    })
    .await
}

/// `GET /api/v2/deals`: every deal, or those of `person_id`, by cursor.
async fn list_deals(call: Call, Query(q): Params) -> Response {
    guard(&call, "list_deals", Limits::General, None, |state| {
        let person = q.get("person_id");
        let deals = state
            .deals
            .iter()
            .filter(|d| person.is_none_or(|p| d.associations.contains(p)))
            .map(|d| (number(&d.id), deal_view(d)))
            .collect();
        Ok(cursor_page(deals, &q))
    })
    .await
}
