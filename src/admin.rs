//! Operator commands on the data directory: publish a plan, import a network, list and retry
//! parked orders and parked deliveries, list and retry the events consumers hold back. They go through the same application layer as webhooks.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use upline_app::inbox::sqlite::{DeliveryStatus, MAX_LIST};
use upline_app::inbox::{Inbox, InboxError};
use upline_app::quarantine::{parse_held_id, HeldEvent};
use upline_app::worker::Worker;
use upline_app::CommissionPostings;
use upline_app::{Provenance, UpdateOutcome};
use upline_platforms::model::Interpretation;

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
        let (places, commands): (Vec<_>, Vec<_>) = commands.into_iter().unzip();
        let imported = company.import_network(&commands, &who).await.map_err(|e| {
            let place = places.get(e.index).cloned().unwrap_or_default();
            anyhow::Error::new(e.error).context(format!(
                "{place} ({} events recorded before it)",
                e.done.recorded
            ))
        })?;
        let (recorded, known) = (imported.recorded, imported.known);
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

/// How a listing is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Lines for a person.
    #[default]
    Text,
    /// One JSON object.
    Json,
}

/// Parked entries shown per page of `upline parked list` unless `--limit` says otherwise.
pub const DEFAULT_PARKED_PAGE: usize = 100;

/// One page of `upline parked list`: parked orders first (by order stream), then parked
/// deliveries (by id). `after` is the key of the last entry of the previous page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedListing {
    pub limit: usize,
    pub after: Option<String>,
    pub format: Format,
}

impl Default for ParkedListing {
    fn default() -> Self {
        ParkedListing {
            limit: DEFAULT_PARKED_PAGE,
            after: None,
            format: Format::Text,
        }
    }
}

/// One line of `upline parked list`.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum ParkedEntry {
    Order {
        key: String,
        updates: usize,
        parked_at: chrono::DateTime<chrono::Utc>,
        retries: usize,
        reason: String,
    },
    Delivery {
        key: String,
        platform: String,
        shop: String,
        topic: String,
        parked_at: Option<chrono::DateTime<chrono::Utc>>,
        reason: String,
    },
}

impl ParkedEntry {
    fn key(&self) -> &str {
        match self {
            ParkedEntry::Order { key, .. } | ParkedEntry::Delivery { key, .. } => key,
        }
    }
}

/// `upline parked list` with the defaults (the first page, as text).
pub async fn list_parked(config: &ServeConfig) -> Result<String> {
    list_parked_page(config, &ParkedListing::default()).await
}

/// `upline parked list [--limit N] [--after KEY] [--format json]`.
pub async fn list_parked_page(config: &ServeConfig, listing: &ParkedListing) -> Result<String> {
    anyhow::ensure!(listing.limit > 0, "--limit must be at least 1");
    let services = Services::open(config).await?;
    let entries = parked_entries(&services, listing).await;
    services.close().await?;
    let mut entries = entries?;
    let more = entries.len() > listing.limit;
    entries.truncate(listing.limit);
    let next_after = more
        .then(|| entries.last().map(|e| e.key().to_string()))
        .flatten();
    if listing.format == Format::Json {
        let page = serde_json::json!({"items": entries, "next_after": next_after});
        return Ok(format!("{page}\n"));
    }
    if entries.is_empty() {
        return Ok(if listing.after.is_some() {
            "nothing more is parked\n".into()
        } else {
            "nothing is parked\n".into()
        });
    }
    let mut out = String::new();
    let at =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for entry in &entries {
        let _ = match entry {
            ParkedEntry::Order {
                key,
                updates,
                parked_at,
                retries,
                reason,
            } => writeln!(
                out,
                "{key}  {updates} update(s), parked {}, {retries} retr{}: {reason}",
                at(*parked_at),
                if *retries == 1 { "y" } else { "ies" },
            ),
            ParkedEntry::Delivery {
                key,
                platform,
                shop,
                topic,
                parked_at,
                reason,
            } => writeln!(
                out,
                "{key}  {platform} {shop} {topic}, parked {}: {reason}",
                parked_at.map_or_else(|| "(no time recorded)".to_string(), at),
            ),
        };
    }
    if let Some(next) = &next_after {
        let _ = writeln!(
            out,
            "more are parked: continue with `upline parked list --after {next}`"
        );
    }
    let has_orders = entries
        .iter()
        .any(|e| matches!(e, ParkedEntry::Order { .. }));
    let has_deliveries = entries
        .iter()
        .any(|e| matches!(e, ParkedEntry::Delivery { .. }));
    let keys = match (has_orders, has_deliveries) {
        (true, true) => "ORDER-STREAM` or `upline parked retry delivery-N",
        (true, false) => "ORDER-STREAM",
        _ => "delivery-N",
    };
    let _ = writeln!(
        out,
        "retry one with `upline parked retry {keys}`, or all with `--all`"
    );
    Ok(out)
}

