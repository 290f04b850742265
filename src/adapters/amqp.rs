//! RabbitMQ (lapin) plumbing shared by the outbox relay and the event feed:
//! connecting with a deadline and declaring the event topology.
//!
//! Topology (all durable, declared idempotently by every connection):
//! - `<exchange>` (default `upi.events`): topic exchange of domain events,
//!   routing key `<event type>.<txn_id>` (see `crate::events`).
//! - `<exchange>.dlx`: fanout dead-letter exchange; consumer queues name it as
//!   `x-dead-letter-exchange`, so a message a consumer rejects lands in
//! - `<exchange>.dead`: a durable, length-bounded queue for inspection; the
//!   relay leader reads its depth into `upi_dead_letter_messages`
//!   (`actors::dead_letters`).

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use std::time::Duration;

/// Longest wait for a connection (TCP + AMQP handshake) or one broker call.
pub const AMQP_DEADLINE: Duration = Duration::from_secs(5);

/// Dead letters kept at most; older ones are dropped by the broker.
const DEAD_LETTER_MAX: i64 = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    #[error("RabbitMQ: {0}")]
    Broker(#[from] lapin::Error),
    #[error("RabbitMQ did not answer within {0:?}")]
    Timeout(Duration),
    #[error("RabbitMQ connection closed")]
    Closed,
}

/// Where events go.
#[derive(Debug, Clone)]
pub struct AmqpConfig {
    pub url: String,
    /// The topic exchange of domain events.
    pub exchange: String,
}

impl AmqpConfig {
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dlx", self.exchange)
    }

    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dead", self.exchange)
    }

    /// Queue arguments every consumer queue of these events should carry, so
    /// rejected messages are dead-lettered instead of lost.
    pub fn consumer_queue_args(&self) -> FieldTable {
        let mut args = FieldTable::default();
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(LongString::from(self.dead_letter_exchange())),
        );
        args
    }
}

/// Bounds a broker call.
pub async fn within<T>(fut: impl Future<Output = Result<T, lapin::Error>>) -> Result<T, AmqpError> {
    match tokio::time::timeout(AMQP_DEADLINE, fut).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(AmqpError::Timeout(AMQP_DEADLINE)),
    }
}

/// Connects and opens one channel, named for the broker's connection list.
pub async fn connect(cfg: &AmqpConfig, name: &str) -> Result<(Connection, Channel), AmqpError> {
    let props = ConnectionProperties::default().with_connection_name(LongString::from(name));
    let conn = within(Connection::connect(&cfg.url, props)).await?;
    let channel = within(conn.create_channel()).await?;
    Ok((conn, channel))
}

/// How many messages wait in the dead-letter queue: a passive declare, which
/// changes nothing (and fails, closing the channel, if the queue is gone).
pub async fn dead_letter_count(channel: &Channel, cfg: &AmqpConfig) -> Result<u32, AmqpError> {
    let queue = within(channel.queue_declare(
        ShortString::from(cfg.dead_letter_queue()),
        QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        },
        FieldTable::default(),
    ))
    .await?;
    Ok(queue.message_count())
}

/// Declares the exchange, the dead-letter exchange and its queue.
pub async fn declare_topology(channel: &Channel, cfg: &AmqpConfig) -> Result<(), AmqpError> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    within(channel.exchange_declare(
        ShortString::from(cfg.exchange.as_str()),
        ExchangeKind::Topic,
        durable,
        FieldTable::default(),
    ))
    .await?;
    within(channel.exchange_declare(
        ShortString::from(cfg.dead_letter_exchange()),
        ExchangeKind::Fanout,
        durable,
        FieldTable::default(),
    ))
    .await?;
    let mut args = FieldTable::default();
    args.insert(
        "x-max-length".into(),
        AMQPValue::LongLongInt(DEAD_LETTER_MAX),
    );
    within(channel.queue_declare(
        ShortString::from(cfg.dead_letter_queue()),
        QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        },
        args,
    ))
    .await?;
    within(channel.queue_bind(
        ShortString::from(cfg.dead_letter_queue()),
        ShortString::from(cfg.dead_letter_exchange()),
        ShortString::from(""),
        QueueBindOptions::default(),
        FieldTable::default(),
    ))
    .await?;
    Ok(())
}

/// Deletes an event exchange of a deployment that is gone, with its dead
/// letters and the analytics ingest's queue (best effort, each call bounded),
/// on the broker of `AMQP_URL` (or the default).
pub async fn delete_exchange(exchange: &str) {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    let url = std::env::var("AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_string());
    let cfg = AmqpConfig {
        url,
        exchange: exchange.to_string(),
    };
    let Ok((conn, channel)) = connect(&cfg, "upi-switch rig teardown").await else {
        return;
    };
    for queue in [cfg.dead_letter_queue(), format!("{exchange}.analytics")] {
        let _ =
            within(channel.queue_delete(ShortString::from(queue), QueueDeleteOptions::default()))
                .await;
    }
    for x in [cfg.exchange.clone(), cfg.dead_letter_exchange()] {
        let _ =
            within(channel.exchange_delete(ShortString::from(x), ExchangeDeleteOptions::default()))
                .await;
    }
    let _ = within(conn.close(200, ShortString::from("deleted"))).await;
}
