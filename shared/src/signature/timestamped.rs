//! HMAC-SHA256 over `"{timestamp}.{raw body}"`, the timestamp in its own
//! header: seed 004's scheme, and Vapi's with other header names.

use super::{AuthError, Request, Verifier, any_secret_signs, hex_digest, hmac_sha256};
use crate::config::Secret;

/// The header names of seed 004's scheme.
pub const SIGNATURE_HEADER: &str = "X-Webhook-Signature";
pub const TIMESTAMP_HEADER: &str = "X-Webhook-Timestamp";

/// The unit of the timestamp header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampUnit {
    Seconds,
    /// Seconds or milliseconds, told apart by size: a value above 10^11 is
    /// read as milliseconds (10^11 seconds is the year 5138).
    SecondsOrMillis,
}

/// Where a sender puts the signature and timestamp, and how it writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampedScheme {
    pub signature_header: &'static str,
    pub timestamp_header: &'static str,
    /// The prefix before the hex digest (`sha256=`).
    pub prefix: &'static str,
    pub prefix_required: bool,
    pub unit: TimestampUnit,
    /// The signature's form, for the error message.
    pub expected: &'static str,
}

/// Seed 004: `X-Webhook-Signature: sha256=<hex>` over
/// `"{X-Webhook-Timestamp}.{raw body}"`, the timestamp in Unix seconds.
pub const SEED_004: TimestampedScheme = TimestampedScheme {
    signature_header: SIGNATURE_HEADER,
    timestamp_header: TIMESTAMP_HEADER,
    prefix: "sha256=",
    prefix_required: true,
    unit: TimestampUnit::Seconds,
    expected: "sha256=<64 hex digits>",
};

/// A [`TimestampedScheme`] with its secrets and replay window.
#[derive(Debug, Clone)]
pub struct TimestampedHmac {
    pub scheme: TimestampedScheme,
    pub secrets: Vec<Secret>,
    pub tolerance_secs: u64,
}

impl Verifier for TimestampedHmac {
    fn verify(&self, request: &Request<'_>) -> Result<(), AuthError> {
        let scheme = &self.scheme;
        let timestamp = request.required_header(scheme.timestamp_header)?;
        let signature = request.required_header(scheme.signature_header)?;

        let sent_ms = sent_ms(scheme, timestamp)?;
        super::within_tolerance(
            scheme.timestamp_header,
            sent_ms,
            request.now_ms(),
            self.tolerance_secs,
        )?;

        let malformed = AuthError::MalformedSignature {
            header: scheme.signature_header,
            expected: scheme.expected,
        };
        let digest = match signature.strip_prefix(scheme.prefix) {
            Some(digest) => digest,
            None if scheme.prefix_required => return Err(malformed),
            None => signature,
        };
        let presented = hex_digest(digest, false).ok_or(malformed)?;
        let parts: [&[u8]; 3] = [timestamp.as_bytes(), b".", request.body];
        any_secret_signs(&self.secrets, &parts, &presented)
    }
}

fn sent_ms(scheme: &TimestampedScheme, timestamp: &str) -> Result<i128, AuthError> {
    let malformed = AuthError::MalformedTimestamp {
        header: scheme.timestamp_header,
        unit: match scheme.unit {
            TimestampUnit::Seconds => "seconds",
            TimestampUnit::SecondsOrMillis => "seconds or milliseconds",
        },
    };
    // Digits only: `i64::from_str` would also take a sign.
    if timestamp.is_empty() || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed);
    }
    let value: i128 = timestamp.parse().map_err(|_| malformed)?;
    Ok(match scheme.unit {
        TimestampUnit::SecondsOrMillis if value > 100_000_000_000 => value,
        _ => value * 1_000,
    })
}

