//! Plan compiler rules, on topologies built directly as IR.
#![allow(clippy::many_single_char_names, clippy::match_wildcard_for_single_variants)] // short names read better in fixtures

mod common;

use common::*;
use topo_plan::{Attachment, RouteOrigin};
use topo_spec::AddrSpec;

#[test]
fn lan_hosts_and_router_get_addresses_in_file_order() {
    let mut t = topo("lab");
    t.networks.push(network("lan", "10.0.0.0/24"));
    t.nodes.push(host("h1", &["lan"]));
    t.nodes.push(router("r1", &["lan"]));
    t.nodes.push(host("h2", &["lan"]));
    let p = compile(&t);
    // The router holds the reserved gateway .1; hosts get the next free addresses in file order.
    assert_eq!(addrs(&p, "h1"), ["10.0.0.2/24"]);
    assert_eq!(addrs(&p, "r1"), ["10.0.0.1/24"]);
    assert_eq!(addrs(&p, "h2"), ["10.0.0.3/24"]);
    assert_eq!(p.fabric.bridges[0].gateway_node.as_deref(), Some("r1"));
    let h1 = p.node("h1").expect("h1");
    assert_eq!(h1.routes.len(), 1);
    assert_eq!(h1.routes[0].to, cidr("0.0.0.0/0"));
    assert_eq!(h1.routes[0].via, ip("10.0.0.1"));
    assert_eq!(h1.routes[0].dev, "eth0");
    assert_eq!(h1.routes[0].origin, RouteOrigin::Gateway);
    assert!(p.node("r1").expect("r1").routes.is_empty(), "routers get no gateway route");
    assert_eq!(h1.netns, "topo-lab.h1");
    assert_eq!(p.fabric.netns, "topo-lab");
    assert_eq!(h1.hostname, "h1");
    match &h1.interfaces[0].attachment {
        Attachment::Network { network, bridge, port } => {
            assert_eq!(network, "lan");
            assert_eq!(bridge, "br-lan");
            assert_eq!(port, "p0-0");
        }
        other => panic!("unexpected attachment {other:?}"),
    }
}

#[test]
fn statics_are_reserved_before_auto_allocation() {
    let mut t = topo("lab");
    t.networks.push(network("lan", "10.0.0.0/24"));
    t.nodes.push(host("h1", &["lan"]));
    let mut h2 = host("h2", &["lan"]);
    h2.interfaces[0].address = AddrSpec::Static(ip("10.0.0.2"));
    t.nodes.push(h2);
    t.nodes.push(host("h3", &["lan"]));
    let p = compile(&t);
    // .1 is the reserved gateway (held by nobody), .2 is h2's static address (later in the file).
    assert_eq!(addrs(&p, "h1"), ["10.0.0.3/24"]);
    assert_eq!(addrs(&p, "h2"), ["10.0.0.2/24"]);
    assert_eq!(addrs(&p, "h3"), ["10.0.0.4/24"]);
    assert_eq!(p.fabric.bridges[0].gateway_node, None);
    assert!(p.node("h1").expect("h1").routes.is_empty(), "no route via an unheld gateway");
}

#[test]
fn links_get_31s_from_the_pool_a_then_b() {
    let mut t = topo("lab");
    t.nodes.push(router("r1", &[]));
    t.nodes.push(router("r2", &[]));
    t.nodes.push(router("r3", &[]));
    t.links.push(link("r1", "r2"));
    t.links.push(link("r2", "r3"));
    let mut fixed = link("r3", "r1");
    fixed.subnet = Some(cidr("10.255.0.2/31")); // static: the allocator must skip it
    t.links.push(fixed);
    t.links.push(link("r1", "r3"));
    let p = compile(&t);
    let subnets: Vec<String> = p.links.iter().map(|l| l.subnet.to_string()).collect();
    assert_eq!(subnets, ["10.255.0.0/31", "10.255.0.4/31", "10.255.0.2/31", "10.255.0.6/31"]);
    assert_eq!(p.links[0].a.address, cidr("10.255.0.0/31"));
    assert_eq!(p.links[0].b.address, cidr("10.255.0.1/31"));
    assert_eq!(p.links[0].a.iface, "eth0");
    assert_eq!(p.links[1].a.iface, "eth1", "r2's second link interface");
    assert_eq!(p.links[2].b.address, cidr("10.255.0.3/31"));
    // Interface side agrees with the link side.
    let r2 = p.node("r2").expect("r2");
    assert_eq!(r2.interfaces[0].addresses, [cidr("10.255.0.1/31")]);
    match &r2.interfaces[0].attachment {
        Attachment::Link { link, peer_node, peer_iface } => {
            assert_eq!(*link, 0);
            assert_eq!(peer_node, "r1");
            assert_eq!(peer_iface, "eth0");
        }
        other => panic!("unexpected attachment {other:?}"),
    }
}

