//! Vapi's HMAC credential with each option its openapi documents
//! (`HMACAuthenticationPlan`), configured by `CALLSYNC_VAPI_*` variables:
//! each verifies a signature computed independently, and what Vapi does not
//! document stops start-up naming the variable.
//!
//! The vectors were computed with Python's standard library, key
//! `b'vapi-secret'` and BODY below:
//!   python3 -c "import hmac,hashlib,base64; print(hmac.new(KEY, MSG, hashlib.ALG).hexdigest())"
//! (`base64.b64encode(....digest())` for the base64 ones), MSG as each test says.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use callsync_shared::config::{Env, Secret};
use callsync_shared::signature::{AuthError, Request, Verifier};
use callsync_shared::sources::Source;
use callsync_shared::sources::vapi::VapiHmac;
use time::OffsetDateTime;

const BODY: &[u8] = br#"{"message":{"type":"end-of-call-report","call":{"id":"call-1"}}}"#;
const TS: i64 = 1_765_627_530;

fn vapi(
    options: &[(&str, &str)],
    secret: &str,
) -> Result<VapiHmac, callsync_shared::config::ConfigError> {
    let env = Env::from_pairs(
        options
            .iter()
            .map(|(k, v)| (format!("CALLSYNC_VAPI_{k}"), *v)),
    );
    VapiHmac::from_env(&env, Source::Vapi, &[Secret::new(secret)], 300)
}

fn check(v: &VapiHmac, headers: &[(&str, &str)], body: &[u8]) -> Result<(), AuthError> {
    v.verify(&Request {
        headers: &headers,
        query: None,
        body,
        now: OffsetDateTime::from_unix_timestamp(TS + 30).unwrap(),
    })
}

#[test]
fn sha512_over_the_default_payload_verifies() {
    // MSG = b'1765627530.' + BODY, sha512
    let sig = "11e51b173173988e2a1d98ac64ef3e670946757c2748a1d4fce9483b6087bae3cf42472b9671e68a25560ed080a3b9d80a8fb67509605e1d4cc0f7ebefc0c8cd";
    let v = vapi(&[("HMAC_ALGORITHM", "sha512")], "vapi-secret").unwrap();
    assert_eq!(
        check(
            &v,
            &[("x-timestamp", "1765627530"), ("x-signature", sig)],
            BODY
        ),
        Ok(())
    );
    let prefixed = format!("sha512={sig}");
    assert_eq!(
        check(
            &v,
            &[("x-timestamp", "1765627530"), ("x-signature", &prefixed)],
            BODY
        ),
        Ok(()),
        "without a configured prefix, <algorithm>= is accepted"
    );
    // A SHA-256 length digest is not a SHA-512 signature.
    let short = [("x-timestamp", "1765627530"), ("x-signature", &sig[..64])];
    assert!(matches!(
        check(&v, &short, BODY),
        Err(AuthError::MalformedSignature { .. })
    ));
}

#[test]
fn sha1_in_base64_with_a_prefix_and_own_header_names_verifies() {
    // MSG = b'1765627530123.' + BODY, sha1, base64
    let v = vapi(
        &[
            ("HMAC_ALGORITHM", "SHA1"),
            ("SIGNATURE_ENCODING", "base64"),
            ("SIGNATURE_PREFIX", "sha1="),
            ("SIGNATURE_HEADER", "X-Vapi-Signature"),
            ("TIMESTAMP_HEADER", "X-Vapi-Timestamp"),
        ],
        "vapi-secret",
    )
    .unwrap();
    let good = [
        ("x-vapi-timestamp", "1765627530123"),
        ("x-vapi-signature", "sha1=WftSXuYtMiPe8OyO4sJKvGQmVIc="),
    ];
    assert_eq!(check(&v, &good, BODY), Ok(()));
    let unprefixed = [
        ("x-vapi-timestamp", "1765627530123"),
        ("x-vapi-signature", "WftSXuYtMiPe8OyO4sJKvGQmVIc="),
    ];
    assert!(
        matches!(
            check(&v, &unprefixed, BODY),
            Err(AuthError::MalformedSignature { .. })
        ),
        "a configured prefix is required"
    );
    assert_eq!(
        check(&v, &good[1..], BODY),
        Err(AuthError::MissingHeader("x-vapi-timestamp"))
    );
}

