//! The PostgreSQL ledger: the memory that makes every CRM effect happen once.
//!
//! A call is held by one worker at a time through a **lease** (owner id and
//! expiry in the `calls` row), and every write that precedes a CRM request
//! checks and extends that lease in the same statement. A CRM request is
//! bounded by `CALLSYNC_CRM_TIMEOUT`, at most half the lease, so a request
//! started under a valid lease ends before anyone else can take the call.
//! A session advisory lock would be simpler but is released the moment its
//! connection drops, which can happen while our CRM request is in flight.
//!
//! The same scheme serialises contact creation per phone number (`contacts`)
//! and the writes of a contact's last-call fields (`contact_last_call`).

use std::collections::HashSet;
use std::str::FromStr;
use std::time::Duration;

use callsync_shared::{CallId, Source};
use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::crm::Share;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Ledger failures. All are transient from a message's point of view: the
/// database will come back, or the lease was taken over and the other holder
/// finishes the call.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("lease on {0} expired or was taken over")]
    LeaseLost(String),
}

/// Whether a call may write a contact's last-call fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatestCall {
    /// It is the newest call seen for the contact: write, then release.
    Write,
    /// A newer call has claimed the fields: leave them.
    Older,
    /// Another call's write is in flight: wait for it.
    Busy,
}

/// One CRM effect of a call, in the order they are performed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    Contact,
    CallLog,
    ContactUpdate,
    FollowUpTask,
}

impl Step {
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
        }
    }
}

impl FromStr for Step {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Step::ALL
            .into_iter()
            .find(|step| step.as_str() == s)
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
#[derive(Debug, Clone, Copy)]
pub struct CallKey<'a> {
    pub source: Source,
    pub call_id: &'a CallId,
}

impl std::fmt::Display for CallKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.source, self.call_id)
    }
}

/// The outcome of trying to take a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This worker holds the call; `attempt` counts claims including this one.
    Acquired { attempt: i32 },
    /// The call was synced before: a duplicate delivery.
    AlreadySynced,
    /// Another worker holds the call right now.
    Busy,
}

/// The outcome of trying to take a contact lookup key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContactClaim {
    /// The contact is known; no lease was taken.
    Known(String),
    /// This worker holds the key; `pending_since` is set when an earlier
    /// create's outcome is unknown.
    Acquired {
        pending_since: Option<OffsetDateTime>,
    },
    Busy,
}

/// What became of the contact create an attempt sent, when it released the
/// lookup key after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SentCreate {
    /// No create was sent by this attempt.
    None,
    /// A create was sent and certainly not applied.
    NotApplied,
    /// A create was sent and may have been applied.
    Unknown,
}

impl SentCreate {
    fn as_str(self) -> &'static str {
        match self {
            SentCreate::None => "none",
            SentCreate::NotApplied => "not_applied",
            SentCreate::Unknown => "unknown",
        }
    }
}

/// Row counts by call status, for `callsync-worker status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerCounts {
    pub pending: i64,
    pub synced: i64,
    pub parked: i64,
}

#[derive(Debug, Clone)]
pub struct Ledger {
    pool: PgPool,
    crm: &'static str,
    lease_secs: f64,
}

