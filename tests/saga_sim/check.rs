//! The invariants checked once a schedule has drained.

use crate::world::{BANKS, World};
use std::collections::{BTreeMap, HashMap};
use upi_switch::adapters::bank_api::{OpKind, OpStatus};
use upi_switch::banksim::ledger;
use upi_switch::saga::{self, CollectStatus, Status};

pub fn check(
    world: &World,
    initial: &[BTreeMap<String, i64>],
    statuses: &mut BTreeMap<(&'static str, Status), u64>,
) -> Result<(), String> {
    for (i, saga) in world.sagas.iter().enumerate() {
        let kind = saga.kind.as_str();
        let status = saga.status();
        if !status.is_terminal() {
            return Err(format!("{kind} txn {i} not terminal: {:?}", saga.phase));
        }
        if world.checkpoints[i].status() != status {
            return Err(format!(
                "{kind} txn {i}: checkpoint says {:?}, saga {status:?}",
                world.checkpoints[i].status()
            ));
        }
        *statuses.entry((kind, status)).or_default() += 1;
        // Where the request says the money moves, not where the saga says.
        let (payer, payee) = &world.parties[i];
        let payer = World::bank_index(&payer.bank);
        let payee = World::bank_index(&payee.bank);
        let debit = world.banks[payer].ops.get(&saga::debit_op_id(saga.txn_id));
        let credit = world.banks[payee].ops.get(&saga::credit_op_id(saga.txn_id));
        let is = |op: Option<&ledger::OpRow>, s: OpStatus| {
            op.is_some_and(|o| o.kind.is_some() && o.status == s)
        };
        let ok = match status {
            Status::Success => is(debit, OpStatus::Applied) && is(credit, OpStatus::Applied),
            Status::Reversed => is(debit, OpStatus::Reversed) && !is(credit, OpStatus::Applied),
            Status::Failed => {
                !is(debit, OpStatus::Applied) && !is(debit, OpStatus::Reversed) && credit.is_none()
            }
            Status::Pending => false,
        };
        if !ok {
            return Err(format!(
                "{kind} txn {i} is {status:?} ({:?}) but the banks say debit={debit:?} credit={credit:?}",
                saga.reason()
            ));
        }
    }
    // Every movement at the banks is one of a saga's own, at the party
    // its request names.
    let by_id: HashMap<String, usize> = world
        .sagas
        .iter()
        .enumerate()
        .map(|(i, s)| (s.txn_id.to_string(), i))
        .collect();
    for (b, ledger) in world.banks.iter().enumerate() {
        for op in ledger.ops.values() {
            let party = match op.kind {
                Some(OpKind::Debit) => 0,
                Some(OpKind::Credit) => 1,
                _ => continue,
            };
            let Some(&i) = op.txn_id.as_ref().and_then(|t| by_id.get(t)) else {
                return Err(format!("bank {b} has an op of no saga: {op:?}"));
            };
            let (payer, payee) = &world.parties[i];
            let p = if party == 0 { payer } else { payee };
            if BANKS[b] != p.bank || op.account.as_deref() != Some(p.account.as_str()) {
                return Err(format!(
                    "{} txn {i}: {op:?} at bank {b}, but the request names {p:?}",
                    world.sagas[i].kind.as_str()
                ));
            }
        }
    }
    let mut total_before = 0i64;
    let mut total_after = 0i64;
    for (b, ledger) in world.banks.iter().enumerate() {
        for (id, acc) in &ledger.accounts {
            let start = initial[b][id];
            total_before += start;
            total_after += acc.balance_paise;
            let moved: i64 = ledger
                .ops
                .values()
                .filter(|o| {
                    o.account.as_deref() == Some(id.as_str()) && o.status == OpStatus::Applied
                })
                .map(|o| match o.kind {
                    Some(OpKind::Credit) => o.amount_paise,
                    Some(OpKind::Debit) => -o.amount_paise,
                    _ => 0,
                })
                .sum();
            if acc.balance_paise != start + moved {
                return Err(format!(
                    "bank {b} account {id}: balance {} but start {start} + applied ops {moved}",
                    acc.balance_paise
                ));
            }
        }
    }
    if total_before != total_after {
        return Err(format!(
            "money not conserved: {total_before} before, {total_after} after"
        ));
    }
    Ok(())
}

/// The acceptance properties, once every saga has ended: refunds within
/// their original (by status and at the bank), one payment per collect
/// request, one saga per idempotency key.
pub fn check_acceptance(world: &World) -> Result<(), String> {
    let db = &world.db;
    for (o, rec) in db.originals.iter().enumerate() {
        let original = &rec.original;
        let bank = &world.banks[World::bank_index(&original.payee.bank)];
        let mut succeeded = 0i64;
        // What the original payee's account paid out by refund debits, net
        // of the reverses that undid them.
        let mut paid_out = 0i64;
        for r in db.refunds.iter().filter(|r| r.original == o) {
            let saga = &world.checkpoints[r.txn];
            if saga.status() == Status::Success {
                succeeded += r.amount;
            }
            if let Some(op) = bank.ops.get(&saga::debit_op_id(saga.txn_id))
                && op.kind == Some(OpKind::Debit)
                && matches!(op.status, OpStatus::Applied | OpStatus::Reversed)
            {
                paid_out += op.amount_paise;
            }
            if let Some(op) = bank.ops.get(&saga::debit_reverse_op_id(saga.txn_id))
                && op.kind == Some(OpKind::Reverse)
                && op.status == OpStatus::Applied
            {
                paid_out -= op.amount_paise;
            }
        }
        let amount = original.amount.0;
        if succeeded > amount || paid_out > amount || paid_out != succeeded {
            return Err(format!(
                "original {o} of {amount}: SUCCESS refunds {succeeded}, paid out at the bank {paid_out}"
            ));
        }
    }
    for (c, req) in db.collects.iter().enumerate() {
        let approved = req.stored == CollectStatus::Approved;
        if req.payments.len() > 1 || approved != (req.payments.len() == 1) {
            return Err(format!(
                "collect {c} is {:?} with payments {:?}",
                req.stored, req.payments
            ));
        }
    }
    let mut sagas: Vec<usize> = db.keys.values().copied().collect();
    sagas.sort_unstable();
    sagas.dedup();
    if sagas.len() != db.keys.len() {
        return Err("two idempotency keys created one saga".into());
    }
    Ok(())
}
