//! What every consumer of events or deliveries shares: the rule for failures and where their
//! state is reported.
//!
//! A failure is either **transient** (the store unavailable, I/O, a timeout, a concurrency
//! conflict: the same work may succeed later without anyone changing anything) or
//! **permanent** (an unreadable event, a limit exceeded, a business refusal: it fails the same
//! way every time). Transient failures are retried with capped exponential back-off
//! ([`RetryPolicy`]); a permanent failure is recorded with its reason where an operator lists
//! and retries it (`upline quarantine list`, `upline parked list`), and the consumer moves on.
//! The classification lives on the error types (`is_transient()`), never in message text.
//!
//! [`ConsumerHealth`] is the board every consumer reports its held items to; `/readyz` reads it
//! and answers `degraded` while anything is held.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::watch;

/// Counter `{consumer, kind}`: failures a consumer retried (`kind` = `transient` or
/// `permanent`, the latter for failures outside any one event, such as an unreadable
/// checkpoint).
pub const RETRIES_TOTAL: &str = "upline_consumer_retries_total";
/// Gauge `{consumer}`: events a consumer holds back (quarantined) until an operator retries them.
pub const QUARANTINED: &str = "upline_quarantined_events";

/// Capped exponential back-off with jitter for transient failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first pause.
    pub first: Duration,
    /// Pauses double up to this (jitter adds up to as much again).
    pub cap: Duration,
    /// For work that is retried item by item (inbox deliveries): after this many failed
    /// attempts the item is parked instead ("gave up after N attempts: ...").
    pub max_attempts: u32,
}

impl RetryPolicy {
    /// 50 ms doubling to 30 s; a delivery is given up after 20 attempts (about six minutes of
    /// trying), long enough to ride out a store restart.
    pub const DEFAULT: RetryPolicy = RetryPolicy {
        first: Duration::from_millis(50),
        cap: Duration::from_secs(30),
        max_attempts: 20,
    };

    /// The pauses to take one after the other, without end.
    pub fn backoff(&self) -> impl Iterator<Item = Duration> + Send {
        ExponentialBuilder::new()
            .with_min_delay(self.first)
            .with_max_delay(self.cap)
            .with_jitter()
            .without_max_times()
            .build()
    }

    /// The pause after the `failures`-th failure in a row (1 = the first).
    pub fn pause_after(&self, failures: u32) -> Duration {
        self.backoff()
            .nth(failures.saturating_sub(1) as usize)
            .unwrap_or(self.cap)
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::DEFAULT
    }
}

/// Counts a retry of `consumer`.
pub fn count_retry(consumer: &str, transient: bool) {
    let kind = if transient { "transient" } else { "permanent" };
    metrics::counter!(RETRIES_TOTAL, "consumer" => consumer.to_string(), "kind" => kind)
        .increment(1);
}

/// Sleeps `pause` unless `shutdown` turns true first; `false` when shutting down.
pub async fn pause_unless_shutdown(pause: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(pause) => !*shutdown.borrow(),
        changed = shutdown.changed() => changed.is_ok() && !*shutdown.borrow(),
    }
}

/// What one consumer holds back, as reported to [`ConsumerHealth`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldSummary {
    pub consumer: String,
    pub held: u64,
    /// The reason of the oldest item held.
    pub reason: String,
}

impl HeldSummary {
    /// One line for `/readyz`.
    pub fn describe(&self) -> String {
        format!(
            "{} holds {} event{}: {}",
            self.consumer,
            self.held,
            if self.held == 1 { "" } else { "s" },
            self.reason
        )
    }
}

/// The process's board of held items per consumer. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct ConsumerHealth {
    held: Arc<Mutex<BTreeMap<String, HeldSummary>>>,
}

impl ConsumerHealth {
    /// `consumer` now holds `held` items, the oldest for `reason`. Also sets the
    /// [`QUARANTINED`] gauge.
    pub fn report(&self, consumer: &str, held: u64, reason: Option<&str>) {
        metrics::gauge!(QUARANTINED, "consumer" => consumer.to_string()).set(held as f64);
        let mut board = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if held == 0 {
            board.remove(consumer);
        } else {
            board.insert(
                consumer.to_string(),
                HeldSummary {
                    consumer: consumer.to_string(),
                    held,
                    reason: reason.unwrap_or("no reason recorded").to_string(),
                },
            );
        }
    }

    /// Every consumer holding something, by name.
    pub fn held(&self) -> Vec<HeldSummary> {
        let board = self.held.lock().unwrap_or_else(|e| e.into_inner());
        board.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_from_the_first_up_to_the_cap_with_jitter_below_twice() {
        let policy = RetryPolicy {
            first: Duration::from_millis(50),
            cap: Duration::from_secs(30),
            max_attempts: 5,
        };
        let pauses: Vec<Duration> = policy.backoff().take(14).collect();
        for (i, pause) in pauses.iter().enumerate() {
            let base = Duration::from_millis(50 * (1u64 << i)).min(Duration::from_secs(30));
            assert!(
                *pause >= base && *pause <= base * 2,
                "pause {i}: {pause:?}, base {base:?}"
            );
        }
        assert!(pauses[13] >= Duration::from_secs(30));
    }

    #[test]
    fn the_board_shows_only_consumers_that_hold_something() {
        let health = ConsumerHealth::default();
        health.report("ledger", 2, Some("unreadable"));
        health.report("bi", 0, None);
        let held = health.held();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].describe(), "ledger holds 2 events: unreadable");
        health.report("ledger", 0, None);
        assert!(health.held().is_empty());
    }
}
