//! The payment saga as a pure state machine: `step(saga, event, now) ->
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

//!
//! Layout: this file (the saga's types and its public face), `movement`
//! (the shared steps every flow is made of: debit / credit / reverse /
//! inquire / fence, with their retries and deadlines), `transfer` (how those
//! steps compose into one money transfer: debit, then credit, else reverse),
//! `flows` (each payment type — P2P, P2M, REFUND, COLLECT — as a transfer
//! between the parties it names) and `guards` (the acceptance rules that keep
//! limits and refunds within bounds: pure, decided where the database holds
//! the locks).

mod flows;
pub mod guards;
mod movement;
mod transfer;

pub use flows::{CollectStatus, Original, PaymentType};
pub use movement::{
    Movement, Reversal, Waiting, credit_op_id, credit_reverse_op_id, debit_op_id,
    debit_reverse_op_id,
};

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
    pub(crate) fn new(code: &str, detail: impl Into<String>) -> Reason {
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
    /// The payment type (stored sagas from before types existed are P2P).
    #[serde(default)]
    pub kind: PaymentType,
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

impl Saga {
    /// A new saga whose debit intent is durable as soon as this state is stored.
    /// Its first command is `start_commands()`; no extra checkpoint is needed.
    pub fn new(txn_id: Uuid, payer: Party, payee: Party, amount: Paise, now_ms: u64) -> Saga {
        Saga::transfer(PaymentType::P2P, txn_id, payer, payee, amount, now_ms)
    }

    /// A new saga of a payment of type `kind`: the transfer every flow runs
    /// (`flows` says who is payer and payee for each).
    pub fn transfer(
        kind: PaymentType,
        txn_id: Uuid,
        payer: Party,
        payee: Party,
        amount: Paise,
        now_ms: u64,
    ) -> Saga {
        Saga {
            txn_id,
            kind,
            payer,
            payee,
            amount,
            phase: Phase::Debiting(Movement::fresh(now_ms)),
        }
    }

    /// A transaction refused before its first step because a bank it needs is
    /// down: terminal at once, nothing sent, nothing moved.
    pub fn failed_at_admission(
        kind: PaymentType,
        txn_id: Uuid,
        payer: Party,
        payee: Party,
        amount: Paise,
        detail: String,
    ) -> Saga {
        Saga {
            txn_id,
            kind,
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
}
