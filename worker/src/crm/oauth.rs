//! OAuth 2.0 access tokens that renew themselves.
//!
//! Salesforce sessions expire (two hours by default) and GoHighLevel's
//! access tokens after a day, and a worker runs for months: a fixed access
//! token would turn every call after the expiry into a 401. With client
//! credentials (or a refresh token) the worker fetches a token when it first
//! needs one and a fresh one when the CRM answers 401, then repeats the
//! refused request once. A 401 means the request was not applied, so
//! repeating it cannot duplicate anything.
//!
//! Renewal is single-flight: every request that saw the expired token waits
//! for the one renewal, instead of each fetching its own token. Where the
//! token endpoint rotates refresh tokens (GoHighLevel: each exchange returns
//! a new one and spends the old), the newest lives in the ledger
//! ([`RefreshTokenStore`]) and renewals are single-flight across replicas.

use std::future::Future;

use callsync_shared::config::Secret;
use reqwest::StatusCode;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tokio::sync::Mutex;

use super::CrmError;
use super::answer::{classify_transport, excerpt};

/// How the worker obtains a new access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// `grant_type=client_credentials`: a server-to-server integration.
    ClientCredentials,
    /// `grant_type=refresh_token`: a refresh token issued to a user.
    RefreshToken(Secret),
}

/// An OAuth client: where and with what to ask for a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthClient {
    /// e.g. `https://acme.my.salesforce.com/services/oauth2/token`.
    pub token_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub grant: Grant,
    /// Fields the vendor's token endpoint wants besides the standard ones
    /// (GoHighLevel: `user_type=Location`).
    pub extra_form: &'static [(&'static str, &'static str)],
}

/// How a CRM that speaks OAuth is authenticated: an access token used as
/// given, or an OAuth client that fetches (and renews) its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// A token to start with; with no client it is the only one.
    pub token: Option<Secret>,
    /// How to get new tokens, when the CRM's app is configured.
    pub oauth: Option<OAuthClient>,
}

/// A token, numbered so that a renewal can tell whether somebody else has
/// already replaced the token it found expired.
#[derive(Debug, Clone)]
pub struct Token {
    pub generation: u64,
    pub secret: Secret,
}

#[derive(Debug)]
struct Current {
    generation: u64,
    token: Option<Secret>,
}

/// The access token in use, and how to renew it (if at all).
#[derive(Debug)]
pub struct TokenSource {
    client: Option<OAuthClient>,
    /// Where rotated refresh tokens are kept, for endpoints that rotate them.
    store: Option<RefreshTokenStore>,
    current: Mutex<Current>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    /// Present when the endpoint rotates refresh tokens: the one to use
    /// next time (the one just used no longer works).
    #[serde(default)]
    refresh_token: Option<String>,
}

/// What one exchange at the token endpoint issued.
#[derive(Debug)]
pub struct Issued {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
}

#[derive(Deserialize)]
struct TokenError {
    error: String,
    #[serde(default)]
    error_description: String,
}

impl TokenSource {
    /// A token that is used as given: `initial` must be set when there is no
    /// client to fetch one with.
    pub fn new(initial: Option<Secret>, client: Option<OAuthClient>) -> Self {
        Self {
            client,
            store: None,
            current: Mutex::new(Current {
                generation: 0,
                token: initial,
            }),
        }
    }

    /// Keeps rotated refresh tokens in `store` (see [`RefreshTokenStore`]).
    #[must_use]
    pub fn rotating_in(mut self, store: Option<RefreshTokenStore>) -> Self {
        self.store = store;
        self
    }

    /// Whether a refused token can be replaced.
    pub fn renewable(&self) -> bool {
        self.client.is_some()
    }

    /// The token to send, fetching the first one if there is none yet.
    pub async fn current(&self, http: &reqwest::Client) -> Result<Token, CrmError> {
        let mut current = self.current.lock().await;
        if let Some(secret) = &current.token {
            return Ok(Token {
                generation: current.generation,
                secret: secret.clone(),
            });
        }
        self.fetch_into(&mut current, http).await
    }

    /// A new token to replace `refused`, or `None` when tokens cannot be
    /// renewed. When another request has already renewed it, that token is
    /// returned without asking the token endpoint again.
    pub async fn renew(
        &self,
        refused: &Token,
        http: &reqwest::Client,
    ) -> Result<Option<Token>, CrmError> {
        if self.client.is_none() {
            return Ok(None);
        }
        let mut current = self.current.lock().await;
        if current.generation != refused.generation
            && let Some(secret) = &current.token
        {
            return Ok(Some(Token {
                generation: current.generation,
                secret: secret.clone(),
            }));
        }
        self.fetch_into(&mut current, http).await.map(Some)
    }

