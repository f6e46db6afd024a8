//! The `callsync-worker` command line: run the worker, or an operator command.
//!
//! `main.rs` is a thin wrapper over [`run`], so that the end-to-end tests can
//! build the very same program as a process they can kill.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use callsync_shared::config::{ConfigError, Env, parse_duration};
use callsync_shared::telemetry::Chain;
use clap::{Parser, Subcommand};
use time::OffsetDateTime;

use crate::config::OpsConfig;
use crate::console::{self, ConsoleConfig};
use crate::dlq::{Dlq, Parked, Selection, format_age};
use crate::ledger::Ledger;
use crate::reconcile::round::Counts;
use crate::reconcile::{self, Outbox, PlatformConfig, ReconcileConfig, backfill};
use crate::{Worker, WorkerConfig};
use callsync_shared::Source;

/// Syncs voice-AI call reports from RabbitMQ into a CRM, exactly once.
///
/// Without a command, runs the worker. Settings come from CALLSYNC_*
/// environment variables (see docs/operations.md).
#[derive(Debug, Parser)]
#[command(name = "callsync-worker", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Exit 0 if this host's worker is ready (for container healthchecks).
    Healthcheck {
        /// Probe this host's console (CALLSYNC_CONSOLE_ADDR) instead.
        #[arg(long)]
        console: bool,
    },
    /// Check the set-up (database, broker, CRM credential, permissions,
    /// custom fields, a search): one line per requirement, exit 0 only when
    /// all hold. Run it first after configuring a CRM.
    Check,
    /// Queue depths and ledger counts.
    Status,
    /// Find calls whose webhook never arrived: list a platform's calls in a
    /// window and queue those the ledger does not know, exactly as ingest
    /// would have. Needs CALLSYNC_<SOURCE>_API_KEY.
    Backfill {
        /// The source whose platform to list; the platform must document a
        /// way to list past calls.
        #[arg(long)]
        source: Source,
        /// From when: a duration before now (2h, 3d) or an RFC 3339 time.
        #[arg(long)]
        since: String,
        /// Until when (default: now), in the same forms.
        #[arg(long)]
        until: Option<String>,
        /// Count only: list and compare with the ledger, queue nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Serve the operator console (web pages: overview, calls, a call's
    /// story, parked calls) on CALLSYNC_CONSOLE_ADDR. Needs
    /// CALLSYNC_CONSOLE_TOKEN; keep it behind the cluster's ingress auth too.
    Console,
    /// Parked messages: calls that could not be synced.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// A table of parked messages: id, source, call id, reason, attempts, age.
    List {
        /// Show at most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One parked message in full, by message id or call id.
    Show { id: String },
    /// Send parked messages back to the work queue (confirmed), then remove them.
    Replay {
        /// Every parked message.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        /// Message ids or call ids.
        ids: Vec<String>,
    },
    /// Delete parked messages parked longer ago than the given age (e.g. 7d).
    Purge {
        #[arg(long, value_parser = parse_age)]
        older_than: Duration,
    },
}

fn parse_age(text: &str) -> Result<Duration, String> {
    parse_duration(text)
}

/// Runs the command given by the process arguments and environment.
pub async fn run() -> ExitCode {
    let cli = Cli::parse();
    let env = Env::from_process();
    match cli.command {
        None => run_worker(&env).await,
        Some(Command::Healthcheck { console: true }) => match ConsoleConfig::from_env(&env) {
            Ok(config) => {
                callsync_shared::health::exit_with_probe(config.addr.port(), "/readyz").await
            }
            Err(e) => config_error(&e),
        },
        Some(Command::Healthcheck { console: false }) => match WorkerConfig::from_env(&env) {
            Ok(config) => {
                callsync_shared::health::exit_with_probe(config.metrics_addr.port(), "/readyz")
                    .await
            }
            Err(e) => config_error(&e),
        },
        Some(Command::Check) => match WorkerConfig::from_env(&env) {
            Ok(config) => check(&config).await,
            Err(e) => config_error(&e),
        },
        Some(Command::Status) => match OpsConfig::from_env(&env) {
            Ok(config) => report(status(&config).await),
            Err(e) => config_error(&e),
        },
        Some(Command::Backfill {
            source,
            since,
            until,
            dry_run,
        }) => match BackfillConfig::from_env(&env, source) {
            Ok(config) => {
                let request = BackfillRequest {
                    since,
                    until,
                    dry_run,
                };
                report(backfill(&config, &request).await)
            }
            Err(e) => config_error(&e),
        },
        Some(Command::Console) => console(&env).await,
        Some(Command::Dlq { command }) => match OpsConfig::from_env(&env) {
            Ok(config) => report(dlq(&config, command).await),
            Err(e) => config_error(&e),
        },
    }
}

fn config_error(e: &ConfigError) -> ExitCode {
    eprintln!("callsync-worker: configuration error: {e}");
    ExitCode::from(2)
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("callsync-worker: {}", Chain(&*e));
            ExitCode::FAILURE
        }
    }
}

