//! Vapi: `GET /call` with a `createdAt` window (Bearer private key).
//!
//! The list holds whole calls (`analysis`, `artifact`), so no call is
//! fetched again. Vapi documents no cursor and no order, only `limit`
//! (at most 1000) and `createdAtGe`/`createdAtLt`: a window that fills a
//! page is split in two and each half listed, until every window fits in
//! one page. The cursor is the stack of windows still to list.
//!
//! Vapi sends its `end-of-call-report` once the call's analysis is done,
//! and the call has no flag saying so: an ended call counts as finished
//! once its `analysis` is filled in, or [`ANALYSIS_WAIT`] after it ended
//! (an assistant without an analysis plan never gets one).
//! (Vapi API reference, `GET /call`, operation `CallController_findAll`.)
//!
//! A listed call names the number it was on by `phoneNumberId` alone
//! (`Call.phoneNumber` is only for a transient number), while the webhook's
//! server message carries the number. So that a reconciled report names our
//! number too (HubSpot's `hs_call_to_number`), it is read from
//! `GET /phone-number/{id}` (`PhoneNumberController_findOne`, Bearer; its
//! `number`), once per id for the life of the worker: an organisation has a
//! handful of numbers and their ids never change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use callsync_shared::Source;
use callsync_shared::sources::vapi::FINAL_EVENT;
use callsync_shared::time::unix_ms;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::http::Auth;
use super::{Api, Listed, Page, Platform, PlatformClient, PlatformError, Window};

pub(super) const API: Api = Api {
    source: Source::Vapi,
    default_url: "https://api.vapi.ai",
    auth: Auth::Bearer,
    max_page_size: 1000,
    build: |client| {
        Arc::new(Vapi {
            client,
            numbers: Mutex::default(),
        })
    },
};

/// How long after its end an ended call without an analysis is taken to
/// have none coming.
pub const ANALYSIS_WAIT: std::time::Duration = std::time::Duration::from_secs(10 * 60);

#[derive(Debug)]
struct Vapi {
    client: PlatformClient,
    /// Our number by its `phoneNumberId`; `None` for an id Vapi does not
    /// hold (404) or a number without digits (a SIP-only one).
    numbers: Mutex<HashMap<String, Option<String>>>,
}

impl Vapi {
    /// The number with id `id`, from the cache or Vapi.
    async fn number(&self, id: &str) -> Result<Option<String>, PlatformError> {
        if let Some(known) = self.cached(id) {
            return Ok(known);
        }
        // A UUID (the path parameter's format): nothing else goes into the path.
        if uuid::Uuid::try_parse(id).is_err() {
            return Ok(None);
        }
        let resource = self
            .client
            .fetch("get_phone_number", &format!("/phone-number/{id}"))
            .await?;
        let number = resource
            .as_ref()
            .and_then(|r| r.get("number"))
            .and_then(Value::as_str)
            .filter(|n| !n.trim().is_empty())
            .map(str::to_owned);
        if number.is_none() {
            tracing::warn!(
                phone_number_id = id,
                "Vapi has no number for this phoneNumberId; reconciled calls on it name no number of ours"
            );
        }
        self.numbers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id.to_owned(), number.clone());
        Ok(number)
    }

    fn cached(&self, id: &str) -> Option<Option<String>> {
        self.numbers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    /// `call` with `phoneNumber.number` filled in from its `phoneNumberId`
    /// when it lacks one.
    async fn with_number(&self, call: &Value) -> Result<Value, PlatformError> {
        let has_number = call
            .pointer("/phoneNumber/number")
            .and_then(Value::as_str)
            .is_some();
        let id = call.get("phoneNumberId").and_then(Value::as_str);
        let (false, Some(id)) = (has_number, id) else {
            return Ok(call.clone());
        };
        let mut call = call.clone();
        if let Some(number) = self.number(id).await? {
            call["phoneNumber"] = json!({ "id": id, "number": number });
        }
        Ok(call)
    }
}

/// A window in Unix milliseconds, `[start, end)`.
type Span = (i64, i64);

#[async_trait]
impl Platform for Vapi {
    fn source(&self) -> Source {
        Source::Vapi
    }

