//! The HTTP plumbing every CRM adapter shares: one client with timeouts,
//! request budgets and metrics, the access token where the CRM wants one
//! renewed (see `oauth.rs`), and the classification of every failure into
//! [`CrmError`].
//!
//! A request is sent in steps, each its own function: wait for the budget
//! (`wait_for_budget`), exchange it with the CRM and record how that went
//! (`exchange`), and for an answer that is not accepted, read its whole body
//! and `classify` it. Classification is pure; what a vendor says only in its
//! 403 bodies (Salesforce's API limit, HubSpot's missing scopes) comes from
//! the vendor's [`ReadRefusal`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

use super::limiter::RequestKind;
use super::oauth::{Credentials, TokenSource};
use super::{Applied, Budgets, CrmError, CrmHealth, CrmSpec, Shared};

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

    /// A general request (what a plain name converts to), in a constant.
    pub const fn general(name: &'static str) -> Self {
        Self {
            name,
            kind: RequestKind::General,
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

/// What a vendor's 403 says beyond "not this record".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The account's API limit is spent (Salesforce answers 403
    /// `REQUEST_LIMIT_EXCEEDED` where others answer 429).
    RateLimited,
    /// The credential itself is refused: a missing scope, or API access
    /// off for the whole account. Every call would get the same answer, so
    /// the worker pauses instead of parking them one by one.
    Credential,
    /// The set-up is incomplete: a scope the accepted credential lacks
    /// (GoHighLevel's 401 "not authorized for this scope"), a custom field
    /// that does not exist (Salesforce's 400 `INVALID_FIELD`). Read from
    /// any 4xx but a 429; every call would get it, so the worker pauses.
    Setup,
}

/// Reads a vendor's whole 4xx body (never an excerpt, which could cut its
/// code off) for a [`Refusal`]; `None` is a refusal of this request alone
/// (for a 403: of one record).
pub type ReadRefusal = fn(&str) -> Option<Refusal>;

/// For a CRM whose 403s all concern one record.
pub fn no_refusal(_body: &str) -> Option<Refusal> {
    None
}

/// A CRM's HTTP client. Cloning shares the connection pool and the token.
#[derive(Debug, Clone)]
pub struct CrmHttp {
    client: reqwest::Client,
    crm: &'static str,
    read_refusal: ReadRefusal,
    budgets: Arc<Budgets>,
    health: Arc<CrmHealth>,
    /// The access token every request carries, when it is renewable or
    /// fetched by the worker (absent: the adapter authenticates itself).
    tokens: Option<Arc<TokenSource>>,
}

impl CrmHttp {
    /// A client for `spec`'s CRM whose requests draw on `shared`.
    pub fn new(
        spec: &'static CrmSpec,
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
            crm: spec.name,
            read_refusal: spec.read_refusal,
            budgets: shared.budgets,
            health: shared.health,
            tokens: None,
        })
    }

    /// Every request carries an access token from `credentials`, renewed
    /// on a 401. Where the token endpoint rotates refresh tokens
    /// (GoHighLevel always, Salesforce when the connected app says so), the
    /// newest is kept in `shared`'s ledger.
    #[must_use]
    pub fn authorized(mut self, credentials: &Credentials, shared: &Shared) -> Self {
        let tokens = TokenSource::new(credentials.token.clone(), credentials.oauth.clone())
            .rotating_in(shared.refresh_tokens(self.crm));
        self.tokens = Some(Arc::new(tokens));
        self
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Fetches the first access token now, when the worker fetches its
    /// own, so that wrong client credentials show before the first call.
    pub async fn authenticate(&self) -> Result<(), CrmError> {
        match &self.tokens {
            Some(tokens) => tokens.current(&self.client).await.map(drop),
            None => Ok(()),
        }
    }

    /// The access token requests carry now (fetched if there is none yet),
    /// for a vendor endpoint that describes a token named in its path.
    pub async fn access_token(&self) -> Result<Option<callsync_shared::config::Secret>, CrmError> {
        match &self.tokens {
            Some(tokens) => Ok(Some(tokens.current(&self.client).await?.secret)),
            None => Ok(None),
        }
    }

    /// Pauses every request of this worker after a rate-limit answer.
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
        match &self.tokens {
            Some(tokens) => tokens.send(self, operation, request, accept).await,
            None => self.send_once(operation, request, accept).await,
        }
    }

    /// One request, as it is: budget, exchange, classification.
    pub(super) async fn send_once(
        &self,
        operation: Operation,
        request: RequestBuilder,
        accept: &[StatusCode],
    ) -> Result<Response, CrmError> {
        self.wait_for_budget(operation.kind()).await?;
        let response = self.exchange(operation, request).await?;
        let status = response.status();
        if status.is_success() || accept.contains(&status) {
            return Ok(response);
        }
        let headers = response.headers().clone();
        let body = response.text().await.unwrap_or_default();
        let now = OffsetDateTime::now_utc();
        let error = classify(status, &headers, &body, self.read_refusal, now);
        if let CrmError::RateLimited { retry_after } = error {
            // Every request of this worker waits, not only this message's.
            self.pause_for_rate_limit(retry_after);
        }
        Err(error)
    }

    /// Waits for the request's budget, but never past the lease: a wait
    /// that would end after [`SEND_DEADLINE`](super::SEND_DEADLINE) gives up
    /// unsent.
    async fn wait_for_budget(&self, kind: RequestKind) -> Result<(), CrmError> {
        let acquire = self.budgets.acquire(kind);
        let Ok(deadline) = super::SEND_DEADLINE.try_with(|deadline| *deadline) else {
            acquire.await;
            return Ok(());
        };
        tokio::time::timeout_at(deadline, acquire)
            .await
            .map_err(|_| CrmError::Unavailable {
                detail: "the rate-limit wait would outlast the lease; not sent".to_owned(),
                applied: Applied::No,
            })
    }

    /// Sends the request, records its duration and status, and tells the
    /// CRM's health whether the CRM answered.
    async fn exchange(
        &self,
        operation: Operation,
        request: RequestBuilder,
    ) -> Result<Response, CrmError> {
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
        match result {
            Ok(response) if response.status().is_server_error() => {
                self.health.failed();
                Ok(response)
            }
            Ok(response) => {
                self.health.answered();
                Ok(response)
            }
            Err(error) => {
                self.health.failed();
                Err(classify_transport(error))
            }
        }
    }

    /// Sends a request whose answer carries nothing needed: a 2xx is all.
    pub async fn perform(
        &self,
        operation: impl Into<Operation>,
        request: RequestBuilder,
    ) -> Result<(), CrmError> {
        self.send(operation, request, &[]).await.map(drop)
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
        let operation = operation.into();
        let response = self.send(operation, request, &[]).await?;
        self.decode(operation, response).await
    }

    /// Decodes the JSON body of an answer to `operation`. A body of
    /// another shape than the one expected is an invalid response (retried:
    /// see [`CrmError::InvalidResponse`]), counted in
    /// `callsync_worker_crm_unexpected_responses_total` and logged with the
    /// body's shape: its keys and the types of its values, never the values,
    /// which carry callers' personal data.
    pub async fn decode<T: DeserializeOwned>(
        &self,
        operation: impl Into<Operation>,
        response: Response,
    ) -> Result<T, CrmError> {
        decode_from(self.crm, operation.into().name(), response).await
    }
}

