//! The worker application: ledger, CRM, consumer and the operations HTTP
//! endpoint (`/healthz`, `/readyz`, `/metrics`), built from its config.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use callsync_shared::telemetry::Chain;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::config::WorkerConfig;
use crate::consumer::{BrokerHealth, ConsumerLoop};
use crate::crm::{Budgets, CrmBuildError, CrmHealth, Shared};
use crate::ledger::{Ledger, LedgerError, LedgerWindow};
use crate::lifecycle::Lifecycle;
use crate::poll::Doubling;
use crate::reconcile::schedule::Reconciler;
use crate::reconcile::state::Rounds;
use crate::reconcile::{Platform, REQUEST_TIMEOUT};
use crate::sync::Syncer;

/// Errors that stop the worker from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the ledger database")]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Crm(#[from] CrmBuildError),
    #[error("cannot build the {platform} API client: {error}")]
    Platform {
        platform: callsync_shared::Source,
        error: reqwest::Error,
    },
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A built, not yet running, worker.
#[derive(Debug)]
pub struct Worker {
    config: Arc<WorkerConfig>,
    syncer: Arc<Syncer>,
    budgets: Arc<Budgets>,
    crm_health: Arc<CrmHealth>,
    listener: TcpListener,
    health: Arc<BrokerHealth>,
    lifecycle: Arc<Lifecycle>,
    /// The platforms whose call lists this replica may reconcile.
    platforms: Vec<Arc<dyn Platform>>,
}

#[derive(Debug, Clone)]
struct OpsState {
    ledger: Ledger,
    health: Arc<BrokerHealth>,
    lifecycle: Arc<Lifecycle>,
    metrics: PrometheusHandle,
}

impl Worker {
    /// Opens the ledger (creating and migrating the database), builds the CRM
    /// client and binds the operations endpoint. The database is retried for
    /// a while at start-up because containers often start before it accepts
    /// connections; the broker is connected in the background by [`Worker::run_until`].
    pub async fn build(config: WorkerConfig) -> Result<Self, StartError> {
        let http = config.crm.http();
        let budgets = Arc::new(Budgets::new(http.rate, http.search_rate));
        let crm_health = Arc::new(CrmHealth::new(config.crm_outage_after));
        // One connection per concurrent message plus a few for readiness,
        // leases and token renewals.
        let pool_size = u32::from(config.prefetch) + 4;
        let ledger = connect_ledger(&config, pool_size, config.crm_name()).await?;
        // Every worker takes its searches from one window in the ledger, so
        // that the whole search budget goes where searches wait.
        budgets.share_searches(Arc::new(LedgerWindow::new(ledger.clone(), "search")));
        let crm = config.crm.build(Shared {
            budgets: Arc::clone(&budgets),
            health: Arc::clone(&crm_health),
            ledger: Some(ledger.pool().clone()),
            mapping: None,
        })?;
        // A create is sent at most `send_window` after its lease was
        // extended and then takes at most the CRM timeout: both together
        // stay a second inside the lease.
        let send_window = config
            .lease
            .saturating_sub(config.crm.timeout())
            .saturating_sub(Duration::from_secs(1))
            .max(Duration::from_millis(500));
        let syncer = Syncer::new(
            ledger,
            crm,
            config.follow_up_due,
            config.crm_index_lag,
            send_window,
            config
                .crm
                .mapping()
                .map(|m| m.deal.clone())
                .unwrap_or_default(),
        );
        let platforms = config
            .reconcile
            .platforms
            .iter()
            .map(|platform| {
                platform
                    .build(REQUEST_TIMEOUT)
                    .map_err(|error| StartError::Platform {
                        platform: platform.source,
                        error,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let listener = TcpListener::bind(config.metrics_addr)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.metrics_addr,
                source,
            })?;
        Ok(Self {
            config: Arc::new(config),
            syncer: Arc::new(syncer),
            budgets,
            crm_health,
            listener,
            health: Arc::new(BrokerHealth::default()),
            lifecycle: Arc::new(Lifecycle::new()),
            platforms,
        })
    }

    /// The bound operations address (tests bind port 0).
    pub fn ops_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.config.metrics_addr)
    }

