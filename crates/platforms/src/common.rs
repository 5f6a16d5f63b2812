//! What every payload transform shares: JSON parsing with named paths, ids kept as text,
//! timestamps, loose text for hints, and the bounds.

use std::fmt;

use chrono::{DateTime, NaiveDateTime, Utc};
use rust_decimal::Decimal;
use serde::de::{DeserializeOwned, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use upline_domain::ids::{LineId, PlatformOrderId, RefundId};

use crate::error::PayloadError;
use crate::{MAX_HINT_VALUES, MAX_LINES};

/// The key serde_json's `arbitrary_precision` uses to hand a number's digits to a visitor.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// Parses `body` as a `T`, naming the JSON path of the first value that does not fit: a syntax
/// error is reported on `body` with serde's line and column, a missing field as `parent.field`.
pub(crate) fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, PayloadError> {
    // Syntax first (cheap, allocates nothing), so that a broken body is reported as such rather
    // than as whichever field the typed pass happened to miss before reaching the damage.
    serde_json::from_slice::<IgnoredAny>(body).map_err(|e| json_error(".", &e))?;
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        json_error(&path, e.inner())
    })?;
    de.end().map_err(|e| json_error(".", &e))?;
    Ok(value)
}

/// Parses `body` as an untyped JSON value (to look at its shape first).
pub(crate) fn parse_value(body: &[u8]) -> Result<serde_json::Value, PayloadError> {
    parse(body)
}

fn json_error(path: &str, e: &serde_json::Error) -> PayloadError {
    if e.is_syntax() || e.is_eof() || e.is_io() {
        return PayloadError::new("body", format!("not valid JSON: {e}"));
    }
    let message = e.to_string();
    let root = path == "." || path.is_empty();
    // serde says "missing field `id`" on the parent object: name the field itself.
    if let Some(rest) = message.strip_prefix("missing field `") {
        if let Some(end) = rest.find('`') {
            let name = &rest[..end];
            let field = if root {
                name.to_string()
            } else {
                format!("{path}.{name}")
            };
            return PayloadError::new(field, "is required");
        }
    }
    let field = if root {
        "body".to_string()
    } else {
        path.to_string()
    };
    PayloadError::new(field, message)
}

/// An identifier as text, from a JSON string or an integer of any size (Shopify ids exceed 2^53:
/// they are read from their digits, never through a float).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Id(pub String);

