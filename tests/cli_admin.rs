//! The operator commands on a data directory: importing and publishing twice is harmless, a
//! customer is enrolled once, and errors name what is wrong.

use std::process::{Command, Output};

fn upline(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_upline"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the upline binary runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn importing_publishing_and_enrolling_are_idempotent_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();

    let first = upline(&[
        "network",
        "import",
        "examples/network.json",
        "--data-dir",
        data,
    ]);
    assert!(first.status.success(), "{}", text(&first));
    assert!(
        text(&first)
            .contains("11 network events recorded, 0 already known; 4 SKU mappings recorded"),
        "{}",
        text(&first)
    );
    let again = upline(&[
        "network",
        "import",
        "examples/network.json",
        "--data-dir",
        data,
    ]);
    assert!(
        text(&again)
            .contains("0 network events recorded, 11 already known; 0 SKU mappings recorded"),
        "{}",
        text(&again)
    );

    let published = upline(&["plan", "publish", "examples/plan.toml", "--data-dir", data]);
    assert!(
        text(&published).contains("published plan 2026.1"),
        "{}",
        text(&published)
    );
    let republished = upline(&["plan", "publish", "examples/plan.toml", "--data-dir", data]);
    assert!(
        text(&republished).contains("already published"),
        "{}",
        text(&republished)
    );

    let enroll = |customer: &str, distributor: &str| {
        upline(&[
            "customer",
            "enroll",
            "--platform",
            "shopify",
            "--shop",
            "demo-store.myshopify.com",
            "--customer",
            customer,
            "--distributor",
            distributor,
            "--data-dir",
            data,
        ])
    };
    assert!(enroll("42", "11043").status.success());
    let elsewhere = enroll("42", "10001");
    assert!(!elsewhere.status.success());
    assert!(
        text(&elsewhere).contains("already enrolled with 11043"),
        "{}",
        text(&elsewhere)
    );
    let nobody = enroll("43", "nobody");
    assert!(!nobody.status.success());
    assert!(
        text(&nobody).contains("distributor nobody is not registered"),
        "{}",
        text(&nobody)
    );

    let parked = upline(&["parked", "list", "--data-dir", data]);
    assert!(
        text(&parked).contains("nothing is parked"),
        "{}",
        text(&parked)
    );
    let no_target = upline(&["parked", "retry", "--data-dir", data]);
    assert!(!no_target.status.success());
}

#[test]
fn read_models_report_their_status_and_rebuild_into_a_new_generation() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let data = data.to_str().unwrap();
    let demo = upline(&["demo", "--data-dir", data]);
    assert!(demo.status.success(), "{}", text(&demo));

    let status = upline(&["projections", "status", "--data-dir", data]);
    assert!(status.status.success(), "{}", text(&status));
    for name in ["ledger", "reconciliation", "bi", "hierarchy"] {
        assert!(
            text(&status).contains(name),
            "{name} missing from:\n{}",
            text(&status)
        );
    }
    assert!(
        text(&status).contains("generation   1"),
        "{}",
        text(&status)
    );

    let rebuild = upline(&["projections", "rebuild", "ledger", "--data-dir", data]);
    assert!(rebuild.status.success(), "{}", text(&rebuild));
    assert!(
        text(&rebuild).contains("ledger: generation 1 -> 2"),
        "{}",
        text(&rebuild)
    );
    let after = upline(&["projections", "status", "--data-dir", data]);
    assert!(text(&after).contains("generation   2"), "{}", text(&after));

    let unknown = upline(&["projections", "rebuild", "nonsense", "--data-dir", data]);
    assert!(!unknown.status.success());
    assert!(text(&unknown).contains("nonsense"), "{}", text(&unknown));
}
