//! The commission-posting process manager: every commission change recorded on an order stream
//! becomes a `CommissionEarned` or `CommissionReversed` event on the beneficiary's
//! `commissions-{id}` stream, exactly once.
//!
//! It follows `$all` (order streams only) from a checkpoint kept in the store. A posting's id is
//! derived from the order event it comes from, so if the process dies after posting to some
//! beneficiaries but before recording its checkpoint, the same order event is processed again on
//! restart and the postings already written are recognised by the store and not written twice.
//!
//! ## Failures
//!
//! A transient failure (the store unavailable, I/O, a conflict) stops the pass; it is resumed
//! from the last position with capped exponential back-off. A permanent one (the order event
//! cannot be read, a posting the store refuses) holds that event back in
//! `quarantine-commission-postings` and the pass goes on: the order's later commission events
//! are held behind it (an order's postings stay in order), other orders are posted as usual,
//! and the checkpoint moves on. `upline quarantine retry` posts the held events again.

use std::collections::HashMap;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use rust_decimal::Decimal;
use tokio::sync::watch;
use upline_domain::events::EventSource;
use upline_domain::order::OrderEvent;
use upline_store::{
    AllStart, Direction, EventStore, ExpectedRevision, RecordedEvent, StreamFilter, StreamStart,
};
use uuid::Uuid;

use crate::consumer::{count_retry, pause_unless_shutdown, ConsumerHealth, RetryPolicy};
use crate::error::AppError;
use crate::eventio::{decode_recorded, event_data, Provenance};
use crate::quarantine::{HeldEvent, Quarantine, RetryReport};
use crate::records::{CheckpointEvent, PostingEvent, PostingSource};
use crate::streams;

pub const CHECKPOINT_NAME: &str = "commission-postings";
/// The consumer's name in `quarantine-{name}`, metrics and `/readyz`.
pub const CONSUMER: &str = CHECKPOINT_NAME;
/// Order events read per page while catching up.
const PAGE: usize = 1_000;
/// The checkpoint is recorded at most every this many processed events while streaming (and
/// whenever it catches up), so a restart redoes little.
const CHECKPOINT_EVERY: u64 = 256;
/// Order streams posted at the same time.
const CONCURRENT_POSTINGS: usize = 16;

pub struct CommissionPostings {
    store: Arc<dyn EventStore>,
    /// The last `$all` position fully processed (posted or held).
    position: watch::Sender<u64>,
    quarantine: Quarantine,
    retry: RetryPolicy,
}

impl CommissionPostings {
    /// Starts from the checkpoint recorded in the store, with what it held back before.
    pub async fn open(store: Arc<dyn EventStore>) -> Result<CommissionPostings, AppError> {
        let stream = streams::checkpoint(CHECKPOINT_NAME);
        let last = store
            .read_stream(&stream, Direction::Backwards, StreamStart::End, 1)
            .await?;
        let position = match last.first() {
            Some(r) => {
                let CheckpointEvent::CheckpointRecorded { position } = decode_recorded(r)?;
                position
            }
            None => 0,
        };
        let quarantine = Quarantine::open(store.clone(), CONSUMER).await?;
        Ok(CommissionPostings {
            store,
            position: watch::channel(position).0,
            quarantine,
            retry: RetryPolicy::DEFAULT,
        })
    }

    /// Reports held events to `health` (for `/readyz` and the gauge).
    pub fn with_health(self, health: ConsumerHealth) -> CommissionPostings {
        self.quarantine.report_to(health);
        self
    }

    /// The back-off for transient failures (default [`RetryPolicy::DEFAULT`]).
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> CommissionPostings {
        self.retry = retry;
        self
    }

    /// The last position processed; watch it to know when postings have caught up.
    pub fn position(&self) -> watch::Receiver<u64> {
        self.position.subscribe()
    }

    fn filter() -> StreamFilter {
        StreamFilter {
            stream_prefixes: vec![streams::ORDER_PREFIX.into()],
        }
    }

