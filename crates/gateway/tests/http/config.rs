use std::sync::Arc;

use upline_app::inbox::sqlite::SqliteInbox;
use upline_domain::ids::Platform;
use upline_gateway::limits::{DEFAULT_MAX_BODY_BYTES, MAX_SHOPS};
use upline_gateway::{ApiKeyConfig, Gateway, GatewayConfig, ShopConfig};

use crate::support::{config, fixture_text};

const EXAMPLE: &str = r#"
# The largest webhook body accepted (bytes). Default 1 MiB, at most 4 MiB.
max_body_bytes = 1048576
# Deliveries whose own time is older than this are parked, not processed. Default 72.
replay_window_hours = 48

[[shops]]
platform = "shopify"
shop = "acme.myshopify.com"
# The app's client secret; during a rotation, the new one and the old one.
secrets = ["new-client-secret", "old-client-secret"]
# Test orders earn like real ones (default "record": recorded, nobody earns).
test_orders = "earn"

[[shops]]
platform = "woocommerce"
shop = "shop.example.com"          # the host of X-WC-Webhook-Source
secrets = ["the secret exactly as typed, &amp; and all"]

[[shops]]
platform = "magento"
shop = "magento.example.com"       # ?shop= in the webhook URL (optional with one magento shop)
public_keys_pem = ["""
PUBLIC_KEY"""]

[[api_keys]]
name = "erp"
shop = "erp.example.com"
bearer_token = "erp-bearer-token-0123456789abcdef"
hmac_secret = "erp-hmac-secret-0123456789abcdef"
"#;

