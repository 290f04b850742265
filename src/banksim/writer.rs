//! The **single writer** of one bank: the only code that moves money.
//!
//! It owns the bank: it holds a session advisory lock on the bank code (so a
//! second process for the same bank refuses to start), keeps the accounts in
//! memory, takes requests from a bounded queue in batches, applies them with
//! the pure `ledger::apply`, and persists each batch with one atomic statement.
//! Replies are sent only after that statement returns, so every `200`/`422`/
//! tombstone is durable before it leaves. If the statement fails, every request
//! of the batch gets `Unavailable` (the outcome is unknown to the caller, which
//! is exactly what a `503` means) and the writer reloads its state from Postgres.

use super::ledger::{self, Changes, Ledger, Reply, Request};
use super::store::{ACCOUNT_COLUMNS, OP_COLUMNS, ms_to_time, row_to_account, row_to_op};
use crate::adapters::bank_api::OpKind;
use crate::adapters::pg::{DbError, DbUrl};
use chrono::{DateTime, Utc};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// Most requests applied in one batch (one Postgres round trip).
pub const BATCH_MAX: usize = 512;
/// Bound of the writer's queue; a full queue answers `503` at once.
pub const QUEUE_MAX: usize = 8192;

/// Why the writer could not give a definitive answer. The HTTP layer maps it to 503.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("the ledger is busy (queue full)")]
    Busy,
    #[error("the ledger could not commit: {0}")]
    Unavailable(String),
}

struct Job {
    request: Request,
    reply: oneshot::Sender<Result<Reply, WriteError>>,
}

/// Handle to the single writer. Cheap to clone.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
    /// True while the writer holds its connection, its lock and a loaded ledger.
    pub healthy: watch::Receiver<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(
        "bank {0} is already being served by another process on this database (stop it first, or use another --code or --database-url)"
    )]
    AlreadyServed(String),
}

impl Writer {
    /// Connects, takes the bank's lock and loads the ledger, then spawns the
    /// writer task. Fails at once when another process owns the bank.
    pub async fn start(db: DbUrl, code: String) -> Result<Writer, StartError> {
        let (client, ledger) = open(&db, &code).await?;
        let (tx, rx) = mpsc::channel(QUEUE_MAX);
        let (health_tx, healthy) = watch::channel(true);
        tokio::spawn(run(db, code, client, ledger, rx, health_tx));
        Ok(Writer { tx, healthy })
    }

    /// Submits a request and waits for its durable answer.
    pub async fn submit(&self, request: Request) -> Result<Reply, WriteError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .try_send(Job { request, reply })
            .map_err(|_| WriteError::Busy)?;
        rx.await
            .unwrap_or_else(|_| Err(WriteError::Unavailable("writer stopped".into())))
    }
}

async fn open(db: &DbUrl, code: &str) -> Result<(tokio_postgres::Client, Ledger), StartError> {
    let client = db.connect().await?;
    let locked: bool = client
        .query_one(
            "SELECT pg_try_advisory_lock(hashtext('upi-bank-sim'), hashtext($1))",
            &[&code],
        )
        .await
        .map_err(DbError::from)?
        .get(0);
    if !locked {
        return Err(StartError::AlreadyServed(code.to_string()));
    }
    let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM bank_accounts WHERE bank_code = $1");
    let rows = client.query(&sql, &[&code]).await.map_err(DbError::from)?;
    let accounts = rows
        .iter()
        .map(|r| {
            let account = row_to_account(r);
            (account.account.clone(), account)
        })
        .collect();
    let max_seq: i64 = client
        .query_one(
            "SELECT COALESCE(MAX(seq), 0) FROM bank_ops WHERE bank_code = $1",
            &[&code],
        )
        .await
        .map_err(DbError::from)?
        .get(0);
    Ok((client, Ledger::new(accounts, max_seq + 1)))
}

async fn run(
    db: DbUrl,
    code: String,
    client: tokio_postgres::Client,
    ledger: Ledger,
    mut rx: mpsc::Receiver<Job>,
    health: watch::Sender<bool>,
) {
    let mut state = Some((client, ledger));
    let mut batch: Vec<Job> = Vec::with_capacity(BATCH_MAX);
    loop {
        let Some((client, ledger)) = state.as_mut() else {
            state = Some(reopen(&db, &code, &mut rx, &health).await);
            continue;
        };
        if rx.recv_many(&mut batch, BATCH_MAX).await == 0 {
            return; // every handle dropped: shutting down
        }
        match apply_batch(client, &code, ledger, &batch).await {
            Ok(replies) => {
                for (job, reply) in batch.drain(..).zip(replies) {
                    let _ = job.reply.send(Ok(reply));
                }
            }
            Err(e) => {
                tracing::warn!(bank = %code, error = %e, "batch not committed; answering 503 and reloading");
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(WriteError::Unavailable(e.to_string())));
                }
                // The in-memory ledger may be ahead of the database: drop both the
                // connection (releasing the lock) and the ledger, then reload.
                state = None;
            }
        }
    }
}

