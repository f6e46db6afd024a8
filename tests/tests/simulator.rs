//! crm-sim refuses what the real APIs refuse. Each test talks HTTP to a
//! started simulator, sends a request the vendor would refuse (or page, or
//! ignore), and checks the status and the body the vendor would answer with,
//! and that nothing was stored that the vendor would not store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use callsync_tests::app::TestApp;
use callsync_tests::harness::{voicedock_marker, voicedock_report};
use callsync_tests::sim::gohighlevel::Location;
use callsync_tests::sim::{CrmSim, Fault, RateLimit, SimConfig};
use reqwest::{Client, Method, RequestBuilder, StatusCode};
use serde_json::{Map, Value, json};

/// A started simulator and the one HTTP client a test talks to it with.
struct Sim {
    sim: CrmSim,
    client: Client,
}

impl std::ops::Deref for Sim {
    type Target = CrmSim;

    fn deref(&self) -> &CrmSim {
        &self.sim
    }
}

impl Sim {
    /// A request to `path` of the simulator, without credentials.
    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.sim.base_url()))
    }

    /// A request to HubSpot's API with the simulator's token.
    fn hubspot(&self, method: Method, path: &str) -> RequestBuilder {
        self.request(method, path).bearer_auth(self.sim.token())
    }

    /// A request to Salesforce's REST API (v60.0) with the simulator's token.
    fn salesforce(&self, method: Method, path: &str) -> RequestBuilder {
        self.request(method, &format!("/services/data/v60.0{path}"))
            .bearer_auth(self.sim.token())
    }

    /// A request to Pipedrive's API with the simulator's token in its header.
    fn pipedrive(&self, method: Method, path: &str) -> RequestBuilder {
        self.request(method, path)
            .header("x-api-token", self.sim.token())
    }

    /// A request to GoHighLevel's API (version 2021-07-28) with the token.
    fn gohighlevel(&self, method: Method, path: &str) -> RequestBuilder {
        self.hubspot(method, path).header("Version", "2021-07-28")
    }
}

async fn sim() -> Sim {
    sim_with(SimConfig::default()).await
}

async fn sim_with(config: SimConfig) -> Sim {
    let sim = CrmSim::start(SocketAddr::from(([127, 0, 0, 1], 0)), config)
        .await
        .expect("crm-sim starts");
    Sim {
        sim,
        client: Client::new(),
    }
}

/// Sends `request` and returns the status and the JSON body (`Null` when empty).
async fn send(request: RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.expect("crm-sim answers");
    let status = response.status();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
    };
    (status, body)
}

fn properties(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

/// Sends `request`, asserts the simulator answered `status` and returns
/// the JSON body (`Null` when empty).
async fn expect(status: StatusCode, request: RequestBuilder) -> Value {
    let (answered, body) = send(request).await;
    assert_eq!(answered, status, "{body}");
    body
}

/// Sends `allowed` requests of `request`, each answered 200, and one more,
/// answered 429; returns that refusal.
async fn refused_after(allowed: u32, request: impl Fn() -> RequestBuilder) -> reqwest::Response {
    for n in 1..=allowed {
        let (status, body) = send(request()).await;
        assert_eq!(status, StatusCode::OK, "request {n}: {body}");
    }
    let refused = request().send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    refused
}

// HubSpot

/// HubSpot's search endpoints allow five requests per second per account,
/// apart from the general limit, and refuse the sixth with 429, the
/// `SECONDLY` policy and no `Retry-After`.
/// https://developers.hubspot.com/docs/api/crm/search (limits)
#[tokio::test]
async fn hubspot_refuses_the_sixth_search_in_a_second_but_not_a_request_that_is_no_search() {
    let sim = sim_with(SimConfig {
        rate_limit: Some("190/10s".parse().unwrap()),
        search_rate_limit: Some(RateLimit::HUBSPOT_SEARCH),
        ..SimConfig::default()
    })
    .await;
    let search = || {
        sim.hubspot(Method::POST, "/crm/v3/objects/contacts/search")
            .json(&json!({ "filterGroups": [{ "filters": [
                { "propertyName": "email", "operator": "EQ", "value": "ann@example.com" }
            ]}]}))
    };
    let refused = refused_after(5, search).await;
    assert!(
        refused.headers().get("retry-after").is_none(),
        "HubSpot sends no Retry-After on a search refusal"
    );
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["errorType"], "RATE_LIMIT");
    assert_eq!(body["policyName"], "SECONDLY");

    expect(
        StatusCode::CREATED,
        sim.hubspot(Method::POST, "/crm/v3/objects/contacts")
            .json(&json!({ "properties": { "email": "bob@example.com" } })),
    )
    .await;
    let stats = sim.snapshot().stats;
    assert_eq!(stats.search_rate_limited, 1);
    assert_eq!(stats.rate_limited, 1);

    tokio::time::sleep(Duration::from_millis(1100)).await;
    expect(StatusCode::OK, search()).await;
}

/// Sends `body` to HubSpot with `method` on `path`, asserts the 400
/// `VALIDATION_ERROR` HubSpot answers a write of unknown properties with,
/// and returns the entries its message lists.
async fn refused_properties(sim: &Sim, method: Method, path: &str, body: &Value) -> Vec<Value> {
    let body = expect(
        StatusCode::BAD_REQUEST,
        sim.hubspot(method, path).json(body),
    )
    .await;
    assert_eq!(body["status"], "error");
    assert_eq!(body["category"], "VALIDATION_ERROR");
    let listed = body["message"]
        .as_str()
        .and_then(|m| m.strip_prefix("Property values were not valid: "))
        .unwrap_or_else(|| panic!("not a property validation error: {body}"));
    serde_json::from_str(listed).unwrap()
}

/// The property names [`refused_properties`] lists as `PROPERTY_DOESNT_EXIST`.
async fn missing_properties(sim: &Sim, method: Method, path: &str, body: &Value) -> Vec<String> {
    refused_properties(sim, method, path, body)
        .await
        .iter()
        .filter(|e| e["error"] == "PROPERTY_DOESNT_EXIST")
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn hubspot_refuses_a_property_that_does_not_exist() {
    let sim = sim().await;
    let contact = json!({ "properties": { "firstname": "Ann", "favourite_colour": "blue" } });
    let listed = refused_properties(&sim, Method::POST, "/crm/v3/objects/contacts", &contact).await;
    assert_eq!(
        Value::Array(listed),
        json!([{
            "isValid": false,
            "message": "Property \"favourite_colour\" does not exist",
            "error": "PROPERTY_DOESNT_EXIST",
            "name": "favourite_colour",
            "localizedErrorMessage": "Property \"favourite_colour\" does not exist",
        }]),
        "only the unknown property is listed"
    );
    assert!(sim.snapshot().contacts.is_empty());
}

/// HubSpot's properties API lists each property with its `type`,
/// `fieldType` and `options`
/// (https://developers.hubspot.com/docs/api-reference/crm-properties-v3/core/get-crm-v3-properties-objectType):
/// callsync reads a mapped property's type there.
#[tokio::test]
async fn hubspot_lists_each_property_with_its_type_and_options() {
    let sim = sim().await;
    sim.define_hubspot_property(
        "contacts",
        "ai_intent",
        "enumeration",
        "select",
        &[("sales", "Sales enquiry")],
    );
    let listed = expect(
        StatusCode::OK,
        sim.hubspot(Method::GET, "/crm/v3/properties/contacts"),
    )
    .await;
    let find = |name: &str| {
        listed["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} not listed: {listed}"))
    };
    let intent = find("ai_intent");
    assert_eq!(intent["type"], "enumeration");
    assert_eq!(intent["options"][0]["value"], "sales");
    assert_eq!(intent["options"][0]["label"], "Sales enquiry");
    assert_eq!(find("jobtitle")["type"], "string");
    assert_eq!(find("lifecyclestage")["type"], "enumeration");
}

