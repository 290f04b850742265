//! The invariants checked once a schedule has drained.

use crate::world::World;
use std::collections::BTreeMap;
use upi_switch::adapters::bank_api::{OpKind, OpStatus};
use upi_switch::banksim::ledger;
use upi_switch::saga::{self, Status};

pub fn check(
    world: &World,
    initial: &[BTreeMap<String, i64>],
    statuses: &mut BTreeMap<Status, u64>,
) -> Result<(), String> {
    for (i, saga) in world.sagas.iter().enumerate() {
        let status = saga.status();
        if !status.is_terminal() {
            return Err(format!("txn {i} not terminal: {:?}", saga.phase));
        }
        if world.checkpoints[i].status() != status {
            return Err(format!(
                "txn {i}: checkpoint says {:?}, saga {status:?}",
                world.checkpoints[i].status()
            ));
        }
        *statuses.entry(status).or_default() += 1;
        let payer = World::bank_index(&saga.payer.bank);
        let payee = World::bank_index(&saga.payee.bank);
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
                "txn {i} is {status:?} ({:?}) but the banks say debit={debit:?} credit={credit:?}",
                saga.reason()
            ));
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
