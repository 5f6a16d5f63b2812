//! Every plan that validates calculates every order.
//!
//! Random valid plans (written as TOML and read by the real parser: ladders shorter than the
//! classes, `rates = []`, compression on and off, any qualifying statuses) and random networks
//! (ranks off the ladder, inactive, suspended and terminated members, a network of one) must
//! calculate every order, and the calculation's trace must explain every member it recorded.

#[path = "support/random.rs"]
mod random;
#[path = "support/reference.rs"]
mod reference;
mod support;

use proptest::prelude::*;
use random::*;
use rust_decimal::Decimal;
use support::{key, t};
use upline_domain::engine::{CommissionOutcome, Decision, TraceStep};
use upline_domain::order::*;
use upline_domain::plan::CommissionPlan;

/// The first calculation's inputs and its whole outcome, recomputed from them as GetOrder and
/// `plan explain` do (the event records the payouts, which the recomputation must give again).
fn first_calculation<'e>(
    events: &'e [OrderEvent],
    plans: &dyn PlanSource,
) -> Option<(&'e CalculationInputs, CommissionOutcome)> {
    let mut state = OrderState::default();
    events.iter().find_map(|e| {
        evolve(&mut state, e);
        let OrderEvent::CommissionCalculated { inputs, outcome } = e else {
            return None;
        };
        let full = explained_outcome(&state, plans).ok().flatten()?;
        (&full.summary() == outcome).then_some((inputs.as_ref(), full))
    })
}

/// The step says why the member earned what they earned, consistently with the plan.
fn explains(
    step: &TraceStep,
    level: Option<u32>,
    plan: &CommissionPlan,
    outcome: &CommissionOutcome,
) -> Result<(), TestCaseError> {
    let who = &step.distributor_id;
    prop_assert_eq!(step.level, level, "{}: level", who);
    let paid = outcome.amount_for(who);
    let qualifies = plan.qualifies(step.status);
    let unlocked = plan.paid_levels(&step.rank);
    match &step.decision {
        Decision::SkippedByCompression => {
            prop_assert!(
                !qualifies && plan.compression,
                "{who} skipped but qualifies"
            )
        }
        Decision::StatusNotQualifying => {
            prop_assert!(!qualifies && !plan.compression, "{who}: status")
        }
        Decision::RankTooLow { paid_levels } => {
            prop_assert!(qualifies, "{who}: rank too low but does not qualify");
            prop_assert_eq!(unlocked.unwrap_or(0), *paid_levels, "{}: unlocked", who);
            prop_assert!(
                level.is_some_and(|l| l > *paid_levels),
                "{who}: rank too low"
            );
        }
        Decision::NoRateAtLevel | Decision::Paid | Decision::CutByCap { .. } => {
            prop_assert!(qualifies, "{who} earns without qualifying");
            let unlocked = unlocked.ok_or_else(|| {
                TestCaseError::fail(format!("{who}: rank {} is off the ladder", step.rank))
            })?;
            prop_assert!(
                level.is_some_and(|l| l <= unlocked),
                "{who}: level not unlocked"
            );
        }
        // A decision added later (e.g. for a rank off the ladder) must at least pay nothing.
        #[allow(unreachable_patterns)]
        _ => {}
    }
    match &step.decision {
        Decision::Paid => {}
        Decision::CutByCap { to, .. } => prop_assert_eq!(paid, *to, "{}: cut to", who),
        _ => prop_assert_eq!(paid, Decimal::ZERO, "{}: paid without a reason", who),
    }
    Ok(())
}

/// Every member of the recorded snapshot has one step, in the walk's order, levels counted as
/// the plan says; every payout has its step; the walk covers the plan's paid depth.
fn trace_explains_each_member(
    document: &PlanDocument,
    inputs: &CalculationInputs,
    plan: &CommissionPlan,
    outcome: &CommissionOutcome,
) -> Result<(), TestCaseError> {
    let recorded: Vec<_> = inputs
        .snapshot
        .members
        .iter()
        .map(|m| &m.distributor_id)
        .collect();
    let traced: Vec<_> = outcome.trace.iter().map(|s| &s.distributor_id).collect();
    prop_assert_eq!(&traced, &recorded, "one step per recorded member");
    let mut level = 0u32;
    for step in &outcome.trace {
        let uses_level = plan.qualifies(step.status) || !plan.compression;
        let expected = uses_level.then(|| {
            level += 1;
            level
        });
        explains(step, expected, plan, outcome)?;
    }
    prop_assert!(
        inputs.snapshot.reached_top || level == document.paid_depth(),
        "the walk stopped after {} levels, not at the top, but the plan pays {}",
        level,
        document.paid_depth()
    );
    for payout in &outcome.payouts {
        prop_assert!(
            outcome
                .trace
                .iter()
                .any(|s| s.distributor_id == payout.beneficiary && s.level == Some(payout.level)),
            "payout to {} has no step",
            payout.beneficiary
        );
    }
    let total: Decimal = outcome.payouts.iter().map(|p| p.amount).sum();
    prop_assert_eq!(total, outcome.total, "total");
    prop_assert!(outcome.total <= outcome.cap, "over the cap");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    /// Given a valid plan (as its designer would write it) and any network,
    /// when an order by any member is placed and paid,
    /// then the plan parses, the order calculates, and the trace explains every member.
    #[test]
    fn every_valid_plan_calculates_every_order(
        document in plan_document(Cases::ALL),
        network in network_drafts(10),
        product_picks in product_drafts(),
        order in order_draft(),
    ) {
        let plan = document.parse().map_err(|e| {
            TestCaseError::fail(format!("a valid plan is refused:\n{e}\n{}", document.toml()))
        })?;
        let members = members(&network, &document.rank_names(), true);
        let products = products(&product_picks, &document.class_names());
        let sale = sale(&order, members.len(), Cases::ALL);
        let company = company(plan, &members, &products);

        let mut state = OrderState::default();
        let mut events = Vec::new();
        for command in [
            OrderCommand::RecordOrder(details(&sale, &members)),
            OrderCommand::RecordPayment { paid_at: t(11) },
        ] {
            let decided = decide(&state, &key(), &command, &company).map_err(|e| {
                TestCaseError::fail(format!("the order does not calculate: {e}\n{}", document.toml()))
            })?;
            for e in &decided {
                evolve(&mut state, e);
            }
            events.extend(decided);
        }
        let (inputs, outcome) = first_calculation(&events, &company)
            .ok_or_else(|| TestCaseError::fail("paid, but no calculation that recomputes"))?;
        let plan = recorded_plan(inputs, &company)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        trace_explains_each_member(&document, inputs, plan, &outcome)?;
    }
}
