//! The ledger's fencing, against a real PostgreSQL: what one attempt
//! records can be undone by that attempt only, and a finished step is never
//! reopened; one call at a time writes a contact's last-call fields.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use callsync_shared::{CallId, Source};
use callsync_tests::harness::TestEnv;
use callsync_tests::wait::eventually;
use callsync_worker::ledger::{CallKey, Claim, LatestCall, Ledger, LedgerError, Step, StepState};
use time::OffsetDateTime;
use uuid::Uuid;

/// A ledger on a database of its own (the environment drops it), whose
/// leases last `lease`.
async fn ledger_with_lease(lease: Duration) -> (TestEnv, Ledger) {
    let env = TestEnv::new().await;
    let ledger = Ledger::connect(&env.database_url, 4, "hubspot", lease)
        .await
        .unwrap();
    (env, ledger)
}

async fn ledger() -> (TestEnv, Ledger) {
    ledger_with_lease(Duration::from_secs(5)).await
}

/// A fresh ledger and the id of a call to record in it.
async fn ledger_and_call(id: &str) -> (TestEnv, Ledger, CallId) {
    let (env, ledger) = ledger().await;
    (env, ledger, call_id(id))
}

fn call_id(id: &str) -> CallId {
    CallId::new(id).unwrap()
}

fn key(source: Source, call_id: &CallId) -> CallKey<'_> {
    CallKey { source, call_id }
}

/// Asks for `contact`'s last-call fields for the call `key`, which ended `at`.
async fn latest(
    ledger: &Ledger,
    contact: &str,
    at: OffsetDateTime,
    key: CallKey<'_>,
    attempt: Uuid,
) -> LatestCall {
    ledger
        .claim_latest_call(contact, at, key, attempt)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_step_is_never_reopened_by_a_later_attempt() {
    let (_env, ledger, id) = ledger_and_call("fenced-1").await;
    let key = key(Source::Voicedock, &id);
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
    let (_env, ledger, id) = ledger_and_call("fenced-2").await;
    let key = key(Source::Postcall, &id);
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
    let steps = ledger.steps(key).await.unwrap();
    assert!(
        matches!(
            steps.as_slice(),
            [(Step::FollowUpTask, StepState::Started { .. })]
        ),
        "another attempt's abandon changes nothing: {steps:?}"
    );
    ledger
        .abandon_step(key, owner, Step::FollowUpTask)
        .await
        .unwrap();
    assert!(ledger.steps(key).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_held_by_another_worker_is_not_marked_parked() {
    let (_env, ledger, id) = ledger_and_call("fenced-3").await;
    let key = key(Source::Voicedock, &id);
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
    let (_env, ledger) = ledger().await;
    let (older_id, newer_id) = (call_id("older"), call_id("newer"));
    let older = key(Source::Voicedock, &older_id);
    let newer = key(Source::Voicedock, &newer_id);
    let (older_at, newer_at) = (
        time::macros::datetime!(2026-03-01 10:00 UTC),
        time::macros::datetime!(2026-03-02 10:00 UTC),
    );
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());

    assert_eq!(
        latest(&ledger, "c1", older_at, older, a).await,
        LatestCall::Write
    );
    // The older call's write is in flight: the newer one waits for it.
    assert_eq!(
        latest(&ledger, "c1", newer_at, newer, b).await,
        LatestCall::Busy
    );
    // The holder may claim again (to extend its lease before a retry).
    assert_eq!(
        latest(&ledger, "c1", older_at, older, a).await,
        LatestCall::Write
    );
    ledger.release_latest_call("c1", a).await.unwrap();
    assert_eq!(
        latest(&ledger, "c1", newer_at, newer, b).await,
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
        latest(&ledger, "c1", older_at, older, Uuid::now_v7()).await,
        LatestCall::Older
    );
    // A newer call still is let in at once: nobody holds the fields.
    let newest_id = call_id("newest");
    let newest_at = newer_at + time::Duration::hours(1);
    assert_eq!(
        latest(
            &ledger,
            "c1",
            newest_at,
            key(Source::Voicedock, &newest_id),
            Uuid::now_v7()
        )
        .await,
        LatestCall::Write
    );
    // Another contact is independent.
    assert_eq!(
        latest(&ledger, "c2", older_at, older, a).await,
        LatestCall::Write
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_last_call_lease_left_by_a_dead_worker_lapses() {
    let lease = Duration::from_secs(1);
    let (_env, ledger) = ledger_with_lease(lease).await;
    let (older_id, newer_id) = (call_id("older"), call_id("newer"));
    let (older, newer) = (
        key(Source::Postcall, &older_id),
        key(Source::Postcall, &newer_id),
    );
    let at = time::macros::datetime!(2026-03-01 10:00 UTC);
    let later = at + time::Duration::hours(1);
    let dead = Uuid::now_v7();
    assert_eq!(
        latest(&ledger, "c1", at, older, dead).await,
        LatestCall::Write
    );
    let claimed = std::time::Instant::now();
    assert_eq!(
        latest(&ledger, "c1", later, newer, Uuid::now_v7()).await,
        LatestCall::Busy
    );
    // The newer call is let in once the lease lapsed, and not much later.
    eventually(
        lease + Duration::from_millis(200),
        "the dead worker's last-call lease lapses",
        || latest(&ledger, "c1", later, newer, Uuid::now_v7()),
        |seen| *seen == LatestCall::Write,
    )
    .await;
    assert!(
        claimed.elapsed() >= lease - Duration::from_millis(100),
        "the lease held for its length: {:?}",
        claimed.elapsed()
    );
}
