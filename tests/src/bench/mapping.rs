//! Scenario 10: CRM requests per call with a full `CALLSYNC_MAPPING`. One
//! worker per CRM (HubSpot, Pipedrive, GoHighLevel, Salesforce) runs with
//! a mapping that uses every mode on contact fields (`overwrite`,
//! `if_empty`, `append`) and, on HubSpot and Salesforce, a `[[call]]` rule
//! (Pipedrive's and GoHighLevel's call is a note, which takes none), against crm-sim with those fields defined as a business would
//! have created them; crm-sim answers at once and limits nothing.
//!
//! Three batches, each synced before the next is queued: new callers, then
//! callers the CRM already has (a contact typed in by a human) calling for
//! the first time, then the new callers again (contacts the ledger
//! remembers). What the design promises, and the rows show: `overwrite`
//! and `[[call]]` values ride in requests callsync sends anyway; `if_empty`
//! and `append` read the contact once per call unless it was just created
//! (or, on HubSpot, just found by a search that returned the fields).
//! The CRM's records are checked as in scenario 2, and every mapped field
//! holds what its mode says.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use serde_json::{Value, json};

use super::backlog::since;
use super::batch::{Batch, call_id, check_crm, marker};
use super::roles::Child;
use super::{Budgets, CrmLeft, Options, PerCrm, SETUP_OPERATIONS, WorkerEnv, per_crm, wait_synced};
use crate::contacts::{Field, seed_in, typed_contact};
use crate::mapping::{line, mapping_file, report};
use crate::sim::schema::{CustomField, FieldOption, Vendor};
use crate::sim::{CrmSim, Record, SimConfig, Snapshot};

/// The CRMs measured.
const CRMS: [&str; 4] = ["hubspot", "pipedrive", "gohighlevel", "salesforce"];
/// The kinds of caller, in the order their batches are synced.
const CALLERS: [&str; 3] = ["new", "in the CRM, first call", "repeat"];
/// The other CRMs' one-time set-up (HubSpot's is [`SETUP_OPERATIONS`]):
/// Pipedrive's and GoHighLevel's fields, Salesforce's descriptions and
/// session.
const OTHER_SETUP: [&str; 5] = [
    "list_fields",
    "create_field",
    "describe",
    "oauth_token",
    "resources",
];

/// One CRM's requests for one kind of caller.
#[derive(Debug, Clone, Serialize)]
pub struct MappingRow {
    pub crm: &'static str,
    pub caller: &'static str,
    pub calls: usize,
    /// The calls' CRM requests, one-time set-up excluded.
    pub crm_requests: u64,
    pub crm_requests_per_call: f64,
    pub by_operation: BTreeMap<String, u64>,
}

/// What one CRM held after its three batches.
#[derive(Debug, Clone, Serialize)]
pub struct MappingCrm {
    #[serde(flatten)]
    pub left: CrmLeft,
    /// The mapping's rules, by mode.
    pub rules: BTreeMap<String, usize>,
    /// Mapped fields checked against what their mode says.
    pub fields_checked: usize,
}

/// The rows of every CRM, and what each held.
pub type MappingReport = PerCrm<MappingRow, MappingCrm>;

pub async fn run(options: &Options) -> anyhow::Result<MappingReport> {
    let calls = options.mapping_calls.max(1);
    per_crm(
        &CRMS,
        &SimConfig::default(),
        &options.worker_vars,
        async |env, crm| measure(env, crm, calls).await,
    )
    .await
    .context("full mapping")
}

/// The mapped fields, as the CRM names them, and the values the two
/// intents are written as.
struct Fields {
    intent: String,
    first_topic: String,
    call_log: String,
    /// The `[[call]]` rule for the agent's score, and the first and the
    /// repeat calls' scores as the call record holds them.
    call_score: Option<(String, Value, Value)>,
    /// "Sales enquiry" and "support", as the field holds them.
    sales: Value,
    support: Value,
    /// The mapping file's text.
    mapping: String,
}

