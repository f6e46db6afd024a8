//! Typed configuration from `CALLSYNC_*` environment variables.
//!
//! Each service parses its settings once at start-up into one struct. A missing
//! required variable or an invalid value becomes a [`ConfigError`] whose
//! `Display` is one line naming the variable, which `main` prints before exiting.
//!
//! Why not `figment` or `envy`: both interpret values (figment parses them as
//! TOML-like literals, so a secret `0123` becomes the number 123 and `[a]` an
//! array). Secrets and tokens must arrive byte for byte, so values are read as
//! plain strings here and parsed by the type that owns them.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Every variable callsync reads starts with this prefix.
pub const PREFIX: &str = "CALLSYNC_";

/// A setting that could not be read, named by its full variable name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}: {message}")]
pub struct ConfigError {
    pub var: String,
    pub message: String,
}

/// A snapshot of the environment, so that configuration parsing is a pure
/// function of its input and can be tested without touching process state.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    /// The process environment, restricted to `CALLSYNC_*` variables.
    pub fn from_process() -> Self {
        Self::from_pairs(std::env::vars().filter(|(k, _)| k.starts_with(PREFIX)))
    }

    /// An environment made of the given pairs (names include the prefix).
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// Sets one variable (builder style), for tests and embedders.
    #[must_use]
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.vars.insert(name.into(), value.into());
        self
    }

    /// Every variable, sorted by name (to hand to a child process).
    pub fn pairs(&self) -> Vec<(String, String)> {
        let mut pairs: Vec<_> = self
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        pairs.sort();
        pairs
    }

    fn error(name: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            var: name.to_owned(),
            message: message.into(),
        }
    }

    /// The raw value, with an empty value treated as unset (compose files
    /// often write `VAR=` to mean "not configured").
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// A string with a default.
    pub fn string(&self, name: &str, default: &str) -> String {
        self.raw(name).unwrap_or(default).to_owned()
    }

    /// A required string.
    pub fn required(&self, name: &str) -> Result<String, ConfigError> {
        self.raw(name)
            .map(str::to_owned)
            .ok_or_else(|| Self::error(name, "is required but not set"))
    }

    /// Any `FromStr` value with a default; `expected` describes a valid value.
    pub fn parse<T>(&self, name: &str, default: T, expected: &str) -> Result<T, ConfigError>
    where
        T: FromStr,
    {
        match self.raw(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| Self::error(name, format!("expected {expected}, got {v:?}"))),
        }
    }

    /// A boolean: `true`/`false`, `1`/`0`, `yes`/`no`.
    pub fn bool(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.raw(name).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(default),
            Some("true" | "1" | "yes" | "on") => Ok(true),
            Some("false" | "0" | "no" | "off") => Ok(false),
            Some(v) => Err(Self::error(
                name,
                format!("expected true or false, got {v:?}"),
            )),
        }
    }

    /// A duration written as `<number><unit>` with unit `ms`, `s`, `m`, `h`
    /// or `d` (a bare number means seconds).
    pub fn duration(&self, name: &str, default: Duration) -> Result<Duration, ConfigError> {
        match self.raw(name) {
            None => Ok(default),
            Some(v) => parse_duration(v).map_err(|m| Self::error(name, m)),
        }
    }

    /// A duration that must not be zero: an interval of zero would poll or
    /// probe without pause.
    pub fn positive_duration(
        &self,
        name: &str,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        let value = self.duration(name, default)?;
        if value.is_zero() {
            return Err(Self::error(name, "must be longer than zero, e.g. 1m"));
        }
        Ok(value)
    }

    /// A comma-separated list of durations, e.g. `5s,30s,2m`.
    pub fn duration_list(
        &self,
        name: &str,
        default: &[Duration],
    ) -> Result<Vec<Duration>, ConfigError> {
        match self.raw(name) {
            None => Ok(default.to_vec()),
            Some(v) => v
                .split(',')
                .map(|part| parse_duration(part.trim()).map_err(|m| Self::error(name, m)))
                .collect(),
        }
    }

    /// A comma-separated list of secrets; empty entries are ignored so that a
    /// trailing comma during a rotation does not create an empty secret.
    pub fn secrets(&self, name: &str) -> Vec<Secret> {
        self.raw(name)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(Secret::new)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A required secret.
    pub fn required_secret(&self, name: &str) -> Result<Secret, ConfigError> {
        self.required(name).map(Secret::new)
    }
}

/// Parses `250ms`, `30s`, `5m`, `2h`, `1d`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let expected = || format!("expected a duration such as 30s, 5m, 1h or 1d, got {text:?}");
    let n: u64 = number.parse().map_err(|_| expected())?;
    let seconds = match unit.trim() {
        "ms" => return Ok(Duration::from_millis(n)),
        "" | "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(expected()),
    };
    Ok(Duration::from_secs(n.saturating_mul(seconds)))
}

