//! Retell: `POST /v3/list-calls` with a `start_timestamp` range and the
//! `pagination_key` cursor, then `GET /v2/get-call/{call_id}` for each call
//! to queue, because v3 list items carry no transcript (Bearer API key).
//!
//! A call is finished when its `call_status` is `ended`, `error` or
//! `not_connected` and its `call_analysis` is present: Retell sends
//! `call_analyzed`, the event callsync syncs, only then. (Retell API
//! reference: List Calls v3, Get Call; "webhook overview".)

use std::sync::Arc;

use async_trait::async_trait;
use callsync_shared::Source;
use callsync_shared::sources::retell::FINAL_EVENT;
use callsync_shared::time::unix_ms;
use serde_json::{Value, json};

use super::http::Auth;
use super::{Api, Listed, Page, Platform, PlatformClient, PlatformError, Window};

pub(super) const API: Api = Api {
    source: Source::Retell,
    default_url: "https://api.retellai.com",
    auth: Auth::Bearer,
    max_page_size: 1000,
    build: |client| Arc::new(Retell { client }),
};

/// The statuses after which a call does not change, but for its analysis.
const OVER: [&str; 3] = ["ended", "error", "not_connected"];

#[derive(Debug)]
struct Retell {
    client: PlatformClient,
}

#[async_trait]
impl Platform for Retell {
    fn source(&self) -> Source {
        Source::Retell
    }

    async fn page(&self, window: &Window, cursor: Option<&str>) -> Result<Page, PlatformError> {
        let mut request = json!({
            "filter_criteria": {
                "start_timestamp": {
                    "op": "bt",
                    "type": "range",
                    "value": [unix_ms(window.start), unix_ms(window.end)],
                },
            },
            "sort_order": "ascending",
            "limit": self.client.page_size(),
        });
        if let Some(cursor) = cursor {
            request["pagination_key"] = json!(cursor);
        }
        let body = self
            .client
            .list("list_calls", || {
                self.client.post("/v3/list-calls").json(&request)
            })
            .await?;
        let Some(items) = body.get("items").and_then(Value::as_array) else {
            return Err(self
                .client
                .unexpected("list-calls answered no `items` list"));
        };
        let calls = items.iter().cloned().filter_map(listed).collect();
        let next = super::cursor_after(&body, "pagination_key", "Retell AI")?;
        Ok(Page { calls, next })
    }

    async fn report(&self, call: &Listed) -> Result<Option<Vec<u8>>, PlatformError> {
        let path = format!("/v2/get-call/{}", call.call_id);
        let call = self.client.fetch("get_call", &path).await?;
        Ok(call.filter(analysed).map(call_analyzed))
    }
}

fn analysed(call: &Value) -> bool {
    let over = call
        .get("call_status")
        .and_then(Value::as_str)
        .is_some_and(|status| OVER.contains(&status));
    over && call.get("call_analysis").is_some_and(Value::is_object)
}

fn listed(item: Value) -> Option<Listed> {
    Some(Listed {
        call_id: item.get("call_id")?.as_str()?.to_owned(),
        finished: analysed(&item),
        ended_at: item.get("end_timestamp").and_then(super::from_millis),
        item,
    })
}

/// The `call_analyzed` webhook: `{"event", "call"}`, whose call is the
/// object get-call answers (Retell: "the same content you would receive
/// when you fetch the call details").
fn call_analyzed(call: Value) -> Vec<u8> {
    json!({ "event": FINAL_EVENT, "call": call })
        .to_string()
        .into_bytes()
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn a_fetched_call_makes_a_report_the_retell_parser_reads() {
        let call = json!({
            "call_id": "call_5a8",
            "call_status": "ended",
            "direction": "inbound",
            "from_number": "+14155550123",
            "to_number": "+14155550999",
            "start_timestamp": 1_754_042_500_000_i64,
            "end_timestamp": 1_754_042_690_000_i64,
            "transcript": "Agent: Hi\nUser: Hello",
            "call_analysis": {"call_summary": "Booked Tuesday.", "custom_analysis_data": {"follow_up_needed": true}}
        });
        assert!(listed(call.clone()).unwrap().finished);
        let body = call_analyzed(call);
        let report = super::super::read_back(Source::Retell, &body);
        assert_eq!(report.call_id.as_str(), "call_5a8");
        assert_eq!(report.summary.as_deref(), Some("Booked Tuesday."));
        assert!(report.follow_up_needed);
        assert_eq!(
            report.caller.phone.unwrap().e164.as_deref(),
            Some("+14155550123")
        );
    }

    #[test]
    fn an_ended_call_without_its_analysis_is_not_finished() {
        let ended = json!({"call_id": "c", "call_status": "ended"});
        assert!(!listed(ended).unwrap().finished);
        let ongoing = json!({"call_id": "c", "call_status": "ongoing", "call_analysis": {}});
        assert!(!listed(ongoing).unwrap().finished);
    }
}