async fn decode_from<T: DeserializeOwned>(
    crm: &'static str,
    operation: &'static str,
    response: Response,
) -> Result<T, CrmError> {
    let bytes = response.bytes().await.map_err(classify_transport)?;
    serde_json::from_slice(&bytes).map_err(|error| {
        let shape = shape_of(&bytes);
        metrics::counter!(
            "callsync_worker_crm_unexpected_responses_total",
            "crm" => crm,
            "operation" => operation
        )
        .increment(1);
        tracing::warn!(
            crm,
            operation,
            %shape,
            "the CRM answered in a shape callsync does not expect; the call is retried"
        );
        CrmError::InvalidResponse(format!(
            "{operation} answered a body callsync cannot read ({}); its shape: {shape}",
            unexpected(&error)
        ))
    })
}

/// What kind of mismatch a decoding error is, and where, without the
/// error's own text: serde quotes the offending value ("invalid type:
/// string \"+3161…\""), which may be a caller's phone number.
fn unexpected(error: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let kind = match error.classify() {
        Category::Io => "unreadable",
        Category::Syntax => "not JSON",
        Category::Data => "a value of another type, or a missing key",
        Category::Eof => "cut short",
    };
    format!("{kind} at line {} column {}", error.line(), error.column())
}

/// The shape of a JSON body: its keys and the types of its values, never a
/// value. Arrays show each distinct element shape once. Cut to a few hundred
/// characters; a body that is not JSON is described by its length.
pub(crate) fn shape_of(body: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(value) => excerpt(shape(&value)),
        Err(_) => format!("not JSON ({} bytes)", body.len()),
    }
}

