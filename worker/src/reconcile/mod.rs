//! Reconciliation: finding calls whose webhook never arrived.
//!
//! Webhooks get lost (most platforms never retry one, and a deploy or a
//! firewall change during a busy hour loses every call in it), but each
//! platform keeps a list of its calls. A [`Platform`] lists the finished
//! calls of a time window and turns each one into the body its webhook
//! would have carried, so the source's own parser reads it and the CRM
//! marker stays `callsync:<source>:<call id>`. A [`round`] walks the
//! list page by page, asks the ledger which calls it already knows, and
//! publishes the others to the calls queue with confirms, exactly as ingest
//! would. From there the worker's de-duplication makes a late webhook and a
//! reconciled copy of the same call one effect.
//!
//! Two ways in: `callsync-worker backfill` (one window, on demand) and the
//! [`schedule`] inside the worker (every `CALLSYNC_RECONCILE_EVERY`, one
//! replica at a time, checkpointed). Adding a platform is one file with its
//! [`Api`] and one line in `APIS`; a source without a list API needs
//! nothing here.

pub mod backfill;
mod bland;
mod elevenlabs;
pub mod http;
mod outbox;
mod retell;
pub mod round;
pub mod schedule;
pub mod state;
mod vapi;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use callsync_shared::Source;
use callsync_shared::config::{ConfigError, Env, Secret};
use callsync_shared::time::from_unix_ms;
use time::OffsetDateTime;

pub use self::http::{PlatformClient, PlatformError};
pub use self::outbox::{APP_ID, Outbox};

/// The calls a round asks for: those started (or created) in `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: OffsetDateTime,
    pub end: OffsetDateTime,
}

/// One call as the platform's list shows it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub call_id: String,
    /// Whether the platform is done with the call: ended *and* analysed
    /// (Retell's `call_analysis`, ElevenLabs' `done`). A call that is not is
    /// left for a later round.
    pub finished: bool,
    /// When the call ended, if the list says.
    pub ended_at: Option<OffsetDateTime>,
    /// The listed object, for platforms whose list holds the whole call.
    pub item: serde_json::Value,
}

/// One page of a platform's list.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub calls: Vec<Listed>,
    /// Where the next page starts; `None` on the last page. Opaque to the
    /// round; checkpointed between pages.
    pub next: Option<String>,
}

/// A platform's call-list API.
#[async_trait]
pub trait Platform: Send + Sync + fmt::Debug {
    fn source(&self) -> Source;

    /// One page of the calls in `window`, from `cursor` (`None`: the first).
    async fn page(&self, window: &Window, cursor: Option<&str>) -> Result<Page, PlatformError>;

    /// The webhook body the platform would have sent for `call`, fetching
    /// the whole call if the list holds only part of it; `None` when the
    /// call turns out not to be finished after all.
    async fn report(&self, call: &Listed) -> Result<Option<Vec<u8>>, PlatformError>;
}

/// What callsync knows of a platform's call-list API.
#[derive(Debug)]
pub struct Api {
    pub source: Source,
    /// `CALLSYNC_<SOURCE>_API_URL` when unset.
    pub default_url: &'static str,
    pub auth: http::Auth,
    /// The most calls one list request may ask for.
    pub max_page_size: u32,
    pub build: fn(PlatformClient) -> Arc<dyn Platform>,
}

/// Every platform that documents a way to list past calls, one line each;
/// a source whose platform has none is simply not here.
const APIS: [&Api; 4] = [&vapi::API, &retell::API, &elevenlabs::API, &bland::API];

/// The call-list API of `source`, if its platform documents one.
pub fn api(source: Source) -> Option<&'static Api> {
    APIS.into_iter().find(|api| api.source == source)
}

/// A platform callsync may poll: `CALLSYNC_<SOURCE>_API_KEY` is set.
#[derive(Debug, Clone)]
pub struct PlatformConfig {
    pub source: Source,
    pub api: &'static Api,
    pub api_key: Secret,
    pub api_url: String,
    /// Calls asked for per list request (`CALLSYNC_RECONCILE_PAGE_SIZE`,
    /// capped at the platform's maximum).
    pub page_size: u32,
}

/// `CALLSYNC_RECONCILE_PAGE_SIZE` when unset: every platform accepts it.
pub const DEFAULT_PAGE_SIZE: u32 = 100;

