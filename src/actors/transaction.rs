//! `TransactionActor`: one actor per in-flight transaction. It interprets the
//! pure saga: feeds it events, writes each checkpoint *before* running the
//! commands of that transition, runs the commands (bank calls, timers), and
//! turns their results back into events. It owns its saga; nobody else
//! mutates it.
//!
//! What does not happen here: no decision about money (that is `saga`), no
//! command runs before its checkpoint is durable, and a checkpoint rejected
//! for a stale version stops the actor without running anything (a zombie).

use super::bank_directory::{BankDirectory, Resolve};
use super::registry::{Finished, TxnRegistry};
use crate::adapters::bank_api::{MoveRequest, OpStatus, ReverseRequest};
use crate::adapters::bank_client::{InquiryOutcome, MoveOutcome, ReverseOutcome, Unknown};
use crate::adapters::store::{CheckpointError, CheckpointSink, CheckpointWrite};
use crate::metrics::Metrics;
use crate::saga::{
    Command, Event, InquiryResult, MoveResult, ReverseResult, Saga, SagaConfig, Transition,
};
use actix::prelude::*;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::Instrument;

/// What every saga actor needs, shared.
pub struct SagaDeps {
    pub checkpoints: Arc<dyn CheckpointSink>,
    pub banks: Addr<BankDirectory>,
    pub cfg: SagaConfig,
    pub metrics: Metrics,
    /// Deadline of one bank call (the client enforces it; this bounds the whole step).
    pub bank_timeout: Duration,
}

/// How long a checkpoint write is retried before the actor gives the saga back
/// to the registry (which resumes it from Postgres later).
const CHECKPOINT_RETRY_FOR: Duration = Duration::from_secs(30);

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub struct TransactionActor {
    saga: Saga,
    /// Checkpoint version of `saga` in Postgres.
    version: i32,
    /// Just created by the API: its debit was never sent, start without an inquiry.
    fresh: bool,
    deps: Arc<SagaDeps>,
    registry: Addr<TxnRegistry>,
    span: tracing::Span,
}

impl TransactionActor {
    pub fn new(
        saga: Saga,
        version: i32,
        fresh: bool,
        deps: Arc<SagaDeps>,
        registry: Addr<TxnRegistry>,
    ) -> Self {
        let span = tracing::info_span!("saga", txn_id = %saga.txn_id);
        TransactionActor {
            saga,
            version,
            fresh,
            deps,
            registry,
            span,
        }
    }

    /// Checkpoint (if the transition asks for one), then run its commands.
    fn apply(&mut self, t: Transition, ctx: &mut Context<Self>) {
        let Some(step) = t.checkpoint.clone() else {
            self.saga = t.saga;
            self.run(t.commands, ctx);
            return;
        };
        let write = CheckpointWrite {
            saga: t.saga.clone(),
            expected_version: self.version,
            step,
        };
        let sink = self.deps.checkpoints.clone();
        let metrics = self.deps.metrics.clone();
        let save = save_with_retry(sink, write, metrics).instrument(self.span.clone());
        // `wait`: no other event is handled until the checkpoint is durable.
        ctx.wait(save.into_actor(self).map(move |result, act, ctx| match result {
            Ok(version) => {
                act.version = version;
                act.saga = t.saga;
                act.run(t.commands, ctx);
            }
            Err(CheckpointError::VersionConflict(v)) => {
                tracing::warn!(parent: &act.span, version = v, "another writer owns this saga; stopping");
                ctx.stop();
            }
            Err(e) => {
                tracing::error!(parent: &act.span, error = %e, "checkpoint not durable; handing the saga back");
                ctx.stop();
            }
        }));
    }

    fn run(&mut self, commands: Vec<Command>, ctx: &mut Context<Self>) {
        if self.saga.is_terminal() {
            ctx.stop();
            return;
        }
        for command in commands {
            match command {
                Command::Sleep { ms } => {
                    ctx.notify_later(Deliver(Event::Wake), Duration::from_millis(ms));
                }
                call => {
                    let fut = call_bank(self.deps.clone(), self.saga.txn_id.to_string(), call)
                        .instrument(self.span.clone());
                    ctx.spawn(
                        fut.into_actor(self)
                            .map(|event, _act, ctx| ctx.notify(Deliver(event))),
                    );
                }
            }
        }
    }
}

