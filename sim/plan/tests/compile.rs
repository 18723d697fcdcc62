//! Plan compiler rules, on topologies built directly as IR.

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
