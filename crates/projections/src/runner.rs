//! The projection runner: catch up from each projection's checkpoint, follow live, report lag,
//! rebuild into fresh tables and swap them in.
//!
//! ## Exactly once
//!
//! Each batch of events is applied in ONE read-store transaction that starts by moving the
//! checkpoint with a guarded update (`... WHERE name = $n AND generation = $g AND position =
//! $from`). If the guard matches nothing (another runner, a `catch_up` in parallel, or a rebuild
//! swapped generations in between) the transaction is rolled back and the runner reloads its
//! checkpoint. So a crash anywhere leaves either the batch's rows *and* the checkpoint past it,
//! or neither; a replayed event never counts twice. Writing the guard first also takes the
//! write lock first (SQLite) or the row lock (PostgreSQL), so competing writers queue instead of
//! failing half-way.
//!
//! ## Failures
//!
//! A transient failure (a store unavailable, I/O, a timeout, a lock) rolls the batch back; the
//! projection resumes from its checkpoint after a capped exponential back-off pause
//! (`upline_consumer_retries_total{consumer=projection,kind="transient"}`). An event that fails
//! for a permanent reason (it cannot be read, an amount the read store cannot hold) is held back:
//! the batch is applied again with a savepoint around each event, the failing one is rolled back
//! to its savepoint and recorded in `projection_held` (projection, generation, position, stream,
//! reason) in the same transaction that moves the checkpoint past it, and later events of the
//! same stream are held behind it, so a stream's events still apply in order while every other
//! stream goes on. [`ProjectionRunner::retry_held`] applies a held stream again; each event's row
//! is deleted in the transaction that applies it, so a retried event never counts twice.
//!
//! ## Lag
//!
//! `upline_projection_lag_events{projection}` is head − checkpoint, where head is the last
//! position of `$all` that matches the projection's filter (known from the subscription while
//! following; found by reading forward from the checkpoint otherwise).
//! `upline_projection_lag_seconds{projection}` is now − `recorded_at` of the last event applied
//! (of the first one pending, before any), and 0 when caught up. Also
//! `upline_projection_position{projection}`, `upline_projection_events_total{projection}` and
//! `upline_projection_failures_total{projection}`.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::{Acquire, Row};
use tokio::sync::watch;
use upline_app::consumer::{count_retry, pause_unless_shutdown, ConsumerHealth, RetryPolicy};
use upline_app::quarantine::{HeldEvent, RetryReport};
use upline_store::{
    AllStart, Direction, EventStore, RecordedEvent, StreamExt, StreamFilter, StreamStart,
};

use crate::error::ProjectionError;
use crate::projection::{filter_of, Projection};
use crate::sql::{
    self, execute_all, position_from_sql, position_to_sql, table, time_from_sql, time_to_sql, Tx,
};
use crate::store::{affected, ReadStore};

/// Events applied per transaction (and read per page).
pub const DEFAULT_PAGE_SIZE: usize = 500;
/// Events applied per transaction while a rebuild fills a generation nobody reads yet: the
/// store's read limit. Fewer, bigger batches write each balance, book and index page once per
/// batch instead of once per 500 events (the ledger's rebuild: 14.0 s -> 8.1 s over 230,658
/// postings).
pub const REBUILD_PAGE_SIZE: usize = upline_store::limits::MAX_READ_COUNT;
/// How long a live projection waits after its last commit before the next one, so that what
/// comes meanwhile commits together. Bounds its commits (and fsyncs) to one per linger per
/// projection at any rate below a page per linger, for at most this much lag plus one batch
/// (the target is a lag p99 under a second). A longer linger also folds more of an order's
/// events (its facts, then its postings) into one batch, so its book is written once.
pub const LIVE_BATCH_LINGER: std::time::Duration = std::time::Duration::from_millis(100);
/// Events read per page while looking for the head.
const HEAD_SCAN_PAGE: usize = 1_000;
/// While catching up, the head is looked for at most this many pages ahead (so a projection
/// far behind starts applying at once; its lag gauge is then a lower bound until it gets
/// there). `status()` always reads to the end.
const CATCH_UP_HEAD_SCAN_PAGES: usize = 20;

/// Where a projection stands.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectionStatus {
    pub name: &'static str,
    /// The generation the views show.
    pub generation: u32,
    /// Its checkpoint: the last `$all` position applied.
    pub position: u64,
    /// The last position of `$all` its filter matches.
    pub head: u64,
    /// `head - position`.
    pub lag_events: u64,
    /// Now − `recorded_at` of the last event applied (of the first pending one, before any);
    /// 0 when caught up.
    pub lag_seconds: f64,
    /// When the checkpoint last moved (wall clock).
    pub updated_at: Option<DateTime<Utc>>,
    /// A rebuild in progress (or interrupted: the next rebuild starts over).
    pub rebuilding: Option<Rebuilding>,
}

/// A generation being built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rebuilding {
    pub generation: u32,
    pub position: u64,
}

/// Reported after every batch of a rebuild, and once more when it is swapped in.
#[derive(Debug, Clone, PartialEq)]
pub struct RebuildProgress {
    pub projection: &'static str,
    /// The generation being built.
    pub generation: u32,
    pub events_applied: u64,
    pub events_per_second: f64,
    /// The rebuild's checkpoint.
    pub position: u64,
    /// The last position its filter matches, as known now.
    pub head: u64,
    /// `head - position`.
    pub remaining: u64,
    /// The new generation is swapped in.
    pub done: bool,
}

/// What a rebuild did.
#[derive(Debug, Clone, PartialEq)]
pub struct RebuildReport {
    pub projection: &'static str,
    pub from_generation: u32,
    pub generation: u32,
    pub events_applied: u64,
    /// The checkpoint of the new generation when swapped in.
    pub position: u64,
    pub elapsed: Duration,
}

/// A `projection_state` row.
#[derive(Debug, Clone)]
struct State {
    generation: u32,
    position: u64,
    updated_at: Option<DateTime<Utc>>,
    rebuilding: Option<Rebuilding>,
    last_recorded_at: Option<DateTime<Utc>>,
}

