//! The sync engine: one call report in, its CRM effects applied exactly once.
//!
//! Steps run in the contract's order (contact, call record, last-call
//! fields, follow-up task, then a deal per matching `[[deal]]` rule). Each
//! step is recorded in the ledger, so a redelivered call resumes at its
//! first unfinished step. A create whose
//! outcome is unknown (timeout, reset, 5xx after sending) is left `started`;
//! the next attempt first searches the CRM for the call's marker, once the
//! CRM's search index has had time to show it, and adopts what it finds.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use callsync_shared::CallReport;
use callsync_shared::telemetry::Chain;
use time::OffsetDateTime;
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::crm::{
    Applied, ContactLookup, Crm, CrmError, CrmId, MarkedRecord, NewContact, NewDeal, SEND_DEADLINE,
};
use crate::ledger::{
    CallKey, CallLease, Claim, ContactClaim, ContactId, LatestCall, Ledger, LedgerError, LookupKey,
    Receipt, SentCreate, Step, StepState,
};
use crate::mapping::DealRule;
use crate::poll::Doubling;

/// The longest in-process wait for a rate limit; longer waits go through a
/// delay queue so that the message does not hold a consumer slot.
const MAX_IN_PROCESS_WAIT: Duration = Duration::from_secs(10);

/// How long to wait in-process for a call or phone number another worker
/// holds (the common case is a duplicate delivery finishing in milliseconds).
const BUSY_WAIT: Duration = Duration::from_secs(3);

/// The result of a successful sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The call's effects are now all in the CRM.
    Synced { contact_id: ContactId },
    /// The call had been synced before; nothing was done.
    Duplicate,
}

/// Why a sync did not complete.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{step}: {error}")]
    Crm { step: &'static str, error: CrmError },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("another worker is processing this call or its caller right now")]
    Busy,
    #[error(
        "{step}: outcome of an earlier request unknown; searching again in {wait:?}, when the CRM's index shows it"
    )]
    AwaitingIndex { step: &'static str, wait: Duration },
    #[error("the report has no phone number, e-mail or CRM id to find or create a contact with")]
    NoIdentity,
    #[error("{0}")]
    InvalidReport(String),
    #[error(
        "contact {0} no longer exists in the CRM (deleted or merged); looking the caller up again"
    )]
    StaleContact(ContactId),
}

/// What the consumer should do with a message whose sync failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Try again later through a delay queue; `counts` says whether this
    /// uses up one of the message's attempts.
    Retry { counts: bool },
    /// It will never succeed as it is: park it for an operator.
    Park,
    /// The database is unreachable: hold the message until it is back.
    WaitForDatabase,
    /// The CRM refused the credential: no call can sync until an operator
    /// fixes it. Pause the worker and put the message back unharmed.
    PauseForCredential,
    /// The CRM's set-up is incomplete (a scope the credential lacks, a
    /// custom field missing): no call can sync until an operator completes
    /// it. Pause as for the credential.
    PauseForSetup,
}

impl SyncError {
    pub fn disposition(&self) -> Disposition {
        match self {
            // Being throttled is not a failure of the call: it waits without
            // using up its attempts.
            SyncError::Crm {
                error: CrmError::RateLimited { .. },
                ..
            } => Disposition::Retry { counts: false },
            SyncError::Crm { error, .. } if error.is_transient() => {
                Disposition::Retry { counts: true }
            }
            SyncError::Crm {
                error: CrmError::Unauthorized { .. },
                ..
            } => Disposition::PauseForCredential,
            SyncError::Crm {
                error: CrmError::Setup { .. },
                ..
            } => Disposition::PauseForSetup,
            SyncError::Crm { .. } | SyncError::NoIdentity | SyncError::InvalidReport(_) => {
                Disposition::Park
            }
            SyncError::StaleContact(_) => Disposition::Retry { counts: true },
            SyncError::Busy | SyncError::AwaitingIndex { .. } => {
                Disposition::Retry { counts: false }
            }
            SyncError::Ledger(LedgerError::Database(e)) if is_unavailable(e) => {
                Disposition::WaitForDatabase
            }
            SyncError::Ledger(_) => Disposition::Retry { counts: true },
        }
    }

    /// True when the CRM did not answer (no connection, timeout, 5xx): the
    /// failures that, sustained, make an outage.
    pub fn is_crm_unavailable(&self) -> bool {
        matches!(
            self,
            SyncError::Crm {
                error: CrmError::Unavailable { .. },
                ..
            }
        )
    }

    /// A short label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            SyncError::Crm { error, .. } => error.kind(),
            SyncError::Ledger(_) => "ledger",
            SyncError::Busy => "busy",
            SyncError::AwaitingIndex { .. } => "awaiting_index",
            SyncError::NoIdentity => "no_identity",
            SyncError::InvalidReport(_) => "invalid_report",
            SyncError::StaleContact(_) => "stale_contact",
        }
    }
}

