//! Magento / Adobe Commerce: the REST order entity, the I/O Events envelope, webhook bodies,
//! invoices, credit memos and the parent/child row collapse.

mod support;

use rust_decimal_macros::dec;
use serde_json::{json, Value};
use support::*;
use upline_domain::ids::{LineId, Platform, RefundId};
use upline_domain::money::Currency;
use upline_domain::net::net_lines;
use upline_domain::order::{Refund, RefundLine, RefundScope};
use upline_platforms::magento::{self, entity_kind, EntityKind};
use upline_platforms::model::{Interpretation, OrderFact};
use upline_platforms::{interpret, PayloadError};

fn run(topic: &str, body: &[u8]) -> Interpretation {
    magento::interpret(&shop(), topic, body).expect("interprets")
}

fn err(topic: &str, body: &[u8]) -> PayloadError {
    magento::interpret(&shop(), topic, body).expect_err("must be refused")
}

fn rest_order() -> Value {
    fixture_json("magento_order_rest_example.json")
}

/// The docs' envelope carrying `value` under event `code`.
fn envelope(code: &str, value: Value) -> Value {
    let mut e = fixture_json("magento_io_events_envelope_sample.json");
    e["type"] = json!(code);
    e["data"]["value"] = value;
    e
}

fn line_ids(update: &upline_platforms::model::OrderUpdate) -> Vec<String> {
    update
        .order
        .as_ref()
        .unwrap()
        .lines
        .iter()
        .map(|l| l.line_id.to_string())
        .collect()
}

#[test]
fn rest_order_entity_parses_exactly() {
    let update = update(run(
        "sales_order_save_after",
        &fixture("magento_order_rest_example.json"),
    ));
    assert_eq!(update.key.platform, Platform::Magento);
    // entity_id, not the increment id "000000003".
    assert_eq!(update.key.order_id.as_str(), "3");
    let order = update.order.unwrap();
    assert_eq!(order.lines.len(), 1);
    let line = &order.lines[0];
    assert_eq!(line.line_id.as_str(), "3");
    assert_eq!(line.platform_sku, "WS12-M-Orange");
    assert_eq!(line.quantity, dec!(1));
    assert_eq!(line.unit_price, dec!(22));
    assert_eq!(line.discount, dec!(0));
    assert_eq!(line.tax, dec!(0));
    assert_eq!(order.currency, Currency::USD);
    assert!(!order.prices_include_tax);
    assert_eq!(order.shipping, dec!(5));
    assert_eq!(order.tax, dec!(0));
    assert_eq!(order.declared_total, dec!(165));
    assert_eq!(order.placed_at, at("2017-08-21T22:22:19Z"));
    assert_eq!(order.updated_at, at("2017-08-21T22:22:20Z"));
    assert_eq!(order.attribution.customer_id.as_deref(), Some("3"));
    assert_eq!(order.attribution.discount_codes, Vec::<String>::new());
    // state "new": neither paid nor cancelled.
    assert!(update.facts.is_empty());
}

#[test]
fn the_product_envelope_is_ignored() {
    let reason = ignored_reason(run("", &fixture("magento_io_events_envelope_sample.json")));
    assert!(
        reason.contains("com.adobe.commerce.observer.catalog_product_save_commit_after"),
        "{reason}"
    );
    // The envelope's event code wins over a misleading route topic.
    assert!(matches!(
        run(
            "sales_order_save_after",
            &fixture("magento_io_events_envelope_sample.json")
        ),
        Interpretation::Ignored { .. }
    ));
}

#[test]
fn an_envelope_order_in_processing_with_an_invoice_is_paid() {
    let mut order = rest_order();
    order["state"] = json!("processing");
    order["status"] = json!("processing");
    order["total_invoiced"] = json!(165);
    order["coupon_code"] = json!("SPRING");
    order["extension_attributes"]["distributor_ref"] = json!("ABC123");
    let body = envelope("com.adobe.commerce.observer.sales_order_save_after", order);
    let update = update(run("", &bytes(&body)));
    assert_eq!(update.key.order_id.as_str(), "3");
    assert_eq!(
        update.facts,
        vec![OrderFact::Paid {
            at: at("2017-08-21T22:22:20Z")
        }]
    );
    let order = update.order.unwrap();
    assert_eq!(order.attribution.discount_codes, vec!["SPRING".to_string()]);
    assert_eq!(order.attribution.explicit_ref.as_deref(), Some("ABC123"));

    // Processing without an invoice (shipped first) is not a payment.
    let mut order = rest_order();
    order["state"] = json!("processing");
    let body = envelope("com.adobe.commerce.observer.sales_order_save_after", order);
    assert!(support::update(run("", &bytes(&body))).facts.is_empty());
}