/// Formats a duration the way [`parse_duration`] reads it (`90s` → `90s`,
/// `300s` → `5m`), used for queue names and logs.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    match s {
        0 => "0s".to_owned(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// A secret value (token, HMAC key, password). Its `Debug` and `Display`
/// never show the value, so a configuration struct can be logged safely.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call sites that use it are easy to audit.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A connection URL that may carry a password: `Debug` shows it with the
/// password hidden (see [`redact_url`]).
#[derive(Clone)]
pub struct SecretUrl(Secret);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(Secret::new(url))
    }

    pub fn expose(&self) -> &str {
        self.0.expose()
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(self.0.expose()))
    }
}

/// Hides the password of a connection URL (`amqp://user:pw@host` →
/// `amqp://user:***@host`) so that URLs can be logged.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match (authority.rfind('@'), authority.find(':')) {
        (Some(at), Some(colon)) if colon < at => format!(
            "{}{}:***{}",
            &url[..scheme_end + 3],
            &authority[..colon],
            &rest[at..]
        ),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_every_documented_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7_200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
    }

    #[test]
    fn a_bad_duration_names_the_variable_and_the_value() {
        let env = Env::default().with("CALLSYNC_FOLLOW_UP_DUE", "tomorrow");
        let err = env
            .duration("CALLSYNC_FOLLOW_UP_DUE", Duration::from_secs(1))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "CALLSYNC_FOLLOW_UP_DUE: expected a duration such as 30s, 5m, 1h or 1d, got \"tomorrow\""
        );
    }

    #[test]
    fn a_duration_that_must_be_positive_refuses_zero_and_keeps_its_default() {
        let env = Env::default().with("CALLSYNC_RECONCILE_EVERY", "0s");
        let err = env
            .positive_duration("CALLSYNC_RECONCILE_EVERY", Duration::from_secs(60))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "CALLSYNC_RECONCILE_EVERY: must be longer than zero, e.g. 1m"
        );
        assert_eq!(
            env.positive_duration("CALLSYNC_PAUSE_PROBE_MAX", Duration::from_secs(60)),
            Ok(Duration::from_secs(60))
        );
    }

    #[test]
    fn durations_format_back_to_the_shortest_unit() {
        assert_eq!(format_duration(Duration::from_secs(5)), "5s");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
        assert_eq!(format_duration(Duration::from_secs(3_600)), "1h");
        assert_eq!(format_duration(Duration::from_millis(1_500)), "1500ms");
    }

    #[test]
    fn secrets_are_split_on_commas_and_kept_verbatim() {
        let env = Env::default().with("CALLSYNC_VOICEDOCK_SECRET", "0123, [new] ,");
        let secrets = env.secrets("CALLSYNC_VOICEDOCK_SECRET");
        let exposed: Vec<_> = secrets.iter().map(Secret::expose).collect();
        assert_eq!(exposed, ["0123", "[new]"]);
    }

    #[test]
    fn a_secret_never_shows_in_debug_output() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?} {secret}"), "[redacted] [redacted]");
    }

    #[test]
    fn an_empty_value_counts_as_unset() {
        let env = Env::default().with("CALLSYNC_CRM", "  ");
        assert_eq!(
            env.required("CALLSYNC_CRM").unwrap_err().to_string(),
            "CALLSYNC_CRM: is required but not set"
        );
    }

    #[test]
    fn a_bad_number_names_the_variable() {
        let env = Env::default().with("CALLSYNC_PREFETCH", "many");
        let err = env
            .parse::<u16>("CALLSYNC_PREFETCH", 16, "a whole number")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "CALLSYNC_PREFETCH: expected a whole number, got \"many\""
        );
    }

    #[test]
    fn booleans_accept_common_spellings_and_refuse_others() {
        let env = Env::default()
            .with("CALLSYNC_A", "yes")
            .with("CALLSYNC_B", "0")
            .with("CALLSYNC_C", "maybe");
        assert_eq!(env.bool("CALLSYNC_A", false), Ok(true));
        assert_eq!(env.bool("CALLSYNC_B", true), Ok(false));
        assert!(env.bool("CALLSYNC_C", false).is_err());
        assert_eq!(env.bool("CALLSYNC_D", true), Ok(true));
    }

    #[test]
    fn url_passwords_are_redacted() {
        assert_eq!(
            redact_url("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/callsync"),
            "postgres://postgres@127.0.0.1/callsync"
        );
    }
}
