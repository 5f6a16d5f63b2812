//! The order aggregate: `decide(state, command, context) -> events | error` and
//! `evolve(state, event)`.
//!
//! Facts about an order (placed, paid, refunded, cancelled) arrive from platforms in any order and
//! more than once. What each beneficiary should hold is a function of the *set* of known facts:
//!
//! > zero, unless the order is known, paid and not cancelled; then the commissions of what has not
//! > been refunded, computed with the snapshot, plan and SKU mappings captured at the first
//! > calculation.
//!
//! After every fact, `decide` compares that target with what each beneficiary holds and emits the
//! difference. Arrival order therefore changes the events, never the final holdings; a fact
//! already known emits nothing.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::catalog::SkuMapping;
use crate::engine::{self, CommissionOutcome, CommissionSummary, CommissionableLine, EngineError};
use crate::events::DomainEvent;
use crate::ids::{DistributorId, LineId, Platform, PlatformOrderId, RefundId, ShopId, SkuId};
use crate::money::Currency;
use crate::net::{self, NetAmountError, NetLine, OrderLine};
use crate::plan::{CommissionPlan, PlanBook};
use crate::snapshot::{HierarchySnapshot, SnapshotRequest};

/// Which order: the platform, the shop on it and the platform's order id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OrderKey {
    pub platform: Platform,
    pub shop: ShopId,
    pub order_id: PlatformOrderId,
}

impl OrderKey {
    /// The order's event stream: `order-{platform}-{shop}-{order id}`.
    pub fn stream_name(&self) -> String {
        format!("order-{}-{}-{}", self.platform, self.shop, self.order_id)
    }
}

/// What the platform told us about the order, normalised. Only what commissions and
/// reconciliation need; a change to anything else is not a change of the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderDetails {
    pub key: OrderKey,
    /// The order's time: the hierarchy, plan and SKU mappings are taken as they stood then.
    pub placed_at: DateTime<Utc>,
    /// The platform's version stamp (its `updated_at`), so an older copy never replaces a newer.
    pub updated_at: DateTime<Utc>,
    pub currency: Currency,
    /// Who the order is attributed to; `None` records it as unattributed (it earns nothing).
    pub distributor: Option<DistributorId>,
    pub prices_include_tax: bool,
    pub lines: Vec<OrderLine>,
    /// Order-level discounts not already on the lines; allocated pro rata.
    #[serde(with = "crate::money::decimal", default)]
    pub order_discount: Decimal,
    #[serde(with = "crate::money::decimal", default)]
    pub shipping: Decimal,
    /// Total tax the platform declared.
    #[serde(with = "crate::money::decimal", default)]
    pub tax: Decimal,
    /// The platform's grand total, kept for reconciliation against the normalised lines.
    #[serde(with = "crate::money::decimal", default)]
    pub declared_total: Decimal,
    /// The platform marked it a test order (Shopify `"test": true`): recorded and reconciled,
    /// earning nothing unless the context says test orders earn (`test_orders_earn`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub test: bool,
}

/// A line refunded by quantity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundLine {
    pub line_id: LineId,
    #[serde(with = "crate::money::decimal")]
    pub quantity: Decimal,
    /// The net amount (after discounts, without tax) the platform states it refunded for these
    /// units, where its payload says so; `None` allocates by quantity (see `remaining_lines`).
    #[serde(
        with = "crate::money::opt_decimal",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub stated_net: Option<Decimal>,
}

