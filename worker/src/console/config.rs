//! The console's settings, read once from `CALLSYNC_*` variables.

use std::net::SocketAddr;

use callsync_shared::Region;
use callsync_shared::config::{ConfigError, Env, Secret};
use callsync_shared::telemetry::LogConfig;

use crate::config::OpsConfig;
use crate::crm::Rate;

/// A console token shorter than this is refused at start-up: the token is
/// the only thing between the network and replaying or purging calls.
pub const MIN_TOKEN_LEN: usize = 16;

/// Everything `callsync-worker console` needs: the queue and the ledger (as
/// the operator commands), its own address and credentials, and what it
/// needs to link to the CRM, Grafana and RabbitMQ. No CRM credential: the
/// console never talks to the CRM.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    pub ops: OpsConfig,
    pub addr: SocketAddr,
    /// Every accepted token (several during a rotation).
    pub tokens: Vec<Secret>,
    /// The region a phone number typed without a country code is read in,
    /// as the worker reads the callers' numbers.
    pub default_region: Region,
    pub links: LinkConfig,
    /// Prometheus, for the CRM request budget in use and the 429s.
    pub prometheus_url: Option<String>,
    /// The CRM's request budget (`CALLSYNC_CRM_RATE`, or the CRM's
    /// default), to say how much of it is in use; `None` when unknown or off.
    pub crm_rate: Option<Rate>,
}

/// Where the console links to; each link is left out when its variable is unset.
#[derive(Debug, Clone, Default)]
pub struct LinkConfig {
    /// `CALLSYNC_CRM`, if set.
    pub crm: Option<String>,
    pub hubspot_portal_id: Option<String>,
    pub pipedrive_base_url: Option<String>,
    pub salesforce_instance_url: Option<String>,
    pub gohighlevel_location_id: Option<String>,
    pub grafana_url: Option<String>,
    pub rabbitmq_url: Option<String>,
}

impl ConsoleConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let tokens = env.secrets("CALLSYNC_CONSOLE_TOKEN");
        if tokens.is_empty() {
            return Err(ConfigError {
                var: "CALLSYNC_CONSOLE_TOKEN".to_owned(),
                message: "is required: the console serves nothing without a credential (a comma-separated list during a rotation)".to_owned(),
            });
        }
        if tokens
            .iter()
            .any(|t| t.expose().chars().count() < MIN_TOKEN_LEN)
        {
            return Err(ConfigError {
                var: "CALLSYNC_CONSOLE_TOKEN".to_owned(),
                message: format!(
                    "every token must be at least {MIN_TOKEN_LEN} characters, e.g. the output of `openssl rand -hex 32`"
                ),
            });
        }
        let url = |name: &str| -> Result<Option<String>, ConfigError> {
            match env.raw(name) {
                None => Ok(None),
                Some(v) if v.starts_with("https://") || v.starts_with("http://") => {
                    Ok(Some(v.trim_end_matches('/').to_owned()))
                }
                Some(v) => Err(ConfigError {
                    var: name.to_owned(),
                    message: format!("expected an http(s) URL, got {v:?}"),
                }),
            }
        };
        let text = |name: &str| env.raw(name).map(str::to_owned);
        let crm_rate = match env.raw("CALLSYNC_CRM").and_then(crate::crm::spec) {
            None => None,
            Some(spec) => match env.string("CALLSYNC_CRM_RATE", spec.default_rate).as_str() {
                "off" | "none" => None,
                text => Some(text.parse::<Rate>().map_err(|message| ConfigError {
                    var: "CALLSYNC_CRM_RATE".to_owned(),
                    message,
                })?),
            },
        };
        Ok(Self {
            ops: OpsConfig::from_env(env)?,
            addr: env.parse(
                "CALLSYNC_CONSOLE_ADDR",
                SocketAddr::from(([0, 0, 0, 0], 8081)),
                "an address such as 0.0.0.0:8081",
            )?,
            tokens,
            default_region: env.parse(
                "CALLSYNC_DEFAULT_REGION",
                Region::US,
                "an ISO 3166-1 alpha-2 country code such as US or NL",
            )?,
            links: LinkConfig {
                crm: text("CALLSYNC_CRM"),
                hubspot_portal_id: text("CALLSYNC_CONSOLE_HUBSPOT_PORTAL_ID"),
                pipedrive_base_url: url("CALLSYNC_PIPEDRIVE_BASE_URL")?,
                salesforce_instance_url: url("CALLSYNC_SALESFORCE_INSTANCE_URL")?,
                gohighlevel_location_id: text("CALLSYNC_GOHIGHLEVEL_LOCATION_ID"),
                grafana_url: url("CALLSYNC_CONSOLE_GRAFANA_URL")?,
                rabbitmq_url: url("CALLSYNC_CONSOLE_RABBITMQ_URL")?,
            },
            prometheus_url: url("CALLSYNC_CONSOLE_PROMETHEUS_URL")?,
            crm_rate,
        })
    }

    /// The log settings (the worker's variables).
    pub fn log(env: &Env) -> Result<LogConfig, ConfigError> {
        LogConfig::from_env(env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123";

    #[test]
    fn the_console_refuses_to_start_without_a_token() {
        let err = ConsoleConfig::from_env(&Env::default()).unwrap_err();
        assert_eq!(err.var, "CALLSYNC_CONSOLE_TOKEN");
        assert!(err.to_string().contains("is required"), "{err}");
    }

    #[test]
    fn a_short_token_is_refused() {
        let env = Env::default().with("CALLSYNC_CONSOLE_TOKEN", format!("{TOKEN},short"));
        let err = ConsoleConfig::from_env(&env).unwrap_err();
        assert_eq!(err.var, "CALLSYNC_CONSOLE_TOKEN");
    }

    #[test]
    fn several_tokens_are_accepted_for_a_rotation_and_stay_out_of_debug_output() {
        let env = Env::default().with("CALLSYNC_CONSOLE_TOKEN", format!("{TOKEN}, {TOKEN}-next,"));
        let config = ConsoleConfig::from_env(&env).unwrap();
        assert_eq!(config.tokens.len(), 2);
        assert_eq!(config.addr.to_string(), "0.0.0.0:8081");
        assert!(!format!("{config:?}").contains(TOKEN));
    }

    #[test]
    fn a_link_that_is_not_a_url_is_named() {
        let env = Env::default()
            .with("CALLSYNC_CONSOLE_TOKEN", TOKEN)
            .with("CALLSYNC_CONSOLE_GRAFANA_URL", "grafana:3000");
        assert_eq!(
            ConsoleConfig::from_env(&env).unwrap_err().var,
            "CALLSYNC_CONSOLE_GRAFANA_URL"
        );
    }
}
