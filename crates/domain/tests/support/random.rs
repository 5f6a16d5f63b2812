//! Random companies for property tests: plans written as TOML documents (so they go through the
//! real parser), networks, catalogs and orders, with the real domain built from them.
//!
//! What is generated is valid by the written rules; which of issue 7's cases appear is chosen
//! by [`Cases`], so a test can also run only the cases the engine handled before the fixes.
#![allow(dead_code)]

use std::fmt::Write as _;

use proptest::prelude::*;
use rust_decimal::Decimal;
use upline_domain::catalog::{Catalog, CatalogCommand, SkuMapping};
use upline_domain::company::Company;
use upline_domain::ids::*;
use upline_domain::money::Currency;
use upline_domain::net::OrderLine;
use upline_domain::network::{DistributorCommand, Network};
use upline_domain::order::OrderDetails;
use upline_domain::plan::{CommissionPlan, PlanBook, PlanErrors};
use upline_domain::snapshot::DistributorStatus;

use crate::reference::{self, Member, Product, Sale};
use crate::support::{id, key, rank, t};

/// Which of issue 7's cases to generate.
#[derive(Debug, Clone, Copy)]
pub struct Cases {
    /// Ladders whose highest rank unlocks fewer levels than the longest class pays.
    pub short_ladders: bool,
    /// Upline members whose rank is not on the plan's ladder.
    pub ranks_off_the_ladder: bool,
    /// Classes that pay nothing, written `rates = []`.
    pub empty_classes: bool,
    /// Unit prices with more decimals than the currency (up to 4).
    pub fine_prices: bool,
}

impl Cases {
    pub const ALL: Cases = Cases {
        short_ladders: true,
        ranks_off_the_ladder: true,
        empty_classes: true,
        fine_prices: true,
    };
    /// Only what the engine calculated before issue 7's fixes.
    pub const BEFORE_ISSUE_7: Cases = Cases {
        short_ladders: false,
        ranks_off_the_ladder: false,
        empty_classes: false,
        fine_prices: false,
    };
}

pub const STATUSES: [DistributorStatus; 4] = [
    DistributorStatus::Active,
    DistributorStatus::Inactive,
    DistributorStatus::Suspended,
    DistributorStatus::Terminated,
];

/// A rank that no generated ladder has.
pub const OFF_THE_LADDER: &str = "emeritus";

// ---------------------------------------------------------------------------------------------
// Plans.
// ---------------------------------------------------------------------------------------------

/// A plan as its designer would write it.
#[derive(Debug, Clone)]
pub struct PlanDocument {
    /// (class name, rates), rates as decimals in [0, 1].
    pub classes: Vec<(String, Vec<Decimal>)>,
    /// (rank name, paid levels), lowest first.
    pub ranks: Vec<(String, u32)>,
    pub compression: bool,
    pub qualifying: Vec<DistributorStatus>,
    pub max_payout_ratio: Decimal,
}

impl PlanDocument {
    /// The TOML text, with rates and the ratio as strings.
    pub fn toml(&self) -> String {
        let mut s = String::new();
        let statuses: Vec<String> = self
            .qualifying
            .iter()
            .map(|q| format!("{:?}", q.as_str()))
            .collect();
        // Writing to a String cannot fail.
        let _ = writeln!(s, "version = \"random-1\"");
        let _ = writeln!(s, "effective_from = \"2026-01-01T00:00:00Z\"");
        let _ = writeln!(s, "max_payout_ratio = \"{}\"", self.max_payout_ratio);
        let _ = writeln!(s, "qualifying_statuses = [{}]", statuses.join(", "));
        let _ = writeln!(s, "compression = {}", self.compression);
        for (name, paid_levels) in &self.ranks {
            let _ = writeln!(
                s,
                "\n[[ranks]]\nname = \"{name}\"\npaid_levels = {paid_levels}"
            );
        }
        for (name, rates) in &self.classes {
            let rates: Vec<String> = rates.iter().map(|r| format!("\"{r}\"")).collect();
            let _ = writeln!(s, "\n[classes.{name}]\nrates = [{}]", rates.join(", "));
        }
        s
    }

