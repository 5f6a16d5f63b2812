//! Properties of the net-amount money math, over generated orders.
//!
//! What holds for the allocation of an order discount D over lines with subtotals s_i (total T),
//! u being the currency's minor unit:
//! - the shares add up to D exactly, each is >= 0 and a whole number of minor units;
//! - each share is at least its exact pro-rata share D*s_i/T rounded toward zero, and at most
//!   its subtotal when D <= T, so no net is negative when lines carry no discount or tax;
//! - the same input gives the same output;
//! - permuting the lines permutes the shares with them, except that the leftover minor units
//!   follow line order among lines of equal subtotal (the tie-break is "first such line"): a
//!   line whose subtotal no other line has keeps its share exactly, and the shares of the lines
//!   sharing one subtotal add up to the same amount in any order.

use std::collections::BTreeMap;

use proptest::prelude::*;
use rust_decimal::Decimal;
use upline_domain::ids::LineId;
use upline_domain::money::Currency;
use upline_domain::net::{net_lines, NetAmountError, NetLine, OrderLine};

#[derive(Debug, Clone)]
struct Order {
    currency: Currency,
    lines: Vec<OrderLine>,
    discount: Decimal,
}

fn currency() -> impl Strategy<Value = Currency> {
    prop_oneof![
        Just(Currency::USD),
        Just(Currency::EUR),
        Just(Currency::JPY),
        Just(Currency::KWD),
    ]
}

fn line(i: usize, quantity: u32, price_minor: i64, currency: Currency) -> OrderLine {
    OrderLine {
        line_id: LineId::new(format!("L{i}")).unwrap(),
        platform_sku: format!("SKU{i}"),
        quantity: Decimal::from(quantity),
        unit_price: Decimal::new(price_minor, currency.minor_unit()),
        discount: Decimal::ZERO,
        tax: Decimal::ZERO,
    }
}

/// Orders of whole-minor-unit prices with an order discount anywhere from zero to the whole
/// subtotal, often close to the whole (where the leftover may not fit on the largest line).
/// Prices are drawn from a small range too, so that equal subtotals (ties) are common.
fn order() -> impl Strategy<Value = Order> {
    let price = prop_oneof![0i64..=5, 0i64..=3_000, 0i64..=50_000_000];
    (
        currency(),
        prop::collection::vec((1u32..=6, price), 1..=15),
        any::<u64>(),
        0u8..4,
    )
        .prop_map(|(currency, raw, pick, mode)| {
            let lines: Vec<OrderLine> = raw
                .iter()
                .enumerate()
                .map(|(i, (q, p))| line(i, *q, *p, currency))
                .collect();
            let total: i64 = raw.iter().map(|(q, p)| i64::from(*q) * p).sum();
            let total = u64::try_from(total).unwrap();
            let discount = match mode {
                _ if total == 0 => 0,
                0 => total - pick % total.min(4), // nearly all of it
                1 => total,
                _ => pick % (total + 1),
            };
            Order {
                currency,
                lines,
                discount: Decimal::new(i64::try_from(discount).unwrap(), currency.minor_unit()),
            }
        })
}

fn run(o: &Order) -> Vec<NetLine> {
    net_lines(o.currency, &o.lines, o.discount, false)
        .unwrap_or_else(|e| panic!("a valid order was refused: {e}"))
}