#[test]
fn webhook_bodies_carry_the_order_under_data() {
    let mut order = rest_order();
    order["state"] = json!("complete");
    let body = json!({"eventName": "observer.sales_order_save_after", "data": {"order": order}});
    let update = update(run("ignored-topic", &bytes(&body)));
    assert_eq!(update.key.order_id.as_str(), "3");
    assert_eq!(update.facts.len(), 1);
    assert!(matches!(update.facts[0], OrderFact::Paid { .. }));

    let mut order = rest_order();
    order["state"] = json!("canceled");
    let body = json!({"eventName": "observer.sales_order_save_after", "data": {"order": order}});
    assert_eq!(
        support::update(run("", &bytes(&body))).facts,
        vec![OrderFact::Cancelled {
            at: at("2017-08-21T22:22:20Z")
        }]
    );

    let body = json!({"eventName": "observer.catalog_product_save_after", "data": {"product": {}}});
    assert!(matches!(
        run("", &bytes(&body)),
        Interpretation::Ignored { .. }
    ));
}

/// A configurable, a dynamic bundle, a fixed bundle and a simple product, as Magento stores them.
fn composite_order() -> Value {
    let mut order = rest_order();
    order["items"] = json!([
        {"item_id": 10, "product_type": "configurable", "sku": "MH01-XS-Black", "qty_ordered": 2,
         "price": 52, "discount_amount": 10.4, "tax_amount": 7.72},
        {"item_id": 11, "parent_item_id": 10, "product_type": "simple", "sku": "MH01-XS-Black",
         "qty_ordered": 2, "price": 0, "discount_amount": 0, "tax_amount": 0,
         "parent_item": {"item_id": 10}},
        {"item_id": 20, "product_type": "bundle", "sku": "24-WG080-dyn", "qty_ordered": 1,
         "price": 60, "discount_amount": 0, "tax_amount": 0},
        {"item_id": 21, "parent_item_id": 20, "product_type": "simple", "sku": "24-WG084",
         "qty_ordered": 1, "price": 40, "discount_amount": 4, "tax_amount": 2.97},
        {"item_id": 22, "parent_item_id": 20, "product_type": "simple", "sku": "24-WG088",
         "qty_ordered": 2, "price": "10.0000", "discount_amount": 0, "tax_amount": 1.65},
        {"item_id": 30, "product_type": "bundle", "sku": "BNDL-FIXED", "qty_ordered": 1,
         "price": 100, "discount_amount": 10, "discount_tax_compensation_amount": 1.5, "tax_amount": 7},
        {"item_id": 31, "parent_item_id": 30, "product_type": "simple", "sku": "PART-A",
         "qty_ordered": 1, "price": 0},
        {"item_id": 32, "parent_item_id": 30, "product_type": "simple", "sku": "PART-B",
         "qty_ordered": 1, "price": 0},
        {"item_id": 40, "product_type": "simple", "sku": "", "product_id": 1553, "qty_ordered": 1,
         "price": 22.5, "tax_amount": 0}
    ]);
    order
}

