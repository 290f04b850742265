//! `TxnRegistry`: starts one `TransactionActor` per in-flight transaction,
//! bounds how many run at once, claims unfinished transactions from Postgres
//! (at start and by a periodic sweep: its own idle ones, those nobody holds,
//! and those of nodes whose lease ran out), and wakes `?wait=` callers when a
//! transaction's actor stops here. It stops every saga here when told
//! (`StopAll`: the node's lease is lost, or its drain's grace is over).
//!
//! Invariants: at most one actor per transaction in this process; a
//! transaction that finished here is never started again by this process (a
//! late `Start` or a sweep that read it before it finished is ignored); a
//! saga runs here only if this node created it or claimed it (the claim
//! bumps its version before anything is sent), and only while the node
//! holds its lease; an actor holding a stale version is fenced off at its
//! next checkpoint. Work beyond `max_in_flight` waits in Postgres, not in
//! memory.

use super::transaction::{Relinquish, SagaDeps, TransactionActor};
use crate::adapters::store::cluster::{ClaimReason, Claims};
use crate::adapters::store::{Store, StoredSaga};
use crate::cluster::Node;
use crate::saga::{Saga, Status};
use actix::prelude::*;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::oneshot;
use uuid::Uuid;

/// What the accept path reads to admit a new transaction without a message
/// round trip: sagas running here plus those waiting in Postgres, as the
/// registry last counted them, against `--max-pending`. Written only by the
/// registry.
#[derive(Clone)]
pub struct Admission {
    load: Arc<AtomicUsize>,
    max_pending: usize,
}

impl Admission {
    pub fn new(max_pending: usize) -> Admission {
        Admission {
            load: Arc::new(AtomicUsize::new(0)),
            max_pending: max_pending.max(1),
        }
    }

    /// May a new transaction be accepted now? (`false` = the switch is saturated.)
    pub fn admits(&self) -> bool {
        self.load.load(Ordering::Relaxed) < self.max_pending
    }

    fn set(&self, load: usize) {
        self.load.store(load, Ordering::Relaxed);
    }
}

/// How often unfinished transactions not running here are looked for.
const SWEEP_EVERY: Duration = Duration::from_millis(500);
/// A saga this node holds but does not run is claimed again only after it
/// has been left alone this long (a `Start` for it may be on its way).
const OWN_IDLE_SECS: f64 = 1.0;
/// How many finished transaction ids are remembered to refuse restarts.
const FINISHED_MEMORY: usize = 200_000;
/// Most `?wait=` callers waiting at once.
const MAX_WAITERS: usize = 100_000;

pub struct TxnRegistry {
    deps: Arc<SagaDeps>,
    store: Store,
    node: Node,
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: usize,
    active: HashMap<Uuid, Addr<TransactionActor>>,
    finished: HashSet<Uuid>,
    finished_order: VecDeque<Uuid>,
    max_in_flight: usize,
    admission: Admission,
    /// Unfinished transactions in Postgres that are not running here (as of the last sweep).
    backlog: usize,
    sweeping: bool,
    waiters: HashMap<Uuid, Vec<oneshot::Sender<()>>>,
    waiter_count: usize,
}

impl TxnRegistry {
    pub fn new(
        deps: Arc<SagaDeps>,
        store: Store,
        node: Node,
        arbiters: Vec<ArbiterHandle>,
        max_in_flight: usize,
        admission: Admission,
    ) -> Self {
        TxnRegistry {
            deps,
            store,
            node,
            arbiters,
            next_arbiter: 0,
            active: HashMap::new(),
            finished: HashSet::new(),
            finished_order: VecDeque::new(),
            max_in_flight: max_in_flight.max(1),
            admission,
            backlog: 0,
            sweeping: false,
            waiters: HashMap::new(),
            waiter_count: 0,
        }
    }

