//! Verify's settlement checks (pure): the ledger against the transactions
//! and the banks' feeds. Every SUCCESS payment has exactly one journal and
//! nothing else has one (`settled_never`, `settled_wrongly`); every journal
//! lies in exactly one window and the windows tile the journal ids
//! (`journal_outside_windows`); each finished window's positions are the
//! netting of its journals and of what the banks' feeds hold applied for
//! them (`window_net_mismatch`).

use super::check::{BankLedger, Findings, Kind};
use crate::adapters::bank_api::{OpKind, OpStatus};
use crate::adapters::store::TxnMoney;
use crate::saga::Status;
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

/// One journal as read.
#[derive(Debug, Clone)]
pub struct Journal {
    pub id: i64,
    pub txn_id: Uuid,
    pub payer_bank: String,
    pub payee_bank: String,
    pub amount_paise: i64,
}

/// One settlement window as read, with its written positions
/// (bank → (debits, credits)) once finished.
#[derive(Debug, Clone)]
pub struct Window {
    pub window_id: i64,
    pub after_journal_id: i64,
    /// `None`: the open window.
    pub last_journal_id: Option<i64>,
    pub positions: Option<BTreeMap<String, (i64, i64)>>,
}

/// The switch's ledger and windows.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    pub journals: Vec<Journal>,
    pub windows: Vec<Window>,
}

/// Runs the checks, adding what it finds.
pub(super) fn check(
    ledger: &Ledger,
    txns: &HashMap<Uuid, &TxnMoney>,
    banks: &[BankLedger],
    found: &mut Findings,
) {
    let mut journals_of: HashMap<Uuid, usize> = HashMap::new();
    for j in &ledger.journals {
        *journals_of.entry(j.txn_id).or_default() += 1;
        let status = txns.get(&j.txn_id).map(|t| t.status);
        if status != Some(Status::Success) {
            found.add(
                Kind::SettledWrongly,
                Some(j.txn_id),
                None,
                None,
                format!(
                    "journal {} settles a payment that is {status:?}, not SUCCESS",
                    j.id
                ),
            );
        }
    }
    for (txn, n) in &journals_of {
        if *n > 1 {
            found.add(
                Kind::SettledWrongly,
                Some(*txn),
                None,
                None,
                format!("settled {n} times"),
            );
        }
    }
    for t in txns.values().filter(|t| t.status == Status::Success) {
        if !journals_of.contains_key(&t.txn_id) {
            found.add(
                Kind::SettledNever,
                Some(t.txn_id),
                None,
                None,
                "a SUCCESS payment without a journal".into(),
            );
        }
    }
    let mut windows = ledger.windows.clone();
    windows.sort_by_key(|w| w.window_id);
    for pair in windows.windows(2) {
        if pair[0].last_journal_id != Some(pair[1].after_journal_id) {
            found.add(
                Kind::JournalOutsideWindows,
                None,
                None,
                None,
                format!(
                    "window {} ends at journal {:?} but window {} starts after {}",
                    pair[0].window_id,
                    pair[0].last_journal_id,
                    pair[1].window_id,
                    pair[1].after_journal_id
                ),
            );
        }
    }
    let in_window = |j: &Journal, w: &Window| {
        j.id > w.after_journal_id && w.last_journal_id.is_none_or(|l| j.id <= l)
    };
    for j in &ledger.journals {
        let n = windows.iter().filter(|w| in_window(j, w)).count();
        if n != 1 {
            found.add(
                Kind::JournalOutsideWindows,
                Some(j.txn_id),
                None,
                None,
                format!("journal {} is in {n} windows", j.id),
            );
        }
    }
    // What the feeds hold applied (and not undone): op_id@bank → amount.
    let mut standing: HashMap<(&str, &str), i64> = HashMap::new();
    for bank in banks {
        for op in &bank.ops {
            if matches!(op.kind, OpKind::Debit | OpKind::Credit) && op.status == OpStatus::Applied {
                standing.insert((bank.code.as_str(), op.op_id.as_str()), op.amount_paise);
            }
        }
    }
    for w in windows.iter().filter(|w| w.positions.is_some()) {
        let mut from_ledger: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        let mut from_feeds: BTreeMap<String, i64> = BTreeMap::new();
        for j in ledger.journals.iter().filter(|j| in_window(j, w)) {
            from_ledger.entry(j.payer_bank.clone()).or_default().0 += j.amount_paise;
            from_ledger.entry(j.payee_bank.clone()).or_default().1 += j.amount_paise;
            let debit = standing
                .get(&(
                    j.payer_bank.as_str(),
                    format!("{}:debit", j.txn_id).as_str(),
                ))
                .copied()
                .unwrap_or(0);
            let credit = standing
                .get(&(
                    j.payee_bank.as_str(),
                    format!("{}:credit", j.txn_id).as_str(),
                ))
                .copied()
                .unwrap_or(0);
            *from_feeds.entry(j.payer_bank.clone()).or_default() -= debit;
            *from_feeds.entry(j.payee_bank.clone()).or_default() += credit;
        }
        let written = w.positions.clone().unwrap_or_default();
        if written != from_ledger {
            found.add(
                Kind::WindowNetMismatch,
                None,
                None,
                None,
                format!(
                    "window {}: positions written {written:?}, its journals net {from_ledger:?}",
                    w.window_id
                ),
            );
        }
        for (bank, (debits, credits)) in &written {
            let feeds = from_feeds.get(bank).copied().unwrap_or(0);
            if credits - debits != feeds {
                found.add(Kind::WindowNetMismatch, None, Some(bank), None, format!(
                    "window {}: net {} paise written, the banks' feeds hold {feeds} paise applied for its payments",
                    w.window_id, credits - debits));
            }
        }
    }
}
