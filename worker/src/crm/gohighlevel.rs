//! GoHighLevel (LeadConnector API, `Version: 2021-07-28`).
//!
//! | step | request |
//! |---|---|
//! | find contact | `POST /contacts/search`: phone `eq` E.164 or `contains` the national number, hits verified locally; then `GET /contacts/search/duplicate?locationId&email` |
//! | create contact | `POST /contacts/upsert` (GoHighLevel's duplicate rules make it idempotent) |
//! | record call | `POST /contacts/{id}/notes`: summary, analysis, links, marker |
//! | update contact | `PUT /contacts/{id}` with `customFields` (last-call fields) |
//! | follow-up | `POST /contacts/{id}/tasks` with `dueDate` |
//! | find by marker | `GET /contacts/{id}/notes` / `GET /contacts/{id}/tasks`, marker in the body |
//!
//! The request bodies are checked against GoHighLevel's own OpenAPI file
//! (public domain) by crm-sim in the end-to-end tests. Custom field values
//! are written by field id, which the OpenAPI file requires; [`Crm::prepare`]
//! finds the location's `callsync_*` custom fields
//! (`GET /locations/{id}/customFields`) and creates the missing ones.
//!
//! `CALLSYNC_MAPPING`'s `[[contact]]` rules are checked against the same
//! listing ([`mapped`]) and ride in the upsert or the update; the call is a
//! note, which has no fields, so `[[call]]` rules are refused at start-up.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use callsync_shared::CallReport;
use callsync_shared::config::ConfigError;
use callsync_shared::phone::matching::{
    CallerNumber, Candidate, PhoneField, choose, parse_updated,
};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::oauth::{Credentials, Grant, OAuthClient};
use super::render;
use crate::mapping::apply::{self, Bound, Write};
use crate::mapping::{Mapping, Mode};

mod deals;
mod mapped;
use super::{
    Adapter, ContactLookup, Created, Crm, CrmError, CrmHttp, CrmId, CrmSpec, MarkedRecord,
    NewContact, NewDeal, Operation, Permission, Refusal, Shared, Vars, configure,
};

/// The API version this adapter speaks.
const API_VERSION: &str = "2021-07-28";

/// `CALLSYNC_GOHIGHLEVEL_*`.
#[derive(Debug, Clone)]
pub struct GohighlevelConfig {
    /// A private integration token, used as given, or a marketplace app's
    /// OAuth client and refresh token, renewed as GoHighLevel rotates them.
    pub credentials: Credentials,
    pub location_id: String,
    pub base_url: String,
}

/// How `CALLSYNC_CRM=gohighlevel` is read and built.
pub const SPEC: CrmSpec = CrmSpec {
    name: "gohighlevel",
    // 100 requests per 10 s per location.
    default_rate: "100/10s",
    // No search limit is documented apart from the general 100 per 10 s
    // per location, which searches already draw on.
    default_search_rate: "off",
    // Notes and tasks are listed per contact, not searched: they show at
    // once. Give replicas a moment anyway.
    default_index_lag: Duration::from_secs(5),
    configure: configure::<Gohighlevel>,
    read_refusal,
    credential_help: "set CALLSYNC_GOHIGHLEVEL_TOKEN to a private integration token of \
        location CALLSYNC_GOHIGHLEVEL_LOCATION_ID with the scopes contacts.readonly, \
        contacts.write, locations/customFields.readonly and locations/customFields.write, or \
        CALLSYNC_GOHIGHLEVEL_CLIENT_ID, _CLIENT_SECRET and a fresh _REFRESH_TOKEN of the \
        marketplace app, asking those scopes, installed on that location",
    maps_fields: super::Mapped::ContactOnly(
        "GoHighLevel records the call as a note, which has no fields of its own",
    ),
    writes_deals: true,
};

/// A token that lacks the scope a route needs is accepted as a token and
/// refused for the route: GoHighLevel answers 401 "The token is not
/// authorized for this scope." (the wording its API sends and integrators
/// quote; its OpenAPI files document the 401 without a body). That is a set-up
/// to complete, not a token to renew, whatever the status.
fn read_refusal(body: &str) -> Option<Refusal> {
    #[derive(Deserialize)]
    struct Error {
        #[serde(default)]
        message: serde_json::Value,
    }
    let error: Error = serde_json::from_str(body).ok()?;
    let scope = |text: &str| text.contains("not authorized for this scope");
    let names_scope = match &error.message {
        serde_json::Value::String(text) => scope(text),
        serde_json::Value::Array(texts) => texts.iter().filter_map(|t| t.as_str()).any(scope),
        _ => false,
    };
    names_scope.then_some(Refusal::Setup)
}

/// A GoHighLevel scope callsync needs, and what for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Scope {
    name: &'static str,
    needed_for: &'static str,
}

const CONTACTS_READ: Scope = Scope {
    name: "contacts.readonly",
    needed_for: "finding callers and the notes and tasks callsync wrote",
};
const CONTACTS_WRITE: Scope = Scope {
    name: "contacts.write",
    needed_for: "creating and updating contacts, notes and tasks",
};
const FIELDS_READ: Scope = Scope {
    name: "locations/customFields.readonly",
    needed_for: "finding the location's callsync custom fields and those CALLSYNC_MAPPING names",
};
const FIELDS_WRITE: Scope = Scope {
    name: "locations/customFields.write",
    needed_for: "creating the callsync custom fields",
};