#[test]
fn links_get_30s_when_asked() {
    let mut t = topo("lab");
    t.pools.p2p_prefix = 30;
    t.nodes.push(router("r1", &[]));
    t.nodes.push(router("r2", &[]));
    t.links.push(link("r1", "r2"));
    t.links.push(link("r2", "r1"));
    let p = compile(&t);
    assert_eq!(p.links[0].subnet, cidr("10.255.0.0/30"));
    assert_eq!(p.links[0].a.address, cidr("10.255.0.1/30"));
    assert_eq!(p.links[0].b.address, cidr("10.255.0.2/30"));
    assert_eq!(p.links[1].subnet, cidr("10.255.0.4/30"));
    assert_eq!(p.links[1].a.node, "r2");
    assert_eq!(p.links[1].a.address, cidr("10.255.0.5/30"));
}

#[test]
fn static_link_end_addresses_are_respected() {
    let mut t = topo("lab");
    t.nodes.push(router("r1", &[]));
    t.nodes.push(router("r2", &[]));
    // Static b end, no subnet: the link lives in the /31 around it and a takes the other half.
    let mut l = link("r1", "r2");
    l.b.address = Some(ip("10.9.0.4"));
    t.links.push(l);
    // Static subnet bigger than a /31, static a end: b takes the lowest free host.
    let mut l2 = link("r1", "r2");
    l2.subnet = Some(cidr("192.168.7.0/29"));
    l2.a.address = Some(ip("192.168.7.1"));
    t.links.push(l2);
    // An auto link must not land on the /31 that the static end implied.
    t.pools.p2p = cidr("10.9.0.4/30");
    t.links.push(link("r2", "r1"));
    let p = compile(&t);
    assert_eq!(p.links[0].subnet, cidr("10.9.0.4/31"));
    assert_eq!(p.links[0].a.address, cidr("10.9.0.5/31"));
    assert_eq!(p.links[0].b.address, cidr("10.9.0.4/31"));
    assert_eq!(p.links[1].a.address, cidr("192.168.7.1/29"));
    assert_eq!(p.links[1].b.address, cidr("192.168.7.2/29"));
    assert_eq!(p.links[2].subnet, cidr("10.9.0.6/31"));
}

#[test]
fn network_exhaustion_points_at_the_first_unserved_interface() {
    let mut t = topo("lab");
    t.networks.push(network("tiny", "10.0.0.0/29")); // 6 hosts, .1 reserved as gateway
    for i in 0..8 {
        let mut h = host(&format!("h{i}"), &["tiny"]);
        h.interfaces[0].span = sp(100 + i);
        t.nodes.push(h);
    }
    let diags = topo_plan::compile(&t).expect_err("pool is too small");
    assert_eq!(diags.len(), 1, "one diagnostic per exhausted network: {diags:#?}");
    let d = &diags[0];
    assert_eq!(d.code, "topo::pool-exhausted");
    // .2-.6 serve h0..h4; h5 is the first interface left without an address.
    assert_eq!(d.span, Some(sp(105)));
    assert!(d.message.contains("and 2 more"), "{}", d.message);
    assert!(d.help.as_deref().unwrap_or("").contains("bigger subnet"), "{d:?}");
    assert_eq!(d.related[0].0, sp(11), "points at the subnet too");
}

#[test]
fn p2p_exhaustion_points_at_the_link() {
    let mut t = topo("lab");
    t.pools.p2p = cidr("10.255.0.0/30"); // two /31s
    t.nodes.push(router("r1", &[]));
    t.nodes.push(router("r2", &[]));
    for i in 0..3 {
        let mut l = link("r1", "r2");
        l.span = sp(200 + i);
        t.links.push(l);
    }
    let diags = topo_plan::compile(&t).expect_err("pool is too small");
    assert_eq!(diags.len(), 1, "{diags:#?}");
    assert_eq!(diags[0].code, "topo::p2p-pool-exhausted");
    assert_eq!(diags[0].span, Some(sp(202)));
    assert!(diags[0].help.as_deref().unwrap_or("").contains("pools.p2p"));
    assert_eq!(diags[0].related[0].0, sp(2));
}

