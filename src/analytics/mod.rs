//! Analytics from the switch's own event stream (issue 16): an idempotent
//! pipeline from `upi.events` to daily summaries served at `/v1/analytics/*`.
//!
//! # Layout
//! - `record`  — pure: one delivery checked (exact amount, known type and
//!   status, required fields, timestamps) → a clean event or a reason.
//! - `summary` — pure: the clean store's rule (latest `seq` per transaction)
//!   and the summaries' arithmetic (deltas of status transitions).
//! - `day`     — pure: IST days and the API's date ranges.
//! - `store`   — the writes: one batch = one transaction (raw rows, rejects,
//!   clean rows, summary UPSERTs, counters); rebuild of days; retention.
//! - `upsert`  — the summaries' UPSERTs of a batch's deltas.
//! - `reads`   — the API's reads.
//! - `ingest`  — the RabbitMQ consumer: prefetch, batches, acks, dead letters.
//!
//! Runs as `upi-switch analytics` (its own process) or inside `serve
//! --analytics`; `upi-switch analytics rebuild --from D --to D` recomputes
//! days from the raw store. The tables live in the switch's database
//! (migration V13); the API is served by the switch (`http::analytics`).
//!
//! What it does not do: read the switch's `transactions` table (everything
//! comes from events), or hold a float near money (paise, exact text).

pub mod day;
pub mod ingest;
pub mod reads;
pub mod record;
pub mod store;
pub mod summary;
pub mod upsert;

use crate::adapters::amqp::AmqpConfig;
use crate::adapters::pg::{self, DbError, Schema};
use crate::cli::DEFAULT_SWITCH_DB;
use clap::{Args, Subcommand};
use std::net::SocketAddr;
use std::time::Duration;

pub use store::AnalyticsStore;

/// The ingest's tuning, shared by `analytics` and `serve --analytics`.
#[derive(Args, Debug, Clone)]
pub struct IngestFlags {
    /// Analytics ingest: deliveries unacknowledged at most (RabbitMQ prefetch).
    #[arg(long, env = "ANALYTICS_PREFETCH", default_value_t = 1024)]
    pub analytics_prefetch: u16,
    /// Analytics ingest: most deliveries stored per transaction.
    #[arg(long, env = "ANALYTICS_BATCH", default_value_t = 512)]
    pub analytics_batch: usize,
    /// Analytics ingest: longest wait for more deliveries after a batch's first, in ms.
    #[arg(long, env = "ANALYTICS_BATCH_MS", default_value_t = 20)]
    pub analytics_batch_ms: u64,
    /// Analytics ingest: drop raw-store partitions of IST days older than this (0: keep all).
    #[arg(long, env = "ANALYTICS_RETENTION_DAYS", default_value_t = 0)]
    pub analytics_retention_days: u32,
}

impl IngestFlags {
    pub fn config(&self, amqp: AmqpConfig) -> ingest::IngestConfig {
        ingest::IngestConfig {
            amqp,
            prefetch: self.analytics_prefetch.clamp(1, 10_000),
            batch_max: self.analytics_batch.clamp(1, 10_000),
            batch_wait: Duration::from_millis(self.analytics_batch_ms.min(10_000)),
            retention_days: self.analytics_retention_days,
        }
    }
}

#[derive(Args, Debug, Clone)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AnalyticsArgs {
    #[command(subcommand)]
    pub command: Option<AnalyticsCommand>,
    #[command(flatten)]
    pub ingest: IngestArgs,
}

#[derive(Subcommand, Debug, Clone)]
pub enum AnalyticsCommand {
    /// Recompute the clean rows and summaries of IST days from the raw store.
    Rebuild(RebuildArgs),
}

/// `upi-switch analytics`: the ingest as a process of its own.
#[derive(Args, Debug, Clone)]
pub struct IngestArgs {
    /// Postgres URL of the switch's database (analytics tables live there).
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_SWITCH_DB)]
    pub database_url: String,
    #[command(flatten)]
    pub events: crate::cli::EventBusArgs,
    /// Serve `/metrics` and `/healthz` here (port 0: a free port, printed as `LISTENING <addr>`).
    #[arg(long = "listen", env = "ANALYTICS_LISTEN")]
    pub listen: Option<SocketAddr>,
    #[command(flatten)]
    pub flags: IngestFlags,
}

