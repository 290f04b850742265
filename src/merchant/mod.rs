//! Merchant payment forwarding: the switch as the intermediary of the
//! "Rinha de Backend 2025" contract (`docs/processor-api.md`).
//! Merchants post payments; each is made durable in Postgres, then forwarded
//! to exactly one of two payment processors — the cheaper *default* when it
//! is healthy and fast, else the dearer *fallback*, else held and retried —
//! and the switch's summary counts exactly what each processor accepted, by
//! the requestedAt the switch sent it.
//!
//! ```text
//! POST /payments ──▶ merchant_payments (PENDING) ──▶ 202
//! Forwarder ──claim (lease, SKIP LOCKED)──▶ flow per payment (bounded)
//!   flow ──View──▶ ProcessorSupervisor (snapshots, probes, restarts)
//!   flow ──announce──▶ Postgres ──Post/Lookup──▶ ProcessorAdapter ×2 ──HTTP──▶ processors
//!   ProcessorAdapter ──Report (snapshot)──▶ ProcessorSupervisor
//! ```
//!
//! Layout: `policy` (pure: routing, plan, breaker, latency), `client` (the
//! processor wire), `store` (SQL), `adapter`, `supervisor`, `forwarder`
//! (actors), `http` (routes).

pub mod adapter;
pub mod client;
pub mod flow_batch;
pub mod forwarder;
pub mod http;
pub mod policy;
pub mod store;
pub mod supervisor;

use crate::cli::SwitchConfig;
use actix::prelude::*;
use deadpool_postgres::Pool;
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use std::sync::Arc;
use std::time::Duration;

/// Settings of merchant forwarding.
#[derive(Debug, Clone)]
pub struct MerchantConfig {
    pub default_url: String,
    pub fallback_url: String,
    /// Deadline of one POST to a processor.
    pub post_timeout: Duration,
    /// Deadline of a lookup or a health probe.
    pub read_timeout: Duration,
    /// When a processor is slow, or in doubt, for routing.
    pub routing: policy::Thresholds,
    /// Payments being forwarded at once (also each adapter's bulkhead).
    pub max_forwards: usize,
    /// How long after an unanswered POST a processor's "not found" is believed:
    /// by then that POST has landed or never will (2 × the POST deadline + 1 s).
    pub settle: Duration,
    /// A claim's lease; longer than `settle`, so a payment left by a dead
    /// process is taken over only when its last send can no longer land.
    pub lease: Duration,
}

impl MerchantConfig {
    pub fn new(
        default_url: &str,
        fallback_url: &str,
        post_timeout_ms: u64,
        routing: policy::Thresholds,
        max_forwards: usize,
    ) -> MerchantConfig {
        let post_timeout = Duration::from_millis(post_timeout_ms.max(1));
        MerchantConfig {
            default_url: default_url.trim_end_matches('/').to_string(),
            fallback_url: fallback_url.trim_end_matches('/').to_string(),
            post_timeout,
            read_timeout: Duration::from_millis(2_000),
            routing,
            max_forwards: max_forwards.max(1),
            settle: post_timeout * 2 + Duration::from_secs(1),
            lease: post_timeout * 3 + Duration::from_secs(2),
        }
    }

    pub fn from_switch(cfg: &SwitchConfig) -> MerchantConfig {
        MerchantConfig::new(
            &cfg.processor_default_url,
            &cfg.processor_fallback_url,
            cfg.processor_timeout_ms,
            policy::Thresholds {
                slow_ms: cfg.processor_slow_ms,
                doubt_ms: cfg.processor_doubt_ms,
            },
            cfg.max_forwards,
        )
    }

