//! upline's gRPC API (`proto/upline/v1`): a `CommandService` that changes the company and its
//! orders through the same application layer as the webhooks, a `QueryService` that reads them,
//! `grpc.health.v1` health and server reflection (v1), behind bearer tokens with roles.
//!
//! ```no_run
//! # async fn demo(app: std::sync::Arc<upline_app::App>) -> Result<(), Box<dyn std::error::Error>> {
//! use upline_api::{run, Api, ApiConfig};
//! let config: ApiConfig = toml::from_str(r#"
//!     listen = "127.0.0.1:50051"
//!     [[tokens]]
//!     name = "ops"
//!     token = "a-long-random-token-of-32-chars.."
//!     role = "operator"
//! "#)?;
//! let api = Api::new(config, app.clone(), app.store().clone(), None)?;
//! let listener = tokio::net::TcpListener::bind(api.listen()).await?;
//! run(listener, api, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
//!
//! Status codes are described in [`error`]; command ids in [`idempotency`].

// `tonic::Status` is large, and it is what every handler returns: boxing it in the helpers only
// to unbox it at the handler's edge would add allocations for nothing.
#![allow(clippy::result_large_err)]

pub mod auth;
mod commands;
pub mod config;
mod convert;
mod directory;
pub mod error;
pub mod idempotency;
mod order_view;
mod queries;
mod read_side;
pub mod records;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{watch, Mutex};
use tonic::transport::Server;
use upline_app::App;
use upline_projections::ReadStore;
use upline_store::EventStore;

pub use auth::Caller;
pub use config::{ApiConfig, ConfigError, Role, TokenConfig};

/// The generated messages, clients and servers of `upline.v1`.
pub mod pb {
    #![allow(clippy::all)]
    tonic::include_proto!("upline.v1");

    /// The encoded file descriptor set of `upline.v1`, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("upline_v1_descriptor");
}

use pb::command_service_server::CommandServiceServer;
use pb::query_service_server::QueryServiceServer;

/// The API's shared state: validated configuration, the application layer and the store. Cheap
/// to clone.
#[derive(Clone)]
pub struct Api {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) listen: SocketAddr,
    pub(crate) app: Arc<App>,
    pub(crate) store: Arc<dyn EventStore>,
    pub(crate) tokens: Arc<auth::Tokens>,
    pub(crate) directory: directory::Directory,
    /// The projections' read store; without one the ledger, reconciliation and BI methods
    /// answer UNIMPLEMENTED.
    pub(crate) read: Option<read_side::ReadSide>,
    pub(crate) command_locks: Vec<Mutex<()>>,
    /// Set when the server stops: ends the WatchLedger streams so that shutdown is not held up
    /// by subscribers.
    pub(crate) stopping: watch::Sender<bool>,
}

impl Api {
    /// Validates the configuration (errors name the field). `store` is the store `app` runs on;
    /// `read_store` the projections' (`ProjectionRunner::read_store`), which the ledger,
    /// reconciliation and BI methods read (without one they answer UNIMPLEMENTED).
    pub fn new(
        config: ApiConfig,
        app: Arc<App>,
        store: Arc<dyn EventStore>,
        read_store: Option<ReadStore>,
    ) -> Result<Api, ConfigError> {
        config.validate()?;
        Ok(Api {
            inner: Arc::new(Inner {
                listen: config.listen,
                app,
                store,
                tokens: Arc::new(auth::Tokens::new(&config)),
                directory: directory::Directory::default(),
                read: read_store.map(read_side::ReadSide::new),
                command_locks: (0..idempotency::COMMAND_LOCK_STRIPES)
                    .map(|_| Mutex::new(()))
                    .collect(),
                stopping: watch::channel(false).0,
            }),
        })
    }

    /// The configured address (the caller binds the listener, so tests can use port 0).
    pub fn listen(&self) -> SocketAddr {
        self.inner.listen
    }
}

/// Serves the API on `listener` until `shutdown` completes, then lets requests in flight finish
/// (WatchLedger streams end at once).
pub async fn run(
    listener: tokio::net::TcpListener,
    api: Api,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<CommandServiceServer<commands::Commands>>()
        .await;
    health_reporter
        .set_serving::<QueryServiceServer<queries::Queries>>()
        .await;
    // Reflection can only fail on a malformed descriptor set, which the build produced.
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the descriptor sets compiled into this binary are valid");

    let commands = CommandServiceServer::with_interceptor(
        commands::Commands {
            inner: api.inner.clone(),
        },
        auth::Guard {
            tokens: api.inner.tokens.clone(),
            commands: true,
        },
    );
    let queries = QueryServiceServer::with_interceptor(
        queries::Queries {
            inner: api.inner.clone(),
        },
        auth::Guard {
            tokens: api.inner.tokens.clone(),
            commands: false,
        },
    );

    let stopping = api.inner.stopping.clone();
    let signal = async move {
        shutdown.await;
        health_reporter
            .set_not_serving::<CommandServiceServer<commands::Commands>>()
            .await;
        health_reporter
            .set_not_serving::<QueryServiceServer<queries::Queries>>()
            .await;
        stopping.send_replace(true);
    };
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "gRPC API listening");
    }
    Server::builder()
        .add_service(health)
        .add_service(reflection)
        .add_service(commands)
        .add_service(queries)
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            signal,
        )
        .await
}
