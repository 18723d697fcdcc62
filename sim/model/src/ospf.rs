//! OSPF as the model sees it: adjacencies from the link-layer state and the faults, shortest
//! paths from every router, and the routes each router's daemon would install.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use topo_plan::{OspfIfacePlan, OspfPlan, Plan, RouteOrigin};

use crate::fib::{FibRoute, Origin};
use crate::net::{Net, SegKind};

/// Metric FRR's zebra gives the OSPF routes it installs in the kernel.
pub const OSPF_KERNEL_METRIC: u32 = 20;

#[derive(Debug, Clone, Copy)]
struct Edge {
    to: usize,
    cost: u64,
    /// Next-hop address when `to` is a router.
    nh: Option<Ipv4Addr>,
    /// Outgoing interface when the edge leaves a router.
    dev: Option<usize>,
}

/// First hop of a shortest path: (next-hop address, outgoing interface). The address is `None`
/// only on a LAN vertex the source is attached to.
type FirstHop = (Option<Ipv4Addr>, usize);

fn ospf_of(plan: &Plan, n: usize) -> Option<&OspfPlan> {
    plan.nodes[n].routing.as_ref().and_then(|r| r.ospf.as_ref())
}

fn iface_cfg<'a>(ospf: &'a OspfPlan, name: &str) -> Option<&'a OspfIfacePlan> {
    ospf.interfaces.iter().find(|i| i.iface == name)
}

/// The OSPF routes of every router, indexed by node (empty for non-OSPF nodes).
///
/// Frozen routers (paused or killed) take part in no adjacency, but keep the routes they
/// would have computed had they still been running under the same faults (the routes their
/// daemon installed before it froze stay in the kernel).
pub(crate) fn ospf_routes(plan: &Plan, net: &Net) -> Vec<Vec<FibRoute>> {
    let n = net.nodes.len();
    let mut out = vec![Vec::new(); n];
    let has = |i: usize| ospf_of(plan, i).is_some() && !net.nodes[i].stopped;
    let frozen: Vec<usize> = (0..n).filter(|&i| has(i) && net.nodes[i].frozen()).collect();
    if !frozen.is_empty() {
        let running: Vec<bool> = (0..n).map(has).collect();
        let world = World::build(plan, net, &running);
        for &s in &frozen {
            out[s] = world.routes_from(net, s);
        }
    }
    let running: Vec<bool> = (0..n).map(|i| has(i) && !net.nodes[i].frozen()).collect();
    let world = World::build(plan, net, &running);
    for s in (0..n).filter(|&i| running[i]) {
        out[s] = world.routes_from(net, s);
    }
    out
}

/// The router graph and the advertisements of one set of running routers.
struct World {
    n_nodes: usize,
    adj: Vec<Vec<Edge>>,
    /// Intra-area prefixes: prefix → (advertising router, its cost to the prefix).
    intra: BTreeMap<Ipv4Net, Vec<(usize, u64)>>,
    /// External (redistributed static) prefixes → advertising routers.
    external: BTreeMap<Ipv4Net, Vec<usize>>,
    /// Prefixes each router advertises itself (it has them connected).
    own: Vec<HashSet<Ipv4Net>>,
}

