//! `callsync-worker check`: proves a set-up before the first call.
//!
//! One line per requirement, in the order they depend on each other:
//! database, broker and queues, the CRM credential, each permission the CRM
//! can report on, the custom fields, a search. A requirement that cannot be
//! checked because an earlier one failed says so instead of failing again
//! for the same reason.
//!
//! It changes what the worker would change at its own start and nothing
//! else: it creates the ledger database and applies its migrations,
//! declares the queues, and creates the CRM's callsync custom fields where
//! they are missing. It creates no contact, call or task.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use callsync_shared::broker;
use callsync_shared::telemetry::Chain;
use callsync_shared::{Phone, Region};

use crate::config::WorkerConfig;
use crate::crm::{Budgets, ContactLookup, Crm, CrmError, CrmHealth, Shared};
use crate::ledger::Ledger;

/// A number reserved for fiction (NANPA's 555-01XX range): the search it
/// runs proves the search is accepted and can find nobody real.
const PROBE_NUMBER: &str = "+12025550100";

/// How long one requirement may take before it counts as failed.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// The outcome of one requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Holds(String),
    /// Failed; the text says what to fix.
    Fails(String),
    /// Not checked because a requirement it depends on failed.
    Unchecked(String),
}

/// One requirement and its verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub requirement: String,
    pub verdict: Verdict,
}

impl Line {
    fn new(requirement: impl Into<String>, verdict: Verdict) -> Self {
        Self {
            requirement: requirement.into(),
            verdict,
        }
    }

    pub fn holds(&self) -> bool {
        matches!(self.verdict, Verdict::Holds(_))
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.verdict {
            Verdict::Holds(note) => write!(f, "✓ {}: {note}", self.requirement),
            Verdict::Fails(fix) => write!(f, "✗ {}: {fix}", self.requirement),
            Verdict::Unchecked(why) => write!(f, "· {}: not checked ({why})", self.requirement),
        }
    }
}

/// Checks every requirement of `config`; all hold when every line does.
pub async fn run(config: &WorkerConfig) -> Vec<Line> {
    let (database, ledger) = database(config).await;
    let mut lines = vec![database, broker_and_queues(config).await];
    let http = config.crm.http();
    let shared = Shared {
        budgets: Arc::new(Budgets::new(http.rate, http.search_rate)),
        health: Arc::new(CrmHealth::new(config.crm_outage_after)),
        // Rotated refresh tokens are kept in the ledger, as the worker does.
        ledger: ledger.map(|l| l.pool().clone()),
        mapping: None,
    };
    match config.crm.build(shared) {
        Ok(crm) => {
            lines.extend(crm_requirements(crm.as_ref(), config.crm.credential_help()).await);
        }
        Err(e) => lines.push(Line::new(
            "CRM client",
            Verdict::Fails(format!("cannot be built: {}", Chain(&e))),
        )),
    }
    lines
}

async fn database(config: &WorkerConfig) -> (Line, Option<Ledger>) {
    let requirement = "database reachable and migrated";
    let opened = tokio::time::timeout(
        STEP_TIMEOUT,
        Ledger::connect(
            config.database_url.expose(),
            1,
            config.crm_name(),
            config.lease,
        ),
    )
    .await;
    let (verdict, ledger) = match opened {
        Ok(Ok(ledger)) => match ledger.ping().await {
            Ok(()) => (
                Verdict::Holds("the ledger's schema is up to date".to_owned()),
                Some(ledger),
            ),
            Err(e) => (
                Verdict::Fails(format!("{}; check CALLSYNC_DATABASE_URL", Chain(&e))),
                None,
            ),
        },
        Ok(Err(e)) => (
            Verdict::Fails(format!(
                "{}; check CALLSYNC_DATABASE_URL and that PostgreSQL accepts connections",
                Chain(&e)
            )),
            None,
        ),
        Err(_) => (
            Verdict::Fails(format!(
                "no answer within {STEP_TIMEOUT:?}; check CALLSYNC_DATABASE_URL"
            )),
            None,
        ),
    };
    (Line::new(requirement, verdict), ledger)
}

async fn broker_and_queues(config: &WorkerConfig) -> Line {
    let requirement = "broker reachable and queues declared";
    let connection = match broker::connect(config.amqp_url.expose(), "callsync-worker check").await
    {
        Ok(connection) => connection,
        Err(e) => {
            return Line::new(
                requirement,
                Verdict::Fails(format!(
                    "{e}; check CALLSYNC_AMQP_URL and that RabbitMQ accepts connections"
                )),
            );
        }
    };
    // Declaring is idempotent and what every service does at start; it
    // fails when a queue exists with other arguments, which is worth
    // knowing before the worker meets it.
    let declared = broker::within("declaring the queues", async {
        let channel = connection.create_channel().await?;
        config.topology.declare_core(&channel).await?;
        config
            .topology
            .declare_retry_tiers(&channel, &config.retry_delays)
            .await
    })
    .await;
    broker::close(&connection, "check done").await;
    let verdict = match declared {
        Ok(()) => Verdict::Holds(format!(
            "{} and {} retry tiers",
            config.topology.calls_queue(),
            config.retry_delays.len()
        )),
        Err(e) => Verdict::Fails(format!(
            "{e}; a queue declared with other arguments must be deleted (after draining it) or CALLSYNC_AMQP_PREFIX changed"
        )),
    };
    Line::new(requirement, verdict)
}

