//! The fake network and clock, crashes and lease takeovers around the real
//! saga core and the real bank ledger.

use crate::acceptance::{Create, Db};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use upi_switch::adapters::bank_api::{MoveRequest, OpStatus, ReverseRequest};
use upi_switch::banksim::ledger::{self, Account, Ledger, Reply, Request};
use upi_switch::saga::{
    Command, Event, InquiryResult, MoveResult, Party, ReverseResult, Saga, SagaConfig,
};

pub const CFG: SagaConfig = SagaConfig {
    debit_deadline_ms: 1_000,
    credit_deadline_ms: 1_500,
    retry_base_ms: 20,
    retry_max_ms: 400,
};
pub const MAX_EVENTS: usize = 100_000;
pub const BANKS: [&str; 2] = ["BANKA", "BANKB"];
pub const REQUEST_TIMEOUT_MS: u64 = 200;
/// Each bank's merchant account (P2M payments credit it, refunds debit it).
pub const MERCHANT: &str = "M0";

/// splitmix64: small, fast, and the same on every platform and version.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

pub enum Item {
    /// An event for saga `txn`, valid only for the incarnation that asked.
    ToSaga {
        txn: usize,
        incarnation: u32,
        event: Event,
    },
    /// A request reaching a bank late; nobody hears the answer.
    Arrive { bank: usize, request: Request },
    /// A bank goes down or comes back.
    SetDown { bank: usize, down: bool },
    /// Creates reaching the switch together: one writer batch, decided under
    /// the database's locks (`acceptance`).
    Batch(Vec<Create>),
}

pub struct World {
    pub rng: Rng,
    pub now: u64,
    pub seq: u64,
    pub queue: BinaryHeap<Reverse<(u64, u64)>>,
    /// Queued items by sequence number (taken when due).
    pub items: Vec<Option<Item>>,
    pub banks: Vec<Ledger>,
    pub down: Vec<bool>,
    pub chaos_until: u64,
    pub sagas: Vec<Saga>,
    pub checkpoints: Vec<Saga>,
    pub incarnation: Vec<u32>,
    /// The version of each saga's row in "Postgres" (bumped by every
    /// checkpoint and every claim).
    pub versions: Vec<u32>,
    /// The version the live owner holds.
    pub held: Vec<u32>,
    /// Old owners still acting after another claimed their saga: (txn,
    /// incarnation) → (their saga, the version they hold).
    pub zombies: HashMap<(usize, u32), (Saga, u32)>,
    /// Who each saga must debit and credit, as the model derives it from
    /// the request (not from the saga): (payer, payee).
    pub parties: Vec<(Party, Party)>,
    /// The acceptance database: originals, refunds, collect requests, keys.
    pub db: Db,
    /// Checkpoint labels reached, per payment type.
    pub labels: BTreeMap<(&'static str, &'static str), u64>,
    /// Things that happened, per payment type (or per acceptance rule).
    pub counts: BTreeMap<(&'static str, &'static str), u64>,
}

/// What a network attempt did.
pub enum Fate {
    Refused,
    Answered,
    /// Answered, and delivered again later (a retransmission).
    Duplicated,
    LostReply,
    Error503,
    Late,
}

impl World {
    pub fn count(&mut self, kind: &'static str, what: &'static str) {
        *self.counts.entry((kind, what)).or_default() += 1;
    }

