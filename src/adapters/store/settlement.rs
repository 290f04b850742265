//! The settlement side of the store: windows (close, finish, reads), their
//! positions, the ledger's balances, a window's report lines, and the
//! settlement outbox (events that are not a transaction's).
//!
//! Journals are written by the group-commit statement (`batch`) only; this
//! module never writes one. A window is the journal-id range
//! `(after_journal_id, last_journal_id]`:
//! - **Close** is one short transaction: `LOCK TABLE ledger_journals IN SHARE
//!   MODE` waits for every transaction that is inserting journals and holds
//!   new inserts back until COMMIT; `max(id)` is then the window's last
//!   journal, the window turns CLOSED (`WHERE status = 'OPEN'`: one closer
//!   wins, on any node), the next one opens after it, and its
//!   reconciliation is queued. A journal committed later gets a larger id
//!   (the sequence is CACHE 1), so it belongs to the next window: no journal
//!   is in two windows or none.
//! - **Finish** computes the positions from the now immutable range, writes
//!   them and the `settlement.window_closed` event once (`positions_at`),
//!   under the window's row lock: any node may do it, after a crash too.
//!
//! What it does not do: decide when to close (`settlement::ticker`, the
//! admin handler), or format money (the API does).

use super::{Store, StoreError};
use crate::domain::Paise;
use crate::settlement::{Position, WindowClosedEvent};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// Longest a close waits for in-flight journal writers before giving up (it
/// is retried): new payments queue behind it meanwhile.
const CLOSE_LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// One settlement window as stored.
#[derive(Debug, Clone)]
pub struct WindowRow {
    pub window_id: i64,
    pub open: bool,
    pub opened_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub close_requested: bool,
    pub after_journal_id: i64,
    pub last_journal_id: Option<i64>,
    /// Its positions are written (only ever for a closed window).
    pub finished: bool,
}

/// The open window and the database's clock now.
#[derive(Debug, Clone)]
pub struct OpenWindow {
    pub window: WindowRow,
    pub db_now: DateTime<Utc>,
}

/// A window's totals and positions.
#[derive(Debug, Clone)]
pub struct Netting {
    pub txn_count: i64,
    pub gross: Paise,
    pub positions: Vec<Position>,
}

/// One line of a bank's report: its side of one payment.
#[derive(Debug, Clone)]
pub struct ReportLine {
    pub journal_id: i64,
    pub txn_id: uuid::Uuid,
    pub txn_type: String,
    /// `true`: this bank pays (DEBIT).
    pub debit: bool,
    pub amount: Paise,
    pub counterparty_bank: String,
    pub settled_at: DateTime<Utc>,
}

/// A settlement event waiting for RabbitMQ.
#[derive(Debug, Clone)]
pub struct SideEvent {
    pub id: i64,
    pub event_id: String,
    pub event_type: String,
    pub routing_key: String,
    pub body: serde_json::Value,
}

const WINDOW_COLUMNS: &str = "window_id, status = 'OPEN', opened_at, closed_at,
    close_requested_at IS NOT NULL, after_journal_id, last_journal_id, positions_at IS NOT NULL";

fn window_row(r: &tokio_postgres::Row) -> WindowRow {
    WindowRow {
        window_id: r.get(0),
        open: r.get(1),
        opened_at: r.get(2),
        closed_at: r.get(3),
        close_requested: r.get(4),
        after_journal_id: r.get(5),
        last_journal_id: r.get(6),
        finished: r.get(7),
    }
}

/// Positions of the journals in `(after, last]` (`last` none: to the end).
const NETTING: &str = "
SELECT bank_code,
       coalesce(sum(amount_paise) FILTER (WHERE direction = 'DEBIT'), 0)::int8,
       coalesce(sum(amount_paise) FILTER (WHERE direction = 'CREDIT'), 0)::int8,
       count(DISTINCT journal_id)
FROM ledger_postings
WHERE journal_id > $1 AND ($2::int8 IS NULL OR journal_id <= $2)
GROUP BY bank_code ORDER BY bank_code";

