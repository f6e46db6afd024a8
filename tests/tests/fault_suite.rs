//! The fault suite: a batch of distinct calls pushed through ingest while
//! everything that can go wrong does, then the CRM's records are counted the
//! way RabbitMQ's Jepsen tests count messages: lost, duplicated, unexpected.
//!
//! Faults, all in one run: every call delivered 1–3 times, some deliveries
//! concurrent; three workers (one a process); crm-sim answering with random
//! 5xx, 429s beyond a rolling limit, slow answers past the client timeout and
//! creates applied but answered with a connection reset; the worker process
//! SIGKILLed and restarted; the workers' and ingest's broker connections cut;
//! the workers' database connections terminated.
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

use callsync_tests::harness::{AMQP_URL, Service, TcpProxy, TestEnv, voicedock_headers};
use callsync_tests::sim::{FaultRates, RateLimit, SimConfig};
use reqwest::StatusCode;
use tokio::sync::Semaphore;

struct Call {
    id: String,
    phone: String,
    follow_up: bool,
    body: Vec<u8>,
}

fn calls(n: usize) -> Vec<Call> {
    (0..n)
        .map(|i| {
            let id = format!("fault-{i:06}");
            // A third as many numbers as calls: contacts are shared, so
            // replicas race to create the same contact.
            let phone = format!("+3161{:07}", i % (n / 3).max(1));
            let follow_up = i % 3 == 0;
            let body = serde_json::to_vec(&serde_json::json!({
                "message": {
                    "type": "end-of-call-report",
                    "timestamp": format!("2026-04-01T10:{:02}:{:02}.000Z", (i / 60) % 60, i % 60),
                    "call": { "id": id },
                    "customer": { "number": phone },
                    "duration_seconds": 20 + i % 100,
                    "summary": format!("Fault suite call {i}"),
                    "analysis": { "sentiment": 1 + i % 10, "follow_up_needed": follow_up }
                }
            }))
            .unwrap();
            Call {
                id,
                phone,
                follow_up,
                body,
            }
        })
        .collect()
}

