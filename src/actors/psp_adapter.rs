//! `PspAdapterActor`: one per bank endpoint. It owns that endpoint's client,
//! circuit breaker, call statistics and bulkhead (a bound on calls in flight).
//! Every call to a bank goes through one of these; a call the breaker or the
//! bulkhead refuses is answered at once as `Unknown::Rejected` — certainly not
//! delivered — without touching the network.
//!
//! It runs on an arbiter of its own, so that a panic kills only this actor
//! (its supervisor sees the address disconnect and starts a fresh one).

use crate::adapters::bank_api::{MoveRequest, ReverseRequest};
use crate::adapters::bank_client::{
    BankClient, InquiryOutcome, MoveOutcome, ReverseOutcome, Unknown,
};
use crate::domain::breaker::{Breaker, BreakerConfig, CallStats, Circuit, Mode, Permit};
use actix::prelude::*;
use futures::FutureExt;
use std::time::Instant;
use tracing::Instrument;

/// Tunables of every adapter.
#[derive(Debug, Clone, Copy)]
pub struct AdapterConfig {
    pub breaker: BreakerConfig,
    /// Most calls in flight through one endpoint (bulkhead).
    pub max_in_flight: usize,
    /// Calls remembered for success rate and latency percentiles.
    pub stats_window: usize,
}

impl Default for AdapterConfig {
    fn default() -> Self {
        AdapterConfig {
            breaker: BreakerConfig::default(),
            max_in_flight: 512,
            stats_window: 500,
        }
    }
}

/// A Bank API v1 operation.
#[derive(Debug, Clone)]
pub enum BankOp {
    Debit(MoveRequest),
    Credit(MoveRequest),
    Reverse(ReverseRequest),
    Inquire(String),
}

impl BankOp {
    pub fn name(&self) -> &'static str {
        match self {
            BankOp::Debit(_) => "debit",
            BankOp::Credit(_) => "credit",
            BankOp::Reverse(_) => "reverse",
            BankOp::Inquire(_) => "inquiry",
        }
    }

    /// The transaction this operation belongs to (an op id starts with it).
    pub fn txn_id(&self) -> &str {
        match self {
            BankOp::Debit(r) | BankOp::Credit(r) => &r.txn_id,
            BankOp::Reverse(r) => &r.txn_id,
            BankOp::Inquire(op_id) => op_id.split(':').next().unwrap_or(op_id),
        }
    }
}

/// The answer of one endpoint to one operation.
#[derive(Debug, Clone)]
pub enum Attempt {
    Move(MoveOutcome),
    Reverse(ReverseOutcome),
    Inquiry(InquiryOutcome),
}

impl Attempt {
    /// The same unknown outcome, shaped for `op`.
    pub fn unknown(op: &BankOp, why: Unknown) -> Attempt {
        match op {
            BankOp::Debit(_) | BankOp::Credit(_) => Attempt::Move(MoveOutcome::Unknown(why)),
            BankOp::Reverse(_) => Attempt::Reverse(ReverseOutcome::Unknown(why)),
            BankOp::Inquire(_) => Attempt::Inquiry(InquiryOutcome::Unknown(why)),
        }
    }

    pub fn unknown_reason(&self) -> Option<&Unknown> {
        match self {
            Attempt::Move(MoveOutcome::Unknown(u))
            | Attempt::Reverse(ReverseOutcome::Unknown(u))
            | Attempt::Inquiry(InquiryOutcome::Unknown(u)) => Some(u),
            _ => None,
        }
    }

    /// This attempt certainly did not reach the bank.
    pub fn not_delivered(&self) -> bool {
        self.unknown_reason().is_some_and(|u| !u.maybe_delivered())
    }

    /// Label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Attempt::Move(MoveOutcome::Applied) => "applied",
            Attempt::Move(MoveOutcome::Declined(_)) => "declined",
            Attempt::Reverse(ReverseOutcome::Reversed) => "reversed",
            Attempt::Reverse(ReverseOutcome::Noop) => "noop",
            Attempt::Inquiry(InquiryOutcome::Found(_)) => "found",
            Attempt::Inquiry(InquiryOutcome::NotFound) => "not_found",
            _ => match self.unknown_reason() {
                Some(Unknown::Rejected(_)) => "rejected",
                Some(Unknown::NotDelivered(_)) => "not_delivered",
                _ => "unknown",
            },
        }
    }
}

/// What operators see of one endpoint.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct EndpointView {
    pub url: String,
    pub priority: i32,
    pub circuit: &'static str,
    pub mode: &'static str,
    pub success_rate: f64,
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
    pub in_flight: usize,
    /// Calls this endpoint's bulkhead lets in flight at once.
    pub bulkhead: usize,
}

pub struct PspAdapterActor {
    client: BankClient,
    priority: i32,
    breaker: Breaker,
    stats: CallStats,
    in_flight: usize,
    max_in_flight: usize,
    epoch: Instant,
}

