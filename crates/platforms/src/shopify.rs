//! Shopify webhooks: `orders/create`, `orders/updated`, `orders/paid`, `orders/cancelled` (an
//! order body) and `refunds/create` (a refund body). Any other topic is ignored.
//!
//! Decisions where the platform leaves room:
//! - **Ids** are integers above 2^53: read from their digits (or a string), kept as text.
//! - **Catalog key**: the line's `sku`; when it is empty or null, the `variant_id` as text. A line
//!   with neither (a custom line item) keeps an empty key: it records, and a commission
//!   calculation on it fails loudly as an unmapped SKU instead of guessing from the title.
//! - **Discounts**: a line's discount is the sum of its `discount_allocations[].amount`. Shopify
//!   allocates *every* discount application to lines there, order-level codes included, so the
//!   order discount is always 0 (taking `total_discounts` too would count them twice). Payloads
//!   older than discount allocations fall back to the line's `total_discount`. Shipping discounts
//!   are allocated to shipping lines and never touch product lines.
//! - **Tax**: a line's tax is the sum of its `tax_lines[].price`; `taxes_included` says whether
//!   the line price contains it.
//! - **Quantity** is the ordered `quantity` (not `current_quantity`): removals arrive as refunds.
//!   It must be a whole number above zero and `price` must not be negative: anything else is
//!   refused naming the field (`line_items[0].quantity`), never rounded or dropped.
//! - **Shipping**: `total_shipping_price_set.shop_money.amount`, else the sum of
//!   `shipping_lines[].price`. All amounts are in the shop currency (`currency`).
//! - **Facts come from the signed body alone.** The HMAC covers the body, not the headers, so the
//!   `X-Shopify-Topic` header only routes: an order body, a refund body, or ignored. Re-posting
//!   a captured unpaid order's body under `orders/paid` or `orders/cancelled` says exactly what
//!   the body says (nothing paid, nothing cancelled).
//! - **Paid** when `financial_status` is `paid`, `partially_refunded` or `refunded`; at
//!   `processed_at` (else `updated_at`). Shopify's order carries no payment time, and the
//!   aggregate keeps the first payment time it hears anyway.
//! - **Cancelled** when `cancelled_at` is set, at that time.
//! - **Test orders**: `"test": true` marks the order as a test (`NormalizedOrder::test`).
//! - **Refunds** (embedded `refunds[]` or the `refunds/create` body) become `Refunded` facts with
//!   the refunded line quantities, dated by the refund's `created_at`, so that both copies of one
//!   refund are identical facts. Lines refunded with quantity 0 are left out; a refund with no
//!   line (shipping only, an order adjustment) is still recorded, with no lines: it changes no
//!   commission but is part of the order's history.
//! - **Stated refund amounts**: a refund line's `subtotal` (`subtotal_set.shop_money.amount`,
//!   else `subtotal`) is after discounts; it excludes tax when the order's `taxes_included` is
//!   false and includes it when true, so the stated net is `subtotal`, or `subtotal - total_tax`
//!   for tax-inclusive orders. A `refunds/create` body does not say whether the order's prices
//!   include tax: there the net is stated only when the line's `total_tax` is 0 (then both
//!   readings agree), else left unstated (the refund is allocated by quantity). The order's own
//!   copy of that refund (in `refunds[]`) may then state it; the application takes the two as
//!   the same refund, the first one heard standing.
//! - **Attribution**: `note_attributes` named `distributor_ref` (preferred) or `ref`; every
//!   `discount_codes[].code`; the `ref` query parameter of `landing_site` (only `ref`: Shopify's
//!   own `landing_site_ref` also takes `source`-style parameters, which are not referrals);
//!   `customer.id`.

use rust_decimal::Decimal;
use serde::Deserialize;
use upline_domain::ids::{Platform, ShopId};
use upline_domain::money::{Amount, Currency};
use upline_domain::net::OrderLine;
use upline_domain::order::{OrderKey, Refund, RefundLine, RefundScope};