/// What [`ProjectionRunner::apply_next_page`] did.
enum NextPage {
    /// Nothing after the checkpoint.
    Empty,
    /// This many events applied, the checkpoint past them.
    Applied(usize),
    /// The checkpoint was moved by someone else (a rebuild swapped generations); nothing
    /// written.
    Moved,
}

/// Which generation a batch goes to.
#[derive(Debug, Clone, Copy)]
enum Target {
    Live { generation: u32 },
    Rebuild { generation: u32 },
}

impl Target {
    fn generation(self) -> u32 {
        match self {
            Target::Live { generation } | Target::Rebuild { generation } => generation,
        }
    }
}

/// Runs projections over an event store into a read store.
pub struct ProjectionRunner {
    store: Arc<dyn EventStore>,
    read: ReadStore,
    projections: Vec<Arc<dyn Projection>>,
    /// The last position seen matching each projection's filter.
    heads: Mutex<HashMap<&'static str, u64>>,
    initialised: tokio::sync::OnceCell<()>,
    page_size: usize,
    rebuild_page_size: usize,
    health: ConsumerHealth,
    retry: RetryPolicy,
}

impl ProjectionRunner {
    pub fn new(
        store: Arc<dyn EventStore>,
        read: ReadStore,
        projections: Vec<Arc<dyn Projection>>,
    ) -> ProjectionRunner {
        ProjectionRunner {
            store,
            read,
            projections,
            heads: Mutex::new(HashMap::new()),
            initialised: tokio::sync::OnceCell::new(),
            page_size: DEFAULT_PAGE_SIZE,
            rebuild_page_size: REBUILD_PAGE_SIZE,
            health: ConsumerHealth::default(),
            retry: RetryPolicy::DEFAULT,
        }
    }

    /// Reports each projection's held events to `health` (for `/readyz` and the gauge).
    pub fn with_health(mut self, health: ConsumerHealth) -> ProjectionRunner {
        self.health = health;
        self
    }

    /// The back-off for transient failures (default [`RetryPolicy::DEFAULT`]).
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> ProjectionRunner {
        self.retry = retry;
        self
    }

    /// Events per transaction (default [`DEFAULT_PAGE_SIZE`], and [`REBUILD_PAGE_SIZE`] in a
    /// rebuild; at least 1, at most the store's read limit). Sets both: tests use it to cut
    /// every batch small.
    pub fn with_page_size(mut self, page_size: usize) -> ProjectionRunner {
        self.page_size = page_size.clamp(1, upline_store::limits::MAX_READ_COUNT);
        self.rebuild_page_size = self.page_size;
        self
    }

    pub fn read_store(&self) -> &ReadStore {
        &self.read
    }

    pub fn event_store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    pub fn projections(&self) -> &[Arc<dyn Projection>] {
        &self.projections
    }

