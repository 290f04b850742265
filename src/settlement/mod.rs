//! Settlement (issue 15): what banks owe each other for the payments that
//! succeeded, window by window, and whether their books agree with ours.
//!
//! Layout: this file (pure: `Position`, multilateral netting, the API's and
//! the events' shapes), `cutoffs` (pure: when windows close), `ticker` (a
//! task on every node: closes the open window at its cut-off or when an
//! operator asked, finishes closed windows), `recon` (reconciliation
//! against the banks' change feeds: one runner per database), `cli`
//! (`upi-switch settlement close|show|report|recon`, over HTTP).
//! The SQL lives in `adapters::store::{settlement, recon}`; the journals
//! themselves are written by the group-commit statement (`store::batch`).
//!
//! What this module does not do: move money, call a bank to change
//! anything, or write a journal. Reconciliation only reads bank feeds.

pub mod cli;
pub mod cutoffs;
pub mod metrics;
pub mod recon;
pub mod ticker;

use crate::domain::Paise;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One bank's side of a window: what it pays, what it receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub bank_code: String,
    /// Sum of the payments it pays (its settlement account debited).
    pub debits: Paise,
    /// Sum of the payments it receives.
    pub credits: Paise,
    /// Payments it takes part in.
    pub txn_count: i64,
}

impl Position {
    /// Credits − debits: positive, the bank receives.
    pub fn net(&self) -> Paise {
        Paise(self.credits.0 - self.debits.0)
    }
}

/// Multilateral netting of `(payer_bank, payee_bank, amount)` journals, by
/// bank code. What the SQL computes; kept here to be tested as a property.
pub fn net_positions<'a>(
    journals: impl IntoIterator<Item = (&'a str, &'a str, Paise)>,
) -> Vec<Position> {
    let mut by_bank: BTreeMap<&str, Position> = BTreeMap::new();
    for (payer, payee, amount) in journals {
        let p = bank_entry(&mut by_bank, payer);
        p.debits.0 += amount.0;
        p.txn_count += 1;
        let q = bank_entry(&mut by_bank, payee);
        q.credits.0 += amount.0;
        if payee != payer {
            q.txn_count += 1;
        }
    }
    by_bank.into_values().collect()
}

fn bank_entry<'m, 'a>(map: &'m mut BTreeMap<&'a str, Position>, bank: &'a str) -> &'m mut Position {
    map.entry(bank).or_insert_with(|| Position {
        bank_code: bank.to_string(),
        debits: Paise(0),
        credits: Paise(0),
        txn_count: 0,
    })
}

/// A position as the API and the events show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PositionView {
    pub bank_code: String,
    pub debits: String,
    pub credits: String,
    pub net: String,
    pub txn_count: i64,
}

impl From<&Position> for PositionView {
    fn from(p: &Position) -> PositionView {
        PositionView {
            bank_code: p.bank_code.clone(),
            debits: p.debits.to_rupees(),
            credits: p.credits.to_rupees(),
            net: p.net().to_rupees(),
            txn_count: p.txn_count,
        }
    }
}

/// `OPEN` or `CLOSED`.
pub fn status_text(open: bool) -> &'static str {
    if open { "OPEN" } else { "CLOSED" }
}

/// One window in `GET /v1/settlement/windows`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WindowSummary {
    pub window_id: String,
    pub status: String,
    pub opened_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
}

/// `GET /v1/settlement/windows`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WindowList {
    pub windows: Vec<WindowSummary>,
}

/// `GET /v1/settlement/windows/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WindowDetail {
    pub window_id: String,
    pub status: String,
    pub opened_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub txn_count: i64,
    pub gross: String,
    pub positions: Vec<PositionView>,
}

/// `POST /v1/admin/settlement/close`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CloseAnswer {
    pub closed: String,
    pub opened: String,
}

/// One account of `GET /v1/ledger/balances`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AccountBalance {
    pub bank_code: String,
    pub balance: String,
}