const OPPORTUNITIES_READ: Scope = Scope {
    name: "opportunities.readonly",
    needed_for: "the pipelines [[deal]] rules name, and finding the opportunities callsync wrote",
};
const OPPORTUNITIES_WRITE: Scope = Scope {
    name: "opportunities.write",
    needed_for: "creating the opportunities of [[deal]] rules",
};

/// Every scope callsync needs, in the order `check` proves them.
const SCOPES: [Scope; 4] = [CONTACTS_READ, CONTACTS_WRITE, FIELDS_READ, FIELDS_WRITE];

/// A request callsync sends and the scope GoHighLevel's OpenAPI files list
/// in its `security` (GoHighLevel/highlevel-api-docs @ 0af86a4c,
/// `apps/contacts.json` and `apps/locations.json`; the operationId in each
/// comment).
#[derive(Debug, Clone, Copy)]
struct Endpoint {
    operation: Operation,
    scope: Scope,
}

impl Endpoint {
    const fn new(operation: Operation, scope: Scope) -> Self {
        Self { operation, scope }
    }
}

/// `POST /contacts/search` (search-contacts-advanced).
const SEARCH_CONTACTS: Endpoint =
    Endpoint::new(Operation::search("search_contacts"), CONTACTS_READ);
/// `GET /contacts/search/duplicate` (get-duplicate-contact).
const SEARCH_DUPLICATE: Endpoint =
    Endpoint::new(Operation::search("search_duplicate"), CONTACTS_READ);
/// `GET /contacts/{contactId}` (get-contact).
const GET_CONTACT: Endpoint = Endpoint::new(Operation::general("get_contact"), CONTACTS_READ);
/// `GET /contacts/{contactId}/notes` (get-all-notes).
const LIST_NOTES: Endpoint = Endpoint::new(Operation::general("list_notes"), CONTACTS_READ);
/// `GET /contacts/{contactId}/tasks` (get-all-tasks).
const LIST_TASKS: Endpoint = Endpoint::new(Operation::general("list_tasks"), CONTACTS_READ);
/// `POST /contacts/upsert` (upsert-contact).
const UPSERT_CONTACT: Endpoint =
    Endpoint::new(Operation::general("upsert_contact"), CONTACTS_WRITE);
/// `PUT /contacts/{contactId}` (update-contact).
const UPDATE_CONTACT: Endpoint =
    Endpoint::new(Operation::general("update_contact"), CONTACTS_WRITE);
/// `POST /contacts/{contactId}/notes` (create-note).
const CREATE_NOTE: Endpoint = Endpoint::new(Operation::general("create_note"), CONTACTS_WRITE);
/// `POST /contacts/{contactId}/tasks` (create-task).
const CREATE_TASK: Endpoint = Endpoint::new(Operation::general("create_task"), CONTACTS_WRITE);
/// `GET /locations/{locationId}/customFields` (get-custom-fields).
const LIST_FIELDS: Endpoint = Endpoint::new(Operation::general("list_fields"), FIELDS_READ);
/// `POST /locations/{locationId}/customFields` (create-custom-field).
const CREATE_FIELD: Endpoint = Endpoint::new(Operation::general("create_field"), FIELDS_WRITE);

/// `GET /opportunities/pipelines` (get-pipelines).
const LIST_PIPELINES: Endpoint =
    Endpoint::new(Operation::general("list_pipelines"), OPPORTUNITIES_READ);
/// `POST /opportunities/` (create-opportunity).
const CREATE_OPPORTUNITY: Endpoint = Endpoint::new(
    Operation::general("create_opportunity"),
    OPPORTUNITIES_WRITE,
);
/// `GET /opportunities/search` (search-opportunity).
const SEARCH_OPPORTUNITIES: Endpoint = Endpoint::new(
    Operation::general("search_opportunities"),
    OPPORTUNITIES_READ,
);

/// Names the scope of `endpoint` in a set-up refusal: GoHighLevel's answer
/// does not say which scope is missing.
fn naming_scope(endpoint: Endpoint) -> impl Fn(CrmError) -> CrmError {
    move |error| match error {
        CrmError::Setup { detail } => CrmError::Setup {
            detail: format!(
                "the token lacks the scope {}, needed for {} ({detail})",
                endpoint.scope.name, endpoint.scope.needed_for
            ),
        },
        other => other,
    }
}

impl Adapter for Gohighlevel {
    type Settings = GohighlevelConfig;

