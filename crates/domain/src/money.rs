//! Money: an exact decimal amount in one ISO 4217 currency.
//!
//! Amounts never pass through a float: JSON strings and JSON numbers are parsed from their text
//! (serde_json's `arbitrary_precision` keeps a number's digits), and rounding is half-even to the
//! currency's minor unit, the rule bankers and most tax authorities use.

use std::fmt;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The largest number of fractional digits an amount may carry into the engine. Platform payloads
/// carry at most 4; a bound stops a hostile payload from feeding 28-digit fractions downstream.
pub const MAX_AMOUNT_SCALE: u32 = 12;

/// An ISO 4217 currency code with its minor unit (digits after the decimal point).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: [u8; 3],
    minor_unit: u8,
}

/// The currencies we accept and their minor units (ISO 4217, list one, 2024 edition). A code not
/// listed is refused, never guessed: a wrong minor unit would round every commission wrongly.
const CURRENCIES: &[(&str, u8)] = &[
    ("AED", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("BGN", 2),
    ("BHD", 3),
    ("BRL", 2),
    ("CAD", 2),
    ("CHF", 2),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("CZK", 2),
    ("DKK", 2),
    ("EGP", 2),
    ("EUR", 2),
    ("GBP", 2),
    ("HKD", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("ISK", 0),
    ("JOD", 3),
    ("JPY", 0),
    ("KES", 2),
    ("KRW", 0),
    ("KWD", 3),
    ("MAD", 2),
    ("MXN", 2),
    ("MYR", 2),
    ("NGN", 2),
    ("NOK", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PEN", 2),
    ("PHP", 2),
    ("PKR", 2),
    ("PLN", 2),
    ("QAR", 2),
    ("RON", 2),
    ("RSD", 2),
    ("SAR", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("THB", 2),
    ("TND", 3),
    ("TRY", 2),
    ("TWD", 2),
    ("UAH", 2),
    ("UGX", 0),
    ("USD", 2),
    ("VND", 0),
    ("XAF", 0),
    ("XOF", 0),
    ("ZAR", 2),
];

impl Currency {
    pub const USD: Currency = Currency {
        code: *b"USD",
        minor_unit: 2,
    };
    pub const EUR: Currency = Currency {
        code: *b"EUR",
        minor_unit: 2,
    };
    pub const JPY: Currency = Currency {
        code: *b"JPY",
        minor_unit: 0,
    };
    pub const KWD: Currency = Currency {
        code: *b"KWD",
        minor_unit: 3,
    };

    /// Looks up an ISO 4217 code (case-insensitive).
    pub fn from_code(code: &str) -> Result<Currency, MoneyError> {
        let upper = code.trim().to_ascii_uppercase();
        CURRENCIES
            .iter()
            .find(|(c, _)| *c == upper)
            .map(|(c, minor)| {
                let b = c.as_bytes();
                Currency {
                    code: [b[0], b[1], b[2]],
                    minor_unit: *minor,
                }
            })
            .ok_or(MoneyError::UnsupportedCurrency(code.to_string()))
    }

    pub fn code(&self) -> &str {
        // The code bytes come only from the ASCII table above.
        std::str::from_utf8(&self.code).unwrap_or("???")
    }

    /// Digits after the decimal point: USD 2, JPY 0, KWD 3.
    pub fn minor_unit(&self) -> u32 {
        u32::from(self.minor_unit)
    }

    /// One minor unit (0.01 for USD, 1 for JPY, 0.001 for KWD).
    pub fn smallest_unit(&self) -> Decimal {
        Decimal::new(1, self.minor_unit())
    }

    /// Rounds half-even to this currency's minor unit.
    pub fn round(&self, amount: Decimal) -> Decimal {
        amount.round_dp_with_strategy(self.minor_unit(), RoundingStrategy::MidpointNearestEven)
    }

    /// Rounds toward zero to this currency's minor unit (used for ceilings such as the payout cap,
    /// which must never be exceeded by rounding).
    pub fn round_down(&self, amount: Decimal) -> Decimal {
        amount.round_dp_with_strategy(self.minor_unit(), RoundingStrategy::ToZero)
    }

    /// True when the amount has no digits below the minor unit.
    pub fn is_whole_minor_units(&self, amount: Decimal) -> bool {
        self.round_down(amount) == amount
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Currency {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::from_code(s)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = String::deserialize(d)?;
        Currency::from_code(&code).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("currency {0:?} is not a supported ISO 4217 code")]
    UnsupportedCurrency(String),
    #[error("cannot combine {left} with {right}: different currencies")]
    CurrencyMismatch { left: Currency, right: Currency },
    #[error("{0:?} is not a decimal amount")]
    InvalidAmount(String),
    #[error("amount {0} has more than {MAX_AMOUNT_SCALE} fractional digits")]
    TooPrecise(String),
    #[error("amount overflowed")]
    Overflow,
}

/// Parses a decimal from its text ("12.50", "-3", "1e2" is refused: platforms send plain
/// decimals, and an exponent is more often a float that leaked through).
pub fn parse_decimal(text: &str) -> Result<Decimal, MoneyError> {
    let t = text.trim();
    if t.is_empty() || t.contains(['e', 'E']) {
        return Err(MoneyError::InvalidAmount(text.to_string()));
    }
    let value =
        Decimal::from_str_exact(t).map_err(|_| MoneyError::InvalidAmount(text.to_string()))?;
    if value.scale() > MAX_AMOUNT_SCALE {
        return Err(MoneyError::TooPrecise(text.to_string()));
    }
    Ok(without_negative_zero(value))
}

/// "-0" and "0.00" become zero with the scale kept: only the sign of zero is normalised, so that
/// two equal amounts serialise to the same text.
fn without_negative_zero(value: Decimal) -> Decimal {
    if value.is_zero() {
        Decimal::new(0, value.scale())
    } else {
        value
    }
}

/// A decimal that deserialises from a JSON string or a JSON number without passing through f64,
/// and serialises as a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Amount(pub Decimal);

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_decimal(d).map(Amount)
    }
}

/// Deserialises a decimal from a string or a number (with serde_json's `arbitrary_precision`, a
/// number arrives as its original digits), refusing more than [`MAX_AMOUNT_SCALE`] decimals: the
/// reader for what arrives from outside (payloads, plans, catalogs).
pub fn deserialize_decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    d.deserialize_any(DecimalVisitor {
        parse: parse_decimal,
    })
}

/// Parses a decimal as it was recorded: any exact decimal `rust_decimal` holds (up to 28
/// fractional digits). Recorded events are read with this, so that an event an earlier version
/// wrote with a long fraction (a refund scaled by 2/3) still reads back; amounts are rounded
/// only where they are presented or paid, never on reading.
pub fn parse_recorded_decimal(text: &str) -> Result<Decimal, MoneyError> {
    let t = text.trim();
    if t.is_empty() || t.contains(['e', 'E']) {
        return Err(MoneyError::InvalidAmount(text.to_string()));
    }
    Decimal::from_str_exact(t)
        .map(without_negative_zero)
        .map_err(|_| MoneyError::InvalidAmount(text.to_string()))
}

/// Like [`deserialize_decimal`] but accepting what [`parse_recorded_decimal`] accepts: for fields
/// of recorded events and read models (`#[serde(with = "crate::money::decimal")]`).
pub fn deserialize_recorded_decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    d.deserialize_any(DecimalVisitor {
        parse: parse_recorded_decimal,
    })
}

/// Reads a decimal from a JSON string or number without passing through f64; `parse` decides
/// how many decimals are acceptable.
struct DecimalVisitor {
    parse: fn(&str) -> Result<Decimal, MoneyError>,
}

impl<'de> serde::de::Visitor<'de> for DecimalVisitor {
    type Value = Decimal;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a decimal amount as a string or a number")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Decimal, E> {
        (self.parse)(v).map_err(E::custom)
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Decimal, E> {
        Ok(Decimal::from(v))
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Decimal, E> {
        Ok(Decimal::from(v))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Decimal, E> {
        // Reached only when the caller's deserializer lost the digits (no arbitrary
        // precision): refuse rather than round a float into someone's pay.
        Err(E::custom(format!(
            "amount {v} arrived as a float; send it as a string or enable exact numbers"
        )))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Decimal, A::Error> {
        // serde_json's arbitrary_precision encodes a number as a one-entry map.
        let key: Option<String> = map.next_key()?;
        match key.as_deref() {
            Some("$serde_json::private::Number") => {
                let digits: String = map.next_value()?;
                (self.parse)(&digits).map_err(serde::de::Error::custom)
            }
            _ => Err(serde::de::Error::custom(
                "expected a decimal amount, found an object",
            )),
        }
    }
}

/// Like [`deserialize_decimal`], for optional fields (`null` or absent is `None`).
pub fn deserialize_opt_decimal<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Decimal>, D::Error> {
    Option::<Amount>::deserialize(d).map(|o| o.map(|a| a.0))
}

/// Serialises a decimal as a string (pairs with [`deserialize_decimal`]).
pub fn serialize_decimal<S: Serializer>(v: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&v.to_string())
}

/// Like [`deserialize_recorded_decimal`], for optional fields.
pub fn deserialize_opt_recorded_decimal<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Decimal>, D::Error> {
    #[derive(Deserialize)]
    struct Recorded(#[serde(deserialize_with = "deserialize_recorded_decimal")] Decimal);
    Option::<Recorded>::deserialize(d).map(|o| o.map(|r| r.0))
}

/// Serde helper module for `Decimal` fields of recorded events and normalised records:
/// `#[serde(with = "crate::money::decimal")]`. Writes a string; reads what
/// [`parse_recorded_decimal`] accepts. Input from outside uses [`Amount`], which is stricter.
pub mod decimal {
    pub use super::deserialize_recorded_decimal as deserialize;
    pub use super::serialize_decimal as serialize;
}

/// Serde helper module for `Option<Decimal>` fields (as [`decimal`]).
pub mod opt_decimal {
    pub use super::deserialize_opt_recorded_decimal as deserialize;
    use rust_decimal::Decimal;
    use serde::Serializer;
    pub fn serialize<S: Serializer>(v: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => s.serialize_str(&d.to_string()),
            None => s.serialize_none(),
        }
    }
}

/// An exact amount in one currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    #[serde(with = "decimal")]
    pub amount: Decimal,
    pub currency: Currency,
}

impl Money {
    pub fn new(amount: Decimal, currency: Currency) -> Money {
        Money { amount, currency }
    }

    pub fn zero(currency: Currency) -> Money {
        Money {
            amount: Decimal::ZERO,
            currency,
        }
    }

    /// Parses "12.50" in a currency.
    pub fn parse(text: &str, currency: Currency) -> Result<Money, MoneyError> {
        Ok(Money::new(parse_decimal(text)?, currency))
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let amount = self
            .amount
            .checked_add(other.amount)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount, self.currency))
    }

    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let amount = self
            .amount
            .checked_sub(other.amount)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount, self.currency))
    }

    /// Multiplies by a plain decimal (a rate or a quantity); the result is not rounded.
    pub fn checked_mul(self, factor: Decimal) -> Result<Money, MoneyError> {
        let amount = self
            .amount
            .checked_mul(factor)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount, self.currency))
    }

    /// Rounded half-even to the currency's minor unit.
    pub fn rounded(self) -> Money {
        Money::new(self.currency.round(self.amount), self.currency)
    }

    pub fn is_zero(&self) -> bool {
        self.amount.is_zero()
    }

    pub fn is_negative(&self) -> bool {
        self.amount.is_sign_negative() && !self.amount.is_zero()
    }

    fn same_currency(self, other: Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch {
                left: self.currency,
                right: other.currency,
            })
        }
    }

    /// Sums amounts that must all be in `currency`.
    pub fn sum<I: IntoIterator<Item = Money>>(
        currency: Currency,
        items: I,
    ) -> Result<Money, MoneyError> {
        items
            .into_iter()
            .try_fold(Money::zero(currency), Money::checked_add)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = self
            .amount
            .round_dp(self.currency.minor_unit().max(self.amount.scale()));
        write!(f, "{} {}", shown, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn minor_units_follow_iso_4217() {
        assert_eq!(Currency::from_code("usd").unwrap().minor_unit(), 2);
        assert_eq!(Currency::from_code("JPY").unwrap().minor_unit(), 0);
        assert_eq!(Currency::from_code("KWD").unwrap().minor_unit(), 3);
        assert_eq!(
            Currency::from_code("XYZ"),
            Err(MoneyError::UnsupportedCurrency("XYZ".into()))
        );
    }

    #[test]
    fn rounding_is_half_even_to_the_minor_unit() {
        assert_eq!(Currency::USD.round(dec!(0.125)), dec!(0.12));
        assert_eq!(Currency::USD.round(dec!(0.135)), dec!(0.14));
        assert_eq!(Currency::JPY.round(dec!(2.5)), dec!(2));
        assert_eq!(Currency::JPY.round(dec!(3.5)), dec!(4));
        assert_eq!(Currency::KWD.round(dec!(1.0005)), dec!(1.000));
        assert_eq!(Currency::USD.round_down(dec!(0.129)), dec!(0.12));
    }

    #[test]
    fn adding_different_currencies_is_an_error() {
        let a = Money::new(dec!(1), Currency::USD);
        let b = Money::new(dec!(1), Currency::EUR);
        assert_eq!(
            a.checked_add(b),
            Err(MoneyError::CurrencyMismatch {
                left: Currency::USD,
                right: Currency::EUR
            })
        );
        assert_eq!(a.checked_add(a).unwrap().amount, dec!(2));
    }

    #[derive(Deserialize)]
    struct Line {
        #[serde(with = "decimal")]
        price: Decimal,
    }

    #[test]
    fn json_numbers_and_strings_parse_exactly() {
        // 0.1 + 0.2 as floats is 0.30000000000000004; as text it is exact.
        let a: Line = serde_json::from_str(r#"{"price": 0.1}"#).unwrap();
        let b: Line = serde_json::from_str(r#"{"price": "0.2"}"#).unwrap();
        assert_eq!(a.price + b.price, dec!(0.3));
        let big: Line = serde_json::from_str(r#"{"price": 12345678901234567.89}"#).unwrap();
        assert_eq!(big.price, dec!(12345678901234567.89));
        let int: Line = serde_json::from_str(r#"{"price": 42}"#).unwrap();
        assert_eq!(int.price, dec!(42));
    }

    #[test]
    fn malformed_amounts_are_refused() {
        assert!(serde_json::from_str::<Line>(r#"{"price": "1e3"}"#).is_err());
        assert!(serde_json::from_str::<Line>(r#"{"price": "abc"}"#).is_err());
        assert!(serde_json::from_str::<Amount>(r#""0.0000000000001""#).is_err());
        assert!(serde_json::from_str::<Line>(r#"{"price": {"x": 1}}"#).is_err());
    }

    #[test]
    fn a_recorded_amount_with_a_long_fraction_reads_back_exactly() {
        // What an earlier version recorded for a refund of 1 of 3 units (2/3 of 10.00): input
        // is held to 12 decimals, but what was recorded is read as it was written.
        let recorded = r#"{"price": "6.6666666666666666666666666667"}"#;
        let line: Line = serde_json::from_str(recorded).expect("recorded amounts read back");
        assert_eq!(line.price.to_string(), "6.6666666666666666666666666667");
        assert!(serde_json::from_str::<Amount>(r#""6.6666666666666666666666666667""#).is_err());
    }

    #[test]
    fn money_round_trips_through_json_as_strings() {
        let m = Money::new(dec!(19.80), Currency::USD);
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(text, r#"{"amount":"19.80","currency":"USD"}"#);
        assert_eq!(serde_json::from_str::<Money>(&text).unwrap(), m);
    }
}