/// True for errors that mean "the database is not reachable right now",
/// as opposed to a statement the database refused.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(e) => e.code().is_some_and(|code| {
            // 08: connection exception; 57P0x: admin shutdown, crash shutdown,
            // cannot connect now; 53: insufficient resources.
            code.starts_with("08") || code.starts_with("57P0") || code.starts_with("53")
        }),
        _ => false,
    }
}

/// Applies call reports to one CRM, recording progress in the ledger.
#[derive(Debug)]
pub struct Syncer {
    ledger: Ledger,
    crm: Arc<dyn Crm>,
    prepared: OnceCell<()>,
    follow_up_due: Duration,
    index_lag: Duration,
    /// How long after extending a lease a create may still be sent.
    send_window: Duration,
    /// `CALLSYNC_MAPPING`'s `[[deal]]` rules.
    deals: Vec<DealRule>,
}

impl Syncer {
    /// `send_window` bounds the time between extending a lease and sending a
    /// create; with `CALLSYNC_CRM_TIMEOUT` added it must stay inside the lease.
    pub fn new(
        ledger: Ledger,
        crm: Arc<dyn Crm>,
        follow_up_due: Duration,
        index_lag: Duration,
        send_window: Duration,
        deals: Vec<DealRule>,
    ) -> Self {
        Self {
            ledger,
            crm,
            prepared: OnceCell::new(),
            follow_up_due,
            index_lag,
            send_window,
            deals,
        }
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Whether the CRM would accept calls now: one cheap authenticated
    /// request (see [`Crm::probe`]), then the set-up a paused worker may be
    /// waiting for: every permission the CRM can prove, and its one-time
    /// preparation (the custom fields), so that a worker paused for an
    /// incomplete set-up resumes once it is complete, not before.
    pub async fn probe(&self) -> Result<(), CrmError> {
        self.crm.probe().await?;
        if let Some(missing) = self
            .crm
            .permissions()
            .await?
            .into_iter()
            .find(|p| !p.granted)
        {
            return Err(CrmError::Setup {
                detail: format!(
                    "the credential lacks {}, needed for {}",
                    missing.name, missing.needed_for
                ),
            });
        }
        self.crm.prepare().await
    }

    /// Syncs one report, which reached callsync as `receipt` says. Safe to
    /// call any number of times, concurrently, from any number of
    /// processes, for the same report.
    pub async fn sync(&self, report: &CallReport, receipt: &Receipt) -> Result<Outcome, SyncError> {
        self.prepare().await?;
        let key = CallKey::of(report);
        let owner = Uuid::now_v7();
        let claim = || self.ledger.claim(key, owner, receipt);
        let lease = match wait_while_busy(claim, Claim::is_busy).await? {
            Claim::AlreadySynced => return Ok(Outcome::Duplicate),
            Claim::Busy => return Err(SyncError::Busy),
            Claim::Acquired { lease, attempt } => {
                tracing::debug!(attempt, "claimed call");
                lease
            }
        };
        match self.run_steps(lease, report).await {
            Ok(contact_id) => {
                lease.complete(&contact_id).await?;
                Ok(Outcome::Synced { contact_id })
            }
            Err(error) => {
                // Best effort: if the database is gone the lease simply expires.
                if let Err(e) = lease.release(&Chain(&error).to_string()).await {
                    tracing::debug!(error = %Chain(&e), "could not release the call's lease");
                }
                Err(error)
            }
        }
    }

    /// The CRM's one-time preparation, before the first sync.
    async fn prepare(&self) -> Result<(), SyncError> {
        self.prepared
            .get_or_try_init(|| async {
                idempotent(|| self.crm.prepare())
                    .await
                    .map_err(|error| SyncError::Crm {
                        step: "prepare",
                        error,
                    })
            })
            .await?;
        Ok(())
    }

    /// The call's steps, in the contract's order; each one skips itself
    /// when an earlier attempt finished it.
    async fn run_steps(
        &self,
        lease: CallLease<'_>,
        report: &CallReport,
    ) -> Result<ContactId, SyncError> {
        let recorded = self.ledger.steps(lease.key()).await?.into_iter().collect();
        let call = Call {
            report,
            lease,
            recorded,
        };
        let contact = self.contact_step(&call).await?;
        self.call_log_step(&call, &contact.id).await?;
        self.last_call_step(&call, &contact).await?;
        self.follow_up_step(&call, &contact.id).await?;
        self.deal_steps(&call, &contact.id).await?;
        Ok(contact.id)
    }

    /// The caller's contact, found or created. A target without contacts
    /// gets the whole report in one request, and has none.
    async fn contact_step(&self, call: &Call<'_>) -> Result<Filed, SyncError> {
        if !self.crm.manages_contacts() {
            return Ok(Filed {
                id: ContactId::default(),
                fields_set: true,
            });
        }
        if let Some(StepState::Done { crm_id: Some(id) }) = call.recorded.get(&Step::Contact) {
            return Ok(Filed {
                id: ContactId::from(id.as_str()),
                fields_set: false,
            });
        }
        let (id, created) = self.resolve_contact(call).await?;
        call.lease
            .finish_step(Step::Contact, Some(id.as_str()))
            .await?;
        if created {
            // A new contact was created with this call's last-call fields
            // already set: the update step is done too, once the call is
            // recorded as the contact's newest.
            wait_while_busy(
                || call.lease.record_latest_call(&id, call.report.ended_at),
                |c| *c == LatestCall::Busy,
            )
            .await?;
            call.lease
                .finish_step(Step::ContactUpdate, Some(id.as_str()))
                .await?;
        }
        Ok(Filed {
            id,
            fields_set: created,
        })
    }

    /// The call's record on the contact.
    async fn call_log_step(&self, call: &Call<'_>, contact: &ContactId) -> Result<(), SyncError> {
        if call.done(Step::CallLog) {
            return Ok(());
        }
        let marked = Marked {
            step: Step::CallLog,
            kind: MarkedRecord::CallLog,
            contact,
        };
        let recorded = self
            .create_marked(call, marked, || {
                self.crm.record_call(contact.as_str(), call.report)
            })
            .await;
        if let Err(SyncError::Crm {
            error: CrmError::Rejected { .. },
            ..
        }) = &recorded
            && self.crm.manages_contacts()
            && !idempotent(|| self.crm.contact_exists(contact.as_str()))
                .await
                .unwrap_or(true)
        {
            // A contact remembered in the ledger (or named by the
            // provider) was deleted or merged by a human: forget it and
            // resolve the caller again on the next attempt.
            self.ledger.forget_contact(contact).await?;
            call.lease.reset_contact_steps().await?;
            return Err(SyncError::StaleContact(contact.clone()));
        }
        recorded.map(drop)
    }

    /// The contact's last-call fields, unless it was just created with them.
    async fn last_call_step(&self, call: &Call<'_>, contact: &Filed) -> Result<(), SyncError> {
        if contact.fields_set || call.done(Step::ContactUpdate) {
            return Ok(());
        }
        call.lease.renew().await?;
        self.update_last_call(call, &contact.id).await
    }

    /// The follow-up task, when the report asks for one.
    async fn follow_up_step(&self, call: &Call<'_>, contact: &ContactId) -> Result<(), SyncError> {
        if !call.report.follow_up_needed || call.done(Step::FollowUpTask) {
            return Ok(());
        }
        let due = self.follow_up_due(call.report)?;
        let marked = Marked {
            step: Step::FollowUpTask,
            kind: MarkedRecord::FollowUp,
            contact,
        };
        self.create_marked(call, marked, || {
            self.crm
                .create_follow_up(contact.as_str(), call.report, due)
        })
        .await
        .map(drop)
    }

    /// One deal per `[[deal]]` rule the call matches, each its own step
    /// carrying its own marker, so created exactly once like the task.
    async fn deal_steps(&self, call: &Call<'_>, contact: &ContactId) -> Result<(), SyncError> {
        for rule in &self.deals {
            let step = Step::Deal(rule.index);
            if call.done(step) || !rule.matches(call.report) {
                continue;
            }
            let marked = Marked {
                step,
                kind: MarkedRecord::Deal(rule.index),
                contact,
            };
            let deal = NewDeal {
                contact: contact.as_str(),
                report: call.report,
                rule,
            };
            self.create_marked(call, marked, || self.crm.create_deal(&deal))
                .await?;
        }
        Ok(())
    }

    fn follow_up_due(&self, report: &CallReport) -> Result<OffsetDateTime, SyncError> {
        time::Duration::try_from(self.follow_up_due)
            .ok()
            .and_then(|after| report.ended_at.checked_add(after))
            .ok_or_else(|| {
                SyncError::InvalidReport(format!(
                    "the follow-up due date is out of range (call ended at {})",
                    report.ended_at
                ))
            })
    }

    /// Finds or creates the caller's contact; true when it was created now.
    async fn resolve_contact(&self, call: &Call<'_>) -> Result<(ContactId, bool), SyncError> {
        let report = call.report;
        if let Some(id) = self.provided_contact(report).await? {
            return Ok((id, false));
        }
        let lookup =
            ContactLookup::new(report.caller.phone.as_ref(), report.caller.email.as_deref());
        let key = LookupKey::for_caller(lookup.phone.as_deref(), lookup.email.as_deref())
            .ok_or(SyncError::NoIdentity)?;
        let owner = call.lease.owner();
        let claim = wait_while_busy(
            || self.ledger.claim_contact(&key, owner),
            |c| *c == ContactClaim::Busy,
        )
        .await?;
        let pending_since = match claim {
            ContactClaim::Known(id) => return Ok((id, false)),
            ContactClaim::Busy => return Err(SyncError::Busy),
            ContactClaim::Acquired { pending_since } => pending_since,
        };
        match self
            .find_or_create_contact(call, &lookup, &key, pending_since)
            .await
        {
            Ok(resolved) => Ok(resolved),
            Err(Unresolved { error, sent }) => {
                if let Err(e) = self.ledger.release_contact(&key, owner, sent).await {
                    tracing::debug!(error = %Chain(&e), "could not release the contact key");
                }
                Err(error)
            }
        }
    }

    /// The contact the provider named by its CRM id, if the CRM has it.
    async fn provided_contact(&self, report: &CallReport) -> Result<Option<ContactId>, SyncError> {
        let Some(hint) = &report.crm_id else {
            return Ok(None);
        };
        if idempotent(|| self.crm.contact_exists(hint))
            .await
            .map_err(contact_error)?
        {
            return Ok(Some(ContactId::from(hint.as_str())));
        }
        tracing::warn!(crm_id = %hint, "the provider's CRM id does not exist; looking the caller up instead");
        Ok(None)
    }

    /// Holding the lookup key: waits for the CRM's index to show a create
    /// of unknown outcome, then searches, and creates the contact if the
    /// search finds none.
    async fn find_or_create_contact(
        &self,
        call: &Call<'_>,
        lookup: &ContactLookup,
        key: &LookupKey,
        pending_since: Option<OffsetDateTime>,
    ) -> Result<(ContactId, bool), Unresolved> {
        if let Some(since) = pending_since {
            let waited = elapsed_since(since);
            if waited < self.index_lag {
                return Err(SyncError::AwaitingIndex {
                    step: Step::Contact.as_str(),
                    wait: self.index_lag - waited,
                }
                .into());
            }
        }
        call.lease.renew().await?;
        let search = idempotent(|| self.crm.find_contact(lookup));
        if let Some(id) = self
            .renewing(call, key, search)
            .await?
            .map_err(contact_error)?
        {
            let id = ContactId::from(id);
            self.ledger.contact_resolved(key, &id).await?;
            return Ok((id, false));
        }
        self.create_contact(call, key).await
    }

    /// Runs `search` while extending the call's lease and the lookup key's
    /// every third of a lease. A search may wait long for the CRM's search
    /// budget (it has no deadline: it creates nothing); if the caller's
    /// number lapsed meanwhile, another replica with a call from the same
    /// caller would take it over and search again, and this call would lose
    /// the key before its create. A lease that cannot be extended (lost, or
    /// the database away) abandons the search.
    async fn renewing<T>(
        &self,
        call: &Call<'_>,
        key: &LookupKey,
        search: impl Future<Output = T>,
    ) -> Result<T, LedgerError> {
        let every = (self.ledger.lease_length() / 3).max(Duration::from_millis(100));
        let owner = call.lease.owner();
        let renew = async {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = self.ledger.renew_contact(key, owner).await {
                    return e;
                }
                if let Err(e) = call.lease.renew().await {
                    return e;
                }
            }
        };
        tokio::select! {
            found = search => Ok(found),
            lost = renew => Err(lost),
        }
    }

