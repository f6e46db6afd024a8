//! The HTTP plumbing every CRM adapter shares: one client with timeouts,
//! request metrics, and the classification of failures into [`CrmError`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

use super::limiter::RequestKind;
use super::{Applied, Budgets, CrmError, CrmHealth, Shared};

/// How long to pause after a 429 that came without `Retry-After` (HubSpot
/// sends none; its window is ten seconds rolling).
const DEFAULT_RATE_LIMIT_PAUSE: Duration = Duration::from_secs(2);

/// What a request does, for metrics and for the budgets it draws on. A
/// plain name is a general request; searches say so with
/// [`Operation::search`], because they also draw on the search budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation {
    name: &'static str,
    kind: RequestKind,
}

impl Operation {
    /// A search request (contact search, marker search).
    pub const fn search(name: &'static str) -> Self {
        Self {
            name,
            kind: RequestKind::Search,
        }
    }

    pub const fn name(&self) -> &'static str {
        self.name
    }

    pub const fn kind(&self) -> RequestKind {
        self.kind
    }
}

impl From<&'static str> for Operation {
    fn from(name: &'static str) -> Self {
        Self {
            name,
            kind: RequestKind::General,
        }
    }
}

/// A CRM's HTTP client. Cloning shares the connection pool.
#[derive(Debug, Clone)]
pub struct CrmHttp {
    client: reqwest::Client,
    crm: &'static str,
    budgets: Arc<Budgets>,
    health: Arc<CrmHealth>,
}

impl CrmHttp {
    pub fn new(
        crm: &'static str,
        timeout: Duration,
        shared: Shared,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("callsync/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            crm,
            budgets: shared.budgets,
            health: shared.health,
        })
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Pauses this worker's requests after a rate-limit answer that is not a
    /// 429 (Salesforce answers 403 `REQUEST_LIMIT_EXCEEDED`).
    pub fn pause_for_rate_limit(&self, retry_after: Option<Duration>) {
        metrics::counter!("callsync_worker_crm_rate_limited_total", "crm" => self.crm).increment(1);
        self.budgets
            .pause(retry_after.unwrap_or(DEFAULT_RATE_LIMIT_PAUSE));
    }

    /// Sends a request and returns the response if its status is 2xx or one
    /// of `accept` (e.g. 404 for an existence check); classifies the rest.
    pub async fn send(
        &self,
        operation: impl Into<Operation>,
        request: RequestBuilder,
        accept: &[StatusCode],
    ) -> Result<Response, CrmError> {
        let operation = operation.into();
        let acquire = self.budgets.acquire(operation.kind());
        match super::SEND_DEADLINE.try_with(|deadline| *deadline) {
            Ok(deadline) => {
                if tokio::time::timeout_at(deadline, acquire).await.is_err() {
                    return Err(CrmError::Unavailable {
                        detail: "the rate-limit wait would outlast the lease; not sent".to_owned(),
                        applied: Applied::No,
                    });
                }
            }
            Err(_) => acquire.await,
        }
        let started = Instant::now();
        let result = request.send().await;
        let status_label = match &result {
            Ok(r) => r.status().as_str().to_owned(),
            Err(e) if e.is_timeout() => "timeout".to_owned(),
            Err(_) => "error".to_owned(),
        };
        metrics::histogram!(
            "callsync_worker_crm_request_seconds",
            "crm" => self.crm,
            "operation" => operation.name(),
            "status" => status_label
        )
        .record(started.elapsed().as_secs_f64());

        let response = result.map_err(|error| {
            self.health.failed();
            classify_transport(error)
        })?;
        let status = response.status();
        if status.is_server_error() {
            self.health.failed();
        } else {
            self.health.answered();
        }
        if status.is_success() || accept.contains(&status) {
            return Ok(response);
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            metrics::counter!("callsync_worker_crm_rate_limited_total", "crm" => self.crm)
                .increment(1);
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            // Pipedrive sends the seconds until its window resets instead.
            let retry_after = header("retry-after")
                .or_else(|| header("x-ratelimit-reset"))
                .and_then(|v| parse_retry_after(&v, OffsetDateTime::now_utc()));
            // Every request of this worker waits, not only this message's.
            self.budgets
                .pause(retry_after.unwrap_or(DEFAULT_RATE_LIMIT_PAUSE));
            return Err(CrmError::RateLimited { retry_after });
        }
        let body = response.text().await.unwrap_or_default();
        let credential_wide = refuses_the_credential(&body);
        let detail = excerpt(body);
        Err(match status.as_u16() {
            401 => CrmError::Unauthorized {
                status: 401,
                detail,
            },
            403 if credential_wide => CrmError::Unauthorized {
                status: 403,
                detail,
            },
            403 => CrmError::Forbidden { detail },
            // A 5xx may come after the CRM applied the request (a crash while
            // answering), so its outcome is unknown; so may a 408.
            408 | 500..=599 => CrmError::Unavailable {
                detail: format!("{status}: {detail}"),
                applied: Applied::Unknown,
            },
            code => CrmError::Rejected {
                status: code,
                detail,
            },
        })
    }

    /// Whether a record exists: a 2xx says yes, any status in `absent`
    /// (404, and whatever else the CRM answers for an unknown id) says no.
    pub async fn exists(
        &self,
        operation: impl Into<Operation>,
        request: RequestBuilder,
        absent: &[StatusCode],
    ) -> Result<bool, CrmError> {
        let response = self.send(operation, request, absent).await?;
        Ok(response.status().is_success())
    }

