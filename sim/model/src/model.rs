//! The evaluated model: forwarding tables of every node under a fault state, and packet walks
//! through them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use topo_lab::{
    FaultState, Hop, LabError, NatResult, PairOutcome, PathResult, Proto, ReachMatrix, ReachRequest,
};
use topo_plan::{Plan, RouteOrigin};

use crate::fasthash::IpMap;
use crate::fib::{Fib, FibRoute, Origin, Route};
use crate::net::{Net, NOT_FORWARDING};
use crate::ospf::ospf_routes;

/// Initial TTL of every probe (Linux `net.ipv4.ip_default_ttl`).
pub const INITIAL_TTL: u8 = 64;

/// One packet's journey in one direction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Walk {
    pub from: String,
    pub dst: Ipv4Addr,
    pub delivered: bool,
    /// The node the packet was delivered to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_to: Option<String>,
    /// The node where it was dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Routers traversed (ingress address), then the destination (its address).
    pub hops: Vec<Hop>,
    /// Source address chosen by the sender (address of the outgoing interface).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_src: Option<Ipv4Addr>,
    /// Source address as the receiver (or the node that dropped it) saw it, after NAT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_src: Option<Ipv4Addr>,
}

/// Forwarding decision of one node for one destination address (cached per destination).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Unknown,
    Local,
    Out { egress: u32, next: u32, ingress: u32 },
    Drop(Why),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    NoRoute,
    NextHop(Ipv4Addr),
    Cut(u32),
    Loss(u32),
    NotForwarding,
    Ttl,
    Filtered(u32),
    NoResponder,
    ReplySrc(Ipv4Addr),
}

/// Why a probed pair fails, as data (rendered into words only when asked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fail {
    NoAddress,
    NoSource,
    /// Dropped at a node (`reply`: on the way back).
    Drop {
        at: u32,
        why: Why,
        reply: bool,
    },
    /// Delivered to another node than the target (or, for the reply, the sender).
    Elsewhere {
        at: u32,
        reply: bool,
    },
}

/// One pair of a [`CompactMatrix`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactPair {
    from: u32,
    to: u32,
    fail: Option<Fail>,
}

impl CompactPair {
    pub fn reached(&self) -> bool {
        self.fail.is_none()
    }
}

/// A reachability matrix as node indices and failure codes ([`Model::reach_compact`]):
/// at most 24 bytes per pair and no allocation, against a [`PairOutcome`]'s 80 bytes and two
/// or three strings. Converts to the shared [`ReachMatrix`] on demand.
#[derive(Debug, Clone)]
pub struct CompactMatrix<'m> {
    model: &'m Model,
    pub proto: Proto,
    /// Sorted by (from, to) name.
    pub pairs: Vec<CompactPair>,
}

impl CompactMatrix<'_> {
    pub fn reached(&self) -> usize {
        self.pairs.iter().filter(|p| p.reached()).count()
    }

    pub fn from_name(&self, p: &CompactPair) -> &str {
        &self.model.net.nodes[p.from as usize].name
    }

    pub fn to_name(&self, p: &CompactPair) -> &str {
        &self.model.net.nodes[p.to as usize].name
    }

    /// Where and why the pair fails, in the words [`Model::reach`] uses.
    pub fn reason(&self, p: &CompactPair) -> Option<String> {
        p.fail.map(|f| self.model.fail_reason(p.to as usize, f))
    }

    /// One pair in the shared result form.
    pub fn outcome(&self, p: &CompactPair) -> PairOutcome {
        self.model.outcome(p.from as usize, p.to as usize, p.fail)
    }

    /// The shared [`ReachMatrix`] (what [`Model::reach`] returns).
    pub fn to_matrix(&self) -> ReachMatrix {
        ReachMatrix { proto: self.proto, pairs: self.pairs.iter().map(|p| self.outcome(p)).collect() }
    }
}

/// Directed pairs of `from` × `to` without `s == t` (both sorted, deduplicated).
fn pair_count(from: &[usize], to: &[usize]) -> usize {
    let set: BTreeSet<usize> = to.iter().copied().collect();
    from.iter().map(|s| to.len() - usize::from(set.contains(s))).sum()
}

#[derive(Debug, Clone, Copy)]
struct Nat {
    node: usize,
    new: Ipv4Addr,
    orig: Ipv4Addr,
}

