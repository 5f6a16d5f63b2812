//! What the system's own records say: the inbox (`inbox.sqlite`: when each delivery was
//! received), the event store (`events.sqlite`: when each posting was recorded, what every
//! order owes and what was posted), the read store (`read.sqlite`: projection checkpoints and
//! the reconciliation), `/metrics` (the inbox depth) and `/proc` (CPU, memory, I/O of serve).
//!
//! The SQLite files are opened read-only while serve runs; they are WAL databases, so a reader
//! never blocks serve's writer. The heavy reads (emit latencies, the audit) run between steps,
//! after the drain, so they never compete with the load.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use rust_decimal::Decimal;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Row};
use tokio::sync::Mutex;
use upline_app::records::PostingEvent;
use upline_domain::order::OrderEvent;

use super::generate::order_stream;
use super::process::ProcSample;

/// The data directory's files, as `upline serve` names them.
#[derive(Debug, Clone)]
pub struct DataFiles {
    pub dir: PathBuf,
}

impl DataFiles {
    pub fn events(&self) -> PathBuf {
        self.dir.join("events.sqlite")
    }
    pub fn inbox(&self) -> PathBuf {
        self.dir.join("inbox.sqlite")
    }
    pub fn read(&self) -> PathBuf {
        self.dir.join("read.sqlite")
    }

    /// Bytes on disk of the three databases and their write-ahead logs (the `-shm` index is
    /// memory, rebuilt on open, and left out).
    pub fn disk_bytes(&self) -> u64 {
        ["events.sqlite", "inbox.sqlite", "read.sqlite"]
            .iter()
            .flat_map(|f| [f.to_string(), format!("{f}-wal")])
            .filter_map(|f| std::fs::metadata(self.dir.join(f)).ok())
            .map(|m| m.len())
            .sum()
    }
}

/// Opens a SQLite file read-only.
pub async fn open(path: &Path) -> Result<SqliteConnection> {
    SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .busy_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("cannot open {} read-only", path.display()))
}

fn time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// One projection's checkpoint row (`projection_state`).
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub name: String,
    pub position: i64,
    /// When the row last changed, and the `recorded_at` of the event at `position`.
    pub updated_at: Option<DateTime<Utc>>,
    pub last_recorded_at: Option<DateTime<Utc>>,
}

impl Checkpoint {
    /// How old the last applied event was when it was applied (its batch committed).
    pub fn lag_seconds(&self) -> Option<f64> {
        let (applied, recorded) = (self.updated_at?, self.last_recorded_at?);
        Some((applied - recorded).num_microseconds()? as f64 / 1e6)
    }
}

/// What the server looks like at one instant, while a step runs.
#[derive(Debug, Clone, Default)]
pub struct ProbeSample {
    /// `upline_inbox_depth` from `/metrics`.
    pub inbox_depth: Option<u64>,
    pub checkpoints: Vec<Checkpoint>,
    pub proc: Option<ProcSample>,
}

/// Samples a running server: `/metrics`, the projections' checkpoints, `/proc/PID`.
pub struct ServerProbe {
    metrics_url: String,
    http: reqwest::Client,
    read_store: PathBuf,
    read: Mutex<Option<SqliteConnection>>,
    pid: u32,
}

impl ServerProbe {
    pub fn new(base: &str, files: &DataFiles, pid: u32) -> Result<ServerProbe> {
        Ok(ServerProbe {
            metrics_url: format!("{base}/metrics"),
            // Its own client: sampling never takes a slot from the load.
            http: super::load::client(2, Duration::from_secs(2))?,
            read_store: files.read(),
            read: Mutex::new(None),
            pid,
        })
    }

    pub async fn sample(&self) -> ProbeSample {
        ProbeSample {
            inbox_depth: self.inbox_depth().await,
            checkpoints: self.checkpoints().await.unwrap_or_default(),
            proc: ProcSample::read(&self.pid.to_string()),
        }
    }

    pub async fn inbox_depth(&self) -> Option<u64> {
        let text = self
            .http
            .get(&self.metrics_url)
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        gauge(&text, "upline_inbox_depth").map(|v| v.max(0.0) as u64)
    }

    pub async fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        let mut guard = self.read.lock().await;
        if guard.is_none() {
            *guard = Some(open(&self.read_store).await?);
        }
        let conn = guard.as_mut().context("the read store connection")?;
        checkpoints(conn).await
    }
}

/// The value of an unlabelled gauge in Prometheus text.
fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with([' ', '{']))
        })
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
}

