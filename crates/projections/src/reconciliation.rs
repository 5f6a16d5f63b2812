//! Reconciliation: per day (UTC, of the order's `placed_at`), platform, shop and currency, what
//! came in, what it was worth, what commissions it should have paid and what was posted.
//!
//! It reads the order streams (`order-`), the parked updates (`parked-`) and the commission
//! postings on `commissions-` streams (attributed to their order through
//! `PostingSource::order_stream`). For each order it keeps what it has learnt (its details,
//! payment, refunds, cancellation, parking, that a calculation was recorded, the latest recorded
//! outcome and the postings; the calculation's inputs are read back from the order's stream
//! when a later fact needs them) and derives three amounts per beneficiary:
//!
//! * **expected**: recomputed here with `upline_domain::order::calculate_remaining` (the engine
//!   on the lines not refunded by the refunds known so far) from the *recorded* inputs of the
//!   order's `CommissionCalculated` (lines, snapshot, currency, and the plan they name by
//!   version, read from its `plan-{version}` stream and checked against the recorded content
//!   hash); zero unless the order is known, paid and not cancelled;
//! * **recorded**: the payouts of the latest recorded outcome (`CommissionCalculated` or
//!   `CommissionRecalculated`);
//! * **posted**: the sum of `CommissionEarned` less `CommissionReversed` posted for the order.
//!
//! An order **differs** when, for any beneficiary, expected ≠ recorded or expected ≠ posted, when
//! the recomputation fails, when an attributed order that is paid and not cancelled has no
//! calculation, or when one of its events (order or parked stream) cannot be read: such an event
//! is reported as a difference (and logged, and counted in
//! `upline_projection_unreadable_events_total`) instead of stopping the projection, since finding
//! what does not add up is this projection's job. An unreadable posting is logged and counted; the
//! order it was for then shows as missing a posting.
//!
//! The seed's target was a delta under 0.1 %; ours is exactly zero on correct data, and a
//! missing, duplicated or wrong posting shows as a difference naming the order and the
//! beneficiary. (Postings trail the order events by the posting process's lag: an order differs
//! until its postings are written.)
//!
//! **Declared total.** Every platform's grand total is checked against the normalised order:
//!
//! ```text
//! lines_total = gross − discounts + shipping + (tax, unless prices include tax)
//! gross       = Σ line subtotals (quantity × unit price, rounded to the minor unit)
//! discounts   = Σ line discounts + order discount
//! ```
//!
//! This is how Shopify (`total_price`), WooCommerce (`total`), Magento (`grand_total`) and the
//! direct API (`total`) add up; an order whose `declared_total ≠ lines_total` is a difference of
//! kind `declared_total` (a transform that drops a line, a discount or a fee shows here; so do
//! charges that are not products, such as a WooCommerce fee line or a Shopify shipping discount).
//!
//! An order is counted on the day of its `placed_at`. Until its details are recorded (a refund
//! or a parked update can come first) it counts on the `placed_at` of a parked copy, else on the
//! UTC day its first event was recorded; it moves to its own day when the details arrive.
//!
//! ## Tables (query the views; amounts are millionths, see [`crate::sql`])
//!
//! **`reconciliation_daily`**: key `(day, platform, shop, currency)`; `day` is `YYYY-MM-DD`.
//!
//! | column | meaning |
//! |---|---|
//! | `orders` | orders counted on the row (any event seen) |
//! | `orders_received` | orders whose details are recorded |
//! | `orders_paid`, `orders_refunded`, `orders_cancelled` | paid; with at least one refund; cancelled |
//! | `orders_parked` | orders with an update parked now (not resolved) |
//! | `orders_unattributed` | received with no distributor |
//! | `gross_e6`, `discounts_e6`, `net_e6`, `tax_e6`, `shipping_e6` | as ordered (refunds do not change them); `net` is the lines' net (after discounts, without tax) |
//! | `declared_total_e6`, `lines_total_e6` | the platforms' totals and the formula above |
//! | `commissionable_base_e6` | the base of the latest recorded outcome (after refunds; 0 once cancelled), rounded to millionths |
//! | `commission_earned_e6`, `commission_reversed_e6` | postings; `commission_posted_e6` = earned − reversed |
//! | `commission_recorded_e6` | Σ payouts of the latest recorded outcomes |
//! | `commission_expected_e6` | Σ payouts recomputed from the recorded snapshots |
//! | `orders_commission_differing`, `orders_total_differing` | orders with a commission difference; with `declared_total ≠ lines_total` |
//!
//! The commission delta is `commission_posted − commission_expected`, in percent of expected.
//!
//! **`reconciliation_orders`**: one row per order (`order_stream`), with the same figures and
//! `day`, `platform`, `shop`, `order_id`, `currency`, `distributor_id`, `paid`, `cancelled`,
//! `refunds`, `parked`, `times_parked`, `differences` (rows in the next table), `last_position`.
//!
//! **`reconciliation_differences`**: key `(order_stream, kind, subject)`, one row per current
//! difference, deleted when it is resolved. `kind`: `commission_posted` (expected vs posted) and
//! `commission_recorded` (expected vs recorded) with the beneficiary as `subject`;
//! `declared_total` (lines_total vs declared_total); `recalculation_failed`,
//! `calculation_missing` and `unreadable_event` (subject: the event's position), explained in
//! `note`. Columns `day`, `platform`, `shop`, `currency`, `expected_e6`, `actual_e6`, `delta_e6`
//! (= actual − expected), `note`.
//!
//! **`reconciliation_state`**: the projection's own memory of each order (JSON), not for queries.
//!
//! ```sql
//! -- Expected against posted, per day, in currency units
//! SELECT day, platform, shop, currency, commission_expected_e6 / 1e6 AS expected,
//!        commission_posted_e6 / 1e6 AS posted, orders_commission_differing
//! FROM reconciliation_daily ORDER BY day;
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::NaiveDate;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;
use upline_app::records::{ParkingEvent, PostingEvent};
use upline_app::streams::{COMMISSIONS_PREFIX, ORDER_PREFIX, PARKED_PREFIX};
use upline_domain::engine::CommissionSummary;
use upline_domain::ids::RefundId;
use upline_domain::net::NetLine;
use upline_domain::order::{self, CalculationInputs, OrderDetails, OrderEvent, Refund};
use upline_domain::plan::CommissionPlan;
use upline_store::{EventStore, RecordedEvent};

