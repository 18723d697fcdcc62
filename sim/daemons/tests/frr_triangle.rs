//! Real FRR on the OSPF triangle (root only): start, converge, reroute, BFD, stop, gc.
//! The lab is built with `ip` commands from a hand-made plan (testkit), independent of the
//! kernel backend.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use topo_daemons::testkit::{triangle, TestLab};
use topo_daemons::{gc_lab, health, pathspace, start_node, stop_lab, wait_converged_with, FrrPaths};
use topo_lab::testkit::{require_root, unique_lab};
use topo_lab::{FaultState, LinkRef};

fn frr_installed(test: &str) -> bool {
    let ok = Path::new("/usr/lib/frr/ospfd").exists();
    if !ok {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{test}: FRR is not installed (CI=true)");
        eprintln!("SKIP {test}: FRR is not installed");
    }
    ok
}

/// Processes whose network namespace is one of the lab's.
fn processes_in_lab(lab: &TestLab) -> Vec<i32> {
    let inodes: BTreeSet<u64> = lab
        .plan
        .nodes
        .iter()
        .filter_map(|n| std::fs::metadata(topo_netns::path_of(&n.netns)).ok().map(|m| m.ino()))
        .collect();
    inodes.into_iter().flat_map(topo_netns::pids_in_netns).collect()
}

/// An exited daemon stays a zombie until init reaps it (up to ~1 s here): a zombie has already
/// left its namespaces and runs nothing, but it must disappear eventually.
fn assert_exited(pid: i32, what: &str) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(stat.is_empty() || stat.contains(") Z "), "{what} (pid {pid}) still running: {stat}");
    assert!(
        until(Duration::from_secs(5), || !Path::new(&format!("/proc/{pid}")).exists()).is_some(),
        "{what} (pid {pid}) was never reaped"
    );
}

fn link(a: &str, b: &str) -> LinkRef {
    LinkRef::P2p { a: a.into(), b: b.into() }.normalized()
}

