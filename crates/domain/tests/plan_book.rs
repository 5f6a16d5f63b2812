//! Plan versions over time, and the content hash that identifies a plan document.

use chrono::{DateTime, Duration, Utc};
use rust_decimal_macros::dec;
use upline_domain::ids::CommissionClass;
use upline_domain::plan::{CommissionPlan, PlanBook, PlanBookError};
use upline_domain::snapshot::DistributorStatus;

const EXAMPLE: &str = include_str!("../../../examples/plan.toml");

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn plan(version: &str, effective_from: &str) -> CommissionPlan {
    let mut plan = CommissionPlan::from_toml(EXAMPLE).unwrap();
    plan.version = version.to_string();
    plan.effective_from = at(effective_from);
    plan
}

fn retail() -> CommissionClass {
    CommissionClass::new("retail").unwrap()
}

#[test]
fn in_force_at_picks_the_latest_plan_already_effective() {
    let mut book = PlanBook::default();
    assert!(book.is_empty());
    assert!(book.in_force_at(at("2030-01-01T00:00:00Z")).is_none());
    // Published out of order on purpose: the book orders by effective_from, not by arrival.
    book.publish(plan("2026.2", "2026-07-01T00:00:00Z"))
        .unwrap();
    book.publish(plan("2026.1", "2026-01-01T00:00:00Z"))
        .unwrap();
    book.publish(plan("2027.1", "2027-01-01T00:00:00Z"))
        .unwrap();
    assert_eq!(book.len(), 3);

    let version_at = |t: DateTime<Utc>| book.in_force_at(t).map(|p| p.version.as_str());
    let second = at("2026-07-01T00:00:00Z");
    assert_eq!(version_at(at("2025-12-31T23:59:59.999999999Z")), None);
    assert_eq!(version_at(at("2026-01-01T00:00:00Z")), Some("2026.1"));
    assert_eq!(
        version_at(second - Duration::nanoseconds(1)),
        Some("2026.1")
    );
    assert_eq!(version_at(second), Some("2026.2"));
    assert_eq!(
        version_at(second + Duration::nanoseconds(1)),
        Some("2026.2")
    );
    assert_eq!(version_at(at("2026-12-31T23:59:59Z")), Some("2026.2"));
    assert_eq!(version_at(at("2027-01-01T00:00:00Z")), Some("2027.1"));
    assert_eq!(version_at(at("2099-01-01T00:00:00Z")), Some("2027.1"));

    let order: Vec<&str> = book.iter().map(|p| p.version.as_str()).collect();
    assert_eq!(order, ["2026.1", "2026.2", "2027.1"]);
    assert_eq!(book.get("2026.2").map(|p| p.effective_from), Some(second));
    assert!(book.get("2025.9").is_none());
}

#[test]
fn publishing_the_same_plan_again_is_a_no_op() {
    let mut book = PlanBook::default();
    book.publish(plan("2026.1", "2026-01-01T00:00:00Z"))
        .unwrap();
    book.publish(plan("2026.1", "2026-01-01T00:00:00Z"))
        .unwrap();
    assert_eq!(book.len(), 1);
}

#[test]
fn a_published_version_cannot_change_content() {
    let mut book = PlanBook::default();
    book.publish(plan("2026.1", "2026-01-01T00:00:00Z"))
        .unwrap();
    let mut changed = plan("2026.1", "2026-01-01T00:00:00Z");
    changed.classes.get_mut(&retail()).unwrap().rates[0].0 = dec!(0.11);
    let err = book.publish(changed).unwrap_err();
    assert!(
        matches!(err, PlanBookError::VersionConflict { ref version, .. } if version == "2026.1")
    );
    // Moving a published version to another date is a change of content too.
    let moved = plan("2026.1", "2026-02-01T00:00:00Z");
    assert!(matches!(
        book.publish(moved),
        Err(PlanBookError::VersionConflict { .. })
    ));
    assert_eq!(
        book.get("2026.1").unwrap().rate(&retail(), 1),
        Some(dec!(0.10))
    );
}

