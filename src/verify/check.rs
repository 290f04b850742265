//! The checking half of `upi-switch verify`, a pure function: given the
//! switch's transactions and every bank's whole change feed (and balance total
//! where the bank shows one), `check` counts what is there and lists what is
//! wrong. No I/O and no clock: the snapshot carries the time it was taken.
//!
//! How the feed is read (Bank API v1, `GET /v1/ops`): a DEBIT or CREDIT entry
//! is `APPLIED` (money moved and stands), `DECLINED` (nothing moved; also a
//! fenced op that arrived late, `ALREADY_REVERSED`) or `REVERSED` (it moved,
//! then a REVERSE undid it: net nothing). A REVERSE entry is `APPLIED` when it
//! undid its `original_op_id` at the same bank, `NOOP` when there was nothing
//! to undo (declined, already undone, or never seen: a tombstone, which is not
//! in the feed until its original arrives). So the money a feed moved, net, is
//! its APPLIED credits minus its APPLIED debits.

use super::links::{self, CollectRow, TxnLinks};
use crate::adapters::bank_api::{FeedEntry, OpKind, OpStatus};
use crate::adapters::store::{StepRow, TxnMoney};
use crate::domain::Paise;
use crate::saga::{self, Status};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

/// Everything verify read.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// When reading ended; ages of stuck transactions are measured to it.
    pub taken_at: DateTime<Utc>,
    pub txns: Vec<TxnMoney>,
    /// The latest checkpoint of (at least) every PENDING transaction.
    pub last_steps: HashMap<Uuid, StepRow>,
    pub banks: Vec<BankLedger>,
    /// Every transaction's type and what it names (refund → original, collect payment → collect).
    pub links: Vec<TxnLinks>,
    pub collects: Vec<CollectRow>,
    /// The database has payment types (P2M, refunds, collects); an older one
    /// has only P2P, and its links are not checked.
    pub payment_types: bool,
    /// The settlement ledger and windows (`None`: the database predates them).
    pub ledger: Option<super::settle::Ledger>,
}

/// One registered bank as read.
#[derive(Debug, Clone)]
pub struct BankLedger {
    pub code: String,
    /// The endpoint that answered.
    pub endpoint: String,
    /// The whole feed, in the order the bank gave it.
    pub ops: Vec<FeedEntry>,
    /// Sum of the bank's balances, when it shows them (`GET /admin/balances`).
    pub balance_total: Option<i64>,
}

/// What to check beyond the feeds, and how much to list.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Sum of all balances before any payment; the balances now must add up to it.
    pub expected_total_paise: Option<i64>,
    /// Examples kept per kind of violation.
    pub examples: usize,
}

/// Kinds of violation, in the order the report lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A transaction still PENDING.
    Stuck,
    /// SUCCESS, but not exactly one standing debit and one standing credit.
    SuccessNotSettled,
    /// REVERSED, but the debit was not applied and undone exactly once, or a credit stands.
    ReversedNotUndone,
    /// FAILED, but a debit or a credit stands.
    FailedMovedMoney,
    /// A bank op whose op_id names no transaction the switch knows.
    OrphanOp,
    /// An op whose amount is not its transaction's.
    AmountMismatch,
    /// An op at a bank or on an account that is not its transaction's payer's/payee's.
    WrongAccount,
    /// An op of a known transaction the saga never sends (unknown step, wrong kind,
    /// wrong original, another txn_id).
    UnexpectedOp,
    /// An op_id twice in one feed, or applied at two banks.
    DuplicateOp,
    /// A feed that contradicts itself (order, statuses, reverses and what they undid).
    FeedInconsistent,
    /// Money created or destroyed: feeds not netting to zero, or balances not adding up.
    MoneyNotConserved,
    /// Refunds of one original adding up to more than its amount (SUCCESS ones,
    /// or PENDING and SUCCESS ones).
    RefundOverOriginal,
    /// A refund not between its original's accounts, the other way round.
    RefundWrongParties,
    /// A refund whose original is missing, or is not a SUCCESS P2P or P2M.
    RefundNotRefundable,
    /// An APPROVED collect without its COLLECT payment (same payer, payee and amount).
    CollectPaymentMismatch,
    /// A COLLECT transaction not named by exactly one collect.
    CollectTxnUnlinked,
    /// A REQUESTED, DECLINED or EXPIRED collect with a payment.
    UnapprovedCollectPaid,
    /// A SUCCESS payment without its ledger journal.
    SettledNever,
    /// A journal of a payment that is not SUCCESS, or a payment settled twice.
    SettledWrongly,
    /// A journal in no settlement window or in two; windows that do not tile.
    JournalOutsideWindows,
    /// A window's positions that are not its journals' netting, or not what
    /// the banks' feeds hold applied for its payments.
    WindowNetMismatch,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Stuck => "stuck",
            Kind::SuccessNotSettled => "success_not_settled",
            Kind::ReversedNotUndone => "reversed_not_undone",
            Kind::FailedMovedMoney => "failed_moved_money",
            Kind::OrphanOp => "orphan_op",
            Kind::AmountMismatch => "amount_mismatch",
            Kind::WrongAccount => "wrong_account",
            Kind::UnexpectedOp => "unexpected_op",
            Kind::DuplicateOp => "duplicate_op",
            Kind::FeedInconsistent => "feed_inconsistent",
            Kind::MoneyNotConserved => "money_not_conserved",
            Kind::RefundOverOriginal => "refund_over_original",
            Kind::RefundWrongParties => "refund_wrong_parties",
            Kind::RefundNotRefundable => "refund_not_refundable",
            Kind::CollectPaymentMismatch => "collect_payment_mismatch",
            Kind::CollectTxnUnlinked => "collect_txn_unlinked",
            Kind::UnapprovedCollectPaid => "unapproved_collect_paid",
            Kind::SettledNever => "settled_never",
            Kind::SettledWrongly => "settled_wrongly",
            Kind::JournalOutsideWindows => "journal_outside_windows",
            Kind::WindowNetMismatch => "window_net_mismatch",
        }
    }
}

