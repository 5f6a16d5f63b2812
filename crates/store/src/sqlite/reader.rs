//! Reads, through a small pool of connections separate from the writer's.
//! In WAL mode readers never block the writer nor each other, and every
//! statement sees a committed snapshot.
//!
//! A read runs on Tokio's blocking pool with a connection taken from the
//! pool: one hand-off per read, however many rows it returns (sqlx's SQLite
//! driver made one per statement and per row).

use std::path::Path;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags, Row};
use tokio::sync::Semaphore;
use uuid::Uuid;

use super::heads::CategoryHeads;
use super::writer::from_sql;
use crate::error::StoreError;
use crate::types::{Direction, RecordedEvent, StreamFilter, StreamStart};

const COLUMNS: &str =
    "position, stream_id, revision, event_id, event_type, data, metadata, recorded_at";

/// Statements a read connection keeps prepared: the stream reads and the
/// `$all` reads of the few filters a process uses.
const STATEMENT_CACHE: usize = 64;

#[derive(Clone, Debug)]
pub(crate) struct Reader {
    pool: Arc<ReadPool>,
    /// What the writer has committed, per category: lets a read that can find nothing skip
    /// its query.
    pub(crate) heads: Arc<CategoryHeads>,
}

/// Idle read connections; `permits` counts them, so a read waits (without
/// blocking a thread) until one is free.
#[derive(Debug)]
struct ReadPool {
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

impl Reader {
    /// Opens `size` read-only connections on `path` (an existing store).
    pub(crate) fn open(
        path: &Path,
        size: usize,
        busy_timeout: std::time::Duration,
        heads: Arc<CategoryHeads>,
    ) -> Result<Reader, StoreError> {
        let mut idle = Vec::with_capacity(size);
        for _ in 0..size {
            let conn = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            conn.busy_timeout(busy_timeout)?;
            // Readers must never write, even by mistake.
            conn.pragma_update(None, "query_only", "ON")?;
            conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
            idle.push(conn);
        }
        Ok(Reader {
            pool: Arc::new(ReadPool {
                idle: Mutex::new(idle),
                permits: Semaphore::new(size),
            }),
            heads,
        })
    }

    /// Closes every idle connection; reads waiting for one fail as closed.
    pub(crate) fn close(&self) {
        self.pool.permits.close();
        drop(std::mem::take(&mut *super::lock(&self.pool.idle)));
    }

