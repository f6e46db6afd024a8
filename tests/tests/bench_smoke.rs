//! The benchmark at tiny sizes: it runs, nothing is lost or refused, the
//! CRM holds what the calls must have made, and the CRM requests per call
//! are the design's. No speed is asserted (the machine is shared); the full
//! run is `cargo run --release -p callsync-tests --bin bench` (docs/performance.md).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use callsync_shared::Source;
use callsync_tests::harness::{binary, require_services};
use serde_json::Value;

/// A new caller with a flagged call: search the contact, create it with its
/// last-call fields, record the call, create the follow-up task.
const NEW_CONTACT_WITH_FOLLOW_UP: (&str, u64) = ("new contact + follow-up", 4);
/// A known caller, no follow-up: search the contact, record the call,
/// update the contact's last-call fields.
const KNOWN_CONTACT_NO_FOLLOW_UP: (&str, u64) = ("known contact, no follow-up", 3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_benchmark_at_smoke_size_loses_nothing_and_spends_the_designed_crm_requests_per_call() {
    require_services().await;
    let (stdout, report) = run_smoke().await;
    assert!(stdout.contains("| (d) callsync-ingest |"), "{stdout}");
    assert!(stdout.contains("(d)/(c) median"), "{stdout}");

    assert_eq!(
        report["scenarios"],
        serde_json::json!([
            "ingest",
            "workers",
            "rate-limit",
            "sources",
            "known-callers",
            "new-callers",
            "latency",
            "worker-memory",
            "mapping",
            "inspect"
        ])
    );
    check_ingest(&report);
    check_sources(&report["sources"]);
    check_workers(&report["workers"]);
    check_rate_limit(&report["rate_limit"]);
    check_known_callers(&report["known_callers"]);
    check_new_callers(&report["new_callers"]);
    check_latency(&report["latency"]);
    check_backlog_memory(&report["backlog_memory"]);
    check_mapping(&report["mapping"]);
    check_inspect(&report["inspect"]);
    assert!(
        stdout.contains("| CPU per webhook, all cells |"),
        "{stdout}"
    );
    assert!(stdout.contains("| reading a body (ingest) |"), "{stdout}");
    assert!(stdout.contains("÷ voicedock"), "{stdout}");
    assert!(
        stdout.contains("| known callers in mixed formats |"),
        "{stdout}"
    );
    assert!(stdout.contains("| new callers, replica |"), "{stdout}");
    assert!(stdout.contains("| latency, 202 → readable"), "{stdout}");
    assert!(stdout.contains("| worker under a backlog |"), "{stdout}");
    assert!(stdout.contains("| full mapping: CRM |"), "{stdout}");
    // Zero would mean the process was gone before it was measured.
    assert!(report["memory"]["ingest_peak_rss_mib"].as_f64().unwrap() > 1.0);
    assert!(report["memory"]["worker_peak_rss_mib"].as_f64().unwrap() > 1.0);
}

async fn run_smoke() -> (String, Value) {
    let out = std::env::temp_dir().join(format!("callsync-bench-{}.json", uuid::Uuid::new_v4()));
    let output = tokio::process::Command::new(binary("bench"))
        .args(["--smoke", "--out", out.to_str().unwrap()])
        .output()
        .await
        .expect("the bench binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "bench failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let _ = std::fs::remove_file(&out);
    (stdout, report)
}

/// Every variant accepted every request at every connection count, (c) and
/// (d) over the alternated pairs, whose ratios are real and ordered.
/// Each source's largest report measured, and with a transcript wherever
/// its platform sends one (all but Postcall), both readings timed.
fn check_inspect(rows: &Value) {
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2 * Source::ALL.len() - 1, "{rows:?}");
    for row in rows {
        assert!(row["bytes"].as_u64().unwrap() > 100, "{row}");
        for key in ["whole_micros", "skimmed_micros"] {
            let micros = row[key].as_f64().unwrap();
            assert!(micros.is_finite() && micros > 0.0, "{row}");
        }
        if row["body"].as_str().unwrap().ends_with("+ 120 turns") {
            assert!(row["bytes"].as_u64().unwrap() > 20_000, "{row}");
        }
    }
}

fn check_ingest(report: &Value) {
    let ingest = report["ingest"].as_array().unwrap();
    let variants: Vec<&str> = ingest
        .iter()
        .map(|row| &row["variant"].as_str().unwrap()[..3])
        .collect();
    assert_eq!(variants, ["(a)", "(b)", "(c)", "(d)"]);
    // Each server's CPU over the webhooks it put in its queue: every one
    // the load generator saw accepted, and the warm-ups'.
    let cpu = &report["ingest_cpu"];
    for (variant, row) in [("c", &ingest[2]), ("d", &ingest[3])] {
        let webhooks = cpu[format!("{variant}_webhooks")].as_u64().unwrap();
        let accepted: u64 = row["cells"]
            .as_array()
            .unwrap()
            .iter()
            .map(|cell| cell["accepted"].as_u64().unwrap())
            .sum();
        assert!(webhooks >= accepted, "{cpu} {row}");
        let micros = cpu[format!("{variant}_micros_per_webhook")]
            .as_f64()
            .unwrap();
        assert!(micros.is_finite() && micros > 0.0, "{cpu}");
    }
    let ratios = report["ratios"].as_array().unwrap();
    let pairs = ratios[0]["pairs"].as_u64().unwrap();
    assert!(
        pairs >= 2,
        "at least two rounds of (b), (c) and (d): {ratios:?}"
    );
    for (i, row) in ingest.iter().enumerate() {
        let cells = row["cells"].as_array().unwrap();
        assert_eq!(cells.len(), ratios.len(), "{row}");
        for cell in cells {
            assert_eq!(cell["failed"].as_u64(), Some(0), "{row}");
            assert!(cell["accepted"].as_u64().unwrap() > 0, "{row}");
            // (a) once; (b), (c) and (d) once per round.
            let runs = if i >= 1 { pairs } else { 1 };
            assert_eq!(cell["runs"].as_u64(), Some(runs), "{row}");
        }
    }
    for ratio in ratios {
        assert_eq!(ratio["pairs"].as_u64(), Some(pairs), "{ratio}");
        assert_spread(&ratio["d_over_c"], ratio);
        assert_spread(&ratio["d_over_b"], ratio);
    }
}

/// A median, minimum and maximum over the alternated pairs, each a real
/// ratio, in order, and one value per pair.
fn assert_spread(spread: &Value, ratio: &Value) {
    assert_spread_of(spread, ratio["pairs"].as_u64().unwrap(), ratio);
}

/// A median, minimum and maximum of `n` values, each positive and finite,
/// in order.
fn assert_spread_of(spread: &Value, n: u64, row: &Value) {
    let field = |name: &str| spread[name].as_f64().unwrap_or(f64::NAN);
    let (median, min, max) = (field("median"), field("min"), field("max"));
    for value in [median, min, max] {
        assert!(value.is_finite() && value > 0.0, "{row}");
    }
    assert!(min <= median && median <= max, "{row}");
    let values = spread["values"].as_array().unwrap();
    assert_eq!(values.len() as u64, n, "{row}");
    for value in values {
        let value = value.as_f64().unwrap_or(f64::NAN);
        assert!(value.is_finite() && value > 0.0, "{row}");
    }
}

/// One row per registered source, in registration order: every
/// verification of its platform's signed report passed, its cost and its
/// ratio to voicedock's are real figures (voicedock's own ratio is 1 in
/// every round), and ingest accepted the source's reports with no failure.
fn check_sources(sources: &Value) {
    let rows = sources.as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["source"].as_str().unwrap()).collect();
    assert_eq!(names, Source::ALL.map(Source::as_str), "{sources}");
    for row in rows {
        let fixture = row["fixture"].as_str().unwrap();
        assert!(
            fixture.starts_with(row["source"].as_str().unwrap()),
            "{row}"
        );
        assert!(row["body_bytes"].as_u64().unwrap() > 100, "{row}");
        let verify = &row["verify"];
        let batches = verify["batches"].as_u64().unwrap();
        let attempted = verify["iterations"].as_u64().unwrap() * batches;
        assert!(attempted > 0, "{row}");
        assert_eq!(verify["attempted"].as_u64(), Some(attempted), "{row}");
        assert_eq!(verify["verified"].as_u64(), Some(attempted), "{row}");
        assert_spread_of(&verify["ns"], batches, row);
        assert_spread_of(&verify["over_voicedock"], batches, row);

        let ingest = &row["ingest"];
        let pooled = &ingest["pooled"];
        assert_eq!(pooled["failed"].as_u64(), Some(0), "{row}");
        assert!(pooled["accepted"].as_u64().unwrap() > 0, "{row}");
        let rounds = pooled["runs"].as_u64().unwrap();
        assert_spread_of(&ingest["accepted_per_sec"], rounds, row);
        assert_spread_of(&ingest["over_voicedock"], rounds, row);
    }
    let voicedock = &rows[0];
    for ratio in [
        &voicedock["verify"]["over_voicedock"],
        &voicedock["ingest"]["over_voicedock"],
    ] {
        for value in ratio["values"].as_array().unwrap() {
            assert!((value.as_f64().unwrap() - 1.0).abs() < 1e-12, "{ratio}");
        }
    }
}

