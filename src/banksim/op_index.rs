//! `OpIndex`: which op ids this bank may already have, in memory, so the
//! writer reads a batch's op rows from Postgres only when one may exist.
//!
//! It holds a 64-bit hash of every op id of the bank (ops and tombstones),
//! loaded when the writer takes the bank's lock and extended after every
//! commit. The writer is the bank's only writer (the advisory lock), so no op
//! id of the bank exists that the index does not hold: **absent means absent**
//! and the op is new. **Present means maybe**: a hash can collide, or a batch
//! that was never committed can have left an id behind, so the row is read.
//!
//! What does not happen here: no answer is ever decided by the index alone.
//! And a wrong "absent" could not move money twice anyway: a new op is
//! written by a plain `INSERT` (no `ON CONFLICT`), so a duplicate fails the
//! whole batch, which is answered `503` and makes the writer reload.
//!
//! Bounded: past `OP_INDEX_MAX` ids it stops being exact and says "maybe"
//! for every id, i.e. every op is looked up first, as before the index.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};

/// Most op ids the index holds (about 16 bytes each: 256 MiB at most).
pub const OP_INDEX_MAX: usize = 16 * 1024 * 1024;

/// The op ids one bank has, as hashes; see the module doc.
pub struct OpIndex {
    /// Keyed per process: op ids come from outside, so they must not be able
    /// to collide on purpose (a collision would only cost a read anyway).
    hasher: RandomState,
    hashes: HashSet<u64>,
    /// Largest number of ids this index holds before it gives up.
    max: usize,
    /// True once `max` was passed: from then on every id is "maybe".
    saturated: bool,
}

impl OpIndex {
    /// An empty index that holds at most `max` ids.
    pub fn with_max(max: usize) -> OpIndex {
        OpIndex {
            hasher: RandomState::new(),
            hashes: HashSet::new(),
            max,
            saturated: false,
        }
    }

    fn hash(&self, op_id: &str) -> u64 {
        self.hasher.hash_one(op_id)
    }

    /// Records an op id the bank now has.
    pub fn insert(&mut self, op_id: &str) {
        if self.saturated {
            return;
        }
        if self.hashes.len() >= self.max {
            tracing::warn!(
                max = self.max,
                "op index full: every op is now looked up in Postgres first"
            );
            self.saturated = true;
            self.hashes = HashSet::new();
            return;
        }
        let hash = self.hash(op_id);
        self.hashes.insert(hash);
    }

    /// False only when the bank certainly does not have `op_id`.
    pub fn may_contain(&self, op_id: &str) -> bool {
        self.saturated || self.hashes.contains(&self.hash(op_id))
    }

    /// How many ids it holds (0 once saturated).
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    pub fn is_saturated(&self) -> bool {
        self.saturated
    }
}

impl Default for OpIndex {
    fn default() -> Self {
        OpIndex::with_max(OP_INDEX_MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_absent_until_inserted_and_maybe_after() {
        let mut index = OpIndex::default();
        assert!(!index.may_contain("d1"));
        index.insert("d1");
        assert!(index.may_contain("d1"));
        assert!(!index.may_contain("d2"));
        index.insert("d1");
        assert_eq!(index.len(), 1, "the same id is held once");
    }

    #[test]
    fn past_its_bound_every_id_is_maybe() {
        let mut index = OpIndex::with_max(2);
        index.insert("a");
        index.insert("b");
        assert!(!index.may_contain("c"));
        index.insert("c");
        assert!(index.is_saturated());
        assert!(index.may_contain("c"));
        assert!(index.may_contain("never-seen"), "no longer exact: maybe");
        assert!(index.is_empty(), "the memory is given back");
    }
}