    /// Starts the saga's actor on `on` (the accepting HTTP worker's thread,
    /// so its steps, its `?wait=` caller and its answers share a thread), or
    /// on the registry's own saga threads in turn.
    fn launch(
        &mut self,
        saga: Saga,
        version: i32,
        fresh: bool,
        on: Option<ArbiterHandle>,
        ctx: &mut Context<Self>,
    ) {
        let txn_id = saga.txn_id;
        if self.active.contains_key(&txn_id) || self.finished.contains(&txn_id) {
            return;
        }
        let deps = self.deps.clone();
        let me = ctx.address();
        let actor = move |_: &mut Context<TransactionActor>| {
            TransactionActor::new(saga, version, fresh, deps, me)
        };
        let addr = match on {
            Some(arbiter) => TransactionActor::start_in_arbiter(&arbiter, actor),
            None if self.arbiters.is_empty() => TransactionActor::create(actor),
            None => {
                let arbiter = &self.arbiters[self.next_arbiter % self.arbiters.len()];
                self.next_arbiter = self.next_arbiter.wrapping_add(1);
                TransactionActor::start_in_arbiter(arbiter, actor)
            }
        };
        self.active.insert(txn_id, addr);
        self.publish_load();
    }

    fn publish_load(&self) {
        self.admission.set(self.active.len() + self.backlog);
    }

    fn remember_finished(&mut self, txn_id: Uuid) {
        if self.finished.insert(txn_id) {
            self.finished_order.push_back(txn_id);
            while self.finished_order.len() > FINISHED_MEMORY {
                if let Some(old) = self.finished_order.pop_front() {
                    self.finished.remove(&old);
                }
            }
        }
    }

    /// `upi_sagas_claimed_total{reason}`, and a line when another node's
    /// sagas were taken over (its lease ran out: it died or stalled).
    fn count_claims(&self, reasons: &[ClaimReason]) {
        for reason in reasons {
            self.deps
                .metrics
                .sagas_claimed
                .with_label_values(&[reason.label()])
                .inc();
        }
        let takeovers = reasons
            .iter()
            .filter(|r| **r == ClaimReason::Takeover)
            .count();
        if takeovers > 0 {
            tracing::warn!(
                sagas = takeovers,
                "took over sagas of a node whose lease had run out"
            );
        }
    }

    fn sweep(&mut self, ctx: &mut Context<Self>) {
        let free = self.max_in_flight.saturating_sub(self.active.len());
        // A draining node takes nothing; one unsure of its lease claims nothing.
        if self.sweeping || free == 0 || self.node.is_draining() || !self.node.holds_lease() {
            return;
        }
        self.sweeping = true;
        let store = self.store.clone();
        let node = self.node.id();
        let exclude: Vec<Uuid> = self.active.keys().copied().collect();
        let fut = async move {
            let claimed = store
                .claim(node, &exclude, free as i64, OWN_IDLE_SECS)
                .await?;
            let count = store.claimable_count(node).await?;
            Ok::<_, crate::adapters::store::StoreError>((claimed, count))
        };
        ctx.spawn(fut.into_actor(self).map(|result, act, ctx| {
            act.sweeping = false;
            match result {
                Ok((Claims { sagas, reasons }, count)) => {
                    act.count_claims(&reasons);
                    for StoredSaga { saga, version } in sagas {
                        if act.active.len() >= act.max_in_flight {
                            break;
                        }
                        // Claimed (version bumped) even if it finished here
                        // meanwhile: then it is terminal and was not claimed.
                        act.launch(saga, version, false, None, ctx);
                    }
                    act.backlog = (count as usize).saturating_sub(act.active.len());
                    act.publish_load();
                }
                Err(e) => tracing::warn!(error = %e, "sweep for unfinished transactions failed"),
            }
        }));
    }
}

impl Actor for TxnRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        // Resume everything a previous process left unfinished, then keep looking.
        self.sweep(ctx);
        ctx.run_interval(SWEEP_EVERY, |act, ctx| {
            act.sweep(ctx);
            act.waiters.retain(|_, list| {
                list.retain(|w| !w.is_closed());
                !list.is_empty()
            });
            act.waiter_count = act.waiters.values().map(Vec::len).sum();
        });
    }
}

