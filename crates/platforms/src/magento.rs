//! Magento / Adobe Commerce, in three delivery forms:
//!
//! 1. an **Adobe I/O Events** CloudEvents envelope: the event code in `type`
//!    (`com.adobe.commerce.observer.sales_order_save_after`), the entity in `data.value`;
//! 2. an **Adobe Commerce webhook** body: `{"eventName": "observer.sales_order_save_after",
//!    "data": {"order": {...}}}` (the observer event's arguments under `data`: `order`,
//!    `invoice` or `creditmemo`);
//! 3. a **plain entity** (the REST `GET /V1/orders/{id}` shape, or an invoice / credit memo), the
//!    event named by `topic` (`sales_order_save_after`, or simply `order`, `invoice`,
//!    `creditmemo`).
//!
//! The form is recognised from the body; for forms 1 and 2 the body's event code wins over
//! `topic`. Events that are not about an order, an invoice or a credit memo (the product envelope
//! in the fixtures) are ignored.
//!
//! Decisions where the platform leaves room:
//! - **Key**: the order's `entity_id` (invoices and credit memos reference it as `order_id`),
//!   not the customer-facing `increment_id`.
//! - **Amounts** are the order-currency ones (`order_currency_code`, `price`, `tax_amount`, ...),
//!   not the `base_*` ones: the set the customer was charged.
//! - **Parent/child rows**: a configurable product counts its parent row (the child carries price
//!   0); a bundle whose children carry prices (dynamic price) counts the children and skips the
//!   parent; a bundle whose children are all priced 0 (fixed price) counts the parent. Any other
//!   parent type follows the bundle rule. A child whose parent is not in the payload counts.
//! - **Prices exclude tax** (`price`, not `price_incl_tax`); a line's discount is its
//!   `discount_amount` less `discount_tax_compensation_amount` (the tax hidden in a discount on
//!   tax-inclusive prices), so the net is tax-exclusive. Magento puts cart-rule discounts on the
//!   items already, so the order discount is 0 (the order's negative `discount_amount` is their
//!   sum).
//! - **Paid** when the state is `complete` or `closed`, or `processing` with `total_invoiced` /
//!   `total_paid` above zero (processing alone can mean shipped but not invoiced); an invoice
//!   event is a payment when the invoice state is 2 (paid). At the entity's `updated_at`: Magento
//!   records no payment time on the order.
//! - **Cancelled** when the state is `canceled`, at `updated_at`.
//! - **Facts come from the signed body alone**: for an envelope or a webhook body the body's own
//!   event code routes (the `?topic=` / `x-upline-topic` are used only for a plain entity, and
//!   only to say which kind of entity it is); paid, cancelled and refunded come from the
//!   entity's `state`, totals and items.
//! - **Quantities** (`qty_ordered` of a counted row) are whole numbers above zero (`"2.0000"` is
//!   2) and `price` is not negative; anything else is refused naming the field.
//! - **Credit memos** become `Refunded` with the refunded quantities of the memo's items
//!   (`order_item_id`, `qty`, a whole number), dated by the memo's `created_at`. Each row states
//!   its refunded net: `row_total` (excluding tax) less `discount_amount` net of its
//!   `discount_tax_compensation_amount`, the same rule as an order line's net. Rows with quantity 0 and rows
//!   priced 0 are left out: the memo repeats the structural rows of configurable and bundle
//!   products (child of a configurable, children of a fixed bundle, parent of a dynamic bundle),
//!   which are not order lines. A memo in state 1 (open) or 3 (canceled) is not a refund yet.
//! - **An order event without `items`** (an I/O event whose fields were filtered) still gives its
//!   payment / cancellation facts, with no order content.
//! - **Times** are Magento's UTC columns (`2017-08-21 22:22:19`).
//! - **Attribution**: a `distributor_ref` order attribute (top level or in
//!   `extension_attributes`); the `coupon_code`; `customer_id` unless the customer is a guest.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use upline_domain::ids::{Platform, ShopId};
use upline_domain::money::{Amount, Currency};
use upline_domain::net::OrderLine;
use upline_domain::order::{OrderKey, Refund, RefundLine, RefundScope};

