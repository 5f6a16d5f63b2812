//! Worked examples of net amounts, checked by hand.

use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use upline_domain::ids::LineId;
use upline_domain::money::Currency;
use upline_domain::net::{net_lines, NetAmountError, NetLine, OrderLine, MAX_LINES};

fn line(id: &str, quantity: Decimal, unit_price: Decimal) -> OrderLine {
    OrderLine {
        line_id: LineId::new(id).unwrap(),
        platform_sku: format!("SKU-{id}"),
        quantity,
        unit_price,
        discount: Decimal::ZERO,
        tax: Decimal::ZERO,
    }
}

fn shares(lines: &[NetLine]) -> Vec<Decimal> {
    lines.iter().map(|l| l.order_discount_share).collect()
}

fn nets(lines: &[NetLine]) -> Vec<Decimal> {
    lines.iter().map(|l| l.net).collect()
}

#[test]
fn order_discount_is_shared_pro_rata_with_the_remainder_on_the_largest_line() {
    // 10.00 over 10 / 20 / 30: exact shares 1.6666.., 3.3333.., 5.00; floored 1.66, 3.33, 5.00
    // = 9.99; the 0.01 left goes to the largest line, 30.00.
    let lines = [
        line("1", dec!(1), dec!(10.00)),
        line("2", dec!(1), dec!(20.00)),
        line("3", dec!(1), dec!(30.00)),
    ];
    let out = net_lines(Currency::USD, &lines, dec!(10.00), false).unwrap();
    assert_eq!(shares(&out), [dec!(1.66), dec!(3.33), dec!(5.01)]);
    assert_eq!(nets(&out), [dec!(8.34), dec!(16.67), dec!(24.99)]);
    assert_eq!(out.iter().map(|l| l.net).sum::<Decimal>(), dec!(50.00));
    assert_eq!(out[2].subtotal, dec!(30.00));
    assert_eq!(out[0].line_id.as_str(), "1");
    assert_eq!(out[0].platform_sku, "SKU-1");
}

#[test]
fn the_remainder_goes_to_the_first_of_equally_large_lines() {
    let lines = [
        line("a", dec!(1), dec!(5.00)),
        line("b", dec!(2), dec!(5.00)),
        line("c", dec!(1), dec!(10.00)),
    ];
    // 1.00 over 5 / 10 / 10: exact 0.20, 0.40, 0.40: no remainder.
    let even = net_lines(Currency::USD, &lines, dec!(1.00), false).unwrap();
    assert_eq!(shares(&even), [dec!(0.20), dec!(0.40), dec!(0.40)]);
    // 0.01 over 5 / 10 / 10: floors 0, 0, 0; the cent goes to "b", the first 10.00 line.
    let cent = net_lines(Currency::USD, &lines, dec!(0.01), false).unwrap();
    assert_eq!(shares(&cent), [dec!(0), dec!(0.01), dec!(0)]);
}

#[test]
fn line_discounts_come_off_and_tax_on_top_never_counts() {
    let mut a = line("1", dec!(2), dec!(24.99)); // 49.98
    a.discount = dec!(5.00);
    a.tax = dec!(3.60);
    let out = net_lines(Currency::USD, &[a], Decimal::ZERO, false).unwrap();
    assert_eq!(out[0].subtotal, dec!(49.98));
    assert_eq!(out[0].line_discount, dec!(5.00));
    assert_eq!(out[0].included_tax, dec!(0.00));
    assert_eq!(out[0].net, dec!(44.98));
}

#[test]
fn tax_inclusive_prices_have_their_tax_removed() {
    // EU-style: 2 x 12.10 incl. 21% VAT = 24.20, of which VAT 4.20; a 2.42 coupon on the order.
    let mut a = line("1", dec!(2), dec!(12.10));
    a.tax = dec!(4.20);
    let mut b = line("2", dec!(1), dec!(0.00)); // a free sample: no share, no net
    b.tax = dec!(0);
    let out = net_lines(Currency::EUR, &[a, b], dec!(2.42), true).unwrap();
    assert_eq!(out[0].subtotal, dec!(24.20));
    assert_eq!(out[0].order_discount_share, dec!(2.42));
    assert_eq!(out[0].included_tax, dec!(4.20));
    assert_eq!(out[0].net, dec!(17.58));
    assert_eq!(out[1].net, dec!(0.00));
}

#[test]
fn yen_has_no_minor_unit() {
    let lines = [
        line("1", dec!(1), dec!(1000)),
        line("2", dec!(3), dec!(700)), // 2100
        line("3", dec!(1), dec!(333)),
    ];
    // 100 over 1000 / 2100 / 333 (total 3433): exact 29.13.., 61.17.., 9.70.. -> 29, 61, 9 = 99;
    // the 1 yen left goes to the 2100 line.
    let out = net_lines(Currency::JPY, &lines, dec!(100), false).unwrap();
    assert_eq!(shares(&out), [dec!(29), dec!(62), dec!(9)]);
    assert_eq!(nets(&out), [dec!(971), dec!(2038), dec!(324)]);
    assert!(out.iter().all(|l| l.net.scale() == 0));
    // Half a yen is not an amount anyone paid.
    assert!(matches!(
        net_lines(Currency::JPY, &lines, dec!(0.5), false),
        Err(NetAmountError::OrderDiscountNotWholeMinorUnits { .. })
    ));
}