use crate::error::ProjectionError;
use crate::projection::Projection;
use crate::shared::recorded::PublishedPlans;
use crate::shared::{
    self, add, add_change, books, day_of, e6_rounded, insert_rows, placeholders, recorded,
    replace_rows, Aggregate, Cell, Contributions, Key, ROWS_PER_STATEMENT,
};
use crate::sql::{
    day_from_sql, day_to_sql, e6_column, execute_all, position_to_sql, table, to_e6, u64_column, Tx,
};
use crate::store::ReadStore;

/// The projection's name (checkpoint key, `upline projections rebuild reconciliation`).
pub const NAME: &str = "reconciliation";
/// The logical tables (views).
pub const DAILY: &str = "reconciliation_daily";
pub const ORDERS: &str = "reconciliation_orders";
pub const DIFFERENCES: &str = "reconciliation_differences";
pub const STATE: &str = "reconciliation_state";
/// Most rows one query returns.
pub const MAX_PAGE: u32 = 1_000;
/// Rows per page when the caller asks for 0.
pub const DEFAULT_PAGE: u32 = 100;

/// The reconciliation projection. It reads an order's recorded calculation inputs back from
/// `history` when a fact after the calculation needs them (see `calculation_currency`), and the
/// plans they name.
#[derive(Clone)]
pub struct ReconciliationProjection {
    history: Arc<dyn EventStore>,
    plans: Arc<PublishedPlans>,
}

impl ReconciliationProjection {
    /// The projection of the events in `history`.
    pub fn new(history: Arc<dyn EventStore>) -> ReconciliationProjection {
        ReconciliationProjection {
            plans: Arc::new(PublishedPlans::new(history.clone())),
            history,
        }
    }
}

/// The inputs of a calculation among `facts`.
fn calculated_in(facts: &[books::Dated<Fact>]) -> Option<&CalculationInputs> {
    facts.iter().find_map(|(_, _, fact)| match fact {
        Fact::Order(e) => match e.as_ref() {
            OrderEvent::CommissionCalculated { inputs, .. } => Some(inputs.as_ref()),
            _ => None,
        },
        _ => None,
    })
}

// ---------------------------------------------------------------------------------------------
// What the projection remembers of one order.

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Posted {
    earned: Decimal,
    reversed: Decimal,
}

/// The reconciliation's memory of one order, stored as JSON in `reconciliation_state`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct OrderBook {
    /// UTC day the first event about the order was recorded.
    first_day: String,
    platform: Option<String>,
    shop: Option<String>,
    order_id: Option<String>,
    /// From a parked copy of the order, until its details are recorded.
    parked_day: Option<String>,
    parked_currency: Option<String>,
    details: Option<OrderDetails>,
    net_lines: Vec<NetLine>,
    paid: bool,
    cancelled: bool,
    refunds: BTreeMap<RefundId, Refund>,
    parked: bool,
    times_parked: u32,
    /// The currency of the order's recorded calculation, once its `CommissionCalculated` is
    /// known. The calculation's inputs are not stored with the book (about 2.7 KB an order,
    /// written again with each batch of the order's postings): they are read back from the
    /// order's stream when a later fact of the order needs a recomputation.
    #[serde(default)]
    calculation_currency: Option<String>,
    /// The recorded inputs, while the book is in memory and a fact needs them. Never saved; a
    /// book saved by an earlier version still holds them, and is read with them (`upgraded`).
    #[serde(skip_serializing, default)]
    inputs: Option<CalculationInputs>,
    /// The latest recorded outcome: its base and payouts.
    recorded: Option<(Decimal, BTreeMap<String, Decimal>)>,
    /// Recomputed from the recorded inputs whenever a fact changes.
    expected: BTreeMap<String, Decimal>,
    expected_error: Option<String>,
    posted: BTreeMap<String, Posted>,
    posting_currency: Option<String>,
    /// Events of the order that could not be read, by position.
    #[serde(default)]
    unreadable: BTreeMap<u64, String>,
}

impl OrderBook {
    fn due(&self) -> bool {
        self.details.is_some() && self.paid && !self.cancelled
    }

    /// The book as this version keeps it: one saved with its calculation's inputs (before they
    /// were read back from the stream instead) notes the calculation they stand for.
    fn upgraded(mut self) -> OrderBook {
        if let Some(inputs) = &self.inputs {
            self.calculation_currency
                .get_or_insert_with(|| inputs.currency.code().to_string());
        }
        self
    }

    /// What each beneficiary should hold, recomputed from the recorded inputs with their plan
    /// (looked up by the caller: `None` when it was not, the reason when it cannot be had).
    fn recompute(&mut self, plan: Option<&Result<Arc<CommissionPlan>, String>>) {
        self.expected.clear();
        self.expected_error = None;
        let Some(inputs) = &self.inputs else { return };
        if !self.due() {
            return;
        }
        let plan = match plan {
            Some(Ok(plan)) => plan,
            Some(Err(reason)) => {
                self.expected_error = Some(reason.clone());
                return;
            }
            None => {
                self.expected_error = Some(format!("plan {} not looked up", inputs.plan_version));
                return;
            }
        };
        match order::calculate_remaining(inputs, plan, self.refunds.values()) {
            Ok(outcome) => {
                self.expected = outcome
                    .payouts
                    .iter()
                    .map(|p| (p.beneficiary.as_str().to_string(), p.amount))
                    .collect();
            }
            Err(e) => self.expected_error = Some(e.to_string()),
        }
    }

    fn day(&self) -> String {
        match (&self.details, &self.parked_day) {
            (Some(d), _) => day_of(d.placed_at),
            (None, Some(day)) => day.clone(),
            (None, None) => self.first_day.clone(),
        }
    }

    fn currency(&self) -> String {
        self.details
            .as_ref()
            .map(|d| d.currency.code().to_string())
            .or_else(|| self.parked_currency.clone())
            .or_else(|| self.calculation_currency.clone())
            .or_else(|| self.posting_currency.clone())
            .unwrap_or_default()
    }
}

/// One current difference of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Found {
    kind: &'static str,
    subject: String,
    expected: Decimal,
    actual: Decimal,
    note: String,
}

/// Everything derived from an [`OrderBook`]: the order's row, its differences, and what it adds
/// to the daily table.
struct Derived {
    day: String,
    platform: String,
    shop: String,
    currency: String,
    gross: Decimal,
    discounts: Decimal,
    net: Decimal,
    tax: Decimal,
    shipping: Decimal,
    declared_total: Decimal,
    lines_total: Decimal,
    base: Decimal,
    earned: Decimal,
    reversed: Decimal,
    recorded: Decimal,
    expected: Decimal,
    differences: Vec<Found>,
}

/// What an order's rows in `reconciliation_differences` hold: unchanged rows are not rewritten.
#[derive(Debug, PartialEq, Eq)]
struct DifferenceRows {
    found: Vec<Found>,
    day: String,
    platform: String,
    shop: String,
    currency: String,
}

