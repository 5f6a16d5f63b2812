//! Batch size is not a fact: given the same history of events, every projection's tables are
//! the same whether the runner applies the events one per batch or many per batch.
//!
//! The history is made through the real path, as in `real_path_props` (`common::real_path`):
//! `upline_app::App` records random orders (partial refunds by quantity, stated amounts and
//! amounts only, cancellations, duplicate deliveries, shuffled arrival) in the embedded SQLite
//! event store, placed in two shops, on two days a month apart and in two currencies, so orders
//! share days, shops and currencies; some orders sell a SKU the catalog maps only after every
//! delivery, so their updates are parked, and retried once it is mapped; `CommissionPostings`
//! posts the commissions (before the retries and again to the head after them, so postings
//! interleave with later order events).
//!
//! Then three runners with every projection (`all_projections()`) build the read models from
//! that one event store into three SQLite read stores: one event per batch, 10 000 per batch,
//! and 2 to 7 per batch (so batches cut an order's events anywhere). Every table of every
//! projection (`Projection::tables()`, read through its view), every row ordered by all its
//! columns, each value as SQLite's `quote()` text, and the checkpoints and held events must be
//! the same in all three.
//!
//! The hierarchy gets its own history: random network events written straight to the store,
//! including what the network itself refuses (a member before their sponsor, repeats, changes
//! of unknown members, cycles), so that its bulk registration meets every case it must leave to
//! the one-event path.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use common::real_path::{
    case, cmd, deliver, deliveries_of, every_event, map_sku, order_head, seeded_app, t,
    updates_placed, Case, Placement, SHOP,
};
use proptest::prelude::*;
use sqlx::Row;
use upline_app::{App, CommissionPostings};
use upline_domain::money::Currency;
use upline_platforms::model::OrderUpdate;
use upline_projections::{all_projections, ProjectionRunner, ReadStore};
use upline_store::EventStore;

/// The second shop orders may be placed in.
const OTHER_SHOP: &str = "beta.myshopify.com";
/// The SKU no order can be calculated with until it is mapped, after every delivery.
const LATE_SKU: &str = "LATE-1";
/// The big batch: more events than any history here has.
const BIG_PAGE: usize = 10_000;

#[derive(Debug, Clone)]
struct History {
    case: Case,
    /// Per order, by index modulo the length: (shop pick, day pick, currency pick).
    placements: Vec<(usize, usize, usize)>,
    /// Per order, by index modulo the length: its first line sells [`LATE_SKU`].
    late: Vec<bool>,
    /// The third runner's batch size.
    small_page: usize,
}

fn history() -> impl Strategy<Value = History> {
    (
        case(),
        prop::collection::vec(
            (
                0usize..2,
                0usize..2,
                prop_oneof![3 => Just(0usize), 1 => Just(1)],
            ),
            1..=4,
        ),
        prop::collection::vec(prop::bool::weighted(0.25), 1..=4),
        2usize..=7,
    )
        .prop_map(|(case, placements, late, small_page)| History {
            case,
            placements,
            late,
            small_page,
        })
}

fn placement(history: &History, n: usize) -> Placement {
    let (shop, day, currency) = history.placements[n % history.placements.len()];
    Placement {
        shop: [SHOP, OTHER_SHOP][shop].into(),
        // February 28th and March 10th: two days, two months, every order paid on March 11th.
        placed_at: [t(2, 28), t(3, 10)][day],
        currency: [Currency::USD, Currency::EUR][currency],
    }
}

/// Every delivery of the history, duplicated and shuffled; a late order's first line sells
/// [`LATE_SKU`].
fn deliveries(history: &History) -> Vec<OrderUpdate> {
    deliveries_of(&history.case, |n, draft| {
        let mut updates = updates_placed(n, draft, &placement(history, n));
        if history.late[n % history.late.len()] {
            for update in &mut updates {
                if let Some(order) = &mut update.order {
                    order.lines[0].platform_sku = LATE_SKU.into();
                }
            }
        }
        updates
    })
}

