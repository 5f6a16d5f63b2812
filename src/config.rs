//! `upline serve` configuration: an optional TOML file, then environment variables and flags
//! (flags win). Every field has a default, so `upline serve` with nothing runs on `./data`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;
use upline_app::attribution::{AttributionSource, DEFAULT_PRECEDENCE};
use upline_gateway::GatewayConfig;

/// ```toml
/// data_dir = "./data"              # the embedded event store and inbox live here
/// listen = "127.0.0.1:8080"        # HTTP: webhooks, /healthz, /readyz, /metrics
/// log_json = false                 # structured logs as JSON lines
/// hold_deliveries = false          # maintenance: store deliveries, process them later
/// read_store = "postgres://user@host/db"   # read models; default {data_dir}/read.sqlite
/// attribution = ["explicit_ref", "discount_code", "landing_ref", "customer"]
///
/// [gateway]
/// max_body_bytes = 1048576
/// replay_window_hours = 72         # older deliveries are parked, not processed
/// [[gateway.shops]]
/// platform = "shopify"
/// shop = "acme.myshopify.com"
/// secrets = ["new-secret", "old-secret"]   # two while a rotation is under way
/// test_orders = "earn"               # default "record": test orders earn nothing
///
/// [grpc]                             # optional: the gRPC command and query API
/// listen = "127.0.0.1:50051"
/// [[grpc.tokens]]
/// name = "ops"
/// token = "a-long-random-token"
/// role = "operator"                  # operator: commands and queries; dashboard, auditor: queries
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    #[serde(default)]
    pub log_json: bool,
    /// Maintenance: accept and store deliveries durably, but do not process them until the
    /// server is started without it.
    #[serde(default)]
    pub hold_deliveries: bool,
    /// The read models' store: a `postgres://` URL, or a SQLite path; default
    /// `{data_dir}/read.sqlite`.
    #[serde(default)]
    pub read_store: Option<String>,
    /// Where an order's distributor is looked for, first match wins.
    #[serde(default = "default_attribution")]
    pub attribution: Vec<AttributionSource>,
    #[serde(default)]
    pub gateway: GatewayConfig,
    /// The gRPC command and query API; not started without this section (it needs tokens).
    #[serde(default)]
    pub grpc: Option<upline_api::ApiConfig>,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_attribution() -> Vec<AttributionSource> {
    DEFAULT_PRECEDENCE.to_vec()
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            data_dir: default_data_dir(),
            listen: default_listen(),
            log_json: false,
            hold_deliveries: false,
            read_store: None,
            attribution: default_attribution(),
            gateway: GatewayConfig::default(),
            grpc: None,
        }
    }
}

impl ServeConfig {
    /// Reads the TOML file, or the defaults when there is none.
    pub fn load(path: Option<&Path>) -> Result<ServeConfig> {
        let Some(path) = path else {
            return Ok(ServeConfig::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&text)
            .with_context(|| format!("{} is not a valid configuration", path.display()))
    }

    pub fn events_path(&self) -> PathBuf {
        self.data_dir.join("events.sqlite")
    }

    pub fn inbox_path(&self) -> PathBuf {
        self.data_dir.join("inbox.sqlite")
    }
}
