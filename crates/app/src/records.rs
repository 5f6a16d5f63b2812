//! Events the application layer records besides the domain aggregates' own: published plans,
//! customer enrolments, commission postings on distributor streams, parked orders and
//! checkpoints. Past tense, externally tagged, like every event (see `upline_domain::events`).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use upline_domain::events::DomainEvent;
use upline_domain::ids::DistributorId;
use upline_domain::money::Currency;
use upline_domain::plan::CommissionPlan;
use upline_platforms::model::OrderUpdate;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlanEvent {
    PlanPublished {
        plan: CommissionPlan,
        content_hash: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CustomerEvent {
    /// A customer is enrolled with the first distributor who refers them (or explicitly).
    CustomerEnrolled {
        distributor_id: DistributorId,
        enrolled_at: DateTime<Utc>,
    },
}

/// Where a posting came from: one commission event of one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostingSource {
    pub order_stream: String,
    /// The revision of the order event that caused the posting.
    pub order_revision: u64,
    /// `CommissionCalculated` or `CommissionRecalculated`.
    pub order_event: String,
}

/// What a distributor's stream receives for each commission change on an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PostingEvent {
    CommissionEarned {
        source: PostingSource,
        currency: Currency,
        #[serde(with = "upline_domain::money::decimal")]
        amount: Decimal,
        level: Option<u32>,
        plan_version: String,
    },
    /// `amount` is positive: what is taken back.
    CommissionReversed {
        source: PostingSource,
        currency: Currency,
        #[serde(with = "upline_domain::money::decimal")]
        amount: Decimal,
        plan_version: String,
    },
}

impl PostingEvent {
    pub const EARNED: &'static str = "CommissionEarned";
    pub const REVERSED: &'static str = "CommissionReversed";
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ParkingEvent {
    /// An update that could not be processed now, kept whole so that it can be retried after the
    /// fix (a SKU mapped, a distributor registered, a plan published).
    OrderParked {
        update: Box<OrderUpdate>,
        reason: String,
        parked_at: DateTime<Utc>,
        source: String,
    },
    /// A retry failed again; the update stays parked.
    ParkedRetryFailed {
        reason: String,
        retried_at: DateTime<Utc>,
    },
    /// Every parked update of the order went through.
    ParkedOrderResolved { resolved_at: DateTime<Utc> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckpointEvent {
    CheckpointRecorded { position: u64 },
}

macro_rules! version_1 {
    ($($t:ty),*) => {$(
        impl DomainEvent for $t {
            fn schema_version(&self) -> u16 {
                1
            }
        }
    )*};
}
version_1!(
    PlanEvent,
    CustomerEvent,
    PostingEvent,
    ParkingEvent,
    CheckpointEvent
);
