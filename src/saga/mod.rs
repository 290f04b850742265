//! The P2P payment saga as a pure state machine: `step(saga, event, now) ->
//! Transition { saga, commands, checkpoint }`.
//!
//! ```text
//! Debiting ──applied──▶ Crediting ──applied──▶ Done(SUCCESS)
//!    │ declined / never delivered     │ declined / never delivered
//!    ▼                                ▼
//! Done(FAILED)                  ReversingDebit ──REVERSED──▶ Done(REVERSED)
//!    ▲                                ▲   └──NOOP──▶ Done(FAILED)
//!    │ unknown past deadline          │ unknown past deadline
//! ReversingDebit (as a fence)     FencingCredit ──REVERSED/NOOP──┘
//! ```
//!
//! Rules this module enforces (and the simulation test checks):
//! - `op_id`s derive from the transaction id and the step (`<txn>:debit`,
//!   `<txn>:credit`, `<txn>:debit:rev`, `<txn>:credit:rev`), so a resumed saga
//!   re-sends the very same operations.
//! - An unknown outcome is resolved by inquiry, never by guessing; a movement is
//!   re-sent only after an inquiry said the bank has not seen it. Past the step's
//!   deadline it is fenced with a reverse before anything is concluded — unless
//!   no attempt ever reached the bank (connection refused every time).
//! - A debited transaction never ends FAILED; a reversal is retried (with capped
//!   backoff) until the bank answers.
//! - A transition that must be durable before its commands run carries a
//!   `Checkpoint`; the interpreter writes it first. A crash between checkpoints
//!   loses only retry counters, and `resume` treats every open step as possibly
//!   delivered.
//!
//! Nothing here does I/O, reads a clock or draws randomness: time comes in as
//! `now_ms`, jitter is derived from the transaction id.

use crate::domain::Paise;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Timing rules of the saga.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SagaConfig {
    /// How long a debit with an unknown outcome is resolved before it is fenced.
    pub debit_deadline_ms: u64,
    /// How long a credit with an unknown outcome is resolved before it is fenced.
    pub credit_deadline_ms: u64,
    /// First retry pause; doubles per retry.
    pub retry_base_ms: u64,
    /// Longest retry pause.
    pub retry_max_ms: u64,
}

impl Default for SagaConfig {
    fn default() -> Self {
        SagaConfig {
            debit_deadline_ms: 15_000,
            credit_deadline_ms: 30_000,
            retry_base_ms: 50,
            retry_max_ms: 5_000,
        }
    }
}

/// One side of the payment: a bank and an account there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Party {
    pub bank: String,
    pub account: String,
}

/// Why a transaction ended FAILED or REVERSED.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub code: String,
    pub detail: String,
}

impl Reason {
    fn new(code: &str, detail: impl Into<String>) -> Reason {
        Reason {
            code: code.to_string(),
            detail: detail.into(),
        }
    }
}

/// How a transaction ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Terminal {
    Success,
    Failed { reason: Reason },
    Reversed { reason: Reason },
}

/// What a movement step (debit or credit) is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Waiting {
    /// The movement request is outstanding.
    Send,
    /// A status inquiry is outstanding.
    Inquiry,
    /// Sleeping; on wake, send again (only if never delivered or the bank said
    /// it has not seen the op) or inquire.
    BackoffThenSend,
    BackoffThenInquire,
}

/// Progress of a debit or credit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Movement {
    /// When this step began; its deadline counts from here.
    pub since_ms: u64,
    /// Some attempt may have reached the bank (so giving up needs a fence).
    pub maybe_delivered: bool,
    /// Retries so far (the backoff exponent).
    pub retries: u32,
    /// An unknown outcome has been checkpointed for this step already.
    pub unknown_noted: bool,
    pub waiting: Waiting,
}

impl Movement {
    fn fresh(now_ms: u64) -> Movement {
        Movement {
            since_ms: now_ms,
            maybe_delivered: false,
            retries: 0,
            unknown_noted: false,
            waiting: Waiting::Send,
        }
    }
}