/// One thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub kind: Kind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub txn_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bank: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub op_id: Option<String>,
    pub detail: String,
}

/// All violations of one kind: how many, and the first few.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Group {
    pub count: u64,
    pub examples: Vec<Violation>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StatusCount {
    pub count: u64,
    pub amount_paise: i64,
}

/// One bank's feed, summed up.
#[derive(Debug, Clone, Serialize)]
pub struct BankSummary {
    pub code: String,
    pub endpoint: String,
    pub ops: u64,
    pub last_seq: Option<i64>,
    /// `"DEBIT APPLIED"` → how many.
    pub by_outcome: BTreeMap<String, u64>,
    /// APPLIED credits minus APPLIED debits.
    pub net_paise: i64,
    pub balance_paise: Option<i64>,
    /// Balances minus the feed's net: what the accounts held before the feed's first op.
    pub opening_paise: Option<i64>,
}

/// Money across all banks.
#[derive(Debug, Clone, Serialize)]
pub struct Money {
    /// Sum of the banks' nets: zero when the feeds only moved money between accounts.
    pub feed_net_paise: i64,
    /// Sum of all balances (only when every bank shows its balances).
    pub balance_paise: Option<i64>,
    /// Balances minus the feeds' net: the opening total the feeds imply.
    pub opening_paise: Option<i64>,
    pub expected_paise: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub checked_at: DateTime<Utc>,
    pub transactions: BTreeMap<Status, StatusCount>,
    /// Transactions by type (`P2P`, `P2M`, `REFUND`, `COLLECT`) and status.
    pub by_type: BTreeMap<String, BTreeMap<Status, u64>>,
    /// Collect requests by status.
    pub collects: BTreeMap<String, u64>,
    pub banks: Vec<BankSummary>,
    pub money: Money,
    pub violation_count: u64,
    pub violations: BTreeMap<Kind, Group>,
    /// What could not be checked, and why.
    pub notes: Vec<String>,
}

impl Report {
    pub fn count(&self, kind: Kind) -> u64 {
        self.violations.get(&kind).map_or(0, |g| g.count)
    }
}

/// Collects violations, keeping `examples` of each kind.
pub(super) struct Findings {
    examples: usize,
    groups: BTreeMap<Kind, Group>,
}

impl Findings {
    pub(super) fn add(
        &mut self,
        kind: Kind,
        txn_id: Option<Uuid>,
        bank: Option<&str>,
        op_id: Option<&str>,
        detail: String,
    ) {
        let group = self.groups.entry(kind).or_default();
        group.count += 1;
        if group.examples.len() < self.examples {
            group.examples.push(Violation {
                kind,
                txn_id,
                bank: bank.map(str::to_string),
                op_id: op_id.map(str::to_string),
                detail,
            });
        }
    }

    fn op(&mut self, kind: Kind, bank: &str, op: &FeedEntry, txn_id: Option<Uuid>, why: String) {
        let detail = format!("{}: {why}", describe_op(op));
        self.add(kind, txn_id, Some(bank), Some(&op.op_id), detail);
    }
}

/// `seq 7 DEBIT APPLIED ₹5.00 on ACC001`
fn describe_op(op: &FeedEntry) -> String {
    let code = op
        .code
        .as_ref()
        .map_or(String::new(), |c| format!(" ({})", c.as_str()));
    let account = op.account.as_deref().unwrap_or("no account");
    format!(
        "seq {} {} {}{code} {} on {account}",
        op.seq,
        op.kind.as_str(),
        op.status.as_str(),
        Paise(op.amount_paise).to_inr()
    )
}

