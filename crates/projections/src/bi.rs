//! BI tables for dashboards (Metabase, Grafana, psql): sales, distributor volumes and
//! commissions, commissions by level and class, and one row per order.
//!
//! It reads the order streams (`order-`), the parked updates (`parked-`, for an order's status)
//! and the SKU mappings (`sku-`, to classify the lines of orders that were never calculated). An
//! event it cannot read is counted in `upline_projection_unreadable_events_total` and refused: the
//! runner holds it (and its order's later events) back, and every other order goes on;
//! `upline quarantine list` shows it, and the reconciliation reports it against its order.
//!
//! **What counts.** An order counts in sales and volumes while it is *due*: known, paid and not
//! cancelled; refunds take their share off (`upline_domain::order::remaining_lines`, the rule
//! the commissions use: quantity refunds take that part of a line, net-amount refunds their
//! share of what is left). Everything is dated by the order's `placed_at` (UTC): a refund in
//! April of a March order changes March. Commissions are the current outcome of each order (what
//! beneficiaries hold after refunds and cancellations), not the postings' dates.
//!
//! **Classification.** A calculated order's lines use the SKU mappings its calculation recorded
//! (SKU, category, class, PV); an order never calculated (unattributed, or not paid yet) uses
//! the mapping in force at its `placed_at` when its details were recorded, or stays `''`
//! (unmapped) when there was none.
//!
//! **Precision.** Volumes, nets and bases scaled by a partial refund can have more than six
//! decimals (a third of a line); they are rounded half-even to millionths. Commissions paid are
//! exact.
//!
//! ## Tables (query the views; `_e6` columns are millionths, see [`crate::sql`])
//!
//! **`bi_sales_daily`**: key `(day, platform, currency, sku_id, category, commission_class)`;
//! `orders` (orders with a line in the row), `lines`, `quantity_e6` (after quantity refunds),
//! `net_e6` and `pv_e6` (after refunds).
//!
//! **`bi_distributor_monthly`**: key `(month, distributor_id, currency)`, `month` is `YYYY-MM`;
//! `orders` (orders attributed to them, any state), `orders_paid` (of those, due),
//! `personal_volume_e6` (PV of their own due orders), `group_volume_e6` (PV of due orders whose
//! recorded snapshot gave them a level within the plan's depth, their own included when they
//! held level 1: the levels of the calculation's trace), `group_orders` (those orders),
//! `commissions_e6` (what they hold on orders of the month, rounded payouts after the cap),
//! `order_refs` (orders contributing to the row, bookkeeping).
//!
//! **`bi_commissions_monthly`**: key `(month, currency, level, commission_class)`; from the
//! commission lines of current outcomes (lines on a fully refunded base left out; the events
//! record no lines, so they are recomputed from the recorded inputs and their plan, read back
//! from the order's and the plan's streams for a later refund): `lines`, `base_e6`, `amount_e6`
//! (exact `base × rate` before each beneficiary's rounding and the cap, so its sum can differ
//! from the payouts by the rounding and what the cap cut), `beneficiaries` (distinct
//! beneficiaries per order, summed).
//!
//! **`bi_orders`**: one row per order, key `order_stream`: `platform`, `shop`, `order_id`,
//! `day`, `placed_at`, `currency`, `distributor_id`, `status` (`pending`: facts before the
//! details; `parked`: only parked copies; `placed`; `paid`; `partially_refunded`; `refunded`;
//! `cancelled`), `parked` (an update is parked now), `paid_at`, `cancelled_at`, `refunds`,
//! `gross_e6`, `discounts_e6`, `net_e6`, `tax_e6`, `shipping_e6`, `declared_total_e6` (as
//! ordered), `net_kept_e6`, `pv_e6` (counted now, after refunds), `commissionable_base_e6`,
//! `commissions_e6` (current outcome), `last_position`, `updated_at` (`recorded_at` of the last
//! event).
//!
//! **`bi_sku_mappings`** (the catalog's history, key `(platform, platform_sku, effective_from)`)
//! and **`bi_state`** (the projection's memory of each order, JSON) serve the projection itself.
//!
//! ```sql
//! -- Top distributors by group volume in March 2026
//! SELECT distributor_id, SUM(group_volume_e6) / 1e6 AS gv FROM bi_distributor_monthly
//! WHERE month = '2026-03' GROUP BY distributor_id ORDER BY gv DESC LIMIT 20;
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;
use upline_app::records::ParkingEvent;
use upline_app::streams::{ORDER_PREFIX, PARKED_PREFIX, SKU_PREFIX};
use upline_domain::catalog::CatalogEvent;
use upline_domain::engine::{
    CommissionLine, CommissionOutcome, CommissionSummary, CommissionableLine,
};
use upline_domain::ids::{CommissionClass, LineId, RefundId, SkuId};
use upline_domain::net::NetLine;
use upline_domain::order::{
    self, CalculationInputs, OrderDetails, OrderEvent, Refund, RefundScope,
};
use upline_domain::plan::CommissionPlan;
use upline_store::{EventStore, RecordedEvent};

use crate::error::ProjectionError;
use crate::projection::Projection;
use crate::shared::recorded::PublishedPlans;
use crate::shared::{
    self, add, add_change, books, day_of, e6_rounded, month_of, placeholders, recorded,
    replace_rows, Aggregate, Cell, Contributions, Key, ROWS_PER_STATEMENT,
};
use crate::sql::{
    day_from_sql, day_to_sql, e6_column, execute_all, position_to_sql, table, time_from_sql,
    time_to_sql, to_e6, u64_column, Tx,
};
use crate::store::ReadStore;

/// The projection's name (checkpoint key, `upline projections rebuild bi`).
pub const NAME: &str = "bi";
/// The logical tables (views).
pub const SALES: &str = "bi_sales_daily";
pub const DISTRIBUTORS: &str = "bi_distributor_monthly";
pub const COMMISSIONS: &str = "bi_commissions_monthly";
pub const ORDERS: &str = "bi_orders";
pub const SKU_MAPPINGS: &str = "bi_sku_mappings";
pub const STATE: &str = "bi_state";
/// Most rows one query returns.
pub const MAX_PAGE: u32 = 1_000;
/// Rows per page when the caller asks for 0.
pub const DEFAULT_PAGE: u32 = 100;

/// The BI projection. It reads an order's recorded calculation inputs back from `history` when
/// a recalculation needs its lines (see `OrderBook::calculated`).
#[derive(Clone)]
pub struct BiProjection {
    history: Arc<dyn EventStore>,
    plans: Arc<PublishedPlans>,
}

impl BiProjection {
    /// The projection of the events in `history`.
    pub fn new(history: Arc<dyn EventStore>) -> BiProjection {
        BiProjection {
            plans: Arc::new(PublishedPlans::new(history.clone())),
            history,
        }
    }
}

