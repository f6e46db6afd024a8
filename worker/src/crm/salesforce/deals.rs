//! `[[deal]]` rules on Salesforce: an Opportunity at the rule's stage, tied
//! to the call's Contact by an OpportunityContactRole, each exactly once.
//!
//! - The Opportunity is upserted by the External ID field
//!   `Callsync_Marker__c` on Opportunity, holding the rule's marker of the
//!   call (`PATCH /sobjects/Opportunity/Callsync_Marker__c/{marker}`, as the
//!   call's Task; REST API developer guide, "Insert or Update (Upsert) a
//!   Record Using an External ID"): repeating it after an unknown outcome
//!   updates the one Opportunity instead of adding another. `Name`,
//!   `StageName` and `CloseDate` are required (object reference,
//!   Opportunity).
//! - The role is read before it is created: `GET
//!   /sobjects/Opportunity/{id}/OpportunityContactRoles` (REST API,
//!   "sObject Relationships"), then `POST /sobjects/OpportunityContactRole`
//!   with `OpportunityId`, `ContactId` and `IsPrimary` only when the
//!   Contact has none. A crash between the two requests, or a role create
//!   of unknown outcome, leaves the deal step open; its next attempt
//!   upserts the same Opportunity and finds the role if it was made. So
//!   the whole step is safe to repeat, which is how an unknown outcome is
//!   resolved.
//! - Salesforce has no pipeline ids for a rule to name: the stages are the
//!   org's `StageName` picklist (its OpportunityStage values). A rule says
//!   `pipeline = "default"` and `stage` = a value's API name, checked
//!   against `GET /sobjects/Opportunity/describe` at start.
//! - A role names a Contact: a call filed under a Lead gets its
//!   Opportunity without one (its `Description` names the Lead).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::mapping::deal::Pipeline;

/// The one pipeline a Salesforce rule names.
pub const PIPELINE: &str = "default";

/// How long after the call an Opportunity is expected to close: its
/// `CloseDate` is required, and a call knows none.
pub const CLOSE_AFTER_DAYS: i64 = 30;

/// An Opportunity's `Name` holds 120 characters (object reference,
/// Opportunity, "Name … Type string").
pub const MAX_NAME: usize = 120;

/// The Opportunity's fields callsync writes.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct OpportunityFields {
    pub name: String,
    pub stage_name: String,
    pub close_date: String,
    pub description: String,
}

/// `POST /sobjects/OpportunityContactRole`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContactRole<'a> {
    pub opportunity_id: &'a str,
    pub contact_id: &'a str,
    pub is_primary: bool,
}

/// `GET /sobjects/Opportunity/{id}/OpportunityContactRoles`.
#[derive(Deserialize)]
pub struct Roles {
    #[serde(default)]
    records: Vec<Role>,
}

#[derive(Deserialize)]
struct Role {
    #[serde(rename = "ContactId", default)]
    contact_id: Option<String>,
}

impl Roles {
    /// Whether `contact` holds a role already (Salesforce's ids compare
    /// by their first 15 characters: the 18-character form adds a
    /// case-safe suffix).
    pub fn holds(&self, contact: &str) -> bool {
        let short = |id: &str| id.get(..15).unwrap_or(id).to_owned();
        self.records
            .iter()
            .filter_map(|r| r.contact_id.as_deref())
            .any(|id| short(id) == short(contact))
    }
}

/// The close date of a call's Opportunity: `CLOSE_AFTER_DAYS` after it.
pub fn close_date(ended_at: OffsetDateTime) -> String {
    let day = (ended_at + time::Duration::days(CLOSE_AFTER_DAYS)).date();
    day.to_string()
}

/// The org's stages as the one pipeline rules name: `StageName`'s active
/// picklist values (API name, label).
pub fn pipeline(stages: Vec<(String, String)>) -> Pipeline {
    Pipeline {
        id: PIPELINE.to_owned(),
        label: "Opportunity stages".to_owned(),
        stages,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contact_holds_a_role_whatever_the_length_of_its_id() {
        let roles: Roles = serde_json::from_value(serde_json::json!({
            "totalSize": 1, "done": true,
            "records": [{"attributes": {"type": "OpportunityContactRole"},
                         "Id": "00K000000000001AAA", "ContactId": "003000000000001AAA"}]
        }))
        .unwrap();
        assert!(roles.holds("003000000000001"));
        assert!(roles.holds("003000000000001AAA"));
        assert!(!roles.holds("003000000000002AAA"));
    }

    #[test]
    fn an_opportunity_closes_thirty_days_after_its_call() {
        assert_eq!(
            close_date(time::macros::datetime!(2026-05-01 23:30 UTC)),
            "2026-05-31"
        );
    }
}