#[test]
fn without_a_timestamp_the_body_alone_is_signed_and_no_timestamp_is_asked_for() {
    // MSG = BODY, sha256
    let sig = "7e5551c8cc31f96fa79cee463c0985e5b20c971632e378ec78a5a430ea82f202";
    let v = vapi(&[("INCLUDE_TIMESTAMP", "false")], "vapi-secret").unwrap();
    assert_eq!(check(&v, &[("x-signature", sig)], BODY), Ok(()));
    let mut tampered = BODY.to_vec();
    tampered[3] ^= 1;
    assert_eq!(
        check(&v, &[("x-signature", sig)], &tampered),
        Err(AuthError::SignatureMismatch)
    );
}

#[test]
fn a_svix_style_format_with_a_base64_secret_verifies() {
    // KEY = base64-decoded 'dmFwaS1zZWNyZXQ=' (b'vapi-secret'),
    // MSG = b'msg_2Y1.1765627530.' + BODY, sha256, base64
    let v = vapi(
        &[
            ("PAYLOAD_FORMAT", "{svix-id}.{timestamp}.{body}"),
            ("MESSAGE_ID_HEADER", "svix-id"),
            ("TIMESTAMP_HEADER", "svix-timestamp"),
            ("SIGNATURE_HEADER", "svix-signature"),
            ("SIGNATURE_PREFIX", "v1,"),
            ("SIGNATURE_ENCODING", "base64"),
            ("SECRET_IS_BASE64", "true"),
        ],
        "dmFwaS1zZWNyZXQ=",
    )
    .unwrap();
    let headers = [
        ("svix-id", "msg_2Y1"),
        ("svix-timestamp", "1765627530"),
        (
            "svix-signature",
            "v1,g6MGozzmJfOoB0OUXoL3aoQzxalAobT6/cm+XcVyMus=",
        ),
    ];
    assert_eq!(check(&v, &headers, BODY), Ok(()));
    assert_eq!(
        check(&v, &headers[1..], BODY),
        Err(AuthError::MissingHeader("svix-id"))
    );
}

#[test]
fn method_and_url_placeholders_sign_post_and_the_configured_server_url() {
    // MSG = b'POST:https://calls.example.com/webhooks/vapi:' + BODY, sha256
    let v = vapi(
        &[
            ("INCLUDE_TIMESTAMP", "false"),
            ("PAYLOAD_FORMAT", "{method}:{url}:{body}"),
            ("SERVER_URL", "https://calls.example.com/webhooks/vapi"),
        ],
        "vapi-secret",
    )
    .unwrap();
    let sig = "f249e7462f7253217c15e14ff40b8bdd040417c4ce033922c4aca4ebfac11d8a";
    assert_eq!(check(&v, &[("x-signature", sig)], BODY), Ok(()));
}

#[test]
fn the_timestamp_may_be_seconds_milliseconds_or_an_rfc_3339_time_and_must_be_fresh() {
    // MSG = b'2025-12-13T12:05:30Z.' + BODY, sha256
    let v = vapi(&[], "vapi-secret").unwrap();
    let sig = "d26141bbfdc6192278b6d44d3da5ebbffb7030b8acc4ffcf3be8e6faffc992f0";
    assert_eq!(
        check(
            &v,
            &[
                ("x-timestamp", "2025-12-13T12:05:30Z"),
                ("x-signature", sig)
            ],
            BODY
        ),
        Ok(())
    );
    let stale = vapi(&[], "vapi-secret").unwrap();
    let at = OffsetDateTime::from_unix_timestamp(TS + 301).unwrap();
    let headers = [
        ("x-timestamp", "2025-12-13T12:05:30Z"),
        ("x-signature", sig),
    ];
    let request = Request {
        headers: &headers.as_slice(),
        query: None,
        body: BODY,
        now: at,
    };
    assert!(matches!(
        stale.verify(&request),
        Err(AuthError::StaleTimestamp { .. })
    ));
    assert!(matches!(
        check(
            &v,
            &[("x-timestamp", "yesterday"), ("x-signature", sig)],
            BODY
        ),
        Err(AuthError::MalformedTimestamp { .. })
    ));
}

