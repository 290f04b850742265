//! The reconciliation side of the store: runs, per-bank feed cursors, the
//! ops read from the feeds (`recon_ops`), and their judging in SQL by batch.
//!
//! Memory stays bounded whatever a window holds: a feed page is staged with
//! its cursor in one transaction (`stage_page`), ops are judged in batches
//! of at most `limit` (`judge_batch`, keyset over `(bank_code, seq)`), and
//! missing ops are found by an anti-join over the window's journals, again
//! by batch (`missing_at_bank`). Nothing is read into the switch but counts.
//!
//! How an op is judged (`JUDGE`): its `op_id` names the transaction and the
//! step (`<txn>:debit`, `<txn>:credit`, `…:rev`); an op the switch did not
//! issue (no such transaction, another bank, another kind) is
//! `MISSING_AT_SWITCH` at once; an op of a transaction that was not terminal
//! at the run's `as_of` is left unjudged (carried to the next run); else the
//! amount must match, and a debit or credit must have moved money (applied
//! and not undone by an applied reverse) exactly when the transaction is
//! `SUCCESS`.

use super::{Store, StoreError};
use crate::adapters::bank_api::FeedEntry;
use chrono::{DateTime, Utc};

/// One mismatch as stored.
#[derive(Debug, Clone)]
pub struct MismatchRow {
    pub kind: String,
    pub bank_code: String,
    pub op_id: String,
    pub txn_id: Option<String>,
    pub detail: String,
}

/// A window's reconciliation: its run and its counts.
#[derive(Debug, Clone)]
pub struct RunRow {
    pub window_id: i64,
    pub done: bool,
    pub matched: i64,
    pub mismatch_count: i64,
}

/// What one batch of judging did.
#[derive(Debug, Clone, Default)]
pub struct Judged {
    /// Ops the batch looked at (fewer than its limit: the last batch).
    pub seen: i64,
    pub matched: i64,
    pub mismatched: i64,
    /// Keyset position after the batch (`None`: it saw nothing).
    pub last: Option<(String, i64)>,
}

const JUDGE: &str = "
WITH b AS (
    SELECT o.bank_code, o.seq, o.op_id, o.kind, o.status, o.amount_paise, o.txn_id AS feed_txn,
           CASE WHEN o.op_id ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}:(debit|credit)(:rev)?$'
                THEN substr(o.op_id, 1, 36)::uuid END AS tid,
           substr(o.op_id, 38) AS step
    FROM recon_ops o
    WHERE o.verdict IS NULL AND (o.bank_code, o.seq) > ($2, $3)
    ORDER BY o.bank_code, o.seq LIMIT $4
), j AS (
    SELECT b.*, t.status AS t_status, t.amount_paise AS t_amount,
           CASE WHEN b.step LIKE 'debit%' THEN t.payer_bank ELSE t.payee_bank END AS t_bank,
           CASE b.step WHEN 'debit' THEN 'DEBIT' WHEN 'credit' THEN 'CREDIT' ELSE 'REVERSE' END AS t_kind,
           (t.status <> 'PENDING' AND t.updated_at <= $5) AS settled,
           (b.status = 'APPLIED' AND NOT EXISTS (
               SELECT 1 FROM recon_ops r
               WHERE r.original_op_id = b.op_id AND r.bank_code = b.bank_code
                 AND r.kind = 'REVERSE' AND r.status = 'APPLIED')) AS moved
    FROM b LEFT JOIN transactions t ON t.txn_id = b.tid
), v AS (
    SELECT j.*, CASE
        WHEN t_status IS NULL OR t_bank <> bank_code OR kind <> t_kind THEN 'MISSING_AT_SWITCH'
        WHEN NOT settled THEN NULL
        WHEN amount_paise <> t_amount THEN 'AMOUNT_MISMATCH'
        WHEN kind = 'REVERSE' THEN
            CASE WHEN t_status = 'SUCCESS' AND status = 'APPLIED' THEN 'STATUS_MISMATCH' ELSE 'MATCHED' END
        WHEN moved <> (t_status = 'SUCCESS') THEN 'STATUS_MISMATCH'
        ELSE 'MATCHED' END AS verdict
    FROM j
), upd AS (
    UPDATE recon_ops o SET verdict = v.verdict, judged_in = $1
    FROM v WHERE o.bank_code = v.bank_code AND o.seq = v.seq AND v.verdict IS NOT NULL
), mis AS (
    INSERT INTO recon_mismatches (window_id, kind, bank_code, op_id, txn_id, detail)
    SELECT $1, verdict, bank_code, op_id, coalesce(tid::text, feed_txn),
           CASE verdict
               WHEN 'MISSING_AT_SWITCH' THEN CASE
                   WHEN t_status IS NULL THEN 'the switch issued no such op: ' || kind || ' ' || status || ' of ' || amount_paise || ' paise'
                   ELSE 'the switch sends this op to ' || t_bank || ' as a ' || t_kind || ', not to ' || bank_code || ' as a ' || kind END
               WHEN 'AMOUNT_MISMATCH' THEN 'the bank has ' || amount_paise || ' paise, the switch ' || t_amount
               ELSE 'the bank''s ' || kind || ' is ' || status || CASE WHEN moved THEN ' (money moved)' ELSE ' (no money moved)' END
                    || ', the switch holds the payment ' || t_status END
    FROM v WHERE verdict IS NOT NULL AND verdict <> 'MATCHED'
)
SELECT (SELECT count(*) FROM v),
       (SELECT count(*) FROM v WHERE verdict = 'MATCHED'),
       (SELECT count(*) FROM v WHERE verdict <> 'MATCHED'),
       (SELECT bank_code FROM b ORDER BY bank_code DESC, seq DESC LIMIT 1),
       (SELECT seq FROM b ORDER BY bank_code DESC, seq DESC LIMIT 1)";