/// Defines the business's fields in crm-sim and writes the mapping.
fn define(sim: &CrmSim, crm: &str) -> Fields {
    if crm == "salesforce" {
        return salesforce(sim);
    }
    if crm == "gohighlevel" {
        let define = |name: &str, data_type: &str, options: &[&str]| {
            sim.define_gohighlevel_field("contact", name, data_type, options);
            format!("contact.{name}")
        };
        let rules = [
            ("ai_intent", "SINGLE_OPTIONS", "analysis.intent", None),
            ("ai_first_topic", "TEXT", "analysis.topic", Some("if_empty")),
            ("ai_call_log", "LARGE_TEXT", "summary", Some("append")),
            ("ai_score", "NUMERICAL", "analysis.score", None),
        ];
        let mapping = rules
            .iter()
            .map(|(name, data_type, from, mode)| {
                let options: &[&str] = if *name == "ai_intent" {
                    &["Sales enquiry", "Support"]
                } else {
                    &[]
                };
                rule("contact", &define(name, data_type, options), from, *mode)
            })
            .collect::<Vec<_>>()
            .join("\n");
        // GoHighLevel's contact holds its custom fields by name, options
        // by their label.
        return Fields {
            intent: "ai_intent".to_owned(),
            first_topic: "ai_first_topic".to_owned(),
            call_log: "ai_call_log".to_owned(),
            call_score: None,
            sales: json!("Sales enquiry"),
            support: json!("Support"),
            mapping,
        };
    }
    if crm == "pipedrive" {
        let (intent, ids) =
            sim.define_pipedrive_person_field("AI intent", "enum", &["Sales enquiry", "Support"]);
        let (first_topic, _) = sim.define_pipedrive_person_field("AI first topic", "varchar", &[]);
        let (call_log, _) = sim.define_pipedrive_person_field("AI call log", "text", &[]);
        let (score, _) = sim.define_pipedrive_person_field("AI score", "double", &[]);
        let mapping = format!(
            "{}\n{}\n{}\n{}",
            rule("contact", &intent, "analysis.intent", None),
            rule("contact", &first_topic, "analysis.topic", Some("if_empty")),
            rule("contact", &call_log, "summary", Some("append")),
            rule("contact", &score, "analysis.score", None),
        );
        return Fields {
            intent,
            first_topic,
            call_log,
            call_score: None,
            sales: json!(ids.first()),
            support: json!(ids.get(1)),
            mapping,
        };
    }
    let intents = [("sales", "Sales enquiry"), ("support", "Support")];
    sim.define_hubspot_property("contacts", "ai_intent", "enumeration", "select", &intents);
    sim.define_hubspot_property("contacts", "ai_first_topic", "string", "text", &[]);
    sim.define_hubspot_property("contacts", "ai_call_log", "string", "textarea", &[]);
    let yes_no = [("true", "Yes"), ("false", "No")];
    sim.define_hubspot_property(
        "contacts",
        "ai_follow_up",
        "bool",
        "booleancheckbox",
        &yes_no,
    );
    sim.define_hubspot_property("calls", "ai_score", "number", "number", &[]);
    let mapping = [
        rule("contact", "ai_intent", "analysis.intent", None),
        rule(
            "contact",
            "ai_first_topic",
            "analysis.topic",
            Some("if_empty"),
        ),
        rule("contact", "ai_call_log", "summary", Some("append")),
        rule("contact", "ai_follow_up", "analysis.follow_up_needed", None),
        rule("call", "ai_score", "analysis.score", None),
    ]
    .join("\n");
    Fields {
        intent: "ai_intent".to_owned(),
        first_topic: "ai_first_topic".to_owned(),
        call_log: "ai_call_log".to_owned(),
        call_score: Some(("ai_score".to_owned(), json!("7"), json!("4.5"))),
        sales: json!("sales"),
        support: json!("support"),
        mapping,
    }
}

/// Salesforce's fields: the contact ones on Contact and Lead (a caller may
/// be either), the score on Task, the call record.
fn salesforce(sim: &CrmSim) -> Fields {
    for object in ["Contact", "Lead"] {
        let field =
            |key: &str, kind: &str| CustomField::new(Vendor::Salesforce, object, key, key, kind);
        sim.define_field(
            field("AI_Intent__c", "picklist")
                .with_options(vec![
                    FieldOption::new(json!("Sales"), "Sales enquiry"),
                    FieldOption::new(json!("Support"), "Support"),
                ])
                .restricted(),
        );
        sim.define_field(field("AI_First_Topic__c", "string"));
        sim.define_field(field("AI_Call_Log__c", "textarea"));
    }
    sim.define_field(CustomField::new(
        Vendor::Salesforce,
        "Task",
        "AI_Score__c",
        "AI_Score__c",
        "double",
    ));
    let mapping = [
        rule("contact", "AI_Intent__c", "analysis.intent", None),
        rule(
            "contact",
            "AI_First_Topic__c",
            "analysis.topic",
            Some("if_empty"),
        ),
        rule("contact", "AI_Call_Log__c", "summary", Some("append")),
        rule("call", "AI_Score__c", "analysis.score", None),
    ]
    .join("\n");
    Fields {
        intent: "AI_Intent__c".to_owned(),
        first_topic: "AI_First_Topic__c".to_owned(),
        call_log: "AI_Call_Log__c".to_owned(),
        call_score: Some(("AI_Score__c".to_owned(), json!(7.0), json!(4.5))),
        sales: json!("Sales"),
        support: json!("Support"),
        mapping,
    }
}

