//! One money transfer composed of the shared steps: debit the payer, then
//! credit the payee; when the credit cannot happen, reverse the debit; when
//! an outcome stays unknown past its deadline, fence it with a reverse
//! before concluding anything. Every payment type runs this transfer.

use super::movement::{Verdict, credit_reverse_op_id, debit_op_id, debit_reverse_op_id};
use super::{
    Checkpoint, Command, Event, Movement, Phase, Reason, Reversal, ReverseResult, Saga, SagaConfig,
    Terminal, Transition,
};

impl Saga {
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

    pub(super) fn finish(mut self, terminal: Terminal) -> Transition {
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

    pub(super) fn checkpointed(
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

    pub(super) fn quiet(self, commands: Vec<Command>) -> Transition {
        Transition {
            saga: self,
            commands,
            checkpoint: None,
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
    use crate::domain::Paise;
    use crate::saga::{MoveResult, Party, Status};
    use uuid::Uuid;

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
