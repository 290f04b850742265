//! The switch's Postgres store: bank and VPA registrations, transactions with
//! their idempotency keys, the saga checkpoint log and the outbox.
//!
//! Layout: this file (types, registrations), `reads` (what clients and
//! tools read back), `batch` (the one group-commit statement that writes
//! creates and checkpoints), `guarded` (the acceptance checks a batch's
//! limited creates pass under the database's locks), `collects` (collect
//! requests and their expiry), `outbox` (the relay's reads and deletes),
//! `settlement` (windows, their close and positions, ledger balances, the
//! settlement outbox), `recon` (reconciliation runs, feed cursors, judging).
//!
//! Invariants kept here:
//! - Idempotency is decided by the database (`INSERT … ON CONFLICT DO NOTHING`
//!   on the key), never by a read-then-write race.
//! - A checkpoint names the version it extends; a writer holding a stale version
//!   changes nothing (`CheckpointError::VersionConflict`). That fences zombies.
//! - Checkpoint rows are only inserted, never updated or deleted; the current
//!   row and its checkpoint are written by one statement (one transaction).
//! - A terminal status never changes (also enforced by a trigger).
//! - Every checkpoint writes its domain event to `outbox` in the same
//!   statement (transactional outbox): no event without its checkpoint, no
//!   checkpoint without its event. The relay deletes a row only after RabbitMQ
//!   confirmed it.

pub mod audit;
pub mod batch;
pub mod clients;
pub mod cluster;
pub mod collects;
pub mod guarded;
pub mod ops_reads;
mod outbox;
mod reads;
pub mod recon;
pub mod settlement;

pub use reads::OriginalRow;

use crate::adapters::pg::DbError;
use crate::domain::{Paise, Vpa};
use crate::events::TxnEvent;
use crate::saga::guards::{Guard, Refusal};
use crate::saga::{Checkpoint, PaymentType, Saga, Status};
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Notify;
use uuid::Uuid;

/// One endpoint through which a bank is reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BankEndpoint {
    pub url: String,
    pub priority: i32,
    /// The endpoint speaks HTTP/2 over cleartext TCP (prior knowledge): all
    /// calls share one connection as streams, instead of a connection per
    /// call in flight. Off unless the registration says so.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub http2: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BankRecord {
    pub code: String,
    pub name: String,
    pub endpoints: Vec<BankEndpoint>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VpaRecord {
    pub vpa: String,
    pub bank_code: String,
    pub account: String,
    pub name: String,
    pub merchant: bool,
    pub mcc: Option<String>,
}

/// What a client asked for, as compared for idempotent replays.
#[derive(Debug, Clone)]
pub struct TxnRequest {
    /// The client that asked (`""` when authentication is off): keys are
    /// per client.
    pub client_id: String,
    /// The client's key; `None` for a collect's payment (unique per collect).
    pub idempotency_key: Option<String>,
    pub kind: PaymentType,
    pub payer_vpa: Vpa,
    pub payee_vpa: Vpa,
    pub amount: Paise,
    pub note: Option<String>,
    pub merchant_ref: Option<String>,
    pub original_txn_id: Option<Uuid>,
    pub collect_id: Option<Uuid>,
}

impl TxnRequest {
    /// The key the acceptance checks know this request by: the client and
    /// its key (unit separator between), or the collect.
    pub fn guard_key(&self) -> String {
        match (&self.idempotency_key, self.collect_id) {
            (Some(key), _) => format!("{}\u{1f}{key}", self.client_id),
            (None, Some(id)) => format!("collect:{id}"),
            (None, None) => String::new(),
        }
    }
}

/// A transaction about to be created, with its saga already in its first state.
#[derive(Debug, Clone)]
pub struct NewTxn {
    pub request: TxnRequest,
    pub saga: Saga,
    /// The payee merchant's MCC (P2M).
    pub mcc: Option<String>,
    /// What it must be checked against at acceptance (none: written as is).
    pub guard: Guard,
}

