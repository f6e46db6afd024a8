//! HubSpot (CRM v3 API).
//!
//! | step | request |
//! |---|---|
//! | find contact | `POST /crm/v3/objects/contacts/search`: the caller's national number on the calculated phone properties, verified locally; then e-mail |
//! | create contact | `POST /crm/v3/objects/contacts` (409 on a known e-mail: its id is adopted) |
//! | record call | `POST /crm/v3/objects/calls`, associated to the contact (type 194) |
//! | update contact | `PATCH /crm/v3/objects/contacts/{id}` (`callsync_last_*`) |
//! | follow-up | `POST /crm/v3/objects/tasks`, associated to the contact (type 204) |
//! | deal (`[[deal]]`) | `POST /crm/v3/objects/deals`, associated to the contact (type 3); see `deals.rs` |
//! | find by marker | `POST /crm/v3/objects/{calls,tasks,deals}/search` on `callsync_marker` |
//!
//! The custom properties (and a `callsync` property group per object) are
//! created by [`Crm::prepare`] when missing. The marker is stored in its own
//! property, `callsync_marker`, because an exact `EQ` filter on a property is
//! reliable where a token search inside an HTML body is not.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use callsync_shared::config::ConfigError;
use callsync_shared::phone::matching::{
    CallerNumber, Candidate, PhoneField, choose, parse_updated,
};
use callsync_shared::time::unix_ms;
use callsync_shared::{CallReport, Direction as CallDirection, Outcome};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value as Json};
use time::OffsetDateTime;

use super::oauth::Credentials;
use super::render;
use super::{
    Adapter, ContactLookup, Created, Crm, CrmError, CrmHttp, CrmId, CrmSpec, MarkedRecord,
    NewContact, NewDeal, Operation, Permission, Refusal, Shared, Vars, configure,
};
use crate::mapping::apply;

/// HubSpot's normalised copies of `phone` and `mobilephone`, made for search.
const SEARCHABLE_PHONE: &str = "hs_searchable_calculated_phone_number";
const SEARCHABLE_MOBILE: &str = "hs_searchable_calculated_mobile_number";

/// Association type ids HubSpot defines (call→contact, task→contact).
const CALL_TO_CONTACT: u32 = 194;
const TASK_TO_CONTACT: u32 = 204;

mod credential;
mod deals;
mod mapped;

pub use credential::Kind as CredentialKind;

/// `CALLSYNC_HUBSPOT_*`.
#[derive(Debug, Clone)]
pub struct HubspotConfig {
    /// A service key or a legacy private app's token, used as given, or a
    /// public app's OAuth client and refresh token, renewed on a 401.
    pub credentials: Credentials,
    pub kind: CredentialKind,
    pub base_url: String,
    /// Owner assigned to follow-up tasks, when set.
    pub owner_id: Option<String>,
}

/// The scopes callsync's credential needs, and what for. The contacts scopes also
/// cover calls and tasks (the calls and tasks API references list
/// `crm.objects.contacts.read` and `crm.objects.contacts.write` as their
/// scope requirements); creating the callsync properties needs the
/// contacts schema scope.
pub const SCOPES: [(&str, &str); 3] = [
    (
        "crm.objects.contacts.read",
        "finding callers, and the call and task markers",
    ),
    (
        "crm.objects.contacts.write",
        "creating contacts, calls and tasks and updating last-call fields",
    ),
    (
        "crm.schemas.contacts.write",
        "creating the callsync custom properties",
    ),
];

/// How `CALLSYNC_CRM=hubspot` is read and built.
pub const SPEC: CrmSpec = CrmSpec {
    name: "hubspot",
    // 100 requests per 10 s per private app.
    default_rate: "100/10s",
    // Search endpoints allow 5 requests per second per account, and their
    // answers carry no rate-limit headers to pace by.
    // https://developers.hubspot.com/docs/api/crm/search (limits)
    default_search_rate: "5/1s",
    // HubSpot documents seconds and 10–60 s are seen in practice.
    default_index_lag: Duration::from_secs(60),
    configure: configure::<Hubspot>,
    read_refusal,
    credential_help: "set CALLSYNC_HUBSPOT_SERVICE_KEY to a service key, or \
        CALLSYNC_HUBSPOT_CLIENT_ID, _CLIENT_SECRET and _REFRESH_TOKEN of a public app installed \
        in the account (or CALLSYNC_HUBSPOT_TOKEN to an existing legacy private app's token); \
        it needs the scopes crm.objects.contacts.read, crm.objects.contacts.write and \
        crm.schemas.contacts.write (a private app's token changes when its scopes are edited)",
    maps_fields: super::Mapped::Full,
    writes_deals: true,
};

