//! The distributor network: who sponsors whom, with what status and rank, and since when.
//!
//! Every attribute that can change (sponsor, status, rank) is effective-dated: a change carries
//! the business time it takes effect, supplied by the caller, and may be back-dated. The history
//! of each attribute is a sorted list of `(effective_at, value)`, so the value at any time is a
//! binary search and a back-dated change is an ordered insert. A commission calculation asks for
//! the upline as it stood at the order's time ([`Network::snapshot_at`]), which is why a later
//! change never alters a calculation already made.
//!
//! Changes are facts of the form "from `t` on, the value is `v`". Recording the same fact twice
//! changes nothing, so a command whose fact is already in history decides no event. A change to
//! the value already in force at `t` but from another `t` is a new fact: it is recorded, because
//! a later back-dated change could otherwise extend further than the caller said.
//!
//! Memory: distributors are interned to `u32` indices; a record is 32 bytes, and the change
//! lists live behind one optional box that stays empty for the many distributors who never
//! change. Ids and referral codes are stored once, in vectors, and found through open-addressing
//! tables of `u32` positions (a `HashMap` would keep a second copy of every key and twice the
//! slot size). The upline walk follows indices and never scans the network.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::events::DomainEvent;
use crate::ids::{DistributorId, RankName, ReferralCode};
use crate::snapshot::{DistributorStatus, HierarchySnapshot, SnapshotMember, SnapshotRequest};

/// The most referral codes one distributor may hold. A bound keeps a hostile or mistaken
/// registration from claiming a whole namespace of codes.
pub const MAX_REFERRAL_CODES: usize = 16;

/// The most sponsor links one walk may follow. Real networks are at most a few hundred levels
/// deep, and cycles are refused by both `decide` and `apply`, so this is a guard: it caps the
/// work and the snapshot size of one walk, and should a history ever hold a cycle (or an absurdly
/// deep chain) the walk fails with a typed error instead of looping forever.
pub const MAX_UPLINE_WALK: u32 = 10_000;

/// "No sponsor" in a record's sponsor slot (the top of the network). Never a valid index: the
/// network refuses to grow to `u32::MAX` members.
const NO_SPONSOR: u32 = u32::MAX;

/// What a caller asks of the network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DistributorCommand {
    RegisterDistributor {
        distributor_id: DistributorId,
        /// `None` only for the top of the network (the company); only one top is allowed.
        sponsor: Option<DistributorId>,
        /// Treated as a set: duplicates are dropped, order is kept.
        referral_codes: Vec<ReferralCode>,
        /// ISO 3166-1 alpha-2; two ASCII letters, stored upper-case.
        country: String,
        status: DistributorStatus,
        rank: RankName,
        joined_at: DateTime<Utc>,
    },
    ChangeSponsor {
        distributor_id: DistributorId,
        sponsor: DistributorId,
        effective_at: DateTime<Utc>,
    },
    ChangeStatus {
        distributor_id: DistributorId,
        status: DistributorStatus,
        effective_at: DateTime<Utc>,
    },
    ChangeRank {
        distributor_id: DistributorId,
        rank: RankName,
        effective_at: DateTime<Utc>,
    },
}

/// What the network recorded. The `previous_*` fields say what was in force just before
/// `effective_at` when the change was decided; they are for auditors, and replay does not need
/// them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DistributorEvent {
    DistributorRegistered {
        distributor_id: DistributorId,
        sponsor: Option<DistributorId>,
        referral_codes: Vec<ReferralCode>,
        country: String,
        status: DistributorStatus,
        rank: RankName,
        joined_at: DateTime<Utc>,
    },
    SponsorChanged {
        distributor_id: DistributorId,
        sponsor: DistributorId,
        previous_sponsor: Option<DistributorId>,
        effective_at: DateTime<Utc>,
    },
    StatusChanged {
        distributor_id: DistributorId,
        status: DistributorStatus,
        previous_status: DistributorStatus,
        effective_at: DateTime<Utc>,
    },
    RankChanged {
        distributor_id: DistributorId,
        rank: RankName,
        previous_rank: RankName,
        effective_at: DateTime<Utc>,
    },
}

