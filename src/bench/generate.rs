//! What the benchmark feeds the server: a generated company (network, SKUs, plan) written in the
//! formats `upline network import` and `upline plan publish` read, and signed Shopify webhooks
//! (new paid orders, duplicates, refunds) generated ahead of each step so that building them
//! costs nothing while the clock runs.
//!
//! Everything comes from one seeded generator: the same flags give the same company and the same
//! traffic on every run, so two runs differ only by the code under test.

use anyhow::{Context, Result};
use axum::body::Bytes;
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

/// The one shop the benchmark configures, and its webhook secret.
pub const SHOP: &str = "bench-store.myshopify.com";
pub const SECRET: &str = "upline-bench-shopify-secret";
/// Distributors join, SKUs and the plan take effect from here: long before any order, whatever
/// the machine's clock says.
pub const COMPANY_EPOCH: &str = "2020-01-01T00:00:00Z";
/// The generated plan's version.
pub const PLAN_VERSION: &str = "bench-2020.1";
/// Distributor ids are numbers from here on (`100000`, `100001`, ...).
const FIRST_ID: usize = 100_000;
/// Order ids start high, like Shopify's, and stay below 2^53 (JSON readers that use floats).
const FIRST_ORDER_ID: u64 = 5_000_000_000_000;
/// Per thousand requests: duplicates (Shopify re-sending the same delivery) and refunds of an
/// earlier order; the rest are new paid orders.
const DUPLICATES_PER_MILLE: u64 = 50;
const REFUNDS_PER_MILLE: u64 = 20;
/// A duplicate re-sends an original due at least this long before it (Shopify retries after
/// its timeout, never before the first attempt left).
const DUPLICATE_MIN_GAP_SECONDS: f64 = 0.1;
/// A refund is for an order due at least this long before it.
const REFUND_MIN_GAP_SECONDS: f64 = 1.0;

/// A tiny deterministic generator (xorshift64*), as in `upline demo`: no dependency, and the
/// same stream for the same seed on every platform.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // Zero is xorshift's fixed point.
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn index(&mut self, len: usize) -> usize {
        usize::try_from(self.below(len as u64)).unwrap_or(0)
    }
}

/// One generated distributor.
#[derive(Debug, Clone)]
pub struct Distributor {
    pub id: String,
    pub code: String,
    /// 0 for the root.
    pub depth: usize,
}

/// One generated SKU, priced in cents.
#[derive(Debug, Clone)]
pub struct Sku {
    pub sku: String,
    pub price_cents: u64,
}

/// The generated company: what is seeded before `upline serve` starts.
#[derive(Debug, Clone)]
pub struct Company {
    pub distributors: Vec<Distributor>,
    pub skus: Vec<Sku>,
    /// The `network import` file (distributors and SKU mappings).
    pub network_json: Value,
    /// The `plan publish` file.
    pub plan_toml: String,
}

impl Company {
    /// The deepest level of the network (the root is level 1).
    pub fn levels(&self) -> usize {
        self.distributors
            .iter()
            .map(|d| d.depth + 1)
            .max()
            .unwrap_or(0)
    }
}

/// A network of `size` distributors exactly `depth` levels deep: the first `depth` form one
/// chain (so the deepest level exists), every later one joins under a random member of a random
/// level, so levels are evenly filled and a random distributor is on average half as deep as the
/// network: most orders have a long upline.
pub fn company(size: usize, depth: usize, skus: usize, rng: &mut Rng) -> Company {
    let (size, depth, skus) = (size.max(1), depth.clamp(1, size.max(1)), skus.max(1));
    let mut distributors: Vec<Distributor> = Vec::with_capacity(size);
    let mut by_level: Vec<Vec<usize>> = vec![Vec::new(); depth];
    let mut entries = Vec::with_capacity(size);
    for i in 0..size {
        let level = if i < depth {
            i
        } else {
            1 + rng.index(depth.saturating_sub(1).max(1))
        };
        let sponsor = level
            .checked_sub(1)
            .map(|up| by_level[up][rng.index(by_level[up].len())]);
        let id = (FIRST_ID + i).to_string();
        let code = format!("R{id}");
        entries.push(distributor_entry(
            i,
            &id,
            &code,
            sponsor.map(|s| &distributors[s].id),
            rng,
        ));
        by_level[level].push(i);
        distributors.push(Distributor {
            id,
            code,
            depth: level,
        });
    }
    let skus: Vec<Sku> = (0..skus)
        .map(|k| Sku {
            sku: format!("BENCH-SKU-{k:03}"),
            // 9.90 to about 100: realistic supplement and cosmetics prices.
            price_cents: 990 + (k as u64 * 4_370) % 9_100,
        })
        .collect();
    let mappings: Vec<Value> = skus
        .iter()
        .enumerate()
        .map(|(k, s)| sku_mapping(k, s))
        .collect();
    Company {
        distributors,
        skus,
        network_json: json!({"distributors": entries, "sku_mappings": mappings}),
        plan_toml: plan_toml(),
    }
}