    fn settings(vars: Vars<'_>) -> Result<GohighlevelConfig, ConfigError> {
        let base_url = vars.url("BASE_URL", "https://services.leadconnectorhq.com");
        let token = vars.optional_secret("TOKEN");
        // A marketplace app (OAuth 2.0): "POST /oauth/token" with
        // grant_type=refresh_token and user_type=Location answers a day-long
        // access token and a new refresh token; the used one stops working
        // (highlevel.stoplight.io, OAuth 2.0: Get Access Token).
        let oauth = match (token.is_some(), vars.raw("CLIENT_ID")) {
            (false, Some(client_id)) => Some(OAuthClient {
                token_url: format!("{base_url}/oauth/token"),
                client_id: client_id.to_owned(),
                client_secret: vars.secret("CLIENT_SECRET")?,
                grant: Grant::RefreshToken(vars.secret("REFRESH_TOKEN")?),
                extra_form: &[("user_type", "Location")],
            }),
            (false, None) => {
                let message = format!(
                    "is required but not set (or set {}, {} and {} for a marketplace app)",
                    vars.name("CLIENT_ID"),
                    vars.name("CLIENT_SECRET"),
                    vars.name("REFRESH_TOKEN")
                );
                return Err(vars.error("TOKEN", message));
            }
            (true, _) => None,
        };
        Ok(GohighlevelConfig {
            credentials: Credentials { token, oauth },
            location_id: vars.required("LOCATION_ID")?,
            base_url,
        })
    }

    fn new(config: GohighlevelConfig, http: CrmHttp, shared: &Shared) -> Self {
        Self {
            http: http.authorized(&config.credentials, shared),
            config,
            field_ids: tokio::sync::OnceCell::new(),
            deal_marker: tokio::sync::OnceCell::new(),
            mapping: shared.mapping.clone(),
            resolved: RwLock::default(),
        }
    }
}

/// The contact custom fields callsync writes: field key suffix and name.
const FIELDS: [(&str, &str); 3] = [
    ("callsync_last_call_at", "callsync last call at"),
    ("callsync_last_call_summary", "callsync last call summary"),
    ("callsync_last_sentiment", "callsync last sentiment"),
];

#[derive(Debug)]
pub struct Gohighlevel {
    config: GohighlevelConfig,
    /// Requests carry the token (renewed on a 401 for a marketplace app).
    http: CrmHttp,
    /// The location's ids of [`FIELDS`], in the same order.
    field_ids: tokio::sync::OnceCell<[String; 3]>,
    /// The id of the opportunity field holding deals' markers.
    deal_marker: tokio::sync::OnceCell<String>,
    /// `CALLSYNC_MAPPING`, when set.
    mapping: Option<Arc<Mapping>>,
    /// Its `[[contact]]` rules checked against the contact fields by the
    /// last [`Crm::prepare`].
    resolved: RwLock<Arc<mapped::Resolved>>,
}

/// `POST /contacts/search`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ContactSearch<'a> {
    location_id: &'a str,
    page: u32,
    page_limit: u32,
    filters: Vec<FilterGroup<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sort: Option<[Sort; 1]>,
}

/// Filters joined by `group` (`OR`).
#[derive(Serialize)]
struct FilterGroup<'a> {
    group: &'static str,
    filters: Vec<Filter<'a>>,
}

#[derive(Serialize)]
struct Filter<'a> {
    field: &'static str,
    operator: &'static str,
    value: &'a str,
}

#[derive(Serialize)]
struct Sort {
    field: &'static str,
    direction: &'static str,
}

/// `POST /locations/{id}/customFields`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NewField<'a> {
    name: &'a str,
    data_type: &'static str,
    model: &'static str,
}

/// A custom field's value on a contact, by the field's id.
#[derive(Serialize)]
struct FieldValue {
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'static str>,
    field_value: Json,
}

/// `POST /contacts/upsert`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ContactUpsert<'a> {
    location_id: &'a str,
    source: &'static str,
    custom_fields: Vec<FieldValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_name: Option<String>,
}

/// `PUT /contacts/{id}`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ContactUpdate {
    custom_fields: Vec<FieldValue>,
}

/// `POST /contacts/{id}/notes`.
#[derive(Serialize)]
struct NewNote {
    body: String,
}

/// `POST /contacts/{id}/tasks`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NewTask {
    title: String,
    body: String,
    due_date: String,
    completed: bool,
}

#[derive(Deserialize)]
struct CustomField {
    id: String,
    #[serde(default, rename = "fieldKey")]
    field_key: String,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct CustomFields {
    #[serde(default, rename = "customFields")]
    custom_fields: Vec<CustomField>,
}

#[derive(Deserialize)]
struct CreatedField {
    #[serde(rename = "customField")]
    custom_field: CustomField,
}

#[derive(Deserialize)]
struct Id {
    id: String,
}

#[derive(Deserialize)]
struct Duplicate {
    contact: Option<Id>,
}

#[derive(Deserialize)]
struct SearchResults {
    #[serde(default)]
    contacts: Vec<FoundContact>,
}

/// A contact as `POST /contacts/search` returns it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FoundContact {
    id: String,
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    additional_phones: Option<Vec<AdditionalPhone>>,
    #[serde(default)]
    country: Option<String>,
    #[serde(default)]
    date_updated: Option<String>,
}

/// One of a contact's additional phones. GoHighLevel's search doc shows
/// them as strings (`"additionalPhones": ["123456789", "987654321"]`,
/// https://doc.clickup.com/8631005/d/h/87cpx-158396/6e629989abe7fad); other
/// answers have carried objects with a `phone`; an open issue says they are
/// not returned at all (GoHighLevel/highlevel-api-docs#331). Every shape
/// is read; an element of any other shape is skipped.
#[derive(Deserialize)]
#[serde(untagged)]
enum AdditionalPhone {
    Number(String),
    Entry {
        #[serde(default)]
        phone: Option<String>,
    },
    Other(serde::de::IgnoredAny),
}

