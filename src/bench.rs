//! The pipeline benchmark (issue 8): `upline bench` and `cargo bench --bench pipeline` run this.
//!
//! It seeds a generated company into a fresh data directory with the `upline` CLI itself
//! (`network import`, `plan publish`), starts `upline serve` from the same binary as a separate
//! process, and offers it signed Shopify webhooks open-loop at a ladder of rates (new paid
//! orders with 1-3 lines attributed to random, mostly deep distributors through the referral
//! mechanisms upline reads; ~5 % duplicates; ~2 % refunds of earlier orders). The same requests
//! at the same rates also go to a bare HTTP + HMAC handler in this process: the floor, what no
//! webhook receiver can do without.
//!
//! Measurements come from the system's own records where it keeps them (the inbox's
//! `received_at`, the event store's `recorded_at`, the projections' checkpoints, `/metrics`)
//! and from `/proc` for the serve process; the answer latency is the client's, counted from each
//! request's due time. After the last step it checks exactly-once from the store and reads the
//! reconciliation read model, then prints the per-step tables and the SLA table, and writes the
//! whole report as JSON.
//!
//! Quick mode (`--quick`, `UPLINE_BENCH_QUICK=1`, or the cargo bench run without `--bench`, as
//! under `cargo test --benches`) is a smoke run of a few seconds. Every wait is bounded, and the
//! server process is killed on every exit path.

mod floor;
mod generate;
mod load;
mod process;
mod records;
mod report;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use self::floor::Floor;
use self::generate::{Company, Kind, Request, Rng, Traffic};
use self::load::{LoadRun, LoadSettings};
use self::process::{FsyncCounter, ProcSample, ServerProcess};
use self::records::{DataFiles, Sent, ServerProbe};
use self::report::{FloorStep, Report, Step, UplineStep};

/// `upline bench` flags (also the cargo bench's). Unset flags take the full or quick defaults.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct BenchArgs {
    /// Offered rates in webhooks per second, one step each [default: 250,500,1000,2000,3500;
    /// quick: 50].
    #[arg(long, value_delimiter = ',')]
    pub rates: Option<Vec<u32>>,
    /// Seconds per step [default: 30; quick: 2].
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Distributors in the generated network [default: 10000; quick: 200].
    #[arg(long)]
    pub distributors: Option<usize>,
    /// Levels of the generated network [default: 30; quick: 10].
    #[arg(long)]
    pub depth: Option<usize>,
    /// SKUs in the generated catalog [default: 20; quick: 5].
    #[arg(long)]
    pub skus: Option<usize>,
    /// Requests in flight at most, over as many keep-alive connections [default: 64; quick: 16].
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Where to write the JSON report [default: target/bench-pipeline.json; quick:
    /// target/bench-pipeline-quick.json].
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// The tiny smoke run (also with UPLINE_BENCH_QUICK=1).
    #[arg(long)]
    pub quick: bool,
    /// The `upline` binary to serve and seed with [default: this one].
    #[arg(long)]
    pub binary: Option<PathBuf>,
    /// Keep the data directory here (must not exist yet) instead of a temporary one.
    #[arg(long)]
    pub keep_data: Option<PathBuf>,
    /// Longest wait, per step, for the server to work off its backlog [default: 120; quick: 30].
    #[arg(long)]
    pub drain_timeout: Option<f64>,
    /// Seed of the generated company and traffic [default: 1592590344].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Skip the floor (the bare HMAC handler).
    #[arg(long)]
    pub no_floor: bool,
    /// Only seed: time `upline network import` of the generated network (distributors per
    /// second), print it and stop; no serve, no load.
    #[arg(long)]
    pub import_only: bool,
}

/// Where the caller runs from: which binary to start, where the JSON goes by default, and
/// whether an unflagged run is the quick one.
#[derive(Debug, Clone)]
pub struct Launch {
    pub binary: PathBuf,
    pub json: PathBuf,
    pub quick: bool,
}

impl Launch {
    /// `upline bench`: serve this very binary.
    pub fn current_exe() -> Result<Launch> {
        Ok(Launch {
            binary: std::env::current_exe().context("cannot find the running upline binary")?,
            json: PathBuf::from("target/bench-pipeline.json"),
            quick: false,
        })
    }
}

