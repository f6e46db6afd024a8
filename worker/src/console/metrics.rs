//! The CRM request budget in use and the CRM's 429s, read from Prometheus
//! (the workers export them; each worker's counters are its own, so only
//! Prometheus has the sum). Shown on the overview when
//! `CALLSYNC_CONSOLE_PROMETHEUS_URL` is set.

use std::time::Duration;

use crate::crm::Rate;

/// What the overview shows of the CRM's budget.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Budget {
    /// CRM requests per second over the last 5 minutes, all workers.
    pub requests_per_second: f64,
    /// The share of the configured budget those requests use, if known.
    pub in_use: Option<f64>,
    /// 429 answers from the CRM in the last hour and day.
    pub rate_limited_hour: f64,
    pub rate_limited_day: f64,
    /// Requests a worker held back to stay within its share, last hour.
    pub throttled_hour: f64,
}

/// The queries, in the Prometheus HTTP API's query language.
pub const REQUESTS_PER_SECOND: &str = "sum(rate(callsync_worker_crm_request_seconds_count[5m]))";
pub const RATE_LIMITED_HOUR: &str = "sum(increase(callsync_worker_crm_rate_limited_total[1h]))";
pub const RATE_LIMITED_DAY: &str = "sum(increase(callsync_worker_crm_rate_limited_total[1d]))";
pub const THROTTLED_HOUR: &str = "sum(increase(callsync_worker_crm_throttled_seconds_count[1h]))";

/// Asks Prometheus (`base` is its address) for the budget figures.
pub async fn budget(
    client: &reqwest::Client,
    base: &str,
    rate: Option<Rate>,
) -> Result<Budget, String> {
    let requests_per_second = scalar(client, base, REQUESTS_PER_SECOND).await?;
    let in_use = rate.map(|r| requests_per_second / (f64::from(r.max) / r.window.as_secs_f64()));
    Ok(Budget {
        requests_per_second,
        in_use,
        rate_limited_hour: scalar(client, base, RATE_LIMITED_HOUR).await?,
        rate_limited_day: scalar(client, base, RATE_LIMITED_DAY).await?,
        throttled_hour: scalar(client, base, THROTTLED_HOUR).await?,
    })
}

/// An instant query whose answer is one number (an empty vector: no series
/// yet, which is zero).
async fn scalar(client: &reqwest::Client, base: &str, query: &str) -> Result<f64, String> {
    let answer = client
        .get(format!("{base}/api/v1/query"))
        .query(&[("query", query)])
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .map_err(|e| format!("Prometheus did not answer ({e})"))?;
    if !answer.status().is_success() {
        return Err(format!("Prometheus answered {}", answer.status()));
    }
    let body: serde_json::Value = answer
        .json()
        .await
        .map_err(|_| "Prometheus answered something that is not JSON".to_owned())?;
    parse(&body).ok_or_else(|| "Prometheus answered in an unexpected shape".to_owned())
}

/// `{"status":"success","data":{"resultType":"vector","result":[{"value":[<time>,"<number>"]}]}}`,
/// the shape the Prometheus HTTP API documents for an instant query.
fn parse(body: &serde_json::Value) -> Option<f64> {
    if body["status"] != "success" || body["data"]["resultType"] != "vector" {
        return None;
    }
    let result = body["data"]["result"].as_array()?;
    match result.first() {
        None => Some(0.0),
        Some(sample) => sample["value"][1]
            .as_str()?
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_instant_vector_is_read_and_no_series_is_zero() {
        let one = json!({"status": "success", "data": {"resultType": "vector",
            "result": [{"metric": {}, "value": [1_800_000_000.0, "4.5"]}]}});
        assert_eq!(parse(&one), Some(4.5));
        let none = json!({"status": "success", "data": {"resultType": "vector", "result": []}});
        assert_eq!(parse(&none), Some(0.0));
        let nan = json!({"status": "success", "data": {"resultType": "vector",
            "result": [{"metric": {}, "value": [1.0, "NaN"]}]}});
        assert_eq!(parse(&nan), None);
        assert_eq!(parse(&json!({"status": "error"})), None);
    }
}