/// What a refund gave back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundScope {
    /// These quantities of these lines.
    Lines(Vec<RefundLine>),
    /// Only an amount of the order's net is known (WooCommerce); commissions are reversed pro
    /// rata to it.
    NetAmount(#[serde(with = "crate::money::decimal")] Decimal),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    pub refund_id: RefundId,
    pub refunded_at: DateTime<Utc>,
    pub scope: RefundScope,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderCommand {
    RecordOrder(OrderDetails),
    RecordPayment { paid_at: DateTime<Utc> },
    RecordRefund(Refund),
    RecordCancellation { cancelled_at: DateTime<Utc> },
}

/// What the first calculation captured, so every later recalculation (and an auditor's replay)
/// uses exactly the same hierarchy, plan and mappings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RecordedInputs")]
pub struct CalculationInputs {
    pub at: DateTime<Utc>,
    pub currency: Currency,
    /// The plan in force at `at`, by version: its document is recorded once, when it was
    /// published (`plan-{version}`), and looked up by this version ([`PlanSource`]).
    pub plan_version: String,
    /// The plan document's content hash, so that the plan looked up can be checked.
    pub plan_hash: String,
    pub snapshot: HierarchySnapshot,
    pub sku_mappings: Vec<SkuMapping>,
    /// The full lines as ordered; refunds scale their bases down.
    pub lines: Vec<CommissionableLine>,
}

/// [`CalculationInputs`] as any schema version of [`OrderEvent`] recorded them: versions 1 and
/// 2 held the whole plan document (`plan`), version 3 names it (`plan_version`).
#[derive(Deserialize)]
struct RecordedInputs {
    at: DateTime<Utc>,
    currency: Currency,
    #[serde(default)]
    plan_version: Option<String>,
    #[serde(default)]
    plan: Option<PlanVersionOnly>,
    plan_hash: String,
    snapshot: HierarchySnapshot,
    sku_mappings: Vec<SkuMapping>,
    lines: Vec<CommissionableLine>,
}

/// Of a plan document recorded in the inputs, the version (the rest is read past).
#[derive(Deserialize)]
struct PlanVersionOnly {
    version: String,
}

impl TryFrom<RecordedInputs> for CalculationInputs {
    type Error = &'static str;

    fn try_from(r: RecordedInputs) -> Result<Self, Self::Error> {
        let plan_version = r
            .plan_version
            .or(r.plan.map(|p| p.version))
            .ok_or("calculation inputs name no plan: neither plan_version nor plan")?;
        Ok(CalculationInputs {
            at: r.at,
            currency: r.currency,
            plan_version,
            plan_hash: r.plan_hash,
            snapshot: r.snapshot,
            sku_mappings: r.sku_mappings,
            lines: r.lines,
        })
    }
}

/// Where a recorded calculation's plan is found by its version: the plan book, the company.
pub trait PlanSource {
    fn plan(&self, version: &str) -> Option<&CommissionPlan>;
}

impl PlanSource for PlanBook {
    fn plan(&self, version: &str) -> Option<&CommissionPlan> {
        self.get(version)
    }
}

/// Why commissions changed after the first calculation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecalculationCause {
    Refund {
        refund_id: RefundId,
    },
    Cancellation,
    /// The order details arrived or were revised after other facts.
    OrderDetails,
    Payment,
}

/// One beneficiary's change: from what they held to what they should hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommissionAdjustment {
    pub beneficiary: DistributorId,
    #[serde(with = "crate::money::decimal")]
    pub held: Decimal,
    #[serde(with = "crate::money::decimal")]
    pub now: Decimal,
    /// now - held: negative is a reversal.
    #[serde(with = "crate::money::decimal")]
    pub change: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderEvent {
    OrderPlaced {
        details: OrderDetails,
        net_lines: Vec<NetLine>,
    },
    /// A newer copy of the order (platform `updated_at`) arrived before commissions were due.
    OrderRevised {
        details: OrderDetails,
        net_lines: Vec<NetLine>,
    },
    OrderPaid {
        paid_at: DateTime<Utc>,
    },
    OrderRefunded {
        refund: Refund,
    },
    OrderCancelled {
        cancelled_at: DateTime<Utc>,
    },
    /// The first calculation, with everything it used and what it pays (the lines and trace
    /// follow from these with [`explained_outcome`]).
    CommissionCalculated {
        inputs: Box<CalculationInputs>,
        outcome: CommissionSummary,
    },
    /// A later change of what beneficiaries hold; `outcome` is `None` when nothing is due
    /// (cancelled).
    CommissionRecalculated {
        cause: RecalculationCause,
        /// The currency and plan of the first calculation, which every recalculation reuses.
        currency: Currency,
        plan_version: String,
        outcome: Option<CommissionSummary>,
        adjustments: Vec<CommissionAdjustment>,
    },
}

impl DomainEvent for OrderEvent {
    /// 2: outcomes are recorded as [`CommissionSummary`], without lines and trace. 3: the
    /// calculation's inputs name their plan by version instead of holding its document. Events
    /// of every earlier version decode as version 3 (the extra fields are read past; a plan
    /// document gives its version).
    fn schema_version(&self) -> u16 {
        3
    }
}

