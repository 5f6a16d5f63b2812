//! Per platform: who sent a delivery and whether its signature holds, over the raw bytes, before
//! anything parses them. Everything that calls `upline_platforms` lives here.

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};
use upline_domain::ids::{Platform, ShopId};
use upline_platforms::signature;

use crate::config::{ConfigError, GatewayConfig};
use crate::limits::{MAX_HEADER_VALUE_BYTES, MAX_TOPIC_BYTES};
use crate::{Inner, ShopKeys};

/// The webhook routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    Shopify,
    Woocommerce,
    Magento,
    /// `/api/mlm/orders`.
    Direct,
}

impl Route {
    /// The platform the delivery is recorded under (and the metrics label).
    pub(crate) fn platform(self) -> Platform {
        match self {
            Route::Shopify => Platform::Shopify,
            Route::Woocommerce => Platform::Woocommerce,
            Route::Magento => Platform::Magento,
            Route::Direct => Platform::Direct,
        }
    }
}

/// The query parameters a webhook URL may carry (Magento only).
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub(crate) struct Params {
    pub(crate) shop: Option<String>,
    pub(crate) topic: Option<String>,
}

/// Why a delivery was not authenticated. Messages name no secret and echo nothing sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejection {
    UnknownShop,
    MissingSignature,
    BadSignature,
    MissingCredentials,
    BadCredentials,
}

impl Rejection {
    pub(crate) fn message(self) -> &'static str {
        match self {
            Rejection::UnknownShop => "unknown shop: no key to verify this delivery with",
            Rejection::MissingSignature => "missing signature",
            Rejection::BadSignature => "invalid signature",
            Rejection::MissingCredentials => {
                "missing credentials: Authorization: Bearer <token> or X-Upline-Hmac-Sha256"
            }
            Rejection::BadCredentials => "invalid credentials",
        }
    }
}

/// A delivery whose sender is proven.
#[derive(Debug, Clone)]
pub(crate) struct Verified {
    pub(crate) shop: ShopId,
    pub(crate) topic: String,
    pub(crate) delivery_id: String,
    pub(crate) headers: BTreeMap<String, String>,
    /// The API key's name (`/api/mlm/orders` only).
    pub(crate) key_name: Option<String>,
}

/// The topic `/api/mlm/orders` deliveries are recorded and interpreted under.
pub(crate) const DIRECT_TOPIC: &str = "mlm/orders";

/// A header's value, if present, visible ASCII, not blank and not longer than
/// [`MAX_HEADER_VALUE_BYTES`].
pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let value = headers.get(name)?;
    if value.len() > MAX_HEADER_VALUE_BYTES {
        return None;
    }
    let value = value.to_str().ok()?.trim();
    (!value.is_empty()).then_some(value)
}

const SHOPIFY_HEADERS: &[&str] = &[
    "x-shopify-topic",
    "x-shopify-shop-domain",
    "x-shopify-webhook-id",
    "x-shopify-event-id",
    "x-shopify-triggered-at",
    "x-shopify-api-version",
    "x-shopify-test",
];
const WOOCOMMERCE_HEADERS: &[&str] = &[
    "x-wc-webhook-topic",
    "x-wc-webhook-source",
    "x-wc-webhook-id",
    "x-wc-webhook-delivery-id",
    "x-wc-webhook-resource",
    "x-wc-webhook-event",
];
const MAGENTO_HEADERS: &[&str] = &[
    "x-upline-topic",
    "x-adobe-commerce-webhook-id",
    "x-adobe-event-id",
];
const DIRECT_HEADERS: &[&str] = &["idempotency-key"];
const COMMON_HEADERS: &[&str] = &["content-type", "user-agent"];

/// The non-secret headers worth keeping with a delivery. Signatures and credentials are never
/// kept: they prove nothing once verified, and a bearer token is a secret.
fn kept_headers(route: Route, headers: &HeaderMap) -> BTreeMap<String, String> {
    let own: &[&str] = match route {
        Route::Shopify => SHOPIFY_HEADERS,
        Route::Woocommerce => WOOCOMMERCE_HEADERS,
        Route::Magento => MAGENTO_HEADERS,
        Route::Direct => DIRECT_HEADERS,
    };
    own.iter()
        .chain(COMMON_HEADERS)
        .filter_map(|name| header(headers, name).map(|v| (name.to_string(), v.to_string())))
        .collect()
}

