//! `crm-sim`: a stateful CRM simulator for end-to-end tests and demos.
//!
//! It keeps records in memory, checks the bearer token, and misbehaves on
//! request the way real CRMs do: latency, a rolling rate limit answering 429
//! (with or without `Retry-After`, as each vendor does), a search index that
//! lags writes, injected 5xx, and requests whose outcome the client cannot
//! know: applied and then answered with a 5xx, applied and never answered
//! (the connection is reset or hangs), and applied after the client gave up.
//! Like a real server, the simulator finishes every request it started even
//! when the client has disconnected: a request answered too slowly is still
//! applied, later, which is the hardest "unknown outcome" to handle.
//!
//! `GET /_sim/state` returns every record and request counters, so tests
//! assert on what the CRM holds, not on what the worker logged.

pub mod gohighlevel;
pub mod hubspot;
pub mod pipedrive;
pub mod salesforce;
pub mod webhook;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tower::ServiceExt;

/// A rolling-window rate limit: at most `max` requests per `window`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub max: usize,
    pub window: Duration,
    /// Seconds sent in `Retry-After`; `None` sends no header (HubSpot's habit).
    pub retry_after_secs: Option<u64>,
}

impl std::str::FromStr for RateLimit {
    type Err = String;

    /// `190/10s`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (max, window) = s
            .split_once('/')
            .ok_or_else(|| format!("expected <requests>/<window> such as 190/10s, got {s:?}"))?;
        let max = max
            .trim()
            .parse()
            .map_err(|_| format!("bad request count in {s:?}"))?;
        let window = callsync_shared::config::parse_duration(window)?;
        Ok(Self {
            max,
            window,
            retry_after_secs: Some(window.as_secs().max(1)),
        })
    }
}

impl RateLimit {
    /// `max` requests per `window_secs` seconds, refused with
    /// `retry_after_secs` in the vendor's header (`None`: no header).
    const fn per(max: usize, window_secs: u64, retry_after_secs: Option<u64>) -> Self {
        Self {
            max,
            window: Duration::from_secs(window_secs),
            retry_after_secs,
        }
    }

    /// HubSpot's search limit: "The search endpoints are rate limited to
    /// five requests per second per account", answered 429 without
    /// `Retry-After` (HubSpot sends none) and with the `SECONDLY` policy.
    /// https://developers.hubspot.com/docs/api/crm/search (limits)
    pub const HUBSPOT_SEARCH: RateLimit = RateLimit::per(5, 1, None);

    /// HubSpot's general burst limit at the Professional and Enterprise
    /// tiers, 190 requests per rolling 10 s per private app (the lowest
    /// tier allows 100), refused with 429 and no `Retry-After`.
    /// https://developers.hubspot.com/docs/guides/apps/api-usage/usage-details
    /// https://developers.hubspot.com/changelog/increasing-our-api-limits
    pub const HUBSPOT: RateLimit = RateLimit::per(190, 10, None);

    /// Pipedrive's limit on the Essential plan with an API token: 20
    /// requests per 2-second window, refused with 429 and the seconds to
    /// the window's end in `x-ratelimit-reset`.
    /// https://pipedrive.readme.io/docs/core-api-concepts-rate-limiting
    pub const PIPEDRIVE: RateLimit = RateLimit::per(20, 2, Some(2));

    /// Pipedrive's Search API limit on every plan: 10 requests per 2
    /// seconds per token, apart from the general one.
    /// https://pipedrive.readme.io/docs/core-api-concepts-rate-limiting
    pub const PIPEDRIVE_SEARCH: RateLimit = RateLimit::per(10, 2, Some(2));

    /// GoHighLevel's burst limit: 100 requests per 10 seconds per app and
    /// location, searches included (no search limit of its own is
    /// documented); its 429 carries `X-RateLimit-*` headers, no
    /// `Retry-After`.
    /// https://marketplace.gohighlevel.com/docs/other/rate-limits
    pub const GOHIGHLEVEL: RateLimit = RateLimit::per(100, 10, None);

