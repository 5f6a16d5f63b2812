//! The inbox worker: takes verified deliveries from the durable inbox and turns each into order
//! commands. A delivery is completed only after its events are durable, so a crash anywhere means
//! the delivery is handed out again (its lease runs out) and processed again, which changes
//! nothing the second time: the order stream's revision and the facts already known guard it.
//!
//! Failures follow the rule of [`crate::consumer`]: a delivery that fails transiently is given
//! back to the inbox to be retried after a back-off pause that doubles with its attempts; after
//! [`RetryPolicy::max_attempts`] it is parked with "gave up after N attempts: ...". A permanent
//! failure parks it at once with the reason. Either way the other deliveries go on.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use upline_domain::events::{EventSource, EVENT_ID_NAMESPACE};
use upline_platforms::model::Interpretation;
use uuid::Uuid;

use crate::consumer::{count_retry, RetryPolicy};
use crate::eventio::Provenance;
use crate::inbox::{Inbox, InboxError, InboxItem, Outcome, Settlement};
use crate::orders::{App, UpdateOutcome};

/// Deliveries claimed at once.
pub const CLAIM_BATCH: usize = 32;
/// Deliveries processed at the same time. Processing is mostly waiting on the store, so a few
/// in flight keep it busy; more would only queue inside the store's writer.
pub const CONCURRENT_DELIVERIES: usize = 8;
/// How long a claimed delivery is ours before another worker may take it (a dead worker's items
/// come back after this).
pub const LEASE: Duration = Duration::from_secs(30);
/// How long to wait before claiming again after the inbox itself failed.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);
/// The consumer's name in metrics.
pub const CONSUMER: &str = "inbox-worker";
/// How often an idle worker looks again even without a wake-up (a lease may have run out).
pub const IDLE_POLL: Duration = Duration::from_secs(1);

pub struct Worker {
    inbox: Arc<dyn Inbox>,
    app: Arc<App>,
    retry: RetryPolicy,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("inbox: {0}")]
    Inbox(#[from] InboxError),
}

impl Worker {
    pub fn new(inbox: Arc<dyn Inbox>, app: Arc<App>) -> Worker {
        Worker {
            inbox,
            app,
            retry: RetryPolicy::DEFAULT,
        }
    }

    /// The back-off and attempt limit for deliveries that fail transiently (default
    /// [`RetryPolicy::DEFAULT`]).
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Worker {
        self.retry = retry;
        self
    }

    /// Processes deliveries as they arrive until `shutdown` turns true; the delivery in hand is
    /// finished first. An inbox failure is logged and retried after a pause: a worker that gave
    /// up would leave deliveries piling up behind a gateway that still answers 200. Only a closed
    /// inbox ends it.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) -> Result<(), WorkerError> {
        let wake = self.inbox.new_work();
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            let done = match self.process_available().await {
                Ok(done) => done,
                Err(WorkerError::Inbox(InboxError::Closed)) => return Ok(()),
                Err(e) => {
                    tracing::error!(error = %e, "inbox worker failed; retrying");
                    metrics::counter!("upline_worker_failures_total").increment(1);
                    tokio::time::sleep(RETRY_AFTER).await;
                    continue;
                }
            };
            if done > 0 {
                continue;
            }
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// One pass: claims and processes what is available now. Returns how many were processed.
    ///
    /// How each delivery ended is recorded with the next claim, in one inbox transaction: a
    /// delivery's effects are durable before its settlement is even sent, so a crash (or an
    /// inbox failure) in between only hands it out again when its lease runs out, and
    /// processing it again changes nothing.
    pub async fn process_available(&self) -> Result<usize, WorkerError> {
        let mut total = 0;
        let mut settled = Vec::new();
        loop {
            let items = self
                .inbox
                .settle_and_claim(std::mem::take(&mut settled), CLAIM_BATCH, LEASE)
                .await?;
            if items.is_empty() {
                return Ok(total);
            }
            total += items.len();
            // Deliveries are processed concurrently: different orders are independent, and two
            // deliveries of one order are kept apart by the stream's expected revision (the
            // loser decides again; facts commute). Concurrent appends also share the store's
            // group commit.
            settled = futures::stream::iter(items)
                .map(|item| self.process(item))
                .buffer_unordered(CONCURRENT_DELIVERIES)
                .collect()
                .await;
        }
    }

    /// Processes one delivery and says how it ended; the caller records that.
    async fn process(&self, item: InboxItem) -> Settlement {
        let d = &item.delivery;
        let completed = |outcome| Settlement::Completed {
            id: item.id,
            outcome,
        };
        let interpretation = upline_platforms::interpret(d.platform, &d.shop, &d.topic, &d.body);
        let update = match interpretation {
            Ok(Interpretation::Order(update)) => update,
            Ok(Interpretation::Ignored { reason }) => {
                return completed(Outcome::Ignored { reason })
            }
            Err(e) => {
                let reason = format!("payload: {e}");
                return completed(Outcome::Parked { reason });
            }
        };
        let identity = format!("{}/{}/{}", d.platform, d.shop, d.dedupe_key);
        let provenance = Provenance {
            correlation_id: Uuid::new_v5(&EVENT_ID_NAMESPACE, identity.as_bytes()),
            causation_id: Uuid::new_v5(
                &EVENT_ID_NAMESPACE,
                format!("{identity}#{}", d.delivery_id).as_bytes(),
            ),
            source: EventSource::WebhookDelivery {
                platform: d.platform,
                shop: d.shop.clone(),
                delivery_id: d.delivery_id.clone(),
            },
        };
        let source = format!("inbox #{} ({} {})", item.id, d.platform, d.topic);
        match self.app.handle_update(&update, &provenance, &source).await {
            // A parked order update is kept whole in the event store (`parked-{order}`), where
            // `upline parked retry` finds it: the delivery itself is done with.
            Ok(UpdateOutcome::Parked { reason, .. }) => {
                tracing::info!(delivery = item.id, reason = %reason, "order update parked");
                completed(Outcome::Processed)
            }
            Ok(_) => completed(Outcome::Processed),
            Err(e) if e.is_transient() => {
                count_retry(CONSUMER, true);
                // `attempts` counts the claims before this one: this was attempt attempts + 1.
                let attempts = item.attempts.saturating_add(1);
                if attempts >= self.retry.max_attempts {
                    let reason = format!("gave up after {attempts} attempts: {e}");
                    tracing::error!(delivery = item.id, %reason, "delivery parked");
                    completed(Outcome::Parked { reason })
                } else {
                    let pause = self.retry.pause_after(attempts);
                    tracing::warn!(delivery = item.id, attempts, error = %e, ?pause, "delivery failed; retrying later");
                    Settlement::Released {
                        id: item.id,
                        error: e.to_string(),
                        retry_after: pause,
                    }
                }
            }
            Err(e) => {
                // Not a business refusal (those park inside `handle_update`) and not transient:
                // a stored event that cannot be read, an event that would not read back, a
                // limit. Park the delivery with the reason so nothing is lost.
                tracing::error!(delivery = item.id, error = %e, "delivery cannot be processed");
                completed(Outcome::Parked {
                    reason: e.to_string(),
                })
            }
        }
    }
}