#[test]
fn interface_names_respect_user_names_and_links_come_last() {
    let mut t = topo("lab");
    t.networks.push(network("a", "10.0.0.0/24"));
    t.networks.push(network("b", "10.0.1.0/24"));
    let mut r = router("r1", &["a", "b"]);
    r.interfaces[1].name = Some("eth0".into());
    t.nodes.push(r);
    t.nodes.push(router("r2", &[]));
    let mut l = link("r2", "r1");
    l.b.name = Some("uplink".into());
    t.links.push(l);
    t.links.push(link("r1", "r2"));
    let p = compile(&t);
    let names: Vec<&str> = p.node("r1").expect("r1").interfaces.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["eth1", "eth0", "uplink", "eth2"]);
}

#[test]
fn duplicate_user_interface_names_are_reported() {
    let mut t = topo("lab");
    t.networks.push(network("a", "10.0.0.0/24"));
    t.networks.push(network("b", "10.0.1.0/24"));
    let mut h = host("h", &["a", "b"]);
    h.interfaces[0].name = Some("x".into());
    h.interfaces[1].name = Some("x".into());
    h.interfaces[1].span = sp(77);
    t.nodes.push(h);
    let diags = topo_plan::compile(&t).expect_err("duplicate name");
    assert_eq!(diags[0].code, "topo::duplicate-interface");
    assert_eq!(diags[0].span, Some(sp(77)));
}

#[test]
fn static_routes_resolve_to_their_interface() {
    let mut t = topo("lab");
    t.networks.push(network("a", "10.0.0.0/24"));
    t.networks.push(network("b", "10.0.1.0/24"));
    let mut h = host("h", &["a", "b"]);
    h.routes.push(route("172.16.0.0/16", "10.0.1.9"));
    h.routes.push(route("0.0.0.0/0", "10.0.0.7"));
    t.nodes.push(h);
    t.nodes.push(router("r", &["a"]));
    let p = compile(&t);
    let h = p.node("h").expect("h");
    assert_eq!(h.routes.len(), 2, "own default route: no gateway route added: {:?}", h.routes);
    assert_eq!(h.routes[0].dev, "eth1");
    assert_eq!(h.routes[0].origin, RouteOrigin::Static);
    assert_eq!(h.routes[1].dev, "eth0");
    assert_eq!(h.routes[1].to, cidr("0.0.0.0/0"));
}

#[test]
fn unreachable_next_hop_is_an_error_at_the_route() {
    let mut t = topo("lab");
    t.networks.push(network("a", "10.0.0.0/24"));
    let mut h = host("h", &["a"]);
    let mut r = route("172.16.0.0/16", "10.9.9.9");
    r.span = sp(55);
    h.routes.push(r);
    t.nodes.push(h);
    let diags = topo_plan::compile(&t).expect_err("next hop not connected");
    assert_eq!(diags.len(), 1);
    assert_eq!(diags[0].code, "topo::unreachable-gateway");
    assert_eq!(diags[0].span, Some(sp(55)));
    assert!(diags[0].help.as_deref().unwrap_or("").contains("10.0.0.0/24"), "{:?}", diags[0].help);
}

#[test]
fn gateway_route_uses_first_network_with_a_held_gateway() {
    let mut t = topo("lab");
    t.networks.push(network("nogw", "10.0.0.0/24"));
    t.networks.push(network("lan", "10.0.1.0/24"));
    t.networks.push(network("lan2", "10.0.2.0/24"));
    t.nodes.push(host("h", &["nogw", "lan", "lan2"]));
    t.nodes.push(router("r", &["lan", "lan2"]));
    let p = compile(&t);
    let h = p.node("h").expect("h");
    assert_eq!(h.routes.len(), 1);
    assert_eq!(h.routes[0].via, ip("10.0.1.1"));
    assert_eq!(h.routes[0].dev, "eth1");
    assert_eq!(p.fabric.bridges[0].gateway_node, None);
    assert_eq!(p.fabric.bridges[1].gateway_node.as_deref(), Some("r"));
}

#[test]
fn static_gateway_holder_wins_over_first_auto_router() {
    let mut t = topo("lab");
    t.networks.push(network("lan", "10.0.0.0/24"));
    t.nodes.push(router("r1", &["lan"]));
    let mut r2 = router("r2", &["lan"]);
    r2.interfaces[0].address = AddrSpec::Static(ip("10.0.0.1"));
    t.nodes.push(r2);
    let p = compile(&t);
    assert_eq!(p.fabric.bridges[0].gateway_node.as_deref(), Some("r2"));
    assert_eq!(addrs(&p, "r1"), ["10.0.0.2/24"]);
}

