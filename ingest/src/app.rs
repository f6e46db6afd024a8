//! The ingest application: built from its config, run until a shutdown signal.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::Request;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

use crate::config::IngestConfig;
use crate::publisher::Publisher;
use crate::routes::{AppState, router};
use crate::spool::Spool;

/// Errors that stop ingest from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the spool directory {dir}: {source}")]
    Spool {
        dir: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A bound, not yet serving, ingest service.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    state: AppState,
}

impl App {
    /// Binds the listener and starts connecting to the broker. Start-up does
    /// not wait for the broker: `/readyz` answers 503 until it is connected.
    pub async fn build(config: IngestConfig) -> Result<Self, StartError> {
        let listener = TcpListener::bind(config.addr)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.addr,
                source,
            })?;
        let publisher = Publisher::start(
            config.amqp_url.clone(),
            config.topology.clone(),
            config.confirm_timeout,
        );
        let spool = match &config.spool_dir {
            None => None,
            Some(dir) => Some(Arc::new(Spool::open(dir, config.spool_max_bytes).map_err(
                |source| StartError::Spool {
                    dir: dir.clone(),
                    source,
                },
            )?)),
        };
        let state = AppState {
            config: Arc::new(config),
            publisher,
            spool,
            metrics: callsync_shared::telemetry::prometheus(),
        };
        Ok(Self { listener, state })
    }

    /// The bound address (tests bind port 0 and ask for the real port).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| self.state.config.addr)
    }

    /// A handle on the publisher, to check readiness.
    pub fn publisher(&self) -> Publisher {
        self.state.publisher.clone()
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets requests
    /// in flight finish (their publishes confirmed or failed) within the
    /// grace period, and closes the broker connection.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let grace = self.state.config.shutdown_grace;
        let publisher = self.state.publisher.clone();
        let (stop_replay, replay_stopped) = tokio::sync::watch::channel(false);
        let readiness = {
            let publisher = publisher.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
                loop {
                    tick.tick().await;
                    let ready = if publisher.is_ready() { 1.0 } else { 0.0 };
                    metrics::gauge!("callsync_ready", "service" => "ingest").set(ready);
                }
            })
        };
        let replay = self.state.spool.clone().map(|spool| {
            if spool.depth() > 0 {
                tracing::warn!(
                    entries = spool.depth(),
                    "spooled reports from a previous run will be replayed"
                );
            }
            tokio::spawn(spool.replay(publisher.clone(), replay_stopped))
        });
        let app = router(self.state).layer(
            // The span names method and path only: a `?token=` query must never reach the logs.
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                tracing::info_span!("request", method = %request.method(), path = %request.uri().path())
            }),
        );
        tracing::info!(addr = %self.listener.local_addr()?, "ingest listening");

        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let server = axum::serve(self.listener, app).with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: no new requests, draining in-flight ones");
            let _ = stopping_tx.send(());
        });
        let server = std::pin::pin!(server.into_future());
        // After the signal, give in-flight requests `grace` to finish.
        let result = tokio::select! {
            result = server => result,
            () = async {
                let _ = stopping_rx.await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!(?grace, "grace period over; abandoning in-flight requests");
                Ok(())
            }
        };
        readiness.abort();
        stop_replay.send_replace(true);
        if let Some(replay) = replay {
            let _ = replay.await;
        }
        publisher.close().await;
        result
    }
}
