//! The single writer thread: group commit.
//!
//! One OS thread owns the only write connection (rusqlite, so a statement is
//! a function call, not a hand-off to a driver's worker thread). Appends
//! arrive over a bounded channel; the writer takes everything pending (up to
//! the batch bounds), decides each request in arrival order inside ONE
//! `BEGIN IMMEDIATE` transaction, commits once (one fsync for the whole
//! batch), publishes the new head position and then answers every request.
//!
//! Each request is decided against the stream's current revision (looked up
//! once per stream per batch, then kept up to date as the batch writes), so
//! expected-revision checks happen *before* inserting: a request with a wrong
//! expectation is answered with an error and never touches the other requests
//! of its batch. Its rows are then inserted with one cached prepared
//! statement per row; each row's position is the rowid SQLite gives it. A
//! retry (`Any` with an event id already in the stream, or a revision behind
//! the stream) is recognised from the stored rows, which include what the
//! batch wrote before it.
//!
//! Should the database refuse a row (a CHECK constraint, an I/O error), the
//! transaction is rolled back, that row's request is answered with the error,
//! and the batch is redone without it: bounded, since each retry removes a
//! request, and nothing is committed until all of a batch is decided.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit};

use super::heads::CategoryHeads;

use crate::error::StoreError;
use crate::types::{AppendResult, ExpectedRevision};

/// Most append requests committed in one transaction. Bounds the latency a
/// batch adds to its first request and the work lost to a failed COMMIT.
pub const MAX_BATCH_REQUESTS: usize = 256;

/// The same bound for the appends of [`crate::EventStore::append_in_order`]
/// calls (a bulk import, which waits for the whole call anyway): larger
/// batches write each index page once per commit instead of once per 256
/// appends.
pub const MAX_ORDERED_BATCH_REQUESTS: usize = 4_096;

/// Most events committed in one transaction (10 full-size appends).
pub const MAX_BATCH_EVENTS: usize = 10_000;

/// Most payload bytes committed in one transaction. A single request larger
/// than this (impossible given [`crate::limits::MAX_APPEND_BYTES`]) would
/// still be committed alone.
pub const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;

const INSERT_EVENT: &str = "INSERT INTO events \
     (stream_id, category, revision, event_id, event_type, data, metadata, recorded_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

/// An event checked by [`crate::limits::validate_append`] and converted to
/// the column representation, on the caller's task, so the single writer
/// spends its time only on SQL.
#[derive(Debug)]
pub(crate) struct PreparedEvent {
    /// Lowercase hyphenated UUID.
    pub(crate) id: String,
    pub(crate) event_type: String,
    pub(crate) data: String,
    pub(crate) metadata: Option<String>,
}

/// The appends of one [`crate::EventStore::append_in_order`] call: once one
/// fails, the writer makes none of the later ones.
#[derive(Debug, Default)]
pub(crate) struct OrderedCall {
    /// Index of the first append that failed; `usize::MAX` while none has.
    failed: AtomicUsize,
}

impl OrderedCall {
    pub(crate) fn new() -> OrderedCall {
        OrderedCall {
            failed: AtomicUsize::new(usize::MAX),
        }
    }

    /// Records that append `index` failed (the first failure stands: the
    /// writer meets a call's appends in order).
    pub(crate) fn fail(&self, index: usize) {
        let _ =
            self.failed
                .compare_exchange(usize::MAX, index, Ordering::AcqRel, Ordering::Acquire);
    }

    /// The first failed append before `index`, if any.
    fn failed_before(&self, index: usize) -> Option<usize> {
        let failed = self.failed.load(Ordering::Acquire);
        (failed < index).then_some(failed)
    }
}

/// One append waiting for the writer.
#[derive(Debug)]
pub(crate) struct WriteRequest {
    pub(crate) stream: String,
    /// The stream's category (`crate::types::stream_category`), stored in its
    /// own indexed column so a read filtered by category costs what it returns.
    pub(crate) category: String,
    pub(crate) expected: ExpectedRevision,
    /// Never empty (checked by validation).
    pub(crate) events: Vec<PreparedEvent>,
    /// data + metadata bytes, for the batch bound.
    pub(crate) bytes: usize,
    pub(crate) reply: oneshot::Sender<Result<AppendResult, StoreError>>,
    /// `bytes` permits of the queue's memory budget, released when the
    /// request is answered and dropped.
    pub(crate) _budget: OwnedSemaphorePermit,
    /// The ordered call this append belongs to, and its index in it.
    pub(crate) ordered: Option<(Arc<OrderedCall>, usize)>,
}

impl WriteRequest {
    /// This request failed: later appends of its ordered call are not made.
    fn failed(&self) {
        if let Some((call, index)) = &self.ordered {
            call.fail(*index);
        }
    }

