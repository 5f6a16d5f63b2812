//! Ingest load over real HTTP: webhook answer latency, commission emit latency and idempotency
//! under duplicate deliveries, against the server started in-process on a temporary data
//! directory seeded with `examples/plan.toml` and `examples/network.json`. Prints tables.
//!
//! `cargo bench --bench ingest_load`. The SLA floor is "webhook answer <= 120 ms, commission emit
//! <= 500 ms, 100 % idempotent". Each scenario sends signed Shopify `orders/paid` deliveries for
//! distinct orders attributed to ABC123 (distributor 11043) from C concurrent clients, re-sending
//! every tenth one with the same event id right after its answer. A subscriber on the
//! `commissions-` streams timestamps each `CommissionEarned` when it is first seen, so the emit
//! latency of an order is "first seen" minus "200 answered". Between scenarios the server is
//! drained (`wait_idle`), so each scenario starts idle. The bursts (C = 1, 8, 32, each client
//! sending as soon as its last delivery is answered) arrive faster than one worker processes
//! them, so their emit latency is mostly queueing; the paced single-client runs stay below the
//! processing rate and show the emit latency of an unloaded path. The idempotency verdict is
//! computed from the store at the end, never assumed.
//!
//! Without `--bench` (e.g. under `cargo test --benches`) or with `UPLINE_BENCH_QUICK=1` it runs a
//! tiny version. Everything is bounded: fixed delivery counts, 127.0.0.1 only, per-request and
//! drain timeouts.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use base64::Engine as _;
use futures::StreamExt;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::sync::watch;
use tokio::task::JoinSet;
use upline::config::ServeConfig;
use upline::server::{self, RunningServer};
use upline_app::inbox::Inbox as _;
use upline_app::records::PostingEvent;
use upline_app::streams;
use upline_domain::ids::{Platform, ShopId};
use upline_domain::order::OrderEvent;
use upline_gateway::{GatewayConfig, ShopConfig};
use upline_store::{AllStart, StreamFilter};

const SHOP: &str = "demo-store.myshopify.com";
const SECRET: &str = "ingest-load-shopify-secret";
/// ABC123 is 11043's referral code in examples/network.json: the level-1 beneficiary.
const LEVEL_ONE: &str = "commissions-11043";
/// Every this many deliveries, one is sent again with the same event id (10 %).
const DUPLICATE_EVERY: usize = 10;
/// SLA floor of the source article.
const ANSWER_SLA: Duration = Duration::from_millis(120);
const EMIT_SLA: Duration = Duration::from_millis(500);
/// Bounds: one request, one drain, the subscriber catching up.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(40);
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(10);
/// Pages read back by the audit (the store's maximum per read).
const READ_PAGE: usize = upline_store::limits::MAX_READ_COUNT;

struct Scenario {
    label: String,
    clients: usize,
    deliveries: usize,
    /// Each client sends at most one delivery per `pace`; `None`: as fast as answers come.
    pace: Option<Duration>,
}

fn scenarios(full: bool) -> Vec<Scenario> {
    // Closed-loop bursts (each client sends its next delivery as soon as the last is answered),
    // then single-client runs paced below the processing rate: (deliveries, ms between sends).
    let (levels, deliveries, paced): (&[usize], usize, &[(usize, u64)]) = if full {
        (&[1, 8, 32], 500, &[(100, 50), (300, 10)])
    } else {
        (&[1, 4], 20, &[(10, 20)])
    };
    let bursts = levels.iter().map(|&clients| Scenario {
        label: clients.to_string(),
        clients,
        deliveries,
        pace: None,
    });
    let paced = paced.iter().map(|&(deliveries, pace)| Scenario {
        label: format!("1, paced {}/s", 1_000 / pace),
        clients: 1,
        deliveries,
        pace: Some(Duration::from_millis(pace)),
    });
    bursts.chain(paced).collect()
}

fn order_id(scenario: usize, i: usize) -> u64 {
    1_000_000 * (scenario as u64 + 1) + i as u64
}

fn order_stream(id: u64) -> String {
    format!("order-shopify-{SHOP}-{id}")
}

