//! The reconciler inside the worker: a round per platform every
//! `CALLSYNC_RECONCILE_EVERY`, by one replica at a time.
//!
//! Every replica looks every few seconds whether a platform's round is due
//! and free; the first to take its lease (see [`state`](super::state)) runs
//! it. A round walks the window from `lookback` before the end of the last
//! walked window (so a reconciler that was down catches up, up to
//! [`LONGEST_CATCH_UP`]) to now, and checkpoints after every page, so that
//! a replica taking over after a crash resumes at the page that was next.
//! A replica that stalls loses its lease to another and stops.

use std::sync::Arc;
use std::time::Duration;

use callsync_shared::Source;
use callsync_shared::config::SecretUrl;
use callsync_shared::telemetry::Chain;
use callsync_shared::topology::Topology;
use time::OffsetDateTime;

use super::round::{Counts, RoundError, Sink, Walker};
use super::state::{Held, Rounds};
use super::{Outbox, Platform, ReconcileConfig, Window};
use crate::ledger::{Ledger, LedgerError};
use crate::lifecycle::Lifecycle;

/// How far back a reconciler that was down for long catches up by itself;
/// older calls are `callsync-worker backfill`'s.
pub const LONGEST_CATCH_UP: Duration = Duration::from_secs(7 * 86_400);
/// How often a replica looks for a due round, at most.
const LOOK_EVERY: Duration = Duration::from_secs(5);
/// How soon a failed round is tried again, at most.
const RETRY_FAILED_AFTER: Duration = Duration::from_secs(60);

/// The scheduled reconciler of one worker replica.
#[derive(Debug)]
pub struct Reconciler {
    pub platforms: Vec<Arc<dyn Platform>>,
    pub config: ReconcileConfig,
    pub rounds: Rounds,
    pub ledger: Ledger,
    pub amqp_url: SecretUrl,
    pub topology: Topology,
    pub confirm_timeout: Duration,
    /// The lease a round is held with, renewed at a third of it.
    pub lease: Duration,
}

/// How a round ended.
enum Ended {
    Done(Counts),
    ShuttingDown,
}