impl AdditionalPhone {
    fn number(&self) -> Option<String> {
        match self {
            AdditionalPhone::Number(number) => Some(number.clone()),
            AdditionalPhone::Entry { phone } => phone.clone(),
            AdditionalPhone::Other(_) => None,
        }
    }
}

impl FoundContact {
    fn candidate(&self) -> Candidate {
        let main = self.phone.clone().map(|p| (PhoneField::Main, p));
        let others = self
            .additional_phones
            .iter()
            .flatten()
            .filter_map(|a| Some((PhoneField::Other, a.number()?)));
        Candidate {
            id: self.id.clone(),
            phones: main.into_iter().chain(others).collect(),
            country: self.country.clone(),
            updated: self.date_updated.as_deref().and_then(parse_updated),
        }
    }
}

/// `POST /contacts/upsert`'s answer: whether it created the contact.
#[derive(Deserialize)]
struct Upserted {
    #[serde(default)]
    new: Option<bool>,
    contact: Id,
}

/// A custom field's value as `GET /contacts/{id}` shows it
/// (`CustomFieldSchema` of `apps/contacts.json`: `id`, `value`).
#[derive(Deserialize)]
struct StoredValue {
    id: String,
    #[serde(default)]
    value: Json,
}

/// `GET /contacts/{id}`: the contact's custom field values.
#[derive(Deserialize)]
struct StoredContact {
    contact: StoredFields,
}

#[derive(Deserialize)]
struct StoredFields {
    #[serde(default, rename = "customFields")]
    custom_fields: Vec<StoredValue>,
}

#[derive(Deserialize)]
struct NoteEnvelope {
    note: Id,
}

#[derive(Deserialize)]
struct TaskEnvelope {
    task: Id,
}

#[derive(Deserialize)]
struct Bodied {
    id: String,
    #[serde(default)]
    body: Option<String>,
}

#[derive(Deserialize)]
struct Notes {
    #[serde(default)]
    notes: Vec<Bodied>,
}

#[derive(Deserialize)]
struct Tasks {
    #[serde(default)]
    tasks: Vec<Bodied>,
}

impl Gohighlevel {
    /// One search OR-ing the E.164 form (`eq`, as the docs ask) with the
    /// national significant number (`contains`): a known API issue has `eq`
    /// miss stored E.164 numbers, and `contains` finds the national forms.
    /// Hits are verified locally.
    /// https://highlevel.stoplight.io/docs/integrations/dbe4f3a00a106-search-contacts
    async fn find_by_number(&self, caller: &CallerNumber) -> Result<Option<CrmId>, CrmError> {
        let phone = |operator, value| Filter {
            field: "phone",
            operator,
            value,
        };
        let search = ContactSearch {
            location_id: &self.config.location_id,
            page: 1,
            page_limit: 100,
            filters: vec![FilterGroup {
                group: "OR",
                filters: vec![phone("eq", caller.e164()), phone("contains", caller.nsn())],
            }],
            sort: Some([Sort {
                field: "dateUpdated",
                direction: "desc",
            }]),
        };
        let found: SearchResults = self
            .json(
                SEARCH_CONTACTS,
                self.request(Method::POST, "/contacts/search").json(&search),
            )
            .await?;
        let candidates: Vec<Candidate> =
            found.contacts.iter().map(FoundContact::candidate).collect();
        Ok(choose(caller, &candidates).map(|c| c.id.clone()))
    }

    /// `/locations/{locationId}/customFields`.
    fn fields_path(&self) -> Result<String, CrmError> {
        Ok(format!(
            "/locations/{}/customFields",
            path_id(&self.config.location_id)?
        ))
    }

    /// The location's custom fields of `model`.
    async fn list_fields(&self, model: &str) -> Result<CustomFields, CrmError> {
        self.json(
            LIST_FIELDS,
            self.request(Method::GET, &self.fields_path()?)
                .query(&[("model", model)]),
        )
        .await
    }

    async fn field_ids(&self) -> Result<&[String; 3], CrmError> {
        self.field_ids
            .get_or_try_init(|| async {
                let existing = self.list_fields("contact").await?;
                let mut ids: [String; 3] = Default::default();
                for (slot, (key, name)) in ids.iter_mut().zip(FIELDS) {
                    let field = NewField {
                        name,
                        data_type: "LARGE_TEXT",
                        model: "contact",
                    };
                    *slot = self
                        .own_field(&existing, &format!("contact.{key}"), &field)
                        .await?;
                }
                Ok(ids)
            })
            .await
    }

    /// The id of the field keyed `key` (or named as `field`) among
    /// `existing`, created as `field` when missing.
    async fn own_field(
        &self,
        existing: &CustomFields,
        key: &str,
        field: &NewField<'_>,
    ) -> Result<String, CrmError> {
        let found = existing
            .custom_fields
            .iter()
            .find(|f| f.field_key == key || f.name == field.name);
        if let Some(found) = found {
            return Ok(found.id.clone());
        }
        let created: CreatedField = self
            .json(
                CREATE_FIELD,
                self.request(Method::POST, &self.fields_path()?).json(field),
            )
            .await?;
        Ok(created.custom_field.id)
    }