impl Derived {
    fn difference_rows(&self) -> DifferenceRows {
        DifferenceRows {
            found: self.differences.clone(),
            day: self.day.clone(),
            platform: self.platform.clone(),
            shop: self.shop.clone(),
            currency: self.currency.clone(),
        }
    }

    fn of(stream: &str, book: &OrderBook) -> Derived {
        let mut d = Derived {
            day: book.day(),
            platform: book
                .platform
                .clone()
                .or_else(|| shared::platform_of_stream(stream))
                .unwrap_or_default(),
            shop: book.shop.clone().unwrap_or_default(),
            currency: book.currency(),
            gross: Decimal::ZERO,
            discounts: Decimal::ZERO,
            net: Decimal::ZERO,
            tax: Decimal::ZERO,
            shipping: Decimal::ZERO,
            declared_total: Decimal::ZERO,
            lines_total: Decimal::ZERO,
            base: book.recorded.as_ref().map_or(Decimal::ZERO, |(b, _)| *b),
            earned: book.posted.values().map(|p| p.earned).sum(),
            reversed: book.posted.values().map(|p| p.reversed).sum(),
            recorded: book
                .recorded
                .as_ref()
                .map_or(Decimal::ZERO, |(_, p)| p.values().copied().sum()),
            expected: book.expected.values().copied().sum(),
            differences: Vec::new(),
        };
        if let Some(details) = &book.details {
            d.gross = book.net_lines.iter().map(|l| l.subtotal).sum();
            d.discounts = book
                .net_lines
                .iter()
                .map(|l| l.line_discount + l.order_discount_share)
                .sum();
            d.net = book.net_lines.iter().map(|l| l.net).sum();
            d.tax = details.tax;
            d.shipping = details.shipping;
            d.declared_total = details.declared_total;
            d.lines_total = d.gross - d.discounts
                + d.shipping
                + if details.prices_include_tax {
                    Decimal::ZERO
                } else {
                    details.tax
                };
            if d.lines_total != d.declared_total {
                d.differences.push(Found {
                    kind: "declared_total",
                    subject: String::new(),
                    expected: d.lines_total,
                    actual: d.declared_total,
                    note: "declared_total differs from gross - discounts + shipping + tax".into(),
                });
            }
            if details.distributor.is_some() && book.due() && book.calculation_currency.is_none() {
                d.differences.push(Found {
                    kind: "calculation_missing",
                    subject: String::new(),
                    expected: Decimal::ZERO,
                    actual: Decimal::ZERO,
                    note: "attributed, paid and not cancelled, but no commission calculation"
                        .into(),
                });
            }
        }
        for (position, note) in &book.unreadable {
            d.differences.push(Found {
                kind: "unreadable_event",
                subject: position.to_string(),
                expected: Decimal::ZERO,
                actual: Decimal::ZERO,
                note: note.clone(),
            });
        }
        if let Some(error) = &book.expected_error {
            d.differences.push(Found {
                kind: "recalculation_failed",
                subject: String::new(),
                expected: Decimal::ZERO,
                actual: Decimal::ZERO,
                note: error.clone(),
            });
        }
        let empty = BTreeMap::new();
        let recorded = book.recorded.as_ref().map_or(&empty, |(_, p)| p);
        let beneficiaries: BTreeSet<&String> = book
            .expected
            .keys()
            .chain(recorded.keys())
            .chain(book.posted.keys())
            .collect();
        for b in beneficiaries {
            let expected = book.expected.get(b).copied().unwrap_or_default();
            let held = recorded.get(b).copied().unwrap_or_default();
            let posted = book
                .posted
                .get(b)
                .map_or(Decimal::ZERO, |p| p.earned - p.reversed);
            if book.expected_error.is_none() && held != expected {
                d.differences.push(Found {
                    kind: "commission_recorded",
                    subject: b.clone(),
                    expected,
                    actual: held,
                    note: String::new(),
                });
            }
            if book.expected_error.is_none() && posted != expected {
                d.differences.push(Found {
                    kind: "commission_posted",
                    subject: b.clone(),
                    expected,
                    actual: posted,
                    note: String::new(),
                });
            }
        }
        d
    }

    fn commission_differs(&self) -> bool {
        self.differences.iter().any(|f| f.kind != "declared_total")
    }

    fn total_differs(&self) -> bool {
        self.differences.iter().any(|f| f.kind == "declared_total")
    }
}

const DAILY_KEYS: &[&str] = &["day", "platform", "shop", "currency"];
const DAILY_VALUES: &[&str] = &[
    "orders",
    "orders_received",
    "orders_paid",
    "orders_refunded",
    "orders_cancelled",
    "orders_parked",
    "orders_unattributed",
    "gross_e6",
    "discounts_e6",
    "net_e6",
    "tax_e6",
    "shipping_e6",
    "declared_total_e6",
    "lines_total_e6",
    "commissionable_base_e6",
    "commission_earned_e6",
    "commission_reversed_e6",
    "commission_posted_e6",
    "commission_recorded_e6",
    "commission_expected_e6",
    "orders_commission_differing",
    "orders_total_differing",
];

/// The order's figures in the order of [`DAILY_VALUES`].
fn daily_values(book: &OrderBook, d: &Derived) -> Result<Vec<i64>, ProjectionError> {
    let flag = |b: bool| i64::from(b);
    let received = book.details.is_some();
    Ok(vec![
        1,
        flag(received),
        flag(book.paid),
        flag(!book.refunds.is_empty()),
        flag(book.cancelled),
        flag(book.parked),
        flag(
            book.details
                .as_ref()
                .is_some_and(|x| x.distributor.is_none()),
        ),
        to_e6(d.gross)?,
        to_e6(d.discounts)?,
        to_e6(d.net)?,
        to_e6(d.tax)?,
        to_e6(d.shipping)?,
        to_e6(d.declared_total)?,
        to_e6(d.lines_total)?,
        e6_rounded(d.base)?,
        to_e6(d.earned)?,
        to_e6(d.reversed)?,
        to_e6(d.earned - d.reversed)?,
        to_e6(d.recorded)?,
        to_e6(d.expected)?,
        flag(d.commission_differs()),
        flag(d.total_differs()),
    ])
}

fn daily_contribution(book: &OrderBook, d: &Derived) -> Result<Contributions, ProjectionError> {
    let mut c = Contributions::new();
    add(
        &mut c,
        vec![
            Key::Text(d.day.clone()),
            Key::Text(d.platform.clone()),
            Key::Text(d.shop.clone()),
            Key::Text(d.currency.clone()),
        ],
        &daily_values(book, d)?,
    )?;
    Ok(c)
}

