//! Pipedrive (API v2 where it exists, v1 for notes and person fields).
//!
//! | step | request |
//! |---|---|
//! | find contact | `GET /api/v2/persons/search?fields=phone&term=<last four digits>` (partial), hits verified locally; then `fields=email&exact_match=true` |
//! | create contact | `POST /api/v2/persons` (name, phone, e-mail, last-call fields) |
//! | record call | `POST /api/v1/notes` on the person: summary, analysis, links, marker |
//! | update contact | `PATCH /api/v2/persons/{id}` (`custom_fields`: last-call fields) |
//! | follow-up | `POST /api/v2/activities` of type `call`, due date and time, person as participant |
//! | deal (`[[deal]]`) | `POST /api/v2/deals` on the person, marker in a deal field; see `deals.rs` |
//! | find by marker | `GET /api/v1/notes?person_id=` / `GET /api/v2/activities?person_id=`, marker in the content / `GET /api/v2/deals?person_id=`, marker field; every page |
//!
//! The call is recorded as a note, not a call log: Pipedrive's call logs
//! cannot be listed by person or searched, so after an unknown outcome there
//! would be no way to find one again, and exactly-once would be lost.
//! The last-call person fields are created by [`Crm::prepare`] when missing;
//! Pipedrive names them by a generated key, which is looked up by name.
//!
//! Every path is under `/api/`, on the company domain: "Each request must be
//! made to the API endpoint https://{COMPANYDOMAIN}.pipedrive.com/api/v1"
//! (https://pipedrive.readme.io/docs/core-api-concepts-requests), and for v2
//! "Only /api/v2/... prefix is supported. Previously both /api/v1/... and
//! /v1/... could be used."
//! (https://pipedrive.readme.io/docs/pipedrive-api-v2-migration-guide).

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use callsync_shared::CallReport;
use callsync_shared::config::{ConfigError, Secret};
use callsync_shared::phone::matching::{
    CallerNumber, Candidate, PhoneField, choose, parse_updated,
};
use reqwest::{Method, RequestBuilder, StatusCode};
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use time::OffsetDateTime;
use time::macros::format_description;
use tokio::sync::OnceCell;

use super::render;
use crate::mapping::apply::{self, Bound, Write};

mod deals;
mod mapped;
use super::{
    Adapter, ContactLookup, Created, Crm, CrmError, CrmHttp, CrmId, CrmSpec, MarkedRecord,
    NewContact, NewDeal, Operation, Refusal, Shared, Vars, configure,
};

/// `CALLSYNC_PIPEDRIVE_*`.
#[derive(Debug, Clone)]
pub struct PipedriveConfig {
    pub token: Secret,
    /// The company domain, e.g. `https://acme.pipedrive.com`.
    pub base_url: String,
}

/// How `CALLSYNC_CRM=pipedrive` is read and built.
pub const SPEC: CrmSpec = CrmSpec {
    name: "pipedrive",
    // Token-based limits in 2-second burst windows.
    default_rate: "20/2s",
    // The search API allows 10 requests per 2 s per token.
    // https://pipedrive.readme.io/docs/core-api-concepts-rate-limiting
    default_search_rate: "10/2s",
    // Notes, tasks and activities are listed per contact, not searched:
    // they show at once. Give replicas a moment anyway.
    default_index_lag: Duration::from_secs(5),
    configure: configure::<Pipedrive>,
    read_refusal,
    credential_help: "set CALLSYNC_PIPEDRIVE_TOKEN to a valid API token (Personal \
        preferences > API) of a user who may add persons, notes and activities",
    maps_fields: super::Mapped::ContactOnly(
        "Pipedrive records the call as a note, which has no fields of its own",
    ),
    writes_deals: true,
};

