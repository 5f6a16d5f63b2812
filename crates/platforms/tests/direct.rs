//! upline's own endpoint: the seed's single-line example and its normalised order.

mod support;

use rust_decimal_macros::dec;
use serde_json::{json, Value};
use support::*;
use upline_domain::ids::{LineId, Platform, RefundId};
use upline_domain::money::Currency;
use upline_domain::net::net_lines;
use upline_domain::order::{Refund, RefundLine, RefundScope};
use upline_platforms::model::{Interpretation, OrderFact};
use upline_platforms::{direct, interpret, PayloadError};

fn run(body: &Value) -> Interpretation {
    direct::interpret(&shop(), "", &bytes(body)).expect("interprets")
}

fn err(body: &Value) -> PayloadError {
    direct::interpret(&shop(), "", &bytes(body)).expect_err("must be refused")
}

/// The seed's example, verbatim.
fn seed_example() -> Value {
    serde_json::from_str(
        r#"{"shopify_order_id": "1234", "sku": "A1123", "customer_id": "5678", "referrer_id": "9012", "amount": 99.00}"#,
    )
    .unwrap()
}

/// The seed's normalised order, verbatim.
fn seed_normalized() -> Value {
    serde_json::from_str(
        r#"{"platform": "shopify", "platform_order_id": "587364120", "order_ts": "2025-08-28T08:11:04Z", "status": "paid", "currency": "USD", "distributor_ref": "ABC123", "items": [{"platform_sku": "KIT-STARTER-001", "qty": 1, "unit_price": 99.00}], "total": 96.92}"#,
    )
    .unwrap()
}

#[test]
fn the_seed_example_needs_its_time_and_currency() {
    let e = err(&seed_example());
    assert_eq!(e.field, "order_ts");
    let mut body = seed_example();
    body["order_ts"] = json!("2025-08-28T08:11:04Z");
    let e = err(&body);
    assert_eq!(e.field, "currency");
}

#[test]
fn the_seed_example_is_one_paid_line() {
    let mut body = seed_example();
    body["order_ts"] = json!("2025-08-28T08:11:04Z");
    body["currency"] = json!("USD");
    let update = update(run(&body));
    assert_eq!(update.key.platform, Platform::Direct);
    assert_eq!(update.key.shop, shop());
    assert_eq!(update.key.order_id.as_str(), "1234");
    let order = update.order.unwrap();
    assert_eq!(order.lines.len(), 1);
    let line = &order.lines[0];
    assert_eq!(line.line_id.as_str(), "1");
    assert_eq!(line.platform_sku, "A1123");
    assert_eq!(line.quantity, dec!(1));
    assert_eq!(line.unit_price, dec!(99.00));
    assert_eq!(order.declared_total, dec!(99.00));
    assert_eq!(order.currency, Currency::USD);
    assert_eq!(order.attribution.explicit_ref.as_deref(), Some("9012"));
    assert_eq!(order.attribution.customer_id.as_deref(), Some("5678"));
    assert_eq!(
        update.facts,
        vec![OrderFact::Paid {
            at: at("2025-08-28T08:11:04Z")
        }]
    );
    body["status"] = json!("pending");
    assert!(support::update(run(&body)).facts.is_empty());
}

#[test]
fn the_seed_normalized_order_turns_its_short_total_into_an_order_discount() {
    let update = update(run(&seed_normalized()));
    assert_eq!(update.key.platform, Platform::Shopify);
    assert_eq!(update.key.order_id.as_str(), "587364120");
    let order = update.order.unwrap();
    assert_eq!(order.lines.len(), 1);
    assert_eq!(order.lines[0].line_id.as_str(), "1");
    assert_eq!(order.lines[0].platform_sku, "KIT-STARTER-001");
    assert_eq!(order.lines[0].unit_price, dec!(99.00));
    assert_eq!(order.order_discount, dec!(2.08));
    assert_eq!(order.declared_total, dec!(96.92));
    assert_eq!(order.attribution.explicit_ref.as_deref(), Some("ABC123"));
    assert_eq!(order.placed_at, at("2025-08-28T08:11:04Z"));
    assert_eq!(order.updated_at, order.placed_at);
    let net = net_lines(order.currency, &order.lines, order.order_discount, false).unwrap();
    assert_eq!(net[0].net, dec!(96.92));
    assert_eq!(
        update.facts,
        vec![OrderFact::Paid {
            at: at("2025-08-28T08:11:04Z")
        }]
    );
}

