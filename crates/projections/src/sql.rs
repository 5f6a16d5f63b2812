//! What every projection's SQL shares, whichever the engine (SQLite or PostgreSQL through
//! `sqlx::Any`):
//!
//! * **Exact decimals as millionths.** Every amount or volume is a `BIGINT` column whose name ends
//!   in `_e6`, holding the value times 1,000,000: `19.80` is `19800000`. SQLite's NUMERIC affinity
//!   would store `19.80` as a binary float, so the read side never stores a decimal as such.
//!   [`to_e6`] refuses (with a typed error) a value with a non-zero digit beyond the sixth
//!   decimal or one out of `i64` range; [`from_e6`] gives the exact `Decimal` back. Dashboards
//!   divide by 1e6 (`balance_e6 / 1e6`, or `CAST(balance_e6 AS NUMERIC) / 1000000` in
//!   PostgreSQL for an exact result).
//! * **Positions and counts** are `BIGINT`; ids are derived from event positions (no
//!   `AUTOINCREMENT`, no `SERIAL`), so a rebuild gives identical rows.
//! * **Times** are `TEXT`, RFC 3339 UTC with microseconds (`2026-03-10T12:00:00.000000Z`), as in
//!   the event store: they sort as text in both engines.
//! * **Placeholders** are `$1, $2, ...` (both engines accept them through sqlx). Sums are cast
//!   back to `BIGINT` (`CAST(SUM(x) AS BIGINT)`), since PostgreSQL's `SUM(bigint)` is `NUMERIC`,
//!   which `sqlx::Any` cannot decode.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::error::ProjectionError;

/// A read-store transaction; a projection writes a batch of events and the runner the
/// checkpoint in the same one.
pub type Tx<'c> = sqlx::Transaction<'c, sqlx::Any>;

/// Millionths per unit.
pub const E6: i64 = 1_000_000;

/// The physical table of `logical` in generation `generation`: `ledger_entries_g3`.
pub fn table(logical: &str, generation: u32) -> String {
    format!("{logical}_g{generation}")
}

/// `value` in millionths, exactly: `19.80` → `19800000`. Refuses a value with a non-zero digit
/// beyond the sixth decimal ([`ProjectionError::TooManyDecimals`]) or whose millionths do not
/// fit an `i64` ([`ProjectionError::AmountOutOfRange`]); never rounds.
pub fn to_e6(value: Decimal) -> Result<i64, ProjectionError> {
    let scaled = value
        .checked_mul(Decimal::from(E6))
        .ok_or(ProjectionError::AmountOutOfRange { value })?;
    if !scaled.fract().is_zero() {
        return Err(ProjectionError::TooManyDecimals { value });
    }
    scaled
        .trunc()
        .to_i64()
        .ok_or(ProjectionError::AmountOutOfRange { value })
}

/// The exact decimal of `millionths`, with scale 6: `19800000` → `19.800000`.
pub fn from_e6(millionths: i64) -> Decimal {
    Decimal::new(millionths, 6)
}

/// [`from_e6`] shown with at least `min_scale` decimals and no trailing zeros beyond them:
/// `from_e6_scaled(19800000, 2)` → `19.80`, `from_e6_scaled(1234567, 2)` → `1.234567`.
pub fn from_e6_scaled(millionths: i64, min_scale: u32) -> Decimal {
    let mut value = from_e6(millionths).normalize();
    if value.scale() < min_scale {
        value.rescale(min_scale);
    }
    value
}

/// A global position (or count) as a `BIGINT`.
pub fn position_to_sql(position: u64) -> Result<i64, ProjectionError> {
    i64::try_from(position).map_err(|_| ProjectionError::Overflow {
        what: format!("position {position}"),
    })
}

/// A `BIGINT` read back as a position (or count).
pub fn position_from_sql(value: i64) -> Result<u64, ProjectionError> {
    u64::try_from(value).map_err(|_| ProjectionError::Corrupt(format!("negative position {value}")))
}

/// A time as stored: RFC 3339 UTC with microseconds.
pub fn time_to_sql(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A stored time read back.
pub fn time_from_sql(text: &str) -> Result<DateTime<Utc>, ProjectionError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| ProjectionError::Corrupt(format!("time {text:?}: {e}")))
}

/// Whether `name` can be spliced into SQL as an identifier: `[a-z][a-z0-9_]*`, at most 48
/// characters (PostgreSQL truncates identifiers at 63 bytes; the generation suffix and index
/// names need the rest).
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        && name.len() <= 48
}

/// Runs a projection's DDL statements in order, inside its transaction (`create_tables`).
pub async fn execute_all(tx: &mut Tx<'_>, statements: &[String]) -> Result<(), ProjectionError> {
    for statement in statements {
        sqlx::query(statement).execute(&mut **tx).await?;
    }
    Ok(())
}

/// A UTC day as stored: `YYYY-MM-DD`, so days sort as text.
pub fn day_to_sql(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}

pub fn day_from_sql(text: &str) -> Result<NaiveDate, ProjectionError> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|e| ProjectionError::Corrupt(format!("day {text:?}: {e}")))
}

/// A non-negative BIGINT column (a count or a position).
pub fn u64_column(row: &AnyRow, column: &str) -> Result<u64, ProjectionError> {
    position_from_sql(row.try_get(column)?)
}

/// An `_e6` column as the exact decimal it holds.
pub fn e6_column(row: &AnyRow, column: &str) -> Result<Decimal, ProjectionError> {
    Ok(from_e6(row.try_get(column)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn millionths_are_exact() {
        assert_eq!(to_e6(dec!(19.80)).unwrap(), 19_800_000);
        assert_eq!(to_e6(dec!(0.000001)).unwrap(), 1);
        assert_eq!(to_e6(dec!(-3.5)).unwrap(), -3_500_000);
        assert_eq!(to_e6(dec!(1.2345600000)).unwrap(), 1_234_560);
        assert_eq!(to_e6(Decimal::ZERO).unwrap(), 0);
        assert_eq!(from_e6(19_800_000), dec!(19.80));
        assert_eq!(from_e6(19_800_000).to_string(), "19.800000");
        assert_eq!(from_e6_scaled(19_800_000, 2).to_string(), "19.80");
        assert_eq!(from_e6_scaled(1_234_567, 2).to_string(), "1.234567");
        assert_eq!(from_e6_scaled(5_000_000, 0).to_string(), "5");
        for v in [dec!(19.80), dec!(-0.000001), dec!(9223372036854.775807)] {
            assert_eq!(from_e6(to_e6(v).unwrap()), v);
        }
    }

    #[test]
    fn millionths_refuse_what_they_cannot_hold() {
        assert!(matches!(
            to_e6(dec!(1.0000001)),
            Err(ProjectionError::TooManyDecimals { .. })
        ));
        assert!(matches!(
            to_e6(dec!(9223372036854.775808)),
            Err(ProjectionError::AmountOutOfRange { .. })
        ));
        assert!(matches!(
            to_e6(Decimal::MAX),
            Err(ProjectionError::AmountOutOfRange { .. })
        ));
    }

    #[test]
    fn identifiers() {
        assert!(is_identifier("ledger_entries"));
        assert!(!is_identifier("Ledger"));
        assert!(!is_identifier("x; DROP TABLE y"));
        assert!(!is_identifier(""));
        assert_eq!(table("ledger_entries", 3), "ledger_entries_g3");
    }
}