#[test]
fn the_documented_toml_example_loads_and_validates() {
    let text = EXAMPLE.replace(
        "\nPUBLIC_KEY",
        &format!("\n{}", fixture_text("magento_test_public_key.pem")),
    );
    let config: GatewayConfig = toml::from_str(&text).unwrap();
    config.validate().unwrap();
    assert_eq!(config.shops.len(), 3);
    assert_eq!(config.shops[1].platform, Platform::Woocommerce);
    assert_eq!(config.api_keys[0].name, "erp");
    let debug = format!("{config:?}");
    assert!(
        !debug.contains("new-client-secret"),
        "Debug redacts: {debug}"
    );
    assert!(
        !debug.contains("erp-bearer-token"),
        "Debug redacts: {debug}"
    );

    assert_eq!(config.replay_window_hours, 48);
    assert_eq!(
        config.test_orders_earn().into_iter().collect::<Vec<_>>(),
        [(Platform::Shopify, "acme.myshopify.com".parse().unwrap())]
    );

    let minimal: GatewayConfig = toml::from_str("").unwrap();
    assert_eq!(minimal.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
    assert_eq!(minimal.replay_window_hours, 72);
    assert!(minimal.test_orders_earn().is_empty());
    let no_window = GatewayConfig {
        replay_window_hours: 0,
        ..GatewayConfig::default()
    };
    assert_eq!(
        no_window.validate().unwrap_err().field,
        "replay_window_hours"
    );
    assert!(toml::from_str::<GatewayConfig>(
        "[[shops]]\nplatform = \"shopify\"\nshop = \"a.myshopify.com\"\nsecrets = [\"s\"]\ntest_orders = \"maybe\"\n"
    )
    .is_err());
    assert!(toml::from_str::<GatewayConfig>("max_body_byte = 3").is_err());
}

fn shop(platform: Platform, name: &str, secrets: &[&str]) -> ShopConfig {
    ShopConfig {
        platform,
        shop: name.parse().unwrap(),
        secrets: secrets.iter().map(|s| s.to_string()).collect(),
        public_keys_pem: vec![],
        test_orders: Default::default(),
    }
}

fn field_of(config: GatewayConfig) -> String {
    config.validate().unwrap_err().field
}

#[test]
fn configuration_errors_name_their_field() {
    let with_shops = |shops: Vec<ShopConfig>| GatewayConfig {
        shops,
        ..GatewayConfig::default()
    };
    assert_eq!(
        field_of(with_shops(vec![shop(
            Platform::Shopify,
            "a.myshopify.com",
            &[]
        )])),
        "shops[0].secrets"
    );
    assert_eq!(
        field_of(with_shops(vec![shop(
            Platform::Shopify,
            "a.myshopify.com",
            &["1", "2", "3"]
        )])),
        "shops[0].secrets"
    );
    assert_eq!(
        field_of(with_shops(vec![shop(
            Platform::Woocommerce,
            "a.example",
            &[""]
        )])),
        "shops[0].secrets[0]"
    );
    assert_eq!(
        field_of(with_shops(vec![
            shop(Platform::Shopify, "a.myshopify.com", &["s"]),
            shop(Platform::Shopify, "A.myshopify.com", &["t"]),
        ])),
        "shops[1].shop"
    );
    // The same name on two platforms is two shops.
    with_shops(vec![
        shop(Platform::Shopify, "a.example", &["s"]),
        shop(Platform::Woocommerce, "a.example", &["s"]),
    ])
    .validate()
    .unwrap();
    assert_eq!(
        field_of(with_shops(vec![shop(Platform::Magento, "m.example", &[])])),
        "shops[0].public_keys_pem"
    );
    assert_eq!(
        field_of(with_shops(vec![shop(
            Platform::Direct,
            "d.example",
            &["s"]
        )])),
        "shops[0].platform"
    );
    let mut not_pem = shop(Platform::Magento, "m.example", &[]);
    not_pem.public_keys_pem = vec!["ssh-rsa AAAA".into()];
    assert_eq!(
        field_of(with_shops(vec![not_pem])),
        "shops[0].public_keys_pem[0]"
    );
    let too_many = (0..=MAX_SHOPS)
        .map(|i| shop(Platform::Shopify, &format!("s{i}.myshopify.com"), &["s"]))
        .collect();
    assert_eq!(field_of(with_shops(too_many)), "shops");

    for (max_body_bytes, ok) in [
        (0, false),
        (1, true),
        (4 << 20, true),
        ((4 << 20) + 1, false),
    ] {
        let config = GatewayConfig {
            max_body_bytes,
            ..GatewayConfig::default()
        };
        assert_eq!(config.validate().is_ok(), ok, "{max_body_bytes}");
        if !ok {
            assert_eq!(field_of(config), "max_body_bytes");
        }
    }

    let key = |name: &str, bearer: Option<&str>, hmac: Option<&str>| ApiKeyConfig {
        name: name.into(),
        shop: "erp.example".parse().unwrap(),
        bearer_token: bearer.map(Into::into),
        hmac_secret: hmac.map(Into::into),
    };
    let with_keys = |api_keys| GatewayConfig {
        api_keys,
        ..GatewayConfig::default()
    };
    let long = "0123456789abcdef-long-enough";
    assert_eq!(
        field_of(with_keys(vec![key("erp", None, None)])),
        "api_keys[0].bearer_token"
    );
    assert_eq!(
        field_of(with_keys(vec![key("erp", Some("short"), None)])),
        "api_keys[0].bearer_token"
    );
    assert_eq!(
        field_of(with_keys(vec![key("erp", None, Some("short"))])),
        "api_keys[0].hmac_secret"
    );
    assert_eq!(
        field_of(with_keys(vec![key(" ", Some(long), None)])),
        "api_keys[0].name"
    );
    assert_eq!(
        field_of(with_keys(vec![
            key("a", Some(long), None),
            key("a", None, Some(long))
        ])),
        "api_keys[1].name"
    );
    assert_eq!(
        field_of(with_keys(vec![
            key("a", Some(long), None),
            key("b", Some(long), None)
        ])),
        "api_keys[1].bearer_token"
    );
    let message = with_keys(vec![key("a", Some("short"), None)])
        .validate()
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with("api_keys[0].bearer_token: "),
        "{message}"
    );
    assert!(
        !message.contains("short\""),
        "the secret is not echoed: {message}"
    );
}

#[tokio::test]
async fn a_public_key_that_does_not_parse_is_refused_at_construction() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = Arc::new(
        SqliteInbox::open(&dir.path().join("inbox.sqlite"))
            .await
            .unwrap(),
    );
    let mut config = config();
    config.shops[3].public_keys_pem =
        vec!["-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".into()];
    let error = Gateway::new(config, inbox.clone()).err().expect("refused");
    assert_eq!(error.field, "shops[3].public_keys_pem[0]");

    Gateway::new(crate::support::config(), inbox).expect("the test config is valid");
}
