//! The fault suite: a batch of distinct calls pushed through ingest while
//! everything that can go wrong does, then the CRM's records are checked
//! the way RabbitMQ's Jepsen tests count messages — lost, duplicated,
//! unexpected — and more strictly: every record on the right contact with
//! the right content, every contact's last-call fields from its newest call,
//! and nothing parked.
//!
//! The calls come from all six sources in turn (voicedock, postcall, Vapi,
//! Retell, ElevenLabs, Bland), each in its platform's own shape and signed
//! its own way, so every parser and verifier is in the run.
//!
//! Faults, all in one run: every call delivered 1–3 times, some deliveries
//! concurrent; three workers (one a process); crm-sim answering with random
//! 5xx that were not applied, 5xx that were, 429s beyond a rolling limit
//! without `Retry-After` (HubSpot sends none), creates applied but answered
//! with a connection reset, and requests applied after the client gave up
//! on them; the worker process SIGKILLed and restarted; the workers' and
//! ingest's broker connections cut; the workers' database connections
//! terminated. Every kind of fault is counted by the simulator and asserted
//! to have happened, so the suite proves it exercised what it names.
//!
//! Everything is judged from the simulator's records alone: the worker's
//! own ledger is never asked whether a missing call is excused.
//!
//! A third run adds a `CALLSYNC_MAPPING` with two `[[deal]]` rules (one
//! for every call, one for Vapi's calls only) and an `append` rule (each
//! call's id, as a line on its contact's `ai_call_log`), and counts the
//! deals and the appended lines as the call records: exactly one per call
//! and matching rule, on the caller's contact, none unexpected.
//!
//! Size: `CALLSYNC_FAULT_CALLS` (default 300); the simulated CRM's rolling
//! limit: `CALLSYNC_FAULT_CRM_LIMIT` requests per second (default 80, low
//! enough that 429s happen). The 10 000-call run:
//! `CALLSYNC_FAULT_CALLS=10000 CALLSYNC_FAULT_CRM_LIMIT=400 cargo test --release -p callsync-tests --test fault_suite -- --nocapture`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use callsync_shared::Source;
use callsync_shared::time::unix_ms;
use callsync_tests::deals::deal_marker_of;
use callsync_tests::harness::{AMQP_URL, Service, TcpProxy, TestEnv};
use callsync_tests::sim::{FaultRates, RateLimit, Record, SimConfig, Snapshot};
use callsync_tests::sources::{CREDENTIALS, signed_headers};
use callsync_tests::wait::env_usize;
use reqwest::StatusCode;
use tokio::sync::Semaphore;

/// The workers' CRM timeout in these runs; slow answers outlast it.
const CRM_TIMEOUT: Duration = Duration::from_secs(2);

struct Call {
    source: Source,
    id: String,
    phone: String,
    follow_up: bool,
    summary: String,
    /// `None` where the format carries no duration (postcall).
    duration_ms: Option<u64>,
    /// Unix milliseconds: every call ends at its own second, so each
    /// number's newest call is well defined. `None` where the format
    /// carries no end time (postcall: the end is when ingest received it).
    ended_ms: Option<i64>,
    body: Vec<u8>,
}

impl Call {
    fn marker(&self) -> String {
        format!("callsync:{}:{}", self.source, self.id)
    }
}