    async fn fetch_into(
        &self,
        current: &mut Current,
        http: &reqwest::Client,
    ) -> Result<Token, CrmError> {
        let Some(client) = &self.client else {
            // Configuration guarantees a token or a client; say so if not.
            return Err(CrmError::Unauthorized {
                status: 401,
                detail: "no access token and no OAuth client configured".to_owned(),
            });
        };
        let secret = match (&client.grant, &self.store) {
            (Grant::RefreshToken(configured), Some(store)) => {
                store
                    .exchange(configured, |refresh| fetch(client, http, Some(refresh)))
                    .await?
            }
            (Grant::RefreshToken(configured), None) => {
                fetch(client, http, Some(configured.clone()))
                    .await?
                    .access_token
            }
            (Grant::ClientCredentials, _) => fetch(client, http, None).await?.access_token,
        };
        current.generation += 1;
        current.token = Some(secret.clone());
        tracing::info!(
            generation = current.generation,
            "obtained a CRM access token"
        );
        Ok(Token {
            generation: current.generation,
            secret,
        })
    }
}

/// One request to the token endpoint (RFC 6749 §4.4 and §6), with
/// `refresh` for the refresh-token grant.
async fn fetch(
    client: &OAuthClient,
    http: &reqwest::Client,
    refresh: Option<Secret>,
) -> Result<Issued, CrmError> {
    let form = token_form(client, refresh.as_ref());
    let response = http
        .post(&client.token_url)
        .form(&form)
        .send()
        .await
        .map_err(transport)?;
    let status = response.status();
    let body = response.bytes().await.map_err(transport)?;
    if !status.is_success() {
        return Err(token_refused(status, &body));
    }
    let token: TokenResponse = serde_json::from_slice(&body)
        .map_err(|e| CrmError::InvalidResponse(format!("token endpoint answered {status}: {e}")))?;
    Ok(Issued {
        access_token: Secret::new(token.access_token),
        refresh_token: token.refresh_token.map(Secret::new),
    })
}

/// The token request's form: the client, the grant, and the vendor's extras.
fn token_form<'a>(client: &'a OAuthClient, refresh: Option<&'a Secret>) -> Vec<(&'a str, &'a str)> {
    let mut form = vec![
        ("client_id", client.client_id.as_str()),
        ("client_secret", client.client_secret.expose()),
    ];
    match refresh {
        None => form.push(("grant_type", "client_credentials")),
        Some(token) => {
            form.push(("grant_type", "refresh_token"));
            form.push(("refresh_token", token.expose()));
        }
    }
    form.extend(client.extra_form.iter().copied());
    form
}

/// What the token endpoint's refusal means.
fn token_refused(status: StatusCode, body: &[u8]) -> CrmError {
    let detail = match serde_json::from_slice::<TokenError>(body) {
        Ok(e) => format!("token endpoint: {} {}", e.error, e.error_description),
        Err(_) => format!(
            "token endpoint: {}",
            excerpt(String::from_utf8_lossy(body).into_owned())
        ),
    };
    match status.as_u16() {
        // invalid_client / invalid_grant: wrong or revoked credentials.
        400 | 401 | 403 => CrmError::Unauthorized {
            status: status.as_u16(),
            detail,
        },
        // Asking for a token changes nothing in the CRM: always safe to repeat.
        _ => CrmError::Unavailable {
            detail: format!("{status}: {detail}"),
            applied: super::Applied::No,
        },
    }
}

/// The newest refresh token of a CRM whose token endpoint rotates them, in
/// the ledger (table `oauth_refresh_tokens`).
///
/// An exchange holds the CRM's row locked from reading the newest token to
/// storing the one the endpoint returned, so two replicas never spend the
/// same token (the second waits and then uses the first one's result). The
/// configured refresh token seeds the row; an operator who configures a
/// different one (after installing the app again) replaces it.
///
/// One gap remains: if the database fails between the endpoint's answer and
/// the commit, the new refresh token is lost and the stored one is spent.
/// The worker then pauses on `invalid_grant`, and a new refresh token must be
/// configured (docs/operations.md, "The CRM rejected our token", says how).
#[derive(Debug, Clone)]
pub struct RefreshTokenStore {
    pool: PgPool,
    crm: &'static str,
}

