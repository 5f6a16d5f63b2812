//! `upline.v1.CommandService`: each request is checked at the edge (INVALID_ARGUMENT naming the
//! field), then carried out by the application layer, the same code the webhooks and the CLI use.

use std::sync::Arc;

use rust_decimal::Decimal;
use tonic::{Request, Response, Status};
use upline_app::streams;
use upline_app::{Provenance, UpdateOutcome};
use upline_domain::catalog::SkuMapping;
use upline_domain::ids::{DistributorId, LineId, ReferralCode, ShopId};
use upline_domain::net::{self, NetAmountError, OrderLine};
use upline_domain::network::DistributorCommand;
use upline_domain::order::{
    self, OrderCommand, OrderDetails, OrderKey, OrderState, Refund, RefundLine, RefundScope,
};
use upline_domain::plan::CommissionPlan;
use upline_platforms::model::{AttributionHints, NormalizedOrder, OrderFact, OrderUpdate};

use crate::convert::{
    currency, decimal, decimal_or_zero, external_id, id, opt_decimal, opt_id, opt_time, order_key,
    order_stream, platform, status, time,
};
use crate::error::{app_error, invalid, not_found, order_request_error, precondition};
use crate::pb;
use crate::pb::command_service_server::CommandService;
use crate::records::CommandResult;
use crate::Inner;

/// The largest plan document accepted (bytes). Real plans are a few kilobytes.
pub const MAX_PLAN_TOML_BYTES: usize = 256 * 1024;
/// What `handle_update` records as the source of a parked update.
const SOURCE: &str = "grpc";

pub(crate) struct Commands {
    pub(crate) inner: Arc<Inner>,
}

type Answer = Result<Response<pb::CommandResponse>, Status>;

#[tonic::async_trait]
impl CommandService for Commands {
    async fn register_distributor(
        &self,
        request: Request<pb::RegisterDistributorRequest>,
    ) -> Answer {
        let inner = &self.inner;
        inner
            .command("RegisterDistributor", request, |r, provenance| async move {
                let command = DistributorCommand::RegisterDistributor {
                    distributor_id: id("distributor_id", &r.distributor_id)?,
                    sponsor: opt_id("sponsor_id", &r.sponsor_id)?,
                    referral_codes: r
                        .referral_codes
                        .iter()
                        .enumerate()
                        .map(|(i, c)| id::<ReferralCode>(&format!("referral_codes[{i}]"), c))
                        .collect::<Result<_, _>>()?,
                    country: country(&r.country)?,
                    status: status("status", r.status)?,
                    rank: id("rank", &r.rank)?,
                    joined_at: time("joined_at", &r.joined_at)?,
                };
                inner.network(command, &provenance).await
            })
            .await
    }

    async fn change_sponsor(&self, request: Request<pb::ChangeSponsorRequest>) -> Answer {
        let inner = &self.inner;
        inner
            .command("ChangeSponsor", request, |r, provenance| async move {
                let command = DistributorCommand::ChangeSponsor {
                    distributor_id: id("distributor_id", &r.distributor_id)?,
                    sponsor: id("sponsor_id", &r.sponsor_id)?,
                    effective_at: time("effective_at", &r.effective_at)?,
                };
                inner.network(command, &provenance).await
            })
            .await
    }

    async fn change_status(&self, request: Request<pb::ChangeStatusRequest>) -> Answer {
        let inner = &self.inner;
        inner
            .command("ChangeStatus", request, |r, provenance| async move {
                let command = DistributorCommand::ChangeStatus {
                    distributor_id: id("distributor_id", &r.distributor_id)?,
                    status: status("status", r.status)?,
                    effective_at: time("effective_at", &r.effective_at)?,
                };
                inner.network(command, &provenance).await
            })
            .await
    }