    /// Why this request is not to be made: an earlier append of its ordered
    /// call failed.
    fn not_attempted(&self) -> Option<StoreError> {
        let (call, index) = self.ordered.as_ref()?;
        call.failed_before(*index)
            .map(|failed| StoreError::NotAttempted {
                stream: self.stream.clone(),
                failed,
            })
    }
}

/// Counters of the writer, for tests and metrics.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) commits: AtomicU64,
    pub(crate) appends_written: AtomicU64,
    pub(crate) events_written: AtomicU64,
}

/// What the writer decided for one request, before writing.
enum Decision {
    /// Insert the events starting at this revision.
    Write { first_revision: u64 },
    /// The same append is already stored: answer with its original result.
    AlreadyWritten(AppendResult),
    /// Wrong expected revision; `actual` is the stream's last revision.
    Reject { actual: Option<u64> },
}

/// Why an attempt at a batch failed.
enum BatchFailure {
    /// The database refused this request: answer it with `error`, redo the rest.
    Request { index: usize, error: StoreError },
    /// The transaction itself failed (BEGIN, COMMIT): every request fails.
    Batch(StoreError),
}

/// Per-request outcome inside a batch.
enum Outcome {
    Written(AppendResult),
    Existing(AppendResult),
    Failed(StoreError),
}

pub(crate) struct Writer {
    pub(crate) conn: Connection,
    pub(crate) requests: mpsc::Receiver<WriteRequest>,
    pub(crate) head: watch::Sender<u64>,
    /// Updated before `head` is published (see `heads`).
    pub(crate) heads: Arc<CategoryHeads>,
    /// The last position this writer wrote (the store's head when opened).
    pub(crate) last_position: u64,
    pub(crate) counters: Arc<Counters>,
    /// A request taken from the channel that did not fit the previous batch.
    pub(crate) held: Option<WriteRequest>,
    /// Taken (and let go at once) before each batch is gathered: while a
    /// test holds it ([`super::SqliteEventStore::pause_writer`]), appends
    /// queue up and then land in one batch.
    pub(crate) gate: Arc<Mutex<()>>,
}

impl Writer {
    /// Serve batches until every sender is gone (store closed or dropped),
    /// then close the connection. Requests queued before that are still
    /// committed and answered. Runs on its own thread: it blocks.
    pub(crate) fn run(mut self) {
        while let Some(batch) = self.next_batch() {
            self.commit_batch(batch);
        }
        if let Err((_, error)) = self.conn.close() {
            tracing::warn!(%error, "closing the event store write connection failed");
        }
    }

    fn next_batch(&mut self) -> Option<Vec<WriteRequest>> {
        let first = match self.held.take() {
            Some(request) => request,
            None => self.requests.blocking_recv()?,
        };
        drop(super::lock(&self.gate));
        let mut events = first.events.len();
        let mut bytes = first.bytes;
        let mut batch = vec![first];
        while batch.len() < MAX_ORDERED_BATCH_REQUESTS {
            let Ok(next) = self.requests.try_recv() else {
                break;
            };
            let requests = if next.ordered.is_some() {
                MAX_ORDERED_BATCH_REQUESTS
            } else {
                MAX_BATCH_REQUESTS
            };
            if batch.len() >= requests
                || events + next.events.len() > MAX_BATCH_EVENTS
                || bytes + next.bytes > MAX_BATCH_BYTES
            {
                self.held = Some(next);
                break;
            }
            events += next.events.len();
            bytes += next.bytes;
            batch.push(next);
        }
        Some(batch)
    }

    fn commit_batch(&mut self, mut batch: Vec<WriteRequest>) {
        let recorded_at = format_timestamp(Utc::now());
        // Each failed attempt removes one request: at most `batch.len()` rounds.
        loop {
            let failure = match self.write_batch(&batch, &recorded_at) {
                Ok(outcomes) => return self.finish(batch, outcomes),
                Err(failure) => failure,
            };
            if let Err(error) = self.execute("ROLLBACK") {
                // SQLite may already have rolled back on its own.
                tracing::debug!(%error, "rollback after a failed batch");
            }
            match failure {
                BatchFailure::Request { index, error } => {
                    tracing::warn!(%error, "event store refused one append of a batch");
                    let request = batch.remove(index);
                    request.failed();
                    // The caller may have given up waiting; nothing to do then.
                    let _ = request.reply.send(Err(error));
                    if batch.is_empty() {
                        return;
                    }
                }
                BatchFailure::Batch(error) => {
                    tracing::error!(%error, requests = batch.len(), "event store batch failed");
                    for request in batch {
                        request.failed();
                        let _ = request.reply.send(Err(error.clone()));
                    }
                    return;
                }
            }
        }
    }

    fn execute(&self, sql: &str) -> Result<(), StoreError> {
        self.conn.prepare_cached(sql)?.execute([])?;
        Ok(())
    }