/// Every knob, resolved.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Settings {
    pub quick: bool,
    pub rates: Vec<u32>,
    pub seconds: f64,
    pub distributors: usize,
    pub depth: usize,
    pub skus: usize,
    pub concurrency: usize,
    pub drain_timeout_seconds: f64,
    pub seed: u64,
    pub floor: bool,
    pub import_only: bool,
    pub binary: PathBuf,
    pub json: PathBuf,
    pub keep_data: Option<PathBuf>,
}

/// One request's answer bound; serve's start and stop; the seeding commands.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const START_TIMEOUT: Duration = Duration::from_secs(180);
const STOP_GRACE: Duration = Duration::from_secs(20);
const SEED_BASE_TIMEOUT: Duration = Duration::from_secs(120);
/// Seeding takes about a millisecond per distributor; allow far more.
const SEED_PER_DISTRIBUTOR: Duration = Duration::from_millis(50);
/// The same company and traffic on every run unless `--seed` says otherwise.
const DEFAULT_SEED: u64 = 0x5eed_0008;
/// The drain is over when nothing moved for this long.
const QUIET: Duration = Duration::from_secs(1);
const DRAIN_POLL: Duration = Duration::from_millis(200);

impl Settings {
    pub fn resolve(args: &BenchArgs, launch: &Launch) -> Result<Settings> {
        let quick = args.quick
            || launch.quick
            || std::env::var("UPLINE_BENCH_QUICK").is_ok_and(|v| v == "1");
        let pick = |given: Option<usize>, full: usize, small: usize| {
            given.unwrap_or(if quick { small } else { full })
        };
        let settings = Settings {
            quick,
            rates: args.rates.clone().unwrap_or_else(|| {
                if quick {
                    vec![50]
                } else {
                    vec![250, 500, 1_000, 2_000, 3_500]
                }
            }),
            seconds: args.seconds.unwrap_or(if quick { 2.0 } else { 30.0 }),
            distributors: pick(args.distributors, 10_000, 200),
            depth: pick(args.depth, 30, 10),
            skus: pick(args.skus, 20, 5),
            concurrency: pick(args.concurrency, 64, 16),
            drain_timeout_seconds: args
                .drain_timeout
                .unwrap_or(if quick { 30.0 } else { 120.0 }),
            seed: args.seed.unwrap_or(DEFAULT_SEED),
            floor: !args.no_floor,
            import_only: args.import_only,
            binary: args.binary.clone().unwrap_or_else(|| launch.binary.clone()),
            // A smoke run never overwrites the report of a real one.
            json: args.json.clone().unwrap_or_else(|| {
                if quick {
                    launch.json.with_file_name("bench-pipeline-quick.json")
                } else {
                    launch.json.clone()
                }
            }),
            keep_data: args.keep_data.clone(),
        };
        settings.check()?;
        Ok(settings)
    }

    fn check(&self) -> Result<()> {
        anyhow::ensure!(
            !self.rates.is_empty() && self.rates.iter().all(|r| *r > 0),
            "--rates: give one or more rates above 0"
        );
        anyhow::ensure!(
            self.seconds > 0.0 && self.seconds <= 3_600.0,
            "--seconds must be in (0, 3600]"
        );
        anyhow::ensure!(self.distributors >= 1, "--distributors must be at least 1");
        anyhow::ensure!(
            (1..=self.distributors).contains(&self.depth),
            "--depth must be between 1 and --distributors"
        );
        anyhow::ensure!(self.concurrency >= 1, "--concurrency must be at least 1");
        anyhow::ensure!(
            self.binary.is_file(),
            "no upline binary at {}",
            self.binary.display()
        );
        Ok(())
    }

    fn drain_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.drain_timeout_seconds.max(1.0))
    }

    fn load(&self, rate: u32) -> LoadSettings {
        LoadSettings {
            rate,
            concurrency: self.concurrency,
            // Five seconds' worth of backlog (bounded means under one at the end): the step
            // cannot keep up, and sending more only lengthens the drain.
            abort_backlog: u64::from(rate).saturating_mul(5).max(1_000),
            sample_every: if self.quick {
                Duration::from_millis(100)
            } else {
                Duration::from_millis(250)
            },
        }
    }
}