/// Pipedrive refuses an OAuth app's request outside its granted scopes
/// with "Scope and URL mismatch" in `error`.
fn read_refusal(body: &str) -> Option<Refusal> {
    #[derive(Deserialize)]
    struct Error {
        #[serde(default)]
        error: String,
    }
    let error: Error = serde_json::from_str(body).ok()?;
    error
        .error
        .contains("Scope and URL mismatch")
        .then_some(Refusal::Credential)
}

impl Adapter for Pipedrive {
    type Settings = PipedriveConfig;

    fn settings(vars: Vars<'_>) -> Result<PipedriveConfig, ConfigError> {
        Ok(PipedriveConfig {
            token: vars.secret("TOKEN")?,
            base_url: vars.required_url("BASE_URL")?,
        })
    }

    fn new(config: PipedriveConfig, http: CrmHttp, shared: &Shared) -> Self {
        Self {
            config,
            http,
            fields: OnceCell::new(),
            deal_marker: OnceCell::new(),
            mapping: shared.mapping.clone(),
            resolved: RwLock::default(),
        }
    }
}

/// The custom person fields callsync writes, by display name.
const FIELDS: [(&str, &str); 3] = [
    ("last_call_at", "callsync last call at"),
    ("last_call_summary", "callsync last call summary"),
    ("last_sentiment", "callsync last sentiment"),
];

/// The generated keys of [`FIELDS`], in the same order.
#[derive(Debug, Clone)]
struct FieldKeys([String; 3]);

#[derive(Debug)]
pub struct Pipedrive {
    config: PipedriveConfig,
    http: CrmHttp,
    fields: OnceCell<FieldKeys>,
    /// The generated key of the deal field holding a deal's marker.
    deal_marker: OnceCell<String>,
    /// `CALLSYNC_MAPPING`, when set.
    mapping: Option<Arc<crate::mapping::Mapping>>,
    /// Its `[[contact]]` rules checked against the person fields by the
    /// last [`Crm::prepare`].
    resolved: RwLock<Arc<Vec<Bound>>>,
}

#[derive(Deserialize)]
struct Envelope<T> {
    data: T,
}

#[derive(Deserialize)]
struct Id {
    id: i64,
}

#[derive(Deserialize)]
struct SearchData {
    #[serde(default)]
    items: Vec<SearchItem>,
}

/// One page of a v2 search.
#[derive(Deserialize)]
struct SearchPage {
    data: SearchData,
    #[serde(default)]
    additional_data: Option<Paging>,
}

/// How many of a number's last digits a phone search looks for: four stay
/// together however a number is grouped (`06 1234 5678`, `(415) 555-0123`,
/// `+31 (0)6 45678901`), only a number written in pairs (`06 12 34 56 78`)
/// splits them. Four digits also match other numbers, which the local check
/// tells apart.
const SEARCH_DIGITS: usize = 4;

/// The phone search term for `caller`: the last [`SEARCH_DIGITS`] digits of
/// its national significant number (all of it when shorter).
fn search_term(caller: &CallerNumber) -> &str {
    let nsn = caller.nsn();
    &nsn[nsn.len().saturating_sub(SEARCH_DIGITS)..]
}

#[derive(Deserialize)]
struct SearchItem {
    item: Person,
}

/// A person as search and `GET /api/v2/persons/{id}` return it.
#[derive(Deserialize)]
struct Person {
    id: i64,
    #[serde(default)]
    phones: Option<Vec<PersonPhone>>,
    #[serde(default)]
    update_time: Option<String>,
}

/// A search item lists phones as typed strings; a person read lists
/// objects with their primary flag and label. Both are accepted.
#[derive(Deserialize)]
#[serde(untagged)]
enum PersonPhone {
    Text(String),
    Entry {
        #[serde(default)]
        value: Option<String>,
        #[serde(default)]
        primary: bool,
        #[serde(default)]
        label: Option<String>,
    },
}

impl Person {
    fn has_phones(&self) -> bool {
        self.phones.as_ref().is_some_and(|p| !p.is_empty())
    }

