use callsync_shared::config::Env;
use callsync_worker::{Worker, WorkerConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = match WorkerConfig::from_env(&Env::from_process()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("callsync-worker: configuration error: {e}");
            std::process::exit(2);
        }
    };
    config.log.init();
    let worker = Worker::build(config).await?;
    worker
        .run_until(callsync_shared::shutdown::signal())
        .await?;
    Ok(())
}