    /// Salesforce has no burst limit: an org's API requests are counted
    /// against an allocation per rolling 24 hours, 15 000 in a Developer
    /// Edition org (the smallest; production orgs start at 100 000),
    /// refused with 403 `REQUEST_LIMIT_EXCEEDED`.
    /// https://developer.salesforce.com/docs/atlas.en-us.salesforce_app_limits_cheatsheet.meta/salesforce_app_limits_cheatsheet/salesforce_app_limits_platform_api.htm
    pub const SALESFORCE_DEVELOPER_EDITION: RateLimit = RateLimit::per(15_000, 24 * 60 * 60, None);
}

/// Which of the simulator's limits a request counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limits {
    /// The general rolling limit only.
    General,
    /// The search limit first, then the general one (a HubSpot search,
    /// a Pipedrive Search API request).
    Search,
}

/// Random misbehaviour, each a probability per request.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FaultRates {
    /// Answer 503 without applying.
    pub server_error: f64,
    /// Apply, then answer 500 (a server that failed after committing).
    pub applied_server_error: f64,
    /// Apply, then drop the connection without answering.
    pub reset_after_apply: f64,
    /// Wait `slow_by` before applying and answering; when that is longer
    /// than the client's timeout the request is applied after the client
    /// gave up on it.
    pub slow: f64,
    pub slow_by: Duration,
}

/// A fault for the next matching requests, for focused tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 503 without applying.
    ServerError,
    /// 429 without applying.
    RateLimited { retry_after_secs: Option<u64> },
    /// Apply, then reset the connection.
    ApplyThenReset,
    /// Apply, then never answer (the client times out).
    ApplyThenHang,
    /// Never answer and do not apply.
    Hang,
    /// Answer with this status (e.g. 400) without applying.
    Status(u16),
    /// Apply, then answer 500.
    ApplyThenServerError,
    /// Wait this long, then apply and answer. The request is applied even
    /// when the client gave up meanwhile (a request overtaken by later
    /// ones, or applied after the client's timeout).
    Slow(Duration),
}

#[derive(Debug, Clone)]
struct ScriptedFault {
    operation: &'static str,
    fault: Fault,
    remaining: u32,
}

/// How the simulator starts.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub token: String,
    pub latency: Duration,
    pub rate_limit: Option<RateLimit>,
    /// The limit on the search endpoints of the CRMs that limit searches
    /// apart from `rate_limit`: HubSpot's ([`RateLimit::HUBSPOT_SEARCH`],
    /// refused with its `SECONDLY` policy) and Pipedrive's Search API
    /// ([`RateLimit::PIPEDRIVE_SEARCH`], refused as its other 429s are).
    pub search_rate_limit: Option<RateLimit>,
    pub index_lag: Duration,
    pub faults: FaultRates,
    pub seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            token: "sim-token".to_owned(),
            latency: Duration::ZERO,
            rate_limit: None,
            search_rate_limit: None,
            index_lag: Duration::ZERO,
            faults: FaultRates::default(),
            seed: 42,
        }
    }
}

/// One CRM record as the simulator holds it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Record {
    pub id: String,
    pub properties: Map<String, Value>,
    /// Ids of the contacts this record is associated with.
    pub associations: Vec<String>,
    #[serde(skip)]
    pub(crate) created: Option<Instant>,
}

impl Record {
    pub fn prop(&self, name: &str) -> Option<&str> {
        self.properties.get(name).and_then(Value::as_str)
    }

    /// The callsync marker this record carries, wherever the CRM keeps it
    /// (a property of its own, a note's HTML, a task's description).
    pub fn marker(&self) -> Option<String> {
        self.properties
            .values()
            .filter_map(Value::as_str)
            .find_map(|text| {
                let start = text.find("callsync:")?;
                let marker: String = text[start..]
                    .chars()
                    .take_while(|c| !c.is_whitespace() && !matches!(c, '<' | '"' | '&'))
                    .collect();
                // Salesforce's follow-up external id ends in ":follow-up".
                Some(marker.trim_end_matches(":follow-up").to_owned())
            })
    }
}

/// Request counters.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Stats {
    pub requests: u64,
    pub by_operation: BTreeMap<String, u64>,
    pub unauthorized: u64,
    /// Every 429, whichever limit refused it.
    pub rate_limited: u64,
    /// The 429s by the operation refused.
    pub rate_limited_by_operation: BTreeMap<String, u64>,
    /// The 429s of the search limit (also counted in `rate_limited`).
    pub search_rate_limited: u64,
    /// 5xx answers to requests that were not applied.
    pub server_errors: u64,
    /// 5xx answers to requests that were applied.
    pub applied_server_errors: u64,
    pub resets: u64,
    pub hangs: u64,
    pub slow: u64,
    /// Requests applied after their client had disconnected.
    pub applied_after_client_left: u64,
    /// Requests admitted and not applied yet (slow ones still waiting):
    /// the CRM's state may still change while this is above zero.
    pub pending_applies: u64,
}

