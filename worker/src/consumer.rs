//! Consuming call reports: one delivery in, acknowledged only after its
//! outcome is committed (synced, a duplicate, delayed or parked).
//!
//! The consumer keeps a connection with two channels: one consuming with
//! manual acks and `prefetch` unacknowledged messages (which is also the
//! worker's concurrency), one in confirm mode for retry and parking copies.
//! When the connection drops, unacknowledged messages return to the queue;
//! the consumer reconnects, re-declares the topology and consumes again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use callsync_shared::sources::{self, ParseContext, Parsed};
use callsync_shared::topology::headers;
use callsync_shared::{Region, Source, broker};
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::config::WorkerConfig;
use crate::ledger::CallKey;
use crate::retry::{History, Republisher, RetryTiers, Route};
use crate::sync::{Disposition, Outcome, Syncer};

/// Broker connectivity and work in hand as seen by the consumer, for
/// `/readyz`: an operator (or a test) can tell an idle worker from one that
/// still holds unfinished deliveries.
#[derive(Debug, Default)]
pub struct BrokerHealth {
    consuming: AtomicBool,
    in_flight: AtomicUsize,
}

impl BrokerHealth {
    pub fn is_consuming(&self) -> bool {
        self.consuming.load(Ordering::Relaxed)
    }

    /// Deliveries received and not yet acknowledged, parked or requeued.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    fn set(&self, consuming: bool) {
        self.consuming.store(consuming, Ordering::Relaxed);
    }

    /// Counts one delivery as in hand until the guard is dropped (also when
    /// its task is aborted at the end of the grace period).
    fn hold(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(Arc::clone(self))
    }
}

/// One delivery in hand; see [`BrokerHealth::hold`].
struct InFlight(Arc<BrokerHealth>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs the consume loop until `shutdown` flips to true.
#[derive(Debug)]
pub struct ConsumerLoop {
    pub config: Arc<WorkerConfig>,
    pub syncer: Arc<Syncer>,
    pub health: Arc<BrokerHealth>,
}

impl ConsumerLoop {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut delays = broker::reconnect_delays();
        let mut in_flight: JoinSet<()> = JoinSet::new();
        while !*shutdown.borrow() {
            match self.connect().await {
                Ok((connection, consume, publish)) => {
                    delays = broker::reconnect_delays();
                    self.health.set(true);
                    tracing::info!(queue = %self.config.topology.calls_queue(), prefetch = self.config.prefetch, "consuming");
                    let stopped = self
                        .consume(
                            &connection,
                            &consume,
                            publish,
                            &mut in_flight,
                            &mut shutdown,
                        )
                        .await;
                    self.health.set(false);
                    if stopped {
                        self.drain(&mut in_flight).await;
                        broker::close(&connection, "callsync-worker shutting down").await;
                        return;
                    }
                    broker::close(&connection, "reconnecting").await;
                    tracing::warn!(
                        "broker connection lost; unacknowledged messages return to the queue; reconnecting"
                    );
                }
                Err(error) => tracing::warn!(%error, "cannot connect to the broker; retrying"),
            }
            let delay = delays.next().unwrap_or(Duration::from_secs(5));
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => {}
            }
        }
        self.drain(&mut in_flight).await;
    }

    async fn connect(&self) -> Result<(Connection, Channel, Channel), lapin::Error> {
        let connection = broker::connect(self.config.amqp_url.expose(), "callsync-worker").await?;
        let setup = async {
            let publish = connection.create_channel().await?;
            publish
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            self.config.topology.declare_core(&publish).await?;
            self.config
                .topology
                .declare_retry_tiers(&publish, &self.config.retry_delays)
                .await?;
            let consume = connection.create_channel().await?;
            consume
                .basic_qos(self.config.prefetch, BasicQosOptions::default())
                .await?;
            Ok((consume, publish))
        };
        match broker::within("preparing the channels", setup).await {
            Ok((consume, publish)) => Ok((connection, consume, publish)),
            Err(error) => {
                broker::close(&connection, "set-up failed").await;
                Err(error)
            }
        }
    }

    /// Consumes until the connection fails (false) or shutdown (true).
    async fn consume(
        &self,
        connection: &Connection,
        channel: &Channel,
        publish: Channel,
        in_flight: &mut JoinSet<()>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        let tag = format!("callsync-worker-{}", uuid::Uuid::now_v7());
        let mut consumer = match channel
            .basic_consume(
                self.config.topology.calls_queue().as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
        {
            Ok(consumer) => consumer,
            Err(error) => {
                tracing::warn!(%error, "cannot start consuming");
                return false;
            }
        };
        let depths = tokio::spawn(report_queue_depths(
            connection.create_channel().await.ok(),
            self.config.topology.clone(),
            self.config.retry_delays.clone(),
        ));
        let _stop_depths = AbortOnDrop(depths);
        let handler = Arc::new(Handler {
            syncer: Arc::clone(&self.syncer),
            tiers: RetryTiers::new(self.config.retry_delays.clone()),
            region: self.config.default_region,
            republisher: Republisher::new(
                publish,
                self.config.topology.clone(),
                Duration::from_secs(10),
            ),
            shutdown: shutdown.clone(),
        });
        loop {
            tokio::select! {
                delivery = consumer.next() => match delivery {
                    Some(Ok(delivery)) => {
                        let handler = Arc::clone(&handler);
                        let held = self.health.hold();
                        in_flight.spawn(async move {
                            handler.handle(delivery).await;
                            drop(held);
                        });
                    }
                    Some(Err(error)) => {
                        tracing::warn!(%error, "consumer error");
                        return false;
                    }
                    None => return false,
                },
                () = broker::closed(connection) => return false,
                _ = shutdown.changed() => {
                    // Stop deliveries first, so nothing new starts while in-flight work finishes.
                    if let Err(error) = channel.basic_cancel(tag.as_str().into(), BasicCancelOptions::default()).await {
                        tracing::debug!(%error, "basic.cancel failed");
                    }
                    return true;
                }
                // Reap finished tasks so the set does not grow without bound.
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            }
        }
    }

    /// Lets in-flight messages finish within the grace period; what is still
    /// running afterwards is abandoned unacknowledged, and the broker
    /// redelivers it when the channel closes.
    async fn drain(&self, in_flight: &mut JoinSet<()>) {
        let grace = self.config.shutdown_grace;
        if in_flight.is_empty() {
            return;
        }
        tracing::info!(
            in_flight = in_flight.len(),
            ?grace,
            "waiting for in-flight messages"
        );
        let finished = tokio::time::timeout(grace, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            tracing::warn!(
                abandoned = in_flight.len(),
                "grace period over; unfinished messages will be redelivered"
            );
            in_flight.abort_all();
        }
    }
}

