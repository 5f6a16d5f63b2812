//! `upline`: the one command users run. A thin binary: parsing and printing here, everything
//! else in the library crates.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use upline::config::ServeConfig;
use upline::{demo, explain, server};

/// glibc's malloc and free took about a sixth of `serve`'s CPU in the issue 8 profile (many
/// short-lived JSON strings and rows); mimalloc's thread-local free lists cost a fraction.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

/// Where the embedded event store, inbox and read store live.
#[derive(clap::Args, Clone)]
struct DataDir {
    #[arg(long, env = "UPLINE_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
}

impl DataDir {
    fn config(&self) -> ServeConfig {
        ServeConfig {
            data_dir: self.data_dir.clone(),
            ..ServeConfig::default()
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Runs the webhook gateway, the inbox worker and the commission postings.
    Serve {
        /// A TOML configuration file (shops, secrets, attribution order, data directory, port).
        #[arg(long, env = "UPLINE_CONFIG")]
        config: Option<PathBuf>,
        /// Overrides `data_dir` of the configuration.
        #[arg(long, env = "UPLINE_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Overrides `read_store` of the configuration (a `postgres://` URL or a SQLite path).
        #[arg(long, env = "UPLINE_READ_STORE")]
        read_store: Option<String>,
        /// Overrides `listen` of the configuration, e.g. 127.0.0.1:8080.
        #[arg(long, env = "UPLINE_LISTEN")]
        listen: Option<std::net::SocketAddr>,
        /// Logs as JSON lines.
        #[arg(long, env = "UPLINE_LOG_JSON")]
        log_json: bool,
        /// Maintenance: accept and store deliveries, but process none until restarted without.
        #[arg(long)]
        hold_deliveries: bool,
    },
    /// Seeds a sample company, serves it on a free port, sends it signed webhooks from all three
    /// platforms over HTTP, and prints what happened.
    Demo {
        /// Keep the demo's data here instead of a temporary directory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Commission plans: validate one, publish one, or explain what an order would pay under it.
    Plan {
        #[command(subcommand)]
        command: PlanCommand,
    },
    /// Imports distributors, their dated changes and SKU mappings (the network file format).
    Network {
        #[command(subcommand)]
        command: NetworkCommand,
    },
    /// The read models: their status, and rebuilding them.
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// Customers: enrol one with a distributor explicitly.
    Customer {
        #[command(subcommand)]
        command: CustomerCommand,
    },
    /// Orders that could not be processed, and their retry after the fix.
    Parked {
        #[command(subcommand)]
        command: ParkedCommand,
    },
    /// Events a consumer (commission postings, a projection) holds back after a permanent
    /// failure, and their retry after the fix.
    Quarantine {
        #[command(subcommand)]
        command: QuarantineCommand,
    },
    /// The pipeline benchmark: seeds a generated company, serves it from this binary as a
    /// separate process, offers it signed webhooks open-loop at a ladder of rates next to a bare
    /// HMAC handler, and prints the SLA table.
    Bench {
        #[command(flatten)]
        args: upline::bench::BenchArgs,
    },
}

#[derive(Subcommand)]
enum QuarantineCommand {
    /// Lists held events: consumer, stream, position, event type, reason and since when.
    List {
        #[arg(long, value_enum, default_value_t = upline::admin::Format::Text)]
        format: upline::admin::Format,
        #[command(flatten)]
        data: DataDir,
    },
    /// Runs held events through their consumer again; one still failing stays held with its
    /// new reason.
    Retry {
        /// A held event as `quarantine list` shows it (CONSUMER@POSITION); the held events of
        /// its stream are retried with it, in order.
        id: Option<String>,
        /// Retry every held event.
        #[arg(long, conflicts_with = "id")]
        all: bool,
        #[command(flatten)]
        data: DataDir,
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
    /// Publishes a plan version to the event store; orders from its effective_from on use it.
    Publish {
        file: PathBuf,
        #[command(flatten)]
        data: DataDir,
    },
}

#[derive(Subcommand)]
enum NetworkCommand {
    /// Registers the file's distributors, applies its changes and maps its SKUs (already known
    /// facts are skipped, so importing twice is harmless).
    Import {
        file: PathBuf,
        #[command(flatten)]
        data: DataDir,
    },
}

#[derive(Subcommand)]
enum ProjectionsCommand {
    /// Each read model's generation, checkpoint and lag.
    Status {
        #[command(flatten)]
        data: DataDir,
    },
    /// Rebuilds read models into fresh tables and swaps them in once caught up; queries keep
    /// answering from the old tables meanwhile.
    Rebuild {
        /// One of: ledger, reconciliation, bi, hierarchy.
        name: Option<String>,
        /// Rebuild every read model.
        #[arg(long, conflicts_with = "name")]
        all: bool,
        #[command(flatten)]
        data: DataDir,
    },
}

#[derive(Subcommand)]
enum CustomerCommand {
    /// Enrols a platform customer with a distributor: their later orders with no other
    /// reference are credited to that distributor. A customer is enrolled once.
    Enroll {
        #[arg(long)]
        platform: upline_domain::ids::Platform,
        #[arg(long)]
        shop: upline_domain::ids::ShopId,
        /// The platform's customer id.
        #[arg(long)]
        customer: String,
        #[arg(long)]
        distributor: upline_domain::ids::DistributorId,
        /// When the enrolment took effect (RFC 3339, UTC); defaults to now.
        #[arg(long)]
        at: Option<chrono::DateTime<chrono::Utc>>,
        #[command(flatten)]
        data: DataDir,
    },
}

#[derive(Subcommand)]
enum ParkedCommand {
    /// Lists parked orders and parked deliveries, with their reasons, a page at a time.
    List {
        /// Entries per page.
        #[arg(long, default_value_t = upline::admin::DEFAULT_PARKED_PAGE)]
        limit: usize,
        /// Continue after this key (the last one of the previous page, as printed).
        #[arg(long)]
        after: Option<String>,
        #[arg(long, value_enum, default_value_t = upline::admin::Format::Text)]
        format: upline::admin::Format,
        #[command(flatten)]
        data: DataDir,
    },
    /// Processes parked orders and deliveries again (after a SKU is mapped, a distributor
    /// registered, ...).
    Retry {
        /// What to retry, as `parked list` shows it: an order stream, or `delivery-N`.
        key: Option<String>,
        /// Retry every parked order and every parked delivery.
        #[arg(long, conflicts_with = "key")]
        all: bool,
        #[command(flatten)]
        data: DataDir,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
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

fn run(cli: Cli) -> Result<String> {
    match cli.command {
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
        Command::Plan {
            command: PlanCommand::Publish { file, data },
        } => runtime()?.block_on(upline::admin::publish_plan(&data.config(), &file)),
        Command::Network {
            command: NetworkCommand::Import { file, data },
        } => runtime()?.block_on(upline::admin::import_network(&data.config(), &file)),
        Command::Projections {
            command: ProjectionsCommand::Status { data },
        } => runtime()?.block_on(upline::admin::projections_status(&data.config())),
        Command::Projections {
            command: ProjectionsCommand::Rebuild { name, all, data },
        } => {
            anyhow::ensure!(
                name.is_some() || all,
                "name the read model to rebuild, or pass --all"
            );
            runtime()?.block_on(upline::admin::projections_rebuild(
                &data.config(),
                name.as_deref(),
            ))
        }
        Command::Customer {
            command:
                CustomerCommand::Enroll {
                    platform,
                    shop,
                    customer,
                    distributor,
                    at,
                    data,
                },
        } => {
            let at = at.unwrap_or_else(chrono::Utc::now);
            let config = data.config();
            let enroll = upline::admin::enroll_customer(
                &config,
                platform,
                &shop,
                &customer,
                &distributor,
                at,
            );
            runtime()?.block_on(enroll)
        }
        Command::Parked {
            command:
                ParkedCommand::List {
                    limit,
                    after,
                    format,
                    data,
                },
        } => {
            let listing = upline::admin::ParkedListing {
                limit,
                after,
                format,
            };
            runtime()?.block_on(upline::admin::list_parked_page(&data.config(), &listing))
        }
        Command::Quarantine {
            command: QuarantineCommand::List { format, data },
        } => runtime()?.block_on(upline::admin::list_quarantine(&data.config(), format)),
        Command::Quarantine {
            command: QuarantineCommand::Retry { id, all, data },
        } => runtime()?.block_on(upline::admin::retry_quarantine(
            &data.config(),
            id.as_deref(),
            all,
        )),
        Command::Parked {
            command: ParkedCommand::Retry { key, all, data },
        } => runtime()?.block_on(upline::admin::retry_parked(
            &data.config(),
            key.as_deref(),
            all,
        )),
        Command::Serve {
            config,
            data_dir,
            read_store,
            listen,
            log_json,
            hold_deliveries,
        } => {
            let mut config = ServeConfig::load(config.as_deref())?;
            if let Some(dir) = data_dir {
                config.data_dir = dir;
            }
            if let Some(addr) = listen {
                config.listen = addr;
            }
            if read_store.is_some() {
                config.read_store = read_store;
            }
            config.log_json |= log_json;
            config.hold_deliveries |= hold_deliveries;
            init_logs(
                config.log_json,
                "warn,upline=info,upline_gateway=info,upline_app=info",
            );
            runtime()?.block_on(server::serve(config))?;
            Ok(String::new())
        }
        Command::Demo { data_dir } => {
            init_logs(false, "warn");
            runtime()?.block_on(demo::run(data_dir))
        }
        Command::Bench { args } => {
            let launch = upline::bench::Launch::current_exe()?;
            runtime()?.block_on(upline::bench::run(&args, &launch))
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Structured logs to stderr, filtered by `RUST_LOG` (else by `default`).
fn init_logs(json: bool, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
