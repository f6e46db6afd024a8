//! The `callsync-worker` command line: run the worker, or operator commands.
//!
//! `main.rs` is a thin wrapper over [`run`], so that the end-to-end tests can
//! build the very same program as a process they can kill.

use std::process::ExitCode;

use callsync_shared::config::Env;

use crate::{Worker, WorkerConfig};

const USAGE: &str = "usage: callsync-worker [healthcheck]";

/// Runs the command given by the process arguments and environment.
pub async fn run() -> ExitCode {
    let config = match WorkerConfig::from_env(&Env::from_process()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("callsync-worker: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    match std::env::args().nth(1).as_deref() {
        None => {}
        // For container healthchecks: is this instance ready?
        Some("healthcheck") => {
            callsync_shared::health::exit_with_probe(config.metrics_addr.port(), "/readyz").await
        }
        Some(other) => {
            eprintln!("callsync-worker: unknown command {other:?}; {USAGE}");
            return ExitCode::from(2);
        }
    }
    config.log.init();
    let worker = match Worker::build(config).await {
        Ok(worker) => worker,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("callsync-worker: {e}");
            return ExitCode::FAILURE;
        }
    };
    match worker.run_until(callsync_shared::shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("callsync-worker: {e}");
            ExitCode::FAILURE
        }
    }
}
