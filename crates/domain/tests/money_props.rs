//! Properties of money rounding and encoding.

use proptest::prelude::*;
use rust_decimal::Decimal;
use upline_domain::money::{Currency, Money, MoneyError, MAX_AMOUNT_SCALE};

const CODES: [&str; 6] = ["USD", "EUR", "JPY", "KWD", "CLP", "BHD"];

fn currency() -> impl Strategy<Value = Currency> {
    (0..CODES.len()).prop_map(|i| Currency::from_code(CODES[i]).unwrap())
}

/// Two different currencies (drawn without rejection, so every case counts).
fn two_currencies() -> impl Strategy<Value = (Currency, Currency)> {
    (0..CODES.len(), 1..CODES.len()).prop_map(|(i, offset)| {
        let b = (i + offset) % CODES.len();
        (
            Currency::from_code(CODES[i]).unwrap(),
            Currency::from_code(CODES[b]).unwrap(),
        )
    })
}

/// Amounts as platforms and the engine produce them: up to MAX_AMOUNT_SCALE decimals, positive
/// and negative, from tiny to far beyond any real order (96-bit mantissas).
fn amount() -> impl Strategy<Value = Decimal> {
    let mantissa = prop_oneof![
        -1_000_000i128..=1_000_000,
        any::<i64>().prop_map(i128::from),
        -(1i128 << 95)..=(1i128 << 95),
    ];
    (mantissa, 0u32..=MAX_AMOUNT_SCALE).prop_map(|(m, s)| Decimal::from_i128_with_scale(m, s))
}

fn half_unit(c: Currency) -> Decimal {
    c.smallest_unit() / Decimal::TWO
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn half_even_rounding_moves_at_most_half_a_minor_unit(c in currency(), x in amount()) {
        let r = c.round(x);
        prop_assert!((r - x).abs() <= half_unit(c), "{} -> {}", x, r);
        prop_assert!(c.is_whole_minor_units(r));
    }

    #[test]
    fn exact_halves_round_to_the_even_minor_unit(c in currency(), units in -1_000_000i64..=1_000_000) {
        // units + 0.5 minor units lies exactly between two minor units.
        let x = Decimal::new(units, c.minor_unit()) + half_unit(c);
        let r = c.round(x);
        let r_units = r / c.smallest_unit();
        prop_assert_eq!(r_units % Decimal::TWO, Decimal::ZERO, "{} -> {}", x, r);
        prop_assert_eq!((r - x).abs(), half_unit(c));
    }

    #[test]
    fn rounding_is_idempotent(c in currency(), x in amount()) {
        let r = c.round(x);
        prop_assert_eq!(c.round(r), r);
        let d = c.round_down(x);
        prop_assert_eq!(c.round_down(d), d);
        // A rounded amount is already whole, so the other rounding leaves it alone too.
        prop_assert_eq!(c.round_down(r), r);
        prop_assert_eq!(c.round(d), d);
    }

    #[test]
    fn round_down_never_increases_magnitude(c in currency(), x in amount()) {
        let d = c.round_down(x);
        prop_assert!(d.abs() <= x.abs(), "{} -> {}", x, d);
        prop_assert!(d.is_zero() || d.is_sign_negative() == x.is_sign_negative());
        prop_assert!((x - d).abs() < c.smallest_unit());
        prop_assert!(c.is_whole_minor_units(d));
    }

    #[test]
    fn adding_across_currencies_always_errors(
        (a, b) in two_currencies(),
        x in -1_000_000_000i64..=1_000_000_000,
        y in -1_000_000_000i64..=1_000_000_000,
    ) {
        let left = Money::new(Decimal::new(x, a.minor_unit()), a);
        let right = Money::new(Decimal::new(y, b.minor_unit()), b);
        prop_assert_eq!(
            left.checked_add(right),
            Err(MoneyError::CurrencyMismatch { left: a, right: b })
        );
        prop_assert!(left.checked_sub(right).is_err());
        prop_assert!(Money::sum(a, [left, right]).is_err());
    }

    #[test]
    fn money_round_trips_through_json_exactly(c in currency(), x in amount()) {
        let m = Money::new(x, c);
        let text = serde_json::to_string(&m).unwrap();
        // The amount travels as a string, never a JSON number a reader might turn into a float.
        let expected_amount = format!("\"amount\":\"{x}\"");
        prop_assert!(text.contains(&expected_amount), "{}", text);
        let back: Money = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(back, m);
        // Exact to the digit: same value and same written scale.
        prop_assert_eq!(back.amount.to_string(), x.to_string());
        prop_assert_eq!(serde_json::to_string(&back).unwrap(), text);
    }
}
