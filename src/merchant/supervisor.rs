//! `ProcessorSupervisor`: starts the two `ProcessorAdapter`s (each on its own
//! arbiter), restarts one whose actor died (a panic included: its address
//! goes dead and a fresh adapter takes its place), paces the health probes
//! (one per processor every 5.1 s, under the processors' shared
//! one-per-5-s limit; a `429` is simply waited out), and keeps the latest
//! `Snapshot` of each so forwarders can route. It never calls a processor
//! itself and sends to nobody but its adapters.

use super::adapter::{Probe, ProcessorAdapter};
use super::client::ProcessorClient;
use super::policy::{ProcessorId, Snapshot};
use super::{MerchantConfig, MerchantMetrics};
use actix::prelude::*;
use std::time::{Duration, Instant};

/// Pace of health probes per processor (the processors allow one per 5 s).
pub const PROBE_EVERY: Duration = Duration::from_millis(5_100);
/// How often adapters are checked for life and probes are considered.
const TICK: Duration = Duration::from_millis(250);

struct Slot {
    arbiter: Arbiter,
    adapter: Addr<ProcessorAdapter>,
    snapshot: Snapshot,
    next_probe: Instant,
}

pub struct ProcessorSupervisor {
    cfg: MerchantConfig,
    metrics: MerchantMetrics,
    slots: Vec<Slot>,
}

impl ProcessorSupervisor {
    pub fn new(cfg: MerchantConfig, metrics: MerchantMetrics) -> ProcessorSupervisor {
        ProcessorSupervisor {
            cfg,
            metrics,
            slots: Vec::new(),
        }
    }

    fn spawn_adapter(
        &self,
        id: ProcessorId,
        arbiter: &Arbiter,
        me: Recipient<Report>,
    ) -> Addr<ProcessorAdapter> {
        let url = match id {
            ProcessorId::Default => &self.cfg.default_url,
            ProcessorId::Fallback => &self.cfg.fallback_url,
        };
        let client = ProcessorClient::new(url, self.cfg.post_timeout, self.cfg.read_timeout);
        let capacity = self.cfg.max_forwards;
        let metrics = self.metrics.clone();
        ProcessorAdapter::start_in_arbiter(&arbiter.handle(), move |_| {
            ProcessorAdapter::new(id, client, capacity, me, metrics)
        })
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        for id in ProcessorId::ALL {
            let i = id.index();
            if !self.slots[i].adapter.connected() {
                tracing::warn!(
                    processor = id.as_str(),
                    "processor adapter died; restarting it"
                );
                self.metrics
                    .restarts
                    .with_label_values(&[id.as_str()])
                    .inc();
                let fresh = Arbiter::new();
                let addr = self.spawn_adapter(id, &fresh, ctx.address().recipient());
                let slot = &mut self.slots[i];
                slot.arbiter.stop();
                slot.arbiter = fresh;
                slot.adapter = addr;
                slot.snapshot = Snapshot::fresh(self.cfg.max_forwards);
            }
            let slot = &mut self.slots[i];
            if now >= slot.next_probe {
                slot.next_probe = now + PROBE_EVERY;
                // `try_send`: a full mailbox skips this probe rather than queueing it late.
                let _ = slot.adapter.try_send(Probe);
            }
        }
    }
}

impl Actor for ProcessorSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        let now = Instant::now();
        for id in ProcessorId::ALL {
            let arbiter = Arbiter::new();
            let adapter = self.spawn_adapter(id, &arbiter, ctx.address().recipient());
            self.slots.push(Slot {
                arbiter,
                adapter,
                snapshot: Snapshot::fresh(self.cfg.max_forwards),
                next_probe: now,
            });
        }
        ctx.run_interval(TICK, |act, ctx| act.tick(ctx));
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        for slot in &self.slots {
            slot.arbiter.stop();
        }
    }
}

/// An adapter's latest state.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Report {
    pub processor: ProcessorId,
    pub snapshot: Snapshot,
}

impl Handler<Report> for ProcessorSupervisor {
    type Result = ();

    fn handle(&mut self, msg: Report, _: &mut Self::Context) {
        if let Some(slot) = self.slots.get_mut(msg.processor.index()) {
            slot.snapshot = msg.snapshot;
        }
    }
}

/// Both processors as they stand, and how to reach their adapters.
#[derive(Clone)]
pub struct RouteView {
    pub snapshots: [Snapshot; 2],
    pub adapters: [Addr<ProcessorAdapter>; 2],
    pub at: Instant,
}

impl RouteView {
    pub fn adapter(&self, p: ProcessorId) -> &Addr<ProcessorAdapter> {
        &self.adapters[p.index()]
    }

    pub fn snapshot(&self, p: ProcessorId) -> &Snapshot {
        &self.snapshots[p.index()]
    }
}

#[derive(Message)]
#[rtype(result = "RouteView")]
pub struct View;

impl Handler<View> for ProcessorSupervisor {
    type Result = MessageResult<View>;

    fn handle(&mut self, _: View, _: &mut Self::Context) -> Self::Result {
        MessageResult(RouteView {
            snapshots: [self.slots[0].snapshot, self.slots[1].snapshot],
            adapters: [self.slots[0].adapter.clone(), self.slots[1].adapter.clone()],
            at: Instant::now(),
        })
    }
}
