//! What every read-side test shares: the two read stores (SQLite in a tempdir, PostgreSQL in a
//! fresh schema), a real embedded event store, and realistic commission postings.
#![allow(dead_code)]

/// Random order histories through the real app (the company, the orders, their deliveries).
pub mod real_path;

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use futures::FutureExt;
use rust_decimal::Decimal;
use sqlx::any::AnyPoolOptions;
use sqlx::Executor;
use upline_app::eventio::event_data;
use upline_app::records::{CheckpointEvent, PostingEvent, PostingSource};
use upline_app::Provenance;
use upline_domain::ids::{DistributorId, RankName};
use upline_domain::money::Currency;
use upline_domain::network::DistributorEvent;
use upline_domain::snapshot::DistributorStatus;
use upline_projections::{LedgerQuery, ReadStore};
use upline_store::{EventStore, ExpectedRevision, SqliteEventStore};

pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// One read store to run a test against.
#[derive(Debug, Clone)]
pub struct Target {
    /// `sqlite` or `postgres`.
    pub label: &'static str,
    /// What `ReadStore::connect` takes.
    pub location: String,
}

impl Target {
    pub async fn connect(&self) -> ReadStore {
        ReadStore::connect(&self.location)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", self.label))
    }
}

fn say(line: &str) {
    // Straight to stderr: the test harness captures `eprintln!`, and a skip must be seen.
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// A fresh PostgreSQL schema, dropped by [`PgSchema::drop`].
struct PgSchema {
    admin: sqlx::AnyPool,
    schema: String,
    location: String,
}

impl PgSchema {
    async fn create() -> Result<PgSchema, String> {
        sqlx::any::install_default_drivers();
        let url = std::env::var("UPLINE_TEST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_POSTGRES_URL.to_string());
        // Once unreachable, the other tests of this binary do not wait for it again.
        static UNREACHABLE: Mutex<Option<String>> = Mutex::new(None);
        if let Some(reason) = UNREACHABLE.lock().unwrap().clone() {
            return Err(reason);
        }
        let admin = match AnyPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(3))
            .connect(&url)
            .await
        {
            Ok(pool) => pool,
            Err(e) => {
                let reason = format!("cannot connect to {url}: {e}");
                *UNREACHABLE.lock().unwrap() = Some(reason.clone());
                return Err(reason);
            }
        };
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        admin
            .execute(format!("CREATE SCHEMA {schema}").as_str())
            .await
            .map_err(|e| format!("cannot create schema {schema} in {url}: {e}"))?;
        let separator = if url.contains('?') { '&' } else { '?' };
        let location = format!("{url}{separator}options=-csearch_path%3D{schema}");
        Ok(PgSchema {
            admin,
            schema,
            location,
        })
    }

    async fn drop(self) {
        let _ = self
            .admin
            .execute(format!("DROP SCHEMA {} CASCADE", self.schema).as_str())
            .await;
        self.admin.close().await;
    }
}

/// Runs `test` against SQLite (in a tempdir), then PostgreSQL (in a fresh schema, dropped
/// afterwards). PostgreSQL unreachable: fails when `CI=true`, else says it skips it.
pub async fn on_every_read_store<F, Fut>(test: F)
where
    F: Fn(Target) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let location = dir
        .path()
        .join("read.sqlite")
        .to_string_lossy()
        .into_owned();
    test(Target {
        label: "sqlite",
        location,
    })
    .await;

    match PgSchema::create().await {
        Ok(pg) => {
            let target = Target {
                label: "postgres",
                location: pg.location.clone(),
            };
            let outcome = AssertUnwindSafe(test(target)).catch_unwind().await;
            pg.drop().await;
            if let Err(panic) = outcome {
                std::panic::resume_unwind(panic);
            }
        }
        Err(reason) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "PostgreSQL is required under CI=true (set UPLINE_TEST_POSTGRES_URL or start \
                     one on 127.0.0.1:5432): {reason}"
                );
            }
            say(&format!("skipping PostgreSQL: {reason}"));
        }
    }
}

pub async fn event_store(dir: &Path) -> Arc<dyn EventStore> {
    Arc::new(
        SqliteEventStore::open(&dir.join("events.sqlite"))
            .await
            .unwrap(),
    )
}

/// A posting to append: on `commissions-{distributor}`.
#[derive(Debug, Clone)]
pub struct Posting {
    pub distributor: String,
    pub event: PostingEvent,
}

impl Posting {
    /// Signed effect on the distributor's balance.
    pub fn signed(&self) -> (String, Decimal) {
        match &self.event {
            PostingEvent::CommissionEarned {
                currency, amount, ..
            } => (currency.code().to_string(), *amount),
            PostingEvent::CommissionReversed {
                currency, amount, ..
            } => (currency.code().to_string(), -*amount),
        }
    }
}

