//! The hierarchy snapshot: the upline of an order's distributor as it stood at the order's time.
//!
//! It is recorded inside the commission calculation (the seed's `calc_snapshot_json`), so replay
//! never depends on today's network. Its content hash lets an auditor check that the recorded
//! snapshot is the one the amounts were computed from.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::{DistributorId, RankName};

pub const SNAPSHOT_SCHEMA_VERSION: u16 = 1;

/// A distributor's standing in the company.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DistributorStatus {
    Active,
    Inactive,
    Suspended,
    Terminated,
}

impl DistributorStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            DistributorStatus::Active => "active",
            DistributorStatus::Inactive => "inactive",
            DistributorStatus::Suspended => "suspended",
            DistributorStatus::Terminated => "terminated",
        }
    }
}

impl std::str::FromStr for DistributorStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "active" => Ok(DistributorStatus::Active),
            "inactive" => Ok(DistributorStatus::Inactive),
            "suspended" => Ok(DistributorStatus::Suspended),
            "terminated" => Ok(DistributorStatus::Terminated),
            other => Err(format!(
                "unknown status {other:?} (active, inactive, suspended, terminated)"
            )),
        }
    }
}

/// What the commission plan needs from the network: how many paying levels, and which statuses
/// use one up (under compression, members without a qualifying status are skipped for free).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRequest {
    /// The deepest level the plan can pay.
    pub levels: u32,
    pub qualifying_statuses: Vec<DistributorStatus>,
    pub compression: bool,
}

impl SnapshotRequest {
    /// Whether a member with this status uses up one of the plan's levels: always without
    /// compression; under compression only when the status qualifies.
    pub fn uses_level(&self, status: DistributorStatus) -> bool {
        !self.compression || self.qualifying_statuses.contains(&status)
    }
}

/// One member of the upline chain, as they stood at the snapshot's time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMember {
    pub distributor_id: DistributorId,
    /// Hops from the order's distributor: 0 is the distributor, 1 their sponsor, and so on.
    pub depth: u32,
    pub status: DistributorStatus,
    pub rank: RankName,
}

/// The upline chain at time `at`, from the order's distributor upward.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HierarchySnapshot {
    pub schema_version: u16,
    pub at: DateTime<Utc>,
    pub distributor_id: DistributorId,
    /// Ordered by depth, starting at depth 0.
    pub members: Vec<SnapshotMember>,
    /// True when the walk ended at the top of the network rather than at the plan's depth.
    pub reached_top: bool,
    /// Hex SHA-256 of the canonical JSON of every other field.
    pub content_hash: String,
}

#[derive(Serialize)]
struct HashedContent<'a> {
    schema_version: u16,
    at: &'a DateTime<Utc>,
    distributor_id: &'a DistributorId,
    members: &'a [SnapshotMember],
    reached_top: bool,
}

impl HierarchySnapshot {
    pub fn new(
        at: DateTime<Utc>,
        distributor_id: DistributorId,
        members: Vec<SnapshotMember>,
        reached_top: bool,
    ) -> HierarchySnapshot {
        let mut snapshot = HierarchySnapshot {
            schema_version: SNAPSHOT_SCHEMA_VERSION,
            at,
            distributor_id,
            members,
            reached_top,
            content_hash: String::new(),
        };
        snapshot.content_hash = snapshot.compute_hash();
        snapshot
    }

    /// The hash of the content as it is now; equal to `content_hash` unless it was tampered with.
    pub fn compute_hash(&self) -> String {
        let content = HashedContent {
            schema_version: self.schema_version,
            at: &self.at,
            distributor_id: &self.distributor_id,
            members: &self.members,
            reached_top: self.reached_top,
        };
        // Serialising plain structs of strings and integers cannot fail.
        let bytes = serde_json::to_vec(&content).unwrap_or_default();
        hex::encode(Sha256::digest(bytes))
    }

    pub fn verify(&self) -> bool {
        self.compute_hash() == self.content_hash
    }
}