/// Poll until `f` holds or `timeout` passes; returns the elapsed time when it held.
fn until(timeout: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if f() {
            return Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

#[test]
fn triangle_converges_reroutes_and_stops_clean() {
    if !require_root("frr triangle") || !frr_installed("frr triangle") {
        return;
    }
    let lab = TestLab::build(triangle(&unique_lab("ft"), true, false)).expect("build lab");
    let t0 = Instant::now();
    let started = lab.start_daemons().expect("start FRR");
    assert_eq!(started.len(), 6, "zebra + ospfd on three routers: {started:?}");
    wait_converged_with(&lab.plan, &FaultState::default(), Duration::from_secs(30)).expect("converge");
    eprintln!("triangle (hello 1/dead 3, fast throttles): start -> converged in {:?}", t0.elapsed());

    // Every pid is recorded for down/gc, with the node name first.
    for p in &started {
        let rec = std::fs::read_to_string(lab.state_dir.join("pids").join(p.pid.to_string())).unwrap();
        assert!(rec.starts_with(&format!("{} frr-{}", p.node, p.daemon)), "{rec}");
    }
    // Routes learned by OSPF take the direct links, and hosts behind different routers reach
    // each other.
    assert_eq!(lab.route("r1", "10.255.0.2/32"), Some(Some("10.0.12.2".parse().unwrap())));
    assert_eq!(lab.route("r1", "10.1.3.0/24"), Some(Some("10.0.13.2".parse().unwrap())));
    let (ok, out) = lab.sh("h1", "ping -c1 -W2 10.1.3.10 && ping -c1 -W2 10.255.0.2");
    assert!(ok, "{out}");
    // vtysh reaches the node's own daemons through its pathspace.
    let ps = pathspace(&lab.plan, "r2");
    let out = std::process::Command::new("vtysh")
        .args(["-N", &ps, "-c", "show ip ospf neighbor"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("10.255.0.1") && text.contains("10.255.0.3"), "{text}");
    // ospfd's graceful-restart state went to the node's own run directory, not the shared one.
    let paths = FrrPaths::new(&lab.plan, lab.plan.node("r1").unwrap());
    assert!(paths.run.join("ospfd.pid").exists());
    // Health: all daemons alive, 2 of 2 adjacencies per router.
    let h = health(&lab.plan, &lab.state_dir);
    assert_eq!(h.len(), 3);
    for r in &h {
        assert!(r.daemons.iter().all(|d| d.alive), "{r:?}");
        assert_eq!((r.ospf_full, r.ospf_expected), (Some(2), 2), "{r:?}");
        assert!(r.problems.is_empty(), "{r:?}");
    }

    // Carrier loss on r1-r2: traffic reroutes via r3.
    let (ok, out) = lab.sh("r1", "ip link set eth-r2 down");
    assert!(ok, "{out}");
    let took = until(Duration::from_secs(10), || {
        lab.route("r1", "10.255.0.2/32") == Some(Some("10.0.13.2".parse().unwrap()))
            && lab.route("r2", "10.255.0.1/32") == Some(Some("10.0.23.2".parse().unwrap()))
    })
    .expect("r1 <-> r2 rerouted via r3");
    eprintln!("link down r1-r2: rerouted via r3 in {took:?}");
    let mut faults = FaultState::default();
    faults.links_down.insert(link("r1", "r2"));
    wait_converged_with(&lab.plan, &faults, Duration::from_secs(10)).expect("converged with the link down");
    let (ok, out) = lab.sh("h1", "ping -c1 -W2 10.1.2.10");
    assert!(ok, "{out}");
    // The fault-free expectation is now violated, and the message says what is missing.
    let err = wait_converged_with(&lab.plan, &FaultState::default(), Duration::from_millis(300)).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("r1: no OSPF neighbor r2 (10.255.0.2) on eth-r2"), "{msg}");

    // Link back up: the direct path returns.
    let (ok, out) = lab.sh("r1", "ip link set eth-r2 up");
    assert!(ok, "{out}");
    wait_converged_with(&lab.plan, &FaultState::default(), Duration::from_secs(15)).expect("reconverged");
    assert_eq!(lab.route("r1", "10.255.0.2/32"), Some(Some("10.0.12.2".parse().unwrap())));

    // Down: nothing of FRR is left.
    stop_lab(&lab.plan, &lab.state_dir).expect("stop");
    for p in &started {
        assert_exited(p.pid, &format!("{p:?}"));
        assert!(!lab.state_dir.join("pids").join(p.pid.to_string()).exists());
    }
    assert_eq!(processes_in_lab(&lab), Vec::<i32>::new());
    for n in ["r1", "r2", "r3"] {
        let p = FrrPaths::new(&lab.plan, lab.plan.node(n).unwrap());
        assert!(!p.run.exists() && !p.etc.exists(), "{p:?} left behind");
    }
}

#[test]
fn bfd_detects_a_silent_cut_fast() {
    if !require_root("frr bfd") || !frr_installed("frr bfd") {
        return;
    }
    let lab = TestLab::build(triangle(&unique_lab("fb"), true, true)).expect("build lab");
    let t0 = Instant::now();
    let started = lab.start_daemons().expect("start FRR");
    assert_eq!(started.len(), 9, "zebra + bfdd + ospfd on three routers");
    // Converged includes the BFD sessions being up (cutting earlier would measure OSPF's dead
    // timer instead of BFD).
    wait_converged_with(&lab.plan, &FaultState::default(), Duration::from_secs(30)).expect("converge");
    eprintln!("triangle with BFD: start -> converged (BFD up) in {:?}", t0.elapsed());

    // Silent cut: both ends drop everything on ingress; carrier stays up.
    let cut = |iface: &str| {
        format!(
            "nft -f - <<'EOF'\ntable netdev topocut {{\n chain in {{\n  type filter hook ingress device {iface} priority 0; policy drop;\n }}\n}}\nEOF"
        )
    };
    let t_cut = Instant::now();
    let (ok1, o1) = lab.sh("r1", &cut("eth-r2"));
    let (ok2, o2) = lab.sh("r2", &cut("eth-r1"));
    assert!(ok1 && ok2, "{o1}{o2}");
    until(Duration::from_secs(10), || {
        lab.route("r1", "10.255.0.2/32") == Some(Some("10.0.13.2".parse().unwrap()))
            && lab.route("r2", "10.255.0.1/32") == Some(Some("10.0.23.2".parse().unwrap()))
    })
    .expect("r1 <-> r2 rerouted via r3 after the silent cut");
    let took = t_cut.elapsed();
    eprintln!("silent cut r1-r2 with BFD 50 ms x 3: rerouted via r3 in {took:?}");
    assert!(took < Duration::from_secs(5), "BFD should beat the 3 s dead interval by far: {took:?}");
    let mut faults = FaultState::default();
    faults.links_cut.insert(link("r1", "r2"));
    wait_converged_with(&lab.plan, &faults, Duration::from_secs(10)).expect("converged with the cut");
}

#[test]
fn timeout_names_missing_router_and_gc_cleans_up_without_state() {
    if !require_root("frr gc") || !frr_installed("frr gc") {
        return;
    }
    let lab = TestLab::build(triangle(&unique_lab("fg"), true, false)).expect("build lab");
    // r3 never starts: r1 and r2 converge with each other, but not with r3.
    let mut started = start_node(&lab.plan, "r1", &lab.state_dir).expect("start r1");
    started.extend(start_node(&lab.plan, "r2", &lab.state_dir).expect("start r2"));
    // Starting a node twice is refused while its daemons run.
    let again = start_node(&lab.plan, "r1", &lab.state_dir).unwrap_err().to_string();
    assert!(again.contains("already running"), "{again}");
    let err = wait_converged_with(&lab.plan, &FaultState::default(), Duration::from_secs(3)).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("routing did not converge within 3.0 s"), "{msg}");
    assert!(msg.contains("r1: no OSPF neighbor r3 (10.255.0.3) on eth-r3"), "{msg}");
    assert!(msg.contains("r3: ospfd is not running"), "{msg}");
    assert!(msg.contains("missing route"), "{msg}");

    // gc from the lab name alone (no plan, no state dir): kills the daemons, removes the dirs.
    let out = gc_lab(&lab.plan.lab);
    assert!(out.errors.is_empty(), "{out:?}");
    assert_eq!(out.killed.len(), 4, "{out:?}");
    for p in &started {
        assert_exited(p.pid, &format!("{p:?} after gc"));
    }
    assert_eq!(out.removed.len(), 4, "run + etc dirs of r1 and r2: {out:?}");
    assert!(topo_daemons::labs_with_residue().iter().all(|l| *l != lab.plan.lab));
    // A dead router can be started again (stale pid records are dropped).
    let again = start_node(&lab.plan, "r1", &lab.state_dir).expect("restart r1");
    assert_eq!(again.len(), 2);
}