/// Each workload: exactly the designed CRM requests per call, one call
/// record per call, one task per flagged call, one contact per caller,
/// nothing parked.
fn check_workers(workers: &Value) {
    let workers = workers.as_array().unwrap();
    let of = |name: &str| workers.iter().filter(|w| w["workload"] == name).count();
    assert_eq!(of(NEW_CONTACT_WITH_FOLLOW_UP.0), 4, "{workers:?}");
    assert_eq!(of(KNOWN_CONTACT_NO_FOLLOW_UP.0), 1, "{workers:?}");
    for w in workers {
        let calls = w["calls"].as_u64().unwrap();
        assert!(calls > 0, "{w}");
        let flagged = w["workload"] == NEW_CONTACT_WITH_FOLLOW_UP.0;
        let per_call = if flagged {
            NEW_CONTACT_WITH_FOLLOW_UP.1
        } else {
            KNOWN_CONTACT_NO_FOLLOW_UP.1
        };
        assert_eq!(w["crm_requests"].as_u64(), Some(per_call * calls), "{w}");
        let reported = w["crm_requests_per_call"].as_f64().unwrap();
        assert!((reported - per_call as f64).abs() < 0.005, "{w}");
        assert_eq!(w["crm_call_records"].as_u64(), Some(calls), "{w}");
        let tasks = if flagged { calls } else { 0 };
        assert_eq!(w["crm_tasks"].as_u64(), Some(tasks), "{w}");
        assert_eq!(w["crm_contacts"].as_u64(), Some(calls), "{w}");
        assert_eq!(w["parked"].as_u64(), Some(0), "{w}");
        assert!(w["synced_per_sec"].as_f64().unwrap() > 0.0, "{w}");
    }
}

