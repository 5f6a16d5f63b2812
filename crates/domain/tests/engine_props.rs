//! Properties of the commission engine over random uplines, lines and plans.

mod support;

use std::collections::BTreeMap;

use proptest::prelude::*;
use rust_decimal::Decimal;
use support::*;
use upline_domain::engine::{calculate, CommissionableLine, Decision};
use upline_domain::ids::{LineId, SkuId};
use upline_domain::money::Currency;
use upline_domain::snapshot::{DistributorStatus, SnapshotMember};

fn status() -> impl Strategy<Value = DistributorStatus> {
    prop_oneof![
        4 => Just(DistributorStatus::Active),
        1 => Just(DistributorStatus::Inactive),
        1 => Just(DistributorStatus::Suspended),
        1 => Just(DistributorStatus::Terminated),
    ]
}

fn chain() -> impl Strategy<Value = Vec<SnapshotMember>> {
    prop::collection::vec(
        (
            status(),
            prop::sample::select(vec!["member", "bronze", "silver", "gold"]),
        ),
        1..14,
    )
    .prop_map(|ms| {
        ms.into_iter()
            .enumerate()
            .map(|(i, (s, r))| member(&format!("d{i}"), i as u32, s, r))
            .collect()
    })
}

fn lines() -> impl Strategy<Value = Vec<CommissionableLine>> {
    prop::collection::vec(
        (
            prop::sample::select(vec!["retail", "kit", "subscription"]),
            0i64..10_000_000,
        ),
        1..6,
    )
    .prop_map(|ls| {
        ls.into_iter()
            .enumerate()
            .map(|(i, (c, cents))| CommissionableLine {
                line_id: LineId::new(format!("l{i}")).unwrap(),
                sku_id: SkuId::new("S").unwrap(),
                commission_class: class(c),
                quantity: Decimal::ONE,
                net: Decimal::new(cents, 2),
                pv: Decimal::ZERO,
                base: Decimal::new(cents, 2),
            })
            .collect()
    })
}

fn currency() -> impl Strategy<Value = Currency> {
    prop_oneof![
        Just(Currency::USD),
        Just(Currency::JPY),
        Just(Currency::KWD)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn calculation_obeys_its_rules(
        members in chain(),
        lines in lines(),
        ratio_pct in 1i64..=100,
        compression in any::<bool>(),
        currency in currency(),
    ) {
        let mut plan = plan();
        plan.max_payout_ratio = Decimal::new(ratio_pct, 2);
        plan.compression = compression;
        let snap = snapshot(t(10), members.clone(), true);
        let outcome = calculate(currency, &lines, &snap, &plan).unwrap();

        // Deterministic: the same inputs serialise to the same bytes.
        let again = calculate(currency, &lines, &snap, &plan).unwrap();
        prop_assert_eq!(serde_json::to_vec(&outcome).unwrap(), serde_json::to_vec(&again).unwrap());

        // No negative amount anywhere.
        prop_assert!(outcome.lines.iter().all(|l| l.amount >= Decimal::ZERO));
        prop_assert!(outcome.payouts.iter().all(|p| p.amount > Decimal::ZERO));

        // The total is the sum of the payouts and never exceeds the cap.
        let total: Decimal = outcome.payouts.iter().map(|p| p.amount).sum();
        prop_assert_eq!(total, outcome.total);
        prop_assert!(outcome.total <= outcome.cap);
        prop_assert!(outcome.cap <= plan.max_payout_ratio * outcome.commissionable_base);

        // Each amount equals base x rate within half a minor unit, unless the cap cut it.
        let half = currency.smallest_unit() / Decimal::TWO;
        let mut exact: BTreeMap<String, Decimal> = BTreeMap::new();
        for l in &outcome.lines {
            prop_assert_eq!(l.amount, l.base * l.rate);
            *exact.entry(l.beneficiary.to_string()).or_default() += l.amount;
        }
        for p in &outcome.payouts {
            let step = outcome.trace.iter().find(|s| s.distributor_id == p.beneficiary).unwrap();
            if step.decision == Decision::Paid {
                prop_assert!((p.amount - exact[p.beneficiary.as_str()]).abs() <= half);
            } else {
                let cut = matches!(step.decision, Decision::CutByCap { .. });
                prop_assert!(cut, "unexpected decision {:?}", step.decision);
            }
        }

        // Under compression, a member whose status does not qualify never uses a level nor earns.
        for (m, step) in members.iter().zip(&outcome.trace) {
            if m.status != DistributorStatus::Active {
                prop_assert_eq!(outcome.amount_for(&m.distributor_id), Decimal::ZERO);
                if compression {
                    prop_assert_eq!(step.level, None);
                    prop_assert_eq!(&step.decision, &Decision::SkippedByCompression);
                }
            }
        }
        // Levels are handed out 1, 2, 3, ... without gaps.
        let levels: Vec<u32> = outcome.trace.iter().filter_map(|s| s.level).collect();
        prop_assert_eq!(levels.clone(), (1..=levels.len() as u32).collect::<Vec<_>>());
    }
}
