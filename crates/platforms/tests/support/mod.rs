//! Shared helpers: fixtures (copied into tests/fixtures, never read from elsewhere) and small
//! builders.
#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::Value;
use upline_domain::ids::ShopId;
use upline_platforms::model::{Interpretation, OrderUpdate};

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

pub fn fixture_text(name: &str) -> String {
    String::from_utf8(fixture(name)).expect("fixture is UTF-8")
}

/// A fixture as a JSON value (numbers keep their digits: arbitrary_precision).
pub fn fixture_json(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).expect("fixture is JSON")
}

/// A wrapped REST fixture (`{"order": {...}}`) unwrapped into a webhook body.
pub fn unwrapped(name: &str, key: &str) -> Value {
    fixture_json(name)
        .get(key)
        .cloned()
        .unwrap_or_else(|| panic!("fixture {name} has no {key:?}"))
}

pub fn bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("serialises")
}

pub fn shop() -> ShopId {
    ShopId::new("demo-store.example.com").unwrap()
}

pub fn update(interpretation: Interpretation) -> OrderUpdate {
    match interpretation {
        Interpretation::Order(update) => update,
        Interpretation::Ignored { reason } => {
            panic!("expected an order update, got Ignored: {reason}")
        }
    }
}

pub fn ignored_reason(interpretation: Interpretation) -> String {
    match interpretation {
        Interpretation::Ignored { reason } => reason,
        Interpretation::Order(update) => panic!("expected Ignored, got {update:?}"),
    }
}

pub fn at(text: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(text)
        .expect("RFC 3339")
        .with_timezone(&chrono::Utc)
}

pub fn d(text: &str) -> rust_decimal::Decimal {
    text.parse().expect("decimal")
}
