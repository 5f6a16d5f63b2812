//! The order aggregate: given these events, when this command, then these events or this error.

mod support;

use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use support::*;
use upline_domain::ids::{LineId, RefundId};
use upline_domain::order::*;

fn given(events: &[OrderEvent]) -> OrderState {
    OrderState::from_events(events)
}

fn when(state: &OrderState, command: OrderCommand) -> Result<Vec<OrderEvent>, OrderError> {
    decide(state, &key(), &command, &FixedContext::gold_line())
}

/// Runs commands one after another, applying what each emits; returns all events.
fn history(commands: Vec<OrderCommand>) -> Vec<OrderEvent> {
    let mut state = OrderState::default();
    let mut all = Vec::new();
    for c in commands {
        for e in when(&state, c).unwrap() {
            evolve(&mut state, &e);
            all.push(e);
        }
    }
    all
}

fn refund(id: &str, lines: &[(&str, Decimal)]) -> Refund {
    Refund {
        refund_id: RefundId::new(id).unwrap(),
        refunded_at: t(20),
        scope: RefundScope::Lines(
            lines
                .iter()
                .map(|(l, q)| RefundLine {
                    line_id: LineId::new(l).unwrap(),
                    quantity: *q,
                    stated_net: None,
                })
                .collect(),
        ),
    }
}

fn holdings(state: &OrderState) -> Vec<(String, Decimal)> {
    state
        .holdings
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect()
}

fn names(events: &[OrderEvent]) -> Vec<&'static str> {
    events
        .iter()
        .map(|e| match e {
            OrderEvent::OrderPlaced { .. } => "OrderPlaced",
            OrderEvent::OrderRevised { .. } => "OrderRevised",
            OrderEvent::OrderPaid { .. } => "OrderPaid",
            OrderEvent::OrderRefunded { .. } => "OrderRefunded",
            OrderEvent::OrderCancelled { .. } => "OrderCancelled",
            OrderEvent::CommissionCalculated { .. } => "CommissionCalculated",
            OrderEvent::CommissionRecalculated { .. } => "CommissionRecalculated",
        })
        .collect()
}

const PAID: fn() -> OrderCommand = || OrderCommand::RecordPayment { paid_at: t(11) };
const PLACED: fn() -> OrderCommand = || OrderCommand::RecordOrder(order_details());

#[test]
fn recording_an_order_places_it_without_commission_until_paid() {
    let events = when(&given(&[]), PLACED()).unwrap();
    assert_eq!(names(&events), ["OrderPlaced"]);
    let OrderEvent::OrderPlaced { net_lines, .. } = &events[0] else {
        unreachable!()
    };
    assert_eq!(
        net_lines.iter().map(|l| l.net).collect::<Vec<_>>(),
        [dec!(100.00), dec!(99.00)]
    );
}

#[test]
fn payment_calculates_commissions_with_the_captured_inputs() {
    let state = given(&history(vec![PLACED()]));
    let events = when(&state, PAID()).unwrap();
    assert_eq!(names(&events), ["OrderPaid", "CommissionCalculated"]);
    let OrderEvent::CommissionCalculated { inputs, outcome } = &events[1] else {
        unreachable!()
    };
    // The kit's base is its CV (50 x 1), not its 99.00 price; the supplement's is its net 100.00.
    assert_eq!(
        inputs.lines.iter().map(|l| l.base).collect::<Vec<_>>(),
        [dec!(100.00), dec!(50)]
    );
    assert_eq!(inputs.lines[0].pv, dec!(20));
    assert!(inputs.snapshot.verify());
    assert_eq!(inputs.plan_version, "test-1");
    assert_eq!(inputs.sku_mappings.len(), 2);
    // d0: 10 % of 100 + 20 % of 50; d1: 5 % + 10 %; d2: 4 %; d3: 3 %; d4: 2 % (retail only).
    let paid: Vec<_> = outcome
        .payouts
        .iter()
        .map(|p| (p.beneficiary.to_string(), p.amount))
        .collect();
    assert_eq!(
        paid,
        [
            ("d0".to_string(), dec!(20.00)),
            ("d1".to_string(), dec!(10.00)),
            ("d2".to_string(), dec!(4.00)),
            ("d3".to_string(), dec!(3.00)),
            ("d4".to_string(), dec!(2.00))
        ]
    );
}

