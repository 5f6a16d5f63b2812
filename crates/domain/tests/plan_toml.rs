//! Loading and validating commission plans from TOML.

use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use upline_domain::ids::{CommissionClass, RankName};
use upline_domain::plan::{CommissionPlan, PlanErrors, MAX_LEVELS};
use upline_domain::snapshot::DistributorStatus;

const EXAMPLE: &str = include_str!("../../../examples/plan.toml");

/// A small valid plan; tests change one thing in it at a time.
const BASE: &str = r#"
version = "t.1"
effective_from = "2026-01-01T00:00:00Z"
max_payout_ratio = "0.40"
qualifying_statuses = ["active"]
compression = true

[[ranks]]
name = "member"
paid_levels = 1

[[ranks]]
name = "silver"
paid_levels = 3

[classes.retail]
rates = ["0.10", "0.05", "0.03"]
"#;

fn with(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "test setup: {from:?} not in BASE");
    BASE.replacen(from, to, 1)
}

fn errors(text: &str) -> PlanErrors {
    match CommissionPlan::from_toml(text) {
        Ok(plan) => panic!("expected errors, got a plan: {plan:?}"),
        Err(e) => e,
    }
}

/// Asserts that the document fails with a problem on `field` whose message contains `needle`.
fn refused(text: &str, field: &str, needle: &str) {
    let e = errors(text);
    assert!(
        e.errors
            .iter()
            .any(|p| p.field == field && p.message.contains(needle)),
        "expected a problem on {field} mentioning {needle:?}; got:\n{e}"
    );
}

fn class(name: &str) -> CommissionClass {
    CommissionClass::new(name).unwrap()
}

fn rank(name: &str) -> RankName {
    RankName::new(name).unwrap()
}

#[test]
fn base_plan_loads() {
    let plan = CommissionPlan::from_toml(BASE).unwrap();
    assert_eq!(plan.version, "t.1");
    assert_eq!(plan.max_levels(), 3);
    plan.validate().unwrap();
}

#[test]
fn the_example_plan_loads_and_validates() {
    let plan = CommissionPlan::from_toml(EXAMPLE).unwrap_or_else(|e| panic!("{e}"));
    plan.validate().unwrap();
    assert_eq!(plan.version, "2026.1");
    assert_eq!(
        plan.effective_from.to_rfc3339(),
        "2026-01-01T00:00:00+00:00"
    );
    assert_eq!(plan.max_payout_ratio, dec!(0.40));
    assert_eq!(plan.qualifying_statuses, vec![DistributorStatus::Active]);
    assert!(plan.compression);
    assert!(plan.classes.len() >= 3);
    for name in ["retail", "starter_kit", "subscription"] {
        assert!(
            plan.classes.contains_key(&class(name)),
            "missing class {name}"
        );
    }
    let ladder: Vec<(&str, u32)> = plan
        .ranks
        .iter()
        .map(|r| (r.name.as_str(), r.paid_levels))
        .collect();
    assert_eq!(
        ladder,
        vec![("member", 1), ("bronze", 2), ("silver", 4), ("gold", 6)]
    );
    assert_eq!(plan.max_levels(), 6);
    // Realism: no class pays more than the cap on its own.
    for (name, c) in &plan.classes {
        let total: Decimal = c.rates.iter().map(|r| r.0).sum();
        assert!(
            total < plan.max_payout_ratio,
            "{name} totals {total}, above the cap"
        );
    }
    let summary = plan.summary();
    for needle in [
        "2026.1",
        "2026-01-01T00:00:00Z",
        "0.40",
        "active",
        "Compression: on",
        "gold",
        "paid 6 levels",
        "retail",
        "L1: 0.10",
        "L6: 0.01",
        "total 0.25",
    ] {
        assert!(
            summary.contains(needle),
            "summary lacks {needle:?}:\n{summary}"
        );
    }
}

