//! The commission engine: a pure function of (commissionable lines, hierarchy snapshot, plan).
//!
//! Walk the snapshot from the order's distributor upward and give each member a level:
//! - a member whose status does not qualify is skipped without using a level under compression
//!   (without compression they use the level and are paid nothing on it);
//! - a member who qualifies by status but whose paid-as rank does not unlock the level uses it up
//!   and is paid nothing on it; a rank that is not on the plan's ladder at all is treated the same
//!   way (the level is used, nothing is paid, the trace says `RankNotOnLadder`): a member-level
//!   oddity never fails the order;
//! - otherwise each line pays `base x rate(class, level)`, exactly (no rounding per line).
//!
//! The walk covers [`CommissionPlan::paid_depth`] levels: the deepest level that some class pays
//! and some rank unlocks, the same depth the snapshot is captured to.
//!
//! Each beneficiary's sum is rounded half-even to the currency's minor unit once per order. The
//! payout cap is `max_payout_ratio x base` rounded *down* to the minor unit (`0.45 x 6.90 = 3.105
//! -> 3.10`), so rounding can never break it; it is taken from the shallowest level down: the
//! level that crosses it is cut to what is left, deeper levels get nothing. Everything is recorded
//! in a trace so a person can check the result.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::ids::{CommissionClass, DistributorId, LineId, RankName, SkuId};
use crate::money::Currency;
use crate::plan::CommissionPlan;
use crate::snapshot::{DistributorStatus, HierarchySnapshot};

/// A line of an order as the plan sees it: its class and the base commissions are paid on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommissionableLine {
    pub line_id: LineId,
    pub sku_id: SkuId,
    pub commission_class: CommissionClass,
    #[serde(with = "crate::money::decimal")]
    pub quantity: Decimal,
    /// The line's net amount (after discounts, without tax and shipping).
    #[serde(with = "crate::money::decimal")]
    pub net: Decimal,
    /// Personal volume of the line (PV per unit x quantity), zero when the SKU carries none.
    #[serde(with = "crate::money::decimal")]
    pub pv: Decimal,
    /// What commissions are paid on: CV x quantity where the SKU gives CV, else the net amount.
    #[serde(with = "crate::money::decimal")]
    pub base: Decimal,
}

/// One line paid to one beneficiary at one level, before rounding and before the cap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommissionLine {
    pub beneficiary: DistributorId,
    pub level: u32,
    pub line_id: LineId,
    pub commission_class: CommissionClass,
    #[serde(with = "crate::money::decimal")]
    pub base: Decimal,
    #[serde(with = "crate::money::decimal")]
    pub rate: Decimal,
    /// base x rate, exact (not rounded).
    #[serde(with = "crate::money::decimal")]
    pub amount: Decimal,
}

/// What one beneficiary earns on the order: one rounded amount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payout {
    pub beneficiary: DistributorId,
    pub level: u32,
    /// The sum of this beneficiary's lines, exact.
    #[serde(with = "crate::money::decimal")]
    pub unrounded: Decimal,
    /// Rounded half-even to the minor unit, then cut by the cap if it crossed it.
    #[serde(with = "crate::money::decimal")]
    pub amount: Decimal,
}

/// Why an upline member was paid, skipped or cut.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Paid in full at this level.
    Paid,
    /// Status does not qualify; compression skipped them without using a level.
    SkippedByCompression,
    /// Status does not qualify and the plan does not compress: the level is used, nothing paid.
    StatusNotQualifying,
    /// Qualifies by status, but the paid-as rank unlocks fewer levels: the level is used up.
    RankTooLow { paid_levels: u32 },
    /// Qualifies by status, but the paid-as rank is not on the plan's ladder: the level is used
    /// up and nothing is paid (like a rank that unlocks no level); the order still calculates.
    RankNotOnLadder,
    /// Every class pays 0 at this level.
    NoRateAtLevel,
    /// Crossed the payout cap: cut from the rounded amount to what was left under the cap.
    CutByCap {
        #[serde(with = "crate::money::decimal")]
        from: Decimal,
        #[serde(with = "crate::money::decimal")]
        to: Decimal,
    },
}

