//! Who may use the console: a token from `CALLSYNC_CONSOLE_TOKEN`, given
//! once to the login form (which sets a session cookie) or on every request
//! as `Authorization: Bearer <token>`.
//!
//! The cookie never holds the token. It holds a random session id, its
//! expiry and an HMAC of both under a key derived from the token that
//! logged in, so any console replica can verify it without shared storage,
//! and removing a token from the list during a rotation ends the sessions
//! it opened. Every state-changing request carries a CSRF token: the HMAC
//! of the session id under the same key, rendered into each form. All
//! comparisons are constant-time and try every key, so that timing reveals
//! neither a match nor which token it was.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use callsync_shared::config::Secret;
use callsync_shared::signature::hmac_sha256;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use super::Console;
use super::refusal::Refusal;
use super::session::{SESSION_SECS, Session, cookie_value};

/// The keys derived from the configured tokens, in their order.
#[derive(Clone)]
pub struct Keys {
    tokens: Arc<Vec<Secret>>,
    keys: Arc<Vec<[u8; 32]>>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keys({} tokens)", self.keys.len())
    }
}

impl Keys {
    pub fn new(tokens: &[Secret]) -> Self {
        let keys = tokens
            .iter()
            .map(|t| hmac_sha256(t.expose().as_bytes(), &[b"callsync-console-session-v1"]))
            .collect();
        Self {
            tokens: Arc::new(tokens.to_vec()),
            keys: Arc::new(keys),
        }
    }

    /// The key of the token `presented` is, if it is one. Every token is
    /// compared (by their SHA-256, so that lengths do not leak either).
    fn key_of_token(&self, presented: &str) -> Option<[u8; 32]> {
        let presented = hmac_sha256(b"callsync-console-token", &[presented.as_bytes()]);
        let mut found = None;
        for (token, key) in self.tokens.iter().zip(self.keys.iter()) {
            let expected = hmac_sha256(b"callsync-console-token", &[token.expose().as_bytes()]);
            if bool::from(expected.ct_eq(&presented)) {
                found = Some(*key);
            }
        }
        found
    }

    /// Checks a token given to the login form and opens a session: the
    /// cookie's value, or `None` when the token is not one of ours.
    pub fn login(&self, presented: &str, now: OffsetDateTime) -> Option<String> {
        let key = self.key_of_token(presented)?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let expires = now.unix_timestamp() + SESSION_SECS;
        let mac = session_mac(&key, &id, expires);
        Some(format!("{id}.{expires}.{}", hex::encode(mac)))
    }

    /// The session a cookie's value proves, if it is unexpired and was
    /// signed under one of the current tokens' keys.
    fn verify_cookie(&self, value: &str, now: OffsetDateTime) -> Option<Session> {
        let mut parts = value.splitn(3, '.');
        let (id, expires, mac) = (parts.next()?, parts.next()?, parts.next()?);
        let expires: i64 = expires.parse().ok()?;
        if expires <= now.unix_timestamp() || id.is_empty() || id == "bearer" {
            return None;
        }
        let mac = hex::decode(mac).ok()?;
        let mut found = None;
        for key in self.keys.iter() {
            if bool::from(session_mac(key, id, expires).as_slice().ct_eq(&mac)) {
                found = Some(*key);
            }
        }
        found.map(|key| Session::new(key, id.to_owned()))
    }
}

fn session_mac(key: &[u8; 32], id: &str, expires: i64) -> [u8; 32] {
    hmac_sha256(
        key,
        &[
            b"session|",
            id.as_bytes(),
            b"|",
            expires.to_string().as_bytes(),
        ],
    )
}

impl FromRequestParts<Arc<Console>> for Session {
    type Rejection = Refusal;

