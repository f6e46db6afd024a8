//! HTTP routes of ingest, exactly as the contract names them.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use callsync_shared::Source;
use callsync_shared::sources::{self, Envelope};
use callsync_shared::telemetry::Chain;
use metrics_exporter_prometheus::PrometheusHandle;
use time::OffsetDateTime;

use crate::auth::SourceAuth;
use crate::config::IngestConfig;
use crate::error::{WebhookError, error_response, status_label};
use crate::publisher::{OutgoingReport, Publisher};
use crate::spool::Spool;

/// What every request handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub config: Arc<IngestConfig>,
    pub publisher: Publisher,
    pub spool: Option<Arc<Spool>>,
    pub metrics: PrometheusHandle,
}

pub fn router(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    Router::new()
        .route("/webhooks/{source}", post(receive))
        .route("/healthz", get(|| async { (StatusCode::OK, "ok") }))
        .route("/readyz", get(ready))
        .route("/metrics", get(render_metrics))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

async fn receive(
    State(state): State<AppState>,
    Path(source_name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let response = match handle(&state, &source_name, query.as_deref(), &headers, request).await {
        Ok(answer) => answer.into_response(),
        Err(error) => error.into_response(),
    };
    let label = source_name
        .parse::<Source>()
        .map_or("unknown", Source::as_str);
    metrics::counter!(
        "callsync_ingest_requests_total",
        "source" => label,
        "status" => status_label(response.status())
    )
    .increment(1);
    response
}

/// A webhook that was not refused.
#[derive(Debug)]
enum Answer {
    /// Confirmed by the broker.
    Queued { id: String },
    /// Kept on disk until the broker is back.
    Spooled { id: String },
    /// A valid event that is not a final call report; not queued.
    Ignored { event: String },
}

/// The 202's body: `{"accepted": true, "id": …}`, with `"spooled": true`
/// when kept on disk, or `{"accepted": false, "ignored": <event>}`. Written
/// straight from this struct: no JSON tree is built for each answer.
#[derive(serde::Serialize)]
struct AnswerBody<'a> {
    accepted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ignored: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    spooled: bool,
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let body = match &self {
            Answer::Queued { id } | Answer::Spooled { id } => AnswerBody {
                accepted: true,
                id: Some(id),
                ignored: None,
                spooled: matches!(self, Answer::Spooled { .. }),
            },
            Answer::Ignored { event } => AnswerBody {
                accepted: false,
                id: None,
                ignored: Some(event),
                spooled: false,
            },
        };
        (StatusCode::ACCEPTED, Json(body)).into_response()
    }
}

/// The webhook's steps: source, credentials, body, verify, inspect, publish.
async fn handle(
    state: &AppState,
    source_name: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    request: Request,
) -> Result<Answer, WebhookError> {
    let source = source(source_name)?;
    let auth = credentials(state, source)?;
    let body = body(state, request).await?;
    let received_at = OffsetDateTime::now_utc();
    verify(auth, headers, query, &body, received_at)?;
    // Ingest reads only the event type and call id, to refuse what can
    // never be synced and skip non-final events; the worker parses the rest.
    let call_id = match sources::inspect(source, &body)? {
        Envelope::Final(call_id) => call_id,
        Envelope::Ignored(event) => {
            tracing::debug!(%source, %event, "event is not a final call report; not queued");
            return Ok(Answer::Ignored { event });
        }
    };
    publish(
        state,
        OutgoingReport {
            message_id: uuid::Uuid::now_v7().to_string(),
            source,
            call_id,
            received_at,
            body,
        },
    )
    .await
}

fn source(name: &str) -> Result<Source, WebhookError> {
    name.parse().map_err(|_| WebhookError::UnknownSource {
        name: name.to_owned(),
    })
}

fn credentials(state: &AppState, source: Source) -> Result<&SourceAuth, WebhookError> {
    let auth = state.config.auth(source);
    if auth.is_enabled() {
        Ok(auth)
    } else {
        Err(WebhookError::Unconfigured {
            unconfigured: source,
            variables: auth.credential_vars(),
        })
    }
}

/// Reads the whole body within `CALLSYNC_REQUEST_TIMEOUT`: only the read is
/// bounded, so that a publish that has started is never cut off halfway
/// (it has its own confirm timeout).
async fn body(state: &AppState, request: Request) -> Result<Bytes, WebhookError> {
    let timeout = state.config.request_timeout;
    match tokio::time::timeout(timeout, Bytes::from_request(request, &())).await {
        Err(_) => Err(WebhookError::SlowBody { timeout }),
        Ok(Ok(body)) => Ok(body),
        Ok(Err(rejection)) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Err(WebhookError::TooLarge {
                limit: state.config.max_body_bytes,
            })
        }
        Ok(Err(rejection)) => Err(WebhookError::UnreadableBody {
            status: rejection.status(),
            message: rejection.body_text(),
        }),
    }
}

/// Authentication runs on the raw bytes, before anything reads them as JSON.
fn verify(
    auth: &SourceAuth,
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
    now: OffsetDateTime,
) -> Result<(), WebhookError> {
    auth.verify(headers, query, body, now).map_err(|reason| {
        let source = auth.source;
        metrics::counter!(
            "callsync_ingest_signature_failures_total",
            "source" => source.as_str(),
            "reason" => reason.reason()
        )
        .increment(1);
        tracing::info!(%source, reason = reason.reason(), "webhook refused: {reason}");
        WebhookError::Unauthorized(reason)
    })
}

/// Publishes with a confirm; when the broker cannot take the report, keeps
/// it in the spool (if configured), since the provider may never retry.
async fn publish(state: &AppState, outgoing: OutgoingReport) -> Result<Answer, WebhookError> {
    let OutgoingReport {
        source,
        ref call_id,
        ref message_id,
        ..
    } = outgoing;
    let error = match state.publisher.publish(&outgoing).await {
        Ok(()) => {
            tracing::info!(%source, %call_id, %message_id, "call report accepted");
            return Ok(Answer::Queued {
                id: outgoing.message_id,
            });
        }
        Err(error) => error,
    };
    // With its causes: the log line and the 503 answer say why.
    let error = Chain(&error);
    let Some(spool) = &state.spool else {
        tracing::warn!(%source, %call_id, %error, "call report not accepted");
        return Err(WebhookError::NotAccepted(error.to_string()));
    };
    match spool.append(&outgoing).await {
        Ok(()) => {
            tracing::warn!(%source, %call_id, %message_id, %error, "broker unavailable; call report spooled");
            Ok(Answer::Spooled {
                id: outgoing.message_id,
            })
        }
        Err(spool_error) => {
            let spool_error = Chain(&spool_error);
            tracing::error!(%source, %call_id, %error, %spool_error, "call report not accepted");
            Err(WebhookError::NotAccepted(format!("{error}; {spool_error}")))
        }
    }
}

async fn ready(State(state): State<AppState>) -> Response {
    let publisher = &state.publisher;
    if publisher.is_ready() {
        // How many of the lanes are up: a lane that stays down while the
        // others are up is a problem between this instance and the broker.
        let body = format!(
            "ready: {} of {} broker connections usable",
            publisher.usable_lanes(),
            publisher.lanes()
        );
        (StatusCode::OK, body).into_response()
    } else {
        error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "no usable broker connection with a confirm channel",
        )
    }
}

async fn render_metrics(State(state): State<AppState>) -> Response {
    (
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