/// What an event tells the reconciliation, decoded.
enum Fact {
    Order(Box<OrderEvent>),
    Parking(Box<ParkingEvent>),
    Posting {
        beneficiary: String,
        posting: PostingEvent,
    },
    /// An event of the order (or of its parked updates) that cannot be read: shown as a
    /// difference of the order rather than stopping every reconciliation behind it.
    Unreadable {
        position: u64,
        note: String,
    },
}

#[async_trait::async_trait]
impl Projection for ReconciliationProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn stream_prefixes(&self) -> Vec<String> {
        vec![
            ORDER_PREFIX.to_string(),
            PARKED_PREFIX.to_string(),
            COMMISSIONS_PREFIX.to_string(),
        ]
    }

    fn tables(&self) -> &'static [&'static str] {
        &[DAILY, ORDERS, DIFFERENCES, STATE]
    }

    async fn create_tables(&self, tx: &mut Tx<'_>, generation: u32) -> Result<(), ProjectionError> {
        let daily = table(DAILY, generation);
        let orders = table(ORDERS, generation);
        let differences = table(DIFFERENCES, generation);
        let state = table(STATE, generation);
        let daily_values = DAILY_VALUES
            .iter()
            .map(|v| format!("{v} BIGINT NOT NULL"))
            .collect::<Vec<_>>()
            .join(",\n");
        let statements = [
            format!(
                "CREATE TABLE {daily} (
                    day      TEXT NOT NULL,
                    platform TEXT NOT NULL,
                    shop     TEXT NOT NULL,
                    currency TEXT NOT NULL,
                    {daily_values},
                    PRIMARY KEY (day, platform, shop, currency)
                )"
            ),
            format!(
                "CREATE TABLE {orders} (
                    order_stream   TEXT NOT NULL PRIMARY KEY,
                    day            TEXT NOT NULL,
                    platform       TEXT NOT NULL,
                    shop           TEXT NOT NULL,
                    order_id       TEXT NOT NULL,
                    currency       TEXT NOT NULL,
                    distributor_id TEXT NULL,
                    received       BIGINT NOT NULL,
                    paid           BIGINT NOT NULL,
                    refunds        BIGINT NOT NULL,
                    cancelled      BIGINT NOT NULL,
                    parked         BIGINT NOT NULL,
                    times_parked   BIGINT NOT NULL,
                    unattributed   BIGINT NOT NULL,
                    gross_e6       BIGINT NOT NULL,
                    discounts_e6   BIGINT NOT NULL,
                    net_e6         BIGINT NOT NULL,
                    tax_e6         BIGINT NOT NULL,
                    shipping_e6    BIGINT NOT NULL,
                    declared_total_e6 BIGINT NOT NULL,
                    lines_total_e6 BIGINT NOT NULL,
                    commissionable_base_e6 BIGINT NOT NULL,
                    commission_earned_e6   BIGINT NOT NULL,
                    commission_reversed_e6 BIGINT NOT NULL,
                    commission_posted_e6   BIGINT NOT NULL,
                    commission_recorded_e6 BIGINT NOT NULL,
                    commission_expected_e6 BIGINT NOT NULL,
                    differences    BIGINT NOT NULL,
                    last_position  BIGINT NOT NULL
                )"
            ),
            format!(
                "CREATE TABLE {differences} (
                    order_stream TEXT NOT NULL,
                    kind         TEXT NOT NULL,
                    subject      TEXT NOT NULL,
                    day          TEXT NOT NULL,
                    platform     TEXT NOT NULL,
                    shop         TEXT NOT NULL,
                    currency     TEXT NOT NULL,
                    expected_e6  BIGINT NOT NULL,
                    actual_e6    BIGINT NOT NULL,
                    delta_e6     BIGINT NOT NULL,
                    note         TEXT NOT NULL,
                    PRIMARY KEY (order_stream, kind, subject)
                )"
            ),
            format!(
                "CREATE TABLE {state} (
                    order_stream  TEXT NOT NULL PRIMARY KEY,
                    state         TEXT NOT NULL,
                    last_position BIGINT NOT NULL
                )"
            ),
        ];
        execute_all(tx, &statements).await
    }

    fn query_indexes(&self, generation: u32) -> Vec<String> {
        let orders = table(ORDERS, generation);
        let differences = table(DIFFERENCES, generation);
        vec![
            format!("CREATE INDEX {orders}_day ON {orders} (day, platform, shop)"),
            format!("CREATE INDEX {differences}_day ON {differences} (day, platform, shop)"),
        ]
    }

    async fn apply(
        &self,
        tx: &mut Tx<'_>,
        generation: u32,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        self.apply_all(tx, generation, &[event]).await
    }

    /// Folds each order's events of the run into its book once, writes its rows once, and the
    /// daily aggregate once per changed row.
    async fn apply_all(
        &self,
        tx: &mut Tx<'_>,
        generation: u32,
        events: &[&RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let mut facts = Vec::with_capacity(events.len());
        for event in events {
            if let Some((stream, fact)) = decode(event)? {
                let position = position_to_sql(event.position)?;
                facts.push((stream, (position, event.recorded_at, fact)));
            }
        }
        if facts.is_empty() {
            return Ok(());
        }
        let orders = books::by_order(facts);
        let state_table = table(STATE, generation);
        let streams: Vec<&str> = orders.iter().map(|(stream, _)| stream.as_str()).collect();
        let mut stored: HashMap<String, (OrderBook, i64)> =
            books::load(tx, NAME, &state_table, &streams).await?;
        let mut daily_changes = Contributions::new();
        let mut saved = Vec::with_capacity(orders.len());
        let mut order_rows = Vec::with_capacity(orders.len());
        let (mut rewritten, mut difference_rows_now) = (Vec::new(), Vec::new());
        for (stream, facts) in orders {
            let Some(&(_, first_at, _)) = facts.first() else {
                continue;
            };
            let (mut book, old, old_rows, last) = match stored.remove(&stream) {
                Some((book, last)) => {
                    let book = book.upgraded();
                    let derived = Derived::of(&stream, &book);
                    let old = daily_contribution(&book, &derived)?;
                    (book, old, Some(derived.difference_rows()), last)
                }
                None => (
                    OrderBook {
                        first_day: day_of(first_at),
                        ..OrderBook::default()
                    },
                    Contributions::new(),
                    None,
                    i64::MIN,
                ),
            };
            let facts = books::unfolded(facts, last);
            let Some(&(last, ..)) = facts.last() else {
                continue; // all applied before
            };
            let order_facts = facts.iter().any(|(_, _, f)| matches!(f, Fact::Order(_)));
            if order_facts && book.calculation_currency.is_some() && book.inputs.is_none() {
                book.inputs =
                    Some(recorded::calculation_inputs(&*self.history, NAME, &stream).await?);
            }
            // The calculation's plan, when the order's facts change: a plan that cannot be had
            // is a difference of the order (like a recomputation that fails), a store that
            // cannot answer now is retried.
            let plan = match book.inputs.as_ref().or_else(|| calculated_in(&facts)) {
                Some(inputs) if order_facts => Some(match self.plans.of(NAME, inputs).await {
                    Ok(plan) => Ok(plan),
                    Err(e) if e.is_transient() => return Err(e),
                    Err(e) => Err(e.to_string()),
                }),
                _ => None,
            };
            // What each beneficiary should hold follows from the order's own facts only: a
            // posting (most of the events read here) changes what was posted, never what is
            // expected, so the engine runs again only when the order's facts changed, and once
            // for all of them.
            let mut expected_changed = false;
            for (_, _, fact) in facts {
                expected_changed |= learn(&mut book, fact) == Changes::Expected;
            }
            if expected_changed {
                book.recompute(plan.as_ref());
            }
            let derived = Derived::of(&stream, &book);
            add_change(
                &mut daily_changes,
                &old,
                &daily_contribution(&book, &derived)?,
            )?;
            order_rows.push(order_row(&stream, &book, &derived, last)?);
            let rows = derived.difference_rows();
            let unchanged = match &old_rows {
                Some(old_rows) => *old_rows == rows,
                None => rows.found.is_empty(),
            };
            if !unchanged {
                difference_rows_now.extend(difference_rows(&stream, &derived)?);
                rewritten.push(stream.clone());
            }
            saved.push((stream, book, last));
        }
        replace_rows(tx, &table(ORDERS, generation), ORDER_COLUMNS, &order_rows).await?;
        let rewritten: Vec<&str> = rewritten.iter().map(String::as_str).collect();
        write_differences(tx, generation, &rewritten, &difference_rows_now).await?;
        books::save(tx, NAME, &state_table, &saved).await?;
        let daily = table(DAILY, generation);
        Aggregate {
            table: &daily,
            keys: DAILY_KEYS,
            values: DAILY_VALUES,
            presence: 0,
        }
        .write(tx, &daily_changes)
        .await
    }
}

