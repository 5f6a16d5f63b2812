//! upline's application layer: between the HTTP/gRPC edges and the pure domain. It reads and
//! appends events through the `upline_store::EventStore` port, keeps the company model in memory,
//! turns platform updates into order commands, parks what cannot be processed now, and posts
//! commissions to distributor streams exactly once. Its consumers (the inbox worker, the
//! postings) retry transient failures with back-off and hold permanent ones aside
//! ([`consumer`], [`quarantine`]): one event never stops everything.

pub mod attribution;
pub mod company;
pub mod consumer;
pub mod error;
pub mod eventio;
pub mod inbox;
pub mod orders;
pub mod postings;
pub mod quarantine;
pub mod records;
pub mod streams;
pub mod worker;

pub use error::AppError;
pub use eventio::Provenance;
pub use orders::{App, AppConfig, ParkedOrder, UpdateOutcome};
pub use postings::CommissionPostings;