    pub fn parse(&self) -> Result<CommissionPlan, PlanErrors> {
        CommissionPlan::from_toml(&self.toml())
    }

    pub fn rank_names(&self) -> Vec<String> {
        self.ranks.iter().map(|(n, _)| n.clone()).collect()
    }

    pub fn class_names(&self) -> Vec<String> {
        self.classes.iter().map(|(n, _)| n.clone()).collect()
    }

    /// The longest class's rates list.
    pub fn longest_class(&self) -> u32 {
        self.classes
            .iter()
            .map(|(_, r)| r.len() as u32)
            .max()
            .unwrap_or(0)
    }

    /// The deepest level any order can pay: beyond the highest rank or the longest class,
    /// nothing is paid.
    pub fn paid_depth(&self) -> u32 {
        let highest = self.ranks.iter().map(|(_, p)| *p).max().unwrap_or(0);
        highest.min(self.longest_class())
    }
}

fn rate() -> impl Strategy<Value = Decimal> {
    prop_oneof![
        1 => Just(Decimal::ZERO),
        6 => (0i64..=3000).prop_map(|n| Decimal::new(n, 4)),
        1 => (0i64..=100).prop_map(|n| Decimal::new(n, 2)),
    ]
}

pub fn plan_document(cases: Cases) -> impl Strategy<Value = PlanDocument> {
    let shortest_class = usize::from(!cases.empty_classes);
    let classes = prop::collection::vec(prop::collection::vec(rate(), shortest_class..=6), 1..=3);
    (
        classes,
        prop::collection::vec(0u32..=64, 1..=4),
        any::<bool>(),
        1usize..16,
        1i64..=100,
    )
        .prop_map(move |(classes, depths, compression, status_bits, ratio)| {
            let classes: Vec<(String, Vec<Decimal>)> = classes
                .into_iter()
                .enumerate()
                .map(|(i, rates)| (format!("c{i}"), rates))
                .collect();
            let longest = classes
                .iter()
                .map(|(_, r)| r.len() as u32)
                .max()
                .unwrap_or(0);
            let mut paid: Vec<u32> = depths.iter().map(|d| d % (longest + 1)).collect();
            paid.sort_unstable();
            if !cases.short_ladders {
                if let Some(top) = paid.last_mut() {
                    *top = longest;
                }
            }
            PlanDocument {
                classes,
                ranks: paid
                    .into_iter()
                    .enumerate()
                    .map(|(i, p)| (format!("r{i}"), p))
                    .collect(),
                compression,
                qualifying: STATUSES
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| status_bits & (1 << i) != 0)
                    .map(|(_, s)| *s)
                    .collect(),
                max_payout_ratio: Decimal::new(ratio, 2),
            }
        })
}

// ---------------------------------------------------------------------------------------------
// Networks.
// ---------------------------------------------------------------------------------------------

/// A distributor before the plan is known: ranks are picked by index into the ladder.
#[derive(Debug, Clone)]
pub struct MemberDraft {
    pub sponsor_pick: usize,
    pub status: DistributorStatus,
    pub rank_pick: usize,
}

fn status() -> impl Strategy<Value = DistributorStatus> {
    prop_oneof![
        5 => Just(DistributorStatus::Active),
        1 => Just(DistributorStatus::Inactive),
        1 => Just(DistributorStatus::Suspended),
        1 => Just(DistributorStatus::Terminated),
    ]
}

/// 1 to `max` distributors; member 0 is the top, each other one is sponsored by an earlier one
/// (often the one just before, so chains get deep).
pub fn network_drafts(max: usize) -> impl Strategy<Value = Vec<MemberDraft>> {
    prop::collection::vec(
        (
            prop_oneof![2 => Just(usize::MAX), 1 => 0usize..64],
            status(),
            0usize..6,
        )
            .prop_map(|(sponsor_pick, status, rank_pick)| MemberDraft {
                sponsor_pick,
                status,
                rank_pick,
            }),
        1..=max,
    )
}

