//! Reads of the ledger for the reconciler and operator commands.

use std::collections::HashSet;

use callsync_shared::Source;
use sqlx::Row;

use super::{Ledger, LedgerError};

/// Row counts by call status, for `callsync-worker status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerCounts {
    pub pending: i64,
    pub synced: i64,
    pub parked: i64,
}

impl Ledger {
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