/// Up to `limit + 1` entries after `after` (one more than shown: whether more exist).
async fn parked_entries(services: &Services, listing: &ParkedListing) -> Result<Vec<ParkedEntry>> {
    let want = listing.limit.saturating_add(1);
    let after = listing.after.as_deref();
    let mut entries = Vec::new();
    // Orders come first; a `delivery-N` cursor is past all of them.
    let after_delivery = match after.and_then(delivery_key) {
        Some(id) => Some(id?),
        None => None,
    };
    if after_delivery.is_none() {
        for p in services.app.list_parked().await? {
            if after.is_some_and(|a| p.order_stream.as_str() <= a) {
                continue;
            }
            if entries.len() == want {
                return Ok(entries);
            }
            entries.push(ParkedEntry::Order {
                key: p.order_stream,
                updates: p.updates,
                parked_at: p.parked_at,
                retries: p.retries,
                reason: p.reason,
            });
        }
    }
    let mut from = after_delivery.unwrap_or(0);
    while entries.len() < want {
        let page = services
            .inbox
            .list_after("parked", from, (want - entries.len()).min(MAX_LIST))
            .await?;
        let Some(last) = page.last().map(|d| d.id) else {
            break;
        };
        from = last;
        entries.extend(page.into_iter().map(|d| {
            ParkedEntry::Delivery {
                key: format!("{DELIVERY_PREFIX}{}", d.id),
                platform: d.delivery.platform.to_string(),
                shop: d.delivery.shop.to_string(),
                topic: d.delivery.topic,
                parked_at: d.completed_at,
                reason: d
                    .outcome_reason
                    .unwrap_or_else(|| "no reason recorded".to_string()),
            }
        }));
    }
    Ok(entries)
}

/// The consumers' held events in one list: the commission postings' (event store), then the
/// projections' (read store).
async fn all_held(
    postings: &CommissionPostings,
    runner: &upline_projections::ProjectionRunner,
) -> Result<Vec<HeldEvent>> {
    let mut held = postings.held().await?;
    held.extend(runner.held().await?);
    Ok(held)
}

/// Opens what holds events: the postings and the projections over this data directory.
async fn consumers(
    config: &ServeConfig,
    services: &Services,
) -> Result<(CommissionPostings, upline_projections::ProjectionRunner)> {
    let postings = CommissionPostings::open(services.store.clone()).await?;
    let runner = upline_projections::open_default(
        services.store.clone(),
        &config.data_dir,
        config.read_store.as_deref(),
    )
    .await
    .context("cannot open the read store")?;
    Ok((postings, runner))
}

