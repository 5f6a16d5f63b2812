//! The hierarchy read model on both read stores, over network events written by the real
//! application: current sponsor, status and rank (a back-dated change does not replace a later
//! value), upline to the top, paged breadth-first downline, subtrees that move with a sponsor
//! change, and a rebuild that gives the same rows.

mod common;

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use common::on_every_read_store;
use upline_app::{App, AppConfig, Provenance};
use upline_domain::ids::{DistributorId, RankName, ReferralCode};
use upline_domain::network::DistributorCommand;
use upline_domain::snapshot::DistributorStatus;
use upline_projections::hierarchy::{HierarchyProjection, HierarchyQuery, Member};
use upline_projections::{Projection, ProjectionRunner, ReadStore};
use upline_store::EventStore;

fn t(month: u32, day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, month, day, 12, 0, 0)
        .single()
        .unwrap()
}

fn id(name: &str) -> DistributorId {
    DistributorId::new(name).unwrap()
}

fn cmd() -> Provenance {
    Provenance::command("test")
}

async fn run(app: &App, command: DistributorCommand) {
    app.company()
        .execute_network(&command, &cmd())
        .await
        .unwrap();
}

/// top <- a1, a2, a3; a1 <- b1, b2, b3, b4; b1 <- c1 <- e1.
async fn network(app: &App) {
    let members = [
        ("top", None),
        ("a1", Some("top")),
        ("a2", Some("top")),
        ("a3", Some("top")),
        ("b1", Some("a1")),
        ("b2", Some("a1")),
        ("b3", Some("a1")),
        ("b4", Some("a1")),
        ("c1", Some("b1")),
        ("e1", Some("c1")),
    ];
    for (i, (name, sponsor)) in members.iter().enumerate() {
        run(
            app,
            DistributorCommand::RegisterDistributor {
                distributor_id: id(name),
                sponsor: sponsor.map(id),
                referral_codes: vec![ReferralCode::new(format!("R{i}")).unwrap()],
                country: if i % 2 == 0 { "US" } else { "ca" }.into(),
                status: DistributorStatus::Active,
                rank: RankName::new("member").unwrap(),
                joined_at: t(1, 1 + i as u32),
            },
        )
        .await;
    }
}

fn runner(store: &Arc<dyn EventStore>, read: &ReadStore) -> ProjectionRunner {
    ProjectionRunner::new(
        store.clone(),
        read.clone(),
        vec![Arc::new(HierarchyProjection)],
    )
    .with_page_size(8)
}

fn names(members: &[Member]) -> Vec<(String, u32)> {
    members
        .iter()
        .map(|m| (m.distributor_id.clone(), m.hops))
        .collect()
}

fn expect(pairs: &[(&str, u32)]) -> Vec<(String, u32)> {
    pairs.iter().map(|(n, h)| (n.to_string(), *h)).collect()
}

/// The whole downline of `of`, `limit` at a time.
async fn whole_downline(
    q: &HierarchyQuery,
    of: &str,
    depth: u32,
    limit: u32,
) -> Vec<Vec<(String, u32)>> {
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let page = q.downline(of, depth, after.as_ref(), limit).await.unwrap();
        pages.push(names(&page.members));
        match page.next {
            Some(cursor) => after = Some(cursor),
            None => break,
        }
    }
    pages
}

