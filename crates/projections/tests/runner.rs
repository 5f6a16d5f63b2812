//! The runner on both read stores: status and lag, following live, rebuilds that swap
//! generations while queries keep answering (and while the live runner keeps writing).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use sqlx::Row;
use tokio::sync::watch;
use upline_projections::{
    LedgerProjection, LedgerQuery, ProjectionError, ProjectionRunner, ReadStore,
};
use upline_store::{EventData, EventStore, ExpectedRevision};

fn runner(store: &Arc<dyn EventStore>, read: ReadStore, page: usize) -> ProjectionRunner {
    ProjectionRunner::new(store.clone(), read, vec![Arc::new(LedgerProjection)])
        .with_page_size(page)
}

async fn rebuilding_generation(read: &ReadStore) -> Option<i64> {
    sqlx::query("SELECT rebuilding_generation FROM projection_state WHERE name = 'ledger'")
        .fetch_one(read.pool())
        .await
        .unwrap()
        .try_get("rebuilding_generation")
        .unwrap()
}

/// The names of `table`'s own indexes (not its primary key's), on either read store.
async fn indexes_of(read: &ReadStore, label: &str, table: &str) -> Vec<String> {
    let sql = if label == "sqlite" {
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = $1 \
         AND sql IS NOT NULL ORDER BY name"
    } else {
        "SELECT CAST(indexname AS TEXT) AS name FROM pg_indexes WHERE schemaname = current_schema() \
         AND tablename = CAST($1 AS NAME) AND indexname NOT LIKE '%_pkey' ORDER BY indexname"
    };
    sqlx::query(sql)
        .bind(table)
        .fetch_all(read.pool())
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get("name").unwrap())
        .collect()
}

