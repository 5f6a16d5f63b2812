//! The application layer against the real embedded store: updates in, order events and
//! distributor postings out, exactly once, whatever the arrival order; parking and retry.

mod support;

use std::sync::Arc;

use rust_decimal_macros::dec;
use support::*;
use upline_app::records::CheckpointEvent;
use upline_app::{streams, App, AppConfig, CommissionPostings, UpdateOutcome};
use upline_domain::ids::*;
use upline_domain::network::DistributorCommand;
use upline_domain::snapshot::DistributorStatus;
use upline_platforms::model::{OrderFact, OrderUpdate};
use upline_store::{Direction, ExpectedRevision, StreamStart};

#[tokio::test]
async fn a_paid_order_is_calculated_and_posted_once_per_beneficiary() {
    let dir = tempfile::tempdir().unwrap();
    let (store, app) = app_in(dir.path()).await;
    seed_company(&app).await;
    let outcome = app
        .handle_update(&placed("1001"), &cmd(), "test")
        .await
        .unwrap();
    assert!(
        matches!(outcome, UpdateOutcome::Recorded { events: 1, .. }),
        "{outcome:?}"
    );
    let outcome = app
        .handle_update(
            &fact("1001", OrderFact::Paid { at: t(3, 11) }),
            &cmd(),
            "test",
        )
        .await
        .unwrap();
    // OrderPaid + CommissionCalculated.
    assert!(
        matches!(outcome, UpdateOutcome::Recorded { events: 2, .. }),
        "{outcome:?}"
    );

    let postings = CommissionPostings::open(store.clone()).await.unwrap();
    postings.catch_up().await.unwrap();
    postings.catch_up().await.unwrap();
    let (balance, count) = ledger(&store).await;
    // Retail on a 100.00 net: d3 10 %, d2 5 %, d1 4 %, top 3 %.
    assert_eq!(balance["commissions-d3"], dec!(10.00));
    assert_eq!(balance["commissions-d2"], dec!(5.00));
    assert_eq!(balance["commissions-d1"], dec!(4.00));
    assert_eq!(balance["commissions-top"], dec!(3.00));
    assert!(count.values().all(|n| *n == 1), "{count:?}");
}

#[tokio::test]
async fn a_repeated_update_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, app) = app_in(dir.path()).await;
    seed_company(&app).await;
    app.handle_update(&placed("1002"), &cmd(), "test")
        .await
        .unwrap();
    let again = app
        .handle_update(&placed("1002"), &cmd(), "test")
        .await
        .unwrap();
    assert!(
        matches!(again, UpdateOutcome::Unchanged { .. }),
        "{again:?}"
    );
}

