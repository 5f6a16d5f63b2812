//! Orders sent to upline's own endpoint (`POST /api/mlm/orders`, the seed's API), already close
//! to normalised. Two bodies are accepted:
//!
//! (a) the seed's single-line example
//!     `{"shopify_order_id": "1234", "sku": "A1123", "customer_id": "5678",
//!       "referrer_id": "9012", "amount": 99.00}`
//!     plus `order_ts` and `currency`, which it lacks and which are **required**: a commission is
//!     computed as the hierarchy and plan stood at the order's time, and rounded in the order's
//!     currency; guessing either (the delivery time, dollars) would pay the wrong people or the
//!     wrong amounts silently. The order is one line (id `1`, quantity 1, unit price `amount`),
//!     keyed on `Platform::Direct`; `referrer_id` is the explicit attribution. The example has no
//!     status: an order sent this way is **paid** at `order_ts` unless a `status` says otherwise.
//!
//! (b) the seed's normalised order
//!     `{"platform": "shopify", "platform_order_id": "587364120",
//!       "order_ts": "2025-08-28T08:11:04Z", "status": "paid", "currency": "USD",
//!       "distributor_ref": "ABC123",
//!       "items": [{"platform_sku": "KIT-STARTER-001", "qty": 1, "unit_price": 99.00}],
//!       "total": 96.92}`
//!     keyed on the body's `platform` (the catalog maps that platform's SKUs), the route's shop and
//!     `platform_order_id`; `status` is required. Optional: `updated_ts` (version stamp, default
//!     `order_ts`), `customer_id`, `prices_include_tax`, order `shipping` / `tax`, and per item
//!     `line_id` (default: position, from 1), `discount`, `tax`.
//!
//! **Total**: the items' subtotal (less line discounts) plus any declared `shipping` and `tax` is
//! what the customer would pay without an order-level discount. A `total` below that is an
//! order-level discount (the seed's example: 99.00 - 96.92 = 2.08, allocated over the lines); a
//! `total` above it is charges that are not products (shipping, tax, fees not itemised) and
//! changes no commission.
//!
//! **Quantities** (`qty`) are whole numbers above zero and prices (`unit_price`, `amount`) are
//! not negative: anything else is refused naming the field (`items[0].qty`).
//!
//! **Status**: `pending` (no fact), `paid` (paid at `order_ts`), `refunded` (paid, and refunded in
//! full: every line's whole quantity, refund id `full`, at `updated_ts`), `cancelled` (at
//! `updated_ts`). A partial refund cannot be said in this form.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;
use upline_domain::ids::{Platform, RefundId, ShopId};
use upline_domain::money::{Amount, Currency};
use upline_domain::net::OrderLine;
use upline_domain::order::{OrderKey, Refund, RefundLine, RefundScope};

use crate::common::{self, check_line_count, nullable_vec, push_hint, Id, LooseText, OptStamp};
use crate::error::PayloadError;
use crate::model::{AttributionHints, Interpretation, NormalizedOrder, OrderFact, OrderUpdate};

#[derive(Deserialize)]
struct SingleLine {
    shopify_order_id: Id,
    sku: String,
    #[serde(default)]
    customer_id: Option<Id>,
    #[serde(default)]
    referrer_id: LooseText,
    amount: Amount,
    #[serde(default)]
    order_ts: OptStamp,
    #[serde(default)]
    currency: Option<Currency>,
    #[serde(default)]
    status: Option<String>,
}

#[derive(Deserialize)]
struct Normalized {
    platform: String,
    platform_order_id: Id,
    order_ts: common::Stamp,
    #[serde(default)]
    updated_ts: OptStamp,
    status: String,
    currency: Currency,
    #[serde(default)]
    distributor_ref: LooseText,
    #[serde(default)]
    customer_id: Option<Id>,
    #[serde(default, deserialize_with = "nullable_vec")]
    discount_codes: Vec<LooseText>,
    #[serde(default)]
    prices_include_tax: Option<bool>,
    items: Vec<Item>,
    #[serde(default)]
    shipping: Option<Amount>,
    #[serde(default)]
    tax: Option<Amount>,
    #[serde(default)]
    total: Option<Amount>,
}

