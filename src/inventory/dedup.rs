//! The order lines the processor has already decided, remembered for a
//! window so that a line seen twice (the CDC path and the direct path, or a
//! replay) is decided once (design §6, "Duplicates are ignored").
//!
//! Each line is kept as a 64-bit hash of `(orderId, productId)`, not as its
//! strings: 24 bytes of payload per line (8 in the membership set, 16 in the
//! expiry queue) instead of ~100. With hash-table and ring-buffer slack the
//! real cost is between ~26 and ~50 bytes per line; [`Dedup::memory_bytes`]
//! reports it from the actual capacities.
//!
//! **Changelog key deviation.** A hash cannot be turned back into the
//! strings, so the changelog key of a dedup record is
//! `dedup:<16 lowercase hex digits of the hash>` rather than the design's
//! `dedup:<orderId>:<productId>`. Tombstoning an expired line needs only the
//! hash, and keys stay fixed-size. See NOTES.md.
//!
//! **Why a hand-written hash.** The hash is part of the persisted state: the
//! set is rebuilt from the changelog after a restart, possibly by a newer
//! kart binary, and each new line is looked up by hashing it again. Rust's
//! `DefaultHasher` is randomly seeded per process and its algorithm may
//! change between releases, so it would silently forget every remembered
//! line. [`line_hash`] is FNV-1a 64 followed by the MurmurHash3 64-bit
//! finaliser, both fixed by their published constants; it must never change
//! (changing it means a new key prefix and a migration).
//!
//! Collisions: two different lines sharing a hash would make the second one
//! look like a duplicate. With n lines in the window the chance is about
//! n²/2⁶⁵ — 3·10⁻⁸ for a million lines — which is accepted.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

/// FNV-1a 64 offset basis and prime (published constants, never change).
const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The stable hash of one order line. The two ids are separated by 0xFF, a
/// byte that never occurs in UTF-8, so ("ab","c") and ("a","bc") differ.
pub fn line_hash(order_id: &str, product_id: &str) -> u64 {
    let mut hasher = StableHasher::default();
    hasher.write(order_id.as_bytes());
    hasher.write(&[0xFF]);
    hasher.write(product_id.as_bytes());
    hasher.finish()
}

/// FNV-1a 64 over the bytes written, finished with MurmurHash3's 64-bit
/// finaliser: FNV's low bits depend only on the low bits of the input bytes,
/// and the finaliser spreads every input bit over the whole word, so the
/// result can key a hash table directly. Also a fast `Hasher` for the
/// processor's product index (short ids, where SipHash's setup dominates).
#[derive(Debug, Clone, Copy)]
pub struct StableHasher(u64);

impl Default for StableHasher {
    fn default() -> Self {
        StableHasher(FNV_OFFSET_BASIS)
    }
}

impl Hasher for StableHasher {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(FNV_PRIME);
        }
    }

    fn finish(&self) -> u64 {
        fmix64(self.0)
    }
}

/// MurmurHash3's 64-bit finaliser.
fn fmix64(mut hash: u64) -> u64 {
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^= hash >> 33;
    hash
}

/// The changelog key of a remembered line.
pub fn changelog_key(hash: u64) -> String {
    format!("{CHANGELOG_PREFIX}{hash:016x}")
}

/// The hash in a changelog key, if the key is a dedup key.
pub fn hash_from_changelog_key(key: &str) -> Option<Result<u64, String>> {
    let hex = key.strip_prefix(CHANGELOG_PREFIX)?;
    let valid = hex.len() == 16 && hex.bytes().all(|byte| byte.is_ascii_hexdigit());
    Some(if valid {
        u64::from_str_radix(hex, 16).map_err(|error| format!("bad dedup key {key:?}: {error}"))
    } else {
        Err(format!("bad dedup key {key:?}: expected 16 hex digits after \"{CHANGELOG_PREFIX}\""))
    })
}

pub const CHANGELOG_PREFIX: &str = "dedup:";

/// A hasher that passes an already well-mixed `u64` through unchanged, so
/// the set does not hash the hash again.
#[derive(Default)]
pub struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are stored; fold anything else in so it still works.
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// Remembered lines with their expiry times.
#[derive(Debug, Default, Clone)]
pub struct Dedup {
    members: HashSet<u64, BuildHasherDefault<PassThroughHasher>>,
    /// `(expires_at, hash)` sorted by expiry, so expiring is a pop from the
    /// front. Lines are inserted with `now + window`, which only grows in
    /// normal operation; an out-of-order insert (clock step back, a shorter
    /// window after a restart) is placed by binary search.
    by_expiry: VecDeque<(i64, u64)>,
}

impl Dedup {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn contains(&self, hash: u64) -> bool {
        self.members.contains(&hash)
    }

    /// Remembers a line until `expires_at` (exclusive: at `expires_at` it is
    /// forgotten). Inserting a hash that is already present moves its expiry.
    pub fn insert(&mut self, hash: u64, expires_at: i64) {
        if !self.members.insert(hash) {
            self.remove_from_queue(hash);
        }
        let in_order = self.by_expiry.back().is_none_or(|(last, _)| *last <= expires_at);
        if in_order {
            self.by_expiry.push_back((expires_at, hash));
        } else {
            let position = self.by_expiry.partition_point(|(expiry, _)| *expiry <= expires_at);
            self.by_expiry.insert(position, (expires_at, hash));
        }
    }

    /// Forgets a line (a tombstone read back from the changelog). Tombstones
    /// are written in expiry order, so the entry is nearly always at the
    /// front and this is O(1) in practice.
    pub fn remove(&mut self, hash: u64) -> bool {
        if self.members.remove(&hash) {
            self.remove_from_queue(hash);
            true
        } else {
            false
        }
    }

