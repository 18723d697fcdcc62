//! The plan: everything a backend needs to build a lab, computed from a validated topology.
//!
//! Pure data, backend-neutral, serializable. The kernel backend turns it into namespaces,
//! veths and routes; the model backend evaluates it without root. Same topology in, same
//! plan out, byte for byte (vectors are in a defined order; maps are `BTreeMap`).

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use topo_spec::{Impairment, NodeKind};

/// Bumped when the meaning of a plan field changes (the kernel backend records it in its state).
pub const PLAN_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub version: u32,
    pub lab: String,
    /// The per-lab namespace that holds the bridges of all networks.
    pub fabric: Fabric,
    /// In topology order.
    pub nodes: Vec<NodePlan>,
    /// Point-to-point links, in topology order.
    pub links: Vec<LinkPlan>,
    /// Name → address for every node, as written to each node's hosts file. Sorted by name.
    pub hosts: Vec<HostEntry>,
    /// Node indices in start order (a topological order of `depends_on`, ties in file order).
    pub start_order: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fabric {
    /// Network namespace name, `topo-<lab>`.
    pub netns: String,
    pub bridges: Vec<BridgePlan>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BridgePlan {
    /// The topology network this bridge implements.
    pub network: String,
    /// Interface name of the bridge inside the fabric namespace (≤ 15 chars).
    pub ifname: String,
    pub mtu: u32,
    pub subnet: Ipv4Net,
    pub subnet6: Option<Ipv6Net>,
    /// Reserved gateway address, if the network has one.
    pub gateway: Option<Ipv4Addr>,
    /// Node that holds the gateway address (a router on this network), if any.
    pub gateway_node: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodePlan {
    pub name: String,
    /// Network namespace name, `topo-<lab>.<node>`.
    pub netns: String,
    pub hostname: String,
    pub kind: NodeKind,
    pub groups: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// Network attachments first (file order), then link interfaces (link order).
    pub interfaces: Vec<IfacePlan>,
    /// Extra addresses on `lo`.
    pub loopbacks: Vec<Ipv4Net>,
    /// Routes to install, besides the connected ones the kernel adds by itself.
    pub routes: Vec<RoutePlan>,
    /// Sysctls to set inside the node's namespace (dotted keys), including the plan's own
    /// (forwarding on routers, no IPv6 DAD when IPv6 is unused).
    pub sysctls: BTreeMap<String, String>,
    pub depends_on: Vec<String>,
    /// Routing daemons and their rendered configuration, when the node runs any.
    pub routing: Option<RoutingPlan>,
    /// Interfaces (node-side names) out of which traffic is masqueraded (source NAT).
    pub masquerade: Vec<String>,
}

/// What the plan decided for a node's routing daemons: the resolved OSPF view (used by the
/// model) and the daemon config files (used by the kernel backend), keyed by file name
/// (e.g. `zebra.conf`, `ospfd.conf`, `bfdd.conf`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoutingPlan {
    pub daemon: topo_spec::RoutingDaemon,
    pub ospf: Option<OspfPlan>,
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OspfPlan {
    pub router_id: Ipv4Addr,
    pub hello_interval: u32,
    pub dead_interval: u32,
    pub fast: bool,
    pub bfd: bool,
    pub bfd_interval_ms: u32,
    pub bfd_multiplier: u32,
    /// Every interface (node-side name, including `lo`) that OSPF covers.
    pub interfaces: Vec<OspfIfacePlan>,
    pub redistribute_static: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OspfIfacePlan {
    pub iface: String,
    pub area: Ipv4Addr,
    pub cost: u32,
    pub passive: bool,
    /// Point-to-point (links) or broadcast (LANs).
    pub point_to_point: bool,
}

impl NodePlan {
    /// All IPv4 addresses of the node: interfaces then loopbacks.
    pub fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.interfaces
            .iter()
            .flat_map(|i| i.addresses.iter().map(Ipv4Net::addr))
            .chain(self.loopbacks.iter().map(Ipv4Net::addr))
    }

    /// The address other nodes use to reach this one by name (first interface address,
    /// else first loopback).
    pub fn primary_address(&self) -> Option<Ipv4Addr> {
        self.addresses().next()
    }

    pub fn iface(&self, name: &str) -> Option<&IfacePlan> {
        self.interfaces.iter().find(|i| i.name == name)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IfacePlan {
    /// Name inside the node's namespace.
    pub name: String,
    pub mac: Mac,
    pub mtu: u32,
    /// IPv4 addresses with the prefix length of their subnet. Empty for DHCP interfaces.
    pub addresses: Vec<Ipv4Net>,
    pub addresses6: Vec<Ipv6Net>,
    pub dhcp: bool,
    pub attachment: Attachment,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Attachment {
    /// A veth whose other end (`port`, in the fabric namespace) is enslaved to the network's bridge.
    Network { network: String, bridge: String, port: String },
    /// A veth whose other end is an interface of another node (a point-to-point link).
    Link { link: usize, peer_node: String, peer_iface: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkPlan {
    /// Index in [`Plan::links`].
    pub index: usize,
    pub a: LinkEndPlan,
    pub b: LinkEndPlan,
    pub subnet: Ipv4Net,
    pub mtu: u32,
    /// Traffic sent from `a` towards `b`.
    pub impair_ab: Impairment,
    /// Traffic sent from `b` towards `a`.
    pub impair_ba: Impairment,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkEndPlan {
    pub node: String,
    pub iface: String,
    pub address: Ipv4Net,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutePlan {
    pub to: Ipv4Net,
    pub via: Ipv4Addr,
    /// Interface the next hop is reached through (resolved by the plan).
    pub dev: String,
    pub metric: Option<u32>,
    pub origin: RouteOrigin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteOrigin {
    /// Written in the topology file.
    Static,
    /// Default route via the network's gateway, added by the plan for hosts.
    Gateway,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostEntry {
    pub name: String,
    pub address: Ipv4Addr,
}

/// A MAC address. Serialized as `02:xx:xx:xx:xx:xx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
    }
}

impl std::str::FromStr for Mac {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for b in &mut out {
            let p = parts.next().ok_or_else(|| format!("bad MAC {s:?}"))?;
            *b = u8::from_str_radix(p, 16).map_err(|_| format!("bad MAC {s:?}"))?;
        }
        if parts.next().is_some() {
            return Err(format!("bad MAC {s:?}"));
        }
        Ok(Self(out))
    }
}

impl Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Plan {
    pub fn node(&self, name: &str) -> Option<&NodePlan> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// How long routing may take to converge (after `up`, or after a fault): twice the largest
    /// OSPF dead interval (a silent cut is noticed only when the dead timer fires, and LANs wait
    /// a dead interval before electing a DR) plus ten seconds for the database exchange and
    /// route installation, and at least 30 s. The fast-timer triangle converges in about 1.5 s.
    pub fn converge_timeout(&self) -> std::time::Duration {
        let dead = self
            .nodes
            .iter()
            .filter_map(|n| n.routing.as_ref()?.ospf.as_ref().map(|o| o.dead_interval))
            .max()
            .unwrap_or(0);
        std::time::Duration::from_secs((2 * u64::from(dead) + 10).max(30))
    }

    /// Canonical JSON (pretty, stable field order) — what "byte-identical plan" means.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("plan serializes")
    }
}