#[test]
fn two_versions_cannot_take_effect_at_the_same_instant() {
    let mut book = PlanBook::default();
    book.publish(plan("2026.1", "2026-01-01T00:00:00Z"))
        .unwrap();
    let err = book
        .publish(plan("2026.1b", "2026-01-01T00:00:00Z"))
        .unwrap_err();
    match err {
        PlanBookError::EffectiveFromTaken {
            version,
            existing_version,
            ..
        } => {
            assert_eq!(version, "2026.1b");
            assert_eq!(existing_version, "2026.1");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(book.len(), 1);
}

#[test]
fn an_invalid_plan_is_not_published() {
    let mut book = PlanBook::default();
    let mut bad = plan("2026.1", "2026-01-01T00:00:00Z");
    bad.max_payout_ratio = dec!(1.5);
    match book.publish(bad) {
        Err(PlanBookError::Invalid { errors, .. }) => {
            assert!(errors.has_field("max_payout_ratio"), "{errors}")
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(book.is_empty());
}

#[test]
fn content_hash_is_stable() {
    let a = CommissionPlan::from_toml(EXAMPLE).unwrap();
    let b = CommissionPlan::from_toml(EXAMPLE).unwrap();
    assert_eq!(a.content_hash(), b.content_hash());
    assert_eq!(a.content_hash().len(), 64);
    assert!(a.content_hash().chars().all(|c| c.is_ascii_hexdigit()));
    // Pinned on a fixed document: a change here means every recorded plan hash stops matching.
    // Change the canonical form only together with its HASH_FORM number.
    let fixed = r#"
        version = "pin.1"
        effective_from = "2026-01-01T00:00:00Z"
        max_payout_ratio = "0.40"
        qualifying_statuses = ["active"]
        compression = true
        ranks = [{ name = "member", paid_levels = 2 }]
        classes.retail.rates = ["0.10", "0.05"]
    "#;
    let fixed = CommissionPlan::from_toml(fixed).unwrap();
    assert_eq!(
        fixed.content_hash(),
        "8be2c512907ad273b6029b709d7caa81cfca9c257e45ad09487a7e036c55b476"
    );
}

#[test]
fn content_hash_changes_with_any_term_of_the_plan() {
    let base = CommissionPlan::from_toml(EXAMPLE).unwrap();
    let hash = base.content_hash();
    let changed = |f: &dyn Fn(&mut CommissionPlan)| {
        let mut p = base.clone();
        f(&mut p);
        p.content_hash()
    };
    assert_ne!(
        changed(&|p| p.classes.get_mut(&retail()).unwrap().rates[5].0 = dec!(0.02)),
        hash
    );
    assert_ne!(
        changed(&|p| p
            .classes
            .get_mut(&retail())
            .unwrap()
            .rates
            .push(Default::default())),
        hash
    );
    assert_ne!(changed(&|p| p.max_payout_ratio = dec!(0.41)), hash);
    assert_ne!(changed(&|p| p.compression = false), hash);
    assert_ne!(changed(&|p| p.ranks[3].paid_levels = 5), hash);
    assert_ne!(changed(&|p| p.ranks.swap(0, 1)), hash);
    assert_ne!(changed(&|p| p.version.push('x')), hash);
    assert_ne!(changed(&|p| p.effective_from += Duration::seconds(1)), hash);
    assert_ne!(changed(&|p| p.description.push('.')), hash);
    assert_ne!(
        changed(&|p| p.qualifying_statuses.push(DistributorStatus::Inactive)),
        hash
    );
}

#[test]
fn content_hash_ignores_layout_but_not_meaning() {
    let base = CommissionPlan::from_toml(EXAMPLE).unwrap();
    // "0.10" and "0.1" are the same rate; comments, key order and spacing are not content.
    let respelled = EXAMPLE
        .replace(r#""0.10", "0.05", "0.04""#, r#""0.1", "0.050", "0.04""#)
        .replace("# The cap:", "# The payout cap:");
    assert_ne!(respelled, EXAMPLE);
    let respelled = CommissionPlan::from_toml(&respelled).unwrap();
    assert_eq!(respelled.content_hash(), base.content_hash());
    // Statuses are a set: their order is not content.
    let mut a = base.clone();
    a.qualifying_statuses = vec![DistributorStatus::Active, DistributorStatus::Suspended];
    let mut b = base.clone();
    b.qualifying_statuses = vec![DistributorStatus::Suspended, DistributorStatus::Active];
    assert_eq!(a.content_hash(), b.content_hash());
}
