//! Effective dating, cycles and hierarchy snapshots of the distributor network.

use chrono::{DateTime, Duration, TimeZone, Utc};
use upline_domain::ids::{DistributorId, RankName, ReferralCode};
use upline_domain::network::*;
use upline_domain::snapshot::DistributorStatus::{self, *};
use upline_domain::snapshot::{HierarchySnapshot, SnapshotRequest};

fn day(n: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap() + Duration::days(n)
}
fn id(s: &str) -> DistributorId {
    DistributorId::new(s).unwrap()
}
fn rank(s: &str) -> RankName {
    RankName::new(s).unwrap()
}
fn register(who: &str, sponsor: Option<&str>, joined: i64) -> DistributorCommand {
    register_as(who, sponsor, joined, Active)
}
fn register_as(
    who: &str,
    sponsor: Option<&str>,
    joined: i64,
    status: DistributorStatus,
) -> DistributorCommand {
    DistributorCommand::RegisterDistributor {
        distributor_id: id(who),
        sponsor: sponsor.map(id),
        referral_codes: vec![ReferralCode::new(format!("R-{who}")).unwrap()],
        country: "US".into(),
        status,
        rank: rank("member"),
        joined_at: day(joined),
    }
}
fn change_sponsor(who: &str, sponsor: &str, at: i64) -> DistributorCommand {
    DistributorCommand::ChangeSponsor {
        distributor_id: id(who),
        sponsor: id(sponsor),
        effective_at: day(at),
    }
}
fn change_status(who: &str, status: DistributorStatus, at: i64) -> DistributorCommand {
    DistributorCommand::ChangeStatus {
        distributor_id: id(who),
        status,
        effective_at: day(at),
    }
}
fn change_rank(who: &str, to: &str, at: i64) -> DistributorCommand {
    DistributorCommand::ChangeRank {
        distributor_id: id(who),
        rank: rank(to),
        effective_at: day(at),
    }
}

/// A network built by running the commands in order; every one must be accepted.
fn build(commands: &[DistributorCommand]) -> Network {
    let mut network = Network::new();
    for command in commands {
        network.execute(command).unwrap();
    }
    network
}

fn request(levels: u32, compression: bool) -> SnapshotRequest {
    SnapshotRequest {
        levels,
        qualifying_statuses: vec![Active],
        compression,
    }
}

/// The ids of a snapshot's members, bottom up.
fn chain(snapshot: &HierarchySnapshot) -> Vec<&str> {
    snapshot
        .members
        .iter()
        .map(|m| m.distributor_id.as_str())
        .collect()
}

fn upline(network: &Network, who: &str, at: i64) -> Vec<String> {
    let snapshot = network
        .snapshot_at(&id(who), day(at), &request(100, false))
        .unwrap();
    assert!(snapshot.reached_top);
    chain(&snapshot).into_iter().map(String::from).collect()
}

/// T at the top; A, B under T; C under A.
fn small_tree() -> Vec<DistributorCommand> {
    vec![
        register("T", None, 0),
        register("A", Some("T"), 0),
        register("B", Some("T"), 0),
        register("C", Some("A"), 1),
    ]
}

// ---- effective dating ----

#[test]
fn a_snapshot_follows_the_sponsor_in_force_at_its_time() {
    let mut commands = small_tree();
    commands.push(change_sponsor("C", "B", 10));
    let network = build(&commands);
    assert_eq!(upline(&network, "C", 9), ["C", "A", "T"]);
    assert_eq!(upline(&network, "C", 10), ["C", "B", "T"]);
    assert_eq!(upline(&network, "C", 99), ["C", "B", "T"]);
}

#[test]
fn a_snapshot_records_status_and_rank_in_force_at_its_time() {
    let mut commands = small_tree();
    commands.push(change_status("A", Suspended, 10));
    commands.push(change_rank("A", "gold", 20));
    let network = build(&commands);
    let member = |at| {
        network
            .snapshot_at(&id("C"), day(at), &request(5, false))
            .unwrap()
            .members[1]
            .clone()
    };
    assert_eq!((member(9).status, member(9).rank), (Active, rank("member")));
    assert_eq!(
        (member(10).status, member(10).rank),
        (Suspended, rank("member"))
    );
    assert_eq!(
        (member(20).status, member(20).rank),
        (Suspended, rank("gold"))
    );
}

#[test]
fn a_back_dated_change_is_seen_only_from_its_effective_time_until_the_next_change() {
    let mut commands = small_tree();
    commands.push(change_sponsor("C", "B", 20));
    // Recorded after the day-20 change, but effective from day 10: applies on [10, 20).
    commands.push(change_sponsor("C", "T", 10));
    let network = build(&commands);
    assert_eq!(upline(&network, "C", 5), ["C", "A", "T"]);
    assert_eq!(upline(&network, "C", 10), ["C", "T"]);
    assert_eq!(upline(&network, "C", 19), ["C", "T"]);
    assert_eq!(upline(&network, "C", 20), ["C", "B", "T"]);

    let mut commands = small_tree();
    commands.push(change_status("A", Inactive, 20));
    commands.push(change_status("A", Suspended, 10));
    let network = build(&commands);
    let status = |at| network.status_at(&id("A"), day(at)).unwrap();
    assert_eq!(
        [status(9), status(10), status(19), status(20)],
        [Active, Suspended, Suspended, Inactive]
    );
}

