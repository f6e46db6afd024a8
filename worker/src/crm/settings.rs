//! How a CRM's settings are read and its adapter built.
//!
//! Every CRM shares [`HttpSettings`] (`CALLSYNC_CRM_*`); its own variables
//! are named after it (`CALLSYNC_<NAME>_<suffix>`, as sources name theirs)
//! through [`Vars`], so an adapter says `vars.secret("TOKEN")` and never
//! spells its own name. An adapter implements [`Adapter`] and its spec says
//! `configure: configure::<Itself>`; the rest (keeping the settings,
//! building the HTTP client, the adapter) is done here, once.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use callsync_shared::config::{ConfigError, Env, Secret};

use super::{Crm, CrmHttp, CrmSpec, Mapped, REGISTRY, Rate, Shared, spec, supported};
use crate::mapping::Mapping;

/// The request timeout used when `CALLSYNC_CRM_TIMEOUT` is not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings every CRM client shares.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub timeout: Duration,
    /// The account-wide request budget (`CALLSYNC_CRM_RATE`), divided among
    /// the live workers; `None` disables client-side limiting.
    pub rate: Option<Rate>,
    /// The account-wide budget of search requests
    /// (`CALLSYNC_CRM_SEARCH_RATE`), divided the same way. A search also
    /// counts against `rate`.
    pub search_rate: Option<Rate>,
}

impl HttpSettings {
    fn from_env(env: &Env, spec: &CrmSpec) -> Result<Self, ConfigError> {
        Ok(Self {
            timeout: env.duration("CALLSYNC_CRM_TIMEOUT", DEFAULT_TIMEOUT)?,
            rate: rate(env, "CALLSYNC_CRM_RATE", spec.default_rate)?,
            search_rate: rate(env, "CALLSYNC_CRM_SEARCH_RATE", spec.default_search_rate)?,
        })
    }
}

/// A budget variable: `<requests>/<window>`, or `off`.
fn rate(env: &Env, var: &str, default: &str) -> Result<Option<Rate>, ConfigError> {
    match env.string(var, default).as_str() {
        "off" | "none" => Ok(None),
        text => text
            .parse::<Rate>()
            .map(Some)
            .map_err(|message| ConfigError {
                var: var.to_owned(),
                message,
            }),
    }
}

/// One CRM's own variables: `CALLSYNC_<NAME>_<suffix>`.
#[derive(Debug, Clone, Copy)]
pub struct Vars<'a> {
    env: &'a Env,
    crm: &'static str,
}

impl<'a> Vars<'a> {
    pub fn new(env: &'a Env, crm: &'static str) -> Self {
        Self { env, crm }
    }

    /// The variable's full name: `CALLSYNC_HUBSPOT_TOKEN` for `TOKEN`.
    pub fn name(&self, suffix: &str) -> String {
        format!("CALLSYNC_{}_{suffix}", self.crm.to_ascii_uppercase())
    }

    pub fn raw(&self, suffix: &str) -> Option<&'a str> {
        self.env.raw(&self.name(suffix))
    }

    pub fn string(&self, suffix: &str, default: &str) -> String {
        self.env.string(&self.name(suffix), default)
    }

    pub fn required(&self, suffix: &str) -> Result<String, ConfigError> {
        self.env.required(&self.name(suffix))
    }

    pub fn secret(&self, suffix: &str) -> Result<Secret, ConfigError> {
        self.env.required_secret(&self.name(suffix))
    }

    pub fn optional_secret(&self, suffix: &str) -> Option<Secret> {
        self.raw(suffix).map(Secret::new)
    }

    /// A base URL, `default` when unset, without its trailing slash (paths
    /// are appended with their own).
    pub fn url(&self, suffix: &str, default: &str) -> String {
        self.string(suffix, default)
            .trim_end_matches('/')
            .to_owned()
    }

    /// [`Vars::url`] without a default.
    pub fn required_url(&self, suffix: &str) -> Result<String, ConfigError> {
        Ok(self.required(suffix)?.trim_end_matches('/').to_owned())
    }

    /// A start-up error naming the variable.
    pub fn error(&self, suffix: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            var: self.name(suffix),
            message: message.into(),
        }
    }
}

