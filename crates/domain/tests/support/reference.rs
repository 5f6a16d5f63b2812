//! A second implementation of the commission plan's rules, deliberately simple, slow and
//! obvious, written from the plan's documentation (the doc comments of `plan`, `engine`, `net`,
//! `order`, `snapshot`, `network` and `catalog`, `examples/plan.toml` and the invariants in
//! ARCHITECTURE.md), never from the engine's code and never calling it. The differential test
//! holds the real aggregate to it.
//!
//! It works on plain descriptions of the company (who sponsors whom, each SKU's class and CV) so
//! that nothing of the real snapshot, net or engine code is reused. Amounts that must be split
//! are split in exact integers, so the reference cannot suffer from decimal division rounding.
//!
//! Where the written rules are silent, the reading taken here is marked ASSUMPTION.
#![allow(dead_code)]

use std::collections::BTreeMap;

use rust_decimal::{Decimal, RoundingStrategy};
use upline_domain::ids::{CommissionClass, DistributorId, LineId, RankName};
use upline_domain::money::Currency;
use upline_domain::net::OrderLine;
use upline_domain::order::{Refund, RefundScope};
use upline_domain::plan::CommissionPlan;
use upline_domain::snapshot::DistributorStatus;

/// A distributor as of the order's time.
#[derive(Debug, Clone)]
pub struct Member {
    pub id: DistributorId,
    /// Index of the sponsor in the member list; `None` for the top of the network.
    pub sponsor: Option<usize>,
    pub status: DistributorStatus,
    pub rank: RankName,
}

/// What a platform SKU means to the plan.
#[derive(Debug, Clone)]
pub struct Product {
    pub platform_sku: String,
    pub class: CommissionClass,
    pub cv_per_unit: Option<Decimal>,
}

/// An order as the platform priced it.
#[derive(Debug, Clone)]
pub struct Sale {
    pub currency: Currency,
    pub seller: usize,
    pub lines: Vec<OrderLine>,
    pub order_discount: Decimal,
    pub prices_include_tax: bool,
}

/// A line as the commission rules see it after refunds.
#[derive(Debug, Clone, PartialEq)]
pub struct KeptLine {
    pub line_id: LineId,
    pub class: CommissionClass,
    pub quantity: Decimal,
    pub net: Decimal,
    pub base: Decimal,
    /// The SKU gives CV, so the base is CV x quantity rather than the net.
    pub has_cv: bool,
}

// ---------------------------------------------------------------------------------------------
// Rounding, in the currency's minor unit.
// ---------------------------------------------------------------------------------------------

pub fn round_half_even(currency: Currency, amount: Decimal) -> Decimal {
    amount.round_dp_with_strategy(currency.minor_unit(), RoundingStrategy::MidpointNearestEven)
}

pub fn round_down(currency: Currency, amount: Decimal) -> Decimal {
    amount.round_dp_with_strategy(currency.minor_unit(), RoundingStrategy::ToZero)
}

/// Exact integer scale for every amount split below: unit prices carry at most 4 decimals,
/// quantities are whole, discounts whole minor units, so 12 decimals hold every weight exactly.
const EXACT_SCALE: u32 = 12;

fn exact_units(amount: Decimal) -> i128 {
    assert!(
        amount.scale() <= EXACT_SCALE,
        "reference: {amount} has more than {EXACT_SCALE} decimals"
    );
    amount.mantissa() * 10i128.pow(EXACT_SCALE - amount.scale())
}

fn minor_units(currency: Currency, amount: Decimal) -> i128 {
    let units = exact_units(amount);
    let per_minor = 10i128.pow(EXACT_SCALE - currency.minor_unit());
    assert_eq!(
        units % per_minor,
        0,
        "reference: {amount} is not whole minor units"
    );
    units / per_minor
}

