//! Request budgets shared through the ledger: a window log every live
//! worker takes from, so that a budget too small to divide evenly (HubSpot's
//! 5 searches a second among three workers) goes to whichever worker has
//! requests waiting, not to fixed parts. Takes are spaced evenly through
//! the window (see [`LedgerWindow::take`]).

use std::time::{Duration, Instant};

use async_trait::async_trait;
use time::OffsetDateTime;
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

    /// Takes a slot if one left the window and the last slot taken is a
    /// `window ÷ max` old (`None`), else says how long until both hold. The
    /// database's clock is the only one read, so workers on hosts whose
    /// clocks differ still share one window.
    ///
    /// Why the spacing: without it, the `max` slots taken at one moment all
    /// leave the window at one moment, and the whole budget goes out in a
    /// burst every window for as long as searches wait. A burst held up
    /// anywhere on its way (a busy host, a stalled connection) then arrives
    /// together and meets the next burst inside the CRM's window; requests
    /// `window ÷ max` apart need a far longer hold-up for that, and the
    /// rate is the same.
    pub async fn take(
        &self,
        rate: Rate,
        window: Duration,
    ) -> Result<Option<Duration>, LedgerError> {
        self.slots
            .get_or_try_init(|| self.ensure_slots(rate.max))
            .await?;
        let spacing = window / rate.max.max(1);
        // Every slot row of the budget is locked, so that takes by several
        // workers are one after another and each sees the last one's time.
        let asked = Instant::now();
        let (taken, stamp, wait): (Option<i32>, Option<OffsetDateTime>, Option<f64>) =
            sqlx::query_as(
                "WITH slots AS (
                     SELECT slot, used_at FROM budget_slots
                      WHERE crm = $1 AND budget = $2 AND slot < $3
                      ORDER BY slot
                      FOR UPDATE
                 ), free AS (
                     SELECT slot FROM slots
                      WHERE used_at <= clock_timestamp() - make_interval(secs => $4)
                        AND (SELECT max(used_at) FROM slots)
                            <= clock_timestamp() - make_interval(secs => $5)
                      ORDER BY used_at LIMIT 1
                 ), taken AS (
                     UPDATE budget_slots AS b SET used_at = clock_timestamp()
                       FROM free
                      WHERE b.crm = $1 AND b.budget = $2 AND b.slot = free.slot
                     RETURNING b.slot, b.used_at
                 )
                 SELECT (SELECT slot FROM taken), (SELECT used_at FROM taken),
                        (SELECT EXTRACT(EPOCH FROM greatest(
                                    min(used_at) + make_interval(secs => $4),
                                    max(used_at) + make_interval(secs => $5))
                                - clock_timestamp())::float8
                           FROM slots)",
            )
            .bind(self.ledger.crm)
            .bind(self.budget)
            .bind(i32::try_from(rate.max).unwrap_or(i32::MAX))
            .bind(window.as_secs_f64())
            .bind(spacing.as_secs_f64())
            .fetch_one(&self.ledger.pool)
            .await?;
        if let (Some(slot), Some(stamp)) = (taken, stamp) {
            if asked.elapsed() > RESTAMP_AFTER {
                self.restamp(slot, stamp).await?;
            }
            return Ok(None);
        }
        // Never a busy loop.
        let wait = wait.unwrap_or(0.0).max(MIN_WAIT.as_secs_f64());
        Ok(Some(Duration::from_secs_f64(wait)))
    }

    /// Moves a slot taken at `stamp` to now, unless another worker has
    /// taken it since. The slot was stamped by the database; the request
    /// leaves only once this worker has the answer, and a worker short of
    /// CPU can get it hundreds of milliseconds later: a request that
    /// arrives that late could meet the next request of its slot inside
    /// the CRM's window.
    async fn restamp(&self, slot: i32, stamp: OffsetDateTime) -> Result<(), LedgerError> {
        sqlx::query(
            "UPDATE budget_slots SET used_at = clock_timestamp()
              WHERE crm = $1 AND budget = $2 AND slot = $3 AND used_at = $4",
        )
        .bind(self.ledger.crm)
        .bind(self.budget)
        .bind(slot)
        .bind(stamp)
        .execute(&self.ledger.pool)
        .await?;
        Ok(())
    }
}

/// The shortest wait before asking again.
const MIN_WAIT: Duration = Duration::from_millis(10);

/// A take whose answer came later than this moves its slot to the moment
/// the answer arrived ([`LedgerWindow::restamp`]).
const RESTAMP_AFTER: Duration = Duration::from_millis(20);

#[async_trait]
impl SharedWindow for LedgerWindow {
    async fn take(&self, rate: Rate, window: Duration) -> Result<Option<Duration>, String> {
        LedgerWindow::take(self, rate, window)
            .await
            .map_err(|e| callsync_shared::telemetry::Chain(&e).to_string())
    }
}
