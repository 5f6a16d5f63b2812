//! Net amount: what a line is worth to the commission plan. Taxes, shipping, tips and duties
//! never count.
//!
//! A line's net is its subtotal (quantity x unit price) less its own discounts, less its share
//! of the order-level discounts, less the tax inside a tax-inclusive price. Shipping, tips and
//! duties are not lines, so they never enter.
//!
//! Precision rules (the platforms send prices with 2 decimals, Magento up to 4):
//! - a unit price may carry up to [`MAX_UNIT_PRICE_SCALE`] decimals (or the currency's minor
//!   unit, if more); the subtotal is exactly quantity x unit price, never rounded (no amount is
//!   rounded before the per-beneficiary payout, except where a whole amount is split);
//! - taxes and the order discount are amounts the customer was actually charged or credited, so
//!   they must already be whole minor units: a fraction of a cent there means the payload is
//!   wrong, and guessing a rounding would hide it. A line discount may carry as many decimals as
//!   a unit price, where a transform derived the unit price from a stated line total.
//!
//! **The split rule** ([`split`]), used wherever one whole amount is spread over lines (the
//! order-level discount here; a refund known only as an amount in `order::remaining_lines`): each
//! line's share is its exact pro-rata share rounded down to the minor unit; the minor units left
//! over go to the line with the largest weight, ties to the first such line. The shares add up
//! to the amount exactly. The arithmetic is done in integers, so it is exact.

use std::collections::BTreeSet;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::ids::LineId;
use crate::money::Currency;

/// The most lines an order may have. Real carts stay well under a hundred lines; the bound keeps
/// a hostile payload from making one order's events (one net line each) arbitrarily large.
pub const MAX_LINES: usize = 1000;

/// The most decimals a unit price may carry (unless the currency's minor unit has more). Platforms
/// store at most 4 (Magento); more is a payload error, not a price.
pub const MAX_UNIT_PRICE_SCALE: u32 = 4;

/// A line as the platform priced it, in the order's currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub line_id: LineId,
    /// The platform's SKU or variant id, the key of the catalog.
    pub platform_sku: String,
    #[serde(with = "crate::money::decimal")]
    pub quantity: Decimal,
    #[serde(with = "crate::money::decimal")]
    pub unit_price: Decimal,
    /// Discounts the platform already put on this line (a total for the line, not per unit).
    #[serde(with = "crate::money::decimal", default)]
    pub discount: Decimal,
    /// Tax on this line (a total for the line). Removed from the net when prices include tax;
    /// otherwise it was added on top and never counted.
    #[serde(with = "crate::money::decimal", default)]
    pub tax: Decimal,
}

/// A line's net amount and how it was reached, each step in the order's currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetLine {
    pub line_id: LineId,
    pub platform_sku: String,
    #[serde(with = "crate::money::decimal")]
    pub quantity: Decimal,
    /// quantity x unit price.
    #[serde(with = "crate::money::decimal")]
    pub subtotal: Decimal,
    #[serde(with = "crate::money::decimal")]
    pub line_discount: Decimal,
    /// This line's share of the order-level discounts.
    #[serde(with = "crate::money::decimal")]
    pub order_discount_share: Decimal,
    /// Tax taken out of a tax-inclusive price (zero when prices exclude tax).
    #[serde(with = "crate::money::decimal")]
    pub included_tax: Decimal,
    /// subtotal - line_discount - order_discount_share - included_tax.
    #[serde(with = "crate::money::decimal")]
    pub net: Decimal,
}

