//! The conformance suite every [`EventStore`] adapter must pass.
//!
//! Written once against the port, run against every adapter: each adapter's
//! test file is a few lines,
//!
//! ```ignore
//! upline_store::conformance_tests!({
//!     let dir = tempfile::tempdir().expect("temporary directory");
//!     upline_store::SqliteFactory::with_guard(dir.path().join("events.sqlite"), dir)
//! });
//! ```
//!
//! and [`conformance_tests!`](crate::conformance_tests) expands to one
//! `#[tokio::test]` per check below (the test crate needs `tokio`).
//!
//! Checks only touch streams named with a fresh random prefix and filter
//! global reads by it, so they also work against a shared server holding
//! other data. They panic (assert) on failure.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::Barrier;
use uuid::Uuid;

use crate::error::{Limit, StoreError};
use crate::limits::{
    MAX_APPENDS_IN_ORDER, MAX_APPEND_BYTES, MAX_EVENTS_PER_APPEND, MAX_EVENT_BYTES,
    MAX_EVENT_TYPE_BYTES, MAX_FILTER_PREFIXES, MAX_READ_COUNT, MAX_STREAM_NAME_BYTES,
};
use crate::port::EventStore;
use crate::types::{
    AllStart, Append, AppendResult, Direction, EventData, ExpectedRevision, RecordedEvent,
    StreamFilter, StreamStart,
};

/// Opens the store under test. Opening again after the previous handle was
/// closed must give access to the same data (same file, same server).
#[async_trait]
pub trait StoreFactory: Send + Sync {
    async fn open(&self) -> Result<Arc<dyn EventStore>, StoreError>;
}

/// Expands to one `#[tokio::test]` per conformance check, each evaluating
/// `$factory` (an expression yielding a [`StoreFactory`]) afresh.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::conformance_tests!(@each $factory;
            append_to_new_stream,
            wrong_expected_revision,
            racing_writers_exactly_one_wins,
            idempotent_retry,
            read_stream_directions,
            read_all_order_and_filter,
            subscription_catch_up_then_live,
            subscription_with_concurrent_appenders,
            close_and_reopen,
            limits_are_refused,
            append_in_order_keeps_the_order_given,
        );
    };
    (@each $factory:expr; $($check:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let factory = $factory;
                $crate::conformance::$check(&factory).await;
            }
        )+
    };
}

/// Upper bound for anything a check waits for.
const TIMEOUT: Duration = Duration::from_secs(30);

fn unique_prefix(check: &str) -> String {
    format!("conformance-{check}-{}/", Uuid::new_v4().simple())
}

fn event(n: usize) -> EventData {
    EventData::json("Tested", &serde_json::json!({ "n": n })).expect("serializable event")
}

fn events(count: usize) -> Vec<EventData> {
    (0..count).map(event).collect()
}

async fn open<F: StoreFactory + ?Sized>(factory: &F) -> Arc<dyn EventStore> {
    factory.open().await.expect("open the store")
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(TIMEOUT, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {TIMEOUT:?}: {what}"),
    }
}

fn wrong(stream: &str, expected: ExpectedRevision, actual: Option<u64>) -> StoreError {
    StoreError::WrongExpectedRevision {
        stream: stream.to_owned(),
        expected,
        actual,
    }
}

async fn read_forwards(store: &dyn EventStore, stream: &str) -> Vec<RecordedEvent> {
    store
        .read_stream(
            stream,
            Direction::Forwards,
            StreamStart::Start,
            MAX_READ_COUNT,
        )
        .await
        .expect("read stream")
}

fn revisions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|event| event.revision).collect()
}

fn ids(events: &[RecordedEvent]) -> Vec<Uuid> {
    events.iter().map(|event| event.id).collect()
}

fn assert_strictly_increasing(events: &[RecordedEvent]) {
    for pair in events.windows(2) {
        assert!(
            pair[0].position < pair[1].position,
            "positions not strictly increasing: {} then {}",
            pair[0].position,
            pair[1].position
        );
    }
}

/// Every event after `from` passing `filter`, paging with `read_all` until
/// a page comes back empty (a short page does not have to mean the end).
async fn read_all_pages(
    store: &dyn EventStore,
    from: AllStart,
    filter: &StreamFilter,
    page: usize,
) -> Vec<RecordedEvent> {
    let mut all = Vec::new();
    let mut from = from;
    loop {
        let batch = store.read_all(from, filter, page).await.expect("read all");
        let Some(last) = batch.last() else {
            return all;
        };
        assert!(batch.len() <= page, "read_all returned more than max_count");
        from = AllStart::After(last.position);
        all.extend(batch);
    }
}

