//! Shopify payloads: the documentation's and the SDK's own samples, plus targeted variants.

mod support;

use rust_decimal_macros::dec;
use serde_json::{json, Value};
use support::*;
use upline_domain::ids::{LineId, Platform, RefundId};
use upline_domain::money::Currency;
use upline_domain::order::{Refund, RefundLine, RefundScope};
use upline_platforms::model::{Interpretation, OrderFact};
use upline_platforms::{interpret, shopify};

fn run(topic: &str, body: &[u8]) -> Interpretation {
    shopify::interpret(&shop(), topic, body).expect("interprets")
}

fn err(topic: &str, body: &[u8]) -> upline_platforms::PayloadError {
    shopify::interpret(&shop(), topic, body).expect_err("must be refused")
}

/// A small modern order webhook body to vary.
fn order() -> Value {
    json!({
        "id": 5001,
        "created_at": "2025-03-01T10:00:00+01:00",
        "updated_at": "2025-03-01T10:05:00+01:00",
        "processed_at": "2025-03-01T10:00:30+01:00",
        "cancelled_at": null,
        "currency": "EUR",
        "taxes_included": true,
        "financial_status": "paid",
        "total_price": "108.00",
        "total_tax": "18.00",
        "total_shipping_price_set": {"shop_money": {"amount": "8.00", "currency_code": "EUR"}},
        "discount_codes": [{"code": "ANNA10", "amount": "10.00", "type": "fixed_amount"}],
        "note_attributes": [{"name": "ref", "value": "LOW"}, {"name": "distributor_ref", "value": " ABC123 "}],
        "landing_site": "/products/kit?utm_source=x&ref=LAND42",
        "customer": {"id": 9007199254740993u64},
        "line_items": [
            {
                "id": 1,
                "sku": "KIT-1",
                "variant_id": 111,
                "quantity": 2,
                "price": "50.00",
                "discount_allocations": [{"amount": "6.00"}, {"amount": "4.00"}],
                "tax_lines": [{"price": "12.00", "rate": 0.2}, {"price": "3.00", "rate": 0.05}]
            },
            {
                "id": 2,
                "sku": "",
                "variant_id": 222,
                "quantity": 1,
                "price": "10.00",
                "discount_allocations": [],
                "tax_lines": [{"price": "3.00"}]
            }
        ],
        "shipping_lines": [{"price": "99.00"}],
        "refunds": []
    })
}

#[test]
fn documentation_orders_paid_sample_parses_exactly() {
    let body = fixture("shopify_orders_paid.json");
    let update = update(run("orders/paid", &body));
    assert_eq!(update.key.platform, Platform::Shopify);
    assert_eq!(update.key.shop, shop());
    // Above 2^53, kept digit for digit as the payload wrote it.
    assert_eq!(update.key.order_id.as_str(), "820982911946154500");
    let order = update.order.expect("order content");
    let ids: Vec<&str> = order.lines.iter().map(|l| l.line_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "487817672276298560",
            "789012345678901200",
            "890123456789012400",
            "976318377106520300",
            "315789986012684400"
        ]
    );
    let skus: Vec<&str> = order
        .lines
        .iter()
        .map(|l| l.platform_sku.as_str())
        .collect();
    assert_eq!(
        skus,
        [
            "SKU2006-001",
            "LENS-PROTECT-2YR",
            "CASE-LEATHER-PREM",
            "SKU2006-020",
            "SKU2006-035"
        ]
    );
    let prices: Vec<_> = order.lines.iter().map(|l| l.unit_price).collect();
    assert_eq!(
        prices,
        [
            dec!(89.99),
            dec!(19.99),
            dec!(24.99),
            dec!(159.99),
            dec!(119.99)
        ]
    );
    assert!(order.lines.iter().all(|l| l.quantity == dec!(1)));
    assert!(order
        .lines
        .iter()
        .all(|l| l.discount.is_zero() && l.tax.is_zero()));
    assert_eq!(order.currency, Currency::USD);
    assert!(!order.prices_include_tax);
    // Shipping and tax stay apart from the lines.
    assert_eq!(order.shipping, dec!(10.00));
    assert_eq!(order.tax, dec!(0.00));
    assert_eq!(order.declared_total, dec!(404.95));
    assert_eq!(order.order_discount, dec!(0));
    assert_eq!(order.placed_at, at("2022-01-01T00:00:00Z"));
    assert_eq!(order.updated_at, at("2022-01-01T00:00:00Z"));
    assert_eq!(
        order.attribution.customer_id.as_deref(),
        Some("115310627314723950")
    );
    assert_eq!(order.attribution.explicit_ref, None);
    assert!(order.attribution.discount_codes.is_empty());
    assert_eq!(order.attribution.landing_ref, None);
    // The sample is a cancelled, voided test order: the orders/paid topic does not make it paid.
    assert!(order.test, "the sample says \"test\": true");
    assert_eq!(
        update.facts,
        vec![OrderFact::Cancelled {
            at: at("2022-01-01T00:00:00Z")
        }]
    );
}