/// HubSpot names a token that lacks a scope with `"category":
/// "MISSING_SCOPES"` and the scopes required (developers.hubspot.com, error
/// handling). A write naming a property the account does not have (one
/// deleted since start-up, a mapped one among them) is a 400
/// `VALIDATION_ERROR` listing `PROPERTY_DOESNT_EXIST` (the shape of
/// https://developers.hubspot.com/changelog/upcoming-property-validations-rules-will-be-enforced-for-apis-and-integrations):
/// every call would get it, so it is a set-up to complete, not a call to park.
/// So is a deal refused for its `pipeline` or `dealstage` (`INVALID_OPTION`
/// naming either): a pipeline or stage a `[[deal]]` rule names was deleted
/// since start-up, and every matching call would be refused the same way.
fn read_refusal(body: &str) -> Option<Refusal> {
    #[derive(Deserialize)]
    struct Error {
        #[serde(default)]
        category: String,
        #[serde(default)]
        message: String,
    }
    let error: Error = serde_json::from_str(body).ok()?;
    match error.category.as_str() {
        "MISSING_SCOPES" => Some(Refusal::Credential),
        "VALIDATION_ERROR" if error.message.contains("PROPERTY_DOESNT_EXIST") => {
            Some(Refusal::Setup)
        }
        "VALIDATION_ERROR"
            if error.message.contains("INVALID_OPTION")
                && ["\"name\":\"pipeline\"", "\"name\":\"dealstage\""]
                    .iter()
                    .any(|name| error.message.contains(name)) =>
        {
            Some(Refusal::Setup)
        }
        _ => None,
    }
}

impl Adapter for Hubspot {
    type Settings = HubspotConfig;

    fn settings(vars: Vars<'_>) -> Result<HubspotConfig, ConfigError> {
        let base_url = vars.url("BASE_URL", "https://api.hubapi.com");
        let (kind, credentials) = credential::read(vars, &base_url)?;
        Ok(HubspotConfig {
            credentials,
            kind,
            base_url,
            owner_id: vars.raw("OWNER_ID").map(str::to_owned),
        })
    }

    fn new(config: HubspotConfig, http: CrmHttp, shared: &Shared) -> Self {
        Self {
            http: http.authorized(&config.credentials, shared),
            config,
            mapping: shared.mapping.clone(),
            resolved: RwLock::default(),
            searched: mapped::Searched::default(),
        }
    }
}

/// The HubSpot adapter.
#[derive(Debug)]
pub struct Hubspot {
    config: HubspotConfig,
    /// Requests carry the credential's token (renewed on a 401 for a
    /// public app).
    http: CrmHttp,
    /// `CALLSYNC_MAPPING`, when set.
    mapping: Option<Arc<crate::mapping::Mapping>>,
    /// The mapping checked against the account's properties by the last
    /// [`Crm::prepare`] (empty until then, and without a mapping).
    resolved: RwLock<Arc<mapped::Resolved>>,
    /// The mapped `if_empty` values of contacts the phone search just found.
    searched: mapped::Searched,
}

/// The properties every phone search asks for.
const SEARCHED: [&str; 4] = ["phone", "mobilephone", "country", "lastmodifieddate"];

/// A custom property callsync needs, as `POST /crm/v3/properties/{object}`
/// takes it (with its group).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Property {
    #[serde(skip)]
    object: &'static str,
    name: &'static str,
    label: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    field_type: &'static str,
}

/// The property group callsync's properties live in, per object.
const GROUP: Group = Group {
    name: "callsync",
    label: "callsync",
};

#[derive(Serialize)]
struct Group {
    name: &'static str,
    label: &'static str,
}

/// A property definition in [`GROUP`].
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InGroup<'a> {
    #[serde(flatten)]
    property: &'a Property,
    group_name: &'static str,
}

const PROPERTIES: &[Property] = &[
    Property {
        object: "contacts",
        name: "callsync_last_call_at",
        label: "Last AI call at",
        kind: "datetime",
        field_type: "date",
    },
    Property {
        object: "contacts",
        name: "callsync_last_call_summary",
        label: "Last AI call summary",
        kind: "string",
        field_type: "textarea",
    },
    Property {
        object: "contacts",
        name: "callsync_last_sentiment",
        label: "Last AI call sentiment",
        kind: "string",
        field_type: "text",
    },
    Property {
        object: "calls",
        name: "callsync_marker",
        label: "callsync marker",
        kind: "string",
        field_type: "text",
    },
    Property {
        object: "tasks",
        name: "callsync_marker",
        label: "callsync marker",
        kind: "string",
        field_type: "text",
    },
];

