//! The commission plan: a versioned document, loaded from TOML and validated.
// (loading and validation are filled in by the plan work; the shape below is shared)

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::ids::{CommissionClass, RankName};
use crate::snapshot::DistributorStatus;

/// One rung of the rank ladder: a paid-as rank and how many levels it unlocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RankRung {
    pub name: RankName,
    pub paid_levels: u32,
}

/// Rates of one commission class; `rates[0]` is level 1 (the order's own distributor).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassRates {
    #[serde(default)]
    pub description: String,
    pub rates: Vec<crate::money::Amount>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommissionPlan {
    pub version: String,
    pub effective_from: DateTime<Utc>,
    #[serde(default)]
    pub description: String,
    /// Total commission on an order never exceeds this share of its commissionable base.
    #[serde(with = "crate::money::decimal")]
    pub max_payout_ratio: Decimal,
    /// Statuses that earn. Under compression, members without one are skipped for free.
    pub qualifying_statuses: Vec<DistributorStatus>,
    pub compression: bool,
    /// Lowest rank first.
    pub ranks: Vec<RankRung>,
    pub classes: BTreeMap<CommissionClass, ClassRates>,
}
