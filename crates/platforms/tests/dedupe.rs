//! Event identity: the same event delivered twice has one key; different events differ.

mod support;

use std::collections::BTreeMap;

use serde_json::json;
use support::*;
use upline_domain::ids::{Platform, ShopId};
use upline_platforms::model::Interpretation;
use upline_platforms::{dedupe_key, interpret};

/// A header lookup that, like a case-insensitive header map, finds names in any case.
fn headers(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
    move |name: &str| map.get(&name.to_ascii_lowercase()).cloned()
}

/// A lookup that only finds names spelled exactly as given (a naive map).
fn exact_headers(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name: &str| map.get(name).cloned()
}

fn none(_: &str) -> Option<String> {
    None
}

/// How a key names a body: `sha256-` and the hex digest of the bytes.
fn body_hash(body: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let hex: String = Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256-{hex}")
}

fn key(
    platform: Platform,
    header: &dyn Fn(&str) -> Option<String>,
    shop: &ShopId,
    topic: &str,
    body: &[u8],
) -> String {
    let interpretation = interpret(platform, shop, topic, body).unwrap();
    dedupe_key(platform, header, &interpretation, body)
}

#[test]
fn shopify_uses_the_event_id_then_the_webhook_id_bound_to_the_body() {
    let body = fixture("shopify_orders_paid.json");
    let bound = |id: &str| format!("{id}:{}", body_hash(&body));
    let both = headers(&[
        ("X-Shopify-Event-Id", "ev-1"),
        ("X-Shopify-Webhook-Id", "wh-1"),
    ]);
    assert_eq!(
        key(Platform::Shopify, &both, &shop(), "orders/paid", &body),
        bound("shopify:event:ev-1")
    );
    // Found whether the lookup wants lower case or the documented spelling.
    let lower = exact_headers(&[("x-shopify-event-id", "ev-1")]);
    let spelled = exact_headers(&[("X-Shopify-Event-Id", "ev-1")]);
    assert_eq!(
        key(Platform::Shopify, &lower, &shop(), "orders/paid", &body),
        bound("shopify:event:ev-1")
    );
    assert_eq!(
        key(Platform::Shopify, &spelled, &shop(), "orders/paid", &body),
        bound("shopify:event:ev-1")
    );
    let webhook = headers(&[("x-shopify-webhook-id", "wh-1")]);
    assert_eq!(
        key(Platform::Shopify, &webhook, &shop(), "orders/paid", &body),
        bound("shopify:webhook:wh-1")
    );
    let hashed = key(Platform::Shopify, &none, &shop(), "orders/paid", &body);
    assert!(
        hashed.starts_with("shopify:demo-store.example.com:sha256:"),
        "{hashed}"
    );
    assert_eq!(hashed.rsplit(':').next().unwrap().len(), 64);
}

#[test]
fn odd_header_values_are_hashed_not_copied() {
    let body = fixture("shopify_orders_paid.json");
    let long = "x".repeat(500);
    let h = headers(&[("x-shopify-event-id", long.as_str())]);
    let k = key(Platform::Shopify, &h, &shop(), "orders/paid", &body);
    assert!(k.starts_with("shopify:event:sha256-"), "{k}");
    assert!(k.len() < 160, "{k}");
    let h = headers(&[("x-shopify-event-id", "a b")]);
    assert!(key(Platform::Shopify, &h, &shop(), "orders/paid", &body).contains("sha256-"));
}

#[test]
fn woocommerce_keys_on_the_delivered_state() {
    let created = fixture("woocommerce_order_created.json");
    let updated = fixture("woocommerce_order_updated.json");
    // The delivery id header changes on every delivery and must not matter.
    let d1 = headers(&[("X-WC-Webhook-Delivery-ID", "aaa")]);
    let d2 = headers(&[("X-WC-Webhook-Delivery-ID", "bbb")]);
    let a = key(
        Platform::Woocommerce,
        &d1,
        &shop(),
        "order.created",
        &created,
    );
    let b = key(
        Platform::Woocommerce,
        &d2,
        &shop(),
        "order.updated",
        &created,
    );
    assert_eq!(a, b);
    assert_eq!(
        a,
        "woocommerce:demo-store.example.com:727:2017-03-22T19:28:08:processing:r0--"
    );
    let c = key(
        Platform::Woocommerce,
        &none,
        &shop(),
        "order.updated",
        &updated,
    );
    assert_ne!(a, c);
    // A refund in the same second is a new state.
    let mut refunded = fixture_json("woocommerce_order_created.json");
    refunded["refunds"] = json!([{"id": 730, "total": "-1.00"}]);
    let d = key(
        Platform::Woocommerce,
        &none,
        &shop(),
        "order.updated",
        &bytes(&refunded),
    );
    assert_ne!(a, d);
    assert!(d.ends_with(":r1-730"), "{d}");
    // The same order id on another shop is another order.
    let other = ShopId::new("other.example.com").unwrap();
    assert_ne!(
        a,
        key(
            Platform::Woocommerce,
            &none,
            &other,
            "order.created",
            &created
        )
    );
    // A ping has no order: its body's hash.
    let ping = key(Platform::Woocommerce, &none, &shop(), "", b"webhook_id=3");
    assert!(ping.starts_with("woocommerce:-:sha256:"), "{ping}");
}

