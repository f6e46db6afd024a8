//! What the `[[deal]]` suite shares across CRMs: the rules, the calls that
//! match them or not, and reading the deals crm-sim holds.

use serde_json::{Value, json};

use crate::harness::voicedock_marker;
use crate::sim::{Record, Snapshot};

/// A `[[deal]]` rule: `when` is the TOML inline table's inside.
pub fn rule(when: &str, pipeline: &str, stage: &str, name: &str) -> String {
    format!(
        "[[deal]]\nwhen = {{ {when} }}\npipeline = \"{pipeline}\"\nstage = \"{stage}\"\nname = \"{name}\"\n\n"
    )
}

/// Two rules in `pipeline`'s `stage`: rule 0 for an unresolved sales call,
/// rule 1 for any sales call; a sales call left unresolved matches both.
pub fn two_rules(pipeline: &str, stage: &str) -> String {
    rule(
        r#""analysis.intent" = "sales", "analysis.resolved" = false"#,
        pipeline,
        stage,
        "AI call: {analysis.topic}",
    ) + &rule(
        r#""analysis.intent" = "sales""#,
        pipeline,
        stage,
        "Sales lead {caller.number}",
    )
}

/// An unresolved sales call about `topic`: matches both of [`two_rules`].
pub fn unresolved_sales(topic: &str) -> Value {
    json!({ "intent": "sales", "resolved": false, "topic": topic })
}

/// The marker rule `index`'s deal of voicedock call `id` carries.
pub fn deal_marker(id: &str, index: usize) -> String {
    format!("{}:deal:{index}", voicedock_marker(id))
}

/// The deals that carry voicedock call `id`'s markers (any rule's).
pub fn deals_of_call<'a>(s: &'a Snapshot, id: &str) -> Vec<&'a Record> {
    let prefix = format!("{}:deal:", voicedock_marker(id));
    s.deals
        .iter()
        .filter(|d| d.marker().is_some_and(|m| m.starts_with(&prefix)))
        .collect()
}

/// The markers of every deal, sorted: one lost deal and one duplicate
/// never pass as "two deals".
pub fn deal_markers(s: &Snapshot) -> Vec<String> {
    let mut markers: Vec<String> = s.deals.iter().filter_map(Record::marker).collect();
    markers.sort_unstable();
    markers
}
