//! The credentials a HubSpot account can give callsync, and how each one
//! proves which scopes it holds.
//!
//! Legacy private apps can no longer be created ("As of October 26, 2026,
//! legacy private apps can no longer be created"; for accounts created on
//! or after 2026-09-28 from that day:
//! https://developers.hubspot.com/changelog/legacy-private-app-creation-sunset),
//! so a new customer chooses between:
//!
//! - a **service key** (`CALLSYNC_HUBSPOT_SERVICE_KEY`), "intended to
//!   replace legacy private apps" for system-to-system integrations
//!   (https://developers.hubspot.com/changelog/service-keys), configured
//!   "with object-specific scopes (e.g., crm.objects.contacts.read)" and
//!   sent as a bearer token like a private app's
//!   (https://developers.hubspot.com/docs/apps/developer-platform/build-apps/authentication/account-service-keys);
//! - a **public app's OAuth** (`CALLSYNC_HUBSPOT_CLIENT_ID`, `_CLIENT_SECRET`,
//!   `_REFRESH_TOKEN`): access tokens live 30 minutes and are renewed at
//!   `POST /oauth/v1/token` with `grant_type=refresh_token` (HubSpot/hubspot-api-nodejs
//!   `codegen/oauth/apis/TokensApi.ts`; "Access tokens are short lived …
//!   store the refresh token … and use it to generate a new access token
//!   once the initial one expires",
//!   https://developers.hubspot.com/docs/api-reference/legacy/authentication/oauth-tokens/v1/guide);
//!
//! and an existing installation keeps its **legacy private app** token
//! (`CALLSYNC_HUBSPOT_TOKEN`).
//!
//! Whether HubSpot rotates refresh tokens is not settled: the v1 guide
//! reads as if one refresh token serves for ever, while its newer OAuth API
//! is described as OAuth 2.1, which lets a server rotate them. callsync
//! keeps whichever refresh token each exchange returns in the ledger and
//! exchanges single-flight across replicas (`oauth.rs`), so it works under
//! both readings and two replicas never spend one refresh token twice.

use callsync_shared::config::{ConfigError, Secret};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::super::oauth::{Credentials, Grant, OAuthClient};
use super::super::{CrmError, Vars};
use super::{Hubspot, SCOPES};

/// Which kind of credential the worker was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `CALLSYNC_HUBSPOT_SERVICE_KEY`.
    ServiceKey,
    /// `CALLSYNC_HUBSPOT_TOKEN`: a legacy private app's access token.
    PrivateApp,
    /// `CALLSYNC_HUBSPOT_CLIENT_ID`, `_CLIENT_SECRET`, `_REFRESH_TOKEN`.
    PublicApp,
}

/// Reads the one credential set, refusing none and more than one.
pub(super) fn read(vars: Vars<'_>, base_url: &str) -> Result<(Kind, Credentials), ConfigError> {
    let service_key = vars.optional_secret("SERVICE_KEY");
    let token = vars.optional_secret("TOKEN");
    let client_id = vars.raw("CLIENT_ID");
    let given = [service_key.is_some(), token.is_some(), client_id.is_some()];
    let choices = format!(
        "{} (a service key), {} (a legacy private app's token), or {}, {} and {} (a public app)",
        vars.name("SERVICE_KEY"),
        vars.name("TOKEN"),
        vars.name("CLIENT_ID"),
        vars.name("CLIENT_SECRET"),
        vars.name("REFRESH_TOKEN"),
    );
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(vars.error(
            "SERVICE_KEY",
            format!("set only one HubSpot credential: {choices}"),
        ));
    }
    let static_token = |kind, token| {
        Ok((
            kind,
            Credentials {
                token: Some(token),
                oauth: None,
            },
        ))
    };
    match (service_key, token, client_id) {
        (Some(key), _, _) => static_token(Kind::ServiceKey, key),
        (_, Some(token), _) => static_token(Kind::PrivateApp, token),
        (_, _, Some(client_id)) => Ok((
            Kind::PublicApp,
            Credentials {
                token: None,
                oauth: Some(OAuthClient {
                    token_url: format!("{base_url}/oauth/v1/token"),
                    client_id: client_id.to_owned(),
                    client_secret: vars.secret("CLIENT_SECRET")?,
                    grant: Grant::RefreshToken(vars.secret("REFRESH_TOKEN")?),
                    extra_form: &[],
                }),
            },
        )),
        (None, None, None) => Err(vars.error(
            "SERVICE_KEY",
            format!("is required but not set: set {choices}"),
        )),
    }
}

/// The private-app token information endpoint's question.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenKey<'a> {
    token_key: &'a str,
}

/// What HubSpot says about a token (the field used).
#[derive(Deserialize)]
struct TokenInfo {
    scopes: Vec<String>,
}