/// A value a custom property's type cannot hold is refused with HubSpot's
/// 400 `VALIDATION_ERROR`: an enumeration's label or an unknown option
/// (`INVALID_OPTION`), text or exponent notation in a number
/// (`INVALID_INTEGER`, "… was not a valid number."), anything but
/// `true`/`false` in a bool, a date that is not midnight UTC; nothing is
/// written.
#[tokio::test]
async fn hubspot_refuses_a_value_its_custom_property_cannot_hold() {
    let sim = sim().await;
    sim.define_hubspot_property(
        "contacts",
        "ai_intent",
        "enumeration",
        "select",
        &[("sales", "Sales enquiry")],
    );
    sim.define_hubspot_property("contacts", "ai_score", "number", "number", &[]);
    sim.define_hubspot_property("contacts", "ai_done", "bool", "booleancheckbox", &[]);
    sim.define_hubspot_property("contacts", "ai_day", "date", "date", &[]);
    for (name, value, code) in [
        ("ai_intent", "Sales enquiry", "INVALID_OPTION"),
        ("ai_intent", "refund", "INVALID_OPTION"),
        ("ai_score", "high", "INVALID_INTEGER"),
        ("ai_score", "1.4210854715202004e-14", "INVALID_INTEGER"),
        ("ai_done", "yes", "INVALID_BOOLEAN"),
        ("ai_day", "1777600000000", "INVALID_DATE"),
    ] {
        let contact = json!({ "properties": { "firstname": "Ann", name: value } });
        let listed =
            refused_properties(&sim, Method::POST, "/crm/v3/objects/contacts", &contact).await;
        assert_eq!(listed.len(), 1, "{name}={value}: {listed:?}");
        assert_eq!(listed[0]["error"], code, "{name}={value}");
        assert_eq!(listed[0]["name"], name);
    }
    assert!(sim.snapshot().contacts.is_empty());
    let fitting = json!({ "properties": {
        "ai_intent": "sales", "ai_score": "4.5", "ai_done": "true", "ai_day": "1777593600000",
    }});
    expect(
        StatusCode::CREATED,
        sim.hubspot(Method::POST, "/crm/v3/objects/contacts")
            .json(&fitting),
    )
    .await;
}

#[tokio::test]
async fn hubspot_refuses_a_call_or_task_property_of_another_object() {
    let sim = sim().await;
    // `hs_task_subject` is a task property, not a call property.
    let call = json!({ "properties": { "hs_timestamp": "1767225600000", "hs_task_subject": "x" } });
    let missing = missing_properties(&sim, Method::POST, "/crm/v3/objects/calls", &call).await;
    assert_eq!(missing, ["hs_task_subject"]);
    let task = json!({ "properties": { "hs_timestamp": "1767225600000", "hs_call_title": "x" } });
    let missing = missing_properties(&sim, Method::POST, "/crm/v3/objects/tasks", &task).await;
    assert_eq!(missing, ["hs_call_title"]);
    let s = sim.snapshot();
    assert!(s.calls.is_empty() && s.tasks.is_empty());
}

/// HubSpot's calls guide lists `hs_call_direction` as "`INBOUND` …
/// `OUTBOUND`" and `hs_call_status` as "`BUSY`, `CALLING_CRM_USER`,
/// `CANCELED`, `COMPLETED`, `CONNECTING`, `FAILED`, `IN_PROGRESS`,
/// `NO_ANSWER`, `QUEUED`, and `RINGING`", and `hs_call_disposition` as the
/// GUID of a call outcome (the defaults listed there)
/// (https://developers.hubspot.com/docs/guides/api/crm/engagements/calls);
/// a value outside a property's options is refused with `INVALID_OPTION`.
#[tokio::test]
async fn hubspot_refuses_a_call_direction_status_or_outcome_outside_its_documented_values() {
    let sim = sim().await;
    let call = |direction: &str, status: &str| {
        json!({ "properties": {
            "hs_timestamp": "1767225600000",
            "hs_call_direction": direction,
            "hs_call_status": status,
        }})
    };
    for (direction, status, refused) in [
        ("OUTGOING", "COMPLETED", vec!["hs_call_direction"]),
        ("outbound", "COMPLETED", vec!["hs_call_direction"]),
        ("OUTBOUND", "VOICEMAIL", vec!["hs_call_status"]),
        (
            "INBOUND_CALL",
            "no_answer",
            vec!["hs_call_direction", "hs_call_status"],
        ),
    ] {
        let listed = refused_properties(
            &sim,
            Method::POST,
            "/crm/v3/objects/calls",
            &call(direction, status),
        )
        .await;
        let names: Vec<&str> = listed
            .iter()
            .inspect(|e| assert_eq!(e["error"], "INVALID_OPTION", "{e}"))
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, refused, "{direction} {status}");
    }
    // An outcome must be one of the account's outcomes, by its GUID.
    let mut unknown_outcome = call("OUTBOUND", "COMPLETED");
    unknown_outcome["properties"]["hs_call_disposition"] = json!("Connected");
    let listed = refused_properties(
        &sim,
        Method::POST,
        "/crm/v3/objects/calls",
        &unknown_outcome,
    )
    .await;
    assert_eq!(listed[0]["name"], "hs_call_disposition");
    assert_eq!(listed[0]["error"], "INVALID_OPTION");
    assert!(sim.snapshot().calls.is_empty(), "nothing refused is stored");
    for (direction, status) in [
        ("OUTBOUND", "NO_ANSWER"),
        ("INBOUND", "BUSY"),
        ("OUTBOUND", "FAILED"),
    ] {
        expect(
            StatusCode::CREATED,
            sim.hubspot(Method::POST, "/crm/v3/objects/calls")
                .json(&call(direction, status)),
        )
        .await;
    }
    assert_eq!(sim.snapshot().calls.len(), 3);
}

#[tokio::test]
async fn hubspot_accepts_a_custom_property_only_once_it_is_created() {
    let sim = sim().await;
    let call = json!({ "properties": {
        "hs_timestamp": "1767225600000",
        "hs_call_title": "AI call",
        "hs_call_body": "<p>hello</p>",
        "hs_call_direction": "INBOUND",
        "hs_call_status": "COMPLETED",
        "callsync_marker": "callsync:test:1",
    }});
    // Not created yet.
    let missing = missing_properties(&sim, Method::POST, "/crm/v3/objects/calls", &call).await;
    assert_eq!(missing, ["callsync_marker"]);

    expect(
        StatusCode::CREATED,
        sim.hubspot(Method::POST, "/crm/v3/properties/calls/groups")
            .json(&json!({ "name": "callsync", "label": "callsync" })),
    )
    .await;
    expect(
        StatusCode::CREATED,
        sim.hubspot(Method::POST, "/crm/v3/properties/calls")
            .json(&json!({
                "name": "callsync_marker", "label": "marker", "type": "string",
                "fieldType": "text", "groupName": "callsync"
            })),
    )
    .await;

    // HubSpot accepts an engagement with no associations at all.
    expect(
        StatusCode::CREATED,
        sim.hubspot(Method::POST, "/crm/v3/objects/calls")
            .json(&call),
    )
    .await;
    let s = sim.snapshot();
    assert_eq!(s.calls.len(), 1);
    assert!(s.calls[0].associations.is_empty());
    // A custom property of calls is not one of contacts.
    let contact = json!({ "properties": { "callsync_marker": "x" } });
    let missing =
        missing_properties(&sim, Method::POST, "/crm/v3/objects/contacts", &contact).await;
    assert_eq!(missing, ["callsync_marker"]);
}