use crate::common::{self, check_line_count, nullable_vec, push_hint, Id, LooseText, OptStamp};
use crate::error::PayloadError;
use crate::model::{AttributionHints, Interpretation, NormalizedOrder, OrderFact, OrderUpdate};

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntityKind {
    Order,
    Invoice,
    CreditMemo,
}

impl EntityKind {
    fn webhook_key(self) -> &'static str {
        match self {
            EntityKind::Order => "order",
            EntityKind::Invoice => "invoice",
            EntityKind::CreditMemo => "creditmemo",
        }
    }
}

/// The entity an event code is about, or `None` for events that carry no order facts. Accepts
/// the I/O Events form (`com.adobe.commerce.observer.sales_order_save_after`), the webhook form
/// (`observer.sales_order_save_after`), the bare event name and the short names `order`,
/// `invoice`, `creditmemo`.
pub fn entity_kind(event_code: &str) -> Option<EntityKind> {
    let code = common::norm(event_code);
    let code = code.strip_prefix("com.adobe.commerce.").unwrap_or(&code);
    let code = code
        .strip_prefix("observer.")
        .or_else(|| code.strip_prefix("plugin."))
        .unwrap_or(code);
    match code {
        "sales_order_save_after"
        | "sales_order_save_commit_after"
        | "sales_order_place_after"
        | "order"
        | "orders" => Some(EntityKind::Order),
        "sales_order_invoice_save_after"
        | "sales_order_invoice_save_commit_after"
        | "sales_order_invoice_pay"
        | "invoice"
        | "invoices" => Some(EntityKind::Invoice),
        "sales_order_creditmemo_save_after"
        | "sales_order_creditmemo_save_commit_after"
        | "sales_order_creditmemo_refund"
        | "creditmemo"
        | "creditmemos"
        | "credit_memo" => Some(EntityKind::CreditMemo),
        _ => None,
    }
}

#[derive(Deserialize)]
struct OrderEntity {
    entity_id: Id,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    created_at: OptStamp,
    #[serde(default)]
    updated_at: OptStamp,
    #[serde(default)]
    order_currency_code: Option<Currency>,
    #[serde(default)]
    grand_total: Option<Amount>,
    #[serde(default)]
    shipping_amount: Option<Amount>,
    #[serde(default)]
    tax_amount: Option<Amount>,
    #[serde(default)]
    total_invoiced: Option<Amount>,
    #[serde(default)]
    total_paid: Option<Amount>,
    #[serde(default)]
    base_total_invoiced: Option<Amount>,
    #[serde(default)]
    base_total_paid: Option<Amount>,
    #[serde(default)]
    coupon_code: LooseText,
    #[serde(default)]
    customer_id: Option<Id>,
    #[serde(default)]
    customer_is_guest: LooseText,
    #[serde(default)]
    distributor_ref: LooseText,
    #[serde(default)]
    extension_attributes: Option<OrderExtension>,
    #[serde(default)]
    items: Option<Vec<Item>>,
}

#[derive(Deserialize)]
struct OrderExtension {
    #[serde(default)]
    distributor_ref: LooseText,
}

#[derive(Deserialize)]
struct Item {
    item_id: Id,
    #[serde(default)]
    parent_item_id: Option<Id>,
    #[serde(default)]
    product_type: Option<String>,
    #[serde(default)]
    sku: Option<String>,
    #[serde(default)]
    product_id: Option<Id>,
    qty_ordered: Amount,
    price: Amount,
    #[serde(default)]
    discount_amount: Option<Amount>,
    #[serde(default)]
    discount_tax_compensation_amount: Option<Amount>,
    #[serde(default)]
    tax_amount: Option<Amount>,
}

