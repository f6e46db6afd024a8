//! Vapi's `GET /call` (API reference, `CallController_findAll`): Bearer
//! private key; `limit` 0–1000, default 100; `createdAt{Gt,Lt,Ge,Le}` and
//! `updatedAt*` as ISO 8601; no cursor and no documented order, so this
//! simulator answers in an order unrelated to time. Unknown parameters are
//! refused, as Vapi's validation refuses them (400, "property … should not
//! exist").

use axum::http::StatusCode;
use callsync_shared::Source;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{AGENT_NUMBER, Api, SimCall, Stage, iso, query_params};

const PARAMS: &[&str] = &[
    "id",
    "assistantId",
    "phoneNumberId",
    "limit",
    "createdAtGt",
    "createdAtLt",
    "createdAtGe",
    "createdAtLe",
    "updatedAtGt",
    "updatedAtLt",
    "updatedAtGe",
    "updatedAtLe",
];

pub(super) const API: Api = Api {
    source: Source::Vapi,
    list_path: "/call",
    list_by_post: false,
    get_path: None,
    invalid: StatusCode::BAD_REQUEST,
    select,
    details: item,
    missing: "Call not found",
};

fn select(calls: &[SimCall], query: &str) -> Result<Value, String> {
    let params = query_params(query, PARAMS)?;
    let limit: usize = match params.get("limit") {
        None => 100,
        Some(text) => text
            .parse()
            .ok()
            .filter(|n| *n <= 1000)
            .ok_or("limit must not be greater than 1000")?,
    };
    let bound = |name: &str| -> Result<Option<OffsetDateTime>, String> {
        params
            .get(name)
            .map(|t| {
                OffsetDateTime::parse(t, &Rfc3339)
                    .map_err(|_| format!("{name} must be a valid ISO 8601 date string"))
            })
            .transpose()
    };
    let (gt, lt, ge, le) = (
        bound("createdAtGt")?,
        bound("createdAtLt")?,
        bound("createdAtGe")?,
        bound("createdAtLe")?,
    );
    let mut chosen: Vec<&SimCall> = calls
        .iter()
        .filter(|c| {
            let at = c.started_at;
            gt.is_none_or(|b| at > b)
                && lt.is_none_or(|b| at < b)
                && ge.is_none_or(|b| at >= b)
                && le.is_none_or(|b| at <= b)
        })
        .collect();
    // No documented order: one that has nothing to do with time.
    chosen.sort_by_key(|c| scramble(&c.id));
    Ok(Value::Array(
        chosen.into_iter().take(limit).map(item).collect(),
    ))
}

fn scramble(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A call as `GET /call` lists it: the whole call object.
pub(super) fn item(call: &SimCall) -> Value {
    let over = call.stage != Stage::InProgress;
    let mut item = json!({
        "id": call.id,
        "orgId": "org-callsync-test",
        "type": "inboundPhoneCall",
        "status": if over { "ended" } else { "in-progress" },
        "createdAt": iso(call.started_at),
        "updatedAt": iso(if over { call.ended_at() } else { call.started_at }),
        "startedAt": iso(call.started_at),
        "customer": {"number": call.phone},
        "phoneNumber": {"number": AGENT_NUMBER},
    });
    if over {
        item["endedAt"] = json!(iso(call.ended_at()));
        item["endedReason"] = json!("customer-ended-call");
        item["artifact"] = json!({"transcript": format!("AI: Hello.\nUser: {}", call.summary)});
    }
    if call.stage == Stage::Analysed {
        item["analysis"] = json!({
            "summary": call.summary,
            "structuredData": {"follow_up_needed": call.follow_up},
            "successEvaluation": "true",
        });
    }
    item
}

/// The `end-of-call-report` server message (sent once the analysis is done).
pub(super) fn webhook(call: &SimCall) -> Value {
    let item = item(call);
    let mut message = json!({
        "type": "end-of-call-report",
        "timestamp": super::millis(OffsetDateTime::now_utc()),
        "call": item,
    });
    for key in [
        "customer",
        "phoneNumber",
        "startedAt",
        "endedAt",
        "endedReason",
        "analysis",
        "artifact",
    ] {
        if let Some(value) = item.get(key) {
            message[key] = value.clone();
        }
    }
    json!({ "message": message })
}
