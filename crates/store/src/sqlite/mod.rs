//! The embedded adapter: one SQLite file in the data directory.
//!
//! * WAL journal + `synchronous=FULL`: an append is durable when it returns,
//!   and readers never block the writer.
//! * One writer thread owns the only write connection and group-commits
//!   whatever appends are pending in one transaction (`writer.rs`).
//! * Reads use a small separate pool; subscriptions page the table and wake
//!   on the writer's head notification (`subscription.rs`).
//! * sqlx only creates and migrates the schema; reads and writes go through
//!   rusqlite, where a statement is a function call rather than a hand-off
//!   to a driver thread (the profile of issue 8 put a quarter of serve's CPU
//!   in those hand-offs).
//!
//! One `SqliteEventStore` per file: subscriptions are woken by *this*
//! handle's writer only. The schema is documented in ARCHITECTURE.md ("The
//! embedded event store") and in `migrations/`.

mod heads;
mod reader;
mod subscription;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection as _};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

use crate::conformance::StoreFactory;
use crate::error::StoreError;
use crate::limits::{
    validate_append, validate_appends_in_order, validate_filter, validate_read_count,
    validate_stream_name,
};
use crate::port::EventStore;
use crate::types::{
    AllStart, Append, AppendResult, Direction, EventData, ExpectedRevision, RecordedEvent,
    StreamFilter, StreamStart,
};
use reader::Reader;
use writer::{Counters, OrderedCall, PreparedEvent, WriteRequest, Writer};

pub use subscription::SUBSCRIPTION_PAGE_SIZE;
pub use writer::{
    MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MAX_BATCH_REQUESTS, MAX_ORDERED_BATCH_REQUESTS,
};

/// Appends waiting for the writer. When full, `append` waits (backpressure)
/// instead of queueing without bound.
pub const WRITE_QUEUE_CAPACITY: usize = 4_096;

/// Payload bytes (data + metadata) of appends queued for or held by the
/// writer. Together with [`WRITE_QUEUE_CAPACITY`] this bounds the memory of
/// pending appends; beyond it `append` waits. At least one full-size append.
pub const MAX_QUEUED_BYTES: usize = 256 * 1024 * 1024;
const _: () = assert!(MAX_QUEUED_BYTES >= crate::limits::MAX_APPEND_BYTES);
const _: () = assert!(MAX_QUEUED_BYTES <= u32::MAX as usize);

/// Read connections. WAL readers run in parallel; a handful covers the
/// projections and queries of one process on a small machine.
pub const READ_POOL_SIZE: usize = 4;

/// How long a connection waits for a lock held by another connection (a
/// checkpoint, an auditor's sqlite3 shell) before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Counters of the writer since [`SqliteEventStore::open`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Transactions committed (one per group-committed batch).
    pub commits: u64,
    /// Appends that wrote events (idempotent retries and rejections excluded).
    pub appends_written: u64,
    /// Events written.
    pub events_written: u64,
}

/// The embedded, default [`EventStore`].
pub struct SqliteEventStore {
    path: PathBuf,
    /// `None` once closed.
    requests: Mutex<Option<mpsc::Sender<WriteRequest>>>,
    queue_budget: Arc<Semaphore>,
    /// Answered (or dropped) when the writer thread has stopped.
    writer: Mutex<Option<oneshot::Receiver<()>>>,
    reader: Reader,
    head: watch::Receiver<u64>,
    closed: Arc<AtomicBool>,
    counters: Arc<Counters>,
    /// See [`SqliteEventStore::pause_writer`].
    gate: Arc<Mutex<()>>,
}

