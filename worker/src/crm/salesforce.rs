//! Salesforce (REST API).
//!
//! | step | request |
//! |---|---|
//! | find contact | SOSL `FIND {<national number>} IN PHONE FIELDS RETURNING Contact(…phones, country, LastModifiedDate), Lead(…)`, hits verified locally; then the e-mail in EMAIL FIELDS |
//! | create contact | `POST /sobjects/Contact` |
//! | record call | `POST /sobjects/Task` with the External ID field `Callsync_Marker__c` (`TaskSubtype = Call`, completed); when the marker exists, upsert by it without the create-only `TaskSubtype` |
//! | update contact | `PATCH /sobjects/{Contact,Lead}/{id}` (`Callsync_Last_*__c`) |
//! | follow-up | upsert `Task` by `Callsync_Marker__c` = `<marker>:follow-up`, with `ActivityDate` |
//! | deal (`[[deal]]`) | upsert `Opportunity` by `Callsync_Marker__c`, then its `OpportunityContactRoles` read and a role created when missing; see `deals.rs` |
//! | find by marker | `GET /sobjects/Task/Callsync_Marker__c/{marker}` |
//!
//! With `CALLSYNC_MAPPING`, the business's own fields ride in the same
//! requests: `[[contact]]` rules in the Contact's create and the Contact's
//! or Lead's PATCH, `[[call]]` rules in the Task's create or upsert; each is
//! checked against the describes at start (`salesforce/mapped.rs`).
//!
//! Upserting by an External ID makes the call and the follow-up idempotent
//! in Salesforce itself. The custom fields must be created once by an admin
//! (the Salesforce set-up guide, `docs/crm/salesforce.md`, lists each);
//! [`Crm::prepare`] describes the objects and names each one missing, and a
//! write refused for a missing field (`INVALID_FIELD`, "No such column")
//! pauses the worker instead of parking the call. Salesforce signals its
//! API limit with 403 `REQUEST_LIMIT_EXCEEDED`, read from the whole body,
//! which is treated as a rate limit.
//!
//! Sessions expire, so besides a fixed access token the adapter accepts a
//! connected app's client credentials (and optionally a refresh token) and
//! renews the token itself when Salesforce answers 401 (see `oauth.rs`).

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use callsync_shared::config::ConfigError;
use callsync_shared::phone::matching::{
    CallerNumber, Candidate, PhoneField, choose, parse_updated,
};
use callsync_shared::{CallReport, Direction, Outcome};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use time::OffsetDateTime;
use time::macros::format_description;

use super::oauth::{Credentials, Grant, OAuthClient};
use super::render;
use super::{
    Adapter, ContactLookup, Created, Crm, CrmError, CrmHttp, CrmId, CrmSpec, MarkedRecord,
    NewContact, NewDeal, Operation, Refusal, Shared, Vars, configure,
};
use crate::mapping::apply::{self, Write};

mod deals;
mod mapped;

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
    maps_fields: super::Mapped::Full,
    writes_deals: true,
};

/// Salesforce answers a list of `{errorCode, message}`. Its API limit is a
/// 403 `REQUEST_LIMIT_EXCEEDED`; `API_DISABLED_FOR_ORG` and
/// `API_CURRENTLY_DISABLED` mean the user or the org has no API access
/// (REST API developer guide, status codes). `INVALID_FIELD` with "No such
/// column 'X' on sobject of type Y" names a field the sObject lacks, or one
/// the integration user may not see (field-level security): for callsync's
/// own custom fields, a set-up to complete. An upsert by External ID through
/// a field that is gone (or no longer marked External ID) is a 404
/// `NOT_FOUND` "Provided external ID field does not exist or is not
/// accessible: X" — the same set-up, seen from the other route; a record
/// that is merely absent is "The requested resource does not exist".
///
/// A mapped field changed while the worker runs shows as a refused write:
/// deleted, `INVALID_FIELD` "No such column" (above); its type changed, a
/// `JSON_PARSER_ERROR` "Cannot deserialize instance of <type> from …" (the
/// worker writes each value as the type describe gave at start); a picklist
/// value deactivated or the picklist restricted,
/// `INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST` (REST API developer guide,
/// status codes and error responses; the messages as
/// `tests/src/sim/salesforce/types.rs` cites them). Every call would get
/// them until the fields are read again, so each pauses the worker, whose
/// probe describes the objects anew; a `JSON_PARSER_ERROR` that is not about
/// a value's type (a body that is not JSON) stays a refused request.
fn read_refusal(body: &str) -> Option<Refusal> {
    #[derive(Deserialize)]
    struct Error {
        #[serde(rename = "errorCode", default)]
        error_code: String,
        #[serde(default)]
        message: String,
    }
    let errors: Vec<Error> = serde_json::from_str(body).ok()?;
    errors.iter().find_map(|e| match e.error_code.as_str() {
        "REQUEST_LIMIT_EXCEEDED" => Some(Refusal::RateLimited),
        "API_DISABLED_FOR_ORG" | "API_CURRENTLY_DISABLED" => Some(Refusal::Credential),
        "INVALID_FIELD" if e.message.contains("No such column") => Some(Refusal::Setup),
        "JSON_PARSER_ERROR" if e.message.starts_with("Cannot deserialize instance of") => {
            Some(Refusal::Setup)
        }
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST" => Some(Refusal::Setup),
        "NOT_FOUND" if e.message.starts_with("Provided external ID field") => Some(Refusal::Setup),
        _ => None,
    })
}