impl PspAdapterActor {
    pub fn new(client: BankClient, priority: i32, cfg: AdapterConfig, mode: Mode) -> Self {
        let mut breaker = Breaker::new(cfg.breaker);
        breaker.set_mode(mode);
        PspAdapterActor {
            client,
            priority,
            breaker,
            stats: CallStats::new(cfg.stats_window),
            in_flight: 0,
            max_in_flight: cfg.max_in_flight.max(1),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn view(&self) -> EndpointView {
        EndpointView {
            url: self.client.base_url().to_string(),
            priority: self.priority,
            circuit: self.breaker.circuit(self.now_ms()).as_str(),
            mode: self.breaker.mode().as_str(),
            success_rate: self.stats.success_rate(),
            latency_ms_p50: self.stats.latency_ms(0.50),
            latency_ms_p99: self.stats.latency_ms(0.99),
            in_flight: self.in_flight,
            bulkhead: self.max_in_flight,
        }
    }

    /// Records the end of a permitted call.
    fn settle(&mut self, trial: bool, healthy: bool, latency_ms: f64) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let now = self.now_ms();
        if healthy {
            self.breaker.on_success(trial, now);
        } else {
            self.breaker.on_failure(trial, now);
        }
        self.stats.record(healthy, latency_ms);
    }
}

impl Actor for PspAdapterActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.max_in_flight * 2);
    }
}

/// Perform one operation through this endpoint.
#[derive(Message)]
#[rtype(result = "Attempt")]
pub struct Call(pub BankOp);

impl Handler<Call> for PspAdapterActor {
    type Result = ResponseActFuture<Self, Attempt>;

    fn handle(&mut self, msg: Call, _ctx: &mut Self::Context) -> Self::Result {
        let op = msg.0;
        if self.in_flight >= self.max_in_flight {
            let refused = Attempt::unknown(&op, Unknown::Rejected("bulkhead full".into()));
            return Box::pin(fut::ready(refused));
        }
        let trial = match self.breaker.permit(self.now_ms()) {
            Permit::Go { trial } => trial,
            Permit::Refused => {
                let refused = Attempt::unknown(&op, Unknown::Rejected("circuit open".into()));
                return Box::pin(fut::ready(refused));
            }
        };
        self.in_flight += 1;
        let client = self.client.clone();
        let started = Instant::now();
        let shape = op.clone();
        // The saga's span does not cross the mailbox: this one carries txn_id
        // into the client's logs.
        let span = tracing::debug_span!(
            "bank_call",
            txn_id = op.txn_id(),
            endpoint = self.client.base_url(),
            operation = op.name(),
        );
        let call = async move {
            match &op {
                BankOp::Debit(r) => Attempt::Move(client.debit(r).await),
                BankOp::Credit(r) => Attempt::Move(client.credit(r).await),
                BankOp::Reverse(r) => Attempt::Reverse(client.reverse(r).await),
                BankOp::Inquire(id) => Attempt::Inquiry(client.inquire(id).await),
            }
        };
        Box::pin(
            std::panic::AssertUnwindSafe(call.instrument(span))
                .catch_unwind()
                .into_actor(self)
                .map(move |result, act, ctx| {
                    let latency_ms = started.elapsed().as_secs_f64() * 1_000.0;
                    match result {
                        Ok(attempt) => {
                            // A definitive answer means the bank works, declines included.
                            act.settle(trial, attempt.unknown_reason().is_none(), latency_ms);
                            attempt
                        }
                        Err(_) => {
                            tracing::error!(
                                endpoint = act.client.base_url(),
                                "bank call panicked; adapter stops"
                            );
                            act.settle(trial, false, latency_ms);
                            ctx.stop();
                            Attempt::unknown(
                                &shape,
                                Unknown::MaybeApplied("adapter panicked".into()),
                            )
                        }
                    }
                }),
        )
    }
}

/// Probe `GET /v1/health`; it counts like a call for the breaker, so a dead
/// bank opens the circuit without traffic and a recovered one closes it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Probe;

impl Handler<Probe> for PspAdapterActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Probe, _ctx: &mut Self::Context) -> Self::Result {
        let Permit::Go { trial } = self.breaker.permit(self.now_ms()) else {
            return Box::pin(fut::ready(()));
        };
        self.in_flight += 1;
        let client = self.client.clone();
        let started = Instant::now();
        Box::pin(
            async move { client.health().await }
                .into_actor(self)
                .map(move |up, act, _ctx| {
                    act.settle(trial, up, started.elapsed().as_secs_f64() * 1_000.0);
                }),
        )
    }
}

/// Current view for operators and routing.
#[derive(Message)]
#[rtype(result = "EndpointView")]
pub struct Snapshot;

impl Handler<Snapshot> for PspAdapterActor {
    type Result = MessageResult<Snapshot>;

    fn handle(&mut self, _: Snapshot, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.view())
    }
}

/// Operator override of the breaker.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetMode(pub Mode);

impl Handler<SetMode> for PspAdapterActor {
    type Result = ();

    fn handle(&mut self, msg: SetMode, _ctx: &mut Self::Context) {
        self.breaker.set_mode(msg.0);
    }
}

/// Stop now (the supervisor starts a fresh adapter).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

impl Handler<Stop> for PspAdapterActor {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// Is this view's circuit letting calls through?
pub fn usable(view: &EndpointView) -> bool {
    view.circuit != Circuit::Open.as_str()
}
