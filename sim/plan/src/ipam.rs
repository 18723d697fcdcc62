//! Address allocation primitives (IPAM). The policy (what is allocated in which order) lives in
//! `compile.rs`; this module only knows ranges, cursors and pools.

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

/// First and last usable host address of a subnet. Network and broadcast addresses are excluded,
/// except for /31 (RFC 3021: both addresses usable) and /32.
pub fn host_range(net: Ipv4Net) -> (u32, u32) {
    let n = u32::from(net.network());
    let b = u32::from(net.broadcast());
    if net.prefix_len() >= 31 {
        (n, b)
    } else {
        (n + 1, b - 1)
    }
}

/// Number of usable host addresses of a subnet.
pub fn host_count(net: Ipv4Net) -> u64 {
    let (first, last) = host_range(net);
    u64::from(last) - u64::from(first) + 1
}

/// Hands out a network's free addresses in ascending order, skipping `used`. The cursor never
/// moves back, so serving n requests costs O(n + skipped) in total.
#[derive(Debug, Clone)]
pub struct NetCursor {
    next: u64,
    last: u64,
}

impl NetCursor {
    pub fn new(net: Ipv4Net) -> Self {
        let (first, last) = host_range(net);
        Self { next: u64::from(first), last: u64::from(last) }
    }

    pub fn next_free(&mut self, used: &HashSet<u32>) -> Option<Ipv4Addr> {
        while self.next <= self.last {
            let c = self.next as u32;
            self.next += 1;
            if !used.contains(&c) {
                return Some(Ipv4Addr::from(c));
            }
        }
        None
    }
}

/// Sorted, merged, inclusive `u32` intervals: "is any part of this block reserved?" in O(log n).
#[derive(Debug, Clone, Default)]
pub struct Reserved {
    ivs: Vec<(u32, u32)>,
}

impl Reserved {
    pub fn new(nets: impl IntoIterator<Item = Ipv4Net>) -> Self {
        let mut ivs: Vec<(u32, u32)> =
            nets.into_iter().map(|n| (u32::from(n.network()), u32::from(n.broadcast()))).collect();
        ivs.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ivs.len());
        for (s, e) in ivs {
            match merged.last_mut() {
                Some(last) if u64::from(s) <= u64::from(last.1) + 1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        Self { ivs: merged }
    }

    /// The end of the reserved interval overlapping `[s, e]`, if any.
    pub fn overlap_end(&self, s: u32, e: u32) -> Option<u32> {
        let idx = self.ivs.partition_point(|iv| iv.0 <= e);
        let iv = self.ivs.get(idx.checked_sub(1)?)?;
        (iv.1 >= s).then_some(iv.1)
    }
}

/// Hands out point-to-point subnets (/31 or /30) from the p2p pool in ascending order, skipping
/// blocks that overlap reserved subnets (static link subnets, networks) or contain a used address.
#[derive(Debug, Clone)]
pub struct P2pCursor {
    next: u64,
    end: u64,
    prefix: u8,
}

impl P2pCursor {
    /// A pool smaller than one block holds none.
    pub fn new(pool: Ipv4Net, prefix: u8) -> Self {
        let prefix = prefix.min(32);
        Self {
            next: u64::from(u32::from(pool.network())),
            end: u64::from(u32::from(pool.broadcast())),
            prefix,
        }
    }

    /// How many blocks the pool holds in total (for hints).
    pub fn capacity(pool: Ipv4Net, prefix: u8) -> u64 {
        let prefix = prefix.min(32);
        prefix.checked_sub(pool.prefix_len()).map_or(0, |bits| 1u64 << bits)
    }

    pub fn next_free(&mut self, reserved: &Reserved, used: &HashSet<u32>) -> Option<Ipv4Net> {
        let size = 1u64 << (32 - self.prefix);
        while self.next + size - 1 <= self.end {
            let s = self.next as u32;
            let e = (self.next + size - 1) as u32;
            if let Some(r_end) = reserved.overlap_end(s, e) {
                // Jump past the reserved interval, aligned up to the block size.
                let after = u64::from(r_end) + 1;
                self.next = after.div_ceil(size) * size;
                continue;
            }
            self.next += size;
            if (s..=e).any(|a| used.contains(&a)) {
                continue;
            }
            return Ipv4Net::new(Ipv4Addr::from(s), self.prefix).ok();
        }
        None
    }
}

/// The address `offset` hosts into an IPv6 subnet, if it fits and is not the subnet-router
/// anycast address (offset 0).
pub fn v6_at(net: Ipv6Net, offset: u128) -> Option<Ipv6Addr> {
    if offset == 0 {
        return None;
    }
    let host_bits = 128 - u32::from(net.prefix_len());
    if host_bits < 128 && offset >> host_bits != 0 {
        return None;
    }
    Some(Ipv6Addr::from(u128::from(net.network()) + offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("test cidr")
    }

    #[test]
    fn host_ranges() {
        assert_eq!(host_count(net("10.0.0.0/24")), 254);
        assert_eq!(host_count(net("10.0.0.0/30")), 2);
        assert_eq!(host_count(net("10.0.0.0/31")), 2);
        assert_eq!(host_count(net("10.0.0.1/32")), 1);
    }

    #[test]
    fn cursor_skips_used_and_ends() {
        let mut c = NetCursor::new(net("10.0.0.0/29"));
        let used: HashSet<u32> = [u32::from(Ipv4Addr::new(10, 0, 0, 2))].into();
        let got: Vec<_> = std::iter::from_fn(|| c.next_free(&used)).collect();
        assert_eq!(got.len(), 5);
        assert_eq!(got[0], Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(got[1], Ipv4Addr::new(10, 0, 0, 3));
        assert_eq!(got[4], Ipv4Addr::new(10, 0, 0, 6));
    }

    #[test]
    fn p2p_skips_reserved_blocks() {
        let reserved = Reserved::new([net("10.255.0.0/31"), net("10.255.0.4/30")]);
        let mut c = P2pCursor::new(net("10.255.0.0/28"), 31);
        let used = HashSet::new();
        let got: Vec<_> = std::iter::from_fn(|| c.next_free(&reserved, &used)).collect();
        let want: Vec<Ipv4Net> =
            ["10.255.0.2/31", "10.255.0.8/31", "10.255.0.10/31", "10.255.0.12/31", "10.255.0.14/31"]
                .iter()
                .map(|s| net(s))
                .collect();
        assert_eq!(got, want);
        assert_eq!(P2pCursor::capacity(net("10.255.0.0/28"), 31), 8);
    }

    #[test]
    fn reserved_merges_nested_intervals() {
        let r = Reserved::new([net("10.0.0.0/8"), net("10.1.0.0/16")]);
        assert!(r
            .overlap_end(u32::from(Ipv4Addr::new(10, 200, 0, 0)), u32::from(Ipv4Addr::new(10, 200, 0, 1)))
            .is_some());
        assert!(r
            .overlap_end(u32::from(Ipv4Addr::new(11, 0, 0, 0)), u32::from(Ipv4Addr::new(11, 0, 0, 1)))
            .is_none());
    }

    #[test]
    fn v6_offsets() {
        let n: Ipv6Net = "fd00::/120".parse().expect("test cidr");
        assert_eq!(v6_at(n, 5), Some("fd00::5".parse().expect("addr")));
        assert_eq!(v6_at(n, 0), None);
        assert_eq!(v6_at(n, 256), None);
    }
}