impl Ledger {
    /// Connects, creating the database if it does not exist, and applies
    /// the embedded migrations (sqlx serialises concurrent migrators with an
    /// advisory lock, so replicas may start together).
    pub async fn connect(
        url: &str,
        max_connections: u32,
        crm: &'static str,
        lease: Duration,
    ) -> Result<Self, LedgerError> {
        ensure_database(url).await?;
        let options: PgConnectOptions = url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.application_name("callsync-worker"))
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self {
            pool,
            crm,
            lease_secs: lease.as_secs_f64(),
        })
    }

    /// Opens an existing ledger read-mostly, for operator commands: no
    /// database creation, no migrations, one connection.
    pub async fn open_existing(url: &str) -> Result<Self, LedgerError> {
        let options: PgConnectOptions = url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.application_name("callsync-worker-cli"))
            .await?;
        Ok(Self {
            pool,
            crm: "",
            lease_secs: 0.0,
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A cheap round trip, for readiness.
    pub async fn ping(&self) -> Result<(), LedgerError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Tries to take the call for `owner`.
    pub async fn claim(&self, key: CallKey<'_>, owner: Uuid) -> Result<Claim, LedgerError> {
        let acquired = sqlx::query(
            "INSERT INTO calls (source, call_id, lease_owner, lease_until, attempts)
             VALUES ($1, $2, $3, now() + make_interval(secs => $4), 1)
             ON CONFLICT (source, call_id) DO UPDATE
                SET lease_owner = EXCLUDED.lease_owner,
                    lease_until = EXCLUDED.lease_until,
                    attempts = calls.attempts + 1,
                    status = 'pending'
              WHERE calls.status <> 'synced'
                AND (calls.lease_until IS NULL OR calls.lease_until < now())
             RETURNING attempts",
        )
        .bind(key.source.as_str())
        .bind(key.call_id.as_str())
        .bind(owner)
        .bind(self.lease_secs)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = acquired {
            return Ok(Claim::Acquired {
                attempt: row.try_get("attempts")?,
            });
        }
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM calls WHERE source = $1 AND call_id = $2")
                .bind(key.source.as_str())
                .bind(key.call_id.as_str())
                .fetch_optional(&self.pool)
                .await?;
        Ok(match status.as_deref() {
            Some("synced") => Claim::AlreadySynced,
            _ => Claim::Busy,
        })
    }

    /// Every recorded step of the call.
    pub async fn steps(&self, key: CallKey<'_>) -> Result<Vec<(Step, StepState)>, LedgerError> {
        let rows = sqlx::query(
            "SELECT step, state, crm_object_id, started_at FROM call_steps
              WHERE source = $1 AND call_id = $2",
        )
        .bind(key.source.as_str())
        .bind(key.call_id.as_str())
        .fetch_all(&self.pool)
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

    /// Records that a CRM request for `step` is about to be sent, extending
    /// the lease in the same statement. Fails with [`LedgerError::LeaseLost`]
    /// if this worker no longer holds the call, or another attempt finished
    /// the step meanwhile: either way the request must not be sent.
    pub async fn start_step(
        &self,
        key: CallKey<'_>,
        owner: Uuid,
        step: Step,
    ) -> Result<(), LedgerError> {
        let row = sqlx::query(
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
        )
        .bind(key.source.as_str())
        .bind(key.call_id.as_str())
        .bind(owner)
        .bind(step.as_str())
        .bind(self.lease_secs)
        .fetch_optional(&self.pool)
        .await?;
        row.map(drop)
            .ok_or_else(|| LedgerError::LeaseLost(key.to_string()))
    }

    /// Extends the lease before a request that records nothing first (a
    /// search, an idempotent update).
    pub async fn renew(&self, key: CallKey<'_>, owner: Uuid) -> Result<(), LedgerError> {
        let done = sqlx::query(
            "UPDATE calls SET lease_until = now() + make_interval(secs => $4)
              WHERE source = $1 AND call_id = $2 AND lease_owner = $3
                AND lease_until > now() AND status = 'pending'",
        )
        .bind(key.source.as_str())
        .bind(key.call_id.as_str())
        .bind(owner)
        .bind(self.lease_secs)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(LedgerError::LeaseLost(key.to_string()))
        }
    }

    /// Records a finished step and the CRM object it produced. Not fenced by
    /// the lease: a completed effect is a fact worth keeping whoever holds the call.
    pub async fn finish_step(
        &self,
        key: CallKey<'_>,
        step: Step,
        crm_id: Option<&str>,
    ) -> Result<(), LedgerError> {
        sqlx::query(
            "INSERT INTO call_steps (source, call_id, step, state, crm_object_id, started_at, done_at)
             VALUES ($1, $2, $3, 'done', $4, now(), now())
             ON CONFLICT (source, call_id, step) DO UPDATE
                SET state = 'done', crm_object_id = EXCLUDED.crm_object_id, done_at = now()",
        )
        .bind(key.source.as_str())
        .bind(key.call_id.as_str())
        .bind(step.as_str())
        .bind(crm_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets a step this attempt started whose request certainly was not
    /// applied (a step another attempt started since is left alone).
    pub async fn abandon_step(
        &self,
        key: CallKey<'_>,
        owner: Uuid,
        step: Step,
    ) -> Result<(), LedgerError> {
        sqlx::query(
            "DELETE FROM call_steps
              WHERE source = $1 AND call_id = $2 AND step = $3 AND state = 'started'
                AND started_by = $4",
        )
        .bind(key.source.as_str())
        .bind(key.call_id.as_str())
        .bind(step.as_str())
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Restarts the "unknown since" clock of a step this attempt started,
    /// when its request ended without an answer that says whether it was
    /// applied. A CRM may still apply a request after the client gave up
    /// on it, so the wait before searching for its marker counts from the
    /// moment the request ended, not from the moment it was sent.
    pub async fn step_outcome_unknown(
        &self,
        key: CallKey<'_>,
        owner: Uuid,
        step: Step,
    ) -> Result<(), LedgerError> {
        sqlx::query(
            "UPDATE call_steps SET started_at = now()
              WHERE source = $1 AND call_id = $2 AND step = $3 AND state = 'started'
                AND started_by = $4",
        )
        .bind(key.source.as_str())
        .bind(key.call_id.as_str())
        .bind(step.as_str())
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks the call synced and releases it.
    pub async fn complete(&self, key: CallKey<'_>, contact_id: &str) -> Result<(), LedgerError> {
        sqlx::query(
            "UPDATE calls SET status = 'synced', synced_at = now(), contact_id = $3,
                    lease_owner = NULL, lease_until = NULL, last_error = NULL
              WHERE source = $1 AND call_id = $2",
        )
        .bind(key.source.as_str())
        .bind(key.call_id.as_str())
        .bind(contact_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Releases the call after a failed attempt, keeping the error for operators.
    pub async fn release(
        &self,
        key: CallKey<'_>,
        owner: Uuid,
        error: &str,
    ) -> Result<(), LedgerError> {
        sqlx::query(
            "UPDATE calls SET lease_owner = NULL, lease_until = NULL, last_error = $4
              WHERE source = $1 AND call_id = $2 AND lease_owner = $3",
        )
        .bind(key.source.as_str())
        .bind(key.call_id.as_str())
        .bind(owner)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records that the call's message was parked (a replay claims it again).
    /// A call another worker holds right now (a duplicate delivery) is left
    /// to that worker.
    pub async fn mark_parked(&self, key: CallKey<'_>, reason: &str) -> Result<(), LedgerError> {
        sqlx::query(
            "UPDATE calls SET status = 'parked', last_error = $3, lease_owner = NULL, lease_until = NULL
              WHERE source = $1 AND call_id = $2 AND status <> 'synced'
                AND (lease_owner IS NULL OR lease_until < now())",
        )
        .bind(key.source.as_str())
        .bind(key.call_id.as_str())
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Tries to take a contact lookup key (`phone:+31…` or `email:…`).
    pub async fn claim_contact(
        &self,
        lookup_key: &str,
        owner: Uuid,
    ) -> Result<ContactClaim, LedgerError> {
        let acquired = sqlx::query(
            "INSERT INTO contacts (crm, lookup_key, lease_owner, lease_until)
             VALUES ($1, $2, $3, now() + make_interval(secs => $4))
             ON CONFLICT (crm, lookup_key) DO UPDATE
                SET lease_owner = EXCLUDED.lease_owner, lease_until = EXCLUDED.lease_until
              WHERE contacts.contact_id IS NULL
                AND (contacts.lease_until IS NULL OR contacts.lease_until < now())
             RETURNING pending_since",
        )
        .bind(self.crm)
        .bind(lookup_key)
        .bind(owner)
        .bind(self.lease_secs)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = acquired {
            return Ok(ContactClaim::Acquired {
                pending_since: row.try_get("pending_since")?,
            });
        }
        let known: Option<Option<String>> = sqlx::query_scalar(
            "SELECT contact_id FROM contacts WHERE crm = $1 AND lookup_key = $2",
        )
        .bind(self.crm)
        .bind(lookup_key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match known.flatten() {
            Some(id) => ContactClaim::Known(id),
            None => ContactClaim::Busy,
        })
    }

    /// Records that a contact create is about to be sent (fenced, like
    /// [`Ledger::start_step`]).
    pub async fn contact_pending(&self, lookup_key: &str, owner: Uuid) -> Result<(), LedgerError> {
        let done = sqlx::query(
            "UPDATE contacts SET pending_since = now(), lease_until = now() + make_interval(secs => $4)
              WHERE crm = $1 AND lookup_key = $2 AND lease_owner = $3 AND lease_until > now()",
        )
        .bind(self.crm)
        .bind(lookup_key)
        .bind(owner)
        .bind(self.lease_secs)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(LedgerError::LeaseLost(redacted(lookup_key)))
        }
    }

    /// Remembers the contact of a lookup key and releases the key.
    pub async fn contact_resolved(
        &self,
        lookup_key: &str,
        contact_id: &str,
    ) -> Result<(), LedgerError> {
        sqlx::query(
            "INSERT INTO contacts (crm, lookup_key, contact_id) VALUES ($1, $2, $3)
             ON CONFLICT (crm, lookup_key) DO UPDATE
                SET contact_id = EXCLUDED.contact_id, pending_since = NULL,
                    lease_owner = NULL, lease_until = NULL, updated_at = now()",
        )
        .bind(self.crm)
        .bind(lookup_key)
        .bind(contact_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Releases a lookup key, saying what became of the create this attempt
    /// sent, if any: one that certainly did not reach the CRM is forgotten;
    /// one whose outcome is unknown restarts the pending clock (the CRM may
    /// apply it after the client gave up, see [`Ledger::step_outcome_unknown`]).
    pub async fn release_contact(
        &self,
        lookup_key: &str,
        owner: Uuid,
        create: SentCreate,
    ) -> Result<(), LedgerError> {
        sqlx::query(
            "UPDATE contacts SET lease_owner = NULL, lease_until = NULL,
                    pending_since = CASE $4 WHEN 'not_applied' THEN NULL
                                            WHEN 'unknown' THEN now()
                                            ELSE pending_since END
              WHERE crm = $1 AND lookup_key = $2 AND lease_owner = $3",
        )
        .bind(self.crm)
        .bind(lookup_key)
        .bind(owner)
        .bind(create.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets which contact the call resolved to (and its update), so that
    /// the next attempt resolves the caller again.
    pub async fn reset_contact_steps(&self, key: CallKey<'_>) -> Result<(), LedgerError> {
        sqlx::query(
            "DELETE FROM call_steps
              WHERE source = $1 AND call_id = $2 AND step IN ('contact', 'contact_update')",
        )
        .bind(key.source.as_str())
        .bind(key.call_id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets a remembered contact (e.g. it was deleted or merged in the CRM).
    pub async fn forget_contact(&self, contact_id: &str) -> Result<(), LedgerError> {
        sqlx::query("DELETE FROM contacts WHERE crm = $1 AND contact_id = $2")
            .bind(self.crm)
            .bind(contact_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Takes the right to write the contact's last-call fields for `key`'s
    /// call: granted when no newer call has claimed them and no other call's
    /// write is in flight. The grant is a lease, like a call's: claiming
    /// again extends it, and it lapses by itself if the worker dies.
    pub async fn claim_latest_call(
        &self,
        contact_id: &str,
        ended_at: OffsetDateTime,
        key: CallKey<'_>,
        owner: Uuid,
    ) -> Result<LatestCall, LedgerError> {
        self.latest_call(contact_id, ended_at, key, Some(owner))
            .await
    }

    /// Records `key`'s call as the contact's newest without holding the
    /// fields (a contact just created with them needs no update); `Write`
    /// means it was recorded.
    pub async fn record_latest_call(
        &self,
        contact_id: &str,
        ended_at: OffsetDateTime,
        key: CallKey<'_>,
    ) -> Result<LatestCall, LedgerError> {
        self.latest_call(contact_id, ended_at, key, None).await
    }

    async fn latest_call(
        &self,
        contact_id: &str,
        ended_at: OffsetDateTime,
        key: CallKey<'_>,
        owner: Option<Uuid>,
    ) -> Result<LatestCall, LedgerError> {
        let granted = sqlx::query(
            "INSERT INTO contact_last_call
                    (crm, contact_id, ended_at, source, call_id, lease_owner, lease_until)
             VALUES ($1, $2, $3, $4, $5, $6,
                     CASE WHEN $6::uuid IS NULL THEN NULL
                          ELSE now() + make_interval(secs => $7) END)
             ON CONFLICT (crm, contact_id) DO UPDATE
                SET ended_at = EXCLUDED.ended_at, source = EXCLUDED.source,
                    call_id = EXCLUDED.call_id, lease_owner = EXCLUDED.lease_owner,
                    lease_until = EXCLUDED.lease_until
              WHERE contact_last_call.ended_at <= EXCLUDED.ended_at
                AND (contact_last_call.lease_until IS NULL
                     OR contact_last_call.lease_until < now()
                     OR (contact_last_call.source = EXCLUDED.source
                         AND contact_last_call.call_id = EXCLUDED.call_id))
             RETURNING 1",
        )
        .bind(self.crm)
        .bind(contact_id)
        .bind(ended_at)
        .bind(key.source.as_str())
        .bind(key.call_id.as_str())
        .bind(owner)
        .bind(self.lease_secs)
        .fetch_optional(&self.pool)
        .await?;
        if granted.is_some() {
            return Ok(LatestCall::Write);
        }
        let newest: Option<OffsetDateTime> = sqlx::query_scalar(
            "SELECT ended_at FROM contact_last_call WHERE crm = $1 AND contact_id = $2",
        )
        .bind(self.crm)
        .bind(contact_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match newest {
            Some(newest) if newest > ended_at => LatestCall::Older,
            _ => LatestCall::Busy,
        })
    }

    /// Records the contact update as done and, when `release`, gives up the
    /// right to write the last-call fields, in one statement. Without
    /// `release` the lease is left to expire: an earlier attempt of the
    /// same update whose outcome was unknown may still land, and no newer
    /// call's update may be sent before it could.
    pub async fn finish_update(
        &self,
        key: CallKey<'_>,
        contact_id: &str,
        owner: Uuid,
        release: bool,
    ) -> Result<(), LedgerError> {
        sqlx::query(
            "WITH released AS (
                UPDATE contact_last_call SET lease_owner = NULL, lease_until = NULL
                 WHERE crm = $5 AND contact_id = $4 AND lease_owner = $6 AND $7
             )
             INSERT INTO call_steps (source, call_id, step, state, crm_object_id, started_at, done_at)
             VALUES ($1, $2, $3, 'done', $4, now(), now())
             ON CONFLICT (source, call_id, step) DO UPDATE
                SET state = 'done', crm_object_id = EXCLUDED.crm_object_id, done_at = now()",
        )
        .bind(key.source.as_str())
        .bind(key.call_id.as_str())
        .bind(Step::ContactUpdate.as_str())
        .bind(contact_id)
        .bind(self.crm)
        .bind(owner)
        .bind(release)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Gives up the right to write the last-call fields after a failed
    /// write (the fields stay claimed by the call, only the lease ends).
    pub async fn release_latest_call(
        &self,
        contact_id: &str,
        owner: Uuid,
    ) -> Result<(), LedgerError> {
        sqlx::query(
            "UPDATE contact_last_call SET lease_owner = NULL, lease_until = NULL
              WHERE crm = $1 AND contact_id = $2 AND lease_owner = $3",
        )
        .bind(self.crm)
        .bind(contact_id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records that worker `id` is alive and returns its share: how many
    /// workers of this CRM were seen within `window` (itself included), and
    /// how many of them come before it in id order.
    pub async fn heartbeat(&self, id: Uuid, window: Duration) -> Result<Share, LedgerError> {
        sqlx::query(
            "INSERT INTO workers (id, crm, last_seen) VALUES ($1, $2, now())
             ON CONFLICT (id) DO UPDATE SET last_seen = now()",
        )
        .bind(id)
        .bind(self.crm)
        .execute(&self.pool)
        .await?;
        let (live, before): (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE id < $3) FROM workers
             WHERE crm = $1 AND last_seen > now() - make_interval(secs => $2)",
        )
        .bind(self.crm)
        .bind(window.as_secs_f64())
        .bind(id)
        .fetch_one(&self.pool)
        .await?;
        // Forget workers long gone, so the table stays small.
        sqlx::query("DELETE FROM workers WHERE last_seen < now() - interval '1 hour'")
            .execute(&self.pool)
            .await?;
        Ok(Share {
            workers: usize::try_from(live).unwrap_or(1).max(1),
            rank: usize::try_from(before).unwrap_or(0),
        })
    }

    /// Removes worker `id` at shutdown, so the others take its share at once.
    pub async fn leave(&self, id: Uuid) -> Result<(), LedgerError> {
        sqlx::query("DELETE FROM workers WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Which of `call_ids` of `source` the ledger has a row for, whatever
    /// its status: synced, pending (being or to be synced) or parked. The
    /// reconciler queues only the others.
    pub async fn known_calls(
        &self,
        source: Source,
        call_ids: &[String],
    ) -> Result<HashSet<String>, LedgerError> {
        let known: Vec<String> =
            sqlx::query_scalar("SELECT call_id FROM calls WHERE source = $1 AND call_id = ANY($2)")
                .bind(source.as_str())
                .bind(call_ids)
                .fetch_all(&self.pool)
                .await?;
        Ok(known.into_iter().collect())
    }

    /// Calls by status.
    pub async fn counts(&self) -> Result<LedgerCounts, LedgerError> {
        let rows = sqlx::query("SELECT status, count(*) AS n FROM calls GROUP BY status")
            .fetch_all(&self.pool)
            .await?;
        let mut counts = LedgerCounts::default();
        for row in rows {
            let status: String = row.try_get("status")?;
            let n: i64 = row.try_get("n")?;
            match status.as_str() {
                "pending" => counts.pending = n,
                "synced" => counts.synced = n,
                "parked" => counts.parked = n,
                _ => {}
            }
        }
        Ok(counts)
    }
}

/// A contact lookup key fit for logs: the number masked to its last four
/// digits, the e-mail to its domain.
fn redacted(lookup_key: &str) -> String {
    match lookup_key.split_once(':') {
        Some(("phone", number)) => format!("phone:{}", callsync_shared::phone::mask(number)),
        Some(("email", address)) => format!(
            "email:***@{}",
            address.rsplit_once('@').map_or("", |(_, domain)| domain)
        ),
        _ => "contact key".to_owned(),
    }
}

/// Creates the database named in `url` if it does not exist yet. Several
/// replicas may race here; losing the race (42P04, duplicate database) is fine.
async fn ensure_database(url: &str) -> Result<(), LedgerError> {
    if Postgres::database_exists(url).await? {
        return Ok(());
    }
    match Postgres::create_database(url).await {
        Ok(()) => {
            tracing::info!("created the ledger database");
            Ok(())
        }
        // 42P04: duplicate database; 23505: the catalogue's unique index, hit
        // when two replicas create it at the same instant.
        Err(sqlx::Error::Database(e)) if matches!(e.code().as_deref(), Some("42P04" | "23505")) => {
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_keys_in_errors_hide_personal_data() {
        assert_eq!(redacted("phone:+31612345678"), "phone:*******5678");
        assert_eq!(redacted("email:jan@example.com"), "email:***@example.com");
    }
}
