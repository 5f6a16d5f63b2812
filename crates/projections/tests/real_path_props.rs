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

use chrono::{DateTime, TimeZone, Utc};
use common::{event_store, Target};
use proptest::prelude::*;
use rust_decimal::Decimal;
use upline_app::eventio::decode_recorded;
use upline_app::records::{CheckpointEvent, CustomerEvent, ParkingEvent, PlanEvent, PostingEvent};
use upline_app::{App, AppConfig, CommissionPostings, Provenance};
use upline_domain::catalog::{CatalogEvent, SkuMapping};
use upline_domain::ids::*;
use upline_domain::money::Currency;
use upline_domain::net::OrderLine;
use upline_domain::network::{DistributorCommand, DistributorEvent};
use upline_domain::order::{OrderEvent, OrderKey, Refund, RefundLine, RefundScope};
use upline_domain::plan::CommissionPlan;
use upline_domain::snapshot::DistributorStatus;
use upline_platforms::model::{AttributionHints, NormalizedOrder, OrderFact, OrderUpdate};
use upline_projections::{LedgerProjection, LedgerQuery, ProjectionRunner};
use upline_store::{AllStart, EventStore, RecordedEvent, StreamFilter};

fn t(month: u32, day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, month, day, 12, 0, 0)
        .single()
        .expect("valid date")
}

fn cmd() -> Provenance {
    Provenance::command("real-path-props")
}

/// (name, sponsor index, status, rank): a line of seven with a branch, one inactive member
/// (compressed away by the example plan) and ranks that unlock 1 to 6 levels.
const DISTRIBUTORS: [(&str, Option<usize>, DistributorStatus, &str); 7] = [
    ("top", None, DistributorStatus::Active, "gold"),
    ("d1", Some(0), DistributorStatus::Active, "silver"),
    ("d2", Some(1), DistributorStatus::Inactive, "gold"),
    ("d3", Some(2), DistributorStatus::Active, "bronze"),
    ("d4", Some(3), DistributorStatus::Active, "gold"),
    ("d5", Some(4), DistributorStatus::Active, "member"),
    ("d6", Some(3), DistributorStatus::Active, "silver"),
];

/// (platform SKU, class, CV per unit).
const SKUS: [(&str, &str, Option<i64>); 3] = [
    ("SUPP001", "retail", None),
    ("KIT-STARTER-001", "starter_kit", Some(3750)),
    ("SUB-1", "subscription", None),
];

async fn seed_company(app: &App) {
    let plan = CommissionPlan::from_toml(include_str!("../../../examples/plan.toml"))
        .expect("the example plan is valid");
    app.company()
        .publish_plan(plan, &cmd())
        .await
        .expect("publish plan");
    for (i, (name, sponsor, _, rank)) in DISTRIBUTORS.iter().enumerate() {
        let command = DistributorCommand::RegisterDistributor {
            distributor_id: DistributorId::new(name).expect("id"),
            sponsor: sponsor.map(|s| DistributorId::new(DISTRIBUTORS[s].0).expect("id")),
            referral_codes: vec![ReferralCode::new(format!("CODE{i}")).expect("code")],
            country: "US".into(),
            status: DistributorStatus::Active,
            rank: RankName::new(rank).expect("rank"),
            joined_at: t(1, 1),
        };
        app.company()
            .execute_network(&command, &cmd())
            .await
            .expect("register");
    }
    for (name, _, status, _) in DISTRIBUTORS
        .iter()
        .filter(|d| d.2 != DistributorStatus::Active)
    {
        let command = DistributorCommand::ChangeStatus {
            distributor_id: DistributorId::new(name).expect("id"),
            status: *status,
            effective_at: t(1, 2),
        };
        app.company()
            .execute_network(&command, &cmd())
            .await
            .expect("status change");
    }
    for (sku, class, cv) in SKUS {
        let mapping = SkuMapping {
            platform: Platform::Shopify,
            platform_sku: sku.into(),
            effective_from: t(1, 1),
            sku_id: SkuId::new(sku).expect("sku"),
            name: sku.to_lowercase(),
            category: class.into(),
            commission_class: CommissionClass::new(class).expect("class"),
            pv_per_unit: Some(Decimal::new(125, 1)),
            cv_per_unit: cv.map(|c| Decimal::new(c, 2)),
        };
        app.company()
            .map_sku(mapping, &cmd())
            .await
            .expect("map sku");
    }
}

// ---------------------------------------------------------------------------------------------
// Random orders.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct LineDraft {
    sku: usize,
    quantity: u32,
    price_cents: i64,
    /// The line's own discount, in percent of its subtotal (rounded down to cents).
    discount_pct: i64,
}

#[derive(Debug, Clone)]
enum RefundDraft {
    /// (line pick, quantity pick, stated net in cents as a percent of the line's subtotal).
    Lines(Vec<(usize, u32, Option<i64>)>),
    /// A percent of the order's subtotal.
    Amount(i64),
}