#[tokio::test]
async fn hubspot_refuses_an_unknown_property_on_update_and_keeps_the_record_unchanged() {
    let sim = sim().await;
    let (_, created) = send(
        sim.hubspot(Method::POST, "/crm/v3/objects/contacts")
            .json(&json!({ "properties": { "phone": "+14155550100" } })),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    let path = format!("/crm/v3/objects/contacts/{id}");
    let change = json!({ "properties": { "firstname": "Ann", "last_call_summary": "x" } });
    let missing = missing_properties(&sim, Method::PATCH, &path, &change).await;
    assert_eq!(missing, ["last_call_summary"]);
    let contact = &sim.snapshot().contacts[0];
    assert_eq!(
        contact.prop("firstname"),
        None,
        "nothing of a refused write is applied"
    );
}

// Salesforce

fn invalid_field(body: &Value, field: &str, sobject: &str) {
    assert_eq!(
        body,
        &json!([{
            "errorCode": "INVALID_FIELD",
            "message": format!("No such column '{field}' on sobject of type {sobject}"),
        }])
    );
}

/// Creates a Salesforce contact "Smith" and returns its id.
async fn salesforce_contact(sim: &Sim) -> String {
    let (_, created) = send(
        sim.salesforce(Method::POST, "/sobjects/Contact")
            .json(&json!({ "LastName": "Smith" })),
    )
    .await;
    created["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn salesforce_refuses_an_unknown_field_on_a_contact() {
    let sim = sim().await;
    let body = expect(
        StatusCode::BAD_REQUEST,
        sim.salesforce(Method::POST, "/sobjects/Contact")
            .json(&json!({
                "LastName": "Smith", "Phone": "+14155550100", "Favourite_Colour__c": "blue"
            })),
    )
    .await;
    invalid_field(&body, "Favourite_Colour__c", "Contact");
    assert!(sim.snapshot().contacts.is_empty());
}

#[tokio::test]
async fn salesforce_accepts_standard_fields_in_any_case_and_the_admin_created_custom_fields() {
    let sim = sim().await;
    expect(
        StatusCode::CREATED,
        sim.salesforce(Method::POST, "/sobjects/Contact")
            .json(&json!({
                "attributes": { "type": "Contact" },
                "firstname": "Ann", "LastName": "Smith", "Phone": "+14155550100",
                "Callsync_Last_Call_At__c": "2026-05-01T08:00:00Z",
                "Callsync_Last_Call_Summary__c": "hello",
                "Callsync_Last_Sentiment__c": "positive",
            })),
    )
    .await;
    assert_eq!(sim.snapshot().contacts.len(), 1);
}

#[tokio::test]
async fn salesforce_refuses_an_unknown_field_on_update_and_leaves_the_contact_unchanged() {
    let sim = sim().await;
    let id = salesforce_contact(&sim).await;
    let body = expect(
        StatusCode::BAD_REQUEST,
        sim.salesforce(Method::PATCH, &format!("/sobjects/Contact/{id}"))
            .json(&json!({
                "Callsync_Last_Call_Summary__c": "hello", "Last_Call_Summary__c": "hello"
            })),
    )
    .await;
    invalid_field(&body, "Last_Call_Summary__c", "Contact");
    assert_eq!(
        sim.snapshot().contacts[0].prop("Callsync_Last_Call_Summary__c"),
        None
    );
    // A Lead has no MailingCity; a Contact does.
    let body = expect(
        StatusCode::BAD_REQUEST,
        sim.salesforce(Method::PATCH, &format!("/sobjects/Lead/{id}"))
            .json(&json!({ "MailingCity": "Sydney" })),
    )
    .await;
    invalid_field(&body, "MailingCity", "Lead");
}

#[tokio::test]
async fn salesforce_refuses_an_unknown_field_on_a_task_upsert() {
    let sim = sim().await;
    let contact = salesforce_contact(&sim).await;
    let task = |extra: &str| {
        let mut body = json!({
            "WhoId": contact, "Subject": "Call", "TaskSubtype": "Call",
            "CallType": "Inbound", "Status": "Completed", "ActivityDate": "2026-05-01",
            "CallDurationInSeconds": 42,
        });
        if !extra.is_empty() {
            body[extra] = json!("x");
        }
        sim.salesforce(
            Method::PATCH,
            "/sobjects/Task/Callsync_Marker__c/callsync:test:1",
        )
        .json(&body)
    };
    let (status, body) = send(task("Recording_Url__c")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    invalid_field(&body, "Recording_Url__c", "Task");
    assert!(sim.snapshot().calls.is_empty());
    expect(StatusCode::CREATED, task("")).await;
}

/// Task `CallType` is "Inbound, Internal, or Outbound" (Salesforce object
/// reference, Task); another value is refused as a restricted picklist
/// refuses it, `INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST`. `CallDisposition`
/// is free text and takes the outcome's name.
#[tokio::test]
async fn salesforce_refuses_a_call_type_outside_inbound_internal_and_outbound() {
    let sim = sim().await;
    let contact = salesforce_contact(&sim).await;
    let task = |marker: &str, call_type: &str| {
        sim.salesforce(
            Method::PATCH,
            &format!("/sobjects/Task/Callsync_Marker__c/{marker}"),
        )
        .json(&json!({
            "WhoId": contact, "Subject": "Call", "TaskSubtype": "Call",
            "CallType": call_type, "CallDisposition": "no_answer",
            "Status": "Completed", "ActivityDate": "2026-05-01",
        }))
    };
    for bad in ["outbound", "Outgoing", ""] {
        let body = expect(StatusCode::BAD_REQUEST, task("callsync:test:bad", bad)).await;
        assert_eq!(
            body,
            json!([{
                "errorCode": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                "message": format!("bad value for restricted picklist field: {bad}"),
            }])
        );
    }
    assert!(sim.snapshot().calls.is_empty(), "nothing refused is stored");
    for (n, good) in ["Inbound", "Internal", "Outbound"].into_iter().enumerate() {
        expect(
            StatusCode::CREATED,
            task(&format!("callsync:test:{n}"), good),
        )
        .await;
    }
    let s = sim.snapshot();
    assert_eq!(s.calls.len(), 3);
    assert_eq!(s.calls[2].prop("CallType"), Some("Outbound"));
    assert_eq!(s.calls[2].prop("CallDisposition"), Some("no_answer"));
}

// Pipedrive

/// Creates a Pipedrive person and returns its id.
async fn pipedrive_person(sim: &Sim) -> i64 {
    let body = expect(
        StatusCode::OK,
        sim.pipedrive(Method::POST, "/api/v2/persons").json(&json!({
            "name": "Ann", "phones": [{ "value": "+14155550100", "primary": true }]
        })),
    )
    .await;
    body["data"]["id"].as_i64().unwrap()
}

fn note_contents(body: &Value) -> Vec<String> {
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["content"].as_str().unwrap().to_owned())
        .collect()
}

/// Pipedrive's Search API allows 10 requests per 2 seconds per token on
/// every plan, apart from the general limit, and refuses the eleventh with
/// 429 and `x-ratelimit-reset`; a request that is no search still passes.
/// https://pipedrive.readme.io/docs/core-api-concepts-rate-limiting
#[tokio::test]
async fn pipedrive_refuses_the_eleventh_search_in_two_seconds_but_not_a_request_that_is_no_search()
{
    let sim = sim_with(SimConfig {
        rate_limit: Some(RateLimit::PIPEDRIVE),
        search_rate_limit: Some(RateLimit::PIPEDRIVE_SEARCH),
        ..SimConfig::default()
    })
    .await;
    let search = || {
        sim.pipedrive(
            Method::GET,
            "/api/v2/persons/search?term=4155550100&fields=phone",
        )
    };
    let refused = refused_after(10, search).await;
    assert_eq!(
        refused
            .headers()
            .get("x-ratelimit-reset")
            .and_then(|v| v.to_str().ok()),
        Some("2"),
        "Pipedrive says when its window resets"
    );

    pipedrive_person(&sim).await;
    let stats = sim.snapshot().stats;
    assert_eq!(stats.search_rate_limited, 1);
    assert_eq!(stats.rate_limited, 1);
}

#[tokio::test]
async fn pipedrive_pages_notes_and_caps_the_limit_at_500() {
    let sim = sim().await;
    let person = pipedrive_person(&sim).await;
    sim.seed_pipedrive_notes(&person.to_string(), (0..1201).map(|i| format!("note {i}")));
    let page = |query: &str| {
        sim.pipedrive(
            Method::GET,
            &format!("/api/v1/notes?person_id={person}{query}"),
        )
    };

    let body = expect(StatusCode::OK, page("&limit=1000")).await;
    let notes = note_contents(&body);
    assert_eq!(notes.len(), 500, "at most 500 a page");
    assert_eq!(
        (notes[0].as_str(), notes[499].as_str()),
        ("note 0", "note 499")
    );
    assert_eq!(
        body["additional_data"]["pagination"],
        json!({ "start": 0, "limit": 500, "more_items_in_collection": true, "next_start": 500 })
    );

    let (_, body) = send(page("&start=1000&limit=500")).await;
    let notes = note_contents(&body);
    assert_eq!(notes.len(), 201);
    assert_eq!(notes[200], "note 1200");
    assert_eq!(
        body["additional_data"]["pagination"],
        json!({ "start": 1000, "limit": 500, "more_items_in_collection": false })
    );

    let (_, body) = send(page("")).await;
    assert_eq!(
        note_contents(&body).len(),
        100,
        "100 when no limit is given"
    );

    let (_, body) = send(page("&start=1201")).await;
    assert_eq!(
        body["data"],
        Value::Null,
        "v1 answers an empty page with null"
    );
}

#[tokio::test]
async fn pipedrive_pages_activities_by_cursor_and_refuses_a_limit_over_500() {
    let sim = sim().await;
    let person = pipedrive_person(&sim).await;
    for i in 0..3 {
        expect(
            StatusCode::CREATED,
            sim.pipedrive(Method::POST, "/api/v2/activities")
                .json(&json!({
                    "subject": format!("call {i}"), "type": "call", "due_date": "2026-05-01",
                    "note": format!("activity {i}"),
                    "participants": [{ "person_id": person, "primary": true }],
                })),
        )
        .await;
    }
    let page = |query: &str| {
        sim.pipedrive(
            Method::GET,
            &format!("/api/v2/activities?person_id={person}{query}"),
        )
    };
    let notes = |body: &Value| -> Vec<String> {
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["note"].as_str().unwrap().to_owned())
            .collect()
    };

    let first = expect(StatusCode::OK, page("&limit=2")).await;
    assert_eq!(notes(&first), ["activity 0", "activity 1"]);
    let cursor = first["additional_data"]["next_cursor"].as_str().unwrap();
    let (_, last) = send(page(&format!("&limit=2&cursor={cursor}"))).await;
    assert_eq!(notes(&last), ["activity 2"]);
    assert_eq!(last["additional_data"]["next_cursor"], Value::Null);

    for query in ["&limit=501", "&limit=0", "&cursor=not-a-cursor"] {
        let (status, body) = send(page(query)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["success"], false);
        assert_eq!(body["code"], "ERR_SCHEMA_VALIDATION_FAILED");
    }
    let (status, body) = send(page("&limit=500")).await;
    assert_eq!(status, StatusCode::OK, "500 is allowed: {body}");
}

/// Pipedrive lists each person field with its `field_type` and options by
/// id (developers.pipedrive.com/docs/api/v1/PersonFields), and API v2
/// refuses a custom field value its type cannot hold: a string for a
/// `double` ("Numeric fields no longer coerce string input to number",
/// the v2 migration guide), a label or unknown id for an `enum`, a date
/// not `YYYY-MM-DD`, and (the strictest reading) a `varchar` over 255
/// characters; nothing is written.
#[tokio::test]
async fn pipedrive_lists_field_types_and_refuses_a_value_a_custom_field_cannot_hold() {
    let sim = sim().await;
    let (intent, ids) =
        sim.define_pipedrive_person_field("AI intent", "enum", &["Sales", "Support"]);
    let (score, _) = sim.define_pipedrive_person_field("AI score", "double", &[]);
    let (day, _) = sim.define_pipedrive_person_field("AI day", "date", &[]);
    let (topic, _) = sim.define_pipedrive_person_field("AI topic", "varchar", &[]);
    let listed = expect(
        StatusCode::OK,
        sim.pipedrive(Method::GET, "/api/v1/personFields"),
    )
    .await;
    let intent_def = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["key"] == intent.as_str())
        .unwrap()
        .clone();
    assert_eq!(intent_def["field_type"], "enum");
    assert_eq!(
        intent_def["options"][1],
        json!({ "id": ids[1], "label": "Support" })
    );
    for (key, value) in [
        (&intent, json!("Support")),
        (&intent, json!(999_999)),
        (&score, json!("4.5")),
        (&day, json!("01/05/2026")),
        (&topic, json!("x".repeat(256))),
    ] {
        let body = json!({ "name": "Ann", "custom_fields": { key.as_str(): value } });
        let refused = expect(
            StatusCode::BAD_REQUEST,
            sim.pipedrive(Method::POST, "/api/v2/persons").json(&body),
        )
        .await;
        assert_eq!(refused["code"], "ERR_SCHEMA_VALIDATION_FAILED", "{value}");
    }
    assert!(sim.snapshot().contacts.is_empty());
    let fitting = json!({ "name": "Ann", "custom_fields": {
        intent.as_str(): ids[0], score.as_str(): 4.5, day.as_str(): "2026-05-01", topic.as_str(): "pricing",
    }});
    expect(
        StatusCode::OK,
        sim.pipedrive(Method::POST, "/api/v2/persons")
            .json(&fitting),
    )
    .await;
}

