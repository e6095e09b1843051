//! Which key digests exist, in memory: a digest that was never issued (a forged or made-up key
//! with a valid checksum) is answered without a lookup of its own, so that a flood of them costs
//! the database nothing and cannot crowd out real keys.
//!
//! The index is loaded at start-up and kept current by following the change log (see
//! [`super::key_cache`]). It may say a digest exists when it no longer does (that costs one
//! lookup, which finds nothing); it must never say a digest is unknown when it exists, and so it
//! only answers "unknown" while the follower keeps it current.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use tollgate::keys::KeyDigest;

use super::{KeyChange, KeyChangeKind};

/// The index: the first 8 bytes of each issued digest (uniformly random, so a million keys
/// share a prefix about once in 10^7 indexes), counted, so that removing one key never removes
/// another with the same prefix.
#[derive(Debug, Default)]
pub struct IssuedKeys {
    prefixes: RwLock<HashMap<u64, u32>>,
    /// The change log is applied up to this number.
    seq: AtomicI64,
    /// Whether the follower is keeping the index current.
    current: AtomicBool,
}

fn prefix(digest: &KeyDigest) -> u64 {
    let bytes = digest.as_bytes();
    u64::from_le_bytes([
        bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
    ])
}

impl IssuedKeys {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<u64, u32>> {
        // The map holds no invariant a panic could break half-way.
        self.prefixes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Fills the index with what existed when the change log stood at `seq`.
    pub fn load(&self, digests: &[KeyDigest], seq: i64) {
        let mut prefixes = self.write();
        prefixes.clear();
        for digest in digests {
            *prefixes.entry(prefix(digest)).or_default() += 1;
        }
        self.seq.store(seq, Ordering::SeqCst);
    }

    /// Adds a key this replica has just issued, before its change is read back from the log.
    pub fn add(&self, digest: &KeyDigest) {
        *self.write().entry(prefix(digest)).or_default() += 1;
    }

    /// Applies a change read from the log, unless it was applied already.
    pub fn apply(&self, change: &KeyChange) {
        let mut prefixes = self.write();
        if change.seq <= self.seq.load(Ordering::SeqCst) {
            return;
        }
        let p = prefix(&change.digest);
        match change.kind {
            KeyChangeKind::Issued => *prefixes.entry(p).or_default() += 1,
            KeyChangeKind::Revoked => {
                if let Some(count) = prefixes.get_mut(&p) {
                    *count -= 1;
                    if *count == 0 {
                        prefixes.remove(&p);
                    }
                }
            }
            KeyChangeKind::Changed => {}
        }
        self.seq.store(change.seq, Ordering::SeqCst);
    }

    /// Whether a key with this digest may exist: false only when the index is current and no
    /// issued key has the digest's prefix.
    pub fn may_exist(&self, digest: &KeyDigest) -> bool {
        !self.is_current()
            || self
                .prefixes
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .contains_key(&prefix(digest))
    }

    /// Whether the follower keeps the index current.
    pub fn is_current(&self) -> bool {
        self.current.load(Ordering::SeqCst)
    }

    /// Marks the index current (the follower has read the log) or not (it lost the log).
    pub fn set_current(&self, current: bool) {
        self.current.store(current, Ordering::SeqCst);
    }

    /// The change the index has read up to.
    pub fn seq(&self) -> i64 {
        self.seq.load(Ordering::SeqCst)
    }

    /// How many prefixes it holds.
    pub fn len(&self) -> usize {
        self.prefixes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(first: u8, rest: u8) -> KeyDigest {
        let mut bytes = [rest; 32];
        bytes[0] = first;
        KeyDigest(bytes)
    }

    #[test]
    fn answers_unknown_only_when_current_and_absent() {
        let index = IssuedKeys::default();
        let (a, b) = (digest(1, 0), digest(2, 0));
        index.load(&[a], 5);
        assert!(index.may_exist(&b), "not current yet: everything may exist");
        index.set_current(true);
        assert!(index.may_exist(&a) && !index.may_exist(&b));
        index.apply(&KeyChange {
            seq: 6,
            digest: b,
            kind: KeyChangeKind::Issued,
        });
        assert!(index.may_exist(&b));
        // A change already applied is not applied twice.
        index.apply(&KeyChange {
            seq: 6,
            digest: b,
            kind: KeyChangeKind::Revoked,
        });
        assert!(index.may_exist(&b));
        index.apply(&KeyChange {
            seq: 7,
            digest: b,
            kind: KeyChangeKind::Revoked,
        });
        assert!(!index.may_exist(&b));
        assert_eq!(index.seq(), 7);
        index.set_current(false);
        assert!(index.may_exist(&b));
    }

    #[test]
    fn a_shared_prefix_survives_one_removal() {
        let index = IssuedKeys::default();
        index.set_current(true);
        let (a, a2) = (digest(9, 1), digest(9, 1));
        index.load(&[a, a2], 0);
        index.apply(&KeyChange {
            seq: 1,
            digest: a,
            kind: KeyChangeKind::Revoked,
        });
        assert!(index.may_exist(&a2));
    }
}
