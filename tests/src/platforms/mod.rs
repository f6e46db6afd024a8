//! platform-sim: the call-list APIs of Vapi, Retell, ElevenLabs and Bland,
//! as their documentation describes them, for the reconciliation tests.
//!
//! A test adds calls ([`SimCall`]) to a platform and moves them through
//! their stages; each platform's module renders a call the way that
//! platform's list, get-one and webhook show it. The simulator holds the
//! promises the worker's clients must not count on breaking: it refuses a
//! wrong key (401) and what the vendor refuses (a page size over its
//! maximum, an unknown filter), pages as the vendor pages (Vapi in no
//! particular order, Bland by index), and answers 429 without
//! `Retry-After` when told to (no vendor documents sending one).
//!
//! One server holds the four APIs, each under `/<source>` (a worker's
//! `CALLSYNC_<SOURCE>_API_URL` is [`PlatformSim::api_url`]).

mod bland;
mod elevenlabs;
mod retell;
mod vapi;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{self, Path, RawQuery};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use callsync_shared::Source;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::net::TcpListener;

/// The API key each simulated platform accepts.
pub fn api_key(source: Source) -> &'static str {
    match source {
        Source::Vapi => "vapi-private-key-test",
        // Retell signs its webhooks with the API key: the same as the
        // webhook credential the test ingest holds.
        Source::Retell => crate::sources::RETELL_API_KEY,
        Source::Elevenlabs => "sk_test_elevenlabs",
        Source::Bland => "sk-test-bland",
        Source::Voicedock | Source::Postcall => "no-list-api",
    }
}

/// The sources the simulator speaks for.
pub const SOURCES: [Source; 4] = [
    Source::Vapi,
    Source::Retell,
    Source::Elevenlabs,
    Source::Bland,
];

/// How far a call got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    InProgress,
    /// Over, analysis still running (Retell's `call_ended` was sent,
    /// ElevenLabs says `processing`).
    Ended,
    /// Over and analysed: the final webhook has been (or would have been) sent.
    Analysed,
}

/// One call as a test describes it; each platform renders it its own way.
#[derive(Debug, Clone, PartialEq)]
pub struct SimCall {
    pub id: String,
    pub started_at: OffsetDateTime,
    pub duration: Duration,
    /// The customer's number, E.164.
    pub phone: String,
    pub summary: String,
    pub follow_up: bool,
    pub stage: Stage,
}

impl SimCall {
    /// A finished, analysed inbound call from `phone` that started `ago`
    /// and lasted three minutes.
    pub fn analysed(id: &str, phone: &str, ago: Duration) -> Self {
        Self {
            id: id.to_owned(),
            started_at: OffsetDateTime::now_utc() - ago,
            duration: Duration::from_secs(180),
            phone: phone.to_owned(),
            summary: format!("Call {id}: the caller asked for a quote."),
            follow_up: true,
            stage: Stage::Analysed,
        }
    }

    pub fn ended_at(&self) -> OffsetDateTime {
        self.started_at + self.duration
    }
}

/// The body `source`'s webhook carries for `call` (its final report).
pub fn webhook_body(source: Source, call: &SimCall) -> Vec<u8> {
    let body = match source {
        Source::Vapi => vapi::webhook(call),
        Source::Retell => retell::webhook(call),
        Source::Elevenlabs => elevenlabs::webhook(call),
        Source::Bland => bland::details(call),
        other => panic!("{other} has no simulated platform"),
    };
    body.to_string().into_bytes()
}

/// One request the simulator received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// `list` or `get`.
    pub operation: &'static str,
    /// The query string or the JSON body.
    pub request: String,
    pub status: u16,
}

/// One platform's API: where it lists and gets calls, and how it answers.
#[derive(Debug)]
struct Api {
    source: Source,
    list_path: &'static str,
    /// Retell lists by `POST` with a JSON body; the others by `GET` with a
    /// query string.
    list_by_post: bool,
    /// Where one call is fetched, for platforms whose list holds summaries.
    get_path: Option<&'static str>,
    /// The status of a request whose parameters the platform refuses.
    invalid: StatusCode,
    /// Answers a list request (its query string or body) from the calls.
    select: fn(&[SimCall], &str) -> Result<Value, String>,
    /// A call as its get-one answers it.
    details: fn(&SimCall) -> Value,
    /// The message of a get-one for an unknown call (404).
    missing: &'static str,
}

impl Api {
    fn routes(&'static self) -> Router<Shared> {
        let list = move |extract::State(sim): extract::State<Shared>,
                         headers: HeaderMap,
                         RawQuery(query): RawQuery,
                         body: String| async move {
            let request = if self.list_by_post {
                body
            } else {
                query.unwrap_or_default()
            };
            sim.list(self, &headers, request).await
        };
        let router = Router::new().route(
            self.list_path,
            if self.list_by_post {
                post(list)
            } else {
                get(list)
            },
        );
        match self.get_path {
            None => router,
            Some(path) => router.route(
                path,
                get(
                    move |extract::State(sim): extract::State<Shared>,
                          headers: HeaderMap,
                          Path(id): Path<String>| async move {
                        sim.get_one(self, &headers, &id)
                    },
                ),
            ),
        }
    }
}

