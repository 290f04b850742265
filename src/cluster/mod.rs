//! This process as one node of a cluster of equal switch nodes on one
//! Postgres: its identity, its lease (`lease`), and the shared configuration
//! every node applies (`config_sync`). Postgres is the only judge: a node
//! holds the sagas whose `owner` it is while its lease in `switch_nodes`
//! (renewed by the database's clock) has not run out; other nodes claim the
//! sagas of a node whose lease has. There is no election and no consensus of
//! our own.
//!
//! What a node must never do: send a bank call for a saga it does not hold
//! (it holds it by the version-bumping claim or by creating it), or conclude
//! from its own failed send that nothing was delivered after another node may
//! have sent (a resumed saga treats every open step as possibly delivered).

pub mod config_sync;
pub mod lease;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// What every part of this process may ask about the node. Cheap to clone.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
    id: Uuid,
    name: String,
    lease: Duration,
    epoch: Instant,
    /// Until when (ms after `epoch`) this node surely holds its lease: the
    /// send time of its last successful renewal plus the lease.
    held_until_ms: AtomicU64,
    draining: AtomicBool,
    /// Handed back: the lease keeper stops renewing.
    released: AtomicBool,
}

impl Node {
    pub fn new(name: String, lease: Duration) -> Node {
        Node {
            inner: Arc::new(Inner {
                id: Uuid::new_v4(),
                name,
                lease: lease.max(Duration::from_millis(200)),
                epoch: Instant::now(),
                held_until_ms: AtomicU64::new(0),
                draining: AtomicBool::new(false),
                released: AtomicBool::new(false),
            }),
        }
    }

    pub fn id(&self) -> Uuid {
        self.inner.id
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn lease(&self) -> Duration {
        self.inner.lease
    }

    fn ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.inner.epoch).as_millis() as u64
    }

    /// A renewal sent at `sent` succeeded: the lease holds until `sent + lease`
    /// at least (the database extended it from a later instant).
    pub fn renewed(&self, sent: Instant) {
        let until = self.ms(sent + self.inner.lease);
        self.inner.held_until_ms.fetch_max(until, Ordering::AcqRel);
    }

    /// Forget the lease (it lapsed): nothing is held until the next renewal.
    pub fn lapsed(&self) {
        self.inner.held_until_ms.store(0, Ordering::Release);
    }

    /// Does this node surely hold its lease now?
    pub fn holds_lease(&self) -> bool {
        self.ms(Instant::now()) < self.inner.held_until_ms.load(Ordering::Acquire)
    }

    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Acquire)
    }

    /// Stop taking new sagas (SIGTERM): `/readyz` says so, new payments are refused.
    pub fn start_draining(&self) {
        self.inner.draining.store(true, Ordering::Release);
    }

    pub fn is_released(&self) -> bool {
        self.inner.released.load(Ordering::Acquire)
    }

    pub fn released(&self) {
        self.inner.released.store(true, Ordering::Release);
        self.lapsed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_holds_from_the_renewals_send_time() {
        let node = Node::new("n".into(), Duration::from_millis(300));
        assert!(!node.holds_lease());
        node.renewed(Instant::now());
        assert!(node.holds_lease());
        // An older renewal answered late never shortens it.
        node.renewed(Instant::now() - Duration::from_millis(250));
        assert!(node.holds_lease());
        std::thread::sleep(Duration::from_millis(320));
        assert!(!node.holds_lease());
        node.renewed(Instant::now());
        node.lapsed();
        assert!(!node.holds_lease());
    }
}