#[test]
fn a_fact_already_known_produces_no_event() {
    let state = given(&history(vec![
        PLACED(),
        PAID(),
        OrderCommand::RecordRefund(refund("r1", &[("l1", dec!(1))])),
    ]));
    assert!(when(&state, PLACED()).unwrap().is_empty());
    assert!(when(&state, PAID()).unwrap().is_empty());
    assert!(when(&state, OrderCommand::RecordPayment { paid_at: t(12) })
        .unwrap()
        .is_empty());
    assert!(when(
        &state,
        OrderCommand::RecordRefund(refund("r1", &[("l1", dec!(1))]))
    )
    .unwrap()
    .is_empty());
}

#[test]
fn payment_before_the_order_is_kept_and_calculated_when_the_order_arrives() {
    let state = given(&history(vec![PAID()]));
    assert_eq!(state.paid_at, Some(t(11)));
    assert!(state.calculation.is_none());
    let events = when(&state, PLACED()).unwrap();
    assert_eq!(names(&events), ["OrderPlaced", "CommissionCalculated"]);
}

#[test]
fn a_partial_refund_reverses_what_the_refunded_part_earned() {
    let state = given(&history(vec![PLACED(), PAID()]));
    let events = when(
        &state,
        OrderCommand::RecordRefund(refund("r1", &[("l1", dec!(1))])),
    )
    .unwrap();
    assert_eq!(names(&events), ["OrderRefunded", "CommissionRecalculated"]);
    let OrderEvent::CommissionRecalculated {
        cause, adjustments, ..
    } = &events[1]
    else {
        unreachable!()
    };
    assert_eq!(
        cause,
        &RecalculationCause::Refund {
            refund_id: RefundId::new("r1").unwrap()
        }
    );
    let changes: Vec<_> = adjustments
        .iter()
        .map(|a| (a.beneficiary.to_string(), a.held, a.now, a.change))
        .collect();
    assert_eq!(
        changes,
        [
            ("d0".into(), dec!(20.00), dec!(15.00), dec!(-5.00)),
            ("d1".into(), dec!(10.00), dec!(7.50), dec!(-2.50)),
            ("d2".into(), dec!(4.00), dec!(2.00), dec!(-2.00)),
            ("d3".into(), dec!(3.00), dec!(1.50), dec!(-1.50)),
            ("d4".into(), dec!(2.00), dec!(1.00), dec!(-1.00)),
        ]
    );
}

#[test]
fn cancellation_after_payment_nets_every_beneficiary_to_zero() {
    let mut state = given(&history(vec![PLACED(), PAID()]));
    let events = when(
        &state,
        OrderCommand::RecordCancellation {
            cancelled_at: t(12),
        },
    )
    .unwrap();
    assert_eq!(names(&events), ["OrderCancelled", "CommissionRecalculated"]);
    let OrderEvent::CommissionRecalculated {
        outcome,
        adjustments,
        ..
    } = &events[1]
    else {
        unreachable!()
    };
    assert!(outcome.is_none());
    assert_eq!(
        adjustments.iter().map(|a| a.change).sum::<Decimal>(),
        dec!(-39.00)
    );
    for e in &events {
        evolve(&mut state, e);
    }
    assert!(state.holdings.is_empty());
}

#[test]
fn cancellation_before_payment_means_payment_earns_nothing() {
    let state = given(&history(vec![
        PLACED(),
        OrderCommand::RecordCancellation {
            cancelled_at: t(12),
        },
    ]));
    assert_eq!(names(&when(&state, PAID()).unwrap()), ["OrderPaid"]);
}

#[test]
fn a_net_amount_refund_reverses_pro_rata() {
    let state = given(&history(vec![PLACED(), PAID()]));
    // 99.50 of 199.00 net refunded: half of every base remains.
    let half = Refund {
        refund_id: RefundId::new("w1").unwrap(),
        refunded_at: t(20),
        scope: RefundScope::NetAmount(dec!(99.50)),
    };
    let mut state2 = state.clone();
    for e in when(&state, OrderCommand::RecordRefund(half)).unwrap() {
        evolve(&mut state2, &e);
    }
    assert_eq!(
        holdings(&state2),
        [
            ("d0".into(), dec!(10.00)),
            ("d1".into(), dec!(5.00)),
            ("d2".into(), dec!(2.00)),
            ("d3".into(), dec!(1.50)),
            ("d4".into(), dec!(1.00))
        ]
    );
}

