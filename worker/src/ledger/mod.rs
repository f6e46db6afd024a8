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
//!
//! One module per concern: [`calls`] (claims, leases, steps), [`contacts`]
//! (contact lookup keys), [`last_call`] (a contact's last-call fields),
//! [`workers`] (live workers sharing the CRM budget), [`budgets`] (the
//! search budget every worker takes from) and [`reads`] (what the
//! reconciler and operator commands read).

mod budgets;
mod calls;
mod contacts;
mod last_call;
mod reads;
mod workers;

use std::future::Future;
use std::time::{Duration, Instant};

use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPoolOptions};
use sqlx::query::Query;
use sqlx::{PgPool, Postgres};

pub use budgets::LedgerWindow;
pub use calls::{CallKey, CallLease, Claim, Receipt, Step, StepState};
pub use contacts::{ContactClaim, ContactId, LookupKey, SentCreate};
pub use last_call::LatestCall;
pub use reads::LedgerCounts;

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

    /// How long a lease lasts from its last extension (`CALLSYNC_LEASE`).
    pub fn lease_length(&self) -> Duration {
        Duration::from_secs_f64(self.lease_secs)
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A cheap round trip, for readiness.
    pub async fn ping(&self) -> Result<(), LedgerError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// A statement on this CRM's rows of a contact table: `$1` is the CRM
    /// and `$2` the row's key (a lookup key or a contact id).
    fn on_contact(&self, sql: &'static str, key: &str) -> Query<'static, Postgres, PgArguments> {
        sqlx::query(sql).bind(self.crm).bind(key)
    }
}

/// A statement on one call's rows: `$1` and `$2` are its source and call id.
fn on_call(sql: &'static str, key: CallKey<'_>) -> Query<'static, Postgres, PgArguments> {
    sqlx::query(sql)
        .bind(key.source.as_str())
        .bind(key.call_id.as_str())
}

/// A statement of a call's sync, timed: `.timed("claim")` before its
/// `.await` records how long the database took under that name
/// (`callsync_worker_ledger_seconds`), the ledger's share of a call's
/// latency and the first sign of a slow database.
trait Timed: Future + Sized {
    async fn timed(self, statement: &'static str) -> Self::Output {
        let started = Instant::now();
        let result = self.await;
        metrics::histogram!("callsync_worker_ledger_seconds", "statement" => statement)
            .record(started.elapsed().as_secs_f64());
        result
    }
}

impl<F: Future> Timed for F {}

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
