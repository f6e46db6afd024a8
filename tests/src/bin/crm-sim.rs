//! `crm-sim`: the CRM simulator as a standalone server, for demos
//! (`docker compose --profile demo up`) and manual runs.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `CRMSIM_ADDR` | `127.0.0.1:8090` | listen address |
//! | `CRMSIM_TOKEN` | `sim-token` | the bearer token it accepts |
//! | `CRMSIM_LATENCY` | `0ms` | added to every answer |
//! | `CRMSIM_RATE_LIMIT` | — | e.g. `190/10s` (429 with `Retry-After` beyond it) |
//! | `CRMSIM_SEARCH_RATE_LIMIT` | `5/1s` | the limit on HubSpot's search endpoints (429 `SECONDLY` without `Retry-After` beyond it) and Pipedrive's Search API (whose own limit is `10/2s`), or `off` |
//! | `CRMSIM_INDEX_LAG` | `0s` | how long new records stay invisible to search |
//! | `CRMSIM_ERROR_RATE` | `0` | probability of an injected 503 |
//! | `CRMSIM_RESET_RATE` | `0` | probability of "applied, then connection reset" |
//!
//! `GET /_sim/state` returns every record and the request counters.

use std::net::SocketAddr;
use std::time::Duration;

use callsync_shared::config::{ConfigError, Env};
use callsync_tests::sim::{CrmSim, FaultRates, RateLimit, SimConfig};

fn config(env: &Env) -> Result<(SocketAddr, SimConfig), ConfigError> {
    let addr = env.parse(
        "CRMSIM_ADDR",
        SocketAddr::from(([127, 0, 0, 1], 8090)),
        "an address such as 0.0.0.0:8090",
    )?;
    let rate_limit = match env.raw("CRMSIM_RATE_LIMIT") {
        None => None,
        Some(text) => Some(text.parse::<RateLimit>().map_err(|message| ConfigError {
            var: "CRMSIM_RATE_LIMIT".to_owned(),
            message,
        })?),
    };
    // HubSpot's own limit by default, so that demos meet it as production does.
    let search_rate_limit = match env.string("CRMSIM_SEARCH_RATE_LIMIT", "5/1s").as_str() {
        "off" => None,
        text => Some(RateLimit {
            // HubSpot sends no Retry-After on search refusals.
            retry_after_secs: None,
            ..text.parse::<RateLimit>().map_err(|message| ConfigError {
                var: "CRMSIM_SEARCH_RATE_LIMIT".to_owned(),
                message: format!("{message}, or off"),
            })?
        }),
    };
    Ok((
        addr,
        SimConfig {
            token: env.string("CRMSIM_TOKEN", "sim-token"),
            latency: env.duration("CRMSIM_LATENCY", Duration::ZERO)?,
            rate_limit,
            search_rate_limit,
            index_lag: env.duration("CRMSIM_INDEX_LAG", Duration::ZERO)?,
            faults: FaultRates {
                server_error: env.parse("CRMSIM_ERROR_RATE", 0.0, "a probability from 0 to 1")?,
                reset_after_apply: env.parse(
                    "CRMSIM_RESET_RATE",
                    0.0,
                    "a probability from 0 to 1",
                )?,
                ..FaultRates::default()
            },
            seed: env.parse("CRMSIM_SEED", 42, "a whole number")?,
        },
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let env = Env::from_pairs(std::env::vars().filter(|(k, _)| k.starts_with("CRMSIM_")));
    let (addr, config) = match config(&env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("crm-sim: configuration error: {e}");
            std::process::exit(2);
        }
    };
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        callsync_shared::health::exit_with_probe(addr.port(), "/_sim/state").await;
    }
    let sim = CrmSim::start(addr, config).await?;
    tracing::info!(addr = %sim.addr(), "crm-sim (HubSpot mode) listening; state at /_sim/state");
    callsync_shared::shutdown::signal().await;
    Ok(())
}
