//! The HTTP client every platform's list API is called with: its key, a
//! timeout, and the patience a rate-limited or briefly failing API needs.
//!
//! A 429 is honoured: the client waits what `Retry-After` says (or backs
//! off when it says nothing) and asks again, up to [`RATE_LIMITED_TRIES`]
//! times. A 5xx, a timeout or a refused connection is tried again with
//! backoff up to [`UNAVAILABLE_TRIES`] times. Past that the round stops
//! with a transient error; its checkpoint keeps what it had done.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use callsync_shared::Source;
use reqwest::{RequestBuilder, StatusCode};
use serde_json::Value;
use time::OffsetDateTime;

use super::PlatformConfig;
use crate::crm::answer::{excerpt, parse_retry_after};

/// How many 429s in a row one request outlasts.
pub const RATE_LIMITED_TRIES: usize = 8;
/// How many failures (5xx, timeout, no connection) in a row one request outlasts.
pub const UNAVAILABLE_TRIES: usize = 4;
/// The longest wait a `Retry-After` is honoured with; a longer one ends the
/// round, which the next one resumes.
const LONGEST_WAIT: Duration = Duration::from_secs(120);

/// How the platform wants its API key.
#[derive(Debug, Clone, Copy)]
pub enum Auth {
    /// `Authorization: Bearer <key>` (Vapi, Retell).
    Bearer,
    /// The key alone in a header (ElevenLabs `xi-api-key`, Bland `authorization`).
    Header(&'static str),
}

/// Why a platform request failed.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("{platform} refused the API key ({status}): check {var}")]
    Unauthorized {
        platform: &'static str,
        status: u16,
        var: String,
    },
    #[error("{platform} still rate-limited the request after {tries} tries")]
    RateLimited {
        platform: &'static str,
        tries: usize,
    },
    #[error("{platform} is unavailable: {detail}")]
    Unavailable {
        platform: &'static str,
        detail: String,
    },
    #[error("{platform} refused the request ({status}): {detail}")]
    Refused {
        platform: &'static str,
        status: u16,
        detail: String,
    },
    #[error("{platform} answered something unexpected: {detail}")]
    Unexpected {
        platform: &'static str,
        detail: String,
    },
}

impl PlatformError {
    /// True when asking again later may succeed without anyone changing
    /// anything; false when an operator has to (a key, a URL).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::RateLimited { .. } | Self::Unavailable { .. })
    }
}

/// A platform's API: base URL, key, and the retry rules above.
#[derive(Debug, Clone)]
pub struct PlatformClient {
    http: reqwest::Client,
    source: Source,
    base: String,
    key: String,
    auth: Auth,
    page_size: u32,
}

