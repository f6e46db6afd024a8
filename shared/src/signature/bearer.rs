//! Shared-secret tokens: `Authorization: Bearer <token>`, a platform's own
//! header carrying the token as is (Vapi's `X-Vapi-Secret`), or `?token=`.

use std::borrow::Cow;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{AuthError, Request, Verifier};
use crate::config::Secret;

/// Where a sender puts its token, besides `Authorization: Bearer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenPlaces {
    /// A header that carries the token itself, without a scheme.
    pub header: Option<&'static str>,
    /// Whether `?token=` is accepted, for senders that cannot set headers.
    pub query: bool,
    /// The places, for the error message when no token was presented.
    pub described: &'static str,
}

impl TokenPlaces {
    /// `Authorization: Bearer <token>` or `?token=`.
    pub const BEARER_OR_QUERY: TokenPlaces = TokenPlaces {
        header: None,
        query: true,
        described: "Authorization: Bearer <token> or ?token=",
    };
}

/// Any of `tokens`, presented in one of `places`.
#[derive(Debug, Clone)]
pub struct Bearer {
    pub tokens: Vec<Secret>,
    pub places: TokenPlaces,
}

impl Bearer {
    fn presented<'a>(&self, request: &'a Request<'_>) -> Option<Cow<'a, str>> {
        // A platform's own header carries the token as is, or after
        // `Bearer ` (Vapi's `bearerPrefixEnabled`, on by default for a
        // bearer credential, off for the legacy `X-Vapi-Secret`).
        let own = self
            .places
            .header
            .and_then(|name| request.header(name))
            .map(|value| bearer_token(value).unwrap_or(value))
            .filter(|t| !t.is_empty());
        own.or_else(|| request.header("authorization").and_then(bearer_token))
            .map(Cow::Borrowed)
            .or_else(|| {
                let query = request.query.filter(|_| self.places.query)?;
                form_urlencoded::parse(query.as_bytes())
                    .find(|(key, _)| key == "token")
                    .map(|(_, value)| value)
            })
    }
}

impl Verifier for Bearer {
    /// Both sides are hashed before the constant-time comparison so that
    /// neither the comparison time nor an early length check reveals a
    /// token's length.
    fn verify(&self, request: &Request<'_>) -> Result<(), AuthError> {
        let presented = self
            .presented(request)
            .ok_or(AuthError::MissingToken(self.places.described))?;
        let presented_hash = Sha256::digest(presented.as_bytes());
        let matched = self
            .tokens
            .iter()
            .fold(subtle::Choice::from(0), |acc, token| {
                let expected = Sha256::digest(token.expose().as_bytes());
                acc | expected.as_slice().ct_eq(presented_hash.as_slice())
            });
        if bool::from(matched) {
            Ok(())
        } else {
            Err(AuthError::TokenMismatch)
        }
    }
}

/// The check of a token sent as `Authorization: Bearer` or `?token=`, as a
/// source's credential builds it (tokens have no replay window).
pub fn bearer_or_query(tokens: Vec<Secret>) -> Arc<dyn Verifier> {
    Arc::new(Bearer {
        tokens,
        places: TokenPlaces::BEARER_OR_QUERY,
    })
}

/// Extracts the token of an `Authorization: Bearer <token>` header value.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;

    fn bearer(places: TokenPlaces) -> Bearer {
        Bearer {
            tokens: vec![Secret::new("old-token"), Secret::new("new token")],
            places,
        }
    }

    fn check(b: &Bearer, headers: &[(&str, &str)], query: Option<&str>) -> Result<(), AuthError> {
        b.verify(&Request {
            headers: &headers,
            query,
            body: b"",
            now: OffsetDateTime::UNIX_EPOCH,
        })
    }

    #[test]
    fn any_configured_token_is_accepted_during_rotation() {
        let b = bearer(TokenPlaces::BEARER_OR_QUERY);
        assert_eq!(
            check(&b, &[("Authorization", "Bearer old-token")], None),
            Ok(())
        );
        assert_eq!(
            check(&b, &[("authorization", "bearer new token")], None),
            Ok(())
        );
        assert_eq!(
            check(&b, &[("Authorization", "Bearer old-token2")], None),
            Err(AuthError::TokenMismatch)
        );
        assert_eq!(
            check(&b, &[("Authorization", "Bearer old-toke")], None),
            Err(AuthError::TokenMismatch),
            "a truncated token"
        );
    }

    #[test]
    fn a_token_may_come_percent_encoded_in_the_query_string() {
        let b = bearer(TokenPlaces::BEARER_OR_QUERY);
        assert_eq!(check(&b, &[], Some("a=1&token=new%20token")), Ok(()));
        assert_eq!(
            check(&b, &[], Some("token=nope")),
            Err(AuthError::TokenMismatch)
        );
        let header_only = bearer(TokenPlaces {
            query: false,
            ..TokenPlaces::BEARER_OR_QUERY
        });
        assert!(matches!(
            check(&header_only, &[], Some("token=old-token")),
            Err(AuthError::MissingToken(_))
        ));
    }

    #[test]
    fn a_platform_header_carries_the_token_without_a_scheme() {
        let b = bearer(TokenPlaces {
            header: Some("X-Vapi-Secret"),
            query: false,
            described: "X-Vapi-Secret or Authorization: Bearer <token>",
        });
        assert_eq!(check(&b, &[("x-vapi-secret", "old-token")], None), Ok(()));
        assert_eq!(
            check(&b, &[("x-vapi-secret", "Bearer old-token")], None),
            Ok(())
        );
        assert_eq!(
            check(&b, &[("Authorization", "Bearer old-token")], None),
            Ok(())
        );
        assert_eq!(
            check(&b, &[], None).map_err(|e| e.to_string()),
            Err("missing bearer token (X-Vapi-Secret or Authorization: Bearer <token>)".to_owned())
        );
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_other_schemes_are_not_tokens() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
    }
}