/// What the aggregate needs from the rest of the company, as it stood at a time. Implemented by
/// the in-memory company model (network, catalog, plan book); pure lookups.
pub trait CalculationContext: PlanSource {
    fn plan_in_force(&self, at: DateTime<Utc>) -> Option<&CommissionPlan>;
    fn sku_mapping(
        &self,
        platform: Platform,
        platform_sku: &str,
        at: DateTime<Utc>,
    ) -> Option<&SkuMapping>;
    fn snapshot(
        &self,
        distributor: &DistributorId,
        at: DateTime<Utc>,
        request: &SnapshotRequest,
    ) -> Result<HierarchySnapshot, String>;
    /// Whether test orders of this order's shop earn commissions (a shop's configuration,
    /// `test_orders = "earn"`); they do not by default.
    fn test_orders_earn(&self, _key: &OrderKey) -> bool {
        false
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error("command for order {got:?} sent to the stream of order {expected:?}")]
    WrongOrder {
        expected: Box<OrderKey>,
        got: Box<OrderKey>,
    },
    #[error("order is invalid: {0}")]
    InvalidOrder(NetAmountError),
    #[error("order copy updated at {updated_at} differs from the one already recorded with the same time")]
    ConflictingCopy { updated_at: DateTime<Utc> },
    #[error("order changed after its commissions were calculated ({field} differs); a paid order changes by refunds")]
    ChangedAfterCalculation { field: &'static str },
    #[error("refund {refund_id} was already recorded with different content")]
    ConflictingRefund { refund_id: RefundId },
    #[error("refund {refund_id}: line {line_id} is not on the order")]
    RefundOfUnknownLine {
        refund_id: RefundId,
        line_id: LineId,
    },
    #[error(
        "refund {refund_id}: line {line_id} would be refunded {refunded} of {ordered} ordered"
    )]
    RefundExceedsLine {
        refund_id: RefundId,
        line_id: LineId,
        refunded: Decimal,
        ordered: Decimal,
    },
    #[error(
        "refund {refund_id}: amount {amount} must be positive and at most the order's net {net}"
    )]
    RefundAmountOutOfRange {
        refund_id: RefundId,
        amount: Decimal,
        net: Decimal,
    },
    #[error("refund {refund_id}: quantity of line {line_id} must be positive")]
    RefundQuantityNotPositive {
        refund_id: RefundId,
        line_id: LineId,
    },
    #[error("refund {refund_id}: the amount stated for line {line_id} is negative")]
    RefundStatedNetNegative {
        refund_id: RefundId,
        line_id: LineId,
    },
    #[error("no commission plan is in force at {at}")]
    NoPlanInForce { at: DateTime<Utc> },
    #[error("plan {version}, which the order's calculation recorded, is not published")]
    RecordedPlanUnknown { version: String },
    #[error("the order's calculation recorded plan {recorded}, not {given}")]
    NotTheRecordedPlan { recorded: String, given: String },
    #[error("line {line_id}: platform SKU {platform_sku:?} is not mapped on {platform} at {at}")]
    UnmappedSku {
        line_id: LineId,
        platform: Platform,
        platform_sku: String,
        at: DateTime<Utc>,
    },
    #[error("hierarchy of distributor {distributor} at {at}: {reason}")]
    Hierarchy {
        distributor: DistributorId,
        at: DateTime<Utc>,
        reason: String,
    },
    #[error("commission calculation failed: {0}")]
    Engine(EngineError),
}

// Written out rather than `#[from]`: the messages above already carry the inner error (they are
// used whole as park reasons), and a source link would make error chains print it twice.
impl From<NetAmountError> for OrderError {
    fn from(e: NetAmountError) -> Self {
        OrderError::InvalidOrder(e)
    }
}

impl From<EngineError> for OrderError {
    fn from(e: EngineError) -> Self {
        OrderError::Engine(e)
    }
}

/// Everything known about one order, rebuilt by `evolve` from its events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderState {
    pub details: Option<OrderDetails>,
    pub net_lines: Vec<NetLine>,
    pub paid_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub refunds: BTreeMap<RefundId, Refund>,
    pub calculation: Option<CalculationInputs>,
    /// What each beneficiary holds on this order now (rounded, never zero entries).
    pub holdings: BTreeMap<DistributorId, Decimal>,
}