#[test]
fn a_plan_with_several_mistakes_reports_all_of_them() {
    let text = r#"
version = ""
effective_from = "2026-01-01T00:00:00+02:00"
max_payout_ratio = "1.5"
qualifying_statuses = ["active", "retired", "active"]
compression = "yes"
colour = "blue"

[[ranks]]
name = "member"
paid_levels = 2

[[ranks]]
name = "Member"
paid_levels = 1

[[ranks]]
name = "gold"
paid_levels = 9
bonus = "0.01"

[classes.retail]
rates = ["0.10", 0.05, "1.20", "abc"]

[classes.kit]
rates = []
"#;
    let e = errors(text);
    let expected = [
        "version",
        "effective_from",
        "max_payout_ratio",
        "qualifying_statuses[1]",
        "qualifying_statuses[2]",
        "compression",
        "colour",
        "ranks[1].name",
        "ranks[1].paid_levels",
        "ranks[2].paid_levels",
        "ranks[2].bonus",
        "classes.retail.rates[1]",
        "classes.retail.rates[2]",
        "classes.retail.rates[3]",
    ];
    for field in expected {
        assert!(e.has_field(field), "no problem reported on {field}:\n{e}");
    }
    // Display lists them one per line, each starting with its field.
    let shown = e.to_string();
    assert_eq!(shown.lines().count(), e.len());
    for (line, problem) in shown.lines().zip(&e.errors) {
        assert!(line.starts_with(&format!("{}: ", problem.field)));
    }
}