/// One rule of a mapping file; `overwrite` when no mode is given.
fn rule(object: &str, property: &str, from: &str, mode: Option<&str>) -> String {
    let mode = mode.map_or_else(String::new, |m| format!("mode = \"{m}\"\n"));
    format!("[[{object}]]\nproperty = \"{property}\"\nfrom = \"{from}\"\n{mode}")
}

/// The mapping's rules counted by mode (`call` for `[[call]]` rules).
fn rules_by_mode(mapping: &str) -> BTreeMap<String, usize> {
    let mut rules = BTreeMap::new();
    for block in mapping.split("[[").skip(1) {
        let mode = if block.starts_with("call]]") {
            "call"
        } else {
            block
                .lines()
                .find_map(|l| l.strip_prefix("mode = \""))
                .map_or("overwrite", |m| m.trim_end_matches('"'))
        };
        *rules.entry(mode.to_owned()).or_default() += 1;
    }
    rules
}

/// Who calls: call `i` of `3 × calls`, in [`CALLERS`]' order.
struct Plan {
    calls: usize,
}

impl Plan {
    /// The kind of caller of call `i` (an index into [`CALLERS`]).
    fn batch(&self, i: usize) -> usize {
        i / self.calls
    }

    /// The repeat batch calls the new callers again.
    fn phone(&self, i: usize) -> String {
        let k = if self.batch(i) == 2 {
            i - 2 * self.calls
        } else {
            i
        };
        format!("+3168{k:07}")
    }

    /// Call `i`'s analysis: the repeat calls change the intent and the
    /// topic, which `overwrite` must take and `if_empty` must not.
    fn analysis(&self, i: usize) -> Value {
        if self.batch(i) == 2 {
            json!({ "intent": "support", "topic": "billing", "score": 4.5, "follow_up_needed": false })
        } else {
            json!({ "intent": "Sales enquiry", "topic": format!("topic {i}"), "score": 7, "follow_up_needed": false })
        }
    }

    fn ended_at(&self, i: usize) -> &'static str {
        if self.batch(i) == 2 {
            "2026-05-01T09:00:00Z"
        } else {
            "2026-05-01T08:00:00Z"
        }
    }
}

async fn measure(
    env: &WorkerEnv,
    crm: &'static str,
    calls: usize,
) -> anyhow::Result<(Vec<MappingRow>, MappingCrm)> {
    let plan = Plan { calls };
    let fields = define(&env.sim, crm);
    let path = mapping_file(&format!("bench-{crm}"), &fields.mapping);
    let mut batch = Batch::new(3 * calls, |i| plan.phone(i), |_| false);
    batch.bodies = (0..3 * calls)
        .map(|i| {
            report(
                &call_id(i),
                &plan.phone(i),
                plan.ended_at(i),
                plan.analysis(i),
            )
        })
        .collect();
    for i in calls..2 * calls {
        let name = format!("Known {i}");
        let contact = typed_contact(
            crm,
            &name,
            &plan.phone(i),
            Field::Main,
            "2026-01-01T00:00:00Z",
        );
        seed_in(&env.sim, crm, contact);
    }
    let (worker, _) = Child::start(
        "worker",
        |ops| {
            let mut vars = env.worker_vars_for(crm, ops, &Budgets::off());
            vars.push((
                "CALLSYNC_MAPPING".to_owned(),
                path.to_string_lossy().into_owned(),
            ));
            vars
        },
        Some("/readyz"),
    )
    .await?;
    let mut rows = Vec::new();
    for (k, caller) in CALLERS.into_iter().enumerate() {
        let before = env.sim.snapshot().stats;
        let first = k * calls;
        env.preload_from(first, &batch.bodies[first..first + calls])
            .await?;
        wait_synced(env, first + calls, Duration::from_secs(600)).await?;
        let mut cost = since(&before, &env.sim.snapshot().stats).by_operation;
        cost.retain(|op, _| {
            !SETUP_OPERATIONS.contains(&op.as_str()) && !OTHER_SETUP.contains(&op.as_str())
        });
        let requests: u64 = cost.values().sum();
        rows.push(MappingRow {
            crm,
            caller,
            calls,
            crm_requests: requests,
            crm_requests_per_call: requests as f64 / calls as f64,
            by_operation: cost,
        });
    }
    worker.stop().await;
    let _ = std::fs::remove_file(&path);
    let snapshot = env.sim.snapshot();
    let held = check_crm(&snapshot, &batch)?;
    let fields_checked = check_fields(&snapshot, &plan, &fields)?;
    Ok((
        rows,
        MappingCrm {
            left: CrmLeft {
                crm,
                held,
                parked: env.parked_messages().await?,
            },
            rules: rules_by_mode(&fields.mapping),
            fields_checked,
        },
    ))
}

