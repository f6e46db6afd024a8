//! The ledger's contract, against a real PostgreSQL: every public function
//! of `callsync_worker::ledger` and each of its outcomes, read back from the
//! ledger itself or, where an effect shows nowhere else, from its tables.
//!
//! Fencing above all: a lease holds for its length (longer when renewed) and
//! no longer; what one attempt records can be undone by that attempt only; a
//! finished step is never reopened and a synced call never claimed again;
//! one owner at a time creates a number's contact, and one call at a time
//! writes a contact's last-call fields, the newest winning.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use callsync_shared::{CallId, Source};
use callsync_tests::harness::TestEnv;
use callsync_tests::wait::{eventually, throughout};
use callsync_worker::crm::{Rate, Share};
use callsync_worker::ledger::{
    CallKey, CallLease, Claim, ContactClaim, ContactId, LatestCall, Ledger, LedgerCounts,
    LedgerError, LedgerWindow, LookupKey, Receipt, SentCreate, Step, StepState,
};
use serde_json::Value;
use time::OffsetDateTime;
use time::macros::datetime;
use uuid::Uuid;

/// What a test returns: a ledger error fails it with the error.
type Outcome = Result<(), LedgerError>;

/// The lease of [`ledger`]: longer than any test takes to see it hold.
const LEASE: Duration = Duration::from_secs(5);
/// The lease of the tests that wait for one to lapse.
const SHORT: Duration = Duration::from_secs(1);
/// A phone number's lookup key, and what errors may say of it.
static PHONE: LazyLock<LookupKey> = LazyLock::new(|| LookupKey::Phone("+31612345678".into()));
const PHONE_REDACTED: &str = "phone:*******5678";
/// A lookup key acquired with no create pending.
const FREE: ContactClaim = ContactClaim::Acquired {
    pending_since: None,
};

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
    ledger_with_lease(LEASE).await
}

/// A fresh ledger and the key of a call to record in it.
async fn ledger_and_call(source: Source, id: &str) -> (TestEnv, Ledger, CallKey<'static>) {
    let (env, ledger) = ledger().await;
    let [call] = calls(source, [id]);
    (env, ledger, call)
}

/// The keys of calls of `source` with these ids. The ids are leaked (a few
/// bytes a test) so that a key needs no owner kept alive beside it.
fn calls<const N: usize>(source: Source, ids: [&str; N]) -> [CallKey<'static>; N] {
    ids.map(|id| key(source, Box::leak(Box::new(CallId::new(id).unwrap()))))
}

fn key(source: Source, call_id: &CallId) -> CallKey<'_> {
    CallKey { source, call_id }
}

/// A new owner: another worker, or another attempt of the same.
fn other() -> Uuid {
    Uuid::now_v7()
}

/// Claims `key`'s call for a new owner, which must get it, and returns
/// the owner's lease.
async fn held<'a>(ledger: &'a Ledger, key: CallKey<'a>) -> CallLease<'a> {
    match ledger
        .claim(key, other(), &Receipt::default())
        .await
        .unwrap()
    {
        Claim::Acquired { lease, .. } => lease,
        claim => panic!("the call is acquired: {claim:?}"),
    }
}

/// Asserts that `result` is a lost lease on `on` (a call or a lookup key).
fn assert_lease_lost(result: Outcome, on: &str) {
    assert!(
        matches!(&result, Err(LedgerError::LeaseLost(what)) if what == on),
        "a lost lease on {on} expected: {result:?}"
    );
}

/// `key`'s row in `calls`, with `lapsed`: whether its lease has run out.
async fn call_row(ledger: &Ledger, key: CallKey<'_>) -> Value {
    sqlx::query_scalar(
        "SELECT to_jsonb(calls) || jsonb_build_object('lapsed', lease_until < now())
           FROM calls WHERE source = $1 AND call_id = $2",
    )
    .bind(key.source.as_str())
    .bind(key.call_id.as_str())
    .fetch_one(ledger.pool())
    .await
    .unwrap()
}

/// The database's clock.
async fn db_now(ledger: &Ledger) -> OffsetDateTime {
    sqlx::query_scalar("SELECT now()")
        .fetch_one(ledger.pool())
        .await
        .unwrap()
}

/// The steps recorded for `key`'s call, by step (each at most once).
async fn steps(ledger: &Ledger, key: CallKey<'_>) -> HashMap<Step, StepState> {
    let steps = ledger.steps(key).await.unwrap();
    let by_step: HashMap<_, _> = steps.iter().cloned().collect();
    assert_eq!(by_step.len(), steps.len(), "{steps:?}");
    by_step
}

/// Since when `step` of `key`'s call has been started.
async fn since(ledger: &Ledger, key: CallKey<'_>, step: Step) -> OffsetDateTime {
    match steps(ledger, key).await.remove(&step) {
        Some(StepState::Started { since }) => since,
        other => panic!("{step:?} is not started: {other:?}"),
    }
}

/// A claim that got `key`'s call for `owner`, as its `attempt`th.
fn attempt<'a>(ledger: &'a Ledger, key: CallKey<'a>, owner: Uuid, attempt: i32) -> Claim<'a> {
    Claim::Acquired {
        lease: ledger.lease(key, owner),
        attempt,
    }
}

