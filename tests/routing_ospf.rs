//! OSPF routers through the whole kernel backend (root, real FRR): `up` of
//! topologies/triangle.yaml starts FRR in every router, the lab converges, link faults
//! reroute traffic around r3, and `down` leaves no FRR process or directory behind.

use std::path::Path;
use std::time::{Duration, Instant};

use topo_kernel::{KernelLab, SourceInfo, UpOpts};
use topo_lab::testkit::{require_root, unique_lab};
use topo_lab::{Fault, Lab, LinkRef};
use topo_plan::Plan;

fn frr_installed(test: &str) -> bool {
    let ok = Path::new("/usr/lib/frr/ospfd").exists();
    if !ok {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{test}: FRR is not installed (CI=true)");
        eprintln!("SKIP {test}: FRR is not installed");
    }
    ok
}

/// The example under a unique lab name (tests run in parallel).
fn plan(file: &str, lab: &str) -> (Plan, SourceInfo) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies").join(file);
    let text = std::fs::read_to_string(&path).expect("example");
    let mut topo = topo_spec::parse_str(file, &text).unwrap_or_else(|d| panic!("{d}"));
    lab.clone_into(&mut topo.name);
    let plan = topo_plan::compile(&topo).unwrap_or_else(|d| panic!("{d:?}"));
    (plan, SourceInfo { path: None, text })
}

/// Tears the lab down even when the test fails.
struct Down(String);
impl Drop for Down {
    fn drop(&mut self) {
        if let Err(e) = topo_kernel::down(&self.0) {
            eprintln!("down {}: {e}", self.0);
        }
    }
}

fn p2p(a: &str, b: &str) -> LinkRef {
    LinkRef::P2p { a: a.into(), b: b.into() }
}

/// Next hop of the kernel route to `prefix` in `node`.
fn next_hop(plan: &Plan, node: &str, prefix: &str) -> Option<std::net::Ipv4Addr> {
    let ns = &plan.node(node)?.netns;
    topo_daemons::fib::read(ns).ok()?.into_iter().find(|r| r.dest.to_string() == prefix)?.gateway
}

/// Which router owns this address (a next hop)?
fn owner(plan: &Plan, addr: std::net::Ipv4Addr) -> Option<String> {
    plan.nodes.iter().find(|n| n.addresses().any(|a| a == addr)).map(|n| n.name.clone())
}

#[test]
fn ospf_triangle_up_converges_reroutes_and_downs_clean() {
    if !require_root("routing_ospf") || !frr_installed("routing_ospf") {
        return;
    }
    let name = unique_lab("ro");
    let (plan, source) = plan("triangle.yaml", &name);
    let t0 = Instant::now();
    let guard = Down(name.clone());
    topo_kernel::up(&plan, &source, &UpOpts::default()).expect("up");
    let mut lab = KernelLab::open_lab(&name).expect("open");
    lab.wait_converged(Duration::from_secs(30)).expect("converged after up");
    eprintln!("triangle: up -> converged in {:?}", t0.elapsed());

    // Daemons are healthy and recorded; hosts reach across the routers.
    let health = topo_daemons::health(lab.plan(), lab.state_dir());
    assert_eq!(health.len(), 3, "{health:#?}");
    for h in &health {
        assert!(h.problems.is_empty() && h.ospf_full == Some(2), "{h:#?}");
    }
    let pids: Vec<i32> = health.iter().flat_map(|h| h.daemons.iter().filter_map(|d| d.pid)).collect();
    assert_eq!(pids.len(), 6, "zebra + ospfd per router");
    let h3 = plan.node("h3").and_then(topo_plan::NodePlan::primary_address).unwrap().to_string();
    let out = lab.exec("h1", &["ping".into(), "-c1".into(), "-W2".into(), h3.clone()]).unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    // vtysh inside a router, on its own daemons.
    let ps = topo_daemons::pathspace(&plan, "r1");
    let out = lab
        .exec("r1", &["vtysh".into(), "-N".into(), ps, "-c".into(), "show ip ospf neighbor".into()])
        .unwrap();
    assert!(out.stdout.contains("192.168.255.2") && out.stdout.contains("192.168.255.3"), "{out:?}");
    // The `topo vtysh` shortcut picks the pathspace itself.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_topo"))
        .args(["vtysh", "--lab", &name, "r2", "-c", "show ip ospf neighbor", "-c", "show ip route ospf"])
        .output()
        .expect("run topo vtysh");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("192.168.255.1") && text.contains("192.168.255.3/32"), "{text}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_topo"))
        .args(["vtysh", "--lab", &name, "h1", "-c", "show version"])
        .output()
        .expect("run topo vtysh");
    assert_eq!(out.status.code(), Some(2), "a host runs no FRR");
    assert!(String::from_utf8_lossy(&out.stderr).contains("runs no FRR daemons"));
    assert_eq!(owner(&plan, next_hop(&plan, "r1", "192.168.255.2/32").unwrap()).as_deref(), Some("r2"));

    // Carrier loss on r1-r2: r1 reaches r2's loopback through r3, and the hosts still talk.
    lab.apply(&Fault::LinkDown { link: p2p("r1", "r2") }).expect("link down");
    lab.wait_converged(Duration::from_secs(15)).expect("converged with r1-r2 down");
    assert_eq!(owner(&plan, next_hop(&plan, "r1", "192.168.255.2/32").unwrap()).as_deref(), Some("r3"));
    let h2 = plan.node("h2").and_then(topo_plan::NodePlan::primary_address).unwrap().to_string();
    let out = lab.exec("h1", &["ping".into(), "-c1".into(), "-W2".into(), h2.clone()]).unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    lab.apply(&Fault::LinkUp { link: p2p("r1", "r2") }).expect("link up");
    lab.wait_converged(Duration::from_secs(15)).expect("converged with r1-r2 back");
    assert_eq!(owner(&plan, next_hop(&plan, "r1", "192.168.255.2/32").unwrap()).as_deref(), Some("r2"));

    // Silent cut (carrier stays up): only the dead interval (3 s) notices.
    let t_cut = Instant::now();
    lab.apply(&Fault::LinkCut { link: p2p("r1", "r2") }).expect("link cut");
    lab.wait_converged(Duration::from_secs(15)).expect("converged with r1-r2 cut");
    eprintln!("silent cut r1-r2 (dead 3 s): converged again in {:?}", t_cut.elapsed());
    assert_eq!(owner(&plan, next_hop(&plan, "r1", "192.168.255.2/32").unwrap()).as_deref(), Some("r3"));
    let out = lab.exec("h1", &["ping".into(), "-c1".into(), "-W2".into(), h2]).unwrap();
    assert_eq!(out.code, 0, "{out:?}");

    // Down: no FRR process and no FRR directory of this lab is left.
    let frr_dirs: Vec<_> = plan
        .nodes
        .iter()
        .filter(|n| n.routing.is_some())
        .map(|n| topo_daemons::FrrPaths::new(&plan, n))
        .collect();
    drop(lab);
    drop(guard);
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(stat.is_empty() || stat.contains(") Z "), "pid {pid} still running after down: {stat}");
    }
    for p in &frr_dirs {
        assert!(!p.run.exists() && !p.etc.exists(), "{p:?} left behind");
    }
    assert!(!topo_daemons::labs_with_residue().contains(&name));
}

