//! The acceptance database: which sagas exist at all. Payments, refunds and
//! collect approvals reach the switch at random times, sometimes together
//! (one writer batch) and sometimes twice under one idempotency key. Each
//! batch is decided the way the writer decides it under its database locks:
//! the model reads the holdings from the current statuses (the rows as
//! checkpointed), builds the real `saga::guards::Book` from them and asks it
//! about each create in arrival order. An admitted create becomes a saga
//! that runs through the same network, crashes and takeovers as any other.
//!
//! The model also decides every create itself, from the statuses, and
//! reports a violation when the `Book` disagrees; but first it checks the
//! property: after every acceptance the `PENDING` + `SUCCESS` refunds of an
//! original stay within its amount, and a collect request has at most one
//! payment.

use crate::world::{BANKS, Item, MERCHANT, World};
use std::collections::{BTreeMap, HashMap};
use upi_switch::domain::Paise;
use upi_switch::saga::guards::{Book, Guard, Holdings, Refusal};
use upi_switch::saga::{CollectStatus, Original, Party, PaymentType, Saga, Status};
use uuid::Uuid;

/// A request that creates (or would create) a saga.
#[derive(Debug, Clone)]
pub enum Create {
    /// A P2P or P2M payment (`original`: its record, which refunds name).
    Pay { original: usize },
    /// A refund of `original` under the client's idempotency key; `tries`:
    /// how often the client asks again while the original is not `SUCCESS`.
    Refund {
        key: String,
        original: usize,
        amount: Paise,
        tries: u8,
    },
    /// The payer approves a collect request (`key`: the client's idempotency key).
    Approve { key: String, collect: usize },
    /// The payer declines it.
    Decline { collect: usize },
}

/// A payment that refunds may name.
pub struct OriginalRec {
    pub original: Original,
    /// A `SUCCESS` payment from before the schedule (its money moved then).
    pub before: bool,
    /// Its saga, once accepted.
    pub txn: Option<usize>,
}

pub struct RefundRec {
    pub txn: usize,
    pub original: usize,
    pub amount: i64,
}

pub struct CollectReq {
    pub id: Uuid,
    pub payer: Party,
    pub payee: Party,
    pub amount: Paise,
    pub expires_at: u64,
    /// The stored status (`at` derives expiry from `expires_at`).
    pub stored: CollectStatus,
    /// The sagas that paid it: at most one.
    pub payments: Vec<usize>,
}

pub struct Db {
    seed: u64,
    next_id: u64,
    pub originals: Vec<OriginalRec>,
    pub refunds: Vec<RefundRec>,
    pub collects: Vec<CollectReq>,
    /// Idempotency key → the saga it created.
    pub keys: HashMap<String, usize>,
}

impl Db {
    pub fn new(seed: u64) -> Db {
        Db {
            seed,
            next_id: 0,
            originals: Vec::new(),
            refunds: Vec::new(),
            collects: Vec::new(),
            keys: HashMap::new(),
        }
    }

    fn new_id(&mut self) -> Uuid {
        self.next_id += 1;
        Uuid::from_u64_pair(self.seed, self.next_id)
    }
}

/// A refund amount that often does not fit beside the others.
fn refund_amount(world: &mut World, original: Paise) -> Paise {
    let a = original.0;
    Paise(match world.rng.below(4) {
        0 => a,
        1 => (a / 2).max(1),
        2 => (a / 3).max(1),
        _ => 1 + world.rng.below(a as u64) as i64,
    })
}

impl World {
    fn person(&mut self) -> Party {
        Party {
            bank: BANKS[self.rng.below(2) as usize].into(),
            account: format!("A{}", self.rng.below(3)),
        }
    }

    /// A payee other than `payer`: a person or `MERCHANT`, sometimes an
    /// account that does not exist.
    fn payee(&mut self, payer: &Party, merchant: bool) -> Party {
        let mut p = self.person();
        if merchant {
            p.account = MERCHANT.into();
        } else if p == *payer {
            p.account = if p.account == "A0" { "A1" } else { "A0" }.into();
        }
        if self.rng.chance(50) {
            p.account = "NOPE".into();
        }
        p
    }

    /// A moment when refunds and approvals arrive: a coarse grid, so that
    /// some land in one batch.
    fn slot(&mut self) -> u64 {
        self.rng.below(16) * 400
    }