/// The number that answered the calls, for formats that name it.
const OUR_NUMBER: &str = "+31201234567";

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// The body `source` would post for a call, in that platform's shape (see
/// the fixtures in shared/fixtures for the full documented examples).
fn body(source: Source, c: &Call, ended: time::OffsetDateTime, secs: i64) -> Vec<u8> {
    let (id, phone, summary, follow_up) = (&c.id, &c.phone, &c.summary, c.follow_up);
    let started = ended - time::Duration::seconds(secs);
    let end_ms = unix_ms(ended);
    let json = match source {
        Source::Voicedock => serde_json::json!({ "message": {
            "type": "end-of-call-report", "timestamp": rfc3339(ended),
            "call": { "id": id }, "customer": { "number": phone },
            "duration_seconds": secs, "summary": summary,
            "analysis": { "sentiment": 7, "follow_up_needed": follow_up }
        }}),
        Source::Postcall => serde_json::json!({
            "callId": id, "callerDetails": { "phoneNumber": phone },
            "callAnalysis": { "summary": summary, "followUpNeeded": follow_up }
        }),
        Source::Vapi => serde_json::json!({ "message": {
            "type": "end-of-call-report",
            "call": { "id": id, "type": "inboundPhoneCall", "customer": { "number": phone } },
            "customer": { "number": phone }, "phoneNumber": { "number": OUR_NUMBER },
            "startedAt": rfc3339(started), "endedAt": rfc3339(ended), "durationSeconds": secs,
            "analysis": { "summary": summary, "structuredData": { "follow_up_needed": follow_up } }
        }}),
        Source::Retell => serde_json::json!({ "event": "call_analyzed", "call": {
            "call_type": "phone_call", "call_id": id, "direction": "inbound",
            "from_number": phone, "to_number": OUR_NUMBER,
            "start_timestamp": end_ms - secs * 1000, "end_timestamp": end_ms, "duration_ms": secs * 1000,
            "call_analysis": { "call_summary": summary, "custom_analysis_data": { "follow_up_needed": follow_up } }
        }}),
        Source::Elevenlabs => serde_json::json!({
            "type": "post_call_transcription", "event_timestamp": ended.unix_timestamp(),
            "data": {
                "conversation_id": id, "status": "done",
                "metadata": {
                    "start_time_unix_secs": started.unix_timestamp(), "call_duration_secs": secs,
                    "phone_call": { "direction": "inbound", "external_number": phone, "agent_number": OUR_NUMBER }
                },
                "analysis": {
                    "transcript_summary": summary,
                    "data_collection_results": { "follow_up_needed": { "value": follow_up } }
                }
            }
        }),
        // Bland counts the call's length in minutes.
        Source::Bland => serde_json::json!({
            "call_id": id, "from": phone, "to": OUR_NUMBER, "inbound": true,
            "started_at": rfc3339(started), "call_length": secs as f64 / 60.0,
            "completed": true, "status": "completed", "summary": summary,
            "variables": { "follow_up_needed": follow_up }
        }),
    };
    serde_json::to_vec(&json).unwrap()
}

fn calls(n: usize) -> Vec<Call> {
    let start = time::macros::datetime!(2026-04-01 00:00:00 UTC);
    let sources = Source::ALL;
    (0..n)
        .map(|i| {
            let source = sources[i % sources.len()];
            let has_times = source != Source::Postcall;
            // A third as many numbers as calls: contacts are shared, so
            // replicas race to create the same contact and to write its
            // last-call fields. A postcall report ends when ingest receives
            // it, so its caller has a number of its own and "newest" stays
            // well defined.
            let phone = if has_times {
                format!("+3161{:07}", i % (n / 3).max(1))
            } else {
                format!("+3162{i:07}")
            };
            // Multiples of 15 s: exact as Bland's minutes too.
            let secs = 15 * (1 + (i % 8) as i64);
            let ended = start + time::Duration::seconds(i as i64);
            let mut call = Call {
                source,
                id: format!("fault-{i:06}"),
                phone,
                follow_up: i % 3 == 0,
                summary: format!("Fault suite call {i}"),
                duration_ms: has_times.then_some(secs as u64 * 1000),
                ended_ms: has_times.then(|| unix_ms(ended)),
                body: Vec::new(),
            };
            call.body = body(source, &call, ended, secs);
            call
        })
        .collect()
}