async fn run_worker(env: &Env) -> ExitCode {
    let config = match WorkerConfig::from_env(env) {
        Ok(config) => config,
        Err(e) => return config_error(&e),
    };
    config.log.init();
    let worker = match Worker::build(config).await {
        Ok(worker) => worker,
        Err(e) => {
            tracing::error!(error = %Chain(&e), "cannot start");
            eprintln!("callsync-worker: {}", Chain(&e));
            return ExitCode::FAILURE;
        }
    };
    match worker.run_until(callsync_shared::shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("callsync-worker: {}", Chain(&e));
            ExitCode::FAILURE
        }
    }
}

async fn console(env: &Env) -> ExitCode {
    let config = match ConsoleConfig::from_env(env) {
        Ok(config) => config,
        Err(e) => return config_error(&e),
    };
    match ConsoleConfig::log(env) {
        Ok(log) => log.init(),
        Err(e) => return config_error(&e),
    }
    let server = match console::Server::build(config).await {
        Ok(server) => server,
        Err(e) => {
            tracing::error!(error = %Chain(&e), "cannot start the console");
            eprintln!("callsync-worker: {}", Chain(&e));
            return ExitCode::FAILURE;
        }
    };
    match server.run_until(callsync_shared::shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("callsync-worker: {}", Chain(&e));
            ExitCode::FAILURE
        }
    }
}

async fn check(config: &WorkerConfig) -> ExitCode {
    println!("checking the set-up for CALLSYNC_CRM={}", config.crm_name());
    let lines = crate::check::run(config).await;
    for line in &lines {
        println!("{line}");
    }
    let failed = lines.iter().filter(|l| !l.holds()).count();
    if failed == 0 {
        println!("all {} requirements hold", lines.len());
        ExitCode::SUCCESS
    } else {
        println!("{failed} of {} requirements do not hold", lines.len());
        ExitCode::FAILURE
    }
}

async fn status(config: &OpsConfig) -> anyhow::Result<()> {
    let dlq = Dlq::connect(config.amqp_url.expose(), config.topology.clone()).await?;
    let mut queues = vec![config.topology.calls_queue()];
    queues.extend(
        config
            .retry_delays
            .iter()
            .map(|d| config.topology.retry_queue(*d)),
    );
    queues.push(config.topology.parking_queue());
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{:<32} {:>10}", "QUEUE", "MESSAGES");
    for queue in queues {
        let depth = dlq.depth(&queue).await?;
        let depth = depth.map_or_else(|| "missing".to_owned(), |n| n.to_string());
        let _ = writeln!(out, "{queue:<32} {depth:>10}");
    }
    dlq.close().await;
    let ledger = Ledger::open_existing(config.database_url.expose())
        .await
        .context("cannot read the ledger")?;
    let counts = ledger.counts().await?;
    let _ = writeln!(
        out,
        "\nledger: {} synced, {} pending, {} parked",
        counts.synced, counts.pending, counts.parked
    );
    Ok(())
}

