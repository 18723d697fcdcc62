//! Property tests: random valid topologies (built as IR) always compile to a plan without
//! duplicate addresses, with every address inside its subnet, and byte-identical when compiled
//! twice.
#![allow(clippy::many_single_char_names, clippy::match_wildcard_for_single_variants)] // short names read better in fixtures

mod common;

use std::collections::{BTreeSet, HashSet};
use std::net::Ipv4Addr;

use common::*;
use ipnet::Ipv4Net;
use proptest::prelude::*;
use topo_plan::{Attachment, Plan};
use topo_spec::{AddrSpec, Topology};

#[derive(Debug, Clone)]
struct NodeRecipe {
    router: bool,
    /// (network seed, static address seed when Some)
    atts: Vec<(usize, Option<u32>)>,
}

#[derive(Debug, Clone)]
struct Recipe {
    nets: Vec<(bool, bool, u8)>, // (has gateway, has subnet6, spare prefix bits)
    nodes: Vec<NodeRecipe>,
    links: Vec<(usize, usize, u8)>, // (a seed, b seed, kind: 0..=5 auto, 6 static subnet, 7 static end)
    p2p30: bool,
}

fn recipe() -> impl Strategy<Value = Recipe> {
    let nets = prop::collection::vec((any::<bool>(), any::<bool>(), 0u8..3), 1..6);
    let node =
        (any::<bool>(), prop::collection::vec((0usize..100, prop::option::weighted(0.2, 0u32..1000)), 0..4))
            .prop_map(|(router, atts)| NodeRecipe { router, atts });
    let nodes = prop::collection::vec(node, 1..40);
    let links = prop::collection::vec((0usize..1000, 0usize..1000, 0u8..8), 0..30);
    (nets, nodes, links, any::<bool>()).prop_map(|(nets, nodes, links, p2p30)| Recipe {
        nets,
        nodes,
        links,
        p2p30,
    })
}

/// Build a valid topology from a recipe: non-overlapping subnets sized for their attachments,
/// unique static addresses that avoid gateways, distinct link ends.
fn build(r: &Recipe) -> Topology {
    let mut t = topo("prop");
    if r.p2p30 {
        t.pools.p2p_prefix = 30;
    }
    let k = r.nets.len();
    let mut count = vec![0u32; k];
    for n in &r.nodes {
        let mut seen = BTreeSet::new();
        for (net, _) in &n.atts {
            if seen.insert(net % k) {
                count[net % k] += 1;
            }
        }
    }
    for (i, (gw, v6, spare)) in r.nets.iter().enumerate() {
        // Room for every attachment plus gateway, network and broadcast, plus 0..2 spare bits.
        let need = count[i] + 3;
        let bits = (32 - (need - 1).leading_zeros()) + u32::from(*spare);
        let prefix = (32 - bits.min(16)) as u8;
        let mut n = network(&format!("n{i}"), &format!("10.{i}.0.0/{prefix}"));
        if !gw {
            n.gateway = None;
        }
        if *v6 {
            n.subnet6 = Some(format!("fd00:{i}::/64").parse().expect("v6"));
        }
        t.networks.push(n);
    }
    let mut used: HashSet<Ipv4Addr> = t.networks.iter().filter_map(|n| n.gateway).collect();
    for (ni, n) in r.nodes.iter().enumerate() {
        let mut seen = BTreeSet::new();
        let mut node = if n.router { router(&format!("x{ni}"), &[]) } else { host(&format!("x{ni}"), &[]) };
        if n.router && ni % 2 == 0 {
            // Every other router runs OSPF; the router id comes from its addresses.
            node.loopbacks.push(cidr(&format!("192.168.{}.{}/32", ni / 256, ni % 256)));
            node.routing = Some(topo_spec::Routing {
                daemon: topo_spec::RoutingDaemon::Frr,
                span: sp(60),
                ospf: Some(topo_spec::Ospf {
                    router_id: None,
                    area: Ipv4Addr::UNSPECIFIED,
                    hello_interval: 1,
                    dead_interval: 4,
                    fast: ni % 4 == 0,
                    bfd: ni % 3 == 0,
                    bfd_interval_ms: 100,
                    bfd_multiplier: 3,
                    interfaces: std::collections::BTreeMap::new(),
                    redistribute_static: false,
                }),
            });
        }
        for (net, stat) in &n.atts {
            let net = net % k;
            if !seen.insert(net) {
                continue;
            }
            let mut i = iface(&format!("n{net}"));
            if let Some(seed) = stat {
                let subnet = t.networks[net].subnet;
                let hosts: Vec<Ipv4Addr> = subnet.hosts().collect();
                let a = hosts[*seed as usize % hosts.len()];
                if used.insert(a) {
                    i.address = AddrSpec::Static(a);
                }
            }
            node.interfaces.push(i);
        }
        t.nodes.push(node);
    }
    let n = r.nodes.len();
    for (li, (a, b, kind)) in r.links.iter().enumerate() {
        let (a, b) = (a % n, b % n);
        if a == b {
            continue;
        }
        let mut l = link(&format!("x{a}"), &format!("x{b}"));
        match kind {
            6 => l.subnet = Some(cidr(&format!("172.16.{li}.0/29"))),
            7 => l.a.address = Some(ip(&format!("172.17.{li}.1"))),
            _ => {}
        }
        t.links.push(l);
    }
    t
}

