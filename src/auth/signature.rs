//! Request signing of client calls, pure: which headers a signed call
//! carries, the string it signs, and the checks in the order the contract
//! names them — `UNSIGNED` (a header missing, a malformed nonce),
//! `UNKNOWN_CLIENT`, `STALE_TIMESTAMP`, `BAD_SIGNATURE` — before the nonce is
//! used up (`REPLAYED_NONCE`, decided by the database: `store::clients`).
//!
//! The signed string is
//! `METHOD \n PATH_AND_QUERY \n X-Timestamp \n X-Nonce \n hex(SHA-256(body))`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

/// How far a request's timestamp may be from the switch's clock.
pub const MAX_SKEW_S: i64 = 300;
/// How long a used nonce is remembered.
pub const NONCE_TTL_S: i64 = 600;

/// Why a client call was not authenticated (`401`, with its `code`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    Unsigned(String),
    #[error("unknown client or key (or the key was revoked)")]
    UnknownClient,
    #[error("X-Timestamp must be unix seconds within {MAX_SKEW_S} s of the switch's clock")]
    StaleTimestamp,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("this nonce was used in the last {NONCE_TTL_S} s")]
    ReplayedNonce,
}

impl AuthError {
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Unsigned(_) => "UNSIGNED",
            AuthError::UnknownClient => "UNKNOWN_CLIENT",
            AuthError::StaleTimestamp => "STALE_TIMESTAMP",
            AuthError::BadSignature => "BAD_SIGNATURE",
            AuthError::ReplayedNonce => "REPLAYED_NONCE",
        }
    }
}

/// The signing headers of a call, present and well formed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    pub client_id: String,
    pub key_id: String,
    pub timestamp: String,
    pub nonce: String,
    pub signature: String,
}

/// The five headers, or `UNSIGNED` naming the first missing one (or a
/// nonce not 16-64 of `[A-Za-z0-9_-]`). `get` reads one header.
pub fn headers<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<SignedHeaders, AuthError> {
    let need = |name: &str| {
        get(name)
            .map(str::to_string)
            .ok_or_else(|| AuthError::Unsigned(format!("the {name} header is required")))
    };
    let signed = SignedHeaders {
        client_id: need("X-Client-Id")?,
        key_id: need("X-Key-Id")?,
        timestamp: need("X-Timestamp")?,
        nonce: need("X-Nonce")?,
        signature: need("X-Signature")?,
    };
    let n = &signed.nonce;
    if !(16..=64).contains(&n.len())
        || !n
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(AuthError::Unsigned(
            "X-Nonce must be 16-64 of A-Z, a-z, 0-9, _ and -".into(),
        ));
    }
    Ok(signed)
}

/// The timestamp is whole unix seconds within `MAX_SKEW_S` of `now_s`.
pub fn fresh(timestamp: &str, now_s: i64) -> Result<(), AuthError> {
    let ok = !timestamp.is_empty()
        && timestamp.bytes().all(|b| b.is_ascii_digit())
        && timestamp
            .parse::<i64>()
            .is_ok_and(|t| (t - now_s).abs() <= MAX_SKEW_S);
    if ok {
        Ok(())
    } else {
        Err(AuthError::StaleTimestamp)
    }
}

/// The string a client signs.
pub fn message(
    method: &str,
    path_and_query: &str,
    timestamp: &str,
    nonce: &str,
    body: &[u8],
) -> String {
    let digest = Sha256::digest(body);
    let mut hex = String::with_capacity(64);
    for b in digest {
        hex.push_str(&format!("{b:02x}"));
    }
    format!("{method}\n{path_and_query}\n{timestamp}\n{nonce}\n{hex}")
}

/// A public key from its registration: standard base64 (padded) of 32 bytes
/// that are an Ed25519 point.
pub fn public_key(text: &str) -> Option<VerifyingKey> {
    let bytes = STANDARD.decode(text).ok()?;
    let array: [u8; 32] = bytes.try_into().ok()?;
    VerifyingKey::from_bytes(&array).ok()
}

/// Checks `signature` (base64) of `message` with `key`.
pub fn verify(key: &VerifyingKey, message: &str, signature: &str) -> Result<(), AuthError> {
    let bytes = STANDARD
        .decode(signature)
        .map_err(|_| AuthError::BadSignature)?;
    let sig = Signature::from_slice(&bytes).map_err(|_| AuthError::BadSignature)?;
    key.verify(message.as_bytes(), &sig)
        .map_err(|_| AuthError::BadSignature)
}

/// A client's signing key from its 32 secret bytes (tools and tests).
pub fn signing_key(secret: &[u8; 32]) -> SigningKey {
    SigningKey::from_bytes(secret)
}

/// Base64 of a signing key's public half, as registered.
pub fn public_key_text(key: &SigningKey) -> String {
    STANDARD.encode(key.verifying_key().as_bytes())
}

/// Base64 of the signature of `message`.
pub fn sign(key: &SigningKey, message: &str) -> String {
    STANDARD.encode(key.sign(message.as_bytes()).to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_message_verifies_and_any_change_does_not() {
        let key = signing_key(&[7u8; 32]);
        let public = public_key(&public_key_text(&key)).expect("a point");
        let m = message(
            "POST",
            "/v1/transactions?wait=10",
            "1700000000",
            "n-0123456789abcdef",
            b"{}",
        );
        let sig = sign(&key, &m);
        assert_eq!(verify(&public, &m, &sig), Ok(()));
        let other = message(
            "POST",
            "/v1/transactions?wait=11",
            "1700000000",
            "n-0123456789abcdef",
            b"{}",
        );
        assert_eq!(verify(&public, &other, &sig), Err(AuthError::BadSignature));
        assert_eq!(
            verify(&public, &m, "not base64!"),
            Err(AuthError::BadSignature)
        );
        // The empty body's hash is SHA-256 of nothing.
        assert!(
            message("GET", "/x", "1", "n", b"")
                .ends_with("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
    }

    #[test]
    fn headers_and_timestamps_are_checked_in_order() {
        let all = |name: &str| match name {
            "X-Nonce" => Some("short"),
            _ => Some("x"),
        };
        assert_eq!(headers(all).map_err(|e| e.code()), Err("UNSIGNED"));
        assert_eq!(headers(|_| None).map_err(|e| e.code()), Err("UNSIGNED"));
        assert_eq!(fresh("1000", 1300), Ok(()));
        assert_eq!(fresh("1000", 1301), Err(AuthError::StaleTimestamp));
        assert_eq!(fresh("-5", 0), Err(AuthError::StaleTimestamp));
        assert_eq!(fresh("1e3", 1000), Err(AuthError::StaleTimestamp));
        assert!(public_key("AAAA").is_none());
    }
}
