//! The example topologies with `routing:` through spec -> plan -> FRR: every rendered config
//! passes FRR's dry run, and the OSPF triangle converges on real FRR (lab built with `ip`,
//! independent of the kernel backend).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use topo_daemons::expect::{expectations, Want};
use topo_daemons::testkit::TestLab;
use topo_lab::testkit::{require_root, unique_lab};
use topo_lab::FaultState;
use topo_plan::Plan;

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../topologies")
}

/// Plan an example under another lab name (tests run in parallel and must not collide).
fn plan_example(file: &str, lab: &str) -> Plan {
    let path = examples_dir().join(file);
    let mut topo = topo_spec::load(&path).unwrap_or_else(|d| panic!("{file}:\n{d}"));
    lab.clone_into(&mut topo.name);
    topo_plan::compile(&topo).unwrap_or_else(|d| panic!("{file} does not plan: {d:?}"))
}

fn routing_examples() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(examples_dir())
        .expect("topologies/")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|f| Path::new(f).extension().is_some_and(|x| x == "yaml"))
        .filter(|f| plan_example(f, "ex").nodes.iter().any(|n| n.routing.is_some()))
        .collect();
    out.sort();
    out
}

#[test]
fn example_configs_pass_frr_dry_run() {
    let examples = routing_examples();
    assert!(examples.iter().any(|f| f == "triangle.yaml"), "{examples:?}");
    let have_frr = Path::new("/usr/lib/frr/ospfd").exists();
    let dir = std::env::temp_dir().join(format!("topo-examples-frr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for file in &examples {
        let plan = plan_example(file, "ex");
        let routers: Vec<_> = plan.nodes.iter().filter(|n| n.routing.is_some()).collect();
        assert!(!routers.is_empty(), "{file}");
        for n in routers {
            let configs = &n.routing.as_ref().unwrap().configs;
            assert!(
                configs.contains_key("zebra.conf") && configs.contains_key("ospfd.conf"),
                "{file} {}",
                n.name
            );
            if !have_frr {
                continue;
            }
            for (name, text) in configs {
                let path = dir.join(name);
                std::fs::write(&path, text).unwrap();
                let bin = Path::new("/usr/lib/frr").join(name.trim_end_matches(".conf"));
                // Isolated like the plan crate's dry run: no files left under /var/run/frr.
                let out = Command::new("unshare")
                    .args(["--net", "--mount", "--", "sh", "-c"])
                    .arg("mount -t tmpfs topo-dryrun /var/run/frr && exec \"$0\" \"$@\"")
                    .arg(bin)
                    .args(["-C", "--log", "stdout", "-P", "0", "-f"])
                    .arg(&path)
                    .output()
                    .unwrap();
                let log = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                assert!(
                    out.status.success() && !log.contains("config line"),
                    "{file}: {} {name} rejected:\n{text}\n{log}",
                    n.name
                );
            }
        }
        // Every router expects at least one adjacency, and all of them when nothing is broken.
        for r in expectations(&plan, &FaultState::default()) {
            assert!(!r.neighbors.is_empty(), "{file}: {} has no expected neighbor", r.node);
            assert!(r.neighbors.iter().all(|n| n.want == Want::Full), "{file}: {r:?}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn triangle_ospf_example_converges_on_real_frr() {
    if !require_root("triangle example") || !Path::new("/usr/lib/frr/ospfd").exists() {
        return;
    }
    let plan = plan_example("triangle.yaml", &unique_lab("fx"));
    let lab = TestLab::build(plan).expect("build lab");
    let t0 = Instant::now();
    lab.start_daemons().expect("start FRR");
    topo_daemons::wait_converged_with(&lab.plan, &FaultState::default(), Duration::from_secs(30))
        .expect("triangle converges");
    eprintln!("triangle.yaml: start -> converged in {:?}", t0.elapsed());
    // h1 reaches the other LANs and the routers' loopbacks.
    let h3 = lab.plan.node("h3").and_then(topo_plan::NodePlan::primary_address).expect("h3 address");
    let (ok, out) = lab.sh("h1", &format!("ping -c1 -W2 {h3} && ping -c1 -W2 192.168.255.2"));
    assert!(ok, "{out}");
    // r3's cost 50 towards r1 steers r3 -> r1's LAN through r2.
    let via_r2 = lab.route("r3", "10.1.0.0/24").flatten().expect("r3 has a route to lan1");
    let r2 = lab.plan.node("r2").unwrap();
    assert!(r2.addresses().any(|a| a == via_r2), "r3 -> lan1 goes via {via_r2}, not r2");
    let h = topo_daemons::health(&lab.plan, &lab.state_dir);
    assert!(h.iter().all(|r| r.problems.is_empty()), "{h:#?}");
    eprintln!("{}", h.iter().map(topo_daemons::DaemonHealth::summary).collect::<Vec<_>>().join("\n"));
}

/// Four routers on one LAN: DR and BDR election, and two DROthers that stay 2-Way with each
/// other by design; convergence must accept that and still see every loopback.
#[test]
fn four_routers_on_a_lan_converge() {
    if !require_root("ospf lan") || !Path::new("/usr/lib/frr/ospfd").exists() {
        return;
    }
    let mut yaml = String::from("name: x\nnetworks:\n  core: {subnet: 10.9.0.0/24}\nnodes:\n");
    for i in 1..=4 {
        let _ = write!(
            yaml,
            "  r{i}:\n    kind: router\n    interfaces: [core]\n    loopback: [192.168.254.{i}]\n    \
             routing: {{ospf: {{hello_interval: 1, dead_interval: 3, fast: true}}}}\n"
        );
    }
    let mut topo = topo_spec::parse_str("lan.yaml", &yaml).unwrap_or_else(|d| panic!("{d}"));
    unique_lab("fl").clone_into(&mut topo.name);
    let plan = topo_plan::compile(&topo).unwrap_or_else(|d| panic!("{d:?}"));
    let lab = TestLab::build(plan).expect("build lab");
    let t0 = Instant::now();
    lab.start_daemons().expect("start FRR");
    topo_daemons::wait_converged_with(&lab.plan, &FaultState::default(), Duration::from_secs(30))
        .expect("LAN converges");
    eprintln!("4 routers on a LAN (hello 1/dead 3): start -> converged in {:?}", t0.elapsed());
    for r in ["r1", "r2", "r3", "r4"] {
        for i in 1..=4 {
            let lo = format!("192.168.254.{i}/32");
            if format!("r{i}") != r {
                assert!(lab.route(r, &lo).is_some(), "{r} has no route to {lo}");
            }
        }
    }
    // At least one pair of routers is 2-Way (the two DROthers), and that was accepted.
    let mut states = String::new();
    for r in ["r1", "r2", "r3", "r4"] {
        let ps = topo_daemons::pathspace(&lab.plan, r);
        let out = Command::new("vtysh").args(["-N", &ps, "-c", "show ip ospf neighbor"]).output().unwrap();
        states.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    assert!(states.contains("2-Way"), "{states}");
}
