//! Command ids, recorded durably in the event store.
//!
//! A command sent with a `command_id` is carried out once. Its result is appended to
//! `command-{id}` (expecting no stream) as `CommandHandled`, with the SHA-256 of the method and
//! the request's protobuf encoding (without the id). A later request with the same id reads it
//! back: the same hash gets the recorded result again (`replayed`), another hash ALREADY_EXISTS.
//!
//! Requests with the same id are serialised in this process (a striped lock), so the second one
//! waits for the first's record. Across processes, or if this process dies between carrying out
//! the command and recording its result, the command may be carried out twice; that is harmless
//! because every command is idempotent on its facts (a fact already recorded records nothing),
//! and the `NoStream` append makes the first recorded result the one every retry gets.
//!
//! Only commands that were carried out are recorded (see `CommandResult`): a refused command
//! changed nothing, so its id may be used again once the cause is fixed.

use std::future::Future;

use prost::Message;
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};
use upline_app::eventio::{decode_recorded, event_data, now};
use upline_app::Provenance;
use upline_store::{Direction, ExpectedRevision, StreamStart};

use crate::auth::Caller;
use crate::convert::fmt_time;
use crate::error::{app_error, exists, invalid, parked, store_error};
use crate::pb;
use crate::records::{command_stream, CommandEvent, CommandResult};
use crate::Inner;

/// The longest command id.
pub const MAX_COMMAND_ID_LEN: usize = 64;
/// Locks that serialise requests with the same command id (by hash of the id).
pub(crate) const COMMAND_LOCK_STRIPES: usize = 64;

/// A command request: it carries an optional command id.
pub(crate) trait CommandRequest: Message + Clone + Default + Send + 'static {
    fn command_id(&self) -> &str;
    fn clear_command_id(&mut self);
}

macro_rules! command_requests {
    ($($t:ty),* $(,)?) => {$(
        impl CommandRequest for $t {
            fn command_id(&self) -> &str {
                &self.command_id
            }
            fn clear_command_id(&mut self) {
                self.command_id.clear();
            }
        }
    )*};
}

command_requests!(
    pb::RegisterDistributorRequest,
    pb::ChangeSponsorRequest,
    pb::ChangeStatusRequest,
    pb::ChangeRankRequest,
    pb::EnrollCustomerRequest,
    pb::MapSkuRequest,
    pb::PublishPlanRequest,
    pb::SubmitOrderRequest,
    pb::RefundOrderRequest,
    pb::CancelOrderRequest,
    pb::RetryParkedRequest,
);

fn validate_command_id(id: &str) -> Result<(), Status> {
    if id.len() > MAX_COMMAND_ID_LEN
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(invalid(
            "command_id",
            format!(
                "{:?} must be 1 to {MAX_COMMAND_ID_LEN} letters, digits, '-', '_' or '.'",
                id.chars().take(MAX_COMMAND_ID_LEN).collect::<String>()
            ),
        ));
    }
    Ok(())
}

/// Hex SHA-256 of the method, a zero byte, and the request without its command id. Protobuf
/// encoding by prost is deterministic (fields in tag order, defaults omitted, no maps in these
/// messages), so equal requests hash equal.
fn request_hash<R: CommandRequest>(method: &str, request: &R) -> String {
    let mut body = request.clone();
    body.clear_command_id();
    let mut hasher = Sha256::new();
    hasher.update(method.as_bytes());
    hasher.update([0]);
    hasher.update(body.encode_to_vec());
    hex::encode(hasher.finalize())
}

fn stripe(command_id: &str) -> usize {
    let digest = Sha256::digest(command_id.as_bytes());
    usize::from(digest[0]) % COMMAND_LOCK_STRIPES
}