/// Why an order's lines have no net amount. Each names the line at fault where there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetAmountError {
    #[error("an order needs at least one line")]
    NoLines,
    #[error("an order may have at most {MAX_LINES} lines; this one has {count}")]
    TooManyLines { count: usize },
    #[error("line {line}: the line id appears more than once in the order")]
    DuplicateLine { line: LineId },
    #[error("line {line}: quantity {quantity} must be above zero")]
    NonPositiveQuantity { line: LineId, quantity: Decimal },
    #[error("line {line}: unit price {unit_price} is negative")]
    NegativeUnitPrice { line: LineId, unit_price: Decimal },
    #[error("line {line}: unit price {unit_price} has more than {max_scale} decimal places")]
    UnitPriceTooPrecise {
        line: LineId,
        unit_price: Decimal,
        max_scale: u32,
    },
    #[error("line {line}: {field} {amount} is negative")]
    NegativeAmount {
        line: LineId,
        field: &'static str,
        amount: Decimal,
    },
    #[error("line {line}: {field} {amount} is not a whole number of {currency} minor units")]
    NotWholeMinorUnits {
        line: LineId,
        field: &'static str,
        amount: Decimal,
        currency: Currency,
    },
    #[error("order discount {amount} is negative")]
    NegativeOrderDiscount { amount: Decimal },
    #[error("order discount {amount} is not a whole number of {currency} minor units")]
    OrderDiscountNotWholeMinorUnits { amount: Decimal, currency: Currency },
    #[error("order discount {order_discount} cannot be allocated: every line's subtotal is zero")]
    NothingToDiscount { order_discount: Decimal },
    #[error("order discount {order_discount} exceeds the lines' subtotal ({subtotal})")]
    OrderDiscountExceedsSubtotal {
        order_discount: Decimal,
        subtotal: Decimal,
    },
    #[error("line {line}: discounts and tax ({deductions}) exceed the subtotal ({subtotal})")]
    DeductionsExceedSubtotal {
        line: LineId,
        deductions: Decimal,
        subtotal: Decimal,
    },
    #[error("line {line}: amounts too large to compute exactly")]
    LineOverflow { line: LineId },
    #[error("order amounts too large to compute exactly")]
    Overflow,
}

/// A line after validation: its exact subtotal, its discount and tax in whole minor units.
struct Priced<'a> {
    line: &'a OrderLine,
    subtotal: Decimal,
    discount: Decimal,
    tax: Decimal,
}

/// The net amount of each line, in the order of `lines`.
///
/// `order_discount` is the order-level discounts (coupons on the whole cart), allocated over the
/// lines pro rata to their subtotals: each line gets its exact share rounded toward zero to the
/// minor unit, and the minor units left over go to the line with the largest subtotal (ties: the
/// first such line). The shares add up to `order_discount` exactly.
///
/// Only when the order discount is nearly the whole order can the leftover be more than the
/// largest line has room for (its subtotal less its share); the part that does not fit then goes
/// to the next largest line, and so on, so that no line's share ever exceeds its subtotal when
/// the order discount does not exceed the order's subtotal.
pub fn net_lines(
    currency: Currency,
    lines: &[OrderLine],
    order_discount: Decimal,
    prices_include_tax: bool,
) -> Result<Vec<NetLine>, NetAmountError> {
    if lines.is_empty() {
        return Err(NetAmountError::NoLines);
    }
    if lines.len() > MAX_LINES {
        return Err(NetAmountError::TooManyLines { count: lines.len() });
    }
    if order_discount < Decimal::ZERO {
        return Err(NetAmountError::NegativeOrderDiscount {
            amount: order_discount,
        });
    }
    if !currency.is_whole_minor_units(order_discount) {
        return Err(NetAmountError::OrderDiscountNotWholeMinorUnits {
            amount: order_discount,
            currency,
        });
    }

    let mut seen = BTreeSet::new();
    let mut priced = Vec::with_capacity(lines.len());
    for line in lines {
        if !seen.insert(&line.line_id) {
            return Err(NetAmountError::DuplicateLine {
                line: line.line_id.clone(),
            });
        }
        priced.push(price(currency, line)?);
    }

    let subtotals: Vec<Decimal> = priced.iter().map(|p| p.subtotal).collect();
    let total = subtotals
        .iter()
        .try_fold(Decimal::ZERO, |acc, s| acc.checked_add(*s))
        .ok_or(NetAmountError::Overflow)?;
    if order_discount > Decimal::ZERO && total.is_zero() {
        return Err(NetAmountError::NothingToDiscount { order_discount });
    }
    if order_discount > total {
        return Err(NetAmountError::OrderDiscountExceedsSubtotal {
            order_discount,
            subtotal: total,
        });
    }
    let shares = split(currency, order_discount, &subtotals).ok_or(NetAmountError::Overflow)?;

    priced
        .iter()
        .zip(shares)
        .map(|(p, share)| net_line(currency, p, share, prices_include_tax))
        .collect()
}

