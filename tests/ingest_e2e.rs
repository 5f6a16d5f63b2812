//! The whole ingest path over real HTTP, against the server started in-process on the embedded
//! store: each platform's documented payloads reach their order streams; 100 concurrent copies
//! of one delivery record one set of events; the same facts in any order give the same ledger.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use sha2::Sha256;
use upline::config::ServeConfig;
use upline::server::{self, RunningServer};
use upline_app::records::PostingEvent;
use upline_domain::ids::{Platform, ShopId};
use upline_gateway::{ApiKeyConfig, GatewayConfig, ShopConfig, TestOrders};
use upline_store::{AllStart, Direction, StreamFilter, StreamStart};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/crates/platforms/tests/fixtures"
);
const SHOPIFY_SHOP: &str = "demo-store.myshopify.com";
const SHOPIFY_SECRET: &str = "ingest-shopify-secret";
const WOO_SHOP: &str = "woo.example.com";
const WOO_SECRET: &str = "ingest-woo-secret";
const TOKEN: &str = "ingest-bearer-token-0123456789";
/// A replay window (hours) that takes the platforms' documentation samples (2008 on) as fresh;
/// the tests whose bodies are dated now use the default of 72.
const FIXTURE_WINDOW_HOURS: u32 = 24 * 366 * 30;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(Path::new(FIXTURES).join(name)).expect("fixture is in the repository")
}

