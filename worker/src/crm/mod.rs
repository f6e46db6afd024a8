//! The CRM boundary: one trait, one file per CRM.
//!
//! The sync engine (`sync.rs`) only speaks this trait. A CRM adapter maps
//! each operation onto its vendor's API and classifies every failure once,
//! as [`CrmError`], so that the retry policy never has to read status codes.
//! Adding a CRM is one new file here, declaring its [`CrmSpec`] and
//! implementing [`Adapter`] (its settings, read from variables named after
//! it), plus its line in [`REGISTRY`].

pub(crate) mod answer;
pub mod gohighlevel;
pub mod health;
pub(crate) mod http;
pub mod hubspot;
pub mod limiter;
pub mod oauth;
pub mod pipedrive;
pub mod render;
pub mod salesforce;
pub mod settings;
pub mod webhook;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use callsync_shared::phone::matching::CallerNumber;
use callsync_shared::{CallReport, Phone};
use time::OffsetDateTime;

pub use answer::Refusal;
pub use health::CrmHealth;
pub use http::{CrmHttp, Operation};
pub use limiter::{Budgets, Limiter, Rate, RequestKind, Share, SharedWindow};
pub use settings::{
    Adapter, Configure, CrmBuildError, CrmConfig, CrmSettings, DEFAULT_TIMEOUT, HttpSettings, Vars,
    configure,
};

/// What every CRM request of this worker shares: the request budgets it
/// draws on and the CRM's health it reports to.
#[derive(Debug, Clone)]
pub struct Shared {
    pub budgets: Arc<Budgets>,
    pub health: Arc<CrmHealth>,
    /// The ledger's pool, where rotated OAuth refresh tokens are kept
    /// (absent in unit tests, which rotate nothing).
    pub ledger: Option<sqlx::PgPool>,
    /// `CALLSYNC_MAPPING`, for an adapter that writes it (set by
    /// [`CrmConfig::build`] from the configuration).
    pub mapping: Option<Arc<crate::mapping::Mapping>>,
}

impl Shared {
    /// Where `crm`'s rotated refresh tokens are kept, if there is a ledger.
    pub fn refresh_tokens(&self, crm: &'static str) -> Option<oauth::RefreshTokenStore> {
        self.ledger
            .clone()
            .map(|pool| oauth::RefreshTokenStore::new(pool, crm))
    }
}

/// A CRM's id of a record (contact, call, task).
pub type CrmId = String;

tokio::task_local! {
    /// The latest moment a create may still be sent. The sync engine sets it
    /// right after extending the lease; a rate-limit wait that would end
    /// later gives up unsent, so no request ever starts outside its lease.
    pub static SEND_DEADLINE: tokio::time::Instant;
}

/// A contact `create_contact` produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub id: CrmId,
    /// False when the CRM answered with an existing contact (HubSpot's 409
    /// on a known e-mail) that did not get this call's last-call fields.
    pub has_last_call: bool,
}

/// How to look a caller up.
///
/// By phone, each CRM runs one broad search (the national significant
/// number, whatever the stored format) and every hit is verified with
/// [`CallerNumber::is`]: only a record holding the same number counts, and
/// [`choose`](callsync_shared::phone::matching::choose) picks among several. A number that could not be
/// normalised is searched as typed and must be stored exactly so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactLookup {
    /// E.164 when the number could be normalised, else the raw text.
    pub phone: Option<String>,
    /// The caller's number, parsed, when it could be normalised.
    pub caller: Option<CallerNumber>,
    /// Trimmed and lower-cased: every CRM compares e-mails case-insensitively.
    pub email: Option<String>,
}

impl ContactLookup {
    pub fn new(phone: Option<&Phone>, email: Option<&str>) -> Self {
        Self {
            phone: phone.map(|p| p.best().to_owned()),
            caller: phone.and_then(CallerNumber::from_phone),
            email: email
                .map(|e| e.trim().to_lowercase())
                .filter(|e| !e.is_empty()),
        }
    }
}

/// A contact to create.
#[derive(Debug, Clone)]
pub struct NewContact<'a> {
    pub report: &'a CallReport,
}

/// A deal to create: a `[[deal]]` rule's, for a call on its contact.
#[derive(Debug, Clone, Copy)]
pub struct NewDeal<'a> {
    pub contact: &'a str,
    pub report: &'a CallReport,
    pub rule: &'a crate::mapping::DealRule,
}

/// The kinds of record created per call that carry the call's marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkedRecord {
    CallLog,
    FollowUp,
    /// The deal of the `[[deal]]` rule of this index.
    Deal(usize),
}

impl MarkedRecord {
    /// The marker a record of this kind of `report` carries: the call's
    /// own, and for a deal the call's with its rule (one call may have a
    /// deal per rule).
    pub fn marker(self, report: &CallReport) -> String {
        match self {
            MarkedRecord::CallLog | MarkedRecord::FollowUp => report.marker(),
            MarkedRecord::Deal(index) => crate::mapping::deal::marker(report, index),
        }
    }
}