/// Validates one line and converts its amounts to minor units.
fn price(currency: Currency, line: &OrderLine) -> Result<Priced<'_>, NetAmountError> {
    let id = || line.line_id.clone();
    if line.quantity <= Decimal::ZERO {
        return Err(NetAmountError::NonPositiveQuantity {
            line: id(),
            quantity: line.quantity,
        });
    }
    if line.unit_price < Decimal::ZERO {
        return Err(NetAmountError::NegativeUnitPrice {
            line: id(),
            unit_price: line.unit_price,
        });
    }
    let max_scale = MAX_UNIT_PRICE_SCALE.max(currency.minor_unit());
    // Trailing zeros are not precision: "10.000000" is a 0-decimal price.
    if line.unit_price.normalize().scale() > max_scale {
        return Err(NetAmountError::UnitPriceTooPrecise {
            line: id(),
            unit_price: line.unit_price,
            max_scale,
        });
    }
    let non_negative = |field: &'static str, amount: Decimal| -> Result<Decimal, NetAmountError> {
        if amount < Decimal::ZERO {
            return Err(NetAmountError::NegativeAmount {
                line: id(),
                field,
                amount,
            });
        }
        Ok(amount)
    };
    let whole = |field: &'static str, amount: Decimal| -> Result<Decimal, NetAmountError> {
        non_negative(field, amount)?;
        if !currency.is_whole_minor_units(amount) {
            return Err(NetAmountError::NotWholeMinorUnits {
                line: id(),
                field,
                amount,
                currency,
            });
        }
        Ok(amount)
    };
    // A line discount may carry a unit price's decimals: a transform that derives the unit price
    // from a stated line total (WooCommerce: 10.00 for 3 units is 3 x 3.3334 less 0.0002) puts
    // the sub-cent difference there, so that the net is the platform's total exactly.
    let discount = if line.discount.normalize().scale() <= max_scale {
        non_negative("discount", line.discount)?
    } else {
        whole("discount", line.discount)?
    };
    let tax = whole("tax", line.tax)?;
    // Exact: a 3.333 unit price on 3 units is 9.999, not 10.00.
    let subtotal = line
        .quantity
        .checked_mul(line.unit_price)
        .ok_or_else(|| NetAmountError::LineOverflow { line: id() })?;
    Ok(Priced {
        line,
        subtotal,
        discount,
        tax,
    })
}

fn net_line(
    currency: Currency,
    p: &Priced<'_>,
    share: Decimal,
    prices_include_tax: bool,
) -> Result<NetLine, NetAmountError> {
    let overflow = || NetAmountError::LineOverflow {
        line: p.line.line_id.clone(),
    };
    let included_tax = if prices_include_tax {
        p.tax
    } else {
        Decimal::ZERO
    };
    let deductions = p
        .discount
        .checked_add(share)
        .and_then(|d| d.checked_add(included_tax))
        .ok_or_else(overflow)?;
    if deductions > p.subtotal {
        return Err(NetAmountError::DeductionsExceedSubtotal {
            line: p.line.line_id.clone(),
            deductions: with_minor_scale(currency, deductions),
            subtotal: with_minor_scale(currency, p.subtotal),
        });
    }
    Ok(NetLine {
        line_id: p.line.line_id.clone(),
        platform_sku: p.line.platform_sku.clone(),
        quantity: p.line.quantity,
        subtotal: with_minor_scale(currency, p.subtotal),
        line_discount: with_minor_scale(currency, p.discount),
        order_discount_share: with_minor_scale(currency, share),
        included_tax: with_minor_scale(currency, included_tax),
        net: with_minor_scale(currency, p.subtotal - deductions),
    })
}