use crate::common::{
    self, check_count, check_line_count, nullable_vec, push_hint, sum, Id, LooseText, OptStamp,
    Stamp,
};
use crate::error::PayloadError;
use crate::model::{AttributionHints, Interpretation, NormalizedOrder, OrderFact, OrderUpdate};
use crate::MAX_REFUNDS;

/// The topics whose body is an order.
pub const ORDER_TOPICS: [&str; 4] = [
    "orders/create",
    "orders/updated",
    "orders/paid",
    "orders/cancelled",
];

/// The topic whose body is a refund.
pub const REFUND_TOPIC: &str = "refunds/create";

#[derive(Deserialize)]
struct Order {
    id: Id,
    created_at: Stamp,
    #[serde(default)]
    updated_at: OptStamp,
    #[serde(default)]
    processed_at: OptStamp,
    #[serde(default)]
    cancelled_at: OptStamp,
    currency: Currency,
    #[serde(default)]
    taxes_included: Option<bool>,
    #[serde(default)]
    financial_status: Option<String>,
    line_items: Vec<LineItem>,
    #[serde(default)]
    total_tax: Option<Amount>,
    #[serde(default)]
    total_price: Option<Amount>,
    #[serde(default)]
    total_shipping_price_set: Option<PriceSet>,
    #[serde(default, deserialize_with = "nullable_vec")]
    shipping_lines: Vec<ShippingLine>,
    #[serde(default, deserialize_with = "nullable_vec")]
    note_attributes: Vec<NoteAttribute>,
    #[serde(default, deserialize_with = "nullable_vec")]
    discount_codes: Vec<DiscountCode>,
    #[serde(default)]
    landing_site: Option<String>,
    #[serde(default)]
    customer: Option<Customer>,
    #[serde(default, deserialize_with = "nullable_vec")]
    refunds: Vec<RefundBody>,
    #[serde(default)]
    test: Option<bool>,
}

#[derive(Deserialize)]
struct LineItem {
    id: Id,
    #[serde(default)]
    sku: Option<String>,
    #[serde(default)]
    variant_id: Option<Id>,
    quantity: Amount,
    price: Amount,
    #[serde(default)]
    discount_allocations: Option<Vec<Allocation>>,
    #[serde(default)]
    total_discount: Option<Amount>,
    #[serde(default, deserialize_with = "nullable_vec")]
    tax_lines: Vec<TaxLine>,
}

#[derive(Deserialize)]
struct Allocation {
    amount: Amount,
}

#[derive(Deserialize)]
struct TaxLine {
    price: Amount,
}

#[derive(Deserialize)]
struct PriceSet {
    shop_money: MoneyBag,
}

#[derive(Deserialize)]
struct MoneyBag {
    amount: Amount,
}

#[derive(Deserialize)]
struct ShippingLine {
    price: Amount,
}

#[derive(Deserialize)]
struct NoteAttribute {
    #[serde(default)]
    name: LooseText,
    #[serde(default)]
    value: LooseText,
}

#[derive(Deserialize)]
struct DiscountCode {
    #[serde(default)]
    code: LooseText,
}

#[derive(Deserialize)]
struct Customer {
    #[serde(default)]
    id: Option<Id>,
}

#[derive(Deserialize)]
struct RefundBody {
    id: Id,
    #[serde(default)]
    order_id: Option<Id>,
    created_at: Stamp,
    #[serde(default, deserialize_with = "nullable_vec")]
    refund_line_items: Vec<RefundLineItem>,
}

#[derive(Deserialize)]
struct RefundLineItem {
    line_item_id: Id,
    quantity: Amount,
    #[serde(default)]
    subtotal: Option<Amount>,
    #[serde(default)]
    subtotal_set: Option<PriceSet>,
    #[serde(default)]
    total_tax: Option<Amount>,
    #[serde(default)]
    total_tax_set: Option<PriceSet>,
}

