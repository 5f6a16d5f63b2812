//! A company and its orders, driven through the real application (`upline_app::App` and
//! `CommissionPostings` on a `SqliteEventStore`), so that the events the reconciliation and BI
//! projections read are the ones production writes. Included by `reconciliation.rs` and `bi.rs`
//! (`#[path]`); on its own it has no tests.
#![allow(dead_code)]

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use upline_app::{streams, App, AppConfig, CommissionPostings, Provenance, UpdateOutcome};
use upline_domain::catalog::SkuMapping;
use upline_domain::ids::*;
use upline_domain::money::Currency;
use upline_domain::net::OrderLine;
use upline_domain::network::DistributorCommand;
use upline_domain::order::{OrderKey, Refund, RefundLine, RefundScope};
use upline_domain::plan::CommissionPlan;
use upline_domain::snapshot::DistributorStatus;
use upline_platforms::model::{AttributionHints, NormalizedOrder, OrderFact, OrderUpdate};
use upline_store::{EventStore, SqliteEventStore};

pub const SHOP: &str = "acme.myshopify.com";

pub fn t(month: u32, day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, month, day, 12, 0, 0)
        .single()
        .unwrap()
}

pub fn cmd() -> Provenance {
    Provenance::command("test")
}

/// An event store in a tempdir and the application over it.
pub struct World {
    pub dir: tempfile::TempDir,
    pub store: Arc<dyn EventStore>,
    pub app: App,
}

/// The example plan; top <- d1 <- d2 <- d3 (gold, active); SUPP001 (retail, PV 25 a unit) and
/// KIT-STARTER-001 (starter kit, PV 50) mapped on Shopify.
pub async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn EventStore> = Arc::new(
        SqliteEventStore::open(&dir.path().join("events.sqlite"))
            .await
            .unwrap(),
    );
    let app = App::open(store.clone(), AppConfig::default())
        .await
        .unwrap();
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
    map_sku(&app, "SUPP001", "retail", "supplements", dec!(25)).await;
    map_sku(&app, "KIT-STARTER-001", "starter_kit", "kits", dec!(50)).await;
    World { dir, store, app }
}

pub async fn map_sku(app: &App, sku: &str, class: &str, category: &str, pv: Decimal) {
    let mapping = SkuMapping {
        platform: Platform::Shopify,
        platform_sku: sku.into(),
        effective_from: t(1, 1),
        sku_id: SkuId::new(sku).unwrap(),
        name: sku.into(),
        category: category.into(),
        commission_class: CommissionClass::new(class).unwrap(),
        pv_per_unit: Some(pv),
        cv_per_unit: None,
    };
    app.company().map_sku(mapping, &cmd()).await.unwrap();
}

pub fn key(order_id: &str) -> OrderKey {
    OrderKey {
        platform: Platform::Shopify,
        shop: ShopId::new(SHOP).unwrap(),
        order_id: PlatformOrderId::new(order_id).unwrap(),
    }
}

pub fn stream(order_id: &str) -> String {
    streams::order(&key(order_id))
}

/// An order of `quantity` x `price` of `sku` placed on March `day`, with 5.00 shipping and
/// 8.00 tax on top, declaring `declared` (None: the right total), credited to `reference`.
pub fn order(
    day: u32,
    sku: &str,
    quantity: Decimal,
    price: Decimal,
    declared: Option<Decimal>,
    reference: Option<&str>,
) -> NormalizedOrder {
    NormalizedOrder {
        placed_at: t(3, day),
        updated_at: t(3, day),
        currency: Currency::USD,
        prices_include_tax: false,
        lines: vec![OrderLine {
            line_id: LineId::new("1").unwrap(),
            platform_sku: sku.into(),
            quantity,
            unit_price: price,
            discount: Decimal::ZERO,
            tax: Decimal::ZERO,
        }],
        order_discount: Decimal::ZERO,
        shipping: dec!(5.00),
        tax: dec!(8.00),
        declared_total: declared.unwrap_or(quantity * price + dec!(13.00)),
        attribution: AttributionHints {
            explicit_ref: reference.map(str::to_string),
            customer_id: None,
            ..AttributionHints::default()
        },
        test: false,
    }
}

