//! A Standard Webhooks receiver: checks `webhook-id`, `webhook-timestamp`
//! and `webhook-signature` (the simulator's token is the secret) and keeps
//! every delivery as a call record, duplicates included, so that tests can
//! count deliveries per `webhook-id`.

use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use callsync_shared::signature::sign_standard_webhook;
use serde_json::{Map, Value, json};

use super::{ConnectionKill, Dialect, Kind, Shared, guarded};

pub fn router(shared: Shared) -> Router {
    Router::new()
        .route("/hooks/callsync", post(receive))
        .with_state(shared)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Verifies the signature as a Standard Webhooks receiver does.
fn verified(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let (Some(id), Some(ts), Some(signatures)) = (
        header(headers, "webhook-id"),
        header(headers, "webhook-timestamp").and_then(|t| t.parse::<i64>().ok()),
        header(headers, "webhook-signature"),
    ) else {
        return false;
    };
    let expected = sign_standard_webhook(secret, id, ts, body);
    signatures.split(' ').any(|s| s == expected)
}

async fn receive(
    State(shared): State<Shared>,
    kill: Option<Extension<ConnectionKill>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let auth = verified(&shared.token(), &headers, &body);
    guarded(
        &shared,
        kill.as_deref(),
        "deliver",
        Dialect::RetryAfter,
        auth,
        |state| {
            let Ok(event) = serde_json::from_slice::<Value>(&body) else {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({ "error": "not JSON" })),
                )
                    .into_response();
            };
            if event["type"] != "call.report" || !event["data"].is_object() {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({ "error": "not a call report" })),
                )
                    .into_response();
            }
            let data = &event["data"];
            let mut properties = Map::new();
            properties.insert("webhook-id".into(), json!(header(&headers, "webhook-id")));
            for key in ["source", "call_id", "summary", "follow_up_needed"] {
                properties.insert(key.into(), data[key].clone());
            }
            properties.insert("phone".into(), data["caller"]["phone"]["e164"].clone());
            state.insert(Kind::Calls, properties, Vec::new());
            StatusCode::NO_CONTENT.into_response()
        },
    )
    .await
}