    fn kind(&self, txn: usize) -> &'static str {
        self.sagas[txn].kind.as_str()
    }

    /// A saga whose row was just written (PENDING): its owner starts it —
    /// or dies right after the write, before or after the debit left, and
    /// the saga is resumed from that first checkpoint.
    pub fn add_saga(&mut self, saga: Saga, parties: (Party, Party)) -> usize {
        let txn = self.sagas.len();
        let commands = saga.start_commands();
        self.sagas.push(saga.clone());
        self.checkpoints.push(saga);
        self.incarnation.push(0);
        self.versions.push(1);
        self.held.push(1);
        self.parties.push(parties);
        let crash = if self.chaotic() && self.rng.chance(30) {
            1 + self.rng.below(2)
        } else {
            0
        };
        if crash != 1 {
            self.execute(txn, 0, commands);
        }
        if crash != 0 {
            self.crash_and_resume(txn);
        }
        txn
    }

    pub fn push(&mut self, at: u64, item: Item) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq)));
        self.items.push(Some(item));
    }

    pub fn chaotic(&self) -> bool {
        self.now < self.chaos_until
    }

    pub fn fate(&mut self, bank: usize) -> Fate {
        if self.down[bank] {
            return Fate::Refused;
        }
        if !self.chaotic() {
            return Fate::Answered;
        }
        match self.rng.below(100) {
            0..=64 => Fate::Answered,
            65..=69 => Fate::Duplicated,
            70..=77 => Fate::LostReply,
            78..=85 => Fate::Error503,
            86..=93 => Fate::Late,
            _ => Fate::Refused,
        }
    }

    /// The network delivers `request` a second time, later.
    pub fn deliver_again(&mut self, bank: usize, request: &Request) {
        let again = self.now + 1 + self.rng.below(2_000);
        self.push(
            again,
            Item::Arrive {
                bank,
                request: request.clone(),
            },
        );
    }

    pub fn bank_index(code: &str) -> usize {
        BANKS.iter().position(|b| *b == code).expect("known bank")
    }

    pub fn apply(&mut self, bank: usize, request: &Request) -> Reply {
        let reply = ledger::apply(&mut self.banks[bank], request, self.now as i64);
        if let Reply::Refused { code, detail, .. } = &reply {
            panic!("the saga sent a request the bank refused: {code} {detail}: {request:?}");
        }
        reply
    }

    pub fn execute(&mut self, txn: usize, incarnation: u32, commands: Vec<Command>) {
        for command in commands {
            let to_saga = |event| Item::ToSaga {
                txn,
                incarnation,
                event,
            };
            let latency = 1 + self.rng.below(30);
            match command {
                Command::Sleep { ms } => {
                    let at = self.now + ms;
                    self.push(at, to_saga(Event::Wake));
                }
                Command::Debit {
                    op_id,
                    bank,
                    account,
                    amount,
                }
                | Command::Credit {
                    op_id,
                    bank,
                    account,
                    amount,
                } => {
                    let is_debit = op_id.ends_with(":debit");
                    let b = Self::bank_index(&bank);
                    let m = MoveRequest {
                        op_id,
                        txn_id: self.sagas[txn].txn_id.to_string(),
                        account,
                        amount_paise: amount.0,
                    };
                    let request = if is_debit {
                        Request::Debit(m)
                    } else {
                        Request::Credit(m)
                    };
                    let unknown = |delivered| {
                        Event::Moved(MoveResult::Unknown {
                            maybe_delivered: delivered,
                        })
                    };
                    let fate = self.fate(b);
                    match fate {
                        Fate::Refused => {
                            // Connection refused, or the switch's own breaker refused to send.
                            let event = if self.rng.chance(500) {
                                unknown(false)
                            } else {
                                Event::Moved(MoveResult::Rejected)
                            };
                            self.push(self.now + 1, to_saga(event));
                        }
                        Fate::Error503 => self.push(self.now + latency, to_saga(unknown(true))),
                        Fate::Answered | Fate::Duplicated => {
                            if matches!(fate, Fate::Duplicated) {
                                self.deliver_again(b, &request);
                            }
                            let event = match self.apply(b, &request) {
                                Reply::Moved(a) if a.status == OpStatus::Applied => {
                                    MoveResult::Applied
                                }
                                Reply::Moved(a) => MoveResult::Declined(
                                    a.code.map(|c| c.as_str().to_string()).unwrap_or_default(),
                                ),
                                other => panic!("movement answered {other:?}"),
                            };
                            self.push(self.now + latency, to_saga(Event::Moved(event)));
                        }
                        Fate::LostReply => {
                            self.apply(b, &request);
                            self.push(self.now + REQUEST_TIMEOUT_MS, to_saga(unknown(true)));
                        }
                        Fate::Late => {
                            let arrive = self.now + 1 + self.rng.below(4_000);
                            self.push(arrive, Item::Arrive { bank: b, request });
                            self.push(self.now + REQUEST_TIMEOUT_MS, to_saga(unknown(true)));
                        }
                    }
                }
                Command::Reverse {
                    op_id,
                    original_op_id,
                    bank,
                    amount,
                } => {
                    let b = Self::bank_index(&bank);
                    let request = Request::Reverse(ReverseRequest {
                        op_id,
                        original_op_id,
                        txn_id: self.sagas[txn].txn_id.to_string(),
                        amount_paise: amount.0,
                    });
                    let unknown = Event::ReverseDone(ReverseResult::Unknown);
                    let fate = self.fate(b);
                    match fate {
                        Fate::Refused | Fate::Error503 => {
                            self.push(self.now + latency, to_saga(unknown))
                        }
                        Fate::Answered | Fate::Duplicated => {
                            if matches!(fate, Fate::Duplicated) {
                                self.deliver_again(b, &request);
                            }
                            let event = match self.apply(b, &request) {
                                Reply::Reversed(a) if a.status == OpStatus::Reversed => {
                                    ReverseResult::Reversed
                                }
                                Reply::Reversed(_) => ReverseResult::Noop,
                                other => panic!("reverse answered {other:?}"),
                            };
                            self.push(self.now + latency, to_saga(Event::ReverseDone(event)));
                        }
                        Fate::LostReply => {
                            self.apply(b, &request);
                            self.push(self.now + REQUEST_TIMEOUT_MS, to_saga(unknown));
                        }
                        Fate::Late => {
                            let arrive = self.now + 1 + self.rng.below(4_000);
                            self.push(arrive, Item::Arrive { bank: b, request });
                            self.push(self.now + REQUEST_TIMEOUT_MS, to_saga(unknown));
                        }
                    }
                }
                Command::Inquire { op_id, bank } => {
                    let b = Self::bank_index(&bank);
                    let event = match self.fate(b) {
                        Fate::Answered | Fate::Duplicated | Fate::Late => {
                            match self.banks[b].ops.get(&op_id) {
                                None => InquiryResult::NotFound,
                                Some(row) => match row.status {
                                    OpStatus::Applied => InquiryResult::Applied,
                                    OpStatus::Reversed => InquiryResult::Reversed,
                                    OpStatus::Declined | OpStatus::Noop => InquiryResult::Declined(
                                        row.code
                                            .as_ref()
                                            .map(|c| c.as_str().to_string())
                                            .unwrap_or_default(),
                                    ),
                                },
                            }
                        }
                        _ => InquiryResult::Unknown,
                    };
                    self.push(self.now + latency, to_saga(Event::Inquired(event)));
                }
            }
        }
    }

    /// The switch process dies and comes back: in-flight replies and timers
    /// of the dead incarnation are lost; the saga resumes from its checkpoint.
    pub fn crash_and_resume(&mut self, txn: usize) {
        self.incarnation[txn] += 1;
        // Resuming is a claim: it bumps the version before anything is sent.
        self.versions[txn] += 1;
        self.held[txn] = self.versions[txn];
        let t = self.checkpoints[txn].clone().resume();
        self.sagas[txn] = t.saga;
        let inc = self.incarnation[txn];
        self.execute(txn, inc, t.commands);
    }

    /// The owner's lease ran out while it was paused: another node claims
    /// the saga (version bump) and resumes it from its checkpoint; the old
    /// owner is not dead and keeps acting as a zombie.
    pub fn take_over(&mut self, txn: usize) {
        let old = self.incarnation[txn];
        self.zombies
            .insert((txn, old), (self.sagas[txn].clone(), self.held[txn]));
        self.count(self.kind(txn), "takeovers");
        self.crash_and_resume(txn);
    }

    /// An event for an old owner that another node took over from.
    pub fn handle_zombie(&mut self, txn: usize, incarnation: u32, event: Event) {
        let Some((saga, version)) = self.zombies.remove(&(txn, incarnation)) else {
            return;
        };
        let t = saga.step(event, self.now, &CFG);
        if t.checkpoint.is_some() {
            // The write names the version it read; the claim bumped it.
            assert!(
                version < self.versions[txn],
                "a zombie still held the version"
            );
            self.count(self.kind(txn), "zombie_fenced");
            return;
        }
        if !t.commands.is_empty() {
            self.count(self.kind(txn), "zombie_sends");
        }
        self.zombies.insert((txn, incarnation), (t.saga, version));
        self.execute(txn, incarnation, t.commands);
    }

    pub fn handle(&mut self, txn: usize, event: Event) {
        let t = self.sagas[txn].clone().step(event, self.now, &CFG);
        let crash = if self.chaotic() && self.rng.chance(30) {
            1 + self.rng.below(3)
        } else {
            0
        };
        if crash == 1 {
            // Died before the checkpoint was written.
            return self.crash_and_resume(txn);
        }
        if let Some(cp) = &t.checkpoint {
            *self.labels.entry((self.kind(txn), cp.state)).or_default() += 1;
            assert_eq!(
                self.held[txn], self.versions[txn],
                "the live owner is fenced"
            );
            self.checkpoints[txn] = t.saga.clone();
            self.versions[txn] += 1;
            self.held[txn] = self.versions[txn];
            if t.saga.is_terminal() {
                self.ended(txn);
            }
        }
        match crash {
            2 => self.crash_and_resume(txn), // after the checkpoint, before any command
            3 => {
                // After the commands left; their answers go to a dead process.
                let inc = self.incarnation[txn];
                self.execute(txn, inc, t.commands);
                self.crash_and_resume(txn);
            }
            _ => {
                self.sagas[txn] = t.saga;
                let inc = self.incarnation[txn];
                self.execute(txn, inc, t.commands);
            }
        }
    }
}