impl Adapter for Salesforce {
    type Settings = SalesforceConfig;

    fn settings(vars: Vars<'_>) -> Result<SalesforceConfig, ConfigError> {
        let token = vars.optional_secret("ACCESS_TOKEN");
        let client_id = vars.raw("CLIENT_ID");
        if token.is_none() && client_id.is_none() {
            // Name the simplest way out; the set-up guide gives the other.
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
            mapping: shared.mapping.clone(),
            resolved: RwLock::default(),
        }
    }
}

/// The External ID field on Task that makes upserts idempotent.
const MARKER_FIELD: &str = "Callsync_Marker__c";

/// A custom field an admin creates once for callsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CustomField {
    object: &'static str,
    name: &'static str,
    /// The field types Salesforce's describe may give it: the guide's
    /// first (a last-call time made as Text by an earlier guide still works).
    describe_types: &'static [&'static str],
    /// Whether it must be marked External ID (upserts go by it).
    external_id: bool,
}

impl CustomField {
    const fn new(
        object: &'static str,
        name: &'static str,
        describe_types: &'static [&'static str],
    ) -> Self {
        Self {
            object,
            name,
            describe_types,
            external_id: false,
        }
    }
}

/// Describe's `type` of a Text field.
const TEXT: &[&str] = &["string"];
/// Of a Long Text Area (describe gives Text Area the same type; the guide
/// asks Long, since summaries reach 1,000 characters).
const LONG_TEXT: &[&str] = &["textarea"];
/// Of a Date/Time field, or of Text.
const DATE_TIME: &[&str] = &["datetime", "string"];

/// Every custom field callsync writes, as the set-up guide lists them
/// (`docs/crm/salesforce.md`): the marker on Task (created on Activity) and
/// the last-call fields on Contact and Lead; with `[[deal]]` rules, the
/// marker on Opportunity too (described only then).
const CUSTOM_FIELDS: [CustomField; 8] = [
    CustomField {
        external_id: true,
        ..CustomField::new("Opportunity", MARKER_FIELD, TEXT)
    },
    CustomField {
        external_id: true,
        ..CustomField::new("Task", MARKER_FIELD, TEXT)
    },
    CustomField::new("Contact", "Callsync_Last_Call_At__c", DATE_TIME),
    CustomField::new("Contact", "Callsync_Last_Call_Summary__c", LONG_TEXT),
    CustomField::new("Contact", "Callsync_Last_Sentiment__c", TEXT),
    CustomField::new("Lead", "Callsync_Last_Call_At__c", DATE_TIME),
    CustomField::new("Lead", "Callsync_Last_Call_Summary__c", LONG_TEXT),
    CustomField::new("Lead", "Callsync_Last_Sentiment__c", TEXT),
];

/// `GET /sobjects/{object}/describe`: the fields the integration user sees.
#[derive(Deserialize)]
struct Described {
    #[serde(default)]
    fields: Vec<DescribedField>,
}

