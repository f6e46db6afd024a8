//! Per-source authentication: which credentials a source requires and the
//! check of one request against them.

use axum::http::HeaderMap;
use callsync_shared::Source;
use callsync_shared::config::{ConfigError, Env, Secret};
use callsync_shared::signature::{self, AuthError, SIGNATURE_HEADER, TIMESTAMP_HEADER};

/// The credentials configured for one source.
#[derive(Debug, Clone)]
pub struct SourceAuth {
    /// HMAC secrets (seed 004 scheme); any one may match.
    pub secrets: Vec<Secret>,
    /// Bearer tokens; any one may match.
    pub tokens: Vec<Secret>,
    pub tolerance_secs: u64,
    /// Accept requests without credentials when none are configured.
    pub allow_unauthenticated: bool,
}

impl SourceAuth {
    pub fn from_env(env: &Env, source: Source) -> Result<Self, ConfigError> {
        let name = source.env_name();
        // postcall's format has no signature of its own: only tokens apply.
        let (secrets, tolerance_secs) = match source {
            Source::Postcall => (Vec::new(), 0),
            Source::Voicedock => (
                env.secrets(&format!("CALLSYNC_{name}_SECRET")),
                env.parse(
                    &format!("CALLSYNC_{name}_TOLERANCE_SECS"),
                    300,
                    "a number of seconds",
                )?,
            ),
        };
        Ok(Self {
            secrets,
            tokens: env.secrets(&format!("CALLSYNC_{name}_TOKEN")),
            tolerance_secs,
            allow_unauthenticated: env
                .bool(&format!("CALLSYNC_{name}_ALLOW_UNAUTHENTICATED"), false)?,
        })
    }

    /// A source with no credentials is refused unless explicitly opened, so
    /// that forgetting a secret never silently exposes an open endpoint.
    pub fn is_enabled(&self) -> bool {
        !self.secrets.is_empty() || !self.tokens.is_empty() || self.allow_unauthenticated
    }

    /// Checks every configured credential; all must pass.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        query_token: Option<&str>,
        body: &[u8],
        now_unix: i64,
    ) -> Result<(), AuthError> {
        if !self.secrets.is_empty() {
            signature::verify_timestamped(
                &self.secrets,
                header(headers, TIMESTAMP_HEADER),
                header(headers, SIGNATURE_HEADER),
                body,
                now_unix,
                self.tolerance_secs,
            )?;
        }
        if !self.tokens.is_empty() {
            let presented = header(headers, "authorization")
                .and_then(signature::bearer_token)
                .or(query_token);
            signature::verify_token(&self.tokens, presented)?;
        }
        Ok(())
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn both() -> SourceAuth {
        SourceAuth {
            secrets: vec![Secret::new("k")],
            tokens: vec![Secret::new("tok")],
            tolerance_secs: 300,
            allow_unauthenticated: false,
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    // sha256= HMAC-SHA256(b'k', b'1.body'), computed with Python's hmac module.
    const SIG: &str = "sha256=6e005234e2e9b8d2d4963e861925cbc22f29be0a65e4d9ba7cd6b8af0115dae2";

    #[test]
    fn with_both_credentials_configured_both_are_required() {
        let auth = both();
        let signed_only = headers(&[(TIMESTAMP_HEADER, "1"), (SIGNATURE_HEADER, SIG)]);
        assert_eq!(
            auth.verify(&signed_only, None, b"body", 1),
            Err(AuthError::MissingToken)
        );
        let token_only = headers(&[("authorization", "Bearer tok")]);
        assert!(matches!(
            auth.verify(&token_only, None, b"body", 1),
            Err(AuthError::MissingHeader(_))
        ));
        let all = headers(&[
            (TIMESTAMP_HEADER, "1"),
            (SIGNATURE_HEADER, SIG),
            ("authorization", "Bearer tok"),
        ]);
        assert_eq!(auth.verify(&all, None, b"body", 1), Ok(()));
    }

    #[test]
    fn a_token_may_come_in_the_query_string() {
        let auth = SourceAuth {
            secrets: vec![],
            ..both()
        };
        assert_eq!(auth.verify(&HeaderMap::new(), Some("tok"), b"", 0), Ok(()));
        assert_eq!(
            auth.verify(&HeaderMap::new(), Some("nope"), b"", 0),
            Err(AuthError::TokenMismatch)
        );
    }

    #[test]
    fn a_source_without_credentials_is_disabled_unless_opened() {
        let none = SourceAuth {
            secrets: vec![],
            tokens: vec![],
            tolerance_secs: 300,
            allow_unauthenticated: false,
        };
        assert!(!none.is_enabled());
        let open = SourceAuth {
            allow_unauthenticated: true,
            ..none
        };
        assert!(open.is_enabled());
        assert_eq!(open.verify(&HeaderMap::new(), None, b"", 0), Ok(()));
    }
}