/// Records the history in an event store in `dir`; what failed on the way.
async fn record(dir: &Path, history: &History) -> (Arc<dyn EventStore>, Vec<String>) {
    let (store, app) = seeded_app(dir).await;
    let mut failed = deliver(&app, &deliveries(history)).await;
    let postings = CommissionPostings::open(store.clone())
        .await
        .expect("open postings");
    if let Err(e) = postings.catch_up().await {
        failed.push(format!("postings: {e}"));
    }
    map_sku(&app, LATE_SKU, "retail", None).await;
    failed.extend(retry_parked(&app).await);
    if let Err(e) = postings.catch_up().await {
        failed.push(format!("postings: {e}"));
    }
    let (at, head) = (*postings.position().borrow(), order_head(&store).await);
    if at != head {
        failed.push(format!("postings stopped at {at} of {head}"));
    }
    (store, failed)
}

/// Retries every parked order (a retry may park it again: that is history too).
async fn retry_parked(app: &App) -> Vec<String> {
    let mut failed = Vec::new();
    for parked in app.list_parked().await.expect("list parked") {
        if let Err(e) = app.retry_parked(&parked.order_stream, &cmd()).await {
            failed.push(format!("retry {}: {e}", parked.order_stream));
        }
    }
    failed
}

/// A read store's contents: every table of every projection by logical name (its column names
/// first, then its rows in order), the checkpoints and the held events.
type Contents = BTreeMap<String, Vec<Vec<String>>>;

/// The rows of `select` (every column a `quote()`), as text.
async fn rows(read: &ReadStore, select: &str) -> Vec<Vec<String>> {
    let rows = sqlx::query(select)
        .fetch_all(read.pool())
        .await
        .unwrap_or_else(|e| panic!("{select}: {e}"));
    rows.iter()
        .map(|row| {
            (0..row.len())
                .map(|i| row.try_get::<String, _>(i).expect("quoted text"))
                .collect()
        })
        .collect()
}

/// `SELECT quote(c1), .. FROM from ORDER BY c1, ..` over `columns`.
fn select_all(from: &str, columns: &[String]) -> String {
    let quoted: Vec<String> = columns.iter().map(|c| format!("quote(\"{c}\")")).collect();
    let ordered: Vec<String> = columns.iter().map(|c| format!("\"{c}\"")).collect();
    format!(
        "SELECT {} FROM {from} ORDER BY {}",
        quoted.join(", "),
        ordered.join(", ")
    )
}

async fn contents(store: &Arc<dyn EventStore>, read: &ReadStore) -> Contents {
    let mut contents = Contents::new();
    for projection in all_projections(store.clone()) {
        for table in projection.tables() {
            let columns: Vec<String> = sqlx::query(&format!(
                "SELECT name FROM pragma_table_info('{table}') ORDER BY cid"
            ))
            .fetch_all(read.pool())
            .await
            .expect("columns")
            .iter()
            .map(|row| row.try_get("name").expect("column name"))
            .collect();
            assert!(!columns.is_empty(), "{table}: no columns");
            let mut table_rows = vec![columns.clone()];
            table_rows.extend(rows(read, &select_all(table, &columns)).await);
            contents.insert(format!("{}.{table}", projection.name()), table_rows);
        }
    }
    // `updated_at` (of projection_state) and `held_at` (of projection_held) are left out: both
    // are the wall clock at the time of writing, not facts of the events.
    let bookkeeping = [
        (
            "projection_state",
            "name, generation, position, rebuilding_generation, rebuilding_position, \
             last_recorded_at",
        ),
        (
            "projection_held",
            "projection, generation, position, stream, revision, event_id, event_type, reason, \
             retries, behind",
        ),
    ];
    for (table, columns) in bookkeeping {
        let columns: Vec<String> = columns.split(", ").map(str::to_string).collect();
        let mut table_rows = vec![columns.clone()];
        table_rows.extend(rows(read, &select_all(table, &columns)).await);
        contents.insert(table.to_string(), table_rows);
    }
    contents
}

/// Builds every projection from `store` into a fresh read store in `dir`, `page_size` events per
/// batch, and reads it all back.
async fn build(
    store: &Arc<dyn EventStore>,
    dir: &Path,
    page_size: usize,
) -> Result<Contents, TestCaseError> {
    let path = dir.join(format!("read-{page_size}.sqlite"));
    let read = ReadStore::connect(&path.to_string_lossy())
        .await
        .expect("read store");
    let runner = ProjectionRunner::new(store.clone(), read.clone(), all_projections(store.clone()))
        .with_page_size(page_size);
    runner
        .catch_up()
        .await
        .map_err(|e| TestCaseError::fail(format!("page size {page_size}: {e}")))?;
    for status in runner.status().await.expect("status") {
        prop_assert_eq!(
            status.lag_events,
            0,
            "page size {}: {} is {} events behind",
            page_size,
            status.name,
            status.lag_events
        );
    }
    let contents = contents(store, &read).await;
    read.close().await;
    Ok(contents)
}

