//! The analytics tables' writes (migration V13): one ingest batch as ONE
//! transaction — raw rows, rejects, clean rows, summary deltas and the
//! counters — and the rebuild of days from the raw store, and the retention
//! of raw partitions. It owns the SQL; what is valid is `record`'s, the
//! arithmetic `summary`'s. Reads for the API are in `reads`.
//!
//! Every writing transaction first takes one advisory lock
//! (`pg_advisory_xact_lock`), so batches of several consumers, a rebuild and
//! a retention sweep never interleave: a clean row's transition is always
//! computed from the row as committed.

use super::record::{Checked, CleanEvent, Delivery};
use super::summary::{Deltas, TxnState, fold};
use super::upsert::{merge, write_deltas};
use crate::adapters::pg::DbError;
use chrono::NaiveDate;
use deadpool_postgres::{Pool, Transaction};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// The lock every analytics write holds for its transaction.
const WRITE_LOCK: i64 = 0x7570_695f_616e_6c79; // "upi_anly"
/// Raw rows read per round of a rebuild.
const REBUILD_CHUNK: i64 = 2_000;

/// What one ingest batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// New valid events stored (raw and clean).
    pub ingested: u64,
    /// Positions (in the batch) of deliveries refused for the first time:
    /// they go to the dead-letter queue.
    pub rejected: Vec<usize>,
    /// Deliveries whose message id was stored before (or earlier in the batch).
    pub duplicates: u64,
}

/// What a rebuild of one day did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rebuilt {
    pub events: u64,
    pub transactions: u64,
    pub rejected: u64,
}

/// The analytics side of the switch's database.
#[derive(Clone)]
pub struct AnalyticsStore {
    pub pool: Pool,
    /// Raw partitions known to exist (created by this process or seen).
    partitions: Arc<Mutex<HashSet<NaiveDate>>>,
}

fn partition_name(day: NaiveDate) -> String {
    format!("analytics_raw_{}", day.format("%Y%m%d"))
}

impl AnalyticsStore {
    pub fn new(pool: Pool) -> AnalyticsStore {
        AnalyticsStore {
            pool,
            partitions: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashSet<NaiveDate>> {
        self.partitions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Creates the raw partitions of these days not known to exist; returns
    /// them, for the caller to remember once its transaction committed.
    async fn ensure_partitions(
        &self,
        tx: &Transaction<'_>,
        days: impl IntoIterator<Item = NaiveDate>,
    ) -> Result<Vec<NaiveDate>, DbError> {
        let missing: Vec<NaiveDate> = {
            let known = self.known();
            let mut m: Vec<NaiveDate> = days.into_iter().filter(|d| !known.contains(d)).collect();
            m.sort();
            m.dedup();
            m
        };
        for day in &missing {
            let next = day.succ_opt().unwrap_or(*day);
            tx.batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {} PARTITION OF analytics_raw
                 FOR VALUES FROM ('{day}') TO ('{next}')",
                partition_name(*day)
            ))
            .await?;
        }
        Ok(missing)
    }

    /// Creates partitions ahead (today and the next days), outside any batch.
    pub async fn create_ahead(&self, from: NaiveDate, days: u32) -> Result<(), DbError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        lock(&tx).await?;
        let made = self
            .ensure_partitions(&tx, from.iter_days().take(days as usize))
            .await?;
        tx.commit().await?;
        self.known().extend(made);
        Ok(())
    }

    /// Stores one batch of deliveries in one transaction. On error nothing
    /// was stored (and nothing may be acknowledged).
    pub async fn apply(&self, batch: &[(Delivery, Checked)]) -> Result<Applied, DbError> {
        let result = self.apply_once(batch).await;
        if result.is_err() {
            // A partition dropped by another process's retention: ask again.
            self.known().clear();
        }
        result
    }