impl DomainEvent for DistributorEvent {
    fn schema_version(&self) -> u16 {
        1
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    #[error("distributor {distributor_id} is not registered")]
    UnknownDistributor { distributor_id: DistributorId },
    #[error("sponsor {sponsor} of distributor {distributor_id} is not registered")]
    UnknownSponsor {
        distributor_id: DistributorId,
        sponsor: DistributorId,
    },
    #[error(
        "sponsor {sponsor} of distributor {distributor_id} joined at {sponsor_joined_at}, \
         after {at}"
    )]
    SponsorNotYetRegistered {
        distributor_id: DistributorId,
        sponsor: DistributorId,
        at: DateTime<Utc>,
        sponsor_joined_at: DateTime<Utc>,
    },
    #[error("sponsor {sponsor} of distributor {distributor_id} is terminated at {at}")]
    SponsorTerminated {
        distributor_id: DistributorId,
        sponsor: DistributorId,
        at: DateTime<Utc>,
    },
    #[error(
        "sponsor {sponsor} for distributor {distributor_id} would make a sponsor cycle at {at}"
    )]
    SponsorCycle {
        distributor_id: DistributorId,
        sponsor: DistributorId,
        /// The first time at which the cycle would exist.
        at: DateTime<Utc>,
    },
    #[error(
        "distributor {distributor_id} has no sponsor, but {top} is already the top of the network"
    )]
    SponsorRequired {
        distributor_id: DistributorId,
        top: DistributorId,
    },
    #[error("referral code {referral_code} for distributor {distributor_id} is taken by {owner}")]
    ReferralCodeTaken {
        distributor_id: DistributorId,
        referral_code: ReferralCode,
        owner: DistributorId,
    },
    #[error(
        "distributor {distributor_id} has {count} referral codes; at most {MAX_REFERRAL_CODES} \
         are allowed"
    )]
    TooManyReferralCodes {
        distributor_id: DistributorId,
        count: usize,
    },
    #[error("country {country:?} of distributor {distributor_id} is not two ASCII letters")]
    InvalidCountry {
        distributor_id: DistributorId,
        country: String,
    },
    #[error("distributor {distributor_id} is already registered with a different {field}")]
    AlreadyRegisteredDifferently {
        distributor_id: DistributorId,
        field: &'static str,
    },
    #[error(
        "{field} change of distributor {distributor_id} at {effective_at} is dated before they \
         joined at {joined_at}"
    )]
    ChangeBeforeRegistration {
        distributor_id: DistributorId,
        field: &'static str,
        effective_at: DateTime<Utc>,
        joined_at: DateTime<Utc>,
    },
    #[error(
        "distributor {distributor_id} already has a different {field} from {effective_at}; \
         two values at one time would make history ambiguous"
    )]
    AmbiguousHistory {
        distributor_id: DistributorId,
        field: &'static str,
        effective_at: DateTime<Utc>,
    },
    #[error("distributor {distributor_id} had not joined at {at} (joined at {joined_at})")]
    NotRegisteredAt {
        distributor_id: DistributorId,
        at: DateTime<Utc>,
        joined_at: DateTime<Utc>,
    },
    #[error(
        "upline of distributor {distributor_id} at {at} is longer than {MAX_UPLINE_WALK} \
         links: deeper than any real network, or a corrupted history"
    )]
    UplineTooLong {
        distributor_id: DistributorId,
        at: DateTime<Utc>,
    },
    #[error("the network cannot hold more than {max} distributors")]
    NetworkFull { max: u32 },
}

/// A distributor's change lists, boxed so that a distributor who never changes costs nothing.
/// Each list is sorted by time, strictly increasing, and never holds an entry at `joined_at`
/// (the registration's values are the record's initial values).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Changes {
    sponsor: Vec<(DateTime<Utc>, u32)>,
    status: Vec<(DateTime<Utc>, DistributorStatus)>,
    rank: Vec<(DateTime<Utc>, u32)>,
}

/// One distributor, as registered plus their changes (32 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    joined_at: DateTime<Utc>,
    /// Sponsor at `joined_at`, or [`NO_SPONSOR`].
    sponsor: u32,
    /// Rank at `joined_at`, an index into `Network::rank_names`.
    rank: u32,
    status: DistributorStatus,
    /// Upper-case ASCII letters.
    country: [u8; 2],
    referral_code_count: u8,
    changes: Option<Box<Changes>>,
}

/// The value at `t` of an attribute whose registration value is `initial` (the caller has
/// checked that `t` is not before `joined_at`).
fn value_at<V: Copy>(initial: V, changes: &[(DateTime<Utc>, V)], t: DateTime<Utc>) -> V {
    let n = changes.partition_point(|(e, _)| *e <= t);
    match n.checked_sub(1).and_then(|i| changes.get(i)) {
        Some((_, v)) => *v,
        None => initial,
    }
}

/// Whether "from `t` on the value is `v`" is a new fact (`Ok(true)`), already recorded
/// (`Ok(false)`), or contradicts a recorded fact at the same time (`Err(())`).
fn classify_change<V: Copy + PartialEq>(
    joined_at: DateTime<Utc>,
    initial: V,
    changes: &[(DateTime<Utc>, V)],
    t: DateTime<Utc>,
    v: V,
) -> Result<bool, ()> {
    let recorded = if t == joined_at {
        Some(initial)
    } else {
        let i = changes.partition_point(|(e, _)| *e < t);
        changes
            .get(i)
            .filter(|(e, _)| *e == t)
            .map(|(_, value)| *value)
    };
    match recorded {
        None => Ok(true),
        Some(r) if r == v => Ok(false),
        Some(_) => Err(()),
    }
}