    /// Runs `read` with a pooled connection on the blocking pool.
    async fn with_connection<T, F>(&self, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let permit = self
            .pool
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        let pool = Arc::clone(&self.pool);
        let answer = tokio::task::spawn_blocking(move || {
            // A permit is held, so an idle connection exists unless the pool was closed.
            let conn = super::lock(&pool.idle).pop().ok_or(StoreError::Closed)?;
            // A panicking read must not take its connection with it: the pool would then hold
            // fewer connections than permits. Its statement is reset while unwinding.
            let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read(&conn)));
            super::lock(&pool.idle).push(conn);
            answer
                .unwrap_or_else(|_| Err(StoreError::database("a read of the event store panicked")))
        })
        .await
        .map_err(|error| StoreError::database(format!("read task failed: {error}")));
        drop(permit);
        answer?
    }

    /// `max_count` is already validated (<= MAX_READ_COUNT).
    pub(crate) async fn read_stream(
        &self,
        stream: &str,
        direction: Direction,
        from: StreamStart,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if max_count == 0 {
            return Ok(Vec::new());
        }
        // Revisions above i64::MAX cannot be stored: clamp the bound.
        let clamp = |revision: u64| i64::try_from(revision).unwrap_or(i64::MAX);
        let (condition, bound, order) = match (direction, from) {
            (Direction::Forwards, StreamStart::End) => return Ok(Vec::new()),
            (Direction::Forwards, StreamStart::Start) => (">=", 0, "ASC"),
            (Direction::Forwards, StreamStart::Revision(revision)) => {
                if i64::try_from(revision).is_err() {
                    return Ok(Vec::new());
                }
                (">=", clamp(revision), "ASC")
            }
            (Direction::Backwards, StreamStart::End) => ("<=", i64::MAX, "DESC"),
            (Direction::Backwards, StreamStart::Start) => ("<=", 0, "DESC"),
            (Direction::Backwards, StreamStart::Revision(revision)) => {
                ("<=", clamp(revision), "DESC")
            }
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM events WHERE stream_id = ?1 AND revision {condition} ?2 \
             ORDER BY revision {order} LIMIT ?3"
        );
        let parameters = vec![
            rusqlite::types::Value::from(stream.to_owned()),
            bound.into(),
            limit(max_count).into(),
        ];
        self.with_connection(move |conn| query(conn, &sql, parameters))
            .await
    }

    /// [`Reader::read_all`] for a subscription: empty, without a query, when
    /// this process's writer has committed nothing passing `filter` after
    /// `after` (see `heads`). Only for subscriptions, which this writer's
    /// commits wake: a foreign append is read at this writer's next commit,
    /// while a plain read always looks at the file.
    pub(crate) async fn read_new(
        &self,
        after: u64,
        filter: &StreamFilter,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if !self.heads.may_have_after(filter, after) {
            return Ok(Vec::new());
        }
        self.read_all(after, filter, max_count).await
    }

    /// Events with position > `after` passing `filter`, in position order.
    /// `filter` and `max_count` are already validated.
    pub(crate) async fn read_all(
        &self,
        after: u64,
        filter: &StreamFilter,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if max_count == 0 {
            return Ok(Vec::new());
        }
        let Ok(after) = i64::try_from(after) else {
            return Ok(Vec::new());
        };
        let sql = read_all_sql(&filter.stream_prefixes);
        let mut parameters = vec![rusqlite::types::Value::from(after), limit(max_count).into()];
        for prefix in &filter.stream_prefixes {
            parameters.push(prefix.clone().into());
            parameters.push(crate::types::stream_category(prefix).to_owned().into());
        }
        self.with_connection(move |conn| query(conn, &sql, parameters))
            .await
    }
}

fn query(
    conn: &Connection,
    sql: &str,
    parameters: Vec<rusqlite::types::Value>,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let mut statement = conn.prepare_cached(sql)?;
    let mut rows = statement.query(rusqlite::params_from_iter(parameters))?;
    let mut events = Vec::new();
    while let Some(row) = rows.next()? {
        events.push(decode(row)?);
    }
    Ok(events)
}
/// The `read_all` query for these prefixes. Parameters: ?1 the position to
/// read after, ?2 the count; then per prefix i (from 0) ?(3 + 2i) the prefix
/// and ?(4 + 2i) its category.
///
/// A prefix that contains a `-` names its category (`"order-"`, or
/// `"distributor-3"` within `distributor`), so its rows are read through the
/// (category, position) index: each prefix reads at most `count` positions
/// in position order, the union of them is cut to the first `count`, and only
/// then are those rows read, by position. Cost: what is returned, never the
/// events in between. (Unioning whole rows read up to `count` rows per prefix
/// and sorted them all, payloads included: a sort that spilled to a temporary
/// file, 80 ms for a page of 10,000 of three categories where positions first
/// take 10 ms.) A prefix without a `-` (`"ord"`) could span categories and is
/// compared row by row.
fn read_all_sql(prefixes: &[String]) -> String {
    if prefixes.is_empty() {
        return format!(
            "SELECT {COLUMNS} FROM events WHERE position > ?1 ORDER BY position LIMIT ?2"
        );
    }
    let parts: Vec<String> = prefixes
        .iter()
        .enumerate()
        .map(|(i, prefix)| {
            let (p, c) = (3 + 2 * i, 4 + 2 * i);
            // substr/length count characters on TEXT, consistently.
            let name = format!("substr(stream_id, 1, length(?{p})) = ?{p}");
            let condition = if prefix.contains('-') {
                if is_whole_category(prefix) {
                    format!("category = ?{c}")
                } else {
                    format!("category = ?{c} AND {name}")
                }
            } else {
                format!("?{c} IS NOT NULL AND {name}")
            };
            format!(
                "SELECT position FROM (SELECT position FROM events \
                 WHERE {condition} AND position > ?1 ORDER BY position LIMIT ?2)"
            )
        })
        .collect();
    // Distinct whole categories cannot share an event: UNION ALL, no dedup.
    // Otherwise (a prefix inside a category, or one without a
    // `-`) prefixes may overlap, and UNION returns an event once.
    let mut categories: Vec<&str> = prefixes
        .iter()
        .filter(|p| is_whole_category(p))
        .map(|p| p.as_str())
        .collect();
    categories.sort_unstable();
    categories.dedup();
    let union = if categories.len() == prefixes.len() {
        " UNION ALL "
    } else {
        " UNION "
    };
    format!(
        "SELECT {COLUMNS} FROM events WHERE position IN \
         ({} ORDER BY position LIMIT ?2) ORDER BY position",
        parts.join(union)
    )
}