/// Progress of a reverse (undo or fence), retried until the bank answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reversal {
    pub retries: u32,
    /// True while sleeping before the next send.
    pub backing_off: bool,
}

/// Where the saga stands. Each variant names the op it is working on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Phase {
    Debiting(Movement),
    Crediting(Movement),
    /// `POST /v1/reverse` of the debit: undoing an applied debit, or fencing
    /// one whose outcome stayed unknown. Ends REVERSED or (NOOP) FAILED.
    ReversingDebit {
        reversal: Reversal,
        reason: Reason,
    },
    /// `POST /v1/reverse` of the credit whose outcome stayed unknown; then the
    /// debit is reversed.
    FencingCredit {
        reversal: Reversal,
        reason: Reason,
    },
    Done(Terminal),
}

/// The whole durable state of one P2P transaction's saga.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saga {
    pub txn_id: Uuid,
    pub payer: Party,
    pub payee: Party,
    pub amount: Paise,
    pub phase: Phase,
}

/// Result of a debit or credit call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoveResult {
    Applied,
    Declined(String),
    Unknown {
        maybe_delivered: bool,
    },
    /// The switch refused to send it (the bank's circuits are open): not
    /// delivered, and the bank is known to be down, so waiting is pointless
    /// unless an earlier attempt may have arrived.
    Rejected,
}

/// Result of a status inquiry of the current movement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InquiryResult {
    Applied,
    Declined(String),
    /// Applied and later undone.
    Reversed,
    /// The bank has never seen the op.
    NotFound,
    Unknown,
}

/// Result of a reverse call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReverseResult {
    Reversed,
    Noop,
    Unknown,
}

/// Something that happened to the saga.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Moved(MoveResult),
    Inquired(InquiryResult),
    ReverseDone(ReverseResult),
    /// A `Sleep` ended.
    Wake,
}

/// What the interpreter must do. Bank calls carry everything the wire needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Debit {
        op_id: String,
        bank: String,
        account: String,
        amount: Paise,
    },
    Credit {
        op_id: String,
        bank: String,
        account: String,
        amount: Paise,
    },
    Reverse {
        op_id: String,
        original_op_id: String,
        bank: String,
        amount: Paise,
    },
    Inquire {
        op_id: String,
        bank: String,
    },
    Sleep {
        ms: u64,
    },
}

/// A durable record of a step, written before the transition's commands run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Step label shown to clients (`DEBITED`, `CREDIT_UNKNOWN`, `SUCCESS`, …).
    pub state: &'static str,
    pub op_id: Option<String>,
    pub detail: Option<String>,
}

/// The result of feeding the saga an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub saga: Saga,
    pub commands: Vec<Command>,
    pub checkpoint: Option<Checkpoint>,
}

/// Client-facing status of a saga.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Pending,
    Success,
    Failed,
    Reversed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "PENDING",
            Status::Success => "SUCCESS",
            Status::Failed => "FAILED",
            Status::Reversed => "REVERSED",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        match text {
            "PENDING" => Some(Status::Pending),
            "SUCCESS" => Some(Status::Success),
            "FAILED" => Some(Status::Failed),
            "REVERSED" => Some(Status::Reversed),
            _ => None,
        }
    }

    pub fn is_terminal(self) -> bool {
        self != Status::Pending
    }
}

/// Op id of each step.
pub fn debit_op_id(txn: Uuid) -> String {
    format!("{txn}:debit")
}
pub fn credit_op_id(txn: Uuid) -> String {
    format!("{txn}:credit")
}
pub fn debit_reverse_op_id(txn: Uuid) -> String {
    format!("{txn}:debit:rev")
}
pub fn credit_reverse_op_id(txn: Uuid) -> String {
    format!("{txn}:credit:rev")
}

/// Outcome of handling an event within a movement step.
enum Verdict {
    Applied,
    Declined(String),
    /// Inquiry found the op applied and already reversed.
    AlreadyReversed,
    /// Deadline passed without a definitive answer.
    GiveUp {
        maybe_delivered: bool,
    },
    /// Keep going: maybe a command, maybe a first-unknown checkpoint.
    Continue {
        command: Option<Command>,
        note_unknown: bool,
    },
    /// The event does not belong to the current wait (stale); nothing happens.
    Ignore,
}

