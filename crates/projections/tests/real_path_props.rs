//! Through the real path, on random orders: `upline_app::App` decides and records the orders
//! in the embedded SQLite event store (real files in a tempdir), `CommissionPostings` posts the
//! commissions to the distributor streams, and the projection runner books them in the ledger on
//! the SQLite read store. Orders come with random partial refunds (any quantities, any stated
//! amounts, amounts only), cancellations, duplicate deliveries and shuffled arrival.
//!
//! Then: every event in the store decodes, nobody is left holding anything (postings and the
//! projection are at the head), and every distributor's ledger balance is what the order streams
//! say they hold.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::real_path::{
    case, deliver, deliveries, every_event, key, order_head, seeded_app, Case, DISTRIBUTORS,
};
use common::Target;
use proptest::prelude::*;
use rust_decimal::Decimal;
use upline_app::eventio::decode_recorded;
use upline_app::records::{CheckpointEvent, CustomerEvent, ParkingEvent, PlanEvent, PostingEvent};
use upline_app::{App, CommissionPostings};
use upline_domain::catalog::CatalogEvent;
use upline_domain::network::DistributorEvent;
use upline_domain::order::OrderEvent;
use upline_projections::{LedgerProjection, LedgerQuery, ProjectionRunner};
use upline_store::RecordedEvent;

// ---------------------------------------------------------------------------------------------
// What must hold. (The company, the random orders and their deliveries: common::real_path.)
// ---------------------------------------------------------------------------------------------

/// Decodes an event as the type its stream holds; the reason when it does not decode.
fn decodes(r: &RecordedEvent) -> Result<(), String> {
    let stream = r.stream_id.as_str();
    let decoded = if stream.starts_with("order-") {
        decode_recorded::<OrderEvent>(r).map(drop)
    } else if stream.starts_with("commissions-") {
        decode_recorded::<PostingEvent>(r).map(drop)
    } else if stream.starts_with("distributor-") {
        decode_recorded::<DistributorEvent>(r).map(drop)
    } else if stream.starts_with("sku-") {
        decode_recorded::<CatalogEvent>(r).map(drop)
    } else if stream.starts_with("plan-") {
        decode_recorded::<PlanEvent>(r).map(drop)
    } else if stream.starts_with("customer-") {
        decode_recorded::<CustomerEvent>(r).map(drop)
    } else if stream.starts_with("parked-") {
        decode_recorded::<ParkingEvent>(r).map(drop)
    } else if stream.starts_with("checkpoint-") {
        decode_recorded::<CheckpointEvent>(r).map(drop)
    } else {
        return Err(format!("no decoder for stream {stream}"));
    };
    decoded.map_err(|e| e.to_string())
}

/// What each distributor holds according to the order streams (the fold of each stream's
/// events, summed over the orders).
async fn held_per_distributor(app: &App, orders: usize) -> BTreeMap<String, Decimal> {
    let mut held: BTreeMap<String, Decimal> = BTreeMap::new();
    for n in 0..orders {
        let (state, _) = app
            .load_order(&key(n).stream_name())
            .await
            .expect("load order");
        for (who, amount) in state.holdings {
            *held.entry(who.to_string()).or_default() += amount;
        }
    }
    held
}

async fn through_the_real_path(case: Case) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, app) = seeded_app(dir.path()).await;
    let refused = deliver(&app, &deliveries(&case)).await;
    let postings = CommissionPostings::open(store.clone())
        .await
        .expect("open postings");
    let posted = postings.catch_up().await;

    let undecodable: Vec<String> = every_event(&store)
        .await
        .iter()
        .filter_map(|r| {
            decodes(r)
                .err()
                .map(|why| format!("{}@{} {}: {why}", r.stream_id, r.revision, r.event_type))
        })
        .collect();
    prop_assert!(
        undecodable.is_empty(),
        "{} events do not decode, first: {}",
        undecodable.len(),
        undecodable.first().cloned().unwrap_or_default()
    );
    prop_assert!(refused.is_empty(), "updates failed: {refused:#?}");
    if let Err(e) = posted {
        return Err(TestCaseError::fail(format!("postings stalled: {e}")));
    }

    let order_head = order_head(&store).await;
    let at = *postings.position().borrow();
    prop_assert_eq!(
        at,
        order_head,
        "postings stopped at {} of {}",
        at,
        order_head
    );

    let target = Target {
        label: "sqlite",
        location: dir
            .path()
            .join("read.sqlite")
            .to_string_lossy()
            .into_owned(),
    };
    let read = target.connect().await;
    let runner = ProjectionRunner::new(
        store.clone(),
        read.clone(),
        vec![Arc::new(LedgerProjection)],
    );
    runner
        .catch_up()
        .await
        .map_err(|e| TestCaseError::fail(format!("ledger: {e}")))?;
    for status in runner.status().await.expect("status") {
        prop_assert_eq!(
            status.lag_events,
            0,
            "{} is {} events behind",
            status.name,
            status.lag_events
        );
    }

    let held = held_per_distributor(&app, case.orders.len()).await;
    let ledger = LedgerQuery::new(read.clone());
    for (name, ..) in DISTRIBUTORS {
        let expected = held.get(name).copied().unwrap_or_default();
        let balances = ledger.balance(name, Some("USD")).await.expect("balance");
        let actual: Decimal = balances.iter().map(|b| b.balance).sum();
        prop_assert_eq!(
            actual,
            expected,
            "distributor {}: ledger balance {} but the order streams say they hold {}",
            name,
            actual,
            expected
        );
    }
    let problems = ledger.verify().await.expect("verify");
    prop_assert!(problems.is_empty(), "ledger: {problems:?}");
    read.close().await;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Given random orders with partial refunds, cancellations, duplicates and shuffled
    /// arrival, when they go through the app, the postings and the ledger projection,
    /// then every event decodes, nothing is held back, and every ledger balance is what the
    /// order streams say the distributor holds.
    #[test]
    fn every_ledger_balance_is_what_the_orders_say(case in case()) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(through_the_real_path(case))?;
    }
}