#[test]
fn parent_and_child_rows_collapse_to_the_counted_lines() {
    let update = update(run("sales_order_save_after", &bytes(&composite_order())));
    // Configurable: parent 10 (child 11 skipped). Dynamic bundle: children 21, 22 (parent 20
    // skipped even though it repeats their sum). Fixed bundle: parent 30. Simple: 40.
    assert_eq!(line_ids(&update), ["10", "21", "22", "30", "40"]);
    let order = update.order.unwrap();
    let by_id = |id: &str| {
        order
            .lines
            .iter()
            .find(|l| l.line_id.as_str() == id)
            .unwrap()
            .clone()
    };
    let configurable = by_id("10");
    assert_eq!(configurable.platform_sku, "MH01-XS-Black");
    assert_eq!(configurable.quantity, dec!(2));
    assert_eq!(configurable.unit_price, dec!(52));
    assert_eq!(configurable.discount, dec!(10.4));
    assert_eq!(configurable.tax, dec!(7.72));
    assert_eq!(by_id("22").unit_price, dec!(10.0000));
    assert_eq!(by_id("22").quantity, dec!(2));
    // Discount on tax-inclusive prices: the hidden tax is not a discount.
    assert_eq!(by_id("30").discount, dec!(8.5));
    // No SKU: the product id.
    assert_eq!(by_id("40").platform_sku, "1553");
    let net: Vec<_> = net_lines(order.currency, &order.lines, dec!(0), false)
        .unwrap()
        .into_iter()
        .map(|l| l.net)
        .collect();
    assert_eq!(
        net,
        [
            dec!(93.60),
            dec!(36.00),
            dec!(20.00),
            dec!(91.50),
            dec!(22.50)
        ]
    );
}

#[test]
fn a_bundle_without_priced_children_counts_its_parent_and_orphans_count() {
    let mut order = rest_order();
    order["items"] = json!([
        {"item_id": 50, "product_type": "bundle", "sku": "B", "qty_ordered": 1, "price": 80},
        {"item_id": 51, "parent_item_id": 50, "sku": "B1", "qty_ordered": 1, "price": 0},
        {"item_id": 61, "parent_item_id": 60, "sku": "ORPHAN", "qty_ordered": 1, "price": 5}
    ]);
    let update = update(run("order", &bytes(&order)));
    assert_eq!(line_ids(&update), ["50", "61"]);
}

#[test]
fn invoices_are_payments_when_paid() {
    let invoice = json!({"entity_id": 7, "order_id": 3, "state": 2,
                         "created_at": "2017-08-22 10:00:00", "updated_at": "2017-08-22 10:00:01"});
    let update = update(run("sales_order_invoice_save_after", &bytes(&invoice)));
    assert_eq!(update.key.order_id.as_str(), "3");
    assert!(update.order.is_none());
    assert_eq!(
        update.facts,
        vec![OrderFact::Paid {
            at: at("2017-08-22T10:00:01Z")
        }]
    );
    let body = envelope(
        "com.adobe.commerce.observer.sales_order_invoice_save_after",
        invoice.clone(),
    );
    assert_eq!(support::update(run("", &bytes(&body))).facts, update.facts);
    let hook = json!({"eventName": "observer.sales_order_invoice_save_after", "data": {"invoice": invoice}});
    assert_eq!(support::update(run("", &bytes(&hook))).facts, update.facts);

    let open =
        json!({"entity_id": 8, "order_id": 3, "state": "1", "created_at": "2017-08-22 10:00:00"});
    let reason = ignored_reason(run("invoice", &bytes(&open)));
    assert!(reason.contains("not paid"), "{reason}");
}

#[test]
fn credit_memos_refund_the_counted_lines() {
    let memo = json!({
        "entity_id": 9, "order_id": 3, "state": 2, "created_at": "2017-08-23 09:30:00",
        "items": [
            {"order_item_id": 10, "qty": 1, "price": 52},
            {"order_item_id": 11, "qty": 1, "price": 0},
            {"order_item_id": 20, "qty": 1, "price": 0},
            {"order_item_id": 21, "qty": 1, "price": 40},
            {"order_item_id": 40, "qty": 0, "price": 22.5}
        ]
    });
    let expected = vec![OrderFact::Refunded(Refund {
        refund_id: RefundId::new("9").unwrap(),
        refunded_at: at("2017-08-23T09:30:00Z"),
        scope: RefundScope::Lines(vec![
            RefundLine {
                line_id: LineId::new("10").unwrap(),
                quantity: dec!(1),
                stated_net: None,
            },
            RefundLine {
                line_id: LineId::new("21").unwrap(),
                quantity: dec!(1),
                stated_net: None,
            },
        ]),
    })];
    let update = update(run("sales_order_creditmemo_save_after", &bytes(&memo)));
    assert_eq!(update.key.order_id.as_str(), "3");
    assert!(update.order.is_none());
    assert_eq!(update.facts, expected);
    let body = envelope(
        "com.adobe.commerce.observer.sales_order_creditmemo_save_after",
        memo.clone(),
    );
    assert_eq!(support::update(run("", &bytes(&body))).facts, expected);

    let mut canceled = memo;
    canceled["state"] = json!(3);
    assert!(matches!(
        run("creditmemo", &bytes(&canceled)),
        Interpretation::Ignored { .. }
    ));
}

