//! The acceptance checks of a batch's guarded creates (daily limits, refund
//! caps, collect approvals), run by the checkpoint writer inside the
//! transaction that then writes the batch:
//! 1. `LOCK`: transaction-scoped advisory locks on every payer VPA and
//!    original the batch's guards name, taken in key order (so two writers,
//!    on one node or several, never deadlock), and `LOCK_COLLECTS`: the row
//!    locks of the collect requests being approved (a decline or the expiry
//!    sweep waits for them, and they for it);
//! 2. `READ`: what the database holds for those keys now (READ COMMITTED: it
//!    sees every batch that committed while this one waited for the locks);
//! 3. `saga::guards::Book` decides each create in arrival order; the refused
//!    are left out of the batch statement, which runs next in the same
//!    transaction. The locks are released at its COMMIT, once the admitted
//!    rows are visible to the next holder.
//!
//! Usage is derived from the transactions themselves (status `PENDING` or
//! `SUCCESS`, created since midnight IST), never from a counter, so a failed
//! payment gives its room back by its status alone and nothing can drift.

use crate::domain::Paise;
use crate::saga::CollectStatus;
use crate::saga::guards::{Book, Guard, Holdings, Refusal};
use std::collections::HashMap;
use tokio_postgres::{Client, Statement};
use uuid::Uuid;

pub const LOCK: &str = "SELECT count(pg_advisory_xact_lock(k))
    FROM (SELECT DISTINCT k FROM unnest($1::int8[]) AS k ORDER BY k) s";

pub const LOCK_COLLECTS: &str =
    "SELECT collect_id FROM collects WHERE collect_id = ANY($1) ORDER BY collect_id FOR UPDATE";

pub const READ: &str = "
SELECT 'u', payer_vpa, count(*), sum(amount_paise)::int8 FROM transactions
WHERE payer_vpa = ANY($1) AND type <> 'REFUND' AND status IN ('PENDING', 'SUCCESS')
  AND created_at >= (date_trunc('day', now() AT TIME ZONE 'Asia/Kolkata') AT TIME ZONE 'Asia/Kolkata')
GROUP BY payer_vpa
UNION ALL
SELECT 'r', original_txn_id::text, count(*), sum(amount_paise)::int8 FROM transactions
WHERE original_txn_id = ANY($2) AND status IN ('PENDING', 'SUCCESS')
GROUP BY original_txn_id
UNION ALL
SELECT CASE WHEN status = 'REQUESTED' AND expires_at <= now() THEN 'EXPIRED' ELSE status END,
       collect_id::text, 0, 0::int8
FROM collects WHERE collect_id = ANY($3)
UNION ALL
SELECT 'k', t.client_id || chr(31) || t.idempotency_key, 0, 0::int8
FROM transactions t JOIN unnest($4::text[], $5::text[]) AS k(client_id, key)
    ON t.client_id = k.client_id AND t.idempotency_key = k.key
UNION ALL
SELECT 'k', 'collect:' || collect_id::text, 0, 0::int8 FROM transactions
WHERE collect_id = ANY($3)";

/// The statements, prepared once per writer connection.
pub struct Statements {
    pub lock: Statement,
    pub lock_collects: Statement,
    pub read: Statement,
}

impl Statements {
    pub async fn prepare(client: &Client) -> Result<Statements, tokio_postgres::Error> {
        Ok(Statements {
            lock: client.prepare(LOCK).await?,
            lock_collects: client.prepare(LOCK_COLLECTS).await?,
            read: client.prepare(READ).await?,
        })
    }
}

/// One guarded create of a batch.
pub struct Candidate<'a> {
    pub txn_id: Uuid,
    /// Its client and idempotency key (`TxnRequest::guard_key`), or
    /// `collect:<id>` for a collect's payment.
    pub key: String,
    pub guard: &'a Guard,
    pub amount: Paise,
}

/// A stable 64-bit key for an advisory lock (FNV-1a).
fn lock_key(kind: &str, id: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in kind.bytes().chain([b':']).chain(id.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

/// Locks and reads what the candidates need, then decides each in order.
/// Must run inside the transaction that writes the admitted; returns the
/// refused (by txn id).
pub async fn decide(
    client: &Client,
    st: &Statements,
    candidates: &[Candidate<'_>],
) -> Result<HashMap<Uuid, Refusal>, tokio_postgres::Error> {
    let mut vpas: Vec<String> = Vec::new();
    let mut originals: Vec<Uuid> = Vec::new();
    let mut collects: Vec<Uuid> = Vec::new();
    let mut key_clients: Vec<String> = Vec::new();
    let mut keys: Vec<String> = Vec::new();
    for c in candidates {
        if let Some(d) = &c.guard.daily {
            vpas.push(d.payer_vpa.clone());
        }
        if let Some((original, _)) = c.guard.refund_of {
            originals.push(original);
        }
        if let Some(id) = c.guard.collect {
            collects.push(id);
        } else if let Some((client, key)) = c.key.split_once('\u{1f}') {
            key_clients.push(client.to_string());
            keys.push(key.to_string());
        }
    }
    let mut locks: Vec<i64> = vpas.iter().map(|v| lock_key("vpa", v)).collect();
    locks.extend(originals.iter().map(|o| lock_key("orig", &o.to_string())));
    if !locks.is_empty() {
        client.query(&st.lock, &[&locks]).await?;
    }
    if !collects.is_empty() {
        client.query(&st.lock_collects, &[&collects]).await?;
    }
    let rows = client
        .query(
            &st.read,
            &[&vpas, &originals, &collects, &key_clients, &keys],
        )
        .await?;
    let mut held = Holdings::default();
    for row in rows {
        let tag: &str = row.get(0);
        let id: String = row.get(1);
        let count: i64 = row.get(2);
        let sum: i64 = row.get::<_, Option<i64>>(3).unwrap_or(0);
        match tag {
            "u" => {
                held.usage.insert(id, (count, Paise(sum)));
            }
            "r" => {
                if let Ok(original) = Uuid::parse_str(&id) {
                    held.refunded.insert(original, Paise(sum));
                }
            }
            "k" => {
                held.taken.insert(id);
            }
            status => {
                if let (Ok(collect), Some(s)) = (Uuid::parse_str(&id), CollectStatus::parse(status))
                {
                    held.collects.insert(collect, s);
                }
            }
        }
    }
    let mut book = Book::new(held);
    let mut refused = HashMap::new();
    for c in candidates {
        if let Err(r) = book.admit(&c.key, c.guard, c.amount) {
            refused.insert(c.txn_id, r);
        }
    }
    Ok(refused)
}

#[cfg(test)]
mod tests {
    #[test]
    fn lock_keys_are_stable_and_kinds_apart() {
        assert_eq!(super::lock_key("vpa", "a@b"), super::lock_key("vpa", "a@b"));
        assert_ne!(super::lock_key("vpa", "x"), super::lock_key("orig", "x"));
    }
}