    async fn change_rank(&self, request: Request<pb::ChangeRankRequest>) -> Answer {
        let inner = &self.inner;
        inner
            .command("ChangeRank", request, |r, provenance| async move {
                let command = DistributorCommand::ChangeRank {
                    distributor_id: id("distributor_id", &r.distributor_id)?,
                    rank: id("rank", &r.rank)?,
                    effective_at: time("effective_at", &r.effective_at)?,
                };
                inner.network(command, &provenance).await
            })
            .await
    }

    async fn enroll_customer(&self, request: Request<pb::EnrollCustomerRequest>) -> Answer {
        let inner = &self.inner;
        inner
            .command("EnrollCustomer", request, |r, provenance| async move {
                let platform = platform("platform", r.platform)?;
                let shop: ShopId = id("shop", &r.shop)?;
                let customer = external_id("customer_id", &r.customer_id)?;
                let distributor: DistributorId = id("distributor_id", &r.distributor_id)?;
                let at = time("enrolled_at", &r.enrolled_at)?;
                let stream = streams::customer(platform, &shop, &customer);
                let enrolled = inner
                    .app
                    .company()
                    .enroll_customer(platform, &shop, &customer, &distributor, at, &provenance)
                    .await
                    .map_err(app_error)?;
                Ok(if enrolled {
                    CommandResult::Recorded { stream, events: 1 }
                } else {
                    CommandResult::Unchanged { stream }
                })
            })
            .await
    }

    async fn map_sku(&self, request: Request<pb::MapSkuRequest>) -> Answer {
        let inner = &self.inner;
        inner
            .command("MapSku", request, |r, provenance| async move {
                let Some(m) = r.mapping else {
                    return Err(invalid("mapping", "is required"));
                };
                let mapping = SkuMapping {
                    platform: platform("mapping.platform", m.platform)?,
                    platform_sku: m.platform_sku.clone(),
                    effective_from: time("mapping.effective_from", &m.effective_from)?,
                    sku_id: id("mapping.sku_id", &m.sku_id)?,
                    name: m.name.clone(),
                    category: m.category.clone(),
                    commission_class: id("mapping.commission_class", &m.commission_class)?,
                    pv_per_unit: opt_decimal("mapping.pv_per_unit", &m.pv_per_unit)?,
                    cv_per_unit: opt_decimal("mapping.cv_per_unit", &m.cv_per_unit)?,
                };
                let stream = streams::sku(mapping.platform, &mapping.platform_sku);
                let events = inner
                    .app
                    .company()
                    .map_sku(mapping, &provenance)
                    .await
                    .map_err(app_error)?;
                Ok(recorded_or_unchanged(stream, events.len()))
            })
            .await
    }

    async fn publish_plan(&self, request: Request<pb::PublishPlanRequest>) -> Answer {
        let inner = &self.inner;
        inner
            .command("PublishPlan", request, |r, provenance| async move {
                if r.plan_toml.trim().is_empty() {
                    return Err(invalid(
                        "plan_toml",
                        "is required (the plan's TOML document)",
                    ));
                }
                if r.plan_toml.len() > MAX_PLAN_TOML_BYTES {
                    return Err(invalid(
                        "plan_toml",
                        format!(
                            "is {} bytes; at most {MAX_PLAN_TOML_BYTES}",
                            r.plan_toml.len()
                        ),
                    ));
                }
                let plan = CommissionPlan::from_toml(&r.plan_toml).map_err(|errors| {
                    invalid(
                        "plan_toml",
                        errors
                            .errors
                            .iter()
                            .map(|e| e.to_string())
                            .collect::<Vec<_>>()
                            .join("; "),
                    )
                })?;
                let stream = streams::plan(&plan.version);
                let published = inner
                    .app
                    .company()
                    .publish_plan(plan, &provenance)
                    .await
                    .map_err(app_error)?;
                Ok(recorded_or_unchanged(stream, usize::from(published)))
            })
            .await
    }

