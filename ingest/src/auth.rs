//! Per-source authentication: the checks a source's configured credentials
//! require, built from the source's [`Provider`](callsync_shared::sources::Provider),
//! and the check of one request against all of them.

use std::sync::Arc;

use axum::http::HeaderMap;
use callsync_shared::Source;
use callsync_shared::config::{ConfigError, Env};
use callsync_shared::signature::{AuthError, Headers, Request, Verifier};
use callsync_shared::sources::Configured;
use time::OffsetDateTime;

/// The credentials configured for one source.
#[derive(Debug, Clone)]
pub struct SourceAuth {
    pub source: Source,
    /// One check per configured credential; all must pass.
    checks: Vec<Arc<dyn Verifier>>,
    /// The replay window of the source's timestamped schemes, if it has any.
    pub tolerance_secs: Option<u64>,
    /// Accept requests without credentials when none are configured.
    pub allow_unauthenticated: bool,
    /// What a request let in has passed, in operators' words: each
    /// configured credential's scheme and variable.
    pub verified_by: String,
}

impl SourceAuth {
    /// Reads `CALLSYNC_<SOURCE>_<credential>` for each credential the source
    /// accepts, its tolerance and `CALLSYNC_<SOURCE>_ALLOW_UNAUTHENTICATED`.
    pub fn from_env(env: &Env, source: Source) -> Result<Self, ConfigError> {
        let provider = source.provider();
        let tolerance_secs = provider
            .tolerance_secs
            .map(|default| {
                env.parse(
                    &source.var("TOLERANCE_SECS"),
                    default,
                    "a number of seconds",
                )
            })
            .transpose()?;
        let mut checks = Vec::new();
        let mut schemes = Vec::new();
        for credential in provider.credentials {
            let variable = source.var(credential.suffix);
            let values = env.secrets(&variable);
            if values.is_empty() {
                continue;
            }
            checks.push((credential.verifier)(Configured {
                source,
                values,
                tolerance_secs: tolerance_secs.unwrap_or(0),
                env,
            })?);
            schemes.push(format!("{} ({variable})", credential.scheme));
        }
        let verified_by = if schemes.is_empty() {
            format!("nothing: {} is set", source.var("ALLOW_UNAUTHENTICATED"))
        } else {
            schemes.join(" and ")
        };
        Ok(Self {
            source,
            checks,
            tolerance_secs,
            allow_unauthenticated: env.bool(&source.var("ALLOW_UNAUTHENTICATED"), false)?,
            verified_by,
        })
    }

    /// A source with no credentials is refused unless explicitly opened, so
    /// that forgetting a secret never silently exposes an open endpoint.
    pub fn is_enabled(&self) -> bool {
        !self.checks.is_empty() || self.allow_unauthenticated
    }

    /// The variables that configure this source's credentials, for the
    /// message that tells an operator how to enable it.
    pub fn credential_vars(&self) -> String {
        self.source
            .provider()
            .credentials
            .iter()
            .map(|c| self.source.var(c.suffix))
            .collect::<Vec<_>>()
            .join(" or ")
    }

    /// Checks every configured credential on the raw request; all must pass.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        body: &[u8],
        now: OffsetDateTime,
    ) -> Result<(), AuthError> {
        let request = Request {
            headers: &HttpHeaders(headers),
            query,
            body,
            now,
        };
        self.checks
            .iter()
            .try_for_each(|check| check.verify(&request))
    }
}

/// An HTTP request's headers as verifiers read them.
struct HttpHeaders<'a>(&'a HeaderMap);

