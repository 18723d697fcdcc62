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
    /// OSPF cost of our interface (the cost of reaching the neighbor).
    pub cost: u32,
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
    /// Next hops of the shortest paths (several with equal-cost paths). `None` when they cannot
    /// be predicted (several areas, or adjacencies that faults make uncertain): then any live
    /// neighbor is accepted.
    pub via: Option<Vec<Ipv4Addr>>,
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

    /// Prefixes a router advertises into OSPF given its up interfaces, with the cost it adds
    /// (the interface cost for subnets; 0 for loopback host routes and external routes, whose
    /// ties are broken by the distance to the advertising router).
    fn advertised(&self, n: &NodePlan, o: &OspfPlan) -> BTreeMap<Ipv4Net, u64> {
        let mut out = BTreeMap::new();
        if self.faults.nodes_stopped.contains(&n.name) {
            return out;
        }
        let mut add = |p: Ipv4Net, cost: u64| {
            let e = out.entry(p.trunc()).or_insert(cost);
            *e = (*e).min(cost);
        };
        for oi in &o.interfaces {
            if oi.iface == "lo" {
                n.loopbacks.iter().for_each(|p| add(*p, 0));
                continue;
            }
            if let Some(i) = n.iface(&oi.iface) {
                if self.up(&n.name, &i.attachment) {
                    i.addresses.iter().for_each(|p| add(*p, u64::from(oi.cost)));
                }
            }
        }
        if o.redistribute_static {
            for p in topo_plan::daemons::static_prefixes(n) {
                add(p, 0);
            }
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
                        cost: oi.cost,
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
    let adv: Vec<BTreeMap<Ipv4Net, u64>> = routers.iter().map(|(n, o)| v.advertised(n, o)).collect();
    // Next hops are predictable when every adjacency is certain and there is a single area
    // (inter-area routing may prefer longer paths through the backbone).
    let areas: BTreeSet<Ipv4Addr> =
        routers.iter().flat_map(|(_, o)| o.interfaces.iter().map(|i| i.area)).collect();
    let certain = areas.len() <= 1 && neighbors.iter().flatten().all(|nb| nb.want != Want::Any);
    let mut out = Vec::with_capacity(routers.len());
    for (i, (n, o)) in routers.iter().enumerate() {
        let connected = v.connected(n);
        let root = find(&mut parent, i);
        let (dist, hops) = shortest_paths(i, &neighbors, &index);
        let mut routes: BTreeMap<Ipv4Net, (Vec<String>, u64, BTreeSet<Ipv4Addr>)> = BTreeMap::new();
        for (j, (s, _)) in routers.iter().enumerate() {
            if j == i || find(&mut parent, j) != root {
                continue;
            }
            for (p, stub) in adv[j].iter().filter(|(p, _)| !connected.contains(p)) {
                let e = routes.entry(*p).or_insert_with(|| (Vec::new(), u64::MAX, BTreeSet::new()));
                e.0.push(s.name.clone());
                let metric = dist[j].saturating_add(*stub);
                if metric < e.1 {
                    e.1 = metric;
                    e.2.clone_from(&hops[j]);
                } else if metric == e.1 {
                    e.2.extend(hops[j].iter().copied());
                }
            }
        }
        out.push(RouterExpect {
            node: n.name.clone(),
            netns: n.netns.clone(),
            router_id: o.router_id,
            checked: v.live(&n.name),
            neighbors: neighbors[i].clone(),
            routes: routes
                .into_iter()
                .map(|(prefix, (from, _, via))| RouteExpect {
                    prefix,
                    from,
                    via: certain.then(|| via.into_iter().collect()),
                })
                .collect(),
            own_static: topo_plan::daemons::static_prefixes(n),
        });
    }
    out
}

/// Dijkstra over required adjacencies from router `from` (costs are those of the outgoing
/// interfaces, as in OSPF). Returns each router's distance and the next-hop addresses of all
/// its shortest paths.
fn shortest_paths(
    from: usize,
    neighbors: &[Vec<NeighborExpect>],
    index: &BTreeMap<&str, usize>,
) -> (Vec<u64>, Vec<BTreeSet<Ipv4Addr>>) {
    let n = neighbors.len();
    let mut dist = vec![u64::MAX; n];
    let mut hops: Vec<BTreeSet<Ipv4Addr>> = vec![BTreeSet::new(); n];
    let mut done = vec![false; n];
    dist[from] = 0;
    while let Some(u) = (0..n).filter(|&x| !done[x] && dist[x] != u64::MAX).min_by_key(|&x| dist[x]) {
        done[u] = true;
        for nb in neighbors[u].iter().filter(|nb| nb.want == Want::Full) {
            let Some(&w) = index.get(nb.peer.as_str()) else { continue };
            let d = dist[u] + u64::from(nb.cost);
            let via: BTreeSet<Ipv4Addr> =
                if u == from { nb.peer_addrs.iter().copied().collect() } else { hops[u].clone() };
            if d < dist[w] {
                dist[w] = d;
                hops[w] = via;
            } else if d == dist[w] && !done[w] {
                hops[w].extend(via);
            }
        }
    }
    (dist, hops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::triangle;

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
        // Shortest paths: the far link subnet is an equal-cost pair; loopbacks go direct.
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(r1.routes[0].via, Some(vec![ip("10.0.12.2"), ip("10.0.13.2")]));
        assert_eq!(r1.routes[3].via, Some(vec![ip("10.0.12.2")]));
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
        let lo2 = r1.routes.iter().find(|r| r.prefix.to_string() == "10.255.0.2/32").unwrap();
        assert_eq!(lo2.via, Some(vec!["10.0.13.2".parse::<Ipv4Addr>().unwrap()]));
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
        // With uncertain adjacencies, next hops are not predicted.
        assert!(e[1].routes.iter().all(|r| r.via.is_none()));
    }
}

#[cfg(test)]
mod cost_tests {
    use super::*;
    use crate::testkit::triangle;

    #[test]
    fn costs_steer_the_expected_next_hop() {
        // r1-r2 costs 100 on r1's side: r1 reaches r2's loopback via r3 (10 + 10 < 100).
        let mut plan = triangle("t", true, false);
        let r1 = plan.nodes.iter_mut().find(|n| n.name == "r1").unwrap();
        let o = r1.routing.as_mut().unwrap().ospf.as_mut().unwrap();
        o.interfaces.iter_mut().find(|i| i.iface == "eth-r2").unwrap().cost = 100;
        let e = expectations(&plan, &FaultState::default());
        let lo2 = e[0].routes.iter().find(|r| r.prefix.to_string() == "10.255.0.2/32").unwrap();
        assert_eq!(lo2.via, Some(vec!["10.0.13.2".parse::<Ipv4Addr>().unwrap()]));
        // The reverse direction uses r2's own (default) cost: direct.
        let lo1 = e[1].routes.iter().find(|r| r.prefix.to_string() == "10.255.0.1/32").unwrap();
        assert_eq!(lo1.via, Some(vec!["10.0.12.1".parse::<Ipv4Addr>().unwrap()]));
    }
}