    /// Draws the schedule's requests and queues them as batches.
    pub fn schedule_requests(&mut self) {
        let mut batches: BTreeMap<u64, Vec<Create>> = BTreeMap::new();
        let n = 1 + self.rng.below(3);
        for _ in 0..n {
            let payer = self.person();
            let kind = match self.rng.below(3) {
                0 => PaymentType::P2P,
                1 => PaymentType::P2M,
                _ => PaymentType::Collect,
            };
            let merchant =
                kind == PaymentType::P2M || (kind == PaymentType::Collect && self.rng.chance(500));
            let payee = self.payee(&payer, merchant);
            let amount = Paise(1 + self.rng.below(1_500) as i64);
            if kind == PaymentType::Collect {
                let collect = self.db.collects.len();
                let id = self.db.new_id();
                let expires_at = 500 + self.rng.below(6_000);
                self.db.collects.push(CollectReq {
                    id,
                    payer,
                    payee,
                    amount,
                    expires_at,
                    stored: CollectStatus::Requested,
                    payments: Vec::new(),
                });
                // The payer's app approves, sometimes twice: a retry under
                // the same key, or a second tap with a fresh one.
                let approvals = 1 + self.rng.below(3);
                for j in 0..approvals {
                    let key = if self.rng.chance(500) {
                        format!("approve-{collect}")
                    } else {
                        format!("approve-{collect}-{j}")
                    };
                    let at = self.slot();
                    batches
                        .entry(at)
                        .or_default()
                        .push(Create::Approve { key, collect });
                }
                if self.rng.chance(150) {
                    // The payer's decline is a write of its own, not part
                    // of a create batch: queued first, it lands before the
                    // approvals of its moment.
                    let at = self.slot();
                    self.push(at, Item::Batch(vec![Create::Decline { collect }]));
                }
            } else {
                let original = self.db.originals.len();
                let txn_id = self.db.new_id();
                self.db.originals.push(OriginalRec {
                    original: Original {
                        txn_id,
                        kind,
                        payer,
                        payee,
                        amount,
                    },
                    before: false,
                    txn: None,
                });
                let at = self.rng.below(500);
                batches
                    .entry(at)
                    .or_default()
                    .push(Create::Pay { original });
            }
        }
        // SUCCESS payments from before the schedule, mostly to merchants.
        for _ in 0..self.rng.below(2) {
            let payer = self.person();
            let merchant = self.rng.chance(700);
            let mut payee = self.payee(&payer, merchant);
            if payee.account == "NOPE" {
                payee.account = MERCHANT.into();
            }
            let txn_id = self.db.new_id();
            self.db.originals.push(OriginalRec {
                original: Original {
                    txn_id,
                    kind: if merchant {
                        PaymentType::P2M
                    } else {
                        PaymentType::P2P
                    },
                    payer,
                    payee,
                    amount: Paise(1 + self.rng.below(1_500) as i64),
                },
                before: true,
                txn: None,
            });
        }
        let originals = self.db.originals.len() as u64;
        if originals > 0 {
            for r in 0..self.rng.below(3) {
                let original = self.rng.below(originals) as usize;
                let amount = refund_amount(self, self.db.originals[original].original.amount);
                let refund = Create::Refund {
                    key: format!("refund-{r}"),
                    original,
                    amount,
                    tries: 3,
                };
                let at = self.slot();
                if self.rng.chance(200) {
                    // The same request twice: together, or a retry later.
                    let again = if self.rng.chance(500) {
                        at
                    } else {
                        self.slot()
                    };
                    batches.entry(again).or_default().push(refund.clone());
                }
                batches.entry(at).or_default().push(refund);
            }
        }
        for (at, batch) in batches {
            self.push(at, Item::Batch(batch));
        }
    }

    /// `PENDING` + `SUCCESS` refunds of an original: what the writer reads.
    pub fn refunds_held(&self, original: usize) -> i64 {
        self.db
            .refunds
            .iter()
            .filter(|r| r.original == original)
            .filter(|r| {
                matches!(
                    self.checkpoints[r.txn].status(),
                    Status::Pending | Status::Success
                )
            })
            .map(|r| r.amount)
            .sum()
    }