    fn validate(&self) -> Result<(), MerchantError> {
        for (flag, url) in [
            ("--processor-default-url", &self.default_url),
            ("--processor-fallback-url", &self.fallback_url),
        ] {
            let ok = reqwest::Url::parse(url)
                .map(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                .unwrap_or(false);
            if !ok {
                return Err(MerchantError::Config(format!(
                    "{flag} {url:?} is not an http(s) URL like http://127.0.0.1:8001"
                )));
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MerchantError {
    #[error("invalid merchant forwarding settings: {0}")]
    Config(String),
    #[error("merchant payments: {0}")]
    Store(#[from] store::MerchantStoreError),
}

/// Counters of forwarding, registered in the switch's Prometheus registry.
#[derive(Clone)]
pub struct MerchantMetrics {
    /// Processor calls by processor, call (post/lookup/health) and outcome.
    pub calls: IntCounterVec,
    /// Acceptances by processor and how we learnt them (accepted/already_had/found).
    pub accepted: IntCounterVec,
    /// Ends of forwarding flows (accepted_default/accepted_fallback/held/abandoned).
    pub flows: IntCounterVec,
    /// Payments handed back to Postgres unfinished.
    pub holds: IntCounter,
    pub in_flight: IntGauge,
    /// Circuit per processor: 0 closed, 1 half open, 2 open.
    pub circuit: IntGaugeVec,
    pub restarts: IntCounterVec,
}

impl MerchantMetrics {
    pub fn new(registry: &Registry) -> MerchantMetrics {
        fn reg<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
            // A second registration (several switches in one test process) is harmless.
            let _ = r.register(Box::new(c.clone()));
            c
        }
        let vec = |name: &str, help: &str, labels: &[&str]| {
            reg(
                registry,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter"),
            )
        };
        MerchantMetrics {
            calls: vec(
                "upi_merchant_processor_calls_total",
                "Calls to payment processors by processor, call and outcome",
                &["processor", "call", "outcome"],
            ),
            accepted: vec(
                "upi_merchant_accepted_total",
                "Merchant payments accepted, by processor and how it was learnt",
                &["processor", "how"],
            ),
            flows: vec(
                "upi_merchant_flows_total",
                "Ends of merchant forwarding flows",
                &["end"],
            ),
            restarts: vec(
                "upi_merchant_adapter_restarts_total",
                "Processor adapters restarted by their supervisor",
                &["processor"],
            ),
            holds: reg(
                registry,
                IntCounter::new(
                    "upi_merchant_holds_total",
                    "Merchant payments handed back to Postgres unfinished",
                )
                .expect("valid counter"),
            ),
            in_flight: reg(
                registry,
                IntGauge::new(
                    "upi_merchant_forwards_in_flight",
                    "Merchant payments being forwarded now",
                )
                .expect("valid gauge"),
            ),
            circuit: reg(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "upi_merchant_circuit_state",
                        "Circuit per processor: 0 closed, 1 half open, 2 open",
                    ),
                    &["processor"],
                )
                .expect("valid gauge"),
            ),
        }
    }
}

/// The running forwarding machinery. Actors live on after the handle is dropped.
#[derive(Clone)]
pub struct MerchantHandle {
    pub forwarder: Addr<forwarder::Forwarder>,
    pub supervisor: Addr<supervisor::ProcessorSupervisor>,
}

impl MerchantHandle {
    /// New payments are in Postgres: have the forwarder look now.
    pub fn kick(&self) {
        let _ = self.forwarder.try_send(forwarder::Kick);
    }
}

/// Starts the supervisor (and its two adapters) and the forwarder, which resumes
/// every unfinished merchant payment in Postgres. The schema must be migrated.
pub async fn start(
    pool: Pool,
    writer: crate::actors::checkpoint_writer::CheckpointWriter,
    cfg: MerchantConfig,
    registry: &Registry,
) -> Result<MerchantHandle, MerchantError> {
    cfg.validate()?;
    let store = store::MerchantStore::new(pool);
    let unfinished = store.unfinished().await?;
    let metrics = MerchantMetrics::new(registry);
    let supervisor = supervisor::ProcessorSupervisor::new(cfg.clone(), metrics.clone()).start();
    let deps = Arc::new(forwarder::FlowDeps {
        store,
        writer,
        supervisor: supervisor.clone(),
        cfg: cfg.clone(),
        metrics,
    });
    let forwarder = forwarder::Forwarder::new(deps).start();
    tracing::info!(
        default = %cfg.default_url,
        fallback = %cfg.fallback_url,
        unfinished,
        "merchant forwarding started"
    );
    Ok(MerchantHandle {
        forwarder,
        supervisor,
    })
}
