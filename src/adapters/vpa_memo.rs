//! `VpaMemo`: the VPAs this process resolved in the last `ttl` (1 s by
//! default), kept in memory in front of the Redis cache, so that a payment
//! between VPAs seen a moment ago resolves both without a round trip.
//!
//! It is a copy of a copy and never the authority: an operator's change made
//! through this process drops the entry at once (`forget`), and a fill that
//! looked before such a change is refused (a generation, as in Redis), so
//! this process never serves an old mapping after its own change; a change
//! made through another switch process reaches this one by its `vpa:` notice
//! (`cluster::config_sync`), and at most `ttl` later if that notice is lost.
//! Bounded: at `max` entries it starts over.

use crate::adapters::store::VpaRecord;
use crate::domain::Vpa;
use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct VpaMemo {
    ttl: Duration,
    max: usize,
    /// Bumped by every `forget`; a fill that saw an older one is refused.
    generation: AtomicU64,
    entries: RwLock<HashMap<Vpa, (VpaRecord, Instant)>>,
}

impl VpaMemo {
    /// `ttl` zero turns the memo off.
    pub fn new(ttl: Duration, max: usize) -> VpaMemo {
        VpaMemo {
            ttl,
            max: max.max(1),
            generation: AtomicU64::new(0),
            entries: RwLock::new(HashMap::new()),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    /// The generation to hand back to `fill` (read it before looking further).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The VPA's registration if this process resolved it less than `ttl` ago.
    pub fn get(&self, vpa: &Vpa, now: Instant) -> Option<VpaRecord> {
        if !self.enabled() {
            return None;
        }
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        entries
            .get(vpa)
            .filter(|(_, at)| now.saturating_duration_since(*at) < self.ttl)
            .map(|(record, _)| record.clone())
    }

    /// Keeps `record` unless a `forget` happened since `seen` was read.
    pub fn fill(&self, vpa: &Vpa, record: &VpaRecord, seen: u64, now: Instant) {
        if !self.enabled() {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        // Checked under the lock `forget` takes too: no fill slips between.
        if self.generation.load(Ordering::Acquire) != seen {
            return;
        }
        if entries.len() >= self.max && !entries.contains_key(vpa) {
            entries.clear();
        }
        entries.insert(vpa.clone(), (record.clone(), now));
    }

    /// Drops the VPA after an operator changed it through this process.
    pub fn forget(&self, vpa: &Vpa) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.remove(vpa);
    }

    /// Forgets everything (after notices may have been missed).
    pub fn clear(&self) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(account: &str) -> VpaRecord {
        VpaRecord {
            vpa: "bob@icici".into(),
            bank_code: "ICICI".into(),
            account: account.into(),
            name: "Bob".into(),
            merchant: false,
            mcc: None,
        }
    }

    #[test]
    fn an_entry_lives_for_its_ttl() {
        let memo = VpaMemo::new(Duration::from_secs(1), 10);
        let vpa = Vpa::parse("bob@icici").expect("vpa");
        let t0 = Instant::now();
        assert_eq!(memo.get(&vpa, t0), None);
        memo.fill(&vpa, &record("ACC001"), memo.generation(), t0);
        assert_eq!(memo.get(&vpa, t0), Some(record("ACC001")));
        assert_eq!(
            memo.get(&vpa, t0 + Duration::from_millis(999)),
            Some(record("ACC001"))
        );
        assert_eq!(memo.get(&vpa, t0 + Duration::from_secs(1)), None);
    }

    #[test]
    fn a_fill_that_looked_before_a_change_is_refused() {
        let memo = VpaMemo::new(Duration::from_secs(1), 10);
        let vpa = Vpa::parse("bob@icici").expect("vpa");
        let t0 = Instant::now();
        memo.fill(&vpa, &record("ACC001"), memo.generation(), t0);
        // A reader looks (old generation), the operator changes bob, the reader fills.
        let seen = memo.generation();
        memo.forget(&vpa);
        assert_eq!(memo.get(&vpa, t0), None, "dropped at once");
        memo.fill(&vpa, &record("ACC001"), seen, t0);
        assert_eq!(memo.get(&vpa, t0), None, "the stale fill is refused");
        memo.fill(&vpa, &record("ACC003"), memo.generation(), t0);
        assert_eq!(memo.get(&vpa, t0), Some(record("ACC003")));
    }

    #[test]
    fn it_is_bounded_and_can_be_off() {
        let memo = VpaMemo::new(Duration::from_secs(1), 2);
        let t0 = Instant::now();
        for name in ["aa@x1", "bb@x1", "cc@x1"] {
            let vpa = Vpa::parse(name).expect("vpa");
            memo.fill(&vpa, &record("A"), memo.generation(), t0);
        }
        let entries = memo.entries.read().expect("lock");
        assert!(entries.len() <= 2);
        drop(entries);
        let off = VpaMemo::new(Duration::ZERO, 10);
        let vpa = Vpa::parse("bob@icici").expect("vpa");
        off.fill(&vpa, &record("A"), off.generation(), t0);
        assert_eq!(off.get(&vpa, t0), None);
    }
}
