//! WooCommerce webhooks: `order.created`, `order.updated`, `order.restored` carry the order's
//! *current state* (REST v3 order shape). There is no paid or refund topic, so the state is
//! emitted as facts every time; the order aggregate ignores facts it already knows.
//!
//! Decisions where the platform leaves room:
//! - **`order.deleted` is ignored**, not a cancellation: a trashed order can come back
//!   (`order.restored`) while a recorded cancellation cannot be undone, and the body of a deleted
//!   order is often only `{"id": N}`. A real cancellation arrives as status `cancelled`, money
//!   returned as `refunds[]`.
//! - **Lines are tax-exclusive.** WooCommerce stores a line's `subtotal` (before discounts) and
//!   `total` (after discounts) without tax even when the shop's prices include tax (the order's
//!   `prices_include_tax` says how prices were *entered*). So the normalised order always says
//!   `prices_include_tax: false`, and each line's `total_tax` is informational: passing `true`
//!   would take the tax out twice.
//! - **Facts come from the signed body alone** (`status`, `date_paid_gmt`, `refunds[]`); the
//!   `X-WC-Webhook-Topic` header only routes (an order state, `order.deleted`, or ignored).
//! - **Quantities** are whole numbers above zero, `subtotal` and `total` not negative: anything
//!   else is refused naming the field (`line_items[0].quantity`).
//! - **Refund amounts**: see **Refunds** below; the order's `refunds[]` carries no line items, so
//!   no line's refunded net is stated (the refund is a `NetAmount`).
//! - **Unit price and discount** come from `subtotal` / `quantity` and `subtotal - total`: the
//!   payload's `price` is `total / quantity` as a float (`3.3333333333333335`), neither exact nor
//!   pre-discount. When `subtotal / quantity` has more than 4 decimals (the domain's limit), the
//!   unit price is rounded *up* to 4 decimals and what that adds to the exact subtotal
//!   (quantity x unit price, 0.0002 for 3 x 3.3334) is added to the line's discount, so the
//!   line's net stays exactly `total`.
//! - **Coupons are already on the lines** (`subtotal - total` includes every coupon's share), so
//!   the order discount is 0; `discount_total` would count them twice.
//! - **Catalog key**: `sku`, else `variation_id`, else `product_id` (as text, non-zero).
//! - **Paid** when `date_paid_gmt` (or `date_paid`) is set, or the status is `processing`,
//!   `completed` or `refunded`; at `date_paid_gmt`, else `date_paid`, else `date_modified_gmt`.
//! - **Cancelled** when the status is `cancelled`, at `date_modified_gmt`.
//! - **Refunds**: `refunds[]` says only `{id, total}`, so each is a `NetAmount`: the refund's
//!   share of the order's grand total applied to the order's commissionable net. To make parts add
//!   up exactly, refunds are taken in id order (WordPress post ids only grow) and each gets
//!   `round(cumulative refunded x net / total) - round(previous cumulative x net / total)`,
//!   half-even to the minor unit, the cumulative capped at the total; a full refund in any number
//!   of parts is therefore exactly the net, and an earlier refund's amount never changes when a
//!   later one appears. A refund worth nothing commissionable (0 after rounding) is left out.
//!   WooCommerce sends no refund date in the order: `refunded_at` is the order's creation time,
//!   the one stamp every delivery repeats identically (a refund fact must never change).
//! - **Times**: `*_gmt` fields are UTC without a suffix; the local `date_*` fields are used only
//!   when the GMT one is missing, and are then read as UTC too.
//! - **Attribution**: `meta_data[]` with key `distributor_ref` (preferred) or `ref`; every
//!   `coupon_lines[].code`; the `ref` query parameter of the order-attribution landing page
//!   (`_wc_order_attribution_session_entry`, WooCommerce 8.5+); `customer_id` (0 is a guest:
//!   none).

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Deserialize;
use upline_domain::ids::{Platform, ShopId};
use upline_domain::money::{Amount, Currency};
use upline_domain::net::{self, OrderLine, MAX_UNIT_PRICE_SCALE};
use upline_domain::order::{OrderKey, Refund, RefundScope};