/// `upline quarantine list [--format json]`: every event a consumer holds back, with why and
/// since when.
pub async fn list_quarantine(config: &ServeConfig, format: Format) -> Result<String> {
    let services = Services::open(config).await?;
    let result = async {
        let (postings, runner) = consumers(config, &services).await?;
        let held = all_held(&postings, &runner).await;
        runner.read_store().close().await;
        held
    }
    .await;
    services.close().await?;
    let held = result?;
    if format == Format::Json {
        let items: Vec<serde_json::Value> = held
            .iter()
            .map(|h| {
                let mut item = serde_json::json!(h);
                item["id"] = serde_json::json!(h.id());
                item
            })
            .collect();
        return Ok(format!("{}\n", serde_json::json!({ "items": items })));
    }
    if held.is_empty() {
        return Ok("nothing is held\n".into());
    }
    let mut out = String::new();
    for h in &held {
        let _ = writeln!(
            out,
            "{}  {} {} position {} ({}), held since {}{}: {}",
            h.id(),
            h.consumer,
            h.stream,
            h.position,
            h.event_type,
            h.since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            match h.retries {
                0 => String::new(),
                1 => ", 1 retry".to_string(),
                n => format!(", {n} retries"),
            },
            h.reason
        );
    }
    let _ = writeln!(
        out,
        "retry one (with the held events of its stream) with `upline quarantine retry ID`, or all with `--all`"
    );
    Ok(out)
}

/// `upline quarantine retry ID | --all`: runs held events through their consumer again (after a
/// fix); each that goes through is released, one that still fails stays held with its new
/// reason. Safe to repeat: postings and projection rows are written once.
pub async fn retry_quarantine(config: &ServeConfig, id: Option<&str>, all: bool) -> Result<String> {
    anyhow::ensure!(
        id.is_some() || all,
        "name the held event to retry (an ID from `upline quarantine list`), or pass --all"
    );
    let services = Services::open(config).await?;
    let result = async {
        let (postings, runner) = consumers(config, &services).await?;
        let reports = match id {
            Some(id) => {
                let (consumer, position) = parse_held_id(id).with_context(|| {
                    format!("{id:?} is not a held event: expected CONSUMER@POSITION, as `upline quarantine list` shows")
                })?;
                vec![if consumer == upline_app::postings::CONSUMER {
                    postings.retry_held(position).await?
                } else {
                    runner.retry_held(consumer, position).await?
                }]
            }
            None => {
                let mut reports = postings.retry_all_held().await?;
                reports.extend(runner.retry_all_held().await?);
                reports
            }
        };
        runner.read_store().close().await;
        anyhow::Ok(reports)
    }
    .await;
    services.close().await?;
    let reports = result?;
    if reports.is_empty() {
        return Ok("nothing is held\n".into());
    }
    let mut out = String::new();
    for r in &reports {
        let _ = match &r.still_held {
            None => writeln!(out, "{} {}: {} released", r.consumer, r.stream, r.released),
            Some((position, reason)) => writeln!(
                out,
                "{} {}: {} released; still held at position {position}: {reason}",
                r.consumer, r.stream, r.released
            ),
        };
    }
    Ok(out)
}

/// How `parked list` names a parked inbox delivery, and `parked retry` takes it: `delivery-N`,
/// N being the inbox id (the `"parked": N` of the gateway's 400 answer). Order streams start
/// with `order-`, so the two never mix.
const DELIVERY_PREFIX: &str = "delivery-";

/// The inbox id in a `delivery-N` key; `None` when the key is not one (an order stream).
fn delivery_key(key: &str) -> Option<Result<i64>> {
    let number = key.strip_prefix(DELIVERY_PREFIX)?;
    Some(
        number
            .parse::<i64>()
            .ok()
            .filter(|id| *id > 0)
            .with_context(|| {
                format!("{key:?} is not a delivery: expected {DELIVERY_PREFIX}N, N the inbox id")
            }),
    )
}

