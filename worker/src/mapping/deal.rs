//! `[[deal]]` rules: a deal (HubSpot deal, Pipedrive deal, Salesforce
//! Opportunity, GoHighLevel opportunity) for a call whose values say so.
//!
//! A rule matches when every `when` key equals its value, typed as the TOML
//! gives it: `false` matches the boolean false only, never the text
//! "false", and `3` the number 3 (or 3.0). A key the call does not have
//! does not match. The deal's name is a template whose `{value}`
//! placeholders name values of the call (the names `from` takes); a value
//! the call lacks reads as empty text, so that a call that matched still
//! gets its deal (the rule decided that it should) with the rest of its
//! name; a name that comes out empty is the call's title instead.

use callsync_shared::CallReport;

use super::value::{From, Value, number_text};

/// How many `[[deal]]` rules a file may hold: each is a step of every call
/// in the ledger, named `deal:<index>`.
pub const MAX_RULES: usize = 16;

/// The ledger's names of the deal steps, one per rule index (static, as
/// every step name is).
pub const STEP_NAMES: [&str; MAX_RULES] = [
    "deal:0", "deal:1", "deal:2", "deal:3", "deal:4", "deal:5", "deal:6", "deal:7", "deal:8",
    "deal:9", "deal:10", "deal:11", "deal:12", "deal:13", "deal:14", "deal:15",
];

/// One `[[deal]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct DealRule {
    /// Its place among the file's `[[deal]]` rules, from 0: the ledger's
    /// step and the marker the deal carries are named after it.
    pub index: usize,
    /// Where in the file the rule is, for every message about it.
    pub line: usize,
    /// Every condition must hold; none means every call.
    pub when: Vec<Condition>,
    /// The CRM's id of the pipeline.
    pub pipeline: String,
    /// The CRM's id of the stage, in `pipeline`.
    pub stage: String,
    pub name: Template,
}

/// `"<value>" = <expected>` of a rule's `when` table.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub from: From,
    pub equals: Expected,
}

/// A `when` value, typed as the TOML gives it.
#[derive(Debug, Clone, PartialEq)]
pub enum Expected {
    Text(String),
    Number(f64),
    Bool(bool),
}

impl Expected {
    /// Whether the call's value is this one, type and all. Text compares
    /// exactly (after the trimming every value gets).
    fn holds(&self, value: &Value) -> bool {
        match (self, value) {
            (Expected::Text(want), Value::Text(have)) => want.trim() == have,
            (Expected::Number(want), Value::Number(have)) => want == have,
            (Expected::Bool(want), Value::Bool(have)) => want == have,
            _ => false,
        }
    }
}

impl DealRule {
    /// Whether the call gets this rule's deal.
    pub fn matches(&self, report: &CallReport) -> bool {
        self.when.iter().all(|condition| {
            condition
                .from
                .resolve(report)
                .is_some_and(|value| condition.equals.holds(&value))
        })
    }

    /// The deal's name for this call, at most `max_chars` characters.
    pub fn name(&self, report: &CallReport, max_chars: usize) -> String {
        let rendered = self.name.render(report);
        let name = if rendered.is_empty() {
            crate::crm::render::call_title(report)
        } else {
            rendered
        };
        name.chars().take(max_chars).collect()
    }

    /// The marker this rule's deal of this call carries: the call's own
    /// marker and the rule, so that two rules' deals of one call are told
    /// apart.
    pub fn marker(&self, report: &CallReport) -> String {
        marker(report, self.index)
    }

    /// The ledger's name of this rule's step.
    pub fn step_name(&self) -> &'static str {
        STEP_NAMES[self.index]
    }
}

/// The marker of rule `index`'s deal of `report`.
pub fn marker(report: &CallReport, index: usize) -> String {
    format!("{}:deal:{index}", report.marker())
}

/// A CRM's pipeline of deals, as its API lists it: ids and labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline {
    pub id: String,
    pub label: String,
    /// Its stages: (id, label).
    pub stages: Vec<(String, String)>,
}

/// Checks that `rule`'s pipeline and stage are among `pipelines`: a rule
/// naming one the CRM does not have could never create its deal, a set-up
/// error. The text names what the CRM has instead (ids, with labels), as
/// a label given for an id is the likely mistake.
pub fn check_placement(rule: &DealRule, pipelines: &[Pipeline], crm: &str) -> Result<(), String> {
    let listed = |items: &mut dyn Iterator<Item = (&String, &String)>| {
        items
            .map(|(id, label)| format!("{id} ({label})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(pipeline) = pipelines.iter().find(|p| p.id == rule.pipeline) else {
        return Err(format!(
            "[[deal]] pipeline {:?} does not exist in {crm}; its pipelines are: {}",
            rule.pipeline,
            listed(&mut pipelines.iter().map(|p| (&p.id, &p.label)))
        ));
    };
    if pipeline.stages.iter().any(|(id, _)| *id == rule.stage) {
        return Ok(());
    }
    Err(format!(
        "[[deal]] stage {:?} does not exist in {crm}'s pipeline {:?}; its stages are: {}",
        rule.stage,
        rule.pipeline,
        listed(&mut pipeline.stages.iter().map(|(id, label)| (id, label)))
    ))
}

/// A deal name with `{value}` placeholders; `{{` and `}}` are braces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(Vec<Part>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Value(From),
}

impl std::str::FromStr for Template {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    let mut closed = false;
                    for c in chars.by_ref() {
                        if c == '}' {
                            closed = true;
                            break;
                        }
                        name.push(c);
                    }
                    if !closed {
                        return Err(format!(
                            "the placeholder {{{name} is not closed; write {{{{ for a brace"
                        ));
                    }
                    let from = name
                        .trim()
                        .parse::<From>()
                        .map_err(|problem| format!("placeholder {{{name}}}: {problem}"))?;
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Value(from));
                }
                '}' => return Err("a lone } in the name; write }} for a brace".to_owned()),
                other => literal.push(other),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Template(parts))
    }
}

