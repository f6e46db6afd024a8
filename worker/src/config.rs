//! The worker's settings, read once from `CALLSYNC_*` variables.

use std::net::SocketAddr;
use std::time::Duration;

use callsync_shared::Region;
use callsync_shared::config::{ConfigError, Env, SecretUrl};
use callsync_shared::telemetry::LogConfig;
use callsync_shared::topology::{DEFAULT_PREFIX, DEFAULT_RETRY_DELAYS, Topology};

use crate::crm::CrmConfig;
use crate::reconcile::ReconcileConfig;

/// Everything `callsync-worker` needs to run.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub amqp_url: SecretUrl,
    pub database_url: SecretUrl,
    pub metrics_addr: SocketAddr,
    pub crm: CrmConfig,
    pub default_region: Region,
    /// How long after the call ended a follow-up task is due.
    pub follow_up_due: Duration,
    /// Unacknowledged messages per worker: also its concurrency.
    pub prefetch: u16,
    pub topology: Topology,
    /// Delay of each retry tier; after the last one a message is parked.
    pub retry_delays: Vec<Duration>,
    /// How long a worker holds a call (and a phone number) exclusively. Every
    /// CRM request must finish well within it; see `ledger`.
    pub lease: Duration,
    /// How long a CRM's search may lag its writes: a create whose outcome is
    /// unknown is searched for (and only then repeated) after this long.
    pub crm_index_lag: Duration,
    pub shutdown_grace: Duration,
    /// How long every CRM request must have failed (no connection, timeout,
    /// 5xx) before the worker pauses instead of retrying call by call.
    pub crm_outage_after: Duration,
    /// The longest wait between two probes of a paused worker.
    pub pause_probe_max: Duration,
    /// The platforms whose call lists are reconciled, and how often.
    pub reconcile: ReconcileConfig,
    pub log: LogConfig,
}

/// What the operator commands (`status`, `dlq`) need: no CRM settings, so
/// that they run anywhere the broker and database are reachable.
#[derive(Debug, Clone)]
pub struct OpsConfig {
    pub amqp_url: SecretUrl,
    pub database_url: SecretUrl,
    pub topology: Topology,
    pub retry_delays: Vec<Duration>,
}

impl OpsConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            amqp_url: callsync_shared::broker::amqp_url(env)?,
            database_url: database_url(env)?,
            topology: Topology::new(env.string("CALLSYNC_AMQP_PREFIX", DEFAULT_PREFIX)),
            retry_delays: retry_delays(env)?,
        })
    }
}

fn database_url(env: &Env) -> Result<SecretUrl, ConfigError> {
    let url = env.string(
        "CALLSYNC_DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/callsync",
    );
    url.parse::<sqlx::postgres::PgConnectOptions>()
        .map_err(|e| ConfigError {
            var: "CALLSYNC_DATABASE_URL".to_owned(),
            message: format!("not a valid PostgreSQL URL ({e})"),
        })?;
    Ok(SecretUrl::new(url))
}

fn retry_delays(env: &Env) -> Result<Vec<Duration>, ConfigError> {
    let delays = env.duration_list("CALLSYNC_RETRY_DELAYS", &DEFAULT_RETRY_DELAYS)?;
    if delays.is_empty() || delays.iter().any(Duration::is_zero) {
        return Err(ConfigError {
            var: "CALLSYNC_RETRY_DELAYS".to_owned(),
            message: "expected at least one non-zero delay, e.g. 5s,30s,2m,10m,1h".to_owned(),
        });
    }
    Ok(delays)
}

