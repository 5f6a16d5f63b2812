//! Routes and answers.
//!
//! | route | answer |
//! |---|---|
//! | `POST /webhooks/shopify` | shop `X-Shopify-Shop-Domain`, topic `X-Shopify-Topic`, signature `X-Shopify-Hmac-Sha256`, delivery id `X-Shopify-Webhook-Id` |
//! | `POST /webhooks/woocommerce` | shop = host of `X-WC-Webhook-Source`, topic `X-WC-Webhook-Topic`, signature `X-WC-Webhook-Signature`, delivery id `X-WC-Webhook-Delivery-ID`; the unsigned `webhook_id=N` ping gets 200 |
//! | `POST /webhooks/magento` | shop `?shop=` (or the only Magento shop), signature `x-adobe-commerce-webhook-signature` (RSA-SHA256 over base64(body)); topic: see below |
//! | `POST /api/mlm/orders` | `Authorization: Bearer <token>` or `X-Upline-Hmac-Sha256`; the key names the shop; platform `direct`, topic `mlm/orders` |
//! | `GET /healthz` | 200 `{"status":"ok"}` while the process runs |
//! | `GET /readyz` | 200 `{"status":"ready",...}` when the readiness flag is set and the inbox answers; 200 `{"status":"degraded","reasons":[...],...}` while a consumer holds events back (deliveries are still accepted: see `readyz`); 503 `{"status":"not_ready","reason":...}` otherwise |
//! | `GET /metrics` | Prometheus text |
//!
//! Magento's topic is the body's own event name when it has one (CloudEvents `type` without its
//! `com.adobe.commerce.` prefix, or `eventName`), because only the body is signed; otherwise the
//! `?topic=` parameter, then the `x-upline-topic` header.
//!
//! Every webhook, in order:
//! 0. beyond `MAX_WEBHOOKS_IN_FLIGHT` at once: 503 `{"status":"unavailable",...}` (retry later);
//! 1. the body is read, at most `max_body_bytes` (413 `{"status":"rejected","error":...}`);
//! 2. the sender is found and its signature checked over the raw bytes, in constant time
//!    (401 `{"status":"rejected","error":...}`; nothing is recorded);
//! 3. the payload is interpreted: nothing to do → 200 `{"status":"ignored","reason":...}`; it does
//!    not parse, or its own time is outside the replay window (`upline_platforms::replay`, the
//!    clock read here) → the delivery is written to the inbox and parked at once, so an operator
//!    can see it and replay it after a fix (`upline parked retry delivery-N`);
//! 4. otherwise the delivery is written to the inbox, and only then answered: 200
//!    `{"status":"accepted","delivery":<inbox id>}` or `{"status":"duplicate","delivery":<id>}`.
//!    If the inbox fails or is slow: 503 `{"status":"unavailable","error":...}` (the platform
//!    retries).
//!
//! **A verified delivery that is kept is answered 2xx on the platform webhooks**, parked ones
//! too: `200 {"status":"parked","delivery":N,"reason":"<field>: <message>","field":...}`.
//! Shopify deletes a subscription after 8 failed retries and WooCommerce disables a hook after 5
//! consecutive failures, and retrying a delivery we already keep would change nothing. Only what
//! is not kept gets another answer: 401 (not verified), 413 (too large), 503 (not durable).
//! `/api/mlm/orders` is called by the company's own systems, which can fix and resend: a parked
//! delivery there is answered `400 {"status":"rejected","error":...,"field":...,"parked":N}`, and
//! an `Idempotency-Key` already used with another body `409 {"status":"conflict",...}` (nothing
//! stored; the same key with the same body is a 200 duplicate).

use std::time::Instant;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tracing::field::Empty;
use tracing::Instrument;
use upline_app::inbox::{Acceptance, Delivery, Outcome};
use upline_platforms::model::Interpretation;

use crate::limits::{BODY_READ_TIMEOUT, INBOX_TIMEOUT, STATS_TIMEOUT};
use crate::telemetry::{self, DeliveryOutcome};
use crate::webhook::{self, Params, Route, Verified};
use crate::Gateway;

pub(crate) fn router(gateway: Gateway) -> Router {
    Router::new()
        .route("/webhooks/shopify", post(shopify))
        .route("/webhooks/woocommerce", post(woocommerce))
        .route("/webhooks/magento", post(magento))
        .route("/api/mlm/orders", post(direct))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(gateway)
}

async fn shopify(State(gw): State<Gateway>, headers: HeaderMap, body: Body) -> Response {
    webhook_answer(gw, Route::Shopify, headers, Params::default(), body).await
}

async fn woocommerce(State(gw): State<Gateway>, headers: HeaderMap, body: Body) -> Response {
    webhook_answer(gw, Route::Woocommerce, headers, Params::default(), body).await
}