#[derive(Deserialize)]
struct Item {
    #[serde(default)]
    line_id: Option<Id>,
    platform_sku: String,
    qty: Amount,
    unit_price: Amount,
    #[serde(default)]
    discount: Option<Amount>,
    #[serde(default)]
    tax: Option<Amount>,
}

/// What the status says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Pending,
    Paid,
    Refunded,
    Cancelled,
}

fn status(field: &str, text: &str) -> Result<Status, PayloadError> {
    match common::norm(text).as_str() {
        "pending" | "placed" | "open" | "unpaid" => Ok(Status::Pending),
        "paid" | "completed" | "complete" => Ok(Status::Paid),
        "refunded" => Ok(Status::Refunded),
        "cancelled" | "canceled" => Ok(Status::Cancelled),
        other => Err(PayloadError::new(
            field,
            format!("unknown status {other:?} (pending, paid, refunded, cancelled)"),
        )),
    }
}

/// Interprets a body posted to upline's own order endpoint (`topic` is not used: the endpoint
/// has one meaning).
pub fn interpret(shop: &ShopId, _topic: &str, body: &[u8]) -> Result<Interpretation, PayloadError> {
    let value = common::parse_value(body)?;
    let Some(object) = value.as_object() else {
        return Err(PayloadError::new("body", "expected a JSON object"));
    };
    if object.contains_key("items") {
        let order: Normalized = common::parse(body)?;
        return normalized(shop, &order);
    }
    if object.contains_key("shopify_order_id") {
        let order: SingleLine = common::parse(body)?;
        return single_line(shop, &order);
    }
    Err(PayloadError::new(
        "items",
        "is required: send the normalised order (platform, platform_order_id, order_ts, status, \
         currency, items[]) or the single-line form (shopify_order_id, sku, amount, order_ts, \
         currency)",
    ))
}

fn single_line(shop: &ShopId, order: &SingleLine) -> Result<Interpretation, PayloadError> {
    let key = OrderKey {
        platform: Platform::Direct,
        shop: shop.clone(),
        order_id: common::order_id("shopify_order_id", order.shopify_order_id.as_str())?,
    };
    let placed_at = order.order_ts.0.ok_or_else(|| {
        PayloadError::new(
            "order_ts",
            "is required: commissions are computed as of the order's time (RFC 3339)",
        )
    })?;
    let currency = order.currency.ok_or_else(|| {
        PayloadError::new(
            "currency",
            "is required: amounts are rounded in the order's currency (ISO 4217 code)",
        )
    })?;
    let status = match &order.status {
        Some(s) => status("status", s)?,
        None => Status::Paid,
    };
    let sku = order.sku.trim();
    if sku.is_empty() {
        return Err(PayloadError::new("sku", "is empty"));
    }
    let amount = common::unit_price("amount", order.amount.0)?;
    let lines = vec![OrderLine {
        line_id: common::line_id("sku", "1")?,
        platform_sku: sku.to_string(),
        quantity: Decimal::ONE,
        unit_price: amount,
        discount: Decimal::ZERO,
        tax: Decimal::ZERO,
    }];
    let facts = facts(status, placed_at, placed_at, &lines)?;
    let normalized = NormalizedOrder {
        placed_at,
        updated_at: placed_at,
        currency,
        prices_include_tax: false,
        lines,
        order_discount: Decimal::ZERO,
        shipping: Decimal::ZERO,
        tax: Decimal::ZERO,
        declared_total: amount,
        attribution: AttributionHints {
            explicit_ref: order.referrer_id.text().map(str::to_string),
            discount_codes: Vec::new(),
            landing_ref: None,
            customer_id: order
                .customer_id
                .as_ref()
                .map(|c| c.0.clone())
                .filter(|c| !c.is_empty()),
        },
        test: false,
    };
    Ok(Interpretation::Order(OrderUpdate {
        key,
        order: Some(normalized),
        facts,
    }))
}

