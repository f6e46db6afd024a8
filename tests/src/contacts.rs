//! Contacts as people typed them into a CRM (or, for GoHighLevel, which
//! keeps phones in E.164, as it holds what they typed), for the tests and the
//! benchmark that find existing contacts: the record each CRM holds for a
//! number typed in a given field and format, and the request each CRM
//! searches contacts with.

use serde_json::{Map, Value, json};

use crate::harness::TestEnv;
use crate::sim::CrmSim;

/// Where a number was typed: the record's main phone field, or its mobile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Main,
    Mobile,
}

/// A contact as a human would have typed it into `crm`, last modified at
/// `updated` (RFC 3339).
pub fn typed_contact(
    crm: &str,
    name: &str,
    number: &str,
    field: Field,
    updated: &str,
) -> Map<String, Value> {
    let contact = match (crm, field) {
        ("hubspot", Field::Main) => {
            json!({ "firstname": name, "phone": number, "lastmodifieddate": updated })
        }
        ("hubspot", Field::Mobile) => {
            json!({ "firstname": name, "mobilephone": number, "lastmodifieddate": updated })
        }
        ("pipedrive", Field::Main) => json!({
            "name": name, "phones": [{ "value": number, "primary": true, "label": "work" }], "update_time": updated
        }),
        ("pipedrive", Field::Mobile) => json!({
            "name": name,
            "phones": [{ "value": "", "primary": true, "label": "work" }, { "value": number, "primary": false, "label": "mobile" }],
            "update_time": updated
        }),
        // A GoHighLevel contact has one phone field, held in E.164: the
        // number is read in the contact's country ([`seed`] stores it as
        // GoHighLevel would).
        ("gohighlevel", _) => json!({
            "name": name, "phone": number, "country": typed_country(number), "dateUpdated": updated
        }),
        ("salesforce", Field::Main) => json!({
            "LastName": name, "Phone": number, "LastModifiedDate": salesforce_time(updated)
        }),
        ("salesforce", Field::Mobile) => json!({
            "LastName": name, "MobilePhone": number, "LastModifiedDate": salesforce_time(updated)
        }),
        (other, _) => panic!("unknown CRM {other}"),
    };
    contact.as_object().cloned().unwrap_or_default()
}

/// The country a person typing `number` into a contact would have given it
/// (the fixtures hold Dutch and US numbers): the Netherlands where the
/// number is a Dutch one, else the United States.
fn typed_country(number: &str) -> &'static str {
    let dutch = phonenumber::parse(Some(phonenumber::country::Id::NL), number)
        .is_ok_and(|n| phonenumber::is_valid(&n) && n.code().value() == 31);
    if dutch { "NL" } else { "US" }
}

/// Salesforce writes `2026-01-01T00:00:00.000+0000`.
fn salesforce_time(rfc3339: &str) -> String {
    rfc3339.replace('Z', ".000+0000")
}

/// Seeds a contact into the environment's CRM; returns its id (Salesforce
/// ids carry the Contact key prefix `003`).
pub fn seed(env: &TestEnv, contact: Map<String, Value>) -> String {
    seed_in(&env.sim, env.crm, contact)
}

/// [`seed`] into `sim` as `crm`.
pub fn seed_in(sim: &CrmSim, crm: &str, contact: Map<String, Value>) -> String {
    if crm == "gohighlevel" {
        return sim.seed_gohighlevel_contact(contact);
    }
    if crm != "salesforce" {
        return sim.seed_contact(contact);
    }
    let n = sim.snapshot().contacts.len();
    let id = format!("003{n:0>15}");
    sim.seed_contact_with_id(&id, contact);
    id
}

/// The request that searches contacts, per CRM.
pub fn search_operation(crm: &str) -> &'static str {
    match crm {
        "hubspot" | "gohighlevel" => "search_contacts",
        "pipedrive" => "search_person",
        "salesforce" => "search",
        other => panic!("unknown CRM {other}"),
    }
}

/// A Dutch mobile number (`+316…`, E.164) as people type it, in the `n`th
/// of five ways (taken modulo five): nationally with the trunk 0, in
/// international format with spaces, with the `00` prefix, as `+31 (0)6 …`,
/// and with the country code but no `+`.
pub fn typed_dutch_mobile(e164: &str, n: usize) -> String {
    let nsn = e164.strip_prefix("+31").unwrap_or(e164);
    let (six, rest) = nsn.split_at(1.min(nsn.len()));
    match n % 5 {
        0 => format!("0{six} {rest}"),
        1 => {
            let (a, b) = rest.split_at(4.min(rest.len()));
            format!("+31 {six} {a} {b}")
        }
        2 => format!("0031{nsn}"),
        3 => format!("+31 (0){six} {rest}"),
        _ => format!("31{nsn}"),
    }
}

#[cfg(test)]
mod tests {
    use super::typed_dutch_mobile;

    #[test]
    fn a_dutch_mobile_is_typed_in_five_ways_that_all_hold_its_digits() {
        let typed: Vec<String> = (0..5)
            .map(|n| typed_dutch_mobile("+31612345678", n))
            .collect();
        assert_eq!(
            typed,
            [
                "06 12345678",
                "+31 6 1234 5678",
                "0031612345678",
                "+31 (0)6 12345678",
                "31612345678"
            ]
        );
    }
}
