//! The CRM boundary: one trait, one file per CRM.
//!
//! The sync engine (`sync.rs`) only speaks this trait. A CRM adapter maps
//! each operation onto its vendor's API and classifies every failure once,
//! as [`CrmError`], so that the retry policy never has to read status codes.
//! Adding a CRM is one new file here plus one arm in [`CrmConfig`].

mod http;
pub mod hubspot;
pub mod limiter;
pub mod render;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use callsync_shared::CallReport;
use callsync_shared::config::{ConfigError, Env};
use time::OffsetDateTime;

pub use http::CrmHttp;
pub use limiter::{Limiter, Rate};

/// A CRM's id of a record (contact, call, task).
pub type CrmId = String;

/// How to look a caller up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactLookup {
    /// E.164 when the number could be normalised, else the raw text.
    pub phone: Option<String>,
    pub email: Option<String>,
}

/// A contact to create.
#[derive(Debug, Clone)]
pub struct NewContact<'a> {
    pub report: &'a CallReport,
}

/// The kinds of record created per call that carry the call's marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkedRecord {
    CallLog,
    FollowUp,
}

/// Whether a failed request may have been applied by the CRM anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The CRM certainly did not apply it (refused, rate-limited, never sent).
    No,
    /// The request was sent and no clear answer came back (timeout, reset,
    /// 5xx): before repeating a create, search for what it may have created.
    Unknown,
}

/// A CRM failure, classified once.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CrmError {
    /// 429: wait `retry_after` (when given) before the next request.
    #[error("rate limited by the CRM{}", retry_after.map(|d| format!(" (retry after {d:?})")).unwrap_or_default())]
    RateLimited { retry_after: Option<Duration> },
    /// Network trouble or a 5xx: worth retrying.
    #[error("CRM unavailable: {detail}")]
    Unavailable { detail: String, applied: Applied },
    /// 401/403: the credentials are wrong or lack a scope. Retrying will not
    /// help until an operator fixes the configuration.
    #[error("CRM refused the credentials ({status}): {detail}")]
    Unauthorized { status: u16, detail: String },
    /// Another 4xx: the request itself is wrong for this CRM; permanent.
    #[error("CRM rejected the request ({status}): {detail}")]
    Rejected { status: u16, detail: String },
    /// A 2xx whose body is not what the API documents.
    #[error("unexpected CRM response: {0}")]
    InvalidResponse(String),
}

impl CrmError {
    /// Transient errors are retried; permanent ones park the message.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            CrmError::RateLimited { .. } | CrmError::Unavailable { .. }
        )
    }

    pub fn applied(&self) -> Applied {
        match self {
            CrmError::Unavailable { applied, .. } => *applied,
            _ => Applied::No,
        }
    }

    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            CrmError::RateLimited { .. } => "rate_limited",
            CrmError::Unavailable { .. } => "unavailable",
            CrmError::Unauthorized { .. } => "unauthorized",
            CrmError::Rejected { .. } => "rejected",
            CrmError::InvalidResponse(_) => "invalid_response",
        }
    }
}

/// What the sync engine needs from a CRM.
#[async_trait]
pub trait Crm: Send + Sync + fmt::Debug {
    /// The value of `CALLSYNC_CRM` that selects this adapter.
    fn name(&self) -> &'static str;

    /// One-time, idempotent set-up (e.g. custom properties). Called before
    /// the first sync of each process; a failure is retried with the message.
    async fn prepare(&self) -> Result<(), CrmError>;

    /// Whether a contact id (a hint from the provider) exists.
    async fn contact_exists(&self, id: &str) -> Result<bool, CrmError>;

    /// The oldest contact matching the phone number, else the e-mail.
    async fn find_contact(&self, lookup: &ContactLookup) -> Result<Option<CrmId>, CrmError>;

    /// Creates a contact with the caller's details and, so that a new
    /// contact needs no separate update, the last-call fields of `report`.
    async fn create_contact(&self, contact: &NewContact<'_>) -> Result<CrmId, CrmError>;

    /// Records the call on the contact, carrying the call's marker.
    async fn record_call(&self, contact: &str, report: &CallReport) -> Result<CrmId, CrmError>;

    /// Sets the contact's last-call fields from `report`. Idempotent.
    async fn update_contact(&self, contact: &str, report: &CallReport) -> Result<(), CrmError>;

    /// Creates the follow-up task due at `due`, carrying the call's marker.
    async fn create_follow_up(
        &self,
        contact: &str,
        report: &CallReport,
        due: OffsetDateTime,
    ) -> Result<CrmId, CrmError>;

    /// The record of `kind` carrying `marker`, if the CRM has one.
    async fn find_marked(
        &self,
        kind: MarkedRecord,
        marker: &str,
    ) -> Result<Option<CrmId>, CrmError>;
}

/// Which CRM to sync to, with its settings.
#[derive(Debug, Clone)]
pub enum CrmConfig {
    Hubspot(hubspot::HubspotConfig),
}

/// The request timeout used when `CALLSYNC_CRM_TIMEOUT` is not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings every CRM client shares.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub timeout: Duration,
    /// The account-wide request budget (`CALLSYNC_CRM_RATE`), divided among
    /// the live workers; `None` disables client-side limiting.
    pub rate: Option<Rate>,
}

impl HttpSettings {
    fn from_env(env: &Env, default_rate: &str) -> Result<Self, ConfigError> {
        let rate = match env.string("CALLSYNC_CRM_RATE", default_rate).as_str() {
            "off" | "none" => None,
            text => Some(text.parse::<Rate>().map_err(|message| ConfigError {
                var: "CALLSYNC_CRM_RATE".to_owned(),
                message,
            })?),
        };
        Ok(Self {
            timeout: env.duration("CALLSYNC_CRM_TIMEOUT", DEFAULT_TIMEOUT)?,
            rate,
        })
    }
}

impl CrmConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let name = env.required("CALLSYNC_CRM")?;
        match name.to_ascii_lowercase().as_str() {
            // HubSpot's lowest tier allows 100 requests per 10 s per app.
            "hubspot" => Ok(CrmConfig::Hubspot(hubspot::HubspotConfig::from_env(
                env,
                HttpSettings::from_env(env, "100/10s")?,
            )?)),
            other => Err(ConfigError {
                var: "CALLSYNC_CRM".to_owned(),
                message: format!("{other:?} is not a supported CRM; supported: hubspot"),
            }),
        }
    }

    pub fn http(&self) -> &HttpSettings {
        match self {
            CrmConfig::Hubspot(c) => &c.http,
        }
    }

    pub fn timeout(&self) -> Duration {
        self.http().timeout
    }

    /// How long this CRM's search may take to show a new record.
    pub fn default_index_lag(&self) -> Duration {
        match self {
            // HubSpot documents seconds and 10–60 s are seen in practice.
            CrmConfig::Hubspot(_) => Duration::from_secs(60),
        }
    }

    /// Builds the adapter; its requests go through `limiter`.
    pub fn build(&self, limiter: Arc<Limiter>) -> Result<Arc<dyn Crm>, CrmBuildError> {
        match self {
            CrmConfig::Hubspot(c) => Ok(Arc::new(hubspot::Hubspot::new(c.clone(), limiter)?)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot build the CRM HTTP client: {0}")]
pub struct CrmBuildError(#[from] reqwest::Error);