/// The marker property on deals, created only for a mapping with
/// `[[deal]]` rules (it needs the deals schema scope).
const DEAL_MARKER: InGroup<'static> = InGroup {
    property: &Property {
        object: "deals",
        name: "callsync_marker",
        label: "callsync marker",
        kind: "string",
        field_type: "text",
    },
    group_name: GROUP.name,
};

/// A search: its filter groups are OR-ed, each group's filters AND-ed.
/// https://developers.hubspot.com/docs/api-reference/search/guide
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Search<'a> {
    filter_groups: Vec<FilterGroup<'a>>,
    /// The properties each hit carries (besides HubSpot's defaults).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    properties: &'a [&'a str],
    #[serde(skip_serializing_if = "Option::is_none")]
    sorts: Option<[Sort; 1]>,
    limit: u32,
}

/// A group of one filter: every search here ORs single conditions.
#[derive(Serialize)]
struct FilterGroup<'a> {
    filters: [Filter<'a>; 1],
}

impl<'a> FilterGroup<'a> {
    fn of(property_name: &'a str, operator: Operator, value: &'a str) -> Self {
        Self {
            filters: [Filter {
                property_name,
                operator,
                value,
            }],
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Filter<'a> {
    property_name: &'a str,
    operator: Operator,
    value: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum Operator {
    Eq,
    ContainsToken,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Sort {
    property_name: &'static str,
    direction: Direction,
}

#[derive(Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum Direction {
    Ascending,
    Descending,
}

/// A record to create or update: its properties and, for a call or task,
/// the contact it belongs to.
#[derive(Serialize)]
struct Record<'a, P> {
    properties: P,
    #[serde(skip_serializing_if = "Option::is_none")]
    associations: Option<[Association<'a>; 1]>,
}

#[derive(Serialize)]
struct Association<'a> {
    to: AssociatedId<'a>,
    types: [AssociationType; 1],
}

#[derive(Serialize)]
struct AssociatedId<'a> {
    id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AssociationType {
    association_category: &'static str,
    association_type_id: u32,
}

/// `contact`, associated by the HubSpot-defined association `type_id`.
fn association(contact: &str, type_id: u32) -> Option<[Association<'_>; 1]> {
    Some([Association {
        to: AssociatedId { id: contact },
        types: [AssociationType {
            association_category: "HUBSPOT_DEFINED",
            association_type_id: type_id,
        }],
    }])
}

/// A contact's last-call properties.
#[derive(Serialize)]
struct LastCall {
    callsync_last_call_at: String,
    callsync_last_call_summary: String,
    callsync_last_sentiment: String,
}

impl LastCall {
    fn of(report: &CallReport) -> Self {
        Self {
            callsync_last_call_at: millis(report.ended_at),
            callsync_last_call_summary: render::field_summary(report),
            callsync_last_sentiment: report.sentiment.clone().unwrap_or_default(),
        }
    }
}

/// A new contact: the caller's details and the last-call properties.
#[derive(Serialize)]
struct ContactProperties<'a> {
    #[serde(flatten)]
    last_call: LastCall,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    firstname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lastname: Option<String>,
    /// `CALLSYNC_MAPPING`'s contact properties.
    #[serde(flatten)]
    mapped: Map<String, Json>,
}

/// An update of a contact: the last-call properties (for its newest call)
/// and the mapped ones.
#[derive(Serialize)]
struct ContactUpdate {
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    last_call: Option<LastCall>,
    #[serde(flatten)]
    mapped: Map<String, Json>,
}

#[derive(Serialize)]
struct CallProperties<'a> {
    hs_timestamp: String,
    hs_call_title: String,
    hs_call_body: String,
    hs_call_direction: &'static str,
    hs_call_status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    hs_call_disposition: Option<&'static str>,
    callsync_marker: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    hs_call_duration: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hs_call_recording_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hs_call_from_number: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hs_call_to_number: Option<&'a str>,
    /// `CALLSYNC_MAPPING`'s call properties.
    #[serde(flatten)]
    mapped: Map<String, Json>,
}

#[derive(Serialize)]
struct TaskProperties<'a> {
    hs_timestamp: String,
    hs_task_subject: String,
    hs_task_body: String,
    hs_task_status: &'static str,
    hs_task_priority: &'static str,
    hs_task_type: &'static str,
    callsync_marker: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    hubspot_owner_id: Option<&'a str>,
}

/// HubSpot's timestamps: milliseconds since the epoch, as a string.
fn millis(at: OffsetDateTime) -> String {
    unix_ms(at).to_string()
}

#[derive(Deserialize)]
struct Saved {
    id: String,
}

#[derive(Deserialize)]
struct SearchResults {
    results: Vec<SearchHit>,
}

