//! Scenario 5: each source's signature scheme against voicedock's. What
//! verifying one signed report costs with ingest's own verifier
//! ([`SourceAuth`], configured from the variables as ingest configures it),
//! over the platform's fullest report among the shared fixtures; and what
//! `callsync-ingest` accepts per second of each source's reports.
//!
//! Verification is pure CPU, so it is timed in-process with nothing else
//! running. Batches go round the sources (every source's first batch, then
//! every source's second, ...) so that whatever else the machine does weighs
//! on all alike, and each ratio to voicedock is taken within one round. The
//! same holds for the ingest cells.

use std::hint::black_box;
use std::time::Instant;

use anyhow::Context;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use callsync_ingest::auth::SourceAuth;
use callsync_shared::Source;
use callsync_shared::config::Env;
use callsync_shared::sources::{Envelope, inspect};
use callsync_shared::topology::Topology;
use serde::Serialize;

use super::load::{self, Measured, Shot};
use super::{Options, Spread, cell_times, purge, start_ingest, with_topology};
use crate::harness::fixtures_dir;
use crate::sources::{every_source_credentials, signed_headers};

/// One source's row.
#[derive(Debug, Clone, Serialize)]
pub struct SourceRow {
    pub source: Source,
    pub platform: &'static str,
    /// The fixture measured: the source's largest final report.
    pub fixture: String,
    pub body_bytes: usize,
    pub verify: Verification,
    /// `None` when the run measured verification only.
    pub ingest: Option<IngestBySource>,
}

/// The cost of one verification.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// Verifications per timed batch.
    pub iterations: u64,
    pub batches: usize,
    /// Verifications attempted and passed over all batches: a failed one
    /// fails the run, so these are equal in every report written.
    pub attempted: u64,
    pub verified: u64,
    /// Nanoseconds per verification, one value per batch.
    pub ns: Spread,
    /// Each batch's time over voicedock's in the same round.
    pub over_voicedock: Spread,
}

/// `callsync-ingest` (d) receiving this source's report.
#[derive(Debug, Clone, Serialize)]
pub struct IngestBySource {
    /// The runs pooled (latencies, failures, overall rate).
    pub pooled: Measured,
    /// Accepted per second, one value per round.
    pub accepted_per_sec: Spread,
    /// Each round's rate over voicedock's in the same round.
    pub over_voicedock: Spread,
}

/// What one source is measured with.
struct Subject {
    source: Source,
    fixture: String,
    body: Vec<u8>,
    auth: SourceAuth,
}

/// The fixture a source is measured on: the largest final report among
/// its platform's fixtures (`<source>_*.json`), so that a scheme that
/// hashes the body is measured on the longest body its platform sends.
pub fn fixture_of(source: Source) -> anyhow::Result<(String, Vec<u8>)> {
    let dir = fixtures_dir();
    let prefix = format!("{source}_");
    let mut largest: Option<(String, Vec<u8>)> = None;
    for entry in std::fs::read_dir(&dir).context("the shared fixtures")? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if !name.starts_with(&prefix) || !name.ends_with(".json") {
            continue;
        }
        let body = std::fs::read(dir.join(&name))?;
        let is_final = matches!(inspect(source, &body), Ok(Envelope::Final(_)));
        if is_final && largest.as_ref().is_none_or(|(_, b)| body.len() > b.len()) {
            largest = Some((name, body));
        }
    }
    largest.with_context(|| format!("no final report of {source} among the shared fixtures"))
}

/// Every registered source with its fixture and its verifier, configured
/// from the test credentials as ingest would be.
fn subjects() -> anyhow::Result<Vec<Subject>> {
    let env = Env::from_pairs(every_source_credentials());
    Source::ALL
        .into_iter()
        .map(|source| {
            let (fixture, body) = fixture_of(source)?;
            let auth = SourceAuth::from_env(&env, source)?;
            anyhow::ensure!(auth.is_enabled(), "{source} has no credential configured");
            Ok(Subject {
                source,
                fixture,
                body,
                auth,
            })
        })
        .collect()
}

