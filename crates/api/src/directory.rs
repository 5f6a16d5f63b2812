//! What GetDistributor needs that the network does not index: each distributor's referral codes
//! and, for the downline, everyone who was ever sponsored by each distributor. Kept in memory,
//! refreshed from the `distributor-` streams before each query (cheap when nothing changed).
//! The network itself answers who sponsors whom at a given time; this only narrows the search.
//!
//! The hierarchy read model of `crates/projections` is meant to replace this.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use tokio::sync::{Mutex, RwLock};
use tonic::Status;
use upline_app::eventio::decode_recorded;
use upline_app::streams::DISTRIBUTOR_PREFIX;
use upline_domain::ids::{DistributorId, ReferralCode};
use upline_domain::network::{DistributorEvent, Network};
use upline_store::{AllStart, EventStore, StreamFilter};

use crate::convert::{fmt_time, pb_status};
use crate::error::{app_error, store_error};
use crate::pb;

const PAGE: usize = 5_000;
/// The deepest downline one request lists.
pub const MAX_DOWNLINE_DEPTH: u32 = 64;

#[derive(Default)]
pub(crate) struct Directory {
    position: Mutex<u64>,
    state: RwLock<State>,
}

#[derive(Default)]
struct State {
    codes: HashMap<DistributorId, Vec<ReferralCode>>,
    /// Everyone ever sponsored by the key, at any time.
    sponsored: HashMap<DistributorId, BTreeSet<DistributorId>>,
}

impl Directory {
    pub(crate) async fn refresh(&self, store: &dyn EventStore) -> Result<(), Status> {
        let mut position = self.position.lock().await;
        let filter = StreamFilter::prefix(DISTRIBUTOR_PREFIX);
        loop {
            let page = store
                .read_all(AllStart::After(*position), &filter, PAGE)
                .await
                .map_err(store_error)?;
            let Some(last) = page.last().map(|r| r.position) else {
                return Ok(());
            };
            let mut state = self.state.write().await;
            for recorded in &page {
                // Distributor streams also hold commission postings; only these two matter.
                if !matches!(
                    recorded.event_type.as_str(),
                    "DistributorRegistered" | "SponsorChanged"
                ) {
                    continue;
                }
                match decode_recorded::<DistributorEvent>(recorded).map_err(app_error)? {
                    DistributorEvent::DistributorRegistered {
                        distributor_id,
                        sponsor,
                        referral_codes,
                        ..
                    } => {
                        if let Some(sponsor) = sponsor {
                            state
                                .sponsored
                                .entry(sponsor)
                                .or_default()
                                .insert(distributor_id.clone());
                        }
                        state.codes.insert(distributor_id, referral_codes);
                    }
                    DistributorEvent::SponsorChanged {
                        distributor_id,
                        sponsor,
                        ..
                    } => {
                        state
                            .sponsored
                            .entry(sponsor)
                            .or_default()
                            .insert(distributor_id);
                    }
                    _ => {}
                }
            }
            *position = last;
        }
    }

    pub(crate) async fn referral_codes(&self, distributor: &DistributorId) -> Vec<String> {
        self.state
            .read()
            .await
            .codes
            .get(distributor)
            .map(|codes| codes.iter().map(|c| c.to_string()).collect())
            .unwrap_or_default()
    }

    /// A page of the downline of `root` at `at`, breadth first (level by level; under each
    /// member, their own downline ordered by id), `depth` levels deep. Returns the page and
    /// whether more follow. Work is bounded by `offset + limit` members listed.
    pub(crate) async fn downline(
        &self,
        network: &Network,
        root: &DistributorId,
        at: DateTime<Utc>,
        depth: u32,
        offset: usize,
        limit: usize,
    ) -> (Vec<pb::DownlineMember>, bool) {
        let state = self.state.read().await;
        let mut page = Vec::new();
        let mut seen = 0usize;
        let mut frontier = vec![root.clone()];
        for level in 1..=depth {
            let mut next = Vec::new();
            for parent in &frontier {
                let Some(candidates) = state.sponsored.get(parent) else {
                    continue;
                };
                for child in candidates {
                    // Sponsored by `parent` at some time; is it at `at`? (An error: not joined
                    // yet at `at`.)
                    if network.sponsor_at(child, at).ok().flatten() != Some(parent) {
                        continue;
                    }
                    if seen >= offset {
                        if page.len() == limit {
                            return (page, true);
                        }
                        page.push(pb::DownlineMember {
                            distributor_id: child.to_string(),
                            depth: level,
                            sponsor_id: parent.to_string(),
                            status: network
                                .status_at(child, at)
                                .map(|s| pb_status(s) as i32)
                                .unwrap_or_default(),
                            rank: network
                                .rank_at(child, at)
                                .map(|r| r.to_string())
                                .unwrap_or_default(),
                            joined_at: network.joined_at(child).map(fmt_time).unwrap_or_default(),
                        });
                    }
                    seen += 1;
                    next.push(child.clone());
                }
            }
            if next.is_empty() {
                break;
            }
            frontier = next;
        }
        (page, false)
    }
}