impl RefreshTokenStore {
    pub fn new(pool: PgPool, crm: &'static str) -> Self {
        Self { pool, crm }
    }

    /// Runs `exchange` with the refresh token to use now, stores the one it
    /// returns, and gives back the access token.
    pub async fn exchange<F, Fut>(
        &self,
        configured: &Secret,
        exchange: F,
    ) -> Result<Secret, CrmError>
    where
        F: FnOnce(Secret) -> Fut,
        Fut: Future<Output = Result<Issued, CrmError>>,
    {
        let fingerprint = hex::encode(Sha256::digest(configured.expose().as_bytes()));
        let mut tx = self.pool.begin().await.map_err(ledger)?;
        sqlx::query(
            "INSERT INTO oauth_refresh_tokens (crm, configured, refresh_token) VALUES ($1, $2, $3)
             ON CONFLICT (crm) DO NOTHING",
        )
        .bind(self.crm)
        .bind(&fingerprint)
        .bind(configured.expose())
        .execute(&mut *tx)
        .await
        .map_err(ledger)?;
        let (stored_for, stored): (String, String) = sqlx::query_as(
            "SELECT configured, refresh_token FROM oauth_refresh_tokens WHERE crm = $1 FOR UPDATE",
        )
        .bind(self.crm)
        .fetch_one(&mut *tx)
        .await
        .map_err(ledger)?;
        let current = if stored_for == fingerprint {
            Secret::new(stored)
        } else {
            tracing::info!("a new refresh token is configured; it replaces the stored one");
            configured.clone()
        };
        let issued = exchange(current.clone()).await?;
        let next = issued.refresh_token.unwrap_or(current);
        sqlx::query(
            "UPDATE oauth_refresh_tokens SET configured = $2, refresh_token = $3, rotated_at = now()
             WHERE crm = $1",
        )
        .bind(self.crm)
        .bind(&fingerprint)
        .bind(next.expose())
        .execute(&mut *tx)
        .await
        .map_err(ledger)?;
        tx.commit().await.map_err(ledger)?;
        Ok(issued.access_token)
    }
}

/// The ledger is unreachable: no token can be exchanged safely right now.
fn ledger(error: sqlx::Error) -> CrmError {
    CrmError::Unavailable {
        detail: format!("cannot read the stored refresh token: {error}"),
        applied: super::Applied::No,
    }
}

/// A failed token request changed nothing in the CRM, whenever it failed.
fn transport(error: reqwest::Error) -> CrmError {
    match classify_transport(error) {
        CrmError::Unavailable { detail, .. } => CrmError::Unavailable {
            detail: format!("token endpoint: {detail}"),
            applied: super::Applied::No,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_fixed_token_is_used_as_given_and_cannot_be_renewed() {
        let source = TokenSource::new(Some(Secret::new("fixed")), None);
        let http = reqwest::Client::new();
        let token = source.current(&http).await.unwrap();
        assert_eq!(token.secret.expose(), "fixed");
        assert!(!source.renewable());
        assert!(source.renew(&token, &http).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_renewal_already_done_by_another_request_is_reused() {
        // The endpoint is unreachable: reusing the newer token must not
        // need it.
        let client = OAuthClient {
            token_url: "http://127.0.0.1:9/services/oauth2/token".to_owned(),
            client_id: "id".to_owned(),
            client_secret: Secret::new("secret"),
            grant: Grant::ClientCredentials,
            extra_form: &[],
        };
        let source = TokenSource::new(Some(Secret::new("newer")), Some(client));
        {
            source.current.lock().await.generation = 2;
        }
        let stale = Token {
            generation: 1,
            secret: Secret::new("older"),
        };
        let http = reqwest::Client::new();
        let renewed = source.renew(&stale, &http).await.unwrap().unwrap();
        assert_eq!(renewed.secret.expose(), "newer");
        assert_eq!(renewed.generation, 2);
        // The current token's own renewal does go to the endpoint, which
        // is down: a transient failure, nothing applied.
        let current = source.current(&http).await.unwrap();
        match source.renew(&current, &http).await {
            Err(CrmError::Unavailable { applied, .. }) => {
                assert_eq!(applied, super::super::Applied::No);
            }
            other => panic!("expected the endpoint to be unavailable, got {other:?}"),
        }
    }
}