    /// The person's numbers, ranked: the primary one is the main phone
    /// (the first, when only strings are given).
    fn candidate(&self) -> Candidate {
        let phones = self
            .phones
            .iter()
            .flatten()
            .enumerate()
            .filter_map(|(i, phone)| match phone {
                PersonPhone::Text(value) => {
                    let field = if i == 0 {
                        PhoneField::Main
                    } else {
                        PhoneField::Other
                    };
                    Some((field, value.clone()))
                }
                PersonPhone::Entry {
                    value,
                    primary,
                    label,
                } => {
                    let field = if *primary {
                        PhoneField::Main
                    } else if label.as_deref() == Some("mobile") {
                        PhoneField::Mobile
                    } else {
                        PhoneField::Other
                    };
                    Some((field, value.clone()?))
                }
            })
            .collect();
        Candidate {
            id: self.id.to_string(),
            phones,
            // Pipedrive persons have no country of their own.
            country: None,
            updated: self.update_time.as_deref().and_then(parse_updated),
        }
    }
}

#[derive(Deserialize)]
struct Field {
    key: String,
    name: String,
}

/// `POST /api/v1/personFields`.
#[derive(Serialize)]
struct NewField<'a> {
    name: &'a str,
    field_type: &'static str,
}

/// Values of the custom person fields, by their generated keys.
type CustomFields = BTreeMap<String, Json>;

/// `POST /api/v2/persons`.
#[derive(Serialize)]
struct NewPerson<'a> {
    name: String,
    custom_fields: CustomFields,
    #[serde(skip_serializing_if = "Option::is_none")]
    phones: Option<[Labelled<'a>; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    emails: Option<[Labelled<'a>; 1]>,
}

/// A person's phone or e-mail.
#[derive(Serialize)]
struct Labelled<'a> {
    value: &'a str,
    primary: bool,
    label: &'static str,
}

impl<'a> Labelled<'a> {
    fn primary(value: &'a str, label: &'static str) -> Option<[Self; 1]> {
        Some([Self {
            value,
            primary: true,
            label,
        }])
    }
}

/// `PATCH /api/v2/persons/{id}`.
#[derive(Serialize)]
struct PersonUpdate {
    custom_fields: CustomFields,
}

/// `POST /api/v1/notes`.
#[derive(Serialize)]
struct NewNote {
    content: String,
    person_id: i64,
}

/// `POST /api/v2/activities`.
#[derive(Serialize)]
struct NewActivity {
    subject: String,
    #[serde(rename = "type")]
    kind: &'static str,
    due_date: String,
    due_time: String,
    done: bool,
    participants: [Participant; 1],
    note: String,
}

#[derive(Serialize)]
struct Participant {
    person_id: i64,
    primary: bool,
}

#[derive(Deserialize)]
struct Content {
    id: i64,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    note: Option<String>,
    /// A deal's custom field values (v2), the marker's among them.
    #[serde(default)]
    custom_fields: Option<Map<String, Json>>,
}

impl Content {
    /// Whether this note, activity or deal carries `marker`: in a note's
    /// or activity's text (HTML-escaped), or exactly in a deal's field
    /// `deal_key`.
    fn carries(&self, marker: &str, deal_key: Option<&str>) -> bool {
        match deal_key {
            Some(key) => {
                self.custom_fields
                    .as_ref()
                    .and_then(|fields| fields.get(key))
                    .and_then(Json::as_str)
                    == Some(marker)
            }
            None => self
                .content
                .as_deref()
                .or(self.note.as_deref())
                .is_some_and(|text| render::holds_marker(text, marker)),
        }
    }
}

/// The largest page Pipedrive serves (v1 and v2 alike).
/// https://pipedrive.readme.io/docs/core-api-concepts-pagination
const PAGE: usize = 500;

/// One page of a list: v1 pages by offset, v2 by cursor.
#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    data: Option<Vec<Content>>,
    #[serde(default)]
    additional_data: Option<Paging>,
}

