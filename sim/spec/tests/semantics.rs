//! What parsing produces: templates merged, counters expanded, values typed, spans placed.

use std::net::Ipv4Addr;
use std::time::Duration;

use topo_spec::{AddrSpec, NodeKind, RoutingDaemon, Topology};

fn load(rel: &str) -> Topology {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(rel);
    topo_spec::load(&path).unwrap_or_else(|d| panic!("{}", topo_spec::render(&d, false)))
}

fn parse(text: &str) -> Topology {
    topo_spec::parse_str("t.yaml", text).unwrap_or_else(|d| panic!("{}", topo_spec::render(&d, false)))
}

fn node<'a>(t: &'a Topology, name: &str) -> &'a topo_spec::Node {
    t.nodes.iter().find(|n| n.name == name).unwrap_or_else(|| panic!("no node {name}"))
}

#[test]
fn elixir_cluster_counters_and_groups() {
    let t = load("topologies/elixir-cluster.yaml");
    let names: Vec<&str> = t.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "gw",
            "db",
            "elixir-cluster-1",
            "elixir-cluster-2",
            "elixir-cluster-3",
            "elixir-cluster-4",
            "elixir-cluster-5"
        ]
    );
    for i in 1..=5i64 {
        let n = node(&t, &format!("elixir-cluster-{i}"));
        assert_eq!(n.counter, Some(i));
        assert_eq!(n.groups, ["beam"]);
        assert_eq!(n.interfaces[0].address, AddrSpec::Static(Ipv4Addr::new(10, 10, 0, 10 + i as u8)));
        assert_eq!(n.labels["index"], i.to_string());
        assert_eq!(n.labels["app"], "elixir", "group labels merge with the node's");
        assert_eq!(n.depends_on, ["db"]);
        assert_eq!(n.sysctls["net.ipv4.tcp_keepalive_time"], "60");
        // All expanded nodes point at the counter key in the file.
        assert_eq!((n.span.line, n.span.col), (30, 3));
    }
    let gw = node(&t, "gw");
    assert_eq!(gw.kind, NodeKind::Router);
    assert_eq!(gw.counter, None);
    assert_eq!(gw.masquerade, ["uplink"]);
    assert_eq!(t.networks[1].gateway, None, "gateway: none");
    assert_eq!(t.networks[0].gateway, Some(Ipv4Addr::new(10, 10, 0, 1)), "default gateway: first host");
}

#[test]
fn template_merge_order_and_clearing() {
    let t = load("fixtures/topology/valid/templates.yaml");
    let w1 = node(&t, "w1");
    let nets: Vec<&str> = w1.interfaces.iter().map(|i| i.network.as_str()).collect();
    assert_eq!(nets, ["mgmt", "lan"], "lists concatenate: defaults first, then groups");
    assert_eq!(w1.labels["env"], "test");
    assert_eq!(w1.labels["owner"], "dev", "the node wins over defaults");
    assert_eq!(w1.labels["role"], "canary", "later groups win over earlier ones");
    assert_eq!(w1.labels["track"], "fast");
    assert_eq!(w1.groups, ["web", "canary"]);
    assert!(node(&t, "w2").sysctls.is_empty(), "null clears an inherited map");
    assert_eq!(node(&t, "w2").interfaces.len(), 2);
    assert!(node(&t, "lonely").interfaces.is_empty(), "null clears an inherited list");
    assert_eq!(node(&t, "lonely").labels.len(), 2, "defaults still apply");
}