/// The answer for a result: a response, or the FAILED_PRECONDITION of a parked order.
fn answer(
    command_id: &str,
    result: &CommandResult,
    handled_at: chrono::DateTime<chrono::Utc>,
    replayed: bool,
) -> Result<Response<pb::CommandResponse>, Status> {
    let (outcome, events) = match result {
        CommandResult::Recorded { events, .. } => (pb::CommandOutcome::Recorded, *events),
        CommandResult::Unchanged { .. } => (pb::CommandOutcome::Unchanged, 0),
        CommandResult::Parked { stream, reason } => return Err(parked(stream, reason)),
    };
    Ok(Response::new(pb::CommandResponse {
        command_id: command_id.to_string(),
        outcome: outcome as i32,
        events_recorded: events,
        stream: result.stream().to_string(),
        replayed,
        handled_at: fmt_time(handled_at),
    }))
}

impl Inner {
    /// Carries out a command at most once per command id (see the module's documentation).
    pub(crate) async fn command<R, F, Fut>(
        &self,
        method: &'static str,
        request: Request<R>,
        run: F,
    ) -> Result<Response<pb::CommandResponse>, Status>
    where
        R: CommandRequest,
        F: FnOnce(R, Provenance) -> Fut,
        Fut: Future<Output = Result<CommandResult, Status>>,
    {
        let caller = request
            .extensions()
            .get::<Caller>()
            .map(|c| c.name.clone())
            .unwrap_or_default();
        let body = request.into_inner();
        let command_id = body.command_id().trim().to_string();
        if command_id.is_empty() {
            let provenance = Provenance::command(&format!("grpc-{}", uuid::Uuid::new_v4()));
            let result = run(body, provenance).await?;
            tracing::info!(method, caller, stream = result.stream(), "command handled");
            return answer("", &result, now(), false);
        }
        validate_command_id(&command_id)?;
        let hash = request_hash(method, &body);
        let _serialised = self.command_locks[stripe(&command_id)].lock().await;
        let stream = command_stream(&command_id);
        if let Some(recorded) = self.recorded_command(&stream).await? {
            return replay(&command_id, method, &hash, recorded);
        }
        let provenance = Provenance::command(&command_id);
        let result = run(body, provenance.clone()).await?;
        let handled_at = now();
        let event = CommandEvent::CommandHandled {
            method: method.to_string(),
            request_sha256: hash.clone(),
            caller: caller.clone(),
            result: result.clone(),
            handled_at,
        };
        let data = event_data(&stream, "handled", &event, &provenance).map_err(app_error)?;
        match self
            .store
            .append(&stream, ExpectedRevision::NoStream, vec![data])
            .await
        {
            Ok(_) => {
                tracing::info!(
                    method,
                    caller,
                    command_id,
                    stream = result.stream(),
                    "command handled"
                );
                answer(&command_id, &result, handled_at, false)
            }
            Err(e) if e.is_wrong_expected_revision() => {
                // Another process recorded this id meanwhile: its result is the one that stands.
                match self.recorded_command(&stream).await? {
                    Some(recorded) => replay(&command_id, method, &hash, recorded),
                    None => Err(store_error(e)),
                }
            }
            // Carried out but not recorded: a retry with the same id carries it out again,
            // which records nothing new (the facts are known) and then records the result.
            Err(e) => Err(store_error(e)),
        }
    }

    async fn recorded_command(&self, stream: &str) -> Result<Option<CommandEvent>, Status> {
        let recorded = self
            .store
            .read_stream(stream, Direction::Forwards, StreamStart::Start, 1)
            .await
            .map_err(store_error)?;
        recorded
            .first()
            .map(|r| decode_recorded::<CommandEvent>(r).map_err(app_error))
            .transpose()
    }
}

fn replay(
    command_id: &str,
    method: &str,
    hash: &str,
    recorded: CommandEvent,
) -> Result<Response<pb::CommandResponse>, Status> {
    let CommandEvent::CommandHandled {
        method: first_method,
        request_sha256,
        result,
        handled_at,
        ..
    } = recorded;
    if request_sha256 != hash {
        return Err(exists(
            "command_id",
            format!(
                "{command_id:?} was already used at {} for a different request ({first_method}); \
                 the same id must carry the same request (this one: {method})",
                fmt_time(handled_at)
            ),
        ));
    }
    answer(command_id, &result, handled_at, true)
}
