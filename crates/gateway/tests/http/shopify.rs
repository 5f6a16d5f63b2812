use upline_app::inbox::sqlite::DeliveryStatus;
use upline_domain::ids::Platform;

use crate::support::*;

const PATH: &str = "/webhooks/shopify";

fn orders_paid() -> Vec<u8> {
    fixture("shopify_orders_paid.json")
}

#[tokio::test]
async fn a_signed_delivery_is_stored_byte_for_byte_and_a_repeat_is_a_duplicate() {
    let server = Server::start().await;
    let body = orders_paid();
    let headers = shopify_headers(
        SHOPIFY_SHOP,
        "orders/paid",
        "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        Some(hmac_b64(SHOPIFY_SECRET.as_bytes(), &body)),
    );

    let (status, answer) = server.post(PATH, &headers, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "accepted");
    let id = answer["delivery"].as_i64().unwrap();

    let items = server.items().await;
    assert_eq!(items.len(), 1);
    let item = &items[0];
    assert_eq!(item.id, id);
    assert_eq!(item.status, DeliveryStatus::Pending);
    let delivery = &item.delivery;
    assert_eq!(delivery.body, body, "the exact bytes");
    assert_eq!(delivery.platform, Platform::Shopify);
    assert_eq!(delivery.shop.as_str(), SHOPIFY_SHOP);
    assert_eq!(delivery.topic, "orders/paid");
    assert_eq!(delivery.delivery_id, "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043");
    assert!(!delivery.dedupe_key.is_empty());
    assert_eq!(delivery.headers["x-shopify-api-version"], "2026-04");
    assert_eq!(delivery.headers["x-shopify-topic"], "orders/paid");
    assert!(
        !delivery.headers.contains_key("x-shopify-hmac-sha256"),
        "signatures are not kept"
    );

    // Shopify retries with the original payload and headers.
    let (status, answer) = server.post(PATH, &headers, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "duplicate");
    assert_eq!(answer["delivery"].as_i64(), Some(id));
    assert_eq!(server.items().await.len(), 1);

    // Another subscription delivering the same event: a new webhook id, the same event id.
    let mut other = headers.clone();
    for (name, value) in other.iter_mut() {
        if *name == "x-shopify-webhook-id" {
            *value = "another-subscription".to_string();
        }
    }
    let (status, answer) = server.post(PATH, &other, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "duplicate");
    assert_eq!(server.items().await.len(), 1);
}

#[tokio::test]
async fn the_previous_secret_is_accepted_during_a_rotation() {
    let server = Server::start().await;
    let body = orders_paid();
    let headers = shopify_headers(
        SHOPIFY_SHOP,
        "orders/paid",
        "rotated-1",
        Some(hmac_b64(SHOPIFY_OLD_SECRET.as_bytes(), &body)),
    );
    let (status, answer) = server.post(PATH, &headers, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "accepted");
    assert_eq!(server.items().await.len(), 1);
}

#[tokio::test]
async fn a_wrong_signature_is_401_and_nothing_is_recorded() {
    let server = Server::start().await;
    let body = orders_paid();
    for signature in [
        hmac_b64(b"not-the-secret", &body),
        // Signed over other bytes (the body was changed on the way).
        hmac_b64(SHOPIFY_SECRET.as_bytes(), b"{}"),
        "not base64 at all!".to_string(),
        String::new() + "AAAA",
    ] {
        let headers = shopify_headers(SHOPIFY_SHOP, "orders/paid", "w-1", Some(signature));
        let (status, answer) = server.post(PATH, &headers, &body).await;
        assert_eq!(status, 401, "{answer}");
        assert_eq!(answer["status"], "rejected");
        let error = answer["error"].as_str().unwrap();
        assert!(!error.contains(SHOPIFY_SECRET));
    }
    assert!(inbox_is_empty(&server).await);
}

#[tokio::test]
async fn a_missing_signature_is_401() {
    let server = Server::start().await;
    let headers = shopify_headers(SHOPIFY_SHOP, "orders/paid", "m-1", None);
    let (status, answer) = server.post(PATH, &headers, &orders_paid()).await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(answer["error"], "missing signature");
    assert!(inbox_is_empty(&server).await);
}

