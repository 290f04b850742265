//! The outbox side of the store: the relay's reads and deletes and the lag
//! operators see. Rows are written only by the group-commit statement
//! (`batch`), in the same statement as their checkpoints.

use super::{OutboxRow, Store, StoreError};
use crate::domain::Paise;
use crate::events::{StepFacts, TxnEvent, TxnFacts};

impl Store {
    /// The oldest `limit` unpublished events, oldest first, with the facts of
    /// their transactions (carried by each row: no join).
    pub async fn outbox_batch(&self, limit: i64) -> Result<Vec<OutboxRow>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &client
                    .prepare_cached(
                        "SELECT id, txn_id, seq, state, status, op_id, reason_code, reason_detail,
                                created_at, txn_type, payer_vpa, payee_vpa, amount_paise,
                                payer_bank, payee_bank, merchant_vpa, txn_created_at
                         FROM outbox ORDER BY id LIMIT $1",
                    )
                    .await?,
                &[&limit],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let txn = TxnFacts {
                    txn_id: r.get(1),
                    txn_type: r.get(9),
                    payer_vpa: r.get(10),
                    payee_vpa: r.get(11),
                    amount: Paise(r.get(12)),
                    payer_bank: r.get(13),
                    payee_bank: r.get(14),
                    merchant_vpa: r.get(15),
                    created_at: r.get(16),
                };
                let step = StepFacts {
                    seq: r.get(2),
                    state: r.get(3),
                    status: r.get(4),
                    op_id: r.get(5),
                    reason_code: r.get(6),
                    reason_detail: r.get(7),
                    at: r.get(8),
                };
                OutboxRow {
                    id: r.get(0),
                    event: TxnEvent::new(&txn, step),
                }
            })
            .collect())
    }

    /// Forgets events RabbitMQ confirmed.
    pub async fn outbox_delete(&self, ids: &[i64]) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .execute(
                &client
                    .prepare_cached("DELETE FROM outbox WHERE id = ANY($1)")
                    .await?,
                &[&ids],
            )
            .await?)
    }

    /// Unpublished events and the age of the oldest, in seconds.
    pub async fn outbox_lag(&self) -> Result<(i64, f64), StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                &client
                    .prepare_cached(
                        "SELECT count(*),
                        COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - min(created_at)), 0)::float8
                 FROM outbox",
                    )
                    .await?,
                &[],
            )
            .await?;
        Ok((row.get(0), row.get(1)))
    }

    /// Reclaims the space of published (deleted) events. The outbox is a
    /// queue — every row is inserted once and deleted once — so without a
    /// vacuum its heap and index fill with dead rows that every relay read
    /// must step over; the relay calls this itself rather than rely on
    /// autovacuum being on. `SKIP_LOCKED`: never waits for another vacuum.
    pub async fn outbox_vacuum(&self) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client.batch_execute("VACUUM (SKIP_LOCKED) outbox").await?;
        Ok(())
    }
}
