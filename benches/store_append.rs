//! Load harness for the embedded event store (`SqliteEventStore`, WAL,
//! `synchronous=FULL`): append throughput and latency with 1, 8 and 64
//! concurrent writers on distinct streams (one single-event append at a
//! time each, like command handlers), then `read_all` and subscription
//! catch-up throughput. Prints a table.
//!
//! `cargo bench --bench store_append` runs each scenario for
//! `SCENARIO_TIME` (a few seconds in all); without `--bench` (e.g. under
//! `cargo test --all-targets`) it runs a quick smoke pass.

use std::error::Error;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use upline_store::{
    AllStart, EventData, EventStore, ExpectedRevision, SqliteEventStore, StreamExt, StreamFilter,
};

type BenchResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// Time spent appending per writer count.
const SCENARIO_TIME: Duration = Duration::from_millis(1_000);
/// Time spent per scenario in smoke mode.
const SMOKE_TIME: Duration = Duration::from_millis(50);
/// Latency samples kept per writer (bounds memory if the disk is very fast).
const MAX_SAMPLES_PER_WRITER: usize = 200_000;
/// Events in the log read back by the read scenarios.
const READ_EVENTS: usize = 50_000;
const SMOKE_READ_EVENTS: usize = 2_000;
/// `read_all` page size (the port's maximum is 10 000).
const READ_PAGE: usize = 1_000;

