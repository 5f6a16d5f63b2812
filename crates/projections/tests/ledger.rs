//! The ledger projection on both read stores: balances, double-entry invariants, exactly-once
//! application across a crash, the query API, and identical results on SQLite and PostgreSQL.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use sqlx::Row;
use upline_projections::{
    LedgerProjection, LedgerQuery, Projection, ProjectionError, ProjectionRunner,
};

fn runner(
    store: &Arc<dyn upline_store::EventStore>,
    read: upline_projections::ReadStore,
) -> ProjectionRunner {
    ProjectionRunner::new(store.clone(), read, vec![Arc::new(LedgerProjection)]).with_page_size(64)
}

/// Independent SQL checks of the invariants (besides `LedgerQuery::verify`).
async fn assert_invariants(read: &upline_projections::ReadStore, label: &str) {
    let problems = LedgerQuery::new(read.clone()).verify().await.unwrap();
    assert!(problems.is_empty(), "{label}: {problems:#?}");
    // For each currency, all accounts sum to zero.
    let sums = sqlx::query(
        "SELECT currency, CAST(SUM(debit_e6 - credit_e6) AS BIGINT) AS net \
         FROM ledger_entries GROUP BY currency",
    )
    .fetch_all(read.pool())
    .await
    .unwrap();
    assert!(!sums.is_empty());
    for row in sums {
        let net: i64 = row.try_get("net").unwrap();
        assert_eq!(
            net,
            0,
            "{label}: {}",
            row.try_get::<String, _>("currency").unwrap()
        );
    }
    // Every balance equals the sum of its payable account's entries.
    let rows = sqlx::query(
        "SELECT b.distributor_id, b.balance_e6, \
         (SELECT CAST(COALESCE(SUM(e.credit_e6 - e.debit_e6), 0) AS BIGINT) FROM ledger_entries e \
          WHERE e.account = 'payable:' || b.distributor_id AND e.currency = b.currency) AS sum_e6 \
         FROM ledger_balances b",
    )
    .fetch_all(read.pool())
    .await
    .unwrap();
    for row in rows {
        let balance: i64 = row.try_get("balance_e6").unwrap();
        let sum: i64 = row.try_get("sum_e6").unwrap();
        assert_eq!(
            balance,
            sum,
            "{label}: {}",
            row.try_get::<String, _>("distributor_id").unwrap()
        );
    }
}