async fn dlq(config: &OpsConfig, command: DlqCommand) -> anyhow::Result<()> {
    let dlq = Dlq::connect(config.amqp_url.expose(), config.topology.clone()).await?;
    let result = match command {
        DlqCommand::List { limit } => dlq.list(limit).await.map(|list| print_table(&list)),
        DlqCommand::Show { id } => dlq.show(&id).await.map(|found| match found {
            Some(parked) => print_one(&parked),
            None => println!("no parked message with id or call id {id:?}"),
        }),
        DlqCommand::Replay { all, ids } => {
            if !all && ids.is_empty() {
                dlq.close().await;
                bail!("say which messages to replay: --all or one or more ids");
            }
            let selection = if all {
                Selection::All
            } else {
                Selection::Ids(ids.clone())
            };
            dlq.replay(&selection).await.map(|replayed| {
                for p in &replayed {
                    println!("replayed {} ({}:{})", p.id, p.source, p.call_id);
                }
                println!("{} message(s) replayed", replayed.len());
                if let Selection::Ids(ids) = &selection {
                    for id in ids
                        .iter()
                        .filter(|id| !replayed.iter().any(|p| p.id == **id || p.call_id == **id))
                    {
                        println!("not found: {id}");
                    }
                }
            })
        }
        DlqCommand::Purge { older_than } => dlq.purge_older_than(older_than).await.map(|purged| {
            println!(
                "{} message(s) parked more than {} ago purged",
                purged.len(),
                format_age(older_than)
            );
        }),
    };
    dlq.close().await;
    Ok(result?)
}

/// What `backfill` needs: the queue and the ledger, and one platform.
struct BackfillConfig {
    ops: OpsConfig,
    platform: PlatformConfig,
    grace: Duration,
}

