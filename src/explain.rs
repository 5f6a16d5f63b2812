//! `upline plan validate` and `upline plan explain`: the plan designer's tools.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use upline_domain::company::Company;
use upline_domain::engine::{CommissionOutcome, Decision};
use upline_domain::money::Currency;
use upline_domain::order::{
    self, CalculationInputs, OrderCommand, OrderEvent, OrderState, Refund, RefundScope,
};
use upline_domain::plan::CommissionPlan;

use crate::inputs::{read_json, NetworkFile, OrderFile};

pub fn load_plan(path: &Path) -> Result<CommissionPlan> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    CommissionPlan::from_toml(&text)
        .map_err(|errors| anyhow::anyhow!("{} is not a valid plan:\n{errors}", path.display()))
}

pub fn validate(path: &Path) -> Result<String> {
    let plan = load_plan(path)?;
    Ok(format!("{} is valid.\n{}", path.display(), plan.summary()))
}

/// The result of running one order through the real order aggregate.
struct Explained {
    inputs: Option<CalculationInputs>,
    /// The plan the inputs name.
    plan: Option<CommissionPlan>,
    /// The commissions as they stand after every fact in the order file.
    outcome: Option<CommissionOutcome>,
    events: Vec<OrderEvent>,
    state: OrderState,
}

pub fn explain(
    plan_path: &Path,
    order_path: &Path,
    network_path: &Path,
    json: bool,
) -> Result<String> {
    let plan = load_plan(plan_path)?;
    let network_file: NetworkFile = read_json(network_path)?;
    let order_file: OrderFile = read_json(order_path)?;
    let (network, catalog) = network_file.build(network_path)?;
    let mut company = Company {
        network,
        catalog,
        ..Company::default()
    };
    company
        .plans
        .publish(plan)
        .map_err(|e| anyhow::anyhow!("{}: {e}", plan_path.display()))?;

    let details = order_file.details(&company.network)?;
    let key = order_file.key();
    let mut commands = vec![
        OrderCommand::RecordOrder(details),
        OrderCommand::RecordPayment {
            paid_at: order_file.paid_at.unwrap_or(order_file.placed_at),
        },
    ];
    commands.extend(
        order_file
            .refunds
            .iter()
            .cloned()
            .map(OrderCommand::RecordRefund),
    );
    if let Some(cancelled_at) = order_file.cancelled_at {
        commands.push(OrderCommand::RecordCancellation { cancelled_at });
    }
    let mut run = Explained {
        inputs: None,
        plan: None,
        outcome: None,
        events: Vec::new(),
        state: OrderState::default(),
    };
    for command in &commands {
        let events = order::decide(&run.state, &key, command, &company)
            .with_context(|| format!("{}: the order cannot be calculated", order_path.display()))?;
        for event in events {
            order::evolve(&mut run.state, &event);
            if let OrderEvent::CommissionCalculated { inputs, .. } = &event {
                run.inputs = Some(inputs.as_ref().clone());
            }
            run.events.push(event);
        }
    }
    // The events record the payouts; the lines and trace are recomputed from the inputs.
    let cannot = || format!("{}: the order cannot be calculated", order_path.display());
    run.outcome = order::explained_outcome(&run.state, &company.plans).with_context(cannot)?;
    if let Some(inputs) = &run.inputs {
        let plan = order::recorded_plan(inputs, &company.plans).with_context(cannot)?;
        run.plan = Some(plan.clone());
    }
    if json {
        let mut events = Vec::with_capacity(run.events.len());
        for event in &run.events {
            let encoded = upline_domain::events::encode(event)?;
            let body: serde_json::Value = serde_json::from_slice(&encoded.data)?;
            events.push((encoded.event_type, body));
        }
        let value = serde_json::json!({ "inputs": run.inputs, "plan": run.plan, "outcome": run.outcome, "events": events });
        return Ok(format!("{}\n", serde_json::to_string_pretty(&value)?));
    }
    Ok(render(&order_file, &run))
}

