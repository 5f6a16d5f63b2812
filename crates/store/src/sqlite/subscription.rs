//! Catch-up subscriptions: page the events table from a checkpoint, and when
//! caught up wait for the writer to publish a new head position.
//!
//! Events always come from the database, never from an in-memory buffer of
//! recent appends, so a slow subscriber cannot lag out and lose events. The
//! head notification is a `watch` channel: it only carries "something was
//! committed up to position p", coalescing any number of commits.
//!
//! No gap: positions are assigned by the single writer in commit order, and
//! the head is published after COMMIT returns, so a read that starts after
//! observing head `h` sees every position <= `h`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::stream::{self, BoxStream, StreamExt};
use tokio::sync::watch;

use super::reader::Reader;
use crate::error::StoreError;
use crate::limits::validate_filter;
use crate::types::{AllStart, RecordedEvent, StreamFilter};

/// Events fetched per catch-up query. Bounds a subscriber's buffer.
pub const SUBSCRIPTION_PAGE_SIZE: usize = 512;

struct State {
    reader: Reader,
    head: watch::Receiver<u64>,
    closed: Arc<AtomicBool>,
    filter: StreamFilter,
    /// Everything at or below this position has been delivered or skipped.
    checkpoint: u64,
    buffer: VecDeque<RecordedEvent>,
    /// Set after yielding an error: the stream then ends.
    finished: bool,
}

pub(crate) fn subscribe(
    reader: Reader,
    head: watch::Receiver<u64>,
    closed: Arc<AtomicBool>,
    from: AllStart,
    filter: StreamFilter,
) -> BoxStream<'static, Result<RecordedEvent, StoreError>> {
    let state = State {
        reader,
        head,
        closed,
        checkpoint: from.after(),
        buffer: VecDeque::new(),
        finished: false,
        filter,
    };
    if let Err(error) = validate_filter(&state.filter) {
        return stream::once(async move { Err(error) }).boxed();
    }
    stream::unfold(state, next).boxed()
}

async fn next(mut state: State) -> Option<(Result<RecordedEvent, StoreError>, State)> {
    if state.finished {
        return None;
    }
    loop {
        if let Some(event) = state.buffer.pop_front() {
            return Some((Ok(event), state));
        }
        if state.closed.load(Ordering::Acquire) {
            return fail(state, StoreError::Closed);
        }
        // Mark the head as seen *before* reading, so a commit that lands
        // during the read wakes us up again instead of being missed.
        let head_seen = *state.head.borrow_and_update();
        let page = match state
            .reader
            .read_new(state.checkpoint, &state.filter, SUBSCRIPTION_PAGE_SIZE)
            .await
        {
            Ok(page) => page,
            Err(error) => return fail(state, error),
        };
        let full = page.len() == SUBSCRIPTION_PAGE_SIZE;
        if let Some(last) = page.last() {
            state.checkpoint = last.position;
        }
        if !full {
            // The read saw everything committed up to head_seen; events the
            // filter skipped need not be scanned again.
            state.checkpoint = state.checkpoint.max(head_seen);
        }
        if !page.is_empty() {
            state.buffer.extend(page);
            continue;
        }
        // Caught up. `changed` reports a value published before the writer
        // stopped before it reports the stop, so nothing committed is lost.
        if state.head.changed().await.is_err() {
            return fail(state, StoreError::Closed);
        }
    }
}

fn fail(mut state: State, error: StoreError) -> Option<(Result<RecordedEvent, StoreError>, State)> {
    state.finished = true;
    state.buffer.clear();
    Some((Err(error), state))
}
