//! The dead-letter gauge: while this process's outbox relay leads and is
//! connected, a task of its own reads how many messages wait in the event
//! exchange's dead-letter queue (`<exchange>.dead`, where consumers' rejected
//! messages land) every 10 s, by a passive `queue_declare` on a channel of
//! its own — the relay's publishing channel never waits for it — into
//! `upi_dead_letter_messages{queue}`. The task ends with the relay's session
//! and removes its series: only the leader reports, so the cluster has one
//! value (`max` over nodes).

use crate::adapters::amqp::{self, AmqpConfig, AmqpError};
use crate::metrics::Metrics;
use lapin::Channel;
use prometheus::IntGaugeVec;
use std::time::Duration;

/// How often the dead-letter queue is read.
pub const EVERY: Duration = Duration::from_secs(10);

/// The running reader; dropping it stops the reader and removes its series.
pub struct DeadLetterWatch {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DeadLetterWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Removes the queue's series when the reader stops (ends or is aborted):
/// a value nobody refreshes any more must not look current.
struct Series {
    gauge: IntGaugeVec,
    queue: String,
}

impl Drop for Series {
    fn drop(&mut self) {
        let _ = self.gauge.remove_label_values(&[&self.queue]);
    }
}

/// Starts reading the dead-letter queue of `cfg`'s exchange on `channel` (a
/// channel of the relay's connection that nothing else uses): at once, then
/// every `EVERY`. Each read is bounded by `amqp::AMQP_DEADLINE`.
pub fn watch(channel: Channel, cfg: AmqpConfig, metrics: Metrics) -> DeadLetterWatch {
    let task = tokio::spawn(async move {
        let series = Series {
            gauge: metrics.dead_letters.clone(),
            queue: cfg.dead_letter_queue(),
        };
        let mut ticks = tokio::time::interval(EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match amqp::dead_letter_count(&channel, &cfg).await {
                Ok(n) => series
                    .gauge
                    .with_label_values(&[&series.queue])
                    .set(i64::from(n)),
                Err(e) => {
                    metrics
                        .rabbitmq_errors
                        .with_label_values(&["dead_letters"])
                        .inc();
                    // A refused declare (the queue is gone) closes the
                    // channel: the relay's next session declares the queue
                    // again and starts a new reader.
                    let closed = matches!(e, AmqpError::Broker(_)) || !channel.status().connected();
                    tracing::warn!(error = %e, queue = %series.queue, stopped = closed, "reading the dead-letter queue failed");
                    if closed {
                        return;
                    }
                }
            }
        }
    });
    DeadLetterWatch { task }
}
