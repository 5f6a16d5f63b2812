//! Signature checks over the raw request bytes, before anything is parsed.
//!
//! - Shopify (`X-Shopify-Hmac-Sha256`) and WooCommerce (`X-WC-Webhook-Signature`):
//!   base64(HMAC-SHA256(secret, raw body)). WooCommerce first decodes HTML entities in the
//!   secret ([`woocommerce_secret`]).
//! - Adobe Commerce webhooks (`x-adobe-commerce-webhook-signature`): an RSA-SHA256
//!   (PKCS#1 v1.5) signature over the *base64 encoding* of the body, checked with the public key
//!   shown in the Commerce admin.
//!
//! Every function accepts several keys so that a rotation (old and new secret side by side) never
//! drops a delivery.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use rsa::RsaPublicKey;
use sha2::Sha256;

use crate::error::SignatureError;

type HmacSha256 = Hmac<Sha256>;

/// The longest signature header worth decoding. An HMAC-SHA256 in base64 is 44 characters and an
/// RSA-4096 signature 684; anything much longer is not a signature.
pub const MAX_SIGNATURE_HEADER_LEN: usize = 2048;

/// True when `header_value` is base64(HMAC-SHA256(secret, body)) for any of `secrets`.
///
/// The comparison is constant-time (`Mac::verify_slice`). Surrounding whitespace in the header is
/// ignored; a header that is not base64 matches nothing. An empty secret never matches: anyone
/// could sign with it, so it can only be a configuration mistake.
pub fn verify_hmac_sha256_base64(secrets: &[&[u8]], body: &[u8], header_value: &str) -> bool {
    let header = header_value.trim();
    if header.is_empty() || header.len() > MAX_SIGNATURE_HEADER_LEN {
        return false;
    }
    let Ok(expected) = STANDARD.decode(header) else {
        return false;
    };
    // Every secret is tried (no early exit), so the time taken does not say which one matched.
    let mut any = false;
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        let Ok(mut mac) = HmacSha256::new_from_slice(secret) else {
            continue;
        };
        mac.update(body);
        any |= mac.verify_slice(&expected).is_ok();
    }
    any
}

/// The key WooCommerce actually signs with: the stored secret passed through WordPress's
/// `wp_specialchars_decode($secret, ENT_QUOTES)` (WC_Webhook::generate_signature).
///
/// That function decodes only the five special characters, in one pass (`&amp;lt;` becomes
/// `&lt;`, not `<`): `&amp;` `&#038;` `&#x26;` → `&`, `&lt;` `&#060;` → `<`, `&gt;` `&#062;` →
/// `>`, `&quot;` `&#034;` `&#x22;` → `"`, `&#039;` `&#x27;` → `'`; numeric forms may carry leading
/// zeros and hex forms are case-insensitive. Other entities (`&nbsp;`, `&eacute;`) stay as they
/// are, exactly as WordPress leaves them; a general HTML decoder would sign with a different key.
pub fn woocommerce_secret(raw: &str) -> Vec<u8> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        match decode_special_entity(tail) {
            Some((ch, used)) => {
                out.push(ch);
                rest = &tail[used..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out.into_bytes()
}

/// Decodes one of WordPress's special-character entities at the start of `text` (which starts
/// with `&`): the character and the bytes consumed.
fn decode_special_entity(text: &str) -> Option<(char, usize)> {
    let end = text.find(';')?;
    // The longest entity WordPress decodes with zero padding is short; a distant ';' is not ours.
    if end > 32 {
        return None;
    }
    let name = &text[1..end];
    let ch = match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        _ => {
            let code =
                if let Some(hex) = name.strip_prefix("#x").or_else(|| name.strip_prefix("#X")) {
                    // /&#x0*27;/i, /&#x0*22;/i, /&#x0*26;/i
                    let digits = hex.trim_start_matches('0');
                    match digits.to_ascii_lowercase().as_str() {
                        "27" => '\'',
                        "22" => '"',
                        "26" => '&',
                        _ => return None,
                    }
                } else if let Some(dec) = name.strip_prefix('#') {
                    // /&#0*39;/, /&#0*34;/, /&#0*60;/, /&#0*62;/, /&#0*38;/
                    if !dec.bytes().all(|b| b.is_ascii_digit()) {
                        return None;
                    }
                    match dec.trim_start_matches('0') {
                        "39" => '\'',
                        "34" => '"',
                        "60" => '<',
                        "62" => '>',
                        "38" => '&',
                        _ => return None,
                    }
                } else {
                    return None;
                };
            code
        }
    };
    Some((ch, end + 1))
}

/// Parses an RSA public key in PEM: SPKI (`BEGIN PUBLIC KEY`, what the Commerce admin shows) or
/// PKCS#1 (`BEGIN RSA PUBLIC KEY`).
pub fn parse_rsa_public_key(pem: &str) -> Result<RsaPublicKey, String> {
    let pem = pem.trim();
    match RsaPublicKey::from_public_key_pem(pem) {
        Ok(key) => Ok(key),
        Err(spki) => RsaPublicKey::from_pkcs1_pem(pem)
            .map_err(|pkcs1| format!("not SPKI ({spki}) and not PKCS#1 ({pkcs1})")),
    }
}

/// Checks an Adobe Commerce webhook signature: `signature_b64` (the
/// `x-adobe-commerce-webhook-signature` header) must be an RSA-SHA256 PKCS#1 v1.5 signature of
/// base64(body) under one of `public_keys_pem`.
///
/// `Err` only when the configuration is unusable (no key, or a key that is not an RSA public key
/// in PEM): every configured key is parsed, so a broken key is noticed on the first delivery
/// rather than on the day the other one is retired. A malformed or wrong signature is `Ok(false)`.
pub fn verify_adobe_commerce(
    public_keys_pem: &[&str],
    body: &[u8],
    signature_b64: &str,
) -> Result<bool, SignatureError> {
    if public_keys_pem.is_empty() {
        return Err(SignatureError::NoPublicKey);
    }
    let keys = public_keys_pem
        .iter()
        .enumerate()
        .map(|(index, pem)| {
            parse_rsa_public_key(pem)
                .map_err(|reason| SignatureError::InvalidPublicKey { index, reason })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let header = signature_b64.trim();
    if header.is_empty() || header.len() > MAX_SIGNATURE_HEADER_LEN {
        return Ok(false);
    }
    let Ok(raw) = STANDARD.decode(header) else {
        return Ok(false);
    };
    let Ok(signature) = Signature::try_from(raw.as_slice()) else {
        return Ok(false);
    };
    let message = STANDARD.encode(body);
    Ok(keys.into_iter().any(|key| {
        VerifyingKey::<Sha256>::new(key)
            .verify(message.as_bytes(), &signature)
            .is_ok()
    }))
}
