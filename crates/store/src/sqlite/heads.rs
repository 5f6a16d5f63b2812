//! The last position written in each stream category, kept in memory by the writer so that a
//! subscription's read of `$all` filtered by category can answer "nothing new" without a query.
//!
//! Most `$all` reads of a busy store are subscribers woken by a commit to some other category
//! (the ledger woken by an order event): they would run a query that returns nothing. Plain
//! reads (`EventStore::read_all`) always query: they may be looking for another process's
//! events (a `network import` beside a running server) before this writer commits again. The writer records a category's position after
//! COMMIT and before it publishes the new head, so a reader that saw head `h` and finds every
//! category of its filter at or below its own position knows that no matching event lies in
//! `(after, h]`. Categories not written since the store was opened count as written at the
//! head it opened with, so nothing older is ever skipped.
//!
//! Another process may append to the same file (`upline parked retry` beside a running server).
//! Its events are invisible to this map, so the writer checks that each batch starts right
//! after the position it last wrote; when it does not, someone else wrote in between and the
//! map forgets everything: every category counts as written at the new head. A reader's own
//! position never passes the head this writer published, so a foreign event is read at the
//! latest after this writer's next commit, as before (the head is what wakes subscribers).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use crate::types::{stream_category, StreamFilter};

#[derive(Debug)]
pub(crate) struct CategoryHeads {
    known: Mutex<Known>,
}

#[derive(Debug)]
struct Known {
    /// Categories not in `written` may have events up to here: the head when the store was
    /// opened, or when a foreign write was noticed.
    unknown_up_to: u64,
    written: HashMap<String, u64>,
}

impl CategoryHeads {
    pub(crate) fn new(opened_at: u64) -> CategoryHeads {
        CategoryHeads {
            known: Mutex::new(Known {
                unknown_up_to: opened_at,
                written: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Known> {
        // A map of maxima stays valid even if a holder panicked.
        self.known
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records that `category` has an event at `position` (committed).
    pub(crate) fn record(&self, category: &str, position: u64) {
        let mut known = self.lock();
        match known.written.get_mut(category) {
            Some(last) => *last = (*last).max(position),
            None => {
                known.written.insert(category.to_string(), position);
            }
        }
    }

    /// Forgets every category: each may have events up to `head` (someone else wrote).
    pub(crate) fn forget_all(&self, head: u64) {
        let mut known = self.lock();
        known.written.clear();
        known.unknown_up_to = known.unknown_up_to.max(head);
    }

    /// Whether an event passing `filter` may have been committed after `after`. `true` unless
    /// every prefix names a category (it contains a `-`) whose last position is `<= after`.
    pub(crate) fn may_have_after(&self, filter: &StreamFilter, after: u64) -> bool {
        if filter.stream_prefixes.is_empty() {
            return true;
        }
        let known = self.lock();
        filter.stream_prefixes.iter().any(|prefix| {
            if !prefix.contains('-') {
                return true; // may span categories
            }
            let last = known
                .written
                .get(stream_category(prefix))
                .copied()
                .unwrap_or(known.unknown_up_to);
            last > after
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(prefixes: &[&str]) -> StreamFilter {
        StreamFilter {
            stream_prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn a_category_not_written_since_opening_counts_as_written_at_the_opening_head() {
        let heads = CategoryHeads::new(10);
        assert!(heads.may_have_after(&filter(&["order-"]), 9));
        assert!(!heads.may_have_after(&filter(&["order-"]), 10));
    }

    #[test]
    fn only_the_filtered_categories_decide() {
        let heads = CategoryHeads::new(0);
        heads.record("order", 5);
        heads.record("commissions", 7);
        heads.record("order", 3);
        assert!(!heads.may_have_after(&filter(&["order-"]), 5));
        assert!(heads.may_have_after(&filter(&["order-"]), 4));
        assert!(heads.may_have_after(&filter(&["order-", "commissions-"]), 6));
        assert!(!heads.may_have_after(&filter(&["order-shopify-"]), 5));
        assert!(!heads.may_have_after(&filter(&["parked-"]), 0));
    }

    #[test]
    fn after_a_foreign_write_every_category_may_have_events_up_to_the_new_head() {
        let heads = CategoryHeads::new(0);
        heads.record("order", 5);
        heads.forget_all(9);
        assert!(heads.may_have_after(&filter(&["order-"]), 8));
        assert!(heads.may_have_after(&filter(&["parked-"]), 8));
        assert!(!heads.may_have_after(&filter(&["parked-"]), 9));
    }

    #[test]
    fn a_prefix_without_a_category_and_an_empty_filter_always_read() {
        let heads = CategoryHeads::new(0);
        assert!(heads.may_have_after(&filter(&["ord"]), 100));
        assert!(heads.may_have_after(&StreamFilter::all(), 100));
    }
}
