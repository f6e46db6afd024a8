//! The ingest application: built from its config, run until a shutdown signal.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::trace::TraceLayer;

use crate::config::IngestConfig;
use crate::publisher::Publisher;
use crate::routes::{AppState, router};
use crate::spool::Spool;
use callsync_shared::Source;

/// Errors that stop ingest from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the spool directory {dir}")]
    Spool {
        dir: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}")]
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
        let verified_by = Source::ALL
            .iter()
            .map(|source| config.auth(*source).verified_by.clone())
            .collect();
        let publisher = Publisher::start(
            config.amqp_url.clone(),
            config.topology.clone(),
            config.confirm_timeout,
            verified_by,
            config.publish_connections,
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

    /// Serves until `shutdown` resolves, then stops accepting, lets requests
    /// in flight finish (their publishes confirmed or failed) within the
    /// grace period, stops the background tasks and closes the broker
    /// connection, in that order: a request or a replay still publishing
    /// always has its connection.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let grace = self.state.config.shutdown_grace;
        let publisher = self.state.publisher.clone();
        // `draining` is cancelled by the shutdown signal; its parent
        // `drained` once the server has stopped (every request finished, or
        // the grace period over).
        let drained = CancellationToken::new();
        let draining = drained.child_token();
        let background = TaskTracker::new();
        background.spawn(report_readiness(publisher.clone(), drained.clone()));
        if let Some(spool) = self.state.spool.clone() {
            if spool.depth() > 0 {
                tracing::warn!(
                    entries = spool.depth(),
                    "spooled reports from a previous run will be replayed"
                );
            }
            background.spawn(spool.replay(publisher.clone(), drained.clone()));
        }
        background.close();
        let app = router(self.state).layer(
            // The span names method and path only: a `?token=` query must never reach the logs.
            // At debug, not info: at the shipped level a span per request was the
            // one cost of ingest's that showed in the benchmark (docs/performance.md),
            // and ingest's own lines name the source, call and message already.
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                tracing::debug_span!("request", method = %request.method(), path = %request.uri().path())
            }),
        );
        tracing::info!(addr = %self.listener.local_addr()?, "ingest listening");

        let result = serve(self.listener, app, shutdown, draining, grace).await;
        drained.cancel();
        background.wait().await;
        publisher.close().await;
        result
    }
}

/// Serves `app` until `shutdown` resolves, then cancels `draining`, which
/// stops accepting, and gives the requests in flight `grace` to finish.
async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()>,
    draining: CancellationToken,
    grace: Duration,
) -> std::io::Result<()> {
    let server =
        axum::serve(listener, app).with_graceful_shutdown(draining.clone().cancelled_owned());
    tokio::select! {
        result = server.into_future() => result,
        () = async {
            shutdown.await;
            tracing::info!("shutting down: no new requests, draining in-flight ones");
            draining.cancel();
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(?grace, "grace period over; abandoning in-flight requests");
            Ok(())
        }
    }
}

/// Publishes `callsync_ready` for the readiness alert until `stop`.
async fn report_readiness(publisher: Publisher, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    stop.run_until_cancelled(async {
        loop {
            tick.tick().await;
            let ready = if publisher.is_ready() { 1.0 } else { 0.0 };
            metrics::gauge!("callsync_ready", "service" => "ingest").set(ready);
        }
    })
    .await;
}
