//! Acceptance rules that depend on what other payments hold: the payer
//! VPA's daily amount and count, the refunds of one original, the collect
//! request a payment approves. Pure: the checkpoint writer gathers what the
//! database holds for a batch's keys under transaction-scoped locks
//! (`Holdings`), then asks a `Book` about each create in arrival order, so
//! concurrent requests — in one batch or on several nodes — cannot
//! overshoot. A refused create is not written: it changes nothing.
//!
//! Usage counts only `PENDING` and `SUCCESS` payments: the database query
//! filters by status, so a `FAILED` or `REVERSED` payment gives its usage
//! back without any bookkeeping of its own.

use super::flows::CollectStatus;
use crate::domain::Paise;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// The payer VPA's daily limits, for one create (0 = off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Daily {
    pub payer_vpa: String,
    pub amount_limit: Paise,
    pub count_limit: i64,
}

/// What a create must be checked against at acceptance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Guard {
    pub daily: Option<Daily>,
    /// A refund: its original and the original's amount.
    pub refund_of: Option<(Uuid, Paise)>,
    /// The payment of this collect request (it must still be `REQUESTED`).
    pub collect: Option<Uuid>,
}

impl Guard {
    pub fn is_empty(&self) -> bool {
        self.daily.is_none() && self.refund_of.is_none() && self.collect.is_none()
    }
}

/// Why a create was refused (nothing was written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    DailyAmount {
        limit: Paise,
        used: Paise,
    },
    DailyCount {
        limit: i64,
        used: i64,
    },
    RefundExceedsOriginal {
        original: Paise,
        held: Paise,
    },
    CollectNotPending(CollectStatus),
    /// The collect request does not exist (deleted underneath: cannot happen
    /// through the API, answered rather than assumed).
    CollectMissing,
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::DailyAmount { .. } => "DAILY_AMOUNT_LIMIT_EXCEEDED",
            Refusal::DailyCount { .. } => "DAILY_COUNT_LIMIT_EXCEEDED",
            Refusal::RefundExceedsOriginal { .. } => "REFUND_EXCEEDS_ORIGINAL",
            Refusal::CollectNotPending(_) | Refusal::CollectMissing => "COLLECT_NOT_PENDING",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Refusal::CollectNotPending(_) | Refusal::CollectMissing => 409,
            _ => 422,
        }
    }

    pub fn detail(&self) -> String {
        match self {
            Refusal::DailyAmount { limit, used } => format!(
                "the payer has paid ₹{} today (IST) of its daily ₹{}; this payment would exceed it",
                used.to_rupees(),
                limit.to_rupees()
            ),
            Refusal::DailyCount { limit, used } => format!(
                "the payer has made {used} payments today (IST), its daily limit is {limit}"
            ),
            Refusal::RefundExceedsOriginal { original, held } => format!(
                "refunds of ₹{} are pending or done against an original of ₹{}; this one would exceed it",
                held.to_rupees(),
                original.to_rupees()
            ),
            Refusal::CollectNotPending(s) => {
                format!("the collect request is {}, not REQUESTED", s.as_str())
            }
            Refusal::CollectMissing => "the collect request does not exist".into(),
        }
    }
}

/// What the database holds now for a batch's guarded keys, read under the
/// locks that keep it from changing until the batch commits.
#[derive(Debug, Clone, Default)]
pub struct Holdings {
    /// Per payer VPA: `PENDING` + `SUCCESS` payments counted today (IST).
    pub usage: HashMap<String, (i64, Paise)>,
    /// Per original: its `PENDING` + `SUCCESS` refunds.
    pub refunded: HashMap<Uuid, Paise>,
    /// Per collect request: its status as of the database's now.
    pub collects: HashMap<Uuid, CollectStatus>,
    /// Idempotency keys (and collect ids) already taken: those creates will
    /// meet their earlier transaction and take nothing.
    pub taken: HashSet<String>,
}

/// The holdings plus what this batch's admitted creates add.
#[derive(Debug, Clone, Default)]
pub struct Book {
    held: Holdings,
}

impl Book {
    pub fn new(held: Holdings) -> Book {
        Book { held }
    }

