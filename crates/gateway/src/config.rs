//! The gateway's configuration: which shops may send webhooks and how each is verified, which
//! API keys may use `/api/mlm/orders`, and the body limit. Loaded from TOML by the binary
//! (`toml::from_str::<GatewayConfig>`), validated by [`GatewayConfig::validate`] (also called by
//! `Gateway::new`), every error naming its field.

use std::collections::BTreeSet;
use std::fmt;

use serde::Deserialize;
use upline_domain::ids::{Platform, ShopId};

use crate::limits::{
    DEFAULT_MAX_BODY_BYTES, MAX_API_KEYS, MAX_BODY_BYTES_CEILING, MAX_PUBLIC_KEYS_PER_SHOP,
    MAX_SECRETS_PER_SHOP, MAX_SECRET_BYTES, MAX_SHOPS, MIN_API_SECRET_BYTES,
};

/// The whole gateway configuration.
///
/// ```toml
/// max_body_bytes = 1048576
/// replay_window_hours = 72
///
/// [[shops]]
/// platform = "shopify"
/// shop = "acme.myshopify.com"
/// secrets = ["new-app-secret", "old-app-secret"]
/// test_orders = "earn"        # default "record": test orders are recorded, nobody earns
///
/// [[api_keys]]
/// name = "erp"
/// shop = "erp.acme.example"
/// bearer_token = "a-long-random-token-of-32-chars"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// The shops whose webhooks are accepted, one entry per (platform, shop). A webhook from a
    /// shop not listed here is answered 401: we hold no key to verify it with.
    #[serde(default)]
    pub shops: Vec<ShopConfig>,
    /// The keys that may post to `/api/mlm/orders`; each key names the shop its orders belong to.
    #[serde(default)]
    pub api_keys: Vec<ApiKeyConfig>,
    /// The largest request body accepted, in bytes (default 1 MiB, at most 4 MiB). A larger body
    /// is answered 413 without being read to the end.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// A delivery whose own time (`upline_platforms::replay`: Shopify's signed `updated_at` and
    /// `X-Shopify-Triggered-At`, WooCommerce's `date_modified_gmt`, Magento's `time` /
    /// `updated_at`, the seed's `updated_ts` / `order_ts`) is older than this many hours, or
    /// unreadable, is kept in the inbox as parked instead of processed (default 72, at least 1).
    #[serde(default = "default_replay_window_hours")]
    pub replay_window_hours: u32,
}

fn default_max_body_bytes() -> usize {
    DEFAULT_MAX_BODY_BYTES
}

fn default_replay_window_hours() -> u32 {
    upline_platforms::replay::DEFAULT_WINDOW_HOURS
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            shops: Vec::new(),
            api_keys: Vec::new(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            replay_window_hours: default_replay_window_hours(),
        }
    }
}

/// What a shop's test orders (Shopify `"test": true`) earn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestOrders {
    /// Recorded and reconciled like any order; nobody earns on them (the default: a test
    /// checkout must not pay real money).
    #[default]
    Record,
    /// Earn like real orders (a staging shop whose commissions are themselves a test).
    Earn,
}

/// One shop that sends webhooks.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShopConfig {
    /// `shopify`, `woocommerce` or `magento` (`direct` senders are configured as `api_keys`).
    pub platform: Platform,
    /// The shop as the platform names it: Shopify's `X-Shopify-Shop-Domain`
    /// (`acme.myshopify.com`), the host of WooCommerce's `X-WC-Webhook-Source` (`shop.example.com`),
    /// or for Magento the value of the `?shop=` parameter of the webhook URL (optional when only
    /// one Magento shop is configured). Case-insensitive.
    pub shop: ShopId,
    /// Shopify and WooCommerce: the webhook secret (Shopify: the app's client secret; WooCommerce:
    /// the webhook's secret exactly as typed in the admin, HTML entities and all). One, or two
    /// while a rotation is under way: a signature made with either is accepted. Must be empty for
    /// Magento.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Magento / Adobe Commerce: the PEM public key(s) from Stores > Settings > Configuration >
    /// Adobe Services > Webhooks. One, or two during a key-pair rotation. Must be empty for the
    /// other platforms.
    #[serde(default)]
    pub public_keys_pem: Vec<String>,
    /// Whether the shop's test orders earn commissions: `"record"` (default) or `"earn"`.
    #[serde(default)]
    pub test_orders: TestOrders,
}