fn render(order_file: &OrderFile, run: &Explained) -> String {
    let mut out = String::new();
    let w = &mut out;
    let state = &run.state;
    let Some(details) = &state.details else {
        return "no order recorded\n".into();
    };
    let cur = details.currency;
    let _ = writeln!(
        w,
        "Order {}/{}/{} placed {} in {}",
        details.key.platform,
        details.key.shop,
        details.key.order_id,
        utc(details.placed_at),
        cur
    );
    match (&details.distributor, &order_file.referral_code) {
        (Some(d), Some(code)) => {
            let _ = writeln!(w, "Attributed to distributor {d} (referral code {code})");
        }
        (Some(d), None) => {
            let _ = writeln!(w, "Attributed to distributor {d}");
        }
        (None, _) => {
            let _ = writeln!(w, "Unattributed: the order earns no commission");
        }
    }
    let (Some(inputs), Some(plan)) = (&run.inputs, &run.plan) else {
        let _ = writeln!(
            w,
            "\nNo commission was calculated (unattributed, or cancelled before payment)."
        );
        return out;
    };
    let _ = writeln!(
        w,
        "Plan {} (effective {}), plan sha256 {}\nHierarchy snapshot at {}: {} members, sha256 {}",
        plan.version,
        utc(plan.effective_from),
        &inputs.plan_hash[..16.min(inputs.plan_hash.len())],
        utc(inputs.snapshot.at),
        inputs.snapshot.members.len(),
        &inputs.snapshot.content_hash[..16.min(inputs.snapshot.content_hash.len())],
    );

    let _ = writeln!(
        w,
        "\nLines (net = subtotal - line discount - order discount share - tax included)"
    );
    let mut table = vec![row(&[
        "line",
        "sku",
        "class",
        "qty",
        "subtotal",
        "discount",
        "order disc.",
        "tax incl.",
        "net",
        "base",
    ])];
    for (net, cl) in state.net_lines.iter().zip(&inputs.lines) {
        table.push(vec![
            net.line_id.to_string(),
            net.platform_sku.clone(),
            cl.commission_class.to_string(),
            net.quantity.normalize().to_string(),
            money(cur, net.subtotal),
            money(cur, net.line_discount),
            money(cur, net.order_discount_share),
            money(cur, net.included_tax),
            money(cur, net.net),
            money(cur, cl.base),
        ]);
    }
    write_table(w, &table);
    for (sku, cv) in inputs
        .sku_mappings
        .iter()
        .filter_map(|m| m.cv_per_unit.map(|cv| (&m.platform_sku, cv)))
    {
        let _ = writeln!(
            w,
            "{sku} carries a CV of {cv} per unit: its base is CV x quantity, not its net."
        );
    }
    let _ = writeln!(
        w,
        "Shipping {} and tax {} are not commissionable.",
        details.shipping, details.tax
    );

    let Some(outcome) = &run.outcome else {
        let _ = writeln!(
            w,
            "\nCancelled after payment: every beneficiary nets to zero."
        );
        write_adjustments(w, cur, &run.events);
        return out;
    };
    if !state.refunds.is_empty() {
        let _ = writeln!(w, "\nRefunds (the lines keep what was not refunded):");
        for refund in state.refunds.values() {
            let _ = writeln!(w, "  {}", describe_refund(cur, refund));
        }
    }
    let ratio = plan.max_payout_ratio;
    let base = outcome.commissionable_base;
    let _ = writeln!(
        w,
        "\nCommissionable base {} {cur}; cap = max_payout_ratio x base, rounded down: {} x {} = {} -> {} {cur}",
        money(cur, base),
        ratio.normalize(),
        money(cur, base),
        (ratio * base).normalize(),
        money(cur, outcome.cap)
    );

    let _ = writeln!(
        w,
        "\nPaid per beneficiary (rounded half-even once per order)"
    );
    let mut table = vec![row(&[
        "level",
        "distributor",
        "line",
        "class",
        "base",
        "rate",
        "amount",
    ])];
    for p in &outcome.payouts {
        for l in outcome
            .lines
            .iter()
            .filter(|l| l.beneficiary == p.beneficiary)
        {
            table.push(vec![
                l.level.to_string(),
                l.beneficiary.to_string(),
                l.line_id.to_string(),
                l.commission_class.to_string(),
                money(cur, l.base),
                l.rate.normalize().to_string(),
                money(cur, l.amount),
            ]);
        }
        let cut = if cur.round(p.unrounded) != p.amount {
            "  (cut by the cap)"
        } else {
            ""
        };
        table.push(vec![
            String::new(),
            format!("= {}", p.beneficiary),
            String::new(),
            String::new(),
            String::new(),
            "sum".into(),
            format!(
                "{} -> {} {cur}{cut}",
                p.unrounded.normalize(),
                money(cur, p.amount)
            ),
        ]);
    }
    write_table(w, &table);
    let _ = writeln!(
        w,
        "Total {} {cur} of cap {} {cur}",
        money(cur, outcome.total),
        money(cur, outcome.cap)
    );

    let _ = writeln!(w, "\nTrace (every upline member considered)");
    let mut table = vec![row(&[
        "depth",
        "distributor",
        "status",
        "rank",
        "level",
        "decision",
    ])];
    for s in &outcome.trace {
        table.push(vec![
            s.depth.to_string(),
            s.distributor_id.to_string(),
            s.status.as_str().to_string(),
            s.rank.to_string(),
            s.level.map_or("-".into(), |l| l.to_string()),
            describe(&s.decision, &s.rank, plan),
        ]);
    }
    write_table(w, &table);
    if inputs.snapshot.reached_top {
        let _ = writeln!(w, "The walk reached the top of the network.");
    }
    write_adjustments(w, cur, &run.events);
    out
}

