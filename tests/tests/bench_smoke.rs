//! The benchmark at tiny sizes: it runs, and its figures are sane and
//! non-zero. The full run is `cargo run --release -p callsync-tests --bin bench`
//! (README, Performance); no speed is asserted here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use callsync_tests::harness::{binary, require_services};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_benchmark_runs_at_smoke_size_and_reports_sane_figures() {
    require_services().await;
    let out = std::env::temp_dir().join(format!("callsync-bench-{}.json", uuid::Uuid::new_v4()));
    let output = tokio::process::Command::new(binary("bench"))
        .args(["--smoke", "--out", out.to_str().unwrap()])
        .output()
        .await
        .expect("the bench binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "bench failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("| (d) callsync-ingest |"), "{stdout}");

    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let _ = std::fs::remove_file(&out);
    let ingest = report["ingest"].as_array().unwrap();
    assert_eq!(ingest.len(), 4, "variants (a) to (d)");
    for row in ingest {
        for cell in row["cells"].as_array().unwrap() {
            assert!(cell["accepted_per_sec"].as_f64().unwrap() > 0.0, "{row}");
            assert!(
                cell["p99_ms"].as_f64().unwrap() >= cell["p50_ms"].as_f64().unwrap(),
                "{row}"
            );
        }
    }
    let ratios = report["ratios"].as_array().unwrap();
    assert_eq!(ratios.len(), ingest[0]["cells"].as_array().unwrap().len());
    for ratio in ratios {
        assert_spread(&ratio["d_over_c"], ratio);
        assert_spread(&ratio["d_over_b"], ratio);
    }
    let workers = report["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 5);
    for w in workers {
        assert!(w["synced_per_sec"].as_f64().unwrap() > 0.0, "{w}");
        let per_call = w["crm_requests_per_call"].as_f64().unwrap();
        assert!((1.0..10.0).contains(&per_call), "{w}");
    }
    let rate = &report["rate_limit"];
    assert!(rate["crm_requests"].as_u64().unwrap() > 0);
    assert!(rate["time_over_minimum"].as_f64().unwrap() > 0.0);
    assert!(report["memory"]["ingest_peak_rss_mib"].as_f64().unwrap() > 1.0);
    assert!(report["memory"]["worker_peak_rss_mib"].as_f64().unwrap() > 1.0);
}

/// A median, minimum and maximum over the alternated pairs, each a real
/// ratio, in order, and one value per pair.
fn assert_spread(spread: &serde_json::Value, ratio: &serde_json::Value) {
    let field = |name: &str| spread[name].as_f64().unwrap_or(f64::NAN);
    let (median, min, max) = (field("median"), field("min"), field("max"));
    for value in [median, min, max] {
        assert!(value.is_finite() && value > 0.0, "{ratio}");
    }
    assert!(min <= median && median <= max, "{ratio}");
    let pairs = ratio["pairs"].as_u64().unwrap();
    assert!(pairs >= 2, "at least two pairs alternated: {ratio}");
    assert_eq!(
        spread["values"].as_array().unwrap().len() as u64,
        pairs,
        "{ratio}"
    );
}