/// Under the CRM's limit: under 1 % of requests refused, nothing parked,
/// and every call in the CRM (a tenth as many callers, every third call
/// flagged).
fn check_rate_limit(rate: &Value) {
    let calls = rate["calls"].as_u64().unwrap();
    assert!(rate["crm_requests"].as_u64().unwrap() > 0, "{rate}");
    assert!(rate["ratio_429"].as_f64().unwrap() < 0.01, "{rate}");
    assert_eq!(rate["parked"].as_u64(), Some(0), "{rate}");
    assert_eq!(rate["crm_call_records"].as_u64(), Some(calls), "{rate}");
    assert_eq!(
        rate["crm_tasks"].as_u64(),
        Some(calls.div_ceil(3)),
        "{rate}"
    );
    assert_eq!(
        rate["crm_contacts"].as_u64(),
        Some((calls / 10).max(1)),
        "{rate}"
    );
}

/// Known callers in mixed formats on HubSpot's limits: every call on its
/// caller's seeded contact (the benchmark fails otherwise) and no contact
/// created; each caller searched once, a call costing the call record, at
/// most one last-call update and the task when flagged; the refusals
/// counted in the requests; figures consistent with each other.
fn check_known_callers(row: &Value) {
    let n = |name: &str| {
        row[name]
            .as_u64()
            .unwrap_or_else(|| panic!("{name}: {row}"))
    };
    let f = |name: &str| {
        row[name]
            .as_f64()
            .unwrap_or_else(|| panic!("{name}: {row}"))
    };
    let (calls, callers, flagged) = (n("calls"), n("callers"), n("flagged"));
    assert_eq!(callers, calls / 5, "{row}");
    assert_eq!(flagged, calls.div_ceil(3), "{row}");
    assert_eq!(n("replicas"), 3, "{row}");
    assert_eq!(
        (row["limit"].as_str(), row["search_limit"].as_str()),
        (Some("190/10s"), Some("5/1s"))
    );
    assert_eq!(n("crm_contacts"), callers, "no contact created: {row}");
    assert_eq!(n("crm_call_records"), calls, "{row}");
    assert_eq!(n("crm_tasks"), flagged, "{row}");
    assert_eq!(n("parked"), 0, "{row}");

    // Every request is one of these; a refused one was sent again.
    let refused = n("rate_limited");
    let ops = row["by_operation"].as_object().unwrap();
    let op = |name: &str| ops.get(name).and_then(Value::as_u64).unwrap_or(0);
    let requests = n("crm_requests");
    assert_eq!(
        ops.values().map(|v| v.as_u64().unwrap()).sum::<u64>(),
        requests,
        "{row}"
    );
    for name in ops.keys() {
        assert!(
            [
                "search_contacts",
                "create_call",
                "update_contact",
                "create_task"
            ]
            .contains(&name.as_str()),
            "a call of a known caller makes no {name}: {row}"
        );
    }
    let within = |value: u64, least: u64| (least..=least + refused).contains(&value);
    assert!(
        within(op("search_contacts"), callers),
        "one search per caller: {row}"
    );
    assert!(within(op("create_call"), calls), "{row}");
    assert!(within(op("create_task"), flagged), "{row}");
    assert!(op("update_contact") <= calls + refused, "{row}");
    assert_eq!(n("searches"), op("search_contacts"), "{row}");

    let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
    assert!(
        close(f("crm_requests_per_call"), requests as f64 / calls as f64),
        "{row}"
    );
    assert!(
        close(
            f("searches_per_caller"),
            n("searches") as f64 / callers as f64
        ),
        "{row}"
    );
    assert!(
        f("besides_search_and_task_per_call") <= 2.0 + refused as f64 / calls as f64,
        "{row}"
    );
    let sent = requests + n("setup_requests");
    assert!(close(f("ratio_429"), refused as f64 / sent as f64), "{row}");
    assert!(n("search_rate_limited") <= refused, "{row}");
    for name in ["seconds", "minimum_seconds", "time_over_minimum"] {
        assert!(f(name).is_finite() && f(name) > 0.0, "{name}: {row}");
    }
}