/// The seed's SUPP001 order (3 x 19.80), credited to ABC123 through a note attribute.
fn attributed_order(id: u64) -> String {
    json!({"id": id, "created_at": "2026-08-28T08:11:04Z", "updated_at": "2026-08-28T08:11:04Z",
        "currency": "USD", "financial_status": "paid", "total_price": "59.40", "total_tax": "0.00",
        "line_items": [{"id": 11, "sku": "SUPP001", "quantity": 3, "price": "19.80"}],
        "note_attributes": [{"name": "distributor_ref", "value": "ABC123"}]})
    .to_string()
}

fn hmac_base64(body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(body.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// One answered request.
struct Answer {
    order_stream: String,
    http_status: u16,
    /// `accepted`, `duplicate`, ... or `?` when the body had none.
    status: String,
    latency: Duration,
    answered_at: Instant,
}

impl Answer {
    fn is(&self, status: &str) -> bool {
        self.http_status == 200 && self.status == status
    }
}

async fn deliver(
    http: &reqwest::Client,
    url: &str,
    id: u64,
    event_id: &str,
    body: &str,
    signature: &str,
) -> Result<Answer> {
    let started = Instant::now();
    let response = http
        .post(url)
        .header("x-shopify-topic", "orders/paid")
        .header("x-shopify-shop-domain", SHOP)
        .header("x-shopify-hmac-sha256", signature)
        .header("x-shopify-event-id", event_id)
        .body(body.to_owned())
        .send()
        .await
        .with_context(|| format!("delivering order {id}"))?;
    let http_status = response.status().as_u16();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    let answered_at = Instant::now();
    Ok(Answer {
        order_stream: order_stream(id),
        http_status,
        status: answer["status"].as_str().unwrap_or("?").to_string(),
        latency: answered_at - started,
        answered_at,
    })
}

/// When each (distributor stream, order stream) posting was first seen.
type Seen = Arc<Mutex<HashMap<(String, String), Instant>>>;

/// Follows the `commissions-` streams and timestamps every `CommissionEarned` as it appears.
fn spawn_watcher(
    server: &RunningServer,
    mut stop: watch::Receiver<bool>,
) -> (
    Seen,
    watch::Receiver<u64>,
    tokio::task::JoinHandle<Result<()>>,
) {
    let seen: Seen = Arc::default();
    let (position, position_rx) = watch::channel(0u64);
    let filter = StreamFilter {
        stream_prefixes: vec![streams::COMMISSIONS_PREFIX.into()],
    };
    let mut events = server.services.store.subscribe_all(AllStart::Start, filter);
    let task = tokio::spawn({
        let seen = seen.clone();
        async move {
            loop {
                tokio::select! {
                    next = events.next() => {
                        let Some(recorded) = next else { return Ok(()) };
                        let recorded = recorded?;
                        let now = Instant::now();
                        if recorded.event_type == PostingEvent::EARNED {
                            let event: PostingEvent =
                                upline_domain::events::decode(&recorded.event_type, &recorded.data)?;
                            if let PostingEvent::CommissionEarned { source, .. } = event {
                                seen.lock()
                                    .expect("not poisoned")
                                    .entry((recorded.stream_id.clone(), source.order_stream))
                                    .or_insert(now);
                            }
                        }
                        position.send_replace(recorded.position);
                    }
                    _ = stop.changed() => return Ok(()),
                }
            }
        }
    });
    (seen, position_rx, task)
}

/// Waits until the watcher has seen every `commissions-` event in the store.
async fn watcher_caught_up(server: &RunningServer, position: &watch::Receiver<u64>) -> Result<()> {
    let filter = StreamFilter {
        stream_prefixes: vec![streams::COMMISSIONS_PREFIX.into()],
    };
    let deadline = Instant::now() + CATCH_UP_TIMEOUT;
    loop {
        let at = *position.borrow();
        let rest = server
            .services
            .store
            .read_all(AllStart::After(at), &filter, 1)
            .await?;
        if rest.is_empty() {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "the postings watcher is behind after {CATCH_UP_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

struct ScenarioResult {
    label: String,
    originals: Vec<Answer>,
    duplicates: Vec<Answer>,
    /// First send to last answer.
    elapsed: Duration,
    /// Last answer to `wait_idle` done.
    drain: Duration,
    /// Last answer to the last posting seen.
    last_posting: Duration,
    /// Deliveries still waiting for the worker when the last answer came.
    pending_at_last_answer: u64,
    /// Accepted orders per second from the first send to the last posting.
    processed_per_second: f64,
    /// Per accepted order: answer to level-1 posting, answer to its last posting.
    emit_level_one: Vec<Duration>,
    emit_all: Vec<Duration>,
    /// Accepted orders with no posting seen.
    unposted: usize,
}

async fn run_scenario(
    index: usize,
    scenario: &Scenario,
    server: &RunningServer,
    http: &reqwest::Client,
    seen: &Seen,
    watcher: &watch::Receiver<u64>,
) -> Result<ScenarioResult> {
    let url = format!("http://{}/webhooks/shopify", server.addr);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut clients = JoinSet::new();
    for _ in 0..scenario.clients {
        let (http, url, next) = (http.clone(), url.clone(), next.clone());
        let (deliveries, pace) = (scenario.deliveries, scenario.pace);
        clients.spawn(async move {
            let mut originals = Vec::new();
            let mut duplicates = Vec::new();
            let mut ticks = pace.map(|p| {
                let mut t = tokio::time::interval(p);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= deliveries {
                    break;
                }
                if let Some(t) = ticks.as_mut() {
                    t.tick().await;
                }
                let id = order_id(index, i);
                let event_id = format!("evt-load-{id}-paid");
                let body = attributed_order(id);
                let signature = hmac_base64(&body);
                originals.push(deliver(&http, &url, id, &event_id, &body, &signature).await?);
                if i % DUPLICATE_EVERY == DUPLICATE_EVERY - 1 {
                    // Shopify's retry: the same event id and bytes.
                    duplicates.push(deliver(&http, &url, id, &event_id, &body, &signature).await?);
                }
            }
            anyhow::Ok((originals, duplicates))
        });
    }
    let (mut originals, mut duplicates) = (Vec::new(), Vec::new());
    while let Some(joined) = clients.join_next().await {
        let (o, d) = joined.context("client task")??;
        originals.extend(o);
        duplicates.extend(d);
    }
    let last_answer = originals
        .iter()
        .chain(&duplicates)
        .map(|a| a.answered_at)
        .max()
        .unwrap_or(started);
    let elapsed = last_answer - started;
    let pending_at_last_answer = server.services.inbox.stats().await?.pending;

    server
        .wait_idle(DRAIN_TIMEOUT)
        .await
        .with_context(|| format!("draining after {} client(s)", scenario.label))?;
    let drain = last_answer.elapsed();
    watcher_caught_up(server, watcher).await?;

    let mut postings: HashMap<String, Vec<(String, Instant)>> = HashMap::new();
    for ((distributor, order), at) in seen.lock().expect("not poisoned").iter() {
        postings
            .entry(order.clone())
            .or_default()
            .push((distributor.clone(), *at));
    }
    let (mut emit_level_one, mut emit_all, mut unposted) = (Vec::new(), Vec::new(), 0);
    let mut last_posted = last_answer;
    for answer in originals.iter().filter(|a| a.is("accepted")) {
        let Some(seen) = postings.get(&answer.order_stream) else {
            unposted += 1;
            continue;
        };
        let since = |at: Instant| at.saturating_duration_since(answer.answered_at);
        if let Some((_, at)) = seen.iter().find(|(d, _)| d == LEVEL_ONE) {
            emit_level_one.push(since(*at));
        }
        if let Some(at) = seen.iter().map(|(_, at)| *at).max() {
            emit_all.push(since(at));
            last_posted = last_posted.max(at);
        }
    }
    Ok(ScenarioResult {
        label: scenario.label.clone(),
        originals,
        duplicates,
        elapsed,
        drain,
        last_posting: last_posted - last_answer,
        pending_at_last_answer,
        processed_per_second: emit_all.len() as f64
            / (last_posted - started).as_secs_f64().max(1e-9),
        emit_level_one,
        emit_all,
        unposted,
    })
}

/// What the store says, after everything is drained.
struct Audit {
    orders_sent: usize,
    orders_calculated: usize,
    orders_calculated_twice: usize,
    recalculations: usize,
    pairs_expected: usize,
    pairs_posted_once: usize,
    pairs_posted_more: usize,
    pairs_missing: usize,
    pairs_unexpected: usize,
    reversals: usize,
    parked: usize,
    inbox_duplicates: u64,
}

impl Audit {
    fn idempotent(&self, duplicates_sent: usize, duplicates_answered: usize) -> bool {
        self.orders_calculated == self.orders_sent
            && self.orders_calculated_twice == 0
            && self.recalculations == 0
            && self.pairs_expected > 0
            && self.pairs_posted_once == self.pairs_expected
            && self.pairs_posted_more == 0
            && self.pairs_missing == 0
            && self.pairs_unexpected == 0
            && self.reversals == 0
            && self.parked == 0
            && duplicates_answered == duplicates_sent
            && self.inbox_duplicates == duplicates_sent as u64
    }
}

async fn read_everything(
    server: &RunningServer,
    prefix: &str,
) -> Result<Vec<upline_store::RecordedEvent>> {
    let filter = StreamFilter {
        stream_prefixes: vec![prefix.into()],
    };
    let (mut all, mut from) = (Vec::new(), AllStart::Start);
    loop {
        let page = server
            .services
            .store
            .read_all(from, &filter, READ_PAGE)
            .await?;
        let Some(last) = page.last() else {
            return Ok(all);
        };
        from = AllStart::After(last.position);
        all.extend(page);
    }
}

async fn audit(server: &RunningServer, orders_sent: &BTreeSet<String>) -> Result<Audit> {
    // What each order's own stream says its beneficiaries are owed.
    let mut calculations: BTreeMap<String, usize> = BTreeMap::new();
    let mut expected: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut recalculations = 0;
    for r in read_everything(server, streams::ORDER_PREFIX).await? {
        if !orders_sent.contains(&r.stream_id) {
            continue;
        }
        match upline_domain::events::decode::<OrderEvent>(&r.event_type, &r.data)? {
            OrderEvent::CommissionCalculated { outcome, .. } => {
                *calculations.entry(r.stream_id.clone()).or_default() += 1;
                for p in &outcome.payouts {
                    *expected
                        .entry((streams::commissions(&p.beneficiary), r.stream_id.clone()))
                        .or_default() += 1;
                }
            }
            OrderEvent::CommissionRecalculated { .. } => recalculations += 1,
            _ => {}
        }
    }
    // What the ledger holds.
    let mut posted: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut reversals = 0;
    for r in read_everything(server, streams::COMMISSIONS_PREFIX).await? {
        if r.event_type != PostingEvent::EARNED && r.event_type != PostingEvent::REVERSED {
            continue;
        }
        match upline_domain::events::decode::<PostingEvent>(&r.event_type, &r.data)? {
            PostingEvent::CommissionEarned { source, .. } => {
                *posted
                    .entry((r.stream_id.clone(), source.order_stream))
                    .or_default() += 1;
            }
            PostingEvent::CommissionReversed { .. } => reversals += 1,
        }
    }
    Ok(Audit {
        orders_sent: orders_sent.len(),
        orders_calculated: calculations.len(),
        orders_calculated_twice: calculations.values().filter(|n| **n > 1).count(),
        recalculations,
        pairs_expected: expected.len(),
        pairs_posted_once: expected
            .keys()
            .filter(|k| posted.get(*k) == Some(&1))
            .count(),
        pairs_posted_more: posted.values().filter(|n| **n > 1).count(),
        pairs_missing: expected.keys().filter(|k| !posted.contains_key(*k)).count(),
        pairs_unexpected: posted.keys().filter(|k| !expected.contains_key(*k)).count(),
        reversals,
        parked: server.services.app.list_parked().await?.len(),
        inbox_duplicates: server.services.inbox.duplicates_total().await?,
    })
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

/// p50, p99, max in ms, and whether p99 is within `sla`.
fn summary(samples: &[Duration], sla: Duration) -> [String; 4] {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    if sorted.is_empty() {
        return ["-".into(), "-".into(), "-".into(), "-".into()];
    }
    let p99 = percentile(&sorted, 99);
    [
        ms(percentile(&sorted, 50)),
        ms(p99),
        ms(*sorted.last().expect("not empty")),
        if p99 <= sla { "yes" } else { "**no**" }.into(),
    ]
}

fn gateway_config() -> Result<GatewayConfig> {
    Ok(GatewayConfig {
        shops: vec![ShopConfig {
            platform: Platform::Shopify,
            shop: ShopId::new(SHOP)?,
            secrets: vec![SECRET.into()],
            public_keys_pem: vec![],
            test_orders: Default::default(),
        }],
        // The bodies carry fixed dates (reproducible runs), so the replay window must reach them.
        replay_window_hours: 24 * 366 * 10,
        ..GatewayConfig::default()
    })
}

async fn run(full: bool) -> Result<()> {
    let began = Instant::now();
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let config = ServeConfig {
        data_dir: dir.path().join("data"),
        listen: "127.0.0.1:0".parse()?,
        gateway: gateway_config()?,
        ..ServeConfig::default()
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    upline::admin::publish_plan(&config, &root.join("examples/plan.toml")).await?;
    upline::admin::import_network(&config, &root.join("examples/network.json")).await?;
    let server = server::start(config).await?;
    ensure!(server.addr.ip().is_loopback(), "the server must be local");

    let result = measure(full, &server).await;
    let stopped = server.stop().await;
    let tables = result?;
    stopped?;
    print!("{tables}");
    println!("\nDone in {:.1} s.", began.elapsed().as_secs_f64());
    Ok(())
}

async fn measure(full: bool, server: &RunningServer) -> Result<String> {
    use std::fmt::Write as _;

    // Other work on the machine skews every number below: say how busy it was.
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    let scenarios = scenarios(full);
    let max_clients = scenarios.iter().map(|s| s.clients).max().unwrap_or(1);
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .pool_max_idle_per_host(max_clients)
        .build()?;
    let (stop, stop_rx) = watch::channel(false);
    let (seen, position, watcher) = spawn_watcher(server, stop_rx);

    let mut results = Vec::new();
    for (index, scenario) in scenarios.iter().enumerate() {
        results.push(run_scenario(index, scenario, server, &http, &seen, &position).await?);
    }
    let orders_sent: BTreeSet<String> = results
        .iter()
        .flat_map(|r| r.originals.iter().map(|a| a.order_stream.clone()))
        .collect();
    let audit = audit(server, &orders_sent).await?;
    let _ = stop.send(true);
    watcher.await.context("postings watcher task")??;

    let mut out = String::new();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let _ =
        writeln!(
        out,
        "\ningest_load{}: {cores} cores (available_parallelism), {}-{}, {} build; one in-process \
         server on a temp dir (embedded SQLite store and inbox), clients over HTTP on 127.0.0.1; \
         Shopify orders/paid, 1 line (SUPP001 x 3), credited to ABC123{}.\n",
        if full {
            ""
        } else {
            " (quick: pass --bench without UPLINE_BENCH_QUICK=1 for real numbers)"
        },
        std::env::consts::OS,
        std::env::consts::ARCH,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        load.map_or(String::new(), |l| format!("; load average before the run: {l}")),
    );

    let _ = writeln!(
        out,
        "Webhook answer (send to 200 read; originals only, SLA p99 <= {} ms):\n",
        ANSWER_SLA.as_millis()
    );
    let _ = writeln!(
        out,
        "| clients | deliveries | p50 ms | p99 ms | max ms | requests/s (incl. re-sends) | SLA |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---|");
    for r in &results {
        let latencies: Vec<Duration> = r.originals.iter().map(|a| a.latency).collect();
        let [p50, p99, max, sla] = summary(&latencies, ANSWER_SLA);
        let sent = r.originals.len() + r.duplicates.len();
        let _ = writeln!(
            out,
            "| {} | {} | {p50} | {p99} | {max} | {:.0} | {sla} |",
            r.label,
            r.originals.len(),
            sent as f64 / r.elapsed.as_secs_f64().max(1e-9),
        );
    }

    let _ = writeln!(
        out,
        "\nCommission emit (200 answered to CommissionEarned first seen; SLA p99 <= {} ms):\n",
        EMIT_SLA.as_millis()
    );
    let _ = writeln!(
        out,
        "| clients | orders | 11043 p50 ms | 11043 p99 ms | 11043 max ms | all posted p50 ms | \
         all posted p99 ms | all posted max ms | drain ms | last posting ms | inbox pending at \
         last answer | orders/s processed | SLA |"
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    for r in &results {
        let [p50, p99, max, _] = summary(&r.emit_level_one, EMIT_SLA);
        let [a50, a99, amax, sla] = summary(&r.emit_all, EMIT_SLA);
        let _ = writeln!(
            out,
            "| {} | {}{} | {p50} | {p99} | {max} | {a50} | {a99} | {amax} | {} | {} | {} | {:.0} | \
             {sla} |",
            r.label,
            r.emit_all.len(),
            if r.unposted > 0 {
                format!(" ({} never posted)", r.unposted)
            } else {
                String::new()
            },
            ms(r.drain),
            ms(r.last_posting),
            r.pending_at_last_answer,
            r.processed_per_second,
        );
    }
    let _ = writeln!(
        out,
        "\n\"all posted\": the order's last beneficiary posting; drain: last answer to \
         `wait_idle` done (polls every 20 ms); last posting: last answer to the last posting seen; \
         orders/s processed: orders posted / (first send to last posting)."
    );

    let duplicates_sent: usize = results.iter().map(|r| r.duplicates.len()).sum();
    let duplicates_answered: usize = results
        .iter()
        .flat_map(|r| &r.duplicates)
        .filter(|a| a.is("duplicate"))
        .count();
    let accepted: usize = results
        .iter()
        .flat_map(|r| &r.originals)
        .filter(|a| a.is("accepted"))
        .count();
    let mut other: BTreeMap<String, usize> = BTreeMap::new();
    for a in results
        .iter()
        .flat_map(|r| r.originals.iter().chain(&r.duplicates))
    {
        if !a.is("accepted") && !a.is("duplicate") {
            *other
                .entry(format!("{} {}", a.http_status, a.status))
                .or_default() += 1;
        }
    }
    let duplicate_latencies: Vec<Duration> = results
        .iter()
        .flat_map(|r| r.duplicates.iter().map(|a| a.latency))
        .collect();
    let [d50, d99, dmax, _] = summary(&duplicate_latencies, ANSWER_SLA);
    let idempotent = audit.idempotent(duplicates_sent, duplicates_answered);

    let _ = writeln!(
        out,
        "\nDuplicates (every {DUPLICATE_EVERY}th delivery re-sent with the same event id right \
         after its answer) and the ledger, from the store:\n"
    );
    let _ = writeln!(out, "| check | value |");
    let _ = writeln!(out, "|---|---:|");
    let rows: Vec<(&str, String)> = vec![
        (
            "deliveries answered `accepted`",
            format!("{accepted} / {}", audit.orders_sent),
        ),
        (
            "re-sent, answered `duplicate`",
            format!("{duplicates_answered} / {duplicates_sent}"),
        ),
        (
            "duplicate answer p50 / p99 / max ms",
            format!("{d50} / {d99} / {dmax}"),
        ),
        (
            "inbox duplicates counted",
            audit.inbox_duplicates.to_string(),
        ),
        (
            "other answers",
            if other.is_empty() {
                "0".into()
            } else {
                format!("{other:?}")
            },
        ),
        (
            "orders with CommissionCalculated",
            format!("{} / {}", audit.orders_calculated, audit.orders_sent),
        ),
        (
            "orders calculated more than once",
            audit.orders_calculated_twice.to_string(),
        ),
        (
            "CommissionRecalculated / CommissionReversed",
            format!("{} / {}", audit.recalculations, audit.reversals),
        ),
        (
            "(beneficiary, order) pairs owed",
            audit.pairs_expected.to_string(),
        ),
        (
            "pairs posted exactly once",
            audit.pairs_posted_once.to_string(),
        ),
        (
            "pairs posted more than once",
            audit.pairs_posted_more.to_string(),
        ),
        ("pairs owed but not posted", audit.pairs_missing.to_string()),
        (
            "postings nobody is owed",
            audit.pairs_unexpected.to_string(),
        ),
        ("orders parked", audit.parked.to_string()),
    ];
    for (check, value) in rows {
        let _ = writeln!(out, "| {check} | {value} |");
    }
    let _ = writeln!(
        out,
        "\nidempotent: {}",
        if idempotent { "yes" } else { "no" }
    );
    if !idempotent {
        print!("{out}");
        bail!("the ledger is not idempotent: see the table above");
    }
    Ok(out)
}

fn main() -> Result<()> {
    let quick = std::env::var("UPLINE_BENCH_QUICK").is_ok_and(|v| v == "1")
        || !std::env::args().any(|a| a == "--bench");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(!quick))
}