#[test]
fn magento_uses_the_envelope_id_then_headers_then_the_entity_state() {
    let envelope = fixture("magento_io_events_envelope_sample.json");
    assert_eq!(
        key(Platform::Magento, &none, &shop(), "", &envelope),
        "magento:event:23f76cef-9f14-44b1-bbd0-29995789c98e"
    );
    let order = fixture("magento_order_rest_example.json");
    let h = headers(&[("x-adobe-commerce-webhook-id", "hook-9")]);
    assert_eq!(
        key(Platform::Magento, &h, &shop(), "order", &order),
        format!("magento:webhook:hook-9:{}", body_hash(&order))
    );
    assert_eq!(
        key(Platform::Magento, &none, &shop(), "order", &order),
        "magento:demo-store.example.com:order:3:2017-08-21 22:22:20:new"
    );
    let invoice = bytes(&json!({"entity_id": 3, "order_id": 3, "state": 2,
                                "updated_at": "2017-08-21 22:22:20"}));
    let invoice_key = key(Platform::Magento, &none, &shop(), "invoice", &invoice);
    assert_eq!(
        invoice_key,
        "magento:demo-store.example.com:invoice:3:2017-08-21 22:22:20:2"
    );
    let mut saved_again = fixture_json("magento_order_rest_example.json");
    saved_again["updated_at"] = json!("2017-08-21 22:30:00");
    assert_ne!(
        key(Platform::Magento, &none, &shop(), "order", &order),
        key(
            Platform::Magento,
            &none,
            &shop(),
            "order",
            &bytes(&saved_again)
        )
    );
}

#[test]
fn direct_uses_the_idempotency_key_else_the_body() {
    let body = bytes(&json!({"platform": "direct", "platform_order_id": "77",
        "order_ts": "2025-08-28T08:11:04Z", "status": "paid", "currency": "USD",
        "items": [{"platform_sku": "K", "qty": 1, "unit_price": "9.00"}]}));
    let h = headers(&[("Idempotency-Key", "req-123")]);
    assert_eq!(
        key(Platform::Direct, &h, &shop(), "", &body),
        "direct:demo-store.example.com:idem:req-123"
    );
    let a = key(Platform::Direct, &none, &shop(), "", &body);
    assert!(a.starts_with("direct:demo-store.example.com:sha256:"));
    assert_eq!(a, key(Platform::Direct, &none, &shop(), "", &body));
    let other_body = bytes(&json!({"platform": "direct", "platform_order_id": "78",
        "order_ts": "2025-08-28T08:11:04Z", "status": "paid", "currency": "USD",
        "items": [{"platform_sku": "K", "qty": 1, "unit_price": "9.00"}]}));
    assert_ne!(a, key(Platform::Direct, &none, &shop(), "", &other_body));
    let other = ShopId::new("other.example.com").unwrap();
    assert_ne!(a, key(Platform::Direct, &none, &other, "", &body));
}

#[test]
fn ignored_deliveries_still_get_a_key() {
    let ignored = Interpretation::Ignored {
        reason: "test".to_string(),
    };
    let k = dedupe_key(Platform::Shopify, &none, &ignored, b"{}");
    assert_eq!(
        k,
        "shopify:-:sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    );
}

/// Given a captured signed body, when it is posted again with a forged event id or topic, then
/// the key cannot make another body pass for a repeat, and the facts are the body's own.
#[test]
fn an_unsigned_header_cannot_forge_a_repeat_or_a_fact() {
    let pending = fixture("shopify_orders_paid.json");
    let mut paid_value = fixture_json("shopify_orders_paid.json");
    paid_value["financial_status"] = json!("paid");
    paid_value["cancelled_at"] = serde_json::Value::Null;
    let paid = bytes(&paid_value);
    let same_id = headers(&[("x-shopify-event-id", "ev-42")]);

    // A real later event reusing a captured id is not taken as a repeat of the captured body.
    let captured = key(
        Platform::Shopify,
        &same_id,
        &shop(),
        "orders/updated",
        &pending,
    );
    let real = key(
        Platform::Shopify,
        &same_id,
        &shop(),
        "orders/updated",
        &paid,
    );
    assert_ne!(captured, real);

    // A forged new id on the captured body is a new key, but the same facts as before.
    let forged = headers(&[("x-shopify-event-id", "ev-forged")]);
    assert_ne!(
        key(Platform::Shopify, &forged, &shop(), "orders/paid", &pending),
        captured
    );
    let facts = |topic: &str| match interpret(Platform::Shopify, &shop(), topic, &pending) {
        Ok(Interpretation::Order(update)) => update.facts,
        other => panic!("{other:?}"),
    };
    assert_eq!(facts("orders/paid"), facts("orders/updated"));
}
