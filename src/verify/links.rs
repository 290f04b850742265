//! The payment types' promises that tie transactions to each other and to
//! collect requests (Switch API v1, "Payment types"), checked as a pure
//! function beside `check`:
//! - a refund's original is a `SUCCESS` P2P or P2M; its `SUCCESS` refunds add
//!   up to at most its amount, and so do its `PENDING` and `SUCCESS` ones;
//! - a refund moves money back between the very accounts the original moved
//!   it between (its payer is the original's payee, its payee the original's payer);
//! - every `APPROVED` collect names a `COLLECT` transaction with its payer,
//!   payee and amount; every `COLLECT` transaction is named by exactly one
//!   collect; a `REQUESTED`, `DECLINED` or `EXPIRED` collect has no transaction.

use super::check::{Findings, Kind};
use crate::adapters::store::TxnMoney;
use crate::domain::Paise;
use crate::saga::{CollectStatus, PaymentType, Status};
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

/// A transaction's type and what it names, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnLinks {
    pub txn_id: Uuid,
    /// `P2P`, `P2M`, `REFUND`, `COLLECT` (as stored: an unknown word is reported).
    pub kind: String,
    pub payer_vpa: String,
    pub payee_vpa: String,
    pub original_txn_id: Option<Uuid>,
    pub collect_id: Option<Uuid>,
}

/// A collect request as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectRow {
    pub collect_id: Uuid,
    pub status: String,
    pub payer_vpa: String,
    pub payee_vpa: String,
    pub amount: Paise,
    pub txn_id: Option<Uuid>,
}

/// Counts for the report: transactions by type and status, collects by status.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub by_type: BTreeMap<String, BTreeMap<Status, u64>>,
    pub collects: BTreeMap<String, u64>,
}

/// Checks `links` and `collects` against the transactions (`txns`, by id).
pub(super) fn check(
    links: &[TxnLinks],
    collects: &[CollectRow],
    txns: &HashMap<Uuid, &TxnMoney>,
    found: &mut Findings,
) -> Counts {
    let mut counts = Counts::default();
    let kinds: HashMap<Uuid, &TxnLinks> = links.iter().map(|l| (l.txn_id, l)).collect();
    let kind_of = |id: &Uuid| kinds.get(id).and_then(|l| PaymentType::parse(&l.kind));
    // original → (SUCCESS refunds, PENDING + SUCCESS refunds)
    let mut refunded: BTreeMap<Uuid, (i64, i64)> = BTreeMap::new();
    for link in links {
        let Some(txn) = txns.get(&link.txn_id) else {
            continue;
        };
        *counts
            .by_type
            .entry(link.kind.clone())
            .or_default()
            .entry(txn.status)
            .or_default() += 1;
        let id = Some(link.txn_id);
        if PaymentType::parse(&link.kind) != Some(PaymentType::Refund) {
            continue;
        }
        let Some(original) = link.original_txn_id.and_then(|o| txns.get(&o)) else {
            let why = match link.original_txn_id {
                Some(o) => format!("a REFUND of {o}, which the switch does not hold"),
                None => "a REFUND that names no original".to_string(),
            };
            found.add(Kind::RefundNotRefundable, id, None, None, why);
            continue;
        };
        let original_kind = kind_of(&original.txn_id);
        if !original_kind.is_some_and(PaymentType::refundable) || original.status != Status::Success
        {
            let why = format!(
                "a REFUND of {} {} {}: only a SUCCESS P2P or P2M may be refunded",
                original_kind.map_or("untyped", PaymentType::as_str),
                original.status.as_str(),
                original.txn_id
            );
            found.add(Kind::RefundNotRefundable, id, None, None, why);
        }
        if (
            &txn.payer_bank,
            &txn.payer_account,
            &txn.payee_bank,
            &txn.payee_account,
        ) != (
            &original.payee_bank,
            &original.payee_account,
            &original.payer_bank,
            &original.payer_account,
        ) {
            let why = format!(
                "a REFUND from {} {} to {} {}, but its original {} paid from {} {} to {} {}",
                txn.payer_bank,
                txn.payer_account,
                txn.payee_bank,
                txn.payee_account,
                original.txn_id,
                original.payer_bank,
                original.payer_account,
                original.payee_bank,
                original.payee_account
            );
            found.add(Kind::RefundWrongParties, id, None, None, why);
        }
        let sums = refunded.entry(original.txn_id).or_default();
        if txn.status == Status::Success {
            sums.0 = sums.0.saturating_add(txn.amount.0);
        }
        if matches!(txn.status, Status::Success | Status::Pending) {
            sums.1 = sums.1.saturating_add(txn.amount.0);
        }
    }
    for (original, (success, open)) in refunded {
        let Some(amount) = txns.get(&original).map(|t| t.amount) else {
            continue;
        };
        let over = if success > amount.0 {
            Some(format!(
                "its SUCCESS refunds add up to {}",
                Paise(success).to_inr()
            ))
        } else if open > amount.0 {
            Some(format!(
                "its PENDING and SUCCESS refunds add up to {}",
                Paise(open).to_inr()
            ))
        } else {
            None
        };
        if let Some(why) = over {
            let why = format!("{why}, more than its amount {}", amount.to_inr());
            found.add(Kind::RefundOverOriginal, Some(original), None, None, why);
        }
    }
    check_collects(links, collects, txns, &kind_of, found, &mut counts);
    counts
}