fn normalized(shop: &ShopId, order: &Normalized) -> Result<Interpretation, PayloadError> {
    let platform: Platform = order
        .platform
        .parse()
        .map_err(|e: String| PayloadError::new("platform", e))?;
    let key = OrderKey {
        platform,
        shop: shop.clone(),
        order_id: common::order_id("platform_order_id", order.platform_order_id.as_str())?,
    };
    let status = status("status", &order.status)?;
    let placed_at = order.order_ts.0;
    let updated_at = order.updated_ts.0.unwrap_or(placed_at);
    let currency = order.currency;

    check_line_count("items", order.items.len())?;
    let mut lines = Vec::with_capacity(order.items.len());
    for (i, item) in order.items.iter().enumerate() {
        let path = format!("items[{i}]");
        let line_id = match &item.line_id {
            Some(id) => common::line_id(&format!("{path}.line_id"), id.as_str())?,
            None => common::line_id(&format!("{path}.line_id"), &(i + 1).to_string())?,
        };
        let sku = item.platform_sku.trim();
        if sku.is_empty() {
            return Err(PayloadError::new(
                format!("{path}.platform_sku"),
                "is empty",
            ));
        }
        lines.push(OrderLine {
            line_id,
            platform_sku: sku.to_string(),
            quantity: common::ordered_quantity(&format!("{path}.qty"), item.qty.0)?,
            unit_price: common::unit_price(&format!("{path}.unit_price"), item.unit_price.0)?,
            discount: item.discount.map(|a| a.0).unwrap_or_default(),
            tax: item.tax.map(|a| a.0).unwrap_or_default(),
        });
    }

    let shipping = order.shipping.map(|a| a.0).unwrap_or_default();
    let tax = order.tax.map(|a| a.0).unwrap_or_default();
    let overflow = || PayloadError::new("items", "amounts too large to add up");
    let mut expected = shipping.checked_add(tax).ok_or_else(overflow)?;
    for line in &lines {
        let subtotal = line
            .quantity
            .checked_mul(line.unit_price)
            .map(|s| currency.round(s))
            .ok_or_else(overflow)?;
        expected = expected
            .checked_add(subtotal - line.discount)
            .ok_or_else(overflow)?;
    }
    let (declared_total, order_discount) = match order.total {
        Some(total) if total.0 < Decimal::ZERO => {
            return Err(PayloadError::new(
                "total",
                format!("{} is negative", total.0),
            ));
        }
        Some(total) => (total.0, (expected - total.0).max(Decimal::ZERO)),
        None => (expected, Decimal::ZERO),
    };

    let mut discount_codes = Vec::new();
    for code in &order.discount_codes {
        push_hint(&mut discount_codes, code.text());
    }
    let facts = facts(status, placed_at, updated_at, &lines)?;
    let normalized = NormalizedOrder {
        placed_at,
        updated_at,
        currency,
        prices_include_tax: order.prices_include_tax.unwrap_or(false),
        lines,
        order_discount,
        shipping,
        tax,
        declared_total,
        attribution: AttributionHints {
            explicit_ref: order.distributor_ref.text().map(str::to_string),
            discount_codes,
            landing_ref: None,
            customer_id: order
                .customer_id
                .as_ref()
                .map(|c| c.0.clone())
                .filter(|c| !c.is_empty()),
        },
        test: false,
    };
    Ok(Interpretation::Order(OrderUpdate {
        key,
        order: Some(normalized),
        facts,
    }))
}

fn facts(
    status: Status,
    placed_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    lines: &[OrderLine],
) -> Result<Vec<OrderFact>, PayloadError> {
    Ok(match status {
        Status::Pending => Vec::new(),
        Status::Paid => vec![OrderFact::Paid { at: placed_at }],
        Status::Refunded => vec![
            OrderFact::Paid { at: placed_at },
            OrderFact::Refunded(Refund {
                refund_id: RefundId::new("full")
                    .map_err(|e| PayloadError::new("status", e.to_string()))?,
                refunded_at: updated_at,
                scope: RefundScope::Lines(
                    lines
                        .iter()
                        .map(|l| RefundLine {
                            line_id: l.line_id.clone(),
                            quantity: l.quantity,
                            stated_net: None,
                        })
                        .collect(),
                ),
            }),
        ],
        Status::Cancelled => vec![OrderFact::Cancelled { at: updated_at }],
    })
}
