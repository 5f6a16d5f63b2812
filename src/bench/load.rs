//! Open-loop load: request `i` of a step is due at `start + i / rate` whether or not earlier
//! requests were answered, and its latency is counted from that due time, never from when it
//! could be sent. A slow server therefore shows as latency instead of silently slowing the
//! client down (coordinated omission). At most `concurrency` requests are in flight over
//! keep-alive connections; a request that finds them all busy waits, and its clock runs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Deserialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::generate::{Request, SHOP};
use super::records::{ProbeSample, ServerProbe};

/// How the gateway answered, as the report counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Accepted,
    Duplicate,
    Parked,
    Ignored,
    /// Another 2xx status text, or another HTTP status.
    Other,
    /// No answer: connection refused or reset, or the request timed out.
    Failed,
}

/// One answered (or failed) request.
#[derive(Debug, Clone)]
pub struct Answer {
    pub index: usize,
    /// Due time to answer read.
    pub latency: Duration,
    /// Due time to the moment a connection slot was free and the request left.
    pub send_delay: Duration,
    /// 0 when there was no HTTP answer.
    pub http: u16,
    pub status: Status,
}

/// One observation taken while a step runs.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Seconds since the step's start.
    pub at: f64,
    /// Requests due but not answered yet: the client-side backlog.
    pub client_backlog: u64,
    pub server: Option<ProbeSample>,
}

impl Sample {
    /// Everything not yet taken in: due and unanswered, or answered and still in the inbox.
    pub fn backlog(&self) -> u64 {
        self.client_backlog
            + self
                .server
                .as_ref()
                .and_then(|s| s.inbox_depth)
                .unwrap_or(0)
    }
}

pub struct LoadSettings {
    pub rate: u32,
    pub concurrency: usize,
    /// Stop sending once the backlog exceeds this: the step has shown it cannot keep up, and a
    /// longer backlog only makes the drain longer.
    pub abort_backlog: u64,
    pub sample_every: Duration,
}

/// What one step at one rate against one target gave.
pub struct LoadRun {
    pub answers: Vec<Answer>,
    /// Requests sent (all of them unless aborted).
    pub sent: usize,
    /// When the backlog passed the abort threshold, seconds into the step.
    pub aborted_at: Option<f64>,
    /// Step start to the last answer.
    pub elapsed: Duration,
    pub samples: Vec<Sample>,
    /// A few transport errors, for the report.
    pub errors: Vec<String>,
}

/// The client for one target: keep-alive, no proxy, one connection per request in flight.
pub fn client(concurrency: usize, timeout: Duration) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(concurrency)
        .pool_idle_timeout(None)
        .tcp_nodelay(true)
        .timeout(timeout)
        .build()
        .context("cannot build the HTTP client")
}

/// Shared between the dispatcher, the request tasks and the sampler.
struct Progress {
    answered: AtomicU64,
    abort: AtomicBool,
    stop_sampling: AtomicBool,
}

