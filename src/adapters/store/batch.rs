//! The group-commit statement: the creates and checkpoints of many sagas
//! (and the merchant payments received meanwhile)
//! written by ONE statement (so one round trip and one atomic transaction),
//! as multi-row `INSERT … SELECT FROM unnest(…)` and `UPDATE … FROM unnest(…)`.
//! `actors::checkpoint_writer` owns when it runs; this module owns what it
//! writes.
//!
//! For each create: the `transactions` row (`ON CONFLICT` on the idempotency
//! key: the database decides), owned by this node while it is PENDING, its
//! checkpoint version 1 and its outbox event.
//! For each checkpoint: the version-fenced update of the row (`WHERE version =
//! expected`), the checkpoint row and the outbox event (with the facts the
//! update returns: type, VPAs, amount) — the last two only for
//! the rows the update touched, so a stale write changes nothing and fails
//! only its own saga (it is absent from the answer), never the batch.
//! A checkpoint that makes its payment SUCCESS also posts the payment's
//! journal (`ledger_journals`, and its debit and credit `ledger_postings`):
//! the ledger moves in the transaction of the status, never apart from it.
//!
//! Outbox rows also carry the banks, the creation time and the merchant's
//! VPA (P2M, COLLECT, a refund of a P2M: one primary-key look-up of the
//! original, for refunds only) that analytics counts by.
//!
//! For each merchant payment received (`POST /payments`): its row, once per
//! correlationId (`ON CONFLICT DO NOTHING`), so its `202` too comes after a
//! group commit.
//!
//! What it does not do: decide retries, split a failing batch or talk to
//! callers (the writer does); read anything but its own `RETURNING`.

use super::{CheckpointWrite, NewTxn, reason_columns};
use crate::events::event_type;
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

