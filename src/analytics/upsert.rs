//! The summaries' UPSERTs: a batch's `Deltas` added to `analytics_daily`,
//! `analytics_bank_daily` and `analytics_merchant_daily`, one multi-row
//! statement per table, rows in key order. Called only inside the writing
//! transactions of `store` (under its lock); it decides nothing.

use super::summary::{Counts, Deltas};
use crate::adapters::pg::DbError;
use chrono::NaiveDate;
use deadpool_postgres::Transaction;

pub fn merge(into: &mut Deltas, from: Deltas) {
    for (k, c) in from.daily {
        into.daily.entry(k).or_default().add_all(c);
    }
    for (k, c) in from.merchant {
        into.merchant.entry(k).or_default().add_all(c);
    }
    for (k, c) in from.bank {
        into.bank.entry(k).or_default().add_all(c);
    }
}

/// The summary columns every table shares, as UPSERT increments.
const COUNTS_SET: &str = "total = s.total + EXCLUDED.total, success = s.success + EXCLUDED.success,
    failed = s.failed + EXCLUDED.failed, reversed = s.reversed + EXCLUDED.reversed,
    pending = s.pending + EXCLUDED.pending,
    amount_success_paise = s.amount_success_paise + EXCLUDED.amount_success_paise,
    amount_total_paise = s.amount_total_paise + EXCLUDED.amount_total_paise";

/// Column vectors of summary counts, in the order of `COUNTS_SET`'s table.
struct CountCols([Vec<i64>; 8]);

impl CountCols {
    fn of<'a>(counts: impl Iterator<Item = &'a Counts>) -> CountCols {
        let mut cols: [Vec<i64>; 8] = Default::default();
        for c in counts {
            let values = [
                c.total,
                c.success,
                c.failed,
                c.reversed,
                c.pending,
                c.amount_success,
                c.amount_total,
                c.refunded,
            ];
            for (col, v) in cols.iter_mut().zip(values) {
                col.push(v);
            }
        }
        CountCols(cols)
    }
}

/// `$from::int8[], …` for `n` parameters.
fn int8s(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}::int8[]"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn write_deltas(tx: &Transaction<'_>, d: &Deltas) -> Result<(), DbError> {
    const NAMES: &str =
        "total, success, failed, reversed, pending, amount_success_paise, amount_total_paise";
    if !d.daily.is_empty() {
        let days: Vec<NaiveDate> = d.daily.keys().copied().collect();
        let CountCols(c) = CountCols::of(d.daily.values());
        tx.execute(
            &format!(
                "INSERT INTO analytics_daily AS s (day, {NAMES})
                 SELECT * FROM unnest($1::date[], {})
                 ON CONFLICT (day) DO UPDATE SET {COUNTS_SET}",
                int8s(2, 7)
            ),
            &[&days, &c[0], &c[1], &c[2], &c[3], &c[4], &c[5], &c[6]],
        )
        .await?;
    }
    if !d.bank.is_empty() {
        let days: Vec<NaiveDate> = d.bank.keys().map(|k| k.0).collect();
        let payers: Vec<&str> = d.bank.keys().map(|k| k.1.as_str()).collect();
        let payees: Vec<&str> = d.bank.keys().map(|k| k.2.as_str()).collect();
        let CountCols(c) = CountCols::of(d.bank.values());
        tx.execute(
            &format!(
                "INSERT INTO analytics_bank_daily AS s (day, payer_bank, payee_bank, {NAMES})
                 SELECT * FROM unnest($1::date[], $2::text[], $3::text[], {})
                 ON CONFLICT (day, payer_bank, payee_bank) DO UPDATE SET {COUNTS_SET}",
                int8s(4, 7)
            ),
            &[
                &days, &payers, &payees, &c[0], &c[1], &c[2], &c[3], &c[4], &c[5], &c[6],
            ],
        )
        .await?;
    }
    if !d.merchant.is_empty() {
        let vpas: Vec<&str> = d.merchant.keys().map(|k| k.0.as_str()).collect();
        let days: Vec<NaiveDate> = d.merchant.keys().map(|k| k.1).collect();
        let CountCols(c) = CountCols::of(d.merchant.values());
        tx.execute(
            &format!(
                "INSERT INTO analytics_merchant_daily AS s (merchant_vpa, day, {NAMES}, refunded_paise)
                 SELECT * FROM unnest($1::text[], $2::date[], {})
                 ON CONFLICT (merchant_vpa, day) DO UPDATE SET {COUNTS_SET},
                     refunded_paise = s.refunded_paise + EXCLUDED.refunded_paise",
                int8s(3, 8)
            ),
            &[
                &vpas, &days, &c[0], &c[1], &c[2], &c[3], &c[4], &c[5], &c[6], &c[7],
            ],
        )
        .await?;
    }
    Ok(())
}