/// What differs between two read stores' contents, table by table: the rows only one has.
fn differences(a: &Contents, b: &Contents) -> Vec<String> {
    let mut found = Vec::new();
    for (table, a_rows) in a {
        let b_rows = &b[table];
        if a_rows == b_rows {
            continue;
        }
        let only = |x: &[Vec<String>], y: &[Vec<String>]| -> Vec<String> {
            let mut y: Vec<&Vec<String>> = y.iter().collect();
            x.iter()
                .filter(|row| match y.iter().position(|other| other == row) {
                    Some(i) => {
                        y.remove(i);
                        false
                    }
                    None => true,
                })
                .map(|row| row.join(" | "))
                .collect()
        };
        found.push(format!(
            "{table} (columns {}):\n  only in the first:  {:#?}\n  only in the second: {:#?}",
            a_rows[0].join(", "),
            only(a_rows, b_rows),
            only(b_rows, a_rows),
        ));
    }
    found
}

async fn batch_size_changes_nothing(history: History) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, failed) = record(dir.path(), &history).await;
    prop_assert!(
        failed.is_empty(),
        "recording the history failed: {failed:#?}"
    );

    let one = build(&store, dir.path(), 1).await?;
    let big = build(&store, dir.path(), BIG_PAGE).await?;
    let small = build(&store, dir.path(), history.small_page).await?;

    // The comparison must have something to compare: every projection has rows, the ledger
    // whenever anything was posted.
    let posted = every_event(&store)
        .await
        .iter()
        .any(|e| e.stream_id.starts_with("commissions-"));
    for projection in all_projections(store.clone()) {
        let rows: usize = projection
            .tables()
            .iter()
            .map(|table| one[&format!("{}.{table}", projection.name())].len() - 1)
            .sum();
        if projection.name() != "ledger" || posted {
            prop_assert!(rows > 0, "{} has no rows", projection.name());
        }
    }
    prop_assert!(
        one["projection_held"].len() == 1,
        "events held: {:#?}",
        one["projection_held"]
    );

    for (label, other) in [
        (format!("{BIG_PAGE}"), &big),
        (format!("{}", history.small_page), &small),
    ] {
        let found = differences(&one, other);
        prop_assert!(
            found.is_empty(),
            "one event per batch and {label} per batch differ:\n{}",
            found.join("\n")
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// Given a random history through the real app and the postings, when every projection is
    /// built from it one event per batch, 10 000 per batch and 2 to 7 per batch, then every
    /// table of every projection, the checkpoints and the held events are the same.
    #[test]
    fn every_table_is_the_same_whatever_the_batch_size(history in history()) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(batch_size_changes_nothing(history))?;
    }
}

/// One network event as the hierarchy's batch test writes it, straight to the store (the
/// network itself would refuse some of them: a member before their sponsor, a repeated
/// registration, a change of someone not registered, a cycle), members named by index.
#[derive(Debug, Clone)]
enum NetworkFact {
    Registered {
        member: usize,
        sponsor: Option<usize>,
        day: u32,
    },
    SponsorChanged {
        member: usize,
        sponsor: usize,
        day: u32,
    },
    StatusChanged {
        member: usize,
        active: bool,
        day: u32,
    },
    RankChanged {
        member: usize,
        day: u32,
    },
}

/// Members the network histories name.
const MEMBERS: usize = 12;

fn registered() -> impl Strategy<Value = NetworkFact> {
    (
        0..MEMBERS,
        prop::option::weighted(0.9, 0..MEMBERS),
        1u32..=28,
    )
        .prop_map(|(member, sponsor, day)| NetworkFact::Registered {
            member,
            sponsor,
            day,
        })
}

