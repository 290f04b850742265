//! The audit log of operator changes. Triggers write an entry for every
//! change to banks, VPAs, clients and circuit overrides, in the changing
//! transaction; the store names the operator first (`as_actor`: the
//! transaction-local `upi.actor`). Actions that change no row (restarting a
//! bank's adapters) are written here directly. Append-only.

use super::{Store, StoreError};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// One entry.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// Names the operator for the audit triggers of this transaction.
pub async fn as_actor(
    tx: &deadpool_postgres::Transaction<'_>,
    actor: &str,
) -> Result<(), tokio_postgres::Error> {
    tx.execute("SELECT set_config('upi.actor', $1, true)", &[&actor])
        .await
        .map(|_| ())
}

impl Store {
    /// Records an operator action that changes no registration.
    pub async fn audit(&self, actor: &str, action: &str, target: &str) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client
            .execute(
                &client
                    .prepare_cached(
                        "INSERT INTO audit_log (actor, action, target) VALUES ($1, $2, $3)",
                    )
                    .await?,
                &[&actor, &action, &target],
            )
            .await?;
        Ok(())
    }

    /// The latest `limit` entries, newest first, before entry id `before`
    /// when given (paging backwards).
    pub async fn audit_entries(
        &self,
        limit: i64,
        before: Option<i64>,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &client
                    .prepare_cached(
                        "SELECT id, at, actor, action, target, before, after FROM audit_log
                         WHERE $2::int8 IS NULL OR id < $2
                         ORDER BY id DESC LIMIT $1",
                    )
                    .await?,
                &[&limit, &before],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| AuditEntry {
                id: r.get(0),
                at: r.get(1),
                actor: r.get(2),
                action: r.get(3),
                target: r.get(4),
                before: r.get(5),
                after: r.get(6),
            })
            .collect())
    }
}
