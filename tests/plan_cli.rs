//! `topo plan` end to end: the binary on the example topologies.

use std::path::Path;
use std::process::{Command, Output};

fn topo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_topo"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run topo")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn plan_tables_show_nodes_interfaces_routes_links() {
    let o = topo(&["plan", "topologies/triangle-static.yaml"]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&o.stderr));
    let out = stdout(&o);
    for section in ["NODES", "NETWORKS", "INTERFACES", "ROUTES", "LINKS"] {
        assert!(out.contains(section), "missing {section} in:\n{out}");
    }
    assert!(out.contains("topo-triangle-static.r1"), "{out}");
    assert!(out.contains("10.2.0.0/24"), "static route shown: {out}");
    assert!(out.contains("10.254.0.0/31"), "link subnet shown: {out}");
}

#[test]
fn plan_json_is_the_plan() {
    let o = topo(&["plan", "--json", "topologies/elixir-cluster.yaml"]);
    assert_eq!(o.status.code(), Some(0));
    let printed: topo_plan::Plan = serde_json::from_slice(&o.stdout).expect("stdout is plan JSON");
    let direct =
        topo_plan::plan_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies/elixir-cluster.yaml"))
            .expect("example plans");
    assert_eq!(printed, direct);
    // Twice the same bytes.
    assert_eq!(o.stdout, topo(&["plan", "--json", "topologies/elixir-cluster.yaml"]).stdout);
}

#[test]
fn plan_one_node() {
    let o = topo(&["plan", "topologies/triangle.yaml", "--node", "r1"]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    assert!(out.contains("SYSCTLS") && out.contains("net.ipv4.ip_forward"), "{out}");
    assert!(out.contains("OSPF router-id"), "{out}");
    assert!(!out.contains("topo-triangle.r2 "), "only r1's rows: {out}");

    let o = topo(&["plan", "topologies/triangle.yaml", "--node", "r1", "--json"]);
    let node: topo_plan::NodePlan = serde_json::from_slice(&o.stdout).expect("node JSON");
    assert_eq!(node.name, "r1");

    let o = topo(&["plan", "topologies/triangle.yaml", "--node", "nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no node named"));
}

#[test]
fn plan_of_an_unplannable_file_exits_3_with_a_diagnostic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("small.yaml");
    std::fs::write(&file, "name: small\nnetworks:\n  tiny: {subnet: 10.0.0.0/30}\nnodes:\n  a: {interfaces: [tiny]}\n  b: {interfaces: [tiny]}\n")
        .expect("write");
    let o = topo(&["plan", file.to_str().expect("utf-8 path")]);
    assert_eq!(o.status.code(), Some(3));
    assert!(o.stdout.is_empty());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("topo::pool-exhausted") && err.contains("small.yaml:6:"), "{err}");
}