impl BackfillConfig {
    fn from_env(env: &Env, source: Source) -> Result<Self, ConfigError> {
        let key_var = source.var("API_KEY");
        if reconcile::api(source).is_none() {
            return Err(ConfigError {
                var: "--source".to_owned(),
                message: format!(
                    "{} documents no API to list past calls; sources with one: {}",
                    source.platform(),
                    Source::ALL
                        .into_iter()
                        .filter(|s| reconcile::api(*s).is_some())
                        .map(Source::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        let platform = PlatformConfig::from_env(env, source)?.ok_or_else(|| ConfigError {
            var: key_var,
            message: format!("required to list {}'s calls", source.platform()),
        })?;
        Ok(Self {
            ops: OpsConfig::from_env(env)?,
            platform,
            grace: ReconcileConfig::from_env(env)?.grace,
        })
    }
}

struct BackfillRequest {
    since: String,
    until: Option<String>,
    dry_run: bool,
}

async fn backfill(config: &BackfillConfig, request: &BackfillRequest) -> anyhow::Result<()> {
    let now = OffsetDateTime::now_utc();
    let since = backfill::parse_time(&request.since, now).map_err(|e| anyhow!("--since: {e}"))?;
    let until = match &request.until {
        Some(until) => backfill::parse_time(until, now).map_err(|e| anyhow!("--until: {e}"))?,
        None => now,
    };
    let window = backfill::window(since, until).map_err(|e| anyhow!(e))?;
    let source = config.platform.source;
    let platform = config
        .platform
        .build(reconcile::REQUEST_TIMEOUT)
        .with_context(|| format!("cannot build the {source} API client"))?;
    // Created and migrated if need be, as the worker would: a backfill
    // before the first worker started knows no call and queues them all.
    let ledger = Ledger::connect(
        config.ops.database_url.expose(),
        2,
        "",
        Duration::from_secs(30),
    )
    .await
    .context("cannot open the ledger")?;
    let outbox = if request.dry_run {
        None
    } else {
        Some(
            Outbox::connect(
                config.ops.amqp_url.expose(),
                config.ops.topology.clone(),
                Duration::from_secs(10),
            )
            .await
            .context("cannot reach the broker")?,
        )
    };
    println!(
        "{} {} calls started {} to {}{}",
        if request.dry_run {
            "counting"
        } else {
            "backfilling"
        },
        source,
        format_time(window.start),
        format_time(window.end),
        if request.dry_run {
            " (dry run: nothing is queued)"
        } else {
            ""
        },
    );
    let bar = indicatif::ProgressBar::new_spinner();
    bar.enable_steady_tick(Duration::from_millis(200));
    let verb = if request.dry_run {
        "to queue"
    } else {
        "queued"
    };
    let result = backfill::walk(
        platform.as_ref(),
        &ledger,
        outbox.as_ref(),
        &window,
        config.grace,
        |counts| bar.set_message(summary(counts, verb)),
    )
    .await;
    bar.finish_and_clear();
    if let Some(outbox) = outbox {
        outbox.close().await;
    }
    match result {
        Ok(counts) => {
            println!("{}", summary(&counts, verb));
            if counts.unfinished > 0 {
                println!(
                    "{} call(s) still in progress, not yet analysed or ended less than {} ago: run again later",
                    counts.unfinished,
                    callsync_shared::config::format_duration(config.grace)
                );
            }
            Ok(())
        }
        Err((error, counts)) => {
            println!("{}", summary(&counts, verb));
            Err(anyhow!(
                "backfill stopped: {}; the calls counted above as {verb} are in the queue, run it again to finish",
                Chain(&error)
            ))
        }
    }
}

fn summary(counts: &Counts, verb: &str) -> String {
    format!(
        "listed {}, known {}, {verb} {}, unfinished {}, unreadable {}",
        counts.listed, counts.known, counts.queued, counts.unfinished, counts.unreadable
    )
}

fn format_time(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn print_table(list: &[Parked]) {
    let now = OffsetDateTime::now_utc();
    println!(
        "{:<36}  {:<9}  {:<36}  {:>8}  {:>7}  REASON",
        "ID", "SOURCE", "CALL ID", "ATTEMPTS", "AGE"
    );
    for p in list {
        let age = p.age(now).map_or_else(|| "-".to_owned(), format_age);
        let reason: String = p.reason.chars().take(80).collect();
        println!(
            "{:<36}  {:<9}  {:<36}  {:>8}  {:>7}  {reason}",
            p.id, p.source, p.call_id, p.attempts, age
        );
    }
    println!("{} parked message(s)", list.len());
}

fn print_one(p: &Parked) {
    let now = OffsetDateTime::now_utc();
    println!("id:          {}", p.id);
    println!("source:      {}", p.source);
    println!("call id:     {}", p.call_id);
    println!("reason:      {}", p.reason);
    println!("attempts:    {}", p.attempts);
    println!(
        "parked:      {}",
        p.age(now).map_or_else(
            || "unknown".to_owned(),
            |a| format!("{} ago", format_age(a))
        )
    );
    if let Some(e) = &p.first_error {
        println!("first error: {e}");
    }
    if let Some(e) = &p.last_error {
        println!("last error:  {e}");
    }
    println!("body:\n{}", String::from_utf8_lossy(&p.body));
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn replay_takes_ids_or_all_but_not_both() {
        assert!(Cli::try_parse_from(["callsync-worker", "dlq", "replay", "--all"]).is_ok());
        assert!(Cli::try_parse_from(["callsync-worker", "dlq", "replay", "a", "b"]).is_ok());
        assert!(Cli::try_parse_from(["callsync-worker", "dlq", "replay", "--all", "a"]).is_err());
    }

    #[test]
    fn backfill_needs_a_source_and_a_start() {
        let cli = Cli::try_parse_from([
            "callsync-worker",
            "backfill",
            "--source",
            "vapi",
            "--since",
            "2h",
            "--dry-run",
        ])
        .unwrap();
        let Some(Command::Backfill {
            source, dry_run, ..
        }) = cli.command
        else {
            panic!("expected backfill");
        };
        assert_eq!(source, Source::Vapi);
        assert!(dry_run);
        assert!(Cli::try_parse_from(["callsync-worker", "backfill", "--source", "vapi"]).is_err());
        assert!(
            Cli::try_parse_from([
                "callsync-worker",
                "backfill",
                "--source",
                "nosuch",
                "--since",
                "1h"
            ])
            .is_err()
        );
    }

    #[test]
    fn purge_reads_an_age() {
        let cli =
            Cli::try_parse_from(["callsync-worker", "dlq", "purge", "--older-than", "7d"]).unwrap();
        let Some(Command::Dlq {
            command: DlqCommand::Purge { older_than },
        }) = cli.command
        else {
            panic!("expected dlq purge");
        };
        assert_eq!(older_than, Duration::from_secs(7 * 86_400));
    }
}
