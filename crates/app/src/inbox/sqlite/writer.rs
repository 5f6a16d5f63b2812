//! The single writer thread: every write of the inbox, group-committed.
//!
//! One OS thread owns the only write connection (rusqlite: a statement is a
//! function call, not a hand-off to a driver's worker thread). Requests (accept;
//! settle and claim, which a lone complete, release or claim also is; requeue)
//! arrive over a bounded channel; the writer takes
//! everything pending (up to the batch bounds), runs each request in arrival
//! order inside ONE `BEGIN IMMEDIATE` transaction, commits once (one fsync
//! for the whole batch), wakes workers for the new (or requeued) deliveries and then
//! answers every request. A hundred concurrent `accept`s cost one fsync, and
//! since SQLite sees one writer, concurrent accepts of the same event cannot
//! race: the first one inserts, the others hit `UNIQUE` and are duplicates.
//!
//! A batch first runs without savepoints. If the database refuses one of its
//! requests, the batch is rolled back and run again with each request inside
//! its own `SAVEPOINT`: the refused request is rolled back alone and answered
//! with its error, without failing the others of its batch. If the transaction itself fails (BEGIN, COMMIT,
//! or SQLite rolled everything back after an I/O error), every request of the
//! batch is answered with an error and nothing of it is stored.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Datelike, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::{mpsc, oneshot, Notify, OwnedSemaphorePermit};

use super::{decode_item, rusqlite_storage, ITEM_COLUMNS};
use crate::inbox::{Acceptance, InboxError, InboxItem};

/// Most requests run in one transaction. Bounds the latency a batch adds to
/// its first request and the work a failed COMMIT throws away.
pub const MAX_BATCH_REQUESTS: usize = 256;

/// Most delivery bytes committed in one transaction. A single delivery is at
/// most [`super::MAX_DELIVERY_BYTES`] + [`super::MAX_DELIVERY_META_BYTES`],
/// so it always fits alone.
pub const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;
const _: () =
    assert!(MAX_BATCH_BYTES >= super::MAX_DELIVERY_BYTES + super::MAX_DELIVERY_META_BYTES);

/// A delivery checked and converted to its column representation on the
/// caller's task, so that the writer spends its time only on SQL.
#[derive(Debug)]
pub(crate) struct NewDelivery {
    pub(crate) platform: &'static str,
    pub(crate) shop: String,
    pub(crate) topic: String,
    pub(crate) dedupe_key: String,
    pub(crate) delivery_id: String,
    pub(crate) received_at: String,
    /// JSON object.
    pub(crate) headers: String,
    pub(crate) body: Vec<u8>,
}

/// How a worker finished with an item, in the writer's terms: the status stored, reasons already
/// bounded.
#[derive(Debug)]
pub(crate) enum Settled {
    Complete {
        id: i64,
        status: &'static str,
        reason: Option<String>,
    },
    Release {
        id: i64,
        error: String,
        retry_after: Duration,
    },
}

#[derive(Debug)]
pub(crate) enum Op {
    Accept(NewDelivery),
    /// Records `settled` in order, then claims up to `max` (none when 0), atomically: one
    /// request, so one savepoint when its batch is run carefully. `max` is already bounded by
    /// [`super::MAX_CLAIM`], `settled` by [`super::MAX_SETTLEMENTS`].
    SettleAndClaim {
        settled: Vec<Settled>,
        max: usize,
        lease: Duration,
    },
    /// A parked item back to pending (an operator's retry after a fix).
    Requeue {
        id: i64,
    },
}

pub(crate) enum Answer {
    Accepted(Acceptance),
    /// In id order, `attempts` as it was before this claim (empty when `max` was 0).
    Claimed(Vec<InboxItem>),
    /// Whether a requeue found the item parked (and made it pending).
    Requeued(bool),
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::Accepted(acceptance) => f.debug_tuple("Accepted").field(acceptance).finish(),
            Answer::Claimed(items) => write!(f, "Claimed({} items)", items.len()),
            Answer::Requeued(requeued) => f.debug_tuple("Requeued").field(requeued).finish(),
        }
    }
}