/// Inserts a new fact at its place in time (the caller has classified it as new).
fn insert_change<V>(changes: &mut Vec<(DateTime<Utc>, V)>, t: DateTime<Utc>, v: V) {
    let i = changes.partition_point(|(e, _)| *e < t);
    changes.insert(i, (t, v));
}

impl Record {
    fn sponsor_changes(&self) -> &[(DateTime<Utc>, u32)] {
        self.changes.as_deref().map_or(&[], |c| &c.sponsor)
    }
    fn status_changes(&self) -> &[(DateTime<Utc>, DistributorStatus)] {
        self.changes.as_deref().map_or(&[], |c| &c.status)
    }
    fn rank_changes(&self) -> &[(DateTime<Utc>, u32)] {
        self.changes.as_deref().map_or(&[], |c| &c.rank)
    }
    fn changes_mut(&mut self) -> &mut Changes {
        self.changes.get_or_insert_with(Box::default)
    }

    /// The sponsor's index at `t`, `None` at the top.
    fn sponsor_at(&self, t: DateTime<Utc>) -> Option<u32> {
        Some(value_at(self.sponsor, self.sponsor_changes(), t)).filter(|s| *s != NO_SPONSOR)
    }
    /// The first sponsor change strictly after `t`.
    fn next_sponsor_change_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let changes = self.sponsor_changes();
        changes
            .get(changes.partition_point(|(e, _)| *e <= t))
            .map(|(e, _)| *e)
    }
    fn status_at(&self, t: DateTime<Utc>) -> DistributorStatus {
        value_at(self.status, self.status_changes(), t)
    }
    fn rank_at(&self, t: DateTime<Utc>) -> u32 {
        value_at(self.rank, self.rank_changes(), t)
    }
}

/// A registration, checked and normalised, ready to record.
struct Registration {
    sponsor: u32,
    referral_codes: Vec<ReferralCode>,
    country: [u8; 2],
}

/// What a checked change will record; `previous` is the value in force just before it.
struct Change<V> {
    index: u32,
    value: V,
    previous: V,
}

/// An open-addressing hash table of positions into a vector of keys that the caller owns, so
/// each key is stored once and a slot costs 4 bytes. Linear probing at a load of at most one
/// half. The hasher is std's randomly seeded SipHash, as in `HashMap`, so that chosen ids cannot
/// force long probes; the seed only decides where positions sit in the table, never what a
/// lookup answers, so no decision depends on it (the table is never iterated).
#[derive(Clone, Default)]
struct PositionIndex {
    /// A power of two in length (or empty); `EMPTY_SLOT` or a position.
    slots: Vec<u32>,
    hasher: RandomState,
}

const EMPTY_SLOT: u32 = u32::MAX;

impl PositionIndex {
    fn home<K: Hash>(&self, key: &K) -> usize {
        // Truncating the hash is fine: only its low bits pick the slot.
        (self.hasher.hash_one(key) as usize) & (self.slots.len() - 1)
    }

    /// The position of `key` in `keys`.
    fn get<K: Hash + Eq>(&self, keys: &[K], key: &K) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(key);
        // Terminates: the load is at most one half, so an empty slot is always ahead.
        loop {
            let position = *self.slots.get(i)?;
            if position == EMPTY_SLOT {
                return None;
            }
            if keys.get(position as usize) == Some(key) {
                return Some(position);
            }
            i = (i + 1) & mask;
        }
    }

    /// Indexes the last key of `keys`, which the caller just pushed after checking it was new.
    fn push<K: Hash>(&mut self, keys: &[K]) {
        if keys.len() * 2 > self.slots.len() {
            let size = (keys.len() * 2).next_power_of_two().max(16);
            self.slots = vec![EMPTY_SLOT; size];
            for position in 0..keys.len() {
                self.place(keys, position);
            }
        } else if !keys.is_empty() {
            self.place(keys, keys.len() - 1);
        }
    }

    fn place<K: Hash>(&mut self, keys: &[K], position: usize) {
        let Some(key) = keys.get(position) else {
            return;
        };
        let mask = self.slots.len() - 1;
        let mut i = self.home(key);
        while self.slots.get(i).is_some_and(|s| *s != EMPTY_SLOT) {
            i = (i + 1) & mask;
        }
        if let Some(slot) = self.slots.get_mut(i) {
            // Positions are below EMPTY_SLOT: the network refuses to grow that far.
            *slot = position as u32;
        }
    }
}

impl std::fmt::Debug for PositionIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PositionIndex({} slots)", self.slots.len())
    }
}

