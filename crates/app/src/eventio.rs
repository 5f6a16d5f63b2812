//! Encoding events for the store: type, JSON body, metadata, and deterministic ids.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use upline_domain::events::{
    decode, deterministic_event_id, encode, DomainEvent, EventMetadata, EventSource,
};
use upline_store::{EventData, RecordedEvent};
use uuid::Uuid;

use crate::error::AppError;

/// Who asked for a change: recorded in every event's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    pub correlation_id: Uuid,
    pub causation_id: Uuid,
    pub source: EventSource,
}

impl Provenance {
    /// A command from an operator or a tool (CLI, demo, gRPC), named by its command id.
    pub fn command(command_id: &str) -> Provenance {
        let id = Uuid::new_v5(
            &upline_domain::events::EVENT_ID_NAMESPACE,
            command_id.as_bytes(),
        );
        Provenance {
            correlation_id: id,
            causation_id: id,
            source: EventSource::Command {
                command_id: command_id.to_string(),
            },
        }
    }

    fn metadata(&self, schema_version: u16) -> EventMetadata {
        EventMetadata {
            schema_version,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            source: self.source.clone(),
        }
    }
}

/// An event ready to append. Its id is derived from the stream, a caller-chosen key and the
/// event's own content: a retry of the same decision gets the same id (the store then writes
/// nothing), while a *different* decision at the same place gets a different id (and a
/// concurrency conflict instead of being mistaken for a retry).
///
/// The encoded bytes are decoded back into `E` first: an event the decoder would refuse is never
/// appended (it would stop every consumer that reads it), it fails the command with
/// [`AppError::WouldNotReadBack`], a permanent error. This is the only place the application
/// builds `EventData`, so every append goes through the check.
pub fn event_data<E: DomainEvent>(
    stream: &str,
    key: &str,
    event: &E,
    provenance: &Provenance,
) -> Result<EventData, AppError> {
    let encoded = encode(event)?;
    reads_back::<E>(stream, &encoded.event_type, &encoded.data)?;
    let mut hasher = Sha256::new();
    hasher.update(encoded.event_type.as_bytes());
    hasher.update([0]);
    hasher.update(&encoded.data);
    let content = hex::encode(hasher.finalize());
    let id = deterministic_event_id(stream, &format!("{key}:{content}"));
    let metadata = serde_json::to_vec(&provenance.metadata(encoded.schema_version))
        .map_err(|e| upline_domain::events::CodecError::Encode(e.to_string()))?;
    Ok(EventData::new(encoded.event_type, encoded.data)
        .with_id(id)
        .with_metadata(metadata))
}

/// Whether `data` decodes as an `E` of type `event_type`, exactly as a consumer will decode it.
fn reads_back<E: DomainEvent>(stream: &str, event_type: &str, data: &[u8]) -> Result<(), AppError> {
    match decode::<E>(event_type, data) {
        Ok(_) => Ok(()),
        Err(e) => {
            metrics::counter!("upline_unreadable_appends_refused_total").increment(1);
            tracing::error!(stream, event_type, error = %e, "refused to append an event that would not read back");
            Err(AppError::WouldNotReadBack {
                stream: stream.to_string(),
                event_type: event_type.to_string(),
                reason: e.to_string(),
            })
        }
    }
}

pub fn decode_recorded<E: DomainEvent>(recorded: &RecordedEvent) -> Result<E, AppError> {
    Ok(decode(&recorded.event_type, &recorded.data)?)
}

/// The time an operator-facing record is made. The domain never reads a clock; the application
/// layer does, and records the time in the event.
pub fn now() -> DateTime<Utc> {
    Utc::now()
}