#[test]
fn a_float_rate_is_refused_with_a_hint_to_quote_it() {
    refused(
        &with(r#""0.05", "0.03"]"#, r#"0.05, "0.03"]"#),
        "classes.retail.rates[1]",
        r#"write rates as strings such as "0.10" so they stay exact decimals"#,
    );
    // An integer is refused the same way: one rule for the designer to remember.
    refused(
        &with(r#""0.05", "0.03"]"#, r#"1, "0.03"]"#),
        "classes.retail.rates[1]",
        "as strings",
    );
    refused(
        &with(r#"max_payout_ratio = "0.40""#, "max_payout_ratio = 0.40"),
        "max_payout_ratio",
        r#"write ratios as strings such as "0.40""#,
    );
}

#[test]
fn a_syntax_error_names_its_line_and_column() {
    let text = "version = \"x\"\neffective_from = \n";
    let e = errors(text);
    assert_eq!(e.len(), 1);
    assert_eq!(e.errors[0].field, "toml");
    assert!(
        e.errors[0].message.starts_with("line 2, column"),
        "{}",
        e.errors[0].message
    );
}

#[test]
fn rates_keep_their_exact_digits() {
    let plan = CommissionPlan::from_toml(&with(r#""0.03"]"#, r#""0.033333333333"]"#)).unwrap();
    assert_eq!(plan.rate(&class("retail"), 3), Some(dec!(0.033333333333)));
    refused(
        &with(r#""0.03"]"#, r#""3e-2"]"#),
        "classes.retail.rates[2]",
        "not a decimal",
    );
}

// ---- one test per rule: each fails if its rule is removed ----------------------------------

#[test]
fn version_must_be_present_and_non_empty() {
    refused(
        &with(r#"version = "t.1""#, r#"version = "  ""#),
        "version",
        "empty",
    );
    refused(&with(r#"version = "t.1""#, ""), "version", "missing");
    refused(
        &with(r#"version = "t.1""#, "version = 3"),
        "version",
        "string",
    );
    refused(
        &with(
            r#"version = "t.1""#,
            &format!("version = {:?}", "v".repeat(65)),
        ),
        "version",
        "at most",
    );
}

#[test]
fn effective_from_must_be_utc_rfc_3339() {
    let field = "effective_from";
    let line = r#"effective_from = "2026-01-01T00:00:00Z""#;
    refused(
        &with(line, r#"effective_from = "2026-01-01""#),
        field,
        "RFC 3339",
    );
    refused(
        &with(line, r#"effective_from = "yesterday""#),
        field,
        "RFC 3339",
    );
    refused(
        &with(line, r#"effective_from = "2026-01-01T00:00:00+01:00""#),
        field,
        "UTC",
    );
    refused(&with(line, ""), field, "missing");
    // A TOML local date-time has no offset, so its instant is unknown.
    refused(
        &with(line, "effective_from = 2026-01-01T00:00:00"),
        field,
        "offset",
    );
    // +00:00 and a TOML offset date-time are fine.
    let plus = CommissionPlan::from_toml(&with(
        line,
        r#"effective_from = "2026-01-01T00:00:00+00:00""#,
    ))
    .unwrap();
    let native =
        CommissionPlan::from_toml(&with(line, "effective_from = 2026-01-01T00:00:00Z")).unwrap();
    let base = CommissionPlan::from_toml(BASE).unwrap();
    assert_eq!(plus.effective_from, base.effective_from);
    assert_eq!(native.effective_from, base.effective_from);
}

#[test]
fn max_payout_ratio_must_be_above_zero_and_at_most_one() {
    let line = r#"max_payout_ratio = "0.40""#;
    for bad in ["0", "-0.1", "1.0001"] {
        refused(
            &with(line, &format!("max_payout_ratio = {bad:?}")),
            "max_payout_ratio",
            "at most 1",
        );
    }
    let one = CommissionPlan::from_toml(&with(line, r#"max_payout_ratio = "1""#)).unwrap();
    assert_eq!(one.max_payout_ratio, Decimal::ONE);
    refused(&with(line, ""), "max_payout_ratio", "missing");
}

#[test]
fn every_rate_must_be_between_zero_and_one() {
    let list = r#"rates = ["0.10", "0.05", "0.03"]"#;
    refused(
        &with(list, r#"rates = ["0.10", "-0.01", "0.03"]"#),
        "classes.retail.rates[1]",
        "between 0 and 1",
    );
    refused(
        &with(list, r#"rates = ["0.10", "0.05", "1.01"]"#),
        "classes.retail.rates[2]",
        "between 0 and 1",
    );
    let edges = CommissionPlan::from_toml(&with(list, r#"rates = ["1", "0", "0.00"]"#)).unwrap();
    assert_eq!(edges.rate(&class("retail"), 1), Some(Decimal::ONE));
}

#[test]
fn each_class_has_at_most_max_levels_rates_and_may_pay_nothing() {
    let list = r#"rates = ["0.10", "0.05", "0.03"]"#;
    // A class that pays nothing is written `rates = []`, beside one that pays.
    let with_free_class = format!("{BASE}\n[classes.samples]\nrates = []\n");
    let plan = CommissionPlan::from_toml(&with_free_class).expect("rates = [] is valid");
    let samples = upline_domain::ids::CommissionClass::new("samples").unwrap();
    assert_eq!(plan.rate(&samples, 1), Some(rust_decimal::Decimal::ZERO));
    // A plan whose only class pays nothing is valid too: nobody earns, nothing fails.
    let nothing =
        CommissionPlan::from_toml(&with(list, "rates = []")).expect("a plan paying nothing");
    assert_eq!(nothing.paid_depth(), 0);
    refused(&with(list, ""), "classes.retail.rates", "missing");
    let rates = |n: u32| {
        let items: Vec<String> = (0..n).map(|_| "\"0.001\"".to_string()).collect();
        format!("rates = [{}]", items.join(", "))
    };
    refused(
        &with(list, &rates(MAX_LEVELS + 1)),
        "classes.retail.rates",
        "at most 64",
    );
    let deepest = CommissionPlan::from_toml(&with(list, &rates(MAX_LEVELS))).unwrap();
    assert_eq!(deepest.max_levels(), MAX_LEVELS);
}

#[test]
fn a_plan_needs_at_least_one_class() {
    let classes = "[classes.retail]\nrates = [\"0.10\", \"0.05\", \"0.03\"]\n";
    let text = with(classes, "");
    refused(
        &text.replace("compression = true", "compression = true\nclasses = {}"),
        "classes",
        "at least one",
    );
    refused(&text, "classes", "missing");
}

#[test]
fn a_plan_needs_at_least_one_rank() {
    let ranks = "[[ranks]]\nname = \"member\"\npaid_levels = 1\n\n[[ranks]]\nname = \"silver\"\npaid_levels = 3\n";
    let text = with(ranks, "");
    refused(
        &text.replace("compression = true", "compression = true\nranks = []"),
        "ranks",
        "at least one",
    );
    refused(&text, "ranks", "missing");
}

#[test]
fn rank_names_are_unique_ignoring_case() {
    refused(
        &with(r#"name = "silver""#, r#"name = "MEMBER""#),
        "ranks[1].name",
        "already on the ladder",
    );
    refused(
        &with(r#"name = "silver""#, r#"name = "sil ver""#),
        "ranks[1].name",
        "letters",
    );
}

#[test]
fn paid_levels_never_decrease_up_the_ladder() {
    refused(
        &with("paid_levels = 1", "paid_levels = 3").replace(
            "name = \"silver\"\npaid_levels = 3",
            "name = \"silver\"\npaid_levels = 2",
        ),
        "ranks[1].paid_levels",
        "fewer than member",
    );
    // Equal is fine: a rank may differ in other ways (titles, bonuses elsewhere).
    let equal = with("paid_levels = 1", "paid_levels = 3");
    CommissionPlan::from_toml(&equal).unwrap();
}

#[test]
fn paid_levels_never_exceed_the_deepest_class() {
    refused(
        &with("paid_levels = 3", "paid_levels = 4"),
        "ranks[1].paid_levels",
        "deeper than the plan pays",
    );
    refused(
        &with("paid_levels = 3", "paid_levels = -1"),
        "ranks[1].paid_levels",
        "between 0",
    );
    refused(
        &with("paid_levels = 3", "paid_levels = \"3\""),
        "ranks[1].paid_levels",
        "whole number",
    );
    refused(
        &with("paid_levels = 3\n", ""),
        "ranks[1].paid_levels",
        "missing",
    );
}

#[test]
fn qualifying_statuses_are_known_unique_and_not_empty() {
    let line = r#"qualifying_statuses = ["active"]"#;
    refused(
        &with(line, "qualifying_statuses = []"),
        "qualifying_statuses",
        "at least one",
    );
    refused(
        &with(line, r#"qualifying_statuses = ["active", "vip"]"#),
        "qualifying_statuses[1]",
        "unknown status",
    );
    refused(
        &with(
            line,
            r#"qualifying_statuses = ["active", "inactive", "Active"]"#,
        ),
        "qualifying_statuses[2]",
        "already listed at qualifying_statuses[0]",
    );
    refused(&with(line, ""), "qualifying_statuses", "missing");
    let all = CommissionPlan::from_toml(&with(
        line,
        r#"qualifying_statuses = ["active", "inactive", "suspended", "terminated"]"#,
    ))
    .unwrap();
    assert!(all.qualifies(DistributorStatus::Terminated));
}

#[test]
fn unknown_keys_are_refused_and_named() {
    refused(
        &with(
            "compression = true",
            "compression = true\ncompresion = false",
        ),
        "compresion",
        "unknown key",
    );
    refused(
        &with("paid_levels = 1", "paid_levels = 1\nlevels = 2"),
        "ranks[0].levels",
        "unknown key",
    );
    refused(
        &with("[classes.retail]", "[classes.retail]\nrate = \"0.1\""),
        "classes.retail.rate",
        "unknown key",
    );
}

#[test]
fn class_names_are_valid_and_unique_ignoring_case() {
    let text = format!("{BASE}\n[classes.Retail]\nrates = [\"0.01\"]\n");
    let e = errors(&text);
    assert!(
        e.errors
            .iter()
            .any(|p| p.field.starts_with("classes.") && p.message.contains("same class")),
        "{e}"
    );
    refused(
        &format!("{BASE}\n[classes.\"gift card\"]\nrates = [\"0.01\"]\n"),
        "classes.gift card",
        "letters",
    );
}

#[test]
fn compression_must_be_a_boolean() {
    refused(
        &with("compression = true", "compression = 1"),
        "compression",
        "true or false",
    );
    refused(&with("compression = true", ""), "compression", "missing");
}

// ---- what the engine asks of a plan --------------------------------------------------------

#[test]
fn rates_by_class_and_level() {
    let plan = CommissionPlan::from_toml(BASE).unwrap();
    let retail = class("retail");
    assert_eq!(plan.rate(&retail, 1), Some(dec!(0.10)));
    assert_eq!(plan.rate(&retail, 3), Some(dec!(0.03)));
    assert_eq!(plan.rate(&retail, 4), Some(Decimal::ZERO));
    assert_eq!(plan.rate(&retail, 0), Some(Decimal::ZERO));
    assert_eq!(plan.rate(&retail, u32::MAX), Some(Decimal::ZERO));
    assert_eq!(plan.rate(&class("kit"), 1), None);
    // Class look-ups ignore case, as class names do.
    assert_eq!(plan.rate(&class("RETAIL"), 2), Some(dec!(0.05)));
}

#[test]
fn ranks_statuses_and_snapshot_request() {
    let plan = CommissionPlan::from_toml(BASE).unwrap();
    assert_eq!(plan.paid_levels(&rank("member")), Some(1));
    assert_eq!(plan.paid_levels(&rank("Silver")), Some(3));
    assert_eq!(plan.paid_levels(&rank("gold")), None);
    assert!(plan.qualifies(DistributorStatus::Active));
    assert!(!plan.qualifies(DistributorStatus::Suspended));
    let request = plan.snapshot_request();
    assert_eq!(request.levels, 3);
    assert_eq!(request.qualifying_statuses, vec![DistributorStatus::Active]);
    assert!(request.compression);

    // The snapshot walks only as deep as the top rank is paid.
    let shallow = CommissionPlan::from_toml(&with("paid_levels = 3", "paid_levels = 2")).unwrap();
    assert_eq!(shallow.max_levels(), 3);
    assert_eq!(shallow.snapshot_request().levels, 2);
}

#[test]
fn validate_applies_the_same_rules_to_a_plan_built_in_code() {
    let mut plan = CommissionPlan::from_toml(EXAMPLE).unwrap();
    plan.validate().unwrap();
    plan.max_payout_ratio = dec!(0);
    plan.ranks[1].paid_levels = 0;
    plan.qualifying_statuses.push(DistributorStatus::Active);
    if let Some(retail) = plan.classes.get_mut(&class("retail")) {
        retail.rates[2].0 = dec!(2);
    }
    let e = plan.validate().unwrap_err();
    for field in [
        "max_payout_ratio",
        "ranks[1].paid_levels",
        "qualifying_statuses[1]",
        "classes.retail.rates[2]",
    ] {
        assert!(e.has_field(field), "no problem on {field}:\n{e}");
    }
}

#[test]
fn a_plan_round_trips_through_json_exactly() {
    let plan = CommissionPlan::from_toml(EXAMPLE).unwrap();
    let json = serde_json::to_string(&plan).unwrap();
    assert!(json.contains(r#""max_payout_ratio":"0.40""#), "{json}");
    let back: CommissionPlan = serde_json::from_str(&json).unwrap();
    assert_eq!(back, plan);
    assert_eq!(back.content_hash(), plan.content_hash());
}