/// The same answer, each field as a mapping rule needs it.
#[derive(Deserialize)]
struct MappedFields {
    #[serde(default)]
    fields: Vec<mapped::Definition>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribedField {
    name: String,
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    external_id: bool,
}

/// What is wrong with the custom fields of `object`, as `described`: each
/// field missing (or hidden from the user), of another type, or not an
/// External ID where one is needed.
fn field_problems(object: &str, described: &Described) -> Vec<String> {
    CUSTOM_FIELDS
        .iter()
        .filter(|f| f.object == object)
        .filter_map(|wanted| {
            let name = format!("{object}.{}", wanted.name);
            let Some(found) = described
                .fields
                .iter()
                .find(|f| f.name.eq_ignore_ascii_case(wanted.name))
            else {
                return Some(format!(
                    "{name} is missing (or its field-level security hides it from callsync's user)"
                ));
            };
            if !wanted.describe_types.contains(&found.kind.as_str()) {
                return Some(format!(
                    "{name} is of type {}, not {}",
                    found.kind, wanted.describe_types[0]
                ));
            }
            (wanted.external_id && !found.external_id)
                .then(|| format!("{name} is not marked External ID"))
        })
        .collect()
}

#[derive(Debug)]
pub struct Salesforce {
    config: SalesforceConfig,
    /// Requests carry the session token, renewed on a 401.
    http: CrmHttp,
    /// `CALLSYNC_MAPPING`, when set.
    mapping: Option<Arc<crate::mapping::Mapping>>,
    /// Its rules bound to the fields' types, read by each `prepare`.
    resolved: RwLock<Arc<mapped::Resolved>>,
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

/// SOSL over every phone field for each form of the caller's number a
/// person may have typed, as digits (`+` and `-` are reserved in SOSL),
/// OR-ed in the one query: the national significant number (`612345678`),
/// with the trunk prefix (`0612345678`), international (`31612345678`),
/// international with the trunk prefix in brackets (`+31 (0)6…`:
/// `310612345678`) and with the `00` prefix (`0031612345678`). Salesforce
/// does not document how `IN PHONE FIELDS` matches a term against numbers
/// typed with spaces or brackets; its one phone example searches a
/// number's bare digits ("Example of phoneNumber format: 4155551212", SOAP
/// API, sample search() call), so every form is searched whole, and hits
/// are verified locally.
/// https://developer.salesforce.com/docs/atlas.en-us.soql_sosl.meta/soql_sosl/sforce_api_calls_sosl_find.htm
fn phone_search(caller: &CallerNumber) -> String {
    let code = caller.country_code();
    let nsn = caller.nsn();
    let national = caller.national_digits();
    let mut forms = vec![
        nsn.to_owned(),
        national.clone(),
        format!("{code}{nsn}"),
        format!("{code}{national}"),
        format!("00{code}{nsn}"),
    ];
    forms.retain(|f| !f.is_empty() && f.chars().all(|c| c.is_ascii_digit()));
    let mut seen = Vec::new();
    forms.retain(|f| {
        let new = !seen.contains(f);
        seen.push(f.clone());
        new
    });
    format!(
        "FIND {{{}}} IN PHONE FIELDS RETURNING \
         Contact(Id, Phone, MobilePhone, HomePhone, OtherPhone, MailingCountry, LastModifiedDate ORDER BY LastModifiedDate DESC), \
         Lead(Id, Phone, MobilePhone, Country, LastModifiedDate ORDER BY LastModifiedDate DESC)",
        forms.join(" OR ")
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
        self.upsert_marked("Task", operation, external, body).await
    }

    /// Creates or updates the `sobject` record with external id `external`
    /// (`PATCH /sobjects/{sobject}/Callsync_Marker__c/{external}`).
    async fn upsert_marked(
        &self,
        sobject: &'static str,
        operation: &'static str,
        external: &str,
        body: &(impl Serialize + Sync),
    ) -> Result<CrmId, CrmError> {
        let path = format!("/sobjects/{sobject}/{MARKER_FIELD}/{}", encode(external));
        let response = self
            .http
            .send(
                operation,
                self.request(Method::PATCH, &path).json(body),
                &[StatusCode::MULTIPLE_CHOICES],
            )
            .await?;
        if response.status() == StatusCode::MULTIPLE_CHOICES {
            return self.one_of_several(operation, external, response).await;
        }
        if response.status() == StatusCode::NO_CONTENT {
            // Older API versions answer an update with no body: read the id.
            return self
                .by_marker(sobject, external)
                .await?
                .ok_or_else(|| CrmError::InvalidResponse(format!("upserted {sobject} not found")));
        }
        let saved: Saved = self.http.decode(operation, response).await?;
        Ok(saved.id)
    }

    async fn task_by_marker(&self, external: &str) -> Result<Option<CrmId>, CrmError> {
        self.by_marker("Task", external).await
    }

    /// The `sobject` record with external id `external`, if there is one.
    async fn by_marker(
        &self,
        sobject: &'static str,
        external: &str,
    ) -> Result<Option<CrmId>, CrmError> {
        let path = format!("/sobjects/{sobject}/{MARKER_FIELD}/{}", encode(external));
        let response = self
            .http
            .send(
                "get_by_marker",
                self.request(Method::GET, &path),
                &[StatusCode::NOT_FOUND, StatusCode::MULTIPLE_CHOICES],
            )
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if response.status() == StatusCode::MULTIPLE_CHOICES {
            return self
                .one_of_several("get_by_marker", external, response)
                .await
                .map(Some);
        }
        let fetched: Fetched = self.http.decode("get_by_marker", response).await?;
        Ok(Some(fetched.id))
    }
}

/// `[[deal]]` rules: the Opportunity's marker field and stages, and the
/// contact role.
impl Salesforce {
    /// Describes Opportunity: its marker field's problems join `problems`;
    /// each rule's stage must be an active `StageName` value.
    async fn prepare_deals(
        &self,
        mapping: &crate::mapping::Mapping,
        problems: &mut Vec<String>,
    ) -> Result<(), CrmError> {
        let described: Json = self
            .http
            .json(
                "describe",
                self.request(Method::GET, "/sobjects/Opportunity/describe"),
            )
            .await?;
        let invalid =
            |e: serde_json::Error| CrmError::InvalidResponse(format!("describe Opportunity: {e}"));
        let own: Described = serde_json::from_value(described.clone()).map_err(invalid)?;
        problems.extend(field_problems("Opportunity", &own));
        let fields: MappedFields = serde_json::from_value(described).map_err(invalid)?;
        let stages = fields
            .fields
            .into_iter()
            .find(|f| f.name == "StageName")
            .map(|f| {
                f.picklist_values
                    .into_iter()
                    .filter(|v| v.active)
                    .map(|v| {
                        let label = v.label.unwrap_or_else(|| v.value.clone());
                        (v.value, label)
                    })
                    .collect()
            })
            .unwrap_or_default();
        mapping.check_deals(&[deals::pipeline(stages)], "Salesforce")
    }

