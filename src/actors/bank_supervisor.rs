//! `BankHealthSupervisor`: one per bank. It starts one `PspAdapterActor` per
//! endpoint (each on its own arbiter), restarts any adapter that stops or
//! panics (it watches the addresses; actix's own `Supervisor` does not restart
//! after a panic), probes every endpoint's `/v1/health` on an interval,
//! derives the bank's health (UP / DEGRADED / DOWN), orders endpoints for each
//! call (usable first, then priority, then lower latency), and applies
//! operators' circuit overrides, which survive adapter restarts.

use super::psp_adapter::{
    AdapterConfig, EndpointView, Probe, PspAdapterActor, SetMode, Snapshot, Stop, usable,
};
use crate::adapters::bank_client::BankClient;
use crate::adapters::store::BankEndpoint;
use crate::domain::breaker::Mode;
use crate::metrics::Metrics;
use actix::prelude::*;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// An endpoint whose recent success rate is below this is not "healthy".
const HEALTHY_SUCCESS_RATE: f64 = 0.9;
/// How often dead adapters are looked for.
const LIVENESS_EVERY: Duration = Duration::from_millis(100);

/// What every supervisor needs.
#[derive(Clone)]
pub struct SupervisorConfig {
    pub http: reqwest::Client,
    /// The client of endpoints registered with `"http2": true`.
    pub http2: reqwest::Client,
    pub call_timeout: Duration,
    /// Deadline of a status inquiry (`--status-check-timeout-ms`).
    pub inquiry_timeout: Duration,
    /// Deadline of a reverse (`--reversal-timeout-ms`).
    pub reverse_timeout: Duration,
    pub adapter: AdapterConfig,
    pub probe_every: Duration,
    pub metrics: Metrics,
    /// Where each supervisor publishes whether its bank is DOWN.
    pub board: HealthBoard,
}

/// The read model each supervisor publishes for its bank: whether it is
/// DOWN (for admission) and its adapters in the order to try them (for every
/// bank call). HTTP handlers and saga actors read it without a message round
/// trip per payment or per call; only the bank's supervisor writes its entry,
/// after every probe round, restart, reconfiguration and operator override.
/// At most one probe interval stale — a bank that fell in between is met by
/// its open circuits, which refuse the call before it is sent, and a stopped
/// adapter by a closed mailbox, which is "not delivered": the next is tried.
#[derive(Clone, Default)]
pub struct HealthBoard(Arc<RwLock<HashMap<String, BankEntry>>>);

/// One bank on the board.
#[derive(Clone, Default)]
struct BankEntry {
    down: bool,
    routes: Arc<[Routed]>,
}

impl HealthBoard {
    pub fn is_down(&self, bank: &str) -> bool {
        let map = self.0.read().unwrap_or_else(|p| p.into_inner());
        map.get(bank).is_some_and(|e| e.down)
    }

    /// The adapters to try for a call to `bank`, best first (empty when the
    /// bank is not registered).
    pub fn routes(&self, bank: &str) -> Arc<[Routed]> {
        let map = self.0.read().unwrap_or_else(|p| p.into_inner());
        map.get(bank).map(|e| e.routes.clone()).unwrap_or_default()
    }

    fn set_down(&self, bank: &str, down: bool) {
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        map.entry(bank.to_string()).or_default().down = down;
    }

    fn set_routes(&self, bank: &str, routes: Vec<Routed>) {
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        map.entry(bank.to_string()).or_default().routes = routes.into();
    }
}

struct Slot {
    url: String,
    priority: i32,
    http2: bool,
    mode: Mode,
    adapter: Option<(Addr<PspAdapterActor>, Arbiter)>,
    /// Last snapshot, for routing between probes.
    last: Option<EndpointView>,
}

pub struct BankHealthSupervisor {
    code: String,
    slots: Vec<Slot>,
    cfg: SupervisorConfig,
    /// Adapters started again after they stopped or panicked.
    pub restarts: u64,
    /// Its health over the last minutes.
    history: super::health_history::HealthHistory,
}

/// A bank as operators see it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct BankView {
    pub code: String,
    pub health: &'static str,
    pub endpoints: Vec<EndpointView>,
    /// Adapters restarted by this supervisor since it started.
    pub adapter_restarts: u64,
}

impl BankView {
    pub fn is_down(&self) -> bool {
        self.health == "DOWN"
    }
}

/// UP when every endpoint's circuit is closed, DOWN when none lets calls
/// through, DEGRADED in between.
pub fn derive_health(endpoints: &[EndpointView]) -> &'static str {
    if endpoints.iter().all(|e| e.circuit == "CLOSED") && !endpoints.is_empty() {
        "UP"
    } else if endpoints.iter().any(usable) {
        "DEGRADED"
    } else {
        "DOWN"
    }
}

