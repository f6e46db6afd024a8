//! Ingest's settings, read once from `CALLSYNC_*` variables.

use std::net::SocketAddr;
use std::time::Duration;

use callsync_shared::Source;
use callsync_shared::config::{ConfigError, Env, SecretUrl};
use callsync_shared::telemetry::LogConfig;
use callsync_shared::topology::{DEFAULT_PREFIX, Topology};

use crate::auth::SourceAuth;

/// Everything `callsync-ingest` needs to run.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub amqp_url: SecretUrl,
    pub addr: SocketAddr,
    pub max_body_bytes: usize,
    /// How long a publish may wait for the broker's confirm before the
    /// webhook is answered 503.
    pub confirm_timeout: Duration,
    /// How long a shutdown waits for in-flight requests to finish.
    pub shutdown_grace: Duration,
    pub topology: Topology,
    /// Where webhooks wait when the broker cannot take them (`None`: answer 503).
    pub spool_dir: Option<std::path::PathBuf>,
    pub spool_max_bytes: u64,
    /// How long a client may take to send a webhook's body: a slow (or
    /// malicious) sender must not hold a connection and a task forever.
    pub request_timeout: Duration,
    /// How many broker connections (each with its confirm channel) the
    /// webhooks' publishes are spread over.
    pub publish_connections: usize,
    /// Every built-in source's credentials, in [`Source::ALL`] order.
    sources: Vec<SourceAuth>,
    pub log: LogConfig,
}

impl IngestConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            amqp_url: callsync_shared::broker::amqp_url(env)?,
            addr: env.parse(
                "CALLSYNC_INGEST_ADDR",
                SocketAddr::from(([0, 0, 0, 0], 8080)),
                "an address such as 0.0.0.0:8080",
            )?,
            max_body_bytes: env.parse("CALLSYNC_MAX_BODY_BYTES", 2_097_152, "a number of bytes")?,
            confirm_timeout: env.duration("CALLSYNC_CONFIRM_TIMEOUT", Duration::from_secs(5))?,
            shutdown_grace: env.duration("CALLSYNC_SHUTDOWN_GRACE", Duration::from_secs(25))?,
            topology: Topology::new(env.string("CALLSYNC_AMQP_PREFIX", DEFAULT_PREFIX)),
            spool_dir: env.raw("CALLSYNC_SPOOL_DIR").map(std::path::PathBuf::from),
            spool_max_bytes: env.parse(
                "CALLSYNC_SPOOL_MAX_BYTES",
                1_073_741_824,
                "a number of bytes",
            )?,
            request_timeout: env.duration("CALLSYNC_REQUEST_TIMEOUT", Duration::from_secs(10))?,
            publish_connections: publish_connections(env)?,
            sources: Source::ALL
                .into_iter()
                .map(|source| SourceAuth::from_env(env, source))
                .collect::<Result<_, _>>()?,
            log: LogConfig::from_env(env)?,
        })
    }

    /// The authentication settings of a source.
    pub fn auth(&self, source: Source) -> &SourceAuth {
        // `sources` holds one entry per source in `Source::ALL` order, which
        // is the enum's declaration order.
        &self.sources[source as usize]
    }
}

/// `CALLSYNC_PUBLISH_CONNECTIONS`: at least one, or nothing could be published.
fn publish_connections(env: &Env) -> Result<usize, ConfigError> {
    const VAR: &str = "CALLSYNC_PUBLISH_CONNECTIONS";
    match env.parse(VAR, 1, "a number of connections, at least 1")? {
        0 => Err(ConfigError {
            var: VAR.to_owned(),
            message: "must be at least 1".to_owned(),
        }),
        n => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_contract() {
        let config = IngestConfig::from_env(&Env::default()).unwrap();
        assert_eq!(config.addr.to_string(), "0.0.0.0:8080");
        assert_eq!(config.max_body_bytes, 2_097_152);
        assert_eq!(config.request_timeout, Duration::from_secs(10));
        for source in Source::ALL {
            let auth = config.auth(source);
            assert_eq!(auth.source, source, "looked up by position");
            assert!(!auth.is_enabled(), "{source} needs a credential");
        }
        assert_eq!(config.auth(Source::Voicedock).tolerance_secs, Some(300));
        assert_eq!(config.topology.exchange(), "callsync");
        assert_eq!(config.publish_connections, 1);
    }

    #[test]
    fn ingest_refuses_to_publish_over_no_connection_at_all() {
        let env = Env::default().with("CALLSYNC_PUBLISH_CONNECTIONS", "0");
        let err = IngestConfig::from_env(&env).unwrap_err();
        assert_eq!(err.var, "CALLSYNC_PUBLISH_CONNECTIONS");
        let env = Env::default().with("CALLSYNC_PUBLISH_CONNECTIONS", "3");
        assert_eq!(IngestConfig::from_env(&env).unwrap().publish_connections, 3);
    }

    #[test]
    fn an_invalid_amqp_url_is_named_at_start_up() {
        let env = Env::default().with("CALLSYNC_AMQP_URL", "http://nope");
        let err = IngestConfig::from_env(&env).unwrap_err();
        assert_eq!(err.var, "CALLSYNC_AMQP_URL");
    }

    #[test]
    fn the_amqp_password_is_hidden_in_debug_output() {
        let env = Env::default()
            .with("CALLSYNC_AMQP_URL", "amqp://app:s3cret@rabbit:5672/%2f")
            .with("CALLSYNC_VOICEDOCK_SECRET", "hmac-key");
        let config = IngestConfig::from_env(&env).unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(!debug.contains("hmac-key"), "{debug}");
    }
}
