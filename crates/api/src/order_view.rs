//! GetOrder: an order's stream folded into what an operator or auditor reads: the facts, the
//! calculation's recorded inputs (plan, SKU mappings, hierarchy snapshot), every outcome with
//! its payouts as recorded and its lines and trace recomputed from the recorded inputs, the
//! recalculations, and what is parked.

use rust_decimal::Decimal;
use tonic::Status;
use upline_app::eventio::decode_recorded;
use upline_app::orders::MAX_ORDER_EVENTS;
use upline_app::records::ParkingEvent;
use upline_app::streams;
use upline_domain::engine::{CommissionOutcome, CommissionSummary, Decision};
use upline_domain::money::Currency;
use upline_domain::order::{
    self, OrderEvent, OrderKey, OrderState, RecalculationCause, RefundScope,
};
use upline_domain::plan::PlanBook;
use upline_store::{Direction, EventStore, StreamStart};

use crate::convert::{fmt_opt_time, fmt_time, money, pb_key, pb_sku_mapping, pb_status};
use crate::error::{app_error, not_found, store_error};
use crate::pb;

/// The order stored in `stream`; `key` when the request named it (else found in the stream).
/// `plans` are the published plans, where the calculation's is looked up by version.
pub(crate) async fn order_view(
    store: &dyn EventStore,
    plans: &PlanBook,
    stream: &str,
    key: Option<OrderKey>,
) -> Result<pb::OrderView, Status> {
    let recorded = store
        .read_stream(
            stream,
            Direction::Forwards,
            StreamStart::Start,
            MAX_ORDER_EVENTS,
        )
        .await
        .map_err(store_error)?;
    let (parked, parked_key) = parked_summary(store, stream).await?;
    if recorded.is_empty() && parked.is_none() {
        return Err(not_found("order", format!("{stream} is not known")));
    }

    let mut state = OrderState::default();
    let mut view = pb::OrderView {
        stream: stream.to_string(),
        revision: recorded.last().map(|r| r.revision),
        parked,
        ..Default::default()
    };
    for r in &recorded {
        let event: OrderEvent = decode_recorded(r).map_err(app_error)?;
        order::evolve(&mut state, &event);
        view.events.push(pb::OrderEventSummary {
            revision: r.revision,
            position: r.position,
            event_type: r.event_type.clone(),
            recorded_at: fmt_time(r.recorded_at),
        });
        match &event {
            OrderEvent::CommissionCalculated { outcome, .. } => {
                let outcome = pb_outcome(outcome, explained(&state, plans, r.position)?.as_ref());
                view.calculated = Some(outcome.clone());
                view.current = Some(outcome.clone());
                view.commission_changes.push(pb::CommissionChange {
                    revision: r.revision,
                    recorded_at: fmt_time(r.recorded_at),
                    event_type: r.event_type.clone(),
                    outcome: Some(outcome),
                    ..Default::default()
                });
            }
            OrderEvent::CommissionRecalculated {
                cause,
                currency,
                outcome,
                adjustments,
                ..
            } => {
                let explained = explained(&state, plans, r.position)?;
                let outcome = outcome.as_ref().map(|o| pb_outcome(o, explained.as_ref()));
                view.current = outcome.clone();
                let (cause, refund_id) = match cause {
                    RecalculationCause::Refund { refund_id } => ("refund", refund_id.to_string()),
                    RecalculationCause::Cancellation => ("cancellation", String::new()),
                    RecalculationCause::OrderDetails => ("order_details", String::new()),
                    RecalculationCause::Payment => ("payment", String::new()),
                };
                view.commission_changes.push(pb::CommissionChange {
                    revision: r.revision,
                    recorded_at: fmt_time(r.recorded_at),
                    event_type: r.event_type.clone(),
                    cause: cause.to_string(),
                    refund_id,
                    outcome,
                    adjustments: adjustments
                        .iter()
                        .map(|a| pb::CommissionAdjustment {
                            beneficiary: a.beneficiary.to_string(),
                            held: Some(money(a.held, *currency)),
                            now: Some(money(a.now, *currency)),
                            change: Some(money(a.change, *currency)),
                        })
                        .collect(),
                });
            }
            _ => {}
        }
    }

    view.key = key
        .or_else(|| state.details.as_ref().map(|d| d.key.clone()))
        .or(parked_key)
        .as_ref()
        .map(pb_key);
    view.status = status(&state, recorded.is_empty()) as i32;
    view.paid_at = fmt_opt_time(state.paid_at);
    view.cancelled_at = fmt_opt_time(state.cancelled_at);
    let currency = state
        .details
        .as_ref()
        .map(|d| d.currency)
        .or(state.calculation.as_ref().map(|c| c.currency));
    view.refunds = state
        .refunds
        .values()
        .map(|r| pb::RefundView {
            refund_id: r.refund_id.to_string(),
            refunded_at: fmt_time(r.refunded_at),
            lines: match &r.scope {
                RefundScope::Lines(lines) => lines
                    .iter()
                    .map(|l| pb::RefundLine {
                        line_id: l.line_id.to_string(),
                        quantity: l.quantity.to_string(),
                    })
                    .collect(),
                RefundScope::NetAmount(_) => Vec::new(),
            },
            net_amount: match (&r.scope, currency) {
                (RefundScope::NetAmount(amount), Some(c)) => Some(money(*amount, c)),
                _ => None,
            },
        })
        .collect();
    if let Some(d) = &state.details {
        let c = d.currency;
        view.details = Some(pb::OrderDetails {
            placed_at: fmt_time(d.placed_at),
            updated_at: fmt_time(d.updated_at),
            currency: c.code().to_string(),
            distributor_id: d
                .distributor
                .as_ref()
                .map(|x| x.to_string())
                .unwrap_or_default(),
            prices_include_tax: d.prices_include_tax,
            lines: d
                .lines
                .iter()
                .map(|l| {
                    let net = state.net_lines.iter().find(|n| n.line_id == l.line_id);
                    let m = |f: fn(&upline_domain::net::NetLine) -> Decimal| {
                        net.map(|n| money(f(n), c))
                    };
                    pb::OrderLineView {
                        line_id: l.line_id.to_string(),
                        platform_sku: l.platform_sku.clone(),
                        quantity: l.quantity.to_string(),
                        unit_price: Some(money(l.unit_price, c)),
                        subtotal: m(|n| n.subtotal),
                        line_discount: m(|n| n.line_discount),
                        order_discount_share: m(|n| n.order_discount_share),
                        included_tax: m(|n| n.included_tax),
                        tax: Some(money(l.tax, c)),
                        net: m(|n| n.net),
                    }
                })
                .collect(),
            order_discount: Some(money(d.order_discount, c)),
            shipping: Some(money(d.shipping, c)),
            tax: Some(money(d.tax, c)),
            declared_total: Some(money(d.declared_total, c)),
        });
    }
    if let Some(inputs) = &state.calculation {
        let c = inputs.currency;
        view.calculation = Some(pb::CalculationInputs {
            at: fmt_time(inputs.at),
            currency: c.code().to_string(),
            plan_version: inputs.plan_version.clone(),
            plan_hash: inputs.plan_hash.clone(),
            snapshot: Some(pb::HierarchySnapshot {
                schema_version: u32::from(inputs.snapshot.schema_version),
                at: fmt_time(inputs.snapshot.at),
                distributor_id: inputs.snapshot.distributor_id.to_string(),
                members: inputs
                    .snapshot
                    .members
                    .iter()
                    .map(|m| pb::SnapshotMember {
                        distributor_id: m.distributor_id.to_string(),
                        depth: m.depth,
                        status: pb_status(m.status) as i32,
                        rank: m.rank.to_string(),
                    })
                    .collect(),
                reached_top: inputs.snapshot.reached_top,
                content_hash: inputs.snapshot.content_hash.clone(),
            }),
            sku_mappings: inputs.sku_mappings.iter().map(pb_sku_mapping).collect(),
            lines: inputs
                .lines
                .iter()
                .map(|l| pb::CommissionableLine {
                    line_id: l.line_id.to_string(),
                    sku_id: l.sku_id.to_string(),
                    commission_class: l.commission_class.to_string(),
                    quantity: l.quantity.to_string(),
                    net: Some(money(l.net, c)),
                    pv: l.pv.to_string(),
                    base: Some(money(l.base, c)),
                })
                .collect(),
        });
        view.holdings = state
            .holdings
            .iter()
            .map(|(beneficiary, amount)| pb::Holding {
                beneficiary: beneficiary.to_string(),
                amount: Some(money(*amount, c)),
            })
            .collect();
    }
    Ok(view)
}