impl OrderState {
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a OrderEvent>) -> OrderState {
        let mut state = OrderState::default();
        for e in events {
            evolve(&mut state, e);
        }
        state
    }

    /// True when commissions are due: known, paid, not cancelled.
    fn commissions_due(&self) -> bool {
        self.details.is_some() && self.paid_at.is_some() && self.cancelled_at.is_none()
    }
}

pub fn evolve(state: &mut OrderState, event: &OrderEvent) {
    match event {
        OrderEvent::OrderPlaced { details, net_lines }
        | OrderEvent::OrderRevised { details, net_lines } => {
            state.details = Some(details.clone());
            state.net_lines = net_lines.clone();
        }
        OrderEvent::OrderPaid { paid_at } => state.paid_at = Some(*paid_at),
        OrderEvent::OrderRefunded { refund } => {
            state
                .refunds
                .insert(refund.refund_id.clone(), refund.clone());
        }
        OrderEvent::OrderCancelled { cancelled_at } => state.cancelled_at = Some(*cancelled_at),
        OrderEvent::CommissionCalculated { inputs, outcome } => {
            state.calculation = Some(inputs.as_ref().clone());
            state.holdings = holdings_of(Some(outcome));
        }
        OrderEvent::CommissionRecalculated { outcome, .. } => {
            state.holdings = holdings_of(outcome.as_ref());
        }
    }
}

fn holdings_of(outcome: Option<&CommissionSummary>) -> BTreeMap<DistributorId, Decimal> {
    outcome
        .map(|o| {
            o.payouts
                .iter()
                .map(|p| (p.beneficiary.clone(), p.amount))
                .collect()
        })
        .unwrap_or_default()
}

/// Decides what a command changes. `key` is the order this stream belongs to.
pub fn decide(
    state: &OrderState,
    key: &OrderKey,
    command: &OrderCommand,
    context: &dyn CalculationContext,
) -> Result<Vec<OrderEvent>, OrderError> {
    let Some(fact) = new_fact(state, key, command)? else {
        return Ok(Vec::new());
    };
    let mut next = state.clone();
    evolve(&mut next, &fact);
    let cause = match &fact {
        OrderEvent::OrderRefunded { refund } => RecalculationCause::Refund {
            refund_id: refund.refund_id.clone(),
        },
        OrderEvent::OrderCancelled { .. } => RecalculationCause::Cancellation,
        OrderEvent::OrderPaid { .. } => RecalculationCause::Payment,
        _ => RecalculationCause::OrderDetails,
    };
    let mut events = vec![fact];
    events.extend(commission_events(&next, cause, context)?);
    Ok(events)
}

/// The fact event a command adds, or `None` when it is already known.
fn new_fact(
    state: &OrderState,
    key: &OrderKey,
    command: &OrderCommand,
) -> Result<Option<OrderEvent>, OrderError> {
    match command {
        OrderCommand::RecordOrder(details) => {
            if &details.key != key {
                return Err(OrderError::WrongOrder {
                    expected: Box::new(key.clone()),
                    got: Box::new(details.key.clone()),
                });
            }
            let net_lines = net::net_lines(
                details.currency,
                &details.lines,
                details.order_discount,
                details.prices_include_tax,
            )?;
            let Some(known) = &state.details else {
                // Refunds that arrived first are not re-checked here: rejecting the order for an
                // earlier fact would park it for good. `remaining_lines` clamps at zero instead.
                return Ok(Some(OrderEvent::OrderPlaced {
                    details: details.clone(),
                    net_lines,
                }));
            };
            if known == details || details.updated_at < known.updated_at {
                return Ok(None);
            }
            if details.updated_at == known.updated_at {
                return Err(OrderError::ConflictingCopy {
                    updated_at: details.updated_at,
                });
            }
            if state.calculation.is_some() {
                return match commission_relevant_change(known, details) {
                    Some(field) => Err(OrderError::ChangedAfterCalculation { field }),
                    // Fulfilment, notes and the like change after payment; they change no money.
                    None => Ok(None),
                };
            }
            Ok(Some(OrderEvent::OrderRevised {
                details: details.clone(),
                net_lines,
            }))
        }
        OrderCommand::RecordPayment { paid_at } => Ok(state
            .paid_at
            .is_none()
            .then_some(OrderEvent::OrderPaid { paid_at: *paid_at })),
        OrderCommand::RecordCancellation { cancelled_at } => Ok(state
            .cancelled_at
            .is_none()
            .then_some(OrderEvent::OrderCancelled {
                cancelled_at: *cancelled_at,
            })),
        OrderCommand::RecordRefund(refund) => {
            if let Some(known) = state.refunds.get(&refund.refund_id) {
                return if known == refund {
                    Ok(None)
                } else {
                    Err(OrderError::ConflictingRefund {
                        refund_id: refund.refund_id.clone(),
                    })
                };
            }
            if let Some(details) = &state.details {
                check_refund(refund, &details.lines, &state.net_lines, &state.refunds)?;
            }
            Ok(Some(OrderEvent::OrderRefunded {
                refund: refund.clone(),
            }))
        }
    }
}