    /// The status of an original as stored now (`None`: not written yet).
    fn original_status(&self, original: usize) -> Option<Status> {
        let o = &self.db.originals[original];
        match o.txn {
            Some(txn) => Some(self.checkpoints[txn].status()),
            None if o.before => Some(Status::Success),
            None => None,
        }
    }

    fn collect_status(&self, collect: usize) -> CollectStatus {
        let c = &self.db.collects[collect];
        c.stored.at(c.expires_at as i64, self.now as i64)
    }

    /// One writer batch: holdings read under the locks, then each create
    /// in arrival order through one `Book`.
    pub fn accept(&mut self, batch: Vec<Create>) -> Result<(), String> {
        let mut held = Holdings::default();
        let mut per_original: HashMap<usize, u32> = HashMap::new();
        for create in &batch {
            match create {
                Create::Refund { key, original, .. } => {
                    if self.db.keys.contains_key(key) {
                        held.taken.insert(key.clone());
                    }
                    let id = self.db.originals[*original].original.txn_id;
                    held.refunded
                        .insert(id, Paise(self.refunds_held(*original)));
                    *per_original.entry(*original).or_default() += 1;
                }
                Create::Approve { key, collect } => {
                    if self.db.keys.contains_key(key) {
                        held.taken.insert(key.clone());
                    }
                    let id = self.db.collects[*collect].id;
                    held.collects.insert(id, self.collect_status(*collect));
                }
                Create::Pay { .. } | Create::Decline { .. } => {}
            }
        }
        if per_original.values().any(|n| *n > 1) {
            self.count("REFUND", "batch_with_two_of_one_original");
        }
        let mut book = Book::new(held);
        for create in batch {
            match create {
                Create::Pay { original } => {
                    let o = &self.db.originals[original].original;
                    let (payer, payee) = (o.payer.clone(), o.payee.clone());
                    let saga = match o.kind {
                        PaymentType::P2M => {
                            Saga::p2m(o.txn_id, payer.clone(), payee.clone(), o.amount, self.now)
                        }
                        _ => Saga::p2p(o.txn_id, payer.clone(), payee.clone(), o.amount, self.now),
                    };
                    let txn = self.add_saga(saga, (payer, payee));
                    self.db.originals[original].txn = Some(txn);
                }
                Create::Decline { collect } => {
                    if self.collect_status(collect) == CollectStatus::Requested {
                        self.db.collects[collect].stored = CollectStatus::Declined;
                    }
                }
                Create::Refund {
                    key,
                    original,
                    amount,
                    tries,
                } => self.accept_refund(&mut book, key, original, amount, tries)?,
                Create::Approve { key, collect } => {
                    self.accept_approval(&mut book, key, collect)?
                }
            }
        }
        Ok(())
    }

    fn accept_refund(
        &mut self,
        book: &mut Book,
        key: String,
        original: usize,
        amount: Paise,
        tries: u8,
    ) -> Result<(), String> {
        let o = self.db.originals[original].original.clone();
        let guard = Guard {
            refund_of: Some((o.txn_id, o.amount)),
            ..Guard::default()
        };
        if let Some(&txn) = self.db.keys.get(&key) {
            // The same request again: it meets its refund and takes nothing.
            if let Err(r) = book.admit(&key, &guard, amount) {
                return Err(format!("refund {key} again was refused: {r:?}"));
            }
            if !self
                .db
                .refunds
                .iter()
                .any(|r| r.txn == txn && r.original == original)
            {
                return Err(format!(
                    "refund key {key} names txn {txn}, not a refund of it"
                ));
            }
            self.count("REFUND", "same_key_met_its_refund");
            return Ok(());
        }
        let status = self.original_status(original);
        if status != Some(Status::Success) || !o.kind.refundable() {
            // Refused before any guard: not (yet) a SUCCESS payment.
            self.count("REFUND", "refused_original_not_success");
            if status.is_none_or(|s| s == Status::Pending) && tries > 0 {
                let at = self.now + 300 + self.rng.below(1_500);
                let again = Create::Refund {
                    key,
                    original,
                    amount,
                    tries: tries - 1,
                };
                self.push(at, Item::Batch(vec![again]));
            }
            return Ok(());
        }
        let held = self.refunds_held(original);
        let fits = held + amount.0 <= o.amount.0;
        match book.admit(&key, &guard, amount) {
            Ok(()) => {
                let ever: i64 = self
                    .db
                    .refunds
                    .iter()
                    .filter(|r| r.original == original)
                    .map(|r| r.amount)
                    .sum();
                let txn_id = self.db.new_id();
                let saga = Saga::refund(txn_id, &o, amount, self.now);
                let txn = self.add_saga(saga, (o.payee.clone(), o.payer.clone()));
                self.db.refunds.push(RefundRec {
                    txn,
                    original,
                    amount: amount.0,
                });
                self.db.keys.insert(key.clone(), txn);
                let now_held = self.refunds_held(original);
                if now_held > o.amount.0 {
                    return Err(format!(
                        "refund {key} of {} accepted with {held} PENDING/SUCCESS against an original of {}: {now_held} held",
                        amount.0, o.amount.0
                    ));
                }
                if !fits {
                    return Err(format!("refund {key} accepted without room"));
                }
                self.count("REFUND", "accepted");
                if ever + amount.0 > o.amount.0 {
                    // Only the room a FAILED/REVERSED refund gave back fits it.
                    self.count("REFUND", "accepted_in_room_given_back");
                }
            }
            Err(refusal) => {
                let expected = Refusal::RefundExceedsOriginal {
                    original: o.amount,
                    held: Paise(held),
                };
                if fits || refusal != expected {
                    return Err(format!(
                        "refund {key} of {} with {held} held of {} refused: {refusal:?}",
                        amount.0, o.amount.0
                    ));
                }
                self.count("REFUND", "refused_exceeds_original");
            }
        }
        Ok(())
    }

