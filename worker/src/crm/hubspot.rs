//! HubSpot (CRM v3 API).
//!
//! | step | request |
//! |---|---|
//! | find contact | `POST /crm/v3/objects/contacts/search`: the caller's national number on the calculated phone properties, verified locally; then e-mail |
//! | create contact | `POST /crm/v3/objects/contacts` (409 on a known e-mail: its id is adopted) |
//! | record call | `POST /crm/v3/objects/calls`, associated to the contact (type 194) |
//! | update contact | `PATCH /crm/v3/objects/contacts/{id}` (`callsync_last_*`) |
//! | follow-up | `POST /crm/v3/objects/tasks`, associated to the contact (type 204) |
//! | find by marker | `POST /crm/v3/objects/{calls,tasks}/search` on `callsync_marker` |
//!
//! The custom properties (and a `callsync` property group per object) are
//! created by [`Crm::prepare`] when missing. The marker is stored in its own
//! property, `callsync_marker`, because an exact `EQ` filter on a property is
//! reliable where a token search inside an HTML body is not.

use std::time::Duration;

use async_trait::async_trait;
use callsync_shared::CallReport;
use callsync_shared::config::{ConfigError, Secret};
use callsync_shared::phone::matching::{
    CallerNumber, Candidate, PhoneField, choose, parse_updated,
};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::render;
use super::{
    Adapter, ContactLookup, Created, Crm, CrmError, CrmHttp, CrmId, CrmSpec, MarkedRecord,
    NewContact, Operation, Permission, Refusal, Shared, Vars, configure,
};

/// HubSpot's normalised copies of `phone` and `mobilephone`, made for search.
const SEARCHABLE_PHONE: &str = "hs_searchable_calculated_phone_number";
const SEARCHABLE_MOBILE: &str = "hs_searchable_calculated_mobile_number";

/// Association type ids HubSpot defines (call→contact, task→contact).
const CALL_TO_CONTACT: u32 = 194;
const TASK_TO_CONTACT: u32 = 204;

/// `CALLSYNC_HUBSPOT_*`.
#[derive(Debug, Clone)]
pub struct HubspotConfig {
    pub token: Secret,
    pub base_url: String,
    /// Owner assigned to follow-up tasks, when set.
    pub owner_id: Option<String>,
}

/// The scopes a private app needs, and what for. The contacts scopes also
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

/// The answer of the token information endpoint (the fields used).
#[derive(Deserialize)]
struct TokenInfo {
    scopes: Vec<String>,
}

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
    credential_help: "set CALLSYNC_HUBSPOT_TOKEN to the private app's access token; \
        the app needs the scopes crm.objects.contacts.read, crm.objects.contacts.write and \
        crm.schemas.contacts.write (a token changes when its scopes are edited)",
};

/// HubSpot names a token that lacks a scope with `"category":
/// "MISSING_SCOPES"` and the scopes required (developers.hubspot.com, error
/// handling).
fn read_refusal(body: &str) -> Option<Refusal> {
    #[derive(Deserialize)]
    struct Error {
        #[serde(default)]
        category: String,
    }
    let error: Error = serde_json::from_str(body).ok()?;
    (error.category == "MISSING_SCOPES").then_some(Refusal::Credential)
}

impl Adapter for Hubspot {
    type Settings = HubspotConfig;

    fn settings(vars: Vars<'_>) -> Result<HubspotConfig, ConfigError> {
        Ok(HubspotConfig {
            token: vars.secret("TOKEN")?,
            base_url: vars.url("BASE_URL", "https://api.hubapi.com"),
            owner_id: vars.raw("OWNER_ID").map(str::to_owned),
        })
    }

    fn new(config: HubspotConfig, http: CrmHttp, _shared: &Shared) -> Self {
        Self { config, http }
    }
}

/// The HubSpot adapter.
#[derive(Debug)]
pub struct Hubspot {
    config: HubspotConfig,
    http: CrmHttp,
}

/// A custom property callsync needs: object, name, label, type, field type.
struct Property {
    object: &'static str,
    name: &'static str,
    label: &'static str,
    kind: &'static str,
    field: &'static str,
}

const PROPERTIES: &[Property] = &[
    Property {
        object: "contacts",
        name: "callsync_last_call_at",
        label: "Last AI call at",
        kind: "datetime",
        field: "date",
    },
    Property {
        object: "contacts",
        name: "callsync_last_call_summary",
        label: "Last AI call summary",
        kind: "string",
        field: "textarea",
    },
    Property {
        object: "contacts",
        name: "callsync_last_sentiment",
        label: "Last AI call sentiment",
        kind: "string",
        field: "text",
    },
    Property {
        object: "calls",
        name: "callsync_marker",
        label: "callsync marker",
        kind: "string",
        field: "text",
    },
    Property {
        object: "tasks",
        name: "callsync_marker",
        label: "callsync marker",
        kind: "string",
        field: "text",
    },
];

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
    properties: Map<String, Value>,
}