/// One request waiting for the writer.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) op: Op,
    /// Delivery bytes, for the batch bound (0 for everything but accepts).
    pub(crate) bytes: usize,
    pub(crate) reply: oneshot::Sender<Result<Answer, InboxError>>,
    /// `bytes` permits of the queue's memory budget, released when the
    /// request is answered and dropped.
    pub(crate) _budget: Option<OwnedSemaphorePermit>,
}

/// Counters of the writer, for tests and metrics.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) commits: AtomicU64,
    pub(crate) accepted: AtomicU64,
    pub(crate) duplicates: AtomicU64,
}

pub(crate) struct Writer {
    pub(crate) conn: Connection,
    pub(crate) requests: mpsc::Receiver<Request>,
    pub(crate) new_work: Arc<Notify>,
    pub(crate) counters: Arc<Counters>,
    /// A request taken from the channel that did not fit the previous batch.
    pub(crate) held: Option<Request>,
    /// Taken (and let go at once) before each batch is gathered: while a
    /// test holds it ([`super::SqliteInbox::pause_writer`]), requests queue
    /// up and then land in one batch.
    pub(crate) gate: Arc<Mutex<()>>,
}

impl Writer {
    /// Runs until every sender is gone and the queue is drained. Runs on
    /// its own thread: it blocks.
    pub(crate) fn run(mut self) {
        while let Some(batch) = self.next_batch() {
            self.commit_batch(batch);
        }
        if let Err((_, error)) = self.conn.close() {
            tracing::warn!(%error, "closing the inbox write connection failed");
        }
    }

    fn next_batch(&mut self) -> Option<Vec<Request>> {
        let first = match self.held.take() {
            Some(request) => request,
            None => self.requests.blocking_recv()?,
        };
        drop(super::lock(&self.gate));
        let mut bytes = first.bytes;
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_REQUESTS {
            let Ok(next) = self.requests.try_recv() else {
                break;
            };
            if bytes + next.bytes > MAX_BATCH_BYTES {
                self.held = Some(next);
                break;
            }
            bytes += next.bytes;
            batch.push(next);
        }
        Some(batch)
    }

    fn commit_batch(&mut self, batch: Vec<Request>) {
        let now = Utc::now();
        let mut results = Vec::with_capacity(batch.len());
        // Without savepoints first (two statements fewer per request); only when the database
        // refuses a request is the batch redone with a savepoint around each request.
        let mut written = self.write_batch(&batch, now, &mut results, false);
        if matches!(written, Ok(false)) {
            self.rollback();
            results.clear();
            written = self.write_batch(&batch, now, &mut results, true);
        }
        if let Err(error) = written {
            self.rollback();
            tracing::error!(%error, requests = batch.len(), "inbox batch failed");
            for request in batch {
                let _ = request.reply.send(Err(error.clone()));
            }
            return;
        }
        self.counters.commits.fetch_add(1, Ordering::Relaxed);
        for result in &results {
            match result {
                Ok(Answer::Accepted(Acceptance::New { .. })) => {
                    self.counters.accepted.fetch_add(1, Ordering::Relaxed);
                    // `notify_one` stores a permit when no worker is waiting
                    // at this instant, so a worker between an empty claim and
                    // its next wait still wakes up: no lost wake-up.
                    self.new_work.notify_one();
                }
                Ok(Answer::Accepted(Acceptance::Duplicate { .. })) => {
                    self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Answer::Accepted(Acceptance::Conflict { .. })) => {}
                // Work again, as far as a worker of this handle can tell.
                Ok(Answer::Requeued(true)) => self.new_work.notify_one(),
                _ => {}
            }
        }
        for (request, result) in batch.into_iter().zip(results) {
            // The caller may have given up waiting; nothing to do then.
            let _ = request.reply.send(result);
        }
    }