/// The delivery id a platform gives, or a new uuid.
fn delivery_id(headers: &HeaderMap, name: Option<&str>) -> String {
    name.and_then(|n| header(headers, n))
        .filter(|v| v.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

fn bounded_topic(topic: &str) -> String {
    if topic.len() <= MAX_TOPIC_BYTES {
        topic.to_string()
    } else {
        // Not a topic any platform sends: keep it recognisably cut (interpretation ignores it).
        let mut end = MAX_TOPIC_BYTES;
        while !topic.is_char_boundary(end) {
            end -= 1;
        }
        topic[..end].to_string()
    }
}

/// The host of a URL such as `https://shop.example.com:8443/wp/`, lower-cased, without port or
/// user info. `None` if there is no host.
pub(crate) fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host_port.starts_with('[') {
        // IPv6 literal: cannot be a shop id anyway; keep it so that lookup fails cleanly.
        host_port
    } else {
        host_port.split(':').next()?
    };
    let host = host.trim_end_matches('.');
    (!host.is_empty()).then_some(host)
}

fn shop_from(value: Option<&str>) -> Option<ShopId> {
    ShopId::new(value?).ok()
}

fn hmac_ok(secrets: &[Vec<u8>], body: &[u8], signature: &str) -> bool {
    let refs: Vec<&[u8]> = secrets.iter().map(Vec::as_slice).collect();
    signature::verify_hmac_sha256_base64(&refs, body, signature)
}

/// Finds the sender and checks its signature. Nothing is parsed before this returns `Ok`,
/// except (for Magento) the topic from the body, after verification.
pub(crate) fn verify(
    gw: &Inner,
    route: Route,
    headers: &HeaderMap,
    params: &Params,
    body: &[u8],
) -> Result<Verified, Rejection> {
    match route {
        Route::Shopify => {
            let shop = shop_from(header(headers, "x-shopify-shop-domain"))
                .ok_or(Rejection::UnknownShop)?;
            let Some(ShopKeys::Hmac(secrets)) = gw.shops.get(&(Platform::Shopify, shop.clone()))
            else {
                return Err(Rejection::UnknownShop);
            };
            let signature =
                header(headers, "x-shopify-hmac-sha256").ok_or(Rejection::MissingSignature)?;
            if !hmac_ok(secrets, body, signature) {
                return Err(Rejection::BadSignature);
            }
            Ok(Verified {
                shop,
                topic: bounded_topic(header(headers, "x-shopify-topic").unwrap_or_default()),
                delivery_id: delivery_id(headers, Some("x-shopify-webhook-id")),
                headers: kept_headers(route, headers),
                key_name: None,
            })
        }
        Route::Woocommerce => {
            let shop = shop_from(header(headers, "x-wc-webhook-source").and_then(url_host))
                .ok_or(Rejection::UnknownShop)?;
            let Some(ShopKeys::Hmac(secrets)) =
                gw.shops.get(&(Platform::Woocommerce, shop.clone()))
            else {
                return Err(Rejection::UnknownShop);
            };
            let signature =
                header(headers, "x-wc-webhook-signature").ok_or(Rejection::MissingSignature)?;
            if !hmac_ok(secrets, body, signature) {
                return Err(Rejection::BadSignature);
            }
            Ok(Verified {
                shop,
                topic: bounded_topic(header(headers, "x-wc-webhook-topic").unwrap_or_default()),
                delivery_id: delivery_id(headers, Some("x-wc-webhook-delivery-id")),
                headers: kept_headers(route, headers),
                key_name: None,
            })
        }
        Route::Magento => {
            let shop = match params.shop.as_deref() {
                Some(named) => shop_from(Some(named)),
                None => gw.only_magento_shop.clone(),
            }
            .ok_or(Rejection::UnknownShop)?;
            let Some(ShopKeys::Rsa(keys)) = gw.shops.get(&(Platform::Magento, shop.clone())) else {
                return Err(Rejection::UnknownShop);
            };
            let signature = header(headers, "x-adobe-commerce-webhook-signature")
                .ok_or(Rejection::MissingSignature)?;
            let pems: Vec<&str> = keys.iter().map(String::as_str).collect();
            match signature::verify_adobe_commerce(&pems, body, signature) {
                Ok(true) => {}
                Ok(false) => return Err(Rejection::BadSignature),
                Err(e) => {
                    tracing::warn!(error = %e, "magento signature could not be checked");
                    return Err(Rejection::BadSignature);
                }
            }
            Ok(Verified {
                shop,
                topic: bounded_topic(&magento_topic(headers, params, body)),
                delivery_id: delivery_id(headers, None),
                headers: kept_headers(route, headers),
                key_name: None,
            })
        }
        Route::Direct => {
            let key = direct_key(gw, headers, body)?;
            let mut kept = kept_headers(route, headers);
            kept.insert("x-upline-api-key".to_string(), key.name.clone());
            Ok(Verified {
                shop: key.shop.clone(),
                topic: DIRECT_TOPIC.to_string(),
                delivery_id: delivery_id(headers, None),
                headers: kept,
                key_name: Some(key.name.clone()),
            })
        }
    }
}

/// Magento's topic, in this order:
/// 1. the body's own event name (CloudEvents `type` of an Adobe I/O Events envelope, with its
///    `com.adobe.commerce.` prefix removed, or a top-level `eventName`): the body is signed, so
///    this is the only source an intermediary cannot change;
/// 2. the `?topic=` parameter of the webhook URL (one URL per hook in the Commerce admin);
/// 3. the `x-upline-topic` header (hook headers configured in `webhooks.xml`);
/// 4. otherwise empty, and the interpretation decides from the payload alone.
fn magento_topic(headers: &HeaderMap, params: &Params, body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Named {
        #[serde(rename = "type")]
        kind: Option<String>,
        #[serde(rename = "eventName")]
        event_name: Option<String>,
    }
    if let Ok(named) = serde_json::from_slice::<Named>(body) {
        if let Some(kind) = named.kind.filter(|k| !k.trim().is_empty()) {
            let kind = kind.trim();
            return kind
                .strip_prefix("com.adobe.commerce.")
                .unwrap_or(kind)
                .to_string();
        }
        if let Some(name) = named.event_name.filter(|k| !k.trim().is_empty()) {
            return name.trim().to_string();
        }
    }
    params
        .topic
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .or_else(|| header(headers, "x-upline-topic"))
        .unwrap_or_default()
        .to_string()
}

fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// `/api/mlm/orders`: `Authorization: Bearer <token>`, else our own `X-Upline-Hmac-Sha256`; the
/// key found names the shop. A bearer token that matches no key is refused even if an HMAC header
/// is also present (no second chance); an `Authorization` of another scheme (a proxy's Basic) is
/// left alone and the HMAC header decides.
fn direct_key<'a>(
    gw: &'a Inner,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<&'a crate::ApiKey, Rejection> {
    let authorization = headers.get("authorization");
    let bearer = authorization.and_then(|value| {
        let value = value.to_str().ok()?.trim();
        let (scheme, token) = value.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then_some(token.trim())
    });
    if let Some(token) = bearer {
        if token.is_empty() || token.len() > MAX_HEADER_VALUE_BYTES {
            return Err(Rejection::BadCredentials);
        }
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Every key is compared, so the time taken does not say which one matched.
        let mut found = None;
        for key in &gw.api_keys {
            if let Some(expected) = &key.bearer_sha256 {
                if ct_eq(expected, &presented) && found.is_none() {
                    found = Some(key);
                }
            }
        }
        return found.ok_or(Rejection::BadCredentials);
    }
    if headers.contains_key("x-upline-hmac-sha256") {
        let signature = header(headers, "x-upline-hmac-sha256").ok_or(Rejection::BadCredentials)?;
        // Bounded by MAX_API_KEYS HMACs.
        return gw
            .api_keys
            .iter()
            .find(|key| {
                key.hmac_secret.as_deref().is_some_and(|secret| {
                    signature::verify_hmac_sha256_base64(&[secret], body, signature)
                })
            })
            .ok_or(Rejection::BadCredentials);
    }
    if authorization.is_some() {
        return Err(Rejection::BadCredentials);
    }
    Err(Rejection::MissingCredentials)
}

/// WooCommerce's unsigned `webhook_id=N` ping, sent when a hook is created.
pub(crate) fn is_woocommerce_ping(body: &[u8]) -> bool {
    upline_platforms::woocommerce::is_ping(body)
}

/// The dedupe key of a delivery that is to be parked: its content (per topic), so that the
/// platform's retries of the same broken delivery are parked once.
pub(crate) fn parked_dedupe_key(topic: &str, body: &[u8]) -> String {
    format!("rejected:{topic}:{:x}", Sha256::digest(body))
}

/// Checks at construction that every Magento public key parses, so that a bad key is a
/// configuration error rather than every delivery answered 401.
pub(crate) fn check_public_keys(config: &GatewayConfig) -> Result<(), ConfigError> {
    for (i, shop) in config.shops.iter().enumerate() {
        for (j, pem) in shop.public_keys_pem.iter().enumerate() {
            if let Err(reason) = signature::parse_rsa_public_key(pem) {
                return Err(ConfigError {
                    field: format!("shops[{i}].public_keys_pem[{j}]"),
                    message: format!("not a usable RSA public key: {reason}"),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_hosts() {
        assert_eq!(url_host("https://example.com/"), Some("example.com"));
        assert_eq!(
            url_host("http://Shop.Example.com:8080/wp"),
            Some("Shop.Example.com")
        );
        assert_eq!(
            url_host("https://user:pw@shop.example.com"),
            Some("shop.example.com")
        );
        assert_eq!(url_host("shop.example.com/x?y#z"), Some("shop.example.com"));
        assert_eq!(url_host("https://"), None);
        assert_eq!(url_host("https://[::1]:80/"), Some("[::1]:80"));
    }

    #[test]
    fn constant_time_comparison() {
        assert!(ct_eq(&[7; 32], &[7; 32]));
        let mut other = [7; 32];
        other[31] = 8;
        assert!(!ct_eq(&[7; 32], &other));
    }

    #[test]
    fn topics_are_bounded() {
        assert_eq!(bounded_topic("orders/paid"), "orders/paid");
        assert_eq!(bounded_topic(&"é".repeat(100)).len(), MAX_TOPIC_BYTES);
    }
}
