//! What the transforms produce is accepted by the order aggregate as it stands: the order
//! records, every fact records once, and the same delivery replayed changes nothing. Orders are
//! unattributed here, so no plan, catalog or hierarchy is consulted.

mod support;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::json;
use support::*;
use upline_domain::catalog::SkuMapping;
use upline_domain::ids::{DistributorId, Platform};
use upline_domain::order::{
    decide, evolve, CalculationContext, OrderCommand, OrderDetails, OrderEvent, OrderState,
    PlanSource, RefundScope,
};
use upline_domain::plan::CommissionPlan;
use upline_domain::snapshot::{HierarchySnapshot, SnapshotRequest};
use upline_platforms::interpret;
use upline_platforms::model::{OrderFact, OrderUpdate};

struct NoCompany;

impl PlanSource for NoCompany {
    fn plan(&self, _: &str) -> Option<&CommissionPlan> {
        None
    }
}

impl CalculationContext for NoCompany {
    fn plan_in_force(&self, _: DateTime<Utc>) -> Option<&CommissionPlan> {
        None
    }
    fn sku_mapping(&self, _: Platform, _: &str, _: DateTime<Utc>) -> Option<&SkuMapping> {
        None
    }
    fn snapshot(
        &self,
        _: &DistributorId,
        _: DateTime<Utc>,
        _: &SnapshotRequest,
    ) -> Result<HierarchySnapshot, String> {
        Err("not used".into())
    }
}

fn commands(update: &OrderUpdate) -> Vec<OrderCommand> {
    let mut commands = Vec::new();
    if let Some(order) = &update.order {
        commands.push(OrderCommand::RecordOrder(OrderDetails {
            key: update.key.clone(),
            placed_at: order.placed_at,
            updated_at: order.updated_at,
            currency: order.currency,
            distributor: None,
            prices_include_tax: order.prices_include_tax,
            lines: order.lines.clone(),
            order_discount: order.order_discount,
            shipping: order.shipping,
            tax: order.tax,
            declared_total: order.declared_total,
            test: false,
        }));
    }
    for fact in &update.facts {
        commands.push(match fact {
            OrderFact::Paid { at } => OrderCommand::RecordPayment { paid_at: *at },
            OrderFact::Cancelled { at } => OrderCommand::RecordCancellation { cancelled_at: *at },
            OrderFact::Refunded(refund) => OrderCommand::RecordRefund(refund.clone()),
        });
    }
    commands
}

/// Applies every update in turn; returns the state and how many events each update produced.
fn apply(updates: &[OrderUpdate]) -> (OrderState, Vec<usize>) {
    let mut state = OrderState::default();
    let mut counts = Vec::new();
    for update in updates {
        let mut n = 0;
        for command in commands(update) {
            let events: Vec<OrderEvent> = decide(&state, &update.key, &command, &NoCompany)
                .unwrap_or_else(|e| panic!("{command:?} refused: {e}"));
            n += events.len();
            for event in &events {
                evolve(&mut state, event);
            }
        }
        counts.push(n);
    }
    (state, counts)
}

#[test]
fn a_shopify_order_and_its_refund_record_once() {
    let mut order = unwrapped("shopify_rest_order_fixture_450789469.json", "order");
    order["financial_status"] = json!("paid");
    let order =
        update(interpret(Platform::Shopify, &shop(), "orders/paid", &bytes(&order)).unwrap());
    let refund = unwrapped("shopify_rest_refund_fixture_509562969.json", "refund");
    let refund = update(
        interpret(
            Platform::Shopify,
            &shop(),
            "refunds/create",
            &bytes(&refund),
        )
        .unwrap(),
    );
    let (state, counts) = apply(&[order.clone(), refund.clone(), order, refund]);
    assert_eq!(counts, [2, 1, 0, 0]);
    assert!(state.paid_at.is_some());
    assert_eq!(state.refunds.len(), 1);
}

#[test]
fn woocommerce_states_with_refunds_record_once_and_stay_within_the_net() {
    let created = update(
        interpret(
            Platform::Woocommerce,
            &shop(),
            "order.created",
            &fixture("woocommerce_order_created.json"),
        )
        .unwrap(),
    );
    let mut later = fixture_json("woocommerce_order_updated.json");
    later["status"] = json!("refunded");
    later["refunds"] = json!([
        {"id": 801, "total": "-10.00"},
        {"id": 802, "total": "-10.00"},
        {"id": 803, "total": "-9.35"}
    ]);
    let later = update(
        interpret(
            Platform::Woocommerce,
            &shop(),
            "order.updated",
            &bytes(&later),
        )
        .unwrap(),
    );
    let (state, counts) = apply(&[created.clone(), later.clone(), created, later]);
    // Placed + paid; then revised + three refunds; then nothing.
    assert_eq!(counts, [2, 4, 0, 0]);
    let refunded: Decimal = state
        .refunds
        .values()
        .map(|r| match r.scope {
            RefundScope::NetAmount(x) => x,
            RefundScope::Lines(_) => Decimal::ZERO,
        })
        .sum();
    let net: Decimal = state.net_lines.iter().map(|l| l.net).sum();
    assert_eq!(refunded, net);
}

#[test]
fn a_magento_order_and_credit_memo_of_collapsed_rows_are_consistent() {
    let mut order = fixture_json("magento_order_rest_example.json");
    order["state"] = json!("complete");
    order["items"] = json!([
        {"item_id": 10, "product_type": "configurable", "sku": "C", "qty_ordered": 2, "price": 52},
        {"item_id": 11, "parent_item_id": 10, "sku": "C", "qty_ordered": 2, "price": 0},
        {"item_id": 20, "product_type": "bundle", "sku": "B", "qty_ordered": 1, "price": 0},
        {"item_id": 21, "parent_item_id": 20, "sku": "B1", "qty_ordered": 1, "price": 40}
    ]);
    let memo = json!({"entity_id": 9, "order_id": 3, "state": 2, "created_at": "2017-08-23 09:30:00",
    "items": [
        {"order_item_id": 10, "qty": 1, "price": 52},
        {"order_item_id": 11, "qty": 1, "price": 0},
        {"order_item_id": 20, "qty": 1, "price": 0},
        {"order_item_id": 21, "qty": 1, "price": 40}
    ]});
    let order = update(interpret(Platform::Magento, &shop(), "order", &bytes(&order)).unwrap());
    let memo = update(interpret(Platform::Magento, &shop(), "creditmemo", &bytes(&memo)).unwrap());
    let (state, counts) = apply(&[order, memo.clone(), memo]);
    assert_eq!(counts, [2, 1, 0]);
    assert_eq!(state.refunds.len(), 1);
}

#[test]
fn a_direct_refunded_order_records_once() {
    let body = bytes(&json!({"platform": "direct", "platform_order_id": "77",
        "order_ts": "2025-08-28T08:11:04Z", "status": "refunded", "currency": "USD",
        "items": [{"platform_sku": "K", "qty": 2, "unit_price": "9.00"}], "total": "17.00"}));
    let order = update(interpret(Platform::Direct, &shop(), "", &body).unwrap());
    let (state, counts) = apply(&[order.clone(), order]);
    assert_eq!(counts, [3, 0]);
    assert_eq!(state.refunds.len(), 1);
}