/// An amount in the currency's scale, for people (`--format json` has the exact values).
fn money(currency: Currency, amount: rust_decimal::Decimal) -> String {
    let mut shown = currency.round(amount);
    shown.rescale(currency.minor_unit());
    shown.to_string()
}

/// `refund r1: 1 x line 2, 2 x line 3 (stated net 3.00)` or `refund r2: 10.00 of the net`.
fn describe_refund(currency: Currency, refund: &Refund) -> String {
    let what = match &refund.scope {
        RefundScope::Lines(lines) => lines
            .iter()
            .map(|l| {
                let stated = l
                    .stated_net
                    .map(|a| format!(" (stated net {})", money(currency, a)))
                    .unwrap_or_default();
                format!("{} x line {}{stated}", l.quantity.normalize(), l.line_id)
            })
            .collect::<Vec<_>>()
            .join(", "),
        RefundScope::NetAmount(amount) => format!("{} of the net", money(currency, *amount)),
    };
    format!(
        "refund {}: {what} at {}",
        refund.refund_id,
        utc(refund.refunded_at)
    )
}

fn write_adjustments(w: &mut String, cur: Currency, events: &[OrderEvent]) {
    for e in events {
        if let OrderEvent::CommissionRecalculated {
            cause, adjustments, ..
        } = e
        {
            let _ = writeln!(w, "\nRecalculated ({cause:?}):");
            let mut table = vec![row(&["distributor", "held", "now", "change"])];
            for a in adjustments {
                table.push(vec![
                    a.beneficiary.to_string(),
                    money(cur, a.held),
                    money(cur, a.now),
                    money(cur, a.change),
                ]);
            }
            write_table(w, &table);
        }
    }
}

fn describe(d: &Decision, rank: &upline_domain::ids::RankName, plan: &CommissionPlan) -> String {
    match d {
        Decision::RankNotOnLadder => {
            let ladder: Vec<String> = plan
                .ranks
                .iter()
                .map(|r| format!("{} {}", r.name, r.paid_levels))
                .collect();
            format!(
                "level used, nothing paid: rank {rank} is not on the plan's rank ladder ({})",
                ladder.join(", ")
            )
        }
        Decision::Paid => "paid".into(),
        Decision::SkippedByCompression => {
            "skipped: status does not qualify (compressed, no level used)".into()
        }
        Decision::StatusNotQualifying => "level used, nothing paid: status does not qualify".into(),
        Decision::RankTooLow { paid_levels } => {
            format!(
                "level used, nothing paid: rank {rank} unlocks {paid_levels} level(s) on the rank ladder"
            )
        }
        Decision::NoRateAtLevel => "level used: no class pays at this level".into(),
        Decision::CutByCap { from, to } if to.is_zero() => {
            format!("cut by the cap: {from} -> nothing left")
        }
        Decision::CutByCap { from, to } => format!("cut by the cap: {from} -> {to}"),
    }
}

fn utc(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

/// Left-aligned text columns, two spaces apart.
fn write_table(w: &mut String, rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(w, "  {}", line.join("  ").trim_end());
    }
}
