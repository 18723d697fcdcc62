//! The chaos commands end to end through the `topo` binary on a kernel lab: partition (groups,
//! implicit rest group, random with a seed, one-way), heal/join, link cut/restore and down/up
//! (also for a LAN attachment), node stop/start, impairments from the topology file and at
//! runtime, and the events log. Root only (skips otherwise; fails under CI=true).

use std::process::{Command, Stdio};

use topo_lab::testkit::{require_root, unique_lab};

mod support;
use support::{ok, run};

struct Guard(String);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = run(&["down", &self.0]);
        let _ = run(&["gc", &self.0]);
    }
}

/// Ping `addr` once from `node` of `lab`; returns the RTT in ms when it answered.
fn ping(lab: &str, node: &str, addr: &str) -> Option<f64> {
    let out = Command::new("ip")
        .args(["netns", "exec", &format!("topo-{lab}.{node}"), "ping", "-n", "-c", "1", "-W", "1", addr])
        .stdin(Stdio::null())
        .output()
        .expect("run ping");
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("time=").nth(1).and_then(|t| t.split_whitespace().next()).and_then(|t| t.parse().ok())
}

/// Ping with a few retries for paths that must work (first packets wait for ARP).
fn reaches(lab: &str, node: &str, addr: &str) -> bool {
    (0..3).any(|_| ping(lab, node, addr).is_some())
}

const TOPOLOGY: &str = "name: LAB
networks:
  lan: {subnet: 10.71.0.0/24}
nodes:
  h1: {interfaces: [{network: lan, address: 10.71.0.11}]}
  h2: {interfaces: [{network: lan, address: 10.71.0.12}]}
  h3: {interfaces: [{network: lan, address: 10.71.0.13}]}
  a: {}
  b: {}
links:
  - endpoints:
      - {node: a, address: 10.72.0.0}
      - {node: b, address: 10.72.0.1}
    subnet: 10.72.0.0/31
    impair:
      a->b: {delay: 15ms}
";