#[test]
fn the_same_sample_on_orders_updated_is_only_cancelled() {
    let body = fixture("shopify_orders_paid.json");
    let update = update(run("orders/updated", &body));
    assert_eq!(
        update.facts,
        vec![OrderFact::Cancelled {
            at: at("2022-01-01T00:00:00Z")
        }]
    );
}

#[test]
fn sdk_rest_order_fixture_parses_with_hints() {
    let body = bytes(&unwrapped(
        "shopify_rest_order_fixture_450789469.json",
        "order",
    ));
    let update = update(run("orders/create", &body));
    assert_eq!(update.key.order_id.as_str(), "450789469");
    let order = update.order.unwrap();
    let lines: Vec<(&str, &str)> = order
        .lines
        .iter()
        .map(|l| (l.line_id.as_str(), l.platform_sku.as_str()))
        .collect();
    assert_eq!(
        lines,
        [
            ("466157049", "IPOD2008GREEN"),
            ("518995019", "IPOD2008RED"),
            ("703073504", "IPOD2008BLACK")
        ]
    );
    assert!(order.lines.iter().all(|l| l.unit_price == dec!(199.00)));
    assert_eq!(order.tax, dec!(11.94));
    assert_eq!(order.declared_total, dec!(409.94));
    // No total_shipping_price_set: the shipping lines' sum.
    assert_eq!(order.shipping, dec!(0.00));
    assert_eq!(order.attribution.discount_codes, vec!["TENOFF".to_string()]);
    // Note attributes are an engraving and a colour, not a referral.
    assert_eq!(order.attribution.explicit_ref, None);
    // landing_site has source=abc, which is not a `ref` parameter.
    assert_eq!(order.attribution.landing_ref, None);
    assert_eq!(order.attribution.customer_id.as_deref(), Some("207119551"));
    assert_eq!(order.placed_at, at("2008-01-10T16:00:00Z"));
    // financial_status "authorized": not paid yet.
    assert!(update.facts.is_empty());
}

#[test]
fn documentation_refund_sample_is_a_line_refund_without_order_content() {
    let body = fixture("shopify_refunds_create.json");
    let update = update(run("refunds/create", &body));
    assert_eq!(update.key.order_id.as_str(), "820982911946154500");
    assert!(update.order.is_none());
    assert_eq!(
        update.facts,
        vec![OrderFact::Refunded(Refund {
            refund_id: RefundId::new("890088186047892400").unwrap(),
            refunded_at: at("2022-01-01T00:00:00Z"),
            scope: RefundScope::Lines(vec![
                RefundLine {
                    line_id: LineId::new("487817672276298560").unwrap(),
                    quantity: dec!(1),
                    // No tax on the line: its subtotal is the net either way.
                    stated_net: Some(dec!(89.99)),
                },
                RefundLine {
                    line_id: LineId::new("789012345678901200").unwrap(),
                    quantity: dec!(1),
                    // No tax on the line: its subtotal is the net either way.
                    stated_net: Some(dec!(19.99)),
                },
                RefundLine {
                    line_id: LineId::new("890123456789012400").unwrap(),
                    quantity: dec!(1),
                    // No tax on the line: its subtotal is the net either way.
                    stated_net: Some(dec!(24.99)),
                },
                RefundLine {
                    line_id: LineId::new("976318377106520300").unwrap(),
                    quantity: dec!(1),
                    // No tax on the line: its subtotal is the net either way.
                    stated_net: Some(dec!(159.99)),
                },
                RefundLine {
                    line_id: LineId::new("315789986012684400").unwrap(),
                    quantity: dec!(1),
                    // No tax on the line: its subtotal is the net either way.
                    stated_net: Some(dec!(119.99)),
                },
            ])
        })]
    );
}