impl Stats {
    /// Counts a 429 (or Salesforce's 403 `REQUEST_LIMIT_EXCEEDED`) for
    /// `operation`.
    fn count_refusal(&mut self, operation: &str) {
        self.rate_limited += 1;
        *self
            .rate_limited_by_operation
            .entry(operation.to_owned())
            .or_default() += 1;
    }
}

/// Everything the simulator holds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    pub contacts: Vec<Record>,
    pub calls: Vec<Record>,
    pub tasks: Vec<Record>,
    pub properties: Vec<String>,
    pub stats: Stats,
}

impl Snapshot {
    /// The markers of the call records, sorted: a set to compare, so that
    /// one lost call plus one duplicate never passes as "two calls".
    pub fn call_markers(&self) -> Vec<String> {
        sorted_markers(&self.calls)
    }

    /// How many requests of `operation` (`oauth_token`, `create_call`, …)
    /// the simulator received.
    pub fn requests_of(&self, operation: &str) -> u64 {
        self.stats.by_operation.get(operation).copied().unwrap_or(0)
    }

    /// The markers of the follow-up tasks, sorted.
    pub fn task_markers(&self) -> Vec<String> {
        sorted_markers(&self.tasks)
    }
}

fn sorted_markers(records: &[Record]) -> Vec<String> {
    let mut markers: Vec<String> = records
        .iter()
        .map(|r| {
            r.marker()
                .unwrap_or_else(|| format!("<record {} without a marker>", r.id))
        })
        .collect();
    markers.sort();
    markers
}

#[derive(Debug)]
pub(crate) struct State {
    config: SimConfig,
    next_id: u64,
    pub(crate) contacts: Vec<Record>,
    pub(crate) calls: Vec<Record>,
    pub(crate) tasks: Vec<Record>,
    pub(crate) properties: HashSet<String>,
    pub(crate) groups: HashSet<String>,
    /// Pipedrive person fields: (key, name).
    pub(crate) person_fields: Vec<(String, String)>,
    /// Pipedrive person fields' `field_type` and `options`, by key (a
    /// field created without them is text).
    pub(crate) pipedrive_field_types: std::collections::HashMap<String, Value>,
    /// The GoHighLevel location's contact settings.
    pub(crate) gohighlevel: gohighlevel::Location,
    /// The scopes GoHighLevel's token holds ([`CrmSim::grant_gohighlevel_scopes`]).
    pub(crate) gohighlevel_scopes: Vec<String>,
    /// The Salesforce org's set-up (custom fields, duplicate rules).
    pub(crate) salesforce: salesforce::Org,
    stats: Stats,
    /// How many times the token has been replaced (`expire_token`).
    sessions: u64,
    /// The scopes HubSpot's token holds ([`CrmSim::grant_hubspot_scopes`]).
    pub(crate) hubspot_scopes: Vec<String>,
    /// HubSpot's credential kind and its OAuth refresh token.
    pub(crate) hubspot: hubspot::Account,
    /// Whether the OAuth token endpoint refuses every grant (Salesforce's
    /// connected app revoked; [`CrmSim::revoke_oauth`]).
    pub(crate) oauth_revoked: bool,
    /// The one refresh token GoHighLevel's token endpoint accepts now: each
    /// exchange replaces it.
    pub(crate) gohighlevel_refresh_token: String,
    window: VecDeque<Instant>,
    search_window: VecDeque<Instant>,
    scripted: Vec<ScriptedFault>,
    rng: fastrand::Rng,
}

impl State {
    /// Counts a request that bypasses [`Call::guarded`] (a token endpoint's:
    /// not an API call, so no rate limit and no fault) under `operation`;
    /// returns how many there have been.
    pub(crate) fn count_unguarded(&mut self, operation: &str) -> u64 {
        let n = self
            .stats
            .by_operation
            .entry(operation.to_owned())
            .or_default();
        *n += 1;
        *n
    }