/// The table is a function of the keys it indexes (which are compared on their own); two
/// tables over equal keys differ only by their random seeds.
impl PartialEq for PositionIndex {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for PositionIndex {}

/// The in-memory network, built by applying every distributor event in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Network {
    records: Vec<Record>,
    /// `ids[i]` is the id of `records[i]`.
    ids: Vec<DistributorId>,
    /// Positions in `ids`.
    index: PositionIndex,
    /// Every referral code, in registration order; `code_owners[i]` holds `codes[i]`.
    codes: Vec<ReferralCode>,
    code_owners: Vec<u32>,
    /// Positions in `codes`.
    code_index: PositionIndex,
    /// Interned ranks: there are a handful, and a record keeps a `u32` instead of a string.
    rank_names: Vec<RankName>,
    rank_index: HashMap<RankName, u32>,
    /// The distributor registered without a sponsor.
    top: Option<u32>,
}

impl Network {
    pub fn new() -> Network {
        Network::default()
    }

    /// Builds a network by applying `events` in order.
    pub fn replay<'a>(
        events: impl IntoIterator<Item = &'a DistributorEvent>,
    ) -> Result<Network, NetworkError> {
        let mut network = Network::new();
        for event in events {
            network.apply(event)?;
        }
        Ok(network)
    }

    /// Decides and applies a command in one step; returns the events recorded.
    pub fn execute(
        &mut self,
        command: &DistributorCommand,
    ) -> Result<Vec<DistributorEvent>, NetworkError> {
        let events = self.decide(command)?;
        for event in &events {
            self.apply(event)?;
        }
        Ok(events)
    }

    /// The events a command causes, or why it is refused. An empty list means the command's
    /// fact is already recorded (a retried command is harmless).
    pub fn decide(
        &self,
        command: &DistributorCommand,
    ) -> Result<Vec<DistributorEvent>, NetworkError> {
        match command {
            DistributorCommand::RegisterDistributor {
                distributor_id,
                sponsor,
                referral_codes,
                country,
                status,
                rank,
                joined_at,
            } => {
                let Some(registration) = self.check_registration(
                    distributor_id,
                    sponsor.as_ref(),
                    referral_codes,
                    country,
                    *status,
                    rank,
                    *joined_at,
                )?
                else {
                    return Ok(vec![]);
                };
                Ok(vec![DistributorEvent::DistributorRegistered {
                    distributor_id: distributor_id.clone(),
                    sponsor: sponsor.clone(),
                    referral_codes: registration.referral_codes,
                    country: String::from_utf8_lossy(&registration.country).into_owned(),
                    status: *status,
                    rank: rank.clone(),
                    joined_at: *joined_at,
                }])
            }
            DistributorCommand::ChangeSponsor {
                distributor_id,
                sponsor,
                effective_at,
            } => {
                let Some(change) =
                    self.check_sponsor_change(distributor_id, sponsor, *effective_at)?
                else {
                    return Ok(vec![]);
                };
                Ok(vec![DistributorEvent::SponsorChanged {
                    distributor_id: distributor_id.clone(),
                    sponsor: sponsor.clone(),
                    previous_sponsor: self.id_of_sponsor(change.previous).cloned(),
                    effective_at: *effective_at,
                }])
            }
            DistributorCommand::ChangeStatus {
                distributor_id,
                status,
                effective_at,
            } => {
                let Some(change) =
                    self.check_status_change(distributor_id, *status, *effective_at)?
                else {
                    return Ok(vec![]);
                };
                Ok(vec![DistributorEvent::StatusChanged {
                    distributor_id: distributor_id.clone(),
                    status: *status,
                    previous_status: change.previous,
                    effective_at: *effective_at,
                }])
            }
            DistributorCommand::ChangeRank {
                distributor_id,
                rank,
                effective_at,
            } => {
                let Some(change) = self.check_rank_change(distributor_id, rank, *effective_at)?
                else {
                    return Ok(vec![]);
                };
                // A rank never recorded has no index yet; the previous one always has one.
                let previous = self.rank_name(change.previous).clone();
                Ok(vec![DistributorEvent::RankChanged {
                    distributor_id: distributor_id.clone(),
                    rank: rank.clone(),
                    previous_rank: previous,
                    effective_at: *effective_at,
                }])
            }
        }
    }

    /// Records an event. Every event is checked as its command was, so replaying a corrupted
    /// history fails with a typed error instead of breaking the network's invariants (no cycle,
    /// one value per time). An event whose fact is already recorded changes nothing. The
    /// `previous_*` fields are not checked: they are for auditors.
    pub fn apply(&mut self, event: &DistributorEvent) -> Result<(), NetworkError> {
        match event {
            DistributorEvent::DistributorRegistered {
                distributor_id,
                sponsor,
                referral_codes,
                country,
                status,
                rank,
                joined_at,
            } => {
                let Some(registration) = self.check_registration(
                    distributor_id,
                    sponsor.as_ref(),
                    referral_codes,
                    country,
                    *status,
                    rank,
                    *joined_at,
                )?
                else {
                    return Ok(());
                };
                // Checked above: the network holds fewer than NO_SPONSOR records.
                let index = self.records.len() as u32;
                let rank = self.intern_rank(rank);
                for code in &registration.referral_codes {
                    self.codes.push(code.clone());
                    self.code_owners.push(index);
                    self.code_index.push(&self.codes);
                }
                self.records.push(Record {
                    joined_at: *joined_at,
                    sponsor: registration.sponsor,
                    rank,
                    status: *status,
                    country: registration.country,
                    // Bounded by MAX_REFERRAL_CODES.
                    referral_code_count: registration.referral_codes.len() as u8,
                    changes: None,
                });
                self.ids.push(distributor_id.clone());
                self.index.push(&self.ids);
                if registration.sponsor == NO_SPONSOR {
                    self.top = Some(index);
                }
                Ok(())
            }
            DistributorEvent::SponsorChanged {
                distributor_id,
                sponsor,
                effective_at,
                ..
            } => {
                if let Some(change) =
                    self.check_sponsor_change(distributor_id, sponsor, *effective_at)?
                {
                    let record = self.record_mut(change.index);
                    insert_change(
                        &mut record.changes_mut().sponsor,
                        *effective_at,
                        change.value,
                    );
                }
                Ok(())
            }
            DistributorEvent::StatusChanged {
                distributor_id,
                status,
                effective_at,
                ..
            } => {
                if let Some(change) =
                    self.check_status_change(distributor_id, *status, *effective_at)?
                {
                    let record = self.record_mut(change.index);
                    insert_change(
                        &mut record.changes_mut().status,
                        *effective_at,
                        change.value,
                    );
                }
                Ok(())
            }
            DistributorEvent::RankChanged {
                distributor_id,
                rank,
                effective_at,
                ..
            } => {
                if let Some(change) = self.check_rank_change(distributor_id, rank, *effective_at)? {
                    let rank = self.intern_rank(rank);
                    let record = self.record_mut(change.index);
                    insert_change(&mut record.changes_mut().rank, *effective_at, rank);
                }
                Ok(())
            }
        }
    }

    // ---- lookups ----

    /// Number of registered distributors.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn contains(&self, distributor: &DistributorId) -> bool {
        self.index_of(distributor).is_some()
    }

    /// The distributor holding a referral code (codes are case-insensitive, see [`ReferralCode`]).
    pub fn by_referral_code(&self, code: &ReferralCode) -> Option<&DistributorId> {
        self.code_owner(code).map(|owner| self.id(owner))
    }

    pub fn joined_at(&self, distributor: &DistributorId) -> Option<DateTime<Utc>> {
        self.lookup(distributor).ok().map(|(_, r)| r.joined_at)
    }

    /// The distributor's country (ISO 3166-1 alpha-2, upper-case).
    pub fn country(&self, distributor: &DistributorId) -> Option<&str> {
        let (_, record) = self.lookup(distributor).ok()?;
        std::str::from_utf8(&record.country).ok()
    }

    /// The network's top (the distributor registered without a sponsor), if registered yet.
    pub fn top(&self) -> Option<&DistributorId> {
        self.top.and_then(|i| self.ids.get(i as usize))
    }

    pub fn status_at(
        &self,
        distributor: &DistributorId,
        t: DateTime<Utc>,
    ) -> Result<DistributorStatus, NetworkError> {
        Ok(self.lookup_at(distributor, t)?.status_at(t))
    }

    pub fn rank_at(
        &self,
        distributor: &DistributorId,
        t: DateTime<Utc>,
    ) -> Result<&RankName, NetworkError> {
        let record = self.lookup_at(distributor, t)?;
        Ok(self.rank_name(record.rank_at(t)))
    }

    /// The sponsor at `t`; `Ok(None)` for the top of the network.
    pub fn sponsor_at(
        &self,
        distributor: &DistributorId,
        t: DateTime<Utc>,
    ) -> Result<Option<&DistributorId>, NetworkError> {
        let record = self.lookup_at(distributor, t)?;
        Ok(record.sponsor_at(t).and_then(|s| self.ids.get(s as usize)))
    }

    // ---- snapshot ----

    /// The upline of `distributor` as it stood at `at`, for a commission calculation.
    ///
    /// The walk starts at the distributor (depth 0) and follows the sponsor links in force at
    /// `at`, recording every member's status and rank at `at`. A member uses up a level unless
    /// the request compresses and the member's status does not qualify; such a member is still
    /// recorded, so the calculation's trace can show who was skipped. The walk stops once
    /// `request.levels` members have used up a level (`reached_top` is false, even if that
    /// member happens to be the top), or when the chain ends (`reached_top` is true). With
    /// `levels == 0` no member is recorded.
    pub fn snapshot_at(
        &self,
        distributor: &DistributorId,
        at: DateTime<Utc>,
        request: &SnapshotRequest,
    ) -> Result<HierarchySnapshot, NetworkError> {
        let (mut current, record) = self.lookup(distributor)?;
        if record.joined_at > at {
            return Err(NetworkError::NotRegisteredAt {
                distributor_id: distributor.clone(),
                at,
                joined_at: record.joined_at,
            });
        }
        let mut members = Vec::new();
        let mut used: u32 = 0;
        let mut depth: u32 = 0;
        let reached_top = loop {
            if used >= request.levels {
                break false;
            }
            if depth > MAX_UPLINE_WALK {
                return Err(NetworkError::UplineTooLong {
                    distributor_id: distributor.clone(),
                    at,
                });
            }
            let record = self.record(current);
            let status = record.status_at(at);
            members.push(SnapshotMember {
                distributor_id: self.id(current).clone(),
                depth,
                status,
                rank: self.rank_name(record.rank_at(at)).clone(),
            });
            if request.uses_level(status) {
                used += 1;
            }
            match record.sponsor_at(at) {
                Some(sponsor) => current = sponsor,
                None => break used < request.levels,
            }
            depth += 1;
        };
        Ok(HierarchySnapshot::new(
            at,
            distributor.clone(),
            members,
            reached_top,
        ))
    }

    // ---- checks shared by decide and apply ----

    #[allow(clippy::too_many_arguments)]
    fn check_registration(
        &self,
        distributor_id: &DistributorId,
        sponsor: Option<&DistributorId>,
        referral_codes: &[ReferralCode],
        country: &str,
        status: DistributorStatus,
        rank: &RankName,
        joined_at: DateTime<Utc>,
    ) -> Result<Option<Registration>, NetworkError> {
        let country = parse_country(country).ok_or_else(|| NetworkError::InvalidCountry {
            distributor_id: distributor_id.clone(),
            country: country.to_string(),
        })?;
        // Counted before deduplication, so the quadratic dedup below stays tiny.
        if referral_codes.len() > MAX_REFERRAL_CODES {
            return Err(NetworkError::TooManyReferralCodes {
                distributor_id: distributor_id.clone(),
                count: referral_codes.len(),
            });
        }
        let mut codes: Vec<ReferralCode> = Vec::with_capacity(referral_codes.len());
        for code in referral_codes {
            if !codes.contains(code) {
                codes.push(code.clone());
            }
        }

        if let Some(index) = self.index_of(distributor_id) {
            // Already registered: the same registration again is a retry, anything else a
            // conflict. Compared field by field so the error can name the field.
            let record = self.record(index);
            let same_sponsor = match sponsor {
                None => record.sponsor == NO_SPONSOR,
                Some(s) => self.index_of(s) == Some(record.sponsor),
            };
            let differing = if !same_sponsor {
                Some("sponsor")
            } else if usize::from(record.referral_code_count) != codes.len()
                || codes.iter().any(|c| self.code_owner(c) != Some(index))
            {
                Some("referral codes")
            } else if record.country != country {
                Some("country")
            } else if record.status != status {
                Some("status")
            } else if self.rank_index.get(rank) != Some(&record.rank) {
                Some("rank")
            } else if record.joined_at != joined_at {
                Some("joined_at")
            } else {
                None
            };
            return match differing {
                None => Ok(None),
                Some(field) => Err(NetworkError::AlreadyRegisteredDifferently {
                    distributor_id: distributor_id.clone(),
                    field,
                }),
            };
        }

        // Positions must stay below the tables' and records' markers (u32::MAX).
        if self.records.len() >= (NO_SPONSOR - 1) as usize
            || self.codes.len() + codes.len() >= EMPTY_SLOT as usize
        {
            return Err(NetworkError::NetworkFull {
                max: NO_SPONSOR - 1,
            });
        }
        for code in &codes {
            if let Some(owner) = self.code_owner(code) {
                return Err(NetworkError::ReferralCodeTaken {
                    distributor_id: distributor_id.clone(),
                    referral_code: code.clone(),
                    owner: self.id(owner).clone(),
                });
            }
        }
        let sponsor_index = match sponsor {
            None => {
                if let Some(top) = self.top {
                    return Err(NetworkError::SponsorRequired {
                        distributor_id: distributor_id.clone(),
                        top: self.id(top).clone(),
                    });
                }
                NO_SPONSOR
            }
            Some(s) if s == distributor_id => {
                return Err(NetworkError::SponsorCycle {
                    distributor_id: distributor_id.clone(),
                    sponsor: s.clone(),
                    at: joined_at,
                })
            }
            Some(s) => {
                // A new distributor has no downline yet, so no cycle can form here.
                self.check_sponsor_usable(distributor_id, s, joined_at)?
            }
        };
        Ok(Some(Registration {
            sponsor: sponsor_index,
            referral_codes: codes,
            country,
        }))
    }

    /// The sponsor's index, if they are registered and not terminated at `t`.
    fn check_sponsor_usable(
        &self,
        distributor_id: &DistributorId,
        sponsor: &DistributorId,
        t: DateTime<Utc>,
    ) -> Result<u32, NetworkError> {
        let Some(index) = self.index_of(sponsor) else {
            return Err(NetworkError::UnknownSponsor {
                distributor_id: distributor_id.clone(),
                sponsor: sponsor.clone(),
            });
        };
        let record = self.record(index);
        if record.joined_at > t {
            return Err(NetworkError::SponsorNotYetRegistered {
                distributor_id: distributor_id.clone(),
                sponsor: sponsor.clone(),
                at: t,
                sponsor_joined_at: record.joined_at,
            });
        }
        if record.status_at(t) == DistributorStatus::Terminated {
            return Err(NetworkError::SponsorTerminated {
                distributor_id: distributor_id.clone(),
                sponsor: sponsor.clone(),
                at: t,
            });
        }
        Ok(index)
    }

    /// The distributor's index and record, if `t` is not before they joined.
    fn changeable_at(
        &self,
        distributor_id: &DistributorId,
        field: &'static str,
        t: DateTime<Utc>,
    ) -> Result<(u32, &Record), NetworkError> {
        let (index, record) = self.lookup(distributor_id)?;
        if t < record.joined_at {
            return Err(NetworkError::ChangeBeforeRegistration {
                distributor_id: distributor_id.clone(),
                field,
                effective_at: t,
                joined_at: record.joined_at,
            });
        }
        Ok((index, record))
    }

    fn check_sponsor_change(
        &self,
        distributor_id: &DistributorId,
        sponsor: &DistributorId,
        t: DateTime<Utc>,
    ) -> Result<Option<Change<u32>>, NetworkError> {
        let (index, record) = self.changeable_at(distributor_id, "sponsor", t)?;
        if sponsor == distributor_id {
            return Err(NetworkError::SponsorCycle {
                distributor_id: distributor_id.clone(),
                sponsor: sponsor.clone(),
                at: t,
            });
        }
        let Some(sponsor_index) = self.index_of(sponsor) else {
            return Err(NetworkError::UnknownSponsor {
                distributor_id: distributor_id.clone(),
                sponsor: sponsor.clone(),
            });
        };
        let is_new = classify_change(
            record.joined_at,
            record.sponsor,
            record.sponsor_changes(),
            t,
            sponsor_index,
        )
        .map_err(|()| ambiguous(distributor_id, "sponsor", t))?;
        if !is_new {
            return Ok(None);
        }
        self.check_sponsor_usable(distributor_id, sponsor, t)?;
        if let Some(at) =
            self.first_cycle(index, sponsor_index, t, record.next_sponsor_change_after(t))?
        {
            return Err(NetworkError::SponsorCycle {
                distributor_id: distributor_id.clone(),
                sponsor: sponsor.clone(),
                at,
            });
        }
        Ok(Some(Change {
            index,
            value: sponsor_index,
            previous: value_at(record.sponsor, record.sponsor_changes(), t),
        }))
    }

    fn check_status_change(
        &self,
        distributor_id: &DistributorId,
        status: DistributorStatus,
        t: DateTime<Utc>,
    ) -> Result<Option<Change<DistributorStatus>>, NetworkError> {
        let (index, record) = self.changeable_at(distributor_id, "status", t)?;
        let is_new = classify_change(
            record.joined_at,
            record.status,
            record.status_changes(),
            t,
            status,
        )
        .map_err(|()| ambiguous(distributor_id, "status", t))?;
        Ok(is_new.then(|| Change {
            index,
            value: status,
            previous: record.status_at(t),
        }))
    }

    /// The change's `value` is the rank's index if the rank was ever recorded, else
    /// `u32::MAX` (apply interns the rank).
    fn check_rank_change(
        &self,
        distributor_id: &DistributorId,
        rank: &RankName,
        t: DateTime<Utc>,
    ) -> Result<Option<Change<u32>>, NetworkError> {
        let (index, record) = self.changeable_at(distributor_id, "rank", t)?;
        // A rank never interned differs from every recorded one; u32::MAX is never an index.
        let rank_index = self.rank_index.get(rank).copied().unwrap_or(u32::MAX);
        let is_new = classify_change(
            record.joined_at,
            record.rank,
            record.rank_changes(),
            t,
            rank_index,
        )
        .map_err(|()| ambiguous(distributor_id, "rank", t))?;
        Ok(is_new.then(|| Change {
            index,
            value: rank_index,
            previous: record.rank_at(t),
        }))
    }

    /// The first time in `[from, until)` at which `distributor`'s upline, if its sponsor were
    /// `sponsor`, would contain `distributor` itself (a cycle), or `None`.
    ///
    /// Why checking a few times suffices: the new link is in force only on `[from, until)`
    /// (`until` is the distributor's next sponsor change). A cycle through it exists at `T` iff
    /// the sponsor's upline at `T` reaches the distributor. That upline is a chain of links,
    /// each constant between its own owner's sponsor changes, so if the chain at `T` is
    /// `s, p1, p2, .., top` it stays the same until the earliest sponsor change after `T` of any
    /// member of the chain. So walk at `from`, jump to that earliest change, walk again, and so
    /// on until `until`: every distinct upline in the interval is checked, no other times
    /// matter, and a back-dated change cannot form a cycle together with a later one unseen.
    fn first_cycle(
        &self,
        distributor: u32,
        sponsor: u32,
        from: DateTime<Utc>,
        until: Option<DateTime<Utc>>,
    ) -> Result<Option<DateTime<Utc>>, NetworkError> {
        let mut t = from;
        loop {
            let mut next_change: Option<DateTime<Utc>> = None;
            let mut current = sponsor;
            let mut hops: u32 = 0;
            loop {
                if current == distributor {
                    return Ok(Some(t));
                }
                let record = self.record(current);
                if let Some(next) = record.next_sponsor_change_after(t) {
                    next_change = Some(next_change.map_or(next, |n| n.min(next)));
                }
                match record.sponsor_at(t) {
                    Some(s) => current = s,
                    None => break,
                }
                hops += 1;
                if hops > MAX_UPLINE_WALK {
                    return Err(NetworkError::UplineTooLong {
                        distributor_id: self.id(sponsor).clone(),
                        at: t,
                    });
                }
            }
            match (next_change, until) {
                (None, _) => return Ok(None),
                (Some(next), Some(until)) if next >= until => return Ok(None),
                (Some(next), _) => t = next,
            }
        }
    }

    // ---- internals ----

    fn lookup(&self, distributor: &DistributorId) -> Result<(u32, &Record), NetworkError> {
        self.index_of(distributor)
            .map(|i| (i, self.record(i)))
            .ok_or_else(|| NetworkError::UnknownDistributor {
                distributor_id: distributor.clone(),
            })
    }

    fn lookup_at(
        &self,
        distributor: &DistributorId,
        t: DateTime<Utc>,
    ) -> Result<&Record, NetworkError> {
        let (_, record) = self.lookup(distributor)?;
        if record.joined_at > t {
            return Err(NetworkError::NotRegisteredAt {
                distributor_id: distributor.clone(),
                at: t,
                joined_at: record.joined_at,
            });
        }
        Ok(record)
    }

    fn index_of(&self, distributor: &DistributorId) -> Option<u32> {
        self.index.get(&self.ids, distributor)
    }

    fn code_owner(&self, code: &ReferralCode) -> Option<u32> {
        let position = self.code_index.get(&self.codes, code)?;
        self.code_owners.get(position as usize).copied()
    }

    // Indices come only from `index`, `code_owners` and records, all written together by
    // `apply`, so they are always in bounds.
    fn record(&self, index: u32) -> &Record {
        &self.records[index as usize]
    }
    fn record_mut(&mut self, index: u32) -> &mut Record {
        &mut self.records[index as usize]
    }
    fn id(&self, index: u32) -> &DistributorId {
        &self.ids[index as usize]
    }
    fn id_of_sponsor(&self, index: u32) -> Option<&DistributorId> {
        (index != NO_SPONSOR).then(|| self.id(index))
    }
    fn rank_name(&self, index: u32) -> &RankName {
        &self.rank_names[index as usize]
    }

    fn intern_rank(&mut self, rank: &RankName) -> u32 {
        if let Some(&i) = self.rank_index.get(rank) {
            return i;
        }
        // Ranks come from a plan's short ladder: far fewer than u32::MAX (the "never recorded"
        // marker of `check_rank_change`).
        let i = self.rank_names.len() as u32;
        self.rank_names.push(rank.clone());
        self.rank_index.insert(rank.clone(), i);
        i
    }
}

fn ambiguous(
    distributor_id: &DistributorId,
    field: &'static str,
    t: DateTime<Utc>,
) -> NetworkError {
    NetworkError::AmbiguousHistory {
        distributor_id: distributor_id.clone(),
        field,
        effective_at: t,
    }
}

/// Two ASCII letters, upper-cased; surrounding whitespace is ignored.
fn parse_country(country: &str) -> Option<[u8; 2]> {
    match country.trim().as_bytes() {
        [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
            Some([a.to_ascii_uppercase(), b.to_ascii_uppercase()])
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_position_index_finds_every_key_and_only_those() {
        let mut keys: Vec<String> = Vec::new();
        let mut index = PositionIndex::default();
        assert_eq!(index.get(&keys, &"x".to_string()), None);
        for i in 0..5_000 {
            keys.push(format!("k{i}"));
            index.push(&keys);
        }
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(index.get(&keys, key), Some(i as u32));
        }
        assert_eq!(index.get(&keys, &"k5000".to_string()), None);
        assert!(index.slots.len() >= 2 * keys.len());
    }

    #[test]
    fn a_record_stays_small() {
        // Per-distributor memory matters at a million distributors.
        assert!(std::mem::size_of::<Record>() <= 32);
    }
}
