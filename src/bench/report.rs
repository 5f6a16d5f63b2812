//! The numbers of each step, the SLA table, and their printing. Everything here is computed from
//! what the steps recorded; nothing is measured here.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::generate::{Kind, Request};
use super::load::{Answer, LoadRun, Sample, Status};
use super::process::ProcSample;
use super::records::{Audit, Emit, Reconciliation};
use super::{Drain, Settings};

/// A step's backlog is bounded when, at the end of sending, less than one second's worth of
/// requests is waiting (due and unanswered, or in the inbox), and it is not growing: over the
/// last third of the step it grew by less than this share of the rate per second, or it ended
/// under `NEGLIGIBLE_BACKLOG_SECONDS` worth of requests (where a slope is only noise: a few
/// requests in flight more or less).
const BOUNDED_SLOPE_SHARE: f64 = 0.02;
const NEGLIGIBLE_BACKLOG_SECONDS: f64 = 0.1;

/// Latency percentiles, milliseconds (nearest rank).
#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(mut values: Vec<f64>) -> Option<Percentiles> {
        values.retain(|v| v.is_finite());
        values.sort_by(f64::total_cmp);
        let at = |p: f64| {
            let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
            values[rank.clamp(1, values.len()) - 1]
        };
        (!values.is_empty()).then(|| Percentiles {
            count: values.len(),
            p50: at(50.0),
            p90: at(90.0),
            p99: at(99.0),
            max: values[values.len() - 1],
        })
    }
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The client's view of one step against one target.
#[derive(Debug, Clone, Serialize)]
pub struct Answers {
    pub sent: usize,
    pub statuses: BTreeMap<Status, u64>,
    /// Not answered 200 with a status upline gives a kept delivery.
    pub not_ok: u64,
    /// Due time to answer, every request.
    pub latency: Option<Percentiles>,
    /// Due time to leaving the client (waiting for a free connection): the client's own lag.
    pub send_delay_p99_ms: f64,
    pub achieved_per_second: f64,
    pub aborted_at_seconds: Option<f64>,
    pub backlog_end: u64,
    pub backlog_max: u64,
    pub backlog_slope_per_second: f64,
    pub bounded: bool,
    pub errors: Vec<String>,
}

impl Answers {
    fn new(settings: &Settings, rate: u32, run: &LoadRun) -> Answers {
        let mut statuses = BTreeMap::new();
        for a in &run.answers {
            *statuses.entry(a.status).or_default() += 1;
        }
        let not_ok = run
            .answers
            .iter()
            .filter(|a| a.http != 200 || matches!(a.status, Status::Other | Status::Failed))
            .count() as u64;
        let latency = Percentiles::of(run.answers.iter().map(|a| ms(a.latency)).collect());
        let send_delay = Percentiles::of(run.answers.iter().map(|a| ms(a.send_delay)).collect());
        let (end, max, slope) = backlog_trend(&run.samples, settings.seconds);
        let rate_f = f64::from(rate);
        let growing = slope >= BOUNDED_SLOPE_SHARE * rate_f
            && end as f64 >= NEGLIGIBLE_BACKLOG_SECONDS * rate_f;
        let bounded = run.aborted_at.is_none() && (end as f64) < rate_f && !growing;
        Answers {
            sent: run.sent,
            statuses,
            not_ok,
            latency,
            send_delay_p99_ms: send_delay.map_or(0.0, |p| p.p99),
            achieved_per_second: run.answers.len() as f64 / run.elapsed.as_secs_f64().max(1e-9),
            aborted_at_seconds: run.aborted_at,
            backlog_end: end,
            backlog_max: max,
            backlog_slope_per_second: slope,
            bounded,
            errors: run.errors.clone(),
        }
    }

    fn p99(&self) -> Option<f64> {
        self.latency.as_ref().map(|l| l.p99)
    }
}

/// The backlog at the end of sending, its maximum, and its least-squares slope (requests per
/// second) over the last third of the sending window.
fn backlog_trend(samples: &[Sample], seconds: f64) -> (u64, u64, f64) {
    let window: Vec<&Sample> = samples.iter().filter(|s| s.at <= seconds).collect();
    let end = window.last().map_or(0, |s| s.backlog());
    let max = window.iter().map(|s| s.backlog()).max().unwrap_or(0);
    let tail: Vec<(f64, f64)> = window
        .iter()
        .filter(|s| s.at >= seconds * 2.0 / 3.0)
        .map(|s| (s.at, s.backlog() as f64))
        .collect();
    (end, max, slope(&tail))
}

fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let (mx, my) = (
        points.iter().map(|p| p.0).sum::<f64>() / n,
        points.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let num: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let den: f64 = points.iter().map(|(x, _)| (x - mx).powi(2)).sum();
    if den > 0.0 {
        num / den
    } else {
        0.0
    }
}

/// One floor step.
#[derive(Debug, Clone, Serialize)]
pub struct FloorStep {
    pub answers: Answers,
    pub cpu_seconds: f64,
    pub cpu_ms_per_request: f64,
}

impl FloorStep {
    pub fn new(settings: &Settings, rate: u32, run: LoadRun, cpu_seconds: f64) -> FloorStep {
        let answers = Answers::new(settings, rate, &run);
        FloorStep {
            cpu_ms_per_request: cpu_seconds * 1e3 / (run.sent.max(1) as f64),
            cpu_seconds,
            answers,
        }
    }
}

/// What serve cost during one step (step start to drain end).
pub struct ServerCost {
    pub before: ProcSample,
    pub after: ProcSample,
    pub fsyncs: Option<u64>,
    pub client_cpu_seconds: f64,
    pub disk_bytes: u64,
}

/// Projection lag: for each batch a projection applied, now − `recorded_at` of its last event
/// when its checkpoint committed (`projection_state.updated_at − last_recorded_at`).
#[derive(Debug, Clone, Serialize)]
pub struct Lag {
    pub batches_seen: usize,
    pub p99_seconds: f64,
    pub max_seconds: f64,
    pub max_by_projection: BTreeMap<String, f64>,
}

impl Lag {
    fn of(samples: &[Sample]) -> Option<Lag> {
        let mut seen: BTreeMap<(String, i64), f64> = BTreeMap::new();
        for c in samples
            .iter()
            .filter_map(|s| s.server.as_ref())
            .flat_map(|s| &s.checkpoints)
        {
            if let Some(lag) = c.lag_seconds() {
                seen.insert((c.name.clone(), c.position), lag);
            }
        }
        // The first sample shows the checkpoints as the previous step left them.
        if let Some(first) = samples.first().and_then(|s| s.server.as_ref()) {
            for c in &first.checkpoints {
                seen.remove(&(c.name.clone(), c.position));
            }
        }
        let mut by_projection: BTreeMap<String, f64> = BTreeMap::new();
        for ((name, _), lag) in &seen {
            let e = by_projection.entry(name.clone()).or_insert(0.0);
            *e = e.max(*lag);
        }
        let all = Percentiles::of(seen.values().map(|s| s * 1e3).collect())?;
        Some(Lag {
            batches_seen: all.count,
            p99_seconds: all.p99 / 1e3,
            max_seconds: all.max / 1e3,
            max_by_projection: by_projection,
        })
    }
}

/// One upline step.
#[derive(Debug, Clone, Serialize)]
pub struct UplineStep {
    pub answers: Answers,
    pub orders: usize,
    pub duplicates: usize,
    pub refunds: usize,
    /// Duplicates whose pair was answered one `accepted`, one `duplicate`.
    pub duplicates_recognised: usize,
    pub emit: Option<Percentiles>,
    pub emit_orders_received: usize,
    pub emit_orders_without_posting: usize,
    pub drain: Drain,
    pub drained: bool,
    pub sustained: bool,
    pub cpu_seconds: f64,
    pub cpu_ms_per_order: f64,
    pub client_cpu_ms_per_request: f64,
    pub fsyncs: Option<u64>,
    pub fsyncs_per_order: Option<f64>,
    pub write_syscalls_per_order: f64,
    pub write_bytes_per_order: f64,
    pub rss_end_kb: u64,
    pub rss_peak_kb: u64,
    pub disk_bytes: u64,
    pub projection_lag: Option<Lag>,
}