    fn rollback(&mut self) {
        if let Err(rollback) = self.exec("ROLLBACK") {
            // SQLite may already have rolled back on its own.
            tracing::debug!(error = %rollback, "rollback after a failed inbox batch");
        }
    }

    /// One transaction for the whole batch. `careful`: one savepoint per
    /// request, so a refused request is rolled back alone and answered with
    /// its error. Otherwise the first refusal stops the batch: `Ok(false)`,
    /// nothing committed, and the caller rolls back and runs it carefully.
    /// On `Err` nothing is committed and the caller rolls back.
    fn write_batch(
        &mut self,
        batch: &[Request],
        now: DateTime<Utc>,
        results: &mut Vec<Result<Answer, InboxError>>,
        careful: bool,
    ) -> Result<bool, InboxError> {
        self.exec("BEGIN IMMEDIATE")?;
        for request in batch {
            if !careful {
                match self.execute(&request.op, now) {
                    Ok(answer) => results.push(Ok(answer)),
                    Err(_) => return Ok(false),
                }
                continue;
            }
            self.exec("SAVEPOINT request")?;
            match self.execute(&request.op, now) {
                Ok(answer) => {
                    self.exec("RELEASE request")?;
                    results.push(Ok(answer));
                }
                Err(error) => {
                    tracing::warn!(%error, "inbox refused one request of a batch");
                    // Fails (and so fails the batch) if SQLite already rolled
                    // the whole transaction back.
                    self.exec("ROLLBACK TO request")?;
                    self.exec("RELEASE request")?;
                    results.push(Err(error));
                }
            }
        }
        self.exec("COMMIT")?;
        Ok(true)
    }

    fn exec(&mut self, sql: &str) -> Result<(), InboxError> {
        self.conn
            .prepare_cached(sql)
            .and_then(|mut statement| statement.execute([]))
            .map_err(rusqlite_storage)?;
        Ok(())
    }

    fn execute(&mut self, op: &Op, now: DateTime<Utc>) -> Result<Answer, InboxError> {
        match op {
            Op::Accept(delivery) => self.accept(delivery, now).map(Answer::Accepted),
            Op::SettleAndClaim {
                settled,
                max,
                lease,
            } => {
                for settlement in settled {
                    self.settle(settlement, now)?;
                }
                if *max == 0 {
                    return Ok(Answer::Claimed(Vec::new()));
                }
                self.claim(*max, *lease, now).map(Answer::Claimed)
            }
            Op::Requeue { id } => self.requeue(*id, now).map(Answer::Requeued),
        }
    }

    /// Insert, or recognise the stored row with the same key: a duplicate (counted) when its
    /// body is byte for byte the same, a conflict (not counted, nothing changed) when it is not.
    /// One writer, inside its transaction: nothing can come between the look-up and the write.
    fn accept(
        &mut self,
        delivery: &NewDelivery,
        now: DateTime<Utc>,
    ) -> Result<Acceptance, InboxError> {
        let known: Option<(i64, bool)> = self
            .conn
            .prepare_cached(
                "SELECT id, body = ?4 AS same_body FROM deliveries \
                 WHERE platform = ?1 AND shop = ?2 AND dedupe_key = ?3",
            )
            .and_then(|mut statement| {
                statement
                    .query_row(
                        params![
                            delivery.platform,
                            delivery.shop,
                            delivery.dedupe_key,
                            delivery.body
                        ],
                        |row| Ok((row.get(0)?, row.get(1)?)),
                    )
                    .optional()
            })
            .map_err(rusqlite_storage)?;
        if let Some((id, same_body)) = known {
            if !same_body {
                return Ok(Acceptance::Conflict { id });
            }
            self.conn
                .prepare_cached("UPDATE deliveries SET duplicates = duplicates + 1 WHERE id = ?1")
                .and_then(|mut statement| statement.execute([id]))
                .map_err(rusqlite_storage)?;
            return Ok(Acceptance::Duplicate { id });
        }
        let id: i64 = self
            .conn
            .prepare_cached(
                "INSERT INTO deliveries \
                 (platform, shop, topic, dedupe_key, delivery_id, received_at, headers, body, \
                  available_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
                 RETURNING id",
            )
            .and_then(|mut statement| {
                statement.query_row(
                    params![
                        delivery.platform,
                        delivery.shop,
                        delivery.topic,
                        delivery.dedupe_key,
                        delivery.delivery_id,
                        delivery.received_at,
                        delivery.headers,
                        delivery.body,
                        format_timestamp(now),
                    ],
                    |row| row.get(0),
                )
            })
            .map_err(rusqlite_storage)?;
        Ok(Acceptance::New { id })
    }

