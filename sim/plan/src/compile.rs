//! The compiler: a validated [`Topology`] in, a [`Plan`] out. See the crate docs for the rules.
//!
//! Every pass walks nodes in file order and attachments in plan order, and only ordered
//! containers are iterated, so the plan is a pure function of the topology. Lookups use hash
//! maps (never iterated). All passes are linear or `n log n` in the size of the topology.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use topo_spec::{AddrSpec, Diagnostic, NodeKind, RoutingDaemon, Span, Topology};

use crate::ipam::{self, NetCursor, P2pCursor, Reserved};
use crate::mac::MacAllocator;
use crate::types::{
    Attachment, BridgePlan, Fabric, HostEntry, IfacePlan, LinkEndPlan, LinkPlan, NodePlan, OspfIfacePlan,
    OspfPlan, Plan, RouteOrigin, RoutePlan, RoutingPlan, PLAN_VERSION,
};
use crate::{daemons, names, order};

/// MTU when neither the interface nor its network/link sets one.
pub const DEFAULT_MTU: u32 = 1500;
/// OSPF interface cost when the topology gives none.
pub const DEFAULT_OSPF_COST: u32 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    A,
    B,
}

/// One interface-to-be of a node, before it has a name.
#[derive(Debug, Clone, Copy)]
enum Att {
    /// `iface` indexes `Node::interfaces`; `net` indexes `Topology::networks`.
    Net { iface: usize, net: usize },
    /// `link` indexes `Topology::links`; `peer` is the node at the other end.
    Link { link: usize, end: End, peer: usize },
}

/// Where a link end sits: node index and attachment position in that node.
type EndPos = (usize, usize);

struct Compiler<'t> {
    topo: &'t Topology,
    node_idx: HashMap<&'t str, usize>,
    diags: Vec<Diagnostic>,
    /// Per node, its attachments in plan order.
    atts: Vec<Vec<Att>>,
    /// Per node and attachment, the node-side interface name.
    ifnames: Vec<Vec<String>>,
    /// Per link, both ends (None when the link names an unknown node).
    link_pos: Vec<Option<[EndPos; 2]>>,
    /// Per network, the node and attachment that hold its gateway address.
    gw_holder: Vec<Option<EndPos>>,
    /// Per node and attachment, the IPv4 address (None: DHCP, or allocation failed).
    addr4: Vec<Vec<Option<Ipv4Net>>>,
    addr6: Vec<Vec<Option<Ipv6Net>>>,
    link_subnet: Vec<Option<Ipv4Net>>,
    /// Every IPv4 address taken so far, lab-wide.
    used4: HashSet<u32>,
}

pub fn compile(topo: &Topology) -> Result<Plan, Vec<Diagnostic>> {
    let mut node_idx: HashMap<&str, usize> = HashMap::with_capacity(topo.nodes.len());
    for (i, n) in topo.nodes.iter().enumerate() {
        node_idx.entry(n.name.as_str()).or_insert(i);
    }
    let mut c = Compiler {
        topo,
        node_idx,
        diags: Vec::new(),
        atts: Vec::new(),
        ifnames: Vec::new(),
        link_pos: Vec::new(),
        gw_holder: vec![None; topo.networks.len()],
        addr4: Vec::new(),
        addr6: Vec::new(),
        link_subnet: vec![None; topo.links.len()],
        used4: HashSet::new(),
    };
    c.attachments();
    c.names();
    c.ipam4();
    c.link_addresses();
    c.ipam6();
    let plan = c.build();
    if c.diags.is_empty() {
        Ok(plan)
    } else {
        Err(c.diags)
    }
}

fn net_of(addr: Ipv4Addr, prefix: u8) -> Ipv4Net {
    // Prefix lengths come from parsed Ipv4Nets, so they are ≤ 32.
    Ipv4Net::new(addr, prefix).unwrap_or_else(|_| Ipv4Net::from(addr))
}

fn net6_of(addr: Ipv6Addr, prefix: u8) -> Ipv6Net {
    Ipv6Net::new(addr, prefix).unwrap_or_else(|_| Ipv6Net::from(addr))
}