/// Writes an amount with the currency's decimals ("12" and "12.0000" USD are "12.00"), so equal
/// amounts serialise alike; an exact amount with more significant decimals keeps them
/// ("10.0005").
fn with_minor_scale(currency: Currency, amount: Decimal) -> Decimal {
    let mut a = amount.normalize();
    if a.scale() < currency.minor_unit() {
        a.rescale(currency.minor_unit());
    }
    a
}

/// The split rule: `amount` spread over `weights` pro rata. Each share is the exact share rounded
/// down to the minor unit; the minor units left over go to the largest weight, ties to the first,
/// and what would push a share past its weight's whole minor units spills to the next largest.
/// What whole minor units cannot hold (weights with fractions of a minor unit, or an amount with
/// one) comes off the weights' fractions, largest weight first, so that no share exceeds its
/// weight. The shares add up to `amount` exactly; only an amount above the weights' sum leaves a
/// rest, which the largest weight takes. Weights must not be negative; all zero weights give all
/// zero shares. `None` only when the amounts are too large to compute exactly.
pub fn split(currency: Currency, amount: Decimal, weights: &[Decimal]) -> Option<Vec<Decimal>> {
    if weights.iter().all(|w| w.is_zero()) {
        return Some(vec![Decimal::ZERO; weights.len()]);
    }
    let whole = currency.round_down(amount);
    let amount_m = to_minor(currency, whole)?;
    // Weights as integers at one common scale: the ratios are what matter, and integers keep
    // them exact.
    let scale = weights.iter().map(|w| w.scale()).max().unwrap_or(0);
    let scaled = weights
        .iter()
        .map(|w| {
            let mut w = *w;
            w.rescale(scale);
            (w.scale() == scale).then(|| w.mantissa())
        })
        .collect::<Option<Vec<i128>>>()?;
    // How many whole minor units each weight has room for.
    let rooms = weights
        .iter()
        .map(|w| to_minor(currency, currency.round_down(*w)))
        .collect::<Option<Vec<i128>>>()?;
    let mut shares = allocate(amount_m, &scaled, &rooms)?
        .into_iter()
        .map(|m| from_minor(currency, m))
        .collect::<Option<Vec<Decimal>>>()?;
    let order = largest_first(&scaled);
    let mut rest = amount.checked_sub(
        shares
            .iter()
            .try_fold(Decimal::ZERO, |a, s| a.checked_add(*s))?,
    )?;
    for &i in &order {
        if rest <= Decimal::ZERO {
            break;
        }
        let give = rest.min((weights[i] - shares[i]).max(Decimal::ZERO));
        shares[i] += give;
        rest -= give;
    }
    if rest > Decimal::ZERO {
        if let Some(&largest) = order.first() {
            shares[largest] += rest;
        }
    }
    Some(shares)
}

/// Indices by weight, largest first; the stable sort keeps equal weights in line order.
fn largest_first(weights: &[i128]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| weights[b].cmp(&weights[a]));
    order
}

/// Splits `amount` minor units over `weights` pro rata, in integers: each share is floored; the
/// leftover goes to the largest weight, ties to the first, each share staying within its `room`
/// (the whole minor units of its weight), spilling to the next largest. What no room can hold is
/// left for the caller ([`split`] takes it from the weights' fractions of a minor unit).
/// `None` only on overflow; all-zero weights give zero shares.
fn allocate(amount: i128, weights: &[i128], rooms: &[i128]) -> Option<Vec<i128>> {
    let total = weights
        .iter()
        .try_fold(0i128, |acc, w| acc.checked_add(*w))?;
    if amount == 0 || total == 0 {
        return Some(vec![0; weights.len()]);
    }
    let mut shares = weights
        .iter()
        .map(|w| amount.checked_mul(*w).map(|x| x / total))
        .collect::<Option<Vec<i128>>>()?;
    let mut leftover = amount - shares.iter().sum::<i128>();
    for i in largest_first(weights) {
        if leftover == 0 {
            break;
        }
        let give = leftover.min((rooms[i] - shares[i]).max(0));
        shares[i] += give;
        leftover -= give;
    }
    Some(shares)
}