    /// Consumes until `shutdown` resolves, then stops consuming, lets
    /// in-flight messages finish within the grace period and exits.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let consumer = ConsumerLoop {
            config: Arc::clone(&self.config),
            syncer: Arc::clone(&self.syncer),
            health: Arc::clone(&self.health),
            crm_health: Arc::clone(&self.crm_health),
            lifecycle: Arc::clone(&self.lifecycle),
        };
        let consuming = tokio::spawn(consumer.run());
        let worker_id = uuid::Uuid::now_v7();
        let heartbeat = tokio::spawn(heartbeat(
            self.syncer.ledger().clone(),
            Arc::clone(&self.budgets),
            Arc::clone(&self.health),
            Arc::clone(&self.lifecycle),
            worker_id,
        ));

        let state = OpsState {
            ledger: self.syncer.ledger().clone(),
            health: Arc::clone(&self.health),
            lifecycle: Arc::clone(&self.lifecycle),
            metrics: callsync_shared::telemetry::prometheus(),
        };
        // After the metrics recorder is installed (above), so that the
        // reconciler's first gauges are recorded.
        let reconciling = (!self.platforms.is_empty()).then(|| {
            let reconciler = Reconciler {
                platforms: self.platforms.clone(),
                config: self.config.reconcile.clone(),
                rounds: Rounds::new(
                    self.syncer.ledger().pool().clone(),
                    worker_id,
                    self.config.lease,
                ),
                ledger: self.syncer.ledger().clone(),
                amqp_url: self.config.amqp_url.clone(),
                topology: self.config.topology.clone(),
                confirm_timeout: Duration::from_secs(10),
                lease: self.config.lease,
            };
            tokio::spawn(reconciler.run(Arc::clone(&self.lifecycle)))
        });
        let ops = Router::new()
            .route("/healthz", get(|| async { (StatusCode::OK, "ok") }))
            .route("/readyz", get(ready))
            .route("/metrics", get(render_metrics))
            .with_state(state);
        tracing::info!(addr = %self.listener.local_addr()?, crm = self.config.crm_name(), "worker started");
        let lifecycle = Arc::clone(&self.lifecycle);
        let server = axum::serve(self.listener, ops)
            .with_graceful_shutdown(async move { lifecycle.shutting_down().await });
        let server = tokio::spawn(server.into_future());

        shutdown.await;
        tracing::info!("shutting down: no new messages; finishing in-flight ones");
        self.lifecycle.shut_down();
        let _ = consuming.await;
        if let Some(reconciling) = reconciling {
            let _ = reconciling.await;
        }
        heartbeat.abort();
        if let Err(e) = self.syncer.ledger().leave(worker_id).await {
            tracing::debug!(error = %Chain(&e), "could not deregister the worker");
        }
        match server.await {
            Ok(result) => result,
            Err(join) => Err(std::io::Error::other(join)),
        }
    }
}

async fn connect_ledger(
    config: &WorkerConfig,
    pool_size: u32,
    crm: &'static str,
) -> Result<Ledger, LedgerError> {
    let mut pauses = Doubling::new(Duration::from_millis(250), Duration::from_secs(5))
        .within(Duration::from_secs(60));
    loop {
        let error =
            match Ledger::connect(config.database_url.expose(), pool_size, crm, config.lease).await
            {
                Err(LedgerError::Database(e)) if crate::sync::is_unavailable(&e) => e,
                connected => return connected,
            };
        let Some(pause) = pauses.pause() else {
            return Err(error.into());
        };
        tracing::warn!(error = %error, "database not reachable yet; retrying");
        tokio::time::sleep(pause).await;
    }
}

/// How often workers announce themselves, and how long one counts as live.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
const HEARTBEAT_WINDOW: Duration = Duration::from_secs(6);

/// Keeps this worker's share of the CRM budgets (general and search) at
/// its part of the live workers' (see `crm::limiter::Share`).
/// It also publishes `callsync_ready` for the readiness alert.
async fn heartbeat(
    ledger: Ledger,
    budgets: Arc<Budgets>,
    health: Arc<BrokerHealth>,
    lifecycle: Arc<Lifecycle>,
    id: uuid::Uuid,
) {
    let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
    let mut last = 0;
    loop {
        tick.tick().await;
        let beat = ledger.heartbeat(id, HEARTBEAT_WINDOW).await;
        let ready = beat.is_ok() && health.is_consuming() && !lifecycle.is_paused();
        metrics::gauge!("callsync_ready", "service" => "worker").set(if ready { 1.0 } else { 0.0 });
        if beat.is_ok() {
            let paused = lifecycle.paused();
            let paused = paused.as_ref().map(|r| (r.label(), r.detail()));
            if let Err(e) = ledger.report_pause(id, paused).await {
                tracing::debug!(error = %Chain(&e), "could not record the pause state");
            }
        }
        match beat {
            Ok(share) => {
                budgets.set_share(share);
                let live = share.workers;
                metrics::gauge!("callsync_worker_live_workers").set(live as f64);
                if live != last {
                    if let Some(rate) = budgets.rate() {
                        tracing::info!(live_workers = live, budget = %rate, "sharing the CRM request budget");
                    }
                    if let Some(rate) = budgets.search_rate() {
                        tracing::info!(live_workers = live, budget = %rate, "sharing the CRM search budget");
                    }
                    last = live;
                }
            }
            // Keep the last share: the database being away is handled elsewhere.
            Err(e) => tracing::debug!(error = %Chain(&e), "heartbeat failed"),
        }
    }
}

async fn ready(State(state): State<OpsState>) -> Response {
    let broker = state.health.is_consuming();
    let database = tokio::time::timeout(Duration::from_secs(2), state.ledger.ping())
        .await
        .is_ok_and(|r| r.is_ok());
    let paused = state.lifecycle.paused();
    let body = serde_json::json!({
        "broker": broker,
        "database": database,
        "in_flight": state.health.in_flight(),
        "paused": paused.as_ref().map(|reason| serde_json::json!({
            "reason": reason.label(),
            "detail": reason.detail(),
        })),
    });
    let status = if broker && database && paused.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn render_metrics(State(state): State<OpsState>) -> Response {
    (
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
