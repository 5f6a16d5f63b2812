//! From real orders to the ledger: orders go through `upline_app::App`, `CommissionPostings`
//! posts to distributor streams, and the ledger projection books them, on both read stores.

mod common;

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use common::*;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use upline_app::{App, AppConfig, CommissionPostings, Provenance};
use upline_domain::catalog::SkuMapping;
use upline_domain::ids::*;
use upline_domain::money::Currency;
use upline_domain::net::OrderLine;
use upline_domain::network::DistributorCommand;
use upline_domain::order::{OrderKey, Refund, RefundLine, RefundScope};
use upline_domain::plan::CommissionPlan;
use upline_domain::snapshot::DistributorStatus;
use upline_platforms::model::{AttributionHints, NormalizedOrder, OrderFact, OrderUpdate};
use upline_projections::{LedgerProjection, LedgerQuery, ProjectionRunner};

fn t(month: u32, day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, month, day, 12, 0, 0)
        .single()
        .unwrap()
}

fn cmd() -> Provenance {
    Provenance::command("test")
}

/// The example plan, a chain top <- d1 <- d2 <- d3 (all gold, active) and a mapped SKU.
async fn seed_company(app: &App) {
    let plan = CommissionPlan::from_toml(include_str!("../../../examples/plan.toml")).unwrap();
    app.company().publish_plan(plan, &cmd()).await.unwrap();
    let mut sponsor: Option<DistributorId> = None;
    for (i, name) in ["top", "d1", "d2", "d3"].iter().enumerate() {
        let id = DistributorId::new(name).unwrap();
        let command = DistributorCommand::RegisterDistributor {
            distributor_id: id.clone(),
            sponsor: sponsor.clone(),
            referral_codes: vec![ReferralCode::new(format!("CODE{i}")).unwrap()],
            country: "US".into(),
            status: DistributorStatus::Active,
            rank: RankName::new("gold").unwrap(),
            joined_at: t(1, 1),
        };
        app.company()
            .execute_network(&command, &cmd())
            .await
            .unwrap();
        sponsor = Some(id);
    }
    let mapping = SkuMapping {
        platform: Platform::Shopify,
        platform_sku: "SUPP001".into(),
        effective_from: t(1, 1),
        sku_id: SkuId::new("SUPP001").unwrap(),
        name: "SUPP001".into(),
        category: "retail".into(),
        commission_class: CommissionClass::new("retail").unwrap(),
        pv_per_unit: None,
        cv_per_unit: None,
    };
    app.company().map_sku(mapping, &cmd()).await.unwrap();
}

fn key(order_id: &str) -> OrderKey {
    OrderKey {
        platform: Platform::Shopify,
        shop: ShopId::new("acme.myshopify.com").unwrap(),
        order_id: PlatformOrderId::new(order_id).unwrap(),
    }
}

fn placed(order_id: &str) -> OrderUpdate {
    OrderUpdate {
        key: key(order_id),
        order: Some(NormalizedOrder {
            placed_at: t(3, 10),
            updated_at: t(3, 10),
            currency: Currency::USD,
            prices_include_tax: false,
            lines: vec![OrderLine {
                line_id: LineId::new("1").unwrap(),
                platform_sku: "SUPP001".into(),
                quantity: dec!(2),
                unit_price: dec!(50.00),
                discount: Decimal::ZERO,
                tax: Decimal::ZERO,
            }],
            order_discount: Decimal::ZERO,
            shipping: dec!(5.00),
            tax: dec!(8.00),
            declared_total: dec!(113.00),
            attribution: AttributionHints {
                explicit_ref: Some("CODE3".into()),
                customer_id: Some("cust-1".into()),
                ..AttributionHints::default()
            },
            test: false,
        }),
        facts: vec![],
    }
}

fn fact(order_id: &str, fact: OrderFact) -> OrderUpdate {
    OrderUpdate {
        key: key(order_id),
        order: None,
        facts: vec![fact],
    }
}

#[tokio::test]
async fn orders_paid_refunded_and_cancelled_are_booked_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store = event_store(dir.path()).await;
    let app = App::open(store.clone(), AppConfig::default())
        .await
        .unwrap();
    seed_company(&app).await;
    // 1001: paid, then one of its two units refunded.
    app.handle_update(&placed("1001"), &cmd(), "test")
        .await
        .unwrap();
    app.handle_update(
        &fact("1001", OrderFact::Paid { at: t(3, 11) }),
        &cmd(),
        "test",
    )
    .await
    .unwrap();
    let refund = OrderFact::Refunded(Refund {
        refund_id: RefundId::new("r1").unwrap(),
        refunded_at: t(3, 20),
        scope: RefundScope::Lines(vec![RefundLine {
            line_id: LineId::new("1").unwrap(),
            quantity: dec!(1),
            stated_net: None,
        }]),
    });
    app.handle_update(&fact("1001", refund), &cmd(), "test")
        .await
        .unwrap();
    // 1002: paid, then cancelled.
    app.handle_update(&placed("1002"), &cmd(), "test")
        .await
        .unwrap();
    app.handle_update(
        &fact("1002", OrderFact::Paid { at: t(3, 12) }),
        &cmd(),
        "test",
    )
    .await
    .unwrap();
    app.handle_update(
        &fact("1002", OrderFact::Cancelled { at: t(3, 13) }),
        &cmd(),
        "test",
    )
    .await
    .unwrap();
    let postings = CommissionPostings::open(store.clone()).await.unwrap();
    postings.catch_up().await.unwrap();

    on_every_read_store(|target| {
        let store = store.clone();
        async move {
            let read = target.connect().await;
            let runner =
                ProjectionRunner::new(store, read.clone(), vec![Arc::new(LedgerProjection)]);
            runner.catch_up().await.unwrap();
            let ledger = LedgerQuery::new(read.clone());
            // Retail on a 100.00 net: d3 10 %, d2 5 %, d1 4 %, top 3 %; half refunded on 1001,
            // all of 1002 cancelled.
            for (distributor, earned, balance) in [
                ("d3", dec!(20.00), dec!(5.00)),
                ("d2", dec!(10.00), dec!(2.50)),
                ("d1", dec!(8.00), dec!(2.00)),
                ("top", dec!(6.00), dec!(1.50)),
            ] {
                let b = ledger.balance(distributor, Some("USD")).await.unwrap();
                assert_eq!(b.len(), 1, "{}: {distributor}", target.label);
                assert_eq!(b[0].earned, earned, "{}: {distributor}", target.label);
                assert_eq!(b[0].balance, balance, "{}: {distributor}", target.label);
                assert_eq!(b[0].reversed, earned - balance);
                assert_eq!(
                    b[0].balance.to_string(),
                    balance.to_string(),
                    "two decimals"
                );
                // Earned twice, reversed twice (the refund, the cancellation).
                assert_eq!(b[0].entries, 4);
            }
            let top = ledger.top_balances(1).await.unwrap();
            assert_eq!(top[0].distributor_id, "d3");
            let statement = ledger.entries("d3", None, 10).await.unwrap();
            assert_eq!(statement.lines.len(), 4);
            assert!(statement.next_page_token.is_none());
            assert_eq!(statement.lines[0].level, Some(1));
            assert!(statement.lines[0].order_stream.ends_with("-1001"));
            let problems = ledger.verify().await.unwrap();
            assert!(problems.is_empty(), "{problems:?}");
            read.close().await;
        }
    })
    .await;
}
