//! `bench`: how fast callsync accepts and syncs, against ceilings measured
//! in the same run. Needs the local RabbitMQ and PostgreSQL; loopback only.
//!
//! ```sh
//! cargo run --release -p callsync-tests --bin bench             # full run, a few minutes
//! cargo run --release -p callsync-tests --bin bench -- --smoke  # tiny sizes
//! cargo run --release -p callsync-tests --bin bench -- --scenario sources --scenario known-callers
//! cargo run --release -p callsync-tests --bin bench -- --scenario latency --scenario worker-memory
//! ```
//!
//! Prints Markdown tables and writes them as JSON (`--out`, default
//! `bench-results/bench.json`).

use std::path::PathBuf;
use std::process::ExitCode;

use callsync_tests::bench::{self, Options, Scenario};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "bench",
    about = "callsync benchmark: ingest ceilings, worker throughput, rate limits, memory, signature schemes, known callers, new callers, latency, worker memory under a backlog, requests with a full mapping, the cost of reading a body"
)]
struct Args {
    /// Tiny sizes, to check that the benchmark runs.
    #[arg(long)]
    smoke: bool,
    /// Run only this scenario (repeat for several); all when not given.
    #[arg(long, value_enum)]
    scenario: Vec<Scenario>,
    /// Where to write the JSON report.
    #[arg(long, default_value = "bench-results/bench.json")]
    out: PathBuf,
    /// Seconds measured per ingest cell.
    #[arg(long)]
    seconds: Option<f64>,
    /// How many rounds of (b), (c) and (d) to alternate per connection count.
    #[arg(long)]
    pairs: Option<usize>,
    /// Calls per worker-throughput measurement.
    #[arg(long)]
    calls: Option<usize>,
    /// Calls in the rate-limit measurement.
    #[arg(long)]
    rate_limit_calls: Option<usize>,
    /// Calls in the known-callers workload (from a fifth as many callers).
    #[arg(long)]
    known_callers_calls: Option<usize>,
    /// Calls in the new-callers backlog (each from a new caller).
    #[arg(long)]
    new_callers_calls: Option<usize>,
    /// Measured calls of each kind of caller per CRM in the latency scenario.
    #[arg(long)]
    latency_calls: Option<usize>,
    /// Calls queued before the worker starts in the worker-memory scenario.
    #[arg(long)]
    backlog_memory_calls: Option<usize>,
    /// Calls of each kind of caller per CRM in the mapping scenario.
    #[arg(long)]
    mapping_calls: Option<usize>,
    /// A variable for `callsync-ingest` in scenario 1, as NAME=VALUE
    /// (repeat for several), to measure it with other settings.
    #[arg(long, value_parser = name_value)]
    ingest_var: Vec<(String, String)>,
    /// A variable for every worker the scenarios start, as NAME=VALUE
    /// (repeat for several), set after the scenario's own.
    #[arg(long, value_parser = name_value)]
    worker_var: Vec<(String, String)>,
    /// Internal: run one server under test (used by the benchmark itself).
    #[arg(long, hide = true)]
    role: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(role) = &args.role {
        return match bench::roles::run(role).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench role {role}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    callsync_tests::harness::require_services().await;
    let mut options = if args.smoke {
        Options::smoke()
    } else {
        Options::full()
    };
    if let Some(s) = args.seconds {
        options.seconds_per_cell = s;
    }
    if let Some(n) = args.pairs {
        options.pairs = n.max(1);
    }
    if let Some(n) = args.calls {
        options.worker_calls = n;
    }
    if let Some(n) = args.rate_limit_calls {
        options.rate_limit_calls = n;
    }
    if let Some(n) = args.known_callers_calls {
        options.known_callers_calls = n.max(1);
    }
    if let Some(n) = args.new_callers_calls {
        options.new_callers_calls = n.max(1);
    }
    if let Some(n) = args.latency_calls {
        options.latency_calls = n.max(1);
    }
    if let Some(n) = args.backlog_memory_calls {
        options.backlog_memory_calls = n.max(1);
    }
    if let Some(n) = args.mapping_calls {
        options.mapping_calls = n.max(1);
    }
    options.ingest_vars.clone_from(&args.ingest_var);
    options.worker_vars.clone_from(&args.worker_var);
    if !args.scenario.is_empty() {
        options.scenarios = args.scenario.clone();
    }
    let started = std::time::Instant::now();
    let report = match bench::run(&options).await {
        Ok(report) => report,
        Err(e) => {
            eprintln!("bench: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", bench::render(&report));
    println!("(ran in {:.0} s)", started.elapsed().as_secs_f64());
    if let Some(dir) = args.out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match serde_json::to_vec_pretty(&report).map(|json| std::fs::write(&args.out, json)) {
        Ok(Ok(())) => {
            println!("JSON: {}", args.out.display());
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("bench: cannot write {}", args.out.display());
            ExitCode::FAILURE
        }
    }
}

fn name_value(arg: &str) -> Result<(String, String), String> {
    arg.split_once('=')
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .ok_or_else(|| format!("{arg:?} is not NAME=VALUE"))
}