async fn magento(
    State(gw): State<Gateway>,
    params: Result<Query<Params>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // A query that does not parse names no shop and no topic.
    let params = params.map(|Query(p)| p).unwrap_or_default();
    webhook_answer(gw, Route::Magento, headers, params, body).await
}

async fn direct(State(gw): State<Gateway>, headers: HeaderMap, body: Body) -> Response {
    webhook_answer(gw, Route::Direct, headers, Params::default(), body).await
}

/// A webhook's answer and what to count it as.
struct Answer {
    status: StatusCode,
    outcome: DeliveryOutcome,
    body: Value,
}

impl Answer {
    fn new(status: StatusCode, outcome: DeliveryOutcome, body: Value) -> Answer {
        Answer {
            status,
            outcome,
            body,
        }
    }

    fn rejected(status: StatusCode, outcome: DeliveryOutcome, error: &str) -> Answer {
        Answer::new(
            status,
            outcome,
            json!({"status": "rejected", "error": error}),
        )
    }

    fn unavailable(error: &str) -> Answer {
        Answer::new(
            StatusCode::SERVICE_UNAVAILABLE,
            DeliveryOutcome::Unavailable,
            json!({"status": "unavailable", "error": error}),
        )
    }
}

async fn webhook_answer(
    gw: Gateway,
    route: Route,
    headers: HeaderMap,
    params: Params,
    body: Body,
) -> Response {
    let started = Instant::now();
    let platform = route.platform();
    let span = tracing::info_span!(
        "webhook",
        platform = platform.as_str(),
        shop = Empty,
        topic = Empty,
        delivery = Empty,
        api_key = Empty,
        inbox_id = Empty,
        outcome = Empty,
        status = Empty,
        latency_ms = Empty,
    );
    async move {
        let answer = process(&gw, route, &headers, &params, body).await;
        let elapsed = started.elapsed();
        telemetry::record_delivery(platform, answer.outcome, elapsed.as_secs_f64());
        let span = tracing::Span::current();
        span.record("outcome", answer.outcome.as_str());
        span.record("status", answer.status.as_u16());
        span.record("latency_ms", elapsed.as_secs_f64() * 1000.0);
        if answer.status.is_success() {
            tracing::info!("webhook answered");
        } else {
            tracing::warn!("webhook answered");
        }
        (answer.status, Json(answer.body)).into_response()
    }
    .instrument(span)
    .await
}

async fn process(
    gw: &Gateway,
    route: Route,
    headers: &HeaderMap,
    params: &Params,
    body: Body,
) -> Answer {
    let inner = &*gw.inner;
    let Ok(_permit) = inner.in_flight.clone().try_acquire_owned() else {
        tracing::warn!("too many webhooks in flight; shedding");
        return Answer::unavailable("too many deliveries in flight; retry later");
    };
    let body = match read_body(body, headers, inner.max_body_bytes).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            return Answer::rejected(
                StatusCode::PAYLOAD_TOO_LARGE,
                DeliveryOutcome::TooLarge,
                &format!("body larger than {} bytes", inner.max_body_bytes),
            )
        }
        Err(BodyError::TimedOut) => {
            return Answer::rejected(
                StatusCode::REQUEST_TIMEOUT,
                DeliveryOutcome::Aborted,
                "body not received in time",
            )
        }
        Err(BodyError::Failed) => {
            return Answer::rejected(
                StatusCode::BAD_REQUEST,
                DeliveryOutcome::Aborted,
                "body could not be read",
            )
        }
    };

    if route == Route::Woocommerce && webhook::is_woocommerce_ping(&body) {
        return Answer::new(
            StatusCode::OK,
            DeliveryOutcome::Ping,
            json!({"status": "ignored", "reason": "woocommerce ping"}),
        );
    }

    let verified = match webhook::verify(inner, route, headers, params, &body) {
        Ok(verified) => verified,
        Err(rejection) => {
            return Answer::rejected(
                StatusCode::UNAUTHORIZED,
                DeliveryOutcome::RejectedSignature,
                rejection.message(),
            )
        }
    };
    let span = tracing::Span::current();
    span.record("shop", verified.shop.as_str());
    span.record("topic", verified.topic.as_str());
    span.record("delivery", verified.delivery_id.as_str());
    if let Some(name) = &verified.key_name {
        span.record("api_key", name.as_str());
    }

    let platform = route.platform();
    match upline_platforms::interpret(platform, &verified.shop, &verified.topic, &body) {
        Ok(Interpretation::Ignored { reason }) => Answer::new(
            StatusCode::OK,
            DeliveryOutcome::Ignored,
            json!({"status": "ignored", "reason": reason}),
        ),
        Ok(interpretation) => {
            let lookup = |name: &str| webhook::header(headers, name).map(str::to_string);
            // The clock is read here, at the edge; the platforms crate only compares.
            let window = inner.replay_window;
            if let Err(stale) =
                upline_platforms::replay::check(platform, &lookup, &body, Utc::now(), window)
            {
                return park(gw, route, verified, body, Parking::stale(stale)).await;
            }
            let dedupe_key =
                upline_platforms::dedupe_key(platform, &lookup, &interpretation, &body);
            accept(gw, route, verified, dedupe_key, body).await
        }
        Err(e) => park(gw, route, verified, body, Parking::unreadable(e)).await,
    }
}

