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

/// The process-wide Prometheus recorder, installed on first use.
///
/// Both services render it on `GET /metrics`. Tests run ingest and workers in
/// one process, so installation must be idempotent.
pub fn prometheus() -> metrics_exporter_prometheus::PrometheusHandle {
    use std::sync::OnceLock;
    use std::time::Duration;

    static HANDLE: OnceLock<metrics_exporter_prometheus::PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Latency buckets from 1 ms to 5 min cover both a broker confirm and
            // an end-to-end lag that went through a retry tier.
            const BUCKETS: &[f64] = &[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                60.0, 120.0, 300.0, 900.0, 3_600.0,
            ];
            let builder = metrics_exporter_prometheus::PrometheusBuilder::new();
            let builder = match builder.set_buckets(BUCKETS) {
                Ok(b) => b,
                Err(_) => metrics_exporter_prometheus::PrometheusBuilder::new(),
            };
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // If another recorder is already installed (an embedding program's),
            // ours still renders what it recorded: nothing, rather than panicking.
            let _ = metrics::set_global_recorder(recorder);
            let upkeep = handle.clone();
            let _ = std::thread::Builder::new()
                .name("metrics-upkeep".to_owned())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                });
            handle
        })
        .clone()
}

/// An error with its causes, `outer: inner: innermost`, for a log line or a
/// stored reason. callsync's own error messages leave their cause to
/// whoever reports them, and JSON logs show only an error's own message, so
/// a cause worth keeping is written out with this. A cause that a library
/// already put into its own message is not repeated.
#[derive(Debug)]
pub struct Chain<'a, E: ?Sized>(pub &'a E);

impl<E: std::error::Error + ?Sized> std::fmt::Display for Chain<'_, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut text = self.0.to_string();
        let mut source = self.0.source();
        while let Some(cause) = source {
            let said = cause.to_string();
            if !text.ends_with(&said) {
                text.push_str(": ");
                text.push_str(&said);
            }
            source = cause.source();
        }
        f.write_str(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("spool write failed")]
    struct Outer(#[source] std::io::Error);

    // Writes its cause into its own message, as lapin's errors do.
    #[derive(Debug, thiserror::Error)]
    #[error("broker error: {0}")]
    struct SaysItsCause(#[source] std::io::Error);

    #[test]
    fn a_chain_names_every_cause_once() {
        let outer = Outer(std::io::Error::other("disk full"));
        assert_eq!(Chain(&outer).to_string(), "spool write failed: disk full");
        let repeats = SaysItsCause(std::io::Error::other("connection reset"));
        assert_eq!(
            Chain(&repeats).to_string(),
            "broker error: connection reset"
        );
    }
}
