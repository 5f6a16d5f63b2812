//! How domain events are named, versioned, identified and encoded.
//!
//! Every event enum is externally tagged (serde's default): the variant's past-tense name is the
//! stored event type and the variant's body is the stored data. Internally tagged, untagged and
//! flattened representations are avoided on purpose: they buffer the JSON, which breaks exact
//! decimal numbers (serde_json `arbitrary_precision`).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{Platform, ShopId};

/// The namespace of upline's deterministic (UUID v5) event ids.
pub const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6c1f_4a1e_9b0e_4c57_8f39_2a55_0d1e_7a11);

/// An event of one of the aggregates.
pub trait DomainEvent: Serialize + DeserializeOwned {
    /// The version of this event's body; bumped when a field changes meaning or shape.
    fn schema_version(&self) -> u16;
}

/// An event ready for a store: its type (the past-tense name), its JSON body and schema version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedEvent {
    pub event_type: String,
    pub schema_version: u16,
    pub data: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("event could not be encoded: {0}")]
    Encode(String),
    #[error("event of type {event_type:?} could not be decoded: {reason}")]
    Decode { event_type: String, reason: String },
}

pub fn encode<E: DomainEvent>(event: &E) -> Result<EncodedEvent, CodecError> {
    // Serialised straight to bytes and split, not through a `Value` tree: every command
    // encodes its events, and a tree (sorted maps, arbitrary-precision numbers as strings) cost
    // more than the serialisation itself.
    let tagged = serde_json::to_vec(event).map_err(|e| CodecError::Encode(e.to_string()))?;
    let (event_type, data) = split_tagged(&tagged).ok_or_else(|| {
        CodecError::Encode("an event must serialise as one tagged variant {\"Name\": {...}}".into())
    })?;
    Ok(EncodedEvent {
        event_type: event_type.to_string(),
        schema_version: event.schema_version(),
        data: data.to_vec(),
    })
}

/// Compact externally tagged JSON, `{"Name":<body>}`, split into the name and the body. The
/// name is a Rust variant name, so it has no escapes; one with a backslash, a unit variant
/// (`"Name"`) or anything else is `None`.
fn split_tagged(tagged: &[u8]) -> Option<(&str, &[u8])> {
    let rest = tagged.strip_prefix(b"{\"")?;
    let end = rest.iter().position(|&b| b == b'"')?;
    let (name, rest) = rest.split_at(end);
    if name.is_empty() || name.contains(&b'\\') {
        return None;
    }
    let body = rest.strip_prefix(b"\":")?.strip_suffix(b"}")?;
    if body.is_empty() {
        return None;
    }
    Some((std::str::from_utf8(name).ok()?, body))
}

pub fn decode<E: DomainEvent>(event_type: &str, data: &[u8]) -> Result<E, CodecError> {
    let fail = |reason: String| CodecError::Decode {
        event_type: event_type.to_string(),
        reason,
    };
    // The externally tagged form `{"<type>":<data>}`, parsed straight into `E`: no `Value` tree
    // in between (every consumer decodes every event it reads). `data` is one JSON value (the
    // store checks it), so the tagged text is one object with one entry.
    let tag = serde_json::to_string(event_type).map_err(|e| fail(e.to_string()))?;
    let mut tagged = Vec::with_capacity(tag.len() + data.len() + 2);
    tagged.push(b'{');
    tagged.extend_from_slice(tag.as_bytes());
    tagged.push(b':');
    tagged.extend_from_slice(data);
    tagged.push(b'}');
    serde_json::from_slice(&tagged).map_err(|e| fail(e.to_string()))
}

pub fn deterministic_event_id(stream: &str, key: &str) -> Uuid {
    let mut name = Vec::with_capacity(stream.len() + key.len() + 1);
    name.extend_from_slice(stream.as_bytes());
    name.push(0);
    name.extend_from_slice(key.as_bytes());
    Uuid::new_v5(&EVENT_ID_NAMESPACE, &name)
}

/// Where a command came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventSource {
    /// A platform's webhook delivery.
    WebhookDelivery {
        platform: Platform,
        shop: ShopId,
        delivery_id: String,
    },
    /// A gRPC or CLI command, with the caller's command id.
    Command { command_id: String },
}

/// Stored beside every event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    pub schema_version: u16,
    /// The id shared by everything one request caused.
    pub correlation_id: Uuid,
    /// The id of the message (delivery, command or event) that caused this event.
    pub causation_id: Uuid,
    pub source: EventSource,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Sample {
        ThingHappened {
            count: u32,
            price: crate::money::Amount,
        },
    }
    impl DomainEvent for Sample {
        fn schema_version(&self) -> u16 {
            1
        }
    }

    #[test]
    fn events_encode_as_type_plus_body_and_decode_back() {
        let e = Sample::ThingHappened {
            count: 3,
            price: crate::money::Amount("9.75".parse().unwrap()),
        };
        let enc = encode(&e).unwrap();
        assert_eq!(enc.event_type, "ThingHappened");
        assert_eq!(
            String::from_utf8(enc.data.clone()).unwrap(),
            r#"{"count":3,"price":"9.75"}"#
        );
        assert_eq!(decode::<Sample>(&enc.event_type, &enc.data).unwrap(), e);
        assert!(decode::<Sample>("OtherThing", &enc.data).is_err());
        // A body that is not one JSON value, or would close the tagged object early, fails.
        assert!(decode::<Sample>(&enc.event_type, br#"{"count":3,"price":"9.75"} 1"#).is_err());
        assert!(
            decode::<Sample>(&enc.event_type, br#"{"count":3,"price":"9.75"}},"X":{"#).is_err()
        );
        assert!(decode::<Sample>("Thing\"Happened", &enc.data).is_err());
    }

    #[derive(Debug, Serialize, Deserialize)]
    enum Untagged {
        Nothing,
    }
    impl DomainEvent for Untagged {
        fn schema_version(&self) -> u16 {
            1
        }
    }

    #[test]
    fn a_unit_variant_is_refused_and_bodies_keep_their_field_order() {
        assert!(matches!(
            encode(&Untagged::Nothing),
            Err(CodecError::Encode(_))
        ));
        assert_eq!(
            split_tagged(br#"{"A":{"z":1,"a":2}}"#),
            Some(("A", &br#"{"z":1,"a":2}"#[..]))
        );
        assert_eq!(split_tagged(br#"{"A\"B":{}}"#), None);
        assert_eq!(split_tagged(br#"{"":{}}"#), None);
        assert_eq!(split_tagged(br#"{"A":}"#), None);
        assert_eq!(split_tagged(br#""A""#), None);
    }

    #[test]
    fn deterministic_ids_depend_on_stream_and_key() {
        let a = deterministic_event_id("order-1", "paid");
        assert_eq!(a, deterministic_event_id("order-1", "paid"));
        assert_ne!(a, deterministic_event_id("order-2", "paid"));
        assert_ne!(a, deterministic_event_id("order-1", "refund"));
    }
}