/// Why a verified delivery is parked at the gateway, and how to count it.
struct Parking {
    field: String,
    reason: String,
    outcome: DeliveryOutcome,
}

impl Parking {
    fn unreadable(e: upline_platforms::PayloadError) -> Parking {
        Parking {
            reason: e.to_string(),
            field: e.field,
            outcome: DeliveryOutcome::RejectedPayload,
        }
    }

    fn stale(e: upline_platforms::PayloadError) -> Parking {
        Parking {
            reason: format!("replay window: {e}"),
            field: e.field,
            outcome: DeliveryOutcome::Stale,
        }
    }
}

fn delivery(route: Route, verified: Verified, dedupe_key: String, body: Vec<u8>) -> Delivery {
    Delivery {
        platform: route.platform(),
        shop: verified.shop,
        topic: verified.topic,
        dedupe_key,
        delivery_id: verified.delivery_id,
        received_at: Utc::now(),
        headers: verified.headers,
        body,
    }
}

async fn accept(
    gw: &Gateway,
    route: Route,
    verified: Verified,
    dedupe_key: String,
    body: Vec<u8>,
) -> Answer {
    let inbox = &gw.inner.inbox;
    let idempotency_key = verified.headers.get("idempotency-key").cloned();
    let accepted = tokio::time::timeout(
        INBOX_TIMEOUT,
        inbox.accept(delivery(route, verified, dedupe_key, body)),
    )
    .await;
    match accepted {
        Ok(Ok(Acceptance::New { id })) => {
            tracing::Span::current().record("inbox_id", id);
            Answer::new(
                StatusCode::OK,
                DeliveryOutcome::Accepted,
                json!({"status": "accepted", "delivery": id}),
            )
        }
        Ok(Ok(Acceptance::Duplicate { id })) => duplicate(id),
        Ok(Ok(Acceptance::Conflict { id })) => {
            tracing::Span::current().record("inbox_id", id);
            match (route, idempotency_key) {
                (Route::Direct, Some(key)) => Answer::new(
                    StatusCode::CONFLICT,
                    DeliveryOutcome::Conflict,
                    json!({
                        "status": "conflict",
                        "error": format!(
                            "Idempotency-Key {key:?} was already used with another body \
                             (delivery {id}); send a new key for a new order or change"
                        ),
                        "idempotency_key": key,
                        "delivery": id,
                    }),
                ),
                // A platform's event id with a changed body: the stored copy stands, and the
                // platform must not retry (that would change nothing).
                _ => {
                    tracing::warn!(id, "same event id, another body; the stored copy stands");
                    duplicate(id)
                }
            }
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "inbox refused the delivery");
            Answer::unavailable("the delivery could not be stored; retry later")
        }
        Err(_) => {
            tracing::error!("inbox did not answer in time");
            Answer::unavailable("the delivery could not be stored in time; retry later")
        }
    }
}

fn duplicate(id: i64) -> Answer {
    tracing::Span::current().record("inbox_id", id);
    Answer::new(
        StatusCode::OK,
        DeliveryOutcome::Duplicate,
        json!({"status": "duplicate", "delivery": id}),
    )
}

