//! `Forwarder`: pulls due, unfinished payments from Postgres in bounded
//! batches (claims with a lease, `FOR UPDATE SKIP LOCKED`), never more than
//! `max_forwards` at once, and runs each one's forwarding flow until it is
//! accepted somewhere or handed back (held) with a retry time. Unfinished
//! payments of an earlier process are found the same way, so resuming after
//! a restart is just the next claim.
//!
//! One flow (`forward`), step by step, as `policy::plan` says:
//! - **Send(p)**: announce durably (SENDING at `p`, `p`'s requestedAt fixed,
//!   unanswered since now), then POST to `p` through its adapter. `200`/`422`
//!   → ACCEPTED at `p` with that requestedAt. An answered error → the send is
//!   finished there, the outcome still unknown. No answer → unknown, and it
//!   may still land: "not found" is believed only `settle` later.
//! - **Resolve(p)**: `GET /payments/{id}` at `p`: found → ACCEPTED at `p` with
//!   the requestedAt it reports; not found → free to go elsewhere.
//! - **Hold**: hand it back to Postgres, due again after a capped backoff.
//!
//! Bounds: steps per claim, time per claim (half the lease, renewed by each
//! announce), claims in flight, batch size; a flow that lost its claim stops.

use super::adapter::{Lookup, Post};
use super::client::{LookupOutcome, PostOutcome};
use super::flow_batch::{Accept, Announce, Release};
use super::policy::{self, ProcessorId, Situation, Step};
use super::store::{Claimed, MerchantStore};
use super::supervisor::{ProcessorSupervisor, View};
use super::{MerchantConfig, MerchantMetrics};
use crate::actors::checkpoint_writer::CheckpointWriter;
use actix::prelude::*;
use chrono::{DateTime, SubsecRound, Utc};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Most payments claimed by one query.
const BATCH: usize = 256;
/// Steps (sends, lookups) one claim may take before the payment is handed back.
const MAX_STEPS: usize = 6;
/// Least time between the starts of two claims.
const CLAIM_GAP: Duration = Duration::from_millis(5);
/// How often Postgres is looked at when nothing woke the forwarder.
pub const POLL_EVERY: Duration = Duration::from_millis(50);

/// What every flow needs.
pub struct FlowDeps {
    pub store: MerchantStore,
    /// Group commit of the flows' fenced writes (announce, accept, release).
    pub writer: CheckpointWriter,
    pub supervisor: Addr<ProcessorSupervisor>,
    pub cfg: MerchantConfig,
    pub metrics: MerchantMetrics,
}

/// How a flow ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowEnd {
    Accepted(ProcessorId),
    Held,
    /// The claim was lost (lease expired, purged) or Postgres failed; the lease brings it back.
    Abandoned,
}

pub struct Forwarder {
    deps: Arc<FlowDeps>,
    in_flight: HashSet<Uuid>,
    claiming: bool,
    again: bool,
    /// Failed claims in a row (for quiet logging while Postgres is away).
    claim_failures: u64,
    /// When the last claim started, and whether a later one is scheduled.
    last_claim: Option<Instant>,
    claim_later: bool,
}

impl Forwarder {
    pub fn new(deps: Arc<FlowDeps>) -> Forwarder {
        Forwarder {
            deps,
            in_flight: HashSet::new(),
            claiming: false,
            again: false,
            claim_failures: 0,
            last_claim: None,
            claim_later: false,
        }
    }

    fn claim(&mut self, ctx: &mut Context<Self>) {
        if self.claiming {
            self.again = true;
            return;
        }
        // Batch, don't react: at most one claim per CLAIM_GAP, so a burst of
        // new payments is claimed together rather than one query each.
        if let Some(last) = self.last_claim {
            let since = last.elapsed();
            if since < CLAIM_GAP {
                if !self.claim_later {
                    self.claim_later = true;
                    ctx.run_later(CLAIM_GAP - since, |act, ctx| {
                        act.claim_later = false;
                        act.claim(ctx);
                    });
                }
                return;
            }
        }
        self.last_claim = Some(Instant::now());
        let free = self
            .deps
            .cfg
            .max_forwards
            .saturating_sub(self.in_flight.len());
        if free == 0 {
            return;
        }
        self.claiming = true;
        self.again = false;
        let deps = self.deps.clone();
        let exclude: Vec<Uuid> = self.in_flight.iter().copied().collect();
        let fut = async move {
            let view = deps.supervisor.send(View).await.ok()?;
            // As many as the processor new sends would go to admits now (one while
            // its circuit is half open); none while neither admits any.
            let now = Instant::now();
            let budget = policy::route(
                view.snapshot(ProcessorId::Default),
                view.snapshot(ProcessorId::Fallback),
                now,
                deps.cfg.routing,
            )
            .map_or(0, |p| view.snapshot(p).budget(now));
            let limit = free.min(budget).min(BATCH);
            if limit == 0 {
                return Some(Ok(Vec::new()));
            }
            Some(
                deps.store
                    .claim(Uuid::new_v4(), limit as i64, &exclude, deps.cfg.lease)
                    .await,
            )
        };
        ctx.spawn(fut.into_actor(self).map(|claimed, act, ctx| {
            act.claiming = false;
            let rows = match claimed {
                Some(Ok(rows)) => {
                    act.claim_failures = 0;
                    rows
                }
                Some(Err(e)) => {
                    // Once, then every 100th time (5 s at the poll rate), while it lasts.
                    if act.claim_failures % 100 == 0 {
                        tracing::warn!(error = %e, failures = act.claim_failures + 1, "claiming merchant payments failed");
                    }
                    act.claim_failures += 1;
                    Vec::new()
                }
                None => Vec::new(),
            };
            let claimed_any = !rows.is_empty();
            for row in rows {
                act.start_flow(row, ctx);
            }
            if claimed_any || act.again {
                act.claim(ctx);
            }
        }));
    }