#[test]
fn multi_dc_ospf_bfd_fails_over_to_the_long_haul_line() {
    if !require_root("routing_ospf bfd") || !frr_installed("routing_ospf bfd") {
        return;
    }
    let name = unique_lab("rb");
    let (plan, source) = plan("multi-dc.yaml", &name);
    let t0 = Instant::now();
    let _guard = Down(name.clone());
    topo_kernel::up(&plan, &source, &UpOpts::default()).expect("up");
    let mut lab = KernelLab::open_lab(&name).expect("open");
    // Converged includes every BFD session being up.
    lab.wait_converged(Duration::from_secs(30)).expect("converged after up");
    eprintln!("multi-dc: up -> converged (BFD up) in {:?}", t0.elapsed());
    let h = topo_daemons::health(lab.plan(), lab.state_dir());
    assert!(h.iter().all(|r| r.bfd_up == Some(2) && r.problems.is_empty()), "{h:#?}");
    // The long-haul line costs 100: dc1 reaches dc3's LAN through dc2.
    let via = |node: &str, prefix: &str| next_hop(&plan, node, prefix).and_then(|a| owner(&plan, a));
    assert_eq!(via("dc1-r", "10.3.0.0/24").as_deref(), Some("dc2-r"));

    // Silent cut of dc1-dc2: BFD notices, and dc1 fails over to the long-haul line.
    let t_cut = Instant::now();
    lab.apply(&Fault::LinkCut { link: p2p("dc1-r", "dc2-r") }).expect("link cut");
    let mut moved = None;
    while t_cut.elapsed() < Duration::from_secs(10) {
        if via("dc1-r", "10.3.0.0/24").as_deref() == Some("dc3-r") {
            moved = Some(t_cut.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let moved = moved.expect("dc1 -> dc3 failed over to the long-haul line");
    eprintln!("silent cut dc1-dc2 with BFD 100 ms x 3: dc1 -> dc3 on the long-haul line after {moved:?}");
    // Well under the 3 s dead interval, which is what BFD is for (figures: docs/routing.md).
    assert!(moved < Duration::from_millis(2500), "{moved:?}");
    lab.wait_converged(Duration::from_secs(15)).expect("converged with the cut");
    let out =
        lab.exec("dc1-app-1", &["ping".into(), "-c1".into(), "-W2".into(), "10.2.0.11".into()]).unwrap();
    assert_eq!(out.code, 0, "dc1 reaches dc2 around the ring: {out:?}");
}