fn shape(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(_) => "bool".to_owned(),
        Value::Number(_) => "number".to_owned(),
        Value::String(_) => "string".to_owned(),
        Value::Array(items) => {
            let mut shapes: Vec<String> = Vec::new();
            for item in items {
                let item = shape(item);
                if !shapes.contains(&item) {
                    shapes.push(item);
                }
            }
            format!("[{}]", shapes.join(" | "))
        }
        Value::Object(map) => {
            let fields: Vec<String> = map
                .iter()
                .map(|(key, value)| format!("{key:?}: {}", shape(value)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
    }
}

/// What an answer that is neither 2xx nor accepted means, from its status,
/// its headers and its whole body; `now` dates a `Retry-After` given as an
/// HTTP date.
pub(crate) fn classify(
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
    read_refusal: ReadRefusal,
    now: OffsetDateTime,
) -> CrmError {
    let refusal = match status.as_u16() {
        429 => None,
        400..=499 => read_refusal(body),
        _ => None,
    };
    let detail = || excerpt(body.to_owned());
    match (status.as_u16(), refusal) {
        (429, _) => CrmError::RateLimited {
            retry_after: retry_after(headers, now),
        },
        (403, Some(Refusal::RateLimited)) => CrmError::RateLimited { retry_after: None },
        (_, Some(Refusal::Setup)) => CrmError::Setup {
            detail: format!("{status}: {}", detail()),
        },
        (401, _) | (403, Some(Refusal::Credential)) => CrmError::Unauthorized {
            status: status.as_u16(),
            detail: detail(),
        },
        (403, None) => CrmError::Forbidden { detail: detail() },
        // A 5xx may come after the CRM applied the request (a crash while
        // answering), so its outcome is unknown; so may a 408.
        (408 | 500..=599, _) => CrmError::Unavailable {
            detail: format!("{status}: {}", detail()),
            applied: Applied::Unknown,
        },
        (code, _) => CrmError::Rejected {
            status: code,
            detail: detail(),
        },
    }
}

/// The delay a 429 asks for: `Retry-After`, else the seconds until the
/// window resets, which Pipedrive sends instead.
fn retry_after(headers: &HeaderMap, now: OffsetDateTime) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    header("retry-after")
        .or_else(|| header("x-ratelimit-reset"))
        .and_then(|v| parse_retry_after(v, now))
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
    use crate::crm;
    use time::macros::datetime;
    use wiremock::matchers::{any, header};
    use wiremock::{Mock, MockServer, ResponseTemplate};

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
        let (http, budgets) = client(Duration::from_secs(1));
        budgets.pause(Duration::from_secs(60));
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

    /// Whether `spec`'s CRM reads a 403 with `body` as refusing the credential.
    fn refuses_the_credential(spec: &CrmSpec, body: &str) -> bool {
        (spec.read_refusal)(body) == Some(Refusal::Credential)
    }

    #[test]
    fn a_403_naming_a_missing_scope_refuses_the_credential_and_others_one_record() {
        let hubspot = r#"{"status":"error","message":"This app hasn't been granted all required scopes to make this call.","category":"MISSING_SCOPES","errors":[{"message":"One or more of the following scopes are required.","context":{"requiredGranularScopes":["crm.objects.contacts.write"]}}]}"#;
        assert!(refuses_the_credential(&crm::hubspot::SPEC, hubspot));
        assert!(refuses_the_credential(
            &crm::salesforce::SPEC,
            r#"[{"errorCode":"API_DISABLED_FOR_ORG","message":"API is not enabled for this Organization or Partner"}]"#
        ));
        assert!(!refuses_the_credential(
            &crm::salesforce::SPEC,
            r#"[{"errorCode":"INSUFFICIENT_ACCESS_OR_READONLY","message":"insufficient access rights on object id"}]"#
        ));
        assert!(!refuses_the_credential(
            &crm::pipedrive::SPEC,
            r#"{"success":false,"error":"You do not have permission to access this item"}"#
        ));
    }

    #[test]
    fn a_salesforce_limit_is_read_from_the_whole_body_past_any_excerpt() {
        let long = "x".repeat(400);
        let body = format!(
            r#"[{{"errorCode":"INVALID_FIELD","message":"{long}"}},{{"errorCode":"REQUEST_LIMIT_EXCEEDED","message":"TotalRequests Limit exceeded."}}]"#
        );
        let now = OffsetDateTime::UNIX_EPOCH;
        let error = classify(
            StatusCode::FORBIDDEN,
            &HeaderMap::new(),
            &body,
            crm::salesforce::SPEC.read_refusal,
            now,
        );
        assert!(
            matches!(error, CrmError::RateLimited { retry_after: None }),
            "{error:?}"
        );
        // The same 403 from a CRM without the code concerns one record.
        let error = classify(
            StatusCode::FORBIDDEN,
            &HeaderMap::new(),
            &body,
            no_refusal,
            now,
        );
        assert!(matches!(error, CrmError::Forbidden { .. }), "{error:?}");
    }

    #[test]
    fn a_429_is_a_rate_limit_for_the_delay_its_headers_ask() {
        let now = datetime!(2015-10-21 07:27:50 UTC);
        let classify_429 = |name: &'static str, value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(name, reqwest::header::HeaderValue::from_static(value));
            classify(StatusCode::TOO_MANY_REQUESTS, &headers, "", no_refusal, now)
        };
        for (name, value, delay) in [
            ("retry-after", "7", 7),
            ("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT", 10),
            ("x-ratelimit-reset", "3", 3),
        ] {
            match classify_429(name, value) {
                CrmError::RateLimited { retry_after } => {
                    assert_eq!(
                        retry_after,
                        Some(Duration::from_secs(delay)),
                        "{name}: {value}"
                    );
                }
                other => panic!("{name}: expected a rate limit, got {other:?}"),
            }
        }
        let bare = classify(
            StatusCode::TOO_MANY_REQUESTS,
            &HeaderMap::new(),
            "",
            no_refusal,
            now,
        );
        assert!(
            matches!(bare, CrmError::RateLimited { retry_after: None }),
            "{bare:?}"
        );
    }

    #[test]
    fn other_statuses_are_classified_by_status_alone() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let of = |status: u16, body: &str| {
            let status = StatusCode::from_u16(status).unwrap();
            classify(
                status,
                &HeaderMap::new(),
                body,
                crm::hubspot::SPEC.read_refusal,
                now,
            )
        };
        assert!(matches!(
            of(401, "expired"),
            CrmError::Unauthorized { status: 401, .. }
        ));
        assert!(matches!(
            of(403, r#"{"category":"MISSING_SCOPES"}"#),
            CrmError::Unauthorized { status: 403, .. }
        ));
        assert!(matches!(of(403, "not yours"), CrmError::Forbidden { .. }));
        for status in [408, 500, 503] {
            assert!(
                matches!(
                    of(status, ""),
                    CrmError::Unavailable {
                        applied: Applied::Unknown,
                        ..
                    }
                ),
                "{status}"
            );
        }
        assert!(matches!(
            of(422, "bad field"),
            CrmError::Rejected { status: 422, .. }
        ));
    }

    #[test]
    fn a_body_s_shape_names_its_keys_and_types_and_never_a_value() {
        let body = br#"{"contacts":[{"id":"abc","phone":"+31612345678","additionalPhones":["0612345678",{"phone":"+3120"}],"dnd":false,"score":3,"x":null}]}"#;
        let shape = shape_of(body);
        assert_eq!(
            shape,
            r#"{"contacts": [{"additionalPhones": [string | {"phone": string}], "dnd": bool, "id": string, "phone": string, "score": number, "x": null}]}"#
        );
        assert_eq!(
            shape_of(b"<html>jan@example.com</html>"),
            "not JSON (28 bytes)"
        );
    }

    #[tokio::test]
    async fn a_body_of_an_unexpected_shape_is_an_invalid_response_that_quotes_no_value() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Expected {
            phone: Vec<u32>,
        }
        let answer = ResponseTemplate::new(200).set_body_string(r#"{"phone":"+31612345678"}"#);
        let (http, _budgets, server) = client_answering(answer).await;
        let request = http.client().get(format!("{}/records/1", server.uri()));
        match http.json::<Expected>("get", request).await {
            Err(error @ CrmError::InvalidResponse(_)) => {
                let text = error.to_string();
                assert!(!text.contains("3161"), "{text}");
                assert!(text.contains(r#"{"phone": string}"#), "{text}");
                assert!(error.is_transient(), "an unexpected shape is retried");
            }
            other => panic!("expected an invalid response, got {other:?}"),
        }
    }

    #[test]
    fn a_refusal_that_says_the_set_up_is_incomplete_is_read_from_any_4xx() {
        fn setup(body: &str) -> Option<Refusal> {
            body.contains("INVALID_FIELD").then_some(Refusal::Setup)
        }
        let now = OffsetDateTime::UNIX_EPOCH;
        for status in [400, 401, 403] {
            let status = StatusCode::from_u16(status).unwrap();
            let error = classify(status, &HeaderMap::new(), "INVALID_FIELD", setup, now);
            assert!(
                matches!(error, CrmError::Setup { .. }),
                "{status}: {error:?}"
            );
        }
        let other = classify(StatusCode::BAD_REQUEST, &HeaderMap::new(), "x", setup, now);
        assert!(matches!(other, CrmError::Rejected { .. }), "{other:?}");
    }

    #[test]
    fn long_error_bodies_are_cut_on_a_character_boundary() {
        // Byte 300 falls inside an "é" (one ASCII byte, then two-byte
        // characters), so the cut must step back to byte 299.
        let text = format!("a{}", "é".repeat(200));
        assert_eq!(excerpt(text), format!("a{}…", "é".repeat(149)));
    }

    #[test]
    fn an_error_body_of_exactly_the_limit_is_kept_whole() {
        let text = "x".repeat(300);
        assert_eq!(excerpt(text.clone()), text);
        assert_eq!(excerpt("x".repeat(301)), format!("{text}…"));
    }

    #[test]
    fn an_operation_keeps_its_name_and_says_whether_it_searches() {
        let general = Operation::from("create_note");
        assert_eq!(general.name(), "create_note");
        assert_eq!(general.kind(), RequestKind::General);
        let search = Operation::search("search_contacts");
        assert_eq!(search.name(), "search_contacts");
        assert_eq!(search.kind(), RequestKind::Search);
    }

    /// A client with `timeout` on its own budgets, returned too so a test
    /// can pause them or observe a pause.
    fn client(timeout: Duration) -> (CrmHttp, Arc<Budgets>) {
        let budgets = Arc::new(Budgets::unlimited());
        let shared = Shared {
            budgets: budgets.clone(),
            health: Arc::new(CrmHealth::new(Duration::from_secs(60))),
            ledger: None,
            mapping: None,
        };
        let http = CrmHttp::new(&crm::hubspot::SPEC, timeout, shared).unwrap();
        (http, budgets)
    }

    /// A client (see [`client`]) and a mock CRM answering every request
    /// with `answer`.
    async fn client_answering(answer: ResponseTemplate) -> (CrmHttp, Arc<Budgets>, MockServer) {
        let server = MockServer::start().await;
        Mock::given(any()).respond_with(answer).mount(&server).await;
        let (http, budgets) = client(Duration::from_secs(5));
        (http, budgets, server)
    }

    async fn send_to(answer: ResponseTemplate, accept: &[StatusCode]) -> Result<u16, CrmError> {
        let (http, _budgets, server) = client_answering(answer).await;
        let request = http.client().post(format!("{}/records", server.uri()));
        http.send("create", request, accept)
            .await
            .map(|r| r.status().as_u16())
    }

    /// Whether `budgets` hold every request back for at least `at_least`.
    async fn paused_for(budgets: &Budgets, at_least: Duration) -> bool {
        tokio::time::timeout(at_least, budgets.acquire(RequestKind::General))
            .await
            .is_err()
    }

    #[tokio::test]
    async fn a_2xx_and_an_accepted_status_are_answers_and_any_other_status_is_an_error() {
        assert_eq!(send_to(ResponseTemplate::new(201), &[]).await.unwrap(), 201);
        let not_found = ResponseTemplate::new(404);
        assert_eq!(
            send_to(not_found.clone(), &[StatusCode::NOT_FOUND])
                .await
                .unwrap(),
            404
        );
        match send_to(not_found, &[]).await {
            Err(CrmError::Rejected { status: 404, .. }) => {}
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn an_existence_check_reads_a_2xx_as_present_and_an_absent_status_as_missing() {
        for (status, present) in [(200, true), (404, false)] {
            let (http, _budgets, server) = client_answering(ResponseTemplate::new(status)).await;
            let request = http.client().get(format!("{}/records/1", server.uri()));
            let found = http
                .exists("get", request, &[StatusCode::NOT_FOUND])
                .await
                .unwrap();
            assert_eq!(found, present, "status {status}");
        }
    }

    #[tokio::test]
    async fn a_429_without_retry_after_pauses_the_worker_for_the_default_time() {
        let (http, budgets, server) = client_answering(ResponseTemplate::new(429)).await;
        let request = http.client().post(format!("{}/records", server.uri()));
        match http.send("create", request, &[]).await {
            Err(CrmError::RateLimited { retry_after: None }) => {}
            other => panic!("expected a rate limit without a delay, got {other:?}"),
        }
        assert!(paused_for(&budgets, DEFAULT_RATE_LIMIT_PAUSE / 2).await);
    }

    #[tokio::test]
    async fn a_429_s_retry_after_or_reset_header_is_the_delay_it_asks_for() {
        for header in ["retry-after", "x-ratelimit-reset"] {
            let answer = ResponseTemplate::new(429).insert_header(header, "7");
            match send_to(answer, &[]).await {
                Err(CrmError::RateLimited { retry_after }) => {
                    assert_eq!(retry_after, Some(Duration::from_secs(7)), "{header}");
                }
                other => panic!("expected a rate limit, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_403_naming_a_missing_scope_is_a_refused_credential_and_another_403_forbids_one_record()
     {
        let scope = ResponseTemplate::new(403).set_body_string(r#"{"category":"MISSING_SCOPES"}"#);
        match send_to(scope, &[]).await {
            Err(CrmError::Unauthorized { status: 403, .. }) => {}
            other => panic!("expected a refused credential, got {other:?}"),
        }
        let record = ResponseTemplate::new(403).set_body_string("no access to this record");
        match send_to(record, &[]).await {
            Err(CrmError::Forbidden { detail }) => assert_eq!(detail, "no access to this record"),
            other => panic!("expected a forbidden record, got {other:?}"),
        }
        match send_to(ResponseTemplate::new(401), &[]).await {
            Err(CrmError::Unauthorized { status: 401, .. }) => {}
            other => panic!("expected a refused credential, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_5xx_or_a_408_may_have_been_applied_and_another_4xx_is_a_rejection() {
        for status in [500, 503, 408] {
            match send_to(ResponseTemplate::new(status), &[]).await {
                Err(CrmError::Unavailable { applied, .. }) => {
                    assert_eq!(applied, Applied::Unknown, "status {status}");
                }
                other => panic!("status {status}: expected unavailable, got {other:?}"),
            }
        }
        match send_to(ResponseTemplate::new(422).set_body_string("bad field"), &[]).await {
            Err(CrmError::Rejected {
                status: 422,
                detail,
            }) => assert_eq!(detail, "bad field"),
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_refused_connection_was_not_applied_and_its_error_leaves_out_the_url() {
        let (http, _budgets) = client(Duration::from_secs(1));
        // Nothing listens on the discard port; the token must not leak.
        let request = http
            .client()
            .get("http://127.0.0.1:9/v1/persons?api_token=s3cret");
        match http.send("search", request, &[]).await {
            Err(CrmError::Unavailable { applied, detail }) => {
                assert_eq!(applied, Applied::No);
                assert!(detail.starts_with("connection failed"), "{detail}");
                assert!(!detail.contains("s3cret"), "{detail}");
            }
            other => panic!("expected a failed connection, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn requests_name_callsync_as_their_user_agent() {
        let server = MockServer::start().await;
        Mock::given(header(
            "user-agent",
            concat!("callsync/", env!("CARGO_PKG_VERSION")),
        ))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
        let (http, _budgets, _other) = client_answering(ResponseTemplate::new(500)).await;
        let request = http.client().get(server.uri());
        assert_eq!(
            http.send("get", request, &[]).await.unwrap().status(),
            StatusCode::NO_CONTENT
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_limit_that_is_not_a_429_pauses_every_request_of_the_worker() {
        let (http, budgets) = client(Duration::from_secs(1));
        http.pause_for_rate_limit(Some(Duration::from_secs(5)));
        let started = tokio::time::Instant::now();
        budgets.acquire(RequestKind::Search).await;
        assert!(started.elapsed() >= Duration::from_secs(5));

        http.pause_for_rate_limit(None);
        let started = tokio::time::Instant::now();
        budgets.acquire(RequestKind::General).await;
        let waited = started.elapsed();
        assert!(waited >= DEFAULT_RATE_LIMIT_PAUSE && waited < Duration::from_secs(3));
    }
}
