//! Net amount: what a line is worth to the commission plan. Taxes, shipping, tips and duties
//! never count.
// (filled in by the net-amount work; the shapes below are shared with the order aggregate)

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::ids::LineId;

/// A line as the platform priced it, in the order's currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub line_id: LineId,
    /// The platform's SKU or variant id, the key of the catalog.
    pub platform_sku: String,
    #[serde(with = "crate::money::decimal")]
    pub quantity: Decimal,
    #[serde(with = "crate::money::decimal")]
    pub unit_price: Decimal,
    /// Discounts the platform already put on this line (a total for the line, not per unit).
    #[serde(with = "crate::money::decimal", default)]
    pub discount: Decimal,
    /// Tax on this line (a total for the line). Removed from the net when prices include tax;
    /// otherwise it was added on top and never counted.
    #[serde(with = "crate::money::decimal", default)]
    pub tax: Decimal,
}

/// A line's net amount and how it was reached, each step in the order's currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetLine {
    pub line_id: LineId,
    pub platform_sku: String,
    #[serde(with = "crate::money::decimal")]
    pub quantity: Decimal,
    /// quantity x unit price.
    #[serde(with = "crate::money::decimal")]
    pub subtotal: Decimal,
    #[serde(with = "crate::money::decimal")]
    pub line_discount: Decimal,
    /// This line's share of the order-level discounts.
    #[serde(with = "crate::money::decimal")]
    pub order_discount_share: Decimal,
    /// Tax taken out of a tax-inclusive price (zero when prices exclude tax).
    #[serde(with = "crate::money::decimal")]
    pub included_tax: Decimal,
    /// subtotal - line_discount - order_discount_share - included_tax.
    #[serde(with = "crate::money::decimal")]
    pub net: Decimal,
}