#[test]
fn an_unattributed_order_is_recorded_and_earns_nothing() {
    let mut details = order_details();
    details.distributor = None;
    let events = history(vec![OrderCommand::RecordOrder(details), PAID()]);
    assert_eq!(names(&events), ["OrderPlaced", "OrderPaid"]);
}

#[test]
fn an_older_copy_is_ignored_and_a_newer_one_revises_the_unpaid_order() {
    let state = given(&history(vec![PLACED()]));
    let mut older = order_details();
    older.updated_at = t(9);
    older.lines.pop();
    assert!(when(&state, OrderCommand::RecordOrder(older))
        .unwrap()
        .is_empty());
    let mut newer = order_details();
    newer.updated_at = t(10) + chrono::Duration::hours(1);
    newer.lines.pop();
    assert_eq!(
        names(&when(&state, OrderCommand::RecordOrder(newer)).unwrap()),
        ["OrderRevised"]
    );
}

#[test]
fn after_calculation_only_changes_that_move_no_money_are_accepted() {
    let state = given(&history(vec![PLACED(), PAID()]));
    let mut shipped = order_details();
    shipped.updated_at = t(15);
    shipped.shipping = dec!(7.00);
    assert!(when(&state, OrderCommand::RecordOrder(shipped))
        .unwrap()
        .is_empty());
    let mut relined = order_details();
    relined.updated_at = t(15);
    relined.lines[0].quantity = dec!(3);
    assert_eq!(
        when(&state, OrderCommand::RecordOrder(relined)).unwrap_err(),
        OrderError::ChangedAfterCalculation { field: "lines" }
    );
}

#[test]
fn two_different_copies_with_the_same_version_are_refused() {
    let state = given(&history(vec![PLACED()]));
    let mut other = order_details();
    other.shipping = dec!(1.00);
    assert_eq!(
        when(&state, OrderCommand::RecordOrder(other)).unwrap_err(),
        OrderError::ConflictingCopy { updated_at: t(10) }
    );
}

#[test]
fn refunds_are_checked_against_the_order() {
    let state = given(&history(vec![
        PLACED(),
        PAID(),
        OrderCommand::RecordRefund(refund("r1", &[("l1", dec!(1))])),
    ]));
    let err = when(
        &state,
        OrderCommand::RecordRefund(refund("r2", &[("l9", dec!(1))])),
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "refund r2: line l9 is not on the order");
    let err = when(
        &state,
        OrderCommand::RecordRefund(refund("r2", &[("l1", dec!(2))])),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "refund r2: line l1 would be refunded 3 of 2 ordered"
    );
    let err = when(
        &state,
        OrderCommand::RecordRefund(refund("r2", &[("l1", dec!(0))])),
    )
    .unwrap_err();
    assert!(matches!(err, OrderError::RefundQuantityNotPositive { .. }));
    let err = when(
        &state,
        OrderCommand::RecordRefund(refund("r1", &[("l2", dec!(1))])),
    )
    .unwrap_err();
    assert!(matches!(err, OrderError::ConflictingRefund { .. }));
    let too_much = Refund {
        refund_id: RefundId::new("w").unwrap(),
        refunded_at: t(20),
        scope: RefundScope::NetAmount(dec!(500)),
    };
    assert!(matches!(
        when(&state, OrderCommand::RecordRefund(too_much)).unwrap_err(),
        OrderError::RefundAmountOutOfRange { .. }
    ));
}

#[test]
fn missing_inputs_are_typed_errors_so_the_order_can_be_parked() {
    let mut unmapped = order_details();
    unmapped.lines[0].platform_sku = "NOPE-1".into();
    let state = given(&history(vec![OrderCommand::RecordOrder(unmapped)]));
    let err = when(&state, PAID()).unwrap_err();
    assert!(
        matches!(&err, OrderError::UnmappedSku { platform_sku, .. } if platform_sku == "NOPE-1"),
        "{err}"
    );

    let mut too_early = order_details();
    too_early.placed_at = t(1) - chrono::Duration::days(1);
    let state = given(&history(vec![OrderCommand::RecordOrder(too_early)]));
    assert!(matches!(
        when(&state, PAID()).unwrap_err(),
        OrderError::NoPlanInForce { .. }
    ));

    let mut stranger = order_details();
    stranger.distributor = Some(id("ghost"));
    let state = given(&history(vec![OrderCommand::RecordOrder(stranger)]));
    assert!(matches!(
        when(&state, PAID()).unwrap_err(),
        OrderError::Hierarchy { .. }
    ));
}

