//! Keyway's benchmark harness.
//!
//! `keyway-bench run` measures, in one run on this machine:
//! - API load (fixed concurrency, fixed time, one client process) against Keyway, Seam's fake
//!   server and a bare axum handler (the loopback ceiling): `access_codes/list` for a lock with
//!   50 codes, `access_codes/get`, `access_codes/create` — requests/s, p50, p99 and ratios;
//! - whether acknowledged creates survive `kill -9`;
//! - the engine: N codes on M sandbox locks to `set`, with zero delay and with a delay per
//!   lock operation, against the per-lock lower bound;
//! - the scheduler: W windows opening in the same second, lag to `set`;
//! - scale: a store of many codes — start-up time, resident memory, list latency.
//!
//! Results go to `bench/results/` as JSON and Markdown. Everything runs on 127.0.0.1, bounded.

mod load;
mod scenarios;
mod servers;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "keyway-bench", about = "Keyway's benchmark harness")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the benchmarks and write the results.
    Run(scenarios::RunArgs),
    /// Serve a fixed JSON body on every route (the loopback ceiling); used by `run`.
    Ceiling {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        body: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Run(args) => runtime.block_on(scenarios::run(args)),
        Command::Ceiling { port, body } => runtime.block_on(servers::serve_ceiling(port, body)),
    }
}

/// Milliseconds with three decimals, for tables.
pub fn ms(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1_000_000.0).round() / 1000.0
}
