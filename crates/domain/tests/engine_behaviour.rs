//! The commission engine, given a snapshot and lines, then these payouts or this error.

mod support;

use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use support::*;
use upline_domain::engine::{calculate, CommissionableLine, Decision, EngineError};
use upline_domain::ids::{LineId, SkuId};
use upline_domain::money::Currency;
use upline_domain::snapshot::DistributorStatus::{Active, Inactive, Suspended};

fn cl(line_id: &str, class_name: &str, base: Decimal) -> CommissionableLine {
    CommissionableLine {
        line_id: LineId::new(line_id).unwrap(),
        sku_id: SkuId::new("SKU").unwrap(),
        commission_class: class(class_name),
        quantity: dec!(1),
        net: base,
        pv: Decimal::ZERO,
        base,
    }
}

/// d0 gold sells; d1 is inactive; d2 is only a member; d3 silver; d4 gold at the top.
fn mixed_chain() -> Vec<upline_domain::snapshot::SnapshotMember> {
    vec![
        member("d0", 0, Active, "gold"),
        member("d1", 1, Inactive, "silver"),
        member("d2", 2, Active, "member"),
        member("d3", 3, Active, "silver"),
        member("d4", 4, Active, "gold"),
    ]
}

fn amounts(outcome: &upline_domain::engine::CommissionOutcome) -> Vec<(String, u32, Decimal)> {
    outcome
        .payouts
        .iter()
        .map(|p| (p.beneficiary.to_string(), p.level, p.amount))
        .collect()
}

#[test]
fn compression_skips_inactive_and_rank_limits_levels() {
    // Given the mixed chain, when a 100.00 retail line and a 50.00 kit line are calculated:
    let snap = snapshot(t(10), mixed_chain(), true);
    let lines = [
        cl("l1", "retail", dec!(100.00)),
        cl("l2", "kit", dec!(50.00)),
    ];
    let outcome = calculate(Currency::USD, &lines, &snap, &plan()).unwrap();
    // then d0 earns level 1 on both lines (10 + 10), d1 is skipped without using a level, d2
    // uses level 2 but a member is paid 1 level only, d3 is paid level 3 (retail 4 %, kit
    // nothing), d4 level 4 (retail 3 %).
    assert_eq!(
        amounts(&outcome),
        vec![
            ("d0".into(), 1, dec!(20.00)),
            ("d3".into(), 3, dec!(4.00)),
            ("d4".into(), 4, dec!(3.00))
        ]
    );
    let decisions: Vec<_> = outcome
        .trace
        .iter()
        .map(|s| (s.level, s.decision.clone()))
        .collect();
    assert_eq!(
        decisions,
        vec![
            (Some(1), Decision::Paid),
            (None, Decision::SkippedByCompression),
            (Some(2), Decision::RankTooLow { paid_levels: 1 }),
            (Some(3), Decision::Paid),
            (Some(4), Decision::Paid),
        ]
    );
    assert_eq!(outcome.commissionable_base, dec!(150.00));
    assert_eq!(outcome.cap, dec!(60.00));
    assert_eq!(outcome.total, dec!(27.00));
}

#[test]
fn without_compression_a_non_qualifying_member_uses_up_the_level() {
    let mut p = plan();
    p.compression = false;
    let snap = snapshot(t(10), mixed_chain(), true);
    let outcome = calculate(
        Currency::USD,
        &[cl("l1", "retail", dec!(100.00))],
        &snap,
        &p,
    )
    .unwrap();
    assert_eq!(
        amounts(&outcome),
        vec![
            ("d0".into(), 1, dec!(10.00)),
            ("d3".into(), 4, dec!(3.00)),
            ("d4".into(), 5, dec!(2.00))
        ]
    );
    assert_eq!(outcome.trace[1].decision, Decision::StatusNotQualifying);
    assert_eq!(outcome.trace[1].level, Some(2));
}

#[test]
fn the_cap_is_taken_from_the_shallowest_level_down() {
    // Given a cap of 15 % on a 150.00 base (22.50),
    let mut p = plan();
    p.max_payout_ratio = dec!(0.15);
    let snap = snapshot(t(10), mixed_chain(), true);
    let lines = [
        cl("l1", "retail", dec!(100.00)),
        cl("l2", "kit", dec!(50.00)),
    ];
    let outcome = calculate(Currency::USD, &lines, &snap, &p).unwrap();
    // then d0 is paid in full, d3 is cut to the remaining 2.50 and d4 gets nothing.
    assert_eq!(
        amounts(&outcome),
        vec![("d0".into(), 1, dec!(20.00)), ("d3".into(), 3, dec!(2.50))]
    );
    assert_eq!(
        outcome.trace[3].decision,
        Decision::CutByCap {
            from: dec!(4.00),
            to: dec!(2.50)
        }
    );
    assert_eq!(
        outcome.trace[4].decision,
        Decision::CutByCap {
            from: dec!(3.00),
            to: dec!(0)
        }
    );
    assert_eq!(outcome.total, dec!(22.50));
}

