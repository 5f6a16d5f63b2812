//! The embedded inbox adapter: one SQLite file in the data directory
//! (`data/inbox.sqlite`), separate from the event store's.
//!
//! * WAL journal + `synchronous=FULL`: `accept` returns only when the
//!   delivery is committed and fsynced. The platform is answered 200 right
//!   after and never sends it again (WooCommerce does not retry at all).
//! * One writer thread owns the only write connection (rusqlite) and
//!   group-commits whatever requests are pending in one transaction
//!   (`sqlite/writer.rs`): many concurrent accepts, one fsync.
//! * Reads (`stats`, `list`, `item`, `duplicates_total`) use a small separate
//!   pool of `query_only` connections.
//! * `requeue` (inherent, not part of the port) puts a `parked` delivery back
//!   to `pending` for an operator's `upline parked retry delivery-N`.
//!
//! Table `deliveries` (migrations in `crates/app/migrations/inbox`): one row
//! per distinct event, `UNIQUE (platform, shop, dedupe_key)`. A pending row is
//! handed out when `available_at <= now`; a claim moves `available_at` to the
//! end of the lease, so an item whose worker died is handed out again once
//! the lease runs out, and `release` moves it to the end of the back-off.
//!
//! `received_at` is kept to the microsecond (RFC 3339 UTC, sortable as text):
//! a claimed delivery carries the accepted one's time truncated to µs.
//!
//! One `SqliteInbox` per file: `new_work` is notified by *this* handle's
//! writer only.

mod writer;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, Row};
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};
use upline_domain::ids::{Platform, ShopId};

use super::{Acceptance, Delivery, Inbox, InboxError, InboxItem, InboxStats, Outcome, Settlement};
use writer::{Answer, Counters, NewDelivery, Op, Request, Settled, Writer};

pub use writer::{MAX_BATCH_BYTES, MAX_BATCH_REQUESTS};

/// Largest body accepted. Order webhooks are tens of kilobytes; an order at
/// the domain's bound of 1,000 lines is still well under a megabyte or two.
/// The bound keeps a hostile or broken sender from filling memory (bodies are
/// held in memory while queued and when claimed) and the file.
pub const MAX_DELIVERY_BYTES: usize = 4 * 1024 * 1024;

/// Largest topic + dedupe key + delivery id + selected headers (names and
/// values), in bytes. The gateway keeps a handful of short headers; this only
/// stops a bug from storing whole request header sets.
pub const MAX_DELIVERY_META_BYTES: usize = 64 * 1024;

/// Most items one `claim` hands out (a larger `max` is reduced to it).
pub const MAX_CLAIM: usize = 256;

/// Most settlements recorded in one request of [`Inbox::settle_and_claim`]; more are recorded in
/// several (the last one also claims). A worker settles what it claimed, at most [`MAX_CLAIM`].
pub const MAX_SETTLEMENTS: usize = MAX_CLAIM;

/// Most body bytes one `claim` hands out (the first item always goes, even
/// if larger): bounds a worker's memory at a few full-size deliveries.
pub const MAX_CLAIM_BYTES: usize = 64 * 1024 * 1024;

/// Most items one `list` returns (a larger `limit` is reduced to it).
pub const MAX_LIST: usize = 1_000;

/// Longest `last_error` / `outcome_reason` stored, in bytes (longer ones are
/// cut at a character boundary): a worker's error chain must not bloat rows.
pub const MAX_REASON_BYTES: usize = 4 * 1024;

/// Requests waiting for the writer. When full, callers wait (backpressure).
pub const WRITE_QUEUE_CAPACITY: usize = 1_024;

/// Delivery bytes of accepts queued for or held by the writer. Together with
/// [`WRITE_QUEUE_CAPACITY`] this bounds the memory of pending accepts; beyond
/// it `accept` waits. At least one full-size delivery.
pub const MAX_QUEUED_BYTES: usize = 64 * 1024 * 1024;
const _: () = assert!(MAX_QUEUED_BYTES >= MAX_DELIVERY_BYTES + MAX_DELIVERY_META_BYTES);
const _: () = assert!(MAX_QUEUED_BYTES <= u32::MAX as usize);

