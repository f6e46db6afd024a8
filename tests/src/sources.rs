//! Signing webhooks as each platform does, for the end-to-end tests of every
//! source: the credentials a test environment configures and the headers a
//! platform would send with a body, now.

use callsync_shared::Source;
use callsync_shared::signature::{hmac_sha256, sign_timestamped};
use callsync_shared::time::unix_ms;

use crate::app::AppBuilder;
use crate::harness::{POSTCALL_TOKEN, VOICEDOCK_SECRET};

pub const VAPI_SECRET: &str = "test-vapi-secret";
pub const RETELL_API_KEY: &str = "key_test_retell";
pub const ELEVENLABS_SECRET: &str = "wsec_test_elevenlabs";
pub const BLAND_SECRET: &str = "test-bland-signing-secret";

/// The credentials of the sources the harness does not configure (it
/// configures voicedock and postcall).
pub const CREDENTIALS: [(&str, &str); 4] = [
    ("CALLSYNC_VAPI_SECRET", VAPI_SECRET),
    ("CALLSYNC_RETELL_API_KEY", RETELL_API_KEY),
    ("CALLSYNC_ELEVENLABS_SECRET", ELEVENLABS_SECRET),
    ("CALLSYNC_BLAND_SECRET", BLAND_SECRET),
];

/// Every source's test credential as a variable: [`CREDENTIALS`] and the
/// two the harness configures, what a test ingest holds.
pub fn every_source_credentials() -> Vec<(&'static str, &'static str)> {
    let mut all = vec![
        ("CALLSYNC_VOICEDOCK_SECRET", VOICEDOCK_SECRET),
        ("CALLSYNC_POSTCALL_TOKEN", POSTCALL_TOKEN),
    ];
    all.extend(CREDENTIALS);
    all
}

/// Configures [`CREDENTIALS`] for the app's ingest, the service that
/// verifies webhooks. (A worker given `CALLSYNC_RETELL_API_KEY` would also
/// reconcile Retell's call list: the reconciliation tests say so themselves.)
pub fn configure_every_source(app: AppBuilder) -> AppBuilder {
    CREDENTIALS
        .iter()
        .fold(app, |app, (name, value)| app.ingest_set(name, value))
}

/// The headers `source` signs `body` with, now, under the test credentials.
pub fn signed_headers(source: Source, body: &[u8]) -> Vec<(&'static str, String)> {
    signed_with(source, body, Credentials::Valid)
}

/// The same headers computed with credentials callsync does not know.
pub fn wrongly_signed_headers(source: Source, body: &[u8]) -> Vec<(&'static str, String)> {
    signed_with(source, body, Credentials::Wrong)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Credentials {
    Valid,
    Wrong,
}

fn signed_with(
    source: Source,
    body: &[u8],
    credentials: Credentials,
) -> Vec<(&'static str, String)> {
    let secret = |valid: &'static str| match credentials {
        Credentials::Valid => valid,
        Credentials::Wrong => "not-the-configured-secret",
    };
    let now = time::OffsetDateTime::now_utc();
    let seconds = now.unix_timestamp().to_string();
    let hex = |key: &str, parts: &[&[u8]]| hex::encode(hmac_sha256(key.as_bytes(), parts));
    let mut headers = match source {
        Source::Voicedock => vec![
            ("X-Webhook-Timestamp", seconds.clone()),
            (
                "X-Webhook-Signature",
                sign_timestamped(secret(VOICEDOCK_SECRET), &seconds, body),
            ),
        ],
        Source::Postcall => vec![(
            "Authorization",
            format!("Bearer {}", secret(POSTCALL_TOKEN)),
        )],
        Source::Vapi => {
            // Vapi's timestamp unit is not documented; milliseconds here,
            // seconds for voicedock, so that both paths run end to end.
            let ms = unix_ms(now).to_string();
            let signature = hex(secret(VAPI_SECRET), &[ms.as_bytes(), b".", body]);
            vec![("x-timestamp", ms), ("x-signature", signature)]
        }
        Source::Retell => {
            let ms = unix_ms(now).to_string();
            let digest = hex(secret(RETELL_API_KEY), &[body, ms.as_bytes()]);
            vec![("x-retell-signature", format!("v={ms},d={digest}"))]
        }
        Source::Elevenlabs => {
            let digest = hex(secret(ELEVENLABS_SECRET), &[seconds.as_bytes(), b".", body]);
            vec![("ElevenLabs-Signature", format!("t={seconds},v0={digest}"))]
        }
        Source::Bland => vec![("X-Webhook-Signature", hex(secret(BLAND_SECRET), &[body]))],
    };
    headers.push(("Content-Type", "application/json".to_owned()));
    headers
}