/// An amount in whole minor units as an integer (12.34 USD is 1234). `None` if it does not fit.
fn to_minor(currency: Currency, amount: Decimal) -> Option<i128> {
    amount
        .checked_div(currency.smallest_unit())
        .and_then(|m| m.to_i128())
}

/// Integer minor units back to an amount, always written with the currency's decimals
/// (1234 USD minor units is "12.34", 5 JPY is "5"), so equal amounts serialise alike.
fn from_minor(currency: Currency, minor: i128) -> Option<Decimal> {
    Decimal::try_from_i128_with_scale(minor, currency.minor_unit()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_floors_then_gives_the_leftover_to_the_largest_weight() {
        // 10.00 over 10.00 / 20.00 / 30.00: exact 1.666.., 3.333.., 5.00 -> floors 1.66, 3.33,
        // 5.00 (sum 9.99), leftover 0.01 to the 30.00 line.
        let w = [1000, 2000, 3000];
        assert_eq!(allocate(1000, &w, &w), Some(vec![166, 333, 501]));
        // Ties go to the first of the largest.
        let w = [300, 300, 300];
        assert_eq!(allocate(100, &w, &w), Some(vec![34, 33, 33]));
        assert_eq!(allocate(0, &[0, 0], &[0, 0]), Some(vec![0, 0]));
    }

    #[test]
    fn a_leftover_too_big_for_the_largest_line_spills_to_the_next() {
        // 0.02 over three 0.01 lines: every floor is 0; the largest (first) line can take only
        // 0.01, so the second takes the other.
        assert_eq!(allocate(2, &[1, 1, 1], &[1, 1, 1]), Some(vec![1, 1, 0]));
        // 30.00 over 10.00 / 10.00 / 10.01: floors 9.99, 9.99, 10.00; the leftover 0.02 would
        // put the 10.01 line at 10.02, so 0.01 goes there and 0.01 to the first 10.00 line.
        let w = [1000, 1000, 1001];
        assert_eq!(allocate(3000, &w, &w), Some(vec![1000, 999, 1001]));
    }

    #[test]
    fn what_whole_minor_units_cannot_hold_comes_off_the_fractions_largest_first() {
        // 12.02 over 5.0095 / 3.0075 / 3.0045 / 1.0002 (a refund of nearly all of an order with
        // sub-cent unit prices): the whole minor units hold 5.00 + 3.00 + 3.00 + 1.00 = 12.00, so
        // the last 0.02 comes off the fractions: 0.0095, 0.0075, then 0.0030 of the 0.0045.
        let d = |s: &str| s.parse::<Decimal>().expect("decimal");
        let weights = [d("5.0095"), d("3.0075"), d("3.0045"), d("1.0002")];
        let shares = split(Currency::USD, d("12.02"), &weights).expect("split");
        assert_eq!(shares, [d("5.0095"), d("3.0075"), d("3.003"), d("1.00")]);
        assert_eq!(shares.iter().sum::<Decimal>(), d("12.02"));
        // An amount above the weights' sum still adds up.
        let shares = split(Currency::USD, d("3.00"), &[d("1.005"), d("1.00")]).expect("split");
        assert_eq!(shares.iter().sum::<Decimal>(), d("3.00"));
        // All-zero weights take nothing.
        let shares = split(Currency::USD, d("1.00"), &[d("0"), d("0")]).expect("split");
        assert_eq!(shares, [Decimal::ZERO, Decimal::ZERO]);
    }

    #[test]
    fn overflow_is_reported_not_wrapped() {
        assert_eq!(allocate(i128::MAX, &[i128::MAX, 1], &[i128::MAX, 1]), None);
        assert_eq!(to_minor(Currency::USD, Decimal::MAX), None);
        assert_eq!(to_minor(Currency::USD, Decimal::new(1000, 2)), Some(1000));
        assert_eq!(to_minor(Currency::JPY, Decimal::new(1000, 0)), Some(1000));
    }
}
