//! Calls and their steps: who holds a call, and what its attempts sent to
//! the CRM.

use std::str::FromStr;

use callsync_shared::{CallId, CallReport, Source};
use sqlx::Row;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{ContactId, Ledger, LedgerError, Timed, on_call};
use crate::mapping::deal;

/// One CRM effect of a call, in the order they are performed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    Contact,
    CallLog,
    ContactUpdate,
    FollowUpTask,
    /// The deal of `CALLSYNC_MAPPING`'s `[[deal]]` rule of this index.
    Deal(usize),
}

impl Step {
    /// The steps every call may have; a mapping adds one [`Step::Deal`]
    /// per `[[deal]]` rule.
    pub const ALL: [Step; 4] = [
        Step::Contact,
        Step::CallLog,
        Step::ContactUpdate,
        Step::FollowUpTask,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Contact => "contact",
            Step::CallLog => "call_log",
            Step::ContactUpdate => "contact_update",
            Step::FollowUpTask => "follow_up_task",
            // A mapping holds at most `MAX_RULES` deal rules.
            Step::Deal(index) => deal::STEP_NAMES
                .get(index)
                .copied()
                .unwrap_or("deal:out_of_range"),
        }
    }
}

impl FromStr for Step {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Step::ALL
            .into_iter()
            .find(|step| step.as_str() == s)
            .or_else(|| {
                deal::STEP_NAMES
                    .iter()
                    .position(|n| *n == s)
                    .map(Step::Deal)
            })
            .ok_or_else(|| format!("unknown step {s:?}"))
    }
}

/// What the ledger knows of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepState {
    /// The CRM request was sent (or about to be) without a known outcome.
    Started { since: OffsetDateTime },
    /// Done; the CRM object it produced, if any.
    Done { crm_id: Option<String> },
}

/// The (source, call id) key of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallKey<'a> {
    pub source: Source,
    pub call_id: &'a CallId,
}

impl<'a> CallKey<'a> {
    pub fn of(report: &'a CallReport) -> Self {
        Self {
            source: report.source,
            call_id: &report.call_id,
        }
    }
}

impl std::fmt::Display for CallKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.source, self.call_id)
    }
}

/// The outcome of trying to take a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim<'a> {
    /// This worker holds the call; `attempt` counts claims including this one.
    Acquired { lease: CallLease<'a>, attempt: i32 },
    /// The call was synced before: a duplicate delivery.
    AlreadySynced,
    /// Another worker holds the call right now.
    Busy,
}

impl Claim<'_> {
    pub fn is_busy(&self) -> bool {
        matches!(self, Claim::Busy)
    }
}

/// One attempt's lease on a call: the call's key and the attempt's owner
/// id, which every fenced write checks against the `calls` row in the same
/// statement. The handle itself proves nothing: once the lease lapsed or
/// was taken over, every fenced write through it fails with
/// [`LedgerError::LeaseLost`] and the request it guards is not sent.
#[derive(Clone, Copy)]
pub struct CallLease<'a> {
    pub(super) ledger: &'a Ledger,
    pub(super) key: CallKey<'a>,
    pub(super) owner: Uuid,
}

impl<'a> CallLease<'a> {
    pub fn key(&self) -> CallKey<'a> {
        self.key
    }

    pub fn owner(&self) -> Uuid {
        self.owner
    }
}

/// Two handles are the same lease when they name the same call and owner.
impl PartialEq for CallLease<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key && self.owner == other.owner
    }
}

impl Eq for CallLease<'_> {}

impl std::fmt::Debug for CallLease<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallLease")
            .field("call", &format_args!("{}", self.key))
            .field("owner", &self.owner)
            .finish()
    }
}

/// How a call's report reached callsync, as its message says: when ingest
/// received it, who published it (`callsync-ingest` for a webhook,
/// `callsync-reconcile` for a report found in a platform's call list) and
/// what ingest checked before taking it. For operators (the console's
/// story of a call); nothing decides on it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Receipt {
    pub received_at: Option<OffsetDateTime>,
    pub published_by: Option<String>,
    pub verified_by: Option<String>,
}

impl Ledger {
    /// The handle of `owner`'s lease on the call, whether or not it holds
    /// it (see [`CallLease`]); [`Ledger::claim`] is how an attempt takes one.
    pub fn lease<'a>(&'a self, key: CallKey<'a>, owner: Uuid) -> CallLease<'a> {
        CallLease {
            ledger: self,
            key,
            owner,
        }
    }

