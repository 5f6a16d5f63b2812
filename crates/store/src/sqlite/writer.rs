//! The single writer task: group commit.
//!
//! One task owns the only write connection. Appends arrive over a bounded
//! channel; the writer takes everything pending (up to the batch bounds),
//! decides each request in arrival order inside ONE `BEGIN IMMEDIATE`
//! transaction, commits once (one fsync for the whole batch), publishes the
//! new head position and then answers every request.
//!
//! The writer looks up the current revision of every stream of the batch in
//! one query, and which `Any` appends repeat an event id already stored in
//! one more, and keeps the revisions up to date as it decides, so
//! expected-revision checks happen *before* inserting: a request with a wrong
//! expectation is answered with an error and never touches the other requests
//! of its batch. The rows of every writing request of the batch then go in
//! multi-row `INSERT`s of up to [`ROWS_PER_INSERT`] rows: a batch costs a
//! handful of statements however many streams it touches, which is
//! what lets the commission postings of many orders (one small append per
//! beneficiary) share a commit cheaply. Only the rare paths (a retried append,
//! a conflict) look at stored rows one request at a time, after writing what
//! was decided before them.
//!
//! Should the database still refuse the grouped rows (a CHECK constraint, an
//! I/O error), the transaction is rolled back and the batch is redone one
//! `INSERT` per request; a request refused then is answered with the error,
//! and the batch is redone without it: bounded, since each retry removes a
//! request, and nothing is committed until all of a batch is decided.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{Sqlite, SqliteConnection};
use sqlx::{Connection, QueryBuilder, Row};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit};

use super::heads::CategoryHeads;

use crate::error::StoreError;
use crate::limits::MAX_EVENTS_PER_APPEND;
use crate::types::{AppendResult, ExpectedRevision};

