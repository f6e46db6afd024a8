//! The generic target: for any CRM callsync does not support natively, POST
//! the canonical call report as JSON to `CALLSYNC_WEBHOOK_URL`, signed the
//! Standard Webhooks way.
//!
//! One request carries everything (caller, summary, analysis,
//! `follow_up_needed`), so there are no contact, update or follow-up
//! requests. `webhook-id` is the call's marker, stable across every attempt:
//! a receiver de-duplicates on it, which is why a delivery whose outcome is
//! unknown is simply sent again. 2xx is done; 429 and 5xx are retried; any
//! other answer parks the report.
//!
//! Body: `{"type":"call.report","timestamp":"<RFC 3339>","data":<CallReport>}`.

use std::time::Duration;

use async_trait::async_trait;
use callsync_shared::CallReport;
use callsync_shared::config::{ConfigError, Secret};
use callsync_shared::signature::sign_standard_webhook;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::answer::no_refusal;
use super::{
    Adapter, ContactLookup, Created, Crm, CrmError, CrmHttp, CrmId, CrmSpec, MarkedRecord,
    NewContact, Shared, Vars, configure,
};

/// `CALLSYNC_WEBHOOK_*`.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: String,
    /// `whsec_<base64>` as Standard Webhooks issues them, or any string.
    pub secret: Secret,
}

/// How `CALLSYNC_CRM=webhook` is read and built.
pub const SPEC: CrmSpec = CrmSpec {
    name: "webhook",
    // The receiver is the operator's own; it sets any limit it needs.
    default_rate: "off",
    // Nothing is searched.
    default_search_rate: "off",
    // The webhook target is "searched" by sending again.
    default_index_lag: Duration::ZERO,
    configure: configure::<Webhook>,
    read_refusal: no_refusal,
    credential_help: "the target refused callsync's requests: check CALLSYNC_WEBHOOK_URL \
        and that the receiver verifies with the same CALLSYNC_WEBHOOK_SECRET",
    maps_fields: super::Mapped::No,
    writes_deals: false,
};

#[derive(Debug)]
pub struct Webhook {
    config: WebhookConfig,
    http: CrmHttp,
}

impl Adapter for Webhook {
    type Settings = WebhookConfig;

    fn settings(vars: Vars<'_>) -> Result<WebhookConfig, ConfigError> {
        let url = vars.required("URL")?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            let message = format!("expected an http:// or https:// URL, got {url:?}");
            return Err(vars.error("URL", message));
        }
        Ok(WebhookConfig {
            url,
            secret: vars.secret("SECRET")?,
        })
    }

    fn new(config: WebhookConfig, http: CrmHttp, _shared: &Shared) -> Self {
        Self { config, http }
    }
}

/// The body of a delivery.
#[derive(Serialize)]
struct Event<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    /// When it was sent (RFC 3339).
    timestamp: String,
    data: &'a CallReport,
}

/// What a follow-up "is" for a target that receives the whole report.
const IN_REPORT: &str = "in-report";

#[async_trait]
impl Crm for Webhook {
    fn name(&self) -> &'static str {
        SPEC.name
    }

    fn manages_contacts(&self) -> bool {
        false
    }

    /// A `HEAD` of the target URL: proves it answers (any status below 500;
    /// a receiver that takes only POST answers 405) without sending a
    /// report. It cannot prove the signing secret: a worker paused because
    /// the target refused its signature resumes after one probe and pauses
    /// again while the secret is still wrong.
    async fn probe(&self) -> Result<(), CrmError> {
        let accept = [
            StatusCode::NOT_FOUND,
            StatusCode::METHOD_NOT_ALLOWED,
            StatusCode::BAD_REQUEST,
        ];
        self.http
            .send("probe", self.http.client().head(&self.config.url), &accept)
            .await
            .map(drop)
    }

    async fn prepare(&self) -> Result<(), CrmError> {
        Ok(())
    }

    async fn contact_exists(&self, _id: &str) -> Result<bool, CrmError> {
        Ok(false)
    }

    async fn find_contact(&self, _lookup: &ContactLookup) -> Result<Option<CrmId>, CrmError> {
        Ok(None)
    }

    async fn create_contact(&self, _contact: &NewContact<'_>) -> Result<Created, CrmError> {
        Err(CrmError::Rejected {
            status: 400,
            detail: "the webhook target has no contacts".to_owned(),
        })
    }

    async fn record_call(&self, _contact: &str, report: &CallReport) -> Result<CrmId, CrmError> {
        let id = report.marker();
        let now = OffsetDateTime::now_utc();
        let event = Event {
            kind: "call.report",
            timestamp: now.format(&Rfc3339).unwrap_or_default(),
            data: report,
        };
        let body = serde_json::to_vec(&event)
            .map_err(|e| CrmError::Request(format!("cannot encode the report: {e}")))?;
        let timestamp = now.unix_timestamp();
        let signature = sign_standard_webhook(self.config.secret.expose(), &id, timestamp, &body);
        let request = self
            .http
            .client()
            .request(Method::POST, &self.config.url)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body);
        self.http.perform("deliver", request).await?;
        Ok(id)
    }

    async fn update_contact(&self, _contact: &str, _report: &CallReport) -> Result<(), CrmError> {
        Ok(())
    }

    async fn create_follow_up(
        &self,
        _contact: &str,
        _report: &CallReport,
        _due: OffsetDateTime,
    ) -> Result<CrmId, CrmError> {
        // `follow_up_needed` travelled in the report; the receiver acts on it.
        Ok(IN_REPORT.to_owned())
    }

    async fn find_marked(
        &self,
        _kind: MarkedRecord,
        _contact: &str,
        _marker: &str,
    ) -> Result<Option<CrmId>, CrmError> {
        // Receivers de-duplicate on webhook-id: sending again is the search.
        Ok(None)
    }
}
