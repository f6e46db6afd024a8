//! `callsync-worker console`: a small web console for operators, served on
//! its own address (`CALLSYNC_CONSOLE_ADDR`) by its own process; the worker
//! itself serves none of it.
//!
//! It shows what callsync already keeps: the ledger's calls and steps, the
//! workers' pause state, the reconciler's rounds and the parking queue; and
//! it replays or purges parked calls through the same code as
//! `callsync-worker dlq`. Server-rendered HTML (maud), no JavaScript.
//!
//! One module per concern: [`config`], [`auth`] (login, sessions, CSRF),
//! [`pages`] (what is read), [`actions`] (what changes the parking queue),
//! [`data`] (the ledger reads), [`metrics`] (the CRM budget, from
//! Prometheus), [`templates`], [`links`] (CRM record addresses) and
//! [`refusal`] (error pages).

mod actions;
pub mod auth;
pub mod config;
mod data;
mod links;
mod metrics;
mod pages;
mod refusal;
mod session;
mod templates;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;

pub use config::ConsoleConfig;

use crate::dlq::{Dlq, DlqError};
use crate::ledger::{Ledger, LedgerError};
use auth::Keys;

/// Errors that stop the console from starting.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("cannot open the ledger database")]
    Ledger(#[from] LedgerError),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The console's shared state.
#[derive(Debug)]
pub struct Console {
    config: ConsoleConfig,
    keys: Keys,
    ledger: Ledger,
    http: reqwest::Client,
    /// One parking-queue operation at a time: listing takes every parked
    /// message for a moment, so two at once would each see part of the queue.
    dlq: tokio::sync::Mutex<()>,
}

impl Console {
    /// A connection to the parking queue, while holding the console's turn.
    async fn dlq(&self) -> Result<(tokio::sync::MutexGuard<'_, ()>, Dlq), DlqError> {
        let turn = self.dlq.lock().await;
        let dlq = Dlq::connect(
            self.config.ops.amqp_url.expose(),
            self.config.ops.topology.clone(),
        )
        .await?;
        Ok((turn, dlq))
    }
}

/// A built, not yet serving, console.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    router: Router,
}

impl Server {
    /// Opens the ledger (creating and migrating it, as the worker would, so
    /// that a console started first finds its tables) and binds the address.
    pub async fn build(config: ConsoleConfig) -> Result<Self, ConsoleError> {
        let ledger = Ledger::connect(
            config.ops.database_url.expose(),
            4,
            "",
            Duration::from_secs(30),
        )
        .await?;
        let listener =
            TcpListener::bind(config.addr)
                .await
                .map_err(|source| ConsoleError::Bind {
                    addr: config.addr,
                    source,
                })?;
        let console = Arc::new(Console {
            keys: Keys::new(&config.tokens),
            config,
            ledger,
            http: reqwest::Client::new(),
            dlq: tokio::sync::Mutex::new(()),
        });
        Ok(Self {
            listener,
            router: router(console),
        })
    }

    /// The bound address (tests bind port 0).
    pub fn addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        tracing::info!(addr = %self.listener.local_addr()?, "console started");
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(pages::overview))
        .route("/calls", get(pages::calls))
        .route("/calls/{source}/{call_id}", get(pages::story))
        .route("/parked", get(pages::parked))
        .route("/parked/confirm", get(pages::confirm))
        .route("/parked/replay", post(actions::replay))
        .route("/parked/replay-reason", post(actions::replay_reason))
        .route("/parked/purge", post(actions::purge))
        .route("/login", get(actions::login_form).post(actions::login))
        .route("/logout", post(actions::logout))
        .route("/console.css", get(stylesheet))
        .route("/healthz", get(|| async { (StatusCode::OK, "ok") }))
        .route("/readyz", get(ready))
        .fallback(|| async {
            refusal::Refusal::NotFound("There is no such page in the console.".to_owned())
        })
        .layer(axum::middleware::map_response(security_headers))
        .with_state(console)
}

/// Ready when the ledger answers (the broker is only needed by some pages,
/// which say so when it is away).
async fn ready(axum::extract::State(console): axum::extract::State<Arc<Console>>) -> Response {
    let database = tokio::time::timeout(Duration::from_secs(2), console.ledger.ping())
        .await
        .is_ok_and(|r| r.is_ok());
    if database {
        (StatusCode::OK, "ready").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the ledger database does not answer",
        )
            .into_response()
    }
}

async fn stylesheet() -> Response {
    ([(CONTENT_TYPE, "text/css; charset=utf-8")], templates::CSS).into_response()
}

/// Every answer: nothing from another origin, no framing, no caching of
/// pages that show calls, no referrer carrying a search to a CRM link.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