/// A `network import` distributor: the chain on top is gold and active (so deep orders pay many
/// levels); below it ranks are mixed and one in twenty is inactive (compression skips them).
fn distributor_entry(
    i: usize,
    id: &str,
    code: &str,
    sponsor: Option<&String>,
    rng: &mut Rng,
) -> Value {
    let rank = match rng.below(20) {
        0..=6 => "gold",
        7..=12 => "silver",
        13..=16 => "bronze",
        _ => "member",
    };
    let status = if rng.below(20) == 0 {
        "inactive"
    } else {
        "active"
    };
    let joined = epoch() + chrono::Duration::seconds(i as i64);
    json!({
        "id": id,
        "sponsor": sponsor,
        "referral_codes": [code],
        "country": if i % 3 == 0 { "CA" } else { "US" },
        "status": if sponsor.is_none() { "active" } else { status },
        "rank": if sponsor.is_none() { "gold" } else { rank },
        "joined_at": stamp(joined),
    })
}

/// Classes by SKU: one in ten a starter kit (paid on CV), two in ten subscriptions, the rest
/// retail, the mix of the example plan.
fn sku_mapping(k: usize, sku: &Sku) -> Value {
    let (class, category, cv) = match k % 10 {
        0 => ("starter_kit", "kits", Some("50.00")),
        1 | 2 => ("subscription", "subscriptions", None),
        _ => ("retail", "supplements", None),
    };
    json!({
        "platform": "shopify", "platform_sku": sku.sku, "effective_from": COMPANY_EPOCH,
        "sku_id": sku.sku, "name": format!("Bench product {k}"), "category": category,
        "commission_class": class, "pv_per_unit": "20", "cv_per_unit": cv,
    })
}

/// The example plan's shape (six-level unilevel, compressed, capped at 40 %), dated from the
/// company's epoch so any order time is in force.
fn plan_toml() -> String {
    format!(
        r#"version = "{PLAN_VERSION}"
effective_from = "{COMPANY_EPOCH}"
description = "upline bench: six-level unilevel, compressed, capped at 40%"
max_payout_ratio = "0.40"
qualifying_statuses = ["active"]
compression = true

[[ranks]]
name = "member"
paid_levels = 1

[[ranks]]
name = "bronze"
paid_levels = 2

[[ranks]]
name = "silver"
paid_levels = 4

[[ranks]]
name = "gold"
paid_levels = 6

[classes.retail]
rates = ["0.10", "0.05", "0.04", "0.03", "0.02", "0.01"]

[classes.starter_kit]
rates = ["0.05", "0.15", "0.05"]

[classes.subscription]
rates = ["0.08", "0.04", "0.03", "0.03", "0.02", "0.02"]
"#
    )
}

fn epoch() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(COMPANY_EPOCH)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// What a request is, for the report and the audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `orders/paid` for an order never sent before.
    Order,
    /// The same bytes and delivery ids as an earlier `Order`, sent again.
    Duplicate,
    /// `refunds/create` for an earlier order.
    Refund,
}

/// One signed webhook, ready to send.
#[derive(Debug, Clone)]
pub struct Request {
    pub kind: Kind,
    pub order_id: u64,
    pub topic: &'static str,
    pub event_id: String,
    pub webhook_id: String,
    pub hmac: String,
    pub body: Bytes,
    /// For a duplicate: the index (in its step) of the request it repeats.
    pub original: Option<usize>,
}

/// An order that can still be refunded: its first line, priced.
#[derive(Debug, Clone)]
struct Refundable {
    order_id: u64,
    line_id: u64,
    unit_cents: u64,
    tax_cents: u64,
    quantity: u64,
}

/// Generates the traffic, step after step: order ids never repeat across steps, and refunds may
/// be for orders of earlier steps.
pub struct Traffic {
    rng: Rng,
    company: Company,
    next_order: u64,
    next_refund: u64,
    refundable: Vec<Refundable>,
}