#[test]
fn a_total_above_the_items_is_non_commissionable_charges() {
    let mut body = seed_normalized();
    body["total"] = json!("107.50");
    let order = update(run(&body)).order.unwrap();
    assert_eq!(order.order_discount, dec!(0));
    assert_eq!(order.declared_total, dec!(107.50));
    // Declared shipping and tax are part of what the total must cover.
    body["shipping"] = json!("5.00");
    body["tax"] = json!("8.00");
    body["total"] = json!("110.00");
    let order = support::update(run(&body)).order.unwrap();
    assert_eq!(order.shipping, dec!(5.00));
    assert_eq!(order.tax, dec!(8.00));
    assert_eq!(order.order_discount, dec!(2.00));
    // No total: nothing to compare, no discount.
    body.as_object_mut().unwrap().remove("total");
    let order = support::update(run(&body)).order.unwrap();
    assert_eq!(order.order_discount, dec!(0));
    assert_eq!(order.declared_total, dec!(112.00));
}

#[test]
fn statuses_become_facts() {
    let mut body = seed_normalized();
    body["items"] = json!([
        {"line_id": "a", "platform_sku": "X", "qty": 2, "unit_price": "10.00"},
        {"platform_sku": "Y", "qty": 1, "unit_price": "5.00", "discount": "1.00", "tax": "0.50"}
    ]);
    body["total"] = json!("24.00");
    body["updated_ts"] = json!("2025-09-01T00:00:00Z");
    body["status"] = json!("refunded");
    let update = update(run(&body));
    let order = update.order.as_ref().unwrap();
    assert_eq!(order.lines[1].line_id.as_str(), "2");
    assert_eq!(order.lines[1].discount, dec!(1.00));
    assert_eq!(order.updated_at, at("2025-09-01T00:00:00Z"));
    assert_eq!(
        update.facts,
        vec![
            OrderFact::Paid {
                at: at("2025-08-28T08:11:04Z")
            },
            OrderFact::Refunded(Refund {
                refund_id: RefundId::new("full").unwrap(),
                refunded_at: at("2025-09-01T00:00:00Z"),
                scope: RefundScope::Lines(vec![
                    RefundLine {
                        line_id: LineId::new("a").unwrap(),
                        quantity: dec!(2),
                        stated_net: None,
                    },
                    RefundLine {
                        line_id: LineId::new("2").unwrap(),
                        quantity: dec!(1),
                        stated_net: None,
                    },
                ])
            })
        ]
    );
    body["status"] = json!("Cancelled");
    assert_eq!(
        support::update(run(&body)).facts,
        vec![OrderFact::Cancelled {
            at: at("2025-09-01T00:00:00Z")
        }]
    );
    body["status"] = json!("pending");
    assert!(support::update(run(&body)).facts.is_empty());
}

#[test]
fn errors_name_their_field() {
    let mut body = seed_normalized();
    body["status"] = json!("shipped");
    assert_eq!(err(&body).field, "status");

    let mut body = seed_normalized();
    body["platform"] = json!("etsy");
    assert_eq!(err(&body).field, "platform");

    let mut body = seed_normalized();
    body["items"][0]["qty"] = json!("abc");
    assert_eq!(err(&body).field, "items[0].qty");

    let mut body = seed_normalized();
    body["items"][0]
        .as_object_mut()
        .unwrap()
        .remove("unit_price");
    assert_eq!(err(&body).field, "items[0].unit_price");

    let mut body = seed_normalized();
    body.as_object_mut().unwrap().remove("status");
    assert_eq!(err(&body).field, "status");

    let mut body = seed_normalized();
    body["order_ts"] = json!("28/08/2025");
    assert_eq!(err(&body).field, "order_ts");

    let mut body = seed_example();
    body["order_ts"] = json!("2025-08-28T08:11:04Z");
    body["currency"] = json!("USD");
    body["amount"] = serde_json::from_str("1e2").unwrap();
    assert_eq!(err(&body).field, "amount");

    assert_eq!(err(&json!({"hello": 1})).field, "items");
    assert_eq!(err(&json!([1])).field, "body");
}

#[test]
fn the_top_level_entry_point_dispatches_to_direct() {
    let body = bytes(&seed_normalized());
    assert_eq!(
        interpret(Platform::Direct, &shop(), "orders", &body).unwrap(),
        direct::interpret(&shop(), "", &body).unwrap()
    );
}
