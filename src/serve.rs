//! `upi-switch serve`: wires the store, the actors and the HTTP server
//! together as one node of the cluster, resumes unfinished sagas, and serves
//! until stopped, then drains. The order of start-up is deliberate: schema
//! first, then the node's lease, then the shared configuration (banks and
//! circuit overrides, loaded from Postgres and followed through
//! `LISTEN upi_config`), then the registry (which claims unfinished sagas),
//! then HTTP. On SIGTERM/SIGINT the node drains: `/readyz` answers 503, new
//! payments are refused, the sagas running here get `--drain-grace-ms` to
//! finish, the rest are stopped and handed back, and the node leaves.

use crate::actors::bank_router::BankRouter;
use crate::actors::bank_supervisor::{HealthBoard, SupervisorConfig};
use crate::actors::checkpoint_writer::{CheckpointWriter, WriterConfig, WriterMetrics};
use crate::actors::outbox_relay::{OutboxRelay, RelayConfig};
use crate::actors::psp_adapter::AdapterConfig;
use crate::actors::registry::{Admission, TxnRegistry};
use crate::actors::transaction::SagaDeps;
use crate::adapters::bank_client::BankClient;
use crate::adapters::cache::{Cache, CacheConfig, RateLimit};
use crate::adapters::event_feed::EventFeed;
use crate::adapters::pg::{self, DbError, Schema};
use crate::adapters::store::{Store, StoreError};
use crate::cli::{SwitchConfig, WhenRedisDown};
use crate::cluster::{self, Node};
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
    /// Drains the node (what SIGTERM does).
    pub drain: Drainer,
    /// Saga threads and the writer's; they live as long as this value.
    _arbiters: Vec<Arbiter>,
    _relay: Addr<OutboxRelay>,
}

