//! Deterministic MAC addresses.
//!
//! A node interface's MAC is `02:` followed by the first five bytes of
//! `SHA-256(lab NUL node NUL ifname)`: locally administered, unicast, stable across runs and
//! machines, and independent of the order of other nodes in the file. Should two interfaces of a
//! lab hash to the same MAC (about 1 in 2^40 per pair), the later one in plan order (nodes in file
//! order, interfaces in plan order) rehashes with an attempt counter appended
//! (`... NUL ifname NUL <n>`, n = 1, 2, ...) until it is unique in the lab.

use std::collections::HashSet;

use sha2::{Digest, Sha256};

use crate::types::Mac;

/// The MAC for `(lab, node, ifname)` at a given collision-resolution attempt (0 = first choice).
pub fn candidate(lab: &str, node: &str, ifname: &str, attempt: u32) -> Mac {
    let mut h = Sha256::new();
    h.update(lab.as_bytes());
    h.update([0]);
    h.update(node.as_bytes());
    h.update([0]);
    h.update(ifname.as_bytes());
    if attempt > 0 {
        h.update([0]);
        h.update(attempt.to_string().as_bytes());
    }
    let d = h.finalize();
    Mac([0x02, d[0], d[1], d[2], d[3], d[4]])
}

/// Hands out lab-unique MACs.
#[derive(Debug, Default)]
pub struct MacAllocator {
    used: HashSet<Mac>,
}

impl MacAllocator {
    /// Mark a MAC as used (e.g. to reserve one that is fixed elsewhere).
    pub fn reserve(&mut self, mac: Mac) {
        self.used.insert(mac);
    }

    pub fn allocate(&mut self, lab: &str, node: &str, ifname: &str) -> Mac {
        let mut attempt = 0;
        loop {
            let mac = candidate(lab, node, ifname, attempt);
            if self.used.insert(mac) {
                return mac;
            }
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locally_administered_unicast_and_stable() {
        let m = candidate("lab", "n1", "eth0", 0);
        assert_eq!(m.0[0], 0x02);
        assert_eq!(m, candidate("lab", "n1", "eth0", 0));
        assert_ne!(m, candidate("lab", "n1", "eth1", 0));
        assert_ne!(m, candidate("lab2", "n1", "eth0", 0));
        // The separator keeps ("ab","c") and ("a","bc") apart.
        assert_ne!(candidate("l", "ab", "c", 0), candidate("l", "a", "bc", 0));
    }

    #[test]
    fn collision_is_resolved_deterministically() {
        let mut alloc = MacAllocator::default();
        // Force a collision: pretend another interface already holds n1/eth0's first choice.
        alloc.reserve(candidate("lab", "n1", "eth0", 0));
        let got = alloc.allocate("lab", "n1", "eth0");
        assert_eq!(got, candidate("lab", "n1", "eth0", 1));
        // And the next collision moves on to attempt 2.
        let again = alloc.allocate("lab", "n1", "eth0");
        assert_eq!(again, candidate("lab", "n1", "eth0", 2));
    }
}