/// The order stream an event is about and what it says; `None` for events of no interest.
fn decode(event: &RecordedEvent) -> Result<Option<(String, Fact)>, ProjectionError> {
    let stream = event.stream_id.as_str();
    let unreadable = |reason: String| {
        tracing::warn!(
            projection = NAME,
            position = event.position,
            stream = %event.stream_id,
            event_type = %event.event_type,
            reason = %reason,
            "unreadable event recorded as a difference"
        );
        metrics::counter!("upline_projection_unreadable_events_total", "projection" => NAME)
            .increment(1);
        Fact::Unreadable {
            position: event.position,
            note: format!(
                "{} at position {}: {reason}",
                event.event_type, event.position
            ),
        }
    };
    if stream.starts_with(ORDER_PREFIX) {
        let fact = match upline_domain::events::decode::<OrderEvent>(&event.event_type, &event.data)
        {
            Ok(e) => Fact::Order(Box::new(e)),
            Err(e) => unreadable(e.to_string()),
        };
        return Ok(Some((stream.to_string(), fact)));
    }
    if let Some(order_stream) = stream.strip_prefix(PARKED_PREFIX) {
        let fact =
            match upline_domain::events::decode::<ParkingEvent>(&event.event_type, &event.data) {
                Ok(e) => Fact::Parking(Box::new(e)),
                Err(e) => unreadable(e.to_string()),
            };
        return Ok(Some((order_stream.to_string(), fact)));
    }
    if let Some(beneficiary) = stream.strip_prefix(COMMISSIONS_PREFIX) {
        if event.event_type != PostingEvent::EARNED && event.event_type != PostingEvent::REVERSED {
            return Ok(None);
        }
        let posting: PostingEvent =
            match upline_domain::events::decode(&event.event_type, &event.data) {
                Ok(posting) => posting,
                Err(e) => {
                    tracing::warn!(
                        projection = NAME,
                        position = event.position,
                        stream = %event.stream_id,
                        reason = %e,
                        "unreadable posting skipped"
                    );
                    metrics::counter!(
                        "upline_projection_unreadable_events_total",
                        "projection" => NAME
                    )
                    .increment(1);
                    return Ok(None);
                }
            };
        let order_stream = match &posting {
            PostingEvent::CommissionEarned { source, .. }
            | PostingEvent::CommissionReversed { source, .. } => source.order_stream.clone(),
        };
        return Ok(Some((
            order_stream,
            Fact::Posting {
                beneficiary: beneficiary.to_string(),
                posting,
            },
        )));
    }
    Ok(None)
}

/// Folds one fact into the order's book.
/// What a fact can change in an [`OrderBook`].
#[derive(Debug, PartialEq, Eq)]
enum Changes {
    /// The order's facts: what is expected must be recomputed.
    Expected,
    /// Only what was posted, parked or unreadable.
    Other,
}

fn learn(book: &mut OrderBook, fact: Fact) -> Changes {
    let changes = match &fact {
        Fact::Order(_) => Changes::Expected,
        Fact::Parking(_) | Fact::Unreadable { .. } | Fact::Posting { .. } => Changes::Other,
    };
    match fact {
        Fact::Order(e) => match *e {
            OrderEvent::OrderPlaced { details, net_lines }
            | OrderEvent::OrderRevised { details, net_lines } => {
                book.platform = Some(details.key.platform.as_str().to_string());
                book.shop = Some(details.key.shop.as_str().to_string());
                book.order_id = Some(details.key.order_id.as_str().to_string());
                book.details = Some(details);
                book.net_lines = net_lines;
            }
            OrderEvent::OrderPaid { .. } => book.paid = true,
            OrderEvent::OrderRefunded { refund } => {
                book.refunds.insert(refund.refund_id.clone(), refund);
            }
            OrderEvent::OrderCancelled { .. } => book.cancelled = true,
            OrderEvent::CommissionCalculated { inputs, outcome } => {
                book.calculation_currency = Some(inputs.currency.code().to_string());
                book.inputs = Some(*inputs);
                book.recorded = Some((outcome.commissionable_base, payouts_of(&outcome)));
            }
            OrderEvent::CommissionRecalculated { outcome, .. } => {
                book.recorded = Some(match outcome {
                    Some(o) => (o.commissionable_base, payouts_of(&o)),
                    None => (Decimal::ZERO, BTreeMap::new()),
                });
            }
        },
        Fact::Parking(e) => match *e {
            ParkingEvent::OrderParked { update, .. } => {
                book.parked = true;
                book.times_parked += 1;
                if book.details.is_none() {
                    book.platform = Some(update.key.platform.as_str().to_string());
                    book.shop = Some(update.key.shop.as_str().to_string());
                    book.order_id = Some(update.key.order_id.as_str().to_string());
                    if let Some(order) = &update.order {
                        book.parked_day = Some(day_of(order.placed_at));
                        book.parked_currency = Some(order.currency.code().to_string());
                    }
                }
            }
            ParkingEvent::ParkedRetryFailed { .. } => {}
            ParkingEvent::ParkedOrderResolved { .. } => book.parked = false,
        },
        Fact::Unreadable { position, note } => {
            book.unreadable.insert(position, note);
        }
        Fact::Posting {
            beneficiary,
            posting,
        } => {
            let posted = book.posted.entry(beneficiary).or_default();
            match posting {
                PostingEvent::CommissionEarned {
                    amount, currency, ..
                } => {
                    posted.earned += amount;
                    book.posting_currency = Some(currency.code().to_string());
                }
                PostingEvent::CommissionReversed {
                    amount, currency, ..
                } => {
                    posted.reversed += amount;
                    book.posting_currency = Some(currency.code().to_string());
                }
            }
        }
    }
    changes
}

