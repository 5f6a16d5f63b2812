//! Properties of the order aggregate: refunds net to zero, arrival order does not matter.

mod support;

use std::collections::BTreeMap;

use proptest::prelude::*;
use rust_decimal::Decimal;
use support::*;
use upline_domain::ids::{DistributorId, RefundId};
use upline_domain::net::OrderLine;
use upline_domain::order::*;
use upline_domain::snapshot::DistributorStatus;

fn context() -> FixedContext {
    FixedContext::new(vec![
        member("d0", 0, DistributorStatus::Active, "gold"),
        member("d1", 1, DistributorStatus::Inactive, "gold"),
        member("d2", 2, DistributorStatus::Active, "bronze"),
        member("d3", 3, DistributorStatus::Active, "silver"),
        member("d4", 4, DistributorStatus::Active, "gold"),
        member("d5", 5, DistributorStatus::Active, "gold"),
    ])
}

/// Applies commands in turn; returns the final state and every beneficiary's running total of
/// commission events (what the ledger would post).
fn run(commands: &[OrderCommand]) -> (OrderState, BTreeMap<DistributorId, Decimal>) {
    let ctx = context();
    let mut state = OrderState::default();
    let mut posted: BTreeMap<DistributorId, Decimal> = BTreeMap::new();
    for c in commands {
        for e in decide(&state, &key(), c, &ctx).unwrap() {
            match &e {
                OrderEvent::CommissionCalculated { outcome, .. } => {
                    for p in &outcome.payouts {
                        *posted.entry(p.beneficiary.clone()).or_default() += p.amount;
                    }
                }
                OrderEvent::CommissionRecalculated { adjustments, .. } => {
                    for a in adjustments {
                        *posted.entry(a.beneficiary.clone()).or_default() += a.change;
                    }
                }
                _ => {}
            }
            evolve(&mut state, &e);
        }
    }
    (state, posted)
}

fn order_lines() -> impl Strategy<Value = Vec<OrderLine>> {
    prop::collection::vec(
        (
            prop::sample::select(vec!["SUPP001", "KIT-STARTER-001", "SUB-1"]),
            1u32..6,
            1i64..50_000,
        ),
        1..5,
    )
    .prop_map(|ls| {
        ls.into_iter()
            .enumerate()
            .map(|(i, (sku, q, cents))| {
                line(
                    &format!("l{i}"),
                    sku,
                    Decimal::from(q),
                    Decimal::new(cents, 2),
                )
            })
            .collect()
    })
}

/// Splits every line's quantity into refunds of random sizes, shuffled into one sequence.
fn full_refund_in_parts(lines: &[OrderLine], cuts: &[u32]) -> Vec<Refund> {
    let mut refunds = Vec::new();
    let mut c = cuts.iter().cycle();
    for l in lines {
        let mut left = l.quantity;
        while left > Decimal::ZERO {
            let part = Decimal::from(*c.next().unwrap_or(&1))
                .min(left)
                .max(Decimal::ONE);
            left -= part;
            refunds.push(Refund {
                refund_id: RefundId::new(format!("r{}", refunds.len())).unwrap(),
                refunded_at: t(20),
                scope: RefundScope::Lines(vec![RefundLine {
                    line_id: l.line_id.clone(),
                    quantity: part,
                    stated_net: None,
                }]),
            });
        }
    }
    refunds
}

fn placed(lines: Vec<OrderLine>, discount_cents: i64) -> OrderCommand {
    let mut details = order_details();
    let subtotal: Decimal = lines.iter().map(|l| l.quantity * l.unit_price).sum();
    details.order_discount = Decimal::new(discount_cents, 2).min(subtotal);
    details.lines = lines;
    OrderCommand::RecordOrder(details)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn partial_refunds_summing_to_the_whole_net_every_beneficiary_to_zero(
        lines in order_lines(),
        discount in 0i64..5_000,
        cuts in prop::collection::vec(1u32..4, 1..6),
        seed in any::<u64>(),
    ) {
        let mut refunds = full_refund_in_parts(&lines, &cuts);
        // Shuffle deterministically from the seed.
        let mut s = seed | 1;
        for i in (1..refunds.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            refunds.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let mut commands = vec![placed(lines, discount), OrderCommand::RecordPayment { paid_at: t(11) }];
        commands.extend(refunds.into_iter().map(OrderCommand::RecordRefund));
        let (state, posted) = run(&commands);
        prop_assert!(state.holdings.is_empty());
        for (who, total) in posted {
            prop_assert_eq!(total, Decimal::ZERO, "{} keeps {}", who, total);
        }
    }

    #[test]
    fn any_arrival_order_of_the_facts_gives_the_same_commissions(
        lines in order_lines(),
        discount in 0i64..5_000,
        refund_line in 0usize..5,
        cancelled in any::<bool>(),
        net_refund_pct in 0i64..60,
        order in Just((0..6).collect::<Vec<usize>>()).prop_shuffle(),
    ) {
        let first = &lines[refund_line % lines.len()];
        let line_refund = Refund {
            refund_id: RefundId::new("r-line").unwrap(),
            refunded_at: t(20),
            scope: RefundScope::Lines(vec![RefundLine { line_id: first.line_id.clone(), quantity: Decimal::ONE, stated_net: None }]),
        };
        let mut facts = vec![
            placed(lines.clone(), discount),
            OrderCommand::RecordPayment { paid_at: t(11) },
            OrderCommand::RecordRefund(line_refund),
        ];
        if net_refund_pct > 0 {
            // A net-amount refund small enough to stay valid after the line refund.
            let subtotal: Decimal = lines.iter().map(|l| l.quantity * l.unit_price).sum();
            let net = subtotal - Decimal::new(discount, 2).min(subtotal);
            let amount = (net * Decimal::new(net_refund_pct, 2) / Decimal::from(4)).round_dp(2);
            if amount > Decimal::ZERO {
                facts.push(OrderCommand::RecordRefund(Refund {
                    refund_id: RefundId::new("r-net").unwrap(),
                    refunded_at: t(21),
                    scope: RefundScope::NetAmount(amount),
                }));
            }
        }
        if cancelled {
            facts.push(OrderCommand::RecordCancellation { cancelled_at: t(22) });
        }
        // Duplicates of facts are part of real traffic.
        facts.push(OrderCommand::RecordPayment { paid_at: t(11) });

        let canonical = run(&facts);
        let shuffled: Vec<OrderCommand> = order.iter().filter_map(|i| facts.get(*i).cloned())
            .chain(facts.iter().skip(6).cloned()).collect();
        let permuted = run(&shuffled);
        prop_assert_eq!(&canonical.0.holdings, &permuted.0.holdings);
        prop_assert_eq!(&canonical.1.into_iter().filter(|(_, v)| !v.is_zero()).collect::<Vec<_>>(),
                        &permuted.1.into_iter().filter(|(_, v)| !v.is_zero()).collect::<Vec<_>>());
        // What was posted is exactly what is held.
        if cancelled {
            prop_assert!(permuted.0.holdings.is_empty());
        }
    }
}