/// `GET /v1/ledger/balances`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LedgerBalances {
    pub accounts: Vec<AccountBalance>,
    pub total: String,
}

/// The `settlement.window_closed` event: a closed window and its positions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WindowClosedEvent {
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub window_id: String,
    pub opened_at: DateTime<Utc>,
    pub closed_at: DateTime<Utc>,
    pub txn_count: i64,
    pub gross: String,
    pub positions: Vec<PositionView>,
}

impl WindowClosedEvent {
    pub fn new(
        window_id: i64,
        opened_at: DateTime<Utc>,
        closed_at: DateTime<Utc>,
        netting: &crate::adapters::store::settlement::Netting,
    ) -> WindowClosedEvent {
        WindowClosedEvent {
            event_id: format!("settlement.window_closed:{window_id}"),
            event_type: "settlement.window_closed".into(),
            window_id: window_id.to_string(),
            opened_at,
            closed_at,
            txn_count: netting.txn_count,
            gross: netting.gross.to_rupees(),
            positions: netting.positions.iter().map(PositionView::from).collect(),
        }
    }

    pub fn event_id(&self) -> String {
        self.event_id.clone()
    }

    /// `settlement.window_closed.<window_id>`.
    pub fn routing_key(&self) -> String {
        format!("{}.{}", self.event_type, self.window_id)
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// splitmix64: a seeded stream, enough for a property test.
    struct Rng(u64);
    impl Rng {
        fn random_range(&mut self, r: std::ops::Range<i64>) -> i64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            r.start + (z % (r.end - r.start) as u64) as i64
        }
    }

    #[test]
    fn a_payment_within_one_bank_nets_to_zero_and_counts_once() {
        let p = net_positions([("HDFC", "HDFC", Paise(500))]);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].net(), Paise(0));
        assert_eq!(p[0].txn_count, 1);
    }

    /// Random payments and refunds across N banks: the nets sum to zero,
    /// every bank's debits and credits are its gross movements, and the
    /// debits add up to the window's gross.
    #[test]
    fn nets_sum_to_zero_and_equal_gross_movements() {
        for seed in 0..500u64 {
            let mut rng = Rng(seed);
            let banks: Vec<String> = (0..rng.random_range(1..7))
                .map(|i| format!("B{i}"))
                .collect();
            let mut journals: Vec<(String, String, Paise)> = Vec::new();
            for _ in 0..rng.random_range(0..200) {
                let payer = banks[rng.random_range(0..banks.len() as i64) as usize].clone();
                let payee = banks[rng.random_range(0..banks.len() as i64) as usize].clone();
                let amount = Paise(rng.random_range(1..10_000_000));
                // Some are refunded (partly): the refund's payer is the payee.
                if rng.random_range(0..4) == 0 {
                    let back = Paise(rng.random_range(1..amount.0 + 1));
                    journals.push((payee.clone(), payer.clone(), back));
                }
                journals.push((payer, payee, amount));
            }
            let positions = net_positions(
                journals
                    .iter()
                    .map(|(a, b, m)| (a.as_str(), b.as_str(), *m)),
            );
            let nets: i64 = positions.iter().map(|p| p.net().0).sum();
            assert_eq!(nets, 0, "seed {seed}");
            let gross: i64 = journals.iter().map(|j| j.2.0).sum();
            assert_eq!(positions.iter().map(|p| p.debits.0).sum::<i64>(), gross);
            assert_eq!(positions.iter().map(|p| p.credits.0).sum::<i64>(), gross);
            for p in &positions {
                let paid: i64 = journals
                    .iter()
                    .filter(|j| j.0 == p.bank_code)
                    .map(|j| j.2.0)
                    .sum();
                let got: i64 = journals
                    .iter()
                    .filter(|j| j.1 == p.bank_code)
                    .map(|j| j.2.0)
                    .sum();
                assert_eq!((p.debits.0, p.credits.0), (paid, got), "seed {seed}");
            }
        }
    }
}