impl Reconciler {
    /// Runs rounds as they fall due until the worker shuts down.
    pub async fn run(self, lifecycle: Arc<Lifecycle>) {
        for platform in &self.platforms {
            let source = platform.source();
            metrics::gauge!("callsync_reconcile_interval_seconds", "source" => source.as_str())
                .set(self.config.every.as_secs_f64());
            tracing::info!(%source, every = ?self.config.every, lookback = ?self.config.lookback, "reconciling the platform's call list");
        }
        let look_every = self.config.every.min(LOOK_EVERY);
        let started = OffsetDateTime::now_utc();
        loop {
            for platform in &self.platforms {
                if lifecycle.is_shutting_down() {
                    return;
                }
                self.publish_last_success(platform.source(), started).await;
                match self.rounds.take(platform.source()).await {
                    Ok(Some(held)) => self.run_round(platform.as_ref(), held, &lifecycle).await,
                    Ok(None) => {}
                    Err(e) => {
                        tracing::debug!(source = %platform.source(), error = %Chain(&e), "cannot look for a due reconcile round");
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(look_every) => {}
                () = lifecycle.shutting_down() => return,
            }
        }
    }

    /// Every replica reports when any replica last finished a round, so the
    /// "no round for three intervals" alert holds whichever replica ran it.
    /// Before the first round ever succeeded it reports `since` (when this
    /// replica started), so that a reconciler failing from the start
    /// alerts too instead of exporting nothing.
    async fn publish_last_success(&self, source: Source, since: OffsetDateTime) {
        if let Ok(at) = self.rounds.last_success(source).await {
            metrics::gauge!(
                "callsync_reconcile_last_success_timestamp_seconds",
                "source" => source.as_str(),
            )
            .set(at.unwrap_or(since).unix_timestamp() as f64);
        }
    }

    async fn run_round(&self, platform: &dyn Platform, held: Held, lifecycle: &Lifecycle) {
        let source = platform.source();
        let outcome = tokio::select! {
            outcome = self.walk(platform, held) => outcome,
            lost = keep_lease(&self.rounds, source, self.lease) => Err(RoundError::Ledger(lost)),
            () = lifecycle.shutting_down() => Ok(Ended::ShuttingDown),
        };
        match outcome {
            Ok(Ended::Done(counts)) => {
                metrics::counter!("callsync_reconcile_rounds_total", "source" => source.as_str(), "outcome" => "succeeded").increment(1);
                self.publish_last_success(source, OffsetDateTime::now_utc())
                    .await;
                if counts.queued > 0 {
                    tracing::warn!(
                        %source,
                        queued = counts.queued,
                        listed = counts.listed,
                        "reconciliation found calls whose webhook never arrived; they are queued"
                    );
                } else {
                    tracing::info!(%source, listed = counts.listed, known = counts.known, unfinished = counts.unfinished, "reconcile round done");
                }
            }
            Ok(Ended::ShuttingDown) => {
                if let Err(e) = self.rounds.release(source).await {
                    tracing::debug!(%source, error = %Chain(&e), "could not hand back the reconcile lease; it expires");
                }
            }
            Err(RoundError::Ledger(LedgerError::LeaseLost(what))) => {
                tracing::warn!(%source, "lost the lease on {what}: another replica resumes the round");
            }
            Err(error) => {
                metrics::counter!("callsync_reconcile_rounds_total", "source" => source.as_str(), "outcome" => "failed").increment(1);
                let retry_in = if error.is_transient() {
                    self.config.every.min(RETRY_FAILED_AFTER)
                } else {
                    self.config.every
                };
                // With its causes, in the log and in the round's record.
                let reason = Chain(&error);
                if error.is_transient() {
                    tracing::warn!(%source, error = %reason, retry_in = ?retry_in, "reconcile round stopped; it resumes from its checkpoint");
                } else {
                    tracing::error!(%source, error = %reason, "reconcile round failed; fix the setting it names");
                }
                if let Err(e) = self
                    .rounds
                    .fail(source, &reason.to_string(), retry_in)
                    .await
                {
                    tracing::debug!(%source, error = %Chain(&e), "could not record the failed round");
                }
            }
        }
    }

    /// Walks the held round's window from its checkpoint to its end.
    async fn walk(&self, platform: &dyn Platform, held: Held) -> Result<Ended, RoundError> {
        let source = platform.source();
        let now = OffsetDateTime::now_utc();
        let window = held
            .window
            .unwrap_or_else(|| next_window(now, held.last_window_end, self.config.lookback));
        if held.cursor.is_some() {
            tracing::info!(%source, pages = held.pages, "resuming a reconcile round from its checkpoint");
        }
        let outbox = Outbox::connect(
            self.amqp_url.expose(),
            self.topology.clone(),
            self.confirm_timeout,
        )
        .await?;
        let result = self.pages(platform, &outbox, &window, held).await;
        outbox.close().await;
        let counts = result?;
        self.rounds
            .finish(source, &window, &counts, self.config.every)
            .await?;
        Ok(Ended::Done(counts))
    }

    async fn pages(
        &self,
        platform: &dyn Platform,
        outbox: &Outbox,
        window: &Window,
        held: Held,
    ) -> Result<Counts, RoundError> {
        let source = platform.source();
        let mut walker = Walker::new(
            platform,
            &self.ledger,
            Sink::Queue(outbox),
            self.config.grace,
        );
        let mut cursor = held.cursor;
        let mut pages = held.pages;
        let mut counts = held.counts;
        loop {
            let (found, next) = walker.page(window, cursor.as_deref()).await?;
            counts += found;
            pages += 1;
            let Some(next) = next else {
                return Ok(counts);
            };
            // Everything the page queued is confirmed by the broker: a
            // successor may start at the next one.
            self.rounds
                .checkpoint(source, window, &next, pages, &counts)
                .await?;
            cursor = Some(next);
        }
    }
}

/// The window of a new round: up to now, from `lookback` before the end of
/// the last window walked (or before now, on the first round), reaching
/// back no further than [`LONGEST_CATCH_UP`].
pub fn next_window(
    now: OffsetDateTime,
    last_window_end: Option<OffsetDateTime>,
    lookback: Duration,
) -> Window {
    let from = last_window_end.map_or(now, |end| end.min(now));
    let start = (from - lookback).max(now - LONGEST_CATCH_UP);
    Window { start, end: now }
}

/// Renews the lease at a third of its length; returns only when it is lost.
/// A database hiccup is tolerated until the lease runs out.
async fn keep_lease(rounds: &Rounds, source: Source, lease: Duration) -> LedgerError {
    loop {
        tokio::time::sleep(lease / 3).await;
        match rounds.renew(source).await {
            Ok(()) => {}
            Err(lost @ LedgerError::LeaseLost(_)) => return lost,
            Err(e) => {
                tracing::debug!(%source, error = %Chain(&e), "could not renew the reconcile lease")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn the_first_round_looks_back_from_now() {
        let now = OffsetDateTime::now_utc();
        let window = next_window(now, None, 2 * HOUR);
        assert_eq!(window.start, now - 2 * HOUR);
        assert_eq!(window.end, now);
    }

    #[test]
    fn a_round_after_downtime_starts_a_lookback_before_the_last_window_ended() {
        let now = OffsetDateTime::now_utc();
        let window = next_window(now, Some(now - 5 * HOUR), 2 * HOUR);
        assert_eq!(window.start, now - 7 * HOUR);
        assert_eq!(window.end, now);
    }

    #[test]
    fn catching_up_stops_at_the_longest_catch_up() {
        let now = OffsetDateTime::now_utc();
        let window = next_window(now, Some(now - 30 * 24 * HOUR), 2 * HOUR);
        assert_eq!(window.start, now - LONGEST_CATCH_UP);
    }

    #[test]
    fn a_last_window_in_the_future_is_read_as_now() {
        let now = OffsetDateTime::now_utc();
        let window = next_window(now, Some(now + HOUR), 2 * HOUR);
        assert_eq!(window.start, now - 2 * HOUR);
    }
}
