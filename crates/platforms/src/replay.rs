//! The replay window: how old a delivery says it is, so that the gateway can park a captured
//! delivery replayed long after the fact instead of processing it. Pure: the caller passes `now`
//! (the gateway reads the clock; nothing here does).
//!
//! The time looked at, per platform:
//! - **Shopify**: the signed body's own time (`updated_at`, else `created_at`: a refund body has
//!   only the latter) *and*, when present, the `X-Shopify-Triggered-At` header. The header is not
//!   signed, so it can only make a delivery more suspicious: an old or unreadable header parks
//!   it; a fresh one never rescues an old body, and it never decides a fact or a fact's time.
//! - **WooCommerce**: `date_modified_gmt` (else `date_modified`): WooCommerce sends the order's
//!   state when the delivery runs, so the modification time is the event's time. No header
//!   carries a time.
//! - **Magento**: the Adobe I/O Events envelope's `time`; otherwise the entity's `updated_at`
//!   (else `created_at`), in the webhook (`data.order`, `data.invoice`, `data.creditmemo`) or
//!   plain form.
//! - **Direct** (`/api/mlm/orders`): `updated_ts`, else `order_ts`. A backfill of older orders
//!   is parked and processed by `upline parked retry`, or sent with a larger window configured.
//!
//! A delivery is stale when that time is more than the window before `now`, and unreadable when
//! the field is missing or not a timestamp; both are errors naming the field. A time in the
//! future is not stale (clocks differ; the fact's own time is what the order records).

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use upline_domain::ids::Platform;

use crate::common::{self, parse_time};
use crate::error::PayloadError;

/// The window when none is configured: 72 hours. Shopify retries a failed delivery for 4 hours
/// and WooCommerce not at all, so a genuine delivery is minutes old; three days leave room for an
/// outage of ours over a weekend.
pub const DEFAULT_WINDOW_HOURS: u32 = 72;

/// Checks that the delivery's own time (module notes) is within `window` of `now`. `header`
/// looks a request header up by its lower-case name.
pub fn check(
    platform: Platform,
    header: &dyn Fn(&str) -> Option<String>,
    body: &[u8],
    now: DateTime<Utc>,
    window: Duration,
) -> Result<(), PayloadError> {
    let value = common::parse_value(body)?;
    if platform == Platform::Shopify {
        if let Some(triggered) = header("x-shopify-triggered-at") {
            fresh("X-Shopify-Triggered-At", &triggered, now, window)?;
        }
    }
    let (field, text) = body_time(platform, &value)?;
    fresh(&field, &text, now, window)
}

/// The body's time field: its JSON path and its text.
fn body_time(platform: Platform, value: &Value) -> Result<(String, String), PayloadError> {
    let candidates: Vec<(&str, Vec<&str>)> = match platform {
        Platform::Shopify => vec![("", vec!["updated_at", "created_at"])],
        Platform::Woocommerce => vec![("", vec!["date_modified_gmt", "date_modified"])],
        Platform::Magento => vec![
            ("", vec!["time"]),
            ("data.value.", vec!["updated_at", "created_at"]),
            ("data.order.", vec!["updated_at", "created_at"]),
            ("data.invoice.", vec!["updated_at", "created_at"]),
            ("data.creditmemo.", vec!["updated_at", "created_at"]),
            ("", vec!["updated_at", "created_at"]),
        ],
        Platform::Direct => vec![("", vec!["updated_ts", "order_ts"])],
    };
    let mut first_missing = None;
    for (prefix, names) in &candidates {
        let object = prefix
            .trim_end_matches('.')
            .split('.')
            .filter(|p| !p.is_empty())
            .try_fold(value, |v, key| v.get(key));
        let Some(object) = object.filter(|o| o.is_object()) else {
            continue;
        };
        for name in names {
            match object.get(*name) {
                Some(Value::String(text)) if !text.trim().is_empty() => {
                    return Ok((format!("{prefix}{name}"), text.clone()));
                }
                Some(Value::Null) | None => {}
                Some(_) => {
                    return Err(PayloadError::new(
                        format!("{prefix}{name}"),
                        "is not a timestamp: the replay window cannot be checked",
                    ));
                }
            }
        }
        first_missing.get_or_insert_with(|| format!("{prefix}{}", names[0]));
    }
    Err(PayloadError::new(
        first_missing.unwrap_or_else(|| candidates[0].1[0].to_string()),
        "is required: the replay window cannot be checked without the delivery's time",
    ))
}

fn fresh(
    field: &str,
    text: &str,
    now: DateTime<Utc>,
    window: Duration,
) -> Result<(), PayloadError> {
    let at = parse_time(text).map_err(|e| {
        PayloadError::new(field, format!("{e}: the replay window cannot be checked"))
    })?;
    let oldest = now
        .checked_sub_signed(window)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    if at < oldest {
        return Err(PayloadError::new(
            field,
            format!(
                "{} is older than the replay window ({} h before {}): kept, not processed",
                at.to_rfc3339(),
                window.num_hours(),
                now.to_rfc3339()
            ),
        ));
    }
    Ok(())
}
