//! The single writer's statements: prepared once per connection, each a
//! single round trip, with plans that do not depend on table statistics
//! (autovacuum may be off, so tables may never be analyzed).
//!
//! - `read_ops`: the rows of the op ids a batch may find (only those the
//!   `OpIndex` cannot rule out). A per-id primary-key lookup: the `LATERAL`
//!   subquery with `OFFSET 0` cannot be flattened into a join, so it runs
//!   once per id as a full-key equality on the unique index.
//! - `persist_new` / `persist_any`: ONE statement = one atomic, durable
//!   transaction per batch. New ops by a plain `INSERT` (a duplicate key
//!   fails the whole batch: no op is ever written over by mistake); ops that
//!   already existed (reversed, or a tombstone that became a declined op) and
//!   the changed balances by `INSERT … ON CONFLICT DO UPDATE`, whose conflict
//!   check is the executor probing the primary key for each row, not a plan
//!   the planner picks. A batch of new ops only (almost every batch) uses
//!   `persist_new`, which leaves out the part for existing ops.
//!
//! The session is set to plan once (`force_generic_plan`), and never to
//! choose a sequential or bitmap scan, so a plan made while a table was tiny
//! (or after someone ran `ANALYZE`) cannot turn into a scan of a big one.

use super::ledger::{Account, Changes, OpRow};
use super::store::{OP_COLUMNS, ms_to_time};
use crate::adapters::bank_api::OpKind;
use chrono::{DateTime, Utc};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Error, Statement};

/// Settings of the writer's own session (its connection runs nothing else).
pub const SESSION: &str = "SET plan_cache_mode = force_generic_plan;
     SET enable_seqscan = off;
     SET enable_bitmapscan = off";

/// `$1` bank code, `$2` op ids: the rows found, in no particular order.
pub fn read_ops_sql() -> String {
    let columns = OP_COLUMNS
        .split(", ")
        .map(|c| format!("o.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT {columns} FROM UNNEST($2::text[]) AS w(op_id)
         CROSS JOIN LATERAL (
             SELECT * FROM bank_ops b WHERE b.bank_code = $1 AND b.op_id = w.op_id OFFSET 0
         ) o"
    )
}

const OPS_INTO: &str = "INSERT INTO bank_ops (bank_code, op_id, seq, kind, status, answer,
     account, amount_paise, txn_id, code, original_op_id, at)";

/// `$2`..`$12`: the ops, one array per column in `OPS_INTO`'s order after the bank code.
const OPS_ARRAYS: &str = "$2::text[], $3::int8[], $4::text[], $5::text[], $6::text[],
     $7::text[], $8::int8[], $9::text[], $10::text[], $11::text[], $12::timestamptz[]";

/// `$13`..`$16`: the changed accounts (account, name, status, balance).
const ACCOUNTS_CTE: &str = "accounts AS (
        INSERT INTO bank_accounts (bank_code, account, name, status, balance_paise)
        SELECT $1::text, * FROM UNNEST($13::text[], $14::text[], $15::text[], $16::int8[])
        ON CONFLICT (bank_code, account) DO UPDATE SET balance_paise = EXCLUDED.balance_paise
        RETURNING 1
     )";

/// The batch statement when every op is new (almost every batch): answers
/// (new ops, 0, accounts) written.
pub fn persist_new_sql() -> String {
    format!(
        "WITH new_ops AS ({OPS_INTO} SELECT $1::text, * FROM UNNEST({OPS_ARRAYS}) RETURNING 1),
         {ACCOUNTS_CTE}
         SELECT (SELECT count(*) FROM new_ops), 0::int8, (SELECT count(*) FROM accounts)"
    )
}

/// The batch statement when some ops existed before it (`$17`: is each op
/// new?): answers (new ops, existing ops, accounts) written.
pub fn persist_any_sql() -> String {
    let columns = "op_id, seq, kind, status, answer, account, amount_paise, txn_id, code,
                   original_op_id, at";
    format!(
        "WITH u AS (SELECT * FROM UNNEST($17::bool[], {OPS_ARRAYS}) AS u(is_new, {columns})),
         new_ops AS ({OPS_INTO} SELECT $1::text, {columns} FROM u WHERE is_new RETURNING 1),
         old_ops AS (
            {OPS_INTO} SELECT $1::text, {columns} FROM u WHERE NOT is_new
            ON CONFLICT (bank_code, op_id) DO UPDATE SET
                seq = EXCLUDED.seq, kind = EXCLUDED.kind, status = EXCLUDED.status,
                answer = EXCLUDED.answer, account = EXCLUDED.account, txn_id = EXCLUDED.txn_id,
                code = EXCLUDED.code, at = EXCLUDED.at
            RETURNING 1
         ),
         {ACCOUNTS_CTE}
         SELECT (SELECT count(*) FROM new_ops), (SELECT count(*) FROM old_ops),
                (SELECT count(*) FROM accounts)"
    )
}