/// Checks the snapshot; see the module's doc and `Kind` for what.
pub fn check(snapshot: &Snapshot, options: &Options) -> Report {
    let mut found = Findings {
        examples: options.examples,
        groups: BTreeMap::new(),
    };
    let txns: HashMap<Uuid, &TxnMoney> = snapshot.txns.iter().map(|t| (t.txn_id, t)).collect();
    let mut transactions: BTreeMap<Status, StatusCount> = [
        Status::Pending,
        Status::Success,
        Status::Failed,
        Status::Reversed,
    ]
    .into_iter()
    .map(|s| (s, StatusCount::default()))
    .collect();
    for t in &snapshot.txns {
        let c = transactions.entry(t.status).or_default();
        c.count += 1;
        c.amount_paise = c.amount_paise.saturating_add(t.amount.0);
    }

    let mut legs: HashMap<Uuid, Legs<'_>> = HashMap::new();
    // op_id → banks where it moved money (APPLIED, or REVERSED: applied, then undone).
    let mut moved_at: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut banks = Vec::new();
    for bank in &snapshot.banks {
        check_feed(bank, &mut found);
        for op in &bank.ops {
            if is_movement(op.kind) && matches!(op.status, OpStatus::Applied | OpStatus::Reversed) {
                moved_at.entry(&op.op_id).or_default().push(&bank.code);
            }
            attribute(bank, op, &txns, &mut legs, &mut found);
        }
        banks.push(summarise(bank));
    }
    let mut moved_twice: Vec<(&str, Vec<&str>)> = moved_at
        .into_iter()
        .filter(|(_, at)| at.iter().any(|b| *b != at[0]))
        .collect();
    moved_twice.sort();
    for (op_id, at) in moved_twice {
        found.add(
            Kind::DuplicateOp,
            txn_of(op_id).map(|(t, _)| t),
            None,
            Some(op_id),
            format!(
                "{op_id} moved money at {} banks: {}",
                at.len(),
                at.join(", ")
            ),
        );
    }

    for t in &snapshot.txns {
        check_status(t, legs.get(&t.txn_id), snapshot, &mut found);
    }

    let mut notes = Vec::new();
    let counts = links::check(&snapshot.links, &snapshot.collects, &txns, &mut found);
    if !snapshot.payment_types {
        notes.push(
            "the switch's database predates payment types: refunds and collects were not checked"
                .into(),
        );
    }
    match &snapshot.ledger {
        Some(ledger) => super::settle::check(ledger, &txns, &snapshot.banks, &mut found),
        None => notes
            .push("the switch's database predates settlement: the ledger was not checked".into()),
    }
    let money = check_money(&banks, options, &mut found, &mut notes);
    Report {
        checked_at: snapshot.taken_at,
        transactions,
        by_type: counts.by_type,
        collects: counts.collects,
        banks,
        money,
        violation_count: found.groups.values().map(|g| g.count).sum(),
        violations: found.groups,
        notes,
    }
}

fn is_movement(kind: OpKind) -> bool {
    matches!(kind, OpKind::Debit | OpKind::Credit)
}

/// The transaction an op_id names (`<uuid>:<step>`) and the step.
fn txn_of(op_id: &str) -> Option<(Uuid, &str)> {
    let (prefix, step) = op_id.split_once(':').unwrap_or((op_id, ""));
    Uuid::parse_str(prefix).ok().map(|t| (t, step))
}

/// The order, statuses and reverses of one bank's feed must make sense on their own.
fn check_feed(bank: &BankLedger, found: &mut Findings) {
    let code = bank.code.as_str();
    let mut by_id: HashMap<&str, &FeedEntry> = HashMap::new();
    let mut last_seq: Option<i64> = None;
    for op in &bank.ops {
        if let Some(last) = last_seq
            && op.seq <= last
        {
            let why = format!("comes after seq {last}: the feed's seq must strictly increase");
            found.op(Kind::FeedInconsistent, code, op, None, why);
        }
        last_seq = Some(op.seq);
        if by_id.insert(&op.op_id, op).is_some() {
            let why = "the op_id is in this feed more than once".to_string();
            found.op(Kind::DuplicateOp, code, op, None, why);
        }
        let sensible = match op.kind {
            OpKind::Debit | OpKind::Credit => op.status != OpStatus::Noop,
            OpKind::Reverse => matches!(op.status, OpStatus::Applied | OpStatus::Noop),
        };
        if !sensible {
            let why = "no op of this kind can have this status".to_string();
            found.op(Kind::FeedInconsistent, code, op, None, why);
        }
    }
    let mut undone: HashMap<&str, usize> = HashMap::new();
    for op in &bank.ops {
        if op.kind != OpKind::Reverse || op.status != OpStatus::Applied {
            continue;
        }
        let original = op.original_op_id.as_deref();
        let why = match original.and_then(|o| by_id.get(o)) {
            None => Some(format!(
                "undid {}, which is not in this feed",
                original.unwrap_or("an op it does not name")
            )),
            Some(orig) if !is_movement(orig.kind) || orig.status != OpStatus::Reversed => {
                Some(format!(
                    "undid {}, which the feed shows as {}",
                    orig.op_id,
                    describe_op(orig)
                ))
            }
            Some(orig) => {
                *undone.entry(orig.op_id.as_str()).or_default() += 1;
                (orig.amount_paise != op.amount_paise || orig.account != op.account).then(|| {
                    format!(
                        "undid {} with another amount or account ({})",
                        orig.op_id,
                        describe_op(orig)
                    )
                })
            }
        };
        if let Some(why) = why {
            found.op(Kind::FeedInconsistent, code, op, None, why);
        }
    }
    for op in &bank.ops {
        if is_movement(op.kind) && op.status == OpStatus::Reversed {
            let n = undone.get(op.op_id.as_str()).copied().unwrap_or(0);
            if n != 1 {
                let why = format!("REVERSED, but {n} applied reverses in the feed undo it");
                found.op(Kind::FeedInconsistent, code, op, None, why);
            }
        }
    }
}

