//! Load generators: HTTP with a fixed number of connections (the hyper
//! client inside reqwest, keep-alive), and bare AMQP publishes with confirms.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Channel, Confirmation};
use serde::Serialize;

/// What one or more load runs at the same concurrency measured.
#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    pub concurrency: usize,
    /// How many runs are pooled here (the alternated cells have several).
    pub runs: usize,
    pub accepted: u64,
    pub failed: u64,
    pub seconds: f64,
    pub accepted_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Measured {
    /// Pools runs: every latency counts once, and the rate is all accepted
    /// requests over all measured time.
    pub fn pooled(samples: &[Sample]) -> Self {
        let mut latencies: Vec<Duration> = samples
            .iter()
            .flat_map(|s| s.latencies.iter().copied())
            .collect();
        latencies.sort();
        let pick = |q: f64| -> f64 {
            if latencies.is_empty() {
                return 0.0;
            }
            let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
            latencies[i].as_secs_f64() * 1_000.0
        };
        let accepted = latencies.len() as u64;
        let seconds: f64 = samples.iter().map(|s| s.elapsed.as_secs_f64()).sum();
        Self {
            concurrency: samples.first().map_or(0, |s| s.concurrency),
            runs: samples.len(),
            accepted,
            failed: samples.iter().map(|s| s.failed).sum(),
            seconds,
            accepted_per_sec: accepted as f64 / seconds.max(1e-9),
            p50_ms: pick(0.50),
            p99_ms: pick(0.99),
        }
    }
}

/// One load run as it happened, kept whole so that runs can be pooled.
#[derive(Debug, Clone)]
pub struct Sample {
    pub concurrency: usize,
    pub latencies: Vec<Duration>,
    pub failed: u64,
    pub elapsed: Duration,
}

impl Sample {
    pub fn accepted_per_sec(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A request to repeat: URL, headers and body.
#[derive(Debug, Clone)]
pub struct Shot {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// `concurrency` connections sending `shot` back to back for `duration`
/// (after `warmup`, which is not measured). A 2xx counts as accepted.
pub async fn http(shot: &Shot, concurrency: usize, warmup: Duration, duration: Duration) -> Sample {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("HTTP client");
    let shot = Arc::new(shot.clone());
    let run = |client: reqwest::Client, shot: Arc<Shot>, until: Instant| async move {
        let mut latencies = Vec::new();
        let mut failed = 0u64;
        while Instant::now() < until {
            let mut request = client.post(&shot.url).body(shot.body.clone());
            for (k, v) in &shot.headers {
                request = request.header(*k, v);
            }
            let started = Instant::now();
            match request.send().await {
                Ok(r) if r.status().is_success() => {
                    let _ = r.bytes().await;
                    latencies.push(started.elapsed());
                }
                _ => failed += 1,
            }
        }
        (latencies, failed)
    };
    // The warm-up opens the connections and lets both sides settle.
    measured(concurrency, warmup, duration, move |until| {
        run(client.clone(), Arc::clone(&shot), until)
    })
    .await
}

/// `concurrency` publishes in flight on one confirm channel, each awaiting
/// its confirm, for `duration`.
pub async fn publish(
    channel: &Channel,
    exchange: &str,
    key: &str,
    body: &[u8],
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
) -> Sample {
    let run = |until: Instant| {
        let channel = channel.clone();
        let (exchange, key, body) = (exchange.to_owned(), key.to_owned(), body.to_vec());
        async move {
            let mut latencies = Vec::new();
            let mut failed = 0u64;
            while Instant::now() < until {
                let started = Instant::now();
                if confirmed_publish(&channel, &exchange, &key, &body).await {
                    latencies.push(started.elapsed());
                } else {
                    failed += 1;
                }
            }
            (latencies, failed)
        }
    };
    measured(concurrency, warmup, duration, run).await
}

/// Runs `concurrency` copies of `run` (a loop sending until the instant it
/// is given, returning its latencies and failures) for `warmup`, not
/// measured, then for `duration`, and pools the measured copies: the one
/// timing both load generators share, so HTTP and AMQP cells compare.
async fn measured<Fut>(
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
    run: impl Fn(Instant) -> Fut,
) -> Sample
where
    Fut: Future<Output = (Vec<Duration>, u64)> + Send + 'static,
{
    let until = Instant::now() + warmup;
    let warm: Vec<_> = (0..concurrency).map(|_| tokio::spawn(run(until))).collect();
    for w in warm {
        let _ = w.await;
    }
    let started = Instant::now();
    let until = started + duration;
    let tasks: Vec<_> = (0..concurrency).map(|_| tokio::spawn(run(until))).collect();
    let mut latencies = Vec::new();
    let mut failed = 0;
    for t in tasks {
        let (l, f) = t.await.expect("load task");
        latencies.extend(l);
        failed += f;
    }
    Sample {
        concurrency,
        latencies,
        failed,
        elapsed: started.elapsed(),
    }
}

/// Publishes `body` persistent and mandatory on a confirm channel and
/// waits for the broker: true when it was acknowledged and not returned,
/// the only outcome ingest answers 202 to. Shared by the publish load and
/// the bare-confirm baseline, so that both publish exactly as ingest does.
pub async fn confirmed_publish(channel: &Channel, exchange: &str, key: &str, body: &[u8]) -> bool {
    let confirmed = async {
        channel
            .basic_publish(
                exchange.into(),
                key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                body,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await?
            .await
    }
    .await;
    matches!(confirmed, Ok(Confirmation::Ack(None)))
}
