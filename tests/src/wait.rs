//! Waiting without guessing: every wait in the tests has a deadline and,
//! when it runs out, fails with what it last saw, so a missing state fails
//! the test with a reason instead of hanging CI or passing by luck.

use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

/// How often [`eventually`] and [`throughout`] look again.
const POLL: Duration = Duration::from_millis(50);

/// Something to look at again and again: an async closure or a function
/// returning a future. The one bound every wait here takes, so that a
/// wait's signature says what it waits for and not how it is called.
pub trait Observe<T> {
    fn observe(&mut self) -> impl Future<Output = T>;
}

impl<T, F, Fut> Observe<T> for F
where
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    fn observe(&mut self) -> impl Future<Output = T> {
        self()
    }
}

/// Polls `observe` until `done` holds for what it returns, and returns that.
/// Past `deadline` it panics naming `what` and the last observation.
pub async fn eventually<T: Debug>(
    deadline: Duration,
    what: &str,
    observe: impl Observe<T>,
    done: impl Fn(&T) -> bool,
) -> T {
    eventually_every(POLL, deadline, what, observe, done).await
}

/// [`eventually`], looking every `poll` (for observations that cost more
/// than a read of memory).
pub async fn eventually_every<T: Debug>(
    poll: Duration,
    deadline: Duration,
    what: &str,
    observe: impl Observe<T>,
    done: impl Fn(&T) -> bool,
) -> T {
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
pub async fn throughout<T: Debug>(
    window: Duration,
    what: &str,
    observe: impl Observe<T>,
    holds: impl Fn(&T) -> bool,
) -> T {
    watch(POLL, window, observe, |seen, past| {
        assert!(holds(&seen), "{what}: broken; seen: {seen:#?}");
        past.then_some(seen)
    })
    .await
}

/// Observes every `poll` and hands each observation to `judge`, with
/// whether `span` has passed, until `judge` returns a result.
async fn watch<T>(
    poll: Duration,
    span: Duration,
    mut observe: impl Observe<T>,
    mut judge: impl FnMut(T, bool) -> Option<T>,
) -> T {
    let until = Instant::now() + span;
    loop {
        let seen = observe.observe().await;
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