impl UplineStep {
    pub fn new(
        settings: &Settings,
        rate: u32,
        requests: &[Request],
        run: LoadRun,
        cost: ServerCost,
        drain: Drain,
        emit: Emit,
    ) -> UplineStep {
        let sent = &requests[..run.sent.min(requests.len())];
        let count = |k: Kind| sent.iter().filter(|r| r.kind == k).count();
        let orders = count(Kind::Order);
        let per_order = |v: f64| v / (orders.max(1) as f64);
        let answers = Answers::new(settings, rate, &run);
        let sustained = answers.bounded && answers.not_ok == 0 && drain.complete;
        let (before, after) = (cost.before, cost.after);
        let cpu = after.cpu_seconds - before.cpu_seconds;
        let sampled_peak = run
            .samples
            .iter()
            .filter_map(|s| s.server.as_ref()?.proc.map(|p| p.rss_kb))
            .max()
            .unwrap_or(0);
        UplineStep {
            orders,
            duplicates: count(Kind::Duplicate),
            refunds: count(Kind::Refund),
            duplicates_recognised: recognised_duplicates(requests, &run.answers),
            emit: Percentiles::of(emit.latencies_ms),
            emit_orders_received: emit.received,
            emit_orders_without_posting: emit.without_posting,
            drained: drain.complete,
            drain,
            sustained,
            cpu_seconds: cpu,
            cpu_ms_per_order: per_order(cpu * 1e3),
            client_cpu_ms_per_request: cost.client_cpu_seconds * 1e3 / (run.sent.max(1) as f64),
            fsyncs: cost.fsyncs,
            fsyncs_per_order: cost.fsyncs.map(|f| per_order(f as f64)),
            write_syscalls_per_order: per_order(
                after.write_syscalls.saturating_sub(before.write_syscalls) as f64,
            ),
            write_bytes_per_order: per_order(
                after.write_bytes.saturating_sub(before.write_bytes) as f64
            ),
            rss_end_kb: after.rss_kb,
            rss_peak_kb: after.peak_rss_kb.max(sampled_peak),
            disk_bytes: cost.disk_bytes,
            projection_lag: Lag::of(&run.samples),
            answers,
        }
    }
}

/// A duplicate is recognised when it is answered `duplicate`, or `accepted` while the copy it
/// repeats (sent first, answered later) was the one answered `duplicate`.
fn recognised_duplicates(requests: &[Request], answers: &[Answer]) -> usize {
    let by_index: BTreeMap<usize, Status> = answers.iter().map(|a| (a.index, a.status)).collect();
    requests
        .iter()
        .enumerate()
        .filter(|(_, r)| r.kind == Kind::Duplicate)
        .filter(|(i, r)| {
            let own = by_index.get(i);
            let original = r.original.and_then(|o| by_index.get(&o));
            own == Some(&Status::Duplicate)
                || (own == Some(&Status::Accepted) && original == Some(&Status::Duplicate))
        })
        .count()
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub rate: u32,
    pub upline: UplineStep,
    pub floor: Option<FloorStep>,
    /// Orders sent so far, this step included (the disk holds them all).
    pub orders_sent_total: usize,
}

/// One line of the SLA table.
#[derive(Debug, Clone, Serialize)]
pub struct SlaRow {
    pub metric: String,
    pub target: String,
    pub stretch: String,
    pub measured: String,
    pub vs_floor: String,
    pub meets_target: Option<bool>,
    pub meets_stretch: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub load_average: Option<String>,
    pub os: &'static str,
    pub arch: &'static str,
}

impl Machine {
    fn now() -> Machine {
        Machine {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            load_average: std::fs::read_to_string("/proc/loadavg")
                .ok()
                .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")),
            os: std::env::consts::OS,
            arch: std::env::consts::ARCH,
        }
    }
}

/// `upline network import` of the generated network, timed as a whole command (the process's
/// start, reading the file, every append and its commit).
#[derive(Debug, Clone, Serialize)]
pub struct Import {
    pub distributors: usize,
    pub seconds: f64,
    /// The data directory after the import (and the plan), all stores.
    pub disk_bytes: u64,
}

impl Import {
    pub fn per_second(&self) -> f64 {
        self.distributors as f64 / self.seconds.max(f64::EPSILON)
    }