/// HMAC-SHA256 of `"{timestamp}.{body}"` under `secret`, as lowercase hex
/// prefixed with `sha256=`: the value of seed 004's `X-Webhook-Signature`.
pub fn sign_timestamped(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mac = hmac_sha256(secret.as_bytes(), &[timestamp.as_bytes(), b".", body]);
    format!("sha256={}", hex::encode(mac))
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
    let mac = hmac_sha256(&key, &[format!("{id}.{timestamp}.").as_bytes(), body]);
    format!("v1,{}", engine.encode(mac))
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

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

    fn seed_004(secrets: &[&str]) -> TimestampedHmac {
        TimestampedHmac {
            scheme: SEED_004,
            secrets: secrets.iter().map(|s| Secret::new(*s)).collect(),
            tolerance_secs: 300,
        }
    }

    fn check(
        verifier: &TimestampedHmac,
        headers: &[(&str, &str)],
        body: &[u8],
        now: i64,
    ) -> Result<(), AuthError> {
        super::super::verify_at(
            verifier,
            headers,
            body,
            OffsetDateTime::from_unix_timestamp(now).unwrap(),
        )
    }

    fn signed(signature: &str) -> [(&'static str, &str); 2] {
        [(TIMESTAMP_HEADER, TS), (SIGNATURE_HEADER, signature)]
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
        let v = seed_004(&["your-secret-for-verification"]);
        let now = 1_765_627_530 + 120;
        assert_eq!(check(&v, &signed(SIG_OLD_SECRET), BODY, now), Ok(()));
    }

    #[test]
    fn any_configured_secret_may_match_during_rotation() {
        let both = seed_004(&["new-secret", "your-secret-for-verification"]);
        for sig in [SIG_OLD_SECRET, SIG_NEW_SECRET] {
            assert_eq!(check(&both, &signed(sig), BODY, 1_765_627_530), Ok(()));
        }
        let only_new = seed_004(&["new-secret"]);
        assert_eq!(
            check(&only_new, &signed(SIG_OLD_SECRET), BODY, 1_765_627_530),
            Err(AuthError::SignatureMismatch)
        );
    }

    #[test]
    fn a_single_changed_body_byte_is_rejected() {
        let mut body = BODY.to_vec();
        body[5] ^= 1;
        let v = seed_004(&["your-secret-for-verification"]);
        assert_eq!(
            check(&v, &signed(SIG_OLD_SECRET), &body, 1_765_627_530),
            Err(AuthError::SignatureMismatch)
        );
    }

    #[test]
    fn a_stale_or_future_timestamp_is_rejected() {
        let v = seed_004(&["your-secret-for-verification"]);
        let late = check(&v, &signed(SIG_OLD_SECRET), BODY, 1_765_627_530 + 301);
        assert_eq!(
            late,
            Err(AuthError::StaleTimestamp {
                header: TIMESTAMP_HEADER,
                age_secs: 301,
                tolerance_secs: 300
            })
        );
        let early = check(&v, &signed(SIG_OLD_SECRET), BODY, 1_765_627_530 - 301);
        assert!(matches!(early, Err(AuthError::StaleTimestamp { .. })));
    }

    #[test]
    fn a_truncated_digest_or_swapped_headers_are_malformed() {
        let v = seed_004(&["your-secret-for-verification"]);
        let truncated = &SIG_OLD_SECRET[..SIG_OLD_SECRET.len() - 2];
        assert!(matches!(
            check(&v, &signed(truncated), BODY, 1_765_627_530),
            Err(AuthError::MalformedSignature { .. })
        ));
        // The signature in the timestamp header and the other way round.
        let swapped = [(TIMESTAMP_HEADER, SIG_OLD_SECRET), (SIGNATURE_HEADER, TS)];
        assert!(matches!(
            check(&v, &swapped, BODY, 1_765_627_530),
            Err(AuthError::MalformedTimestamp { .. })
        ));
    }

    #[test]
    fn malformed_headers_are_named_in_the_error() {
        let v = seed_004(&["k"]);
        assert_eq!(
            check(&v, &[(SIGNATURE_HEADER, "sha256=00")], BODY, 0),
            Err(AuthError::MissingHeader(TIMESTAMP_HEADER))
        );
        assert_eq!(
            check(&v, &[(TIMESTAMP_HEADER, "0")], BODY, 0),
            Err(AuthError::MissingHeader(SIGNATURE_HEADER))
        );
        let soon = [(TIMESTAMP_HEADER, "soon"), (SIGNATURE_HEADER, "sha256=00")];
        assert_eq!(
            check(&v, &soon, BODY, 0).map_err(|e| e.to_string()),
            Err("X-Webhook-Timestamp is not a Unix timestamp in seconds".to_owned())
        );
        let negative = [(TIMESTAMP_HEADER, "-1"), (SIGNATURE_HEADER, "sha256=00")];
        assert!(matches!(
            check(&v, &negative, BODY, 0),
            Err(AuthError::MalformedTimestamp { .. })
        ));
        let md5 = [(TIMESTAMP_HEADER, "0"), (SIGNATURE_HEADER, "md5=abc")];
        assert_eq!(
            check(&v, &md5, BODY, 0).map_err(|e| e.to_string()),
            Err("X-Webhook-Signature is not of the form sha256=<64 hex digits>".to_owned())
        );
    }
}