impl PlatformConfig {
    /// The platform of `source`, if its API key is configured. Setting a key
    /// for a source without a list API is a mistake worth stopping for.
    pub fn from_env(env: &Env, source: Source) -> Result<Option<Self>, ConfigError> {
        let key_var = source.var("API_KEY");
        let Some(key) = env.raw(&key_var).filter(|k| !k.trim().is_empty()) else {
            return Ok(None);
        };
        let Some(api) = api(source) else {
            return Err(ConfigError {
                var: key_var,
                message: format!(
                    "{} documents no API to list past calls, so its calls cannot be reconciled; unset it",
                    source.platform()
                ),
            });
        };
        let url_var = source.var("API_URL");
        let api_url = env.string(&url_var, api.default_url);
        if !(api_url.starts_with("http://") || api_url.starts_with("https://")) {
            return Err(ConfigError {
                var: url_var,
                message: format!("expected an http(s) URL such as {}", api.default_url),
            });
        }
        let page_size: u32 = env.parse(
            "CALLSYNC_RECONCILE_PAGE_SIZE",
            DEFAULT_PAGE_SIZE,
            "a whole number from 1",
        )?;
        if page_size == 0 {
            return Err(ConfigError {
                var: "CALLSYNC_RECONCILE_PAGE_SIZE".to_owned(),
                message: "must be at least 1".to_owned(),
            });
        }
        // A comma-separated list is a rotation (Retell's webhooks are
        // verified with the API key, and ingest reads the same variable):
        // the first key is the current one.
        let key = key
            .split(',')
            .map(str::trim)
            .find(|k| !k.is_empty())
            .unwrap_or_default();
        Ok(Some(Self {
            source,
            api,
            api_key: Secret::new(key),
            api_url: api_url.trim_end_matches('/').to_owned(),
            page_size: page_size.min(api.max_page_size),
        }))
    }

    /// The platform's client.
    pub fn build(&self, timeout: Duration) -> Result<Arc<dyn Platform>, reqwest::Error> {
        let client = PlatformClient::new(self, self.api.auth, timeout)?;
        Ok((self.api.build)(client))
    }
}

/// The scheduled reconciler's settings.
#[derive(Debug, Clone)]
pub struct ReconcileConfig {
    /// The platforms with an API key configured; empty: no reconciler.
    pub platforms: Vec<PlatformConfig>,
    /// How often a round starts (`CALLSYNC_RECONCILE_EVERY`).
    pub every: Duration,
    /// How far back a round looks (`CALLSYNC_RECONCILE_LOOKBACK`).
    pub lookback: Duration,
    /// How long after its end a call is left to its webhook
    /// (`CALLSYNC_RECONCILE_GRACE`).
    pub grace: Duration,
}

/// How long a platform request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl ReconcileConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let mut platforms = Vec::new();
        for source in Source::ALL {
            if let Some(platform) = PlatformConfig::from_env(env, source)? {
                platforms.push(platform);
            }
        }
        let every =
            env.positive_duration("CALLSYNC_RECONCILE_EVERY", Duration::from_secs(15 * 60))?;
        let lookback =
            env.positive_duration("CALLSYNC_RECONCILE_LOOKBACK", Duration::from_secs(2 * 3600))?;
        let grace = env.duration("CALLSYNC_RECONCILE_GRACE", Duration::from_secs(10 * 60))?;
        if lookback <= grace {
            return Err(ConfigError {
                var: "CALLSYNC_RECONCILE_LOOKBACK".to_owned(),
                message: format!(
                    "must be longer than CALLSYNC_RECONCILE_GRACE ({}), or no call is ever old enough to reconcile",
                    callsync_shared::config::format_duration(grace)
                ),
            });
        }
        Ok(Self {
            platforms,
            every,
            lookback,
            grace,
        })
    }
}

/// The cursor of the next page of a list answered `{…, "has_more": bool,
/// "<field>": cursor}` (Retell, ElevenLabs): `None` on the last page; an
/// error when the platform says there is more but gives no cursor, since
/// stopping there would leave calls unlisted.
fn cursor_after(
    body: &serde_json::Value,
    field: &str,
    platform: &'static str,
) -> Result<Option<String>, PlatformError> {
    let more = body.get("has_more").and_then(serde_json::Value::as_bool) == Some(true);
    match body.get(field).and_then(serde_json::Value::as_str) {
        Some(cursor) if more => Ok(Some(cursor.to_owned())),
        None if more => Err(PlatformError::Unexpected {
            platform,
            detail: format!("the list has more but gave no {field}"),
        }),
        _ => Ok(None),
    }
}