    /// Creates the contact, fenced by the lookup key's lease; true when it
    /// got this call's last-call fields.
    async fn create_contact(
        &self,
        call: &Call<'_>,
        key: &LookupKey,
    ) -> Result<(ContactId, bool), Unresolved> {
        let new_contact = NewContact {
            report: call.report,
        };
        let created = self
            .fenced(
                || self.ledger.contact_pending(key, call.lease.owner()),
                || self.crm.create_contact(&new_contact),
                false,
            )
            .await;
        match created {
            Ok(created) => {
                let id = ContactId::from(created.id);
                self.ledger.contact_resolved(key, &id).await?;
                Ok((id, created.has_last_call))
            }
            Err(Attempt::Fence(e)) => Err(e.into()),
            Err(Attempt::Crm(error)) => Err(Unresolved {
                sent: match error.applied() {
                    Applied::No => SentCreate::NotApplied,
                    Applied::Unknown => SentCreate::Unknown,
                },
                error: contact_error(error),
            }),
        }
    }

    /// Writes the call into the contact's last-call fields unless a newer
    /// call has claimed them, and records the step. Writes to one contact
    /// are serialised through a lease in the ledger and each is sent within
    /// it (fenced like a create), so an older call's update can never land
    /// after a newer one.
    async fn update_last_call(
        &self,
        call: &Call<'_>,
        contact: &ContactId,
    ) -> Result<(), SyncError> {
        let claim = || call.lease.claim_latest_call(contact, call.report.ended_at);
        match wait_while_busy(claim, |c| *c == LatestCall::Busy).await? {
            LatestCall::Busy => Err(SyncError::Busy),
            LatestCall::Older if self.crm.writes_every_call() => {
                tracing::debug!(
                    "a newer call already set the contact's last-call fields; writing the fields every call writes"
                );
                self.write_older(call, contact).await
            }
            LatestCall::Older => {
                tracing::debug!("a newer call already set the contact's last-call fields");
                call.lease
                    .finish_step(Step::ContactUpdate, Some(contact.as_str()))
                    .await?;
                Ok(())
            }
            LatestCall::Write => self.write_last_call(call, contact).await,
        }
    }

