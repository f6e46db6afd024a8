//! Webhook authentication: one [`Verifier`] per scheme, each pure (raw
//! bytes, header values and the current time in; `Ok(())` or the reason for
//! refusal out).
//!
//! Verifiers never parse the body: a signature is over bytes, and
//! re-serialised JSON would not match them. Digests are compared in constant
//! time, and against every configured secret without stopping at the first
//! match, so that neither a valid signature nor which secret matched can be
//! learnt from response times. Every credential is a list, so a secret can
//! be rotated without downtime.
//!
//! The shared schemes live here ([`TimestampedHmac`], [`Bearer`]); a scheme
//! only one platform uses lives in that platform's source file.

mod bearer;
mod timestamped;

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::config::Secret;

pub use bearer::{Bearer, TokenPlaces, bearer_or_query, bearer_token};
pub use timestamped::{
    SEED_004, SIGNATURE_HEADER, TIMESTAMP_HEADER, TimestampUnit, TimestampedHmac,
    TimestampedScheme, sign_standard_webhook, sign_timestamped,
};

/// Why a request's credentials were refused. Every variant answers 401; the
/// distinction is for the error message, logs and the `reason` label of the
/// failure metric.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    #[error("{header} is not a Unix timestamp in {unit}")]
    MalformedTimestamp {
        header: &'static str,
        unit: &'static str,
    },
    #[error("{header} is {age_secs}s away from now, outside the {tolerance_secs}s tolerance")]
    StaleTimestamp {
        header: &'static str,
        age_secs: u64,
        tolerance_secs: u64,
    },
    #[error("{header} is not of the form {expected}")]
    MalformedSignature {
        header: &'static str,
        expected: &'static str,
    },
    #[error("signature does not match any configured secret")]
    SignatureMismatch,
    #[error("missing bearer token ({0})")]
    MissingToken(&'static str),
    #[error("bearer token does not match any configured token")]
    TokenMismatch,
}

impl AuthError {
    /// A short, bounded label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::MissingHeader(_) => "missing_header",
            AuthError::MalformedTimestamp { .. } => "malformed_timestamp",
            AuthError::StaleTimestamp { .. } => "stale_timestamp",
            AuthError::MalformedSignature { .. } => "malformed_signature",
            AuthError::SignatureMismatch => "signature_mismatch",
            AuthError::MissingToken(_) => "missing_token",
            AuthError::TokenMismatch => "token_mismatch",
        }
    }
}

/// Header lookup, case-insensitive by name; implemented by ingest over its
/// HTTP headers and by tests over plain pairs.
pub trait Headers {
    fn header(&self, name: &str) -> Option<&str>;
}

impl Headers for &[(&str, &str)] {
    fn header(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

/// What a verifier may look at: the request exactly as received.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    pub headers: &'a dyn Headers,
    /// The raw query string, if any (for `?token=`).
    pub query: Option<&'a str>,
    pub body: &'a [u8],
    /// When the request arrived, for replay windows.
    pub now: OffsetDateTime,
}

impl fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("body_len", &self.body.len())
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

impl Request<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.header(name).map(str::trim)
    }

    /// A header the scheme cannot verify without.
    pub fn required_header(&self, name: &'static str) -> Result<&str, AuthError> {
        self.header(name).ok_or(AuthError::MissingHeader(name))
    }

    /// The request's time in Unix milliseconds.
    pub fn now_ms(&self) -> i128 {
        i128::from(crate::time::unix_ms(self.now))
    }
}

/// One authentication scheme with its configured credentials.
pub trait Verifier: fmt::Debug + Send + Sync {
    fn verify(&self, request: &Request<'_>) -> Result<(), AuthError>;
}

/// HMAC-SHA256 of the concatenated `parts` under `key`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC-SHA256 accepts keys of any length"),
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Accepts `presented` when it equals the HMAC of `parts` under any of
/// `secrets`. Every secret is tried, whatever matched first, so that timing
/// reveals neither a match nor which secret it was.
pub fn any_secret_signs(
    secrets: &[Secret],
    parts: &[&[u8]],
    presented: &[u8; 32],
) -> Result<(), AuthError> {
    let matched = secrets.iter().fold(subtle::Choice::from(0), |acc, secret| {
        acc | hmac_sha256(secret.expose().as_bytes(), parts).ct_eq(presented)
    });
    if bool::from(matched) {
        Ok(())
    } else {
        Err(AuthError::SignatureMismatch)
    }
}

/// A 32-byte digest written as 64 hex digits; `lowercase_only` for schemes
/// whose SDK compares the lowercase hex text (Retell, ElevenLabs).
pub fn hex_digest(text: &str, lowercase_only: bool) -> Option<[u8; 32]> {
    if text.len() != 64 || (lowercase_only && text.bytes().any(|b| b.is_ascii_uppercase())) {
        return None;
    }
    let mut digest = [0u8; 32];
    hex::decode_to_slice(text, &mut digest).ok()?;
    Some(digest)
}

/// Refuses a timestamp (Unix milliseconds) further than `tolerance_secs`
/// from `now_ms` in either direction: a replayed request carries an old
/// timestamp, and a clock far ahead is as suspect.
pub fn within_tolerance(
    header: &'static str,
    sent_ms: i128,
    now_ms: i128,
    tolerance_secs: u64,
) -> Result<(), AuthError> {
    let age_ms = (now_ms - sent_ms).unsigned_abs();
    if age_ms > u128::from(tolerance_secs) * 1_000 {
        return Err(AuthError::StaleTimestamp {
            header,
            // Rounded up, so that a refusal never reads "300s away" for 300.001 s.
            age_secs: u64::try_from(age_ms.div_ceil(1_000)).unwrap_or(u64::MAX),
            tolerance_secs,
        });
    }
    Ok(())
}

/// `verifier`'s answer to a request of `headers` and `body` at `now`.
#[cfg(test)]
pub(crate) fn verify_at(
    verifier: &dyn Verifier,
    headers: &[(&str, &str)],
    body: &[u8],
    now: OffsetDateTime,
) -> Result<(), AuthError> {
    verifier.verify(&Request {
        headers: &headers,
        query: None,
        body,
        now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lookup_ignores_the_case_of_names() {
        let pairs: &[(&str, &str)] = &[("X-Retell-Signature", "v=1,d=2")];
        assert_eq!(pairs.header("x-retell-signature"), Some("v=1,d=2"));
        assert_eq!(pairs.header("x-other"), None);
    }

    #[test]
    fn a_digest_is_exactly_64_hex_digits() {
        let lower = "ab".repeat(32);
        assert_eq!(hex_digest(&lower, true), Some([0xab; 32]));
        assert_eq!(hex_digest(&lower.to_uppercase(), false), Some([0xab; 32]));
        assert_eq!(hex_digest(&lower.to_uppercase(), true), None);
        assert_eq!(hex_digest(&lower[2..], false), None, "truncated");
        assert_eq!(hex_digest(&format!("{lower}00"), false), None, "too long");
        assert_eq!(hex_digest(&"zz".repeat(32), false), None, "not hex");
    }

    #[test]
    fn the_tolerance_is_inclusive_and_applies_both_ways() {
        assert_eq!(within_tolerance("t", 0, 300_000, 300), Ok(()));
        assert_eq!(within_tolerance("t", 300_000, 0, 300), Ok(()));
        assert_eq!(
            within_tolerance("t", 0, 300_001, 300),
            Err(AuthError::StaleTimestamp {
                header: "t",
                age_secs: 301,
                tolerance_secs: 300
            })
        );
        assert!(within_tolerance("t", 300_001, 0, 300).is_err());
    }
}