const SALES_KEYS: &[&str] = &[
    "day",
    "platform",
    "currency",
    "sku_id",
    "category",
    "commission_class",
];
const SALES_VALUES: &[&str] = &["lines", "orders", "quantity_e6", "net_e6", "pv_e6"];
const DISTRIBUTOR_KEYS: &[&str] = &["month", "distributor_id", "currency"];
const DISTRIBUTOR_VALUES: &[&str] = &[
    "order_refs",
    "orders",
    "orders_paid",
    "personal_volume_e6",
    "group_volume_e6",
    "group_orders",
    "commissions_e6",
];
const COMMISSION_KEYS: &[&str] = &["month", "currency", "level", "commission_class"];
const COMMISSION_VALUES: &[&str] = &["lines", "beneficiaries", "base_e6", "amount_e6"];
const ORDER_COLUMNS: &[&str] = &[
    "order_stream",
    "platform",
    "shop",
    "order_id",
    "day",
    "placed_at",
    "currency",
    "distributor_id",
    "status",
    "parked",
    "paid_at",
    "cancelled_at",
    "refunds",
    "gross_e6",
    "discounts_e6",
    "net_e6",
    "tax_e6",
    "shipping_e6",
    "declared_total_e6",
    "net_kept_e6",
    "pv_e6",
    "commissionable_base_e6",
    "commissions_e6",
    "last_position",
    "updated_at",
];

// ---------------------------------------------------------------------------------------------
// What the projection remembers of one order.

/// A line as BI classifies it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SalesLine {
    line_id: LineId,
    /// `''` when unmapped.
    sku_id: String,
    category: String,
    commission_class: String,
    quantity: Decimal,
    net: Decimal,
    pv: Decimal,
}

/// The current outcome, as much of it as BI needs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Outcome {
    currency: String,
    base: Decimal,
    payouts: BTreeMap<String, Decimal>,
    /// Sums of the commission lines by level and class.
    by_level: Vec<LevelSum>,
}

/// The commission lines of one level and class of an outcome.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct LevelSum {
    level: u32,
    class: String,
    lines: i64,
    beneficiaries: i64,
    base: Decimal,
    amount: Decimal,
}

impl Outcome {
    /// The recorded `outcome` with the level sums of `lines`, the calculation's lines recomputed
    /// from the recorded inputs (the events record no lines).
    fn of(outcome: &CommissionSummary, lines: &[CommissionLine]) -> Outcome {
        let mut by_level: BTreeMap<(u32, String), (LevelSum, BTreeSet<String>)> = BTreeMap::new();
        // A line on a fully refunded base pays nothing: it is not counted.
        for line in lines
            .iter()
            .filter(|l| !l.base.is_zero() || !l.amount.is_zero())
        {
            let class = line.commission_class.as_str().to_string();
            let (sum, who) = by_level
                .entry((line.level, class.clone()))
                .or_insert_with(|| {
                    (
                        LevelSum {
                            level: line.level,
                            class,
                            ..LevelSum::default()
                        },
                        BTreeSet::new(),
                    )
                });
            sum.lines += 1;
            sum.base += line.base;
            sum.amount += line.amount;
            who.insert(line.beneficiary.as_str().to_string());
        }
        Outcome {
            currency: outcome.currency.code().to_string(),
            base: outcome.commissionable_base,
            payouts: outcome
                .payouts
                .iter()
                .map(|p| (p.beneficiary.as_str().to_string(), p.amount))
                .collect(),
            by_level: by_level
                .into_values()
                .map(|(mut sum, who)| {
                    sum.beneficiaries = i64::try_from(who.len()).unwrap_or(i64::MAX);
                    sum
                })
                .collect(),
        }
    }
}

/// BI's memory of one order, stored as JSON in `bi_state`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct OrderBook {
    first_day: String,
    platform: Option<String>,
    shop: Option<String>,
    order_id: Option<String>,
    /// From a parked copy of the order, until its details are recorded.
    parked_day: Option<String>,
    details: Option<OrderDetails>,
    net_lines: Vec<NetLine>,
    paid_at: Option<DateTime<Utc>>,
    cancelled_at: Option<DateTime<Utc>>,
    refunds: BTreeMap<RefundId, Refund>,
    parked: bool,
    ever_parked: bool,
    lines: Vec<SalesLine>,
    /// Members the calculation gave a level (within the plan's depth).
    group: Vec<String>,
    /// Whether the order's `CommissionCalculated` is known. Its inputs are not stored with the
    /// book (about 2.7 KB an order): a later recalculation's lines are recomputed from them, read
    /// back from the order's stream (`recorded::calculation_inputs`).
    #[serde(default)]
    calculated: bool,
    /// The recorded inputs, while the book is in memory and a fact needs them. Never saved; a
    /// book saved by an earlier version still holds them, and is read with them (`upgraded`).
    #[serde(skip_serializing, default)]
    inputs: Option<CalculationInputs>,
    outcome: Option<Outcome>,
    last_recorded_at: Option<DateTime<Utc>>,
}

/// A line after refunds.
struct Kept<'a> {
    line: &'a SalesLine,
    quantity: Decimal,
    net: Decimal,
    pv: Decimal,
}

impl OrderBook {
    /// The book as this version keeps it: one saved with its calculation's inputs (before they
    /// were read back from the stream instead) notes that it was calculated.
    fn upgraded(mut self) -> OrderBook {
        self.calculated |= self.inputs.is_some();
        self
    }

    fn due(&self) -> bool {
        self.details.is_some() && self.paid_at.is_some() && self.cancelled_at.is_none()
    }

    /// The lines after refunds (as ordered when no refund).
    fn kept(&self) -> Result<Vec<Kept<'_>>, ProjectionError> {
        let placeholder_sku =
            SkuId::new("unmapped").map_err(|e| ProjectionError::Corrupt(e.to_string()))?;
        let placeholder_class = CommissionClass::new("unmapped")
            .map_err(|e| ProjectionError::Corrupt(e.to_string()))?;
        let commissionable: Vec<CommissionableLine> = self
            .lines
            .iter()
            .map(|l| CommissionableLine {
                line_id: l.line_id.clone(),
                sku_id: placeholder_sku.clone(),
                commission_class: placeholder_class.clone(),
                quantity: l.quantity,
                net: l.net,
                pv: l.pv,
                base: l.net,
            })
            .collect();
        let currency = self.details.as_ref().map(|d| d.currency).or_else(|| {
            let outcome = self.outcome.as_ref()?;
            upline_domain::money::Currency::from_code(&outcome.currency).ok()
        });
        // BI keeps net and PV; which base a CV SKU had does not matter here. Without a currency
        // nothing has been recorded that a refund could apply to.
        let remaining = match currency {
            Some(currency) => {
                order::kept_lines(currency, &commissionable, |_| false, self.refunds.values())
            }
            None => commissionable,
        };
        Ok(self
            .lines
            .iter()
            .zip(remaining)
            .map(|(line, r)| {
                let refunded: Decimal = self
                    .refunds
                    .values()
                    .map(|refund| match &refund.scope {
                        RefundScope::Lines(lines) => lines
                            .iter()
                            .filter(|x| x.line_id == line.line_id)
                            .map(|x| x.quantity)
                            .sum(),
                        RefundScope::NetAmount(_) => Decimal::ZERO,
                    })
                    .sum();
                Kept {
                    line,
                    quantity: (line.quantity - refunded).max(Decimal::ZERO),
                    net: r.net,
                    pv: r.pv,
                }
            })
            .collect())
    }

    fn status(&self) -> &'static str {
        if self.details.is_none() {
            return if self.ever_parked {
                "parked"
            } else {
                "pending"
            };
        }
        if self.cancelled_at.is_some() {
            return "cancelled";
        }
        if self.paid_at.is_none() {
            return "placed";
        }
        if self.refunds.is_empty() {
            return "paid";
        }
        let kept_anything = self
            .kept()
            .map(|k| k.iter().any(|l| !l.net.is_zero() || !l.quantity.is_zero()))
            .unwrap_or(true);
        if kept_anything {
            "partially_refunded"
        } else {
            "refunded"
        }
    }
}