pub async fn start(cfg: &SwitchConfig) -> Result<Running, ServeError> {
    if cfg.admin_token.as_deref().is_some_and(|t| t.len() < 8) && !cfg.insecure_no_auth {
        return Err(ServeError::Config(
            "--admin-token must be at least 8 characters".into(),
        ));
    }
    if cfg.admin_token.is_none() && !cfg.insecure_no_auth {
        return Err(ServeError::Config(
            "no operator token: set --admin-token (ADMIN_TOKEN), or pass --insecure-no-auth (UPI_INSECURE_NO_AUTH=1) to run without any authentication".into(),
        ));
    }
    if cfg.daily_count_limit < 0 {
        return Err(ServeError::Config(
            "--daily-count-limit must be 0 (none) or more".into(),
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
    // This process as a node: registered with a first lease before it claims
    // or creates any saga.
    let local = listener.local_addr().map_err(|e| ServeError::Bind {
        addr: cfg.listen,
        reason: e.to_string(),
    })?;
    let node = Node::new(
        cfg.node_name.clone().unwrap_or_else(|| local.to_string()),
        Duration::from_millis(cfg.lease_ms),
    );
    let sent = Instant::now();
    store
        .register_node(node.id(), node.name(), node.lease().as_millis() as i64)
        .await?;
    node.renewed(sent);
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
            node_id: node.id(),
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
        inquiry_timeout: Duration::from_millis(cfg.status_check_timeout_ms.max(1)),
        reverse_timeout: Duration::from_millis(cfg.reversal_timeout_ms.max(1)),
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
    // --- Redis (issue 5, part 3): connects in the background; never waited for.
    let cache = start_cache(cfg, &metrics)?;
    // Shared configuration: loaded now (before any saga runs), then followed.
    let clients = crate::auth::ClientDirectory::default();
    let sync = cluster::config_sync::Targets {
        store: store.clone(),
        router: banks.clone(),
        cache: cache.clone(),
        clients: clients.clone(),
    };
    cluster::config_sync::reload_all(&sync).await?;
    cluster::config_sync::spawn(pg::DbUrl::parse(&cfg.database_url)?, sync);

    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let arbiters: Vec<Arbiter> = (0..threads).map(|_| Arbiter::new()).collect();
    let deps = Arc::new(SagaDeps {
        checkpoints: writer.clone(),
        board: health.clone(),
        cfg: SagaConfig {
            debit_deadline_ms: cfg.debit_deadline_ms.unwrap_or(cfg.payment_timeout_ms),
            credit_deadline_ms: cfg.credit_deadline_ms.unwrap_or(cfg.payment_timeout_ms),
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
        node.clone(),
        arbiters.iter().map(Arbiter::handle).collect(),
        cfg.max_in_flight,
        admission.clone(),
    )
    .start();
    crate::actors::collect_expiry::spawn(store.clone(), metrics.clone());
    crate::actors::collect_expiry::spawn_nonce_purge(store.clone());
    let lease_arbiter = cluster::lease::spawn(
        node.clone(),
        pg::DbUrl::parse(&cfg.database_url)?,
        registry.clone(),
        metrics.lease_lost.clone(),
    );

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
    let amqp = cfg.events.config();
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
    // --- Analytics (issue 16): the API reads its tables; the ingest runs
    // here only with --analytics (else as `upi-switch analytics`).
    let analytics = crate::analytics::AnalyticsStore::new(store.pool.clone());
    if cfg.analytics {
        crate::analytics::spawn(
            analytics.clone(),
            cfg.analytics_ingest.config(amqp.clone()),
            &metrics.registry,
        )
        .await;
    }
    let events = http::events::EventStreams {
        feed: EventFeed::start(amqp, metrics.clone()),
        slots: Arc::new(tokio::sync::Semaphore::new(cfg.max_event_streams.max(1))),
    };
    // --- Settlement: every node's window ticker, and one reconciliation
    // runner per database (the others wait on its advisory lock).
    let settlement = crate::settlement::ticker::Settlement {
        store: store.clone(),
        cutoffs: cfg.settlement_cutoffs.clone(),
        metrics: crate::settlement::metrics::SettlementMetrics::register(&metrics.registry),
        recon_wake: Arc::new(tokio::sync::Notify::new()),
        node_name: node.name().to_string(),
        crash_after: cfg.settlement_crash_after,
    };
    crate::settlement::ticker::spawn(settlement.clone());
    crate::settlement::recon::spawn(
        store.clone(),
        settlement.metrics.clone(),
        settlement.recon_wake.clone(),
    );
    let state = AppState {
        settlement,
        store,
        writer,
        registry,
        admission,
        banks,
        health,
        metrics: metrics.clone(),
        limits: Limits {
            txn_limit: cfg.txn_limit,
            p2m_txn_limit: cfg.p2m_txn_limit,
            mcc_limits: std::sync::Arc::new(cfg.mcc_limits.iter().cloned().collect()),
            daily_amount: cfg.daily_amount_limit,
            daily_count: cfg.daily_count_limit,
        },
        admin_token: if cfg.insecure_no_auth {
            None
        } else {
            cfg.admin_token.clone()
        },
        auth_on: !cfg.insecure_no_auth,
        bank_url_allow: Arc::new(
            crate::domain::url_allow::UrlAllowList::parse(&cfg.bank_url_allow)
                .map_err(|e| ServeError::Config(format!("--bank-url-allow: {e}")))?,
        ),
        clients: clients.clone(),
        events,
        outbox,
        cache,
        node: node.clone(),
        analytics,
    };
    let drain = Drainer {
        node,
        registry: state.registry.clone(),
        store: state.store.clone(),
        grace: Duration::from_millis(cfg.drain_grace_ms),
    };
    if !state.auth_on {
        tracing::warn!(
            "--insecure-no-auth: client calls are not signed and operator endpoints are open to anyone who can reach the switch"
        );
    }
    let server = HttpServer::new(move || {
        let metrics = metrics.clone();
        App::new()
            .app_data(web::Data::new(state.clone()))
            // Lets POST /payments wake the forwarder instead of waiting for its poll.
            .app_data(web::Data::new(merchant.clone()))
            // A body arrives within its deadline, or is answered 408.
            .wrap_fn(|mut req, srv| {
                http::body_deadline::wrap(&mut req);
                srv.call(req)
            })
            // Bodies of the JSON API are JSON, said so (before any handler).
            .wrap_fn(|req, srv| {
                use actix_web::ResponseError;
                match http::non_json_body(req.method(), req.path(), req.headers()) {
                    Some(problem) => {
                        let response = req.into_response(problem.error_response());
                        futures::future::Either::Left(futures::future::ready(Ok(response)))
                    }
                    None => futures::future::Either::Right(srv.call(req)),
                }
            })
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
    // Signals are ours: a node drains before its HTTP server stops, and
    // then gives the requests in flight a moment (idle keep-alive
    // connections would otherwise hold the stop for 30 s).
    .disable_signals()
    .shutdown_timeout(3)
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
        drain,
        _arbiters: arbiters
            .into_iter()
            .chain([writer_arbiter, lease_arbiter])
            .collect(),
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

/// What draining needs (`Drainer::drain`).
pub struct Drainer {
    node: Node,
    registry: Addr<TxnRegistry>,
    store: Store,
    grace: Duration,
}

impl Drainer {
    /// Stops taking sagas, lets those running here finish for the grace,
    /// stops the rest, and hands every saga this node holds back (other
    /// nodes claim them at once, without waiting for the lease to run out).
    pub async fn drain(&self) {
        use crate::actors::registry::{Stats, StopAll};
        self.node.start_draining();
        tracing::info!(node = %self.node.id(), grace_ms = self.grace.as_millis() as u64, "draining");
        let started = Instant::now();
        let mut stopped = false;
        loop {
            let running = match self.registry.send(Stats).await {
                Ok(stats) => stats.in_flight,
                Err(_) => 0,
            };
            if running == 0 {
                break;
            }
            if !stopped && started.elapsed() >= self.grace {
                let _ = self.registry.send(StopAll { why: "draining" }).await;
                stopped = true;
            }
            if started.elapsed() >= self.grace + Duration::from_secs(2) {
                tracing::warn!(running, "sagas still stopping; handing them back anyway");
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.node.released();
        match self.store.release_node(self.node.id()).await {
            Ok(n) => tracing::info!(node = %self.node.id(), handed_back = n, "drained"),
            Err(e) => {
                tracing::warn!(error = %e, "could not hand the sagas back; other nodes claim them when the lease runs out")
            }
        }
    }
}

/// Runs the switch until it is stopped (SIGINT/SIGTERM), then drains it.
pub async fn run(cfg: SwitchConfig) -> Result<(), ServeError> {
    let running = start(&cfg).await?;
    for addr in &running.addrs {
        // Machine-readable line for scripts and tests that start us with port 0.
        println!("LISTENING {addr}");
    }
    tracing::info!(addrs = ?running.addrs, "switch listening");
    let Running {
        server,
        _arbiters,
        drain,
        ..
    } = running;
    let handle = server.handle();
    let mut server = std::pin::pin!(server);
    let ended = tokio::select! {
        result = &mut server => Some(result),
        () = stop_signal() => None,
    };
    let result = match ended {
        Some(result) => result,
        None => {
            drain.drain().await;
            // The server processes the stop only while it is polled.
            let ((), result) = tokio::join!(handle.stop(true), server);
            result
        }
    }
    .map_err(|e| ServeError::Server(e.to_string()));
    for arbiter in &_arbiters {
        arbiter.stop();
    }
    result
}

/// SIGTERM or SIGINT (Ctrl-C).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
