//! The ledger, reconciliation and BI methods over the projections' read store.

use tonic::Code;
use upline_api::pb;

use crate::harness::*;

#[tokio::test]
async fn balances_entries_commissions_reconciliation_and_bi() {
    let server = Server::start().await;
    let mut commands = server.operator().await;
    let mut queries = server.queries(Some(DASHBOARD)).await;
    seed(&mut commands).await;

    // 6001: 2 x 19.80 pays 11043 3.96, 10090 1.19, 10002 0.40; 6002: 1 x 19.80 pays 1.98,
    // 0.59, 0.20. Refunding one unit of 6001 takes back 1.98, 0.60 and 0.20.
    commands
        .submit_order(order("6001", "2", None))
        .await
        .unwrap();
    commands
        .submit_order(order("6002", "1", None))
        .await
        .unwrap();
    commands
        .refund_order(pb::RefundOrderRequest {
            order: Some(key("6001")),
            refund_id: "r-6001".into(),
            refunded_at: "2026-03-20T09:00:00Z".into(),
            lines: vec![pb::RefundLine {
                line_id: "1".into(),
                quantity: "1".into(),
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    server.project(9).await;

    let balance = queries
        .get_balance(pb::GetBalanceRequest {
            distributor_id: "11043".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(balance.balances.len(), 1);
    let usd = &balance.balances[0];
    assert_eq!(
        (
            amount(&usd.earned),
            amount(&usd.reversed),
            amount(&usd.paid),
            amount(&usd.balance),
            usd.entries
        ),
        (
            "5.94 USD".to_string(),
            "1.98 USD".to_string(),
            "0.00 USD".to_string(),
            "3.96 USD".to_string(),
            3
        )
    );
    let balance = queries
        .get_balance(pb::GetBalanceRequest {
            distributor_id: "10090".into(),
            currency: "usd".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(amount(&balance.balances[0].balance), "1.18 USD");
    // Registered, never paid anything: no balance, not an error.
    let balance = queries
        .get_balance(pb::GetBalanceRequest {
            distributor_id: "11044".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(balance.balances.is_empty());
    let error = queries
        .get_balance(pb::GetBalanceRequest {
            distributor_id: "404".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound);

    // The journal, paged.
    let first = queries
        .list_ledger_entries(pb::ListLedgerEntriesRequest {
            distributor_id: "11043".into(),
            page_size: 2,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.entries.len(), 2);
    assert!(!first.next_page_token.is_empty());
    let rest = queries
        .list_ledger_entries(pb::ListLedgerEntriesRequest {
            distributor_id: "11043".into(),
            page_size: 2,
            page_token: first.next_page_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(rest.next_page_token.is_empty());
    let journal: Vec<(i32, String, String)> = first
        .entries
        .iter()
        .chain(&rest.entries)
        .map(|e| (e.kind, e.order_stream.clone(), amount(&e.amount)))
        .collect();
    let (earned, reversed) = (
        pb::LedgerEntryKind::Earned as i32,
        pb::LedgerEntryKind::Reversed as i32,
    );
    assert_eq!(
        journal,
        [
            (earned, stream("6001"), "3.96 USD".to_string()),
            (earned, stream("6002"), "1.98 USD".to_string()),
            (reversed, stream("6001"), "1.98 USD".to_string()),
        ]
    );
    assert_eq!(
        (
            rest.entries[0].debit_account.as_str(),
            rest.entries[0].credit_account.as_str()
        ),
        ("payable:11043", "commission_expense")
    );
    let error = queries
        .list_ledger_entries(pb::ListLedgerEntriesRequest {
            distributor_id: "11043".into(),
            page_size: 2,
            page_token: "forged".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(error.message().starts_with("page_token:"));

    // Per order.
    let commissions = queries
        .list_commissions(pb::ListCommissionsRequest {
            distributor_id: "11043".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .commissions;
    let rows: Vec<(String, u32, String, String, String, u32)> = commissions
        .iter()
        .map(|c| {
            (
                c.order_stream.clone(),
                c.level,
                amount(&c.earned),
                amount(&c.reversed),
                amount(&c.net),
                c.postings,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (
                stream("6001"),
                1,
                "3.96 USD".into(),
                "1.98 USD".into(),
                "1.98 USD".into(),
                2
            ),
            (
                stream("6002"),
                1,
                "1.98 USD".into(),
                "0.00 USD".into(),
                "1.98 USD".into(),
                1
            ),
        ]
    );

    // Reconciliation: expected (recomputed from the snapshots) = posted, to the cent.
    let reconciliation = queries
        .get_reconciliation(pb::GetReconciliationRequest {
            from_day: "2026-03-01".into(),
            to_day: "2026-03-31".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reconciliation.days.len(), 1);
    let day = &reconciliation.days[0];
    assert_eq!(
        (day.day.as_str(), day.platform, day.shop.as_str()),
        ("2026-03-10", pb::Platform::Shopify as i32, SHOP)
    );
    assert_eq!(
        (day.orders, day.orders_paid, day.orders_refunded),
        (2, 2, 1)
    );
    assert_eq!(amount(&day.commission_expected), "5.54 USD");
    assert_eq!(amount(&day.commission_posted), "5.54 USD");
    assert_eq!(amount(&day.commission_delta), "0.00 USD");
    assert_eq!(amount(&day.declared_delta), "0.00 USD");
    assert_eq!(reconciliation.totals.len(), 1);
    assert!(reconciliation.differences.is_empty());
    let error = queries
        .get_reconciliation(pb::GetReconciliationRequest {
            from_day: "2026-03".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(error.message().starts_with("from_day:"));

    // BI tables.
    let sales = queries
        .list_sales_by_day(pb::ListSalesByDayRequest {
            from_day: "2026-03-01".into(),
            to_day: "2026-03-31".into(),
            platform: pb::Platform::Shopify as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .rows;
    assert_eq!(sales.len(), 1);
    assert_eq!(
        (
            sales[0].sku_id.as_str(),
            sales[0].commission_class.as_str(),
            sales[0].orders,
            sales[0].quantity.as_str(),
            amount(&sales[0].net)
        ),
        ("SUPP001", "retail", 2, "2", "39.60 USD".to_string())
    );
    let months = queries
        .list_distributor_months(pb::ListDistributorMonthsRequest {
            distributor_id: "11043".into(),
            from_month: "2026-03".into(),
            to_month: "2026-03".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .rows;
    assert_eq!(months.len(), 1);
    assert_eq!(
        (months[0].orders, amount(&months[0].commissions)),
        (2, "3.96 USD".to_string())
    );
    let by_level = queries
        .list_commissions_by_month(pb::ListCommissionsByMonthRequest {
            from_month: "2026-03".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .rows;
    // Only the levels that paid: 10777 (level 2) and 10500 (3) rank too low, 10010 (5) too.
    let levels: Vec<u32> = by_level.iter().map(|r| r.level).collect();
    assert_eq!(levels, [1, 4, 6]);
    let orders = queries
        .list_order_summaries(pb::ListOrderSummariesRequest {
            status: pb::OrderStatus::PartiallyRefunded as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .rows;
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].order_stream, stream("6001"));
    assert_eq!(orders[0].key, Some(key("6001")));
    assert_eq!(orders[0].distributor_id, "11043");
    assert_eq!(amount(&orders[0].commissions), "2.77 USD");

    server.stop().await;
}
