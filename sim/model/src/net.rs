//! The plan as an indexed network under a fault state: nodes, interfaces, segments (LANs and
//! links), with the link-layer state (up/down, cut, lossy) already resolved.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use topo_lab::{FaultState, LinkRef};
use topo_plan::{Attachment, Plan};

use crate::fasthash::{pair_key, IpMap, PairSet};

/// [`Net::fwd`] of a node that does not forward.
pub(crate) const NOT_FORWARDING: u32 = u32::MAX;

/// A broadcast domain: one LAN network, or one point-to-point link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SegKind {
    Lan(String),
    Link(usize),
}

#[derive(Debug, Clone)]
pub(crate) struct Segment {
    pub kind: SegKind,
    /// Global interface indices attached to it.
    pub ifaces: Vec<usize>,
}

#[derive(Debug, Clone)]
pub(crate) struct Iface {
    pub node: usize,
    pub name: String,
    pub addrs: Vec<Ipv4Net>,
    pub seg: usize,
    /// Administratively and operationally up (not `link down`, node not stopped).
    pub up: bool,
    /// Silently loses every packet sent or received over it (`link cut`).
    pub cut: bool,
    /// Source NAT (masquerade) on traffic leaving through it.
    pub masquerade: bool,
}

impl Iface {
    /// The address the interface answers and sends with (its first), if any.
    pub fn addr(&self) -> Option<Ipv4Addr> {
        self.addrs.first().map(Ipv4Net::addr)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub name: String,
    /// `net.ipv4.ip_forward = 1`.
    pub forwards: bool,
    pub stopped: bool,
    pub paused: bool,
    pub killed: bool,
    /// Global interface indices, in plan order.
    pub ifaces: Vec<usize>,
    pub loopbacks: Vec<Ipv4Net>,
    pub primary: Option<Ipv4Addr>,
}

impl Node {
    /// Processes are frozen or dead: daemons don't run and sockets don't answer.
    pub fn frozen(&self) -> bool {
        self.paused || self.killed
    }
}

/// The network under a fault state.
#[derive(Debug, Clone)]
pub(crate) struct Net {
    pub nodes: Vec<Node>,
    pub ifaces: Vec<Iface>,
    pub segs: Vec<Segment>,
    /// Every planned address → its node, whatever the state (used to attribute source
    /// addresses, as the kernel's address-based filters do).
    pub owner: IpMap<usize>,
    /// Addresses local to a node: every interface address (up or down) and loopbacks.
    pub local: IpMap<usize>,
    /// Directed drops as node-index pairs.
    pub drops: PairSet,
    /// Directed p2p 100 % loss: (link index, sender node).
    pub lossy: BTreeSet<(usize, usize)>,
    pub by_name: HashMap<String, usize>,
    /// Node index → dense index among the forwarding nodes ([`NOT_FORWARDING`] for the rest):
    /// the per-destination memo rows are this narrow.
    pub fwd: Vec<u32>,
    pub n_fwd: usize,
    /// Link index → its two end nodes, for messages.
    pub link_ends: HashMap<usize, (String, String)>,
}

impl Net {
    pub fn new(plan: &Plan, faults: &FaultState, killed: &BTreeSet<String>) -> Self {
        let by_name: HashMap<String, usize> =
            plan.nodes.iter().enumerate().map(|(i, n)| (n.name.clone(), i)).collect();
        let mut segs: Vec<Segment> = Vec::new();
        let mut lan_seg: HashMap<String, usize> = HashMap::new();
        let mut link_seg: HashMap<usize, usize> = HashMap::new();
        let mut nodes = Vec::with_capacity(plan.nodes.len());
        let mut ifaces = Vec::new();
        let mut owner = IpMap::default();
        let mut local = IpMap::default();

        for (ni, np) in plan.nodes.iter().enumerate() {
            let stopped = faults.nodes_stopped.contains(&np.name);
            let mut node = Node {
                name: np.name.clone(),
                forwards: np.sysctls.get("net.ipv4.ip_forward").is_some_and(|v| v.trim() == "1"),
                stopped,
                paused: faults.nodes_paused.contains(&np.name),
                killed: killed.contains(&np.name),
                ifaces: Vec::new(),
                loopbacks: np.loopbacks.clone(),
                primary: np.primary_address(),
            };
            for ip in &np.interfaces {
                let (seg_idx, lref) = match &ip.attachment {
                    Attachment::Network { network, .. } => {
                        let s = *lan_seg.entry(network.clone()).or_insert_with(|| {
                            segs.push(Segment { kind: SegKind::Lan(network.clone()), ifaces: Vec::new() });
                            segs.len() - 1
                        });
                        (s, LinkRef::Lan { node: np.name.clone(), network: network.clone() })
                    }
                    Attachment::Link { link, peer_node, .. } => {
                        let s = *link_seg.entry(*link).or_insert_with(|| {
                            segs.push(Segment { kind: SegKind::Link(*link), ifaces: Vec::new() });
                            segs.len() - 1
                        });
                        (s, LinkRef::P2p { a: np.name.clone(), b: peer_node.clone() }.normalized())
                    }
                };
                let gi = ifaces.len();
                let up = !stopped && !faults.links_down.contains(&lref);
                ifaces.push(Iface {
                    node: ni,
                    name: ip.name.clone(),
                    addrs: ip.addresses.clone(),
                    seg: seg_idx,
                    up,
                    cut: faults.links_cut.contains(&lref),
                    masquerade: np.masquerade.contains(&ip.name),
                });
                segs[seg_idx].ifaces.push(gi);
                node.ifaces.push(gi);
                // Local even while the interface is down: the kernel keeps the `local` route of
                // an address on a down device, so it still accepts packets for it arriving on
                // other interfaces (weak host model; found by the differential check).
                for a in &ip.addresses {
                    owner.insert(u32::from(a.addr()), ni);
                    local.insert(u32::from(a.addr()), ni);
                }
            }
            for l in &np.loopbacks {
                owner.insert(u32::from(l.addr()), ni);
                local.insert(u32::from(l.addr()), ni);
            }
            nodes.push(node);
        }

        let drops = faults
            .drops
            .iter()
            .filter_map(|(f, t)| Some(pair_key(*by_name.get(f)?, *by_name.get(t)?)))
            .collect();

        let mut lossy = BTreeSet::new();
        let full_loss = |imp: &topo_spec::Impairment| imp.loss.is_some_and(|l| l >= 100.0);
        for l in &plan.links {
            let (Some(&a), Some(&b)) = (by_name.get(&l.a.node), by_name.get(&l.b.node)) else { continue };
            // Runtime impairments replace the planned one for that direction.
            let ab = faults.impairments.get(&(l.a.node.clone(), l.b.node.clone())).unwrap_or(&l.impair_ab);
            let ba = faults.impairments.get(&(l.b.node.clone(), l.a.node.clone())).unwrap_or(&l.impair_ba);
            if full_loss(ab) {
                lossy.insert((l.index, a));
            }
            if full_loss(ba) {
                lossy.insert((l.index, b));
            }
        }

        let link_ends = plan.links.iter().map(|l| (l.index, (l.a.node.clone(), l.b.node.clone()))).collect();
        let mut n_fwd = 0;
        let fwd = nodes
            .iter()
            .map(|n| {
                if n.forwards {
                    n_fwd += 1;
                    u32::try_from(n_fwd - 1).unwrap_or(NOT_FORWARDING)
                } else {
                    NOT_FORWARDING
                }
            })
            .collect();
        Net { nodes, ifaces, segs, owner, local, drops, lossy, by_name, fwd, n_fwd, link_ends }
    }