impl Traffic {
    pub fn new(company: Company, rng: Rng) -> Traffic {
        Traffic {
            rng,
            company,
            next_order: FIRST_ORDER_ID,
            next_refund: 1,
            refundable: Vec::new(),
        }
    }

    /// The requests of one step at `rate` per second for `seconds`: request `i` is due at
    /// `i / rate` s. Mostly new paid orders, ~5 % duplicates, ~2 % refunds.
    pub fn step(&mut self, rate: u32, seconds: f64) -> Result<Vec<Request>> {
        let count = (f64::from(rate) * seconds).round().max(1.0) as usize;
        let rate_f = f64::from(rate.max(1));
        let dup_gap = (DUPLICATE_MIN_GAP_SECONDS * rate_f).ceil() as usize;
        let refund_gap = (REFUND_MIN_GAP_SECONDS * rate_f).ceil() as usize;
        let mut out: Vec<Request> = Vec::with_capacity(count);
        // Orders of this step become refundable once they are old enough.
        let mut fresh: std::collections::VecDeque<(usize, Refundable)> = Default::default();
        let mut originals: Vec<usize> = Vec::new();
        let now = Utc::now();
        for i in 0..count {
            while fresh.front().is_some_and(|(at, _)| at + refund_gap <= i) {
                if let Some((_, r)) = fresh.pop_front() {
                    self.refundable.push(r);
                }
            }
            let roll = self.rng.below(1_000);
            let eligible = originals.partition_point(|&o| o + dup_gap <= i);
            let request = if roll < DUPLICATES_PER_MILLE && eligible > 0 {
                let of = originals[self.rng.index(eligible)];
                Request {
                    kind: Kind::Duplicate,
                    original: Some(of),
                    ..out[of].clone()
                }
            } else if roll < DUPLICATES_PER_MILLE + REFUNDS_PER_MILLE && !self.refundable.is_empty()
            {
                let pick = self.rng.index(self.refundable.len());
                let refund = self.refundable.swap_remove(pick);
                self.refund(&refund, now)?
            } else {
                let (request, refundable) = self.order(now)?;
                fresh.push_back((i, refundable));
                originals.push(i);
                request
            };
            out.push(request);
        }
        self.refundable.extend(fresh.into_iter().map(|(_, r)| r));
        Ok(out)
    }

    /// A paid order of 1-3 lines, attributed to a random distributor through one of the three
    /// referral mechanisms upline reads from Shopify (note attribute, discount code, landing
    /// site `ref`).
    fn order(&mut self, now: DateTime<Utc>) -> Result<(Request, Refundable)> {
        let order_id = self.next_order;
        self.next_order += 1;
        let lines_count = 1 + self.rng.below(3);
        let mut lines = Vec::new();
        let (mut subtotal, mut tax_total) = (0u64, 0u64);
        let mut first: Option<Refundable> = None;
        for j in 0..lines_count {
            let sku = &self.company.skus[self.rng.index(self.company.skus.len())];
            let quantity = 1 + self.rng.below(3);
            let line_cents = sku.price_cents * quantity;
            // 8 % sales tax on top, rounded half-up to the cent.
            let tax = (line_cents * 8 + 50) / 100;
            subtotal += line_cents;
            tax_total += tax;
            let line_id = order_id * 10 + j;
            first.get_or_insert(Refundable {
                order_id,
                line_id,
                unit_cents: sku.price_cents,
                tax_cents: (sku.price_cents * 8 + 50) / 100,
                quantity,
            });
            lines.push(json!({
                "id": line_id, "sku": sku.sku, "quantity": quantity, "price": money(sku.price_cents),
                "title": format!("Product {}", sku.sku), "taxable": true,
                "discount_allocations": [],
                "tax_lines": [{"title": "Sales tax", "rate": 0.08, "price": money(tax)}],
            }));
        }
        let distributor =
            &self.company.distributors[self.rng.index(self.company.distributors.len())];
        let code = distributor.code.clone();
        let at = stamp(now);
        let mut body = json!({
            "id": order_id, "name": format!("#B{order_id}"), "email": format!("buyer{}@example.com", order_id % 100_000),
            "created_at": at, "updated_at": at, "processed_at": at,
            "currency": "USD", "financial_status": "paid", "taxes_included": false, "test": false,
            "subtotal_price": money(subtotal), "total_tax": money(tax_total),
            "total_price": money(subtotal + tax_total), "total_discounts": "0.00",
            "line_items": lines, "shipping_lines": [],
            "customer": {"id": 7_000_000 + self.rng.below(10 * self.company.distributors.len() as u64)},
        });
        match self.rng.below(20) {
            0..=11 => body["note_attributes"] = json!([{"name": "distributor_ref", "value": code}]),
            12..=16 => {
                body["discount_codes"] =
                    json!([{"code": code, "amount": "0.00", "type": "fixed_amount"}])
            }
            _ => {
                body["landing_site"] = json!(format!("/products/bench?ref={code}&utm_source=bench"))
            }
        }
        let request = self.signed(
            Kind::Order,
            order_id,
            "orders/paid",
            format!("paid-{order_id}"),
            &body,
        )?;
        let refundable = first.context("an order has at least one line")?;
        Ok((request, refundable))
    }

