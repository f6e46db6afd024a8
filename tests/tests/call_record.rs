//! The call record says what happened on the line: a platform's signed
//! webhook goes through ingest and a worker into crm-sim, and the CRM's own
//! fields carry the call's direction, its numbers (ours → theirs for an
//! outbound call) and its outcome, on the contact of the number called.
//! Test names read `<scenario>::<crm>`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use callsync_shared::Source;
use callsync_tests::app::TestApp;
use callsync_tests::harness::fixture;
use callsync_tests::sim::{Record, Snapshot};
use callsync_tests::sources::{configure_every_source, signed_headers};
use reqwest::StatusCode;

/// One platform's report, what the CRM must show of it, and whose.
struct Call {
    source: Source,
    fixture: &'static str,
    /// The customer: the number called on an outbound call.
    theirs: &'static str,
    /// The agent's number.
    ours: &'static str,
}

const RETELL_OUTBOUND: Call = Call {
    source: Source::Retell,
    fixture: "retell_outbound_call.json",
    theirs: "+12137775678",
    ours: "+12137770000",
};
const VAPI_OUTBOUND: Call = Call {
    source: Source::Vapi,
    fixture: "vapi_outbound_call.json",
    theirs: "+14155550177",
    ours: "+14155550100",
};
const VAPI_VOICEMAIL: Call = Call {
    source: Source::Vapi,
    fixture: "vapi_outbound_voicemail.json",
    theirs: "+14155550178",
    ours: "+14155550100",
};
const RETELL_NO_ANSWER: Call = Call {
    source: Source::Retell,
    fixture: "retell_outbound_no_answer.json",
    theirs: "+12137775679",
    ours: "+12137770000",
};
const RETELL_INBOUND: Call = Call {
    source: Source::Retell,
    fixture: "retell_call_analyzed.json",
    theirs: "+12137771234",
    ours: "+12137770000",
};

/// Ingest and one worker syncing to `crm`, every source's credentials set.
async fn app(crm: &'static str) -> TestApp {
    configure_every_source(TestApp::builder().crm(crm).workers(1))
        .start()
        .await
}

/// Delivers each call as its platform signs it, waits until all are synced
/// and none parked, and returns what the CRM holds.
async fn sync(app: &TestApp, calls: &[&Call]) -> Snapshot {
    for call in calls {
        let body = fixture(call.fixture);
        let headers = signed_headers(call.source, &body);
        let (status, answer) = app
            .post(&format!("/webhooks/{}", call.source), &headers, body)
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{}: {answer}", call.fixture);
        assert_eq!(answer["accepted"], true, "{}: {answer}", call.fixture);
    }
    let s = app.settle().await;
    app.assert_ledger(calls.len() as i64, 0).await;
    s
}

/// The call record of `call` (its marker names the call id, which each
/// fixture's file holds once) and the contact it is associated with.
fn record_of<'a>(s: &'a Snapshot, call: &Call) -> (&'a Record, &'a Record) {
    let body = String::from_utf8(fixture(call.fixture)).unwrap();
    let record = s
        .calls
        .iter()
        .find(|r| {
            r.marker().is_some_and(|m| {
                m.strip_prefix(&format!("callsync:{}:", call.source))
                    .is_some_and(|id| body.contains(&format!("\"{id}\"")))
            })
        })
        .unwrap_or_else(|| panic!("no call record for {}: {:#?}", call.fixture, s.calls));
    let [contact_id] = record.associations.as_slice() else {
        panic!("one contact per call record: {record:#?}")
    };
    let contact = s.contacts.iter().find(|c| &c.id == contact_id).unwrap();
    (record, contact)
}

/// The values of `names` on `record`.
fn props<'a>(record: &'a Record, names: &[&str]) -> Vec<Option<&'a str>> {
    names.iter().map(|name| record.prop(name)).collect()
}

/// The contact's phone, in the CRM's own property.
fn phone<'a>(crm: &str, contact: &'a Record) -> Option<&'a str> {
    contact.prop(if crm == "salesforce" {
        "Phone"
    } else {
        "phone"
    })
}

