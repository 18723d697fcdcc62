//! Builders for topology IR values, so plan tests don't depend on the YAML parser.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use topo_spec::{
    AddrSpec, Impairment, Interface, Link, LinkEnd, Network, Node, NodeKind, Pools, Span, StaticRoute,
    Topology,
};

/// A distinct, recognisable span per call site: line `line`.
pub fn sp(line: u32) -> Span {
    Span { offset: line as usize * 100, len: 4, line, col: 3 }
}

pub fn cidr(s: &str) -> Ipv4Net {
    s.parse().expect("test cidr")
}

pub fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("test address")
}

pub fn topo(name: &str) -> Topology {
    Topology {
        name: name.into(),
        name_span: sp(1),
        pools: Pools { p2p: cidr("10.255.0.0/16"), p2p_span: sp(2), p2p_prefix: 31 },
        networks: Vec::new(),
        nodes: Vec::new(),
        links: Vec::new(),
    }
}

/// A network with the default gateway (first host address).
pub fn network(name: &str, subnet: &str) -> Network {
    let subnet = cidr(subnet);
    Network {
        name: name.into(),
        span: sp(10),
        subnet,
        subnet_span: sp(11),
        subnet6: None,
        gateway: subnet.hosts().next(),
        gateway_span: sp(12),
        mtu: None,
    }
}

pub fn node(name: &str, kind: NodeKind, nets: &[&str]) -> Node {
    Node {
        name: name.into(),
        span: sp(20),
        kind,
        groups: Vec::new(),
        counter: None,
        interfaces: nets.iter().map(|n| iface(n)).collect(),
        loopbacks: Vec::new(),
        routes: Vec::new(),
        sysctls: BTreeMap::new(),
        depends_on: Vec::new(),
        labels: BTreeMap::new(),
        routing: None,
        masquerade: Vec::new(),
    }
}

pub fn host(name: &str, nets: &[&str]) -> Node {
    node(name, NodeKind::Host, nets)
}

pub fn router(name: &str, nets: &[&str]) -> Node {
    node(name, NodeKind::Router, nets)
}

pub fn iface(net: &str) -> Interface {
    Interface {
        name: None,
        network: net.into(),
        span: sp(30),
        address: AddrSpec::Auto,
        address_span: sp(31),
        address6: None,
        mtu: None,
    }
}

pub fn link(a: &str, b: &str) -> Link {
    Link {
        span: sp(40),
        a: LinkEnd { node: a.into(), span: sp(41), name: None, address: None },
        b: LinkEnd { node: b.into(), span: sp(42), name: None, address: None },
        subnet: None,
        mtu: None,
        impair_ab: Impairment::default(),
        impair_ba: Impairment::default(),
    }
}

pub fn route(to: &str, via: &str) -> StaticRoute {
    StaticRoute { to: cidr(to), via: ip(via), metric: None, span: sp(50) }
}

pub fn compile(t: &Topology) -> topo_plan::Plan {
    match topo_plan::compile(t) {
        Ok(p) => p,
        Err(d) => panic!("unexpected diagnostics: {d:#?}"),
    }
}

pub fn addrs(p: &topo_plan::Plan, node: &str) -> Vec<String> {
    p.node(node)
        .expect("node in plan")
        .interfaces
        .iter()
        .flat_map(|i| i.addresses.iter().map(ToString::to_string))
        .collect()
}
