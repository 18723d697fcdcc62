//! Partition semantics as reachability matrices, with real UDP traffic between namespaces.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use support::{lan_yaml, TestLab};
use topo_lab::Fault;

fn g(groups: &[&[&str]]) -> Fault {
    Fault::Partition { groups: groups.iter().map(|g| g.iter().map(|s| (*s).to_owned()).collect()).collect() }
}

const N: [&str; 5] = ["h1", "h2", "h3", "h4", "h5"];

fn cut_between(a: &[&str], b: &[&str]) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    for x in N {
        for y in N {
            if (a.contains(&x) && b.contains(&y)) || (b.contains(&x) && a.contains(&y)) {
                out.push((x, y));
            }
        }
    }
    out
}

#[test]
fn partition_matrices() {
    if !topo_lab::testkit::require_root("chaos::partition_matrices") {
        return;
    }
    let mut lab = TestLab::up("cpa", &lan_yaml(5));
    let full = TestLab::all_pairs_except(&N, &[]);
    assert_eq!(lab.reach_matrix(&N), full, "healthy lab must be fully connected");

    // Symmetric groups with the implicit rest group {h5}.
    lab.apply(&g(&[&["h1", "h2"], &["h3", "h4"]]));
    let mut blocked = cut_between(&["h1", "h2"], &["h3", "h4"]);
    blocked.extend(cut_between(&["h1", "h2", "h3", "h4"], &["h5"]));
    assert_eq!(
        lab.reach_matrix(&N),
        TestLab::all_pairs_except(&N, &blocked),
        "groups {{h1,h2}} {{h3,h4}} {{h5}}"
    );

    // A new partition replaces the previous one.
    lab.apply(&g(&[&["h1", "h3"]]));
    let blocked = cut_between(&["h1", "h3"], &["h2", "h4", "h5"]);
    assert_eq!(lab.reach_matrix(&N), TestLab::all_pairs_except(&N, &blocked), "replaced by {{h1,h3}} rest");

    // Overlapping groups (bridge): h1 reaches h2 and h3, h2 and h3 don't reach each other;
    // the rest group {h4,h5} is cut from all three.
    lab.apply(&g(&[&["h1", "h2"], &["h1", "h3"]]));
    let mut blocked = cut_between(&["h2"], &["h3"]);
    blocked.extend(cut_between(&["h1", "h2", "h3"], &["h4", "h5"]));
    assert_eq!(lab.reach_matrix(&N), TestLab::all_pairs_except(&N, &blocked), "bridge");

    // Heal restores everything.
    lab.apply(&Fault::Heal);
    assert_eq!(lab.reach_matrix(&N), full, "after heal");

    // One-way: h1's traffic to h2 is dropped, h2's to h1 flows.
    lab.apply(&Fault::Drop { from: vec!["h1".into()], to: vec!["h2".into()] });
    assert_eq!(lab.reach_matrix(&N), TestLab::all_pairs_except(&N, &[("h1", "h2")]), "one-way h1->h2");

    // Grudge form, the NIC that sends but does not receive: everyone drops traffic to h3's
    // receiver... i.e. traffic from all others to h3 is dropped, h3's own traffic still flows.
    lab.apply(&Fault::Heal);
    lab.apply(&Fault::Drop {
        from: vec!["h1".into(), "h2".into(), "h4".into(), "h5".into()],
        to: vec!["h3".into()],
    });
    let blocked: Vec<(&str, &str)> = N.iter().filter(|n| **n != "h3").map(|n| (*n, "h3")).collect();
    assert_eq!(lab.reach_matrix(&N), TestLab::all_pairs_except(&N, &blocked), "h3 deaf");
    lab.apply(&Fault::Heal);
    assert_eq!(lab.reach_matrix(&N), full, "after second heal");
}

#[test]
fn partition_cuts_established_tcp() {
    if !topo_lab::testkit::require_root("chaos::partition_cuts_established_tcp") {
        return;
    }
    let mut lab = TestLab::up("cpt", &lan_yaml(2));
    let listener = lab.tcp_listen("h2", 47_100);
    let to = SocketAddr::from((lab.addr("h2"), 47_100));
    let mut client = lab.tcp_connect("h1", to);
    let (mut server, _) = listener.accept().unwrap();
    // An echo loop on the server side.
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok(n) = server.read(&mut buf) {
            if n == 0 || server.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    client.set_read_timeout(Some(Duration::from_millis(1500))).unwrap();
    let mut buf = [0u8; 4];
    client.write_all(b"ping").unwrap();
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping", "the flow works before the cut");

    lab.apply(&g(&[&["h1"], &["h2"]]));
    client.write_all(b"pong").unwrap();
    let r = client.read(&mut buf);
    assert!(r.is_err(), "established flow still answers across the partition: {r:?}");

    lab.apply(&Fault::Heal);
    // TCP retransmits the unanswered segment; the flow recovers after heal.
    client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"pong");
    drop(client);
    echo.join().unwrap();
}

