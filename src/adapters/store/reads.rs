//! What clients and tools read back: a transaction as its status document
//! shows it (one statement, so the row, its steps and its refunds are one
//! snapshot), the transaction earlier made under a key, a refund's original,
//! and a transaction's events rebuilt from its checkpoints.

use super::{Created, StepRow, Store, StoreError, TxnRequest, TxnRow};
use crate::domain::Paise;
use crate::events::{StepFacts, TxnEvent, TxnFacts};
use crate::saga::{Original, Party, PaymentType, Status};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A payment a refund names, as recorded.
#[derive(Debug, Clone)]
pub struct OriginalRow {
    pub original: Original,
    pub status: Status,
    pub payer_vpa: String,
    pub payee_vpa: String,
}

impl Store {
    /// The transaction created earlier under this request's key (or for its
    /// collect request), compared with it.
    pub async fn by_idempotency_key(
        &self,
        new: &TxnRequest,
    ) -> Result<Option<Created>, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &client
                    .prepare_cached(
                        "SELECT txn_id, status, payer_vpa, payee_vpa, amount_paise, note, type,
                                merchant_ref, original_txn_id
                 FROM transactions
                 WHERE (client_id = $3 AND idempotency_key = $1) OR collect_id = $2",
                    )
                    .await?,
                &[&new.idempotency_key, &new.collect_id, &new.client_id],
            )
            .await?;
        Ok(row.map(|r| {
            let same = r.get::<_, String>(2) == new.payer_vpa.as_str()
                && r.get::<_, String>(3) == new.payee_vpa.as_str()
                && r.get::<_, i64>(4) == new.amount.0
                && r.get::<_, Option<String>>(5) == new.note
                && r.get::<_, &str>(6) == new.kind.as_str()
                && r.get::<_, Option<String>>(7) == new.merchant_ref
                && r.get::<_, Option<Uuid>>(8) == new.original_txn_id;
            if same || new.collect_id.is_some() {
                Created::Existing {
                    txn_id: r.get(0),
                    status: Status::parse(r.get(1)).unwrap_or(Status::Pending),
                }
            } else {
                Created::KeyReused
            }
        }))
    }

    /// A transaction with its steps and the sum of its `SUCCESS` refunds.
    pub async fn txn(&self, txn_id: Uuid) -> Result<Option<TxnRow>, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &client
                    .prepare_cached(
                        "SELECT t.txn_id, t.type, t.status, t.payer_vpa, t.payee_vpa, t.amount_paise,
                                t.note, t.reason_code, t.reason_detail, t.created_at, t.updated_at,
                                s.states, s.ats, s.op_ids, s.details,
                                t.merchant_ref, t.original_txn_id, t.collect_id,
                                CASE WHEN t.type IN ('P2P', 'P2M') THEN
                                    (SELECT coalesce(sum(amount_paise), 0)::int8 FROM transactions r
                                     WHERE r.original_txn_id = t.txn_id AND r.status = 'SUCCESS')
                                END,
                                t.client_id
                         FROM transactions t
                         CROSS JOIN LATERAL (
                             SELECT array_agg(state ORDER BY version) AS states,
                                    array_agg(at ORDER BY version) AS ats,
                                    array_agg(op_id ORDER BY version) AS op_ids,
                                    array_agg(detail ORDER BY version) AS details
                             FROM txn_checkpoints c WHERE c.txn_id = t.txn_id) s
                         WHERE t.txn_id = $1",
                    )
                    .await?,
                &[&txn_id],
            )
            .await?;
        Ok(row.map(|r| {
            let states: Vec<String> = r.get::<_, Option<_>>(11).unwrap_or_default();
            let ats: Vec<DateTime<Utc>> = r.get::<_, Option<_>>(12).unwrap_or_default();
            let op_ids: Vec<Option<String>> = r.get::<_, Option<_>>(13).unwrap_or_default();
            let details: Vec<Option<String>> = r.get::<_, Option<_>>(14).unwrap_or_default();
            let steps = states
                .into_iter()
                .zip(ats)
                .zip(op_ids.into_iter().zip(details))
                .map(|((state, at), (op_id, detail))| StepRow {
                    state,
                    at,
                    op_id,
                    detail,
                })
                .collect();
            TxnRow {
                txn_id: r.get(0),
                kind: r.get(1),
                status: Status::parse(r.get(2)).unwrap_or(Status::Pending),
                payer_vpa: r.get(3),
                payee_vpa: r.get(4),
                amount: Paise(r.get(5)),
                note: r.get(6),
                reason_code: r.get(7),
                reason_detail: r.get(8),
                created_at: r.get(9),
                updated_at: r.get(10),
                steps,
                merchant_ref: r.get(15),
                original_txn_id: r.get(16),
                collect_id: r.get(17),
                refunded: Paise(r.get::<_, Option<i64>>(18).unwrap_or(0)),
                client_id: r.get(19),
            }
        }))
    }

    /// The payment a refund names: its type, status, amount and the
    /// accounts it moved money between.
    pub async fn original(&self, txn_id: Uuid) -> Result<Option<OriginalRow>, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &client
                    .prepare_cached(
                        "SELECT type, status, amount_paise, payer_bank, payer_account,
                                payee_bank, payee_account, payer_vpa, payee_vpa
                         FROM transactions WHERE txn_id = $1",
                    )
                    .await?,
                &[&txn_id],
            )
            .await?;
        Ok(row.map(|r| OriginalRow {
            original: Original {
                txn_id,
                kind: PaymentType::parse(r.get(0)).unwrap_or_default(),
                payer: Party {
                    bank: r.get(3),
                    account: r.get(4),
                },
                payee: Party {
                    bank: r.get(5),
                    account: r.get(6),
                },
                amount: Paise(r.get(2)),
            },
            status: Status::parse(r.get(1)).unwrap_or(Status::Pending),
            payer_vpa: r.get(7),
            payee_vpa: r.get(8),
        }))
    }

    /// Every event of one transaction so far, rebuilt from its checkpoints
    /// (the outbox forgets published rows; checkpoints are forever). `None`
    /// when the transaction does not exist.
    pub async fn txn_events(&self, txn_id: Uuid) -> Result<Option<Vec<TxnEvent>>, StoreError> {
        let Some(row) = self.txn(txn_id).await? else {
            return Ok(None);
        };
        let facts = TxnFacts {
            txn_id,
            txn_type: row.kind.clone(),
            payer_vpa: row.payer_vpa.clone(),
            payee_vpa: row.payee_vpa.clone(),
            amount: row.amount,
            // The status document does not hold the banks; SSE clients
            // never needed them (the relay's events carry them).
            payer_bank: None,
            payee_bank: None,
            merchant_vpa: matches!(row.kind.as_str(), "P2M" | "COLLECT")
                .then(|| row.payee_vpa.clone()),
            created_at: Some(row.created_at),
        };
        let last = row.steps.len();
        Ok(Some(
            row.steps
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let is_last = i + 1 == last;
                    let (status, reason_code, reason_detail) = if is_last {
                        (
                            row.status.as_str().to_string(),
                            row.reason_code.clone(),
                            row.reason_detail.clone(),
                        )
                    } else {
                        ("PENDING".to_string(), None, None)
                    };
                    TxnEvent::new(
                        &facts,
                        StepFacts {
                            seq: i as i32 + 1,
                            state: s.state.clone(),
                            status,
                            op_id: s.op_id.clone(),
                            reason_code,
                            reason_detail,
                            at: s.at,
                        },
                    )
                })
                .collect(),
        ))
    }
}