    /// [`CrmHttp::send`] and decode the JSON body.
    pub async fn json<T: DeserializeOwned>(
        &self,
        operation: impl Into<Operation>,
        request: RequestBuilder,
    ) -> Result<T, CrmError> {
        let response = self.send(operation, request, &[]).await?;
        decode(response).await
    }
}

/// Whether a 403 refuses the credential itself rather than one record: the
/// vendors' words for a token that lacks a scope or an API that is off for
/// the whole account. Every call would get the same answer, so the worker
/// pauses instead of parking them one by one.
/// - HubSpot: `"category": "MISSING_SCOPES"` with the scopes required
///   (developers.hubspot.com, error handling).
/// - Salesforce: `API_DISABLED_FOR_ORG`, `API_CURRENTLY_DISABLED` (the user
///   or the org has no API access; REST API developer guide, status codes).
/// - Pipedrive OAuth apps: "Scope and URL mismatch" (a scope not granted).
///
/// Any other 403 (a record the user may not see or edit) concerns one call.
fn refuses_the_credential(body: &str) -> bool {
    const MARKERS: [&str; 4] = [
        "MISSING_SCOPES",
        "API_DISABLED_FOR_ORG",
        "API_CURRENTLY_DISABLED",
        "Scope and URL mismatch",
    ];
    MARKERS.iter().any(|marker| body.contains(marker))
}

/// Decodes a JSON body; a body that does not match is an invalid response.
pub async fn decode<T: DeserializeOwned>(response: Response) -> Result<T, CrmError> {
    let bytes = response.bytes().await.map_err(classify_transport)?;
    serde_json::from_slice(&bytes).map_err(|e| {
        CrmError::InvalidResponse(format!(
            "{e}; body: {}",
            excerpt(String::from_utf8_lossy(&bytes).into_owned())
        ))
    })
}

pub(super) fn classify_transport(error: reqwest::Error) -> CrmError {
    // A connect error means nothing was sent; anything later (timeout, reset,
    // truncated body) may have reached the CRM and been applied.
    let applied = if error.is_connect() {
        Applied::No
    } else {
        Applied::Unknown
    };
    CrmError::Unavailable {
        detail: without_url(&error),
        applied,
    }
}

/// reqwest's error text includes the URL, which may carry a token as a
/// query parameter (Pipedrive's `api_token`): keep only the error chain.
fn without_url(error: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = if error.is_timeout() {
        "request timed out".to_owned()
    } else if error.is_connect() {
        "connection failed".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The start of an error body, for a log line or an error message.
pub(crate) fn excerpt(mut text: String) -> String {
    const MAX: usize = 300;
    if text.len() > MAX {
        let mut cut = MAX;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// `Retry-After` is either delay-seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str, now: OffsetDateTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = OffsetDateTime::parse(value, &Rfc2822).ok()?;
    Some(Duration::try_from(at - now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn retry_after_accepts_seconds() {
        let now = datetime!(2026-01-01 00:00:00 UTC);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
    }

    #[test]
    fn retry_after_accepts_an_http_date() {
        let now = datetime!(2015-10-21 07:27:50 UTC);
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(10))
        );
        // A date in the past means "now".
        let later = datetime!(2015-10-21 08:00:00 UTC);
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", later),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_would_wait_past_its_deadline_is_not_sent() {
        let budgets = Arc::new(Budgets::unlimited());
        budgets.pause(Duration::from_secs(60));
        let shared = Shared {
            budgets,
            health: Arc::new(CrmHealth::new(Duration::from_secs(60))),
            ledger: None,
        };
        let http = CrmHttp::new("test", Duration::from_secs(1), shared).unwrap();
        // Nothing listens on the discard port: a sent request would fail to
        // connect, not time out at the deadline.
        let request = http.client().get("http://127.0.0.1:9/");
        let deadline = tokio::time::Instant::now() + Duration::from_millis(100);
        let result = super::super::SEND_DEADLINE
            .scope(deadline, http.send("probe", request, &[]))
            .await;
        match result {
            Err(CrmError::Unavailable { applied, detail }) => {
                assert_eq!(applied, Applied::No);
                assert!(detail.contains("outlast the lease"), "{detail}");
            }
            other => panic!("expected an unsent request, got {other:?}"),
        }
    }

    #[test]
    fn a_403_naming_a_missing_scope_refuses_the_credential_and_others_one_record() {
        let hubspot = r#"{"status":"error","message":"This app hasn't been granted all required scopes to make this call.","category":"MISSING_SCOPES","errors":[{"message":"One or more of the following scopes are required.","context":{"requiredGranularScopes":["crm.objects.contacts.write"]}}]}"#;
        assert!(refuses_the_credential(hubspot));
        assert!(refuses_the_credential(
            r#"[{"errorCode":"API_DISABLED_FOR_ORG","message":"API is not enabled for this Organization or Partner"}]"#
        ));
        assert!(!refuses_the_credential(
            r#"[{"errorCode":"INSUFFICIENT_ACCESS_OR_READONLY","message":"insufficient access rights on object id"}]"#
        ));
        assert!(!refuses_the_credential(
            r#"{"success":false,"error":"You do not have permission to access this item"}"#
        ));
    }

    #[test]
    fn long_error_bodies_are_cut_on_a_character_boundary() {
        let text = "é".repeat(400);
        let cut = excerpt(text);
        assert!(cut.ends_with('…'));
        assert!(cut.len() <= 303);
    }
}
