use upline_app::inbox::sqlite::DeliveryStatus;
use upline_domain::ids::Platform;
use upline_gateway::ShopConfig;

use crate::support::*;

const SIGNATURE: &str = "x-adobe-commerce-webhook-signature";

fn path() -> String {
    format!("/webhooks/magento?shop={MAGENTO_SHOP}")
}

fn signed(body: &[u8]) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "application/json".to_string()),
        (SIGNATURE, magento_signature(body)),
    ]
}

#[tokio::test]
async fn a_signed_delivery_is_stored_byte_for_byte_and_a_repeat_is_a_duplicate() {
    let server = Server::start().await;
    let body = magento_order_envelope("5b0b6bb2-0b6a-4d8f-9d3e-6c6f3f2e0a11");
    let headers = signed(&body);

    let (status, answer) = server.post(&path(), &headers, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "accepted");

    let items = server.items().await;
    assert_eq!(items.len(), 1);
    let delivery = &items[0].delivery;
    assert_eq!(delivery.body, body, "the exact bytes");
    assert_eq!(delivery.platform, Platform::Magento);
    assert_eq!(delivery.shop.as_str(), MAGENTO_SHOP);
    assert_eq!(
        delivery.topic, "observer.sales_order_save_after",
        "the envelope's type, without its com.adobe.commerce. prefix"
    );
    assert!(!delivery.headers.contains_key(SIGNATURE));

    let (status, again) = server.post(&path(), &headers, &body).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["status"], "duplicate");
    assert_eq!(again["delivery"], answer["delivery"]);
}

#[tokio::test]
async fn the_only_magento_shop_needs_no_shop_parameter() {
    let server = Server::start().await;
    let body = magento_order_envelope("0d9c1c55-50c4-4f5b-a0e4-3b7f1c1f2f22");
    let (status, answer) = server
        .post("/webhooks/magento", &signed(&body), &body)
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "accepted");
    assert_eq!(server.items().await[0].delivery.shop.as_str(), MAGENTO_SHOP);
}

#[tokio::test]
async fn with_several_magento_shops_the_shop_must_be_named() {
    let mut config = config();
    config.shops.push(ShopConfig {
        platform: Platform::Magento,
        shop: "second-magento.example.com".parse().unwrap(),
        secrets: vec![],
        public_keys_pem: vec![fixture_text("magento_test_public_key.pem")],
        test_orders: Default::default(),
    });
    let server = Server::start_with(config).await;
    let body = magento_order_envelope("6f7a1f0e-7d43-4a0c-9a51-0c1b8e3f3f33");
    let (status, _) = server
        .post("/webhooks/magento", &signed(&body), &body)
        .await;
    assert_eq!(status, 401);
    let (status, answer) = server
        .post(
            "/webhooks/magento?shop=second-magento.example.com",
            &signed(&body),
            &body,
        )
        .await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test]
async fn wrong_or_missing_signatures_and_unknown_shops_are_401() {
    let server = Server::start().await;
    let body = magento_order_envelope("a1");
    let other = magento_order_envelope("a2");
    let cases: Vec<(String, Vec<(&str, String)>)> = vec![
        // Signed over other bytes.
        (path(), vec![(SIGNATURE, magento_signature(&other))]),
        (path(), vec![(SIGNATURE, "AAAA".to_string())]),
        (path(), vec![(SIGNATURE, "%%% not base64".to_string())]),
        (path(), vec![]),
        (
            "/webhooks/magento?shop=unknown.example.com".to_string(),
            signed(&body),
        ),
    ];
    for (path, headers) in cases {
        let (status, answer) = server.post(&path, &headers, &body).await;
        assert_eq!(status, 401, "{path} {headers:?}: {answer}");
    }
    assert!(inbox_is_empty(&server).await);
}

#[tokio::test]
async fn malformed_json_with_a_valid_signature_is_200_parked_naming_the_field() {
    let server = Server::start().await;
    let body = br#"{"type": "com.adobe.commerce.observer.sales_order_save_after", "data": {"value": {"entity_id": "#
        .to_vec();
    let (status, answer) = server.post(&path(), &signed(&body), &body).await;
    assert_eq!(status, 200, "kept, so the hook stays enabled: {answer}");
    assert_eq!(answer["status"], "parked");
    assert!(answer["field"].as_str().is_some_and(|f| !f.is_empty()));
    let items = server.items().await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].id, answer["delivery"].as_i64().unwrap());
    assert_eq!(items[0].status, DeliveryStatus::Parked);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let server = Server::start().await;
    let body = vec![b'{'; TEST_MAX_BODY * 2];
    let (status, _) = server.post(&path(), &signed(&body), &body).await;
    assert_eq!(status, 413);
}

#[tokio::test]
async fn an_event_that_is_not_about_an_order_is_200_ignored() {
    let server = Server::start().await;
    // Adobe's sample: a product saved.
    let body = fixture("magento_io_events_envelope_sample.json");
    let (status, answer) = server.post(&path(), &signed(&body), &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "ignored");
    assert!(inbox_is_empty(&server).await);
}

#[tokio::test]
async fn a_plain_entity_takes_its_topic_from_the_url_or_a_header() {
    let server = Server::start().await;
    let body = fixture("magento_order_rest_example.json");
    let (status, answer) = server
        .post(
            &format!("/webhooks/magento?shop={MAGENTO_SHOP}&topic=observer.sales_order_save_after"),
            &signed(&body),
            &body,
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "accepted");
    let items = server.items().await;
    assert_eq!(items[0].delivery.topic, "observer.sales_order_save_after");

    // The same order with the topic in a hook header: the same state, so a duplicate.
    let mut headers = signed(&body);
    headers.push(("x-upline-topic", "order".to_string()));
    let (status, again) = server.post(&path(), &headers, &body).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["status"], "duplicate");

    // Without any topic, a plain entity means nothing we know.
    let (status, answer) = server.post(&path(), &signed(&body), &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "ignored");
}
