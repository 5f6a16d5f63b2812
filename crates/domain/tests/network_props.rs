//! Properties of the distributor network over random histories: no cycle at any time, every
//! snapshot terminates at the top, a cycle is refused exactly when one would form, replay
//! rebuilds the same network, and a retried command records nothing.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use upline_domain::ids::{DistributorId, RankName, ReferralCode};
use upline_domain::network::*;
use upline_domain::snapshot::{DistributorStatus, SnapshotRequest};

/// Every effective time is a whole day in `0..DAYS`, so histories are constant within a day
/// and checking each day checks every time.
const DAYS: u8 = 20;

fn day(n: u8) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap() + Duration::days(i64::from(n))
}
fn id(s: &str) -> DistributorId {
    DistributorId::new(s).unwrap()
}

#[derive(Debug, Clone)]
enum Op {
    Register { sponsor: usize, day: u8 },
    Move { who: usize, to: usize, day: u8 },
    Status { who: usize, status: u8, day: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (any::<usize>(), 0..DAYS).prop_map(|(sponsor, day)| Op::Register { sponsor, day }),
        4 => (any::<usize>(), any::<usize>(), 0..DAYS).prop_map(|(who, to, day)| Op::Move { who, to, day }),
        1 => (any::<usize>(), 0u8..4, 0..DAYS).prop_map(|(who, status, day)| Op::Status { who, status, day }),
    ]
}

/// One distributor's (day, sponsor) facts, sorted by day.
type Facts = Vec<(u8, Option<String>)>;

/// A naive model of the sponsor links: each distributor's joining day and facts.
#[derive(Default, Clone)]
struct Model {
    links: BTreeMap<String, (u8, Facts)>,
}

impl Model {
    fn sponsor_at(&self, who: &str, at: u8) -> Option<Option<&str>> {
        let (joined, facts) = self.links.get(who)?;
        if at < *joined {
            return None;
        }
        facts
            .iter()
            .rev()
            .find(|(d, _)| *d <= at)
            .map(|(_, s)| s.as_deref())
    }
    fn insert(&mut self, who: &str, at: u8, sponsor: &str) {
        if let Some((_, facts)) = self.links.get_mut(who) {
            // A fact at the same day is replaced: the model answers "what if this held".
            facts.retain(|(d, _)| *d != at);
            let i = facts.partition_point(|(d, _)| *d < at);
            facts.insert(i, (at, Some(sponsor.to_string())));
        }
    }
    /// Whether following sponsors at `at` from anyone loops.
    fn has_cycle_at(&self, at: u8) -> bool {
        self.links.keys().any(|start| {
            let mut current = start.as_str();
            for _ in 0..=self.links.len() {
                match self.sponsor_at(current, at) {
                    Some(Some(next)) => current = next,
                    _ => return false,
                }
            }
            true
        })
    }
    fn has_cycle(&self) -> bool {
        (0..=DAYS).any(|d| self.has_cycle_at(d))
    }
}