impl Hubspot {
    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .client()
            .request(method, format!("{}{path}", self.config.base_url))
            .bearer_auth(self.config.token.expose())
    }

    async fn create_object(
        &self,
        operation: &'static str,
        object: &str,
        body: Value,
    ) -> Result<CrmId, CrmError> {
        let created: Saved = self
            .http
            .json(
                operation,
                self.request(Method::POST, &format!("/crm/v3/objects/{object}"))
                    .json(&body),
            )
            .await?;
        Ok(created.id)
    }

    async fn search(
        &self,
        operation: &'static str,
        object: &str,
        body: Value,
    ) -> Result<Vec<SearchHit>, CrmError> {
        let results: SearchResults = self
            .http
            .json(
                Operation::search(operation),
                self.request(Method::POST, &format!("/crm/v3/objects/{object}/search"))
                    .json(&body),
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
        let filter = |property: &str, operator: &str, value: &str| json!({ "filters": [{ "propertyName": property, "operator": operator, "value": value }] });
        let groups = json!([
            filter(SEARCHABLE_PHONE, "EQ", nsn),
            filter(SEARCHABLE_MOBILE, "EQ", nsn),
            filter(SEARCHABLE_PHONE, "CONTAINS_TOKEN", &wildcard),
            filter(SEARCHABLE_MOBILE, "CONTAINS_TOKEN", &wildcard),
            filter("phone", "EQ", caller.e164()),
        ]);
        let hits = self
            .search(
                "search_contact",
                "contacts",
                json!({
                    "filterGroups": groups,
                    "properties": ["phone", "mobilephone", "country", "lastmodifieddate"],
                    "sorts": [{ "propertyName": "lastmodifieddate", "direction": "DESCENDING" }],
                    "limit": 100,
                }),
            )
            .await?;
        let text = |hit: &SearchHit, property: &str| {
            hit.properties
                .get(property)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let candidates: Vec<Candidate> = hits
            .iter()
            .map(|hit| Candidate {
                id: hit.id.clone(),
                phones: [
                    (PhoneField::Main, text(hit, "phone")),
                    (PhoneField::Mobile, text(hit, "mobilephone")),
                ]
                .into_iter()
                .filter_map(|(field, value)| Some((field, value?)))
                .collect(),
                country: text(hit, "country"),
                updated: text(hit, "lastmodifieddate").and_then(|t| parse_updated(&t)),
            })
            .collect();
        Ok(choose(caller, &candidates).map(|c| c.id.clone()))
    }

    /// The oldest contact whose `property` is `value` (HubSpot compares
    /// e-mails case-insensitively; a raw number must be stored as typed).
    async fn find_exact(&self, property: &str, value: &str) -> Result<Option<CrmId>, CrmError> {
        let hits = self
            .search(
                "search_contact",
                "contacts",
                json!({
                    "filterGroups": [{ "filters": [{ "propertyName": property, "operator": "EQ", "value": value }] }],
                    "properties": [property],
                    "sorts": [{ "propertyName": "createdate", "direction": "ASCENDING" }],
                    "limit": 1,
                }),
            )
            .await?;
        Ok(hits.into_iter().next().map(|h| h.id))
    }

    /// POSTs a definition and treats 409 (already exists) as success.
    async fn ensure(&self, path: String, body: Value) -> Result<(), CrmError> {
        self.http
            .send(
                "prepare",
                self.request(Method::POST, &path).json(&body),
                &[StatusCode::CONFLICT],
            )
            .await
            .map(drop)
    }
}

/// The last-call properties of a contact for `report`.
fn last_call_properties(report: &CallReport) -> Map<String, Value> {
    let mut p = Map::new();
    let ended_ms = report.ended_at.unix_timestamp_nanos() / 1_000_000;
    p.insert("callsync_last_call_at".into(), json!(ended_ms.to_string()));
    p.insert(
        "callsync_last_call_summary".into(),
        json!(render::field_summary(report)),
    );
    p.insert(
        "callsync_last_sentiment".into(),
        json!(report.sentiment.clone().unwrap_or_default()),
    );
    p
}

fn association(contact: &str, type_id: u32) -> Value {
    json!([{
        "to": { "id": contact },
        "types": [{ "associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id }]
    }])
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
            .send(
                "probe",
                self.request(Method::GET, "/crm/v3/objects/contacts?limit=1"),
                &[],
            )
            .await
            .map(drop)
    }

    /// The private app token's scopes, from HubSpot's token information
    /// endpoint (developers.hubspot.com/docs/api/private-apps: "POST
    /// /oauth/v2/private-apps/get/access-token-info" with the token as
    /// `tokenKey`), against [`SCOPES`].
    async fn permissions(&self) -> Result<Vec<Permission>, CrmError> {
        let info: TokenInfo = self
            .http
            .json(
                "token_info",
                self.request(Method::POST, "/oauth/v2/private-apps/get/access-token-info")
                    .json(&json!({ "tokenKey": self.config.token.expose() })),
            )
            .await?;
        Ok(SCOPES
            .iter()
            .map(|&(name, needed_for)| Permission {
                name,
                needed_for,
                granted: info.scopes.iter().any(|s| s == name),
            })
            .collect())
    }

    async fn prepare(&self) -> Result<(), CrmError> {
        for object in ["contacts", "calls", "tasks"] {
            self.ensure(
                format!("/crm/v3/properties/{object}/groups"),
                json!({ "name": "callsync", "label": "callsync" }),
            )
            .await?;
        }
        for p in PROPERTIES {
            self.ensure(
                format!("/crm/v3/properties/{}", p.object),
                json!({
                    "name": p.name,
                    "label": p.label,
                    "type": p.kind,
                    "fieldType": p.field,
                    "groupName": "callsync",
                }),
            )
            .await?;
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
        let mut properties = last_call_properties(contact.report);
        if let Some(phone) = &caller.phone {
            properties.insert("phone".into(), json!(phone.best()));
        }
        if let Some(email) = &caller.email {
            properties.insert("email".into(), json!(email));
        }
        if let Some(name) = &caller.name {
            let (first, last) = render::split_name(name);
            properties.insert("firstname".into(), json!(first));
            if let Some(last) = last {
                properties.insert("lastname".into(), json!(last));
            }
        }
        let request = self
            .request(Method::POST, "/crm/v3/objects/contacts")
            .json(&json!({ "properties": properties }));
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
        let created: Saved = super::http::decode(response).await?;
        Ok(Created {
            id: created.id,
            has_last_call: true,
        })
    }

    async fn record_call(&self, contact: &str, report: &CallReport) -> Result<CrmId, CrmError> {
        let mut properties = Map::new();
        properties.insert(
            "hs_timestamp".into(),
            json!((report.ended_at.unix_timestamp_nanos() / 1_000_000).to_string()),
        );
        properties.insert("hs_call_title".into(), json!(render::call_title(report)));
        properties.insert("hs_call_body".into(), json!(render::call_body_html(report)));
        properties.insert("hs_call_direction".into(), json!("INBOUND"));
        properties.insert("hs_call_status".into(), json!("COMPLETED"));
        properties.insert("callsync_marker".into(), json!(report.marker()));
        if let Some(duration) = report.duration {
            properties.insert(
                "hs_call_duration".into(),
                json!(duration.as_millis().to_string()),
            );
        }
        if let Some(url) = &report.recording_url {
            properties.insert("hs_call_recording_url".into(), json!(url));
        }
        if let Some(phone) = &report.caller.phone {
            properties.insert("hs_call_from_number".into(), json!(phone.best()));
        }
        if let Some(number) = &report.called_number {
            properties.insert("hs_call_to_number".into(), json!(number));
        }
        self.create_object(
            "create_call",
            "calls",
            json!({ "properties": properties, "associations": association(contact, CALL_TO_CONTACT) }),
        )
        .await
    }

    async fn update_contact(&self, contact: &str, report: &CallReport) -> Result<(), CrmError> {
        self.http
            .send(
                "update_contact",
                self.request(
                    Method::PATCH,
                    &format!("/crm/v3/objects/contacts/{contact}"),
                )
                .json(&json!({ "properties": last_call_properties(report) })),
                &[],
            )
            .await
            .map(drop)
    }

    async fn create_follow_up(
        &self,
        contact: &str,
        report: &CallReport,
        due: OffsetDateTime,
    ) -> Result<CrmId, CrmError> {
        let mut properties = Map::new();
        properties.insert(
            "hs_timestamp".into(),
            json!((due.unix_timestamp_nanos() / 1_000_000).to_string()),
        );
        properties.insert(
            "hs_task_subject".into(),
            json!(render::task_subject(report)),
        );
        properties.insert("hs_task_body".into(), json!(render::task_body_html(report)));
        properties.insert("hs_task_status".into(), json!("NOT_STARTED"));
        properties.insert("hs_task_priority".into(), json!("HIGH"));
        properties.insert("hs_task_type".into(), json!("CALL"));
        properties.insert("callsync_marker".into(), json!(report.marker()));
        if let Some(owner) = &self.config.owner_id {
            properties.insert("hubspot_owner_id".into(), json!(owner));
        }
        self.create_object(
            "create_task",
            "tasks",
            json!({ "properties": properties, "associations": association(contact, TASK_TO_CONTACT) }),
        )
        .await
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
        };
        let hits = self
            .search(
                "search_marker",
                object,
                json!({
                    "filterGroups": [{ "filters": [{ "propertyName": "callsync_marker", "operator": "EQ", "value": marker }] }],
                    "limit": 1,
                }),
            )
            .await?;
        Ok(hits.into_iter().next().map(|h| h.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_existing_id_is_read_from_a_conflict_message() {
        let body = r#"{"status":"error","message":"Contact already exists. Existing ID: 5551","category":"CONFLICT"}"#;
        assert_eq!(existing_id(body).as_deref(), Some("5551"));
        assert_eq!(existing_id("conflict"), None);
    }
}
