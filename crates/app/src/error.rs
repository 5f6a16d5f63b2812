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
    /// An event about to be appended does not decode back into its own type: appending it would
    /// stop every consumer that reads it, so nothing is appended.
    #[error("{event_type} for {stream} would not read back, so it was not appended: {reason}")]
    WouldNotReadBack {
        stream: String,
        event_type: String,
        reason: String,
    },
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
    #[error("nothing is held as {0}")]
    NothingHeld(String),
    /// A held event is no longer where the quarantine says it was.
    #[error("the held event at position {position} of {stream} is not in the store")]
    HeldEventGone { stream: String, position: u64 },
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
    /// True when retrying the same work later may succeed without anyone fixing anything: the
    /// store unavailable, failing on I/O or timing out, or a concurrency conflict. Everything
    /// else (an unreadable event, a limit exceeded, a business refusal) fails the same way on
    /// every retry, so a consumer records it with its reason and moves on.
    pub fn is_transient(&self) -> bool {
        match self {
            AppError::Store(e) => e.is_transient(),
            AppError::TooManyConflicts { .. } => true,
            AppError::Codec(_)
            | AppError::WouldNotReadBack { .. }
            | AppError::Network(_)
            | AppError::Catalog(_)
            | AppError::Plan(_)
            | AppError::CustomerEnrolledElsewhere { .. }
            | AppError::StreamTooLong { .. }
            | AppError::NothingParked(_)
            | AppError::NothingHeld(_)
            | AppError::HeldEventGone { .. } => false,
        }
    }
}
