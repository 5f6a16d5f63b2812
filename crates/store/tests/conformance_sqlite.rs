//! The conformance suite against the embedded SQLite adapter, one fresh file per check.
upline_store::conformance_tests!({
    let dir = tempfile::tempdir().expect("temporary directory");
    upline_store::SqliteFactory::with_guard(dir.path().join("events.sqlite"), dir)
});