#[test]
fn link_counters_and_endpoint_forms() {
    let t = load("fixtures/topology/valid/counters.yaml");
    assert_eq!(t.links.len(), 4 + 3);
    let pairs: Vec<(String, String)> = t.links.iter().map(|l| (l.a.node.clone(), l.b.node.clone())).collect();
    assert_eq!(pairs[0], ("sw".into(), "leaf-1".into()));
    assert_eq!(pairs[3], ("sw".into(), "leaf-4".into()));
    assert_eq!(pairs[4], ("leaf-2".into(), "web-0".into()), "paired ranges zip in order");
    assert_eq!(pairs[6], ("leaf-4".into(), "web-2".into()));
    let l = &t.links[5];
    assert_eq!(l.a.name.as_deref(), Some("to-web3"));
    assert_eq!(l.subnet, Some("10.254.1.0/31".parse().expect("net")));
    assert_eq!(l.impair_ab.delay, Some(Duration::from_millis(3)));
    assert_eq!(l.impair_ab, l.impair_ba, "one impairment applies both ways");
    let leaf3 = node(&t, "leaf-3");
    assert_eq!(leaf3.interfaces[0].address, AddrSpec::Static(Ipv4Addr::new(10, 0, 0, 30)));
    assert_eq!(leaf3.interfaces[0].name.as_deref(), Some("lan3"));
    assert_eq!(leaf3.labels["rack"], "r2");
    assert_eq!(node(&t, "web-1").depends_on, ["leaf-2"]);
}

#[test]
fn addressing_values_and_routing() {
    let t = load("fixtures/topology/valid/addressing.yaml");
    assert_eq!(t.pools.p2p_prefix, 30);
    assert_eq!(t.pools.p2p, "172.16.0.0/24".parse().expect("net"));
    assert_eq!(t.networks[0].mtu, Some(9000));
    assert!(t.networks[0].subnet6.is_some());
    assert_eq!(t.networks[1].gateway, Some(Ipv4Addr::new(10, 0, 5, 6)));
    let r1 = node(&t, "r1");
    assert_eq!(r1.interfaces[0].address, AddrSpec::Static(Ipv4Addr::new(10, 0, 0, 1)));
    assert_eq!(r1.interfaces[1].address, AddrSpec::Auto);
    assert_eq!(r1.loopbacks.len(), 2);
    assert_eq!(r1.loopbacks[0].prefix_len(), 32);
    let routing = r1.routing.as_ref().expect("routing");
    assert_eq!(routing.daemon, RoutingDaemon::Frr);
    let ospf = routing.ospf.as_ref().expect("ospf");
    assert_eq!(ospf.router_id, Some(Ipv4Addr::new(192, 168, 255, 1)));
    assert_eq!((ospf.hello_interval, ospf.dead_interval), (10, 40));
    assert!(ospf.bfd && ospf.redistribute_static && !ospf.fast);
    assert_eq!((ospf.bfd_interval_ms, ospf.bfd_multiplier), (100, 5));
    assert!(ospf.interfaces["lan"].passive);
    assert_eq!(ospf.interfaces["r2"].cost, Some(10));
    assert_eq!(ospf.interfaces["r2"].area, Some(Ipv4Addr::new(0, 0, 0, 1)));
    assert_eq!(r1.routes[0].metric, Some(20));
    let r2 = node(&t, "r2").routing.as_ref().and_then(|r| r.ospf.as_ref()).expect("ospf");
    assert_eq!((r2.hello_interval, r2.dead_interval), (2, 8), "dead defaults to 4 x hello");
    let h1 = node(&t, "h1");
    assert_eq!(h1.interfaces[1].address, AddrSpec::Dhcp);
    assert_eq!(h1.interfaces[0].address6, Some("fd00:1::10".parse().expect("v6")));
    assert_eq!(h1.routes[0].to.prefix_len(), 0, "to: default");
    let l = &t.links[0];
    assert_eq!(l.a.name.as_deref(), Some("core0"));
    assert_eq!(l.mtu, Some(1400));
    assert_eq!(l.impair_ab.delay, Some(Duration::from_millis(20)));
    assert_eq!(l.impair_ab.jitter, Some(Duration::from_millis(5)));
    assert_eq!(l.impair_ab.loss, Some(0.5));
    assert_eq!(l.impair_ab.rate, Some(1_500_000));
    assert_eq!(l.impair_ba.delay, Some(Duration::from_micros(250)));
    assert_eq!(l.impair_ba.loss, None);
}