#[tokio::test]
async fn an_unknown_shop_is_401() {
    let server = Server::start().await;
    let body = orders_paid();
    // Signed with a real secret, but for a shop we do not serve.
    let headers = shopify_headers(
        "someone-else.myshopify.com",
        "orders/paid",
        "u-1",
        Some(hmac_b64(SHOPIFY_SECRET.as_bytes(), &body)),
    );
    let (status, answer) = server.post(PATH, &headers, &body).await;
    assert_eq!(status, 401, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("unknown shop"));

    // No shop header at all.
    let (status, _) = server
        .post(
            PATH,
            &[(
                "x-shopify-hmac-sha256",
                hmac_b64(SHOPIFY_SECRET.as_bytes(), &body),
            )],
            &body,
        )
        .await;
    assert_eq!(status, 401);
    assert!(inbox_is_empty(&server).await);
}

#[tokio::test]
async fn malformed_json_with_a_valid_signature_is_200_parked_naming_the_field() {
    let server = Server::start().await;
    let body = br#"{"id": 820982911946154508, "line_items": [ {"#.to_vec();
    let headers = shopify_headers(
        SHOPIFY_SHOP,
        "orders/paid",
        "bad-1",
        Some(hmac_b64(SHOPIFY_SECRET.as_bytes(), &body)),
    );
    let (status, answer) = server.post(PATH, &headers, &body).await;
    // Kept, so 2xx: Shopify deletes a subscription whose deliveries keep failing.
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "parked");
    let field = answer["field"].as_str().unwrap();
    assert!(!field.is_empty());
    let error = answer["reason"].as_str().unwrap();
    assert!(error.starts_with(&format!("{field}: ")), "{error}");

    // Never lost: parked, with its reason, for an operator to replay.
    let items = server.items().await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].id, answer["delivery"].as_i64().unwrap());
    assert_eq!(items[0].status, DeliveryStatus::Parked);
    assert_eq!(items[0].delivery.body, body);
    assert_eq!(items[0].outcome_reason.as_deref(), Some(error));
    assert_eq!(server.stats().await.parked, 1);
    assert_eq!(server.stats().await.pending, 0);

    // Sent again: parked once.
    let (status, again) = server.post(PATH, &headers, &body).await;
    assert_eq!(status, 200);
    assert_eq!(again["delivery"], answer["delivery"]);
    assert_eq!(server.items().await.len(), 1);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let server = Server::start().await;
    let body = vec![b' '; TEST_MAX_BODY + 1];
    let headers = shopify_headers(
        SHOPIFY_SHOP,
        "orders/paid",
        "big-1",
        Some(hmac_b64(SHOPIFY_SECRET.as_bytes(), &body)),
    );
    let (status, answer) = server.post(PATH, &headers, &body).await;
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["status"], "rejected");
    assert!(answer["error"].as_str().unwrap().contains("larger than"));

    // Exactly at the limit is read (and then judged on its merits: here, a payload error).
    let body = vec![b' '; TEST_MAX_BODY];
    let headers = shopify_headers(
        SHOPIFY_SHOP,
        "orders/paid",
        "big-2",
        Some(hmac_b64(SHOPIFY_SECRET.as_bytes(), &body)),
    );
    let (status, _) = server.post(PATH, &headers, &body).await;
    assert_ne!(status, 413);
}

#[tokio::test]
async fn an_unknown_topic_is_200_ignored_and_not_stored() {
    let server = Server::start().await;
    let body = br#"{"id": 690933842, "name": "Super Toys", "domain": "demo-store.myshopify.com"}"#;
    let headers = shopify_headers(
        SHOPIFY_SHOP,
        "shop/update",
        "t-1",
        Some(hmac_b64(SHOPIFY_SECRET.as_bytes(), body)),
    );
    let (status, answer) = server.post(PATH, &headers, body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "ignored");
    assert!(answer["reason"].as_str().is_some_and(|r| !r.is_empty()));
    assert!(inbox_is_empty(&server).await);
}

/// Shopify's own SDK test vector (`Shopify/shopify-api-js`, validate.test.ts), through the real
/// endpoint: the signature verifies (so the answer is not 401) and tampering is refused.
#[tokio::test]
async fn the_shopify_sdk_test_vector_verifies_through_the_endpoint() {
    let server = Server::start().await;
    let body = br#"{"foo": "bar"}"#;
    assert_eq!(body.len(), 14);
    let vector = "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g=";
    assert_eq!(hmac_b64(SDK_SECRET.as_bytes(), body), vector);

    let headers = shopify_headers(SDK_SHOP, "app/uninstalled", "sdk-1", Some(vector.into()));
    let (status, answer) = server.post(PATH, &headers, body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "ignored");

    let (status, _) = server.post(PATH, &headers, br#"{"foo":"bar"}"#).await;
    assert_eq!(status, 401, "one space less is another body");
}