impl Saga {
    /// A new saga whose debit intent is durable as soon as this state is stored.
    /// Its first command is `start_commands()`; no extra checkpoint is needed.
    pub fn new(txn_id: Uuid, payer: Party, payee: Party, amount: Paise, now_ms: u64) -> Saga {
        Saga {
            txn_id,
            payer,
            payee,
            amount,
            phase: Phase::Debiting(Movement::fresh(now_ms)),
        }
    }

    /// A transaction refused before its first step because a bank it needs is
    /// down: terminal at once, nothing sent, nothing moved.
    pub fn failed_at_admission(
        txn_id: Uuid,
        payer: Party,
        payee: Party,
        amount: Paise,
        detail: String,
    ) -> Saga {
        Saga {
            txn_id,
            payer,
            payee,
            amount,
            phase: Phase::Done(Terminal::Failed {
                reason: Reason::new("BANK_UNAVAILABLE", detail),
            }),
        }
    }

    /// The step label of the saga's first checkpoint.
    pub const CREATED: &'static str = "PENDING";

    /// The step label of the checkpoint written with the transaction row.
    pub fn created_label(&self) -> &'static str {
        match self.status() {
            Status::Pending => Self::CREATED,
            other => other.as_str(),
        }
    }

    /// Commands to start a saga that was just created (never sent anything).
    pub fn start_commands(&self) -> Vec<Command> {
        match &self.phase {
            Phase::Debiting(m) if m.waiting == Waiting::Send && !m.maybe_delivered => {
                vec![self.debit_command()]
            }
            _ => Vec::new(),
        }
    }

    pub fn status(&self) -> Status {
        match &self.phase {
            Phase::Done(Terminal::Success) => Status::Success,
            Phase::Done(Terminal::Failed { .. }) => Status::Failed,
            Phase::Done(Terminal::Reversed { .. }) => Status::Reversed,
            _ => Status::Pending,
        }
    }

    pub fn reason(&self) -> Option<&Reason> {
        match &self.phase {
            Phase::Done(Terminal::Failed { reason } | Terminal::Reversed { reason }) => {
                Some(reason)
            }
            _ => None,
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self.phase, Phase::Done(_))
    }

    /// Picks up a saga loaded from its last checkpoint after a restart. Any
    /// request of the open step may have been sent: movements are inquired,
    /// reversals re-sent (a reverse is idempotent on its op_id).
    pub fn resume(mut self) -> Transition {
        let commands = match &mut self.phase {
            Phase::Debiting(m) | Phase::Crediting(m) => {
                m.maybe_delivered = true;
                m.waiting = Waiting::Inquiry;
                vec![self.inquire_command()]
            }
            Phase::ReversingDebit { reversal, .. } | Phase::FencingCredit { reversal, .. } => {
                reversal.backing_off = false;
                vec![self.reverse_command()]
            }
            Phase::Done(_) => Vec::new(),
        };
        Transition {
            saga: self,
            commands,
            checkpoint: None,
        }
    }

    /// Feeds one event to the saga.
    pub fn step(mut self, event: Event, now_ms: u64, cfg: &SagaConfig) -> Transition {
        match self.phase.clone() {
            Phase::Debiting(m) => {
                let deadline = m.since_ms.saturating_add(cfg.debit_deadline_ms);
                // A debit the switch could not even send fails fast: no money moved.
                let (m, verdict) = self.movement_event(m, event, now_ms, deadline, true, cfg);
                self.phase = Phase::Debiting(m);
                self.after_debit(verdict, now_ms)
            }
            Phase::Crediting(m) => {
                let deadline = m.since_ms.saturating_add(cfg.credit_deadline_ms);
                // A debited saga waits for the payee's bank until the deadline.
                let (m, verdict) = self.movement_event(m, event, now_ms, deadline, false, cfg);
                self.phase = Phase::Crediting(m);
                self.after_credit(verdict, now_ms)
            }
            Phase::ReversingDebit { reversal, reason } => {
                match self.reversal_event(reversal, event, cfg) {
                    Ok(ReverseResult::Reversed) => self.finish(Terminal::Reversed { reason }),
                    Ok(_) => self.finish(Terminal::Failed { reason }),
                    Err((reversal, commands)) => {
                        self.phase = Phase::ReversingDebit { reversal, reason };
                        self.quiet(commands)
                    }
                }
            }
            Phase::FencingCredit { reversal, reason } => {
                match self.reversal_event(reversal, event, cfg) {
                    Ok(result) => {
                        let detail = match result {
                            ReverseResult::Reversed => "credit had applied; undone by the fence",
                            _ => "credit never applied; fenced",
                        };
                        self.phase = Phase::ReversingDebit {
                            reversal: Reversal {
                                retries: 0,
                                backing_off: false,
                            },
                            reason,
                        };
                        let cmd = self.reverse_command();
                        let op = Some(debit_reverse_op_id(self.txn_id));
                        self.checkpointed("REVERSING", op, Some(detail.into()), vec![cmd])
                    }
                    Err((reversal, commands)) => {
                        self.phase = Phase::FencingCredit { reversal, reason };
                        self.quiet(commands)
                    }
                }
            }
            Phase::Done(_) => self.quiet(Vec::new()),
        }
    }

    fn after_debit(mut self, verdict: Verdict, now_ms: u64) -> Transition {
        let txn = self.txn_id;
        match verdict {
            Verdict::Applied => {
                self.phase = Phase::Crediting(Movement::fresh(now_ms));
                let credit = self.credit_command();
                self.checkpointed("DEBITED", Some(debit_op_id(txn)), None, vec![credit])
            }
            Verdict::Declined(code) => self.finish(Terminal::Failed {
                reason: payer_decline(&code),
            }),
            Verdict::AlreadyReversed => self.finish(Terminal::Reversed {
                reason: Reason::new(
                    "DEBIT_UNCONFIRMED",
                    "the debit was applied and has been reversed",
                ),
            }),
            Verdict::GiveUp {
                maybe_delivered: false,
            } => self.finish(Terminal::Failed {
                reason: Reason::new(
                    "BANK_UNAVAILABLE",
                    "the payer's bank is unavailable; nothing was debited",
                ),
            }),
            Verdict::GiveUp {
                maybe_delivered: true,
            } => {
                self.phase = Phase::ReversingDebit {
                    reversal: Reversal {
                        retries: 0,
                        backing_off: false,
                    },
                    reason: Reason::new(
                        "DEBIT_UNCONFIRMED",
                        "the payer's bank did not confirm the debit in time; it was fenced",
                    ),
                };
                let fence = self.reverse_command();
                self.checkpointed(
                    "DEBIT_FENCING",
                    Some(debit_reverse_op_id(txn)),
                    None,
                    vec![fence],
                )
            }
            Verdict::Continue {
                command,
                note_unknown,
            } => self.continue_movement(command, note_unknown, "DEBIT_UNKNOWN"),
            Verdict::Ignore => self.quiet(Vec::new()),
        }
    }

    fn after_credit(mut self, verdict: Verdict, _now_ms: u64) -> Transition {
        let txn = self.txn_id;
        let reverse_debit = |mut saga: Saga, reason: Reason| {
            saga.phase = Phase::ReversingDebit {
                reversal: Reversal {
                    retries: 0,
                    backing_off: false,
                },
                reason,
            };
            let cmd = saga.reverse_command();
            saga.checkpointed("REVERSING", Some(debit_reverse_op_id(txn)), None, vec![cmd])
        };
        match verdict {
            Verdict::Applied => self.finish(Terminal::Success),
            Verdict::Declined(code) => reverse_debit(self, payee_decline(&code)),
            Verdict::AlreadyReversed => reverse_debit(
                self,
                Reason::new(
                    "CREDIT_UNCONFIRMED",
                    "the credit was undone at the payee's bank",
                ),
            ),
            Verdict::GiveUp {
                maybe_delivered: false,
            } => reverse_debit(
                self,
                Reason::new(
                    "PAYEE_BANK_UNAVAILABLE",
                    "the payee's bank could not be reached",
                ),
            ),
            Verdict::GiveUp {
                maybe_delivered: true,
            } => {
                self.phase = Phase::FencingCredit {
                    reversal: Reversal {
                        retries: 0,
                        backing_off: false,
                    },
                    reason: Reason::new(
                        "CREDIT_UNCONFIRMED",
                        "the payee's bank did not confirm the credit in time; it was fenced",
                    ),
                };
                let fence = self.reverse_command();
                self.checkpointed(
                    "CREDIT_FENCING",
                    Some(credit_reverse_op_id(txn)),
                    None,
                    vec![fence],
                )
            }
            Verdict::Continue {
                command,
                note_unknown,
            } => self.continue_movement(command, note_unknown, "CREDIT_UNKNOWN"),
            Verdict::Ignore => self.quiet(Vec::new()),
        }
    }

    fn continue_movement(
        self,
        command: Option<Command>,
        note_unknown: bool,
        label: &'static str,
    ) -> Transition {
        let commands: Vec<Command> = command.into_iter().collect();
        if note_unknown {
            let op = self.current_op_id();
            self.checkpointed(label, op, None, commands)
        } else {
            self.quiet(commands)
        }
    }

    /// Handles an event of a debit/credit step.
    fn movement_event(
        &self,
        mut m: Movement,
        event: Event,
        now_ms: u64,
        deadline_ms: u64,
        fail_fast: bool,
        cfg: &SagaConfig,
    ) -> (Movement, Verdict) {
        let past_deadline = now_ms >= deadline_ms;
        let verdict = match (m.waiting, event) {
            (Waiting::Send, Event::Moved(MoveResult::Applied))
            | (Waiting::Inquiry, Event::Inquired(InquiryResult::Applied)) => Verdict::Applied,
            (Waiting::Send, Event::Moved(MoveResult::Declined(code)))
            | (Waiting::Inquiry, Event::Inquired(InquiryResult::Declined(code))) => {
                Verdict::Declined(code)
            }
            (Waiting::Inquiry, Event::Inquired(InquiryResult::Reversed)) => {
                Verdict::AlreadyReversed
            }
            (Waiting::Send, Event::Moved(MoveResult::Rejected))
                if !m.maybe_delivered && fail_fast =>
            {
                Verdict::GiveUp {
                    maybe_delivered: false,
                }
            }
            (Waiting::Send, Event::Moved(MoveResult::Rejected)) => {
                return self.movement_event(
                    m,
                    Event::Moved(MoveResult::Unknown {
                        maybe_delivered: false,
                    }),
                    now_ms,
                    deadline_ms,
                    false,
                    cfg,
                );
            }
            (Waiting::Send, Event::Moved(MoveResult::Unknown { maybe_delivered })) => {
                m.maybe_delivered |= maybe_delivered;
                if past_deadline {
                    Verdict::GiveUp {
                        maybe_delivered: m.maybe_delivered,
                    }
                } else {
                    // Never re-send something that may have arrived without asking first.
                    m.waiting = if m.maybe_delivered {
                        Waiting::BackoffThenInquire
                    } else {
                        Waiting::BackoffThenSend
                    };
                    let note = m.maybe_delivered && !m.unknown_noted;
                    m.unknown_noted |= note;
                    Verdict::Continue {
                        command: Some(self.backoff(&mut m.retries, cfg)),
                        note_unknown: note,
                    }
                }
            }
            (Waiting::Inquiry, Event::Inquired(InquiryResult::NotFound)) => {
                if past_deadline {
                    Verdict::GiveUp {
                        maybe_delivered: true,
                    }
                } else {
                    // The bank has not seen it: sending the same op_id again is safe.
                    m.waiting = Waiting::BackoffThenSend;
                    Verdict::Continue {
                        command: Some(self.backoff(&mut m.retries, cfg)),
                        note_unknown: false,
                    }
                }
            }
            (Waiting::Inquiry, Event::Inquired(InquiryResult::Unknown)) => {
                if past_deadline {
                    Verdict::GiveUp {
                        maybe_delivered: m.maybe_delivered,
                    }
                } else {
                    m.waiting = Waiting::BackoffThenInquire;
                    Verdict::Continue {
                        command: Some(self.backoff(&mut m.retries, cfg)),
                        note_unknown: false,
                    }
                }
            }
            (Waiting::BackoffThenSend | Waiting::BackoffThenInquire, Event::Wake)
                if past_deadline =>
            {
                Verdict::GiveUp {
                    maybe_delivered: m.maybe_delivered,
                }
            }
            (Waiting::BackoffThenSend, Event::Wake) => {
                m.waiting = Waiting::Send;
                Verdict::Continue {
                    command: Some(self.movement_command()),
                    note_unknown: false,
                }
            }
            (Waiting::BackoffThenInquire, Event::Wake) => {
                m.waiting = Waiting::Inquiry;
                Verdict::Continue {
                    command: Some(self.inquire_command()),
                    note_unknown: false,
                }
            }
            _ => Verdict::Ignore,
        };
        (m, verdict)
    }

    /// Handles an event of a reverse step: `Ok(result)` when the bank answered,
    /// else the updated progress and the commands to keep trying.
    fn reversal_event(
        &self,
        mut r: Reversal,
        event: Event,
        cfg: &SagaConfig,
    ) -> Result<ReverseResult, (Reversal, Vec<Command>)> {
        match (r.backing_off, event) {
            (false, Event::ReverseDone(ReverseResult::Unknown)) => {
                r.backing_off = true;
                let sleep = self.backoff(&mut r.retries, cfg);
                Err((r, vec![sleep]))
            }
            (false, Event::ReverseDone(result)) => Ok(result),
            (true, Event::Wake) => {
                r.backing_off = false;
                Err((r, vec![self.reverse_command()]))
            }
            _ => Err((r, Vec::new())),
        }
    }

    /// A `Sleep` with capped exponential backoff and full jitter (derived from
    /// the txn id and the retry count, so the core stays deterministic).
    fn backoff(&self, retries: &mut u32, cfg: &SagaConfig) -> Command {
        let exp = cfg
            .retry_base_ms
            .saturating_mul(1u64 << (*retries).min(20))
            .min(cfg.retry_max_ms)
            .max(1);
        *retries = retries.saturating_add(1);
        let mut x = (self.txn_id.as_u128() as u64)
            ^ u64::from(*retries).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        // splitmix64 finaliser
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 31;
        Command::Sleep {
            ms: (x % (exp + 1)).max(cfg.retry_base_ms.clamp(1, 10)),
        }
    }

    fn finish(mut self, terminal: Terminal) -> Transition {
        let label = match &terminal {
            Terminal::Success => "SUCCESS",
            Terminal::Failed { .. } => "FAILED",
            Terminal::Reversed { .. } => "REVERSED",
        };
        let detail = match &terminal {
            Terminal::Success => None,
            Terminal::Failed { reason } | Terminal::Reversed { reason } => {
                Some(reason.detail.clone())
            }
        };
        let op = self.current_op_id();
        self.phase = Phase::Done(terminal);
        self.checkpointed(label, op, detail, Vec::new())
    }

    fn checkpointed(
        self,
        state: &'static str,
        op_id: Option<String>,
        detail: Option<String>,
        commands: Vec<Command>,
    ) -> Transition {
        Transition {
            saga: self,
            commands,
            checkpoint: Some(Checkpoint {
                state,
                op_id,
                detail,
            }),
        }
    }

    fn quiet(self, commands: Vec<Command>) -> Transition {
        Transition {
            saga: self,
            commands,
            checkpoint: None,
        }
    }

    /// The op the current phase works on.
    pub fn current_op_id(&self) -> Option<String> {
        let txn = self.txn_id;
        match &self.phase {
            Phase::Debiting(_) => Some(debit_op_id(txn)),
            Phase::Crediting(_) => Some(credit_op_id(txn)),
            Phase::ReversingDebit { .. } => Some(debit_reverse_op_id(txn)),
            Phase::FencingCredit { .. } => Some(credit_reverse_op_id(txn)),
            Phase::Done(_) => None,
        }
    }

    fn debit_command(&self) -> Command {
        Command::Debit {
            op_id: debit_op_id(self.txn_id),
            bank: self.payer.bank.clone(),
            account: self.payer.account.clone(),
            amount: self.amount,
        }
    }

    fn credit_command(&self) -> Command {
        Command::Credit {
            op_id: credit_op_id(self.txn_id),
            bank: self.payee.bank.clone(),
            account: self.payee.account.clone(),
            amount: self.amount,
        }
    }

    fn movement_command(&self) -> Command {
        match self.phase {
            Phase::Crediting(_) => self.credit_command(),
            _ => self.debit_command(),
        }
    }

    fn inquire_command(&self) -> Command {
        match self.phase {
            Phase::Crediting(_) => Command::Inquire {
                op_id: credit_op_id(self.txn_id),
                bank: self.payee.bank.clone(),
            },
            _ => Command::Inquire {
                op_id: debit_op_id(self.txn_id),
                bank: self.payer.bank.clone(),
            },
        }
    }

    fn reverse_command(&self) -> Command {
        match self.phase {
            Phase::FencingCredit { .. } => Command::Reverse {
                op_id: credit_reverse_op_id(self.txn_id),
                original_op_id: credit_op_id(self.txn_id),
                bank: self.payee.bank.clone(),
                amount: self.amount,
            },
            _ => Command::Reverse {
                op_id: debit_reverse_op_id(self.txn_id),
                original_op_id: debit_op_id(self.txn_id),
                bank: self.payer.bank.clone(),
                amount: self.amount,
            },
        }
    }
}

