//! Webhook authentication schemes as small pure functions.
//!
//! Each function takes the raw body bytes and header values and returns
//! `Ok(())` or the reason for refusal. They never parse the body: a signature
//! is over bytes, and re-serialised JSON would not match them. Comparisons are
//! constant-time so that an attacker cannot learn a valid signature byte by
//! byte from response times.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Secret;

type HmacSha256 = Hmac<Sha256>;

/// Why a request's credentials were refused. Every variant answers 401; the
/// distinction is for logs and the `reason` label of the failure metric.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    #[error("X-Webhook-Timestamp is not a Unix timestamp in seconds")]
    MalformedTimestamp,
    #[error(
        "X-Webhook-Timestamp is {age_secs}s away from now, outside the {tolerance_secs}s tolerance"
    )]
    StaleTimestamp { age_secs: u64, tolerance_secs: u64 },
    #[error("X-Webhook-Signature is not of the form sha256=<64 hex digits>")]
    MalformedSignature,
    #[error("signature does not match any configured secret")]
    SignatureMismatch,
    #[error("missing bearer token (Authorization: Bearer <token> or ?token=)")]
    MissingToken,
    #[error("bearer token does not match any configured token")]
    TokenMismatch,
}

impl AuthError {
    /// A short, bounded label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::MissingHeader(_) => "missing_header",
            AuthError::MalformedTimestamp => "malformed_timestamp",
            AuthError::StaleTimestamp { .. } => "stale_timestamp",
            AuthError::MalformedSignature => "malformed_signature",
            AuthError::SignatureMismatch => "signature_mismatch",
            AuthError::MissingToken => "missing_token",
            AuthError::TokenMismatch => "token_mismatch",
        }
    }
}

/// The header names of the timestamped HMAC scheme (seed 004).
pub const SIGNATURE_HEADER: &str = "X-Webhook-Signature";
pub const TIMESTAMP_HEADER: &str = "X-Webhook-Timestamp";

/// HMAC-SHA256 of `"{timestamp}.{body}"` under `secret`, as lowercase hex
/// prefixed with `sha256=`: the value of `X-Webhook-Signature`.
pub fn sign_timestamped(secret: &str, timestamp: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(timestamped_mac(secret.as_bytes(), timestamp, body))
    )
}

fn timestamped_mac(key: &[u8], timestamp: &str, body: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC-SHA256 accepts keys of any length"),
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// Verifies seed 004's scheme: `X-Webhook-Signature: sha256=<hex>` over
/// `"{X-Webhook-Timestamp}.{raw body}"`, with the timestamp no further than
/// `tolerance_secs` from `now_unix` in either direction (a replayed request
/// carries an old timestamp; a clock far ahead is as suspect).
///
/// Any one of `secrets` may match, so a secret can be rotated without downtime.
pub fn verify_timestamped(
    secrets: &[Secret],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_unix: i64,
    tolerance_secs: u64,
) -> Result<(), AuthError> {
    let timestamp = timestamp.ok_or(AuthError::MissingHeader(TIMESTAMP_HEADER))?;
    let signature = signature.ok_or(AuthError::MissingHeader(SIGNATURE_HEADER))?;

    let sent: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| AuthError::MalformedTimestamp)?;
    let age_secs = now_unix.abs_diff(sent);
    if age_secs > tolerance_secs {
        return Err(AuthError::StaleTimestamp {
            age_secs,
            tolerance_secs,
        });
    }

    let hex_digest = signature
        .trim()
        .strip_prefix("sha256=")
        .ok_or(AuthError::MalformedSignature)?;
    let presented = hex::decode(hex_digest).map_err(|_| AuthError::MalformedSignature)?;
    if presented.len() != 32 {
        return Err(AuthError::MalformedSignature);
    }

    // Check every secret (no early exit) so timing does not reveal which one matched.
    let matched = secrets.iter().fold(subtle::Choice::from(0), |acc, secret| {
        let expected = timestamped_mac(secret.expose().as_bytes(), timestamp.trim(), body);
        acc | expected.ct_eq(&presented)
    });
    if bool::from(matched) {
        Ok(())
    } else {
        Err(AuthError::SignatureMismatch)
    }
}

/// Signs an outgoing webhook the Standard Webhooks way: the value of the
/// `webhook-signature` header, `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
///
/// A `whsec_`-prefixed secret is base64 after the prefix (the standard's
/// format); any other secret is used as raw bytes.
pub fn sign_standard_webhook(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD;
    let key = match secret.strip_prefix("whsec_") {
        Some(encoded) => engine
            .decode(encoded)
            .unwrap_or_else(|_| secret.as_bytes().to_vec()),
        None => secret.as_bytes().to_vec(),
    };
    let mut mac = match HmacSha256::new_from_slice(&key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC-SHA256 accepts keys of any length"),
    };
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", engine.encode(mac.finalize().into_bytes()))
}