use crate::common::{
    self, check_count, check_line_count, nullable_vec, push_hint, Id, LooseText, OptStamp,
};
use crate::error::PayloadError;
use crate::model::{AttributionHints, Interpretation, NormalizedOrder, OrderFact, OrderUpdate};
use crate::MAX_REFUNDS;

/// The topics whose body is the order's current state.
pub const ORDER_TOPICS: [&str; 3] = ["order.created", "order.updated", "order.restored"];

#[derive(Deserialize)]
struct Order {
    id: Id,
    #[serde(default)]
    status: Option<String>,
    currency: Currency,
    #[serde(default)]
    date_created_gmt: OptStamp,
    #[serde(default)]
    date_created: OptStamp,
    #[serde(default)]
    date_modified_gmt: OptStamp,
    #[serde(default)]
    date_modified: OptStamp,
    #[serde(default)]
    date_paid_gmt: OptStamp,
    #[serde(default)]
    date_paid: OptStamp,
    #[serde(default)]
    shipping_total: Option<Amount>,
    #[serde(default)]
    total_tax: Option<Amount>,
    #[serde(default)]
    total: Option<Amount>,
    #[serde(default)]
    customer_id: Option<Id>,
    #[serde(default, deserialize_with = "nullable_vec")]
    meta_data: Vec<Meta>,
    line_items: Vec<LineItem>,
    #[serde(default, deserialize_with = "nullable_vec")]
    coupon_lines: Vec<Coupon>,
    #[serde(default, deserialize_with = "nullable_vec")]
    refunds: Vec<RefundRef>,
}

#[derive(Deserialize)]
struct LineItem {
    id: Id,
    #[serde(default)]
    sku: Option<String>,
    #[serde(default)]
    product_id: Option<Id>,
    #[serde(default)]
    variation_id: Option<Id>,
    quantity: Amount,
    subtotal: Amount,
    total: Amount,
    #[serde(default)]
    total_tax: Option<Amount>,
}

#[derive(Deserialize)]
struct Meta {
    #[serde(default)]
    key: LooseText,
    #[serde(default)]
    value: LooseText,
}

#[derive(Deserialize)]
struct Coupon {
    #[serde(default)]
    code: LooseText,
}

#[derive(Deserialize)]
struct RefundRef {
    id: Id,
    total: Amount,
}

/// True for the unsigned form body `webhook_id=N` WooCommerce posts when a hook is created; it
/// must be answered 200 and means nothing.
pub fn is_ping(body: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(body) else {
        return false;
    };
    let text = text.trim();
    match text.strip_prefix("webhook_id=") {
        Some(id) => !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    }
}

/// Interprets one WooCommerce delivery (`topic` is the `X-WC-Webhook-Topic` header).
pub fn interpret(shop: &ShopId, topic: &str, body: &[u8]) -> Result<Interpretation, PayloadError> {
    if is_ping(body) {
        return Ok(Interpretation::Ignored {
            reason: "WooCommerce webhook ping (webhook_id=N)".to_string(),
        });
    }
    let topic = common::norm(topic);
    if topic == "order.deleted" {
        return Ok(Interpretation::Ignored {
            reason: "order.deleted is not a cancellation (a trashed order can be restored); \
                     cancellations arrive as status cancelled"
                .to_string(),
        });
    }
    if !ORDER_TOPICS.contains(&topic.as_str()) {
        return Ok(Interpretation::Ignored {
            reason: format!("WooCommerce topic {topic:?} carries no order facts"),
        });
    }
    let order: Order = common::parse(body)?;
    order_update(shop, &order)
}

