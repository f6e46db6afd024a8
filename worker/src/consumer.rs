//! Consuming call reports: one delivery in, acknowledged only after its
//! outcome is committed (synced, a duplicate, delayed or parked).
//!
//! The consumer keeps a connection with two channels: one consuming with
//! manual acks and `prefetch` unacknowledged messages (which is also the
//! worker's concurrency), one in confirm mode for retry and parking copies.
//! When the connection drops, unacknowledged messages return to the queue;
//! the consumer reconnects, re-declares the topology and consumes again.
//!
//! When the worker pauses (see `lifecycle.rs`), the consumer cancels its
//! subscription, every message in hand is put back on the calls queue
//! unharmed (a fresh copy with the same attempt count, then the original
//! acknowledged), and it probes the CRM until it may consume again. The
//! connection stays open meanwhile, so queue depths are still reported.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use callsync_shared::sources::{self, ParseContext, Parsed};
use callsync_shared::telemetry::Chain;
use callsync_shared::topology::headers;
use callsync_shared::{CallReport, Region, Source, broker};
use futures_util::StreamExt;
use lapin::Consumer;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use time::OffsetDateTime;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::config::WorkerConfig;
use crate::crm::CrmHealth;
use crate::ledger::{CallKey, Receipt};
use crate::lifecycle::{Lifecycle, PauseReason};
use crate::poll::Doubling;
use crate::retry::{History, Republisher, RetryTiers, Route};
use crate::sync::{Disposition, Outcome, SyncError, Syncer};

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

/// Why a consuming run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopped {
    Shutdown,
    Paused,
    ConnectionLost,
}

/// How long a paused worker waits before its first probe; the wait doubles
/// up to `CALLSYNC_PAUSE_PROBE_MAX`.
const FIRST_PROBE: Duration = Duration::from_secs(5);

/// How long to wait, after cancelling the subscription, for deliveries the
/// broker had already sent.
const IN_TRANSIT: Duration = Duration::from_millis(500);

/// Runs the consume loop until the worker shuts down.
#[derive(Debug)]
pub struct ConsumerLoop {
    pub config: Arc<WorkerConfig>,
    pub syncer: Arc<Syncer>,
    pub health: Arc<BrokerHealth>,
    pub crm_health: Arc<CrmHealth>,
    pub lifecycle: Arc<Lifecycle>,
}

