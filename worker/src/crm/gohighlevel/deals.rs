//! `[[deal]]` rules on GoHighLevel: an opportunity on the contact, in a
//! pipeline's stage, carrying the rule's marker of the call in an
//! opportunity custom field of its own (GoHighLevel/highlevel-api-docs,
//! `apps/opportunities.json`):
//!
//! - `GET /opportunities/pipelines?locationId=` (get-pipelines, scope
//!   `opportunities.readonly`) lists the pipelines with their stages' ids;
//! - `POST /opportunities/` (create-opportunity, scope
//!   `opportunities.write`) with `pipelineId`, `locationId`, `name`,
//!   `pipelineStageId`, `status` `open`, `contactId` and `customFields`
//!   (`[{id, field_value}]`, "Pass either `id` or `key` of custom field");
//! - `GET /opportunities/search?location_id=&contact_id=` (search-opportunity,
//!   scope `opportunities.readonly`; `limit` "will allow maximum up to 100
//!   and default will be 2", `page`) lists the contact's opportunities with
//!   their `customFields` (`[{id, fieldValue}]`): the deal of an unknown
//!   outcome is the one whose marker field holds the marker, exactly.
//!
//! An opportunity has no text field of its own, so the marker field,
//! "callsync marker" (`TEXT`, model `opportunity`), is created at start
//! with `POST /locations/{locationId}/customFields`, as the contact fields.

use serde::{Deserialize, Serialize};

use crate::mapping::deal::Pipeline;

/// The marker field's name and key (GoHighLevel keys a field
/// `<model>.<name in snake case>`).
pub const MARKER_NAME: &str = "callsync marker";
pub const MARKER_KEY: &str = "opportunity.callsync_marker";

/// The longest opportunity name callsync writes: the API documents no
/// limit; a deal name is a title, kept to a title's length.
pub const MAX_NAME: usize = 255;

/// The largest page the search serves.
pub const PAGE: usize = 100;

/// `POST /opportunities/`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewOpportunity<'a> {
    pub pipeline_id: &'a str,
    pub location_id: &'a str,
    pub name: String,
    pub pipeline_stage_id: &'a str,
    pub status: &'static str,
    pub contact_id: &'a str,
    pub custom_fields: [MarkerValue; 1],
}

/// The marker as an opportunity's custom field value.
#[derive(Serialize)]
pub struct MarkerValue {
    pub id: String,
    pub field_value: String,
}

/// `{opportunity: {id}}`, create-opportunity's answer.
#[derive(Deserialize)]
pub struct Created {
    pub opportunity: CreatedId,
}

#[derive(Deserialize)]
pub struct CreatedId {
    pub id: String,
}

/// `GET /opportunities/pipelines`.
#[derive(Deserialize)]
pub struct Pipelines {
    #[serde(default)]
    pipelines: Vec<ListedPipeline>,
}

#[derive(Deserialize)]
struct ListedPipeline {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    stages: Vec<ListedStage>,
}

#[derive(Deserialize)]
struct ListedStage {
    id: String,
    #[serde(default)]
    name: String,
}

impl Pipelines {
    pub fn into_pipelines(self) -> Vec<Pipeline> {
        self.pipelines
            .into_iter()
            .map(|p| Pipeline {
                id: p.id,
                label: p.name,
                stages: p.stages.into_iter().map(|s| (s.id, s.name)).collect(),
            })
            .collect()
    }
}

/// One page of `GET /opportunities/search`.
#[derive(Deserialize)]
pub struct Found {
    #[serde(default)]
    pub opportunities: Vec<FoundOpportunity>,
}

#[derive(Deserialize)]
pub struct FoundOpportunity {
    pub id: String,
    #[serde(default, rename = "customFields")]
    custom_fields: Vec<FoundValue>,
}

#[derive(Deserialize)]
struct FoundValue {
    #[serde(default)]
    id: String,
    #[serde(default, rename = "fieldValue")]
    field_value: serde_json::Value,
}

impl FoundOpportunity {
    /// Whether its field `field` holds `marker`.
    pub fn carries(&self, field: &str, marker: &str) -> bool {
        self.custom_fields
            .iter()
            .any(|v| v.id == field && v.field_value.as_str() == Some(marker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_found_opportunity_carries_the_marker_only_in_its_marker_field() {
        let found: Found = serde_json::from_value(serde_json::json!({
            "opportunities": [{"id": "o1", "name": "x",
                "customFields": [{"id": "f1", "fieldValue": "callsync:vapi:c1:deal:0"},
                                 {"id": "f2", "fieldValue": "callsync:vapi:c2:deal:0"}]}],
            "meta": {"total": 1}
        }))
        .unwrap();
        let o = &found.opportunities[0];
        assert!(o.carries("f1", "callsync:vapi:c1:deal:0"));
        assert!(!o.carries("f2", "callsync:vapi:c1:deal:0"));
        assert!(!o.carries("f1", "callsync:vapi:c1:deal:1"));
    }
}