pub fn paid(day: u32) -> OrderFact {
    OrderFact::Paid { at: t(3, day) }
}

pub fn refund(id: &str, quantity: Decimal) -> OrderFact {
    OrderFact::Refunded(Refund {
        refund_id: RefundId::new(id).unwrap(),
        refunded_at: t(3, 20),
        scope: RefundScope::Lines(vec![RefundLine {
            line_id: LineId::new("1").unwrap(),
            quantity,
            stated_net: None,
        }]),
    })
}

pub async fn send(
    w: &World,
    order_id: &str,
    order: Option<NormalizedOrder>,
    facts: Vec<OrderFact>,
) -> UpdateOutcome {
    let update = OrderUpdate {
        key: key(order_id),
        order,
        facts,
    };
    w.app.handle_update(&update, &cmd(), "test").await.unwrap()
}

/// Writes every commission posting due so far.
pub async fn post(w: &World) {
    CommissionPostings::open(w.store.clone())
        .await
        .unwrap()
        .catch_up()
        .await
        .unwrap();
}

/// The standard set of orders (all Shopify, shop acme, USD):
///
/// | order | day | what | commissions held |
/// |---|---|---|---|
/// | 1001 | 03-10 | 2 x 50.00 SUPP001, paid, CODE3 (d3) | d3 10, d2 5, d1 4, top 3 |
/// | 1002 | 03-10 | same, one unit refunded | d3 5, d2 2.50, d1 2, top 1.50 |
/// | 1003 | 03-10 | same, paid then cancelled | nothing |
/// | 1004 | 03-11 | 2 x 50.00 SUPP001, paid, unattributed | nothing |
/// | 1005 | 03-11 | 2 x 50.00 SUPP001, CODE2 (d2), not paid | nothing |
/// | 3001 | 03-11 | 1 x 40.00 BEAUTY02 (unmapped), paid, CODE3: parked | - |
/// | 1006 | 03-12 | 1 x 100.00 KIT-STARTER-001, paid, CODE1 (d1), declares 112.50 instead of 113.00 | d1 5, top 15 |
///
/// Postings are written for all of them.
pub async fn standard_orders(w: &World) {
    let supp = |day, reference| order(day, "SUPP001", dec!(2), dec!(50.00), None, reference);
    send(w, "1001", Some(supp(10, Some("CODE3"))), vec![paid(10)]).await;
    send(w, "1002", Some(supp(10, Some("CODE3"))), vec![paid(10)]).await;
    send(w, "1002", None, vec![refund("r1", dec!(1))]).await;
    send(w, "1003", Some(supp(10, Some("CODE3"))), vec![paid(10)]).await;
    send(w, "1003", None, vec![OrderFact::Cancelled { at: t(3, 12) }]).await;
    send(w, "1004", Some(supp(11, None)), vec![paid(11)]).await;
    send(w, "1005", Some(supp(11, Some("CODE2"))), vec![]).await;
    let parked = send(
        w,
        "3001",
        Some(order(
            11,
            "BEAUTY02",
            dec!(1),
            dec!(40.00),
            None,
            Some("CODE3"),
        )),
        vec![paid(11)],
    )
    .await;
    assert!(matches!(parked, UpdateOutcome::Parked { .. }), "{parked:?}");
    send(
        w,
        "1006",
        Some(order(
            12,
            "KIT-STARTER-001",
            dec!(1),
            dec!(100.00),
            Some(dec!(112.50)),
            Some("CODE1"),
        )),
        vec![paid(12)],
    )
    .await;
    post(w).await;
}

/// Maps BEAUTY02 (retail, PV 10) and retries order 3001: d3 10 % of 40.00 = 4.00, d2 2.00,
/// d1 1.60, top 1.20. Postings are written.
pub async fn resolve_parked(w: &World) {
    map_sku(&w.app, "BEAUTY02", "retail", "beauty", dec!(10)).await;
    let outcome = w.app.retry_parked(&stream("3001"), &cmd()).await.unwrap();
    assert!(
        matches!(outcome, UpdateOutcome::Recorded { .. }),
        "{outcome:?}"
    );
    post(w).await;
}