/// The three aggregates' contributions of one order.
#[derive(Default)]
struct Parts {
    sales: Contributions,
    distributors: Contributions,
    commissions: Contributions,
}

fn contributions(book: &OrderBook) -> Result<Parts, ProjectionError> {
    let mut parts = Parts::default();
    let Some(details) = &book.details else {
        return Ok(parts);
    };
    let day = day_of(details.placed_at);
    let month = month_of(details.placed_at);
    let currency = details.currency.code().to_string();
    let platform = details.key.platform.as_str().to_string();
    let due = book.due();
    let mut pv_total = Decimal::ZERO;
    if due {
        let mut touched = BTreeSet::new();
        for kept in book.kept()? {
            let key = vec![
                Key::Text(day.clone()),
                Key::Text(platform.clone()),
                Key::Text(currency.clone()),
                Key::Text(kept.line.sku_id.clone()),
                Key::Text(kept.line.category.clone()),
                Key::Text(kept.line.commission_class.clone()),
            ];
            let first = i64::from(touched.insert(key.clone()));
            add(
                &mut parts.sales,
                key,
                &[
                    1,
                    first,
                    e6_rounded(kept.quantity)?,
                    e6_rounded(kept.net)?,
                    e6_rounded(kept.pv)?,
                ],
            )?;
            pv_total += kept.pv;
        }
    }
    let pv = e6_rounded(pv_total)?;
    let distributor_key = |id: &str| {
        vec![
            Key::Text(month.clone()),
            Key::Text(id.to_string()),
            Key::Text(currency.clone()),
        ]
    };
    // Values: order_refs, orders, orders_paid, personal, group, group_orders, commissions.
    let mut per_distributor: BTreeMap<String, [i64; 7]> = BTreeMap::new();
    if let Some(d) = &details.distributor {
        let v = per_distributor.entry(d.as_str().to_string()).or_default();
        v[1] += 1;
        if due {
            v[2] += 1;
            v[3] += pv;
        }
    }
    if due {
        for member in &book.group {
            let v = per_distributor.entry(member.clone()).or_default();
            v[4] += pv;
            v[5] += 1;
        }
    }
    if let Some(outcome) = &book.outcome {
        for (beneficiary, amount) in &outcome.payouts {
            let v = per_distributor.entry(beneficiary.clone()).or_default();
            v[6] += to_e6(*amount)?;
        }
        for sum in &outcome.by_level {
            add(
                &mut parts.commissions,
                vec![
                    Key::Text(month.clone()),
                    Key::Text(outcome.currency.clone()),
                    Key::Int(i64::from(sum.level)),
                    Key::Text(sum.class.clone()),
                ],
                &[
                    sum.lines,
                    sum.beneficiaries,
                    e6_rounded(sum.base)?,
                    e6_rounded(sum.amount)?,
                ],
            )?;
        }
    }
    for (id, mut v) in per_distributor {
        v[0] = 1;
        add(&mut parts.distributors, distributor_key(&id), &v)?;
    }
    Ok(parts)
}

/// What an event tells BI, decoded.
enum Fact {
    Order(Box<OrderEvent>),
    Parking(Box<ParkingEvent>),
}

