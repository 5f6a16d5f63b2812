//! The one error type of the read side.

use rust_decimal::Decimal;
use upline_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The event store failed (or is closed: [`StoreError::Closed`]).
    #[error("event store: {0}")]
    Store(#[from] StoreError),
    /// The read store (SQLite or PostgreSQL) failed.
    #[error("read store: {0}")]
    Database(#[from] sqlx::Error),
    /// The read store's schema could not be brought up to date.
    #[error("read store migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// `--read-store` is neither a path, a `sqlite:` URL nor a `postgres://` URL.
    #[error("read store {location:?}: {reason}")]
    Location { location: String, reason: String },
    /// A decimal with a non-zero digit beyond the sixth decimal place: it cannot be stored as
    /// millionths without rounding, and the read side never rounds.
    #[error("amount {value} has more than 6 decimals: it cannot be stored exactly as millionths")]
    TooManyDecimals { value: Decimal },
    /// A decimal whose millionths do not fit a signed 64-bit integer.
    #[error("amount {value} is out of range: its millionths do not fit a 64-bit integer")]
    AmountOutOfRange { value: Decimal },
    /// A sum or a position left the range the read store can hold.
    #[error("{what} overflows a 64-bit integer")]
    Overflow { what: String },
    /// An event a projection must understand cannot be read. The projection stops at it (its
    /// checkpoint stays before it) rather than skip money.
    #[error("{projection}: event at position {position} ({event_type} on {stream}): {reason}")]
    InvalidEvent {
        projection: String,
        position: u64,
        stream: String,
        event_type: String,
        reason: String,
    },
    /// Applying an event failed.
    #[error("{projection}: applying the event at position {position} ({event_type} on {stream}): {source}")]
    Apply {
        projection: String,
        position: u64,
        stream: String,
        event_type: String,
        #[source]
        source: Box<ProjectionError>,
    },
    /// No projection has this name.
    #[error("no projection is named {name:?} (known: {known})")]
    UnknownProjection { name: String, known: String },
    /// Two projections share a name, or a name or table is not a plain SQL identifier.
    #[error("projection configuration: {0}")]
    Configuration(String),
    /// Another rebuild of the same projection started after this one; this one gives way.
    #[error("the rebuild of {projection} into generation {generation} was superseded by another rebuild")]
    RebuildSuperseded { projection: String, generation: u32 },
    /// `upline quarantine retry` named an event the projection does not hold.
    #[error("{projection} holds nothing at position {position}")]
    NothingHeld { projection: String, position: u64 },
    /// A page token that this API did not hand out.
    #[error("invalid page token {0:?}")]
    InvalidPageToken(String),
    /// A value read back from the read store that upline could not have written.
    #[error("read store holds an unexpected value: {0}")]
    Corrupt(String),
    /// An order's recorded calculation inputs that the engine refuses now, so the lines and
    /// trace the events leave out cannot be recomputed from them.
    #[error("the recorded calculation inputs do not calculate: {0}")]
    Uncalculable(String),
}

impl ProjectionError {
    /// True when the same work may succeed later without anyone changing anything: a store
    /// unavailable, I/O, a timeout, a lock or serialization conflict. The runner retries these
    /// with back-off; anything else is permanent for the event it happened on, which the runner
    /// holds back (`projection_held`) so the projection goes on.
    pub fn is_transient(&self) -> bool {
        match self {
            ProjectionError::Store(e) => e.is_transient(),
            ProjectionError::Database(e) => database_error_is_transient(e),
            ProjectionError::Apply { source, .. } => source.is_transient(),
            ProjectionError::Migrate(_)
            | ProjectionError::Location { .. }
            | ProjectionError::TooManyDecimals { .. }
            | ProjectionError::AmountOutOfRange { .. }
            | ProjectionError::Overflow { .. }
            | ProjectionError::InvalidEvent { .. }
            | ProjectionError::UnknownProjection { .. }
            | ProjectionError::Configuration(_)
            | ProjectionError::RebuildSuperseded { .. }
            | ProjectionError::NothingHeld { .. }
            | ProjectionError::InvalidPageToken(_)
            | ProjectionError::Corrupt(_)
            | ProjectionError::Uncalculable(_) => false,
        }
    }

    /// Whether the event store is closed: the runner stops instead of retrying.
    pub fn is_closed(&self) -> bool {
        match self {
            ProjectionError::Store(StoreError::Closed) => true,
            ProjectionError::Apply { source, .. } => source.is_closed(),
            _ => false,
        }
    }
}

/// A database error is transient unless the database refused the statement itself: a
/// constraint violated, a column or type that does not fit (the same event fails the same way).
fn database_error_is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => !matches!(
            db.kind(),
            sqlx::error::ErrorKind::UniqueViolation
                | sqlx::error::ErrorKind::ForeignKeyViolation
                | sqlx::error::ErrorKind::NotNullViolation
                | sqlx::error::ErrorKind::CheckViolation
        ),
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        _ => false,
    }
}
