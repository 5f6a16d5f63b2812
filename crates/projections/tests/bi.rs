//! The BI projection on both read stores, over events written by the real application: sales,
//! distributor volumes and commissions, commissions by level and class, and the order table,
//! with filters, paging and a rebuild that gives the same rows.

mod common;
#[path = "reconciliation_scenario.rs"]
mod scenario;

use std::sync::Arc;

use chrono::NaiveDate;
use common::on_every_read_store;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use scenario::*;
use upline_projections::bi::{
    BiProjection, BiQuery, CommissionLevelRow, DistributorMonthRow, OrderFilter, OrderRow, SalesRow,
};
use upline_projections::{ProjectionRunner, ReadStore};

fn d(month: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, month, day).unwrap()
}

fn runner(w: &World, read: &ReadStore) -> ProjectionRunner {
    ProjectionRunner::new(
        w.store.clone(),
        read.clone(),
        vec![Arc::new(BiProjection::new(w.store.clone()))],
    )
    .with_page_size(16)
}

/// Every row of every BI query, for comparisons.
#[derive(Debug, PartialEq)]
struct Everything {
    sales: Vec<SalesRow>,
    months: Vec<DistributorMonthRow>,
    levels: Vec<CommissionLevelRow>,
    orders: Vec<OrderRow>,
}

async fn everything(read: &ReadStore) -> Everything {
    let q = BiQuery::new(read.clone());
    let (from, to) = (d(1, 1), d(12, 31));
    Everything {
        sales: q.sales(from, to, None, None, 0).await.unwrap().rows,
        months: q
            .distributor_months(from, to, None, None, 0)
            .await
            .unwrap()
            .rows,
        levels: q
            .commissions_by_level(from, to, None, 0)
            .await
            .unwrap()
            .rows,
        orders: q
            .orders(from, to, &OrderFilter::default(), None, 0)
            .await
            .unwrap()
            .rows,
    }
}

/// (sku, day, orders, lines, quantity, net, pv)
fn sales_of(rows: &[SalesRow]) -> Vec<(String, NaiveDate, u64, u64, Decimal, Decimal, Decimal)> {
    rows.iter()
        .map(|r| {
            assert_eq!(
                (r.platform.as_str(), r.currency.as_str()),
                ("shopify", "USD")
            );
            (
                format!("{}/{}/{}", r.sku_id, r.category, r.commission_class),
                r.day,
                r.orders,
                r.lines,
                r.quantity,
                r.net,
                r.pv,
            )
        })
        .collect()
}

/// (distributor, orders, orders_paid, personal, group, group_orders, commissions)
fn months_of(
    rows: &[DistributorMonthRow],
) -> Vec<(String, u64, u64, Decimal, Decimal, u64, Decimal)> {
    rows.iter()
        .map(|r| {
            assert_eq!((r.month.as_str(), r.currency.as_str()), ("2026-03", "USD"));
            (
                r.distributor_id.clone(),
                r.orders,
                r.orders_paid,
                r.personal_volume,
                r.group_volume,
                r.group_orders,
                r.commissions,
            )
        })
        .collect()
}

fn s(text: &str) -> String {
    text.to_string()
}