#[derive(Deserialize)]
struct SearchHit {
    id: String,
    #[serde(default)]
    properties: HitProperties,
}

/// The properties a contact search asks for.
#[derive(Default, Deserialize)]
struct HitProperties {
    #[serde(default, deserialize_with = "text")]
    phone: Option<String>,
    #[serde(default, deserialize_with = "text")]
    mobilephone: Option<String>,
    #[serde(default, deserialize_with = "text")]
    country: Option<String>,
    #[serde(default, deserialize_with = "text")]
    lastmodifieddate: Option<String>,
    /// The mapped `if_empty` properties the search asked for.
    #[serde(flatten)]
    mapped: Map<String, Json>,
}

/// A property value: HubSpot sends a string or null; anything else reads
/// as absent (it could not be a phone number or a date anyway).
fn text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::String(text) => Some(text),
        _ => None,
    })
}

impl SearchHit {
    fn candidate(&self) -> Candidate {
        let found = &self.properties;
        Candidate {
            id: self.id.clone(),
            phones: [
                (PhoneField::Main, &found.phone),
                (PhoneField::Mobile, &found.mobilephone),
            ]
            .into_iter()
            .filter_map(|(field, value)| Some((field, value.clone()?)))
            .collect(),
            country: found.country.clone(),
            updated: found.lastmodifieddate.as_deref().and_then(parse_updated),
        }
    }
}