#[derive(Deserialize)]
struct Paging {
    /// v1: `{start, limit, more_items_in_collection, next_start}`.
    #[serde(default)]
    pagination: Option<Offset>,
    /// v2: the first item of the next page, null on the last one.
    #[serde(default)]
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct Offset {
    #[serde(default)]
    more_items_in_collection: bool,
    #[serde(default)]
    next_start: Option<usize>,
}

/// Where the next page of a list starts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Next {
    Start(usize),
    Cursor(String),
}

impl Page {
    /// The next page after this one, which began at `start` (v1).
    fn next(&self, start: usize) -> Result<Option<Next>, CrmError> {
        let Some(paging) = &self.additional_data else {
            return Ok(None);
        };
        if let Some(cursor) = &paging.next_cursor {
            return Ok(Some(Next::Cursor(cursor.clone())));
        }
        match &paging.pagination {
            Some(Offset {
                more_items_in_collection: true,
                next_start,
            }) => match next_start {
                // A page that does not move forward would be read forever.
                Some(next) if *next > start => Ok(Some(Next::Start(*next))),
                _ => Err(CrmError::InvalidResponse(format!(
                    "more items after offset {start} but no next_start beyond it"
                ))),
            },
            _ => Ok(None),
        }
    }
}

impl Pipedrive {
    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .client()
            .request(method, format!("{}{path}", self.config.base_url))
            .header("x-api-token", self.config.token.expose())
    }

    async fn field_keys(&self) -> Result<&FieldKeys, CrmError> {
        self.fields
            .get_or_try_init(|| async {
                let existing: Envelope<Option<Vec<Field>>> = self
                    .http
                    .json(
                        "list_fields",
                        self.request(Method::GET, "/api/v1/personFields"),
                    )
                    .await?;
                let existing = existing.data.unwrap_or_default();
                let mut keys: [String; 3] = Default::default();
                for (slot, (_, name)) in keys.iter_mut().zip(FIELDS) {
                    *slot = self
                        .own_field("/api/v1/personFields", &existing, name, "text")
                        .await?;
                }
                Ok(FieldKeys(keys))
            })
            .await
    }

    /// The key of the field `name` among `existing` (listed at `path`),
    /// created there as a `field_type` field when missing.
    async fn own_field(
        &self,
        path: &str,
        existing: &[Field],
        name: &str,
        field_type: &'static str,
    ) -> Result<String, CrmError> {
        if let Some(field) = existing.iter().find(|f| f.name == name) {
            return Ok(field.key.clone());
        }
        let field = NewField { name, field_type };
        let created: Envelope<Field> = self
            .http
            .json(
                "create_field",
                self.request(Method::POST, path).json(&field),
            )
            .await?;
        Ok(created.data.key)
    }

    /// The key of the deal field holding deals' markers, created once.
    async fn deal_marker_key(&self) -> Result<&str, CrmError> {
        self.deal_marker
            .get_or_try_init(|| async {
                let existing: Envelope<Option<Vec<Field>>> = self
                    .http
                    .json(
                        "list_deal_fields",
                        self.request(Method::GET, "/api/v1/dealFields"),
                    )
                    .await?;
                let existing = existing.data.unwrap_or_default();
                self.own_field(
                    "/api/v1/dealFields",
                    &existing,
                    deals::MARKER_FIELD,
                    "varchar",
                )
                .await
            })
            .await
            .map(String::as_str)
    }

    /// With `[[deal]]` rules: the marker field, and each rule's pipeline
    /// and stage checked against the company's (a set-up error naming the
    /// rule's line when one is missing).
    async fn prepare_deals(&self, mapping: &crate::mapping::Mapping) -> Result<(), CrmError> {
        if mapping.deal.is_empty() {
            return Ok(());
        }
        self.deal_marker_key().await?;
        let listed: Envelope<Option<Vec<deals::ListedPipeline>>> = self
            .http
            .json(
                "list_pipelines",
                self.request(Method::GET, "/api/v1/pipelines"),
            )
            .await?;
        let stages: Envelope<Option<Vec<deals::ListedStage>>> = self
            .http
            .json("list_stages", self.request(Method::GET, "/api/v1/stages"))
            .await?;
        let pipelines = deals::pipelines(
            listed.data.unwrap_or_default(),
            &stages.data.unwrap_or_default(),
        );
        mapping.check_deals(&pipelines, "Pipedrive")
    }

    async fn patch_person(
        &self,
        contact: &str,
        custom_fields: CustomFields,
    ) -> Result<(), CrmError> {
        let update = PersonUpdate { custom_fields };
        self.http
            .perform(
                "update_person",
                self.request(
                    Method::PATCH,
                    &format!("/api/v2/persons/{}", person_id(contact)?),
                )
                .json(&update),
            )
            .await
    }

    fn resolved(&self) -> Arc<Vec<Bound>> {
        Arc::clone(&self.resolved.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn contact_values(
        &self,
        report: &CallReport,
        write: Write,
        current: &Map<String, Json>,
    ) -> Map<String, Json> {
        apply::contact_values(
            &self.resolved(),
            report,
            write,
            current,
            &mapped::wire,
            &mut |b, skip| apply::skipped(SPEC.name, report, "contact", b, skip),
        )
    }

    /// The mapped person fields of `write`, reading the current values
    /// first when a rule depends on them (`if_empty`, `append`): one
    /// read-modify-write, run under the contact's write lease and repeated
    /// whole on a retry, so an appended line already there is not added
    /// again.
    async fn mapped_update(
        &self,
        contact: &str,
        report: &CallReport,
        write: Write,
    ) -> Result<Map<String, Json>, CrmError> {
        let resolved = self.resolved();
        let current = if apply::read_first(&resolved).is_empty() {
            Map::new()
        } else {
            self.read_custom_fields(contact).await?
        };
        Ok(self.contact_values(report, write, &current))
    }

    /// `GET /api/v2/persons/{id}`: its `custom_fields`, every custom field
    /// by key (`null` when empty).
    async fn read_custom_fields(&self, contact: &str) -> Result<Map<String, Json>, CrmError> {
        #[derive(Deserialize)]
        struct Read {
            #[serde(default)]
            custom_fields: Map<String, Json>,
        }
        let read: Envelope<Read> = self
            .http
            .json(
                "read_person_fields",
                self.request(
                    Method::GET,
                    &format!("/api/v2/persons/{}", person_id(contact)?),
                ),
            )
            .await?;
        Ok(read.data.custom_fields)
    }

    async fn last_call_fields(&self, report: &CallReport) -> Result<CustomFields, CrmError> {
        let keys = &self.field_keys().await?.0;
        let values = [
            report
                .ended_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            render::field_summary(report),
            report.sentiment.clone().unwrap_or_default(),
        ];
        Ok(keys.iter().cloned().zip(values.map(Json::String)).collect())
    }

    /// Every person whose `field` matches `term`, page after page (500 a
    /// page, the most Pipedrive serves).
    async fn search(&self, field: &str, term: &str, exact: bool) -> Result<Vec<Person>, CrmError> {
        let mut persons = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![
                ("term", term.to_owned()),
                ("fields", field.to_owned()),
                ("limit", PAGE.to_string()),
            ];
            if exact {
                query.push(("exact_match", "true".to_owned()));
            }
            if let Some(cursor) = &cursor {
                query.push(("cursor", cursor.clone()));
            }
            let found: SearchPage = self
                .http
                .json(
                    Operation::search("search_person"),
                    self.request(Method::GET, "/api/v2/persons/search")
                        .query(&query),
                )
                .await?;
            persons.extend(found.data.items.into_iter().map(|i| i.item));
            let next = found.additional_data.and_then(|a| a.next_cursor);
            match next {
                // A cursor that does not move on would be read forever.
                Some(next) if cursor.as_ref() == Some(&next) => {
                    return Err(CrmError::InvalidResponse(format!(
                        "person search answered its own cursor {next} as the next one"
                    )));
                }
                Some(next) => cursor = Some(next),
                None => return Ok(persons),
            }
        }
    }

    /// Pipedrive documents no phone normalisation, and how a partial term
    /// is compared with a stored number is not documented; the strictest
    /// reading is that the term must appear in the number as it was typed
    /// (`GET /api/v2/persons/search`, developers.pipedrive.com). The
    /// national significant number misses `06 12345678`, `+31 6 1234 5678`
    /// or `(415) 555-0123`, so the search term is the number's last
    /// [`SEARCH_DIGITS`] digits, which stay together in every common way of
    /// writing a number; every hit is verified locally.
    async fn find_by_number(&self, caller: &CallerNumber) -> Result<Option<CrmId>, CrmError> {
        let mut candidates = Vec::new();
        for person in self.search("phone", search_term(caller), false).await? {
            let person = if person.has_phones() {
                person
            } else {
                let read: Envelope<Person> = self
                    .http
                    .json(
                        "get_person",
                        self.request(Method::GET, &format!("/api/v2/persons/{}", person.id)),
                    )
                    .await?;
                read.data
            };
            candidates.push(person.candidate());
        }
        Ok(choose(caller, &candidates).map(|c| c.id.clone()))
    }

    /// One page of a person's notes (v1, by offset) or activities (v2, by cursor).
    async fn list_page(
        &self,
        operation: &'static str,
        path: &str,
        person: &str,
        next: Option<&Next>,
    ) -> Result<Page, CrmError> {
        let limit = PAGE.to_string();
        let mut query = vec![("person_id", person.to_owned()), ("limit", limit)];
        match next {
            Some(Next::Start(start)) => query.push(("start", start.to_string())),
            Some(Next::Cursor(cursor)) => query.push(("cursor", cursor.clone())),
            None => {}
        }
        self.http
            .json(operation, self.request(Method::GET, path).query(&query))
            .await
    }

    async fn create(
        &self,
        operation: &'static str,
        path: &str,
        body: &(impl Serialize + Sync),
    ) -> Result<CrmId, CrmError> {
        let created: Envelope<Id> = self
            .http
            .json(operation, self.request(Method::POST, path).json(body))
            .await?;
        Ok(created.data.id.to_string())
    }
}

