//! Per-node forwarding tables: candidate routes, the selection rule, and longest-prefix match.

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::fasthash::IpMap;

/// Where a route came from. The order is the preference at equal prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// The subnet of an up interface address (`proto kernel scope link`).
    Connected,
    /// A static route of the topology file.
    Static,
    /// The default route via the network gateway the plan adds to hosts.
    Gateway,
    /// Learned by OSPF and installed by the routing daemon (metric 20).
    Ospf,
}

impl Origin {
    /// Preference rank at equal prefix length: connected, then static routes (zebra treats
    /// kernel/static routes as distance 0 and does not install an OSPF route over them), then
    /// OSPF.
    fn rank(self) -> u8 {
        match self {
            Origin::Connected => 0,
            Origin::Static | Origin::Gateway => 1,
            Origin::Ospf => 2,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Connected => "connected",
            Origin::Static => "static",
            Origin::Gateway => "gateway",
            Origin::Ospf => "ospf",
        })
    }
}

/// One selected route of a node (what `ip route` would list in the main table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub to: Ipv4Net,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<Ipv4Addr>,
    pub dev: String,
    pub metric: u32,
    pub origin: Origin,
}

/// A candidate route with the interface as a global index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FibRoute {
    pub to: Ipv4Net,
    pub via: Option<Ipv4Addr>,
    pub dev: usize,
    pub metric: u32,
    pub origin: Origin,
    /// Other equal-cost next hops (next hop, interface) of an OSPF route: the kernel installs a
    /// multipath route and hashes each flow over them. The model forwards on `via`/`dev` and
    /// uses these only to mark pairs whose outcome depends on the hash.
    pub alts: Vec<(Ipv4Addr, usize)>,
}

/// A node's forwarding table: the best route per prefix, indexed by prefix length.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fib {
    /// Selected routes, sorted by (prefix length desc, network).
    pub routes: Vec<FibRoute>,
    /// Prefix lengths present, longest first, each with network → index into `routes`.
    by_len: Vec<(u8, IpMap<usize>)>,
}

impl Fib {
    /// Select the best candidate per prefix (rank, then metric, then the order given) and index.
    pub fn build(candidates: Vec<FibRoute>) -> Self {
        let mut best: HashMap<Ipv4Net, (u8, u32, usize)> = HashMap::new();
        for (i, r) in candidates.iter().enumerate() {
            let key = (r.origin.rank(), r.metric, i);
            best.entry(r.to.trunc()).and_modify(|k| *k = (*k).min(key)).or_insert(key);
        }
        let mut picked: Vec<usize> = best.values().map(|k| k.2).collect();
        picked.sort_unstable();
        let mut routes: Vec<FibRoute> = picked
            .into_iter()
            .map(|i| {
                let mut r = candidates[i].clone();
                r.to = r.to.trunc();
                r
            })
            .collect();
        routes.sort_by(|a, b| {
            b.to.prefix_len().cmp(&a.to.prefix_len()).then(a.to.network().cmp(&b.to.network()))
        });
        let mut by_len: Vec<(u8, IpMap<usize>)> = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            let len = r.to.prefix_len();
            if by_len.last().is_none_or(|(l, _)| *l != len) {
                by_len.push((len, IpMap::default()));
            }
            if let Some((_, m)) = by_len.last_mut() {
                m.insert(u32::from(r.to.network()), i);
            }
        }
        Fib { routes, by_len }
    }

    /// Longest-prefix match.
    pub fn lookup(&self, dst: Ipv4Addr) -> Option<&FibRoute> {
        let d = u32::from(dst);
        for (len, m) in &self.by_len {
            let mask = if *len == 0 { 0 } else { u32::MAX << (32 - u32::from(*len)) };
            if let Some(&i) = m.get(&(d & mask)) {
                return Some(&self.routes[i]);
            }
        }
        None
    }
}
