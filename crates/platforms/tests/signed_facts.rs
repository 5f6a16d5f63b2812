//! What every platform's transform shares since issue 7: facts come from the signed body alone,
//! quantities and prices are refused precisely, stated refund nets, and the replay window.

mod support;

use chrono::Duration;
use rust_decimal_macros::dec;
use serde_json::{json, Value};
use support::*;
use upline_domain::ids::Platform;
use upline_domain::order::RefundScope;
use upline_platforms::model::OrderFact;
use upline_platforms::{interpret, replay, woocommerce, PayloadError};

fn field_of(platform: Platform, topic: &str, body: &Value) -> String {
    match interpret(platform, &shop(), topic, &bytes(body)) {
        Err(e) => e.field,
        Ok(other) => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_pending_woocommerce_order_under_every_order_topic_states_no_payment() {
    let mut order = fixture_json("woocommerce_order_created.json");
    order["status"] = json!("pending");
    order["date_paid_gmt"] = Value::Null;
    order["date_paid"] = Value::Null;
    for topic in woocommerce::ORDER_TOPICS {
        let update =
            update(interpret(Platform::Woocommerce, &shop(), topic, &bytes(&order)).unwrap());
        assert_eq!(update.facts, vec![], "{topic}");
    }
}

#[test]
fn a_new_magento_order_under_every_order_event_states_no_payment() {
    let order = fixture_json("magento_order_rest_example.json");
    assert_eq!(order["state"], "new");
    for topic in [
        "sales_order_save_after",
        "observer.sales_order_save_after",
        "sales_order_place_after",
        "order",
    ] {
        let update = update(interpret(Platform::Magento, &shop(), topic, &bytes(&order)).unwrap());
        assert_eq!(update.facts, vec![], "{topic}");
    }
    // Inside a signed envelope the body's own event code routes, whatever the route says.
    let mut envelope = fixture_json("magento_io_events_envelope_sample.json");
    envelope["type"] = json!("com.adobe.commerce.observer.sales_order_save_after");
    envelope["data"]["value"] = order;
    let update = update(
        interpret(
            Platform::Magento,
            &shop(),
            "sales_order_invoice_pay",
            &bytes(&envelope),
        )
        .unwrap(),
    );
    assert!(update.order.is_some());
    assert_eq!(update.facts, vec![]);
}

#[test]
fn woocommerce_refuses_fractional_and_non_positive_quantities() {
    for value in [json!(0), json!(-2), json!(1.5)] {
        let mut order = fixture_json("woocommerce_order_created.json");
        order["line_items"][1]["quantity"] = value.clone();
        assert_eq!(
            field_of(Platform::Woocommerce, "order.created", &order),
            "line_items[1].quantity",
            "{value}"
        );
    }
    let mut order = fixture_json("woocommerce_order_created.json");
    order["line_items"][0]["subtotal"] = json!("-6.00");
    assert_eq!(
        field_of(Platform::Woocommerce, "order.created", &order),
        "line_items[0].subtotal"
    );
}

#[test]
fn magento_refuses_fractional_and_non_positive_quantities_and_negative_prices() {
    for (name, value, field) in [
        ("qty_ordered", json!(0), "items[0].qty_ordered"),
        ("qty_ordered", json!("1.5000"), "items[0].qty_ordered"),
        ("qty_ordered", json!(-1), "items[0].qty_ordered"),
        ("price", json!(-22), "items[0].price"),
    ] {
        let mut order = fixture_json("magento_order_rest_example.json");
        order["items"][0][name] = value.clone();
        assert_eq!(
            field_of(Platform::Magento, "order", &order),
            field,
            "{value}"
        );
    }
    // "2.0000" is two units.
    let mut order = fixture_json("magento_order_rest_example.json");
    order["items"][0]["qty_ordered"] = json!("2.0000");
    let lines = update(interpret(Platform::Magento, &shop(), "order", &bytes(&order)).unwrap())
        .order
        .unwrap()
        .lines;
    assert_eq!(lines[0].quantity, dec!(2));
}

#[test]
fn the_seed_endpoint_refuses_fractional_and_non_positive_quantities_and_negative_prices() {
    let normalised = || {
        json!({"platform": "shopify", "platform_order_id": "587364120",
               "order_ts": "2025-08-28T08:11:04Z", "status": "paid", "currency": "USD",
               "items": [{"platform_sku": "KIT-STARTER-001", "qty": 1, "unit_price": 99.00}]})
    };
    for (name, value, field) in [
        ("qty", json!(0), "items[0].qty"),
        ("qty", json!(1.5), "items[0].qty"),
        ("qty", json!(-1), "items[0].qty"),
        ("unit_price", json!(-99), "items[0].unit_price"),
    ] {
        let mut body = normalised();
        body["items"][0][name] = value.clone();
        assert_eq!(field_of(Platform::Direct, "", &body), field, "{value}");
    }
    let single = json!({"shopify_order_id": "1234", "sku": "A1123", "amount": -99.00,
                        "order_ts": "2025-08-28T08:11:04Z", "currency": "USD"});
    assert_eq!(field_of(Platform::Direct, "", &single), "amount");
}

/// A credit memo row states its refunded net: `row_total` (without tax) less its discount net
/// of the discount's hidden tax. The row fields are those of Adobe Commerce's
/// `sales-data-creditmemo-item-interface`; the order is the documentation sample's.
#[test]
fn magento_credit_memo_rows_state_their_refunded_net() {
    let memo = json!({
        "entity_id": 7, "order_id": 3, "state": 2, "created_at": "2017-08-22 10:00:00",
        "items": [
            {"order_item_id": 3, "qty": 1, "price": 22, "row_total": 22,
             "discount_amount": 2.2, "discount_tax_compensation_amount": 0.2,
             "tax_amount": 1.82, "row_total_incl_tax": 23.82},
            {"order_item_id": 4, "qty": 2, "price": 10}
        ]
    });
    let update =
        update(interpret(Platform::Magento, &shop(), "creditmemo", &bytes(&memo)).unwrap());
    let [OrderFact::Refunded(refund)] = update.facts.as_slice() else {
        panic!("{:?}", update.facts)
    };
    let RefundScope::Lines(lines) = &refund.scope else {
        panic!("{:?}", refund.scope)
    };
    assert_eq!(lines[0].stated_net, Some(dec!(20.0)));
    assert_eq!(
        lines[1].stated_net, None,
        "no row_total: allocated by quantity"
    );

    let mut fractional = memo.clone();
    fractional["items"][0]["qty"] = json!(0.5);
    assert_eq!(
        field_of(Platform::Magento, "creditmemo", &fractional),
        "items[0].qty"
    );
}

#[test]
fn woocommerce_refunds_state_only_an_amount() {
    let mut order = fixture_json("woocommerce_order_updated.json");
    order["refunds"] = json!([{"id": 726, "total": "-10.00"}]);
    let update = update(
        interpret(
            Platform::Woocommerce,
            &shop(),
            "order.updated",
            &bytes(&order),
        )
        .unwrap(),
    );
    assert!(update.facts.iter().any(|f| matches!(
        f,
        OrderFact::Refunded(r) if matches!(r.scope, RefundScope::NetAmount(_))
    )));
}

fn no_headers(_: &str) -> Option<String> {
    None
}

fn check(
    platform: Platform,
    header: &dyn Fn(&str) -> Option<String>,
    body: &Value,
    now: &str,
) -> Result<(), PayloadError> {
    replay::check(platform, header, &bytes(body), at(now), Duration::hours(72))
}

#[test]
fn each_platform_is_within_the_window_by_its_own_signed_time() {
    let woo = fixture_json("woocommerce_order_created.json"); // 2017-03-22T19:28:08
    assert!(check(
        Platform::Woocommerce,
        &no_headers,
        &woo,
        "2017-03-24T19:28:08Z"
    )
    .is_ok());
    let stale = check(
        Platform::Woocommerce,
        &no_headers,
        &woo,
        "2017-03-25T19:28:09Z",
    )
    .expect_err("older than 72 h");
    assert_eq!(stale.field, "date_modified_gmt");
    assert!(stale.message.contains("replay window"), "{stale}");

    let magento = fixture_json("magento_order_rest_example.json"); // 2017-08-21 22:22:20
    assert!(check(
        Platform::Magento,
        &no_headers,
        &magento,
        "2017-08-22T00:00:00Z"
    )
    .is_ok());
    assert_eq!(
        check(
            Platform::Magento,
            &no_headers,
            &magento,
            "2017-09-01T00:00:00Z"
        )
        .unwrap_err()
        .field,
        "updated_at"
    );
    let envelope = fixture_json("magento_io_events_envelope_sample.json"); // 2025-07-17T15:48
    assert!(check(
        Platform::Magento,
        &no_headers,
        &envelope,
        "2025-07-18T00:00:00Z"
    )
    .is_ok());
    assert_eq!(
        check(
            Platform::Magento,
            &no_headers,
            &envelope,
            "2025-08-18T00:00:00Z"
        )
        .unwrap_err()
        .field,
        "time"
    );

    let seed = json!({"platform": "shopify", "platform_order_id": "1", "status": "paid",
                      "order_ts": "2025-08-28T08:11:04Z", "currency": "USD", "items": []});
    assert!(check(Platform::Direct, &no_headers, &seed, "2025-08-29T00:00:00Z").is_ok());
    assert_eq!(
        check(Platform::Direct, &no_headers, &seed, "2025-09-29T00:00:00Z")
            .unwrap_err()
            .field,
        "order_ts"
    );
}

/// Shopify's `X-Shopify-Triggered-At` is not signed: old or unreadable it parks the delivery,
/// but fresh it never makes an old signed body acceptable.
#[test]
fn shopify_triggered_at_can_only_make_a_delivery_more_suspicious() {
    let order = fixture_json("shopify_orders_paid.json"); // updated_at 2022-01-01T00:00:00Z
    let now = "2022-01-02T00:00:00Z";
    assert!(check(Platform::Shopify, &no_headers, &order, now).is_ok());
    let header = |value: &'static str| {
        move |name: &str| (name == "x-shopify-triggered-at").then(|| value.to_string())
    };
    assert!(check(
        Platform::Shopify,
        &header("2022-01-01T23:00:00Z"),
        &order,
        now
    )
    .is_ok());
    let old = check(
        Platform::Shopify,
        &header("2021-12-01T00:00:00Z"),
        &order,
        now,
    )
    .unwrap_err();
    assert_eq!(old.field, "X-Shopify-Triggered-At");
    let unreadable = check(Platform::Shopify, &header("yesterday"), &order, now).unwrap_err();
    assert_eq!(unreadable.field, "X-Shopify-Triggered-At");
    // A fresh header does not rescue a body signed long ago.
    let later = "2022-02-01T00:00:00Z";
    let stale = check(
        Platform::Shopify,
        &header("2022-01-31T23:59:00Z"),
        &order,
        later,
    )
    .unwrap_err();
    assert_eq!(stale.field, "updated_at");
    // A refund body has only its creation time.
    let refund = fixture_json("shopify_refunds_create.json");
    assert!(check(Platform::Shopify, &no_headers, &refund, now).is_ok());
}

#[test]
fn a_delivery_whose_time_is_missing_or_not_a_timestamp_is_unreadable() {
    let mut woo = fixture_json("woocommerce_order_created.json");
    woo["date_modified_gmt"] = json!(12);
    let e = check(
        Platform::Woocommerce,
        &no_headers,
        &woo,
        "2017-03-23T00:00:00Z",
    )
    .unwrap_err();
    assert_eq!(e.field, "date_modified_gmt");
    woo["date_modified_gmt"] = Value::Null;
    woo["date_modified"] = Value::Null;
    let e = check(
        Platform::Woocommerce,
        &no_headers,
        &woo,
        "2017-03-23T00:00:00Z",
    )
    .unwrap_err();
    assert_eq!(e.field, "date_modified_gmt");
    assert!(e.message.contains("required"), "{e}");
    woo["date_modified_gmt"] = json!("last tuesday");
    let e = check(
        Platform::Woocommerce,
        &no_headers,
        &woo,
        "2017-03-23T00:00:00Z",
    )
    .unwrap_err();
    assert_eq!(e.field, "date_modified_gmt");
}