    pub(crate) fn new_id(&mut self) -> String {
        self.next_id += 1;
        self.next_id.to_string()
    }

    /// Whether a record is visible to search yet (the index lags writes).
    pub(crate) fn indexed(&self, record: &Record) -> bool {
        record
            .created
            .is_none_or(|t| t.elapsed() >= self.config.index_lag)
    }

    pub(crate) fn insert(
        &mut self,
        kind: Kind,
        properties: Map<String, Value>,
        associations: Vec<String>,
    ) -> Record {
        self.insert_as(kind, properties, associations, str::to_owned)
    }

    /// [`State::insert`] under an id in the vendor's format, made from the
    /// simulator's next number (GoHighLevel's and Salesforce's ids are not
    /// bare numbers).
    pub(crate) fn insert_as(
        &mut self,
        kind: Kind,
        properties: Map<String, Value>,
        associations: Vec<String>,
        id: impl FnOnce(&str) -> String,
    ) -> Record {
        let record = Record {
            id: id(&self.new_id()),
            properties,
            associations,
            created: Some(Instant::now()),
        };
        self.records_mut(kind).push(record.clone());
        record
    }

    pub(crate) fn records(&self, kind: Kind) -> &Vec<Record> {
        match kind {
            Kind::Contacts => &self.contacts,
            Kind::Calls => &self.calls,
            Kind::Tasks => &self.tasks,
        }
    }

    /// The record of `kind` with this id.
    pub(crate) fn find(&self, kind: Kind, id: &str) -> Option<&Record> {
        self.records(kind).iter().find(|r| r.id == id)
    }

    /// Adds `changes` to the properties of the record of `kind` with this
    /// id; the record as it is now.
    pub(crate) fn update(
        &mut self,
        kind: Kind,
        id: &str,
        changes: Map<String, Value>,
    ) -> Option<&mut Record> {
        let record = self.find_mut(kind, id)?;
        record.properties.extend(changes);
        Some(record)
    }

    /// [`State::find`], to change the record.
    pub(crate) fn find_mut(&mut self, kind: Kind, id: &str) -> Option<&mut Record> {
        self.records_mut(kind).iter_mut().find(|r| r.id == id)
    }

    pub(crate) fn records_mut(&mut self, kind: Kind) -> &mut Vec<Record> {
        match kind {
            Kind::Contacts => &mut self.contacts,
            Kind::Calls => &mut self.calls,
            Kind::Tasks => &mut self.tasks,
        }
    }
}

/// The record collections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Contacts,
    Calls,
    Tasks,
}

/// Shared simulator state, handed to every route.
#[derive(Debug, Clone)]
pub struct Shared(pub(crate) Arc<Mutex<State>>);

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What a request should suffer before or after it is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Proceed(Proceed),
    Respond(StatusCode, Option<u64>),
    /// 429 from the search limit, with the limit's `Retry-After` seconds.
    SearchLimited(Option<u64>),
    Hang,
}

/// How an admitted request is applied and answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Proceed {
    /// Wait before applying.
    delay: Duration,
    /// After applying, drop the connection.
    reset_after: bool,
    /// After applying, never answer.
    hang_after: bool,
    /// After applying, answer 500.
    error_after: bool,
}

/// Per-request handle on the connection: lets a route drop its own
/// connection, and tells whether the client left before the answer.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionKill {
    notify: Arc<Notify>,
    left: ClientLeft,
}

/// Set when the client of a request went away before its answer (the
/// request itself runs on: see [`serve`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientLeft(Arc<std::sync::atomic::AtomicBool>);