    /// Whether a create of `amount` fits; when it does, its usage is booked
    /// (so the next create of the same payer or original sees it). `key` is
    /// the create's idempotency key: a taken one is let through (it will meet
    /// its earlier transaction) and books nothing.
    pub fn admit(&mut self, key: &str, guard: &Guard, amount: Paise) -> Result<(), Refusal> {
        if self.held.taken.contains(key) {
            return Ok(());
        }
        if let Some(id) = guard.collect {
            match self.held.collects.get(&id) {
                Some(CollectStatus::Requested) => {}
                Some(other) => return Err(Refusal::CollectNotPending(*other)),
                None => return Err(Refusal::CollectMissing),
            }
        }
        if let Some((original, original_amount)) = guard.refund_of {
            let held = self
                .held
                .refunded
                .get(&original)
                .copied()
                .unwrap_or(Paise(0));
            if held.0.saturating_add(amount.0) > original_amount.0 {
                return Err(Refusal::RefundExceedsOriginal {
                    original: original_amount,
                    held,
                });
            }
        }
        if let Some(daily) = &guard.daily {
            let (count, paid) = self
                .held
                .usage
                .get(&daily.payer_vpa)
                .copied()
                .unwrap_or((0, Paise(0)));
            if daily.count_limit > 0 && count >= daily.count_limit {
                return Err(Refusal::DailyCount {
                    limit: daily.count_limit,
                    used: count,
                });
            }
            if daily.amount_limit.0 > 0 && paid.0.saturating_add(amount.0) > daily.amount_limit.0 {
                return Err(Refusal::DailyAmount {
                    limit: daily.amount_limit,
                    used: paid,
                });
            }
        }
        // It fits: book it.
        if let Some(id) = guard.collect {
            self.held.collects.insert(id, CollectStatus::Approved);
        }
        if let Some((original, _)) = guard.refund_of {
            let held = self.held.refunded.entry(original).or_insert(Paise(0));
            held.0 += amount.0;
        }
        if let Some(daily) = &guard.daily {
            let usage = self
                .held
                .usage
                .entry(daily.payer_vpa.clone())
                .or_insert((0, Paise(0)));
            usage.0 += 1;
            usage.1.0 += amount.0;
        }
        self.held.taken.insert(key.to_string());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daily(count: i64, amount: i64) -> Guard {
        Guard {
            daily: Some(Daily {
                payer_vpa: "alice@hdfc".into(),
                amount_limit: Paise(amount),
                count_limit: count,
            }),
            ..Guard::default()
        }
    }

    #[test]
    fn a_batch_cannot_overshoot_the_daily_count() {
        let mut book = Book::new(Holdings::default());
        let g = daily(5, 0);
        let admitted = (0..30)
            .filter(|i| book.admit(&format!("k{i}"), &g, Paise(100)).is_ok())
            .count();
        assert_eq!(admitted, 5);
    }

    #[test]
    fn daily_amount_counts_what_is_held_and_zero_turns_it_off() {
        let mut held = Holdings::default();
        held.usage.insert("alice@hdfc".into(), (1, Paise(9_000)));
        let mut book = Book::new(held);
        assert_eq!(
            book.admit("a", &daily(0, 10_000), Paise(1_001))
                .map_err(|r| r.code()),
            Err("DAILY_AMOUNT_LIMIT_EXCEEDED")
        );
        assert!(book.admit("b", &daily(0, 10_000), Paise(1_000)).is_ok());
        assert!(book.admit("c", &daily(0, 0), Paise(1_000_000)).is_ok());
    }

    #[test]
    fn refunds_fit_within_the_original_and_taken_keys_book_nothing() {
        let original = Uuid::from_u128(7);
        let g = Guard {
            refund_of: Some((original, Paise(1_000))),
            ..Guard::default()
        };
        let mut held = Holdings::default();
        held.taken.insert("again".into());
        let mut book = Book::new(held);
        assert!(book.admit("again", &g, Paise(1_000)).is_ok());
        assert!(book.admit("r1", &g, Paise(600)).is_ok());
        assert_eq!(
            book.admit("r2", &g, Paise(401)).map_err(|r| r.code()),
            Err("REFUND_EXCEEDS_ORIGINAL")
        );
        assert!(book.admit("r3", &g, Paise(400)).is_ok());
    }

    #[test]
    fn a_collect_is_paid_once() {
        let id = Uuid::from_u128(9);
        let mut held = Holdings::default();
        held.collects.insert(id, CollectStatus::Requested);
        let mut book = Book::new(held);
        let g = Guard {
            collect: Some(id),
            ..Guard::default()
        };
        assert!(book.admit("c1", &g, Paise(1)).is_ok());
        assert_eq!(
            book.admit("c2", &g, Paise(1)),
            Err(Refusal::CollectNotPending(CollectStatus::Approved))
        );
    }
}
