//! Links from a step's CRM id to the record in the CRM's own web app, for
//! the CRMs whose record pages have a stable address built from the id.
//! A link is only made where the address is certain; otherwise the id is
//! shown as text.

use super::config::LinkConfig;

/// The web address of the CRM record a step produced, if it has one.
pub fn record_url(links: &LinkConfig, step: &str, id: &str) -> Option<String> {
    let id = id.trim();
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        // Ids are alphanumeric in every CRM; anything else is not linked.
        return None;
    }
    let contact = step == "contact";
    match links.crm.as_deref()? {
        // HubSpot's record pages: /contacts/{portal id}/record/{object type
        // id}/{record id}, where 0-1 is the contact object. The portal (hub)
        // id is in the account menu; without it there is no link.
        "hubspot" if contact => links
            .hubspot_portal_id
            .as_deref()
            .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
            .map(|portal| format!("https://app.hubspot.com/contacts/{portal}/record/0-1/{id}")),
        // Pipedrive: a person's page on the company domain.
        "pipedrive" if contact => links
            .pipedrive_base_url
            .as_deref()
            .map(|base| format!("{base}/person/{id}")),
        // Salesforce: /{record id} on the instance opens any record (the
        // Contact or Lead, and the call and follow-up Tasks).
        "salesforce" => links
            .salesforce_instance_url
            .as_deref()
            .map(|base| format!("{base}/{id}")),
        // GoHighLevel: a contact's page in its sub-account (location).
        "gohighlevel" if contact => links.gohighlevel_location_id.as_deref().map(|loc| {
            format!("https://app.gohighlevel.com/v2/location/{loc}/contacts/detail/{id}")
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links(crm: &str) -> LinkConfig {
        LinkConfig {
            crm: Some(crm.to_owned()),
            hubspot_portal_id: Some("123456".to_owned()),
            pipedrive_base_url: Some("https://acme.pipedrive.com".to_owned()),
            salesforce_instance_url: Some("https://acme.my.salesforce.com".to_owned()),
            gohighlevel_location_id: Some("loc1".to_owned()),
            ..LinkConfig::default()
        }
    }

    #[test]
    fn each_crm_with_stable_record_pages_links_its_contacts() {
        assert_eq!(
            record_url(&links("hubspot"), "contact", "501").as_deref(),
            Some("https://app.hubspot.com/contacts/123456/record/0-1/501")
        );
        assert_eq!(
            record_url(&links("pipedrive"), "contact", "7").as_deref(),
            Some("https://acme.pipedrive.com/person/7")
        );
        assert_eq!(
            record_url(&links("salesforce"), "call_log", "00T5g00000AbCdE").as_deref(),
            Some("https://acme.my.salesforce.com/00T5g00000AbCdE")
        );
        assert_eq!(
            record_url(&links("gohighlevel"), "contact", "abc").as_deref(),
            Some("https://app.gohighlevel.com/v2/location/loc1/contacts/detail/abc")
        );
    }

    #[test]
    fn no_link_is_made_without_the_crm_or_for_an_odd_id() {
        assert_eq!(record_url(&LinkConfig::default(), "contact", "1"), None);
        assert_eq!(record_url(&links("webhook"), "contact", "1"), None);
        assert_eq!(record_url(&links("hubspot"), "call_log", "1"), None);
        assert_eq!(record_url(&links("pipedrive"), "contact", "1/../x"), None);
    }
}