/// What creating a transaction did.
#[derive(Debug, Clone)]
pub enum Created {
    /// A new transaction, at checkpoint version 1.
    New,
    /// The key was used before with the same request: that transaction.
    Existing { txn_id: Uuid, status: Status },
    /// The key was used before with a different request.
    KeyReused,
    /// A limit, a refund cap or a collect's state refused it: nothing written.
    Refused(Refusal),
}

#[derive(Debug, Clone, Serialize)]
pub struct StepRow {
    pub state: String,
    pub at: DateTime<Utc>,
    pub op_id: Option<String>,
    pub detail: Option<String>,
}

/// A transaction as clients see it.
#[derive(Debug, Clone)]
pub struct TxnRow {
    pub txn_id: Uuid,
    pub kind: String,
    pub status: Status,
    pub payer_vpa: String,
    pub payee_vpa: String,
    pub amount: Paise,
    pub note: Option<String>,
    pub reason_code: Option<String>,
    pub reason_detail: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub steps: Vec<StepRow>,
    pub merchant_ref: Option<String>,
    pub original_txn_id: Option<Uuid>,
    pub collect_id: Option<Uuid>,
    /// The client that created it (`""`: authentication was off).
    pub client_id: String,
    /// The sum of its `SUCCESS` refunds (P2P and P2M).
    pub refunded: Paise,
}

/// Where a transaction's money comes from and goes to, as recorded: what
/// `upi-switch verify` compares with the banks' feeds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TxnMoney {
    pub txn_id: Uuid,
    pub status: Status,
    pub payer_bank: String,
    pub payer_account: String,
    pub payee_bank: String,
    pub payee_account: String,
    pub amount: Paise,
    pub created_at: DateTime<Utc>,
}

/// A saga to run, as stored.
#[derive(Debug, Clone)]
pub struct StoredSaga {
    pub saga: Saga,
    pub version: i32,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unknown bank {0}")]
    UnknownBank(String),
    #[error("{0}")]
    Raced(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::Db(DbError::from(e))
    }
}

impl From<tokio_postgres::Error> for CheckpointError {
    fn from(e: tokio_postgres::Error) -> Self {
        CheckpointError::Db(StoreError::from(e))
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StoreError::Db(DbError::from(e))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("the transaction moved past version {0}: another writer owns it")]
    VersionConflict(i32),
    #[error(transparent)]
    Db(#[from] StoreError),
}

/// One checkpoint to make durable.
#[derive(Debug, Clone)]
pub struct CheckpointWrite {
    pub saga: Saga,
    /// The version the writer last read or wrote; the new one is `+ 1`.
    pub expected_version: i32,
    pub step: Checkpoint,
}

/// The Postgres store of the switch.
#[derive(Clone)]
pub struct Store {
    pub pool: Pool,
    /// Poked after every committed outbox row, so the relay publishes at once
    /// instead of at its next poll.
    pub outbox_written: Arc<Notify>,
}

/// One unpublished outbox row with its transaction's facts.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub event: TxnEvent,
}

/// `reason_code`, `reason_detail` of a saga, for its row and checkpoint.
pub(crate) fn reason_columns(saga: &Saga) -> (Option<String>, Option<String>) {
    match saga.reason() {
        Some(r) => (Some(r.code.clone()), Some(r.detail.clone())),
        None => (None, None),
    }
}

/// A checkpoint row whose first columns are `state, at, op_id, detail`.
fn step_row(r: &tokio_postgres::Row) -> StepRow {
    StepRow {
        state: r.get(0),
        at: r.get(1),
        op_id: r.get(2),
        detail: r.get(3),
    }
}

impl Store {
    pub fn new(pool: Pool) -> Store {
        Store {
            pool,
            outbox_written: Arc::new(Notify::new()),
        }
    }

    /// Registers or updates a bank (audited as `actor`); true when it was created.
    pub async fn upsert_bank(&self, bank: &BankRecord, actor: &str) -> Result<bool, StoreError> {
        let mut client = self.pool.get().await?;
        let endpoints = serde_json::to_value(&bank.endpoints).unwrap_or_default();
        let tx = client.transaction().await?;
        audit::as_actor(&tx, actor).await?;
        let row = tx
            .query_one(
                "INSERT INTO banks (code, name, endpoints) VALUES ($1, $2, $3)
                 ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name,
                     endpoints = EXCLUDED.endpoints, updated_at = now()
                 RETURNING (xmax = 0)",
                &[&bank.code, &bank.name, &endpoints],
            )
            .await?;
        tx.commit().await?;
        Ok(row.get(0))
    }