#[tokio::test]
async fn pipedrive_v1_drops_an_unknown_note_key_and_stores_nothing_of_it() {
    let sim = sim().await;
    let person = pipedrive_person(&sim).await;
    expect(
        StatusCode::CREATED,
        sim.pipedrive(Method::POST, "/api/v1/notes").json(&json!({
            "content": "<p>hello</p>", "person_id": person,
            "pinned_to_person_flag": 1, "subject": "not a note key",
        })),
    )
    .await;
    let note = &sim.snapshot().calls[0];
    assert_eq!(note.prop("content"), Some("<p>hello</p>"));
    assert_eq!(
        note.properties.get("pinned_to_person_flag"),
        Some(&json!(1))
    );
    assert!(!note.properties.contains_key("subject"), "{note:?}");
}

#[tokio::test]
async fn pipedrive_v2_refuses_an_unknown_person_or_activity_key() {
    let sim = sim().await;
    // `phone` is v1's name; v2 calls it `phones`.
    let body = expect(
        StatusCode::BAD_REQUEST,
        sim.pipedrive(Method::POST, "/api/v2/persons").json(&json!({
            "name": "Ann", "phone": [{ "value": "+14155550100" }]
        })),
    )
    .await;
    assert_eq!(body["code"], "ERR_SCHEMA_VALIDATION_FAILED");
    assert!(body["error"].as_str().unwrap().contains("phone"), "{body}");
    assert!(sim.snapshot().contacts.is_empty());

    let person = pipedrive_person(&sim).await;
    expect(
        StatusCode::BAD_REQUEST,
        sim.pipedrive(Method::PATCH, &format!("/api/v2/persons/{person}"))
            .json(&json!({ "last_call_summary": "x" })),
    )
    .await;
    // `person_id` is read-only in v2: the person is a participant.
    let body = expect(
        StatusCode::BAD_REQUEST,
        sim.pipedrive(Method::POST, "/api/v2/activities")
            .json(&json!({
                "subject": "call", "type": "call", "due_date": "2026-05-01", "person_id": person,
                "participants": [{ "person_id": person, "primary": true }],
            })),
    )
    .await;
    assert_eq!(body["code"], "ERR_SCHEMA_VALIDATION_FAILED");
    assert!(sim.snapshot().tasks.is_empty());
}