#[derive(Debug, Clone)]
struct OrderDraft {
    seller: usize,
    /// Order-level discount, in percent of the order's subtotal (rounded down to cents).
    discount_pct: i64,
    lines: Vec<LineDraft>,
    paid: bool,
    cancelled: bool,
    refunds: Vec<RefundDraft>,
}

fn order_draft() -> impl Strategy<Value = OrderDraft> {
    // Thirds and sixths are where an exact share of a line has no end.
    let quantity = prop_oneof![2 => 1u32..=6, 1 => Just(3u32), 1 => Just(6u32)];
    let line = (0..SKUS.len(), quantity, 100i64..=20_000, 0i64..=20).prop_map(
        |(sku, quantity, price, discount_pct)| LineDraft {
            sku,
            quantity,
            price_cents: price,
            discount_pct,
        },
    );
    let refund = prop_oneof![
        3 => prop::collection::vec(
            (0usize..3, 0u32..6, prop::option::weighted(0.4, 1i64..=120)),
            1..=3,
        )
        .prop_map(RefundDraft::Lines),
        1 => (1i64..=30).prop_map(RefundDraft::Amount),
    ];
    (
        (
            0..DISTRIBUTORS.len(),
            prop_oneof![1 => Just(0i64), 1 => 1i64..=20],
        ),
        prop::collection::vec(line, 1..=3),
        prop::bool::weighted(0.85),
        prop::bool::weighted(0.2),
        prop::collection::vec(refund, 0..=3),
    )
        .prop_map(
            |((seller, discount_pct), lines, paid, cancelled, refunds)| OrderDraft {
                seller,
                discount_pct,
                lines,
                paid,
                cancelled,
                refunds,
            },
        )
}

fn key(n: usize) -> OrderKey {
    OrderKey {
        platform: Platform::Shopify,
        shop: ShopId::new("acme.myshopify.com").expect("shop"),
        order_id: PlatformOrderId::new(format!("{}", 5000 + n)).expect("order id"),
    }
}

fn lines(draft: &OrderDraft) -> Vec<OrderLine> {
    draft
        .lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let subtotal = Decimal::from(i64::from(l.quantity) * l.price_cents);
            OrderLine {
                line_id: LineId::new(format!("{}", i + 1)).expect("line id"),
                platform_sku: SKUS[l.sku].0.into(),
                quantity: Decimal::from(l.quantity),
                unit_price: Decimal::new(l.price_cents, 2),
                discount: cents(percent(subtotal, l.discount_pct)),
                tax: Decimal::ZERO,
            }
        })
        .collect()
}

/// `pct` percent of `amount`, rounded down to whole units.
fn percent(amount: Decimal, pct: i64) -> Decimal {
    (amount * Decimal::new(pct, 2)).floor()
}

fn cents(whole_cents: Decimal) -> Decimal {
    whole_cents / Decimal::ONE_HUNDRED
}

/// The order-level discount: a percent of the lines' subtotal, in whole cents.
fn order_discount(draft: &OrderDraft) -> Decimal {
    let subtotal_cents: i64 = draft
        .lines
        .iter()
        .map(|l| i64::from(l.quantity) * l.price_cents)
        .sum();
    cents(percent(Decimal::from(subtotal_cents), draft.discount_pct))
}

/// The refunds made concrete: a line is never refunded beyond its quantity, and amounts stay
/// below the order's net (at most three refunds of at most 30 % of it each).
fn refunds(draft: &OrderDraft) -> Vec<Refund> {
    let lines = lines(draft);
    let subtotals: Vec<Decimal> = lines.iter().map(|l| l.quantity * l.unit_price).collect();
    let order_net: Decimal = lines
        .iter()
        .zip(&subtotals)
        .map(|(l, s)| s - l.discount)
        .sum::<Decimal>()
        - order_discount(draft);
    let mut left: Vec<u32> = draft.lines.iter().map(|l| l.quantity).collect();
    let mut made = Vec::new();
    for (n, refund) in draft.refunds.iter().enumerate() {
        let scope = match refund {
            RefundDraft::Lines(picks) => {
                let mut refund_lines: Vec<RefundLine> = Vec::new();
                for (line_pick, quantity_pick, stated_pct) in picks {
                    let i = line_pick % lines.len();
                    if left[i] == 0 || refund_lines.iter().any(|r| r.line_id == lines[i].line_id) {
                        continue;
                    }
                    let quantity = 1 + quantity_pick % left[i];
                    left[i] -= quantity;
                    let stated_net = stated_pct
                        .map(|pct| (subtotals[i] * Decimal::new(pct, 2)).round_dp(2))
                        .filter(|a| *a > Decimal::ZERO);
                    refund_lines.push(RefundLine {
                        line_id: lines[i].line_id.clone(),
                        quantity: Decimal::from(quantity),
                        stated_net,
                    });
                }
                if refund_lines.is_empty() {
                    continue;
                }
                RefundScope::Lines(refund_lines)
            }
            RefundDraft::Amount(pct) => {
                RefundScope::NetAmount(cents(percent(order_net * Decimal::ONE_HUNDRED, *pct)))
            }
        };
        made.push(Refund {
            refund_id: RefundId::new(format!("r{n}")).expect("refund id"),
            refunded_at: t(3, 20),
            scope,
        });
    }
    made
}

