//! The mapping file's syntax: TOML with `[[contact]]` and `[[call]]`
//! tables of `property`, `from` and `mode`, and `[[deal]]` tables of
//! `when`, `pipeline`, `stage` and `name`. Anything else stops start-up
//! with one line naming the file, the line and the problem, because a
//! mapping that silently ignores a typo writes nothing where the business
//! expects its data.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::deal::{self, Condition, DealRule, Expected, Template};
use super::value::From;
use super::{Mapping, Mode, Rule};

/// Why a mapping file was refused: file, line (when known) and problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct MappingError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub problem: String,
}

impl fmt::Display for MappingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{} line {line}: {}", self.path.display(), self.problem),
            None => write!(f, "{}: {}", self.path.display(), self.problem),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    contact: Vec<Spanned<RawRule>>,
    #[serde(default)]
    call: Vec<Spanned<RawRule>>,
    #[serde(default)]
    deal: Vec<Spanned<RawDeal>>,
}

/// A `[[deal]]` entry; every key optional here so that a missing one is
/// named in callsync's words, on the rule's line.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeal {
    when: Option<Spanned<toml::Value>>,
    pipeline: Option<Spanned<String>>,
    stage: Option<Spanned<String>>,
    name: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    property: Spanned<String>,
    from: Spanned<String>,
    #[serde(default)]
    mode: Option<Spanned<String>>,
}

