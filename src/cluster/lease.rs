//! The lease keeper: renews this node's lease in `switch_nodes` every fifth
//! of the lease (one row update, however many sagas the node holds), on a
//! thread and a Postgres connection of its own — a busy node (its pool
//! queued, its threads saturated) must not lose its sagas for being busy.
//! It tells the registry the moment the node can no longer be sure it holds
//! its lease: a renewal that has not succeeded for a whole lease (Postgres
//! away, the process paused), or one that finds the lease had already run
//! out. The registry then stops every saga it runs (`StopAll`); they are
//! claimed again, by this node or another, through the version-bumping claim.
//! Each such loss is counted once (`upi_lease_lost_total{why}`): a renewal
//! that finds the lease run out after the node already fenced itself for
//! want of renewals is the same loss.

use super::Node;
use crate::actors::registry::{StopAll, TxnRegistry};
use crate::adapters::pg::DbUrl;
use crate::adapters::store::cluster::{Renewal, renew};
use actix::{Addr, Arbiter};
use prometheus::IntCounterVec;
use std::time::{Duration, Instant};

/// Why this node stopped trusting its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseLoss {
    /// A renewal found the lease had already run out (or the node's row gone):
    /// other nodes may have claimed its sagas.
    Expired,
    /// No renewal succeeded for a whole lease (Postgres away, a pause).
    NotRenewed,
}

impl LeaseLoss {
    pub const ALL: [LeaseLoss; 2] = [LeaseLoss::Expired, LeaseLoss::NotRenewed];

    /// Label of `upi_lease_lost_total{why}`.
    pub fn label(self) -> &'static str {
        match self {
            LeaseLoss::Expired => "expired",
            LeaseLoss::NotRenewed => "not_renewed",
        }
    }
}

/// Starts renewing on an arbiter of its own (the node was registered, with a
/// first lease, already). The arbiter lives as long as the returned value.
/// `lost` is `upi_lease_lost_total`.
pub fn spawn(node: Node, db: DbUrl, registry: Addr<TxnRegistry>, lost: IntCounterVec) -> Arbiter {
    let arbiter = Arbiter::new();
    arbiter.spawn(run(node, db, registry, lost));
    arbiter
}

async fn run(node: Node, db: DbUrl, registry: Addr<TxnRegistry>, lost: IntCounterVec) {
    let every = (node.lease() / 5).max(Duration::from_millis(40));
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let lease_ms = node.lease().as_millis() as i64;
    let mut holding = node.holds_lease();
    let mut client = None;
    loop {
        ticks.tick().await;
        if node.is_released() {
            return;
        }
        let sent = Instant::now();
        let renewal = tokio::time::timeout(node.lease() / 2, async {
            if client
                .as_ref()
                .is_none_or(|c: &tokio_postgres::Client| c.is_closed())
            {
                client = Some(db.connect().await.map_err(|e| e.to_string())?);
            }
            match &client {
                Some(c) => renew(c, node.id(), node.name(), lease_ms, node.is_draining())
                    .await
                    .map_err(|e| crate::adapters::pg::pg_message(&e)),
                None => Err("no connection".to_string()),
            }
        })
        .await;
        if node.is_released() {
            return;
        }
        match renewal {
            Ok(Ok(Renewal::Held)) => node.renewed(sent),
            Ok(Ok(renewal)) => {
                tracing::warn!(node = %node.id(), renewal = ?renewal, "the lease had run out: stopping every saga here; they are claimed afresh");
                registry.do_send(StopAll {
                    why: "the lease had run out",
                });
                // Already counted when the node fenced itself for want of renewals.
                if holding {
                    lost.with_label_values(&[LeaseLoss::Expired.label()]).inc();
                }
                node.renewed(sent);
            }
            Ok(Err(e)) => tracing::warn!(node = %node.id(), error = %e, "lease renewal failed"),
            Err(_) => {
                // The connection may be stuck: open a fresh one next time.
                client = None;
                tracing::warn!(node = %node.id(), "lease renewal timed out");
            }
        }
        let holds = node.holds_lease();
        if holding && !holds {
            lost.with_label_values(&[LeaseLoss::NotRenewed.label()])
                .inc();
            tracing::warn!(node = %node.id(), "lease not renewed in time: stopping every saga here");
            registry.do_send(StopAll {
                why: "the lease was not renewed in time",
            });
        }
        holding = holds;
    }
}
