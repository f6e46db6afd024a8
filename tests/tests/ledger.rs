//! The ledger's fencing, against a real PostgreSQL: what one attempt
//! records can be undone by that attempt only, and a finished step is never
//! reopened; one call at a time writes a contact's last-call fields.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use callsync_shared::{CallId, Source};
use callsync_tests::harness::TestEnv;
use callsync_worker::ledger::{CallKey, Claim, LatestCall, Ledger, LedgerError, Step, StepState};
use uuid::Uuid;

async fn ledger(env: &TestEnv) -> Ledger {
    Ledger::connect(&env.database_url, 4, "hubspot", Duration::from_secs(5))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_step_is_never_reopened_by_a_later_attempt() {
    let env = TestEnv::new().await;
    let ledger = ledger(&env).await;
    let id = CallId::new("fenced-1").unwrap();
    let key = CallKey {
        source: Source::Voicedock,
        call_id: &id,
    };
    let first = Uuid::now_v7();
    assert!(matches!(
        ledger.claim(key, first).await.unwrap(),
        Claim::Acquired { .. }
    ));
    ledger.start_step(key, first, Step::CallLog).await.unwrap();
    ledger
        .finish_step(key, Step::CallLog, Some("call-1"))
        .await
        .unwrap();
    let again = ledger.start_step(key, first, Step::CallLog).await;
    assert!(matches!(again, Err(LedgerError::LeaseLost(_))), "{again:?}");
    let steps = ledger.steps(key).await.unwrap();
    assert_eq!(
        steps,
        vec![(
            Step::CallLog,
            StepState::Done {
                crm_id: Some("call-1".to_owned())
            }
        )]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_attempt_that_started_a_step_can_abandon_it() {
    let env = TestEnv::new().await;
    let ledger = ledger(&env).await;
    let id = CallId::new("fenced-2").unwrap();
    let key = CallKey {
        source: Source::Postcall,
        call_id: &id,
    };
    let owner = Uuid::now_v7();
    ledger.claim(key, owner).await.unwrap();
    ledger
        .start_step(key, owner, Step::FollowUpTask)
        .await
        .unwrap();
    ledger
        .abandon_step(key, Uuid::now_v7(), Step::FollowUpTask)
        .await
        .unwrap();
    assert_eq!(
        ledger.steps(key).await.unwrap().len(),
        1,
        "another attempt's abandon changes nothing"
    );
    ledger
        .abandon_step(key, owner, Step::FollowUpTask)
        .await
        .unwrap();
    assert!(ledger.steps(key).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_held_by_another_worker_is_not_marked_parked() {
    let env = TestEnv::new().await;
    let ledger = ledger(&env).await;
    let id = CallId::new("fenced-3").unwrap();
    let key = CallKey {
        source: Source::Voicedock,
        call_id: &id,
    };
    let holder = Uuid::now_v7();
    ledger.claim(key, holder).await.unwrap();
    ledger
        .mark_parked(key, "a duplicate delivery failed")
        .await
        .unwrap();
    assert_eq!(
        ledger.counts().await.unwrap().parked,
        0,
        "the holder's lease stands"
    );
    assert_eq!(
        ledger.claim(key, Uuid::now_v7()).await.unwrap(),
        Claim::Busy
    );
    ledger.release(key, holder, "done with it").await.unwrap();
    ledger.mark_parked(key, "gave up").await.unwrap();
    assert_eq!(ledger.counts().await.unwrap().parked, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_call_at_a_time_writes_a_contacts_last_call_fields_and_the_newest_wins() {
    let env = TestEnv::new().await;
    let ledger = ledger(&env).await;
    let (older_id, newer_id) = (CallId::new("older").unwrap(), CallId::new("newer").unwrap());
    let older = CallKey {
        source: Source::Voicedock,
        call_id: &older_id,
    };
    let newer = CallKey {
        source: Source::Voicedock,
        call_id: &newer_id,
    };
    let (older_at, newer_at) = (
        time::macros::datetime!(2026-03-01 10:00 UTC),
        time::macros::datetime!(2026-03-02 10:00 UTC),
    );
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());

    assert_eq!(
        ledger
            .claim_latest_call("c1", older_at, older, a)
            .await
            .unwrap(),
        LatestCall::Write
    );
    // The older call's write is in flight: the newer one waits for it.
    assert_eq!(
        ledger
            .claim_latest_call("c1", newer_at, newer, b)
            .await
            .unwrap(),
        LatestCall::Busy
    );
    // The holder may claim again (to extend its lease before a retry).
    assert_eq!(
        ledger
            .claim_latest_call("c1", older_at, older, a)
            .await
            .unwrap(),
        LatestCall::Write
    );
    ledger.release_latest_call("c1", a).await.unwrap();
    assert_eq!(
        ledger
            .claim_latest_call("c1", newer_at, newer, b)
            .await
            .unwrap(),
        LatestCall::Write
    );
    // Finishing the update step releases the fields too.
    assert!(matches!(
        ledger.claim(newer, b).await.unwrap(),
        Claim::Acquired { .. }
    ));
    ledger.finish_update(newer, "c1", b, true).await.unwrap();
    assert!(matches!(
        ledger.steps(newer).await.unwrap().as_slice(),
        [(Step::ContactUpdate, StepState::Done { crm_id: Some(id) })] if id == "c1"
    ));
    // A later attempt of the older call leaves the newer call's fields alone.
    assert_eq!(
        ledger
            .claim_latest_call("c1", older_at, older, Uuid::now_v7())
            .await
            .unwrap(),
        LatestCall::Older
    );
    // A newer call still is let in at once: nobody holds the fields.
    let newest_id = CallId::new("newest").unwrap();
    let newest = CallKey {
        source: Source::Voicedock,
        call_id: &newest_id,
    };
    assert_eq!(
        ledger
            .claim_latest_call(
                "c1",
                newer_at + time::Duration::hours(1),
                newest,
                Uuid::now_v7()
            )
            .await
            .unwrap(),
        LatestCall::Write
    );
    // Another contact is independent.
    assert_eq!(
        ledger
            .claim_latest_call("c2", older_at, older, a)
            .await
            .unwrap(),
        LatestCall::Write
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_last_call_lease_left_by_a_dead_worker_lapses() {
    let env = TestEnv::new().await;
    let ledger = Ledger::connect(&env.database_url, 4, "hubspot", Duration::from_secs(1))
        .await
        .unwrap();
    let (older_id, newer_id) = (CallId::new("older").unwrap(), CallId::new("newer").unwrap());
    let key = |id| CallKey {
        source: Source::Postcall,
        call_id: id,
    };
    let at = time::macros::datetime!(2026-03-01 10:00 UTC);
    let dead = Uuid::now_v7();
    assert_eq!(
        ledger
            .claim_latest_call("c1", at, key(&older_id), dead)
            .await
            .unwrap(),
        LatestCall::Write
    );
    let later = at + time::Duration::hours(1);
    assert_eq!(
        ledger
            .claim_latest_call("c1", later, key(&newer_id), Uuid::now_v7())
            .await
            .unwrap(),
        LatestCall::Busy
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        ledger
            .claim_latest_call("c1", later, key(&newer_id), Uuid::now_v7())
            .await
            .unwrap(),
        LatestCall::Write
    );
}
