//! Link faults (down vs cut, as the node sees them) and node faults (kill, pause, stop/start).

#![allow(clippy::unwrap_used)]

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{TestLab, PAIR};
use topo_lab::{Fault, LinkRef};

fn p2p() -> LinkRef {
    LinkRef::P2p { a: "a".into(), b: "b".into() }
}

#[test]
fn link_down_versus_cut() {
    if !topo_lab::testkit::require_root("chaos::link_down_versus_cut") {
        return;
    }
    let mut lab = TestLab::up("clk", PAIR);
    let nodes = ["a", "b"];
    let both = TestLab::all_pairs_except(&nodes, &[]);
    let (ia, ib) = (lab.plan.links[0].a.iface.clone(), lab.plan.links[0].b.iface.clone());
    assert_eq!(lab.reach_matrix(&nodes), both);
    assert_eq!(lab.operstate("a", &ia, "up"), "up");

    // Cut: carrier stays up on both ends, nothing passes.
    lab.apply(&Fault::LinkCut { link: p2p() });
    assert_eq!(lab.operstate("a", &ia, "up"), "up");
    assert_eq!(lab.operstate("b", &ib, "up"), "up");
    assert!(lab.reach_matrix(&nodes).is_empty(), "cut link still passes traffic");
    lab.apply(&Fault::LinkRestore { link: p2p() });
    assert_eq!(lab.reach_matrix(&nodes), both);

    // Down: both ends lose carrier.
    lab.apply(&Fault::LinkDown { link: p2p() });
    assert_eq!(lab.operstate("a", &ia, "down"), "down");
    assert_eq!(lab.operstate("b", &ib, "down"), "down");
    assert!(lab.reach_matrix(&nodes).is_empty());
    lab.apply(&Fault::LinkUp { link: p2p() });
    assert_eq!(lab.operstate("a", &ia, "up"), "up");
    assert_eq!(lab.reach_matrix(&nodes), both);
}

#[test]
fn lan_attachment_down_and_cut() {
    if !topo_lab::testkit::require_root("chaos::lan_attachment") {
        return;
    }
    let mut lab = TestLab::up("cln", &support::lan_yaml(3));
    let nodes = ["h1", "h2", "h3"];
    let link = LinkRef::Lan { node: "h1".into(), network: "lan".into() };
    let iface = lab.node("h1").interfaces[0].name.clone();
    lab.apply(&Fault::LinkDown { link: link.clone() });
    assert_eq!(lab.operstate("h1", &iface, "down"), "down");
    let blocked = [("h1", "h2"), ("h1", "h3"), ("h2", "h1"), ("h3", "h1")];
    assert_eq!(lab.reach_matrix(&nodes), TestLab::all_pairs_except(&nodes, &blocked));
    lab.apply(&Fault::LinkUp { link: link.clone() });
    lab.apply(&Fault::LinkCut { link: link.clone() });
    assert_eq!(lab.operstate("h1", &iface, "up"), "up");
    assert_eq!(lab.reach_matrix(&nodes), TestLab::all_pairs_except(&nodes, &blocked));
    lab.apply(&Fault::LinkRestore { link });
    assert_eq!(lab.reach_matrix(&nodes), TestLab::all_pairs_except(&nodes, &[]));
}

fn proc_state(pid: u32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit_once(')')?.1.trim_start().chars().next()
}

#[test]
fn node_kill_pause_resume() {
    if !topo_lab::testkit::require_root("chaos::node_kill_pause_resume") {
        return;
    }
    let mut lab = TestLab::up("cnk", PAIR);
    let mut cmd = Command::new("sleep");
    cmd.arg("600").stdin(Stdio::null());
    topo_netns::command_in(&mut cmd, &lab.netns("a"), None).unwrap();
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();

    let sig = topo_chaos::node_signal(&lab.plan, "a", topo_chaos::NodeSignal::Pause).unwrap();
    assert_eq!(sig, vec![pid as i32]);
    let deadline = Instant::now() + Duration::from_secs(2);
    while proc_state(pid) != Some('T') && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(proc_state(pid), Some('T'), "paused process is stopped");
    lab.apply(&Fault::NodePause { node: "a".into() });
    lab.apply(&Fault::NodeResume { node: "a".into() });
    let deadline = Instant::now() + Duration::from_secs(2);
    while proc_state(pid) == Some('T') && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let st = proc_state(pid);
    assert!(matches!(st, Some('S' | 'R')), "resumed process runs or sleeps again, state {st:?}");
    // b's processes are untouched by a's kill.
    assert!(topo_chaos::node_signal(&lab.plan, "b", topo_chaos::NodeSignal::Kill).unwrap().is_empty());
    lab.apply(&Fault::NodeKill { node: "a".into() });
    let status = child.wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9));
}

#[test]
fn node_stop_start_keeps_addresses_macs_routes() {
    if !topo_lab::testkit::require_root("chaos::node_stop_start") {
        return;
    }
    // h - r - (link) - s: h's default route and r's static route must come back after start.
    let yaml = "name: NAME
networks:
  l1: {subnet: 10.63.0.0/24}
nodes:
  r:
    kind: router
    interfaces: [l1]
    routes: [{to: 10.64.0.0/24, via: 10.88.0.1}]
  h: {interfaces: [l1]}
  s: {loopback: [10.64.0.1/24]}
links:
  - endpoints:
      - {node: r, address: 10.88.0.0}
      - {node: s, address: 10.88.0.1}
    subnet: 10.88.0.0/31
";
    let mut lab = TestLab::up("cns", yaml);
    let nodes = ["h", "r", "s"];
    // s has no route back to l1; check h <-> r and r <-> s only.
    let snapshot = |lab: &TestLab| {
        (
            lab.sh("r", "ip -o addr show | grep -v ' lo ' | awk '{print $2, $4}' | sort"),
            lab.sh("r", "ip -br link show | awk '{print $1, $3}' | sort"),
            lab.sh("r", "ip route show | sort"),
        )
    };
    let before = snapshot(&lab);
    assert!(before.2.contains("10.64.0.0/24 via 10.88.0.1"), "{}", before.2);
    let ok = lab.reach_matrix(&nodes);
    assert!(ok.contains(&("h".into(), "r".into())) && ok.contains(&("r".into(), "s".into())));

    lab.apply(&Fault::NodeStop { node: "r".into() });
    for i in &lab.node("r").interfaces {
        assert_eq!(lab.operstate("r", &i.name, "down"), "down", "{}", i.name);
    }
    let m = lab.reach_matrix(&nodes);
    assert!(m.iter().all(|(a, b)| a != "r" && b != "r"), "stopped node still talks: {m:?}");

    lab.apply(&Fault::NodeStart { node: "r".into() });
    for i in &lab.node("r").interfaces {
        assert_eq!(lab.operstate("r", &i.name, "up"), "up", "{}", i.name);
    }
    let after = snapshot(&lab);
    assert_eq!(before.0, after.0, "addresses changed");
    assert_eq!(before.1, after.1, "MACs changed");
    assert_eq!(before.2, after.2, "routes changed");
    let ok = lab.reach_matrix(&nodes);
    assert!(ok.contains(&("h".into(), "r".into())) && ok.contains(&("r".into(), "s".into())), "{ok:?}");
}
