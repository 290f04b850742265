//! The lease keeper: renews this node's lease in `switch_nodes` every fifth
//! of the lease (one row update, however many sagas the node holds), and
//! tells the registry the moment the node can no longer be sure it holds it:
//! a renewal that has not succeeded for a whole lease (Postgres away, the
//! process paused), or one that finds the lease had already run out. The
//! registry then stops every saga it runs (`StopAll`); they are claimed
//! again, by this node or another, through the version-bumping claim.

use super::Node;
use crate::actors::registry::{StopAll, TxnRegistry};
use crate::adapters::store::Store;
use crate::adapters::store::cluster::Renewal;
use actix::Addr;
use std::time::{Duration, Instant};

/// Starts renewing (the node was registered, with a first lease, already).
pub fn spawn(node: Node, store: Store, registry: Addr<TxnRegistry>) {
    tokio::spawn(run(node, store, registry));
}

async fn run(node: Node, store: Store, registry: Addr<TxnRegistry>) {
    let every = (node.lease() / 5).max(Duration::from_millis(40));
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let lease_ms = node.lease().as_millis() as i64;
    let mut holding = node.holds_lease();
    loop {
        ticks.tick().await;
        if node.is_released() {
            return;
        }
        let sent = Instant::now();
        let renewal = tokio::time::timeout(
            node.lease() / 2,
            store.renew_node(node.id(), node.name(), lease_ms, node.is_draining()),
        )
        .await;
        if node.is_released() {
            return;
        }
        match renewal {
            Ok(Ok(Renewal::Held)) => node.renewed(sent),
            Ok(Ok(lost)) => {
                tracing::warn!(node = %node.id(), renewal = ?lost, "the lease had run out: stopping every saga here; they are claimed afresh");
                registry.do_send(StopAll {
                    why: "the lease had run out",
                });
                node.renewed(sent);
            }
            Ok(Err(e)) => tracing::warn!(node = %node.id(), error = %e, "lease renewal failed"),
            Err(_) => tracing::warn!(node = %node.id(), "lease renewal timed out"),
        }
        let holds = node.holds_lease();
        if holding && !holds {
            tracing::warn!(node = %node.id(), "lease not renewed in time: stopping every saga here");
            registry.do_send(StopAll {
                why: "the lease was not renewed in time",
            });
        }
        holding = holds;
    }
}