/// Which step of its transaction an op is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Debit,
    Credit,
    DebitReverse,
    CreditReverse,
}

/// A transaction's debit and credit entries, with the bank each was found at.
#[derive(Default)]
struct Legs<'a> {
    debit: Vec<(&'a str, &'a FeedEntry)>,
    credit: Vec<(&'a str, &'a FeedEntry)>,
}

/// Ties an op to its transaction and checks it against it.
fn attribute<'a>(
    bank: &'a BankLedger,
    op: &'a FeedEntry,
    txns: &HashMap<Uuid, &TxnMoney>,
    legs: &mut HashMap<Uuid, Legs<'a>>,
    found: &mut Findings,
) {
    let code = bank.code.as_str();
    let Some((txn, step_text)) = txn_of(&op.op_id).and_then(|(id, s)| Some((*txns.get(&id)?, s)))
    else {
        let why = "its op_id names no transaction the switch knows".to_string();
        found.op(Kind::OrphanOp, code, op, None, why);
        return;
    };
    let id = txn.txn_id;
    let step = match step_text {
        "debit" => Step::Debit,
        "credit" => Step::Credit,
        "debit:rev" => Step::DebitReverse,
        "credit:rev" => Step::CreditReverse,
        other => {
            let why = format!("step {other:?} is none the saga sends");
            found.op(Kind::UnexpectedOp, code, op, Some(id), why);
            return;
        }
    };
    let (kind, original, bank_code, account) = match step {
        Step::Debit => (OpKind::Debit, None, &txn.payer_bank, &txn.payer_account),
        Step::Credit => (OpKind::Credit, None, &txn.payee_bank, &txn.payee_account),
        Step::DebitReverse => (
            OpKind::Reverse,
            Some(saga::debit_op_id(id)),
            &txn.payer_bank,
            &txn.payer_account,
        ),
        Step::CreditReverse => (
            OpKind::Reverse,
            Some(saga::credit_op_id(id)),
            &txn.payee_bank,
            &txn.payee_account,
        ),
    };
    if op.kind != kind || op.original_op_id != original {
        let why = format!(
            "the saga sends this op as {}{}",
            kind.as_str(),
            original.map_or(String::new(), |o| format!(" of {o}"))
        );
        found.op(Kind::UnexpectedOp, code, op, Some(id), why);
        return;
    }
    if let Some(named) = &op.txn_id
        && Uuid::parse_str(named).ok() != Some(id)
    {
        let why = format!("it names txn_id {named}");
        found.op(Kind::UnexpectedOp, code, op, Some(id), why);
    }
    // A reverse of an op the bank never saw has no account (a tombstone's).
    let account_ok = match &op.account {
        Some(a) => a == account,
        None => op.kind == OpKind::Reverse,
    };
    if code != bank_code || !account_ok {
        let why = format!("the transaction's account here is {bank_code} {account}");
        found.op(Kind::WrongAccount, code, op, Some(id), why);
    }
    if op.amount_paise != txn.amount.0 {
        let why = format!("the transaction's amount is {}", txn.amount.to_inr());
        found.op(Kind::AmountMismatch, code, op, Some(id), why);
    }
    let entry = legs.entry(id).or_default();
    match step {
        Step::Debit => entry.debit.push((code, op)),
        Step::Credit => entry.credit.push((code, op)),
        Step::DebitReverse | Step::CreditReverse => {}
    }
}

/// Entries of one leg that stand (`APPLIED`) and that moved and were undone (`REVERSED`).
fn tally(leg: &[(&str, &FeedEntry)]) -> (usize, usize) {
    let n = |s: OpStatus| leg.iter().filter(|(_, op)| op.status == s).count();
    (n(OpStatus::Applied), n(OpStatus::Reversed))
}

