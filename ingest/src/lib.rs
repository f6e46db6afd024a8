//! `callsync-ingest`: receives voice-AI webhooks, verifies them on their raw
//! bytes, and answers 202 only after RabbitMQ confirmed the report.

pub mod app;
pub mod auth;
pub mod config;
pub mod error;
mod lane;
pub mod publisher;
pub mod routes;
pub mod spool;

pub use app::App;
pub use config::IngestConfig;

/// What the `callsync-ingest` binary does once configured: installs the
/// configured logging, then serves until SIGTERM. The benchmark runs this
/// same function, so that it measures what users run, logging included.
pub async fn serve(config: IngestConfig) -> anyhow::Result<()> {
    config.log.init();
    let app = App::build(config).await?;
    app.run_until(callsync_shared::shutdown::signal()).await?;
    Ok(())
}
