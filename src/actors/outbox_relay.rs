//! `OutboxRelay`: moves domain events from the Postgres outbox to RabbitMQ.
//! It owns the relay's connection, its leadership and its status; nothing
//! else publishes events.
//!
//! Guarantees:
//! - **Nothing lost**: an outbox row is deleted only after the broker
//!   confirmed its message (publisher confirms, persistent messages, durable
//!   exchange). A crash or a dropped connection between publish and delete
//!   re-publishes the event: duplicates are possible, bounded by one batch,
//!   and carry the same `message_id` (`<txn_id>:<seq>`) for consumers to dedupe.
//! - **In order per transaction**: one relay publishes (a Postgres advisory
//!   lock elects it among switch processes), over one channel, and a batch
//!   holds at most one event per transaction — the next event of a
//!   transaction is sent only after the previous one was confirmed.
//! - **Reconnects**: any broker or database error ends the session; a new one
//!   starts after a bounded, doubling pause (100 ms … 5 s).
//! - **Settlement events** (`settlement.window_closed`, `settlement.mismatch`:
//!   not a transaction's) come from their own table, `settlement_outbox`,
//!   written in the transaction of their fact; the leader publishes them each
//!   round with the same confirm-then-delete rule (message id: their event id).
//! - **A small queue table**: each row carries its transaction's facts (no
//!   join per round), and the leader vacuums the outbox every few seconds
//!   while it deletes, so reads never step over a growing pile of dead rows.
//! - **Dead letters**: while a session lasts, `actors::dead_letters` reads
//!   the dead-letter queue's depth on a channel of its own.

use crate::adapters::amqp::{self, AmqpConfig, AmqpError, within};
use crate::adapters::store::{OutboxRow, Store, StoreError};
use crate::metrics::Metrics;
use actix::prelude::*;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Confirmation};
use serde::Serialize;
use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Advisory lock key that elects the one relay among switch processes.
const LEADER_LOCK: i64 = 0x7570_695f_6f75_7462; // "upi_outb"
/// Longest wait for the broker to confirm a batch.
const CONFIRM_DEADLINE: Duration = Duration::from_secs(10);
const MAX_PAUSE: Duration = Duration::from_secs(5);
/// Shortest time between the starts of two relay rounds that were not full:
/// events wait at most this long for company (the relay's own pace, not one
/// round per commit).
const MIN_ROUND_GAP: Duration = Duration::from_millis(20);
/// How often the leader vacuums the outbox while it deletes published rows.
const VACUUM_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub amqp: AmqpConfig,
    /// Most events read (and published) per round.
    pub batch: i64,
    /// Poll period when nothing pokes the relay (events of other processes).
    pub poll: Duration,
}

/// What operators and `/readyz` see of the relay. Shared, lock-free.
#[derive(Debug, Default)]
pub struct RelayStatus {
    connected: AtomicBool,
    leader: AtomicBool,
    pending: AtomicI64,
    lag_ms: AtomicU64,
    published: AtomicU64,
    sessions: AtomicU64,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct RelaySnapshot {
    /// Connected to RabbitMQ with confirms on (or standing by, not leader).
    pub connected: bool,
    /// This process holds the relay lock.
    pub leader: bool,
    /// Events not yet confirmed by RabbitMQ (all processes).
    pub pending: i64,
    /// Age of the oldest unconfirmed event, in seconds.
    pub lag_seconds: f64,
    /// Events this process published and had confirmed.
    pub published: u64,
    /// Sessions started (1 + reconnects).
    pub sessions: u64,
}

impl RelayStatus {
    pub fn snapshot(&self) -> RelaySnapshot {
        RelaySnapshot {
            connected: self.connected.load(Ordering::Relaxed),
            leader: self.leader.load(Ordering::Relaxed),
            pending: self.pending.load(Ordering::Relaxed),
            lag_seconds: self.lag_ms.load(Ordering::Relaxed) as f64 / 1000.0,
            published: self.published.load(Ordering::Relaxed),
            sessions: self.sessions.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error(transparent)]
    Amqp(#[from] AmqpError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the relay's leader lock connection failed: {0}")]
    Lock(String),
}

impl RelayError {
    /// Label for `upi_rabbitmq_errors_total{op}`, when the broker is at fault.
    fn amqp_op(&self) -> Option<&'static str> {
        match self {
            RelayError::Amqp(AmqpError::Timeout(_)) => Some("timeout"),
            RelayError::Amqp(AmqpError::Broker(_)) => Some("publish"),
            RelayError::Amqp(AmqpError::Closed) => Some("connection"),
            _ => None,
        }
    }
}

pub struct OutboxRelay {
    store: Store,
    cfg: RelayConfig,
    status: Arc<RelayStatus>,
    metrics: Metrics,
}

impl OutboxRelay {
    pub fn new(store: Store, cfg: RelayConfig, metrics: Metrics) -> OutboxRelay {
        OutboxRelay {
            store,
            cfg,
            status: Arc::new(RelayStatus::default()),
            metrics,
        }
    }