#[test]
fn a_snapshot_before_the_distributor_joined_is_refused() {
    let network = build(&small_tree());
    assert_eq!(
        network.snapshot_at(&id("C"), day(0), &request(3, false)),
        Err(NetworkError::NotRegisteredAt {
            distributor_id: id("C"),
            at: day(0),
            joined_at: day(1)
        })
    );
    assert_eq!(
        network.snapshot_at(&id("X"), day(0), &request(3, false)),
        Err(NetworkError::UnknownDistributor {
            distributor_id: id("X")
        })
    );
}

// ---- cycles ----

#[test]
fn moving_the_top_of_a_chain_under_its_own_downline_is_refused() {
    // R at the top, A sponsors B sponsors C.
    let network = build(&[
        register("R", None, 0),
        register("A", Some("R"), 0),
        register("B", Some("A"), 0),
        register("C", Some("B"), 0),
    ]);
    assert_eq!(
        network.decide(&change_sponsor("A", "C", 5)),
        Err(NetworkError::SponsorCycle {
            distributor_id: id("A"),
            sponsor: id("C"),
            at: day(5)
        })
    );
    assert_eq!(
        network.decide(&change_sponsor("R", "C", 5)),
        Err(NetworkError::SponsorCycle {
            distributor_id: id("R"),
            sponsor: id("C"),
            at: day(5)
        })
    );
}

#[test]
fn a_move_dated_before_the_chain_existed_is_checked_from_the_time_it_would_form() {
    // C is under B from day 10 on; moving A under C on day 5 is refused: C had not joined
    // yet. On day 12 it is a cycle.
    let network = build(&[
        register("R", None, 0),
        register("A", Some("R"), 0),
        register("B", Some("A"), 0),
        register("C", Some("B"), 10),
    ]);
    assert!(matches!(
        network.decide(&change_sponsor("A", "C", 5)),
        Err(NetworkError::SponsorNotYetRegistered { .. })
    ));
    assert_eq!(
        network.decide(&change_sponsor("A", "C", 12)),
        Err(NetworkError::SponsorCycle {
            distributor_id: id("A"),
            sponsor: id("C"),
            at: day(12)
        })
    );
}

#[test]
fn a_back_dated_move_that_cycles_only_with_a_later_change_is_refused() {
    // A and B under R. From day 20, A is under B. Moving B under A from day 10 is fine on
    // [10, 20) but from day 20 on A -> B -> A would be a cycle.
    let network = build(&[
        register("R", None, 0),
        register("A", Some("R"), 0),
        register("B", Some("R"), 0),
        change_sponsor("A", "B", 20),
    ]);
    assert_eq!(
        network.decide(&change_sponsor("B", "A", 10)),
        Err(NetworkError::SponsorCycle {
            distributor_id: id("B"),
            sponsor: id("A"),
            at: day(20)
        })
    );
}

#[test]
fn a_back_dated_move_ended_by_the_distributors_own_later_change_is_accepted() {
    // As above, but B returns under R from day 15: the move to A holds only on [10, 15), before
    // A moves under B, so no cycle ever forms.
    let mut network = build(&[
        register("R", None, 0),
        register("A", Some("R"), 0),
        register("B", Some("R"), 0),
        change_sponsor("A", "B", 20),
        change_sponsor("B", "R", 15),
    ]);
    assert_eq!(
        network
            .execute(&change_sponsor("B", "A", 10))
            .map(|e| e.len()),
        Ok(1)
    );
    assert_eq!(upline(&network, "B", 12), ["B", "A", "R"]);
    assert_eq!(upline(&network, "A", 25), ["A", "B", "R"]);
}

#[test]
fn a_cycle_formed_by_a_change_deeper_in_the_upline_is_found() {
    // Chain R <- X <- Y, and W under R. Later (day 30) Y's sponsor X moves under W. Moving W
    // under Y from day 10 cycles only from day 30 (W -> Y -> X -> W): the check must follow the
    // upline's own later changes, not just the first sponsor's.
    let network = build(&[
        register("R", None, 0),
        register("X", Some("R"), 0),
        register("Y", Some("X"), 0),
        register("W", Some("R"), 0),
        change_sponsor("X", "W", 30),
    ]);
    assert_eq!(
        network.decide(&change_sponsor("W", "Y", 10)),
        Err(NetworkError::SponsorCycle {
            distributor_id: id("W"),
            sponsor: id("Y"),
            at: day(30)
        })
    );
}

// ---- snapshots ----