#[tokio::test]
async fn balances_are_exact_and_the_books_balance() {
    let dir = tempfile::tempdir().unwrap();
    let store = event_store(dir.path()).await;
    let all = postings(0, 120);
    append(&store, &all).await;

    on_every_read_store(|target| {
        let store = store.clone();
        let all = all.clone();
        async move {
            let read = target.connect().await;
            let runner = runner(&store, read.clone());
            let applied = runner.catch_up().await.unwrap();
            assert!(applied as usize > all.len(), "postings plus the other distributor events");
            assert_eq!(runner.catch_up().await.unwrap(), 0, "nothing new");

            assert_eq!(actual_balances(&read).await, expected_balances(&all), "{}", target.label);
            assert_eq!(count(&read, "ledger_entries").await, all.len() as i64 * 2);
            assert_invariants(&read, target.label).await;

            // Stored as millionths, exactly: a KWD amount keeps its three decimals.
            let query = LedgerQuery::new(read.clone());
            let kwd = query.balance("d3", Some("KWD")).await.unwrap();
            assert_eq!(kwd.len(), 1);
            let expected = expected_balances(&all)[&("d3".to_string(), "KWD".to_string())];
            assert_eq!(kwd[0].balance, expected);
            assert_eq!(kwd[0].balance.scale(), 3, "shown in the currency's minor unit");
            assert_eq!(kwd[0].balance, kwd[0].earned - kwd[0].reversed - kwd[0].paid);
            assert_eq!(kwd[0].paid, Decimal::ZERO);
            let row = sqlx::query(
                "SELECT balance_e6 FROM ledger_balances WHERE distributor_id = 'd3' AND currency = 'KWD'",
            )
            .fetch_one(read.pool())
            .await
            .unwrap();
            let e6: i64 = row.try_get("balance_e6").unwrap();
            assert_eq!(Decimal::new(e6, 6), expected);

            // Every currency of one distributor, in currency order.
            let d1 = query.balance("d1", None).await.unwrap();
            let currencies: Vec<_> = d1.iter().map(|b| b.currency.as_str()).collect();
            let mut sorted = currencies.clone();
            sorted.sort();
            assert_eq!(currencies, sorted);
            assert!(query.balance("nobody", None).await.unwrap().is_empty());
            read.close().await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_crash_before_the_checkpoint_never_counts_twice() {
    let first = postings(0, 40);
    let second = postings(40, 40);

    on_every_read_store(|target| {
        let (first, second) = (first.clone(), second.clone());
        async move {
            // Its own event store: this test appends while it runs.
            let dir = tempfile::tempdir().unwrap();
            let store = event_store(dir.path()).await;
            append(&store, &first).await;
            let read = target.connect().await;
            let runner = runner(&store, read.clone());
            runner.catch_up().await.unwrap();
            let (lines_before, _) = dump(&read).await;
            let status = runner.status().await.unwrap();
            let (generation, checkpoint) = (status[0].generation, status[0].position);

            append(&store, &second).await;
            let pending = store
                .read_all(
                    upline_store::AllStart::After(checkpoint),
                    &upline_store::StreamFilter::prefix("commissions-"),
                    1_000,
                )
                .await
                .unwrap();
            assert!(pending.len() >= second.len());

            // 1. A batch applied, then the process dies before commit: nothing of it stays.
            let mut tx = read.begin().await.unwrap();
            for event in &pending {
                LedgerProjection
                    .apply(&mut tx, generation, event)
                    .await
                    .unwrap();
            }
            tx.rollback().await.unwrap();
            assert_eq!(
                count(&read, "ledger_entries").await,
                first.len() as i64 * 2,
                "{}",
                target.label
            );

            // 2. Rows committed without the checkpoint (the worst case: a projection writing
            //    outside the runner's transaction): the runner applies them again, and the
            //    entry ids derived from positions keep them single.
            let mut tx = read.begin().await.unwrap();
            for event in &pending[..10] {
                LedgerProjection
                    .apply(&mut tx, generation, event)
                    .await
                    .unwrap();
                LedgerProjection
                    .apply(&mut tx, generation, event)
                    .await
                    .unwrap();
            }
            tx.commit().await.unwrap();

            runner.catch_up().await.unwrap();
            runner.catch_up().await.unwrap();
            let all: Vec<_> = first.iter().chain(second.iter()).cloned().collect();
            assert_eq!(
                count(&read, "ledger_entries").await,
                all.len() as i64 * 2,
                "{}",
                target.label
            );
            assert_eq!(actual_balances(&read).await, expected_balances(&all));
            assert_invariants(&read, target.label).await;
            let entries: i64 =
                sqlx::query("SELECT CAST(SUM(entries) AS BIGINT) AS n FROM ledger_balances")
                    .fetch_one(read.pool())
                    .await
                    .unwrap()
                    .try_get("n")
                    .unwrap();
            assert_eq!(entries, all.len() as i64);

            // No entry was updated or deleted: the earlier lines are still there, unchanged.
            let (lines_after, _) = dump(&read).await;
            assert_eq!(&lines_after[..lines_before.len()], &lines_before[..]);
            read.close().await;
        }
    })
    .await;
}

#[tokio::test]
async fn entries_page_through_a_distributors_statement() {
    let dir = tempfile::tempdir().unwrap();
    let store = event_store(dir.path()).await;
    let all = postings(0, 95);
    append(&store, &all).await;

    on_every_read_store(|target| {
        let store = store.clone();
        let all = all.clone();
        async move {
            let read = target.connect().await;
            runner(&store, read.clone()).catch_up().await.unwrap();
            let query = LedgerQuery::new(read.clone());
            let mine: Vec<_> = all.iter().filter(|p| p.distributor == "d7").collect();
            let mut seen = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let page = query.entries("d7", token.as_deref(), 4).await.unwrap();
                assert!(page.lines.len() <= 4);
                seen.extend(page.lines);
                match page.next_page_token {
                    Some(next) => token = Some(next),
                    None => break,
                }
            }
            assert_eq!(seen.len(), mine.len(), "{}", target.label);
            for (line, posting) in seen.iter().zip(&mine) {
                let (currency, signed) = posting.signed();
                assert_eq!(line.account, "payable:d7");
                assert_eq!(line.currency, currency);
                assert_eq!(line.credit - line.debit, signed);
                assert_eq!(
                    line.kind,
                    if signed > Decimal::ZERO {
                        "earned"
                    } else {
                        "reversed"
                    }
                );
                assert_eq!(line.entry_id, line.position);
                assert!(line.order_stream.starts_with("order-shopify-"));
            }
            assert!(seen.windows(2).all(|w| w[0].entry_id < w[1].entry_id));

            let top = query.top_balances(3).await.unwrap();
            assert_eq!(top.len(), 3);
            assert!(top.windows(2).all(|w| w[0].balance >= w[1].balance));
            assert!(matches!(
                query.entries("d7", Some("garbage"), 10).await,
                Err(ProjectionError::InvalidPageToken(_))
            ));
            read.close().await;
        }
    })
    .await;
}

#[tokio::test]
async fn sqlite_and_postgres_give_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store = event_store(dir.path()).await;
    let all = postings(0, 60);
    append(&store, &all).await;
    let results = Arc::new(Mutex::new(Vec::new()));

    on_every_read_store(|target| {
        let store = store.clone();
        let results = results.clone();
        async move {
            let read = target.connect().await;
            runner(&store, read.clone()).catch_up().await.unwrap();
            let rows = dump(&read).await;
            results.lock().unwrap().push((target.label, rows));
            read.close().await;
        }
    })
    .await;

    let results = results.lock().unwrap();
    let (_, sqlite) = &results[0];
    assert_eq!(sqlite.0.len(), all.len() * 2);
    for (label, rows) in results.iter().skip(1) {
        assert_eq!(rows, sqlite, "{label} differs from sqlite");
    }
}

#[tokio::test]
async fn an_amount_with_more_than_six_decimals_is_held_and_the_ledger_goes_on() {
    use upline_app::records::{PostingEvent, PostingSource};
    let dir = tempfile::tempdir().unwrap();
    let store = event_store(dir.path()).await;
    let bad = Posting {
        distributor: "d1".into(),
        event: PostingEvent::CommissionEarned {
            source: PostingSource {
                order_stream: "order-x".into(),
                order_revision: 1,
                order_event: "CommissionCalculated".into(),
            },
            currency: upline_domain::money::Currency::USD,
            amount: dec!(1.0000001),
            level: Some(1),
            plan_version: "p".into(),
        },
    };
    let mut all = postings(0, 3);
    all.push(bad);
    // A later posting on another distributor's stream is applied; one on d1's waits behind.
    all.extend(postings(3, 9));
    append(&store, &all).await;
    let behind = all[4..].iter().filter(|p| p.distributor == "d1").count();
    let total = all.len();

    on_every_read_store(|target| {
        let store = store.clone();
        async move {
            let read = target.connect().await;
            let runner = runner(&store, read.clone()).with_page_size(1);
            // The ledger never rounds: the posting cannot be stored exactly, so it is held
            // with the reason, and the projection goes on past it.
            runner.catch_up().await.unwrap();
            let held = runner.held().await.unwrap();
            assert!(held[0].reason.contains("more than 6 decimals"), "{held:?}");
            assert_eq!(held[0].stream, "commissions-d1");
            // d1's later postings wait behind it; every other posting is applied.
            assert_eq!(held.len(), 1 + behind, "{}: {held:?}", target.label);
            let applied = total - held.len();
            assert_eq!(count(&read, "ledger_entries").await, applied as i64 * 2);
            let status = runner.status().await.unwrap();
            assert_eq!(status[0].lag_events, 0, "{status:?}");
            read.close().await;
        }
    })
    .await;
}