#[test]
fn an_order_event_without_items_still_gives_its_facts() {
    let body = envelope(
        "com.adobe.commerce.observer.sales_order_save_after",
        json!({"entity_id": "3", "state": "complete", "updated_at": "2017-08-24 00:00:00"}),
    );
    let update = update(run("", &bytes(&body)));
    assert!(update.order.is_none());
    assert_eq!(
        update.facts,
        vec![OrderFact::Paid {
            at: at("2017-08-24T00:00:00Z")
        }]
    );
}

#[test]
fn event_codes_map_to_entities() {
    assert_eq!(
        entity_kind("com.adobe.commerce.observer.sales_order_save_after"),
        Some(EntityKind::Order)
    );
    assert_eq!(
        entity_kind("observer.sales_order_save_commit_after"),
        Some(EntityKind::Order)
    );
    assert_eq!(
        entity_kind("sales_order_invoice_pay"),
        Some(EntityKind::Invoice)
    );
    assert_eq!(
        entity_kind("com.adobe.commerce.observer.sales_order_creditmemo_save_after"),
        Some(EntityKind::CreditMemo)
    );
    assert_eq!(entity_kind("CreditMemo"), Some(EntityKind::CreditMemo));
    assert_eq!(
        entity_kind("observer.sales_order_shipment_save_after"),
        None
    );
    assert_eq!(entity_kind("observer.sales_order_place_before"), None);
}

#[test]
fn errors_name_the_full_path() {
    let mut order = rest_order();
    order["items"][0]["price"] = json!("twenty");
    let body = envelope(
        "com.adobe.commerce.observer.sales_order_save_after",
        order.clone(),
    );
    assert_eq!(err("", &bytes(&body)).field, "data.value.items[0].price");
    assert_eq!(err("order", &bytes(&order)).field, "items[0].price");

    let body = json!({"eventName": "observer.sales_order_save_after", "data": {"quote": {}}});
    let e = err("", &bytes(&body));
    assert_eq!(e.field, "data.order");
    assert_eq!(e.message, "is required");

    let mut order = rest_order();
    order.as_object_mut().unwrap().remove("entity_id");
    assert_eq!(err("order", &bytes(&order)).field, "entity_id");

    let mut order = rest_order();
    order.as_object_mut().unwrap().remove("order_currency_code");
    let body = envelope("com.adobe.commerce.observer.sales_order_save_after", order);
    assert_eq!(
        err("", &bytes(&body)).field,
        "data.value.order_currency_code"
    );

    let mut order = rest_order();
    order["items"][0]["item_id"] = json!("a/b");
    assert_eq!(err("order", &bytes(&order)).field, "items[0].item_id");

    let memo = json!({"entity_id": 9, "order_id": 3, "created_at": "2017-08-23 09:30:00",
                      "items": [{"order_item_id": 10, "qty": "one"}]});
    assert_eq!(err("creditmemo", &bytes(&memo)).field, "items[0].qty");

    let e = err("order", b"[1, 2");
    assert_eq!(e.field, "body");
    let e = err("order", b"[1, 2]");
    assert_eq!(e.field, "body");
}

#[test]
fn plain_entities_with_an_unknown_topic_are_ignored() {
    let reason = ignored_reason(run(
        "customer_save_after",
        &fixture("magento_order_rest_example.json"),
    ));
    assert!(reason.contains("customer_save_after"), "{reason}");
}

#[test]
fn the_top_level_entry_point_dispatches_to_magento() {
    let body = fixture("magento_order_rest_example.json");
    assert_eq!(
        interpret(Platform::Magento, &shop(), "order", &body).unwrap(),
        run("order", &body)
    );
}
