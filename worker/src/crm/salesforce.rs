//! Salesforce (REST API).
//!
//! | step | request |
//! |---|---|
//! | find contact | SOSL `FIND {<national number>} IN PHONE FIELDS RETURNING Contact(…phones, country, LastModifiedDate), Lead(…)`, hits verified locally; then the e-mail in EMAIL FIELDS |
//! | create contact | `POST /sobjects/Contact` |
//! | record call | upsert `Task` by the External ID field `Callsync_Marker__c` (`TaskSubtype = Call`, completed) |
//! | update contact | `PATCH /sobjects/{Contact,Lead}/{id}` (`Callsync_Last_*__c`) |
//! | follow-up | upsert `Task` by `Callsync_Marker__c` = `<marker>:follow-up`, with `ActivityDate` |
//! | find by marker | `GET /sobjects/Task/Callsync_Marker__c/{marker}` |
//!
//! Upserting by an External ID makes the call and the follow-up idempotent
//! in Salesforce itself. The fields must be created once by an admin
//! (README lists them). Salesforce signals its API limit with 403
//! `REQUEST_LIMIT_EXCEEDED`, which is treated as a rate limit.
//!
//! Sessions expire, so besides a fixed access token the adapter accepts a
//! connected app's client credentials (and optionally a refresh token) and
//! renews the token itself when Salesforce answers 401 (see `oauth.rs`).

use std::time::Duration;

use async_trait::async_trait;
use callsync_shared::config::ConfigError;
use callsync_shared::phone::matching::{Candidate, PhoneField, choose, parse_updated};
use callsync_shared::{CallReport, Direction, Outcome};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

use super::oauth::{Credentials, Grant, OAuthClient};
use super::render;
use super::{
    Adapter, ContactLookup, Created, Crm, CrmError, CrmHttp, CrmId, CrmSpec, MarkedRecord,
    NewContact, Operation, Refusal, Shared, Vars, configure,
};

/// `CALLSYNC_SALESFORCE_*`.
#[derive(Debug, Clone)]
pub struct SalesforceConfig {
    /// A fixed access token, or a connected app's client that fetches them.
    pub credentials: Credentials,
    /// e.g. `https://acme.my.salesforce.com`.
    pub instance_url: String,
    pub api_version: String,
}

/// How `CALLSYNC_CRM=salesforce` is read and built.
pub const SPEC: CrmSpec = CrmSpec {
    name: "salesforce",
    // Salesforce counts per 24 h; keep bursts modest all the same.
    default_rate: "100/10s",
    // SOSL searches count against the daily API allocation like any
    // request; no separate per-second search limit is documented.
    default_search_rate: "off",
    // Tasks are upserted and read by External ID (immediate), but contacts
    // are found through SOSL, whose index is asynchronous.
    default_index_lag: Duration::from_secs(30),
    configure: configure::<Salesforce>,
    read_refusal,
    credential_help: "check CALLSYNC_SALESFORCE_CLIENT_ID, CALLSYNC_SALESFORCE_CLIENT_SECRET \
        and CALLSYNC_SALESFORCE_REFRESH_TOKEN (or CALLSYNC_SALESFORCE_ACCESS_TOKEN): the connected \
        app must allow the api and refresh_token scopes, and its user needs API Enabled",
};

/// Salesforce answers a list of `{errorCode, message}`. Its API limit is a
/// 403 `REQUEST_LIMIT_EXCEEDED`; `API_DISABLED_FOR_ORG` and
/// `API_CURRENTLY_DISABLED` mean the user or the org has no API access
/// (REST API developer guide, status codes).
fn read_refusal(body: &str) -> Option<Refusal> {
    #[derive(Deserialize)]
    struct Error {
        #[serde(rename = "errorCode", default)]
        error_code: String,
    }
    let errors: Vec<Error> = serde_json::from_str(body).ok()?;
    errors.iter().find_map(|e| match e.error_code.as_str() {
        "REQUEST_LIMIT_EXCEEDED" => Some(Refusal::RateLimited),
        "API_DISABLED_FOR_ORG" | "API_CURRENTLY_DISABLED" => Some(Refusal::Credential),
        _ => None,
    })
}

impl Adapter for Salesforce {
    type Settings = SalesforceConfig;

