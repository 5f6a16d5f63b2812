use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use upline_app::inbox::sqlite::SqliteInbox;
use upline_app::inbox::{Acceptance, Delivery, Inbox, InboxError, InboxItem, InboxStats, Outcome};

use crate::support::*;

#[tokio::test]
async fn healthz_answers_while_the_process_runs() {
    let mut server = Server::start().await;
    let (status, body) = server.get("/healthz").await;
    assert_eq!(status, 200);
    assert!(body.contains("ok"));
    server.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn readyz_is_503_until_the_flag_is_set_then_200() {
    let server = Server::start().await;
    let (status, body) = server.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not_ready"));

    server.gateway.readiness().store(true, Ordering::Release);
    let (status, body) = server.get("/readyz").await;
    assert_eq!(status, 200, "{body}");

    // An inbox that no longer answers makes the gateway unready again.
    server.inbox().close().await.unwrap();
    let (status, body) = server.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("inbox"), "{body}");
}

#[tokio::test]
async fn metrics_show_the_counters_histogram_and_inbox_gauges() {
    let server = Server::start().await;
    let body = fixture("shopify_orders_paid.json");
    let signed = shopify_headers(
        SHOPIFY_SHOP,
        "orders/paid",
        "metrics-1",
        Some(hmac_b64(SHOPIFY_SECRET.as_bytes(), &body)),
    );
    assert_eq!(
        server.post("/webhooks/shopify", &signed, &body).await.0,
        200
    );
    assert_eq!(
        server.post("/webhooks/shopify", &signed, &body).await.0,
        200
    );
    let unsigned = shopify_headers(SHOPIFY_SHOP, "orders/paid", "metrics-2", None);
    assert_eq!(
        server.post("/webhooks/shopify", &unsigned, &body).await.0,
        401
    );
    assert_eq!(
        server
            .post("/webhooks/woocommerce", &[], b"webhook_id=3")
            .await
            .0,
        200
    );

    let response = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = response.text().await.unwrap();
    for expected in [
        r#"upline_deliveries_total{platform="shopify",outcome="accepted"}"#,
        r#"upline_deliveries_total{platform="shopify",outcome="duplicate"}"#,
        r#"upline_deliveries_total{platform="shopify",outcome="rejected_signature"}"#,
        r#"upline_deliveries_total{platform="woocommerce",outcome="ping"}"#,
        r#"upline_webhook_answer_seconds_bucket{platform="shopify",le="0.12"}"#,
        "upline_webhook_answer_seconds_count",
        "upline_inbox_depth",
        "upline_inbox_oldest_age_seconds",
        "upline_inbox_parked",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
}

/// Wraps the SqliteInbox: accepts wait `delay` first, or fail outright.
struct TestInbox {
    inner: SqliteInbox,
    delay: Duration,
    fail: bool,
}

#[async_trait]
impl Inbox for TestInbox {
    async fn accept(&self, delivery: Delivery) -> Result<Acceptance, InboxError> {
        tokio::time::sleep(self.delay).await;
        if self.fail {
            return Err(InboxError::Storage("disk full".into()));
        }
        self.inner.accept(delivery).await
    }
    async fn claim(&self, max: usize, lease: Duration) -> Result<Vec<InboxItem>, InboxError> {
        self.inner.claim(max, lease).await
    }
    async fn complete(&self, id: i64, outcome: &Outcome) -> Result<(), InboxError> {
        self.inner.complete(id, outcome).await
    }
    async fn release(&self, id: i64, error: &str, retry_after: Duration) -> Result<(), InboxError> {
        self.inner.release(id, error, retry_after).await
    }
    async fn stats(&self) -> Result<InboxStats, InboxError> {
        if self.fail {
            return Err(InboxError::Storage("disk full".into()));
        }
        self.inner.stats().await
    }
    fn new_work(&self) -> Arc<tokio::sync::Notify> {
        self.inner.new_work()
    }
}

async fn test_inbox(delay: Duration, fail: bool) -> (Arc<TestInbox>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let inner = SqliteInbox::open(&dir.path().join("inbox.sqlite"))
        .await
        .unwrap();
    (Arc::new(TestInbox { inner, delay, fail }), dir)
}

#[tokio::test]
async fn an_inbox_failure_is_503_so_the_platform_retries() {
    let (inbox, dir) = test_inbox(Duration::ZERO, true).await;
    let server = Server::serve(config(), inbox, dir).await;
    let body = fixture("shopify_orders_paid.json");
    let headers = shopify_headers(
        SHOPIFY_SHOP,
        "orders/paid",
        "fail-1",
        Some(hmac_b64(SHOPIFY_SECRET.as_bytes(), &body)),
    );
    let (status, answer) = server.post("/webhooks/shopify", &headers, &body).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["status"], "unavailable");
    assert!(
        !answer.to_string().contains("disk full"),
        "internals stay in the logs"
    );

    server.gateway.readiness().store(true, Ordering::Release);
    assert_eq!(server.get("/readyz").await.0, 503);
    // /metrics still renders without the gauges' source.
    assert_eq!(server.get("/metrics").await.0, 200);
}

#[tokio::test]
async fn shutdown_lets_a_delivery_in_flight_finish_and_be_answered() {
    let (inbox, dir) = test_inbox(Duration::from_millis(300), false).await;
    let mut server = Server::serve(config(), inbox.clone(), dir).await;
    let body = fixture("shopify_orders_paid.json");
    let headers = shopify_headers(
        SHOPIFY_SHOP,
        "orders/paid",
        "inflight-1",
        Some(hmac_b64(SHOPIFY_SECRET.as_bytes(), &body)),
    );
    let mut request = server
        .client
        .post(server.url("/webhooks/shopify"))
        .body(body.clone());
    for (name, value) in &headers {
        request = request.header(*name, value);
    }
    let in_flight = tokio::spawn(request.send());
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.trigger_shutdown();

    let response = in_flight
        .await
        .unwrap()
        .expect("answered despite the shutdown");
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answer["status"], "accepted");
    server.stopped().await.expect("run returns Ok");
    let stored = inbox.inner.list(None, 10).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].delivery.body, body);

    // And the listener is gone.
    assert!(server
        .client
        .get(server.url("/healthz"))
        .send()
        .await
        .is_err());
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_413_too() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start().await;
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /webhooks/shopify HTTP/1.1\r\nhost: {addr}\r\ntransfer-encoding: chunked\r\n\
         x-shopify-shop-domain: {SHOPIFY_SHOP}\r\nx-shopify-hmac-sha256: AAAA\r\n\
         connection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b'a'; 16 * 1024];
    // Written without a Content-Length: the limit is enforced while reading. The server may stop
    // reading once it has seen too much, so write errors are expected and ignored.
    for _ in 0..((TEST_MAX_BODY / chunk.len()) + 2) {
        let frame = [
            format!("{:x}\r\n", chunk.len()).into_bytes(),
            chunk.clone(),
            b"\r\n".to_vec(),
        ]
        .concat();
        if stream.write_all(&frame).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(inbox_is_empty(&server).await);
}

#[tokio::test]
async fn unknown_routes_are_404() {
    let server = Server::start().await;
    let (status, _) = server.post("/webhooks/bigcommerce", &[], b"{}").await;
    assert_eq!(status, 404);
}