    /// The id of the opportunity field holding deals' markers, created once.
    async fn deal_marker_field(&self) -> Result<&str, CrmError> {
        self.deal_marker
            .get_or_try_init(|| async {
                let existing = self.list_fields("opportunity").await?;
                let field = NewField {
                    name: deals::MARKER_NAME,
                    data_type: "TEXT",
                    model: "opportunity",
                };
                self.own_field(&existing, deals::MARKER_KEY, &field).await
            })
            .await
            .map(String::as_str)
    }

    /// With `[[deal]]` rules: the marker field, and each rule's pipeline
    /// and stage checked against the location's.
    async fn prepare_deals(&self, mapping: &crate::mapping::Mapping) -> Result<(), CrmError> {
        if mapping.deal.is_empty() {
            return Ok(());
        }
        self.deal_marker_field().await?;
        let listed: deals::Pipelines = self
            .json(
                LIST_PIPELINES,
                self.request(Method::GET, "/opportunities/pipelines")
                    .query(&[("locationId", self.config.location_id.as_str())]),
            )
            .await?;
        mapping.check_deals(&listed.into_pipelines(), "GoHighLevel")
    }

    /// The contact's opportunity whose marker field holds `marker`, page
    /// by page.
    async fn opportunity_by_marker(
        &self,
        contact: &str,
        marker: &str,
    ) -> Result<Option<CrmId>, CrmError> {
        let field = self.deal_marker_field().await?;
        for page in 1.. {
            let found: deals::Found = self
                .json(
                    SEARCH_OPPORTUNITIES,
                    self.request(Method::GET, "/opportunities/search").query(&[
                        ("location_id", self.config.location_id.as_str()),
                        ("contact_id", contact),
                        ("limit", &deals::PAGE.to_string()),
                        ("page", &page.to_string()),
                    ]),
                )
                .await?;
            if let Some(hit) = found
                .opportunities
                .iter()
                .find(|o| o.carries(field, marker))
            {
                return Ok(Some(hit.id.clone()));
            }
            if found.opportunities.len() < deals::PAGE {
                break;
            }
        }
        Ok(None)
    }

    async fn custom_fields(&self, report: &CallReport) -> Result<Vec<FieldValue>, CrmError> {
        let ids = self.field_ids().await?;
        let values = [
            report.ended_at.format(&Rfc3339).unwrap_or_default(),
            render::field_summary(report),
            report.sentiment.clone().unwrap_or_default(),
        ];
        Ok(ids
            .iter()
            .zip(FIELDS)
            .zip(values)
            .map(|((id, (key, _)), value)| FieldValue {
                id: id.clone(),
                key: Some(key),
                field_value: Json::String(value),
            })
            .collect())
    }