/// A verified delivery that cannot be processed now (it does not parse, or it is older than
/// the replay window): never lost, parked for an operator.
async fn park(
    gw: &Gateway,
    route: Route,
    verified: Verified,
    body: Vec<u8>,
    parking: Parking,
) -> Answer {
    let Parking {
        field,
        reason: error,
        outcome,
    } = parking;
    tracing::warn!(field = %field, reason = %error, "parking the delivery");
    let inbox = &gw.inner.inbox;
    let dedupe_key = webhook::parked_dedupe_key(&verified.topic, &body);
    let accepted = tokio::time::timeout(
        INBOX_TIMEOUT,
        inbox.accept(delivery(route, verified, dedupe_key, body)),
    )
    .await;
    let id = match accepted {
        Ok(Ok(Acceptance::New { id })) => {
            let outcome = Outcome::Parked {
                reason: error.clone(),
            };
            match tokio::time::timeout(INBOX_TIMEOUT, inbox.complete(id, &outcome)).await {
                Ok(Ok(())) => {}
                // Still pending: the worker interprets it again, fails the same way, parks it.
                Ok(Err(e)) => tracing::error!(error = %e, id, "could not park the delivery"),
                Err(_) => tracing::error!(id, "parking the delivery timed out"),
            }
            id
        }
        // Same topic and body hash: the same delivery parked before.
        Ok(Ok(Acceptance::Duplicate { id } | Acceptance::Conflict { id })) => id,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "inbox refused the rejected delivery");
            return Answer::unavailable("the delivery could not be stored; retry later");
        }
        Err(_) => {
            tracing::error!("inbox did not answer in time");
            return Answer::unavailable("the delivery could not be stored in time; retry later");
        }
    };
    tracing::Span::current().record("inbox_id", id);
    if route == Route::Direct {
        // The company's own systems: told plainly that the order was not taken, naming the field.
        return Answer::new(
            StatusCode::BAD_REQUEST,
            outcome,
            json!({"status": "rejected", "error": error, "field": field, "parked": id}),
        );
    }
    // Kept, so 2xx: a platform that sees failures retries and then drops the subscription.
    Answer::new(
        StatusCode::OK,
        outcome,
        json!({"status": "parked", "delivery": id, "reason": error, "field": field}),
    )
}

enum BodyError {
    TooLarge,
    TimedOut,
    Failed,
}

/// Reads the whole body, refusing it as soon as it is known to exceed `max` (from
/// `Content-Length`, or while reading).
async fn read_body(body: Body, headers: &HeaderMap, max: usize) -> Result<Vec<u8>, BodyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge);
    }
    let capacity = declared.map_or(8 * 1024, |n| n as usize).min(max);
    let read = async move {
        let mut body = body;
        let mut bytes = Vec::with_capacity(capacity);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| BodyError::Failed)?;
            if let Some(data) = frame.data_ref() {
                if bytes.len() + data.len() > max {
                    return Err(BodyError::TooLarge);
                }
                bytes.extend_from_slice(data);
            }
        }
        Ok(bytes)
    };
    tokio::time::timeout(BODY_READ_TIMEOUT, read)
        .await
        .unwrap_or(Err(BodyError::TimedOut))
}

async fn healthz() -> Response {
    (StatusCode::OK, Json(json!({"status": "ok"}))).into_response()
}

async fn readyz(State(gw): State<Gateway>) -> Response {
    let not_ready = |reason: String| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "reason": reason})),
        )
            .into_response()
    };
    if !gw.inner.ready.load(std::sync::atomic::Ordering::Acquire) {
        return not_ready("the inbox worker is not running yet".to_string());
    }
    match tokio::time::timeout(STATS_TIMEOUT, gw.inner.inbox.stats()).await {
        Ok(Ok(stats)) => {
            // Held events make the answer `degraded`, still 200: this instance accepts and
            // stores deliveries as well as ever, and a 503 would have the load balancer stop
            // sending webhooks, turning one bad event into an outage. Alerts watch
            // `upline_quarantined_events` (or this status) instead.
            let reasons: Vec<String> = gw
                .inner
                .consumers
                .held()
                .iter()
                .map(|h| h.describe())
                .collect();
            let status = if reasons.is_empty() {
                "ready"
            } else {
                "degraded"
            };
            let mut body =
                json!({"status": status, "pending": stats.pending, "parked": stats.parked});
            if !reasons.is_empty() {
                body["reasons"] = json!(reasons);
            }
            (StatusCode::OK, Json(body)).into_response()
        }
        Ok(Err(e)) => not_ready(format!("inbox: {e}")),
        Err(_) => not_ready("inbox: no answer in time".to_string()),
    }
}

async fn metrics(State(gw): State<Gateway>) -> Response {
    match tokio::time::timeout(STATS_TIMEOUT, gw.inner.inbox.stats()).await {
        Ok(Ok(stats)) => {
            let age = stats.oldest_pending.map_or(0.0, |oldest| {
                (Utc::now() - oldest).num_milliseconds().max(0) as f64 / 1000.0
            });
            metrics::gauge!(telemetry::INBOX_DEPTH).set(stats.pending as f64);
            metrics::gauge!(telemetry::INBOX_OLDEST_AGE).set(age);
            metrics::gauge!(telemetry::INBOX_PARKED).set(stats.parked as f64);
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "inbox stats failed; gauges not refreshed"),
        Err(_) => tracing::warn!("inbox stats timed out; gauges not refreshed"),
    }
    let handle = gw.inner.metrics;
    handle.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"status": "rejected", "error": "no such route"})),
    )
        .into_response()
}
