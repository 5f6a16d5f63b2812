//! From upline's errors to gRPC status codes. Every message starts with the request field it is
//! about (`sponsor_id: ...`), or with the thing addressed (`order: ...`) when no field is at fault.
//!
//! | code | when |
//! |---|---|
//! | INVALID_ARGUMENT | a malformed field: id, amount, time, enum, plan document, order lines |
//! | NOT_FOUND | the distributor, order or parked order addressed does not exist |
//! | ALREADY_EXISTS | a different fact is already recorded under the same key (command id, distributor, referral code, plan version, SKU mapping at a time, change at a time, customer enrolment, order copy, refund id) |
//! | FAILED_PRECONDITION | another business rule refused the command, or the order was parked |
//! | ABORTED | a concurrency conflict that outlasted the retries: safe to retry |
//! | RESOURCE_EXHAUSTED | a store or network bound was reached |
//! | UNAVAILABLE | the store is closed or failing: retry later |
//! | INTERNAL | a stored event could not be read, or a bug |

use std::fmt::Display;

use tonic::Status;
use upline_app::AppError;
use upline_domain::catalog::CatalogError;
use upline_domain::network::NetworkError;
use upline_domain::order::OrderError;
use upline_domain::plan::PlanBookError;
use upline_store::StoreError;

pub(crate) fn invalid(field: &str, message: impl Display) -> Status {
    Status::invalid_argument(format!("{field}: {message}"))
}

pub(crate) fn not_found(field: &str, message: impl Display) -> Status {
    Status::not_found(format!("{field}: {message}"))
}

pub(crate) fn precondition(field: &str, message: impl Display) -> Status {
    Status::failed_precondition(format!("{field}: {message}"))
}

pub(crate) fn exists(field: &str, message: impl Display) -> Status {
    Status::already_exists(format!("{field}: {message}"))
}

pub(crate) fn store_error(e: StoreError) -> Status {
    let message = format!("event store: {e}");
    match e {
        StoreError::WrongExpectedRevision { .. } | StoreError::NotAttempted { .. } => {
            Status::aborted(format!("{message}; safe to retry"))
        }
        StoreError::Closed | StoreError::Database { .. } => Status::unavailable(message),
        StoreError::LimitExceeded { .. } => Status::resource_exhausted(message),
        StoreError::InvalidStreamName { .. } => Status::invalid_argument(message),
        StoreError::InvalidEvent { .. }
        | StoreError::InvalidFilter { .. }
        | StoreError::EmptyAppend { .. } => Status::internal(message),
    }
}

pub(crate) fn app_error(e: AppError) -> Status {
    match e {
        AppError::Store(e) => store_error(e),
        AppError::Codec(e) => Status::internal(format!("a stored event could not be read: {e}")),
        // A bug, not the caller's fault: the decided event would not have read back, so it
        // was refused before the append and nothing was recorded.
        e @ AppError::WouldNotReadBack { .. } => Status::internal(e.to_string()),
        AppError::Network(e) => network_error(e),
        AppError::Catalog(e) => catalog_error(e),
        AppError::Plan(e) => plan_error(e),
        e @ AppError::CustomerEnrolledElsewhere { .. } => exists("customer_id", e),
        e @ AppError::TooManyConflicts { .. } => {
            Status::aborted(format!("order: {e}; nothing was recorded, safe to retry"))
        }
        e @ AppError::StreamTooLong { .. } => Status::resource_exhausted(e.to_string()),
        e @ AppError::NothingParked(_) => not_found("order_stream", e),
        e @ (AppError::NothingHeld(_) | AppError::HeldEventGone { .. }) => {
            Status::not_found(e.to_string())
        }
    }
}

pub(crate) fn network_error(e: NetworkError) -> Status {
    use NetworkError as N;
    match &e {
        N::UnknownDistributor { .. } => not_found("distributor_id", e),
        N::UnknownSponsor { .. }
        | N::SponsorNotYetRegistered { .. }
        | N::SponsorTerminated { .. }
        | N::SponsorCycle { .. }
        | N::SponsorRequired { .. } => precondition("sponsor_id", e),
        N::ReferralCodeTaken { .. } => exists("referral_codes", e),
        N::TooManyReferralCodes { .. } => invalid("referral_codes", e),
        N::InvalidCountry { .. } => invalid("country", e),
        N::AlreadyRegisteredDifferently { .. } => exists("distributor_id", e),
        N::ChangeBeforeRegistration { .. } => precondition("effective_at", e),
        N::AmbiguousHistory { .. } => exists("effective_at", e),
        N::NotRegisteredAt { .. } => not_found("distributor_id", e),
        N::UplineTooLong { .. } => precondition("distributor_id", e),
        N::NetworkFull { .. } => Status::resource_exhausted(e.to_string()),
    }
}

pub(crate) fn catalog_error(e: CatalogError) -> Status {
    match &e {
        CatalogError::EmptyField { field, .. }
        | CatalogError::FieldTooLong { field, .. }
        | CatalogError::NegativeVolume { field, .. }
        | CatalogError::TooPrecise { field, .. } => invalid(&format!("mapping.{field}"), &e),
        CatalogError::ConflictingMapping { .. } => exists("mapping.effective_from", e),
    }
}

pub(crate) fn plan_error(e: PlanBookError) -> Status {
    match &e {
        PlanBookError::Invalid { errors, .. } => invalid(
            "plan_toml",
            errors
                .errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        ),
        PlanBookError::VersionConflict { .. } => exists("plan_toml", e),
        PlanBookError::EffectiveFromTaken { .. } => precondition("plan_toml", e),
    }
}

/// An order error that refuses the request itself (as opposed to one that parks the update
/// until the company is fixed: an unmapped SKU, no plan, an unknown distributor). `None` for the
/// latter.
pub(crate) fn order_request_error(e: &OrderError) -> Option<Status> {
    use OrderError as O;
    Some(match e {
        O::InvalidOrder(inner) => invalid("order.lines", inner),
        O::ConflictingCopy { .. } => exists("order.updated_at", e),
        O::ChangedAfterCalculation { field } => precondition(&format!("order.{field}"), e),
        O::ConflictingRefund { .. } => exists("refund_id", e),
        O::RefundOfUnknownLine { .. } => invalid("lines", e),
        O::RefundQuantityNotPositive { .. } => invalid("lines", e),
        O::RefundStatedNetNegative { .. } => invalid("lines", e),
        O::RefundExceedsLine { .. } => precondition("lines", e),
        O::RefundAmountOutOfRange { .. } => precondition("net_amount", e),
        O::WrongOrder { .. } => Status::internal(e.to_string()),
        O::NoPlanInForce { .. }
        | O::RecordedPlanUnknown { .. }
        | O::NotTheRecordedPlan { .. }
        | O::UnmappedSku { .. }
        | O::Hierarchy { .. }
        | O::Engine(_) => return None,
    })
}

/// The answer to an order update that was parked: an error, so that a synchronous caller knows
/// the order is not recorded yet, but the update is kept.
pub(crate) fn parked(stream: &str, reason: &str) -> Status {
    Status::failed_precondition(format!(
        "order: parked, not recorded: {reason}. The update is kept (parked-{stream}); fix the \
         cause (map the SKU, register the distributor, publish a plan) and call RetryParked \
         with order_stream {stream}"
    ))
}
