//! The clean store's rule and the summaries' arithmetic, pure.
//!
//! A transaction is one clean row holding its latest event by `seq` (the
//! checkpoint version: strictly increasing per transaction), so duplicates
//! and late events of a lower `seq` change nothing. A summary row is the sum
//! of the contributions of the clean rows it covers; when a batch moves a
//! clean row from `old` to `new`, every summary it touches changes by
//! `contribution(new) − contribution(old)`. Applying those deltas is exact
//! in any order and any number of batches, which is what makes replays and
//! rebuilds give the same numbers.

use super::record::CleanEvent;
use chrono::{DateTime, NaiveDate, Utc};
use std::collections::BTreeMap;
use uuid::Uuid;

/// A transaction as the clean store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnState {
    pub txn_id: Uuid,
    pub day: NaiveDate,
    pub txn_type: String,
    pub status: String,
    pub seq: i32,
    pub amount_paise: i64,
    pub payer_bank: String,
    pub payee_bank: String,
    pub merchant_vpa: Option<String>,
    pub created_at: DateTime<Utc>,
    pub status_at: DateTime<Utc>,
}

impl TxnState {
    pub fn of(e: &CleanEvent) -> TxnState {
        TxnState {
            txn_id: e.txn_id,
            day: e.day,
            txn_type: e.txn_type.to_string(),
            status: e.status.to_string(),
            seq: e.seq,
            amount_paise: e.amount.0,
            payer_bank: e.payer_bank.clone(),
            payee_bank: e.payee_bank.clone(),
            merchant_vpa: e.merchant_vpa.clone(),
            created_at: e.created_at,
            status_at: e.at,
        }
    }
}

/// Folds events into the latest state: only a higher `seq` replaces.
pub fn fold<'a>(
    mut state: Option<TxnState>,
    events: impl IntoIterator<Item = &'a CleanEvent>,
) -> Option<TxnState> {
    for e in events {
        if state.as_ref().is_none_or(|s| e.seq > s.seq) {
            state = Some(TxnState::of(e));
        }
    }
    state
}

/// The counts of one summary row (amounts in paise).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub total: i64,
    pub success: i64,
    pub failed: i64,
    pub reversed: i64,
    pub pending: i64,
    pub amount_success: i64,
    pub amount_total: i64,
    /// Merchant rows only: SUCCESS refunds of its P2M payments.
    pub refunded: i64,
}

impl Counts {
    /// One transaction counted in `total` (and its status).
    fn payment(s: &TxnState) -> Counts {
        let mut c = Counts {
            total: 1,
            amount_total: s.amount_paise,
            ..Counts::default()
        };
        match s.status.as_str() {
            "SUCCESS" => {
                c.success = 1;
                c.amount_success = s.amount_paise;
            }
            "FAILED" => c.failed = 1,
            "REVERSED" => c.reversed = 1,
            _ => c.pending = 1,
        }
        c
    }

    fn add(&mut self, o: Counts, sign: i64) {
        self.total += sign * o.total;
        self.success += sign * o.success;
        self.failed += sign * o.failed;
        self.reversed += sign * o.reversed;
        self.pending += sign * o.pending;
        self.amount_success += sign * o.amount_success;
        self.amount_total += sign * o.amount_total;
        self.refunded += sign * o.refunded;
    }

    /// Adds another row's counts.
    pub fn add_all(&mut self, o: Counts) {
        self.add(o, 1);
    }

    pub fn is_zero(&self) -> bool {
        *self == Counts::default()
    }

    /// success / (success + failed + reversed); 0 when none ended.
    pub fn success_rate(&self) -> f64 {
        let ended = self.success + self.failed + self.reversed;
        if ended == 0 {
            0.0
        } else {
            self.success as f64 / ended as f64
        }
    }
}

/// What a set of transitions changes in each summary, keyed in a fixed
/// order (so upserts lock rows in one order).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Deltas {
    pub daily: BTreeMap<NaiveDate, Counts>,
    pub merchant: BTreeMap<(String, NaiveDate), Counts>,
    pub bank: BTreeMap<(NaiveDate, String, String), Counts>,
}

impl Deltas {
    /// A clean row moved from `old` (none: new) to `new`.
    pub fn transition(&mut self, old: Option<&TxnState>, new: &TxnState) {
        if let Some(old) = old {
            self.apply(old, -1);
        }
        self.apply(new, 1);
    }