impl ClientLeft {
    fn get(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Marks the request's client gone when the connection drops the request's
/// future before it completed.
struct LeaveGuard(Option<ClientLeft>);

impl Drop for LeaveGuard {
    fn drop(&mut self) {
        if let Some(left) = self.0.take() {
            left.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// How long a hanging request holds its task before giving up: longer than
/// any client timeout, bounded so that tasks do not pile up forever.
const HANG_FOR: Duration = Duration::from_secs(300);

impl Shared {
    /// Whether `Authorization: Bearer <token>` carries the simulator's token.
    pub(crate) fn bearer_ok(&self, headers: &HeaderMap) -> bool {
        let token = self.lock().config.token.clone();
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == format!("Bearer {token}"))
    }

    /// The simulator's token (also the webhook secret).
    pub(crate) fn token(&self) -> String {
        self.lock().config.token.clone()
    }

    /// Counts the request and decides its fate: auth, rate limit, faults.
    pub(crate) fn admit(
        &self,
        operation: &'static str,
        limits: Limits,
        authorized: bool,
    ) -> Decision {
        let decision = self.decide(operation, limits, authorized);
        if matches!(decision, Decision::Proceed(_)) {
            self.lock().stats.pending_applies += 1;
        }
        decision
    }

    fn decide(&self, operation: &'static str, limits: Limits, authorized: bool) -> Decision {
        let mut s = self.lock();
        s.stats.requests += 1;
        *s.stats
            .by_operation
            .entry(operation.to_owned())
            .or_default() += 1;

        if !authorized {
            s.stats.unauthorized += 1;
            return Decision::Respond(StatusCode::UNAUTHORIZED, None);
        }

        let now = Instant::now();
        if limits == Limits::Search
            && let Some(limit) = s.config.search_rate_limit
            && !admitted(&mut s.search_window, limit, now)
        {
            s.stats.count_refusal(operation);
            s.stats.search_rate_limited += 1;
            return Decision::SearchLimited(limit.retry_after_secs);
        }
        if let Some(limit) = s.config.rate_limit
            && !admitted(&mut s.window, limit, now)
        {
            s.stats.count_refusal(operation);
            return Decision::Respond(StatusCode::TOO_MANY_REQUESTS, limit.retry_after_secs);
        }

        let scripted = s
            .scripted
            .iter_mut()
            .find(|f| f.remaining > 0 && (f.operation == operation || f.operation == "*"))
            .map(|f| {
                f.remaining -= 1;
                f.fault
            });
        s.scripted.retain(|f| f.remaining > 0);
        let random = s.config.faults;
        let fault = scripted.or_else(|| {
            if s.rng.f64() < random.server_error {
                Some(Fault::ServerError)
            } else if s.rng.f64() < random.reset_after_apply {
                Some(Fault::ApplyThenReset)
            } else if s.rng.f64() < random.applied_server_error {
                Some(Fault::ApplyThenServerError)
            } else {
                None
            }
        });
        let proceed = Proceed::default();
        match fault {
            Some(Fault::ServerError) => {
                s.stats.server_errors += 1;
                Decision::Respond(StatusCode::SERVICE_UNAVAILABLE, None)
            }
            Some(Fault::RateLimited { retry_after_secs }) => {
                s.stats.count_refusal(operation);
                Decision::Respond(StatusCode::TOO_MANY_REQUESTS, retry_after_secs)
            }
            Some(Fault::Status(code)) => Decision::Respond(
                StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
                None,
            ),
            Some(Fault::Hang) => {
                s.stats.hangs += 1;
                Decision::Hang
            }
            Some(Fault::ApplyThenReset) => {
                s.stats.resets += 1;
                Decision::Proceed(Proceed {
                    reset_after: true,
                    ..proceed
                })
            }
            Some(Fault::ApplyThenHang) => {
                s.stats.hangs += 1;
                Decision::Proceed(Proceed {
                    hang_after: true,
                    ..proceed
                })
            }
            Some(Fault::ApplyThenServerError) => {
                s.stats.applied_server_errors += 1;
                Decision::Proceed(Proceed {
                    error_after: true,
                    ..proceed
                })
            }
            Some(Fault::Slow(delay)) => {
                s.stats.slow += 1;
                Decision::Proceed(Proceed { delay, ..proceed })
            }
            None => Decision::Proceed(proceed),
        }
    }

    /// The latency to add to this answer.
    pub(crate) fn latency(&self) -> Duration {
        let mut s = self.lock();
        let f = s.config.faults;
        let extra = if f.slow > 0.0 && s.rng.f64() < f.slow {
            s.stats.slow += 1;
            f.slow_by
        } else {
            Duration::ZERO
        };
        s.config.latency + extra
    }
}

/// Whether a request arriving at `now` fits in `limit`'s rolling window,
/// counting it when it does.
fn admitted(window: &mut VecDeque<Instant>, limit: RateLimit, now: Instant) -> bool {
    while window
        .front()
        .is_some_and(|t| now.duration_since(*t) >= limit.window)
    {
        window.pop_front();
    }
    if window.len() >= limit.max {
        return false;
    }
    window.push_back(now);
    true
}

/// How a CRM words its refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// 429 with `Retry-After` (HubSpot, GoHighLevel, webhook receivers).
    RetryAfter,
    /// 429 with `x-ratelimit-reset` (Pipedrive).
    RateLimitReset,
    /// 403 `REQUEST_LIMIT_EXCEEDED` (Salesforce).
    Salesforce,
}

/// What a route answers once admitted. `Err` is a refusal (a malformed
/// body, an unknown record) answered as it is, so that a route's checks
/// chain with `?` instead of repeating `match … { Err(r) => return r }`.
pub(crate) type Answer = Result<Response, Response>;

/// What every guarded route takes from its request: the simulator, the
/// connection handle of the faults that drop or outlive the connection, and
/// the headers the vendor's token check reads. One extractor, so that each
/// route names only its own path, query and body.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) shared: Shared,
    kill: Option<ConnectionKill>,
    pub(crate) headers: HeaderMap,
}

impl FromRequestParts<Shared> for Call {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        shared: &Shared,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self {
            shared: shared.clone(),
            kill: parts.extensions.get::<ConnectionKill>().cloned(),
            headers: parts.headers.clone(),
        })
    }
}