/// Aborts a background task when dropped (when consuming stops).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How often queue depths are published as `callsync_queue_messages`.
const DEPTH_EVERY: Duration = Duration::from_secs(15);

/// Publishes the depth of the work, retry and parking queues, so that
/// dashboards and alerts see parked and waiting messages.
async fn report_queue_depths(
    channel: Option<Channel>,
    topology: callsync_shared::topology::Topology,
    delays: Vec<Duration>,
) {
    let Some(channel) = channel else { return };
    let mut queues = vec![topology.calls_queue(), topology.parking_queue()];
    queues.extend(delays.iter().map(|d| topology.retry_queue(*d)));
    let mut tick = tokio::time::interval(DEPTH_EVERY);
    loop {
        tick.tick().await;
        for queue in &queues {
            // The worker declared these queues, so a passive declare cannot
            // fail with 404 (which would close the channel).
            match channel
                .queue_declare(
                    queue.as_str().into(),
                    lapin::options::QueueDeclareOptions {
                        passive: true,
                        ..lapin::options::QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
            {
                Ok(q) => metrics::gauge!("callsync_queue_messages", "queue" => queue.clone())
                    .set(f64::from(q.message_count())),
                Err(error) => {
                    tracing::debug!(%error, "queue depth probe failed");
                    return;
                }
            }
        }
    }
}

/// Processes one delivery.
#[derive(Debug)]
struct Handler {
    syncer: Arc<Syncer>,
    tiers: RetryTiers,
    region: Region,
    republisher: Republisher,
    shutdown: watch::Receiver<bool>,
}

/// What finally happened to a message, for metrics.
#[derive(Debug, Clone, Copy)]
enum Fate {
    Synced,
    Duplicate,
    Ignored,
    Retried,
    Parked,
    Requeued,
    Abandoned,
}

impl Fate {
    fn label(self) -> &'static str {
        match self {
            Fate::Synced => "synced",
            Fate::Duplicate => "duplicate",
            Fate::Ignored => "ignored",
            Fate::Retried => "retried",
            Fate::Parked => "parked",
            Fate::Requeued => "requeued",
            Fate::Abandoned => "abandoned",
        }
    }
}

impl Handler {
    async fn handle(&self, delivery: Delivery) {
        let table = delivery.properties.headers().as_ref();
        let source_name = headers::text(table, headers::SOURCE).unwrap_or_default();
        let call_id = headers::text(table, headers::CALL_ID).unwrap_or_default();
        let history = History::of(&delivery.properties);
        let span = tracing::info_span!(
            "message",
            source = %source_name,
            call_id = %call_id,
            attempt = history.attempts + 1
        );
        metrics::gauge!("callsync_worker_in_flight").increment(1.0);
        let fate = self
            .process(&delivery, &source_name, &history)
            .instrument(span)
            .await;
        metrics::gauge!("callsync_worker_in_flight").decrement(1.0);
        metrics::counter!("callsync_worker_messages_total", "outcome" => fate.label()).increment(1);
    }

    async fn process(&self, delivery: &Delivery, source_name: &str, history: &History) -> Fate {
        let Ok(source) = source_name.parse::<Source>() else {
            let reason = format!("message has no known source header (got {source_name:?})");
            return self.park(delivery, history.attempts, &reason, None).await;
        };
        let table = delivery.properties.headers().as_ref();
        let received_at = headers::int(table, headers::RECEIVED_AT)
            .and_then(|ms| {
                OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
            })
            .unwrap_or_else(OffsetDateTime::now_utc);
        let ctx = ParseContext {
            received_at,
            region: self.region,
        };
        let report = match sources::parse(source, &delivery.data, &ctx) {
            Ok(Parsed::Report(report)) => report,
            Ok(Parsed::Ignored { event }) => {
                tracing::info!(%event, "not a final call report; dropped");
                return self.ack(delivery, Fate::Ignored).await;
            }
            Err(error) => {
                return self
                    .park(
                        delivery,
                        history.attempts,
                        &format!("unparseable: {error}"),
                        None,
                    )
                    .await;
            }
        };

        loop {
            let started = Instant::now();
            let result = self.syncer.sync(&report).await;
            match result {
                Ok(Outcome::Synced { contact_id }) => {
                    let lag = OffsetDateTime::now_utc() - report.ended_at;
                    metrics::histogram!("callsync_worker_sync_lag_seconds")
                        .record(lag.as_seconds_f64().max(0.0));
                    tracing::info!(
                        %contact_id,
                        phone = %report.caller.phone.as_ref().map(|p| p.masked()).unwrap_or_default(),
                        took_ms = started.elapsed().as_millis() as u64,
                        "call synced"
                    );
                    return self.ack(delivery, Fate::Synced).await;
                }
                Ok(Outcome::Duplicate) => {
                    tracing::info!("call was synced before; duplicate acknowledged");
                    return self.ack(delivery, Fate::Duplicate).await;
                }
                Err(error) => match error.disposition() {
                    Disposition::WaitForDatabase => {
                        tracing::warn!(%error, "database unavailable; holding the message until it is back");
                        if !self.wait_for_database().await {
                            // Shutting down: leave it unacknowledged for redelivery.
                            return Fate::Abandoned;
                        }
                    }
                    Disposition::Park => {
                        let key = CallKey {
                            source: report.source,
                            call_id: &report.call_id,
                        };
                        return self
                            .park(
                                delivery,
                                history.attempts + 1,
                                &error.to_string(),
                                Some(key),
                            )
                            .await;
                    }
                    Disposition::Retry { counts } => {
                        let attempts = history.attempts + u32::from(counts);
                        let key = CallKey {
                            source: report.source,
                            call_id: &report.call_id,
                        };
                        return match self.tiers.route(attempts.max(1)) {
                            Route::Park => {
                                let reason = format!("gave up after {attempts} attempts: {error}");
                                self.park(delivery, attempts, &reason, Some(key)).await
                            }
                            Route::Delay { delay, index } => {
                                tracing::info!(error_kind = error.kind(), %error, ?delay, "retrying later");
                                metrics::counter!("callsync_worker_retries_total", "tier" => index.to_string()).increment(1);
                                match self
                                    .republisher
                                    .delay(
                                        &delivery.data,
                                        &delivery.properties,
                                        attempts,
                                        &error.to_string(),
                                        delay,
                                    )
                                    .await
                                {
                                    Ok(()) => self.ack(delivery, Fate::Retried).await,
                                    Err(e) => self.requeue(delivery, &e.to_string()).await,
                                }
                            }
                        };
                    }
                },
            }
        }
    }

    async fn park(
        &self,
        delivery: &Delivery,
        attempts: u32,
        reason: &str,
        key: Option<CallKey<'_>>,
    ) -> Fate {
        tracing::warn!(%reason, "parking message");
        match self
            .republisher
            .park(&delivery.data, &delivery.properties, attempts, reason)
            .await
        {
            Ok(()) => {
                if let Some(key) = key
                    && let Err(e) = self.syncer.ledger().mark_parked(key, reason).await
                {
                    tracing::debug!(error = %e, "could not mark the call parked in the ledger");
                }
                self.ack(delivery, Fate::Parked).await
            }
            Err(e) => self.requeue(delivery, &e.to_string()).await,
        }
    }

    async fn ack(&self, delivery: &Delivery, fate: Fate) -> Fate {
        if let Err(error) = delivery.ack(BasicAckOptions::default()).await {
            // The channel is gone; the broker redelivers and the ledger makes
            // the second delivery a duplicate.
            tracing::warn!(%error, "acknowledgement failed; the message will be redelivered");
        }
        fate
    }

    async fn requeue(&self, delivery: &Delivery, why: &str) -> Fate {
        tracing::warn!(%why, "could not move the message on; returning it to the queue");
        let _ = delivery
            .nack(BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            })
            .await;
        Fate::Requeued
    }

    /// Polls the database until it answers (true) or shutdown begins (false).
    async fn wait_for_database(&self) -> bool {
        let mut shutdown = self.shutdown.clone();
        let mut pause = Duration::from_millis(250);
        loop {
            if *shutdown.borrow() {
                return false;
            }
            if self.syncer.ledger().ping().await.is_ok() {
                return true;
            }
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => return false,
            }
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }
}