#[test]
fn refund_line_numbers_are_read_from_their_digits() {
    // subtotal / total_tax are JSON numbers in refunds; a float would have made 89.99 inexact,
    // and a refund whose subtotal arrives as a long number must not fail the payload.
    let mut refund = fixture_json("shopify_refunds_create.json");
    assert_eq!(
        refund["refund_line_items"][0]["subtotal"].to_string(),
        "89.99"
    );
    refund["refund_line_items"][0]["subtotal"] =
        serde_json::from_str("12345678901234567.89").unwrap();
    let update = update(run("refunds/create", &bytes(&refund)));
    assert_eq!(update.facts.len(), 1);
}

#[test]
fn sdk_refund_fixture_and_the_same_refund_embedded_in_the_order_are_the_same_fact() {
    let refund = unwrapped("shopify_rest_refund_fixture_509562969.json", "refund");
    let from_topic = update(run("refunds/create", &bytes(&refund)));
    assert_eq!(from_topic.key.order_id.as_str(), "450789469");
    let expected = OrderFact::Refunded(Refund {
        refund_id: RefundId::new("509562969").unwrap(),
        refunded_at: at("2016-06-20T17:35:06Z"),
        scope: RefundScope::Lines(vec![
            RefundLine {
                line_id: LineId::new("703073504").unwrap(),
                quantity: dec!(1),
                stated_net: None,
            },
            RefundLine {
                line_id: LineId::new("466157049").unwrap(),
                quantity: dec!(1),
                stated_net: None,
            },
        ]),
    });
    assert_eq!(from_topic.facts, vec![expected.clone()]);

    let mut order = unwrapped("shopify_rest_order_fixture_450789469.json", "order");
    order["financial_status"] = json!("partially_refunded");
    order["refunds"] = json!([refund]);
    let from_order = update(run("orders/updated", &bytes(&order)));
    assert_eq!(from_order.key, from_topic.key);
    assert_eq!(
        from_order.facts,
        vec![
            OrderFact::Paid {
                at: at("2008-01-10T16:00:00Z")
            },
            expected
        ]
    );
}

#[test]
fn a_refund_without_lines_is_recorded_with_no_lines() {
    let mut refund = unwrapped("shopify_rest_refund_fixture_509562969.json", "refund");
    refund["refund_line_items"] = json!([]);
    let update = update(run("refunds/create", &bytes(&refund)));
    let [OrderFact::Refunded(r)] = update.facts.as_slice() else {
        panic!("one refund expected: {:?}", update.facts)
    };
    assert_eq!(r.scope, RefundScope::Lines(vec![]));
}

#[test]
fn zero_quantity_refund_lines_are_left_out() {
    let mut refund = unwrapped("shopify_rest_refund_fixture_509562969.json", "refund");
    refund["refund_line_items"][0]["quantity"] = json!(0);
    let update = update(run("refunds/create", &bytes(&refund)));
    let [OrderFact::Refunded(r)] = update.facts.as_slice() else {
        panic!()
    };
    assert_eq!(
        r.scope,
        RefundScope::Lines(vec![RefundLine {
            line_id: LineId::new("466157049").unwrap(),
            quantity: dec!(1),
            stated_net: None,
        }])
    );
}

#[test]
fn discounts_taxes_skus_and_hints_of_a_modern_order() {
    let update = update(run("orders/create", &bytes(&order())));
    let order = update.order.unwrap();
    assert_eq!(order.currency, Currency::EUR);
    assert!(order.prices_include_tax);
    // discount_allocations already hold the order-level code's share: no order discount.
    assert_eq!(order.order_discount, dec!(0));
    let first = &order.lines[0];
    assert_eq!(first.platform_sku, "KIT-1");
    assert_eq!(first.quantity, dec!(2));
    assert_eq!(first.unit_price, dec!(50.00));
    assert_eq!(first.discount, dec!(10.00));
    assert_eq!(first.tax, dec!(15.00));
    // Empty SKU: the variant id is the catalog key.
    assert_eq!(order.lines[1].platform_sku, "222");
    assert_eq!(order.lines[1].discount, dec!(0));
    // total_shipping_price_set wins over shipping_lines.
    assert_eq!(order.shipping, dec!(8.00));
    assert_eq!(order.tax, dec!(18.00));
    assert_eq!(order.declared_total, dec!(108.00));
    assert_eq!(order.placed_at, at("2025-03-01T09:00:00Z"));
    assert_eq!(order.updated_at, at("2025-03-01T09:05:00Z"));
    assert_eq!(order.attribution.explicit_ref.as_deref(), Some("ABC123"));
    assert_eq!(order.attribution.discount_codes, vec!["ANNA10".to_string()]);
    assert_eq!(order.attribution.landing_ref.as_deref(), Some("LAND42"));
    // 2^53 + 1: a float would have said ...992.
    assert_eq!(
        order.attribution.customer_id.as_deref(),
        Some("9007199254740993")
    );
    assert_eq!(
        update.facts,
        vec![OrderFact::Paid {
            at: at("2025-03-01T09:00:30Z")
        }]
    );
    // The net the domain computes from these lines: 100 - 10 - 15 and 10 - 3.
    let net = upline_domain::net::net_lines(
        order.currency,
        &order.lines,
        order.order_discount,
        order.prices_include_tax,
    )
    .unwrap();
    assert_eq!(net[0].net, dec!(75.00));
    assert_eq!(net[1].net, dec!(7.00));
}

