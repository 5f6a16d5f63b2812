//! Commission engine and order aggregate latency, printed as a table.
//!
//! `cargo bench --bench commission_engine`. The SLA floor is "commission emit <= 500 ms"; this
//! measures the pure part of that path (no I/O): the engine alone, and the order aggregate's
//! decide for a payment (snapshot lookup in a 30-level network, calculation, events).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use rust_decimal::Decimal;
use upline_domain::catalog::{CatalogCommand, SkuMapping};
use upline_domain::company::Company;
use upline_domain::engine::{calculate, CommissionableLine};
use upline_domain::ids::*;
use upline_domain::money::{Amount, Currency};
use upline_domain::net::OrderLine;
use upline_domain::network::DistributorCommand;
use upline_domain::order::{decide, OrderCommand, OrderDetails, OrderKey, OrderState};
use upline_domain::plan::{ClassRates, CommissionPlan, RankRung};
use upline_domain::snapshot::{DistributorStatus, HierarchySnapshot, SnapshotMember};

const DEPTH: u32 = 30;

fn plan() -> CommissionPlan {
    let rates = |n: usize, r: i64| ClassRates {
        description: String::new(),
        rates: vec![Amount(Decimal::new(r, 3)); n],
    };
    let mut classes = BTreeMap::new();
    classes.insert(CommissionClass::new("retail").unwrap(), rates(20, 15));
    classes.insert(CommissionClass::new("kit").unwrap(), rates(10, 20));
    CommissionPlan {
        version: "bench".into(),
        effective_from: Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(),
        description: String::new(),
        max_payout_ratio: Decimal::new(40, 2),
        qualifying_statuses: vec![DistributorStatus::Active],
        compression: true,
        ranks: vec![RankRung {
            name: RankName::new("gold").unwrap(),
            paid_levels: 20,
        }],
        classes,
    }
}

fn status(i: u32) -> DistributorStatus {
    if i % 4 == 3 {
        DistributorStatus::Inactive
    } else {
        DistributorStatus::Active
    }
}

fn lines(n: usize) -> Vec<CommissionableLine> {
    (0..n)
        .map(|i| CommissionableLine {
            line_id: LineId::new(format!("l{i}")).unwrap(),
            sku_id: SkuId::new("S").unwrap(),
            commission_class: CommissionClass::new(if i % 2 == 0 { "retail" } else { "kit" })
                .unwrap(),
            quantity: Decimal::ONE,
            net: Decimal::new(1999 + i as i64, 2),
            pv: Decimal::ZERO,
            base: Decimal::new(1999 + i as i64, 2),
        })
        .collect()
}

/// A company whose network is one chain DEPTH deep (every fourth member inactive).
fn company() -> Company {
    let mut company = Company::default();
    let at = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
    for i in 0..DEPTH {
        let command = DistributorCommand::RegisterDistributor {
            distributor_id: DistributorId::new(format!("d{i}")).unwrap(),
            sponsor: (i > 0).then(|| DistributorId::new(format!("d{}", i - 1)).unwrap()),
            referral_codes: vec![],
            country: "US".into(),
            status: status(i),
            rank: RankName::new("gold").unwrap(),
            joined_at: at,
        };
        for e in company.network.decide(&command).unwrap() {
            company.network.apply(&e).unwrap();
        }
    }
    for (sku, class) in [("SUPP001", "retail"), ("KIT-STARTER-001", "kit")] {
        let mapping = SkuMapping {
            platform: Platform::Shopify,
            platform_sku: sku.into(),
            effective_from: at,
            sku_id: SkuId::new(sku).unwrap(),
            name: sku.into(),
            category: class.into(),
            commission_class: CommissionClass::new(class).unwrap(),
            pv_per_unit: None,
            cv_per_unit: None,
        };
        for e in company
            .catalog
            .decide(&CatalogCommand::MapSku(mapping))
            .unwrap()
        {
            company.catalog.apply(&e).unwrap();
        }
    }
    company.plans.publish(plan()).unwrap();
    company
}

fn measure(name: &str, iterations: u32, mut f: impl FnMut()) -> [String; 4] {
    for _ in 0..iterations / 10 {
        f();
    }
    let mut samples: Vec<Duration> = (0..iterations)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    samples.sort();
    let pct = |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)];
    [
        name.to_string(),
        format!("{:.1}", pct(50).as_secs_f64() * 1e6),
        format!("{:.1}", pct(99).as_secs_f64() * 1e6),
        format!("{:.0}", 1.0 / pct(50).as_secs_f64()),
    ]
}

fn main() {
    let plan = plan();
    let at = Utc.with_ymd_and_hms(2025, 6, 1, 0, 0, 0).unwrap();
    let members: Vec<SnapshotMember> = (0..DEPTH)
        .map(|i| SnapshotMember {
            distributor_id: DistributorId::new(format!("d{}", DEPTH - 1 - i)).unwrap(),
            depth: i,
            status: status(DEPTH - 1 - i),
            rank: RankName::new("gold").unwrap(),
        })
        .collect();
    let snapshot = HierarchySnapshot::new(at, members[0].distributor_id.clone(), members, true);
    let three = lines(3);
    let fifty = lines(50);

    let company = company();
    let key = OrderKey {
        platform: Platform::Shopify,
        shop: ShopId::new("bench.myshopify.com").unwrap(),
        order_id: PlatformOrderId::new("1").unwrap(),
    };
    let details = OrderDetails {
        key: key.clone(),
        placed_at: at,
        updated_at: at,
        currency: Currency::USD,
        distributor: Some(DistributorId::new(format!("d{}", DEPTH - 1)).unwrap()),
        prices_include_tax: false,
        lines: (0..3)
            .map(|i| OrderLine {
                line_id: LineId::new(format!("l{i}")).unwrap(),
                platform_sku: if i % 2 == 0 {
                    "SUPP001"
                } else {
                    "KIT-STARTER-001"
                }
                .into(),
                quantity: Decimal::from(2),
                unit_price: Decimal::new(1999, 2),
                discount: Decimal::ZERO,
                tax: Decimal::ZERO,
            })
            .collect(),
        order_discount: Decimal::new(500, 2),
        shipping: Decimal::new(499, 2),
        tax: Decimal::ZERO,
        declared_total: Decimal::ZERO,
        test: false,
    };
    let mut placed = OrderState::default();
    for e in decide(
        &placed.clone(),
        &key,
        &OrderCommand::RecordOrder(details),
        &company,
    )
    .unwrap()
    {
        upline_domain::order::evolve(&mut placed, &e);
    }
    let pay = OrderCommand::RecordPayment { paid_at: at };

    let rows = [
        measure("engine: 3 lines, 30-member upline", 20_000, || {
            black_box(calculate(Currency::USD, &three, &snapshot, &plan).unwrap());
        }),
        measure("engine: 50 lines, 30-member upline", 2_000, || {
            black_box(calculate(Currency::USD, &fifty, &snapshot, &plan).unwrap());
        }),
        measure(
            "order decide: payment (snapshot + calc + events)",
            5_000,
            || {
                black_box(decide(&placed, &key, &pay, &company).unwrap());
            },
        ),
    ];
    println!("| scenario | p50 µs | p99 µs | per second (p50) |");
    println!("|---|---:|---:|---:|");
    for [name, p50, p99, rate] in rows {
        println!("| {name} | {p50} | {p99} | {rate} |");
    }
}