impl Call {
    /// Runs a route with the simulator's latency, limits and faults around
    /// it, counting the request under `operation` and against `limits`.
    pub(crate) async fn guarded<F>(
        &self,
        operation: &'static str,
        limits: Limits,
        dialect: Dialect,
        authorized: bool,
        apply: F,
    ) -> Response
    where
        F: FnOnce(&mut State) -> Answer,
    {
        let shared = &self.shared;
        let kill = self.kill.as_ref();
        let decision = shared.admit(operation, limits, authorized);
        let latency = shared.latency();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        match decision {
            Decision::Respond(status, retry_after) => refusal(dialect, status, retry_after),
            // HubSpot's search refusal names its own policy; Pipedrive's is
            // worded as its other 429s.
            Decision::SearchLimited(_) if dialect == Dialect::RetryAfter => secondly_refusal(),
            Decision::SearchLimited(retry_after) => {
                refusal(dialect, StatusCode::TOO_MANY_REQUESTS, retry_after)
            }
            Decision::Hang => {
                tokio::time::sleep(HANG_FOR).await;
                refusal(dialect, StatusCode::GATEWAY_TIMEOUT, None)
            }
            Decision::Proceed(Proceed {
                delay,
                reset_after,
                hang_after,
                error_after,
            }) => {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let response = {
                    let mut state = shared.lock();
                    let response = apply(&mut state).unwrap_or_else(|refused| refused);
                    state.stats.pending_applies = state.stats.pending_applies.saturating_sub(1);
                    if kill.is_some_and(|k| k.left.get()) {
                        state.stats.applied_after_client_left += 1;
                    }
                    response
                };
                if reset_after {
                    if let Some(kill) = kill {
                        kill.notify.notify_one();
                    }
                    // Never answer: the connection is being dropped, and an
                    // answer written first would win the race against it.
                    tokio::time::sleep(HANG_FOR).await;
                    return response;
                }
                if hang_after {
                    tokio::time::sleep(HANG_FOR).await;
                }
                if error_after {
                    return refusal(dialect, StatusCode::INTERNAL_SERVER_ERROR, None);
                }
                response
            }
        }
    }
}

/// HubSpot's answer beyond its search limit: no `Retry-After`, and the
/// `SECONDLY` policy instead of the ten-second one.
fn secondly_refusal() -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        axum::Json(json!({
            "status": "error",
            "message": "You have reached your secondly limit.",
            "errorType": "RATE_LIMIT",
            "policyName": "SECONDLY"
        })),
    )
        .into_response()
}

