use upline_app::inbox::sqlite::DeliveryStatus;
use upline_domain::ids::Platform;

use crate::support::*;

const PATH: &str = "/api/mlm/orders";

/// The seed's "Shopify Order Transform": an order already normalised by the sender.
fn normalized_order(order_id: &str) -> Vec<u8> {
    format!(
        r#"{{
  "platform": "shopify",
  "platform_order_id": "{order_id}",
  "order_ts": "2025-08-28T08:11:04Z",
  "status": "paid",
  "currency": "USD",
  "distributor_ref": "ABC123",
  "items": [
    {{"platform_sku": "KIT-STARTER-001", "qty": 1, "unit_price": 99.00}}
  ],
  "total": 96.92
}}"#
    )
    .into_bytes()
}

fn bearer(token: &str) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "application/json".to_string()),
        ("authorization", format!("Bearer {token}")),
    ]
}

#[tokio::test]
async fn a_bearer_token_names_the_shop_and_the_order_is_stored() {
    let server = Server::start().await;
    let body = normalized_order("587364120");
    let (status, answer) = server.post(PATH, &bearer(API_BEARER), &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "accepted");

    let items = server.items().await;
    assert_eq!(items.len(), 1);
    let delivery = &items[0].delivery;
    assert_eq!(delivery.body, body);
    assert_eq!(delivery.platform, Platform::Direct);
    assert_eq!(delivery.shop.as_str(), API_SHOP);
    assert_eq!(delivery.headers["x-upline-api-key"], "erp");
    assert!(
        !delivery.headers.contains_key("authorization"),
        "the token is a secret and is never stored"
    );

    let (status, again) = server.post(PATH, &bearer(API_BEARER), &body).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["status"], "duplicate");
    assert_eq!(again["delivery"], answer["delivery"]);
}

#[tokio::test]
async fn an_hmac_of_the_raw_body_authenticates_too() {
    let server = Server::start().await;
    let body = normalized_order("587364121");
    let headers = [
        ("content-type", "application/json".to_string()),
        ("x-upline-hmac-sha256", hmac_b64(API_HMAC.as_bytes(), &body)),
    ];
    let (status, answer) = server.post(PATH, &headers, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "accepted");
    assert_eq!(server.items().await[0].delivery.shop.as_str(), API_SHOP);

    // A proxy's own Basic credentials do not get in the way of the HMAC.
    let body = normalized_order("587364123");
    let headers = [
        ("authorization", "Basic cHJveHk6cHJveHk=".to_string()),
        ("x-upline-hmac-sha256", hmac_b64(API_HMAC.as_bytes(), &body)),
    ];
    let (status, answer) = server.post(PATH, &headers, &body).await;
    assert_eq!(status, 200, "{answer}");
}

/// Given an order sent with an Idempotency-Key, when the same key comes again with the same
/// body it is a 200 duplicate; with another body it is a 409 naming the key, and nothing of the
/// second body is stored.
#[tokio::test]
async fn an_idempotency_key_is_bound_to_its_body() {
    let server = Server::start().await;
    let keyed = vec![
        ("authorization", format!("Bearer {API_BEARER}")),
        ("idempotency-key", "erp-order-77-v1".to_string()),
    ];
    let first = normalized_order("77");
    let (status, answer) = server.post(PATH, &keyed, &first).await;
    assert_eq!(
        (status, &answer["status"]),
        (200, &"accepted".into()),
        "{answer}"
    );
    let (status, again) = server.post(PATH, &keyed, &first).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["status"], "duplicate");
    assert_eq!(again["delivery"], answer["delivery"]);

    let second = normalized_order("78");
    let (status, conflict) = server.post(PATH, &keyed, &second).await;
    assert_eq!(status, 409, "{conflict}");
    assert_eq!(conflict["status"], "conflict");
    assert_eq!(conflict["idempotency_key"], "erp-order-77-v1");
    assert!(conflict["error"]
        .as_str()
        .unwrap()
        .contains("erp-order-77-v1"));
    let items = server.items().await;
    assert_eq!(items.len(), 1, "the second body is not stored");
    assert_eq!(items[0].delivery.body, first);
    assert_eq!(items[0].duplicates, 1, "only the true repeat counts");
}

#[tokio::test]
async fn bad_or_missing_credentials_are_401_and_nothing_is_recorded() {
    let server = Server::start().await;
    let body = normalized_order("587364122");
    let cases: Vec<Vec<(&str, String)>> = vec![
        bearer("erp-bearer-token-0123456789abcdeX"),
        bearer(""),
        vec![("authorization", format!("Basic {API_BEARER}"))],
        // A wrong bearer is refused even with a valid HMAC beside it.
        vec![
            (
                "authorization",
                "Bearer not-a-token-we-issued-000000".to_string(),
            ),
            ("x-upline-hmac-sha256", hmac_b64(API_HMAC.as_bytes(), &body)),
        ],
        vec![("x-upline-hmac-sha256", String::new())],
        vec![(
            "x-upline-hmac-sha256",
            hmac_b64(b"some other secret", &body),
        )],
        vec![(
            "x-upline-hmac-sha256",
            hmac_b64(API_BEARER.as_bytes(), &body),
        )],
        // The bearer token is not an HMAC secret and vice versa.
        bearer(API_HMAC),
        vec![],
    ];
    for headers in cases {
        let (status, answer) = server.post(PATH, &headers, &body).await;
        assert_eq!(status, 401, "{headers:?}: {answer}");
        assert_eq!(answer["status"], "rejected");
    }
    assert!(inbox_is_empty(&server).await);
}

#[tokio::test]
async fn an_order_that_does_not_parse_is_400_and_parked() {
    let server = Server::start().await;
    let body = br#"{"platform_order_id": "1", "items": [{"qty": "#.to_vec();
    let (status, answer) = server.post(PATH, &bearer(API_BEARER), &body).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["field"].as_str().is_some_and(|f| !f.is_empty()));
    let items = server.items().await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].status, DeliveryStatus::Parked);
}
