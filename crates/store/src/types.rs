//! Value types of the port, modelled one-to-one on EventStoreDB's client API
//! so an ESDB/KurrentDB adapter is a thin mapping.

use chrono::{DateTime, Utc};
use serde::{de::DeserializeOwned, Serialize};
use uuid::Uuid;

use crate::error::StoreError;

/// Optimistic-concurrency condition of an append (ESDB `StreamState`).
/// Revisions are 0-based: the first event of a stream has revision 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpectedRevision {
    /// No check; append at the end, whatever it is.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must exist (have at least one event).
    StreamExists,
    /// The stream's last event must have exactly this revision.
    Exact(u64),
}

impl std::fmt::Display for ExpectedRevision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExpectedRevision::Any => f.write_str("any"),
            ExpectedRevision::NoStream => f.write_str("no stream"),
            ExpectedRevision::StreamExists => f.write_str("stream exists"),
            ExpectedRevision::Exact(revision) => write!(f, "revision {revision}"),
        }
    }
}

/// An event to append. `id` is the idempotency key: retrying an append with
/// the same ids does not write twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventData {
    pub id: Uuid,
    pub event_type: String,
    /// JSON payload (must be valid JSON).
    pub data: Vec<u8>,
    /// JSON metadata, or empty for none.
    pub metadata: Vec<u8>,
}

impl EventData {
    /// An event with a fresh random id and no metadata.
    pub fn new(event_type: impl Into<String>, data: Vec<u8>) -> Self {
        EventData {
            id: Uuid::new_v4(),
            event_type: event_type.into(),
            data,
            metadata: Vec::new(),
        }
    }

    /// Serialize `value` as the JSON payload of a new event.
    pub fn json<T: Serialize + ?Sized>(
        event_type: impl Into<String>,
        value: &T,
    ) -> Result<Self, StoreError> {
        let id = Uuid::new_v4();
        let data = serde_json::to_vec(value).map_err(|error| StoreError::InvalidEvent {
            event_id: id,
            reason: format!("data cannot be serialized as JSON: {error}"),
        })?;
        Ok(EventData::new(event_type, data).with_id(id))
    }

    /// Use a caller-chosen id (derive it deterministically from the command
    /// to make retries idempotent).
    pub fn with_id(mut self, id: Uuid) -> Self {
        self.id = id;
        self
    }

    /// Attach JSON metadata.
    pub fn with_metadata(mut self, metadata: Vec<u8>) -> Self {
        self.metadata = metadata;
        self
    }
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    pub stream_id: String,
    /// 0-based position inside the stream.
    pub revision: u64,
    /// Global position: strictly increasing in commit order, starting at 1.
    /// Use it as the checkpoint of projections ([`AllStart::After`]).
    pub position: u64,
    pub id: Uuid,
    pub event_type: String,
    pub data: Vec<u8>,
    /// Empty when the event has no metadata.
    pub metadata: Vec<u8>,
    pub recorded_at: DateTime<Utc>,
}

impl RecordedEvent {
    /// Deserialize the JSON payload.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.data)
    }
}

/// One append of [`crate::EventStore::append_in_order`]: what
/// [`crate::EventStore::append`] takes, as a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Append {
    pub stream: String,
    pub expected: ExpectedRevision,
    pub events: Vec<EventData>,
}

/// Outcome of a successful append (also of an idempotent retry, which returns
/// exactly what the original append returned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AppendResult {
    /// Revision of the last event of the append; pass it as
    /// [`ExpectedRevision::Exact`] to the next append.
    pub next_expected_revision: u64,
    /// Global position of the last event of the append.
    pub position: u64,
}

/// Direction of a stream read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Forwards,
    Backwards,
}

/// Where a stream read starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamStart {
    /// Revision 0 (forwards) / the first event only (backwards).
    Start,
    /// Past the last event (forwards: nothing) / the last event (backwards).
    End,
    /// This revision, inclusive.
    Revision(u64),
}

/// Where a read of / subscription to the global log starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AllStart {
    /// The first event ever written.
    Start,
    /// Strictly after this global position: a checkpoint (the position of the
    /// last event a projection processed).
    After(u64),
}

impl AllStart {
    /// The exclusive lower bound of the read: 0 for `Start`.
    pub fn after(self) -> u64 {
        match self {
            AllStart::Start => 0,
            AllStart::After(position) => position,
        }
    }
}

/// A stream's category, EventStoreDB's convention: the part of its name
/// before the first `-` (`order-shopify-s-1` is in `order`), or the whole name
/// when it has none. Stores may index it, so that a read filtered by a
/// category prefix (`"order-"`) costs what it returns.
pub fn stream_category(stream: &str) -> &str {
    stream.split('-').next().unwrap_or(stream)
}

/// Which streams a global read / subscription returns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct StreamFilter {
    /// Stream ids must start with one of these; empty = every stream.
    pub stream_prefixes: Vec<String>,
}

impl StreamFilter {
    /// Every stream.
    pub fn all() -> Self {
        StreamFilter::default()
    }

    /// Streams whose id starts with `prefix`.
    pub fn prefix(prefix: impl Into<String>) -> Self {
        StreamFilter {
            stream_prefixes: vec![prefix.into()],
        }
    }

    /// Whether `stream_id` passes the filter.
    pub fn matches(&self, stream_id: &str) -> bool {
        self.stream_prefixes.is_empty()
            || self
                .stream_prefixes
                .iter()
                .any(|prefix| stream_id.starts_with(prefix.as_str()))
    }
}