    /// Ties `contact` to `opportunity` by a role unless it holds one.
    async fn ensure_role(&self, opportunity: &str, contact: &str) -> Result<(), CrmError> {
        let opportunity = safe_id(opportunity)?;
        let roles: deals::Roles = self
            .http
            .json(
                "read_contact_roles",
                self.request(
                    Method::GET,
                    &format!("/sobjects/Opportunity/{opportunity}/OpportunityContactRoles"),
                ),
            )
            .await?;
        if roles.holds(contact) {
            return Ok(());
        }
        let role = deals::ContactRole {
            opportunity_id: opportunity,
            contact_id: contact,
            is_primary: true,
        };
        let _: Saved = self
            .http
            .json(
                "create_contact_role",
                self.request(Method::POST, "/sobjects/OpportunityContactRole")
                    .json(&role),
            )
            .await?;
        Ok(())
    }
}

/// `CALLSYNC_MAPPING` on the Contact or Lead.
impl Salesforce {
    fn resolved(&self) -> Arc<mapped::Resolved> {
        Arc::clone(&self.resolved.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn contact_values(
        &self,
        sobject: &str,
        report: &CallReport,
        write: Write,
        current: &Map<String, Json>,
    ) -> Map<String, Json> {
        apply::contact_values(
            self.resolved().of(sobject),
            report,
            write,
            current,
            &mapped::wire,
            &mut |b, skip| apply::skipped(SPEC.name, report, "contact", b, skip),
        )
    }

    /// The mapped fields of `write` on record `id`, reading their current
    /// values first when a rule depends on them (`if_empty`, `append`): one
    /// read-modify-write, run under the contact's write lease and repeated
    /// whole on a retry, so an appended line already there (a PATCH
    /// Salesforce applied but answered with an error) is not added again.
    async fn mapped_update(
        &self,
        id: &str,
        report: &CallReport,
        write: Write,
    ) -> Result<Map<String, Json>, CrmError> {
        let object = sobject(id);
        let resolved = self.resolved();
        let read = apply::read_first(resolved.of(object));
        let current = if read.is_empty() {
            Map::new()
        } else {
            // `?fields=` narrows the record to the fields named; one that
            // is gone is a 400 (`INVALID_FIELD`, a set-up to complete, as
            // for a write). REST API developer guide, Get Field Values from
            // a Standard Object Record:
            // https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/dome_get_field_values.htm
            self.http
                .json(
                    "read_mapped_fields",
                    self.request(Method::GET, &format!("/sobjects/{object}/{id}"))
                        .query(&[("fields", read.join(","))]),
                )
                .await?
        };
        Ok(self.contact_values(object, report, write, &current))
    }

    async fn patch_contact(&self, id: &str, fields: &Map<String, Json>) -> Result<(), CrmError> {
        self.http
            .perform(
                "update_contact",
                self.request(Method::PATCH, &format!("/sobjects/{}/{id}", sobject(id)))
                    .json(fields),
            )
            .await
    }
}

impl Salesforce {
    /// Salesforce's 300 to an upsert or a read by External ID: several
    /// Tasks carry the marker ("If the external ID value matches multiple
    /// records, a 300 response is returned" with the matching records, REST
    /// API developer guide, upsert by external ID), which only happens when
    /// `Callsync_Marker__c` is not marked Unique. The call is recorded
    /// already: the first of them (the oldest id) stands for it, nothing is
    /// written again, and the log says to mark the field Unique.
    async fn one_of_several(
        &self,
        operation: &'static str,
        external: &str,
        response: reqwest::Response,
    ) -> Result<CrmId, CrmError> {
        let listed: serde_json::Value = self.http.decode(operation, response).await?;
        let mut ids = record_ids(&listed);
        ids.sort();
        tracing::warn!(
            records = ids.len(),
            "several Salesforce Tasks carry one callsync marker; mark {MARKER_FIELD} Unique (see the set-up guide)"
        );
        ids.into_iter().next().ok_or_else(|| {
            CrmError::InvalidResponse(format!(
                "{operation} answered 300 for {external:?} without naming a record"
            ))
        })
    }
}

/// What a create came back with: the new record's id, or Salesforce's 400
/// refusal with one of the codes the caller reads itself (the whole list of
/// errors, as sent).
enum CreateAnswer {
    Created(CrmId),
    Refused(serde_json::Value),
}

impl Salesforce {
    /// Sends a create (`POST /sobjects/…`); a 400 whose errors include one
    /// of `codes` comes back whole as [`CreateAnswer::Refused`], any other
    /// failure is classified as every request's is.
    async fn create(
        &self,
        operation: &'static str,
        request: RequestBuilder,
        codes: &[&str],
    ) -> Result<CreateAnswer, CrmError> {
        let response = self
            .http
            .send(operation, request, &[StatusCode::BAD_REQUEST])
            .await?;
        if response.status() != StatusCode::BAD_REQUEST {
            let saved: Saved = self.http.decode(operation, response).await?;
            return Ok(CreateAnswer::Created(saved.id));
        }
        let headers = response.headers().clone();
        let body = response.text().await.unwrap_or_default();
        let errors: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let ours = errors.as_array().into_iter().flatten().any(|e| {
            e["errorCode"]
                .as_str()
                .is_some_and(|code| codes.contains(&code))
        });
        if ours {
            return Ok(CreateAnswer::Refused(errors));
        }
        Err(super::answer::classify(
            StatusCode::BAD_REQUEST,
            &headers,
            &body,
            read_refusal,
            OffsetDateTime::now_utc(),
        ))
    }
}

/// The records a duplicate rule matched, from `DUPLICATES_DETECTED`'s
/// `duplicateResult.matchResults[].matchRecords[].record.Id`: Contacts and
/// Leads, the records callsync may record a call on.
fn duplicate_matches(errors: &serde_json::Value) -> Vec<CrmId> {
    errors
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["errorCode"] == "DUPLICATES_DETECTED")
        .flat_map(|e| {
            e["duplicateResult"]["matchResults"]
                .as_array()
                .into_iter()
                .flatten()
        })
        .flat_map(|m| m["matchRecords"].as_array().into_iter().flatten())
        .filter_map(|r| r["record"]["Id"].as_str())
        .filter(|id| safe_id(id).is_ok() && (id.starts_with("003") || id.starts_with("00Q")))
        .map(str::to_owned)
        .collect()
}

/// The record ids a Salesforce answer names: record URLs
/// (`/services/data/v60.0/sobjects/Task/00T…`) and `Id`/`id` keys, anywhere.
fn record_ids(value: &serde_json::Value) -> Vec<String> {
    use serde_json::Value;
    let mut ids = Vec::new();
    let mut push = |id: &str| {
        if safe_id(id).is_ok() && !ids.iter().any(|known: &String| known == id) {
            ids.push(id.to_owned());
        }
    };
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::String(url) if url.contains("/sobjects/") => {
                if let Some(id) = url.rsplit('/').next() {
                    push(id);
                }
            }
            Value::Array(items) => stack.extend(items.iter().rev()),
            Value::Object(map) => {
                for (key, item) in map {
                    match (key.as_str(), item) {
                        ("Id" | "id", Value::String(id)) => push(id),
                        _ => stack.push(item),
                    }
                }
            }
            _ => {}
        }
    }
    ids
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

/// A DateTime field's value: UTC with milliseconds, as Salesforce writes
/// them (`2026-05-01T08:00:00.000Z`); finer fractions are not documented
/// as accepted.
fn datetime(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        ))
        .unwrap_or_default()
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
            at: datetime(report.ended_at),
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
    /// The mapped fields (`CALLSYNC_MAPPING`).
    #[serde(flatten)]
    mapped: Map<String, Json>,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_name: Option<String>,
    last_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
}