    async fn apply_once(&self, batch: &[(Delivery, Checked)]) -> Result<Applied, DbError> {
        let mut applied = Applied::default();
        // The first delivery of each message id; later ones are duplicates.
        let mut seen = HashSet::new();
        let unique: Vec<usize> = (0..batch.len())
            .filter(|&i| seen.insert(batch[i].1.message_id.as_str()))
            .collect();
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        lock(&tx).await?;
        let made = self
            .ensure_partitions(&tx, unique.iter().map(|&i| batch[i].1.day))
            .await?;
        let fresh = insert_raw(&tx, unique.iter().map(|&i| &batch[i])).await?;
        applied.duplicates = (batch.len() - fresh.len()) as u64;
        let mut events = Vec::new();
        let mut refused = Vec::new();
        for &i in &unique {
            let (d, c) = &batch[i];
            if !fresh.contains(c.message_id.as_str()) {
                continue;
            }
            match &c.outcome {
                Ok(e) => events.push(e),
                Err(reason) => {
                    refused.push((d, c.message_id.as_str(), reason.as_str()));
                    applied.rejected.push(i);
                }
            }
        }
        insert_rejects(&tx, &refused).await?;
        let mut deltas = apply_clean(&tx, &events).await?;
        deltas.prune();
        write_deltas(&tx, &deltas).await?;
        applied.ingested = events.len() as u64;
        // Lag: how old the newest event of this batch is as it is stored.
        let newest = events.iter().map(|e| e.at).max();
        tx.execute(
            "UPDATE analytics_state SET events_ingested = events_ingested + $1,
                 events_rejected = events_rejected + $2, duplicates = duplicates + $3,
                 last_batch_at = clock_timestamp(),
                 lag_ms = CASE WHEN $4::timestamptz IS NULL THEN lag_ms
                     ELSE greatest(0, (EXTRACT(EPOCH FROM clock_timestamp() - $4) * 1000)::int8) END",
            &[
                &(applied.ingested as i64),
                &(applied.rejected.len() as i64),
                &(applied.duplicates as i64),
                &newest,
            ],
        )
        .await?;
        tx.commit().await?;
        self.known().extend(made);
        Ok(applied)
    }

    /// Files deliveries the database refused even alone as rejects (no
    /// raw row: that insert is what failed), so they leave the queue.
    pub async fn reject_alone(&self, items: &[(&Delivery, &str, &str)]) -> Result<(), DbError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        insert_rejects(&tx, items).await?;
        tx.execute(
            "UPDATE analytics_state SET events_rejected = events_rejected + $1",
            &[&(items.len() as i64)],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Recomputes one day's clean rows and summaries from its raw partition,
    /// in one transaction (readers see the old numbers or the new ones).
    /// `None`: the day has no raw partition (none stored, or dropped by
    /// retention), and its summaries are left as they are.
    pub async fn rebuild_day(&self, day: NaiveDate) -> Result<Option<Rebuilt>, DbError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        lock(&tx).await?;
        let partition: Option<String> = tx
            .query_one("SELECT to_regclass($1)::text", &[&partition_name(day)])
            .await?
            .get(0);
        if partition.is_none() {
            return Ok(None);
        }
        for table in [
            "analytics_txns",
            "analytics_daily",
            "analytics_merchant_daily",
            "analytics_bank_daily",
        ] {
            tx.execute(&format!("DELETE FROM {table} WHERE day = $1"), &[&day])
                .await?;
        }
        let mut done = Rebuilt::default();
        let mut deltas = Deltas::default();
        let mut after = String::new();
        loop {
            let rows = tx
                .query(
                    "SELECT message_id, routing_key, body, received_at FROM analytics_raw
                     WHERE day = $1 AND message_id > $2 ORDER BY message_id LIMIT $3",
                    &[&day, &after, &REBUILD_CHUNK],
                )
                .await?;
            let Some(last) = rows.last() else { break };
            after = last.get(0);
            let checked: Vec<(Delivery, Checked)> = rows
                .iter()
                .map(|r| {
                    let d = Delivery {
                        message_id: Some(r.get(0)),
                        routing_key: r.get(1),
                        body: r.get(2),
                        received_at: r.get(3),
                    };
                    let c = super::record::check(&d);
                    (d, c)
                })
                .collect();
            done.events += checked.len() as u64;
            let events: Vec<&CleanEvent> = checked
                .iter()
                .filter_map(|(_, c)| c.outcome.as_ref().ok())
                .filter(|e| e.day == day)
                .collect();
            let refused: Vec<(&Delivery, &str, &str)> = checked
                .iter()
                .filter_map(|(d, c)| {
                    Some((d, c.message_id.as_str(), c.outcome.as_ref().err()?.as_str()))
                })
                .collect();
            done.rejected += refused.len() as u64;
            insert_rejects(&tx, &refused).await?;
            let d = apply_clean(&tx, &events).await?;
            merge(&mut deltas, d);
        }
        deltas.prune();
        write_deltas(&tx, &deltas).await?;
        done.transactions = tx
            .query_one(
                "SELECT count(*) FROM analytics_txns WHERE day = $1",
                &[&day],
            )
            .await?
            .get::<_, i64>(0) as u64;
        tx.commit().await?;
        Ok(Some(done))
    }