/// Read connections: stats for metrics and `/readyz`, and operators' lists.
pub const READ_POOL_SIZE: u32 = 2;

/// How long a connection waits for a lock held by another connection (a
/// checkpoint, an operator's sqlite3 shell) before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/inbox");

/// The columns an [`InboxItem`] is decoded from.
const ITEM_COLUMNS: &str =
    "id, platform, shop, topic, dedupe_key, delivery_id, received_at, headers, body, \
     attempts - 1 AS attempts";

const LIST_COLUMNS: &str =
    "id, platform, shop, topic, dedupe_key, delivery_id, received_at, headers, body, attempts, \
     status, available_at, last_error, outcome_reason, completed_at, duplicates";

/// Where an item is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    /// Waiting for a worker, leased to one, or waiting out a back-off.
    Pending,
    Processed,
    Ignored,
    Parked,
}

impl DeliveryStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Processed => "processed",
            DeliveryStatus::Ignored => "ignored",
            DeliveryStatus::Parked => "parked",
        }
    }
}

impl FromStr for DeliveryStatus {
    type Err = InboxError;
    fn from_str(s: &str) -> Result<Self, InboxError> {
        match s {
            "pending" => Ok(DeliveryStatus::Pending),
            "processed" => Ok(DeliveryStatus::Processed),
            "ignored" => Ok(DeliveryStatus::Ignored),
            "parked" => Ok(DeliveryStatus::Parked),
            other => Err(InboxError::Storage(format!(
                "unknown inbox status {other:?} (pending, processed, ignored, parked)"
            ))),
        }
    }
}

/// One row of the inbox, for operators and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedItem {
    pub id: i64,
    pub delivery: Delivery,
    pub status: DeliveryStatus,
    /// How many times a worker took it.
    pub attempts: u32,
    /// A pending item is not handed out before this (lease or back-off).
    pub available_at: DateTime<Utc>,
    /// The last error given to `release`.
    pub last_error: Option<String>,
    /// Why it was ignored or parked.
    pub outcome_reason: Option<String>,
    pub completed_at: Option<DateTime<Utc>>,
    /// How many times the same event was delivered again.
    pub duplicates: u64,
}

/// Counters of the writer since [`SqliteInbox::open`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Transactions committed (one per group-committed batch).
    pub commits: u64,
    /// Accepts that stored a new delivery.
    pub accepted: u64,
    /// Accepts that found the event already stored.
    pub duplicates: u64,
}

/// The embedded, default [`Inbox`].
pub struct SqliteInbox {
    path: PathBuf,
    /// `None` once closed.
    requests: Mutex<Option<mpsc::Sender<Request>>>,
    queue_budget: Arc<Semaphore>,
    /// Answered (or dropped) when the writer thread has stopped.
    writer: Mutex<Option<oneshot::Receiver<()>>>,
    pool: SqlitePool,
    new_work: Arc<Notify>,
    counters: Arc<Counters>,
    /// See [`SqliteInbox::pause_writer`].
    gate: Arc<Mutex<()>>,
}

impl std::fmt::Debug for SqliteInbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteInbox")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded values stay consistent even if a holder panicked.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A database failure, as the port's typed error.
fn storage(error: sqlx::Error) -> InboxError {
    match error {
        sqlx::Error::PoolClosed => InboxError::Closed,
        other => InboxError::Storage(other.to_string()),
    }
}

/// A failure of a rusqlite connection (the writer's), as the port's typed error.
pub(crate) fn rusqlite_storage(error: rusqlite::Error) -> InboxError {
    InboxError::Storage(error.to_string())
}

fn corrupt(column: &str, value: impl std::fmt::Debug, error: impl std::fmt::Display) -> InboxError {
    InboxError::Storage(format!("corrupt {column} {value:?} in the inbox: {error}"))
}