/// Unix milliseconds as ISO 8601 in UTC, to the millisecond.
fn iso_millis(ms: i64) -> String {
    let at = from_unix_ms(ms).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    at.format(&format).unwrap_or_default()
}

/// An RFC 3339 timestamp.
fn rfc3339(value: &serde_json::Value) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(
        value.as_str()?,
        &time::format_description::well_known::Rfc3339,
    )
    .ok()
}

/// Unix milliseconds, written as an integer or a float.
fn from_millis(value: &serde_json::Value) -> Option<OffsetDateTime> {
    from_unix_ms(
        value
            .as_i64()
            .or_else(|| value.as_f64().map(|f| f as i64))?,
    )
}

/// A body as the worker will read it: the source's own parser (tests).
#[cfg(test)]
fn read_back(source: Source, body: &[u8]) -> Box<callsync_shared::CallReport> {
    let ctx = callsync_shared::sources::ParseContext {
        received_at: OffsetDateTime::now_utc(),
        region: callsync_shared::Region::US,
    };
    match callsync_shared::sources::parse(source, body, &ctx) {
        Ok(callsync_shared::sources::Parsed::Report(report)) => report,
        other => panic!("not a report: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use callsync_shared::time::unix_ms;

    use super::*;

    #[test]
    fn every_source_either_has_a_list_api_or_refuses_an_api_key() {
        for source in Source::ALL {
            let env = Env::default().with(source.var("API_KEY"), "key");
            let config = PlatformConfig::from_env(&env, source);
            match api(source) {
                Some(api) => {
                    let config = config.unwrap().unwrap();
                    assert_eq!(config.api_url, api.default_url.trim_end_matches('/'));
                }
                None => {
                    let error = config.unwrap_err();
                    assert_eq!(error.var, source.var("API_KEY"));
                    assert!(
                        error.message.contains("no API to list past calls"),
                        "{error}"
                    );
                }
            }
        }
    }

    #[test]
    fn each_list_api_belongs_to_a_source_of_its_own() {
        let mut sources: Vec<Source> = APIS.iter().map(|api| api.source).collect();
        sources.sort();
        sources.dedup();
        assert_eq!(sources.len(), APIS.len());
    }

    #[test]
    fn no_api_key_means_no_reconciler_and_the_defaults_are_the_documented_ones() {
        let config = ReconcileConfig::from_env(&Env::default()).unwrap();
        assert!(config.platforms.is_empty());
        assert_eq!(config.every, Duration::from_secs(900));
        assert_eq!(config.lookback, Duration::from_secs(7200));
        assert_eq!(config.grace, Duration::from_secs(600));
    }

    #[test]
    fn a_lookback_inside_the_grace_period_is_refused() {
        let env = Env::default()
            .with("CALLSYNC_RECONCILE_LOOKBACK", "5m")
            .with("CALLSYNC_RECONCILE_GRACE", "10m");
        let error = ReconcileConfig::from_env(&env).unwrap_err();
        assert_eq!(error.var, "CALLSYNC_RECONCILE_LOOKBACK");
    }

    #[test]
    fn times_are_written_and_read_to_the_millisecond() {
        let at = OffsetDateTime::from_unix_timestamp_nanos(1_754_042_500_123_456_789).unwrap();
        assert_eq!(unix_ms(at), 1_754_042_500_123);
        assert_eq!(iso_millis(unix_ms(at)), "2025-08-01T10:01:40.123Z");
        let back = rfc3339(&serde_json::json!(iso_millis(unix_ms(at)))).unwrap();
        assert_eq!(unix_ms(back), 1_754_042_500_123);
        assert_eq!(
            from_millis(&serde_json::json!(1_754_042_500_123_i64)),
            Some(back)
        );
    }

    #[test]
    fn an_api_url_must_be_http() {
        let env = Env::default()
            .with("CALLSYNC_VAPI_API_KEY", "key")
            .with("CALLSYNC_VAPI_API_URL", "api.vapi.ai");
        let error = PlatformConfig::from_env(&env, Source::Vapi).unwrap_err();
        assert_eq!(error.var, "CALLSYNC_VAPI_API_URL");
    }
}
