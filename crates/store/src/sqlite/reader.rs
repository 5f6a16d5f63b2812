//! Reads, through a small pool of connections separate from the writer's.
//! In WAL mode readers never block the writer nor each other, and every
//! statement sees a committed snapshot.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::Row;
use uuid::Uuid;

use super::heads::CategoryHeads;
use super::writer::from_sql;
use crate::error::StoreError;
use crate::types::{Direction, RecordedEvent, StreamFilter, StreamStart};

const COLUMNS: &str =
    "position, stream_id, revision, event_id, event_type, data, metadata, recorded_at";

#[derive(Clone, Debug)]
pub(crate) struct Reader {
    pub(crate) pool: SqlitePool,
    /// What the writer has committed, per category: lets a read that can find nothing skip
    /// its query.
    pub(crate) heads: Arc<CategoryHeads>,
}

impl Reader {
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
        let rows = sqlx::query(&sql)
            .bind(stream)
            .bind(bound)
            .bind(limit(max_count))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode).collect()
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
        let mut query = sqlx::query(&sql).bind(after).bind(limit(max_count));
        for prefix in &filter.stream_prefixes {
            query = query
                .bind(prefix.as_str())
                .bind(crate::types::stream_category(prefix));
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(decode).collect()
    }
}

/// The `read_all` query for these prefixes. Parameters: ?1 the position to
/// read after, ?2 the count; then per prefix i (from 0) ?(3 + 2i) the prefix
/// and ?(4 + 2i) its category.
///
/// A prefix that contains a `-` names its category (`"order-"`, or
/// `"distributor-3"` within `distributor`), so its rows are read through the
/// (category, position) index: each prefix reads at most `count` rows in
/// position order, and the union of them is cut to the first `count`. Cost:
/// what is returned, never the events in between. A prefix without a `-`
/// (`"ord"`) could span categories and is compared row by row.
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
                "SELECT {COLUMNS} FROM (SELECT {COLUMNS} FROM events \
                 WHERE {condition} AND position > ?1 ORDER BY position LIMIT ?2)"
            )
        })
        .collect();
    // Distinct whole categories cannot share an event: UNION ALL, no dedup of
    // whole rows. Otherwise (a prefix inside a category, or one without a
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
    format!("{} ORDER BY position LIMIT ?2", parts.join(union))
}

/// `"order-"`: exactly one category, every stream of it.
fn is_whole_category(prefix: &str) -> bool {
    prefix.ends_with('-') && prefix.matches('-').count() == 1
}

fn limit(max_count: usize) -> i64 {
    i64::try_from(max_count).unwrap_or(i64::MAX)
}

fn decode(row: &SqliteRow) -> Result<RecordedEvent, StoreError> {
    let event_id: String = row.try_get("event_id")?;
    let id = Uuid::parse_str(&event_id)
        .map_err(|error| StoreError::database(format!("corrupt event_id {event_id:?}: {error}")))?;
    let recorded_at: String = row.try_get("recorded_at")?;
    let recorded_at = DateTime::parse_from_rfc3339(&recorded_at)
        .map_err(|error| {
            StoreError::database(format!("corrupt recorded_at {recorded_at:?}: {error}"))
        })?
        .with_timezone(&Utc);
    let data: String = row.try_get("data")?;
    let metadata: Option<String> = row.try_get("metadata")?;
    Ok(RecordedEvent {
        stream_id: row.try_get("stream_id")?,
        revision: from_sql(row.try_get("revision")?, "revision")?,
        position: from_sql(row.try_get("position")?, "position")?,
        id,
        event_type: row.try_get("event_type")?,
        data: data.into_bytes(),
        metadata: metadata.map(String::into_bytes).unwrap_or_default(),
        recorded_at,
    })
}