/// `"order-"`: exactly one category, every stream of it.
fn is_whole_category(prefix: &str) -> bool {
    prefix.ends_with('-') && prefix.matches('-').count() == 1
}

fn limit(max_count: usize) -> i64 {
    i64::try_from(max_count).unwrap_or(i64::MAX)
}

fn decode(row: &Row<'_>) -> Result<RecordedEvent, StoreError> {
    let event_id: String = row.get(3)?;
    let id = Uuid::parse_str(&event_id)
        .map_err(|error| StoreError::database(format!("corrupt event_id {event_id:?}: {error}")))?;
    let recorded_at: String = row.get(7)?;
    let recorded_at = DateTime::parse_from_rfc3339(&recorded_at)
        .map_err(|error| {
            StoreError::database(format!("corrupt recorded_at {recorded_at:?}: {error}"))
        })?
        .with_timezone(&Utc);
    let data: String = row.get(5)?;
    let metadata: Option<String> = row.get(6)?;
    Ok(RecordedEvent {
        stream_id: row.get(1)?,
        revision: from_sql(row.get(2)?, "revision")?,
        position: from_sql(row.get(0)?, "position")?,
        id,
        event_type: row.get(4)?,
        data: data.into_bytes(),
        metadata: metadata.map(String::into_bytes).unwrap_or_default(),
        recorded_at,
    })
}

#[cfg(test)]
mod tests {
    use super::read_all_sql;

    /// The plan SQLite makes of `sql` with `parameters` on a fresh store's schema, one line per
    /// step.
    fn plan(sql: &str, parameters: Vec<rusqlite::types::Value>) -> Vec<String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.sqlite");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime
            .block_on(crate::SqliteEventStore::open(&path))
            .expect("open store");
        let conn = rusqlite::Connection::open(&path).expect("connection");
        let mut statement = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("plan");
        let rows = statement
            .query_map(rusqlite::params_from_iter(parameters), |row| {
                row.get::<_, String>(3)
            })
            .expect("plan rows");
        rows.map(|r| r.expect("plan row")).collect()
    }

    /// Given several whole categories, the read takes positions from the (category, position)
    /// index and reads only the rows it returns, by position: no scan of the table, and no sort
    /// of whole rows (only the positions are sorted, to merge the categories).
    #[test]
    fn a_read_of_categories_sorts_positions_not_rows() {
        let prefixes = ["order-", "parked-", "commissions-"].map(String::from);
        let mut parameters: Vec<rusqlite::types::Value> = vec![0.into(), 10_000.into()];
        for prefix in &prefixes {
            parameters.push(prefix.clone().into());
            parameters.push(crate::types::stream_category(prefix).to_owned().into());
        }
        let steps = plan(&read_all_sql(&prefixes), parameters);
        assert!(
            steps
                .iter()
                .any(|s| s.contains("USING INTEGER PRIMARY KEY (rowid=?)")),
            "{steps:#?}"
        );
        assert_eq!(
            steps
                .iter()
                .filter(|s| s.contains("USING COVERING INDEX events_category_position"))
                .count(),
            3,
            "{steps:#?}"
        );
        assert!(
            !steps.iter().any(|s| s.starts_with("SCAN events")),
            "{steps:#?}"
        );
    }
}