fn order_update(shop: &ShopId, order: &Order) -> Result<Interpretation, PayloadError> {
    let key = OrderKey {
        platform: Platform::Woocommerce,
        shop: shop.clone(),
        order_id: common::order_id("id", order.id.as_str())?,
    };
    let placed_at = order
        .date_created_gmt
        .0
        .or(order.date_created.0)
        .ok_or_else(|| PayloadError::new("date_created_gmt", "is required"))?;
    let modified = order.date_modified_gmt.0.or(order.date_modified.0);
    let updated_at = modified.unwrap_or(placed_at);
    let currency = order.currency;

    check_line_count("line_items", order.line_items.len())?;
    let lines = order
        .line_items
        .iter()
        .enumerate()
        .map(|(i, item)| line(i, item))
        .collect::<Result<Vec<_>, _>>()?;
    let declared_total = order.total.map(|a| a.0).unwrap_or_default();

    let status = order
        .status
        .as_deref()
        .map(common::norm)
        .unwrap_or_default();
    let mut facts = Vec::new();
    let date_paid = order.date_paid_gmt.0.or(order.date_paid.0);
    if date_paid.is_some() || matches!(status.as_str(), "processing" | "completed" | "refunded") {
        facts.push(OrderFact::Paid {
            at: date_paid.unwrap_or(updated_at),
        });
    }
    check_count("refunds", order.refunds.len(), MAX_REFUNDS)?;
    if !order.refunds.is_empty() {
        facts.extend(refund_facts(
            currency,
            &lines,
            declared_total,
            placed_at,
            &order.refunds,
        )?);
    }
    if status == "cancelled" {
        facts.push(OrderFact::Cancelled { at: updated_at });
    }

    let normalized = NormalizedOrder {
        placed_at,
        updated_at,
        currency,
        prices_include_tax: false,
        lines,
        order_discount: Decimal::ZERO,
        shipping: order.shipping_total.map(|a| a.0).unwrap_or_default(),
        tax: order.total_tax.map(|a| a.0).unwrap_or_default(),
        declared_total,
        attribution: hints(order),
        test: false,
    };
    Ok(Interpretation::Order(OrderUpdate {
        key,
        order: Some(normalized),
        facts,
    }))
}

fn line(i: usize, item: &LineItem) -> Result<OrderLine, PayloadError> {
    let path = format!("line_items[{i}]");
    let quantity = common::ordered_quantity(&format!("{path}.quantity"), item.quantity.0)?;
    let (subtotal, total) = (item.subtotal.0, item.total.0);
    for (name, value) in [("subtotal", subtotal), ("total", total)] {
        if value < Decimal::ZERO {
            return Err(PayloadError::new(
                format!("{path}.{name}"),
                format!("{value} is negative"),
            ));
        }
    }
    // A total above the subtotal (a price raised by a plugin) is taken as the price, no discount.
    let base = subtotal.max(total);
    let overflow = || PayloadError::new(format!("{path}.subtotal"), "amount too large");
    let exact = base.checked_div(quantity).ok_or_else(overflow)?;
    let unit_price = exact
        .round_dp_with_strategy(MAX_UNIT_PRICE_SCALE, RoundingStrategy::AwayFromZero)
        .normalize();
    let priced = quantity.checked_mul(unit_price).ok_or_else(overflow)?;
    // Rounding the unit price up adds a little to the exact subtotal (3 x 3.3334 = 10.0002); it
    // goes to the discount so that the net is exactly the line's total.
    let residual = (priced - base).max(Decimal::ZERO);
    let discount = base - total + residual;

    let sku = item
        .sku
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .or_else(|| nonzero(item.variation_id.as_ref()))
        .or_else(|| nonzero(item.product_id.as_ref()))
        .unwrap_or_default();
    Ok(OrderLine {
        line_id: common::line_id(&format!("{path}.id"), item.id.as_str())?,
        platform_sku: sku,
        quantity,
        unit_price,
        discount,
        tax: item.total_tax.map(|a| a.0).unwrap_or_default(),
    })
}

fn nonzero(id: Option<&Id>) -> Option<String> {
    id.map(|i| i.0.trim().to_string())
        .filter(|i| !i.is_empty() && !i.trim_start_matches('0').is_empty())
}

