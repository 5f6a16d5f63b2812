//! The reconciliation projection on both read stores, over events written by the real
//! application: exact daily figures, a commission delta of exactly zero on correct data, and a
//! non-zero delta naming the order when a posting is missing or duplicated.

mod common;
#[path = "reconciliation_scenario.rs"]
mod scenario;

use std::sync::Arc;

use chrono::NaiveDate;
use common::on_every_read_store;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use scenario::*;
use upline_app::records::PostingEvent;
use upline_projections::bi::{BiProjection, BiQuery, OrderFilter};
use upline_projections::reconciliation::{
    ReconciliationProjection, ReconciliationQuery, ReconciliationRow,
};
use upline_projections::{Projection, ProjectionRunner, ReadStore};
use upline_store::{Direction, ExpectedRevision, StreamStart};

fn d(month: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, month, day).unwrap()
}

fn runner(w: &World, read: &ReadStore) -> ProjectionRunner {
    ProjectionRunner::new(
        w.store.clone(),
        read.clone(),
        vec![Arc::new(ReconciliationProjection::new(w.store.clone()))],
    )
    .with_page_size(16)
}

async fn rows(read: &ReadStore) -> Vec<ReconciliationRow> {
    ReconciliationQuery::new(read.clone())
        .reconciliation(d(3, 1), d(3, 31), None, None)
        .await
        .unwrap()
}

async fn row(read: &ReadStore, day: NaiveDate) -> ReconciliationRow {
    rows(read)
        .await
        .into_iter()
        .find(|r| r.day == day)
        .unwrap_or_else(|| panic!("no row for {day}"))
}

/// (order stream, kind, subject, delta) of every current difference.
async fn differences(read: &ReadStore) -> Vec<(String, String, String, Decimal)> {
    let page = ReconciliationQuery::new(read.clone())
        .differing_orders(d(3, 1), d(3, 31), Some("shopify"), Some(SHOP), None, 0)
        .await
        .unwrap();
    assert!(page.next_page_token.is_none());
    page.differences
        .into_iter()
        .map(|f| (f.order_stream, f.kind, f.subject, f.delta))
        .collect()
}

fn declared_only() -> Vec<(String, String, String, Decimal)> {
    vec![(
        stream("1006"),
        "declared_total".into(),
        String::new(),
        dec!(-0.50),
    )]
}

