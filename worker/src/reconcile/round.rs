//! Walking one window of a platform's call list: which calls to queue.
//!
//! For each page: calls the platform is not done with, or that ended less
//! than the grace period ago (their webhook may still be on its way), are
//! left for a later round; of the rest, those the ledger knows (synced,
//! pending or parked) are skipped; the others are turned into their
//! webhook body and published. Only calls the ledger does not know cost a
//! request for the whole call, on platforms whose list holds a summary.

use std::collections::HashSet;
use std::ops::AddAssign;
use std::time::Duration;

use callsync_shared::sources::{self, Envelope};
use callsync_shared::{CallId, Source};
use time::OffsetDateTime;

use super::{Outbox, Platform, PlatformError, Window};
use crate::ledger::{Ledger, LedgerError};

/// What a walk found, call by call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Calls the list returned (each once, however many pages showed it).
    pub listed: u64,
    /// Calls the ledger knew: their webhook arrived.
    pub known: u64,
    /// Calls published to the calls queue (or, in a dry run, that would be).
    pub queued: u64,
    /// Calls in progress, not yet analysed, or inside the grace period.
    pub unfinished: u64,
    /// Calls whose report the source's parser could not read (logged).
    pub unreadable: u64,
}

impl AddAssign for Counts {
    fn add_assign(&mut self, other: Self) {
        self.listed += other.listed;
        self.known += other.known;
        self.queued += other.queued;
        self.unfinished += other.unfinished;
        self.unreadable += other.unreadable;
    }
}

/// Why a walk stopped before the end of its window.
#[derive(Debug, thiserror::Error)]
pub enum RoundError {
    #[error(transparent)]
    Platform(#[from] PlatformError),
    #[error("cannot read the ledger")]
    Ledger(#[from] LedgerError),
    #[error("the broker did not take a reconciled call")]
    Publish(#[from] callsync_shared::publish::PublishError),
    #[error("cannot reach the broker")]
    Broker(#[from] lapin::Error),
}

impl RoundError {
    /// False only when an operator must change something (the API key, the
    /// URL); everything else is tried again at the next round.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Platform(e) => e.is_transient(),
            Self::Ledger(_) | Self::Publish(_) | Self::Broker(_) => true,
        }
    }
}

/// Where a walk sends the calls it queues.
#[derive(Debug, Clone, Copy)]
pub enum Sink<'a> {
    Queue(&'a Outbox),
    /// Count only (`backfill --dry-run`), from the list alone: no call is
    /// fetched, so a call the list shows finished and its details do not
    /// is counted as to queue.
    DryRun,
}

/// Walks one window, page by page.
#[derive(Debug)]
pub struct Walker<'a> {
    platform: &'a dyn Platform,
    ledger: &'a Ledger,
    sink: Sink<'a>,
    grace: Duration,
    /// Calls this walk has already counted: a call on a page boundary may
    /// be listed twice.
    seen: HashSet<String>,
}

impl<'a> Walker<'a> {
    pub fn new(
        platform: &'a dyn Platform,
        ledger: &'a Ledger,
        sink: Sink<'a>,
        grace: Duration,
    ) -> Self {
        Self {
            platform,
            ledger,
            sink,
            grace,
            seen: HashSet::new(),
        }
    }

    fn source(&self) -> Source {
        self.platform.source()
    }

    /// One page from `cursor`: what it found and where the next one starts
    /// (`None`: the window is done).
    pub async fn page(
        &mut self,
        window: &Window,
        cursor: Option<&str>,
    ) -> Result<(Counts, Option<String>), RoundError> {
        let page = self.platform.page(window, cursor).await?;
        let now = OffsetDateTime::now_utc();
        let mut counts = Counts::default();
        let mut ready = Vec::new();
        for call in page.calls {
            if !self.seen.insert(call.call_id.clone()) {
                continue;
            }
            counts.listed += 1;
            let settled = call.ended_at.is_none_or(|ended| ended + self.grace <= now);
            if call.finished && settled {
                ready.push(call);
            } else {
                counts.unfinished += 1;
            }
        }
        let ids: Vec<String> = ready.iter().map(|c| c.call_id.clone()).collect();
        let known = self.ledger.known_calls(self.source(), &ids).await?;
        for call in ready {
            if known.contains(&call.call_id) {
                counts.known += 1;
                continue;
            }
            if matches!(self.sink, Sink::DryRun) {
                // Counted from the list alone: a dry run costs no request
                // per call.
                counts.queued += 1;
                continue;
            }
            match self.platform.report(&call).await? {
                None => counts.unfinished += 1,
                Some(body) => match self.readable(&call.call_id, &body) {
                    Some(call_id) => {
                        if let Sink::Queue(outbox) = self.sink {
                            outbox.publish(self.source(), &call_id, &body).await?;
                        }
                        counts.queued += 1;
                    }
                    None => counts.unreadable += 1,
                },
            }
        }
        if matches!(self.sink, Sink::Queue(_)) {
            count(self.source(), &counts);
        }
        Ok((counts, page.next))
    }

    /// The call id the worker will read from `body`, if it reads it as the
    /// final report of the call listed as `listed_id`. Checked here so that
    /// a report the worker would refuse or ignore is reported now, with
    /// the call it belongs to, instead of parked or dropped later.
    fn readable(&self, listed_id: &str, body: &[u8]) -> Option<CallId> {
        match sources::inspect(self.source(), body) {
            Ok(Envelope::Final(call_id)) if call_id.as_str() == listed_id => Some(call_id),
            other => {
                tracing::error!(
                    source = %self.source(),
                    call_id = listed_id,
                    read_as = ?other,
                    "a listed call does not make a report the worker reads; not queued"
                );
                None
            }
        }
    }
}

fn count(source: Source, counts: &Counts) {
    for (outcome, n) in [
        ("known", counts.known),
        ("queued", counts.queued),
        ("unfinished", counts.unfinished),
        ("unreadable", counts.unreadable),
    ] {
        metrics::counter!(
            "callsync_reconcile_calls_total",
            "source" => source.as_str(),
            "outcome" => outcome,
        )
        .increment(n);
    }
}