fn ledger_event(n: usize) -> EventData {
    // ~200 bytes of JSON, the size of a typical commission-ledger event.
    let data = format!(
        r#"{{"order_id":"order-{n}","distributor_id":"d-{}","amount":"{}.{:02}","currency":"EUR","level":{},"plan":"unilevel-2024"}}"#,
        n % 997,
        n % 500,
        n % 100,
        n % 7
    );
    EventData::new("CommissionEarned", data.into_bytes())
        .with_metadata(format!(r#"{{"causation_id":"cmd-{n}"}}"#).into_bytes())
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

struct AppendRow {
    writers: usize,
    appends: usize,
    per_second: f64,
    p50: u64,
    p99: u64,
    max: u64,
    commits: u64,
}

async fn append_scenario(writers: usize, run_for: Duration) -> BenchResult<AppendRow> {
    let dir = tempfile::tempdir()?;
    let store =
        std::sync::Arc::new(SqliteEventStore::open(&dir.path().join("bench.sqlite")).await?);
    let start = Instant::now();
    let deadline = start + run_for;
    let mut tasks = JoinSet::new();
    for writer in 0..writers {
        let store = std::sync::Arc::clone(&store);
        tasks.spawn(async move {
            let stream = format!("distributor-{writer}");
            let mut expected = ExpectedRevision::NoStream;
            let mut latencies = Vec::new();
            let mut n = 0;
            while Instant::now() < deadline && latencies.len() < MAX_SAMPLES_PER_WRITER {
                let began = Instant::now();
                let result = store
                    .append(&stream, expected, vec![ledger_event(n)])
                    .await?;
                latencies.push(began.elapsed().as_micros() as u64);
                expected = ExpectedRevision::Exact(result.next_expected_revision);
                n += 1;
            }
            Ok::<_, upline_store::StoreError>(latencies)
        });
    }
    let mut latencies = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        latencies.extend(joined??);
    }
    let elapsed = start.elapsed();
    let commits = store.writer_stats().commits;
    store.close().await?;
    latencies.sort_unstable();
    Ok(AppendRow {
        writers,
        appends: latencies.len(),
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        max: latencies.last().copied().unwrap_or_default(),
        commits,
    })
}

struct ReadRow {
    what: &'static str,
    events: usize,
    per_second: f64,
    mib_per_second: f64,
}

async fn read_scenarios(events: usize) -> BenchResult<Vec<ReadRow>> {
    let dir = tempfile::tempdir()?;
    let store = SqliteEventStore::open(&dir.path().join("bench.sqlite")).await?;
    // Fill quickly: 100 events per append, 10 streams.
    let mut written = 0;
    let mut revisions = [None::<u64>; 10];
    while written < events {
        let slot = (written / 100) % revisions.len();
        let expected = match revisions[slot] {
            None => ExpectedRevision::NoStream,
            Some(revision) => ExpectedRevision::Exact(revision),
        };
        let batch: Vec<_> = (written..written + 100).map(ledger_event).collect();
        let result = store
            .append(&format!("distributor-{slot}"), expected, batch)
            .await?;
        revisions[slot] = Some(result.next_expected_revision);
        written += 100;
    }

    let mut rows = Vec::new();
    for (what, filter) in [
        ("read_all, no filter", StreamFilter::all()),
        (
            "read_all, prefix filter",
            StreamFilter::prefix("distributor-3"),
        ),
    ] {
        let start = Instant::now();
        let (mut count, mut bytes, mut from) = (0, 0, AllStart::Start);
        loop {
            let page = store.read_all(from, &filter, READ_PAGE).await?;
            let Some(last) = page.last() else { break };
            from = AllStart::After(last.position);
            count += page.len();
            bytes += page
                .iter()
                .map(|e| e.data.len() + e.metadata.len())
                .sum::<usize>();
        }
        let seconds = start.elapsed().as_secs_f64();
        rows.push(ReadRow {
            what,
            events: count,
            per_second: count as f64 / seconds,
            mib_per_second: bytes as f64 / seconds / (1024.0 * 1024.0),
        });
    }

    let start = Instant::now();
    let mut subscription = store.subscribe_all(AllStart::Start, StreamFilter::all());
    let (mut count, mut bytes) = (0, 0);
    while count < written {
        match subscription.next().await {
            Some(event) => {
                let event = event?;
                bytes += event.data.len() + event.metadata.len();
                count += 1;
            }
            None => break,
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    rows.push(ReadRow {
        what: "subscribe_all catch-up",
        events: count,
        per_second: count as f64 / seconds,
        mib_per_second: bytes as f64 / seconds / (1024.0 * 1024.0),
    });
    drop(subscription);
    store.close().await?;
    Ok(rows)
}

async fn run(full: bool) -> BenchResult<()> {
    let run_for = if full { SCENARIO_TIME } else { SMOKE_TIME };
    println!(
        "store_append: SqliteEventStore (WAL, synchronous=FULL), {} ms per writer count{}",
        run_for.as_millis(),
        if full {
            ""
        } else {
            " (smoke mode: pass --bench for real numbers)"
        }
    );
    println!(
        "{:>7} {:>8} {:>11} {:>9} {:>9} {:>9} {:>8} {:>14}",
        "writers",
        "appends",
        "appends/s",
        "p50 µs",
        "p99 µs",
        "max µs",
        "commits",
        "appends/commit"
    );
    for writers in [1, 8, 64] {
        let row = append_scenario(writers, run_for).await?;
        println!(
            "{:>7} {:>8} {:>11.0} {:>9} {:>9} {:>9} {:>8} {:>14.1}",
            row.writers,
            row.appends,
            row.per_second,
            row.p50,
            row.p99,
            row.max,
            row.commits,
            row.appends as f64 / row.commits.max(1) as f64
        );
    }
    println!();
    let events = if full { READ_EVENTS } else { SMOKE_READ_EVENTS };
    println!("reads over a log of {events} events (~250 B each), pages of {READ_PAGE}");
    println!(
        "{:<26} {:>8} {:>12} {:>8}",
        "scenario", "events", "events/s", "MiB/s"
    );
    for row in read_scenarios(events).await? {
        println!(
            "{:<26} {:>8} {:>12.0} {:>8.1}",
            row.what, row.events, row.per_second, row.mib_per_second
        );
    }
    Ok(())
}

fn main() -> BenchResult<()> {
    let full = std::env::args().any(|arg| arg == "--bench");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(full))
}