/// The members with their ranks on `ladder` (or off it, when `off_the_ladder` and the pick says
/// so).
pub fn members(drafts: &[MemberDraft], ladder: &[String], off_the_ladder: bool) -> Vec<Member> {
    drafts
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let sponsor = match i {
                0 => None,
                _ if d.sponsor_pick == usize::MAX => Some(i - 1),
                _ => Some(d.sponsor_pick % i),
            };
            let name = if off_the_ladder && d.rank_pick >= ladder.len() {
                OFF_THE_LADDER.to_string()
            } else {
                ladder[d.rank_pick % ladder.len()].clone()
            };
            Member {
                id: id(&format!("d{i}")),
                sponsor,
                status: d.status,
                rank: rank(&name),
            }
        })
        .collect()
}

/// The real network: every member registered active on day 1, sponsors first (nobody can
/// join under a terminated sponsor), then each status changed on day 2.
pub fn network(members: &[Member]) -> Network {
    let mut network = Network::new();
    for m in members {
        let command = DistributorCommand::RegisterDistributor {
            distributor_id: m.id.clone(),
            sponsor: m.sponsor.map(|s| members[s].id.clone()),
            referral_codes: vec![],
            country: "US".into(),
            status: DistributorStatus::Active,
            rank: m.rank.clone(),
            joined_at: t(1),
        };
        network
            .execute(&command)
            .expect("a generated member registers");
    }
    for m in members
        .iter()
        .filter(|m| m.status != DistributorStatus::Active)
    {
        let command = DistributorCommand::ChangeStatus {
            distributor_id: m.id.clone(),
            status: m.status,
            effective_at: t(2),
        };
        network
            .execute(&command)
            .expect("a generated status change is accepted");
    }
    network
}

// ---------------------------------------------------------------------------------------------
// Catalog and orders.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct ProductDraft {
    pub class_pick: usize,
    /// CV per unit in minor units of 0.01.
    pub cv_cents: Option<i64>,
}

pub const SKUS: usize = 4;

pub fn product_drafts() -> impl Strategy<Value = Vec<ProductDraft>> {
    prop::collection::vec(
        (0usize..8, prop::option::weighted(0.4, 0i64..=10_000)).prop_map(
            |(class_pick, cv_cents)| ProductDraft {
                class_pick,
                cv_cents,
            },
        ),
        SKUS,
    )
}

pub fn products(drafts: &[ProductDraft], classes: &[String]) -> Vec<Product> {
    drafts
        .iter()
        .enumerate()
        .map(|(i, d)| Product {
            platform_sku: format!("SKU-{i}"),
            class: CommissionClass::new(&classes[d.class_pick % classes.len()]).expect("class"),
            cv_per_unit: d.cv_cents.map(|c| Decimal::new(c, 2)),
        })
        .collect()
}

pub fn catalog(products: &[Product]) -> Catalog {
    let mut catalog = Catalog::new();
    for p in products {
        let mapping = SkuMapping {
            platform: Platform::Shopify,
            platform_sku: p.platform_sku.clone(),
            effective_from: t(1),
            sku_id: SkuId::new(&p.platform_sku).expect("sku"),
            name: p.platform_sku.to_lowercase(),
            category: "any".into(),
            commission_class: p.class.clone(),
            pv_per_unit: Some(Decimal::new(125, 1)),
            cv_per_unit: p.cv_per_unit,
        };
        catalog
            .execute(&CatalogCommand::MapSku(mapping))
            .expect("a generated mapping is accepted");
    }
    catalog
}

pub fn company(plan: CommissionPlan, members: &[Member], products: &[Product]) -> Company {
    let mut plans = PlanBook::default();
    plans.publish(plan).expect("a parsed plan publishes");
    Company {
        network: network(members),
        catalog: catalog(products),
        plans,
    }
}