/// The first field, in a fixed order, whose change would change commissions.
fn commission_relevant_change(known: &OrderDetails, new: &OrderDetails) -> Option<&'static str> {
    if known.placed_at != new.placed_at {
        Some("placed_at")
    } else if known.currency != new.currency {
        Some("currency")
    } else if known.distributor != new.distributor {
        Some("distributor")
    } else if known.prices_include_tax != new.prices_include_tax {
        Some("prices_include_tax")
    } else if known.lines != new.lines {
        Some("lines")
    } else if known.order_discount != new.order_discount {
        Some("order_discount")
    } else {
        None
    }
}

/// Checks a refund against the order's lines, counting refunds already recorded.
fn check_refund(
    refund: &Refund,
    lines: &[OrderLine],
    net_lines: &[NetLine],
    known: &BTreeMap<RefundId, Refund>,
) -> Result<(), OrderError> {
    let others = known.values().filter(|r| r.refund_id != refund.refund_id);
    match &refund.scope {
        RefundScope::Lines(refund_lines) => {
            for rl in refund_lines {
                let Some(line) = lines.iter().find(|l| l.line_id == rl.line_id) else {
                    return Err(OrderError::RefundOfUnknownLine {
                        refund_id: refund.refund_id.clone(),
                        line_id: rl.line_id.clone(),
                    });
                };
                if rl.quantity <= Decimal::ZERO {
                    return Err(OrderError::RefundQuantityNotPositive {
                        refund_id: refund.refund_id.clone(),
                        line_id: rl.line_id.clone(),
                    });
                }
                if rl.stated_net.is_some_and(|a| a < Decimal::ZERO) {
                    return Err(OrderError::RefundStatedNetNegative {
                        refund_id: refund.refund_id.clone(),
                        line_id: rl.line_id.clone(),
                    });
                }
                let before: Decimal = others
                    .clone()
                    .map(|r| refunded_quantity(r, &rl.line_id))
                    .sum();
                let this: Decimal = refunded_quantity(refund, &rl.line_id);
                if before + this > line.quantity {
                    return Err(OrderError::RefundExceedsLine {
                        refund_id: refund.refund_id.clone(),
                        line_id: rl.line_id.clone(),
                        refunded: before + this,
                        ordered: line.quantity,
                    });
                }
            }
        }
        RefundScope::NetAmount(amount) => {
            let net: Decimal = net_lines.iter().map(|l| l.net).sum();
            let before: Decimal = others.map(refunded_amount).sum();
            if *amount <= Decimal::ZERO || before + amount > net {
                return Err(OrderError::RefundAmountOutOfRange {
                    refund_id: refund.refund_id.clone(),
                    amount: *amount,
                    net,
                });
            }
        }
    }
    Ok(())
}

fn refunded_quantity(refund: &Refund, line_id: &LineId) -> Decimal {
    match &refund.scope {
        RefundScope::Lines(lines) => lines
            .iter()
            .filter(|l| &l.line_id == line_id)
            .map(|l| l.quantity)
            .sum(),
        RefundScope::NetAmount(_) => Decimal::ZERO,
    }
}

fn refunded_amount(refund: &Refund) -> Decimal {
    match &refund.scope {
        RefundScope::NetAmount(amount) => *amount,
        RefundScope::Lines(_) => Decimal::ZERO,
    }
}

