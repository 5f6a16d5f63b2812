//! `upline-store`: the event-store port of upline and its adapters.
//!
//! The port ([`EventStore`]) is modelled on EventStoreDB so that an
//! ESDB/KurrentDB adapter maps onto it one-to-one; the default adapter
//! ([`SqliteEventStore`]) is one SQLite file in the data directory, with
//! group commit through a single writer thread. Both must pass the same
//! [`conformance`] suite.
//!
//! ```no_run
//! # async fn demo() -> Result<(), upline_store::StoreError> {
//! use upline_store::{EventData, EventStore, ExpectedRevision, SqliteEventStore};
//!
//! let store = SqliteEventStore::open(std::path::Path::new("data/events.sqlite")).await?;
//! let placed = EventData::json("OrderPlaced", &serde_json::json!({ "order": 42 }))?;
//! let result = store.append("order-42", ExpectedRevision::NoStream, vec![placed]).await?;
//! assert_eq!(result.next_expected_revision, 0);
//! store.close().await?;
//! # Ok(()) }
//! ```

pub mod conformance;
mod error;
pub mod limits;
mod port;
pub mod sqlite;
mod types;

pub use error::{Limit, StoreError};
/// Re-exported so consumers of [`EventStore::subscribe_all`] need no direct
/// `futures` dependency: `use upline_store::StreamExt;` gives `.next()`.
pub use futures::stream::{BoxStream, StreamExt};
pub use port::{append_one_at_a_time, EventStore};
pub use sqlite::{SqliteEventStore, SqliteFactory, WriterStats};
pub use types::{
    stream_category, AllStart, Append, AppendResult, Direction, EventData, ExpectedRevision,
    RecordedEvent, StreamFilter, StreamStart,
};