#[async_trait::async_trait]
impl Projection for BiProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn stream_prefixes(&self) -> Vec<String> {
        vec![
            ORDER_PREFIX.to_string(),
            PARKED_PREFIX.to_string(),
            SKU_PREFIX.to_string(),
        ]
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            SALES,
            DISTRIBUTORS,
            COMMISSIONS,
            ORDERS,
            SKU_MAPPINGS,
            STATE,
        ]
    }

    async fn create_tables(&self, tx: &mut Tx<'_>, generation: u32) -> Result<(), ProjectionError> {
        let bigints = |values: &[&str]| {
            values
                .iter()
                .map(|v| format!("{v} BIGINT NOT NULL"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let sales = table(SALES, generation);
        let distributors = table(DISTRIBUTORS, generation);
        let commissions = table(COMMISSIONS, generation);
        let orders = table(ORDERS, generation);
        let mappings = table(SKU_MAPPINGS, generation);
        let state = table(STATE, generation);
        let statements = [
            format!(
                "CREATE TABLE {sales} (day TEXT NOT NULL, platform TEXT NOT NULL, \
                 currency TEXT NOT NULL, sku_id TEXT NOT NULL, category TEXT NOT NULL, \
                 commission_class TEXT NOT NULL, {}, \
                 PRIMARY KEY (day, platform, currency, sku_id, category, commission_class))",
                bigints(SALES_VALUES)
            ),
            format!(
                "CREATE TABLE {distributors} (month TEXT NOT NULL, distributor_id TEXT NOT NULL, \
                 currency TEXT NOT NULL, {}, PRIMARY KEY (month, distributor_id, currency))",
                bigints(DISTRIBUTOR_VALUES)
            ),
            format!(
                "CREATE TABLE {commissions} (month TEXT NOT NULL, currency TEXT NOT NULL, \
                 level BIGINT NOT NULL, commission_class TEXT NOT NULL, {}, \
                 PRIMARY KEY (month, currency, level, commission_class))",
                bigints(COMMISSION_VALUES)
            ),
            format!(
                "CREATE TABLE {orders} (
                    order_stream   TEXT NOT NULL PRIMARY KEY,
                    platform       TEXT NOT NULL,
                    shop           TEXT NOT NULL,
                    order_id       TEXT NOT NULL,
                    day            TEXT NOT NULL,
                    placed_at      TEXT NULL,
                    currency       TEXT NOT NULL,
                    distributor_id TEXT NULL,
                    status         TEXT NOT NULL,
                    parked         BIGINT NOT NULL,
                    paid_at        TEXT NULL,
                    cancelled_at   TEXT NULL,
                    refunds        BIGINT NOT NULL,
                    gross_e6       BIGINT NOT NULL,
                    discounts_e6   BIGINT NOT NULL,
                    net_e6         BIGINT NOT NULL,
                    tax_e6         BIGINT NOT NULL,
                    shipping_e6    BIGINT NOT NULL,
                    declared_total_e6 BIGINT NOT NULL,
                    net_kept_e6    BIGINT NOT NULL,
                    pv_e6          BIGINT NOT NULL,
                    commissionable_base_e6 BIGINT NOT NULL,
                    commissions_e6 BIGINT NOT NULL,
                    last_position  BIGINT NOT NULL,
                    updated_at     TEXT NOT NULL
                )"
            ),
            format!(
                "CREATE TABLE {mappings} (
                    platform         TEXT NOT NULL,
                    platform_sku     TEXT NOT NULL,
                    effective_from   TEXT NOT NULL,
                    sku_id           TEXT NOT NULL,
                    name             TEXT NOT NULL,
                    category         TEXT NOT NULL,
                    commission_class TEXT NOT NULL,
                    pv_per_unit      TEXT NULL,
                    cv_per_unit      TEXT NULL,
                    last_position    BIGINT NOT NULL,
                    PRIMARY KEY (platform, platform_sku, effective_from)
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
        let distributors = table(DISTRIBUTORS, generation);
        let orders = table(ORDERS, generation);
        vec![
            format!(
                "CREATE INDEX {distributors}_distributor ON {distributors} (distributor_id, month)"
            ),
            format!("CREATE INDEX {orders}_day ON {orders} (day, order_stream)"),
            format!(
                "CREATE INDEX {orders}_distributor ON {orders} (distributor_id, day, order_stream)"
            ),
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

    /// Folds each order's events of the run into its book once and writes its rows once; a
    /// SKU mapping is written where it comes in the run, after the orders before it, because
    /// an order is classified with the mappings known when its details arrive.
    async fn apply_all(
        &self,
        tx: &mut Tx<'_>,
        generation: u32,
        events: &[&RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let mut facts = Vec::with_capacity(events.len());
        for event in events {
            let position = position_to_sql(event.position)?;
            let stream = event.stream_id.as_str();
            let (order_stream, fact) = if stream.starts_with(SKU_PREFIX) {
                let facts = std::mem::take(&mut facts);
                fold_orders(&*self.history, &self.plans, tx, generation, facts).await?;
                apply_mapping(tx, generation, event, position).await?;
                continue;
            } else if stream.starts_with(ORDER_PREFIX) {
                match upline_domain::events::decode::<OrderEvent>(&event.event_type, &event.data) {
                    Ok(e) => (stream.to_string(), Fact::Order(Box::new(e))),
                    Err(e) => return skip(event, &e.to_string()),
                }
            } else if let Some(order_stream) = stream.strip_prefix(PARKED_PREFIX) {
                match upline_domain::events::decode::<ParkingEvent>(&event.event_type, &event.data)
                {
                    Ok(e) => (order_stream.to_string(), Fact::Parking(Box::new(e))),
                    Err(e) => return skip(event, &e.to_string()),
                }
            } else {
                continue;
            };
            facts.push((order_stream, (position, event.recorded_at, fact)));
        }
        fold_orders(&*self.history, &self.plans, tx, generation, facts).await
    }
}

/// An order event or parking of the run.
type Learnt = books::Dated<Fact>;

/// Folds `facts` into their orders' books (each loaded and saved once) and writes the orders'
/// rows and the aggregates' changes.
async fn fold_orders(
    history: &dyn EventStore,
    plans: &PublishedPlans,
    tx: &mut Tx<'_>,
    generation: u32,
    facts: Vec<(String, Learnt)>,
) -> Result<(), ProjectionError> {
    if facts.is_empty() {
        return Ok(());
    }
    let mappings = KnownMappings::load(tx, generation, &facts).await?;
    let orders = books::by_order(facts);
    let state_table = table(STATE, generation);
    let streams: Vec<&str> = orders.iter().map(|(stream, _)| stream.as_str()).collect();
    let mut stored: HashMap<String, (OrderBook, i64)> =
        books::load(tx, NAME, &state_table, &streams).await?;
    let mut changes = Parts::default();
    let mut saved = Vec::with_capacity(orders.len());
    let mut order_rows = Vec::with_capacity(orders.len());
    for (stream, facts) in orders {
        let Some(&(_, first_at, _)) = facts.first() else {
            continue;
        };
        let (mut book, old, last) = match stored.remove(&stream) {
            Some((book, last)) => {
                let book = book.upgraded();
                let old = contributions(&book)?;
                (book, old, last)
            }
            None => (
                OrderBook {
                    first_day: day_of(first_at),
                    ..OrderBook::default()
                },
                Parts::default(),
                i64::MIN,
            ),
        };
        let facts = books::unfolded(facts, last);
        let Some(&(last, ..)) = facts.last() else {
            continue; // all applied before
        };
        if book.calculated && book.inputs.is_none() && facts.iter().any(needs_lines) {
            book.inputs = Some(recorded::calculation_inputs(history, NAME, &stream).await?);
        }
        // The calculation's plan, when a commission event's lines are recomputed.
        let plan = match book.inputs.as_ref().or_else(|| calculated_in(&facts)) {
            Some(inputs) if facts.iter().any(takes_lines) => Some(plans.of(NAME, inputs).await?),
            _ => None,
        };
        for (_, recorded_at, fact) in facts {
            match fact {
                Fact::Order(e) => learn_order(&mappings, plan.as_deref(), &mut book, *e)?,
                Fact::Parking(e) => learn_parking(&mut book, *e),
            }
            book.last_recorded_at = Some(recorded_at);
        }
        let new = contributions(&book)?;
        add_change(&mut changes.sales, &old.sales, &new.sales)?;
        add_change(
            &mut changes.distributors,
            &old.distributors,
            &new.distributors,
        )?;
        add_change(&mut changes.commissions, &old.commissions, &new.commissions)?;
        order_rows.push(order_row(&stream, &book, last)?);
        saved.push((stream, book, last));
    }
    replace_rows(tx, &table(ORDERS, generation), ORDER_COLUMNS, &order_rows).await?;
    books::save(tx, NAME, &state_table, &saved).await?;
    let (sales, distributors, commissions) = (
        table(SALES, generation),
        table(DISTRIBUTORS, generation),
        table(COMMISSIONS, generation),
    );
    Aggregate {
        table: &sales,
        keys: SALES_KEYS,
        values: SALES_VALUES,
        presence: 0,
    }
    .write(tx, &changes.sales)
    .await?;
    Aggregate {
        table: &distributors,
        keys: DISTRIBUTOR_KEYS,
        values: DISTRIBUTOR_VALUES,
        presence: 0,
    }
    .write(tx, &changes.distributors)
    .await?;
    Aggregate {
        table: &commissions,
        keys: COMMISSION_KEYS,
        values: COMMISSION_VALUES,
        presence: 0,
    }
    .write(tx, &changes.commissions)
    .await
}

fn learn_parking(book: &mut OrderBook, event: ParkingEvent) {
    match event {
        ParkingEvent::OrderParked { update, .. } => {
            book.parked = true;
            book.ever_parked = true;
            if book.details.is_none() {
                book.platform = Some(update.key.platform.as_str().to_string());
                book.shop = Some(update.key.shop.as_str().to_string());
                book.order_id = Some(update.key.order_id.as_str().to_string());
                book.parked_day = update.order.as_ref().map(|o| day_of(o.placed_at));
            }
        }
        ParkingEvent::ParkedRetryFailed { .. } => {}
        ParkingEvent::ParkedOrderResolved { .. } => book.parked = false,
    }
}

/// An event BI cannot read: refused, so the runner holds it back (with its order's later
/// events) in `projection_held`, where `upline quarantine list` shows it; every other order goes
/// on. Skipping it would silently leave its sales out of the dashboards.
fn skip(event: &RecordedEvent, reason: &str) -> Result<(), ProjectionError> {
    metrics::counter!("upline_projection_unreadable_events_total", "projection" => NAME)
        .increment(1);
    Err(ProjectionError::InvalidEvent {
        projection: NAME.to_string(),
        position: event.position,
        stream: event.stream_id.clone(),
        event_type: event.event_type.clone(),
        reason: reason.to_string(),
    })
}

async fn apply_mapping(
    tx: &mut Tx<'_>,
    generation: u32,
    event: &RecordedEvent,
    position: i64,
) -> Result<(), ProjectionError> {
    if event.event_type != "SkuMapped" {
        return Ok(());
    }
    let CatalogEvent::SkuMapped(m) =
        match upline_domain::events::decode(&event.event_type, &event.data) {
            Ok(e) => e,
            Err(e) => return skip(event, &e.to_string()),
        };
    let mappings = table(SKU_MAPPINGS, generation);
    let sql = format!(
        "INSERT INTO {mappings} (platform, platform_sku, effective_from, sku_id, name, category, \
         commission_class, pv_per_unit, cv_per_unit, last_position) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (platform, platform_sku, effective_from) DO UPDATE SET \
         sku_id = excluded.sku_id, name = excluded.name, category = excluded.category, \
         commission_class = excluded.commission_class, pv_per_unit = excluded.pv_per_unit, \
         cv_per_unit = excluded.cv_per_unit, last_position = excluded.last_position"
    );
    sqlx::query(&sql)
        .bind(m.platform.as_str())
        .bind(m.platform_sku.trim())
        .bind(time_to_sql(m.effective_from))
        .bind(m.sku_id.as_str())
        .bind(m.name.as_str())
        .bind(m.category.as_str())
        .bind(m.commission_class.as_str())
        .bind(m.pv_per_unit.map(|d| d.to_string()))
        .bind(m.cv_per_unit.map(|d| d.to_string()))
        .bind(position)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The SKU mappings this projection knows for the platform SKUs of a run's orders, loaded with
/// one query per [`ROWS_PER_STATEMENT`] SKUs: each line is then classified in memory, as
/// `effective_from <= placed_at ORDER BY effective_from DESC LIMIT 1` would.
#[derive(Default)]
struct KnownMappings {
    /// (platform, platform SKU) -> its mappings, in no particular order.
    by_sku: HashMap<(String, String), Vec<KnownMapping>>,
}

/// One row of `bi_sku_mappings`, as the classification needs it.
struct KnownMapping {
    effective_from: String,
    sku_id: String,
    category: String,
    class: String,
    pv_per_unit: Option<String>,
}

impl KnownMappings {
    async fn load(
        tx: &mut Tx<'_>,
        generation: u32,
        facts: &[(String, Learnt)],
    ) -> Result<KnownMappings, ProjectionError> {
        let skus: BTreeSet<&str> = facts
            .iter()
            .filter_map(|(_, (_, _, fact))| match fact {
                Fact::Order(e) => match e.as_ref() {
                    OrderEvent::OrderPlaced { net_lines, .. }
                    | OrderEvent::OrderRevised { net_lines, .. } => Some(net_lines),
                    _ => None,
                },
                Fact::Parking(_) => None,
            })
            .flatten()
            .map(|l| l.platform_sku.trim())
            .collect();
        let skus: Vec<&str> = skus.into_iter().collect();
        let mappings = table(SKU_MAPPINGS, generation);
        let mut known = KnownMappings::default();
        for chunk in skus.chunks(ROWS_PER_STATEMENT) {
            let list = placeholders(tx, 1, chunk.len());
            let sql = format!(
                "SELECT platform, platform_sku, effective_from, sku_id, category, \
                 commission_class, pv_per_unit FROM {mappings} WHERE platform_sku IN {list}"
            );
            let mut query = sqlx::query(&sql);
            for sku in chunk {
                query = query.bind(*sku);
            }
            for row in query.fetch_all(&mut **tx).await? {
                known
                    .by_sku
                    .entry((row.try_get("platform")?, row.try_get("platform_sku")?))
                    .or_default()
                    .push(KnownMapping {
                        effective_from: row.try_get("effective_from")?,
                        sku_id: row.try_get("sku_id")?,
                        category: row.try_get("category")?,
                        class: row.try_get("commission_class")?,
                        pv_per_unit: row.try_get("pv_per_unit")?,
                    });
            }
        }
        Ok(known)
    }

    /// The lines of an order, classified with the catalog as this projection knows it.
    fn classify(
        &self,
        details: &OrderDetails,
        net_lines: &[NetLine],
    ) -> Result<Vec<SalesLine>, ProjectionError> {
        let placed_at = time_to_sql(details.placed_at);
        let mut lines = Vec::with_capacity(net_lines.len());
        for l in net_lines {
            let key = (
                details.key.platform.as_str().to_string(),
                l.platform_sku.trim().to_string(),
            );
            let mapping = self
                .by_sku
                .get(&key)
                .into_iter()
                .flatten()
                .filter(|m| m.effective_from <= placed_at)
                .max_by(|a, b| a.effective_from.cmp(&b.effective_from));
            let (sku_id, category, class, pv) = match mapping {
                Some(m) => {
                    let pv = m
                        .pv_per_unit
                        .as_ref()
                        .map(|p| {
                            p.parse::<Decimal>()
                                .map_err(|e| ProjectionError::Corrupt(format!("pv {p:?}: {e}")))
                        })
                        .transpose()?
                        .unwrap_or_default();
                    (
                        m.sku_id.clone(),
                        m.category.clone(),
                        m.class.clone(),
                        pv * l.quantity,
                    )
                }
                None => (String::new(), String::new(), String::new(), Decimal::ZERO),
            };
            lines.push(SalesLine {
                line_id: l.line_id.clone(),
                sku_id,
                category,
                commission_class: class,
                quantity: l.quantity,
                net: l.net,
                pv,
            });
        }
        Ok(lines)
    }
}

/// `plan` is the calculation's, looked up when `event` is one whose lines are recomputed.
fn learn_order(
    mappings: &KnownMappings,
    plan: Option<&CommissionPlan>,
    book: &mut OrderBook,
    event: OrderEvent,
) -> Result<(), ProjectionError> {
    match event {
        OrderEvent::OrderPlaced { details, net_lines }
        | OrderEvent::OrderRevised { details, net_lines } => {
            book.platform = Some(details.key.platform.as_str().to_string());
            book.shop = Some(details.key.shop.as_str().to_string());
            book.order_id = Some(details.key.order_id.as_str().to_string());
            book.lines = mappings.classify(&details, &net_lines)?;
            book.details = Some(details);
            book.net_lines = net_lines;
        }
        OrderEvent::OrderPaid { paid_at } => book.paid_at = Some(paid_at),
        OrderEvent::OrderRefunded { refund } => {
            book.refunds.insert(refund.refund_id.clone(), refund);
        }
        OrderEvent::OrderCancelled { cancelled_at } => book.cancelled_at = Some(cancelled_at),
        OrderEvent::CommissionCalculated { inputs, outcome } => {
            // The mappings the calculation recorded are authoritative.
            let platform_sku: BTreeMap<&LineId, &str> = book
                .net_lines
                .iter()
                .map(|l| (&l.line_id, l.platform_sku.trim()))
                .collect();
            book.lines = inputs
                .lines
                .iter()
                .map(|l| {
                    let sku = platform_sku.get(&l.line_id).copied().unwrap_or_default();
                    let category = inputs
                        .sku_mappings
                        .iter()
                        .find(|m| m.sku_id == l.sku_id && m.platform_sku.trim() == sku)
                        .or_else(|| inputs.sku_mappings.iter().find(|m| m.sku_id == l.sku_id))
                        .map(|m| m.category.clone())
                        .unwrap_or_default();
                    SalesLine {
                        line_id: l.line_id.clone(),
                        sku_id: l.sku_id.as_str().to_string(),
                        category,
                        commission_class: l.commission_class.as_str().to_string(),
                        quantity: l.quantity,
                        net: l.net,
                        pv: l.pv,
                    }
                })
                .collect();
            let explained = recomputed(&inputs, plan, &book.refunds)?;
            book.group = explained
                .trace
                .iter()
                .filter(|step| step.level.is_some())
                .map(|step| step.distributor_id.as_str().to_string())
                .collect();
            book.outcome = Some(Outcome::of(&outcome, &explained.lines));
            book.calculated = true;
            book.inputs = Some(*inputs);
        }
        OrderEvent::CommissionRecalculated {
            outcome, currency, ..
        } => {
            book.outcome = Some(match (outcome, &book.inputs) {
                (Some(o), Some(inputs)) => {
                    Outcome::of(&o, &recomputed(inputs, plan, &book.refunds)?.lines)
                }
                // A recalculation without a calculation recorded before it in the order's stream:
                // nothing to take lines from.
                (Some(o), None) => Outcome::of(&o, &[]),
                (None, _) => Outcome {
                    currency: currency.code().to_string(),
                    ..Outcome::default()
                },
            });
        }
    }
    Ok(())
}

/// Whether folding `fact` takes the calculation's lines again: a recalculation that pays.
fn needs_lines(fact: &Learnt) -> bool {
    matches!(
        &fact.2,
        Fact::Order(e) if matches!(**e, OrderEvent::CommissionRecalculated { outcome: Some(_), .. })
    )
}

/// Whether folding `fact` recomputes the calculation's lines: the calculation, or a
/// recalculation that pays.
fn takes_lines(fact: &Learnt) -> bool {
    needs_lines(fact)
        || matches!(&fact.2, Fact::Order(e) if matches!(**e, OrderEvent::CommissionCalculated { .. }))
}

/// The inputs of a calculation among `facts`.
fn calculated_in(facts: &[Learnt]) -> Option<&CalculationInputs> {
    facts.iter().find_map(|(_, _, fact)| match fact {
        Fact::Order(e) => match e.as_ref() {
            OrderEvent::CommissionCalculated { inputs, .. } => Some(inputs.as_ref()),
            _ => None,
        },
        Fact::Parking(_) => None,
    })
}

/// The whole calculation on what `refunds` left, from the recorded inputs. Inputs that no longer
/// calculate were recorded by a calculation that did: the event is held, with the reason.
fn recomputed(
    inputs: &CalculationInputs,
    plan: Option<&CommissionPlan>,
    refunds: &BTreeMap<RefundId, Refund>,
) -> Result<CommissionOutcome, ProjectionError> {
    let plan = plan.ok_or_else(|| {
        ProjectionError::Uncalculable(format!("plan {} not looked up", inputs.plan_version))
    })?;
    order::calculate_remaining(inputs, plan, refunds.values())
        .map_err(|e| ProjectionError::Uncalculable(e.to_string()))
}

/// The `bi_orders` row of an order ([`ORDER_COLUMNS`]).
fn order_row(stream: &str, book: &OrderBook, position: i64) -> Result<Vec<Cell>, ProjectionError> {
    let details = book.details.as_ref();
    let sum = |f: fn(&NetLine) -> Decimal| -> Decimal { book.net_lines.iter().map(f).sum() };
    let (gross, discounts, net) = if details.is_some() {
        (
            sum(|l| l.subtotal),
            sum(|l| l.line_discount + l.order_discount_share),
            sum(|l| l.net),
        )
    } else {
        (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO)
    };
    let (net_kept, pv) = if book.due() {
        let kept = book.kept()?;
        (
            kept.iter().map(|k| k.net).sum::<Decimal>(),
            kept.iter().map(|k| k.pv).sum::<Decimal>(),
        )
    } else {
        (Decimal::ZERO, Decimal::ZERO)
    };
    let (base, commissions) = book
        .outcome
        .as_ref()
        .map_or((Decimal::ZERO, Decimal::ZERO), |o| {
            (o.base, o.payouts.values().copied().sum())
        });
    let day = match (details, &book.parked_day) {
        (Some(d), _) => day_of(d.placed_at),
        (None, Some(day)) => day.clone(),
        (None, None) => book.first_day.clone(),
    };
    let platform = book
        .platform
        .clone()
        .or_else(|| shared::platform_of_stream(stream))
        .unwrap_or_default();
    Ok(vec![
        Cell::from(stream),
        Cell::from(platform),
        Cell::from(book.shop.clone().unwrap_or_default()),
        Cell::from(book.order_id.clone().unwrap_or_default()),
        Cell::from(day),
        Cell::from(details.map(|d| time_to_sql(d.placed_at))),
        Cell::from(details.map_or_else(String::new, |d| d.currency.code().to_string())),
        Cell::from(
            details
                .and_then(|d| d.distributor.as_ref())
                .map(|d| d.as_str().to_string()),
        ),
        Cell::from(book.status()),
        Cell::from(i64::from(book.parked)),
        Cell::from(book.paid_at.map(time_to_sql)),
        Cell::from(book.cancelled_at.map(time_to_sql)),
        Cell::from(i64::try_from(book.refunds.len()).unwrap_or(i64::MAX)),
        Cell::from(to_e6(gross)?),
        Cell::from(to_e6(discounts)?),
        Cell::from(to_e6(net)?),
        Cell::from(to_e6(details.map_or(Decimal::ZERO, |d| d.tax))?),
        Cell::from(to_e6(details.map_or(Decimal::ZERO, |d| d.shipping))?),
        Cell::from(to_e6(details.map_or(Decimal::ZERO, |d| d.declared_total))?),
        Cell::from(e6_rounded(net_kept)?),
        Cell::from(e6_rounded(pv)?),
        Cell::from(e6_rounded(base)?),
        Cell::from(to_e6(commissions)?),
        Cell::from(position),
        Cell::from(book.last_recorded_at.map(time_to_sql).unwrap_or_default()),
    ])
}

// ---------------------------------------------------------------------------------------------
// Queries.

/// A page of rows; pass `next_page_token` back for the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub rows: Vec<T>,
    pub next_page_token: Option<String>,
}

/// One row of `bi_sales_daily`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SalesRow {
    pub day: NaiveDate,
    pub platform: String,
    pub currency: String,
    /// `''` when the line's SKU was not mapped.
    pub sku_id: String,
    pub category: String,
    pub commission_class: String,
    pub orders: u64,
    pub lines: u64,
    pub quantity: Decimal,
    pub net: Decimal,
    pub pv: Decimal,
}

/// One row of `bi_distributor_monthly`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistributorMonthRow {
    /// `YYYY-MM`.
    pub month: String,
    pub distributor_id: String,
    pub currency: String,
    pub orders: u64,
    pub orders_paid: u64,
    pub personal_volume: Decimal,
    pub group_volume: Decimal,
    pub group_orders: u64,
    pub commissions: Decimal,
}

/// One row of `bi_commissions_monthly`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommissionLevelRow {
    pub month: String,
    pub currency: String,
    pub level: u32,
    pub commission_class: String,
    pub lines: u64,
    pub beneficiaries: u64,
    pub base: Decimal,
    /// Exact line amounts, before rounding and the cap.
    pub amount: Decimal,
}

/// One row of `bi_orders`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRow {
    pub order_stream: String,
    pub platform: String,
    pub shop: String,
    pub order_id: String,
    pub day: NaiveDate,
    pub placed_at: Option<DateTime<Utc>>,
    pub currency: String,
    pub distributor_id: Option<String>,
    pub status: String,
    pub parked: bool,
    pub paid_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub refunds: u64,
    pub gross: Decimal,
    pub discounts: Decimal,
    pub net: Decimal,
    pub tax: Decimal,
    pub shipping: Decimal,
    pub declared_total: Decimal,
    pub net_kept: Decimal,
    pub pv: Decimal,
    pub commissionable_base: Decimal,
    pub commissions: Decimal,
}

/// Filters of [`BiQuery::orders`]; `None` matches any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderFilter {
    pub platform: Option<String>,
    pub distributor_id: Option<String>,
    pub status: Option<String>,
}

/// Queries over the BI views.
#[derive(Debug, Clone)]
pub struct BiQuery {
    read: ReadStore,
}

fn month_text(day: NaiveDate) -> String {
    day.format("%Y-%m").to_string()
}

fn time(row: &AnyRow, column: &str) -> Result<Option<DateTime<Utc>>, ProjectionError> {
    let text: Option<String> = row.try_get(column)?;
    text.as_deref().map(time_from_sql).transpose()
}

fn text_of(key: &Key) -> String {
    match key {
        Key::Text(s) => s.clone(),
        Key::Int(i) => i.to_string(),
    }
}

fn int_of(key: &Key) -> i64 {
    match key {
        Key::Int(i) => *i,
        Key::Text(_) => 0,
    }
}

/// Cuts the extra row fetched to know whether there is a next page.
fn page<T>(mut rows: Vec<T>, limit: u32, key: impl Fn(&T) -> Vec<Key>) -> Page<T> {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_page_token = match (more, rows.last()) {
        (true, Some(last)) => Some(shared::token_of(&key(last))),
        _ => None,
    };
    Page {
        rows,
        next_page_token,
    }
}

impl BiQuery {
    pub fn new(read: ReadStore) -> BiQuery {
        BiQuery { read }
    }

    /// Sales from `day_from` to `day_to` (inclusive), optionally of one platform, by day,
    /// platform, currency, SKU, category and class; `limit` per page (0: 100, at most 1,000).
    pub async fn sales(
        &self,
        day_from: NaiveDate,
        day_to: NaiveDate,
        platform: Option<&str>,
        page_token: Option<&str>,
        limit: u32,
    ) -> Result<Page<SalesRow>, ProjectionError> {
        let limit = shared::page_limit(limit, DEFAULT_PAGE, MAX_PAGE);
        let after = shared::key_of_token(page_token, &[true; 6])?;
        let sql = format!(
            "SELECT day, platform, currency, sku_id, category, commission_class, lines, orders, \
             quantity_e6, net_e6, pv_e6 FROM {SALES} \
             WHERE day >= $1 AND day <= $2 AND ($3 = '' OR platform = $3) \
             AND (day, platform, currency, sku_id, category, commission_class) > \
             ($4, $5, $6, $7, $8, $9) \
             ORDER BY day, platform, currency, sku_id, category, commission_class LIMIT $10"
        );
        let mut query = sqlx::query(&sql)
            .bind(day_to_sql(day_from))
            .bind(day_to_sql(day_to))
            .bind(platform.unwrap_or(""));
        for k in &after {
            query = query.bind(text_of(k));
        }
        let rows = query
            .bind(i64::from(limit) + 1)
            .fetch_all(self.read.pool())
            .await?;
        let rows = rows
            .iter()
            .map(|r| {
                Ok(SalesRow {
                    day: day_from_sql(&r.try_get::<String, _>("day")?)?,
                    platform: r.try_get("platform")?,
                    currency: r.try_get("currency")?,
                    sku_id: r.try_get("sku_id")?,
                    category: r.try_get("category")?,
                    commission_class: r.try_get("commission_class")?,
                    orders: u64_column(r, "orders")?,
                    lines: u64_column(r, "lines")?,
                    quantity: e6_column(r, "quantity_e6")?,
                    net: e6_column(r, "net_e6")?,
                    pv: e6_column(r, "pv_e6")?,
                })
            })
            .collect::<Result<Vec<_>, ProjectionError>>()?;
        Ok(page(rows, limit, |r| {
            vec![
                Key::Text(day_to_sql(r.day)),
                Key::Text(r.platform.clone()),
                Key::Text(r.currency.clone()),
                Key::Text(r.sku_id.clone()),
                Key::Text(r.category.clone()),
                Key::Text(r.commission_class.clone()),
            ]
        }))
    }

    /// Distributor months from the month of `day_from` to the month of `day_to`, optionally of
    /// one distributor, by month, distributor and currency.
    pub async fn distributor_months(
        &self,
        day_from: NaiveDate,
        day_to: NaiveDate,
        distributor: Option<&str>,
        page_token: Option<&str>,
        limit: u32,
    ) -> Result<Page<DistributorMonthRow>, ProjectionError> {
        let limit = shared::page_limit(limit, DEFAULT_PAGE, MAX_PAGE);
        let after = shared::key_of_token(page_token, &[true; 3])?;
        let sql = format!(
            "SELECT month, distributor_id, currency, orders, orders_paid, personal_volume_e6, \
             group_volume_e6, group_orders, commissions_e6 FROM {DISTRIBUTORS} \
             WHERE month >= $1 AND month <= $2 AND ($3 = '' OR distributor_id = $3) \
             AND (month, distributor_id, currency) > ($4, $5, $6) \
             ORDER BY month, distributor_id, currency LIMIT $7"
        );
        let mut query = sqlx::query(&sql)
            .bind(month_text(day_from))
            .bind(month_text(day_to))
            .bind(distributor.unwrap_or(""));
        for k in &after {
            query = query.bind(text_of(k));
        }
        let rows = query
            .bind(i64::from(limit) + 1)
            .fetch_all(self.read.pool())
            .await?;
        let rows = rows
            .iter()
            .map(|r| {
                Ok(DistributorMonthRow {
                    month: r.try_get("month")?,
                    distributor_id: r.try_get("distributor_id")?,
                    currency: r.try_get("currency")?,
                    orders: u64_column(r, "orders")?,
                    orders_paid: u64_column(r, "orders_paid")?,
                    personal_volume: e6_column(r, "personal_volume_e6")?,
                    group_volume: e6_column(r, "group_volume_e6")?,
                    group_orders: u64_column(r, "group_orders")?,
                    commissions: e6_column(r, "commissions_e6")?,
                })
            })
            .collect::<Result<Vec<_>, ProjectionError>>()?;
        Ok(page(rows, limit, |r| {
            vec![
                Key::Text(r.month.clone()),
                Key::Text(r.distributor_id.clone()),
                Key::Text(r.currency.clone()),
            ]
        }))
    }

    /// Commissions by month, level and class, from the month of `day_from` to that of
    /// `day_to`, by month, currency, level and class.
    pub async fn commissions_by_level(
        &self,
        day_from: NaiveDate,
        day_to: NaiveDate,
        page_token: Option<&str>,
        limit: u32,
    ) -> Result<Page<CommissionLevelRow>, ProjectionError> {
        let limit = shared::page_limit(limit, DEFAULT_PAGE, MAX_PAGE);
        let after = shared::key_of_token(page_token, &[true, true, false, true])?;
        let sql = format!(
            "SELECT month, currency, level, commission_class, lines, beneficiaries, base_e6, \
             amount_e6 FROM {COMMISSIONS} WHERE month >= $1 AND month <= $2 \
             AND (month, currency, level, commission_class) > ($3, $4, $5, $6) \
             ORDER BY month, currency, level, commission_class LIMIT $7"
        );
        let rows = sqlx::query(&sql)
            .bind(month_text(day_from))
            .bind(month_text(day_to))
            .bind(text_of(&after[0]))
            .bind(text_of(&after[1]))
            .bind(int_of(&after[2]))
            .bind(text_of(&after[3]))
            .bind(i64::from(limit) + 1)
            .fetch_all(self.read.pool())
            .await?;
        let rows = rows
            .iter()
            .map(|r| {
                let level: i64 = r.try_get("level")?;
                Ok(CommissionLevelRow {
                    month: r.try_get("month")?,
                    currency: r.try_get("currency")?,
                    level: u32::try_from(level)
                        .map_err(|_| ProjectionError::Corrupt(format!("level {level}")))?,
                    commission_class: r.try_get("commission_class")?,
                    lines: u64_column(r, "lines")?,
                    beneficiaries: u64_column(r, "beneficiaries")?,
                    base: e6_column(r, "base_e6")?,
                    amount: e6_column(r, "amount_e6")?,
                })
            })
            .collect::<Result<Vec<_>, ProjectionError>>()?;
        Ok(page(rows, limit, |r| {
            vec![
                Key::Text(r.month.clone()),
                Key::Text(r.currency.clone()),
                Key::Int(i64::from(r.level)),
                Key::Text(r.commission_class.clone()),
            ]
        }))
    }

    /// Orders placed from `day_from` to `day_to` (an order whose details are not recorded yet
    /// counts on the `placed_at` of a parked copy, else on the day its first event was recorded),
    /// by day and order stream.
    pub async fn orders(
        &self,
        day_from: NaiveDate,
        day_to: NaiveDate,
        filter: &OrderFilter,
        page_token: Option<&str>,
        limit: u32,
    ) -> Result<Page<OrderRow>, ProjectionError> {
        let limit = shared::page_limit(limit, DEFAULT_PAGE, MAX_PAGE);
        let after = shared::key_of_token(page_token, &[true; 2])?;
        let sql = format!(
            "SELECT {} FROM {ORDERS} WHERE day >= $1 AND day <= $2 \
             AND ($3 = '' OR platform = $3) AND ($4 = '' OR distributor_id = $4) \
             AND ($5 = '' OR status = $5) AND (day, order_stream) > ($6, $7) \
             ORDER BY day, order_stream LIMIT $8",
            ORDER_COLUMNS.join(", ")
        );
        let rows = sqlx::query(&sql)
            .bind(day_to_sql(day_from))
            .bind(day_to_sql(day_to))
            .bind(filter.platform.clone().unwrap_or_default())
            .bind(filter.distributor_id.clone().unwrap_or_default())
            .bind(filter.status.clone().unwrap_or_default())
            .bind(text_of(&after[0]))
            .bind(text_of(&after[1]))
            .bind(i64::from(limit) + 1)
            .fetch_all(self.read.pool())
            .await?;
        let rows = rows.iter().map(order_of).collect::<Result<Vec<_>, _>>()?;
        Ok(page(rows, limit, |r| {
            vec![
                Key::Text(day_to_sql(r.day)),
                Key::Text(r.order_stream.clone()),
            ]
        }))
    }

    /// One order's row.
    pub async fn order(&self, order_stream: &str) -> Result<Option<OrderRow>, ProjectionError> {
        let sql = format!(
            "SELECT {} FROM {ORDERS} WHERE order_stream = $1",
            ORDER_COLUMNS.join(", ")
        );
        let row = sqlx::query(&sql)
            .bind(order_stream)
            .fetch_optional(self.read.pool())
            .await?;
        row.as_ref().map(order_of).transpose()
    }
}

fn order_of(r: &AnyRow) -> Result<OrderRow, ProjectionError> {
    Ok(OrderRow {
        order_stream: r.try_get("order_stream")?,
        platform: r.try_get("platform")?,
        shop: r.try_get("shop")?,
        order_id: r.try_get("order_id")?,
        day: day_from_sql(&r.try_get::<String, _>("day")?)?,
        placed_at: time(r, "placed_at")?,
        currency: r.try_get("currency")?,
        distributor_id: r.try_get("distributor_id")?,
        status: r.try_get("status")?,
        parked: r.try_get::<i64, _>("parked")? != 0,
        paid_at: time(r, "paid_at")?,
        cancelled_at: time(r, "cancelled_at")?,
        refunds: u64_column(r, "refunds")?,
        gross: e6_column(r, "gross_e6")?,
        discounts: e6_column(r, "discounts_e6")?,
        net: e6_column(r, "net_e6")?,
        tax: e6_column(r, "tax_e6")?,
        shipping: e6_column(r, "shipping_e6")?,
        declared_total: e6_column(r, "declared_total_e6")?,
        net_kept: e6_column(r, "net_kept_e6")?,
        pv: e6_column(r, "pv_e6")?,
        commissionable_base: e6_column(r, "commissionable_base_e6")?,
        commissions: e6_column(r, "commissions_e6")?,
    })
}