/// The worker finds a note whose outcome it did not learn even when the
/// person's notes fill more than one page: it walks every page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipedrive_a_note_applied_but_reset_is_found_past_the_first_page_and_not_repeated() {
    let app = TestApp::builder().crm("pipedrive").start().await;
    let person = app.env.sim.seed_contact(properties(
        json!({ "name": "Ann", "phones": [{ "value": "+61291234567", "primary": true }] }),
    ));
    app.env
        .sim
        .seed_pipedrive_notes(&person, (0..600).map(|i| format!("<p>older note {i}</p>")));
    app.env.sim.inject("create_note", Fault::ApplyThenReset, 1);
    app.post_voicedock(voicedock_report("many-notes", "+61291234567", true))
        .await;
    let s = app.settle().await;
    app.assert_ledger(1, 0).await;
    assert_eq!(s.task_markers(), [voicedock_marker("many-notes")]);
    let marked: Vec<_> = s
        .calls
        .iter()
        .filter(|n| n.marker().is_some_and(|m| m.ends_with("many-notes")))
        .collect();
    assert_eq!(marked.len(), 1, "adopted, not created again");
    assert_eq!(s.calls.len(), 601);
    assert_eq!(s.stats.resets, 1);
    assert_eq!(s.stats.by_operation.get("create_note"), Some(&1));
    assert!(
        s.stats
            .by_operation
            .get("list_notes")
            .is_some_and(|n| *n >= 2),
        "the second page was read: {:?}",
        s.stats.by_operation
    );
    assert_eq!(s.contacts.len(), 1, "the seeded person was found");
    app.shutdown().await;
}

// GoHighLevel

/// A GoHighLevel contact body for `phone` in the test location.
fn ghl_contact(phone: &str) -> Value {
    json!({ "locationId": "loc-1", "phone": phone, "name": "Ann" })
}

/// Sends `body` to GoHighLevel with `method` on `path` and asserts the 422
/// listing `messages`.
async fn assert_ghl_refuses(
    sim: &Sim,
    method: Method,
    path: &str,
    body: &Value,
    messages: &[&str],
) {
    let request = sim.gohighlevel(method, path).json(body);
    let body = expect(StatusCode::UNPROCESSABLE_ENTITY, request).await;
    assert_unprocessable(&body, messages);
}

fn assert_unprocessable(body: &Value, messages: &[&str]) {
    assert_eq!(body["statusCode"], 422, "{body}");
    assert_eq!(body["error"], "Unprocessable Entity");
    assert_eq!(body["message"], json!(messages));
}

#[tokio::test]
async fn gohighlevel_refuses_a_body_key_the_endpoint_does_not_declare_with_422() {
    let sim = sim().await;
    let mut contact = ghl_contact("+14155550100");
    contact["lastCallSummary"] = json!("x");
    let refusal = ["property lastCallSummary should not exist"];
    assert_ghl_refuses(&sim, Method::POST, "/contacts/upsert", &contact, &refusal).await;
    assert!(sim.snapshot().contacts.is_empty());

    let (_, created) = send(
        sim.gohighlevel(Method::POST, "/contacts/upsert")
            .json(&ghl_contact("+14155550100")),
    )
    .await;
    let id = created["contact"]["id"].as_str().unwrap();
    let task = json!({
        "title": "Follow up", "dueDate": "2026-05-02T08:00:00Z", "completed": false,
        "priority": "high"
    });
    // (method, path, body, the one message of the 422)
    let writes = [
        // `locationId` belongs in a create, not in an update.
        (
            Method::PUT,
            format!("/contacts/{id}"),
            json!({ "locationId": "loc-1", "companyName": "Acme" }),
            "property locationId should not exist",
        ),
        (
            Method::POST,
            format!("/contacts/{id}/notes"),
            json!({ "body": "hello", "marker": "callsync:x" }),
            "property marker should not exist",
        ),
        (
            Method::POST,
            format!("/contacts/{id}/tasks"),
            task,
            "property priority should not exist",
        ),
    ];
    for (method, path, body, message) in writes {
        assert_ghl_refuses(&sim, method, &path, &body, &[message]).await;
    }
    let s = sim.snapshot();
    assert!(s.calls.is_empty() && s.tasks.is_empty());
}

#[tokio::test]
async fn gohighlevel_create_refuses_a_known_number_by_default_and_adds_one_when_duplicates_are_allowed()
 {
    let sim = sim().await;
    let create = || {
        sim.gohighlevel(Method::POST, "/contacts/")
            .json(&ghl_contact("+14155550100"))
    };
    let first = expect(StatusCode::CREATED, create()).await;
    let (status, body) = send(create()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({
            "statusCode": 400,
            "message": "This location does not allow duplicated contacts.",
            "meta": {
                "contactId": first["contact"]["id"],
                "contactName": "Ann",
                "matchingField": "phone",
            }
        })
    );
    assert_eq!(sim.snapshot().contacts.len(), 1);

    sim.set_gohighlevel_location(Location {
        allow_duplicate_contacts: true,
        ..Location::default()
    });
    let (status, _) = send(create()).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = send(create()).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(sim.snapshot().contacts.len(), 3, "a new contact every time");
}