    /// Count, publish the new head, answer.
    fn finish(&mut self, batch: Vec<WriteRequest>, outcomes: Vec<Outcome>) {
        self.counters.commits.fetch_add(1, Ordering::Relaxed);
        let mut head = 0;
        let mut first = u64::MAX;
        for (request, outcome) in batch.iter().zip(&outcomes) {
            if let Outcome::Written(result) = outcome {
                head = head.max(result.position);
                first = first.min(result.position + 1 - request.events.len() as u64);
                self.counters
                    .appends_written
                    .fetch_add(1, Ordering::Relaxed);
                self.counters
                    .events_written
                    .fetch_add(request.events.len() as u64, Ordering::Relaxed);
            }
        }
        if head > 0 {
            self.note_categories(&batch, &outcomes, first, head);
        }
        // Publish before answering: whoever learns of an append can already
        // be woken for it.
        self.head.send_if_modified(|current| {
            if head > *current {
                *current = head;
                true
            } else {
                false
            }
        });
        for (request, outcome) in batch.into_iter().zip(outcomes) {
            let reply = match outcome {
                Outcome::Written(result) | Outcome::Existing(result) => Ok(result),
                Outcome::Failed(error) => Err(error),
            };
            let _ = request.reply.send(reply);
        }
    }

    /// Tells `heads` which categories the batch wrote (before the head is
    /// published), or that every category may have changed when the batch
    /// does not start right after this writer's last position (another
    /// process wrote in between).
    fn note_categories(
        &mut self,
        batch: &[WriteRequest],
        outcomes: &[Outcome],
        first: u64,
        head: u64,
    ) {
        if first == self.last_position + 1 {
            for (request, outcome) in batch.iter().zip(outcomes) {
                if let Outcome::Written(result) = outcome {
                    self.heads.record(&request.category, result.position);
                }
            }
        } else {
            self.heads.forget_all(head);
        }
        self.last_position = self.last_position.max(head);
    }

    /// One transaction for the whole batch; on `Err` the caller rolls back.
    fn write_batch(
        &mut self,
        batch: &[WriteRequest],
        recorded_at: &str,
    ) -> Result<Vec<Outcome>, BatchFailure> {
        self.execute("BEGIN IMMEDIATE")
            .map_err(BatchFailure::Batch)?;
        // The last revision of each stream the batch touched, kept up to
        // date as the batch writes.
        let mut revisions: HashMap<&str, Option<u64>> = HashMap::new();
        let mut outcomes = Vec::with_capacity(batch.len());
        for (index, request) in batch.iter().enumerate() {
            if let Some(error) = request.not_attempted() {
                outcomes.push(Outcome::Failed(error));
                continue;
            }
            let failed = |error| BatchFailure::Request { index, error };
            let current = match revisions.get(request.stream.as_str()) {
                Some(current) => *current,
                None => self
                    .last_revision_of(&request.stream)
                    .map_err(BatchFailure::Batch)?,
            };
            let outcome = match self.decide(request, current).map_err(failed)? {
                Decision::AlreadyWritten(result) => Outcome::Existing(result),
                Decision::Reject { actual } => {
                    request.failed();
                    Outcome::Failed(StoreError::WrongExpectedRevision {
                        stream: request.stream.clone(),
                        expected: request.expected,
                        actual,
                    })
                }
                Decision::Write { first_revision } => {
                    let result = self
                        .insert(request, first_revision, recorded_at)
                        .map_err(failed)?;
                    revisions.insert(&request.stream, Some(result.next_expected_revision));
                    Outcome::Written(result)
                }
            };
            if !matches!(outcome, Outcome::Written(_)) {
                revisions.insert(&request.stream, current);
            }
            outcomes.push(outcome);
        }
        self.execute("COMMIT").map_err(BatchFailure::Batch)?;
        Ok(outcomes)
    }

    /// The stream's last revision, `None` when it has no event.
    fn last_revision_of(&self, stream: &str) -> Result<Option<u64>, StoreError> {
        let last: Option<i64> = self
            .conn
            .prepare_cached("SELECT MAX(revision) FROM events WHERE stream_id = ?1")?
            .query_row([stream], |row| row.get(0))?;
        last.map(|revision| from_sql(revision, "revision"))
            .transpose()
    }

    /// All events of the request, one row each; the position of the last.
    fn insert(
        &self,
        request: &WriteRequest,
        first_revision: u64,
        recorded_at: &str,
    ) -> Result<AppendResult, StoreError> {
        let last_revision = last_revision(request, first_revision)?;
        let mut insert = self.conn.prepare_cached(INSERT_EVENT)?;
        let mut position = 0;
        for (event, revision) in request.events.iter().zip(first_revision..) {
            insert.execute(params![
                request.stream,
                request.category,
                to_sql(revision)?,
                event.id,
                event.event_type,
                event.data,
                event.metadata,
                recorded_at,
            ])?;
            position = from_sql(self.conn.last_insert_rowid(), "position")?;
        }
        Ok(AppendResult {
            next_expected_revision: last_revision,
            position,
        })
    }

