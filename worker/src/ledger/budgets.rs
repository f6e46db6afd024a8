//! Request budgets shared through the ledger: a window log every live
//! worker takes from, so that a budget too small to divide evenly (HubSpot's
//! 5 searches a second among three workers) goes to whichever worker has
//! requests waiting, not to fixed parts.

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::OnceCell;

use super::{Ledger, LedgerError};
use crate::crm::{Rate, SharedWindow};

/// One budget's window log in the ledger (`budget_slots`).
#[derive(Debug)]
pub struct LedgerWindow {
    ledger: Ledger,
    budget: &'static str,
    /// The slot rows exist (created on the first take, so that a database
    /// away at start-up is not fatal here).
    slots: OnceCell<()>,
}

impl LedgerWindow {
    /// The window log of `budget` (e.g. `search`) for the ledger's CRM.
    pub fn new(ledger: Ledger, budget: &'static str) -> Self {
        Self {
            ledger,
            budget,
            slots: OnceCell::new(),
        }
    }

    /// Creates the rows of `max` slots that do not exist yet. Rows beyond
    /// a smaller `max` (a budget lowered since) are left and ignored.
    async fn ensure_slots(&self, max: u32) -> Result<(), LedgerError> {
        sqlx::query(
            "INSERT INTO budget_slots (crm, budget, slot)
             SELECT $1, $2, slot FROM generate_series(0, $3 - 1) AS slot
             ON CONFLICT DO NOTHING",
        )
        .bind(self.ledger.crm)
        .bind(self.budget)
        .bind(i32::try_from(max).unwrap_or(i32::MAX))
        .execute(&self.ledger.pool)
        .await?;
        Ok(())
    }

    /// Takes a slot if one left the window (`None`), else says how long
    /// until the oldest does. The database's clock is the only one read, so
    /// workers on hosts whose clocks differ still share one window.
    pub async fn take(
        &self,
        rate: Rate,
        window: Duration,
    ) -> Result<Option<Duration>, LedgerError> {
        self.slots
            .get_or_try_init(|| self.ensure_slots(rate.max))
            .await?;
        // A slot another worker is taking right now is skipped, not waited
        // for; the oldest of the others says how long to wait.
        let (taken, wait): (bool, Option<f64>) = sqlx::query_as(
            "WITH free AS (
                 SELECT slot FROM budget_slots
                  WHERE crm = $1 AND budget = $2 AND slot < $3
                    AND used_at <= clock_timestamp() - make_interval(secs => $4)
                  ORDER BY used_at LIMIT 1
                  FOR UPDATE SKIP LOCKED
             ), taken AS (
                 UPDATE budget_slots AS b SET used_at = clock_timestamp()
                   FROM free
                  WHERE b.crm = $1 AND b.budget = $2 AND b.slot = free.slot
                 RETURNING b.slot
             )
             SELECT EXISTS (SELECT 1 FROM taken),
                    (SELECT EXTRACT(EPOCH FROM min(used_at) + make_interval(secs => $4)
                                               - clock_timestamp())::float8
                       FROM budget_slots WHERE crm = $1 AND budget = $2 AND slot < $3)",
        )
        .bind(self.ledger.crm)
        .bind(self.budget)
        .bind(i32::try_from(rate.max).unwrap_or(i32::MAX))
        .bind(window.as_secs_f64())
        .fetch_one(&self.ledger.pool)
        .await?;
        if taken {
            return Ok(None);
        }
        // Never a busy loop: the oldest slot may be the one being taken.
        let wait = wait.unwrap_or(0.0).max(MIN_WAIT.as_secs_f64());
        Ok(Some(Duration::from_secs_f64(wait)))
    }
}

/// The shortest wait before asking again.
const MIN_WAIT: Duration = Duration::from_millis(10);

#[async_trait]
impl SharedWindow for LedgerWindow {
    async fn take(&self, rate: Rate, window: Duration) -> Result<Option<Duration>, String> {
        LedgerWindow::take(self, rate, window)
            .await
            .map_err(|e| callsync_shared::telemetry::Chain(&e).to_string())
    }
}