#[test]
fn three_decimal_currencies_work_in_fils() {
    let lines = [
        line("1", dec!(1), dec!(1.000)),
        line("2", dec!(1), dec!(2.000)),
    ];
    let out = net_lines(Currency::KWD, &lines, dec!(0.100), false).unwrap();
    // 0.100 over 1 / 2: 0.0333.. -> 0.033, 0.0666.. -> 0.066, 0.001 left to the 2.000 line.
    assert_eq!(shares(&out), [dec!(0.033), dec!(0.067)]);
}

#[test]
fn a_subtotal_is_exactly_quantity_times_unit_price() {
    // 3 x 3.3335 = 10.0005, 1 x 0.0050 = 0.005, 1 x 0.0150 = 0.015: nothing is rounded before
    // the per-beneficiary payout.
    let lines = [
        line("1", dec!(3), dec!(3.3335)),
        line("2", dec!(1), dec!(0.0050)),
        line("3", dec!(1), dec!(0.0150)),
    ];
    let out = net_lines(Currency::USD, &lines, Decimal::ZERO, false).unwrap();
    assert_eq!(
        out.iter().map(|l| l.subtotal).collect::<Vec<_>>(),
        [dec!(10.0005), dec!(0.005), dec!(0.015)]
    );
    assert_eq!(out[0].net, dec!(10.0005));
    // Whole amounts come out with the currency's decimals, whatever the input's.
    let whole = [line("1", dec!(2), dec!(5.0000))];
    let out = net_lines(Currency::USD, &whole, Decimal::ZERO, false).unwrap();
    let json = serde_json::to_string(&out[0]).unwrap();
    assert!(json.contains(r#""subtotal":"10.00""#), "{json}");
    let too_fine = [line("1", dec!(1), dec!(1.00001))];
    assert!(matches!(
        net_lines(Currency::USD, &too_fine, Decimal::ZERO, false),
        Err(NetAmountError::UnitPriceTooPrecise { max_scale: 4, .. })
    ));
    // Trailing zeros are not precision.
    let zeros = [line("1", dec!(1), dec!(1.0000000))];
    assert!(net_lines(Currency::USD, &zeros, Decimal::ZERO, false).is_ok());
}

#[test]
fn an_order_discount_over_exact_subtotals_is_split_in_whole_minor_units() {
    // 1.00 over 10.0005 and 0.005: shares rounded down (0.99, 0.00), the cent left to the
    // larger line: 1.00 and 0.00; the nets stay exact.
    let lines = [
        line("1", dec!(3), dec!(3.3335)),
        line("2", dec!(1), dec!(0.0050)),
    ];
    let out = net_lines(Currency::USD, &lines, dec!(1.00), false).unwrap();
    assert_eq!(shares(&out), [dec!(1.00), dec!(0.00)]);
    assert_eq!(out[0].net, dec!(9.0005));
    assert_eq!(out[1].net, dec!(0.005));
}

#[test]
fn fractional_quantities_are_priced_exactly() {
    let out = net_lines(
        Currency::USD,
        &[line("1", dec!(1.5), dec!(3.33))],
        Decimal::ZERO,
        false,
    )
    .unwrap();
    // 1.5 x 3.33 = 4.995, kept exact; the payout is what gets rounded.
    assert_eq!(out[0].net, dec!(4.995));
}

#[test]
fn discounts_exceeding_the_subtotal_are_refused() {
    let mut a = line("123", dec!(1), dec!(10.00));
    a.discount = dec!(10.01);
    let err = net_lines(Currency::USD, &[a], Decimal::ZERO, false).unwrap_err();
    assert_eq!(
        err.to_string(),
        "line 123: discounts and tax (10.01) exceed the subtotal (10.00)"
    );

    // Included tax counts with the discounts.
    let mut b = line("7", dec!(1), dec!(10.00));
    b.discount = dec!(6.00);
    b.tax = dec!(5.00);
    assert!(net_lines(
        Currency::USD,
        std::slice::from_ref(&b),
        Decimal::ZERO,
        false
    )
    .is_ok());
    assert!(matches!(
        net_lines(Currency::USD, &[b], Decimal::ZERO, true),
        Err(NetAmountError::DeductionsExceedSubtotal { ref line, .. }) if line.as_str() == "7"
    ));

    // An order discount above the whole order.
    let lines = [
        line("1", dec!(1), dec!(5.00)),
        line("2", dec!(1), dec!(5.00)),
    ];
    assert_eq!(
        net_lines(Currency::USD, &lines, dec!(10.01), false),
        Err(NetAmountError::OrderDiscountExceedsSubtotal {
            order_discount: dec!(10.01),
            subtotal: dec!(10.00)
        })
    );
    // Exactly the whole order is fine: everything nets to zero.
    let all = net_lines(Currency::USD, &lines, dec!(10.00), false).unwrap();
    assert_eq!(nets(&all), [dec!(0), dec!(0)]);
}

#[test]
fn an_order_discount_nearly_the_whole_order_never_overdraws_a_line() {
    // 30.00 off 10.00 / 10.00 / 10.01: floors 9.99, 9.99, 10.00 leave 0.02; the 10.01 line can
    // take only 0.01 more, so the other cent goes to the first 10.00 line.
    let lines = [
        line("1", dec!(1), dec!(10.00)),
        line("2", dec!(1), dec!(10.00)),
        line("3", dec!(1), dec!(10.01)),
    ];
    let out = net_lines(Currency::USD, &lines, dec!(30.00), false).unwrap();
    assert_eq!(shares(&out), [dec!(10.00), dec!(9.99), dec!(10.01)]);
    assert_eq!(nets(&out), [dec!(0.00), dec!(0.01), dec!(0.00)]);
}

#[test]
fn an_order_discount_needs_something_to_discount() {
    let free = [line("1", dec!(1), dec!(0))];
    assert_eq!(
        net_lines(Currency::USD, &free, dec!(1.00), false),
        Err(NetAmountError::NothingToDiscount {
            order_discount: dec!(1.00)
        })
    );
    assert!(net_lines(Currency::USD, &free, dec!(0), false).is_ok());
}

#[test]
fn malformed_lines_are_refused_with_their_id() {
    let usd = Currency::USD;
    let ok = line("1", dec!(1), dec!(1.00));

    assert_eq!(
        net_lines(usd, &[], dec!(0), false),
        Err(NetAmountError::NoLines)
    );

    let many: Vec<OrderLine> = (0..=MAX_LINES)
        .map(|i| line(&i.to_string(), dec!(1), dec!(1)))
        .collect();
    assert_eq!(
        net_lines(usd, &many, dec!(0), false),
        Err(NetAmountError::TooManyLines {
            count: MAX_LINES + 1
        })
    );
    assert!(net_lines(usd, &many[..MAX_LINES], dec!(0), false).is_ok());

    assert!(matches!(
        net_lines(usd, &[ok.clone(), ok.clone()], dec!(0), false),
        Err(NetAmountError::DuplicateLine { ref line }) if line.as_str() == "1"
    ));

    for q in [dec!(0), dec!(-1)] {
        let bad = line("q", q, dec!(1));
        assert!(matches!(
            net_lines(usd, &[bad], dec!(0), false),
            Err(NetAmountError::NonPositiveQuantity { ref line, .. }) if line.as_str() == "q"
        ));
    }

    let bad = line("p", dec!(1), dec!(-0.01));
    assert!(matches!(
        net_lines(usd, &[bad], dec!(0), false),
        Err(NetAmountError::NegativeUnitPrice { .. })
    ));

    let mut bad = ok.clone();
    bad.discount = dec!(-1);
    assert!(matches!(
        net_lines(usd, &[bad], dec!(0), false),
        Err(NetAmountError::NegativeAmount {
            field: "discount",
            ..
        })
    ));
    let mut bad = ok.clone();
    bad.tax = dec!(-0.01);
    assert!(matches!(
        net_lines(usd, &[bad], dec!(0), false),
        Err(NetAmountError::NegativeAmount { field: "tax", .. })
    ));
    // A line discount may carry a unit price's decimals (4), no more.
    let mut derived = ok.clone();
    derived.discount = dec!(0.005);
    assert!(net_lines(usd, &[derived], dec!(0), false).is_ok());
    let mut bad = ok.clone();
    bad.discount = dec!(0.00005);
    let err = net_lines(usd, &[bad], dec!(0), false).unwrap_err();
    assert_eq!(
        err.to_string(),
        "line 1: discount 0.00005 is not a whole number of USD minor units"
    );
    let mut bad = ok.clone();
    bad.tax = dec!(0.001);
    assert!(matches!(
        net_lines(usd, &[bad], dec!(0), false),
        Err(NetAmountError::NotWholeMinorUnits { field: "tax", .. })
    ));

    assert_eq!(
        net_lines(usd, std::slice::from_ref(&ok), dec!(-0.01), false),
        Err(NetAmountError::NegativeOrderDiscount {
            amount: dec!(-0.01)
        })
    );
    assert!(matches!(
        net_lines(usd, &[ok], dec!(0.001), false),
        Err(NetAmountError::OrderDiscountNotWholeMinorUnits { .. })
    ));
}

#[test]
fn huge_amounts_are_an_error_not_a_panic() {
    let big = line("1", Decimal::MAX, Decimal::MAX);
    assert!(matches!(
        net_lines(Currency::USD, &[big], dec!(0), false),
        Err(NetAmountError::LineOverflow { .. })
    ));
}

#[test]
fn net_lines_round_trip_through_json() {
    let lines = [
        line("1", dec!(1), dec!(10.00)),
        line("2", dec!(2), dec!(4.50)),
    ];
    let out = net_lines(Currency::USD, &lines, dec!(1.00), false).unwrap();
    let json = serde_json::to_string(&out).unwrap();
    let back: Vec<NetLine> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, out);
}