impl BankHealthSupervisor {
    pub fn new(code: String, endpoints: &[BankEndpoint], cfg: SupervisorConfig) -> Self {
        BankHealthSupervisor {
            code,
            slots: Self::slots(endpoints),
            cfg,
            restarts: 0,
            history: Default::default(),
        }
    }

    fn slots(endpoints: &[BankEndpoint]) -> Vec<Slot> {
        let mut sorted = endpoints.to_vec();
        sorted.sort_by_key(|e| e.priority);
        sorted
            .into_iter()
            .map(|e| Slot {
                url: e.url,
                priority: e.priority,
                http2: e.http2,
                mode: Mode::Auto,
                adapter: None,
                last: None,
            })
            .collect()
    }

    fn spawn(&self, slot: &Slot) -> (Addr<PspAdapterActor>, Arbiter) {
        let arbiter = Arbiter::new();
        let http = if slot.http2 {
            &self.cfg.http2
        } else {
            &self.cfg.http
        };
        let client = BankClient::new(http.clone(), &slot.url, self.cfg.call_timeout)
            .with_step_timeouts(self.cfg.inquiry_timeout, self.cfg.reverse_timeout);
        let (priority, cfg, mode) = (slot.priority, self.cfg.adapter, slot.mode);
        let addr = PspAdapterActor::start_in_arbiter(&arbiter.handle(), move |_| {
            PspAdapterActor::new(client, priority, cfg, mode)
        });
        (addr, arbiter)
    }

    /// Starts adapters that are missing or whose actor is gone.
    fn ensure_adapters(&mut self) {
        let mut changed = false;
        for i in 0..self.slots.len() {
            let alive = self.slots[i]
                .adapter
                .as_ref()
                .is_some_and(|(addr, _)| addr.connected());
            if alive {
                continue;
            }
            if let Some((_, arbiter)) = self.slots[i].adapter.take() {
                arbiter.stop();
                self.restarts += 1;
                tracing::warn!(bank = %self.code, endpoint = %self.slots[i].url, "adapter stopped; starting a fresh one");
            }
            let fresh = self.spawn(&self.slots[i]);
            self.slots[i].adapter = Some(fresh);
            changed = true;
        }
        if changed {
            self.publish_routes();
        }
    }

    fn stop_all(&mut self) {
        for slot in &mut self.slots {
            if let Some((addr, arbiter)) = slot.adapter.take() {
                addr.do_send(Stop);
                arbiter.stop();
            }
        }
    }

    /// Writes this bank's DOWN/not-DOWN and its ranking to the board, from
    /// the last snapshots.
    /// Also adds them to the history, once every endpoint has a snapshot.
    fn publish_health(&mut self) {
        let seen: Vec<EndpointView> = self.slots.iter().filter_map(|s| s.last.clone()).collect();
        let complete = seen.len() == self.slots.len() && !seen.is_empty();
        let health = derive_health(&seen);
        let down = seen.len() == self.slots.len() && health == "DOWN";
        self.cfg.board.set_down(&self.code, down);
        self.publish_routes();
        if complete {
            let now_ms = chrono::Utc::now().timestamp_millis();
            self.history.record(now_ms, health, &seen);
        }
    }

    /// The adapters to try for one call, best first: healthy (circuit letting
    /// calls through and most recent calls answered), then usable, then
    /// priority, then lower latency.
    fn ranked(&self) -> Vec<Routed> {
        let mut ranked: Vec<Ranked> = self
            .slots
            .iter()
            .filter_map(|s| {
                let (addr, _) = s.adapter.as_ref()?;
                let (rank, p50) = s.last.as_ref().map_or(((true, true), 0.0), |v| {
                    let ok = usable(v);
                    (
                        (ok && v.success_rate >= HEALTHY_SUCCESS_RATE, ok),
                        v.latency_ms_p50,
                    )
                });
                Some((
                    rank,
                    s.priority,
                    p50,
                    Routed {
                        endpoint: s.url.clone(),
                        adapter: addr.clone(),
                    },
                ))
            })
            .collect();
        ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.total_cmp(&b.2)));
        ranked.into_iter().map(|r| r.3).collect()
    }

    fn publish_routes(&self) {
        self.cfg.board.set_routes(&self.code, self.ranked());
    }

    fn probe(&mut self, ctx: &mut Context<Self>) {
        for (i, slot) in self.slots.iter().enumerate() {
            let Some((addr, _)) = &slot.adapter else {
                continue;
            };
            let _ = addr.try_send(Probe);
            let fut = addr.send(Snapshot);
            ctx.spawn(fut.into_actor(self).map(move |view, act, _ctx| {
                if let (Ok(view), Some(slot)) = (view, act.slots.get_mut(i)) {
                    let state = match view.circuit {
                        "CLOSED" => 0,
                        "HALF_OPEN" => 1,
                        _ => 2,
                    };
                    act.cfg
                        .metrics
                        .circuit_state
                        .with_label_values(&[&act.code, &view.url])
                        .set(state);
                    slot.last = Some(view);
                    act.publish_health();
                }
            }));
        }
    }
}