    async fn submit_order(&self, request: Request<pb::SubmitOrderRequest>) -> Answer {
        let inner = &self.inner;
        inner
            .command("SubmitOrder", request, |r, provenance| async move {
                let Some(order) = &r.order else {
                    return Err(invalid("order", "is required"));
                };
                let (key, normalized) = normalized_order(order)?;
                let mut facts = Vec::new();
                if let Some(at) = opt_time("paid_at", &r.paid_at)? {
                    facts.push(OrderFact::Paid { at });
                }
                let update = OrderUpdate {
                    key,
                    order: Some(normalized),
                    facts,
                };
                let (state, _) = inner
                    .app
                    .load_order(&streams::order(&update.key))
                    .await
                    .map_err(app_error)?;
                inner.check_update(&update, &state).await?;
                inner.apply(&update, &provenance).await
            })
            .await
    }

    async fn refund_order(&self, request: Request<pb::RefundOrderRequest>) -> Answer {
        let inner = &self.inner;
        inner
            .command("RefundOrder", request, |r, provenance| async move {
                let key = order_key("order", r.order.as_ref())?;
                let refund_id = id("refund_id", &r.refund_id)?;
                let refunded_at = time("refunded_at", &r.refunded_at)?;
                let given = usize::from(!r.lines.is_empty())
                    + usize::from(!r.net_amount.trim().is_empty())
                    + usize::from(r.full);
                if given != 1 {
                    return Err(invalid(
                        "lines",
                        "give exactly one of lines, net_amount and full",
                    ));
                }
                let state = inner.known_order(&key).await?;
                let refund = if let (true, Some(known)) = (r.full, state.refunds.get(&refund_id)) {
                    // A full refund already recorded under this id: the same refund again.
                    known.clone()
                } else {
                    let scope = if r.full {
                        RefundScope::Lines(remaining_lines(&state)?)
                    } else if !r.lines.is_empty() {
                        let mut lines = Vec::with_capacity(r.lines.len());
                        for (i, line) in r.lines.iter().enumerate() {
                            let quantity =
                                decimal(&format!("lines[{i}].quantity"), &line.quantity)?;
                            if quantity <= Decimal::ZERO {
                                return Err(invalid(
                                    &format!("lines[{i}].quantity"),
                                    "must be above zero",
                                ));
                            }
                            lines.push(RefundLine {
                                line_id: id(&format!("lines[{i}].line_id"), &line.line_id)?,
                                quantity,
                                stated_net: None,
                            });
                        }
                        RefundScope::Lines(lines)
                    } else {
                        let amount = decimal("net_amount", &r.net_amount)?;
                        if amount <= Decimal::ZERO {
                            return Err(invalid("net_amount", "must be above zero"));
                        }
                        RefundScope::NetAmount(amount)
                    };
                    Refund {
                        refund_id,
                        refunded_at,
                        scope,
                    }
                };
                let update = OrderUpdate {
                    key,
                    order: None,
                    facts: vec![OrderFact::Refunded(refund)],
                };
                inner.check_update(&update, &state).await?;
                inner.apply(&update, &provenance).await
            })
            .await
    }

    async fn cancel_order(&self, request: Request<pb::CancelOrderRequest>) -> Answer {
        let inner = &self.inner;
        inner
            .command("CancelOrder", request, |r, provenance| async move {
                let key = order_key("order", r.order.as_ref())?;
                let at = time("cancelled_at", &r.cancelled_at)?;
                let state = inner.known_order(&key).await?;
                let update = OrderUpdate {
                    key,
                    order: None,
                    facts: vec![OrderFact::Cancelled { at }],
                };
                inner.check_update(&update, &state).await?;
                inner.apply(&update, &provenance).await
            })
            .await
    }

