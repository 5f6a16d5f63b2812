//! Every bound the gateway enforces, with the reason for its value.

use std::time::Duration;

/// The default largest webhook body, in bytes (1 MiB). Shopify and WooCommerce order payloads
/// are a few kilobytes to a few hundred kilobytes even with hundreds of lines; a megabyte leaves
/// room for that while keeping one request's memory bounded.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// The largest `max_body_bytes` a configuration may ask for (4 MiB): the event store refuses an
/// event above 4 MiB, and a body that could never become an event has no business in the inbox.
pub const MAX_BODY_BYTES_CEILING: usize = 4 * 1024 * 1024;

/// The most shops one gateway serves. Shops are looked up in a map, but each is configuration an
/// operator maintains by hand; far more than this means the configuration is generated wrongly.
pub const MAX_SHOPS: usize = 1_000;

/// The most API keys for `/api/mlm/orders`. An HMAC request is checked against every key that
/// has an HMAC secret, so the count bounds the work one unauthenticated request can cause.
pub const MAX_API_KEYS: usize = 100;

/// Secrets per shop: the current one and, during a rotation, the previous one (Shopify takes up
/// to an hour to switch). Each extra secret is one more HMAC per request.
pub const MAX_SECRETS_PER_SHOP: usize = 2;

/// Public keys per Magento shop: the current key pair and, during a rotation, the previous one.
pub const MAX_PUBLIC_KEYS_PER_SHOP: usize = 2;

/// The longest secret, token or PEM document accepted in the configuration (16 KiB; an RSA-8192
/// public key in PEM is about 1.5 KiB).
pub const MAX_SECRET_BYTES: usize = 16 * 1024;

/// The shortest bearer token or HMAC secret for `/api/mlm/orders`. We issue these ourselves, so
/// there is no reason to accept a guessable one (16 bytes of random text is ~96 bits).
pub const MIN_API_SECRET_BYTES: usize = 16;

/// The longest value of any header the gateway reads (shop domain, topic, signature, delivery id,
/// source URL). A base64 RSA-4096 signature is 684 characters; a URL of 2 KiB is already absurd.
/// A longer header is treated as absent (and so never reaches a log or the inbox).
pub const MAX_HEADER_VALUE_BYTES: usize = 2048;

/// The longest topic kept. Platform topics are short (`orders/paid`,
/// `observer.sales_order_creditmemo_save_after`).
pub const MAX_TOPIC_BYTES: usize = 128;

/// Webhooks handled at once, per gateway. Each may hold up to `max_body_bytes` in memory, so
/// this bounds the memory of bodies being read to `512 x max_body_bytes` (512 MiB at the default,
/// far less in practice: real bodies are small). Beyond it a delivery is answered 503 at once and
/// the platform retries; a single shop's webhooks never come near this.
pub const MAX_WEBHOOKS_IN_FLIGHT: usize = 512;

/// How long a client may take to send its body. Shopify answers are expected within 5 s, so a
/// sender slower than this is not a platform, and a slow sender must not hold a connection.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the inbox may take to store a delivery before we answer 503 (the platform retries;
/// a write that finishes late is caught as a duplicate). Below Shopify's 5 s answer budget.
pub const INBOX_TIMEOUT: Duration = Duration::from_secs(4);

/// How long `/readyz` and `/metrics` wait for `inbox.stats()`.
pub const STATS_TIMEOUT: Duration = Duration::from_secs(2);

/// Buckets of `upline_webhook_answer_seconds`: the seed's targets are 120 ms (great) and 300 ms
/// (good); Shopify gives up at 5 s.
pub const ANSWER_SECONDS_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.12, 0.25, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0,
];
