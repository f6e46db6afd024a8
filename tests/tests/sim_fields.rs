//! crm-sim's field schemas refuse what each vendor refuses: Pipedrive's
//! person and deal fields (`field_type`, `options` by id), Salesforce's
//! describe types and picklists, GoHighLevel's custom fields (`dataType`,
//! `picklistOptions`). Each test defines fields as an admin would, writes a
//! value the vendor accepts and one it refuses, and checks the answer and
//! that nothing of the refused write was stored.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use callsync_tests::sim::client::{SimClient, expect, send};
use callsync_tests::sim::schema::{CustomField, FieldOption, Vendor};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

// Pipedrive

#[tokio::test]
async fn pipedrive_lists_person_deal_and_activity_fields_with_their_types_and_options() {
    let sim = SimClient::start().await;
    let stage = sim.define_pipedrive_field("person", "Lead temperature", "enum", &["Hot", "Cold"]);
    let body = expect(
        StatusCode::OK,
        sim.pipedrive(Method::GET, "/api/v1/personFields"),
    )
    .await;
    let listed = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["key"] == stage.key.as_str())
        .cloned()
        .unwrap();
    assert_eq!(listed["field_type"], "enum");
    assert_eq!(listed["key"].as_str().unwrap().len(), 40);
    let labels: Vec<&str> = listed["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["Hot", "Cold"]);
    assert!(listed["options"][0]["id"].is_i64());

    for path in ["/api/v1/dealFields", "/api/v1/activityFields"] {
        let body = expect(StatusCode::OK, sim.pipedrive(Method::GET, path)).await;
        assert!(
            body["data"].as_array().is_some_and(|f| !f.is_empty()),
            "{path}: {body}"
        );
    }
    // Activity fields can only be listed.
    let (status, _) = send(
        sim.pipedrive(Method::POST, "/api/v1/activityFields")
            .json(&json!({ "name": "X", "field_type": "varchar" })),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn pipedrive_refuses_a_field_type_it_does_not_have_and_an_option_field_without_options() {
    let sim = SimClient::start().await;
    let create = |body: Value| {
        sim.pipedrive(Method::POST, "/api/v1/dealFields")
            .json(&body)
    };
    expect(
        StatusCode::BAD_REQUEST,
        create(json!({ "name": "Score", "field_type": "number" })),
    )
    .await;
    expect(
        StatusCode::BAD_REQUEST,
        create(json!({ "name": "Tier", "field_type": "enum" })),
    )
    .await;
    assert!(sim.fields(Vendor::Pipedrive).is_empty());
    let created = expect(
        StatusCode::CREATED,
        create(json!({ "name": "Tier", "field_type": "set", "options": [{ "label": "Gold" }, { "label": "Silver" }] })),
    )
    .await;
    assert_eq!(created["data"]["options"][1]["label"], "Silver");
}

/// A v2 person write checks each custom field value against its type: a
/// number for `double` (v2 coerces no strings), an option id for `enum`,
/// option ids for `set`, `{value, currency}` for `monetary`.
#[tokio::test]
async fn pipedrive_v2_refuses_a_custom_field_value_its_type_cannot_hold() {
    let sim = SimClient::start().await;
    let temperature =
        sim.define_pipedrive_field("person", "Lead temperature", "enum", &["Hot", "Cold"]);
    let score = sim.define_pipedrive_field("person", "Score", "double", &[]);
    let hot = temperature.options[0].id.clone();
    let person = |custom: Value| {
        sim.pipedrive(Method::POST, "/api/v2/persons")
            .json(&json!({ "name": "Ann", "custom_fields": custom }))
    };
    let refused = [
        json!({ temperature.key.clone(): "Hot" }),
        json!({ temperature.key.clone(): 999_999 }),
        json!({ score.key.clone(): "12" }),
        json!({ "0000000000000000000000000000000000000bad": "x" }),
    ];
    for custom in refused {
        let body = expect(StatusCode::BAD_REQUEST, person(custom.clone())).await;
        assert_eq!(
            body["code"], "ERR_SCHEMA_VALIDATION_FAILED",
            "{custom}: {body}"
        );
    }
    assert!(
        sim.snapshot().contacts.is_empty(),
        "nothing refused is stored"
    );

    expect(
        StatusCode::OK,
        person(json!({ temperature.key.clone(): hot, score.key.clone(): 12.5 })),
    )
    .await;
    let s = sim.snapshot();
    assert_eq!(s.contacts.len(), 1);
    assert_eq!(s.contacts[0].properties[&temperature.key], hot);
}

// Salesforce

/// `describe` types each field: Opportunity's `StageName` a restricted
/// picklist of the OpportunityStage values, `CloseDate` a date, and a
/// custom field an admin made with its type and picklist values.
#[tokio::test]
async fn salesforce_describes_field_types_and_picklist_values() {
    let sim = SimClient::start().await;
    sim.define_field(
        CustomField::new(Vendor::Salesforce, "Contact", "Tier__c", "Tier", "picklist")
            .with_options(vec![
                FieldOption::new(json!("Gold"), "Gold"),
                FieldOption::new(json!("Silver"), "Silver"),
            ])
            .restricted(),
    );
    let field = |body: &Value, name: &str| {
        body["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} is described: {body}"))
    };
    let opportunity = expect(
        StatusCode::OK,
        sim.salesforce(Method::GET, "/sobjects/Opportunity/describe"),
    )
    .await;
    let stage = field(&opportunity, "StageName");
    assert_eq!(stage["type"], "picklist");
    assert_eq!(stage["restrictedPicklist"], true);
    assert_eq!(stage["picklistValues"][0]["value"], "Prospecting");
    assert_eq!(field(&opportunity, "CloseDate")["type"], "date");
    assert_eq!(field(&opportunity, "Amount")["type"], "currency");

    let contact = expect(
        StatusCode::OK,
        sim.salesforce(Method::GET, "/sobjects/Contact/describe"),
    )
    .await;
    let tier = field(&contact, "Tier__c");
    assert_eq!(tier["type"], "picklist");
    assert_eq!(tier["length"], 255);
    assert_eq!(
        (&tier["createable"], &tier["updateable"]),
        (&json!(true), &json!(true))
    );
    assert_eq!(
        tier["picklistValues"][1],
        json!({ "value": "Silver", "label": "Silver", "active": true, "defaultValue": false })
    );
}

/// A value outside a restricted picklist is
/// `INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST`; an inactive value too; a
/// value its type cannot be read as is `JSON_PARSER_ERROR`; an
/// unrestricted picklist takes any text; a field no admin made is
/// `INVALID_FIELD`, in a write or in a read's `?fields=`; a text past a
/// Text field's 255 characters is `STRING_TOO_LONG`.
#[tokio::test]
async fn salesforce_refuses_a_value_outside_a_restricted_picklist_or_of_the_wrong_type() {
    let sim = SimClient::start().await;
    let mut retired = FieldOption::new(json!("Bronze"), "Bronze");
    retired.active = false;
    sim.define_field(
        CustomField::new(Vendor::Salesforce, "Contact", "Tier__c", "Tier", "picklist")
            .with_options(vec![FieldOption::new(json!("Gold"), "Gold"), retired])
            .restricted(),
    );
    sim.define_field(CustomField::new(
        Vendor::Salesforce,
        "Contact",
        "Source__c",
        "Source",
        "picklist",
    ));
    sim.define_field(CustomField::new(
        Vendor::Salesforce,
        "Contact",
        "Score__c",
        "Score",
        "double",
    ));
    sim.define_field(CustomField::new(
        Vendor::Salesforce,
        "Contact",
        "Vip__c",
        "VIP",
        "boolean",
    ));
    sim.define_field(CustomField::new(
        Vendor::Salesforce,
        "Contact",
        "Since__c",
        "Since",
        "date",
    ));
    sim.define_field(CustomField::new(
        Vendor::Salesforce,
        "Contact",
        "Note__c",
        "Note",
        "string",
    ));
    let create = |extra: Value| {
        let mut body = json!({ "LastName": "Ann" });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        sim.salesforce(Method::POST, "/sobjects/Contact")
            .json(&body)
    };
    let refusals = [
        (
            json!({ "Tier__c": "Platinum" }),
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
        ),
        (
            json!({ "Tier__c": "Bronze" }),
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
        ),
        (json!({ "Score__c": "12" }), "JSON_PARSER_ERROR"),
        (json!({ "Vip__c": "yes" }), "JSON_PARSER_ERROR"),
        (json!({ "Since__c": "01/05/2026" }), "JSON_PARSER_ERROR"),
        (json!({ "Rank__c": 1 }), "INVALID_FIELD"),
        (json!({ "Note__c": "x".repeat(256) }), "STRING_TOO_LONG"),
    ];
    for (fields, code) in refusals {
        let body = expect(StatusCode::BAD_REQUEST, create(fields.clone())).await;
        assert_eq!(body[0]["errorCode"], code, "{fields}: {body}");
    }
    assert!(
        sim.snapshot().contacts.is_empty(),
        "nothing refused is stored"
    );

    let created = expect(
        StatusCode::CREATED,
        create(json!({
            "Tier__c": "Gold", "Source__c": "Trade fair", "Score__c": 12.5,
            "Vip__c": true, "Since__c": "2026-05-01"
        })),
    )
    .await;
    assert_eq!(sim.snapshot().contacts[0].prop("Tier__c"), Some("Gold"));

    // A read naming its fields gets those; naming one the org lacks is a 400.
    let id = created["id"].as_str().unwrap();
    let read = expect(
        StatusCode::OK,
        sim.salesforce(
            Method::GET,
            &format!("/sobjects/Contact/{id}?fields=Tier__c,Score__c"),
        ),
    )
    .await;
    assert_eq!(read["Tier__c"], "Gold");
    assert_eq!(read["Score__c"], 12.5);
    assert!(read.get("Vip__c").is_none(), "{read}");
    let refused = expect(
        StatusCode::BAD_REQUEST,
        sim.salesforce(
            Method::GET,
            &format!("/sobjects/Contact/{id}?fields=Tier__c,Rank__c"),
        ),
    )
    .await;
    assert_eq!(refused[0]["errorCode"], "INVALID_FIELD", "{refused}");
}

// GoHighLevel

#[tokio::test]
async fn gohighlevel_lists_custom_fields_by_model_with_data_types_and_options() {
    let sim = SimClient::start().await;
    sim.define_gohighlevel_field(
        "contact",
        "Lead temperature",
        "SINGLE_OPTIONS",
        &["Hot", "Cold"],
    );
    sim.define_gohighlevel_field("opportunity", "Budget", "MONETORY", &[]);
    let list = |model: Option<&str>| {
        let request = sim.gohighlevel(Method::GET, "/locations/loc-1/customFields");
        match model {
            Some(m) => request.query(&[("model", m)]),
            None => request,
        }
    };
    let contact = expect(StatusCode::OK, list(None)).await;
    assert_eq!(contact["customFields"].as_array().unwrap().len(), 1);
    let field = &contact["customFields"][0];
    assert_eq!(field["fieldKey"], "contact.Lead_temperature");
    assert_eq!(field["dataType"], "SINGLE_OPTIONS");
    assert_eq!(field["picklistOptions"], json!(["Hot", "Cold"]));
    let all = expect(StatusCode::OK, list(Some("all"))).await;
    assert_eq!(all["customFields"].as_array().unwrap().len(), 2);
    let opportunity = expect(StatusCode::OK, list(Some("opportunity"))).await;
    assert_eq!(opportunity["customFields"][0]["dataType"], "MONETORY");
    expect(StatusCode::UNPROCESSABLE_ENTITY, list(Some("deal"))).await;
}

#[tokio::test]
async fn gohighlevel_refuses_a_custom_field_of_a_data_type_it_does_not_have() {
    let sim = SimClient::start().await;
    let create = |data_type: &str| {
        sim.gohighlevel(Method::POST, "/locations/loc-1/customFields")
            .json(&json!({ "name": "Score", "dataType": data_type }))
    };
    expect(StatusCode::UNPROCESSABLE_ENTITY, create("NUMBER")).await;
    assert!(sim.fields(Vendor::Gohighlevel).is_empty());
    let created = expect(StatusCode::OK, create("NUMERICAL")).await;
    assert_eq!(created["customField"]["dataType"], "NUMERICAL");
}

/// A contact's `customFields` name a field by `id` (the OpenAPI file
/// requires it; a `key` alone is refused); an option field takes only its
/// `picklistOptions`, a number field a number (as a string, the input
/// schemas' type), and an unknown field is refused, all with
/// GoHighLevel's 422 and nothing stored.
#[tokio::test]
async fn gohighlevel_refuses_a_custom_field_value_its_data_type_cannot_hold() {
    let sim = SimClient::start().await;
    let temperature =
        sim.define_gohighlevel_field("contact", "temperature", "SINGLE_OPTIONS", &["Hot", "Cold"]);
    let score = sim.define_gohighlevel_field("contact", "score", "NUMERICAL", &[]);
    let upsert = |fields: Value| {
        sim.gohighlevel(Method::POST, "/contacts/upsert").json(&json!({
            "locationId": "loc-1", "phone": "+14155550100", "name": "Ann", "customFields": fields
        }))
    };
    let refused = [
        json!([{ "id": temperature.id, "field_value": "Warm" }]),
        json!([{ "key": "temperature", "field_value": "Hot" }]),
        json!([{ "id": score.id, "field_value": "a dozen" }]),
        json!([{ "id": "fld-unknown", "field_value": "x" }]),
    ];
    for fields in refused {
        let body = expect(StatusCode::UNPROCESSABLE_ENTITY, upsert(fields.clone())).await;
        assert_eq!(body["statusCode"], 422, "{fields}: {body}");
    }
    assert!(
        sim.snapshot().contacts.is_empty(),
        "nothing refused is stored"
    );

    expect(
        StatusCode::OK,
        upsert(json!([
            { "id": temperature.id, "field_value": "Hot" },
            { "id": score.id, "field_value": "12" }
        ])),
    )
    .await;
    let s = sim.snapshot();
    assert_eq!(s.contacts[0].prop("temperature"), Some("Hot"));
    assert_eq!(s.contacts[0].prop("score"), Some("12"));
}

/// callsync's own custom fields are typed as the set-up guide makes them:
/// `Callsync_Last_Call_At__c` is a date-time, so a date-time without its
/// `T`, or a bare date, is `JSON_PARSER_ERROR`, and Salesforce's own
/// forms are taken.
#[tokio::test]
async fn salesforce_reads_callsyncs_last_call_time_as_a_date_time() {
    let sim = SimClient::start().await;
    let created = expect(
        StatusCode::CREATED,
        sim.salesforce(Method::POST, "/sobjects/Contact")
            .json(&json!({ "LastName": "Ann" })),
    )
    .await;
    let path = format!("/sobjects/Contact/{}", created["id"].as_str().unwrap());
    let update = |at: &str| {
        sim.salesforce(Method::PATCH, &path)
            .json(&json!({ "Callsync_Last_Call_At__c": at }))
    };
    for refused in ["2026-05-01 08:00:00", "2026-05-01"] {
        let body = expect(StatusCode::BAD_REQUEST, update(refused)).await;
        assert_eq!(
            body[0]["errorCode"], "JSON_PARSER_ERROR",
            "{refused}: {body}"
        );
    }
    assert!(
        sim.snapshot().contacts[0]
            .prop("Callsync_Last_Call_At__c")
            .is_none()
    );
    for taken in ["2026-05-01T08:00:00.000Z", "2026-05-01T08:00:00.000+0000"] {
        expect(StatusCode::NO_CONTENT, update(taken)).await;
    }
}
