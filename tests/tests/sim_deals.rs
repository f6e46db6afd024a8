//! crm-sim's pipelines and deals accept what each vendor accepts and refuse
//! what it refuses: HubSpot deals in a pipeline's stages associated with a
//! contact (type 3), Pipedrive v2 deals on a person in a pipeline's stage,
//! Salesforce Opportunities (required fields, the OpportunityStage
//! picklist, upsert by External ID) tied to a Contact by an
//! OpportunityContactRole, and GoHighLevel opportunities under the scopes
//! its OpenAPI file lists. Each refusal leaves no deal behind.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use callsync_tests::sim::client::{SimClient, expect, send};
use callsync_tests::sim::schema::{Pipeline, Vendor};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn properties(value: Value) -> serde_json::Map<String, Value> {
    value.as_object().unwrap().clone()
}

// HubSpot

fn hubspot_deal(stage: &str, pipeline: Option<&str>, contact: &str) -> Value {
    let mut properties = json!({ "dealname": "Callback", "dealstage": stage });
    if let Some(pipeline) = pipeline {
        properties["pipeline"] = json!(pipeline);
    }
    json!({
        "properties": properties,
        "associations": [{
            "to": { "id": contact },
            "types": [{ "associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 3 }]
        }]
    })
}

#[tokio::test]
async fn hubspot_lists_its_deal_pipelines_with_their_stages() {
    let sim = SimClient::start().await;
    let body = expect(
        StatusCode::OK,
        sim.hubspot(Method::GET, "/crm/v3/pipelines/deals"),
    )
    .await;
    let pipeline = &body["results"][0];
    assert_eq!(pipeline["id"], "default");
    let stages: Vec<&str> = pipeline["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(stages.first(), Some(&"appointmentscheduled"));
    assert!(stages.contains(&"closedwon") && stages.contains(&"closedlost"));
}

/// A deal lands in the default pipeline when none is named and is
/// associated with its contact; an unknown pipeline, a stage of another
/// pipeline, a missing stage, a wrong association type or an unknown
/// contact are refused with 400 and nothing is created.
#[tokio::test]
async fn hubspot_creates_a_deal_on_a_contact_and_refuses_an_unknown_pipeline_or_stage() {
    let sim = SimClient::start().await;
    sim.set_pipelines(
        Vendor::Hubspot,
        vec![
            Pipeline::new("default", "Sales", &[("new", "New"), ("won", "Won")]),
            Pipeline::new("renewals", "Renewals", &[("due", "Due")]),
        ],
    );
    let contact = sim.seed_contact(properties(json!({ "phone": "+14155550100" })));
    let create = |body: Value| {
        sim.hubspot(Method::POST, "/crm/v3/objects/deals")
            .json(&body)
    };
    let option_refused = |body: &Value, name: &str| {
        let message = body["message"].as_str().unwrap();
        assert_eq!(body["category"], "VALIDATION_ERROR", "{body}");
        assert!(
            message.contains("INVALID_OPTION") && message.contains(name),
            "{message}"
        );
    };
    let body = expect(
        StatusCode::BAD_REQUEST,
        create(hubspot_deal("new", Some("enterprise"), &contact)),
    )
    .await;
    option_refused(&body, "pipeline");
    let body = expect(
        StatusCode::BAD_REQUEST,
        create(hubspot_deal("due", Some("default"), &contact)),
    )
    .await;
    option_refused(&body, "dealstage");
    let mut stageless = hubspot_deal("new", None, &contact);
    stageless["properties"]
        .as_object_mut()
        .unwrap()
        .remove("dealstage");
    expect(StatusCode::BAD_REQUEST, create(stageless)).await;
    let mut wrong_type = hubspot_deal("new", None, &contact);
    wrong_type["associations"][0]["types"][0]["associationTypeId"] = json!(194);
    expect(StatusCode::BAD_REQUEST, create(wrong_type)).await;
    expect(
        StatusCode::BAD_REQUEST,
        create(hubspot_deal("new", None, "404404")),
    )
    .await;
    let mut unknown_property = hubspot_deal("new", None, &contact);
    unknown_property["properties"]["callsync_marker"] = json!("callsync:x");
    let body = expect(StatusCode::BAD_REQUEST, create(unknown_property)).await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("PROPERTY_DOESNT_EXIST")
    );
    assert!(sim.snapshot().deals.is_empty(), "nothing refused is stored");

    let created = expect(
        StatusCode::CREATED,
        create(hubspot_deal("new", None, &contact)),
    )
    .await;
    assert_eq!(created["properties"]["pipeline"], "default");
    expect(
        StatusCode::CREATED,
        create(hubspot_deal("due", Some("renewals"), &contact)),
    )
    .await;
    let deals = sim.deals_of(&contact);
    assert_eq!(deals.len(), 2);
    assert_eq!(deals[1].prop("pipeline"), Some("renewals"));
}

/// A deal found by a property, once indexed; the deal endpoints need the
/// deals scopes (403 `MISSING_SCOPES` without them).
#[tokio::test]
async fn hubspot_searches_deals_by_a_property_and_needs_the_deals_scopes() {
    let sim = SimClient::start().await;
    let contact = sim.seed_contact(properties(json!({ "phone": "+14155550100" })));
    let mut deal = hubspot_deal("appointmentscheduled", None, &contact);
    deal["properties"]["description"] = json!("callsync:voicedock:c1");
    expect(
        StatusCode::CREATED,
        sim.hubspot(Method::POST, "/crm/v3/objects/deals")
            .json(&deal),
    )
    .await;
    let search = |value: &str| {
        sim.hubspot(Method::POST, "/crm/v3/objects/deals/search")
            .json(&json!({ "filterGroups": [{ "filters": [
                { "propertyName": "description", "operator": "EQ", "value": value }
            ]}]}))
    };
    let found = expect(StatusCode::OK, search("callsync:voicedock:c1")).await;
    assert_eq!(found["total"], 1);
    let none = expect(StatusCode::OK, search("callsync:voicedock:c2")).await;
    assert_eq!(none["total"], 0);

    sim.grant_hubspot_scopes(&callsync_tests::sim::hubspot::ALL_SCOPES);
    let body = expect(
        StatusCode::FORBIDDEN,
        sim.hubspot(Method::POST, "/crm/v3/objects/deals")
            .json(&hubspot_deal("appointmentscheduled", None, &contact)),
    )
    .await;
    assert_eq!(body["category"], "MISSING_SCOPES");
    expect(
        StatusCode::FORBIDDEN,
        sim.hubspot(Method::GET, "/crm/v3/pipelines/deals"),
    )
    .await;
    assert_eq!(sim.snapshot().deals.len(), 1);
}

/// A custom property on deals (callsync's marker) needs the deals schema
/// scope, as one on contacts needs the contacts one; with it, a deal
/// carries the property and is found by it.
#[tokio::test]
async fn hubspot_creates_a_deal_property_only_with_the_deals_schema_scope() {
    let sim = SimClient::start().await;
    let group = json!({ "name": "callsync", "label": "callsync" });
    let property = json!({
        "name": "callsync_marker", "label": "callsync marker", "type": "string",
        "fieldType": "text", "groupName": "callsync"
    });
    let without: Vec<&str> = callsync_tests::sim::hubspot::ALL_SCOPES
        .into_iter()
        .chain(["crm.objects.deals.read", "crm.objects.deals.write"])
        .collect();
    sim.grant_hubspot_scopes(&without);
    let refused = expect(
        StatusCode::FORBIDDEN,
        sim.hubspot(Method::POST, "/crm/v3/properties/deals/groups")
            .json(&group),
    )
    .await;
    assert_eq!(refused["category"], "MISSING_SCOPES");
    assert_eq!(
        refused["errors"][0]["context"]["requiredGranularScopes"][0],
        "crm.schemas.deals.write"
    );
    let all: Vec<&str> = without
        .into_iter()
        .chain(["crm.schemas.deals.write"])
        .collect();
    sim.grant_hubspot_scopes(&all);
    for (path, body) in [("groups", &group), ("", &property)] {
        let path = format!("/crm/v3/properties/deals/{path}");
        expect(
            StatusCode::CREATED,
            sim.hubspot(Method::POST, path.trim_end_matches('/'))
                .json(body),
        )
        .await;
    }
    let contact = sim.seed_contact(properties(json!({ "phone": "+14155550101" })));
    let mut deal = hubspot_deal("appointmentscheduled", Some("default"), &contact);
    deal["properties"]["callsync_marker"] = json!("callsync:voicedock:c1:deal:0");
    expect(
        StatusCode::CREATED,
        sim.hubspot(Method::POST, "/crm/v3/objects/deals")
            .json(&deal),
    )
    .await;
    assert_eq!(sim.snapshot().deals.len(), 1);
}

// Pipedrive

#[tokio::test]
async fn pipedrive_lists_pipelines_and_the_stages_of_one() {
    let sim = SimClient::start().await;
    sim.set_pipelines(
        Vendor::Pipedrive,
        vec![
            Pipeline::new("1", "Sales", &[("1", "Qualified"), ("2", "Won")]),
            Pipeline::new("2", "Partners", &[("3", "Intro")]),
        ],
    );
    let pipelines = expect(
        StatusCode::OK,
        sim.pipedrive(Method::GET, "/api/v1/pipelines"),
    )
    .await;
    assert_eq!(
        pipelines["data"][1],
        json!({ "id": 2, "name": "Partners", "order_nr": 2, "active": true })
    );
    let stages = expect(
        StatusCode::OK,
        sim.pipedrive(Method::GET, "/api/v1/stages")
            .query(&[("pipeline_id", "2")]),
    )
    .await;
    assert_eq!(
        stages["data"],
        json!([{ "id": 3, "name": "Intro", "pipeline_id": 2, "order_nr": 1 }])
    );
    // v2 pages by cursor and takes only an integer pipeline id.
    let first = expect(
        StatusCode::OK,
        sim.pipedrive(Method::GET, "/api/v2/stages")
            .query(&[("pipeline_id", "1"), ("limit", "1")]),
    )
    .await;
    assert_eq!(first["data"][0]["name"], "Qualified");
    let cursor = first["additional_data"]["next_cursor"].as_str().unwrap();
    let next = expect(
        StatusCode::OK,
        sim.pipedrive(Method::GET, "/api/v2/stages").query(&[
            ("pipeline_id", "1"),
            ("limit", "1"),
            ("cursor", cursor),
        ]),
    )
    .await;
    assert_eq!(next["data"][0]["name"], "Won");
    assert!(next["additional_data"]["next_cursor"].is_null());
    expect(
        StatusCode::BAD_REQUEST,
        sim.pipedrive(Method::GET, "/api/v2/stages")
            .query(&[("pipeline_id", "Sales")]),
    )
    .await;
    let v2 = expect(
        StatusCode::OK,
        sim.pipedrive(Method::GET, "/api/v2/pipelines"),
    )
    .await;
    assert_eq!(v2["data"].as_array().unwrap().len(), 2);
}

/// A v2 deal needs a title; its person, pipeline and stage must exist and
/// the stage be one of the pipeline's; without a stage it starts in the
/// pipeline's first; a key v2 does not define is refused.
#[tokio::test]
async fn pipedrive_creates_a_deal_on_a_person_and_refuses_an_unknown_pipeline_or_stage() {
    let sim = SimClient::start().await;
    sim.set_pipelines(
        Vendor::Pipedrive,
        vec![
            Pipeline::new("1", "Sales", &[("1", "Qualified"), ("2", "Won")]),
            Pipeline::new("2", "Partners", &[("3", "Intro")]),
        ],
    );
    let person = sim.seed_contact(properties(json!({ "name": "Ann" })));
    let person_id: i64 = person.parse().unwrap();
    let create = |body: Value| sim.pipedrive(Method::POST, "/api/v2/deals").json(&body);
    let refused = [
        json!({ "person_id": person_id }),
        json!({ "title": "Callback", "person_id": person_id, "pipeline_id": 9 }),
        json!({ "title": "Callback", "person_id": person_id, "stage_id": 99 }),
        json!({ "title": "Callback", "person_id": person_id, "pipeline_id": 1, "stage_id": 3 }),
        json!({ "title": "Callback", "person_id": 404_404 }),
        json!({ "title": "Callback", "person_id": person_id, "stage_id": "1" }),
        json!({ "title": "Callback", "person_id": person_id, "value": "100" }),
        json!({ "title": "Callback", "person_id": person_id, "status": "pending" }),
        json!({ "title": "Callback", "person_id": person_id, "contact_id": person_id }),
    ];
    for body in refused {
        let answer = expect(StatusCode::BAD_REQUEST, create(body.clone())).await;
        assert_eq!(answer["success"], false, "{body}: {answer}");
    }
    assert!(sim.snapshot().deals.is_empty(), "nothing refused is stored");

    let first = expect(
        StatusCode::OK,
        create(json!({ "title": "Callback", "person_id": person_id, "pipeline_id": 2 })),
    )
    .await;
    assert_eq!(first["data"]["stage_id"], 3);
    assert_eq!(first["data"]["status"], "open");
    expect(
        StatusCode::OK,
        create(json!({ "title": "Upsell", "person_id": person_id, "stage_id": 2, "value": 100 })),
    )
    .await;
    let listed = expect(
        StatusCode::OK,
        sim.pipedrive(Method::GET, "/api/v2/deals")
            .query(&[("person_id", person.as_str())]),
    )
    .await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);
    let deals = sim.deals_of(&person);
    assert_eq!(deals[1].properties["pipeline_id"], 1);
}

/// A deal's custom fields are checked against the deal fields.
#[tokio::test]
async fn pipedrive_checks_a_deals_custom_fields_against_the_deal_fields() {
    let sim = SimClient::start().await;
    let source = sim.define_pipedrive_field("deal", "Source", "enum", &["Call", "Web"]);
    let person: i64 = sim
        .seed_contact(properties(json!({ "name": "Ann" })))
        .parse()
        .unwrap();
    let create = |value: Value| {
        sim.pipedrive(Method::POST, "/api/v2/deals")
            .json(&json!({ "title": "Callback", "person_id": person, "custom_fields": { source.key.clone(): value } }))
    };
    expect(StatusCode::BAD_REQUEST, create(json!("Call"))).await;
    assert!(sim.snapshot().deals.is_empty());
    expect(StatusCode::OK, create(source.options[0].id.clone())).await;
}

// Salesforce

async fn salesforce_contact(sim: &SimClient) -> String {
    let body = expect(
        StatusCode::CREATED,
        sim.salesforce(Method::POST, "/sobjects/Contact")
            .json(&json!({ "LastName": "Ann", "Phone": "+14155550100" })),
    )
    .await;
    body["id"].as_str().unwrap().to_owned()
}

/// An Opportunity needs `Name`, `StageName` and `CloseDate`
/// (`REQUIRED_FIELD_MISSING`), a `StageName` of the org's OpportunityStage
/// values (`INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST`) and a date as
/// `CloseDate` (`JSON_PARSER_ERROR`); a contact role ties it to a Contact
/// that exists (`INVALID_CROSS_REFERENCE_KEY` otherwise).
#[tokio::test]
async fn salesforce_creates_an_opportunity_with_a_contact_role_and_refuses_a_stage_not_in_the_picklist()
 {
    let sim = SimClient::start().await;
    let contact = salesforce_contact(&sim).await;
    let create = |body: Value| {
        sim.salesforce(Method::POST, "/sobjects/Opportunity")
            .json(&body)
    };
    let refused = [
        (
            json!({ "Name": "Callback", "StageName": "Prospecting" }),
            "REQUIRED_FIELD_MISSING",
        ),
        (
            json!({ "Name": "Callback", "StageName": "Negotiating", "CloseDate": "2026-06-01" }),
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
        ),
        (
            json!({ "Name": "Callback", "StageName": "Prospecting", "CloseDate": "June 1st" }),
            "JSON_PARSER_ERROR",
        ),
        (
            json!({ "Name": "Callback", "StageName": "Prospecting", "CloseDate": "2026-06-01", "Amount": "100" }),
            "JSON_PARSER_ERROR",
        ),
        (
            json!({ "Name": "Callback", "StageName": "Prospecting", "CloseDate": "2026-06-01", "Stage": "x" }),
            "INVALID_FIELD",
        ),
    ];
    for (body, code) in refused {
        let answer = expect(StatusCode::BAD_REQUEST, create(body.clone())).await;
        assert_eq!(answer[0]["errorCode"], code, "{body}: {answer}");
    }
    assert!(sim.snapshot().deals.is_empty(), "nothing refused is stored");

    let opportunity = expect(
        StatusCode::CREATED,
        create(json!({ "Name": "Callback", "StageName": "Prospecting", "CloseDate": "2026-06-01", "Amount": 100 })),
    )
    .await;
    let opportunity = opportunity["id"].as_str().unwrap();
    assert!(opportunity.starts_with("006"));
    let role = |contact: &str| {
        sim.salesforce(Method::POST, "/sobjects/OpportunityContactRole")
            .json(&json!({ "OpportunityId": opportunity, "ContactId": contact, "IsPrimary": true }))
    };
    let answer = expect(StatusCode::BAD_REQUEST, role("003000000000000404")).await;
    assert_eq!(answer[0]["errorCode"], "INVALID_CROSS_REFERENCE_KEY");
    let roles = |id: &str| {
        sim.salesforce(
            Method::GET,
            &format!("/sobjects/Opportunity/{id}/OpportunityContactRoles"),
        )
    };
    let none = expect(StatusCode::OK, roles(opportunity)).await;
    assert_eq!(none["totalSize"], 0);
    expect(StatusCode::CREATED, role(&contact)).await;
    let deals = sim.deals_of(&contact);
    assert_eq!(deals.len(), 1);
    assert_eq!(deals[0].prop("StageName"), Some("Prospecting"));
    let listed = expect(StatusCode::OK, roles(opportunity)).await;
    assert_eq!(listed["totalSize"], 1);
    assert_eq!(listed["records"][0]["ContactId"], contact.as_str());
    // A second role of the same Contact is not refused: it shows.
    expect(StatusCode::CREATED, role(&contact)).await;
    assert_eq!(
        expect(StatusCode::OK, roles(opportunity)).await["totalSize"],
        2
    );
    expect(StatusCode::NOT_FOUND, roles("006000000000000404")).await;
}

/// An Opportunity upserted by its marker is created once and updated
/// after; a stage the org's picklist lacks is refused on update too.
#[tokio::test]
async fn salesforce_upserts_an_opportunity_by_its_external_id() {
    let sim = SimClient::start().await;
    let path = "/sobjects/Opportunity/Callsync_Marker__c/callsync:voicedock:c1";
    let upsert = |body: Value| sim.salesforce(Method::PATCH, path).json(&body);
    let created = expect(
        StatusCode::CREATED,
        upsert(
            json!({ "Name": "Callback", "StageName": "Prospecting", "CloseDate": "2026-06-01" }),
        ),
    )
    .await;
    assert_eq!(created["created"], true);
    let updated = expect(StatusCode::OK, upsert(json!({ "StageName": "Closed Won" }))).await;
    assert_eq!(updated["created"], false);
    assert_eq!(updated["id"], created["id"]);
    let refused = expect(
        StatusCode::BAD_REQUEST,
        upsert(json!({ "StageName": "Won" })),
    )
    .await;
    assert_eq!(
        refused[0]["errorCode"],
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    );
    let s = sim.snapshot();
    assert_eq!(s.deals.len(), 1);
    assert_eq!(s.deals[0].prop("StageName"), Some("Closed Won"));
    let read = expect(StatusCode::OK, sim.salesforce(Method::GET, path)).await;
    assert_eq!(read["Id"], created["id"]);
}

// GoHighLevel

fn ghl_opportunity(pipeline: &str, stage: Option<&str>, contact: &str) -> Value {
    let mut body = json!({
        "locationId": "loc-1", "name": "Callback", "pipelineId": pipeline,
        "status": "open", "contactId": contact
    });
    if let Some(stage) = stage {
        body["pipelineStageId"] = json!(stage);
    }
    body
}

#[tokio::test]
async fn gohighlevel_lists_pipelines_and_creates_an_opportunity_on_a_contact() {
    let sim = SimClient::start().await;
    sim.set_pipelines(
        Vendor::Gohighlevel,
        vec![
            Pipeline::new(
                "pipeSales000000000001",
                "Sales",
                &[("stage-new", "New"), ("stage-won", "Won")],
            ),
            Pipeline::new(
                "pipePartner0000000002",
                "Partners",
                &[("stage-intro", "Intro")],
            ),
        ],
    );
    let contact = sim.seed_contact(properties(
        json!({ "name": "Ann", "phone": "+14155550100" }),
    ));
    let pipelines = expect(
        StatusCode::OK,
        sim.gohighlevel(Method::GET, "/opportunities/pipelines")
            .query(&[("locationId", "loc-1")]),
    )
    .await;
    assert_eq!(pipelines["pipelines"][1]["stages"][0]["id"], "stage-intro");
    expect(
        StatusCode::UNPROCESSABLE_ENTITY,
        sim.gohighlevel(Method::GET, "/opportunities/pipelines"),
    )
    .await;

    let create = |body: Value| sim.gohighlevel(Method::POST, "/opportunities/").json(&body);
    let mut undeclared = ghl_opportunity("pipeSales000000000001", None, &contact);
    undeclared["stage"] = json!("New");
    let mut all = ghl_opportunity("pipeSales000000000001", None, &contact);
    all["status"] = json!("all");
    let mut no_name = ghl_opportunity("pipeSales000000000001", None, &contact);
    no_name.as_object_mut().unwrap().remove("name");
    let refused = [
        (
            ghl_opportunity("pipeUnknown0000000009", None, &contact),
            StatusCode::BAD_REQUEST,
        ),
        (
            ghl_opportunity("pipeSales000000000001", Some("stage-intro"), &contact),
            StatusCode::BAD_REQUEST,
        ),
        (
            ghl_opportunity("pipeSales000000000001", None, "ghl-unknown"),
            StatusCode::BAD_REQUEST,
        ),
        (all, StatusCode::BAD_REQUEST),
        (undeclared, StatusCode::UNPROCESSABLE_ENTITY),
        (no_name, StatusCode::UNPROCESSABLE_ENTITY),
    ];
    for (body, status) in refused {
        expect(status, create(body)).await;
    }
    assert!(sim.snapshot().deals.is_empty(), "nothing refused is stored");

    let created = expect(
        StatusCode::CREATED,
        create(ghl_opportunity("pipePartner0000000002", None, &contact)),
    )
    .await;
    assert_eq!(created["opportunity"]["pipelineStageId"], "stage-intro");
    expect(
        StatusCode::CREATED,
        create(ghl_opportunity(
            "pipeSales000000000001",
            Some("stage-won"),
            &contact,
        )),
    )
    .await;
    let deals = sim.deals_of(&contact);
    assert_eq!(deals.len(), 2);
    assert_eq!(deals[1].prop("pipelineStageId"), Some("stage-won"));
}

/// The opportunity routes need the scopes `apps/opportunities.json` lists:
/// `opportunities.readonly` to list pipelines, `opportunities.write` to
/// create; without them, 401 "not authorized for this scope" before the
/// body is read.
#[tokio::test]
async fn gohighlevel_opportunity_routes_need_the_opportunity_scopes() {
    let sim = SimClient::start().await;
    let contact = sim.seed_contact(properties(json!({ "name": "Ann" })));
    let pipeline = sim.pipelines(Vendor::Gohighlevel)[0].id.clone();
    sim.grant_gohighlevel_scopes(&[
        "contacts.readonly",
        "contacts.write",
        "opportunities.readonly",
    ]);
    let body = expect(
        StatusCode::UNAUTHORIZED,
        sim.gohighlevel(Method::POST, "/opportunities/")
            .json(&ghl_opportunity(&pipeline, None, &contact)),
    )
    .await;
    assert_eq!(
        body["message"],
        "The token is not authorized for this scope."
    );
    expect(
        StatusCode::OK,
        sim.gohighlevel(Method::GET, "/opportunities/pipelines")
            .query(&[("locationId", "loc-1")]),
    )
    .await;
    sim.grant_gohighlevel_scopes(&["contacts.readonly", "contacts.write"]);
    let (status, _) = send(
        sim.gohighlevel(Method::GET, "/opportunities/pipelines")
            .query(&[("locationId", "loc-1")]),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(sim.snapshot().deals.is_empty());
}

/// An opportunity's custom fields name an opportunity field by `id` or
/// `key` ("Pass either `id` or `key`", `apps/opportunities.json`) and hold
/// a value of its type; a contact field is no opportunity field.
#[tokio::test]
async fn gohighlevel_checks_an_opportunitys_custom_fields_against_the_opportunity_fields() {
    let sim = SimClient::start().await;
    sim.define_gohighlevel_field("opportunity", "source", "SINGLE_OPTIONS", &["Phone", "Web"]);
    let contact_field = sim.define_gohighlevel_field("contact", "tier", "TEXT", &[]);
    let contact = sim.seed_contact(properties(json!({ "name": "Ann" })));
    let pipeline = sim.pipelines(Vendor::Gohighlevel)[0].id.clone();
    let create = |fields: Value| {
        let mut body = ghl_opportunity(&pipeline, None, &contact);
        body["customFields"] = fields;
        sim.gohighlevel(Method::POST, "/opportunities/").json(&body)
    };
    let refused = [
        json!([{ "key": "source", "field_value": "Fax" }]),
        json!([{ "id": contact_field.id, "field_value": "Gold" }]),
    ];
    for fields in refused {
        expect(StatusCode::UNPROCESSABLE_ENTITY, create(fields)).await;
    }
    assert!(sim.snapshot().deals.is_empty(), "nothing refused is stored");
    let created = expect(
        StatusCode::CREATED,
        create(json!([{ "key": "source", "field_value": "Phone" }])),
    )
    .await;
    assert_eq!(created["opportunity"]["customFields"]["source"], "Phone");
}

/// The opportunity search needs `location_id`, pages by `limit` (2 by
/// default, 100 at most) and `page`, filters by `contact_id`, and shows
/// each opportunity's custom fields as `[{id, fieldValue}]`; without
/// `opportunities.readonly` it is refused for the scope.
#[tokio::test]
async fn gohighlevel_searches_a_contacts_opportunities_page_by_page_with_their_custom_fields() {
    let sim = SimClient::start().await;
    let field = sim
        .define_gohighlevel_field("opportunity", "callsync marker", "TEXT", &[])
        .id;
    let ann = sim.seed_contact(properties(json!({ "name": "Ann" })));
    let bob = sim.seed_contact(properties(json!({ "name": "Bob" })));
    let pipeline = sim.pipelines(Vendor::Gohighlevel)[0].id.clone();
    for (contact, marker) in [(&ann, "m1"), (&ann, "m2"), (&ann, "m3"), (&bob, "m4")] {
        let mut body = ghl_opportunity(&pipeline, None, contact);
        body["customFields"] = json!([{ "id": field, "field_value": marker }]);
        expect(
            StatusCode::CREATED,
            sim.gohighlevel(Method::POST, "/opportunities/").json(&body),
        )
        .await;
    }
    let search = |query: &[(&str, &str)]| {
        sim.gohighlevel(Method::GET, "/opportunities/search")
            .query(query)
    };
    let first = expect(
        StatusCode::OK,
        search(&[("location_id", "loc-1"), ("contact_id", &ann)]),
    )
    .await;
    assert_eq!(
        first["opportunities"].as_array().unwrap().len(),
        2,
        "{first}"
    );
    assert_eq!(first["meta"]["total"], 3);
    assert_eq!(
        first["opportunities"][0]["customFields"],
        json!([{ "id": field, "fieldValue": "m1" }])
    );
    let last = expect(
        StatusCode::OK,
        search(&[
            ("location_id", "loc-1"),
            ("contact_id", &ann),
            ("limit", "2"),
            ("page", "2"),
        ]),
    )
    .await;
    assert_eq!(
        last["opportunities"][0]["customFields"][0]["fieldValue"],
        "m3"
    );
    assert_eq!(last["opportunities"].as_array().unwrap().len(), 1);
    for refused in [
        vec![("contact_id", ann.as_str())],
        vec![("location_id", "loc-1"), ("limit", "101")],
        vec![("location_id", "loc-1"), ("limit", "ten")],
    ] {
        expect(StatusCode::UNPROCESSABLE_ENTITY, search(&refused)).await;
    }
    sim.grant_gohighlevel_scopes(&["contacts.readonly", "contacts.write", "opportunities.write"]);
    expect(
        StatusCode::UNAUTHORIZED,
        search(&[("location_id", "loc-1")]),
    )
    .await;
}