fn host_addr_of(net: Ipv4Net, a: Ipv4Addr) -> bool {
    net.contains(&a) && (net.prefix_len() >= 31 || (a != net.network() && a != net.broadcast()))
}

fn check(t: &Topology, p: &Plan) -> Result<(), TestCaseError> {
    let mut seen4 = HashSet::new();
    let mut seen6 = HashSet::new();
    let mut macs = HashSet::new();
    let mut ports = HashSet::new();
    for n in &p.nodes {
        let mut names = HashSet::new();
        for i in &n.interfaces {
            prop_assert!(names.insert(i.name.clone()), "duplicate ifname {} on {}", i.name, n.name);
            prop_assert!(i.name.len() <= 15);
            prop_assert!(macs.insert(i.mac), "duplicate MAC {}", i.mac);
            if let Attachment::Network { port, bridge, .. } = &i.attachment {
                prop_assert!(port.len() <= 15 && bridge.len() <= 15);
                prop_assert!(ports.insert(port.clone()), "duplicate fabric port {}", port);
            }
            for a in &i.addresses {
                prop_assert!(seen4.insert(a.addr()), "duplicate address {a} ({}/{})", n.name, i.name);
                let subnet = match &i.attachment {
                    Attachment::Network { network, .. } => {
                        t.networks.iter().find(|x| &x.name == network).map(|x| x.subnet).expect("network")
                    }
                    Attachment::Link { link, .. } => p.links[*link].subnet,
                };
                prop_assert_eq!(a.trunc(), subnet, "{} not in its subnet", a);
                prop_assert!(host_addr_of(subnet, a.addr()), "{a} is not a host address of {subnet}");
            }
            for a in &i.addresses6 {
                prop_assert!(seen6.insert(a.addr()), "duplicate v6 address {a}");
            }
        }
        if let Some(o) = n.routing.as_ref().and_then(|r| r.ospf.as_ref()) {
            prop_assert_eq!(o.interfaces.len(), n.interfaces.len() + 1, "every attachment plus lo");
            for oi in &o.interfaces {
                prop_assert!(
                    oi.iface == "lo" || n.iface(&oi.iface).is_some(),
                    "OSPF on unknown {}",
                    oi.iface
                );
            }
            prop_assert!(n.addresses().any(|a| a == o.router_id), "router id is one of the node's addresses");
        }
        for r in &n.routes {
            let dev = n.iface(&r.dev).expect("route dev exists");
            prop_assert!(dev.addresses.iter().any(|a| a.contains(&r.via)));
        }
    }
    for (li, l) in p.links.iter().enumerate() {
        prop_assert_eq!(l.index, li);
        prop_assert!(l.a.address != l.b.address);
        prop_assert_eq!(l.a.address.trunc(), l.subnet);
        prop_assert_eq!(l.b.address.trunc(), l.subnet);
        if t.links[li].subnet.is_none() && t.links[li].a.address.is_none() {
            prop_assert_eq!(l.subnet.prefix_len(), t.pools.p2p_prefix);
            prop_assert!(t.pools.p2p.contains(&l.subnet));
        }
    }
    prop_assert_eq!(p.start_order.iter().copied().collect::<BTreeSet<_>>().len(), p.nodes.len());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_valid_topologies_plan_cleanly(r in recipe()) {
        let t = build(&r);
        let p = topo_plan::compile(&t).map_err(|d| TestCaseError::fail(format!("{d:#?}")))?;
        check(&t, &p)?;
        let again = topo_plan::compile(&t).map_err(|d| TestCaseError::fail(format!("{d:#?}")))?;
        prop_assert_eq!(p.to_json(), again.to_json());
    }
}
