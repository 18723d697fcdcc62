//! Test labs for the chaos tests: built from a topology through topo-plan, with `ip` batches
//! (a small stand-in for topo-kernel's `up`, so these tests depend on nothing but the plan),
//! plus traffic helpers that run sockets inside the nodes. Every lab is torn down by a guard.

#![allow(dead_code, clippy::missing_panics_doc, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use topo_lab::{Fault, FaultState};
use topo_netns::Netns;
use topo_plan::{Attachment, Plan};

pub struct TestLab {
    pub plan: Plan,
    pub state_dir: PathBuf,
    pub faults: FaultState,
}

fn ip_batch(netns: Option<&str>, lines: &[String]) {
    if lines.is_empty() {
        return;
    }
    let mut cmd = Command::new("ip");
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    cmd.args(["-batch", "-"]).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run ip");
    child.stdin.take().unwrap().write_all(lines.join("\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "ip -batch in {netns:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        lines.join("\n")
    );
}

impl TestLab {
    /// Build the lab described by `yaml`, whose `name:` line is replaced by a unique name.
    pub fn up(prefix: &str, yaml: &str) -> TestLab {
        let name = topo_lab::testkit::unique_lab(prefix);
        let text = yaml.replace("NAME", &name);
        let plan = match topo_plan::plan_str("test.yaml", &text) {
            Ok(p) => p,
            Err(d) => panic!("bad test topology: {d:?}"),
        };
        let state_dir = std::env::temp_dir().join(format!("topo-chaos-test-{name}"));
        std::fs::create_dir_all(&state_dir).unwrap();
        let lab = TestLab { plan, state_dir, faults: FaultState::default() };
        lab.build();
        lab.wait_carrier();
        lab
    }

    fn build(&self) {
        let p = &self.plan;
        Netns::create(&p.fabric.netns).unwrap();
        for n in &p.nodes {
            Netns::create(&n.netns).unwrap();
        }
        let mut root = Vec::new();
        let mut fabric: Vec<String> = Vec::new();
        for b in &p.fabric.bridges {
            fabric.push(format!("link add {} type bridge", b.ifname));
            fabric.push(format!("link set {} up", b.ifname));
        }
        for n in &p.nodes {
            for i in &n.interfaces {
                match &i.attachment {
                    Attachment::Network { bridge, port, .. } => {
                        root.push(format!(
                            "link add {} netns {} address {} mtu {} type veth peer name {port} netns {}",
                            i.name, n.netns, i.mac, i.mtu, p.fabric.netns
                        ));
                        fabric.push(format!("link set {port} master {bridge} up"));
                    }
                    Attachment::Link { link, .. } => {
                        let l = &p.links[*link];
                        if l.a.node == n.name {
                            let peer = p.node(&l.b.node).unwrap();
                            let pif = peer.iface(&l.b.iface).unwrap();
                            root.push(format!(
                                "link add {} netns {} address {} mtu {} type veth peer name {} netns {} address {} mtu {}",
                                i.name, n.netns, i.mac, i.mtu, pif.name, peer.netns, pif.mac, pif.mtu
                            ));
                        }
                    }
                }
            }
        }
        ip_batch(None, &root);
        ip_batch(Some(&p.fabric.netns), &fabric);
        std::thread::scope(|s| {
            for n in &p.nodes {
                s.spawn(move || {
                    let ns = Netns::open(&n.netns).unwrap();
                    let sysctls = n.sysctls.clone();
                    ns.run(move || {
                        for (k, v) in &sysctls {
                            let _ = topo_netns::write_sysctl(k, v);
                        }
                    })
                    .unwrap();
                    let mut lines = vec!["link set lo up".to_owned()];
                    for l in &n.loopbacks {
                        lines.push(format!("addr add {l} dev lo"));
                    }
                    for i in &n.interfaces {
                        for a in &i.addresses {
                            lines.push(format!("addr add {a} dev {}", i.name));
                        }
                        for a in &i.addresses6 {
                            lines.push(format!("addr add {a} dev {} nodad", i.name));
                        }
                        lines.push(format!("link set {} up", i.name));
                    }
                    for r in &n.routes {
                        let metric = r.metric.map(|m| format!(" metric {m}")).unwrap_or_default();
                        lines.push(format!("route add {} via {} dev {}{metric}", r.to, r.via, r.dev));
                    }
                    ip_batch(Some(&n.netns), &lines);
                });
            }
        });
    }

    /// Wait until every node interface is operationally up: a veth passes nothing until the
    /// kernel has noticed the carrier (asynchronously), and tests' first packets would be lost.
    fn wait_carrier(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        for n in self.plan.nodes.iter().filter(|n| !n.interfaces.is_empty()) {
            loop {
                let out = Command::new("ip").args(["-n", &n.netns, "-br", "link", "show"]).output().unwrap();
                let text = String::from_utf8_lossy(&out.stdout);
                let all_up = text
                    .lines()
                    .filter(|l| !l.starts_with("lo "))
                    .all(|l| l.split_whitespace().nth(1) == Some("UP"));
                if all_up || Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    pub fn node(&self, name: &str) -> &topo_plan::NodePlan {
        self.plan.node(name).unwrap_or_else(|| panic!("no node {name}"))
    }

    pub fn addr(&self, name: &str) -> Ipv4Addr {
        self.node(name).primary_address().unwrap()
    }

    /// Apply a fault the way a backend does: update the state, then enforce old -> new.
    pub fn apply(&mut self, fault: &Fault) {
        let old = self.faults.clone();
        let mut new = old.clone();
        new.apply(&self.plan, fault).unwrap();
        topo_chaos::apply_fault(&self.plan, &self.state_dir, &old, &new, fault).unwrap();
        self.faults = new;
    }

    pub fn netns(&self, node: &str) -> Netns {
        Netns::open(&self.node(node).netns).unwrap()
    }

    /// A UDP socket bound inside `node` (port 0 = any).
    pub fn udp(&self, node: &str, port: u16) -> UdpSocket {
        self.netns(node)
            .run(move || UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))))
            .unwrap()
            .unwrap()
    }

    pub fn tcp_listen(&self, node: &str, port: u16) -> TcpListener {
        self.netns(node)
            .run(move || TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))))
            .unwrap()
            .unwrap()
    }

    pub fn tcp_connect(&self, node: &str, to: SocketAddr) -> TcpStream {
        self.netns(node)
            .run(move || TcpStream::connect_timeout(&to, Duration::from_secs(3)))
            .unwrap()
            .unwrap()
    }

    /// Directed pairs (from, to) whose UDP datagrams arrive, over every ordered pair of `nodes`.
    pub fn reach_matrix(&self, nodes: &[&str]) -> BTreeSet<(String, String)> {
        const PORT: u16 = 47_001;
        let rx: Vec<(String, UdpSocket)> =
            nodes.iter().map(|n| ((*n).to_owned(), self.udp(n, PORT))).collect();
        let tx: Vec<(String, UdpSocket)> = nodes.iter().map(|n| ((*n).to_owned(), self.udp(n, 0))).collect();
        let expected = nodes.len() * (nodes.len() - 1);
        let mut got = BTreeSet::new();
        // Generous: tests run in parallel on a loaded machine, and a blocked pair is only
        // known to be blocked once the deadline passes.
        let deadline = Instant::now() + Duration::from_millis(1500);
        let mut rounds = 0;
        let mut next_round = Instant::now();
        while Instant::now() < deadline && got.len() < expected {
            // Several rounds: the first packets to a fresh neighbour wait for ARP.
            if rounds < 5 && Instant::now() >= next_round {
                for (from, s) in &tx {
                    for to in nodes.iter().filter(|t| **t != from) {
                        let msg = format!("{from}>{to}");
                        let _ = s.send_to(msg.as_bytes(), (self.addr(to), PORT));
                    }
                }
                rounds += 1;
                next_round = Instant::now() + Duration::from_millis(200);
            }
            for (to, s) in &rx {
                s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
                let mut buf = [0u8; 256];
                while let Ok(n) = s.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    if let Some((f, t)) = text.split_once('>') {
                        if t == to {
                            got.insert((f.to_owned(), t.to_owned()));
                        }
                    }
                }
            }
        }
        got
    }

    /// Every ordered pair of `nodes` except the given blocked ones.
    pub fn all_pairs_except(nodes: &[&str], blocked: &[(&str, &str)]) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for a in nodes {
            for b in nodes {
                if a != b && !blocked.contains(&(*a, *b)) {
                    out.insert(((*a).to_owned(), (*b).to_owned()));
                }
            }
        }
        out
    }

    /// Run a command inside a node (like `ip netns exec`, with the node's own /sys).
    pub fn sh(&self, node: &str, script: &str) -> String {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        topo_netns::command_in(&mut cmd, &self.netns(node), None).unwrap();
        let out = cmd.output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The interface's operstate as the node sees it in /sys, polled for up to 3 s until it
    /// equals `want` (the kernel updates operstate asynchronously).
    pub fn operstate(&self, node: &str, iface: &str, want: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let s = self.sh(node, &format!("cat /sys/class/net/{iface}/operstate")).trim().to_owned();
            if s == want || Instant::now() > deadline {
                return s;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        let _ = topo_chaos::clear(&self.plan, &self.state_dir);
        topo_chaos::gc_lab(&self.plan.lab);
        for n in &self.plan.nodes {
            let _ = topo_netns::delete(&n.netns);
        }
        let _ = topo_netns::delete(&self.plan.fabric.netns);
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

/// Point the delayer launcher at this crate's `topo-delayer` binary.
pub fn use_test_delayer() {
    // SAFETY-free: tests in one binary agree on the same value.
    std::env::set_var("TOPO_BIN", env!("CARGO_BIN_EXE_topo-delayer"));
}

/// A LAN of `n` hosts h1..hn on one network.
pub fn lan_yaml(n: usize) -> String {
    let mut s = String::from("name: NAME\nnetworks:\n  lan: {subnet: 10.77.0.0/16}\nnodes:\n");
    for i in 1..=n {
        s += &["  h", &i.to_string(), ": {interfaces: [lan]}\n"].concat();
    }
    s
}

pub const PAIR: &str = "name: NAME
nodes:
  a: {}
  b: {}
links:
  - endpoints:
      - {node: a, address: 10.88.0.0}
      - {node: b, address: 10.88.0.1}
    subnet: 10.88.0.0/31
";
