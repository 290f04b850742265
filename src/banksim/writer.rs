//! The **single writer** of one bank: the only code that moves money.
//!
//! It owns the bank: it holds a session advisory lock on the bank code (so a
//! second process for the same bank refuses to start), keeps the accounts and
//! an index of the bank's op ids (`OpIndex`) in memory, takes requests from a
//! bounded queue in batches, applies them in arrival order with the pure
//! `ledger::apply`, and persists each batch with one statement (`sql`).
//!
//! Group commit without a timer: a batch is whatever queued while the last
//! one committed (at most `BATCH_MAX`); an idle writer commits a lone request
//! at once. A batch costs one round trip, plus one read first only when the
//! index says one of its op ids may already exist (a retry, a reversal).
//!
//! What does not happen: no reply leaves before its batch is committed, so
//! every `200`/`422`/tombstone is durable before it is answered. If the
//! statement fails, every request of the batch gets `Unavailable` (the outcome
//! is unknown to the caller, which is exactly what a `503` means), and the
//! writer drops its connection and reloads everything from Postgres, since
//! its memory may be ahead of the database. A request refused by a full queue
//! was never applied.

use super::ledger::{self, Ledger, OpRow, Reply, Request};
use super::op_index::OpIndex;
use super::sql::{self, Statements};
use super::store::{ACCOUNT_COLUMNS, row_to_account, row_to_op};
use crate::adapters::pg::{DbError, DbUrl, pg_message};
use chrono::Utc;
use futures::StreamExt;
use std::collections::HashSet;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// Most requests applied in one batch (one Postgres round trip).
pub const BATCH_MAX: usize = 512;
/// Bound of the writer's queue; a full queue answers `429` at once.
pub const QUEUE_MAX: usize = 8192;
/// Longest pause between two attempts to reopen the ledger.
const MAX_REOPEN_PAUSE_MS: u64 = 2_000;

/// Why the writer could not give a definitive answer. The HTTP layer maps it
/// to `429` (busy) or `503`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("the ledger is busy (queue full)")]
    Busy,
    #[error("the ledger could not commit: {0}")]
    Unavailable(String),
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

impl Writer {
    /// Connects, takes the bank's lock and loads the ledger, then spawns the
    /// writer task. Fails at once when another process owns the bank.
    pub async fn start(db: DbUrl, code: String) -> Result<Writer, StartError> {
        let bank = open(&db, &code).await?;
        let (tx, rx) = mpsc::channel(QUEUE_MAX);
        let (health_tx, healthy) = watch::channel(true);
        tokio::spawn(run(db, code, bank, rx, health_tx));
        Ok(Writer { tx, healthy })
    }

    /// Submits a request and waits for its durable answer. The request is
    /// queued before the first `await`: once this future has been polled, the
    /// request is applied (or refused as a whole batch) whether or not anyone
    /// still waits for the answer.
    pub async fn submit(&self, request: Request) -> Result<Reply, WriteError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .try_send(Job { request, reply })
            .map_err(|_| WriteError::Busy)?;
        rx.await
            .unwrap_or_else(|_| Err(WriteError::Unavailable("writer stopped".into())))
    }
}

/// Everything the writer holds while it owns the bank.
struct Bank {
    client: tokio_postgres::Client,
    statements: Statements,
    ledger: Ledger,
    index: OpIndex,
}

