//! WooCommerce payloads: the REST docs' order (created / updated), its refunds list, variants.

mod support;

use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::{json, Value};
use support::*;
use upline_domain::ids::{Platform, RefundId};
use upline_domain::money::Currency;
use upline_domain::net::net_lines;
use upline_domain::order::{Refund, RefundScope};
use upline_platforms::model::{Interpretation, NormalizedOrder, OrderFact};
use upline_platforms::{interpret, woocommerce};

fn run(topic: &str, body: &[u8]) -> Interpretation {
    woocommerce::interpret(&shop(), topic, body).expect("interprets")
}

fn created() -> Value {
    fixture_json("woocommerce_order_created.json")
}

/// The docs' refunds list turned into the `refunds[]` an order carries: `{id, reason, total}`
/// with the total negative.
fn refunds_from_list() -> Value {
    let list = fixture_json("woocommerce_order_refunds_list.json");
    Value::Array(
        list.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                json!({
                    "id": r["id"],
                    "reason": r["reason"],
                    "total": format!("-{}", r["amount"].as_str().unwrap())
                })
            })
            .collect(),
    )
}

fn net_of(order: &NormalizedOrder) -> Decimal {
    net_lines(
        order.currency,
        &order.lines,
        order.order_discount,
        order.prices_include_tax,
    )
    .unwrap()
    .iter()
    .map(|l| l.net)
    .sum()
}

fn refunds(facts: &[OrderFact]) -> Vec<(String, Decimal)> {
    facts
        .iter()
        .filter_map(|f| match f {
            OrderFact::Refunded(Refund {
                refund_id,
                scope: RefundScope::NetAmount(x),
                ..
            }) => Some((refund_id.to_string(), *x)),
            _ => None,
        })
        .collect()
}