    pub fn node_idx(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// Is `addr` a local address of node `n` right now?
    pub fn is_local(&self, n: usize, addr: Ipv4Addr) -> bool {
        self.local.get(&u32::from(addr)) == Some(&n) || self.on_loopback(n, addr)
    }

    /// The node holding `addr` as an interface or loopback address (not loopback prefixes).
    pub fn local_owner(&self, addr: Ipv4Addr) -> Option<usize> {
        self.local.get(&u32::from(addr)).copied()
    }

    /// Is `addr` inside one of node `n`'s loopback prefixes?
    pub fn on_loopback(&self, n: usize, addr: Ipv4Addr) -> bool {
        self.nodes[n].loopbacks.iter().any(|l| l.contains(&addr))
    }

    /// Who answers ARP for `addr` on segment `seg` (other than `from`): the node that holds
    /// `addr` as a local address and has an up interface on the segment (Linux answers ARP
    /// for any local address, `arp_ignore=0`). Returns (node, its interface on the segment).
    /// `owner`: [`Net::local_owner`] of `addr`, which the caller has looked up already.
    pub fn arp_owned(
        &self,
        seg: usize,
        addr: Ipv4Addr,
        owner: Option<usize>,
        from: usize,
    ) -> Option<(usize, usize)> {
        let n = match owner {
            Some(n) => n,
            None => self.nodes.iter().position(|nd| nd.loopbacks.iter().any(|l| l.contains(&addr)))?,
        };
        if n == from {
            return None;
        }
        // Prefer an interface that is not cut, so the reason names the cut only when every
        // attachment is cut.
        let mut found = None;
        for &i in &self.nodes[n].ifaces {
            let ifc = &self.ifaces[i];
            if ifc.seg == seg && ifc.up {
                if !ifc.cut {
                    return Some((n, i));
                }
                found.get_or_insert((n, i));
            }
        }
        found
    }

    /// Does interface `gi` have carrier? Up, and on a point-to-point link its peer is up too
    /// (a veth loses carrier when its peer goes down); a LAN port is on an always-up bridge.
    pub fn carrier(&self, gi: usize) -> bool {
        let ifc = &self.ifaces[gi];
        ifc.up
            && match self.segs[ifc.seg].kind {
                SegKind::Lan(_) => true,
                SegKind::Link(_) => self.segs[ifc.seg].ifaces.iter().all(|&j| self.ifaces[j].up),
            }
    }

    /// The link index of a p2p segment.
    pub fn link_of(&self, seg: usize) -> Option<usize> {
        match self.segs[seg].kind {
            SegKind::Link(l) => Some(l),
            SegKind::Lan(_) => None,
        }
    }

    /// Does node `n` drop traffic whose source address belongs to `from` (input filter)?
    pub fn filtered(&self, from: usize, n: usize) -> bool {
        from != n && !self.drops.is_empty() && self.drops.contains(&pair_key(from, n))
    }

    pub fn seg_name(&self, seg: usize) -> String {
        match &self.segs[seg].kind {
            SegKind::Lan(n) => format!("network {n}"),
            SegKind::Link(l) => match self.link_ends.get(l) {
                Some((a, b)) => format!("link {a}-{b}"),
                None => format!("link #{l}"),
            },
        }
    }
}
