//! ElevenLabs Agents: `GET /v1/convai/conversations` filtered by
//! `call_start_after_unix`/`call_start_before_unix`, paged by `cursor`
//! (`page_size` at most 100), then `GET /v1/convai/conversations/{id}` for
//! each conversation to queue: the list holds summaries only (`xi-api-key`).
//!
//! A conversation is finished when its status is `done` (call over and
//! analysed); `initiated`, `in-progress` and `processing` are left for a
//! later round. `failed` conversations are never reported by webhook
//! (ElevenLabs sends `call_initiation_failure` for them), so they are not
//! reconciled either. The `post_call_transcription` webhook's `data` is
//! the conversation as the GET answers it. (ElevenLabs API reference: List
//! conversations, Get conversation details; "Post-call webhooks".)

use std::sync::Arc;

use async_trait::async_trait;
use callsync_shared::Source;
use callsync_shared::sources::elevenlabs::FINAL_EVENT;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::http::Auth;
use super::{Api, Listed, Page, Platform, PlatformClient, PlatformError, Window};

pub(super) const API: Api = Api {
    source: Source::Elevenlabs,
    default_url: "https://api.elevenlabs.io",
    auth: Auth::Header("xi-api-key"),
    max_page_size: 100,
    build: |client| Arc::new(ElevenLabs { client }),
};

#[derive(Debug)]
struct ElevenLabs {
    client: PlatformClient,
}

#[async_trait]
impl Platform for ElevenLabs {
    fn source(&self) -> Source {
        Source::Elevenlabs
    }

    async fn page(&self, window: &Window, cursor: Option<&str>) -> Result<Page, PlatformError> {
        // Whole seconds, a second wider on each side: whether the bounds
        // are inclusive is not documented, and a call listed twice is
        // counted once while a call left out is missed.
        let mut query = vec![
            (
                "call_start_after_unix",
                (window.start.unix_timestamp() - 1).to_string(),
            ),
            (
                "call_start_before_unix",
                (window.end.unix_timestamp() + 1).to_string(),
            ),
            ("page_size", self.client.page_size().to_string()),
        ];
        if let Some(cursor) = cursor {
            query.push(("cursor", cursor.to_owned()));
        }
        let body = self
            .client
            .list("list_conversations", || {
                self.client.get("/v1/convai/conversations").query(&query)
            })
            .await?;
        let Some(items) = body.get("conversations").and_then(Value::as_array) else {
            return Err(self
                .client
                .unexpected("the list answered no `conversations`"));
        };
        let calls = items
            .iter()
            .filter(|item| status(item) != Some("failed"))
            .cloned()
            .filter_map(listed)
            .collect();
        let next = super::cursor_after(&body, "next_cursor", "ElevenLabs")?;
        Ok(Page { calls, next })
    }

    async fn report(&self, call: &Listed) -> Result<Option<Vec<u8>>, PlatformError> {
        let path = format!("/v1/convai/conversations/{}", call.call_id);
        let conversation = self.client.fetch("get_conversation", &path).await?;
        Ok(conversation.filter(done).map(transcription))
    }
}

fn status(item: &Value) -> Option<&str> {
    item.get("status").and_then(Value::as_str)
}

fn done(item: &Value) -> bool {
    status(item) == Some("done")
}

fn listed(item: Value) -> Option<Listed> {
    let start = item.get("start_time_unix_secs").and_then(Value::as_i64);
    let duration = item.get("call_duration_secs").and_then(Value::as_i64);
    Some(Listed {
        call_id: item.get("conversation_id")?.as_str()?.to_owned(),
        finished: done(&item),
        ended_at: start.zip(duration).and_then(|(start, duration)| {
            OffsetDateTime::from_unix_timestamp(start + duration).ok()
        }),
        item,
    })
}

/// The `post_call_transcription` webhook for `conversation`.
fn transcription(conversation: Value) -> Vec<u8> {
    json!({
        "type": FINAL_EVENT,
        "event_timestamp": OffsetDateTime::now_utc().unix_timestamp(),
        "data": conversation,
    })
    .to_string()
    .into_bytes()
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn a_fetched_conversation_makes_a_report_the_elevenlabs_parser_reads() {
        let conversation = json!({
            "conversation_id": "conv_01",
            "status": "done",
            "transcript": [{"role": "agent", "message": "Hi", "time_in_call_secs": 0}],
            "metadata": {
                "start_time_unix_secs": 1_754_042_500,
                "call_duration_secs": 190,
                "phone_call": {"type": "twilio", "direction": "inbound",
                               "external_number": "+14155550123", "agent_number": "+14155550999"}
            },
            "analysis": {"call_successful": "success", "transcript_summary": "Booked Tuesday.",
                         "data_collection_results": {"follow_up_needed": {"value": true}}}
        });
        let body = transcription(conversation);
        let report = super::super::read_back(Source::Elevenlabs, &body);
        assert_eq!(report.call_id.as_str(), "conv_01");
        assert_eq!(report.summary.as_deref(), Some("Booked Tuesday."));
        assert!(report.follow_up_needed);
        assert_eq!(report.ended_at.unix_timestamp(), 1_754_042_690);
    }

    #[test]
    fn only_a_done_conversation_is_finished_and_it_ended_after_its_duration() {
        let done = listed(json!({"conversation_id": "c", "status": "done",
                                 "start_time_unix_secs": 100, "call_duration_secs": 20}))
        .unwrap();
        assert!(done.finished);
        assert_eq!(done.ended_at.unwrap().unix_timestamp(), 120);
        let processing = listed(json!({"conversation_id": "c", "status": "processing"})).unwrap();
        assert!(!processing.finished);
    }
}
