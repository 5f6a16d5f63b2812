//! `upline plan validate` and `upline plan explain`, run as a user runs them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn upline(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_upline"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the upline binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("temp file written");
    path
}

/// The example order with some JSON fields replaced.
fn order_with(dir: &Path, changes: serde_json::Value) -> PathBuf {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/order.json"))
            .unwrap();
    let mut order: serde_json::Value = serde_json::from_str(&text).unwrap();
    for (k, v) in changes.as_object().unwrap() {
        order[k] = v.clone();
    }
    write(dir, "order.json", &order.to_string())
}

fn explain(order: &str) -> Output {
    upline(&[
        "plan",
        "explain",
        "--plan",
        "examples/plan.toml",
        "--order",
        order,
        "--network",
        "examples/network.json",
    ])
}

#[test]
fn validate_accepts_the_example_plan_with_a_summary() {
    let o = upline(&["plan", "validate", "examples/plan.toml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("is valid"), "{out}");
    assert!(out.contains("2026.1"), "{out}");
    assert!(out.contains("starter_kit"), "{out}");
}

#[test]
fn validate_names_every_problem_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        dir.path(),
        "bad.toml",
        r#"version = ""
effective_from = "2026-01-01T00:00:00Z"
max_payout_ratio = "1.5"
qualifying_statuses = ["active"]
compression = true
[[ranks]]
name = "member"
paid_levels = 1
[classes.retail]
rates = [0.10, "0.05"]
"#,
    );
    let o = upline(&["plan", "validate", bad.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    for field in ["version", "max_payout_ratio", "classes.retail.rates[0]"] {
        assert!(err.contains(field), "{field} not named in:\n{err}");
    }
}

#[test]
fn explain_prints_a_breakdown_a_person_can_check() {
    let o = explain("examples/order.json");
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    // 11043 earns level 1: 5 % of the kit's CV 50.00 plus 10 % of the supplements' and cream's
    // nets 39.05 and 9.62 = 2.50 + 3.905 + 0.962 = 7.367, rounded half-even to 7.37.
    assert!(
        out.contains("= 11043") && out.contains("7.367 -> 7.37 USD"),
        "{out}"
    );
    assert!(out.contains("Total 10.29 USD of cap 39.46 USD"), "{out}");
    assert!(out.contains("skipped: status does not qualify"), "{out}");
    assert!(
        out.contains("unlocks 1 level(s) on the rank ladder"),
        "{out}"
    );
    // The cap shows its rounding down: 0.40 x 98.67 = 39.468 -> 39.46.
    assert!(out.contains("0.4 x 98.67 = 39.468 -> 39.46 USD"), "{out}");
    // Amounts in the table are in the currency's scale (exact values are in --format json).
    assert!(
        out.contains("  1      11043        2     retail       39.05  0.1   3.90"),
        "{out}"
    );
    assert!(
        out.contains("Shipping 5.00 and tax 11.71 are not commissionable"),
        "{out}"
    );
}

#[test]
fn explain_as_json_carries_the_snapshot_plan_and_outcome() {
    let o = upline(&[
        "plan",
        "explain",
        "--plan",
        "examples/plan.toml",
        "--order",
        "examples/order.json",
        "--network",
        "examples/network.json",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["outcome"]["total"], "10.29");
    assert_eq!(v["inputs"]["snapshot"]["distributor_id"], "11043");
    assert_eq!(v["inputs"]["plan_version"], "2026.1");
    assert_eq!(v["plan"]["version"], "2026.1");
    assert_eq!(
        v["outcome"]["lines"].as_array().map(Vec::is_empty),
        Some(false)
    );
    assert_eq!(v["events"][0][0], "OrderPlaced");
}

#[test]
fn explain_shows_what_a_refund_reverses() {
    let dir = tempfile::tempdir().unwrap();
    let order = order_with(
        dir.path(),
        serde_json::json!({"refunds": [{"refund_id": "r1", "refunded_at": "2026-09-01T00:00:00Z",
            "scope": {"lines": [{"line_id": "2", "quantity": "2"}]}}]}),
    );
    let o = explain(order.to_str().unwrap());
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    // Without the supplements, 11043 keeps 2.50 + 0.962 = 3.462 -> 3.46: a change of -3.91.
    assert!(out.contains("Recalculated"), "{out}");
    assert!(out.contains("11043        7.37  3.46  -3.91"), "{out}");
    assert!(
        out.contains("refund r1: 2 x line 2 at 2026-09-01T00:00:00Z"),
        "{out}"
    );
}

#[test]
fn explain_shows_a_partial_refund_by_quantity_in_the_currency_scale() {
    // Given the example order, when 1 of its 2 supplements is refunded with no stated amount,
    let dir = tempfile::tempdir().unwrap();
    let order = order_with(
        dir.path(),
        serde_json::json!({"refunds": [{"refund_id": "r1", "refunded_at": "2026-09-01T00:00:00Z",
            "scope": {"lines": [{"line_id": "3", "quantity": "1"}, {"line_id": "2", "quantity": "1"}]}}]}),
    );
    let o = explain(order.to_str().unwrap());
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    // then line 2 keeps 39.05 - round_down(39.05 / 2) = 39.05 - 19.52 = 19.53, line 3 nothing,
    // and no long fraction is printed anywhere.
    assert!(out.contains("refund r1: 1 x line 3, 1 x line 2"), "{out}");
    assert!(
        out.contains("  1      11043        2     retail       19.53  0.1   1.95"),
        "{out}"
    );
    assert!(!out.contains("19.525"), "{out}");
}

#[test]
fn explain_pays_nothing_to_a_rank_off_the_ladder_and_names_the_ladder() {
    let dir = tempfile::tempdir().unwrap();
    let network: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("examples/network.json").unwrap()).unwrap();
    let mut network = network;
    for d in network["distributors"].as_array_mut().unwrap() {
        if d["id"] == "11043" {
            d["rank"] = serde_json::json!("diamond");
        }
    }
    let path = dir.path().join("network.json");
    std::fs::write(&path, network.to_string()).unwrap();
    let o = upline(&[
        "plan",
        "explain",
        "--plan",
        "examples/plan.toml",
        "--order",
        "examples/order.json",
        "--network",
        path.to_str().unwrap(),
    ]);
    assert!(
        o.status.success(),
        "an off-ladder rank never fails the order: {}",
        stderr(&o)
    );
    let out = stdout(&o);
    assert!(
        out.contains(
            "rank diamond is not on the plan's rank ladder (member 1, bronze 2, silver 4, gold 6)"
        ),
        "{out}"
    );
    assert!(!out.contains("= 11043"), "{out}");
}

#[test]
fn explain_refuses_an_unknown_referral_code() {
    let dir = tempfile::tempdir().unwrap();
    let order = order_with(dir.path(), serde_json::json!({"referral_code": "NOBODY"}));
    let o = explain(order.to_str().unwrap());
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("referral_code NOBODY belongs to no distributor"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn explain_names_the_field_of_a_malformed_amount() {
    let dir = tempfile::tempdir().unwrap();
    let order = order_with(
        dir.path(),
        serde_json::json!({"lines": [{"line_id": "1", "platform_sku": "SUPP001", "quantity": 1, "unit_price": "12,50"}]}),
    );
    let o = explain(order.to_str().unwrap());
    assert!(!o.status.success());
    assert!(stderr(&o).contains("lines[0].unit_price"), "{}", stderr(&o));
}

#[test]
fn explain_refuses_an_unmapped_sku_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let order = order_with(
        dir.path(),
        serde_json::json!({"lines": [{"line_id": "1", "platform_sku": "UNKNOWN-9", "quantity": 1, "unit_price": "10.00"}],
                           "order_discount": "0"}),
    );
    let o = explain(order.to_str().unwrap());
    assert!(!o.status.success());
    assert!(stderr(&o).contains("UNKNOWN-9"), "{}", stderr(&o));
}
