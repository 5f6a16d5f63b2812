//! Events a consumer could not process for a permanent reason, held back so that nothing else
//! waits for them, and kept where an operator lists and retries them.
//!
//! A consumer that follows `$all` (the commission postings) records each held event in its own
//! stream `quarantine-{consumer}`: which event (position, stream, revision, id, type), why, and
//! since when. Later events of the same stream are held too ("behind" the first), because a
//! stream's events must be processed in order; events of other streams go on. The checkpoint
//! moves past held events: the quarantine stream is what remembers them. `upline quarantine
//! retry` runs a held stream's events through the consumer again, in order; each that goes
//! through is released, the first that fails again stays held with the new reason.
//!
//! The projections keep their held events in the read store instead (the row that holds an
//! event commits with the checkpoint that moves past it); both are listed as [`HeldEvent`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use upline_store::{Direction, EventStore, ExpectedRevision, RecordedEvent, StreamStart};
use uuid::Uuid;

use crate::consumer::ConsumerHealth;
use crate::error::AppError;
use crate::eventio::{decode_recorded, event_data, now, Provenance};
use crate::streams;

/// Events read per page when loading a quarantine stream.
const PAGE: usize = 1_000;

/// What a `quarantine-{consumer}` stream records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum QuarantineEvent {
    /// The consumer could not process the event at `position` and holds it back. `behind`: it
    /// is held only because an earlier event of the same stream is.
    EventHeld {
        position: u64,
        stream: String,
        revision: u64,
        event_id: Uuid,
        event_type: String,
        reason: String,
        held_at: DateTime<Utc>,
        behind: Option<u64>,
    },
    /// An operator's retry failed again; the event stays held with this reason.
    HeldRetryFailed {
        position: u64,
        reason: String,
        retried_at: DateTime<Utc>,
    },
    /// A retry processed the event: it is no longer held.
    HeldEventReleased {
        position: u64,
        released_at: DateTime<Utc>,
    },
}

impl upline_domain::events::DomainEvent for QuarantineEvent {
    fn schema_version(&self) -> u16 {
        1
    }
}

/// One held event, as `upline quarantine list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeldEvent {
    /// The consumer that holds it: `commission-postings`, or a projection's name.
    pub consumer: String,
    /// Its `$all` position.
    pub position: u64,
    pub stream: String,
    pub revision: u64,
    pub event_id: Uuid,
    pub event_type: String,
    /// Why it is held (the latest reason, after a failed retry).
    pub reason: String,
    /// When it was first held.
    pub since: DateTime<Utc>,
    /// How many retries failed.
    pub retries: u32,
    /// Held only because the earlier event at this position of the same stream is.
    pub behind: Option<u64>,
}

impl HeldEvent {
    /// The id `upline quarantine retry` takes: `{consumer}@{position}`.
    pub fn id(&self) -> String {
        held_id(&self.consumer, self.position)
    }
}

/// `{consumer}@{position}`.
pub fn held_id(consumer: &str, position: u64) -> String {
    format!("{consumer}@{position}")
}

/// Splits `{consumer}@{position}`; `None` when `id` is not one.
pub fn parse_held_id(id: &str) -> Option<(&str, u64)> {
    let (consumer, position) = id.rsplit_once('@')?;
    let position = position.parse().ok()?;
    (!consumer.is_empty()).then_some((consumer, position))
}

/// What a retry of one held stream did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetryReport {
    pub consumer: String,
    pub stream: String,
    /// Events processed and released, in order.
    pub released: usize,
    /// The first event that failed again and its new reason; it and the stream's later held
    /// events stay held.
    pub still_held: Option<(u64, String)>,
}

/// A consumer's held events, folded from its `quarantine-{consumer}` stream.
pub struct Quarantine {
    store: Arc<dyn EventStore>,
    consumer: String,
    stream: String,
    state: Mutex<Folded>,
    /// One refresh at a time, so no quarantine event is folded twice.
    refreshing: tokio::sync::Mutex<()>,
    health: Mutex<ConsumerHealth>,
}

#[derive(Default)]
struct Folded {
    /// How many events of the quarantine stream are folded in.
    read: u64,
    held: BTreeMap<u64, HeldEvent>,
}

impl Folded {
    fn fold(&mut self, consumer: &str, event: QuarantineEvent) {
        match event {
            QuarantineEvent::EventHeld {
                position,
                stream,
                revision,
                event_id,
                event_type,
                reason,
                held_at,
                behind,
            } => {
                // Held twice (two processes raced, or a crash before the checkpoint): the
                // first record stands.
                self.held.entry(position).or_insert(HeldEvent {
                    consumer: consumer.to_string(),
                    position,
                    stream,
                    revision,
                    event_id,
                    event_type,
                    reason,
                    since: held_at,
                    retries: 0,
                    behind,
                });
            }
            QuarantineEvent::HeldRetryFailed {
                position, reason, ..
            } => {
                if let Some(held) = self.held.get_mut(&position) {
                    held.reason = reason;
                    held.retries += 1;
                    held.behind = None;
                }
            }
            QuarantineEvent::HeldEventReleased { position, .. } => {
                self.held.remove(&position);
            }
        }
    }
}