#[derive(Deserialize)]
struct InvoiceEntity {
    #[serde(default)]
    entity_id: Option<Id>,
    order_id: Id,
    #[serde(default)]
    state: LooseText,
    #[serde(default)]
    created_at: OptStamp,
    #[serde(default)]
    updated_at: OptStamp,
}

#[derive(Deserialize)]
struct CreditMemoEntity {
    entity_id: Id,
    order_id: Id,
    #[serde(default)]
    state: LooseText,
    created_at: common::Stamp,
    #[serde(default, deserialize_with = "nullable_vec")]
    items: Vec<MemoItem>,
}

#[derive(Deserialize)]
struct MemoItem {
    order_item_id: Id,
    qty: Amount,
    #[serde(default)]
    price: Option<Amount>,
    #[serde(default)]
    row_total: Option<Amount>,
    #[serde(default)]
    discount_amount: Option<Amount>,
    #[serde(default)]
    discount_tax_compensation_amount: Option<Amount>,
}

#[derive(Deserialize)]
struct Envelope<T> {
    data: EnvelopeData<T>,
}

#[derive(Deserialize)]
struct EnvelopeData<T> {
    value: T,
}

#[derive(Deserialize)]
struct Hook<T> {
    data: T,
}

#[derive(Deserialize)]
struct HookOrder {
    order: OrderEntity,
}

#[derive(Deserialize)]
struct HookInvoice {
    invoice: InvoiceEntity,
}

#[derive(Deserialize)]
struct HookMemo {
    creditmemo: CreditMemoEntity,
}

/// How the entity is wrapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Envelope,
    Webhook,
    Plain,
}

/// Recognises the delivery form and its event code.
fn form_of(value: &serde_json::Value) -> Result<(Form, Option<String>), PayloadError> {
    let Some(object) = value.as_object() else {
        return Err(PayloadError::new("body", "expected a JSON object"));
    };
    let data = object.get("data").and_then(|d| d.as_object());
    if let Some(data) = data {
        if data.contains_key("value")
            && (object.contains_key("specversion") || object.contains_key("type"))
        {
            let code = match object.get("type") {
                Some(serde_json::Value::String(t)) => t.clone(),
                Some(_) => return Err(PayloadError::new("type", "expected an event code string")),
                None => return Err(PayloadError::new("type", "is required")),
            };
            return Ok((Form::Envelope, Some(code)));
        }
        if let Some(name) = object.get("eventName") {
            let Some(code) = name.as_str() else {
                return Err(PayloadError::new(
                    "eventName",
                    "expected an event name string",
                ));
            };
            return Ok((Form::Webhook, Some(code.to_string())));
        }
    }
    Ok((Form::Plain, None))
}

/// Interprets one Magento / Adobe Commerce delivery (`topic`: the event name from the route, used
/// only for plain entities).
pub fn interpret(shop: &ShopId, topic: &str, body: &[u8]) -> Result<Interpretation, PayloadError> {
    let value = common::parse_value(body)?;
    let (form, code) = form_of(&value)?;
    let code = code.unwrap_or_else(|| topic.to_string());
    let Some(kind) = entity_kind(&code) else {
        return Ok(Interpretation::Ignored {
            reason: format!("Adobe Commerce event {code:?} carries no order facts"),
        });
    };
    let prefix = match form {
        Form::Envelope => "data.value.".to_string(),
        Form::Webhook => format!("data.{}.", kind.webhook_key()),
        Form::Plain => String::new(),
    };
    match kind {
        EntityKind::Order => {
            let entity: OrderEntity = entity(form, body, |h: HookOrder| h.order)?;
            order_update(shop, &prefix, &entity)
        }
        EntityKind::Invoice => {
            let entity: InvoiceEntity = entity(form, body, |h: HookInvoice| h.invoice)?;
            invoice_update(shop, &prefix, &entity)
        }
        EntityKind::CreditMemo => {
            let entity: CreditMemoEntity = entity(form, body, |h: HookMemo| h.creditmemo)?;
            memo_update(shop, &prefix, &entity)
        }
    }
}

