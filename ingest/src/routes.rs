//! HTTP routes of ingest, exactly as the contract names them.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use callsync_shared::Source;
use callsync_shared::sources::{self, Envelope};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use time::OffsetDateTime;

use crate::config::IngestConfig;
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

/// The `token` parameter of a query string, decoded. Read only when a
/// source has tokens, instead of building a map for every request.
fn query_token(query: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == "token")
        .map(|(_, value)| value.into_owned())
}

/// Bounded, allocation-free status labels for the request counter.
fn status_label(status: StatusCode) -> &'static str {
    match status.as_u16() {
        202 => "202",
        400 => "400",
        401 => "401",
        404 => "404",
        413 => "413",
        422 => "422",
        503 => "503",
        _ => "other",
    }
}

/// An answer with the contract's JSON error body.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

async fn receive(
    State(state): State<AppState>,
    Path(source_name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (label, response) = handle(&state, &source_name, &query, &headers, body).await;
    metrics::counter!(
        "callsync_ingest_requests_total",
        "source" => label,
        "status" => status_label(response.status())
    )
    .increment(1);
    response
}

/// Returns the bounded metric label of the source with the response.
async fn handle(
    state: &AppState,
    source_name: &str,
    query: &Option<String>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> (&'static str, Response) {
    let Ok(source) = source_name.parse::<Source>() else {
        let known: Vec<_> = Source::ALL.iter().map(|s| s.as_str()).collect();
        return (
            "unknown",
            error(
                StatusCode::NOT_FOUND,
                format!(
                    "unknown source {source_name:?}; built-in sources are {}",
                    known.join(", ")
                ),
            ),
        );
    };
    let label = source.as_str();
    let auth = state.config.auth(source);
    if !auth.is_enabled() {
        let name = source.env_name();
        let credentials = match source {
            Source::Voicedock => format!("CALLSYNC_{name}_SECRET or CALLSYNC_{name}_TOKEN"),
            Source::Postcall => format!("CALLSYNC_{name}_TOKEN"),
        };
        return (
            label,
            error(
                StatusCode::NOT_FOUND,
                format!(
                    "source {source} is not configured: set {credentials} (or CALLSYNC_{name}_ALLOW_UNAUTHENTICATED=true)"
                ),
            ),
        );
    }

    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return (
                label,
                error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "body is larger than {} bytes (CALLSYNC_MAX_BODY_BYTES)",
                        state.config.max_body_bytes
                    ),
                ),
            );
        }
        Err(rejection) => return (label, error(rejection.status(), rejection.body_text())),
    };

    let received_at = OffsetDateTime::now_utc();
    // Authentication runs on the raw bytes, before anything reads them as JSON.
    if let Err(reason) = auth.verify(
        headers,
        query.as_deref().and_then(query_token).as_deref(),
        &body,
        received_at.unix_timestamp(),
    ) {
        metrics::counter!(
            "callsync_ingest_signature_failures_total",
            "source" => label,
            "reason" => reason.reason()
        )
        .increment(1);
        tracing::info!(%source, reason = reason.reason(), "webhook refused: {reason}");
        return (label, error(StatusCode::UNAUTHORIZED, reason.to_string()));
    }

    // Ingest reads only the event type and call id, to refuse what can
    // never be synced and skip non-final events; the worker parses the rest.
    let call_id = match sources::inspect(source, &body) {
        Ok(Envelope::Final(call_id)) => call_id,
        Ok(Envelope::Ignored(event)) => {
            tracing::debug!(%source, %event, "event is not a final call report; not queued");
            return (
                label,
                (
                    StatusCode::ACCEPTED,
                    Json(json!({ "accepted": false, "ignored": event })),
                )
                    .into_response(),
            );
        }
        Err(e) if e.is_syntax() => return (label, error(StatusCode::BAD_REQUEST, e.to_string())),
        Err(e) => {
            return (
                label,
                error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
            );
        }
    };

    let outgoing = OutgoingReport {
        message_id: uuid::Uuid::now_v7().to_string(),
        source,
        call_id,
        received_at,
        body,
    };
    match state.publisher.publish(&outgoing).await {
        Ok(()) => {
            tracing::info!(%source, call_id = %outgoing.call_id, message_id = %outgoing.message_id, "call report accepted");
            (
                label,
                (
                    StatusCode::ACCEPTED,
                    Json(json!({ "accepted": true, "id": outgoing.message_id })),
                )
                    .into_response(),
            )
        }
        Err(e) => {
            let Some(spool) = &state.spool else {
                tracing::warn!(%source, call_id = %outgoing.call_id, error = %e, "call report not accepted");
                return (
                    label,
                    error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("call report not accepted, retry later: {e}"),
                    ),
                );
            };
            // The provider may never retry: keep the report on disk and
            // deliver it when the broker is back.
            match spool.append(&outgoing).await {
                Ok(()) => {
                    tracing::warn!(%source, call_id = %outgoing.call_id, message_id = %outgoing.message_id, error = %e, "broker unavailable; call report spooled");
                    (
                        label,
                        (
                            StatusCode::ACCEPTED,
                            Json(json!({ "accepted": true, "id": outgoing.message_id, "spooled": true })),
                        )
                            .into_response(),
                    )
                }
                Err(spool_error) => {
                    tracing::error!(%source, call_id = %outgoing.call_id, error = %e, %spool_error, "call report not accepted");
                    (
                        label,
                        error(
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("call report not accepted, retry later: {e}; {spool_error}"),
                        ),
                    )
                }
            }
        }
    }
}

async fn ready(State(state): State<AppState>) -> Response {
    if state.publisher.is_ready() {
        (StatusCode::OK, "ready").into_response()
    } else {
        error(
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