    pub fn status(&self) -> Arc<RelayStatus> {
        self.status.clone()
    }
}

impl Actor for OutboxRelay {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(16);
        let store = self.store.clone();
        let cfg = self.cfg.clone();
        let status = self.status.clone();
        let metrics = self.metrics.clone();
        ctx.spawn(
            async move {
                loop {
                    let lock = lead(&store, &status, &metrics).await;
                    status.leader.store(true, Ordering::Relaxed);
                    let mut pause = Duration::from_millis(100);
                    // Broker sessions under one leadership, until the lock's
                    // connection fails.
                    loop {
                        status.sessions.fetch_add(1, Ordering::Relaxed);
                        let started = Instant::now();
                        let err = session(&store, &cfg, &status, &metrics, &lock).await;
                        status.connected.store(false, Ordering::Relaxed);
                        if let Some(op) = err.amqp_op() {
                            metrics.rabbitmq_errors.with_label_values(&[op]).inc();
                        }
                        tracing::warn!(error = %err, pause_ms = pause.as_millis() as u64, "outbox relay session ended; reconnecting");
                        if started.elapsed() > Duration::from_secs(30) {
                            pause = Duration::from_millis(100);
                        }
                        // What waits while the broker is away is what
                        // operators need to see most: keep the count fresh.
                        let until = Instant::now() + pause;
                        while Instant::now() < until {
                            refresh_lag(&store, &status, &metrics).await;
                            let left = until.saturating_duration_since(Instant::now());
                            tokio::time::sleep(left.min(Duration::from_millis(500))).await;
                        }
                        pause = (pause * 2).min(MAX_PAUSE);
                        if matches!(err, RelayError::Lock(_))
                            || lock.simple_query("SELECT 1").await.is_err()
                        {
                            break;
                        }
                    }
                    status.leader.store(false, Ordering::Relaxed);
                }
            }
            .into_actor(self),
        );
    }
}

/// Asks the relay how it is doing.
#[derive(Message)]
#[rtype(result = "RelaySnapshot")]
pub struct GetStatus;

impl Handler<GetStatus> for OutboxRelay {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.status.snapshot())
    }
}

/// Waits until this process holds the relay lock: a session-level advisory
/// lock on a connection taken out of the pool for good, so the lock dies with
/// the connection and never lingers in a pooled one.
async fn lead(
    store: &Store,
    status: &RelayStatus,
    metrics: &Metrics,
) -> deadpool_postgres::ClientWrapper {
    loop {
        match try_lead(store).await {
            Ok(Some(client)) => return client,
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "outbox relay: cannot try the leader lock"),
        }
        refresh_lag(store, status, metrics).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn try_lead(store: &Store) -> Result<Option<deadpool_postgres::ClientWrapper>, StoreError> {
    let obj = store.pool.get().await?;
    let got: bool = obj
        .query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK])
        .await?
        .get(0);
    Ok(got.then(|| deadpool_postgres::Object::take(obj)))
}

