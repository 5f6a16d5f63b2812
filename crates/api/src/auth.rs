//! Bearer tokens with roles, checked by a tonic interceptor in front of each service.
//!
//! Tokens are kept as SHA-256 digests and every configured digest is compared in constant time
//! on every request, so neither the comparison nor which token matched leaks through timing.

use sha2::{Digest, Sha256};
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

use crate::config::{ApiConfig, Role};

/// Who is calling: put into the request's extensions by the interceptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's configured name.
    pub name: String,
    pub role: Role,
}

pub(crate) struct Tokens {
    entries: Vec<([u8; 32], Caller)>,
}

impl Tokens {
    pub(crate) fn new(config: &ApiConfig) -> Tokens {
        Tokens {
            entries: config
                .tokens
                .iter()
                .map(|t| {
                    (
                        Sha256::digest(t.token.as_bytes()).into(),
                        Caller {
                            name: t.name.trim().to_string(),
                            role: t.role,
                        },
                    )
                })
                .collect(),
        }
    }

    fn authenticate(&self, metadata: &MetadataMap) -> Result<Caller, Status> {
        let Some(value) = metadata.get("authorization") else {
            return Err(Status::unauthenticated(
                "authorization: missing; send `authorization: Bearer <token>`",
            ));
        };
        let value = value.to_str().map_err(|_| {
            Status::unauthenticated("authorization: not a visible ASCII header value")
        })?;
        let token = value
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(|| Status::unauthenticated("authorization: expected `Bearer <token>`"))?;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (known, caller) in &self.entries {
            // Every entry is compared, whatever matched before.
            let difference = known
                .iter()
                .zip(digest.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if difference == 0 {
                found = Some(caller);
            }
        }
        found
            .cloned()
            .ok_or_else(|| Status::unauthenticated("authorization: unknown bearer token"))
    }
}

/// The interceptor: authenticates, checks the role the service needs, and hands the [`Caller`]
/// to the handler.
#[derive(Clone)]
pub(crate) struct Guard {
    pub(crate) tokens: std::sync::Arc<Tokens>,
    /// Commands need the operator role; queries any role.
    pub(crate) commands: bool,
}

impl tonic::service::Interceptor for Guard {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let caller = self.tokens.authenticate(request.metadata())?;
        if self.commands && !caller.role.may_command() {
            return Err(Status::permission_denied(format!(
                "authorization: token {:?} has the {} role; commands need the operator role",
                caller.name, caller.role
            )));
        }
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}