    /// The `--import-only` table.
    pub fn render(&self) -> String {
        format!(
            "| distributors | seconds | distributors/s | stretch | bytes on disk per distributor |\n\
             |---:|---:|---:|---|---:|\n\
             | {} | {:.2} | {:.0} | >= 50,000 ({}) | {:.0} |\n",
            self.distributors,
            self.seconds,
            self.per_second(),
            if self.per_second() >= 50_000.0 { "met" } else { "not met" },
            self.disk_bytes as f64 / self.distributors.max(1) as f64,
        )
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub settings: Settings,
    pub machine: Machine,
    pub distributors: usize,
    pub levels: usize,
    pub skus: usize,
    pub seed_seconds: f64,
    /// `upline network import` of the generated network.
    pub import: Option<Import>,
    pub disk_seeded_bytes: u64,
    pub steps: Vec<Step>,
    pub ladder_stopped_at: Option<u32>,
    pub audit: Option<Audit>,
    pub reconciliation: Option<Reconciliation>,
    pub final_rss_kb: Option<u64>,
    pub sla: Vec<SlaRow>,
    pub total_seconds: f64,
}

impl Report {
    pub fn new(settings: &Settings, disk_seeded_bytes: u64) -> Report {
        Report {
            settings: settings.clone(),
            machine: Machine::now(),
            distributors: 0,
            levels: 0,
            skus: 0,
            seed_seconds: 0.0,
            import: None,
            disk_seeded_bytes,
            steps: Vec::new(),
            ladder_stopped_at: None,
            audit: None,
            reconciliation: None,
            final_rss_kb: None,
            sla: Vec::new(),
            total_seconds: 0.0,
        }
    }

    pub fn push(&mut self, step: Step) {
        self.steps.push(step);
    }

    /// Whether the store says every order was handled exactly once (false when unverified).
    pub fn exactly_once(&self) -> bool {
        let recognised = self
            .steps
            .iter()
            .all(|s| s.upline.duplicates_recognised == s.upline.duplicates);
        recognised && self.audit.as_ref().is_some_and(Audit::exactly_once)
    }

    fn disk_per_order(&self, step: &Step) -> f64 {
        step.upline
            .disk_bytes
            .saturating_sub(self.disk_seeded_bytes) as f64
            / (step.orders_sent_total.max(1) as f64)
    }

    /// Computes the SLA table (kept in the report, so the JSON has it too).
    pub fn finish(&mut self) {
        self.sla = sla::rows(self);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        self.header(&mut out);
        self.answers_table(&mut out);
        self.pipeline_table(&mut out);
        self.audit_table(&mut out);
        self.sla_table(&mut out);
        out
    }

    fn header(&self, out: &mut String) {
        let s = &self.settings;
        let _ =
            writeln!(
            out,
            "\npipeline bench{}: {} cores, {}-{}{}; serve = {} (separate process); company: {} \
             distributors over {} levels, {} SKUs, seeded with the CLI in {:.1} s; {} s per \
             step, open loop, at most {} requests in flight; Shopify orders/paid (1-3 lines), \
             ~5 % duplicates, ~2 % refunds/create.\n",
            if s.quick { " (QUICK smoke run: numbers mean nothing)" } else { "" },
            self.machine.cores,
            self.machine.os,
            self.machine.arch,
            self.machine
                .load_average
                .as_ref()
                .map_or(String::new(), |l| format!(", load average before: {l}")),
            s.binary.display(),
            self.distributors,
            self.levels,
            self.skus,
            self.seed_seconds,
            s.seconds,
            s.concurrency,
        );
    }

    fn answers_table(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "Webhook answers (client side, ms from each request's DUE time; backlog = due and \
             unanswered + inbox depth):\n"
        );
        let _ = writeln!(
            out,
            "| rate/s | target | sent | p50 | p90 | p99 | max | send delay p99 | not 200 ok | \
             backlog end / max | slope/s | bounded |"
        );
        let _ = writeln!(
            out,
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
        );
        for step in &self.steps {
            if let Some(floor) = &step.floor {
                answers_row(out, step.rate, "floor", &floor.answers);
            }
            answers_row(out, step.rate, "upline", &step.upline.answers);
        }
    }

