//! `upi-switch serve`: wires the store, the actors and the HTTP server
//! together, resumes unfinished sagas, and serves until stopped. The order of
//! start-up is deliberate: schema first, then bank directory (loaded from
//! Postgres), then the registry (which resumes sagas), then HTTP.

use crate::actors::bank_router::{BankRouter, SetBank};
use crate::actors::bank_supervisor::{HealthBoard, SupervisorConfig};
use crate::actors::checkpoint_writer::{CheckpointWriter, WriterConfig, WriterMetrics};
use crate::actors::outbox_relay::{OutboxRelay, RelayConfig};
use crate::actors::psp_adapter::AdapterConfig;
use crate::actors::registry::{Admission, TxnRegistry};
use crate::actors::transaction::SagaDeps;
use crate::adapters::amqp::AmqpConfig;
use crate::adapters::bank_client::BankClient;
use crate::adapters::cache::{Cache, CacheConfig, RateLimit};
use crate::adapters::event_feed::EventFeed;
use crate::adapters::pg::{self, DbError, Schema};
use crate::adapters::store::{Store, StoreError};
use crate::cli::{SwitchConfig, WhenRedisDown};
use crate::domain::Paise;
use crate::domain::breaker::BreakerConfig;
use crate::http::{self, AppState, Limits};
use crate::metrics::{CacheMetrics, Metrics};
use crate::saga::SagaConfig;
use actix::prelude::*;
use actix_web::dev::{Server, Service};
use actix_web::{App, HttpServer, web};
use futures::FutureExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("loading registrations: {0}")]
    Store(#[from] StoreError),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(
        "cannot listen on {addr}: {reason} (is another process using that port? pick another with --listen)"
    )]
    Bind { addr: SocketAddr, reason: String },
    #[error("server error: {0}")]
    Server(String),
}

/// A started switch: its HTTP server future and the addresses it listens on.
pub struct Running {
    pub server: Server,
    pub addrs: Vec<SocketAddr>,
    /// Saga threads and the writer's; they live as long as this value.
    _arbiters: Vec<Arbiter>,
    _relay: Addr<OutboxRelay>,
}

