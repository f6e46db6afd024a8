//! The reconciler's state in the ledger database (`reconcile_rounds`): who
//! reconciles a platform now, when the next round is due, and how far the
//! round in progress got. See the migration for the table.

use std::time::Duration;

use callsync_shared::Source;
use sqlx::{PgPool, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use super::Window;
use super::round::Counts;
use crate::ledger::LedgerError;

/// A round this replica holds the lease of: a new one (no window yet) or
/// one a previous holder left unfinished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The window of the round in progress, if one is.
    pub window: Option<Window>,
    /// The next page of the round in progress (`None`: its first).
    pub cursor: Option<String>,
    pub pages: i32,
    /// What the round in progress found so far.
    pub counts: Counts,
    /// The end of the last window walked to its end.
    pub last_window_end: Option<OffsetDateTime>,
}

/// One replica's handle on the rounds of every platform.
#[derive(Debug, Clone)]
pub struct Rounds {
    pool: PgPool,
    owner: Uuid,
    lease: Duration,
}

impl Rounds {
    pub fn new(pool: PgPool, owner: Uuid, lease: Duration) -> Self {
        Self { pool, owner, lease }
    }

    /// Takes `source`'s lease if a round is due and nobody holds it.
    pub async fn take(&self, source: Source) -> Result<Option<Held>, LedgerError> {
        let row = sqlx::query(
            "INSERT INTO reconcile_rounds (source, lease_owner, lease_until)
                  VALUES ($1, $2, now() + make_interval(secs => $3))
             ON CONFLICT (source) DO UPDATE
                 SET lease_owner = EXCLUDED.lease_owner, lease_until = EXCLUDED.lease_until
               WHERE reconcile_rounds.due_at <= now()
                 AND (reconcile_rounds.lease_until IS NULL OR reconcile_rounds.lease_until < now())
             RETURNING window_start, window_end, next_cursor, pages,
                       listed, known, queued, unfinished, last_window_end",
        )
        .bind(source.as_str())
        .bind(self.owner)
        .bind(self.lease.as_secs_f64())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let start: Option<OffsetDateTime> = row.try_get("window_start")?;
        let end: Option<OffsetDateTime> = row.try_get("window_end")?;
        let count = |column: &str| -> Result<u64, sqlx::Error> {
            Ok(u64::try_from(row.try_get::<i64, _>(column)?).unwrap_or(0))
        };
        Ok(Some(Held {
            window: start.zip(end).map(|(start, end)| Window { start, end }),
            cursor: row.try_get("next_cursor")?,
            pages: row.try_get("pages")?,
            counts: Counts {
                listed: count("listed")?,
                known: count("known")?,
                queued: count("queued")?,
                unfinished: count("unfinished")?,
                unreadable: 0,
            },
            last_window_end: row.try_get("last_window_end")?,
        }))
    }

    /// Extends the lease; [`LedgerError::LeaseLost`] if another replica
    /// took it (this one stalled longer than the lease).
    pub async fn renew(&self, source: Source) -> Result<(), LedgerError> {
        let renewed = sqlx::query(
            "UPDATE reconcile_rounds SET lease_until = now() + make_interval(secs => $3)
              WHERE source = $1 AND lease_owner = $2 AND lease_until > now()",
        )
        .bind(source.as_str())
        .bind(self.owner)
        .bind(self.lease.as_secs_f64())
        .execute(&self.pool)
        .await?;
        lease_held(renewed.rows_affected(), source)
    }

    /// Records the round's progress after a page whose calls are all in
    /// the calls queue: a successor resumes from `cursor`.
    pub async fn checkpoint(
        &self,
        source: Source,
        window: &Window,
        cursor: &str,
        pages: i32,
        counts: &Counts,
    ) -> Result<(), LedgerError> {
        let saved = sqlx::query(
            "UPDATE reconcile_rounds
                SET window_start = $3, window_end = $4, next_cursor = $5, pages = $6,
                    listed = $7, known = $8, queued = $9, unfinished = $10,
                    lease_until = now() + make_interval(secs => $11)
              WHERE source = $1 AND lease_owner = $2 AND lease_until > now()",
        )
        .bind(source.as_str())
        .bind(self.owner)
        .bind(window.start)
        .bind(window.end)
        .bind(cursor)
        .bind(pages)
        .bind(signed(counts.listed))
        .bind(signed(counts.known))
        .bind(signed(counts.queued))
        .bind(signed(counts.unfinished))
        .bind(self.lease.as_secs_f64())
        .execute(&self.pool)
        .await?;
        lease_held(saved.rows_affected(), source)
    }

    /// Ends a round that reached the end of its window, keeping what it
    /// found (`counts`, its whole window's): the next is due after `every`.
    pub async fn finish(
        &self,
        source: Source,
        window: &Window,
        counts: &Counts,
        every: Duration,
    ) -> Result<(), LedgerError> {
        let done = sqlx::query(
            "UPDATE reconcile_rounds
                SET window_start = NULL, window_end = NULL, next_cursor = NULL, pages = 0,
                    last_listed = $5, last_queued = $6,
                    listed = 0, known = 0, queued = 0, unfinished = 0,
                    last_window_end = $3, last_success_at = now(), last_error = NULL,
                    due_at = now() + make_interval(secs => $4),
                    lease_owner = NULL, lease_until = NULL
              WHERE source = $1 AND lease_owner = $2 AND lease_until > now()",
        )
        .bind(source.as_str())
        .bind(self.owner)
        .bind(window.end)
        .bind(every.as_secs_f64())
        .bind(signed(counts.listed))
        .bind(signed(counts.queued))
        .execute(&self.pool)
        .await?;
        lease_held(done.rows_affected(), source)
    }

    /// Gives up a round that failed, keeping its progress: it is resumed
    /// after `retry_in`, by whichever replica comes first.
    pub async fn fail(
        &self,
        source: Source,
        error: &str,
        retry_in: Duration,
    ) -> Result<(), LedgerError> {
        sqlx::query(
            "UPDATE reconcile_rounds
                SET last_error = $3, due_at = now() + make_interval(secs => $4),
                    lease_owner = NULL, lease_until = NULL
              WHERE source = $1 AND lease_owner = $2",
        )
        .bind(source.as_str())
        .bind(self.owner)
        .bind(error)
        .bind(retry_in.as_secs_f64())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Hands back a lease at shutdown, keeping the round's progress and
    /// leaving it due, so another replica resumes it at once.
    pub async fn release(&self, source: Source) -> Result<(), LedgerError> {
        sqlx::query(
            "UPDATE reconcile_rounds SET lease_owner = NULL, lease_until = NULL
              WHERE source = $1 AND lease_owner = $2",
        )
        .bind(source.as_str())
        .bind(self.owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// When a round of `source` last reached the end of its window, by any replica.
    pub async fn last_success(
        &self,
        source: Source,
    ) -> Result<Option<OffsetDateTime>, LedgerError> {
        let at: Option<Option<OffsetDateTime>> =
            sqlx::query_scalar("SELECT last_success_at FROM reconcile_rounds WHERE source = $1")
                .bind(source.as_str())
                .fetch_optional(&self.pool)
                .await?;
        Ok(at.flatten())
    }
}

fn lease_held(rows: u64, source: Source) -> Result<(), LedgerError> {
    if rows == 1 {
        Ok(())
    } else {
        Err(LedgerError::LeaseLost(format!(
            "the reconcile round of {source}"
        )))
    }
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
