//! A worker measurement's batch of reports, and the check that the CRM
//! holds what syncing it must have made: the ledger saying "synced" is the
//! worker's own account, the simulator's records are the effect.

use std::collections::BTreeSet;

use callsync_shared::{CallId, Source};
use serde::Serialize;

use crate::sim::{Record, Snapshot};

/// The reports of one measurement and what they must leave in the CRM.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The reports, call ids `bench-0`, `bench-1`, ... in order.
    pub bodies: Vec<Vec<u8>>,
    /// One call record per call, each with its call's marker.
    pub call_markers: BTreeSet<String>,
    /// One task per call flagged for follow-up.
    pub task_markers: BTreeSet<String>,
    /// Distinct callers' numbers: one contact each.
    pub callers: BTreeSet<String>,
}

impl Batch {
    /// `calls` reports, call `i` from `phone(i)` and flagged when `flagged(i)`.
    pub fn new(
        calls: usize,
        phone: impl Fn(usize) -> String,
        flagged: impl Fn(usize) -> bool,
    ) -> Self {
        let mut batch = Self {
            bodies: Vec::with_capacity(calls),
            call_markers: BTreeSet::new(),
            task_markers: BTreeSet::new(),
            callers: BTreeSet::new(),
        };
        for i in 0..calls {
            let call_id = call_id(i);
            let marker = marker(&call_id);
            batch
                .bodies
                .push(super::body_2k(&call_id, &phone(i), flagged(i)));
            if flagged(i) {
                batch.task_markers.insert(marker.clone());
            }
            batch.call_markers.insert(marker);
            batch.callers.insert(phone(i));
        }
        batch
    }
}

/// The provider's id of the batch's call `i` (body and message header alike).
pub fn call_id(i: usize) -> String {
    format!("bench-{i}")
}

/// The marker the worker writes into each record it creates for the call.
pub fn marker(call_id: &str) -> String {
    CallId::new(call_id).map_or_else(String::new, |id| {
        callsync_shared::report::marker(Source::Voicedock, &id)
    })
}

/// What the simulated CRM held after a measurement.
#[derive(Debug, Clone, Serialize)]
pub struct CrmHeld {
    pub crm_contacts: usize,
    pub crm_call_records: usize,
    pub crm_tasks: usize,
}

/// Checks that the CRM holds exactly one call record per call and one task
/// per flagged call, each carrying its own call's marker, and one contact
/// per caller: a lost, doubled or misattributed write fails the run.
pub fn check_crm(snapshot: &Snapshot, batch: &Batch) -> anyhow::Result<CrmHeld> {
    one_each("call records", &snapshot.calls, &batch.call_markers)?;
    one_each("tasks", &snapshot.tasks, &batch.task_markers)?;
    anyhow::ensure!(
        snapshot.contacts.len() == batch.callers.len(),
        "the CRM holds {} contacts for {} distinct callers",
        snapshot.contacts.len(),
        batch.callers.len()
    );
    Ok(CrmHeld {
        crm_contacts: snapshot.contacts.len(),
        crm_call_records: snapshot.calls.len(),
        crm_tasks: snapshot.tasks.len(),
    })
}

fn one_each(what: &str, records: &[Record], expected: &BTreeSet<String>) -> anyhow::Result<()> {
    let held: BTreeSet<String> = records.iter().filter_map(Record::marker).collect();
    // Equal sets and equal counts: no record missing, doubled or unmarked.
    if records.len() == expected.len() && held == *expected {
        return Ok(());
    }
    let missing: Vec<&String> = expected.difference(&held).take(5).collect();
    let unexpected: Vec<&String> = held.difference(expected).take(5).collect();
    anyhow::bail!(
        "the CRM holds {} {what} with {} distinct markers; expected exactly one for each of {} calls (missing: {missing:?}, unexpected: {unexpected:?}, at most five shown)",
        records.len(),
        held.len(),
        expected.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value, json};

    fn record(id: &str, marker: Option<&str>) -> Record {
        let mut properties = Map::new();
        if let Some(marker) = marker {
            properties.insert("callsync_marker".into(), json!(marker));
        }
        Record {
            id: id.to_owned(),
            properties,
            associations: Vec::new(),
            created: None,
        }
    }

    fn snapshot(calls: Vec<Record>, tasks: Vec<Record>, contacts: usize) -> Snapshot {
        Snapshot {
            contacts: (0..contacts)
                .map(|i| record(&format!("c{i}"), None))
                .collect(),
            calls,
            tasks,
            ..Snapshot::default()
        }
    }

    fn two_calls_one_flagged() -> Batch {
        Batch::new(2, |i| format!("+3161000000{i}"), |i| i == 0)
    }

    /// Records `(id, i)`, each marked as the bench's call `i`, written out
    /// rather than made by [`marker`] so that the format is checked too.
    fn marked(records: &[(&str, usize)]) -> Vec<Record> {
        records
            .iter()
            .map(|(id, i)| record(id, Some(&format!("callsync:voicedock:bench-{i}"))))
            .collect()
    }

    /// [`check_crm`] of [`two_calls_one_flagged`] on a CRM holding these
    /// call records and tasks and `contacts` contacts.
    fn check(calls: Vec<Record>, tasks: Vec<Record>, contacts: usize) -> anyhow::Result<CrmHeld> {
        check_crm(&snapshot(calls, tasks, contacts), &two_calls_one_flagged())
    }

    #[test]
    fn a_crm_holding_one_record_per_call_and_one_task_per_flagged_call_passes() {
        let held = check(marked(&[("1", 0), ("2", 1)]), marked(&[("3", 0)]), 2).unwrap();
        assert_eq!(
            (held.crm_contacts, held.crm_call_records, held.crm_tasks),
            (2, 2, 1)
        );
    }

    #[test]
    fn a_call_recorded_twice_in_place_of_another_fails() {
        let error = check(marked(&[("1", 0), ("2", 0)]), marked(&[("3", 0)]), 2).unwrap_err();
        assert!(error.to_string().contains("bench-1"), "{error}");
    }

    #[test]
    fn an_unmarked_extra_record_fails() {
        let mut calls = marked(&[("1", 0), ("2", 1)]);
        calls.push(record("9", None));
        assert!(check(calls, marked(&[("3", 0)]), 2).is_err());
    }

    #[test]
    fn a_missing_task_or_a_doubled_contact_fails() {
        let calls = || marked(&[("1", 0), ("2", 1)]);
        assert!(check(calls(), Vec::new(), 2).is_err());
        assert!(check(calls(), marked(&[("3", 0)]), 3).is_err());
    }

    #[test]
    fn the_markers_expected_are_the_workers_format() {
        let batch = two_calls_one_flagged();
        let first: Vec<&str> = batch.call_markers.iter().map(String::as_str).collect();
        assert_eq!(
            first,
            ["callsync:voicedock:bench-0", "callsync:voicedock:bench-1"]
        );
        let body: Value = serde_json::from_slice(&batch.bodies[1]).unwrap();
        assert_eq!(body["message"]["call"]["id"], "bench-1");
    }
}