fn check_collects(
    links: &[TxnLinks],
    collects: &[CollectRow],
    txns: &HashMap<Uuid, &TxnMoney>,
    kind_of: &dyn Fn(&Uuid) -> Option<PaymentType>,
    found: &mut Findings,
    counts: &mut Counts,
) {
    let vpas: HashMap<Uuid, &TxnLinks> = links.iter().map(|l| (l.txn_id, l)).collect();
    // collect_id → transactions that name it (their `collect_id`).
    let mut paid_by: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    for link in links {
        if let Some(c) = link.collect_id {
            paid_by.entry(c).or_default().push(link.txn_id);
        }
    }
    // txn_id → collects that name it.
    let mut named_by: HashMap<Uuid, u64> = HashMap::new();
    for c in collects {
        *counts.collects.entry(c.status.clone()).or_default() += 1;
        if let Some(t) = c.txn_id {
            *named_by.entry(t).or_default() += 1;
        }
        let id = c.collect_id;
        match CollectStatus::parse(&c.status) {
            Some(CollectStatus::Approved) => {
                let why = match c.txn_id {
                    None => Some("APPROVED, but it names no transaction".to_string()),
                    Some(t) => match (txns.get(&t), vpas.get(&t)) {
                        (Some(txn), Some(link)) => {
                            let same = kind_of(&t) == Some(PaymentType::Collect)
                                && link.payer_vpa.eq_ignore_ascii_case(&c.payer_vpa)
                                && link.payee_vpa.eq_ignore_ascii_case(&c.payee_vpa)
                                && txn.amount == c.amount;
                            (!same).then(|| {
                                format!(
                                    "APPROVED for {} from {} to {}, but its transaction {t} is a {} of {} from {} to {}",
                                    c.amount.to_inr(),
                                    c.payer_vpa,
                                    c.payee_vpa,
                                    link.kind,
                                    txn.amount.to_inr(),
                                    link.payer_vpa,
                                    link.payee_vpa
                                )
                            })
                        }
                        _ => Some(format!(
                            "APPROVED, but its transaction {t} is not in the switch"
                        )),
                    },
                };
                if let Some(why) = why {
                    let why = format!("collect {id}: {why}");
                    found.add(Kind::CollectPaymentMismatch, c.txn_id, None, None, why);
                }
            }
            Some(_) => {
                let mut paid: Vec<Uuid> = c.txn_id.into_iter().collect();
                for t in paid_by.get(&id).into_iter().flatten() {
                    if !paid.contains(t) {
                        paid.push(*t);
                    }
                }
                if let Some(t) = paid.first() {
                    let why = format!(
                        "collect {id} is {}, yet transaction(s) {} pay it",
                        c.status,
                        paid.iter()
                            .map(Uuid::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    found.add(Kind::UnapprovedCollectPaid, Some(*t), None, None, why);
                }
            }
            None => {
                let why = format!("collect {id} has the unknown status {:?}", c.status);
                found.add(Kind::CollectPaymentMismatch, c.txn_id, None, None, why);
            }
        }
    }
    for link in links {
        if kind_of(&link.txn_id) != Some(PaymentType::Collect) {
            continue;
        }
        let n = named_by.get(&link.txn_id).copied().unwrap_or(0);
        if n != 1 {
            let why = format!(
                "a COLLECT transaction named by {n} collects (its collect_id: {})",
                link.collect_id
                    .map_or_else(|| "none".to_string(), |c| c.to_string())
            );
            found.add(Kind::CollectTxnUnlinked, Some(link.txn_id), None, None, why);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::check::{Options, Report, Snapshot, check as verify};
    use chrono::DateTime;

    fn txn(
        n: u128,
        status: Status,
        payer: (&str, &str),
        payee: (&str, &str),
        amount: i64,
    ) -> TxnMoney {
        TxnMoney {
            txn_id: Uuid::from_u128(n),
            status,
            payer_bank: payer.0.into(),
            payer_account: payer.1.into(),
            payee_bank: payee.0.into(),
            payee_account: payee.1.into(),
            amount: Paise(amount),
            created_at: DateTime::UNIX_EPOCH,
        }
    }

    fn link(n: u128, kind: &str, original: Option<u128>, collect: Option<u128>) -> TxnLinks {
        TxnLinks {
            txn_id: Uuid::from_u128(n),
            kind: kind.into(),
            payer_vpa: if kind == "REFUND" {
                "shop@icici"
            } else {
                "al@hdfc"
            }
            .into(),
            payee_vpa: if kind == "REFUND" {
                "al@hdfc"
            } else {
                "shop@icici"
            }
            .into(),
            original_txn_id: original.map(Uuid::from_u128),
            collect_id: collect.map(Uuid::from_u128),
        }
    }

    const AL: (&str, &str) = ("HDFC", "ACC001");
    const SHOP: (&str, &str) = ("ICICI", "ACC009");

    /// A P2M of ₹10.00 (1) refunded twice (2, 3: ₹5.00 each), an approved
    /// collect (100) paid by a COLLECT (4), a declined one (101). No bank
    /// feeds: only the links are looked at.
    fn world() -> Snapshot {
        Snapshot {
            taken_at: DateTime::UNIX_EPOCH,
            txns: vec![
                txn(1, Status::Success, AL, SHOP, 1_000),
                txn(2, Status::Success, SHOP, AL, 500),
                txn(3, Status::Pending, SHOP, AL, 500),
                txn(4, Status::Success, AL, SHOP, 700),
            ],
            last_steps: HashMap::new(),
            banks: vec![],
            links: vec![
                link(1, "P2M", None, None),
                link(2, "REFUND", Some(1), None),
                link(3, "REFUND", Some(1), None),
                link(4, "COLLECT", None, Some(100)),
            ],
            collects: vec![
                CollectRow {
                    collect_id: Uuid::from_u128(100),
                    status: "APPROVED".into(),
                    payer_vpa: "AL@hdfc".into(),
                    payee_vpa: "shop@icici".into(),
                    amount: Paise(700),
                    txn_id: Some(Uuid::from_u128(4)),
                },
                CollectRow {
                    collect_id: Uuid::from_u128(101),
                    status: "DECLINED".into(),
                    payer_vpa: "al@hdfc".into(),
                    payee_vpa: "shop@icici".into(),
                    amount: Paise(100),
                    txn_id: None,
                },
            ],
            payment_types: true,
            ledger: None,
        }
    }

    /// The link kinds found (no feeds here: the money kinds are left out).
    fn kinds(s: &Snapshot) -> Vec<(Kind, u64)> {
        let r: Report = verify(
            s,
            &Options {
                expected_total_paise: None,
                examples: 5,
            },
        );
        r.violations
            .iter()
            .filter(|(k, _)| **k >= Kind::RefundOverOriginal)
            .map(|(k, g)| (*k, g.count))
            .collect()
    }

    #[test]
    fn refunds_and_collects_that_keep_their_promises_are_clean() {
        let s = world();
        assert_eq!(kinds(&s), []);
        let r = verify(
            &s,
            &Options {
                expected_total_paise: None,
                examples: 5,
            },
        );
        assert_eq!(r.by_type["REFUND"][&Status::Pending], 1);
        assert_eq!(r.collects["DECLINED"], 1);
    }

    #[test]
    fn refunds_beyond_their_original() {
        let mut s = world();
        s.txns[2].amount = Paise(501); // PENDING + SUCCESS: ₹10.01 of ₹10.00
        assert_eq!(kinds(&s), [(Kind::RefundOverOriginal, 1)]);
        s.txns[2].status = Status::Failed; // a failed refund asks nothing back
        assert_eq!(kinds(&s), []);
        s.txns[1].amount = Paise(1_001);
        assert_eq!(kinds(&s), [(Kind::RefundOverOriginal, 1)]);
    }

    #[test]
    fn refunds_between_other_accounts_or_of_what_cannot_be_refunded() {
        let mut s = world();
        s.txns[1].payee_account = "ACC002".into();
        assert_eq!(kinds(&s), [(Kind::RefundWrongParties, 1)]);
        let mut s = world();
        s.links[0].kind = "COLLECT".into(); // the original is no P2P/P2M (and named by no collect)
        assert_eq!(
            kinds(&s),
            [
                (Kind::RefundNotRefundable, 2),
                (Kind::CollectTxnUnlinked, 1)
            ]
        );
        let mut s = world();
        s.txns[0].status = Status::Reversed;
        assert_eq!(kinds(&s), [(Kind::RefundNotRefundable, 2)]);
        let mut s = world();
        s.links[1].original_txn_id = Some(Uuid::from_u128(99));
        assert_eq!(kinds(&s), [(Kind::RefundNotRefundable, 1)]);
    }

    #[test]
    fn collects_without_their_payment_or_payments_without_their_collect() {
        let mut s = world();
        s.collects[0].amount = Paise(701);
        assert_eq!(kinds(&s), [(Kind::CollectPaymentMismatch, 1)]);
        let mut s = world();
        s.collects[0].payer_vpa = "bo@hdfc".into();
        assert_eq!(kinds(&s), [(Kind::CollectPaymentMismatch, 1)]);
        let mut s = world();
        s.collects[0].txn_id = Some(Uuid::from_u128(1)); // a P2M; the COLLECT is then unnamed
        assert_eq!(
            kinds(&s),
            [
                (Kind::CollectPaymentMismatch, 1),
                (Kind::CollectTxnUnlinked, 1)
            ]
        );
        let mut s = world();
        s.collects[1].txn_id = Some(Uuid::from_u128(4)); // declined, yet paid; the COLLECT named twice
        assert_eq!(
            kinds(&s),
            [
                (Kind::CollectTxnUnlinked, 1),
                (Kind::UnapprovedCollectPaid, 1)
            ]
        );
        let mut s = world();
        s.links[3].collect_id = Some(Uuid::from_u128(101));
        s.collects[0].txn_id = None;
        s.collects[0].status = "EXPIRED".into();
        assert_eq!(
            kinds(&s),
            [
                (Kind::CollectTxnUnlinked, 1),
                (Kind::UnapprovedCollectPaid, 1)
            ]
        );
    }
}