/// The completed Task that records a call, as an upsert may send it.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct CallTask<'a> {
    who_id: &'a str,
    subject: String,
    description: String,
    call_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    call_disposition: Option<&'static str>,
    status: &'static str,
    activity_date: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    call_duration_in_seconds: Option<u64>,
    /// The mapped fields (`CALLSYNC_MAPPING`'s `[[call]]` rules).
    #[serde(flatten)]
    mapped: Map<String, Json>,
}

/// `POST /sobjects/Task`: the call's Task with what only a create may set.
#[derive(Serialize)]
struct NewCallTask<'a> {
    #[serde(flatten)]
    task: &'a CallTask<'a>,
    #[serde(rename = "TaskSubtype")]
    task_subtype: &'static str,
    #[serde(rename = "Callsync_Marker__c")]
    marker: &'a str,
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

    /// Fetches the first token, then describes Task, Contact and Lead and
    /// names every custom field that is missing or wrong: all of them in
    /// one error, so that an admin fixes them in one go.
    async fn prepare(&self) -> Result<(), CrmError> {
        self.http.authenticate().await?;
        let mut problems = Vec::new();
        let mut fields = Vec::new();
        for object in ["Task", "Contact", "Lead"] {
            let described: Json = self
                .http
                .json(
                    "describe",
                    self.request(Method::GET, &format!("/sobjects/{object}/describe")),
                )
                .await?;
            let invalid =
                |e: serde_json::Error| CrmError::InvalidResponse(format!("describe {object}: {e}"));
            let own: Described = serde_json::from_value(described.clone()).map_err(invalid)?;
            problems.extend(field_problems(object, &own));
            let mapped: MappedFields = serde_json::from_value(described).map_err(invalid)?;
            fields.push(mapped.fields);
        }
        if let Some(mapping) = &self.mapping
            && !mapping.deal.is_empty()
        {
            self.prepare_deals(mapping, &mut problems).await?;
        }
        if problems.is_empty() {
            if let Some(mapping) = &self.mapping {
                let resolved =
                    mapped::Resolved::check(mapping, &fields[1], &fields[2], &fields[0])?;
                *self
                    .resolved
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = Arc::new(resolved);
            }
            return Ok(());
        }
        Err(CrmError::Setup {
            detail: format!(
                "callsync's custom fields: {} (see the Salesforce set-up guide)",
                problems.join("; ")
            ),
        })
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
                .sosl_records(phone_search(caller))
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
            mapped: self.contact_values("Contact", contact.report, Write::New, &Map::new()),
            first_name,
            last_name,
            phone: caller.phone.as_ref().map(|p| p.best()),
            email: caller.email.as_deref(),
        };
        // No `Sforce-Duplicate-Rule-Header: allowSave=true`: the org's
        // duplicate rules decide. A rule that matches an existing Contact or
        // Lead (callsync's search missed it: another format, the index
        // lagging) refuses the create with `DUPLICATES_DETECTED` and names
        // the records; the call goes on the first of them, as a human told
        // "use one of these records?" would do, instead of parking.
        // https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/headers_duplicaterules.htm
        let answer = self
            .create(
                "create_contact",
                self.request(Method::POST, "/sobjects/Contact").json(&body),
                &["DUPLICATES_DETECTED"],
            )
            .await?;
        match answer {
            CreateAnswer::Created(id) => Ok(Created {
                id,
                has_last_call: true,
            }),
            CreateAnswer::Refused(errors) => match duplicate_matches(&errors).into_iter().next() {
                // Its last-call fields are not this call's yet.
                Some(id) => Ok(Created {
                    id,
                    has_last_call: false,
                }),
                None => Err(CrmError::Rejected {
                    status: 400,
                    detail: "a duplicate rule refused the new contact without naming a Contact or \
                        Lead to use; change the rule's action for callsync's user (see the \
                        Salesforce set-up guide)"
                        .to_owned(),
                }),
            },
        }
    }

    async fn record_call(&self, contact: &str, report: &CallReport) -> Result<CrmId, CrmError> {
        let marker = report.marker();
        let task = CallTask {
            who_id: safe_id(contact)?,
            subject: subject(render::call_title(report)),
            description: plain_text(report),
            call_type: call_type(report.direction),
            call_disposition: report.outcome.map(Outcome::as_str),
            status: "Completed",
            activity_date: report
                .ended_at
                .format(format_description!("[year]-[month]-[day]"))
                .unwrap_or_default(),
            call_duration_in_seconds: report.duration.map(|d| d.as_secs()),
            mapped: apply::call_values(
                &self.resolved().call,
                report,
                &mapped::wire,
                &mut |b, skip| apply::skipped(SPEC.name, report, "call", b, skip),
            ),
        };
        // `TaskSubtype` can be set when a Task is created, never after
        // (its properties are "Create, Filter, Group, Nillable, Restricted
        // picklist, Sort", without Update: object reference, Task), and an
        // upsert that finds the marker is an update. So the Task is
        // created with it, carrying the marker; a marker that exists
        // already (the field is Unique) is upserted without it.
        let create = NewCallTask {
            task: &task,
            task_subtype: "Call",
            marker: &marker,
        };
        let answer = self
            .create(
                "create_call_task",
                self.request(Method::POST, "/sobjects/Task").json(&create),
                &["DUPLICATE_VALUE"],
            )
            .await?;
        match answer {
            CreateAnswer::Created(id) => Ok(id),
            CreateAnswer::Refused(_) => self.upsert_task("upsert_call_task", &marker, &task).await,
        }
    }

    async fn update_contact(&self, contact: &str, report: &CallReport) -> Result<(), CrmError> {
        let id = safe_id(contact)?;
        let mut fields = match serde_json::to_value(LastCall::of(report)) {
            Ok(Json::Object(fields)) => fields,
            _ => Map::new(),
        };
        fields.extend(self.mapped_update(id, report, Write::Newest).await?);
        self.patch_contact(id, &fields).await
    }

    fn writes_every_call(&self) -> bool {
        let resolved = self.resolved();
        !apply::read_first(&resolved.contact).is_empty()
            || !apply::read_first(&resolved.lead).is_empty()
    }

    async fn update_older(&self, contact: &str, report: &CallReport) -> Result<(), CrmError> {
        let id = safe_id(contact)?;
        let fields = self.mapped_update(id, report, Write::Older).await?;
        if fields.is_empty() {
            return Ok(());
        }
        self.patch_contact(id, &fields).await
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

    async fn create_deal(&self, deal: &NewDeal<'_>) -> Result<CrmId, CrmError> {
        let contact = safe_id(deal.contact)?;
        let summary = deal.report.summary.as_deref().unwrap_or("(no summary)");
        let description = if sobject(contact) == "Lead" {
            format!("{summary}\nLead {contact}")
        } else {
            summary.to_owned()
        };
        let fields = deals::OpportunityFields {
            name: deal.rule.name(deal.report, deals::MAX_NAME),
            stage_name: deal.rule.stage.clone(),
            close_date: deals::close_date(deal.report.ended_at),
            description,
        };
        let opportunity = self
            .upsert_marked(
                "Opportunity",
                "upsert_opportunity",
                &deal.rule.marker(deal.report),
                &fields,
            )
            .await?;
        if sobject(contact) == "Contact" {
            self.ensure_role(&opportunity, contact).await?;
        }
        Ok(opportunity)
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
            // The deal's create is an upsert by its marker and a role read
            // before it is created: repeating it is the search, and it
            // completes a role an interrupted attempt did not create.
            MarkedRecord::Deal(_) => Ok(None),
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
    fn the_phone_search_ors_every_form_a_person_may_have_typed() {
        let caller = CallerNumber::parse("+31612345678", callsync_shared::Region::US).unwrap();
        let query = phone_search(&caller);
        assert!(
            query.starts_with(
                "FIND {612345678 OR 0612345678 OR 31612345678 OR 310612345678 OR 0031612345678} IN PHONE FIELDS"
            ),
            "{query}"
        );
        let us = CallerNumber::parse("+14155551212", callsync_shared::Region::US).unwrap();
        assert!(
            phone_search(&us).starts_with("FIND {4155551212 OR 14155551212 OR 0014155551212} "),
            "{}",
            phone_search(&us)
        );
    }

    #[test]
    fn a_missing_custom_field_is_an_incomplete_set_up_and_another_invalid_field_is_not() {
        let missing = r#"[{"errorCode":"INVALID_FIELD","message":"No such column 'Callsync_Last_Call_At__c' on sobject of type Contact"}]"#;
        assert_eq!(read_refusal(missing), Some(Refusal::Setup));
        let other = r#"[{"errorCode":"INVALID_FIELD","message":"Foreign key external ID: x not found for field Callsync_Marker__c in entity Task"}]"#;
        assert_eq!(read_refusal(other), None);
    }

    #[test]
    fn a_mapped_field_whose_type_or_picklist_changed_pauses_and_a_body_that_is_not_json_does_not() {
        let retyped = r#"[{"errorCode":"JSON_PARSER_ERROR","message":"Cannot deserialize instance of double from VALUE_STRING value \"x\" or request may be missing a required field"}]"#;
        assert_eq!(read_refusal(retyped), Some(Refusal::Setup));
        let restricted = r#"[{"errorCode":"INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST","message":"AI_Intent__c: bad value for restricted picklist field: Sales"}]"#;
        assert_eq!(read_refusal(restricted), Some(Refusal::Setup));
        let broken = r#"[{"errorCode":"JSON_PARSER_ERROR","message":"Unexpected character ('}' (code 125))"}]"#;
        assert_eq!(read_refusal(broken), None);
    }

    #[test]
    fn an_upsert_through_a_vanished_external_id_field_is_an_incomplete_set_up_and_an_absent_record_is_not()
     {
        let gone = r#"[{"errorCode":"NOT_FOUND","message":"Provided external ID field does not exist or is not accessible: Callsync_Marker__c"}]"#;
        assert_eq!(read_refusal(gone), Some(Refusal::Setup));
        let absent =
            r#"[{"errorCode":"NOT_FOUND","message":"The requested resource does not exist"}]"#;
        assert_eq!(read_refusal(absent), None);
    }

    #[test]
    fn each_missing_or_wrong_custom_field_is_named() {
        let described: Described = serde_json::from_str(
            r#"{"fields":[{"name":"Callsync_Marker__c","type":"string","externalId":false},{"name":"Subject","type":"string"}]}"#,
        )
        .unwrap();
        assert_eq!(
            field_problems("Task", &described),
            ["Task.Callsync_Marker__c is not marked External ID"]
        );
        let described: Described = serde_json::from_str(
            r#"{"fields":[{"name":"Callsync_Last_Call_At__c","type":"date"},{"name":"Callsync_Last_Sentiment__c","type":"string"}]}"#,
        )
        .unwrap();
        let problems = field_problems("Lead", &described);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].contains("Lead.Callsync_Last_Call_At__c is of type date, not datetime")
        );
        assert!(problems[1].starts_with("Lead.Callsync_Last_Call_Summary__c is missing"));
    }

    #[test]
    fn a_300_names_its_records_by_url_or_id() {
        let urls = serde_json::json!([
            "/services/data/v60.0/sobjects/Task/00T000000000000002",
            "/services/data/v60.0/sobjects/Task/00T000000000000001"
        ]);
        assert_eq!(
            record_ids(&urls),
            ["00T000000000000002", "00T000000000000001"]
        );
        let objects = serde_json::json!([{ "attributes": {}, "Id": "00T000000000000003" }]);
        assert_eq!(record_ids(&objects), ["00T000000000000003"]);
    }

    #[test]
    fn a_duplicate_rule_s_matches_are_read_from_its_duplicate_result() {
        let errors = serde_json::json!([{
            "errorCode": "DUPLICATES_DETECTED",
            "duplicateResult": { "matchResults": [{ "matchRecords": [
                { "record": { "Id": "0035e00000AbCdEAAX" } },
                { "record": { "Id": "0015e00000AbCdEAAX" } }
            ]}]}
        }]);
        // An Account is no place for a call.
        assert_eq!(duplicate_matches(&errors), ["0035e00000AbCdEAAX"]);
    }

    #[test]
    fn a_date_time_field_gets_milliseconds_in_utc() {
        let at = time::macros::datetime!(2026-05-01 10:00:00.123456789 +02:00);
        assert_eq!(datetime(at), "2026-05-01T08:00:00.123Z");
    }

    #[test]
    fn lead_ids_are_updated_as_leads() {
        assert_eq!(sobject("00Q5e00000AbCdEAAX"), "Lead");
        assert_eq!(sobject("0035e00000AbCdEAAX"), "Contact");
    }
}
