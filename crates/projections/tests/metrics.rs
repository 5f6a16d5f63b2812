//! Lag is exported as metrics (its own test binary: it installs the global recorder).

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::*;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use upline_projections::{LedgerProjection, ProjectionRunner};

/// The ledger's gauges, by name. (A snapshot resets what it reads: take one per check.)
fn gauges(snapshotter: &Snapshotter) -> HashMap<String, f64> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| {
            key.key()
                .labels()
                .any(|l| l.key() == "projection" && l.value() == "ledger")
        })
        .filter_map(|(key, .., value)| match value {
            DebugValue::Gauge(v) => Some((key.key().name().to_string(), v.into_inner())),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn lag_gauges_follow_the_checkpoint() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = Arc::new(recorder.snapshotter());
    recorder.install().unwrap();

    on_every_read_store(|target| {
        let snapshotter = snapshotter.clone();
        async move {
            let dir = tempfile::tempdir().unwrap();
            let store = event_store(dir.path()).await;
            append(&store, &postings(0, 25)).await;
            let read = target.connect().await;
            let runner = ProjectionRunner::new(
                store.clone(),
                read.clone(),
                vec![Arc::new(LedgerProjection)],
            );

            let status = runner.status().await.unwrap();
            assert!(status[0].lag_events > 0);
            let seen = gauges(&snapshotter);
            assert_eq!(
                seen["upline_projection_lag_events"], status[0].lag_events as f64,
                "{}",
                target.label
            );
            assert!(seen["upline_projection_lag_seconds"] >= 0.0);
            assert_eq!(seen["upline_projection_position"], 0.0);

            runner.catch_up().await.unwrap();
            let seen = gauges(&snapshotter);
            let position = runner.status().await.unwrap()[0].position;
            assert!(position > 0);
            assert_eq!(seen["upline_projection_lag_events"], 0.0);
            assert_eq!(seen["upline_projection_lag_seconds"], 0.0);
            assert_eq!(seen["upline_projection_position"], position as f64);
            read.close().await;
        }
    })
    .await;
}