/// Parses the entity out of its wrapper; paths in errors are the full JSON paths.
fn entity<T: DeserializeOwned, H: DeserializeOwned>(
    form: Form,
    body: &[u8],
    unwrap: impl FnOnce(H) -> T,
) -> Result<T, PayloadError> {
    match form {
        Form::Envelope => common::parse::<Envelope<T>>(body).map(|e| e.data.value),
        Form::Webhook => common::parse::<Hook<H>>(body).map(|h| unwrap(h.data)),
        Form::Plain => common::parse::<T>(body),
    }
}

fn key(shop: &ShopId, field: &str, id: &Id) -> Result<OrderKey, PayloadError> {
    Ok(OrderKey {
        platform: Platform::Magento,
        shop: shop.clone(),
        order_id: common::order_id(field, id.as_str())?,
    })
}

fn positive(amount: Option<Amount>) -> bool {
    amount.is_some_and(|a| a.0 > Decimal::ZERO)
}

fn order_update(
    shop: &ShopId,
    prefix: &str,
    order: &OrderEntity,
) -> Result<Interpretation, PayloadError> {
    let key = key(shop, &format!("{prefix}entity_id"), &order.entity_id)?;
    let state = order
        .state
        .as_deref()
        .or(order.status.as_deref())
        .map(common::norm)
        .unwrap_or_default();
    let stamp = order.updated_at.0.or(order.created_at.0);

    let normalized = match &order.items {
        Some(items) => Some(normalize(prefix, order, items)?),
        None => None,
    };

    let mut facts = Vec::new();
    let invoiced = positive(order.total_invoiced)
        || positive(order.total_paid)
        || positive(order.base_total_invoiced)
        || positive(order.base_total_paid);
    let paid =
        matches!(state.as_str(), "complete" | "closed") || (state == "processing" && invoiced);
    let cancelled = state == "canceled" || state == "cancelled";
    if paid || cancelled {
        let at =
            stamp.ok_or_else(|| PayloadError::new(format!("{prefix}updated_at"), "is required"))?;
        if paid {
            facts.push(OrderFact::Paid { at });
        }
        if cancelled {
            facts.push(OrderFact::Cancelled { at });
        }
    }
    Ok(Interpretation::Order(OrderUpdate {
        key,
        order: normalized,
        facts,
    }))
}

fn normalize(
    prefix: &str,
    order: &OrderEntity,
    items: &[Item],
) -> Result<NormalizedOrder, PayloadError> {
    let placed_at: DateTime<Utc> = order
        .created_at
        .0
        .ok_or_else(|| PayloadError::new(format!("{prefix}created_at"), "is required"))?;
    let currency = order
        .order_currency_code
        .ok_or_else(|| PayloadError::new(format!("{prefix}order_currency_code"), "is required"))?;
    check_line_count(&format!("{prefix}items"), items.len())?;

    let counted = counted_rows(items);
    let mut lines = Vec::with_capacity(counted.len());
    for (i, item) in items.iter().enumerate() {
        if counted.contains(&i) {
            lines.push(line(&format!("{prefix}items[{i}]"), item)?);
        }
    }
    Ok(NormalizedOrder {
        placed_at,
        updated_at: order.updated_at.0.unwrap_or(placed_at),
        currency,
        prices_include_tax: false,
        lines,
        order_discount: Decimal::ZERO,
        shipping: order.shipping_amount.map(|a| a.0).unwrap_or_default(),
        tax: order.tax_amount.map(|a| a.0).unwrap_or_default(),
        declared_total: order.grand_total.map(|a| a.0).unwrap_or_default(),
        attribution: hints(order),
        test: false,
    })
}