/// A backlog of new callers on HubSpot's lowest limits: one contact, one
/// call record and, when flagged, one task per call, nothing parked; one
/// search and one create per caller and at most one more per refusal; each
/// replica's own count of its searches adds up to what the CRM received.
fn check_new_callers(row: &Value) {
    let n = |name: &str| {
        row[name]
            .as_u64()
            .unwrap_or_else(|| panic!("{name}: {row}"))
    };
    let (calls, flagged) = (n("calls"), n("flagged"));
    assert_eq!(flagged, calls.div_ceil(3), "{row}");
    assert_eq!(n("replicas"), 3, "{row}");
    assert_eq!(
        (row["limit"].as_str(), row["search_limit"].as_str()),
        (Some("100/10s"), Some("5/1s"))
    );
    assert_eq!(n("crm_contacts"), calls, "{row}");
    assert_eq!(n("crm_call_records"), calls, "{row}");
    assert_eq!(n("crm_tasks"), flagged, "{row}");
    assert_eq!(n("parked"), 0, "{row}");

    let refused = n("rate_limited");
    let ops = row["by_operation"].as_object().unwrap();
    let op = |name: &str| ops.get(name).and_then(Value::as_u64).unwrap_or(0);
    let within = |value: u64, least: u64| (least..=least + refused).contains(&value);
    assert!(
        within(op("search_contacts"), calls),
        "one search per caller: {row}"
    );
    assert!(within(op("create_contact"), calls), "{row}");
    assert!(within(op("create_call"), calls), "{row}");
    assert!(within(op("create_task"), flagged), "{row}");
    assert_eq!(n("searches"), op("search_contacts"), "{row}");

    let replicas = row["per_replica"].as_array().unwrap();
    assert_eq!(replicas.len(), 3, "{row}");
    let sum = |name: &str| -> u64 { replicas.iter().map(|r| r[name].as_u64().unwrap()).sum() };
    assert_eq!(sum("searches"), n("searches"), "{row}");
    assert!(sum("messages") >= calls, "{row}");
    let f = |name: &str| row[name].as_f64().unwrap_or(f64::NAN);
    for name in ["seconds", "minimum_seconds", "time_over_minimum"] {
        assert!(f(name).is_finite() && f(name) > 0.0, "{name}: {row}");
    }
}

