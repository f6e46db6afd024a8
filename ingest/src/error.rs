//! Why a webhook was not accepted: one variant per refusal, each knowing
//! its status code and message, so that the handler is the sequence of its
//! steps and every refusal answers the contract's `{"error": "..."}`.

use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use callsync_shared::Source;
use callsync_shared::config::format_duration;
use callsync_shared::signature::AuthError;
use callsync_shared::sources::ParseError;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("unknown source {name:?}; built-in sources are {}", Source::names())]
    UnknownSource { name: String },
    #[error(
        "source {unconfigured} is not configured: set {variables} (or {}=true)",
        unconfigured.var("ALLOW_UNAUTHENTICATED")
    )]
    // Not named `source`: thiserror reads a field of that name as the cause.
    Unconfigured {
        unconfigured: Source,
        variables: String,
    },
    #[error("body is larger than {limit} bytes (CALLSYNC_MAX_BODY_BYTES)")]
    TooLarge { limit: usize },
    #[error(
        "the body did not arrive within {} (CALLSYNC_REQUEST_TIMEOUT); nothing was accepted",
        format_duration(*timeout)
    )]
    SlowBody { timeout: Duration },
    /// The body could not be read for another reason (the client went away).
    #[error("{message}")]
    UnreadableBody { status: StatusCode, message: String },
    #[error(transparent)]
    Unauthorized(#[from] AuthError),
    #[error(transparent)]
    Unparseable(#[from] ParseError),
    #[error("call report not accepted, retry later: {0}")]
    NotAccepted(String),
}

impl WebhookError {
    pub fn status(&self) -> StatusCode {
        match self {
            WebhookError::UnknownSource { .. } | WebhookError::Unconfigured { .. } => {
                StatusCode::NOT_FOUND
            }
            WebhookError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            WebhookError::SlowBody { .. } => StatusCode::REQUEST_TIMEOUT,
            WebhookError::UnreadableBody { status, .. } => *status,
            WebhookError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            WebhookError::Unparseable(e) if e.is_syntax() => StatusCode::BAD_REQUEST,
            WebhookError::Unparseable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            WebhookError::NotAccepted(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for WebhookError {
    fn into_response(self) -> Response {
        error_response(self.status(), self.to_string())
    }
}

/// An answer with the contract's JSON error body.
pub fn error_response(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// Bounded, allocation-free status labels for the request counter.
pub fn status_label(status: StatusCode) -> &'static str {
    match status.as_u16() {
        202 => "202",
        400 => "400",
        401 => "401",
        404 => "404",
        408 => "408",
        413 => "413",
        422 => "422",
        503 => "503",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_has_the_contracts_status() {
        let cases = [
            (
                WebhookError::UnknownSource {
                    name: "nosuch".into(),
                },
                404,
            ),
            (WebhookError::TooLarge { limit: 1 }, 413),
            (
                WebhookError::SlowBody {
                    timeout: Duration::from_secs(10),
                },
                408,
            ),
            (WebhookError::Unauthorized(AuthError::TokenMismatch), 401),
            (
                WebhookError::Unparseable(ParseError::NotJson("x".into())),
                400,
            ),
            (WebhookError::Unparseable(ParseError::NotAnObject), 422),
            (WebhookError::NotAccepted("nack".into()), 503),
        ];
        for (error, status) in cases {
            assert_eq!(error.status().as_u16(), status, "{error}");
        }
    }

    #[test]
    fn messages_name_what_to_do() {
        let unknown = WebhookError::UnknownSource {
            name: "nosuch".into(),
        };
        assert!(
            unknown
                .to_string()
                .starts_with("unknown source \"nosuch\"; built-in sources are voicedock, postcall"),
            "{unknown}"
        );
        let slow = WebhookError::SlowBody {
            timeout: Duration::from_secs(10),
        };
        assert_eq!(
            slow.to_string(),
            "the body did not arrive within 10s (CALLSYNC_REQUEST_TIMEOUT); nothing was accepted"
        );
        let unconfigured = WebhookError::Unconfigured {
            unconfigured: Source::Postcall,
            variables: "CALLSYNC_POSTCALL_TOKEN".into(),
        };
        assert_eq!(
            unconfigured.to_string(),
            "source postcall is not configured: set CALLSYNC_POSTCALL_TOKEN \
             (or CALLSYNC_POSTCALL_ALLOW_UNAUTHENTICATED=true)"
        );
    }
}