struct Harness {
    server: RunningServer,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// A server on a fresh data directory with the example plan and network (which maps the seed's
/// SKUs on Shopify and gives distributor 11043 the referral code ABC123).
async fn start() -> Harness {
    start_with(FIXTURE_WINDOW_HOURS, TestOrders::Record).await
}

/// As [`start`], with a replay window and the Shopify shop's test-order policy.
async fn start_with(replay_window_hours: u32, test_orders: TestOrders) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let config = ServeConfig {
        data_dir: dir.path().join("data"),
        listen: "127.0.0.1:0".parse().unwrap(),
        gateway: GatewayConfig {
            shops: vec![
                ShopConfig {
                    platform: Platform::Shopify,
                    shop: ShopId::new(SHOPIFY_SHOP).unwrap(),
                    secrets: vec![SHOPIFY_SECRET.into()],
                    public_keys_pem: vec![],
                    test_orders,
                },
                ShopConfig {
                    platform: Platform::Woocommerce,
                    shop: ShopId::new(WOO_SHOP).unwrap(),
                    secrets: vec![WOO_SECRET.into()],
                    public_keys_pem: vec![],
                    test_orders: Default::default(),
                },
                ShopConfig {
                    platform: Platform::Magento,
                    shop: ShopId::new("main").unwrap(),
                    secrets: vec![],
                    public_keys_pem: vec![fixture("adobe_test_public.pem")],
                    test_orders: Default::default(),
                },
            ],
            api_keys: vec![ApiKeyConfig {
                name: "erp".into(),
                shop: ShopId::new("erp.example").unwrap(),
                bearer_token: Some(TOKEN.into()),
                hmac_secret: None,
            }],
            replay_window_hours,
            ..GatewayConfig::default()
        },
        ..ServeConfig::default()
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    upline::admin::publish_plan(&config, &root.join("examples/plan.toml"))
        .await
        .unwrap();
    upline::admin::import_network(&config, &root.join("examples/network.json"))
        .await
        .unwrap();
    let server = server::start(config).await.unwrap();
    Harness {
        server,
        http: reqwest::Client::new(),
        _dir: dir,
    }
}

fn hmac_base64(secret: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

impl Harness {
    async fn post(&self, path: &str, headers: &[(&str, String)], body: &str) -> (u16, Value) {
        let mut request = self
            .http
            .post(format!("http://{}{path}", self.server.addr))
            .body(body.to_string());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn shopify(&self, topic: &str, event_id: &str, body: &str) -> (u16, Value) {
        let headers = [
            ("x-shopify-topic", topic.to_string()),
            ("x-shopify-shop-domain", SHOPIFY_SHOP.to_string()),
            ("x-shopify-hmac-sha256", hmac_base64(SHOPIFY_SECRET, body)),
            ("x-shopify-event-id", event_id.to_string()),
        ];
        self.post("/webhooks/shopify", &headers, body).await
    }

    async fn events(&self, stream: &str) -> Vec<String> {
        let store = &self.server.services.store;
        let events = store
            .read_stream(stream, Direction::Forwards, StreamStart::Start, 1_000)
            .await
            .unwrap();
        events.into_iter().map(|e| e.event_type).collect()
    }

    /// Each distributor's balance from the postings: earned minus reversed.
    async fn ledger(&self) -> BTreeMap<String, Decimal> {
        let filter = StreamFilter {
            stream_prefixes: vec!["commissions-".into()],
        };
        let events = self
            .server
            .services
            .store
            .read_all(AllStart::Start, &filter, 10_000)
            .await
            .unwrap();
        let mut balances = BTreeMap::new();
        for r in events {
            if r.event_type != PostingEvent::EARNED && r.event_type != PostingEvent::REVERSED {
                continue;
            }
            let signed = match upline_domain::events::decode::<PostingEvent>(&r.event_type, &r.data)
                .unwrap()
            {
                PostingEvent::CommissionEarned { amount, .. } => amount,
                PostingEvent::CommissionReversed { amount, .. } => -amount,
            };
            *balances.entry(r.stream_id).or_insert(Decimal::ZERO) += signed;
        }
        balances
    }

    async fn idle(&self) {
        self.server
            .wait_idle(Duration::from_secs(20))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_platforms_documented_payloads_reach_their_order_streams() {
    let h = start().await;

    // Shopify's documentation sample: a voided, cancelled test order (ids above 2^53 kept exact).
    let (status, answer) = h
        .shopify(
            "orders/paid",
            "evt-doc-paid",
            &fixture("shopify_orders_paid.json"),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "accepted");
    let (status, _) = h
        .shopify(
            "refunds/create",
            "evt-doc-refund",
            &fixture("shopify_refunds_create.json"),
        )
        .await;
    assert_eq!(status, 200);

    // WooCommerce's documented order: processing, with a payment date.
    let woo = fixture("woocommerce_order_created.json");
    let headers = [
        ("x-wc-webhook-topic", "order.created".to_string()),
        ("x-wc-webhook-source", format!("https://{WOO_SHOP}/")),
        ("x-wc-webhook-signature", hmac_base64(WOO_SECRET, &woo)),
    ];
    let (status, answer) = h.post("/webhooks/woocommerce", &headers, &woo).await;
    assert_eq!(status, 200, "{answer}");

    // Adobe Commerce's documented order entity, in an Adobe I/O Events envelope, RSA-signed.
    let entity: Value = serde_json::from_str(&fixture("magento_order_rest_example.json")).unwrap();
    let envelope = json!({"specversion": "1.0", "id": "evt-magento-doc", "source": "urn:test",
        "type": "com.adobe.commerce.observer.sales_order_save_after", "data": {"value": entity}})
    .to_string();
    let key = SigningKey::<Sha256>::new(
        rsa::RsaPrivateKey::from_pkcs8_pem(&fixture("adobe_test_private.pem")).unwrap(),
    );
    let signed = base64::engine::general_purpose::STANDARD.encode(envelope.as_bytes());
    let signature =
        base64::engine::general_purpose::STANDARD.encode(key.sign(signed.as_bytes()).to_bytes());
    let (status, answer) = h
        .post(
            "/webhooks/magento",
            &[("x-adobe-commerce-webhook-signature", signature)],
            &envelope,
        )
        .await;
    assert_eq!(status, 200, "{answer}");

    // The seed's normalised order, through its own endpoint.
    let seed_order = json!({"platform": "shopify", "platform_order_id": "587364120", "order_ts": "2026-08-28T08:11:04Z",
        "status": "paid", "currency": "USD", "distributor_ref": "ABC123",
        "items": [{"platform_sku": "KIT-STARTER-001", "qty": 1, "unit_price": 99.00}], "total": 96.92})
    .to_string();
    let (status, answer) = h
        .post(
            "/api/mlm/orders",
            &[("authorization", format!("Bearer {TOKEN}"))],
            &seed_order,
        )
        .await;
    assert_eq!(status, 200, "{answer}");

    h.idle().await;
    let shopify = h
        .events("order-shopify-demo-store.myshopify.com-820982911946154500")
        .await;
    assert!(shopify.contains(&"OrderPlaced".to_string()), "{shopify:?}");
    assert!(
        shopify.contains(&"OrderCancelled".to_string()),
        "{shopify:?}"
    );
    assert!(
        shopify.contains(&"OrderRefunded".to_string()),
        "{shopify:?}"
    );
    let woo = h.events("order-woocommerce-woo.example.com-727").await;
    assert_eq!(
        woo,
        ["OrderPlaced", "OrderPaid"],
        "unattributed: recorded, no commission"
    );
    let magento = h.events("order-magento-main-3").await;
    assert_eq!(
        magento.first().map(String::as_str),
        Some("OrderPlaced"),
        "{magento:?}"
    );
    let seed = h.events("order-shopify-erp.example-587364120").await;
    assert_eq!(seed, ["OrderPlaced", "OrderPaid", "CommissionCalculated"]);
    // The kit's CV is 50.00; 11043 is level 1 on the starter-kit class (5 %).
    assert_eq!(h.ledger().await["commissions-11043"], Decimal::new(250, 2));
    h.server.stop().await.unwrap();
}

fn attributed_order(financial_status: &str) -> String {
    json!({"id": 9_007_199_254_740_993u64, "created_at": "2026-08-28T08:11:04Z", "updated_at": "2026-08-28T08:11:04Z",
        "currency": "USD", "financial_status": financial_status, "total_price": "59.40", "total_tax": "0.00",
        "line_items": [{"id": 11, "sku": "SUPP001", "quantity": 3, "price": "19.80"}],
        "note_attributes": [{"name": "distributor_ref", "value": "ABC123"}]})
    .to_string()
}

const ORDER_STREAM: &str = "order-shopify-demo-store.myshopify.com-9007199254740993";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_copies_of_one_delivery_record_one_set_of_events() {
    let h = std::sync::Arc::new(start().await);
    let body = attributed_order("paid");
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let h = h.clone();
            let body = body.clone();
            tokio::spawn(async move { h.shopify("orders/paid", "evt-100-copies", &body).await })
        })
        .collect();
    let mut answers: BTreeMap<String, u32> = BTreeMap::new();
    for t in tasks {
        let (status, answer) = t.await.unwrap();
        assert_eq!(status, 200, "{answer}");
        *answers
            .entry(answer["status"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    assert_eq!(answers.get("accepted"), Some(&1), "{answers:?}");
    assert_eq!(answers.get("duplicate"), Some(&99), "{answers:?}");
    h.idle().await;
    assert_eq!(
        h.events(ORDER_STREAM).await,
        ["OrderPlaced", "OrderPaid", "CommissionCalculated"]
    );
    let earned = h
        .events("commissions-11043")
        .await
        .into_iter()
        .filter(|t| t == PostingEvent::EARNED)
        .count();
    assert_eq!(earned, 1);
    let Ok(h) = std::sync::Arc::try_unwrap(h) else {
        panic!("the harness is still shared")
    };
    h.server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_facts_in_any_order_give_the_same_ledger() {
    let refund = json!({"id": 77, "order_id": 9_007_199_254_740_993u64, "created_at": "2026-08-30T10:00:00Z",
        "refund_line_items": [{"id": 1, "line_item_id": 11, "quantity": 1, "subtotal": 19.8, "total_tax": 0.0}]})
    .to_string();
    let deliveries = [
        ("orders/create", "evt-a", attributed_order("pending")),
        ("orders/paid", "evt-b", attributed_order("paid")),
        ("refunds/create", "evt-c", refund),
    ];
    let mut ledgers = Vec::new();
    for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0]] {
        let h = start().await;
        for i in order {
            let (topic, event_id, body) = &deliveries[i];
            let (status, answer) = h.shopify(topic, event_id, body).await;
            assert_eq!(status, 200, "{answer}");
            // One at a time, so the arrival order is the one intended.
            h.idle().await;
        }
        ledgers.push(h.ledger().await);
        h.server.stop().await.unwrap();
    }
    // Two of three supplements kept: 10 % of 39.60 for 11043.
    assert_eq!(ledgers[0]["commissions-11043"], Decimal::new(396, 2));
    assert_eq!(ledgers[1], ledgers[0]);
    assert_eq!(ledgers[2], ledgers[0]);
}

/// A Shopify order dated now, sold by ABC123's owner (11043): two SUPP001 at 19.80.
fn order_now(id: u64, financial_status: &str, extra: Value) -> String {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut order = json!({
        "id": id, "created_at": now, "updated_at": now, "currency": "USD",
        "financial_status": financial_status, "cancelled_at": null,
        "total_price": "39.60", "total_tax": "0.00",
        "line_items": [{"id": id * 10, "sku": "SUPP001", "quantity": 2, "price": "19.80"}],
        "note_attributes": [{"name": "distributor_ref", "value": "ABC123"}]
    });
    if let (Value::Object(o), Value::Object(e)) = (&mut order, extra) {
        o.extend(e);
    }
    order.to_string()
}

/// Given a captured, validly signed body of an order that is not paid, when it is re-posted
/// under orders/paid and orders/cancelled (the unsigned topic header changed), then the order is
/// recorded and nothing is paid, cancelled or posted; the genuinely paid body then pays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reposted_unpaid_body_under_paid_or_cancelled_topics_posts_no_commission() {
    let h = start_with(72, TestOrders::Record).await;
    let unpaid = order_now(7001, "pending", json!({}));
    for (topic, event) in [
        ("orders/create", "evt-7001-create"),
        ("orders/paid", "evt-7001-forged-paid"),
        ("orders/cancelled", "evt-7001-forged-cancel"),
        ("orders/updated", "evt-7001-forged-update"),
    ] {
        let (status, answer) = h.shopify(topic, event, &unpaid).await;
        assert_eq!(status, 200, "{topic}: {answer}");
        assert_ne!(answer["status"], "parked", "{topic}: {answer}");
    }
    h.idle().await;
    let stream = "order-shopify-demo-store.myshopify.com-7001";
    assert_eq!(h.events(stream).await, ["OrderPlaced"]);
    assert!(h.ledger().await.is_empty(), "no commission posted");

    let paid = order_now(7001, "paid", json!({}));
    let (status, _) = h.shopify("orders/paid", "evt-7001-paid", &paid).await;
    assert_eq!(status, 200);
    h.idle().await;
    assert!(h.events(stream).await.contains(&"OrderPaid".to_string()));
    let ledger = h.ledger().await;
    assert!(
        ledger
            .get("commissions-11043")
            .is_some_and(|b| *b > Decimal::ZERO),
        "the real payment pays: {ledger:?}"
    );
}

/// A paid Shopify test order (`"test": true`) is recorded but earns nothing by default; in a
/// shop configured with `test_orders = "earn"` it earns like any order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_order_earns_nothing_unless_the_shop_says_test_orders_earn() {
    let body = order_now(7101, "paid", json!({"test": true}));
    let stream = "order-shopify-demo-store.myshopify.com-7101";

    let recording = start_with(72, TestOrders::Record).await;
    let (status, answer) = recording.shopify("orders/paid", "evt-7101", &body).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("accepted")),
        "{answer}"
    );
    recording.idle().await;
    let events = recording.events(stream).await;
    assert!(events.contains(&"OrderPaid".to_string()), "{events:?}");
    assert!(recording.ledger().await.is_empty(), "{events:?}");

    let earning = start_with(72, TestOrders::Earn).await;
    let (status, _) = earning.shopify("orders/paid", "evt-7101", &body).await;
    assert_eq!(status, 200);
    earning.idle().await;
    let ledger = earning.ledger().await;
    assert!(
        ledger
            .get("commissions-11043")
            .is_some_and(|b| *b > Decimal::ZERO),
        "{ledger:?}"
    );
}