impl Quarantine {
    /// Loads what `consumer` holds.
    pub async fn open(store: Arc<dyn EventStore>, consumer: &str) -> Result<Quarantine, AppError> {
        let quarantine = Quarantine {
            store,
            consumer: consumer.to_string(),
            stream: streams::quarantine(consumer),
            state: Mutex::new(Folded::default()),
            refreshing: tokio::sync::Mutex::new(()),
            health: Mutex::new(ConsumerHealth::default()),
        };
        quarantine.refresh().await?;
        Ok(quarantine)
    }

    /// Reports to `health` (and the gauge) from now on.
    pub fn report_to(&self, health: ConsumerHealth) {
        *self.health.lock().unwrap_or_else(|e| e.into_inner()) = health;
        self.publish();
    }

    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    fn folded(&self) -> std::sync::MutexGuard<'_, Folded> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Folds in what was recorded since the last refresh (by this process or an operator's
    /// command in another).
    pub async fn refresh(&self) -> Result<(), AppError> {
        let _one = self.refreshing.lock().await;
        let mut changed = false;
        loop {
            let from = self.folded().read;
            let page = self
                .store
                .read_stream(
                    &self.stream,
                    Direction::Forwards,
                    StreamStart::Revision(from),
                    PAGE,
                )
                .await?;
            let decoded = page
                .iter()
                .map(decode_recorded::<QuarantineEvent>)
                .collect::<Result<Vec<_>, _>>()?;
            let mut folded = self.folded();
            for event in decoded {
                folded.fold(&self.consumer, event);
                folded.read += 1;
                changed = true;
            }
            if page.len() < PAGE {
                break;
            }
        }
        if changed {
            self.publish();
        }
        Ok(())
    }

    fn publish(&self) {
        let (count, reason) = {
            let folded = self.folded();
            let oldest = folded.held.values().next().map(|h| h.reason.clone());
            (folded.held.len() as u64, oldest)
        };
        self.health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .report(&self.consumer, count, reason.as_deref());
    }

    /// Everything held, by position.
    pub fn held(&self) -> Vec<HeldEvent> {
        self.folded().held.values().cloned().collect()
    }

    /// Whether the event at `position` is held.
    pub fn is_held(&self, position: u64) -> bool {
        self.folded().held.contains_key(&position)
    }

    /// The first held event of `stream`, if any: later events of it must wait behind it.
    pub fn first_held_of(&self, stream: &str) -> Option<u64> {
        self.folded()
            .held
            .values()
            .find(|h| h.stream == stream)
            .map(|h| h.position)
    }

    /// The held events of `stream`, in order.
    pub fn held_of(&self, stream: &str) -> Vec<HeldEvent> {
        self.folded()
            .held
            .values()
            .filter(|h| h.stream == stream)
            .cloned()
            .collect()
    }

    /// Holds `event` back for `reason` (`behind`: only because that earlier event of its stream
    /// is held).
    pub async fn hold(
        &self,
        event: &RecordedEvent,
        reason: &str,
        behind: Option<u64>,
    ) -> Result<(), AppError> {
        if self.is_held(event.position) {
            return Ok(());
        }
        let record = QuarantineEvent::EventHeld {
            position: event.position,
            stream: event.stream_id.clone(),
            revision: event.revision,
            event_id: event.id,
            event_type: event.event_type.clone(),
            reason: reason.to_string(),
            held_at: now(),
            behind,
        };
        self.record(&format!("held@{}", event.position), &record)
            .await
    }

    /// A retry of the held event at `position` failed again for `reason`.
    pub async fn retry_failed(&self, position: u64, reason: &str) -> Result<(), AppError> {
        let record = QuarantineEvent::HeldRetryFailed {
            position,
            reason: reason.to_string(),
            retried_at: now(),
        };
        self.record(&format!("retry-failed@{position}"), &record)
            .await
    }

    /// The held event at `position` went through: it is no longer held.
    pub async fn release(&self, position: u64) -> Result<(), AppError> {
        let record = QuarantineEvent::HeldEventReleased {
            position,
            released_at: now(),
        };
        self.record(&format!("released@{position}"), &record).await
    }

    async fn record(&self, key: &str, record: &QuarantineEvent) -> Result<(), AppError> {
        let provenance = Provenance::command(&format!("quarantine:{}", self.consumer));
        let data = event_data(&self.stream, key, record, &provenance)?;
        self.store
            .append(&self.stream, ExpectedRevision::Any, vec![data])
            .await?;
        self.refresh().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_ids_name_the_consumer_and_the_position() {
        assert_eq!(held_id("commission-postings", 42), "commission-postings@42");
        assert_eq!(
            parse_held_id("commission-postings@42"),
            Some(("commission-postings", 42))
        );
        assert_eq!(parse_held_id("ledger@x"), None);
        assert_eq!(parse_held_id("@3"), None);
        assert_eq!(parse_held_id("ledger"), None);
    }
}