/// Pipedrive ids are integers; a non-numeric id cannot be one.
fn person_id(contact: &str) -> Result<i64, CrmError> {
    contact
        .parse()
        .map_err(|_| CrmError::not_an_id(contact, "a Pipedrive person id"))
}

#[async_trait]
impl Crm for Pipedrive {
    fn name(&self) -> &'static str {
        SPEC.name
    }

    /// The token's own user: read-only, and refused for a wrong token.
    async fn probe(&self) -> Result<(), CrmError> {
        self.http
            .perform("probe", self.request(Method::GET, "/api/v1/users/me"))
            .await
    }

    async fn prepare(&self) -> Result<(), CrmError> {
        let own = self.field_keys().await?;
        if let Some(mapping) = &self.mapping {
            self.prepare_deals(mapping).await?;
            let listed: Envelope<Option<Vec<mapped::Definition>>> = self
                .http
                .json(
                    "list_fields",
                    self.request(Method::GET, "/api/v1/personFields"),
                )
                .await?;
            let bound = mapped::check(mapping, &listed.data.unwrap_or_default(), &own.0)?;
            *self
                .resolved
                .write()
                .unwrap_or_else(PoisonError::into_inner) = Arc::new(bound);
        }
        Ok(())
    }

    fn writes_every_call(&self) -> bool {
        !apply::read_first(&self.resolved()).is_empty()
    }

    async fn update_older(&self, contact: &str, report: &CallReport) -> Result<(), CrmError> {
        let mapped = self.mapped_update(contact, report, Write::Older).await?;
        if mapped.is_empty() {
            return Ok(());
        }
        self.patch_person(contact, mapped.into_iter().collect())
            .await
    }

    async fn contact_exists(&self, id: &str) -> Result<bool, CrmError> {
        if id.parse::<i64>().is_err() {
            return Ok(false);
        }
        self.http
            .exists(
                "get_person",
                self.request(Method::GET, &format!("/api/v2/persons/{id}")),
                &[StatusCode::NOT_FOUND],
            )
            .await
    }

    async fn find_contact(&self, lookup: &ContactLookup) -> Result<Option<CrmId>, CrmError> {
        if let Some(caller) = &lookup.caller {
            if let Some(id) = self.find_by_number(caller).await? {
                return Ok(Some(id));
            }
        } else if let Some(raw) = &lookup.phone
            // A number that could not be normalised must be stored as typed:
            // `exact_match` compares the whole value, ignoring case only.
            && !raw.trim().is_empty()
            && let Some(person) = self.search("phone", raw.trim(), true).await?.first()
        {
            return Ok(Some(person.id.to_string()));
        }
        match &lookup.email {
            Some(email) => Ok(self
                .search("email", email, true)
                .await?
                .first()
                .map(|p| p.id.to_string())),
            None => Ok(None),
        }
    }

    async fn create_contact(&self, contact: &NewContact<'_>) -> Result<Created, CrmError> {
        let caller = &contact.report.caller;
        let mut custom_fields = self.last_call_fields(contact.report).await?;
        custom_fields.extend(self.contact_values(contact.report, Write::New, &Map::new()));
        let person = NewPerson {
            // Pipedrive requires a name: the caller's, else the number.
            name: caller.display_name(),
            custom_fields,
            phones: caller
                .phone
                .as_ref()
                .and_then(|phone| Labelled::primary(phone.best(), "mobile")),
            emails: caller
                .email
                .as_deref()
                .and_then(|email| Labelled::primary(email, "work")),
        };
        let id = self
            .create("create_person", "/api/v2/persons", &person)
            .await?;
        Ok(Created {
            id,
            has_last_call: true,
        })
    }

    async fn record_call(&self, contact: &str, report: &CallReport) -> Result<CrmId, CrmError> {
        let note = NewNote {
            content: format!(
                "<p><b>{}</b></p>\n{}",
                render::escape(&render::call_title(report)),
                render::call_body_html(report)
            ),
            person_id: person_id(contact)?,
        };
        self.create("create_note", "/api/v1/notes", &note).await
    }

    async fn update_contact(&self, contact: &str, report: &CallReport) -> Result<(), CrmError> {
        let mut custom_fields = self.last_call_fields(report).await?;
        custom_fields.extend(self.mapped_update(contact, report, Write::Newest).await?);
        self.patch_person(contact, custom_fields).await
    }

    async fn create_follow_up(
        &self,
        contact: &str,
        report: &CallReport,
        due: OffsetDateTime,
    ) -> Result<CrmId, CrmError> {
        let due = due.to_offset(time::UtcOffset::UTC);
        let date = due
            .format(format_description!("[year]-[month]-[day]"))
            .unwrap_or_default();
        let at = due
            .format(format_description!("[hour]:[minute]"))
            .unwrap_or_default();
        let activity = NewActivity {
            subject: render::task_subject(report),
            kind: "call",
            due_date: date,
            due_time: at,
            done: false,
            participants: [Participant {
                person_id: person_id(contact)?,
                primary: true,
            }],
            note: render::task_body_html(report),
        };
        self.create("create_activity", "/api/v2/activities", &activity)
            .await
    }

    async fn create_deal(&self, deal: &NewDeal<'_>) -> Result<CrmId, CrmError> {
        // Checked at start against the company's pipelines: integers.
        let id = |text: &str| {
            text.parse::<i64>()
                .map_err(|_| CrmError::not_an_id(text, "a Pipedrive pipeline or stage id"))
        };
        let mut custom_fields = CustomFields::new();
        custom_fields.insert(
            self.deal_marker_key().await?.to_owned(),
            Json::String(deal.rule.marker(deal.report)),
        );
        let body = deals::NewDeal {
            title: deal.rule.name(deal.report, deals::MAX_TITLE),
            person_id: person_id(deal.contact)?,
            pipeline_id: id(&deal.rule.pipeline)?,
            stage_id: id(&deal.rule.stage)?,
            custom_fields,
        };
        self.create("create_deal", "/api/v2/deals", &body).await
    }

    async fn find_marked(
        &self,
        kind: MarkedRecord,
        contact: &str,
        marker: &str,
    ) -> Result<Option<CrmId>, CrmError> {
        let person = person_id(contact)?.to_string();
        let (operation, path, deal_key) = match kind {
            MarkedRecord::CallLog => ("list_notes", "/api/v1/notes", None),
            MarkedRecord::FollowUp => ("list_activities", "/api/v2/activities", None),
            MarkedRecord::Deal(_) => (
                "list_deals",
                "/api/v2/deals",
                Some(self.deal_marker_key().await?),
            ),
        };
        // A person can have more records than one page holds: walk them all.
        let mut next = None;
        loop {
            let start = match &next {
                Some(Next::Start(start)) => *start,
                _ => 0,
            };
            let page = self
                .list_page(operation, path, &person, next.as_ref())
                .await?;
            let found = page
                .data
                .iter()
                .flatten()
                .find(|c| c.carries(marker, deal_key));
            if let Some(found) = found {
                return Ok(Some(found.id.to_string()));
            }
            next = page.next(start)?;
            if next.is_none() {
                return Ok(None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn page(additional_data: Value) -> Page {
        serde_json::from_value(
            json!({ "success": true, "data": null, "additional_data": additional_data }),
        )
        .unwrap()
    }

    #[test]
    fn a_v1_page_with_more_items_leads_to_its_next_start_and_the_last_page_to_none() {
        let more = page(
            json!({ "pagination": { "start": 0, "limit": 500, "more_items_in_collection": true, "next_start": 500 } }),
        );
        assert_eq!(more.next(0).unwrap(), Some(Next::Start(500)));
        let last = page(
            json!({ "pagination": { "start": 500, "limit": 500, "more_items_in_collection": false } }),
        );
        assert_eq!(last.next(500).unwrap(), None);
    }

    #[test]
    fn a_v1_page_claiming_more_items_without_moving_forward_is_an_invalid_response() {
        let stuck = page(
            json!({ "pagination": { "start": 500, "more_items_in_collection": true, "next_start": 500 } }),
        );
        assert!(matches!(stuck.next(500), Err(CrmError::InvalidResponse(_))));
        let missing = page(json!({ "pagination": { "more_items_in_collection": true } }));
        assert!(matches!(missing.next(0), Err(CrmError::InvalidResponse(_))));
    }

    #[test]
    fn a_phone_search_looks_for_the_last_four_digits_of_the_national_number() {
        let caller = |e164: &str| CallerNumber::parse(e164, callsync_shared::Region::US).unwrap();
        assert_eq!(search_term(&caller("+31612345678")), "5678");
        assert_eq!(search_term(&caller("+14155550123")), "0123");
    }

    #[test]
    fn a_v2_page_leads_to_its_next_cursor_until_it_is_null() {
        let more = page(json!({ "next_cursor": "eyJpZCI6NDJ9" }));
        assert_eq!(
            more.next(0).unwrap(),
            Some(Next::Cursor("eyJpZCI6NDJ9".to_owned()))
        );
        assert_eq!(page(json!({ "next_cursor": null })).next(0).unwrap(), None);
        assert_eq!(page(Value::Null).next(0).unwrap(), None);
    }
}
