//! What every platform's payload becomes: an update about one order, as normalised facts.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use upline_domain::money::Currency;
use upline_domain::net::OrderLine;
use upline_domain::order::{OrderKey, Refund};

/// How a payload may name the distributor who gets the credit. Resolved later, against the
/// network, in the configured order of precedence.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributionHints {
    /// A `distributor_ref` (or `ref`) in note attributes / meta data / custom attributes, or the
    /// normalised order's `distributor_ref`: a referral code or a distributor id.
    pub explicit_ref: Option<String>,
    /// Coupon / discount codes used on the order, as the platform sent them.
    pub discount_codes: Vec<String>,
    /// The `ref` query parameter of the landing-site URL.
    pub landing_ref: Option<String>,
    /// The platform's customer id (text: ids above 2^53 stay exact).
    pub customer_id: Option<String>,
}

/// The order itself, normalised; everything but the attributed distributor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NormalizedOrder {
    pub placed_at: DateTime<Utc>,
    /// The platform's version stamp (`updated_at`, `date_modified`).
    pub updated_at: DateTime<Utc>,
    pub currency: Currency,
    pub prices_include_tax: bool,
    /// Commissionable product lines only (Magento parent/child rows already collapsed).
    pub lines: Vec<OrderLine>,
    #[serde(with = "upline_domain::money::decimal")]
    pub order_discount: Decimal,
    #[serde(with = "upline_domain::money::decimal")]
    pub shipping: Decimal,
    #[serde(with = "upline_domain::money::decimal")]
    pub tax: Decimal,
    #[serde(with = "upline_domain::money::decimal")]
    pub declared_total: Decimal,
    pub attribution: AttributionHints,
    /// The platform marked it a test order (Shopify `"test": true`): recorded and reconciled, and
    /// earning only where the shop's configuration says `test_orders = "earn"`. Defaults to
    /// false, so updates parked before the flag existed still read.
    #[serde(default)]
    pub test: bool,
}

/// A fact about the order besides its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderFact {
    Paid { at: DateTime<Utc> },
    Cancelled { at: DateTime<Utc> },
    Refunded(Refund),
}

/// Everything one delivery says about one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderUpdate {
    pub key: OrderKey,
    /// The order's content, when the payload carries it (a refund webhook does not).
    pub order: Option<NormalizedOrder>,
    /// Facts, in the order they should be recorded (they commute, so order is only cosmetic).
    pub facts: Vec<OrderFact>,
}

/// What a verified delivery means.
// One value per delivery, moved once: boxing the order would only add an allocation and make
// callers' patterns noisier.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Interpretation {
    /// Nothing to do: a ping, a topic we do not handle, an entity that is not an order.
    Ignored {
        reason: String,
    },
    Order(OrderUpdate),
}
