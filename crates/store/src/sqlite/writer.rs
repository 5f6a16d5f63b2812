//! The single writer task: group commit.
//!
//! One task owns the only write connection. Appends arrive over a bounded
//! channel; the writer takes everything pending (up to the batch bounds),
//! decides each request in arrival order inside ONE `BEGIN IMMEDIATE`
//! transaction, commits once (one fsync for the whole batch), publishes the
//! new head position and then answers every request.
//!
//! The writer looks up the current revision of every stream of the batch in
//! one query and keeps it up to date as it inserts, so expected-revision
//! checks happen *before* inserting: a request with a wrong expectation is
//! answered with an error and never touches the other requests of its batch.
//! A writing request costs one multi-row `INSERT`.
//!
//! Should the database still refuse a request (a CHECK constraint, an I/O
//! error), the transaction is rolled back, that request is answered with the
//! error, and the batch is redone without it: bounded, since each retry
//! removes a request, and nothing is committed until all of a batch is decided.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{Sqlite, SqliteConnection};
use sqlx::{Connection, QueryBuilder, Row};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit};

use crate::error::StoreError;
use crate::limits::MAX_EVENTS_PER_APPEND;
use crate::types::{AppendResult, ExpectedRevision};

/// Bound parameters per inserted row.
const COLUMNS_PER_ROW: usize = 7;
// A full-size append must fit SQLite's 32 766 bound parameters per statement.
const _: () = assert!(MAX_EVENTS_PER_APPEND * COLUMNS_PER_ROW <= 32_766);

/// Most append requests committed in one transaction. Bounds the latency a
/// batch adds to its first request and the work lost to a failed COMMIT.
pub const MAX_BATCH_REQUESTS: usize = 256;

/// Most events committed in one transaction (10 full-size appends).
pub const MAX_BATCH_EVENTS: usize = 10_000;

/// Most payload bytes committed in one transaction. A single request larger
/// than this (impossible given [`crate::limits::MAX_APPEND_BYTES`]) would
/// still be committed alone.
pub const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;

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

/// One append waiting for the writer.
#[derive(Debug)]
pub(crate) struct WriteRequest {
    pub(crate) stream: String,
    pub(crate) expected: ExpectedRevision,
    /// Never empty (checked by validation).
    pub(crate) events: Vec<PreparedEvent>,
    /// data + metadata bytes, for the batch bound.
    pub(crate) bytes: usize,
    pub(crate) reply: oneshot::Sender<Result<AppendResult, StoreError>>,
    /// `bytes` permits of the queue's memory budget, released when the
    /// request is answered and dropped.
    pub(crate) _budget: OwnedSemaphorePermit,
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
    pub(crate) conn: SqliteConnection,
    pub(crate) requests: mpsc::Receiver<WriteRequest>,
    pub(crate) head: watch::Sender<u64>,
    pub(crate) counters: Arc<Counters>,
    /// A request taken from the channel that did not fit the previous batch.
    pub(crate) held: Option<WriteRequest>,
}

impl Writer {
    /// Serve batches until every sender is gone (store closed or dropped),
    /// then close the connection. Requests queued before that are still
    /// committed and answered.
    pub(crate) async fn run(mut self) {
        while let Some(batch) = self.next_batch().await {
            self.commit_batch(batch).await;
        }
        if let Err(error) = self.conn.close().await {
            tracing::warn!(%error, "closing the event store write connection failed");
        }
    }

