use callsync_ingest::IngestConfig;
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
    match std::env::args().nth(1).as_deref() {
        None => {}
        // For container healthchecks: is this instance ready?
        Some("healthcheck") => {
            callsync_shared::health::exit_with_probe(config.addr.port(), "/readyz").await
        }
        Some(other) => {
            eprintln!(
                "callsync-ingest: unknown command {other:?}; usage: callsync-ingest [healthcheck]"
            );
            std::process::exit(2);
        }
    }
    callsync_ingest::serve(config).await
}
