//! Vapi's `GET /call` (API reference, `CallController_findAll`): Bearer
//! private key; `limit` 0–1000, default 100; `createdAt{Gt,Lt,Ge,Le}` and
//! `updatedAt*` as ISO 8601; no cursor and no documented order, so this
//! simulator answers in an order unrelated to time. Unknown parameters are
//! refused, as Vapi's validation refuses them (400, "property … should not
//! exist").
//!
//! A listed call names the number it was on by `phoneNumberId` only, as
//! Vapi's `Call` does ("This is the phone number that will be used for the
//! call. To use a transient number, use `phoneNumber` instead."); the number
//! itself is `GET /phone-number/{id}` (`PhoneNumberController_findOne`,
//! Bearer, `id` "format": "uuid"), VapiAI/docs @ eabfa530
//! `fern/apis/api/openapi.json`.

use axum::Router;
use axum::extract::{self, Path};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use callsync_shared::Source;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{AGENT_NUMBER, Api, Shared, SimCall, Stage, iso, ok, query_params, refuse};

/// The id of the phone number the simulated calls are on.
pub const PHONE_NUMBER_ID: &str = "9a8b7c6d-5e4f-4a3b-8c1d-0e9f8a7b6c5d";

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
    more: Some(phone_numbers),
};

/// `GET /phone-number/{id}`: the number resource, 404 for an id Vapi does
/// not hold, and 400 for one that is not a UUID (the path parameter is
/// `"format": "uuid"`; Vapi's validation refuses other ids before looking).
fn phone_numbers() -> Router<Shared> {
    Router::new().route(
        "/phone-number/{id}",
        get(
            |extract::State(sim): extract::State<Shared>,
             headers: HeaderMap,
             Path(id): Path<String>| async move {
                sim.other(
                    Source::Vapi,
                    &headers,
                    "get_phone_number",
                    id.clone(),
                    || {
                        if uuid::Uuid::try_parse(&id).is_err() {
                            refuse(StatusCode::BAD_REQUEST, "id must be a UUID")
                        } else if id == PHONE_NUMBER_ID {
                            ok(phone_number())
                        } else {
                            refuse(StatusCode::NOT_FOUND, "Phone Number not found")
                        }
                    },
                )
            },
        ),
    )
}

/// The number resource, as `VapiPhoneNumber` has it.
fn phone_number() -> Value {
    json!({
        "provider": "vapi",
        "id": PHONE_NUMBER_ID,
        "orgId": "org-callsync-test",
        "createdAt": "2026-01-01T00:00:00.000Z",
        "updatedAt": "2026-01-01T00:00:00.000Z",
        "number": AGENT_NUMBER,
        "name": "Front desk",
        "status": "active",
    })
}

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

/// A call as `GET /call` lists it: the whole call object, its number by
/// id only. Its analysis is what a default assistant gets (a summary) and
/// the follow-up flag a Structured Output, as Vapi recommends for new
/// set-ups; the recording is `artifact.recording`, without the deprecated
/// `recordingUrl`.
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
        "phoneNumberId": PHONE_NUMBER_ID,
    });
    if over {
        item["endedAt"] = json!(iso(call.ended_at()));
        item["endedReason"] = json!("customer-ended-call");
        item["artifact"] = json!({
            "transcript": format!("AI: Hello.\nUser: {}", call.summary),
            "recording": {"mono": {"combinedUrl": format!("https://storage.vapi.ai/{}-mono.wav", call.id)}},
        });
    }
    if call.stage == Stage::Analysed {
        item["analysis"] = json!({"summary": call.summary});
        item["artifact"]["structuredOutputs"] = json!({
            "5a0d2c1e-7f3b-4e9a-8c6d-1b2a3f4e5d60": {
                "name": "follow_up_needed",
                "result": call.follow_up,
            },
        });
    }
    item
}

/// The `end-of-call-report` server message (sent once the analysis is done).
pub(super) fn webhook(call: &SimCall) -> Value {
    let item = item(call);
    // The server message carries the number itself (`phoneNumber` of
    // `ServerMessageEndOfCallReport`), not only its id.
    let mut message = json!({
        "type": "end-of-call-report",
        "timestamp": super::millis(OffsetDateTime::now_utc()),
        "call": item,
        "phoneNumber": phone_number(),
    });
    for key in [
        "customer",
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
