//! What each store platform sends, and what it means: signature checks over the raw bytes and
//! payload transforms into normalised order facts. Pure: no I/O, no clock.
//!
//! A delivery goes through, in this order:
//! 1. [`signature`]: verify the raw bytes (Shopify, WooCommerce: HMAC; Adobe Commerce: RSA).
//!    WooCommerce's hook-creation ping (`webhook_id=N`) is unsigned: recognise it first with
//!    [`woocommerce::is_ping`] and answer 200.
//! 2. [`interpret`]: the bytes become an [`model::Interpretation`]: ignored (with a reason), or
//!    an update about one order (its normalised content, when the payload carries it, and facts:
//!    paid, cancelled, refunded). Errors name the JSON path at fault ([`PayloadError`]).
//! 3. [`dedupe_key`]: the platform's identity of the event, so a redelivery is processed once.
//! 4. [`replay::check`]: whether the delivery's own time is within the replay window of a `now`
//!    the caller passes in (the gateway parks a stale delivery instead of processing it).
//!
//! **Facts come from the signed bytes alone.** Shopify and WooCommerce sign the body, not the
//! headers, so a topic header only routes (an order body, a refund body, or ignored) and never
//! decides that an order was paid, cancelled or refunded; unsigned headers can make a delivery
//! more suspicious (the replay window) but never say what happened.
//!
//! Each platform module documents the choices made where the platform's documentation leaves
//! room ([`shopify`], [`woocommerce`], [`magento`], [`direct`]).

mod common;
pub mod direct;
pub mod error;
pub mod magento;
pub mod model;
pub mod replay;
pub mod shopify;
pub mod signature;
pub mod woocommerce;

pub use error::{PayloadError, SignatureError};

use sha2::{Digest, Sha256};
use upline_domain::ids::{Platform, ShopId};

use crate::model::{Interpretation, OrderFact};

/// The most lines one payload may carry: the domain's own bound (`net::MAX_LINES`), checked
/// before any per-line work so that a hostile payload costs nothing beyond parsing.
pub const MAX_LINES: usize = upline_domain::net::MAX_LINES;

/// The longest id accepted (order, line, refund): the domain's bound (`ids::MAX_ID_LEN`), since
/// every id becomes part of a stream name or an event. Platform ids are at most 20 digits.
pub const MAX_ID_LEN: usize = upline_domain::ids::MAX_ID_LEN;

/// The most refunds one order payload may carry. Real orders have a handful; the bound keeps one
/// delivery from turning into an unbounded number of commands.
pub const MAX_REFUNDS: usize = 1000;

/// The most discount codes kept as attribution hints per order. Platforms allow a few codes per
/// order; anything beyond is not attribution, and the hints are stored with the order.
pub const MAX_HINT_VALUES: usize = 32;

/// Interprets one verified delivery from `platform` for `shop`. `topic` is the platform's event
/// name (`X-Shopify-Topic`, `X-WC-Webhook-Topic`, the Adobe Commerce event code from the route;
/// unused for `Direct`).
pub fn interpret(
    platform: Platform,
    shop: &ShopId,
    topic: &str,
    body: &[u8],
) -> Result<Interpretation, PayloadError> {
    match platform {
        Platform::Shopify => shopify::interpret(shop, topic, body),
        Platform::Woocommerce => woocommerce::interpret(shop, topic, body),
        Platform::Magento => magento::interpret(shop, topic, body),
        Platform::Direct => direct::interpret(shop, topic, body),
    }
}

/// The longest header value used as-is in a dedupe key; longer (or odd) values are hashed.
pub const MAX_DEDUPE_HEADER_LEN: usize = 128;