    fn start_flow(&mut self, row: Claimed, ctx: &mut Context<Self>) {
        let id = row.id;
        if !self.in_flight.insert(id) {
            return;
        }
        self.deps.metrics.in_flight.set(self.in_flight.len() as i64);
        let deps = self.deps.clone();
        ctx.spawn(
            forward(deps, row)
                .into_actor(self)
                .map(move |end, act, ctx| {
                    act.in_flight.remove(&id);
                    act.deps.metrics.in_flight.set(act.in_flight.len() as i64);
                    let label = match end {
                        FlowEnd::Accepted(ProcessorId::Default) => "accepted_default",
                        FlowEnd::Accepted(ProcessorId::Fallback) => "accepted_fallback",
                        FlowEnd::Held => "held",
                        FlowEnd::Abandoned => "abandoned",
                    };
                    act.deps.metrics.flows.with_label_values(&[label]).inc();
                    act.claim(ctx);
                }),
        );
    }
}

impl Actor for Forwarder {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        self.claim(ctx);
        ctx.run_interval(POLL_EVERY, |act, ctx| act.claim(ctx));
    }
}

/// New payments are waiting: look now rather than at the next poll.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Kick;

impl Handler<Kick> for Forwarder {
    type Result = ();
    fn handle(&mut self, _: Kick, ctx: &mut Self::Context) {
        self.claim(ctx);
    }
}

fn now_ms_utc() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

/// A cheap per-payment number for backoff jitter.
fn seed(id: &Uuid) -> u64 {
    let b = id.as_bytes();
    u64::from_le_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]])
}

