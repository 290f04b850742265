//! The read side of the simulator's ledger in Postgres: seeding, and the
//! queries of the inquiry, feed, account and balances endpoints, on a pool
//! (any number of concurrent readers). Also how a `bank_ops` row becomes an
//! `OpRow`, shared with the writer.
//!
//! What does not happen here: nothing writes a balance or an op. Money moves
//! only through the single writer (`writer`), which owns the bank.

use super::ledger::{Account, OpRow};
use crate::adapters::bank_api::{DeclineCode, FeedEntry, OpKind, OpStatus};
use crate::adapters::pg::DbError;
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use deadpool_postgres::Pool;

/// An account as seeded from `--accounts FILE`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedAccount {
    pub account: String,
    pub name: String,
    pub balance_paise: i64,
    pub status: String,
}

/// The columns `row_to_op` reads, in its order.
pub(super) const OP_COLUMNS: &str =
    "op_id, seq, kind, status, answer, account, amount_paise, txn_id, code, original_op_id, at";

pub(super) fn row_to_op(row: &tokio_postgres::Row) -> OpRow {
    let kind: Option<String> = row.get(2);
    let status: String = row.get(3);
    let answer: String = row.get(4);
    let code: Option<String> = row.get(8);
    let at: DateTime<Utc> = row.get(10);
    OpRow {
        op_id: row.get(0),
        seq: row.get(1),
        kind: kind.as_deref().and_then(OpKind::parse),
        status: OpStatus::parse(&status).unwrap_or(OpStatus::Declined),
        answer: OpStatus::parse(&answer).unwrap_or(OpStatus::Declined),
        account: row.get(5),
        amount_paise: row.get(6),
        txn_id: row.get(7),
        code: code.as_deref().map(DeclineCode::parse),
        original_op_id: row.get(9),
        at_ms: at.timestamp_millis(),
    }
}

/// The columns `row_to_account` reads, in its order.
pub(super) const ACCOUNT_COLUMNS: &str = "account, name, status, balance_paise";

pub(super) fn row_to_account(row: &tokio_postgres::Row) -> Account {
    Account {
        account: row.get(0),
        name: row.get(1),
        frozen: row.get::<_, &str>(2) == "FROZEN",
        balance_paise: row.get(3),
    }
}

pub(super) fn ms_to_time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_else(Utc::now)
}

/// Read side of the bank's ledger (any number of concurrent readers).
#[derive(Clone)]
pub struct BankStore {
    pub pool: Pool,
    pub code: String,
}

impl BankStore {
    /// Seeds accounts if this bank has none yet. Returns how many were inserted.
    pub async fn seed_if_empty(&self, accounts: &[SeedAccount]) -> Result<u64, DbError> {
        let client = self.pool.get().await?;
        let existing: i64 = client
            .query_one(
                "SELECT count(*) FROM bank_accounts WHERE bank_code = $1",
                &[&self.code],
            )
            .await?
            .get(0);
        if existing > 0 || accounts.is_empty() {
            return Ok(0);
        }
        let ids: Vec<&str> = accounts.iter().map(|a| a.account.as_str()).collect();
        let names: Vec<&str> = accounts.iter().map(|a| a.name.as_str()).collect();
        let statuses: Vec<&str> = accounts.iter().map(|a| a.status.as_str()).collect();
        let balances: Vec<i64> = accounts.iter().map(|a| a.balance_paise).collect();
        let n = client
            .execute(
                "INSERT INTO bank_accounts (bank_code, account, name, status, balance_paise)
                 SELECT $1::text, * FROM UNNEST($2::text[], $3::text[], $4::text[], $5::int8[])
                 ON CONFLICT DO NOTHING",
                &[&self.code, &ids, &names, &statuses, &balances],
            )
            .await?;
        Ok(n)
    }

    pub async fn op(&self, op_id: &str) -> Result<Option<OpRow>, DbError> {
        let client = self.pool.get().await?;
        let sql = format!("SELECT {OP_COLUMNS} FROM bank_ops WHERE bank_code = $1 AND op_id = $2");
        let row = client.query_opt(&sql, &[&self.code, &op_id]).await?;
        Ok(row.as_ref().map(row_to_op))
    }

    pub async fn feed(&self, after_seq: i64, limit: i64) -> Result<Vec<FeedEntry>, DbError> {
        let client = self.pool.get().await?;
        let sql = format!(
            "SELECT {OP_COLUMNS} FROM bank_ops WHERE bank_code = $1 AND seq > $2
             ORDER BY seq LIMIT $3"
        );
        let rows = client
            .query(&sql, &[&self.code, &after_seq, &limit])
            .await?;
        Ok(rows
            .iter()
            .map(row_to_op)
            .filter_map(|op| {
                Some(FeedEntry {
                    seq: op.seq?,
                    kind: op.kind?,
                    at: ms_to_time(op.at_ms).to_rfc3339_opts(SecondsFormat::Millis, true),
                    op_id: op.op_id,
                    status: op.status,
                    account: op.account,
                    amount_paise: op.amount_paise,
                    txn_id: op.txn_id,
                    code: op.code,
                    original_op_id: op.original_op_id,
                })
            })
            .collect())
    }

    pub async fn accounts(&self) -> Result<Vec<Account>, DbError> {
        let client = self.pool.get().await?;
        let sql = format!(
            "SELECT {ACCOUNT_COLUMNS} FROM bank_accounts WHERE bank_code = $1 ORDER BY account"
        );
        let rows = client.query(&sql, &[&self.code]).await?;
        Ok(rows.iter().map(row_to_account).collect())
    }

    pub async fn account(&self, account: &str) -> Result<Option<Account>, DbError> {
        let client = self.pool.get().await?;
        let sql = format!(
            "SELECT {ACCOUNT_COLUMNS} FROM bank_accounts WHERE bank_code = $1 AND account = $2"
        );
        let row = client.query_opt(&sql, &[&self.code, &account]).await?;
        Ok(row.as_ref().map(row_to_account))
    }
}
