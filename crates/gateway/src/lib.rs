//! upline's HTTP edge. Platform webhooks are verified over their raw bytes, interpreted once (and
//! checked against the replay window) to park what cannot be processed now, and written to the
//! durable inbox before the platform gets its 2xx; the worker behind the inbox does the
//! commission work. Also `/healthz`, `/readyz` and
//! `/metrics`.
//!
//! ```no_run
//! # async fn demo(inbox: std::sync::Arc<dyn upline_app::inbox::Inbox>) -> anyhow::Result<()> {
//! use upline_gateway::{run, Gateway, GatewayConfig};
//! let config: GatewayConfig = GatewayConfig::default();
//! let gateway = Gateway::new(config, inbox)?;
//! let ready = gateway.readiness(); // set once the inbox worker runs
//! ready.store(true, std::sync::atomic::Ordering::Release);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! run(listener, gateway, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
//!
//! Routes and answers are described in [`http`]; every bound is in [`limits`].

pub mod config;
pub mod http;
pub mod limits;
pub mod telemetry;
mod webhook;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use axum::serve::ListenerExt;
use metrics_exporter_prometheus::PrometheusHandle;
use sha2::{Digest, Sha256};
use upline_app::inbox::Inbox;
use upline_domain::ids::{Platform, ShopId};

pub use config::{ApiKeyConfig, ConfigError, GatewayConfig, ShopConfig, TestOrders};
pub use telemetry::DeliveryOutcome;

/// The gateway's shared state: validated configuration, the inbox, the readiness flag. Cheap to
/// clone.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) shops: HashMap<(Platform, ShopId), ShopKeys>,
    /// The Magento shop used when a delivery names none: set only when exactly one is configured.
    pub(crate) only_magento_shop: Option<ShopId>,
    pub(crate) api_keys: Vec<ApiKey>,
    pub(crate) max_body_bytes: usize,
    /// How old a delivery's own time may be before it is parked instead of processed.
    pub(crate) replay_window: chrono::Duration,
    pub(crate) inbox: Arc<dyn Inbox>,
    pub(crate) ready: Arc<AtomicBool>,
    /// What the consumers behind the inbox hold back: `/readyz` answers degraded while any.
    pub(crate) consumers: upline_app::consumer::ConsumerHealth,
    /// Permits for [`limits::MAX_WEBHOOKS_IN_FLIGHT`].
    pub(crate) in_flight: Arc<tokio::sync::Semaphore>,
    pub(crate) metrics: &'static PrometheusHandle,
}

/// How one shop's deliveries are verified.
pub(crate) enum ShopKeys {
    /// Shared secrets (Shopify as configured; WooCommerce already HTML-entity-decoded).
    Hmac(Vec<Vec<u8>>),
    /// Magento's PEM public keys.
    Rsa(Vec<String>),
}

pub(crate) struct ApiKey {
    pub(crate) name: String,
    pub(crate) shop: ShopId,
    /// SHA-256 of the bearer token: compared in constant time, whatever the token's length.
    pub(crate) bearer_sha256: Option<[u8; 32]>,
    pub(crate) hmac_secret: Option<Vec<u8>>,
}

impl Gateway {
    /// Validates the configuration (errors name the field) and prepares the keys. Also installs
    /// the process's Prometheus recorder if none is installed yet ([`telemetry::prometheus`]).
    pub fn new(config: GatewayConfig, inbox: Arc<dyn Inbox>) -> Result<Gateway, ConfigError> {
        config.validate()?;
        webhook::check_public_keys(&config)?;
        let replay_window = config.replay_window();
        let mut shops = HashMap::with_capacity(config.shops.len());
        let mut magento = Vec::new();
        for shop in config.shops {
            let keys = match shop.platform {
                Platform::Shopify => {
                    ShopKeys::Hmac(shop.secrets.iter().map(|s| s.as_bytes().to_vec()).collect())
                }
                Platform::Woocommerce => ShopKeys::Hmac(
                    shop.secrets
                        .iter()
                        .map(|s| upline_platforms::signature::woocommerce_secret(s))
                        .collect(),
                ),
                Platform::Magento => {
                    magento.push(shop.shop.clone());
                    ShopKeys::Rsa(shop.public_keys_pem)
                }
                Platform::Direct => unreachable!("validate refuses direct shops"),
            };
            shops.insert((shop.platform, shop.shop), keys);
        }
        let only_magento_shop = if magento.len() == 1 {
            magento.pop()
        } else {
            None
        };
        let api_keys = config
            .api_keys
            .into_iter()
            .map(|key| ApiKey {
                name: key.name.trim().to_string(),
                shop: key.shop,
                bearer_sha256: key
                    .bearer_token
                    .map(|t| Sha256::digest(t.as_bytes()).into()),
                hmac_secret: key.hmac_secret.map(String::into_bytes),
            })
            .collect();
        Ok(Gateway {
            inner: Arc::new(Inner {
                shops,
                only_magento_shop,
                api_keys,
                max_body_bytes: config.max_body_bytes,
                replay_window,
                inbox,
                ready: Arc::new(AtomicBool::new(false)),
                consumers: upline_app::consumer::ConsumerHealth::default(),
                in_flight: Arc::new(tokio::sync::Semaphore::new(limits::MAX_WEBHOOKS_IN_FLIGHT)),
                metrics: telemetry::prometheus(),
            }),
        })
    }

    /// The readiness flag behind `/readyz`: false until the binary sets it (once its inbox worker
    /// runs); it may clear it again while shutting down.
    pub fn readiness(&self) -> Arc<AtomicBool> {
        self.inner.ready.clone()
    }

    /// The board the consumers (postings, projections) report held events to; `/readyz` reads
    /// it. Hand a clone to each consumer.
    pub fn consumer_health(&self) -> upline_app::consumer::ConsumerHealth {
        self.inner.consumers.clone()
    }

    /// The routes, for embedding in a larger server. [`run`] serves exactly this.
    pub fn router(&self) -> axum::Router {
        http::router(self.clone())
    }
}

/// Serves the gateway on `listener` until `shutdown` completes; then stops accepting, lets the
/// requests in flight finish (a delivery being written still gets its answer), and returns.
pub async fn run(
    listener: tokio::net::TcpListener,
    gateway: Gateway,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "gateway listening");
    }
    // Answers are small and latency matters: do not let Nagle hold them back.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, gateway.router())
        .with_graceful_shutdown(shutdown)
        .await?;
    tracing::info!("gateway stopped");
    Ok(())
}