impl Compiler<'_> {
    fn attachments(&mut self) {
        let topo = self.topo;
        let mut net_idx: HashMap<&str, usize> = HashMap::with_capacity(topo.networks.len());
        for (i, n) in topo.networks.iter().enumerate() {
            net_idx.entry(n.name.as_str()).or_insert(i);
        }
        let node_idx = &self.node_idx;
        self.atts = Vec::with_capacity(topo.nodes.len());
        for node in &topo.nodes {
            let mut atts = Vec::with_capacity(node.interfaces.len());
            for (i, iface) in node.interfaces.iter().enumerate() {
                match net_idx.get(iface.network.as_str()) {
                    Some(&net) => atts.push(Att::Net { iface: i, net }),
                    None => self.diags.push(
                        Diagnostic::new(
                            "topo::unknown-reference",
                            iface.span,
                            format!("node {} attaches to unknown network {:?}", node.name, iface.network),
                        )
                        .label("no such network")
                        .help("declare the network under `networks:` or fix the name"),
                    ),
                }
            }
            self.atts.push(atts);
        }
        self.link_pos = Vec::with_capacity(topo.links.len());
        for (li, link) in topo.links.iter().enumerate() {
            let a = node_idx.get(link.a.node.as_str()).copied();
            let b = node_idx.get(link.b.node.as_str()).copied();
            for (end, idx) in [(&link.a, a), (&link.b, b)] {
                if idx.is_none() {
                    self.diags.push(
                        Diagnostic::new(
                            "topo::unknown-reference",
                            end.span,
                            format!("link end names unknown node {:?}", end.node),
                        )
                        .label("no such node")
                        .help("declare the node under `nodes:` or fix the name"),
                    );
                }
            }
            let (Some(a), Some(b)) = (a, b) else {
                self.link_pos.push(None);
                continue;
            };
            let pa = self.atts[a].len();
            self.atts[a].push(Att::Link { link: li, end: End::A, peer: b });
            let pb = self.atts[b].len();
            self.atts[b].push(Att::Link { link: li, end: End::B, peer: a });
            self.link_pos.push(Some([(a, pa), (b, pb)]));
        }
    }
}

/// The user's name for an attachment, and the span to blame for it.
fn given_name(topo: &Topology, node: usize, att: Att) -> (Option<&str>, Span) {
    match att {
        Att::Net { iface, .. } => {
            let i = &topo.nodes[node].interfaces[iface];
            (i.name.as_deref(), i.span)
        }
        Att::Link { link, end, .. } => {
            let l = &topo.links[link];
            let e = if end == End::A { &l.a } else { &l.b };
            (e.name.as_deref(), e.span)
        }
    }
}