#[test]
fn ids_beyond_2_pow_53_and_beyond_u64_stay_exact() {
    let mut body = order();
    body["id"] = serde_json::from_str("9007199254740993").unwrap();
    body["line_items"][0]["id"] = serde_json::from_str("123456789012345678901234").unwrap();
    body["line_items"][1]["variant_id"] = serde_json::from_str("18446744073709551615").unwrap();
    let update = update(run("orders/paid", &bytes(&body)));
    assert_eq!(update.key.order_id.as_str(), "9007199254740993");
    let order = update.order.unwrap();
    assert_eq!(order.lines[0].line_id.as_str(), "123456789012345678901234");
    assert_eq!(order.lines[1].platform_sku, "18446744073709551615");
    // Ids as strings are accepted too.
    let mut body = self::order();
    body["id"] = json!("9007199254740993");
    assert_eq!(
        support::update(run("orders/paid", &bytes(&body)))
            .key
            .order_id
            .as_str(),
        "9007199254740993"
    );
}

#[test]
fn a_price_sent_as_a_json_number_is_exact() {
    let mut body = order();
    body["line_items"][1]["price"] = serde_json::from_str("0.1").unwrap();
    let order = update(run("orders/create", &bytes(&body))).order.unwrap();
    assert_eq!(order.lines[1].unit_price, dec!(0.1));
}

#[test]
fn sku_and_variant_both_missing_leave_an_empty_catalog_key() {
    let mut body = order();
    body["line_items"][1]["sku"] = Value::Null;
    body["line_items"][1]["variant_id"] = Value::Null;
    let order = update(run("orders/create", &bytes(&body))).order.unwrap();
    assert_eq!(order.lines[1].platform_sku, "");
}

#[test]
fn distributor_ref_is_preferred_and_ref_is_the_fallback() {
    let mut body = order();
    body["note_attributes"] = json!([{"name": "Ref", "value": "XYZ9"}]);
    body["landing_site"] = json!("https://shop.example.com/?source=abc");
    let order = update(run("orders/create", &bytes(&body))).order.unwrap();
    assert_eq!(order.attribution.explicit_ref.as_deref(), Some("XYZ9"));
    assert_eq!(order.attribution.landing_ref, None);
}

#[test]
fn legacy_lines_without_allocations_use_total_discount() {
    let mut body = order();
    body["line_items"][0]
        .as_object_mut()
        .unwrap()
        .remove("discount_allocations");
    body["line_items"][0]["total_discount"] = json!("7.50");
    let order = update(run("orders/create", &bytes(&body))).order.unwrap();
    assert_eq!(order.lines[0].discount, dec!(7.50));
}

#[test]
fn statuses_and_cancellation_come_from_the_body() {
    let mut body = order();
    body["financial_status"] = json!("pending");
    body["cancelled_at"] = json!("2025-03-02T00:00:00Z");
    let update = update(run("orders/updated", &bytes(&body)));
    assert_eq!(
        update.facts,
        vec![OrderFact::Cancelled {
            at: at("2025-03-02T00:00:00Z")
        }]
    );

    for status in ["partially_refunded", "refunded"] {
        let mut body = order();
        body["financial_status"] = json!(status);
        let facts = support::update(run("orders/updated", &bytes(&body))).facts;
        assert!(matches!(facts[0], OrderFact::Paid { .. }), "{status}");
    }
}

