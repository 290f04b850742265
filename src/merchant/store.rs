//! `MerchantStore`: the `merchant_payments` table (migration V2). Every write
//! of a forwarder is fenced by the claim it holds, so a forwarder that lost
//! its claim (lease expired, purge) changes nothing; an accepted row is final
//! (a trigger refuses any update of it). Timestamps of the switch's own
//! decisions (`requestedAt`, unanswered sends) come from the switch's clock;
//! leases and retry times from the database's.

use super::policy::ProcessorId;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use std::time::Duration;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum MerchantStoreError {
    #[error("database: {}", crate::adapters::pg::pg_message(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error("database pool: {0}")]
    Pool(String),
    #[error("unexpected row: {0}")]
    Corrupt(String),
}

impl From<deadpool_postgres::PoolError> for MerchantStoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        MerchantStoreError::Pool(e.to_string())
    }
}

/// What `POST /payments` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    New,
    /// The same correlationId was already received, with this amount.
    Duplicate {
        amount_cents: i64,
    },
}

/// Accepted payments of one processor in a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcessorTotals {
    pub requests: i64,
    pub amount_cents: i64,
}

/// An unfinished payment a forwarder has claimed.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: Uuid,
    pub claim: Uuid,
    pub amount_cents: i64,
    /// `Some(p)` when the latest send to `p` has an unknown outcome.
    pub maybe_at: Option<ProcessorId>,
    /// requestedAt already chosen per processor (by `ProcessorId::index`).
    pub requested_at: [Option<DateTime<Utc>>; 2],
    pub unanswered_since: Option<DateTime<Utc>>,
    pub holds: i32,
}

#[derive(Clone)]
pub struct MerchantStore {
    pool: Pool,
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl MerchantStore {
    pub fn new(pool: Pool) -> MerchantStore {
        MerchantStore { pool }
    }

    /// The amount of a payment received earlier, if it is still there (a
    /// purge forgets it). Payments are inserted by the switch's group-commit
    /// writer (`adapters::store::batch`), so that `202` comes after a commit
    /// shared with other writes.
    pub async fn amount_of(&self, id: Uuid) -> Result<Option<i64>, MerchantStoreError> {
        let client = self.pool.get().await?;
        let existing = client
            .prepare_cached("SELECT amount_cents FROM merchant_payments WHERE correlation_id = $1")
            .await?;
        Ok(client.query_opt(&existing, &[&id]).await?.map(|r| r.get(0)))
    }

    /// Accepted payments per processor whose requestedAt is in `[from, to]`.
    pub async fn summary(
        &self,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<[ProcessorTotals; 2], MerchantStoreError> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(
                "SELECT processor, count(*), coalesce(sum(amount_cents), 0)::bigint
                 FROM merchant_payments
                 WHERE state = 'ACCEPTED'
                   AND ($1::timestamptz IS NULL OR requested_at >= $1)
                   AND ($2::timestamptz IS NULL OR requested_at <= $2)
                 GROUP BY processor",
            )
            .await?;
        let mut totals = [ProcessorTotals::default(); 2];
        for row in client.query(&stmt, &[&from, &to]).await? {
            let name: String = row.get(0);
            let p = ProcessorId::parse(&name)
                .ok_or_else(|| MerchantStoreError::Corrupt(format!("processor {name:?}")))?;
            totals[p.index()] = ProcessorTotals {
                requests: row.get(1),
                amount_cents: row.get(2),
            };
        }
        Ok(totals)
    }

    /// Forgets every merchant payment, forwarded or not. Returns how many.
    pub async fn purge(&self) -> Result<u64, MerchantStoreError> {
        let client = self.pool.get().await?;
        Ok(client.execute("DELETE FROM merchant_payments", &[]).await?)
    }

    /// Unfinished payments (all of them, claimed or not).
    pub async fn unfinished(&self) -> Result<i64, MerchantStoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                "SELECT count(*) FROM merchant_payments WHERE state <> 'ACCEPTED'",
                &[],
            )
            .await?;
        Ok(row.get(0))
    }

    /// Claims up to `limit` unfinished payments that are due and unclaimed (or whose
    /// lease ran out), oldest due first, skipping rows other forwarders are claiming.
    /// The claimed rows are updated through the primary key (`= ANY(ARRAY(…))`):
    /// written as a join, the update was planned without statistics
    /// (autovacuum off) as a scan of the whole table on every claim.
    pub async fn claim(
        &self,
        claim: Uuid,
        limit: i64,
        exclude: &[Uuid],
        lease: Duration,
    ) -> Result<Vec<Claimed>, MerchantStoreError> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE merchant_payments p
                 SET claim = $1, lease_until = now() + make_interval(secs => $2)
                 WHERE p.correlation_id = ANY(ARRAY(
                       SELECT correlation_id FROM merchant_payments
                       WHERE state <> 'ACCEPTED' AND next_attempt_at <= now()
                         AND (claim IS NULL OR lease_until < now())
                         AND correlation_id <> ALL($3)
                       ORDER BY next_attempt_at
                       LIMIT $4
                       FOR UPDATE SKIP LOCKED))
                 RETURNING p.correlation_id, p.amount_cents, p.state, p.processor,
                           p.default_requested_at, p.fallback_requested_at,
                           p.unanswered_since, p.holds",
            )
            .await?;
        let rows = client
            .query(&stmt, &[&claim, &secs(lease), &exclude, &limit])
            .await?;
        rows.iter()
            .map(|row| {
                let state: String = row.get(2);
                let processor: Option<String> = row.get(3);
                let processor = match processor.as_deref().map(ProcessorId::parse) {
                    None => None,
                    Some(Some(p)) => Some(p),
                    Some(None) => {
                        return Err(MerchantStoreError::Corrupt(format!(
                            "processor {processor:?}"
                        )));
                    }
                };
                Ok(Claimed {
                    id: row.get(0),
                    claim,
                    amount_cents: row.get(1),
                    maybe_at: if state == "SENDING" { processor } else { None },
                    requested_at: [row.get(4), row.get(5)],
                    unanswered_since: row.get(6),
                    holds: row.get(7),
                })
            })
            .collect()
    }
}