/// The writer's statements, prepared on its connection.
pub struct Statements {
    pub read_ops: Statement,
    pub persist_new: Statement,
    pub persist_any: Statement,
}

impl Statements {
    /// Sets up the session and prepares the statements.
    pub async fn prepare(client: &Client) -> Result<Statements, Error> {
        client.batch_execute(SESSION).await?;
        Ok(Statements {
            read_ops: client.prepare(&read_ops_sql()).await?,
            persist_new: client.prepare(&persist_new_sql()).await?,
            persist_any: client.prepare(&persist_any_sql()).await?,
        })
    }
}

/// How many rows one `persist` wrote: new ops, existing ops, accounts.
#[derive(Debug, PartialEq, Eq)]
pub struct Written {
    pub new_ops: i64,
    pub old_ops: i64,
    pub accounts: i64,
}

/// Writes one batch's changes in one statement. `is_new(op)` says whether
/// the op's row did not exist before this batch.
pub async fn persist(
    client: &Client,
    statements: &Statements,
    code: &str,
    changes: &Changes,
    is_new: impl Fn(&OpRow) -> bool,
) -> Result<Written, Error> {
    let ops = &changes.ops;
    let news: Vec<bool> = ops.iter().map(is_new).collect();
    let op_ids: Vec<&str> = ops.iter().map(|o| o.op_id.as_str()).collect();
    let seqs: Vec<Option<i64>> = ops.iter().map(|o| o.seq).collect();
    let kinds: Vec<Option<&str>> = ops.iter().map(|o| o.kind.map(OpKind::as_str)).collect();
    let statuses: Vec<&str> = ops.iter().map(|o| o.status.as_str()).collect();
    let answers: Vec<&str> = ops.iter().map(|o| o.answer.as_str()).collect();
    let accounts: Vec<Option<&str>> = ops.iter().map(|o| o.account.as_deref()).collect();
    let amounts: Vec<i64> = ops.iter().map(|o| o.amount_paise).collect();
    let txns: Vec<Option<&str>> = ops.iter().map(|o| o.txn_id.as_deref()).collect();
    let codes: Vec<Option<&str>> = ops
        .iter()
        .map(|o| o.code.as_ref().map(|d| d.as_str()))
        .collect();
    let originals: Vec<Option<&str>> = ops.iter().map(|o| o.original_op_id.as_deref()).collect();
    let ats: Vec<DateTime<Utc>> = ops.iter().map(|o| ms_to_time(o.at_ms)).collect();
    let accs = &changes.accounts;
    let acc_ids: Vec<&str> = accs.iter().map(|a| a.account.as_str()).collect();
    let names: Vec<&str> = accs.iter().map(|a| a.name.as_str()).collect();
    let acc_statuses: Vec<&str> = accs.iter().map(account_status).collect();
    let balances: Vec<i64> = accs.iter().map(|a| a.balance_paise).collect();
    let params: [&(dyn ToSql + Sync); 17] = [
        &code,
        &op_ids,
        &seqs,
        &kinds,
        &statuses,
        &answers,
        &accounts,
        &amounts,
        &txns,
        &codes,
        &originals,
        &ats,
        &acc_ids,
        &names,
        &acc_statuses,
        &balances,
        &news,
    ];
    let row = if news.iter().all(|new| *new) {
        client
            .query_one(&statements.persist_new, &params[..16])
            .await?
    } else {
        client.query_one(&statements.persist_any, &params).await?
    };
    Ok(Written {
        new_ops: row.try_get(0)?,
        old_ops: row.try_get(1)?,
        accounts: row.try_get(2)?,
    })
}

fn account_status(account: &Account) -> &'static str {
    if account.frozen { "FROZEN" } else { "ACTIVE" }
}