#[test]
fn docs_order_created_parses_exactly() {
    let update = update(run(
        "order.created",
        &fixture("woocommerce_order_created.json"),
    ));
    assert_eq!(update.key.platform, Platform::Woocommerce);
    assert_eq!(update.key.order_id.as_str(), "727");
    let order = update.order.unwrap();
    assert_eq!(order.currency, Currency::USD);
    let lines: Vec<(&str, &str, Decimal, Decimal, Decimal, Decimal)> = order
        .lines
        .iter()
        .map(|l| {
            (
                l.line_id.as_str(),
                l.platform_sku.as_str(),
                l.quantity,
                l.unit_price,
                l.discount,
                l.tax,
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            // Empty SKU, variation 0: the product id is the catalog key.
            ("315", "93", dec!(2), dec!(3), dec!(0), dec!(0.45)),
            ("316", "Bar3", dec!(1), dec!(12), dec!(0), dec!(0.90)),
        ]
    );
    // Line amounts exclude tax in WooCommerce, whatever the shop's setting.
    assert!(!order.prices_include_tax);
    assert_eq!(order.order_discount, dec!(0));
    assert_eq!(order.shipping, dec!(10.00));
    assert_eq!(order.tax, dec!(1.35));
    assert_eq!(order.declared_total, dec!(29.35));
    assert_eq!(net_of(&order), dec!(18.00));
    // *_gmt fields carry no suffix: UTC.
    assert_eq!(order.placed_at, at("2017-03-22T19:28:02Z"));
    assert_eq!(order.updated_at, at("2017-03-22T19:28:08Z"));
    // Guest (customer_id 0), no coupon, no referral meta.
    assert_eq!(order.attribution, Default::default());
    assert_eq!(
        update.facts,
        vec![OrderFact::Paid {
            at: at("2017-03-22T19:28:08Z")
        }]
    );
}

#[test]
fn docs_order_updated_is_the_same_order_later() {
    let first = update(run(
        "order.created",
        &fixture("woocommerce_order_created.json"),
    ));
    let later = update(run(
        "order.updated",
        &fixture("woocommerce_order_updated.json"),
    ));
    assert_eq!(first.key, later.key);
    let (a, b) = (first.order.unwrap(), later.order.unwrap());
    assert_eq!(a.lines, b.lines);
    assert_eq!(b.updated_at, at("2017-03-22T19:30:35Z"));
    // Paid at date_paid, the same on both deliveries.
    assert_eq!(first.facts, later.facts);
}

#[test]
fn refunds_become_net_amounts_pro_rata_in_id_order() {
    let mut body = created();
    body["refunds"] = refunds_from_list();
    assert_eq!(body["refunds"][0]["id"], json!(726));
    let update = update(run("order.updated", &bytes(&body)));
    // Net 18.00 of a 29.35 total. Refund 724 (9.00) first: 9 x 18 / 29.35 = 5.5195.. -> 5.52;
    // then 726 (10.00): cumulative 19 x 18 / 29.35 = 11.6524.. -> 11.65, less 5.52 = 6.13.
    assert_eq!(
        refunds(&update.facts),
        vec![
            ("724".to_string(), dec!(5.52)),
            ("726".to_string(), dec!(6.13))
        ]
    );
    for fact in &update.facts {
        if let OrderFact::Refunded(r) = fact {
            // No refund date in the order: the order's creation time, stable across deliveries.
            assert_eq!(r.refunded_at, at("2017-03-22T19:28:02Z"));
        }
    }
    // An earlier refund keeps its amount when a later one appears.
    let mut only_first = created();
    only_first["refunds"] = json!([{"id": 724, "reason": "", "total": "-9.00"}]);
    let earlier = support::update(run("order.updated", &bytes(&only_first)));
    assert_eq!(
        refunds(&earlier.facts),
        vec![("724".to_string(), dec!(5.52))]
    );
}

#[test]
fn a_full_refund_in_parts_is_exactly_the_net() {
    let mut body = created();
    body["status"] = json!("refunded");
    body["refunds"] = json!([
        {"id": 801, "total": "-10.00"},
        {"id": 802, "total": "-10.00"},
        {"id": 803, "total": "-9.35"}
    ]);
    let update = update(run("order.updated", &bytes(&body)));
    let parts = refunds(&update.facts);
    assert_eq!(parts.len(), 3);
    let total: Decimal = parts.iter().map(|(_, x)| *x).sum();
    assert_eq!(total, dec!(18.00));
    // Each part is whole cents.
    assert!(parts.iter().all(|(_, x)| x.scale() <= 2));

    // Refunded more than the order's total: capped at the net.
    body["refunds"] = json!([{"id": 900, "total": "-500.00"}]);
    let update = support::update(run("order.updated", &bytes(&body)));
    assert_eq!(
        refunds(&update.facts),
        vec![("900".to_string(), dec!(18.00))]
    );

    // A zero refund is nothing commissionable.
    body["refunds"] = json!([{"id": 901, "total": "0.00"}]);
    let update = support::update(run("order.updated", &bytes(&body)));
    assert!(refunds(&update.facts).is_empty());
}

#[test]
fn discounts_coupons_meta_and_customer() {
    let mut body = created();
    body["line_items"][1]["subtotal"] = json!("20.00");
    body["line_items"][1]["total"] = json!("15.00");
    body["coupon_lines"] =
        json!([{"id": 1, "code": "anna10", "discount": "5.00"}, {"code": "anna10"}]);
    body["meta_data"] = json!([
        {"id": 1, "key": "ref", "value": "LOW"},
        {"id": 2, "key": "distributor_ref", "value": "ABC123"},
        {"id": 3, "key": "_wc_order_attribution_session_entry", "value": "https://shop.example.com/kit/?ref=LAND7&x=1"},
        {"id": 4, "key": "array_meta", "value": {"nested": [1, 2]}}
    ]);
    body["customer_id"] = json!(42);
    let order = update(run("order.created", &bytes(&body))).order.unwrap();
    let line = &order.lines[1];
    assert_eq!(line.unit_price, dec!(20));
    assert_eq!(line.discount, dec!(5.00));
    assert_eq!(order.order_discount, dec!(0));
    assert_eq!(order.attribution.discount_codes, vec!["anna10".to_string()]);
    assert_eq!(order.attribution.explicit_ref.as_deref(), Some("ABC123"));
    assert_eq!(order.attribution.landing_ref.as_deref(), Some("LAND7"));
    assert_eq!(order.attribution.customer_id.as_deref(), Some("42"));
    assert_eq!(net_of(&order), dec!(21.00));
}

#[test]
fn a_unit_price_that_does_not_divide_keeps_the_line_net_exact() {
    let mut body = created();
    body["line_items"] = json!([
        {"id": 1, "product_id": 5, "variation_id": 0, "sku": "A", "quantity": 3,
         "subtotal": "10.00", "total": "10.00", "total_tax": "0.00", "price": 3.3333333333333335},
        {"id": 2, "product_id": 6, "variation_id": 61, "sku": null, "quantity": 300,
         "subtotal": "1000.00", "total": "900.00", "total_tax": "0.00", "price": 3}
    ]);
    let order = update(run("order.created", &bytes(&body))).order.unwrap();
    assert_eq!(order.lines[0].unit_price, dec!(3.3334));
    // 3 x 3.3334 = 10.0002: the 0.0002 goes to the discount, so the net is exactly 10.00.
    assert_eq!(order.lines[0].discount, dec!(0.0002));
    // 300 x 3.3334 = 1000.02: the 0.02 goes to the discount.
    assert_eq!(order.lines[1].platform_sku, "61");
    assert_eq!(order.lines[1].unit_price, dec!(3.3334));
    assert_eq!(order.lines[1].discount, dec!(100.02));
    let net = net_lines(order.currency, &order.lines, dec!(0), false).unwrap();
    assert_eq!(net[0].net, dec!(10.00));
    assert_eq!(net[1].net, dec!(900.00));
}

#[test]
fn cancelled_and_unpaid_states() {
    let mut body = created();
    body["status"] = json!("cancelled");
    body["date_paid"] = Value::Null;
    body["date_paid_gmt"] = Value::Null;
    let update = update(run("order.updated", &bytes(&body)));
    assert_eq!(
        update.facts,
        vec![OrderFact::Cancelled {
            at: at("2017-03-22T19:28:08Z")
        }]
    );
    body["status"] = json!("pending");
    assert!(support::update(run("order.updated", &bytes(&body)))
        .facts
        .is_empty());
    // Processing without date_paid: paid, at the modification time.
    body["status"] = json!("processing");
    body["date_paid_gmt"] = json!("");
    assert_eq!(
        support::update(run("order.updated", &bytes(&body))).facts,
        vec![OrderFact::Paid {
            at: at("2017-03-22T19:28:08Z")
        }]
    );
}

#[test]
fn deleted_other_topics_and_pings_are_ignored() {
    let body = fixture("woocommerce_order_created.json");
    let reason = ignored_reason(run("order.deleted", &body));
    assert!(reason.contains("order.deleted"), "{reason}");
    assert!(ignored_reason(run("order.deleted", br#"{"id": 727}"#)).contains("restored"));
    assert!(ignored_reason(run("product.updated", &body)).contains("product.updated"));
    assert!(matches!(
        run("order.restored", &body),
        Interpretation::Order(_)
    ));
    assert!(ignored_reason(run("", b"webhook_id=15")).contains("ping"));
}

#[test]
fn ping_bodies_are_recognised() {
    assert!(woocommerce::is_ping(b"webhook_id=15"));
    assert!(woocommerce::is_ping(b"webhook_id=15\n"));
    assert!(!woocommerce::is_ping(b"webhook_id="));
    assert!(!woocommerce::is_ping(b"webhook_id=1&x=2"));
    assert!(!woocommerce::is_ping(b"{\"webhook_id\": 15}"));
    assert!(!woocommerce::is_ping(&fixture(
        "woocommerce_order_created.json"
    )));
}

#[test]
fn the_top_level_entry_point_dispatches_to_woocommerce() {
    let body = fixture("woocommerce_order_created.json");
    assert_eq!(
        interpret(Platform::Woocommerce, &shop(), "order.created", &body).unwrap(),
        run("order.created", &body)
    );
}

#[test]
fn errors_name_their_field() {
    let e = woocommerce::interpret(&shop(), "order.created", b"{\"id\":").unwrap_err();
    assert_eq!(e.field, "body");
    assert!(e.message.contains("column"), "{e}");

    let mut body = created();
    body["line_items"][1]["subtotal"] = json!("abc");
    let e = woocommerce::interpret(&shop(), "order.created", &bytes(&body)).unwrap_err();
    assert_eq!(e.field, "line_items[1].subtotal");

    let mut body = created();
    body["line_items"][0]
        .as_object_mut()
        .unwrap()
        .remove("total");
    let e = woocommerce::interpret(&shop(), "order.created", &bytes(&body)).unwrap_err();
    assert_eq!(e.field, "line_items[0].total");

    let mut body = created();
    body.as_object_mut().unwrap().remove("date_created_gmt");
    body.as_object_mut().unwrap().remove("date_created");
    let e = woocommerce::interpret(&shop(), "order.created", &bytes(&body)).unwrap_err();
    assert_eq!(e.field, "date_created_gmt");

    let mut body = created();
    body["refunds"] = json!([{"id": 1, "total": "-1.0.0"}]);
    let e = woocommerce::interpret(&shop(), "order.created", &bytes(&body)).unwrap_err();
    assert_eq!(e.field, "refunds[0].total");

    let mut body = created();
    body["refunds"] = json!([{"id": "bad id", "total": "-1.00"}]);
    let e = woocommerce::interpret(&shop(), "order.created", &bytes(&body)).unwrap_err();
    assert_eq!(e.field, "refunds[0].id");

    let mut body = created();
    body["line_items"][0]["quantity"] = json!(-1);
    let e = woocommerce::interpret(&shop(), "order.created", &bytes(&body)).unwrap_err();
    assert_eq!(e.field, "line_items[0].quantity");
}

#[test]
fn refund_ids_are_validated_like_the_domain() {
    let mut body = created();
    body["refunds"] = json!([{"id": 77, "total": "-1.00"}]);
    let update = update(run("order.updated", &bytes(&body)));
    let [_, OrderFact::Refunded(r)] = update.facts.as_slice() else {
        panic!("{:?}", update.facts)
    };
    assert_eq!(r.refund_id, RefundId::new("77").unwrap());
}
