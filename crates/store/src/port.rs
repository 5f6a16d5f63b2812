//! The event-store port: what the rest of upline needs from an event store.

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::error::StoreError;
use crate::types::{
    AllStart, Append, AppendResult, Direction, EventData, ExpectedRevision, RecordedEvent,
    StreamFilter, StreamStart,
};

/// An EventStoreDB-shaped event store.
///
/// Semantics are EventStoreDB's, so the embedded SQLite adapter and a future
/// ESDB/KurrentDB adapter are interchangeable and pass the same
/// [`crate::conformance`] suite:
///
/// * `append` is atomic: all events or none. It checks `expected` against the
///   stream's last revision and fails with
///   [`StoreError::WrongExpectedRevision`] otherwise. It returns only once the
///   events are durable.
/// * Retrying an append with the same event ids and the same `expected`
///   succeeds without writing again and returns the original
///   [`AppendResult`] (for [`ExpectedRevision::Any`] it is enough that the
///   first id is in the stream, followed by the others in order). Ids that
///   only partially match are a `WrongExpectedRevision`.
/// * Global positions are assigned in commit order: whoever sees position `p`
///   also sees every position below `p`.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Append `events` to `stream` if it is at `expected`.
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        events: Vec<EventData>,
    ) -> Result<AppendResult, StoreError>;

    /// Make `appends` one after the other: each is atomic and checked on its
    /// own, exactly as [`EventStore::append`] would, and each one's events
    /// take global positions after those of every append before it. The
    /// first append that fails stops the rest: they are answered with
    /// [`StoreError::NotAttempted`] and not made, since what follows may
    /// depend on it (a sponsor registered before the distributors under
    /// them). So what is stored is always a prefix of `appends`, less the
    /// one that failed. Not a transaction over all of them: it is how an
    /// importer keeps the order of many small appends while the store
    /// commits them in groups. Returns one result per append, in order; at
    /// most [`crate::limits::MAX_APPENDS_IN_ORDER`] appends per call (more is
    /// a `LimitExceeded`, nothing appended).
    ///
    /// The default makes the appends one at a time ([`append_one_at_a_time`]).
    async fn append_in_order(
        &self,
        appends: Vec<Append>,
    ) -> Result<Vec<Result<AppendResult, StoreError>>, StoreError> {
        append_one_at_a_time(self, appends).await
    }

    /// Read up to `max_count` events of one stream. A missing stream reads
    /// as empty (not an error), like an empty aggregate.
    async fn read_stream(
        &self,
        stream: &str,
        direction: Direction,
        from: StreamStart,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Read up to `max_count` events of all streams passing `filter`, in
    /// global position order, starting at `from`.
    async fn read_all(
        &self,
        from: AllStart,
        filter: &StreamFilter,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Catch-up subscription to the global log: every event after `from`
    /// passing `filter`, then new events as they are committed, in position
    /// order, without gap or duplicate, however slowly the consumer reads.
    ///
    /// The stream ends after yielding an error (e.g. [`StoreError::Closed`]
    /// when the store closes); resubscribe from the last position processed.
    /// Dropping the stream unsubscribes.
    fn subscribe_all(
        &self,
        from: AllStart,
        filter: StreamFilter,
    ) -> BoxStream<'static, Result<RecordedEvent, StoreError>>;

    /// Stop accepting requests, finish the appends already accepted, and
    /// release the backend. Afterwards every call fails with
    /// [`StoreError::Closed`] and live subscriptions end with it. Idempotent.
    async fn close(&self) -> Result<(), StoreError>;

    /// Revision of the last event of `stream`, `None` if it does not exist.
    async fn stream_revision(&self, stream: &str) -> Result<Option<u64>, StoreError> {
        let last = self
            .read_stream(stream, Direction::Backwards, StreamStart::End, 1)
            .await?;
        Ok(last.first().map(|event| event.revision))
    }
}

/// [`EventStore::append_in_order`] made of one [`EventStore::append`] after the other: the
/// default, for an adapter without a better way, and for a wrapper that overrides it.
pub async fn append_one_at_a_time<S: EventStore + ?Sized>(
    store: &S,
    appends: Vec<Append>,
) -> Result<Vec<Result<AppendResult, StoreError>>, StoreError> {
    crate::limits::validate_appends_in_order(appends.len())?;
    let mut results = Vec::with_capacity(appends.len());
    let mut failed = None;
    for append in appends {
        let result = match failed {
            Some(failed) => Err(StoreError::NotAttempted {
                stream: append.stream,
                failed,
            }),
            None => {
                store
                    .append(&append.stream, append.expected, append.events)
                    .await
            }
        };
        if result.is_err() && failed.is_none() {
            failed = Some(results.len());
        }
        results.push(result);
    }
    Ok(results)
}