    fn accept_approval(
        &mut self,
        book: &mut Book,
        key: String,
        collect: usize,
    ) -> Result<(), String> {
        let c = &self.db.collects[collect];
        let (id, amount, payer, payee) = (c.id, c.amount, c.payer.clone(), c.payee.clone());
        let payments = c.payments.clone();
        let guard = Guard {
            collect: Some(id),
            ..Guard::default()
        };
        if let Some(&txn) = self.db.keys.get(&key) {
            if let Err(r) = book.admit(&key, &guard, amount) {
                return Err(format!("approval {key} again was refused: {r:?}"));
            }
            if !payments.contains(&txn) {
                return Err(format!(
                    "approval key {key} names txn {txn}, not its payment"
                ));
            }
            self.count("COLLECT", "same_key_met_its_payment");
            return Ok(());
        }
        let status = self.collect_status(collect);
        match book.admit(&key, &guard, amount) {
            Ok(()) => {
                if status != CollectStatus::Requested || !payments.is_empty() {
                    return Err(format!(
                        "approval {key} of a {status:?} collect with {} payments was admitted",
                        payments.len()
                    ));
                }
                let txn_id = self.db.new_id();
                let saga = Saga::collect(txn_id, payer.clone(), payee.clone(), amount, self.now);
                let txn = self.add_saga(saga, (payer, payee));
                let c = &mut self.db.collects[collect];
                c.stored = CollectStatus::Approved;
                c.payments.push(txn);
                self.db.keys.insert(key, txn);
                self.count("COLLECT", "approved");
            }
            Err(refusal) => {
                if status == CollectStatus::Requested
                    || refusal != Refusal::CollectNotPending(status)
                {
                    return Err(format!(
                        "approval {key} of a {status:?} collect refused: {refusal:?}"
                    ));
                }
                self.count(
                    "COLLECT",
                    match status {
                        CollectStatus::Approved => "refused_already_approved",
                        CollectStatus::Declined => "refused_declined",
                        _ => "refused_expired",
                    },
                );
            }
        }
        Ok(())
    }

    /// A saga reached its terminal checkpoint. A refund that did not go
    /// through is sometimes asked for again under a fresh key: the room it
    /// gave back must be there.
    pub fn ended(&mut self, txn: usize) {
        let Some(r) = self.db.refunds.iter().find(|r| r.txn == txn) else {
            return;
        };
        let (original, amount) = (r.original, Paise(r.amount));
        if self.checkpoints[txn].status() == Status::Success || !self.rng.chance(600) {
            return;
        }
        let key = format!("refund-again-{txn}");
        let at = self.now + 1 + self.rng.below(1_000);
        let again = Create::Refund {
            key,
            original,
            amount,
            tries: 0,
        };
        self.push(at, Item::Batch(vec![again]));
    }
}
