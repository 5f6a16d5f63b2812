//! The pipeline benchmark of issue 8: `upline serve` (the release binary, as a separate process)
//! under open-loop signed Shopify webhooks at a ladder of rates, next to a bare HMAC handler, with
//! the SLA table printed and a JSON report in target/bench-pipeline.json. All the logic is in
//! `upline::bench` (also `upline bench`); this is only the cargo entry point.
//!
//! `cargo bench --bench pipeline -- --rates 250,500 --seconds 30 --distributors 10000`. Without
//! `--bench` (under `cargo test --benches`) or with `UPLINE_BENCH_QUICK=1` it is a smoke run of a
//! few seconds.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use upline::bench::{BenchArgs, Launch};

#[derive(Parser)]
#[command(name = "pipeline", about = "upline's pipeline benchmark (issue 8)")]
struct Cli {
    #[command(flatten)]
    args: BenchArgs,
    /// Passed by `cargo bench`: the full run.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Cargo builds the binary next to this bench and says where: target/release/upline under
/// `cargo bench`, target/debug/upline under `cargo test --benches`.
const BINARY: &str = env!("CARGO_BIN_EXE_upline");

fn main() -> ExitCode {
    let full = std::env::args().any(|a| a == "--bench");
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Under `cargo test --benches`, arguments meant for test harnesses may arrive: the smoke
        // run ignores them; the real run refuses them.
        Err(e) if !full => {
            eprintln!("pipeline: ignoring arguments ({})", e.kind());
            Cli {
                args: BenchArgs::default(),
                bench: false,
            }
        }
        Err(e) => e.exit(),
    };
    let binary = PathBuf::from(BINARY);
    // target/{profile}/upline -> target/bench-pipeline.json
    let target = binary
        .parent()
        .and_then(Path::parent)
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf);
    let launch = Launch {
        binary,
        json: target.join("bench-pipeline.json"),
        quick: !cli.bench,
    };
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(upline::bench::run(&cli.args, &launch)));
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