/// Runs one step: sends every request at its due time, samples while it runs, and returns once
/// every request sent is answered (or failed).
pub async fn run(
    http: &reqwest::Client,
    base: &str,
    requests: Arc<Vec<Request>>,
    settings: &LoadSettings,
    probe: Option<Arc<ServerProbe>>,
) -> Result<LoadRun> {
    let url = format!("{base}/webhooks/shopify");
    let progress = Arc::new(Progress {
        answered: AtomicU64::new(0),
        abort: AtomicBool::new(false),
        stop_sampling: AtomicBool::new(false),
    });
    let rate = f64::from(settings.rate.max(1));
    // A short lead, so that request 0 is not late for the spawn that follows.
    let start = Instant::now() + Duration::from_millis(20);
    let sampler = tokio::spawn(sample(
        start,
        rate,
        requests.len(),
        settings.sample_every,
        settings.abort_backlog,
        progress.clone(),
        probe,
    ));

    let slots = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    let mut tasks: JoinSet<(Answer, Option<String>)> = JoinSet::new();
    let mut sent = 0;
    let mut aborted_at = None;
    for index in 0..requests.len() {
        let due = start + Duration::from_secs_f64(index as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        if progress.abort.load(Ordering::Relaxed) {
            aborted_at = Some(due.duration_since(start).as_secs_f64());
            break;
        }
        let slot = slots
            .clone()
            .acquire_owned()
            .await
            .context("slots closed")?;
        let (http, url, requests, progress) = (
            http.clone(),
            url.clone(),
            requests.clone(),
            progress.clone(),
        );
        tasks.spawn(async move {
            let sent_at = Instant::now();
            let (http_status, status, error) = send(&http, &url, &requests[index]).await;
            let answered = Instant::now();
            drop(slot);
            progress.answered.fetch_add(1, Ordering::Relaxed);
            let answer = Answer {
                index,
                latency: answered.saturating_duration_since(due),
                send_delay: sent_at.saturating_duration_since(due),
                http: http_status,
                status,
            };
            (answer, error)
        });
        sent += 1;
    }
    let mut answers = Vec::with_capacity(sent);
    let mut errors = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (answer, error) = joined.context("a request task failed")?;
        if let Some(e) = error.filter(|_| errors.len() < 5) {
            errors.push(e);
        }
        answers.push(answer);
    }
    let elapsed = start.elapsed();
    progress.stop_sampling.store(true, Ordering::Relaxed);
    let samples = sampler.await.context("the sampler failed")?;
    answers.sort_by_key(|a| a.index);
    Ok(LoadRun {
        answers,
        sent,
        aborted_at,
        elapsed,
        samples,
        errors,
    })
}

#[derive(Deserialize)]
struct Body {
    status: Option<String>,
}

/// Sends one webhook as Shopify does; never fails: a failure is an answer of its own.
async fn send(
    http: &reqwest::Client,
    url: &str,
    request: &Request,
) -> (u16, Status, Option<String>) {
    let response = http
        .post(url)
        .header("content-type", "application/json")
        .header("x-shopify-topic", request.topic)
        .header("x-shopify-shop-domain", SHOP)
        .header("x-shopify-hmac-sha256", &request.hmac)
        .header("x-shopify-event-id", &request.event_id)
        .header("x-shopify-webhook-id", &request.webhook_id)
        .header("x-shopify-api-version", "2026-04")
        .body(request.body.clone())
        .send()
        .await;
    let response = match response {
        Ok(r) => r,
        Err(e) => return (0, Status::Failed, Some(format!("{e:#}"))),
    };
    let code = response.status().as_u16();
    let body = match response.bytes().await {
        Ok(b) => b,
        Err(e) => {
            return (
                code,
                Status::Failed,
                Some(format!("reading the answer: {e:#}")),
            )
        }
    };
    let text = serde_json::from_slice::<Body>(&body)
        .ok()
        .and_then(|b| b.status)
        .unwrap_or_default();
    let status = match (code, text.as_str()) {
        (200, "accepted") => Status::Accepted,
        (200, "duplicate") => Status::Duplicate,
        (200, "parked") => Status::Parked,
        (200, "ignored") => Status::Ignored,
        _ => Status::Other,
    };
    (code, status, None)
}

/// Samples the backlog (and the server, when there is one) until told to stop; flags an abort
/// when the backlog passes the threshold.
async fn sample(
    start: Instant,
    rate: f64,
    total: usize,
    every: Duration,
    abort_backlog: u64,
    progress: Arc<Progress>,
    probe: Option<Arc<ServerProbe>>,
) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut ticks = tokio::time::interval_at(start.into(), every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while !progress.stop_sampling.load(Ordering::Relaxed) {
        ticks.tick().await;
        let at = start.elapsed().as_secs_f64();
        let due = ((at * rate).floor() as u64 + 1).min(total as u64);
        let answered = progress.answered.load(Ordering::Relaxed);
        let server = match &probe {
            Some(p) => Some(p.sample().await),
            None => None,
        };
        let sample = Sample {
            at,
            client_backlog: due.saturating_sub(answered),
            server,
        };
        if sample.backlog() > abort_backlog {
            progress.abort.store(true, Ordering::Relaxed);
        }
        samples.push(sample);
    }
    samples
}
