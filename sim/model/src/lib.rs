//! `topo-model`: the pure simulation backend. It evaluates a [`topo_plan::Plan`] under a
//! [`topo_lab::FaultState`] without root or namespaces: it computes each node's forwarding
//! table and walks packets through them, answering with the same result types as the kernel
//! probes ([`topo_lab::ReachMatrix`], [`topo_lab::PathResult`], [`topo_lab::NatResult`]).
//!
//! # The contract (what the kernel backend must agree with)
//!
//! **Nodes** are Linux hosts. A node *forwards* only when its plan sets
//! `net.ipv4.ip_forward = 1` (routers do, hosts don't). Reverse-path filtering is assumed off
//! (asymmetric paths work), and so are ICMP redirects (the plan turns them off on routers), so
//! forwarding depends on the tables only, never on past traffic.
//!
//! **Link layer.** Every LAN network and every point-to-point link is a segment.
//! - `link down` (or a stopped node) sets the interfaces down: their connected routes and
//!   every static route through them disappear (the kernel flushes routes of a device that
//!   goes down), but their addresses stay local — the kernel keeps the `local` route, so a
//!   packet for such an address arriving on another interface is still delivered.
//! - `link cut` keeps carrier and routes, but every packet sent or received over the cut
//!   attachment is lost. A p2p impairment with 100 % loss loses every packet in its direction;
//!   other impairments do not change reachability.
//! - `LinkRef::Lan { node, network }` is that node's attachment only.
//!
//! **Forwarding table of a node**: connected routes (the subnet of each address of each up
//! interface), static/gateway routes of the plan (only while their device is up and the
//! gateway is inside one of the device's subnets, as the kernel demands), and OSPF routes
//! (metric 20, what FRR's zebra installs). Selection: longest prefix; at equal prefix length
//! connected beats static/gateway, which beats OSPF (zebra does not install an OSPF route
//! over a kernel/static route); within one origin the lowest metric, then plan order. A
//! static route without a metric has metric 0. Interface addresses (up or down) and loopbacks are
//! local (the whole loopback prefix is local, as on `lo`).
//!
//! **Next hop.** The next hop (the gateway, or the destination itself for connected routes)
//! must be a local address of another node that has an up interface on the same segment
//! (Linux answers ARP for any of its addresses); otherwise the packet is dropped with
//! "next hop unreachable". Then the cut/loss rules apply.
//!
//! **OSPF** (routers with `routing.ospf`). A router takes part when it is neither stopped,
//! paused nor killed. Adjacencies: on a p2p link when both ends run OSPF non-passive on it,
//! in the same area, both interfaces up, not cut, no 100 % loss in either direction; on a LAN
//! every pair of such routers is adjacent. A drop in either direction between two routers
//! (partition, one-way) kills their adjacency (hellos are filtered). The edge cost is the
//! outgoing interface's cost (minimum 1). Each router runs Dijkstra and learns every prefix
//! the others advertise — the subnets of their up OSPF interfaces with carrier (passive ones
//! too; a p2p interface has carrier only while its peer's end is up) and,
//! when `lo` is an OSPF interface, their loopbacks as /32 host routes — at the cost of the
//! path plus the advertiser's interface cost. With `redistribute_static`, a router's static
//! routes are advertised as externals (used when no intra-area route exists; nearest
//! advertiser wins). Next hop = the neighbour's interface address on the first-hop segment.
//! **ECMP**: among equal-cost paths the model forwards on the lowest next-hop address (the
//! kernel hashes flows over all of them). Every equal-cost next hop is kept, and
//! [`Model::ecmp_dependent`] names the pairs whose verdict differs on another branch.
//! **Areas**: adjacency needs equal areas on p2p links; otherwise all areas are flattened into
//! one (no ABR summarisation, no stub areas).
//!
//! **Node faults.**
//! - *stopped*: every interface down; it takes part in nothing.
//! - *paused* (SIGSTOP) and *killed* (SIGKILL): the kernel keeps forwarding and answers ICMP
//!   echo; daemons are gone, so neighbours drop their adjacencies; the routes the daemon had
//!   installed stay in the kernel — modelled as the routes the router would compute if it
//!   were still running under the same faults (faults applied after the freeze are thus
//!   reflected in its table; an approximation of "whatever it had installed"). TCP and UDP
//!   probes *to* a paused/killed node fail ("no responder"); probes *from* it work (the probe
//!   sockets belong to topo, not to the node's processes). A kill lasts until `node start`.
//!
//! **Partitions and drops** are enforced at the receiver: a packet whose source address (as
//! it arrives, after NAT) belongs to node `from` is dropped when it is delivered locally to
//! node `to` and `(from, to)` is in [`topo_lab::FaultState::drops`]. Forwarded traffic is
//! not filtered.
//!
//! **NAT.** Traffic leaving an interface listed in `NodePlan::masquerade` gets that
//! interface's (first) address as source. Replies to it are translated back by conntrack
//! before routing and forwarded to the original sender. A reply that leaves a masquerading
//! interface of a node that did not see the request is translated too, and the sender then
//! rejects it (the source does not match the flow).
//!
//! **Packet walk.** Source address = the address of the outgoing interface of the route the
//! sender picks (else its primary address). Initial TTL 64; a router forwards only a packet
//! with TTL > 1 (so loops end with "TTL expired"). The result names the node where it was
//! delivered or dropped, why, the hop path (each router traversed with its *ingress*
//! interface address, then the destination with the probed address) and the source address
//! as the receiver saw it.
//!
//! **Probes.** The destination of a pair is the target's primary address
//! (`NodePlan::primary_address`). UDP = the request is delivered and a responder is alive on
//! the target (one way). ICMP and TCP = round trip: the request is delivered and the reply
//! (from the probed address to the source address the target observed, through the target's
//! own routing, filters applying at the sender's input) is delivered with the probed address
//! as its source. TCP assumes a responder listens on every node on every port.
//! NAT checks ([`Model::nat`]) need both directions, since the responder echoes what it saw.
//!
//! # Where the model may knowingly differ from the kernel
//!
//! - ECMP: one path (lowest next hop) instead of the kernel's per-flow hash — paths differ,
//!   and so does reachability when one equal-cost branch is silently broken (a `link cut` of
//!   a router's LAN attachment leaves the interface up, so both routers keep advertising the
//!   LAN): the kernel's hash decides per flow (fixture `ecmp-hash-decides` of the differential
//!   check). The model does not guess the hash: [`Model::ecmp_dependent`] marks the pairs
//!   whose delivered/dropped verdict changes when one multipath route takes another of its
//!   next hops (one deviation at a time, at most [`Model::ECMP_MAX_BRANCHES`] branches), and
//!   the differential check accepts either kernel outcome for those pairs only. The primary
//!   answer ([`Model::reach`], snapshots) is still the lowest-next-hop one.
//! - OSPF on LANs: a full mesh of adjacencies instead of DR/BDR; with drops between routers
//!   of one LAN, pairs whose hellos are filtered are simply not adjacent.
//! - Areas are flattened; `redistribute_static` advertises the plan's static routes as
//!   externals whether FRR sees them as static or kernel routes.
//! - Paused/killed nodes keep "the routes they would compute now" rather than the routes they
//!   really had when they froze; a TCP listener whose process is merely stopped may still
//!   complete handshakes in the kernel — the model says "no responder".
//! - Reverse-path filtering and ICMP redirects are assumed off (the plan turns redirects off).
//!
//! # How the matrix is fast
//!
//! Forwarding decisions depend on the node and the destination only, so [`Model::reach`]
//! memoizes, per destination address, where a packet that arrived at a node ends up; each
//! pair then costs the sender's lookup and one memo lookup per direction. NAT, hop lists and
//! loops take the hop-by-hop walk; a test checks both agree on every pair.
//! [`Model::reach_compact`] returns the same verdicts as node indices and failure codes,
//! without the two name `String`s per pair of the shared [`topo_lab::PairOutcome`] (about half
//! the CPU time of a 1000-node matrix); names and reasons are rendered on demand.

