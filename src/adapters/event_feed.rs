//! `EventFeed`: this process's RabbitMQ consumer of transaction events, fanned
//! out to in-process subscribers (the SSE streams of
//! `GET /v1/transactions/{id}/events`). It owns one exclusive, auto-deleted
//! queue per process, bound only to the transactions someone is watching
//! (`txn.*.<txn_id>`), so an idle switch receives nothing.
//!
//! Because it listens to the broker, a stream sees a saga that runs on another
//! switch process. Delivery to a subscriber is best-effort by design: a full
//! subscriber buffer drops the event, and the stream notices the gap in `seq`
//! and re-reads the transaction's checkpoints from Postgres (the authority).
//! A message that is not a valid event is rejected without requeue and lands
//! in the dead-letter queue.

use crate::adapters::amqp::{self, AmqpConfig, AmqpError, within};
use crate::events::{TxnEvent, txn_binding};
use crate::metrics::Metrics;
use futures::StreamExt;
use lapin::Channel;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{FieldTable, ShortString};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use uuid::Uuid;

/// Events buffered per subscriber before the feed drops them for that one.
const SUBSCRIBER_BUFFER: usize = 64;
/// Unacknowledged deliveries the broker may push at once.
const PREFETCH: u16 = 256;
const MAX_PAUSE: Duration = Duration::from_secs(5);

type Subscribers = HashMap<Uuid, Vec<(u64, mpsc::Sender<TxnEvent>)>>;

struct Inner {
    cfg: AmqpConfig,
    metrics: Metrics,
    subs: Mutex<Subscribers>,
    next_id: AtomicU64,
    /// The live channel and this process's queue, when connected.
    link: Mutex<Option<(Channel, ShortString)>>,
    connected: AtomicBool,
    /// Bumped on every (re)connect: streams re-read Postgres when it changes,
    /// to cover events published while the feed was away.
    generation: AtomicU64,
}

/// Handle to the feed. Cheap to clone.
#[derive(Clone)]
pub struct EventFeed {
    inner: Arc<Inner>,
}

/// A subscription to one transaction's events; unsubscribes when dropped.
pub struct Subscription {
    pub events: mpsc::Receiver<TxnEvent>,
    feed: EventFeed,
    txn_id: Uuid,
    id: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.feed.unsubscribe(self.txn_id, self.id);
    }
}

impl EventFeed {
    /// Starts the consumer in the background (it reconnects on its own).
    pub fn start(cfg: AmqpConfig, metrics: Metrics) -> EventFeed {
        let feed = EventFeed {
            inner: Arc::new(Inner {
                cfg,
                metrics,
                subs: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                link: Mutex::new(None),
                connected: AtomicBool::new(false),
                generation: AtomicU64::new(0),
            }),
        };
        let runner = feed.clone();
        tokio::spawn(async move { runner.run().await });
        feed
    }