impl Actor for BankHealthSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        self.ensure_adapters();
        ctx.run_interval(LIVENESS_EVERY, |act, _| act.ensure_adapters());
        ctx.run_interval(self.cfg.probe_every, |act, ctx| act.probe(ctx));
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.stop_all();
    }
}

/// (healthy, usable), priority, p50 latency, adapter.
type Ranked = ((bool, bool), i32, f64, Routed);

/// One adapter to try, with the endpoint it calls (for metrics and logs).
#[derive(Clone)]
pub struct Routed {
    pub endpoint: String,
    pub adapter: Addr<PspAdapterActor>,
}

/// A fresh view of the bank and its endpoints.
#[derive(Message)]
#[rtype(result = "BankView")]
pub struct View;

impl Handler<View> for BankHealthSupervisor {
    type Result = ResponseFuture<BankView>;

    fn handle(&mut self, _: View, _ctx: &mut Self::Context) -> Self::Result {
        let code = self.code.clone();
        let adapter_restarts = self.restarts;
        let asks: Vec<_> = self
            .slots
            .iter()
            .map(|s| {
                let addr = s.adapter.as_ref().map(|(a, _)| a.clone());
                // A restarting adapter is not a sick bank: show what it last knew.
                let fallback = s.last.clone().unwrap_or(EndpointView {
                    url: s.url.clone(),
                    priority: s.priority,
                    circuit: "CLOSED",
                    mode: s.mode.as_str(),
                    success_rate: 1.0,
                    latency_ms_p50: 0.0,
                    latency_ms_p99: 0.0,
                    in_flight: 0,
                    bulkhead: 0,
                });
                async move {
                    match addr {
                        Some(a) => a.send(Snapshot).await.unwrap_or(fallback),
                        None => fallback,
                    }
                }
            })
            .collect();
        let board = self.cfg.board.clone();
        Box::pin(async move {
            let endpoints = futures::future::join_all(asks).await;
            let health = derive_health(&endpoints);
            board.set_down(&code, health == "DOWN");
            BankView {
                code,
                health,
                endpoints,
                adapter_restarts,
            }
        })
    }
}

/// The bank's endpoints (URLs, in its order) and its health over the last
/// minutes, oldest first.
#[derive(Message)]
#[rtype(result = "(Vec<String>, Vec<super::health_history::HealthSample>)")]
pub struct History;

impl Handler<History> for BankHealthSupervisor {
    type Result = MessageResult<History>;

    fn handle(&mut self, _: History, _ctx: &mut Self::Context) -> Self::Result {
        // As the adapters show them (`EndpointView::url`: no trailing slash).
        let urls = self
            .slots
            .iter()
            .map(|s| s.url.trim_end_matches('/').to_string())
            .collect();
        MessageResult((urls, self.history.samples()))
    }
}

/// The operators' overrides as stored (endpoint URL, or "" for every
/// endpoint, → mode): each endpoint gets its own, else the bank's, else auto.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ApplyOverrides(pub std::collections::HashMap<String, Mode>);

impl Handler<ApplyOverrides> for BankHealthSupervisor {
    type Result = ();

    fn handle(&mut self, msg: ApplyOverrides, _ctx: &mut Self::Context) {
        let overrides: std::collections::HashMap<&str, Mode> = msg
            .0
            .iter()
            .map(|(url, mode)| (url.trim_end_matches('/'), *mode))
            .collect();
        for slot in &mut self.slots {
            let mode = overrides
                .get(slot.url.trim_end_matches('/'))
                .or_else(|| overrides.get(""))
                .copied()
                .unwrap_or(Mode::Auto);
            if slot.mode != mode {
                slot.mode = mode;
                if let Some((addr, _)) = &slot.adapter {
                    addr.do_send(SetMode(mode));
                }
            }
        }
    }
}

/// Stop every adapter of this bank; the liveness check starts fresh ones.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct RestartAdapters;

impl Handler<RestartAdapters> for BankHealthSupervisor {
    type Result = usize;

    fn handle(&mut self, _: RestartAdapters, _ctx: &mut Self::Context) -> usize {
        let mut n = 0;
        for slot in &self.slots {
            if let Some((addr, _)) = &slot.adapter {
                addr.do_send(Stop);
                n += 1;
            }
        }
        n
    }
}

/// New endpoint list for this bank (after `PUT /v1/admin/banks/{code}`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reconfigure(pub Vec<BankEndpoint>);

impl Handler<Reconfigure> for BankHealthSupervisor {
    type Result = ();

    fn handle(&mut self, msg: Reconfigure, _ctx: &mut Self::Context) {
        self.stop_all();
        self.slots = Self::slots(&msg.0);
        self.ensure_adapters();
    }
}