impl Compiler<'_> {
    fn names(&mut self) {
        let mut all = Vec::with_capacity(self.atts.len());
        for (ni, atts) in self.atts.iter().enumerate() {
            let given: Vec<(Option<&str>, Span)> =
                atts.iter().map(|&a| given_name(self.topo, ni, a)).collect();
            let names = names::interface_names(&given.iter().map(|g| g.0).collect::<Vec<_>>());
            let mut seen: BTreeMap<&str, Span> = BTreeMap::new();
            for (name, (_, span)) in names.iter().zip(&given) {
                let node = &self.topo.nodes[ni].name;
                if name == "lo" || name.len() > names::IFNAME_MAX || name.is_empty() {
                    self.diags.push(
                        Diagnostic::new(
                            "topo::interface-name",
                            *span,
                            format!("interface name {name:?} on node {node} cannot be used"),
                        )
                        .label("invalid interface name")
                        .help("use 1 to 15 characters and not `lo`, or leave the name out"),
                    );
                }
                if let Some(first) = seen.insert(name, *span) {
                    self.diags.push(
                        Diagnostic::new(
                            "topo::duplicate-interface",
                            *span,
                            format!("node {node} has two interfaces named {name:?}"),
                        )
                        .label("second interface with this name")
                        .related(first, "first one")
                        .help("give each interface of a node its own name"),
                    );
                }
            }
            all.push(names);
        }
        self.ifnames = all;
    }

    /// IPv4 on networks: statics, gateway holders, then auto allocation in file order.
    fn ipam4(&mut self) {
        let topo = self.topo;
        let mut used: HashSet<u32> = HashSet::new();
        for net in &topo.networks {
            if let Some(gw) = net.gateway {
                used.insert(gw.into());
            }
        }
        for node in &topo.nodes {
            for iface in &node.interfaces {
                if let AddrSpec::Static(a) = iface.address {
                    used.insert(a.into());
                }
            }
            for lo in &node.loopbacks {
                used.insert(lo.addr().into());
            }
        }
        for link in &topo.links {
            for a in [link.a.address, link.b.address].into_iter().flatten() {
                used.insert(a.into());
            }
        }

        // Gateway holders: a node that takes the gateway address statically, else the first
        // router (file order) attached with `auto`.
        for (ni, atts) in self.atts.iter().enumerate() {
            for (pos, att) in atts.iter().enumerate() {
                if let Att::Net { iface, net } = *att {
                    let addr = topo.nodes[ni].interfaces[iface].address;
                    if let (Some(gw), AddrSpec::Static(a)) = (topo.networks[net].gateway, addr) {
                        if a == gw && self.gw_holder[net].is_none() {
                            self.gw_holder[net] = Some((ni, pos));
                        }
                    }
                }
            }
        }
        for (ni, atts) in self.atts.iter().enumerate() {
            if topo.nodes[ni].kind != NodeKind::Router {
                continue;
            }
            for (pos, att) in atts.iter().enumerate() {
                if let Att::Net { iface, net } = *att {
                    if topo.networks[net].gateway.is_some()
                        && self.gw_holder[net].is_none()
                        && topo.nodes[ni].interfaces[iface].address == AddrSpec::Auto
                    {
                        self.gw_holder[net] = Some((ni, pos));
                    }
                }
            }
        }

        let mut cursors: Vec<NetCursor> = topo.networks.iter().map(|n| NetCursor::new(n.subnet)).collect();
        // Per network: the first interface that found the pool empty, and how many did.
        let mut exhausted: Vec<Option<(Span, usize)>> = vec![None; topo.networks.len()];
        let mut addr4 = Vec::with_capacity(self.atts.len());
        for (ni, atts) in self.atts.iter().enumerate() {
            let node = &topo.nodes[ni];
            let mut out = Vec::with_capacity(atts.len());
            for (pos, att) in atts.iter().enumerate() {
                let Att::Net { iface, net } = *att else {
                    out.push(None); // links: filled in by link_addresses()
                    continue;
                };
                let n = &topo.networks[net];
                let prefix = n.subnet.prefix_len();
                let addr = match node.interfaces[iface].address {
                    AddrSpec::Static(a) => Some(net_of(a, prefix)),
                    AddrSpec::Dhcp => None,
                    AddrSpec::Auto if self.gw_holder[net] == Some((ni, pos)) => {
                        n.gateway.map(|g| net_of(g, prefix))
                    }
                    AddrSpec::Auto => {
                        if let Some(a) = cursors[net].next_free(&used) {
                            used.insert(a.into());
                            Some(net_of(a, prefix))
                        } else {
                            let e = exhausted[net].get_or_insert((node.interfaces[iface].span, 0));
                            e.1 += 1;
                            None
                        }
                    }
                };
                out.push(addr);
            }
            addr4.push(out);
        }
        self.addr4 = addr4;

        for (net, e) in exhausted.iter().enumerate() {
            let Some((span, count)) = *e else { continue };
            let n = &topo.networks[net];
            let more = if count > 1 { format!(" (and {} more)", count - 1) } else { String::new() };
            self.diags.push(
                Diagnostic::new(
                    "topo::pool-exhausted",
                    span,
                    format!("network {} has no free address left for this interface{more}", n.name),
                )
                .label("no address left")
                .related(n.subnet_span, {
                    let gw = if n.gateway.is_some() { ", one of them the reserved gateway" } else { "" };
                    format!("{} has {} usable addresses{gw}", n.subnet, ipam::host_count(n.subnet))
                })
                .help(format!(
                    "use a bigger subnet for network {} ({count} more {} needed), or fewer static addresses",
                    n.name,
                    if count == 1 { "address" } else { "addresses" }
                )),
            );
        }
        self.used4 = used;
    }
}