impl Actor for TransactionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(16);
        self.deps.metrics.sagas_in_flight.inc();
        let t = if self.fresh {
            Transition {
                commands: self.saga.start_commands(),
                saga: self.saga.clone(),
                checkpoint: None,
            }
        } else {
            tracing::info!(parent: &self.span, phase = ?self.saga.phase, "resuming saga from its checkpoint");
            self.saga.clone().resume()
        };
        self.apply(t, ctx);
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.deps.metrics.sagas_in_flight.dec();
        let status = self.saga.status();
        if status.is_terminal() {
            self.deps
                .metrics
                .txns_finished
                .with_label_values(&["P2P", status.as_str()])
                .inc();
            tracing::info!(parent: &self.span, status = status.as_str(), reason = ?self.saga.reason(), "transaction finished");
        }
        // Lifecycle notices must not be dropped, whatever the mailbox holds.
        self.registry.do_send(Finished {
            txn_id: self.saga.txn_id,
            status,
        });
    }
}

/// An event for the saga (a bank answer or a timer).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver(pub Event);

impl Handler<Deliver> for TransactionActor {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        let t = self.saga.clone().step(msg.0, now_ms(), &self.deps.cfg);
        self.apply(t, ctx);
    }
}

async fn save_with_retry(
    sink: Arc<dyn CheckpointSink>,
    write: CheckpointWrite,
    metrics: Metrics,
) -> Result<i32, CheckpointError> {
    let started = Instant::now();
    let mut pause_ms = 50;
    loop {
        let t0 = Instant::now();
        let result = sink.save(write.clone()).await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics
            .checkpoint_seconds
            .with_label_values(&[outcome])
            .observe(t0.elapsed().as_secs_f64());
        match result {
            Err(CheckpointError::Db(e)) if started.elapsed() < CHECKPOINT_RETRY_FOR => {
                tracing::warn!(error = %e, "checkpoint failed; retrying");
                tokio::time::sleep(Duration::from_millis(pause_ms)).await;
                pause_ms = (pause_ms * 2).min(2_000);
            }
            other => return other,
        }
    }
}

fn operation(call: &Command) -> &'static str {
    match call {
        Command::Debit { .. } => "debit",
        Command::Credit { .. } => "credit",
        Command::Reverse { .. } => "reverse",
        Command::Inquire { .. } => "inquiry",
        Command::Sleep { .. } => "sleep",
    }
}

/// Performs one bank call and returns the saga event it amounts to. Tries the
/// bank's endpoints in priority order, moving on only when an attempt was
/// certainly not delivered (so nothing can be applied twice by two endpoints
/// — and even then the op_id would make it once).
async fn call_bank(deps: Arc<SagaDeps>, txn_id: String, call: Command) -> Event {
    let (bank, op) = match &call {
        Command::Debit { bank, .. }
        | Command::Credit { bank, .. }
        | Command::Reverse { bank, .. }
        | Command::Inquire { bank, .. } => (bank.clone(), operation(&call)),
        Command::Sleep { .. } => return Event::Wake,
    };
    let not_delivered = |why: &str| {
        outcome_event(
            &call,
            Attempt::Unknown(Unknown::NotDelivered(why.to_string())),
        )
    };
    let endpoints = match deps.banks.send(Resolve(bank.clone())).await {
        Ok(Some(e)) if !e.is_empty() => e,
        _ => return not_delivered("bank not registered"),
    };
    let started = Instant::now();
    let mut event = not_delivered("no endpoint tried");
    let mut label = "not_delivered";
    for client in endpoints.iter() {
        let attempt = match &call {
            Command::Debit {
                op_id,
                account,
                amount,
                ..
            } => Attempt::Move(
                client
                    .debit(&MoveRequest {
                        op_id: op_id.clone(),
                        txn_id: txn_id.clone(),
                        account: account.clone(),
                        amount_paise: amount.0,
                    })
                    .await,
            ),
            Command::Credit {
                op_id,
                account,
                amount,
                ..
            } => Attempt::Move(
                client
                    .credit(&MoveRequest {
                        op_id: op_id.clone(),
                        txn_id: txn_id.clone(),
                        account: account.clone(),
                        amount_paise: amount.0,
                    })
                    .await,
            ),
            Command::Reverse {
                op_id,
                original_op_id,
                amount,
                ..
            } => Attempt::Reverse(
                client
                    .reverse(&ReverseRequest {
                        op_id: op_id.clone(),
                        original_op_id: original_op_id.clone(),
                        txn_id: txn_id.clone(),
                        amount_paise: amount.0,
                    })
                    .await,
            ),
            Command::Inquire { op_id, .. } => Attempt::Inquiry(client.inquire(op_id).await),
            Command::Sleep { .. } => return Event::Wake,
        };
        label = attempt.label();
        let undelivered = attempt.not_delivered();
        if let Some(u) = attempt.unknown() {
            tracing::debug!(bank = %bank, endpoint = client.base_url(), operation = op, detail = u.detail(), "bank outcome unknown");
        }
        event = outcome_event(&call, attempt);
        if !undelivered {
            break;
        }
    }
    deps.metrics
        .bank_calls
        .with_label_values(&[&bank, op, label])
        .inc();
    deps.metrics
        .bank_call_seconds
        .with_label_values(&[&bank, op])
        .observe(started.elapsed().as_secs_f64());
    event
}