impl std::fmt::Debug for SqliteEventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteEventStore")
            .field("path", &self.path)
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded values stay consistent even if a holder panicked.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SqliteEventStore {
    /// Open (creating file, parent directories and schema if needed) the
    /// store at `path`, and start its writer thread. Reads run on the Tokio
    /// runtime's blocking pool.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(parent).await.map_err(|error| {
                StoreError::database(format!("cannot create {}: {error}", parent.display()))
            })?;
        }
        let mut conn = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .connect()
            .await?;
        // `run_direct` rather than `run`: `run`'s `Acquire` bound makes this
        // future fail the `Send` check inside `#[async_trait]` (sqlx#1636).
        MIGRATOR.run_direct(&mut conn).await?;
        let head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
            .fetch_one(&mut conn)
            .await?;
        let head = writer::from_sql(head, "position")?;
        conn.close().await?;

        let write_conn = rusqlite::Connection::open(path)?;
        write_conn.busy_timeout(BUSY_TIMEOUT)?;
        write_conn.pragma_update(None, "synchronous", "FULL")?;
        let heads = Arc::new(heads::CategoryHeads::new(head));
        let reader = Reader::open(path, READ_POOL_SIZE, BUSY_TIMEOUT, Arc::clone(&heads))?;

        let (requests, requests_rx) = mpsc::channel(WRITE_QUEUE_CAPACITY);
        let (head_tx, head_rx) = watch::channel(head);
        let counters = Arc::new(Counters::default());
        let gate = Arc::new(Mutex::new(()));
        let writer = Writer {
            conn: write_conn,
            requests: requests_rx,
            head: head_tx,
            heads,
            last_position: head,
            counters: Arc::clone(&counters),
            held: None,
            gate: Arc::clone(&gate),
        };
        let (stopped, writer_stopped) = oneshot::channel();
        std::thread::Builder::new()
            .name("upline-event-writer".to_owned())
            .spawn(move || {
                writer.run();
                let _ = stopped.send(());
            })
            .map_err(|error| StoreError::database(format!("cannot start the writer: {error}")))?;
        Ok(SqliteEventStore {
            path: path.to_owned(),
            requests: Mutex::new(Some(requests)),
            queue_budget: Arc::new(Semaphore::new(MAX_QUEUED_BYTES)),
            writer: Mutex::new(Some(writer_stopped)),
            reader,
            head: head_rx,
            closed: Arc::new(AtomicBool::new(false)),
            counters,
            gate,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Highest global position committed through this handle (or present at open).
    pub fn head_position(&self) -> u64 {
        *self.head.borrow()
    }

    /// Writer counters: `commits` much lower than `appends_written` means
    /// group commit is batching.
    pub fn writer_stats(&self) -> WriterStats {
        WriterStats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            appends_written: self.counters.appends_written.load(Ordering::Relaxed),
            events_written: self.counters.events_written.load(Ordering::Relaxed),
        }
    }

    /// For tests of group commit: while the guard lives, the writer takes at
    /// most the first request it is waiting for, and gathers its batch only
    /// once the guard is dropped, so appends queued meanwhile share one
    /// commit. A server never calls this.
    #[doc(hidden)]
    pub fn pause_writer(&self) -> MutexGuard<'_, ()> {
        lock(&self.gate)
    }

    /// Checks an append and hands it to the writer (waiting while the queue
    /// is full); the receiver gets the writer's answer.
    async fn enqueue(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        events: Vec<EventData>,
        ordered: Option<(Arc<OrderedCall>, usize)>,
    ) -> Result<oneshot::Receiver<Result<AppendResult, StoreError>>, StoreError> {
        validate_append(stream, &events)?;
        let sender = lock(&self.requests).clone().ok_or(StoreError::Closed)?;
        let (events, bytes) = prepare(events)?;
        // Validated: bytes <= MAX_APPEND_BYTES <= MAX_QUEUED_BYTES <= u32::MAX.
        let permits = u32::try_from(bytes).map_err(|_| StoreError::LimitExceeded {
            limit: crate::error::Limit::AppendBytes,
            max: crate::limits::MAX_APPEND_BYTES as u64,
            actual: bytes as u64,
        })?;
        let budget = Arc::clone(&self.queue_budget)
            .acquire_many_owned(permits)
            .await
            .map_err(|_| StoreError::Closed)?;
        let (reply, answer) = oneshot::channel();
        let request = WriteRequest {
            stream: stream.to_owned(),
            category: crate::types::stream_category(stream).to_owned(),
            expected,
            events,
            bytes,
            reply,
            _budget: budget,
            ordered,
        };
        sender.send(request).await.map_err(|_| StoreError::Closed)?;
        Ok(answer)
    }

    fn ensure_open(&self) -> Result<(), StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        Ok(())
    }

    async fn shutdown(&self) -> Result<(), StoreError> {
        self.closed.store(true, Ordering::Release);
        // Dropping the last sender lets the writer drain the queue and stop.
        drop(lock(&self.requests).take());
        let writer = lock(&self.writer).take();
        if let Some(writer) = writer {
            writer
                .await
                .map_err(|_| StoreError::database("the event store writer thread failed"))?;
        }
        self.reader.close();
        Ok(())
    }
}

