//! Bland: `GET /v1/calls`, newest first, paged by index (`from`, `to`),
//! then `GET /v1/calls/{call_id}` for each call to queue: list rows hold no
//! summary, analysis or transcript (`authorization: <key>`, no "Bearer").
//!
//! Bland documents no time filter on the list, only its order (by
//! `created_at`, newest first unless `ascending`), so the walk starts at
//! the newest call and stops at the first page reaching past the window's
//! start. Calls created while it walks push the older ones down by as many
//! places: a call may then be listed twice (and counted once), never
//! skipped. A call is finished when `completed` is true (Bland: "the most
//! up-to-date status"); its webhook body is the call object. (Bland API
//! reference: List Calls, Call Details; "post-call webhooks".)

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use callsync_shared::Source;
use serde_json::Value;
use time::OffsetDateTime;

use super::http::Auth;
use super::{Api, Listed, Page, Platform, PlatformClient, PlatformError, Window};

pub(super) const API: Api = Api {
    source: Source::Bland,
    default_url: "https://api.bland.ai",
    auth: Auth::Header("authorization"),
    max_page_size: 1000,
    build: |client| Arc::new(Bland { client }),
};

#[derive(Debug)]
struct Bland {
    client: PlatformClient,
}

#[async_trait]
impl Platform for Bland {
    fn source(&self) -> Source {
        Source::Bland
    }

    async fn page(&self, window: &Window, cursor: Option<&str>) -> Result<Page, PlatformError> {
        let from: u64 = match cursor {
            None => 0,
            Some(cursor) => cursor.parse().map_err(|_| {
                self.client
                    .unexpected(format!("unreadable checkpoint {cursor:?}"))
            })?,
        };
        let size = u64::from(self.client.page_size());
        let query = [
            ("from", from.to_string()),
            ("to", (from + size).to_string()),
            ("limit", size.to_string()),
            ("ascending", "false".to_owned()),
        ];
        let body = self
            .client
            .list("list_calls", || self.client.get("/v1/calls").query(&query))
            .await?;
        let Some(items) = body.get("calls").and_then(Value::as_array) else {
            return Err(self.client.unexpected("the list answered no `calls`"));
        };
        let created = |item: &Value| item.get("created_at").and_then(super::rfc3339);
        let past_the_start = items
            .iter()
            .any(|item| created(item).is_some_and(|at| at < window.start));
        let calls = items
            .iter()
            .filter(|item| created(item).is_some_and(|at| window.start <= at && at < window.end))
            .cloned()
            .filter_map(listed)
            .collect();
        let last = (items.len() as u64) < size || past_the_start;
        Ok(Page {
            calls,
            next: (!last).then(|| (from + size).to_string()),
        })
    }

    async fn report(&self, call: &Listed) -> Result<Option<Vec<u8>>, PlatformError> {
        let path = format!("/v1/calls/{}", call.call_id);
        let details = self.client.fetch("get_call", &path).await?;
        Ok(details
            .filter(completed)
            .map(|details| details.to_string().into_bytes()))
    }
}

fn completed(item: &Value) -> bool {
    item.get("completed").and_then(Value::as_bool) == Some(true)
}

fn listed(item: Value) -> Option<Listed> {
    let created = item.get("created_at").and_then(super::rfc3339);
    // `call_length` is in minutes; the list has no end time.
    let length = item
        .get("call_length")
        .and_then(Value::as_f64)
        .filter(|m| m.is_finite() && *m >= 0.0)
        .map(|minutes| Duration::from_secs_f64(minutes * 60.0));
    Some(Listed {
        call_id: item.get("call_id")?.as_str()?.to_owned(),
        finished: completed(&item),
        ended_at: created.map(|at: OffsetDateTime| at + length.unwrap_or_default()),
        item,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn call_details_are_the_report_the_bland_parser_reads() {
        let details = json!({
            "call_id": "c1234567",
            "completed": true,
            "inbound": true,
            "from": "+14155550123",
            "to": "+14155550999",
            "created_at": "2026-08-01T10:00:00.801193+00:00",
            "started_at": "2026-08-01T10:00:01Z",
            "call_length": 3.0,
            "summary": "Booked Tuesday.",
            "variables": {"follow_up_needed": true},
            "concatenated_transcript": "user: hello\nassistant: hi"
        });
        let body = serde_json::to_vec(&details).unwrap();
        let report = super::super::read_back(Source::Bland, &body);
        assert_eq!(report.call_id.as_str(), "c1234567");
        assert_eq!(report.summary.as_deref(), Some("Booked Tuesday."));
        assert!(report.follow_up_needed);
        assert_eq!(report.duration, Some(Duration::from_secs(180)));
    }

    #[test]
    fn a_listed_call_ends_its_length_after_its_creation() {
        let call = listed(json!({"call_id": "c", "completed": true,
                                 "created_at": "2026-08-01T10:00:00Z", "call_length": 2.5}))
        .unwrap();
        assert!(call.finished);
        assert_eq!(
            call.ended_at.unwrap(),
            time::macros::datetime!(2026-08-01 10:02:30 UTC)
        );
        assert!(
            !listed(json!({"call_id": "c", "completed": false}))
                .unwrap()
                .finished
        );
    }
}
