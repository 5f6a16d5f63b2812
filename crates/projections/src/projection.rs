//! The projection trait: what the runner needs from each read model.

use upline_store::{RecordedEvent, StreamFilter};

use crate::error::ProjectionError;
use crate::sql::Tx;

/// A read model built from the event log.
///
/// The runner calls [`Projection::apply`] for every event of the streams it reads, in global
/// position order, inside a transaction that also moves the projection's checkpoint: an event's
/// rows and the checkpoint past it commit together, so after a crash the event is applied again
/// only if its rows were not committed either. `apply` must still be idempotent where it can be
/// (insert-or-ignore keyed on the event's position): tests and tools may re-apply events.
///
/// Tables are versioned by generation: the rows live in `{logical}_g{generation}` (see
/// [`crate::sql::table`]) and queries read views named by the logical table, pointed at the live
/// generation. A rebuild creates generation g+1, applies every event from position 0 into it
/// while g keeps being served, then swaps the views in one transaction and drops g.
///
/// Everything `apply` writes must be a function of the events alone (use the event's
/// `recorded_at`, never the clock): a rebuild then gives identical rows.
#[async_trait::async_trait]
pub trait Projection: Send + Sync {
    /// Stable name: the checkpoint key, and used in `upline projections rebuild NAME`.
    fn name(&self) -> &'static str;
    /// The streams it reads (prefixes), e.g. ["order-", "commissions-", "parked-"].
    fn stream_prefixes(&self) -> Vec<String>;
    /// Its tables, by logical name. Queries go through views of these names; a rebuild writes
    /// fresh physical tables and swaps the views (see below).
    fn tables(&self) -> &'static [&'static str];
    /// Creates its physical tables for generation `g` (table name = format!("{logical}_g{g}")).
    async fn create_tables(&self, tx: &mut Tx<'_>, generation: u32) -> Result<(), ProjectionError>;
    /// The DDL of its indexes that only queries read, never [`apply`], for generation `g`. A
    /// fresh generation gets them with its tables; a rebuild creates them once it has filled
    /// the tables, before it swaps them in: one sort of the finished table instead of an
    /// insertion into each index for every row (a third of the ledger's rebuild).
    ///
    /// [`apply`]: Projection::apply
    fn query_indexes(&self, _generation: u32) -> Vec<String> {
        Vec::new()
    }
    /// Applies one event, writing into the tables of generation `g`.
    async fn apply(
        &self,
        tx: &mut Tx<'_>,
        generation: u32,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError>;
    /// Applies a run of events (global position order, none of them held) as [`apply`] would
    /// one after the other, leaving the same rows. A projection overrides it to fold each of
    /// its keys once per run and write each row once; the default applies them one by one.
    /// When it fails for a permanent reason the runner rolls back and applies the run again
    /// event by event with [`apply`], so that only the failing event is held back.
    ///
    /// [`apply`]: Projection::apply
    async fn apply_all(
        &self,
        tx: &mut Tx<'_>,
        generation: u32,
        events: &[&RecordedEvent],
    ) -> Result<(), ProjectionError> {
        for event in events {
            self.apply(tx, generation, event).await?;
        }
        Ok(())
    }
}

/// The `$all` filter of a projection.
pub fn filter_of(projection: &dyn Projection) -> StreamFilter {
    StreamFilter {
        stream_prefixes: projection.stream_prefixes(),
    }
}
