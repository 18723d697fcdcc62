//! The resolved topology: what parsing, template expansion and validation produce.
//!
//! This is the contract between `topo-spec` and the provisioning engine (`topo-plan`).
//! Every item keeps the [`Span`] of the YAML it came from, so later stages (address
//! allocation, for example) can still point at the user's source.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

/// A position in a topology file. `line` and `col` are 1-based; `offset`/`len` are bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Span {
    pub offset: usize,
    pub len: usize,
    pub line: u32,
    pub col: u32,
}

/// A fully expanded and validated topology.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Topology {
    /// Lab name (a DNS label). Kernel objects of the lab are named after it.
    pub name: String,
    pub name_span: Span,
    pub pools: Pools,
    /// In file order.
    pub networks: Vec<Network>,
    /// In file order, after counter expansion (`elixir-cluster-{1..5}` gives five entries).
    pub nodes: Vec<Node>,
    /// In file order, after expansion.
    pub links: Vec<Link>,
}

/// Address pools the plan allocates from when the file leaves addresses to `auto`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pools {
    /// Point-to-point links get a /31 (or /30 when `p2p_prefix: 30`) from here. Default 10.255.0.0/16.
    pub p2p: Ipv4Net,
    pub p2p_span: Span,
    /// Prefix length of allocated link subnets: 31 (default) or 30.
    pub p2p_prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Network {
    pub name: String,
    pub span: Span,
    pub subnet: Ipv4Net,
    pub subnet_span: Span,
    pub subnet6: Option<Ipv6Net>,
    /// The reserved gateway address (default: first host address); `None` when `gateway: none`.
    pub gateway: Option<Ipv4Addr>,
    pub gateway_span: Span,
    pub mtu: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    Host,
    Router,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    pub span: Span,
    pub kind: NodeKind,
    /// Groups (templates/roles) this node was built from, in application order.
    pub groups: Vec<String>,
    /// The counter value when the node came from a `{a..b}` name, else `None`.
    pub counter: Option<i64>,
    /// Network attachments, in file order. Link interfaces are not listed here; see [`Topology::links`].
    pub interfaces: Vec<Interface>,
    /// Addresses on `lo` (host routes or prefixes), besides 127.0.0.1.
    pub loopbacks: Vec<Ipv4Net>,
    pub routes: Vec<StaticRoute>,
    /// Extra sysctls, e.g. `net.ipv4.ip_forward: "1"`. Keys are dotted `/proc/sys` paths.
    pub sysctls: BTreeMap<String, String>,
    /// Nodes that must be started before this one.
    pub depends_on: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// Dynamic routing run on this node (routers only).
    pub routing: Option<Routing>,
    /// Source NAT: masquerade traffic leaving through these attachments (network names, or the
    /// peer node's name for a point-to-point link).
    pub masquerade: Vec<String>,
}

/// Which implementation runs a routing protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoutingDaemon {
    Frr,
    Bird,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Routing {
    pub daemon: RoutingDaemon,
    pub span: Span,
    pub ospf: Option<Ospf>,
}

/// OSPFv2 on a router. Interface settings are keyed by the attachment they apply to (network
/// name, or peer node name for a link); unlisted attachments use the defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ospf {
    /// Default: the first loopback address, else the first interface address.
    pub router_id: Option<Ipv4Addr>,
    /// Area of interfaces that don't name one (dotted or integer; stored as an address).
    pub area: Ipv4Addr,
    /// Seconds.
    pub hello_interval: u32,
    /// Seconds.
    pub dead_interval: u32,
    /// Fast SPF/LSA throttling (sub-second reconvergence).
    pub fast: bool,
    /// Run BFD on every OSPF interface.
    pub bfd: bool,
    /// BFD transmit/receive interval in ms and detect multiplier.
    pub bfd_interval_ms: u32,
    pub bfd_multiplier: u32,
    pub interfaces: BTreeMap<String, OspfIface>,
    /// Also advertise static routes of this node.
    pub redistribute_static: bool,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct OspfIface {
    pub cost: Option<u32>,
    pub passive: bool,
    pub area: Option<Ipv4Addr>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interface {
    /// Interface name inside the node; `None` lets the plan choose (`eth0`, `eth1`, ...).
    pub name: Option<String>,
    pub network: String,
    pub span: Span,
    pub address: AddrSpec,
    pub address_span: Span,
    pub address6: Option<Ipv6Addr>,
    pub mtu: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "mode", content = "address")]
pub enum AddrSpec {
    /// Allocated by the plan from the network's subnet.
    Auto,
    /// Given in the file. The prefix length is always the network's.
    Static(Ipv4Addr),
    /// Obtained at run time by DHCP (the plan allocates nothing).
    Dhcp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StaticRoute {
    /// `0.0.0.0/0` for `to: default`.
    pub to: Ipv4Net,
    pub via: Ipv4Addr,
    pub metric: Option<u32>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Link {
    pub span: Span,
    pub a: LinkEnd,
    pub b: LinkEnd,
    /// Static subnet; `None` allocates from [`Pools::p2p`].
    pub subnet: Option<Ipv4Net>,
    pub mtu: Option<u32>,
    /// Impairment of traffic sent from `a` towards `b`.
    pub impair_ab: Impairment,
    /// Impairment of traffic sent from `b` towards `a`.
    pub impair_ba: Impairment,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkEnd {
    pub node: String,
    pub span: Span,
    /// Interface name; `None` lets the plan choose.
    pub name: Option<String>,
    /// Static address on this end (prefix from the link's subnet).
    pub address: Option<Ipv4Addr>,
}

/// Per-direction impairment. All fields optional; the default impairs nothing.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Impairment {
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_duration_ms")]
    pub delay: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_duration_ms")]
    pub jitter: Option<Duration>,
    /// Percent, 0..=100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reorder: Option<f64>,
    /// Bits per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<u64>,
}

impl Impairment {
    pub fn is_none(&self) -> bool {
        *self == Self::default()
    }
}

/// Durations serialize as fractional milliseconds so plans stay readable and stable.
mod opt_duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    #[allow(clippy::ref_option)] // serde `with` modules must take `&Option<T>`
    pub fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => s.serialize_f64(d.as_secs_f64() * 1000.0),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let ms: Option<f64> = Option::deserialize(d)?;
        Ok(ms.map(|ms| Duration::from_secs_f64(ms / 1000.0)))
    }
}