pub async fn start(cfg: &SwitchConfig) -> Result<Running, ServeError> {
    if cfg.txn_limit_paise <= 0 {
        return Err(ServeError::Config(
            "--txn-limit-paise must be positive".into(),
        ));
    }
    // Take the port before any actor starts, so a taken port is a clean error.
    let listener = std::net::TcpListener::bind(cfg.listen).map_err(|e| ServeError::Bind {
        addr: cfg.listen,
        reason: e.to_string(),
    })?;
    let pool = pg::prepare(&cfg.database_url, Schema::Switch, cfg.db_pool_size.max(2)).await?;
    let store = Store::new(pool);
    let metrics = Metrics::new();
    // Every saga write goes through one group-commit writer, on a thread
    // (and connection) of its own.
    let writer_arbiter = Arbiter::new();
    let writer = CheckpointWriter::start(
        &writer_arbiter.handle(),
        pg::DbUrl::parse(&cfg.database_url)?,
        store.clone(),
        WriterConfig {
            queue: cfg.writer_queue.max(1),
            max_batch: cfg.writer_max_batch.max(1),
        },
        WriterMetrics::register(&metrics.registry),
    );

    let bank_timeout = Duration::from_millis(cfg.bank_timeout_ms.max(1));
    if !(0.0..=1.0).contains(&cfg.breaker_failure_rate) {
        return Err(ServeError::Config(
            "--breaker-failure-rate must be between 0 and 1".into(),
        ));
    }
    let health = HealthBoard::default();
    let banks = BankRouter::new(SupervisorConfig {
        http: BankClient::http_client(),
        http2: BankClient::http2_client(),
        call_timeout: bank_timeout,
        adapter: AdapterConfig {
            breaker: BreakerConfig {
                consecutive_failures: cfg.breaker_consecutive_failures.max(1),
                window: cfg.breaker_window.max(1),
                failure_rate: cfg.breaker_failure_rate,
                min_calls: cfg.breaker_min_calls,
                cool_down_ms: cfg.breaker_cool_down_ms,
                trial_successes: cfg.breaker_trial_successes.max(1),
                trial_in_flight: 1,
            },
            max_in_flight: cfg.bank_max_in_flight.max(1),
            stats_window: 100,
        },
        probe_every: Duration::from_millis(cfg.probe_interval_ms.max(50)),
        metrics: metrics.clone(),
        board: health.clone(),
    })
    .start();
    for bank in store.banks().await? {
        let _ = banks
            .send(SetBank {
                code: bank.code,
                endpoints: bank.endpoints,
            })
            .await;
    }

    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let arbiters: Vec<Arbiter> = (0..threads).map(|_| Arbiter::new()).collect();
    let deps = Arc::new(SagaDeps {
        checkpoints: writer.clone(),
        board: health.clone(),
        cfg: SagaConfig {
            debit_deadline_ms: cfg.debit_deadline_ms,
            credit_deadline_ms: cfg.credit_deadline_ms,
            retry_base_ms: 50,
            retry_max_ms: cfg.retry_max_ms.max(50),
        },
        metrics: metrics.clone(),
        bank_timeout,
    });
    let admission = Admission::new(cfg.max_pending);
    let registry = TxnRegistry::new(
        deps,
        store.clone(),
        arbiters.iter().map(Arbiter::handle).collect(),
        cfg.max_in_flight,
        admission.clone(),
    )
    .start();

    // --- Merchant forwarding (issue 4, items 5-6): processor adapters, their
    // supervisor and the forwarder, which resumes unfinished merchant payments.
    let merchant = crate::merchant::start(
        store.pool.clone(),
        writer.clone(),
        crate::merchant::MerchantConfig::from_switch(cfg),
        &metrics.registry,
    )
    .await
    .map_err(|e| ServeError::Config(e.to_string()))?;
    // --- end of merchant forwarding.

    // --- Events: the outbox relay (one leader among processes) and this
    // process's consumer for SSE streams. Neither blocks start-up: both
    // connect (and reconnect) in the background.
    let amqp = AmqpConfig {
        url: cfg.amqp_url.clone(),
        exchange: cfg.events_exchange.clone(),
    };
    let relay = OutboxRelay::new(
        store.clone(),
        RelayConfig {
            amqp: amqp.clone(),
            batch: cfg.outbox_batch.clamp(1, 10_000),
            poll: Duration::from_millis(cfg.outbox_poll_ms.clamp(10, 60_000)),
        },
        metrics.clone(),
    );
    let outbox = relay.status();
    let relay_addr = relay.start();
    let events = http::events::EventStreams {
        feed: EventFeed::start(amqp, metrics.clone()),
        slots: Arc::new(tokio::sync::Semaphore::new(cfg.max_event_streams.max(1))),
    };
    // --- Redis (issue 5, part 3): connects in the background; never waited for.
    let cache = start_cache(cfg, &metrics)?;

    let state = AppState {
        store,
        writer,
        registry,
        admission,
        banks,
        health,
        metrics: metrics.clone(),
        limits: Limits {
            txn_limit: Paise(cfg.txn_limit_paise),
        },
        admin_token: cfg.admin_token.clone(),
        events,
        outbox,
        cache,
    };
    if state.admin_token.is_none() {
        tracing::warn!(
            "no --admin-token set: admin endpoints are open to anyone who can reach the switch"
        );
    }
    let server = HttpServer::new(move || {
        let metrics = metrics.clone();
        App::new()
            .app_data(web::Data::new(state.clone()))
            // Lets POST /payments wake the forwarder instead of waiting for its poll.
            .app_data(web::Data::new(merchant.clone()))
            .wrap_fn(move |req, srv| {
                let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
                let metrics = metrics.clone();
                let started = Instant::now();
                srv.call(req).map(move |res| {
                    if let Ok(res) = &res {
                        metrics
                            .http_requests
                            .with_label_values(&[&route, res.status().as_str()])
                            .inc();
                        metrics
                            .http_seconds
                            .with_label_values(&[&route])
                            .observe(started.elapsed().as_secs_f64());
                    }
                    res
                })
            })
            .configure(http::app_config)
            .default_service(web::to(http::not_found))
    })
    .workers(cfg.http_workers.unwrap_or(threads).max(1))
    .backlog(4096)
    .max_connections(25_000)
    .listen(listener)
    .map_err(|e| ServeError::Bind {
        addr: cfg.listen,
        reason: e.to_string(),
    })?;
    let addrs = server.addrs();
    Ok(Running {
        server: server.run(),
        addrs,
        _arbiters: arbiters.into_iter().chain([writer_arbiter]).collect(),
        _relay: relay_addr,
    })
}

fn start_cache(cfg: &SwitchConfig, metrics: &Metrics) -> Result<Cache, ServeError> {
    let config = |e: crate::adapters::cache::CacheError| ServeError::Config(e.to_string());
    let rate_limit = RateLimit::new(
        cfg.rate_limit_per_sec,
        cfg.rate_limit_burst,
        cfg.rate_limit_when_redis_down == WhenRedisDown::Deny,
    )
    .map_err(config)?;
    Cache::start(
        CacheConfig {
            url: cfg.redis_url.clone(),
            prefix: cfg.redis_prefix.clone(),
            op_timeout: Duration::from_millis(cfg.redis_timeout_ms),
            vpa_ttl: Duration::from_millis(cfg.vpa_cache_ttl_ms),
            vpa_local_ttl: Duration::from_millis(cfg.vpa_local_ttl_ms),
            rate_limit,
        },
        CacheMetrics::register(&metrics.registry),
    )
    .map_err(config)
}

/// Runs the switch until it is stopped (SIGINT/SIGTERM).
pub async fn run(cfg: SwitchConfig) -> Result<(), ServeError> {
    let running = start(&cfg).await?;
    for addr in &running.addrs {
        // Machine-readable line for scripts and tests that start us with port 0.
        println!("LISTENING {addr}");
    }
    tracing::info!(addrs = ?running.addrs, "switch listening");
    let Running {
        server, _arbiters, ..
    } = running;
    let result = server.await.map_err(|e| ServeError::Server(e.to_string()));
    for arbiter in &_arbiters {
        arbiter.stop();
    }
    result
}