    async fn next_batch(&mut self) -> Option<Vec<WriteRequest>> {
        let first = match self.held.take() {
            Some(request) => request,
            None => self.requests.recv().await?,
        };
        let mut events = first.events.len();
        let mut bytes = first.bytes;
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_REQUESTS {
            let Ok(next) = self.requests.try_recv() else {
                break;
            };
            if events + next.events.len() > MAX_BATCH_EVENTS || bytes + next.bytes > MAX_BATCH_BYTES
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

    async fn commit_batch(&mut self, mut batch: Vec<WriteRequest>) {
        let recorded_at = format_timestamp(Utc::now());
        // Each failed attempt removes one request: at most `batch.len()` rounds.
        loop {
            let failure = match self.write_batch(&batch, &recorded_at).await {
                Ok(outcomes) => return self.finish(batch, outcomes),
                Err(failure) => failure,
            };
            if let Err(error) = sqlx::query("ROLLBACK").execute(&mut self.conn).await {
                // SQLite may already have rolled back on its own.
                tracing::debug!(%error, "rollback after a failed batch");
            }
            match failure {
                BatchFailure::Request { index, error } => {
                    tracing::warn!(%error, "event store refused one append of a batch");
                    let request = batch.remove(index);
                    // The caller may have given up waiting; nothing to do then.
                    let _ = request.reply.send(Err(error));
                    if batch.is_empty() {
                        return;
                    }
                }
                BatchFailure::Batch(error) => {
                    tracing::error!(%error, requests = batch.len(), "event store batch failed");
                    for request in batch {
                        let _ = request.reply.send(Err(error.clone()));
                    }
                    return;
                }
            }
        }
    }

    /// Count, publish the new head, answer.
    fn finish(&mut self, batch: Vec<WriteRequest>, outcomes: Vec<Outcome>) {
        self.counters.commits.fetch_add(1, Ordering::Relaxed);
        let mut head = 0;
        for (request, outcome) in batch.iter().zip(&outcomes) {
            if let Outcome::Written(result) = outcome {
                head = head.max(result.position);
                self.counters
                    .appends_written
                    .fetch_add(1, Ordering::Relaxed);
                self.counters
                    .events_written
                    .fetch_add(request.events.len() as u64, Ordering::Relaxed);
            }
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

    /// One transaction for the whole batch; on `Err` the caller rolls back.
    async fn write_batch(
        &mut self,
        batch: &[WriteRequest],
        recorded_at: &str,
    ) -> Result<Vec<Outcome>, BatchFailure> {
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut self.conn)
            .await
            .map_err(|error| BatchFailure::Batch(error.into()))?;
        let mut revisions = self
            .current_revisions(batch)
            .await
            .map_err(BatchFailure::Batch)?;
        let mut outcomes = Vec::with_capacity(batch.len());
        for (index, request) in batch.iter().enumerate() {
            let current = revisions.get(&request.stream).copied().flatten();
            let failed = |error| BatchFailure::Request { index, error };
            let outcome = match self.decide(request, current).await.map_err(failed)? {
                Decision::AlreadyWritten(result) => Outcome::Existing(result),
                Decision::Reject { actual } => Outcome::Failed(StoreError::WrongExpectedRevision {
                    stream: request.stream.clone(),
                    expected: request.expected,
                    actual,
                }),
                Decision::Write { first_revision } => {
                    let result = self
                        .insert(request, first_revision, recorded_at)
                        .await
                        .map_err(failed)?;
                    revisions.insert(request.stream.clone(), Some(result.next_expected_revision));
                    Outcome::Written(result)
                }
            };
            outcomes.push(outcome);
        }
        sqlx::query("COMMIT")
            .execute(&mut self.conn)
            .await
            .map_err(|error| BatchFailure::Batch(error.into()))?;
        Ok(outcomes)
    }

    /// Last revision of every stream of the batch, in one query (an index
    /// seek per stream).
    async fn current_revisions(
        &mut self,
        batch: &[WriteRequest],
    ) -> Result<HashMap<String, Option<u64>>, StoreError> {
        let mut streams: Vec<&str> = batch.iter().map(|r| r.stream.as_str()).collect();
        streams.sort_unstable();
        streams.dedup();
        let streams = serde_json::to_string(&streams).map_err(StoreError::database)?;
        let rows = sqlx::query(
            "SELECT s.value AS stream_id, \
                    (SELECT MAX(revision) FROM events WHERE stream_id = s.value) AS last_revision \
             FROM json_each(?1) AS s",
        )
        .bind(streams)
        .fetch_all(&mut self.conn)
        .await?;
        let mut revisions = HashMap::with_capacity(rows.len());
        for row in rows {
            let last: Option<i64> = row.try_get("last_revision")?;
            let last = last
                .map(|revision| from_sql(revision, "revision"))
                .transpose()?;
            revisions.insert(row.try_get("stream_id")?, last);
        }
        Ok(revisions)
    }

    /// All events of the request in one multi-row INSERT.
    async fn insert(
        &mut self,
        request: &WriteRequest,
        first_revision: u64,
        recorded_at: &str,
    ) -> Result<AppendResult, StoreError> {
        let count = request.events.len() as u64;
        let last_revision = first_revision
            .checked_add(count.saturating_sub(1))
            .ok_or_else(|| StoreError::database("revision overflow"))?;
        let first = to_sql(first_revision)?;
        to_sql(last_revision)?;
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO events \
             (stream_id, revision, event_id, event_type, data, metadata, recorded_at) ",
        );
        insert.push_values(
            request.events.iter().zip(first..),
            |mut row, (event, revision)| {
                row.push_bind(request.stream.as_str())
                    .push_bind(revision)
                    .push_bind(event.id.as_str())
                    .push_bind(event.event_type.as_str())
                    .push_bind(event.data.as_str())
                    .push_bind(event.metadata.as_deref())
                    .push_bind(recorded_at);
            },
        );
        let done = insert.build().execute(&mut self.conn).await?;
        Ok(AppendResult {
            next_expected_revision: last_revision,
            // The rowid of the last row of a multi-row INSERT.
            position: from_sql(done.last_insert_rowid(), "position")?,
        })
    }

    /// The expected-revision and idempotency rules of EventStoreDB.
    async fn decide(
        &mut self,
        request: &WriteRequest,
        current: Option<u64>,
    ) -> Result<Decision, StoreError> {
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
                if let Some(first) = self.revision_of(&request.stream, first_id).await? {
                    return Ok(match self.stored_as(request, first).await? {
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
                        if let Some(result) = self.stored_as(request, first).await? {
                            return Ok(Decision::AlreadyWritten(result));
                        }
                    }
                }
                Ok(Decision::Reject { actual: current })
            }
        }
    }

    async fn revision_of(
        &mut self,
        stream: &str,
        event_id: &str,
    ) -> Result<Option<u64>, StoreError> {
        let first: Option<i64> = sqlx::query_scalar(
            // INDEXED BY: without statistics SQLite would walk the whole
            // stream in the (stream_id, revision) index instead.
            "SELECT MIN(revision) FROM events INDEXED BY events_event_id \
             WHERE event_id = ?1 AND stream_id = ?2",
        )
        .bind(event_id)
        .bind(stream)
        .fetch_one(&mut self.conn)
        .await?;
        first
            .map(|revision| from_sql(revision, "revision"))
            .transpose()
    }

    /// If the request's events are stored at revisions `first..`, in order,
    /// the result the original append returned.
    async fn stored_as(
        &mut self,
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
        let rows = sqlx::query(
            "SELECT revision, event_id, position FROM events \
             WHERE stream_id = ?1 AND revision BETWEEN ?2 AND ?3 ORDER BY revision",
        )
        .bind(request.stream.as_str())
        .bind(first_sql)
        .bind(last_sql)
        .fetch_all(&mut self.conn)
        .await?;
        if rows.len() != request.events.len() {
            return Ok(None);
        }
        let mut position = 0_i64;
        for (row, event) in rows.iter().zip(&request.events) {
            let stored_id: String = row.try_get("event_id")?;
            if stored_id != event.id {
                return Ok(None);
            }
            position = row.try_get("position")?;
        }
        Ok(Some(AppendResult {
            next_expected_revision: last,
            position: from_sql(position, "position")?,
        }))
    }
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