    fn settings(vars: Vars<'_>) -> Result<SalesforceConfig, ConfigError> {
        let token = vars.optional_secret("ACCESS_TOKEN");
        let client_id = vars.raw("CLIENT_ID");
        if token.is_none() && client_id.is_none() {
            // Name the simplest way out; the README gives the other.
            let message = format!(
                "is required but not set (or set {} and {} to let the worker fetch tokens)",
                vars.name("CLIENT_ID"),
                vars.name("CLIENT_SECRET")
            );
            return Err(vars.error("ACCESS_TOKEN", message));
        }
        let instance_url = vars.required_url("INSTANCE_URL")?;
        let oauth = match client_id {
            None => None,
            Some(client_id) => Some(OAuthClient {
                token_url: format!(
                    "{}/services/oauth2/token",
                    vars.url("LOGIN_URL", &instance_url)
                ),
                client_id: client_id.to_owned(),
                client_secret: vars.secret("CLIENT_SECRET")?,
                grant: match vars.optional_secret("REFRESH_TOKEN") {
                    Some(token) => Grant::RefreshToken(token),
                    None => Grant::ClientCredentials,
                },
                extra_form: &[],
            }),
        };
        Ok(SalesforceConfig {
            credentials: Credentials { token, oauth },
            instance_url,
            api_version: vars.string("API_VERSION", "v60.0"),
        })
    }

    fn new(config: SalesforceConfig, http: CrmHttp, shared: &Shared) -> Self {
        Self {
            http: http.authorized(&config.credentials, shared),
            config,
        }
    }
}

/// The External ID field on Task that makes upserts idempotent.
const MARKER_FIELD: &str = "Callsync_Marker__c";

#[derive(Debug)]
pub struct Salesforce {
    config: SalesforceConfig,
    /// Requests carry the session token, renewed on a 401.
    http: CrmHttp,
}

#[derive(Deserialize)]
struct SearchResult {
    #[serde(rename = "searchRecords", default)]
    search_records: Vec<SearchRecord>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SearchRecord {
    id: String,
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    mobile_phone: Option<String>,
    #[serde(default)]
    home_phone: Option<String>,
    #[serde(default)]
    other_phone: Option<String>,
    /// A Contact's country.
    #[serde(default)]
    mailing_country: Option<String>,
    /// A Lead's country.
    #[serde(default)]
    country: Option<String>,
    #[serde(default)]
    last_modified_date: Option<String>,
}

impl SearchRecord {
    fn candidate(&self) -> Candidate {
        let phones = [
            (PhoneField::Main, &self.phone),
            (PhoneField::Mobile, &self.mobile_phone),
            (PhoneField::Other, &self.home_phone),
            (PhoneField::Other, &self.other_phone),
        ]
        .into_iter()
        .filter_map(|(field, value)| Some((field, value.clone()?)))
        .collect();
        Candidate {
            id: self.id.clone(),
            phones,
            country: self
                .mailing_country
                .clone()
                .or_else(|| self.country.clone()),
            updated: self.last_modified_date.as_deref().and_then(parse_updated),
        }
    }
}

/// SOSL over every phone field for the national significant number, digits
/// only (`+` and `-` are reserved in SOSL). The search tokenises stored
/// numbers, so it finds them whatever their punctuation; hits are verified
/// locally. https://developer.salesforce.com/docs/atlas.en-us.soql_sosl.meta/soql_sosl/sforce_api_calls_sosl_find.htm
fn phone_search(nsn: &str) -> String {
    let digits: String = nsn.chars().filter(char::is_ascii_digit).collect();
    format!(
        "FIND {{{digits}}} IN PHONE FIELDS RETURNING \
         Contact(Id, Phone, MobilePhone, HomePhone, OtherPhone, MailingCountry, LastModifiedDate ORDER BY LastModifiedDate DESC), \
         Lead(Id, Phone, MobilePhone, Country, LastModifiedDate ORDER BY LastModifiedDate DESC)"
    )
}

#[derive(Deserialize)]
struct Saved {
    id: String,
}

#[derive(Deserialize)]
struct Fetched {
    #[serde(rename = "Id")]
    id: String,
}

impl Salesforce {
    /// A request without credentials: [`CrmHttp`] adds the token.
    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.client().request(
            method,
            format!(
                "{}/services/data/{}{path}",
                self.config.instance_url, self.config.api_version
            ),
        )
    }

    async fn sosl(&self, query: String) -> Result<Option<CrmId>, CrmError> {
        Ok(self
            .sosl_records(query)
            .await?
            .into_iter()
            .next()
            .map(|r| r.id))
    }

    async fn sosl_records(&self, query: String) -> Result<Vec<SearchRecord>, CrmError> {
        let result: SearchResult = self
            .http
            .json(
                Operation::search("search"),
                self.request(Method::GET, "/search/").query(&[("q", query)]),
            )
            .await?;
        Ok(result.search_records)
    }