impl fmt::Debug for ShopConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShopConfig")
            .field("platform", &self.platform)
            .field("shop", &self.shop)
            .field(
                "secrets",
                &format_args!("[{} redacted]", self.secrets.len()),
            )
            .field("public_keys_pem", &self.public_keys_pem.len())
            .field("test_orders", &self.test_orders)
            .finish()
    }
}

/// One key for the seed's own endpoint, `POST /api/mlm/orders`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// A name for logs and metrics (never the secret itself). Unique.
    pub name: String,
    /// The shop the orders sent with this key belong to.
    pub shop: ShopId,
    /// Accepted as `Authorization: Bearer <token>`. At least 16 bytes; unique across keys.
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// Accepted as `X-Upline-Hmac-Sha256: base64(HMAC-SHA256(secret, raw body))`. At least 16
    /// bytes. A key needs a bearer token, an HMAC secret, or both.
    #[serde(default)]
    pub hmac_secret: Option<String>,
}

impl fmt::Debug for ApiKeyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyConfig")
            .field("name", &self.name)
            .field("shop", &self.shop)
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "redacted"),
            )
            .field(
                "hmac_secret",
                &self.hmac_secret.as_ref().map(|_| "redacted"),
            )
            .finish()
    }
}

/// A configuration error, naming the field (`shops[2].secrets`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        message: message.into(),
    }
}

impl GatewayConfig {
    /// The shops whose test orders earn (`test_orders = "earn"`), for the application's
    /// calculation context.
    pub fn test_orders_earn(&self) -> BTreeSet<(Platform, ShopId)> {
        self.shops
            .iter()
            .filter(|s| s.test_orders == TestOrders::Earn)
            .map(|s| (s.platform, s.shop.clone()))
            .collect()
    }

    /// The replay window as a duration.
    pub fn replay_window(&self) -> chrono::Duration {
        chrono::Duration::hours(i64::from(self.replay_window_hours))
    }

