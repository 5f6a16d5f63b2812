//! Shared fixtures for the domain's behaviour tests: a small plan, a fixed upline, a catalog.
#![allow(dead_code)]

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use upline_domain::catalog::SkuMapping;
use upline_domain::ids::*;
use upline_domain::money::{Amount, Currency};
use upline_domain::net::OrderLine;
use upline_domain::order::{CalculationContext, OrderDetails, OrderKey, PlanSource};
use upline_domain::plan::{ClassRates, CommissionPlan, RankRung};
use upline_domain::snapshot::{
    DistributorStatus, HierarchySnapshot, SnapshotMember, SnapshotRequest,
};

pub fn t(day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, day, 12, 0, 0)
        .single()
        .expect("valid date")
}

pub fn id(s: &str) -> DistributorId {
    DistributorId::new(s).expect("valid id")
}

pub fn rank(s: &str) -> RankName {
    RankName::new(s).expect("valid rank")
}

pub fn class(s: &str) -> CommissionClass {
    CommissionClass::new(s).expect("valid class")
}

fn rates(values: &[Decimal]) -> ClassRates {
    ClassRates {
        description: String::new(),
        rates: values.iter().map(|d| Amount(*d)).collect(),
    }
}

/// Ranks: member (1 level), bronze (2), silver (4), gold (5). Classes: retail 10/5/4/3/2 %,
/// kit 20/10 %, subscription 5/5/5/5/5 %. Cap 40 %. Only `active` earns; compression on.
pub fn plan() -> CommissionPlan {
    let mut classes = BTreeMap::new();
    classes.insert(
        class("retail"),
        rates(&[dec!(0.10), dec!(0.05), dec!(0.04), dec!(0.03), dec!(0.02)]),
    );
    classes.insert(class("kit"), rates(&[dec!(0.20), dec!(0.10)]));
    classes.insert(class("subscription"), rates(&[dec!(0.05); 5]));
    CommissionPlan {
        version: "test-1".into(),
        effective_from: t(1),
        description: String::new(),
        max_payout_ratio: dec!(0.40),
        qualifying_statuses: vec![DistributorStatus::Active],
        compression: true,
        ranks: vec![
            RankRung {
                name: rank("member"),
                paid_levels: 1,
            },
            RankRung {
                name: rank("bronze"),
                paid_levels: 2,
            },
            RankRung {
                name: rank("silver"),
                paid_levels: 4,
            },
            RankRung {
                name: rank("gold"),
                paid_levels: 5,
            },
        ],
        classes,
    }
}

pub fn member(name: &str, depth: u32, status: DistributorStatus, r: &str) -> SnapshotMember {
    SnapshotMember {
        distributor_id: id(name),
        depth,
        status,
        rank: rank(r),
    }
}

pub fn snapshot(
    at: DateTime<Utc>,
    members: Vec<SnapshotMember>,
    reached_top: bool,
) -> HierarchySnapshot {
    let who = members
        .first()
        .map(|m| m.distributor_id.clone())
        .unwrap_or_else(|| id("nobody"));
    HierarchySnapshot::new(at, who, members, reached_top)
}

/// A context whose network is a fixed upline chain (depth 0 first), with the SKUs mapped from
/// day 1: "SUPP001" retail, "KIT-STARTER-001" kit (CV 50 per unit), "SUB-1" subscription.
pub struct FixedContext {
    pub plan: CommissionPlan,
    pub chain: Vec<SnapshotMember>,
    pub mappings: Vec<SkuMapping>,
}

impl FixedContext {
    pub fn new(chain: Vec<SnapshotMember>) -> FixedContext {
        let mapping = |sku: &str, class_name: &str, cv: Option<Decimal>| SkuMapping {
            platform: Platform::Shopify,
            platform_sku: sku.into(),
            effective_from: t(1),
            sku_id: SkuId::new(sku).expect("sku"),
            name: sku.to_lowercase(),
            category: class_name.into(),
            commission_class: class(class_name),
            pv_per_unit: Some(dec!(10)),
            cv_per_unit: cv,
        };
        FixedContext {
            plan: plan(),
            chain,
            mappings: vec![
                mapping("SUPP001", "retail", None),
                mapping("KIT-STARTER-001", "kit", Some(dec!(50))),
                mapping("SUB-1", "subscription", None),
            ],
        }
    }

    /// Five active gold members in a line: d0 (the seller) up to d4, the top.
    pub fn gold_line() -> FixedContext {
        FixedContext::new(
            (0..5)
                .map(|i| member(&format!("d{i}"), i, DistributorStatus::Active, "gold"))
                .collect(),
        )
    }
}

impl PlanSource for FixedContext {
    fn plan(&self, version: &str) -> Option<&CommissionPlan> {
        (self.plan.version == version).then_some(&self.plan)
    }
}

impl CalculationContext for FixedContext {
    fn plan_in_force(&self, at: DateTime<Utc>) -> Option<&CommissionPlan> {
        (self.plan.effective_from <= at).then_some(&self.plan)
    }
    fn sku_mapping(
        &self,
        platform: Platform,
        platform_sku: &str,
        at: DateTime<Utc>,
    ) -> Option<&SkuMapping> {
        self.mappings.iter().find(|m| {
            m.platform == platform && m.platform_sku == platform_sku && m.effective_from <= at
        })
    }
    fn snapshot(
        &self,
        distributor: &DistributorId,
        at: DateTime<Utc>,
        request: &SnapshotRequest,
    ) -> Result<HierarchySnapshot, String> {
        match self.chain.first() {
            Some(first) if &first.distributor_id == distributor => {
                // As deep as the request asks, like the network's own snapshot: members until
                // `levels` levels are used; at the top only when the chain ran out.
                let mut levels = 0;
                let mut members = Vec::new();
                for m in &self.chain {
                    if levels >= request.levels {
                        break;
                    }
                    if request.uses_level(m.status) {
                        levels += 1;
                    }
                    members.push(m.clone());
                }
                let reached_top = members.len() == self.chain.len();
                Ok(snapshot(at, members, reached_top))
            }
            _ => Err(format!("distributor {distributor} is not registered")),
        }
    }
}

pub fn key() -> OrderKey {
    OrderKey {
        platform: Platform::Shopify,
        shop: ShopId::new("acme.myshopify.com").expect("shop"),
        order_id: PlatformOrderId::new("820982911946154508").expect("order id"),
    }
}

pub fn line(line_id: &str, sku: &str, quantity: Decimal, unit_price: Decimal) -> OrderLine {
    OrderLine {
        line_id: LineId::new(line_id).expect("line id"),
        platform_sku: sku.into(),
        quantity,
        unit_price,
        discount: Decimal::ZERO,
        tax: Decimal::ZERO,
    }
}

/// An order by d0 on day 10: 2 x SUPP001 at 50.00 and 1 x KIT-STARTER-001 at 99.00.
pub fn order_details() -> OrderDetails {
    OrderDetails {
        key: key(),
        placed_at: t(10),
        updated_at: t(10),
        currency: Currency::USD,
        distributor: Some(id("d0")),
        prices_include_tax: false,
        lines: vec![
            line("l1", "SUPP001", dec!(2), dec!(50.00)),
            line("l2", "KIT-STARTER-001", dec!(1), dec!(99.00)),
        ],
        order_discount: Decimal::ZERO,
        shipping: dec!(5.00),
        tax: dec!(12.00),
        declared_total: dec!(216.00),
        test: false,
    }
}