#[tokio::test]
async fn gohighlevel_upsert_updates_the_contact_with_the_number_unless_told_to_add_one() {
    let sim = sim().await;
    let upsert = |body: Value| {
        sim.gohighlevel(Method::POST, "/contacts/upsert")
            .json(&body)
    };
    let (_, first) = send(upsert(ghl_contact("+14155550100"))).await;
    assert_eq!(first["new"], true);
    let (_, again) = send(upsert(ghl_contact("+14155550100"))).await;
    assert_eq!(again["new"], false);
    assert_eq!(again["contact"]["id"], first["contact"]["id"]);

    // Asking for a new contact only counts where duplicates are allowed.
    let mut ask_new = ghl_contact("+14155550100");
    ask_new["createNewIfDuplicateAllowed"] = json!(true);
    let (_, body) = send(upsert(ask_new.clone())).await;
    assert_eq!(body["new"], false);
    sim.set_gohighlevel_location(Location {
        allow_duplicate_contacts: true,
        ..Location::default()
    });
    let (_, body) = send(upsert(ask_new)).await;
    assert_eq!(body["new"], true);

    sim.set_gohighlevel_location(Location {
        upsert_merges: false,
        ..Location::default()
    });
    let (_, body) = send(upsert(ghl_contact("+14155550100"))).await;
    assert_eq!(body["new"], true, "the merge is off");
    assert_eq!(sim.snapshot().contacts.len(), 3);
}

/// One contact per caller comes from the worker's ledger, not from
/// GoHighLevel merging upserts: with the merge off, two workers racing on
/// one new number still create one contact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gohighlevel_two_workers_and_one_new_number_give_one_contact_without_the_upsert_merge() {
    let app = TestApp::racing("gohighlevel", Duration::from_millis(100)).await;
    app.env.sim.set_gohighlevel_location(Location {
        upsert_merges: false,
        ..Location::default()
    });
    let ids = ["race-a", "race-b", "race-c"];
    let markers = app.post_reports_at_once(&ids, "+61291234567", true).await;
    let s = app.settle().await;
    app.assert_ledger(3, 0).await;
    assert_eq!(s.call_markers(), markers);
    assert_eq!(s.task_markers(), markers);
    assert_eq!(s.contacts.len(), 1, "{:#?}", s.contacts);
    let contact = &s.contacts[0].id;
    assert!(
        s.calls
            .iter()
            .chain(&s.tasks)
            .all(|r| r.associations == vec![contact.clone()])
    );
    assert_eq!(
        s.stats.by_operation.get("upsert_contact"),
        Some(&1),
        "one upsert, so no merge was needed"
    );
    app.shutdown().await;
}

// Credentials

/// A request to a representative write of each CRM, and the 401 body that
/// CRM sends when the credential is missing or wrong.
fn write_without(sim: &Sim, crm: &str, token: Option<&str>) -> (RequestBuilder, Value) {
    let bearer = |request: RequestBuilder| match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    match crm {
        "hubspot" => (
            bearer(sim.request(Method::POST, "/crm/v3/objects/contacts"))
                .json(&json!({ "properties": { "phone": "+14155550100" } })),
            json!({
                "status": "error",
                "message": "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
                "category": "INVALID_AUTHENTICATION",
            }),
        ),
        "pipedrive" => {
            let request = sim
                .request(Method::POST, "/api/v2/persons")
                .json(&json!({ "name": "Ann" }));
            (
                match token {
                    Some(token) => request.header("x-api-token", token),
                    None => request,
                },
                json!({
                    "success": false,
                    "error": "unauthorized access",
                    "errorCode": 401,
                    "error_info": "Please check developers.pipedrive.com for more information about Pipedrive API.",
                }),
            )
        }
        "gohighlevel" => (
            bearer(sim.request(Method::POST, "/contacts/upsert"))
                .header("Version", "2021-07-28")
                // Not HubSpot's number: crm-sim keeps one contact list for all CRMs.
                .json(&ghl_contact("+14155550199")),
            json!({
                "statusCode": 401,
                "message": "Invalid token: access token is invalid",
                "error": "Unauthorized",
            }),
        ),
        "salesforce" => (
            bearer(sim.request(Method::POST, "/services/data/v60.0/sobjects/Contact"))
                .json(&json!({ "LastName": "Smith" })),
            json!([{ "errorCode": "INVALID_SESSION_ID", "message": "Session expired or invalid" }]),
        ),
        other => panic!("unknown CRM {other}"),
    }
}

#[tokio::test]
async fn every_crm_refuses_a_missing_or_wrong_token_with_its_own_401() {
    let sim = sim().await;
    let mut refused = 0;
    for crm in ["hubspot", "pipedrive", "gohighlevel", "salesforce"] {
        for token in [None, Some("wrong-token")] {
            let (request, expected) = write_without(&sim, crm, token);
            let (status, mut body) = send(request).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{crm} {token:?}: {body}");
            // HubSpot's correlation id differs on every answer.
            if let Some(fields) = body.as_object_mut() {
                fields.remove("correlationId");
            }
            assert_eq!(body, expected, "{crm} {token:?}");
            refused += 1;
        }
        // And the right token passes the same request.
        let (request, _) = write_without(&sim, crm, Some(&sim.token()));
        let (status, body) = send(request).await;
        assert!(status.is_success(), "{crm}: {status} {body}");
    }
    let s = sim.snapshot();
    assert_eq!(s.stats.unauthorized, refused);
    assert_eq!(
        s.contacts.len(),
        4,
        "only the authorised writes were applied"
    );
}