const TOTALS: &str = "
SELECT count(*), coalesce(sum(amount_paise), 0)::int8 FROM ledger_journals
WHERE id > $1 AND ($2::int8 IS NULL OR id <= $2)";

fn position(r: &tokio_postgres::Row) -> Position {
    Position {
        bank_code: r.get(0),
        debits: Paise(r.get(1)),
        credits: Paise(r.get(2)),
        txn_count: r.get(3),
    }
}

impl Store {
    /// The open window (there is always exactly one) and the database's now.
    pub async fn open_window(&self) -> Result<OpenWindow, StoreError> {
        let client = self.pool.get().await?;
        let sql =
            format!("SELECT {WINDOW_COLUMNS}, now() FROM settlement_windows WHERE status = 'OPEN'");
        let row = client.query_one(&sql, &[]).await?;
        Ok(OpenWindow {
            window: window_row(&row),
            db_now: row.get(8),
        })
    }

    /// Records an operator's close of the open window, durably, before it
    /// runs; returns that window.
    pub async fn request_close(&self) -> Result<i64, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                "UPDATE settlement_windows SET close_requested_at = coalesce(close_requested_at, now())
                 WHERE status = 'OPEN' RETURNING window_id",
                &[],
            )
            .await?;
        Ok(row.get(0))
    }

    /// Closes window `window_id` if it is still open, opens the next and
    /// queues its reconciliation, all in one transaction, audited as `actor`.
    /// `false`: it was closed already (by another node or an earlier call).
    pub async fn close_window(&self, window_id: i64, actor: &str) -> Result<bool, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.batch_execute(&format!(
            "SET LOCAL lock_timeout = '{}ms'; LOCK TABLE ledger_journals IN SHARE MODE",
            CLOSE_LOCK_TIMEOUT.as_millis()
        ))
        .await?;
        let last: i64 = tx
            .query_one(
                "SELECT coalesce(max(id), 0)::int8 FROM ledger_journals",
                &[],
            )
            .await?
            .get(0);
        let closed = tx
            .query_opt(
                "UPDATE settlement_windows
                 SET status = 'CLOSED', closed_at = now(), closed_by = $3,
                     last_journal_id = greatest($2, after_journal_id)
                 WHERE window_id = $1 AND status = 'OPEN'
                 RETURNING last_journal_id",
                &[&window_id, &last, &actor],
            )
            .await?;
        let Some(closed) = closed else {
            tx.rollback().await?;
            return Ok(false);
        };
        let last: i64 = closed.get(0);
        tx.execute(
            "INSERT INTO settlement_windows (window_id, status, after_journal_id) VALUES ($1, 'OPEN', $2)",
            &[&(window_id + 1), &last],
        )
        .await?;
        tx.execute(
            "INSERT INTO recon_runs (window_id, status) VALUES ($1, 'PENDING') ON CONFLICT DO NOTHING",
            &[&window_id],
        )
        .await?;
        tx.execute(
            "INSERT INTO audit_log (actor, action, target, before, after)
             VALUES ($1, 'settlement.close', $2, '{\"status\":\"OPEN\"}'::jsonb,
                     jsonb_build_object('status', 'CLOSED', 'last_journal_id', $3::int8,
                                        'opened', $4::int8))",
            &[&actor, &window_id.to_string(), &last, &(window_id + 1)],
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Closed windows whose positions are not written yet (a crash between
    /// the close and its finish), oldest first.
    pub async fn unfinished_windows(&self) -> Result<Vec<i64>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT window_id FROM settlement_windows
                 WHERE status = 'CLOSED' AND positions_at IS NULL ORDER BY window_id LIMIT 100",
                &[],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Writes a closed window's positions, totals and `settlement.window_closed`
    /// event, once: `None` when it was finished already (or is not closed).
    pub async fn finish_window(&self, window_id: i64) -> Result<Option<Netting>, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let sql = format!(
            "SELECT {WINDOW_COLUMNS} FROM settlement_windows
             WHERE window_id = $1 AND status = 'CLOSED' AND positions_at IS NULL FOR UPDATE"
        );
        let Some(row) = tx.query_opt(&sql, &[&window_id]).await? else {
            return Ok(None);
        };
        let w = window_row(&row);
        let range: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
            [&w.after_journal_id, &w.last_journal_id];
        let positions: Vec<Position> = tx
            .query(NETTING, &range)
            .await?
            .iter()
            .map(position)
            .collect();
        let totals = tx.query_one(TOTALS, &range).await?;
        let netting = Netting {
            txn_count: totals.get(0),
            gross: Paise(totals.get(1)),
            positions,
        };
        for p in &netting.positions {
            tx.execute(
                "INSERT INTO settlement_positions (window_id, bank_code, debits_paise, credits_paise, txn_count)
                 VALUES ($1, $2, $3, $4, $5)",
                &[&window_id, &p.bank_code, &p.debits.0, &p.credits.0, &p.txn_count],
            )
            .await?;
        }
        let closed_at = w.closed_at.unwrap_or_else(Utc::now);
        tx.execute(
            "UPDATE settlement_windows SET positions_at = now(), txn_count = $2, gross_paise = $3
             WHERE window_id = $1",
            &[&window_id, &netting.txn_count, &netting.gross.0],
        )
        .await?;
        let event = WindowClosedEvent::new(window_id, w.opened_at, closed_at, &netting);
        insert_side_event(
            &tx,
            &event.event_id(),
            "settlement.window_closed",
            &event.routing_key(),
            &event.to_json(),
        )
        .await?;
        tx.commit().await?;
        Ok(Some(netting))
    }

    /// Windows, newest first: at most `limit`, older than `before` if given.
    pub async fn windows(
        &self,
        limit: i64,
        before: Option<i64>,
    ) -> Result<Vec<WindowRow>, StoreError> {
        let client = self.pool.get().await?;
        let sql = format!(
            "SELECT {WINDOW_COLUMNS} FROM settlement_windows
             WHERE $2::int8 IS NULL OR window_id < $2 ORDER BY window_id DESC LIMIT $1"
        );
        let rows = client.query(&sql, &[&limit, &before]).await?;
        Ok(rows.iter().map(window_row).collect())
    }

    pub async fn window(&self, window_id: i64) -> Result<Option<WindowRow>, StoreError> {
        let client = self.pool.get().await?;
        let sql = format!("SELECT {WINDOW_COLUMNS} FROM settlement_windows WHERE window_id = $1");
        Ok(client
            .query_opt(&sql, &[&window_id])
            .await?
            .as_ref()
            .map(window_row))
    }

    /// A window's totals and positions: as written for a finished window,
    /// else computed from its range (the open window: so far).
    pub async fn netting(&self, w: &WindowRow) -> Result<Netting, StoreError> {
        let client = self.pool.get().await?;
        if w.finished {
            let totals = client
                .query_one(
                    "SELECT coalesce(txn_count, 0), coalesce(gross_paise, 0) FROM settlement_windows WHERE window_id = $1",
                    &[&w.window_id],
                )
                .await?;
            let rows = client
                .query(
                    "SELECT bank_code, debits_paise, credits_paise, txn_count FROM settlement_positions
                     WHERE window_id = $1 ORDER BY bank_code",
                    &[&w.window_id],
                )
                .await?;
            return Ok(Netting {
                txn_count: totals.get(0),
                gross: Paise(totals.get(1)),
                positions: rows.iter().map(position).collect(),
            });
        }
        let range: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
            [&w.after_journal_id, &w.last_journal_id];
        let positions = client
            .query(NETTING, &range)
            .await?
            .iter()
            .map(position)
            .collect();
        let totals = client.query_one(TOTALS, &range).await?;
        Ok(Netting {
            txn_count: totals.get(0),
            gross: Paise(totals.get(1)),
            positions,
        })
    }

    /// `bank`'s report lines of the (up to `limit`) journals of window `w`
    /// after journal `after` that it takes part in (keyset paging), in
    /// journal order; a payment within one bank gives two lines.
    pub async fn report_page(
        &self,
        w: &WindowRow,
        bank: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<ReportLine>, StoreError> {
        let client = self.pool.get().await?;
        let from = after.max(w.after_journal_id);
        let rows = client
            .query(
                "SELECT id, txn_id, type, payer_bank, payee_bank, amount_paise, posted_at
                 FROM ledger_journals
                 WHERE id > $1 AND ($2::int8 IS NULL OR id <= $2)
                   AND (payer_bank = $3 OR payee_bank = $3)
                 ORDER BY id LIMIT $4",
                &[&from, &w.last_journal_id, &bank, &limit],
            )
            .await?;
        let mut lines = Vec::with_capacity(rows.len());
        for r in &rows {
            let (payer, payee): (String, String) = (r.get(3), r.get(4));
            for (debit, counterparty) in [(true, &payee), (false, &payer)] {
                let side = if debit { &payer } else { &payee };
                if side == bank {
                    lines.push(ReportLine {
                        journal_id: r.get(0),
                        txn_id: r.get(1),
                        txn_type: r.get(2),
                        debit,
                        amount: Paise(r.get(5)),
                        counterparty_bank: counterparty.clone(),
                        settled_at: r.get(6),
                    });
                }
            }
        }
        Ok(lines)
    }

    /// Every bank's ledger balance (credits − debits of all postings): the
    /// finished windows' positions, plus the postings after them.
    pub async fn ledger_balances(&self) -> Result<Vec<(String, Paise)>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "WITH mark AS (
                     SELECT coalesce(min(after_journal_id), 0) AS upto FROM settlement_windows
                     WHERE positions_at IS NULL
                 ), settled AS (
                     SELECT p.bank_code, p.credits_paise - p.debits_paise AS balance
                     FROM settlement_positions p JOIN settlement_windows w USING (window_id), mark
                     WHERE w.last_journal_id <= mark.upto
                 ), recent AS (
                     SELECT bank_code,
                            CASE direction WHEN 'CREDIT' THEN amount_paise ELSE -amount_paise END AS balance
                     FROM ledger_postings, mark WHERE journal_id > mark.upto
                 )
                 SELECT bank_code, sum(balance)::int8 FROM
                     (SELECT * FROM settled UNION ALL SELECT * FROM recent) b
                 GROUP BY bank_code ORDER BY bank_code",
                &[],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), Paise(r.get(1)))).collect())
    }

    /// The oldest `limit` settlement events waiting for RabbitMQ.
    pub async fn side_events(&self, limit: i64) -> Result<Vec<SideEvent>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT id, event_id, event_type, routing_key, body FROM settlement_outbox
                 ORDER BY id LIMIT $1",
                &[&limit],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| SideEvent {
                id: r.get(0),
                event_id: r.get(1),
                event_type: r.get(2),
                routing_key: r.get(3),
                body: r.get(4),
            })
            .collect())
    }

    /// Forgets settlement events RabbitMQ confirmed.
    pub async fn side_events_delete(&self, ids: &[i64]) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .execute("DELETE FROM settlement_outbox WHERE id = ANY($1)", &[&ids])
            .await?)
    }
}

/// Queues a settlement event in the transaction that makes its fact (once
/// per `event_id`).
pub(super) async fn insert_side_event(
    tx: &deadpool_postgres::Transaction<'_>,
    event_id: &str,
    event_type: &str,
    routing_key: &str,
    body: &serde_json::Value,
) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "INSERT INTO settlement_outbox (event_id, event_type, routing_key, body)
         VALUES ($1, $2, $3, $4) ON CONFLICT (event_id) DO NOTHING",
        &[&event_id, &event_type, &routing_key, body],
    )
    .await
    .map(|_| ())
}
