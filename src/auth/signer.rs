//! The client side of signing, for the project's own tools (demo, loadgen,
//! bench, rig): a client's key kept in a file (`client.json`, mode 0600:
//! the client id, key id and the 32 secret bytes in base64), and the five
//! headers of a signed call.

use super::signature;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A registered client's signing key.
#[derive(Clone)]
pub struct ClientKey {
    pub client_id: String,
    pub key_id: String,
    key: SigningKey,
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientKey({}/{})", self.client_id, self.key_id)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    client_id: String,
    key_id: String,
    /// Base64 of the 32 secret bytes.
    secret_key: String,
    /// Base64 of the public key, as registered.
    public_key: String,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read the client key file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("the client key file {path} is not a client key: {reason}")]
    Parse { path: String, reason: String },
    #[error("cannot write the client key file {path}: {reason}")]
    Write { path: String, reason: String },
}

impl ClientKey {
    /// A fresh key from the system's randomness.
    pub fn generate(client_id: &str, key_id: &str) -> ClientKey {
        let mut secret = [0u8; 32];
        rand::fill(&mut secret);
        ClientKey {
            client_id: client_id.to_string(),
            key_id: key_id.to_string(),
            key: SigningKey::from_bytes(&secret),
        }
    }

    /// Base64 of the public key, as `PUT /v1/admin/clients/{id}` takes it.
    pub fn public_key(&self) -> String {
        signature::public_key_text(&self.key)
    }

    pub fn load(path: &Path) -> Result<ClientKey, KeyFileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| KeyFileError::Read {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        let parse = |reason: String| KeyFileError::Parse {
            path: shown.clone(),
            reason,
        };
        let file: KeyFile = serde_json::from_str(&text).map_err(|e| parse(e.to_string()))?;
        let bytes = STANDARD
            .decode(&file.secret_key)
            .map_err(|e| parse(format!("secret_key: {e}")))?;
        let secret: [u8; 32] = bytes
            .try_into()
            .map_err(|_| parse("secret_key is not 32 bytes".into()))?;
        Ok(ClientKey {
            client_id: file.client_id,
            key_id: file.key_id,
            key: SigningKey::from_bytes(&secret),
        })
    }

    /// Writes the key file, readable by its owner only.
    pub fn save(&self, path: &Path) -> Result<(), KeyFileError> {
        let file = KeyFile {
            client_id: self.client_id.clone(),
            key_id: self.key_id.clone(),
            secret_key: STANDARD.encode(self.key.to_bytes()),
            public_key: self.public_key(),
        };
        let text = serde_json::to_string_pretty(&file).unwrap_or_default();
        let write = |reason: String| KeyFileError::Write {
            path: path.display().to_string(),
            reason,
        };
        std::fs::write(path, text + "\n").map_err(|e| write(e.to_string()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| write(e.to_string()))?;
        }
        Ok(())
    }

    /// The signing headers of a call: a fresh nonce, the clock's seconds.
    pub fn headers(
        &self,
        method: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> [(&'static str, String); 5] {
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .to_string();
        let mut raw = [0u8; 18];
        rand::fill(&mut raw);
        let nonce = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        let message = signature::message(method, path_and_query, &timestamp, &nonce, body);
        let sig = signature::sign(&self.key, &message);
        [
            ("X-Client-Id", self.client_id.clone()),
            ("X-Key-Id", self.key_id.clone()),
            ("X-Timestamp", timestamp),
            ("X-Nonce", nonce),
            ("X-Signature", sig),
        ]
    }

    /// Adds the signing headers to a reqwest request of `body`.
    pub fn sign_request(
        &self,
        request: reqwest::RequestBuilder,
        method: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> reqwest::RequestBuilder {
        self.headers(method, path_and_query, body)
            .into_iter()
            .fold(request, |r, (name, value)| r.header(name, value))
    }
}

/// The path and query of a URL (what is signed).
pub fn path_and_query(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        },
        Err(_) => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_key_loads_and_signs_what_the_switch_verifies() {
        let dir = std::env::temp_dir().join(format!("key-{}", uuid::Uuid::new_v4().simple()));
        let k = ClientKey::generate("rig", "k1");
        k.save(&dir).expect("save");
        let back = ClientKey::load(&dir).expect("load");
        let _ = std::fs::remove_file(&dir);
        let h = back.headers("POST", "/v1/transactions", b"{}");
        let public = signature::public_key(&k.public_key()).expect("key");
        let m = signature::message("POST", "/v1/transactions", &h[2].1, &h[3].1, b"{}");
        assert_eq!(signature::verify(&public, &m, &h[4].1), Ok(()));
        assert!(
            signature::headers(|n| h.iter().find(|(k, _)| *k == n).map(|(_, v)| v.as_str()))
                .is_ok()
        );
        assert_eq!(path_and_query("http://x:1/v1/t?wait=5"), "/v1/t?wait=5");
    }
}