#[test]
fn spans_point_at_the_source() {
    let text = "name: s\nnetworks:\n  lan: {subnet: 10.0.0.0/24}\nnodes:\n  héllo-not: {}\n  b:\n    interfaces: [lan]\n";
    let err = topo_spec::parse_str("s.yaml", text).expect_err("é is not allowed in names");
    let diag = &err.items[0];
    assert_eq!(diag.code, "topo::invalid-name");
    let span = diag.span.expect("span");
    assert_eq!((span.line, span.col), (5, 3));
    assert_eq!(&text[span.offset..span.offset + span.len], "héllo-not");

    let text = text.replace("héllo-not", "a");
    let t = parse(&text);
    let b = node(&t, "b");
    assert_eq!((b.span.line, b.span.col), (6, 3));
    let iface = &b.interfaces[0];
    assert_eq!(&text[iface.span.offset..iface.span.offset + iface.span.len], "lan");
    assert_eq!(t.networks[0].subnet_span.line, 3);
}

#[test]
fn all_errors_are_reported_at_once() {
    let text = "name: x\nnodes:\n  a: {kind: rooter}\n  b: {depends_on: [zz]}\n  c: {colour: red}\n";
    let err = topo_spec::parse_str("x.yaml", text).expect_err("three problems");
    let codes: Vec<&str> = err.items.iter().map(|d| d.code).collect();
    assert_eq!(codes, ["topo::invalid-value", "topo::unknown-reference", "topo::unknown-key"]);
}

#[test]
fn depends_on_patterns_expand() {
    let t = parse("name: p\nnodes:\n  db: {}\n  web-{1..3}: {}\n  lb:\n    depends_on: [\"web-*\", db]\n");
    assert_eq!(node(&t, "lb").depends_on, ["web-1", "web-2", "web-3", "db"]);
}

#[test]
fn document_edge_cases() {
    let codes = |text: &str| -> Vec<&'static str> {
        topo_spec::parse_str("e.yaml", text)
            .err()
            .map(|d| d.items.iter().map(|i| i.code).collect())
            .unwrap_or_default()
    };
    assert_eq!(codes(""), ["topo::missing-key"], "empty file: no name");
    assert_eq!(codes("---\n# nothing\n"), ["topo::missing-key"]);
    assert_eq!(codes("name: x\n---\nname: y\n"), ["topo::yaml"], "a second document is not ignored");
    assert_eq!(codes("name: x\n...\nnodes: {}\n"), ["topo::yaml"]);
    assert_eq!(codes("[1, 2]"), ["topo::yaml"]);
    assert_eq!(codes("name: &a x\n"), ["topo::yaml"], "anchors");
    // A byte order mark is not part of the first key, and columns still line up.
    let t = parse("\u{feff}name: bom\nnodes:\n  a: {}\n");
    assert_eq!(t.name, "bom");
    let err = topo_spec::parse_str("b.yaml", "\u{feff}name: Bom\n").expect_err("bad name");
    let span = err.items[0].span.expect("span");
    assert_eq!(
        (span.line, span.col, &"\u{feff}name: Bom\n"[span.offset..span.offset + span.len]),
        (1, 7, "Bom")
    );
    // Windows line endings.
    assert_eq!(parse("name: crlf\r\nnodes:\r\n  a: {kind: router}\r\n").nodes[0].kind, NodeKind::Router);
}

#[test]
fn inherited_dependencies_skip_the_node_itself() {
    let t = parse(
        "name: d\ndefaults:\n  depends_on: [db]\ngroups:\n  cached: {depends_on: [\"cache*\"]}\n\
         nodes:\n  db: {}\n  cache: {group: cached}\n  web: {group: cached}\n",
    );
    assert!(node(&t, "db").depends_on.is_empty(), "db does not wait for itself");
    assert_eq!(node(&t, "cache").depends_on, ["db"], "the pattern matching only itself is dropped");
    assert_eq!(node(&t, "web").depends_on, ["db", "cache"]);
    // Written on the node itself, the same references are errors.
    let err =
        topo_spec::parse_str("d.yaml", "name: d\nnodes:\n  db: {depends_on: [db]}\n").expect_err("self");
    assert_eq!(err.items[0].code, "topo::dependency-cycle");
    let err =
        topo_spec::parse_str("d.yaml", "name: d\nnodes:\n  db: {depends_on: [\"d*\"]}\n").expect_err("none");
    assert_eq!(err.items[0].code, "topo::unknown-reference");
}