/// The indexes of the rows that are order lines, parent/child rows collapsed (module notes).
fn counted_rows(items: &[Item]) -> BTreeSet<usize> {
    let index_of: BTreeMap<&str, usize> = items
        .iter()
        .enumerate()
        .map(|(i, item)| (item.item_id.as_str(), i))
        .collect();
    let parent_of = |item: &Item| -> Option<usize> {
        item.parent_item_id
            .as_ref()
            .map(|p| p.as_str())
            .filter(|p| !p.is_empty() && *p != "0")
            .and_then(|p| index_of.get(p).copied())
    };
    let mut children: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        if let Some(parent) = parent_of(item).filter(|p| *p != i) {
            children.entry(parent).or_default().push(i);
        }
    }
    let mut counted = BTreeSet::new();
    for (i, item) in items.iter().enumerate() {
        if parent_of(item).is_some_and(|p| p != i) {
            continue; // decided with its parent
        }
        let Some(kids) = children.get(&i) else {
            counted.insert(i);
            continue;
        };
        let configurable = item
            .product_type
            .as_deref()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("configurable"));
        let kids_priced = kids.iter().any(|k| items[*k].price.0 > Decimal::ZERO);
        if configurable || !kids_priced {
            counted.insert(i);
        } else {
            counted.extend(kids.iter().copied());
        }
    }
    counted
}

fn line(path: &str, item: &Item) -> Result<OrderLine, PayloadError> {
    let quantity = common::ordered_quantity(&format!("{path}.qty_ordered"), item.qty_ordered.0)?;
    let unit_price = common::unit_price(&format!("{path}.price"), item.price.0)?;
    let discount = item.discount_amount.map(|a| a.0.abs()).unwrap_or_default();
    let compensation = item
        .discount_tax_compensation_amount
        .map(|a| a.0.abs())
        .unwrap_or_default();
    let sku = item
        .sku
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .or_else(|| item.product_id.as_ref().map(|p| p.0.clone()))
        .unwrap_or_default();
    Ok(OrderLine {
        line_id: common::line_id(&format!("{path}.item_id"), item.item_id.as_str())?,
        platform_sku: sku,
        quantity,
        unit_price,
        discount: (discount - compensation).max(Decimal::ZERO),
        tax: item.tax_amount.map(|a| a.0).unwrap_or_default(),
    })
}

fn hints(order: &OrderEntity) -> AttributionHints {
    let mut discount_codes = Vec::new();
    push_hint(&mut discount_codes, order.coupon_code.text());
    let guest = matches!(order.customer_is_guest.text(), Some("1") | Some("true"));
    AttributionHints {
        explicit_ref: order
            .distributor_ref
            .text()
            .or_else(|| {
                order
                    .extension_attributes
                    .as_ref()
                    .and_then(|e| e.distributor_ref.text())
            })
            .map(str::to_string),
        discount_codes,
        landing_ref: None,
        customer_id: if guest {
            None
        } else {
            order
                .customer_id
                .as_ref()
                .map(|c| c.0.clone())
                .filter(|c| !c.is_empty() && c != "0")
        },
    }
}

fn invoice_update(
    shop: &ShopId,
    prefix: &str,
    invoice: &InvoiceEntity,
) -> Result<Interpretation, PayloadError> {
    let key = key(shop, &format!("{prefix}order_id"), &invoice.order_id)?;
    let state = invoice.state.text().unwrap_or("").to_ascii_lowercase();
    if state != "2" && state != "paid" {
        return Ok(Interpretation::Ignored {
            reason: format!(
                "invoice {} of order {} is not paid (state {:?})",
                invoice.entity_id.as_ref().map_or("?", |i| i.as_str()),
                invoice.order_id,
                state
            ),
        });
    }
    let at = invoice
        .updated_at
        .0
        .or(invoice.created_at.0)
        .ok_or_else(|| PayloadError::new(format!("{prefix}updated_at"), "is required"))?;
    Ok(Interpretation::Order(OrderUpdate {
        key,
        order: None,
        facts: vec![OrderFact::Paid { at }],
    }))
}