    /// Processes everything recorded so far, then records the checkpoint. Returns how many
    /// order events were looked at. Fails only on a transient failure (nothing is lost: the
    /// next pass starts from the last position); a permanent one holds its event back.
    pub async fn catch_up(&self) -> Result<u64, AppError> {
        let mut seen = 0;
        loop {
            let from = AllStart::After(*self.position.borrow());
            let page = self.store.read_all(from, &Self::filter(), PAGE).await?;
            let Some(last) = page.last().map(|r| r.position) else {
                break;
            };
            self.post_all(&page).await?;
            seen += page.len() as u64;
            self.position.send_replace(last);
        }
        self.record_checkpoint().await?;
        Ok(seen)
    }

    /// Follows the order streams live until `shutdown` turns true, recording the checkpoint as
    /// it goes and on the way out. A failure (the store briefly unavailable) is logged, counted
    /// and the follow starts again from the last position after a back-off pause that doubles
    /// while nothing moves: postings must not stop while orders keep coming. Only a closed store
    /// ends it.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) -> Result<(), AppError> {
        let mut backoff = self.retry.backoff();
        let mut failed_at = None;
        loop {
            match self.follow(shutdown.clone()).await {
                Ok(()) => return Ok(()),
                Err(AppError::Store(upline_store::StoreError::Closed)) => return Ok(()),
                Err(e) => {
                    let position = *self.position.borrow();
                    if failed_at.is_some_and(|at| at < position) {
                        // It got further since the last failure: this is a new outage.
                        backoff = self.retry.backoff();
                    }
                    failed_at = Some(position);
                    let transient = e.is_transient();
                    if transient {
                        tracing::warn!(error = %e, position, "commission postings failed; retrying");
                    } else {
                        tracing::error!(error = %e, position, "commission postings failed outside any one event; retrying");
                    }
                    count_retry(CONSUMER, transient);
                    let pause = backoff.next().unwrap_or(self.retry.cap);
                    if !pause_unless_shutdown(pause, &mut shutdown).await {
                        return Ok(());
                    }
                }
            }
        }
    }

    async fn follow(&self, mut shutdown: watch::Receiver<bool>) -> Result<(), AppError> {
        self.catch_up().await?;
        let from = AllStart::After(*self.position.borrow());
        // Whatever is ready is taken as one chunk, so a burst is posted concurrently.
        let mut events = self
            .store
            .subscribe_all(from, Self::filter())
            .ready_chunks(PAGE);
        let mut since_checkpoint = 0u64;
        loop {
            tokio::select! {
                next = events.next() => {
                    let Some(chunk) = next else { break };
                    let chunk = chunk.into_iter().collect::<Result<Vec<_>, _>>()?;
                    let Some(last) = chunk.last().map(|r| r.position) else { continue };
                    self.post_all(&chunk).await?;
                    self.position.send_replace(last);
                    since_checkpoint += chunk.len() as u64;
                    if since_checkpoint >= CHECKPOINT_EVERY {
                        self.record_checkpoint().await?;
                        since_checkpoint = 0;
                    }
                }
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
            }
        }
        self.record_checkpoint().await
    }

    async fn record_checkpoint(&self) -> Result<(), AppError> {
        let position = *self.position.borrow();
        let stream = streams::checkpoint(CHECKPOINT_NAME);
        let last = self
            .store
            .read_stream(&stream, Direction::Backwards, StreamStart::End, 1)
            .await?;
        if let Some(r) = last.first() {
            let CheckpointEvent::CheckpointRecorded { position: recorded } = decode_recorded(r)?;
            if recorded >= position {
                return Ok(());
            }
        }
        let event = CheckpointEvent::CheckpointRecorded { position };
        let data = event_data(
            &stream,
            &position.to_string(),
            &event,
            &Provenance::command(CHECKPOINT_NAME),
        )?;
        self.store
            .append(&stream, ExpectedRevision::Any, vec![data])
            .await?;
        Ok(())
    }

    /// Posts what a run of order events changed. Different orders are posted concurrently
    /// (distinct ids, `Any`, and concurrent appends share the store's group commit); the events
    /// of one order one after the other, so a held event keeps its order's later ones behind it.
    /// The caller moves the position past the run only once all of it is posted or held, so a
    /// crash redoes the whole run, which writes nothing twice.
    async fn post_all(&self, events: &[RecordedEvent]) -> Result<(), AppError> {
        // An operator may have retried held events from another process since the last run.
        self.quarantine.refresh().await?;
        let mut by_stream: Vec<Vec<&RecordedEvent>> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for recorded in events.iter().filter(|r| is_commission_event(r)) {
            let i = *index.entry(recorded.stream_id.as_str()).or_insert_with(|| {
                by_stream.push(Vec::new());
                by_stream.len() - 1
            });
            by_stream[i].push(recorded);
        }
        futures::stream::iter(by_stream.into_iter().map(Ok))
            .try_for_each_concurrent(CONCURRENT_POSTINGS, |order| self.post_order(order))
            .await
    }

    /// Posts one order's commission events in order, holding back a permanently failing one
    /// and everything of the order after it.
    async fn post_order(&self, events: Vec<&RecordedEvent>) -> Result<(), AppError> {
        for recorded in events {
            if self.quarantine.is_held(recorded.position) {
                continue;
            }
            if let Some(first) = self.quarantine.first_held_of(&recorded.stream_id) {
                let reason = format!("held behind position {first} of the same order");
                self.quarantine.hold(recorded, &reason, Some(first)).await?;
                continue;
            }
            match self.post(recorded).await {
                Ok(()) => {}
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => {
                    tracing::error!(
                        position = recorded.position,
                        stream = %recorded.stream_id,
                        event_type = %recorded.event_type,
                        error = %e,
                        "order event held back: it cannot be posted"
                    );
                    self.quarantine.hold(recorded, &e.to_string(), None).await?;
                }
            }
        }
        Ok(())
    }

    /// Posts what one order event changed, to each beneficiary's stream.
    async fn post(&self, recorded: &RecordedEvent) -> Result<(), AppError> {
        let postings = postings_of(recorded)?;
        if postings.is_empty() {
            return Ok(());
        }
        let provenance = Provenance {
            correlation_id: Uuid::new_v5(
                &upline_domain::events::EVENT_ID_NAMESPACE,
                recorded.stream_id.as_bytes(),
            ),
            causation_id: recorded.id,
            source: EventSource::Command {
                command_id: format!("{CHECKPOINT_NAME}:{}", recorded.position),
            },
        };
        let key = format!("{}@{}", recorded.stream_id, recorded.revision);
        let appends = postings.into_iter().map(|(beneficiary, posting)| {
            let stream = streams::commissions(&beneficiary);
            let (key, provenance) = (&key, &provenance);
            async move {
                let data = event_data(&stream, key, &posting, provenance)?;
                // `Any` with a deterministic id: a repeat is recognised and writes nothing.
                self.store
                    .append(&stream, ExpectedRevision::Any, vec![data])
                    .await?;
                Ok::<(), AppError>(())
            }
        });
        futures::future::try_join_all(appends).await?;
        Ok(())
    }

    /// What is held back, by position (as recorded in the store now).
    pub async fn held(&self) -> Result<Vec<HeldEvent>, AppError> {
        self.quarantine.refresh().await?;
        Ok(self.quarantine.held())
    }

    /// Posts the held events of the order stream of the event held at `position` again, in
    /// order (after a fix: an upgrade that reads the event, a limit raised). Each that goes
    /// through is released; the first that fails again stays held with the new reason, and so
    /// do the ones after it. Idempotent: postings carry ids derived from the order event, so a
    /// posting already written is not written again.
    pub async fn retry_held(&self, position: u64) -> Result<RetryReport, AppError> {
        self.quarantine.refresh().await?;
        let held = self.quarantine.held();
        let Some(item) = held.iter().find(|h| h.position == position) else {
            return Err(AppError::NothingHeld(crate::quarantine::held_id(
                CONSUMER, position,
            )));
        };
        self.retry_stream(&item.stream).await
    }

    /// Retries every held order stream, oldest first.
    pub async fn retry_all_held(&self) -> Result<Vec<RetryReport>, AppError> {
        self.quarantine.refresh().await?;
        let mut streams: Vec<String> = Vec::new();
        for held in self.quarantine.held() {
            if !streams.contains(&held.stream) {
                streams.push(held.stream);
            }
        }
        let mut reports = Vec::with_capacity(streams.len());
        for stream in streams {
            reports.push(self.retry_stream(&stream).await?);
        }
        Ok(reports)
    }

    async fn retry_stream(&self, stream: &str) -> Result<RetryReport, AppError> {
        let mut report = RetryReport {
            consumer: CONSUMER.to_string(),
            stream: stream.to_string(),
            released: 0,
            still_held: None,
        };
        for held in self.quarantine.held_of(stream) {
            let recorded = self
                .store
                .read_stream(
                    stream,
                    Direction::Forwards,
                    StreamStart::Revision(held.revision),
                    1,
                )
                .await?
                .into_iter()
                .next()
                .filter(|r| r.position == held.position && r.id == held.event_id);
            let outcome = match &recorded {
                Some(recorded) => self.post(recorded).await,
                None => Err(AppError::HeldEventGone {
                    stream: stream.to_string(),
                    position: held.position,
                }),
            };
            match outcome {
                Ok(()) => {
                    self.quarantine.release(held.position).await?;
                    report.released += 1;
                }
                // Nothing recorded: it stays held as it was, and the caller sees why.
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => {
                    let reason = e.to_string();
                    self.quarantine.retry_failed(held.position, &reason).await?;
                    report.still_held = Some((held.position, reason));
                    break;
                }
            }
        }
        Ok(report)
    }
}

