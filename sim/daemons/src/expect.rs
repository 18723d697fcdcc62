//! What a converged OSPF network looks like, derived from the plan and the current faults.
//! Pure; [`crate::wait_converged`] compares it with what the routers report.
//!
//! - Two OSPF routers should be Full neighbors over a link or LAN when both interfaces run OSPF
//!   (not passive, same area), are up, and nothing blocks them. A link that is down or cut, or a
//!   stopped or paused node, forbids the adjacency (the routers must notice and drop it). A
//!   partition or one-way drop between the two nodes makes it "don't care": whether it blocks
//!   OSPF's multicast depends on how the fault is enforced.
//! - Every router should have a kernel route to each prefix that another router of its OSPF
//!   component advertises (subnets of its up OSPF interfaces, its loopbacks, and with
//!   `redistribute_static` its topology static routes), unless the prefix is connected locally.
//!   Components are formed by required adjacencies only, so expected routes are certain.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Serialize;
use topo_lab::{FaultState, LinkRef};
use topo_plan::{Attachment, NodePlan, OspfPlan, Plan};
use topo_spec::RoutingDaemon;

/// What the adjacency with one neighbor should be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "want", content = "reason", rename_all = "kebab-case")]
pub enum Want {
    /// Full (on a LAN, 2-Way between two DROthers also counts).
    Full,
    /// Either way (traffic between the nodes is filtered by a partition or drop).
    Any,
    /// Must not be Full: the reason (e.g. "the link is cut").
    Absent(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NeighborExpect {
    /// Our interface.
    pub iface: String,
    pub peer: String,
    pub router_id: Ipv4Addr,
    /// The neighbor's addresses on the shared subnet (next hops through it).
    pub peer_addrs: Vec<Ipv4Addr>,
    pub point_to_point: bool,
    pub want: Want,
    /// Both ends run BFD, so a BFD session should be up while the adjacency is.
    pub bfd: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteExpect {
    pub prefix: Ipv4Net,
    /// Routers that advertise it.
    pub from: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouterExpect {
    pub node: String,
    pub netns: String,
    pub router_id: Ipv4Addr,
    /// False for stopped or paused nodes: their daemons are not asked.
    pub checked: bool,
    pub neighbors: Vec<NeighborExpect>,
    pub routes: Vec<RouteExpect>,
    /// Prefixes of the node's own static routes: present regardless of OSPF, so their next hop
    /// is not checked.
    pub own_static: Vec<Ipv4Net>,
}

impl RouterExpect {
    /// Next hops that are acceptable for OSPF routes: addresses of neighbors that are (or may be)
    /// adjacent.
    pub fn allowed_gateways(&self) -> BTreeSet<Ipv4Addr> {
        self.neighbors
            .iter()
            .filter(|n| !matches!(n.want, Want::Absent(_)))
            .flat_map(|n| n.peer_addrs.iter().copied())
            .collect()
    }
}

fn ospf_of(n: &NodePlan) -> Option<&OspfPlan> {
    let r = n.routing.as_ref()?;
    if r.daemon != RoutingDaemon::Frr || r.configs.is_empty() {
        return None;
    }
    r.ospf.as_ref()
}

struct View<'a> {
    plan: &'a Plan,
    faults: &'a FaultState,
}

impl View<'_> {
    fn link_ref(node: &str, att: &Attachment) -> LinkRef {
        match att {
            Attachment::Link { peer_node, .. } => {
                LinkRef::P2p { a: node.to_owned(), b: peer_node.clone() }.normalized()
            }
            Attachment::Network { network, .. } => {
                LinkRef::Lan { node: node.to_owned(), network: network.clone() }
            }
        }
    }

    fn live(&self, node: &str) -> bool {
        !self.faults.nodes_stopped.contains(node) && !self.faults.nodes_paused.contains(node)
    }

    /// Carrier up on this interface of the node. A veth loses carrier when its peer goes down,
    /// so a stopped peer takes a point-to-point link down too (a LAN's bridge stays up).
    fn up(&self, node: &str, att: &Attachment) -> bool {
        let peer_stopped = match att {
            Attachment::Link { peer_node, .. } => self.faults.nodes_stopped.contains(peer_node),
            Attachment::Network { .. } => false,
        };
        !peer_stopped
            && !self.faults.nodes_stopped.contains(node)
            && !self.faults.links_down.contains(&Self::link_ref(node, att))
    }

    fn cut(&self, node: &str, att: &Attachment) -> bool {
        self.faults.links_cut.contains(&Self::link_ref(node, att))
    }

    /// Why no adjacency can exist between these two interfaces, if anything forbids it.
    fn blocked(&self, a: &str, aa: &Attachment, b: &str, ba: &Attachment) -> Option<String> {
        for n in [a, b] {
            if self.faults.nodes_stopped.contains(n) {
                return Some(format!("{n} is stopped"));
            }
            if self.faults.nodes_paused.contains(n) {
                return Some(format!("{n} is paused"));
            }
        }
        if !self.up(a, aa) || !self.up(b, ba) {
            return Some("the link is down".into());
        }
        if self.cut(a, aa) || self.cut(b, ba) {
            return Some("the link is cut".into());
        }
        None
    }

    fn dropped_between(&self, a: &str, b: &str) -> bool {
        self.faults.dropped(a, b) || self.faults.dropped(b, a)
    }

    /// Prefixes a router advertises into OSPF given its up interfaces.
    fn advertised(&self, n: &NodePlan, o: &OspfPlan) -> BTreeSet<Ipv4Net> {
        let mut out = BTreeSet::new();
        if self.faults.nodes_stopped.contains(&n.name) {
            return out;
        }
        for oi in &o.interfaces {
            if oi.iface == "lo" {
                out.extend(n.loopbacks.iter().map(Ipv4Net::trunc));
                continue;
            }
            if let Some(i) = n.iface(&oi.iface) {
                if self.up(&n.name, &i.attachment) {
                    out.extend(i.addresses.iter().map(Ipv4Net::trunc));
                }
            }
        }
        if o.redistribute_static {
            out.extend(topo_plan::daemons::static_prefixes(n));
        }
        out
    }

    /// Subnets the node reaches directly (up interfaces and loopbacks).
    fn connected(&self, n: &NodePlan) -> BTreeSet<Ipv4Net> {
        let mut out: BTreeSet<Ipv4Net> = n.loopbacks.iter().map(Ipv4Net::trunc).collect();
        for i in &n.interfaces {
            if self.up(&n.name, &i.attachment) {
                out.extend(i.addresses.iter().map(Ipv4Net::trunc));
            }
        }
        out
    }

    fn neighbors(&self, n: &NodePlan, o: &OspfPlan) -> Vec<NeighborExpect> {
        let mut out = Vec::new();
        for oi in o.interfaces.iter().filter(|oi| oi.iface != "lo" && !oi.passive) {
            let Some(i) = n.iface(&oi.iface) else { continue };
            for peer in &self.plan.nodes {
                if peer.name == n.name {
                    continue;
                }
                let Some(po) = ospf_of(peer) else { continue };
                for pi in &peer.interfaces {
                    let same_wire = match (&i.attachment, &pi.attachment) {
                        (Attachment::Link { link, peer_iface, .. }, Attachment::Link { link: l2, .. }) => {
                            link == l2 && *peer_iface == pi.name
                        }
                        (Attachment::Network { network, .. }, Attachment::Network { network: n2, .. }) => {
                            network == n2
                        }
                        _ => false,
                    };
                    if !same_wire {
                        continue;
                    }
                    let Some(poi) = po.interfaces.iter().find(|x| x.iface == pi.name) else { continue };
                    if poi.passive || poi.area != oi.area {
                        continue;
                    }
                    let want =
                        if let Some(why) = self.blocked(&n.name, &i.attachment, &peer.name, &pi.attachment) {
                            Want::Absent(why)
                        } else if self.dropped_between(&n.name, &peer.name) {
                            Want::Any
                        } else {
                            Want::Full
                        };
                    out.push(NeighborExpect {
                        iface: i.name.clone(),
                        peer: peer.name.clone(),
                        router_id: po.router_id,
                        peer_addrs: pi.addresses.iter().map(Ipv4Net::addr).collect(),
                        point_to_point: oi.point_to_point,
                        bfd: o.bfd && po.bfd && want == Want::Full,
                        want,
                    });
                }
            }
        }
        out
    }
}

/// The converged state of every OSPF router of the plan under `faults`, in plan order.
pub fn expectations(plan: &Plan, faults: &FaultState) -> Vec<RouterExpect> {
    let v = View { plan, faults };
    let routers: Vec<(&NodePlan, &OspfPlan)> =
        plan.nodes.iter().filter_map(|n| ospf_of(n).map(|o| (n, o))).collect();
    let index: BTreeMap<&str, usize> =
        routers.iter().enumerate().map(|(i, (n, _))| (n.name.as_str(), i)).collect();
    let neighbors: Vec<Vec<NeighborExpect>> = routers.iter().map(|(n, o)| v.neighbors(n, o)).collect();
    // Components over required adjacencies (union-find).
    let mut parent: Vec<usize> = (0..routers.len()).collect();
    fn find(p: &mut [usize], mut x: usize) -> usize {
        while p[x] != x {
            p[x] = p[p[x]];
            x = p[x];
        }
        x
    }
    for (i, ns) in neighbors.iter().enumerate() {
        for nb in ns.iter().filter(|nb| nb.want == Want::Full) {
            if let Some(&j) = index.get(nb.peer.as_str()) {
                let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                parent[a] = b;
            }
        }
    }
    let adv: Vec<BTreeSet<Ipv4Net>> = routers.iter().map(|(n, o)| v.advertised(n, o)).collect();
    let mut out = Vec::with_capacity(routers.len());
    for (i, ((n, o), ns)) in routers.iter().zip(neighbors).enumerate() {
        let connected = v.connected(n);
        let root = find(&mut parent, i);
        let mut routes: BTreeMap<Ipv4Net, Vec<String>> = BTreeMap::new();
        for (j, (s, _)) in routers.iter().enumerate() {
            if j == i || find(&mut parent, j) != root {
                continue;
            }
            for p in adv[j].iter().filter(|p| !connected.contains(p)) {
                routes.entry(*p).or_default().push(s.name.clone());
            }
        }
        out.push(RouterExpect {
            node: n.name.clone(),
            netns: n.netns.clone(),
            router_id: o.router_id,
            checked: v.live(&n.name),
            neighbors: ns,
            routes: routes.into_iter().map(|(prefix, from)| RouteExpect { prefix, from }).collect(),
            own_static: topo_plan::daemons::static_prefixes(n),
        });
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use topo_plan::{
        Fabric, IfacePlan, LinkEndPlan, LinkPlan, Mac, OspfIfacePlan, RoutingPlan, PLAN_VERSION,
    };
    use topo_spec::NodeKind;

    use super::*;

    fn node(name: &str, kind: NodeKind) -> NodePlan {
        NodePlan {
            name: name.into(),
            netns: format!("topo-t.{name}"),
            hostname: name.into(),
            kind,
            groups: vec![],
            labels: BTreeMap::new(),
            interfaces: vec![],
            loopbacks: vec![],
            routes: vec![],
            sysctls: BTreeMap::new(),
            depends_on: vec![],
            routing: None,
            masquerade: vec![],
        }
    }

    fn iface(name: &str, addr: &str, attachment: Attachment) -> IfacePlan {
        IfacePlan {
            name: name.into(),
            mac: Mac([2, 0, 0, 0, 0, 1]),
            mtu: 1500,
            addresses: vec![addr.parse().unwrap()],
            addresses6: vec![],
            dhcp: false,
            attachment,
        }
    }

    /// The OSPF triangle: r1, r2, r3 on p2p links 10.0.{12,13,23}.0/30, loopbacks 10.255.0.N,
    /// and a LAN 10.1.N.0/24 with one host (hN) behind each router (passive on the LAN).
    pub(crate) fn triangle(lab: &str, fast: bool, bfd: bool) -> Plan {
        let mut nodes: Vec<NodePlan> = (1..=3).map(|i| node(&format!("r{i}"), NodeKind::Router)).collect();
        let mut links = Vec::new();
        for (li, (a, b)) in [(1, 2), (1, 3), (2, 3)].into_iter().enumerate() {
            let subnet: Ipv4Net = format!("10.0.{a}{b}.0/30").parse().unwrap();
            let (ia, ib) = (format!("eth-r{b}"), format!("eth-r{a}"));
            let aa = format!("10.0.{a}{b}.1/30");
            let ba = format!("10.0.{a}{b}.2/30");
            nodes[a - 1].interfaces.push(iface(
                &ia,
                &aa,
                Attachment::Link { link: li, peer_node: format!("r{b}"), peer_iface: ib.clone() },
            ));
            nodes[b - 1].interfaces.push(iface(
                &ib,
                &ba,
                Attachment::Link { link: li, peer_node: format!("r{a}"), peer_iface: ia.clone() },
            ));
            links.push(LinkPlan {
                index: li,
                a: LinkEndPlan { node: format!("r{a}"), iface: ia, address: aa.parse().unwrap() },
                b: LinkEndPlan { node: format!("r{b}"), iface: ib, address: ba.parse().unwrap() },
                subnet,
                mtu: 1500,
                impair_ab: topo_spec::Impairment::default(),
                impair_ba: topo_spec::Impairment::default(),
            });
        }
        let mut hosts = Vec::new();
        for i in 1..=3 {
            let lan = Attachment::Network {
                network: format!("lan{i}"),
                bridge: format!("br{i}"),
                port: format!("p{i}"),
            };
            let r = &mut nodes[i - 1];
            r.interfaces.insert(0, iface("eth0", &format!("10.1.{i}.1/24"), lan.clone()));
            r.loopbacks.push(format!("10.255.0.{i}/32").parse().unwrap());
            let mut h = node(&format!("h{i}"), NodeKind::Host);
            h.interfaces.push(iface("eth0", &format!("10.1.{i}.10/24"), lan));
            h.routes.push(topo_plan::RoutePlan {
                to: "0.0.0.0/0".parse().unwrap(),
                via: format!("10.1.{i}.1").parse().unwrap(),
                dev: "eth0".into(),
                metric: None,
                origin: topo_plan::RouteOrigin::Gateway,
            });
            hosts.push(h);
        }
        for r in &mut nodes {
            let mut ifs: Vec<OspfIfacePlan> = r
                .interfaces
                .iter()
                .map(|i| OspfIfacePlan {
                    iface: i.name.clone(),
                    area: Ipv4Addr::UNSPECIFIED,
                    cost: 10,
                    passive: i.name == "eth0",
                    point_to_point: matches!(i.attachment, Attachment::Link { .. }),
                })
                .collect();
            ifs.push(OspfIfacePlan {
                iface: "lo".into(),
                area: Ipv4Addr::UNSPECIFIED,
                cost: 10,
                passive: true,
                point_to_point: false,
            });
            let o = OspfPlan {
                router_id: r.loopbacks[0].addr(),
                hello_interval: if fast { 1 } else { 10 },
                dead_interval: if fast { 3 } else { 40 },
                fast,
                bfd,
                bfd_interval_ms: 50,
                bfd_multiplier: 3,
                interfaces: ifs,
                redistribute_static: false,
            };
            r.sysctls.insert("net.ipv4.ip_forward".into(), "1".into());
            let configs = topo_plan::daemons::render_frr(r, &o);
            r.routing = Some(RoutingPlan { daemon: RoutingDaemon::Frr, ospf: Some(o), configs });
        }
        nodes.extend(hosts);
        Plan {
            version: PLAN_VERSION,
            lab: lab.into(),
            fabric: Fabric { netns: format!("topo-{lab}"), bridges: vec![] },
            start_order: (0..nodes.len()).collect(),
            nodes,
            links,
            hosts: vec![],
        }
    }

    fn prefixes(r: &RouterExpect) -> Vec<String> {
        r.routes.iter().map(|x| x.prefix.to_string()).collect()
    }

    #[test]
    fn triangle_without_faults() {
        let plan = triangle("t", true, true);
        let e = expectations(&plan, &FaultState::default());
        assert_eq!(e.iter().map(|r| r.node.as_str()).collect::<Vec<_>>(), ["r1", "r2", "r3"]);
        let r1 = &e[0];
        assert!(r1.checked);
        let nb: Vec<(&str, &str, &Want, bool)> =
            r1.neighbors.iter().map(|n| (n.iface.as_str(), n.peer.as_str(), &n.want, n.bfd)).collect();
        assert_eq!(nb, [("eth-r2", "r2", &Want::Full, true), ("eth-r3", "r3", &Want::Full, true)]);
        assert_eq!(r1.neighbors[0].peer_addrs, ["10.0.12.2".parse::<Ipv4Addr>().unwrap()]);
        assert_eq!(
            prefixes(r1),
            ["10.0.23.0/30", "10.1.2.0/24", "10.1.3.0/24", "10.255.0.2/32", "10.255.0.3/32"]
        );
        assert_eq!(r1.routes[0].from, ["r2", "r3"]);
        assert_eq!(r1.allowed_gateways().len(), 2);
    }

    #[test]
    fn down_link_forbids_the_adjacency_and_withdraws_its_subnet() {
        let plan = triangle("t", true, false);
        let mut f = FaultState::default();
        f.links_down.insert(LinkRef::P2p { a: "r2".into(), b: "r1".into() }.normalized());
        let e = expectations(&plan, &f);
        let r1 = &e[0];
        assert_eq!(r1.neighbors[0].want, Want::Absent("the link is down".into()));
        assert_eq!(r1.neighbors[1].want, Want::Full);
        // 10.0.12.0/30 is gone on both ends; everything else is still reachable through r3.
        let p = prefixes(r1);
        assert!(!p.contains(&"10.0.12.0/30".to_string()), "{p:?}");
        assert!(p.contains(&"10.255.0.2/32".to_string()), "{p:?}");
        assert_eq!(r1.allowed_gateways(), ["10.0.13.2".parse::<Ipv4Addr>().unwrap()].into());
        // r3 no longer has the link subnet either.
        assert!(!prefixes(&e[2]).contains(&"10.0.12.0/30".to_string()));
    }

    #[test]
    fn cut_link_keeps_its_subnet_advertised() {
        let plan = triangle("t", true, false);
        let mut f = FaultState::default();
        f.links_cut.insert(LinkRef::P2p { a: "r1".into(), b: "r2".into() }.normalized());
        let e = expectations(&plan, &f);
        assert_eq!(e[0].neighbors[0].want, Want::Absent("the link is cut".into()));
        assert!(prefixes(&e[2]).contains(&"10.0.12.0/30".to_string()));
    }

    #[test]
    fn stopped_router_is_unchecked_and_isolated() {
        let plan = triangle("t", true, false);
        let mut f = FaultState::default();
        f.nodes_stopped.insert("r3".into());
        let e = expectations(&plan, &f);
        assert!(!e[2].checked);
        assert!(e[2].routes.is_empty());
        let p = prefixes(&e[0]);
        assert_eq!(p, ["10.1.2.0/24", "10.255.0.2/32"]);
        assert!(matches!(e[0].neighbors[1].want, Want::Absent(_)));
    }

    #[test]
    fn partition_makes_adjacency_optional_and_its_routes_uncertain() {
        let plan = triangle("t", true, false);
        let mut f = FaultState::default();
        f.drops.insert(("r1".into(), "r2".into()));
        f.drops.insert(("r1".into(), "r3".into()));
        let e = expectations(&plan, &f);
        assert_eq!(e[0].neighbors[0].want, Want::Any);
        assert_eq!(e[0].neighbors[1].want, Want::Any);
        assert!(e[0].routes.is_empty());
        assert_eq!(prefixes(&e[1]), ["10.0.13.0/30", "10.1.3.0/24", "10.255.0.3/32"]);
    }
}