#[test]
fn each_beneficiary_is_rounded_half_even_once_per_order() {
    let snap = snapshot(t(10), vec![member("d0", 0, Active, "gold")], true);
    // 0.25 x 10 % = 0.025 and 0.10 x 10 % = 0.010: per line they would round to 0.02 + 0.01, but
    // the order's sum 0.035 rounds once, half-even, to 0.04.
    let lines = [
        cl("l1", "retail", dec!(0.25)),
        cl("l2", "retail", dec!(0.10)),
    ];
    let outcome = calculate(Currency::USD, &lines, &snap, &plan()).unwrap();
    assert_eq!(outcome.payouts[0].unrounded, dec!(0.035));
    assert_eq!(outcome.payouts[0].amount, dec!(0.04));
    // JPY has no minor unit: 1234 x 10 % = 123.4 -> 123.
    let outcome = calculate(
        Currency::JPY,
        &[cl("l1", "retail", dec!(1234))],
        &snap,
        &plan(),
    )
    .unwrap();
    assert_eq!(outcome.payouts[0].amount, dec!(123));
}

#[test]
fn calculating_twice_gives_identical_bytes() {
    let snap = snapshot(t(10), mixed_chain(), true);
    let lines = [
        cl("l1", "retail", dec!(33.33)),
        cl("l2", "subscription", dec!(19.99)),
    ];
    let a = serde_json::to_vec(&calculate(Currency::USD, &lines, &snap, &plan()).unwrap()).unwrap();
    let b = serde_json::to_vec(&calculate(Currency::USD, &lines, &snap, &plan()).unwrap()).unwrap();
    assert_eq!(a, b);
}

#[test]
fn an_altered_snapshot_is_refused() {
    let mut snap = snapshot(t(10), mixed_chain(), true);
    snap.members[1].status = Active;
    let err = calculate(
        Currency::USD,
        &[cl("l1", "retail", dec!(1))],
        &snap,
        &plan(),
    )
    .unwrap_err();
    assert!(matches!(err, EngineError::SnapshotAltered(_)), "{err}");
}

#[test]
fn a_class_missing_from_the_plan_is_refused_with_the_line() {
    let snap = snapshot(t(10), mixed_chain(), true);
    let err = calculate(
        Currency::USD,
        &[cl("l9", "gadgets", dec!(1))],
        &snap,
        &plan(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "line l9: commission class gadgets is not in plan test-1"
    );
}

#[test]
fn an_earning_rank_off_the_ladder_earns_nothing_uses_its_level_and_the_order_calculates() {
    // Given d0 holds a rank the ladder does not know and d1 above is gold,
    let off_ladder = vec![
        member("d0", 0, Active, "platinum"),
        member("d1", 1, Active, "gold"),
    ];
    // when the order is calculated,
    let outcome = calculate(
        Currency::USD,
        &[cl("l1", "retail", dec!(10))],
        &snapshot(t(10), off_ladder, true),
        &plan(),
    )
    .expect("an off-ladder rank never fails an order");
    // then d0 uses level 1 and earns nothing, the trace says why, and d1 is paid on level 2.
    assert_eq!(outcome.trace[0].level, Some(1));
    assert_eq!(outcome.trace[0].decision, Decision::RankNotOnLadder);
    assert_eq!(amounts(&outcome), vec![("d1".into(), 2, dec!(0.50))]);
    let skipped = vec![
        member("d0", 0, Suspended, "platinum"),
        member("d1", 1, Active, "gold"),
    ];
    let outcome = calculate(
        Currency::USD,
        &[cl("l1", "retail", dec!(10))],
        &snapshot(t(10), skipped, true),
        &plan(),
    )
    .unwrap();
    assert_eq!(amounts(&outcome), vec![("d1".into(), 1, dec!(1.00))]);
}

#[test]
fn a_snapshot_shallower_than_the_plan_is_refused() {
    // Two members, not at the top, but the plan pays five levels: replaying with it would
    // silently underpay.
    let short = vec![
        member("d0", 0, Active, "gold"),
        member("d1", 1, Active, "gold"),
    ];
    let err = calculate(
        Currency::USD,
        &[cl("l1", "retail", dec!(1))],
        &snapshot(t(10), short, false),
        &plan(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            EngineError::SnapshotTooShallow {
                levels_found: 2,
                plan_levels: 5,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_negative_base_is_refused() {
    let snap = snapshot(t(10), mixed_chain(), true);
    let err = calculate(
        Currency::USD,
        &[cl("l1", "retail", dec!(-1))],
        &snap,
        &plan(),
    )
    .unwrap_err();
    assert!(matches!(err, EngineError::NegativeBase { .. }));
}