    async fn from_request_parts(
        parts: &mut Parts,
        console: &Arc<Console>,
    ) -> Result<Self, Self::Rejection> {
        if let Some(header) = parts.headers.get(AUTHORIZATION) {
            let token = header
                .to_str()
                .ok()
                .and_then(|h| h.strip_prefix("Bearer "))
                .map(str::trim)
                .unwrap_or_default();
            return console
                .keys
                .key_of_token(token)
                .map(|key| Session::new(key, "bearer".to_owned()))
                .ok_or(Refusal::BadToken);
        }
        let now = OffsetDateTime::now_utc();
        match cookie_value(parts) {
            Some(value) => console
                .keys
                .verify_cookie(value, now)
                .ok_or_else(|| Refusal::LoginAgain(return_path(parts))),
            None => Err(Refusal::Login(return_path(parts))),
        }
    }
}

/// Where to come back to after logging in: this page, for a GET.
fn return_path(parts: &Parts) -> Option<String> {
    (parts.method == axum::http::Method::GET)
        .then(|| parts.uri.path_and_query().map(|p| p.as_str().to_owned()))
        .flatten()
}

/// A `next` parameter that is a path on this console (not `//host`, which
/// a browser would read as another site).
pub fn safe_next(next: Option<&str>) -> &str {
    // Browsers drop tabs and newlines from addresses and read `\` as `/`,
    // so `/\t/evil.example` would become `//evil.example`: only printable
    // ASCII without backslashes is kept.
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && n.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') =>
        {
            n
        }
        _ => "/",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::new(&[
            Secret::new("old-token-0123456789"),
            Secret::new("new-token-0123456789"),
        ])
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    #[test]
    fn a_session_cookie_holds_no_token_and_verifies_under_either_rotated_token() {
        for token in ["old-token-0123456789", "new-token-0123456789"] {
            let cookie = keys().login(token, now()).unwrap();
            assert!(!cookie.contains(token));
            assert!(keys().verify_cookie(&cookie, now()).is_some());
        }
        assert_eq!(keys().login("not-a-token-0123456789", now()), None);
    }

    #[test]
    fn a_removed_token_ends_its_sessions() {
        let cookie = keys().login("old-token-0123456789", now()).unwrap();
        let rotated = Keys::new(&[Secret::new("new-token-0123456789")]);
        assert!(rotated.verify_cookie(&cookie, now()).is_none());
    }

    #[test]
    fn an_expired_or_altered_cookie_is_refused() {
        let cookie = keys().login("new-token-0123456789", now()).unwrap();
        let later = now() + time::Duration::seconds(SESSION_SECS + 1);
        assert!(keys().verify_cookie(&cookie, later).is_none());
        let (id, rest) = cookie.split_once('.').unwrap();
        // The id's last hex digit changed (to another one whatever it was:
        // one time in sixteen it is already `f`).
        let last = if id.ends_with('f') { '0' } else { 'f' };
        let forged = format!("{}{last}.{rest}", &id[..id.len() - 1]);
        assert_ne!(forged, cookie);
        assert!(keys().verify_cookie(&forged, now()).is_none());
        let (head, _) = cookie.rsplit_once('.').unwrap();
        let extended = format!("{}9.{}", head, "00".repeat(32));
        assert!(keys().verify_cookie(&extended, now()).is_none());
    }

    #[test]
    fn the_csrf_token_is_bound_to_the_session() {
        let a = keys()
            .verify_cookie(&keys().login("new-token-0123456789", now()).unwrap(), now())
            .unwrap();
        let b = keys()
            .verify_cookie(&keys().login("new-token-0123456789", now()).unwrap(), now())
            .unwrap();
        assert!(a.check_csrf(&a.csrf()).is_ok());
        assert!(a.check_csrf(&b.csrf()).is_err());
        assert!(a.check_csrf("").is_err());
    }

    #[test]
    fn only_local_paths_are_returned_to_after_login() {
        assert_eq!(safe_next(Some("/calls?q=1")), "/calls?q=1");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(Some("/\t/evil.example")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }
}
