//! The distributor network: given these events, when this command, then these events or this
//! error. One test per command outcome and per rejection.

use chrono::{DateTime, Duration, TimeZone, Utc};
use upline_domain::events::{decode, encode};
use upline_domain::ids::{DistributorId, RankName, ReferralCode};
use upline_domain::network::*;
use upline_domain::snapshot::DistributorStatus::{self, *};

fn day(n: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap() + Duration::days(n)
}
fn id(s: &str) -> DistributorId {
    DistributorId::new(s).unwrap()
}
fn code(s: &str) -> ReferralCode {
    ReferralCode::new(s).unwrap()
}
fn rank(s: &str) -> RankName {
    RankName::new(s).unwrap()
}

/// A registration event with the usual defaults: code "R-<id>", country US, active, member.
fn registered(who: &str, sponsor: Option<&str>, joined: i64) -> DistributorEvent {
    DistributorEvent::DistributorRegistered {
        distributor_id: id(who),
        sponsor: sponsor.map(id),
        referral_codes: vec![code(&format!("R-{who}"))],
        country: "US".into(),
        status: Active,
        rank: rank("member"),
        joined_at: day(joined),
    }
}
fn register(who: &str, sponsor: Option<&str>, joined: i64) -> DistributorCommand {
    DistributorCommand::RegisterDistributor {
        distributor_id: id(who),
        sponsor: sponsor.map(id),
        referral_codes: vec![code(&format!("R-{who}"))],
        country: "US".into(),
        status: Active,
        rank: rank("member"),
        joined_at: day(joined),
    }
}
fn status_changed(
    who: &str,
    status: DistributorStatus,
    previous: DistributorStatus,
    at: i64,
) -> DistributorEvent {
    DistributorEvent::StatusChanged {
        distributor_id: id(who),
        status,
        previous_status: previous,
        effective_at: day(at),
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

fn given(events: &[DistributorEvent]) -> Network {
    Network::replay(events).unwrap()
}
fn when(
    network: &Network,
    command: DistributorCommand,
) -> Result<Vec<DistributorEvent>, NetworkError> {
    network.decide(&command)
}

/// The top "T" and "A" under it, both joined on day 0.
fn top_and_a() -> Vec<DistributorEvent> {
    vec![registered("T", None, 0), registered("A", Some("T"), 0)]
}

// ---- RegisterDistributor ----

#[test]
fn registering_the_top_records_it() {
    assert_eq!(
        when(&given(&[]), register("T", None, 0)),
        Ok(vec![registered("T", None, 0)])
    );
}

#[test]
fn registering_normalises_country_and_drops_duplicate_codes() {
    let command = DistributorCommand::RegisterDistributor {
        distributor_id: id("A"),
        sponsor: Some(id("T")),
        referral_codes: vec![code("abc"), code("XYZ"), code("ABC")],
        country: " gb ".into(),
        status: Inactive,
        rank: rank("Silver"),
        joined_at: day(3),
    };
    assert_eq!(
        when(&given(&[registered("T", None, 0)]), command),
        Ok(vec![DistributorEvent::DistributorRegistered {
            distributor_id: id("A"),
            sponsor: Some(id("T")),
            referral_codes: vec![code("ABC"), code("XYZ")],
            country: "GB".into(),
            status: Inactive,
            rank: rank("silver"),
            joined_at: day(3),
        }])
    );
}

#[test]
fn registering_the_same_distributor_again_records_nothing() {
    assert_eq!(
        when(&given(&top_and_a()), register("A", Some("T"), 0)),
        Ok(vec![])
    );
    assert_eq!(
        when(&given(&top_and_a()), register("T", None, 0)),
        Ok(vec![])
    );
}

#[test]
fn registering_an_id_again_with_different_data_is_refused_naming_the_field() {
    let network = given(&[
        registered("T", None, 0),
        registered("B", Some("T"), 0),
        registered("A", Some("T"), 0),
    ]);
    let variants: Vec<(&str, DistributorCommand)> = vec![
        ("sponsor", register_with("A", |r| r.sponsor = Some(id("B")))),
        ("sponsor", register_with("A", |r| r.sponsor = None)),
        (
            "referral codes",
            register_with("A", |r| r.codes.push(code("NEW"))),
        ),
        ("referral codes", register_with("A", |r| r.codes.clear())),
        ("country", register_with("A", |r| r.country = "CA".into())),
        ("status", register_with("A", |r| r.status = Inactive)),
        ("rank", register_with("A", |r| r.rank = rank("gold"))),
        ("joined_at", register_with("A", |r| r.joined_at = day(1))),
    ];
    for (field, command) in variants {
        assert_eq!(
            when(&network, command),
            Err(NetworkError::AlreadyRegisteredDifferently {
                distributor_id: id("A"),
                field
            }),
            "{field}"
        );
    }
}

/// The fields of a registration, to edit one at a time.
struct Reg {
    sponsor: Option<DistributorId>,
    codes: Vec<ReferralCode>,
    country: String,
    status: DistributorStatus,
    rank: RankName,
    joined_at: DateTime<Utc>,
}
/// `register(who, Some("T"), 0)` with one edit.
fn register_with(who: &str, edit: impl FnOnce(&mut Reg)) -> DistributorCommand {
    let mut r = Reg {
        sponsor: Some(id("T")),
        codes: vec![code(&format!("R-{who}"))],
        country: "US".into(),
        status: Active,
        rank: rank("member"),
        joined_at: day(0),
    };
    edit(&mut r);
    DistributorCommand::RegisterDistributor {
        distributor_id: id(who),
        sponsor: r.sponsor,
        referral_codes: r.codes,
        country: r.country,
        status: r.status,
        rank: r.rank,
        joined_at: r.joined_at,
    }
}

#[test]
fn registering_under_an_unknown_sponsor_is_refused() {
    assert_eq!(
        when(
            &given(&[registered("T", None, 0)]),
            register("A", Some("X"), 0)
        ),
        Err(NetworkError::UnknownSponsor {
            distributor_id: id("A"),
            sponsor: id("X")
        })
    );
}

#[test]
fn registering_before_the_sponsor_joined_is_refused() {
    assert_eq!(
        when(
            &given(&[registered("T", None, 5)]),
            register("A", Some("T"), 4)
        ),
        Err(NetworkError::SponsorNotYetRegistered {
            distributor_id: id("A"),
            sponsor: id("T"),
            at: day(4),
            sponsor_joined_at: day(5),
        })
    );
}

#[test]
fn registering_under_a_terminated_sponsor_is_refused() {
    let mut history = top_and_a();
    history.push(status_changed("A", Terminated, Active, 10));
    let network = given(&history);
    assert_eq!(
        when(&network, register("B", Some("A"), 10)),
        Err(NetworkError::SponsorTerminated {
            distributor_id: id("B"),
            sponsor: id("A"),
            at: day(10)
        })
    );
    // Before the termination the sponsor was usable.
    assert_eq!(
        when(&network, register("B", Some("A"), 9)).map(|e| e.len()),
        Ok(1)
    );
}

#[test]
fn registering_a_second_top_is_refused() {
    assert_eq!(
        when(&given(&[registered("T", None, 0)]), register("U", None, 0)),
        Err(NetworkError::SponsorRequired {
            distributor_id: id("U"),
            top: id("T")
        })
    );
}

#[test]
fn registering_as_ones_own_sponsor_is_refused() {
    assert_eq!(
        when(
            &given(&[registered("T", None, 0)]),
            register("A", Some("A"), 0)
        ),
        Err(NetworkError::SponsorCycle {
            distributor_id: id("A"),
            sponsor: id("A"),
            at: day(0)
        })
    );
}

#[test]
fn registering_with_a_taken_referral_code_is_refused() {
    let command = DistributorCommand::RegisterDistributor {
        distributor_id: id("B"),
        sponsor: Some(id("T")),
        referral_codes: vec![code("fresh"), code("r-a")],
        country: "US".into(),
        status: Active,
        rank: rank("member"),
        joined_at: day(1),
    };
    assert_eq!(
        when(&given(&top_and_a()), command),
        Err(NetworkError::ReferralCodeTaken {
            distributor_id: id("B"),
            referral_code: code("R-A"),
            owner: id("A"),
        })
    );
}

#[test]
fn registering_with_too_many_referral_codes_is_refused() {
    let codes: Vec<ReferralCode> = (0..=MAX_REFERRAL_CODES)
        .map(|i| code(&format!("C{i}")))
        .collect();
    let command = DistributorCommand::RegisterDistributor {
        distributor_id: id("B"),
        sponsor: Some(id("T")),
        referral_codes: codes,
        country: "US".into(),
        status: Active,
        rank: rank("member"),
        joined_at: day(1),
    };
    assert_eq!(
        when(&given(&[registered("T", None, 0)]), command),
        Err(NetworkError::TooManyReferralCodes {
            distributor_id: id("B"),
            count: MAX_REFERRAL_CODES + 1
        })
    );
}

#[test]
fn registering_with_a_malformed_country_is_refused() {
    for country in ["", "U", "USA", "U1", "ÜS"] {
        assert_eq!(
            when(
                &given(&[registered("T", None, 0)]),
                register_with("A", |r| r.country = country.into())
            ),
            Err(NetworkError::InvalidCountry {
                distributor_id: id("A"),
                country: country.into()
            }),
            "{country:?}"
        );
    }
}

// ---- ChangeSponsor ----

#[test]
fn changing_sponsor_records_the_new_and_previous_sponsor() {
    let mut history = top_and_a();
    history.push(registered("B", Some("T"), 0));
    assert_eq!(
        when(&given(&history), change_sponsor("B", "A", 5)),
        Ok(vec![DistributorEvent::SponsorChanged {
            distributor_id: id("B"),
            sponsor: id("A"),
            previous_sponsor: Some(id("T")),
            effective_at: day(5),
        }])
    );
}

#[test]
fn the_same_sponsor_change_again_records_nothing() {
    let mut history = top_and_a();
    history.push(registered("B", Some("T"), 0));
    let network = given(&history);
    let events = when(&network, change_sponsor("B", "A", 5)).unwrap();
    history.extend(events);
    assert_eq!(
        when(&given(&history), change_sponsor("B", "A", 5)),
        Ok(vec![])
    );
    // The registration's sponsor, from the registration's time, is already recorded too.
    assert_eq!(
        when(&given(&history), change_sponsor("B", "T", 0)),
        Ok(vec![])
    );
}

#[test]
fn changing_the_sponsor_of_an_unknown_distributor_is_refused() {
    assert_eq!(
        when(&given(&top_and_a()), change_sponsor("X", "A", 5)),
        Err(NetworkError::UnknownDistributor {
            distributor_id: id("X")
        })
    );
}

#[test]
fn changing_to_an_unknown_sponsor_is_refused() {
    assert_eq!(
        when(&given(&top_and_a()), change_sponsor("A", "X", 5)),
        Err(NetworkError::UnknownSponsor {
            distributor_id: id("A"),
            sponsor: id("X")
        })
    );
}

#[test]
fn a_sponsor_change_dated_before_registration_is_refused() {
    let history = vec![
        registered("T", None, 0),
        registered("A", Some("T"), 3),
        registered("B", Some("T"), 0),
    ];
    assert_eq!(
        when(&given(&history), change_sponsor("A", "B", 2)),
        Err(NetworkError::ChangeBeforeRegistration {
            distributor_id: id("A"),
            field: "sponsor",
            effective_at: day(2),
            joined_at: day(3),
        })
    );
}

#[test]
fn changing_to_a_sponsor_not_yet_registered_at_that_time_is_refused() {
    let history = vec![
        registered("T", None, 0),
        registered("A", Some("T"), 0),
        registered("B", Some("T"), 7),
    ];
    assert_eq!(
        when(&given(&history), change_sponsor("A", "B", 5)),
        Err(NetworkError::SponsorNotYetRegistered {
            distributor_id: id("A"),
            sponsor: id("B"),
            at: day(5),
            sponsor_joined_at: day(7),
        })
    );
}

#[test]
fn changing_to_a_sponsor_terminated_at_that_time_is_refused() {
    let mut history = top_and_a();
    history.push(registered("B", Some("T"), 0));
    history.push(status_changed("B", Terminated, Active, 4));
    let network = given(&history);
    assert_eq!(
        when(&network, change_sponsor("A", "B", 5)),
        Err(NetworkError::SponsorTerminated {
            distributor_id: id("A"),
            sponsor: id("B"),
            at: day(5)
        })
    );
    assert_eq!(
        when(&network, change_sponsor("A", "B", 3)).map(|e| e.len()),
        Ok(1)
    );
}

#[test]
fn sponsoring_oneself_is_refused() {
    assert_eq!(
        when(&given(&top_and_a()), change_sponsor("A", "A", 5)),
        Err(NetworkError::SponsorCycle {
            distributor_id: id("A"),
            sponsor: id("A"),
            at: day(5)
        })
    );
}

#[test]
fn a_different_sponsor_at_an_already_recorded_time_is_refused() {
    let mut history = top_and_a();
    history.push(registered("B", Some("T"), 0));
    history.push(registered("C", Some("T"), 0));
    history.extend(
        given(&history)
            .decide(&change_sponsor("C", "A", 5))
            .unwrap(),
    );
    let network = given(&history);
    let ambiguous = |at| NetworkError::AmbiguousHistory {
        distributor_id: id("C"),
        field: "sponsor",
        effective_at: day(at),
    };
    assert_eq!(
        when(&network, change_sponsor("C", "B", 5)),
        Err(ambiguous(5))
    );
    // The registration's time is recorded too.
    assert_eq!(
        when(&network, change_sponsor("C", "B", 0)),
        Err(ambiguous(0))
    );
}

// ---- ChangeStatus ----

#[test]
fn changing_status_records_the_new_and_previous_status() {
    assert_eq!(
        when(&given(&top_and_a()), change_status("A", Suspended, 5)),
        Ok(vec![status_changed("A", Suspended, Active, 5)])
    );
}

#[test]
fn a_back_dated_status_change_names_the_status_then_in_force_as_previous() {
    let mut history = top_and_a();
    history.push(status_changed("A", Inactive, Active, 10));
    assert_eq!(
        when(&given(&history), change_status("A", Suspended, 5)),
        Ok(vec![status_changed("A", Suspended, Active, 5)])
    );
    assert_eq!(
        when(&given(&history), change_status("A", Suspended, 12)),
        Ok(vec![status_changed("A", Suspended, Inactive, 12)])
    );
}

#[test]
fn the_same_status_change_again_records_nothing() {
    let mut history = top_and_a();
    history.push(status_changed("A", Inactive, Active, 10));
    let network = given(&history);
    assert_eq!(when(&network, change_status("A", Inactive, 10)), Ok(vec![]));
    assert_eq!(when(&network, change_status("A", Active, 0)), Ok(vec![]));
}

#[test]
fn restating_the_status_in_force_from_a_new_time_is_a_new_fact() {
    // "Active from day 7" bounds a later back-dated "inactive from day 3" at day 7.
    let network = given(&top_and_a());
    assert_eq!(
        when(&network, change_status("A", Active, 7)),
        Ok(vec![status_changed("A", Active, Active, 7)])
    );
}

#[test]
fn changing_the_status_of_an_unknown_distributor_is_refused() {
    assert_eq!(
        when(&given(&top_and_a()), change_status("X", Inactive, 5)),
        Err(NetworkError::UnknownDistributor {
            distributor_id: id("X")
        })
    );
}

#[test]
fn a_status_change_dated_before_registration_is_refused() {
    let history = vec![registered("T", None, 0), registered("A", Some("T"), 3)];
    assert_eq!(
        when(&given(&history), change_status("A", Inactive, 2)),
        Err(NetworkError::ChangeBeforeRegistration {
            distributor_id: id("A"),
            field: "status",
            effective_at: day(2),
            joined_at: day(3),
        })
    );
}

#[test]
fn a_different_status_at_an_already_recorded_time_is_refused() {
    let mut history = top_and_a();
    history.push(status_changed("A", Inactive, Active, 10));
    let network = given(&history);
    let ambiguous = |at| NetworkError::AmbiguousHistory {
        distributor_id: id("A"),
        field: "status",
        effective_at: day(at),
    };
    assert_eq!(
        when(&network, change_status("A", Suspended, 10)),
        Err(ambiguous(10))
    );
    assert_eq!(
        when(&network, change_status("A", Suspended, 0)),
        Err(ambiguous(0))
    );
}

// ---- ChangeRank ----

#[test]
fn changing_rank_records_the_new_and_previous_rank() {
    assert_eq!(
        when(&given(&top_and_a()), change_rank("A", "Gold", 5)),
        Ok(vec![DistributorEvent::RankChanged {
            distributor_id: id("A"),
            rank: rank("gold"),
            previous_rank: rank("member"),
            effective_at: day(5),
        }])
    );
}

#[test]
fn the_same_rank_change_again_records_nothing() {
    let mut history = top_and_a();
    history.extend(
        given(&history)
            .decide(&change_rank("A", "gold", 5))
            .unwrap(),
    );
    let network = given(&history);
    assert_eq!(when(&network, change_rank("A", "GOLD", 5)), Ok(vec![]));
    assert_eq!(when(&network, change_rank("A", "member", 0)), Ok(vec![]));
}

#[test]
fn changing_the_rank_of_an_unknown_distributor_is_refused() {
    assert_eq!(
        when(&given(&top_and_a()), change_rank("X", "gold", 5)),
        Err(NetworkError::UnknownDistributor {
            distributor_id: id("X")
        })
    );
}

#[test]
fn a_rank_change_dated_before_registration_is_refused() {
    let history = vec![registered("T", None, 0), registered("A", Some("T"), 3)];
    assert_eq!(
        when(&given(&history), change_rank("A", "gold", 2)),
        Err(NetworkError::ChangeBeforeRegistration {
            distributor_id: id("A"),
            field: "rank",
            effective_at: day(2),
            joined_at: day(3),
        })
    );
}

#[test]
fn a_different_rank_at_an_already_recorded_time_is_refused() {
    let mut history = top_and_a();
    history.extend(
        given(&history)
            .decide(&change_rank("A", "gold", 5))
            .unwrap(),
    );
    let network = given(&history);
    let ambiguous = |at| NetworkError::AmbiguousHistory {
        distributor_id: id("A"),
        field: "rank",
        effective_at: day(at),
    };
    // "platinum" was never recorded anywhere: still a conflict, not a new rank.
    assert_eq!(
        when(&network, change_rank("A", "platinum", 5)),
        Err(ambiguous(5))
    );
    assert_eq!(
        when(&network, change_rank("A", "silver", 0)),
        Err(ambiguous(0))
    );
}

// ---- apply and replay ----

#[test]
fn events_round_trip_through_the_codec_under_their_past_tense_names() {
    let mut network = Network::new();
    let mut recorded = Vec::new();
    for command in [
        register("T", None, 0),
        register("A", Some("T"), 1),
        register("B", Some("T"), 1),
        change_sponsor("B", "A", 4),
        change_status("A", Inactive, 5),
        change_rank("B", "gold", 6),
    ] {
        recorded.extend(network.execute(&command).unwrap());
    }
    let names: Vec<String> = recorded
        .iter()
        .map(|e| encode(e).unwrap().event_type)
        .collect();
    assert_eq!(
        names,
        [
            "DistributorRegistered",
            "DistributorRegistered",
            "DistributorRegistered",
            "SponsorChanged",
            "StatusChanged",
            "RankChanged"
        ]
    );
    let decoded: Vec<DistributorEvent> = recorded
        .iter()
        .map(|e| {
            let encoded = encode(e).unwrap();
            assert_eq!(encoded.schema_version, 1);
            decode(&encoded.event_type, &encoded.data).unwrap()
        })
        .collect();
    assert_eq!(decoded, recorded);
    assert_eq!(Network::replay(&decoded).unwrap(), network);
}

#[test]
fn applying_a_corrupted_history_fails_with_a_typed_error() {
    let mut network = given(&top_and_a());
    let orphan = DistributorEvent::SponsorChanged {
        distributor_id: id("A"),
        sponsor: id("GHOST"),
        previous_sponsor: Some(id("T")),
        effective_at: day(3),
    };
    assert_eq!(
        network.apply(&orphan),
        Err(NetworkError::UnknownSponsor {
            distributor_id: id("A"),
            sponsor: id("GHOST")
        })
    );
    // A cycle smuggled into the history is refused too.
    let cycle = DistributorEvent::SponsorChanged {
        distributor_id: id("T"),
        sponsor: id("A"),
        previous_sponsor: None,
        effective_at: day(3),
    };
    assert!(matches!(
        network.apply(&cycle),
        Err(NetworkError::SponsorCycle { .. })
    ));
    assert_eq!(
        network,
        given(&top_and_a()),
        "a refused event changes nothing"
    );
}

#[test]
fn applying_an_event_twice_changes_nothing() {
    let mut history = top_and_a();
    history.push(status_changed("A", Inactive, Active, 10));
    let once = given(&history);
    history.push(status_changed("A", Inactive, Active, 10));
    history.push(registered("A", Some("T"), 0));
    assert_eq!(given(&history), once);
}

#[test]
fn lookups_answer_from_the_recorded_history() {
    let mut history = top_and_a();
    history.push(status_changed("A", Inactive, Active, 10));
    let network = given(&history);
    assert_eq!(network.len(), 2);
    assert!(!network.is_empty());
    assert!(network.contains(&id("A")) && !network.contains(&id("X")));
    assert_eq!(network.by_referral_code(&code("r-a")), Some(&id("A")));
    assert_eq!(network.by_referral_code(&code("nope")), None);
    assert_eq!(network.joined_at(&id("A")), Some(day(0)));
    assert_eq!(network.country(&id("A")), Some("US"));
    assert_eq!(network.top(), Some(&id("T")));
    assert_eq!(network.sponsor_at(&id("A"), day(1)), Ok(Some(&id("T"))));
    assert_eq!(network.sponsor_at(&id("T"), day(1)), Ok(None));
    assert_eq!(network.status_at(&id("A"), day(9)), Ok(Active));
    assert_eq!(network.status_at(&id("A"), day(10)), Ok(Inactive));
    assert_eq!(network.rank_at(&id("A"), day(10)), Ok(&rank("member")));
    assert_eq!(
        network.status_at(&id("A"), day(-1)),
        Err(NetworkError::NotRegisteredAt {
            distributor_id: id("A"),
            at: day(-1),
            joined_at: day(0)
        })
    );
    assert_eq!(
        network.rank_at(&id("X"), day(1)),
        Err(NetworkError::UnknownDistributor {
            distributor_id: id("X")
        })
    );
}

#[test]
fn errors_name_the_distributor_and_field() {
    let error = NetworkError::AmbiguousHistory {
        distributor_id: id("A7"),
        field: "status",
        effective_at: day(0),
    };
    let text = error.to_string();
    assert!(text.contains("A7") && text.contains("status"), "{text}");
}