/// Posts one delivery like a provider that retries until it gets a 2xx.
async fn deliver(client: &reqwest::Client, ingest: &str, call: &Call) -> bool {
    for _ in 0..100 {
        let mut request = client
            .post(format!("{ingest}/webhooks/{}", call.source))
            .body(call.body.clone());
        for (k, v) in signed_headers(call.source, &call.body) {
            request = request.header(k, v);
        }
        if let Ok(response) = request.send().await
            && response.status() == StatusCode::ACCEPTED
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// One run's settings.
struct Run {
    calls: usize,
    crm_limit: usize,
    /// How long the simulated CRM's search lags its writes.
    sim_index_lag: Duration,
    /// What the workers are told the lag is (`CALLSYNC_CRM_INDEX_LAG`).
    worker_index_lag: Duration,
    /// Whether the workers run [`MAPPING`].
    deals: bool,
}

/// Two `[[deal]]` rules in HubSpot's default pipeline: rule 0 for every
/// call, rule 1 for Vapi's calls only (a value every source has, so that
/// which calls match does not depend on each platform's analysis shape);
/// and one `append` rule: a line per call on its contact, which must be
/// there once however often the call is delivered or its write fails.
const MAPPING: &str = r#"
[[contact]]
property = "ai_call_log"
from = "call_id"
mode = "append"
[[deal]]
when = {}
pipeline = "default"
stage = "appointmentscheduled"
name = "AI call {call_id}"

[[deal]]
when = { "source" = "vapi" }
pipeline = "default"
stage = "qualifiedtobuy"
name = "Vapi lead {caller.number}"
"#;

/// The deal markers a call gets under [`MAPPING`].
fn expected_deals(call: &Call) -> Vec<String> {
    let mut rules = vec![0];
    if call.source == Source::Vapi {
        rules.push(1);
    }
    rules
        .into_iter()
        .map(|rule| format!("{}:deal:{rule}", call.marker()))
        .collect()
}

/// What the CRM holds, judged against the calls that were sent.
#[derive(Debug, Default, PartialEq, Eq)]
struct Verdict {
    /// A call with no call record, or a flagged call with no task.
    lost: usize,
    /// Records beyond the first per call, contacts beyond the first per number.
    duplicated: usize,
    /// Records for no call that was sent, tasks for calls not flagged,
    /// contacts for numbers no call had.
    unexpected: usize,
    /// Records not associated with exactly the caller's contact.
    misattributed: usize,
    /// Call records whose summary or duration is not the call's.
    wrong_content: usize,
    /// Contacts whose last-call fields are not their newest call's.
    stale_last_call: usize,
    /// Calls parked (ledger) or messages in the parking queue.
    parked: usize,
}

fn by_marker(records: &[Record]) -> BTreeMap<String, Vec<&Record>> {
    let mut map: BTreeMap<String, Vec<&Record>> = BTreeMap::new();
    for r in records {
        map.entry(r.marker().unwrap_or_default())
            .or_default()
            .push(r);
    }
    map
}

fn judge(batch: &[Call], snapshot: &Snapshot, parked: usize, deals: bool) -> Verdict {
    let mut v = Verdict {
        parked,
        ..Verdict::default()
    };
    let calls = by_marker(&snapshot.calls);
    let tasks = by_marker(&snapshot.tasks);

    let mut contacts_by_phone: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for c in &snapshot.contacts {
        contacts_by_phone
            .entry(c.prop("phone").unwrap_or(""))
            .or_default()
            .push(c);
    }
    let sent_phones: BTreeSet<&str> = batch.iter().map(|c| c.phone.as_str()).collect();
    for (phone, contacts) in &contacts_by_phone {
        if sent_phones.contains(phone) {
            v.duplicated += contacts.len() - 1;
        } else {
            v.unexpected += contacts.len();
        }
    }
    // The contact a record must sit on: the one contact holding its number.
    let contact_of = |phone: &str| -> Option<&str> {
        match contacts_by_phone.get(phone).map(Vec::as_slice) {
            Some([only]) => Some(only.id.as_str()),
            _ => None,
        }
    };
    let on_callers_contact = |r: &Record, phone: &str| {
        contact_of(phone).is_some_and(|id| r.associations == [id.to_owned()])
    };

    for call in batch {
        let m = call.marker();
        let records = calls.get(&m).map(Vec::as_slice).unwrap_or_default();
        if records.is_empty() {
            v.lost += 1;
        }
        v.duplicated += records.len().saturating_sub(1);
        for r in records {
            if !on_callers_contact(r, &call.phone) {
                v.misattributed += 1;
            }
            let body_has_summary = r
                .prop("hs_call_body")
                .is_some_and(|b| b.contains(&format!("<p>{}</p>", call.summary)));
            let duration =
                r.prop("hs_call_duration") == call.duration_ms.map(|ms| ms.to_string()).as_deref();
            if !(body_has_summary && duration) {
                v.wrong_content += 1;
            }
        }
        let flagged = tasks.get(&m).map(Vec::as_slice).unwrap_or_default();
        if call.follow_up {
            if flagged.is_empty() {
                v.lost += 1;
            }
            v.duplicated += flagged.len().saturating_sub(1);
            v.misattributed += flagged
                .iter()
                .filter(|t| !on_callers_contact(t, &call.phone))
                .count();
        } else {
            v.unexpected += flagged.len();
        }
    }
    if deals {
        judge_deals(batch, snapshot, &on_callers_contact, &mut v);
        judge_appended_lines(batch, &contacts_by_phone, &mut v);
    }
    let sent: BTreeSet<String> = batch.iter().map(Call::marker).collect();
    for records in [&calls, &tasks] {
        v.unexpected += records
            .iter()
            .filter(|(m, _)| !sent.contains(*m))
            .map(|(_, r)| r.len())
            .sum::<usize>();
    }

    // Each number's newest call wrote the contact's last-call fields.
    let mut newest: BTreeMap<&str, &Call> = BTreeMap::new();
    for call in batch {
        let entry = newest.entry(call.phone.as_str()).or_insert(call);
        if call.ended_ms > entry.ended_ms {
            *entry = call;
        }
    }
    for (phone, call) in newest {
        let Some(contacts) = contacts_by_phone.get(phone) else {
            continue; // counted as lost above
        };
        for c in contacts {
            // A postcall report's end is when ingest received it: its
            // caller has that one call, so only the summary is compared.
            let at = call
                .ended_ms
                .is_none_or(|ms| c.prop("callsync_last_call_at") == Some(ms.to_string().as_str()));
            let summary = c.prop("callsync_last_call_summary") == Some(call.summary.as_str());
            if !(at && summary) {
                v.stale_last_call += 1;
            }
        }
    }
    v
}

/// Counts the deals as the call records are counted: each call's expected
/// deals once, on the caller's contact; any other deal is unexpected.
fn judge_deals(
    batch: &[Call],
    snapshot: &Snapshot,
    on_callers_contact: &dyn Fn(&Record, &str) -> bool,
    v: &mut Verdict,
) {
    let mut deals: BTreeMap<String, Vec<&Record>> = BTreeMap::new();
    for deal in &snapshot.deals {
        deals
            .entry(deal_marker_of(deal).unwrap_or_default())
            .or_default()
            .push(deal);
    }
    let mut expected = BTreeSet::new();
    for call in batch {
        for marker in expected_deals(call) {
            let found = deals.get(&marker).map(Vec::as_slice).unwrap_or_default();
            if found.is_empty() {
                v.lost += 1;
            }
            v.duplicated += found.len().saturating_sub(1);
            v.misattributed += found
                .iter()
                .filter(|d| !on_callers_contact(d, &call.phone))
                .count();
            expected.insert(marker);
        }
    }
    v.unexpected += deals
        .iter()
        .filter(|(m, _)| !expected.contains(*m))
        .map(|(_, d)| d.len())
        .sum::<usize>();
}

/// Counts the `append` rule's lines as the call records are counted: each
/// call's line (`<call id> [<marker>]`) once on its caller's contact; a
/// line on another contact is misattributed, any other line unexpected.
fn judge_appended_lines(
    batch: &[Call],
    contacts_by_phone: &BTreeMap<&str, Vec<&Record>>,
    v: &mut Verdict,
) {
    let lines_of = |c: &Record| -> Vec<String> {
        c.prop("ai_call_log")
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let mut seen = 0;
    for call in batch {
        let tail = format!(" [{}]", call.marker());
        let count = |c: &Record| lines_of(c).iter().filter(|l| l.ends_with(&tail)).count();
        let on_own: usize = contacts_by_phone
            .get(call.phone.as_str())
            .map(|cs| cs.iter().map(|c| count(c)).sum())
            .unwrap_or_default();
        if on_own == 0 {
            v.lost += 1;
        }
        v.duplicated += on_own.saturating_sub(1);
        let elsewhere: usize = contacts_by_phone
            .iter()
            .filter(|(phone, _)| **phone != call.phone.as_str())
            .flat_map(|(_, cs)| cs.iter())
            .map(|c| count(c))
            .sum();
        v.misattributed += elsewhere;
        seen += on_own + elsewhere;
    }
    let all: usize = contacts_by_phone
        .values()
        .flatten()
        .map(|c| lines_of(c).len())
        .sum();
    v.unexpected += all - seen;
}

/// Runs the batch through ingest and three workers under every fault and
/// returns the verdict and the simulator's final state.
async fn run(settings: Run) -> (Verdict, Snapshot) {
    let n = settings.calls;
    let started = Instant::now();
    let mut env = TestEnv::with_sim(SimConfig {
        latency: Duration::from_millis(2),
        rate_limit: Some(RateLimit {
            max: settings.crm_limit,
            window: Duration::from_secs(1),
            // HubSpot's 429 carries no Retry-After.
            retry_after_secs: None,
        }),
        index_lag: settings.sim_index_lag,
        faults: FaultRates {
            server_error: 0.03,
            applied_server_error: 0.02,
            reset_after_apply: 0.02,
            slow: 0.01,
            // Past the client's timeout: applied after the client gave up.
            slow_by: CRM_TIMEOUT + Duration::from_millis(500),
        },
        seed: 7,
        ..SimConfig::default()
    })
    .await;
    let spool = std::env::temp_dir().join(format!("callsync-fault-spool-{}", env.id));
    let ingest_proxy = TcpProxy::start("127.0.0.1:5672").await;
    let worker_proxy = TcpProxy::start("127.0.0.1:5672").await;
    env.set("CALLSYNC_SPOOL_DIR", spool.to_str().unwrap());
    for (name, value) in CREDENTIALS {
        env.set(name, value);
    }
    env.set("CALLSYNC_RETRY_DELAYS", "1s,2s,3s,5s,8s,13s");
    env.set("CALLSYNC_CRM_TIMEOUT", "2s");
    env.set(
        "CALLSYNC_CRM_INDEX_LAG",
        &format!("{}ms", settings.worker_index_lag.as_millis()),
    );
    // No client-side budgets: the simulator's limit must be hit to test 429s.
    env.set("CALLSYNC_CRM_RATE", "off");
    env.set("CALLSYNC_CRM_SEARCH_RATE", "off");
    let mapping = settings.deals.then(|| {
        let path = std::env::temp_dir().join(format!("callsync-fault-deals-{}.toml", env.id));
        std::fs::write(&path, MAPPING).unwrap();
        path
    });
    if let Some(path) = &mapping {
        env.set("CALLSYNC_MAPPING", path.to_str().unwrap());
        // The business's own field, created before the workers start.
        env.sim
            .define_hubspot_property("contacts", "ai_call_log", "string", "textarea", &[]);
    }

    // The rolling limit answers 429 only when the load reaches it, which a
    // small or slow run may not: three scripted ones make sure the suite
    // always sees HubSpot's 429 without Retry-After.
    env.sim.inject(
        "*",
        callsync_tests::sim::Fault::RateLimited {
            retry_after_secs: None,
        },
        3,
    );
    let ingest = env
        .start_ingest_with(
            env.ingest_env()
                .with("CALLSYNC_AMQP_URL", ingest_proxy.amqp_url()),
        )
        .await;
    let worker_env = env
        .worker_env()
        .with("CALLSYNC_AMQP_URL", worker_proxy.amqp_url());
    let in_process: Vec<Service> = vec![
        env.start_worker_with(worker_env.clone()).await,
        env.start_worker_with(worker_env.clone().with("CALLSYNC_AMQP_URL", AMQP_URL))
            .await,
    ];
    let mut process = Some(env.spawn_worker_process_with(worker_env.clone()).await);

    let batch = Arc::new(calls(n));
    let sent = Arc::new(AtomicUsize::new(0));
    let client = reqwest::Client::new();

    // The senders: each call 1–3 times; even calls' copies at once, odd ones in a row.
    let senders = {
        let batch = Arc::clone(&batch);
        let sent = Arc::clone(&sent);
        let base = ingest.base_url.clone();
        let client = client.clone();
        tokio::spawn(async move {
            let limit = Arc::new(Semaphore::new(16));
            let mut tasks = Vec::new();
            for i in 0..batch.len() {
                let permit = Arc::clone(&limit).acquire_owned().await.unwrap();
                let (batch, sent, base, client) = (
                    Arc::clone(&batch),
                    Arc::clone(&sent),
                    base.clone(),
                    client.clone(),
                );
                tasks.push(tokio::spawn(async move {
                    let call = &batch[i];
                    let copies = 1 + i % 3;
                    let accepted = if i % 2 == 0 {
                        futures_util::future::join_all(
                            (0..copies).map(|_| deliver(&client, &base, call)),
                        )
                        .await
                        .into_iter()
                        .all(|ok| ok)
                    } else {
                        let mut all = true;
                        for _ in 0..copies {
                            all &= deliver(&client, &base, call).await;
                        }
                        all
                    };
                    sent.fetch_add(1, Ordering::SeqCst);
                    drop(permit);
                    accepted
                }));
            }
            let mut refused = 0;
            for task in tasks {
                if !task.await.unwrap() {
                    refused += 1;
                }
            }
            refused
        })
    };

    // The fault schedule, driven by progress.
    let at = |fraction: f64| ((n as f64) * fraction) as usize;
    let wait_for = |count: usize| {
        let sent = Arc::clone(&sent);
        async move {
            while sent.load(Ordering::SeqCst) < count {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_for(at(0.2)).await;
    worker_proxy.cut();
    tokio::time::sleep(Duration::from_millis(800)).await;
    worker_proxy.restore();

    wait_for(at(0.4)).await;
    process.take().unwrap().kill().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    process = Some(env.spawn_worker_process_with(worker_env.clone()).await);

    wait_for(at(0.6)).await;
    let terminated = env.terminate_database_connections().await;

    wait_for(at(0.7)).await;
    ingest_proxy.cut();
    tokio::time::sleep(Duration::from_millis(800)).await;
    ingest_proxy.restore();

    let refused = senders.await.unwrap();
    assert_eq!(
        refused, 0,
        "every delivery was eventually accepted by ingest"
    );

    // Generous: ten minutes at least, and enough for the CRM's limit.
    let deadline =
        Duration::from_secs(600).max(Duration::from_secs((n * 8 / settings.crm_limit) as u64));
    let snapshot = env.settle_within(deadline).await;

    let ledger = env.ledger().await;
    let parked = ledger.counts().await.unwrap().parked as usize
        + env.queue_depth(&env.topology.parking_queue()).await as usize;
    let verdict = judge(&batch, &snapshot, parked, settings.deals);

    let requests = snapshot.stats.requests as f64;
    println!(
        "lost={} duplicated={} unexpected={} misattributed={} wrong_content={} stale_last_call={} parked={} crm_requests_per_call={:.2} 429_ratio={:.4}",
        verdict.lost,
        verdict.duplicated,
        verdict.unexpected,
        verdict.misattributed,
        verdict.wrong_content,
        verdict.stale_last_call,
        verdict.parked,
        requests / n as f64,
        snapshot.stats.rate_limited as f64 / requests.max(1.0)
    );
    let s = &snapshot.stats;
    println!(
        "calls={n} sim_index_lag={:?} worker_index_lag={:?} contacts={} call_records={} tasks={} deals={} injected: 5xx={} applied_then_5xx={} resets={} slow={} applied_after_client_left={} 429={} db_connections_terminated={terminated} elapsed={:.1}s",
        settings.sim_index_lag,
        settings.worker_index_lag,
        snapshot.contacts.len(),
        snapshot.calls.len(),
        snapshot.tasks.len(),
        snapshot.deals.len(),
        s.server_errors,
        s.applied_server_errors,
        s.resets,
        s.slow,
        s.applied_after_client_left,
        s.rate_limited,
        started.elapsed().as_secs_f64()
    );

    if let Some(p) = process.take() {
        p.kill().await;
    }
    for worker in in_process {
        worker.stop().await;
    }
    ingest.stop().await;
    let _ = std::fs::remove_dir_all(spool);
    if let Some(path) = mapping {
        let _ = std::fs::remove_file(path);
    }
    (verdict, snapshot)
}

/// The suite proves it exercised every fault it names.
fn assert_every_fault_happened(s: &Snapshot) {
    let st = &s.stats;
    for (name, count) in [
        ("5xx not applied", st.server_errors),
        ("5xx after applying", st.applied_server_errors),
        ("resets after applying", st.resets),
        ("429 without Retry-After", st.rate_limited),
        (
            "applied after the client gave up",
            st.applied_after_client_left,
        ),
    ] {
        assert!(count > 0, "the fault '{name}' never happened: {st:?}");
    }
}

/// Runs `run` and asserts that the CRM holds exactly the calls sent and
/// that every kind of fault happened on the way.
async fn assert_each_call_once_under_every_fault(settings: Run) {
    let (verdict, snapshot) = run(settings).await;
    assert_eq!(
        verdict,
        Verdict::default(),
        "the CRM holds exactly the calls sent"
    );
    assert_every_fault_happened(&snapshot);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_every_fault_at_once_no_call_is_lost_duplicated_misattributed_or_parked() {
    assert_each_call_once_under_every_fault(Run {
        calls: env_usize("CALLSYNC_FAULT_CALLS", 300),
        crm_limit: env_usize("CALLSYNC_FAULT_CRM_LIMIT", 80),
        sim_index_lag: Duration::ZERO,
        // Covers requests applied up to a second after the client gave up.
        worker_index_lag: Duration::from_secs(1),
        deals: false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_every_fault_with_deal_rules_each_call_gets_each_matching_deal_once() {
    assert_each_call_once_under_every_fault(Run {
        calls: env_usize("CALLSYNC_FAULT_DEAL_CALLS", 150),
        crm_limit: env_usize("CALLSYNC_FAULT_CRM_LIMIT", 80),
        sim_index_lag: Duration::ZERO,
        worker_index_lag: Duration::from_secs(1),
        deals: true,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_a_search_index_lagging_two_seconds_every_fault_still_gives_each_call_once() {
    assert_each_call_once_under_every_fault(Run {
        calls: env_usize("CALLSYNC_FAULT_LAG_CALLS", 120),
        crm_limit: env_usize("CALLSYNC_FAULT_CRM_LIMIT", 80),
        sim_index_lag: Duration::from_secs(2),
        worker_index_lag: Duration::from_secs(3),
        deals: false,
    })
    .await;
}