    /// Creates or finds the Task with external id `external`.
    async fn upsert_task(
        &self,
        operation: &'static str,
        external: &str,
        body: &(impl Serialize + Sync),
    ) -> Result<CrmId, CrmError> {
        let path = format!("/sobjects/Task/{MARKER_FIELD}/{}", encode(external));
        let response = self
            .http
            .send(
                operation,
                self.request(Method::PATCH, &path).json(body),
                &[],
            )
            .await?;
        if response.status() == StatusCode::NO_CONTENT {
            // Older API versions answer an update with no body: read the id.
            return self
                .task_by_marker(external)
                .await?
                .ok_or_else(|| CrmError::InvalidResponse("upserted Task not found".to_owned()));
        }
        let saved: Saved = super::http::decode(response).await?;
        Ok(saved.id)
    }

    async fn task_by_marker(&self, external: &str) -> Result<Option<CrmId>, CrmError> {
        let path = format!("/sobjects/Task/{MARKER_FIELD}/{}", encode(external));
        let response = self
            .http
            .send(
                "get_task",
                self.request(Method::GET, &path),
                &[StatusCode::NOT_FOUND],
            )
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let fetched: Fetched = super::http::decode(response).await?;
        Ok(Some(fetched.id))
    }
}

/// Percent-encodes a path segment.
fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Escapes SOSL's reserved characters in a search term.
fn sosl_escape(term: &str) -> String {
    let mut out = String::with_capacity(term.len());
    for c in term.chars() {
        if "?&|!{}[]()^~*:\\\"'+-".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Contact ids start with 003, lead ids with 00Q.
fn sobject(id: &str) -> &'static str {
    if id.starts_with("00Q") {
        "Lead"
    } else {
        "Contact"
    }
}

fn safe_id(id: &str) -> Result<&str, CrmError> {
    if (15..=18).contains(&id.len()) && id.chars().all(|c| c.is_ascii_alphanumeric()) {
        Ok(id)
    } else {
        Err(CrmError::not_an_id(id, "a Salesforce id"))
    }
}

/// A Contact's or Lead's last-call fields (custom, created by an admin).
#[derive(Serialize)]
struct LastCall {
    #[serde(rename = "Callsync_Last_Call_At__c")]
    at: String,
    #[serde(rename = "Callsync_Last_Call_Summary__c")]
    summary: String,
    #[serde(rename = "Callsync_Last_Sentiment__c")]
    sentiment: String,
}

impl LastCall {
    fn of(report: &CallReport) -> Self {
        Self {
            at: report.ended_at.format(&Rfc3339).unwrap_or_default(),
            summary: render::field_summary(report),
            sentiment: report.sentiment.clone().unwrap_or_default(),
        }
    }
}

/// `POST /sobjects/Contact`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct NewContactRecord<'a> {
    #[serde(flatten)]
    last_call: LastCall,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_name: Option<String>,
    last_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
}

/// The completed Task that records a call.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct CallTask<'a> {
    who_id: &'a str,
    subject: String,
    description: String,
    task_subtype: &'static str,
    call_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    call_disposition: Option<&'static str>,
    status: &'static str,
    activity_date: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    call_duration_in_seconds: Option<u64>,
}

/// The open Task that asks for a follow-up.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct FollowUpTask<'a> {
    who_id: &'a str,
    subject: String,
    description: String,
    status: &'static str,
    priority: &'static str,
    activity_date: String,
}

/// A Task subject: Salesforce's limit is 255 characters.
fn subject(text: String) -> String {
    text.chars().take(255).collect()
}

fn plain_text(report: &CallReport) -> String {
    let mut parts = Vec::new();
    if let Some(summary) = &report.summary {
        parts.push(summary.clone());
    }
    if let Some(sentiment) = &report.sentiment {
        parts.push(format!("Sentiment: {sentiment}"));
    }
    parts.extend(report.analysis.lines());
    if let Some(url) = &report.recording_url {
        parts.push(format!("Recording: {url}"));
    }
    parts.push(report.marker());
    parts.join("\n")
}

