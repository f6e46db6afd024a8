//! Logging set-up shared by both services.

use std::str::FromStr;

use tracing_subscriber::EnvFilter;

use crate::config::{ConfigError, Env};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable, for terminals.
    Pretty,
    /// One JSON object per line, for containers and log shippers.
    Json,
}

impl FromStr for LogFormat {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "pretty" | "text" => Ok(LogFormat::Pretty),
            "json" => Ok(LogFormat::Json),
            _ => Err(()),
        }
    }
}

/// `CALLSYNC_LOG` (an `EnvFilter` directive such as `info` or
/// `callsync_worker=debug,info`) and `CALLSYNC_LOG_FORMAT`.
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub filter: String,
    pub format: LogFormat,
}

impl LogConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let filter = env.string("CALLSYNC_LOG", "info");
        EnvFilter::try_new(&filter).map_err(|e| ConfigError {
            var: "CALLSYNC_LOG".to_owned(),
            message: format!("invalid filter {filter:?}: {e}"),
        })?;
        Ok(Self {
            filter,
            format: env.parse("CALLSYNC_LOG_FORMAT", LogFormat::Pretty, "pretty or json")?,
        })
    }

    /// Installs the global subscriber. Safe to call more than once (tests
    /// start several services in one process): later calls do nothing.
    pub fn init(&self) {
        let filter = EnvFilter::try_new(&self.filter).unwrap_or_else(|_| EnvFilter::new("info"));
        let builder = tracing_subscriber::fmt().with_env_filter(filter);
        let _ = match self.format {
            LogFormat::Json => builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .try_init(),
            LogFormat::Pretty => builder.try_init(),
        };
    }
}