/// The commission events that bring holdings to the target for the state's facts.
fn commission_events(
    state: &OrderState,
    cause: RecalculationCause,
    context: &dyn CalculationContext,
) -> Result<Vec<OrderEvent>, OrderError> {
    if !state.commissions_due() {
        return Ok(recalculated(state, cause, None));
    }
    let Some(details) = &state.details else {
        return Ok(Vec::new());
    };
    let Some(distributor) = &details.distributor else {
        // Unattributed: recorded, earns nothing, shows in reconciliation.
        return Ok(Vec::new());
    };
    if details.test && state.calculation.is_none() && !context.test_orders_earn(&details.key) {
        // A test order: recorded and reconciled like any other, but nobody earns on it.
        return Ok(Vec::new());
    }
    match &state.calculation {
        Some(inputs) => {
            let plan = recorded_plan(inputs, context)?;
            let outcome = calculate_remaining(inputs, plan, state.refunds.values())?;
            Ok(recalculated(state, cause, Some(outcome.summary())))
        }
        None => {
            let (inputs, plan) = capture_inputs(details, &state.net_lines, distributor, context)?;
            let outcome = calculate_remaining(&inputs, plan, state.refunds.values())?;
            Ok(vec![OrderEvent::CommissionCalculated {
                inputs: Box::new(inputs),
                outcome: outcome.summary(),
            }])
        }
    }
}

fn recalculated(
    state: &OrderState,
    cause: RecalculationCause,
    outcome: Option<CommissionSummary>,
) -> Vec<OrderEvent> {
    let Some(inputs) = &state.calculation else {
        // Nothing was ever calculated, so nobody holds anything to adjust.
        return Vec::new();
    };
    let target = holdings_of(outcome.as_ref());
    let beneficiaries: BTreeSet<&DistributorId> =
        state.holdings.keys().chain(target.keys()).collect();
    let adjustments: Vec<CommissionAdjustment> = beneficiaries
        .into_iter()
        .filter_map(|b| {
            let held = state.holdings.get(b).copied().unwrap_or_default();
            let now = target.get(b).copied().unwrap_or_default();
            (held != now).then(|| CommissionAdjustment {
                beneficiary: b.clone(),
                held,
                now,
                change: now - held,
            })
        })
        .collect();
    if adjustments.is_empty() {
        return Vec::new();
    }
    vec![OrderEvent::CommissionRecalculated {
        cause,
        currency: inputs.currency,
        plan_version: inputs.plan_version.clone(),
        outcome,
        adjustments,
    }]
}

/// Resolves the plan, the SKU mappings and the hierarchy as they stood at the order's time.
/// Returns them with the plan itself.
fn capture_inputs<'c>(
    details: &OrderDetails,
    net_lines: &[NetLine],
    distributor: &DistributorId,
    context: &'c dyn CalculationContext,
) -> Result<(CalculationInputs, &'c CommissionPlan), OrderError> {
    let at = details.placed_at;
    let plan = context
        .plan_in_force(at)
        .ok_or(OrderError::NoPlanInForce { at })?;
    let mut sku_mappings: Vec<SkuMapping> = Vec::new();
    let mut lines = Vec::with_capacity(net_lines.len());
    for net_line in net_lines {
        let mapping = context
            .sku_mapping(details.key.platform, &net_line.platform_sku, at)
            .ok_or_else(|| OrderError::UnmappedSku {
                line_id: net_line.line_id.clone(),
                platform: details.key.platform,
                platform_sku: net_line.platform_sku.clone(),
                at,
            })?;
        let pv = mapping.pv_per_unit.unwrap_or_default() * net_line.quantity;
        let base = mapping
            .cv_per_unit
            .map_or(net_line.net, |cv| cv * net_line.quantity);
        lines.push(CommissionableLine {
            line_id: net_line.line_id.clone(),
            sku_id: mapping.sku_id.clone(),
            commission_class: mapping.commission_class.clone(),
            quantity: net_line.quantity,
            net: net_line.net,
            pv,
            base,
        });
        if !sku_mappings.contains(mapping) {
            sku_mappings.push(mapping.clone());
        }
    }
    let snapshot = context
        .snapshot(distributor, at, &plan.snapshot_request())
        .map_err(|reason| OrderError::Hierarchy {
            distributor: distributor.clone(),
            at,
            reason,
        })?;
    let inputs = CalculationInputs {
        at,
        currency: details.currency,
        plan_version: plan.version.clone(),
        plan_hash: plan.content_hash(),
        snapshot,
        sku_mappings,
        lines,
    };
    Ok((inputs, plan))
}