fn payouts_of(outcome: &CommissionSummary) -> BTreeMap<String, Decimal> {
    outcome
        .payouts
        .iter()
        .map(|p| (p.beneficiary.as_str().to_string(), p.amount))
        .collect()
}

/// The columns of `reconciliation_orders`, in the order [`order_row`] gives them.
const ORDER_COLUMNS: &[&str] = &[
    "order_stream",
    "day",
    "platform",
    "shop",
    "order_id",
    "currency",
    "distributor_id",
    "received",
    "paid",
    "refunds",
    "cancelled",
    "parked",
    "times_parked",
    "unattributed",
    "gross_e6",
    "discounts_e6",
    "net_e6",
    "tax_e6",
    "shipping_e6",
    "declared_total_e6",
    "lines_total_e6",
    "commissionable_base_e6",
    "commission_earned_e6",
    "commission_reversed_e6",
    "commission_posted_e6",
    "commission_recorded_e6",
    "commission_expected_e6",
    "differences",
    "last_position",
];

/// The `reconciliation_orders` row of an order ([`ORDER_COLUMNS`]).
fn order_row(
    stream: &str,
    book: &OrderBook,
    d: &Derived,
    position: i64,
) -> Result<Vec<Cell>, ProjectionError> {
    let distributor = book
        .details
        .as_ref()
        .and_then(|x| x.distributor.as_ref())
        .map(|x| x.as_str().to_string());
    let refunds = i64::try_from(book.refunds.len()).unwrap_or(i64::MAX);
    Ok(vec![
        Cell::from(stream),
        Cell::from(d.day.as_str()),
        Cell::from(d.platform.as_str()),
        Cell::from(d.shop.as_str()),
        Cell::from(book.order_id.clone().unwrap_or_default()),
        Cell::from(d.currency.as_str()),
        Cell::from(distributor.clone()),
        Cell::from(i64::from(book.details.is_some())),
        Cell::from(i64::from(book.paid)),
        Cell::from(refunds),
        Cell::from(i64::from(book.cancelled)),
        Cell::from(i64::from(book.parked)),
        Cell::from(i64::from(book.times_parked)),
        Cell::from(i64::from(book.details.is_some() && distributor.is_none())),
        Cell::from(to_e6(d.gross)?),
        Cell::from(to_e6(d.discounts)?),
        Cell::from(to_e6(d.net)?),
        Cell::from(to_e6(d.tax)?),
        Cell::from(to_e6(d.shipping)?),
        Cell::from(to_e6(d.declared_total)?),
        Cell::from(to_e6(d.lines_total)?),
        Cell::from(e6_rounded(d.base)?),
        Cell::from(to_e6(d.earned)?),
        Cell::from(to_e6(d.reversed)?),
        Cell::from(to_e6(d.earned - d.reversed)?),
        Cell::from(to_e6(d.recorded)?),
        Cell::from(to_e6(d.expected)?),
        Cell::from(i64::try_from(d.differences.len()).unwrap_or(i64::MAX)),
        Cell::from(position),
    ])
}

/// The columns of `reconciliation_differences`, in the order [`difference_rows`] gives them.
const DIFFERENCE_COLUMNS: &[&str] = &[
    "order_stream",
    "kind",
    "subject",
    "day",
    "platform",
    "shop",
    "currency",
    "expected_e6",
    "actual_e6",
    "delta_e6",
    "note",
];

/// The `reconciliation_differences` rows of an order.
fn difference_rows(stream: &str, d: &Derived) -> Result<Vec<Vec<Cell>>, ProjectionError> {
    d.differences
        .iter()
        .map(|f| {
            Ok(vec![
                Cell::from(stream),
                Cell::from(f.kind),
                Cell::from(f.subject.as_str()),
                Cell::from(d.day.as_str()),
                Cell::from(d.platform.as_str()),
                Cell::from(d.shop.as_str()),
                Cell::from(d.currency.as_str()),
                Cell::from(e6_rounded(f.expected)?),
                Cell::from(e6_rounded(f.actual)?),
                Cell::from(e6_rounded(f.actual - f.expected)?),
                Cell::from(f.note.as_str()),
            ])
        })
        .collect()
}

/// Replaces the difference rows of the `orders` whose differences changed with `rows`.
async fn write_differences(
    tx: &mut Tx<'_>,
    generation: u32,
    orders: &[&str],
    rows: &[Vec<Cell>],
) -> Result<(), ProjectionError> {
    let differences = table(DIFFERENCES, generation);
    for chunk in orders.chunks(ROWS_PER_STATEMENT * 8) {
        let sql = format!(
            "DELETE FROM {differences} WHERE order_stream IN {}",
            placeholders(tx, 1, chunk.len())
        );
        let query = chunk
            .iter()
            .fold(sqlx::query(&sql), |query, stream| query.bind(*stream));
        query.execute(&mut **tx).await?;
    }
    insert_rows(tx, &differences, DIFFERENCE_COLUMNS, "", rows).await
}

// ---------------------------------------------------------------------------------------------
// Queries.

