//! The gRPC API's configuration: where it listens and which bearer tokens may call it, with which
//! role. Loaded from TOML by the binary (`toml::from_str::<ApiConfig>`), validated by
//! [`ApiConfig::validate`] (also called by `Api::new`), every error naming its field.
//!
//! ```toml
//! listen = "127.0.0.1:50051"
//!
//! [[tokens]]
//! name = "ops-console"
//! token = "a-long-random-token-of-32-chars.."
//! role = "operator"      # commands and queries
//!
//! [[tokens]]
//! name = "grafana"
//! token = "another-long-random-token......"
//! role = "dashboard"     # queries only (as is "auditor")
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;

use serde::Deserialize;

/// Where the API listens unless told otherwise: loopback only.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 50051);
/// The most tokens accepted: each request compares against all of them.
pub const MAX_TOKENS: usize = 100;
/// The shortest token accepted: a short token can be guessed.
pub const MIN_TOKEN_BYTES: usize = 16;
/// The longest token accepted (a bound on what a header must carry).
pub const MAX_TOKEN_BYTES: usize = 512;
/// The longest token name (it is recorded with every command a token issues).
pub const MAX_TOKEN_NAME_LEN: usize = 64;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Issues commands and reads.
    Operator,
    /// Reads (dashboards, BI tools).
    Dashboard,
    /// Reads (finance, external auditors).
    Auditor,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Dashboard => "dashboard",
            Role::Auditor => "auditor",
        }
    }

    /// Whether the role may issue commands (only operators may).
    pub fn may_command(&self) -> bool {
        matches!(self, Role::Operator)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One bearer token. `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds the token; recorded with the commands it issues and shown in logs.
    pub name: String,
    /// The secret, sent as `authorization: Bearer <token>`.
    pub token: String,
    pub role: Role,
}

impl fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenConfig")
            .field("name", &self.name)
            .field("token", &"redacted")
            .field("role", &self.role)
            .finish()
    }
}

/// The whole API configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Default 127.0.0.1:50051.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// At least one: without a token every call would be refused.
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
}

fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN
}

impl Default for ApiConfig {
    /// Listens on the default address with no token (which `validate` refuses: add one).
    fn default() -> Self {
        ApiConfig {
            listen: DEFAULT_LISTEN,
            tokens: Vec::new(),
        }
    }
}

/// A configuration problem, named by its field (`tokens[1].token`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for ConfigError {}

fn err(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        message: message.into(),
    }
}

impl ApiConfig {
    /// Checks every field; the first problem is returned, named by its field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.tokens.is_empty() {
            return Err(err(
                "tokens",
                "at least one token is required: without one every call is refused",
            ));
        }
        if self.tokens.len() > MAX_TOKENS {
            return Err(err(
                "tokens",
                format!("at most {MAX_TOKENS} tokens, got {}", self.tokens.len()),
            ));
        }
        let mut names = BTreeSet::new();
        let mut secrets = BTreeSet::new();
        for (i, token) in self.tokens.iter().enumerate() {
            let name = token.name.trim();
            if name.is_empty() {
                return Err(err(format!("tokens[{i}].name"), "is empty"));
            }
            if name.chars().count() > MAX_TOKEN_NAME_LEN || name.chars().any(|c| c.is_control()) {
                return Err(err(
                    format!("tokens[{i}].name"),
                    format!("must be at most {MAX_TOKEN_NAME_LEN} characters, none a control"),
                ));
            }
            if !names.insert(name) {
                return Err(err(
                    format!("tokens[{i}].name"),
                    format!("{name:?} is used by another token"),
                ));
            }
            let secret = token.token.as_str();
            if secret.len() < MIN_TOKEN_BYTES || secret.len() > MAX_TOKEN_BYTES {
                return Err(err(
                    format!("tokens[{i}].token"),
                    format!(
                        "must be {MIN_TOKEN_BYTES} to {MAX_TOKEN_BYTES} bytes (got {})",
                        secret.len()
                    ),
                ));
            }
            // A header value: visible ASCII only, so that it survives HTTP/2 unchanged.
            if !secret.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(err(
                    format!("tokens[{i}].token"),
                    "may only hold visible ASCII characters (no spaces)",
                ));
            }
            if !secrets.insert(secret) {
                return Err(err(
                    format!("tokens[{i}].token"),
                    "is the same as another token's: each holder needs their own",
                ));
            }
        }
        Ok(())
    }
}
