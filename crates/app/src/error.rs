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
    Store(StoreError),
    #[error("a stored event could not be read: {0}")]
    Codec(CodecError),
    /// A business rule refused the command.
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
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

// Written out rather than `#[from]`: the message already carries the inner error, and a source
// link would make error chains print it twice.
impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        AppError::Store(e)
    }
}

impl From<CodecError> for AppError {
    fn from(e: CodecError) -> Self {
        AppError::Codec(e)
    }
}

impl AppError {
    /// True when retrying the same work later may succeed without anyone fixing anything.
    pub fn is_transient(&self) -> bool {
        matches!(self, AppError::Store(_) | AppError::TooManyConflicts { .. })
    }
}