pub async fn checkpoints(conn: &mut SqliteConnection) -> Result<Vec<Checkpoint>> {
    let rows = sqlx::query(
        "SELECT name, position, updated_at, last_recorded_at FROM projection_state ORDER BY name",
    )
    .fetch_all(conn)
    .await
    .context("reading projection_state")?;
    rows.iter()
        .map(|r| {
            let text = |c: &str| -> Result<Option<String>> { Ok(r.try_get(c)?) };
            Ok(Checkpoint {
                name: r.try_get("name")?,
                position: r.try_get("position")?,
                updated_at: text("updated_at")?.as_deref().and_then(time),
                last_recorded_at: text("last_recorded_at")?.as_deref().and_then(time),
            })
        })
        .collect()
}

/// High-water marks taken before a step: what came after them is the step's.
#[derive(Debug, Clone, Copy, Default)]
pub struct Marks {
    pub delivery: i64,
    pub position: i64,
}

pub async fn marks(files: &DataFiles) -> Result<Marks> {
    Ok(Marks {
        delivery: scalar(
            &files.inbox(),
            "SELECT COALESCE(MAX(id), 0) FROM deliveries",
        )
        .await?,
        position: last_position(files).await?,
    })
}

pub async fn last_position(files: &DataFiles) -> Result<i64> {
    scalar(
        &files.events(),
        "SELECT COALESCE(MAX(position), 0) FROM events",
    )
    .await
}

pub async fn pending_deliveries(files: &DataFiles) -> Result<i64> {
    scalar(
        &files.inbox(),
        "SELECT COUNT(*) FROM deliveries WHERE status = 'pending'",
    )
    .await
}

async fn scalar(path: &Path, sql: &str) -> Result<i64> {
    let mut conn = open(path).await?;
    let value: i64 = sqlx::query_scalar(sql)
        .fetch_one(&mut conn)
        .await
        .with_context(|| format!("{}: {sql}", path.display()))?;
    Ok(value)
}

/// Commission emit of one step: for each `orders/paid` delivery received after `since`, the
/// inbox's `received_at` to the `recorded_at` of the order's last `CommissionEarned`.
#[derive(Debug, Default)]
pub struct Emit {
    /// Milliseconds, one per order with postings.
    pub latencies_ms: Vec<f64>,
    /// Orders received (stored in the inbox) in the step.
    pub received: usize,
    /// Received orders without any posting.
    pub without_posting: usize,
}

pub async fn emit(files: &DataFiles, since: Marks) -> Result<Emit> {
    let mut inbox = open(&files.inbox()).await?;
    // The body is the raw bytes as received (a BLOB): read as text, it is the order's JSON.
    let received: Vec<(i64, String)> = sqlx::query_as(
        "SELECT CAST(json_extract(CAST(body AS TEXT), '$.id') AS INTEGER), received_at \
         FROM deliveries WHERE id > ?1 AND topic = 'orders/paid'",
    )
    .bind(since.delivery)
    .fetch_all(&mut inbox)
    .await
    .context("reading the step's deliveries")?;
    let mut events = open(&files.events()).await?;
    let posted: Vec<(Option<String>, String)> = sqlx::query_as(
        "SELECT json_extract(CAST(data AS TEXT), '$.source.order_stream'), MAX(recorded_at) \
         FROM events WHERE position > ?1 AND event_type = 'CommissionEarned' GROUP BY 1",
    )
    .bind(since.position)
    .fetch_all(&mut events)
    .await
    .context("reading the step's postings")?;
    let last_posting: HashMap<String, DateTime<Utc>> = posted
        .into_iter()
        .filter_map(|(stream, at)| Some((stream?, time(&at)?)))
        .collect();
    let mut emit = Emit {
        received: received.len(),
        ..Emit::default()
    };
    for (order_id, received_at) in received {
        let posted = u64::try_from(order_id)
            .ok()
            .and_then(|id| last_posting.get(&order_stream(id)));
        match (posted, time(&received_at)) {
            (Some(posted), Some(received)) => emit
                .latencies_ms
                .push((*posted - received).num_microseconds().unwrap_or(0).max(0) as f64 / 1e3),
            _ => emit.without_posting += 1,
        }
    }
    Ok(emit)
}

/// What was sent, for the audit.
#[derive(Debug, Default)]
pub struct Sent {
    pub orders: HashSet<u64>,
    /// Refunds sent, per order.
    pub refunds: HashMap<u64, u32>,
    pub duplicates: u64,
}

/// Exactly-once, checked from the store after the last drain.
#[derive(Debug, Default, serde::Serialize)]
pub struct Audit {
    pub orders_sent: usize,
    pub orders_calculated_once: usize,
    pub orders_calculated_more: usize,
    pub orders_not_calculated: usize,
    pub refunds_sent: u64,
    pub refunds_recorded: u64,
    pub recalculations: u64,
    pub postings: u64,
    /// The same (beneficiary, order event, kind) posted more than once.
    pub postings_repeated: u64,
    /// (beneficiary, order) pairs whose postings do not add up to what the order says they hold.
    pub holdings_mismatched: u64,
    pub duplicates_sent: u64,
    /// The inbox's own count of deliveries received again.
    pub inbox_duplicates: i64,
    pub deliveries_parked: i64,
    pub parked_streams: i64,
    pub quarantine_events: i64,
    pub projection_held: i64,
}