    async fn retry_parked(&self, request: Request<pb::RetryParkedRequest>) -> Answer {
        let inner = &self.inner;
        inner
            .command("RetryParked", request, |r, provenance| async move {
                let stream = match (r.order_stream.trim().is_empty(), &r.order) {
                    (false, None) => order_stream("order_stream", &r.order_stream)?,
                    (true, Some(key)) => streams::order(&order_key("order", Some(key))?),
                    _ => {
                        return Err(invalid(
                            "order_stream",
                            "give exactly one of order_stream and order",
                        ))
                    }
                };
                match inner
                    .app
                    .retry_parked(&stream, &provenance)
                    .await
                    .map_err(app_error)?
                {
                    UpdateOutcome::Recorded { stream, events } => Ok(CommandResult::Recorded {
                        stream,
                        events: events as u32,
                    }),
                    UpdateOutcome::Unchanged { stream } => Ok(CommandResult::Unchanged { stream }),
                    UpdateOutcome::Parked { stream, reason } => {
                        Ok(CommandResult::Parked { stream, reason })
                    }
                }
            })
            .await
    }
}

fn recorded_or_unchanged(stream: String, events: usize) -> CommandResult {
    if events == 0 {
        CommandResult::Unchanged { stream }
    } else {
        CommandResult::Recorded {
            stream,
            events: events as u32,
        }
    }
}

/// Two ASCII letters; the network upper-cases them.
fn country(value: &str) -> Result<String, Status> {
    let v = value.trim();
    if v.len() != 2 || !v.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(invalid(
            "country",
            format!("{value:?} is not an ISO 3166-1 alpha-2 code (two letters, e.g. \"US\")"),
        ));
    }
    Ok(v.to_string())
}

impl Inner {
    async fn network(
        &self,
        command: DistributorCommand,
        provenance: &Provenance,
    ) -> Result<CommandResult, Status> {
        let distributor = match &command {
            DistributorCommand::RegisterDistributor { distributor_id, .. }
            | DistributorCommand::ChangeSponsor { distributor_id, .. }
            | DistributorCommand::ChangeStatus { distributor_id, .. }
            | DistributorCommand::ChangeRank { distributor_id, .. } => distributor_id,
        };
        let stream = streams::distributor(distributor);
        let events = self
            .app
            .company()
            .execute_network(&command, provenance)
            .await
            .map_err(app_error)?;
        Ok(recorded_or_unchanged(stream, events.len()))
    }

    /// The order's state, or NOT_FOUND when nothing at all is known of it (neither recorded nor
    /// parked): a refund or cancellation of an order upline never saw is more likely a mistyped
    /// key than a platform's early delivery (those come through the webhooks).
    async fn known_order(&self, key: &OrderKey) -> Result<OrderState, Status> {
        let stream = streams::order(key);
        let (state, revision) = self.app.load_order(&stream).await.map_err(app_error)?;
        if revision.is_none()
            && self
                .store
                .stream_revision(&streams::parked(&stream))
                .await
                .map_err(crate::error::store_error)?
                .is_none()
        {
            return Err(not_found("order", format!("{stream} is not known")));
        }
        Ok(state)
    }

    /// Decides the update against the order as stored, without recording anything, to refuse
    /// what is wrong with the request itself (a refund of more than was ordered, a changed copy
    /// of a paid order) instead of parking it. What only the company can fix (an unmapped SKU,
    /// no plan, an unknown distributor) is left to `handle_update`, which parks it.
    async fn check_update(&self, update: &OrderUpdate, state: &OrderState) -> Result<(), Status> {
        let company = self.app.company().read().await;
        let mut commands = Vec::new();
        if let Some(order) = &update.order {
            // Attribution is sticky: a known order keeps its distributor. A new one is checked
            // unattributed, which decides its facts but no commission (that is checked by the
            // real decision, which parks what the company cannot calculate yet).
            commands.push(OrderCommand::RecordOrder(OrderDetails {
                key: update.key.clone(),
                placed_at: order.placed_at,
                updated_at: order.updated_at,
                currency: order.currency,
                distributor: state.details.as_ref().and_then(|d| d.distributor.clone()),
                prices_include_tax: order.prices_include_tax,
                lines: order.lines.clone(),
                order_discount: order.order_discount,
                shipping: order.shipping,
                tax: order.tax,
                declared_total: order.declared_total,
                test: false,
            }));
        }
        for fact in &update.facts {
            commands.push(match fact {
                OrderFact::Paid { at } => OrderCommand::RecordPayment { paid_at: *at },
                OrderFact::Cancelled { at } => {
                    OrderCommand::RecordCancellation { cancelled_at: *at }
                }
                OrderFact::Refunded(refund) => OrderCommand::RecordRefund(refund.clone()),
            });
        }
        let mut scratch = state.clone();
        for command in &commands {
            match order::decide(&scratch, &update.key, command, &company.company) {
                Ok(events) => events.iter().for_each(|e| order::evolve(&mut scratch, e)),
                Err(e) => match order_request_error(&e) {
                    Some(status) => return Err(status),
                    // Parked by the real decision, with its reason.
                    None => return Ok(()),
                },
            }
        }
        Ok(())
    }

