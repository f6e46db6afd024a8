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

/// The marker a deal carries, wherever its CRM keeps it: a property of
/// its own (HubSpot), a custom field's value (Pipedrive's `custom_fields`),
/// a text field.
pub fn deal_marker_of(deal: &Record) -> Option<String> {
    fn find(value: &Value) -> Option<String> {
        match value {
            Value::String(text) => {
                let start = text.find("callsync:")?;
                Some(
                    text[start..]
                        .chars()
                        .take_while(|c| !c.is_whitespace() && !matches!(c, '<' | '"' | '&' | ']'))
                        .collect(),
                )
            }
            Value::Array(items) => items.iter().find_map(find),
            Value::Object(fields) => fields.values().find_map(find),
            _ => None,
        }
    }
    deal.properties.values().find_map(find)
}

/// A deal's name: HubSpot's `dealname`, Pipedrive's `title`, Salesforce's
/// `Name`, GoHighLevel's `name`.
pub fn deal_name(deal: &Record) -> Option<&str> {
    ["dealname", "title", "Name", "name"]
        .into_iter()
        .find_map(|key| deal.prop(key))
}

/// The deals that carry voicedock call `id`'s markers (any rule's).
pub fn deals_of_call<'a>(s: &'a Snapshot, id: &str) -> Vec<&'a Record> {
    let prefix = format!("{}:deal:", voicedock_marker(id));
    s.deals
        .iter()
        .filter(|d| deal_marker_of(d).is_some_and(|m| m.starts_with(&prefix)))
        .collect()
}

/// The markers of every deal, sorted: one lost deal and one duplicate
/// never pass as "two deals".
pub fn deal_markers(s: &Snapshot) -> Vec<String> {
    let mut markers: Vec<String> = s.deals.iter().filter_map(deal_marker_of).collect();
    markers.sort_unstable();
    markers
}
