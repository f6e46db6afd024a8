//! Waiting without guessing: every wait in the tests has a deadline and,
//! when it runs out, fails with what it last saw, so a missing state fails
//! the test with a reason instead of hanging CI or passing by luck.

use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

/// How often [`eventually`] and [`throughout`] look again.
const POLL: Duration = Duration::from_millis(50);

/// Polls `observe` until `done` holds for what it returns, and returns that.
/// Past `deadline` it panics naming `what` and the last observation.
pub async fn eventually<T, F, Fut>(
    deadline: Duration,
    what: &str,
    observe: F,
    done: impl Fn(&T) -> bool,
) -> T
where
    T: Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    eventually_every(POLL, deadline, what, observe, done).await
}

/// [`eventually`], looking every `poll` (for observations that cost more
/// than a read of memory).
pub async fn eventually_every<T, F, Fut>(
    poll: Duration,
    deadline: Duration,
    what: &str,
    observe: F,
    done: impl Fn(&T) -> bool,
) -> T
where
    T: Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    watch(poll, deadline, observe, |seen, past| {
        if done(&seen) {
            return Some(seen);
        }
        assert!(
            !past,
            "{what}: not reached within {deadline:?}; last seen: {seen:#?}"
        );
        None
    })
    .await
}

/// Polls `observe` for the whole of `window` and fails, with what it saw,
/// the first time `holds` does not: "nothing happened" checked all along
/// instead of once after a sleep. Returns the last observation.
pub async fn throughout<T, F, Fut>(
    window: Duration,
    what: &str,
    observe: F,
    holds: impl Fn(&T) -> bool,
) -> T
where
    T: Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    watch(POLL, window, observe, |seen, past| {
        assert!(holds(&seen), "{what}: broken; seen: {seen:#?}");
        past.then_some(seen)
    })
    .await
}

/// Observes every `poll` and hands each observation to `judge`, with
/// whether `span` has passed, until `judge` returns a result.
async fn watch<T, F, Fut>(
    poll: Duration,
    span: Duration,
    mut observe: F,
    mut judge: impl FnMut(T, bool) -> Option<T>,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let until = Instant::now() + span;
    loop {
        let seen = observe().await;
        let past = Instant::now() >= until;
        if let Some(result) = judge(seen, past) {
            return result;
        }
        tokio::time::sleep(poll).await;
    }
}

/// Reads an integer from the environment, for the sizes of the long runs.
pub fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, got {v:?}")),
        Err(_) => default,
    }
}