/// One upline member considered by the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceStep {
    pub distributor_id: DistributorId,
    pub depth: u32,
    pub status: DistributorStatus,
    pub rank: RankName,
    /// The level this member used, if any.
    pub level: Option<u32>,
    pub decision: Decision,
}

/// The full result of a calculation: lines, one rounded amount per beneficiary, and the trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommissionOutcome {
    pub currency: Currency,
    pub plan_version: String,
    /// The sum of the lines' bases.
    #[serde(with = "crate::money::decimal")]
    pub commissionable_base: Decimal,
    /// The most this order may pay in total.
    #[serde(with = "crate::money::decimal")]
    pub cap: Decimal,
    pub lines: Vec<CommissionLine>,
    /// Beneficiaries with a non-zero amount, shallowest level first.
    pub payouts: Vec<Payout>,
    pub trace: Vec<TraceStep>,
    #[serde(with = "crate::money::decimal")]
    pub total: Decimal,
}

impl CommissionOutcome {
    /// What `beneficiary` earns on this order (zero when not a beneficiary).
    pub fn amount_for(&self, beneficiary: &DistributorId) -> Decimal {
        amount_for(&self.payouts, beneficiary)
    }

    /// What the order's events record of this outcome.
    pub fn summary(&self) -> CommissionSummary {
        CommissionSummary {
            currency: self.currency,
            plan_version: self.plan_version.clone(),
            commissionable_base: self.commissionable_base,
            cap: self.cap,
            payouts: self.payouts.clone(),
            total: self.total,
        }
    }
}

/// What a calculation pays, as the order's events record it: the base, the cap, one rounded
/// payout per beneficiary and the total. The lines and the trace are left out: they follow from
/// the recorded inputs with [`calculate`] (`order::explained_outcome`), and they were more than
/// half of each `CommissionCalculated`'s bytes, decoded by every consumer (issue 8). An event
/// stored with them still decodes: the extra fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommissionSummary {
    pub currency: Currency,
    pub plan_version: String,
    /// The sum of the lines' bases.
    #[serde(with = "crate::money::decimal")]
    pub commissionable_base: Decimal,
    /// The most this order may pay in total.
    #[serde(with = "crate::money::decimal")]
    pub cap: Decimal,
    /// Beneficiaries with a non-zero amount, shallowest level first.
    pub payouts: Vec<Payout>,
    #[serde(with = "crate::money::decimal")]
    pub total: Decimal,
}

impl CommissionSummary {
    /// What `beneficiary` earns on this order (zero when not a beneficiary).
    pub fn amount_for(&self, beneficiary: &DistributorId) -> Decimal {
        amount_for(&self.payouts, beneficiary)
    }
}

fn amount_for(payouts: &[Payout], beneficiary: &DistributorId) -> Decimal {
    payouts
        .iter()
        .find(|p| &p.beneficiary == beneficiary)
        .map_or(Decimal::ZERO, |p| p.amount)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("snapshot content does not match its hash {0}: it was altered after capture")]
    SnapshotAltered(String),
    #[error("snapshot of {distributor} stops after {levels_found} levels and not at the top, but plan {plan_version} pays {plan_levels} levels")]
    SnapshotTooShallow {
        distributor: DistributorId,
        levels_found: u32,
        plan_levels: u32,
        plan_version: String,
    },
    #[error("line {line_id}: commission class {class} is not in plan {plan_version}")]
    UnknownCommissionClass {
        line_id: LineId,
        class: CommissionClass,
        plan_version: String,
    },
    #[error("line {line_id}: base {base} is negative")]
    NegativeBase { line_id: LineId, base: Decimal },
    #[error("amounts overflowed while calculating")]
    Overflow,
}