    /// Lease the oldest available pending items: at most `max`, and no more
    /// bodies than [`super::MAX_CLAIM_BYTES`] (but always the first one).
    fn claim(
        &mut self,
        max: usize,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<InboxItem>, InboxError> {
        let sql = format!(
            "UPDATE deliveries SET attempts = attempts + 1, available_at = ?3 \
             WHERE id IN ( \
               SELECT id FROM ( \
                 SELECT id, SUM(len) OVER (ORDER BY id ROWS UNBOUNDED PRECEDING) - len AS before \
                 FROM ( \
                   SELECT id, length(body) AS len FROM deliveries \
                   WHERE status = 'pending' AND available_at <= ?1 \
                   ORDER BY id LIMIT ?2)) \
               WHERE before < ?4) \
             RETURNING {ITEM_COLUMNS}"
        );
        let mut statement = self.conn.prepare_cached(&sql).map_err(rusqlite_storage)?;
        let mut rows = statement
            .query(params![
                format_timestamp(now),
                i64::try_from(max).unwrap_or(i64::MAX),
                format_timestamp(later(now, lease)),
                i64::try_from(super::MAX_CLAIM_BYTES).unwrap_or(i64::MAX),
            ])
            .map_err(rusqlite_storage)?;
        let mut items = Vec::new();
        while let Some(row) = rows.next().map_err(rusqlite_storage)? {
            items.push(decode_item(row)?);
        }
        // RETURNING has no defined order.
        items.sort_unstable_by_key(|item| item.id);
        Ok(items)
    }

    fn settle(&mut self, settlement: &Settled, now: DateTime<Utc>) -> Result<(), InboxError> {
        match settlement {
            Settled::Complete { id, status, reason } => {
                self.complete(*id, status, reason.as_deref(), now)
            }
            Settled::Release {
                id,
                error,
                retry_after,
            } => self.release(*id, error, *retry_after, now),
        }
    }

    /// The first completion stands: completing again changes nothing.
    fn complete(
        &mut self,
        id: i64,
        status: &str,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), InboxError> {
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE deliveries SET status = ?2, outcome_reason = ?3, completed_at = ?4 \
                 WHERE id = ?1 AND status = 'pending'",
            )
            .and_then(|mut statement| {
                statement.execute(params![id, status, reason, format_timestamp(now)])
            })
            .map_err(rusqlite_storage)?;
        if changed == 0 {
            self.ensure_exists(id)?;
        }
        Ok(())
    }