/// Posts one delivery like a provider that retries until it gets a 2xx.
async fn deliver(client: &reqwest::Client, ingest: &str, body: &[u8]) -> bool {
    for _ in 0..100 {
        let mut request = client
            .post(format!("{ingest}/webhooks/voicedock"))
            .body(body.to_vec());
        for (k, v) in voicedock_headers(body) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_every_fault_at_once_no_call_is_lost_duplicated_or_unexpected() {
    let n: usize = std::env::var("CALLSYNC_FAULT_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let crm_limit: usize = std::env::var("CALLSYNC_FAULT_CRM_LIMIT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(80);
    let started = Instant::now();

    let mut env = TestEnv::with_sim(SimConfig {
        latency: Duration::from_millis(2),
        rate_limit: Some(RateLimit {
            max: crm_limit,
            window: Duration::from_secs(1),
            retry_after_secs: Some(1),
        }),
        faults: FaultRates {
            server_error: 0.03,
            reset_after_apply: 0.02,
            slow: 0.01,
            slow_by: Duration::from_secs(3),
        },
        seed: 7,
        ..SimConfig::default()
    })
    .await;
    let spool = std::env::temp_dir().join(format!("callsync-fault-spool-{}", env.id));
    let ingest_proxy = TcpProxy::start("127.0.0.1:5672").await;
    let worker_proxy = TcpProxy::start("127.0.0.1:5672").await;
    env.set("CALLSYNC_SPOOL_DIR", spool.to_str().unwrap());
    env.set("CALLSYNC_RETRY_DELAYS", "1s,2s,3s,5s,8s,13s");
    // No client-side budget: the simulator's limit must be hit to test 429s.
    env.set("CALLSYNC_CRM_RATE", "off");

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
                            (0..copies).map(|_| deliver(&client, &base, &call.body)),
                        )
                        .await
                        .into_iter()
                        .any(|ok| ok)
                    } else {
                        let mut any = false;
                        for _ in 0..copies {
                            any |= deliver(&client, &base, &call.body).await;
                        }
                        any
                    };
                    sent.fetch_add(1, Ordering::SeqCst);
                    drop(permit);
                    (i, accepted)
                }));
            }
            let mut accepted = Vec::new();
            for task in tasks {
                let (i, ok) = task.await.unwrap();
                if ok {
                    accepted.push(i);
                }
            }
            accepted
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

    let accepted = senders.await.unwrap();
    let accepted_ids: BTreeSet<&str> = accepted.iter().map(|i| batch[*i].id.as_str()).collect();

    // Wait until every accepted call is synced or parked.
    let ledger = env.ledger().await;
    // Generous: at least ten minutes, and enough for the CRM's limit.
    let floor = Duration::from_secs(600);
    let deadline = Instant::now() + floor.max(Duration::from_secs((n * 8 / crm_limit) as u64));
    loop {
        let counts = ledger.counts().await.unwrap();
        if (counts.synced + counts.parked) as usize >= accepted_ids.len() && counts.pending == 0 {
            break;
        }
        if Instant::now() > deadline {
            println!(
                "gave up waiting: {counts:?} for {} accepted",
                accepted_ids.len()
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Late duplicates (spool replays, retried copies) must find nothing to do.
    let snapshot = env.assert_settled(Duration::from_secs(2)).await;
    let parked = ledger.counts().await.unwrap().parked as usize;

    // Count.
    let mut calls_per_marker: BTreeMap<String, usize> = BTreeMap::new();
    for record in &snapshot.calls {
        *calls_per_marker
            .entry(record.prop("callsync_marker").unwrap_or("").to_owned())
            .or_default() += 1;
    }
    let mut tasks_per_marker: BTreeMap<String, usize> = BTreeMap::new();
    for record in &snapshot.tasks {
        *tasks_per_marker
            .entry(record.prop("callsync_marker").unwrap_or("").to_owned())
            .or_default() += 1;
    }
    let mut contacts_per_phone: BTreeMap<String, usize> = BTreeMap::new();
    for record in &snapshot.contacts {
        *contacts_per_phone
            .entry(record.prop("phone").unwrap_or("").to_owned())
            .or_default() += 1;
    }
    let marker = |id: &str| format!("callsync:voicedock:{id}");
    let parked_ids: BTreeSet<String> =
        sqlx::query_scalar("SELECT call_id FROM calls WHERE status = 'parked'")
            .fetch_all(ledger.pool())
            .await
            .unwrap()
            .into_iter()
            .collect();

    let mut lost = 0;
    let mut duplicated = 0;
    let mut unexpected = 0;
    for call in batch
        .iter()
        .filter(|c| accepted_ids.contains(c.id.as_str()))
    {
        let records = calls_per_marker
            .get(&marker(&call.id))
            .copied()
            .unwrap_or(0);
        let tasks = tasks_per_marker
            .get(&marker(&call.id))
            .copied()
            .unwrap_or(0);
        if records == 0 && !parked_ids.contains(&call.id) {
            lost += 1;
        }
        duplicated += records.saturating_sub(1);
        if call.follow_up {
            if tasks == 0 && records > 0 {
                lost += 1;
            }
            duplicated += tasks.saturating_sub(1);
        } else {
            unexpected += tasks;
        }
    }
    let known_markers: BTreeSet<String> = accepted_ids.iter().map(|id| marker(id)).collect();
    unexpected += calls_per_marker
        .iter()
        .filter(|(m, _)| !known_markers.contains(*m))
        .map(|(_, n)| n)
        .sum::<usize>();
    unexpected += tasks_per_marker
        .iter()
        .filter(|(m, _)| !known_markers.contains(*m))
        .map(|(_, n)| n)
        .sum::<usize>();
    let phones: BTreeSet<&str> = batch.iter().map(|c| c.phone.as_str()).collect();
    for (phone, count) in &contacts_per_phone {
        if phones.contains(phone.as_str()) {
            duplicated += count.saturating_sub(1);
        } else {
            unexpected += count;
        }
    }

    let requests = snapshot.stats.requests as f64;
    println!(
        "lost={lost} duplicated={duplicated} unexpected={unexpected} parked={parked} crm_requests_per_call={:.2} 429_ratio={:.4}",
        requests / n as f64,
        snapshot.stats.rate_limited as f64 / requests.max(1.0)
    );
    println!(
        "calls={n} accepted={} contacts={} call_records={} tasks={} injected: 5xx={} resets={} slow={} 429={} db_connections_terminated={terminated} elapsed={:.1}s",
        accepted_ids.len(),
        snapshot.contacts.len(),
        snapshot.calls.len(),
        snapshot.tasks.len(),
        snapshot.stats.server_errors,
        snapshot.stats.resets,
        snapshot.stats.slow,
        snapshot.stats.rate_limited,
        started.elapsed().as_secs_f64()
    );

    assert_eq!(
        accepted_ids.len(),
        n,
        "every call was eventually accepted by ingest"
    );
    assert_eq!(lost, 0, "lost calls");
    assert_eq!(duplicated, 0, "duplicated effects");
    assert_eq!(unexpected, 0, "unexpected effects");
    assert!(
        snapshot.stats.server_errors > 0
            && snapshot.stats.resets > 0
            && snapshot.stats.rate_limited > 0,
        "the faults did happen"
    );

    if let Some(p) = process.take() {
        p.kill().await;
    }
    for worker in in_process {
        worker.stop().await;
    }
    ingest.stop().await;
    let _ = std::fs::remove_dir_all(spool);
}