impl PlatformClient {
    pub fn new(
        config: &PlatformConfig,
        auth: Auth,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(timeout)
                .user_agent(concat!("callsync/", env!("CARGO_PKG_VERSION")))
                .build()?,
            source: config.source,
            base: config.api_url.clone(),
            key: config.api_key.expose().to_owned(),
            auth,
            page_size: config.page_size,
        })
    }

    pub fn source(&self) -> Source {
        self.source
    }

    /// How many calls to ask for per list request.
    pub fn page_size(&self) -> u32 {
        self.page_size
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.authorised(self.http.get(format!("{}{path}", self.base)))
    }

    pub fn post(&self, path: &str) -> RequestBuilder {
        self.authorised(self.http.post(format!("{}{path}", self.base)))
    }

    fn authorised(&self, request: RequestBuilder) -> RequestBuilder {
        match self.auth {
            Auth::Bearer => request.bearer_auth(&self.key),
            Auth::Header(name) => request.header(name, &self.key),
        }
    }

    /// The JSON body a list request answers (`request` is built anew for
    /// each try).
    pub async fn list(
        &self,
        operation: &'static str,
        request: impl Fn() -> RequestBuilder,
    ) -> Result<Value, PlatformError> {
        Ok(self
            .json(operation, request, false)
            .await?
            .unwrap_or_default())
    }

    /// The call at `path`; `None` when the platform does not have it (404).
    pub async fn fetch(
        &self,
        operation: &'static str,
        path: &str,
    ) -> Result<Option<Value>, PlatformError> {
        self.json(operation, || self.get(path), true).await
    }

    /// The platform answered something callsync cannot read.
    pub fn unexpected(&self, detail: impl Into<String>) -> PlatformError {
        PlatformError::Unexpected {
            platform: self.source.platform(),
            detail: detail.into(),
        }
    }

    /// Sends `request` (built anew for each try) and returns its JSON body,
    /// or `None` for a 404 when `missing_ok`.
    async fn json(
        &self,
        operation: &'static str,
        request: impl Fn() -> RequestBuilder,
        missing_ok: bool,
    ) -> Result<Option<Value>, PlatformError> {
        let platform = self.source.platform();
        let mut rate_limited = 0;
        let mut unavailable = 0;
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(500))
            .with_max_delay(Duration::from_secs(30))
            .with_jitter()
            .without_max_times()
            .build();
        loop {
            let started = std::time::Instant::now();
            let outcome = request().send().await;
            let status = outcome.as_ref().map_or(0, |r| r.status().as_u16());
            metrics::histogram!(
                "callsync_reconcile_request_seconds",
                "source" => self.source.as_str(),
                "operation" => operation,
            )
            .record(started.elapsed().as_secs_f64());
            let failure = match outcome {
                Ok(response) if response.status().is_success() => {
                    return response.json::<Value>().await.map(Some).map_err(|e| {
                        PlatformError::Unexpected {
                            platform,
                            detail: format!("{operation}: the body is not JSON ({e})"),
                        }
                    });
                }
                Ok(response) if missing_ok && response.status() == StatusCode::NOT_FOUND => {
                    return Ok(None);
                }
                Ok(response) if response.status() == StatusCode::TOO_MANY_REQUESTS => {
                    rate_limited += 1;
                    metrics::counter!("callsync_reconcile_rate_limited_total", "source" => self.source.as_str())
                        .increment(1);
                    if rate_limited >= RATE_LIMITED_TRIES {
                        return Err(PlatformError::RateLimited {
                            platform,
                            tries: rate_limited,
                        });
                    }
                    let said = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| parse_retry_after(v, OffsetDateTime::now_utc()));
                    let wait = said
                        .or_else(|| backoff.next())
                        .unwrap_or(Duration::from_secs(1));
                    if wait > LONGEST_WAIT {
                        return Err(PlatformError::RateLimited {
                            platform,
                            tries: rate_limited,
                        });
                    }
                    tracing::info!(source = %self.source, operation, wait = ?wait, "platform API rate-limited the request; waiting");
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Ok(response) if response.status().is_server_error() => {
                    format!("{operation}: {status}")
                }
                Ok(response) => {
                    let code = response.status();
                    let body = response.text().await.unwrap_or_default();
                    return Err(match code {
                        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                            PlatformError::Unauthorized {
                                platform,
                                status: code.as_u16(),
                                var: self.source.var("API_KEY"),
                            }
                        }
                        _ => PlatformError::Refused {
                            platform,
                            status: code.as_u16(),
                            detail: format!("{operation}: {}", excerpt(body)),
                        },
                    });
                }
                Err(e) => format!("{operation}: {e}"),
            };
            unavailable += 1;
            if unavailable >= UNAVAILABLE_TRIES {
                return Err(PlatformError::Unavailable {
                    platform,
                    detail: failure,
                });
            }
            let wait = backoff.next().unwrap_or(Duration::from_secs(1));
            tracing::warn!(source = %self.source, error = %failure, wait = ?wait, "platform API failed; trying again");
            tokio::time::sleep(wait).await;
        }
    }
}