    /// For a call older than the contact's newest: the fields every call
    /// writes (a mapping's `if_empty` and `append`), under the contact's
    /// write lease, which makes this read-modify-write one at a time with
    /// every other call's.
    async fn write_older(&self, call: &Call<'_>, contact: &ContactId) -> Result<(), SyncError> {
        let busy = |granted: &bool| !*granted;
        if !wait_while_busy(|| call.lease.claim_contact_write(contact), busy).await? {
            return Err(SyncError::Busy);
        }
        let reclaim = || call.lease.claim_contact_write(contact);
        let send = || self.crm.update_older(contact.as_str(), call.report);
        self.leased_write(call, contact, "write lease", reclaim, send)
            .await
    }

    /// Sends the update of the last-call fields [`Syncer::update_last_call`]
    /// was granted, and records it.
    async fn write_last_call(&self, call: &Call<'_>, contact: &ContactId) -> Result<(), SyncError> {
        let reclaim = || async {
            let granted = call
                .lease
                .claim_latest_call(contact, call.report.ended_at)
                .await?;
            Ok(granted == LatestCall::Write)
        };
        let send = || self.crm.update_contact(contact.as_str(), call.report);
        self.leased_write(call, contact, "last-call fields", reclaim, send)
            .await
    }

    /// Sends a contact write under the lease its caller was just granted:
    /// the first attempt at once, every later one after `reclaim` (claiming
    /// again extends the lease) says the lease is still ours; then settles
    /// it.
    async fn leased_write<R, RFut, S, SFut>(
        &self,
        call: &Call<'_>,
        contact: &ContactId,
        lease: &str,
        reclaim: R,
        send: S,
    ) -> Result<(), SyncError>
    where
        R: Fn() -> RFut,
        RFut: Future<Output = Result<bool, LedgerError>>,
        S: Fn() -> SFut,
        SFut: Future<Output = Result<(), CrmError>>,
    {
        let fresh = AtomicBool::new(true);
        let fence = || async {
            if fresh.swap(false, Ordering::Relaxed) || reclaim().await? {
                return Ok(());
            }
            Err(LedgerError::LeaseLost(format!(
                "{lease} of contact {contact}"
            )))
        };
        // An update whose outcome is unknown may still be applied later,
        // even after a retry of it succeeded: then the lease is left to
        // expire, so that no newer call's update is sent before that.
        let unknown = AtomicBool::new(false);
        let update = || async {
            let result = send().await;
            if matches!(&result, Err(e) if e.applied() == Applied::Unknown) {
                unknown.store(true, Ordering::Relaxed);
            }
            result
        };
        self.settle_write(
            call,
            contact,
            self.fenced(fence, update, true).await,
            &unknown,
        )
        .await
    }