/// Each refund's share of the commissionable net (see the module notes).
fn refund_facts(
    currency: Currency,
    lines: &[OrderLine],
    declared_total: Decimal,
    refunded_at: DateTime<Utc>,
    refunds: &[RefundRef],
) -> Result<Vec<OrderFact>, PayloadError> {
    let net: Decimal = if lines.is_empty() {
        Decimal::ZERO
    } else {
        net::net_lines(currency, lines, Decimal::ZERO, false)
            .map_err(|e| PayloadError::new("line_items", e.to_string()))?
            .iter()
            .map(|l| l.net)
            .sum()
    };
    if declared_total <= Decimal::ZERO || net <= Decimal::ZERO {
        return Ok(Vec::new());
    }
    let mut order: Vec<(usize, &RefundRef)> = refunds.iter().enumerate().collect();
    order.sort_by(|(_, a), (_, b)| id_order(&a.id, &b.id));

    let overflow = || PayloadError::new("refunds", "amounts too large to prorate");
    let share = |refunded: Decimal| -> Result<Decimal, PayloadError> {
        let capped = refunded.min(declared_total);
        let exact = capped
            .checked_mul(net)
            .and_then(|x| x.checked_div(declared_total))
            .ok_or_else(overflow)?;
        Ok(currency.round(exact).min(net))
    };
    let mut facts = Vec::new();
    let mut cumulative = Decimal::ZERO;
    let mut taken = Decimal::ZERO;
    for (i, refund) in order {
        cumulative = cumulative
            .checked_add(refund.total.0.abs())
            .ok_or_else(overflow)?;
        let upto = share(cumulative)?;
        let amount = upto - taken;
        taken = upto;
        let refund_id = common::refund_id(&format!("refunds[{i}].id"), refund.id.as_str())?;
        if amount > Decimal::ZERO {
            facts.push(OrderFact::Refunded(Refund {
                refund_id,
                refunded_at,
                scope: RefundScope::NetAmount(amount),
            }));
        }
    }
    Ok(facts)
}

/// Numeric ids in numeric order, then any others as text.
fn id_order(a: &Id, b: &Id) -> Ordering {
    match (a.0.parse::<u128>(), b.0.parse::<u128>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        (Ok(_), Err(_)) => Ordering::Less,
        (Err(_), Ok(_)) => Ordering::Greater,
        (Err(_), Err(_)) => a.0.cmp(&b.0),
    }
}

fn hints(order: &Order) -> AttributionHints {
    let meta = |wanted: &str| {
        order
            .meta_data
            .iter()
            .find(|m| m.key.text() == Some(wanted))
            .and_then(|m| m.value.text())
            .map(str::to_string)
    };
    let mut discount_codes = Vec::new();
    for coupon in &order.coupon_lines {
        push_hint(&mut discount_codes, coupon.code.text());
    }
    AttributionHints {
        explicit_ref: meta("distributor_ref").or_else(|| meta("ref")),
        discount_codes,
        landing_ref: meta("_wc_order_attribution_session_entry")
            .as_deref()
            .and_then(common::ref_from_url),
        customer_id: nonzero(order.customer_id.as_ref()),
    }
}

/// What makes one delivered state different from another, for deduplication: the order id, its
/// modification time, its status and its refunds (a refund in the same second is a new state).
/// `None` when the body is not an order.
pub(crate) fn state_fingerprint(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct State {
        id: Id,
        #[serde(default)]
        status: LooseText,
        #[serde(default)]
        date_modified_gmt: LooseText,
        #[serde(default)]
        date_modified: LooseText,
        #[serde(default, deserialize_with = "nullable_vec")]
        refunds: Vec<RefundId>,
    }
    #[derive(Deserialize)]
    struct RefundId {
        id: Id,
    }
    let state: State = common::parse(body).ok()?;
    let modified = state
        .date_modified_gmt
        .text()
        .or(state.date_modified.text())
        .unwrap_or("-")
        .to_string();
    let last_refund = state
        .refunds
        .iter()
        .map(|r| &r.id)
        .max_by(|a, b| id_order(a, b))
        .map(|id| id.0.clone())
        .unwrap_or_else(|| "-".to_string());
    Some(format!(
        "{}:{}:{}:r{}-{}",
        state.id,
        modified,
        state.status.text().unwrap_or("-"),
        state.refunds.len(),
        last_refund
    ))
}