    /// A completed item stays completed: releasing it changes nothing (a
    /// worker whose lease ran out may release what another one finished).
    fn release(
        &mut self,
        id: i64,
        error: &str,
        retry_after: Duration,
        now: DateTime<Utc>,
    ) -> Result<(), InboxError> {
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE deliveries SET available_at = ?2, last_error = ?3 \
                 WHERE id = ?1 AND status = 'pending'",
            )
            .and_then(|mut statement| {
                statement.execute(params![
                    id,
                    format_timestamp(later(now, retry_after)),
                    error
                ])
            })
            .map_err(rusqlite_storage)?;
        if changed == 0 {
            self.ensure_exists(id)?;
        }
        Ok(())
    }

    /// A parked item becomes pending again, available now, as if never
    /// completed; its parking reason moves to `last_error` (prefixed with
    /// "requeued after: ") so the history of the row is not lost. An item in
    /// any other status is left alone (`false`): a pending one is already
    /// waiting, a processed or ignored one must not be processed twice.
    fn requeue(&mut self, id: i64, now: DateTime<Utc>) -> Result<bool, InboxError> {
        let (status, reason): (String, Option<String>) = self
            .conn
            .prepare_cached("SELECT status, outcome_reason FROM deliveries WHERE id = ?1")
            .and_then(|mut statement| {
                statement
                    .query_row([id], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()
            })
            .map_err(rusqlite_storage)?
            .ok_or(InboxError::UnknownItem(id))?;
        if status != "parked" {
            return Ok(false);
        }
        // The attempt count starts again: the worker gives up after a number of attempts, and a
        // requeue after a fix deserves them all.
        let last_error = super::bounded(
            &format!(
                "requeued after: {}",
                reason.as_deref().unwrap_or("no reason recorded")
            ),
            super::MAX_REASON_BYTES,
        );
        // The status is checked again: this runs inside the writer's
        // transaction, so nothing changed it in between, but the statement
        // must be right on its own.
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE deliveries SET status = 'pending', available_at = ?2, completed_at = NULL, \
                 outcome_reason = NULL, last_error = ?3, attempts = 0 \
                 WHERE id = ?1 AND status = 'parked'",
            )
            .and_then(|mut statement| {
                statement.execute(params![id, format_timestamp(now), last_error])
            })
            .map_err(rusqlite_storage)?;
        Ok(changed == 1)
    }

    fn ensure_exists(&mut self, id: i64) -> Result<(), InboxError> {
        let found: Option<i64> = self
            .conn
            .prepare_cached("SELECT id FROM deliveries WHERE id = ?1")
            .and_then(|mut statement| statement.query_row([id], |row| row.get(0)).optional())
            .map_err(rusqlite_storage)?;
        match found {
            Some(_) => Ok(()),
            None => Err(InboxError::UnknownItem(id)),
        }
    }
}

/// The latest time stored: timestamps keep four-digit years so that they
/// sort as text. A lease or back-off beyond it means "never, in practice".
const LAST_TIMESTAMP: &str = "9999-12-31T23:59:59.999999Z";
const FIRST_TIMESTAMP: &str = "0000-01-01T00:00:00.000000Z";

/// RFC 3339 UTC with exactly microsecond precision and a four-digit year, so
/// that timestamps sort as text (years outside 0..=9999 are clamped).
pub(crate) fn format_timestamp(at: DateTime<Utc>) -> String {
    match at.year() {
        year if year > 9999 => LAST_TIMESTAMP.to_owned(),
        year if year < 0 => FIRST_TIMESTAMP.to_owned(),
        _ => at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
    }
}

/// `now + delay`, saturating (a `Duration::MAX` lease must not wrap around).
fn later(now: DateTime<Utc>, delay: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(delay)
        .ok()
        .and_then(|delay| now.checked_add_signed(delay))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_sort_as_text_and_saturate() {
        let at = DateTime::parse_from_rfc3339("2024-05-01T12:00:00.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(format_timestamp(at), "2024-05-01T12:00:00.123456Z");
        assert_eq!(format_timestamp(later(at, Duration::MAX)), LAST_TIMESTAMP);
        assert_eq!(
            format_timestamp(later(at, Duration::from_millis(1500))),
            "2024-05-01T12:00:01.623456Z"
        );
        assert!(format_timestamp(at) < format_timestamp(later(at, Duration::from_micros(1))));
        assert!(
            format_timestamp(later(at, Duration::from_secs(86_400 * 365))).as_str()
                < LAST_TIMESTAMP
        );
    }
}