impl Hubspot {
    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .client()
            .request(method, format!("{}{path}", self.config.base_url))
    }

    async fn create_object(
        &self,
        operation: &'static str,
        object: &str,
        body: &(impl Serialize + Sync),
    ) -> Result<CrmId, CrmError> {
        let created: Saved = self
            .http
            .json(
                operation,
                self.request(Method::POST, &format!("/crm/v3/objects/{object}"))
                    .json(body),
            )
            .await?;
        Ok(created.id)
    }

    async fn search(
        &self,
        operation: &'static str,
        object: &str,
        body: &Search<'_>,
    ) -> Result<Vec<SearchHit>, CrmError> {
        let results: SearchResults = self
            .http
            .json(
                Operation::search(operation),
                self.request(Method::POST, &format!("/crm/v3/objects/{object}/search"))
                    .json(body),
            )
            .await?;
        Ok(results.results)
    }

    /// One search for every contact that may hold `caller`'s number, then
    /// local verification. HubSpot indexes numbers in calculated properties
    /// holding the national significant number (digits only, no country
    /// code or trunk 0), so `EQ` on those finds every typed format; the
    /// leading-wildcard token finds a number typed with its country code but
    /// without `+`, which HubSpot keeps whole; `phone EQ` the E.164 covers a
    /// contact written before its calculated property was. Five groups is
    /// HubSpot's limit per request.
    /// https://developers.hubspot.com/docs/api-reference/search/guide
    async fn find_by_number(&self, caller: &CallerNumber) -> Result<Option<CrmId>, CrmError> {
        let nsn = caller.nsn();
        let wildcard = format!("*{nsn}");
        // The mapped `if_empty` properties ride along, so that the update
        // of a contact just found needs no read of its own.
        let resolved = self.resolved();
        let properties: Vec<&str> = SEARCHED
            .iter()
            .copied()
            .chain(resolved.if_empty_only())
            .collect();
        let search = Search {
            filter_groups: vec![
                FilterGroup::of(SEARCHABLE_PHONE, Operator::Eq, nsn),
                FilterGroup::of(SEARCHABLE_MOBILE, Operator::Eq, nsn),
                FilterGroup::of(SEARCHABLE_PHONE, Operator::ContainsToken, &wildcard),
                FilterGroup::of(SEARCHABLE_MOBILE, Operator::ContainsToken, &wildcard),
                FilterGroup::of("phone", Operator::Eq, caller.e164()),
            ],
            properties: &properties,
            sorts: Some([Sort {
                property_name: "lastmodifieddate",
                direction: Direction::Descending,
            }]),
            limit: 100,
        };
        let hits = self.search("search_contact", "contacts", &search).await?;
        let candidates: Vec<Candidate> = hits.iter().map(SearchHit::candidate).collect();
        let chosen = choose(caller, &candidates).map(|c| c.id.clone());
        if let Some(id) = &chosen
            && let Some(hit) = hits.iter().find(|h| &h.id == id)
            && properties.len() > SEARCHED.len()
        {
            self.searched.remember(id, hit.properties.mapped.clone());
        }
        Ok(chosen)
    }

    /// The oldest contact whose `property` is `value` (HubSpot compares
    /// e-mails case-insensitively; a raw number must be stored as typed).
    async fn find_exact(&self, property: &str, value: &str) -> Result<Option<CrmId>, CrmError> {
        let search = Search {
            filter_groups: vec![FilterGroup::of(property, Operator::Eq, value)],
            properties: &[property],
            sorts: Some([Sort {
                property_name: "createdate",
                direction: Direction::Ascending,
            }]),
            limit: 1,
        };
        let hits = self.search("search_contact", "contacts", &search).await?;
        Ok(hits.into_iter().next().map(|h| h.id))
    }

    /// Every property of `object`, with its type and options.
    async fn properties_of(&self, object: &str) -> Result<Vec<mapped::Definition>, CrmError> {
        let listed: mapped::Definitions = self
            .http
            .json(
                "read_properties",
                self.request(Method::GET, &format!("/crm/v3/properties/{object}")),
            )
            .await?;
        Ok(listed.results)
    }

    fn resolved(&self) -> Arc<mapped::Resolved> {
        Arc::clone(&self.resolved.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn contact_values(
        &self,
        report: &CallReport,
        write: apply::Write,
        current: &Map<String, Json>,
    ) -> Map<String, Json> {
        let resolved = self.resolved();
        apply::contact_values(
            &resolved.contact,
            report,
            write,
            current,
            &mapped::wire,
            &mut |b, skip| apply::skipped(SPEC.name, report, "contact", b, skip),
        )
    }

    fn call_values(&self, report: &CallReport) -> Map<String, Json> {
        let resolved = self.resolved();
        apply::call_values(&resolved.call, report, &mapped::wire, &mut |b, skip| {
            apply::skipped(SPEC.name, report, "call", b, skip)
        })
    }

    /// The mapped contact properties of `write`: when a rule depends on
    /// the field's current value (`if_empty`, `append`), read first. The
    /// read and the PATCH after it are one read-modify-write, run by the
    /// sync engine under the contact's write lease, and repeated whole on
    /// a retry: an `append` line an earlier attempt applied is read back
    /// with its marker and not added again.
    async fn mapped_update(
        &self,
        contact: &str,
        report: &CallReport,
        write: apply::Write,
    ) -> Result<Map<String, Json>, CrmError> {
        let resolved = self.resolved();
        let read = resolved.read_first();
        let searched = || {
            // Only `if_empty` values may come from the search: an `append`
            // needs the field as it is now, its marker included, which a
            // lagging index may not show yet.
            (resolved.if_empty_only().count() == read.len())
                .then(|| self.searched.take(contact))
                .flatten()
        };
        let current = if read.is_empty() {
            Map::new()
        } else if let Some(found) = searched() {
            found
        } else {
            self.read_contact(contact, &read).await?
        };
        Ok(self.contact_values(report, write, &current))
    }

    /// `GET /crm/v3/objects/contacts/{id}?properties=…`: the current values
    /// of `properties` (an empty one is absent or "").
    async fn read_contact(
        &self,
        contact: &str,
        properties: &[&str],
    ) -> Result<Map<String, Json>, CrmError> {
        #[derive(Deserialize)]
        struct Read {
            #[serde(default)]
            properties: Map<String, Json>,
        }
        let read: Read = self
            .http
            .json(
                "read_contact_fields",
                self.request(Method::GET, &format!("/crm/v3/objects/contacts/{contact}"))
                    .query(&[("properties", properties.join(","))]),
            )
            .await?;
        Ok(read.properties)
    }

    async fn patch_contact(&self, contact: &str, update: &ContactUpdate) -> Result<(), CrmError> {
        let body = Record {
            properties: update,
            associations: None,
        };
        self.http
            .perform(
                "update_contact",
                self.request(
                    Method::PATCH,
                    &format!("/crm/v3/objects/contacts/{contact}"),
                )
                .json(&body),
            )
            .await
    }

    /// With `[[deal]]` rules: the marker property on deals, and each rule's
    /// pipeline and stage checked against the account's (a set-up error
    /// naming the rule's line when one is missing).
    async fn prepare_deals(&self, mapping: &crate::mapping::Mapping) -> Result<(), CrmError> {
        if mapping.deal.is_empty() {
            return Ok(());
        }
        self.ensure("/crm/v3/properties/deals/groups".to_owned(), &GROUP)
            .await?;
        self.ensure("/crm/v3/properties/deals".to_owned(), &DEAL_MARKER)
            .await?;
        let listed: deals::Pipelines = self
            .http
            .json(
                "read_pipelines",
                self.request(Method::GET, "/crm/v3/pipelines/deals"),
            )
            .await?;
        mapping.check_deals(&listed.into_pipelines(), "HubSpot")
    }

    /// POSTs a definition and treats 409 (already exists) as success.
    async fn ensure(&self, path: String, body: &(impl Serialize + Sync)) -> Result<(), CrmError> {
        self.http
            .send(
                "prepare",
                self.request(Method::POST, &path).json(body),
                &[StatusCode::CONFLICT],
            )
            .await
            .map(drop)
    }
}

/// The recording URL as `hs_call_recording_url`, of which HubSpot says
/// "Only HTTPS, secure URLs will be accepted."
/// (https://developers.hubspot.com/docs/api-reference/legacy/crm/activities/calls/guide).
/// Whether another URL fails the whole call (a 400, which would park it)
/// or is dropped is not settled, so it is left out of the property; the
/// call's body lists the recording whatever its scheme, so nothing is lost.
fn recording_property(report: &CallReport) -> Option<&str> {
    let url = report.recording_url.as_deref()?;
    let secure = is_https(url);
    if !secure {
        tracing::info!(
            call_id = %report.call_id,
            "the recording URL is not HTTPS, which HubSpot refuses in hs_call_recording_url; it is in the call body only"
        );
    }
    secure.then_some(url)
}

fn is_https(url: &str) -> bool {
    url.get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
        && url.len() > 8
}

/// HubSpot's 409 on a duplicate e-mail says "Contact already exists. Existing ID: 123".
fn existing_id(message: &str) -> Option<String> {
    let (_, tail) = message.split_once("Existing ID:")?;
    let id: String = tail
        .trim()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    (!id.is_empty()).then_some(id)
}

#[async_trait]
impl Crm for Hubspot {
    fn name(&self) -> &'static str {
        SPEC.name
    }

    /// Lists one contact: read-only, and refused without contacts read.
    async fn probe(&self) -> Result<(), CrmError> {
        self.http
            .perform(
                "probe",
                self.request(Method::GET, "/crm/v3/objects/contacts?limit=1"),
            )
            .await
    }

    /// The credential's scopes against [`SCOPES`], read the way its kind
    /// allows (see `credential.rs`).
    async fn permissions(&self) -> Result<Vec<Permission>, CrmError> {
        let granted = self.granted_scopes().await?;
        Ok(SCOPES
            .iter()
            .map(|&(name, needed_for)| Permission {
                name,
                needed_for,
                granted: granted.contains(&name),
            })
            .collect())
    }

    async fn prepare(&self) -> Result<(), CrmError> {
        for object in ["contacts", "calls", "tasks"] {
            self.ensure(format!("/crm/v3/properties/{object}/groups"), &GROUP)
                .await?;
        }
        for property in PROPERTIES {
            let definition = InGroup {
                property,
                group_name: GROUP.name,
            };
            self.ensure(
                format!("/crm/v3/properties/{}", property.object),
                &definition,
            )
            .await?;
        }
        if let Some(mapping) = &self.mapping {
            self.prepare_deals(mapping).await?;
            let contacts = self.properties_of("contacts").await?;
            let calls = self.properties_of("calls").await?;
            let resolved = mapped::Resolved::check(mapping, &contacts, &calls)?;
            *self
                .resolved
                .write()
                .unwrap_or_else(PoisonError::into_inner) = Arc::new(resolved);
        }
        Ok(())
    }

    async fn contact_exists(&self, id: &str) -> Result<bool, CrmError> {
        self.http
            .exists(
                "get_contact",
                self.request(Method::GET, &format!("/crm/v3/objects/contacts/{id}")),
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
            && let Some(id) = self.find_exact("phone", raw).await?
        {
            return Ok(Some(id));
        }
        match &lookup.email {
            Some(email) => self.find_exact("email", email).await,
            None => Ok(None),
        }
    }

    async fn create_contact(&self, contact: &NewContact<'_>) -> Result<Created, CrmError> {
        let caller = &contact.report.caller;
        let (firstname, lastname) = match caller.name.as_deref().map(render::split_name) {
            Some((first, last)) => (Some(first), last),
            None => (None, None),
        };
        let body = Record {
            properties: ContactProperties {
                last_call: LastCall::of(contact.report),
                phone: caller.phone.as_ref().map(|p| p.best()),
                email: caller.email.as_deref(),
                firstname,
                lastname,
                mapped: self.contact_values(contact.report, apply::Write::New, &Map::new()),
            },
            associations: None,
        };
        let request = self
            .request(Method::POST, "/crm/v3/objects/contacts")
            .json(&body);
        let response = self
            .http
            .send("create_contact", request, &[StatusCode::CONFLICT])
            .await?;
        if response.status() == StatusCode::CONFLICT {
            // The e-mail belongs to a contact the search did not return yet
            // (index lag): adopt it rather than fail.
            let text = response.text().await.unwrap_or_default();
            return existing_id(&text)
                .map(|id| Created {
                    id,
                    has_last_call: false,
                })
                .ok_or(CrmError::Rejected {
                    status: 409,
                    detail: text,
                });
        }
        let created: Saved = self.http.decode("create_contact", response).await?;
        Ok(Created {
            id: created.id,
            has_last_call: true,
        })
    }

    async fn record_call(&self, contact: &str, report: &CallReport) -> Result<CrmId, CrmError> {
        let (from, to) = report.from_to();
        let properties = CallProperties {
            hs_timestamp: millis(report.ended_at),
            hs_call_title: render::call_title(report),
            hs_call_body: render::call_body_html(report),
            hs_call_direction: call_direction(report.direction),
            hs_call_status: call_status(report.outcome),
            hs_call_disposition: call_disposition(report.outcome),
            callsync_marker: report.marker(),
            hs_call_duration: report.duration.map(|d| d.as_millis().to_string()),
            hs_call_recording_url: recording_property(report),
            hs_call_from_number: from,
            hs_call_to_number: to,
            mapped: self.call_values(report),
        };
        let body = Record {
            properties,
            associations: association(contact, CALL_TO_CONTACT),
        };
        self.create_object("create_call", "calls", &body).await
    }

    async fn update_contact(&self, contact: &str, report: &CallReport) -> Result<(), CrmError> {
        let mapped = self
            .mapped_update(contact, report, apply::Write::Newest)
            .await?;
        self.patch_contact(
            contact,
            &ContactUpdate {
                last_call: Some(LastCall::of(report)),
                mapped,
            },
        )
        .await
    }

    fn writes_every_call(&self) -> bool {
        !self.resolved().read_first().is_empty()
    }

    async fn update_older(&self, contact: &str, report: &CallReport) -> Result<(), CrmError> {
        let mapped = self
            .mapped_update(contact, report, apply::Write::Older)
            .await?;
        if mapped.is_empty() {
            return Ok(());
        }
        self.patch_contact(
            contact,
            &ContactUpdate {
                last_call: None,
                mapped,
            },
        )
        .await
    }

    async fn create_follow_up(
        &self,
        contact: &str,
        report: &CallReport,
        due: OffsetDateTime,
    ) -> Result<CrmId, CrmError> {
        let properties = TaskProperties {
            hs_timestamp: millis(due),
            hs_task_subject: render::task_subject(report),
            hs_task_body: render::task_body_html(report),
            hs_task_status: "NOT_STARTED",
            hs_task_priority: "HIGH",
            hs_task_type: "CALL",
            callsync_marker: report.marker(),
            hubspot_owner_id: self.config.owner_id.as_deref(),
        };
        let body = Record {
            properties,
            associations: association(contact, TASK_TO_CONTACT),
        };
        self.create_object("create_task", "tasks", &body).await
    }

    async fn create_deal(&self, deal: &NewDeal<'_>) -> Result<CrmId, CrmError> {
        let body = Record {
            properties: deals::DealProperties {
                dealname: deal.rule.name(deal.report, mapped::MAX_TEXT),
                pipeline: deal.rule.pipeline.clone(),
                dealstage: deal.rule.stage.clone(),
                description: render::field_summary(deal.report),
                callsync_marker: deal.rule.marker(deal.report),
            },
            associations: association(deal.contact, deals::DEAL_TO_CONTACT),
        };
        self.create_object("create_deal", "deals", &body).await
    }

    async fn find_marked(
        &self,
        kind: MarkedRecord,
        _contact: &str,
        marker: &str,
    ) -> Result<Option<CrmId>, CrmError> {
        let object = match kind {
            MarkedRecord::CallLog => "calls",
            MarkedRecord::FollowUp => "tasks",
            MarkedRecord::Deal(_) => "deals",
        };
        let search = Search {
            filter_groups: vec![FilterGroup::of("callsync_marker", Operator::Eq, marker)],
            properties: &[],
            sorts: None,
            limit: 1,
        };
        let hits = self.search("search_marker", object, &search).await?;
        Ok(hits.into_iter().next().map(|h| h.id))
    }
}

/// `hs_call_direction`, "the direction of the call from the perspective of
/// the HubSpot user … `INBOUND` … `OUTBOUND`"
/// (https://developers.hubspot.com/docs/guides/api/crm/engagements/calls).
/// A call of unknown direction is written `INBOUND`, as every call was
/// before directions were read.
fn call_direction(direction: Option<CallDirection>) -> &'static str {
    match direction {
        Some(CallDirection::Outbound) => "OUTBOUND",
        Some(CallDirection::Inbound) | None => "INBOUND",
    }
}

