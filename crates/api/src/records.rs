//! The API's own event: the first result of a command sent with a `command_id`, in stream
//! `command-{command_id}`. Past tense and externally tagged like every upline event.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use upline_domain::events::DomainEvent;

/// The prefix of the streams that hold command results.
pub const COMMAND_PREFIX: &str = "command-";

pub fn command_stream(command_id: &str) -> String {
    format!("{COMMAND_PREFIX}{command_id}")
}

/// What a command did, as answered to its caller (and again to any retry with the same id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandResult {
    /// Events were recorded on `stream`.
    Recorded { stream: String, events: u32 },
    /// Everything the command said was already recorded.
    Unchanged { stream: String },
    /// The order update was parked (kept in `parked-{stream}`) with this reason.
    Parked { stream: String, reason: String },
}

impl CommandResult {
    pub fn stream(&self) -> &str {
        match self {
            CommandResult::Recorded { stream, .. }
            | CommandResult::Unchanged { stream }
            | CommandResult::Parked { stream, .. } => stream,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandEvent {
    /// A command was carried out; a request with the same id must have the same `request_sha256`
    /// to get this result again.
    CommandHandled {
        /// The gRPC method ("RegisterDistributor").
        method: String,
        /// Hex SHA-256 of the method name, a zero byte and the request's protobuf encoding
        /// without its command_id.
        request_sha256: String,
        /// The name of the token that issued it.
        caller: String,
        result: CommandResult,
        handled_at: DateTime<Utc>,
    },
}

impl DomainEvent for CommandEvent {
    fn schema_version(&self) -> u16 {
        1
    }
}