/// Splits a whole amount over lines pro rata to `weights`: each share is the exact share rounded
/// down to the minor unit; the minor units left over go to the line with the largest weight
/// (ties: the first such line). A line never takes more than its weight: what does not fit goes
/// to the next largest line, and so on; what no line's whole minor units can hold comes off the
/// lines' fractions of a minor unit, largest line first.
pub fn split_down(currency: Currency, amount: Decimal, weights: &[Decimal]) -> Vec<Decimal> {
    let amount = minor_units(currency, amount);
    let exact: Vec<i128> = weights.iter().map(|w| exact_units(*w)).collect();
    let total: i128 = exact.iter().sum();
    if amount == 0 || total == 0 {
        return vec![Decimal::ZERO; weights.len()];
    }
    let mut shares: Vec<i128> = exact.iter().map(|w| amount * w / total).collect();
    let mut left = amount - shares.iter().sum::<i128>();
    let per_minor = 10i128.pow(EXACT_SCALE - currency.minor_unit());
    let mut largest_first: Vec<usize> = (0..weights.len()).collect();
    // A stable sort: equal weights stay in line order, so the first of them comes first.
    largest_first.sort_by(|&a, &b| exact[b].cmp(&exact[a]));
    for &i in &largest_first {
        let room = exact[i] / per_minor - shares[i];
        let give = left.min(room.max(0));
        shares[i] += give;
        left -= give;
    }
    // What whole minor units cannot hold (weights with fractions of a minor unit) is taken from
    // those fractions, largest line first, so the shares still add up to the amount.
    let mut shares: Vec<i128> = shares.iter().map(|m| m * per_minor).collect();
    let mut left = left * per_minor;
    for &i in &largest_first {
        let give = left.min((exact[i] - shares[i]).max(0));
        shares[i] += give;
        left -= give;
    }
    shares
        .into_iter()
        .map(|units| Decimal::from_i128_with_scale(units, EXACT_SCALE).normalize())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Net amounts.
// ---------------------------------------------------------------------------------------------

/// quantity x unit price, exactly (not rounded, whatever the unit price's decimals).
pub fn subtotal(line: &OrderLine) -> Decimal {
    line.quantity * line.unit_price
}

/// Each line's net: subtotal, less its own discount, less its share of the order discount
/// (split pro rata to the subtotals), less the tax inside a tax-inclusive price.
pub fn nets(sale: &Sale) -> Vec<Decimal> {
    let subtotals: Vec<Decimal> = sale.lines.iter().map(subtotal).collect();
    let shares = split_down(sale.currency, sale.order_discount, &subtotals);
    sale.lines
        .iter()
        .zip(subtotals)
        .zip(shares)
        .map(|((line, subtotal), share)| {
            let tax = if sale.prices_include_tax {
                line.tax
            } else {
                Decimal::ZERO
            };
            subtotal - line.discount - share - tax
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Refunds.
// ---------------------------------------------------------------------------------------------

fn product<'a>(products: &'a [Product], platform_sku: &str) -> &'a Product {
    products
        .iter()
        .find(|p| p.platform_sku == platform_sku)
        .expect("reference: every line's SKU is in the catalog")
}

/// What each line is worth to the plan once `refunds` are taken off.
///
/// A refund of `q` of a line's `Q` units takes its stated net when it has one, else
/// `net x q / Q` rounded down to the minor unit; a line keeps what is left (never below zero),
/// and exactly zero once its whole quantity is refunded. The base is CV x kept quantity where the
/// SKU has CV, else the kept net. Refunds known only as an amount are then split over the
/// lines' kept nets (see [`split_down`]).
///
/// ASSUMPTION (the rules do not say): several amount refunds are added up and split once; a line
/// with CV loses the same share of its base as the order loses of its kept net (the doc of
/// `RefundScope::NetAmount`: "commissions are reversed pro rata to it").
pub fn kept_lines<'a>(
    sale: &Sale,
    products: &[Product],
    refunds: impl IntoIterator<Item = &'a Refund>,
) -> Vec<KeptLine> {
    let refunds: Vec<&Refund> = refunds.into_iter().collect();
    let nets = nets(sale);
    let mut kept: Vec<KeptLine> = sale
        .lines
        .iter()
        .zip(&nets)
        .map(|(line, net)| {
            let mut refunded_quantity = Decimal::ZERO;
            let mut taken = Decimal::ZERO;
            for refund in &refunds {
                let RefundScope::Lines(refund_lines) = &refund.scope else {
                    continue;
                };
                for rl in refund_lines.iter().filter(|rl| rl.line_id == line.line_id) {
                    refunded_quantity += rl.quantity;
                    taken += rl.stated_net.unwrap_or_else(|| {
                        round_down(sale.currency, *net * rl.quantity / line.quantity)
                    });
                }
            }
            let quantity = (line.quantity - refunded_quantity).max(Decimal::ZERO);
            let net = if quantity.is_zero() {
                Decimal::ZERO
            } else {
                (*net - taken).max(Decimal::ZERO)
            };
            let product = product(products, &line.platform_sku);
            let base = product.cv_per_unit.map_or(net, |cv| cv * quantity);
            KeptLine {
                line_id: line.line_id.clone(),
                class: product.class.clone(),
                quantity,
                net,
                base,
                has_cv: product.cv_per_unit.is_some(),
            }
        })
        .collect();

    let amount: Decimal = refunds
        .iter()
        .map(|r| match &r.scope {
            RefundScope::NetAmount(a) => *a,
            RefundScope::Lines(_) => Decimal::ZERO,
        })
        .sum();
    if amount.is_zero() {
        return kept;
    }
    let kept_net: Decimal = kept.iter().map(|l| l.net).sum();
    let weights: Vec<Decimal> = kept.iter().map(|l| l.net).collect();
    let shares = if amount >= kept_net {
        weights.clone()
    } else {
        split_down(sale.currency, amount, &weights)
    };
    let left_of_order = (kept_net - amount).max(Decimal::ZERO);
    for (line, share) in kept.iter_mut().zip(shares) {
        line.net -= share;
        line.base = if !line.has_cv {
            line.net
        } else if left_of_order.is_zero() {
            Decimal::ZERO
        } else {
            line.base * left_of_order / kept_net
        };
    }
    kept
}

// ---------------------------------------------------------------------------------------------
// The plan.
// ---------------------------------------------------------------------------------------------

/// The upline from the seller (first) to the top, following the sponsor links.
pub fn upline(members: &[Member], seller: usize) -> Vec<&Member> {
    let mut chain = Vec::new();
    let mut next = Some(seller);
    while let Some(i) = next {
        chain.push(&members[i]);
        assert!(chain.len() <= members.len(), "reference: a cycle");
        next = members[i].sponsor;
    }
    chain
}

/// The rate a class pays at a 1-based level: zero past the end of its list.
fn rate(plan: &CommissionPlan, class: &CommissionClass, level: usize) -> Decimal {
    plan.classes
        .get(class)
        .and_then(|c| c.rates.get(level - 1))
        .map_or(Decimal::ZERO, |r| r.0)
}

/// How many levels a rank unlocks: zero for a rank not on the ladder (it uses its level and
/// earns nothing).
fn unlocked_levels(plan: &CommissionPlan, rank: &RankName) -> usize {
    plan.ranks
        .iter()
        .find(|r| &r.name == rank)
        .map_or(0, |r| r.paid_levels as usize)
}

/// What each beneficiary is paid on the order (only non-zero amounts).
///
/// Walk the upline from the seller. A member whose status does not qualify uses no level under
/// compression, and uses one and earns nothing without it. A qualifying member at level L earns
/// `sum(base x rate(class, L))` over the lines if their rank unlocks L levels, else nothing (the
/// level is used up). Each beneficiary's sum is rounded half-even once. The cap,
/// `round_down(max_payout_ratio x total base)`, is then taken shallowest first.
pub fn payouts(
    plan: &CommissionPlan,
    members: &[Member],
    sale: &Sale,
    lines: &[KeptLine],
) -> BTreeMap<DistributorId, Decimal> {
    let currency = sale.currency;
    let mut earned: Vec<(DistributorId, Decimal)> = Vec::new();
    let mut level = 0usize;
    for member in upline(members, sale.seller) {
        let qualifies = plan.qualifying_statuses.contains(&member.status);
        if !qualifies && plan.compression {
            continue;
        }
        level += 1;
        if !qualifies || unlocked_levels(plan, &member.rank) < level {
            continue;
        }
        let sum: Decimal = lines
            .iter()
            .map(|l| l.base * rate(plan, &l.class, level))
            .sum();
        earned.push((member.id.clone(), round_half_even(currency, sum)));
    }
    let base: Decimal = lines.iter().map(|l| l.base).sum();
    let mut left = round_down(currency, plan.max_payout_ratio * base);
    let mut paid = BTreeMap::new();
    for (who, amount) in earned {
        let amount = amount.min(left);
        left -= amount;
        if !amount.is_zero() {
            paid.insert(who, amount);
        }
    }
    paid
}
