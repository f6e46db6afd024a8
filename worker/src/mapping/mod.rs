//! `CALLSYNC_MAPPING`: which values of a call go to which of the business's
//! own CRM fields.
//!
//! The file is read once at start-up ([`file`]); each rule names a value of
//! the call ([`value`]) and a field; the CRM's adapter reads the field's
//! type from the CRM and converts the value into it ([`field`]).

pub mod apply;
pub mod deal;
pub mod field;
pub mod file;
pub mod value;

/// A call report for the unit tests of the mapping and its adapters.
#[cfg(test)]
pub(crate) fn test_report(id: &str, analysis: serde_json::Value) -> callsync_shared::CallReport {
    let mut report: callsync_shared::CallReport = serde_json::from_value(serde_json::json!({
        "source": "vapi", "call_id": id, "caller": {"phone": null, "name": null, "email": null},
        "ended_at": "2026-05-01T10:00:00Z", "ended_at_is_receipt_time": false,
        "duration": null, "summary": "Asked about pricing", "sentiment": null,
        "analysis": {}, "recording_url": null, "transcript": null, "crm_id": null,
        "called_number": null, "follow_up_needed": false, "extra": {}
    }))
    .expect("a report");
    report.analysis = analysis.as_object().cloned().unwrap_or_default().into();
    report
}

use std::path::{Path, PathBuf};
use std::sync::Arc;

use callsync_shared::config::{ConfigError, Env};

pub use deal::DealRule;
pub use field::{Conversion, FieldType, Skip};
pub use file::MappingError;
pub use value::{From, Value};

/// How a contact rule writes its field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The newest call's value: an older call never overwrites a newer one's.
    Overwrite,
    /// Only into an empty field.
    IfEmpty,
    /// One line per call, added once however often the call is delivered.
    Append,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Overwrite => "overwrite",
            Mode::IfEmpty => "if_empty",
            Mode::Append => "append",
        }
    }
}

/// One `[[contact]]` or `[[call]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The CRM's name of the field.
    pub property: String,
    pub from: From,
    pub mode: Mode,
    /// Where in the file the rule is, for every message about it.
    pub line: usize,
}

/// The whole file, with where it came from.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Mapping {
    pub path: PathBuf,
    /// Written on the call's contact.
    pub contact: Vec<Rule>,
    /// Written on the call record.
    pub call: Vec<Rule>,
    /// Outcome rules: a deal per matching call and rule.
    pub deal: Vec<DealRule>,
}

impl Mapping {
    /// `CALLSYNC_MAPPING`, read and checked; `None` when unset.
    pub fn from_env(env: &Env) -> Result<Option<Arc<Mapping>>, ConfigError> {
        let Some(path) = env.raw("CALLSYNC_MAPPING").filter(|p| !p.trim().is_empty()) else {
            return Ok(None);
        };
        Mapping::load(Path::new(path))
            .map(|m| Some(Arc::new(m)))
            .map_err(|e| ConfigError {
                var: "CALLSYNC_MAPPING".to_owned(),
                message: e.to_string(),
            })
    }

    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<Mapping, MappingError> {
        let text = std::fs::read_to_string(path).map_err(|e| MappingError {
            path: path.to_owned(),
            line: None,
            problem: format!("cannot be read ({e})"),
        })?;
        file::parse(path, &text)
    }

    /// Where a rule is: `mapping.toml line 3`.
    pub fn at(&self, rule: &Rule) -> String {
        self.at_line(rule.line)
    }

    /// Where line `line` of the file is: `mapping.toml line 3`.
    pub fn at_line(&self, line: usize) -> String {
        format!("{} line {line}", self.path.display())
    }

    /// Checks every `[[deal]]` rule's pipeline and stage against the CRM's
    /// `pipelines`: the first that is missing is a set-up error naming the
    /// rule's line.
    pub fn check_deals(
        &self,
        pipelines: &[deal::Pipeline],
        crm: &str,
    ) -> Result<(), crate::crm::CrmError> {
        for rule in &self.deal {
            deal::check_placement(rule, pipelines, crm).map_err(|problem| {
                crate::crm::CrmError::Setup {
                    detail: format!("CALLSYNC_MAPPING ({}): {problem}", self.at_line(rule.line)),
                }
            })?;
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.contact.is_empty() && self.call.is_empty() && self.deal.is_empty()
    }
}