#[tokio::test]
async fn a_hundred_concurrent_copies_record_one_set_of_events() {
    let dir = tempfile::tempdir().unwrap();
    let (store, app) = app_in(dir.path()).await;
    seed_company(&app).await;
    let app = Arc::new(app);
    let mut update = placed("1003");
    update.facts.push(OrderFact::Paid { at: t(3, 11) });
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let app = app.clone();
            let update = update.clone();
            tokio::spawn(async move { app.handle_update(&update, &cmd(), "test").await })
        })
        .collect();
    for task in tasks {
        // A copy that decided at the same revision carries the same deterministic event ids, so
        // the store takes its append for a retry of the first: `Recorded`, yet nothing written.
        // A copy that read the stream afterwards finds every fact known: `Unchanged`.
        match task.await.unwrap().unwrap() {
            UpdateOutcome::Recorded { .. } | UpdateOutcome::Unchanged { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let (state, revision) = app.load_order(&streams::order(&key("1003"))).await.unwrap();
    assert_eq!(
        revision,
        Some(2),
        "OrderPlaced, OrderPaid, CommissionCalculated"
    );
    assert_eq!(state.holdings.len(), 4);
    let postings = CommissionPostings::open(store.clone()).await.unwrap();
    postings.catch_up().await.unwrap();
    let (_, count) = ledger(&store).await;
    assert_eq!(count.values().sum::<usize>(), 4);
}

#[tokio::test]
async fn postings_resume_after_a_stop_between_the_order_append_and_the_postings() {
    let dir = tempfile::tempdir().unwrap();
    {
        // The order is recorded, then the process stops before any posting.
        let (store, app) = app_in(dir.path()).await;
        seed_company(&app).await;
        let mut update = placed("1004");
        update.facts.push(OrderFact::Paid { at: t(3, 11) });
        app.handle_update(&update, &cmd(), "test").await.unwrap();
        drop(app);
        store.close().await.unwrap();
    }
    let store = open_store(dir.path()).await;
    assert!(
        ledger(&store).await.1.is_empty(),
        "nothing posted before the restart"
    );
    let postings = CommissionPostings::open(store.clone()).await.unwrap();
    postings.catch_up().await.unwrap();
    let (balance, count) = ledger(&store).await;
    assert_eq!(balance["commissions-d3"], dec!(10.00));
    assert!(count.values().all(|n| *n == 1));

    // Now a stop after the postings but before the checkpoint: the checkpoint falls back to 0
    // and everything is processed again, without a single duplicate.
    let checkpoint = streams::checkpoint(upline_app::postings::CHECKPOINT_NAME);
    let rewind = upline_app::eventio::event_data(
        &checkpoint,
        "rewind",
        &CheckpointEvent::CheckpointRecorded { position: 0 },
        &cmd(),
    )
    .unwrap();
    store
        .append(&checkpoint, ExpectedRevision::Any, vec![rewind])
        .await
        .unwrap();
    let again = CommissionPostings::open(store.clone()).await.unwrap();
    assert_eq!(*again.position().borrow(), 0);
    again.catch_up().await.unwrap();
    let (balance_after, count_after) = ledger(&store).await;
    assert_eq!(balance_after, balance);
    assert_eq!(count_after, count);
}

#[tokio::test]
async fn facts_in_any_order_give_the_same_ledger() {
    let facts = [
        placed("2001"),
        fact("2001", OrderFact::Paid { at: t(3, 11) }),
        fact("2001", refund("r1", dec!(1))),
        fact("2001", OrderFact::Paid { at: t(3, 11) }),
    ];
    let orders: [[usize; 4]; 4] = [[0, 1, 2, 3], [2, 1, 3, 0], [1, 2, 0, 3], [3, 2, 1, 0]];
    let mut ledgers = Vec::new();
    for order in orders {
        let dir = tempfile::tempdir().unwrap();
        let (store, app) = app_in(dir.path()).await;
        seed_company(&app).await;
        for i in order {
            app.handle_update(&facts[i], &cmd(), "test").await.unwrap();
        }
        CommissionPostings::open(store.clone())
            .await
            .unwrap()
            .catch_up()
            .await
            .unwrap();
        ledgers.push(ledger(&store).await.0);
    }
    // Half the order was refunded: d3 holds 5 % of 100.00 after netting.
    assert_eq!(ledgers[0]["commissions-d3"], dec!(5.00));
    for l in &ledgers[1..] {
        assert_eq!(l, &ledgers[0]);
    }
}

#[tokio::test]
async fn an_unmapped_sku_parks_and_a_retry_uses_the_hierarchy_at_the_order_time() {
    let dir = tempfile::tempdir().unwrap();
    let (store, app) = app_in(dir.path()).await;
    seed_company(&app).await;
    let update = OrderUpdate {
        key: key("3001"),
        order: Some(order(Some("CODE3"), "BEAUTY02")),
        facts: vec![OrderFact::Paid { at: t(3, 11) }],
    };
    let outcome = app.handle_update(&update, &cmd(), "test").await.unwrap();
    let UpdateOutcome::Parked { reason, .. } = outcome else {
        panic!("not parked: {outcome:?}")
    };
    assert!(reason.contains("BEAUTY02"), "{reason}");
    let parked = app.list_parked().await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].order_stream, streams::order(&key("3001")));

    // Retrying before the fix keeps it parked.
    let still = app
        .retry_parked(&parked[0].order_stream, &cmd())
        .await
        .unwrap();
    assert!(matches!(still, UpdateOutcome::Parked { .. }));
    assert_eq!(app.list_parked().await.unwrap()[0].retries, 1);

    // After the order, d3 is suspended: today's network must not matter for a March order.
    let suspend = DistributorCommand::ChangeStatus {
        distributor_id: DistributorId::new("d3").unwrap(),
        status: DistributorStatus::Suspended,
        effective_at: t(4, 1),
    };
    app.company()
        .execute_network(&suspend, &cmd())
        .await
        .unwrap();
    map_sku(&app, "BEAUTY02", "retail").await;
    let fixed = app
        .retry_parked(&parked[0].order_stream, &cmd())
        .await
        .unwrap();
    assert!(matches!(fixed, UpdateOutcome::Recorded { .. }), "{fixed:?}");
    assert!(app.list_parked().await.unwrap().is_empty());
    CommissionPostings::open(store.clone())
        .await
        .unwrap()
        .catch_up()
        .await
        .unwrap();
    assert_eq!(ledger(&store).await.0["commissions-d3"], dec!(10.00));
}

#[tokio::test]
async fn an_unknown_referral_code_parks_until_the_distributor_is_registered() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, app) = app_in(dir.path()).await;
    seed_company(&app).await;
    let update = OrderUpdate {
        key: key("3002"),
        order: Some(order(Some("NEWBIE"), "SUPP001")),
        facts: vec![],
    };
    let outcome = app.handle_update(&update, &cmd(), "test").await.unwrap();
    assert!(
        matches!(&outcome, UpdateOutcome::Parked { reason, .. } if reason.contains("NEWBIE")),
        "{outcome:?}"
    );
    let register = DistributorCommand::RegisterDistributor {
        distributor_id: DistributorId::new("d4").unwrap(),
        sponsor: Some(DistributorId::new("d3").unwrap()),
        referral_codes: vec![ReferralCode::new("NEWBIE").unwrap()],
        country: "US".into(),
        status: DistributorStatus::Active,
        rank: RankName::new("member").unwrap(),
        joined_at: t(1, 2),
    };
    app.company()
        .execute_network(&register, &cmd())
        .await
        .unwrap();
    app.retry_parked(&streams::order(&key("3002")), &cmd())
        .await
        .unwrap();
    let (state, _) = app.load_order(&streams::order(&key("3002"))).await.unwrap();
    assert_eq!(
        state.details.unwrap().distributor,
        Some(DistributorId::new("d4").unwrap())
    );
}