const MISSING_AT_BANK: &str = "
WITH j AS (
    SELECT id, txn_id, payer_bank, payee_bank FROM ledger_journals
    WHERE id > $2 AND id <= $3 ORDER BY id LIMIT $4
), legs AS (
    SELECT txn_id, payer_bank AS bank, txn_id::text || ':debit' AS op_id FROM j
    UNION ALL SELECT txn_id, payee_bank, txn_id::text || ':credit' FROM j
), miss AS (
    INSERT INTO recon_mismatches (window_id, kind, bank_code, op_id, txn_id, detail)
    SELECT $1, 'MISSING_AT_BANK', l.bank, l.op_id, l.txn_id::text,
           'the payment settled in this window; the bank''s feed has no such op'
    FROM legs l
    WHERE NOT EXISTS (SELECT 1 FROM recon_ops o WHERE o.op_id = l.op_id AND o.bank_code = l.bank)
    RETURNING 1
)
SELECT (SELECT max(id) FROM j), (SELECT count(*) FROM j), (SELECT count(*) FROM miss)";

impl Store {
    /// The oldest window whose reconciliation is not done.
    pub async fn next_recon_run(&self) -> Result<Option<i64>, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT window_id FROM recon_runs WHERE status <> 'DONE' ORDER BY window_id LIMIT 1",
                &[],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Queues a (re-)run of a closed window's reconciliation; `false` when
    /// the window is not closed (or does not exist).
    pub async fn request_recon(&self, window_id: i64, actor: &str) -> Result<bool, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let n = tx
            .execute(
                "INSERT INTO recon_runs (window_id, status)
                 SELECT window_id, 'PENDING' FROM settlement_windows WHERE window_id = $1 AND status = 'CLOSED'
                 ON CONFLICT (window_id) DO UPDATE SET status = 'PENDING', requested_at = now()",
                &[&window_id],
            )
            .await?;
        if n == 1 {
            tx.execute(
                "INSERT INTO audit_log (actor, action, target) VALUES ($1, 'reconciliation.run', $2)",
                &[&actor, &window_id.to_string()],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Marks a run started; its `as_of` (the database's now): transactions
    /// terminal by then are judged, later ones carried.
    pub async fn start_recon(&self, window_id: i64) -> Result<DateTime<Utc>, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                "UPDATE recon_runs SET status = 'RUNNING', as_of = now() WHERE window_id = $1 RETURNING as_of",
                &[&window_id],
            )
            .await?;
        Ok(row.get(0))
    }

    /// Where `bank`'s feed was read up to.
    pub async fn recon_cursor(&self, bank: &str) -> Result<i64, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT after_seq FROM recon_cursors WHERE bank_code = $1",
                &[&bank],
            )
            .await?;
        Ok(row.map_or(0, |r| r.get(0)))
    }

    /// Stages one feed page and moves the bank's cursor past it, in one
    /// transaction (a page staged twice changes nothing).
    pub async fn stage_page(
        &self,
        bank: &str,
        ops: &[FeedEntry],
        next_after_seq: i64,
    ) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let seq: Vec<i64> = ops.iter().map(|o| o.seq).collect();
        let op_id: Vec<&str> = ops.iter().map(|o| o.op_id.as_str()).collect();
        let kind: Vec<String> = ops.iter().map(|o| enum_text(&o.kind)).collect();
        let status: Vec<String> = ops.iter().map(|o| enum_text(&o.status)).collect();
        let amount: Vec<i64> = ops.iter().map(|o| o.amount_paise).collect();
        let original: Vec<Option<&str>> = ops.iter().map(|o| o.original_op_id.as_deref()).collect();
        let txn: Vec<Option<&str>> = ops.iter().map(|o| o.txn_id.as_deref()).collect();
        tx.execute(
            "INSERT INTO recon_ops (bank_code, seq, op_id, kind, status, amount_paise, original_op_id, txn_id)
             SELECT $1, * FROM unnest($2::int8[], $3::text[], $4::text[], $5::text[], $6::int8[], $7::text[], $8::text[])
             ON CONFLICT DO NOTHING",
            &[&bank, &seq, &op_id, &kind, &status, &amount, &original, &txn],
        )
        .await?;
        tx.execute(
            "INSERT INTO recon_cursors (bank_code, after_seq) VALUES ($1, $2)
             ON CONFLICT (bank_code) DO UPDATE SET after_seq = greatest(recon_cursors.after_seq, EXCLUDED.after_seq)",
            &[&bank, &next_after_seq],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Judges up to `limit` unjudged ops after `from` (keyset), for window
    /// `window_id`'s run, writing verdicts and mismatches in one statement.
    pub async fn judge_batch(
        &self,
        window_id: i64,
        as_of: DateTime<Utc>,
        from: (String, i64),
        limit: i64,
    ) -> Result<Judged, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_one(JUDGE, &[&window_id, &from.0, &from.1, &limit, &as_of])
            .await?;
        let bank: Option<String> = row.get(3);
        let seq: Option<i64> = row.get(4);
        Ok(Judged {
            seen: row.get(0),
            matched: row.get(1),
            mismatched: row.get(2),
            last: bank.zip(seq),
        })
    }

    /// Forgets a window's `MISSING_AT_BANK` findings (before they are
    /// looked for again).
    pub async fn clear_missing_at_bank(&self, window_id: i64) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "DELETE FROM recon_mismatches WHERE window_id = $1 AND kind = 'MISSING_AT_BANK'",
                &[&window_id],
            )
            .await?;
        Ok(())
    }

    /// Looks for the debit and credit of up to `limit` journals of the
    /// window after journal `after` in the staged feeds; `(last journal id,
    /// journals seen, missing found)`.
    pub async fn missing_at_bank(
        &self,
        window_id: i64,
        after: i64,
        last: i64,
        limit: i64,
    ) -> Result<(Option<i64>, i64, i64), StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_one(MISSING_AT_BANK, &[&window_id, &after, &last, &limit])
            .await?;
        Ok((row.get(0), row.get(1), row.get(2)))
    }

    /// Ends a run: its counts, and a `settlement.mismatch` event when it
    /// found any (in the same transaction); the mismatches by kind.
    pub async fn finish_recon(
        &self,
        window_id: i64,
    ) -> Result<(RunRow, Vec<(String, i64)>), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let row = tx
            .query_one(
                "SELECT (SELECT count(*) FROM recon_ops WHERE judged_in = $1 AND verdict = 'MATCHED'),
                        (SELECT count(*) FROM recon_mismatches WHERE window_id = $1)",
                &[&window_id],
            )
            .await?;
        let (matched, mismatches): (i64, i64) = (row.get(0), row.get(1));
        tx.execute(
            "UPDATE recon_runs SET status = 'DONE', finished_at = now(), matched = $2, compared = $2::int8 + $3::int8
             WHERE window_id = $1",
            &[&window_id, &matched, &mismatches],
        )
        .await?;
        let kinds: Vec<(String, i64)> = tx
            .query(
                "SELECT kind, count(*) FROM recon_mismatches WHERE window_id = $1 GROUP BY kind ORDER BY kind",
                &[&window_id],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        if mismatches > 0 {
            let by_kind: serde_json::Map<String, serde_json::Value> = kinds
                .iter()
                .map(|(k, n)| (k.clone(), (*n).into()))
                .collect();
            let event_id = format!(
                "settlement.mismatch:{window_id}:{}",
                Utc::now().timestamp_millis()
            );
            let body = serde_json::json!({
                "event_id": event_id,
                "type": "settlement.mismatch",
                "window_id": window_id.to_string(),
                "matched": matched,
                "mismatches": mismatches,
                "by_kind": by_kind,
                "mismatch_ppm": ppm(mismatches, matched + mismatches),
            });
            super::settlement::insert_side_event(
                &tx,
                &event_id,
                "settlement.mismatch",
                &format!("settlement.mismatch.{window_id}"),
                &body,
            )
            .await?;
        }
        tx.commit().await?;
        let run = RunRow {
            window_id,
            done: true,
            matched,
            mismatch_count: mismatches,
        };
        Ok((run, kinds))
    }

    /// A window's reconciliation as it stands (`None`: never queued), with
    /// up to `limit` of its mismatches.
    pub async fn recon_result(
        &self,
        window_id: i64,
        limit: i64,
    ) -> Result<Option<(RunRow, Vec<MismatchRow>)>, StoreError> {
        let client = self.pool.get().await?;
        let Some(run) = client
            .query_opt(
                "SELECT status = 'DONE',
                        (SELECT count(*) FROM recon_ops WHERE judged_in = $1 AND verdict = 'MATCHED'),
                        (SELECT count(*) FROM recon_mismatches WHERE window_id = $1)
                 FROM recon_runs WHERE window_id = $1",
                &[&window_id],
            )
            .await?
        else {
            return Ok(None);
        };
        let rows = client
            .query(
                "SELECT kind, bank_code, op_id, txn_id, detail FROM recon_mismatches
                 WHERE window_id = $1 ORDER BY id LIMIT $2",
                &[&window_id, &limit],
            )
            .await?;
        let mismatches = rows
            .iter()
            .map(|r| MismatchRow {
                kind: r.get(0),
                bank_code: r.get(1),
                op_id: r.get(2),
                txn_id: r.get(3),
                detail: r.get(4),
            })
            .collect();
        Ok(Some((
            RunRow {
                window_id,
                done: run.get(0),
                matched: run.get(1),
                mismatch_count: run.get(2),
            },
            mismatches,
        )))
    }
}

/// Mismatches per million ops compared (0 when none were).
pub fn ppm(mismatches: i64, compared: i64) -> i64 {
    if compared <= 0 {
        0
    } else {
        mismatches.saturating_mul(1_000_000) / compared
    }
}

/// A feed enum's wire text (`APPLIED`, `DEBIT`, …).
fn enum_text<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}