#[derive(Debug, Default)]
struct Platform {
    calls: Vec<SimCall>,
    seen: Vec<Seen>,
    /// The next this many requests are answered 429.
    rate_limit_next: u32,
    rate_limited: u32,
    /// Every list request waits this long before answering.
    list_delay: Duration,
    lists_in_flight: usize,
    most_lists_in_flight: usize,
}

#[derive(Debug, Default)]
struct State {
    platforms: HashMap<Source, Platform>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Shared(Arc<Mutex<State>>);

/// A running platform-sim.
#[derive(Debug)]
pub struct PlatformSim {
    addr: SocketAddr,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl PlatformSim {
    /// Starts the four APIs on a free port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port for platform-sim");
        let addr = listener.local_addr().expect("a bound address");
        let shared = Shared::default();
        let router = [&vapi::API, &retell::API, &elevenlabs::API, &bland::API]
            .into_iter()
            .fold(Router::new(), |router, api| {
                router.nest(&format!("/{}", api.source), api.routes())
            })
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { addr, shared, task }
    }

    /// `CALLSYNC_<SOURCE>_API_URL` for this simulator.
    pub fn api_url(&self, source: Source) -> String {
        format!("http://{}/{source}", self.addr)
    }

    /// The variables that point a worker (or `backfill`) at `source` here.
    pub fn vars(&self, source: Source) -> [(String, String); 2] {
        [
            (source.var("API_KEY"), api_key(source).to_owned()),
            (source.var("API_URL"), self.api_url(source)),
        ]
    }

    pub fn add(&self, source: Source, call: SimCall) {
        self.with(source, |p| p.calls.push(call));
    }

    /// Moves call `id` to `stage`.
    pub fn set_stage(&self, source: Source, id: &str, stage: Stage) {
        self.with(source, |p| {
            let call = p
                .calls
                .iter_mut()
                .find(|c| c.id == id)
                .unwrap_or_else(|| panic!("no call {id} on {source}"));
            call.stage = stage;
        });
    }

    /// Answers the next `n` requests to `source` with 429.
    pub fn rate_limit_next(&self, source: Source, n: u32) {
        self.with(source, |p| p.rate_limit_next = n);
    }

    /// Makes every list request to `source` take `delay`.
    pub fn slow_lists(&self, source: Source, delay: Duration) {
        self.with(source, |p| p.list_delay = delay);
    }

    /// Every request `source` received, in order.
    pub fn seen(&self, source: Source) -> Vec<Seen> {
        self.with(source, |p| p.seen.clone())
    }

    /// How many requests of `operation` `source` answered 200.
    pub fn answered(&self, source: Source, operation: &str) -> usize {
        self.seen(source)
            .iter()
            .filter(|s| s.operation == operation && s.status == 200)
            .count()
    }

    /// How many 429s `source` answered.
    pub fn rate_limited(&self, source: Source) -> u32 {
        self.with(source, |p| p.rate_limited)
    }

    /// The most list requests `source` was answering at one time.
    pub fn most_lists_in_flight(&self, source: Source) -> usize {
        self.with(source, |p| p.most_lists_in_flight)
    }

    fn with<T>(&self, source: Source, f: impl FnOnce(&mut Platform) -> T) -> T {
        self.shared.with(source, f)
    }
}

impl Drop for PlatformSim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Shared {
    fn with<T>(&self, source: Source, f: impl FnOnce(&mut Platform) -> T) -> T {
        let mut state = self.0.lock().expect("platform-sim state");
        f(state.platforms.entry(source).or_default())
    }

    /// What every request goes through: the key, then an injected 429.
    /// `Ok` carries the platform's calls for the handler to answer from.
    // The refusal is the handler's answer, returned at once: boxing it
    // would only add a step.
    #[allow(clippy::result_large_err)]
    fn admit(
        &self,
        source: Source,
        headers: &HeaderMap,
        operation: &'static str,
        request: String,
    ) -> Result<Vec<SimCall>, Response> {
        self.with(source, |p| {
            let refusal = if !authorised(source, headers) {
                Some(refuse(StatusCode::UNAUTHORIZED, "invalid API key"))
            } else if p.rate_limit_next > 0 {
                p.rate_limit_next -= 1;
                p.rate_limited += 1;
                Some(rate_limited(source))
            } else {
                None
            };
            let status = refusal.as_ref().map_or(200, |r| r.status().as_u16());
            p.seen.push(Seen {
                operation,
                request,
                status,
            });
            match refusal {
                Some(refusal) => Err(refusal),
                None => Ok(p.calls.clone()),
            }
        })
    }