/// Headers as a server receives them.
fn header_map(headers: Vec<(&str, String)>) -> anyhow::Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.insert(
            HeaderName::from_bytes(name.as_bytes())?,
            HeaderValue::from_str(&value)?,
        );
    }
    Ok(map)
}

/// Runs the scenario: verification always, ingest unless
/// `options.source_rounds` is zero.
pub async fn run(options: &Options) -> anyhow::Result<Vec<SourceRow>> {
    let (batches, iterations) = (options.verify_batches, options.verify_iterations);
    let verified =
        tokio::task::spawn_blocking(move || measure_verification(batches, iterations)).await??;
    let ingest = if options.source_rounds == 0 {
        None
    } else {
        Some(measure_ingest(options).await?)
    };
    Ok(verified
        .into_iter()
        .enumerate()
        .map(|(i, (subject, verify))| SourceRow {
            source: subject.source,
            platform: subject.source.platform(),
            fixture: subject.fixture,
            body_bytes: subject.body.len(),
            verify,
            ingest: ingest.as_ref().map(|rows| rows[i].clone()),
        })
        .collect())
}

fn measure_verification(
    batches: usize,
    iterations: u64,
) -> anyhow::Result<Vec<(Subject, Verification)>> {
    let subjects = subjects()?;
    // Nanoseconds per verification and verifications passed, by source, by round.
    let mut ns = vec![Vec::with_capacity(batches); subjects.len()];
    let mut verified = vec![0u64; subjects.len()];
    for _ in 0..batches {
        for (i, s) in subjects.iter().enumerate() {
            // Signed afresh each round, so that a long run stays inside
            // every scheme's replay window.
            let headers = header_map(signed_headers(s.source, &s.body))?;
            // Ingest reads the clock once per request, before verifying.
            let now = time::OffsetDateTime::now_utc();
            if let Err(e) = s.auth.verify(&headers, None, &s.body, now) {
                anyhow::bail!("{}: {} does not verify: {e}", s.source, s.fixture);
            }
            let started = Instant::now();
            let mut passed = 0;
            for _ in 0..iterations {
                let outcome =
                    black_box(&s.auth).verify(black_box(&headers), None, black_box(&s.body), now);
                passed += u64::from(outcome.is_ok());
            }
            let elapsed = started.elapsed();
            ns[i].push(elapsed.as_nanos() as f64 / iterations.max(1) as f64);
            verified[i] += passed;
        }
    }
    let attempted = iterations * batches as u64;
    let base = voicedock_index(&subjects)?;
    let rows = subjects
        .into_iter()
        .enumerate()
        .map(|(i, subject)| {
            let over = ns[i].iter().zip(&ns[base]).map(|(n, v)| n / v).collect();
            let verify = Verification {
                iterations,
                batches,
                attempted,
                verified: verified[i],
                ns: Spread::of(ns[i].clone()),
                over_voicedock: Spread::of(over),
            };
            (subject, verify)
        })
        .collect::<Vec<_>>();
    for (subject, verify) in &rows {
        anyhow::ensure!(
            verify.verified == verify.attempted,
            "{}: {} of {} verifications of {} passed",
            subject.source,
            verify.verified,
            verify.attempted,
            subject.fixture
        );
    }
    Ok(rows)
}

fn voicedock_index(subjects: &[Subject]) -> anyhow::Result<usize> {
    subjects
        .iter()
        .position(|s| s.source == Source::Voicedock)
        .context("voicedock, the baseline, is not registered")
}

/// `callsync-ingest` with every source configured, each source's report
/// sent in turn at one connection count, `source_rounds` times.
async fn measure_ingest(options: &Options) -> anyhow::Result<Vec<IngestBySource>> {
    with_topology(async |channel, topology| ingest_rounds(options, channel, topology).await).await
}