/// Given a customer nobody has enrolled, when their first order arrives with a referral code,
/// then the order's events and the enrolment go to the store in one ordered call, the
/// enrolment after them. (The embedded store commits the appends of one call together when its
/// writer is busy; an idle writer may take the first alone.)
#[tokio::test]
async fn a_first_enrolment_is_appended_with_the_order_that_made_it() {
    let dir = tempfile::tempdir().unwrap();
    let real = open_store(dir.path()).await;
    let store = FailingStore::over(real.clone());
    let app = App::open(store.clone(), AppConfig::default())
        .await
        .unwrap();
    seed_company(&app).await;
    let before = store.ordered_calls().len();

    app.handle_update(&placed("5001"), &cmd(), "test")
        .await
        .unwrap();

    let order_stream = streams::order(&key("5001"));
    let key = key("5001");
    let customer_stream = streams::customer(key.platform, &key.shop, "cust-1");
    assert_eq!(
        store.ordered_calls()[before..],
        [vec![order_stream.clone(), customer_stream.clone()]]
    );
    let read = |stream: String| {
        let real = real.clone();
        async move {
            real.read_stream(&stream, Direction::Forwards, StreamStart::Start, 100)
                .await
                .unwrap()
        }
    };
    let order_events = read(order_stream).await;
    let enrolment = read(customer_stream).await;
    assert_eq!(enrolment.len(), 1);
    assert_eq!(enrolment[0].event_type, "CustomerEnrolled");
    assert!(enrolment[0].position > order_events.last().unwrap().position);
}

#[tokio::test]
async fn the_first_referrer_enrols_the_customer_for_later_orders() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, app) = app_in(dir.path()).await;
    seed_company(&app).await;
    app.handle_update(
        &OrderUpdate {
            key: key("4001"),
            order: Some(order(Some("CODE2"), "SUPP001")),
            facts: vec![],
        },
        &cmd(),
        "test",
    )
    .await
    .unwrap();
    // The same customer orders again with no reference: credited to their enrolling distributor.
    app.handle_update(
        &OrderUpdate {
            key: key("4002"),
            order: Some(order(None, "SUPP001")),
            facts: vec![],
        },
        &cmd(),
        "test",
    )
    .await
    .unwrap();
    let (state, _) = app.load_order(&streams::order(&key("4002"))).await.unwrap();
    assert_eq!(
        state.details.unwrap().distributor,
        Some(DistributorId::new("d2").unwrap())
    );
    // An anonymous order with no reference at all is recorded as unattributed.
    let mut anonymous = order(None, "SUPP001");
    anonymous.attribution.customer_id = None;
    app.handle_update(
        &OrderUpdate {
            key: key("4003"),
            order: Some(anonymous),
            facts: vec![],
        },
        &cmd(),
        "test",
    )
    .await
    .unwrap();
    let (state, _) = app.load_order(&streams::order(&key("4003"))).await.unwrap();
    assert_eq!(state.details.unwrap().distributor, None);
}

#[tokio::test]
async fn the_company_model_reloads_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, app) = app_in(dir.path()).await;
        seed_company(&app).await;
        drop(app);
        store.close().await.unwrap();
    }
    let (_store, app) = app_in(dir.path()).await;
    let company = app.company().read().await;
    assert_eq!(company.company.network.len(), 4);
    assert!(company.company.plans.get("2026.1").is_some());
    assert!(company
        .company
        .catalog
        .resolve(Platform::Shopify, "SUPP001", t(3, 1))
        .is_some());
}

#[tokio::test]
async fn a_change_made_by_another_process_is_seen_before_the_next_decision() {
    let dir = tempfile::tempdir().unwrap();
    let (store, server) = app_in(dir.path()).await;
    seed_company(&server).await;
    // The operator's tool opens its own model on the same store and maps a new SKU.
    let operator = App::open(store.clone(), AppConfig::default())
        .await
        .unwrap();
    map_sku(&operator, "BEAUTY02", "retail").await;
    let update = OrderUpdate {
        key: key("5001"),
        order: Some(order(Some("CODE3"), "BEAUTY02")),
        facts: vec![OrderFact::Paid { at: t(3, 11) }],
    };
    let outcome = server.handle_update(&update, &cmd(), "test").await.unwrap();
    assert!(
        matches!(outcome, UpdateOutcome::Recorded { events: 3, .. }),
        "{outcome:?}"
    );
    // Applying what the model already holds changes nothing: the catalog has one version.
    let company = server.company().read().await;
    assert_eq!(
        company
            .company
            .catalog
            .history(Platform::Shopify, "BEAUTY02")
            .len(),
        1
    );
    assert_eq!(company.company.network.len(), 4);
}
