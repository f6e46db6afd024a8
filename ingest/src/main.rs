use callsync_ingest::{App, IngestConfig};
use callsync_shared::config::Env;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = match IngestConfig::from_env(&Env::from_process()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("callsync-ingest: configuration error: {e}");
            std::process::exit(2);
        }
    };
    config.log.init();
    let app = App::build(config).await?;
    app.run_until(callsync_shared::shutdown::signal()).await?;
    Ok(())
}
