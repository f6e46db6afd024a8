//! `[[deal]]` rules on Pipedrive: a deal on the person, in a pipeline's
//! stage, carrying the rule's marker of the call in a deal field of its own.
//!
//! - `GET /api/v1/pipelines` and `GET /api/v1/stages` list the pipelines
//!   and every stage with its `pipeline_id`; ids are integers, shown in the
//!   web app's address of a pipeline (`/pipeline/<id>`)
//!   (https://developers.pipedrive.com/docs/api/v1/Pipelines#getPipelines,
//!   https://developers.pipedrive.com/docs/api/v1/Stages#getStages).
//! - `POST /api/v2/deals` with `title` (required), `person_id`,
//!   `pipeline_id`, `stage_id` and `custom_fields`
//!   (https://developers.pipedrive.com/docs/api/v1/Deals#addDeal, API v2).
//! - A v2 deal has no text field of its own, so the marker goes into a
//!   custom deal field, "callsync marker" (`varchar`), created at start
//!   with `POST /api/v1/dealFields` and named by its generated key
//!   ("All custom fields are referenced as randomly generated 40-character
//!   hashes": https://pipedrive.readme.io/docs/core-api-concepts-custom-fields).
//!   `GET /api/v2/deals?person_id=` lists the person's deals, with their
//!   `custom_fields`, by cursor: the deal of an unknown outcome is the one
//!   whose marker field holds the marker, exactly.

use serde::{Deserialize, Serialize};

use super::CustomFields;
use crate::mapping::deal::Pipeline;

/// The display name of the deal field that holds the marker.
pub const MARKER_FIELD: &str = "callsync marker";

/// Pipedrive's deal title holds 255 characters (the `varchar` limit the
/// field types list gives for a short text).
pub const MAX_TITLE: usize = 255;

/// `POST /api/v2/deals`.
#[derive(Serialize)]
pub struct NewDeal {
    pub title: String,
    pub person_id: i64,
    pub pipeline_id: i64,
    pub stage_id: i64,
    pub custom_fields: CustomFields,
}

/// One of `GET /api/v1/pipelines`.
#[derive(Debug, Deserialize)]
pub struct ListedPipeline {
    id: i64,
    #[serde(default)]
    name: String,
}

/// One of `GET /api/v1/stages`.
#[derive(Debug, Deserialize)]
pub struct ListedStage {
    id: i64,
    #[serde(default)]
    name: String,
    pipeline_id: i64,
}

/// The pipelines with their stages, ids as text (a rule names them so).
pub fn pipelines(listed: Vec<ListedPipeline>, stages: &[ListedStage]) -> Vec<Pipeline> {
    listed
        .into_iter()
        .map(|p| Pipeline {
            id: p.id.to_string(),
            label: p.name,
            stages: stages
                .iter()
                .filter(|s| s.pipeline_id == p.id)
                .map(|s| (s.id.to_string(), s.name.clone()))
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_pipeline_gets_its_own_stages() {
        let listed: Vec<ListedPipeline> = serde_json::from_value(serde_json::json!([
            {"id": 1, "name": "Sales", "order_nr": 1, "active": true},
            {"id": 2, "name": "Partners", "order_nr": 2, "active": true}
        ]))
        .unwrap();
        let stages: Vec<ListedStage> = serde_json::from_value(serde_json::json!([
            {"id": 1, "name": "Qualified", "pipeline_id": 1, "order_nr": 1},
            {"id": 3, "name": "Intro", "pipeline_id": 2, "order_nr": 1}
        ]))
        .unwrap();
        let pipelines = pipelines(listed, &stages);
        assert_eq!(pipelines[1].id, "2");
        assert_eq!(pipelines[1].stages, [("3".to_owned(), "Intro".to_owned())]);
    }
}