    /// Records a contact write [`Syncer::fenced`] ended with: done, or
    /// failed. The lease is released unless a request of unknown outcome
    /// may still land (then it expires, so no other call's write is sent
    /// before it could).
    async fn settle_write(
        &self,
        call: &Call<'_>,
        contact: &ContactId,
        result: Result<(), Attempt>,
        unknown: &AtomicBool,
    ) -> Result<(), SyncError> {
        let settled = !unknown.load(Ordering::Relaxed);
        if result.is_err()
            && settled
            && let Err(e) = call.lease.release_latest_call(contact).await
        {
            tracing::debug!(error = %Chain(&e), "could not release the last-call lease; it will expire");
        }
        match result {
            Ok(()) => Ok(call.lease.finish_update(contact, settled).await?),
            Err(Attempt::Fence(e)) => Err(e.into()),
            Err(Attempt::Crm(error)) => Err(SyncError::Crm {
                step: Step::ContactUpdate.as_str(),
                error,
            }),
        }
    }

    /// Creates a record carrying the call's marker exactly once.
    async fn create_marked<F, Fut>(
        &self,
        call: &Call<'_>,
        marked: Marked<'_>,
        create: F,
    ) -> Result<CrmId, SyncError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<CrmId, CrmError>>,
    {
        let mut unknown_since = call.unknown_since(marked.step);
        // Bounded: with no index lag an unknown outcome is searched for at
        // once; after three rounds of "unknown" in a row the last error goes
        // back to the consumer as a (counted) transient failure.
        let mut last_error = None;
        for _ in 0..3 {
            if let Some(since) = unknown_since
                && let Some(id) = self.adopt_marked(call, &marked, since).await?
            {
                return Ok(id);
            }
            match self.send_marked(call, marked.step, &create).await? {
                Sent::Created(id) => return Ok(id),
                Sent::Unknown(error) => {
                    unknown_since = Some(OffsetDateTime::now_utc());
                    last_error = Some(error);
                }
            }
        }
        let step = marked.step.as_str();
        Err(match last_error {
            Some(error) => SyncError::Crm { step, error },
            None => SyncError::AwaitingIndex {
                step,
                wait: Duration::ZERO,
            },
        })
    }