#[test]
fn a_command_for_another_order_is_refused() {
    let mut other = order_details();
    other.key.order_id = upline_domain::ids::PlatformOrderId::new("1").unwrap();
    assert!(matches!(
        when(&given(&[]), OrderCommand::RecordOrder(other)).unwrap_err(),
        OrderError::WrongOrder { .. }
    ));
}

#[test]
fn an_invalid_order_is_refused_with_the_line() {
    let mut bad = order_details();
    bad.lines[1].quantity = dec!(0);
    let err = when(&given(&[]), OrderCommand::RecordOrder(bad)).unwrap_err();
    assert!(matches!(err, OrderError::InvalidOrder(_)), "{err}");
    assert!(err.to_string().contains("l2"), "{err}");
}

#[test]
fn events_round_trip_through_the_store_encoding() {
    for e in history(vec![
        PLACED(),
        PAID(),
        OrderCommand::RecordRefund(refund("r1", &[("l1", dec!(1))])),
    ]) {
        let enc = upline_domain::events::encode(&e).unwrap();
        let back: OrderEvent = upline_domain::events::decode(&enc.event_type, &enc.data).unwrap();
        assert_eq!(back, e);
    }
}

#[test]
fn the_stream_name_follows_the_platform_shop_and_order() {
    assert_eq!(
        key().stream_name(),
        "order-shopify-acme.myshopify.com-820982911946154508"
    );
}

#[test]
fn a_ladder_shorter_than_the_classes_calculates_every_order() {
    // Given a plan whose only rank is paid on level 1 while retail pays three levels, and a
    // five-member upline,
    let mut context = FixedContext::gold_line();
    context.plan.ranks = vec![upline_domain::plan::RankRung {
        name: rank("gold"),
        paid_levels: 1,
    }];
    context.plan.validate().expect("a valid plan");
    let state = given(&[]);
    let events = decide(
        &state,
        &key(),
        &OrderCommand::RecordOrder(order_details()),
        &context,
    )
    .unwrap();
    let state = OrderState::from_events(&events);
    // when the order is paid,
    let events = decide(
        &state,
        &key(),
        &OrderCommand::RecordPayment { paid_at: t(11) },
        &context,
    )
    .expect("the snapshot is as deep as the plan pays, never 'too shallow'");
    // then only the seller is paid, on level 1: 10 % of 100.00 retail and 20 % of the kit's CV.
    let state = OrderState::from_events(&events);
    assert_eq!(holdings(&state), vec![("d0".to_string(), dec!(20.00))]);
    let Some(OrderEvent::CommissionCalculated { inputs, .. }) = events.last() else {
        panic!("expected a calculation, got {:?}", names(&events));
    };
    assert_eq!(inputs.snapshot.members.len(), 1);
}

#[test]
fn a_refund_of_one_of_three_units_keeps_an_exact_amount() {
    // Given a paid order of 3 x 3.33 (9.99) retail,
    let mut details = order_details();
    details.lines = vec![line("1", "SUPP001", dec!(3), dec!(3.33))];
    let paid = history(vec![
        OrderCommand::RecordOrder(details),
        OrderCommand::RecordPayment { paid_at: t(11) },
    ]);
    // when one unit is refunded without a stated amount,
    let state = given(&paid);
    let events = when(
        &state,
        OrderCommand::RecordRefund(refund("r1", &[("1", dec!(1))])),
    )
    .unwrap();
    // then the line keeps 9.99 - round_down(9.99 / 3) = 9.99 - 3.33 = 6.66, with no long
    // fraction anywhere in the events.
    let Some(OrderEvent::CommissionRecalculated {
        outcome: Some(outcome),
        ..
    }) = events.last()
    else {
        panic!("expected a recalculation, got {:?}", names(&events));
    };
    assert_eq!(outcome.commissionable_base, dec!(6.66));
    let json = serde_json::to_string(&events).unwrap();
    assert!(!json.contains("6.666"), "{json}");
}