/// The writer answers every request it takes; a dropped reply means it
/// stopped (runtime shutting down).
async fn answered(
    answer: oneshot::Receiver<Result<AppendResult, StoreError>>,
) -> Result<AppendResult, StoreError> {
    answer.await.map_err(|_| StoreError::Closed)?
}

fn prepare(events: Vec<EventData>) -> Result<(Vec<PreparedEvent>, usize), StoreError> {
    let mut bytes = 0;
    let prepared = events
        .into_iter()
        .map(|event| {
            bytes += event.data.len() + event.metadata.len();
            let event_id = event.id;
            let not_utf8 = move |_| StoreError::InvalidEvent {
                event_id,
                reason: "payload is not UTF-8".to_owned(),
            };
            let data = String::from_utf8(event.data).map_err(not_utf8)?;
            let metadata = if event.metadata.is_empty() {
                None
            } else {
                Some(String::from_utf8(event.metadata).map_err(not_utf8)?)
            };
            Ok(PreparedEvent {
                id: event.id.hyphenated().to_string(),
                event_type: event.event_type,
                data,
                metadata,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok((prepared, bytes))
}

#[async_trait]
impl EventStore for SqliteEventStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        events: Vec<EventData>,
    ) -> Result<AppendResult, StoreError> {
        let answer = self.enqueue(stream, expected, events, None).await?;
        answered(answer).await
    }

    /// Every append is queued before any answer is awaited, from this one
    /// task: the writer takes them in that order, so they group-commit (up to
    /// its batch bounds) and their positions follow the order given.
    async fn append_in_order(
        &self,
        appends: Vec<Append>,
    ) -> Result<Vec<Result<AppendResult, StoreError>>, StoreError> {
        validate_appends_in_order(appends.len())?;
        let call = Arc::new(OrderedCall::new());
        let mut answers = Vec::with_capacity(appends.len());
        let mut refused = None;
        for (index, append) in appends.into_iter().enumerate() {
            let answer = match refused {
                // Refused before reaching the writer: the rest is not sent.
                Some(failed) => Err(StoreError::NotAttempted {
                    stream: append.stream,
                    failed,
                }),
                None => {
                    let ordered = Some((Arc::clone(&call), index));
                    let answer = self
                        .enqueue(&append.stream, append.expected, append.events, ordered)
                        .await;
                    if answer.is_err() {
                        call.fail(index);
                        refused = Some(index);
                    }
                    answer
                }
            };
            answers.push(answer);
        }
        let mut results = Vec::with_capacity(answers.len());
        for answer in answers {
            results.push(match answer {
                Ok(answer) => answered(answer).await,
                Err(error) => Err(error),
            });
        }
        Ok(results)
    }

    async fn read_stream(
        &self,
        stream: &str,
        direction: Direction,
        from: StreamStart,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        validate_stream_name(stream)?;
        validate_read_count(max_count)?;
        self.ensure_open()?;
        self.reader
            .read_stream(stream, direction, from, max_count)
            .await
    }

    async fn read_all(
        &self,
        from: AllStart,
        filter: &StreamFilter,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        validate_filter(filter)?;
        validate_read_count(max_count)?;
        self.ensure_open()?;
        self.reader.read_all(from.after(), filter, max_count).await
    }

    fn subscribe_all(
        &self,
        from: AllStart,
        filter: StreamFilter,
    ) -> BoxStream<'static, Result<RecordedEvent, StoreError>> {
        subscription::subscribe(
            self.reader.clone(),
            self.head.clone(),
            Arc::clone(&self.closed),
            from,
            filter,
        )
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.shutdown().await
    }
}

/// Opens [`SqliteEventStore`]s on one path, for the conformance suite.
/// `guard` is kept alive with the factory (e.g. a `tempfile::TempDir`).
#[derive(Debug)]
pub struct SqliteFactory<G = ()> {
    path: PathBuf,
    _guard: G,
}

impl SqliteFactory {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteFactory {
            path: path.into(),
            _guard: (),
        }
    }
}

impl<G> SqliteFactory<G> {
    pub fn with_guard(path: impl Into<PathBuf>, guard: G) -> Self {
        SqliteFactory {
            path: path.into(),
            _guard: guard,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl<G: Send + Sync> StoreFactory for SqliteFactory<G> {
    async fn open(&self) -> Result<Arc<dyn EventStore>, StoreError> {
        Ok(Arc::new(SqliteEventStore::open(&self.path).await?))
    }
}
