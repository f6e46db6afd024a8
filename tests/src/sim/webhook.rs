// Routes return ready-made error responses; boxing them would only add noise.
#![allow(clippy::result_large_err)]

//! A Standard Webhooks receiver: checks `webhook-id`, `webhook-timestamp`
//! and `webhook-signature` (the simulator's token is the secret), refuses a
//! timestamp more than five minutes from now as a replay, and keeps every
//! delivery as a call record, duplicates included, so that tests can count
//! deliveries per `webhook-id`. A delivery that fails verification gets a
//! 401 saying why.
//! https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md#verifying-webhook-authenticity

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use callsync_shared::signature::sign_standard_webhook;
use serde_json::{Map, Value, json};

use super::{Call, Dialect, Kind, Limits, Shared, reword_unauthorized};

/// How far `webhook-timestamp` may be from the receiver's clock, either way.
const TOLERANCE_SECS: i64 = 5 * 60;

pub fn router(shared: Shared) -> Router {
    Router::new()
        .route("/hooks/callsync", post(receive))
        .with_state(shared)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Verifies a delivery as a Standard Webhooks receiver does; the error
/// says why it was refused.
fn verify(secret: &str, headers: &HeaderMap, body: &[u8]) -> Result<(), &'static str> {
    let (Some(id), Some(ts), Some(signatures)) = (
        header(headers, "webhook-id"),
        header(headers, "webhook-timestamp"),
        header(headers, "webhook-signature"),
    ) else {
        return Err("missing webhook-id, webhook-timestamp or webhook-signature");
    };
    let ts: i64 = ts
        .parse()
        .map_err(|_| "webhook-timestamp is not Unix seconds")?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if (now - ts).abs() > TOLERANCE_SECS {
        return Err("webhook-timestamp is more than five minutes from now");
    }
    let expected = sign_standard_webhook(secret, id, ts, body);
    if signatures.split(' ').any(|s| s == expected) {
        Ok(())
    } else {
        Err("no webhook-signature matches")
    }
}

async fn receive(call: Call, body: Bytes) -> Response {
    let verdict = verify(&call.shared.token(), &call.headers, &body);
    let response = call
        .guarded(
            "deliver",
            Limits::General,
            Dialect::RetryAfter,
            verdict.is_ok(),
            |state| {
                let refused = |error: &str| {
                    (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response()
                };
                let event =
                    serde_json::from_slice::<Value>(&body).map_err(|_| refused("not JSON"))?;
                if event["type"] != "call.report" || !event["data"].is_object() {
                    return Err(refused("not a call report"));
                }
                let data = &event["data"];
                let mut properties = Map::new();
                properties.insert(
                    "webhook-id".into(),
                    json!(header(&call.headers, "webhook-id")),
                );
                for key in ["source", "call_id", "summary", "follow_up_needed"] {
                    properties.insert(key.into(), data[key].clone());
                }
                properties.insert("phone".into(), data["caller"]["phone"]["e164"].clone());
                state.insert(Kind::Calls, properties, Vec::new());
                Ok(StatusCode::NO_CONTENT.into_response())
            },
        )
        .await;
    let reason = verdict.err().unwrap_or("refused");
    reword_unauthorized(response, json!({ "error": reason }))
}
