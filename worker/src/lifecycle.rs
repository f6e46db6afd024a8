//! How the worker stops consuming: the one place to read it.
//!
//! There are two reasons to stop taking messages, and one mechanism for
//! both. **Shutdown** (SIGTERM) is final: in-flight messages get the grace
//! period and the process exits. **Pause** is temporary: the CRM refused
//! our credential, or has been unreachable for a sustained period, so every
//! call would fail for a reason that is not the call's. Paused, the worker
//! returns what it holds to the queue without using up any attempts, takes
//! nothing new, probes the CRM now and then, and resumes by itself when the
//! probe succeeds.
//!
//! Each consuming run gets a [`CancellationToken`] that is a child of the
//! shutdown token; pausing cancels the run's token, shutting down cancels
//! every token. Whoever waits on "stop consuming" waits on one token, and
//! asks [`Lifecycle::is_shutting_down`] which of the two it was.

use std::fmt;
use std::sync::Mutex;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Why the worker paused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PauseReason {
    /// The CRM refused the credential (401, or a 403 that names a missing
    /// scope): an operator must fix the configuration or the CRM side.
    Credential { detail: String },
    /// The CRM's set-up is incomplete (a scope the credential lacks, a
    /// custom field missing): an operator must complete it in the CRM.
    Setup { detail: String },
    /// Every CRM request failed transiently for a sustained period.
    Outage { detail: String },
}

impl PauseReason {
    /// The `reason` label of `callsync_worker_paused`.
    pub fn label(&self) -> &'static str {
        match self {
            PauseReason::Credential { .. } => "credential",
            PauseReason::Setup { .. } => "setup",
            PauseReason::Outage { .. } => "crm_outage",
        }
    }

    pub const LABELS: [&'static str; 3] = ["credential", "setup", "crm_outage"];

    pub fn detail(&self) -> &str {
        match self {
            PauseReason::Credential { detail }
            | PauseReason::Setup { detail }
            | PauseReason::Outage { detail } => detail,
        }
    }
}

impl fmt::Display for PauseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PauseReason::Credential { detail } => {
                write!(f, "the CRM refused the credential: {detail}")
            }
            PauseReason::Setup { detail } => {
                write!(f, "the CRM's set-up is incomplete: {detail}")
            }
            PauseReason::Outage { detail } => write!(f, "the CRM is unreachable: {detail}"),
        }
    }
}

/// The worker's shutdown and pause state, shared by the consumer, the
/// message handlers and the operations endpoint.
#[derive(Debug)]
pub struct Lifecycle {
    shutdown: CancellationToken,
    /// The token of the current consuming run (a child of `shutdown`).
    run: Mutex<CancellationToken>,
    paused: watch::Sender<Option<PauseReason>>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self::new()
    }
}

impl Lifecycle {
    pub fn new() -> Self {
        let shutdown = CancellationToken::new();
        let run = shutdown.child_token();
        for label in PauseReason::LABELS {
            metrics::gauge!("callsync_worker_paused", "reason" => label).set(0.0);
        }
        Self {
            shutdown,
            run: Mutex::new(run),
            paused: watch::Sender::new(None),
        }
    }

    /// Begins the graceful shutdown: every run stops consuming.
    pub fn shut_down(&self) {
        self.shutdown.cancel();
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Resolves when shutdown begins.
    pub async fn shutting_down(&self) {
        self.shutdown.cancelled().await;
    }

    /// The token of the current consuming run: cancelled on pause or
    /// shutdown.
    pub fn run_token(&self) -> CancellationToken {
        lock(&self.run).clone()
    }

    /// Pauses consuming for `reason`. Returns false when already paused (the
    /// first reason stays: it is the one the operator is told about).
    pub fn pause(&self, reason: PauseReason) -> bool {
        let mut newly = false;
        self.paused.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            metrics::gauge!("callsync_worker_paused", "reason" => reason.label()).set(1.0);
            *current = Some(reason.clone());
            newly = true;
            true
        });
        if newly {
            lock(&self.run).cancel();
        }
        newly
    }

    /// Ends a pause: a new run may start consuming.
    pub fn resume(&self) {
        let mut run = lock(&self.run);
        self.paused
            .send_if_modified(|current| match current.take() {
                Some(reason) => {
                    metrics::gauge!("callsync_worker_paused", "reason" => reason.label()).set(0.0);
                    true
                }
                None => false,
            });
        if run.is_cancelled() && !self.shutdown.is_cancelled() {
            *run = self.shutdown.child_token();
        }
    }

    /// Why the worker is paused, if it is.
    pub fn paused(&self) -> Option<PauseReason> {
        self.paused.borrow().clone()
    }

    pub fn is_paused(&self) -> bool {
        self.paused.borrow().is_some()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credential() -> PauseReason {
        PauseReason::Credential {
            detail: "401".to_owned(),
        }
    }

    #[test]
    fn a_pause_stops_the_current_run_and_a_resume_starts_a_new_one() {
        let lifecycle = Lifecycle::new();
        let first = lifecycle.run_token();
        assert!(lifecycle.pause(credential()));
        assert!(first.is_cancelled());
        assert!(!lifecycle.is_shutting_down());
        assert_eq!(lifecycle.paused(), Some(credential()));

        lifecycle.resume();
        let second = lifecycle.run_token();
        assert!(!second.is_cancelled());
        assert!(lifecycle.paused().is_none());
    }

    #[test]
    fn the_first_reason_of_a_pause_is_kept() {
        let lifecycle = Lifecycle::new();
        assert!(lifecycle.pause(credential()));
        assert!(!lifecycle.pause(PauseReason::Outage {
            detail: "refused".to_owned()
        }));
        assert_eq!(lifecycle.paused(), Some(credential()));
    }

    #[test]
    fn shutdown_stops_every_run_and_no_resume_restarts_one() {
        let lifecycle = Lifecycle::new();
        let run = lifecycle.run_token();
        lifecycle.pause(credential());
        lifecycle.shut_down();
        lifecycle.resume();
        assert!(run.is_cancelled());
        assert!(lifecycle.run_token().is_cancelled());
        assert!(lifecycle.is_shutting_down());
    }
}
