//! Bounds on everything (TIGER_STYLE), and the validation every adapter runs
//! before touching its backend so all adapters refuse the same requests with
//! the same typed errors.

use crate::error::{Limit, StoreError};
use crate::types::{EventData, StreamFilter};

/// Longest stream name, in bytes. Stream names are aggregate ids plus a
/// category prefix; 255 is far beyond any real one and matches what common
/// databases index without trouble.
pub const MAX_STREAM_NAME_BYTES: usize = 255;

/// Longest event type name, in bytes. Type names are Rust identifiers-ish.
pub const MAX_EVENT_TYPE_BYTES: usize = 255;

/// Most events in one append. One append is one command's decision; a
/// thousand events is already an import, and bigger batches would hold the
/// single writer (and every other appender) for too long.
pub const MAX_EVENTS_PER_APPEND: usize = 1_000;

/// Largest event, data + metadata bytes. Ledger events are a few hundred
/// bytes; 4 MiB leaves room for rare snapshots while bounding memory per event.
pub const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

/// Largest append, data + metadata bytes over all its events. Bounds the
/// memory a queued append holds and the time one transaction takes.
/// (EventStoreDB's own server-side default `MaxAppendSize` is smaller, 1 MiB;
/// its adapter reports the server's refusal as [`Limit::AppendBytes`].)
pub const MAX_APPEND_BYTES: usize = 16 * 1024 * 1024;

/// Most events returned by one read. Callers page with
/// [`crate::AllStart::After`] / [`crate::StreamStart::Revision`]; a bounded
/// page bounds memory and the time a read holds a connection.
pub const MAX_READ_COUNT: usize = 10_000;

/// Most prefixes in a [`StreamFilter`]. Each prefix is one SQL predicate
/// (or one ESDB filter term); projections need a handful.
pub const MAX_FILTER_PREFIXES: usize = 64;

/// Appends in one [`crate::EventStore::append_in_order`] call. Bounds what a
/// caller holds in flight; an importer sends its appends in chunks of this.
pub const MAX_APPENDS_IN_ORDER: usize = 4_096;

/// Checks the number of appends of one ordered call.
pub fn validate_appends_in_order(count: usize) -> Result<(), StoreError> {
    if count > MAX_APPENDS_IN_ORDER {
        return Err(exceeded(Limit::AppendsInOrder, MAX_APPENDS_IN_ORDER, count));
    }
    Ok(())
}

fn exceeded(limit: Limit, max: usize, actual: usize) -> StoreError {
    StoreError::LimitExceeded {
        limit,
        max: max as u64,
        actual: actual as u64,
    }
}