    /// Shopify's `refunds/create` for one unit of the order's first line (the order stays paid,
    /// its commissions are recalculated on what is left).
    fn refund(&mut self, of: &Refundable, now: DateTime<Utc>) -> Result<Request> {
        let refund_id = 9_000_000_000_000 + self.next_refund;
        self.next_refund += 1;
        let body = json!({
            "id": refund_id, "order_id": of.order_id, "created_at": stamp(now), "note": "bench refund",
            "restock": false, "transactions": [],
            "refund_line_items": [{
                "id": refund_id, "line_item_id": of.line_id, "quantity": 1,
                "subtotal": money(of.unit_cents), "total_tax": money(of.tax_cents),
            }],
        });
        // The order keeps its other units: it can be refunded again later.
        if of.quantity > 1 {
            self.refundable.push(Refundable {
                quantity: of.quantity - 1,
                ..of.clone()
            });
        }
        self.signed(
            Kind::Refund,
            of.order_id,
            "refunds/create",
            format!("refund-{refund_id}"),
            &body,
        )
    }

    fn signed(
        &mut self,
        kind: Kind,
        order_id: u64,
        topic: &'static str,
        event: String,
        body: &Value,
    ) -> Result<Request> {
        let body = Bytes::from(serde_json::to_vec(body).context("encoding a webhook body")?);
        Ok(Request {
            kind,
            order_id,
            topic,
            event_id: format!("bench-{event}"),
            webhook_id: uuid::Uuid::from_u64_pair(self.rng.next(), self.rng.next()).to_string(),
            hmac: hmac_base64(SECRET, &body),
            body,
            original: None,
        })
    }
}

/// Shopify's signature: base64 of HMAC-SHA256 over the raw body.
pub fn hmac_base64(secret: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length: this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The order's stream in the event store (`upline_app::streams`).
pub fn order_stream(order_id: u64) -> String {
    format!("order-shopify-{SHOP}-{order_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_network_is_as_deep_as_asked_and_every_sponsor_comes_first() {
        let company = company(500, 12, 5, &mut Rng::new(7));
        assert_eq!(company.levels(), 12);
        let entries = company.network_json["distributors"].as_array().unwrap();
        let mut seen = std::collections::HashSet::new();
        for e in entries {
            if let Some(s) = e["sponsor"].as_str() {
                assert!(seen.contains(s), "{s} sponsors before joining");
            }
            seen.insert(e["id"].as_str().unwrap().to_string());
            assert_eq!(e["referral_codes"].as_array().unwrap().len(), 1);
        }
    }

    #[test]
    fn a_step_mixes_orders_duplicates_and_refunds_with_unique_order_ids() {
        let company = company(50, 5, 4, &mut Rng::new(3));
        let mut traffic = Traffic::new(company, Rng::new(11));
        let first = traffic.step(200, 10.0).unwrap();
        let second = traffic.step(200, 10.0).unwrap();
        let all: Vec<&Request> = first.iter().chain(&second).collect();
        let orders: std::collections::HashSet<u64> = all
            .iter()
            .filter(|r| r.kind == Kind::Order)
            .map(|r| r.order_id)
            .collect();
        let count = |k: Kind| all.iter().filter(|r| r.kind == k).count();
        assert_eq!(orders.len(), count(Kind::Order));
        assert!(count(Kind::Duplicate) > 100 && count(Kind::Refund) > 30);
        for (i, r) in first.iter().enumerate() {
            if let Some(of) = r.original {
                assert!(of < i && first[of].body == r.body && first[of].webhook_id == r.webhook_id);
            }
        }
    }
}