/// Given a captured, signed body of an order that is authorised but not paid, when it is posted
/// again under every order topic, then no payment and no cancellation results: the unsigned
/// topic header only says that the body is an order.
#[test]
fn an_unpaid_body_reposted_under_every_order_topic_states_no_payment_or_cancellation() {
    let mut pending = unwrapped("shopify_rest_order_fixture_450789469.json", "order");
    assert_eq!(pending["financial_status"], "authorized");
    assert!(pending["cancelled_at"].is_null());
    pending["refunds"] = json!([]);
    let body = bytes(&pending);
    for topic in shopify::ORDER_TOPICS {
        let update = update(run(topic, &body));
        assert!(update.order.is_some(), "{topic}: the order is recorded");
        assert_eq!(update.facts, vec![], "{topic}: no fact beyond the body's");
    }
    // The refund topic does not turn an order body into a refund either.
    assert_eq!(err("refunds/create", &body).field, "order_id");
}

#[test]
fn a_test_order_is_marked_and_a_real_one_is_not() {
    let mut body = order();
    assert!(
        !update(run("orders/paid", &bytes(&body)))
            .order
            .unwrap()
            .test
    );
    body["test"] = json!(true);
    assert!(
        update(run("orders/paid", &bytes(&body)))
            .order
            .unwrap()
            .test
    );
    let real = unwrapped("shopify_rest_order_fixture_450789469.json", "order");
    assert_eq!(real["test"], false);
    assert!(
        !update(run("orders/create", &bytes(&real)))
            .order
            .unwrap()
            .test
    );
}

#[test]
fn fractional_zero_or_negative_quantities_and_negative_prices_are_refused_naming_the_field() {
    for (field, value, named) in [
        ("quantity", json!(0), "line_items[1].quantity"),
        ("quantity", json!(-1), "line_items[1].quantity"),
        ("quantity", json!(1.5), "line_items[1].quantity"),
        ("quantity", json!("2.5"), "line_items[1].quantity"),
        ("price", json!("-10.00"), "line_items[1].price"),
    ] {
        let mut body = order();
        body["line_items"][1][field] = value.clone();
        let e = err("orders/paid", &bytes(&body));
        assert_eq!(e.field, named, "{field} = {value}: {e}");
    }
    // A whole number written with decimals is a whole number; a free item is allowed.
    let mut body = order();
    body["line_items"][1]["quantity"] = json!("3.00");
    body["line_items"][1]["price"] = json!("0.00");
    let lines = update(run("orders/paid", &bytes(&body)))
        .order
        .unwrap()
        .lines;
    assert_eq!(lines[1].quantity, dec!(3));
}

#[test]
fn a_fractional_or_negative_refund_quantity_is_refused() {
    for value in [json!(-1), json!(0.5)] {
        let mut refund = unwrapped("shopify_rest_refund_fixture_509562969.json", "refund");
        refund["refund_line_items"][0]["quantity"] = value.clone();
        let e = err("refunds/create", &bytes(&refund));
        assert_eq!(e.field, "refund_line_items[0].quantity", "{value}");
    }
}

/// The net a refund line states: its subtotal, less its tax when the order's prices include
/// tax; unstated on a refunds/create body when the line carries tax (it cannot tell).
#[test]
fn refund_lines_state_their_net_from_the_subtotal_and_the_order_tax_treatment() {
    let mut refund = fixture_json("shopify_refunds_create.json");
    refund["refund_line_items"][0]["subtotal_set"]["shop_money"]["amount"] = json!("120.00");
    refund["refund_line_items"][0]["total_tax_set"]["shop_money"]["amount"] = json!("20.00");
    let stated =
        |update: upline_platforms::model::OrderUpdate| -> Vec<Option<rust_decimal::Decimal>> {
            let refund = update
                .facts
                .into_iter()
                .find_map(|f| match f {
                    OrderFact::Refunded(r) => Some(r),
                    _ => None,
                })
                .expect("a refund");
            match refund.scope {
                RefundScope::Lines(lines) => lines.into_iter().map(|l| l.stated_net).collect(),
                other => panic!("{other:?}"),
            }
        };
    // Alone, the refund cannot say whether 120.00 includes its 20.00 of tax.
    let alone = stated(update(run("refunds/create", &bytes(&refund))));
    assert_eq!(alone[0], None);
    assert_eq!(alone[1], Some(dec!(19.99)));

    let mut order = fixture_json("shopify_orders_paid.json");
    order["refunds"] = json!([refund]);
    order["taxes_included"] = json!(true);
    let inclusive = stated(update(run("orders/updated", &bytes(&order))));
    assert_eq!(inclusive[0], Some(dec!(100.00)));
    assert_eq!(inclusive[1], Some(dec!(19.99)));
    order["taxes_included"] = json!(false);
    let exclusive = stated(update(run("orders/updated", &bytes(&order))));
    assert_eq!(exclusive[0], Some(dec!(120.00)));
}