impl World {
    fn build(plan: &Plan, net: &Net, running: &[bool]) -> Self {
        let n_nodes = net.nodes.len();
        let mut adj: Vec<Vec<Edge>> = vec![Vec::new(); n_nodes];
        let cfg = |gi: usize| -> Option<&OspfIfacePlan> {
            let ifc = &net.ifaces[gi];
            if !running[ifc.node] {
                return None;
            }
            iface_cfg(ospf_of(plan, ifc.node)?, &ifc.name)
        };
        // An interface that can form adjacencies: OSPF on it, not passive, carrier up, not cut.
        let active = |gi: usize| -> Option<&OspfIfacePlan> {
            let c = cfg(gi)?;
            let ifc = &net.ifaces[gi];
            (!c.passive && ifc.up && !ifc.cut && ifc.addr().is_some()).then_some(c)
        };
        let hello_blocked = |a: usize, b: usize| net.filtered(a, b) || net.filtered(b, a);

        for (si, seg) in net.segs.iter().enumerate() {
            let members: Vec<(usize, &OspfIfacePlan)> =
                seg.ifaces.iter().filter_map(|&gi| active(gi).map(|c| (gi, c))).collect();
            if members.len() < 2 {
                continue;
            }
            let addr = |gi: usize| net.ifaces[gi].addr();
            match seg.kind {
                SegKind::Link(link) => {
                    let [(ia, ca), (ib, cb), ..] = members[..] else { continue };
                    let (a, b) = (net.ifaces[ia].node, net.ifaces[ib].node);
                    let lossy = net.lossy.contains(&(link, a)) || net.lossy.contains(&(link, b));
                    if a == b || ca.area != cb.area || hello_blocked(a, b) || lossy {
                        continue;
                    }
                    adj[a].push(Edge { to: b, cost: cost(ca), nh: addr(ib), dev: Some(ia) });
                    adj[b].push(Edge { to: a, cost: cost(cb), nh: addr(ia), dev: Some(ib) });
                }
                SegKind::Lan(_) => {
                    let nodes: BTreeSet<usize> = members.iter().map(|(gi, _)| net.ifaces[*gi].node).collect();
                    let any_drop = net.drops.iter().any(|k| {
                        nodes.contains(&((k >> 32) as usize)) && nodes.contains(&((k & 0xffff_ffff) as usize))
                    });
                    if any_drop {
                        // Pairwise adjacencies, leaving out the pairs whose hellos are dropped.
                        for &(ia, ca) in &members {
                            for &(ib, _) in &members {
                                let (a, b) = (net.ifaces[ia].node, net.ifaces[ib].node);
                                if a != b && !hello_blocked(a, b) {
                                    adj[a].push(Edge { to: b, cost: cost(ca), nh: addr(ib), dev: Some(ia) });
                                }
                            }
                        }
                    } else {
                        // A network vertex, as OSPF's network LSA: router → net at the
                        // interface cost, net → router at 0.
                        let v = adj.len();
                        adj.push(Vec::new());
                        let _ = si;
                        for &(gi, c) in &members {
                            let r = net.ifaces[gi].node;
                            adj[r].push(Edge { to: v, cost: cost(c), nh: None, dev: Some(gi) });
                            adj[v].push(Edge { to: r, cost: 0, nh: addr(gi), dev: None });
                        }
                    }
                }
            }
        }

        let mut intra: BTreeMap<Ipv4Net, Vec<(usize, u64)>> = BTreeMap::new();
        let mut external: BTreeMap<Ipv4Net, Vec<usize>> = BTreeMap::new();
        let mut own: Vec<HashSet<Ipv4Net>> = vec![HashSet::new(); n_nodes];
        for r in (0..n_nodes).filter(|&r| running[r]) {
            let Some(ospf) = ospf_of(plan, r) else { continue };
            for &gi in &net.nodes[r].ifaces {
                let ifc = &net.ifaces[gi];
                let Some(c) = cfg(gi) else { continue };
                if !ifc.up {
                    continue;
                }
                // A point-to-point interface whose peer is down (stopped node, downed end) has
                // no carrier: ospfd takes it down and stops advertising its subnet, although
                // the kernel keeps the connected route (found by the differential check).
                let carrier = net.carrier(gi);
                for a in &ifc.addrs {
                    if carrier {
                        intra.entry(a.trunc()).or_default().push((r, cost(c)));
                    }
                    own[r].insert(a.trunc());
                }
            }
            if let Some(lo) = iface_cfg(ospf, "lo") {
                // OSPF advertises loopback addresses as host routes.
                for l in &net.nodes[r].loopbacks {
                    let host = Ipv4Net::new(l.addr(), 32).unwrap_or(*l);
                    intra.entry(host).or_default().push((r, cost(lo)));
                    own[r].insert(host);
                }
            }
            if ospf.redistribute_static {
                for rp in &plan.nodes[r].routes {
                    let dev_up = net.nodes[r]
                        .ifaces
                        .iter()
                        .any(|&gi| net.ifaces[gi].name == rp.dev && net.ifaces[gi].up);
                    if rp.origin == RouteOrigin::Static && dev_up {
                        external.entry(rp.to.trunc()).or_default().push(r);
                    }
                }
            }
        }
        World { n_nodes, adj, intra, external, own }
    }