fn command(op: &Op, names: &[String]) -> DistributorCommand {
    let pick = |i: usize| id(&names[i % names.len()]);
    match *op {
        Op::Register { sponsor, day: d } => {
            let who = format!("D{}", names.len());
            DistributorCommand::RegisterDistributor {
                distributor_id: id(&who),
                sponsor: Some(pick(sponsor)),
                referral_codes: vec![ReferralCode::new(format!("R{who}")).unwrap()],
                country: "us".into(),
                status: DistributorStatus::Active,
                rank: RankName::new("member").unwrap(),
                joined_at: day(d),
            }
        }
        Op::Move { who, to, day: d } => DistributorCommand::ChangeSponsor {
            distributor_id: pick(who),
            sponsor: pick(to),
            effective_at: day(d),
        },
        Op::Status {
            who,
            status,
            day: d,
        } => DistributorCommand::ChangeStatus {
            distributor_id: pick(who),
            status: [
                DistributorStatus::Active,
                DistributorStatus::Inactive,
                DistributorStatus::Suspended,
                DistributorStatus::Terminated,
            ][usize::from(status)],
            effective_at: day(d),
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_histories_never_cycle_and_snapshots_always_reach_the_top(ops in prop::collection::vec(op(), 1..80)) {
        let mut network = Network::new();
        let mut model = Model::default();
        let mut log = Vec::new();
        let mut names = vec!["T".to_string()];
        let top = DistributorCommand::RegisterDistributor {
            distributor_id: id("T"),
            sponsor: None,
            referral_codes: vec![],
            country: "US".into(),
            status: DistributorStatus::Active,
            rank: RankName::new("founder").unwrap(),
            joined_at: day(0),
        };
        log.extend(network.execute(&top).unwrap());
        model.links.insert("T".into(), (0, vec![(0, None)]));

        for op in &ops {
            let command = command(op, &names);
            let decided = network.decide(&command);
            prop_assert_eq!(&decided, &network.decide(&command), "decide is a function of its inputs");
            match decided {
                Ok(events) => {
                    for event in &events {
                        prop_assert_eq!(network.apply(event), Ok(()), "a decided event applies");
                        match event {
                            DistributorEvent::DistributorRegistered { distributor_id, sponsor, joined_at, .. } => {
                                let d = (*joined_at - day(0)).num_days() as u8;
                                let s = sponsor.as_ref().map(|s| s.to_string());
                                model.links.insert(distributor_id.to_string(), (d, vec![(d, s)]));
                                names.push(distributor_id.to_string());
                            }
                            DistributorEvent::SponsorChanged { distributor_id, sponsor, effective_at, .. } => {
                                let d = (*effective_at - day(0)).num_days() as u8;
                                model.insert(distributor_id.as_str(), d, sponsor.as_str());
                            }
                            _ => {}
                        }
                    }
                    log.extend(events);
                    prop_assert_eq!(network.decide(&command), Ok(vec![]), "a retried command records nothing");
                }
                Err(NetworkError::SponsorCycle { .. }) => {
                    // Refused exactly when the model, given the change, would loop at some day.
                    if let DistributorCommand::ChangeSponsor { distributor_id, sponsor, effective_at } = &command {
                        let mut hypothetical = model.clone();
                        let d = (*effective_at - day(0)).num_days() as u8;
                        hypothetical.insert(distributor_id.as_str(), d, sponsor.as_str());
                        prop_assert!(hypothetical.has_cycle(), "refused a move that makes no cycle: {:?}", command);
                    }
                }
                Err(_) => {}
            }
        }
        prop_assert!(!model.has_cycle());

        let request = SnapshotRequest {
            levels: u32::try_from(names.len()).unwrap() + 1,
            qualifying_statuses: vec![DistributorStatus::Active],
            compression: true,
        };
        for d in 0..=DAYS {
            for name in &names {
                let who = id(name);
                let Some(expected) = model.sponsor_at(name, d) else {
                    let refused = matches!(
                        network.snapshot_at(&who, day(d), &request),
                        Err(NetworkError::NotRegisteredAt { .. })
                    );
                    prop_assert!(refused, "snapshot before joining must be refused");
                    continue;
                };
                prop_assert_eq!(network.sponsor_at(&who, day(d)).unwrap().map(|s| s.as_str()), expected);
                let snapshot = network.snapshot_at(&who, day(d), &request).unwrap();
                prop_assert!(snapshot.reached_top);
                prop_assert_eq!(snapshot.members.last().map(|m| m.distributor_id.as_str()), Some("T"));
                prop_assert!(snapshot.members.iter().enumerate().all(|(i, m)| m.depth as usize == i));
                prop_assert!(snapshot.verify());
            }
        }
        prop_assert_eq!(Network::replay(&log).unwrap(), network, "replay rebuilds the same network");
    }
}