fn describe_leg(leg: &[(&str, &FeedEntry)]) -> String {
    if leg.is_empty() {
        return "none".into();
    }
    leg.iter()
        .map(|(bank, op)| {
            let code = op
                .code
                .as_ref()
                .map_or(String::new(), |c| format!(" ({})", c.as_str()));
            format!("{}{code} at {bank}", op.status.as_str())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Each status promises something about the money (switch API v1).
fn check_status(
    txn: &TxnMoney,
    legs: Option<&Legs<'_>>,
    snapshot: &Snapshot,
    found: &mut Findings,
) {
    let empty = Legs::default();
    let legs = legs.unwrap_or(&empty);
    let (debit_stands, debit_undone) = tally(&legs.debit);
    let (credit_stands, credit_undone) = tally(&legs.credit);
    let (ok, kind) = match txn.status {
        Status::Pending => {
            let age = snapshot.taken_at - txn.created_at;
            let last = match snapshot.last_steps.get(&txn.txn_id) {
                Some(step) => format!(
                    "last step {}{} {} before",
                    step.state,
                    step.op_id
                        .as_deref()
                        .map_or(String::new(), |o| format!(" (op {o})")),
                    duration_text(snapshot.taken_at - step.at)
                ),
                None => "no checkpoint".into(),
            };
            let detail = format!(
                "PENDING for {} ({} from {} {} to {} {}); {last}",
                duration_text(age),
                txn.amount.to_inr(),
                txn.payer_bank,
                txn.payer_account,
                txn.payee_bank,
                txn.payee_account
            );
            found.add(Kind::Stuck, Some(txn.txn_id), None, None, detail);
            return;
        }
        Status::Success => (
            debit_stands == 1 && debit_undone == 0 && credit_stands == 1 && credit_undone == 0,
            Kind::SuccessNotSettled,
        ),
        Status::Reversed => (
            debit_stands == 0 && debit_undone == 1 && credit_stands == 0,
            Kind::ReversedNotUndone,
        ),
        // A fence may have found the debit applied and undone it: still no money moved.
        Status::Failed => (
            debit_stands == 0 && credit_stands == 0,
            Kind::FailedMovedMoney,
        ),
    };
    if !ok {
        let detail = format!(
            "{} {} but the banks show debit: {}; credit: {}",
            txn.status.as_str(),
            txn.amount.to_inr(),
            describe_leg(&legs.debit),
            describe_leg(&legs.credit)
        );
        found.add(kind, Some(txn.txn_id), None, None, detail);
    }
}

fn summarise(bank: &BankLedger) -> BankSummary {
    let mut by_outcome = BTreeMap::new();
    let mut net: i64 = 0;
    for op in &bank.ops {
        *by_outcome
            .entry(format!("{} {}", op.kind.as_str(), op.status.as_str()))
            .or_default() += 1;
        if op.status == OpStatus::Applied {
            match op.kind {
                OpKind::Credit => net = net.saturating_add(op.amount_paise),
                OpKind::Debit => net = net.saturating_sub(op.amount_paise),
                OpKind::Reverse => {}
            }
        }
    }
    BankSummary {
        code: bank.code.clone(),
        endpoint: bank.endpoint.clone(),
        ops: bank.ops.len() as u64,
        last_seq: bank.ops.last().map(|o| o.seq),
        by_outcome,
        net_paise: net,
        balance_paise: bank.balance_total,
        opening_paise: bank.balance_total.map(|b| b.saturating_sub(net)),
    }
}

/// Conservation. The feeds alone say whether the movements only moved money
/// between accounts (their nets add up to zero). Balances add the opening
/// total the feeds imply; only a total known from elsewhere (the seed) can
/// show balances changed outside the feeds.
fn check_money(
    banks: &[BankSummary],
    options: &Options,
    found: &mut Findings,
    notes: &mut Vec<String>,
) -> Money {
    let feed_net = banks
        .iter()
        .fold(0i64, |a, b| a.saturating_add(b.net_paise));
    let balance = banks
        .iter()
        .map(|b| b.balance_paise)
        .try_fold(0i64, |a, b| b.map(|b| a.saturating_add(b)));
    if feed_net != 0 {
        let per_bank: Vec<String> = banks
            .iter()
            .map(|b| format!("{} {}", b.code, Paise(b.net_paise).to_inr()))
            .collect();
        found.add(
            Kind::MoneyNotConserved,
            None,
            None,
            None,
            format!(
                "the banks' feeds net to {} across all banks ({}): applied debits and credits do not cancel out",
                Paise(feed_net).to_inr(),
                per_bank.join(", ")
            ),
        );
    }
    match (options.expected_total_paise, balance) {
        (Some(expected), Some(total)) if expected != total => found.add(
            Kind::MoneyNotConserved,
            None,
            None,
            None,
            format!(
                "the balances add up to {} but the expected total is {} (difference {})",
                Paise(total).to_inr(),
                Paise(expected).to_inr(),
                Paise(total.saturating_sub(expected)).to_inr()
            ),
        ),
        (Some(_), None) => notes
            .push("the expected total was not checked: not every bank shows its balances".into()),
        _ => {}
    }
    if balance.is_none() {
        let missing: Vec<&str> = banks
            .iter()
            .filter(|b| b.balance_paise.is_none())
            .map(|b| b.code.as_str())
            .collect();
        notes.push(format!(
            "no balances from {} (GET /admin/balances): only the feeds were checked for conservation",
            missing.join(", ")
        ));
    }
    Money {
        feed_net_paise: feed_net,
        balance_paise: balance,
        opening_paise: balance.map(|b| b.saturating_sub(feed_net)),
        expected_paise: options.expected_total_paise,
    }
}

/// `42 s`, `3 min 5 s`, `2 h 10 min`.
pub fn duration_text(d: chrono::TimeDelta) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::bank_api::DeclineCode;

    const AMOUNT: i64 = 15_075;

    fn txn(n: u128, status: Status) -> TxnMoney {
        TxnMoney {
            txn_id: Uuid::from_u128(n),
            status,
            payer_bank: "HDFC".into(),
            payer_account: "ACC001".into(),
            payee_bank: "ICICI".into(),
            payee_account: "ACC009".into(),
            amount: Paise(AMOUNT),
            created_at: DateTime::UNIX_EPOCH,
        }
    }

    fn op(op_id: String, kind: OpKind, status: OpStatus, account: &str) -> FeedEntry {
        FeedEntry {
            seq: 0,
            op_id,
            kind,
            status,
            account: Some(account.into()),
            amount_paise: AMOUNT,
            txn_id: None,
            code: None,
            original_op_id: None,
            at: "1970-01-01T00:00:00.000Z".into(),
        }
    }

    fn reverse(of: String, status: OpStatus, account: &str) -> FeedEntry {
        let mut r = op(format!("{of}:rev"), OpKind::Reverse, status, account);
        r.original_op_id = Some(of);
        r
    }

    fn declined(mut e: FeedEntry, code: DeclineCode) -> FeedEntry {
        e.code = Some(code);
        e
    }

    fn bank(code: &str, ops: Vec<FeedEntry>, balance: i64) -> BankLedger {
        let ops = ops
            .into_iter()
            .enumerate()
            .map(|(i, mut e)| {
                e.seq = i as i64 + 1;
                e
            })
            .collect();
        BankLedger {
            code: code.into(),
            endpoint: format!("http://{code}"),
            ops,
            balance_total: Some(balance),
        }
    }

    /// One SUCCESS (1), one FAILED on insufficient funds (2), one REVERSED on a
    /// frozen payee (3), with feeds exactly as the simulator writes them.
    fn world() -> Snapshot {
        let id = |n: u128| Uuid::from_u128(n);
        let hdfc = vec![
            op(
                saga::debit_op_id(id(1)),
                OpKind::Debit,
                OpStatus::Applied,
                "ACC001",
            ),
            declined(
                op(
                    saga::debit_op_id(id(2)),
                    OpKind::Debit,
                    OpStatus::Declined,
                    "ACC001",
                ),
                DeclineCode::InsufficientFunds,
            ),
            op(
                saga::debit_op_id(id(3)),
                OpKind::Debit,
                OpStatus::Reversed,
                "ACC001",
            ),
            reverse(saga::debit_op_id(id(3)), OpStatus::Applied, "ACC001"),
        ];
        let icici = vec![
            op(
                saga::credit_op_id(id(1)),
                OpKind::Credit,
                OpStatus::Applied,
                "ACC009",
            ),
            declined(
                op(
                    saga::credit_op_id(id(3)),
                    OpKind::Credit,
                    OpStatus::Declined,
                    "ACC009",
                ),
                DeclineCode::AccountFrozen,
            ),
        ];
        Snapshot {
            taken_at: DateTime::UNIX_EPOCH + chrono::TimeDelta::seconds(90),
            txns: vec![
                txn(1, Status::Success),
                txn(2, Status::Failed),
                txn(3, Status::Reversed),
            ],
            last_steps: HashMap::new(),
            banks: vec![
                bank("HDFC", hdfc, 1_000_000 - AMOUNT),
                bank("ICICI", icici, 1_000_000 + AMOUNT),
            ],
            links: (1..=3).map(p2p_link).collect(),
            collects: vec![],
            payment_types: true,
            ledger: None,
        }
    }

    fn p2p_link(n: u128) -> TxnLinks {
        TxnLinks {
            txn_id: Uuid::from_u128(n),
            kind: "P2P".into(),
            payer_vpa: "alice@hdfc".into(),
            payee_vpa: "bob@icici".into(),
            original_txn_id: None,
            collect_id: None,
        }
    }

    fn run(s: &Snapshot) -> Report {
        check(
            s,
            &Options {
                expected_total_paise: Some(2_000_000),
                examples: 5,
            },
        )
    }

    /// The only kinds found, with their counts.
    fn kinds(r: &Report) -> Vec<(Kind, u64)> {
        r.violations.iter().map(|(k, g)| (*k, g.count)).collect()
    }

    /// Adds an entry at the end of a feed, with the next seq.
    fn append(ops: &mut Vec<FeedEntry>, mut e: FeedEntry) {
        e.seq = ops.last().map_or(1, |o| o.seq + 1);
        ops.push(e);
    }

    fn hdfc(s: &mut Snapshot) -> &mut Vec<FeedEntry> {
        &mut s.banks[0].ops
    }

    fn txn_mut(s: &mut Snapshot, n: u128) -> &mut TxnMoney {
        &mut s.txns[n as usize - 1]
    }

    #[test]
    fn a_clean_world_has_no_violation_and_adds_up() {
        let r = run(&world());
        assert_eq!(kinds(&r), []);
        assert_eq!(r.violation_count, 0);
        assert_eq!(r.transactions[&Status::Success].count, 1);
        assert_eq!(r.transactions[&Status::Failed].count, 1);
        assert_eq!(r.transactions[&Status::Reversed].count, 1);
        assert_eq!(r.transactions[&Status::Pending].count, 0);
        assert_eq!(r.money.feed_net_paise, 0);
        assert_eq!(r.money.balance_paise, Some(2_000_000));
        assert_eq!(r.money.opening_paise, Some(2_000_000));
        assert_eq!(r.banks[0].net_paise, -AMOUNT);
        assert_eq!(r.banks[0].opening_paise, Some(1_000_000));
        assert_eq!(r.banks[0].by_outcome["DEBIT REVERSED"], 1);
        assert_eq!(r.banks[0].by_outcome["REVERSE APPLIED"], 1);
        // The unit world has no settlement tables (`ledger: None`): verify
        // says the ledger went unchecked, and notes nothing else.
        assert_eq!(
            r.notes,
            ["the switch's database predates settlement: the ledger was not checked"],
        );
    }

    #[test]
    fn a_fenced_debit_on_a_failed_transaction_is_fine() {
        // FAILED after a fence: the debit's tombstone is not in the feed, the
        // reverse is NOOP; or the fence found it applied and undid it.
        let mut s = world();
        let id = Uuid::from_u128(2);
        let mut fence = reverse(saga::debit_op_id(id), OpStatus::Noop, "ACC001");
        fence.account = None;
        fence.seq = 2;
        hdfc(&mut s)[1] = fence;
        assert_eq!(kinds(&run(&s)), []);
        let mut s = world();
        hdfc(&mut s)[1].status = OpStatus::Reversed;
        hdfc(&mut s)[1].code = None;
        append(
            hdfc(&mut s),
            reverse(saga::debit_op_id(id), OpStatus::Applied, "ACC001"),
        );
        assert_eq!(kinds(&run(&s)), []);
    }

    #[test]
    fn pending_is_stuck_with_its_age_and_last_step() {
        let mut s = world();
        txn_mut(&mut s, 1).status = Status::Pending;
        s.last_steps.insert(
            Uuid::from_u128(1),
            StepRow {
                state: "CREDIT_UNKNOWN".into(),
                at: DateTime::UNIX_EPOCH + chrono::TimeDelta::seconds(30),
                op_id: Some(saga::credit_op_id(Uuid::from_u128(1))),
                detail: None,
            },
        );
        let r = run(&s);
        assert_eq!(kinds(&r), [(Kind::Stuck, 1)]);
        let detail = &r.violations[&Kind::Stuck].examples[0].detail;
        assert!(detail.contains("PENDING for 1 min 30 s"), "{detail}");
        assert!(detail.contains("last step CREDIT_UNKNOWN"), "{detail}");
        assert!(detail.contains("1 min 0 s before"), "{detail}");
    }

    #[test]
    fn success_without_its_credit_is_not_settled() {
        let mut s = world();
        txn_mut(&mut s, 2).status = Status::Success; // it was FAILED
        let r = run(&s);
        assert_eq!(kinds(&r), [(Kind::SuccessNotSettled, 1)]);
        let v = &r.violations[&Kind::SuccessNotSettled].examples[0];
        assert_eq!(v.txn_id, Some(Uuid::from_u128(2)));
        assert!(
            v.detail.contains("DECLINED (INSUFFICIENT_FUNDS) at HDFC"),
            "{}",
            v.detail
        );
        assert!(v.detail.contains("credit: none"), "{}", v.detail);
    }

    #[test]
    fn reversed_with_a_standing_credit_is_not_undone() {
        let mut s = world();
        txn_mut(&mut s, 1).status = Status::Reversed; // it was SUCCESS
        assert_eq!(kinds(&run(&s)), [(Kind::ReversedNotUndone, 1)]);
    }

    #[test]
    fn failed_with_money_moved() {
        let mut s = world();
        txn_mut(&mut s, 1).status = Status::Failed; // it was SUCCESS
        assert_eq!(kinds(&run(&s)), [(Kind::FailedMovedMoney, 1)]);
    }

    #[test]
    fn ops_of_an_unknown_transaction_are_orphans() {
        let mut s = world();
        s.txns.remove(0); // the SUCCESS: its debit and credit stay in the feeds
        let r = run(&s);
        assert_eq!(kinds(&r), [(Kind::OrphanOp, 2)]);
        let mut s = world();
        append(
            hdfc(&mut s),
            op(
                "bench-1".into(),
                OpKind::Debit,
                OpStatus::Declined,
                "ACC001",
            ),
        );
        assert_eq!(kinds(&run(&s)), [(Kind::OrphanOp, 1)]);
    }

    #[test]
    fn an_op_of_another_amount() {
        let mut s = world();
        txn_mut(&mut s, 3).amount = Paise(AMOUNT + 1);
        let r = run(&s);
        // Debit, its reverse and the declined credit all carry the old amount.
        assert_eq!(kinds(&r), [(Kind::AmountMismatch, 3)]);
    }

    #[test]
    fn an_op_on_another_account_or_bank() {
        let mut s = world();
        txn_mut(&mut s, 1).payee_account = "ACC002".into();
        assert_eq!(kinds(&run(&s)), [(Kind::WrongAccount, 1)]);
        let mut s = world();
        txn_mut(&mut s, 2).payer_bank = "SBI".into();
        assert_eq!(kinds(&run(&s)), [(Kind::WrongAccount, 1)]);
    }

    #[test]
    fn steps_the_saga_never_sends() {
        let mut s = world();
        let id = Uuid::from_u128(1);
        append(
            hdfc(&mut s),
            op(
                format!("{id}:refund"),
                OpKind::Credit,
                OpStatus::Declined,
                "ACC001",
            ),
        );
        assert_eq!(kinds(&run(&s)), [(Kind::UnexpectedOp, 1)]);
        let mut s = world();
        hdfc(&mut s)[0].kind = OpKind::Credit; // the debit recorded as a credit
        let r = run(&s);
        assert_eq!(r.count(Kind::UnexpectedOp), 1);
        let mut s = world();
        hdfc(&mut s)[0].txn_id = Some(Uuid::from_u128(2).to_string());
        assert_eq!(kinds(&run(&s)), [(Kind::UnexpectedOp, 1)]);
    }

    #[test]
    fn the_same_op_twice() {
        let mut s = world();
        let again = hdfc(&mut s)[0].clone();
        append(hdfc(&mut s), again);
        let s = Snapshot {
            banks: vec![
                bank("HDFC", s.banks[0].ops.clone(), 1_000_000 - 2 * AMOUNT),
                s.banks[1].clone(),
            ],
            ..s
        };
        let r = run(&s);
        assert_eq!(r.count(Kind::DuplicateOp), 1);
        assert_eq!(r.count(Kind::SuccessNotSettled), 1, "two standing debits");
        // Applied at two banks (the second is also on the wrong bank).
        let mut s = world();
        let debit = hdfc(&mut s)[0].clone();
        s.banks[1].ops.push(FeedEntry { seq: 3, ..debit });
        let r = run(&s);
        assert_eq!(r.count(Kind::DuplicateOp), 1);
        assert_eq!(r.count(Kind::WrongAccount), 1);
    }

    #[test]
    fn feeds_that_contradict_themselves() {
        // A REVERSED debit without the reverse that undid it.
        let mut s = world();
        hdfc(&mut s).pop();
        assert_eq!(kinds(&run(&s)), [(Kind::FeedInconsistent, 1)]);
        // An applied reverse of an op the feed shows as still applied.
        let mut s = world();
        let id = Uuid::from_u128(1);
        append(
            hdfc(&mut s),
            FeedEntry {
                seq: 5,
                ..reverse(saga::debit_op_id(id), OpStatus::Applied, "ACC001")
            },
        );
        assert_eq!(run(&s).count(Kind::FeedInconsistent), 1);
        // Out of order.
        let mut s = world();
        hdfc(&mut s)[2].seq = 1;
        assert_eq!(kinds(&run(&s)), [(Kind::FeedInconsistent, 1)]);
    }

    #[test]
    fn money_created_or_destroyed() {
        // Balances changed outside the feeds: only the expected total shows it.
        let mut s = world();
        s.banks[0].balance_total = Some(1_000_000 - AMOUNT + 1);
        let r = run(&s);
        assert_eq!(kinds(&r), [(Kind::MoneyNotConserved, 1)]);
        assert_eq!(r.money.opening_paise, Some(2_000_001));
        let unchecked = check(
            &s,
            &Options {
                expected_total_paise: None,
                examples: 5,
            },
        );
        assert_eq!(kinds(&unchecked), []);
        // An orphan debit: the feeds no longer net to zero.
        let mut s = world();
        append(
            hdfc(&mut s),
            op("x:debit".into(), OpKind::Debit, OpStatus::Applied, "ACC001"),
        );
        s.banks[0].balance_total = Some(1_000_000 - 2 * AMOUNT);
        let r = check(
            &s,
            &Options {
                expected_total_paise: None,
                examples: 5,
            },
        );
        assert_eq!(
            kinds(&r),
            [(Kind::OrphanOp, 1), (Kind::MoneyNotConserved, 1)]
        );
        assert_eq!(r.money.feed_net_paise, -AMOUNT);
    }

    #[test]
    fn examples_are_capped_but_counts_are_not() {
        let mut s = world();
        for i in 0..20 {
            append(
                hdfc(&mut s),
                op(
                    format!("junk{i}"),
                    OpKind::Debit,
                    OpStatus::Declined,
                    "ACC001",
                ),
            );
        }
        let r = check(
            &s,
            &Options {
                expected_total_paise: None,
                examples: 3,
            },
        );
        assert_eq!(r.violations[&Kind::OrphanOp].count, 20);
        assert_eq!(r.violations[&Kind::OrphanOp].examples.len(), 3);
    }

    #[test]
    fn banks_without_balances_are_noted() {
        let mut s = world();
        s.banks[1].balance_total = None;
        let r = run(&s);
        assert_eq!(kinds(&r), []);
        assert_eq!(r.money.balance_paise, None);
        // Two banks without balances, and the ledger unchecked.
        assert_eq!(r.notes.len(), 3, "{:?}", r.notes);
    }
}