    /// Tries to take the call for `owner`. The first claim of a call also
    /// records how its report reached callsync (`receipt`); later ones keep
    /// that.
    pub async fn claim<'a>(
        &'a self,
        key: CallKey<'a>,
        owner: Uuid,
        receipt: &Receipt,
    ) -> Result<Claim<'a>, LedgerError> {
        let acquired = on_call(
            "INSERT INTO calls (source, call_id, lease_owner, lease_until, attempts,
                                received_at, published_by, verified_by)
             VALUES ($1, $2, $3, now() + make_interval(secs => $4), 1, $5, $6, $7)
             ON CONFLICT (source, call_id) DO UPDATE
                SET lease_owner = EXCLUDED.lease_owner,
                    lease_until = EXCLUDED.lease_until,
                    attempts = calls.attempts + 1,
                    status = 'pending'
              WHERE calls.status <> 'synced'
                AND (calls.lease_until IS NULL OR calls.lease_until < now())
             RETURNING attempts",
            key,
        )
        .bind(owner)
        .bind(self.lease_secs)
        .bind(receipt.received_at)
        .bind(receipt.published_by.as_deref())
        .bind(receipt.verified_by.as_deref())
        .fetch_optional(&self.pool)
        .timed("claim")
        .await?;
        if let Some(row) = acquired {
            return Ok(Claim::Acquired {
                lease: self.lease(key, owner),
                attempt: row.try_get("attempts")?,
            });
        }
        let status = on_call(
            "SELECT status FROM calls WHERE source = $1 AND call_id = $2",
            key,
        )
        .fetch_optional(&self.pool)
        .timed("claim")
        .await?;
        let status: Option<String> = status.map(|row| row.try_get("status")).transpose()?;
        Ok(match status.as_deref() {
            Some("synced") => Claim::AlreadySynced,
            _ => Claim::Busy,
        })
    }

    /// Every recorded step of the call.
    pub async fn steps(&self, key: CallKey<'_>) -> Result<Vec<(Step, StepState)>, LedgerError> {
        let rows = on_call(
            "SELECT step, state, crm_object_id, started_at FROM call_steps
              WHERE source = $1 AND call_id = $2",
            key,
        )
        .fetch_all(&self.pool)
        .timed("steps")
        .await?;
        let mut steps = Vec::with_capacity(rows.len());
        for row in rows {
            let name: String = row.try_get("step")?;
            let Ok(step) = name.parse::<Step>() else {
                continue;
            };
            let state: String = row.try_get("state")?;
            let state = if state == "done" {
                StepState::Done {
                    crm_id: row.try_get("crm_object_id")?,
                }
            } else {
                StepState::Started {
                    since: row.try_get("started_at")?,
                }
            };
            steps.push((step, state));
        }
        Ok(steps)
    }

    /// Records that the call's message was parked (a replay claims it again).
    /// A call another worker holds right now (a duplicate delivery) is left
    /// to that worker.
    pub async fn mark_parked(&self, key: CallKey<'_>, reason: &str) -> Result<(), LedgerError> {
        on_call(
            "UPDATE calls SET status = 'parked', last_error = $3, parked_at = now(),
                    lease_owner = NULL, lease_until = NULL
              WHERE source = $1 AND call_id = $2 AND status <> 'synced'
                AND (lease_owner IS NULL OR lease_until < now())",
            key,
        )
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

impl CallLease<'_> {
    /// Records that a CRM request for `step` is about to be sent, extending
    /// the lease in the same statement. Fails with [`LedgerError::LeaseLost`]
    /// if this worker no longer holds the call, or another attempt finished
    /// the step meanwhile: either way the request must not be sent.
    pub async fn start_step(self, step: Step) -> Result<(), LedgerError> {
        let row = on_call(
            "WITH lease AS (
                UPDATE calls SET lease_until = now() + make_interval(secs => $5)
                 WHERE source = $1 AND call_id = $2 AND lease_owner = $3
                   AND lease_until > now() AND status = 'pending'
                RETURNING 1)
             INSERT INTO call_steps (source, call_id, step, state, started_at, started_by)
             SELECT $1, $2, $4, 'started', now(), $3 FROM lease
             ON CONFLICT (source, call_id, step) DO UPDATE
                SET state = 'started', started_at = now(), started_by = EXCLUDED.started_by,
                    crm_object_id = NULL, done_at = NULL
              -- A step another attempt finished is never reopened.
              WHERE call_steps.state <> 'done'
             RETURNING 1",
            self.key,
        )
        .bind(self.owner)
        .bind(step.as_str())
        .bind(self.ledger.lease_secs)
        .fetch_optional(&self.ledger.pool)
        .timed("start_step")
        .await?;
        row.map(drop)
            .ok_or_else(|| LedgerError::LeaseLost(self.key.to_string()))
    }

    /// Extends the lease before a request that records nothing first (a
    /// search, an idempotent update).
    pub async fn renew(self) -> Result<(), LedgerError> {
        let done = on_call(
            "UPDATE calls SET lease_until = now() + make_interval(secs => $4)
              WHERE source = $1 AND call_id = $2 AND lease_owner = $3
                AND lease_until > now() AND status = 'pending'",
            self.key,
        )
        .bind(self.owner)
        .bind(self.ledger.lease_secs)
        .execute(&self.ledger.pool)
        .timed("renew")
        .await?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(LedgerError::LeaseLost(self.key.to_string()))
        }
    }

    /// Records a finished step and the CRM object it produced. Not fenced by
    /// the lease: a completed effect is a fact worth keeping whoever holds the call.
    pub async fn finish_step(self, step: Step, crm_id: Option<&str>) -> Result<(), LedgerError> {
        on_call(
            "INSERT INTO call_steps (source, call_id, step, state, crm_object_id, started_at, done_at)
             VALUES ($1, $2, $3, 'done', $4, now(), now())
             ON CONFLICT (source, call_id, step) DO UPDATE
                SET state = 'done', crm_object_id = EXCLUDED.crm_object_id, done_at = now()",
            self.key,
        )
        .bind(step.as_str())
        .bind(crm_id)
        .execute(&self.ledger.pool)
        .timed("finish_step")
        .await?;
        Ok(())
    }

    /// Forgets a step this attempt started whose request certainly was not
    /// applied (a step another attempt started since is left alone).
    pub async fn abandon_step(self, step: Step) -> Result<(), LedgerError> {
        on_call(
            "DELETE FROM call_steps
              WHERE source = $1 AND call_id = $2 AND step = $3 AND state = 'started'
                AND started_by = $4",
            self.key,
        )
        .bind(step.as_str())
        .bind(self.owner)
        .execute(&self.ledger.pool)
        .await?;
        Ok(())
    }

    /// Restarts the "unknown since" clock of a step this attempt started,
    /// when its request ended without an answer that says whether it was
    /// applied. A CRM may still apply a request after the client gave up
    /// on it, so the wait before searching for its marker counts from the
    /// moment the request ended, not from the moment it was sent.
    pub async fn step_outcome_unknown(self, step: Step) -> Result<(), LedgerError> {
        on_call(
            "UPDATE call_steps SET started_at = now()
              WHERE source = $1 AND call_id = $2 AND step = $3 AND state = 'started'
                AND started_by = $4",
            self.key,
        )
        .bind(step.as_str())
        .bind(self.owner)
        .execute(&self.ledger.pool)
        .await?;
        Ok(())
    }

    /// Forgets which contact the call resolved to (and its update), so that
    /// the next attempt resolves the caller again.
    pub async fn reset_contact_steps(self) -> Result<(), LedgerError> {
        on_call(
            "DELETE FROM call_steps
              WHERE source = $1 AND call_id = $2 AND step IN ('contact', 'contact_update')",
            self.key,
        )
        .execute(&self.ledger.pool)
        .await?;
        Ok(())
    }

    /// Marks the call synced and releases it.
    pub async fn complete(self, contact_id: &ContactId) -> Result<(), LedgerError> {
        on_call(
            "UPDATE calls SET status = 'synced', synced_at = now(), contact_id = $3,
                    lease_owner = NULL, lease_until = NULL, last_error = NULL
              WHERE source = $1 AND call_id = $2",
            self.key,
        )
        .bind(contact_id.as_str())
        .execute(&self.ledger.pool)
        .timed("complete")
        .await?;
        Ok(())
    }

    /// Releases the call after a failed attempt, keeping the error for operators.
    pub async fn release(self, error: &str) -> Result<(), LedgerError> {
        on_call(
            "UPDATE calls SET lease_owner = NULL, lease_until = NULL, last_error = $4
              WHERE source = $1 AND call_id = $2 AND lease_owner = $3",
            self.key,
        )
        .bind(self.owner)
        .bind(error)
        .execute(&self.ledger.pool)
        .await?;
        Ok(())
    }
}
