//! What a verified delivery that is kept gets back: a 2xx on the platform webhooks (parked ones
//! too, naming the field), a 400 naming the field on the seed endpoint; and the replay window.

use chrono::{Duration, SecondsFormat, Utc};
use serde_json::{json, Value};
use upline_app::inbox::sqlite::DeliveryStatus;

use crate::support::*;

fn shopify_order(updated_at: &str) -> Value {
    json!({
        "id": 4242, "created_at": updated_at, "updated_at": updated_at, "currency": "USD",
        "financial_status": "paid", "total_price": "39.60",
        "line_items": [{"id": 1, "sku": "SUPP001", "quantity": 2, "price": "19.80"}]
    })
}

fn now_text(ago: Duration) -> String {
    (Utc::now() - ago).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// With the default window of 72 hours.
fn default_window() -> upline_gateway::GatewayConfig {
    upline_gateway::GatewayConfig {
        replay_window_hours: 72,
        ..config()
    }
}

async fn post_shopify(server: &Server, id: &str, triggered_at: &str, body: &[u8]) -> (u16, Value) {
    let mut headers = shopify_headers(
        SHOPIFY_SHOP,
        "orders/paid",
        id,
        Some(hmac_b64(SHOPIFY_SECRET.as_bytes(), body)),
    );
    for (name, value) in headers.iter_mut() {
        if *name == "x-shopify-triggered-at" {
            *value = triggered_at.to_string();
        }
    }
    server.post("/webhooks/shopify", &headers, body).await
}

#[tokio::test]
async fn a_fresh_delivery_is_accepted_and_one_older_than_the_window_is_200_parked() {
    let server = Server::start_with(default_window()).await;
    let fresh = serde_json::to_vec(&shopify_order(&now_text(Duration::minutes(3)))).unwrap();
    let (status, answer) =
        post_shopify(&server, "f-1", &now_text(Duration::minutes(2)), &fresh).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("accepted")),
        "{answer}"
    );

    // A captured body replayed four days later, with a forged fresh header.
    let old = serde_json::to_vec(&shopify_order(&now_text(Duration::hours(96)))).unwrap();
    let (status, answer) = post_shopify(&server, "old-1", &now_text(Duration::zero()), &old).await;
    assert_eq!(status, 200, "kept, so 2xx: {answer}");
    assert_eq!(answer["status"], "parked");
    assert_eq!(answer["field"], "updated_at");
    assert!(
        answer["reason"].as_str().unwrap().contains("replay window"),
        "{answer}"
    );
    let id = answer["delivery"].as_i64().unwrap();
    let item = server.inbox().item(id).await.unwrap().unwrap();
    assert_eq!(
        item.status,
        DeliveryStatus::Parked,
        "kept, not processed, not dropped"
    );
    assert_eq!(item.delivery.body, old);

    // An old or unreadable triggered-at header parks a fresh body.
    for header in ["2020-01-01T00:00:00Z", "not a time"] {
        let (status, answer) = post_shopify(&server, header, header, &fresh).await;
        assert_eq!(status, 200);
        assert_eq!(answer["status"], "parked", "{header}: {answer}");
        assert_eq!(answer["field"], "X-Shopify-Triggered-At");
    }
    assert_eq!(
        server.stats().await.pending,
        1,
        "only the fresh delivery is waiting"
    );
}

#[tokio::test]
async fn the_window_is_configurable() {
    let server = Server::start_with(upline_gateway::GatewayConfig {
        replay_window_hours: 200,
        ..config()
    })
    .await;
    let old = serde_json::to_vec(&shopify_order(&now_text(Duration::hours(96)))).unwrap();
    let (status, answer) = post_shopify(&server, "w-1", &now_text(Duration::hours(96)), &old).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("accepted")),
        "{answer}"
    );
}

#[tokio::test]
async fn a_stale_seed_order_is_400_naming_its_time_and_parked() {
    let server = Server::start_with(default_window()).await;
    let body = json!({"platform": "shopify", "platform_order_id": "9", "status": "paid",
        "order_ts": now_text(Duration::hours(100)), "currency": "USD",
        "items": [{"platform_sku": "SUPP001", "qty": 1, "unit_price": "19.80"}]});
    let headers = [("authorization", format!("Bearer {API_BEARER}"))];
    let (status, answer) = server
        .post(
            "/api/mlm/orders",
            &headers,
            &serde_json::to_vec(&body).unwrap(),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["field"], "order_ts");
    let id = answer["parked"].as_i64().unwrap();
    let item = server.inbox().item(id).await.unwrap().unwrap();
    assert_eq!(item.status, DeliveryStatus::Parked);
}

/// A bad quantity on each platform webhook is kept as parked and answered 200 naming the
/// field; on the seed endpoint it is a 400 naming the field.
#[tokio::test]
async fn a_bad_quantity_is_200_parked_on_platforms_and_400_on_the_seed_endpoint() {
    let server = Server::start().await;

    let mut order: Value = serde_json::from_slice(&fixture("shopify_orders_paid.json")).unwrap();
    order["line_items"][0]["quantity"] = json!(1.5);
    let body = serde_json::to_vec(&order).unwrap();
    let (status, answer) = post_shopify(&server, "q-1", "2022-01-01T00:00:00Z", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "parked");
    assert_eq!(answer["field"], "line_items[0].quantity");

    let mut woo: Value =
        serde_json::from_slice(&fixture("woocommerce_order_created.json")).unwrap();
    woo["line_items"][0]["quantity"] = json!(0);
    let body = serde_json::to_vec(&woo).unwrap();
    let headers = woo_headers(
        "https://shop.example.com/",
        "order.created",
        "q-2",
        Some(hmac_b64(WOO_SECRET_DECODED.as_bytes(), &body)),
    );
    let (status, answer) = server.post("/webhooks/woocommerce", &headers, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["field"], "line_items[0].quantity");

    let mut magento: Value =
        serde_json::from_slice(&fixture("magento_order_rest_example.json")).unwrap();
    magento["items"][0]["qty_ordered"] = json!(-1);
    let body = serde_json::to_vec(&magento).unwrap();
    let headers = [(
        "x-adobe-commerce-webhook-signature",
        magento_signature(&body),
    )];
    let (status, answer) = server
        .post(
            &format!("/webhooks/magento?shop={MAGENTO_SHOP}&topic=order"),
            &headers,
            &body,
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["field"], "items[0].qty_ordered");

    let seed = json!({"platform": "shopify", "platform_order_id": "10", "status": "paid",
        "order_ts": now_text(Duration::minutes(1)), "currency": "USD",
        "items": [{"platform_sku": "SUPP001", "qty": 0, "unit_price": "19.80"}]});
    let headers = [("authorization", format!("Bearer {API_BEARER}"))];
    let (status, answer) = server
        .post(
            "/api/mlm/orders",
            &headers,
            &serde_json::to_vec(&seed).unwrap(),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["field"], "items[0].qty");
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .starts_with("items[0].qty: "));

    assert_eq!(server.stats().await.parked, 4, "all four kept");
}
