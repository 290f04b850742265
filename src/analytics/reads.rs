//! The analytics API's reads: summary rows of a range of IST days and the
//! ingest's counters. Read-only; rows a day has none of come back as zeros
//! (daily, merchant) so a client sees every day it asked for.

use super::day::DayRange;
use super::store::AnalyticsStore;
use super::summary::Counts;
use crate::adapters::pg::DbError;
use chrono::{DateTime, NaiveDate, Utc};
use std::collections::HashMap;

const COLS: &str =
    "total, success, failed, reversed, pending, amount_success_paise, amount_total_paise";

fn counts(r: &tokio_postgres::Row, at: usize) -> Counts {
    Counts {
        total: r.get(at),
        success: r.get(at + 1),
        failed: r.get(at + 2),
        reversed: r.get(at + 3),
        pending: r.get(at + 4),
        amount_success: r.get(at + 5),
        amount_total: r.get(at + 6),
        refunded: 0,
    }
}

/// The ingest's counters (`GET /v1/analytics/status`).
#[derive(Debug, Clone)]
pub struct IngestCounters {
    pub events_ingested: i64,
    pub events_rejected: i64,
    pub duplicates: i64,
    pub last_batch_at: Option<DateTime<Utc>>,
    pub lag_ms: i64,
}

impl AnalyticsStore {
    /// One row per day of the range, in order.
    pub async fn daily(&self, range: DayRange) -> Result<Vec<(NaiveDate, Counts)>, DbError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &format!("SELECT day, {COLS} FROM analytics_daily WHERE day BETWEEN $1 AND $2"),
                &[&range.from, &range.to],
            )
            .await?;
        let mut found: HashMap<NaiveDate, Counts> =
            rows.iter().map(|r| (r.get(0), counts(r, 1))).collect();
        Ok(range
            .days()
            .map(|d| (d, found.remove(&d).unwrap_or_default()))
            .collect())
    }

    /// One row per day of the range for one merchant VPA (lower-cased).
    pub async fn merchant_daily(
        &self,
        vpa: &str,
        range: DayRange,
    ) -> Result<Vec<(NaiveDate, Counts)>, DbError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT day, {COLS}, refunded_paise FROM analytics_merchant_daily
                     WHERE merchant_vpa = $1 AND day BETWEEN $2 AND $3"
                ),
                &[&vpa, &range.from, &range.to],
            )
            .await?;
        let mut found: HashMap<NaiveDate, Counts> = rows
            .iter()
            .map(|r| {
                let mut c = counts(r, 1);
                c.refunded = r.get(8);
                (r.get(0), c)
            })
            .collect();
        Ok(range
            .days()
            .map(|d| (d, found.remove(&d).unwrap_or_default()))
            .collect())
    }

    /// Every (day, payer bank, payee bank) with transactions in the range.
    pub async fn bank_daily(
        &self,
        range: DayRange,
    ) -> Result<Vec<(NaiveDate, String, String, Counts)>, DbError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT day, payer_bank, payee_bank, {COLS} FROM analytics_bank_daily
                     WHERE day BETWEEN $1 AND $2 AND total <> 0
                     ORDER BY day, payer_bank, payee_bank"
                ),
                &[&range.from, &range.to],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), counts(r, 3)))
            .collect())
    }

    pub async fn counters(&self) -> Result<IngestCounters, DbError> {
        let client = self.pool.get().await?;
        let r = client
            .query_one(
                "SELECT events_ingested, events_rejected, duplicates, last_batch_at, lag_ms
                 FROM analytics_state",
                &[],
            )
            .await?;
        Ok(IngestCounters {
            events_ingested: r.get(0),
            events_rejected: r.get(1),
            duplicates: r.get(2),
            last_batch_at: r.get(3),
            lag_ms: r.get(4),
        })
    }
}