    fn pipeline_table(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "\nPipeline (upline's own records; emit = inbox received_at -> recorded_at of the \
             order's last CommissionEarned; cost from step start to drain end, per new order):\n"
        );
        let _ = writeln!(
            out,
            "| rate/s | orders | emit p50 | emit p90 | emit p99 | emit max | unposted | drain s | \
             sustained | CPU ms/order | client CPU ms/req | floor CPU ms/req | fsync/order | \
             write calls/order | write KB/order | RSS end / peak MB | disk KB/order | proj. lag \
             p99 / max s |"
        );
        let _ = writeln!(
            out,
            "|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for step in &self.steps {
            let u = &step.upline;
            let e = |f: fn(&Percentiles) -> f64| u.emit.as_ref().map_or("-".into(), |p| num(f(p)));
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {}{} | {} | {:.3} | {:.3} | {} | {} | {:.1} | \
                 {:.1} | {:.0} / {:.0} | {:.2} | {} |",
                step.rate,
                u.orders,
                e(|p| p.p50),
                e(|p| p.p90),
                e(|p| p.p99),
                e(|p| p.max),
                u.emit_orders_without_posting,
                num(u.drain.seconds),
                if u.drained { "" } else { " (not drained)" },
                yes_no(u.sustained),
                u.cpu_ms_per_order,
                u.client_cpu_ms_per_request,
                step.floor
                    .as_ref()
                    .map_or("-".into(), |f| format!("{:.3}", f.cpu_ms_per_request)),
                u.fsyncs_per_order
                    .map_or("n/a".into(), |f| format!("{f:.2}")),
                u.write_syscalls_per_order,
                u.write_bytes_per_order / 1024.0,
                u.rss_end_kb as f64 / 1024.0,
                u.rss_peak_kb as f64 / 1024.0,
                self.disk_per_order(step) / 1024.0,
                u.projection_lag.as_ref().map_or("-".into(), |l| format!(
                    "{:.3} / {:.3}",
                    l.p99_seconds, l.max_seconds
                )),
            );
        }
        let _ = writeln!(
            out,
            "\nfsync/order: fsync(2)+fdatasync(2) of serve's threads counted by `perf stat` \
             tracepoints (n/a without perf); write calls: /proc/PID/io syscw; write KB: \
             write_bytes; disk: events/inbox/read .sqlite + -wal growth since seeding, over all \
             orders so far; proj. lag: updated_at - last_recorded_at of projection_state, \
             sampled."
        );
    }

    fn audit_table(&self, out: &mut String) {
        let _ = writeln!(out, "\nExactly once, from the store after the last step:\n");
        let Some(a) = &self.audit else {
            let _ = writeln!(
                out,
                "not verified: the backlog never drained (the ladder stopped at {:?}/s).",
                self.ladder_stopped_at
            );
            return;
        };
        let duplicates: usize = self.steps.iter().map(|s| s.upline.duplicates).sum();
        let recognised: usize = self
            .steps
            .iter()
            .map(|s| s.upline.duplicates_recognised)
            .sum();
        let rows: Vec<(&str, String)> = vec![
            (
                "orders with exactly one CommissionCalculated",
                format!("{} / {}", a.orders_calculated_once, a.orders_sent),
            ),
            (
                "orders calculated more than once / never",
                format!("{} / {}", a.orders_calculated_more, a.orders_not_calculated),
            ),
            (
                "refunds recorded / sent",
                format!("{} / {}", a.refunds_recorded, a.refunds_sent),
            ),
            ("CommissionRecalculated", a.recalculations.to_string()),
            ("postings (earned + reversed)", a.postings.to_string()),
            (
                "postings repeated (same beneficiary, order event, kind)",
                a.postings_repeated.to_string(),
            ),
            (
                "(beneficiary, order) pairs where postings != holdings",
                a.holdings_mismatched.to_string(),
            ),
            (
                "duplicates answered `duplicate`",
                format!("{recognised} / {duplicates}"),
            ),
            (
                "inbox duplicates counted / duplicates sent",
                format!("{} / {}", a.inbox_duplicates, a.duplicates_sent),
            ),
            (
                "parked deliveries / parked order streams",
                format!("{} / {}", a.deliveries_parked, a.parked_streams),
            ),
            (
                "quarantine events / projection_held rows",
                format!("{} / {}", a.quarantine_events, a.projection_held),
            ),
        ];
        let _ = writeln!(out, "| check | value |\n|---|---:|");
        for (check, value) in rows {
            let _ = writeln!(out, "| {check} | {value} |");
        }
        if let Some(r) = &self.reconciliation {
            let _ = writeln!(
                out,
                "| reconciliation: orders / expected / posted / differing orders | {} / {} / {} / {} \
                 (+{} declared-total) |",
                r.orders,
                r.expected,
                r.posted,
                r.orders_commission_differing,
                r.orders_total_differing
            );
        }
        let _ = writeln!(
            out,
            "\nexactly once: {}",
            if self.exactly_once() { "yes" } else { "NO" }
        );
    }

    fn sla_table(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "\nSLA (target: the seed article's floor; stretch: issue 8; vs floor: upline / bare \
             HMAC handler at the same rate):\n"
        );
        let _ = writeln!(
            out,
            "| metric | target | stretch | measured | vs floor | target met | stretch met |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|");
        for r in &self.sla {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                r.metric,
                r.target,
                r.stretch,
                r.measured,
                r.vs_floor,
                r.meets_target.map_or("-", yes_no),
                r.meets_stretch.map_or("-", yes_no),
            );
        }
    }
}

