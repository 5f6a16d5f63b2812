//! The application layer's errors.

use upline_domain::catalog::CatalogError;
use upline_domain::events::CodecError;
use upline_domain::network::NetworkError;
use upline_domain::plan::PlanBookError;
use upline_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The store failed or refused; usually worth retrying later.
    #[error("event store: {0}")]
    Store(#[from] StoreError),
    #[error("a stored event could not be read: {0}")]
    Codec(#[from] CodecError),
    /// A business rule refused the command.
    #[error("{0}")]
    Network(#[from] NetworkError),
    #[error("{0}")]
    Catalog(#[from] CatalogError),
    #[error("{0}")]
    Plan(#[from] PlanBookError),
    #[error("customer {customer} is already enrolled with {existing}, not {requested}")]
    CustomerEnrolledElsewhere {
        customer: String,
        existing: String,
        requested: String,
    },
    #[error("order stream {stream} kept changing under us after {attempts} attempts")]
    TooManyConflicts { stream: String, attempts: u32 },
    #[error("stream {stream} has more than {max} events")]
    StreamTooLong { stream: String, max: usize },
    #[error("nothing is parked for {0}")]
    NothingParked(String),
}

impl AppError {
    /// True when retrying the same work later may succeed without anyone fixing anything.
    pub fn is_transient(&self) -> bool {
        matches!(self, AppError::Store(_) | AppError::TooManyConflicts { .. })
    }
}
