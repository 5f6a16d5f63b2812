//! One event never stops everything, and nothing is written that cannot be read back: the
//! commission postings and the application's append path against the real embedded store.

mod support;

use std::sync::Arc;
use std::time::Duration;

use rust_decimal_macros::dec;
use serde::{Deserialize, Serialize};
use support::*;
use upline_app::consumer::{ConsumerHealth, RetryPolicy};
use upline_app::eventio::event_data;
use upline_app::records::PostingEvent;
use upline_app::{streams, AppError, CommissionPostings};
use upline_domain::events::DomainEvent;
use upline_platforms::model::OrderFact;
use upline_store::{
    Direction, EventData, EventStore, ExpectedRevision, Limit, StoreError, StreamStart,
};

/// Pauses short enough for a test, with the production shape.
const FAST: RetryPolicy = RetryPolicy {
    first: Duration::from_millis(1),
    cap: Duration::from_millis(20),
    max_attempts: 3,
};

/// An event whose encoding its own decoder refuses: the count is written as text.
#[derive(Debug, Serialize, Deserialize)]
enum Lopsided {
    ThingCounted {
        #[serde(serialize_with = "count_as_text")]
        count: u32,
    },
}

fn count_as_text<S: serde::Serializer>(count: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{count} things"))
}

impl DomainEvent for Lopsided {
    fn schema_version(&self) -> u16 {
        1
    }
}

#[test]
fn an_event_that_would_not_read_back_is_refused_before_it_reaches_the_store() {
    // Given an event whose serialized form its decoder rejects
    let event = Lopsided::ThingCounted { count: 3 };
    // When it is prepared for an append
    let refused = event_data("things-1", "0", &event, &cmd()).unwrap_err();
    // Then no EventData exists to append: a typed, permanent error names the type and why
    assert!(
        matches!(&refused, AppError::WouldNotReadBack { stream, event_type, reason }
            if stream == "things-1" && event_type == "ThingCounted" && reason.contains("invalid type")),
        "{refused:?}"
    );
    assert!(!refused.is_transient());
}

#[test]
fn an_event_that_reads_back_is_prepared_as_before() {
    let event = PostingEvent::CommissionEarned {
        source: upline_app::records::PostingSource {
            order_stream: "order-x".into(),
            order_revision: 1,
            order_event: "CommissionCalculated".into(),
        },
        currency: upline_domain::money::Currency::USD,
        amount: dec!(10.00),
        level: Some(1),
        plan_version: "v1".into(),
    };
    let data = event_data("commissions-d3", "order-x@1", &event, &cmd()).unwrap();
    assert_eq!(data.event_type, "CommissionEarned");
}

/// Records a paid order (placed and paid) for `order_id`, credited to `code`.
async fn paid_order(app: &upline_app::App, order_id: &str, code: &str) {
    let mut update = placed(order_id);
    if let Some(order) = update.order.as_mut() {
        order.attribution.explicit_ref = Some(code.to_string());
    }
    update.facts.push(OrderFact::Paid { at: t(3, 11) });
    app.handle_update(&update, &cmd(), "test").await.unwrap();
}

/// Appends raw bytes as an order event, bypassing the application (as an old bug did).
async fn append_raw(store: &Arc<dyn EventStore>, order_id: &str, event_type: &str) -> u64 {
    let stream = streams::order(&key(order_id));
    let junk = EventData::json(event_type, &serde_json::json!({"outcome": "garbage"})).unwrap();
    store
        .append(&stream, ExpectedRevision::Any, vec![junk])
        .await
        .unwrap()
        .position
}

/// The order streams that have postings on `distributor`'s stream.
async fn posted_orders(store: &Arc<dyn EventStore>, distributor: &str) -> Vec<String> {
    let events = store
        .read_stream(
            &format!("commissions-{distributor}"),
            Direction::Forwards,
            StreamStart::Start,
            1_000,
        )
        .await
        .unwrap();
    events
        .iter()
        .filter_map(|r| upline_domain::events::decode::<PostingEvent>(&r.event_type, &r.data).ok())
        .map(|p| match p {
            PostingEvent::CommissionEarned { source, .. }
            | PostingEvent::CommissionReversed { source, .. } => source.order_stream,
        })
        .collect()
}