#[async_trait]
impl Crm for Salesforce {
    fn name(&self) -> &'static str {
        SPEC.name
    }

    /// Fetches the first token now (when the worker fetches its own), so
    /// wrong client credentials show up with the first call, not later.
    /// The API version's resource list: read-only, needs no permission
    /// beyond API access, and renews the session like any request.
    async fn probe(&self) -> Result<(), CrmError> {
        self.http
            .perform("probe", self.request(Method::GET, "/"))
            .await
    }

    async fn prepare(&self) -> Result<(), CrmError> {
        self.http.authenticate().await
    }

    async fn contact_exists(&self, id: &str) -> Result<bool, CrmError> {
        let Ok(id) = safe_id(id) else {
            return Ok(false);
        };
        let response = self
            .http
            .send(
                "get_contact",
                self.request(Method::GET, &format!("/sobjects/{}/{id}", sobject(id))),
                &[StatusCode::NOT_FOUND],
            )
            .await?;
        Ok(response.status().is_success())
    }

    async fn find_contact(&self, lookup: &ContactLookup) -> Result<Option<CrmId>, CrmError> {
        if let Some(caller) = &lookup.caller {
            let candidates: Vec<Candidate> = self
                .sosl_records(phone_search(caller.nsn()))
                .await?
                .iter()
                .map(SearchRecord::candidate)
                .collect();
            if let Some(found) = choose(caller, &candidates) {
                return Ok(Some(found.id.clone()));
            }
        } else if let Some(raw) = &lookup.phone {
            // Not a phone number callsync can parse: only the same digits count.
            let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
            if !digits.is_empty() {
                let query = format!(
                    "FIND {{{digits}}} IN PHONE FIELDS RETURNING Contact(Id, Phone), Lead(Id, Phone)"
                );
                let exact = self.sosl_records(query).await?.into_iter().find(|r| {
                    r.phone
                        .as_deref()
                        .is_some_and(|p| p.chars().filter(char::is_ascii_digit).eq(digits.chars()))
                });
                if let Some(record) = exact {
                    return Ok(Some(record.id));
                }
            }
        }
        match &lookup.email {
            Some(email) => {
                let query = format!(
                    "FIND {{{}}} IN EMAIL FIELDS RETURNING Contact(Id), Lead(Id)",
                    sosl_escape(email)
                );
                self.sosl(query).await
            }
            None => Ok(None),
        }
    }

    async fn create_contact(&self, contact: &NewContact<'_>) -> Result<Created, CrmError> {
        let caller = &contact.report.caller;
        // LastName is required: the caller's, else the number.
        let (first_name, last_name) = match caller.name.as_deref().map(render::split_name) {
            Some((first, Some(last))) => (Some(first), last),
            Some((only, None)) => (None, only),
            None => (None, caller.display_name()),
        };
        let body = NewContactRecord {
            last_call: LastCall::of(contact.report),
            first_name,
            last_name,
            phone: caller.phone.as_ref().map(|p| p.best()),
            email: caller.email.as_deref(),
        };
        let saved: Saved = self
            .http
            .json(
                "create_contact",
                self.request(Method::POST, "/sobjects/Contact").json(&body),
            )
            .await?;
        Ok(Created {
            id: saved.id,
            has_last_call: true,
        })
    }

    async fn record_call(&self, contact: &str, report: &CallReport) -> Result<CrmId, CrmError> {
        let task = CallTask {
            who_id: safe_id(contact)?,
            subject: subject(render::call_title(report)),
            description: plain_text(report),
            task_subtype: "Call",
            call_type: call_type(report.direction),
            call_disposition: report.outcome.map(Outcome::as_str),
            status: "Completed",
            activity_date: report
                .ended_at
                .format(format_description!("[year]-[month]-[day]"))
                .unwrap_or_default(),
            call_duration_in_seconds: report.duration.map(|d| d.as_secs()),
        };
        self.upsert_task("upsert_call_task", &report.marker(), &task)
            .await
    }

    async fn update_contact(&self, contact: &str, report: &CallReport) -> Result<(), CrmError> {
        let id = safe_id(contact)?;
        self.http
            .perform(
                "update_contact",
                self.request(Method::PATCH, &format!("/sobjects/{}/{id}", sobject(id)))
                    .json(&LastCall::of(report)),
            )
            .await
    }

    async fn create_follow_up(
        &self,
        contact: &str,
        report: &CallReport,
        due: OffsetDateTime,
    ) -> Result<CrmId, CrmError> {
        let summary = report.summary.as_deref().unwrap_or("(no summary)");
        let task = FollowUpTask {
            who_id: safe_id(contact)?,
            subject: subject(render::task_subject(report)),
            description: format!("{summary}\n{}", report.marker()),
            status: "Not Started",
            priority: "High",
            activity_date: due
                .to_offset(time::UtcOffset::UTC)
                .format(format_description!("[year]-[month]-[day]"))
                .unwrap_or_default(),
        };
        self.upsert_task(
            "upsert_follow_up_task",
            &follow_up_marker(&report.marker()),
            &task,
        )
        .await
    }

    async fn find_marked(
        &self,
        kind: MarkedRecord,
        _contact: &str,
        marker: &str,
    ) -> Result<Option<CrmId>, CrmError> {
        match kind {
            MarkedRecord::CallLog => self.task_by_marker(marker).await,
            MarkedRecord::FollowUp => self.task_by_marker(&follow_up_marker(marker)).await,
        }
    }
}