pub fn make_world(seed: u64) -> World {
    let mut rng = Rng(seed);
    let mut banks = Vec::new();
    for _ in BANKS {
        let mut accounts = HashMap::new();
        // Three people and a merchant.
        for (id, most) in [
            ("A0", 3_000),
            ("A1", 3_000),
            ("A2", 3_000),
            (MERCHANT, 4_000),
        ] {
            accounts.insert(
                id.to_string(),
                Account {
                    account: id.to_string(),
                    name: id.to_string(),
                    frozen: rng.chance(100),
                    balance_paise: rng.below(most) as i64,
                },
            );
        }
        banks.push(Ledger::new(accounts, 1));
    }
    let chaos_until = rng.below(6_000);
    let mut world = World {
        rng,
        now: 0,
        seq: 0,
        queue: BinaryHeap::new(),
        items: Vec::new(),
        banks,
        down: vec![false; BANKS.len()],
        chaos_until,
        sagas: Vec::new(),
        checkpoints: Vec::new(),
        incarnation: Vec::new(),
        versions: Vec::new(),
        held: Vec::new(),
        zombies: HashMap::new(),
        parties: Vec::new(),
        db: Db::new(seed),
        labels: BTreeMap::new(),
        counts: BTreeMap::new(),
    };
    for bank in 0..BANKS.len() {
        let flaps = world.rng.below(3);
        for _ in 0..flaps {
            let from = world.rng.below(chaos_until.max(1));
            let to = from + world.rng.below(3_000);
            world.push(from, Item::SetDown { bank, down: true });
            world.push(to, Item::SetDown { bank, down: false });
        }
    }
    world.schedule_requests();
    world
}

pub fn initial_balances(world: &World) -> Vec<BTreeMap<String, i64>> {
    world
        .banks
        .iter()
        .map(|l| {
            l.accounts
                .iter()
                .map(|(k, a)| (k.clone(), a.balance_paise))
                .collect()
        })
        .collect()
}