fn status(state: &OrderState, nothing_recorded: bool) -> pb::OrderStatus {
    if state.details.is_none() {
        return if nothing_recorded {
            pb::OrderStatus::Parked
        } else {
            pb::OrderStatus::AwaitingDetails
        };
    }
    if state.cancelled_at.is_some() {
        return pb::OrderStatus::Cancelled;
    }
    if state.paid_at.is_none() {
        return pb::OrderStatus::Placed;
    }
    if state.refunds.is_empty() {
        return pb::OrderStatus::Paid;
    }
    // What is left of the net after quantity refunds, then amount refunds.
    let mut kept = Decimal::ZERO;
    for line in &state.net_lines {
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
        let left = (line.quantity - refunded).max(Decimal::ZERO);
        if !line.quantity.is_zero() {
            kept += line.net * left / line.quantity;
        }
    }
    let by_amount: Decimal = state
        .refunds
        .values()
        .map(|r| match &r.scope {
            RefundScope::NetAmount(a) => *a,
            RefundScope::Lines(_) => Decimal::ZERO,
        })
        .sum();
    if kept - by_amount <= Decimal::ZERO {
        pb::OrderStatus::Refunded
    } else {
        pb::OrderStatus::PartiallyRefunded
    }
}

/// The lines and trace behind the state's holdings after the commission event at `position`,
/// recomputed from the recorded inputs (the events record only the payouts).
fn explained(
    state: &OrderState,
    plans: &PlanBook,
    position: u64,
) -> Result<Option<CommissionOutcome>, Status> {
    order::explained_outcome(state, plans).map_err(|e| {
        Status::internal(format!(
            "the calculation recorded at position {position} no longer recomputes: {e}"
        ))
    })
}

