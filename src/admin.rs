//! Operator commands on the data directory: publish a plan, import a network, list and retry
//! parked orders. They go through the same application layer as webhooks.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use upline_app::{Provenance, UpdateOutcome};

use crate::config::ServeConfig;
use crate::explain::load_plan;
use crate::inputs::{read_json, NetworkFile};
use crate::server::Services;

/// A command id for operator commands: the tool and the file, so a repeat is recognisable.
fn provenance(what: &str, path: &Path) -> Provenance {
    Provenance::command(&format!("cli:{what}:{}", path.display()))
}

pub async fn publish_plan(config: &ServeConfig, file: &Path) -> Result<String> {
    let plan = load_plan(file)?;
    let services = Services::open(config).await?;
    let version = plan.version.clone();
    let published = services
        .app
        .company()
        .publish_plan(plan, &provenance("plan-publish", file))
        .await;
    services.close().await?;
    Ok(
        if published.with_context(|| format!("{}: cannot publish", file.display()))? {
            format!("published plan {version}\n")
        } else {
            format!("plan {version} was already published with this content\n")
        },
    )
}

pub async fn import_network(config: &ServeConfig, file: &Path) -> Result<String> {
    let network: NetworkFile = read_json(file)?;
    let commands = network.commands(file)?;
    let services = Services::open(config).await?;
    let result = async {
        let company = services.app.company();
        let who = provenance("network-import", file);
        let (mut recorded, mut known) = (0, 0);
        for (place, command) in &commands {
            let events = company.execute_network(command, &who).await.with_context(|| place.clone())?;
            if events.is_empty() { known += 1 } else { recorded += events.len() }
        }
        let mut mapped = 0;
        for (i, mapping) in network.sku_mappings.iter().enumerate() {
            let events = company
                .map_sku(mapping.clone(), &who)
                .await
                .with_context(|| format!("{}: sku_mappings[{i}] ({})", file.display(), mapping.platform_sku))?;
            mapped += events.len();
        }
        anyhow::Ok(format!(
            "{recorded} network events recorded, {known} already known; {mapped} SKU mappings recorded\n"
        ))
    }
    .await;
    services.close().await?;
    result
}

pub async fn enroll_customer(
    config: &ServeConfig,
    platform: upline_domain::ids::Platform,
    shop: &upline_domain::ids::ShopId,
    customer: &str,
    distributor: &upline_domain::ids::DistributorId,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<String> {
    let services = Services::open(config).await?;
    let who = Provenance::command(&format!("cli:customer-enroll:{platform}:{shop}:{customer}"));
    let enrolled = services
        .app
        .company()
        .enroll_customer(platform, shop, customer, distributor, at, &who)
        .await;
    services.close().await?;
    Ok(if enrolled? {
        format!("customer {customer} of {platform}/{shop} enrolled with {distributor}\n")
    } else {
        format!(
            "customer {customer} of {platform}/{shop} was already enrolled with {distributor}\n"
        )
    })
}

pub async fn list_parked(config: &ServeConfig) -> Result<String> {
    let services = Services::open(config).await?;
    let orders = services.app.list_parked().await;
    let deliveries = services.inbox.list(Some("parked"), 1_000).await;
    services.close().await?;
    let (orders, deliveries) = (orders?, deliveries?);
    let mut out = String::new();
    if orders.is_empty() && deliveries.is_empty() {
        return Ok("nothing is parked\n".into());
    }
    for p in &orders {
        let _ = writeln!(
            out,
            "{}  {} update(s), parked {}, {} retr{}: {}",
            p.order_stream,
            p.updates,
            p.parked_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            p.retries,
            if p.retries == 1 { "y" } else { "ies" },
            p.reason
        );
    }
    for d in &deliveries {
        let _ = writeln!(
            out,
            "delivery #{} ({} {} {}): {}",
            d.id,
            d.delivery.platform,
            d.delivery.shop,
            d.delivery.topic,
            d.outcome_reason.as_deref().unwrap_or("no reason recorded")
        );
    }
    if !orders.is_empty() {
        let _ = writeln!(
            out,
            "retry one with `upline parked retry ORDER-STREAM`, or all with `--all`"
        );
    }
    Ok(out)
}

pub async fn retry_parked(config: &ServeConfig, key: Option<&str>, all: bool) -> Result<String> {
    anyhow::ensure!(
        key.is_some() || all,
        "name the order stream to retry, or pass --all"
    );
    let services = Services::open(config).await?;
    let result = async {
        let streams: Vec<String> = match key {
            Some(k) => vec![k.to_string()],
            None => services
                .app
                .list_parked()
                .await?
                .into_iter()
                .map(|p| p.order_stream)
                .collect(),
        };
        let mut out = String::new();
        for stream in streams {
            let who = Provenance::command(&format!("cli:parked-retry:{stream}"));
            match services.app.retry_parked(&stream, &who).await? {
                UpdateOutcome::Parked { reason, .. } => {
                    let _ = writeln!(out, "{stream}: still parked: {reason}");
                }
                _ => {
                    let _ = writeln!(out, "{stream}: processed");
                }
            }
        }
        anyhow::Ok(out)
    }
    .await;
    services.close().await?;
    result
}