impl Compiler<'_> {
    /// Link subnets (static, derived from a static end, or the next free block of the p2p pool)
    /// and end addresses.
    fn link_addresses(&mut self) {
        let topo = self.topo;
        let p = topo.pools.p2p_prefix;
        for (li, link) in topo.links.iter().enumerate() {
            self.link_subnet[li] = match (link.subnet, link.a.address.or(link.b.address)) {
                (Some(s), _) => Some(s.trunc()),
                // A static end without a subnet: the link lives in the p2p-sized block around it.
                (None, Some(a)) => Some(net_of(a, p).trunc()),
                (None, None) => None,
            };
            let Some(sub) = self.link_subnet[li] else { continue };
            let (first, last) = ipam::host_range(sub);
            for end in [&link.a, &link.b] {
                let Some(a) = end.address else { continue };
                if !(first..=last).contains(&u32::from(a)) {
                    let help = if link.subnet.is_some() {
                        format!("pick a host address inside {sub}")
                    } else {
                        format!(
                            "static ends of a link without `subnet` must share one /{p} and be host addresses \
                             of it; or give the link a `subnet`"
                        )
                    };
                    self.diags.push(
                        Diagnostic::new(
                            "topo::address-outside-subnet",
                            end.span,
                            format!("link address {a} is not a usable host address of the link subnet {sub}"),
                        )
                        .label("outside the link subnet")
                        .help(help),
                    );
                }
            }
        }

        let reserved = Reserved::new(
            self.link_subnet.iter().flatten().copied().chain(topo.networks.iter().map(|n| n.subnet)),
        );
        let mut cursor = P2pCursor::new(topo.pools.p2p, p);
        let mut exhausted: Option<(Span, usize)> = None;
        for li in 0..topo.links.len() {
            if self.link_subnet[li].is_some() || self.link_pos[li].is_none() {
                continue;
            }
            match cursor.next_free(&reserved, &self.used4) {
                Some(s) => self.link_subnet[li] = Some(s),
                None => exhausted.get_or_insert((topo.links[li].span, 0)).1 += 1,
            }
        }
        if let Some((span, count)) = exhausted {
            let pool = topo.pools.p2p;
            let more = if count > 1 { format!(" (and {} more links)", count - 1) } else { String::new() };
            self.diags.push(
                Diagnostic::new(
                    "topo::p2p-pool-exhausted",
                    span,
                    format!("the point-to-point pool {pool} has no free /{p} left for this link{more}"),
                )
                .label("no link subnet left")
                .related(
                    topo.pools.p2p_span,
                    format!("{pool} holds {} /{p} subnets", P2pCursor::capacity(pool, p)),
                )
                .help(format!(
                    "enlarge `pools.p2p` ({count} more /{p} {} needed), or give links a static `subnet`",
                    if count == 1 { "subnet" } else { "subnets" }
                )),
            );
        }

        for (li, link) in topo.links.iter().enumerate() {
            let (Some(sub), Some(pos)) = (self.link_subnet[li], self.link_pos[li]) else { continue };
            for (k, end) in [&link.a, &link.b].into_iter().enumerate() {
                let addr = end.address.or_else(|| {
                    let (first, last) = ipam::host_range(sub);
                    let a = (first..=last).find(|a| !self.used4.contains(a))?;
                    self.used4.insert(a);
                    Some(Ipv4Addr::from(a))
                });
                match addr {
                    Some(a) => self.addr4[pos[k].0][pos[k].1] = Some(net_of(a, sub.prefix_len())),
                    None => self.diags.push(
                        Diagnostic::new(
                            "topo::pool-exhausted",
                            end.span,
                            format!("link subnet {sub} has no free address for this end"),
                        )
                        .label("no address left")
                        .help("give the link a bigger `subnet` (a /31 or /30 holds two ends)"),
                    ),
                }
            }
        }
    }

    /// IPv6 on networks with `subnet6`: static `address6` first; otherwise the address with the
    /// same host offset as the interface's IPv4 address (10.0.0.5 -> <subnet6>::5), else the next
    /// free offset counting from 1. DHCP interfaces get no automatic IPv6 address.
    fn ipam6(&mut self) {
        let topo = self.topo;
        let mut used6: HashSet<u128> = HashSet::new();
        for node in &topo.nodes {
            for iface in &node.interfaces {
                if let Some(a) = iface.address6 {
                    used6.insert(a.into());
                }
            }
        }
        let mut next: Vec<u128> = vec![1; topo.networks.len()];
        let mut exhausted = vec![false; topo.networks.len()];
        let mut addr6 = Vec::with_capacity(self.atts.len());
        for (ni, atts) in self.atts.iter().enumerate() {
            let node = &topo.nodes[ni];
            let mut out = Vec::with_capacity(atts.len());
            for (pos, att) in atts.iter().enumerate() {
                let Att::Net { iface, net } = *att else {
                    out.push(None);
                    continue;
                };
                let i = &node.interfaces[iface];
                let n = &topo.networks[net];
                let Some(sub6) = n.subnet6 else {
                    if i.address6.is_some() {
                        self.diags.push(
                            Diagnostic::new(
                                "topo::no-subnet6",
                                i.span,
                                format!(
                                    "interface has an IPv6 address but network {} has no `subnet6`",
                                    n.name
                                ),
                            )
                            .label("IPv6 address without an IPv6 subnet")
                            .help(format!("add `subnet6` to network {}", n.name)),
                        );
                    }
                    out.push(None);
                    continue;
                };
                let addr = if let Some(a) = i.address6 {
                    Some(a)
                } else if i.address == AddrSpec::Dhcp {
                    None
                } else {
                    let mirrored = self.addr4[ni][pos].and_then(|v4| {
                        let off = u32::from(v4.addr()).checked_sub(u32::from(n.subnet.network()))?;
                        ipam::v6_at(sub6, u128::from(off))
                    });
                    match mirrored.filter(|a| !used6.contains(&u128::from(*a))) {
                        Some(a) => Some(a),
                        None => loop {
                            match ipam::v6_at(sub6, next[net]) {
                                None => {
                                    if !std::mem::replace(&mut exhausted[net], true) {
                                        self.diags.push(
                                            Diagnostic::new(
                                                "topo::pool-exhausted",
                                                i.span,
                                                format!("network {} has no free IPv6 address left", n.name),
                                            )
                                            .label("no IPv6 address left")
                                            .help(format!("use a bigger `subnet6` than {sub6}")),
                                        );
                                    }
                                    break None;
                                }
                                Some(c) => {
                                    next[net] += 1;
                                    if !used6.contains(&u128::from(c)) {
                                        break Some(c);
                                    }
                                }
                            }
                        },
                    }
                };
                if let Some(a) = addr {
                    used6.insert(a.into());
                }
                out.push(addr.map(|a| net6_of(a, sub6.prefix_len())));
            }
            addr6.push(out);
        }
        self.addr6 = addr6;
    }
}