    /// The expected-revision and idempotency rules of EventStoreDB.
    fn decide(&self, request: &WriteRequest, current: Option<u64>) -> Result<Decision, StoreError> {
        let first_id = match request.events.first() {
            Some(event) => event.id.as_str(),
            None => {
                return Err(StoreError::EmptyAppend {
                    stream: request.stream.clone(),
                })
            }
        };
        match request.expected {
            ExpectedRevision::Any | ExpectedRevision::StreamExists => {
                let Some(current) = current else {
                    return Ok(if request.expected == ExpectedRevision::Any {
                        Decision::Write { first_revision: 0 }
                    } else {
                        Decision::Reject { actual: None }
                    });
                };
                // ESDB: if the first id is already in the stream, this is a
                // retry; it must then match completely.
                if let Some(first) = self.revision_of(&request.stream, first_id)? {
                    return Ok(match self.stored_as(request, first)? {
                        Some(result) => Decision::AlreadyWritten(result),
                        None => Decision::Reject {
                            actual: Some(current),
                        },
                    });
                }
                Ok(Decision::Write {
                    first_revision: current.saturating_add(1),
                })
            }
            ExpectedRevision::NoStream | ExpectedRevision::Exact(_) => {
                let expected = match request.expected {
                    ExpectedRevision::Exact(revision) => Some(revision),
                    _ => None,
                };
                let first = match expected {
                    None => Some(0),
                    Some(revision) => revision.checked_add(1),
                };
                if expected == current {
                    if let Some(first_revision) = first {
                        return Ok(Decision::Write { first_revision });
                    }
                }
                // Behind the stream: the same append retried, or a conflict.
                if let (Some(first), Some(current)) = (first, current) {
                    if first <= current {
                        if let Some(result) = self.stored_as(request, first)? {
                            return Ok(Decision::AlreadyWritten(result));
                        }
                    }
                }
                Ok(Decision::Reject { actual: current })
            }
        }
    }

    fn revision_of(&self, stream: &str, event_id: &str) -> Result<Option<u64>, StoreError> {
        let first: Option<i64> = self
            .conn
            .prepare_cached(
                // INDEXED BY: without statistics SQLite would walk the whole
                // stream in the (stream_id, revision) index instead.
                "SELECT MIN(revision) FROM events INDEXED BY events_event_id \
                 WHERE event_id = ?1 AND stream_id = ?2",
            )?
            .query_row([event_id, stream], |row| row.get(0))?;
        first
            .map(|revision| from_sql(revision, "revision"))
            .transpose()
    }

    /// If the request's events are stored at revisions `first..`, in order,
    /// the result the original append returned.
    fn stored_as(
        &self,
        request: &WriteRequest,
        first: u64,
    ) -> Result<Option<AppendResult>, StoreError> {
        let count = request.events.len() as u64;
        let Some(last) = first.checked_add(count.saturating_sub(1)) else {
            return Ok(None);
        };
        let (Ok(first_sql), Ok(last_sql)) = (i64::try_from(first), i64::try_from(last)) else {
            return Ok(None);
        };
        let mut statement = self.conn.prepare_cached(
            "SELECT event_id, position FROM events \
             WHERE stream_id = ?1 AND revision BETWEEN ?2 AND ?3 ORDER BY revision",
        )?;
        let rows = statement
            .query_map(params![request.stream, first_sql, last_sql], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        if rows.len() != request.events.len() {
            return Ok(None);
        }
        let mut position = 0_i64;
        for ((stored_id, stored_position), event) in rows.iter().zip(&request.events) {
            if *stored_id != event.id {
                return Ok(None);
            }
            position = *stored_position;
        }
        Ok(Some(AppendResult {
            next_expected_revision: last,
            position: from_sql(position, "position")?,
        }))
    }
}

fn last_revision(request: &WriteRequest, first_revision: u64) -> Result<u64, StoreError> {
    let count = request.events.len() as u64;
    let last = first_revision
        .checked_add(count.saturating_sub(1))
        .ok_or_else(|| StoreError::database("revision overflow"))?;
    to_sql(first_revision)?;
    to_sql(last)?;
    Ok(last)
}

/// RFC 3339 UTC with exactly microsecond precision: sorts as text, and the
/// value handed back by reads is the value stored.
pub(crate) fn format_timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn to_sql(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::database(format!("{value} does not fit SQLite")))
}

pub(crate) fn from_sql(value: i64, column: &str) -> Result<u64, StoreError> {
    u64::try_from(value)
        .map_err(|_| StoreError::database(format!("corrupt {column} {value} in the events table")))
}