#[tokio::test]
async fn bi_tables_hold_exact_figures() {
    on_every_read_store(|target| async move {
        let label = target.label;
        let w = world().await;
        standard_orders(&w).await;
        // 1008: paid, then refunded in full.
        let supp = order(13, "SUPP001", dec!(2), dec!(50.00), None, Some("CODE3"));
        send(&w, "1008", Some(supp), vec![paid(13)]).await;
        send(&w, "1008", None, vec![refund("all", dec!(2))]).await;
        post(&w).await;
        let read = target.connect().await;
        runner(&w, &read).catch_up().await.unwrap();
        let all = everything(&read).await;

        // 1001 (2 units) and 1002 (1 of 2 kept) on the 10th; 1003 was cancelled. 1004 is
        // unattributed and never calculated: classified from the catalog. 1005 is not paid.
        assert_eq!(
            sales_of(&all.sales),
            vec![
                (
                    s("SUPP001/supplements/retail"),
                    d(3, 10),
                    2,
                    2,
                    dec!(3),
                    dec!(150),
                    dec!(75)
                ),
                (
                    s("SUPP001/supplements/retail"),
                    d(3, 11),
                    1,
                    1,
                    dec!(2),
                    dec!(100),
                    dec!(50)
                ),
                (
                    s("KIT-STARTER-001/kits/starter_kit"),
                    d(3, 12),
                    1,
                    1,
                    dec!(1),
                    dec!(100),
                    dec!(50)
                ),
                (
                    s("SUPP001/supplements/retail"),
                    d(3, 13),
                    1,
                    1,
                    dec!(0),
                    dec!(0),
                    dec!(0)
                ),
            ],
            "{label}"
        );

        // Group volume: PV of the due orders whose snapshot gave them a level (1001, 1002 and
        // the fully refunded 1008, worth no PV now, for all four; 1006 for d1 and top).
        assert_eq!(
            months_of(&all.months),
            vec![
                (s("d1"), 1, 1, dec!(50), dec!(125), 4, dec!(11)),
                (s("d2"), 1, 0, dec!(0), dec!(75), 3, dec!(7.50)),
                (s("d3"), 4, 3, dec!(75), dec!(75), 3, dec!(15)),
                (s("top"), 0, 0, dec!(0), dec!(125), 4, dec!(19.50)),
            ],
            "{label}"
        );

        let levels: Vec<_> = all
            .levels
            .iter()
            .map(|r| {
                (
                    r.level,
                    r.commission_class.clone(),
                    r.lines,
                    r.beneficiaries,
                    r.base,
                    r.amount,
                )
            })
            .collect();
        assert_eq!(
            levels,
            vec![
                (1, s("retail"), 2, 2, dec!(150), dec!(15)),
                (1, s("starter_kit"), 1, 1, dec!(100), dec!(5)),
                (2, s("retail"), 2, 2, dec!(150), dec!(7.5)),
                (2, s("starter_kit"), 1, 1, dec!(100), dec!(15)),
                (3, s("retail"), 2, 2, dec!(150), dec!(6)),
                (4, s("retail"), 2, 2, dec!(150), dec!(4.5)),
            ],
            "{label}"
        );

        let orders: Vec<_> = all
            .orders
            .iter()
            .map(|o| {
                (
                    o.order_id.clone(),
                    o.day,
                    o.status.clone(),
                    o.distributor_id.clone(),
                    o.commissions,
                )
            })
            .collect();
        let d3 = Some(s("d3"));
        assert_eq!(
            orders,
            vec![
                (s("1001"), d(3, 10), s("paid"), d3.clone(), dec!(22)),
                (
                    s("1002"),
                    d(3, 10),
                    s("partially_refunded"),
                    d3.clone(),
                    dec!(11)
                ),
                (s("1003"), d(3, 10), s("cancelled"), d3.clone(), dec!(0)),
                (s("1004"), d(3, 11), s("paid"), None, dec!(0)),
                (s("1005"), d(3, 11), s("placed"), Some(s("d2")), dec!(0)),
                (s("3001"), d(3, 11), s("parked"), None, dec!(0)),
                (s("1006"), d(3, 12), s("paid"), Some(s("d1")), dec!(20)),
                (s("1008"), d(3, 13), s("refunded"), d3.clone(), dec!(0)),
            ],
            "{label}"
        );
        let q = BiQuery::new(read.clone());
        let o = q.order(&stream("1002")).await.unwrap().unwrap();
        assert_eq!(
            (
                o.gross,
                o.net,
                o.net_kept,
                o.pv,
                o.commissionable_base,
                o.refunds
            ),
            (dec!(100), dec!(100), dec!(50), dec!(25), dec!(50), 1),
            "{label}"
        );
        assert_eq!(
            (o.tax, o.shipping, o.declared_total),
            (dec!(8), dec!(5), dec!(113))
        );
        assert_eq!(o.paid_at, Some(t(3, 10)));
        assert_eq!(o.placed_at, Some(t(3, 10)));
        assert!(q.order(&stream("3001")).await.unwrap().unwrap().parked);

        // The parked order goes through: d3 gains an order, PV 10 and 4.00.
        resolve_parked(&w).await;
        runner(&w, &read).catch_up().await.unwrap();
        let d3_month = q
            .distributor_months(d(3, 1), d(3, 31), Some("d3"), None, 0)
            .await
            .unwrap()
            .rows;
        assert_eq!(
            months_of(&d3_month),
            vec![(s("d3"), 5, 4, dec!(85), dec!(85), 4, dec!(19))],
            "{label}"
        );
        let o = q.order(&stream("3001")).await.unwrap().unwrap();
        assert_eq!(
            (o.status.as_str(), o.parked, o.pv),
            ("paid", false, dec!(10))
        );
        let beauty = q
            .sales(d(3, 11), d(3, 11), Some("shopify"), None, 0)
            .await
            .unwrap()
            .rows;
        assert_eq!(
            sales_of(&beauty),
            vec![
                (
                    s("BEAUTY02/beauty/retail"),
                    d(3, 11),
                    1,
                    1,
                    dec!(1),
                    dec!(40),
                    dec!(10)
                ),
                (
                    s("SUPP001/supplements/retail"),
                    d(3, 11),
                    1,
                    1,
                    dec!(2),
                    dec!(100),
                    dec!(50)
                ),
            ],
            "{label}"
        );

        // A rebuild gives the same rows.
        let before = everything(&read).await;
        runner(&w, &read).rebuild(Some("bi"), |_| {}).await.unwrap();
        assert_eq!(everything(&read).await, before, "{label}");
        read.close().await;
    })
    .await;
}

