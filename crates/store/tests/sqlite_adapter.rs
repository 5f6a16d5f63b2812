//! Tests specific to the embedded SQLite adapter: group commit, durability,
//! shutdown, and that the file is plain SQL an auditor can query.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::future::join_all;
use futures::StreamExt;
use sqlx::{ConnectOptions, Connection, Row};
use tempfile::TempDir;
use upline_store::limits::MAX_EVENTS_PER_APPEND;
use upline_store::{
    AllStart, Direction, EventData, EventStore, ExpectedRevision, SqliteEventStore, StoreError,
    StreamFilter, StreamStart,
};

fn temp_store_path() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("events.sqlite");
    (dir, path)
}

fn event(n: usize) -> EventData {
    EventData::json("Tested", &serde_json::json!({ "n": n })).expect("serializable")
}

/// Fail instead of hanging when a subscription misses an event.
async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(10), future)
        .await
        .expect("timed out: an expected event never arrived")
}

async fn raw_connection(path: &Path) -> sqlx::SqliteConnection {
    sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .connect()
        .await
        .expect("plain sqlite connection")
}

/// Runs `appends` so that they share one writer batch: the writer is paused
/// while the future is polled (on a current-thread runtime every append
/// is queued by then), and then let go.
async fn in_one_batch<F: std::future::Future>(store: &SqliteEventStore, appends: F) -> F::Output {
    // `unconstrained`: Tokio's cooperative budget would otherwise stop the sends part-way (the
    // task does not yield to the runtime while paused).
    let mut appends = std::pin::pin!(tokio::task::unconstrained(appends));
    {
        let _paused = store.pause_writer();
        let waker = futures::task::noop_waker();
        let mut context = std::task::Context::from_waker(&waker);
        // `join_all` of many futures polls at most 32 of them per poll (FuturesUnordered's
        // budget): poll again until every one has had its turn (16 polls cover 512).
        for _ in 0..16 {
            assert!(
                std::future::Future::poll(appends.as_mut(), &mut context).is_pending(),
                "answered while the writer was paused"
            );
        }
    }
    appends.await
}