/// Waits until the ledger has caught up with the store (or panics after 15 s).
async fn wait_caught_up(runner: &ProjectionRunner) {
    for _ in 0..300 {
        let status = runner.status().await.unwrap();
        if status[0].lag_events == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not caught up: {:?}", runner.status().await.unwrap());
}

#[tokio::test]
async fn status_shows_checkpoint_head_and_lag() {
    on_every_read_store(|target| async move {
        let dir = tempfile::tempdir().unwrap();
        let store = event_store(dir.path()).await;
        let all = postings(0, 30);
        append(&store, &all).await;
        // The store's last event is not one the ledger reads: the head is the ledger's own.
        let unrelated = EventData::json("OrderPaid", &serde_json::json!({})).unwrap();
        let store_head = store
            .append("order-last", ExpectedRevision::Any, vec![unrelated])
            .await
            .unwrap()
            .position;

        let read = target.connect().await;
        let runner = runner(&store, read.clone(), 16);
        let before = runner.status().await.unwrap();
        assert_eq!(before.len(), 1);
        let status = &before[0];
        assert_eq!(status.name, "ledger");
        assert_eq!((status.generation, status.position), (1, 0));
        assert!(status.head > 0 && status.head < store_head, "{status:?}");
        assert_eq!(status.lag_events, status.head, "{}", target.label);
        assert!(status.lag_seconds >= 0.0);
        assert!(status.rebuilding.is_none());

        runner.catch_up().await.unwrap();
        let after = runner.status().await.unwrap();
        let status = &after[0];
        assert_eq!(status.position, status.head);
        assert_eq!((status.lag_events, status.lag_seconds), (0, 0.0));
        assert!(status.updated_at.is_some());

        // New events: lag again, in events and seconds.
        append(&store, &postings(30, 5)).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let behind = runner.status().await.unwrap();
        assert!(behind[0].lag_events >= 5, "{:?}", behind[0]);
        assert!(behind[0].lag_seconds > 0.0, "{:?}", behind[0]);
        read.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_follows_live_and_stops_on_shutdown() {
    on_every_read_store(|target| async move {
        let dir = tempfile::tempdir().unwrap();
        let store = event_store(dir.path()).await;
        let first = postings(0, 20);
        append(&store, &first).await;
        let read = target.connect().await;
        let runner = Arc::new(runner(&store, read.clone(), 8));
        let (stop, shutdown) = watch::channel(false);
        let running = tokio::spawn({
            let runner = runner.clone();
            async move { runner.run(shutdown).await }
        });
        wait_caught_up(&runner).await;
        let second = postings(20, 25);
        append(&store, &second).await;
        wait_caught_up(&runner).await;
        let all: Vec<_> = first.iter().chain(&second).cloned().collect();
        assert_eq!(
            actual_balances(&read).await,
            expected_balances(&all),
            "{}",
            target.label
        );
        assert_eq!(count(&read, "ledger_entries").await, all.len() as i64 * 2);

        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), running)
            .await
            .expect("run returns on shutdown")
            .unwrap()
            .unwrap();
        read.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_swaps_in_identical_rows_while_queries_keep_answering() {
    on_every_read_store(|target| async move {
        let dir = tempfile::tempdir().unwrap();
        let store = event_store(dir.path()).await;
        let all = postings(0, 300);
        append(&store, &all).await;
        let read = target.connect().await;
        let runner = runner(&store, read.clone(), 10);
        runner.catch_up().await.unwrap();
        let before = dump(&read).await;
        let expected = expected_balances(&all);
        let label = target.label;
        assert_eq!(
            indexes_of(&read, label, "ledger_entries_g1").await,
            ["ledger_entries_g1_account", "ledger_entries_g1_distributor"],
            "{label}: a fresh generation has the query indexes"
        );

        // Queries run all along the rebuild, and must always see complete books.
        let done = Arc::new(AtomicBool::new(false));
        let answered_while_rebuilding = Arc::new(AtomicU64::new(0));
        let queries = tokio::spawn({
            let (read, done, answered) = (
                read.clone(),
                done.clone(),
                answered_while_rebuilding.clone(),
            );
            let expected = expected.clone();
            async move {
                let query = LedgerQuery::new(read.clone());
                while !done.load(Ordering::SeqCst) {
                    let rebuilding = rebuilding_generation(&read).await.is_some();
                    let balances = query.top_balances(1_000).await.unwrap();
                    let seen: std::collections::BTreeMap<_, _> = balances
                        .into_iter()
                        .map(|b| ((b.distributor_id, b.currency), b.balance))
                        .collect();
                    assert_eq!(seen, expected);
                    if rebuilding {
                        answered.fetch_add(1, Ordering::SeqCst);
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        });

        let progress = Arc::new(Mutex::new(Vec::new()));
        let reports = runner
            .rebuild(Some("ledger"), {
                let progress = progress.clone();
                move |p| progress.lock().unwrap().push(p)
            })
            .await
            .unwrap();
        done.store(true, Ordering::SeqCst);
        queries.await.unwrap();
        assert!(
            answered_while_rebuilding.load(Ordering::SeqCst) > 0,
            "{}: no query answered during the rebuild",
            target.label
        );

        assert_eq!(reports.len(), 1);
        let report = &reports[0];
        assert_eq!((report.from_generation, report.generation), (1, 2));
        let progress = std::mem::take(&mut *progress.lock().unwrap());
        assert!(progress.len() > 10, "one report per batch");
        let last = progress.last().unwrap();
        assert!(last.done);
        assert_eq!((last.remaining, last.generation), (0, 2));
        assert_eq!(last.events_applied, report.events_applied);
        assert!(progress.windows(2).all(|w| w[0].position <= w[1].position));
        assert!(progress
            .iter()
            .any(|p| p.remaining > 0 && p.events_per_second >= 0.0));

        // Identical rows, from generation 2; generation 1 is gone.
        assert_eq!(dump(&read).await, before, "{}", target.label);
        let status = runner.status().await.unwrap();
        assert_eq!(status[0].generation, 2);
        assert_eq!(status[0].lag_events, 0);
        assert!(status[0].rebuilding.is_none());
        assert!(sqlx::query("SELECT COUNT(*) FROM ledger_entries_g1")
            .fetch_one(read.pool())
            .await
            .is_err());
        assert_eq!(
            count(&read, "ledger_entries_g2").await,
            all.len() as i64 * 2
        );
        // The indexes only queries read are built after the rows, before the swap.
        assert_eq!(
            indexes_of(&read, label, "ledger_entries_g2").await,
            ["ledger_entries_g2_account", "ledger_entries_g2_distributor"],
            "{label}"
        );
        assert_eq!(
            indexes_of(&read, label, "ledger_balances_g2").await,
            ["ledger_balances_g2_balance"],
            "{label}"
        );

        // The new generation goes on from its checkpoint.
        let more = postings(300, 10);
        append(&store, &more).await;
        runner.catch_up().await.unwrap();
        let everything: Vec<_> = all.iter().chain(&more).cloned().collect();
        assert_eq!(actual_balances(&read).await, expected_balances(&everything));

        // Rebuild everything again: generation 3.
        let reports = runner.rebuild(None, |_| {}).await.unwrap();
        assert_eq!(reports[0].generation, 3);
        assert_eq!(actual_balances(&read).await, expected_balances(&everything));
        assert!(matches!(
            runner.rebuild(Some("nope"), |_| {}).await,
            Err(ProjectionError::UnknownProjection { .. })
        ));
        read.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_while_the_runner_follows_and_events_arrive_loses_nothing() {
    on_every_read_store(|target| async move {
        let dir = tempfile::tempdir().unwrap();
        let store = event_store(dir.path()).await;
        let first = postings(0, 150);
        append(&store, &first).await;
        let read = target.connect().await;
        let runner = Arc::new(runner(&store, read.clone(), 10));
        let (stop, shutdown) = watch::channel(false);
        let running = tokio::spawn({
            let runner = runner.clone();
            async move { runner.run(shutdown).await }
        });
        wait_caught_up(&runner).await;

        let second = postings(150, 60);
        let appending = tokio::spawn({
            let (store, second) = (store.clone(), second.clone());
            async move {
                for chunk in second.chunks(5) {
                    append(&store, chunk).await;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        });
        runner.rebuild(Some("ledger"), |_| {}).await.unwrap();
        appending.await.unwrap();
        wait_caught_up(&runner).await;

        let all: Vec<_> = first.iter().chain(&second).cloned().collect();
        assert_eq!(
            actual_balances(&read).await,
            expected_balances(&all),
            "{}",
            target.label
        );
        assert_eq!(count(&read, "ledger_entries").await, all.len() as i64 * 2);
        let problems = LedgerQuery::new(read.clone()).verify().await.unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(runner.status().await.unwrap()[0].generation, 2);

        stop.send(true).unwrap();
        running.await.unwrap().unwrap();
        read.close().await;
    })
    .await;
}

#[tokio::test]
async fn an_interrupted_rebuild_is_dropped_by_the_next() {
    on_every_read_store(|target| async move {
        let dir = tempfile::tempdir().unwrap();
        let store = event_store(dir.path()).await;
        let all = postings(0, 30);
        append(&store, &all).await;
        let read = target.connect().await;
        let runner = runner(&store, read.clone(), 8);
        runner.catch_up().await.unwrap();

        // A rebuild into generation 2 died after its first batch.
        sqlx::query(
            "UPDATE projection_state SET rebuilding_generation = 2, rebuilding_position = 5 \
             WHERE name = 'ledger'",
        )
        .execute(read.writer())
        .await
        .unwrap();
        sqlx::query("CREATE TABLE ledger_entries_g2 (x BIGINT)")
            .execute(read.writer())
            .await
            .unwrap();
        let status = runner.status().await.unwrap();
        assert_eq!(
            status[0].rebuilding,
            Some(upline_projections::Rebuilding {
                generation: 2,
                position: 5
            })
        );

        let reports = runner.rebuild(Some("ledger"), |_| {}).await.unwrap();
        assert_eq!(reports[0].generation, 3, "{}", target.label);
        assert!(sqlx::query("SELECT COUNT(*) FROM ledger_entries_g2")
            .fetch_one(read.pool())
            .await
            .is_err());
        assert_eq!(actual_balances(&read).await, expected_balances(&all));
        assert!(runner.status().await.unwrap()[0].rebuilding.is_none());
        read.close().await;
    })
    .await;
}

/// The ledger, refusing the event at one position (as if it could not read it) until fixed.
struct RefusingLedger {
    refuse: Mutex<Option<u64>>,
}

#[async_trait::async_trait]
impl upline_projections::Projection for RefusingLedger {
    fn name(&self) -> &'static str {
        LedgerProjection.name()
    }
    fn stream_prefixes(&self) -> Vec<String> {
        LedgerProjection.stream_prefixes()
    }
    fn tables(&self) -> &'static [&'static str] {
        LedgerProjection.tables()
    }
    async fn create_tables(
        &self,
        tx: &mut upline_projections::Tx<'_>,
        generation: u32,
    ) -> Result<(), ProjectionError> {
        LedgerProjection.create_tables(tx, generation).await
    }
    fn query_indexes(&self, generation: u32) -> Vec<String> {
        LedgerProjection.query_indexes(generation)
    }
    async fn apply(
        &self,
        tx: &mut upline_projections::Tx<'_>,
        generation: u32,
        event: &upline_store::RecordedEvent,
    ) -> Result<(), ProjectionError> {
        if *self.refuse.lock().unwrap() == Some(event.position) {
            return Err(ProjectionError::InvalidEvent {
                projection: "ledger".into(),
                position: event.position,
                stream: event.stream_id.clone(),
                event_type: event.event_type.clone(),
                reason: "refused by the test".into(),
            });
        }
        LedgerProjection.apply(tx, generation, event).await
    }
}

/// Position of revision `revision` of `stream`.
async fn position_of(store: &Arc<dyn EventStore>, stream: &str, revision: u64) -> u64 {
    store
        .read_stream(
            stream,
            upline_store::Direction::Forwards,
            upline_store::StreamStart::Revision(revision),
            1,
        )
        .await
        .unwrap()[0]
        .position
}

#[tokio::test]
async fn an_unreadable_posting_is_held_with_its_stream_and_everything_else_applies() {
    on_every_read_store(|target| async move {
        // Given postings, an unreadable posting on d3's stream, then more postings
        let dir = tempfile::tempdir().unwrap();
        let store = event_store(dir.path()).await;
        let first = postings(0, 20);
        append(&store, &first).await;
        let junk =
            EventData::json("CommissionEarned", &serde_json::json!({"amount": "x"})).unwrap();
        let bad = store
            .append("commissions-d3", ExpectedRevision::Any, vec![junk])
            .await
            .unwrap()
            .position;
        let later = postings(20, 20);
        append(&store, &later).await;

        // When the ledger catches up
        let read = target.connect().await;
        let runner = runner(&store, read.clone(), 8);
        runner.catch_up().await.unwrap();

        // Then the unreadable posting is held, d3's later postings behind it, and every other
        // posting is in the ledger; the checkpoint is at the head
        let held = runner.held().await.unwrap();
        assert_eq!(held[0].position, bad, "{}: {held:?}", target.label);
        assert_eq!(held[0].consumer, "ledger");
        assert_eq!(held[0].stream, "commissions-d3");
        assert!(held[0].behind.is_none());
        let behind: Vec<_> = later.iter().filter(|p| p.distributor == "d3").collect();
        assert_eq!(held.len(), 1 + behind.len(), "{held:?}");
        assert!(held[1..]
            .iter()
            .all(|h| h.behind == Some(bad) && h.stream == "commissions-d3"));
        let applied: Vec<Posting> = first
            .iter()
            .chain(later.iter().filter(|p| p.distributor != "d3"))
            .cloned()
            .collect();
        assert_eq!(actual_balances(&read).await, expected_balances(&applied));
        let status = runner.status().await.unwrap();
        assert_eq!(status[0].lag_events, 0, "{status:?}");

        // When an operator retries before a fix
        let reports = runner.retry_all_held().await.unwrap();
        // Then it stays held with the reason, counted as a failed retry; nothing changes
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].released, 0);
        assert_eq!(reports[0].still_held.as_ref().map(|s| s.0), Some(bad));
        let again = runner.held().await.unwrap();
        assert_eq!(again.len(), held.len());
        assert_eq!(again[0].retries, 1);
        assert_eq!(actual_balances(&read).await, expected_balances(&applied));
        read.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_held_event_retried_after_the_fix_applies_once_in_order() {
    on_every_read_store(|target| async move {
        // Given a ledger that refuses d5's first posting
        let dir = tempfile::tempdir().unwrap();
        let store = event_store(dir.path()).await;
        let all = postings(0, 40);
        append(&store, &all).await;
        let refused = position_of(&store, "commissions-d5", 1).await;
        let ledger = Arc::new(RefusingLedger {
            refuse: Mutex::new(Some(refused)),
        });
        let read = target.connect().await;
        let runner = ProjectionRunner::new(store.clone(), read.clone(), vec![ledger.clone()])
            .with_page_size(16);
        runner.catch_up().await.unwrap();
        let held = runner.held().await.unwrap();
        let d5 = all.iter().filter(|p| p.distributor == "d5").count();
        assert_eq!(held.len(), d5, "{}: {held:?}", target.label);
        let others: Vec<Posting> = all
            .iter()
            .filter(|p| p.distributor != "d5")
            .cloned()
            .collect();
        assert_eq!(actual_balances(&read).await, expected_balances(&others));

        // When the fix is in and the held event is retried
        *ledger.refuse.lock().unwrap() = None;
        let report = runner.retry_held("ledger", refused).await.unwrap();

        // Then d5's postings apply, in order, exactly once, and nothing is held
        assert_eq!((report.released, report.still_held), (d5, None));
        assert!(runner.held().await.unwrap().is_empty());
        assert_eq!(actual_balances(&read).await, expected_balances(&all));
        assert_eq!(count(&read, "ledger_entries").await, all.len() as i64 * 2);

        // When the same item is retried again, or the runner catches up again
        assert!(matches!(
            runner.retry_held("ledger", refused).await,
            Err(ProjectionError::NothingHeld { .. })
        ));
        runner.catch_up().await.unwrap();
        // Then nothing counts twice
        assert_eq!(actual_balances(&read).await, expected_balances(&all));
        assert_eq!(count(&read, "ledger_entries").await, all.len() as i64 * 2);
        read.close().await;
    })
    .await;
}