#[tokio::test]
async fn an_unreadable_commission_event_is_held_and_later_orders_are_posted() {
    // Given an order whose CommissionCalculated cannot be decoded, then a good order
    let dir = tempfile::tempdir().unwrap();
    let (store, app) = app_in(dir.path()).await;
    seed_company(&app).await;
    let bad = append_raw(&store, "666", "CommissionCalculated").await;
    paid_order(&app, "1001", "CODE3").await;
    let health = ConsumerHealth::default();

    // When the postings catch up
    let postings = CommissionPostings::open(store.clone())
        .await
        .unwrap()
        .with_health(health.clone());
    postings.catch_up().await.unwrap();

    // Then the good order is posted and the bad event is held with its reason
    let (balance, _) = ledger(&store).await;
    assert_eq!(balance["commissions-d3"], dec!(10.00));
    let held = postings.held().await.unwrap();
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0].position, bad);
    assert_eq!(held[0].stream, streams::order(&key("666")));
    assert_eq!(held[0].event_type, "CommissionCalculated");
    assert!(held[0].reason.contains("could not be decoded"), "{held:?}");
    assert_eq!(held[0].id(), format!("commission-postings@{bad}"));
    // and the checkpoint moved past it
    assert!(*postings.position().borrow() > bad);
    // and the board behind /readyz and the gauge name it
    let board = health.held();
    assert_eq!(board.len(), 1);
    assert_eq!(board[0].consumer, "commission-postings");
    assert!(board[0].describe().contains("could not be decoded"));

    // When a later commission event of the same order arrives
    let later = append_raw(&store, "666", "CommissionRecalculated").await;
    postings.catch_up().await.unwrap();
    // Then it is held behind the first, not posted out of order
    let held = postings.held().await.unwrap();
    assert_eq!(held.len(), 2);
    assert_eq!(
        (held[1].position, held[1].behind),
        (later, Some(bad)),
        "{held:?}"
    );

    // When the process restarts, the held set is rebuilt from the store
    let reopened = CommissionPostings::open(store.clone()).await.unwrap();
    assert_eq!(reopened.held().await.unwrap(), held);

    // When an operator retries before any fix
    let reports = reopened.retry_all_held().await.unwrap();
    // Then the event still fails and stays held with the new reason; its follower too
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].released, 0);
    let (position, reason) = reports[0].still_held.clone().unwrap();
    assert_eq!(position, bad);
    assert!(reason.contains("could not be decoded"), "{reason}");
    let held = reopened.held().await.unwrap();
    assert_eq!(held.len(), 2);
    assert_eq!((held[0].retries, held[1].retries), (1, 0));
}

#[tokio::test]
async fn a_posting_refused_permanently_is_held_and_posted_once_after_the_fix() {
    // Given the store refusing every posting to d3 (a limit), and two orders: one credited to
    // d3 (so d3, d2, d1 and top earn), one credited to d1 (d1 and top earn)
    let dir = tempfile::tempdir().unwrap();
    let (real, app) = app_in(dir.path()).await;
    seed_company(&app).await;
    let store = FailingStore::over(real.clone());
    let limit = StoreError::LimitExceeded {
        limit: Limit::EventBytes,
        max: 10,
        actual: 11,
    };
    store.fail_appends("commissions-d3", u32::MAX, limit);
    paid_order(&app, "1001", "CODE3").await;
    app.handle_update(&fact("1001", refund("r1", dec!(1))), &cmd(), "test")
        .await
        .unwrap();
    paid_order(&app, "2002", "CODE1").await;

    // When the postings catch up
    let postings = CommissionPostings::open(store.clone() as Arc<dyn EventStore>)
        .await
        .unwrap();
    postings.catch_up().await.unwrap();

    // Then order 1001's calculation is held, its recalculation held behind it, and 2002 posted
    let a = streams::order(&key("1001"));
    let b = streams::order(&key("2002"));
    let held = postings.held().await.unwrap();
    assert_eq!(held.len(), 2, "{held:?}");
    assert!(held.iter().all(|h| h.stream == a));
    assert!(held[0].reason.contains("limit exceeded"), "{held:?}");
    assert_eq!(held[1].behind, Some(held[0].position));
    assert!(posted_orders(&real, "d1").await.contains(&b));
    assert!(!posted_orders(&real, "d3").await.contains(&a));

    // When the fix is in and the operator retries
    store.heal();
    let report = postings.retry_held(held[0].position).await.unwrap();
    // Then both events are posted, in order, and nothing is held
    assert_eq!((report.released, report.still_held), (2, None));
    assert!(postings.held().await.unwrap().is_empty());
    let (balance, count) = ledger(&real).await;
    // 10.00 earned on 1001, 5.00 reversed by refunding one of two units.
    assert_eq!(balance["commissions-d3"], dec!(5.00));
    assert_eq!(count["commissions-d3"], 2);

    // When the same held item is retried again, or everything is reprocessed from 0
    assert!(matches!(
        postings.retry_held(held[0].position).await,
        Err(AppError::NothingHeld(_))
    ));
    postings.catch_up().await.unwrap();
    // Then nothing is written twice
    assert_eq!(ledger(&real).await, (balance, count));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_store_failure_is_retried_and_nothing_is_held() {
    // Given a store whose next three postings fail with an I/O error
    let dir = tempfile::tempdir().unwrap();
    let (real, app) = app_in(dir.path()).await;
    seed_company(&app).await;
    paid_order(&app, "1001", "CODE3").await;
    let head = real
        .read_all(
            upline_store::AllStart::Start,
            &upline_store::StreamFilter::prefix("order-"),
            100,
        )
        .await
        .unwrap()
        .last()
        .unwrap()
        .position;
    let store = FailingStore::over(real.clone());
    store.fail_appends("commissions-", 3, outage());

    // When the postings run
    let postings = Arc::new(
        CommissionPostings::open(store.clone() as Arc<dyn EventStore>)
            .await
            .unwrap()
            .with_retry_policy(FAST),
    );
    let mut position = postings.position();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let running = tokio::spawn({
        let postings = postings.clone();
        async move { postings.run(shutdown).await }
    });
    tokio::time::timeout(Duration::from_secs(10), position.wait_for(|p| *p >= head))
        .await
        .expect("postings catch up despite the failures")
        .unwrap();
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();

    // Then every failure was retried, every beneficiary is posted once, and nothing is held
    assert!(store.failed() >= 3, "{}", store.failed());
    let (balance, count) = ledger(&real).await;
    assert_eq!(balance["commissions-d3"], dec!(10.00));
    assert!(count.values().all(|n| *n == 1), "{count:?}");
    assert!(postings.held().await.unwrap().is_empty());
}
