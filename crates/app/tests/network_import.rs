//! `CompanyModel::import_network`: many network commands decided in order and appended in
//! ordered groups, with the same facts and the same refusals as one command at a time.

mod support;

use std::sync::Arc;

use upline_app::company::CompanyModel;
use upline_app::{streams, App, AppConfig};
use upline_domain::ids::{DistributorId, RankName};
use upline_domain::network::DistributorCommand;
use upline_domain::snapshot::DistributorStatus;
use upline_store::limits::MAX_APPENDS_IN_ORDER;
use upline_store::{AllStart, EventStore, StreamFilter};

use support::{cmd, open_store, outage, t, FailingStore};

/// More than two ordered groups of appends.
const DISTRIBUTORS: usize = 2 * MAX_APPENDS_IN_ORDER + 100;

fn id(i: usize) -> DistributorId {
    DistributorId::new(format!("n{i:05}")).unwrap()
}

/// A tree where each distributor is sponsored by one registered before them (so the file's
/// order matters), every 7th one promoted later.
fn registrations(count: usize) -> Vec<DistributorCommand> {
    let mut commands: Vec<DistributorCommand> = (0..count)
        .map(|i| DistributorCommand::RegisterDistributor {
            distributor_id: id(i),
            sponsor: (i > 0).then(|| id((i - 1) / 3)),
            referral_codes: vec![],
            country: "US".into(),
            status: DistributorStatus::Active,
            rank: RankName::new("silver").unwrap(),
            joined_at: t(1, 1),
        })
        .collect();
    commands.extend(
        (0..count)
            .step_by(7)
            .map(|i| DistributorCommand::ChangeRank {
                distributor_id: id(i),
                rank: RankName::new("gold").unwrap(),
                effective_at: t(2, 1),
            }),
    );
    commands
}

/// The model holds every distributor of [`registrations`]`(DISTRIBUTORS)`, each under the
/// sponsor registered before them and promoted where the file promotes them.
async fn holds_the_whole_network(model: &CompanyModel) {
    let state = model.read().await;
    let network = &state.company.network;
    assert_eq!(network.len(), DISTRIBUTORS);
    let last = id(DISTRIBUTORS - 1);
    assert_eq!(
        network.sponsor_at(&last, t(3, 1)).unwrap().cloned(),
        Some(id((DISTRIBUTORS - 2) / 3))
    );
    assert_eq!(network.rank_at(&id(7), t(3, 1)).unwrap().as_str(), "gold");
}

async fn distributor_events(store: &dyn EventStore) -> usize {
    let filter = StreamFilter::prefix(streams::DISTRIBUTOR_PREFIX);
    let mut count = 0;
    let mut from = AllStart::Start;
    loop {
        let page = store.read_all(from, &filter, 5_000).await.unwrap();
        let Some(last) = page.last() else {
            return count;
        };
        from = AllStart::After(last.position);
        count += page.len();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_records_every_fact_in_order_and_a_second_import_records_none() {
    // Given an empty company, when a network of several append groups is imported,
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).await;
    let app = App::open(store.clone(), AppConfig::default())
        .await
        .unwrap();
    let commands = registrations(DISTRIBUTORS);
    let done = app
        .company()
        .import_network(&commands, &cmd())
        .await
        .unwrap();
    // then every command recorded one event,
    assert_eq!(done.recorded, commands.len());
    assert_eq!(done.known, 0);
    assert_eq!(distributor_events(store.as_ref()).await, commands.len());
    // and the store, read from scratch (in $all order), gives the same network: each
    // sponsor's registration came before the distributors under them.
    let reloaded = CompanyModel::load(store.clone()).await.unwrap();
    holds_the_whole_network(&reloaded).await;
    // When the same file is imported again, then nothing is recorded.
    let again = app
        .company()
        .import_network(&commands, &cmd())
        .await
        .unwrap();
    assert_eq!(again.recorded, 0);
    assert_eq!(again.known, commands.len());
    assert_eq!(distributor_events(store.as_ref()).await, commands.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_command_stops_the_import_after_recording_everything_before_it() {
    // Given a file whose command 5000 names a sponsor nobody registered,
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).await;
    let app = App::open(store.clone(), AppConfig::default())
        .await
        .unwrap();
    let mut commands = registrations(6_000);
    let refused = 5_000;
    if let DistributorCommand::RegisterDistributor { sponsor, .. } = &mut commands[refused] {
        *sponsor = Some(DistributorId::new("nobody").unwrap());
    }
    // when it is imported,
    let error = app
        .company()
        .import_network(&commands, &cmd())
        .await
        .unwrap_err();
    // then the error names that command and its reason,
    assert_eq!(error.index, refused);
    assert!(error.to_string().contains("nobody"), "{error}");
    // every command before it is recorded and none after it,
    assert_eq!(error.done.recorded, refused);
    assert_eq!(distributor_events(store.as_ref()).await, refused);
    let state = app.company().read().await;
    assert!(state.company.network.contains(&id(refused - 1)));
    assert!(!state.company.network.contains(&id(refused)));
    assert!(!state.company.network.contains(&id(refused + 1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_append_leaves_the_model_holding_exactly_what_is_stored() {
    // Given a store that fails the append of one distributor in the second group,
    let dir = tempfile::tempdir().unwrap();
    let failing = FailingStore::over(open_store(dir.path()).await);
    let store: Arc<dyn EventStore> = failing.clone();
    let app = App::open(store.clone(), AppConfig::default())
        .await
        .unwrap();
    let commands = registrations(DISTRIBUTORS);
    let victim = MAX_APPENDS_IN_ORDER + 10;
    failing.fail_appends(&streams::distributor(&id(victim)), 1, outage());
    // when the network is imported,
    let error = app
        .company()
        .import_network(&commands, &cmd())
        .await
        .unwrap_err();
    // then the import stops at that distributor with the store's error,
    assert_eq!(error.index, victim);
    assert!(error.to_string().contains("disk I/O error"), "{error}");
    // every command before it is recorded and none from it on,
    assert_eq!(error.done.recorded, victim);
    let stored = distributor_events(store.as_ref()).await;
    assert_eq!(stored, victim);
    // and the model holds what the store holds, no more.
    let state = app.company().read().await;
    assert!(!state.company.network.contains(&id(victim)));
    assert!(!state.company.network.contains(&id(victim + 1)));
    assert_eq!(state.company.network.len(), stored);
    drop(state);
    // When the store heals and the file is imported again, then the rest is recorded.
    failing.heal();
    let again = app
        .company()
        .import_network(&commands, &cmd())
        .await
        .unwrap();
    assert_eq!(
        distributor_events(store.as_ref()).await,
        stored + again.recorded
    );
    assert!(app
        .company()
        .read()
        .await
        .company
        .network
        .contains(&id(victim)));
}

/// Given a company model loaded while the company was empty, when another process imports a
/// network of more events than one page, then a refresh takes in all of it, in `$all` order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_takes_in_every_page_another_process_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).await;
    let watching = CompanyModel::load(store.clone()).await.unwrap();
    let importer = CompanyModel::load(store.clone()).await.unwrap();
    let commands = registrations(DISTRIBUTORS);
    importer.import_network(&commands, &cmd()).await.unwrap();
    assert_eq!(watching.read().await.company.network.len(), 0);

    watching.refresh().await.unwrap();

    holds_the_whole_network(&watching).await;
}
