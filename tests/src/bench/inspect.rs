//! Scenario 11: what ingest's read of a body costs. Ingest reads a final
//! report's event type and call id (`sources::inspect`), which parses the
//! whole body but builds only the values on those paths; the baseline,
//! measured in the same run, is what it did before: the whole body as a
//! JSON tree, then the same reading of it.
//!
//! Each source is measured on its largest documented report, and on that
//! report carrying a transcript of 120 turns (about 24 KB, a ten-minute
//! call) where its platform puts one. In-process, one thread, no I/O: this
//! is the CPU cost alone, alternated in batches, the median batch kept.

use std::hint::black_box;
use std::time::Instant;

use callsync_shared::Source;
use callsync_shared::sources::{Body, inspect};
use serde::Serialize;
use serde_json::{Value, json};

use super::per_source::fixture_of;
use super::{Options, Spread};

#[derive(Debug, Clone, Serialize)]
pub struct InspectRow {
    pub source: Source,
    /// The fixture, and whether a transcript was added.
    pub body: String,
    pub bytes: usize,
    /// Microseconds per body: the whole tree then `inspect`, and ingest's.
    pub whole_micros: f64,
    pub skimmed_micros: f64,
}

/// Where a platform's report carries its transcript turns, as a JSON
/// pointer to the array; `None` when it sends a link instead (Postcall's
/// `transcriptUri`).
fn transcript_at(source: Source) -> Option<&'static str> {
    match source {
        Source::Voicedock | Source::Vapi => Some("/message/artifact/messages"),
        Source::Retell => Some("/call/transcript_object"),
        Source::Elevenlabs => Some("/data/transcript"),
        Source::Bland => Some("/transcripts"),
        Source::Postcall => None,
    }
}

/// 120 turns of a conversation, each as the platforms write one.
fn turns() -> Value {
    Value::Array(
        (0..120)
            .map(|i| {
                json!({
                    "role": if i % 2 == 0 { "assistant" } else { "user" },
                    "message": format!("Turn {i}: I'd like to move the cleaning appointment to next week, in the morning if that works."),
                    "time": 1_767_261_600_000_i64 + i * 5_000,
                    "endTime": 1_767_261_604_000_i64 + i * 5_000,
                    "secondsFromStart": i as f64 * 5.0,
                    "duration": 4_000,
                })
            })
            .collect(),
    )
}

/// `body` with `turns` at `pointer`, the objects on the way made if missing.
fn with_transcript(body: &[u8], pointer: &str) -> anyhow::Result<Vec<u8>> {
    let mut value: Value = serde_json::from_slice(body)?;
    let mut slot = &mut value;
    for key in pointer.trim_start_matches('/').split('/') {
        let Value::Object(map) = slot else {
            anyhow::bail!("{pointer} goes through a value that is not an object");
        };
        slot = map.entry(key.to_owned()).or_insert_with(|| json!({}));
    }
    *slot = turns();
    Ok(serde_json::to_vec(&value)?)
}

/// What ingest did before: the whole tree, then the source's reading.
fn inspect_whole(source: Source, body: &[u8]) -> bool {
    serde_json::from_slice::<Body>(body)
        .ok()
        .is_some_and(|tree| (source.provider().inspect)(&tree).is_ok())
}

/// Microseconds per call of `f`, over `iterations` calls.
fn time(iterations: u64, mut f: impl FnMut() -> bool) -> f64 {
    let started = Instant::now();
    for _ in 0..iterations {
        black_box(f());
    }
    started.elapsed().as_secs_f64() * 1e6 / iterations.max(1) as f64
}

pub fn run(options: &Options) -> anyhow::Result<Vec<InspectRow>> {
    let mut rows = Vec::new();
    for source in Source::ALL {
        let (fixture, body) = fixture_of(source)?;
        let mut bodies = vec![(fixture.clone(), body.clone())];
        if let Some(pointer) = transcript_at(source) {
            bodies.push((
                format!("{fixture} + 120 turns"),
                with_transcript(&body, pointer)?,
            ));
        }
        for (name, body) in bodies {
            // Both readings must agree before either is timed.
            anyhow::ensure!(
                inspect(source, &body).is_ok() && inspect_whole(source, &body),
                "{name} is not read as a report by {source}"
            );
            let iterations = (options.verify_iterations / 10).max(10);
            let (mut whole, mut skimmed) = (Vec::new(), Vec::new());
            for _ in 0..options.verify_batches.max(1) {
                whole.push(time(iterations, || inspect_whole(source, black_box(&body))));
                skimmed.push(time(iterations, || {
                    inspect(source, black_box(&body)).is_ok()
                }));
            }
            rows.push(InspectRow {
                source,
                body: name,
                bytes: body.len(),
                whole_micros: Spread::of(whole).median,
                skimmed_micros: Spread::of(skimmed).median,
            });
        }
    }
    Ok(rows)
}

pub fn render(rows: &[InspectRow]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "\n| reading a body (ingest) | bytes | whole tree µs | skimmed µs | skimmed / whole |\n|---|---:|---:|---:|---:|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} {} | {} | {:.2} | {:.2} | {:.2} |\n",
            r.source,
            r.body,
            r.bytes,
            r.whole_micros,
            r.skimmed_micros,
            r.skimmed_micros / r.whole_micros.max(1e-9)
        ));
    }
    out
}