#[test]
fn gateway_none_means_no_holder() {
    let mut t = topo("lab");
    let mut n = network("lan", "10.0.0.0/24");
    n.gateway = None;
    t.networks.push(n);
    t.nodes.push(router("r", &["lan"]));
    t.nodes.push(host("h", &["lan"]));
    let p = compile(&t);
    assert_eq!(addrs(&p, "r"), ["10.0.0.1/24"]);
    assert_eq!(addrs(&p, "h"), ["10.0.0.2/24"]);
    assert!(p.node("h").expect("h").routes.is_empty());
}

#[test]
fn dhcp_interfaces_get_no_address() {
    let mut t = topo("lab");
    t.networks.push(network("lan", "10.0.0.0/24"));
    let mut h = host("h", &["lan"]);
    h.interfaces[0].address = AddrSpec::Dhcp;
    t.nodes.push(h);
    t.nodes.push(router("r", &["lan"]));
    let p = compile(&t);
    let h = p.node("h").expect("h");
    assert!(h.interfaces[0].dhcp);
    assert!(h.interfaces[0].addresses.is_empty());
    assert!(h.routes.is_empty(), "DHCP brings its own default route");
    assert!(p.hosts.iter().all(|e| e.name != "h"), "no address, no hosts entry");
}

#[test]
fn macs_are_unique_stable_and_locally_administered() {
    let mut t = topo("lab");
    t.networks.push(network("lan", "10.0.0.0/16"));
    for i in 0..2000 {
        t.nodes.push(host(&format!("h{i}"), &["lan"]));
    }
    let p = compile(&t);
    let macs: std::collections::BTreeSet<_> =
        p.nodes.iter().flat_map(|n| n.interfaces.iter().map(|i| i.mac)).collect();
    assert_eq!(macs.len(), 2000);
    let ports: std::collections::BTreeSet<_> = p
        .nodes
        .iter()
        .flat_map(|n| n.interfaces.iter())
        .filter_map(|i| match &i.attachment {
            Attachment::Network { port, .. } => Some(port.clone()),
            Attachment::Link { .. } => None,
        })
        .collect();
    assert_eq!(ports.len(), 2000, "fabric ports are unique");
    assert!(ports.iter().all(|p| p.len() <= 15));
    assert!(macs.iter().all(|m| m.0[0] == 0x02));
    // Independent of other nodes: the same node in a different lab file keeps its MAC.
    let mut t2 = topo("lab");
    t2.networks.push(network("lan", "10.0.0.0/16"));
    t2.nodes.push(host("h7", &["lan"]));
    assert_eq!(compile(&t2).nodes[0].interfaces[0].mac, p.node("h7").expect("h7").interfaces[0].mac);
}

#[test]
fn mtu_precedence() {
    let mut t = topo("lab");
    let mut n = network("lan", "10.0.0.0/24");
    n.mtu = Some(9000);
    t.networks.push(n);
    let mut h = host("h", &["lan"]);
    h.interfaces[0].mtu = Some(1400);
    t.nodes.push(h);
    t.nodes.push(host("g", &["lan"]));
    t.nodes.push(router("r1", &[]));
    t.nodes.push(router("r2", &[]));
    t.links.push(link("r1", "r2"));
    let mut l = link("r1", "r2");
    l.mtu = Some(1300);
    t.links.push(l);
    let p = compile(&t);
    assert_eq!(p.node("h").expect("h").interfaces[0].mtu, 1400);
    assert_eq!(p.node("g").expect("g").interfaces[0].mtu, 9000);
    assert_eq!(p.fabric.bridges[0].mtu, 9000);
    let r1 = p.node("r1").expect("r1");
    assert_eq!(r1.interfaces[0].mtu, 1500);
    assert_eq!(r1.interfaces[1].mtu, 1300);
    assert_eq!(p.links[1].mtu, 1300);
}