/// Parses the text of the file at `path`.
pub fn parse(path: &Path, text: &str) -> Result<Mapping, MappingError> {
    let error = |span: Option<std::ops::Range<usize>>, problem: String| MappingError {
        path: path.to_owned(),
        line: span.map(|s| line_of(text, s.start)),
        problem,
    };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        // toml's message ends with the offending text quoted over several
        // lines; its first sentence is the problem.
        error(e.span(), e.message().trim().replace('\n', " "))
    })?;
    if let Some(extra) = raw.deal.get(deal::MAX_RULES) {
        return Err(error(
            Some(extra.span()),
            format!(
                "more than {} [[deal]] rules; merge some (a rule's when may be empty)",
                deal::MAX_RULES
            ),
        ));
    }
    let rules = |entries: Vec<Spanned<RawRule>>, table: &str| {
        entries
            .into_iter()
            .map(|entry| {
                let line = line_of(text, entry.span().start);
                let entry = entry.into_inner();
                let property = entry.property.get_ref().trim();
                if property.is_empty() {
                    return Err(error(
                        Some(entry.property.span()),
                        format!("[[{table}]] property is empty; name the CRM field"),
                    ));
                }
                let from = entry
                    .from
                    .get_ref()
                    .parse::<From>()
                    .map_err(|problem| error(Some(entry.from.span()), problem))?;
                let mode = match &entry.mode {
                    None => Mode::Overwrite,
                    Some(mode) => parse_mode(mode.get_ref())
                        .map_err(|problem| error(Some(mode.span()), problem))?,
                };
                Ok(Rule {
                    property: property.to_owned(),
                    from,
                    mode,
                    line,
                })
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let contact = rules(raw.contact, "contact")?;
    let call = rules(raw.call, "call")?;
    for (table, list) in [("contact", &contact), ("call", &call)] {
        for (i, rule) in list.iter().enumerate() {
            if let Some(first) = list[..i].iter().find(|r| r.property == rule.property) {
                return Err(MappingError {
                    path: path.to_owned(),
                    line: Some(rule.line),
                    problem: format!(
                        "[[{table}]] property {:?} is mapped twice (first at line {}); one rule per field",
                        rule.property, first.line
                    ),
                });
            }
        }
    }
    let deal = raw
        .deal
        .into_iter()
        .enumerate()
        .map(|(index, entry)| {
            let line = line_of(text, entry.span().start);
            deal_rule(index, line, entry.into_inner()).map_err(|(span, problem)| MappingError {
                path: path.to_owned(),
                line: Some(span.map_or(line, |s| line_of(text, s.start))),
                problem,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Mapping {
        path: path.to_owned(),
        contact,
        call,
        deal,
    })
}

/// A problem of a `[[deal]]` rule: where (none: the rule's own line) and what.
type DealProblem = (Option<std::ops::Range<usize>>, String);

fn deal_rule(index: usize, line: usize, raw: RawDeal) -> Result<DealRule, DealProblem> {
    let required = |value: Option<Spanned<String>>, key: &str, what: &str| {
        let value = value.ok_or_else(|| (None, format!("[[deal]] needs {key}: {what}")))?;
        let text = value.get_ref().trim();
        if text.is_empty() {
            return Err((
                Some(value.span()),
                format!("[[deal]] {key} is empty: {what}"),
            ));
        }
        Ok((text.to_owned(), value.span()))
    };
    let pipeline = required(raw.pipeline, "pipeline", "the CRM's id of the pipeline")?.0;
    let stage = required(raw.stage, "stage", "the CRM's id of the stage")?.0;
    let (name, name_span) = required(
        raw.name,
        "name",
        "the deal's name, with {value} placeholders",
    )?;
    let name = name
        .parse::<Template>()
        .map_err(|problem| (Some(name_span), format!("[[deal]] name: {problem}")))?;
    let when = raw.when.ok_or_else(|| {
        (
            None,
            "[[deal]] needs when: a table of values and what they must equal (when = {} for every call)"
                .to_owned(),
        )
    })?;
    let span = when.span();
    let toml::Value::Table(table) = when.into_inner() else {
        return Err((
            Some(span),
            "[[deal]] when must be a table, e.g. when = { \"analysis.intent\" = \"sales\" }"
                .to_owned(),
        ));
    };
    let when = table
        .into_iter()
        .map(|(key, value)| {
            let from = key
                .parse::<From>()
                .map_err(|problem| (Some(span.clone()), format!("[[deal]] when: {problem}")))?;
            let equals = match value {
                toml::Value::String(text) => Expected::Text(text),
                toml::Value::Boolean(flag) => Expected::Bool(flag),
                #[allow(clippy::cast_precision_loss)]
                toml::Value::Integer(n) => Expected::Number(n as f64),
                toml::Value::Float(n) => Expected::Number(n),
                other => {
                    return Err((
                        Some(span.clone()),
                        format!(
                            "[[deal]] when {key:?} is a {}; a value must equal a text, a number or true/false",
                            other.type_str()
                        ),
                    ));
                }
            };
            Ok(Condition { from, equals })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(DealRule {
        index,
        line,
        when,
        pipeline,
        stage,
        name,
    })
}

fn parse_mode(text: &str) -> Result<Mode, String> {
    match text {
        "overwrite" => Ok(Mode::Overwrite),
        "if_empty" => Ok(Mode::IfEmpty),
        "append" => Ok(Mode::Append),
        other => Err(format!(
            "unknown mode {other:?}; expected overwrite, if_empty or append"
        )),
    }
}

/// The 1-based line of byte `offset`.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .unwrap_or(text)
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<Mapping, String> {
        parse(Path::new("mapping.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn a_file_of_contact_and_call_rules_is_read_with_overwrite_as_the_default_mode() {
        let mapping = parsed(
            r#"
[[contact]]
property = "ai_intent"
from = "analysis.intent"

[[contact]]
property = "ai_history"
from = "summary"
mode = "append"

[[call]]
property = "ai_topic"
from = "analysis.primary_topic"
mode = "if_empty"
"#,
        )
        .unwrap();
        assert_eq!(mapping.contact.len(), 2);
        assert_eq!(mapping.contact[0].mode, Mode::Overwrite);
        assert_eq!(mapping.contact[0].line, 2);
        assert_eq!(mapping.contact[1].mode, Mode::Append);
        assert_eq!(mapping.contact[1].from, From::Summary);
        assert_eq!(
            mapping.call[0].from,
            From::Analysis("primary_topic".to_owned())
        );
        assert_eq!(mapping.call[0].mode, Mode::IfEmpty);
        assert_eq!(mapping.call[0].line, 11);
    }

    #[test]
    fn an_empty_file_maps_nothing() {
        assert!(parsed("").unwrap().is_empty());
    }

    #[test]
    fn an_unknown_value_names_the_file_its_line_and_the_values_known() {
        let error = parsed("[[contact]]\nproperty = \"x\"\nfrom = \"analysis\"\n").unwrap_err();
        assert!(
            error.starts_with("mapping.toml line 3: unknown value \"analysis\""),
            "{error}"
        );
        let error = parsed("[[call]]\nproperty = \"x\"\nfrom = \"caller.phone\"\n").unwrap_err();
        assert!(error.starts_with("mapping.toml line 3: "), "{error}");
        assert!(error.contains("caller.number"), "{error}");
    }

    #[test]
    fn an_unknown_mode_is_refused_on_its_line() {
        let error =
            parsed("[[contact]]\nproperty = \"x\"\nfrom = \"summary\"\nmode = \"replace\"\n")
                .unwrap_err();
        assert_eq!(
            error,
            "mapping.toml line 4: unknown mode \"replace\"; expected overwrite, if_empty or append"
        );
    }

    #[test]
    fn a_rule_without_a_property_is_refused_naming_the_key() {
        let error = parsed("\n[[contact]]\nfrom = \"summary\"\n").unwrap_err();
        assert!(error.starts_with("mapping.toml line 2: "), "{error}");
        assert!(error.contains("property"), "{error}");
        assert!(!error.contains('\n'), "one line: {error}");
    }

    #[test]
    fn an_unknown_key_or_table_is_refused_on_its_line() {
        let error =
            parsed("[[contact]]\nproperty = \"x\"\nfrom = \"summary\"\nmodes = \"append\"\n")
                .unwrap_err();
        assert!(error.starts_with("mapping.toml line 4: "), "{error}");
        assert!(error.contains("modes"), "{error}");
        let error = parsed("[[contacts]]\nproperty = \"x\"\n").unwrap_err();
        assert!(error.starts_with("mapping.toml line 1: "), "{error}");
        assert!(error.contains("contacts"), "{error}");
    }

    #[test]
    fn broken_toml_is_refused_on_one_line() {
        let error = parsed("[[contact]]\nproperty = \"x\nfrom = 1\n").unwrap_err();
        assert!(error.starts_with("mapping.toml line 2: "), "{error}");
        assert!(!error.contains('\n'), "{error}");
    }

    #[test]
    fn a_field_mapped_twice_is_refused_naming_both_lines() {
        let error = parsed(
            "[[contact]]\nproperty = \"x\"\nfrom = \"summary\"\n[[contact]]\nproperty = \"x\"\nfrom = \"sentiment\"\n",
        )
        .unwrap_err();
        assert!(error.starts_with("mapping.toml line 4: "), "{error}");
        assert!(error.contains("first at line 1"), "{error}");
    }

    const DEAL: &str = r#"
[[deal]]
when = { "analysis.intent" = "sales", "analysis.resolved" = false, "analysis.score" = 3 }
pipeline = "default"
stage = "appointmentscheduled"
name = "AI call: {analysis.primary_topic}"

[[deal]]
when = {}
pipeline = "p2"
stage = "s2"
name = "Every call"
"#;

    #[test]
    fn deal_rules_are_read_with_their_typed_conditions_index_and_line() {
        let mapping = parsed(DEAL).unwrap();
        assert_eq!(mapping.deal.len(), 2);
        let first = &mapping.deal[0];
        assert_eq!((first.index, first.line), (0, 2));
        assert_eq!(
            (first.pipeline.as_str(), first.stage.as_str()),
            ("default", "appointmentscheduled")
        );
        let mut when: Vec<(String, Expected)> = first
            .when
            .iter()
            .map(|c| (c.from.to_string(), c.equals.clone()))
            .collect();
        when.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            when,
            [
                ("analysis.intent".to_owned(), Expected::Text("sales".into())),
                ("analysis.resolved".to_owned(), Expected::Bool(false)),
                ("analysis.score".to_owned(), Expected::Number(3.0)),
            ]
        );
        assert_eq!((mapping.deal[1].index, mapping.deal[1].line), (1, 8));
        assert!(mapping.deal[1].when.is_empty());
    }

    #[test]
    fn a_deal_rule_without_a_pipeline_is_refused_on_its_line() {
        let error = parsed("[[contact]]\nproperty = \"x\"\nfrom = \"summary\"\n\n[[deal]]\nwhen = {}\nstage = \"s\"\nname = \"n\"\n")
            .unwrap_err();
        assert_eq!(
            error,
            "mapping.toml line 5: [[deal]] needs pipeline: the CRM's id of the pipeline"
        );
    }

    #[test]
    fn a_when_that_is_not_a_table_or_holds_a_list_is_refused_on_its_line() {
        let error =
            parsed("[[deal]]\npipeline = \"p\"\nstage = \"s\"\nname = \"n\"\nwhen = \"sales\"\n")
                .unwrap_err();
        assert!(
            error.starts_with("mapping.toml line 5: [[deal]] when must be a table"),
            "{error}"
        );
        let error = parsed("[[deal]]\npipeline = \"p\"\nstage = \"s\"\nname = \"n\"\nwhen = { \"analysis.tags\" = [\"a\"] }\n")
            .unwrap_err();
        assert!(error.starts_with("mapping.toml line 5: "), "{error}");
        assert!(error.contains("is a array"), "{error}");
        let error =
            parsed("[[deal]]\npipeline = \"p\"\nstage = \"s\"\nname = \"n\"\n").unwrap_err();
        assert!(
            error.starts_with("mapping.toml line 1: [[deal]] needs when"),
            "{error}"
        );
        let error = parsed("[[deal]]\npipeline = \"p\"\nstage = \"s\"\nname = \"n\"\nwhen = { \"analysis\" = 1 }\n")
            .unwrap_err();
        assert!(
            error.contains("line 5: [[deal]] when: unknown value"),
            "{error}"
        );
    }

    #[test]
    fn an_unknown_placeholder_in_a_deal_name_is_refused_on_its_line() {
        let error = parsed("[[deal]]\nwhen = {}\npipeline = \"p\"\nstage = \"s\"\nname = \"AI: {analysis.topic} {caller.phone}\"\n")
            .unwrap_err();
        assert!(
            error.starts_with(
                "mapping.toml line 5: [[deal]] name: placeholder {caller.phone}: unknown value"
            ),
            "{error}"
        );
        assert!(!error.contains('\n'), "{error}");
    }

    #[test]
    fn more_deal_rules_than_the_ledger_has_steps_for_are_refused() {
        let rule = "[[deal]]\nwhen = {}\npipeline = \"p\"\nstage = \"s\"\nname = \"n\"\n";
        assert!(parsed(&rule.repeat(deal::MAX_RULES)).is_ok());
        let error = parsed(&rule.repeat(deal::MAX_RULES + 1)).unwrap_err();
        assert!(
            error.starts_with("mapping.toml line 81: more than 16"),
            "{error}"
        );
    }

    #[test]
    fn an_empty_property_is_refused() {
        let error = parsed("[[contact]]\nproperty = \" \"\nfrom = \"summary\"\n").unwrap_err();
        assert!(error.starts_with("mapping.toml line 2: "), "{error}");
    }
}

#[cfg(test)]
mod example {
    use super::*;

    #[test]
    fn the_example_mapping_file_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mapping.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let mapping = parse(&path, &text).unwrap();
        assert_eq!(
            (
                mapping.contact.len(),
                mapping.call.len(),
                mapping.deal.len()
            ),
            (4, 2, 1)
        );
    }
}
