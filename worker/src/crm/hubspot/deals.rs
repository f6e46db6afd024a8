//! `[[deal]]` rules on HubSpot: deals in a pipeline's stage, associated with
//! the call's contact in the create itself, carrying the rule's marker of
//! the call in their own `callsync_marker` property.
//!
//! - `GET /crm/v3/pipelines/deals` lists the pipelines with their stages'
//!   internal ids (https://developers.hubspot.com/docs/guides/api/crm/pipelines);
//!   "You must use the internal ID of a deal stage or pipeline when
//!   creating a deal via the API"
//!   (https://developers.hubspot.com/docs/api/crm/deals).
//! - `POST /crm/v3/objects/deals` with `dealname`, `pipeline`, `dealstage`
//!   and an `associations` entry to the contact, `HUBSPOT_DEFINED` type 3
//!   (deal to contact: https://developers.hubspot.com/docs/guides/api/crm/associations/associations-v4,
//!   "Association type IDs"): one request, so a deal never exists without
//!   its contact.
//! - `POST /crm/v3/objects/deals/search` with an `EQ` filter on
//!   `callsync_marker` finds the deal of a create whose outcome was unknown.
//!
//! The deals endpoints need `crm.objects.deals.read` and
//! `crm.objects.deals.write` (the deals guide's "Scope requirements"); the
//! marker property on deals, `crm.schemas.deals.write`.

use serde::{Deserialize, Serialize};

use crate::mapping::deal::Pipeline;

/// Deal to contact, HubSpot-defined.
pub const DEAL_TO_CONTACT: u32 = 3;

/// A deal's properties as callsync writes them.
#[derive(Serialize)]
pub struct DealProperties {
    pub dealname: String,
    pub pipeline: String,
    pub dealstage: String,
    /// The call's summary, so that the deal says why it exists.
    pub description: String,
    pub callsync_marker: String,
}

/// `GET /crm/v3/pipelines/deals`.
#[derive(Debug, Deserialize)]
pub struct Pipelines {
    results: Vec<ListedPipeline>,
}

#[derive(Debug, Deserialize)]
struct ListedPipeline {
    id: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    stages: Vec<ListedStage>,
}

#[derive(Debug, Deserialize)]
struct ListedStage {
    id: String,
    #[serde(default)]
    label: String,
}

impl Pipelines {
    pub fn into_pipelines(self) -> Vec<Pipeline> {
        self.results
            .into_iter()
            .map(|p| Pipeline {
                id: p.id,
                label: p.label,
                stages: p.stages.into_iter().map(|s| (s.id, s.label)).collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pipelines_list_is_read_with_its_stages_ids_and_labels() {
        let listed: Pipelines = serde_json::from_value(serde_json::json!({
            "results": [{
                "id": "default", "label": "Sales Pipeline", "displayOrder": 0, "archived": false,
                "stages": [{"id": "appointmentscheduled", "label": "Appointment Scheduled",
                            "displayOrder": 0, "metadata": {"probability": "0.2"}}]
            }]
        }))
        .unwrap();
        assert_eq!(
            listed.into_pipelines(),
            [Pipeline {
                id: "default".into(),
                label: "Sales Pipeline".into(),
                stages: vec![(
                    "appointmentscheduled".into(),
                    "Appointment Scheduled".into()
                )],
            }]
        );
    }
}