    /// The projection named `name`.
    pub fn projection(&self, name: &str) -> Result<&Arc<dyn Projection>, ProjectionError> {
        self.projections
            .iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| ProjectionError::UnknownProjection {
                name: name.to_string(),
                known: self
                    .projections
                    .iter()
                    .map(|p| p.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Registers every projection (first time: its generation-1 tables, its views and a
    /// checkpoint at 0). Idempotent; the other methods call it.
    pub async fn init(&self) -> Result<(), ProjectionError> {
        self.initialised
            .get_or_try_init(|| async {
                self.check_configuration()?;
                for projection in &self.projections {
                    self.register(projection.as_ref()).await?;
                }
                for projection in &self.projections {
                    self.publish_held(projection.name()).await?;
                }
                Ok::<(), ProjectionError>(())
            })
            .await?;
        Ok(())
    }

    fn check_configuration(&self) -> Result<(), ProjectionError> {
        let mut names = BTreeSet::new();
        let mut tables = BTreeSet::new();
        for projection in &self.projections {
            let name = projection.name();
            if !sql::is_identifier(&name.replace('-', "_")) {
                return Err(ProjectionError::Configuration(format!(
                    "projection name {name:?}: use lowercase letters, digits, '-' and '_'"
                )));
            }
            if !names.insert(name) {
                return Err(ProjectionError::Configuration(format!(
                    "two projections are named {name:?}"
                )));
            }
            if projection.tables().is_empty() {
                return Err(ProjectionError::Configuration(format!(
                    "projection {name:?} has no tables"
                )));
            }
            for logical in projection.tables() {
                if !sql::is_identifier(logical) || *logical == "projection_state" {
                    return Err(ProjectionError::Configuration(format!(
                        "table {logical:?} of {name:?}: use [a-z][a-z0-9_]*, at most 48 characters"
                    )));
                }
                if !tables.insert(*logical) {
                    return Err(ProjectionError::Configuration(format!(
                        "two projections have a table named {logical:?}"
                    )));
                }
            }
        }
        Ok(())
    }

    async fn register(&self, projection: &dyn Projection) -> Result<(), ProjectionError> {
        let mut tx = self.read.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO projection_state (name, generation, position, updated_at) \
             VALUES ($1, 1, 0, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(projection.name())
        .bind(time_to_sql(Utc::now()))
        .execute(&mut *tx)
        .await?;
        if affected(&inserted) == 1 {
            drop_tables(&mut tx, projection, 1).await?;
            projection.create_tables(&mut tx, 1).await?;
            execute_all(&mut tx, &projection.query_indexes(1)).await?;
            point_views(&mut tx, projection, 1).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn load_state(&self, name: &str) -> Result<State, ProjectionError> {
        let row = sqlx::query(
            "SELECT generation, position, updated_at, rebuilding_generation, rebuilding_position, \
             last_recorded_at FROM projection_state WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(self.read.pool())
        .await?
        .ok_or_else(|| ProjectionError::Corrupt(format!("no projection_state row for {name}")))?;
        let generation = generation_from_sql(row.try_get("generation")?)?;
        let position = position_from_sql(row.try_get("position")?)?;
        let updated_at: Option<String> = row.try_get("updated_at")?;
        let rebuilding_generation: Option<i64> = row.try_get("rebuilding_generation")?;
        let rebuilding_position: Option<i64> = row.try_get("rebuilding_position")?;
        let last_recorded_at: Option<String> = row.try_get("last_recorded_at")?;
        let rebuilding = match (rebuilding_generation, rebuilding_position) {
            (Some(g), Some(p)) => Some(Rebuilding {
                generation: generation_from_sql(g)?,
                position: position_from_sql(p)?,
            }),
            _ => None,
        };
        Ok(State {
            generation,
            position,
            updated_at: updated_at.as_deref().map(time_from_sql).transpose()?,
            rebuilding,
            last_recorded_at: last_recorded_at.as_deref().map(time_from_sql).transpose()?,
        })
    }

    fn cached_head(&self, name: &'static str) -> u64 {
        self.heads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .copied()
            .unwrap_or(0)
    }

    fn note_head(&self, name: &'static str, position: u64) -> u64 {
        let mut heads = self.heads.lock().unwrap_or_else(|e| e.into_inner());
        let head = heads.entry(name).or_insert(0);
        *head = (*head).max(position);
        *head
    }

    /// The last position matching the projection's filter, reading forward from what is known
    /// (at most `max_pages` pages; `None`: to the end).
    async fn refresh_head(
        &self,
        projection: &dyn Projection,
        from: u64,
        max_pages: Option<usize>,
    ) -> Result<u64, ProjectionError> {
        let filter = filter_of(projection);
        let mut after = from.max(self.cached_head(projection.name()));
        let mut pages = 0;
        loop {
            let page = self
                .store
                .read_all(AllStart::After(after), &filter, HEAD_SCAN_PAGE)
                .await?;
            if let Some(last) = page.last() {
                after = last.position;
            }
            pages += 1;
            if page.len() < HEAD_SCAN_PAGE || max_pages.is_some_and(|max| pages >= max) {
                break;
            }
        }
        Ok(self.note_head(projection.name(), after))
    }

    /// When the first event after `position` was recorded (for the lag of a projection that has
    /// applied nothing yet).
    async fn first_pending_at(
        &self,
        projection: &dyn Projection,
        position: u64,
    ) -> Result<Option<DateTime<Utc>>, ProjectionError> {
        let first = self
            .store
            .read_all(AllStart::After(position), &filter_of(projection), 1)
            .await?;
        Ok(first.first().map(|e| e.recorded_at))
    }

    /// Sets the lag gauges; returns (lag_events, lag_seconds).
    fn publish_lag(
        &self,
        name: &'static str,
        position: u64,
        head: u64,
        since: Option<DateTime<Utc>>,
    ) -> (u64, f64) {
        let lag_events = head.saturating_sub(position);
        let lag_seconds = match since {
            Some(at) if lag_events > 0 => {
                let micros = (Utc::now() - at).num_microseconds().unwrap_or(i64::MAX);
                (micros.max(0) as f64) / 1e6
            }
            _ => 0.0,
        };
        metrics::gauge!("upline_projection_lag_events", "projection" => name)
            .set(lag_events as f64);
        metrics::gauge!("upline_projection_lag_seconds", "projection" => name).set(lag_seconds);
        metrics::gauge!("upline_projection_position", "projection" => name).set(position as f64);
        (lag_events, lag_seconds)
    }

    /// Applies `events` (read after `from`) to `target` with the checkpoint, in one transaction.
    /// `Ok(false)`: the checkpoint is no longer `from` (someone else moved it); nothing written.
    /// An event failing for a permanent reason is held back instead (see the module's
    /// "Failures"): first the batch is tried as one plain transaction, and only if an event
    /// fails so is it applied again with a savepoint around each event.
    async fn apply_batch(
        &self,
        projection: &dyn Projection,
        target: Target,
        from: u64,
        events: &[RecordedEvent],
    ) -> Result<bool, ProjectionError> {
        let Some(last) = events.last() else {
            return Ok(true);
        };
        let name = projection.name();
        let mut careful = false;
        loop {
            let mut tx = self.read.begin().await?;
            if !move_checkpoint(&mut tx, name, target, from, last).await? {
                tx.rollback().await?;
                return Ok(false);
            }
            match apply_or_hold(&mut tx, projection, target.generation(), events, careful).await {
                Ok(held) => {
                    tx.commit().await?;
                    metrics::counter!("upline_projection_events_total", "projection" => name)
                        .increment(events.len() as u64);
                    if held > 0 && matches!(target, Target::Live { .. }) {
                        self.publish_held(name).await?;
                    }
                    return Ok(true);
                }
                Err(error) if !careful && !error.is_transient() => {
                    tx.rollback().await?;
                    careful = true;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Sets the held-events gauge and the health board of `name` from its live generation.
    async fn publish_held(&self, name: &str) -> Result<(), ProjectionError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS held, MIN(h.position) AS oldest FROM projection_held h \
             JOIN projection_state s ON s.name = h.projection AND s.generation = h.generation \
             WHERE h.projection = $1",
        )
        .bind(name)
        .fetch_one(self.read.pool())
        .await?;
        let held: i64 = row.try_get("held")?;
        let oldest: Option<i64> = row.try_get("oldest")?;
        let reason = match oldest {
            Some(position) => {
                let row = sqlx::query(
                    "SELECT reason FROM projection_held WHERE projection = $1 AND position = $2 \
                     ORDER BY generation DESC",
                )
                .bind(name)
                .bind(position)
                .fetch_optional(self.read.pool())
                .await?;
                row.map(|r| r.try_get::<String, _>("reason")).transpose()?
            }
            None => None,
        };
        self.health
            .report(name, u64::try_from(held).unwrap_or(0), reason.as_deref());
        Ok(())
    }

    /// Every event held back by the live generation of any projection, by projection and
    /// position.
    pub async fn held(&self) -> Result<Vec<HeldEvent>, ProjectionError> {
        self.init().await?;
        let rows = sqlx::query(
            "SELECT h.projection, h.position, h.stream, h.revision, h.event_id, h.event_type, \
             h.reason, h.held_at, h.retries, h.behind FROM projection_held h \
             JOIN projection_state s ON s.name = h.projection AND s.generation = h.generation \
             ORDER BY h.projection, h.position",
        )
        .fetch_all(self.read.pool())
        .await?;
        rows.iter().map(held_from_row).collect()
    }

    /// Applies the held events of the stream of the event `projection` holds at `position`
    /// again, in order (after a fix). Each that applies is released in the transaction that
    /// applies it; the first that fails again stays held with the new reason, and so do the
    /// ones after it.
    pub async fn retry_held(
        &self,
        projection: &str,
        position: u64,
    ) -> Result<RetryReport, ProjectionError> {
        self.init().await?;
        let projection = self.projection(projection)?.clone();
        let stream = self
            .held()
            .await?
            .into_iter()
            .find(|h| h.consumer == projection.name() && h.position == position)
            .map(|h| h.stream)
            .ok_or_else(|| ProjectionError::NothingHeld {
                projection: projection.name().to_string(),
                position,
            })?;
        self.retry_stream(projection.as_ref(), &stream).await
    }

    /// Retries every held stream of every projection.
    pub async fn retry_all_held(&self) -> Result<Vec<RetryReport>, ProjectionError> {
        let mut done: BTreeSet<(String, String)> = BTreeSet::new();
        let mut reports = Vec::new();
        for held in self.held().await? {
            if !done.insert((held.consumer.clone(), held.stream.clone())) {
                continue;
            }
            let projection = self.projection(&held.consumer)?.clone();
            reports.push(self.retry_stream(projection.as_ref(), &held.stream).await?);
        }
        Ok(reports)
    }

    async fn retry_stream(
        &self,
        projection: &dyn Projection,
        stream: &str,
    ) -> Result<RetryReport, ProjectionError> {
        let name = projection.name();
        let mut report = RetryReport {
            consumer: name.to_string(),
            stream: stream.to_string(),
            released: 0,
            still_held: None,
        };
        let mut tx = self.read.begin().await?;
        // Written first: takes the row lock (PostgreSQL) or the write lock (SQLite), so the live
        // runner's batches wait for the retry instead of interleaving with it.
        sqlx::query("UPDATE projection_state SET updated_at = $1 WHERE name = $2")
            .bind(time_to_sql(Utc::now()))
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let generation: i64 =
            sqlx::query("SELECT generation FROM projection_state WHERE name = $1")
                .bind(name)
                .fetch_one(&mut *tx)
                .await?
                .try_get("generation")?;
        let rows = sqlx::query(
            "SELECT position, revision, event_id FROM projection_held \
             WHERE projection = $1 AND generation = $2 AND stream = $3 ORDER BY position",
        )
        .bind(name)
        .bind(generation)
        .bind(stream)
        .fetch_all(&mut *tx)
        .await?;
        for row in rows {
            let position = position_from_sql(row.try_get("position")?)?;
            let revision = position_from_sql(row.try_get("revision")?)?;
            let event_id: String = row.try_get("event_id")?;
            let event = self
                .store
                .read_stream(
                    stream,
                    Direction::Forwards,
                    StreamStart::Revision(revision),
                    1,
                )
                .await?
                .into_iter()
                .next()
                .filter(|e| e.position == position && e.id.to_string() == event_id);
            let outcome = match &event {
                Some(event) => {
                    let mut savepoint = tx.begin().await?;
                    match apply_one(
                        &mut savepoint,
                        projection,
                        generation_from_sql(generation)?,
                        event,
                    )
                    .await
                    {
                        Ok(()) => savepoint.commit().await.map_err(ProjectionError::from),
                        Err(error) => {
                            savepoint.rollback().await?;
                            Err(error)
                        }
                    }
                }
                None => Err(ProjectionError::Corrupt(format!(
                    "the held event at position {position} of {stream} is not in the event store"
                ))),
            };
            match outcome {
                Ok(()) => {
                    sqlx::query(
                        "DELETE FROM projection_held \
                         WHERE projection = $1 AND generation = $2 AND position = $3",
                    )
                    .bind(name)
                    .bind(generation)
                    .bind(position_to_sql(position)?)
                    .execute(&mut *tx)
                    .await?;
                    report.released += 1;
                }
                // Rolled back whole: everything stays held as it was.
                Err(error) if error.is_transient() => return Err(error),
                Err(error) => {
                    let reason = error.to_string();
                    sqlx::query(
                        "UPDATE projection_held SET reason = $1, retries = retries + 1, \
                         behind = NULL WHERE projection = $2 AND generation = $3 AND position = $4",
                    )
                    .bind(reason.as_str())
                    .bind(name)
                    .bind(generation)
                    .bind(position_to_sql(position)?)
                    .execute(&mut *tx)
                    .await?;
                    report.still_held = Some((position, reason));
                    break;
                }
            }
        }
        tx.commit().await?;
        self.publish_held(name).await?;
        Ok(report)
    }

    /// Applies everything recorded so far to every projection; returns the events applied.
    pub async fn catch_up(&self) -> Result<u64, ProjectionError> {
        self.init().await?;
        let mut applied = 0;
        for projection in &self.projections {
            applied += self.catch_up_one(projection.as_ref()).await?;
        }
        Ok(applied)
    }

    /// Applies everything recorded so far to the projection named `name`.
    pub async fn catch_up_projection(&self, name: &str) -> Result<u64, ProjectionError> {
        self.init().await?;
        let projection = self.projection(name)?.clone();
        self.catch_up_one(projection.as_ref()).await
    }

    async fn catch_up_one(&self, projection: &dyn Projection) -> Result<u64, ProjectionError> {
        let name = projection.name();
        let filter = filter_of(projection);
        let mut state = self.load_state(name).await?;
        let head = self
            .refresh_head(projection, state.position, Some(CATCH_UP_HEAD_SCAN_PAGES))
            .await?;
        let since = match state.last_recorded_at {
            Some(at) => Some(at),
            None => self.first_pending_at(projection, state.position).await?,
        };
        self.publish_lag(name, state.position, head, since);
        let mut applied = 0u64;
        loop {
            match self
                .apply_next_page(projection, &filter, &mut state)
                .await?
            {
                NextPage::Empty => break,
                NextPage::Applied(count) => applied += count as u64,
                NextPage::Moved => state = self.load_state(name).await?,
            }
        }
        // Read to the end: caught up.
        let head = self.note_head(name, state.position);
        self.publish_lag(name, state.position, head.min(state.position), None);
        Ok(applied)
    }

    /// Reads the page after `state`'s checkpoint and applies it to the live generation with the
    /// checkpoint, moving `state` and the lag gauges past it.
    async fn apply_next_page(
        &self,
        projection: &dyn Projection,
        filter: &StreamFilter,
        state: &mut State,
    ) -> Result<NextPage, ProjectionError> {
        let name = projection.name();
        let page = self
            .store
            .read_all(AllStart::After(state.position), filter, self.page_size)
            .await?;
        let Some(last) = page.last() else {
            return Ok(NextPage::Empty);
        };
        let (last_position, last_at) = (last.position, last.recorded_at);
        let target = Target::Live {
            generation: state.generation,
        };
        if !self
            .apply_batch(projection, target, state.position, &page)
            .await?
        {
            return Ok(NextPage::Moved);
        }
        state.position = last_position;
        state.last_recorded_at = Some(last_at);
        let head = self.note_head(name, last_position);
        self.publish_lag(name, state.position, head, state.last_recorded_at);
        Ok(NextPage::Applied(page.len()))
    }

    /// Catches up, then follows every projection live until `shutdown` turns true. Failures
    /// (the read store briefly unreachable, an event a projection refuses) are logged and
    /// counted, and that projection resumes from its checkpoint after a pause; the others go
    /// on. Returns when `shutdown` is true or the event store is closed. Fails at once only on
    /// a configuration error (two projections with one name, a bad table name).
    pub async fn run(&self, shutdown: watch::Receiver<bool>) -> Result<(), ProjectionError> {
        self.check_configuration()?;
        if self.init().await.is_ok() {
            // What is already held shows on /readyz from the start (the board may have been
            // attached after `init`).
            for projection in &self.projections {
                if let Err(error) = self.publish_held(projection.name()).await {
                    tracing::warn!(projection = projection.name(), %error, "held events not reported");
                }
            }
        }
        let runs = self
            .projections
            .iter()
            .map(|projection| self.run_one(projection.clone(), shutdown.clone()));
        futures::future::join_all(runs).await;
        Ok(())
    }

    async fn run_one(&self, projection: Arc<dyn Projection>, mut shutdown: watch::Receiver<bool>) {
        let name = projection.name();
        let mut backoff = self.retry.backoff();
        let mut failed_at: Option<u64> = None;
        loop {
            let result = async {
                self.init().await?;
                self.follow(projection.as_ref(), &mut shutdown).await
            }
            .await;
            match result {
                Ok(()) => return,
                Err(error) if error.is_closed() => return,
                Err(error) => {
                    let transient = error.is_transient();
                    tracing::error!(projection = name, error = %error, transient, "projection failed; resuming");
                    metrics::counter!("upline_projection_failures_total", "projection" => name)
                        .increment(1);
                    count_retry(name, transient);
                    // A new outage (it got further since the last failure) starts the back-off
                    // over.
                    let position = self.load_state(name).await.map(|s| s.position).ok();
                    if position.is_some() && position > failed_at && failed_at.is_some() {
                        backoff = self.retry.backoff();
                    }
                    failed_at = position.or(failed_at);
                    let pause = backoff.next().unwrap_or(self.retry.cap);
                    if !pause_unless_shutdown(pause, &mut shutdown).await {
                        return;
                    }
                }
            }
        }
    }

    /// Follows the log live. A subscription only says that something new was committed; the
    /// projection then waits out the linger since its last commit and reads what is there a page
    /// at a time, one transaction per page, until a page comes back short. Polling the
    /// subscription through the linger instead would read the store after every commit (one
    /// read per projection per commit of the writer, the cost seen in the profile); this way a
    /// batch costs the wake-up's read and one read per page, and an event waits at most a linger
    /// plus one batch.
    async fn follow(
        &self,
        projection: &dyn Projection,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), ProjectionError> {
        let name = projection.name();
        let filter = filter_of(projection);
        let mut last_commit: Option<tokio::time::Instant> = None;
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            self.catch_up_one(projection).await?;
            let mut state = self.load_state(name).await?;
            'live: loop {
                let mut news = self
                    .store
                    .subscribe_all(AllStart::After(state.position), filter.clone());
                tokio::select! {
                    next = news.next() => match next {
                        // The subscription ended: catch up and subscribe again (a closed store
                        // fails the catch-up with `Closed`).
                        None => break 'live,
                        Some(Err(error)) => return Err(error.into()),
                        Some(Ok(_)) => {}
                    },
                    changed = shutdown.changed() => {
                        if changed.is_err() || *shutdown.borrow() {
                            return Ok(());
                        }
                        continue 'live;
                    }
                }
                drop(news);
                if let Some(at) = last_commit {
                    tokio::select! {
                        () = tokio::time::sleep_until(at + LIVE_BATCH_LINGER) => {}
                        changed = shutdown.changed() => {
                            if changed.is_err() || *shutdown.borrow() {
                                return Ok(());
                            }
                        }
                    }
                }
                loop {
                    match self
                        .apply_next_page(projection, &filter, &mut state)
                        .await?
                    {
                        NextPage::Empty => break,
                        NextPage::Applied(count) => {
                            last_commit = Some(tokio::time::Instant::now());
                            if count < self.page_size {
                                break;
                            }
                        }
                        // Moved by someone else (a rebuild swapped generations): start over
                        // from the checkpoint as it is now.
                        NextPage::Moved => break 'live,
                    }
                }
            }
        }
    }

    /// Each projection's checkpoint, head and lag (reads forward from each checkpoint to find
    /// the head, so it costs as many reads as the lag). Also sets the lag gauges.
    pub async fn status(&self) -> Result<Vec<ProjectionStatus>, ProjectionError> {
        self.init().await?;
        let mut statuses = Vec::with_capacity(self.projections.len());
        for projection in &self.projections {
            let name = projection.name();
            let state = self.load_state(name).await?;
            let head = self
                .refresh_head(projection.as_ref(), state.position, None)
                .await?
                .max(state.position);
            let since = match state.last_recorded_at {
                Some(at) => Some(at),
                None => {
                    self.first_pending_at(projection.as_ref(), state.position)
                        .await?
                }
            };
            let (lag_events, lag_seconds) = self.publish_lag(name, state.position, head, since);
            statuses.push(ProjectionStatus {
                name,
                generation: state.generation,
                position: state.position,
                head,
                lag_events,
                lag_seconds,
                updated_at: state.updated_at,
                rebuilding: state.rebuilding,
            });
        }
        Ok(statuses)
    }

    /// Rebuilds the projection named `name` (`None`: all, one after the other) into a fresh
    /// generation of tables from position 0, while the current generation keeps answering
    /// queries (and keeps being updated by a runner, if one runs); once caught up with the
    /// store's head, one transaction points the views at the new generation, moves the
    /// checkpoint to it and drops the old tables. `progress` is called after every batch.
    ///
    /// A rebuild that was interrupted is not resumed (the code may have changed since): the
    /// next one drops its tables and starts over. Two rebuilds of one projection at once: the
    /// later one wins and the earlier fails with [`ProjectionError::RebuildSuperseded`].
    pub async fn rebuild(
        &self,
        name: Option<&str>,
        progress: impl Fn(RebuildProgress) + Send + Sync,
    ) -> Result<Vec<RebuildReport>, ProjectionError> {
        self.init().await?;
        let targets: Vec<Arc<dyn Projection>> = match name {
            Some(name) => vec![self.projection(name)?.clone()],
            None => self.projections.clone(),
        };
        let mut reports = Vec::with_capacity(targets.len());
        for projection in targets {
            reports.push(self.rebuild_one(projection.as_ref(), &progress).await?);
        }
        Ok(reports)
    }

    async fn rebuild_one(
        &self,
        projection: &dyn Projection,
        progress: &(impl Fn(RebuildProgress) + Send + Sync),
    ) -> Result<RebuildReport, ProjectionError> {
        let started = Instant::now();
        let name = projection.name();
        let (from_generation, generation) = self.start_rebuild(projection).await?;
        tracing::info!(projection = name, generation, "rebuild started");
        match self
            .build_and_swap(projection, from_generation, generation, started, progress)
            .await
        {
            Ok(report) => {
                tracing::info!(
                    projection = name,
                    generation,
                    events = report.events_applied,
                    "rebuild swapped in"
                );
                Ok(report)
            }
            Err(error) => {
                if !matches!(error, ProjectionError::RebuildSuperseded { .. }) {
                    if let Err(cleanup) = self.abandon_rebuild(projection, generation).await {
                        tracing::warn!(projection = name, error = %cleanup, "could not drop the abandoned generation");
                    }
                }
                Err(error)
            }
        }
    }

    /// Claims the next generation and creates its tables (dropping those of an interrupted
    /// rebuild). Returns (live generation, new generation).
    async fn start_rebuild(
        &self,
        projection: &dyn Projection,
    ) -> Result<(u32, u32), ProjectionError> {
        let name = projection.name();
        loop {
            let state = self.load_state(name).await?;
            let stale = state.rebuilding.map(|r| r.generation);
            let generation = state
                .generation
                .max(stale.unwrap_or(0))
                .checked_add(1)
                .ok_or_else(|| ProjectionError::Overflow {
                    what: format!("generation of {name}"),
                })?;
            let mut tx = self.read.begin().await?;
            let claimed = sqlx::query(
                "UPDATE projection_state SET rebuilding_generation = $1, rebuilding_position = 0, \
                 updated_at = $2 \
                 WHERE name = $3 AND generation = $4 AND COALESCE(rebuilding_generation, 0) = $5",
            )
            .bind(i64::from(generation))
            .bind(time_to_sql(Utc::now()))
            .bind(name)
            .bind(i64::from(state.generation))
            .bind(i64::from(stale.unwrap_or(0)))
            .execute(&mut *tx)
            .await?;
            if affected(&claimed) != 1 {
                tx.rollback().await?;
                continue;
            }
            if let Some(stale) = stale {
                drop_tables(&mut tx, projection, stale).await?;
            }
            drop_tables(&mut tx, projection, generation).await?;
            projection.create_tables(&mut tx, generation).await?;
            tx.commit().await?;
            return Ok((state.generation, generation));
        }
    }

    async fn build_and_swap(
        &self,
        projection: &dyn Projection,
        from_generation: u32,
        generation: u32,
        started: Instant,
        progress: &(impl Fn(RebuildProgress) + Send + Sync),
    ) -> Result<RebuildReport, ProjectionError> {
        let name = projection.name();
        let filter = filter_of(projection);
        let live = self.load_state(name).await?;
        let mut head = self.refresh_head(projection, live.position, None).await?;
        let mut position = 0u64;
        let mut applied = 0u64;
        let mut last_recorded_at = None;
        let report = |position: u64, applied: u64, head: u64, done: bool| {
            let seconds = started.elapsed().as_secs_f64();
            RebuildProgress {
                projection: name,
                generation,
                events_applied: applied,
                events_per_second: if seconds > 0.0 {
                    applied as f64 / seconds
                } else {
                    0.0
                },
                position,
                head,
                remaining: head.saturating_sub(position),
                done,
            }
        };
        progress(report(position, applied, head, false));
        let read_page = |after: u64| {
            self.store
                .read_all(AllStart::After(after), &filter, self.rebuild_page_size)
        };
        let mut page = read_page(position).await?;
        while let Some(last) = page.last() {
            let (last_position, last_at) = (last.position, last.recorded_at);
            let target = Target::Rebuild { generation };
            // The next page is read (on the store's threads) while this one is applied.
            let (applied_now, next) = tokio::join!(
                self.apply_batch(projection, target, position, &page),
                read_page(last_position)
            );
            if !applied_now? {
                return Err(ProjectionError::RebuildSuperseded {
                    projection: name.to_string(),
                    generation,
                });
            }
            position = last_position;
            applied += page.len() as u64;
            last_recorded_at = Some(last_at);
            head = self.note_head(name, position);
            progress(report(position, applied, head, false));
            page = next?;
        }
        // Filled: now the indexes only queries use, each built in one pass.
        let mut tx = self.read.begin().await?;
        execute_all(&mut tx, &projection.query_indexes(generation)).await?;
        tx.commit().await?;

        // Caught up with the head: swap in one transaction. Its first statement locks the
        // projection's row (PostgreSQL) or the database (SQLite), so the live generation cannot
        // move until the swap commits; the events that arrived since the last read are applied
        // inside it, so the new generation is never behind the one it replaces.
        let mut tx = self.read.begin().await?;
        let locked = sqlx::query(
            "UPDATE projection_state SET updated_at = $1 \
             WHERE name = $2 AND generation = $3 AND rebuilding_generation = $4 \
             AND rebuilding_position = $5",
        )
        .bind(time_to_sql(Utc::now()))
        .bind(name)
        .bind(i64::from(from_generation))
        .bind(i64::from(generation))
        .bind(position_to_sql(position)?)
        .execute(&mut *tx)
        .await?;
        if affected(&locked) != 1 {
            tx.rollback().await?;
            return Err(ProjectionError::RebuildSuperseded {
                projection: name.to_string(),
                generation,
            });
        }
        loop {
            let page = self
                .store
                .read_all(AllStart::After(position), &filter, self.page_size)
                .await?;
            let Some(last) = page.last() else { break };
            let (last_position, last_at) = (last.position, last.recorded_at);
            apply_or_hold(&mut tx, projection, generation, &page, true).await?;
            position = last_position;
            applied += page.len() as u64;
            last_recorded_at = Some(last_at);
        }
        sqlx::query(
            "UPDATE projection_state SET generation = $1, position = $2, last_recorded_at = $3, \
             rebuilding_generation = NULL, rebuilding_position = NULL, updated_at = $4 \
             WHERE name = $5",
        )
        .bind(i64::from(generation))
        .bind(position_to_sql(position)?)
        .bind(last_recorded_at.map(time_to_sql))
        .bind(time_to_sql(Utc::now()))
        .bind(name)
        .execute(&mut *tx)
        .await?;
        point_views(&mut tx, projection, generation).await?;
        drop_tables(&mut tx, projection, from_generation).await?;
        tx.commit().await?;

        let head = self.note_head(name, position);
        self.publish_lag(name, position, head, last_recorded_at);
        progress(report(position, applied, head, true));
        Ok(RebuildReport {
            projection: name,
            from_generation,
            generation,
            events_applied: applied,
            position,
            elapsed: started.elapsed(),
        })
    }

    /// Drops the tables of a failed rebuild and clears its state (if it is still this one).
    async fn abandon_rebuild(
        &self,
        projection: &dyn Projection,
        generation: u32,
    ) -> Result<(), ProjectionError> {
        let mut tx = self.read.begin().await?;
        let cleared = sqlx::query(
            "UPDATE projection_state SET rebuilding_generation = NULL, \
             rebuilding_position = NULL, updated_at = $1 \
             WHERE name = $2 AND rebuilding_generation = $3",
        )
        .bind(time_to_sql(Utc::now()))
        .bind(projection.name())
        .bind(i64::from(generation))
        .execute(&mut *tx)
        .await?;
        if affected(&cleared) == 1 {
            drop_tables(&mut tx, projection, generation).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Moves the checkpoint of `target` from `from` to `last` (guarded: `false` if it is no longer
/// at `from`). Written first in the batch's transaction, so it also takes the lock.
async fn move_checkpoint(
    tx: &mut Tx<'_>,
    name: &str,
    target: Target,
    from: u64,
    last: &RecordedEvent,
) -> Result<bool, ProjectionError> {
    let guard = match target {
        Target::Live { generation } => {
            sqlx::query(
                "UPDATE projection_state SET position = $1, updated_at = $2, \
                 last_recorded_at = $3 \
                 WHERE name = $4 AND generation = $5 AND position = $6",
            )
            .bind(position_to_sql(last.position)?)
            .bind(time_to_sql(Utc::now()))
            .bind(time_to_sql(last.recorded_at))
            .bind(name)
            .bind(i64::from(generation))
            .bind(position_to_sql(from)?)
            .execute(&mut **tx)
            .await?
        }
        Target::Rebuild { generation } => {
            sqlx::query(
                "UPDATE projection_state SET rebuilding_position = $1, updated_at = $2 \
                 WHERE name = $3 AND rebuilding_generation = $4 AND rebuilding_position = $5",
            )
            .bind(position_to_sql(last.position)?)
            .bind(time_to_sql(Utc::now()))
            .bind(name)
            .bind(i64::from(generation))
            .bind(position_to_sql(from)?)
            .execute(&mut **tx)
            .await?
        }
    };
    Ok(affected(&guard) == 1)
}

/// Applies `events` to the tables of `generation`, holding back the events of streams already
/// held and (when `careful`) any event failing for a permanent reason, each inside a savepoint.
/// Returns how many were held. Without `careful` the first failure is returned as is (the caller
/// rolls back and tries again carefully).
async fn apply_or_hold(
    tx: &mut Tx<'_>,
    projection: &dyn Projection,
    generation: u32,
    events: &[RecordedEvent],
    careful: bool,
) -> Result<u64, ProjectionError> {
    let name = projection.name();
    let mut held = held_streams(tx, name, generation).await?;
    let mut count = 0;
    let mut run = Vec::with_capacity(events.len());
    for event in events {
        if let Some(&first) = held.get(&event.stream_id) {
            let reason = format!("held behind position {first} of the same stream");
            hold(tx, name, generation, event, &reason, Some(first)).await?;
            count += 1;
            continue;
        }
        if !careful {
            run.push(event);
            continue;
        }
        let mut savepoint = tx.begin().await?;
        match apply_one(&mut savepoint, projection, generation, event).await {
            Ok(()) => savepoint.commit().await?,
            Err(error) if error.is_transient() => return Err(error),
            Err(error) => {
                savepoint.rollback().await?;
                tracing::error!(
                    projection = name,
                    position = event.position,
                    stream = %event.stream_id,
                    event_type = %event.event_type,
                    error = %error,
                    "event held back: it cannot be applied"
                );
                hold(tx, name, generation, event, &error.to_string(), None).await?;
                held.insert(event.stream_id.clone(), event.position);
                count += 1;
            }
        }
    }
    if !run.is_empty() {
        projection.apply_all(tx, generation, &run).await?;
    }
    Ok(count)
}

/// The streams `name` holds in `generation`, with the first held position of each.
async fn held_streams(
    tx: &mut Tx<'_>,
    name: &str,
    generation: u32,
) -> Result<HashMap<String, u64>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT stream, MIN(position) AS first FROM projection_held \
         WHERE projection = $1 AND generation = $2 GROUP BY stream",
    )
    .bind(name)
    .bind(i64::from(generation))
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|row| {
            let stream: String = row.try_get("stream")?;
            let first = position_from_sql(row.try_get("first")?)?;
            Ok((stream, first))
        })
        .collect()
}

async fn hold(
    tx: &mut Tx<'_>,
    name: &str,
    generation: u32,
    event: &RecordedEvent,
    reason: &str,
    behind: Option<u64>,
) -> Result<(), ProjectionError> {
    metrics::counter!("upline_projection_held_events_total", "projection" => name.to_string())
        .increment(1);
    sqlx::query(
        "INSERT INTO projection_held (projection, generation, position, stream, revision, \
         event_id, event_type, reason, held_at, retries, behind) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $10) \
         ON CONFLICT (projection, generation, position) DO NOTHING",
    )
    .bind(name)
    .bind(i64::from(generation))
    .bind(position_to_sql(event.position)?)
    .bind(event.stream_id.as_str())
    .bind(position_to_sql(event.revision)?)
    .bind(event.id.to_string())
    .bind(event.event_type.as_str())
    .bind(reason)
    .bind(time_to_sql(Utc::now()))
    .bind(behind.map(position_to_sql).transpose()?)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn held_from_row(row: &sqlx::any::AnyRow) -> Result<HeldEvent, ProjectionError> {
    let event_id: String = row.try_get("event_id")?;
    let held_at: String = row.try_get("held_at")?;
    let retries: i64 = row.try_get("retries")?;
    let behind: Option<i64> = row.try_get("behind")?;
    Ok(HeldEvent {
        consumer: row.try_get("projection")?,
        position: position_from_sql(row.try_get("position")?)?,
        stream: row.try_get("stream")?,
        revision: position_from_sql(row.try_get("revision")?)?,
        event_id: event_id
            .parse()
            .map_err(|_| ProjectionError::Corrupt(format!("held event id {event_id:?}")))?,
        event_type: row.try_get("event_type")?,
        reason: row.try_get("reason")?,
        since: time_from_sql(&held_at)?,
        retries: u32::try_from(retries).unwrap_or(u32::MAX),
        behind: behind.map(position_from_sql).transpose()?,
    })
}

/// Applies one event to the tables of `generation`, naming the event in any error.
async fn apply_one(
    tx: &mut Tx<'_>,
    projection: &dyn Projection,
    generation: u32,
    event: &RecordedEvent,
) -> Result<(), ProjectionError> {
    projection
        .apply(tx, generation, event)
        .await
        .map_err(|error| match error {
            error @ ProjectionError::InvalidEvent { .. } => error,
            error => ProjectionError::Apply {
                projection: projection.name().to_string(),
                position: event.position,
                stream: event.stream_id.clone(),
                event_type: event.event_type.clone(),
                source: Box::new(error),
            },
        })
}

/// Points the views of `projection` at `generation`.
async fn point_views(
    tx: &mut Tx<'_>,
    projection: &dyn Projection,
    generation: u32,
) -> Result<(), ProjectionError> {
    for logical in projection.tables() {
        sqlx::query(&format!("DROP VIEW IF EXISTS {logical}"))
            .execute(&mut **tx)
            .await?;
        sqlx::query(&format!(
            "CREATE VIEW {logical} AS SELECT * FROM {}",
            table(logical, generation)
        ))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Drops the tables of `generation` (if they exist).
async fn drop_tables(
    tx: &mut Tx<'_>,
    projection: &dyn Projection,
    generation: u32,
) -> Result<(), ProjectionError> {
    for logical in projection.tables() {
        sqlx::query(&format!(
            "DROP TABLE IF EXISTS {}",
            table(logical, generation)
        ))
        .execute(&mut **tx)
        .await?;
    }
    // What that generation held goes with its tables.
    sqlx::query("DELETE FROM projection_held WHERE projection = $1 AND generation = $2")
        .bind(projection.name())
        .bind(i64::from(generation))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn generation_from_sql(value: i64) -> Result<u32, ProjectionError> {
    u32::try_from(value).map_err(|_| ProjectionError::Corrupt(format!("generation {value}")))
}