#[tokio::test]
async fn pipedrive_v2_takes_the_token_only_in_its_header_and_v1_also_as_api_token() {
    let sim = sim().await;
    let token = sim.token();
    let body = expect(
        StatusCode::UNAUTHORIZED,
        sim.request(Method::POST, &format!("/api/v2/persons?api_token={token}"))
            .json(&json!({ "name": "Ann" })),
    )
    .await;
    assert_eq!(body["error"], "unauthorized access");
    let (status, body) = send(sim.request(
        Method::GET,
        &format!("/api/v1/personFields?api_token={token}"),
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = send(sim.request(Method::GET, "/api/v1/personFields?api_token=wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// A call report event, signed for `secret` at `timestamp`.
fn signed_delivery(sim: &Sim, secret: &str, timestamp: i64) -> RequestBuilder {
    let body = serde_json::to_vec(&json!({
        "type": "call.report", "timestamp": "2026-05-01T08:00:00Z",
        "data": { "source": "voicedock", "call_id": "c1", "summary": "hi", "follow_up_needed": false,
                  "caller": { "phone": { "e164": "+14155550100" } } }
    }))
    .unwrap();
    let id = "callsync:voicedock:c1";
    let signature = callsync_shared::signature::sign_standard_webhook(secret, id, timestamp, &body);
    sim.request(Method::POST, "/hooks/callsync")
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
}

fn unix_now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

#[tokio::test]
async fn the_webhook_receiver_refuses_a_bad_signature_or_a_stale_timestamp_with_401() {
    let sim = sim().await;
    let now = unix_now();
    let cases = [
        (
            signed_delivery(&sim, "another-secret", now),
            "no webhook-signature matches",
        ),
        (
            signed_delivery(&sim, &sim.token(), now - 6 * 60),
            "webhook-timestamp is more than five minutes from now",
        ),
        (
            signed_delivery(&sim, &sim.token(), now + 6 * 60),
            "webhook-timestamp is more than five minutes from now",
        ),
        (
            sim.request(Method::POST, "/hooks/callsync")
                .json(&json!({ "type": "call.report", "data": {} })),
            "missing webhook-id, webhook-timestamp or webhook-signature",
        ),
    ];
    for (request, reason) in cases {
        let (status, body) = send(request).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{reason}");
        assert_eq!(body, json!({ "error": reason }));
    }
    assert!(sim.snapshot().calls.is_empty());
    let (status, body) = send(signed_delivery(&sim, &sim.token(), now - 4 * 60)).await;
    assert_eq!(
        status,
        StatusCode::NO_CONTENT,
        "within five minutes: {body}"
    );
    assert_eq!(sim.snapshot().calls.len(), 1);
}

/// GoHighLevel checks the scope each operation lists in its OpenAPI file's
/// `security` before anything else, and refuses a token without it with
/// 401 "The token is not authorized for this scope.": `GET
/// /locations/{id}/customFields` (get-custom-fields) needs
/// `locations/customFields.readonly`, `POST` (create-custom-field)
/// `locations/customFields.write`, `POST /contacts/{id}/notes`
/// (create-note) `contacts.write`, `POST /contacts/search`
/// (search-contacts-advanced) `contacts.readonly`.
#[tokio::test]
async fn gohighlevel_refuses_a_token_without_the_scope_its_openapi_file_lists_for_the_route() {
    let sim = sim().await;
    sim.grant_gohighlevel_scopes(&["contacts.readonly"]);
    let refused = |body: Value| {
        assert_eq!(
            body["message"], "The token is not authorized for this scope.",
            "{body}"
        );
    };
    refused(
        expect(
            StatusCode::UNAUTHORIZED,
            sim.gohighlevel(Method::GET, "/locations/loc-1/customFields?model=contact"),
        )
        .await,
    );
    // Refused for the scope before its body is read (this one lacks `name`).
    refused(
        expect(
            StatusCode::UNAUTHORIZED,
            sim.gohighlevel(Method::POST, "/locations/loc-1/customFields")
                .json(&json!({})),
        )
        .await,
    );
    let contact = sim.seed_contact(properties(
        json!({ "name": "Known", "phone": "+31612345678" }),
    ));
    refused(
        expect(
            StatusCode::UNAUTHORIZED,
            sim.gohighlevel(Method::POST, &format!("/contacts/{contact}/notes"))
                .json(&json!({ "body": "note" })),
        )
        .await,
    );
    let search = json!({ "locationId": "loc-1", "page": 1, "pageLimit": 10, "filters": [] });
    expect(
        StatusCode::OK,
        sim.gohighlevel(Method::POST, "/contacts/search")
            .json(&search),
    )
    .await;
    assert!(sim.snapshot().calls.is_empty(), "no note was stored");

    // With the scope, the field without `name` is refused for its body.
    sim.grant_gohighlevel_scopes(&callsync_tests::sim::gohighlevel::ALL_SCOPES);
    expect(
        StatusCode::UNPROCESSABLE_ENTITY,
        sim.gohighlevel(Method::POST, "/locations/loc-1/customFields")
            .json(&json!({})),
    )
    .await;
}

/// A contact's additional phones come back as GoHighLevel's search doc
/// shows them: `"additionalPhones": ["123456789", "987654321"]`.
#[tokio::test]
async fn gohighlevel_search_answers_additional_phones_as_strings() {
    let sim = sim().await;
    sim.seed_contact(properties(json!({
        "name": "Known", "phone": "+31612345678", "additionalPhones": ["+31201234567"]
    })));
    let search = json!({ "locationId": "loc-1", "page": 1, "pageLimit": 10, "filters": [] });
    let body = expect(
        StatusCode::OK,
        sim.gohighlevel(Method::POST, "/contacts/search")
            .json(&search),
    )
    .await;
    assert_eq!(
        body["contacts"][0]["additionalPhones"],
        json!(["+31201234567"])
    );
}

/// `TaskSubtype` is create-only (its properties are "Create, Filter,
/// Group, Nillable, Restricted picklist, Sort", without Update: object
/// reference, Task): an upsert that finds its Task and names it is refused
/// with `INVALID_FIELD_FOR_INSERT_UPDATE`, even with the value it has.
#[tokio::test]
async fn salesforce_refuses_task_subtype_in_an_upsert_that_updates_whatever_its_value() {
    let sim = sim().await;
    let contact = salesforce_contact(&sim).await;
    let path = "/sobjects/Task/Callsync_Marker__c/callsync:voicedock:subtype";
    let task = json!({ "WhoId": contact, "Subject": "Call", "TaskSubtype": "Call", "ActivityDate": "2026-05-01" });
    expect(
        StatusCode::CREATED,
        sim.salesforce(Method::PATCH, path).json(&task),
    )
    .await;
    let refused = expect(
        StatusCode::BAD_REQUEST,
        sim.salesforce(Method::PATCH, path).json(&task),
    )
    .await;
    assert_eq!(refused[0]["errorCode"], "INVALID_FIELD_FOR_INSERT_UPDATE");
    let without =
        json!({ "WhoId": contact, "Subject": "Call again", "ActivityDate": "2026-05-01" });
    expect(
        StatusCode::OK,
        sim.salesforce(Method::PATCH, path).json(&without),
    )
    .await;
    assert_eq!(sim.snapshot().calls[0].prop("Subject"), Some("Call again"));
}

/// A marker the Unique flag keeps to one Task refuses a second create with
/// `DUPLICATE_VALUE`; without the flag two Tasks may carry it, and an
/// upsert or read by it answers 300 listing both.
#[tokio::test]
async fn salesforce_refuses_a_second_task_with_a_unique_marker_and_answers_300_for_a_shared_one() {
    let sim = sim().await;
    let contact = salesforce_contact(&sim).await;
    let task = json!({ "WhoId": contact, "Subject": "Follow up", "ActivityDate": "2026-05-01", "Callsync_Marker__c": "m-1" });
    expect(
        StatusCode::CREATED,
        sim.salesforce(Method::POST, "/sobjects/Task").json(&task),
    )
    .await;
    let refused = expect(
        StatusCode::BAD_REQUEST,
        sim.salesforce(Method::POST, "/sobjects/Task").json(&task),
    )
    .await;
    assert_eq!(refused[0]["errorCode"], "DUPLICATE_VALUE");

    sim.set_salesforce_org(callsync_tests::sim::salesforce::Org {
        marker_unique: false,
        ..Default::default()
    });
    expect(
        StatusCode::CREATED,
        sim.salesforce(Method::POST, "/sobjects/Task").json(&task),
    )
    .await;
    let listed = expect(
        StatusCode::MULTIPLE_CHOICES,
        sim.salesforce(Method::GET, "/sobjects/Task/Callsync_Marker__c/m-1"),
    )
    .await;
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    expect(
        StatusCode::MULTIPLE_CHOICES,
        sim.salesforce(Method::PATCH, "/sobjects/Task/Callsync_Marker__c/m-1")
            .json(&json!({ "Subject": "x" })),
    )
    .await;
    assert_eq!(sim.snapshot().tasks.len(), 2, "nothing written by the 300");
}

/// An "Alert" duplicate rule refuses an API save that matches an existing
/// record with `DUPLICATES_DETECTED`, naming the records, unless the
/// request sends `Sforce-Duplicate-Rule-Header: allowSave=true`.
#[tokio::test]
async fn salesforce_duplicate_rule_refuses_a_matching_contact_unless_allowed_to_save() {
    let sim = sim().await;
    sim.set_salesforce_org(callsync_tests::sim::salesforce::Org {
        email_duplicate_rule: true,
        ..Default::default()
    });
    let jan = json!({ "LastName": "Jansen", "Email": "jan@example.com" });
    let first = expect(
        StatusCode::CREATED,
        sim.salesforce(Method::POST, "/sobjects/Contact").json(&jan),
    )
    .await;
    let refused = expect(
        StatusCode::BAD_REQUEST,
        sim.salesforce(Method::POST, "/sobjects/Contact").json(&jan),
    )
    .await;
    assert_eq!(refused[0]["errorCode"], "DUPLICATES_DETECTED");
    assert_eq!(
        refused[0]["duplicateResult"]["matchResults"][0]["matchRecords"][0]["record"]["Id"],
        first["id"]
    );
    expect(
        StatusCode::CREATED,
        sim.salesforce(Method::POST, "/sobjects/Contact")
            .header("Sforce-Duplicate-Rule-Header", "allowSave=true")
            .json(&jan),
    )
    .await;
    assert_eq!(sim.snapshot().contacts.len(), 2);
}

/// A custom field the admin has not created is absent from the object's
/// describe and refused on write with `INVALID_FIELD`, "No such column".
#[tokio::test]
async fn salesforce_without_a_custom_field_describes_it_absent_and_refuses_writing_it() {
    let sim = sim().await;
    sim.set_salesforce_org(callsync_tests::sim::salesforce::Org {
        missing_fields: vec![("Contact".into(), "Callsync_Last_Sentiment__c".into())],
        ..Default::default()
    });
    let described = expect(
        StatusCode::OK,
        sim.salesforce(Method::GET, "/sobjects/Contact/describe"),
    )
    .await;
    let names: Vec<&str> = described["fields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert!(names.contains(&"Callsync_Last_Call_At__c"), "{names:?}");
    assert!(!names.contains(&"Callsync_Last_Sentiment__c"), "{names:?}");
    let refused = expect(
        StatusCode::BAD_REQUEST,
        sim.salesforce(Method::POST, "/sobjects/Contact")
            .json(&json!({ "LastName": "X", "Callsync_Last_Sentiment__c": "positive" })),
    )
    .await;
    assert_eq!(refused[0]["errorCode"], "INVALID_FIELD");
    assert!(
        refused[0]["message"]
            .as_str()
            .unwrap()
            .contains("No such column 'Callsync_Last_Sentiment__c'")
    );
}

/// `IN PHONE FIELDS` finds a number typed with punctuation by its whole
/// digits, never by a part of them: the strictest reading of Salesforce's
/// undocumented phone tokenising (see the simulator's rule).
#[tokio::test]
async fn salesforce_phone_search_matches_whole_numbers_not_digit_substrings() {
    let sim = sim().await;
    sim.seed_contact_with_id(
        "003000000000000001",
        properties(json!({ "LastName": "Known", "Phone": "06 12345678" })),
    );
    let find = |term: &str| {
        sim.salesforce(Method::GET, "/search/").query(&[(
            "q",
            format!("FIND {{{term}}} IN PHONE FIELDS RETURNING Contact(Id, Phone)"),
        )])
    };
    let found = |body: Value| body["searchRecords"].as_array().map_or(0, Vec::len);
    assert_eq!(found(expect(StatusCode::OK, find("612345678")).await), 0);
    assert_eq!(found(expect(StatusCode::OK, find("0612345678")).await), 1);
    assert_eq!(
        found(expect(StatusCode::OK, find("612345678 OR 0612345678")).await),
        1
    );
}

/// GoHighLevel's contact search: `pageLimit` is "required" (a search
/// without it answers 422, GoHighLevel/highlevel-api-docs#31), and the
/// `contains` operator "does not support special characters" (search doc).
#[tokio::test]
async fn gohighlevel_search_refuses_a_missing_page_limit_and_special_characters_in_contains() {
    let sim = sim().await;
    let search = |body: Value| {
        sim.gohighlevel(Method::POST, "/contacts/search")
            .json(&body)
    };
    expect(
        StatusCode::UNPROCESSABLE_ENTITY,
        search(json!({ "locationId": "loc-1", "page": 1, "filters": [] })),
    )
    .await;
    let contains = |value: &str| {
        json!({ "locationId": "loc-1", "page": 1, "pageLimit": 10, "filters": [
            { "field": "phone", "operator": "contains", "value": value }
        ]})
    };
    expect(
        StatusCode::UNPROCESSABLE_ENTITY,
        search(contains("+31612345678")),
    )
    .await;
    expect(
        StatusCode::UNPROCESSABLE_ENTITY,
        search(contains("6 1234 5678")),
    )
    .await;
    expect(StatusCode::OK, search(contains("612345678"))).await;
}

/// GoHighLevel holds phones in E.164 and, as the strictest reading of its
/// search doc, finds one by `eq` on the whole E.164 string or `contains`
/// on a run of it, never by a national form or scattered digits; the
/// duplicate search takes the E.164 form only. A number written
/// nationally is held in E.164 read in the contact's country.
#[tokio::test]
async fn gohighlevel_holds_phones_in_e164_and_finds_them_by_that_form_only() {
    let sim = sim().await;
    let mut typed = ghl_contact("06 12345678");
    typed["country"] = json!("NL");
    let created = expect(
        StatusCode::OK,
        sim.gohighlevel(Method::POST, "/contacts/upsert")
            .json(&typed),
    )
    .await;
    assert_eq!(created["contact"]["phone"], "+31612345678");
    // The same number in another form is the same contact: no second one.
    let again = expect(
        StatusCode::OK,
        sim.gohighlevel(Method::POST, "/contacts/upsert")
            .json(&ghl_contact("+31 6 1234 5678")),
    )
    .await;
    assert_eq!(again["new"], false);
    assert_eq!(sim.snapshot().contacts.len(), 1);

    let search = |operator: &str, value: &str| {
        sim.gohighlevel(Method::POST, "/contacts/search").json(
            &json!({ "locationId": "loc-1", "page": 1, "pageLimit": 10, "filters": [
                { "field": "phone", "operator": operator, "value": value }
            ]}),
        )
    };
    let found = |body: Value| body["contacts"].as_array().map_or(0, Vec::len);
    for (operator, value, hits) in [
        ("eq", "+31612345678", 1),
        ("contains", "612345678", 1),
        ("contains", "31612345678", 1),
        ("eq", "06 12345678", 0),
        ("eq", "0612345678", 0),
        ("eq", "612345678", 0),
        ("contains", "0612345678", 0),
        ("contains", "61245678", 0),
    ] {
        let body = expect(StatusCode::OK, search(operator, value)).await;
        assert_eq!(found(body), hits, "{operator} {value}");
    }
    let duplicate = |number: &str| {
        sim.gohighlevel(Method::GET, "/contacts/search/duplicate")
            .query(&[("locationId", "loc-1"), ("number", number)])
    };
    let by_e164 = expect(StatusCode::OK, duplicate("+31612345678")).await;
    assert_eq!(by_e164["contact"]["id"], created["contact"]["id"]);
    let by_national = expect(StatusCode::OK, duplicate("0612345678")).await;
    assert!(by_national["contact"].is_null(), "{by_national}");
}