/// Bound parameters per inserted row.
const COLUMNS_PER_ROW: usize = 8;
/// SQLite's limit of bound parameters per statement.
const MAX_BOUND_PARAMETERS: usize = 32_766;
// A full-size append must fit one statement.
const _: () = assert!(MAX_EVENTS_PER_APPEND * COLUMNS_PER_ROW <= MAX_BOUND_PARAMETERS);
/// Rows per grouped `INSERT` statement. Bounded well below SQLite's limit:
/// sqlx's SQLite driver binds in time quadratic in a statement's parameters
/// (it looks each one up by name), while every statement costs a hand-off to
/// its worker thread. 256 rows (2,048 parameters) keep a server's batches in
/// one statement and a bulk import's 4,096-append batches in 16.
const ROWS_PER_INSERT: usize = 256;

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
    /// The grouped rows were refused: redo the batch one request at a time to
    /// find the request at fault.
    Grouped(StoreError),
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
    /// Updated before `head` is published (see `heads`).
    pub(crate) heads: Arc<CategoryHeads>,
    /// The last position this writer wrote (the store's head when opened).
    pub(crate) last_position: u64,
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

    async fn commit_batch(&mut self, mut batch: Vec<WriteRequest>) {
        let recorded_at = format_timestamp(Utc::now());
        let mut grouped = true;
        // Each failed attempt removes one request or stops grouping: at most
        // `batch.len() + 1` rounds.
        loop {
            let failure = match self.write_batch(&batch, &recorded_at, grouped).await {
                Ok(outcomes) => return self.finish(batch, outcomes),
                Err(failure) => failure,
            };
            if let Err(error) = sqlx::query("ROLLBACK").execute(&mut self.conn).await {
                // SQLite may already have rolled back on its own.
                tracing::debug!(%error, "rollback after a failed batch");
            }
            match failure {
                BatchFailure::Grouped(error) => {
                    tracing::debug!(%error, "grouped rows refused; redoing the batch one request at a time");
                    grouped = false;
                }
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
    /// `grouped`: the rows of all writing requests go in one `INSERT` (see the
    /// module's header); otherwise one `INSERT` per request, which names the
    /// request the database refuses.
    async fn write_batch(
        &mut self,
        batch: &[WriteRequest],
        recorded_at: &str,
        grouped: bool,
    ) -> Result<Vec<Outcome>, BatchFailure> {
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut self.conn)
            .await
            .map_err(|error| BatchFailure::Batch(error.into()))?;
        let mut revisions = self
            .current_revisions(batch)
            .await
            .map_err(BatchFailure::Batch)?;
        let repeats = if grouped {
            self.repeated_first_ids(batch, &revisions)
                .await
                .map_err(BatchFailure::Batch)?
        } else {
            HashSet::new()
        };
        let mut pending = Pending::default();
        let mut outcomes: Vec<Option<Outcome>> = batch.iter().map(|_| None).collect();
        for (index, request) in batch.iter().enumerate() {
            if let Some(error) = request.not_attempted() {
                outcomes[index] = Some(Outcome::Failed(error));
                continue;
            }
            let current = revisions.get(&request.stream).copied().flatten();
            let failed = |error| BatchFailure::Request { index, error };
            let quick = if grouped {
                quick_decision(request, current, repeats.contains(&index), &pending)
            } else {
                None
            };
            let decision = match quick {
                Some(decision) => decision,
                None => {
                    // The rare paths read stored rows: write what was decided
                    // before this request first, so they see it.
                    self.flush(batch, &mut pending, &mut outcomes, recorded_at)
                        .await
                        .map_err(BatchFailure::Grouped)?;
                    self.decide(request, current).await.map_err(failed)?
                }
            };
            match decision {
                Decision::AlreadyWritten(result) => {
                    outcomes[index] = Some(Outcome::Existing(result))
                }
                Decision::Reject { actual } => {
                    request.failed();
                    outcomes[index] = Some(Outcome::Failed(StoreError::WrongExpectedRevision {
                        stream: request.stream.clone(),
                        expected: request.expected,
                        actual,
                    }))
                }
                Decision::Write { first_revision } => {
                    let last = last_revision(request, first_revision).map_err(failed)?;
                    revisions.insert(request.stream.clone(), Some(last));
                    if grouped {
                        pending.add(index, request, first_revision);
                    } else {
                        let result = self
                            .insert(request, first_revision, recorded_at)
                            .await
                            .map_err(failed)?;
                        outcomes[index] = Some(Outcome::Written(result));
                    }
                }
            }
        }
        self.flush(batch, &mut pending, &mut outcomes, recorded_at)
            .await
            .map_err(BatchFailure::Grouped)?;
        sqlx::query("COMMIT")
            .execute(&mut self.conn)
            .await
            .map_err(|error| BatchFailure::Batch(error.into()))?;
        outcomes
            .into_iter()
            .map(|outcome| {
                outcome.ok_or_else(|| {
                    BatchFailure::Batch(StoreError::database(
                        "a request of the batch was not decided",
                    ))
                })
            })
            .collect()
    }

    /// The requests of the batch (by index) whose first event id is already
    /// stored in their stream: `Any` retries, which must be checked against
    /// the stored rows. One query for the whole batch.
    async fn repeated_first_ids(
        &mut self,
        batch: &[WriteRequest],
        revisions: &HashMap<String, Option<u64>>,
    ) -> Result<HashSet<usize>, StoreError> {
        let candidates: Vec<(usize, &str, &str)> = batch
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                matches!(
                    r.expected,
                    ExpectedRevision::Any | ExpectedRevision::StreamExists
                ) && revisions.get(&r.stream).copied().flatten().is_some()
            })
            .filter_map(|(i, r)| {
                r.events
                    .first()
                    .map(|e| (i, r.stream.as_str(), e.id.as_str()))
            })
            .collect();
        if candidates.is_empty() {
            return Ok(HashSet::new());
        }
        let candidates = serde_json::to_string(&candidates).map_err(StoreError::database)?;
        let rows: Vec<i64> = sqlx::query_scalar(
            // INDEXED BY: see `revision_of`.
            "SELECT json_extract(c.value, '$[0]') FROM json_each(?1) AS c \
             WHERE EXISTS (SELECT 1 FROM events INDEXED BY events_event_id \
                           WHERE event_id = json_extract(c.value, '$[2]') \
                             AND stream_id = json_extract(c.value, '$[1]'))",
        )
        .bind(candidates)
        .fetch_all(&mut self.conn)
        .await?;
        rows.into_iter()
            .map(|index| {
                usize::try_from(index).map_err(|_| StoreError::database("bad request index"))
            })
            .collect()
    }

    /// Inserts the pending rows, in order, in as few statements as the
    /// parameter limit allows, and records each request's result.
    async fn flush(
        &mut self,
        batch: &[WriteRequest],
        pending: &mut Pending,
        outcomes: &mut [Option<Outcome>],
        recorded_at: &str,
    ) -> Result<(), StoreError> {
        if pending.writes.is_empty() {
            return Ok(());
        }
        let rows: Vec<NewRow<'_>> = pending
            .writes
            .iter()
            .flat_map(|&(index, first)| {
                let request = &batch[index];
                request
                    .events
                    .iter()
                    .zip(first..)
                    .map(move |(event, revision)| NewRow {
                        request,
                        event,
                        revision,
                    })
            })
            .collect();
        // Positions come in commit order from AUTOINCREMENT, consecutive
        // within the transaction: a chunk's rows are `last - len + 1 ..= last`.
        let mut positions = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let last = insert_rows(&mut self.conn, chunk, recorded_at).await?;
            let len = chunk.len() as u64;
            let first = last
                .checked_sub(len - 1)
                .ok_or_else(|| StoreError::database("position underflow"))?;
            positions.extend(first..=last);
        }
        self.check_first_position(&rows[0], positions[0]).await?;
        let mut next = 0;
        for &(index, first_revision) in &pending.writes {
            let request = &batch[index];
            next += request.events.len();
            outcomes[index] = Some(Outcome::Written(AppendResult {
                next_expected_revision: last_revision(request, first_revision)?,
                position: positions[next - 1],
            }));
        }
        pending.clear();
        Ok(())
    }

    /// An assertion on the position arithmetic above: the first row written
    /// is where it was computed to be.
    async fn check_first_position(
        &mut self,
        row: &NewRow<'_>,
        position: u64,
    ) -> Result<(), StoreError> {
        let stored: Option<i64> = sqlx::query_scalar(
            "SELECT position FROM events WHERE stream_id = ?1 AND revision = ?2",
        )
        .bind(row.request.stream.as_str())
        .bind(to_sql(row.revision)?)
        .fetch_optional(&mut self.conn)
        .await?;
        if stored.map(|p| from_sql(p, "position")).transpose()? != Some(position) {
            return Err(StoreError::database(format!(
                "grouped insert: {}@{} is at position {stored:?}, not {position}",
                row.request.stream, row.revision
            )));
        }
        Ok(())
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
        let last_revision = last_revision(request, first_revision)?;
        let rows: Vec<NewRow<'_>> = request
            .events
            .iter()
            .zip(first_revision..)
            .map(|(event, revision)| NewRow {
                request,
                event,
                revision,
            })
            .collect();
        let position = insert_rows(&mut self.conn, &rows, recorded_at).await?;
        Ok(AppendResult {
            next_expected_revision: last_revision,
            position,
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

/// One event row to insert.
struct NewRow<'a> {
    request: &'a WriteRequest,
    event: &'a PreparedEvent,
    revision: u64,
}

/// The writing requests of a batch decided but not yet inserted, and the
/// (stream, event id) pairs of every request written in the batch so far
/// (inserted or not), so a later request repeating one is recognised.
#[derive(Default)]
struct Pending {
    /// (request index, first revision), in decision order.
    writes: Vec<(usize, u64)>,
    /// Kept across flushes: a repeat of an append flushed earlier in the batch
    /// is invisible to the batch's first lookup.
    ids: HashSet<(String, String)>,
}

impl Pending {
    fn add(&mut self, index: usize, request: &WriteRequest, first_revision: u64) {
        self.writes.push((index, first_revision));
        for event in &request.events {
            self.ids.insert((request.stream.clone(), event.id.clone()));
        }
    }

    fn holds(&self, stream: &str, event_id: &str) -> bool {
        self.ids.contains(&(stream.to_owned(), event_id.to_owned()))
    }

    /// After a flush: the writes are stored; their ids stay known.
    fn clear(&mut self) {
        self.writes.clear();
    }
}

/// The decision that needs no stored row: a new append at the expected
/// revision, or an `Any` append whose first id is stored nowhere in its
/// stream. `None`: a retry or a conflict, decided against the stored rows.
fn quick_decision(
    request: &WriteRequest,
    current: Option<u64>,
    first_id_stored: bool,
    pending: &Pending,
) -> Option<Decision> {
    let first_id = request.events.first()?.id.as_str();
    match request.expected {
        ExpectedRevision::Any | ExpectedRevision::StreamExists => match current {
            None if request.expected == ExpectedRevision::Any => {
                Some(Decision::Write { first_revision: 0 })
            }
            None => Some(Decision::Reject { actual: None }),
            Some(_) if first_id_stored || pending.holds(&request.stream, first_id) => None,
            Some(current) => Some(Decision::Write {
                first_revision: current.checked_add(1)?,
            }),
        },
        ExpectedRevision::NoStream => current
            .is_none()
            .then_some(Decision::Write { first_revision: 0 }),
        ExpectedRevision::Exact(revision) => (current == Some(revision))
            .then(|| revision.checked_add(1))
            .flatten()
            .map(|first_revision| Decision::Write { first_revision }),
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

/// One multi-row INSERT of `rows` (at most [`ROWS_PER_INSERT`]); the
/// position of the last row.
async fn insert_rows(
    conn: &mut SqliteConnection,
    rows: &[NewRow<'_>],
    recorded_at: &str,
) -> Result<u64, StoreError> {
    debug_assert!(!rows.is_empty() && rows.len() <= ROWS_PER_INSERT);
    let mut insert = QueryBuilder::<Sqlite>::new(
        "INSERT INTO events \
         (stream_id, category, revision, event_id, event_type, data, metadata, recorded_at) ",
    );
    let mut revisions = Vec::with_capacity(rows.len());
    for row in rows {
        revisions.push(to_sql(row.revision)?);
    }
    insert.push_values(rows.iter().zip(revisions), |mut b, (row, revision)| {
        b.push_bind(row.request.stream.as_str())
            .push_bind(row.request.category.as_str())
            .push_bind(revision)
            .push_bind(row.event.id.as_str())
            .push_bind(row.event.event_type.as_str())
            .push_bind(row.event.data.as_str())
            .push_bind(row.event.metadata.as_deref())
            .push_bind(recorded_at);
    });
    let done = insert.build().execute(conn).await?;
    // The rowid of the last row of a multi-row INSERT.
    from_sql(done.last_insert_rowid(), "position")
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
