//! Random order histories through the real path, shared by the property tests that drive it
//! (`real_path_props`, `batch_equivalence`): the company they are sold in (a plan, seven
//! distributors, three SKUs), random orders with partial refunds (any quantities, any stated
//! amounts, amounts only), cancellations, duplicate deliveries and shuffled arrival, and the
//! `upline_app::App` over the embedded SQLite event store that records them.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use rust_decimal::Decimal;
use upline_app::{App, AppConfig, Provenance};
use upline_domain::catalog::SkuMapping;
use upline_domain::ids::*;
use upline_domain::money::Currency;
use upline_domain::net::OrderLine;
use upline_domain::network::DistributorCommand;
use upline_domain::order::{OrderKey, Refund, RefundLine, RefundScope};
use upline_domain::plan::CommissionPlan;
use upline_domain::snapshot::DistributorStatus;
use upline_platforms::model::{AttributionHints, NormalizedOrder, OrderFact, OrderUpdate};
use upline_store::{AllStart, EventStore, RecordedEvent, StreamFilter};

pub fn t(month: u32, day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, month, day, 12, 0, 0)
        .single()
        .expect("valid date")
}

pub fn cmd() -> Provenance {
    Provenance::command("real-path-props")
}

/// (name, sponsor index, status, rank): a line of seven with a branch, one inactive member
/// (compressed away by the example plan) and ranks that unlock 1 to 6 levels.
pub const DISTRIBUTORS: [(&str, Option<usize>, DistributorStatus, &str); 7] = [
    ("top", None, DistributorStatus::Active, "gold"),
    ("d1", Some(0), DistributorStatus::Active, "silver"),
    ("d2", Some(1), DistributorStatus::Inactive, "gold"),
    ("d3", Some(2), DistributorStatus::Active, "bronze"),
    ("d4", Some(3), DistributorStatus::Active, "gold"),
    ("d5", Some(4), DistributorStatus::Active, "member"),
    ("d6", Some(3), DistributorStatus::Active, "silver"),
];

/// (platform SKU, class, CV per unit).
pub const SKUS: [(&str, &str, Option<i64>); 3] = [
    ("SUPP001", "retail", None),
    ("KIT-STARTER-001", "starter_kit", Some(3750)),
    ("SUB-1", "subscription", None),
];

/// The shop of every order of [`key`].
pub const SHOP: &str = "acme.myshopify.com";

/// Maps a Shopify SKU from January 1st: `class` is its commission class, `cv` its CV per unit
/// in cents (none: the base is the net).
pub async fn map_sku(app: &App, sku: &str, class: &str, cv: Option<i64>) {
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

pub async fn seed_company(app: &App) {
    let plan = CommissionPlan::from_toml(include_str!("../../../../examples/plan.toml"))
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
        map_sku(app, sku, class, cv).await;
    }
}

/// The embedded event store in `dir` and the app over it, with the company seeded.
pub async fn seeded_app(dir: &std::path::Path) -> (Arc<dyn EventStore>, App) {
    let store = super::event_store(dir).await;
    let app = App::open(store.clone(), AppConfig::default())
        .await
        .expect("open app");
    seed_company(&app).await;
    (store, app)
}

/// Sends every delivery to the app, in order; what failed (an error, not a parking).
pub async fn deliver(app: &App, deliveries: &[OrderUpdate]) -> Vec<String> {
    let mut refused = Vec::new();
    for update in deliveries {
        if let Err(e) = app.handle_update(update, &cmd(), "test").await {
            refused.push(format!("{}: {e}", update.key.stream_name()));
        }
    }
    refused
}

// ---------------------------------------------------------------------------------------------
// Random orders.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct LineDraft {
    pub sku: usize,
    pub quantity: u32,
    pub price_cents: i64,
    /// The line's own discount, in percent of its subtotal (rounded down to cents).
    pub discount_pct: i64,
}

#[derive(Debug, Clone)]
pub enum RefundDraft {
    /// (line pick, quantity pick, stated net in cents as a percent of the line's subtotal).
    Lines(Vec<(usize, u32, Option<i64>)>),
    /// A percent of the order's subtotal.
    Amount(i64),
}

#[derive(Debug, Clone)]
pub struct OrderDraft {
    pub seller: usize,
    /// Order-level discount, in percent of the order's subtotal (rounded down to cents).
    pub discount_pct: i64,
    pub lines: Vec<LineDraft>,
    pub paid: bool,
    pub cancelled: bool,
    pub refunds: Vec<RefundDraft>,
}