fn answers_row(out: &mut String, rate: u32, target: &str, a: &Answers) {
    let l = |f: fn(&Percentiles) -> f64| a.latency.as_ref().map_or("-".into(), |p| num(f(p)));
    let _ = writeln!(
        out,
        "| {rate} | {target} | {}{} | {} | {} | {} | {} | {} | {} | {} / {} | {:.1} | {} |",
        a.sent,
        a.aborted_at_seconds
            .map_or(String::new(), |t| format!(" (aborted at {t:.1} s)")),
        l(|p| p.p50),
        l(|p| p.p90),
        l(|p| p.p99),
        l(|p| p.max),
        num(a.send_delay_p99_ms),
        a.not_ok,
        a.backlog_end,
        a.backlog_max,
        a.backlog_slope_per_second,
        yes_no(a.bounded),
    );
}

/// Milliseconds (or seconds) with sensible digits.
fn num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// The SLA rows.
mod sla {
    use super::*;

    /// The steps that kept up, or every step (and a note) when none did.
    fn judged(report: &Report) -> (Vec<&Step>, &'static str) {
        let sustained: Vec<&Step> = report.steps.iter().filter(|s| s.upline.sustained).collect();
        if sustained.is_empty() {
            (
                report.steps.iter().collect(),
                " (no step sustained: all steps)",
            )
        } else {
            (sustained, "")
        }
    }

    /// The step at `rate`, or the nearest one run (and how to say so).
    fn at(report: &Report, rate: u32) -> Option<(&Step, String)> {
        let nearest = report.steps.iter().min_by_key(|s| s.rate.abs_diff(rate))?;
        let label = if nearest.rate == rate {
            format!("at {rate}/s")
        } else {
            format!("{rate}/s not run; at {}/s", nearest.rate)
        };
        Some((nearest, label))
    }

    fn ratio(upline: Option<f64>, floor: Option<f64>) -> String {
        match (upline, floor) {
            (Some(u), Some(f)) if f > 0.0 => format!("x{:.1} (floor {})", u / f, num(f)),
            _ => "-".into(),
        }
    }

    fn row(metric: &str, target: &str, stretch: &str) -> SlaRow {
        SlaRow {
            metric: metric.into(),
            target: target.into(),
            stretch: stretch.into(),
            measured: "-".into(),
            vs_floor: "-".into(),
            meets_target: None,
            meets_stretch: None,
        }
    }

    pub(super) fn rows(report: &Report) -> Vec<SlaRow> {
        let mut rows = Vec::new();
        answer_rows(report, &mut rows);
        emit_rows(report, &mut rows);
        correctness_rows(report, &mut rows);
        throughput_rows(report, &mut rows);
        resource_rows(report, &mut rows);
        rows
    }

    fn floor_p99(step: &Step) -> Option<f64> {
        step.floor.as_ref().and_then(|f| f.answers.p99())
    }

