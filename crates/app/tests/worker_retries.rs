//! The inbox worker against the real SQLite inbox and event store: a delivery failing
//! transiently is retried with back-off, then parked with "gave up after N attempts"; it never
//! holds up the others.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use support::*;
use upline_app::consumer::RetryPolicy;
use upline_app::inbox::sqlite::{DeliveryStatus, SqliteInbox};
use upline_app::inbox::{Acceptance, Delivery, Inbox};
use upline_app::worker::Worker;
use upline_app::{App, AppConfig};
use upline_domain::ids::{Platform, ShopId};
use upline_store::EventStore;

const ATTEMPTS: u32 = 3;

fn delivery(key: &str, topic: &str, body: &[u8]) -> Delivery {
    Delivery {
        platform: Platform::Shopify,
        shop: ShopId::new("acme.myshopify.com").unwrap(),
        topic: topic.to_string(),
        dedupe_key: key.to_string(),
        delivery_id: format!("webhook-{key}"),
        received_at: t(3, 10),
        headers: BTreeMap::new(),
        body: body.to_vec(),
    }
}

async fn accept(inbox: &SqliteInbox, delivery: Delivery) -> i64 {
    match inbox.accept(delivery).await.unwrap() {
        Acceptance::New { id } => id,
        other => panic!("expected a new delivery, got {other:?}"),
    }
}

/// The application over `store` and an inbox in `dir`.
async fn app_and_inbox(
    store: Arc<dyn EventStore>,
    dir: &std::path::Path,
) -> (Arc<App>, Arc<SqliteInbox>) {
    let app = Arc::new(App::open(store, AppConfig::default()).await.unwrap());
    let inbox = Arc::new(SqliteInbox::open(&dir.join("inbox.sqlite")).await.unwrap());
    (app, inbox)
}

#[tokio::test]
async fn a_delivery_failing_transiently_is_retried_with_back_off_then_parked() {
    // Given an event store that fails every append (an outage), a paid-order delivery and a
    // delivery the worker ignores
    let dir = tempfile::tempdir().unwrap();
    let real = open_store(dir.path()).await;
    let store = FailingStore::over(real.clone());
    store.fail_appends("", u32::MAX, outage());
    let (app, inbox) = app_and_inbox(store.clone(), dir.path()).await;
    let body = include_bytes!("../../platforms/tests/fixtures/shopify_orders_paid.json");
    let order = accept(&inbox, delivery("e-1", "orders/paid", body)).await;
    let other = accept(&inbox, delivery("e-2", "customers/create", b"{}")).await;
    let retry = RetryPolicy {
        first: Duration::from_millis(200),
        cap: Duration::from_secs(1),
        max_attempts: ATTEMPTS,
    };
    let worker = Worker::new(inbox.clone() as Arc<dyn Inbox>, app).with_retry_policy(retry);

    // When the worker takes what is available
    let before = chrono::Utc::now();
    worker.process_available().await.unwrap();

    // Then the other delivery is done, and the failing one waits out a back-off pause
    let done = inbox.item(other).await.unwrap().unwrap();
    assert_eq!(done.status, DeliveryStatus::Ignored);
    let waiting = inbox.item(order).await.unwrap().unwrap();
    assert_eq!(waiting.status, DeliveryStatus::Pending);
    assert_eq!(waiting.attempts, 1);
    assert!(
        waiting.available_at >= before + chrono::Duration::milliseconds(200),
        "{waiting:?}"
    );
    assert!(waiting
        .last_error
        .as_deref()
        .unwrap()
        .contains("disk I/O error"));

    // When it keeps failing until its attempts are used up
    for _ in 1..ATTEMPTS {
        let item = inbox.item(order).await.unwrap().unwrap();
        let wait = (item.available_at - chrono::Utc::now())
            .to_std()
            .unwrap_or_default();
        // Waits out the back-off the delivery itself records (not a guess).
        tokio::time::sleep(wait + Duration::from_millis(5)).await;
        worker.process_available().await.unwrap();
    }

    // Then it is parked with the reason, and never handed out again
    let parked = inbox.item(order).await.unwrap().unwrap();
    assert_eq!(parked.status, DeliveryStatus::Parked, "{parked:?}");
    assert_eq!(parked.attempts, ATTEMPTS);
    let reason = parked.outcome_reason.unwrap();
    assert!(
        reason.starts_with("gave up after 3 attempts: event store: database error: disk I/O error"),
        "{reason}"
    );
    assert!(inbox
        .claim(10, Duration::from_secs(1))
        .await
        .unwrap()
        .is_empty());
}

/// Given five deliveries, when the worker takes what is available, then the inbox commits
/// twice: the claim of all five, and their five outcomes recorded together with the (empty)
/// next claim. One commit per delivery would be seven.
#[tokio::test]
async fn a_claims_outcomes_are_recorded_with_the_next_claim() {
    let dir = tempfile::tempdir().unwrap();
    let (app, inbox) = app_and_inbox(open_store(dir.path()).await, dir.path()).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let key = format!("e-{n}");
        ids.push(accept(&inbox, delivery(&key, "customers/create", b"{}")).await);
    }
    let worker = Worker::new(inbox.clone() as Arc<dyn Inbox>, app);
    let before = inbox.writer_stats().commits;

    assert_eq!(worker.process_available().await.unwrap(), 5);

    assert_eq!(inbox.writer_stats().commits - before, 2);
    for id in ids {
        let item = inbox.item(id).await.unwrap().unwrap();
        assert_eq!(item.status, DeliveryStatus::Ignored, "{item:?}");
    }
}