#[test]
fn other_topics_are_ignored() {
    let body = bytes(&order());
    for topic in [
        "products/update",
        "orders/edited",
        "orders/fulfilled",
        "app/uninstalled",
    ] {
        let reason = ignored_reason(run(topic, &body));
        assert!(reason.contains(topic), "{reason}");
    }
    // Topic names are compared case-insensitively.
    assert!(matches!(
        run(" Orders/Create ", &body),
        Interpretation::Order(_)
    ));
}

#[test]
fn the_top_level_entry_point_dispatches_to_shopify() {
    let body = fixture("shopify_refunds_create.json");
    let direct = shopify::interpret(&shop(), "refunds/create", &body).unwrap();
    let routed = interpret(Platform::Shopify, &shop(), "refunds/create", &body).unwrap();
    assert_eq!(direct, routed);
}

#[test]
fn malformed_json_is_named_body_with_a_position() {
    let e = err("orders/create", b"{\"id\": 1,\n \"line_items\": [}");
    assert_eq!(e.field, "body");
    assert!(e.message.contains("line 2"), "{e}");
    assert!(e.to_string().starts_with("body: "));
    let e = err("orders/create", b"{\"id\": 1} trailing");
    assert_eq!(e.field, "body");
}

#[test]
fn type_errors_and_missing_fields_name_their_path() {
    let mut body = order();
    body["line_items"][1]["price"] = json!({"amount": "1"});
    assert_eq!(
        err("orders/create", &bytes(&body)).field,
        "line_items[1].price"
    );

    let mut body = order();
    body["line_items"][0]["price"] = json!("12,50");
    assert_eq!(
        err("orders/create", &bytes(&body)).field,
        "line_items[0].price"
    );

    let mut body = order();
    body["line_items"][1].as_object_mut().unwrap().remove("id");
    let e = err("orders/create", &bytes(&body));
    assert_eq!(e.field, "line_items[1].id");
    assert_eq!(e.message, "is required");

    let mut body = order();
    body.as_object_mut().unwrap().remove("currency");
    assert_eq!(err("orders/create", &bytes(&body)).field, "currency");

    let mut body = order();
    body["currency"] = json!("XYZ");
    assert_eq!(err("orders/create", &bytes(&body)).field, "currency");

    let mut body = order();
    body["id"] = serde_json::from_str("1.5").unwrap();
    assert_eq!(err("orders/create", &bytes(&body)).field, "id");

    let mut body = order();
    body["line_items"][0]["tax_lines"][1]["price"] = json!(null);
    assert_eq!(
        err("orders/create", &bytes(&body)).field,
        "line_items[0].tax_lines[1].price"
    );

    let mut body = order();
    body["created_at"] = json!("yesterday");
    assert_eq!(err("orders/create", &bytes(&body)).field, "created_at");

    let mut body = order();
    body["line_items"][0]["id"] = json!("x".repeat(65));
    let e = err("orders/create", &bytes(&body));
    assert_eq!(e.field, "line_items[0].id");
    assert!(e.message.contains("64"), "{e}");

    let mut refund = unwrapped("shopify_rest_refund_fixture_509562969.json", "refund");
    refund.as_object_mut().unwrap().remove("order_id");
    assert_eq!(err("refunds/create", &bytes(&refund)).field, "order_id");

    let mut refund = unwrapped("shopify_rest_refund_fixture_509562969.json", "refund");
    refund["refund_line_items"][1]["quantity"] = json!(-1);
    assert_eq!(
        err("refunds/create", &bytes(&refund)).field,
        "refund_line_items[1].quantity"
    );
}

#[test]
fn more_lines_than_the_domain_accepts_are_refused_up_front() {
    let mut body = order();
    let line = body["line_items"][1].clone();
    let lines: Vec<Value> = (0..=upline_platforms::MAX_LINES)
        .map(|i| {
            let mut l = line.clone();
            l["id"] = json!(i + 10);
            l
        })
        .collect();
    body["line_items"] = Value::Array(lines);
    let e = err("orders/create", &bytes(&body));
    assert_eq!(e.field, "line_items");
    assert!(e.message.contains("1000"), "{e}");
}