/// Result of one leg, with node indices.
#[derive(Debug, Clone)]
struct Leg {
    /// Ok(node delivered to) or Err((node dropped at, why)).
    end: Result<usize, (usize, Why)>,
    sent_src: Option<Ipv4Addr>,
    observed_src: Option<Ipv4Addr>,
    nats: Vec<Nat>,
    /// Nodes that saw the packet (only tracked when some interface masquerades).
    seen: Vec<usize>,
}

/// Per-destination decision cache; one per thread of walks.
#[derive(Debug, Default)]
struct Cache {
    slot: IpMap<usize>,
    table: Vec<Vec<Decision>>,
    tails: Vec<Vec<Tail>>,
    last: Option<(Ipv4Addr, usize)>,
    width: usize,
}

/// Where a packet that has arrived at a node ends up (memoized per destination): the
/// decisions don't depend on the source, so every packet to one address from one node ends
/// the same way (filters and responders are checked per packet afterwards).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tail {
    Unknown,
    Visiting,
    /// A forwarding loop: left to the hop-by-hop walk, which reports the TTL expiry.
    Loop,
    Known {
        end: u32,
        why: Option<Why>,
        forwards: u16,
    },
}

impl Cache {
    fn slot(&mut self, dst: Ipv4Addr, n: usize) -> usize {
        // Replies of one source all go to the same address: remember the last lookup.
        if let Some((a, s)) = self.last {
            if a == dst {
                return s;
            }
        }
        let s = self.slot_uncached(dst, n);
        self.last = Some((dst, s));
        s
    }

    fn slot_uncached(&mut self, dst: Ipv4Addr, n: usize) -> usize {
        let next = self.table.len();
        let s = *self.slot.entry(u32::from(dst)).or_insert(next);
        if s == next {
            // Rows are filled on first use ([`Cache::rows`]): many destinations never need one.
            self.table.push(Vec::new());
            self.tails.push(Vec::new());
        }
        self.width = n;
        s
    }

    /// Make sure the rows of `slot` exist.
    fn rows(&mut self, slot: usize) {
        if self.table[slot].is_empty() {
            self.table[slot] = vec![Decision::Unknown; self.width];
            self.tails[slot] = vec![Tail::Unknown; self.width];
        }
    }
}

/// The model of a plan under a fault state. Immutable once built; build a new one after a
/// fault (it is cheap: the forwarding tables are all it computes up front).
#[derive(Debug, Clone)]
pub struct Model {
    net: Net,
    fibs: Vec<Fib>,
    any_masquerade: bool,
}

impl Model {
    /// Evaluate `plan` under `faults` (no node killed).
    pub fn new(plan: &Plan, faults: &FaultState) -> Self {
        Self::with_killed(plan, faults, &BTreeSet::new())
    }

    /// Evaluate with some nodes' processes killed (`NodeKill` leaves no trace in
    /// [`FaultState`], so the caller tracks it; [`crate::ModelLab`] does).
    pub fn with_killed(plan: &Plan, faults: &FaultState, killed: &BTreeSet<String>) -> Self {
        let net = Net::new(plan, faults, killed);
        let mut ospf = ospf_routes(plan, &net);
        let mut fibs = Vec::with_capacity(net.nodes.len());
        for (ni, np) in plan.nodes.iter().enumerate() {
            let node = &net.nodes[ni];
            let mut cand: Vec<FibRoute> = Vec::new();
            for &gi in &node.ifaces {
                let ifc = &net.ifaces[gi];
                if !ifc.up {
                    continue;
                }
                for a in &ifc.addrs {
                    cand.push(FibRoute {
                        to: a.trunc(),
                        via: None,
                        dev: gi,
                        metric: 0,
                        origin: Origin::Connected,
                        alts: Vec::new(),
                    });
                }
            }
            for rp in &np.routes {
                // The kernel flushes routes whose device goes down, and refuses a gateway
                // that is not on-link.
                let dev = node.ifaces.iter().copied().find(|&gi| net.ifaces[gi].name == rp.dev);
                let Some(gi) = dev else {
                    tracing::debug!(node = %np.name, dev = %rp.dev, "route device not found; ignored");
                    continue;
                };
                let ifc = &net.ifaces[gi];
                if !ifc.up || !ifc.addrs.iter().any(|a| a.contains(&rp.via)) {
                    continue;
                }
                cand.push(FibRoute {
                    to: rp.to,
                    via: Some(rp.via),
                    dev: gi,
                    metric: rp.metric.unwrap_or(0),
                    origin: match rp.origin {
                        RouteOrigin::Static => Origin::Static,
                        RouteOrigin::Gateway => Origin::Gateway,
                    },
                    alts: Vec::new(),
                });
            }
            cand.append(&mut ospf[ni]);
            fibs.push(Fib::build(cand));
        }
        let any_masquerade = net.ifaces.iter().any(|i| i.masquerade);
        Model { net, fibs, any_masquerade }
    }