/// Calculates the commissions of one order. Pure and deterministic: the same inputs always give
/// an outcome that serialises to the same bytes.
pub fn calculate(
    currency: Currency,
    lines: &[CommissionableLine],
    snapshot: &HierarchySnapshot,
    plan: &CommissionPlan,
) -> Result<CommissionOutcome, EngineError> {
    if !snapshot.verify() {
        return Err(EngineError::SnapshotAltered(snapshot.content_hash.clone()));
    }
    for line in lines {
        if line.base.is_sign_negative() && !line.base.is_zero() {
            return Err(EngineError::NegativeBase {
                line_id: line.line_id.clone(),
                base: line.base,
            });
        }
        if !plan.classes.contains_key(&line.commission_class) {
            return Err(EngineError::UnknownCommissionClass {
                line_id: line.line_id.clone(),
                class: line.commission_class.clone(),
                plan_version: plan.version.clone(),
            });
        }
    }
    let base = lines
        .iter()
        .try_fold(Decimal::ZERO, |acc, l| acc.checked_add(l.base))
        .ok_or(EngineError::Overflow)?;
    let cap = currency.round_down(
        plan.max_payout_ratio
            .checked_mul(base)
            .ok_or(EngineError::Overflow)?,
    );

    let mut outcome = CommissionOutcome {
        currency,
        plan_version: plan.version.clone(),
        commissionable_base: base,
        cap,
        lines: Vec::new(),
        payouts: Vec::new(),
        trace: Vec::new(),
        total: Decimal::ZERO,
    };
    let max_levels = plan.paid_depth();
    let mut level = 0u32;
    for member in &snapshot.members {
        if level >= max_levels {
            break;
        }
        let qualifies = plan.qualifies(member.status);
        let mut step = TraceStep {
            distributor_id: member.distributor_id.clone(),
            depth: member.depth,
            status: member.status,
            rank: member.rank.clone(),
            level: None,
            decision: Decision::SkippedByCompression,
        };
        if !qualifies && plan.compression {
            outcome.trace.push(step);
            continue;
        }
        level += 1;
        step.level = Some(level);
        step.decision = match (qualifies, plan.paid_levels(&member.rank)) {
            (false, _) => Decision::StatusNotQualifying,
            (true, None) => Decision::RankNotOnLadder,
            (true, Some(paid_levels)) => pay_member(
                &mut outcome,
                paid_levels,
                level,
                lines,
                plan,
                &member.distributor_id,
            )?,
        };
        outcome.trace.push(step);
    }
    if level < max_levels && !snapshot.reached_top {
        return Err(EngineError::SnapshotTooShallow {
            distributor: snapshot.distributor_id.clone(),
            levels_found: level,
            plan_levels: max_levels,
            plan_version: plan.version.clone(),
        });
    }
    Ok(outcome)
}

/// Decides and records what the member at `level` earns.
fn pay_member(
    outcome: &mut CommissionOutcome,
    paid_levels: u32,
    level: u32,
    lines: &[CommissionableLine],
    plan: &CommissionPlan,
    beneficiary: &DistributorId,
) -> Result<Decision, EngineError> {
    if paid_levels < level {
        return Ok(Decision::RankTooLow { paid_levels });
    }
    let mut unrounded = Decimal::ZERO;
    for line in lines {
        // Classes were checked against the plan above; a missing one pays nothing.
        let rate = plan
            .rate(&line.commission_class, level)
            .unwrap_or(Decimal::ZERO);
        if rate.is_zero() {
            continue;
        }
        let amount = line.base.checked_mul(rate).ok_or(EngineError::Overflow)?;
        unrounded = unrounded.checked_add(amount).ok_or(EngineError::Overflow)?;
        outcome.lines.push(CommissionLine {
            beneficiary: beneficiary.clone(),
            level,
            line_id: line.line_id.clone(),
            commission_class: line.commission_class.clone(),
            base: line.base,
            rate,
            amount,
        });
    }
    if !outcome.lines.iter().any(|l| l.level == level) {
        return Ok(Decision::NoRateAtLevel);
    }
    let rounded = outcome.currency.round(unrounded);
    let left = outcome.cap - outcome.total;
    let amount = rounded.min(left);
    if !amount.is_zero() {
        outcome.payouts.push(Payout {
            beneficiary: beneficiary.clone(),
            level,
            unrounded,
            amount,
        });
        outcome.total += amount;
    }
    Ok(if amount == rounded {
        Decision::Paid
    } else {
        Decision::CutByCap {
            from: rounded,
            to: amount,
        }
    })
}
