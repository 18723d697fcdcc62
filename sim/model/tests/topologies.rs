//! The model on the example topologies (topologies/*.yaml), through the real parser and
//! compiler.

use std::path::{Path, PathBuf};

use topo_lab::fault_text::parse_fault;
use topo_lab::{Lab, Proto};
use topo_model::{all_pairs, ModelLab};
use topo_plan::Plan;

fn topologies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../topologies")
}

fn load(name: &str) -> Plan {
    let p = topologies().join(name);
    topo_plan::plan_file(&p).unwrap_or_else(|d| panic!("{}: {d}", p.display()))
}

fn lab(name: &str, faults: &[&str]) -> ModelLab {
    let mut lab = ModelLab::new(load(name));
    for f in faults {
        let fault = parse_fault(lab.plan(), f).unwrap_or_else(|e| panic!("{f}: {e}"));
        lab.apply(&fault).unwrap_or_else(|e| panic!("{f}: {e}"));
    }
    lab
}

fn unreached(lab: &mut ModelLab, proto: Proto) -> Vec<String> {
    let req = all_pairs(lab.plan(), proto);
    let m = lab.reach(&req).expect("reach");
    m.pairs
        .iter()
        .filter(|p| !p.reached)
        .map(|p| format!("{} -> {}: {}", p.from, p.to, p.reason.clone().unwrap_or_default()))
        .collect()
}

fn hops(lab: &mut ModelLab, a: &str, b: &str) -> Vec<String> {
    let p = lab.path(a, b).expect("path");
    assert!(p.delivered, "{a} -> {b}: {p:?}");
    p.hops.iter().map(|h| h.node.clone().unwrap_or_default()).collect()
}

#[test]
fn every_example_topology_is_fully_reachable_without_faults() {
    let mut names: Vec<String> = std::fs::read_dir(topologies())
        .expect("topologies/")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| Path::new(n).extension().is_some_and(|e| e.eq_ignore_ascii_case("yaml")))
        .collect();
    names.sort();
    assert!(names.len() >= 5, "{names:?}");
    for name in &names {
        let mut lab = lab(name, &[]);
        for proto in [Proto::Icmp, Proto::Udp(7946), Proto::Tcp(7946)] {
            let bad = unreached(&mut lab, proto);
            assert!(bad.is_empty(), "{name} {proto}: {bad:#?}");
        }
    }
}

#[test]
fn triangle_static_routes_and_link_faults() {
    let mut l = lab("triangle-static.yaml", &[]);
    assert_eq!(hops(&mut l, "h1", "h3"), ["r1", "r3", "h3"]);
    // Static routes don't reroute: a cut or down r1-r3 link breaks lan1 <-> lan3.
    for f in ["link cut r1 r3", "link down r3 r1"] {
        let mut l = lab("triangle-static.yaml", &[f]);
        let bad = unreached(&mut l, Proto::Icmp);
        assert!(bad.iter().any(|b| b.starts_with("h1 -> h3")), "{f}: {bad:#?}");
        assert!(!bad.iter().any(|b| b.starts_with("h1 -> h2") || b.starts_with("h2 -> h3")), "{f}: {bad:#?}");
    }
}

#[test]
fn triangle_ospf_costs_and_failover() {
    let mut l = lab("triangle.yaml", &[]);
    // r3's side of r3-r1 costs 50: h3 → h1 goes around via r2, h1 → h3 goes direct.
    assert_eq!(hops(&mut l, "h1", "h3"), ["r1", "r3", "h3"]);
    assert_eq!(hops(&mut l, "h3", "h1"), ["r3", "r2", "r1", "h1"]);
    // OSPF reroutes around a silent cut and a carrier loss; everything stays reachable.
    for f in ["link cut r1 r2", "link down r1 r2"] {
        let mut l = lab("triangle.yaml", &[f]);
        assert!(unreached(&mut l, Proto::Icmp).is_empty(), "{f}");
        assert_eq!(hops(&mut l, "h1", "h2"), ["r1", "r3", "r2", "h2"], "{f}");
    }
    // Stopping r2 isolates exactly r2 and h2.
    let mut l = lab("triangle.yaml", &["node stop r2"]);
    let bad = unreached(&mut l, Proto::Icmp);
    assert!(!bad.is_empty());
    assert!(bad.iter().all(|b| b.contains("r2") || b.contains("h2")), "{bad:#?}");
}

#[test]
fn multi_dc_partition_by_label() {
    let mut l = lab("multi-dc.yaml", &["partition dc=dc1"]);
    let bad = unreached(&mut l, Proto::Icmp);
    // dc1's labelled nodes (apps, db) are cut off from everyone else; the rest reach each other.
    let dc1 = ["dc1-app-1", "dc1-app-2", "dc1-db"];
    let in_dc1 = |n: &str| dc1.contains(&n);
    for b in &bad {
        let (pair, _) = b.split_once(':').expect("line");
        let (f, t) = pair.split_once(" -> ").expect("pair");
        assert_ne!(in_dc1(f), in_dc1(t.trim()), "unexpected failure {b}");
    }
    let plan = l.plan().clone();
    let n = plan.nodes.len();
    let cross = 2 * dc1.len() * (n - dc1.len());
    assert_eq!(bad.len(), cross, "{bad:#?}");
}

#[test]
fn elixir_gateway_masquerades_only_toward_the_uplink() {
    let mut l = lab("elixir-cluster.yaml", &[]);
    let r = l.nat("elixir-cluster-1", "db").expect("nat");
    assert!(r.nat_free(), "{r:?}");
}