async fn open(db: &DbUrl, code: &str) -> Result<Bank, StartError> {
    let client = db.connect().await?;
    let lock = "SELECT pg_try_advisory_lock(hashtext('upi-bank-sim'), hashtext($1))";
    if !scalar::<bool>(&client, lock, code).await? {
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
    let max_seq = "SELECT COALESCE(MAX(seq), 0) FROM bank_ops WHERE bank_code = $1";
    let max_seq: i64 = scalar(&client, max_seq, code).await?;
    let index = load_index(&client, code).await.map_err(DbError::from)?;
    tracing::info!(bank = %code, ops = index.len(), "ledger loaded");
    // Last: the session settings it makes are for the writer's statements.
    let statements = Statements::prepare(&client).await.map_err(DbError::from)?;
    Ok(Bank {
        client,
        statements,
        ledger: Ledger::new(accounts, max_seq + 1),
        index,
    })
}

/// The one value of a one-row query about the bank `code`.
async fn scalar<T: for<'a> tokio_postgres::types::FromSql<'a>>(
    client: &tokio_postgres::Client,
    sql: &str,
    code: &str,
) -> Result<T, DbError> {
    Ok(client.query_one(sql, &[&code]).await?.try_get(0)?)
}

/// Every op id of the bank, streamed (not collected) into a fresh index.
async fn load_index(
    client: &tokio_postgres::Client,
    code: &str,
) -> Result<OpIndex, tokio_postgres::Error> {
    let mut index = OpIndex::default();
    let rows = client
        .query_raw(
            "SELECT op_id FROM bank_ops WHERE bank_code = $1",
            std::iter::once(code),
        )
        .await?;
    let mut rows = std::pin::pin!(rows);
    while let Some(row) = rows.next().await {
        index.insert(row?.try_get::<_, &str>(0)?);
    }
    Ok(index)
}

async fn run(
    db: DbUrl,
    code: String,
    bank: Bank,
    mut rx: mpsc::Receiver<Job>,
    health: watch::Sender<bool>,
) {
    let mut state = Some(bank);
    let mut batch: Vec<Job> = Vec::with_capacity(BATCH_MAX);
    loop {
        let Some(bank) = state.as_mut() else {
            state = Some(reopen(&db, &code, &mut rx, &health).await);
            continue;
        };
        if rx.recv_many(&mut batch, BATCH_MAX).await == 0 {
            return; // every handle dropped: shutting down
        }
        match apply_batch(bank, &code, &batch).await {
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
                // The in-memory ledger may be ahead of the database: drop the
                // connection (releasing the lock), the ledger and the index.
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
) -> Bank {
    let _ = health.send(false);
    let mut backoff_ms = 50;
    loop {
        match open(db, code).await {
            Ok(bank) => {
                let _ = health.send(true);
                return bank;
            }
            Err(e) => {
                tracing::warn!(bank = %code, error = %e, "writer cannot reopen the ledger yet");
                // Requests arriving meanwhile are refused, not queued without bound.
                while let Ok(job) = rx.try_recv() {
                    let _ = job.reply.send(Err(WriteError::Unavailable(e.to_string())));
                }
                tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                backoff_ms = (backoff_ms * 2).min(MAX_REOPEN_PAUSE_MS);
            }
        }
    }
}

/// Why a batch was not committed.
#[derive(Debug, thiserror::Error)]
enum BatchError {
    #[error("database error: {}", pg_message(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error("the batch statement wrote {written:?}, expected {expected:?}")]
    Miscount {
        written: sql::Written,
        expected: sql::Written,
    },
}

async fn apply_batch(bank: &mut Bank, code: &str, batch: &[Job]) -> Result<Vec<Reply>, BatchError> {
    let found = load_maybe_present(bank, code, batch).await?;
    let now_ms = Utc::now().timestamp_millis();
    let replies: Vec<Reply> = batch
        .iter()
        .map(|job| ledger::apply(&mut bank.ledger, &job.request, now_ms))
        .collect();
    let changes = bank.ledger.take_dirty();
    if changes.ops.is_empty() && changes.accounts.is_empty() {
        return Ok(replies);
    }
    let is_new = |op: &OpRow| !found.contains(op.op_id.as_str());
    let expected = sql::Written {
        new_ops: changes.ops.iter().filter(|o| is_new(o)).count() as i64,
        old_ops: changes.ops.iter().filter(|o| !is_new(o)).count() as i64,
        accounts: changes.accounts.len() as i64,
    };
    let written = sql::persist(&bank.client, &bank.statements, code, &changes, is_new).await?;
    if written != expected {
        // Committed, yet not what this writer meant: its memory cannot be trusted.
        return Err(BatchError::Miscount { written, expected });
    }
    for op in changes.ops.iter().filter(|o| is_new(o)) {
        bank.index.insert(&op.op_id);
    }
    Ok(replies)
}

/// Makes the ledger's working set the rows of this batch's op ids that exist,
/// reading only the ids the index cannot rule out. Returns the ids found.
async fn load_maybe_present(
    bank: &mut Bank,
    code: &str,
    batch: &[Job],
) -> Result<HashSet<String>, tokio_postgres::Error> {
    bank.ledger.ops.clear();
    let mut maybe: Vec<&str> = batch
        .iter()
        .flat_map(|job| job.request.touched_op_ids())
        .filter(|id| bank.index.may_contain(id))
        .collect();
    if maybe.is_empty() {
        return Ok(HashSet::new());
    }
    maybe.sort_unstable();
    maybe.dedup();
    let rows = bank
        .client
        .query(&bank.statements.read_ops, &[&code, &maybe])
        .await?;
    let mut found = HashSet::with_capacity(rows.len());
    for row in &rows {
        let op = row_to_op(row);
        found.insert(op.op_id.clone());
        bank.ledger.ops.insert(op.op_id.clone(), op);
    }
    Ok(found)
}