#[test]
fn what_vapi_does_not_document_stops_start_up_naming_the_variable() {
    for (options, var, says) in [
        (
            vec![("HMAC_ALGORITHM", "md5")],
            "CALLSYNC_VAPI_HMAC_ALGORITHM",
            "sha256, sha512 or sha1",
        ),
        (
            vec![("SIGNATURE_ENCODING", "base32")],
            "CALLSYNC_VAPI_SIGNATURE_ENCODING",
            "hex or base64",
        ),
        (
            vec![("PAYLOAD_FORMAT", "{timestamp}")],
            "CALLSYNC_VAPI_PAYLOAD_FORMAT",
            "no {body}",
        ),
        (
            vec![("PAYLOAD_FORMAT", "{nonce}.{body}")],
            "CALLSYNC_VAPI_PAYLOAD_FORMAT",
            "{nonce}",
        ),
        (
            vec![
                ("INCLUDE_TIMESTAMP", "false"),
                ("PAYLOAD_FORMAT", "{timestamp}.{body}"),
            ],
            "CALLSYNC_VAPI_PAYLOAD_FORMAT",
            "sends no timestamp",
        ),
        (
            vec![("PAYLOAD_FORMAT", "{svix-id}.{body}")],
            "CALLSYNC_VAPI_MESSAGE_ID_HEADER",
            "svix-id",
        ),
        (
            vec![("PAYLOAD_FORMAT", "{url}{body}")],
            "CALLSYNC_VAPI_SERVER_URL",
            "Server URL",
        ),
        (
            vec![("SIGNATURE_HEADER", "x signature")],
            "CALLSYNC_VAPI_SIGNATURE_HEADER",
            "header name",
        ),
        (
            vec![("SECRET_IS_BASE64", "true")],
            "CALLSYNC_VAPI_SECRET",
            "not base64",
        ),
        (
            vec![("INCLUDE_TIMESTAMP", "sometimes")],
            "CALLSYNC_VAPI_INCLUDE_TIMESTAMP",
            "true or false",
        ),
    ] {
        let error = vapi(&options, "not base64!").unwrap_err();
        assert_eq!(error.var, var, "{options:?}: {error}");
        assert!(error.message.contains(says), "{options:?}: {error}");
        assert!(
            !error.to_string().contains("not base64!"),
            "the secret is never printed: {error}"
        );
    }
}

/// Vapi's bearer credential with another `headerName`, or `Authorization`
/// without the `Bearer ` prefix (`bearerPrefixEnabled: false`), named by
/// `CALLSYNC_VAPI_TOKEN_HEADER`.
#[test]
fn a_bearer_credential_with_its_own_header_is_read_with_or_without_the_prefix() {
    use callsync_shared::signature::Bearer;
    use callsync_shared::sources::vapi::token_places;

    let check_token = |header: Option<&str>, sent: &[(&str, &str)]| {
        let env = header.map_or_else(Env::default, |h| {
            Env::default().with("CALLSYNC_VAPI_TOKEN_HEADER", h)
        });
        let bearer = Bearer {
            tokens: vec![Secret::new("tok")],
            places: token_places(&env, Source::Vapi).unwrap(),
        };
        bearer.verify(&Request {
            headers: &sent,
            query: None,
            body: b"",
            now: OffsetDateTime::UNIX_EPOCH,
        })
    };
    assert_eq!(
        check_token(Some("X-Api-Key"), &[("x-api-key", "tok")]),
        Ok(())
    );
    assert_eq!(
        check_token(Some("X-Api-Key"), &[("x-api-key", "Bearer tok")]),
        Ok(())
    );
    assert_eq!(
        check_token(Some("Authorization"), &[("authorization", "tok")]),
        Ok(())
    );
    assert_eq!(
        check_token(Some("X-Api-Key"), &[("x-api-key", "tok2")]),
        Err(AuthError::TokenMismatch)
    );
    // Without the variable: the legacy header, or a bearer Authorization.
    assert_eq!(check_token(None, &[("x-vapi-secret", "tok")]), Ok(()));
    assert_eq!(
        check_token(None, &[("authorization", "Bearer tok")]),
        Ok(())
    );
    assert!(matches!(
        check_token(None, &[("authorization", "tok")]),
        Err(AuthError::MissingToken(_))
    ));
    let env = Env::default().with("CALLSYNC_VAPI_TOKEN_HEADER", "x api key");
    assert_eq!(
        token_places(&env, Source::Vapi).unwrap_err().var,
        "CALLSYNC_VAPI_TOKEN_HEADER"
    );
}