#[test]
fn a_refund_that_states_its_amount_takes_that_amount() {
    let mut details = order_details();
    details.lines = vec![line("1", "SUPP001", dec!(3), dec!(3.33))];
    let paid = history(vec![
        OrderCommand::RecordOrder(details),
        OrderCommand::RecordPayment { paid_at: t(11) },
    ]);
    let mut r = refund("r1", &[("1", dec!(1))]);
    if let RefundScope::Lines(lines) = &mut r.scope {
        lines[0].stated_net = Some(dec!(3.00));
    }
    let events = when(&given(&paid), OrderCommand::RecordRefund(r)).unwrap();
    let Some(OrderEvent::CommissionRecalculated {
        outcome: Some(outcome),
        ..
    }) = events.last()
    else {
        panic!("expected a recalculation, got {:?}", names(&events));
    };
    assert_eq!(outcome.commissionable_base, dec!(6.99));
}

/// A context whose shop lets test orders earn (`test_orders = "earn"`).
struct TestOrdersEarn(FixedContext);

impl PlanSource for TestOrdersEarn {
    fn plan(&self, version: &str) -> Option<&upline_domain::plan::CommissionPlan> {
        self.0.plan(version)
    }
}

impl CalculationContext for TestOrdersEarn {
    fn plan_in_force(
        &self,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Option<&upline_domain::plan::CommissionPlan> {
        self.0.plan_in_force(at)
    }
    fn sku_mapping(
        &self,
        platform: upline_domain::ids::Platform,
        platform_sku: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Option<&upline_domain::catalog::SkuMapping> {
        self.0.sku_mapping(platform, platform_sku, at)
    }
    fn snapshot(
        &self,
        distributor: &upline_domain::ids::DistributorId,
        at: chrono::DateTime<chrono::Utc>,
        request: &upline_domain::snapshot::SnapshotRequest,
    ) -> Result<upline_domain::snapshot::HierarchySnapshot, String> {
        self.0.snapshot(distributor, at, request)
    }
    fn test_orders_earn(&self, _key: &OrderKey) -> bool {
        true
    }
}

#[test]
fn a_test_order_is_recorded_but_earns_only_where_the_shop_says_so() {
    let mut details = order_details();
    details.test = true;
    let commands = [
        OrderCommand::RecordOrder(details),
        OrderCommand::RecordPayment { paid_at: t(11) },
    ];
    let run = |context: &dyn CalculationContext| {
        let mut state = OrderState::default();
        let mut all = Vec::new();
        for c in &commands {
            for e in decide(&state, &key(), c, context).unwrap() {
                evolve(&mut state, &e);
                all.push(e);
            }
        }
        (state, all)
    };
    // By default: placed and paid are recorded, nothing is calculated.
    let (state, events) = run(&FixedContext::gold_line());
    assert_eq!(names(&events), vec!["OrderPlaced", "OrderPaid"]);
    assert!(state.holdings.is_empty());
    // With test_orders = "earn": calculated like any order.
    let (state, _) = run(&TestOrdersEarn(FixedContext::gold_line()));
    assert!(!state.holdings.is_empty());
}

#[test]
fn a_recalculation_recorded_with_a_28_digit_fraction_still_decodes() {
    // Given a CommissionRecalculated as an earlier version recorded it after a refund of 1 of 3
    // units (the kept base scaled by 2/3, 28 significant digits),
    let events = history(vec![
        PLACED(),
        PAID(),
        OrderCommand::RecordRefund(refund("r1", &[("l1", dec!(1))])),
    ]);
    let recalculated = events
        .iter()
        .find(|e| matches!(e, OrderEvent::CommissionRecalculated { .. }))
        .expect("a recalculation");
    let enc = upline_domain::events::encode(recalculated).unwrap();
    let mut body: serde_json::Value = serde_json::from_slice(&enc.data).unwrap();
    body["outcome"]["commissionable_base"] = "66.666666666666666666666666667".into();
    let stored = serde_json::to_vec(&body).unwrap();
    // when it is read back, then it decodes with the amounts exactly as written.
    let back: OrderEvent = upline_domain::events::decode(&enc.event_type, &stored)
        .expect("what was written reads back");
    let OrderEvent::CommissionRecalculated {
        outcome: Some(outcome),
        ..
    } = back
    else {
        panic!("decoded as another event");
    };
    assert_eq!(
        outcome.commissionable_base.to_string(),
        "66.666666666666666666666666667"
    );
}

/// The events' JSON of `event`, as the store keeps it.
fn stored_body(event: &OrderEvent) -> serde_json::Value {
    let enc = upline_domain::events::encode(event).unwrap();
    serde_json::from_slice(&enc.data).unwrap()
}

#[test]
fn the_recorded_outcome_leaves_out_lines_and_trace_which_recompute_from_the_inputs() {
    // Given an order placed, paid and partly refunded,
    let events = history(vec![
        PLACED(),
        PAID(),
        OrderCommand::RecordRefund(refund("r1", &[("l1", dec!(1))])),
    ]);
    let mut state = OrderState::default();
    let mut explained = 0;
    for event in &events {
        evolve(&mut state, event);
        let recorded = match event {
            OrderEvent::CommissionCalculated { outcome, .. } => outcome.clone(),
            OrderEvent::CommissionRecalculated {
                outcome: Some(outcome),
                ..
            } => outcome.clone(),
            _ => continue,
        };
        // then each commission event records the payouts without lines or trace,
        let body = stored_body(event);
        assert!(body["outcome"].get("lines").is_none(), "{body}");
        assert!(body["outcome"].get("trace").is_none(), "{body}");
        // and the calculation behind it recomputes from the recorded inputs, to the cent.
        let full = explained_outcome(&state, &FixedContext::gold_line())
            .unwrap()
            .expect("a paid order has a calculation");
        assert_eq!(full.summary(), recorded);
        assert!(!full.lines.is_empty() && !full.trace.is_empty());
        explained += 1;
    }
    assert_eq!(
        explained, 2,
        "the calculation and the refund's recalculation"
    );
}

#[test]
fn nothing_is_explained_where_nothing_is_held() {
    let unpaid = given(&history(vec![PLACED()]));
    assert_eq!(
        explained_outcome(&unpaid, &FixedContext::gold_line()).unwrap(),
        None
    );
    let cancelled = given(&history(vec![
        PLACED(),
        PAID(),
        OrderCommand::RecordCancellation {
            cancelled_at: t(30),
        },
    ]));
    assert!(cancelled.calculation.is_some());
    assert_eq!(
        explained_outcome(&cancelled, &FixedContext::gold_line()).unwrap(),
        None
    );
}

#[test]
fn a_calculation_recorded_with_lines_trace_and_plan_still_decodes() {
    // Given a CommissionCalculated as schema version 1 recorded it, the whole outcome included,
    let events = history(vec![PLACED(), PAID()]);
    let calculated = events
        .iter()
        .find(|e| matches!(e, OrderEvent::CommissionCalculated { .. }))
        .expect("a calculation");
    let context = FixedContext::gold_line();
    let full = explained_outcome(&given(&events), &context)
        .unwrap()
        .unwrap();
    let mut body = stored_body(calculated);
    body["outcome"] = serde_json::to_value(&full).unwrap();
    // (and, as versions 1 and 2 did, the plan document itself in the inputs)
    let inputs = body["inputs"].as_object_mut().unwrap();
    inputs.remove("plan_version");
    inputs.insert("plan".into(), serde_json::to_value(&context.plan).unwrap());
    assert!(body["outcome"]["lines"]
        .as_array()
        .is_some_and(|l| !l.is_empty()));
    // when it is read back, then it is the event version 3 records: the plan named by version.
    let back: OrderEvent =
        upline_domain::events::decode("CommissionCalculated", &serde_json::to_vec(&body).unwrap())
            .expect("a version 1 event reads back");
    assert_eq!(&back, calculated);
}

#[test]
fn a_calculation_names_its_plan_and_recalculates_with_the_one_published_under_that_name() {
    // Given an order calculated under plan test-1,
    let events = history(vec![PLACED(), PAID()]);
    let calculated = events
        .iter()
        .find(|e| matches!(e, OrderEvent::CommissionCalculated { .. }))
        .expect("a calculation");
    // the event names the plan (its document is recorded once, when published),
    let body = stored_body(calculated);
    assert_eq!(body["inputs"]["plan_version"], "test-1");
    assert!(body["inputs"].get("plan").is_none(), "{body}");
    // when a refund comes and the company no longer publishes that version,
    let mut unpublished = FixedContext::gold_line();
    unpublished.plan.version = "test-2".into();
    let refund = OrderCommand::RecordRefund(refund("r1", &[("l1", dec!(1))]));
    let refused = decide(&given(&events), &key(), &refund, &unpublished).unwrap_err();
    // then the recalculation is refused naming the plan, not computed under another one.
    assert_eq!(
        refused,
        OrderError::RecordedPlanUnknown {
            version: "test-1".into()
        }
    );
    assert!(when(&given(&events), refund).is_ok());
}