/// Runs the benchmark; returns the printed report.
pub async fn run(args: &BenchArgs, launch: &Launch) -> Result<String> {
    let began = Instant::now();
    let settings = Settings::resolve(args, launch)?;
    let temp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let work = match &settings.keep_data {
        Some(dir) => {
            anyhow::ensure!(
                !dir.exists(),
                "--keep-data {} already exists",
                dir.display()
            );
            dir.clone()
        }
        None => temp.path().to_path_buf(),
    };
    let files = DataFiles {
        dir: work.join("data"),
    };
    std::fs::create_dir_all(&files.dir)
        .with_context(|| format!("cannot create {}", files.dir.display()))?;

    let mut rng = Rng::new(settings.seed);
    let company = generate::company(
        settings.distributors,
        settings.depth,
        settings.skus,
        &mut rng,
    );
    let seeding = Instant::now();
    let seeded = seed(&settings, &work, &files, &company).await?;
    let seed_seconds = seeding.elapsed().as_secs_f64();
    progress(&format!(
        "seeded {} distributors over {} levels and {} SKUs in {seed_seconds:.1} s \
         (network import {:.1} s): {}",
        company.distributors.len(),
        company.levels(),
        company.skus.len(),
        seeded.import_seconds,
        seeded.output.trim().replace('\n', "; ")
    ));
    let import = report::Import {
        distributors: company.distributors.len(),
        seconds: seeded.import_seconds,
        disk_bytes: files.disk_bytes(),
    };
    if settings.import_only {
        return Ok(import.render());
    }
    let config = write_config(&work, &files)?;
    let disk_seeded = files.disk_bytes();

    let started = Instant::now();
    let server = ServerProcess::start(
        &settings.binary,
        &config,
        work.join("serve.log"),
        START_TIMEOUT,
    )?;
    progress(&format!(
        "serve (pid {}) listening on {} after {:.1} s",
        server.pid,
        server.addr,
        started.elapsed().as_secs_f64()
    ));
    let floor = if settings.floor {
        Some(Floor::start(generate::SHOP, generate::SECRET)?)
    } else {
        None
    };
    let traffic = Traffic::new(company.clone(), rng);
    let result = ladder(
        &settings,
        &files,
        server,
        floor.as_ref(),
        traffic,
        disk_seeded,
    )
    .await;
    drop(floor);
    let mut report = result?;
    report.seed_seconds = seed_seconds;
    report.import = Some(import);
    report.distributors = company.distributors.len();
    report.levels = company.levels();
    report.skus = company.skus.len();
    report.total_seconds = began.elapsed().as_secs_f64();
    report.finish();
    let text = format!(
        "{}\nDone in {:.0} s. JSON report: {}\n",
        report.render(),
        report.total_seconds,
        settings.json.display()
    );
    write_json(&settings.json, &report)?;
    if settings.keep_data.is_some() {
        progress(&format!("data kept in {}", work.display()));
    }
    if !report.exactly_once() {
        // The table says what is wrong; the caller's exit status must say so too.
        print!("{text}");
        bail!("the ledger is not exactly-once, or could not be verified: see the audit above");
    }
    Ok(text)
}

fn progress(line: &str) {
    eprintln!("bench: {line}");
}

/// What seeding printed, and how long `network import` took.
struct Seeded {
    output: String,
    import_seconds: f64,
}

/// Writes the company's files and seeds them with the CLI, before serve starts.
async fn seed(
    settings: &Settings,
    work: &Path,
    files: &DataFiles,
    company: &Company,
) -> Result<Seeded> {
    let network = work.join("network.json");
    let plan = work.join("plan.toml");
    let network_text = serde_json::to_vec(&company.network_json)?;
    std::fs::write(&network, network_text)
        .with_context(|| format!("cannot write {}", network.display()))?;
    std::fs::write(&plan, &company.plan_toml)
        .with_context(|| format!("cannot write {}", plan.display()))?;
    progress(&format!(
        "seeding {} distributors with `upline network import`",
        company.distributors.len()
    ));
    let timeout = SEED_BASE_TIMEOUT + SEED_PER_DISTRIBUTOR * company.distributors.len() as u32;
    let (binary, work, data) = (
        settings.binary.clone(),
        work.to_path_buf(),
        files.dir.clone(),
    );
    tokio::task::spawn_blocking(move || -> Result<Seeded> {
        let data = data.to_string_lossy().into_owned();
        let mut out = process::run_cli(
            &binary,
            &[
                "plan",
                "publish",
                &plan.to_string_lossy(),
                "--data-dir",
                &data,
            ],
            &work,
            SEED_BASE_TIMEOUT,
        )?;
        let importing = Instant::now();
        out += &process::run_cli(
            &binary,
            &[
                "network",
                "import",
                &network.to_string_lossy(),
                "--data-dir",
                &data,
            ],
            &work,
            timeout,
        )?;
        Ok(Seeded {
            output: out,
            import_seconds: importing.elapsed().as_secs_f64(),
        })
    })
    .await
    .context("the seeding thread failed")?
}