impl Template {
    /// The name for `report`, on one line and trimmed; a value the call
    /// lacks is empty.
    pub fn render(&self, report: &CallReport) -> String {
        let text: String = self
            .0
            .iter()
            .map(|part| match part {
                Part::Text(text) => text.clone(),
                Part::Value(from) => from
                    .resolve(report)
                    .map(|value| match value {
                        Value::Number(n) => number_text(n),
                        other => other.to_text(),
                    })
                    .unwrap_or_default(),
            })
            .collect();
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(analysis: serde_json::Value) -> CallReport {
        let mut report = crate::mapping::test_report("c-1", analysis);
        report.caller.name = Some("Ada".into());
        report
    }

    fn rule(when: Vec<(&str, Expected)>, name: &str) -> DealRule {
        DealRule {
            index: 1,
            line: 3,
            when: when
                .into_iter()
                .map(|(from, equals)| Condition {
                    from: from.parse().unwrap(),
                    equals,
                })
                .collect(),
            pipeline: "default".into(),
            stage: "appointmentscheduled".into(),
            name: name.parse().unwrap(),
        }
    }

    #[test]
    fn a_rule_matches_when_every_key_equals_its_value_type_and_all() {
        let call = report(serde_json::json!({"intent": "sales", "resolved": false, "score": 3}));
        let sales = rule(
            vec![
                ("analysis.intent", Expected::Text("sales".into())),
                ("analysis.resolved", Expected::Bool(false)),
                ("analysis.score", Expected::Number(3.0)),
            ],
            "x",
        );
        assert!(sales.matches(&call));
        let text_false = rule(
            vec![("analysis.resolved", Expected::Text("false".into()))],
            "x",
        );
        assert!(!text_false.matches(&call), "false is not \"false\"");
        let other = rule(
            vec![("analysis.intent", Expected::Text("Sales".into()))],
            "x",
        );
        assert!(!other.matches(&call), "text compares exactly");
        let absent = rule(vec![("analysis.missing", Expected::Bool(false))], "x");
        assert!(
            !absent.matches(&call),
            "a value the call lacks never matches"
        );
        assert!(
            rule(Vec::new(), "x").matches(&call),
            "no condition: every call"
        );
    }

    #[test]
    fn a_name_fills_its_placeholders_and_a_missing_value_is_empty() {
        let call = report(serde_json::json!({"topic": "pricing", "score": 8}));
        let named = rule(
            Vec::new(),
            "AI call: {analysis.topic} ({analysis.score}) {{ok}}",
        );
        assert_eq!(named.name(&call, 255), "AI call: pricing (8) {ok}");
        let lacking = rule(Vec::new(), "AI call: {analysis.missing} from {caller.name}");
        assert_eq!(lacking.name(&call, 255), "AI call: from Ada");
        assert_eq!(named.name(&call, 7), "AI call");
    }

    #[test]
    fn a_name_that_renders_empty_is_the_calls_title() {
        let call = report(serde_json::json!({}));
        let empty = rule(Vec::new(), "{analysis.missing}");
        assert_eq!(
            empty.name(&call, 255),
            crate::crm::render::call_title(&call)
        );
        assert!(!empty.name(&call, 255).is_empty());
    }

    #[test]
    fn a_placeholder_must_name_a_value_and_be_closed() {
        let unknown = "AI call: {analysis}".parse::<Template>().unwrap_err();
        assert!(
            unknown.contains("{analysis}") && unknown.contains("unknown value"),
            "{unknown}"
        );
        assert!("AI {analysis.topic".parse::<Template>().is_err());
        assert!("AI }".parse::<Template>().is_err());
    }

    #[test]
    fn a_pipeline_or_stage_the_crm_lacks_is_named_with_what_it_has() {
        let pipelines = [Pipeline {
            id: "default".into(),
            label: "Sales Pipeline".into(),
            stages: vec![(
                "appointmentscheduled".into(),
                "Appointment Scheduled".into(),
            )],
        }];
        let mut placed = rule(Vec::new(), "x");
        assert_eq!(check_placement(&placed, &pipelines, "HubSpot"), Ok(()));
        placed.stage = "Appointment Scheduled".into();
        let problem = check_placement(&placed, &pipelines, "HubSpot").unwrap_err();
        assert!(
            problem.contains("stage \"Appointment Scheduled\" does not exist")
                && problem.contains("appointmentscheduled (Appointment Scheduled)"),
            "{problem}"
        );
        placed.pipeline = "sales".into();
        let problem = check_placement(&placed, &pipelines, "HubSpot").unwrap_err();
        assert!(
            problem.contains("pipeline \"sales\" does not exist in HubSpot"),
            "{problem}"
        );
    }

    #[test]
    fn each_rule_has_its_own_marker_and_step() {
        let call = report(serde_json::json!({}));
        let rule = rule(Vec::new(), "x");
        assert_eq!(rule.marker(&call), "callsync:vapi:c-1:deal:1");
        assert_eq!(rule.step_name(), "deal:1");
        for (i, name) in STEP_NAMES.iter().enumerate() {
            assert_eq!(*name, format!("deal:{i}"));
        }
    }
}