    /// Dijkstra from router `s`: distance, first hop (the lowest one among equal-cost paths)
    /// and every equal-cost first hop of each vertex.
    fn spf(&self, s: usize) -> (Vec<u64>, Vec<Option<FirstHop>>, Vec<Vec<FirstHop>>) {
        let v = self.adj.len();
        let mut dist = vec![u64::MAX; v];
        let mut fh: Vec<Option<FirstHop>> = vec![None; v];
        // All first hops, for the ECMP marking; the primary choice above is kept as it was, so
        // the forwarding answer does not change.
        let mut all: Vec<Vec<FirstHop>> = vec![Vec::new(); v];
        let mut done = vec![false; v];
        let mut heap = BinaryHeap::new();
        dist[s] = 0;
        heap.push(Reverse((0u64, s)));
        while let Some(Reverse((d, u))) = heap.pop() {
            if done[u] {
                continue;
            }
            done[u] = true;
            for e in &self.adj[u] {
                let cand: FirstHop = if u == s {
                    (e.nh, e.dev.unwrap_or(usize::MAX))
                } else {
                    match fh[u] {
                        Some((None, dev)) => (e.nh, dev),
                        Some(h) => h,
                        None => continue,
                    }
                };
                let nd = d + e.cost;
                if nd > dist[e.to] || (nd == dist[e.to] && done[e.to]) {
                    continue;
                }
                let cands: Vec<FirstHop> = if u == s {
                    vec![cand]
                } else {
                    all[u].iter().map(|&h| if h.0.is_none() { (e.nh, h.1) } else { h }).collect()
                };
                if nd < dist[e.to] {
                    dist[e.to] = nd;
                    fh[e.to] = Some(cand);
                    all[e.to] = cands;
                    heap.push(Reverse((nd, e.to)));
                } else if nd == dist[e.to] && !done[e.to] {
                    // ECMP: forward on the lowest next-hop address (deterministic), remember all.
                    fh[e.to] = fh[e.to].min(Some(cand));
                    // Deduplicated as it grows: in a mesh of equal paths the hops would
                    // otherwise be counted once per path.
                    let set = &mut all[e.to];
                    set.extend(cands);
                    set.sort_unstable();
                    set.dedup();
                }
            }
        }
        (dist, fh, all)
    }

    fn routes_from(&self, _net: &Net, s: usize) -> Vec<FibRoute> {
        let (dist, fh, all) = self.spf(s);
        let mut out = Vec::new();
        let reach = |r: usize| -> Option<(u64, Ipv4Addr, usize)> {
            if r == s || r >= self.n_nodes || dist[r] == u64::MAX {
                return None;
            }
            match fh[r]? {
                (Some(nh), dev) => Some((dist[r], nh, dev)),
                (None, _) => None,
            }
        };
        for (prefix, adv) in &self.intra {
            if self.own[s].contains(prefix) {
                continue;
            }
            let best = adv
                .iter()
                .filter_map(|&(r, c)| reach(r).map(|(d, nh, dev)| (d + c, nh, dev)))
                .min_by_key(|&(d, nh, dev)| (d, nh, dev));
            if let Some((d, nh, dev)) = best {
                let tied = adv.iter().filter(|&&(r, c)| reach(r).is_some_and(|x| x.0 + c == d));
                let alts = alternatives(tied.map(|&(r, _)| r), &all, (nh, dev));
                out.push(route(*prefix, nh, dev, alts));
            }
        }
        for (prefix, adv) in &self.external {
            if self.own[s].contains(prefix) || self.intra.contains_key(prefix) || adv.contains(&s) {
                continue;
            }
            if let Some((d, nh, dev)) =
                adv.iter().filter_map(|&r| reach(r)).min_by_key(|&(d, nh, dev)| (d, nh, dev))
            {
                let tied = adv.iter().copied().filter(|&r| reach(r).is_some_and(|x| x.0 == d));
                let alts = alternatives(tied, &all, (nh, dev));
                out.push(route(*prefix, nh, dev, alts));
            }
        }
        out
    }
}

fn cost(c: &OspfIfacePlan) -> u64 {
    u64::from(c.cost.max(1))
}

/// The equal-cost next hops toward the routers `tied` other than the primary one.
fn alternatives(
    tied: impl Iterator<Item = usize>,
    all: &[Vec<FirstHop>],
    primary: (Ipv4Addr, usize),
) -> Vec<(Ipv4Addr, usize)> {
    let mut alts: Vec<(Ipv4Addr, usize)> = tied
        .flat_map(|r| all[r].iter().filter_map(|&(nh, dev)| nh.map(|a| (a, dev))))
        .filter(|&h| h != primary)
        .collect();
    alts.sort_unstable();
    alts.dedup();
    alts
}

fn route(to: Ipv4Net, nh: Ipv4Addr, dev: usize, alts: Vec<(Ipv4Addr, usize)>) -> FibRoute {
    FibRoute { to, via: Some(nh), dev, metric: OSPF_KERNEL_METRIC, origin: Origin::Ospf, alts }
}