/// What a CRM adapter is made of besides the [`Crm`] trait: its own
/// settings, how they are read, and how it is built from them.
pub trait Adapter: Crm + Sized + 'static {
    /// What its variables say (the shared ones are [`HttpSettings`]).
    type Settings: fmt::Debug + Clone + Send + Sync + 'static;

    /// Reads its variables; a missing or invalid one fails start-up.
    fn settings(vars: Vars<'_>) -> Result<Self::Settings, ConfigError>;

    /// The adapter, sending through `http` (whose requests draw on
    /// `shared`).
    fn new(settings: Self::Settings, http: CrmHttp, shared: &Shared) -> Self;
}

/// Reads a CRM's own variables: `configure::<Adapter>` in its spec.
pub type Configure = fn(Vars<'_>) -> Result<Arc<dyn CrmSettings>, ConfigError>;

/// One CRM's own settings, able to build its adapter.
pub trait CrmSettings: fmt::Debug + Send + Sync {
    fn build(&self, http: CrmHttp, shared: &Shared) -> Arc<dyn Crm>;
}

/// The [`Configure`] of adapter `A`.
pub fn configure<A: Adapter>(vars: Vars<'_>) -> Result<Arc<dyn CrmSettings>, ConfigError> {
    Ok(Arc::new(Own::<A>(A::settings(vars)?)))
}

/// Adapter `A`'s settings, kept until it is built.
struct Own<A: Adapter>(A::Settings);

impl<A: Adapter> fmt::Debug for Own<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<A: Adapter> CrmSettings for Own<A> {
    fn build(&self, http: CrmHttp, shared: &Shared) -> Arc<dyn Crm> {
        Arc::new(A::new(self.0.clone(), http, shared))
    }
}

/// Which CRM to sync to, with its settings.
#[derive(Debug, Clone)]
pub struct CrmConfig {
    spec: &'static CrmSpec,
    http: HttpSettings,
    settings: Arc<dyn CrmSettings>,
    /// `CALLSYNC_MAPPING`, read and parsed.
    mapping: Option<Arc<Mapping>>,
}

impl CrmConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let name = env.required("CALLSYNC_CRM")?;
        let spec = spec(&name).ok_or_else(|| ConfigError {
            var: "CALLSYNC_CRM".to_owned(),
            message: format!(
                "{name:?} is not a supported CRM; supported: {}",
                supported().collect::<Vec<_>>().join(", ")
            ),
        })?;
        // Refused before the CRM's own variables are read: a mapping set
        // for a CRM that cannot write it is the first thing to fix.
        if spec.maps_fields == Mapped::No
            && env
                .raw("CALLSYNC_MAPPING")
                .is_some_and(|p| !p.trim().is_empty())
        {
            writable(spec, &Mapping::default())?;
        }
        let http = HttpSettings::from_env(env, spec)?;
        let settings = (spec.configure)(Vars::new(env, spec.name))?;
        let mapping = Mapping::from_env(env)?;
        if let Some(mapping) = &mapping {
            writable(spec, mapping)?;
        }
        Ok(Self {
            spec,
            http,
            settings,
            mapping,
        })
    }

    /// The value of `CALLSYNC_CRM` this configuration came from.
    pub fn name(&self) -> &'static str {
        self.spec.name
    }

    pub fn http(&self) -> &HttpSettings {
        &self.http
    }

    pub fn timeout(&self) -> Duration {
        self.http.timeout
    }

    /// What to check when the CRM refuses the credential.
    pub fn credential_help(&self) -> &'static str {
        self.spec.credential_help
    }

    /// How long this CRM's search may take to show a new record, before a
    /// create whose outcome is unknown is searched for.
    pub fn default_index_lag(&self) -> Duration {
        self.spec.default_index_lag
    }

    /// The mapping the adapter writes, when `CALLSYNC_MAPPING` is set.
    pub fn mapping(&self) -> Option<&Arc<Mapping>> {
        self.mapping.as_ref()
    }

    /// Builds the adapter; its requests draw on `shared`, and it writes
    /// the configured mapping.
    pub fn build(&self, shared: Shared) -> Result<Arc<dyn Crm>, CrmBuildError> {
        let shared = Shared {
            mapping: self.mapping.clone(),
            ..shared
        };
        let http = CrmHttp::new(self.spec, self.http.timeout, shared.clone())?;
        Ok(self.settings.build(http, &shared))
    }
}

