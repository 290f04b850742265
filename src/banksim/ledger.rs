//! The bank's rules of Bank API v1, as a pure function over an in-memory working
//! set: `apply(&mut Ledger, &Request) -> Reply`. No I/O, no clock, no async.
//!
//! The simulator's single writer loads the rows a batch touches into a `Ledger`,
//! applies each request in arrival order, then persists `take_dirty()` in one
//! Postgres transaction before any reply leaves. The saga simulation uses the
//! very same rules as its fake bank, so both test the same semantics.
//!
//! What does not happen here: no `op_id` is applied twice (a replay returns the
//! stored answer), a `400`/`409` refusal changes nothing, and a debit never takes
//! a balance below zero (only undoing a credit may).

use crate::adapters::bank_api::{
    DeclineCode, MoveAnswer, MoveRequest, OpKind, OpStatus, OpView, ReverseAnswer, ReverseRequest,
};
use crate::domain::{MAX_WIRE_PAISE, is_valid_op_id};
use std::collections::{BTreeSet, HashMap};

/// One recorded operation, or a tombstone (`kind == None`, `seq == None`) left by
/// a reverse of an op the bank never saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpRow {
    pub op_id: String,
    /// Position in the change feed; `None` only for a bare tombstone.
    pub seq: Option<i64>,
    pub kind: Option<OpKind>,
    /// Current status (an applied op becomes `Reversed` when undone).
    pub status: OpStatus,
    /// The status of the definitive answer, replayed verbatim forever.
    pub answer: OpStatus,
    pub account: Option<String>,
    pub amount_paise: i64,
    pub txn_id: Option<String>,
    pub code: Option<DeclineCode>,
    pub original_op_id: Option<String>,
    /// When the op was recorded (unix ms), for the feed's `at`.
    pub at_ms: i64,
}

impl OpRow {
    pub fn view(&self) -> OpView {
        OpView {
            op_id: self.op_id.clone(),
            kind: self.kind,
            status: self.status,
            account: self.account.clone(),
            amount_paise: self.amount_paise,
            code: self.code.clone(),
            original_op_id: self.original_op_id.clone(),
        }
    }
}

/// An account as the ledger sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub account: String,
    pub name: String,
    pub frozen: bool,
    pub balance_paise: i64,
}

/// A money-moving request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Debit(MoveRequest),
    Credit(MoveRequest),
    Reverse(ReverseRequest),
}

impl Request {
    /// The op ids whose rows `apply` may read: the op itself and, for a reverse,
    /// the original.
    pub fn touched_op_ids(&self) -> impl Iterator<Item = &str> {
        let (op_id, original) = match self {
            Request::Debit(m) | Request::Credit(m) => (m.op_id.as_str(), None),
            Request::Reverse(r) => (r.op_id.as_str(), Some(r.original_op_id.as_str())),
        };
        std::iter::once(op_id).chain(original)
    }
}

/// The bank's answer. `Moved` is `200` when applied and `422` when declined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Moved(MoveAnswer),
    Reversed(ReverseAnswer),
    /// `400 BAD_REQUEST` or `409 OP_ID_CONFLICT`/`AMOUNT_MISMATCH`: nothing changed.
    Refused {
        http_status: u16,
        code: &'static str,
        detail: String,
    },
}

impl Reply {
    pub fn http_status(&self) -> u16 {
        match self {
            Reply::Moved(a) if a.status == OpStatus::Declined => 422,
            Reply::Moved(_) | Reply::Reversed(_) => 200,
            Reply::Refused { http_status, .. } => *http_status,
        }
    }

    fn bad_request(detail: impl Into<String>) -> Reply {
        Reply::Refused {
            http_status: 400,
            code: "BAD_REQUEST",
            detail: detail.into(),
        }
    }

    fn conflict(code: &'static str, detail: impl Into<String>) -> Reply {
        Reply::Refused {
            http_status: 409,
            code,
            detail: detail.into(),
        }
    }
}

/// The working set one batch reads and writes: the op rows it touches, the
/// bank's accounts, and the feed position. Records what changed.
#[derive(Debug, Default)]
pub struct Ledger {
    pub ops: HashMap<String, OpRow>,
    pub accounts: HashMap<String, Account>,
    /// The seq the next recorded op gets.
    pub next_seq: i64,
    dirty_ops: BTreeSet<String>,
    dirty_accounts: BTreeSet<String>,
}

/// What a batch changed, to be persisted atomically.
#[derive(Debug, Default)]
pub struct Changes {
    pub ops: Vec<OpRow>,
    pub accounts: Vec<Account>,
}

impl Ledger {
    pub fn new(accounts: HashMap<String, Account>, next_seq: i64) -> Ledger {
        Ledger {
            accounts,
            next_seq,
            ..Ledger::default()
        }
    }