pub fn order_draft() -> impl Strategy<Value = OrderDraft> {
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

/// The key of order `n` in [`SHOP`].
pub fn key(n: usize) -> OrderKey {
    key_in(SHOP, n)
}

/// The key of order `n` in `shop` (a Shopify shop).
pub fn key_in(shop: &str, n: usize) -> OrderKey {
    OrderKey {
        platform: Platform::Shopify,
        shop: ShopId::new(shop).expect("shop"),
        order_id: PlatformOrderId::new(format!("{}", 5000 + n)).expect("order id"),
    }
}

pub fn lines(draft: &OrderDraft) -> Vec<OrderLine> {
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
pub fn percent(amount: Decimal, pct: i64) -> Decimal {
    (amount * Decimal::new(pct, 2)).floor()
}

pub fn cents(whole_cents: Decimal) -> Decimal {
    whole_cents / Decimal::ONE_HUNDRED
}

/// The order-level discount: a percent of the lines' subtotal, in whole cents.
pub fn order_discount(draft: &OrderDraft) -> Decimal {
    let subtotal_cents: i64 = draft
        .lines
        .iter()
        .map(|l| i64::from(l.quantity) * l.price_cents)
        .sum();
    cents(percent(Decimal::from(subtotal_cents), draft.discount_pct))
}

/// The refunds made concrete: a line is never refunded beyond its quantity, and amounts stay
/// below the order's net (at most three refunds of at most 30 % of it each).
pub fn refunds(draft: &OrderDraft) -> Vec<Refund> {
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

/// Where, when and in what an order is placed.
#[derive(Debug, Clone)]
pub struct Placement {
    pub shop: String,
    pub placed_at: DateTime<Utc>,
    pub currency: Currency,
}

impl Default for Placement {
    /// In [`SHOP`], on March 10th, in USD.
    fn default() -> Placement {
        Placement {
            shop: SHOP.into(),
            placed_at: t(3, 10),
            currency: Currency::USD,
        }
    }
}

/// Every delivery the platform would send for the order, in a natural order.
pub fn updates(n: usize, draft: &OrderDraft) -> Vec<OrderUpdate> {
    updates_placed(n, draft, &Placement::default())
}

/// [`updates`] of an order placed as `placement` says (paid on March 11th, refunded on the
/// 20th, cancelled on the 25th whenever it was placed).
pub fn updates_placed(n: usize, draft: &OrderDraft, placement: &Placement) -> Vec<OrderUpdate> {
    let key = key_in(&placement.shop, n);
    let fact = |fact: OrderFact| OrderUpdate {
        key: key.clone(),
        order: None,
        facts: vec![fact],
    };
    let lines = lines(draft);
    let subtotal: Decimal = lines.iter().map(|l| l.quantity * l.unit_price).sum();
    let mut updates = vec![OrderUpdate {
        key: key.clone(),
        order: Some(NormalizedOrder {
            placed_at: placement.placed_at,
            updated_at: placement.placed_at,
            currency: placement.currency,
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
pub struct Case {
    pub orders: Vec<OrderDraft>,
    /// Each delivery sent this many extra times (duplicates), by index modulo the length.
    pub repeats: Vec<u8>,
    /// Sort keys that shuffle the arrival of every delivery, by index modulo the length.
    pub arrival: Vec<u32>,
}

pub fn case() -> impl Strategy<Value = Case> {
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

/// Every delivery of every order ([`updates`]), duplicated and shuffled.
pub fn deliveries(case: &Case) -> Vec<OrderUpdate> {
    deliveries_of(case, updates)
}

/// Every delivery of every order, as `updates` (order index, order) makes them, duplicated
/// and shuffled as the case says.
pub fn deliveries_of(
    case: &Case,
    updates: impl Fn(usize, &OrderDraft) -> Vec<OrderUpdate>,
) -> Vec<OrderUpdate> {
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

/// Every event of `$all`, in order.
pub async fn every_event(store: &Arc<dyn EventStore>) -> Vec<RecordedEvent> {
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

/// The last position of an order stream's event (0: none).
pub async fn order_head(store: &Arc<dyn EventStore>) -> u64 {
    every_event(store)
        .await
        .iter()
        .filter(|r| r.stream_id.starts_with("order-"))
        .map(|r| r.position)
        .max()
        .unwrap_or(0)
}
