//! Property tests of every signature and token check, as ingest runs them
//! (`SourceAuth::verify` over each source's configured credentials): random
//! requests never panic and are always refused with a reason; a correctly
//! signed body of any content passes, and the same request with one byte of
//! the body changed or its signature cut short does not.
//!
//! The case count is proptest's default (256 per property), a few seconds in
//! a debug build; `PROPTEST_CASES=1000000` runs the long version
//! (docs/testing.md). Needs neither broker nor database.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use callsync_ingest::auth::SourceAuth;
use callsync_shared::Source;
use callsync_shared::config::Env;
use callsync_tests::sources::{every_source_credentials, signed_headers};
use proptest::prelude::*;
use time::OffsetDateTime;

/// Every way a test ingest may hold a source's credentials: the test
/// secrets (signatures), tokens alone, and Vapi's HMAC with other options.
fn configurations() -> Vec<(&'static str, SourceAuth)> {
    let signed = Env::from_pairs(every_source_credentials());
    let tokens = Env::from_pairs([
        ("CALLSYNC_VOICEDOCK_TOKEN", "voicedock-token"),
        ("CALLSYNC_VAPI_TOKEN", "vapi-token"),
        ("CALLSYNC_BLAND_TOKEN", "bland-token"),
    ]);
    let vapi_options = Env::from_pairs([
        ("CALLSYNC_VAPI_SECRET", "dmFwaS1zZWNyZXQ="),
        ("CALLSYNC_VAPI_SECRET_IS_BASE64", "true"),
        ("CALLSYNC_VAPI_HMAC_ALGORITHM", "sha512"),
        ("CALLSYNC_VAPI_SIGNATURE_ENCODING", "base64"),
        (
            "CALLSYNC_VAPI_PAYLOAD_FORMAT",
            "{svix-id}.{timestamp}.{body}",
        ),
        ("CALLSYNC_VAPI_MESSAGE_ID_HEADER", "svix-id"),
        ("CALLSYNC_VAPI_SIGNATURE_PREFIX", "v1,"),
    ]);
    let vapi_bare = Env::from_pairs([
        ("CALLSYNC_VAPI_SECRET", "vapi-secret"),
        ("CALLSYNC_VAPI_INCLUDE_TIMESTAMP", "false"),
        ("CALLSYNC_VAPI_HMAC_ALGORITHM", "sha1"),
    ]);
    let mut all = Vec::new();
    for source in Source::ALL {
        all.push(("signed", SourceAuth::from_env(&signed, source).unwrap()));
        let tokened = SourceAuth::from_env(&tokens, source).unwrap();
        if tokened.is_enabled() {
            all.push(("tokens", tokened));
        }
    }
    for env in [vapi_options, vapi_bare] {
        all.push((
            "vapi options",
            SourceAuth::from_env(&env, Source::Vapi).unwrap(),
        ));
    }
    all
}

/// Header names the schemes read, and any others.
fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "x-signature",
            "x-timestamp",
            "x-webhook-signature",
            "x-webhook-timestamp",
            "x-retell-signature",
            "elevenlabs-signature",
            "authorization",
            "x-vapi-secret",
            "svix-id",
        ])
        .prop_map(str::to_owned),
        "[a-z][a-z0-9-]{0,20}",
    ]
}

/// Header values: arbitrary text, and text shaped like each scheme's.
fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,120}",
        "[0-9]{0,16}",
        ("[0-9]{0,14}", "[0-9a-fA-F]{0,130}").prop_map(|(t, d)| format!("v={t},d={d}")),
        ("[0-9]{0,12}", "[0-9a-f]{0,70}").prop_map(|(t, d)| format!("t={t},v0={d}")),
        "(sha256=|sha512=|sha1=|v1,)?[0-9a-f]{0,130}",
        "(Bearer |bearer )?[ -~]{0,40}",
        "[A-Za-z0-9+/=]{0,100}",
    ]
}

fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec((header_name(), header_value()), 0..6)
}

fn header_map(pairs: &[(impl AsRef<str>, impl AsRef<str>)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_ref().as_bytes()),
            HeaderValue::from_str(value.as_ref()),
        ) else {
            continue;
        };
        map.append(name, value);
    }
    map
}

proptest! {
    #[test]
    fn a_request_nobody_signed_is_refused_with_a_reason_never_a_panic(
        pairs in headers(),
        query in prop::option::of("[ -~]{0,60}"),
        body in prop::collection::vec(any::<u8>(), 0..1024),
        offset in -10_000_000_000i64..10_000_000_000,
    ) {
        let headers = header_map(&pairs);
        let now = OffsetDateTime::from_unix_timestamp(1_765_627_530 + offset / 1_000).unwrap();
        for (what, auth) in configurations() {
            let verdict = auth.verify(&headers, query.as_deref(), &body, now);
            let Err(error) = verdict else {
                return Err(TestCaseError::fail(format!("{} ({what}) accepted {pairs:?}", auth.source)));
            };
            prop_assert!(!error.to_string().trim().is_empty());
        }
    }

    #[test]
    fn any_body_signed_as_the_platform_signs_passes_and_one_changed_byte_does_not(
        body in prop::collection::vec(any::<u8>(), 0..4096),
        flip in any::<prop::sample::Index>(),
        source in prop::sample::select(Source::ALL.to_vec()),
    ) {
        let auth = SourceAuth::from_env(&Env::from_pairs(every_source_credentials()), source).unwrap();
        let headers = header_map(&signed_headers(source, &body));
        let now = OffsetDateTime::now_utc();
        prop_assert_eq!(auth.verify(&headers, None, &body, now), Ok(()));
        // The Post-Call format's token does not cover the body.
        if source != Source::Postcall && !body.is_empty() {
            let mut changed = body.clone();
            let i = flip.index(changed.len());
            changed[i] = changed[i].wrapping_add(1);
            prop_assert!(auth.verify(&headers, None, &changed, now).is_err());
        }
    }

    #[test]
    fn a_signature_cut_short_is_refused(
        body in prop::collection::vec(any::<u8>(), 0..512),
        keep in any::<prop::sample::Index>(),
        source in prop::sample::select(Source::ALL.to_vec()),
    ) {
        let auth = SourceAuth::from_env(&Env::from_pairs(every_source_credentials()), source).unwrap();
        let signed = signed_headers(source, &body);
        // The header that carries the signature or token (the last but the
        // content type), cut at any point.
        let carrier = signed.len() - 2;
        let mut cut = signed.clone();
        let value = &signed[carrier].1;
        cut[carrier].1 = value[..keep.index(value.len())].to_owned();
        let verdict = auth.verify(&header_map(&cut), None, &body, OffsetDateTime::now_utc());
        prop_assert!(verdict.is_err(), "{cut:?}");
    }
}