/// A step done, having made the CRM object `crm_id`.
fn done(crm_id: &str) -> StepState {
    StepState::Done {
        crm_id: Some(crm_id.to_owned()),
    }
}

/// Records one call of `source` per id, left in the status the id starts
/// with: pending (held by an owner), synced or parked.
async fn calls_in(ledger: &Ledger, source: Source, ids: &[&str]) {
    for id in ids {
        let [call] = calls(source, [id]);
        let lease = held(ledger, call).await;
        if id.starts_with("synced") {
            lease.complete(&"contact-1".into()).await.unwrap();
        } else if id.starts_with("parked") {
            lease.release("failed").await.unwrap();
            ledger.mark_parked(call, "gave up").await.unwrap();
        }
    }
}

/// The ledger's counts as (pending, synced, parked).
async fn counts(ledger: &Ledger) -> (i64, i64, i64) {
    let LedgerCounts {
        pending,
        synced,
        parked,
    } = ledger.counts().await.unwrap();
    (pending, synced, parked)
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
        .lease(key, attempt)
        .claim_latest_call(&contact.into(), at)
        .await
        .unwrap()
}

// Calls: claims, leases, completion.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_claim_is_attempt_one_and_every_other_is_busy_while_the_lease_stands() -> Outcome {
    let (_env, ledger, call) = ledger_and_call(Source::Voicedock, "claim-1").await;
    let owner = other();
    assert_eq!(
        ledger.claim(call, owner, &Receipt::default()).await?,
        attempt(&ledger, call, owner, 1)
    );
    // A duplicate delivery waits, even one to the same attempt.
    for again in [other(), owner] {
        assert_eq!(
            ledger.claim(call, again, &Receipt::default()).await?,
            Claim::Busy
        );
    }
    let row = call_row(&ledger, call).await;
    assert_eq!(row["status"], "pending");
    assert_eq!(row["attempts"], 1);
    // The same id from another source is another call.
    let postcall = key(Source::Postcall, call.call_id);
    let another = other();
    let claim = ledger.claim(postcall, another, &Receipt::default()).await?;
    assert_eq!(claim, attempt(&ledger, postcall, another, 1));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_claim_records_how_the_report_came_and_later_claims_keep_it() -> Outcome {
    let (_env, ledger, call) = ledger_and_call(Source::Voicedock, "receipt-1").await;
    let webhook = Receipt {
        received_at: OffsetDateTime::from_unix_timestamp(1_765_000_000).ok(),
        published_by: Some("callsync-ingest".to_owned()),
        verified_by: Some("a timestamped HMAC-SHA256 signature (CALLSYNC_VOICEDOCK_SECRET)".into()),
    };
    let Claim::Acquired { lease, .. } = ledger.claim(call, other(), &webhook).await? else {
        panic!("the first claim acquires the call");
    };
    lease.release("CRM unavailable").await?;
    // The same call found again in the platform's call list.
    let reconciled = Receipt {
        received_at: OffsetDateTime::from_unix_timestamp(1_765_000_600).ok(),
        published_by: Some("callsync-reconcile".to_owned()),
        verified_by: None,
    };
    let again = ledger.claim(call, other(), &reconciled).await?;
    assert!(
        matches!(again, Claim::Acquired { attempt: 2, .. }),
        "{again:?}"
    );
    let row = call_row(&ledger, call).await;
    assert_eq!(row["published_by"], "callsync-ingest");
    assert_eq!(
        row["verified_by"],
        "a timestamped HMAC-SHA256 signature (CALLSYNC_VOICEDOCK_SECRET)"
    );
    assert_eq!(row["received_at"], "2025-12-06T05:46:40+00:00");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_synced_once_is_claimed_as_already_synced_by_every_later_delivery() -> Outcome {
    let (_env, ledger, call) = ledger_and_call(Source::Voicedock, "synced-1").await;
    let first = held(&ledger, call).await;
    first.release("CRM unavailable").await?;
    let lease = held(&ledger, call).await;
    lease.complete(&"contact-7".into()).await?;
    for later in [lease.owner(), other()] {
        assert_eq!(
            ledger.claim(call, later, &Receipt::default()).await?,
            Claim::AlreadySynced
        );
    }
    let row = call_row(&ledger, call).await;
    assert_eq!(row["status"], "synced");
    assert_eq!(row["contact_id"], "contact-7");
    assert!(row["synced_at"].is_string(), "{row}");
    // The lease is released and the earlier attempt's error cleared.
    assert_eq!([&row["lease_owner"], &row["last_error"]], [&Value::Null; 2]);
    // Nothing is started, renewed or parked on a synced call.
    let lost = "voicedock:synced-1";
    assert_lease_lost(lease.start_step(Step::CallLog).await, lost);
    assert_lease_lost(lease.renew().await, lost);
    ledger.mark_parked(call, "a late failure").await?;
    assert_eq!(counts(&ledger).await, (0, 1, 0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_released_by_its_holder_keeps_its_error_and_is_claimed_as_attempt_two() -> Outcome {
    let (_env, ledger, call) = ledger_and_call(Source::Postcall, "released-1").await;
    let holder = held(&ledger, call).await;
    let error = || async { call_row(&ledger, call).await["last_error"].clone() };
    ledger.lease(call, other()).release("not mine").await?;
    assert_eq!(error().await, Value::Null);
    assert_eq!(
        ledger.claim(call, other(), &Receipt::default()).await?,
        Claim::Busy
    );

    holder.release("CRM answered 503").await?;
    assert_eq!(error().await, "CRM answered 503");
    let next = other();
    assert_eq!(
        ledger.claim(call, next, &Receipt::default()).await?,
        attempt(&ledger, call, next, 2)
    );
    // The released attempt is fenced out, the new one is not.
    let started = holder.start_step(Step::Contact).await;
    assert_lease_lost(started, "postcall:released-1");
    ledger.lease(call, next).start_step(Step::Contact).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_lease_left_by_a_dead_worker_lapses_and_the_next_owner_takes_over() -> Outcome {
    let (_env, ledger) = ledger_with_lease(SHORT).await;
    let [call] = calls(Source::Voicedock, ["lapsed-1"]);
    let dead = held(&ledger, call).await;
    let claimed = Instant::now();
    dead.start_step(Step::CallLog).await?;
    assert_eq!(
        ledger.claim(call, other(), &Receipt::default()).await?,
        Claim::Busy
    );
    let next = other();
    let receipt = Receipt::default();
    let taken = eventually(
        SHORT + Duration::from_millis(500),
        "the dead worker's call lease lapses",
        || ledger.claim(call, next, &receipt),
        |seen| !matches!(seen, Ok(Claim::Busy)),
    )
    .await;
    assert_eq!(taken?, attempt(&ledger, call, next, 2));
    assert!(claimed.elapsed() >= SHORT - Duration::from_millis(100));
    // The next owner starts the step again; the dead one can neither
    // renew, nor start, nor abandon what is now the next owner's.
    ledger.lease(call, next).start_step(Step::CallLog).await?;
    let lost = "voicedock:lapsed-1";
    assert_lease_lost(dead.renew().await, lost);
    assert_lease_lost(dead.start_step(Step::Contact).await, lost);
    dead.abandon_step(Step::CallLog).await?;
    since(&ledger, call, Step::CallLog).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_call_lease_outlasts_its_length_and_only_its_live_holder_renews_it() -> Outcome {
    let (_env, ledger) = ledger_with_lease(SHORT).await;
    let [call] = calls(Source::Postcall, ["renewed-1"]);
    let holder = held(&ledger, call).await;
    let lost = "postcall:renewed-1";
    assert_lease_lost(ledger.lease(call, other()).renew().await, lost);
    let ledger = &ledger;
    throughout(
        SHORT * 2,
        "a call lease renewed all along stays with its holder",
        || async move {
            holder.renew().await.unwrap();
            ledger
                .claim(call, other(), &Receipt::default())
                .await
                .unwrap()
        },
        |seen| *seen == Claim::Busy,
    )
    .await;
    // Left alone, it lapses, and then even its holder cannot renew it.
    eventually(
        SHORT * 2,
        "the call lease lapses",
        || call_row(ledger, call),
        |row| row["lapsed"] == true,
    )
    .await;
    assert_lease_lost(holder.renew().await, lost);
    assert_lease_lost(holder.start_step(Step::CallLog).await, lost);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_held_by_another_worker_is_not_marked_parked() -> Outcome {
    let (_env, ledger, call) = ledger_and_call(Source::Voicedock, "fenced-3").await;
    let holder = held(&ledger, call).await;
    ledger.mark_parked(call, "a copy failed").await?;
    // The holder's lease stands.
    assert_eq!(counts(&ledger).await, (1, 0, 0));
    assert_eq!(call_row(&ledger, call).await["parked_at"], Value::Null);
    assert_eq!(
        ledger.claim(call, other(), &Receipt::default()).await?,
        Claim::Busy
    );
    holder.release("done with it").await?;
    ledger.mark_parked(call, "gave up").await?;
    assert_eq!(counts(&ledger).await, (0, 0, 1));
    let row = call_row(&ledger, call).await;
    assert_eq!(row["last_error"], "gave up");
    assert!(row["parked_at"].is_string(), "when it was parked: {row}");
    Ok(())
}

// Steps: what a call's attempts sent to the CRM.

/// A deal step per `[[deal]]` rule, `deal:0` to `deal:15`, is recorded and
/// read back as its rule's; the database refuses a name beyond them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_deal_rules_step_is_recorded_and_read_back_as_that_rules() -> Outcome {
    let (_env, ledger, call) = ledger_and_call(Source::Voicedock, "deal-steps").await;
    let lease = held(&ledger, call).await;
    lease.start_step(Step::Deal(0)).await?;
    lease.finish_step(Step::Deal(15), Some("deal-15")).await?;
    let steps = steps(&ledger, call).await;
    assert!(matches!(steps[&Step::Deal(0)], StepState::Started { .. }));
    assert_eq!(steps[&Step::Deal(15)], done("deal-15"));
    assert_eq!("deal:15".parse::<Step>(), Ok(Step::Deal(15)));
    assert!("deal:16".parse::<Step>().is_err());
    assert!(
        lease.start_step(Step::Deal(16)).await.is_err(),
        "no such step"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_is_read_back_as_recorded_started_or_done_with_its_crm_object() -> Outcome {
    let (_env, ledger, call) = ledger_and_call(Source::Voicedock, "steps-1").await;
    let lease = held(&ledger, call).await;
    let before = db_now(&ledger).await;
    for step in Step::ALL {
        lease.start_step(step).await?;
    }
    let after = db_now(&ledger).await;
    let finish = |step, crm_id| lease.finish_step(step, crm_id);
    finish(Step::Contact, Some("contact-1")).await?;
    finish(Step::FollowUpTask, None).await?;

    let steps = steps(&ledger, call).await;
    assert_eq!(steps.len(), Step::ALL.len(), "{steps:?}");
    assert_eq!(steps[&Step::Contact], done("contact-1"));
    assert_eq!(steps[&Step::FollowUpTask], StepState::Done { crm_id: None });
    for step in [Step::CallLog, Step::ContactUpdate] {
        let state = &steps[&step];
        assert!(
            matches!(state, StepState::Started { since } if (before..=after).contains(since)),
            "{step:?} started between {before} and {after}: {state:?}"
        );
    }
    // Each step's name reads back as that step, and an unknown name as none.
    for step in Step::ALL {
        assert_eq!(step.as_str().parse::<Step>(), Ok(step));
    }
    assert!("contact-update".parse::<Step>().is_err());
    // Another call's steps are its own.
    let postcall = key(Source::Postcall, call.call_id);
    assert!(ledger.steps(postcall).await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_is_started_only_by_the_holder_of_the_calls_lease() -> Outcome {
    let (_env, ledger, call) = ledger_and_call(Source::Voicedock, "fenced-4").await;
    let holder = held(&ledger, call).await;
    let started = ledger.lease(call, other()).start_step(Step::CallLog).await;
    assert_lease_lost(started, "voicedock:fenced-4");
    // A refused start records nothing.
    assert!(ledger.steps(call).await?.is_empty());
    holder.start_step(Step::CallLog).await?;
    since(&ledger, call, Step::CallLog).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_step_is_never_reopened_by_a_later_attempt() -> Outcome {
    let (_env, ledger, call) = ledger_and_call(Source::Voicedock, "fenced-1").await;
    let first = held(&ledger, call).await;
    first.start_step(Step::CallLog).await?;
    first.finish_step(Step::CallLog, Some("c")).await?;
    let again = first.start_step(Step::CallLog).await;
    assert_lease_lost(again, "voicedock:fenced-1");
    assert_eq!(ledger.steps(call).await?, [(Step::CallLog, done("c"))]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_attempt_that_started_a_step_can_abandon_it() -> Outcome {
    let (_env, ledger, call) = ledger_and_call(Source::Postcall, "fenced-2").await;
    let lease = held(&ledger, call).await;
    lease.start_step(Step::FollowUpTask).await?;
    let abandon = |owner| ledger.lease(call, owner).abandon_step(Step::FollowUpTask);
    abandon(other()).await?;
    // Another attempt's abandon changes nothing.
    since(&ledger, call, Step::FollowUpTask).await;
    abandon(lease.owner()).await?;
    assert!(ledger.steps(call).await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_outcome_restarts_the_clock_of_a_step_its_own_attempt_started() -> Outcome {
    let (_env, ledger, call) = ledger_and_call(Source::Postcall, "unknown-1").await;
    let lease = held(&ledger, call).await;
    let owner = lease.owner();
    lease.start_step(Step::Contact).await?;
    let since = || since(&ledger, call, Step::Contact);
    let unknown = |owner| {
        ledger
            .lease(call, owner)
            .step_outcome_unknown(Step::Contact)
    };
    let sent = since().await;
    // Another attempt's unknown outcome changes nothing.
    unknown(other()).await?;
    assert_eq!(since().await, sent);
    let ended = db_now(&ledger).await;
    unknown(owner).await?;
    let restarted = since().await;
    assert!(sent < ended && ended <= restarted, "{ended} {restarted}");
    // A step that is done stays done.
    lease.finish_step(Step::Contact, Some("c")).await?;
    unknown(owner).await?;
    assert_eq!(steps(&ledger, call).await[&Step::Contact], done("c"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resetting_contact_steps_forgets_a_calls_contact_and_update_and_nothing_else() -> Outcome {
    let (_env, ledger) = ledger().await;
    let [reset, untouched] = calls(Source::Voicedock, ["reset", "untouched"]);
    let [reset_lease, untouched_lease] =
        [held(&ledger, reset).await, held(&ledger, untouched).await];
    for lease in [reset_lease, untouched_lease] {
        for step in Step::ALL {
            lease.finish_step(step, Some(step.as_str())).await?;
        }
    }
    reset_lease.reset_contact_steps().await?;
    let kept: HashSet<Step> = steps(&ledger, reset).await.into_keys().collect();
    assert_eq!(kept, HashSet::from([Step::CallLog, Step::FollowUpTask]));
    assert_eq!(steps(&ledger, untouched).await.len(), Step::ALL.len());
    Ok(())
}

// Contacts: one owner at a time looks up or creates a number's contact.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_key_is_held_by_one_owner_until_resolved_then_known_to_every_owner() -> Outcome {
    let (_env, ledger) = ledger().await;
    let (first, second) = (other(), other());
    let contact = |owner| ledger.claim_contact(&PHONE, owner);
    assert_eq!(contact(first).await?, FREE);
    assert_eq!(contact(second).await?, ContactClaim::Busy);
    ledger.contact_resolved(&PHONE, &"contact-1".into()).await?;
    let known = ContactClaim::Known("contact-1".into());
    for owner in [first, second] {
        assert_eq!(contact(owner).await?, known);
    }
    // The key's lease ended with it: its holder sends no create any more.
    assert_lease_lost(ledger.contact_pending(&PHONE, first).await, PHONE_REDACTED);
    // Another number is another key.
    let another = LookupKey::Phone("+31687654321".into());
    let another = ledger.claim_contact(&another, second).await?;
    assert_eq!(another, FREE);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_contact_key_outlasts_its_lease_and_only_its_live_holder_renews_it() -> Outcome {
    let (_env, ledger) = ledger_with_lease(SHORT).await;
    let (holder, second) = (other(), other());
    assert_eq!(ledger.claim_contact(&PHONE, holder).await?, FREE);
    assert_lease_lost(ledger.renew_contact(&PHONE, second).await, PHONE_REDACTED);
    let ledger = &ledger;
    throughout(
        SHORT * 2,
        "a number renewed all along stays with its holder",
        || async move {
            ledger.renew_contact(&PHONE, holder).await.unwrap();
            ledger.claim_contact(&PHONE, second).await.unwrap()
        },
        |seen| *seen == ContactClaim::Busy,
    )
    .await;
    // Left alone, it lapses to the next owner, and its old holder can
    // neither renew it nor send a create under it.
    let _taken = eventually(
        SHORT * 2,
        "the number's lease lapses to another owner",
        || ledger.claim_contact(&PHONE, second),
        |claim| matches!(claim, Ok(c) if *c == FREE),
    )
    .await;
    assert_lease_lost(ledger.renew_contact(&PHONE, holder).await, PHONE_REDACTED);
    assert_lease_lost(ledger.contact_pending(&PHONE, holder).await, PHONE_REDACTED);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_create_of_unknown_outcome_stays_pending_until_known_not_applied() -> Outcome {
    let (_env, ledger) = ledger().await;
    let [a, b, c, d] = [(); 4].map(|()| other());
    let contact = |owner| ledger.claim_contact(&PHONE, owner);
    let release = |owner, create| ledger.release_contact(&PHONE, owner, create);
    assert_eq!(contact(a).await?, FREE);
    ledger.contact_pending(&PHONE, a).await?;
    // Only the holder records or releases a create; the error hides the number.
    assert_lease_lost(ledger.contact_pending(&PHONE, b).await, PHONE_REDACTED);
    release(b, SentCreate::Unknown).await?;
    assert_eq!(contact(b).await?, ContactClaim::Busy);

    // The create's outcome is unknown: its clock restarts at the release.
    let sent = db_now(&ledger).await;
    release(a, SentCreate::Unknown).await?;
    let pending = match contact(b).await? {
        ContactClaim::Acquired {
            pending_since: Some(since),
        } => since,
        claim => panic!("the create is pending for the next owner: {claim:?}"),
    };
    assert!(pending > sent, "{pending} > {sent}");
    // An attempt that sent no create leaves the clock alone.
    release(b, SentCreate::None).await?;
    let still = ContactClaim::Acquired {
        pending_since: Some(pending),
    };
    assert_eq!(contact(c).await?, still);
    // A create certainly not applied is forgotten.
    ledger.contact_pending(&PHONE, c).await?;
    release(c, SentCreate::NotApplied).await?;
    assert_eq!(contact(d).await?, FREE);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgetting_a_contact_makes_its_key_claimable_again_and_leaves_others_known() -> Outcome {
    let (_env, ledger) = ledger().await;
    let email = &LookupKey::Email("jan@example.com".into());
    ledger.contact_resolved(&PHONE, &"contact-1".into()).await?;
    ledger.contact_resolved(email, &"contact-2".into()).await?;
    ledger.forget_contact(&"contact-3".into()).await?;
    let phone: &LookupKey = &PHONE;
    let contact = |key| ledger.claim_contact(key, other());
    let known = |id: &str| ContactClaim::Known(id.into());
    assert_eq!(contact(phone).await?, known("contact-1"));
    ledger.forget_contact(&"contact-1".into()).await?;
    assert_eq!(contact(phone).await?, FREE);
    assert_eq!(contact(email).await?, known("contact-2"));
    Ok(())
}

// Last-call fields: one call at a time writes them, the newest winning.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_call_at_a_time_writes_a_contacts_last_call_fields_and_the_newest_wins() -> Outcome {
    let (_env, ledger) = ledger().await;
    let [older, newer, newest] = calls(Source::Voicedock, ["older", "newer", "newest"]);
    let older_at = datetime!(2026-03-01 10:00 UTC);
    let newer_at = datetime!(2026-03-02 10:00 UTC);
    let c1 = |at, call, owner| latest(&ledger, "c1", at, call, owner);
    let (a, b) = (other(), other());

    assert_eq!(c1(older_at, older, a).await, LatestCall::Write);
    // The older call's write is in flight: the newer one waits for it.
    assert_eq!(c1(newer_at, newer, b).await, LatestCall::Busy);
    // The holder may claim again (to extend its lease before a retry).
    assert_eq!(c1(older_at, older, a).await, LatestCall::Write);
    ledger
        .lease(older, a)
        .release_latest_call(&"c1".into())
        .await?;
    assert_eq!(c1(newer_at, newer, b).await, LatestCall::Write);
    // Finishing the update step releases the fields too.
    assert_eq!(
        ledger.claim(newer, b, &Receipt::default()).await?,
        attempt(&ledger, newer, b, 1)
    );
    ledger
        .lease(newer, b)
        .finish_update(&"c1".into(), true)
        .await?;
    let updated = [(Step::ContactUpdate, done("c1"))];
    assert_eq!(ledger.steps(newer).await?, updated);
    // A later attempt of the older call leaves the newer call's fields alone.
    assert_eq!(c1(older_at, older, other()).await, LatestCall::Older);
    // A newer call still is let in at once: nobody holds the fields.
    let newest_at = newer_at + time::Duration::hours(1);
    assert_eq!(c1(newest_at, newest, other()).await, LatestCall::Write);
    // Another contact is independent.
    let c2 = latest(&ledger, "c2", older_at, older, a).await;
    assert_eq!(c2, LatestCall::Write);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_last_call_lease_left_by_a_dead_worker_lapses() {
    let (_env, ledger) = ledger_with_lease(SHORT).await;
    let [older, newer] = calls(Source::Postcall, ["older", "newer"]);
    let at = datetime!(2026-03-01 10:00 UTC);
    let later = at + time::Duration::hours(1);
    let c1 = |at, call, owner| latest(&ledger, "c1", at, call, owner);
    let dead = other();
    assert_eq!(c1(at, older, dead).await, LatestCall::Write);
    let claimed = Instant::now();
    let newer_claim = || c1(later, newer, other());
    assert_eq!(newer_claim().await, LatestCall::Busy);
    // The newer call is let in once the lease lapsed, and not much later.
    eventually(
        SHORT + Duration::from_millis(200),
        "the dead worker's last-call lease lapses",
        newer_claim,
        |seen| *seen == LatestCall::Write,
    )
    .await;
    assert!(
        claimed.elapsed() >= SHORT - Duration::from_millis(100),
        "the lease held for its length: {:?}",
        claimed.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_ended_at_the_same_moment_as_the_holders_waits_and_only_an_earlier_one_is_older() {
    let (_env, ledger) = ledger().await;
    let [holder, same, earlier] = calls(Source::Voicedock, ["holder", "same", "earlier"]);
    let at = datetime!(2026-03-01 10:00 UTC);
    let c1 = |at, call| latest(&ledger, "c1", at, call, other());
    assert_eq!(c1(at, holder).await, LatestCall::Write);
    assert_eq!(c1(at, same).await, LatestCall::Busy);
    let before = at - time::Duration::seconds(1);
    assert_eq!(c1(before, earlier).await, LatestCall::Older);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_finished_without_release_holds_the_fields_until_its_holder_lets_go() -> Outcome {
    let (_env, ledger) = ledger().await;
    let [update, newer] = calls(Source::Postcall, ["update", "newer"]);
    let at = datetime!(2026-03-01 10:00 UTC);
    let later = at + time::Duration::hours(1);
    let [holder, next] = [held(&ledger, update).await, held(&ledger, newer).await];
    let claimed = latest(&ledger, "c1", at, update, holder.owner()).await;
    assert_eq!(claimed, LatestCall::Write);
    holder.finish_update(&"c1".into(), false).await?;
    let updated = [(Step::ContactUpdate, done("c1"))];
    assert_eq!(ledger.steps(update).await?, updated);
    let newer_claim = || latest(&ledger, "c1", later, newer, next.owner());
    assert_eq!(newer_claim().await, LatestCall::Busy);
    // Nobody but the holder releases the fields.
    next.release_latest_call(&"c1".into()).await?;
    next.finish_update(&"c1".into(), true).await?;
    assert_eq!(newer_claim().await, LatestCall::Busy);
    holder.release_latest_call(&"c1".into()).await?;
    assert_eq!(newer_claim().await, LatestCall::Write);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_last_call_holds_no_lease_but_keeps_older_calls_out() -> Outcome {
    let (_env, ledger) = ledger().await;
    let [recorded, older, newer] = calls(Source::Voicedock, ["recorded", "older", "newer"]);
    let (at, hour) = (datetime!(2026-03-01 10:00 UTC), time::Duration::hours(1));
    let contact = ContactId::from("c1");
    let record = |at, call| ledger.lease(call, other()).record_latest_call(&contact, at);
    let c1 = |at, call| latest(&ledger, "c1", at, call, other());
    assert_eq!(record(at, recorded).await?, LatestCall::Write);
    assert_eq!(record(at - hour, older).await?, LatestCall::Older);
    assert_eq!(c1(at - hour, older).await, LatestCall::Older);
    // Nobody holds the fields: a newer call writes at once, and holds them.
    assert_eq!(c1(at + hour, newer).await, LatestCall::Write);
    assert_eq!(record(at + hour * 2, recorded).await?, LatestCall::Busy);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_calls_write_holds_the_contact_alone_until_released_or_lapsed() -> Outcome {
    let (_env, ledger) = ledger_with_lease(SHORT).await;
    let [recorded, first, second] = calls(Source::Voicedock, ["recorded", "first", "second"]);
    let at = datetime!(2026-03-01 10:00 UTC);
    let contact = ContactId::from("c1");
    // A newer call is recorded: the two calls below are older and write
    // only their if-empty and append fields, one at a time.
    let newest = ledger
        .lease(recorded, other())
        .record_latest_call(&contact, at);
    assert_eq!(newest.await?, LatestCall::Write);
    let (a, b) = (other(), other());
    let write = |call, owner| ledger.lease(call, owner).claim_contact_write(&contact);
    assert!(write(first, a).await?, "nobody holds the contact");
    assert!(!write(second, b).await?, "the first write holds it");
    assert!(write(first, a).await?, "its holder may claim it again");
    // Released, the next write is let in; a newer call's last-call
    // update waits for it like any other write.
    ledger.lease(first, a).release_latest_call(&contact).await?;
    assert!(
        write(second, b).await?,
        "released, the second write is let in"
    );
    let newer = latest(&ledger, "c1", at + time::Duration::hours(1), first, other());
    assert_eq!(newer.await, LatestCall::Busy);
    // A holder that died lets go once its lease lapses, and not before.
    let claimed = Instant::now();
    eventually(
        SHORT + Duration::from_millis(200),
        "the dead writer's lease lapses",
        || write(first, a),
        |granted| matches!(granted, Ok(true)),
    )
    .await?;
    assert!(
        claimed.elapsed() >= SHORT - Duration::from_millis(100),
        "the lease held for its length: {:?}",
        claimed.elapsed()
    );
    Ok(())
}

// Workers: each takes its share of the CRM's request budget.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_share_the_budget_in_id_order_until_one_leaves_or_falls_silent() -> Outcome {
    let (env, ledger) = ledger().await;
    let [first, second] = [1, 2].map(Uuid::from_u128);
    let window = Duration::from_secs(30);
    let beat = |id| ledger.heartbeat(id, window);
    let two = |rank| Share { workers: 2, rank };
    assert_eq!(beat(first).await?, Share::ALONE);
    assert_eq!(beat(second).await?, two(1));
    assert_eq!(beat(first).await?, two(0));
    // Another CRM's workers have budgets of their own.
    let pipedrive = Ledger::connect(&env.database_url, 1, "pipedrive", LEASE).await?;
    let alone = pipedrive.heartbeat(Uuid::nil(), window).await?;
    assert_eq!(alone, Share::ALONE);

    ledger.leave(second).await?;
    assert_eq!(beat(first).await?, Share::ALONE);
    assert_eq!(beat(second).await?, two(1));
    // One not seen within the window no longer counts.
    sqlx::query("UPDATE workers SET last_seen = now() - interval '1 minute' WHERE id = $1")
        .bind(second)
        .execute(ledger.pool())
        .await?;
    assert_eq!(beat(first).await?, Share::ALONE);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_records_why_it_is_paused_and_clears_it_when_it_resumes() -> Outcome {
    let (_env, ledger) = ledger().await;
    let id = Uuid::from_u128(7);
    ledger.heartbeat(id, Duration::from_secs(30)).await?;
    let pause = || async {
        sqlx::query_as::<_, (Option<String>, Option<String>)>(
            "SELECT paused_reason, paused_detail FROM workers WHERE id = $1",
        )
        .bind(id)
        .fetch_one(ledger.pool())
        .await
    };
    assert_eq!(pause().await?, (None, None));
    ledger
        .report_pause(id, Some(("credential", "HubSpot answered 401")))
        .await?;
    assert_eq!(
        pause().await?,
        (
            Some("credential".to_owned()),
            Some("HubSpot answered 401".to_owned())
        )
    );
    ledger.report_pause(id, None).await?;
    assert_eq!(pause().await?, (None, None));
    Ok(())
}

/// Takes `n` slots of `rate` from `windows` at once, round robin; how many
/// were granted.
async fn take_at_once(
    windows: &[&LedgerWindow],
    rate: Rate,
    n: usize,
) -> Result<usize, LedgerError> {
    let takes = (0..n).map(|i| windows[i % windows.len()].take(rate, rate.window));
    let granted = futures_util::future::try_join_all(takes).await?;
    Ok(granted.iter().filter(|wait| wait.is_none()).count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_taking_from_the_shared_search_window_get_its_budget_spaced_through_it_and_no_more()
-> Outcome {
    let (env, ledger) = ledger().await;
    let rate = Rate {
        max: 5,
        window: Duration::from_secs(1),
    };
    let spacing = rate.window / 5;
    let (first, second) = (
        LedgerWindow::new(ledger.clone(), "search"),
        LedgerWindow::new(ledger.clone(), "search"),
    );
    // Two workers asking at once: one slot, and the others are told to
    // wait for the spacing, not for the window.
    assert_eq!(take_at_once(&[&first, &second], rate, 4).await?, 1);
    let wait = first
        .take(rate, rate.window)
        .await?
        .expect("a slot was just taken");
    assert!(wait > Duration::ZERO && wait <= spacing, "{wait:?}");
    // Another CRM's workers have a window of their own.
    let pipedrive = Ledger::connect(&env.database_url, 2, "pipedrive", LEASE).await?;
    let other = LedgerWindow::new(pipedrive, "search");
    assert_eq!(other.take(rate, rate.window).await?, None);

    // Taking in turns and waiting as told, two windows' budget: a slot
    // every fifth of the window, and never more in any window. (How soon
    // they come depends on the machine's load, so only their spacing is
    // asserted; a window that stopped granting fails at the deadline.)
    let started = Instant::now();
    let mut granted = Vec::new();
    let mut turn = 0;
    while granted.len() < 10 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the window stopped granting: {granted:?}"
        );
        let worker = [&first, &second][turn % 2];
        turn += 1;
        match worker.take(rate, rate.window).await? {
            None => granted.push(started.elapsed()),
            Some(wait) => {
                assert!(wait <= rate.window, "told to wait {wait:?}");
                tokio::time::sleep(wait).await;
            }
        }
    }
    for pair in granted.windows(2) {
        // The database spaces them; the tolerance is our reading of it.
        assert!(
            pair[1] - pair[0] >= spacing - Duration::from_millis(30),
            "{granted:?}"
        );
    }
    for (i, at) in granted.iter().enumerate() {
        let within = granted[i..]
            .iter()
            .take_while(|t| **t - *at < rate.window)
            .count();
        assert!(within <= 5, "{granted:?}");
    }
    Ok(())
}

// Reading the ledger: for the reconciler, operators and readiness.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_calls_are_exactly_the_ids_held_for_that_source_whatever_their_status() -> Outcome {
    let (_env, ledger) = ledger().await;
    let held_here = ["pending-1", "synced-1", "parked-1"];
    calls_in(&ledger, Source::Voicedock, &held_here).await;
    calls_in(&ledger, Source::Postcall, &["pending-2"]).await;
    let asked = ["pending-1", "synced-1", "parked-1", "pending-2", "never"].map(String::from);
    let known = |source| ledger.known_calls(source, &asked);
    let ids = |ids: &[&str]| ids.iter().map(|id| id.to_string()).collect::<HashSet<_>>();
    assert_eq!(known(Source::Voicedock).await?, ids(&held_here));
    assert_eq!(known(Source::Postcall).await?, ids(&["pending-2"]));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_tell_pending_synced_and_parked_calls_apart_and_a_replay_unparks_one() -> Outcome {
    let (_env, ledger) = ledger().await;
    let voicedock = ["pending-1", "pending-2", "synced-1", "synced-2", "parked-1"];
    calls_in(&ledger, Source::Voicedock, &voicedock).await;
    calls_in(&ledger, Source::Postcall, &["pending-3"]).await;
    assert_eq!(counts(&ledger).await, (3, 2, 1));
    let [parked] = calls(Source::Voicedock, ["parked-1"]);
    let replay = other();
    let claim = ledger.claim(parked, replay, &Receipt::default()).await?;
    assert_eq!(claim, attempt(&ledger, parked, replay, 2));
    assert_eq!(counts(&ledger).await, (4, 2, 0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_creates_the_database_and_its_tables_open_existing_creates_nothing() -> Outcome {
    let env = TestEnv::new().await;
    let url = &env.database_url;
    assert!(Ledger::open_existing(url).await.is_err(), "no database yet");
    let ledger = Ledger::connect(url, 2, "hubspot", LEASE).await?;
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'")
            .fetch_all(ledger.pool())
            .await?;
    for table in ["calls", "call_steps", "contacts", "contact_last_call"] {
        assert!(tables.iter().any(|t| t == table), "{table} in {tables:?}");
    }
    // Another replica finds it ready; an operator command opens it as it is.
    let replica = Ledger::connect(url, 1, "hubspot", LEASE).await?;
    replica.ping().await?;
    let existing = Ledger::open_existing(url).await?;
    existing.ping().await?;
    assert_eq!(existing.counts().await?, LedgerCounts::default());
    existing.pool().close().await;
    let closed = existing.ping().await;
    assert!(matches!(closed, Err(LedgerError::Database(_))));
    Ok(())
}