/// `hs_call_status`, one of "`BUSY`, `CALLING_CRM_USER`, `CANCELED`,
/// `COMPLETED`, `CONNECTING`, `FAILED`, `IN_PROGRESS`, `NO_ANSWER`,
/// `QUEUED`, and `RINGING`" (the calls guide above). A voicemail left is a
/// completed call; a call whose outcome is unknown is `COMPLETED`, as
/// before outcomes were read.
fn call_status(outcome: Option<Outcome>) -> &'static str {
    match outcome {
        Some(Outcome::NoAnswer) => "NO_ANSWER",
        Some(Outcome::Busy) => "BUSY",
        Some(Outcome::Failed) => "FAILED",
        Some(Outcome::Connected | Outcome::Voicemail) | None => "COMPLETED",
    }
}

/// `hs_call_disposition`, "the outcome of the call … you need to use the
/// internal GUID value"; the guide lists the default outcomes' GUIDs, the
/// same in every account: Busy, Connected, Left live message, Left
/// voicemail, No answer, Wrong number. A failed call has no default
/// outcome, nor has an unknown one: the property is left unset.
fn call_disposition(outcome: Option<Outcome>) -> Option<&'static str> {
    match outcome? {
        Outcome::Connected => Some("f240bbac-87c9-4f6e-bf70-924b57d47db7"),
        Outcome::Voicemail => Some("b2cf5968-551e-4856-9783-52b3da59a7d0"),
        Outcome::NoAnswer => Some("73a0d17f-1163-4015-bdd5-ec830791da20"),
        Outcome::Busy => Some("9d9162e7-6cf3-4944-bf63-4dff82258764"),
        Outcome::Failed => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_https_recording_url_becomes_the_recording_property() {
        assert!(is_https("HTTPS://cdn.example/r.mp3"));
        for refused in [
            "http://cdn.example/r.mp3",
            "s3://bucket/r.mp3",
            "https:/x",
            "https://",
        ] {
            assert!(!is_https(refused), "{refused}");
        }
    }

    #[test]
    fn direction_and_outcome_become_hubspots_own_values() {
        assert_eq!(call_direction(Some(CallDirection::Outbound)), "OUTBOUND");
        assert_eq!(call_direction(None), "INBOUND");
        let written: Vec<_> = Outcome::ALL
            .into_iter()
            .map(|o| (call_status(Some(o)), call_disposition(Some(o))))
            .collect();
        assert_eq!(
            written,
            [
                ("COMPLETED", Some("f240bbac-87c9-4f6e-bf70-924b57d47db7")),
                ("COMPLETED", Some("b2cf5968-551e-4856-9783-52b3da59a7d0")),
                ("NO_ANSWER", Some("73a0d17f-1163-4015-bdd5-ec830791da20")),
                ("BUSY", Some("9d9162e7-6cf3-4944-bf63-4dff82258764")),
                ("FAILED", None),
            ]
        );
        assert_eq!(
            (call_status(None), call_disposition(None)),
            ("COMPLETED", None)
        );
    }

    #[test]
    fn a_write_naming_a_property_the_account_lacks_is_a_set_up_to_complete() {
        let missing = r#"{"status":"error","message":"Property values were not valid: [{\"isValid\":false,\"message\":\"Property \\\"ai_intent\\\" does not exist\",\"error\":\"PROPERTY_DOESNT_EXIST\",\"name\":\"ai_intent\"}]","category":"VALIDATION_ERROR"}"#;
        assert_eq!(read_refusal(missing), Some(Refusal::Setup));
        let stage = r#"{"status":"error","message":"Property values were not valid: [{\"isValid\":false,\"message\":\"x was not one of the allowed options\",\"error\":\"INVALID_OPTION\",\"name\":\"dealstage\"}]","category":"VALIDATION_ERROR"}"#;
        assert_eq!(read_refusal(stage), Some(Refusal::Setup));
        let option = stage.replace("dealstage", "ai_intent");
        assert_eq!(
            read_refusal(&option),
            None,
            "a mapped option is this call's"
        );
        let option = r#"{"status":"error","message":"Property values were not valid: [{\"error\":\"INVALID_OPTION\"}]","category":"VALIDATION_ERROR"}"#;
        assert_eq!(read_refusal(option), None);
    }

    #[test]
    fn the_existing_id_is_read_from_a_conflict_message() {
        let body = r#"{"status":"error","message":"Contact already exists. Existing ID: 5551","category":"CONFLICT"}"#;
        assert_eq!(existing_id(body).as_deref(), Some("5551"));
        assert_eq!(existing_id("conflict"), None);
    }
}