/// One endpoint's answer, before it becomes a saga event.
enum Attempt {
    Move(MoveOutcome),
    Reverse(ReverseOutcome),
    Inquiry(InquiryOutcome),
    Unknown(Unknown),
}

impl Attempt {
    fn unknown(&self) -> Option<&Unknown> {
        match self {
            Attempt::Move(MoveOutcome::Unknown(u))
            | Attempt::Reverse(ReverseOutcome::Unknown(u))
            | Attempt::Inquiry(InquiryOutcome::Unknown(u))
            | Attempt::Unknown(u) => Some(u),
            _ => None,
        }
    }

    fn not_delivered(&self) -> bool {
        self.unknown().is_some_and(|u| !u.maybe_delivered())
    }

    fn label(&self) -> &'static str {
        match self {
            Attempt::Move(MoveOutcome::Applied) => "applied",
            Attempt::Move(MoveOutcome::Declined(_)) => "declined",
            Attempt::Reverse(ReverseOutcome::Reversed) => "reversed",
            Attempt::Reverse(ReverseOutcome::Noop) => "noop",
            Attempt::Inquiry(InquiryOutcome::Found(_)) => "found",
            Attempt::Inquiry(InquiryOutcome::NotFound) => "not_found",
            _ if self.not_delivered() => "not_delivered",
            _ => "unknown",
        }
    }
}

fn outcome_event(call: &Command, attempt: Attempt) -> Event {
    match (call, attempt) {
        (Command::Debit { .. } | Command::Credit { .. }, Attempt::Move(m)) => {
            Event::Moved(match m {
                MoveOutcome::Applied => MoveResult::Applied,
                MoveOutcome::Declined(code) => MoveResult::Declined(code.as_str().to_string()),
                MoveOutcome::Unknown(u) => MoveResult::Unknown {
                    maybe_delivered: u.maybe_delivered(),
                },
            })
        }
        (Command::Debit { .. } | Command::Credit { .. }, Attempt::Unknown(u)) => {
            Event::Moved(MoveResult::Unknown {
                maybe_delivered: u.maybe_delivered(),
            })
        }
        (Command::Reverse { .. }, Attempt::Reverse(r)) => Event::ReverseDone(match r {
            ReverseOutcome::Reversed => ReverseResult::Reversed,
            ReverseOutcome::Noop => ReverseResult::Noop,
            ReverseOutcome::Unknown(_) => ReverseResult::Unknown,
        }),
        (Command::Reverse { .. }, _) => Event::ReverseDone(ReverseResult::Unknown),
        (Command::Inquire { .. }, Attempt::Inquiry(i)) => Event::Inquired(match i {
            InquiryOutcome::Found(view) => match view.status {
                OpStatus::Applied => InquiryResult::Applied,
                OpStatus::Reversed => InquiryResult::Reversed,
                OpStatus::Declined | OpStatus::Noop => InquiryResult::Declined(
                    view.code
                        .map(|c| c.as_str().to_string())
                        .unwrap_or_default(),
                ),
            },
            InquiryOutcome::NotFound => InquiryResult::NotFound,
            InquiryOutcome::Unknown(_) => InquiryResult::Unknown,
        }),
        (Command::Inquire { .. }, _) => Event::Inquired(InquiryResult::Unknown),
        _ => Event::Wake,
    }
}