impl WorkerConfig {
    /// The value of `CALLSYNC_CRM` in use.
    pub fn crm_name(&self) -> &'static str {
        self.crm.name()
    }

    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let prefetch: u16 = env.parse("CALLSYNC_PREFETCH", 16, "a whole number from 1 to 1000")?;
        if !(1..=1000).contains(&prefetch) {
            return Err(ConfigError {
                var: "CALLSYNC_PREFETCH".to_owned(),
                message: format!("expected a whole number from 1 to 1000, got {prefetch}"),
            });
        }
        let crm = CrmConfig::from_env(env)?;
        let lease = env.duration("CALLSYNC_LEASE", Duration::from_secs(30))?;
        if lease < crm.timeout() * 2 {
            return Err(ConfigError {
                var: "CALLSYNC_LEASE".to_owned(),
                message: format!(
                    "must be at least twice CALLSYNC_CRM_TIMEOUT ({:?}) so that a CRM request always ends inside the lease",
                    crm.timeout()
                ),
            });
        }
        Ok(Self {
            amqp_url: callsync_shared::broker::amqp_url(env)?,
            database_url: database_url(env)?,
            metrics_addr: env.parse(
                "CALLSYNC_METRICS_ADDR",
                SocketAddr::from(([0, 0, 0, 0], 9090)),
                "an address such as 0.0.0.0:9090",
            )?,
            default_region: env.parse(
                "CALLSYNC_DEFAULT_REGION",
                Region::US,
                "an ISO 3166-1 alpha-2 country code such as US or NL",
            )?,
            follow_up_due: env.duration("CALLSYNC_FOLLOW_UP_DUE", Duration::from_secs(86_400))?,
            prefetch,
            topology: Topology::new(env.string("CALLSYNC_AMQP_PREFIX", DEFAULT_PREFIX)),
            retry_delays: retry_delays(env)?,
            lease,
            crm_index_lag: env.duration("CALLSYNC_CRM_INDEX_LAG", crm.default_index_lag())?,
            crm,
            shutdown_grace: env.duration("CALLSYNC_SHUTDOWN_GRACE", Duration::from_secs(25))?,
            crm_outage_after: env
                .duration("CALLSYNC_CRM_OUTAGE_AFTER", Duration::from_secs(120))?,
            // A zero probe interval would hammer a CRM that refuses us.
            pause_probe_max: env
                .positive_duration("CALLSYNC_PAUSE_PROBE_MAX", Duration::from_secs(60))?,
            reconcile: ReconcileConfig::from_env(env)?,
            log: LogConfig::from_env(env)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hubspot() -> Env {
        Env::default()
            .with("CALLSYNC_CRM", "hubspot")
            .with("CALLSYNC_HUBSPOT_TOKEN", "pat-na1-secret")
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = WorkerConfig::from_env(&hubspot()).unwrap();
        assert_eq!(c.prefetch, 16);
        assert_eq!(c.follow_up_due, Duration::from_secs(86_400));
        assert_eq!(c.default_region, Region::US);
        assert_eq!(c.metrics_addr.to_string(), "0.0.0.0:9090");
        assert_eq!(c.retry_delays.len(), 5);
        assert_eq!(c.crm_outage_after, Duration::from_secs(120));
        assert_eq!(c.pause_probe_max, Duration::from_secs(60));
        assert_eq!(
            format!("{:?}", c.database_url),
            "postgres://postgres@127.0.0.1:5432/callsync"
        );
    }

    #[test]
    fn a_missing_crm_choice_is_named_at_start_up() {
        let err = WorkerConfig::from_env(&Env::default()).unwrap_err();
        assert_eq!(err.var, "CALLSYNC_CRM");
    }

    #[test]
    fn a_missing_crm_token_is_named_at_start_up() {
        let env = Env::default().with("CALLSYNC_CRM", "hubspot");
        let err = WorkerConfig::from_env(&env).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("CALLSYNC_HUBSPOT_SERVICE_KEY: is required but not set")
                && message.contains("CALLSYNC_HUBSPOT_TOKEN"),
            "{message}"
        );
    }

    #[test]
    fn each_crm_names_its_first_missing_variable_at_start_up() {
        for (crm, missing) in [
            ("pipedrive", "CALLSYNC_PIPEDRIVE_TOKEN"),
            ("gohighlevel", "CALLSYNC_GOHIGHLEVEL_TOKEN"),
            ("salesforce", "CALLSYNC_SALESFORCE_ACCESS_TOKEN"),
            ("webhook", "CALLSYNC_WEBHOOK_URL"),
        ] {
            let err =
                WorkerConfig::from_env(&Env::default().with("CALLSYNC_CRM", crm)).unwrap_err();
            assert_eq!(err.var, missing, "{crm}");
            assert!(
                err.to_string()
                    .starts_with(&format!("{missing}: is required but not set")),
                "{crm}: {err}"
            );
        }
        let pipedrive = Env::default()
            .with("CALLSYNC_CRM", "pipedrive")
            .with("CALLSYNC_PIPEDRIVE_TOKEN", "t");
        assert_eq!(
            WorkerConfig::from_env(&pipedrive).unwrap_err().var,
            "CALLSYNC_PIPEDRIVE_BASE_URL"
        );
        let ghl = Env::default()
            .with("CALLSYNC_CRM", "gohighlevel")
            .with("CALLSYNC_GOHIGHLEVEL_TOKEN", "t");
        assert_eq!(
            WorkerConfig::from_env(&ghl).unwrap_err().var,
            "CALLSYNC_GOHIGHLEVEL_LOCATION_ID"
        );
    }

    #[test]
    fn an_unknown_crm_lists_the_supported_ones() {
        let err = WorkerConfig::from_env(&Env::default().with("CALLSYNC_CRM", "zoho")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "CALLSYNC_CRM: \"zoho\" is not a supported CRM; supported: hubspot, pipedrive, gohighlevel, salesforce, webhook"
        );
    }

    #[test]
    fn each_crm_gets_its_documented_search_budget_unless_set() {
        let c = WorkerConfig::from_env(&hubspot()).unwrap();
        assert_eq!(
            c.crm.http().search_rate.map(|r| r.to_string()).as_deref(),
            Some("5/1s")
        );
        let pipedrive = Env::default()
            .with("CALLSYNC_CRM", "pipedrive")
            .with("CALLSYNC_PIPEDRIVE_TOKEN", "t")
            .with("CALLSYNC_PIPEDRIVE_BASE_URL", "https://acme.pipedrive.com");
        let c = WorkerConfig::from_env(&pipedrive).unwrap();
        assert_eq!(
            c.crm.http().search_rate.map(|r| r.to_string()).as_deref(),
            Some("10/2s")
        );
        let off =
            WorkerConfig::from_env(&hubspot().with("CALLSYNC_CRM_SEARCH_RATE", "off")).unwrap();
        assert_eq!(off.crm.http().search_rate, None);
        let set =
            WorkerConfig::from_env(&hubspot().with("CALLSYNC_CRM_SEARCH_RATE", "4/1s")).unwrap();
        assert_eq!(set.crm.http().search_rate.map(|r| r.max), Some(4));
    }

    #[test]
    fn a_malformed_search_budget_is_named_at_start_up() {
        let err = WorkerConfig::from_env(&hubspot().with("CALLSYNC_CRM_SEARCH_RATE", "fast"))
            .unwrap_err();
        assert_eq!(err.var, "CALLSYNC_CRM_SEARCH_RATE");
    }

    #[test]
    fn a_webhook_url_must_be_http() {
        let env = Env::default()
            .with("CALLSYNC_CRM", "webhook")
            .with("CALLSYNC_WEBHOOK_URL", "ftp://example.com")
            .with("CALLSYNC_WEBHOOK_SECRET", "s");
        assert_eq!(
            WorkerConfig::from_env(&env).unwrap_err().var,
            "CALLSYNC_WEBHOOK_URL"
        );
    }

    #[test]
    fn an_unknown_region_is_refused() {
        let err = WorkerConfig::from_env(&hubspot().with("CALLSYNC_DEFAULT_REGION", "Holland"))
            .unwrap_err();
        assert_eq!(err.var, "CALLSYNC_DEFAULT_REGION");
    }

    #[test]
    fn a_zero_prefetch_is_refused() {
        let err = WorkerConfig::from_env(&hubspot().with("CALLSYNC_PREFETCH", "0")).unwrap_err();
        assert_eq!(err.var, "CALLSYNC_PREFETCH");
    }

    #[test]
    fn a_lease_shorter_than_two_crm_timeouts_is_refused() {
        let env = hubspot()
            .with("CALLSYNC_CRM_TIMEOUT", "10s")
            .with("CALLSYNC_LEASE", "15s");
        assert_eq!(
            WorkerConfig::from_env(&env).unwrap_err().var,
            "CALLSYNC_LEASE"
        );
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let env = hubspot().with("CALLSYNC_AMQP_URL", "amqp://u:rabbit-pw@h:5672/%2f");
        let debug = format!("{:?}", WorkerConfig::from_env(&env).unwrap());
        assert!(!debug.contains("pat-na1-secret"), "{debug}");
        assert!(!debug.contains("rabbit-pw"), "{debug}");
    }
}