    async fn apply(
        &self,
        update: &OrderUpdate,
        provenance: &Provenance,
    ) -> Result<CommandResult, Status> {
        let outcome = self
            .app
            .handle_update(update, provenance, SOURCE)
            .await
            .map_err(app_error)?;
        Ok(match outcome {
            UpdateOutcome::Recorded { stream, events } => CommandResult::Recorded {
                stream,
                events: events as u32,
            },
            UpdateOutcome::Unchanged { stream } => CommandResult::Unchanged { stream },
            UpdateOutcome::Parked { stream, reason } => CommandResult::Parked { stream, reason },
        })
    }
}

/// Each line's quantity not refunded yet (quantity refunds only), for a full refund.
fn remaining_lines(state: &OrderState) -> Result<Vec<RefundLine>, Status> {
    let Some(details) = &state.details else {
        return Err(precondition(
            "full",
            "the order's lines are not known yet; refund by net_amount instead",
        ));
    };
    let mut lines = Vec::new();
    for line in &details.lines {
        let refunded: Decimal = state
            .refunds
            .values()
            .map(|r| match &r.scope {
                RefundScope::Lines(ls) => ls
                    .iter()
                    .filter(|l| l.line_id == line.line_id)
                    .map(|l| l.quantity)
                    .sum(),
                RefundScope::NetAmount(_) => Decimal::ZERO,
            })
            .sum();
        let left = line.quantity - refunded;
        if left > Decimal::ZERO {
            lines.push(RefundLine {
                line_id: line.line_id.clone(),
                quantity: left,
                stated_net: None,
            });
        }
    }
    if lines.is_empty() {
        return Err(precondition("full", "every line is already refunded"));
    }
    Ok(lines)
}