    pub fn connected(&self) -> bool {
        self.inner.connected.load(Ordering::Relaxed)
    }

    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Relaxed)
    }

    /// Subscribes to one transaction. Returns once the binding is in place
    /// (when connected), so every event published afterwards arrives.
    pub async fn subscribe(&self, txn_id: Uuid) -> Subscription {
        let (tx, rx) = mpsc::channel(SUBSCRIBER_BUFFER);
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let first = {
            let mut subs = lock(&self.inner.subs);
            let list = subs.entry(txn_id).or_default();
            list.push((id, tx));
            list.len() == 1
        };
        if first
            && let Some((channel, queue)) = self.link()
            && let Err(e) = bind(&channel, &queue, &self.inner.cfg, txn_id).await
        {
            self.error("bind", &e);
        }
        Subscription {
            events: rx,
            feed: self.clone(),
            txn_id,
            id,
        }
    }

    fn unsubscribe(&self, txn_id: Uuid, id: u64) {
        let last = {
            let mut subs = lock(&self.inner.subs);
            let Some(list) = subs.get_mut(&txn_id) else {
                return;
            };
            list.retain(|(i, _)| *i != id);
            let empty = list.is_empty();
            if empty {
                subs.remove(&txn_id);
            }
            empty
        };
        if last && let Some((channel, queue)) = self.link() {
            let cfg = self.inner.cfg.clone();
            // Best effort: a stale binding only costs a few unwanted messages,
            // and dies with the queue.
            tokio::spawn(async move {
                let _ = within(channel.queue_unbind(
                    queue,
                    ShortString::from(cfg.exchange.as_str()),
                    ShortString::from(txn_binding(txn_id)),
                    FieldTable::default(),
                ))
                .await;
            });
        }
    }

    fn link(&self) -> Option<(Channel, ShortString)> {
        lock(&self.inner.link).clone()
    }

    fn error(&self, op: &str, e: &AmqpError) {
        self.inner
            .metrics
            .rabbitmq_errors
            .with_label_values(&[op])
            .inc();
        tracing::warn!(op, error = %e, "event feed: RabbitMQ call failed");
    }

    async fn run(self) {
        let mut pause = Duration::from_millis(100);
        loop {
            let e = self.session().await;
            *lock(&self.inner.link) = None;
            self.inner.connected.store(false, Ordering::Relaxed);
            self.error("consume", &e);
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }

    /// One connection's lifetime; returns the error that ended it.
    async fn session(&self) -> AmqpError {
        let (_conn, _channel, mut consumer) = match self.open().await {
            Ok(v) => v,
            Err(e) => return e,
        };
        self.inner.connected.store(true, Ordering::Relaxed);
        self.inner.generation.fetch_add(1, Ordering::Relaxed);
        tracing::info!("event feed connected");
        while let Some(delivery) = consumer.next().await {
            let delivery = match delivery {
                Ok(d) => d,
                Err(e) => return e.into(),
            };
            let result = match serde_json::from_slice::<TxnEvent>(&delivery.data) {
                Ok(event) => {
                    self.dispatch(event);
                    delivery.acker.ack(BasicAckOptions::default()).await
                }
                Err(e) => {
                    tracing::warn!(error = %e, "event feed: not an event; dead-lettering it");
                    delivery
                        .acker
                        .reject(BasicRejectOptions { requeue: false })
                        .await
                }
            };
            if let Err(e) = result {
                return e.into();
            }
        }
        AmqpError::Closed
    }

    async fn open(&self) -> Result<(lapin::Connection, Channel, lapin::Consumer), AmqpError> {
        let cfg = &self.inner.cfg;
        let (conn, channel) = amqp::connect(cfg, "upi-switch event feed").await?;
        amqp::declare_topology(&channel, cfg).await?;
        let queue = within(channel.queue_declare(
            ShortString::from(""),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            cfg.consumer_queue_args(),
        ))
        .await?;
        let queue = queue.name().clone();
        within(channel.basic_qos(PREFETCH, BasicQosOptions::default())).await?;
        let consumer = within(channel.basic_consume(
            queue.clone(),
            ShortString::from("upi-switch-sse"),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ))
        .await?;
        // Publish the link first, then bind what is already watched: a
        // subscriber arriving in between binds itself (binding is idempotent).
        *lock(&self.inner.link) = Some((channel.clone(), queue.clone()));
        let watched: Vec<Uuid> = lock(&self.inner.subs).keys().copied().collect();
        for txn_id in watched {
            bind(&channel, &queue, cfg, txn_id).await?;
        }
        Ok((conn, channel, consumer))
    }

    fn dispatch(&self, event: TxnEvent) {
        let subs = lock(&self.inner.subs);
        if let Some(list) = subs.get(&event.txn_id) {
            for (_, tx) in list {
                // Full: that stream is behind; it will see the gap and re-read.
                let _ = tx.try_send(event.clone());
            }
        }
    }
}

async fn bind(
    channel: &Channel,
    queue: &ShortString,
    cfg: &AmqpConfig,
    txn_id: Uuid,
) -> Result<(), AmqpError> {
    within(channel.queue_bind(
        queue.clone(),
        ShortString::from(cfg.exchange.as_str()),
        ShortString::from(txn_binding(txn_id)),
        QueueBindOptions::default(),
        FieldTable::default(),
    ))
    .await
}

/// A poisoned lock only means another thread panicked mid-update of a map
/// of senders; the map itself is still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