    /// Searches for the record of an earlier request whose outcome was
    /// unknown `since` then, once the CRM's index can show it, and adopts
    /// the record found.
    async fn adopt_marked(
        &self,
        call: &Call<'_>,
        marked: &Marked<'_>,
        since: OffsetDateTime,
    ) -> Result<Option<CrmId>, SyncError> {
        let step = marked.step.as_str();
        let waited = elapsed_since(since);
        if waited < self.index_lag {
            return Err(SyncError::AwaitingIndex {
                step,
                wait: self.index_lag - waited,
            });
        }
        call.lease.renew().await?;
        let marker = marked.kind.marker(call.report);
        let found = idempotent(|| {
            self.crm
                .find_marked(marked.kind, marked.contact.as_str(), &marker)
        })
        .await
        .map_err(|error| SyncError::Crm { step, error })?;
        if let Some(id) = &found {
            tracing::info!(step, crm_id = %id, "adopted the record of an earlier attempt whose outcome was unknown");
            call.lease.finish_step(marked.step, Some(id)).await?;
        }
        Ok(found)
    }

    /// Sends one create for `step`, fenced by the call's lease, and records
    /// what became of it.
    async fn send_marked<F, Fut>(
        &self,
        call: &Call<'_>,
        step: Step,
        create: &F,
    ) -> Result<Sent, SyncError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<CrmId, CrmError>>,
    {
        let name = step.as_str();
        match self
            .fenced(|| call.lease.start_step(step), create, false)
            .await
        {
            Ok(id) => {
                call.lease.finish_step(step, Some(&id)).await?;
                Ok(Sent::Created(id))
            }
            Err(Attempt::Fence(e)) => Err(e.into()),
            Err(Attempt::Crm(error)) if error.applied() == Applied::No => {
                call.lease.abandon_step(step).await?;
                Err(SyncError::Crm { step: name, error })
            }
            Err(Attempt::Crm(error)) => {
                // The clock for "when will the CRM show it" starts now:
                // the request may be applied until its connection ended.
                call.lease.step_outcome_unknown(step).await?;
                if !self.index_lag.is_zero() {
                    return Err(SyncError::Crm { step: name, error });
                }
                tracing::warn!(step = name, error = %Chain(&error), "outcome unknown; searching for the marker");
                Ok(Sent::Unknown(error))
            }
        }
    }

    /// Sends a create only right after the lease was extended: `fence` runs
    /// before every attempt (and restarts the "unknown since" clock), and
    /// the request must start within `send_window` of it, or it gives up
    /// unsent. So a create never leaves outside its lease, however long a
    /// rate limit makes it wait. Only attempts that certainly did not reach
    /// the CRM are retried here, unless the request is `repeatable` (an
    /// update, which may be applied twice).
    async fn fenced<T, Fe, FeFut, C, CFut>(
        &self,
        fence: Fe,
        create: C,
        repeatable: bool,
    ) -> Result<T, Attempt>
    where
        Fe: Fn() -> FeFut,
        FeFut: Future<Output = Result<(), LedgerError>>,
        C: Fn() -> CFut,
        CFut: Future<Output = Result<T, CrmError>>,
    {
        let attempt = || async {
            fence().await.map_err(Attempt::Fence)?;
            let deadline = tokio::time::Instant::now() + self.send_window;
            SEND_DEADLINE
                .scope(deadline, create())
                .await
                .map_err(Attempt::Crm)
        };
        attempt
            .retry(in_process_policy())
            .when(
                |e| matches!(e, Attempt::Crm(c) if c.is_transient() && (repeatable || c.applied() == Applied::No)),
            )
            .adjust(|e: &Attempt, planned| match e {
                Attempt::Crm(c) => rate_limit_delay(c, planned),
                Attempt::Fence(_) => None,
            })
            .await
    }
}

/// Why one fenced create attempt failed.
enum Attempt {
    /// The lease could not be extended: the request was not sent.
    Fence(LedgerError),
    Crm(CrmError),
}

/// The call being synced: its report, this attempt's lease on it, and the
/// steps earlier attempts recorded.
struct Call<'a> {
    report: &'a CallReport,
    lease: CallLease<'a>,
    recorded: HashMap<Step, StepState>,
}

