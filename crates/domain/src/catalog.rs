//! The catalog: platform SKUs mapped to our SKUs and commission classes, effective-dated.
// (filled in by the catalog work; the mapping shape below is shared with the engine)

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::ids::{CommissionClass, Platform, SkuId};

/// What one platform SKU (or variant id) means to the commission plan, from `effective_from` on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkuMapping {
    pub platform: Platform,
    /// The platform's SKU or variant id, exactly as the platform sends it (never a product name).
    pub platform_sku: String,
    pub effective_from: DateTime<Utc>,
    pub sku_id: SkuId,
    pub name: String,
    pub category: String,
    pub commission_class: CommissionClass,
    /// Personal volume per unit, when the SKU carries any.
    #[serde(with = "crate::money::opt_decimal", default)]
    pub pv_per_unit: Option<Decimal>,
    /// Commissionable value per unit; when present, the line's base is CV x quantity instead of
    /// its net amount.
    #[serde(with = "crate::money::opt_decimal", default)]
    pub cv_per_unit: Option<Decimal>,
}