/// Reconnects, re-takes the lock and reloads the ledger, refusing requests meanwhile.
async fn reopen(
    db: &DbUrl,
    code: &str,
    rx: &mut mpsc::Receiver<Job>,
    health: &watch::Sender<bool>,
) -> (tokio_postgres::Client, Ledger) {
    let _ = health.send(false);
    let mut backoff_ms = 50;
    loop {
        match open(db, code).await {
            Ok(opened) => {
                let _ = health.send(true);
                return opened;
            }
            Err(e) => {
                tracing::warn!(bank = %code, error = %e, "writer cannot reopen the ledger yet");
                // Requests arriving meanwhile are refused, not queued without bound.
                while let Ok(job) = rx.try_recv() {
                    let _ = job.reply.send(Err(WriteError::Unavailable(e.to_string())));
                }
                tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                backoff_ms = (backoff_ms * 2).min(2_000);
            }
        }
    }
}

async fn apply_batch(
    client: &tokio_postgres::Client,
    code: &str,
    ledger: &mut Ledger,
    batch: &[Job],
) -> Result<Vec<Reply>, DbError> {
    let mut ids: Vec<&str> = batch
        .iter()
        .flat_map(|j| j.request.touched_op_ids())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let sql = format!("SELECT {OP_COLUMNS} FROM bank_ops WHERE bank_code = $1 AND op_id = ANY($2)");
    let rows = client.query(&sql, &[&code, &ids]).await?;
    ledger.ops = rows.iter().map(|r| (r.get(0), row_to_op(r))).collect();
    let now_ms = Utc::now().timestamp_millis();
    let replies: Vec<Reply> = batch
        .iter()
        .map(|job| ledger::apply(ledger, &job.request, now_ms))
        .collect();
    let changes = ledger.take_dirty();
    if !changes.ops.is_empty() || !changes.accounts.is_empty() {
        persist(client, code, &changes).await?;
    }
    Ok(replies)
}

async fn persist(client: &tokio_postgres::Client, code: &str, c: &Changes) -> Result<(), DbError> {
    let op_ids: Vec<&str> = c.ops.iter().map(|o| o.op_id.as_str()).collect();
    let seqs: Vec<Option<i64>> = c.ops.iter().map(|o| o.seq).collect();
    let kinds: Vec<Option<&str>> = c.ops.iter().map(|o| o.kind.map(OpKind::as_str)).collect();
    let statuses: Vec<&str> = c.ops.iter().map(|o| o.status.as_str()).collect();
    let answers: Vec<&str> = c.ops.iter().map(|o| o.answer.as_str()).collect();
    let accounts: Vec<Option<&str>> = c.ops.iter().map(|o| o.account.as_deref()).collect();
    let amounts: Vec<i64> = c.ops.iter().map(|o| o.amount_paise).collect();
    let txns: Vec<Option<&str>> = c.ops.iter().map(|o| o.txn_id.as_deref()).collect();
    let codes: Vec<Option<&str>> = c
        .ops
        .iter()
        .map(|o| o.code.as_ref().map(|d| d.as_str()))
        .collect();
    let originals: Vec<Option<&str>> = c.ops.iter().map(|o| o.original_op_id.as_deref()).collect();
    let ats: Vec<DateTime<Utc>> = c.ops.iter().map(|o| ms_to_time(o.at_ms)).collect();
    let acc_ids: Vec<&str> = c.accounts.iter().map(|a| a.account.as_str()).collect();
    let balances: Vec<i64> = c.accounts.iter().map(|a| a.balance_paise).collect();
    // One statement = one atomic, durable transaction for the whole batch.
    let row = client
        .query_one(
            "WITH o AS (
                INSERT INTO bank_ops (bank_code, op_id, seq, kind, status, answer, account,
                                      amount_paise, txn_id, code, original_op_id, at)
                SELECT $1::text, * FROM UNNEST($2::text[], $3::int8[], $4::text[], $5::text[],
                       $6::text[], $7::text[], $8::int8[], $9::text[], $10::text[], $11::text[],
                       $12::timestamptz[])
                ON CONFLICT (bank_code, op_id) DO UPDATE SET
                    seq = EXCLUDED.seq, kind = EXCLUDED.kind, status = EXCLUDED.status,
                    answer = EXCLUDED.answer, account = EXCLUDED.account, txn_id = EXCLUDED.txn_id,
                    code = EXCLUDED.code, at = EXCLUDED.at
                RETURNING 1
             ), a AS (
                UPDATE bank_accounts t SET balance_paise = u.bal
                FROM UNNEST($13::text[], $14::int8[]) AS u(account, bal)
                WHERE t.bank_code = $1 AND t.account = u.account
                RETURNING 1
             )
             SELECT (SELECT count(*) FROM o), (SELECT count(*) FROM a)",
            &[
                &code, &op_ids, &seqs, &kinds, &statuses, &answers, &accounts, &amounts, &txns,
                &codes, &originals, &ats, &acc_ids, &balances,
            ],
        )
        .await?;
    let (ops_written, accounts_written): (i64, i64) = (row.get(0), row.get(1));
    debug_assert_eq!(ops_written as usize, c.ops.len());
    debug_assert_eq!(accounts_written as usize, c.accounts.len());
    Ok(())
}
