//! Connecting to the read stores: locations, migrations, the default in the data directory.

mod common;

use common::*;
use sqlx::Row;
use upline_projections::{open_default, Engine, ProjectionError, ReadStore};

#[tokio::test]
async fn the_default_read_store_is_sqlite_in_wal_mode_in_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store = event_store(dir.path()).await;
    append(&store, &postings(0, 5)).await;
    let data_dir = dir.path().join("nested").join("data");
    let runner = open_default(store.clone(), &data_dir, None).await.unwrap();
    assert_eq!(runner.read_store().engine(), Engine::Sqlite);
    assert!(data_dir.join("read.sqlite").exists());
    let mode: String = sqlx::query("PRAGMA journal_mode")
        .fetch_one(runner.read_store().pool())
        .await
        .unwrap()
        .try_get(0)
        .unwrap();
    assert_eq!(mode, "wal");
    runner.catch_up().await.unwrap();
    runner.read_store().close().await;

    // Opening again (migrations already applied) keeps everything.
    let again = open_default(store, &data_dir, None).await.unwrap();
    assert_eq!(again.status().await.unwrap()[0].lag_events, 0);
    assert_eq!(count(again.read_store(), "ledger_entries").await, 10);
}

#[tokio::test]
async fn locations_are_paths_or_urls_of_both_engines() {
    on_every_read_store(|target| async move {
        let dir = tempfile::tempdir().unwrap();
        let store = event_store(dir.path()).await;
        let runner = open_default(store, dir.path(), Some(&target.location))
            .await
            .unwrap();
        let expected = if target.label == "postgres" {
            Engine::Postgres
        } else {
            Engine::Sqlite
        };
        assert_eq!(runner.read_store().engine(), expected);
        assert!(!runner.read_store().location().contains("s3cret"));
        // Views exist from the start, empty.
        assert_eq!(count(runner.read_store(), "ledger_balances").await, 0);
        runner.read_store().close().await;
    })
    .await;

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("a b/read.sqlite").display());
    let read = ReadStore::connect(&url).await.unwrap();
    assert_eq!(read.engine(), Engine::Sqlite);
    assert!(dir.path().join("a b/read.sqlite").exists());
    read.close().await;

    let escaped = format!(
        "sqlite://{}",
        dir.path().join("c%20d/read.sqlite").display()
    );
    ReadStore::connect(&escaped).await.unwrap().close().await;
    assert!(dir.path().join("c d/read.sqlite").exists());

    for bad in [
        "mysql://localhost/x",
        "  ",
        "sqlite::memory:",
        "sqlite://bad%zz",
    ] {
        assert!(
            matches!(
                ReadStore::connect(bad).await,
                Err(ProjectionError::Location { .. })
            ),
            "{bad:?}"
        );
    }
}