impl Id {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an id (a string or an integer)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Id, E> {
                Ok(Id(v.trim().to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Id, E> {
                Ok(Id(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Id, E> {
                Ok(Id(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Id, E> {
                Err(E::custom(format!(
                    "id {v} arrived as a float; ids must be integers"
                )))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Id, A::Error> {
                let key: Option<String> = map.next_key()?;
                if key.as_deref() != Some(NUMBER_TOKEN) {
                    return Err(serde::de::Error::custom(
                        "expected an id (a string or an integer), found an object",
                    ));
                }
                let digits: String = map.next_value()?;
                if digits.bytes().all(|b| b.is_ascii_digit()) && !digits.is_empty() {
                    Ok(Id(digits))
                } else {
                    Err(serde::de::Error::custom(format!(
                        "id {digits} is not an integer"
                    )))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// A platform timestamp: RFC 3339 with an offset, or a naive `YYYY-MM-DD[T ]HH:MM:SS` read as
/// UTC (WooCommerce's `*_gmt` fields and Magento's columns are UTC without a suffix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp(pub DateTime<Utc>);

pub(crate) fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    let t = text.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Ok(dt.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"] {
        if let Ok(dt) = DateTime::parse_from_str(t, format) {
            return Ok(dt.with_timezone(&Utc));
        }
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(t, format) {
            return Ok(naive.and_utc());
        }
    }
    Err(format!(
        "{text:?} is not a timestamp (RFC 3339, or YYYY-MM-DD HH:MM:SS in UTC)"
    ))
}

impl<'de> Deserialize<'de> for Stamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_time(&text)
            .map(Stamp)
            .map_err(serde::de::Error::custom)
    }
}

/// A timestamp field that may be absent, `null` or an empty string (WooCommerce sends `""` for
/// unset dates in some versions).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct OptStamp(pub Option<DateTime<Utc>>);

impl<'de> Deserialize<'de> for OptStamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        match text.as_deref().map(str::trim) {
            None | Some("") => Ok(OptStamp(None)),
            Some(t) => parse_time(t)
                .map(|dt| OptStamp(Some(dt)))
                .map_err(serde::de::Error::custom),
        }
    }
}

/// Any JSON value read as text when it is a string or a number, `None` otherwise. Used for
/// free-form values (note attributes, meta data) that must never fail a payload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LooseText(pub Option<String>);

impl LooseText {
    /// The trimmed text, `None` when empty.
    pub(crate) fn text(&self) -> Option<&str> {
        self.0.as_deref().map(str::trim).filter(|t| !t.is_empty())
    }
}

impl<'de> Deserialize<'de> for LooseText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LooseText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<LooseText, E> {
                Ok(LooseText(Some(v.to_string())))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<LooseText, E> {
                Ok(LooseText(Some(v.to_string())))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<LooseText, E> {
                Ok(LooseText(Some(v.to_string())))
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<LooseText, E> {
                Ok(LooseText(None))
            }
            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<LooseText, E> {
                Ok(LooseText(None))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<LooseText, E> {
                Ok(LooseText(None))
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<LooseText, E> {
                Ok(LooseText(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<LooseText, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(LooseText(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LooseText, A::Error> {
                let Some(first) = map.next_key::<String>()? else {
                    return Ok(LooseText(None));
                };
                if first == NUMBER_TOKEN {
                    let digits: String = map.next_value()?;
                    return Ok(LooseText(Some(digits)));
                }
                map.next_value::<IgnoredAny>()?;
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(LooseText(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// An ordered quantity: a whole number of units above zero, else an error naming `field`. The
/// domain counts units (CV x quantity, refunds by quantity): a fraction, zero or a negative
/// number is a payload no platform sends for a real line, and guessing (rounding, dropping the
/// line) would pay on something that was not sold. Trailing zeros (`"2.0000"`, Magento) are
/// whole numbers.
pub(crate) fn ordered_quantity(field: &str, quantity: Decimal) -> Result<Decimal, PayloadError> {
    if !quantity.fract().is_zero() {
        return Err(PayloadError::new(
            field,
            format!("{quantity} is not a whole number of units"),
        ));
    }
    if quantity <= Decimal::ZERO {
        return Err(PayloadError::new(
            field,
            format!("{quantity} is not a positive quantity"),
        ));
    }
    Ok(quantity)
}

/// A refunded quantity: zero means the row refunds nothing (`None`: platforms repeat rows they
/// did not refund); a fraction or a negative number is an error naming `field`.
pub(crate) fn refunded_quantity(
    field: &str,
    quantity: Decimal,
) -> Result<Option<Decimal>, PayloadError> {
    if quantity < Decimal::ZERO {
        return Err(PayloadError::new(field, format!("{quantity} is negative")));
    }
    if !quantity.fract().is_zero() {
        return Err(PayloadError::new(
            field,
            format!("{quantity} is not a whole number of units"),
        ));
    }
    Ok((!quantity.is_zero()).then_some(quantity))
}

/// A unit price: zero is a free item, a negative price is an error naming `field` (a refund or
/// a discount is not a negative price).
pub(crate) fn unit_price(field: &str, price: Decimal) -> Result<Decimal, PayloadError> {
    if price < Decimal::ZERO {
        return Err(PayloadError::new(field, format!("{price} is negative")));
    }
    Ok(price)
}

/// The value of the `ref` query parameter of a URL, absolute (`https://shop/?ref=X`) or relative
/// (`/products/kit?ref=X`).
pub(crate) fn ref_from_url(raw: &str) -> Option<String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    let base = url::Url::parse("https://relative.invalid/").ok()?;
    let parsed = url::Url::parse(raw).or_else(|_| base.join(raw)).ok()?;
    let found = parsed
        .query_pairs()
        .find(|(k, _)| k == "ref")
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty());
    found
}

/// Pushes a hint value (trimmed, non-empty, not already listed, at most [`MAX_HINT_VALUES`]).
pub(crate) fn push_hint(list: &mut Vec<String>, value: Option<&str>) {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return;
    };
    if list.len() < MAX_HINT_VALUES && !list.iter().any(|known| known == v) {
        list.push(v.to_string());
    }
}

pub(crate) fn order_id(field: &str, id: &str) -> Result<PlatformOrderId, PayloadError> {
    PlatformOrderId::new(id).map_err(|e| PayloadError::new(field, e.to_string()))
}

pub(crate) fn line_id(field: &str, id: &str) -> Result<LineId, PayloadError> {
    LineId::new(id).map_err(|e| PayloadError::new(field, e.to_string()))
}

pub(crate) fn refund_id(field: &str, id: &str) -> Result<RefundId, PayloadError> {
    RefundId::new(id).map_err(|e| PayloadError::new(field, e.to_string()))
}

/// Refuses more lines than the domain accepts, before any per-line work.
pub(crate) fn check_line_count(field: &str, count: usize) -> Result<(), PayloadError> {
    if count > MAX_LINES {
        return Err(PayloadError::new(
            field,
            format!("at most {MAX_LINES} lines are accepted; this payload has {count}"),
        ));
    }
    Ok(())
}

/// Refuses a list longer than `max` (refunds, codes), naming it.
pub(crate) fn check_count(field: &str, count: usize, max: usize) -> Result<(), PayloadError> {
    if count > max {
        return Err(PayloadError::new(
            field,
            format!("at most {max} entries are accepted; this payload has {count}"),
        ));
    }
    Ok(())
}

/// Sums decimals, naming `field` on overflow.
pub(crate) fn sum(
    field: &str,
    items: impl IntoIterator<Item = Decimal>,
) -> Result<Decimal, PayloadError> {
    items
        .into_iter()
        .try_fold(Decimal::ZERO, |acc, x| acc.checked_add(x))
        .ok_or_else(|| PayloadError::new(field, "amounts too large to add up"))
}

/// Lower-cased, trimmed topic / status text.
pub(crate) fn norm(text: &str) -> String {
    text.trim().to_ascii_lowercase()
}

/// `null` or absent reads as an empty list (`#[serde(default, deserialize_with = ...)]`).
pub(crate) fn nullable_vec<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}
