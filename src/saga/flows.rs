//! The payment types, each a transfer between the parties it names:
//! - **P2P**: the payer VPA's account pays the payee VPA's;
//! - **P2M**: the same, to a merchant VPA (one with an MCC);
//! - **REFUND**: the original's payee pays its payer back, between the very
//!   accounts the original moved money between (a VPA re-pointed since does
//!   not redirect a refund);
//! - **COLLECT**: the payment a payer makes by approving a payee's collect
//!   request (`CollectStatus` is the request's own life: requested, then
//!   approved, declined or expired).
//!
//! All four run the same transfer (`transfer`): debit, credit, reverse when
//! the credit cannot happen. What differs is who may start one and what it
//! is checked against at acceptance (`guards`).

use super::{Party, Saga};
use crate::domain::Paise;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A payment's type, as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum PaymentType {
    #[default]
    P2P,
    P2M,
    Refund,
    Collect,
}

impl PaymentType {
    pub const ALL: [PaymentType; 4] = [
        PaymentType::P2P,
        PaymentType::P2M,
        PaymentType::Refund,
        PaymentType::Collect,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PaymentType::P2P => "P2P",
            PaymentType::P2M => "P2M",
            PaymentType::Refund => "REFUND",
            PaymentType::Collect => "COLLECT",
        }
    }

    pub fn parse(text: &str) -> Option<PaymentType> {
        PaymentType::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// Counts toward the payer VPA's daily amount and count (a refund is not
    /// counted against the refunding merchant).
    pub fn counts_toward_daily_limits(self) -> bool {
        self != PaymentType::Refund
    }

    /// A `SUCCESS` payment of this type may be refunded.
    pub fn refundable(self) -> bool {
        matches!(self, PaymentType::P2P | PaymentType::P2M)
    }
}

/// A `SUCCESS` payment being refunded, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original {
    pub txn_id: Uuid,
    pub kind: PaymentType,
    pub payer: Party,
    pub payee: Party,
    pub amount: Paise,
}

impl Saga {
    /// A P2P payment: the payer pays the payee.
    pub fn p2p(txn_id: Uuid, payer: Party, payee: Party, amount: Paise, now_ms: u64) -> Saga {
        Saga::transfer(PaymentType::P2P, txn_id, payer, payee, amount, now_ms)
    }

    /// A P2M payment: the payer pays a merchant.
    pub fn p2m(txn_id: Uuid, payer: Party, merchant: Party, amount: Paise, now_ms: u64) -> Saga {
        Saga::transfer(PaymentType::P2M, txn_id, payer, merchant, amount, now_ms)
    }

    /// A refund: the original's payee pays `amount` back to its payer.
    pub fn refund(txn_id: Uuid, original: &Original, amount: Paise, now_ms: u64) -> Saga {
        Saga::transfer(
            PaymentType::Refund,
            txn_id,
            original.payee.clone(),
            original.payer.clone(),
            amount,
            now_ms,
        )
    }

    /// The payment of an approved collect request: the payer it asked pays
    /// the payee that asked.
    pub fn collect(txn_id: Uuid, payer: Party, payee: Party, amount: Paise, now_ms: u64) -> Saga {
        Saga::transfer(PaymentType::Collect, txn_id, payer, payee, amount, now_ms)
    }
}

/// Where a collect request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CollectStatus {
    Requested,
    Approved,
    Declined,
    Expired,
}

impl CollectStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CollectStatus::Requested => "REQUESTED",
            CollectStatus::Approved => "APPROVED",
            CollectStatus::Declined => "DECLINED",
            CollectStatus::Expired => "EXPIRED",
        }
    }

    pub fn parse(text: &str) -> Option<CollectStatus> {
        [
            CollectStatus::Requested,
            CollectStatus::Approved,
            CollectStatus::Declined,
            CollectStatus::Expired,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    /// The status as of `now`: a request past its deadline is expired,
    /// whether or not the sweep has written so yet (the deadline is the
    /// stored `expires_at`, so no restart can move it).
    pub fn at(self, expires_at_ms: i64, now_ms: i64) -> CollectStatus {
        match self {
            CollectStatus::Requested if now_ms >= expires_at_ms => CollectStatus::Expired,
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refund_moves_money_back_between_the_original_accounts() {
        let original = Original {
            txn_id: Uuid::from_u128(1),
            kind: PaymentType::P2M,
            payer: Party {
                bank: "HDFC".into(),
                account: "CUST".into(),
            },
            payee: Party {
                bank: "ICICI".into(),
                account: "SHOP".into(),
            },
            amount: Paise(10_000),
        };
        let s = Saga::refund(Uuid::from_u128(2), &original, Paise(2_500), 0);
        assert_eq!(s.kind, PaymentType::Refund);
        assert_eq!(s.payer, original.payee);
        assert_eq!(s.payee, original.payer);
        assert_eq!(s.amount, Paise(2_500));
    }

    #[test]
    fn a_requested_collect_expires_at_its_deadline() {
        assert_eq!(
            CollectStatus::Requested.at(1_000, 999),
            CollectStatus::Requested
        );
        assert_eq!(
            CollectStatus::Requested.at(1_000, 1_000),
            CollectStatus::Expired
        );
        assert_eq!(
            CollectStatus::Approved.at(1_000, 5_000),
            CollectStatus::Approved
        );
        for t in PaymentType::ALL {
            assert_eq!(PaymentType::parse(t.as_str()), Some(t));
        }
    }
}
