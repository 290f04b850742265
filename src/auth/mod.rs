//! Who is calling: registered clients (PSP apps) with their Ed25519 keys and
//! handles, and request signing (`signature`, pure). The `ClientDirectory`
//! is this node's read model of the `clients` table: loaded at start, kept
//! current by `cluster::config_sync` (a `client:<id>` notice reloads one
//! client, so a revoked key stops working on every node at once) and by the
//! operator's own `PUT`. Written by those two only; read by the handlers.

pub mod signature;
pub mod signer;

use crate::adapters::store::clients::ClientRecord;
use ed25519_dalek::VerifyingKey;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// A registered client, its keys parsed.
#[derive(Debug, Clone)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    /// Lower-cased PSP handles it serves.
    pub handles: Vec<String>,
    pub keys: HashMap<String, VerifyingKey>,
}

impl Client {
    /// The client of a registration; a key that does not parse (the API
    /// refuses those, so only a hand-edited row) is left out, not trusted.
    pub fn from_record(r: &ClientRecord) -> Client {
        let keys = r
            .keys
            .iter()
            .filter_map(|k| {
                let key = signature::public_key(&k.public_key);
                if key.is_none() {
                    tracing::warn!(client = %r.client_id, key = %k.key_id, "a stored client key does not parse; ignored");
                }
                Some((k.key_id.clone(), key?))
            })
            .collect();
        Client {
            client_id: r.client_id.clone(),
            name: r.name.clone(),
            handles: r.handles.clone(),
            keys,
        }
    }
}

/// This node's view of the registered clients.
#[derive(Clone, Default)]
pub struct ClientDirectory {
    clients: Arc<RwLock<HashMap<String, Arc<Client>>>>,
}

impl ClientDirectory {
    pub fn get(&self, client_id: &str) -> Option<Arc<Client>> {
        let map = self.clients.read().unwrap_or_else(|e| e.into_inner());
        map.get(client_id).cloned()
    }

    pub fn set(&self, client: Client) {
        let mut map = self.clients.write().unwrap_or_else(|e| e.into_inner());
        map.insert(client.client_id.clone(), Arc::new(client));
    }

    pub fn remove(&self, client_id: &str) {
        let mut map = self.clients.write().unwrap_or_else(|e| e.into_inner());
        map.remove(client_id);
    }

    /// Replaces the whole view (a reload after a reconnect).
    pub fn replace_all(&self, clients: impl IntoIterator<Item = Client>) {
        let fresh: HashMap<_, _> = clients
            .into_iter()
            .map(|c| (c.client_id.clone(), Arc::new(c)))
            .collect();
        let mut map = self.clients.write().unwrap_or_else(|e| e.into_inner());
        *map = fresh;
    }
}