/// serve's configuration: one Shopify shop, a free port (serve prints which), and a replay
/// window that takes the generated orders (dated now) as fresh whatever the clocks say.
fn write_config(work: &Path, files: &DataFiles) -> Result<PathBuf> {
    let config = work.join("serve.toml");
    let text = format!(
        "data_dir = {data}\nlisten = \"127.0.0.1:0\"\n\n[gateway]\nreplay_window_hours = 87600\n\n\
         [[gateway.shops]]\nplatform = \"shopify\"\nshop = \"{shop}\"\nsecrets = [\"{secret}\"]\n",
        data = toml_string(&files.dir.to_string_lossy()),
        shop = generate::SHOP,
        secret = generate::SECRET,
    );
    std::fs::write(&config, text).with_context(|| format!("cannot write {}", config.display()))?;
    Ok(config)
}

/// A TOML basic string (paths may hold backslashes or quotes).
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn write_json(path: &Path, report: &Report) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(report).context("encoding the JSON report")?;
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// The steps, the audit and the stop; serve is stopped (or killed) whatever happens.
async fn ladder(
    settings: &Settings,
    files: &DataFiles,
    mut server: ServerProcess,
    floor: Option<&Floor>,
    mut traffic: Traffic,
    disk_seeded: u64,
) -> Result<Report> {
    let base = format!("http://{}", server.addr);
    let probe = Arc::new(ServerProbe::new(&base, files, server.pid)?);
    // The projections first read the seeded company (the hierarchy of every distributor):
    // that is start-up work, not the pipeline's, so the first step waits for it, and the
    // disk it takes counts as seeding.
    let settled = drain(&probe, files, START_TIMEOUT).await?;
    anyhow::ensure!(
        settled.complete,
        "serve did not catch up with the seeded company in {:.0} s",
        settled.seconds
    );
    progress(&format!(
        "projections caught up with the seeded company in {:.1} s",
        settled.seconds
    ));
    let disk_seeded = disk_seeded.max(files.disk_bytes());
    let mut report = Report::new(settings, disk_seeded);
    let mut sent = Sent::default();
    for &rate in &settings.rates {
        anyhow::ensure!(server.alive(), "serve died: {}", server.log_tail());
        let requests = Arc::new(traffic.step(rate, settings.seconds)?);
        let floor_step = match floor {
            Some(floor) => Some(floor_step(settings, floor, rate, requests.clone()).await?),
            None => None,
        };
        let upline = upline_step(settings, files, &server, &probe, rate, requests.clone()).await?;
        // An aborted step sent only the first requests: the audit expects what was sent.
        record_sent(
            &mut sent,
            &requests[..upline.answers.sent.min(requests.len())],
        );
        let drained = upline.drained;
        report.push(Step {
            rate,
            upline,
            floor: floor_step,
            orders_sent_total: sent.orders.len(),
        });
        if !drained {
            progress(&format!(
                "the backlog of {rate}/s did not drain in {:.0} s: stopping the ladder",
                settings.drain_timeout_seconds
            ));
            report.ladder_stopped_at = Some(rate);
            break;
        }
    }
    // A stopped ladder left a backlog: give it longer before the audit, which needs it gone.
    let drained = report.ladder_stopped_at.is_none() || {
        let longer = settings.drain_timeout() * 4;
        progress(&format!(
            "waiting up to {longer:?} for the backlog before the audit"
        ));
        drain(&probe, files, longer).await?.complete
    };
    if drained {
        progress("auditing the store");
        report.audit = Some(records::audit(files, &sent).await?);
        report.reconciliation = Some(records::reconciliation(files).await?);
    }
    report.final_rss_kb = ProcSample::read(&server.pid.to_string()).map(|p| p.rss_kb);
    // Stopping polls and sleeps: off the runtime's threads.
    tokio::task::spawn_blocking(move || server.stop(STOP_GRACE))
        .await
        .context("the stopping thread failed")??;
    Ok(report)
}

fn record_sent(sent: &mut Sent, requests: &[Request]) {
    for r in requests {
        match r.kind {
            Kind::Order => {
                sent.orders.insert(r.order_id);
            }
            Kind::Duplicate => sent.duplicates += 1,
            Kind::Refund => *sent.refunds.entry(r.order_id).or_default() += 1,
        }
    }
}