fn payer_decline(code: &str) -> Reason {
    match code {
        "INSUFFICIENT_FUNDS" => Reason::new("INSUFFICIENT_FUNDS", "the payer's balance is too low"),
        "ACCOUNT_FROZEN" => Reason::new("PAYER_ACCOUNT_FROZEN", "the payer's account is frozen"),
        "ACCOUNT_NOT_FOUND" => Reason::new(
            "PAYER_ACCOUNT_NOT_FOUND",
            "the payer's bank has no such account",
        ),
        "ALREADY_REVERSED" => Reason::new(
            "DEBIT_FENCED",
            "the debit had been fenced before it arrived",
        ),
        other => Reason::new(
            "PAYER_BANK_DECLINED",
            format!("the payer's bank declined: {other}"),
        ),
    }
}

fn payee_decline(code: &str) -> Reason {
    match code {
        "ACCOUNT_FROZEN" => Reason::new("PAYEE_ACCOUNT_FROZEN", "the payee's account is frozen"),
        "ACCOUNT_NOT_FOUND" => Reason::new(
            "PAYEE_ACCOUNT_NOT_FOUND",
            "the payee's bank has no such account",
        ),
        "ALREADY_REVERSED" => Reason::new(
            "CREDIT_FENCED",
            "the credit had been fenced before it arrived",
        ),
        other => Reason::new(
            "PAYEE_BANK_DECLINED",
            format!("the payee's bank declined: {other}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saga() -> Saga {
        Saga::new(
            Uuid::from_u128(42),
            Party {
                bank: "HDFC".into(),
                account: "A".into(),
            },
            Party {
                bank: "ICICI".into(),
                account: "B".into(),
            },
            Paise(500),
            0,
        )
    }

    const CFG: SagaConfig = SagaConfig {
        debit_deadline_ms: 1_000,
        credit_deadline_ms: 1_000,
        retry_base_ms: 10,
        retry_max_ms: 100,
    };

    #[test]
    fn happy_path_checkpoints_debited_then_success() {
        let s = saga();
        assert!(matches!(s.start_commands()[..], [Command::Debit { .. }]));
        let t = s.step(Event::Moved(MoveResult::Applied), 5, &CFG);
        assert_eq!(t.checkpoint.as_ref().map(|c| c.state), Some("DEBITED"));
        assert!(matches!(t.commands[..], [Command::Credit { .. }]));
        let t = t.saga.step(Event::Moved(MoveResult::Applied), 6, &CFG);
        assert_eq!(t.saga.status(), Status::Success);
        assert_eq!(t.checkpoint.map(|c| c.state), Some("SUCCESS"));
    }

    #[test]
    fn unknown_debit_is_inquired_not_resent() {
        let t = saga().step(
            Event::Moved(MoveResult::Unknown {
                maybe_delivered: true,
            }),
            5,
            &CFG,
        );
        assert!(matches!(t.commands[..], [Command::Sleep { .. }]));
        let t = t.saga.step(Event::Wake, 20, &CFG);
        assert!(matches!(t.commands[..], [Command::Inquire { .. }]));
    }

    #[test]
    fn undelivered_debit_past_deadline_fails_without_fence() {
        let t = saga().step(
            Event::Moved(MoveResult::Unknown {
                maybe_delivered: false,
            }),
            5,
            &CFG,
        );
        let t = t.saga.step(Event::Wake, 2_000, &CFG);
        assert_eq!(t.saga.status(), Status::Failed);
        assert!(t.commands.is_empty());
    }

    #[test]
    fn rejected_debit_fails_fast_but_rejected_credit_waits() {
        let t = saga().step(Event::Moved(MoveResult::Rejected), 5, &CFG);
        assert_eq!(t.saga.status(), Status::Failed);
        assert_eq!(
            t.saga.reason().map(|r| r.code.as_str()),
            Some("BANK_UNAVAILABLE")
        );
        let t = saga().step(Event::Moved(MoveResult::Applied), 5, &CFG);
        let t = t.saga.step(Event::Moved(MoveResult::Rejected), 6, &CFG);
        assert_eq!(t.saga.status(), Status::Pending);
        assert!(matches!(t.commands[..], [Command::Sleep { .. }]));
    }

    #[test]
    fn maybe_delivered_debit_past_deadline_is_fenced() {
        let t = saga().step(
            Event::Moved(MoveResult::Unknown {
                maybe_delivered: true,
            }),
            2_000,
            &CFG,
        );
        assert!(matches!(t.commands[..], [Command::Reverse { .. }]));
        assert_eq!(t.checkpoint.map(|c| c.state), Some("DEBIT_FENCING"));
        let t = t
            .saga
            .step(Event::ReverseDone(ReverseResult::Noop), 2_001, &CFG);
        assert_eq!(t.saga.status(), Status::Failed);
    }

    #[test]
    fn debited_saga_never_fails() {
        let t = saga().step(Event::Moved(MoveResult::Applied), 1, &CFG);
        let t = t.saga.step(
            Event::Moved(MoveResult::Declined("ACCOUNT_FROZEN".into())),
            2,
            &CFG,
        );
        assert_eq!(t.checkpoint.as_ref().map(|c| c.state), Some("REVERSING"));
        let t = t
            .saga
            .step(Event::ReverseDone(ReverseResult::Unknown), 3, &CFG);
        assert_eq!(t.saga.status(), Status::Pending);
        let t = t.saga.step(Event::Wake, 4, &CFG);
        let t = t
            .saga
            .step(Event::ReverseDone(ReverseResult::Reversed), 5, &CFG);
        assert_eq!(t.saga.status(), Status::Reversed);
        assert_eq!(
            t.saga.reason().map(|r| r.code.as_str()),
            Some("PAYEE_ACCOUNT_FROZEN")
        );
    }

    #[test]
    fn resume_inquires_the_open_movement() {
        let t = saga().resume();
        assert!(matches!(t.commands[..], [Command::Inquire { .. }]));
        let json = serde_json::to_string(&t.saga).unwrap_or_default();
        let back: Saga = serde_json::from_str(&json).expect("round trip");
        assert_eq!(back, t.saga);
    }
}