fn source(order: u64, revision: u64, event: &str) -> PostingSource {
    PostingSource {
        order_stream: format!("order-shopify-acme.myshopify.com-{order}"),
        order_revision: revision,
        order_event: event.into(),
    }
}

/// `count` realistic postings numbered from `first`: ten distributors, USD, EUR, JPY (no
/// decimals) and KWD (three), every fifth a partial reversal of an earlier earning.
pub fn postings(first: u64, count: u64) -> Vec<Posting> {
    let currencies = [Currency::USD, Currency::EUR, Currency::JPY, Currency::KWD];
    (first..first + count)
        .map(|i| {
            let distributor = format!("d{}", i % 10);
            let currency = currencies[(i % 4) as usize];
            let units = (i * 7_919) % 50_000 + 1;
            let amount = match currency.minor_unit() {
                0 => Decimal::from(units),
                scale => Decimal::new(units as i64, scale),
            };
            let event = if i % 5 == 4 {
                PostingEvent::CommissionReversed {
                    source: source(i / 3, 5, "CommissionRecalculated"),
                    currency,
                    amount: (amount / Decimal::from(3))
                        .round_dp(currency.minor_unit())
                        .max(currency.smallest_unit()),
                    plan_version: "2026-01".into(),
                }
            } else {
                PostingEvent::CommissionEarned {
                    source: source(i / 3, 2, "CommissionCalculated"),
                    currency,
                    amount,
                    level: Some((i % 4) as u32),
                    plan_version: "2026-01".into(),
                }
            };
            Posting { distributor, event }
        })
        .collect()
}

/// Appends the postings one by one (each its own append, like the process manager), each
/// distributor's stream starting with its registration (a network event the ledger must skip),
/// and, every seventh, a checkpoint of the posting process manager (a stream no projection reads).
pub async fn append(store: &Arc<dyn EventStore>, postings: &[Posting]) {
    let provenance = Provenance::command("test");
    for (i, posting) in postings.iter().enumerate() {
        let stream = format!("commissions-{}", posting.distributor);
        // A deterministic id: registering again (another call) writes nothing.
        let registered = DistributorEvent::DistributorRegistered {
            distributor_id: DistributorId::new(&posting.distributor).unwrap(),
            sponsor: None,
            referral_codes: vec![],
            country: "US".into(),
            status: DistributorStatus::Active,
            rank: RankName::new("gold").unwrap(),
            joined_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        };
        let data = event_data(&stream, "register", &registered, &provenance).unwrap();
        if store.stream_revision(&stream).await.unwrap().is_none() {
            store
                .append(&stream, ExpectedRevision::NoStream, vec![data])
                .await
                .unwrap();
        }
        let key = format!("test-{}-{i}", uuid::Uuid::new_v4());
        let data = event_data(&stream, &key, &posting.event, &provenance).unwrap();
        store
            .append(&stream, ExpectedRevision::Any, vec![data])
            .await
            .unwrap();
        if i % 7 == 3 {
            let checkpoint = CheckpointEvent::CheckpointRecorded { position: i as u64 };
            let stream = "checkpoint-test";
            let data = event_data(stream, &key, &checkpoint, &provenance).unwrap();
            store
                .append(stream, ExpectedRevision::Any, vec![data])
                .await
                .unwrap();
        }
    }
}

/// What each (distributor, currency) should hold.
pub fn expected_balances(postings: &[Posting]) -> BTreeMap<(String, String), Decimal> {
    let mut balances = BTreeMap::new();
    for posting in postings {
        let (currency, signed) = posting.signed();
        *balances
            .entry((posting.distributor.clone(), currency))
            .or_insert(Decimal::ZERO) += signed;
    }
    balances
}

/// Every balance row, keyed as [`expected_balances`].
pub async fn actual_balances(read: &ReadStore) -> BTreeMap<(String, String), Decimal> {
    LedgerQuery::new(read.clone())
        .top_balances(1_000)
        .await
        .unwrap()
        .into_iter()
        .map(|b| ((b.distributor_id, b.currency), b.balance))
        .collect()
}

/// Every journal line and every balance, in a stable order.
pub async fn dump(
    read: &ReadStore,
) -> (
    Vec<upline_projections::LedgerLine>,
    Vec<upline_projections::Balance>,
) {
    let query = LedgerQuery::new(read.clone());
    let mut lines = Vec::new();
    let mut after = 0;
    loop {
        let page = query.journal(after, 1_000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.entry_id;
        lines.extend(page);
    }
    let mut balances = query.top_balances(1_000).await.unwrap();
    balances
        .sort_by(|a, b| (&a.distributor_id, &a.currency).cmp(&(&b.distributor_id, &b.currency)));
    (lines, balances)
}

/// `SELECT COUNT(*)` of a table or view.
pub async fn count(read: &ReadStore, table: &str) -> i64 {
    use sqlx::Row;
    sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}"))
        .fetch_one(read.pool())
        .await
        .unwrap()
        .try_get("n")
        .unwrap()
}