    pub async fn banks(&self) -> Result<Vec<BankRecord>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &client
                    .prepare_cached("SELECT code, name, endpoints FROM banks ORDER BY code")
                    .await?,
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| BankRecord {
                code: r.get(0),
                name: r.get(1),
                endpoints: serde_json::from_value(r.get(2)).unwrap_or_default(),
            })
            .collect())
    }

    /// Registers or updates a VPA (audited as `actor`); true when it was created.
    pub async fn upsert_vpa(&self, v: &VpaRecord, actor: &str) -> Result<bool, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        audit::as_actor(&tx, actor).await?;
        let result = tx
            .query_one(
                "INSERT INTO vpas (vpa, bank_code, account, name, merchant, mcc)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (vpa) DO UPDATE SET bank_code = EXCLUDED.bank_code,
                     account = EXCLUDED.account, name = EXCLUDED.name,
                     merchant = EXCLUDED.merchant, mcc = EXCLUDED.mcc, updated_at = now()
                 RETURNING (xmax = 0)",
                &[
                    &v.vpa,
                    &v.bank_code,
                    &v.account,
                    &v.name,
                    &v.merchant,
                    &v.mcc,
                ],
            )
            .await;
        match result {
            Ok(row) => {
                tx.commit().await?;
                Ok(row.get(0))
            }
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION) => {
                Err(StoreError::UnknownBank(v.bank_code.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn vpa(&self, vpa: &Vpa) -> Result<Option<VpaRecord>, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &client.prepare_cached("SELECT vpa, bank_code, account, name, merchant, mcc FROM vpas WHERE vpa = $1").await?,
                &[&vpa.as_str()],
            )
            .await?;
        Ok(row.map(|r| VpaRecord {
            vpa: r.get(0),
            bank_code: r.get(1),
            account: r.get(2),
            name: r.get(3),
            merchant: r.get(4),
            mcc: r.get(5),
        }))
    }

    /// Every transaction's money columns, oldest first.
    pub async fn txn_money(&self) -> Result<Vec<TxnMoney>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &client.prepare_cached("SELECT txn_id, status, payer_bank, payer_account, payee_bank, payee_account,
                        amount_paise, created_at
                 FROM transactions ORDER BY created_at, txn_id").await?,
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| TxnMoney {
                txn_id: r.get(0),
                status: Status::parse(r.get(1)).unwrap_or(Status::Pending),
                payer_bank: r.get(2),
                payer_account: r.get(3),
                payee_bank: r.get(4),
                payee_account: r.get(5),
                amount: Paise(r.get(6)),
                created_at: r.get(7),
            })
            .collect())
    }

    /// The latest checkpoint of each of these transactions.
    pub async fn last_steps(&self, txn_ids: &[Uuid]) -> Result<HashMap<Uuid, StepRow>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &client
                    .prepare_cached(
                        "SELECT DISTINCT ON (txn_id) state, at, op_id, detail, txn_id
                 FROM txn_checkpoints WHERE txn_id = ANY($1)
                 ORDER BY txn_id, version DESC",
                    )
                    .await?,
                &[&txn_ids],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(4), step_row(r))).collect())
    }

    pub async fn status(&self, txn_id: Uuid) -> Result<Option<Status>, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &client
                    .prepare_cached("SELECT status FROM transactions WHERE txn_id = $1")
                    .await?,
                &[&txn_id],
            )
            .await?;
        Ok(row.and_then(|r| Status::parse(r.get(0))))
    }

    pub async fn pending_count(&self) -> Result<i64, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                &client
                    .prepare_cached("SELECT count(*) FROM transactions WHERE status = 'PENDING'")
                    .await?,
                &[],
            )
            .await?;
        Ok(row.get(0))
    }

    /// Liveness of the database (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client
            .query_one(&client.prepare_cached("SELECT 1").await?, &[])
            .await?;
        Ok(())
    }
}
