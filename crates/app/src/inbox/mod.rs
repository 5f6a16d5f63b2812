//! The durable inbox: a verified delivery is written here before the platform gets its answer,
//! and a worker takes it from here. The webhook answer never waits on commission work, and a
//! delivery accepted is never lost, even if the process dies right after answering.
//!
//! This is a port: the embedded adapter (SQLite, in the data directory) is the default; NATS
//! JetStream comes later.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use upline_domain::ids::{Platform, ShopId};

pub mod sqlite;

/// One verified webhook delivery, as received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub platform: Platform,
    pub shop: ShopId,
    /// The platform's topic (`orders/paid`, `order.updated`, `observer.sales_order_save_after`).
    pub topic: String,
    /// The platform's event identity: two deliveries with the same (platform, shop, key) are the
    /// same event delivered twice.
    pub dedupe_key: String,
    /// This delivery's own id (for logs and causation), e.g. `X-Shopify-Webhook-Id`.
    pub delivery_id: String,
    pub received_at: DateTime<Utc>,
    /// Selected non-secret headers worth keeping (topic, api version, triggered-at, ...).
    pub headers: BTreeMap<String, String>,
    /// The raw, verified body: the worker interprets it again, deterministically.
    pub body: Vec<u8>,
}

/// The answer to `accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acceptance {
    /// Stored durably for the first time.
    New { id: i64 },
    /// The same event was already in the inbox, with the same body; nothing stored.
    Duplicate { id: i64 },
    /// The same dedupe key was already in the inbox with a *different* body; nothing stored.
    /// A key a sender chose (the seed endpoint's `Idempotency-Key`) is bound to its body, so
    /// this is the sender's mistake, answered as such; for platform event ids it is a changed
    /// copy of an event already stored.
    Conflict { id: i64 },
}

/// A delivery handed to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxItem {
    pub id: i64,
    pub delivery: Delivery,
    /// How many times a worker took it before (0 the first time).
    pub attempts: u32,
}

/// How a worker finished with an item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Turned into commands (which may have changed nothing: a repeat).
    Processed,
    /// Nothing to do (unknown topic, not an order).
    Ignored { reason: String },
    /// Could not be processed now; parked with its reason, to be retried after a fix.
    Parked { reason: String },
}

/// How a worker finished with a claimed item, recorded with its next claim
/// ([`Inbox::settle_and_claim`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// As [`Inbox::complete`]: never handed out again.
    Completed { id: i64, outcome: Outcome },
    /// As [`Inbox::release`]: handed out again no sooner than `retry_after`.
    Released {
        id: i64,
        error: String,
        retry_after: Duration,
    },
}

/// Counts for metrics and `/readyz`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboxStats {
    pub pending: u64,
    /// When the oldest pending delivery was received.
    pub oldest_pending: Option<DateTime<Utc>>,
    pub processed: u64,
    pub ignored: u64,
    pub parked: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InboxError {
    #[error("inbox item {0} does not exist")]
    UnknownItem(i64),
    #[error("delivery too large: {size} bytes, at most {max}")]
    TooLarge { size: usize, max: usize },
    #[error("inbox is closed")]
    Closed,
    #[error("inbox storage failed: {0}")]
    Storage(String),
}

#[async_trait]
pub trait Inbox: Send + Sync {
    /// Stores a delivery durably (on return it survives a crash), unless the same event is
    /// already there (`Duplicate` when its body is the same, `Conflict` when it differs).
    async fn accept(&self, delivery: Delivery) -> Result<Acceptance, InboxError>;
    /// Takes up to `max` pending deliveries, oldest first, leasing them for `lease`: an item not
    /// completed or released before its lease ends (the worker died) is handed out again.
    async fn claim(&self, max: usize, lease: Duration) -> Result<Vec<InboxItem>, InboxError>;
    /// Records how an item ended; it is never handed out again.
    async fn complete(&self, id: i64, outcome: &Outcome) -> Result<(), InboxError>;
    /// Gives an item back after a transient failure, to be retried no sooner than `retry_after`.
    async fn release(&self, id: i64, error: &str, retry_after: Duration) -> Result<(), InboxError>;
    /// Records `settled` in order, each exactly as `complete` or `release` would, then claims
    /// up to `max` more as `claim` would. The embedded inbox does all of it in one transaction,
    /// so a worker's bookkeeping costs one commit per claim instead of one per delivery. On an
    /// error nothing of it may have been recorded: the items stay leased and come back when
    /// their leases run out, which a worker's idempotent processing absorbs.
    ///
    /// The default makes the calls one after the other.
    async fn settle_and_claim(
        &self,
        settled: Vec<Settlement>,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<InboxItem>, InboxError> {
        for settlement in settled {
            match settlement {
                Settlement::Completed { id, outcome } => self.complete(id, &outcome).await?,
                Settlement::Released {
                    id,
                    error,
                    retry_after,
                } => self.release(id, &error, retry_after).await?,
            }
        }
        self.claim(max, lease).await
    }
    async fn stats(&self) -> Result<InboxStats, InboxError>;
    /// Woken whenever a new delivery is accepted, so a worker need not poll fast.
    fn new_work(&self) -> Arc<tokio::sync::Notify>;
}
