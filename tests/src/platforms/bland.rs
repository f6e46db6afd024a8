//! Bland's `GET /v1/calls` and `GET /v1/calls/{call_id}` (API reference):
//! `authorization: <key>` without "Bearer"; the list is ordered by
//! `created_at`, newest first unless `ascending=true`, and paged by index
//! (`from` inclusive, `to` exclusive, `limit` default 1000); list rows hold
//! no summary or transcript. The post-call webhook's body is the call
//! object the details answer. Parameters the reference does not list are
//! refused (400).

use axum::http::StatusCode;
use callsync_shared::Source;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

use super::{AGENT_NUMBER, Api, SimCall, Stage, page_of, query_params, whole};

const PARAMS: &[&str] = &[
    "from_number",
    "to_number",
    "from",
    "to",
    "limit",
    "ascending",
    "sort_by",
];

pub(super) const API: Api = Api {
    source: Source::Bland,
    list_path: "/v1/calls",
    list_by_post: false,
    get_path: Some("/v1/calls/{call_id}"),
    invalid: StatusCode::BAD_REQUEST,
    select,
    details,
    missing: "Call not found",
    more: None,
};

fn select(calls: &[SimCall], query: &str) -> Result<Value, String> {
    let params = query_params(query, PARAMS)?;
    let index = |name: &str| whole(&params, name, format!("{name} must be a whole number"));
    let from = index("from")?.unwrap_or(0);
    let limit = index("limit")?.unwrap_or(1000);
    let to = index("to")?.unwrap_or(usize::MAX);
    if to < from {
        return Err("to must not be less than from".to_owned());
    }
    let ascending = match params.get("ascending").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => return Err(format!("ascending must be true or false, not {other}")),
    };
    let mut chosen: Vec<&SimCall> = calls.iter().collect();
    chosen.sort_by_key(|c| (c.started_at, c.id.clone()));
    if !ascending {
        chosen.reverse();
    }
    let calls: Vec<Value> = page_of(&chosen, from, (to - from).min(limit))
        .into_iter()
        .map(row)
        .collect();
    Ok(json!({ "count": chosen.len(), "calls": calls }))
}

fn created_at(call: &SimCall) -> String {
    call.started_at
        .format(&Rfc3339)
        .expect("a formattable time")
}

fn completed(call: &SimCall) -> bool {
    call.stage != Stage::InProgress
}

/// A call as the list shows it.
fn row(call: &SimCall) -> Value {
    json!({
        "call_id": call.id,
        "created_at": created_at(call),
        "call_length": if completed(call) { call.duration.as_secs_f64() / 60.0 } else { 0.0 },
        "to": AGENT_NUMBER,
        "from": call.phone,
        "completed": completed(call),
        "queue_status": if completed(call) { "complete" } else { "started" },
        "error_message": null,
        "answered_by": "human",
        "batch_id": null,
    })
}

/// A call as the details answer it: also the post-call webhook's body.
pub(super) fn details(call: &SimCall) -> Value {
    let mut details = row(call);
    details["c_id"] = json!(call.id);
    details["inbound"] = json!(true);
    details["started_at"] = json!(created_at(call));
    details["variables"] = json!({"follow_up_needed": call.follow_up});
    details["metadata"] = json!({});
    details["analysis"] = Value::Null;
    if completed(call) {
        details["concatenated_transcript"] =
            json!(format!("assistant: Hello. user: {}", call.summary));
    }
    if call.stage == Stage::Analysed {
        details["summary"] = json!(call.summary);
    }
    details
}