fn by_id(lines: &[NetLine]) -> BTreeMap<&str, &NetLine> {
    lines.iter().map(|l| (l.line_id.as_str(), l)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn shares_add_up_to_the_order_discount_exactly(o in order()) {
        let out = run(&o);
        let sum: Decimal = out.iter().map(|l| l.order_discount_share).sum();
        prop_assert_eq!(sum, o.discount);
    }

    #[test]
    fn shares_are_whole_non_negative_minor_units_near_their_exact_share(o in order()) {
        let out = run(&o);
        let total: Decimal = out.iter().map(|l| l.subtotal).sum();
        for l in &out {
            let share = l.order_discount_share;
            prop_assert!(share >= Decimal::ZERO);
            prop_assert!(o.currency.is_whole_minor_units(share));
            prop_assert_eq!(share.scale(), o.currency.minor_unit());
            prop_assert!(share <= l.subtotal, "share {} above subtotal {}", share, l.subtotal);
            if !total.is_zero() {
                let exact = o.discount * l.subtotal / total;
                prop_assert!(share >= o.currency.round_down(exact));
            }
        }
    }

    #[test]
    fn nets_are_never_negative_when_the_discount_fits(o in order()) {
        for l in run(&o) {
            prop_assert!(l.net >= Decimal::ZERO);
            prop_assert_eq!(
                l.net,
                l.subtotal - l.line_discount - l.order_discount_share - l.included_tax
            );
        }
    }

    #[test]
    fn the_same_order_gives_the_same_nets(o in order()) {
        let a = run(&o);
        let b = run(&o.clone());
        prop_assert_eq!(serde_json::to_string(&a).unwrap(), serde_json::to_string(&b).unwrap());
        prop_assert_eq!(a, b);
    }

    #[test]
    fn permuting_lines_permutes_shares_up_to_ties(
        (o, shuffled) in order().prop_flat_map(|o| {
            let lines = o.lines.clone();
            (Just(o), Just(lines).prop_shuffle())
        })
    ) {
        let original = run(&o);
        let permuted = run(&Order { lines: shuffled, ..o.clone() });
        let (a, b) = (by_id(&original), by_id(&permuted));
        prop_assert_eq!(a.len(), b.len());

        let mut count_by_subtotal: BTreeMap<Decimal, usize> = BTreeMap::new();
        for l in &original {
            *count_by_subtotal.entry(l.subtotal).or_default() += 1;
        }
        let mut sums: BTreeMap<Decimal, (Decimal, Decimal)> = BTreeMap::new();
        for (id, la) in &a {
            let lb = b[id];
            prop_assert_eq!(la.subtotal, lb.subtotal);
            if count_by_subtotal[&la.subtotal] == 1 {
                prop_assert_eq!(la.order_discount_share, lb.order_discount_share, "line {}", id);
            }
            let entry = sums.entry(la.subtotal).or_default();
            entry.0 += la.order_discount_share;
            entry.1 += lb.order_discount_share;
        }
        for (subtotal, (x, y)) in sums {
            prop_assert_eq!(x, y, "lines with subtotal {}", subtotal);
        }
    }

    #[test]
    fn line_discounts_and_tax_come_off_exactly_or_the_line_is_named(
        o in order(),
        cuts in prop::collection::vec((0i64..=2_000, 0i64..=2_000), 15),
        inclusive in any::<bool>(),
    ) {
        let mut lines = o.lines.clone();
        for (l, (d, t)) in lines.iter_mut().zip(&cuts) {
            l.discount = Decimal::new(*d, o.currency.minor_unit());
            l.tax = Decimal::new(*t, o.currency.minor_unit());
        }
        match net_lines(o.currency, &lines, o.discount, inclusive) {
            Ok(out) => {
                for (l, n) in lines.iter().zip(&out) {
                    let tax = if inclusive { l.tax } else { Decimal::ZERO };
                    prop_assert_eq!(n.included_tax, tax);
                    prop_assert_eq!(n.net, n.subtotal - l.discount - n.order_discount_share - tax);
                    prop_assert!(n.net >= Decimal::ZERO);
                }
            }
            Err(NetAmountError::DeductionsExceedSubtotal { line, deductions, subtotal }) => {
                prop_assert!(deductions > subtotal);
                prop_assert!(lines.iter().any(|l| l.line_id == line));
            }
            Err(other) => prop_assert!(false, "unexpected error {}", other),
        }
    }

    #[test]
    fn sub_minor_unit_prices_give_the_exact_subtotal(
        quantity in 1u32..=50,
        price in 0i64..=10_000_000,
    ) {
        let mut l = line(0, quantity, 0, Currency::USD);
        l.unit_price = Decimal::new(price, 4);
        let out = net_lines(Currency::USD, &[l], Decimal::ZERO, false).unwrap();
        let exact = Decimal::from(quantity) * Decimal::new(price, 4);
        prop_assert_eq!(out[0].subtotal, exact);
        prop_assert_eq!(out[0].net, exact);
        prop_assert!(out[0].subtotal.scale() >= Currency::USD.minor_unit());
    }
}