    fn apply(&mut self, s: &TxnState, sign: i64) {
        let c = Counts::payment(s);
        self.daily.entry(s.day).or_default().add(c, sign);
        self.bank
            .entry((s.day, s.payer_bank.clone(), s.payee_bank.clone()))
            .or_default()
            .add(c, sign);
        if let Some(m) = &s.merchant_vpa {
            match s.txn_type.as_str() {
                "P2M" | "COLLECT" => self
                    .merchant
                    .entry((m.clone(), s.day))
                    .or_default()
                    .add(c, sign),
                "REFUND" if s.status == "SUCCESS" => {
                    let refunded = Counts {
                        refunded: s.amount_paise,
                        ..Counts::default()
                    };
                    self.merchant
                        .entry((m.clone(), s.day))
                        .or_default()
                        .add(refunded, sign);
                }
                _ => {}
            }
        }
    }

    /// Drops rows that did not change.
    pub fn prune(&mut self) {
        self.daily.retain(|_, c| !c.is_zero());
        self.merchant.retain(|_, c| !c.is_zero());
        self.bank.retain(|_, c| !c.is_zero());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Paise;

    fn ev(txn: Uuid, seq: i32, ty: &'static str, status: &'static str) -> CleanEvent {
        let at: DateTime<Utc> = "2026-12-01T10:00:00Z".parse().unwrap();
        CleanEvent {
            txn_id: txn,
            seq,
            txn_type: ty,
            status,
            amount: Paise(1000),
            payer_bank: "HDFC".into(),
            payee_bank: "ICICI".into(),
            merchant_vpa: (ty != "P2P").then(|| "shop@icici".to_string()),
            created_at: at,
            at,
            day: super::super::day::ist_day(at),
        }
    }

    /// Applies batches as the ingest does and returns the summaries.
    fn run(batches: &[Vec<CleanEvent>]) -> Deltas {
        let mut rows: BTreeMap<Uuid, TxnState> = BTreeMap::new();
        let mut sums = Deltas::default();
        for batch in batches {
            let mut by_txn: BTreeMap<Uuid, Vec<&CleanEvent>> = BTreeMap::new();
            for e in batch {
                by_txn.entry(e.txn_id).or_default().push(e);
            }
            for (txn, events) in by_txn {
                let old = rows.get(&txn).cloned();
                let new = fold(old.clone(), events).unwrap();
                if Some(&new) != old.as_ref() {
                    sums.transition(old.as_ref(), &new);
                    rows.insert(txn, new);
                }
            }
        }
        sums.prune();
        sums
    }

    #[test]
    fn latest_status_counts_once_whatever_the_order_or_duplicates() {
        let (a, b, r) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let in_order = vec![
            vec![ev(a, 1, "P2M", "PENDING"), ev(b, 1, "P2P", "PENDING")],
            vec![ev(a, 3, "P2M", "SUCCESS"), ev(b, 2, "P2P", "FAILED")],
            vec![ev(r, 1, "REFUND", "PENDING")],
            vec![ev(r, 2, "REFUND", "SUCCESS")],
        ];
        let shuffled = vec![
            vec![ev(a, 3, "P2M", "SUCCESS"), ev(r, 2, "REFUND", "SUCCESS")],
            vec![ev(b, 2, "P2P", "FAILED"), ev(a, 1, "P2M", "PENDING")],
            vec![ev(b, 1, "P2P", "PENDING"), ev(a, 3, "P2M", "SUCCESS")],
            vec![ev(r, 1, "REFUND", "PENDING"), ev(r, 1, "REFUND", "PENDING")],
        ];
        let one = run(&in_order);
        assert_eq!(one, run(&shuffled));
        let all = run(&[in_order.concat()]);
        assert_eq!(one, all);
        let day = one.daily.values().next().copied().unwrap();
        assert_eq!(
            (day.total, day.success, day.failed, day.pending),
            (3, 2, 1, 0)
        );
        assert_eq!((day.amount_success, day.amount_total), (2000, 3000));
        let shop = one.merchant.values().next().copied().unwrap();
        assert_eq!((shop.total, shop.success, shop.refunded), (1, 1, 1000));
        assert_eq!(one.bank.len(), 1);
    }
}
