//! `upline serve`: the embedded event store and inbox in the data directory, the application
//! layer, the inbox worker, the commission-posting process manager and the HTTP gateway, started
//! together and stopped together.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use upline_app::inbox::sqlite::SqliteInbox;
use upline_app::inbox::Inbox;
use upline_app::worker::Worker;
use upline_app::{App, AppConfig, CommissionPostings};
use upline_gateway::Gateway;
use upline_projections::ProjectionRunner;
use upline_store::{AllStart, EventStore, SqliteEventStore, StreamFilter};

use crate::config::ServeConfig;

/// The stores and the application layer, opened on a data directory.
pub struct Services {
    pub store: Arc<dyn EventStore>,
    pub inbox: Arc<SqliteInbox>,
    pub app: Arc<App>,
}

impl Services {
    pub async fn open(config: &ServeConfig) -> Result<Services> {
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!(
                "cannot create the data directory {}",
                config.data_dir.display()
            )
        })?;
        let store: Arc<dyn EventStore> = Arc::new(
            SqliteEventStore::open(&config.events_path())
                .await
                .with_context(|| {
                    format!(
                        "cannot open the event store {}",
                        config.events_path().display()
                    )
                })?,
        );
        let inbox = Arc::new(
            SqliteInbox::open(&config.inbox_path())
                .await
                .with_context(|| {
                    format!("cannot open the inbox {}", config.inbox_path().display())
                })?,
        );
        let app = Arc::new(
            App::open(
                store.clone(),
                AppConfig {
                    attribution: config.attribution.clone(),
                    test_orders_earn: config.gateway.test_orders_earn(),
                },
            )
            .await
            .context("cannot load the company from the event store")?,
        );
        Ok(Services { store, inbox, app })
    }

    /// Flushes and closes both stores.
    pub async fn close(&self) -> Result<()> {
        self.inbox.close().await.context("closing the inbox")?;
        self.store
            .close()
            .await
            .context("closing the event store")?;
        Ok(())
    }
}

/// A server running in this process.
pub struct RunningServer {
    pub addr: SocketAddr,
    /// Where the gRPC API listens, when configured.
    pub grpc_addr: Option<SocketAddr>,
    pub services: Services,
    /// The read models (ledger, reconciliation, BI, hierarchy), followed live.
    pub projections: Arc<ProjectionRunner>,
    postings_position: watch::Receiver<u64>,
    shutdown: watch::Sender<bool>,
    gateway: JoinHandle<std::io::Result<()>>,
    worker: JoinHandle<Result<(), upline_app::worker::WorkerError>>,
    postings: JoinHandle<Result<(), upline_app::AppError>>,
    projector: JoinHandle<Result<(), upline_projections::ProjectionError>>,
    grpc: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
}

/// Completes when `rx` turns true (or its sender is gone).
async fn stopped(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            break;
        }
    }
}

/// Opens the data directory and starts every part; returns once the gateway listens and is ready.
pub async fn start(config: ServeConfig) -> Result<RunningServer> {
    let services = Services::open(&config).await?;
    let (shutdown, shutdown_rx) = watch::channel(false);

    let inbox: Arc<dyn Inbox> = services.inbox.clone();
    let worker = Worker::new(inbox.clone(), services.app.clone());
    let hold = config.hold_deliveries;
    let worker = tokio::spawn({
        let rx = shutdown_rx.clone();
        async move {
            if hold {
                tracing::warn!("holding deliveries: they are stored, and processed after a restart without --hold-deliveries");
                return Ok(());
            }
            worker.run(rx).await
        }
    });

    let gateway =
        Gateway::new(config.gateway.clone(), inbox).context("invalid [gateway] configuration")?;
    // Held events of every consumer show on /readyz and /metrics.
    let health = gateway.consumer_health();
    let postings = CommissionPostings::open(services.store.clone())
        .await?
        .with_health(health.clone());
    let postings_position = postings.position();
    let postings = tokio::spawn({
        let rx = shutdown_rx.clone();
        async move { postings.run(rx).await }
    });

    let projections = Arc::new(
        upline_projections::open_default(
            services.store.clone(),
            &config.data_dir,
            config.read_store.as_deref(),
        )
        .await
        .context("cannot open the read store")?
        .with_health(health),
    );
    let projector = tokio::spawn({
        let (runner, rx) = (projections.clone(), shutdown_rx.clone());
        async move { runner.run(rx).await }
    });

    let ready = gateway.readiness();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let gateway = tokio::spawn(upline_gateway::run(
        listener,
        gateway,
        stopped(shutdown_rx.clone()),
    ));

    let (grpc, grpc_addr) = match &config.grpc {
        Some(api_config) => {
            let api = upline_api::Api::new(
                api_config.clone(),
                services.app.clone(),
                services.store.clone(),
                Some(projections.read_store().clone()),
            )
            .context("invalid [grpc] configuration")?;
            let listener = tokio::net::TcpListener::bind(api.listen())
                .await
                .with_context(|| format!("cannot listen for gRPC on {}", api.listen()))?;
            let grpc_addr = listener.local_addr()?;
            (
                Some(tokio::spawn(upline_api::run(
                    listener,
                    api,
                    stopped(shutdown_rx.clone()),
                ))),
                Some(grpc_addr),
            )
        }
        None => (None, None),
    };
    ready.store(true, Ordering::Release);
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "upline is serving");
    Ok(RunningServer {
        addr,
        grpc_addr,
        services,
        projections,
        postings_position,
        shutdown,
        gateway,
        worker,
        postings,
        projector,
        grpc,
    })
}

impl RunningServer {
    /// Waits until every accepted delivery is processed and every commission posted, or the
    /// timeout passes. For the demo and tests: production never needs to wait.
    pub async fn wait_idle(&self, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let orders = StreamFilter {
            stream_prefixes: vec![upline_app::streams::ORDER_PREFIX.into()],
        };
        loop {
            let pending = self.services.inbox.stats().await?.pending;
            let posted_to = *self.postings_position.borrow();
            let unposted = self
                .services
                .store
                .read_all(AllStart::After(posted_to), &orders, 1)
                .await?;
            if pending == 0 && unposted.is_empty() {
                // Everything is posted: bring the read models up to date with it.
                self.projections.catch_up().await?;
                return Ok(());
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "not idle after {timeout:?}: {pending} deliveries pending, postings at {posted_to}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops accepting, lets in-flight requests and the delivery in hand finish, records the
    /// postings checkpoint, and closes the stores.
    pub async fn stop(self) -> Result<()> {
        let _ = self.shutdown.send(true);
        self.gateway
            .await
            .context("gateway task")?
            .context("gateway")?;
        if let Some(grpc) = self.grpc {
            grpc.await.context("gRPC task")?.context("gRPC API")?;
        }
        self.worker
            .await
            .context("worker task")?
            .context("inbox worker")?;
        self.postings
            .await
            .context("postings task")?
            .context("commission postings")?;
        self.projector
            .await
            .context("projections task")?
            .context("projections")?;
        self.projections.read_store().close().await;
        self.services.close().await
    }
}

/// `upline serve`: runs until Ctrl-C or SIGTERM.
pub async fn serve(config: ServeConfig) -> Result<()> {
    let server = start(config).await?;
    println!("upline listening on http://{}", server.addr);
    if let Some(addr) = server.grpc_addr {
        println!("gRPC API on {addr}");
    }
    shutdown_signal().await;
    tracing::info!("shutting down: finishing work in flight");
    server.stop().await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