impl Audit {
    pub fn exactly_once(&self) -> bool {
        self.orders_calculated_once == self.orders_sent
            && self.orders_calculated_more == 0
            && self.refunds_recorded == self.refunds_sent
            && self.postings_repeated == 0
            && self.holdings_mismatched == 0
            && self.inbox_duplicates == self.duplicates_sent as i64
            && self.deliveries_parked == 0
            && self.parked_streams == 0
            && self.quarantine_events == 0
            && self.projection_held == 0
    }
}

/// Per order: calculations, refunds, and what each beneficiary (by id) holds now.
#[derive(Default)]
struct OrderRecord {
    calculated: u32,
    refunds: u32,
    holdings: BTreeMap<String, Decimal>,
}

pub async fn audit(files: &DataFiles, sent: &Sent) -> Result<Audit> {
    let mut events = open(&files.events()).await?;
    let orders = order_records(&mut events).await?;
    let mut audit = Audit {
        orders_sent: sent.orders.len(),
        refunds_sent: sent.refunds.values().map(|n| u64::from(*n)).sum(),
        duplicates_sent: sent.duplicates,
        ..Audit::default()
    };
    for id in &sent.orders {
        match orders.get(&order_stream(*id)).map_or(0, |o| o.calculated) {
            0 => audit.orders_not_calculated += 1,
            1 => audit.orders_calculated_once += 1,
            _ => audit.orders_calculated_more += 1,
        }
    }
    for (id, _) in sent.refunds.iter() {
        audit.refunds_recorded += orders
            .get(&order_stream(*id))
            .map_or(0, |o| u64::from(o.refunds));
    }
    audit.recalculations = recalculations(&mut events).await?;
    let posted = postings(&mut events, &mut audit).await?;
    audit.holdings_mismatched = mismatches(&orders, &posted);
    audit.parked_streams = count(
        &mut events,
        "SELECT COUNT(DISTINCT stream_id) FROM events WHERE stream_id LIKE 'parked-%'",
    )
    .await?;
    audit.quarantine_events = count(
        &mut events,
        "SELECT COUNT(*) FROM events WHERE stream_id LIKE 'quarantine-%'",
    )
    .await?;
    let mut inbox = open(&files.inbox()).await?;
    audit.inbox_duplicates = count(
        &mut inbox,
        "SELECT COALESCE(SUM(duplicates), 0) FROM deliveries",
    )
    .await?;
    audit.deliveries_parked = count(
        &mut inbox,
        "SELECT COUNT(*) FROM deliveries WHERE status = 'parked'",
    )
    .await?;
    let mut read = open(&files.read()).await?;
    audit.projection_held = count(&mut read, "SELECT COUNT(*) FROM projection_held").await?;
    Ok(audit)
}

async fn count(conn: &mut SqliteConnection, sql: &str) -> Result<i64> {
    sqlx::query_scalar(sql)
        .fetch_one(conn)
        .await
        .with_context(|| sql.to_string())
}

/// Folds the commission events of every order stream, decoded by the domain's own types.
async fn order_records(events: &mut SqliteConnection) -> Result<HashMap<String, OrderRecord>> {
    let mut orders: HashMap<String, OrderRecord> = HashMap::new();
    let mut rows = sqlx::query(
        "SELECT stream_id, event_type, CAST(data AS TEXT) AS data FROM events \
         WHERE stream_id LIKE 'order-%' AND event_type IN \
         ('CommissionCalculated', 'CommissionRecalculated', 'OrderRefunded') ORDER BY position",
    )
    .fetch(events);
    while let Some(row) = rows.try_next().await.context("reading order events")? {
        let (stream, event_type, data): (String, String, String) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        let event: OrderEvent = upline_domain::events::decode(&event_type, data.as_bytes())
            .with_context(|| format!("decoding {event_type} of {stream}"))?;
        let record = orders.entry(stream).or_default();
        let payouts = match &event {
            OrderEvent::CommissionCalculated { outcome, .. } => {
                record.calculated += 1;
                Some(outcome.payouts.as_slice())
            }
            OrderEvent::CommissionRecalculated { outcome, .. } => {
                Some(outcome.as_ref().map_or(&[][..], |o| o.payouts.as_slice()))
            }
            OrderEvent::OrderRefunded { .. } => {
                record.refunds += 1;
                None
            }
            _ => None,
        };
        if let Some(payouts) = payouts {
            record.holdings = payouts
                .iter()
                .map(|p| (p.beneficiary.to_string(), p.amount))
                .collect();
        }
    }
    Ok(orders)
}