    fn answer_rows(report: &Report, rows: &mut Vec<SlaRow>) {
        let (steps, note) = judged(report);
        let worst = steps
            .iter()
            .filter_map(|s| Some((s, s.upline.answers.p99()?)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let mut r = row(
            &format!("webhook answer p99, worst step{note}"),
            "<= 120 ms",
            "-",
        );
        if let Some((step, p99)) = worst {
            r.measured = format!("{} ms at {}/s", num(p99), step.rate);
            r.vs_floor = ratio(Some(p99), floor_p99(step));
            r.meets_target = Some(p99 <= 120.0);
        }
        rows.push(r);
        for (rate, stretch) in [(500, 2.0), (2_000, 5.0)] {
            let mut r = row(
                &format!("webhook answer p99 at {rate}/s"),
                "<= 120 ms",
                &format!("<= {stretch} ms"),
            );
            if let Some((step, label)) = at(report, rate) {
                let p99 = step.upline.answers.p99();
                r.measured = format!("{} ms ({label})", p99.map_or("-".into(), num));
                r.vs_floor = ratio(p99, floor_p99(step));
                if step.rate == rate {
                    r.meets_target = p99.map(|p| p <= 120.0);
                    r.meets_stretch = p99.map(|p| p <= stretch);
                }
            }
            rows.push(r);
        }
    }

    fn emit_rows(report: &Report, rows: &mut Vec<SlaRow>) {
        let (steps, note) = judged(report);
        let worst = steps
            .iter()
            .filter_map(|s| Some((s, s.upline.emit.as_ref()?.p99)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let mut r = row(
            &format!("commission emit p99, worst step{note}"),
            "<= 500 ms",
            "-",
        );
        if let Some((step, p99)) = worst {
            r.measured = format!("{} ms at {}/s", num(p99), step.rate);
            r.meets_target = Some(p99 <= 500.0);
        }
        rows.push(r);
        let mut r = row("commission emit p99 at 500/s", "<= 500 ms", "<= 25 ms");
        if let Some((step, label)) = at(report, 500) {
            let p99 = step.upline.emit.as_ref().map(|e| e.p99);
            r.measured = format!("{} ms ({label})", p99.map_or("-".into(), num));
            if step.rate == 500 {
                r.meets_target = p99.map(|p| p <= 500.0);
                r.meets_stretch = p99.map(|p| p <= 25.0);
            }
        }
        rows.push(r);
    }

    fn correctness_rows(report: &Report, rows: &mut Vec<SlaRow>) {
        let mut r = row(
            "idempotent (postings exactly once, duplicates answered duplicate)",
            "100 %",
            "100 %",
        );
        if report.audit.is_some() {
            let ok = report.exactly_once();
            r.measured = if ok {
                "100 %".into()
            } else {
                "NO (see the audit)".into()
            };
            r.meets_target = Some(ok);
            r.meets_stretch = Some(ok);
        } else {
            r.measured = "not verified (backlog not drained)".into();
        }
        rows.push(r);
        let mut r = row("reconciliation delta (posted vs expected)", "0 %", "0 %");
        if let Some(rec) = &report.reconciliation {
            let delta = rec.delta_percent();
            let zero = rec.posted == rec.expected && rec.orders_commission_differing == 0;
            r.measured = format!(
                "{} % ({} orders differing)",
                delta.map_or("-".into(), |d| d.round_dp(4).to_string()),
                rec.orders_commission_differing
            );
            r.meets_target = Some(zero);
            r.meets_stretch = Some(zero);
        }
        rows.push(r);
    }

    fn throughput_rows(report: &Report, rows: &mut Vec<SlaRow>) {
        let best = report
            .steps
            .iter()
            .filter(|s| s.upline.sustained)
            .max_by_key(|s| s.rate);
        let floor_best = report
            .steps
            .iter()
            .filter(|s| s.floor.as_ref().is_some_and(|f| f.answers.bounded))
            .map(|s| s.rate)
            .max();
        let highest = report.steps.iter().map(|s| s.rate).max().unwrap_or(0);
        let mut r = row("sustained orders/s (backlog bounded)", "-", ">= 3,500");
        match best {
            Some(step) => {
                let share = step.upline.orders as f64 / (step.upline.answers.sent.max(1) as f64);
                let orders = f64::from(step.rate) * share;
                r.measured = format!(
                    "{}/s offered = {orders:.0} new orders/s{}",
                    step.rate,
                    if step.rate == highest {
                        " (highest rate run)"
                    } else {
                        ""
                    }
                );
                r.meets_stretch = Some(orders >= 3_500.0);
            }
            None => {
                r.measured = "none of the rates run".into();
                r.meets_stretch = Some(false);
            }
        }
        r.vs_floor = match floor_best {
            Some(f) => format!(
                "floor bounded up to {f}/s{}",
                if f == highest { " (all run)" } else { "" }
            ),
            None => "-".into(),
        };
        rows.push(r);
        let mut r = row("network import, distributors/s", "-", ">= 50,000");
        if let Some(import) = &report.import {
            r.measured = format!(
                "{:.0}/s ({} distributors in {:.1} s)",
                import.per_second(),
                import.distributors,
                import.seconds
            );
            r.meets_stretch = Some(import.per_second() >= 50_000.0);
        }
        rows.push(r);
    }

    /// The step whose costs the stretch goals judge: the highest sustained rate, else the
    /// highest run.
    fn cost_step(report: &Report) -> Option<&Step> {
        let sustained = report
            .steps
            .iter()
            .filter(|s| s.upline.sustained)
            .max_by_key(|s| s.rate);
        sustained.or_else(|| report.steps.iter().max_by_key(|s| s.rate))
    }

    fn resource_rows(report: &Report, rows: &mut Vec<SlaRow>) {
        let cost = cost_step(report);
        let mut r = row("CPU per order (serve, utime+stime)", "-", "<= 0.4 ms");
        if let Some(step) = cost {
            let cpu = step.upline.cpu_ms_per_order;
            r.measured = format!("{cpu:.3} ms at {}/s", step.rate);
            r.vs_floor = ratio(Some(cpu), step.floor.as_ref().map(|f| f.cpu_ms_per_request));
            r.meets_stretch = Some(cpu <= 0.4);
        }
        rows.push(r);

        let (steps, note) = judged(report);
        let worst_lag = steps
            .iter()
            .filter_map(|s| Some((s, s.upline.projection_lag.as_ref()?.p99_seconds)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let mut r = row(
            &format!("projection lag p99, worst step{note}"),
            "-",
            "<= 1 s",
        );
        if let Some((step, lag)) = worst_lag {
            r.measured = format!("{lag:.3} s at {}/s", step.rate);
            r.meets_stretch = Some(lag <= 1.0);
        } else {
            r.measured = "no projection batch seen".into();
        }
        rows.push(r);

        let mut r = row("fsync per order", "-", "<= 0.2");
        if let Some(step) = cost {
            match step.upline.fsyncs_per_order {
                Some(f) => {
                    r.measured = format!("{f:.2} at {}/s", step.rate);
                    r.meets_stretch = Some(f <= 0.2);
                }
                None => {
                    r.measured = format!(
                        "n/a (perf unavailable); {:.1} write calls/order",
                        step.upline.write_syscalls_per_order
                    );
                }
            }
        }
        rows.push(r);

        let mut r = row("disk per order (3 databases + WAL)", "-", "<= 4 KB");
        if let Some(last) = report.steps.last() {
            let bytes = report.disk_per_order(last);
            r.measured = format!(
                "{:.2} KB after {} orders",
                bytes / 1024.0,
                last.orders_sent_total
            );
            r.meets_stretch = Some(bytes <= 4_096.0);
        }
        rows.push(r);

        let peak = report.steps.iter().map(|s| s.upline.rss_peak_kb).max();
        let mut r = row("RSS of serve (peak; at end)", "-", "<= 300 MB");
        if let Some(peak) = peak {
            let end = report.final_rss_kb.unwrap_or(0);
            r.measured = format!(
                "{:.0} MB; {:.0} MB",
                peak as f64 / 1024.0,
                end as f64 / 1024.0
            );
            r.meets_stretch = Some(peak as f64 / 1024.0 <= 300.0);
        }
        rows.push(r);
    }
}