mod fasthash;
mod fib;
mod lab;
mod model;
mod net;
mod ospf;
pub mod snapshot;
pub mod testplan;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

pub use fib::{Origin, Route};
pub use lab::ModelLab;
pub use model::{CompactMatrix, CompactPair, Model, Walk, INITIAL_TTL};
pub use ospf::OSPF_KERNEL_METRIC;
use topo_lab::{FaultState, LabError, ReachMatrix, ReachRequest};
use topo_plan::Plan;

/// Every node's selected routes under `faults`, by node name.
pub fn forwarding_tables(plan: &Plan, faults: &FaultState) -> BTreeMap<String, Vec<Route>> {
    Model::new(plan, faults).all_routes()
}

/// Walk one packet from node `from` to `dst` under `faults`.
pub fn walk(plan: &Plan, faults: &FaultState, from: &str, dst: Ipv4Addr) -> Result<Walk, LabError> {
    Model::new(plan, faults).walk(from, dst)
}

/// The reachability matrix of `req` under `faults`.
pub fn reach_matrix(plan: &Plan, faults: &FaultState, req: &ReachRequest) -> Result<ReachMatrix, LabError> {
    Model::new(plan, faults).reach(req)
}

/// All directed pairs of the plan's nodes for `proto`.
pub fn all_pairs(plan: &Plan, proto: topo_lab::Proto) -> ReachRequest {
    let names: Vec<String> = plan.nodes.iter().map(|n| n.name.clone()).collect();
    ReachRequest { from: names.clone(), to: names, proto }
}