impl Compiler<'_> {
    fn build(&mut self) -> Plan {
        let topo = self.topo;
        let lab = topo.name.as_str();
        let bridge_names: Vec<String> =
            topo.networks.iter().enumerate().map(|(i, n)| names::bridge_ifname(&n.name, i)).collect();
        let mut macs = MacAllocator::default();
        let mut nodes = Vec::with_capacity(topo.nodes.len());
        for (ni, node) in topo.nodes.iter().enumerate() {
            let mut interfaces = Vec::with_capacity(self.atts[ni].len());
            for (pos, att) in self.atts[ni].iter().enumerate() {
                let name = self.ifnames[ni][pos].clone();
                let mac = macs.allocate(lab, &node.name, &name);
                let (mtu, dhcp, attachment) = match *att {
                    Att::Net { iface, net } => {
                        let i = &node.interfaces[iface];
                        let n = &topo.networks[net];
                        let attachment = Attachment::Network {
                            network: n.name.clone(),
                            bridge: bridge_names[net].clone(),
                            port: names::fabric_port(ni, pos),
                        };
                        (i.mtu.or(n.mtu).unwrap_or(DEFAULT_MTU), i.address == AddrSpec::Dhcp, attachment)
                    }
                    Att::Link { link, end, peer } => {
                        let peer_pos =
                            self.link_pos[link].map_or(0, |p| if end == End::A { p[1].1 } else { p[0].1 });
                        let attachment = Attachment::Link {
                            link,
                            peer_node: topo.nodes[peer].name.clone(),
                            peer_iface: self.ifnames[peer][peer_pos].clone(),
                        };
                        (topo.links[link].mtu.unwrap_or(DEFAULT_MTU), false, attachment)
                    }
                };
                interfaces.push(IfacePlan {
                    name,
                    mac,
                    mtu,
                    addresses: self.addr4[ni][pos].into_iter().collect(),
                    addresses6: self.addr6[ni][pos].into_iter().collect(),
                    dhcp,
                    attachment,
                });
            }
            let routes = self.routes(ni, &interfaces);
            let sysctls = sysctls(node, &interfaces);
            let masquerade = self.masquerade(ni, &interfaces);
            let mut plan = NodePlan {
                name: node.name.clone(),
                netns: names::node_netns(lab, &node.name),
                hostname: node.name.clone(),
                kind: node.kind,
                groups: node.groups.clone(),
                labels: node.labels.clone(),
                interfaces,
                loopbacks: node.loopbacks.clone(),
                routes,
                sysctls,
                depends_on: node.depends_on.clone(),
                routing: None,
                masquerade,
            };
            plan.routing = self.routing(ni, &plan);
            nodes.push(plan);
        }
        self.check_duplicate_addresses(&nodes);

        let bridges = topo
            .networks
            .iter()
            .enumerate()
            .map(|(i, n)| BridgePlan {
                network: n.name.clone(),
                ifname: bridge_names[i].clone(),
                mtu: n.mtu.unwrap_or(DEFAULT_MTU),
                subnet: n.subnet,
                subnet6: n.subnet6,
                gateway: n.gateway,
                gateway_node: self.gw_holder[i].map(|(ni, _)| topo.nodes[ni].name.clone()),
            })
            .collect();

        let mut links = Vec::with_capacity(topo.links.len());
        for (li, link) in topo.links.iter().enumerate() {
            let (Some(subnet), Some([(a, pa), (b, pb)])) = (self.link_subnet[li], self.link_pos[li]) else {
                continue;
            };
            let (Some(addr_a), Some(addr_b)) = (self.addr4[a][pa], self.addr4[b][pb]) else { continue };
            links.push(LinkPlan {
                index: li,
                a: LinkEndPlan {
                    node: topo.nodes[a].name.clone(),
                    iface: self.ifnames[a][pa].clone(),
                    address: addr_a,
                },
                b: LinkEndPlan {
                    node: topo.nodes[b].name.clone(),
                    iface: self.ifnames[b][pb].clone(),
                    address: addr_b,
                },
                subnet,
                mtu: link.mtu.unwrap_or(DEFAULT_MTU),
                impair_ab: link.impair_ab,
                impair_ba: link.impair_ba,
            });
        }

        let mut hosts: Vec<HostEntry> = nodes
            .iter()
            .filter_map(|n| n.primary_address().map(|address| HostEntry { name: n.name.clone(), address }))
            .collect();
        hosts.sort_by(|x, y| x.name.cmp(&y.name));

        let start_order = self.start_order();

        Plan {
            version: PLAN_VERSION,
            lab: topo.name.clone(),
            fabric: Fabric { netns: names::fabric_netns(lab), bridges },
            nodes,
            links,
            hosts,
            start_order,
        }
    }

    /// Static routes resolved to their outgoing interface, then the gateway default route for
    /// hosts without a default route of their own.
    fn routes(&mut self, ni: usize, ifaces: &[IfacePlan]) -> Vec<RoutePlan> {
        let topo = self.topo;
        let node = &topo.nodes[ni];
        let mut out = Vec::with_capacity(node.routes.len() + 1);
        for r in &node.routes {
            // The kernel already has this prefix as a connected route with metric 0; adding it
            // again without a metric fails with EEXIST at `topo up`, so say it now.
            if r.metric.is_none()
                && ifaces.iter().any(|i| i.addresses.iter().any(|a| a.trunc() == r.to.trunc()))
            {
                self.diags.push(
                    Diagnostic::new(
                        "topo::route-to-connected",
                        r.span,
                        format!("route to {} duplicates the connected route of node {}", r.to, node.name),
                    )
                    .label("this subnet is directly connected")
                    .help("drop the route (connected subnets are routed already), or give it a `metric`"),
                );
                continue;
            }
            if ifaces.iter().any(|i| i.addresses.iter().any(|a| a.addr() == r.via)) {
                self.diags.push(
                    Diagnostic::new(
                        "topo::route-via-self",
                        r.span,
                        format!(
                            "route to {} goes via {}, an address of node {} itself",
                            r.to, r.via, node.name
                        ),
                    )
                    .label("next hop is this node")
                    .help("`via` must be the address of a neighbour (e.g. the router on that subnet)"),
                );
                continue;
            }
            if let Some(i) = ifaces.iter().find(|i| i.addresses.iter().any(|a| a.contains(&r.via))) {
                out.push(RoutePlan {
                    to: r.to.trunc(),
                    via: r.via,
                    dev: i.name.clone(),
                    metric: r.metric,
                    origin: RouteOrigin::Static,
                });
                continue;
            }
            let connected: Vec<String> =
                ifaces.iter().flat_map(|i| i.addresses.iter().map(|a| a.trunc().to_string())).collect();
            let help = if connected.is_empty() {
                format!("node {} has no IPv4 subnet to reach a next hop through", node.name)
            } else {
                format!(
                    "`via` must lie in a subnet of one of {}'s interfaces: {}",
                    node.name,
                    connected.join(", ")
                )
            };
            self.diags.push(
                Diagnostic::new(
                    "topo::unreachable-gateway",
                    r.span,
                    format!(
                        "next hop {} of the route to {} is not on any subnet of node {}",
                        r.via, r.to, node.name
                    ),
                )
                .label("next hop not directly connected")
                .help(help),
            );
        }
        let has_default = node.routes.iter().any(|r| r.to.prefix_len() == 0);
        if node.kind == NodeKind::Host && !has_default {
            for (pos, att) in self.atts[ni].iter().enumerate() {
                let Att::Net { net, .. } = *att else { continue };
                let (Some((holder, _)), Some(gw)) = (self.gw_holder[net], topo.networks[net].gateway) else {
                    continue;
                };
                if holder == ni || self.addr4[ni][pos].is_none() {
                    continue;
                }
                out.push(RoutePlan {
                    to: Ipv4Net::default(),
                    via: gw,
                    dev: ifaces[pos].name.clone(),
                    metric: None,
                    origin: RouteOrigin::Gateway,
                });
                break;
            }
        }
        out
    }

    fn masquerade(&mut self, ni: usize, ifaces: &[IfacePlan]) -> Vec<String> {
        let topo = self.topo;
        let node = &topo.nodes[ni];
        let mut out: Vec<String> = Vec::new();
        for target in &node.masquerade {
            let mut found = false;
            for (pos, att) in self.atts[ni].iter().enumerate() {
                let key = attachment_key(topo, *att);
                if key == target.as_str() {
                    found = true;
                    if !out.contains(&ifaces[pos].name) {
                        out.push(ifaces[pos].name.clone());
                    }
                }
            }
            if !found {
                self.diags.push(
                    Diagnostic::new(
                        "topo::unknown-attachment",
                        node.span,
                        format!(
                            "node {} masquerades through {target:?}, which is neither a network it is attached to \
                             nor a node it has a link to",
                            node.name
                        ),
                    )
                    .label("in this node")
                    .help("name one of the node's networks, or the peer node of one of its links"),
                );
            }
        }
        out
    }

    fn routing(&mut self, ni: usize, plan: &NodePlan) -> Option<RoutingPlan> {
        let routing = self.topo.nodes[ni].routing.as_ref()?;
        let ospf = routing.ospf.as_ref().and_then(|o| self.ospf(ni, plan, o, routing.span));
        let configs = match (routing.daemon, &ospf) {
            (RoutingDaemon::Frr, Some(o)) => daemons::render_frr(plan, o),
            // BIRD configs are not rendered yet; the kernel backend refuses to start what it
            // has no config for.
            _ => BTreeMap::new(),
        };
        Some(RoutingPlan { daemon: routing.daemon, ospf, configs })
    }

    fn ospf(&mut self, ni: usize, plan: &NodePlan, o: &topo_spec::Ospf, span: Span) -> Option<OspfPlan> {
        let topo = self.topo;
        let node = &topo.nodes[ni];
        let Some(router_id) = o
            .router_id
            .or_else(|| node.loopbacks.first().map(Ipv4Net::addr))
            .or_else(|| plan.interfaces.iter().flat_map(|i| i.addresses.iter()).next().map(Ipv4Net::addr))
        else {
            self.diags.push(
                Diagnostic::new(
                    "topo::no-router-id",
                    span,
                    format!("OSPF on node {} needs a router id, but the node has no IPv4 address", node.name),
                )
                .label("no router id")
                .help("set `router_id`, or give the node a loopback or interface address"),
            );
            return None;
        };
        let mut keys: BTreeSet<&str> = BTreeSet::new();
        let mut interfaces = Vec::with_capacity(plan.interfaces.len() + 1);
        for (pos, att) in self.atts[ni].iter().enumerate() {
            let key = attachment_key(topo, *att);
            keys.insert(key);
            let s = o.interfaces.get(key);
            interfaces.push(OspfIfacePlan {
                iface: plan.interfaces[pos].name.clone(),
                area: s.and_then(|s| s.area).unwrap_or(o.area),
                cost: s.and_then(|s| s.cost).unwrap_or(DEFAULT_OSPF_COST),
                passive: s.is_some_and(|s| s.passive),
                point_to_point: matches!(att, Att::Link { .. }),
            });
        }
        let lo = o.interfaces.get("lo");
        interfaces.push(OspfIfacePlan {
            iface: "lo".into(),
            area: lo.and_then(|s| s.area).unwrap_or(o.area),
            cost: lo.and_then(|s| s.cost).unwrap_or(DEFAULT_OSPF_COST),
            passive: true,
            point_to_point: false,
        });
        for (key, s) in &o.interfaces {
            if key != "lo" && !keys.contains(key.as_str()) {
                self.diags.push(
                    Diagnostic::new(
                        "topo::unknown-attachment",
                        s.span,
                        format!(
                            "OSPF settings for {key:?}, but node {} has no network or link peer of that name",
                            node.name
                        ),
                    )
                    .label("not an attachment of this node")
                    .help("key OSPF interface settings by network name, link peer node name, or `lo`"),
                );
            }
        }
        Some(OspfPlan {
            router_id,
            hello_interval: o.hello_interval,
            dead_interval: o.dead_interval,
            fast: o.fast,
            bfd: o.bfd,
            bfd_interval_ms: o.bfd_interval_ms,
            bfd_multiplier: o.bfd_multiplier,
            interfaces,
            redistribute_static: o.redistribute_static,
        })
    }

    /// Safety net behind the validator: no IPv4 address on two interfaces of the lab.
    fn check_duplicate_addresses(&mut self, nodes: &[NodePlan]) {
        let mut seen: HashMap<Ipv4Addr, (usize, usize)> = HashMap::new();
        for (ni, n) in nodes.iter().enumerate() {
            for (pos, i) in n.interfaces.iter().enumerate() {
                for a in &i.addresses {
                    if let Some(&(fni, fpos)) = seen.get(&a.addr()) {
                        let (_, span) = given_name(self.topo, ni, self.atts[ni][pos]);
                        let (_, first) = given_name(self.topo, fni, self.atts[fni][fpos]);
                        self.diags.push(
                            Diagnostic::new(
                                "topo::duplicate-address",
                                span,
                                format!(
                                    "address {} is used twice (also on {}/{})",
                                    a.addr(),
                                    nodes[fni].name,
                                    nodes[fni].interfaces[fpos].name
                                ),
                            )
                            .label("second use")
                            .related(first, "first use")
                            .help("give every interface its own address"),
                        );
                    } else {
                        seen.insert(a.addr(), (ni, pos));
                    }
                }
            }
        }
    }

    fn start_order(&mut self) -> Vec<usize> {
        let topo = self.topo;
        let deps: Vec<Vec<usize>> = topo
            .nodes
            .iter()
            .map(|n| n.depends_on.iter().filter_map(|d| self.node_idx.get(d.as_str()).copied()).collect())
            .collect();
        let (order, stuck) = order::start_order(&deps);
        if let Some(&first) = stuck.first() {
            let names: Vec<&str> = stuck.iter().take(5).map(|&i| topo.nodes[i].name.as_str()).collect();
            let more = if stuck.len() > 5 { ", ..." } else { "" };
            self.diags.push(
                Diagnostic::new(
                    "topo::dependency-cycle",
                    topo.nodes[first].span,
                    format!("`depends_on` forms a cycle among: {}{more}", names.join(", ")),
                )
                .label("part of a dependency cycle")
                .help("remove one of the `depends_on` entries in the cycle"),
            );
        }
        order
    }
}