/// `upline parked retry KEY | --all`: KEY is an order stream (its parked updates are applied
/// again) or `delivery-N` (the parked inbox delivery is requeued and processed again); `--all`
/// does both for everything parked.
pub async fn retry_parked(config: &ServeConfig, key: Option<&str>, all: bool) -> Result<String> {
    anyhow::ensure!(
        key.is_some() || all,
        "name the order stream or delivery-N to retry, or pass --all"
    );
    let services = Services::open(config).await?;
    let result = async {
        let mut out = String::new();
        match key {
            Some(key) => match delivery_key(key) {
                Some(id) => {
                    let id = requeue_one(&services, id?).await?;
                    out.push_str(&process_requeued(&services, &[id]).await?);
                }
                None => out.push_str(&retry_order(&services, key).await?),
            },
            None => {
                for parked in services.app.list_parked().await? {
                    out.push_str(&retry_order(&services, &parked.order_stream).await?);
                }
                // Deliveries after orders: a delivery that now reads may have its order update
                // refused and parked; it is then reported (and listed) as a parked order, not
                // retried a second time at once.
                let ids = requeue_all(&services).await?;
                if !ids.is_empty() {
                    out.push_str(&process_requeued(&services, &ids).await?);
                }
                if out.is_empty() {
                    out.push_str("nothing is parked\n");
                }
            }
        }
        anyhow::Ok(out)
    }
    .await;
    services.close().await?;
    result
}

/// Applies an order's parked updates again; one line saying how it went.
async fn retry_order(services: &Services, stream: &str) -> Result<String> {
    let who = Provenance::command(&format!("cli:parked-retry:{stream}"));
    Ok(match services.app.retry_parked(stream, &who).await? {
        UpdateOutcome::Parked { reason, .. } => format!("{stream}: still parked: {reason}\n"),
        _ => format!("{stream}: processed\n"),
    })
}

/// Puts parked inbox delivery `id` back to pending; an error when it does not exist or is not
/// parked.
async fn requeue_one(services: &Services, id: i64) -> Result<i64> {
    match services.inbox.requeue(id).await {
        Ok(true) => Ok(id),
        Ok(false) => {
            let status = services
                .inbox
                .item(id)
                .await?
                .map_or("gone", |item| item.status.as_str());
            anyhow::bail!("{DELIVERY_PREFIX}{id} is not parked: it is {status}")
        }
        Err(InboxError::UnknownItem(_)) => {
            anyhow::bail!("there is no {DELIVERY_PREFIX}{id} in the inbox")
        }
        Err(e) => Err(e).with_context(|| format!("cannot requeue {DELIVERY_PREFIX}{id}")),
    }
}

/// Puts every parked inbox delivery back to pending; returns their ids, oldest first.
async fn requeue_all(services: &Services) -> Result<Vec<i64>> {
    // `list` returns at most MAX_LIST: requeue page by page (a requeued delivery is no longer
    // listed as parked). A delivery listed again (a running server's worker parked it again
    // meanwhile) is not chased: the loop stops when a page has nothing new.
    let mut seen = BTreeSet::new();
    let mut requeued = Vec::new();
    loop {
        let page = services.inbox.list(Some("parked"), MAX_LIST).await?;
        let mut fresh = false;
        for item in page {
            if seen.insert(item.id) {
                fresh = true;
                // `false`: it left `parked` since the listing (someone else requeued it).
                if services.inbox.requeue(item.id).await? {
                    requeued.push(item.id);
                }
            }
        }
        if !fresh {
            requeued.sort_unstable();
            return Ok(requeued);
        }
    }
}