/// A refusal worded the way `dialect` words it.
fn refusal(dialect: Dialect, status: StatusCode, retry_after: Option<u64>) -> Response {
    if dialect == Dialect::Salesforce {
        match status {
            StatusCode::TOO_MANY_REQUESTS => {
                return (
                    StatusCode::FORBIDDEN,
                    axum::Json(json!([{ "errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "TotalRequests Limit exceeded." }])),
                )
                    .into_response();
            }
            StatusCode::UNAUTHORIZED => {
                return (
                    status,
                    axum::Json(json!([{ "errorCode": "INVALID_SESSION_ID", "message": "Session expired or invalid" }])),
                )
                    .into_response();
            }
            _ => {}
        }
    }
    let body = match status {
        StatusCode::TOO_MANY_REQUESTS => json!({
            "status": "error",
            "errorType": "RATE_LIMIT",
            "policyName": "TEN_SECONDLY_ROLLING",
            "message": "You have reached your rate limit."
        }),
        StatusCode::UNAUTHORIZED => json!({
            "status": "error",
            "category": "INVALID_AUTHENTICATION",
            "message": "Authentication credentials not found."
        }),
        status if status.is_client_error() => json!({
            "status": "error",
            "category": "VALIDATION_ERROR",
            "message": "injected rejection"
        }),
        _ => json!({ "status": "error", "message": "injected failure" }),
    };
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(secs) = retry_after {
        let name = match dialect {
            Dialect::RateLimitReset => "x-ratelimit-reset",
            _ => "retry-after",
        };
        if let Ok(value) = secs.to_string().parse() {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// A running simulator.
#[derive(Debug)]
pub struct CrmSim {
    addr: SocketAddr,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl CrmSim {
    /// Starts a HubSpot simulator on `addr` (port 0 picks a free port).
    pub async fn start(addr: SocketAddr, config: SimConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let seed = config.seed;
        let shared = Shared(Arc::new(Mutex::new(State {
            config,
            next_id: 1000,
            contacts: Vec::new(),
            calls: Vec::new(),
            tasks: Vec::new(),
            properties: HashSet::new(),
            groups: HashSet::new(),
            person_fields: Vec::new(),
            pipedrive_field_types: std::collections::HashMap::new(),
            gohighlevel: gohighlevel::Location::default(),
            gohighlevel_scopes: gohighlevel::ALL_SCOPES.map(str::to_owned).to_vec(),
            salesforce: salesforce::Org::default(),
            stats: Stats::default(),
            sessions: 0,
            hubspot_scopes: hubspot::ALL_SCOPES.map(str::to_owned).to_vec(),
            hubspot: hubspot::Account::default(),
            oauth_revoked: false,
            gohighlevel_refresh_token: gohighlevel::OAUTH_REFRESH_TOKEN.to_owned(),
            window: VecDeque::new(),
            search_window: VecDeque::new(),
            scripted: Vec::new(),
            rng: fastrand::Rng::with_seed(seed),
        })));
        // Every CRM's routes at once: their paths do not overlap, and a test
        // points its worker at the one it exercises.
        let router = hubspot::router(shared.clone())
            .merge(pipedrive::router(shared.clone()))
            .merge(gohighlevel::router(shared.clone()))
            .merge(salesforce::router(shared.clone()))
            .merge(webhook::router(shared.clone()))
            .merge(inspection(shared.clone()));
        let task = tokio::spawn(serve(listener, router));
        Ok(Self { addr, shared, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL to configure a CRM client with.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn token(&self) -> String {
        self.shared.lock().config.token.clone()
    }

    /// Ends the current session: the token stops working and the OAuth
    /// token endpoint (Salesforce's) hands out a new one, as when a
    /// Salesforce session times out. Returns the new token.
    pub fn expire_token(&self) -> String {
        let mut s = self.shared.lock();
        s.sessions += 1;
        s.config.token = format!("sim-session-{}", s.sessions);
        s.config.token.clone()
    }

    /// From now on the CRM accepts `token` only, as when a token is rotated
    /// or revoked in the CRM's settings: a worker holding the old one is
    /// refused until the CRM accepts its token again.
    pub fn set_token(&self, token: &str) {
        self.shared.lock().config.token = token.to_owned();
    }

    /// The scopes HubSpot's private app token holds from now on (a new
    /// simulator's token holds [`hubspot::ALL_SCOPES`]).
    pub fn grant_hubspot_scopes(&self, scopes: &[&str]) {
        self.shared.lock().hubspot_scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
    }

    /// Revokes (or restores) the OAuth grant: the token endpoint answers
    /// Salesforce's `invalid_grant` to every request while revoked, as
    /// when an admin revokes the connected app's access. Sessions already
    /// issued keep working until [`CrmSim::expire_token`].
    pub fn revoke_oauth(&self, revoked: bool) {
        self.shared.lock().oauth_revoked = revoked;
    }

    /// Every record and the counters.
    pub fn snapshot(&self) -> Snapshot {
        snapshot(&self.shared.lock())
    }

    /// Injects `fault` into the next `times` requests of `operation`
    /// (`create_call`, `create_task`, ..., or `*` for any).
    pub fn inject(&self, operation: &'static str, fault: Fault, times: u32) {
        self.shared.lock().scripted.push(ScriptedFault {
            operation,
            fault,
            remaining: times,
        });
    }

    /// Replaces the random fault rates.
    pub fn set_faults(&self, faults: FaultRates) {
        self.shared.lock().config.faults = faults;
    }

    /// Replaces the rate limit.
    pub fn set_rate_limit(&self, limit: Option<RateLimit>) {
        self.shared.lock().config.rate_limit = limit;
    }

    /// Replaces the limit on HubSpot's search endpoints.
    pub fn set_search_rate_limit(&self, limit: Option<RateLimit>) {
        self.shared.lock().config.search_rate_limit = limit;
    }

    /// Adds a contact as if a human had created it in the CRM long ago
    /// (already indexed). Returns its id.
    pub fn seed_contact(&self, properties: Map<String, Value>) -> String {
        let mut s = self.shared.lock();
        let id = s.new_id();
        s.contacts.push(Record {
            id: id.clone(),
            properties,
            associations: Vec::new(),
            created: None,
        });
        id
    }

    /// Deletes a contact, as a human merging or removing it in the CRM would.
    pub fn delete_contact(&self, id: &str) {
        self.shared.lock().contacts.retain(|c| c.id != id);
    }

    /// Adds a contact with a given id (for `crm_id` hints).
    pub fn seed_contact_with_id(&self, id: &str, properties: Map<String, Value>) {
        self.shared.lock().contacts.push(Record {
            id: id.to_owned(),
            properties,
            associations: Vec::new(),
            created: None,
        });
    }
}

impl Drop for CrmSim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn snapshot(s: &State) -> Snapshot {
    let mut properties: Vec<String> = s.properties.iter().cloned().collect();
    properties.sort();
    Snapshot {
        contacts: s.contacts.clone(),
        calls: s.calls.clone(),
        tasks: s.tasks.clone(),
        properties,
        stats: s.stats.clone(),
    }
}

fn inspection(shared: Shared) -> Router {
    Router::new().route(
        "/_sim/state",
        axum::routing::get(move || {
            let shared = shared.clone();
            async move { axum::Json(snapshot(&shared.lock())) }
        }),
    )
}

/// Serves HTTP/1 connections one task each, so that a route can drop its
/// own connection (the "applied, then reset" fault) through [`ConnectionKill`].
async fn serve(listener: TcpListener, router: Router) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let router = router.clone();
        tokio::spawn(async move {
            let kill = Arc::new(Notify::new());
            let notify = Arc::clone(&kill);
            let service = hyper::service::service_fn(
                move |mut request: hyper::Request<hyper::body::Incoming>| {
                    let left = ClientLeft::default();
                    request.extensions_mut().insert(ConnectionKill {
                        notify: Arc::clone(&notify),
                        left: left.clone(),
                    });
                    // The route runs in a task of its own, so a client that
                    // disconnects does not cancel it: like a real server,
                    // the simulator applies what it started.
                    let handler = tokio::spawn(router.clone().oneshot(request));
                    async move {
                        let mut guard = LeaveGuard(Some(left));
                        let result = handler.await;
                        guard.0 = None;
                        match result {
                            Ok(response) => response,
                            Err(join) => Ok((StatusCode::INTERNAL_SERVER_ERROR, join.to_string())
                                .into_response()),
                        }
                    }
                },
            );
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                () = kill.notified() => {}
            }
        });
    }
}

/// A 401 answer worded the vendor's way: [`Call::guarded`] words every refusal
/// alike, and each vendor module passes the body its real API sends.
pub(crate) fn reword_unauthorized(response: Response, body: Value) -> Response {
    if response.status() != StatusCode::UNAUTHORIZED {
        return response;
    }
    (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response()
}