/// The name an attachment is known by in `masquerade` and OSPF settings: the network's name,
/// or the peer node's name for a link.
fn attachment_key(topo: &Topology, att: Att) -> &str {
    match att {
        Att::Net { net, .. } => &topo.networks[net].name,
        Att::Link { peer, .. } => &topo.nodes[peer].name,
    }
}

/// The plan's sysctls for a node, then the user's (which win).
///
/// - Hosts: `net.ipv4.ip_forward=0`, whatever the machine forwards.
/// - Routers: `net.ipv4.ip_forward=1`, and reverse-path filtering off
///   (`net.ipv4.conf.{all,default}.rp_filter=0`): the kernel applies max(all, interface), new
///   namespaces inherit the host's value (often strict), and strict mode drops legitimately
///   asymmetric traffic (ECMP, rerouting after a fault). The backend should set `default` before
///   it creates interfaces so they inherit it. No ICMP redirects
///   (`net.ipv4.conf.{all,default}.send_redirects=0`, OR-ed like rp_filter): a host caches a
///   redirect for minutes, so forwarding would depend on past traffic and survive faults
///   (found by the differential check). ICMP errors (time exceeded, unreachable) come from the
///   interface the offending packet arrived on (`net.ipv4.icmp_errors_use_inbound_ifaddr=1`),
///   so a traced path names each router by its ingress address whatever the route back is —
///   what operators expect from traceroute, and what the model reports.
/// - No IPv6 address on the node: `net.ipv6.conf.{all,default}.disable_ipv6=1` (no link-local
///   addresses, no DAD, no router solicitations: faster bring-up, quieter captures).
/// - With IPv6: `net.ipv6.conf.{all,default}.accept_dad=0` (addresses usable at once; the plan
///   guarantees uniqueness), and `net.ipv6.conf.all.forwarding=1` on routers.
fn sysctls(node: &topo_spec::Node, ifaces: &[IfacePlan]) -> BTreeMap<String, String> {
    let mut s = BTreeMap::new();
    let mut set = |k: &str, v: &str| {
        s.insert(k.to_string(), v.to_string());
    };
    let router = node.kind == NodeKind::Router;
    if router {
        set("net.ipv4.ip_forward", "1");
        set("net.ipv4.conf.all.rp_filter", "0");
        set("net.ipv4.conf.default.rp_filter", "0");
        set("net.ipv4.conf.all.send_redirects", "0");
        set("net.ipv4.conf.default.send_redirects", "0");
        set("net.ipv4.icmp_errors_use_inbound_ifaddr", "1");
    } else {
        // Said explicitly: new namespaces inherit the machine's IPv4 settings, so on a machine
        // that forwards (most container hosts) a host would silently route (found by the
        // differential check, tests/differential.rs).
        set("net.ipv4.ip_forward", "0");
    }
    if ifaces.iter().any(|i| !i.addresses6.is_empty()) {
        set("net.ipv6.conf.all.accept_dad", "0");
        set("net.ipv6.conf.default.accept_dad", "0");
        if router {
            set("net.ipv6.conf.all.forwarding", "1");
        }
    } else {
        set("net.ipv6.conf.all.disable_ipv6", "1");
        set("net.ipv6.conf.default.disable_ipv6", "1");
    }
    for (k, v) in &node.sysctls {
        s.insert(k.clone(), v.clone());
    }
    s
}