#[tokio::test]
async fn group_commit_batches_concurrent_appends() {
    let (_dir, path) = temp_store_path();
    let store = SqliteEventStore::open(&path).await.expect("open");
    let before = store.writer_stats();
    let appends = (0..64).map(|n| {
        let stream = format!("writer-{n}");
        let store = &store;
        async move {
            store
                .append(&stream, ExpectedRevision::NoStream, vec![event(n)])
                .await
        }
    });
    let results = in_one_batch(&store, join_all(appends)).await;
    let mut positions: Vec<u64> = results
        .iter()
        .map(|result| result.as_ref().expect("append").position)
        .collect();
    positions.sort_unstable();
    positions.dedup();
    assert_eq!(positions.len(), 64, "every append got its own position");
    let stats = store.writer_stats();
    assert_eq!(stats.appends_written - before.appends_written, 64);
    assert_eq!(stats.events_written - before.events_written, 64);
    let commits = stats.commits - before.commits;
    assert!(commits <= 2, "64 concurrent appends took {commits} commits");
    assert_eq!(store.head_position(), 64);
    store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_batches_on_a_multi_threaded_runtime() {
    let (_dir, path) = temp_store_path();
    let store = Arc::new(SqliteEventStore::open(&path).await.expect("open"));
    let tasks: Vec<_> = (0..16)
        .map(|writer| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let stream = format!("writer-{writer}");
                let mut expected = ExpectedRevision::NoStream;
                for n in 0..20 {
                    let result = store
                        .append(&stream, expected, vec![event(n)])
                        .await
                        .expect("append");
                    expected = ExpectedRevision::Exact(result.next_expected_revision);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    let stats = store.writer_stats();
    assert_eq!(stats.appends_written, 320);
    assert!(
        stats.commits < stats.appends_written,
        "group commit never batched: {stats:?}"
    );
    store.close().await.expect("close");
}

#[tokio::test]
async fn a_failing_request_does_not_fail_its_batch() {
    let (_dir, path) = temp_store_path();
    let store = SqliteEventStore::open(&path).await.expect("open");
    store
        .append("existing", ExpectedRevision::NoStream, vec![event(0)])
        .await
        .expect("setup");
    let commits = store.writer_stats().commits;
    let same = vec![event(1), event(2)];
    let (first, wrong, retry, other) = in_one_batch(&store, async {
        tokio::join!(
            store.append("fresh", ExpectedRevision::NoStream, same.clone()),
            store.append("existing", ExpectedRevision::Exact(7), vec![event(3)]),
            store.append("fresh", ExpectedRevision::NoStream, same.clone()),
            store.append("existing", ExpectedRevision::Exact(0), vec![event(4)]),
        )
    })
    .await;
    assert_eq!(store.writer_stats().commits - commits, 1, "one batch");
    let first = first.expect("first append");
    assert_eq!(retry.expect("retry inside the same batch"), first);
    assert!(matches!(
        wrong,
        Err(StoreError::WrongExpectedRevision {
            actual: Some(0),
            ..
        })
    ));
    assert_eq!(
        other
            .expect("append after the failure")
            .next_expected_revision,
        1
    );
    let fresh = store
        .read_stream("fresh", Direction::Forwards, StreamStart::Start, 10)
        .await
        .expect("read");
    assert_eq!(fresh.len(), 2, "the retry wrote nothing");
    store.close().await.expect("close");
}

// Every append below lands in one batch (the commission postings' shape: many streams,
// `Any`, deterministic ids, some of them repeats).
#[tokio::test]
async fn a_grouped_batch_answers_where_each_append_was_stored() {
    let (_dir, path) = temp_store_path();
    let store = SqliteEventStore::open(&path).await.expect("open");
    let earlier = event(100);
    store
        .append(
            "commissions-top",
            ExpectedRevision::Any,
            vec![earlier.clone()],
        )
        .await
        .expect("setup");
    let commits = store.writer_stats().commits;
    let repeated = event(7);
    let appends = (0..40)
        .map(|n| (format!("commissions-d{}", n % 5), vec![event(n)]))
        .chain([
            // The same append twice in one batch, and a repeat of a stored one.
            ("commissions-top".to_owned(), vec![repeated.clone()]),
            ("commissions-top".to_owned(), vec![repeated.clone()]),
            ("commissions-top".to_owned(), vec![earlier.clone()]),
        ])
        .collect::<Vec<_>>();
    let results =
        in_one_batch(
            &store,
            join_all(appends.iter().map(|(stream, events)| {
                store.append(stream, ExpectedRevision::Any, events.clone())
            })),
        )
        .await;
    assert_eq!(store.writer_stats().commits - commits, 1, "one batch");
    let results: Vec<_> = results.into_iter().map(|r| r.expect("append")).collect();
    assert_eq!(
        results[40], results[41],
        "a repeat in the batch is the same append"
    );
    assert_eq!(
        results[42].position, 1,
        "a repeat of a stored append answers it"
    );
    let all = store
        .read_all(AllStart::Start, &StreamFilter::all(), 100)
        .await
        .expect("read");
    assert_eq!(
        all.len(),
        42,
        "40 postings, one of the repeated pair, the setup"
    );
    for ((stream, events), result) in appends.iter().zip(&results).take(41) {
        let stored = all
            .iter()
            .find(|e| e.position == result.position)
            .expect("an event at the answered position");
        assert_eq!((&stored.stream_id, stored.id), (stream, events[0].id));
        assert_eq!(stored.revision, result.next_expected_revision);
    }
    store.close().await.expect("close");
}

// Current-thread runtime: one batch. The conflict in the middle makes the
// writer insert what it decided before it; the repeat after it must still be
// recognised as the first append, not written again.
#[tokio::test]
async fn a_repeat_after_a_conflict_in_the_same_batch_writes_nothing() {
    let (_dir, path) = temp_store_path();
    let store = SqliteEventStore::open(&path).await.expect("open");
    for stream in ["s", "t"] {
        store
            .append(stream, ExpectedRevision::NoStream, vec![event(0)])
            .await
            .expect("setup");
    }
    let commits = store.writer_stats().commits;
    let x = event(1);
    let (first, conflict, repeat) = in_one_batch(&store, async {
        tokio::join!(
            store.append("s", ExpectedRevision::Any, vec![x.clone()]),
            store.append("t", ExpectedRevision::Exact(7), vec![event(2)]),
            store.append("s", ExpectedRevision::Any, vec![x.clone()]),
        )
    })
    .await;
    assert_eq!(store.writer_stats().commits - commits, 1, "one batch");
    assert!(matches!(
        conflict,
        Err(StoreError::WrongExpectedRevision { .. })
    ));
    assert_eq!(repeat.expect("repeat"), first.expect("first"));
    let s = store
        .read_stream("s", Direction::Forwards, StreamStart::Start, 10)
        .await
        .expect("read");
    assert_eq!(s.len(), 2, "the setup and one copy of the append");
    store.close().await.expect("close");
}

#[tokio::test]
async fn a_category_read_returns_what_a_name_scan_returns() {
    let (_dir, path) = temp_store_path();
    let store = SqliteEventStore::open(&path).await.expect("open");
    for (n, stream) in [
        "order-a",
        "commissions-x",
        "order-b",
        "orderly",
        "distributor-3",
        "distributor-31",
        "order-a",
    ]
    .iter()
    .enumerate()
    {
        store
            .append(stream, ExpectedRevision::Any, vec![event(n)])
            .await
            .expect("append");
    }
    let streams = |prefixes: &[&str]| {
        let filter = StreamFilter {
            stream_prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
        };
        let store = &store;
        async move {
            let read = store
                .read_all(AllStart::Start, &filter, 100)
                .await
                .expect("read");
            let positions: Vec<u64> = read.iter().map(|e| e.position).collect();
            let mut sorted = positions.clone();
            sorted.sort_unstable();
            assert_eq!(positions, sorted, "in position order");
            read.into_iter().map(|e| e.stream_id).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        streams(&["order-"]).await,
        ["order-a", "order-b", "order-a"]
    );
    assert_eq!(
        streams(&["ord"]).await,
        ["order-a", "order-b", "orderly", "order-a"]
    );
    assert_eq!(
        streams(&["distributor-3"]).await,
        ["distributor-3", "distributor-31"]
    );
    assert_eq!(
        streams(&["order-", "commissions-", "order-b"]).await,
        ["order-a", "commissions-x", "order-b", "order-a"],
        "overlapping prefixes return an event once"
    );
    assert_eq!(
        streams(&["order-", "order-"]).await,
        ["order-a", "order-b", "order-a"],
        "a category named twice returns an event once"
    );
    // Paging: a page is the first `count` of the union, in position order.
    let filter = StreamFilter {
        stream_prefixes: vec!["order-".into(), "distributor-".into()],
    };
    let page = store
        .read_all(AllStart::After(1), &filter, 2)
        .await
        .expect("page");
    let positions: Vec<u64> = page.iter().map(|e| e.position).collect();
    assert_eq!(positions, [3, 5]);
    store.close().await.expect("close");
}

#[tokio::test]
async fn appends_are_durable_without_close() {
    let (_dir, path) = temp_store_path();
    let store = SqliteEventStore::open(&path).await.expect("open");
    let result = store
        .append(
            "order-1",
            ExpectedRevision::NoStream,
            vec![event(0), event(1)],
        )
        .await
        .expect("append");
    // No close: once append returned, the events are committed.
    drop(store);
    let reopened = SqliteEventStore::open(&path).await.expect("reopen");
    assert_eq!(reopened.head_position(), result.position);
    assert_eq!(
        reopened.stream_revision("order-1").await.expect("revision"),
        Some(1)
    );
    let next = reopened
        .append("order-2", ExpectedRevision::NoStream, vec![event(2)])
        .await
        .expect("append after reopen");
    assert_eq!(next.position, result.position + 1, "positions continue");
    reopened.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_flushes_accepted_appends() {
    let (_dir, path) = temp_store_path();
    let store = Arc::new(SqliteEventStore::open(&path).await.expect("open"));
    let tasks: Vec<_> = (0..100)
        .map(|n| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .append(
                        &format!("s-{n}"),
                        ExpectedRevision::NoStream,
                        vec![event(n)],
                    )
                    .await
            })
        })
        .collect();
    tokio::task::yield_now().await;
    store.close().await.expect("close");
    let mut accepted = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(_) => accepted += 1,
            Err(StoreError::Closed) => {}
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    drop(store);
    let reopened = SqliteEventStore::open(&path).await.expect("reopen");
    let stored = reopened
        .read_all(AllStart::Start, &StreamFilter::all(), 1_000)
        .await
        .expect("read");
    assert_eq!(
        stored.len(),
        accepted,
        "exactly the acknowledged appends exist"
    );
    reopened.close().await.expect("close");
}

#[tokio::test]
async fn subscription_ends_when_the_store_is_dropped() {
    let (_dir, path) = temp_store_path();
    let store = SqliteEventStore::open(&path).await.expect("open");
    store
        .append("s", ExpectedRevision::NoStream, vec![event(0)])
        .await
        .expect("append");
    let mut subscription = store.subscribe_all(AllStart::Start, StreamFilter::all());
    assert!(matches!(subscription.next().await, Some(Ok(_))));
    drop(store);
    let end = within(subscription.next()).await;
    assert!(matches!(end, Some(Err(StoreError::Closed))), "{end:?}");
}

#[tokio::test]
async fn a_full_size_append_is_one_atomic_write() {
    let (_dir, path) = temp_store_path();
    let store = SqliteEventStore::open(&path).await.expect("open");
    let events: Vec<_> = (0..MAX_EVENTS_PER_APPEND).map(event).collect();
    let result = store
        .append("bulk", ExpectedRevision::NoStream, events)
        .await
        .expect("append");
    assert_eq!(
        result.next_expected_revision,
        MAX_EVENTS_PER_APPEND as u64 - 1
    );
    assert_eq!(result.position, MAX_EVENTS_PER_APPEND as u64);
    let stored = store
        .read_stream("bulk", Direction::Forwards, StreamStart::Start, 10_000)
        .await
        .expect("read");
    assert_eq!(stored.len(), MAX_EVENTS_PER_APPEND);
    assert!(stored
        .iter()
        .all(|e| e.recorded_at == stored[0].recorded_at));
    store.close().await.expect("close");
}

#[tokio::test]
async fn open_creates_the_data_directory() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("data").join("nested").join("events.sqlite");
    let store = SqliteEventStore::open(&path).await.expect("open");
    assert_eq!(store.path(), path.as_path());
    store.close().await.expect("close");
    assert!(path.is_file());
}

#[tokio::test]
async fn the_file_is_plain_sql() {
    let (_dir, path) = temp_store_path();
    let store = SqliteEventStore::open(&path).await.expect("open");
    let commission = EventData::new(
        "CommissionEarned",
        br#"{"distributor":"d-7","amount":"12.50"}"#.to_vec(),
    )
    .with_metadata(br#"{"causation_id":"order-42"}"#.to_vec());
    let commission_id = commission.id;
    store
        .append(
            "distributor-d-7",
            ExpectedRevision::NoStream,
            vec![commission],
        )
        .await
        .expect("append");
    store
        .append(
            "distributor-d-7",
            ExpectedRevision::Exact(0),
            vec![event(1)],
        )
        .await
        .expect("append");
    let recorded = store
        .read_stream(
            "distributor-d-7",
            Direction::Forwards,
            StreamStart::Start,
            10,
        )
        .await
        .expect("read");
    store.close().await.expect("close");

    let mut conn = raw_connection(&path).await;
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .expect("journal mode");
    assert_eq!(journal, "wal");

    let row = sqlx::query(
        "SELECT position, stream_id, revision, event_id, event_type, \
                typeof(data) AS data_type, json_extract(data, '$.amount') AS amount, \
                json_extract(metadata, '$.causation_id') AS causation, recorded_at \
         FROM events ORDER BY position LIMIT 1",
    )
    .fetch_one(&mut conn)
    .await
    .expect("query events");
    assert_eq!(row.get::<i64, _>("position"), 1);
    assert_eq!(row.get::<String, _>("stream_id"), "distributor-d-7");
    assert_eq!(row.get::<i64, _>("revision"), 0);
    assert_eq!(row.get::<String, _>("event_id"), commission_id.to_string());
    assert_eq!(row.get::<String, _>("event_type"), "CommissionEarned");
    assert_eq!(row.get::<String, _>("data_type"), "text");
    assert_eq!(row.get::<String, _>("amount"), "12.50");
    assert_eq!(row.get::<String, _>("causation"), "order-42");
    let recorded_at: String = row.get("recorded_at");
    assert_eq!(recorded_at.len(), "2024-01-01T00:00:00.000000Z".len());
    assert!(recorded_at.ends_with('Z'));
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(&recorded_at).expect("RFC 3339"),
        recorded[0].recorded_at
    );

    let no_metadata: Option<String> =
        sqlx::query_scalar("SELECT metadata FROM events WHERE revision = 1")
            .fetch_one(&mut conn)
            .await
            .expect("metadata");
    assert_eq!(no_metadata, None, "absent metadata is NULL");

    let stream = sqlx::query(
        "SELECT last_revision, event_count, first_position, last_position FROM streams \
         WHERE stream_id = 'distributor-d-7'",
    )
    .fetch_one(&mut conn)
    .await
    .expect("streams view");
    assert_eq!(stream.get::<i64, _>("last_revision"), 1);
    assert_eq!(stream.get::<i64, _>("event_count"), 2);
    assert_eq!(stream.get::<i64, _>("first_position"), 1);
    assert_eq!(stream.get::<i64, _>("last_position"), 2);

    let by_id: i64 = sqlx::query_scalar("SELECT position FROM events WHERE event_id = ?1")
        .bind(commission_id.to_string())
        .fetch_one(&mut conn)
        .await
        .expect("lookup by event id");
    assert_eq!(by_id, 1);
    conn.close().await.expect("close raw connection");
}

#[tokio::test]
async fn the_schema_refuses_what_the_port_refuses() {
    let (_dir, path) = temp_store_path();
    let store = SqliteEventStore::open(&path).await.expect("open");
    store
        .append("s", ExpectedRevision::NoStream, vec![event(0)])
        .await
        .expect("append");
    store.close().await.expect("close");
    // A hand-written INSERT that breaks the rules fails in SQLite itself.
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .connect()
        .await
        .expect("writable connection");
    let insert = "INSERT INTO events \
        (stream_id, revision, event_id, event_type, data, metadata, recorded_at) \
        VALUES (?1, ?2, '00000000-0000-0000-0000-000000000000', 'T', ?3, NULL, '2024-01-01T00:00:00.000000Z')";
    for (stream, revision, data) in [("s", 0_i64, "{}"), ("s", 1, "not json"), ("", 0, "{}")] {
        let result = sqlx::query(insert)
            .bind(stream)
            .bind(revision)
            .bind(data)
            .execute(&mut conn)
            .await;
        assert!(result.is_err(), "{stream:?} {revision} {data:?} accepted");
    }
    conn.close().await.expect("close raw connection");
}

#[tokio::test]
async fn a_request_the_database_refuses_fails_alone() {
    let (_dir, path) = temp_store_path();
    SqliteEventStore::open(&path)
        .await
        .expect("create")
        .close()
        .await
        .expect("close");
    // Make SQLite itself refuse some inserts, as a failing disk or a
    // constraint the port does not know about would.
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .connect()
        .await
        .expect("writable connection");
    sqlx::query(
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON events WHEN NEW.event_type = 'Poison' \
         BEGIN SELECT RAISE(ABORT, 'poisoned event'); END",
    )
    .execute(&mut conn)
    .await
    .expect("create trigger");
    conn.close().await.expect("close raw connection");

    let store = SqliteEventStore::open(&path).await.expect("open");
    let poison = || EventData::new("Poison", b"{}".to_vec());
    let (good, poisoned, mixed, after) = in_one_batch(&store, async {
        tokio::join!(
            store.append("a", ExpectedRevision::NoStream, vec![event(0), event(1)]),
            store.append("b", ExpectedRevision::NoStream, vec![poison()]),
            store.append("c", ExpectedRevision::NoStream, vec![event(2), poison()]),
            store.append("a", ExpectedRevision::Exact(1), vec![event(3)]),
        )
    })
    .await;
    for refused in [poisoned, mixed] {
        match refused {
            Err(StoreError::Database { message }) => {
                assert!(message.contains("poisoned event"), "{message}")
            }
            other => panic!("expected a database error, got {other:?}"),
        }
    }
    assert_eq!(good.expect("good append").position, 2);
    assert_eq!(after.expect("append after the refused ones").position, 3);
    assert_eq!(
        store.writer_stats().commits,
        1,
        "only the final attempt commits"
    );
    let all = store
        .read_all(AllStart::Start, &StreamFilter::all(), 100)
        .await
        .expect("read");
    let positions: Vec<u64> = all.iter().map(|e| e.position).collect();
    assert_eq!(
        positions,
        vec![1, 2, 3],
        "nothing of the refused appends, no gap"
    );
    assert_eq!(store.stream_revision("c").await.expect("revision"), None);
    store.close().await.expect("close");
}

#[tokio::test]
async fn subscriptions_page_through_a_long_history() {
    use upline_store::sqlite::SUBSCRIPTION_PAGE_SIZE;
    let (_dir, path) = temp_store_path();
    let store = SqliteEventStore::open(&path).await.expect("open");
    let total = SUBSCRIPTION_PAGE_SIZE * 3 + 7;
    let mut expected = ExpectedRevision::NoStream;
    for chunk in (0..total).collect::<Vec<_>>().chunks(500) {
        let result = store
            .append("long", expected, chunk.iter().map(|&n| event(n)).collect())
            .await
            .expect("append");
        expected = ExpectedRevision::Exact(result.next_expected_revision);
    }
    // Interleave another stream so the filtered subscription skips events.
    store
        .append("other", ExpectedRevision::NoStream, vec![event(0)])
        .await
        .expect("append");
    let everything: Vec<_> = within(
        store
            .subscribe_all(AllStart::Start, StreamFilter::all())
            .take(total + 1)
            .collect(),
    )
    .await;
    let positions: Vec<u64> = everything
        .iter()
        .map(|e| e.as_ref().expect("event").position)
        .collect();
    assert_eq!(positions, (1..=total as u64 + 1).collect::<Vec<_>>());
    let filtered: Vec<_> = within(
        store
            .subscribe_all(AllStart::After(5), StreamFilter::prefix("lo"))
            .take(total - 5)
            .collect(),
    )
    .await;
    let revisions: Vec<u64> = filtered
        .iter()
        .map(|e| e.as_ref().expect("event").revision)
        .collect();
    assert_eq!(revisions, (5..total as u64).collect::<Vec<_>>());
    store.close().await.expect("close");
}

/// A subscription filtered by category skips its query when the writer has committed nothing
/// in those categories; an append by another process to the same file is invisible to that
/// bookkeeping, so the writer notices the gap in positions at its next commit and every
/// category is read again: the foreign event is delivered, not skipped. A plain read always
/// looks at the file, so it sees the foreign event at once.
#[tokio::test]
async fn an_event_appended_by_another_process_is_read_after_this_writers_next_commit() {
    let (_dir, path) = temp_store_path();
    let ours = SqliteEventStore::open(&path).await.expect("open");
    ours.append("order-1", ExpectedRevision::NoStream, vec![event(1)])
        .await
        .expect("our order");
    let orders = StreamFilter::prefix("order-");
    let mut subscription = ours.subscribe_all(AllStart::Start, orders.clone());
    let first = within(subscription.next())
        .await
        .expect("an event")
        .expect("readable");
    assert_eq!(first.stream_id, "order-1");

    // Given an order appended through a second store on the same file (another process)...
    let theirs = SqliteEventStore::open(&path).await.expect("second open");
    theirs
        .append("order-2", ExpectedRevision::NoStream, vec![event(2)])
        .await
        .expect("their order");
    theirs.close().await.expect("close");
    // ...a plain read sees it before this store writes anything...
    let read = ours
        .read_all(AllStart::After(first.position), &orders, 10)
        .await
        .expect("read");
    let streams: Vec<&str> = read.iter().map(|e| e.stream_id.as_str()).collect();
    assert_eq!(streams, ["order-2"]);
    // ...and when this store next commits, to another category only...
    let commission = ours
        .append("commissions-a", ExpectedRevision::NoStream, vec![event(3)])
        .await
        .expect("our commission");

    // ...then the order subscription gets the foreign order.
    let second = within(subscription.next())
        .await
        .expect("an event")
        .expect("readable");
    assert_eq!(second.stream_id, "order-2");
    assert!(second.position < commission.position);
}