    /// Drops the raw partitions of days before `cutoff`; returns their names.
    pub async fn drop_before(&self, cutoff: NaiveDate) -> Result<Vec<String>, DbError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        lock(&tx).await?;
        let rows = tx
            .query(
                "SELECT c.relname::text FROM pg_inherits i
                 JOIN pg_class c ON c.oid = i.inhrelid
                 JOIN pg_class p ON p.oid = i.inhparent
                 WHERE p.relname = 'analytics_raw'",
                &[],
            )
            .await?;
        let mut dropped = Vec::new();
        for r in rows {
            let name: String = r.get(0);
            let day = name
                .strip_prefix("analytics_raw_")
                .and_then(|d| NaiveDate::parse_from_str(d, "%Y%m%d").ok());
            if day.is_some_and(|d| d < cutoff) {
                tx.batch_execute(&format!("DROP TABLE IF EXISTS {name}"))
                    .await?;
                dropped.push(name);
            }
        }
        tx.commit().await?;
        self.known().clear();
        Ok(dropped)
    }
}

async fn lock(tx: &Transaction<'_>) -> Result<(), DbError> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
        .await?;
    Ok(())
}

/// Inserts raw rows; returns the message ids that were new.
async fn insert_raw<'a>(
    tx: &Transaction<'_>,
    items: impl Iterator<Item = &'a (Delivery, Checked)>,
) -> Result<HashSet<String>, DbError> {
    let (mut days, mut ids, mut keys, mut bodies, mut at) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (d, c) in items {
        days.push(c.day);
        ids.push(c.message_id.as_str());
        keys.push(d.routing_key.as_str());
        bodies.push(&d.body[..d.body.len().min(super::record::MAX_BODY_BYTES)]);
        at.push(d.received_at);
    }
    let rows = tx
        .query(
            "INSERT INTO analytics_raw (day, message_id, routing_key, body, received_at)
             SELECT * FROM unnest($1::date[], $2::text[], $3::text[], $4::bytea[], $5::timestamptz[])
             ON CONFLICT DO NOTHING RETURNING message_id",
            &[&days, &ids, &keys, &bodies, &at],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

async fn insert_rejects(
    tx: &Transaction<'_>,
    items: &[(&Delivery, &str, &str)],
) -> Result<(), DbError> {
    if items.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = items.iter().map(|i| i.1).collect();
    let reasons: Vec<&str> = items.iter().map(|i| i.2).collect();
    let keys: Vec<&str> = items.iter().map(|i| i.0.routing_key.as_str()).collect();
    let bodies: Vec<&[u8]> = items
        .iter()
        .map(|i| &i.0.body[..i.0.body.len().min(super::record::MAX_BODY_BYTES)])
        .collect();
    let at: Vec<_> = items.iter().map(|i| i.0.received_at).collect();
    tx.execute(
        "INSERT INTO analytics_rejects (message_id, reason, routing_key, body, received_at)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::timestamptz[])
         ON CONFLICT DO NOTHING",
        &[&ids, &reasons, &keys, &bodies, &at],
    )
    .await?;
    Ok(())
}

/// Moves the clean rows of these events' transactions to their latest
/// state; returns the summary deltas of the rows that changed.
async fn apply_clean(tx: &Transaction<'_>, events: &[&CleanEvent]) -> Result<Deltas, DbError> {
    let mut deltas = Deltas::default();
    if events.is_empty() {
        return Ok(deltas);
    }
    let mut by_txn: BTreeMap<Uuid, Vec<&CleanEvent>> = BTreeMap::new();
    for e in events {
        by_txn.entry(e.txn_id).or_default().push(e);
    }
    let ids: Vec<Uuid> = by_txn.keys().copied().collect();
    let rows = tx
        .query(
            "SELECT txn_id, day, txn_type, status, seq, amount_paise, payer_bank, payee_bank,
                    merchant_vpa, created_at, status_at
             FROM analytics_txns WHERE txn_id = ANY($1) ORDER BY txn_id FOR UPDATE",
            &[&ids],
        )
        .await?;
    let mut current: HashMap<Uuid, TxnState> = rows
        .iter()
        .map(|r| {
            let s = TxnState {
                txn_id: r.get(0),
                day: r.get(1),
                txn_type: r.get(2),
                status: r.get(3),
                seq: r.get(4),
                amount_paise: r.get(5),
                payer_bank: r.get(6),
                payee_bank: r.get(7),
                merchant_vpa: r.get(8),
                created_at: r.get(9),
                status_at: r.get(10),
            };
            (s.txn_id, s)
        })
        .collect();
    let mut changed = Vec::new();
    for (txn, evs) in by_txn {
        let old = current.remove(&txn);
        let Some(new) = fold(old.clone(), evs) else {
            continue;
        };
        if old.as_ref() != Some(&new) {
            deltas.transition(old.as_ref(), &new);
            changed.push(new);
        }
    }
    if changed.is_empty() {
        return Ok(deltas);
    }
    let col = |f: fn(&TxnState) -> String| changed.iter().map(f).collect::<Vec<String>>();
    let ids: Vec<Uuid> = changed.iter().map(|s| s.txn_id).collect();
    let days: Vec<NaiveDate> = changed.iter().map(|s| s.day).collect();
    let seqs: Vec<i32> = changed.iter().map(|s| s.seq).collect();
    let amounts: Vec<i64> = changed.iter().map(|s| s.amount_paise).collect();
    let merchants: Vec<Option<String>> = changed.iter().map(|s| s.merchant_vpa.clone()).collect();
    let created: Vec<_> = changed.iter().map(|s| s.created_at).collect();
    let status_at: Vec<_> = changed.iter().map(|s| s.status_at).collect();
    tx.execute(
        "INSERT INTO analytics_txns AS t (txn_id, day, txn_type, status, seq, amount_paise,
             payer_bank, payee_bank, merchant_vpa, created_at, status_at)
         SELECT * FROM unnest($1::uuid[], $2::date[], $3::text[], $4::text[], $5::int4[],
             $6::int8[], $7::text[], $8::text[], $9::text[], $10::timestamptz[], $11::timestamptz[])
         ON CONFLICT (txn_id) DO UPDATE SET day = EXCLUDED.day, txn_type = EXCLUDED.txn_type,
             status = EXCLUDED.status, seq = EXCLUDED.seq, amount_paise = EXCLUDED.amount_paise,
             payer_bank = EXCLUDED.payer_bank, payee_bank = EXCLUDED.payee_bank,
             merchant_vpa = EXCLUDED.merchant_vpa, created_at = EXCLUDED.created_at,
             status_at = EXCLUDED.status_at
         WHERE t.seq < EXCLUDED.seq",
        &[
            &ids,
            &days,
            &col(|s| s.txn_type.clone()),
            &col(|s| s.status.clone()),
            &seqs,
            &amounts,
            &col(|s| s.payer_bank.clone()),
            &col(|s| s.payee_bank.clone()),
            &merchants,
            &created,
            &status_at,
        ],
    )
    .await?;
    Ok(deltas)
}