/// The statement (prepared once per writer connection).
pub const SQL: &str = "
WITH c AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                         $7::text[], $8::text[], $9::int8[], $10::text[], $11::text[], $12::text[],
                         $13::text[], $14::text[], $15::text[], $16::text[], $17::text[],
                         $31::text[], $32::text[], $33::text[], $34::uuid[], $35::uuid[],
                         $36::text[])
        AS c(txn_id, idempotency_key, payer_vpa, payee_vpa, payer_bank, payer_account,
             payee_bank, payee_account, amount_paise, note, status, saga,
             state, op_id, reason_code, reason_detail, event_type,
             type, merchant_ref, mcc, original_txn_id, collect_id, client_id)
), ins AS (
    INSERT INTO transactions (txn_id, idempotency_key, type, payer_vpa, payee_vpa,
        payer_bank, payer_account, payee_bank, payee_account, amount_paise, note,
        status, saga, version, reason_code, reason_detail, owner,
        merchant_ref, mcc, original_txn_id, collect_id, client_id)
    SELECT txn_id, idempotency_key, type, payer_vpa, payee_vpa, payer_bank, payer_account,
           payee_bank, payee_account, amount_paise, note, status, saga, 1,
           reason_code, reason_detail, CASE WHEN status = 'PENDING' THEN $30::uuid END,
           merchant_ref, mcc, original_txn_id, collect_id, client_id
    FROM c
    -- Any unique key: the client's idempotency key, or the collect request
    -- a collect's payment belongs to.
    ON CONFLICT DO NOTHING
    RETURNING txn_id
), ins_cp AS (
    INSERT INTO txn_checkpoints (txn_id, version, state, op_id, detail)
    SELECT c.txn_id, 1, c.state, c.op_id, c.reason_detail FROM c JOIN ins USING (txn_id)
), ins_ob AS (
    INSERT INTO outbox (txn_id, seq, event_type, state, status, op_id, reason_code, reason_detail,
                        txn_type, payer_vpa, payee_vpa, amount_paise,
                        payer_bank, payee_bank, merchant_vpa, txn_created_at)
    SELECT c.txn_id, 1, c.event_type, c.state, c.status, c.op_id, c.reason_code, c.reason_detail,
           c.type, c.payer_vpa, c.payee_vpa, c.amount_paise,
           c.payer_bank, c.payee_bank, CASE WHEN c.type IN ('P2M', 'COLLECT') THEN c.payee_vpa
                WHEN c.type = 'REFUND' THEN (SELECT c.payer_vpa FROM transactions o
                    WHERE o.txn_id = c.original_txn_id AND o.type = 'P2M') END, now()
    FROM c JOIN ins USING (txn_id)
), ins_collect AS (
    -- An approved collect names its payment, in the statement that makes it
    -- (the writer holds the collect's row lock, taken before it decided).
    UPDATE collects k SET status = 'APPROVED', txn_id = c.txn_id, updated_at = now()
    FROM c JOIN ins USING (txn_id)
    WHERE k.collect_id = c.collect_id
), u AS (
    SELECT * FROM unnest($18::uuid[], $19::int4[], $20::text[], $21::text[], $22::text[],
                         $23::text[], $24::text[], $25::text[], $26::text[], $27::text[])
        AS u(txn_id, expected, saga, status, reason_code, reason_detail, state, op_id,
             detail, event_type)
), upd AS (
    UPDATE transactions t
    SET saga = u.saga, status = u.status, reason_code = u.reason_code,
        reason_detail = u.reason_detail, version = u.expected + 1, updated_at = now()
    FROM u
    WHERE t.txn_id = u.txn_id AND t.version = u.expected
    RETURNING t.txn_id, t.type, t.payer_vpa, t.payee_vpa, t.amount_paise, t.status,
              t.payer_bank, t.payee_bank, t.created_at, t.original_txn_id
), jn AS (
    -- The ledger: a payment turning SUCCESS posts its journal here, in the
    -- statement (the transaction) of that checkpoint. A terminal status is
    -- written once (trigger), and the key makes a second journal impossible.
    INSERT INTO ledger_journals (txn_id, type, payer_bank, payee_bank, amount_paise)
    SELECT txn_id, type, payer_bank, payee_bank, amount_paise FROM upd WHERE status = 'SUCCESS'
    ON CONFLICT (txn_id) DO NOTHING
    RETURNING id, payer_bank, payee_bank, amount_paise
), jp AS (
    INSERT INTO ledger_postings (journal_id, direction, bank_code, amount_paise)
    SELECT id, 'DEBIT', payer_bank, amount_paise FROM jn
    UNION ALL SELECT id, 'CREDIT', payee_bank, amount_paise FROM jn
), upd_cp AS (
    INSERT INTO txn_checkpoints (txn_id, version, state, op_id, detail)
    SELECT u.txn_id, u.expected + 1, u.state, u.op_id, u.detail FROM u JOIN upd USING (txn_id)
), upd_ob AS (
    INSERT INTO outbox (txn_id, seq, event_type, state, status, op_id, reason_code, reason_detail,
                        txn_type, payer_vpa, payee_vpa, amount_paise,
                        payer_bank, payee_bank, merchant_vpa, txn_created_at)
    SELECT u.txn_id, u.expected + 1, u.event_type, u.state, u.status, u.op_id, u.reason_code,
           u.reason_detail, upd.type, upd.payer_vpa, upd.payee_vpa, upd.amount_paise,
           upd.payer_bank, upd.payee_bank, CASE WHEN upd.type IN ('P2M', 'COLLECT') THEN upd.payee_vpa
                WHEN upd.type = 'REFUND' THEN (SELECT upd.payer_vpa FROM transactions o
                    WHERE o.txn_id = upd.original_txn_id AND o.type = 'P2M') END, upd.created_at
    FROM u JOIN upd USING (txn_id)
), m AS (
    SELECT * FROM unnest($28::uuid[], $29::int8[]) AS m(correlation_id, amount_cents)
), m_ins AS (
    INSERT INTO merchant_payments (correlation_id, amount_cents, state)
    SELECT correlation_id, amount_cents, 'PENDING' FROM m
    ON CONFLICT (correlation_id) DO NOTHING
    RETURNING correlation_id
)
SELECT 'c', txn_id FROM ins
UNION ALL SELECT 'u', txn_id FROM upd
UNION ALL SELECT 'm', correlation_id FROM m_ins";

/// The parameters of one batch, column by column.
#[derive(Default)]
pub struct Columns {
    /// The node whose writer this is: it holds the sagas it creates.
    owner: Uuid,
    // creates
    c_txn: Vec<Uuid>,
    c_key: Vec<Option<String>>,
    c_payer_vpa: Vec<String>,
    c_payee_vpa: Vec<String>,
    c_payer_bank: Vec<String>,
    c_payer_account: Vec<String>,
    c_payee_bank: Vec<String>,
    c_payee_account: Vec<String>,
    c_amount: Vec<i64>,
    c_note: Vec<Option<String>>,
    c_status: Vec<&'static str>,
    c_saga: Vec<String>,
    c_state: Vec<&'static str>,
    c_op: Vec<Option<String>>,
    c_reason_code: Vec<Option<String>>,
    c_reason_detail: Vec<Option<String>>,
    c_event: Vec<String>,
    c_type: Vec<&'static str>,
    c_merchant_ref: Vec<Option<String>>,
    c_mcc: Vec<Option<String>>,
    c_original: Vec<Option<Uuid>>,
    c_collect: Vec<Option<Uuid>>,
    c_client: Vec<String>,
    // checkpoints
    u_txn: Vec<Uuid>,
    u_expected: Vec<i32>,
    u_saga: Vec<String>,
    u_status: Vec<&'static str>,
    u_reason_code: Vec<Option<String>>,
    u_reason_detail: Vec<Option<String>>,
    u_state: Vec<&'static str>,
    u_op: Vec<Option<String>>,
    u_detail: Vec<Option<String>>,
    u_event: Vec<String>,
    // merchant payments received
    m_id: Vec<Uuid>,
    m_amount: Vec<i64>,
}

/// The saga as its JSON text (`transactions.saga`).
fn saga_text(saga: &crate::saga::Saga) -> String {
    serde_json::to_string(saga).unwrap_or_else(|_| "null".into())
}

impl Columns {
    /// An empty batch of the writer of node `owner`.
    pub fn owned_by(owner: Uuid) -> Columns {
        Columns {
            owner,
            ..Columns::default()
        }
    }

    pub fn create(&mut self, new: &NewTxn) {
        let (saga, req) = (&new.saga, &new.request);
        let (code, detail) = reason_columns(saga);
        let label = saga.created_label();
        self.c_txn.push(saga.txn_id);
        self.c_key.push(req.idempotency_key.clone());
        self.c_payer_vpa.push(req.payer_vpa.as_str().to_string());
        self.c_payee_vpa.push(req.payee_vpa.as_str().to_string());
        self.c_payer_bank.push(saga.payer.bank.clone());
        self.c_payer_account.push(saga.payer.account.clone());
        self.c_payee_bank.push(saga.payee.bank.clone());
        self.c_payee_account.push(saga.payee.account.clone());
        self.c_amount.push(req.amount.0);
        self.c_note.push(req.note.clone());
        self.c_status.push(saga.status().as_str());
        self.c_saga.push(saga_text(saga));
        self.c_state.push(label);
        self.c_op.push(saga.current_op_id());
        self.c_reason_code.push(code);
        self.c_reason_detail.push(detail);
        self.c_event.push(event_type(label));
        self.c_type.push(req.kind.as_str());
        self.c_merchant_ref.push(req.merchant_ref.clone());
        self.c_mcc.push(new.mcc.clone());
        self.c_original.push(req.original_txn_id);
        self.c_collect.push(req.collect_id);
        self.c_client.push(req.client_id.clone());
    }

    pub fn checkpoint(&mut self, w: &CheckpointWrite) {
        let (code, detail) = reason_columns(&w.saga);
        self.u_txn.push(w.saga.txn_id);
        self.u_expected.push(w.expected_version);
        self.u_saga.push(saga_text(&w.saga));
        self.u_status.push(w.saga.status().as_str());
        self.u_reason_code.push(code);
        self.u_reason_detail.push(detail);
        self.u_state.push(w.step.state);
        self.u_op.push(w.step.op_id.clone());
        self.u_detail.push(w.step.detail.clone());
        self.u_event.push(event_type(w.step.state));
    }

    /// A merchant payment received (`POST /payments`), once per correlationId.
    pub fn merchant_payment(&mut self, correlation_id: Uuid, amount_cents: i64) {
        self.m_id.push(correlation_id);
        self.m_amount.push(amount_cents);
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 36] {
        [
            &self.c_txn,
            &self.c_key,
            &self.c_payer_vpa,
            &self.c_payee_vpa,
            &self.c_payer_bank,
            &self.c_payer_account,
            &self.c_payee_bank,
            &self.c_payee_account,
            &self.c_amount,
            &self.c_note,
            &self.c_status,
            &self.c_saga,
            &self.c_state,
            &self.c_op,
            &self.c_reason_code,
            &self.c_reason_detail,
            &self.c_event,
            &self.u_txn,
            &self.u_expected,
            &self.u_saga,
            &self.u_status,
            &self.u_reason_code,
            &self.u_reason_detail,
            &self.u_state,
            &self.u_op,
            &self.u_detail,
            &self.u_event,
            &self.m_id,
            &self.m_amount,
            &self.owner,
            &self.c_type,
            &self.c_merchant_ref,
            &self.c_mcc,
            &self.c_original,
            &self.c_collect,
            &self.c_client,
        ]
    }
}

/// What one committed batch did.
#[derive(Debug, Default)]
pub struct Written {
    /// Creates that inserted their row (the others met an existing key).
    pub created: Vec<Uuid>,
    /// Checkpoints whose version matched (the others were stale).
    pub updated: Vec<Uuid>,
    /// Merchant payments inserted (the others were received before).
    pub received: Vec<Uuid>,
}

/// Runs the statement: when it returns `Ok`, the whole batch is durable.
pub async fn write(
    client: &Client,
    statement: &tokio_postgres::Statement,
    columns: &Columns,
) -> Result<Written, tokio_postgres::Error> {
    let rows = client.query(statement, &columns.params()).await?;
    let mut written = Written::default();
    for row in rows {
        let id: Uuid = row.get(1);
        match row.get::<_, &str>(0) {
            "c" => written.created.push(id),
            "u" => written.updated.push(id),
            _ => written.received.push(id),
        }
    }
    Ok(written)
}