    async fn page(&self, window: &Window, cursor: Option<&str>) -> Result<Page, PlatformError> {
        let mut spans: Vec<Span> = match cursor {
            None => vec![(unix_ms(window.start), unix_ms(window.end))],
            Some(cursor) => serde_json::from_str(cursor).map_err(|e| {
                self.client
                    .unexpected(format!("unreadable checkpoint {cursor:?}: {e}"))
            })?,
        };
        let Some((start, end)) = spans.pop() else {
            return Ok(Page::default());
        };
        let limit = self.client.page_size();
        let query = [
            ("createdAtGe", super::iso_millis(start)),
            ("createdAtLt", super::iso_millis(end)),
            ("limit", limit.to_string()),
        ];
        let body = self
            .client
            .list("list_calls", || self.client.get("/call").query(&query))
            .await?;
        let Value::Array(items) = body else {
            return Err(self.client.unexpected("GET /call did not answer a list"));
        };
        let now = OffsetDateTime::now_utc();
        let calls = if items.len() < limit as usize {
            items
                .into_iter()
                .filter_map(|item| listed(item, now))
                .collect()
        } else if end - start > 1 {
            // The window may hold more calls than the page showed: list its
            // halves instead (the older one first).
            let middle = start + (end - start) / 2;
            spans.push((middle, end));
            spans.push((start, middle));
            Vec::new()
        } else {
            return Err(self.client.unexpected(format!(
                "more than {limit} calls created in one millisecond; raise CALLSYNC_RECONCILE_PAGE_SIZE"
            )));
        };
        let next = if spans.is_empty() {
            None
        } else {
            Some(json!(spans).to_string())
        };
        Ok(Page { calls, next })
    }

    async fn report(&self, call: &Listed) -> Result<Option<Vec<u8>>, PlatformError> {
        let call = self.with_number(&call.item).await?;
        Ok(Some(end_of_call_report(&call)))
    }
}

fn listed(item: Value, now: OffsetDateTime) -> Option<Listed> {
    let call_id = item.get("id")?.as_str()?.to_owned();
    let ended = item.get("status").and_then(Value::as_str) == Some("ended");
    let ended_at = item.get("endedAt").and_then(super::rfc3339);
    let analysed = item
        .get("analysis")
        .and_then(Value::as_object)
        .is_some_and(|analysis| !analysis.is_empty());
    let waited = ended_at.is_some_and(|at| at + ANALYSIS_WAIT <= now);
    Some(Listed {
        call_id,
        finished: ended && (analysed || waited),
        ended_at,
        item,
    })
}

/// The `end-of-call-report` server message Vapi sends for `call`: the
/// message repeats the call's customer, number, times, analysis and
/// artifact at its top level.
fn end_of_call_report(call: &Value) -> Vec<u8> {
    let mut message = Map::new();
    message.insert("type".to_owned(), json!(FINAL_EVENT));
    message.insert(
        "timestamp".to_owned(),
        json!(unix_ms(OffsetDateTime::now_utc())),
    );
    for key in [
        "customer",
        "phoneNumber",
        "startedAt",
        "endedAt",
        "endedReason",
        "analysis",
        "artifact",
        "assistant",
    ] {
        if let Some(value) = call.get(key) {
            message.insert(key.to_owned(), value.clone());
        }
    }
    message.insert("call".to_owned(), call.clone());
    json!({ "message": message }).to_string().into_bytes()
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn a_listed_call_makes_a_report_the_vapi_parser_reads() {
        let call = json!({
            "id": "call-1",
            "status": "ended",
            "customer": {"number": "+14155550123", "name": "Ada"},
            "phoneNumber": {"number": "+14155550999"},
            "startedAt": "2026-08-01T10:00:02.000Z",
            "endedAt": "2026-08-01T10:03:58.000Z",
            "analysis": {"summary": "Booked a cleaning.", "structuredData": {"follow_up_needed": true}},
            "artifact": {"transcript": "AI: Hi\nUser: Hello"}
        });
        let listed = listed(call.clone(), OffsetDateTime::now_utc()).unwrap();
        assert!(listed.finished);
        let body = end_of_call_report(&listed.item);
        let report = super::super::read_back(Source::Vapi, &body);
        assert_eq!(report.call_id.as_str(), "call-1");
        assert_eq!(report.summary.as_deref(), Some("Booked a cleaning."));
        assert!(report.follow_up_needed);
        assert_eq!(report.called_number.as_deref(), Some("+14155550999"));
        assert_eq!(report.duration, Some(std::time::Duration::from_secs(236)));
        assert!(!report.ended_at_is_receipt_time);
    }

    #[test]
    fn a_call_in_progress_is_not_finished() {
        let now = OffsetDateTime::now_utc();
        let call = listed(json!({"id": "call-2", "status": "in-progress"}), now).unwrap();
        assert!(!call.finished);
        assert!(
            listed(json!({"status": "ended"}), now).is_none(),
            "no id, no call"
        );
    }

    #[test]
    fn an_ended_call_waits_for_its_analysis_until_none_is_coming() {
        let ended_at = time::macros::datetime!(2026-08-01 10:00 UTC);
        let call = json!({"id": "c", "status": "ended", "endedAt": "2026-08-01T10:00:00.000Z"});
        assert!(
            !listed(call.clone(), ended_at + ANALYSIS_WAIT / 2)
                .unwrap()
                .finished
        );
        assert!(
            listed(call.clone(), ended_at + ANALYSIS_WAIT)
                .unwrap()
                .finished
        );
        let mut analysed = call;
        analysed["analysis"] = json!({"summary": "Booked."});
        assert!(listed(analysed, ended_at).unwrap().finished);
    }
}
