//! `upline`: the one command users run. A thin binary: parsing and printing here, decisions in
//! the library crates.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod explain;
mod inputs;

#[derive(Parser)]
#[command(
    name = "upline",
    version,
    about = "From cart to commission: an auditable MLM commission ledger"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Commission plans: validate one, or explain what an order would pay under it.
    Plan {
        #[command(subcommand)]
        command: PlanCommand,
    },
}

#[derive(Subcommand)]
enum PlanCommand {
    /// Checks a plan file; prints a summary, or every problem with the field it is in.
    Validate { file: PathBuf },
    /// The what-if calculator: computes one order's commissions against a network and prints
    /// the per-beneficiary table and the trace.
    Explain {
        #[arg(long)]
        plan: PathBuf,
        #[arg(long)]
        order: PathBuf,
        #[arg(long)]
        network: PathBuf,
        /// Print the calculation as JSON (the same value the order's events record).
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Plan {
            command: PlanCommand::Validate { file },
        } => explain::validate(&file),
        Command::Plan {
            command:
                PlanCommand::Explain {
                    plan,
                    order,
                    network,
                    json,
                },
        } => explain::explain(&plan, &order, &network, json),
    };
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
