//! The steps every flow is made of: a movement (debit or credit) resolved
//! by inquiry, never by guessing, and a reverse (undo or fence) retried
//! until the bank answers. Each is written once here; `transfer` composes
//! them. Op ids derive from the transaction id and the step, so a resumed
//! saga re-sends the very same operations.

use super::{
    Command, Event, InquiryResult, MoveResult, Phase, ReverseResult, Saga, SagaConfig, Transition,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

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
    pub(super) fn fresh(now_ms: u64) -> Movement {
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
pub(super) enum Verdict {
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
    pub(super) fn continue_movement(
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
    pub(super) fn movement_event(
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
    pub(super) fn reversal_event(
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
    pub(super) fn backoff(&self, retries: &mut u32, cfg: &SagaConfig) -> Command {
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

    pub(super) fn debit_command(&self) -> Command {
        Command::Debit {
            op_id: debit_op_id(self.txn_id),
            bank: self.payer.bank.clone(),
            account: self.payer.account.clone(),
            amount: self.amount,
        }
    }

    pub(super) fn credit_command(&self) -> Command {
        Command::Credit {
            op_id: credit_op_id(self.txn_id),
            bank: self.payee.bank.clone(),
            account: self.payee.account.clone(),
            amount: self.amount,
        }
    }

    pub(super) fn movement_command(&self) -> Command {
        match self.phase {
            Phase::Crediting(_) => self.credit_command(),
            _ => self.debit_command(),
        }
    }

    pub(super) fn inquire_command(&self) -> Command {
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

    pub(super) fn reverse_command(&self) -> Command {
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
