//! The ingest consumer: deliveries from the durable queue
//! `<exchange>.analytics` (bound to `txn.#`) into the analytics store, in
//! batches. It owns the queue, its prefetch, the batching and the acks.
//!
//! - **Ack only after stored**: a batch is acknowledged (one `multiple` ack)
//!   after its transaction committed; a crash before that redelivers it, and
//!   the raw store's key (day, message id) makes the redelivery a no-op.
//! - **Poison to the dead letters**: a delivery refused by validation is
//!   stored in `analytics_rejects` with its reason in the same transaction,
//!   then rejected without requeue, so the queue's dead-letter exchange puts
//!   it in `<exchange>.dead`. One the database refuses even alone goes the
//!   same way. Nothing blocks the stream, nothing is dropped silently.
//! - **Bounded**: prefetch (`--analytics-prefetch`) bounds what is in memory,
//!   a batch is at most `--analytics-batch` deliveries or what arrived within
//!   `--analytics-batch-ms` of the first; a failing batch is retried a few
//!   times, then the session ends (unacked deliveries go back to the queue)
//!   and a new one starts after a doubling pause (100 ms … 5 s).

use super::record::{Checked, Delivery, check};
use super::store::{AnalyticsStore, Applied};
use crate::adapters::amqp::{self, AmqpConfig, AmqpError, within};
use crate::adapters::pg::DbError;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{FieldTable, ShortString};
use prometheus::{Gauge, Histogram, HistogramOpts, IntCounterVec, Opts, Registry};
use std::time::{Duration, Instant};

const MAX_PAUSE: Duration = Duration::from_secs(5);
/// Attempts of one batch's transaction before the session gives up.
const BATCH_ATTEMPTS: u32 = 3;
/// How often retention looks for old raw partitions.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub amqp: AmqpConfig,
    /// Deliveries unacknowledged at most (the broker stops sending beyond).
    pub prefetch: u16,
    /// Most deliveries per batch (one transaction).
    pub batch_max: usize,
    /// Longest wait for company after a batch's first delivery.
    pub batch_wait: Duration,
    /// Raw partitions older than this many days are dropped (0: kept).
    pub retention_days: u32,
}

