//! The commission-posting process manager: every commission change recorded on an order stream
//! becomes a `CommissionEarned` or `CommissionReversed` event on the beneficiary's
//! `distributor-{id}` stream, exactly once.
//!
//! It follows `$all` (order streams only) from a checkpoint kept in the store. A posting's id is
//! derived from the order event it comes from, so if the process dies after posting to some
//! beneficiaries but before recording its checkpoint, the same order event is processed again on
//! restart and the postings already written are recognised by the store and not written twice.

use std::sync::Arc;

use futures::StreamExt;
use rust_decimal::Decimal;
use tokio::sync::watch;
use upline_domain::events::EventSource;
use upline_domain::order::OrderEvent;
use upline_store::{
    AllStart, Direction, EventStore, ExpectedRevision, RecordedEvent, StreamFilter, StreamStart,
};
use uuid::Uuid;

use crate::error::AppError;
use crate::eventio::{decode_recorded, event_data, Provenance};
use crate::records::{CheckpointEvent, PostingEvent, PostingSource};
use crate::streams;

pub const CHECKPOINT_NAME: &str = "commission-postings";
/// Order events read per page while catching up.
const PAGE: usize = 1_000;
/// The checkpoint is recorded at most every this many processed events while streaming (and
/// whenever it catches up), so a restart redoes little.
const CHECKPOINT_EVERY: u64 = 256;
/// Order events posted at the same time.
const CONCURRENT_POSTINGS: usize = 16;
/// How long to wait before following again after a failure.
const RESUME_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

pub struct CommissionPostings {
    store: Arc<dyn EventStore>,
    /// The last `$all` position fully processed.
    position: watch::Sender<u64>,
}

impl CommissionPostings {
    /// Starts from the checkpoint recorded in the store.
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
        Ok(CommissionPostings {
            store,
            position: watch::channel(position).0,
        })
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
    /// order events were looked at.
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
    /// it goes and on the way out. A failure (the store briefly unavailable) is logged and the
    /// follow starts again from the last position after a pause: postings must not stop while
    /// orders keep coming. Only a closed store ends it.
    pub async fn run(&self, shutdown: watch::Receiver<bool>) -> Result<(), AppError> {
        loop {
            match self.follow(shutdown.clone()).await {
                Ok(()) => return Ok(()),
                Err(AppError::Store(upline_store::StoreError::Closed)) => return Ok(()),
                Err(e) => {
                    tracing::error!(error = %e, "commission postings failed; resuming");
                    metrics::counter!("upline_posting_failures_total").increment(1);
                    tokio::time::sleep(RESUME_AFTER).await;
                    if *shutdown.borrow() {
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

    /// Posts what a run of order events changed, several at a time: postings are independent of
    /// each other (distinct ids, `Any`), and concurrent appends share the store's group commit.
    /// The caller moves the position past the run only once all of it is posted, so a crash
    /// redoes the whole run, which writes nothing twice.
    async fn post_all(&self, events: &[RecordedEvent]) -> Result<(), AppError> {
        for run in events.chunks(CONCURRENT_POSTINGS) {
            futures::future::try_join_all(run.iter().map(|recorded| self.post(recorded))).await?;
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
            let stream = streams::distributor(&beneficiary);
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
}

/// The postings one order event stands for: (beneficiary, posting), in beneficiary order.
pub fn postings_of(
    recorded: &RecordedEvent,
) -> Result<Vec<(upline_domain::ids::DistributorId, PostingEvent)>, AppError> {
    if recorded.event_type != "CommissionCalculated"
        && recorded.event_type != "CommissionRecalculated"
    {
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