/// The CRM's requirements: the credential first, then what needs it.
async fn crm_requirements(crm: &dyn Crm, credential_help: &str) -> Vec<Line> {
    let name = crm.name();
    let credential = if crm.manages_contacts() {
        format!("{name} credential accepted")
    } else {
        format!("{name} target answers")
    };
    let probed = timed(crm.probe()).await;
    // A refusal for a scope accepts the credential itself: the permission
    // lines below name the scope it lacks.
    let scope_refused = matches!(probed, Err(CrmError::Setup { .. }));
    if let Err(e) = probed
        && !scope_refused
    {
        let fix = match &e {
            CrmError::Unauthorized { .. } => format!("{e}; {credential_help}"),
            _ => format!("{e}; check the CRM's base URL and that it is reachable from here"),
        };
        let unchecked = |r: &str| {
            Line::new(
                r,
                Verdict::Unchecked("needs an accepted credential".to_owned()),
            )
        };
        let mut lines = vec![Line::new(credential, Verdict::Fails(fix))];
        if crm.manages_contacts() {
            lines.extend([
                unchecked("permissions"),
                unchecked("custom fields present or created"),
                unchecked("contact search accepted"),
            ]);
        }
        return lines;
    }
    if !crm.manages_contacts() {
        // A target that only receives reports (the webhook) has no fields
        // or search to check, and nothing more to ask without sending one.
        return vec![Line::new(
            credential,
            Verdict::Holds(
                "its URL answered; the signature is proven by the first report".to_owned(),
            ),
        )];
    }
    let accepted = if scope_refused {
        "the token is accepted; the scopes it lacks are named below"
    } else {
        "an authenticated read succeeded"
    };
    let mut lines = vec![Line::new(credential, Verdict::Holds(accepted.to_owned()))];
    match timed(crm.permissions()).await {
        Ok(permissions) => lines.extend(permissions.into_iter().map(|p| {
            let verdict = if p.granted {
                Verdict::Holds(format!("granted ({})", p.needed_for))
            } else {
                Verdict::Fails(format!(
                    "missing: grant it to callsync's app, needed for {}; {credential_help}",
                    p.needed_for
                ))
            };
            Line::new(format!("permission {}", p.name), verdict)
        })),
        Err(e) => lines.push(Line::new(
            "permissions",
            Verdict::Fails(format!("cannot be read: {e}")),
        )),
    }
    lines.push(Line::new(
        "custom fields present or created",
        match timed(crm.prepare()).await {
            Ok(()) => Verdict::Holds("callsync's fields exist".to_owned()),
            Err(e) => Verdict::Fails(refusal(&e, credential_help)),
        },
    ));
    let number = Phone::parse(PROBE_NUMBER, Region::US);
    let lookup = ContactLookup::new(Some(&number), None);
    lines.push(Line::new(
        "contact search accepted",
        match timed(crm.find_contact(&lookup)).await {
            Ok(_) => Verdict::Holds("a search by phone number was answered".to_owned()),
            Err(e) => Verdict::Fails(refusal(&e, credential_help)),
        },
    ));
    lines
}

fn refusal(error: &CrmError, credential_help: &str) -> String {
    match error {
        CrmError::Unauthorized { .. } => format!("{error}; {credential_help}"),
        other => other.to_string(),
    }
}

async fn timed<T>(step: impl Future<Output = Result<T, CrmError>>) -> Result<T, CrmError> {
    tokio::time::timeout(STEP_TIMEOUT, step)
        .await
        .unwrap_or_else(|_| {
            Err(CrmError::Unavailable {
                detail: format!("no answer within {STEP_TIMEOUT:?}"),
                applied: crate::crm::Applied::No,
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_verdict_reads_as_one_line() {
        let holds = Line::new("database", Verdict::Holds("ok".into()));
        let fails = Line::new("broker", Verdict::Fails("check CALLSYNC_AMQP_URL".into()));
        let unchecked = Line::new("search", Verdict::Unchecked("needs a credential".into()));
        assert_eq!(holds.to_string(), "✓ database: ok");
        assert_eq!(fails.to_string(), "✗ broker: check CALLSYNC_AMQP_URL");
        assert_eq!(
            unchecked.to_string(),
            "· search: not checked (needs a credential)"
        );
        assert!(holds.holds() && !fails.holds() && !unchecked.holds());
    }
}