    fn resolved(&self) -> Arc<mapped::Resolved> {
        Arc::clone(&self.resolved.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The mapped fields `report` writes with `write` among `rules` (those
    /// of [`Gohighlevel::resolved`] `keep` lets through), given their
    /// `current` values, as `customFields` items by field id.
    fn mapped_values(
        &self,
        report: &CallReport,
        write: Write,
        current: &Map<String, Json>,
        keep: impl Fn(&Bound) -> bool,
    ) -> Vec<FieldValue> {
        let resolved = self.resolved();
        let rules: Vec<Bound> = resolved.bound.iter().filter(|b| keep(b)).cloned().collect();
        let values = apply::contact_values(
            &rules,
            report,
            write,
            current,
            &mapped::wire,
            &mut |b, skip| apply::skipped(SPEC.name, report, "contact", b, skip),
        );
        values
            .into_iter()
            .filter_map(|(property, field_value)| {
                Some(FieldValue {
                    id: resolved.ids.get(&property)?.clone(),
                    key: None,
                    field_value,
                })
            })
            .collect()
    }

    /// The mapped fields of `write`, reading the contact's current values
    /// first when a rule depends on them (`if_empty`, `append`): one
    /// read-modify-write, run under the contact's write lease and repeated
    /// whole on a retry, so an appended line already there is not added
    /// again.
    async fn mapped_update(
        &self,
        contact: &str,
        report: &CallReport,
        write: Write,
    ) -> Result<Vec<FieldValue>, CrmError> {
        let current = if apply::read_first(&self.resolved().bound).is_empty() {
            Map::new()
        } else {
            self.read_mapped(contact).await?
        };
        Ok(self.mapped_values(report, write, &current, |_| true))
    }

    /// `GET /contacts/{id}`: the current values of the mapped fields, by
    /// the rules' `property`.
    async fn read_mapped(&self, contact: &str) -> Result<Map<String, Json>, CrmError> {
        let read: StoredContact = self
            .json(
                GET_CONTACT,
                self.request(Method::GET, &format!("/contacts/{}", path_id(contact)?)),
            )
            .await?;
        let resolved = self.resolved();
        let by_id: BTreeMap<&str, &str> = resolved
            .ids
            .iter()
            .map(|(property, id)| (id.as_str(), property.as_str()))
            .collect();
        Ok(read
            .contact
            .custom_fields
            .into_iter()
            .filter_map(|v| Some(((*by_id.get(v.id.as_str())?).to_owned(), v.value)))
            .collect())
    }

    /// The `if_empty` and `append` values of a contact the upsert just
    /// created, which are empty and need no read; true when written. A
    /// contact the upsert matched (`new` false, or not said), or a write
    /// that failed, is left to the engine's update of the contact, which
    /// reads the fields first under the contact's write lease.
    async fn fill_new(&self, contact: &str, report: &CallReport, new: Option<bool>) -> bool {
        if new != Some(true) {
            return false;
        }
        let values = self.mapped_values(report, Write::New, &Map::new(), |b| {
            b.rule.mode != Mode::Overwrite
        });
        if values.is_empty() {
            return true;
        }
        match self.put_fields(contact, values).await {
            Ok(()) => true,
            Err(error) => {
                tracing::debug!(%error, "the new contact's mapped fields are written with its update");
                false
            }
        }
    }

    /// `PUT /contacts/{id}` with `custom_fields`.
    async fn put_fields(
        &self,
        contact: &str,
        custom_fields: Vec<FieldValue>,
    ) -> Result<(), CrmError> {
        let path = format!("/contacts/{}", path_id(contact)?);
        let update = ContactUpdate { custom_fields };
        self.perform(
            UPDATE_CONTACT,
            self.request(Method::PUT, &path).json(&update),
        )
        .await
    }

    /// Sends a request to `endpoint` and decodes its answer; a refusal
    /// for a missing scope names the scope.
    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        endpoint: Endpoint,
        request: RequestBuilder,
    ) -> Result<T, CrmError> {
        self.http
            .json(endpoint.operation, request)
            .await
            .map_err(naming_scope(endpoint))
    }

    /// [`Gohighlevel::json`] for an answer that carries nothing needed.
    async fn perform(&self, endpoint: Endpoint, request: RequestBuilder) -> Result<(), CrmError> {
        self.http
            .perform(endpoint.operation, request)
            .await
            .map_err(naming_scope(endpoint))
    }

    /// Whether the token holds `scope`, proven by a request to an endpoint
    /// that needs it and changes nothing: any answer but GoHighLevel's
    /// refusal for the scope proves it (a 4xx for the request itself too:
    /// GoHighLevel checks a route's scope before its input, as the order of
    /// its answers to integrators shows).
    async fn holds(&self, scope: Scope) -> Result<bool, CrmError> {
        let location = path_id(&self.config.location_id)?;
        let fields = format!("/locations/{location}/customFields");
        let (endpoint, request) = match scope.name {
            "contacts.readonly" => (
                SEARCH_CONTACTS,
                self.request(Method::POST, "/contacts/search")
                    .json(&self.one_contact()),
            ),
            // An update of a contact that cannot exist (GoHighLevel ids are
            // 20 letters and digits; this one has a dash) with nothing to
            // change: refused as unknown, or for the scope.
            "contacts.write" => (
                UPDATE_CONTACT,
                self.request(Method::PUT, "/contacts/callsync-check-none")
                    .json(&serde_json::json!({})),
            ),
            "locations/customFields.readonly" => (
                LIST_FIELDS,
                self.request(Method::GET, &fields)
                    .query(&[("model", "contact")]),
            ),
            // A field without its required `name` and `dataType`: refused as
            // invalid (422), or for the scope; never created.
            _ => (
                CREATE_FIELD,
                self.request(Method::POST, &fields)
                    .json(&serde_json::json!({})),
            ),
        };
        match self.http.perform(endpoint.operation, request).await {
            Ok(()) | Err(CrmError::Rejected { .. } | CrmError::Forbidden { .. }) => Ok(true),
            Err(CrmError::Setup { .. }) => Ok(false),
            Err(other) => Err(other),
        }
    }

    /// A search for one contact of the location, any.
    fn one_contact(&self) -> ContactSearch<'_> {
        ContactSearch {
            location_id: &self.config.location_id,
            page: 1,
            page_limit: 1,
            filters: Vec::new(),
            sort: None,
        }
    }

    /// A request without credentials: [`CrmHttp`] adds the token.
    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .client()
            .request(method, format!("{}{path}", self.config.base_url))
            .header("Version", API_VERSION)
    }
}

/// GoHighLevel ids are opaque strings; keep them out of paths unescaped.
fn path_id(id: &str) -> Result<&str, CrmError> {
    if !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        Ok(id)
    } else {
        Err(CrmError::not_an_id(id, "a GoHighLevel id"))
    }
}