impl ConsumerLoop {
    pub async fn run(self) {
        let mut delays = broker::reconnect_delays();
        let mut in_flight: JoinSet<()> = JoinSet::new();
        while !self.lifecycle.is_shutting_down() {
            match self.connect().await {
                Ok((connection, consume, publish)) => {
                    delays = broker::reconnect_delays();
                    self.health.set(true);
                    let stopped = self
                        .serve_connection(&connection, &consume, publish, &mut in_flight)
                        .await;
                    self.health.set(false);
                    if stopped == Stopped::Shutdown {
                        // The channels were closed after the drain, in
                        // `serve_connection`; the connection is the last.
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
                () = self.lifecycle.shutting_down() => {}
            }
        }
        self.drain(&mut in_flight).await;
    }

    /// Consumes on one connection, pausing and resuming as often as needed,
    /// until shutdown or until the connection is lost.
    async fn serve_connection(
        &self,
        connection: &Connection,
        channel: &Channel,
        publish: Channel,
        in_flight: &mut JoinSet<()>,
    ) -> Stopped {
        let depth_channel = connection.create_channel().await.ok();
        let depths = AbortOnDrop(tokio::spawn(report_queue_depths(
            depth_channel.clone(),
            self.config.topology.clone(),
            self.config.retry_delays.clone(),
        )));
        let handler = self.handler(&publish);
        loop {
            let mut stopped = self.consume(connection, channel, &handler, in_flight).await;
            if stopped == Stopped::Paused {
                match self.sit_out_pause(connection, in_flight).await {
                    None => continue,
                    Some(then) => stopped = then,
                }
            }
            if stopped == Stopped::Shutdown {
                // In-flight calls finish (or are abandoned) first: they ack
                // and publish on these channels.
                self.drain(in_flight).await;
                drop(depths);
                for channel in depth_channel.iter().chain([channel, &publish]) {
                    broker::close_channel(channel, "callsync-worker shutting down").await;
                }
            }
            return stopped;
        }
    }

    /// The handler of this connection's deliveries, publishing its retry
    /// and parking copies on `publish`.
    fn handler(&self, publish: &Channel) -> Arc<Handler> {
        Arc::new(Handler {
            syncer: Arc::clone(&self.syncer),
            tiers: RetryTiers::new(self.config.retry_delays.clone()),
            region: self.config.default_region,
            republisher: Republisher::new(
                publish.clone(),
                self.config.topology.clone(),
                Duration::from_secs(10),
            ),
            lifecycle: Arc::clone(&self.lifecycle),
            crm_health: Arc::clone(&self.crm_health),
            credential_help: self.config.crm.credential_help(),
        })
    }

    /// Waits out a pause: `None` once the worker resumed, else why it
    /// stopped. Every message in hand is put back by its handler, which
    /// sees the pause (or finishes, if it got past the CRM already): wait
    /// for all of them, however long, before probing. Aborting one would
    /// leave its delivery unacknowledged on a channel that stays open.
    async fn sit_out_pause(
        &self,
        connection: &Connection,
        in_flight: &mut JoinSet<()>,
    ) -> Option<Stopped> {
        if !self.settle(in_flight).await {
            return Some(Stopped::Shutdown);
        }
        self.probe_until_resumed(connection).await
    }

    async fn connect(&self) -> Result<(Connection, Channel, Channel), lapin::Error> {
        let connection = broker::connect(self.config.amqp_url.expose(), "callsync-worker").await?;
        let setup = async {
            let publish = broker::confirm_channel(&connection, &self.config.topology).await?;
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

    /// Consumes until the connection fails, or the run is cancelled (pause
    /// or shutdown), if it was not already.
    async fn consume(
        &self,
        connection: &Connection,
        channel: &Channel,
        handler: &Arc<Handler>,
        in_flight: &mut JoinSet<()>,
    ) -> Stopped {
        let run = self.lifecycle.run_token();
        if run.is_cancelled() {
            return self.stopped_by_lifecycle();
        }
        tracing::info!(queue = %self.config.topology.calls_queue(), prefetch = self.config.prefetch, "consuming");
        let tag = format!("callsync-worker-{}", uuid::Uuid::now_v7());
        let Some(mut consumer) = self.subscribe(channel, &tag).await else {
            return Stopped::ConnectionLost;
        };
        loop {
            tokio::select! {
                delivery = consumer.next() => match delivery {
                    Some(Ok(delivery)) => self.spawn(handler, delivery, in_flight),
                    Some(Err(error)) => {
                        tracing::warn!(%error, "consumer error");
                        return Stopped::ConnectionLost;
                    }
                    None => return Stopped::ConnectionLost,
                },
                () = broker::closed(connection) => return Stopped::ConnectionLost,
                () = run.cancelled() => {
                    return self.unsubscribe(channel, &tag, &mut consumer, handler, in_flight).await;
                }
                // Reap finished tasks so the set does not grow without bound.
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            }
        }
    }

    /// Why consuming stopped, or may not start: shutdown or a pause.
    fn stopped_by_lifecycle(&self) -> Stopped {
        if self.lifecycle.is_shutting_down() {
            Stopped::Shutdown
        } else {
            Stopped::Paused
        }
    }

    /// Starts consuming the calls queue as `tag`; `None` when the channel
    /// refuses (the connection is then treated as lost).
    async fn subscribe(&self, channel: &Channel, tag: &str) -> Option<Consumer> {
        let subscribed = channel
            .basic_consume(
                self.config.topology.calls_queue().as_str().into(),
                tag.into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await;
        match subscribed {
            Ok(consumer) => Some(consumer),
            Err(error) => {
                tracing::warn!(%error, "cannot start consuming");
                None
            }
        }
    }

    /// Stops deliveries first, so that nothing new starts while in-flight
    /// work finishes; on a pause, what the broker had already sent is
    /// handed to handlers, which put it back.
    async fn unsubscribe(
        &self,
        channel: &Channel,
        tag: &str,
        consumer: &mut Consumer,
        handler: &Arc<Handler>,
        in_flight: &mut JoinSet<()>,
    ) -> Stopped {
        if let Err(error) = channel
            .basic_cancel(tag.into(), BasicCancelOptions::default())
            .await
        {
            tracing::debug!(%error, "basic.cancel failed");
        }
        let stopped = self.stopped_by_lifecycle();
        if stopped == Stopped::Paused {
            self.hand_over_in_transit(consumer, handler, in_flight)
                .await;
        }
        stopped
    }

    fn spawn(&self, handler: &Arc<Handler>, delivery: Delivery, in_flight: &mut JoinSet<()>) {
        let handler = Arc::clone(handler);
        let held = self.health.hold();
        in_flight.spawn(async move {
            handler.handle(delivery).await;
            drop(held);
        });
    }

    /// Deliveries the broker sent before it saw the cancel: handed to
    /// handlers, which put them back because the worker is paused.
    async fn hand_over_in_transit(
        &self,
        consumer: &mut Consumer,
        handler: &Arc<Handler>,
        in_flight: &mut JoinSet<()>,
    ) {
        while let Ok(Some(Ok(delivery))) = tokio::time::timeout(IN_TRANSIT, consumer.next()).await {
            self.spawn(handler, delivery, in_flight);
        }
    }

    /// Probes the CRM with growing pauses until it works again (then
    /// resumes and returns `None`: go on consuming), or until shutdown or a
    /// lost connection (returned).
    async fn probe_until_resumed(&self, connection: &Connection) -> Option<Stopped> {
        let mut pauses = Doubling::new(FIRST_PROBE, self.config.pause_probe_max);
        loop {
            let stop = async {
                tokio::select! {
                    () = self.lifecycle.shutting_down() => Stopped::Shutdown,
                    () = broker::closed(connection) => Stopped::ConnectionLost,
                }
            };
            if let Some(stopped) = pauses.sleep_unless(stop).await {
                return Some(stopped);
            }
            match self.syncer.probe().await {
                Ok(()) => {
                    metrics::counter!("callsync_worker_probes_total", "outcome" => "ok")
                        .increment(1);
                    self.lifecycle.resume();
                    tracing::info!("the CRM accepts requests again; resuming");
                    return None;
                }
                Err(error) => {
                    metrics::counter!("callsync_worker_probes_total", "outcome" => "failed")
                        .increment(1);
                    tracing::info!(error = %Chain(&error), next_probe_in = ?pauses.upcoming(), "still paused");
                }
            }
        }
    }

    /// Waits until no message is in hand; false when shutdown began first
    /// (the shutdown drain then takes over, with its grace period).
    async fn settle(&self, in_flight: &mut JoinSet<()>) -> bool {
        tokio::select! {
            () = async { while in_flight.join_next().await.is_some() {} } => true,
            () = self.lifecycle.shutting_down() => false,
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
    lifecycle: Arc<Lifecycle>,
    crm_health: Arc<CrmHealth>,
    /// What to fix when the CRM refuses the credential.
    credential_help: &'static str,
}

/// What finally happened to a message, for metrics.
#[derive(Debug, Clone, Copy)]
enum Fate {
    Synced,
    Duplicate,
    Ignored,
    Retried,
    Parked,
    /// Put back on the calls queue unharmed because the worker paused.
    PutBack,
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
            Fate::PutBack => "put_back",
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
        if history.attempts == 0 && !delivery.redelivered {
            record_queue_wait(table);
        }
        metrics::gauge!("callsync_worker_in_flight").increment(1.0);
        let fate = self
            .process(&delivery, &source_name, &history)
            .instrument(span)
            .await;
        metrics::gauge!("callsync_worker_in_flight").decrement(1.0);
        metrics::counter!("callsync_worker_messages_total", "outcome" => fate.label()).increment(1);
    }

    /// A delivery's steps: parse the report, sync it, then acknowledge the
    /// message or move it on as the failure's disposition says.
    async fn process(&self, delivery: &Delivery, source_name: &str, history: &History) -> Fate {
        if self.lifecycle.is_paused() {
            return self.put_back(delivery).await;
        }
        let report = match self.parse(delivery, source_name) {
            Ok(Parsed::Report(report)) => report,
            Ok(Parsed::Ignored { event }) => {
                tracing::info!(%event, "not a final call report; dropped");
                return self.ack(delivery, Fate::Ignored).await;
            }
            Err(reason) => return self.park(delivery, history.attempts, &reason, None).await,
        };
        let receipt = receipt(delivery);
        loop {
            let started = Instant::now();
            let error = match self.syncer.sync(&report, &receipt).await {
                Ok(outcome) => return self.acknowledge(delivery, &report, outcome, started).await,
                Err(error) => error,
            };
            if let ControlFlow::Break(fate) =
                self.settle_failure(delivery, &report, history, error).await
            {
                return fate;
            }
        }
    }

    /// The call report in the message, or why the message must be parked.
    fn parse(&self, delivery: &Delivery, source_name: &str) -> Result<Parsed, String> {
        let Ok(source) = source_name.parse::<Source>() else {
            return Err(format!(
                "message has no known source header (got {source_name:?})"
            ));
        };
        let table = delivery.properties.headers().as_ref();
        let received_at = headers::int(table, headers::RECEIVED_AT)
            .and_then(callsync_shared::time::from_unix_ms)
            .unwrap_or_else(OffsetDateTime::now_utc);
        let ctx = ParseContext {
            received_at,
            region: self.region,
        };
        sources::parse(source, &delivery.data, &ctx)
            .map_err(|error| format!("unparseable: {}", Chain(&error)))
    }

    /// Acknowledges the message of a call synced now, or before.
    async fn acknowledge(
        &self,
        delivery: &Delivery,
        report: &CallReport,
        outcome: Outcome,
        started: Instant,
    ) -> Fate {
        match outcome {
            Outcome::Synced { contact_id } => {
                let lag = OffsetDateTime::now_utc() - report.ended_at;
                metrics::histogram!("callsync_worker_sync_lag_seconds")
                    .record(lag.as_seconds_f64().max(0.0));
                metrics::histogram!("callsync_worker_sync_seconds")
                    .record(started.elapsed().as_secs_f64());
                tracing::info!(
                    %contact_id,
                    phone = %report.caller.phone.as_ref().map(|p| p.masked()).unwrap_or_default(),
                    took_ms = started.elapsed().as_millis() as u64,
                    "call synced"
                );
                self.ack(delivery, Fate::Synced).await
            }
            Outcome::Duplicate => {
                tracing::info!("call was synced before; duplicate acknowledged");
                self.ack(delivery, Fate::Duplicate).await
            }
        }
    }

    /// Does what the failure's disposition says with the message: its
    /// fate, or `Continue` when the database is back and the report is to
    /// be synced again.
    async fn settle_failure(
        &self,
        delivery: &Delivery,
        report: &CallReport,
        history: &History,
        error: SyncError,
    ) -> ControlFlow<Fate> {
        let key = CallKey::of(report);
        ControlFlow::Break(match error.disposition() {
            Disposition::WaitForDatabase => {
                tracing::warn!(error = %Chain(&error), "database unavailable; holding the message until it is back");
                if self.wait_for_database().await {
                    return ControlFlow::Continue(());
                }
                // Shutting down: leave it unacknowledged for redelivery.
                Fate::Abandoned
            }
            Disposition::PauseForCredential => {
                self.pause(PauseReason::Credential {
                    detail: Chain(&error).to_string(),
                });
                self.put_back(delivery).await
            }
            Disposition::PauseForSetup => {
                self.pause(PauseReason::Setup {
                    detail: Chain(&error).to_string(),
                });
                self.put_back(delivery).await
            }
            Disposition::Retry { .. } if self.outage(&error) => self.put_back(delivery).await,
            Disposition::Park => {
                let attempts = history.attempts + 1;
                self.park(delivery, attempts, &Chain(&error).to_string(), Some(key))
                    .await
            }
            Disposition::Retry { counts } => {
                let attempts = history.attempts + u32::from(counts);
                self.retry_later(delivery, key, attempts, &error).await
            }
        })
    }

    /// Sends the message to the delay queue of its retry tier, or parks it
    /// when it has used up the last tier.
    async fn retry_later(
        &self,
        delivery: &Delivery,
        key: CallKey<'_>,
        attempts: u32,
        error: &SyncError,
    ) -> Fate {
        let (delay, index) = match self.tiers.route(attempts.max(1)) {
            Route::Park => {
                let reason = format!("gave up after {attempts} attempts: {}", Chain(error));
                return self.park(delivery, attempts, &reason, Some(key)).await;
            }
            Route::Delay { delay, index } => (delay, index),
        };
        tracing::info!(error_kind = error.kind(), error = %Chain(error), ?delay, "retrying later");
        metrics::counter!("callsync_worker_retries_total", "tier" => index.to_string())
            .increment(1);
        let delayed = self
            .republisher
            .delay(
                &delivery.data,
                &delivery.properties,
                attempts,
                &Chain(error).to_string(),
                delay,
            )
            .await;
        match delayed {
            Ok(()) => self.ack(delivery, Fate::Retried).await,
            Err(e) => self.requeue(delivery, &Chain(&e).to_string()).await,
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
                    tracing::debug!(error = %Chain(&e), "could not mark the call parked in the ledger");
                }
                self.ack(delivery, Fate::Parked).await
            }
            Err(e) => self.requeue(delivery, &Chain(&e).to_string()).await,
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
        let mut pauses = Doubling::new(Duration::from_millis(250), Duration::from_secs(5));
        loop {
            if self.lifecycle.is_shutting_down() {
                return false;
            }
            if self.syncer.ledger().ping().await.is_ok() {
                return true;
            }
            if pauses
                .sleep_unless(self.lifecycle.shutting_down())
                .await
                .is_some()
            {
                return false;
            }
        }
    }

    /// Pauses the worker, telling the operator once what happened and what
    /// to do.
    fn pause(&self, reason: PauseReason) {
        if !self.lifecycle.pause(reason.clone()) {
            return;
        }
        match reason {
            PauseReason::Credential { .. } => tracing::error!(
                %reason,
                fix = self.credential_help,
                "syncing paused: the CRM refuses callsync's credential. Calls wait in the queue and nothing is parked; \
                 fix the credential (`callsync-worker check` tells what is missing) and the worker resumes by itself"
            ),
            PauseReason::Setup { .. } => tracing::error!(
                %reason,
                fix = self.credential_help,
                "syncing paused: the CRM's set-up is incomplete (a scope or a custom field is missing). Calls wait in \
                 the queue and nothing is parked; complete the set-up (`callsync-worker check` names what is missing) \
                 and the worker resumes by itself"
            ),
            PauseReason::Outage { .. } => tracing::warn!(
                %reason,
                "syncing paused: the CRM has not answered for a sustained period. Calls wait in the queue and nothing \
                 is parked; the worker probes the CRM and resumes by itself"
            ),
        }
    }

    /// Whether `error` is one more failure of a CRM that is down; if so,
    /// the worker pauses.
    fn outage(&self, error: &SyncError) -> bool {
        if !error.is_crm_unavailable() {
            return false;
        }
        match self.crm_health.outage() {
            Some(detail) => {
                self.pause(PauseReason::Outage { detail });
                true
            }
            None => false,
        }
    }

    /// Puts the message back on the calls queue as it came (same attempt
    /// count), then acknowledges it: a paused worker must not use up the
    /// message's attempts, and a plain requeue would count towards the
    /// queue's delivery limit on every pause.
    async fn put_back(&self, delivery: &Delivery) -> Fate {
        match self
            .republisher
            .put_back(&delivery.data, &delivery.properties)
            .await
        {
            Ok(()) => self.ack(delivery, Fate::PutBack).await,
            Err(e) => self.requeue(delivery, &Chain(&e).to_string()).await,
        }
    }
}

/// How the delivery's report reached callsync, from the message's
/// properties (ingest's and the reconciler's alike: see
/// `callsync_shared::publish::report_properties`).
/// Records how long a report waited between ingest's receipt (its
/// `received_at` header) and its first delivery to a worker: a growing
/// wait is a backlog, before any call is late. Wall clocks of two hosts,
/// so a skew between them shows too; a wait below zero counts as none.
fn record_queue_wait(table: Option<&FieldTable>) {
    if let Some(received_at) =
        headers::int(table, headers::RECEIVED_AT).and_then(callsync_shared::time::from_unix_ms)
    {
        let wait = OffsetDateTime::now_utc() - received_at;
        metrics::histogram!("callsync_worker_queue_wait_seconds")
            .record(wait.as_seconds_f64().max(0.0));
    }
}

fn receipt(delivery: &Delivery) -> Receipt {
    let table = delivery.properties.headers().as_ref();
    Receipt {
        received_at: headers::int(table, headers::RECEIVED_AT)
            .and_then(callsync_shared::time::from_unix_ms),
        published_by: delivery
            .properties
            .app_id()
            .as_ref()
            .map(|id| id.as_str().to_owned()),
        verified_by: headers::text(table, headers::VERIFIED_BY),
    }
}