#[test]
fn sysctls_routers_forward_ipv6_off_user_wins() {
    let mut t = topo("lab");
    t.networks.push(network("lan", "10.0.0.0/24"));
    let mut r = router("r", &["lan"]);
    r.sysctls.insert("net.ipv4.conf.all.rp_filter".into(), "2".into());
    t.nodes.push(r);
    t.nodes.push(host("h", &["lan"]));
    let p = compile(&t);
    let r = &p.node("r").expect("r").sysctls;
    assert_eq!(r.get("net.ipv4.ip_forward").map(String::as_str), Some("1"));
    assert_eq!(r.get("net.ipv4.conf.default.send_redirects").map(String::as_str), Some("0"));
    assert_eq!(r.get("net.ipv4.conf.all.rp_filter").map(String::as_str), Some("2"), "user overrides");
    assert_eq!(r.get("net.ipv6.conf.all.disable_ipv6").map(String::as_str), Some("1"));
    let h = &p.node("h").expect("h").sysctls;
    assert_eq!(h.get("net.ipv4.ip_forward").map(String::as_str), Some("0"), "hosts never forward");
    assert_eq!(h.get("net.ipv6.conf.default.disable_ipv6").map(String::as_str), Some("1"));
}

#[test]
fn ipv6_mirrors_the_ipv4_host_offset() {
    let mut t = topo("lab");
    let mut n = network("lan", "10.0.0.0/24");
    n.subnet6 = Some("fd00:1::/64".parse().expect("v6"));
    t.networks.push(n);
    t.nodes.push(router("r", &["lan"]));
    let mut h1 = host("h1", &["lan"]);
    h1.interfaces[0].address6 = Some("fd00:1::3".parse().expect("v6")); // steals h2's mirror
    t.nodes.push(h1);
    t.nodes.push(host("h2", &["lan"]));
    let p = compile(&t);
    let v6 = |n: &str| p.node(n).expect("node").interfaces[0].addresses6[0].to_string();
    assert_eq!(v6("r"), "fd00:1::1/64");
    assert_eq!(v6("h1"), "fd00:1::3/64");
    // h2 has 10.0.0.3; ::3 is taken, so it falls back to the lowest free offset.
    assert_eq!(addrs(&p, "h2"), ["10.0.0.3/24"]);
    assert_eq!(v6("h2"), "fd00:1::2/64");
    let h = &p.node("h2").expect("h2").sysctls;
    assert_eq!(h.get("net.ipv6.conf.all.accept_dad").map(String::as_str), Some("0"));
    assert_eq!(h.get("net.ipv6.conf.all.disable_ipv6"), None);
}

#[test]
fn hosts_sorted_and_start_order_topological() {
    let mut t = topo("lab");
    t.networks.push(network("lan", "10.0.0.0/24"));
    let mut app = host("app", &["lan"]);
    app.depends_on = vec!["db".into()];
    t.nodes.push(app);
    t.nodes.push(host("zed", &["lan"]));
    t.nodes.push(host("db", &["lan"]));
    let p = compile(&t);
    let names: Vec<&str> = p.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["app", "db", "zed"]);
    assert_eq!(p.hosts[0].address, ip("10.0.0.2"));
    assert_eq!(p.start_order, [1, 2, 0]);
}

#[test]
fn dependency_cycle_does_not_hang() {
    let mut t = topo("lab");
    let mut a = host("a", &[]);
    a.depends_on = vec!["b".into()];
    let mut b = host("b", &[]);
    b.depends_on = vec!["a".into()];
    t.nodes.push(a);
    t.nodes.push(b);
    let diags = topo_plan::compile(&t).expect_err("cycle");
    assert_eq!(diags[0].code, "topo::dependency-cycle");
}

#[test]
fn masquerade_resolves_attachment_names() {
    let mut t = topo("lab");
    t.networks.push(network("lan", "10.0.0.0/24"));
    t.networks.push(network("wan", "10.1.0.0/24"));
    let mut r = router("r", &["lan", "wan"]);
    r.masquerade = vec!["isp".into(), "wan".into()];
    t.nodes.push(r);
    t.nodes.push(router("isp", &[]));
    t.links.push(link("isp", "r"));
    let p = compile(&t);
    assert_eq!(p.node("r").expect("r").masquerade, ["eth2", "eth1"]);

    t.nodes[0].masquerade = vec!["nowhere".into()];
    let diags = topo_plan::compile(&t).expect_err("unknown attachment");
    assert_eq!(diags[0].code, "topo::unknown-attachment");
}

#[test]
fn same_input_same_json() {
    let mut t = topo("lab");
    t.networks.push(network("lan", "10.0.0.0/24"));
    t.networks.push(network("dmz", "10.0.1.0/24"));
    t.nodes.push(router("r", &["lan", "dmz"]));
    for i in 0..20 {
        t.nodes.push(host(&format!("h{i}"), &[if i % 2 == 0 { "lan" } else { "dmz" }]));
    }
    t.nodes.push(router("r2", &["dmz"]));
    t.links.push(link("r", "r2"));
    let a = compile(&t).to_json();
    let b = compile(&t.clone()).to_json();
    assert_eq!(a, b);
}