/// Interprets one Shopify delivery (`topic` is the `X-Shopify-Topic` header).
pub fn interpret(shop: &ShopId, topic: &str, body: &[u8]) -> Result<Interpretation, PayloadError> {
    let topic = common::norm(topic);
    if topic == REFUND_TOPIC {
        let refund: RefundBody = common::parse(body)?;
        return refund_update(shop, &refund);
    }
    if !ORDER_TOPICS.contains(&topic.as_str()) {
        return Ok(Interpretation::Ignored {
            reason: format!("Shopify topic {topic:?} carries no order facts"),
        });
    }
    let order: Order = common::parse(body)?;
    // The topic chose the body's shape; what happened comes from the body alone.
    order_update(shop, &order)
}

fn key(shop: &ShopId, field: &str, id: &Id) -> Result<OrderKey, PayloadError> {
    Ok(OrderKey {
        platform: Platform::Shopify,
        shop: shop.clone(),
        order_id: common::order_id(field, id.as_str())?,
    })
}

fn refund_update(shop: &ShopId, refund: &RefundBody) -> Result<Interpretation, PayloadError> {
    let order_id = refund
        .order_id
        .as_ref()
        .ok_or_else(|| PayloadError::new("order_id", "is required"))?;
    let key = key(shop, "order_id", order_id)?;
    // A refund body does not say whether the order's prices include tax.
    let fact = refund_fact("", refund, None)?;
    Ok(Interpretation::Order(OrderUpdate {
        key,
        order: None,
        facts: vec![fact],
    }))
}

/// A refund as a fact; `prefix` is the refund's JSON path with a trailing dot ("" at the root);
/// `taxes_included` is the order's, when the refund comes inside its order.
fn refund_fact(
    prefix: &str,
    refund: &RefundBody,
    taxes_included: Option<bool>,
) -> Result<OrderFact, PayloadError> {
    check_line_count(
        &format!("{prefix}refund_line_items"),
        refund.refund_line_items.len(),
    )?;
    let mut lines = Vec::with_capacity(refund.refund_line_items.len());
    for (i, rl) in refund.refund_line_items.iter().enumerate() {
        let path = format!("{prefix}refund_line_items[{i}]");
        let Some(quantity) = common::refunded_quantity(&format!("{path}.quantity"), rl.quantity.0)?
        else {
            continue;
        };
        lines.push(RefundLine {
            line_id: common::line_id(&format!("{path}.line_item_id"), rl.line_item_id.as_str())?,
            quantity,
            stated_net: stated_net(&path, rl, taxes_included)?,
        });
    }
    Ok(OrderFact::Refunded(Refund {
        refund_id: common::refund_id(&format!("{prefix}id"), refund.id.as_str())?,
        refunded_at: refund.created_at.0,
        scope: RefundScope::Lines(lines),
    }))
}

/// The net a refund line states it gave back (module notes): `None` when the line states no
/// subtotal, or when it carries tax and whether the subtotal includes it is unknown.
fn stated_net(
    path: &str,
    line: &RefundLineItem,
    taxes_included: Option<bool>,
) -> Result<Option<Decimal>, PayloadError> {
    let subtotal = match (&line.subtotal_set, line.subtotal) {
        (Some(set), _) => set.shop_money.amount.0,
        (None, Some(subtotal)) => subtotal.0,
        (None, None) => return Ok(None),
    };
    let tax = match (&line.total_tax_set, line.total_tax) {
        (Some(set), _) => set.shop_money.amount.0,
        (None, Some(tax)) => tax.0,
        (None, None) => Decimal::ZERO,
    };
    if subtotal < Decimal::ZERO {
        return Err(PayloadError::new(
            format!("{path}.subtotal"),
            format!("{subtotal} is negative"),
        ));
    }
    if tax < Decimal::ZERO || (tax > subtotal && taxes_included == Some(true)) {
        return Err(PayloadError::new(
            format!("{path}.total_tax"),
            format!("{tax} is negative or above the tax-inclusive subtotal {subtotal}"),
        ));
    }
    Ok(match (tax.is_zero(), taxes_included) {
        (true, _) | (false, Some(false)) => Some(subtotal),
        (false, Some(true)) => Some(subtotal - tax),
        (false, None) => None,
    })
}