/// One row of `reconciliation_daily`, with the commission delta.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconciliationRow {
    pub day: NaiveDate,
    pub platform: String,
    pub shop: String,
    pub currency: String,
    pub orders: u64,
    pub orders_received: u64,
    pub orders_paid: u64,
    pub orders_refunded: u64,
    pub orders_cancelled: u64,
    pub orders_parked: u64,
    pub orders_unattributed: u64,
    pub gross: Decimal,
    pub discounts: Decimal,
    pub net: Decimal,
    pub tax: Decimal,
    pub shipping: Decimal,
    pub declared_total: Decimal,
    pub lines_total: Decimal,
    pub commissionable_base: Decimal,
    pub commission_earned: Decimal,
    pub commission_reversed: Decimal,
    /// earned − reversed.
    pub commission_posted: Decimal,
    pub commission_recorded: Decimal,
    pub commission_expected: Decimal,
    /// posted − expected.
    pub commission_delta: Decimal,
    /// delta in percent of expected (6 decimals); `None` when nothing is expected but something
    /// was posted.
    pub commission_delta_pct: Option<Decimal>,
    /// declared_total − lines_total.
    pub declared_delta: Decimal,
    pub orders_commission_differing: u64,
    pub orders_total_differing: u64,
}

/// The same figures summed over a range, per currency: `day` is the range's first day, and
/// `platform` and `shop` the filters (empty when not given).
pub type ReconciliationSummary = ReconciliationRow;

/// One current difference of one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub order_stream: String,
    /// `commission_posted`, `commission_recorded`, `declared_total`, `recalculation_failed`,
    /// `calculation_missing` or `unreadable_event`.
    pub kind: String,
    /// The beneficiary (commission kinds), else empty.
    pub subject: String,
    pub day: NaiveDate,
    pub platform: String,
    pub shop: String,
    pub currency: String,
    pub expected: Decimal,
    pub actual: Decimal,
    /// actual − expected.
    pub delta: Decimal,
    pub note: String,
}

/// A page of differences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DifferencePage {
    pub differences: Vec<Difference>,
    pub next_page_token: Option<String>,
}

/// One order as the reconciliation sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderReconciliation {
    pub order_stream: String,
    pub day: NaiveDate,
    pub platform: String,
    pub shop: String,
    pub order_id: String,
    pub currency: String,
    pub distributor_id: Option<String>,
    pub received: bool,
    pub paid: bool,
    pub refunds: u64,
    pub cancelled: bool,
    pub parked: bool,
    pub gross: Decimal,
    pub discounts: Decimal,
    pub net: Decimal,
    pub tax: Decimal,
    pub shipping: Decimal,
    pub declared_total: Decimal,
    pub lines_total: Decimal,
    pub commissionable_base: Decimal,
    pub commission_earned: Decimal,
    pub commission_reversed: Decimal,
    pub commission_posted: Decimal,
    pub commission_recorded: Decimal,
    pub commission_expected: Decimal,
    pub differences: u64,
}

/// Queries over the reconciliation's views.
#[derive(Debug, Clone)]
pub struct ReconciliationQuery {
    read: ReadStore,
}

/// posted − expected, and that in percent of expected.
fn delta_pct(expected: Decimal, posted: Decimal) -> (Decimal, Option<Decimal>) {
    let delta = posted - expected;
    let pct = if delta.is_zero() {
        Some(Decimal::ZERO)
    } else if expected.is_zero() {
        None
    } else {
        (delta * Decimal::ONE_HUNDRED)
            .checked_div(expected)
            .map(|p| p.round_dp_with_strategy(6, RoundingStrategy::MidpointNearestEven))
    };
    (delta, pct)
}

fn reconciliation_row(
    row: &AnyRow,
    day: Option<NaiveDate>,
) -> Result<ReconciliationRow, ProjectionError> {
    let day = match day {
        Some(day) => day,
        None => day_from_sql(&row.try_get::<String, _>("day")?)?,
    };
    let expected = e6_column(row, "commission_expected_e6")?;
    let posted = e6_column(row, "commission_posted_e6")?;
    let (commission_delta, commission_delta_pct) = delta_pct(expected, posted);
    let declared_total = e6_column(row, "declared_total_e6")?;
    let lines_total = e6_column(row, "lines_total_e6")?;
    Ok(ReconciliationRow {
        day,
        platform: row.try_get("platform")?,
        shop: row.try_get("shop")?,
        currency: row.try_get("currency")?,
        orders: u64_column(row, "orders")?,
        orders_received: u64_column(row, "orders_received")?,
        orders_paid: u64_column(row, "orders_paid")?,
        orders_refunded: u64_column(row, "orders_refunded")?,
        orders_cancelled: u64_column(row, "orders_cancelled")?,
        orders_parked: u64_column(row, "orders_parked")?,
        orders_unattributed: u64_column(row, "orders_unattributed")?,
        gross: e6_column(row, "gross_e6")?,
        discounts: e6_column(row, "discounts_e6")?,
        net: e6_column(row, "net_e6")?,
        tax: e6_column(row, "tax_e6")?,
        shipping: e6_column(row, "shipping_e6")?,
        declared_total,
        lines_total,
        commissionable_base: e6_column(row, "commissionable_base_e6")?,
        commission_earned: e6_column(row, "commission_earned_e6")?,
        commission_reversed: e6_column(row, "commission_reversed_e6")?,
        commission_posted: posted,
        commission_recorded: e6_column(row, "commission_recorded_e6")?,
        commission_expected: expected,
        commission_delta,
        commission_delta_pct,
        declared_delta: declared_total - lines_total,
        orders_commission_differing: u64_column(row, "orders_commission_differing")?,
        orders_total_differing: u64_column(row, "orders_total_differing")?,
    })
}

fn difference_of(row: &AnyRow) -> Result<Difference, ProjectionError> {
    Ok(Difference {
        order_stream: row.try_get("order_stream")?,
        kind: row.try_get("kind")?,
        subject: row.try_get("subject")?,
        day: day_from_sql(&row.try_get::<String, _>("day")?)?,
        platform: row.try_get("platform")?,
        shop: row.try_get("shop")?,
        currency: row.try_get("currency")?,
        expected: e6_column(row, "expected_e6")?,
        actual: e6_column(row, "actual_e6")?,
        delta: e6_column(row, "delta_e6")?,
        note: row.try_get("note")?,
    })
}

/// `WHERE` of the range and the optional platform and shop (`''` matches any), on `$1..$4`.
const RANGE: &str =
    "day >= $1 AND day <= $2 AND ($3 = '' OR platform = $3) AND ($4 = '' OR shop = $4)";

impl ReconciliationQuery {
    pub fn new(read: ReadStore) -> ReconciliationQuery {
        ReconciliationQuery { read }
    }

