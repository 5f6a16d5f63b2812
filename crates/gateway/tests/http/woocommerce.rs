use upline_app::inbox::sqlite::DeliveryStatus;
use upline_domain::ids::Platform;

use crate::support::*;

const PATH: &str = "/webhooks/woocommerce";
const SOURCE: &str = "https://Shop.Example.com:443/";

fn order_created() -> Vec<u8> {
    fixture("woocommerce_order_created.json")
}

fn signed(body: &[u8]) -> Option<String> {
    Some(hmac_b64(WOO_SECRET_DECODED.as_bytes(), body))
}

#[tokio::test]
async fn a_signed_delivery_is_stored_byte_for_byte_and_a_repeat_is_a_duplicate() {
    let server = Server::start().await;
    let body = order_created();
    let headers = woo_headers(SOURCE, "order.created", "delivery-1", signed(&body));

    let (status, answer) = server.post(PATH, &headers, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "accepted");

    let items = server.items().await;
    assert_eq!(items.len(), 1);
    let delivery = &items[0].delivery;
    assert_eq!(delivery.body, body, "the exact bytes");
    assert_eq!(delivery.platform, Platform::Woocommerce);
    assert_eq!(
        delivery.shop.as_str(),
        WOO_SHOP,
        "the host of X-WC-Webhook-Source"
    );
    assert_eq!(delivery.topic, "order.created");
    assert_eq!(delivery.delivery_id, "delivery-1");
    assert_eq!(delivery.headers["x-wc-webhook-source"], SOURCE);
    assert!(!delivery.headers.contains_key("x-wc-webhook-signature"));

    // The same delivery again.
    let (status, again) = server.post(PATH, &headers, &body).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["status"], "duplicate");
    assert_eq!(again["delivery"], answer["delivery"]);

    // WooCommerce's delivery id is new on every delivery: the order's state is the identity, so
    // the same state delivered again (order.updated after order.created) is still a duplicate.
    let headers = woo_headers(SOURCE, "order.updated", "delivery-2", signed(&body));
    let (status, again) = server.post(PATH, &headers, &body).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["status"], "duplicate");
    assert_eq!(server.items().await.len(), 1);

    // A new state of the order is a new delivery.
    let updated = fixture("woocommerce_order_updated.json");
    let headers = woo_headers(SOURCE, "order.updated", "delivery-3", signed(&updated));
    let (status, next) = server.post(PATH, &headers, &updated).await;
    assert_eq!(status, 200, "{next}");
    assert_eq!(next["status"], "accepted");
    assert_eq!(server.items().await.len(), 2);
}

#[tokio::test]
async fn the_secret_is_html_entity_decoded_before_signing() {
    let server = Server::start().await;
    let body = order_created();
    // Signed with the secret as configured (still escaped): not what WooCommerce does.
    let headers = woo_headers(
        SOURCE,
        "order.created",
        "d-raw",
        Some(hmac_b64(WOO_SECRET_RAW.as_bytes(), &body)),
    );
    let (status, _) = server.post(PATH, &headers, &body).await;
    assert_eq!(status, 401);
    assert!(inbox_is_empty(&server).await);
}

#[tokio::test]
async fn the_creation_ping_gets_200_and_nothing_is_recorded() {
    let server = Server::start().await;
    // Exactly what WooCommerce posts when a hook is saved: a form body, no signature, no
    // webhook headers.
    let (status, answer) = server
        .post(
            PATH,
            &[(
                "content-type",
                "application/x-www-form-urlencoded".to_string(),
            )],
            b"webhook_id=12",
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "ignored");
    assert!(inbox_is_empty(&server).await);
}

#[tokio::test]
async fn wrong_or_missing_signatures_and_unknown_shops_are_401() {
    let server = Server::start().await;
    let body = order_created();
    let cases = [
        woo_headers(
            SOURCE,
            "order.created",
            "d-1",
            Some(hmac_b64(b"nope", &body)),
        ),
        woo_headers(SOURCE, "order.created", "d-2", None),
        woo_headers(
            "https://other.example.org/",
            "order.created",
            "d-3",
            signed(&body),
        ),
        woo_headers("not a url", "order.created", "d-4", signed(&body)),
    ];
    for headers in cases {
        let (status, answer) = server.post(PATH, &headers, &body).await;
        assert_eq!(status, 401, "{headers:?}: {answer}");
        assert_eq!(answer["status"], "rejected");
    }
    assert!(inbox_is_empty(&server).await);
}

#[tokio::test]
async fn malformed_json_with_a_valid_signature_is_200_parked_naming_the_field() {
    let server = Server::start().await;
    let body = br#"{"id": 727, "status": "processing", "line_items": "#.to_vec();
    let headers = woo_headers(SOURCE, "order.updated", "d-bad", signed(&body));
    let (status, answer) = server.post(PATH, &headers, &body).await;
    // WooCommerce disables a hook after 5 consecutive failures: a kept delivery is a 2xx.
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "parked");
    let field = answer["field"].as_str().unwrap();
    assert!(answer["reason"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{field}: ")));
    let items = server.items().await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].status, DeliveryStatus::Parked);
    assert_eq!(items[0].delivery.body, body);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let server = Server::start().await;
    let body = vec![b'x'; TEST_MAX_BODY + 100];
    let headers = woo_headers(SOURCE, "order.created", "d-big", signed(&body));
    let (status, answer) = server.post(PATH, &headers, &body).await;
    assert_eq!(status, 413, "{answer}");
    assert!(inbox_is_empty(&server).await);
}

#[tokio::test]
async fn an_unknown_topic_is_200_ignored() {
    let server = Server::start().await;
    let body = br#"{"id": 799, "name": "Ship Your Idea", "type": "simple"}"#;
    let headers = woo_headers(SOURCE, "product.created", "d-prod", signed(body));
    let (status, answer) = server.post(PATH, &headers, body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "ignored");
    assert!(inbox_is_empty(&server).await);
}