/// Webhook → CRM latency, HubSpot and Pipedrive, new and known callers:
/// every call readable (the benchmark fails otherwise) and nothing parked;
/// the CRM requests in a row until the record exists are the design's (a
/// new caller's search, contact and record, a known caller's record only);
/// the latency is at least the CRM's own time for them (each answer takes
/// 50 ms); and each stage the worker times is present in every call with
/// a positive time.
fn check_latency(latency: &Value) {
    let rows = latency["rows"].as_array().unwrap();
    let cells: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["crm"].as_str().unwrap(), r["caller"].as_str().unwrap()))
        .collect();
    assert_eq!(
        cells,
        [
            ("hubspot", "new"),
            ("hubspot", "known"),
            ("pipedrive", "new"),
            ("pipedrive", "known")
        ]
    );
    for row in rows {
        let calls = row["calls"].as_u64().unwrap();
        assert!(calls > 0, "{row}");
        let requests = if row["caller"] == "new" { 3 } else { 1 };
        assert_eq!(
            row["requests_until_readable"],
            serde_json::json!([requests, requests]),
            "{row}"
        );
        let f = |name: &str| row[name].as_f64().unwrap_or(f64::NAN);
        assert_eq!(f("crm_ms"), requests as f64 * 50.0, "{row}");
        // The CRM answers each request after 50 ms and the requests are
        // sent one after another: no call is readable sooner.
        assert!(f("readable_p50_ms") >= f("crm_ms"), "{row}");
        assert!(f("readable_p99_ms") >= f("readable_p50_ms"), "{row}");
        let stages = row["stages"].as_array().unwrap();
        let names: Vec<&str> = stages
            .iter()
            .map(|s| s["stage"].as_str().unwrap())
            .collect();
        let (contact_ops, record, update, task) = if row["crm"] == "hubspot" {
            (
                ["CRM search_contact", "CRM create_contact"],
                "CRM create_call",
                "CRM update_contact",
                "CRM create_task",
            )
        } else {
            (
                ["CRM search_person", "CRM create_person"],
                "CRM create_note",
                "CRM update_person",
                "CRM create_activity",
            )
        };
        let mut expected = vec!["queue wait (received → delivered)", "ledger statements"];
        if row["caller"] == "new" {
            expected.extend(contact_ops);
            expected.push(record);
        } else {
            expected.extend([record, update]);
        }
        expected.extend([task, "sync (claim → synced)"]);
        assert_eq!(names, expected, "{row}");
        for stage in stages {
            assert_eq!(stage["calls"].as_u64(), Some(calls), "{stage}");
            assert!(stage["p50_ms"].as_f64().unwrap() > 0.0, "{stage}");
        }
    }
    for crm in latency["crms"].as_array().unwrap() {
        assert_eq!(crm["parked"].as_u64(), Some(0), "{crm}");
        let records = crm["crm_call_records"].as_u64().unwrap();
        assert_eq!(crm["crm_tasks"].as_u64(), Some(records), "{crm}");
        assert_eq!(crm["crm_contacts"].as_u64(), Some(records / 2), "{crm}");
    }
}