    fn idx(&self, name: &str) -> Result<usize, LabError> {
        self.net.node_idx(name).ok_or_else(|| LabError::UnknownNode(name.to_owned()))
    }

    /// The selected routes of one node, longest prefix first.
    pub fn routes(&self, node: &str) -> Result<Vec<Route>, LabError> {
        let n = self.idx(node)?;
        Ok(self.fibs[n].routes.iter().map(|r| self.public_route(r)).collect())
    }

    /// Every node's routes, by node name.
    pub fn all_routes(&self) -> BTreeMap<String, Vec<Route>> {
        self.net
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                (n.name.clone(), self.fibs[i].routes.iter().map(|r| self.public_route(r)).collect())
            })
            .collect()
    }

    fn public_route(&self, r: &FibRoute) -> Route {
        Route {
            to: r.to,
            via: r.via,
            dev: self.net.ifaces[r.dev].name.clone(),
            metric: r.metric,
            origin: r.origin,
        }
    }

    /// A node's decision for `dst`, memoized for forwarding nodes (the only ones a packet
    /// passes through; the memo rows hold those only, so they stay small enough for the cache).
    fn decide(&self, cache: &mut Cache, slot: usize, n: usize, dst: Ipv4Addr) -> Decision {
        let k = self.net.fwd[n];
        if k == NOT_FORWARDING {
            return self.decide_uncached(n, dst);
        }
        let k = k as usize;
        cache.rows(slot);
        let d = cache.table[slot][k];
        if d != Decision::Unknown {
            return d;
        }
        let d = self.decide_uncached(n, dst);
        cache.table[slot][k] = d;
        d
    }

    fn decide_uncached(&self, n: usize, dst: Ipv4Addr) -> Decision {
        self.decide_owned(n, dst, self.net.local_owner(dst))
    }

    /// [`Model::decide_uncached`] with the owner of `dst` already looked up.
    fn decide_owned(&self, n: usize, dst: Ipv4Addr, owner: Option<usize>) -> Decision {
        let net = &self.net;
        if owner == Some(n) || net.on_loopback(n, dst) {
            return Decision::Local;
        }
        let Some(r) = self.fibs[n].lookup(dst) else { return Decision::Drop(Why::NoRoute) };
        let (nh, nh_owner) = match r.via {
            Some(via) => (via, net.local_owner(via)),
            None => (dst, owner),
        };
        let eg = &net.ifaces[r.dev];
        let Some((m, j)) = net.arp_owned(eg.seg, nh, nh_owner, n) else {
            return Decision::Drop(Why::NextHop(nh));
        };
        if eg.cut || net.ifaces[j].cut {
            return Decision::Drop(Why::Cut(eg.seg as u32));
        }
        if net.link_of(eg.seg).is_some_and(|l| net.lossy.contains(&(l, n))) {
            return Decision::Drop(Why::Loss(eg.seg as u32));
        }
        Decision::Out { egress: r.dev as u32, next: m as u32, ingress: j as u32 }
    }

    /// Walk one packet from node `s` to `dst`.
    ///
    /// `fixed_src`: the source address (replies answer from the probed address); else chosen
    /// from the outgoing interface. `undo`: NAT translations to reverse (reply leg).
    /// `request_path`: nodes that saw the request (their conntrack knows the flow).
    #[allow(clippy::too_many_arguments)]
    fn leg(
        &self,
        cache: &mut Cache,
        s: usize,
        dst: Ipv4Addr,
        fixed_src: Option<Ipv4Addr>,
        need_socket: bool,
        mut undo: Vec<Nat>,
        request_path: &[usize],
        mut hops: Option<&mut Vec<Hop>>,
    ) -> Leg {
        let net = &self.net;
        let mut dst = dst;
        if !self.any_masquerade && hops.is_none() {
            if let Some(leg) = self.fast_leg(cache, s, dst, fixed_src, need_socket) {
                return leg;
            }
        }
        let mut slot = cache.slot(dst, net.n_fwd);
        let mut cur = s;
        let mut arrived = false;
        let mut ttl = INITIAL_TTL;
        let mut leg = Leg {
            end: Ok(s),
            sent_src: fixed_src,
            observed_src: fixed_src,
            nats: Vec::new(),
            seen: Vec::new(),
        };
        loop {
            if arrived {
                if self.any_masquerade {
                    leg.seen.push(cur);
                    // conntrack reverses the source NAT of the request before routing.
                    if let Some(p) = undo.iter().rposition(|x| x.node == cur && x.new == dst) {
                        dst = undo[p].orig;
                        undo.remove(p);
                        slot = cache.slot(dst, net.n_fwd);
                    }
                }
            } else if self.any_masquerade {
                leg.seen.push(cur);
            }
            match self.decide(cache, slot, cur, dst) {
                Decision::Unknown => unreachable!("decide never returns Unknown"),
                Decision::Local => {
                    if !arrived {
                        // To one of its own addresses: the loopback path.
                        leg.sent_src = leg.sent_src.or(Some(dst));
                        leg.observed_src = leg.sent_src;
                        leg.end = Ok(cur);
                        return leg;
                    }
                    if let Some(h) = hops.as_deref_mut().and_then(|h| h.last_mut()) {
                        h.addr = dst;
                    }
                    leg.end = self.deliver(leg.observed_src, cur, need_socket);
                    return leg;
                }
                Decision::Drop(why) => {
                    leg.end = Err((cur, why));
                    return leg;
                }
                Decision::Out { egress, next, ingress } => {
                    let (egress, next, ingress) = (egress as usize, next as usize, ingress as usize);
                    if arrived {
                        if !net.nodes[cur].forwards {
                            leg.end = Err((cur, Why::NotForwarding));
                            return leg;
                        }
                        if ttl <= 1 {
                            leg.end = Err((cur, Why::Ttl));
                            return leg;
                        }
                        ttl -= 1;
                    } else if leg.sent_src.is_none() {
                        let src = net.ifaces[egress].addr().or(net.nodes[s].primary);
                        leg.sent_src = src;
                        leg.observed_src = src;
                    }
                    let ifc = &net.ifaces[egress];
                    // Masquerade; a reply through a node that saw the request matches its
                    // conntrack entry and is not translated again.
                    if ifc.masquerade && !request_path.contains(&cur) {
                        if let (Some(new), Some(orig)) = (ifc.addr(), leg.observed_src) {
                            if new != orig {
                                leg.nats.push(Nat { node: cur, new, orig });
                                leg.observed_src = Some(new);
                            }
                        }
                    }
                    if let Some(h) = hops.as_deref_mut() {
                        let addr = net.ifaces[ingress].addr().unwrap_or(dst);
                        h.push(Hop { node: Some(net.nodes[next].name.clone()), addr });
                    }
                    cur = next;
                    arrived = true;
                }
            }
        }
    }

    /// Local delivery at `at`: the input filters (partitions), then the responder.
    fn deliver(
        &self,
        observed_src: Option<Ipv4Addr>,
        at: usize,
        need_socket: bool,
    ) -> Result<usize, (usize, Why)> {
        let net = &self.net;
        let from = if net.drops.is_empty() {
            None
        } else {
            observed_src.and_then(|a| net.owner.get(&u32::from(a)).copied())
        };
        if let Some(f) = from.filter(|&f| net.filtered(f, at)) {
            Err((at, Why::Filtered(f as u32)))
        } else if need_socket && net.nodes[at].frozen() {
            Err((at, Why::NoResponder))
        } else {
            Ok(at)
        }
    }

    /// The walk through memoized tails (no NAT in the network, no hop list wanted). `None`
    /// when the packet loops or travels too far: the hop-by-hop walk then says where TTL ends.
    fn fast_leg(
        &self,
        cache: &mut Cache,
        s: usize,
        dst: Ipv4Addr,
        fixed_src: Option<Ipv4Addr>,
        need_socket: bool,
    ) -> Option<Leg> {
        let mut leg = Leg {
            end: Ok(s),
            sent_src: fixed_src,
            observed_src: fixed_src,
            nats: Vec::new(),
            seen: Vec::new(),
        };
        // The sender's own decision is rarely shared with another packet (one per pair):
        // computing it beats a cache miss in the big per-destination table.
        // The destination's owner is looked up once for the sender's decision and the next hop.
        let owner = self.net.local_owner(dst);
        match self.decide_owned(s, dst, owner) {
            Decision::Unknown => unreachable!("decide never returns Unknown"),
            Decision::Local => {
                leg.sent_src = leg.sent_src.or(Some(dst));
                leg.observed_src = leg.sent_src;
            }
            Decision::Drop(why) => leg.end = Err((s, why)),
            Decision::Out { egress, next, .. } => {
                if leg.sent_src.is_none() {
                    leg.sent_src = self.net.ifaces[egress as usize].addr().or(self.net.nodes[s].primary);
                    leg.observed_src = leg.sent_src;
                }
                let next = next as usize;
                // Delivered at the next node (the common case) needs no memo table.
                let tail = if owner == Some(next) || self.net.on_loopback(next, dst) {
                    Tail::Known { end: next as u32, why: None, forwards: 0 }
                } else {
                    let slot = cache.slot(dst, self.net.n_fwd);
                    self.tail(cache, slot, next, dst)
                };
                let Tail::Known { end, why, forwards } = tail else {
                    return None;
                };
                if u32::from(forwards) >= u32::from(INITIAL_TTL) {
                    return None;
                }
                leg.end = match why {
                    Some(w) => Err((end as usize, w)),
                    None => self.deliver(leg.observed_src, end as usize, need_socket),
                };
            }
        }
        Some(leg)
    }

    /// Where a packet to `dst` that arrived at `start` ends, memoized along the way.
    fn tail(&self, cache: &mut Cache, slot: usize, start: usize, dst: Ipv4Addr) -> Tail {
        // Delivered at the next node: the common case, answered from small maps.
        if self.net.is_local(start, dst) {
            return Tail::Known { end: start as u32, why: None, forwards: 0 };
        }
        let mut chain: Vec<usize> = Vec::new();
        let mut cur = start;
        let found = loop {
            let k = self.net.fwd[cur];
            if k == NOT_FORWARDING {
                // A packet ends at a node that does not forward, whatever it does with it:
                // nothing to memoize for the nodes behind it.
                break match self.decide_uncached(cur, dst) {
                    Decision::Unknown => unreachable!("decide never returns Unknown"),
                    Decision::Local => Tail::Known { end: cur as u32, why: None, forwards: 0 },
                    Decision::Drop(w) => Tail::Known { end: cur as u32, why: Some(w), forwards: 0 },
                    Decision::Out { .. } => {
                        Tail::Known { end: cur as u32, why: Some(Why::NotForwarding), forwards: 0 }
                    }
                };
            }
            let k = k as usize;
            cache.rows(slot);
            match cache.tails[slot][k] {
                t @ Tail::Known { .. } => break t,
                Tail::Loop | Tail::Visiting => break Tail::Loop,
                Tail::Unknown => {}
            }
            let t = match self.decide(cache, slot, cur, dst) {
                Decision::Unknown => unreachable!("decide never returns Unknown"),
                Decision::Local => Tail::Known { end: cur as u32, why: None, forwards: 0 },
                Decision::Drop(w) => Tail::Known { end: cur as u32, why: Some(w), forwards: 0 },
                Decision::Out { next, .. } => {
                    cache.tails[slot][k] = Tail::Visiting;
                    chain.push(k);
                    cur = next as usize;
                    continue;
                }
            };
            cache.tails[slot][k] = t;
            break t;
        };
        let mut t = found;
        for &c in chain.iter().rev() {
            if let Tail::Known { end, why, forwards } = t {
                t = Tail::Known { end, why, forwards: forwards.saturating_add(1) };
            }
            cache.tails[slot][c] = t;
        }
        t
    }

    fn reason(&self, at: usize, why: Why) -> String {
        let net = &self.net;
        let node = &net.nodes[at].name;
        match why {
            Why::NoRoute => format!("no route on {node}"),
            Why::NextHop(nh) => format!("next hop {nh} unreachable from {node} (no ARP reply)"),
            Why::Cut(seg) => format!("lost on the cut {} (at {node})", net.seg_name(seg as usize)),
            Why::Loss(seg) => format!("lost on {} (100% loss, at {node})", net.seg_name(seg as usize)),
            Why::NotForwarding => format!("{node} does not forward (ip_forward off)"),
            Why::Ttl => format!("TTL expired at {node} (routing loop)"),
            Why::Filtered(f) => {
                format!("{node} drops traffic from {} (partition)", net.nodes[f as usize].name)
            }
            Why::NoResponder => {
                let how = if net.nodes[at].killed { "killed" } else { "paused" };
                format!("no responder on {node} (processes {how})")
            }
            Why::ReplySrc(a) => format!("reply source rewritten to {a} by NAT"),
        }
    }

    /// One packet from `from` to `dst`, one way, with its hop path.
    pub fn walk(&self, from: &str, dst: Ipv4Addr) -> Result<Walk, LabError> {
        let s = self.idx(from)?;
        let mut cache = Cache::default();
        let mut hops = Vec::new();
        let leg = self.leg(&mut cache, s, dst, None, false, Vec::new(), &[], Some(&mut hops));
        Ok(self.public_walk(from, dst, &leg, hops))
    }

    fn public_walk(&self, from: &str, dst: Ipv4Addr, leg: &Leg, hops: Vec<Hop>) -> Walk {
        let name = |i: usize| self.net.nodes[i].name.clone();
        Walk {
            from: from.to_owned(),
            dst,
            delivered: leg.end.is_ok(),
            delivered_to: leg.end.as_ref().ok().map(|&i| name(i)),
            dropped_at: leg.end.as_ref().err().map(|&(i, _)| name(i)),
            reason: leg.end.as_ref().err().map(|&(i, w)| self.reason(i, w)),
            hops,
            sent_src: leg.sent_src,
            observed_src: leg.observed_src,
        }
    }

    /// Request (and for round-trip protocols, reply) between two node indices.
    /// Returns the request leg and why the pair fails, if it does.
    fn probe_idx(&self, cache: &mut Cache, s: usize, t: usize, proto: Proto) -> (Option<Leg>, Option<Fail>) {
        let Some(dst) = self.net.nodes[t].primary else {
            return (None, Some(Fail::NoAddress));
        };
        let need_socket = !matches!(proto, Proto::Icmp);
        let req = self.leg(cache, s, dst, None, need_socket, Vec::new(), &[], None);
        match req.end {
            Err((at, why)) => return (Some(req), Some(Fail::Drop { at: at as u32, why, reply: false })),
            Ok(at) if at != t => return (Some(req), Some(Fail::Elsewhere { at: at as u32, reply: false })),
            Ok(_) => {}
        }
        if !proto.round_trip() {
            return (Some(req), None);
        }
        let Some(back_to) = req.observed_src else { return (Some(req), Some(Fail::NoSource)) };
        let rep = self.leg(cache, t, back_to, Some(dst), false, req.nats.clone(), &req.seen, None);
        let fail = match rep.end {
            Err((at, why)) => Some(Fail::Drop { at: at as u32, why, reply: true }),
            Ok(at) if at != s => Some(Fail::Elsewhere { at: at as u32, reply: true }),
            Ok(_) if rep.observed_src != Some(dst) => Some(Fail::Drop {
                at: s as u32,
                why: Why::ReplySrc(rep.observed_src.unwrap_or(dst)),
                reply: true,
            }),
            Ok(_) => None,
        };
        (Some(req), fail)
    }

    /// The words for a failed pair toward node `t`.
    fn fail_reason(&self, t: usize, fail: Fail) -> String {
        let name = |i: u32| &self.net.nodes[i as usize].name;
        let pre = |reply: bool| if reply { "reply: " } else { "" };
        match fail {
            Fail::NoAddress => format!("{} has no address", self.net.nodes[t].name),
            Fail::NoSource => "no source address".to_owned(),
            Fail::Drop { at, why, reply } => format!("{}{}", pre(reply), self.reason(at as usize, why)),
            Fail::Elsewhere { at, reply } => format!("{}delivered to {} instead", pre(reply), name(at)),
        }
    }

    /// Probe one directed pair of nodes, as the probe engine would.
    pub fn probe(&self, from: &str, to: &str, proto: Proto) -> Result<PairOutcome, LabError> {
        let (s, t) = (self.idx(from)?, self.idx(to)?);
        let mut cache = Cache::default();
        let (_, fail) = self.probe_idx(&mut cache, s, t, proto);
        Ok(self.outcome(s, t, fail))
    }

    fn outcome(&self, s: usize, t: usize, fail: Option<Fail>) -> PairOutcome {
        PairOutcome {
            from: self.net.nodes[s].name.clone(),
            to: self.net.nodes[t].name.clone(),
            to_addr: self.net.nodes[t].primary.unwrap_or(Ipv4Addr::UNSPECIFIED),
            reached: fail.is_none(),
            reason: fail.map(|f| self.fail_reason(t, f)),
        }
    }

    /// Sorted, deduplicated node indices of a request's sources and targets: pairs then come
    /// out in (from, to) order.
    fn request_indices(&self, req: &ReachRequest) -> Result<(Vec<usize>, Vec<usize>), LabError> {
        let sorted = |names: &[String]| -> Result<Vec<usize>, LabError> {
            let mut v: Vec<usize> = names.iter().map(|n| self.idx(n)).collect::<Result<_, _>>()?;
            v.sort_by(|&a, &b| self.net.nodes[a].name.cmp(&self.net.nodes[b].name));
            v.dedup();
            Ok(v)
        };
        Ok((sorted(&req.from)?, sorted(&req.to)?))
    }

    /// Probe every pair of `sources` × `to` (skipping `s == t`) in order, with one decision
    /// cache, handing each result to `emit`.
    fn probe_rows(
        &self,
        sources: &[usize],
        to: &[usize],
        proto: Proto,
        mut emit: impl FnMut(usize, usize, Option<Fail>),
    ) {
        let mut cache = Cache::default();
        for &s in sources {
            for &t in to {
                if s != t {
                    emit(s, t, self.probe_idx(&mut cache, s, t, proto).1);
                }
            }
        }
    }

    /// Run `job` over blocks of `from` on the available cores (one decision cache per
    /// thread), returning the blocks' results in order. Small requests stay on this thread.
    fn split_sources<T: Send>(
        from: &[usize],
        work: usize,
        job: impl Fn(&[usize], bool) -> T + Sync,
    ) -> Vec<T> {
        let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get).min(8);
        if threads < 2 || work < 20_000 {
            return vec![job(from, true)];
        }
        let chunk = from.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let job = &job;
            let handles: Vec<_> =
                from.chunks(chunk).enumerate().map(|(i, c)| scope.spawn(move || job(c, i == 0))).collect();
            handles
                .into_iter()
                .map(|h| match h.join() {
                    Ok(part) => part,
                    Err(panic) => std::panic::resume_unwind(panic),
                })
                .collect()
        })
    }

    /// The reachability matrix of a request (pairs with `from == to` skipped), sorted by
    /// (from, to).
    pub fn reach(&self, req: &ReachRequest) -> Result<ReachMatrix, LabError> {
        let (from, to) = self.request_indices(req)?;
        let total = pair_count(&from, &to);
        let parts = Self::split_sources(&from, total, |sources, first| {
            // The first block's vector becomes the result: give it room for every pair, so
            // the other blocks are appended without moving it.
            let room = if first { total } else { pair_count(sources, &to) };
            let mut out = Vec::with_capacity(room);
            self.probe_rows(sources, &to, req.proto, |s, t, fail| out.push(self.outcome(s, t, fail)));
            out
        });
        let mut parts = parts.into_iter();
        let mut pairs = parts.next().unwrap_or_default();
        for mut p in parts {
            pairs.append(&mut p);
        }
        Ok(ReachMatrix { proto: req.proto, pairs })
    }

    /// The same matrix as [`Model::reach`] in a compact form: node indices and a failure code
    /// per pair, no strings (names and reasons are rendered on demand). For big matrices whose
    /// consumer only counts or lists the failures.
    pub fn reach_compact(&self, req: &ReachRequest) -> Result<CompactMatrix<'_>, LabError> {
        let (from, to) = self.request_indices(req)?;
        let total = pair_count(&from, &to);
        let parts = Self::split_sources(&from, total, |sources, first| {
            let room = if first { total } else { pair_count(sources, &to) };
            let mut out = Vec::with_capacity(room);
            self.probe_rows(sources, &to, req.proto, |s, t, fail| {
                out.push(CompactPair { from: s as u32, to: t as u32, fail });
            });
            out
        });
        let mut parts = parts.into_iter();
        let mut pairs = parts.next().unwrap_or_default();
        for mut p in parts {
            pairs.append(&mut p);
        }
        Ok(CompactMatrix { model: self, proto: req.proto, pairs })
    }

    /// Most alternative branches [`Model::ecmp_dependent`] evaluates (each one re-probes the
    /// request): a bound on the cost for topologies with many equal-cost routes.
    pub const ECMP_MAX_BRANCHES: usize = 64;

    /// The pairs of `req` (as `(from, to)` names) whose outcome depends on which equal-cost
    /// branch the kernel's per-flow hash picks.
    ///
    /// The model forwards on the lowest next hop of an OSPF multipath route. Here every
    /// alternative next hop of every multipath route is tried in turn (one deviation from the
    /// primary choice at a time, at most [`Model::ECMP_MAX_BRANCHES`] of them), and a pair whose
    /// delivered/dropped verdict differs from the primary answer under some branch is marked.
    /// A combination of several deviations is not tried: the set is a lower bound when more
    /// than one multipath route lies on a pair's way.
    pub fn ecmp_dependent(&self, req: &ReachRequest) -> Result<BTreeSet<(String, String)>, LabError> {
        let (from, to) = self.request_indices(req)?;
        let verdicts = |m: &Model| -> Vec<bool> {
            let mut out = Vec::with_capacity(pair_count(&from, &to));
            m.probe_rows(&from, &to, req.proto, |_, _, fail| out.push(fail.is_none()));
            out
        };
        let branches: Vec<(usize, usize, (Ipv4Addr, usize))> = self
            .fibs
            .iter()
            .enumerate()
            .flat_map(|(n, f)| {
                f.routes.iter().enumerate().flat_map(move |(i, r)| r.alts.iter().map(move |&a| (n, i, a)))
            })
            .take(Self::ECMP_MAX_BRANCHES)
            .collect();
        let mut marked = BTreeSet::new();
        if branches.is_empty() {
            return Ok(marked);
        }
        let base = verdicts(self);
        let names: Vec<(usize, usize)> =
            from.iter().flat_map(|&s| to.iter().filter(move |&&t| t != s).map(move |&t| (s, t))).collect();
        let mut variant = self.clone();
        for (n, i, (via, dev)) in branches {
            let r = &mut variant.fibs[n].routes[i];
            let (old_via, old_dev) = (r.via, r.dev);
            (r.via, r.dev) = (Some(via), dev);
            for (k, v) in verdicts(&variant).into_iter().enumerate() {
                if v != base[k] {
                    let (s, t) = names[k];
                    marked.insert((self.net.nodes[s].name.clone(), self.net.nodes[t].name.clone()));
                }
            }
            let r = &mut variant.fibs[n].routes[i];
            (r.via, r.dev) = (old_via, old_dev);
        }
        Ok(marked)
    }

    /// The hop path from `from` to `to`'s primary address (like traceroute).
    pub fn path(&self, from: &str, to: &str) -> Result<PathResult, LabError> {
        let t = self.idx(to)?;
        let dst = self.net.nodes[t]
            .primary
            .ok_or_else(|| LabError::Invalid(format!("{to} has no address to trace to")))?;
        let w = self.walk(from, dst)?;
        let delivered = w.delivered_to.as_deref() == Some(to);
        let reason = if delivered {
            None
        } else {
            w.reason.or_else(|| w.delivered_to.map(|d| format!("delivered to {d} instead")))
        };
        Ok(PathResult { from: from.to_owned(), to: to.to_owned(), hops: w.hops, delivered, reason })
    }

    /// Which source address `to` observes for traffic from `from` (UDP to the responder,
    /// which echoes the observed address back: `observed_src` is `None` unless the request
    /// and the echo both arrive).
    pub fn nat(&self, from: &str, to: &str) -> Result<NatResult, LabError> {
        let (s, t) = (self.idx(from)?, self.idx(to)?);
        let mut cache = Cache::default();
        let (req, reason) = self.probe_idx(&mut cache, s, t, Proto::Tcp(topo_lab::probe::DEFAULT_PROBE_PORT));
        let sent_src = req
            .as_ref()
            .and_then(|l| l.sent_src)
            .or(self.net.nodes[s].primary)
            .unwrap_or(Ipv4Addr::UNSPECIFIED);
        let observed_src = if reason.is_none() { req.and_then(|l| l.observed_src) } else { None };
        Ok(NatResult {
            from: from.to_owned(),
            to: to.to_owned(),
            sent_src,
            observed_src,
            sent_port: None,
            observed_port: None,
        })
    }

    /// Node names in plan order.
    pub fn node_names(&self) -> impl Iterator<Item = &str> {
        self.net.nodes.iter().map(|n| n.name.as_str())
    }
}
