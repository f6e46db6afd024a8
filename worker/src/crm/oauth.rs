//! OAuth 2.0 access tokens that renew themselves.
//!
//! Salesforce sessions expire (two hours by default), and a worker runs for
//! months: a fixed access token would turn every call after the expiry into
//! a 401 and park it. With client credentials (or a refresh token) the
//! worker fetches a token when it first needs one and a fresh one when the
//! CRM answers 401, then repeats the refused request once. A 401 means the
//! request was not applied, so repeating it cannot duplicate anything.
//!
//! Renewal is single-flight: every request that saw the expired token waits
//! for the one renewal, instead of each fetching its own token.

use callsync_shared::config::Secret;
use serde::Deserialize;
use tokio::sync::Mutex;

use super::CrmError;
use super::http::{classify_transport, excerpt};

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
    current: Mutex<Current>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
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
            current: Mutex::new(Current {
                generation: 0,
                token: initial,
            }),
        }
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
        let secret = fetch(client, http).await?;
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

/// One request to the token endpoint (RFC 6749 §4.4 and §6).
async fn fetch(client: &OAuthClient, http: &reqwest::Client) -> Result<Secret, CrmError> {
    let mut form = vec![
        ("client_id", client.client_id.as_str()),
        ("client_secret", client.client_secret.expose()),
    ];
    match &client.grant {
        Grant::ClientCredentials => form.push(("grant_type", "client_credentials")),
        Grant::RefreshToken(token) => {
            form.push(("grant_type", "refresh_token"));
            form.push(("refresh_token", token.expose()));
        }
    }
    let response = http
        .post(&client.token_url)
        .form(&form)
        .send()
        .await
        .map_err(transport)?;
    let status = response.status();
    let body = response.bytes().await.map_err(transport)?;
    if status.is_success() {
        let token: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            CrmError::InvalidResponse(format!("token endpoint answered {status}: {e}"))
        })?;
        return Ok(Secret::new(token.access_token));
    }
    let detail = match serde_json::from_slice::<TokenError>(&body) {
        Ok(e) => format!("token endpoint: {} {}", e.error, e.error_description),
        Err(_) => format!(
            "token endpoint: {}",
            excerpt(String::from_utf8_lossy(&body).into_owned())
        ),
    };
    Err(match status.as_u16() {
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
    })
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