/// Start the saga of a transaction just created (its state is durable), on
/// `arbiter` when given.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Start {
    pub saga: Saga,
    pub version: i32,
    pub arbiter: Option<ArbiterHandle>,
}

impl Handler<Start> for TxnRegistry {
    type Result = ();

    fn handle(&mut self, msg: Start, ctx: &mut Self::Context) {
        if self.node.is_draining() {
            // It stays in Postgres, held by this node until the drain hands it back.
            return;
        }
        if self.active.len() >= self.max_in_flight {
            // It waits in Postgres; a sweep starts it when a slot frees.
            self.backlog += 1;
            self.publish_load();
            return;
        }
        self.launch(msg.saga, msg.version, true, msg.arbiter, ctx);
    }
}

/// A saga actor stopped (finished, or handed back after a storage failure).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Finished {
    pub txn_id: Uuid,
    pub status: Status,
}

impl Handler<Finished> for TxnRegistry {
    type Result = ();

    fn handle(&mut self, msg: Finished, ctx: &mut Self::Context) {
        self.active.remove(&msg.txn_id);
        if msg.status.is_terminal() {
            self.remember_finished(msg.txn_id);
        }
        // Finished or handed back: either way its waiters look again.
        if let Some(list) = self.waiters.remove(&msg.txn_id) {
            self.waiter_count = self.waiter_count.saturating_sub(list.len());
            for w in list {
                let _ = w.send(());
            }
        }
        self.publish_load();
        if self.backlog > 0 {
            self.sweep(ctx);
        }
    }
}

/// Tell me when this transaction's actor stops in this process (finished, or
/// handed back). `None` when too many callers already wait; the caller then
/// just polls. The flag says whether its saga runs here now: if it does, the
/// caller needs no polling at all, since the notice comes when it stops.
#[derive(Message)]
#[rtype(result = "Option<(oneshot::Receiver<()>, bool)>")]
pub struct Watch(pub Uuid);

impl Handler<Watch> for TxnRegistry {
    type Result = Option<(oneshot::Receiver<()>, bool)>;

    fn handle(&mut self, msg: Watch, _ctx: &mut Self::Context) -> Self::Result {
        if self.waiter_count >= MAX_WAITERS {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        self.waiters.entry(msg.0).or_default().push(tx);
        self.waiter_count += 1;
        Some((rx, self.active.contains_key(&msg.0)))
    }
}

/// Stop every saga here, at once: the node's lease can no longer be trusted
/// (`cluster::lease`), or a drain's grace is over (`serve`). Each actor stops
/// without another step; a checkpoint it was writing is fenced if another node
/// claimed its saga meanwhile. The sweep claims them again when this node may.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct StopAll {
    pub why: &'static str,
}

impl Handler<StopAll> for TxnRegistry {
    type Result = usize;

    fn handle(&mut self, msg: StopAll, _ctx: &mut Self::Context) -> usize {
        if !self.active.is_empty() {
            tracing::warn!(
                sagas = self.active.len(),
                why = msg.why,
                "stopping every saga here"
            );
        }
        for addr in self.active.values() {
            addr.do_send(Relinquish);
        }
        self.active.len()
    }
}

/// Counts for operators and readiness.
#[derive(Message)]
#[rtype(result = "RegistryStats")]
pub struct Stats;

#[derive(Debug, Clone, Copy, serde::Serialize, utoipa::ToSchema)]
pub struct RegistryStats {
    pub in_flight: usize,
    pub backlog: usize,
    pub max_in_flight: usize,
}

impl Handler<Stats> for TxnRegistry {
    type Result = MessageResult<Stats>;

    fn handle(&mut self, _: Stats, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(RegistryStats {
            in_flight: self.active.len(),
            backlog: self.backlog,
            max_in_flight: self.max_in_flight,
        })
    }
}
