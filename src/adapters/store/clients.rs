//! Registered clients and the nonces their signed calls used up. A client
//! row is the whole registration (handles, keys as registered); the nonce
//! insert is the replay guard: the database decides, so a replay is refused
//! on every node and after any restart, whatever Redis holds.

use super::{Store, StoreError};
use serde::{Deserialize, Serialize};

/// One public key of a client, as registered (base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientKeyRecord {
    pub key_id: String,
    pub public_key: String,
}

/// A client's registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientRecord {
    pub client_id: String,
    pub name: String,
    pub handles: Vec<String>,
    pub keys: Vec<ClientKeyRecord>,
}

fn client_row(r: &tokio_postgres::Row) -> ClientRecord {
    ClientRecord {
        client_id: r.get(0),
        name: r.get(1),
        handles: r.get(2),
        keys: serde_json::from_value(r.get(3)).unwrap_or_default(),
    }
}

impl Store {
    /// Registers or replaces a client (audited as `actor`); true when it
    /// was created.
    pub async fn upsert_client(&self, c: &ClientRecord, actor: &str) -> Result<bool, StoreError> {
        let mut client = self.pool.get().await?;
        let keys = serde_json::to_value(&c.keys).unwrap_or_default();
        let tx = client.transaction().await?;
        super::audit::as_actor(&tx, actor).await?;
        let row = tx
            .query_one(
                "INSERT INTO clients (client_id, name, handles, keys) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (client_id) DO UPDATE SET name = EXCLUDED.name,
                     handles = EXCLUDED.handles, keys = EXCLUDED.keys, updated_at = now()
                 RETURNING (xmax = 0)",
                &[&c.client_id, &c.name, &c.handles, &keys],
            )
            .await?;
        tx.commit().await?;
        Ok(row.get(0))
    }

    pub async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &client
                    .prepare_cached(
                        "SELECT client_id, name, handles, keys FROM clients WHERE client_id = $1",
                    )
                    .await?,
                &[&client_id],
            )
            .await?;
        Ok(row.as_ref().map(client_row))
    }

    pub async fn clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &client
                    .prepare_cached("SELECT client_id, name, handles, keys FROM clients")
                    .await?,
                &[],
            )
            .await?;
        Ok(rows.iter().map(client_row).collect())
    }

    /// Uses up a nonce: true when it was not used in the last `ttl_s`
    /// seconds (by the database's clock), false for a replay.
    pub async fn use_nonce(
        &self,
        client_id: &str,
        nonce: &str,
        ttl_s: i64,
    ) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &client
                    .prepare_cached(
                        "INSERT INTO client_nonces (client_id, nonce) VALUES ($1, $2)
                         ON CONFLICT (client_id, nonce) DO UPDATE SET used_at = now()
                             WHERE client_nonces.used_at < now() - make_interval(secs => $3::int8)
                         RETURNING 1",
                    )
                    .await?,
                &[&client_id, &nonce, &ttl_s],
            )
            .await?;
        Ok(row.is_some())
    }

    /// Forgets up to `limit` nonces older than `ttl_s`; returns how many.
    pub async fn purge_nonces(&self, ttl_s: i64, limit: i64) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .execute(
                &client
                    .prepare_cached(
                        "DELETE FROM client_nonces WHERE ctid = ANY(ARRAY(
                             SELECT ctid FROM client_nonces
                             WHERE used_at < now() - make_interval(secs => $1::int8)
                             LIMIT $2))",
                    )
                    .await?,
                &[&ttl_s, &limit],
            )
            .await?)
    }
}
