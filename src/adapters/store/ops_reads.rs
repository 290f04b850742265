//! What operators read about transactions (the console's "sagas" and
//! "search"): unfinished sagas counted by their last checkpointed step with
//! the oldest ones, and a search by id, VPA or status, newest first. Every
//! read is bounded (a cap on the rows counted, a page size, a statement
//! timeout): a backlog of a million sagas must not make a console poll
//! expensive.

use super::{Store, StoreError};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Unfinished sagas counted at most (the count says when it stopped there).
pub const MAX_COUNTED: i64 = 10_000;

/// A transaction in an operator's list.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct OpsTxn {
    pub txn_id: Uuid,
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
    /// The saga's last checkpointed step (`DEBITING`, `CREDITED`, …).
    pub step: String,
    pub payer_vpa: String,
    pub payee_vpa: String,
    pub payer_bank: String,
    pub payee_bank: String,
    /// Rupees, exact.
    pub amount: String,
    pub reason_code: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The node running it (unfinished sagas only).
    pub owner: Option<Uuid>,
    /// The client that created it (empty: authentication was off).
    pub client_id: String,
}

/// Unfinished sagas by step.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct StepCount {
    pub step: String,
    pub count: i64,
}

/// What a search looks for (at least one of the three).
#[derive(Debug, Clone, Default)]
pub struct TxnSearch {
    pub txn_id: Option<Uuid>,
    pub vpa: Option<String>,
    pub status: Option<String>,
    /// Only transactions before this one in the list's order (created_at,
    /// then txn_id, both descending): the next page.
    pub before: Option<(DateTime<Utc>, Uuid)>,
    pub limit: i64,
}

const COLUMNS: &str = "t.txn_id, t.type, t.status,
    COALESCE((SELECT c.state FROM txn_checkpoints c WHERE c.txn_id = t.txn_id
              ORDER BY c.version DESC LIMIT 1), ''),
    t.payer_vpa, t.payee_vpa, t.payer_bank, t.payee_bank, t.amount_paise, t.reason_code,
    t.created_at, t.updated_at, t.owner, t.client_id";

fn ops_txn(r: &tokio_postgres::Row) -> OpsTxn {
    OpsTxn {
        txn_id: r.get(0),
        kind: r.get(1),
        status: r.get(2),
        step: r.get(3),
        payer_vpa: r.get(4),
        payee_vpa: r.get(5),
        payer_bank: r.get(6),
        payee_bank: r.get(7),
        amount: crate::domain::Paise(r.get(8)).to_rupees(),
        reason_code: r.get(9),
        created_at: r.get(10),
        updated_at: r.get(11),
        owner: r.get(12),
        client_id: r.get(13),
    }
}

impl Store {
    /// Unfinished sagas by step (at most `MAX_COUNTED` of them counted, the
    /// oldest first), and the `oldest` oldest.
    pub async fn sagas_by_step(
        &self,
        oldest: i64,
    ) -> Result<(Vec<StepCount>, i64, Vec<OpsTxn>), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.batch_execute("SET LOCAL statement_timeout = '5s'")
            .await?;
        let counts = tx
            .query(
                "SELECT COALESCE(c.state, ''), count(*) FROM
                   (SELECT txn_id FROM transactions WHERE status = 'PENDING'
                    ORDER BY created_at LIMIT $1) p
                 LEFT JOIN LATERAL (SELECT state FROM txn_checkpoints c
                                    WHERE c.txn_id = p.txn_id
                                    ORDER BY c.version DESC LIMIT 1) c ON true
                 GROUP BY 1 ORDER BY 2 DESC, 1",
                &[&MAX_COUNTED],
            )
            .await?;
        let counts: Vec<StepCount> = counts
            .iter()
            .map(|r| StepCount {
                step: r.get(0),
                count: r.get(1),
            })
            .collect();
        let counted = counts.iter().map(|c| c.count).sum();
        let rows = tx
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM transactions t WHERE t.status = 'PENDING'
                     ORDER BY t.created_at LIMIT $1"
                ),
                &[&oldest],
            )
            .await?;
        tx.commit().await?;
        Ok((counts, counted, rows.iter().map(ops_txn).collect()))
    }

    /// Transactions matching `search`, newest first.
    pub async fn search_txns(&self, search: &TxnSearch) -> Result<Vec<OpsTxn>, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.batch_execute("SET LOCAL statement_timeout = '5s'")
            .await?;
        // Each filter is optional; a VPA matches either party (both
        // indexed by (vpa, created_at)), a status uses (status, created_at).
        let rows = tx
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM transactions t
                     WHERE ($1::uuid IS NULL OR t.txn_id = $1)
                       AND ($2::text IS NULL OR t.payer_vpa = $2 OR t.payee_vpa = $2)
                       AND ($3::text IS NULL OR t.status = $3)
                       AND ($4::timestamptz IS NULL OR (t.created_at, t.txn_id) < ($4, $6))
                     ORDER BY t.created_at DESC, t.txn_id DESC LIMIT $5"
                ),
                &[
                    &search.txn_id,
                    &search.vpa,
                    &search.status,
                    &search.before.map(|b| b.0),
                    &search.limit,
                    &search.before.map(|b| b.1),
                ],
            )
            .await?;
        tx.commit().await?;
        Ok(rows.iter().map(ops_txn).collect())
    }
}