impl Call<'_> {
    fn done(&self, step: Step) -> bool {
        matches!(self.recorded.get(&step), Some(StepState::Done { .. }))
    }

    /// When an earlier attempt's request for `step` ended without a known
    /// outcome, if one did.
    fn unknown_since(&self, step: Step) -> Option<OffsetDateTime> {
        match self.recorded.get(&step) {
            Some(StepState::Started { since }) => Some(*since),
            _ => None,
        }
    }
}

/// The contact a call is filed under.
struct Filed {
    id: ContactId,
    /// Its last-call fields need no update: it was created with them just
    /// now, or the target keeps no contacts.
    fields_set: bool,
}

/// A record that carries the call's marker, so that an attempt can find
/// what an earlier one created.
struct Marked<'a> {
    step: Step,
    kind: MarkedRecord,
    contact: &'a ContactId,
}

/// What became of one create of a marked record that did not fail.
enum Sent {
    Created(CrmId),
    /// It may have been applied, and the CRM's index shows records at
    /// once: search for its marker before sending it again.
    Unknown(CrmError),
}

/// A contact resolution that failed, and what became of the create it
/// sent, if any: the lookup key is released saying so.
struct Unresolved {
    error: SyncError,
    sent: SentCreate,
}

impl From<SyncError> for Unresolved {
    fn from(error: SyncError) -> Self {
        Self {
            error,
            sent: SentCreate::None,
        }
    }
}

impl From<LedgerError> for Unresolved {
    fn from(error: LedgerError) -> Self {
        SyncError::from(error).into()
    }
}

fn contact_error(error: CrmError) -> SyncError {
    SyncError::Crm {
        step: Step::Contact.as_str(),
        error,
    }
}

fn elapsed_since(since: OffsetDateTime) -> Duration {
    Duration::try_from(OffsetDateTime::now_utc() - since).unwrap_or(Duration::ZERO)
}

/// Polls `claim` while `busy` says another worker holds the resource.
async fn wait_while_busy<T, F, Fut>(claim: F, busy: impl Fn(&T) -> bool) -> Result<T, LedgerError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, LedgerError>>,
{
    let mut pauses =
        Doubling::new(Duration::from_millis(25), Duration::from_millis(400)).within(BUSY_WAIT);
    loop {
        let result = claim().await?;
        if !busy(&result) {
            return Ok(result);
        }
        let Some(pause) = pauses.pause() else {
            return Ok(result);
        };
        tokio::time::sleep(pause).await;
    }
}

fn in_process_policy() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(2))
        .with_max_times(3)
        .with_jitter()
}

/// Honours a 429's `Retry-After` when it is short; a long one ends the
/// in-process retries so that the message waits in a delay queue instead.
fn rate_limit_delay(error: &CrmError, planned: Option<Duration>) -> Option<Duration> {
    match (error, planned) {
        (_, None) => None,
        (
            CrmError::RateLimited {
                retry_after: Some(wait),
            },
            Some(_),
        ) => (*wait <= MAX_IN_PROCESS_WAIT).then_some(*wait),
        (_, planned) => planned,
    }
}