impl SqliteInbox {
    /// Open (creating file, parent directories and schema if needed) the
    /// inbox at `path`, and start its writer thread.
    pub async fn open(path: &Path) -> Result<Self, InboxError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(parent).await.map_err(|error| {
                InboxError::Storage(format!("cannot create {}: {error}", parent.display()))
            })?;
        }
        let mut conn = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .connect()
            .await
            .map_err(storage)?;
        // `run_direct` rather than `run`: `run`'s `Acquire` bound makes this
        // future fail the `Send` check inside `#[async_trait]` (sqlx#1636).
        MIGRATOR
            .run_direct(&mut conn)
            .await
            .map_err(|error| InboxError::Storage(format!("inbox migrations failed: {error}")))?;

        let read_options = SqliteConnectOptions::new()
            .filename(path)
            .busy_timeout(BUSY_TIMEOUT)
            // Readers must never write, even by mistake.
            .pragma("query_only", "ON");
        let pool = SqlitePoolOptions::new()
            .max_connections(READ_POOL_SIZE)
            .connect_with(read_options)
            .await
            .map_err(storage)?;

        // sqlx created and migrated the schema; the writer works through rusqlite.
        sqlx::Connection::close(conn).await.map_err(storage)?;
        let conn = open_writer_connection(path)?;
        let (requests, requests_rx) = mpsc::channel(WRITE_QUEUE_CAPACITY);
        let new_work = Arc::new(Notify::new());
        let counters = Arc::new(Counters::default());
        let gate = Arc::new(Mutex::new(()));
        let writer = Writer {
            conn,
            requests: requests_rx,
            new_work: Arc::clone(&new_work),
            counters: Arc::clone(&counters),
            held: None,
            gate: Arc::clone(&gate),
        };
        let (stopped, writer_stopped) = oneshot::channel();
        std::thread::Builder::new()
            .name("upline-inbox-writer".to_owned())
            .spawn(move || {
                writer.run();
                let _ = stopped.send(());
            })
            .map_err(|error| {
                InboxError::Storage(format!("cannot start the inbox writer: {error}"))
            })?;
        Ok(SqliteInbox {
            path: path.to_owned(),
            requests: Mutex::new(Some(requests)),
            queue_budget: Arc::new(Semaphore::new(MAX_QUEUED_BYTES)),
            writer: Mutex::new(Some(writer_stopped)),
            pool,
            new_work,
            counters,
            gate,
        })
    }

    /// For tests of group commit: while the guard lives, the writer takes at
    /// most the first request it is waiting for, and gathers its batch only
    /// once the guard is dropped, so requests queued meanwhile share one
    /// transaction. A server never calls this.
    #[doc(hidden)]
    pub fn pause_writer(&self) -> MutexGuard<'_, ()> {
        lock(&self.gate)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writer counters: `commits` much lower than `accepted + duplicates`
    /// means group commit is batching.
    pub fn writer_stats(&self) -> WriterStats {
        WriterStats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            accepted: self.counters.accepted.load(Ordering::Relaxed),
            duplicates: self.counters.duplicates.load(Ordering::Relaxed),
        }
    }

    /// How many deliveries were refused as duplicates, ever (stored in the
    /// file, so it survives restarts). Deliveries accepted = the sum of the
    /// [`InboxStats`] counts.
    pub async fn duplicates_total(&self) -> Result<u64, InboxError> {
        let total: i64 = sqlx::query_scalar("SELECT COALESCE(SUM(duplicates), 0) FROM deliveries")
            .fetch_one(&self.pool)
            .await
            .map_err(storage)?;
        u64::try_from(total).map_err(|error| corrupt("duplicates total", total, error))
    }

    /// Items oldest first, all of them or those with `status` (`pending`,
    /// `processed`, `ignored`, `parked`); at most `limit`, itself bounded by
    /// [`MAX_LIST`]. An unknown status is an error, not an empty list.
    pub async fn list(
        &self,
        status: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ListedItem>, InboxError> {
        let status = status.map(DeliveryStatus::from_str).transpose()?;
        let limit = i64::try_from(limit.min(MAX_LIST)).unwrap_or(0);
        let rows = match status {
            Some(status) => {
                sqlx::query(&format!(
                    "SELECT {LIST_COLUMNS} FROM deliveries WHERE status = ?1 ORDER BY id LIMIT ?2"
                ))
                .bind(status.as_str())
                .bind(limit)
                .fetch_all(&self.pool)
                .await
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {LIST_COLUMNS} FROM deliveries ORDER BY id LIMIT ?1"
                ))
                .bind(limit)
                .fetch_all(&self.pool)
                .await
            }
        }
        .map_err(storage)?;
        rows.iter().map(decode_listed).collect()
    }

    /// Like [`SqliteInbox::list`] with `status`, for paging: only items with an id above
    /// `after` (the last id of the previous page).
    pub async fn list_after(
        &self,
        status: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<ListedItem>, InboxError> {
        let status = DeliveryStatus::from_str(status)?;
        let limit = i64::try_from(limit.min(MAX_LIST)).unwrap_or(0);
        let rows = sqlx::query(&format!(
            "SELECT {LIST_COLUMNS} FROM deliveries WHERE status = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
        ))
        .bind(status.as_str())
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?;
        rows.iter().map(decode_listed).collect()
    }

    /// One item by id, `None` when there is no such item.
    pub async fn item(&self, id: i64) -> Result<Option<ListedItem>, InboxError> {
        let row = sqlx::query(&format!(
            "SELECT {LIST_COLUMNS} FROM deliveries WHERE id = ?1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage)?;
        row.as_ref().map(decode_listed).transpose()
    }

    /// Puts a `parked` delivery (its payload could not be read) back to
    /// `pending`, available at once, for a retry after the fix: its
    /// `completed_at` and `outcome_reason` are cleared, the attempt count starts
    /// again, and the reason is kept in `last_error` as "requeued after:
    /// <reason>". Wakes this handle's
    /// workers. Returns `false`, changing nothing, when the item is in any
    /// other status (pending already, or processed or ignored: those must not
    /// be processed twice); [`InboxError::UnknownItem`] when there is none.
    pub async fn requeue(&self, id: i64) -> Result<bool, InboxError> {
        match self.submit(Op::Requeue { id }, 0).await? {
            Answer::Requeued(requeued) => Ok(requeued),
            other => Err(unexpected(other)),
        }
    }

    /// Stop the writer after it has answered everything queued, and close
    /// the read pool. Later calls fail with [`InboxError::Closed`]. Dropping
    /// the inbox without closing is safe too: whatever `accept` confirmed is
    /// already on disk.
    pub async fn close(&self) -> Result<(), InboxError> {
        // Dropping the last sender lets the writer drain the queue and stop.
        drop(lock(&self.requests).take());
        let writer = lock(&self.writer).take();
        if let Some(writer) = writer {
            writer
                .await
                .map_err(|_| InboxError::Storage("the inbox writer thread failed".to_owned()))?;
        }
        self.pool.close().await;
        Ok(())
    }

    /// Queue `op` for the writer and wait for its answer (after COMMIT).
    async fn submit(&self, op: Op, bytes: usize) -> Result<Answer, InboxError> {
        let sender = lock(&self.requests).clone().ok_or(InboxError::Closed)?;
        let budget = if bytes > 0 {
            // Checked by the caller: bytes <= MAX_QUEUED_BYTES <= u32::MAX.
            let permits = u32::try_from(bytes).map_err(|_| InboxError::TooLarge {
                size: bytes,
                max: MAX_QUEUED_BYTES,
            })?;
            Some(
                Arc::clone(&self.queue_budget)
                    .acquire_many_owned(permits)
                    .await
                    .map_err(|_| InboxError::Closed)?,
            )
        } else {
            None
        };
        let (reply, answer) = oneshot::channel();
        let request = Request {
            op,
            bytes,
            reply,
            _budget: budget,
        };
        sender.send(request).await.map_err(|_| InboxError::Closed)?;
        drop(sender);
        // The writer answers every request it takes; a dropped reply means
        // it stopped (runtime shutting down).
        answer.await.map_err(|_| InboxError::Closed)?
    }
}

/// Check the bounds and convert to columns, on the caller's task.
fn prepare(delivery: Delivery) -> Result<(NewDelivery, usize), InboxError> {
    if delivery.body.len() > MAX_DELIVERY_BYTES {
        return Err(InboxError::TooLarge {
            size: delivery.body.len(),
            max: MAX_DELIVERY_BYTES,
        });
    }
    let meta = delivery.topic.len()
        + delivery.dedupe_key.len()
        + delivery.delivery_id.len()
        + delivery
            .headers
            .iter()
            .map(|(name, value)| name.len() + value.len())
            .sum::<usize>();
    if meta > MAX_DELIVERY_META_BYTES {
        return Err(InboxError::TooLarge {
            size: meta,
            max: MAX_DELIVERY_META_BYTES,
        });
    }
    if delivery.dedupe_key.is_empty() {
        // Every delivery of the shop would be a "duplicate" of the first.
        return Err(InboxError::Storage(
            "delivery has an empty dedupe key".to_owned(),
        ));
    }
    let headers = serde_json::to_string(&delivery.headers)
        .map_err(|error| InboxError::Storage(format!("cannot encode headers: {error}")))?;
    let bytes = delivery.body.len() + meta;
    Ok((
        NewDelivery {
            platform: delivery.platform.as_str(),
            shop: delivery.shop.as_str().to_owned(),
            topic: delivery.topic,
            dedupe_key: delivery.dedupe_key,
            delivery_id: delivery.delivery_id,
            received_at: writer::format_timestamp(delivery.received_at),
            headers,
            body: delivery.body,
        },
        bytes,
    ))
}

/// A settlement in the writer's terms: the status it stores, reasons bounded.
fn settled_op(settlement: &Settlement) -> Settled {
    match settlement {
        Settlement::Completed { id, outcome } => {
            let (status, reason) = match outcome {
                Outcome::Processed => (DeliveryStatus::Processed, None),
                Outcome::Ignored { reason } => (DeliveryStatus::Ignored, Some(reason)),
                Outcome::Parked { reason } => (DeliveryStatus::Parked, Some(reason)),
            };
            Settled::Complete {
                id: *id,
                status: status.as_str(),
                reason: reason.map(|reason| bounded(reason, MAX_REASON_BYTES)),
            }
        }
        Settlement::Released {
            id,
            error,
            retry_after,
        } => Settled::Release {
            id: *id,
            error: bounded(error, MAX_REASON_BYTES),
            retry_after: *retry_after,
        },
    }
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

fn parse_timestamp(column: &str, text: &str) -> Result<DateTime<Utc>, InboxError> {
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|error| corrupt(column, text, error))
}

/// One row's columns by name, from either driver: the operator's reads go through sqlx, the
/// writer's claims through rusqlite, and both decode items with the same functions.
pub(crate) trait Columns {
    fn text(&self, column: &str) -> Result<String, InboxError>;
    fn optional_text(&self, column: &str) -> Result<Option<String>, InboxError>;
    fn integer(&self, column: &str) -> Result<i64, InboxError>;
    fn blob(&self, column: &str) -> Result<Vec<u8>, InboxError>;
}

impl Columns for SqliteRow {
    fn text(&self, column: &str) -> Result<String, InboxError> {
        self.try_get(column).map_err(storage)
    }
    fn optional_text(&self, column: &str) -> Result<Option<String>, InboxError> {
        self.try_get(column).map_err(storage)
    }
    fn integer(&self, column: &str) -> Result<i64, InboxError> {
        self.try_get(column).map_err(storage)
    }
    fn blob(&self, column: &str) -> Result<Vec<u8>, InboxError> {
        self.try_get(column).map_err(storage)
    }
}

impl Columns for rusqlite::Row<'_> {
    fn text(&self, column: &str) -> Result<String, InboxError> {
        self.get(column).map_err(rusqlite_storage)
    }
    fn optional_text(&self, column: &str) -> Result<Option<String>, InboxError> {
        self.get(column).map_err(rusqlite_storage)
    }
    fn integer(&self, column: &str) -> Result<i64, InboxError> {
        self.get(column).map_err(rusqlite_storage)
    }
    fn blob(&self, column: &str) -> Result<Vec<u8>, InboxError> {
        self.get(column).map_err(rusqlite_storage)
    }
}

/// Statements the writer keeps prepared: it uses 15 (transaction control, savepoints and one
/// or two per operation); rusqlite's default of 16 would start re-preparing at the next one.
const WRITER_STATEMENT_CACHE: usize = 32;

/// The writer's connection: WAL and `synchronous=FULL` (an accept is on disk when answered).
fn open_writer_connection(path: &Path) -> Result<rusqlite::Connection, InboxError> {
    let conn = rusqlite::Connection::open(path).map_err(rusqlite_storage)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(rusqlite_storage)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(rusqlite_storage)?;
    conn.set_prepared_statement_cache_capacity(WRITER_STATEMENT_CACHE);
    Ok(conn)
}

fn decode_delivery(row: &impl Columns) -> Result<Delivery, InboxError> {
    let platform = row.text("platform")?;
    let shop = row.text("shop")?;
    let received_at = row.text("received_at")?;
    let headers = row.text("headers")?;
    Ok(Delivery {
        platform: Platform::from_str(&platform)
            .map_err(|error| corrupt("platform", &platform, error))?,
        shop: ShopId::new(&shop).map_err(|error| corrupt("shop", &shop, error))?,
        topic: row.text("topic")?,
        dedupe_key: row.text("dedupe_key")?,
        delivery_id: row.text("delivery_id")?,
        received_at: parse_timestamp("received_at", &received_at)?,
        headers: serde_json::from_str(&headers)
            .map_err(|error| corrupt("headers", &headers, error))?,
        body: row.blob("body")?,
    })
}

fn decode_attempts(row: &impl Columns) -> Result<u32, InboxError> {
    let attempts = row.integer("attempts")?;
    u32::try_from(attempts).map_err(|error| corrupt("attempts", attempts, error))
}

fn decode_item(row: &impl Columns) -> Result<InboxItem, InboxError> {
    Ok(InboxItem {
        id: row.integer("id")?,
        delivery: decode_delivery(row)?,
        attempts: decode_attempts(row)?,
    })
}

fn decode_listed(row: &impl Columns) -> Result<ListedItem, InboxError> {
    let status = row.text("status")?;
    let available_at = row.text("available_at")?;
    let completed_at = row.optional_text("completed_at")?;
    let duplicates = row.integer("duplicates")?;
    Ok(ListedItem {
        id: row.integer("id")?,
        delivery: decode_delivery(row)?,
        status: DeliveryStatus::from_str(&status)
            .map_err(|error| corrupt("status", &status, error))?,
        attempts: decode_attempts(row)?,
        available_at: parse_timestamp("available_at", &available_at)?,
        last_error: row.optional_text("last_error")?,
        outcome_reason: row.optional_text("outcome_reason")?,
        completed_at: completed_at
            .map(|at| parse_timestamp("completed_at", &at))
            .transpose()?,
        duplicates: u64::try_from(duplicates)
            .map_err(|error| corrupt("duplicates", duplicates, error))?,
    })
}

fn unexpected(answer: Answer) -> InboxError {
    InboxError::Storage(format!(
        "inbox writer gave an unexpected answer: {answer:?}"
    ))
}

#[async_trait]
impl Inbox for SqliteInbox {
    async fn accept(&self, delivery: Delivery) -> Result<Acceptance, InboxError> {
        let (delivery, bytes) = prepare(delivery)?;
        match self.submit(Op::Accept(delivery), bytes).await? {
            Answer::Accepted(acceptance) => Ok(acceptance),
            other => Err(unexpected(other)),
        }
    }

    async fn claim(&self, max: usize, lease: Duration) -> Result<Vec<InboxItem>, InboxError> {
        self.settle_and_claim(Vec::new(), max, lease).await
    }

    async fn complete(&self, id: i64, outcome: &Outcome) -> Result<(), InboxError> {
        let settled = Settlement::Completed {
            id,
            outcome: outcome.clone(),
        };
        self.settle_and_claim(vec![settled], 0, Duration::ZERO)
            .await
            .map(drop)
    }

    async fn release(&self, id: i64, error: &str, retry_after: Duration) -> Result<(), InboxError> {
        let settled = Settlement::Released {
            id,
            error: error.to_owned(),
            retry_after,
        };
        self.settle_and_claim(vec![settled], 0, Duration::ZERO)
            .await
            .map(drop)
    }

    async fn settle_and_claim(
        &self,
        settled: Vec<Settlement>,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<InboxItem>, InboxError> {
        let mut settled: Vec<Settled> = settled.iter().map(settled_op).collect();
        // In order, `MAX_SETTLEMENTS` a request; the last request, with the rest, also claims.
        while settled.len() > MAX_SETTLEMENTS {
            let rest = settled.split_off(MAX_SETTLEMENTS);
            let op = Op::SettleAndClaim {
                settled: std::mem::replace(&mut settled, rest),
                max: 0,
                lease,
            };
            match self.submit(op, 0).await? {
                Answer::Claimed(_) => {}
                other => return Err(unexpected(other)),
            }
        }
        let max = max.min(MAX_CLAIM);
        if max == 0 && settled.is_empty() {
            return Ok(Vec::new());
        }
        match self
            .submit(
                Op::SettleAndClaim {
                    settled,
                    max,
                    lease,
                },
                0,
            )
            .await?
        {
            Answer::Claimed(items) => Ok(items),
            other => Err(unexpected(other)),
        }
    }

    async fn stats(&self) -> Result<InboxStats, InboxError> {
        let rows = sqlx::query(
            "SELECT status, COUNT(*) AS count, MIN(received_at) AS oldest \
             FROM deliveries GROUP BY status",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?;
        let mut stats = InboxStats::default();
        for row in &rows {
            let status = row.text("status")?;
            let count = row.integer("count")?;
            let count = u64::try_from(count).map_err(|error| corrupt("count", count, error))?;
            match DeliveryStatus::from_str(&status)
                .map_err(|error| corrupt("status", &status, error))?
            {
                DeliveryStatus::Pending => {
                    stats.pending = count;
                    let oldest = row.optional_text("oldest")?;
                    stats.oldest_pending = oldest
                        .map(|at| parse_timestamp("received_at", &at))
                        .transpose()?;
                }
                DeliveryStatus::Processed => stats.processed = count,
                DeliveryStatus::Ignored => stats.ignored = count,
                DeliveryStatus::Parked => stats.parked = count,
            }
        }
        Ok(stats)
    }

    fn new_work(&self) -> Arc<Notify> {
        Arc::clone(&self.new_work)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_cut_at_a_character_boundary() {
        assert_eq!(bounded("short", 10), "short");
        assert_eq!(bounded("abcdef", 3), "abc");
        // 'é' is two bytes: a cut in its middle falls back before it.
        assert_eq!(bounded("aé", 2), "a");
    }

    #[test]
    fn statuses_round_trip_and_unknown_ones_are_refused() {
        for status in [
            DeliveryStatus::Pending,
            DeliveryStatus::Processed,
            DeliveryStatus::Ignored,
            DeliveryStatus::Parked,
        ] {
            assert_eq!(DeliveryStatus::from_str(status.as_str()), Ok(status));
        }
        assert!(DeliveryStatus::from_str("parkd").is_err());
    }
}