/// Extracts the token of an `Authorization: Bearer <token>` header value.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Verifies a presented bearer token against the configured ones.
///
/// Both sides are hashed before the constant-time comparison so that neither
/// the comparison time nor an early length check reveals a token's length.
pub fn verify_token(tokens: &[Secret], presented: Option<&str>) -> Result<(), AuthError> {
    let presented = presented.ok_or(AuthError::MissingToken)?;
    let presented_hash = Sha256::digest(presented.as_bytes());
    let matched = tokens.iter().fold(subtle::Choice::from(0), |acc, token| {
        let expected = Sha256::digest(token.expose().as_bytes());
        acc | expected.as_slice().ct_eq(presented_hash.as_slice())
    });
    if bool::from(matched) {
        Ok(())
    } else {
        Err(AuthError::TokenMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors computed independently of this code, with Python's standard library:
    //   python3 -c "import hmac,hashlib; print(hmac.new(KEY, MSG, hashlib.sha256).hexdigest())"
    // MSG is b'<timestamp>.' + BODY.
    const BODY: &[u8] = br#"{"message":{"type":"end-of-call-report","call":{"id":"c-1"}}}"#;
    const TS: &str = "1765627530";
    /// KEY = b'your-secret-for-verification'
    const SIG_OLD_SECRET: &str =
        "sha256=493d299e2cb9d1241b962674f4ff172395b2eff395571f4dce5fe4c0845817d2";
    /// KEY = b'new-secret'
    const SIG_NEW_SECRET: &str =
        "sha256=2307dc4265819aff4734e2d5c0b1846960ad07bd7ef5eed2790c4fd9065ffa18";

    fn secrets(list: &[&str]) -> Vec<Secret> {
        list.iter().map(|s| Secret::new(*s)).collect()
    }

    #[test]
    fn signing_matches_an_independently_computed_vector() {
        // KEY = b'k', MSG = b'1.body'
        assert_eq!(
            sign_timestamped("k", "1", b"body"),
            "sha256=6e005234e2e9b8d2d4963e861925cbc22f29be0a65e4d9ba7cd6b8af0115dae2"
        );
        assert_eq!(
            sign_timestamped("your-secret-for-verification", TS, BODY),
            SIG_OLD_SECRET
        );
    }

    #[test]
    fn standard_webhook_signatures_match_the_published_example() {
        // The Standard Webhooks / Svix documentation's example, checked with
        // Python's hmac and base64 modules.
        assert_eq!(
            sign_standard_webhook(
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_valid_signature_within_tolerance_is_accepted() {
        let now = 1_765_627_530 + 120;
        let result = verify_timestamped(
            &secrets(&["your-secret-for-verification"]),
            Some(TS),
            Some(SIG_OLD_SECRET),
            BODY,
            now,
            300,
        );
        assert_eq!(result, Ok(()));
    }

    #[test]
    fn any_configured_secret_may_match_during_rotation() {
        let both = secrets(&["new-secret", "your-secret-for-verification"]);
        for sig in [SIG_OLD_SECRET, SIG_NEW_SECRET] {
            assert_eq!(
                verify_timestamped(&both, Some(TS), Some(sig), BODY, 1_765_627_530, 300),
                Ok(())
            );
        }
        let only_new = secrets(&["new-secret"]);
        assert_eq!(
            verify_timestamped(
                &only_new,
                Some(TS),
                Some(SIG_OLD_SECRET),
                BODY,
                1_765_627_530,
                300
            ),
            Err(AuthError::SignatureMismatch)
        );
    }

    #[test]
    fn a_single_changed_body_byte_is_rejected() {
        let mut body = BODY.to_vec();
        body[5] ^= 1;
        assert_eq!(
            verify_timestamped(
                &secrets(&["your-secret-for-verification"]),
                Some(TS),
                Some(SIG_OLD_SECRET),
                &body,
                1_765_627_530,
                300
            ),
            Err(AuthError::SignatureMismatch)
        );
    }

    #[test]
    fn a_stale_or_future_timestamp_is_rejected() {
        let s = secrets(&["your-secret-for-verification"]);
        let late = verify_timestamped(
            &s,
            Some(TS),
            Some(SIG_OLD_SECRET),
            BODY,
            1_765_627_530 + 301,
            300,
        );
        assert_eq!(
            late,
            Err(AuthError::StaleTimestamp {
                age_secs: 301,
                tolerance_secs: 300
            })
        );
        let early = verify_timestamped(
            &s,
            Some(TS),
            Some(SIG_OLD_SECRET),
            BODY,
            1_765_627_530 - 301,
            300,
        );
        assert!(matches!(early, Err(AuthError::StaleTimestamp { .. })));
    }

    #[test]
    fn malformed_headers_are_named_in_the_error() {
        let s = secrets(&["k"]);
        assert_eq!(
            verify_timestamped(&s, None, Some("sha256=00"), BODY, 0, 300),
            Err(AuthError::MissingHeader(TIMESTAMP_HEADER))
        );
        assert_eq!(
            verify_timestamped(&s, Some("0"), None, BODY, 0, 300),
            Err(AuthError::MissingHeader(SIGNATURE_HEADER))
        );
        assert_eq!(
            verify_timestamped(&s, Some("soon"), Some("sha256=00"), BODY, 0, 300),
            Err(AuthError::MalformedTimestamp)
        );
        assert_eq!(
            verify_timestamped(&s, Some("0"), Some("md5=abc"), BODY, 0, 300),
            Err(AuthError::MalformedSignature)
        );
        assert_eq!(
            verify_timestamped(&s, Some("0"), Some("sha256=abcd"), BODY, 0, 300),
            Err(AuthError::MalformedSignature)
        );
    }

    #[test]
    fn bearer_tokens_are_checked_against_every_configured_token() {
        let tokens = secrets(&["old-token", "new-token"]);
        assert_eq!(verify_token(&tokens, Some("new-token")), Ok(()));
        assert_eq!(verify_token(&tokens, Some("old-token")), Ok(()));
        assert_eq!(
            verify_token(&tokens, Some("new-token2")),
            Err(AuthError::TokenMismatch)
        );
        assert_eq!(verify_token(&tokens, None), Err(AuthError::MissingToken));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_other_schemes_are_not_tokens() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
    }
}