    /// Checks everything that can be checked without a request; the first problem found is
    /// returned, naming its field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_body_bytes == 0 {
            return Err(err("max_body_bytes", "must be at least 1"));
        }
        if self.max_body_bytes > MAX_BODY_BYTES_CEILING {
            return Err(err(
                "max_body_bytes",
                format!(
                    "{} is above the ceiling of {MAX_BODY_BYTES_CEILING} bytes",
                    self.max_body_bytes
                ),
            ));
        }
        if self.replay_window_hours == 0 {
            return Err(err(
                "replay_window_hours",
                "must be at least 1 (every delivery would be parked)",
            ));
        }
        if self.shops.len() > MAX_SHOPS {
            return Err(err(
                "shops",
                format!("{} shops, at most {MAX_SHOPS}", self.shops.len()),
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, shop) in self.shops.iter().enumerate() {
            let at = |field: &str| format!("shops[{i}].{field}");
            if !seen.insert((shop.platform, shop.shop.clone())) {
                return Err(err(
                    at("shop"),
                    format!("{} shop {} is configured twice", shop.platform, shop.shop),
                ));
            }
            for (j, secret) in shop.secrets.iter().enumerate() {
                if secret.is_empty() {
                    return Err(err(format!("shops[{i}].secrets[{j}]"), "is empty"));
                }
                if secret.len() > MAX_SECRET_BYTES {
                    return Err(err(
                        format!("shops[{i}].secrets[{j}]"),
                        format!("longer than {MAX_SECRET_BYTES} bytes"),
                    ));
                }
            }
            for (j, pem) in shop.public_keys_pem.iter().enumerate() {
                let field = format!("shops[{i}].public_keys_pem[{j}]");
                if pem.len() > MAX_SECRET_BYTES {
                    return Err(err(field, format!("longer than {MAX_SECRET_BYTES} bytes")));
                }
                if !pem.trim_start().starts_with("-----BEGIN ") {
                    return Err(err(
                        field,
                        "is not a PEM document (-----BEGIN PUBLIC KEY-----)",
                    ));
                }
            }
            match shop.platform {
                Platform::Shopify | Platform::Woocommerce => {
                    if shop.secrets.is_empty() {
                        return Err(err(
                            at("secrets"),
                            format!("a {} shop needs its webhook secret", shop.platform),
                        ));
                    }
                    if shop.secrets.len() > MAX_SECRETS_PER_SHOP {
                        return Err(err(
                            at("secrets"),
                            format!(
                                "{} secrets, at most {MAX_SECRETS_PER_SHOP} (the current one and \
                                 the one being rotated out)",
                                shop.secrets.len()
                            ),
                        ));
                    }
                    if shop.secrets.len() == 2 && shop.secrets[0] == shop.secrets[1] {
                        return Err(err(at("secrets"), "the same secret twice"));
                    }
                    if !shop.public_keys_pem.is_empty() {
                        return Err(err(
                            at("public_keys_pem"),
                            format!(
                                "{} signs with a shared secret; public keys are for magento",
                                shop.platform
                            ),
                        ));
                    }
                }
                Platform::Magento => {
                    if shop.public_keys_pem.is_empty() {
                        return Err(err(
                            at("public_keys_pem"),
                            "a magento shop needs the webhook public key from its admin",
                        ));
                    }
                    if shop.public_keys_pem.len() > MAX_PUBLIC_KEYS_PER_SHOP {
                        return Err(err(
                            at("public_keys_pem"),
                            format!(
                                "{} keys, at most {MAX_PUBLIC_KEYS_PER_SHOP}",
                                shop.public_keys_pem.len()
                            ),
                        ));
                    }
                    if !shop.secrets.is_empty() {
                        return Err(err(
                            at("secrets"),
                            "magento signs with RSA: configure public_keys_pem, not secrets",
                        ));
                    }
                }
                Platform::Direct => {
                    return Err(err(
                        at("platform"),
                        "direct senders are configured under api_keys, not shops",
                    ));
                }
            }
        }

        if self.api_keys.len() > MAX_API_KEYS {
            return Err(err(
                "api_keys",
                format!("{} keys, at most {MAX_API_KEYS}", self.api_keys.len()),
            ));
        }
        let mut names = BTreeSet::new();
        let mut tokens = BTreeSet::new();
        for (i, key) in self.api_keys.iter().enumerate() {
            let at = |field: &str| format!("api_keys[{i}].{field}");
            let name = key.name.trim();
            if name.is_empty() {
                return Err(err(at("name"), "is empty"));
            }
            if name.len() > 64 {
                return Err(err(at("name"), "longer than 64 characters"));
            }
            if !names.insert(name.to_string()) {
                return Err(err(at("name"), format!("{name:?} is used twice")));
            }
            if key.bearer_token.is_none() && key.hmac_secret.is_none() {
                return Err(err(
                    at("bearer_token"),
                    "a key needs a bearer_token, an hmac_secret, or both",
                ));
            }
            for (field, value) in [
                ("bearer_token", &key.bearer_token),
                ("hmac_secret", &key.hmac_secret),
            ] {
                if let Some(value) = value {
                    if value.len() < MIN_API_SECRET_BYTES {
                        return Err(err(
                            at(field),
                            format!("shorter than {MIN_API_SECRET_BYTES} bytes"),
                        ));
                    }
                    if value.len() > MAX_SECRET_BYTES {
                        return Err(err(
                            at(field),
                            format!("longer than {MAX_SECRET_BYTES} bytes"),
                        ));
                    }
                }
            }
            if let Some(token) = &key.bearer_token {
                if token.bytes().any(|b| !(0x21..=0x7e).contains(&b)) {
                    return Err(err(
                        at("bearer_token"),
                        "may only hold visible ASCII characters (it travels in a header)",
                    ));
                }
                if !tokens.insert(token.clone()) {
                    return Err(err(at("bearer_token"), "is also another key's token"));
                }
            }
        }
        Ok(())
    }
}