/// Every delivery the platform would send for the order, in a natural order.
fn updates(n: usize, draft: &OrderDraft) -> Vec<OrderUpdate> {
    let fact = |fact: OrderFact| OrderUpdate {
        key: key(n),
        order: None,
        facts: vec![fact],
    };
    let lines = lines(draft);
    let subtotal: Decimal = lines.iter().map(|l| l.quantity * l.unit_price).sum();
    let mut updates = vec![OrderUpdate {
        key: key(n),
        order: Some(NormalizedOrder {
            placed_at: t(3, 10),
            updated_at: t(3, 10),
            currency: Currency::USD,
            prices_include_tax: false,
            lines,
            order_discount: order_discount(draft),
            shipping: Decimal::ZERO,
            tax: Decimal::ZERO,
            declared_total: subtotal - order_discount(draft),
            attribution: AttributionHints {
                explicit_ref: Some(format!("CODE{}", draft.seller)),
                ..AttributionHints::default()
            },
            test: false,
        }),
        facts: vec![],
    }];
    if draft.paid {
        updates.push(fact(OrderFact::Paid { at: t(3, 11) }));
    }
    updates.extend(
        refunds(draft)
            .into_iter()
            .map(|r| fact(OrderFact::Refunded(r))),
    );
    if draft.cancelled {
        updates.push(fact(OrderFact::Cancelled { at: t(3, 25) }));
    }
    updates
}

#[derive(Debug, Clone)]
struct Case {
    orders: Vec<OrderDraft>,
    /// Each delivery sent this many extra times (duplicates), by index modulo the length.
    repeats: Vec<u8>,
    /// Sort keys that shuffle the arrival of every delivery, by index modulo the length.
    arrival: Vec<u32>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(order_draft(), 1..=4),
        prop::collection::vec(prop_oneof![3 => Just(0u8), 1 => 1u8..=2], 1..=32),
        prop::collection::vec(any::<u32>(), 1..=64),
    )
        .prop_map(|(orders, repeats, arrival)| Case {
            orders,
            repeats,
            arrival,
        })
}

/// Every delivery of every order, duplicated and shuffled.
fn deliveries(case: &Case) -> Vec<OrderUpdate> {
    let mut all: Vec<OrderUpdate> = Vec::new();
    for (n, order) in case.orders.iter().enumerate() {
        all.extend(updates(n, order));
    }
    let mut sent: Vec<(u32, usize, OrderUpdate)> = Vec::new();
    for (i, update) in all.into_iter().enumerate() {
        let copies = 1 + case.repeats[i % case.repeats.len()] as usize;
        for c in 0..copies {
            let j = i * 3 + c;
            sent.push((case.arrival[j % case.arrival.len()], j, update.clone()));
        }
    }
    sent.sort_by_key(|(arrival, j, _)| (*arrival, *j));
    sent.into_iter().map(|(_, _, u)| u).collect()
}

// ---------------------------------------------------------------------------------------------
// What must hold.
// ---------------------------------------------------------------------------------------------

async fn every_event(store: &Arc<dyn EventStore>) -> Vec<RecordedEvent> {
    let mut all = Vec::new();
    let mut from = AllStart::Start;
    loop {
        let page = store
            .read_all(from, &StreamFilter::default(), 1_000)
            .await
            .expect("read $all");
        let Some(last) = page.last() else { break };
        from = AllStart::After(last.position);
        all.extend(page);
    }
    all
}

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
    let store = event_store(dir.path()).await;
    let app = App::open(store.clone(), AppConfig::default())
        .await
        .expect("open app");
    seed_company(&app).await;

    let mut refused = Vec::new();
    for update in deliveries(&case) {
        if let Err(e) = app.handle_update(&update, &cmd(), "test").await {
            refused.push(format!("{}: {e}", update.key.stream_name()));
        }
    }
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

    let order_filter = StreamFilter {
        stream_prefixes: vec!["order-".into()],
    };
    let order_head = every_event(&store)
        .await
        .iter()
        .filter(|r| {
            order_filter
                .stream_prefixes
                .iter()
                .any(|p| r.stream_id.starts_with(p))
        })
        .map(|r| r.position)
        .max()
        .unwrap_or(0);
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