    fn remove_from_queue(&mut self, hash: u64) {
        if let Some(position) = self.by_expiry.iter().position(|(_, queued)| *queued == hash) {
            self.by_expiry.remove(position);
        }
    }

    /// The earliest expiry, if any line is remembered.
    pub fn next_expiry(&self) -> Option<i64> {
        self.by_expiry.front().map(|(expiry, _)| *expiry)
    }

    /// Forgets every line whose expiry is `<= now`, calling `on_expired` with
    /// each hash so the caller can tombstone its changelog record.
    pub fn expire(&mut self, now: i64, mut on_expired: impl FnMut(u64)) {
        while let Some(&(expires_at, hash)) = self.by_expiry.front() {
            if expires_at > now {
                break;
            }
            self.by_expiry.pop_front();
            self.members.remove(&hash);
            on_expired(hash);
        }
    }

    /// Every remembered line as `(hash, expires_at)`, in expiry order.
    pub fn entries(&self) -> impl Iterator<Item = (u64, i64)> + '_ {
        self.by_expiry.iter().map(|(expiry, hash)| (*hash, *expiry))
    }

    /// Approximate heap use: hashbrown keeps one control byte per bucket
    /// beside each 8-byte key; the queue holds 16 bytes per slot.
    pub fn memory_bytes(&self) -> usize {
        let set_buckets = if self.members.capacity() == 0 {
            0
        } else {
            // hashbrown's bucket count is the next power of two above
            // capacity * 8 / 7.
            (self.members.capacity() * 8 / 7).next_power_of_two()
        };
        std::mem::size_of::<Self>()
            + set_buckets * (std::mem::size_of::<u64>() + 1)
            + self.by_expiry.capacity() * std::mem::size_of::<(i64, u64)>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_hash_is_stable_across_runs_and_versions() {
        // Pinned values (computed independently): if these change, every
        // restored dedup set is wrong.
        assert_eq!(line_hash("", ""), PIN_EMPTY);
        assert_eq!(line_hash("727237df-9fd6-44f8-8a46-6defe27c7585", "PROD_0151"), PIN_EXAMPLE);
        for (order_id, product_id) in [("", ""), ("o1", "PROD_0001"), ("ünïcode", "P")] {
            assert_eq!(line_hash(order_id, product_id), line_hash_reference(order_id, product_id));
        }
        assert_ne!(line_hash("ab", "c"), line_hash("a", "bc"));
        assert_ne!(line_hash("o1", "PROD_0001"), line_hash("o1", "PROD_0002"));
    }

    const PIN_EMPTY: u64 = 0x1bbd_5c81_3c69_a8d7;
    const PIN_EXAMPLE: u64 = 0xc108_f929_3b86_339f;

    /// An independent, byte-at-a-time restatement of the algorithm.
    fn line_hash_reference(order_id: &str, product_id: &str) -> u64 {
        let mut input = order_id.as_bytes().to_vec();
        input.push(0xFF);
        input.extend_from_slice(product_id.as_bytes());
        let mut hash: u64 = 14_695_981_039_346_656_037;
        for byte in input {
            hash = (hash ^ byte as u64).wrapping_mul(1_099_511_628_211);
        }
        fmix64(hash)
    }

    #[test]
    fn changelog_keys_round_trip() {
        let hash = line_hash("order", "PROD_0001");
        let key = changelog_key(hash);
        assert_eq!(key.len(), "dedup:".len() + 16);
        assert_eq!(hash_from_changelog_key(&key), Some(Ok(hash)));
        assert_eq!(changelog_key(1), "dedup:0000000000000001");
        assert_eq!(hash_from_changelog_key("PROD_0001"), None);
        assert!(matches!(hash_from_changelog_key("dedup:xyz"), Some(Err(_))));
        assert!(matches!(hash_from_changelog_key("dedup:+000000000000001"), Some(Err(_))));
    }

    #[test]
    fn entries_expire_exactly_at_their_expiry() {
        let mut dedup = Dedup::new();
        dedup.insert(1, 100);
        dedup.insert(2, 200);
        let mut expired = Vec::new();
        dedup.expire(99, |hash| expired.push(hash));
        assert!(expired.is_empty() && dedup.contains(1));
        dedup.expire(100, |hash| expired.push(hash));
        assert_eq!(expired, vec![1]);
        assert!(!dedup.contains(1) && dedup.contains(2));
        assert_eq!(dedup.next_expiry(), Some(200));
    }

    #[test]
    fn out_of_order_inserts_and_removals_keep_the_queue_sorted() {
        let mut dedup = Dedup::new();
        dedup.insert(1, 300);
        dedup.insert(2, 100);
        dedup.insert(3, 200);
        dedup.insert(1, 50); // re-insert moves the expiry
        assert_eq!(dedup.entries().collect::<Vec<_>>(), vec![(1, 50), (2, 100), (3, 200)]);
        assert!(dedup.remove(2));
        assert!(!dedup.remove(2));
        let mut expired = Vec::new();
        dedup.expire(1_000, |hash| expired.push(hash));
        assert_eq!(expired, vec![1, 3]);
        assert!(dedup.is_empty());
    }

    #[test]
    fn memory_per_entry_stays_small() {
        let mut dedup = Dedup::new();
        let count = 100_000;
        for index in 0..count {
            dedup.insert(line_hash(&format!("order-{index}"), "PROD_0001"), index);
        }
        assert_eq!(dedup.len(), count as usize);
        let per_entry = dedup.memory_bytes() as f64 / count as f64;
        assert!(per_entry <= 56.0, "{per_entry} bytes per entry");
    }
}