/// Every caller's contact holds what each mode says after its calls (the
/// newest intent, the first topic, one line per call), and, on HubSpot,
/// every call record its own score. Returns the fields checked.
fn check_fields(s: &Snapshot, plan: &Plan, f: &Fields) -> anyhow::Result<usize> {
    let calls = plan.calls;
    let record = |i: usize| -> anyhow::Result<&Record> {
        let marker = marker(&call_id(i));
        s.calls
            .iter()
            .find(|r| r.marker().as_deref() == Some(marker.as_str()))
            .with_context(|| format!("no call record for call {i}"))
    };
    let mut checked = 0;
    for first in 0..2 * calls {
        let repeat = (first < calls).then_some(first + 2 * calls);
        let newest = repeat.unwrap_or(first);
        let contact_id = record(newest)?.associations.first().cloned();
        let contact = s
            .contacts
            .iter()
            .find(|c| Some(&c.id) == contact_id.as_ref())
            .with_context(|| format!("no contact for call {newest}"))?;
        let lines: Vec<String> = [Some(first), repeat]
            .into_iter()
            .flatten()
            .map(|i| line(&call_id(i)))
            .collect();
        let intent = if repeat.is_some() {
            &f.support
        } else {
            &f.sales
        };
        let expected = [
            (&f.intent, intent.clone(), "overwrite: the newest call's"),
            (
                &f.first_topic,
                json!(format!("topic {first}")),
                "if_empty: the first call's",
            ),
            (
                &f.call_log,
                json!(lines.join("\n")),
                "append: one line per call",
            ),
        ];
        for (field, value, mode) in expected {
            let held = contact.properties.get(field.as_str());
            anyhow::ensure!(
                held == Some(&value),
                "caller of call {first}: {field} holds {held:?}, {mode} {value} expected"
            );
            checked += 1;
        }
    }
    if let Some((score, first, repeat)) = &f.call_score {
        for i in 0..3 * calls {
            let expected = if plan.batch(i) == 2 { repeat } else { first };
            let held = record(i)?.properties.get(score.as_str());
            anyhow::ensure!(
                held == Some(expected),
                "call {i}: {score} holds {held:?}, {expected} expected"
            );
            checked += 1;
        }
    }
    Ok(checked)
}

/// The scenario's table.
pub fn render(report: &MappingReport) -> String {
    let mut out = String::from(
        "\n| full mapping: CRM | caller | calls | CRM requests | per call | by operation |\n|---|---|---:|---:|---:|---|\n",
    );
    for r in &report.rows {
        let ops: Vec<String> = r
            .by_operation
            .iter()
            .map(|(op, n)| format!("{op} {n}"))
            .collect();
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.2} | {} |\n",
            r.crm,
            r.caller,
            r.calls,
            r.crm_requests,
            r.crm_requests_per_call,
            ops.join(", ")
        ));
    }
    out.push_str("\n| full mapping: CRM | rules by mode | mapped fields checked | CRM call records / tasks / contacts | parked |\n|---|---|---:|---:|---:|\n");
    for c in &report.crms {
        let rules: Vec<String> = c.rules.iter().map(|(m, n)| format!("{m} {n}")).collect();
        out.push_str(&format!(
            "| {} | {} | {} | {} / {} / {} | {} |\n",
            c.left.crm,
            rules.join(", "),
            c.fields_checked,
            c.left.held.crm_call_records,
            c.left.held.crm_tasks,
            c.left.held.crm_contacts,
            c.left.parked
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repeat_batch_calls_the_new_callers_again_with_a_newer_intent() {
        let plan = Plan { calls: 3 };
        assert_eq!(plan.phone(1), plan.phone(7));
        assert_ne!(plan.phone(1), plan.phone(4));
        assert_eq!(plan.analysis(7)["intent"], "support");
        assert_eq!(plan.analysis(4)["intent"], "Sales enquiry");
        assert!(plan.ended_at(7) > plan.ended_at(1));
    }

    #[test]
    fn the_rules_are_counted_by_mode() {
        let mapping = [
            rule("contact", "a", "summary", None),
            rule("contact", "b", "summary", Some("if_empty")),
            rule("contact", "c", "summary", Some("append")),
            rule("call", "d", "summary", None),
        ]
        .join("\n");
        let rules = rules_by_mode(&mapping);
        let expected: BTreeMap<String, usize> = ["append", "call", "if_empty", "overwrite"]
            .into_iter()
            .map(|m| (m.to_owned(), 1))
            .collect();
        assert_eq!(rules, expected);
    }
}
