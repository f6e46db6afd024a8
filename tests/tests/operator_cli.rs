//! The operator commands of `callsync-worker`, end to end against RabbitMQ:
//! a call is parked, listed, shown, replayed and then synced; another is
//! purged; `status` shows queue depths and ledger counts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use callsync_shared::config::Env;
use callsync_tests::harness::{TestEnv, binary, fixture, post_voicedock};
use callsync_tests::sim::Fault;

const WAIT: Duration = Duration::from_secs(30);

/// Runs `worker-process <args>` (the callsync-worker program) and returns its stdout.
async fn cli(env: &Env, args: &[&str]) -> String {
    let mut command = tokio::process::Command::new(binary("worker-process"));
    command.env_clear().args(args);
    for (k, v) in env.pairs() {
        command.env(k, v);
    }
    let output = command.output().await.expect("the CLI runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "callsync-worker {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_call_is_listed_shown_replayed_and_then_synced() {
    let env = TestEnv::new().await;
    env.sim.inject("create_call", Fault::Status(400), 1);
    let ingest = env.start_ingest().await;
    let worker = env.start_worker().await;
    let (_, answer) = post_voicedock(
        &reqwest::Client::new(),
        &ingest,
        fixture("voicedock_000_end_of_call_report.json"),
    )
    .await;
    let message_id = answer["id"].as_str().unwrap().to_owned();
    env.wait_for_queue_depth(&env.topology.parking_queue(), 1)
        .await;
    let ops = env.worker_env();

    let list = cli(&ops, &["dlq", "list"]).await;
    assert!(list.contains(&message_id), "{list}");
    assert!(
        list.contains("5c4d030f-43e3-4e65-899e-8148521e660f"),
        "{list}"
    );
    assert!(
        list.contains("call_log: CRM rejected the request (400)"),
        "{list}"
    );
    assert!(list.contains("1 parked message(s)"), "{list}");
    assert_eq!(
        env.queue_depth(&env.topology.parking_queue()).await,
        1,
        "listing keeps the message parked"
    );

    let show = cli(
        &ops,
        &["dlq", "show", "5c4d030f-43e3-4e65-899e-8148521e660f"],
    )
    .await;
    assert!(show.contains("source:      voicedock"), "{show}");
    assert!(
        show.contains("\"end-of-call-report\""),
        "the body is shown: {show}"
    );

    let status = cli(&ops, &["status"]).await;
    assert!(
        status.contains(&format!("{}.parked", env.topology.prefix())),
        "{status}"
    );
    assert!(
        status.contains("ledger: 0 synced, 0 pending, 1 parked"),
        "{status}"
    );

    let replay = cli(&ops, &["dlq", "replay", &message_id]).await;
    assert!(replay.contains("1 message(s) replayed"), "{replay}");
    env.wait_for_crm(WAIT, |s| s.calls.len() == 1).await;
    let counts = env.ledger().await.counts().await.unwrap();
    assert_eq!((counts.synced, counts.parked), (1, 0));
    assert_eq!(env.queue_depth(&env.topology.parking_queue()).await, 0);
    let status = cli(&ops, &["status"]).await;
    assert!(
        status.contains("ledger: 1 synced, 0 pending, 0 parked"),
        "{status}"
    );

    worker.stop().await;
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_removes_only_messages_parked_longer_ago_than_asked() {
    let env = TestEnv::new().await;
    env.sim.inject("create_call", Fault::Status(422), 1);
    let ingest = env.start_ingest().await;
    let worker = env.start_worker().await;
    post_voicedock(
        &reqwest::Client::new(),
        &ingest,
        fixture("voicedock_000_end_of_call_report.json"),
    )
    .await;
    env.wait_for_queue_depth(&env.topology.parking_queue(), 1)
        .await;
    let ops = env.worker_env();

    let kept = cli(&ops, &["dlq", "purge", "--older-than", "1h"]).await;
    assert!(
        kept.contains("0 message(s) parked more than 1h0m ago purged"),
        "{kept}"
    );
    assert_eq!(env.queue_depth(&env.topology.parking_queue()).await, 1);

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let purged = cli(&ops, &["dlq", "purge", "--older-than", "1s"]).await;
    assert!(purged.contains("1 message(s)"), "{purged}");
    assert_eq!(env.queue_depth(&env.topology.parking_queue()).await, 0);
    assert!(env.sim.snapshot().calls.is_empty());

    let replay_nothing = cli(&ops, &["dlq", "replay", "--all"]).await;
    assert!(
        replay_nothing.contains("0 message(s) replayed"),
        "{replay_nothing}"
    );
    worker.stop().await;
    ingest.stop().await;
}