fn network_fact() -> impl Strategy<Value = NetworkFact> {
    let member = 0..MEMBERS;
    let day = 1u32..=28;
    prop_oneof![
        8 => registered(),
        1 => (member.clone(), 0..MEMBERS, day.clone())
            .prop_map(|(member, sponsor, day)| NetworkFact::SponsorChanged { member, sponsor, day }),
        1 => (member.clone(), any::<bool>(), day.clone())
            .prop_map(|(member, active, day)| NetworkFact::StatusChanged { member, active, day }),
        1 => (member, day).prop_map(|(member, day)| NetworkFact::RankChanged { member, day }),
    ]
}

/// The network history `facts` in a fresh event store in `dir`.
async fn record_network(dir: &Path, facts: &[NetworkFact]) -> Arc<dyn EventStore> {
    use upline_domain::ids::{DistributorId, RankName};
    use upline_domain::network::DistributorEvent;
    use upline_domain::snapshot::DistributorStatus;
    let store = common::event_store(dir).await;
    let id = |n: usize| DistributorId::new(format!("m{n}")).expect("member id");
    let rank = |name: &str| RankName::new(name).expect("rank");
    let status = |active: bool| match active {
        true => DistributorStatus::Active,
        false => DistributorStatus::Inactive,
    };
    for (n, fact) in facts.iter().enumerate() {
        let (member, event) = match *fact {
            NetworkFact::Registered {
                member,
                sponsor,
                day,
            } => (
                member,
                DistributorEvent::DistributorRegistered {
                    distributor_id: id(member),
                    sponsor: sponsor.map(id),
                    referral_codes: vec![],
                    country: "US".into(),
                    status: DistributorStatus::Active,
                    rank: rank("member"),
                    joined_at: t(1, day),
                },
            ),
            NetworkFact::SponsorChanged {
                member,
                sponsor,
                day,
            } => (
                member,
                DistributorEvent::SponsorChanged {
                    distributor_id: id(member),
                    sponsor: id(sponsor),
                    previous_sponsor: None,
                    effective_at: t(2, day),
                },
            ),
            NetworkFact::StatusChanged {
                member,
                active,
                day,
            } => (
                member,
                DistributorEvent::StatusChanged {
                    distributor_id: id(member),
                    status: status(active),
                    previous_status: status(!active),
                    effective_at: t(2, day),
                },
            ),
            NetworkFact::RankChanged { member, day } => (
                member,
                DistributorEvent::RankChanged {
                    distributor_id: id(member),
                    rank: rank(&format!("rank-{day}")),
                    previous_rank: rank("member"),
                    effective_at: t(2, day),
                },
            ),
        };
        let stream = format!("distributor-m{member}");
        let data = upline_app::eventio::event_data(&stream, &n.to_string(), &event, &cmd())
            .expect("event data");
        store
            .append(&stream, upline_store::ExpectedRevision::Any, vec![data])
            .await
            .expect("append");
    }
    store
}

async fn hierarchy_batch_size_changes_nothing(
    facts: Vec<NetworkFact>,
    small_page: usize,
) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = record_network(dir.path(), &facts).await;
    let one = build(&store, dir.path(), 1).await?;
    let big = build(&store, dir.path(), BIG_PAGE).await?;
    let small = build(&store, dir.path(), small_page).await?;
    prop_assert!(
        one["hierarchy.hierarchy_distributors"].len() > 1,
        "nobody registered"
    );
    for (label, other) in [
        (format!("{BIG_PAGE}"), &big),
        (format!("{small_page}"), &small),
    ] {
        let found = differences(&one, other);
        prop_assert!(
            found.is_empty(),
            "one event per batch and {label} per batch differ:\n{}",
            found.join("\n")
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Given a network history written straight to the store (members before their sponsors,
    /// repeats, changes of members not registered, cycles), when the hierarchy is built one
    /// event per batch, 10 000 per batch and 2 to 7 per batch, then its tables, checkpoint and
    /// held events are the same: the bulk registration of new members writes what one event
    /// at a time writes.
    #[test]
    fn every_hierarchy_row_is_the_same_whatever_the_batch_size(
        facts in (registered(), prop::collection::vec(network_fact(), 0..40))
            .prop_map(|(first, mut rest)| { rest.insert(0, first); rest }),
        small_page in 2usize..=7,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(hierarchy_batch_size_changes_nothing(facts, small_page))?;
    }
}