    /// Rows and accounts changed since the last call.
    pub fn take_dirty(&mut self) -> Changes {
        let ops = std::mem::take(&mut self.dirty_ops)
            .into_iter()
            .filter_map(|id| self.ops.get(&id).cloned())
            .collect();
        let accounts = std::mem::take(&mut self.dirty_accounts)
            .into_iter()
            .filter_map(|id| self.accounts.get(&id).cloned())
            .collect();
        Changes { ops, accounts }
    }

    /// Sum of all balances (for conservation checks).
    pub fn total_paise(&self) -> i128 {
        self.accounts
            .values()
            .map(|a| i128::from(a.balance_paise))
            .sum()
    }

    fn record(&mut self, row: OpRow) {
        self.dirty_ops.insert(row.op_id.clone());
        self.ops.insert(row.op_id.clone(), row);
    }

    fn take_seq(&mut self) -> i64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// Adds `delta` to an account's balance; false when it would overflow.
    fn adjust(&mut self, account: &str, delta: i64) -> bool {
        let Some(acc) = self.accounts.get_mut(account) else {
            return false;
        };
        match acc.balance_paise.checked_add(delta) {
            Some(balance) => {
                acc.balance_paise = balance;
                self.dirty_accounts.insert(account.to_string());
                true
            }
            None => false,
        }
    }
}

fn check_common(op_id: &str, txn_id: &str, amount_paise: i64) -> Result<(), Reply> {
    if !is_valid_op_id(op_id) {
        return Err(Reply::bad_request(
            "op_id must be 1-64 characters of [A-Za-z0-9._:-]",
        ));
    }
    if uuid::Uuid::parse_str(txn_id).is_err() {
        return Err(Reply::bad_request("txn_id must be a UUID"));
    }
    if !(1..=MAX_WIRE_PAISE).contains(&amount_paise) {
        return Err(Reply::bad_request(
            "amount_paise must be an integer from 1 to 10^13",
        ));
    }
    Ok(())
}

/// Applies one request to the ledger and returns the bank's answer.
pub fn apply(ledger: &mut Ledger, request: &Request, now_ms: i64) -> Reply {
    match request {
        Request::Debit(m) => apply_move(ledger, OpKind::Debit, m, now_ms),
        Request::Credit(m) => apply_move(ledger, OpKind::Credit, m, now_ms),
        Request::Reverse(r) => apply_reverse(ledger, r, now_ms),
    }
}

fn move_answer(row: &OpRow) -> MoveAnswer {
    match row.answer {
        OpStatus::Applied => MoveAnswer {
            op_id: row.op_id.clone(),
            status: OpStatus::Applied,
            account: row.account.clone(),
            amount_paise: Some(row.amount_paise),
            code: None,
        },
        _ => MoveAnswer {
            op_id: row.op_id.clone(),
            status: OpStatus::Declined,
            account: None,
            amount_paise: None,
            code: row.code.clone(),
        },
    }
}

fn apply_move(ledger: &mut Ledger, kind: OpKind, req: &MoveRequest, now_ms: i64) -> Reply {
    if let Err(refusal) = check_common(&req.op_id, &req.txn_id, req.amount_paise) {
        return refusal;
    }
    if req.account.is_empty() || req.account.len() > 64 {
        return Reply::bad_request("account must be 1-64 characters");
    }
    if let Some(existing) = ledger.ops.get(&req.op_id).cloned() {
        return match existing.kind {
            // A tombstone: the op was fenced before it arrived. Decline it for
            // good, and from now on it is an ordinary declined op in the feed.
            None if existing.amount_paise == req.amount_paise => {
                let row = OpRow {
                    seq: Some(ledger.take_seq()),
                    kind: Some(kind),
                    account: Some(req.account.clone()),
                    txn_id: Some(req.txn_id.clone()),
                    at_ms: now_ms,
                    ..existing
                };
                let answer = move_answer(&row);
                ledger.record(row);
                Reply::Moved(answer)
            }
            None => Reply::conflict("OP_ID_CONFLICT", "op_id was fenced with a different amount"),
            Some(k)
                if k == kind
                    && existing.account.as_deref() == Some(req.account.as_str())
                    && existing.amount_paise == req.amount_paise
                    && existing.txn_id.as_deref() == Some(req.txn_id.as_str()) =>
            {
                Reply::Moved(move_answer(&existing))
            }
            Some(_) => Reply::conflict(
                "OP_ID_CONFLICT",
                "op_id was already used with other parameters",
            ),
        };
    }
    let decline = match ledger.accounts.get(&req.account) {
        None => Some(DeclineCode::AccountNotFound),
        Some(acc) if acc.frozen => Some(DeclineCode::AccountFrozen),
        Some(acc) if kind == OpKind::Debit && acc.balance_paise < req.amount_paise => {
            Some(DeclineCode::InsufficientFunds)
        }
        Some(_) => None,
    };
    let delta = if kind == OpKind::Debit {
        -req.amount_paise
    } else {
        req.amount_paise
    };
    if decline.is_none() && !ledger.adjust(&req.account, delta) {
        return Reply::bad_request("the account's balance would overflow");
    }
    let status = if decline.is_some() {
        OpStatus::Declined
    } else {
        OpStatus::Applied
    };
    let row = OpRow {
        op_id: req.op_id.clone(),
        seq: Some(ledger.take_seq()),
        kind: Some(kind),
        status,
        answer: status,
        account: Some(req.account.clone()),
        amount_paise: req.amount_paise,
        txn_id: Some(req.txn_id.clone()),
        code: decline,
        original_op_id: None,
        at_ms: now_ms,
    };
    let answer = move_answer(&row);
    ledger.record(row);
    Reply::Moved(answer)
}

