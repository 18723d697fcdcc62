//! A fast hasher for integer keys (addresses): the walks do several lookups per hop, and
//! SipHash's DoS resistance buys nothing for keys that come from the plan.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

const K: u64 = 0x9E37_79B9_7F4A_7C15;

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        // The multiply mixes upward; rotate the well-mixed high bits down for bucket indices
        // (prefixes have all-zero low bits).
        self.0.rotate_left(26)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0 ^ u64::from(n)).wrapping_mul(K);
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(K);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

/// Map keyed by an IPv4 address as `u32`.
pub(crate) type IpMap<V> = HashMap<u32, V, BuildHasherDefault<IntHasher>>;

/// Set of directed node pairs packed as `from << 32 | to`.
pub(crate) type PairSet = HashSet<u64, BuildHasherDefault<IntHasher>>;

pub(crate) fn pair_key(from: usize, to: usize) -> u64 {
    ((from as u64) << 32) | to as u64
}