/// The worker drained the whole backlog into the CRM, nothing parked, and
/// its peak memory was read while it lived.
fn check_backlog_memory(row: &Value) {
    let calls = row["calls"].as_u64().unwrap();
    assert!(calls > 0, "{row}");
    assert_eq!(row["crm_call_records"].as_u64(), Some(calls), "{row}");
    assert_eq!(row["crm_tasks"].as_u64(), Some(calls.div_ceil(3)), "{row}");
    assert_eq!(row["crm_contacts"].as_u64(), Some(calls), "{row}");
    assert_eq!(row["parked"].as_u64(), Some(0), "{row}");
    assert!(row["worker_peak_rss_mib"].as_f64().unwrap() > 1.0, "{row}");
}

/// With every mode mapped, on each CRM: exactly the requests Mapping's
/// tables give per call (a new caller 3, or 4 on GoHighLevel, whose upsert
/// never carries `if_empty` or `append` values; a caller the CRM has, first
/// call, 4 with the read of the mapped fields; a repeat caller 3 with that
/// read), each mapped field holding what its mode says (the benchmark fails
/// otherwise), and nothing parked.
fn check_mapping(mapping: &Value) {
    let rows = mapping["rows"].as_array().unwrap();
    let crms: Vec<&str> = rows.iter().map(|r| r["crm"].as_str().unwrap()).collect();
    assert_eq!(
        crms,
        ["hubspot", "pipedrive", "gohighlevel", "salesforce"]
            .map(|c| [c; 3])
            .concat()
    );
    for row in rows {
        let calls = row["calls"].as_u64().unwrap();
        // The contact's search, create, the call record, update and read.
        let (search, create, record, update, read) = match row["crm"].as_str().unwrap() {
            "hubspot" => (
                "search_contacts",
                "create_contact",
                "create_call",
                "update_contact",
                "get_contact",
            ),
            "pipedrive" => (
                "search_person",
                "create_person",
                "create_note",
                "update_person",
                "get_person",
            ),
            "gohighlevel" => (
                "search_contacts",
                "upsert_contact",
                "create_note",
                "update_contact",
                "get_contact",
            ),
            _ => (
                "search",
                "create_contact",
                "create_call_task",
                "update_contact",
                "get_contact",
            ),
        };
        let new: &[&str] = if row["crm"] == "gohighlevel" {
            &[search, create, record, update]
        } else {
            &[search, create, record]
        };
        let per_call: &[&str] = match row["caller"].as_str().unwrap() {
            "new" => new,
            "in the CRM, first call" => &[search, record, read, update],
            "repeat" => &[record, read, update],
            other => panic!("unknown caller {other}"),
        };
        let expected: serde_json::Map<String, Value> = per_call
            .iter()
            .map(|op| ((*op).to_owned(), serde_json::json!(calls)))
            .collect();
        assert_eq!(row["by_operation"], Value::Object(expected), "{row}");
        assert_eq!(
            row["crm_requests"].as_u64(),
            Some(calls * per_call.len() as u64),
            "{row}"
        );
    }
    for crm in mapping["crms"].as_array().unwrap() {
        assert_eq!(crm["parked"].as_u64(), Some(0), "{crm}");
        let records = crm["crm_call_records"].as_u64().unwrap();
        // Three mapped contact fields per caller (two callers per three
        // calls), and the score of each call where a call rule is.
        let call_rule = crm["crm"] == "hubspot" || crm["crm"] == "salesforce";
        let checked = 2 * records + if call_rule { records } else { 0 };
        assert_eq!(crm["fields_checked"].as_u64(), Some(checked), "{crm}");
        let modes = crm["rules"].as_object().unwrap();
        for mode in ["overwrite", "if_empty", "append"] {
            assert!(modes.contains_key(mode), "{crm}");
        }
        assert_eq!(modes.contains_key("call"), call_rule, "{crm}");
    }
}
