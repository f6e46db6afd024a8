//! Publishing call reports with publisher confirms, over a connection that
//! is re-established whenever it drops.
//!
//! A webhook is answered 202 only after [`Publisher::publish`] returned `Ok`,
//! which means the broker confirmed the message (persisted to a quorum of its
//! replicas) and routed it to the calls queue. Anything else, a Nack, a
//! returned (unroutable) message, a timeout or a lost connection, is an error
//! and the webhook is answered 503, because the provider may retry but we
//! would otherwise claim a call we do not have.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use callsync_shared::broker;
use callsync_shared::config::SecretUrl;
use callsync_shared::publish::{self, Destination};
use callsync_shared::topology::{CALL_REPORT_KEY, Topology};
use callsync_shared::{CallId, Source};
use lapin::{BasicProperties, Channel, Connection};
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// One call report on its way to the broker.
#[derive(Debug, Clone)]
pub struct OutgoingReport {
    pub message_id: String,
    pub source: Source,
    pub call_id: CallId,
    pub received_at: OffsetDateTime,
    pub body: Bytes,
}

/// Why a report was not accepted by the broker. Every variant means the
/// report is not ours: the webhook must not be answered 2xx for it.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("not connected to the broker")]
    Unavailable,
    #[error(transparent)]
    Broker(#[from] publish::PublishError),
}

/// A cheap-to-clone handle on the publishing connection.
#[derive(Clone, Debug)]
pub struct Publisher {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    url: SecretUrl,
    topology: Topology,
    confirm_timeout: Duration,
    /// What each source's webhooks are verified by (the `verified_by`
    /// header), by `Source as usize`. A spooled report is published with
    /// the credentials configured when it is published.
    verified_by: Vec<String>,
    /// The confirm-mode channel of the live connection, if any.
    channel: RwLock<Option<Channel>>,
    connection: RwLock<Option<Arc<Connection>>>,
    /// Wakes the supervisor when a publish found the channel broken.
    broken: Notify,
    /// Cancelled by [`Publisher::close`]: the supervisor stops reconnecting.
    stop: CancellationToken,
}

impl Publisher {
    /// Starts the connection supervisor in the background. The publisher is
    /// not ready until the first connection is up; see [`Publisher::is_ready`].
    /// `verified_by` says, for each source in `Source::ALL` order, what its
    /// webhooks are verified by.
    pub fn start(
        url: SecretUrl,
        topology: Topology,
        confirm_timeout: Duration,
        verified_by: Vec<String>,
    ) -> Self {
        let inner = Arc::new(Inner {
            url,
            topology,
            confirm_timeout,
            verified_by,
            channel: RwLock::new(None),
            connection: RwLock::new(None),
            broken: Notify::new(),
            stop: CancellationToken::new(),
        });
        tokio::spawn(supervise(Arc::clone(&inner)));
        Self { inner }
    }

    /// True while a connection and a confirm channel are usable and the
    /// broker has not blocked publishing (memory or disk alarm).
    pub fn is_ready(&self) -> bool {
        let channel_ok = read(&self.inner.channel)
            .as_ref()
            .is_some_and(|c| c.status().connected());
        let connection_ok = read(&self.inner.connection)
            .as_ref()
            .is_some_and(|c| c.status().connected() && !c.status().blocked());
        channel_ok && connection_ok
    }

    /// Publishes one report and waits for the broker's confirm.
    pub async fn publish(&self, report: &OutgoingReport) -> Result<(), PublishError> {
        let channel = read(&self.inner.channel)
            .clone()
            .ok_or(PublishError::Unavailable)?;
        let started = Instant::now();
        let result = publish::publish_confirmed(
            &channel,
            Destination {
                exchange: self.inner.topology.exchange().as_str(),
                routing_key: CALL_REPORT_KEY,
            },
            &report.body,
            properties(report, self.inner.verified_by.get(report.source as usize)),
            self.inner.confirm_timeout,
        )
        .await;
        metrics::histogram!("callsync_ingest_publish_confirm_seconds")
            .record(started.elapsed().as_secs_f64());
        if let Err(error) = &result
            && error.channel_is_broken()
        {
            // No answer within the deadline, or an error on the channel: it
            // is stuck or gone even if lapin has not noticed yet. Replace it
            // rather than wait for a heartbeat.
            self.inner.broken.notify_one();
        }
        Ok(result?)
    }

    /// Stops reconnecting and closes the connection. Publishes already
    /// awaiting a confirm have been drained by the HTTP server's graceful
    /// shutdown before this is called.
    pub async fn close(&self) {
        self.inner.stop.cancel();
        let channel = write(&self.inner.channel).take();
        let connection = write(&self.inner.connection).take();
        // The channel before its connection (see `broker::close_channel`).
        if let Some(channel) = channel {
            broker::close_channel(&channel, "callsync-ingest shutting down").await;
        }
        if let Some(connection) = connection {
            broker::close(&connection, "callsync-ingest shutting down").await;
        }
    }
}

fn properties(report: &OutgoingReport, verified_by: Option<&String>) -> BasicProperties {
    publish::report_properties(
        report.source,
        &report.call_id,
        &report.message_id,
        report.received_at,
        "callsync-ingest",
        verified_by.map(String::as_str),
    )
}

/// Keeps one connection with a confirm channel alive until [`Publisher::close`].
async fn supervise(inner: Arc<Inner>) {
    let stop = &inner.stop;
    let mut delays = broker::reconnect_delays();
    while !stop.is_cancelled() {
        match connect(&inner).await {
            Ok((connection, channel)) => {
                let connection = Arc::new(connection);
                tracing::info!("connected to the broker; publishing with confirms");
                delays = broker::reconnect_delays();
                *write(&inner.channel) = Some(channel);
                *write(&inner.connection) = Some(Arc::clone(&connection));
                tokio::select! {
                    () = broker::closed(&connection) => {}
                    () = inner.broken.notified() => {}
                    () = stop.cancelled() => {}
                }
                let channel = write(&inner.channel).take();
                write(&inner.connection).take();
                if let Some(channel) = channel {
                    broker::close_channel(&channel, "reconnecting").await;
                }
                broker::close(&connection, "reconnecting").await;
                if stop.is_cancelled() {
                    break;
                }
                tracing::warn!("broker connection lost; reconnecting");
            }
            Err(error) => tracing::warn!(%error, "cannot connect to the broker; retrying"),
        }
        let delay = delays.next().unwrap_or(Duration::from_secs(5));
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => {}
        }
    }
}

async fn connect(inner: &Inner) -> Result<(Connection, Channel), lapin::Error> {
    let connection = broker::connect(inner.url.expose(), "callsync-ingest").await?;
    let setup = broker::confirm_channel(&connection, &inner.topology);
    match broker::within("preparing the confirm channel", setup).await {
        Ok(channel) => Ok((connection, channel)),
        Err(error) => {
            broker::close(&connection, "set-up failed").await;
            Err(error)
        }
    }
}

// A poisoned lock only means another task panicked while holding it; the
// Option inside is still a valid value, so recover it instead of propagating.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