async fn ingest_rounds(
    options: &Options,
    channel: &lapin::Channel,
    topology: &Topology,
) -> anyhow::Result<Vec<IngestBySource>> {
    let subjects = subjects()?;
    let credentials: Vec<(String, String)> = every_source_credentials()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let (ingest, addr) = start_ingest(topology, &credentials).await?;
    let (warmup, duration) = cell_times(options);
    let connections = options.source_connections;
    let mut runs = vec![Vec::new(); subjects.len()];
    for _ in 0..options.source_rounds {
        for (i, s) in subjects.iter().enumerate() {
            let shot = Shot {
                url: format!("http://{addr}/webhooks/{}", s.source),
                headers: signed_headers(s.source, &s.body),
                body: s.body.clone(),
            };
            runs[i].push(load::http(&shot, connections, warmup, duration).await);
            purge(channel, &topology.calls_queue()).await;
        }
    }
    ingest.stop().await;
    let base = voicedock_index(&subjects)?;
    let rate =
        |i: usize| -> Vec<f64> { runs[i].iter().map(load::Sample::accepted_per_sec).collect() };
    Ok((0..subjects.len())
        .map(|i| {
            let over = rate(i)
                .iter()
                .zip(rate(base))
                .map(|(r, v)| r / v.max(1e-9))
                .collect();
            IngestBySource {
                pooled: Measured::pooled(&runs[i]),
                accepted_per_sec: Spread::of(rate(i)),
                over_voicedock: Spread::of(over),
            }
        })
        .collect())
}

/// The scenario's table.
pub fn render(rows: &[SourceRow]) -> String {
    let Some(first) = rows.first() else {
        return String::new();
    };
    let v = &first.verify;
    let mut out = format!(
        "\nSignature verification with ingest's verifier, {} batches of {} per source, alternated:\n\n| source | fixture | body bytes | ns per verification, median | min | max | ÷ voicedock, median | min | max |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n",
        v.batches, v.iterations
    );
    for r in rows {
        let (ns, over) = (&r.verify.ns, &r.verify.over_voicedock);
        out.push_str(&format!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} |\n",
            r.source,
            r.fixture,
            r.body_bytes,
            ns.median,
            ns.min,
            ns.max,
            over.median,
            over.min,
            over.max
        ));
    }
    if let Some(ingest) = &first.ingest {
        out.push_str(&format!(
            "\n(d) callsync-ingest per source, {} connections, {} rounds alternated:\n\n| source | accepted/s, median | min | max | ÷ voicedock, median | min | max | p99 ms | failed |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
            ingest.pooled.concurrency, ingest.pooled.runs
        ));
        for r in rows {
            if let Some(i) = &r.ingest {
                let (rate, over) = (&i.accepted_per_sec, &i.over_voicedock);
                out.push_str(&format!(
                    "| {} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} |\n",
                    r.source,
                    rate.median,
                    rate.min,
                    rate.max,
                    over.median,
                    over.min,
                    over.max,
                    i.pooled.p99_ms,
                    i.pooled.failed
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registered_source_has_a_final_report_among_the_fixtures() {
        for source in Source::ALL {
            let (name, body) = fixture_of(source).unwrap();
            assert!(name.starts_with(source.as_str()), "{source}: {name}");
            assert!(matches!(inspect(source, &body), Ok(Envelope::Final(_))));
        }
    }

    #[test]
    fn each_fixture_signed_with_the_test_credentials_passes_ingests_verifier() {
        for s in subjects().unwrap() {
            let headers = header_map(signed_headers(s.source, &s.body)).unwrap();
            let now = time::OffsetDateTime::now_utc();
            assert!(
                s.auth.verify(&headers, None, &s.body, now).is_ok(),
                "{}",
                s.source
            );
        }
    }

    /// So a verification that fails is counted as one: the timed loop
    /// counts outcomes, and a run with any failure is refused.
    #[test]
    fn each_fixture_signed_with_other_credentials_fails_ingests_verifier() {
        for s in subjects().unwrap() {
            let wrong = crate::sources::wrongly_signed_headers(s.source, &s.body);
            let headers = header_map(wrong).unwrap();
            let now = time::OffsetDateTime::now_utc();
            assert!(
                s.auth.verify(&headers, None, &s.body, now).is_err(),
                "{}",
                s.source
            );
        }
    }
}
