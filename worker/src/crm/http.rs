//! The HTTP plumbing every CRM adapter shares: one client with timeouts,
//! request budgets and metrics, the access token where the CRM wants one
//! renewed (see `oauth.rs`), and the classification of every failure into
//! [`CrmError`] (see `answer.rs`).
//!
//! A request is sent in steps, each its own function: wait for the budget
//! (`wait_for_budget`), exchange it with the CRM and record how that went
//! (`exchange`), and for an answer that is not accepted, read its whole body
//! and `classify` it. Classification is pure; what a vendor says only in its
//! 403 bodies (Salesforce's API limit, HubSpot's missing scopes) comes from
//! the vendor's [`ReadRefusal`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

use super::answer::{ReadRefusal, classify, classify_transport, shape_of, unexpected};
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
            Some(tokens) => {
                self.send_with_token(tokens, operation, request, accept)
                    .await
            }
            None => self.send_once(operation, request, accept).await,
        }
    }

    /// Sends `request` with the current access token; on a 401, renews the
    /// token (when it can) and sends once more. A 401 means the request was
    /// not applied, so repeating it cannot duplicate anything.
    async fn send_with_token(
        &self,
        tokens: &TokenSource,
        operation: Operation,
        request: RequestBuilder,
        accept: &[StatusCode],
    ) -> Result<Response, CrmError> {
        let token = tokens.current(&self.client).await?;
        // JSON, form and query bodies are buffered, so the clone succeeds.
        let again = request.try_clone();
        let request = request.bearer_auth(token.secret.expose());
        let first = self.send_once(operation, request, accept).await;
        match (&first, again) {
            (
                Err(CrmError::Unauthorized {
                    status: 401,
                    detail,
                }),
                Some(again),
            ) if tokens.renewable() => {
                tracing::info!(operation = operation.name(), %detail, "the CRM refused the access token; renewing it");
                match tokens.renew(&token, &self.client).await? {
                    Some(renewed) => {
                        let again = again.bearer_auth(renewed.secret.expose());
                        self.send_once(operation, again, accept).await
                    }
                    None => first,
                }
            }
            _ => first,
        }
    }

    /// One request, as it is: budget, exchange, classification.
    async fn send_once(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crm;
    use wiremock::matchers::{any, header};
    use wiremock::{Mock, MockServer, ResponseTemplate};

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
