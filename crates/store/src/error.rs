//! Typed errors of the event-store port.
//!
//! Every adapter maps its failures onto these variants so callers (and the
//! conformance suite) can react to *what* went wrong without knowing *where*
//! the events are stored.

use uuid::Uuid;

use crate::types::ExpectedRevision;

/// Which bound of [`crate::limits`] a request exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// [`crate::limits::MAX_EVENTS_PER_APPEND`].
    EventsPerAppend,
    /// [`crate::limits::MAX_EVENT_BYTES`] (data + metadata of one event).
    EventBytes,
    /// [`crate::limits::MAX_APPEND_BYTES`] (data + metadata of one append).
    AppendBytes,
    /// [`crate::limits::MAX_EVENT_TYPE_BYTES`].
    EventTypeBytes,
    /// [`crate::limits::MAX_READ_COUNT`].
    ReadCount,
    /// [`crate::limits::MAX_FILTER_PREFIXES`].
    FilterPrefixes,
    /// [`crate::limits::MAX_APPENDS_IN_ORDER`].
    AppendsInOrder,
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Limit::EventsPerAppend => "events per append",
            Limit::EventBytes => "bytes per event",
            Limit::AppendBytes => "bytes per append",
            Limit::EventTypeBytes => "bytes per event type",
            Limit::ReadCount => "events per read",
            Limit::FilterPrefixes => "prefixes per filter",
            Limit::AppendsInOrder => "appends per ordered call",
        };
        f.write_str(name)
    }
}

/// Everything that can go wrong talking to an event store.
///
/// `Clone` because the group-commit writer may have to hand the same failure
/// (e.g. a failed `COMMIT`) to every request of a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The stream was not at the revision the append expected.
    ///
    /// Also returned, like EventStoreDB's `WrongExpectedVersion`, when a retried
    /// append only *partially* matches what is stored (some of its event ids are
    /// at the implied revisions, others are not): it is neither the same append
    /// nor a valid new one, and the caller's remedy is the same — reload and retry.
    /// `actual` is the stream's last revision, `None` if it does not exist.
    #[error("wrong expected revision on stream {stream:?}: expected {expected}, actual {}", fmt_actual(*.actual))]
    WrongExpectedRevision {
        stream: String,
        expected: ExpectedRevision,
        actual: Option<u64>,
    },

    /// Stream names must be 1..=255 bytes, without control characters and
    /// not starting with `$` (reserved for EventStoreDB system streams).
    #[error("invalid stream name {stream:?}: {reason}")]
    InvalidStreamName {
        stream: String,
        reason: &'static str,
    },

    /// An event is malformed (empty type, payload that is not JSON, ...).
    #[error("invalid event {event_id}: {reason}")]
    InvalidEvent { event_id: Uuid, reason: String },

    /// A subscription / read filter is malformed.
    #[error("invalid filter: {reason}")]
    InvalidFilter { reason: String },

    /// An append with no events. Refused rather than treated as a no-op: in
    /// an event-sourced ledger it is a caller bug (a command that decided
    /// nothing must not touch the store), and [`crate::AppendResult`] cannot
    /// describe "nothing written to a stream that does not exist".
    #[error("empty append to stream {stream:?}")]
    EmptyAppend { stream: String },

    /// A request exceeded one of the bounds in [`crate::limits`].
    #[error("limit exceeded: {limit} is at most {max}, got {actual}")]
    LimitExceeded { limit: Limit, max: u64, actual: u64 },

    /// The store has been closed (or its writer has stopped); nothing more
    /// can be read or written through this handle.
    #[error("event store is closed")]
    Closed,

    /// An append of [`crate::EventStore::append_in_order`] that was not made
    /// because an earlier one of the same call failed (`failed` is that one's
    /// index): what follows a failed append may depend on it.
    #[error(
        "append to stream {stream:?} not made: append {failed} of the same ordered call failed"
    )]
    NotAttempted { stream: String, failed: usize },

    /// The underlying database failed; `message` is its error text.
    #[error("database error: {message}")]
    Database { message: String },
}

fn fmt_actual(actual: Option<u64>) -> String {
    match actual {
        Some(revision) => revision.to_string(),
        None => "no stream".to_owned(),
    }
}

impl StoreError {
    /// Build a [`StoreError::Database`] from anything printable.
    pub fn database(message: impl std::fmt::Display) -> Self {
        StoreError::Database {
            message: message.to_string(),
        }
    }

    /// `true` for [`StoreError::WrongExpectedRevision`]: the caller should
    /// reload the stream and decide again.
    pub fn is_wrong_expected_revision(&self) -> bool {
        matches!(self, StoreError::WrongExpectedRevision { .. })
    }

    /// `true` when the same request may succeed later without anyone changing anything: the
    /// database failed (I/O, a lock, a timeout), the store is closing, or another writer got
    /// to the stream first. Everything else (a bad name, a malformed event, a bound exceeded)
    /// fails the same way every time.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Database { .. }
                | StoreError::Closed
                | StoreError::NotAttempted { .. }
                | StoreError::WrongExpectedRevision { .. }
        )
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::PoolClosed => StoreError::Closed,
            other => StoreError::database(other),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        StoreError::database(error)
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        StoreError::database(format_args!("migration failed: {error}"))
    }
}
