//! Signature checks against published vectors and an independently made RSA signature.

mod support;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::RsaPrivateKey;
use sha2::Sha256;
use support::fixture_text;
use upline_platforms::signature::{
    parse_rsa_public_key, verify_adobe_commerce, verify_hmac_sha256_base64, woocommerce_secret,
};
use upline_platforms::SignatureError;

const SHOPIFY_BODY: &[u8] = br#"{"foo": "bar"}"#;
const SHOPIFY_HMAC: &str = "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g=";

#[test]
fn shopify_sdk_vector_verifies() {
    assert_eq!(SHOPIFY_BODY.len(), 14);
    assert!(verify_hmac_sha256_base64(
        &[b"test_secret_key"],
        SHOPIFY_BODY,
        SHOPIFY_HMAC
    ));
}

#[test]
fn rfc_4231_case_2_verifies() {
    // hex 5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843 in base64.
    let mac = STANDARD.encode([
        0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24, 0x26, 0x08, 0x95, 0x75,
        0xc7, 0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27, 0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9, 0x64, 0xec,
        0x38, 0x43,
    ]);
    assert_eq!(mac, "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=");
    assert!(verify_hmac_sha256_base64(
        &[b"Jefe"],
        b"what do ya want for nothing?",
        &mac
    ));
    assert!(!verify_hmac_sha256_base64(
        &[b"Jefe"],
        b"what do ya want for nothing!",
        &mac
    ));
}

#[test]
fn any_of_two_rotated_secrets_verifies() {
    let old: &[u8] = b"old-secret";
    let new: &[u8] = b"test_secret_key";
    assert!(verify_hmac_sha256_base64(
        &[old, new],
        SHOPIFY_BODY,
        SHOPIFY_HMAC
    ));
    assert!(verify_hmac_sha256_base64(
        &[new, old],
        SHOPIFY_BODY,
        SHOPIFY_HMAC
    ));
    assert!(!verify_hmac_sha256_base64(
        &[old],
        SHOPIFY_BODY,
        SHOPIFY_HMAC
    ));
    assert!(!verify_hmac_sha256_base64(&[], SHOPIFY_BODY, SHOPIFY_HMAC));
}

#[test]
fn tampered_bodies_and_malformed_headers_do_not_verify() {
    let secrets: &[&[u8]] = &[b"test_secret_key"];
    // One byte more whitespace: a re-serialised body never verifies.
    assert!(!verify_hmac_sha256_base64(
        secrets,
        br#"{"foo":  "bar"}"#,
        SHOPIFY_HMAC
    ));
    assert!(!verify_hmac_sha256_base64(
        secrets,
        SHOPIFY_BODY,
        "not base64!"
    ));
    assert!(!verify_hmac_sha256_base64(secrets, SHOPIFY_BODY, ""));
    // A truncated MAC is refused (verify_slice compares the full length).
    assert!(!verify_hmac_sha256_base64(
        secrets,
        SHOPIFY_BODY,
        &SHOPIFY_HMAC[..20]
    ));
    // Surrounding whitespace in the header is tolerated.
    assert!(verify_hmac_sha256_base64(
        secrets,
        SHOPIFY_BODY,
        &format!("  {SHOPIFY_HMAC}\r\n")
    ));
}

#[test]
fn an_empty_secret_never_verifies() {
    // base64(HMAC-SHA256("", body)): anyone could compute it.
    let empty_mac = {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<Sha256>::new_from_slice(b"").unwrap();
        mac.update(SHOPIFY_BODY);
        STANDARD.encode(mac.finalize().into_bytes())
    };
    assert!(!verify_hmac_sha256_base64(&[b""], SHOPIFY_BODY, &empty_mac));
}

#[test]
fn woocommerce_secret_is_decoded_like_wp_specialchars_decode() {
    assert_eq!(woocommerce_secret("plain"), b"plain".to_vec());
    assert_eq!(woocommerce_secret("a&amp;b"), b"a&b".to_vec());
    assert_eq!(woocommerce_secret("it&#039;s"), b"it's".to_vec());
    assert_eq!(woocommerce_secret("&quot;q&quot;"), b"\"q\"".to_vec());
    assert_eq!(woocommerce_secret("&lt;&gt;"), b"<>".to_vec());
    assert_eq!(woocommerce_secret("&#x27;&#X22;&#x26;"), b"'\"&".to_vec());
    assert_eq!(
        woocommerce_secret("&#39;&#0039;&#034;&#060;&#062;&#038;"),
        b"''\"<>&".to_vec()
    );
    // One pass only, as strtr does: &amp;lt; is "&lt;", not "<".
    assert_eq!(woocommerce_secret("&amp;lt;"), b"&lt;".to_vec());
    // Entities WordPress leaves alone stay as they are.
    assert_eq!(
        woocommerce_secret("&nbsp;&eacute;&#65;&"),
        b"&nbsp;&eacute;&#65;&".to_vec()
    );
    assert_eq!(woocommerce_secret("x & y"), b"x & y".to_vec());
}