/// R (top) <- D1 <- D2 <- D3 <- D4 <- D5 <- D6, with D2 and D4 inactive.
fn line_of_six() -> Network {
    let mut commands = vec![register("R", None, 0)];
    let mut sponsor = "R".to_string();
    for i in 1..=6 {
        let who = format!("D{i}");
        let status = if i == 2 || i == 4 { Inactive } else { Active };
        commands.push(register_as(&who, Some(&sponsor), 0, status));
        sponsor = who;
    }
    build(&commands)
}

#[test]
fn under_compression_inactive_members_are_recorded_but_use_no_level() {
    let snapshot = line_of_six()
        .snapshot_at(&id("D6"), day(1), &request(3, true))
        .unwrap();
    // D6, D5 and D3 use the three levels; D4 is skipped for free.
    assert_eq!(chain(&snapshot), ["D6", "D5", "D4", "D3"]);
    assert_eq!(
        snapshot.members.iter().map(|m| m.depth).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    assert_eq!(snapshot.members[2].status, Inactive);
    assert!(!snapshot.reached_top);
}

#[test]
fn without_compression_every_member_uses_a_level() {
    let snapshot = line_of_six()
        .snapshot_at(&id("D6"), day(1), &request(3, false))
        .unwrap();
    assert_eq!(chain(&snapshot), ["D6", "D5", "D4"]);
    assert!(!snapshot.reached_top);
}

#[test]
fn the_walk_reports_reaching_the_top_when_the_chain_ends_first() {
    let network = line_of_six();
    let snapshot = network
        .snapshot_at(&id("D6"), day(1), &request(6, true))
        .unwrap();
    // Five active members (D6, D5, D3, D1, R) cannot fill six levels.
    assert_eq!(chain(&snapshot), ["D6", "D5", "D4", "D3", "D2", "D1", "R"]);
    assert!(snapshot.reached_top);
    // Exactly filled at the top: the walk ended at the plan's depth.
    let snapshot = network
        .snapshot_at(&id("D6"), day(1), &request(5, true))
        .unwrap();
    assert_eq!(chain(&snapshot).last(), Some(&"R"));
    assert!(!snapshot.reached_top);
    let none = network
        .snapshot_at(&id("D6"), day(1), &request(0, true))
        .unwrap();
    assert!(none.members.is_empty() && !none.reached_top);
}

#[test]
fn a_status_change_moves_where_compression_skips() {
    let mut network = line_of_six();
    network.execute(&change_status("D4", Active, 10)).unwrap();
    network
        .execute(&change_status("D5", Terminated, 10))
        .unwrap();
    let before = network
        .snapshot_at(&id("D6"), day(9), &request(2, true))
        .unwrap();
    let after = network
        .snapshot_at(&id("D6"), day(10), &request(2, true))
        .unwrap();
    // Before: D6 and D5 fill the two levels. After: D5 is terminated and skipped, D4 counts.
    assert_eq!(chain(&before), ["D6", "D5"]);
    assert_eq!(chain(&after), ["D6", "D5", "D4"]);
    assert_eq!(after.members[1].status, Terminated);
    assert_eq!(after.members[2].status, Active);
}

#[test]
fn a_snapshot_round_trips_through_json_with_the_same_hash_and_detects_tampering() {
    let snapshot = line_of_six()
        .snapshot_at(&id("D6"), day(1), &request(3, true))
        .unwrap();
    assert!(snapshot.verify());
    let json = serde_json::to_string(&snapshot).unwrap();
    let back: HierarchySnapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(back, snapshot);
    assert_eq!(back.compute_hash(), snapshot.content_hash);
    assert!(back.verify());

    let mut tampered = back.clone();
    tampered.members[2].status = Active;
    assert!(!tampered.verify());
    let mut tampered = back;
    tampered.members[1].distributor_id = id("D3");
    assert!(!tampered.verify());
}

#[test]
fn the_same_history_gives_the_same_snapshot_hash() {
    let a = line_of_six()
        .snapshot_at(&id("D6"), day(1), &request(3, true))
        .unwrap();
    let b = line_of_six()
        .snapshot_at(&id("D6"), day(1), &request(3, true))
        .unwrap();
    assert_eq!(a.content_hash, b.content_hash);
}

#[test]
fn an_upline_longer_than_the_walk_bound_is_refused_with_a_typed_error() {
    // A single line MAX_UPLINE_WALK + 2 deep: the walk from the bottom must stop, not run on.
    let mut network = Network::new();
    network.execute(&register("L0", None, 0)).unwrap();
    let depth = MAX_UPLINE_WALK as usize + 2;
    for i in 1..=depth {
        let sponsor = format!("L{}", i - 1);
        network
            .execute(&register(&format!("L{i}"), Some(&sponsor), 0))
            .unwrap();
    }
    let bottom = id(&format!("L{depth}"));
    assert_eq!(
        network.snapshot_at(&bottom, day(1), &request(u32::MAX, false)),
        Err(NetworkError::UplineTooLong {
            distributor_id: bottom.clone(),
            at: day(1)
        })
    );
    // A plan's depth is reached long before the bound.
    let snapshot = network
        .snapshot_at(&bottom, day(1), &request(30, false))
        .unwrap();
    assert_eq!(snapshot.members.len(), 30);
}