#[derive(Args, Debug, Clone)]
pub struct RebuildArgs {
    /// Postgres URL of the switch's database.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_SWITCH_DB)]
    pub database_url: String,
    /// First IST day, YYYY-MM-DD.
    #[arg(long)]
    pub from: String,
    /// Last IST day, YYYY-MM-DD (at most 366 days after --from).
    #[arg(long)]
    pub to: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{0}")]
    Range(#[from] day::RangeError),
    #[error("cannot serve metrics on {addr}: {reason}")]
    Listen { addr: SocketAddr, reason: String },
}

/// `upi-switch analytics [rebuild …]`.
pub async fn run(args: AnalyticsArgs) -> Result<(), AnalyticsError> {
    match args.command {
        Some(AnalyticsCommand::Rebuild(r)) => rebuild(r).await,
        None => run_ingest(args.ingest).await,
    }
}

async fn rebuild(args: RebuildArgs) -> Result<(), AnalyticsError> {
    let range = day::DayRange::new(
        day::parse_date("--from", &args.from)?,
        day::parse_date("--to", &args.to)?,
    )?;
    let pool = pg::prepare(&args.database_url, Schema::Switch, 2).await?;
    let store = AnalyticsStore::new(pool);
    for d in range.days() {
        match store.rebuild_day(d).await? {
            Some(done) => println!(
                "rebuilt {d}: {} events, {} transactions, {} rejected",
                done.events, done.transactions, done.rejected
            ),
            None => println!(
                "skipped {d}: no raw events kept for it; its summaries are left as they are"
            ),
        }
    }
    Ok(())
}

async fn run_ingest(args: IngestArgs) -> Result<(), AnalyticsError> {
    let pool = pg::prepare(&args.database_url, Schema::Switch, 4).await?;
    let registry = prometheus::Registry::new();
    let metrics = ingest::IngestMetrics::register(&registry);
    let cfg = args.flags.config(args.events.config());
    declare_or_warn(&cfg).await;
    if let Some(addr) = args.listen {
        serve_metrics(addr, registry)?;
    }
    tracing::info!(queue = %cfg.queue(), "analytics ingest starting");
    let ingest = ingest::run(AnalyticsStore::new(pool), cfg, metrics);
    tokio::select! {
        () = ingest => Ok(()),
        _ = crate::traffic::shutdown_signal() => {
            // Unacknowledged deliveries go back to the queue with the connection.
            tracing::info!("analytics ingest stopping");
            Ok(())
        }
    }
}

/// Starts the ingest inside another process (`serve --analytics`), its
/// queue declared first (bounded by the broker deadline) so that the events
/// of the first payments are in it.
pub async fn spawn(
    store: AnalyticsStore,
    cfg: ingest::IngestConfig,
    registry: &prometheus::Registry,
) {
    let metrics = ingest::IngestMetrics::register(registry);
    declare_or_warn(&cfg).await;
    tokio::spawn(ingest::run(store, cfg, metrics));
}

async fn declare_or_warn(cfg: &ingest::IngestConfig) {
    if let Err(e) = ingest::declare(cfg).await {
        tracing::warn!(error = %e, queue = %cfg.queue(), "analytics: cannot declare the ingest queue yet; the ingest declares it when RabbitMQ answers (events published meanwhile are not in it)");
    }
}

fn serve_metrics(addr: SocketAddr, registry: prometheus::Registry) -> Result<(), AnalyticsError> {
    use actix_web::{App, HttpResponse, HttpServer, web};
    let listen_err = |e: std::io::Error| AnalyticsError::Listen {
        addr,
        reason: e.to_string(),
    };
    let server = HttpServer::new(move || {
        let registry = registry.clone();
        App::new()
            .route(
                "/healthz",
                web::get()
                    .to(|| async { HttpResponse::Ok().json(serde_json::json!({"status": "ok"})) }),
            )
            .route(
                "/metrics",
                web::get().to(move || {
                    let registry = registry.clone();
                    async move {
                        use prometheus::Encoder;
                        let mut buf = Vec::new();
                        let _ = prometheus::TextEncoder::new().encode(&registry.gather(), &mut buf);
                        HttpResponse::Ok()
                            .content_type("text/plain; version=0.0.4")
                            .body(buf)
                    }
                }),
            )
    })
    .workers(1)
    .disable_signals()
    .bind(addr)
    .map_err(listen_err)?;
    for a in server.addrs() {
        println!("LISTENING {a}");
    }
    tokio::spawn(server.run());
    Ok(())
}