#[async_trait]
impl Crm for Gohighlevel {
    fn name(&self) -> &'static str {
        SPEC.name
    }

    /// One contact of the location: read-only, and refused without the
    /// contacts scope or for another location's token.
    async fn probe(&self) -> Result<(), CrmError> {
        self.perform(
            Endpoint::new(Operation::general("probe"), CONTACTS_READ),
            self.request(Method::POST, "/contacts/search")
                .json(&self.one_contact()),
        )
        .await
    }

    /// GoHighLevel does not say which scopes a token holds: each is proven
    /// by a request that needs it (see [`Gohighlevel::holds`]).
    async fn permissions(&self) -> Result<Vec<Permission>, CrmError> {
        let mut permissions = Vec::with_capacity(SCOPES.len());
        for scope in SCOPES {
            permissions.push(Permission {
                name: scope.name,
                needed_for: scope.needed_for,
                granted: self.holds(scope).await?,
            });
        }
        Ok(permissions)
    }

    async fn prepare(&self) -> Result<(), CrmError> {
        let own = self.field_ids().await?;
        if let Some(mapping) = &self.mapping {
            self.prepare_deals(mapping).await?;
            let path = format!(
                "/locations/{}/customFields",
                path_id(&self.config.location_id)?
            );
            #[derive(Deserialize)]
            struct Listed {
                #[serde(default, rename = "customFields")]
                custom_fields: Vec<mapped::Definition>,
            }
            let listed: Listed = self
                .json(
                    LIST_FIELDS,
                    self.request(Method::GET, &path)
                        .query(&[("model", "contact")]),
                )
                .await?;
            let resolved = mapped::check(mapping, &listed.custom_fields, own)?;
            *self
                .resolved
                .write()
                .unwrap_or_else(PoisonError::into_inner) = Arc::new(resolved);
        }
        Ok(())
    }

    fn writes_every_call(&self) -> bool {
        !apply::read_first(&self.resolved().bound).is_empty()
    }

    async fn update_older(&self, contact: &str, report: &CallReport) -> Result<(), CrmError> {
        let mapped = self.mapped_update(contact, report, Write::Older).await?;
        if mapped.is_empty() {
            return Ok(());
        }
        self.put_fields(contact, mapped).await
    }

    async fn contact_exists(&self, id: &str) -> Result<bool, CrmError> {
        let Ok(id) = path_id(id) else {
            return Ok(false);
        };
        self.http
            .exists(
                GET_CONTACT.operation,
                self.request(Method::GET, &format!("/contacts/{id}")),
                &[StatusCode::NOT_FOUND, StatusCode::BAD_REQUEST],
            )
            .await
            .map_err(naming_scope(GET_CONTACT))
    }

    async fn find_contact(&self, lookup: &ContactLookup) -> Result<Option<CrmId>, CrmError> {
        if let Some(caller) = &lookup.caller
            && let Some(id) = self.find_by_number(caller).await?
        {
            return Ok(Some(id));
        }
        let mut query = vec![("locationId", self.config.location_id.clone())];
        if lookup.caller.is_none()
            && let Some(phone) = &lookup.phone
        {
            query.push(("number", phone.clone()));
        }
        if let Some(email) = &lookup.email {
            query.push(("email", email.clone()));
        }
        if query.len() == 1 {
            return Ok(None);
        }
        let found: Duplicate = self
            .json(
                SEARCH_DUPLICATE,
                self.request(Method::GET, "/contacts/search/duplicate")
                    .query(&query),
            )
            .await?;
        Ok(found.contact.map(|c| c.id))
    }

    async fn create_contact(&self, contact: &NewContact<'_>) -> Result<Created, CrmError> {
        let caller = &contact.report.caller;
        let (first_name, last_name) = match caller.name.as_deref().map(render::split_name) {
            Some((first, last)) => (Some(first), last),
            None => (None, None),
        };
        // The upsert may match a contact the search did not show yet (its
        // duplicate rules see every contact): it carries the `overwrite`
        // values only, which would be written anyway, never an `if_empty`
        // or `append` value that would replace what that contact holds.
        let mut custom_fields = self.custom_fields(contact.report).await?;
        custom_fields.extend(
            self.mapped_values(contact.report, Write::New, &Map::new(), |b| {
                b.rule.mode == Mode::Overwrite
            }),
        );
        let upsert = ContactUpsert {
            location_id: &self.config.location_id,
            source: "callsync",
            custom_fields,
            phone: caller.phone.as_ref().map(|p| p.best()),
            email: caller.email.as_deref(),
            name: caller.name.as_deref(),
            first_name,
            last_name,
        };
        let created: Upserted = self
            .json(
                UPSERT_CONTACT,
                self.request(Method::POST, "/contacts/upsert").json(&upsert),
            )
            .await?;
        let id = created.contact.id;
        // An upsert writes the custom fields whether it created or matched.
        if self.writes_every_call() {
            return Ok(Created {
                has_last_call: self.fill_new(&id, contact.report, created.new).await,
                id,
            });
        }
        Ok(Created {
            id,
            has_last_call: true,
        })
    }

    async fn record_call(&self, contact: &str, report: &CallReport) -> Result<CrmId, CrmError> {
        let note = NewNote {
            body: format!(
                "<p><b>{}</b></p>\n{}",
                render::escape(&render::call_title(report)),
                render::call_body_html(report)
            ),
        };
        let created: NoteEnvelope = self
            .json(
                CREATE_NOTE,
                self.request(
                    Method::POST,
                    &format!("/contacts/{}/notes", path_id(contact)?),
                )
                .json(&note),
            )
            .await?;
        Ok(created.note.id)
    }

    async fn update_contact(&self, contact: &str, report: &CallReport) -> Result<(), CrmError> {
        let mut custom_fields = self.custom_fields(report).await?;
        custom_fields.extend(self.mapped_update(contact, report, Write::Newest).await?);
        self.put_fields(contact, custom_fields).await
    }

    async fn create_follow_up(
        &self,
        contact: &str,
        report: &CallReport,
        due: OffsetDateTime,
    ) -> Result<CrmId, CrmError> {
        let task = NewTask {
            title: render::task_subject(report),
            body: render::task_body_html(report),
            due_date: due
                .to_offset(time::UtcOffset::UTC)
                .format(&Rfc3339)
                .unwrap_or_default(),
            completed: false,
        };
        let created: TaskEnvelope = self
            .json(
                CREATE_TASK,
                self.request(
                    Method::POST,
                    &format!("/contacts/{}/tasks", path_id(contact)?),
                )
                .json(&task),
            )
            .await?;
        Ok(created.task.id)
    }

    async fn create_deal(&self, deal: &NewDeal<'_>) -> Result<CrmId, CrmError> {
        let opportunity = deals::NewOpportunity {
            pipeline_id: &deal.rule.pipeline,
            location_id: &self.config.location_id,
            name: deal.rule.name(deal.report, deals::MAX_NAME),
            pipeline_stage_id: &deal.rule.stage,
            status: "open",
            contact_id: deal.contact,
            custom_fields: [deals::MarkerValue {
                id: self.deal_marker_field().await?.to_owned(),
                field_value: deal.rule.marker(deal.report),
            }],
        };
        let created: deals::Created = self
            .json(
                CREATE_OPPORTUNITY,
                self.request(Method::POST, "/opportunities/")
                    .json(&opportunity),
            )
            .await?;
        Ok(created.opportunity.id)
    }

    async fn find_marked(
        &self,
        kind: MarkedRecord,
        contact: &str,
        marker: &str,
    ) -> Result<Option<CrmId>, CrmError> {
        let contact = path_id(contact)?;
        let records = match kind {
            MarkedRecord::CallLog => {
                let notes: Notes = self
                    .json(
                        LIST_NOTES,
                        self.request(Method::GET, &format!("/contacts/{contact}/notes")),
                    )
                    .await?;
                notes.notes
            }
            MarkedRecord::FollowUp => {
                let tasks: Tasks = self
                    .json(
                        LIST_TASKS,
                        self.request(Method::GET, &format!("/contacts/{contact}/tasks")),
                    )
                    .await?;
                tasks.tasks
            }
            MarkedRecord::Deal(_) => return self.opportunity_by_marker(contact, marker).await,
        };
        Ok(records
            .into_iter()
            .find(|r| render::holds_marker(r.body.as_deref().unwrap_or_default(), marker))
            .map(|r| r.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(body: &str) -> Vec<Candidate> {
        let results: SearchResults = serde_json::from_str(body).unwrap();
        results
            .contacts
            .iter()
            .map(FoundContact::candidate)
            .collect()
    }

    fn phones(candidate: &Candidate) -> Vec<&str> {
        candidate.phones.iter().map(|(_, p)| p.as_str()).collect()
    }

    #[test]
    fn additional_phones_are_read_as_the_search_doc_shows_them_strings() {
        let body = r#"{"contacts":[{"id":"a","phone":"+31612345678","additionalPhones":["123456789","987654321"]}]}"#;
        let candidates = found(body);
        assert_eq!(
            phones(&candidates[0]),
            ["+31612345678", "123456789", "987654321"]
        );
    }

    #[test]
    fn additional_phones_as_objects_null_or_absent_are_read_too() {
        let objects = r#"{"contacts":[{"id":"a","additionalPhones":[{"phone":"+31612345678","phoneLabel":"work"},{"phoneLabel":"home"},7]}]}"#;
        assert_eq!(phones(&found(objects)[0]), ["+31612345678"]);
        let null = r#"{"contacts":[{"id":"a","phone":"+31612345678","additionalPhones":null}]}"#;
        assert_eq!(phones(&found(null)[0]), ["+31612345678"]);
        let absent = r#"{"contacts":[{"id":"a"}]}"#;
        assert!(phones(&found(absent)[0]).is_empty());
    }

    #[test]
    fn a_refusal_for_a_missing_scope_is_an_incomplete_set_up_and_another_is_not() {
        let scope = r#"{"statusCode":401,"message":"The token is not authorized for this scope."}"#;
        assert_eq!(read_refusal(scope), Some(Refusal::Setup));
        let invalid = r#"{"statusCode":401,"message":"Invalid token: access token is invalid","error":"Unauthorized"}"#;
        assert_eq!(read_refusal(invalid), None);
        let listed = r#"{"statusCode":422,"message":["name should not be empty"]}"#;
        assert_eq!(read_refusal(listed), None);
    }

    #[test]
    fn a_set_up_refusal_names_the_scope_of_its_endpoint() {
        let error = naming_scope(LIST_FIELDS)(CrmError::Setup {
            detail: "401: not authorized for this scope".to_owned(),
        });
        assert!(
            error
                .to_string()
                .contains("the token lacks the scope locations/customFields.readonly"),
            "{error}"
        );
    }
}
