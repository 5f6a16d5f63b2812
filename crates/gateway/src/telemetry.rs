//! Metrics through the `metrics` facade, exported in the Prometheus text format.
//!
//! One recorder per process: [`prometheus`] installs it the first time it is called (tests start
//! several gateways in one process; they share it). Labels are closed sets (platform, outcome),
//! never a shop or an id, so the number of series stays bounded.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use upline_domain::ids::Platform;

use crate::limits::ANSWER_SECONDS_BUCKETS;

/// Counter `{platform, outcome}`: every webhook answered, by what happened to it.
pub const DELIVERIES_TOTAL: &str = "upline_deliveries_total";
/// Histogram `{platform}`: seconds from the request's first byte of handling to the answer.
pub const ANSWER_SECONDS: &str = "upline_webhook_answer_seconds";
/// Gauge: deliveries waiting in the inbox (refreshed on each scrape).
pub const INBOX_DEPTH: &str = "upline_inbox_depth";
/// Gauge: age in seconds of the oldest waiting delivery, 0 when none (refreshed on each scrape).
pub const INBOX_OLDEST_AGE: &str = "upline_inbox_oldest_age_seconds";
/// Gauge: deliveries parked in the inbox (refreshed on each scrape).
pub const INBOX_PARKED: &str = "upline_inbox_parked";

/// What happened to one webhook: the `outcome` label of [`DELIVERIES_TOTAL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// Stored in the inbox for the first time.
    Accepted,
    /// Already in the inbox.
    Duplicate,
    /// Verified, but nothing to do (topic we do not handle, not an order).
    Ignored,
    /// Unknown shop, missing or wrong signature, missing or wrong credentials.
    RejectedSignature,
    /// Verified, but the payload does not parse: parked in the inbox (answered 200 `parked` on a
    /// platform webhook, 400 on `/api/mlm/orders`).
    RejectedPayload,
    /// Verified, but older than the replay window (or its time unreadable): parked in the inbox.
    Stale,
    /// `/api/mlm/orders`: an `Idempotency-Key` already used with another body (409).
    Conflict,
    /// Body above `max_body_bytes`.
    TooLarge,
    /// WooCommerce's `webhook_id=N` ping when a hook is created.
    Ping,
    /// The inbox failed or was too slow: answered 503, the platform retries.
    Unavailable,
    /// The client stopped sending its body, or was too slow.
    Aborted,
}

impl DeliveryOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryOutcome::Accepted => "accepted",
            DeliveryOutcome::Duplicate => "duplicate",
            DeliveryOutcome::Ignored => "ignored",
            DeliveryOutcome::RejectedSignature => "rejected_signature",
            DeliveryOutcome::RejectedPayload => "rejected_payload",
            DeliveryOutcome::Stale => "stale",
            DeliveryOutcome::Conflict => "conflict",
            DeliveryOutcome::TooLarge => "too_large",
            DeliveryOutcome::Ping => "ping",
            DeliveryOutcome::Unavailable => "unavailable",
            DeliveryOutcome::Aborted => "aborted",
        }
    }
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus recorder, installed as the global `metrics` recorder on first use.
///
/// If the process already installed another global recorder, the gateway's metrics go to that
/// one and `/metrics` renders only an empty registry (a warning is logged once).
pub fn prometheus() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(ANSWER_SECONDS.to_string()),
                ANSWER_SECONDS_BUCKETS,
            )
            .expect("the bucket list is not empty");
        match builder.install_recorder() {
            Ok(handle) => {
                describe();
                handle
            }
            Err(e) => {
                tracing::warn!(error = %e, "a metrics recorder was already installed; /metrics will be empty");
                PrometheusBuilder::new().build_recorder().handle()
            }
        }
    })
}

fn describe() {
    metrics::describe_counter!(
        DELIVERIES_TOTAL,
        "Webhook deliveries answered, by platform and outcome"
    );
    metrics::describe_histogram!(
        ANSWER_SECONDS,
        metrics::Unit::Seconds,
        "Time to answer a webhook, by platform"
    );
    metrics::describe_gauge!(INBOX_DEPTH, "Deliveries waiting in the inbox");
    metrics::describe_gauge!(
        INBOX_OLDEST_AGE,
        metrics::Unit::Seconds,
        "Age of the oldest delivery waiting in the inbox"
    );
    metrics::describe_gauge!(INBOX_PARKED, "Deliveries parked in the inbox");
    metrics::describe_gauge!(
        upline_app::consumer::QUARANTINED,
        "Events a consumer holds back until an operator retries them, by consumer"
    );
    metrics::describe_counter!(
        upline_app::consumer::RETRIES_TOTAL,
        "Failures a consumer retried, by consumer and kind (transient, permanent)"
    );
}

pub(crate) fn record_delivery(platform: Platform, outcome: DeliveryOutcome, seconds: f64) {
    metrics::counter!(DELIVERIES_TOTAL, "platform" => platform.as_str(), "outcome" => outcome.as_str())
        .increment(1);
    metrics::histogram!(ANSWER_SECONDS, "platform" => platform.as_str()).record(seconds);
}