    /// Records a refusal of a request that passed [`Shared::admit`] (a bad
    /// parameter), so that `seen` shows the status the client got.
    fn refused(&self, source: Source, response: Response) -> Response {
        self.with(source, |p| {
            if let Some(last) = p.seen.last_mut() {
                last.status = response.status().as_u16();
            }
        });
        response
    }

    /// Answers a list request: admitted, then selected from the calls; what
    /// the platform refuses is answered with its status and reason.
    async fn list(&self, api: &Api, headers: &HeaderMap, request: String) -> Response {
        let calls = match self.admit(api.source, headers, "list", request.clone()) {
            Ok(calls) => calls,
            Err(refusal) => return refusal,
        };
        match (api.select)(&calls, &request) {
            Ok(answer) => self.listing(api.source, || ok(answer)).await,
            Err(message) => self.refused(api.source, refuse(api.invalid, &message)),
        }
    }

    /// Answers a request for call `id`: admitted, then rendered, or 404.
    fn get_one(&self, api: &Api, headers: &HeaderMap, id: &str) -> Response {
        let calls = match self.admit(api.source, headers, "get", id.to_owned()) {
            Ok(calls) => calls,
            Err(refusal) => return refusal,
        };
        match calls.iter().find(|c| c.id == id) {
            Some(call) => ok((api.details)(call)),
            None => self.refused(api.source, refuse(StatusCode::NOT_FOUND, api.missing)),
        }
    }

    /// Runs a list request: counted in flight, after the configured delay.
    async fn listing<T>(&self, source: Source, answer: impl FnOnce() -> T) -> T {
        let delay = self.with(source, |p| {
            p.lists_in_flight += 1;
            p.most_lists_in_flight = p.most_lists_in_flight.max(p.lists_in_flight);
            p.list_delay
        });
        tokio::time::sleep(delay).await;
        let answer = answer();
        self.with(source, |p| p.lists_in_flight -= 1);
        answer
    }
}

/// Whether the request carries `source`'s key the way the vendor wants it.
fn authorised(source: Source, headers: &HeaderMap) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let key = api_key(source);
    match source {
        // Vapi and Retell: `Authorization: Bearer <key>`.
        Source::Vapi | Source::Retell => header("authorization") == Some(&format!("Bearer {key}")),
        // ElevenLabs: `xi-api-key: <key>`.
        Source::Elevenlabs => header("xi-api-key") == Some(key),
        // Bland: `authorization: <key>`, the key alone.
        Source::Bland => header("authorization") == Some(key),
        Source::Voicedock | Source::Postcall => false,
    }
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "message": message }))).into_response()
}

fn rate_limited(source: Source) -> Response {
    let body = match source {
        // ElevenLabs' 429 names the limit in `detail.status`.
        Source::Elevenlabs => json!({"detail": {"status": "too_many_concurrent_requests",
            "message": "Too many concurrent requests."}}),
        _ => json!({"message": "Too many requests"}),
    };
    (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response()
}

/// A query string's parameters, refusing any not in `allowed` (what a
/// validating API answers 400 to).
fn query_params(query: &str, allowed: &[&str]) -> Result<BTreeMap<String, String>, String> {
    let mut params = BTreeMap::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if !allowed.contains(&name.as_ref()) {
            return Err(format!("property {name} should not exist"));
        }
        params.insert(name.into_owned(), value.into_owned());
    }
    Ok(params)
}

/// The whole-number parameter `name`, if given; one that does not parse is
/// refused with `refusal`, worded as the vendor words it. Bland and
/// ElevenLabs read their paging and time parameters alike.
fn whole<T: std::str::FromStr>(
    params: &BTreeMap<String, String>,
    name: &str,
    refusal: String,
) -> Result<Option<T>, String> {
    params
        .get(name)
        .map(|v| v.parse().map_err(|_| refusal))
        .transpose()
}

/// The offset a page token of this simulator, `prefix` and the offset,
/// stands for (clients treat it as opaque, as the vendors document); no
/// token is the first page, and one not of that form is refused with
/// `refusal`.
fn token_offset(token: Option<&str>, prefix: &str, refusal: &str) -> Result<usize, String> {
    token.map_or(Ok(0), |token| {
        token
            .strip_prefix(prefix)
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| refusal.to_owned())
    })
}

/// A page of `items` from `offset`, at most `size`.
fn page_of<T: Clone>(items: &[T], offset: usize, size: usize) -> Vec<T> {
    items.iter().skip(offset).take(size).cloned().collect()
}

/// An RFC 3339 time to the millisecond, as the vendors write them.
fn iso(at: OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    at.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .expect("a formattable time")
}

fn millis(at: OffsetDateTime) -> i64 {
    callsync_shared::time::unix_ms(at)
}

/// The number callsync's test agents answer on.
const AGENT_NUMBER: &str = "+14155550999";

/// The platforms' 200 answer.
fn ok(body: Value) -> Response {
    (StatusCode::OK, axum::Json(body)).into_response()
}
