//! The example topologies (topologies/*.yaml) through the whole pipeline: YAML -> IR -> plan.

use std::path::{Path, PathBuf};

use topo_plan::{plan_file, plan_str, RouteOrigin};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../topologies")
}

fn example(name: &str) -> topo_plan::Plan {
    let path = examples_dir().join(name);
    match plan_file(&path) {
        Ok(p) => p,
        Err(d) => panic!("{name} does not plan:\n{d}"),
    }
}

#[test]
fn every_example_plans_deterministically() {
    let mut seen = 0;
    let mut entries: Vec<_> = std::fs::read_dir(examples_dir())
        .expect("topologies/ exists")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    entries.sort();
    for path in entries {
        let text = std::fs::read_to_string(&path).expect("readable example");
        let a =
            plan_str("x.yaml", &text).unwrap_or_else(|d| panic!("{} does not plan:\n{d}", path.display()));
        let b = plan_str("x.yaml", &text).expect("second compile");
        assert_eq!(a.to_json(), b.to_json(), "{} plans differently twice", path.display());
        // The JSON round-trips into the same plan (backends may read it back from state).
        let back: topo_plan::Plan = serde_json::from_str(&a.to_json()).expect("plan JSON parses");
        assert_eq!(back, a);
        seen += 1;
    }
    assert!(seen >= 4, "expected the example topologies, found {seen}");
}

#[test]
fn triangle_static_routes_leave_through_the_right_links() {
    let p = example("triangle-static.yaml");
    let r1 = p.node("r1").expect("r1");
    // r1: lan1 is eth0, link 0 (to r2) is eth1, link 2 (from r3) is eth2.
    let devs: Vec<(String, &str)> = r1.routes.iter().map(|r| (r.to.to_string(), r.dev.as_str())).collect();
    assert_eq!(devs, [("10.2.0.0/24".to_string(), "eth1"), ("10.3.0.0/24".to_string(), "eth2")]);
    for h in ["h1", "h2", "h3"] {
        let n = p.node(h).expect("host");
        assert_eq!(n.routes.len(), 1);
        assert_eq!(n.routes[0].origin, RouteOrigin::Gateway);
    }
    assert_eq!(p.node("h2").expect("h2").routes[0].via.to_string(), "10.2.0.1");
}

#[test]
fn elixir_cluster_masquerades_out_of_the_uplink() {
    let p = example("elixir-cluster.yaml");
    let gw = p.node("gw").expect("gw");
    assert_eq!(gw.masquerade, ["eth1"]);
    assert_eq!(gw.iface("eth1").expect("eth1").addresses[0].to_string(), "192.168.100.2/24");
    // The cluster starts after the database.
    let db = p.node_index("db").expect("db");
    let first_cluster = p.node_index("elixir-cluster-1").expect("cluster");
    let pos = |i: usize| p.start_order.iter().position(|&x| x == i).expect("in start order");
    assert!(pos(db) < pos(first_cluster));
}

#[test]
fn pool_exhaustion_is_reported_at_the_interface_in_the_file() {
    let text = "name: small\nnetworks:\n  tiny: {subnet: 10.0.0.0/30}\nnodes:\n  a: {interfaces: [tiny]}\n  b: {interfaces: [tiny]}\n";
    let d = plan_str("small.yaml", text).expect_err("a /30 with a reserved gateway holds one host");
    assert_eq!(d.items.len(), 1, "{d}");
    let item = &d.items[0];
    assert_eq!(item.code, "topo::pool-exhausted");
    let span = item.span.expect("span");
    assert_eq!(span.line, 6, "points at node b's interface: {item:?}");
    let rendered = topo_spec::render(&d, false);
    assert!(rendered.contains("bigger subnet"), "{rendered}");
}