#[derive(Debug, Clone)]
pub struct LineDraft {
    pub sku: usize,
    pub quantity: u32,
    /// Price in minor units; `None` for a free line.
    pub price_minor: Option<i64>,
    /// Extra decimals beyond the minor unit, in units of 0.0001 (used only for fine prices).
    pub fraction: i64,
    /// Percent of the subtotal: the line's own discount and its tax.
    pub discount_pct: i64,
    pub tax_pct: i64,
}

#[derive(Debug, Clone)]
pub struct OrderDraft {
    pub currency: Currency,
    pub seller_pick: usize,
    pub lines: Vec<LineDraft>,
    pub order_discount_pct: i64,
    pub prices_include_tax: bool,
}

pub fn order_draft() -> impl Strategy<Value = OrderDraft> {
    let line = (
        0usize..SKUS,
        1u32..=5,
        prop::option::weighted(0.9, 100i64..=20_000),
        0i64..100,
        0i64..=25,
        0i64..=25,
    )
        .prop_map(
            |(sku, quantity, price_minor, fraction, discount_pct, tax_pct)| LineDraft {
                sku,
                quantity,
                price_minor,
                fraction,
                discount_pct,
                tax_pct,
            },
        );
    (
        prop::sample::select(vec![Currency::USD, Currency::JPY, Currency::KWD]),
        0usize..64,
        prop::collection::vec(line, 1..=4),
        0i64..=25,
        any::<bool>(),
    )
        .prop_map(
            |(currency, seller_pick, lines, order_discount_pct, prices_include_tax)| OrderDraft {
                currency,
                seller_pick,
                lines,
                order_discount_pct,
                prices_include_tax,
            },
        )
}

/// `pct` percent of `amount`, rounded down to whole minor units.
fn percent_of(currency: Currency, amount: Decimal, pct: i64) -> Decimal {
    reference::round_down(currency, amount * Decimal::new(pct, 2))
}

/// The order as the platform would price it. Discounts and taxes stay within a quarter of the
/// subtotal each, so every generated order is valid.
pub fn sale(draft: &OrderDraft, members: usize, cases: Cases) -> Sale {
    let currency = draft.currency;
    let lines: Vec<OrderLine> = draft
        .lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let unit_price = match l.price_minor {
                None => Decimal::ZERO,
                Some(m) => {
                    let whole = Decimal::new(m, currency.minor_unit());
                    if cases.fine_prices {
                        whole + Decimal::new(l.fraction, 4)
                    } else {
                        whole
                    }
                }
            };
            let quantity = Decimal::from(l.quantity);
            let subtotal = quantity * unit_price;
            OrderLine {
                line_id: LineId::new(format!("l{i}")).expect("line id"),
                platform_sku: format!("SKU-{}", l.sku),
                quantity,
                unit_price,
                discount: percent_of(currency, subtotal, l.discount_pct),
                tax: percent_of(currency, subtotal, l.tax_pct),
            }
        })
        .collect();
    let subtotal: Decimal = lines.iter().map(|l| l.quantity * l.unit_price).sum();
    Sale {
        currency,
        seller: draft.seller_pick % members,
        order_discount: percent_of(currency, subtotal, draft.order_discount_pct),
        prices_include_tax: draft.prices_include_tax,
        lines,
    }
}

/// The order as the aggregate receives it, placed on day 10.
pub fn details(sale: &Sale, members: &[Member]) -> OrderDetails {
    OrderDetails {
        key: key(),
        placed_at: t(10),
        updated_at: t(10),
        currency: sale.currency,
        distributor: Some(members[sale.seller].id.clone()),
        prices_include_tax: sale.prices_include_tax,
        lines: sale.lines.clone(),
        order_discount: sale.order_discount,
        shipping: Decimal::ZERO,
        tax: Decimal::ZERO,
        declared_total: Decimal::ZERO,
        test: false,
    }
}