    /// The daily rows from `day_from` to `day_to` (inclusive), optionally of one platform
    /// (`shopify`, ...) and shop, by day, platform, shop and currency.
    pub async fn reconciliation(
        &self,
        day_from: NaiveDate,
        day_to: NaiveDate,
        platform: Option<&str>,
        shop: Option<&str>,
    ) -> Result<Vec<ReconciliationRow>, ProjectionError> {
        let columns = DAILY_VALUES.join(", ");
        let sql = format!(
            "SELECT day, platform, shop, currency, {columns} FROM {DAILY} WHERE {RANGE} \
             ORDER BY day, platform, shop, currency"
        );
        let rows = sqlx::query(&sql)
            .bind(day_to_sql(day_from))
            .bind(day_to_sql(day_to))
            .bind(platform.unwrap_or(""))
            .bind(shop.unwrap_or(""))
            .fetch_all(self.read.pool())
            .await?;
        rows.iter().map(|r| reconciliation_row(r, None)).collect()
    }

    /// The range summed per currency (`day` is `day_from`; `platform` and `shop` are the
    /// filters, empty when not given).
    pub async fn summary(
        &self,
        day_from: NaiveDate,
        day_to: NaiveDate,
        platform: Option<&str>,
        shop: Option<&str>,
    ) -> Result<Vec<ReconciliationSummary>, ProjectionError> {
        let sums = DAILY_VALUES
            .iter()
            .map(|v| format!("CAST(COALESCE(SUM({v}), 0) AS BIGINT) AS {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT $3 AS platform, $4 AS shop, currency, {sums} FROM {DAILY} WHERE {RANGE} \
             GROUP BY currency ORDER BY currency"
        );
        let rows = sqlx::query(&sql)
            .bind(day_to_sql(day_from))
            .bind(day_to_sql(day_to))
            .bind(platform.unwrap_or(""))
            .bind(shop.unwrap_or(""))
            .fetch_all(self.read.pool())
            .await?;
        rows.iter()
            .map(|r| reconciliation_row(r, Some(day_from)))
            .collect()
    }

    /// The current differences of orders of the range (by order stream, kind and subject),
    /// `limit` per page (0: 100; at most 1,000), after `page_token`.
    pub async fn differing_orders(
        &self,
        day_from: NaiveDate,
        day_to: NaiveDate,
        platform: Option<&str>,
        shop: Option<&str>,
        page_token: Option<&str>,
        limit: u32,
    ) -> Result<DifferencePage, ProjectionError> {
        let limit = shared::page_limit(limit, DEFAULT_PAGE, MAX_PAGE);
        let after = shared::key_of_token(page_token, &[true, true, true])?;
        let text = |k: &Key| match k {
            Key::Text(s) => s.clone(),
            Key::Int(i) => i.to_string(),
        };
        let sql = format!(
            "SELECT order_stream, kind, subject, day, platform, shop, currency, expected_e6, \
             actual_e6, delta_e6, note FROM {DIFFERENCES} WHERE {RANGE} \
             AND (order_stream, kind, subject) > ($5, $6, $7) \
             ORDER BY order_stream, kind, subject LIMIT $8"
        );
        let rows = sqlx::query(&sql)
            .bind(day_to_sql(day_from))
            .bind(day_to_sql(day_to))
            .bind(platform.unwrap_or(""))
            .bind(shop.unwrap_or(""))
            .bind(text(&after[0]))
            .bind(text(&after[1]))
            .bind(text(&after[2]))
            .bind(i64::from(limit) + 1)
            .fetch_all(self.read.pool())
            .await?;
        let mut differences = rows
            .iter()
            .map(difference_of)
            .collect::<Result<Vec<_>, _>>()?;
        let more = differences.len() > limit as usize;
        differences.truncate(limit as usize);
        let next_page_token = match (more, differences.last()) {
            (true, Some(d)) => Some(shared::token_of(&[
                Key::Text(d.order_stream.clone()),
                Key::Text(d.kind.clone()),
                Key::Text(d.subject.clone()),
            ])),
            _ => None,
        };
        Ok(DifferencePage {
            differences,
            next_page_token,
        })
    }

    /// The current differences of one order.
    pub async fn differences_of(
        &self,
        order_stream: &str,
    ) -> Result<Vec<Difference>, ProjectionError> {
        let sql = format!(
            "SELECT order_stream, kind, subject, day, platform, shop, currency, expected_e6, \
             actual_e6, delta_e6, note FROM {DIFFERENCES} WHERE order_stream = $1 \
             ORDER BY kind, subject"
        );
        let rows = sqlx::query(&sql)
            .bind(order_stream)
            .fetch_all(self.read.pool())
            .await?;
        rows.iter().map(difference_of).collect()
    }

    /// One order's reconciliation row.
    pub async fn order(
        &self,
        order_stream: &str,
    ) -> Result<Option<OrderReconciliation>, ProjectionError> {
        let sql = format!("SELECT * FROM {ORDERS} WHERE order_stream = $1");
        let Some(row) = sqlx::query(&sql)
            .bind(order_stream)
            .fetch_optional(self.read.pool())
            .await?
        else {
            return Ok(None);
        };
        let flag =
            |c: &str| -> Result<bool, ProjectionError> { Ok(row.try_get::<i64, _>(c)? != 0) };
        Ok(Some(OrderReconciliation {
            order_stream: row.try_get("order_stream")?,
            day: day_from_sql(&row.try_get::<String, _>("day")?)?,
            platform: row.try_get("platform")?,
            shop: row.try_get("shop")?,
            order_id: row.try_get("order_id")?,
            currency: row.try_get("currency")?,
            distributor_id: row.try_get("distributor_id")?,
            received: flag("received")?,
            paid: flag("paid")?,
            refunds: u64_column(&row, "refunds")?,
            cancelled: flag("cancelled")?,
            parked: flag("parked")?,
            gross: e6_column(&row, "gross_e6")?,
            discounts: e6_column(&row, "discounts_e6")?,
            net: e6_column(&row, "net_e6")?,
            tax: e6_column(&row, "tax_e6")?,
            shipping: e6_column(&row, "shipping_e6")?,
            declared_total: e6_column(&row, "declared_total_e6")?,
            lines_total: e6_column(&row, "lines_total_e6")?,
            commissionable_base: e6_column(&row, "commissionable_base_e6")?,
            commission_earned: e6_column(&row, "commission_earned_e6")?,
            commission_reversed: e6_column(&row, "commission_reversed_e6")?,
            commission_posted: e6_column(&row, "commission_posted_e6")?,
            commission_recorded: e6_column(&row, "commission_recorded_e6")?,
            commission_expected: e6_column(&row, "commission_expected_e6")?,
            differences: u64_column(&row, "differences")?,
        }))
    }
}