fn order_update(shop: &ShopId, order: &Order) -> Result<Interpretation, PayloadError> {
    let key = key(shop, "id", &order.id)?;
    let placed_at = order.created_at.0;
    let updated_at = order.updated_at.0.unwrap_or(placed_at);

    check_line_count("line_items", order.line_items.len())?;
    let lines = order
        .line_items
        .iter()
        .enumerate()
        .map(|(i, item)| line(i, item))
        .collect::<Result<Vec<_>, _>>()?;

    let shipping = match &order.total_shipping_price_set {
        Some(set) => set.shop_money.amount.0,
        None => sum(
            "shipping_lines",
            order.shipping_lines.iter().map(|s| s.price.0),
        )?,
    };
    let normalized = NormalizedOrder {
        placed_at,
        updated_at,
        currency: order.currency,
        prices_include_tax: order.taxes_included.unwrap_or(false),
        lines,
        order_discount: Decimal::ZERO,
        shipping,
        tax: order.total_tax.map(|a| a.0).unwrap_or_default(),
        declared_total: order.total_price.map(|a| a.0).unwrap_or_default(),
        attribution: hints(order),
        test: order.test.unwrap_or(false),
    };

    let mut facts = Vec::new();
    let status = order
        .financial_status
        .as_deref()
        .map(common::norm)
        .unwrap_or_default();
    if matches!(status.as_str(), "paid" | "partially_refunded" | "refunded") {
        facts.push(OrderFact::Paid {
            at: order.processed_at.0.unwrap_or(updated_at),
        });
    }
    check_count("refunds", order.refunds.len(), MAX_REFUNDS)?;
    for (i, refund) in order.refunds.iter().enumerate() {
        facts.push(refund_fact(
            &format!("refunds[{i}]."),
            refund,
            Some(normalized.prices_include_tax),
        )?);
    }
    if let Some(at) = order.cancelled_at.0 {
        facts.push(OrderFact::Cancelled { at });
    }

    Ok(Interpretation::Order(OrderUpdate {
        key,
        order: Some(normalized),
        facts,
    }))
}

fn line(i: usize, item: &LineItem) -> Result<OrderLine, PayloadError> {
    let path = format!("line_items[{i}]");
    let quantity = common::ordered_quantity(&format!("{path}.quantity"), item.quantity.0)?;
    let unit_price = common::unit_price(&format!("{path}.price"), item.price.0)?;
    let sku = item
        .sku
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .or_else(|| item.variant_id.as_ref().map(|v| v.0.clone()))
        .unwrap_or_default();
    let discount = match &item.discount_allocations {
        Some(allocations) => sum(
            &format!("{path}.discount_allocations"),
            allocations.iter().map(|a| a.amount.0),
        )?,
        None => item.total_discount.map(|a| a.0).unwrap_or_default(),
    };
    let tax = sum(
        &format!("{path}.tax_lines"),
        item.tax_lines.iter().map(|t| t.price.0),
    )?;
    Ok(OrderLine {
        line_id: common::line_id(&format!("{path}.id"), item.id.as_str())?,
        platform_sku: sku,
        quantity,
        unit_price,
        discount,
        tax,
    })
}

fn hints(order: &Order) -> AttributionHints {
    let attribute = |wanted: &str| {
        order
            .note_attributes
            .iter()
            .find(|a| {
                a.name
                    .text()
                    .is_some_and(|n| n.eq_ignore_ascii_case(wanted))
            })
            .and_then(|a| a.value.text())
            .map(str::to_string)
    };
    let mut discount_codes = Vec::new();
    for code in &order.discount_codes {
        push_hint(&mut discount_codes, code.code.text());
    }
    AttributionHints {
        explicit_ref: attribute("distributor_ref").or_else(|| attribute("ref")),
        discount_codes,
        landing_ref: order.landing_site.as_deref().and_then(common::ref_from_url),
        customer_id: order
            .customer
            .as_ref()
            .and_then(|c| c.id.as_ref())
            .map(|id| id.0.clone())
            .filter(|id| !id.is_empty()),
    }
}
