use callsync_shared::config::Env;
use callsync_worker::{Worker, WorkerConfig};

const USAGE: &str = "usage: callsync-worker [healthcheck]";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = match WorkerConfig::from_env(&Env::from_process()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("callsync-worker: configuration error: {e}");
            std::process::exit(2);
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
            std::process::exit(2);
        }
    }
    config.log.init();
    let worker = Worker::build(config).await?;
    worker
        .run_until(callsync_shared::shutdown::signal())
        .await?;
    Ok(())
}
