//! Publishing call reports with publisher confirms, spread over lanes
//! (connections with their confirm channels, see [`crate::lane`]), each
//! re-established whenever it drops while the others go on publishing.
//!
//! A webhook is answered 202 only after [`Publisher::publish`] returned `Ok`,
//! which means the broker confirmed the message (persisted to a quorum of its
//! replicas) and routed it to the calls queue. Anything else, a Nack, a
//! returned (unroutable) message, a timeout or a lost connection, is an error
//! and the webhook is answered 503, because the provider may retry but we
//! would otherwise claim a call we do not have.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use callsync_shared::config::SecretUrl;
use callsync_shared::publish::{self, Destination};
use callsync_shared::topology::{CALL_REPORT_KEY, Topology};
use callsync_shared::{CallId, Source};
use lapin::BasicProperties;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::lane::{Lane, LaneSettings, Live};

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

/// A cheap-to-clone handle on the publishing lanes.
#[derive(Clone, Debug)]
pub struct Publisher {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The exchange and routing key of every report, built once.
    exchange: String,
    routing_key: String,
    confirm_timeout: Duration,
    /// What each source's webhooks are verified by (the `verified_by`
    /// header), by `Source as usize`. A spooled report is published with
    /// the credentials configured when it is published.
    verified_by: Vec<String>,
    lanes: Vec<Arc<Lane>>,
    /// Round-robin position among `lanes`.
    next: AtomicUsize,
    /// The lanes' supervisors, waited for by [`Publisher::close`].
    supervisors: TaskTracker,
    /// Cancelled by [`Publisher::close`]: the supervisors close their
    /// lanes and stop reconnecting.
    stop: CancellationToken,
}

impl Publisher {
    /// Starts one supervisor per lane in the background. The publisher is
    /// not ready until a lane is up; see [`Publisher::is_ready`].
    /// `verified_by` says, for each source in `Source::ALL` order, what its
    /// webhooks are verified by.
    pub fn start(
        url: SecretUrl,
        topology: Topology,
        confirm_timeout: Duration,
        verified_by: Vec<String>,
        connections: usize,
    ) -> Self {
        let (exchange, routing_key) = (topology.exchange(), CALL_REPORT_KEY.to_owned());
        // At least one lane (the configuration refuses 0).
        let connections = connections.max(1);
        let lanes: Vec<_> = (1..=connections)
            .map(|i| Arc::new(Lane::new(format!("callsync-ingest {i}/{connections}"))))
            .collect();
        let settings = Arc::new(LaneSettings { url, topology });
        let stop = CancellationToken::new();
        let supervisors = TaskTracker::new();
        for lane in &lanes {
            supervisors.spawn(Arc::clone(lane).supervise(Arc::clone(&settings), stop.clone()));
        }
        supervisors.close();
        Self {
            inner: Arc::new(Inner {
                exchange,
                routing_key,
                confirm_timeout,
                verified_by,
                lanes,
                next: AtomicUsize::new(0),
                supervisors,
                stop,
            }),
        }
    }

    /// True while a lane is usable: its connection and confirm channel are
    /// open and the broker has not blocked publishing (memory
    /// or disk alarm). Publishes go to the usable lanes only.
    pub fn is_ready(&self) -> bool {
        self.usable_lanes() > 0
    }

    /// How many lanes are usable now.
    pub fn usable_lanes(&self) -> usize {
        self.inner
            .lanes
            .iter()
            .filter(|lane| lane.is_ready())
            .count()
    }

    /// How many lanes (broker connections) publish.
    pub fn lanes(&self) -> usize {
        self.inner.lanes.len()
    }

    /// The next usable lane's connection after the last one used.
    fn take(&self) -> Option<Arc<Live>> {
        let lanes = &self.inner.lanes;
        let first = self.inner.next.fetch_add(1, Ordering::Relaxed);
        (0..lanes.len()).find_map(|i| lanes[(first + i) % lanes.len()].take())
    }

    /// Publishes one report on one lane and waits for the broker's confirm
    /// of that message (confirms are per channel, by delivery tag).
    pub async fn publish(&self, report: &OutgoingReport) -> Result<(), PublishError> {
        let taken = self.take().ok_or(PublishError::Unavailable)?;
        let started = Instant::now();
        let result = publish::publish_confirmed(
            taken.channel(),
            Destination {
                exchange: &self.inner.exchange,
                routing_key: &self.inner.routing_key,
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
            // No answer within the deadline, or an error on the channel:
            // replace this lane rather than wait for a heartbeat; the
            // others go on publishing meanwhile.
            taken.replace();
        }
        Ok(result?)
    }

    /// Stops reconnecting and closes every lane. Publishes already awaiting
    /// a confirm have been drained by the HTTP server's graceful shutdown
    /// before this is called.
    pub async fn close(&self) {
        self.inner.stop.cancel();
        self.inner.supervisors.wait().await;
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