impl Headers for HttpHeaders<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(|v| v.to_str().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use callsync_shared::signature::{SIGNATURE_HEADER, TIMESTAMP_HEADER};

    fn voicedock(pairs: &[(&str, &str)]) -> SourceAuth {
        let env = Env::from_pairs(pairs.iter().copied());
        SourceAuth::from_env(&env, Source::Voicedock).unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    fn at(unix: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(unix).unwrap()
    }

    // sha256= HMAC-SHA256(b'k', b'1.body'), computed with Python's hmac module.
    const SIG: &str = "sha256=6e005234e2e9b8d2d4963e861925cbc22f29be0a65e4d9ba7cd6b8af0115dae2";

    #[test]
    fn with_both_credentials_configured_both_are_required() {
        let auth = voicedock(&[
            ("CALLSYNC_VOICEDOCK_SECRET", "k"),
            ("CALLSYNC_VOICEDOCK_TOKEN", "tok"),
        ]);
        let signed_only = headers(&[(TIMESTAMP_HEADER, "1"), (SIGNATURE_HEADER, SIG)]);
        assert!(matches!(
            auth.verify(&signed_only, None, b"body", at(1)),
            Err(AuthError::MissingToken(_))
        ));
        let token_only = headers(&[("authorization", "Bearer tok")]);
        assert!(matches!(
            auth.verify(&token_only, None, b"body", at(1)),
            Err(AuthError::MissingHeader(_))
        ));
        let all = headers(&[
            (TIMESTAMP_HEADER, "1"),
            (SIGNATURE_HEADER, SIG),
            ("authorization", "Bearer tok"),
        ]);
        assert_eq!(auth.verify(&all, None, b"body", at(1)), Ok(()));
    }

    #[test]
    fn the_tolerance_variable_sets_the_replay_window() {
        let auth = voicedock(&[
            ("CALLSYNC_VOICEDOCK_SECRET", "k"),
            ("CALLSYNC_VOICEDOCK_TOLERANCE_SECS", "10"),
        ]);
        assert_eq!(auth.tolerance_secs, Some(10));
        let signed = headers(&[(TIMESTAMP_HEADER, "1"), (SIGNATURE_HEADER, SIG)]);
        assert_eq!(auth.verify(&signed, None, b"body", at(11)), Ok(()));
        assert!(matches!(
            auth.verify(&signed, None, b"body", at(12)),
            Err(AuthError::StaleTimestamp { .. })
        ));
    }

    #[test]
    fn a_token_may_come_in_the_query_string() {
        let auth = voicedock(&[("CALLSYNC_VOICEDOCK_TOKEN", "tok")]);
        let none = HeaderMap::new();
        assert_eq!(auth.verify(&none, Some("token=tok"), b"", at(0)), Ok(()));
        assert_eq!(
            auth.verify(&none, Some("token=nope"), b"", at(0)),
            Err(AuthError::TokenMismatch)
        );
    }

    #[test]
    fn a_source_without_credentials_is_disabled_unless_opened() {
        let none = voicedock(&[]);
        assert!(!none.is_enabled());
        assert_eq!(
            none.credential_vars(),
            "CALLSYNC_VOICEDOCK_SECRET or CALLSYNC_VOICEDOCK_TOKEN"
        );
        let open = voicedock(&[("CALLSYNC_VOICEDOCK_ALLOW_UNAUTHENTICATED", "true")]);
        assert!(open.is_enabled());
        assert_eq!(open.verify(&HeaderMap::new(), None, b"", at(0)), Ok(()));
    }

    #[test]
    fn what_a_request_let_in_was_verified_by_names_each_configured_scheme_and_variable() {
        let both = voicedock(&[
            ("CALLSYNC_VOICEDOCK_SECRET", "the-hmac-secret"),
            ("CALLSYNC_VOICEDOCK_TOKEN", "the-bearer-token"),
        ]);
        assert_eq!(
            both.verified_by,
            "a timestamped HMAC-SHA256 signature (CALLSYNC_VOICEDOCK_SECRET) and \
             a token (Authorization: Bearer or ?token=) (CALLSYNC_VOICEDOCK_TOKEN)"
        );
        assert!(!both.verified_by.contains("the-"), "never a secret");
        let open = voicedock(&[("CALLSYNC_VOICEDOCK_ALLOW_UNAUTHENTICATED", "true")]);
        assert_eq!(
            open.verified_by,
            "nothing: CALLSYNC_VOICEDOCK_ALLOW_UNAUTHENTICATED is set"
        );
    }

    #[test]
    fn a_source_without_a_timestamped_scheme_reads_no_tolerance() {
        let env = Env::default().with("CALLSYNC_POSTCALL_TOLERANCE_SECS", "not a number");
        let auth = SourceAuth::from_env(&env, Source::Postcall).unwrap();
        assert_eq!(auth.tolerance_secs, None);
    }
}