#[tokio::test]
async fn daily_figures_are_exact_and_the_commission_delta_is_zero() {
    on_every_read_store(|target| async move {
        let label = target.label;
        let w = world().await;
        standard_orders(&w).await;
        let read = target.connect().await;
        runner(&w, &read).catch_up().await.unwrap();

        let all = rows(&read).await;
        assert_eq!(
            all.iter().map(|r| r.day).collect::<Vec<_>>(),
            vec![d(3, 10), d(3, 11), d(3, 12)],
            "{label}"
        );
        for r in &all {
            assert_eq!(
                (r.platform.as_str(), r.shop.as_str(), r.currency.as_str()),
                ("shopify", SHOP, "USD"),
                "{label}"
            );
        }

        // 1001, 1002 (one unit refunded), 1003 (cancelled).
        let r = row(&read, d(3, 10)).await;
        assert_eq!(
            (
                r.orders,
                r.orders_received,
                r.orders_paid,
                r.orders_refunded,
                r.orders_cancelled,
                r.orders_parked,
                r.orders_unattributed
            ),
            (3, 3, 3, 1, 1, 0, 0),
            "{label}"
        );
        assert_eq!(
            (r.gross, r.discounts, r.net, r.tax, r.shipping),
            (dec!(300), dec!(0), dec!(300), dec!(24), dec!(15)),
            "{label}"
        );
        assert_eq!((r.declared_total, r.lines_total), (dec!(339), dec!(339)));
        // Bases now: 100 + 50 (half refunded) + 0 (cancelled).
        assert_eq!(r.commissionable_base, dec!(150), "{label}");
        // Earned 22 on each of the three; 11 reversed on 1002 and 22 on 1003.
        assert_eq!(r.commission_earned, dec!(66), "{label}");
        assert_eq!(r.commission_reversed, dec!(33), "{label}");
        assert_eq!(r.commission_posted, dec!(33), "{label}");
        assert_eq!(r.commission_recorded, dec!(33), "{label}");
        assert_eq!(r.commission_expected, dec!(33), "{label}");
        assert_eq!(r.commission_delta, Decimal::ZERO, "{label}");
        assert_eq!(r.commission_delta_pct, Some(Decimal::ZERO), "{label}");
        assert_eq!(
            (r.orders_commission_differing, r.orders_total_differing),
            (0, 0)
        );

        // 1004 (unattributed), 1005 (not paid), 3001 (parked before its details were recorded).
        let r = row(&read, d(3, 11)).await;
        assert_eq!(
            (
                r.orders,
                r.orders_received,
                r.orders_paid,
                r.orders_parked,
                r.orders_unattributed
            ),
            (3, 2, 1, 1, 1),
            "{label}"
        );
        assert_eq!(
            (r.gross, r.net, r.tax, r.shipping),
            (dec!(200), dec!(200), dec!(16), dec!(10))
        );
        assert_eq!(r.commission_expected, Decimal::ZERO);
        assert_eq!(r.commission_posted, Decimal::ZERO);

        // 1006: the kit, credited to d1 (5.00) and top (15.00); its platform declared 112.50.
        let r = row(&read, d(3, 12)).await;
        assert_eq!((r.orders_received, r.orders_paid), (1, 1));
        assert_eq!(r.commission_expected, dec!(20), "{label}");
        assert_eq!(r.commission_posted, dec!(20), "{label}");
        assert_eq!(r.declared_total, dec!(112.50));
        assert_eq!(r.lines_total, dec!(113.00));
        assert_eq!(r.declared_delta, dec!(-0.50));
        assert_eq!(r.orders_total_differing, 1);
        assert_eq!(r.orders_commission_differing, 0);

        // Over the month: expected 53.00 and posted 53.00, to the cent.
        let summary = ReconciliationQuery::new(read.clone())
            .summary(d(3, 1), d(3, 31), None, None)
            .await
            .unwrap();
        assert_eq!(summary.len(), 1);
        assert_eq!(summary[0].commission_expected, dec!(53), "{label}");
        assert_eq!(summary[0].commission_posted, dec!(53), "{label}");
        assert_eq!(summary[0].commission_delta, Decimal::ZERO, "{label}");
        assert_eq!(summary[0].orders_received, 6);

        // The only difference is the declared total of 1006.
        assert_eq!(differences(&read).await, declared_only(), "{label}");
        let order = ReconciliationQuery::new(read.clone())
            .order(&stream("1002"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(order.distributor_id.as_deref(), Some("d3"));
        assert_eq!(
            (
                order.commission_expected,
                order.commission_posted,
                order.refunds
            ),
            (dec!(11), dec!(11), 1)
        );

        // The parked order is fixed and retried: it is received on its own day, paid, posted.
        resolve_parked(&w).await;
        runner(&w, &read).catch_up().await.unwrap();
        let r = row(&read, d(3, 11)).await;
        assert_eq!(
            (r.orders, r.orders_received, r.orders_paid, r.orders_parked),
            (3, 3, 2, 0),
            "{label}"
        );
        assert_eq!(r.commission_expected, dec!(8.80), "{label}");
        assert_eq!(r.commission_posted, dec!(8.80), "{label}");
        assert_eq!(differences(&read).await, declared_only(), "{label}");

        // A rebuild gives the same rows.
        let before = rows(&read).await;
        runner(&w, &read)
            .rebuild(Some("reconciliation"), |_| {})
            .await
            .unwrap();
        assert_eq!(rows(&read).await, before, "{label}");
        read.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_missing_or_duplicated_posting_is_a_difference_naming_the_order() {
    on_every_read_store(|target| async move {
        let label = target.label;
        let w = world().await;
        standard_orders(&w).await;
        let read = target.connect().await;
        runner(&w, &read).catch_up().await.unwrap();
        assert_eq!(differences(&read).await, declared_only(), "{label}");

        // 1007 is paid, but its postings are not written (yet).
        let supp = order(13, "SUPP001", dec!(2), dec!(50.00), None, Some("CODE3"));
        send(&w, "1007", Some(supp), vec![paid(13)]).await;
        runner(&w, &read).catch_up().await.unwrap();
        let r = row(&read, d(3, 13)).await;
        assert_eq!(r.commission_expected, dec!(22), "{label}");
        assert_eq!(r.commission_recorded, dec!(22), "{label}");
        assert_eq!(r.commission_posted, Decimal::ZERO, "{label}");
        assert_eq!(r.commission_delta, dec!(-22), "{label}");
        assert_eq!(r.commission_delta_pct, Some(dec!(-100)), "{label}");
        assert_eq!(r.orders_commission_differing, 1);
        let mut expected = declared_only();
        for (who, amount) in [
            ("d1", dec!(-4)),
            ("d2", dec!(-5)),
            ("d3", dec!(-10)),
            ("top", dec!(-3)),
        ] {
            expected.push((
                stream("1007"),
                "commission_posted".into(),
                who.into(),
                amount,
            ));
        }
        expected.sort();
        let mut found = differences(&read).await;
        found.sort();
        assert_eq!(found, expected, "{label}");
        let summary = ReconciliationQuery::new(read.clone())
            .summary(d(3, 1), d(3, 31), None, None)
            .await
            .unwrap();
        // 22 missing of 75 expected.
        assert_eq!(summary[0].commission_delta, dec!(-22));
        assert_eq!(summary[0].commission_delta_pct, Some(dec!(-29.333333)));

        // Once posted, the month is exact again.
        post(&w).await;
        runner(&w, &read).catch_up().await.unwrap();
        assert_eq!(row(&read, d(3, 13)).await.commission_delta, Decimal::ZERO);
        assert_eq!(differences(&read).await, declared_only(), "{label}");

        // A bogus extra copy of d3's posting for 1001 (a new event id).
        let d3 = "commissions-d3";
        let recorded = w
            .store
            .read_stream(d3, Direction::Forwards, StreamStart::Start, 1_000)
            .await
            .unwrap();
        let original = recorded
            .iter()
            .find(|r| {
                r.event_type == PostingEvent::EARNED
                    && matches!(
                        upline_domain::events::decode::<PostingEvent>(&r.event_type, &r.data),
                        Ok(PostingEvent::CommissionEarned { ref source, .. })
                            if source.order_stream == stream("1001")
                    )
            })
            .expect("d3's posting for 1001");
        let posting: PostingEvent =
            upline_domain::events::decode(&original.event_type, &original.data).unwrap();
        let copy = upline_app::eventio::event_data(d3, "bogus", &posting, &cmd()).unwrap();
        w.store
            .append(d3, ExpectedRevision::Any, vec![copy])
            .await
            .unwrap();
        runner(&w, &read).catch_up().await.unwrap();
        let r = row(&read, d(3, 10)).await;
        assert_eq!(r.commission_expected, dec!(33), "{label}");
        assert_eq!(r.commission_posted, dec!(43), "{label}");
        assert_eq!(r.commission_delta, dec!(10), "{label}");
        assert_eq!(r.commission_delta_pct, Some(dec!(30.303030)), "{label}");
        let mut expected = declared_only();
        expected.push((
            stream("1001"),
            "commission_posted".into(),
            "d3".into(),
            dec!(10),
        ));
        expected.sort();
        let mut found = differences(&read).await;
        found.sort();
        assert_eq!(found, expected, "{label}");
        read.close().await;
    })
    .await;
}

#[tokio::test]
async fn differences_page_and_filter() {
    on_every_read_store(|target| async move {
        let w = world().await;
        // Three orders the postings have not reached: twelve differences.
        for (i, id) in ["2001", "2002", "2003"].iter().enumerate() {
            let o = order(
                14 + i as u32,
                "SUPP001",
                dec!(1),
                dec!(10.00),
                None,
                Some("CODE3"),
            );
            send(&w, id, Some(o), vec![paid(14)]).await;
        }
        let read = target.connect().await;
        runner(&w, &read).catch_up().await.unwrap();
        let query = ReconciliationQuery::new(read.clone());
        let mut token = None;
        let mut seen = Vec::new();
        loop {
            let page = query
                .differing_orders(d(3, 1), d(3, 31), None, None, token.as_deref(), 5)
                .await
                .unwrap();
            assert!(page.differences.len() <= 5);
            seen.extend(page.differences);
            match page.next_page_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        assert_eq!(seen.len(), 12, "{}", target.label);
        let mut keys: Vec<_> = seen
            .iter()
            .map(|f| (f.order_stream.clone(), f.kind.clone(), f.subject.clone()))
            .collect();
        let sorted = {
            let mut k = keys.clone();
            k.sort();
            k
        };
        assert_eq!(keys, sorted);
        keys.dedup();
        assert_eq!(keys.len(), 12);
        // One day only; another platform has none.
        let one_day = query
            .differing_orders(d(3, 15), d(3, 15), None, None, None, 0)
            .await
            .unwrap();
        assert!(one_day
            .differences
            .iter()
            .all(|f| f.order_stream == stream("2002") && f.day == d(3, 15)));
        assert_eq!(one_day.differences.len(), 4);
        let other = query
            .differing_orders(d(3, 1), d(3, 31), Some("woocommerce"), None, None, 0)
            .await
            .unwrap();
        assert!(other.differences.is_empty());
        assert!(query
            .differing_orders(d(3, 1), d(3, 31), None, None, Some("not a token"), 0)
            .await
            .is_err());
        read.close().await;
    })
    .await;
}

/// Every event the projection reads, applied again in one transaction (as a tool might): no row
/// changes.
async fn reapply_everything(w: &World, read: &ReadStore, projection: &dyn Projection) {
    let filter = upline_projections::projection::filter_of(projection);
    let events = w
        .store
        .read_all(upline_store::AllStart::Start, &filter, 10_000)
        .await
        .unwrap();
    assert!(!events.is_empty());
    let mut tx = read.begin().await.unwrap();
    for event in &events {
        projection.apply(&mut tx, 1, event).await.unwrap();
    }
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn re_applying_events_changes_nothing() {
    on_every_read_store(|target| async move {
        let label = target.label;
        let w = world().await;
        standard_orders(&w).await;
        let read = target.connect().await;
        reconciliation_and_bi(&w, &read).catch_up().await.unwrap();
        let query = BiQuery::new(read.clone());
        let bi = |q: BiQuery| async move {
            (
                q.sales(d(1, 1), d(12, 31), None, None, 0).await.unwrap(),
                q.distributor_months(d(1, 1), d(12, 31), None, None, 0)
                    .await
                    .unwrap(),
                q.orders(d(1, 1), d(12, 31), &OrderFilter::default(), None, 0)
                    .await
                    .unwrap(),
            )
        };
        let before = (
            rows(&read).await,
            differences(&read).await,
            bi(query.clone()).await,
        );
        reapply_everything(&w, &read, &ReconciliationProjection::new(w.store.clone())).await;
        reapply_everything(&w, &read, &BiProjection::new(w.store.clone())).await;
        let after = (rows(&read).await, differences(&read).await, bi(query).await);
        assert_eq!(after, before, "{label}");
        read.close().await;
    })
    .await;
}

#[tokio::test]
async fn an_unreadable_order_event_is_a_difference_not_a_stop() {
    on_every_read_store(|target| async move {
        let label = target.label;
        let w = world().await;
        standard_orders(&w).await;
        let junk =
            upline_store::EventData::json("OrderPaid", &serde_json::json!({"paid_at": 7})).unwrap();
        let written = w
            .store
            .append(&stream("9999"), ExpectedRevision::NoStream, vec![junk])
            .await
            .unwrap();
        let read = target.connect().await;
        reconciliation_and_bi(&w, &read).catch_up().await.unwrap();
        let page = ReconciliationQuery::new(read.clone())
            .differing_orders(d(1, 1), d(12, 31), None, None, None, 0)
            .await
            .unwrap();
        let unreadable: Vec<_> = page
            .differences
            .iter()
            .filter(|f| f.kind == "unreadable_event")
            .collect();
        assert_eq!(unreadable.len(), 1, "{label}: {:?}", page.differences);
        assert_eq!(unreadable[0].order_stream, stream("9999"));
        assert_eq!(unreadable[0].subject, written.position.to_string());
        assert!(
            unreadable[0].note.contains("OrderPaid"),
            "{}",
            unreadable[0].note
        );
        // BI skipped it and kept going: every real order is there.
        let orders = BiQuery::new(read.clone())
            .orders(d(1, 1), d(12, 31), &OrderFilter::default(), None, 0)
            .await
            .unwrap()
            .rows;
        assert_eq!(orders.len(), 7, "{label}");
        read.close().await;
    })
    .await;
}

/// Reconciliation and BI over `w`'s store.
fn reconciliation_and_bi(w: &World, read: &ReadStore) -> ProjectionRunner {
    ProjectionRunner::new(
        w.store.clone(),
        read.clone(),
        vec![
            Arc::new(ReconciliationProjection::new(w.store.clone())),
            Arc::new(BiProjection::new(w.store.clone())),
        ],
    )
}

/// Order 1002 (2 x 50.00 SUPP001, CODE3) paid, posted and projected on its own.
async fn paid_and_projected(w: &World, read: &ReadStore) {
    let supp = order(10, "SUPP001", dec!(2), dec!(50.00), None, Some("CODE3"));
    send(w, "1002", Some(supp), vec![paid(10)]).await;
    post(w).await;
    reconciliation_and_bi(w, read).catch_up().await.unwrap();
}

/// One of order 1002's two units refunded, posted and projected in a later batch.
async fn refund_projected(w: &World, read: &ReadStore) {
    send(w, "1002", None, vec![refund("r1", dec!(1))]).await;
    post(w).await;
    reconciliation_and_bi(w, read).catch_up().await.unwrap();
}

/// BI's level 1 of March: (base, amount).
async fn level_one(read: &ReadStore) -> (Decimal, Decimal) {
    let levels = BiQuery::new(read.clone())
        .commissions_by_level(d(3, 1), d(3, 31), None, 0)
        .await
        .unwrap()
        .rows;
    let first = levels.iter().find(|l| l.level == 1).expect("level 1");
    (first.base, first.amount)
}

/// The JSON state `projection` keeps of `order_stream`.
async fn kept_state(read: &ReadStore, table: &str, order_stream: &str) -> serde_json::Value {
    let state: String = sqlx::query_scalar(&format!(
        "SELECT state FROM {table} WHERE order_stream = $1"
    ))
    .bind(order_stream)
    .fetch_one(read.pool())
    .await
    .unwrap();
    serde_json::from_str(&state).unwrap()
}

#[tokio::test]
async fn a_refund_after_the_calculation_was_projected_reads_the_inputs_back_from_the_stream() {
    on_every_read_store(|target| async move {
        let label = target.label;
        // Given order 1002 paid, posted and projected on its own,
        let w = world().await;
        let read = target.connect().await;
        paid_and_projected(&w, &read).await;
        // the projections keep that it was calculated, not the calculation's inputs;
        for table in ["reconciliation_state", "bi_state"] {
            let state = kept_state(&read, table, &stream("1002")).await;
            assert!(state.get("inputs").is_none(), "{label} {table}: {state}");
        }
        assert_eq!(row(&read, d(3, 10)).await.commission_expected, dec!(22));

        // when one of its two units is refunded in a later batch,
        refund_projected(&w, &read).await;

        // then reconciliation recomputes from the recorded inputs: 5 + 2.50 + 2 + 1.50,
        let r = row(&read, d(3, 10)).await;
        assert_eq!(r.commission_expected, dec!(11), "{label}");
        assert_eq!(r.commission_posted, dec!(11), "{label}");
        assert_eq!(r.commission_delta, Decimal::ZERO, "{label}");
        assert!(differences(&read).await.is_empty(), "{label}");
        // and BI's level sums are the recomputed lines on the kept base (10 % of 50.00).
        assert_eq!(level_one(&read).await, (dec!(50), dec!(5)), "{label}");
        read.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_book_saved_with_its_calculation_inputs_is_read_as_one_that_was_calculated() {
    on_every_read_store(|target| async move {
        let label = target.label;
        // Given order 1002 projected, its books then rewritten as an earlier version saved them
        // (the calculation's inputs inside, no note that it was calculated),
        let w = world().await;
        let read = target.connect().await;
        paid_and_projected(&w, &read).await;
        let calculated = w
            .store
            .read_stream(
                &stream("1002"),
                Direction::Forwards,
                StreamStart::Start,
                100,
            )
            .await
            .unwrap()
            .into_iter()
            .find(|e| e.event_type == "CommissionCalculated")
            .expect("a calculation");
        let event: serde_json::Value = serde_json::from_slice(&calculated.data).unwrap();
        for (table, note) in [
            ("reconciliation_state", "calculation_currency"),
            ("bi_state", "calculated"),
        ] {
            let mut state = kept_state(&read, table, &stream("1002")).await;
            let book = state.as_object_mut().unwrap();
            assert!(book.remove(note).is_some(), "{label} {table}");
            book.insert("inputs".into(), event["inputs"].clone());
            sqlx::query(&format!(
                "UPDATE {table}_g1 SET state = $1 WHERE order_stream = $2"
            ))
            .bind(serde_json::to_string(&state).unwrap())
            .bind(stream("1002"))
            .execute(read.pool())
            .await
            .unwrap();
        }

        // when a refund of one unit is projected,
        refund_projected(&w, &read).await;

        // then both recompute as if the books were this version's, and save them without inputs.
        let r = row(&read, d(3, 10)).await;
        assert_eq!(
            (r.commission_expected, r.commission_delta),
            (dec!(11), Decimal::ZERO),
            "{label}"
        );
        assert!(differences(&read).await.is_empty(), "{label}");
        assert_eq!(level_one(&read).await, (dec!(50), dec!(5)), "{label}");
        for table in ["reconciliation_state", "bi_state"] {
            let state = kept_state(&read, table, &stream("1002")).await;
            assert!(state.get("inputs").is_none(), "{label} {table}: {state}");
        }
        read.close().await;
    })
    .await;
}