fn apply_reverse(ledger: &mut Ledger, req: &ReverseRequest, now_ms: i64) -> Reply {
    if let Err(refusal) = check_common(&req.op_id, &req.txn_id, req.amount_paise) {
        return refusal;
    }
    if !is_valid_op_id(&req.original_op_id) {
        return Reply::bad_request("original_op_id must be 1-64 characters of [A-Za-z0-9._:-]");
    }
    if req.original_op_id == req.op_id {
        return Reply::bad_request("original_op_id must differ from op_id");
    }
    if let Some(existing) = ledger.ops.get(&req.op_id) {
        let same = existing.kind == Some(OpKind::Reverse)
            && existing.original_op_id.as_deref() == Some(req.original_op_id.as_str())
            && existing.amount_paise == req.amount_paise
            && existing.txn_id.as_deref() == Some(req.txn_id.as_str());
        return if same {
            Reply::Reversed(ReverseAnswer {
                op_id: existing.op_id.clone(),
                status: existing.answer,
                original_op_id: req.original_op_id.clone(),
            })
        } else {
            Reply::conflict(
                "OP_ID_CONFLICT",
                "op_id was already used with other parameters",
            )
        };
    }
    let original = ledger.ops.get(&req.original_op_id).cloned();
    if let Some(orig) = &original {
        if orig.kind == Some(OpKind::Reverse) {
            return Reply::bad_request("original_op_id names a reverse op");
        }
        if orig.amount_paise != req.amount_paise {
            return Reply::conflict(
                "AMOUNT_MISMATCH",
                "amount_paise differs from the original's",
            );
        }
    }
    // (status recorded for the reverse op, status answered, account)
    let (recorded, answered, account) = match original {
        Some(orig) if orig.status == OpStatus::Applied => {
            let (Some(kind), Some(account)) = (orig.kind, orig.account.clone()) else {
                return Reply::bad_request("original has no account");
            };
            let delta = if kind == OpKind::Debit {
                orig.amount_paise
            } else {
                -orig.amount_paise
            };
            if !ledger.adjust(&account, delta) {
                return Reply::bad_request("the account's balance would overflow");
            }
            ledger.record(OpRow {
                status: OpStatus::Reversed,
                ..orig
            });
            (OpStatus::Applied, OpStatus::Reversed, Some(account))
        }
        Some(orig) if orig.status == OpStatus::Reversed => {
            (OpStatus::Noop, OpStatus::Reversed, orig.account.clone())
        }
        Some(orig) => (OpStatus::Noop, OpStatus::Noop, orig.account.clone()),
        None => {
            ledger.record(OpRow {
                op_id: req.original_op_id.clone(),
                seq: None,
                kind: None,
                status: OpStatus::Declined,
                answer: OpStatus::Declined,
                account: None,
                amount_paise: req.amount_paise,
                txn_id: Some(req.txn_id.clone()),
                code: Some(DeclineCode::AlreadyReversed),
                original_op_id: None,
                at_ms: now_ms,
            });
            (OpStatus::Noop, OpStatus::Noop, None)
        }
    };
    let seq = ledger.take_seq();
    ledger.record(OpRow {
        op_id: req.op_id.clone(),
        seq: Some(seq),
        kind: Some(OpKind::Reverse),
        status: recorded,
        answer: answered,
        account,
        amount_paise: req.amount_paise,
        txn_id: Some(req.txn_id.clone()),
        code: None,
        original_op_id: Some(req.original_op_id.clone()),
        at_ms: now_ms,
    });
    Reply::Reversed(ReverseAnswer {
        op_id: req.op_id.clone(),
        status: answered,
        original_op_id: req.original_op_id.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TXN: &str = "7f2c1d4e-8a3b-4c5d-9e6f-0a1b2c3d4e5f";

    fn ledger() -> Ledger {
        let mut accounts = HashMap::new();
        for (id, bal, frozen) in [("A", 1000, false), ("B", 0, false), ("F", 500, true)] {
            accounts.insert(
                id.to_string(),
                Account {
                    account: id.into(),
                    name: id.into(),
                    frozen,
                    balance_paise: bal,
                },
            );
        }
        Ledger::new(accounts, 1)
    }

    fn mv(op: &str, acc: &str, amt: i64) -> MoveRequest {
        MoveRequest {
            op_id: op.into(),
            txn_id: TXN.into(),
            account: acc.into(),
            amount_paise: amt,
        }
    }

    fn rev(op: &str, orig: &str, amt: i64) -> Request {
        Request::Reverse(ReverseRequest {
            op_id: op.into(),
            original_op_id: orig.into(),
            txn_id: TXN.into(),
            amount_paise: amt,
        })
    }

    fn bal(l: &Ledger, acc: &str) -> i64 {
        l.accounts[acc].balance_paise
    }

    #[test]
    fn debit_applies_once_and_replays_identically() {
        let mut l = ledger();
        let first = apply(&mut l, &Request::Debit(mv("d1", "A", 1000)), 0);
        let again = apply(&mut l, &Request::Debit(mv("d1", "A", 1000)), 5);
        assert_eq!(first.http_status(), 200);
        assert_eq!(first, again);
        assert_eq!(bal(&l, "A"), 0, "exactly the balance may be debited, once");
    }

    #[test]
    fn declines_are_final_and_conflicts_change_nothing() {
        let mut l = ledger();
        let r = apply(&mut l, &Request::Debit(mv("d1", "A", 1001)), 0);
        assert_eq!(r.http_status(), 422);
        if let Some(a) = l.accounts.get_mut("A") {
            a.balance_paise = 5000;
        }
        assert_eq!(apply(&mut l, &Request::Debit(mv("d1", "A", 1001)), 0), r);
        let c = apply(&mut l, &Request::Debit(mv("d1", "A", 1002)), 0);
        assert_eq!(c.http_status(), 409);
        let c = apply(&mut l, &Request::Credit(mv("d1", "A", 1001)), 0);
        assert_eq!(c.http_status(), 409);
        assert_eq!(bal(&l, "A"), 5000);
    }

    #[test]
    fn reverse_of_never_seen_op_tombstones_it() {
        let mut l = ledger();
        let r = apply(&mut l, &rev("r1", "d9", 100), 0);
        assert!(matches!(
            r,
            Reply::Reversed(ReverseAnswer {
                status: OpStatus::Noop,
                ..
            })
        ));
        let late = apply(&mut l, &Request::Debit(mv("d9", "A", 100)), 0);
        assert_eq!(late.http_status(), 422);
        let Reply::Moved(answer) = late else { panic!() };
        assert_eq!(answer.code, Some(DeclineCode::AlreadyReversed));
        assert_eq!(bal(&l, "A"), 1000);
        assert_eq!(apply(&mut l, &rev("r2", "d9", 101), 0).http_status(), 409);
    }

    #[test]
    fn reverse_of_credit_may_go_negative() {
        let mut l = ledger();
        apply(&mut l, &Request::Credit(mv("c1", "B", 300)), 0);
        apply(&mut l, &Request::Debit(mv("d1", "B", 300)), 0);
        let r = apply(&mut l, &rev("r1", "c1", 300), 0);
        assert!(matches!(
            r,
            Reply::Reversed(ReverseAnswer {
                status: OpStatus::Reversed,
                ..
            })
        ));
        assert_eq!(bal(&l, "B"), -300);
        let again = apply(&mut l, &rev("r2", "c1", 300), 0);
        assert!(matches!(
            again,
            Reply::Reversed(ReverseAnswer {
                status: OpStatus::Reversed,
                ..
            })
        ));
        assert_eq!(l.ops["r2"].status, OpStatus::Noop);
        assert_eq!(bal(&l, "B"), -300);
    }

    #[test]
    fn reverse_refusals() {
        let mut l = ledger();
        apply(&mut l, &Request::Debit(mv("d1", "A", 100)), 0);
        assert_eq!(apply(&mut l, &rev("d1", "d1", 100), 0).http_status(), 400);
        assert_eq!(apply(&mut l, &rev("r1", "d1", 99), 0).http_status(), 409);
        apply(&mut l, &rev("r1", "d1", 100), 0);
        assert_eq!(apply(&mut l, &rev("r2", "r1", 100), 0).http_status(), 400);
        assert_eq!(bal(&l, "A"), 1000);
    }
}