/// The request's order as the platforms' transforms produce it, checked the way the order
/// aggregate will check it (so a malformed order is refused here, naming the line, instead of
/// being parked).
fn normalized_order(order: &pb::Order) -> Result<(OrderKey, NormalizedOrder), Status> {
    let key = order_key("order.key", order.key.as_ref())?;
    let placed_at = time("order.placed_at", &order.placed_at)?;
    let updated_at = opt_time("order.updated_at", &order.updated_at)?.unwrap_or(placed_at);
    let currency = currency("order.currency", &order.currency)?;
    if order.lines.is_empty() {
        return Err(invalid("order.lines", "an order needs at least one line"));
    }
    if order.lines.len() > net::MAX_LINES {
        return Err(invalid(
            "order.lines",
            format!(
                "at most {} lines, got {}",
                net::MAX_LINES,
                order.lines.len()
            ),
        ));
    }
    let mut lines = Vec::with_capacity(order.lines.len());
    for (i, line) in order.lines.iter().enumerate() {
        let field = |name: &str| format!("order.lines[{i}].{name}");
        let platform_sku = line.platform_sku.trim();
        if platform_sku.is_empty() {
            return Err(invalid(&field("platform_sku"), "is empty"));
        }
        if platform_sku.chars().count() > upline_domain::catalog::MAX_PLATFORM_SKU_LEN {
            return Err(invalid(
                &field("platform_sku"),
                format!(
                    "at most {} characters",
                    upline_domain::catalog::MAX_PLATFORM_SKU_LEN
                ),
            ));
        }
        lines.push(OrderLine {
            line_id: id::<LineId>(&field("line_id"), &line.line_id)?,
            platform_sku: platform_sku.to_string(),
            quantity: decimal(&field("quantity"), &line.quantity)?,
            unit_price: decimal(&field("unit_price"), &line.unit_price)?,
            discount: decimal_or_zero(&field("discount"), &line.discount)?,
            tax: decimal_or_zero(&field("tax"), &line.tax)?,
        });
    }
    let order_discount = decimal_or_zero("order.order_discount", &order.order_discount)?;
    let shipping = decimal_or_zero("order.shipping", &order.shipping)?;
    let tax = decimal_or_zero("order.tax", &order.tax)?;
    for (field, value) in [("order.shipping", shipping), ("order.tax", tax)] {
        if value < Decimal::ZERO {
            return Err(invalid(field, "is negative"));
        }
    }
    net::net_lines(currency, &lines, order_discount, order.prices_include_tax)
        .map_err(|e| net_error(&lines, &e))?;
    let declared_total = match opt_decimal("order.declared_total", &order.declared_total)? {
        Some(total) => total,
        None => {
            let goods: Decimal = lines
                .iter()
                .map(|l| l.quantity * l.unit_price - l.discount)
                .sum();
            let added_tax = if order.prices_include_tax {
                Decimal::ZERO
            } else {
                tax
            };
            goods - order_discount + shipping + added_tax
        }
    };
    let hints = order.attribution.clone().unwrap_or_default();
    let text = |v: &str| Some(v.trim().to_string()).filter(|v| !v.is_empty());
    let attribution = AttributionHints {
        explicit_ref: text(&hints.distributor_ref),
        discount_codes: hints
            .discount_codes
            .iter()
            .filter_map(|c| text(c))
            .collect(),
        landing_ref: text(&hints.landing_ref),
        customer_id: match text(&hints.customer_id) {
            Some(c) => Some(external_id("order.attribution.customer_id", &c)?),
            None => None,
        },
    };
    Ok((
        key,
        NormalizedOrder {
            placed_at,
            updated_at,
            currency,
            prices_include_tax: order.prices_include_tax,
            lines,
            order_discount,
            shipping,
            tax,
            declared_total,
            attribution,
            test: false,
        },
    ))
}

/// A net-amount error, named by the request field of the line at fault.
fn net_error(lines: &[OrderLine], e: &NetAmountError) -> Status {
    use NetAmountError as N;
    let line_field = |line: &LineId, name: &str| {
        let i = lines.iter().position(|l| &l.line_id == line).unwrap_or(0);
        format!("order.lines[{i}].{name}")
    };
    let field = match e {
        N::NoLines | N::TooManyLines { .. } | N::Overflow => "order.lines".to_string(),
        N::DuplicateLine { line } => line_field(line, "line_id"),
        N::NonPositiveQuantity { line, .. } | N::LineOverflow { line } => {
            line_field(line, "quantity")
        }
        N::NegativeUnitPrice { line, .. } | N::UnitPriceTooPrecise { line, .. } => {
            line_field(line, "unit_price")
        }
        N::NegativeAmount { line, field, .. } | N::NotWholeMinorUnits { line, field, .. } => {
            line_field(line, field)
        }
        N::DeductionsExceedSubtotal { line, .. } => line_field(line, "discount"),
        N::NegativeOrderDiscount { .. }
        | N::OrderDiscountNotWholeMinorUnits { .. }
        | N::NothingToDiscount { .. }
        | N::OrderDiscountExceedsSubtotal { .. } => "order.order_discount".to_string(),
    };
    invalid(&field, e)
}