/// The step against the floor: answers and the floor's CPU time.
async fn floor_step(
    settings: &Settings,
    floor: &Floor,
    rate: u32,
    requests: Arc<Vec<Request>>,
) -> Result<FloorStep> {
    progress(&format!(
        "floor: {rate}/s for {} s ({} requests)",
        settings.seconds,
        requests.len()
    ));
    let http = load::client(settings.concurrency, REQUEST_TIMEOUT)?;
    let cpu_before = floor.cpu_seconds();
    let base = format!("http://{}", floor.addr);
    let run = load::run(&http, &base, requests, &settings.load(rate), None).await?;
    let cpu = floor.cpu_seconds() - cpu_before;
    Ok(FloorStep::new(settings, rate, run, cpu))
}

/// The step against upline: answers, then the drain, then what the records say.
async fn upline_step(
    settings: &Settings,
    files: &DataFiles,
    server: &ServerProcess,
    probe: &Arc<ServerProbe>,
    rate: u32,
    requests: Arc<Vec<Request>>,
) -> Result<UplineStep> {
    progress(&format!(
        "upline: {rate}/s for {} s ({} requests)",
        settings.seconds,
        requests.len()
    ));
    let http = load::client(settings.concurrency, REQUEST_TIMEOUT)?;
    let marks = records::marks(files).await?;
    let pid = server.pid.to_string();
    let before = ProcSample::read(&pid).context("serve's /proc entry is gone")?;
    let client_cpu_before = client_cpu();
    let (pid_n, perf_out) = (server.pid, files.dir.with_file_name("perf-stat.txt"));
    // perf takes a moment to attach (and to print when stopped): off the runtime's threads.
    let fsyncs = tokio::task::spawn_blocking(move || FsyncCounter::start(pid_n, perf_out))
        .await
        .context("the perf thread failed")?;
    let base = format!("http://{}", server.addr);
    let run: LoadRun = load::run(
        &http,
        &base,
        requests.clone(),
        &settings.load(rate),
        Some(probe.clone()),
    )
    .await?;
    let client_cpu = client_cpu() - client_cpu_before;
    let drain = drain(probe, files, settings.drain_timeout()).await?;
    let after = ProcSample::read(&pid).context("serve died during the step")?;
    let fsyncs = match fsyncs {
        Some(counter) => tokio::task::spawn_blocking(move || counter.finish())
            .await
            .context("the perf thread failed")?,
        None => None,
    };
    let emit = if drain.complete {
        records::emit(files, marks).await?
    } else {
        records::Emit::default()
    };
    Ok(UplineStep::new(
        settings,
        rate,
        &requests,
        run,
        report::ServerCost {
            before,
            after,
            fsyncs,
            client_cpu_seconds: client_cpu,
            disk_bytes: files.disk_bytes(),
        },
        drain,
        emit,
    ))
}

/// This process's CPU time less the floor's threads would be finer; the floor is idle during
/// upline's step, so the whole process is the client there.
fn client_cpu() -> f64 {
    process::cpu_seconds("self").unwrap_or(0.0)
}

/// How the backlog was worked off after the last answer.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Drain {
    /// Last answer to the moment nothing moved any more (inbox empty, no new event, every
    /// projection checkpoint still).
    pub seconds: f64,
    pub complete: bool,
}

async fn drain(probe: &ServerProbe, files: &DataFiles, timeout: Duration) -> Result<Drain> {
    let start = Instant::now();
    let mut last: Option<(i64, Vec<(String, i64)>)> = None;
    let mut quiet_since: Option<Instant> = None;
    loop {
        let depth = match probe.inbox_depth().await {
            Some(d) => i64::try_from(d).unwrap_or(i64::MAX),
            None => records::pending_deliveries(files).await?,
        };
        let position = records::last_position(files).await?;
        let checkpoints: Vec<(String, i64)> = probe
            .checkpoints()
            .await?
            .into_iter()
            .map(|c| (c.name, c.position))
            .collect();
        let now = (position, checkpoints);
        if depth == 0 && last.as_ref() == Some(&now) {
            let since = *quiet_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= QUIET {
                let seconds = since.saturating_duration_since(start).as_secs_f64();
                return Ok(Drain {
                    seconds,
                    complete: true,
                });
            }
        } else {
            quiet_since = None;
        }
        if start.elapsed() >= timeout {
            return Ok(Drain {
                seconds: start.elapsed().as_secs_f64(),
                complete: false,
            });
        }
        last = Some(now);
        tokio::time::sleep(DRAIN_POLL).await;
    }
}