async fn recalculations(events: &mut SqliteConnection) -> Result<u64> {
    let n = count(
        events,
        "SELECT COUNT(*) FROM events WHERE event_type = 'CommissionRecalculated'",
    )
    .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Every posting: counts repeats and returns the net posted per (beneficiary id, order).
async fn postings(
    events: &mut SqliteConnection,
    audit: &mut Audit,
) -> Result<HashMap<(String, String), Decimal>> {
    let mut net: HashMap<(String, String), Decimal> = HashMap::new();
    let mut seen: HashSet<(String, String, u64, bool)> = HashSet::new();
    let mut rows = sqlx::query(
        "SELECT stream_id, event_type, CAST(data AS TEXT) AS data FROM events \
         WHERE event_type IN ('CommissionEarned', 'CommissionReversed')",
    )
    .fetch(events);
    while let Some(row) = rows.try_next().await.context("reading postings")? {
        let (stream, event_type, data): (String, String, String) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        let event: PostingEvent = upline_domain::events::decode(&event_type, data.as_bytes())
            .with_context(|| format!("decoding {event_type} of {stream}"))?;
        let (source, signed, earned) = match event {
            PostingEvent::CommissionEarned { source, amount, .. } => (source, amount, true),
            PostingEvent::CommissionReversed { source, amount, .. } => (source, -amount, false),
        };
        audit.postings += 1;
        let key = (
            beneficiary(&stream).to_string(),
            source.order_stream.clone(),
        );
        if !seen.insert((stream, source.order_stream, source.order_revision, earned)) {
            audit.postings_repeated += 1;
        }
        *net.entry(key).or_default() += signed;
    }
    Ok(net)
}

/// The beneficiary of a posting stream: its name after the category (`distributor-11043`,
/// or `commissions-11043` where postings have a category of their own), so that the audit
/// does not depend on which one the server uses.
fn beneficiary(stream: &str) -> &str {
    stream.split_once('-').map_or(stream, |(_, id)| id)
}

/// Pairs where what was posted differs from what the order's last outcome says is held.
fn mismatches(
    orders: &HashMap<String, OrderRecord>,
    posted: &HashMap<(String, String), Decimal>,
) -> u64 {
    let mut pairs: HashSet<(&str, &str)> = posted
        .keys()
        .map(|(d, o)| (d.as_str(), o.as_str()))
        .collect();
    for (order, record) in orders {
        pairs.extend(record.holdings.keys().map(|d| (d.as_str(), order.as_str())));
    }
    let held = |d: &str, o: &str| {
        orders
            .get(o)
            .and_then(|r| r.holdings.get(d))
            .copied()
            .unwrap_or_default()
    };
    let net = |d: &str, o: &str| {
        posted
            .get(&(d.to_string(), o.to_string()))
            .copied()
            .unwrap_or_default()
    };
    pairs
        .into_iter()
        .filter(|(d, o)| held(d, o) != net(d, o))
        .count() as u64
}

/// The reconciliation read model's totals over every day.
#[derive(Debug, Default, serde::Serialize)]
pub struct Reconciliation {
    pub orders: i64,
    pub expected: Decimal,
    pub posted: Decimal,
    pub orders_commission_differing: i64,
    pub orders_total_differing: i64,
}

impl Reconciliation {
    /// posted - expected, in percent of expected.
    pub fn delta_percent(&self) -> Option<Decimal> {
        (!self.expected.is_zero())
            .then(|| (self.posted - self.expected) * Decimal::ONE_HUNDRED / self.expected)
    }
}

pub async fn reconciliation(files: &DataFiles) -> Result<Reconciliation> {
    let mut read = open(&files.read()).await?;
    let row = sqlx::query(
        "SELECT COALESCE(SUM(orders), 0), COALESCE(SUM(commission_expected_e6), 0), \
         COALESCE(SUM(commission_posted_e6), 0), COALESCE(SUM(orders_commission_differing), 0), \
         COALESCE(SUM(orders_total_differing), 0) FROM reconciliation_daily",
    )
    .fetch_one(&mut read)
    .await
    .context("reading reconciliation_daily")?;
    // Amounts are integers of millionths.
    let e6 = |v: i64| Decimal::new(v, 6);
    Ok(Reconciliation {
        orders: row.try_get(0)?,
        expected: e6(row.try_get(1)?),
        posted: e6(row.try_get(2)?),
        orders_commission_differing: row.try_get(3)?,
        orders_total_differing: row.try_get(4)?,
    })
}
