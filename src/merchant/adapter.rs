//! `ProcessorAdapter`: one actor per payment processor. It owns that
//! processor's client, its bulkhead (calls in flight, bounded), its circuit
//! breaker and its latency estimate; it gates every POST (refusing before
//! anything leaves when the circuit or the bulkhead says no), learns from
//! every outcome and from the health probes its supervisor orders, and
//! publishes a `Snapshot` to the supervisor after each change.
//!
//! Calls run concurrently (`ResponseActFuture`): the actor's state is only
//! touched between awaits, on its own thread.

use super::MerchantMetrics;
use super::client::{HealthOutcome, LookupOutcome, PostOutcome, ProcessorClient};
use super::policy::{Breaker, BreakerConfig, Latency, ProcessorId, Snapshot};
use super::supervisor::Report;
use actix::prelude::*;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::time::Instant;
use uuid::Uuid;

pub struct ProcessorAdapter {
    id: ProcessorId,
    client: ProcessorClient,
    breaker: Breaker,
    latency: Latency,
    /// Start of each call in flight, by a local call number.
    calls: HashMap<u64, Instant>,
    next_call: u64,
    capacity: usize,
    failing: bool,
    supervisor: Recipient<Report>,
    metrics: MerchantMetrics,
}

impl ProcessorAdapter {
    pub fn new(
        id: ProcessorId,
        client: ProcessorClient,
        capacity: usize,
        supervisor: Recipient<Report>,
        metrics: MerchantMetrics,
    ) -> ProcessorAdapter {
        ProcessorAdapter {
            id,
            client,
            breaker: Breaker::new(BreakerConfig::default()),
            latency: Latency::default(),
            calls: HashMap::new(),
            next_call: 0,
            capacity: capacity.max(1),
            failing: false,
            supervisor,
            metrics,
        }
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            circuit: self.breaker.circuit(),
            latency: self.latency,
            oldest_call: self.calls.values().min().copied(),
            in_flight: self.calls.len(),
            capacity: self.capacity,
            failing: self.failing,
        }
    }

    fn publish(&self) {
        self.metrics
            .circuit
            .with_label_values(&[self.id.as_str()])
            .set(match self.breaker.circuit() {
                super::policy::Circuit::Closed => 0,
                super::policy::Circuit::HalfOpen { .. } => 1,
                super::policy::Circuit::Open { .. } => 2,
            });
        self.supervisor.do_send(Report {
            processor: self.id,
            snapshot: self.snapshot(),
        });
    }

    /// Starts a call: returns its number, or `None` when it must not be made now.
    fn begin(&mut self, now: Instant) -> Result<u64, &'static str> {
        if self.calls.len() >= self.capacity {
            return Err("bulkhead full");
        }
        if self.breaker.try_acquire(now).is_none() {
            return Err("circuit open");
        }
        let call = self.next_call;
        self.next_call = self.next_call.wrapping_add(1);
        self.calls.insert(call, now);
        Ok(call)
    }

    fn observe(&mut self, call: u64, success: Option<bool>) {
        let now = Instant::now();
        if let Some(started) = self.calls.remove(&call) {
            let ms = now.saturating_duration_since(started).as_secs_f64() * 1000.0;
            match success {
                Some(true) => {
                    self.latency.record(ms, now);
                    self.breaker.on_success();
                }
                Some(false) => {
                    self.latency.record(ms, now);
                    self.breaker.on_failure(now);
                }
                None => self.breaker.on_failure(now),
            }
        }
        self.publish();
    }
}

impl Actor for ProcessorAdapter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        self.publish();
    }
}

/// POST one payment (the caller has announced it durably).
#[derive(Message)]
#[rtype(result = "PostOutcome")]
pub struct Post {
    pub id: Uuid,
    pub amount_cents: i64,
    pub requested_at: DateTime<Utc>,
}

impl Handler<Post> for ProcessorAdapter {
    type Result = ResponseActFuture<Self, PostOutcome>;

    fn handle(&mut self, msg: Post, _: &mut Self::Context) -> Self::Result {
        let call = match self.begin(Instant::now()) {
            Ok(call) => call,
            Err(why) => {
                self.metrics
                    .calls
                    .with_label_values(&[self.id.as_str(), "post", "refused"])
                    .inc();
                return Box::pin(fut::ready(PostOutcome::Refused(why)));
            }
        };
        self.publish();
        let client = self.client.clone();
        Box::pin(
            async move {
                client
                    .post_payment(msg.id, msg.amount_cents, &msg.requested_at)
                    .await
            }
            .into_actor(self)
            .map(move |outcome, act, _| {
                let success = match &outcome {
                    PostOutcome::Accepted { .. } => Some(true),
                    PostOutcome::Answered(_) | PostOutcome::Unanswered(_) => Some(false),
                    PostOutcome::NotDelivered(_) | PostOutcome::Refused(_) => None,
                };
                act.metrics
                    .calls
                    .with_label_values(&[act.id.as_str(), "post", outcome.label()])
                    .inc();
                if let PostOutcome::Unanswered(why) | PostOutcome::NotDelivered(why) = &outcome {
                    tracing::debug!(processor = act.id.as_str(), payment = %msg.id, error = %why, "POST without answer");
                }
                act.observe(call, success);
                outcome
            }),
        )
    }
}

/// Ask whether the processor has a payment. Not gated by the circuit: resolving
/// an unknown outcome is exactly what a sick processor's payments need.
#[derive(Message)]
#[rtype(result = "LookupOutcome")]
pub struct Lookup {
    pub id: Uuid,
}

impl Handler<Lookup> for ProcessorAdapter {
    type Result = ResponseActFuture<Self, LookupOutcome>;

    fn handle(&mut self, msg: Lookup, _: &mut Self::Context) -> Self::Result {
        let client = self.client.clone();
        Box::pin(
            async move { client.lookup(msg.id).await }
                .into_actor(self)
                .map(|outcome, act, _| {
                    let label = match &outcome {
                        LookupOutcome::Found { .. } => "found",
                        LookupOutcome::NotFound => "not_found",
                        LookupOutcome::Unknown(_) => "unknown",
                    };
                    act.metrics
                        .calls
                        .with_label_values(&[act.id.as_str(), "lookup", label])
                        .inc();
                    outcome
                }),
        )
    }
}

/// Probe `GET /payments/service-health` now (the supervisor keeps the 5 s pace).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Probe;

impl Handler<Probe> for ProcessorAdapter {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Probe, _: &mut Self::Context) -> Self::Result {
        let client = self.client.clone();
        Box::pin(
            async move { client.health().await }
                .into_actor(self)
                .map(|outcome, act, _| {
                    let now = Instant::now();
                    let label = match outcome {
                        HealthOutcome::Health {
                            failing,
                            min_response_ms,
                        } => {
                            act.failing = failing;
                            act.breaker.on_probe(failing, now);
                            act.latency.reset(min_response_ms as f64, now);
                            if failing { "failing" } else { "healthy" }
                        }
                        HealthOutcome::RateLimited => "rate_limited",
                        HealthOutcome::Unavailable(why) => {
                            tracing::debug!(processor = act.id.as_str(), error = %why, "health probe failed");
                            act.failing = true;
                            act.breaker.on_probe(true, now);
                            "unavailable"
                        }
                    };
                    act.metrics
                        .calls
                        .with_label_values(&[act.id.as_str(), "health", label])
                        .inc();
                    act.publish();
                }),
        )
    }
}