/// Retries a request that may be repeated freely (search, read, PATCH).
async fn idempotent<T, F, Fut>(request: F) -> Result<T, CrmError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, CrmError>>,
{
    request
        .retry(in_process_policy())
        .when(CrmError::is_transient)
        .adjust(rate_limit_delay)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_lost_connection_counts_as_the_database_being_unavailable() {
        let io = || std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(is_unavailable(&sqlx::Error::Io(io())));
        assert!(is_unavailable(&sqlx::Error::PoolTimedOut));
        assert!(is_unavailable(&sqlx::Error::PoolClosed));
        // A statement the database answered is not an outage: holding the
        // message until "the database is back" would hold it for ever.
        assert!(!is_unavailable(&sqlx::Error::RowNotFound));
        assert!(!is_unavailable(&sqlx::Error::ColumnNotFound("x".into())));
    }

    #[test]
    fn a_refused_credential_or_set_up_pauses_an_unexpected_shape_retries_and_a_refused_record_parks()
     {
        let crm = |error| SyncError::Crm {
            step: "call_log",
            error,
        };
        let credential = crm(CrmError::Unauthorized {
            status: 401,
            detail: "revoked".into(),
        });
        assert_eq!(credential.disposition(), Disposition::PauseForCredential);
        let setup = crm(CrmError::Setup {
            detail: "No such column 'Callsync_Marker__c'".into(),
        });
        assert_eq!(setup.disposition(), Disposition::PauseForSetup);
        let shape = crm(CrmError::InvalidResponse(
            "a string where an object was".into(),
        ));
        assert_eq!(shape.disposition(), Disposition::Retry { counts: true });
        let record = crm(CrmError::Forbidden {
            detail: "not your record".into(),
        });
        assert_eq!(record.disposition(), Disposition::Park);
        let down = crm(CrmError::Unavailable {
            detail: "refused".into(),
            applied: crate::crm::Applied::No,
        });
        assert!(down.is_crm_unavailable());
        assert_eq!(down.disposition(), Disposition::Retry { counts: true });
        assert!(!credential.is_crm_unavailable());
    }

    #[test]
    fn each_kind_of_failure_has_its_own_label() {
        let errors = [
            SyncError::Busy,
            SyncError::NoIdentity,
            SyncError::InvalidReport("bad".into()),
            SyncError::StaleContact("1".into()),
            SyncError::AwaitingIndex {
                step: "call_log",
                wait: Duration::ZERO,
            },
            SyncError::Ledger(LedgerError::LeaseLost("call".into())),
        ];
        let labels: std::collections::BTreeSet<&str> = errors.iter().map(SyncError::kind).collect();
        assert_eq!(labels.len(), errors.len(), "{labels:?}");
        assert!(
            labels
                .iter()
                .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        );
        assert!(labels.contains("busy") && labels.contains("no_identity"));
    }

    fn rate_limited(after: u64) -> CrmError {
        CrmError::RateLimited {
            retry_after: Some(Duration::from_secs(after)),
        }
    }

    #[test]
    fn a_short_retry_after_is_waited_out_in_process_and_a_long_one_is_not() {
        let planned = Some(Duration::from_millis(200));
        assert_eq!(
            rate_limit_delay(&rate_limited(1), planned),
            Some(Duration::from_secs(1))
        );
        let longest = MAX_IN_PROCESS_WAIT.as_secs();
        assert_eq!(
            rate_limit_delay(&rate_limited(longest), planned),
            Some(MAX_IN_PROCESS_WAIT)
        );
        assert_eq!(rate_limit_delay(&rate_limited(longest + 1), planned), None);
        // Out of retries: nothing more is planned, whatever the CRM asks.
        assert_eq!(rate_limit_delay(&rate_limited(1), None), None);
        let down = CrmError::Unavailable {
            detail: "reset".into(),
            applied: Applied::Unknown,
        };
        assert_eq!(rate_limit_delay(&down, planned), planned);
    }

    #[test]
    fn the_time_since_a_moment_is_never_negative() {
        let waited = elapsed_since(OffsetDateTime::now_utc() - time::Duration::seconds(3));
        assert!(
            waited >= Duration::from_secs(3) && waited < Duration::from_secs(4),
            "{waited:?}"
        );
        let ahead = OffsetDateTime::now_utc() + time::Duration::seconds(3);
        assert_eq!(elapsed_since(ahead), Duration::ZERO);
    }

    /// Runs `wait_while_busy` on a claim that is busy `busy_for` times,
    /// then free: how many claims were made and how long it waited.
    async fn claims_while_busy(busy_for: u32) -> (u32, Duration) {
        let claims = std::sync::atomic::AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let last = wait_while_busy(
            || async {
                Ok::<_, LedgerError>(claims.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1)
            },
            |n| *n <= busy_for,
        )
        .await
        .unwrap();
        assert_eq!(last, claims.load(std::sync::atomic::Ordering::SeqCst));
        (last, started.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn a_free_resource_is_taken_at_once_and_a_busy_one_polled_with_doubling_pauses() {
        assert_eq!(claims_while_busy(0).await, (1, Duration::ZERO));
        // Busy twice: pauses of 25 ms and 50 ms, then the third claim.
        let (claims, waited) = claims_while_busy(2).await;
        assert_eq!(claims, 3);
        assert!(
            waited >= Duration::from_millis(75) && waited < Duration::from_millis(80),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_resource_busy_for_longer_than_the_busy_wait_is_given_up_on_at_its_end() {
        let (claims, waited) = claims_while_busy(u32::MAX).await;
        // 25 + 50 + 100 + 200 ms, then 400 ms pauses: the twelfth claim, at
        // 3.175 s, is the first past the three seconds.
        assert!(
            waited >= BUSY_WAIT && waited < BUSY_WAIT + Duration::from_millis(400),
            "{waited:?}"
        );
        assert_eq!(claims, 12);
    }

    #[tokio::test(start_paused = true)]
    async fn a_transient_failure_is_retried_three_times_within_seconds() {
        let tries = std::sync::atomic::AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let result: Result<(), CrmError> = idempotent(|| async {
            tries.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Err(CrmError::Unavailable {
                detail: "reset".into(),
                applied: Applied::Unknown,
            })
        })
        .await;
        assert!(matches!(result, Err(CrmError::Unavailable { .. })));
        assert_eq!(tries.load(std::sync::atomic::Ordering::SeqCst), 4);
        // 200 ms, 400 ms and 800 ms, each with up to as much again of jitter.
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(1400) && waited <= Duration::from_millis(2800),
            "{waited:?}"
        );
    }
}