/// Appending to a new stream with `NoStream` / `Any` starts it at revision 0,
/// round-trips every field, and positions are >= 1 and increasing.
pub async fn append_to_new_stream<F: StoreFactory + ?Sized>(factory: &F) {
    let store = open(factory).await;
    let prefix = unique_prefix("append");
    let stream = format!("{prefix}order-1");
    let before = chrono::Utc::now();
    let written = vec![
        event(0).with_metadata(br#"{"correlation_id":"c-1"}"#.to_vec()),
        EventData::new(
            "Other",
            br#"{"amount":"12.50","big":123456789012345678901234567890}"#.to_vec(),
        ),
    ];
    let result = store
        .append(&stream, ExpectedRevision::NoStream, written.clone())
        .await
        .expect("append to a new stream");
    let after = chrono::Utc::now();
    assert_eq!(result.next_expected_revision, 1);

    let read = read_forwards(store.as_ref(), &stream).await;
    assert_eq!(read.len(), 2);
    assert_strictly_increasing(&read);
    assert!(read[0].position >= 1, "positions start at 1");
    assert_eq!(read[1].position, result.position);
    for (index, (recorded, sent)) in read.iter().zip(&written).enumerate() {
        assert_eq!(recorded.stream_id, stream);
        assert_eq!(recorded.revision, index as u64);
        assert_eq!(recorded.id, sent.id);
        assert_eq!(recorded.event_type, sent.event_type);
        assert_eq!(recorded.data, sent.data, "data round-trips byte for byte");
        assert_eq!(recorded.metadata, sent.metadata);
        let slack = chrono::Duration::seconds(60);
        assert!(
            recorded.recorded_at >= before - slack && recorded.recorded_at <= after + slack,
            "recorded_at {} outside the append window",
            recorded.recorded_at
        );
    }
    assert_eq!(
        read[0].json::<serde_json::Value>().ok(),
        Some(serde_json::json!({ "n": 0 }))
    );

    let next = store
        .append(&stream, ExpectedRevision::Exact(1), vec![event(2)])
        .await
        .expect("append at the exact revision");
    assert_eq!(next.next_expected_revision, 2);
    assert!(next.position > result.position);

    let other = format!("{prefix}order-2");
    let any = store
        .append(&other, ExpectedRevision::Any, events(1))
        .await
        .expect("Any on a new stream");
    assert_eq!(any.next_expected_revision, 0);
    let exists = store
        .append(&other, ExpectedRevision::StreamExists, events(2))
        .await
        .expect("StreamExists on an existing stream");
    assert_eq!(exists.next_expected_revision, 2);
    let any = store
        .append(&other, ExpectedRevision::Any, events(1))
        .await
        .expect("Any on an existing stream");
    assert_eq!(any.next_expected_revision, 3);
    assert!(any.position > exists.position && exists.position > next.position);

    assert_eq!(
        store.stream_revision(&stream).await.expect("revision"),
        Some(2)
    );
    assert_eq!(
        store.stream_revision(&other).await.expect("revision"),
        Some(3)
    );
    let missing = format!("{prefix}missing");
    assert_eq!(
        store.stream_revision(&missing).await.expect("revision"),
        None
    );
    store.close().await.expect("close");
}

/// A wrong expectation is a typed error carrying the actual revision, and
/// writes nothing.
pub async fn wrong_expected_revision<F: StoreFactory + ?Sized>(factory: &F) {
    let store = open(factory).await;
    let prefix = unique_prefix("wrong");
    let stream = format!("{prefix}account");
    store
        .append(&stream, ExpectedRevision::NoStream, events(3))
        .await
        .expect("create stream");
    for expected in [
        ExpectedRevision::Exact(5),
        ExpectedRevision::Exact(1),
        ExpectedRevision::Exact(3),
        ExpectedRevision::NoStream,
    ] {
        let error = store
            .append(&stream, expected, events(1))
            .await
            .expect_err("wrong expectation must fail");
        assert_eq!(error, wrong(&stream, expected, Some(2)));
        assert!(error.is_wrong_expected_revision());
    }
    let missing = format!("{prefix}missing");
    for expected in [ExpectedRevision::StreamExists, ExpectedRevision::Exact(0)] {
        let error = store
            .append(&missing, expected, events(1))
            .await
            .expect_err("missing stream");
        assert_eq!(error, wrong(&missing, expected, None));
    }
    assert_eq!(read_forwards(store.as_ref(), &stream).await.len(), 3);
    assert!(read_forwards(store.as_ref(), &missing).await.is_empty());
    store.close().await.expect("close");
}

async fn race(
    store: &Arc<dyn EventStore>,
    stream: &str,
    expected: ExpectedRevision,
    writers: usize,
) -> Vec<Result<AppendResult, StoreError>> {
    let barrier = Arc::new(Barrier::new(writers));
    let tasks: Vec<_> = (0..writers)
        .map(|writer| {
            let store = Arc::clone(store);
            let barrier = Arc::clone(&barrier);
            let stream = stream.to_owned();
            tokio::spawn(async move {
                barrier.wait().await;
                store.append(&stream, expected, vec![event(writer)]).await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(writers);
    for task in tasks {
        results.push(within("racing append", task).await.expect("task"));
    }
    results
}

/// Many writers appending at the same expected revision: exactly one wins,
/// every other gets `WrongExpectedRevision`.
pub async fn racing_writers_exactly_one_wins<F: StoreFactory + ?Sized>(factory: &F) {
    const WRITERS: usize = 20;
    let store = open(factory).await;
    let prefix = unique_prefix("race");

    let fresh = format!("{prefix}fresh");
    let results = race(&store, &fresh, ExpectedRevision::NoStream, WRITERS).await;
    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one NoStream writer wins: {results:?}"
    );
    assert_eq!(winners[0].next_expected_revision, 0);
    for result in &results {
        if let Err(error) = result {
            assert_eq!(*error, wrong(&fresh, ExpectedRevision::NoStream, Some(0)));
        }
    }
    assert_eq!(read_forwards(store.as_ref(), &fresh).await.len(), 1);

    let results = race(&store, &fresh, ExpectedRevision::Exact(0), WRITERS).await;
    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one Exact(0) writer wins: {results:?}"
    );
    assert_eq!(winners[0].next_expected_revision, 1);
    for result in &results {
        if let Err(error) = result {
            assert_eq!(*error, wrong(&fresh, ExpectedRevision::Exact(0), Some(1)));
        }
    }
    let stored = read_forwards(store.as_ref(), &fresh).await;
    assert_eq!(revisions(&stored), vec![0, 1]);
    store.close().await.expect("close");
}

/// Retrying an append (same ids, same expectation) returns the original
/// result and writes nothing; the same ids at another expectation, or ids
/// that only partly match, are `WrongExpectedRevision`.
pub async fn idempotent_retry<F: StoreFactory + ?Sized>(factory: &F) {
    let store = open(factory).await;
    let prefix = unique_prefix("idempotent");
    let stream = format!("{prefix}order");
    let first = events(2);
    let original = store
        .append(&stream, ExpectedRevision::NoStream, first.clone())
        .await
        .expect("first append");
    let retried = store
        .append(&stream, ExpectedRevision::NoStream, first.clone())
        .await
        .expect("retry is idempotent");
    assert_eq!(retried, original);
    assert_eq!(read_forwards(store.as_ref(), &stream).await.len(), 2);

    let second = vec![event(2)];
    let appended = store
        .append(&stream, ExpectedRevision::Exact(1), second.clone())
        .await
        .expect("second append");
    // Still idempotent once the stream moved on.
    let retried = store
        .append(&stream, ExpectedRevision::NoStream, first.clone())
        .await
        .expect("late retry is idempotent");
    assert_eq!(retried, original);
    let retried = store
        .append(&stream, ExpectedRevision::Exact(1), second.clone())
        .await
        .expect("retry of the second append");
    assert_eq!(retried, appended);
    // ESDB: with Any, the first id being in the stream, followed by the
    // others in order, makes it the same append.
    let retried = store
        .append(&stream, ExpectedRevision::Any, first.clone())
        .await
        .expect("retry with Any");
    assert_eq!(retried, original);
    let retried = store
        .append(&stream, ExpectedRevision::StreamExists, second.clone())
        .await
        .expect("retry with StreamExists");
    assert_eq!(retried, appended);

    // Same ids, other expectation.
    let error = store
        .append(&stream, ExpectedRevision::Exact(0), first.clone())
        .await
        .expect_err("same ids at another revision");
    assert_eq!(error, wrong(&stream, ExpectedRevision::Exact(0), Some(2)));
    let error = store
        .append(&stream, ExpectedRevision::Exact(5), second.clone())
        .await
        .expect_err("same ids ahead of the stream");
    assert_eq!(error, wrong(&stream, ExpectedRevision::Exact(5), Some(2)));

    // Partial overlap: first id matches, second does not / is missing.
    let partial = vec![first[0].clone(), event(9)];
    let error = store
        .append(&stream, ExpectedRevision::NoStream, partial.clone())
        .await
        .expect_err("partially overlapping ids");
    assert_eq!(error, wrong(&stream, ExpectedRevision::NoStream, Some(2)));
    let error = store
        .append(&stream, ExpectedRevision::Any, partial)
        .await
        .expect_err("partially overlapping ids with Any");
    assert_eq!(error, wrong(&stream, ExpectedRevision::Any, Some(2)));
    let overhanging = vec![second[0].clone(), event(10)];
    let error = store
        .append(&stream, ExpectedRevision::Exact(1), overhanging)
        .await
        .expect_err("ids running past the end of the stream");
    assert_eq!(error, wrong(&stream, ExpectedRevision::Exact(1), Some(2)));

    let stored = read_forwards(store.as_ref(), &stream).await;
    assert_eq!(
        revisions(&stored),
        vec![0, 1, 2],
        "every event is stored once"
    );
    let expected_ids: Vec<Uuid> = first.iter().chain(&second).map(|event| event.id).collect();
    assert_eq!(ids(&stored), expected_ids);
    store.close().await.expect("close");
}

/// Stream reads: both directions, from a revision (inclusive), `max_count`.
pub async fn read_stream_directions<F: StoreFactory + ?Sized>(factory: &F) {
    let store = open(factory).await;
    let prefix = unique_prefix("read");
    let stream = format!("{prefix}ledger");
    store
        .append(&stream, ExpectedRevision::NoStream, events(4))
        .await
        .expect("append");
    store
        .append(&stream, ExpectedRevision::Exact(3), events(6))
        .await
        .expect("append");
    let read = |direction: Direction, from: StreamStart, max_count: usize| {
        let store = Arc::clone(&store);
        let stream = stream.clone();
        async move {
            let events = store
                .read_stream(&stream, direction, from, max_count)
                .await
                .expect("read stream");
            revisions(&events)
        }
    };
    use Direction::{Backwards, Forwards};
    assert_eq!(
        read(Forwards, StreamStart::Start, 100).await,
        (0..10).collect::<Vec<_>>()
    );
    assert_eq!(read(Forwards, StreamStart::Start, 3).await, vec![0, 1, 2]);
    assert_eq!(
        read(Forwards, StreamStart::Revision(4), 3).await,
        vec![4, 5, 6]
    );
    assert_eq!(
        read(Forwards, StreamStart::Revision(8), 10).await,
        vec![8, 9]
    );
    assert!(read(Forwards, StreamStart::Revision(10), 10)
        .await
        .is_empty());
    assert!(read(Forwards, StreamStart::End, 10).await.is_empty());
    assert_eq!(read(Backwards, StreamStart::End, 3).await, vec![9, 8, 7]);
    assert_eq!(
        read(Backwards, StreamStart::Revision(4), 2).await,
        vec![4, 3]
    );
    assert_eq!(
        read(Backwards, StreamStart::Revision(100), 2).await,
        vec![9, 8]
    );
    assert_eq!(read(Backwards, StreamStart::Start, 5).await, vec![0]);
    assert!(read(Forwards, StreamStart::Start, 0).await.is_empty());

    let forwards = read_forwards(store.as_ref(), &stream).await;
    assert_strictly_increasing(&forwards);
    let mut backwards = store
        .read_stream(&stream, Backwards, StreamStart::End, 100)
        .await
        .expect("read backwards");
    backwards.reverse();
    assert_eq!(backwards, forwards);

    let missing = format!("{prefix}missing");
    assert!(store
        .read_stream(&missing, Backwards, StreamStart::End, 10)
        .await
        .expect("missing stream reads as empty")
        .is_empty());
    store.close().await.expect("close");
}

/// `read_all`: global order, strictly increasing positions, exclusive
/// checkpoints, paging, prefix filters.
pub async fn read_all_order_and_filter<F: StoreFactory + ?Sized>(factory: &F) {
    let store = open(factory).await;
    let prefix = unique_prefix("all");
    let other_prefix = unique_prefix("all-other");
    let streams = [
        format!("{prefix}a-1"),
        format!("{prefix}a-2"),
        format!("{prefix}b-1"),
        format!("{other_prefix}x"),
    ];
    let mut appended: Vec<(String, Uuid)> = Vec::new();
    for round in 0..4 {
        for (index, stream) in streams.iter().enumerate() {
            let batch = events(1 + (round + index) % 2);
            appended.extend(batch.iter().map(|event| (stream.clone(), event.id)));
            store
                .append(stream, ExpectedRevision::Any, batch)
                .await
                .expect("append");
        }
    }

    let ours = StreamFilter::prefix(&prefix);
    let all = store
        .read_all(AllStart::Start, &ours, MAX_READ_COUNT)
        .await
        .expect("read all");
    let expected: Vec<(String, Uuid)> = appended
        .iter()
        .filter(|(stream, _)| stream.starts_with(&prefix))
        .cloned()
        .collect();
    let got: Vec<(String, Uuid)> = all.iter().map(|e| (e.stream_id.clone(), e.id)).collect();
    assert_eq!(got, expected, "read_all returns appends in commit order");
    assert_strictly_increasing(&all);

    let a_only = store
        .read_all(
            AllStart::Start,
            &StreamFilter::prefix(format!("{prefix}a-")),
            MAX_READ_COUNT,
        )
        .await
        .expect("read all a-");
    let expected_a: Vec<_> = all
        .iter()
        .filter(|e| e.stream_id.starts_with(&format!("{prefix}a-")))
        .cloned()
        .collect();
    assert_eq!(a_only, expected_a);

    let two = StreamFilter {
        stream_prefixes: vec![format!("{prefix}b-"), other_prefix.clone()],
    };
    let mixed = store
        .read_all(AllStart::Start, &two, MAX_READ_COUNT)
        .await
        .expect("read all with two prefixes");
    assert!(mixed.iter().all(|e| two.matches(&e.stream_id)));
    let expected_mixed = appended.iter().filter(|(s, _)| two.matches(s)).count();
    assert_eq!(mixed.len(), expected_mixed);
    assert_strictly_increasing(&mixed);

    // Exclusive checkpoint and paging.
    let checkpoint = all[3].position;
    let after = store
        .read_all(AllStart::After(checkpoint), &ours, 2)
        .await
        .expect("read after checkpoint");
    assert_eq!(after, all[4..6].to_vec());
    let paged = read_all_pages(store.as_ref(), AllStart::Start, &ours, 5).await;
    assert_eq!(paged, all);
    let last = all.last().map(|e| e.position).unwrap_or_default();
    assert!(store
        .read_all(AllStart::After(last), &ours, 10)
        .await
        .expect("read after the end")
        .is_empty());

    // Unfiltered: starts with our first event when started just before it.
    let unfiltered = store
        .read_all(
            AllStart::After(all[0].position - 1),
            &StreamFilter::all(),
            20,
        )
        .await
        .expect("unfiltered read");
    assert_eq!(unfiltered.first(), all.first());
    assert_strictly_increasing(&unfiltered);
    assert!(store
        .read_all(AllStart::Start, &ours, 0)
        .await
        .expect("zero count")
        .is_empty());
    store.close().await.expect("close");
}

/// A subscription delivers history, then live events; from a checkpoint it
/// starts strictly after it; dropping it unsubscribes.
pub async fn subscription_catch_up_then_live<F: StoreFactory + ?Sized>(factory: &F) {
    let store = open(factory).await;
    let prefix = unique_prefix("live");
    let stream = format!("{prefix}s");
    let filter = StreamFilter::prefix(&prefix);
    store
        .append(&stream, ExpectedRevision::NoStream, events(3))
        .await
        .expect("append");
    let history = read_forwards(store.as_ref(), &stream).await;

    let mut subscription = store.subscribe_all(AllStart::Start, filter.clone());
    let mut from_checkpoint =
        store.subscribe_all(AllStart::After(history[1].position), filter.clone());
    let mut received = Vec::new();
    for _ in 0..3 {
        let next = within("catch-up event", subscription.next()).await;
        received.push(next.expect("stream open").expect("event"));
    }
    assert_eq!(received, history);
    let first = within("checkpoint event", from_checkpoint.next()).await;
    assert_eq!(first.expect("stream open").expect("event"), history[2]);

    // Live: appended after the subscriber caught up and is waiting.
    let waiting = tokio::spawn(async move {
        let mut live = Vec::new();
        for _ in 0..2 {
            match subscription.next().await {
                Some(Ok(event)) => live.push(event),
                other => panic!("subscription ended: {other:?}"),
            }
        }
        live
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    store
        .append(&stream, ExpectedRevision::Exact(2), events(1))
        .await
        .expect("live append");
    drop(from_checkpoint);
    store
        .append(&stream, ExpectedRevision::Exact(3), events(1))
        .await
        .expect("append after a subscriber dropped");
    let live = within("live events", waiting).await.expect("task");
    assert_eq!(revisions(&live), vec![3, 4]);
    assert!(live[0].position > history[2].position);
    assert_strictly_increasing(&live);
    store.close().await.expect("close");
}

/// Many concurrent appenders; one subscriber started before them, one
/// started midway from a checkpoint (and consuming slowly): each sees every
/// event exactly once, in position order.
pub async fn subscription_with_concurrent_appenders<F: StoreFactory + ?Sized>(factory: &F) {
    const WRITERS: usize = 8;
    const APPENDS: usize = 50;
    let store = open(factory).await;
    let prefix = unique_prefix("subscribe");
    let filter = StreamFilter::prefix(&prefix);
    let end_stream = format!("{prefix}end");

    type Subscription = futures::stream::BoxStream<'static, Result<RecordedEvent, StoreError>>;
    let collect = |subscription: Subscription, slow: bool| {
        let end_stream = end_stream.clone();
        tokio::spawn(async move {
            let mut subscription = subscription;
            let mut seen: Vec<RecordedEvent> = Vec::new();
            while let Some(item) = subscription.next().await {
                let event: RecordedEvent = match item {
                    Ok(event) => event,
                    Err(error) => panic!("subscription failed: {error}"),
                };
                let end = event.stream_id == end_stream;
                seen.push(event);
                if end {
                    break;
                }
                if slow && seen.len() % 25 == 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            seen
        })
    };
    let early = collect(store.subscribe_all(AllStart::Start, filter.clone()), false);

    let appenders: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let store = Arc::clone(&store);
            let stream = format!("{prefix}writer-{writer}");
            tokio::spawn(async move {
                let mut expected = ExpectedRevision::NoStream;
                for n in 0..APPENDS {
                    let result = store
                        .append(&stream, expected, vec![event(n)])
                        .await
                        .expect("concurrent append");
                    expected = ExpectedRevision::Exact(result.next_expected_revision);
                }
            })
        })
        .collect();

    // Midway: once some events are in, subscribe from a checkpoint.
    let checkpoint = within("first hundred events", async {
        loop {
            let so_far = store
                .read_all(AllStart::Start, &filter, 100)
                .await
                .expect("read all");
            if so_far.len() == 100 {
                return so_far[99].position;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    let midway = collect(
        store.subscribe_all(AllStart::After(checkpoint), filter.clone()),
        true,
    );

    for appender in appenders {
        within("appender", appender).await.expect("appender task");
    }
    store
        .append(&end_stream, ExpectedRevision::NoStream, events(1))
        .await
        .expect("end marker");

    let truth = read_all_pages(store.as_ref(), AllStart::Start, &filter, 1000).await;
    assert_eq!(truth.len(), WRITERS * APPENDS + 1);
    assert_strictly_increasing(&truth);
    let unique: HashSet<Uuid> = truth.iter().map(|e| e.id).collect();
    assert_eq!(unique.len(), truth.len());

    let early = within("early subscriber", early).await.expect("task");
    assert_eq!(
        early.len(),
        truth.len(),
        "early subscriber: no gap, no duplicate"
    );
    assert_eq!(early, truth);
    let midway = within("midway subscriber", midway).await.expect("task");
    let expected: Vec<_> = truth
        .iter()
        .filter(|e| e.position > checkpoint)
        .cloned()
        .collect();
    assert_eq!(
        midway.len(),
        expected.len(),
        "midway subscriber: no gap, no duplicate"
    );
    assert_eq!(midway, expected);
    store.close().await.expect("close");
}

/// Closing flushes and refuses further use (live subscriptions end with
/// `Closed`); reopening sees everything, and appends continue.
pub async fn close_and_reopen<F: StoreFactory + ?Sized>(factory: &F) {
    let prefix = unique_prefix("reopen");
    let filter = StreamFilter::prefix(&prefix);
    let stream = format!("{prefix}order");
    let store = open(factory).await;
    store
        .append(&stream, ExpectedRevision::NoStream, events(3))
        .await
        .expect("append");
    let other = format!("{prefix}other");
    store
        .append(&other, ExpectedRevision::NoStream, events(1))
        .await
        .expect("append");
    let before = store
        .read_all(AllStart::Start, &filter, MAX_READ_COUNT)
        .await
        .expect("read all");
    assert_eq!(before.len(), 4);

    let mut live = store.subscribe_all(AllStart::Start, filter.clone());
    for _ in 0..4 {
        within("catch-up", live.next())
            .await
            .expect("open")
            .expect("event");
    }
    store.close().await.expect("close");
    store.close().await.expect("close twice");
    match within("subscription end", live.next()).await {
        Some(Err(StoreError::Closed)) => {}
        other => panic!("live subscription must end with Closed, got {other:?}"),
    }
    assert!(within("ended", live.next()).await.is_none());
    assert_eq!(
        store
            .append(&stream, ExpectedRevision::Exact(2), events(1))
            .await,
        Err(StoreError::Closed)
    );
    assert_eq!(
        store
            .read_stream(&stream, Direction::Forwards, StreamStart::Start, 10)
            .await,
        Err(StoreError::Closed)
    );
    assert_eq!(
        store.read_all(AllStart::Start, &filter, 10).await,
        Err(StoreError::Closed)
    );
    let mut after_close = store.subscribe_all(AllStart::Start, filter.clone());
    assert!(matches!(
        within("subscribe after close", after_close.next()).await,
        Some(Err(StoreError::Closed))
    ));
    drop(store);

    let store = open(factory).await;
    let reopened = store
        .read_all(AllStart::Start, &filter, MAX_READ_COUNT)
        .await
        .expect("read all after reopen");
    assert_eq!(reopened, before, "everything survives close and reopen");
    let result = store
        .append(&stream, ExpectedRevision::Exact(2), events(1))
        .await
        .expect("append after reopen");
    assert_eq!(result.next_expected_revision, 3);
    assert!(result.position > before[3].position);
    store.close().await.expect("close");
}

fn assert_limit<T: std::fmt::Debug>(result: Result<T, StoreError>, limit: Limit, max: usize) {
    match result {
        Err(StoreError::LimitExceeded {
            limit: got,
            max: got_max,
            ..
        }) => {
            assert_eq!(got, limit);
            assert_eq!(got_max, max as u64);
        }
        other => panic!("expected {limit} limit, got {other:?}"),
    }
}

fn assert_invalid_name<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    assert!(
        matches!(result, Err(StoreError::InvalidStreamName { .. })),
        "expected InvalidStreamName, got {result:?}"
    );
}

/// Every bound is refused with a typed error, and nothing is written.
pub async fn limits_are_refused<F: StoreFactory + ?Sized>(factory: &F) {
    let store = open(factory).await;
    let prefix = unique_prefix("limits");
    let stream = format!("{prefix}s");
    let any = ExpectedRevision::Any;

    assert_limit(
        store
            .append(&stream, any, events(MAX_EVENTS_PER_APPEND + 1))
            .await,
        Limit::EventsPerAppend,
        MAX_EVENTS_PER_APPEND,
    );
    // A JSON string just over the per-event bound.
    let mut huge = vec![b'a'; MAX_EVENT_BYTES + 1];
    huge[0] = b'"';
    if let Some(last) = huge.last_mut() {
        *last = b'"';
    }
    assert_limit(
        store
            .append(&stream, any, vec![EventData::new("Huge", huge)])
            .await,
        Limit::EventBytes,
        MAX_EVENT_BYTES,
    );
    let per_event = MAX_EVENT_BYTES - 16;
    let count = MAX_APPEND_BYTES / per_event + 1;
    let mut big = vec![b' '; per_event];
    big[0] = b'1';
    let too_much: Vec<EventData> = (0..count)
        .map(|_| EventData::new("Big", big.clone()))
        .collect();
    assert_limit(
        store.append(&stream, any, too_much).await,
        Limit::AppendBytes,
        MAX_APPEND_BYTES,
    );
    assert_limit(
        store
            .append(
                &stream,
                any,
                vec![EventData::new(
                    "T".repeat(MAX_EVENT_TYPE_BYTES + 1),
                    b"{}".to_vec(),
                )],
            )
            .await,
        Limit::EventTypeBytes,
        MAX_EVENT_TYPE_BYTES,
    );
    assert_limit(
        store
            .read_stream(
                &stream,
                Direction::Forwards,
                StreamStart::Start,
                MAX_READ_COUNT + 1,
            )
            .await,
        Limit::ReadCount,
        MAX_READ_COUNT,
    );
    assert_limit(
        store
            .read_all(
                AllStart::Start,
                &StreamFilter::prefix(&prefix),
                MAX_READ_COUNT + 1,
            )
            .await,
        Limit::ReadCount,
        MAX_READ_COUNT,
    );
    let too_many = StreamFilter {
        stream_prefixes: vec![prefix.clone(); MAX_FILTER_PREFIXES + 1],
    };
    assert_limit(
        store.read_all(AllStart::Start, &too_many, 10).await,
        Limit::FilterPrefixes,
        MAX_FILTER_PREFIXES,
    );
    let mut subscription = store.subscribe_all(AllStart::Start, too_many);
    assert_limit(
        within("invalid subscription", subscription.next())
            .await
            .expect("an error item"),
        Limit::FilterPrefixes,
        MAX_FILTER_PREFIXES,
    );

    let too_long = format!("{prefix}{}", "x".repeat(MAX_STREAM_NAME_BYTES));
    for name in ["", too_long.as_str(), "line\nbreak", "nul\0", "$system"] {
        assert_invalid_name(store.append(name, any, events(1)).await);
        assert_invalid_name(
            store
                .read_stream(name, Direction::Forwards, StreamStart::Start, 1)
                .await,
        );
    }
    let longest = format!(
        "{prefix}{}",
        "x".repeat(MAX_STREAM_NAME_BYTES - prefix.len())
    );
    store
        .append(&longest, ExpectedRevision::NoStream, events(1))
        .await
        .expect("a 255-byte stream name is fine");

    assert!(matches!(
        store.append(&stream, any, vec![]).await,
        Err(StoreError::EmptyAppend { .. })
    ));
    for (data, metadata) in [
        (&b"not json"[..], &b""[..]),
        (b"", b""),
        (b"{\"open\":", b""),
        (b"{}", b"{bad"),
    ] {
        let bad = EventData::new("Bad", data.to_vec()).with_metadata(metadata.to_vec());
        let result = store.append(&stream, any, vec![event(0), bad]).await;
        assert!(
            matches!(result, Err(StoreError::InvalidEvent { .. })),
            "expected InvalidEvent, got {result:?}"
        );
    }
    assert_eq!(
        store.stream_revision(&stream).await.expect("revision"),
        None,
        "refused appends write nothing"
    );
    store.close().await.expect("close");
}

/// Given many small appends over a few streams, when they are made with
/// `append_in_order`, then each is answered as `append` would answer it and
/// the events take positions in the order given (across group commits). When
/// one fails, none after it is made; more than the limit is refused whole.
pub async fn append_in_order_keeps_the_order_given<F: StoreFactory + ?Sized>(factory: &F) {
    let store = open(factory).await;
    let prefix = unique_prefix("in-order");
    // More than one writer batch, so the order must hold across commits.
    let count = 600;
    let stream_of = |i: usize| format!("{prefix}s-{}", i % 7);
    let appends: Vec<Append> = (0..count)
        .map(|i| Append {
            stream: stream_of(i),
            expected: ExpectedRevision::Any,
            events: vec![event(i)],
        })
        .collect();
    let results = within("append in order", store.append_in_order(appends))
        .await
        .expect("append in order");
    assert_eq!(results.len(), count);
    let mut last_position = 0;
    for (i, result) in results.iter().enumerate() {
        let written = result.as_ref().expect("every append is made");
        assert_eq!(
            written.next_expected_revision,
            (i / 7) as u64,
            "append {i}'s revision"
        );
        assert!(
            written.position > last_position,
            "append {i} took a position before an earlier one"
        );
        last_position = written.position;
    }
    let filter = StreamFilter::prefix(prefix.clone());
    let in_all = |read: Vec<RecordedEvent>| -> Vec<serde_json::Value> {
        read.iter()
            .map(|e| e.json::<serde_json::Value>().expect("json"))
            .collect()
    };
    let numbered = |range: std::ops::Range<usize>| -> Vec<serde_json::Value> {
        range.map(|n| serde_json::json!({ "n": n })).collect()
    };
    let read = read_all_pages(store.as_ref(), AllStart::Start, &filter, 100).await;
    assert_eq!(
        in_all(read),
        numbered(0..count),
        "$all holds them in the order given"
    );

    // One with a wrong expectation stops the rest.
    let stopped = format!("{prefix}stopped/");
    let refused = 3;
    let appends: Vec<Append> = (0..10)
        .map(|i| Append {
            stream: format!("{stopped}{i}"),
            expected: if i == refused {
                ExpectedRevision::Exact(41)
            } else {
                ExpectedRevision::NoStream
            },
            events: vec![event(i)],
        })
        .collect();
    let results = store
        .append_in_order(appends)
        .await
        .expect("append in order");
    for (i, result) in results.iter().enumerate() {
        let stream = format!("{stopped}{i}");
        match i.cmp(&refused) {
            std::cmp::Ordering::Less => assert!(result.is_ok(), "append {i}: {result:?}"),
            std::cmp::Ordering::Equal => assert_eq!(
                result.as_ref().err(),
                Some(&wrong(&stream, ExpectedRevision::Exact(41), None))
            ),
            std::cmp::Ordering::Greater => assert_eq!(
                result.as_ref().err(),
                Some(&StoreError::NotAttempted {
                    stream,
                    failed: refused
                }),
                "append {i}"
            ),
        }
    }
    let read = read_all_pages(
        store.as_ref(),
        AllStart::Start,
        &StreamFilter::prefix(stopped),
        100,
    )
    .await;
    assert_eq!(
        in_all(read),
        numbered(0..refused),
        "nothing after the failed append is stored"
    );

    let too_many: Vec<Append> = (0..=MAX_APPENDS_IN_ORDER)
        .map(|i| Append {
            stream: format!("{prefix}too-many"),
            expected: ExpectedRevision::Any,
            events: vec![event(i)],
        })
        .collect();
    assert_limit(
        store.append_in_order(too_many).await.map(|_| ()),
        Limit::AppendsInOrder,
        MAX_APPENDS_IN_ORDER,
    );
    assert!(read_forwards(store.as_ref(), &format!("{prefix}too-many"))
        .await
        .is_empty());
    store.close().await.expect("close");
}