#[test]
fn woocommerce_signs_with_the_decoded_secret() {
    // openssl dgst -sha256 -hmac "a&b'c\"d<e>" of "hello", base64.
    let header = "MNOws9F8ng3qd9zqnEqNtyjBx6pq/Hm9Op300g4uxzQ=";
    let stored = "a&amp;b&#039;c&quot;d&lt;e&gt;";
    let secret = woocommerce_secret(stored);
    assert!(verify_hmac_sha256_base64(&[&secret], b"hello", header));
    assert!(!verify_hmac_sha256_base64(
        &[stored.as_bytes()],
        b"hello",
        header
    ));
}

fn sign(body: &[u8]) -> String {
    let private = RsaPrivateKey::from_pkcs8_pem(&fixture_text("adobe_test_private.pem")).unwrap();
    let signer = SigningKey::<Sha256>::new(private);
    let signature = signer.sign(STANDARD.encode(body).as_bytes());
    STANDARD.encode(signature.to_bytes())
}

#[test]
fn adobe_signature_made_by_openssl_verifies() {
    let public = fixture_text("adobe_test_public.pem");
    let signature = fixture_text("adobe_test_signature_foo_bar.b64");
    assert_eq!(
        verify_adobe_commerce(&[&public], SHOPIFY_BODY, &signature),
        Ok(true)
    );
    // The signature is over base64(body), not the body itself.
    let private = RsaPrivateKey::from_pkcs8_pem(&fixture_text("adobe_test_private.pem")).unwrap();
    let over_raw = STANDARD.encode(
        SigningKey::<Sha256>::new(private)
            .sign(SHOPIFY_BODY)
            .to_bytes(),
    );
    assert_eq!(
        verify_adobe_commerce(&[&public], SHOPIFY_BODY, &over_raw),
        Ok(false)
    );
}

#[test]
fn adobe_signature_round_trips_with_spki_and_pkcs1_keys() {
    let body =
        br#"{"eventName":"observer.sales_order_save_after","data":{"order":{"entity_id":3}}}"#;
    let signature = sign(body);
    let spki = fixture_text("adobe_test_public.pem");
    let pkcs1 = fixture_text("adobe_test_public_pkcs1.pem");
    assert!(pkcs1.contains("BEGIN RSA PUBLIC KEY"));
    assert_eq!(verify_adobe_commerce(&[&spki], body, &signature), Ok(true));
    assert_eq!(verify_adobe_commerce(&[&pkcs1], body, &signature), Ok(true));
}

#[test]
fn adobe_wrong_key_tampered_body_and_malformed_signature_are_false() {
    let body = br#"{"data":{"value":{"entity_id":3}}}"#;
    let signature = sign(body);
    let right = fixture_text("adobe_test_public.pem");
    let other = fixture_text("adobe_other_public.pem");
    assert_eq!(
        verify_adobe_commerce(&[&other], body, &signature),
        Ok(false)
    );
    // Rotation: the right key among others verifies.
    assert_eq!(
        verify_adobe_commerce(&[&other, &right], body, &signature),
        Ok(true)
    );
    assert_eq!(
        verify_adobe_commerce(
            &[&right],
            br#"{"data":{"value":{"entity_id":4}}}"#,
            &signature
        ),
        Ok(false)
    );
    assert_eq!(verify_adobe_commerce(&[&right], body, "%%%"), Ok(false));
    assert_eq!(verify_adobe_commerce(&[&right], body, ""), Ok(false));
    assert_eq!(
        verify_adobe_commerce(&[&right], body, &STANDARD.encode([1u8, 2, 3])),
        Ok(false)
    );
}

#[test]
fn adobe_unusable_keys_are_errors() {
    let body = b"{}";
    assert_eq!(
        verify_adobe_commerce(&[], body, "AAAA"),
        Err(SignatureError::NoPublicKey)
    );
    let right = fixture_text("adobe_test_public.pem");
    assert!(matches!(
        verify_adobe_commerce(
            &[
                &right,
                "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----"
            ],
            body,
            "AAAA"
        ),
        Err(SignatureError::InvalidPublicKey { index: 1, .. })
    ));
    assert!(parse_rsa_public_key("not a key").is_err());
    // A private key is not a public key.
    assert!(parse_rsa_public_key(&fixture_text("adobe_test_private.pem")).is_err());
}