#[tokio::test]
async fn bi_queries_filter_and_page() {
    on_every_read_store(|target| async move {
        let label = target.label;
        let w = world().await;
        standard_orders(&w).await;
        let read = target.connect().await;
        runner(&w, &read).catch_up().await.unwrap();
        let q = BiQuery::new(read.clone());

        // Orders two at a time: the same rows as one page, in the same order.
        let whole = q
            .orders(d(3, 1), d(3, 31), &OrderFilter::default(), None, 0)
            .await
            .unwrap()
            .rows;
        assert_eq!(whole.len(), 7, "{label}");
        let mut paged = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = q
                .orders(
                    d(3, 1),
                    d(3, 31),
                    &OrderFilter::default(),
                    token.as_deref(),
                    2,
                )
                .await
                .unwrap();
            assert!(page.rows.len() <= 2);
            paged.extend(page.rows);
            match page.next_page_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        assert_eq!(paged, whole, "{label}");

        let ids = |rows: Vec<OrderRow>| rows.into_iter().map(|o| o.order_id).collect::<Vec<_>>();
        let by_d3 = OrderFilter {
            distributor_id: Some(s("d3")),
            ..OrderFilter::default()
        };
        assert_eq!(
            ids(q
                .orders(d(3, 1), d(3, 31), &by_d3, None, 0)
                .await
                .unwrap()
                .rows),
            vec!["1001", "1002", "1003"]
        );
        let paid_only = OrderFilter {
            status: Some(s("paid")),
            platform: Some(s("shopify")),
            ..OrderFilter::default()
        };
        assert_eq!(
            ids(q
                .orders(d(3, 1), d(3, 31), &paid_only, None, 0)
                .await
                .unwrap()
                .rows),
            vec!["1001", "1004", "1006"]
        );
        assert_eq!(
            ids(q
                .orders(d(3, 11), d(3, 11), &OrderFilter::default(), None, 0)
                .await
                .unwrap()
                .rows),
            vec!["1004", "1005", "3001"]
        );
        let woo = OrderFilter {
            platform: Some(s("woocommerce")),
            ..OrderFilter::default()
        };
        assert!(q
            .orders(d(3, 1), d(3, 31), &woo, None, 0)
            .await
            .unwrap()
            .rows
            .is_empty());

        // Distributor months one at a time, and commissions by level three at a time.
        let mut months = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = q
                .distributor_months(d(3, 1), d(3, 31), None, token.as_deref(), 1)
                .await
                .unwrap();
            months.extend(page.rows.into_iter().map(|r| r.distributor_id));
            match page.next_page_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        assert_eq!(months, vec!["d1", "d2", "d3", "top"], "{label}");
        let first = q
            .commissions_by_level(d(3, 1), d(3, 31), None, 3)
            .await
            .unwrap();
        assert_eq!(first.rows.len(), 3);
        let second = q
            .commissions_by_level(d(3, 1), d(3, 31), first.next_page_token.as_deref(), 3)
            .await
            .unwrap();
        assert_eq!(
            second
                .rows
                .iter()
                .map(|r| (r.level, r.commission_class.as_str()))
                .collect::<Vec<_>>(),
            vec![(2, "starter_kit"), (3, "retail"), (4, "retail")],
            "{label}"
        );
        assert!(second.next_page_token.is_none());
        // Nothing in another month; a forged token is refused.
        assert!(q
            .commissions_by_level(d(4, 1), d(4, 30), None, 0)
            .await
            .unwrap()
            .rows
            .is_empty());
        assert!(q
            .sales(d(3, 1), d(3, 31), None, Some("[1]"), 0)
            .await
            .is_err());
        read.close().await;
    })
    .await;
}