/// One permission an adapter needs, and whether the credential holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    /// The vendor's name for it (a HubSpot scope).
    pub name: &'static str,
    /// What callsync uses it for.
    pub needed_for: &'static str,
    pub granted: bool,
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
    /// 401, or a 403 naming a missing scope: the credential is wrong,
    /// revoked or too narrow. Every call would get the same answer, so the
    /// worker pauses until an operator fixes it (see `lifecycle.rs`).
    #[error("CRM refused the credentials ({status}): {detail}")]
    Unauthorized { status: u16, detail: String },
    /// Any other 403: this request is not allowed (a record the integration
    /// user may not see or change). Permanent for this call only.
    #[error("CRM refused this request (403): {detail}")]
    Forbidden { detail: String },
    /// Another 4xx: the request itself is wrong for this CRM; permanent.
    #[error("CRM rejected the request ({status}): {detail}")]
    Rejected { status: u16, detail: String },
    /// The CRM's set-up is incomplete: the credential lacks the scope one
    /// endpoint needs (the credential itself is accepted), or a custom
    /// field callsync writes does not exist. Every call would get the same
    /// answer, so the worker pauses until an operator completes the set-up.
    #[error("the CRM's set-up is incomplete: {detail}")]
    Setup { detail: String },
    /// A 2xx whose body is not what the API documents. The request was
    /// applied (or may have been), so a create must be searched for. A
    /// vendor that changes a shape, or one whose documentation shows a
    /// shape it does not always send, must not cost the call: it is retried
    /// like an outage, and counted (see `http.rs`).
    #[error("unexpected CRM response: {0}")]
    InvalidResponse(String),
    /// The request could not be built; nothing was sent. Permanent.
    #[error("cannot build the CRM request: {0}")]
    Request(String),
}

impl CrmError {
    /// An id that cannot be one of the CRM's (`kind`: "a Salesforce id"):
    /// the request is never sent.
    pub fn not_an_id(id: &str, kind: &str) -> Self {
        CrmError::Rejected {
            status: 400,
            detail: format!("{id:?} is not {kind}"),
        }
    }

    /// Transient errors are retried; permanent ones park the message.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            CrmError::RateLimited { .. }
                | CrmError::Unavailable { .. }
                | CrmError::InvalidResponse(_)
        )
    }

    pub fn applied(&self) -> Applied {
        match self {
            CrmError::Unavailable { applied, .. } => *applied,
            CrmError::InvalidResponse(_) => Applied::Unknown,
            _ => Applied::No,
        }
    }

    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            CrmError::RateLimited { .. } => "rate_limited",
            CrmError::Unavailable { .. } => "unavailable",
            CrmError::Unauthorized { .. } => "unauthorized",
            CrmError::Forbidden { .. } => "forbidden",
            CrmError::Setup { .. } => "setup",
            CrmError::Rejected { .. } => "rejected",
            CrmError::InvalidResponse(_) => "invalid_response",
            CrmError::Request(_) => "request",
        }
    }
}

/// What the sync engine needs from a CRM.
#[async_trait]
pub trait Crm: Send + Sync + fmt::Debug {
    /// The value of `CALLSYNC_CRM` that selects this adapter.
    fn name(&self) -> &'static str;

    /// One cheap authenticated read: proves the credential works and the
    /// CRM answers. A paused worker sends it to learn that it may resume;
    /// `callsync-worker check` reports it as the credential's line.
    async fn probe(&self) -> Result<(), CrmError>;

    /// The permissions the adapter needs, as far as the CRM can say which
    /// the credential holds (HubSpot lists a token's scopes); empty when
    /// it cannot, and the other checks prove them by use.
    async fn permissions(&self) -> Result<Vec<Permission>, CrmError> {
        Ok(Vec::new())
    }

    /// One-time, idempotent set-up (e.g. custom properties). Called before
    /// the first sync of each process; a failure is retried with the message.
    async fn prepare(&self) -> Result<(), CrmError>;

    /// Whether a contact id (a hint from the provider) exists.
    async fn contact_exists(&self, id: &str) -> Result<bool, CrmError>;

    /// The oldest contact matching the phone number, else the e-mail.
    async fn find_contact(&self, lookup: &ContactLookup) -> Result<Option<CrmId>, CrmError>;

