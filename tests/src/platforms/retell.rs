//! Retell's `POST /v3/list-calls` and `GET /v2/get-call/{call_id}` (API
//! reference; the v2 list is deprecated): Bearer API key; a JSON body of
//! `filter_criteria`, `sort_order` (by `start_timestamp`), `limit` and the
//! opaque `pagination_key`, answered `{items, pagination_key, has_more}`.
//! List items carry no transcript; get-call answers the whole call, the
//! same object the `call_analyzed` webhook carries. Unknown keys, filters
//! this simulator does not model and a limit over 1000 are refused (400).

use axum::http::StatusCode;
use callsync_shared::Source;
use serde_json::{Map, Value, json};

use super::{AGENT_NUMBER, Api, SimCall, Stage, millis, page_of, token_offset};

const KEYS: &[&str] = &[
    "filter_criteria",
    "sort_order",
    "limit",
    "pagination_key",
    "skip",
    "include_total",
];

pub(super) const API: Api = Api {
    source: Source::Retell,
    list_path: "/v3/list-calls",
    list_by_post: true,
    get_path: Some("/v2/get-call/{call_id}"),
    invalid: StatusCode::BAD_REQUEST,
    select,
    details,
    missing: "Call not found",
    more: None,
};

fn select(calls: &[SimCall], body: &str) -> Result<Value, String> {
    let request: Map<String, Value> = if body.trim().is_empty() {
        Map::new()
    } else {
        serde_json::from_str(body).map_err(|e| format!("invalid JSON body: {e}"))?
    };
    if let Some(key) = request.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(format!("unknown field {key}"));
    }
    let limit = match request.get("limit") {
        None => 50,
        Some(n) => n
            .as_u64()
            .filter(|n| (1..=1000).contains(n))
            .ok_or("limit must be an integer from 1 to 1000")? as usize,
    };
    let (lower, upper) = match request.get("filter_criteria") {
        None => (i64::MIN, i64::MAX),
        Some(criteria) => start_range(criteria)?,
    };
    let ascending = match request.get("sort_order").and_then(Value::as_str) {
        None | Some("descending") => false,
        Some("ascending") => true,
        Some(other) => {
            return Err(format!(
                "sort_order must be ascending or descending, not {other}"
            ));
        }
    };
    let key = request.get("pagination_key").and_then(Value::as_str);
    let offset = token_offset(key, "pk_", "invalid pagination_key")?;
    let mut chosen: Vec<&SimCall> = calls
        .iter()
        .filter(|c| (lower..=upper).contains(&millis(c.started_at)))
        .collect();
    chosen.sort_by_key(|c| (c.started_at, c.id.clone()));
    if !ascending {
        chosen.reverse();
    }
    let items: Vec<Value> = page_of(&chosen, offset, limit)
        .into_iter()
        .map(item)
        .collect();
    let has_more = offset + items.len() < chosen.len();
    let mut answer = json!({ "items": items, "has_more": has_more });
    if has_more {
        answer["pagination_key"] = json!(format!("pk_{}", offset + limit));
    }
    Ok(answer)
}

/// The `start_timestamp` filter, as a closed range of epoch milliseconds.
fn start_range(criteria: &Value) -> Result<(i64, i64), String> {
    let criteria = criteria
        .as_object()
        .ok_or("filter_criteria must be an object")?;
    if let Some(key) = criteria.keys().find(|k| k.as_str() != "start_timestamp") {
        return Err(format!("filter {key} is not modelled by this simulator"));
    }
    let Some(filter) = criteria.get("start_timestamp") else {
        return Ok((i64::MIN, i64::MAX));
    };
    let op = filter.get("op").and_then(Value::as_str);
    let kind = filter.get("type").and_then(Value::as_str);
    let value = filter.get("value");
    let number = || {
        value
            .and_then(Value::as_i64)
            .ok_or("value must be a number")
    };
    Ok(match (op, kind) {
        (Some("bt"), Some("range")) => {
            let range = value
                .and_then(Value::as_array)
                .filter(|r| r.len() == 2)
                .ok_or("a range value is [lower, upper]")?;
            let bound = |v: &Value| v.as_i64().ok_or("range bounds are numbers");
            (bound(&range[0])?, bound(&range[1])?)
        }
        (Some("ge"), Some("number")) => (number()?, i64::MAX),
        (Some("gt"), Some("number")) => (number()? + 1, i64::MAX),
        (Some("le"), Some("number")) => (i64::MIN, number()?),
        (Some("lt"), Some("number")) => (i64::MIN, number()? - 1),
        (Some("eq"), Some("number")) => (number()?, number()?),
        _ => {
            return Err(
                "start_timestamp needs op and type (bt/range or ge, gt, le, lt, eq/number)"
                    .to_owned(),
            );
        }
    })
}

/// A call as a v3 list item: no transcript.
fn item(call: &SimCall) -> Value {
    let over = call.stage != Stage::InProgress;
    let mut item = json!({
        "call_id": call.id,
        "agent_id": "agent_callsync_test",
        "agent_version": 1,
        "call_type": "phone_call",
        "call_status": if over { "ended" } else { "ongoing" },
        "direction": "inbound",
        "from_number": call.phone,
        "to_number": AGENT_NUMBER,
        "start_timestamp": millis(call.started_at),
        "metadata": {},
    });
    if over {
        item["end_timestamp"] = json!(millis(call.ended_at()));
        item["duration_ms"] = json!(call.duration.as_millis() as u64);
        item["disconnection_reason"] = json!("user_hangup");
    }
    if call.stage == Stage::Analysed {
        item["call_analysis"] = json!({
            "call_summary": call.summary,
            "call_successful": true,
            "user_sentiment": "Positive",
            "in_voicemail": false,
            "custom_analysis_data": {"follow_up_needed": call.follow_up},
        });
    }
    item
}

/// A call as get-call answers it: the list item and its transcript.
fn details(call: &SimCall) -> Value {
    let mut details = item(call);
    if call.stage != Stage::InProgress {
        details["transcript"] = json!(format!("Agent: Hello.\nUser: {}", call.summary));
    }
    details
}

/// The `call_analyzed` webhook.
pub(super) fn webhook(call: &SimCall) -> Value {
    json!({ "event": "call_analyzed", "call": details(call) })
}