#[test]
fn chaos_commands_end_to_end() {
    if !require_root("chaos_cli::chaos_commands_end_to_end") {
        return;
    }
    let lab = unique_lab("cc");
    let dir = std::env::temp_dir().join("topo-chaos-cli-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{lab}.yaml"));
    std::fs::write(&file, TOPOLOGY.replace("LAB", &lab)).unwrap();
    let _guard = Guard(lab.clone());
    ok(&["up", file.to_str().unwrap()]);

    // The file's impairment is in force from up: a->b carries 15 ms.
    assert!(reaches(&lab, "a", "10.72.0.1"));
    let rtt = ping(&lab, "a", "10.72.0.1").expect("a reaches b");
    assert!((14.0..30.0).contains(&rtt), "static delay not applied: RTT {rtt} ms");

    // Groups with the implicit rest group.
    let out = ok(&["partition", "--lab", &lab, "h1", "h2,h3"]);
    assert!(out.contains("group 1: h1"), "{out}");
    assert!(out.contains("group 2: h2 h3"), "{out}");
    assert!(out.contains("group 3: a b"), "{out}");
    assert!(ping(&lab, "h1", "10.71.0.12").is_none(), "h1 must not reach h2");
    assert!(reaches(&lab, "h2", "10.71.0.13"), "h2 reaches h3");

    // Heal, and its alias join.
    ok(&["heal", "--lab", &lab]);
    assert!(reaches(&lab, "h1", "10.71.0.12"));
    ok(&["partition", "--lab", &lab, "h1"]);
    ok(&["join", "--lab", &lab]);
    assert!(reaches(&lab, "h1", "10.71.0.12"));

    // Random partitions are reproducible from the printed seed.
    let r1 = ok(&["partition", "--lab", &lab, "--random", "--seed", "42"]);
    let r2 = ok(&["partition", "--lab", &lab, "--random", "--seed", "42"]);
    assert!(r1.starts_with("seed 42"), "{r1}");
    assert_eq!(r1, r2);
    let j: serde_json::Value =
        serde_json::from_str(&ok(&["partition", "--lab", &lab, "--random", "--seed", "42", "--json"]))
            .unwrap();
    assert!(j["partition"].as_array().is_some_and(|g| g.len() >= 2), "{j}");
    ok(&["heal", "--lab", &lab]);

    // One-way: printed, and a bad selector is a usage error.
    let out = ok(&["partition", "--lab", &lab, "--oneway", "h1->h2"]);
    assert!(out.contains("h1->h2"), "{out}");
    assert_eq!(run(&["partition", "--lab", &lab, "--oneway", "h1->nope"]).status.code(), Some(2));
    ok(&["heal", "--lab", &lab]);

    // Link cut keeps the carrier; link down drops it.
    let iface_of = |node: &str| -> String {
        let out = Command::new("ip")
            .args(["-n", &format!("topo-{lab}.{node}"), "-br", "link", "show"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines().find(|l| !l.starts_with("lo ")).map(str::to_owned).unwrap_or_default()
    };
    ok(&["link", "cut", "--lab", &lab, "a", "b"]);
    assert!(ping(&lab, "a", "10.72.0.1").is_none());
    assert!(iface_of("a").contains("UP"), "{}", iface_of("a"));
    ok(&["link", "restore", "--lab", &lab, "a", "b"]);
    assert!(reaches(&lab, "a", "10.72.0.1"));
    ok(&["link", "down", "--lab", &lab, "h1", "lan"]);
    assert!(iface_of("h1").contains("DOWN"), "{}", iface_of("h1"));
    assert!(ping(&lab, "h1", "10.71.0.12").is_none());
    ok(&["link", "up", "--lab", &lab, "h1", "lan"]);
    assert!(reaches(&lab, "h1", "10.71.0.12"));

    // Node stop/start: same address afterwards.
    ok(&["node", "stop", "--lab", &lab, "h2"]);
    assert!(ping(&lab, "h1", "10.71.0.12").is_none());
    ok(&["node", "start", "--lab", &lab, "h2"]);
    assert!(reaches(&lab, "h1", "10.71.0.12"));

    // Runtime impairment replaces the file's for that direction; --clear brings the file's back.
    ok(&["impair", "--lab", &lab, "a", "b", "--loss", "100%", "--dir", "a->b"]);
    assert!(ping(&lab, "a", "10.72.0.1").is_none());
    ok(&["impair", "--lab", &lab, "--clear"]);
    assert!(reaches(&lab, "a", "10.72.0.1"));
    let rtt = ping(&lab, "a", "10.72.0.1").expect("a reaches b");
    assert!(rtt >= 14.0, "file delay back after clear: RTT {rtt} ms");

    // The audit log saw the faults.
    let events: serde_json::Value = serde_json::from_str(&ok(&["events", "--lab", &lab, "--json"])).unwrap();
    assert!(events.as_array().is_some_and(|e| e.len() >= 10), "{events}");

    ok(&["down", &lab]);
}

/// Impairments need the userspace delayer where the kernel has no netem; topo runs it from its
/// own executable, which must be found under any name (a copied or renamed binary once failed
/// `up` with "cannot find the topo binary"). On a kernel with netem the delay comes from netem
/// and this checks only that `up` works under another name.
#[test]
fn a_renamed_topo_binary_still_applies_impairments() {
    if !require_root("chaos_cli::a_renamed_topo_binary_still_applies_impairments") {
        return;
    }
    let lab = unique_lab("cr");
    let dir = std::env::temp_dir().join(format!("topo-renamed-{lab}"));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("topo-under-another-name");
    std::fs::copy(env!("CARGO_BIN_EXE_topo"), &exe).unwrap();
    let file = dir.join(format!("{lab}.yaml"));
    std::fs::write(&file, TOPOLOGY.replace("LAB", &lab)).unwrap();
    struct Cleanup(std::path::PathBuf, String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let exe = self.0.join("topo-under-another-name");
            let _ = Command::new(&exe).args(["down", &self.1]).env_remove("TOPO_BIN").output();
            let _ = Command::new(&exe).args(["gc", &self.1]).env_remove("TOPO_BIN").output();
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _cleanup = Cleanup(dir.clone(), lab.clone());
    let out = Command::new(&exe)
        .args(["up", file.to_str().unwrap()])
        .env_remove("TOPO_BIN")
        .env_remove("TOPO_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "up under another name failed:\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(reaches(&lab, "a", "10.72.0.1"));
    let rtt = ping(&lab, "a", "10.72.0.1").expect("a reaches b");
    assert!((14.0..30.0).contains(&rtt), "static delay not applied: RTT {rtt} ms");
}
