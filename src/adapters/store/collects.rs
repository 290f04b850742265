//! Collect requests: the payee asks, the payer approves or declines, or the
//! request expires at its stored deadline (`expires_at`, by the database's
//! clock, so no restart moves it). Approval is the checkpoint writer's (the
//! collect's payment and the request's `APPROVED` are one statement, under
//! the request's row lock: `guarded`); this module creates, reads, declines
//! and expires. A request that is not `REQUESTED` never changes again (a
//! trigger says so too).

use super::{Store, StoreError};
use crate::domain::{Paise, Vpa};
use crate::saga::CollectStatus;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A collect request asked for.
#[derive(Debug, Clone)]
pub struct NewCollect {
    /// The client that asks (`""` when authentication is off).
    pub client_id: String,
    pub idempotency_key: String,
    pub payee_vpa: Vpa,
    pub payer_vpa: Vpa,
    pub amount: Paise,
    pub note: Option<String>,
    pub expires_in_s: i64,
}

/// A collect request as stored; `status` is as of the database's now (a
/// `REQUESTED` one past its deadline reads `EXPIRED` even before the sweep
/// wrote it).
#[derive(Debug, Clone)]
pub struct CollectRow {
    pub collect_id: Uuid,
    pub status: CollectStatus,
    pub payee_vpa: String,
    pub payer_vpa: String,
    pub amount: Paise,
    pub note: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub txn_id: Option<Uuid>,
    /// The client that asked.
    pub client_id: String,
}

/// What creating a collect request did.
#[derive(Debug, Clone)]
pub enum CollectCreated {
    New(CollectRow),
    /// The key was used before for the same request: that one.
    Existing(CollectRow),
    KeyReused,
}

const COLUMNS: &str = "collect_id,
    CASE WHEN status = 'REQUESTED' AND expires_at <= now() THEN 'EXPIRED' ELSE status END,
    payee_vpa, payer_vpa, amount_paise, note, expires_at, txn_id, client_id";

fn collect_row(r: &tokio_postgres::Row) -> CollectRow {
    CollectRow {
        collect_id: r.get(0),
        status: CollectStatus::parse(r.get(1)).unwrap_or(CollectStatus::Requested),
        payee_vpa: r.get(2),
        payer_vpa: r.get(3),
        amount: Paise(r.get(4)),
        note: r.get(5),
        expires_at: r.get(6),
        txn_id: r.get(7),
        client_id: r.get(8),
    }
}

impl Store {
    /// Creates the request unless its key was used; the database decides.
    pub async fn create_collect(&self, new: &NewCollect) -> Result<CollectCreated, StoreError> {
        let client = self.pool.get().await?;
        let inserted = client
            .query_opt(
                &client
                    .prepare_cached(&format!(
                        "INSERT INTO collects (collect_id, idempotency_key, payee_vpa, payer_vpa,
                             amount_paise, note, status, expires_at, client_id)
                         VALUES ($1, $2, $3, $4, $5, $6, 'REQUESTED',
                                 now() + make_interval(secs => $7::int8), $8)
                         ON CONFLICT (client_id, idempotency_key) DO NOTHING
                         RETURNING {COLUMNS}"
                    ))
                    .await?,
                &[
                    &Uuid::new_v4(),
                    &new.idempotency_key,
                    &new.payee_vpa.as_str(),
                    &new.payer_vpa.as_str(),
                    &new.amount.0,
                    &new.note,
                    &new.expires_in_s,
                    &new.client_id,
                ],
            )
            .await?;
        if let Some(row) = inserted {
            return Ok(CollectCreated::New(collect_row(&row)));
        }
        let earlier = client
            .query_opt(
                &client
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM collects
                         WHERE client_id = $2 AND idempotency_key = $1"
                    ))
                    .await?,
                &[&new.idempotency_key, &new.client_id],
            )
            .await?;
        let Some(r) = earlier else {
            // The insert met a key that is not there: nothing deletes
            // collects, so this cannot be; answered rather than assumed.
            return Err(StoreError::Raced(
                "the collect request of this key is being created; retry".into(),
            ));
        };
        let row = collect_row(&r);
        let same = row.payee_vpa == new.payee_vpa.as_str()
            && row.payer_vpa == new.payer_vpa.as_str()
            && row.amount == new.amount
            && row.note == new.note;
        Ok(if same {
            CollectCreated::Existing(row)
        } else {
            CollectCreated::KeyReused
        })
    }

    pub async fn collect(&self, id: Uuid) -> Result<Option<CollectRow>, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &client
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM collects WHERE collect_id = $1"
                    ))
                    .await?,
                &[&id],
            )
            .await?;
        Ok(row.as_ref().map(collect_row))
    }

    /// Declines a request still `REQUESTED` and not past its deadline;
    /// answers the request as it stands after, and whether this call
    /// declined it.
    pub async fn decline_collect(
        &self,
        id: Uuid,
    ) -> Result<Option<(CollectRow, bool)>, StoreError> {
        let client = self.pool.get().await?;
        let declined = client
            .query_opt(
                &client
                    .prepare_cached(&format!(
                        "UPDATE collects SET status = 'DECLINED', updated_at = now()
                         WHERE collect_id = $1 AND status = 'REQUESTED' AND expires_at > now()
                         RETURNING {COLUMNS}"
                    ))
                    .await?,
                &[&id],
            )
            .await?;
        match declined {
            Some(row) => Ok(Some((collect_row(&row), true))),
            None => Ok(self.collect(id).await?.map(|c| (c, false))),
        }
    }

    /// Marks up to `limit` requests past their deadline `EXPIRED`, oldest
    /// deadline first (skipping any an approval holds); returns how many.
    pub async fn expire_collects(&self, limit: i64) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        let n = client
            .execute(
                &client
                    .prepare_cached(
                        "UPDATE collects SET status = 'EXPIRED', updated_at = now()
                         WHERE collect_id IN (
                             SELECT collect_id FROM collects
                             WHERE status = 'REQUESTED' AND expires_at <= now()
                             ORDER BY expires_at LIMIT $1
                             FOR UPDATE SKIP LOCKED)",
                    )
                    .await?,
                &[&limit],
            )
            .await?;
        Ok(n)
    }
}