    /// Creates a contact with the caller's details and, so that a new
    /// contact needs no separate update, the last-call fields of `report`.
    async fn create_contact(&self, contact: &NewContact<'_>) -> Result<Created, CrmError>;

    /// Records the call on the contact, carrying the call's marker.
    async fn record_call(&self, contact: &str, report: &CallReport) -> Result<CrmId, CrmError>;

    /// Sets the contact's last-call fields from `report`. Idempotent.
    async fn update_contact(&self, contact: &str, report: &CallReport) -> Result<(), CrmError>;

    /// Whether a call older than the contact's newest still writes to the
    /// contact: the mapping has `if_empty` or `append` rules, which every
    /// call writes, while `overwrite` and the last-call fields follow the
    /// newest call only.
    fn writes_every_call(&self) -> bool {
        false
    }

    /// The contact fields an older call writes (see
    /// [`Crm::writes_every_call`]). Run, like `update_contact`, under the
    /// contact's write lease, and safe to repeat.
    async fn update_older(&self, _contact: &str, _report: &CallReport) -> Result<(), CrmError> {
        Ok(())
    }

    /// Creates the follow-up task due at `due`, carrying the call's marker.
    async fn create_follow_up(
        &self,
        contact: &str,
        report: &CallReport,
        due: OffsetDateTime,
    ) -> Result<CrmId, CrmError>;

    /// Creates the deal of `deal.rule` for the call on `deal.contact`, in
    /// the rule's pipeline and stage, carrying the rule's marker of the
    /// call ([`MarkedRecord::marker`]) where [`Crm::find_marked`] finds it.
    async fn create_deal(&self, _deal: &NewDeal<'_>) -> Result<CrmId, CrmError> {
        Err(CrmError::Request(format!(
            "{} does not create deals",
            self.name()
        )))
    }

    /// The record of `kind` carrying `marker` on `contact`, if the CRM has one.
    async fn find_marked(
        &self,
        kind: MarkedRecord,
        contact: &str,
        marker: &str,
    ) -> Result<Option<CrmId>, CrmError>;

    /// False for targets without contacts (the generic webhook): the
    /// contact steps are skipped and `contact` arguments are empty.
    fn manages_contacts(&self) -> bool {
        true
    }
}

/// A CRM callsync can sync to: its `CALLSYNC_CRM` name, its defaults, and
/// how to read its settings. Every list of CRMs (the values `CALLSYNC_CRM`
/// accepts, the start-up error for an unknown one, the test suites) is
/// derived from [`REGISTRY`].
#[derive(Debug)]
pub struct CrmSpec {
    /// The value of `CALLSYNC_CRM` that selects it.
    pub name: &'static str,
    /// `CALLSYNC_CRM_RATE` when unset: the vendor's lowest documented tier.
    pub default_rate: &'static str,
    /// `CALLSYNC_CRM_SEARCH_RATE` when unset: the vendor's documented limit
    /// on search requests, or `off` when it documents none beyond the
    /// general one.
    pub default_search_rate: &'static str,
    /// `CALLSYNC_CRM_INDEX_LAG` when unset: how long its search may take to
    /// show a new record.
    pub default_index_lag: Duration,
    /// Reads the CRM's own variables: `configure::<Adapter>`.
    pub configure: Configure,
    /// What its 403 bodies say beyond "not this record".
    pub read_refusal: answer::ReadRefusal,
    /// What an operator should check when the CRM refuses the credential:
    /// the variables and, where the vendor has them, the scopes.
    pub credential_help: &'static str,
    /// Which of `CALLSYNC_MAPPING`'s rules its adapter writes; a mapping
    /// it cannot write is refused at start-up, never ignored.
    pub maps_fields: Mapped,
    /// Whether its adapter creates the deals of `[[deal]]` rules.
    pub writes_deals: bool,
}

/// Which mapping rules a CRM's adapter writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapped {
    No,
    /// `[[contact]]` rules only; the text says why not `[[call]]` ones.
    ContactOnly(&'static str),
    /// `[[contact]]` and `[[call]]` rules.
    Full,
}

/// Every supported CRM. Adding one is its adapter file (with its `SPEC`
/// and its [`Adapter`] implementation) and a line here.
pub const REGISTRY: &[CrmSpec] = &[
    hubspot::SPEC,
    pipedrive::SPEC,
    gohighlevel::SPEC,
    salesforce::SPEC,
    webhook::SPEC,
];

/// The values `CALLSYNC_CRM` accepts, in registry order.
pub fn supported() -> impl Iterator<Item = &'static str> {
    REGISTRY.iter().map(|spec| spec.name)
}

/// The registered CRM called `name` (case-insensitive).
pub fn spec(name: &str) -> Option<&'static CrmSpec> {
    REGISTRY
        .iter()
        .find(|spec| spec.name.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registered_crm_has_a_unique_name_and_defaults_that_parse() {
        let mut names: Vec<_> = supported().collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), REGISTRY.len(), "duplicate CRM names");
        for spec in REGISTRY {
            for rate in [spec.default_rate, spec.default_search_rate] {
                assert!(
                    rate == "off" || rate.parse::<Rate>().is_ok(),
                    "{}: {rate}",
                    spec.name
                );
            }
        }
    }

    #[test]
    fn a_crm_is_chosen_case_insensitively() {
        assert_eq!(spec("HubSpot").map(|s| s.name), Some("hubspot"));
        assert!(spec("zoho").is_none());
    }
}
