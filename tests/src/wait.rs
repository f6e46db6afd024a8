//! Waiting without guessing: every wait in the tests has a deadline and,
//! when it runs out, fails with what it last saw, so a missing state fails
//! the test with a reason instead of hanging CI or passing by luck.

use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

/// How often [`eventually`] looks again.
const POLL: Duration = Duration::from_millis(50);

/// Polls `observe` until `done` holds for what it returns, and returns that.
/// Past `deadline` it panics naming `what` and the last observation.
pub async fn eventually<T, F, Fut>(
    deadline: Duration,
    what: &str,
    mut observe: F,
    done: impl Fn(&T) -> bool,
) -> T
where
    T: Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let until = Instant::now() + deadline;
    loop {
        let seen = observe().await;
        if done(&seen) {
            return seen;
        }
        assert!(
            Instant::now() < until,
            "{what}: not reached within {deadline:?}; last seen: {seen:#?}"
        );
        tokio::time::sleep(POLL).await;
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