/// The plan `inputs` name, from `plans`.
pub fn recorded_plan<'p, P: PlanSource + ?Sized>(
    inputs: &CalculationInputs,
    plans: &'p P,
) -> Result<&'p CommissionPlan, OrderError> {
    plans
        .plan(&inputs.plan_version)
        .ok_or_else(|| OrderError::RecordedPlanUnknown {
            version: inputs.plan_version.clone(),
        })
}

/// The whole calculation behind what the state's beneficiaries hold (lines, payouts and trace),
/// recomputed from the recorded inputs on what has not been refunded: what an operator or an
/// auditor reads, since the events record only its [`CommissionSummary`]. `None` when nothing is
/// held because nothing was calculated or nothing is due (not paid, cancelled). Its summary is
/// the one the state's latest commission event recorded (the same function of the same facts).
pub fn explained_outcome(
    state: &OrderState,
    plans: &dyn PlanSource,
) -> Result<Option<CommissionOutcome>, OrderError> {
    match &state.calculation {
        Some(inputs) if state.commissions_due() => {
            let plan = recorded_plan(inputs, plans)?;
            calculate_remaining(inputs, plan, state.refunds.values()).map(Some)
        }
        _ => Ok(None),
    }
}

/// Commissions on what `refunds` have not given back, from the captured inputs: what the order
/// pays once they are known (the one calculation the aggregate, the projections and replay run).
/// `plan` is the one the inputs name ([`recorded_plan`]); another is refused.
pub fn calculate_remaining<'a>(
    inputs: &CalculationInputs,
    plan: &CommissionPlan,
    refunds: impl Iterator<Item = &'a Refund> + Clone,
) -> Result<CommissionOutcome, OrderError> {
    if plan.version != inputs.plan_version {
        return Err(OrderError::NotTheRecordedPlan {
            recorded: inputs.plan_version.clone(),
            given: plan.version.clone(),
        });
    }
    let lines = remaining_lines(inputs, refunds);
    Ok(engine::calculate(
        inputs.currency,
        &lines,
        &inputs.snapshot,
        plan,
    )?)
}

/// The captured lines less what `refunds` gave back (see [`kept_lines`]); a line's base follows
/// its quantity where its SKU mapping gave CV per unit, else its kept net.
pub fn remaining_lines<'a>(
    inputs: &CalculationInputs,
    refunds: impl Iterator<Item = &'a Refund> + Clone,
) -> Vec<CommissionableLine> {
    let cv_skus: BTreeSet<&SkuId> = inputs
        .sku_mappings
        .iter()
        .filter(|m| m.cv_per_unit.is_some())
        .map(|m| &m.sku_id)
        .collect();
    kept_lines(
        inputs.currency,
        &inputs.lines,
        |l| cv_skus.contains(&l.sku_id),
        refunds,
    )
}

/// What is left of each line after the refunds. A function of the *set* of refunds (never of
/// their order), and every amount it produces has at most the scale of its inputs or the
/// currency's minor unit, so the events that record it always read back. The rules:
///
/// 1. **By quantity.** A line refunded to its full quantity keeps exactly zero. Otherwise each
///    refund of `q` of the line's `Q` units takes off the net the amount the platform stated
///    (`RefundLine::stated_net`), or, when it stated none, `net x q / Q` rounded down to the minor
///    unit; the line keeps the rest (never below zero). PV is PV per unit x the kept quantity;
///    the base is CV per unit x the kept quantity where the SKU gives CV (`base_is_cv`), else the
///    kept net.
/// 2. **By amount** (`RefundScope::NetAmount`, only an amount is known). The amounts together are
///    spread over the kept nets by the split rule (`net::split`: shares rounded down to the minor
///    unit, the remainder to the largest line, ties to the first). A line's net loses its share;
///    a base that is the net follows it; a CV base and the PV shrink in the proportion the order's
///    kept net did (exact to 12 decimals, rounded down beyond).
pub fn kept_lines<'a>(
    currency: Currency,
    lines: &[CommissionableLine],
    base_is_cv: impl Fn(&CommissionableLine) -> bool,
    refunds: impl Iterator<Item = &'a Refund> + Clone,
) -> Vec<CommissionableLine> {
    let by_quantity: Vec<CommissionableLine> = lines
        .iter()
        .map(|line| kept_by_quantity(currency, line, base_is_cv(line), refunds.clone()))
        .collect();
    let amount_refunded: Decimal = refunds.map(refunded_amount).sum();
    if amount_refunded <= Decimal::ZERO {
        return by_quantity;
    }
    let kept_nets: Vec<Decimal> = by_quantity.iter().map(|l| l.net).collect();
    let kept_net: Decimal = kept_nets.iter().sum();
    let refunded = amount_refunded.min(kept_net);
    let shares = net::split(currency, refunded, &kept_nets).unwrap_or_else(|| kept_nets.clone());
    let order_kept = OrderShare {
        kept: kept_net - refunded,
        of: kept_net,
    };
    by_quantity
        .into_iter()
        .zip(shares)
        .map(|(line, share)| {
            let cv = base_is_cv(&line);
            take_amount(line, share, cv, order_kept)
        })
        .collect()
}