#[tokio::test]
async fn upline_downline_and_current_values() {
    on_every_read_store(|target| async move {
        let label = target.label;
        let dir = tempfile::tempdir().unwrap();
        let store = common::event_store(dir.path()).await;
        let app = App::open(store.clone(), AppConfig::default())
            .await
            .unwrap();
        network(&app).await;
        // Commission postings of the same distributors, on their own streams: never read here.
        for (i, posting) in common::postings(0, 12).iter().enumerate() {
            let stream = format!("commissions-{}", ["a1", "b1", "top"][i % 3]);
            let data =
                upline_app::eventio::event_data(&stream, &i.to_string(), &posting.event, &cmd())
                    .unwrap();
            store
                .append(&stream, upline_store::ExpectedRevision::Any, vec![data])
                .await
                .unwrap();
        }
        let read = target.connect().await;
        runner(&store, &read).catch_up().await.unwrap();
        let q = HierarchyQuery::new(read.clone());

        let e1 = q.distributor("e1").await.unwrap().unwrap();
        assert_eq!(e1.sponsor_id.as_deref(), Some("c1"));
        assert_eq!((e1.depth, e1.hops), (4, 0), "{label}");
        assert_eq!(e1.referral_codes, vec!["R9"]);
        assert_eq!(e1.country, "CA");
        assert_eq!(e1.joined_at, t(1, 10));
        assert_eq!((e1.status.as_str(), e1.rank.as_str()), ("active", "member"));
        assert_eq!(
            names(&q.upline("e1").await.unwrap()),
            expect(&[("c1", 1), ("b1", 2), ("a1", 3), ("top", 4)]),
            "{label}"
        );
        assert!(q.upline("top").await.unwrap().is_empty());
        assert!(q.distributor("nobody").await.unwrap().is_none());
        assert_eq!(q.downline_count("top", 0).await.unwrap(), 9, "{label}");
        assert_eq!(q.downline_count("a1", 1).await.unwrap(), 4, "{label}");

        // b2 moves to a2; b1 moves to a3 with its downline; b3 becomes silver from March, then
        // a back-dated change says bronze from February: silver stays current; b4 is suspended.
        let sponsor = |who: &str, to: &str, day| DistributorCommand::ChangeSponsor {
            distributor_id: id(who),
            sponsor: id(to),
            effective_at: t(2, day),
        };
        run(&app, sponsor("b2", "a2", 1)).await;
        run(&app, sponsor("b1", "a3", 2)).await;
        for (rank, at) in [("silver", t(3, 1)), ("bronze", t(2, 1))] {
            run(
                &app,
                DistributorCommand::ChangeRank {
                    distributor_id: id("b3"),
                    rank: RankName::new(rank).unwrap(),
                    effective_at: at,
                },
            )
            .await;
        }
        run(
            &app,
            DistributorCommand::ChangeStatus {
                distributor_id: id("b4"),
                status: DistributorStatus::Suspended,
                effective_at: t(3, 1),
            },
        )
        .await;
        runner(&store, &read).catch_up().await.unwrap();

        assert_eq!(
            names(&q.upline("e1").await.unwrap()),
            expect(&[("c1", 1), ("b1", 2), ("a3", 3), ("top", 4)]),
            "{label}"
        );
        assert_eq!(
            q.distributor("b2")
                .await
                .unwrap()
                .unwrap()
                .sponsor_id
                .as_deref(),
            Some("a2")
        );
        let b3 = q.distributor("b3").await.unwrap().unwrap();
        assert_eq!(b3.rank, "silver", "{label}");
        assert_eq!(
            q.distributor("b4").await.unwrap().unwrap().status,
            "suspended"
        );

        // Breadth first, three at a time.
        assert_eq!(
            whole_downline(&q, "top", 0, 3).await,
            vec![
                expect(&[("a1", 1), ("a2", 1), ("a3", 1)]),
                expect(&[("b1", 2), ("b2", 2), ("b3", 2)]),
                expect(&[("b4", 2), ("c1", 3), ("e1", 4)]),
            ],
            "{label}"
        );
        assert_eq!(
            whole_downline(&q, "a1", 0, 0).await,
            vec![expect(&[("b3", 1), ("b4", 1)])],
            "{label}"
        );
        assert_eq!(
            whole_downline(&q, "a3", 2, 1).await,
            vec![expect(&[("b1", 1)]), expect(&[("c1", 2)])],
            "{label}"
        );
        let a3 = q.downline("a3", 0, None, 0).await.unwrap();
        assert_eq!(
            a3.members
                .iter()
                .map(|m| (m.distributor_id.as_str(), m.depth))
                .collect::<Vec<_>>(),
            vec![("b1", 2), ("c1", 3), ("e1", 4)],
            "{label}"
        );
        assert!(a3.next.is_none());
        let cursor = upline_projections::hierarchy::DownlineCursor::parse("2:b1").unwrap();
        assert_eq!(cursor.token(), "2:b1");
        assert!(upline_projections::hierarchy::DownlineCursor::parse("x").is_err());

        // A rebuild gives the same answers.
        let before = (
            whole_downline(&q, "top", 0, 100).await,
            q.distributor("b3").await.unwrap(),
        );
        runner(&store, &read)
            .rebuild(Some("hierarchy"), |_| {})
            .await
            .unwrap();
        let after = (
            whole_downline(&q, "top", 0, 100).await,
            q.distributor("b3").await.unwrap(),
        );
        assert_eq!(after, before, "{label}");
        read.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_member_recorded_before_their_sponsor_is_attached_when_the_sponsor_arrives() {
    use upline_domain::network::DistributorEvent;
    on_every_read_store(|target| async move {
        let label = target.label;
        let dir = tempfile::tempdir().unwrap();
        let store = common::event_store(dir.path()).await;
        // Written directly (the network itself never records them in this order): kid, then
        // their sponsor mom, then mom's sponsor gran.
        for (name, sponsor) in [("kid", Some("mom")), ("mom", Some("gran")), ("gran", None)] {
            let stream = format!("distributor-{name}");
            let event = DistributorEvent::DistributorRegistered {
                distributor_id: id(name),
                sponsor: sponsor.map(id),
                referral_codes: vec![],
                country: "US".into(),
                status: DistributorStatus::Active,
                rank: RankName::new("member").unwrap(),
                joined_at: t(1, 1),
            };
            let data = upline_app::eventio::event_data(&stream, "0", &event, &cmd()).unwrap();
            store
                .append(
                    &stream,
                    upline_store::ExpectedRevision::NoStream,
                    vec![data],
                )
                .await
                .unwrap();
        }
        let read = target.connect().await;
        runner(&store, &read).catch_up().await.unwrap();
        let q = HierarchyQuery::new(read.clone());
        assert_eq!(
            names(&q.upline("kid").await.unwrap()),
            expect(&[("mom", 1), ("gran", 2)]),
            "{label}"
        );
        assert_eq!(q.distributor("kid").await.unwrap().unwrap().depth, 2);
        assert_eq!(
            whole_downline(&q, "gran", 0, 0).await,
            vec![expect(&[("mom", 1), ("kid", 2)])],
            "{label}"
        );

        // Applying every event again changes nothing.
        let before = whole_downline(&q, "gran", 0, 0).await;
        let projection = HierarchyProjection;
        let events = store
            .read_all(
                upline_store::AllStart::Start,
                &upline_projections::projection::filter_of(&projection),
                100,
            )
            .await
            .unwrap();
        let mut tx = read.begin().await.unwrap();
        for event in &events {
            projection.apply(&mut tx, 1, event).await.unwrap();
        }
        tx.commit().await.unwrap();
        assert_eq!(whole_downline(&q, "gran", 0, 0).await, before, "{label}");
        read.close().await;
    })
    .await;
}
