//! A console session and its cookie: who signed in (the key of the token
//! that logged in and a random session id), the CSRF token every form of
//! the session carries, and the `Set-Cookie` values that open and end it.
//! How a request proves its session is `auth.rs`.

use axum::http::header::COOKIE;
use axum::http::request::Parts;
use callsync_shared::signature::hmac_sha256;
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub const COOKIE_NAME: &str = "callsync_console";

/// How long a login lasts.
pub const SESSION_SECS: i64 = 12 * 3_600;

/// Who is making the request: which token's key, and which session (the
/// string `bearer` for a request that presented the token itself).
#[derive(Debug, Clone)]
pub struct Session {
    key: [u8; 32],
    id: String,
}

/// A state-changing request without its session's CSRF token.
#[derive(Debug)]
pub struct CsrfMismatch;

impl Session {
    pub(super) fn new(key: [u8; 32], id: String) -> Self {
        Self { key, id }
    }

    /// The CSRF token of this session, rendered into every form.
    pub fn csrf(&self) -> String {
        hex::encode(hmac_sha256(&self.key, &[b"csrf|", self.id.as_bytes()]))
    }

    /// Refuses a state-changing request whose form did not carry this
    /// session's CSRF token.
    pub fn check_csrf(&self, presented: &str) -> Result<(), CsrfMismatch> {
        let expected = self.csrf();
        if bool::from(expected.as_bytes().ct_eq(presented.as_bytes())) {
            Ok(())
        } else {
            Err(CsrfMismatch)
        }
    }
}

/// The value of the session cookie in a `Cookie` header, if any.
pub fn cookie_value(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value)
}

/// `Set-Cookie` for a new session: never readable by scripts, never sent
/// over plain HTTP (browsers treat localhost as secure) nor from another site.
pub fn set_cookie(value: &str) -> String {
    format!(
        "{COOKIE_NAME}={value}; Path=/; Max-Age={SESSION_SECS}; Secure; HttpOnly; SameSite=Strict"
    )
}

/// `Set-Cookie` that ends the session in this browser.
pub fn clear_cookie() -> String {
    format!("{COOKIE_NAME}=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Strict")
}
