//! Two sweeps of things that expire, on every node. The collect requests'
//! deadlines, enforced: a task on every node marks
//! `EXPIRED` the `REQUESTED` requests past their stored `expires_at` (by the
//! database's clock), a bounded batch per statement, `FOR UPDATE SKIP
//! LOCKED` so nodes share the work and an approval in progress is left to
//! decide first. It is not what makes expiry hold: every read and every
//! approval compares `expires_at` with the database's now, so a request is
//! expired at its deadline however long every node was down; the sweep
//! writes it down (and counts it) so the table says so too.

use crate::adapters::store::Store;
use crate::metrics::Metrics;
use std::time::Duration;

/// How often the sweep looks.
const EVERY: Duration = Duration::from_secs(1);
/// Most requests one statement expires.
const BATCH: i64 = 500;

/// Runs the sweep until the process ends.
pub fn spawn(store: Store, metrics: Metrics) {
    actix::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // Whole batches mean more are due: go on at once (bounded: the
            // due set only shrinks, new requests expire no sooner than 60 s).
            loop {
                match store.expire_collects(BATCH).await {
                    Ok(n) => {
                        if n > 0 {
                            metrics.collects.with_label_values(&["EXPIRED"]).inc_by(n);
                            tracing::info!(expired = n, "collect requests expired");
                        }
                        if (n as i64) < BATCH {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "collect expiry sweep failed; retrying next tick");
                        break;
                    }
                }
            }
        }
    });
}

/// Forgets used nonces older than the replay window (a replay of one that
/// old has a stale timestamp anyway), a bounded batch a minute.
pub fn spawn_nonce_purge(store: Store) {
    actix::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let ttl = crate::auth::signature::NONCE_TTL_S;
            if let Err(e) = store.purge_nonces(ttl, 50_000).await {
                tracing::warn!(error = %e, "nonce purge failed; retrying next minute");
            }
        }
    });
}