#[test]
fn router_partition_blocks_its_own_traffic_not_forwarded() {
    if !topo_lab::testkit::require_root("chaos::router_partition") {
        return;
    }
    // h1 - r - h2 across two LANs. Partition r alone: h1 and h2 still talk through r (forwarded
    // traffic is not filtered), but neither reaches r itself.
    let yaml = "name: NAME
networks:
  l1: {subnet: 10.61.0.0/24}
  l2: {subnet: 10.62.0.0/24}
nodes:
  r: {kind: router, interfaces: [l1, l2]}
  h1: {interfaces: [l1]}
  h2: {interfaces: [l2]}
";
    let mut lab = TestLab::up("cpr", yaml);
    let nodes = ["r", "h1", "h2"];
    assert_eq!(lab.reach_matrix(&nodes), TestLab::all_pairs_except(&nodes, &[]));
    lab.apply(&g(&[&["r"], &["h1", "h2"]]));
    let blocked = [("r", "h1"), ("r", "h2"), ("h1", "r"), ("h2", "r")];
    assert_eq!(lab.reach_matrix(&nodes), TestLab::all_pairs_except(&nodes, &blocked));
}

#[test]
fn enforce_recovers_when_the_kernel_does_not_hold_old() {
    if !topo_lab::testkit::require_root("chaos::enforce_recovers") {
        return;
    }
    // As after a crash between enforcing and journaling: the kernel already holds the
    // partition, yet enforce is told it held nothing. The fast path fails (the elements exist)
    // and the full rebuild takes over.
    let lab = TestLab::up("cpk", &lan_yaml(3));
    let nodes = ["h1", "h2", "h3"];
    let mut parted = topo_lab::FaultState::default();
    parted.apply(&lab.plan, &g(&[&["h1"], &["h2", "h3"]])).unwrap();
    let clear = topo_lab::FaultState::default();
    topo_chaos::enforce(&lab.plan, &lab.state_dir, &clear, &parted).unwrap();
    topo_chaos::enforce(&lab.plan, &lab.state_dir, &clear, &parted).unwrap();
    let blocked = [("h1", "h2"), ("h1", "h3"), ("h2", "h1"), ("h3", "h1")];
    assert_eq!(lab.reach_matrix(&nodes), TestLab::all_pairs_except(&nodes, &blocked));
    // Healing from a state that claims more than the kernel holds also converges.
    let mut more = parted.clone();
    more.apply(&lab.plan, &Fault::Drop { from: vec!["h2".into()], to: vec!["h3".into()] }).unwrap();
    topo_chaos::enforce(&lab.plan, &lab.state_dir, &more, &clear).unwrap();
    assert_eq!(lab.reach_matrix(&nodes), TestLab::all_pairs_except(&nodes, &[]));
}

#[test]
fn partition_matches_ipv6_sources() {
    if !topo_lab::testkit::require_root("chaos::partition_ipv6") {
        return;
    }
    let yaml = "name: NAME
networks:
  lan: {subnet: 10.79.0.0/24, subnet6: 'fd00:79::/64'}
nodes:
  h1: {interfaces: [lan]}
  h2: {interfaces: [lan]}
  h3: {interfaces: [lan]}
";
    let mut lab = TestLab::up("cp6", yaml);
    let v6 = |n: &str| lab.node(n).interfaces[0].addresses6[0].addr().to_string();
    let (a2, a3) = (v6("h2"), v6("h3"));
    let ping6 = |lab: &TestLab, from: &str, to: &str| -> bool {
        (0..3)
            .any(|_| lab.sh(from, &format!("ping -6 -n -c 1 -W 1 {to} >/dev/null && echo ok")).contains("ok"))
    };
    assert!(ping6(&lab, "h1", &a2), "IPv6 works before the partition");
    lab.apply(&g(&[&["h1"], &["h2", "h3"]]));
    assert!(!ping6(&lab, "h1", &a2), "IPv6 crosses the partition");
    assert!(ping6(&lab, "h2", &a3), "IPv6 inside a group works");
    lab.apply(&Fault::Heal);
    assert!(ping6(&lab, "h1", &a2), "IPv6 works after heal");
}
