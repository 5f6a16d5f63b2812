//! Why a payload has no meaning: the field at fault (a JSON path) and what is wrong with it.

use std::fmt;

/// A payload that cannot be interpreted. `field` is a JSON path such as `line_items[0].price`
/// (`body` when the bytes are not JSON at all); `message` says what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadError {
    pub field: String,
    pub message: String,
}

impl PayloadError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> PayloadError {
        PayloadError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for PayloadError {}

/// Why a signature could not be checked at all (as opposed to a signature that does not match,
/// which is simply `false`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no public key is configured")]
    NoPublicKey,
    #[error("public key {index} is not an RSA public key in PEM (SPKI or PKCS#1): {reason}")]
    InvalidPublicKey { index: usize, reason: String },
}