/// Processes the requeued deliveries now, in this process, and says what became of each.
async fn process_requeued(services: &Services, ids: &[i64]) -> Result<String> {
    // The same worker as `upline serve`'s, over this process's handles. It takes whatever is
    // pending now, oldest first: the requeued deliveries, and any other delivery waiting (one
    // accepted while the server held deliveries, say). If a server is running on the same data
    // directory, its worker may claim a requeued delivery first (it looks at least every
    // second): the claim's lease hands each delivery to one worker at a time, and a completed
    // delivery is never handed out again, so either way it is processed once.
    let inbox: Arc<dyn Inbox> = services.inbox.clone();
    Worker::new(inbox, services.app.clone())
        .process_available()
        .await
        .context("processing the requeued deliveries (they stay pending for the next worker)")?;
    let parked_orders = services.app.list_parked().await?;
    let mut out = String::new();
    for &id in ids {
        let key = format!("{DELIVERY_PREFIX}{id}");
        let Some(item) = services.inbox.item(id).await? else {
            let _ = writeln!(out, "{key}: no longer in the inbox");
            continue;
        };
        let reason = item
            .outcome_reason
            .as_deref()
            .unwrap_or("no reason recorded");
        match item.status {
            DeliveryStatus::Processed => {
                // The payload now reads; its order update may still have been refused (an
                // unmapped SKU, ...) and parked in the event store, where `parked list` shows it.
                let d = &item.delivery;
                let stream =
                    match upline_platforms::interpret(d.platform, &d.shop, &d.topic, &d.body) {
                        Ok(Interpretation::Order(update)) => {
                            Some(upline_app::streams::order(&update.key))
                        }
                        _ => None,
                    };
                match stream.and_then(|s| parked_orders.iter().find(|p| p.order_stream == s)) {
                    Some(p) => {
                        let _ = writeln!(
                            out,
                            "{key}: processed; its order {} is parked: {}",
                            p.order_stream, p.reason
                        );
                    }
                    None => {
                        let _ = writeln!(out, "{key}: processed");
                    }
                }
            }
            DeliveryStatus::Parked => {
                let _ = writeln!(out, "{key}: still parked: {reason}");
            }
            DeliveryStatus::Ignored => {
                let _ = writeln!(out, "{key}: ignored: {reason}");
            }
            DeliveryStatus::Pending => {
                let _ = writeln!(
                    out,
                    "{key}: requeued, not finished here: a running server's worker has it, or it \
                     is retried after a transient failure ({})",
                    item.last_error.as_deref().unwrap_or("no error recorded")
                );
            }
        }
    }
    Ok(out)
}

/// `upline projections status`: each read model's generation, checkpoint and lag.
pub async fn projections_status(config: &ServeConfig) -> Result<String> {
    let services = Services::open(config).await?;
    let result = async {
        let runner = upline_projections::open_default(
            services.store.clone(),
            &config.data_dir,
            config.read_store.as_deref(),
        )
        .await?;
        let mut out = format!("read store: {}\n", runner.read_store().location());
        for s in runner.status().await? {
            let _ = writeln!(
                out,
                "{:<16} generation {:>3}  position {:>8}  head {:>8}  lag {:>6} events {:>8.1} s{}",
                s.name,
                s.generation,
                s.position,
                s.head,
                s.lag_events,
                s.lag_seconds,
                s.rebuilding.map_or(String::new(), |r| format!(
                    "  (rebuild of generation {} at {})",
                    r.generation, r.position
                ))
            );
        }
        runner.read_store().close().await;
        anyhow::Ok(out)
    }
    .await;
    services.close().await?;
    result
}

/// `upline projections rebuild [NAME | --all]`: fresh tables, swapped in once caught up, while
/// queries keep answering from the old ones. Progress goes to stderr as it happens.
pub async fn projections_rebuild(config: &ServeConfig, name: Option<&str>) -> Result<String> {
    let services = Services::open(config).await?;
    let result = async {
        let runner = upline_projections::open_default(
            services.store.clone(),
            &config.data_dir,
            config.read_store.as_deref(),
        )
        .await?;
        let reports = runner
            .rebuild(name, |p| {
                eprintln!(
                    "{:<16} generation {}: {} events, {:.0}/s, {} remaining{}",
                    p.projection,
                    p.generation,
                    p.events_applied,
                    p.events_per_second,
                    p.remaining,
                    if p.done { ", swapped in" } else { "" }
                );
            })
            .await?;
        let mut out = String::new();
        for r in reports {
            let _ = writeln!(
                out,
                "{}: generation {} -> {}, {} events in {:.2} s",
                r.projection,
                r.from_generation,
                r.generation,
                r.events_applied,
                r.elapsed.as_secs_f64()
            );
        }
        runner.read_store().close().await;
        anyhow::Ok(out)
    }
    .await;
    services.close().await?;
    result
}