impl IngestConfig {
    /// The durable queue the ingest consumes (shared by every analytics
    /// consumer of this exchange: they compete for deliveries).
    pub fn queue(&self) -> String {
        format!("{}.analytics", self.amqp.exchange)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Amqp(#[from] AmqpError),
    #[error("storing a batch failed {BATCH_ATTEMPTS} times: {0}")]
    Store(#[from] DbError),
}

impl From<lapin::Error> for IngestError {
    fn from(e: lapin::Error) -> Self {
        IngestError::Amqp(AmqpError::Broker(e))
    }
}

/// The ingest's metrics, in the registry of the process that runs it.
#[derive(Clone)]
pub struct IngestMetrics {
    /// Deliveries by outcome: ingested, rejected, duplicate.
    pub events: IntCounterVec,
    /// Age of the newest event of the last batch when it was stored.
    pub lag_seconds: Gauge,
    pub batch_size: Histogram,
}

impl IngestMetrics {
    pub fn register(registry: &Registry) -> IngestMetrics {
        let events = IntCounterVec::new(
            Opts::new(
                "upi_analytics_events_total",
                "Event deliveries the analytics ingest stored, by outcome",
            ),
            &["outcome"],
        )
        .expect("valid counter");
        let lag_seconds = Gauge::new(
            "upi_analytics_lag_seconds",
            "Consumer lag: age of the newest event of the last stored batch",
        )
        .expect("valid gauge");
        let batch_size = Histogram::with_opts(
            HistogramOpts::new(
                "upi_analytics_batch_size",
                "Deliveries per analytics ingest transaction",
            )
            .buckets(vec![1.0, 4.0, 16.0, 64.0, 128.0, 256.0, 512.0, 1024.0]),
        )
        .expect("valid histogram");
        let _ = registry.register(Box::new(events.clone()));
        let _ = registry.register(Box::new(lag_seconds.clone()));
        let _ = registry.register(Box::new(batch_size.clone()));
        IngestMetrics {
            events,
            lag_seconds,
            batch_size,
        }
    }
}

/// Declares the exchange and the ingest's durable queue, bound to every
/// event. Events published before the queue first exists are not in it:
/// whoever starts the ingest calls this before traffic (`serve --analytics`
/// before it listens, `upi-switch analytics` before it says `LISTENING`).
pub async fn declare(cfg: &IngestConfig) -> Result<(), AmqpError> {
    let (conn, channel) = amqp::connect(&cfg.amqp, "upi-switch analytics setup").await?;
    let declared = declare_on(&channel, cfg).await;
    let _ = within(conn.close(200, ShortString::from("declared"))).await;
    declared
}

async fn declare_on(channel: &lapin::Channel, cfg: &IngestConfig) -> Result<(), AmqpError> {
    amqp::declare_topology(channel, &cfg.amqp).await?;
    let queue = ShortString::from(cfg.queue());
    within(channel.queue_declare(
        queue.clone(),
        QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        },
        cfg.amqp.consumer_queue_args(),
    ))
    .await?;
    within(channel.queue_bind(
        queue,
        ShortString::from(cfg.amqp.exchange.as_str()),
        ShortString::from("txn.#"),
        QueueBindOptions::default(),
        FieldTable::default(),
    ))
    .await
}

/// Runs the ingest for good: sessions, each ended by an error, with a
/// doubling pause between them. Retention runs between batches.
pub async fn run(store: AnalyticsStore, cfg: IngestConfig, metrics: IngestMetrics) {
    let mut pause = Duration::from_millis(100);
    let mut retention_due = Instant::now();
    loop {
        let started = Instant::now();
        let err = session(&store, &cfg, &metrics, &mut retention_due).await;
        if started.elapsed() > Duration::from_secs(30) {
            pause = Duration::from_millis(100);
        }
        tracing::warn!(error = %err, pause_ms = pause.as_millis() as u64, "analytics ingest session ended; reconnecting");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

async fn session(
    store: &AnalyticsStore,
    cfg: &IngestConfig,
    metrics: &IngestMetrics,
    retention_due: &mut Instant,
) -> IngestError {
    match consume(store, cfg, metrics, retention_due).await {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

async fn consume(
    store: &AnalyticsStore,
    cfg: &IngestConfig,
    metrics: &IngestMetrics,
    retention_due: &mut Instant,
) -> Result<std::convert::Infallible, IngestError> {
    let today = super::day::ist_day(chrono::Utc::now());
    store.create_ahead(today, 2).await?;
    let (conn, channel) = amqp::connect(&cfg.amqp, "upi-switch analytics ingest").await?;
    declare_on(&channel, cfg).await?;
    let queue = ShortString::from(cfg.queue());
    within(channel.basic_qos(cfg.prefetch.max(1), BasicQosOptions::default())).await?;
    let mut consumer = within(channel.basic_consume(
        queue,
        ShortString::from("upi-switch-analytics"),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    ))
    .await?;
    tracing::info!(queue = %cfg.queue(), prefetch = cfg.prefetch, "analytics ingest consuming");
    let batch_max = cfg.batch_max.clamp(1, usize::from(cfg.prefetch.max(1)));
    loop {
        if cfg.retention_days > 0 && Instant::now() >= *retention_due {
            *retention_due = Instant::now() + RETENTION_EVERY;
            retention(store, cfg.retention_days).await;
        }
        // The first delivery waits as long as it takes (a minute at most
        // between looks at the connection and retention).
        let first = match tokio::time::timeout(Duration::from_secs(60), consumer.next()).await {
            Err(_) if conn.status().connected() => continue,
            Err(_) | Ok(None) => return Err(AmqpError::Closed.into()),
            Ok(Some(d)) => d?,
        };
        let mut batch = vec![first];
        let until = tokio::time::Instant::now() + cfg.batch_wait;
        while batch.len() < batch_max {
            match tokio::time::timeout_at(until, consumer.next()).await {
                Ok(Some(d)) => batch.push(d?),
                Ok(None) => return Err(AmqpError::Closed.into()),
                Err(_) => break,
            }
        }
        handle(store, &batch, metrics).await?;
    }
}

/// Stores one batch, then settles it with the broker.
async fn handle(
    store: &AnalyticsStore,
    batch: &[lapin::message::Delivery],
    metrics: &IngestMetrics,
) -> Result<(), IngestError> {
    let received_at = chrono::Utc::now();
    let items: Vec<(Delivery, Checked)> = batch
        .iter()
        .map(|d| {
            let delivery = Delivery {
                message_id: d.properties.message_id().as_ref().map(|m| m.to_string()),
                routing_key: d.routing_key.to_string(),
                body: d.data.clone(),
                received_at,
            };
            let checked = check(&delivery);
            (delivery, checked)
        })
        .collect();
    let applied = store_with_retries(store, &items).await?;
    metrics.batch_size.observe(batch.len() as f64);
    for (outcome, n) in [
        ("ingested", applied.ingested),
        ("rejected", applied.rejected.len() as u64),
        ("duplicate", applied.duplicates),
    ] {
        metrics.events.with_label_values(&[outcome]).inc_by(n);
    }
    if applied.ingested > 0 {
        let newest = items
            .iter()
            .filter_map(|(_, c)| c.outcome.as_ref().ok().map(|e| e.at))
            .max();
        if let Some(at) = newest {
            let lag = (chrono::Utc::now() - at).num_milliseconds().max(0);
            metrics.lag_seconds.set(lag as f64 / 1000.0);
        }
    }
    // Refused ones to the dead letters first, then everything up to the
    // last accepted one in one ack.
    for &i in &applied.rejected {
        let c = &items[i].1;
        tracing::warn!(message_id = %c.message_id, reason = ?c.outcome.as_ref().err(), "analytics: event refused; dead-lettered");
        within(batch[i].acker.nack(BasicNackOptions {
            multiple: false,
            requeue: false,
        }))
        .await?;
    }
    let last_ok = (0..batch.len())
        .rev()
        .find(|i| !applied.rejected.contains(i));
    if let Some(i) = last_ok {
        within(batch[i].acker.ack(BasicAckOptions { multiple: true })).await?;
    }
    Ok(())
}

/// The batch's transaction, retried; a batch the database refuses for its
/// data is split so that only the deliveries it refuses alone are rejected.
async fn store_with_retries(
    store: &AnalyticsStore,
    items: &[(Delivery, Checked)],
) -> Result<Applied, DbError> {
    let mut pause = Duration::from_millis(50);
    let mut attempt = 0;
    loop {
        attempt += 1;
        match store.apply(items).await {
            Ok(a) => return Ok(a),
            Err(e) if is_data_error(&e) => return split(store, items).await,
            Err(e) if attempt >= BATCH_ATTEMPTS => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, attempt, "analytics batch failed; retrying");
                tokio::time::sleep(pause).await;
                pause *= 4;
            }
        }
    }
}

/// A data or integrity error (SQLSTATE classes 22, 23): the rows, not the
/// database, are at fault.
fn is_data_error(e: &DbError) -> bool {
    match e {
        DbError::Query(q) => q
            .code()
            .is_some_and(|c| c.code().starts_with("22") || c.code().starts_with("23")),
        _ => false,
    }
}

async fn split(store: &AnalyticsStore, items: &[(Delivery, Checked)]) -> Result<Applied, DbError> {
    let mut total = Applied::default();
    for (i, item) in items.iter().enumerate() {
        match store.apply(std::slice::from_ref(item)).await {
            Ok(a) => {
                total.ingested += a.ingested;
                total.duplicates += a.duplicates;
                if !a.rejected.is_empty() {
                    total.rejected.push(i);
                }
            }
            Err(e) if is_data_error(&e) => {
                let reason = format!("STORE_REFUSED: {e}");
                store
                    .reject_alone(&[(&item.0, item.1.message_id.as_str(), reason.as_str())])
                    .await?;
                total.rejected.push(i);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

async fn retention(store: &AnalyticsStore, days: u32) {
    let today = super::day::ist_day(chrono::Utc::now());
    let cutoff = today - chrono::Duration::days(i64::from(days));
    match store.drop_before(cutoff).await {
        Ok(dropped) if !dropped.is_empty() => {
            tracing::info!(?dropped, %cutoff, "analytics retention dropped raw partitions")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "analytics retention failed; trying again later"),
    }
}
