//! `upline-projections`: the read side. Projections turn the event log into tables that
//! dashboards, finance and the gRPC API query: the double-entry ledger (here), reconciliation,
//! BI and the hierarchy read model.
//!
//! * [`ReadStore`]: where the tables live. Embedded SQLite in the data directory
//!   (`data/read.sqlite`, the default) or PostgreSQL (`--read-store postgres://...`), one API
//!   and one set of migrations through `sqlx::Any`. Amounts are exact: BIGINT millionths in
//!   columns ending `_e6` (see [`sql`]).
//! * [`Projection`]: one read model: its stream prefixes, its tables and how an event changes
//!   them.
//! * [`ProjectionRunner`]: catches up from each projection's checkpoint and follows live; each
//!   batch of events and its checkpoint commit in one transaction, so nothing counts twice;
//!   reports lag as metrics; [`ProjectionRunner::rebuild`] builds fresh tables and swaps them in
//!   while queries keep answering; [`ProjectionRunner::status`] shows checkpoints and lag.
//!
//! ```no_run
//! # async fn demo(store: std::sync::Arc<dyn upline_store::EventStore>) -> Result<(), upline_projections::ProjectionError> {
//! let runner = upline_projections::open_default(store, std::path::Path::new("data"), None).await?;
//! runner.catch_up().await?;
//! let ledger = upline_projections::LedgerQuery::new(runner.read_store().clone());
//! for balance in ledger.top_balances(10).await? {
//!     println!("{} {} {}", balance.distributor_id, balance.balance, balance.currency);
//! }
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use upline_store::EventStore;

pub mod bi;
pub mod error;
pub mod hierarchy;
pub mod ledger;
pub mod projection;
pub mod reconciliation;
pub mod runner;
mod shared;
pub mod sql;
pub mod store;

pub use error::ProjectionError;
pub use ledger::{Balance, LedgerLine, LedgerPage, LedgerProjection, LedgerQuery};
pub use projection::Projection;
pub use runner::{
    ProjectionRunner, ProjectionStatus, RebuildProgress, RebuildReport, Rebuilding,
    DEFAULT_PAGE_SIZE,
};
pub use sql::Tx;
pub use store::{Engine, ReadStore};

/// The read store's file name in the data directory.
pub const DEFAULT_READ_STORE_FILE: &str = "read.sqlite";

/// Where the default read store lives: `{data_dir}/read.sqlite`.
pub fn default_read_store_path(data_dir: &Path) -> PathBuf {
    data_dir.join(DEFAULT_READ_STORE_FILE)
}

/// Connects to the read store: `read_store` (a path, `sqlite:` or `postgres://` URL) when
/// given, else `{data_dir}/read.sqlite`.
pub async fn open_read_store(
    data_dir: &Path,
    read_store: Option<&str>,
) -> Result<ReadStore, ProjectionError> {
    match read_store.map(str::trim).filter(|s| !s.is_empty()) {
        Some(location) => ReadStore::connect(location).await,
        None => {
            let path = default_read_store_path(data_dir);
            ReadStore::connect(&path.to_string_lossy()).await
        }
    }
}

/// Every projection upline runs, in the order they are caught up and rebuilt (each has its own
/// checkpoint, so the order is only that of `status` and `rebuild --all`).
pub fn all_projections(history: Arc<dyn EventStore>) -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(LedgerProjection),
        Arc::new(reconciliation::ReconciliationProjection::new(
            history.clone(),
        )),
        Arc::new(bi::BiProjection::new(history)),
        Arc::new(hierarchy::HierarchyProjection),
    ]
}

/// The runner of [`all_projections`] over `store`, on the read store chosen as in
/// [`open_read_store`], registered (tables, views and checkpoints created if new).
pub async fn open_default(
    store: Arc<dyn EventStore>,
    data_dir: &Path,
    read_store: Option<&str>,
) -> Result<ProjectionRunner, ProjectionError> {
    let read = open_read_store(data_dir, read_store).await?;
    let runner = ProjectionRunner::new(store.clone(), read, all_projections(store));
    runner.init().await?;
    Ok(runner)
}
