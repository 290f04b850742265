//! `TransactionActor`: one actor per in-flight transaction. It interprets the
//! pure saga: feeds it events, writes each checkpoint *before* running the
//! commands of that transition, runs the commands (bank calls, timers), and
//! turns their results back into events. It owns its saga; nobody else
//! mutates it.
//!
//! What does not happen here: no decision about money (that is `saga`), no
//! command runs before its checkpoint is durable, and a checkpoint rejected
//! for a stale version stops the actor without running anything (a zombie).

use super::bank_supervisor::HealthBoard;
use super::checkpoint_writer::CheckpointWriter;
use super::psp_adapter::{Attempt, BankOp, Call};
use super::registry::{Finished, TxnRegistry};
use crate::adapters::bank_api::{MoveRequest, OpStatus, ReverseRequest};
use crate::adapters::bank_client::{InquiryOutcome, MoveOutcome, ReverseOutcome, Unknown};
use crate::adapters::store::{CheckpointError, CheckpointWrite};
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
    /// Group commit of checkpoints (and of the accept path's creates).
    pub checkpoints: CheckpointWriter,
    /// Each bank's adapters, best first, as its supervisor last published.
    pub board: HealthBoard,
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
    /// The step (checkpoint label) the saga is in and since when.
    step: (&'static str, Instant),
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
            step: (if fresh { "PENDING" } else { "RESUMED" }, Instant::now()),
        }
    }

    /// Checkpoint (if the transition asks for one), then run its commands.
    fn apply(&mut self, t: Transition, ctx: &mut Context<Self>) {
        let Some(step) = t.checkpoint.clone() else {
            self.saga = t.saga;
            self.run(t.commands, ctx);
            return;
        };
        let label = step.state;
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
                act.enter_step(label);
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

    /// Records how long the previous step took; a terminal step ends the clock.
    fn enter_step(&mut self, label: &'static str) {
        let (previous, since) = self.step;
        self.deps
            .metrics
            .saga_step_seconds
            .with_label_values(&[previous])
            .observe(since.elapsed().as_secs_f64());
        self.step = (label, Instant::now());
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
                .with_label_values(&[self.saga.kind.as_str(), status.as_str()])
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

/// Stop now, without another step: the node no longer holds this saga (its
/// lease is in doubt, or it drains). Whoever claims it next resumes it from
/// its last checkpoint.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Relinquish;

impl Handler<Relinquish> for TransactionActor {
    type Result = ();

    fn handle(&mut self, _: Relinquish, ctx: &mut Self::Context) {
        tracing::info!(parent: &self.span, "relinquishing the saga");
        ctx.stop();
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
    sink: CheckpointWriter,
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

/// The Bank API operation a saga command stands for.
fn bank_op(txn_id: &str, call: &Command) -> Option<(String, BankOp)> {
    let op = match call {
        Command::Debit {
            op_id,
            account,
            amount,
            ..
        } => BankOp::Debit(MoveRequest {
            op_id: op_id.clone(),
            txn_id: txn_id.to_string(),
            account: account.clone(),
            amount_paise: amount.0,
        }),
        Command::Credit {
            op_id,
            account,
            amount,
            ..
        } => BankOp::Credit(MoveRequest {
            op_id: op_id.clone(),
            txn_id: txn_id.to_string(),
            account: account.clone(),
            amount_paise: amount.0,
        }),
        Command::Reverse {
            op_id,
            original_op_id,
            amount,
            ..
        } => BankOp::Reverse(ReverseRequest {
            op_id: op_id.clone(),
            original_op_id: original_op_id.clone(),
            txn_id: txn_id.to_string(),
            amount_paise: amount.0,
        }),
        Command::Inquire { op_id, .. } => BankOp::Inquire(op_id.clone()),
        Command::Sleep { .. } => return None,
    };
    let bank = match call {
        Command::Debit { bank, .. }
        | Command::Credit { bank, .. }
        | Command::Reverse { bank, .. }
        | Command::Inquire { bank, .. } => bank.clone(),
        Command::Sleep { .. } => return None,
    };
    Some((bank, op))
}

/// Performs one bank call through the bank's adapters and returns the saga
/// event it amounts to. Adapters are tried best first, moving on only when an
/// attempt certainly did not reach the bank — so nothing can be sent twice by
/// two endpoints (and the op_id would make it once even then).
async fn call_bank(deps: Arc<SagaDeps>, txn_id: String, call: Command) -> Event {
    let Some((bank, op)) = bank_op(&txn_id, &call) else {
        return Event::Wake;
    };
    let started = Instant::now();
    let mut attempt = Attempt::unknown(&op, Unknown::Rejected("bank not registered".into()));
    // The bank's supervisor publishes its ranking; no message round trip here.
    let adapters = deps.board.routes(&bank);
    // Bounds the whole call, whatever the adapters do.
    let limit = deps.bank_timeout * 2 + Duration::from_secs(1);
    let mut endpoint = String::from("none");
    for routed in adapters.iter() {
        endpoint = routed.endpoint.clone();
        attempt = match tokio::time::timeout(limit, routed.adapter.send(Call(op.clone()))).await {
            Ok(Ok(a)) => a,
            Ok(Err(_)) => Attempt::unknown(&op, Unknown::NotDelivered("adapter restarting".into())),
            Err(_) => Attempt::unknown(
                &op,
                Unknown::MaybeApplied("adapter did not answer in time".into()),
            ),
        };
        if let Some(u) = attempt.unknown_reason() {
            tracing::debug!(bank = %bank, endpoint = %endpoint, operation = op.name(), detail = u.detail(), "bank outcome unknown");
        }
        if !attempt.not_delivered() {
            break;
        }
    }
    deps.metrics
        .bank_calls
        .with_label_values(&[&bank, &endpoint, op.name(), attempt.label()])
        .inc();
    deps.metrics
        .bank_call_seconds
        .with_label_values(&[&bank, &endpoint, op.name()])
        .observe(started.elapsed().as_secs_f64());
    saga_event(attempt)
}

fn saga_event(attempt: Attempt) -> Event {
    match attempt {
        Attempt::Move(m) => Event::Moved(match m {
            MoveOutcome::Applied => MoveResult::Applied,
            MoveOutcome::Declined(code) => MoveResult::Declined(code.as_str().to_string()),
            MoveOutcome::Unknown(Unknown::Rejected(_)) => MoveResult::Rejected,
            MoveOutcome::Unknown(u) => MoveResult::Unknown {
                maybe_delivered: u.maybe_delivered(),
            },
        }),
        Attempt::Reverse(r) => Event::ReverseDone(match r {
            ReverseOutcome::Reversed => ReverseResult::Reversed,
            ReverseOutcome::Noop => ReverseResult::Noop,
            ReverseOutcome::Unknown(_) => ReverseResult::Unknown,
        }),
        Attempt::Inquiry(i) => Event::Inquired(match i {
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
    }
}