/// Whether postings follow from this order event.
fn is_commission_event(recorded: &RecordedEvent) -> bool {
    recorded.event_type == "CommissionCalculated" || recorded.event_type == "CommissionRecalculated"
}

/// The postings one order event stands for: (beneficiary, posting), in beneficiary order.
pub fn postings_of(
    recorded: &RecordedEvent,
) -> Result<Vec<(upline_domain::ids::DistributorId, PostingEvent)>, AppError> {
    if !is_commission_event(recorded) {
        return Ok(Vec::new());
    }
    let source = PostingSource {
        order_stream: recorded.stream_id.clone(),
        order_revision: recorded.revision,
        order_event: recorded.event_type.clone(),
    };
    let event: OrderEvent = decode_recorded(recorded)?;
    let postings = match event {
        OrderEvent::CommissionCalculated { outcome, .. } => outcome
            .payouts
            .iter()
            .map(|p| {
                let posting = PostingEvent::CommissionEarned {
                    source: source.clone(),
                    currency: outcome.currency,
                    amount: p.amount,
                    level: Some(p.level),
                    plan_version: outcome.plan_version.clone(),
                };
                (p.beneficiary.clone(), posting)
            })
            .collect(),
        OrderEvent::CommissionRecalculated {
            currency,
            plan_version,
            outcome,
            adjustments,
            ..
        } => adjustments
            .iter()
            .filter(|a| !a.change.is_zero())
            .map(|a| {
                let level = outcome
                    .as_ref()
                    .and_then(|o| o.payouts.iter().find(|p| p.beneficiary == a.beneficiary))
                    .map(|p| p.level);
                let posting = if a.change > Decimal::ZERO {
                    PostingEvent::CommissionEarned {
                        source: source.clone(),
                        currency,
                        amount: a.change,
                        level,
                        plan_version: plan_version.clone(),
                    }
                } else {
                    PostingEvent::CommissionReversed {
                        source: source.clone(),
                        currency,
                        amount: -a.change,
                        plan_version: plan_version.clone(),
                    }
                };
                (a.beneficiary.clone(), posting)
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(postings)
}