/// A recorded outcome, with the lines and trace of its recomputation (`explained`).
pub(crate) fn pb_outcome(
    o: &CommissionSummary,
    explained: Option<&CommissionOutcome>,
) -> pb::CommissionOutcome {
    let c: Currency = o.currency;
    let (lines, trace) = explained.map_or((&[][..], &[][..]), |e| (&e.lines[..], &e.trace[..]));
    pb::CommissionOutcome {
        plan_version: o.plan_version.clone(),
        commissionable_base: Some(money(o.commissionable_base, c)),
        cap: Some(money(o.cap, c)),
        total: Some(money(o.total, c)),
        lines: lines
            .iter()
            .map(|l| pb::CommissionLine {
                beneficiary: l.beneficiary.to_string(),
                level: l.level,
                line_id: l.line_id.to_string(),
                commission_class: l.commission_class.to_string(),
                base: Some(money(l.base, c)),
                rate: l.rate.to_string(),
                amount: Some(money(l.amount, c)),
            })
            .collect(),
        payouts: o
            .payouts
            .iter()
            .map(|p| pb::Payout {
                beneficiary: p.beneficiary.to_string(),
                level: p.level,
                unrounded: Some(money(p.unrounded, c)),
                amount: Some(money(p.amount, c)),
            })
            .collect(),
        trace: trace
            .iter()
            .map(|t| {
                let mut step = pb::TraceStep {
                    distributor_id: t.distributor_id.to_string(),
                    depth: t.depth,
                    status: pb_status(t.status) as i32,
                    rank: t.rank.to_string(),
                    level: t.level,
                    ..Default::default()
                };
                step.decision = match &t.decision {
                    Decision::Paid => "paid",
                    Decision::SkippedByCompression => "skipped_by_compression",
                    Decision::StatusNotQualifying => "status_not_qualifying",
                    Decision::RankTooLow { paid_levels } => {
                        step.paid_levels = *paid_levels;
                        "rank_too_low"
                    }
                    Decision::RankNotOnLadder => "rank_not_on_ladder",
                    Decision::NoRateAtLevel => "no_rate_at_level",
                    Decision::CutByCap { from, to } => {
                        step.cut_from = Some(money(*from, c));
                        step.cut_to = Some(money(*to, c));
                        "cut_by_cap"
                    }
                }
                .to_string();
                step
            })
            .collect(),
    }
}

/// What is parked for the order since it was last resolved (as `App::list_parked` counts it),
/// and the order's key as the first parked update gave it.
pub(crate) async fn parked_summary(
    store: &dyn EventStore,
    order_stream: &str,
) -> Result<(Option<pb::ParkedSummary>, Option<OrderKey>), Status> {
    let recorded = store
        .read_stream(
            &streams::parked(order_stream),
            Direction::Forwards,
            StreamStart::Start,
            MAX_ORDER_EVENTS,
        )
        .await
        .map_err(store_error)?;
    let mut key = None;
    let (mut updates, mut retries) = (0u32, 0u32);
    let mut latest = None;
    for r in &recorded {
        match decode_recorded::<ParkingEvent>(r).map_err(app_error)? {
            ParkingEvent::OrderParked {
                update,
                reason,
                parked_at,
                ..
            } => {
                key.get_or_insert(update.key.clone());
                updates += 1;
                latest = Some((reason, parked_at));
            }
            ParkingEvent::ParkedRetryFailed { reason, retried_at } => {
                retries += 1;
                latest = Some((reason, retried_at));
            }
            ParkingEvent::ParkedOrderResolved { .. } => {
                updates = 0;
                retries = 0;
                latest = None;
            }
        }
    }
    let summary = match (updates, latest) {
        (0, _) | (_, None) => None,
        (updates, Some((reason, at))) => Some(pb::ParkedSummary {
            updates,
            reason,
            parked_at: fmt_time(at),
            retries,
        }),
    };
    Ok((summary, key))
}
