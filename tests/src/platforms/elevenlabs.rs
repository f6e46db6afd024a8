//! ElevenLabs' `GET /v1/convai/conversations` and
//! `GET /v1/convai/conversations/{conversation_id}` (API reference):
//! `xi-api-key`; `page_size` at most 100 (default 30), the opaque `cursor`,
//! `call_start_after_unix`/`call_start_before_unix` in seconds; answered
//! `{conversations, next_cursor, has_more}`, newest first, summaries only
//! (no phone numbers). A bad parameter is answered 422, as FastAPI
//! validation answers; unknown parameters are ignored, as FastAPI ignores them.

use axum::http::StatusCode;
use callsync_shared::Source;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::{AGENT_NUMBER, Api, SimCall, Stage, page_of, token_offset, whole};

pub(super) const API: Api = Api {
    source: Source::Elevenlabs,
    list_path: "/v1/convai/conversations",
    list_by_post: false,
    get_path: Some("/v1/convai/conversations/{conversation_id}"),
    invalid: StatusCode::UNPROCESSABLE_ENTITY,
    select,
    details,
    missing: "Conversation not found",
    more: None,
};

fn select(calls: &[SimCall], query: &str) -> Result<Value, String> {
    let params: std::collections::BTreeMap<String, String> =
        form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
    let int = |name: &str| {
        whole(
            &params,
            name,
            format!("{name}: value is not a valid integer"),
        )
    };
    let page_size = int("page_size")?.unwrap_or(30);
    if !(1..=100).contains(&page_size) {
        return Err("page_size: ensure this value is between 1 and 100".to_owned());
    }
    let after = int("call_start_after_unix")?;
    let before = int("call_start_before_unix")?;
    let cursor = params.get("cursor").map(String::as_str);
    let offset = token_offset(cursor, "cur_", "cursor: invalid cursor")?;
    let mut chosen: Vec<&SimCall> = calls
        .iter()
        .filter(|c| {
            let start = c.started_at.unix_timestamp();
            after.is_none_or(|a| start > a) && before.is_none_or(|b| start < b)
        })
        .collect();
    chosen.sort_by_key(|c| std::cmp::Reverse((c.started_at, c.id.clone())));
    let size = usize::try_from(page_size).unwrap_or(30);
    let conversations: Vec<Value> = page_of(&chosen, offset, size)
        .into_iter()
        .map(summary)
        .collect();
    let has_more = offset + conversations.len() < chosen.len();
    Ok(json!({
        "conversations": conversations,
        "next_cursor": has_more.then(|| format!("cur_{}", offset + size)),
        "has_more": has_more,
    }))
}

fn status(call: &SimCall) -> &'static str {
    match call.stage {
        Stage::InProgress => "in-progress",
        Stage::Ended => "processing",
        Stage::Analysed => "done",
    }
}

/// A conversation as the list shows it.
fn summary(call: &SimCall) -> Value {
    json!({
        "agent_id": "agent_callsync_test",
        "conversation_id": call.id,
        "start_time_unix_secs": call.started_at.unix_timestamp(),
        "call_duration_secs": duration_so_far(call),
        "message_count": 4,
        "status": status(call),
        "call_successful": if call.stage == Stage::Analysed { "success" } else { "unknown" },
        "direction": "inbound",
    })
}

fn duration_so_far(call: &SimCall) -> u64 {
    match call.stage {
        Stage::InProgress => (OffsetDateTime::now_utc() - call.started_at)
            .whole_seconds()
            .max(0) as u64,
        Stage::Ended | Stage::Analysed => call.duration.as_secs(),
    }
}

/// A conversation as the GET answers it, and the webhook's `data`.
fn details(call: &SimCall) -> Value {
    let mut details = json!({
        "agent_id": "agent_callsync_test",
        "conversation_id": call.id,
        "status": status(call),
        "transcript": [
            {"role": "agent", "message": "Hello.", "time_in_call_secs": 0},
            {"role": "user", "message": call.summary, "time_in_call_secs": 4},
        ],
        "metadata": {
            "start_time_unix_secs": call.started_at.unix_timestamp(),
            "call_duration_secs": duration_so_far(call),
            "phone_call": {
                "type": "twilio",
                "direction": "inbound",
                "external_number": call.phone,
                "agent_number": AGENT_NUMBER,
                "phone_number_id": "phnum_callsync_test",
                "call_sid": format!("CA{}", call.id),
            },
        },
        "has_audio": true,
        "has_user_audio": true,
        "has_response_audio": true,
        "conversation_initiation_client_data": {"dynamic_variables": {}},
    });
    if call.stage == Stage::Analysed {
        details["analysis"] = json!({
            "call_successful": "success",
            "transcript_summary": call.summary,
            "data_collection_results": {
                "follow_up_needed": {"data_collection_id": "follow_up_needed", "value": call.follow_up, "rationale": "asked for a callback"},
            },
            "evaluation_criteria_results": {},
        });
    }
    details
}

/// The `post_call_transcription` webhook.
pub(super) fn webhook(call: &SimCall) -> Value {
    json!({
        "type": "post_call_transcription",
        "event_timestamp": OffsetDateTime::now_utc().unix_timestamp(),
        "data": details(call),
    })
}
