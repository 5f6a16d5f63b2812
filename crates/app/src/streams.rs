//! Stream names: one place that says which stream holds what.
//!
//! | stream | holds |
//! |---|---|
//! | `order-{platform}-{shop}-{order id}` | the order aggregate's events |
//! | `distributor-{id}` | the distributor's registration and changes (sponsor, status, rank) |
//! | `commissions-{id}` | the distributor's commission postings (earned, reversed), one per order event that changed them |
//! | `sku-{platform}-{platform sku}` | the SKU's mapping versions |
//! | `plan-{version}` | the published plan document |
//! | `customer-{platform}-{shop}-{customer id}` | who the customer is enrolled with |
//! | `parked-{order stream}` | updates of an order that could not be processed, and their retries |
//! | `checkpoint-{name}` | a process manager's position in `$all` |
//! | `quarantine-{consumer}` | events a consumer holds back for a permanent failure, their retries and releases |

use upline_domain::ids::{DistributorId, Platform, ShopId};
use upline_domain::order::OrderKey;

pub const ORDER_PREFIX: &str = "order-";
pub const DISTRIBUTOR_PREFIX: &str = "distributor-";
/// Commission postings have their own category, so that the company model, which follows the
/// network, never reads them, and the ledger reads only them.
pub const COMMISSIONS_PREFIX: &str = "commissions-";
pub const SKU_PREFIX: &str = "sku-";
pub const PLAN_PREFIX: &str = "plan-";
pub const CUSTOMER_PREFIX: &str = "customer-";
pub const PARKED_PREFIX: &str = "parked-";
pub const QUARANTINE_PREFIX: &str = "quarantine-";

pub fn order(key: &OrderKey) -> String {
    key.stream_name()
}

pub fn distributor(id: &DistributorId) -> String {
    format!("{DISTRIBUTOR_PREFIX}{id}")
}

/// Where a beneficiary's commission postings go.
pub fn commissions(id: &DistributorId) -> String {
    format!("{COMMISSIONS_PREFIX}{id}")
}

pub fn sku(platform: Platform, platform_sku: &str) -> String {
    format!("{SKU_PREFIX}{platform}-{}", platform_sku.trim())
}

pub fn plan(version: &str) -> String {
    format!("{PLAN_PREFIX}{version}")
}

pub fn customer(platform: Platform, shop: &ShopId, customer_id: &str) -> String {
    format!("{CUSTOMER_PREFIX}{platform}-{shop}-{customer_id}")
}

pub fn parked(order_stream: &str) -> String {
    format!("{PARKED_PREFIX}{order_stream}")
}

pub fn checkpoint(name: &str) -> String {
    format!("checkpoint-{name}")
}

pub fn quarantine(consumer: &str) -> String {
    format!("{QUARANTINE_PREFIX}{consumer}")
}