fn ospf() -> topo_spec::Ospf {
    topo_spec::Ospf {
        router_id: None,
        area: ip("0.0.0.0"),
        hello_interval: 1,
        dead_interval: 4,
        fast: true,
        bfd: false,
        bfd_interval_ms: 100,
        bfd_multiplier: 3,
        interfaces: std::collections::BTreeMap::new(),
        redistribute_static: false,
    }
}

fn with_ospf(mut n: topo_spec::Node, o: topo_spec::Ospf) -> topo_spec::Node {
    n.routing =
        Some(topo_spec::Routing { daemon: topo_spec::RoutingDaemon::Frr, span: sp(60), ospf: Some(o) });
    n
}

#[test]
fn ospf_plan_covers_every_attachment_and_lo() {
    let mut t = topo("lab");
    t.networks.push(network("lan", "10.0.0.0/24"));
    let mut o = ospf();
    o.interfaces.insert(
        "lan".into(),
        topo_spec::OspfIface { cost: Some(50), passive: true, area: Some(ip("0.0.0.1")), span: sp(61) },
    );
    let mut r1 = with_ospf(router("r1", &["lan"]), o);
    r1.loopbacks.push(cidr("192.168.255.1/32"));
    t.nodes.push(r1);
    t.nodes.push(with_ospf(router("r2", &[]), ospf()));
    t.links.push(link("r1", "r2"));
    let p = compile(&t);

    let r1 = p.node("r1").expect("r1").routing.as_ref().expect("routing");
    let o1 = r1.ospf.as_ref().expect("ospf");
    assert_eq!(o1.router_id, ip("192.168.255.1"), "first loopback");
    let view: Vec<(&str, String, u32, bool, bool)> = o1
        .interfaces
        .iter()
        .map(|i| (i.iface.as_str(), i.area.to_string(), i.cost, i.passive, i.point_to_point))
        .collect();
    assert_eq!(
        view,
        [
            ("eth0", "0.0.0.1".to_string(), 50, true, false),
            ("eth1", "0.0.0.0".to_string(), 10, false, true),
            ("lo", "0.0.0.0".to_string(), 10, true, false),
        ]
    );
    let o2 = p.node("r2").expect("r2").routing.as_ref().and_then(|r| r.ospf.as_ref()).expect("ospf");
    assert_eq!(o2.router_id, ip("10.255.0.1"), "first interface address when no loopback");
    assert!(o2.fast);
    assert_eq!(o2.dead_interval, 4);
}

#[test]
fn ospf_settings_for_unknown_attachment_are_reported() {
    let mut t = topo("lab");
    t.networks.push(network("lan", "10.0.0.0/24"));
    let mut o = ospf();
    o.interfaces.insert("elsewhere".into(), topo_spec::OspfIface { span: sp(66), ..Default::default() });
    t.nodes.push(with_ospf(router("r1", &["lan"]), o));
    let diags = topo_plan::compile(&t).expect_err("unknown key");
    assert_eq!(diags[0].code, "topo::unknown-attachment");
    assert_eq!(diags[0].span, Some(sp(66)));
}

#[test]
fn ospf_without_any_address_needs_a_router_id() {
    let mut t = topo("lab");
    t.nodes.push(with_ospf(router("r1", &[]), ospf()));
    let diags = topo_plan::compile(&t).expect_err("no router id");
    assert_eq!(diags[0].code, "topo::no-router-id");
    assert_eq!(diags[0].span, Some(sp(60)));
}

#[test]
fn route_to_a_connected_subnet_is_reported_unless_it_has_a_metric() {
    let mut t = topo("lab");
    t.networks.push(network("a", "10.0.0.0/24"));
    let mut h = host("h", &["a"]);
    let mut r = route("10.0.0.0/24", "10.0.0.9");
    r.span = sp(57);
    h.routes.push(r);
    t.nodes.push(h);
    let diags = topo_plan::compile(&t).expect_err("duplicate of the connected route");
    assert_eq!(diags[0].code, "topo::route-to-connected");
    assert_eq!(diags[0].span, Some(sp(57)));

    t.nodes[0].routes[0].metric = Some(100);
    let p = compile(&t);
    assert_eq!(p.nodes[0].routes[0].metric, Some(100));
}
