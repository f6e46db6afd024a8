//! The mapping file's syntax: TOML with `[[contact]]` and `[[call]]`
//! tables of `property`, `from` and `mode`. Anything else stops start-up
//! with one line naming the file, the line and the problem, because a
//! mapping that silently ignores a typo writes nothing where the business
//! expects its data.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

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
    /// Outcome rules (deals) are not written yet: a file with them is
    /// refused rather than run without them.
    #[serde(default)]
    deal: Option<Spanned<toml::Value>>,
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
    if let Some(deal) = &raw.deal {
        return Err(error(
            Some(deal.span()),
            "[[deal]] rules are not supported by this version; remove them".to_owned(),
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
    Ok(Mapping {
        path: path.to_owned(),
        contact,
        call,
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
        assert_eq!((mapping.contact.len(), mapping.call.len()), (4, 2));
    }
}