/// The part of the order's kept net that an amount refund leaves: `kept` of `of`.
#[derive(Clone, Copy)]
struct OrderShare {
    kept: Decimal,
    of: Decimal,
}

fn kept_by_quantity<'a>(
    currency: Currency,
    line: &CommissionableLine,
    base_is_cv: bool,
    refunds: impl Iterator<Item = &'a Refund>,
) -> CommissionableLine {
    let mut refunded_units = Decimal::ZERO;
    let mut refunded_net = Decimal::ZERO;
    for refund_line in refunds.filter_map(|r| match &r.scope {
        RefundScope::Lines(lines) => Some(lines.iter().filter(|l| l.line_id == line.line_id)),
        RefundScope::NetAmount(_) => None,
    }) {
        for rl in refund_line {
            refunded_units += rl.quantity;
            refunded_net += rl.stated_net.unwrap_or_else(|| {
                currency.round_down(per_units(line.net, rl.quantity, line.quantity))
            });
        }
    }
    let mut kept = line.clone();
    if refunded_units.is_zero() {
        return kept;
    }
    let kept_units = (line.quantity - refunded_units).max(Decimal::ZERO);
    if kept_units.is_zero() {
        // Exactly zero, so a full refund nets every beneficiary to zero with no residue.
        kept.net = Decimal::ZERO;
        kept.base = Decimal::ZERO;
        kept.pv = Decimal::ZERO;
        return kept;
    }
    kept.net = (line.net - refunded_net).max(Decimal::ZERO);
    kept.pv = exact_or_down(per_units(line.pv, kept_units, line.quantity));
    kept.base = if base_is_cv {
        exact_or_down(per_units(line.base, kept_units, line.quantity))
    } else {
        kept.net
    };
    kept
}

/// `value x part / whole`, dividing last so that a per-unit value times whole units is exact.
fn per_units(value: Decimal, part: Decimal, whole: Decimal) -> Decimal {
    if whole.is_zero() {
        return Decimal::ZERO;
    }
    value
        .checked_mul(part)
        .and_then(|v| v.checked_div(whole))
        .unwrap_or(Decimal::ZERO)
}

/// A value that is exact within [`crate::money::MAX_AMOUNT_SCALE`] decimals is kept as it is;
/// a longer fraction (a CV or PV scaled by a ratio that does not divide evenly) is cut to that
/// many decimals, rounding down. Far below any minor unit, and always readable.
fn exact_or_down(value: Decimal) -> Decimal {
    let value = value.normalize();
    if value.scale() <= crate::money::MAX_AMOUNT_SCALE {
        value
    } else {
        value
            .round_dp_with_strategy(
                crate::money::MAX_AMOUNT_SCALE,
                rust_decimal::RoundingStrategy::ToZero,
            )
            .normalize()
    }
}

/// Takes a refund's `share` of the line's net off it. A base that is the net follows it; a CV
/// base and the PV shrink as the order's kept net did ("commissions are reversed pro rata" to a
/// refund known only as an amount), whether or not this line's net took a share.
fn take_amount(
    mut line: CommissionableLine,
    share: Decimal,
    base_is_cv: bool,
    order: OrderShare,
) -> CommissionableLine {
    let shrink = |value: Decimal| -> Decimal {
        if order.kept <= Decimal::ZERO {
            Decimal::ZERO
        } else {
            exact_or_down(per_units(value, order.kept, order.of))
        }
    };
    line.net = (line.net - share).max(Decimal::ZERO);
    line.pv = shrink(line.pv);
    line.base = if base_is_cv {
        shrink(line.base)
    } else {
        line.net
    };
    line
}