/// Checks a stream name: 1..=[`MAX_STREAM_NAME_BYTES`] bytes, no control
/// characters, not starting with `$` (reserved for EventStoreDB system and
/// metadata streams, which have different semantics).
pub fn validate_stream_name(stream: &str) -> Result<(), StoreError> {
    let reason = if stream.is_empty() {
        Some("must not be empty")
    } else if stream.len() > MAX_STREAM_NAME_BYTES {
        Some("longer than 255 bytes")
    } else if stream.chars().any(char::is_control) {
        Some("contains a control character")
    } else if stream.starts_with('$') {
        Some("names starting with '$' are reserved for system streams")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(StoreError::InvalidStreamName {
            stream: stream.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Checks a read's `max_count` against [`MAX_READ_COUNT`].
pub fn validate_read_count(max_count: usize) -> Result<(), StoreError> {
    if max_count > MAX_READ_COUNT {
        return Err(exceeded(Limit::ReadCount, MAX_READ_COUNT, max_count));
    }
    Ok(())
}

/// Checks a filter: at most [`MAX_FILTER_PREFIXES`] prefixes, each at most
/// [`MAX_STREAM_NAME_BYTES`] bytes.
pub fn validate_filter(filter: &StreamFilter) -> Result<(), StoreError> {
    let count = filter.stream_prefixes.len();
    if count > MAX_FILTER_PREFIXES {
        return Err(exceeded(Limit::FilterPrefixes, MAX_FILTER_PREFIXES, count));
    }
    if let Some(long) = filter
        .stream_prefixes
        .iter()
        .find(|prefix| prefix.len() > MAX_STREAM_NAME_BYTES)
    {
        return Err(StoreError::InvalidFilter {
            reason: format!(
                "prefix of {} bytes is longer than a stream name",
                long.len()
            ),
        });
    }
    Ok(())
}

/// Checks an append before it is sent anywhere: stream name, non-empty,
/// every limit, event types, and that data / metadata are JSON.
///
/// Cheap checks run first so an oversized request is refused before its
/// payload is parsed.
pub fn validate_append(stream: &str, events: &[EventData]) -> Result<(), StoreError> {
    validate_stream_name(stream)?;
    if events.is_empty() {
        return Err(StoreError::EmptyAppend {
            stream: stream.to_owned(),
        });
    }
    if events.len() > MAX_EVENTS_PER_APPEND {
        return Err(exceeded(
            Limit::EventsPerAppend,
            MAX_EVENTS_PER_APPEND,
            events.len(),
        ));
    }
    let mut total: usize = 0;
    for event in events {
        let size = event.data.len().saturating_add(event.metadata.len());
        if size > MAX_EVENT_BYTES {
            return Err(exceeded(Limit::EventBytes, MAX_EVENT_BYTES, size));
        }
        total = total.saturating_add(size);
    }
    if total > MAX_APPEND_BYTES {
        return Err(exceeded(Limit::AppendBytes, MAX_APPEND_BYTES, total));
    }
    for event in events {
        validate_event(event)?;
    }
    Ok(())
}

fn validate_event(event: &EventData) -> Result<(), StoreError> {
    let invalid = |reason: String| StoreError::InvalidEvent {
        event_id: event.id,
        reason,
    };
    if event.event_type.len() > MAX_EVENT_TYPE_BYTES {
        return Err(exceeded(
            Limit::EventTypeBytes,
            MAX_EVENT_TYPE_BYTES,
            event.event_type.len(),
        ));
    }
    if event.event_type.is_empty() {
        return Err(invalid("event type must not be empty".to_owned()));
    }
    if event.event_type.chars().any(char::is_control) {
        return Err(invalid(
            "event type contains a control character".to_owned(),
        ));
    }
    if let Err(error) = serde_json::from_slice::<serde::de::IgnoredAny>(&event.data) {
        return Err(invalid(format!("data is not JSON: {error}")));
    }
    if !event.metadata.is_empty() {
        if let Err(error) = serde_json::from_slice::<serde::de::IgnoredAny>(&event.metadata) {
            return Err(invalid(format!("metadata is not JSON: {error}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(data: &[u8]) -> EventData {
        EventData::new("Tested", data.to_vec())
    }

    #[test]
    fn stream_names() {
        assert!(validate_stream_name("order-1").is_ok());
        assert!(validate_stream_name(&"x".repeat(255)).is_ok());
        assert!(validate_stream_name("comptes-é").is_ok());
        for bad in ["", "a\nb", "tab\there", "$all", "\u{7f}"] {
            assert!(
                matches!(
                    validate_stream_name(bad),
                    Err(StoreError::InvalidStreamName { .. })
                ),
                "{bad:?} accepted"
            );
        }
        assert!(validate_stream_name(&"x".repeat(256)).is_err());
    }

    #[test]
    fn payloads_must_be_json() {
        assert!(validate_append("s", &[event(b"{\"a\":1}")]).is_ok());
        assert!(validate_append("s", &[event(b"12345678901234567890123")]).is_ok());
        for bad in [&b""[..], b"{", b"not json", b"{\"a\":1} trailing", b"\xff"] {
            assert!(matches!(
                validate_append("s", &[event(bad)]),
                Err(StoreError::InvalidEvent { .. })
            ));
        }
        let bad_meta = event(b"{}").with_metadata(b"nope".to_vec());
        assert!(matches!(
            validate_append("s", &[bad_meta]),
            Err(StoreError::InvalidEvent { .. })
        ));
        let no_type = EventData::new("", b"{}".to_vec());
        assert!(validate_append("s", &[no_type]).is_err());
    }

    #[test]
    fn limits() {
        assert!(matches!(
            validate_append("s", &[]),
            Err(StoreError::EmptyAppend { .. })
        ));
        let many = vec![event(b"1"); MAX_EVENTS_PER_APPEND + 1];
        assert!(matches!(
            validate_append("s", &many),
            Err(StoreError::LimitExceeded {
                limit: Limit::EventsPerAppend,
                ..
            })
        ));
        assert!(validate_read_count(MAX_READ_COUNT).is_ok());
        assert!(validate_read_count(MAX_READ_COUNT + 1).is_err());
        let filter = StreamFilter {
            stream_prefixes: vec!["p".to_owned(); MAX_FILTER_PREFIXES + 1],
        };
        assert!(validate_filter(&filter).is_err());
        assert!(validate_filter(&StreamFilter::prefix("p")).is_ok());
    }
}