/// One broker connection's lifetime. Returns only on error.
async fn session(
    store: &Store,
    cfg: &RelayConfig,
    status: &RelayStatus,
    metrics: &Metrics,
    lock: &deadpool_postgres::ClientWrapper,
) -> RelayError {
    match run_session(store, cfg, status, metrics, lock).await {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

async fn run_session(
    store: &Store,
    cfg: &RelayConfig,
    status: &RelayStatus,
    metrics: &Metrics,
    lock: &deadpool_postgres::ClientWrapper,
) -> Result<Infallible, RelayError> {
    let (conn, channel) = amqp::connect(&cfg.amqp, "upi-switch outbox relay").await?;
    within(channel.confirm_select(ConfirmSelectOptions::default())).await?;
    amqp::declare_topology(&channel, &cfg.amqp).await?;
    // The dead-letter queue's depth, read on a channel of its own for as
    // long as this session lasts (dropped with it).
    let probe = within(conn.create_channel()).await?;
    let _dead_letters = super::dead_letters::watch(probe, cfg.amqp.clone(), metrics.clone());
    status.connected.store(true, Ordering::Relaxed);
    tracing::info!(exchange = %cfg.amqp.exchange, "outbox relay connected");

    let exchange = ShortString::from(cfg.amqp.exchange.as_str());
    let mut last_check = Instant::now();
    let mut last_vacuum = Instant::now();
    let mut deleted_since_vacuum = 0u64;
    refresh_lag(store, status, metrics).await;
    loop {
        if !conn.status().connected() {
            return Err(AmqpError::Closed.into());
        }
        let round_started = Instant::now();
        let rows = store.outbox_batch(cfg.batch).await?;
        let full = rows.len() as i64 >= cfg.batch;
        let sendable = first_per_txn(rows);
        if !sendable.is_empty() {
            // Every publish of the round is handed to lapin's I/O thread at
            // once (a publish future resolves only when its frames are on the
            // wire: awaited one by one, each would be a round trip to that
            // thread). The first poll of `join_all` queues them in order.
            let bodies: Vec<Vec<u8>> = sendable
                .iter()
                .map(|row| serde_json::to_vec(&row.event).unwrap_or_default())
                .collect();
            let publishes = sendable.iter().zip(&bodies).map(|(row, body)| {
                channel.basic_publish(
                    exchange.clone(),
                    ShortString::from(row.event.routing_key()),
                    BasicPublishOptions::default(),
                    body,
                    properties(row),
                )
            });
            let sent = within(async {
                futures::future::join_all(publishes)
                    .await
                    .into_iter()
                    .collect::<Result<Vec<_>, lapin::Error>>()
            })
            .await?;
            let ids: Vec<i64> = sendable.iter().map(|row| row.id).collect();
            let futs = sent;
            let answers = tokio::time::timeout(CONFIRM_DEADLINE, futures::future::join_all(futs))
                .await
                .map_err(|_| AmqpError::Timeout(CONFIRM_DEADLINE))?;
            let mut acked = Vec::with_capacity(ids.len());
            for (id, answer) in ids.into_iter().zip(answers) {
                match answer.map_err(AmqpError::from)? {
                    Confirmation::Ack(_) | Confirmation::NotRequested => acked.push(id),
                    Confirmation::Nack(_) => {
                        metrics.rabbitmq_errors.with_label_values(&["nack"]).inc();
                    }
                }
            }
            let n = store.outbox_delete(&acked).await?;
            status.published.fetch_add(n, Ordering::Relaxed);
            metrics.outbox_published.inc_by(n);
            deleted_since_vacuum += n;
        }
        if deleted_since_vacuum > 0 && last_vacuum.elapsed() >= VACUUM_EVERY {
            last_vacuum = Instant::now();
            deleted_since_vacuum = 0;
            if let Err(e) = store.outbox_vacuum().await {
                tracing::warn!(error = %e, "vacuuming the outbox failed; trying again later");
            }
        }
        if last_check.elapsed() >= Duration::from_millis(500) {
            last_check = Instant::now();
            // Settlement events are few (a window's close, a run's
            // mismatches): looked for twice a second, not every round.
            publish_side_events(store, &channel, &exchange, metrics).await?;
            refresh_lag(store, status, metrics).await;
            lock.simple_query("SELECT 1")
                .await
                .map_err(|e| RelayError::Lock(e.to_string()))?;
        }
        if !full {
            // New events poke us; other processes' events are found by the poll.
            let _ = tokio::time::timeout(cfg.poll, store.outbox_written.notified()).await;
            // Batch, don't react: a round takes what accumulated, at most
            // one round per MIN_ROUND_GAP unless the last one was full.
            tokio::time::sleep_until((round_started + MIN_ROUND_GAP).into()).await;
        }
    }
}

/// Most settlement events published per round.
const SIDE_BATCH: i64 = 100;

/// Publishes the waiting settlement events, awaits their confirms, and
/// deletes the confirmed ones.
async fn publish_side_events(
    store: &Store,
    channel: &lapin::Channel,
    exchange: &ShortString,
    metrics: &Metrics,
) -> Result<(), RelayError> {
    let events = store.side_events(SIDE_BATCH).await?;
    if events.is_empty() {
        return Ok(());
    }
    let bodies: Vec<Vec<u8>> = events
        .iter()
        .map(|e| serde_json::to_vec(&e.body).unwrap_or_default())
        .collect();
    let mut acked = Vec::with_capacity(events.len());
    for (event, body) in events.iter().zip(&bodies) {
        let properties = BasicProperties::default()
            .with_message_id(event.event_id.as_str().into())
            .with_content_type("application/json".into())
            .with_type(event.event_type.as_str().into())
            .with_app_id("upi-switch".into())
            .with_delivery_mode(2);
        let confirm = within(channel.basic_publish(
            exchange.clone(),
            ShortString::from(event.routing_key.as_str()),
            BasicPublishOptions::default(),
            body,
            properties,
        ))
        .await?;
        let answer = tokio::time::timeout(CONFIRM_DEADLINE, confirm)
            .await
            .map_err(|_| AmqpError::Timeout(CONFIRM_DEADLINE))?;
        match answer.map_err(AmqpError::from)? {
            Confirmation::Ack(_) | Confirmation::NotRequested => acked.push(event.id),
            Confirmation::Nack(_) => {
                metrics.rabbitmq_errors.with_label_values(&["nack"]).inc();
            }
        }
    }
    let n = store.side_events_delete(&acked).await?;
    metrics.outbox_published.inc_by(n);
    Ok(())
}

/// Keeps only the first event of each transaction, in outbox order: a later
/// event of the same transaction waits for the next round, after this one's
/// confirm, which keeps per-transaction order whatever the broker does.
fn first_per_txn(rows: Vec<OutboxRow>) -> Vec<OutboxRow> {
    let mut seen = HashSet::with_capacity(rows.len());
    rows.into_iter()
        .filter(|r| seen.insert(r.event.txn_id))
        .collect()
}

fn properties(row: &OutboxRow) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(
        "txn_id".into(),
        AMQPValue::LongString(row.event.txn_id.to_string().into()),
    );
    headers.insert("seq".into(), AMQPValue::LongLongInt(row.event.seq.into()));
    BasicProperties::default()
        .with_message_id(row.event.event_id.as_str().into())
        .with_content_type("application/json".into())
        .with_type(row.event.event_type.as_str().into())
        .with_app_id("upi-switch".into())
        .with_delivery_mode(2)
        .with_timestamp(row.event.at.timestamp().max(0) as u64)
        .with_headers(headers)
}

async fn refresh_lag(store: &Store, status: &RelayStatus, metrics: &Metrics) {
    if let Ok((pending, lag)) = store.outbox_lag().await {
        status.pending.store(pending, Ordering::Relaxed);
        status
            .lag_ms
            .store((lag * 1000.0).max(0.0) as u64, Ordering::Relaxed);
        metrics.outbox_pending.set(pending);
        metrics.outbox_lag_seconds.set(lag.max(0.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Paise;
    use crate::events::{StepFacts, TxnEvent, TxnFacts};
    use uuid::Uuid;

    fn row(id: i64, txn: Uuid, seq: i32) -> OutboxRow {
        let facts = TxnFacts {
            txn_id: txn,
            txn_type: "P2P".into(),
            payer_vpa: "a@x".into(),
            payee_vpa: "b@y".into(),
            amount: Paise(100),
            payer_bank: None,
            payee_bank: None,
            merchant_vpa: None,
            created_at: None,
        };
        let step = StepFacts {
            seq,
            state: "DEBITED".into(),
            status: "PENDING".into(),
            op_id: None,
            reason_code: None,
            reason_detail: None,
            at: chrono::Utc::now(),
        };
        OutboxRow {
            id,
            event: TxnEvent::new(&facts, step),
        }
    }

    #[test]
    fn a_batch_carries_one_event_per_transaction_the_oldest() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let rows = vec![
            row(1, a, 1),
            row(2, b, 1),
            row(3, a, 2),
            row(4, b, 2),
            row(5, a, 3),
        ];
        let kept: Vec<(i64, i32)> = first_per_txn(rows)
            .iter()
            .map(|r| (r.id, r.event.seq))
            .collect();
        assert_eq!(kept, vec![(1, 1), (2, 1)]);
    }
}