/// Refuses a mapping `spec`'s adapter cannot write, naming what to change.
fn writable(spec: &CrmSpec, mapping: &Mapping) -> Result<(), ConfigError> {
    let refuse = |message: String| {
        Err(ConfigError {
            var: "CALLSYNC_MAPPING".to_owned(),
            message,
        })
    };
    if let Some(rule) = mapping.deal.first()
        && !spec.writes_deals
        && spec.maps_fields != Mapped::No
    {
        return refuse(format!(
            "{}: [[deal]] rules cannot be written to {} yet; remove them",
            mapping.at_line(rule.line),
            spec.name
        ));
    }
    match spec.maps_fields {
        Mapped::Full => Ok(()),
        Mapped::ContactOnly(why) => match mapping.call.first() {
            None => Ok(()),
            Some(rule) => refuse(format!(
                "{}: [[call]] rules cannot be written to {}: {why}; remove them or map the value onto the contact",
                mapping.at(rule),
                spec.name
            )),
        },
        Mapped::No => {
            let supported: Vec<&str> = REGISTRY
                .iter()
                .filter(|s| s.maps_fields != Mapped::No)
                .map(|s| s.name)
                .collect();
            refuse(format!(
                "is set, and CALLSYNC_CRM={} does not write mapped fields yet (supported: {}); unset it or choose a supported CRM",
                spec.name,
                supported.join(", ")
            ))
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot build the CRM HTTP client")]
pub struct CrmBuildError(#[from] reqwest::Error);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crms_variables_are_named_after_it() {
        let env = Env::default().with("CALLSYNC_HUBSPOT_BASE_URL", "https://api.example/");
        let vars = Vars::new(&env, "hubspot");
        assert_eq!(vars.name("TOKEN"), "CALLSYNC_HUBSPOT_TOKEN");
        assert_eq!(vars.url("BASE_URL", "unused"), "https://api.example");
        assert_eq!(
            vars.secret("TOKEN").unwrap_err().to_string(),
            "CALLSYNC_HUBSPOT_TOKEN: is required but not set"
        );
    }

    #[test]
    fn a_mapping_for_a_crm_that_cannot_write_it_is_refused_at_start_up() {
        let env = Env::default()
            .with("CALLSYNC_CRM", "webhook")
            .with("CALLSYNC_MAPPING", "mapping.toml");
        let error = CrmConfig::from_env(&env).unwrap_err().to_string();
        assert!(
            error.starts_with("CALLSYNC_MAPPING: is set, and CALLSYNC_CRM=webhook does not write mapped fields yet (supported: hubspot, pipedrive"),
            "{error}"
        );
        let mapping = crate::mapping::file::parse(
            std::path::Path::new("mapping.toml"),
            "[[call]]\nproperty = \"x\"\nfrom = \"summary\"\n",
        )
        .unwrap();
        let error = writable(&crate::crm::pipedrive::SPEC, &mapping)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("CALLSYNC_MAPPING: mapping.toml line 1: [[call]] rules cannot be written to pipedrive"),
            "{error}"
        );
    }
}
