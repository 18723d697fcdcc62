//! `topo-plan`: the provisioning engine. Turns a validated [`topo_spec::Topology`] into a
//! [`Plan`]: address allocation (IPAM), kernel object names, MACs, routes, sysctls and routing
//! daemon configs. Pure and deterministic: the same topology gives a byte-identical
//! [`Plan::to_json`], and all passes are `O(n log n)` in the size of the topology.
//!
//! # Rules
//!
//! **Names** (see [`names`]): node namespace `topo-<lab>.<node>`, fabric namespace `topo-<lab>`;
//! node-side interfaces as named in the file, else `eth0`, `eth1`, ... in attachment order
//! (network attachments in file order, then links in link order), skipping names the user took;
//! bridges `br-<network>` (or `br<index>` when that is over 15 characters); fabric-side ports
//! `p<node index>-<interface index>`; hostname = node name.
//!
//! **IPv4 on networks**: every static address in the lab is reserved first (interfaces, link
//! ends, loopbacks, and each network's gateway). A network's gateway address is held by the node
//! that gives it statically, else by the first router (file order) attached with `auto`
//! ([`BridgePlan::gateway_node`]); with no such node it stays reserved and unused. Then `auto`
//! interfaces get, in file order, the lowest free host address of their network's subnet
//! (network and broadcast addresses excluded; /31 and /32 use all addresses). DHCP interfaces
//! get no address. An exhausted subnet is an error at the first interface that found it empty.
//!
//! **Links**: a static `subnet` is used as is; a link with a static end address but no subnet
//! lives in the `pools.p2p_prefix`-sized block around that address; every other link gets the
//! next free /31 (or /30 with `p2p_prefix: 30`) of `pools.p2p`, in link order, skipping blocks
//! that overlap static link subnets or networks or hold a static address. Auto ends take the
//! lowest free host addresses: on a /31 `a` gets .0 and `b` .1, on a /30 .1 and .2. An exhausted
//! pool is an error at the first link left without a subnet.
//!
//! **IPv6**: on networks with `subnet6`, a static `address6` is used as is; otherwise the
//! interface gets the address with the same host offset as its IPv4 address (10.0.0.5 ->
//! `<subnet6>::5`), falling back to the lowest free offset. Links are IPv4-only.
//!
//! **MACs** (see [`mac`]): `02:` + 5 bytes of SHA-256(lab, node, ifname); collisions rehash.
//!
//! **MTU**: interface `mtu`, else the network's or link's, else 1500.
//!
//! **Routes**: connected routes are implicit (the kernel adds them). Static routes are resolved
//! to the interface whose subnet contains `via` (an error when none does). Hosts without a
//! default route of their own get `default via <gateway>` ([`RouteOrigin::Gateway`]) through the
//! first of their networks whose gateway is held by some node.
//!
//! **Sysctls**: routers get `net.ipv4.ip_forward=1` and `net.ipv4.conf.{all,default}.rp_filter=0`
//! (strict reverse-path filtering, often inherited from the host, drops legitimately asymmetric
//! traffic after a reroute; the backend should set `default` before creating interfaces). Nodes
//! without IPv6 addresses get `net.ipv6.conf.{all,default}.disable_ipv6=1` (no link-local
//! addresses, DAD or router solicitations: faster bring-up); nodes with IPv6 get
//! `accept_dad=0` (the plan guarantees uniqueness) and routers `net.ipv6.conf.all.forwarding=1`.
//! The user's sysctls override all of these.
//!
//! **Hosts file**: one entry per node with its primary address (first interface address, else
//! first loopback), sorted by name. **Start order**: topological order of `depends_on`, ties in
//! file order.
//!
//! **Masquerade**: attachment names (network, or link peer node) resolve to node-side interface
//! names. **OSPF**: router id as given, else the first loopback, else the first interface
//! address; every attachment is an OSPF interface (LANs broadcast, links point-to-point) plus
//! passive `lo`, with area/cost (default 10)/passive from the settings keyed by attachment name
//! (`lo` may be keyed too). FRR configs come from [`daemons::render_frr`].

pub mod compile;
pub mod daemons;
pub mod ipam;
pub mod mac;
pub mod names;
pub mod order;
pub mod types;

pub use types::*;

use topo_spec::{Diagnostic, Diagnostics, SourceFile, Topology};

/// Compile a validated topology into a plan. Errors (e.g. an exhausted address pool) carry
/// spans into the topology file; all of them are reported, not just the first.
pub fn compile(topology: &Topology) -> Result<Plan, Vec<Diagnostic>> {
    compile::compile(topology)
}

/// Parse, validate and compile topology text in one step. `path` is used in diagnostics only.
pub fn plan_str(path: &str, text: &str) -> Result<Plan, Diagnostics> {
    let topology = topo_spec::parse_str(path, text)?;
    compile(&topology).map_err(|items| Diagnostics { source: SourceFile::new(path, text), items })
}

/// Load, validate and compile a topology file in one step.
pub fn plan_file(path: &std::path::Path) -> Result<Plan, Diagnostics> {
    let (topology, source) = topo_spec::load_with_source(path)?;
    compile(&topology).map_err(|items| Diagnostics { source, items })
}