/// The follow-up task's external id: distinct from the call task's.
fn follow_up_marker(marker: &str) -> String {
    format!("{marker}:follow-up")
}

/// Task `CallType`, "Inbound, Internal, or Outbound" (Salesforce object
/// reference, Task:
/// https://developer.salesforce.com/docs/atlas.en-us.248.0.api.meta/api/sforce_api_objects_task.htm).
/// A call of unknown direction is written `Inbound`, as every call was
/// before directions were read. (`CallDisposition`, the call's result, is a
/// text field, "Limit is 255 characters": it gets the outcome's name.)
fn call_type(direction: Option<Direction>) -> &'static str {
    match direction {
        Some(Direction::Outbound) => "Outbound",
        Some(Direction::Inbound) | None => "Inbound",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_call_type_follows_the_direction_and_unknown_is_inbound() {
        assert_eq!(call_type(Some(Direction::Outbound)), "Outbound");
        assert_eq!(call_type(Some(Direction::Inbound)), "Inbound");
        assert_eq!(call_type(None), "Inbound");
    }
    use callsync_shared::config::{Env, Secret};

    #[test]
    fn sosl_reserved_characters_are_escaped() {
        assert_eq!(
            sosl_escape("jan-de.vries+crm@example.com"),
            "jan\\-de.vries\\+crm@example.com"
        );
    }

    #[test]
    fn markers_are_encoded_as_path_segments() {
        assert_eq!(
            encode("callsync:postcall:abc 1"),
            "callsync%3Apostcall%3Aabc%201"
        );
    }

    fn read(env: &Env) -> Result<SalesforceConfig, ConfigError> {
        Salesforce::settings(Vars::new(env, SPEC.name))
    }

    fn instance() -> Env {
        Env::default().with(
            "CALLSYNC_SALESFORCE_INSTANCE_URL",
            "https://acme.my.salesforce.com/",
        )
    }

    #[test]
    fn client_credentials_replace_the_access_token_and_ask_the_instance_for_tokens() {
        let env = instance()
            .with("CALLSYNC_SALESFORCE_CLIENT_ID", "3MVG9-app")
            .with("CALLSYNC_SALESFORCE_CLIENT_SECRET", "shh");
        let config = read(&env).unwrap();
        assert!(config.credentials.token.is_none());
        let oauth = config.credentials.oauth.unwrap();
        assert_eq!(
            oauth.token_url,
            "https://acme.my.salesforce.com/services/oauth2/token"
        );
        assert_eq!(oauth.grant, Grant::ClientCredentials);
    }

    #[test]
    fn a_refresh_token_selects_the_refresh_grant_at_the_login_url() {
        let env = instance()
            .with("CALLSYNC_SALESFORCE_CLIENT_ID", "3MVG9-app")
            .with("CALLSYNC_SALESFORCE_CLIENT_SECRET", "shh")
            .with("CALLSYNC_SALESFORCE_REFRESH_TOKEN", "5Aep-refresh")
            .with(
                "CALLSYNC_SALESFORCE_LOGIN_URL",
                "https://login.salesforce.com",
            );
        let oauth = read(&env).unwrap().credentials.oauth.unwrap();
        assert_eq!(
            oauth.token_url,
            "https://login.salesforce.com/services/oauth2/token"
        );
        assert_eq!(
            oauth.grant,
            Grant::RefreshToken(Secret::new("5Aep-refresh"))
        );
    }

    #[test]
    fn a_client_id_without_its_secret_is_named_at_start_up() {
        let env = instance().with("CALLSYNC_SALESFORCE_CLIENT_ID", "3MVG9-app");
        let err = read(&env).unwrap_err();
        assert_eq!(err.var, "CALLSYNC_SALESFORCE_CLIENT_SECRET");
    }

    #[test]
    fn lead_ids_are_updated_as_leads() {
        assert_eq!(sobject("00Q5e00000AbCdEAAX"), "Lead");
        assert_eq!(sobject("0035e00000AbCdEAAX"), "Contact");
    }
}
