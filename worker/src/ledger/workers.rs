//! Live workers: each takes its share of the CRM's request budget.

use std::time::Duration;

use uuid::Uuid;

use super::{Ledger, LedgerError};
use crate::crm::Share;

impl Ledger {
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

    /// Records whether worker `id` is paused and why (`reason` is the
    /// label of `callsync_worker_paused`, `detail` what `/readyz` says), so
    /// that the console can show it.
    pub async fn report_pause(
        &self,
        id: Uuid,
        paused: Option<(&str, &str)>,
    ) -> Result<(), LedgerError> {
        sqlx::query("UPDATE workers SET paused_reason = $2, paused_detail = $3 WHERE id = $1")
            .bind(id)
            .bind(paused.map(|(reason, _)| reason))
            .bind(paused.map(|(_, detail)| detail))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Removes worker `id` at shutdown, so the others take its share at once.
    pub async fn leave(&self, id: Uuid) -> Result<(), LedgerError> {
        sqlx::query("DELETE FROM workers WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