fn memo_update(
    shop: &ShopId,
    prefix: &str,
    memo: &CreditMemoEntity,
) -> Result<Interpretation, PayloadError> {
    let key = key(shop, &format!("{prefix}order_id"), &memo.order_id)?;
    let state = memo.state.text().unwrap_or("").to_ascii_lowercase();
    if matches!(state.as_str(), "1" | "3" | "open" | "canceled") {
        return Ok(Interpretation::Ignored {
            reason: format!(
                "credit memo {} of order {} is not refunded (state {state:?})",
                memo.entity_id, memo.order_id
            ),
        });
    }
    check_line_count(&format!("{prefix}items"), memo.items.len())?;
    let mut lines = Vec::new();
    for (i, item) in memo.items.iter().enumerate() {
        let path = format!("{prefix}items[{i}]");
        let Some(quantity) = common::refunded_quantity(&format!("{path}.qty"), item.qty.0)? else {
            continue;
        };
        let priced = item.price.is_none_or(|p| p.0 > Decimal::ZERO);
        if !priced {
            continue;
        }
        lines.push(RefundLine {
            line_id: common::line_id(
                &format!("{path}.order_item_id"),
                item.order_item_id.as_str(),
            )?,
            quantity,
            stated_net: memo_row_net(&path, item)?,
        });
    }
    Ok(Interpretation::Order(OrderUpdate {
        key,
        order: None,
        facts: vec![OrderFact::Refunded(Refund {
            refund_id: common::refund_id(&format!("{prefix}entity_id"), memo.entity_id.as_str())?,
            refunded_at: memo.created_at.0,
            scope: RefundScope::Lines(lines),
        })],
    }))
}

/// The net a credit memo row states it refunded (module notes): `row_total` less the row's
/// discount net of its hidden tax; `None` when the row has no `row_total`.
fn memo_row_net(path: &str, item: &MemoItem) -> Result<Option<Decimal>, PayloadError> {
    let Some(row_total) = item.row_total.map(|a| a.0) else {
        return Ok(None);
    };
    if row_total < Decimal::ZERO {
        return Err(PayloadError::new(
            format!("{path}.row_total"),
            format!("{row_total} is negative"),
        ));
    }
    let discount = item.discount_amount.map(|a| a.0.abs()).unwrap_or_default();
    let compensation = item
        .discount_tax_compensation_amount
        .map(|a| a.0.abs())
        .unwrap_or_default();
    let net = row_total - (discount - compensation).max(Decimal::ZERO);
    if net < Decimal::ZERO {
        return Err(PayloadError::new(
            format!("{path}.discount_amount"),
            format!("a discount of {discount} is above the row total {row_total}"),
        ));
    }
    Ok(Some(net))
}

/// The event's own id: the CloudEvents `id` of an I/O Events envelope (the same on every
/// redelivery). `None` for other forms.
pub(crate) fn envelope_event_id(body: &[u8]) -> Option<String> {
    let value = common::parse_value(body).ok()?;
    let (form, _) = form_of(&value).ok()?;
    if form != Form::Envelope {
        return None;
    }
    value
        .get("id")
        .or_else(|| value.get("event_id"))
        .and_then(|v| v.as_str())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The entity's identity and version, for deduplication when the delivery has no event id:
/// `entity_id:updated_at:state`. `None` when the body is not a recognisable entity.
pub(crate) fn state_fingerprint(body: &[u8]) -> Option<String> {
    let value = common::parse_value(body).ok()?;
    let (form, code) = form_of(&value).ok()?;
    let entity = match form {
        Form::Envelope => value.get("data")?.get("value")?,
        Form::Webhook => {
            let kind = entity_kind(code.as_deref()?)?;
            value.get("data")?.get(kind.webhook_key())?
        }
        Form::Plain => &value,
    };
    let text = |name: &str| -> String {
        match entity.get(name) {
            Some(serde_json::Value::String(s)) => s.trim().to_string(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => "-".to_string(),
        }
    };
    let id = text("entity_id");
    if id == "-" {
        return None;
    }
    Some(format!("{id}:{}:{}", text("updated_at"), text("state")))
}