impl Hubspot {
    /// The scopes of [`SCOPES`] the credential holds, asked the way its kind
    /// allows.
    pub(super) async fn granted_scopes(&self) -> Result<Vec<&'static str>, CrmError> {
        let scopes = match self.config.kind {
            Kind::PrivateApp => self.private_app_scopes().await?,
            Kind::PublicApp => self.access_token_scopes().await?,
            Kind::ServiceKey => return self.scopes_proven_by_use().await,
        };
        Ok(SCOPES
            .iter()
            .map(|(name, _)| *name)
            .filter(|name| scopes.iter().any(|s| s == name))
            .collect())
    }

    /// The token requests carry now (every HubSpot credential is one).
    async fn current_token(&self) -> Result<Secret, CrmError> {
        self.http
            .access_token()
            .await?
            .ok_or_else(|| CrmError::Request("no HubSpot token is configured".to_owned()))
    }

    /// A private app's token: "POST /oauth/v2/private-apps/get/access-token-info"
    /// with the token as `tokenKey` (developers.hubspot.com/docs/api/private-apps,
    /// as quoted in HubSpot/hubspot-api-php issue #171).
    async fn private_app_scopes(&self) -> Result<Vec<String>, CrmError> {
        let token = self.current_token().await?;
        let key = TokenKey {
            token_key: token.expose(),
        };
        let info: TokenInfo = self
            .http
            .json(
                "token_info",
                self.request(Method::POST, "/oauth/v2/private-apps/get/access-token-info")
                    .json(&key),
            )
            .await?;
        Ok(info.scopes)
    }

    /// An OAuth access token: `GET /oauth/v1/access-tokens/{token}` answers
    /// its metadata with `scopes` (HubSpot/hubspot-api-nodejs
    /// `codegen/oauth/apis/AccessTokensApi.ts`, `AccessTokenInfoResponse`).
    async fn access_token_scopes(&self) -> Result<Vec<String>, CrmError> {
        let token = self.current_token().await?;
        let info: TokenInfo = self
            .http
            .json(
                "token_info",
                self.request(
                    Method::GET,
                    &format!("/oauth/v1/access-tokens/{}", token.expose()),
                ),
            )
            .await?;
        Ok(info.scopes)
    }

    /// A service key: HubSpot documents no endpoint that describes one, so
    /// each scope is proven by a request that needs it and changes nothing.
    /// Listing contacts needs contacts read; updating contact 0 (HubSpot's
    /// ids start at 1) and a property group that does not exist need the
    /// write scopes, and are answered 404 (or 400) once the scope is held.
    /// A token without the scope gets 403 `MISSING_SCOPES`; that HubSpot
    /// checks scopes before it looks for the record is not documented.
    async fn scopes_proven_by_use(&self) -> Result<Vec<&'static str>, CrmError> {
        const ABSENT: &[StatusCode] = &[StatusCode::NOT_FOUND, StatusCode::BAD_REQUEST];
        let probes = [
            (
                "crm.objects.contacts.read",
                self.request(Method::GET, "/crm/v3/objects/contacts?limit=1"),
            ),
            (
                "crm.objects.contacts.write",
                self.request(Method::PATCH, "/crm/v3/objects/contacts/0")
                    .json(&serde_json::json!({ "properties": {} })),
            ),
            (
                "crm.schemas.contacts.write",
                self.request(
                    Method::PATCH,
                    "/crm/v3/properties/contacts/groups/callsync_scope_probe",
                )
                .json(&serde_json::json!({ "label": "callsync scope probe" })),
            ),
        ];
        let mut granted = Vec::new();
        for (scope, request) in probes {
            match self.http.send("scope_probe", request, ABSENT).await {
                Ok(_) => granted.push(scope),
                Err(CrmError::Unauthorized { status: 403, .. }) => {}
                Err(other) => return Err(other),
            }
        }
        Ok(granted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callsync_shared::config::Env;

    fn read_from(env: &Env) -> Result<(Kind, Credentials), ConfigError> {
        read(Vars::new(env, "hubspot"), "https://api.hubapi.com")
    }

    #[test]
    fn each_credential_is_read_as_its_kind() {
        let key = Env::default().with("CALLSYNC_HUBSPOT_SERVICE_KEY", "key");
        assert_eq!(read_from(&key).unwrap().0, Kind::ServiceKey);
        let token = Env::default().with("CALLSYNC_HUBSPOT_TOKEN", "pat-na1-x");
        assert_eq!(read_from(&token).unwrap().0, Kind::PrivateApp);
        let app = Env::default()
            .with("CALLSYNC_HUBSPOT_CLIENT_ID", "id")
            .with("CALLSYNC_HUBSPOT_CLIENT_SECRET", "secret")
            .with("CALLSYNC_HUBSPOT_REFRESH_TOKEN", "refresh");
        let (kind, credentials) = read_from(&app).unwrap();
        assert_eq!(kind, Kind::PublicApp);
        let client = credentials.oauth.unwrap();
        assert_eq!(client.token_url, "https://api.hubapi.com/oauth/v1/token");
        assert!(credentials.token.is_none());
    }

    #[test]
    fn no_credential_or_two_fail_start_up_naming_the_choices() {
        let none = read_from(&Env::default()).unwrap_err().to_string();
        assert!(
            none.contains("CALLSYNC_HUBSPOT_SERVICE_KEY") && none.contains("CLIENT_ID"),
            "{none}"
        );
        let two = Env::default()
            .with("CALLSYNC_HUBSPOT_SERVICE_KEY", "key")
            .with("CALLSYNC_HUBSPOT_TOKEN", "pat-na1-x");
        assert!(
            read_from(&two)
                .unwrap_err()
                .to_string()
                .contains("only one")
        );
        let half = Env::default().with("CALLSYNC_HUBSPOT_CLIENT_ID", "id");
        assert!(
            read_from(&half)
                .unwrap_err()
                .to_string()
                .contains("CALLSYNC_HUBSPOT_CLIENT_SECRET")
        );
    }
}
