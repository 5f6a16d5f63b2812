//! What the gateway writes to its logs: one line per webhook with platform, shop, topic,
//! delivery id, outcome and latency; never a secret, a signature, a token or a body.

use crate::support::*;

#[tokio::test]
async fn logs_name_the_delivery_but_never_a_secret_or_a_body() {
    // The test runtime is single-threaded: the server's tasks log on this thread.
    capture_logs();

    let server = Server::start().await;
    let body = fixture("shopify_orders_paid.json");
    let good = hmac_b64(SHOPIFY_SECRET.as_bytes(), &body);
    let headers = shopify_headers(SHOPIFY_SHOP, "orders/paid", "log-1", Some(good.clone()));
    assert_eq!(
        server.post("/webhooks/shopify", &headers, &body).await.0,
        200
    );

    let bad = hmac_b64(b"forged", &body);
    let headers = shopify_headers(SHOPIFY_SHOP, "orders/paid", "log-2", Some(bad.clone()));
    assert_eq!(
        server.post("/webhooks/shopify", &headers, &body).await.0,
        401
    );

    let broken = br#"{"id": "BODY-MARKER-1234", "line_items": [{"price": "BODY-MARKER-5678"#;
    let headers = shopify_headers(
        SHOPIFY_SHOP,
        "orders/paid",
        "log-3",
        Some(hmac_b64(SHOPIFY_SECRET.as_bytes(), broken)),
    );
    assert_eq!(
        server.post("/webhooks/shopify", &headers, broken).await.0,
        200,
        "kept as parked"
    );

    let wrong_token = "wrong-token-but-still-a-secret-123";
    let direct = [("authorization", format!("Bearer {wrong_token}"))];
    assert_eq!(server.post("/api/mlm/orders", &direct, b"{}").await.0, 401);

    let logs = captured_logs();
    assert!(logs.contains("webhook answered"), "{logs}");
    for expected in [
        "platform=\"shopify\"",
        "shop=\"demo-store.myshopify.com\"",
        "topic=\"orders/paid\"",
        "delivery=\"log-1\"",
        "outcome=\"accepted\"",
        "outcome=\"rejected_signature\"",
        "outcome=\"rejected_payload\"",
        "latency_ms=",
    ] {
        assert!(logs.contains(expected), "{expected} missing from:\n{logs}");
    }
    for secret in [
        SHOPIFY_SECRET,
        SHOPIFY_OLD_SECRET,
        API_BEARER,
        API_HMAC,
        wrong_token,
        good.as_str(),
        bad.as_str(),
        "BODY-MARKER",
        "jon@example.com",
    ] {
        assert!(
            !logs.contains(secret),
            "{secret:?} leaked into the logs:\n{logs}"
        );
    }
}