/// The platform's identity of the event a delivery carries, so that the same event delivered
/// twice is processed once. `header` looks a request header up (names are tried in lower case,
/// then as the platform spells them, so either kind of lookup works).
///
/// - Shopify: `X-Shopify-Event-Id` (the same event on every retry), else `X-Shopify-Webhook-Id`,
///   *bound to the body's SHA-256*, else the body's SHA-256 alone. The headers are not signed:
///   bound to the body, a forged id can neither make a different body pass for a repeat (and so
///   suppress a real event) nor make the same body count as a new fact (facts come from the
///   body, so processing it again changes nothing). Shopify retries with the original payload.
/// - WooCommerce has no event id (`X-WC-Webhook-Delivery-ID` is new on every delivery): the
///   delivered *state* is the identity: shop, order id, `date_modified`, status, number of refunds
///   and the newest refund id (a refund in the same second is a new state).
/// - Magento: the I/O Events envelope's `id` (signed, in the body), else an
///   `x-adobe-commerce-webhook-id` / `x-adobe-event-id` header bound to the body's SHA-256 (as
///   for Shopify), else shop + entity kind + `entity_id` + `updated_at` + `state`.
/// - Direct: the `Idempotency-Key` header (per shop), else the body's SHA-256 (per shop). The
///   key is the caller's promise that the body is the same: the inbox binds it to the body, and
///   the gateway answers 409 when the same key comes with another body.
///
/// Anything that cannot be interpreted falls back to the body's SHA-256.
pub fn dedupe_key(
    platform: Platform,
    header: &dyn Fn(&str) -> Option<String>,
    interpretation: &Interpretation,
    body: &[u8],
) -> String {
    let find = |spelled: &str| -> Option<String> {
        header(&spelled.to_ascii_lowercase())
            .or_else(|| header(spelled))
            .map(|v| header_part(&v))
            .filter(|v| !v.is_empty())
    };
    let shop = match interpretation {
        Interpretation::Order(update) => Some(&update.key.shop),
        Interpretation::Ignored { .. } => None,
    };
    let hashed = || format!("{platform}:{}:sha256:{}", shop_part(shop), sha256_hex(body));
    match platform {
        Platform::Shopify => {
            if let Some(id) = find("X-Shopify-Event-Id") {
                format!("shopify:event:{id}:{}", body_hash(body))
            } else if let Some(id) = find("X-Shopify-Webhook-Id") {
                format!("shopify:webhook:{id}:{}", body_hash(body))
            } else {
                hashed()
            }
        }
        Platform::Woocommerce => match (shop, woocommerce::state_fingerprint(body)) {
            (Some(shop), Some(state)) => format!("woocommerce:{shop}:{}", bounded(&state)),
            _ => hashed(),
        },
        Platform::Magento => {
            if let Some(id) = magento::envelope_event_id(body).map(|id| header_part(&id)) {
                format!("magento:event:{id}")
            } else if let Some(id) = find("x-adobe-commerce-webhook-id") {
                format!("magento:webhook:{id}:{}", body_hash(body))
            } else if let Some(id) = find("x-adobe-event-id") {
                format!("magento:event:{id}:{}", body_hash(body))
            } else {
                match (interpretation, magento::state_fingerprint(body)) {
                    (Interpretation::Order(update), Some(state)) => {
                        let kind = if update.order.is_some() {
                            "order"
                        } else if update
                            .facts
                            .iter()
                            .any(|f| matches!(f, OrderFact::Refunded(_)))
                        {
                            "creditmemo"
                        } else {
                            "invoice"
                        };
                        format!("magento:{}:{kind}:{}", update.key.shop, bounded(&state))
                    }
                    _ => hashed(),
                }
            }
        }
        Platform::Direct => match find("Idempotency-Key") {
            Some(key) => format!("direct:{}:idem:{key}", shop_part(shop)),
            None => hashed(),
        },
    }
}

fn shop_part(shop: Option<&ShopId>) -> &str {
    shop.map_or("-", |s| s.as_str())
}

/// A header value fit for a key: trimmed; hashed when long or not plain visible ASCII.
fn header_part(value: &str) -> String {
    let v = value.trim();
    if v.len() <= MAX_DEDUPE_HEADER_LEN && v.bytes().all(|b| b.is_ascii_graphic()) {
        v.to_string()
    } else {
        format!("sha256-{}", sha256_hex(v.as_bytes()))
    }
}

/// The longest payload-derived fingerprint used as-is in a dedupe key.
const MAX_FINGERPRINT_LEN: usize = 256;

/// A fingerprint built from payload fields, hashed when long or holding control characters.
fn bounded(fingerprint: &str) -> String {
    if fingerprint.len() <= MAX_FINGERPRINT_LEN && !fingerprint.chars().any(char::is_control) {
        fingerprint.to_string()
    } else {
        format!("sha256-{}", sha256_hex(fingerprint.as_bytes()))
    }
}

/// The body's identity inside a key built from an unsigned header: `sha256-` and the hex digest.
fn body_hash(body: &[u8]) -> String {
    format!("sha256-{}", sha256_hex(body))
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