async fn an_outbound_call_is_recorded_as_outbound_on_the_contact_called(crm: &'static str) {
    let app = app(crm).await;
    let s = sync(&app, &[&RETELL_OUTBOUND, &VAPI_OUTBOUND, &RETELL_INBOUND]).await;
    assert_eq!(
        s.contacts.len(),
        3,
        "one contact per customer: {:#?}",
        s.contacts
    );
    for (call, direction) in [
        (&RETELL_OUTBOUND, "OUTBOUND"),
        (&VAPI_OUTBOUND, "OUTBOUND"),
        (&RETELL_INBOUND, "INBOUND"),
    ] {
        let (record, contact) = record_of(&s, call);
        assert_eq!(
            phone(crm, contact),
            Some(call.theirs),
            "{}: the contact is the customer",
            call.fixture
        );
        let outbound = direction == "OUTBOUND";
        let (from, to) = if outbound {
            (call.ours, call.theirs)
        } else {
            (call.theirs, call.ours)
        };
        let written = match crm {
            "hubspot" => (
                record.prop("hs_call_direction"),
                record.prop("hs_call_from_number"),
                record.prop("hs_call_to_number"),
            ),
            // A Task has no numbers: the contact it is on is the customer.
            _ => (record.prop("CallType"), Some(from), Some(to)),
        };
        let expected_direction = match (crm, outbound) {
            ("hubspot", _) => direction,
            (_, true) => "Outbound",
            (_, false) => "Inbound",
        };
        assert_eq!(
            written,
            (Some(expected_direction), Some(from), Some(to)),
            "{}: {:#?}",
            call.fixture,
            record.properties
        );
        let connected = match crm {
            "hubspot" => (
                record.prop("hs_call_status"),
                record.prop("hs_call_disposition"),
            ),
            _ => (record.prop("Status"), record.prop("CallDisposition")),
        };
        let expected = if crm == "hubspot" {
            (
                Some("COMPLETED"),
                Some("f240bbac-87c9-4f6e-bf70-924b57d47db7"),
            )
        } else {
            (Some("Completed"), Some("connected"))
        };
        assert_eq!(connected, expected, "{}: connected", call.fixture);
    }
    app.shutdown().await;
}

async fn a_voicemail_and_an_unanswered_call_get_their_outcome(crm: &'static str) {
    let app = app(crm).await;
    let s = sync(&app, &[&VAPI_VOICEMAIL, &RETELL_NO_ANSWER]).await;
    let (voicemail, voicemail_contact) = record_of(&s, &VAPI_VOICEMAIL);
    let (no_answer, no_answer_contact) = record_of(&s, &RETELL_NO_ANSWER);
    assert_eq!(phone(crm, voicemail_contact), Some(VAPI_VOICEMAIL.theirs));
    assert_eq!(phone(crm, no_answer_contact), Some(RETELL_NO_ANSWER.theirs));
    match crm {
        "hubspot" => {
            let outcome = ["hs_call_direction", "hs_call_status", "hs_call_disposition"];
            // HubSpot's default outcomes "Left voicemail" and "No answer".
            assert_eq!(
                props(voicemail, &outcome),
                [
                    Some("OUTBOUND"),
                    Some("COMPLETED"),
                    Some("b2cf5968-551e-4856-9783-52b3da59a7d0")
                ]
            );
            assert_eq!(
                props(no_answer, &outcome),
                [
                    Some("OUTBOUND"),
                    Some("NO_ANSWER"),
                    Some("73a0d17f-1163-4015-bdd5-ec830791da20")
                ]
            );
        }
        "salesforce" => {
            let outcome = ["CallType", "CallDisposition"];
            assert_eq!(
                props(voicemail, &outcome),
                [Some("Outbound"), Some("voicemail")]
            );
            assert_eq!(
                props(no_answer, &outcome),
                [Some("Outbound"), Some("no_answer")]
            );
        }
        // Pipedrive and GoHighLevel notes have no such fields: the text says it.
        _ => {
            let text = |r: &Record| serde_json::to_string(&r.properties).unwrap();
            let voicemail = text(voicemail);
            assert!(
                voicemail.contains("<b>Direction:</b> outbound")
                    && voicemail.contains("<b>Outcome:</b> voicemail (voicemail)"),
                "{voicemail}"
            );
            let no_answer = text(no_answer);
            assert!(
                no_answer.contains("<b>Direction:</b> outbound")
                    && no_answer.contains("<b>Outcome:</b> no answer (dial_no_answer)"),
                "{no_answer}"
            );
        }
    }
    app.shutdown().await;
}

macro_rules! for_crms {
    ($scenario:ident: $($crm:ident),* $(,)?) => {
        mod $scenario {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $crm() {
                    super::$scenario(stringify!($crm)).await
                }
            )*
        }
    };
}

for_crms!(an_outbound_call_is_recorded_as_outbound_on_the_contact_called: hubspot, salesforce);
for_crms!(a_voicemail_and_an_unanswered_call_get_their_outcome: hubspot, salesforce, pipedrive, gohighlevel);