/// Runs one claimed payment until it is accepted or handed back.
pub async fn forward(deps: Arc<FlowDeps>, mut c: Claimed) -> FlowEnd {
    let cfg = &deps.cfg;
    let mut maybe_at = c.maybe_at;
    let mut unanswered = c.unanswered_since;
    let mut renewed = Instant::now();
    let mut last_error: Option<String> = None;
    for _ in 0..MAX_STEPS {
        if renewed.elapsed() > cfg.lease / 2 {
            break;
        }
        let Ok(view) = deps.supervisor.send(View).await else {
            break;
        };
        let now = Instant::now();
        let route = policy::route(
            view.snapshot(ProcessorId::Default),
            view.snapshot(ProcessorId::Fallback),
            now,
            cfg.routing,
        );
        let situation = Situation {
            maybe_at,
            unanswered_since_ms: unanswered.map(|t| t.timestamp_millis()),
            route,
            now_ms: Utc::now().timestamp_millis(),
            settle_ms: cfg.settle.as_millis() as u64,
        };
        match policy::plan(&situation, policy::hold_ms(c.holds, seed(&c.id))) {
            Step::Send(p) => {
                let sent_at = Utc::now();
                let fresh = c.requested_at[p.index()].unwrap_or_else(now_ms_utc);
                let announce = Announce {
                    id: c.id,
                    claim: c.claim,
                    p,
                    requested_at: fresh,
                    sent_at,
                    lease: cfg.lease,
                };
                let requested_at = match deps.writer.announce(announce).await {
                    Ok(Some(at)) => at,
                    Ok(None) => return FlowEnd::Abandoned,
                    Err(e) => {
                        tracing::warn!(payment = %c.id, error = %e, "announcing a send failed");
                        return FlowEnd::Abandoned;
                    }
                };
                renewed = Instant::now();
                c.requested_at[p.index()] = Some(requested_at);
                let (before_at, before_unanswered) = (maybe_at, unanswered);
                let posted_at = Utc::now();
                let outcome = view
                    .adapter(p)
                    .send(Post {
                        id: c.id,
                        amount_cents: c.amount_cents,
                        requested_at,
                    })
                    .await
                    .unwrap_or_else(|e| PostOutcome::Unanswered(format!("adapter gone: {e}")));
                match outcome {
                    PostOutcome::Accepted { already } => {
                        if already {
                            deps.metrics
                                .accepted
                                .with_label_values(&[p.as_str(), "already_had"])
                                .inc();
                        } else {
                            deps.metrics
                                .accepted
                                .with_label_values(&[p.as_str(), "accepted"])
                                .inc();
                        }
                        return record_acceptance(&deps, &c, p, requested_at).await;
                    }
                    // Nothing left the switch: as before the send; wait for the adapter.
                    PostOutcome::Refused(why) => {
                        let error = Some(format!("{}: {why}", p.as_str()));
                        let ms = policy::hold_ms(c.holds, seed(&c.id));
                        return hand_back(&deps, &c, before_at, before_unanswered, ms, error).await;
                    }
                    PostOutcome::NotDelivered(why) => {
                        (maybe_at, unanswered) = (before_at, before_unanswered);
                        last_error = Some(format!("{}: not delivered: {why}", p.as_str()));
                    }
                    // The processor finished with this request; earlier unanswered ones still count.
                    PostOutcome::Answered(status) => {
                        (maybe_at, unanswered) = (Some(p), before_unanswered);
                        last_error = Some(format!("{}: status {status}", p.as_str()));
                    }
                    PostOutcome::Unanswered(why) => {
                        (maybe_at, unanswered) = (Some(p), Some(posted_at));
                        last_error = Some(format!("{}: no answer: {why}", p.as_str()));
                    }
                }
            }
            Step::Resolve(p) => {
                let outcome = view
                    .adapter(p)
                    .send(Lookup { id: c.id })
                    .await
                    .unwrap_or_else(|e| LookupOutcome::Unknown(format!("adapter gone: {e}")));
                match outcome {
                    LookupOutcome::Found {
                        requested_at,
                        amount_cents,
                    } => {
                        if amount_cents != c.amount_cents {
                            tracing::error!(payment = %c.id, processor = p.as_str(), ours = c.amount_cents, theirs = amount_cents, "processor holds a different amount");
                        }
                        if c.requested_at[p.index()] != Some(requested_at) {
                            tracing::warn!(payment = %c.id, processor = p.as_str(), %requested_at, "processor reports another requestedAt; counting by its own");
                        }
                        deps.metrics
                            .accepted
                            .with_label_values(&[p.as_str(), "found"])
                            .inc();
                        return record_acceptance(&deps, &c, p, requested_at).await;
                    }
                    LookupOutcome::NotFound => {
                        (maybe_at, unanswered) = (None, None);
                    }
                    LookupOutcome::Unknown(why) => {
                        last_error = Some(format!("{}: lookup: {why}", p.as_str()));
                        return hand_back(
                            &deps,
                            &c,
                            maybe_at,
                            unanswered,
                            policy::hold_ms(c.holds, seed(&c.id)),
                            last_error,
                        )
                        .await;
                    }
                }
            }
            Step::Hold { ms } => {
                return hand_back(&deps, &c, maybe_at, unanswered, ms, last_error).await;
            }
        }
    }
    hand_back(&deps, &c, maybe_at, unanswered, 0, last_error).await
}

/// Writes the acceptance, retrying briefly: the processor already has the payment,
/// so if this cannot be written the next claim finds it there again (422 or lookup).
async fn record_acceptance(
    deps: &FlowDeps,
    c: &Claimed,
    p: ProcessorId,
    requested_at: DateTime<Utc>,
) -> FlowEnd {
    for attempt in 0..4u32 {
        let accept = Accept {
            id: c.id,
            claim: c.claim,
            p,
            requested_at,
        };
        match deps.writer.accept(accept).await {
            Ok(true) => return FlowEnd::Accepted(p),
            Ok(false) => {
                tracing::warn!(payment = %c.id, processor = p.as_str(), "accepted, but the claim was lost before it was recorded");
                return FlowEnd::Abandoned;
            }
            Err(e) => {
                tracing::warn!(payment = %c.id, error = %e, attempt, "recording an acceptance failed");
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
        }
    }
    FlowEnd::Abandoned
}

async fn hand_back(
    deps: &FlowDeps,
    c: &Claimed,
    maybe_at: Option<ProcessorId>,
    unanswered: Option<DateTime<Utc>>,
    after_ms: u64,
    last_error: Option<String>,
) -> FlowEnd {
    deps.metrics.holds.inc();
    let release = Release {
        id: c.id,
        claim: c.claim,
        maybe_at,
        unanswered_since: unanswered,
        after: Duration::from_millis(after_ms),
        last_error,
    };
    match deps.writer.release(release).await {
        Ok(true) => FlowEnd::Held,
        Ok(false) => FlowEnd::Abandoned,
        Err(e) => {
            tracing::warn!(payment = %c.id, error = %e, "handing a payment back failed; its lease brings it back");
            FlowEnd::Abandoned
        }
    }
}
