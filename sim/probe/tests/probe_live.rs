//! Live probe tests (root): real namespaces, veths, bridges, nft rules.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use topo_lab::testkit::{require_root, unique_lab};
use topo_lab::{ConvergeRequest, Flow, Proto, ReachRequest};
use topo_probe::testlab::TestLab;
use topo_probe::{ProbeOpts, ResponderOpts};

fn all(lab: &TestLab) -> Vec<String> {
    lab.plan.nodes.iter().map(|n| n.name.clone()).collect()
}

fn req(lab: &TestLab, proto: Proto) -> ReachRequest {
    ReachRequest { from: all(lab), to: all(lab), proto }
}

fn nft(lab: &TestLab, node: &str, rules: &str) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", lab.ns(node), "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(rules.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "nft in {node}: {rules}");
}

#[test]
fn lan_matrix_all_protocols() {
    if !require_root("probe::lan_matrix_all_protocols") {
        return;
    }
    let lab = TestLab::lan(&unique_lab("pl"), 5, false).unwrap();
    for proto in [Proto::Icmp, Proto::Udp(7946), Proto::Tcp(7947)] {
        let d = topo_probe::reach_detailed(&lab.plan, &req(&lab, proto), &ProbeOpts::default()).unwrap();
        assert_eq!(d.pairs.len(), 20, "{proto}");
        for p in &d.pairs {
            assert!(p.reached, "{proto} {} -> {}: {:?}", p.from, p.to, p.reason);
            assert_eq!(p.to_addr, lab.plan.node(&p.to).unwrap().primary_address().unwrap());
        }
        if proto != Proto::Icmp {
            // On a LAN nothing rewrites sources: each receiver saw the sender's own address.
            assert!(d.nat_violations(&lab.plan).is_empty(), "{proto}: {:?}", d.nat_violations(&lab.plan));
            assert!(d.pairs.iter().all(|p| p.observed.is_some()), "{proto}: observations missing");
        }
        // Sorted by (from, to).
        let keys: Vec<_> = d.pairs.iter().map(|p| (p.from.clone(), p.to.clone())).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }
}

#[test]
fn partition_negative_expectations_and_one_way_udp() {
    if !require_root("probe::partition") {
        return;
    }
    let lab = TestLab::lan(&unique_lab("pp"), 4, false).unwrap();
    // h1 drops everything from h2 at its ingress; h2 -> h1 is cut one way, and every round trip
    // between them fails too.
    let h2 = lab.plan.node("h2").unwrap().primary_address().unwrap();
    nft(
        &lab,
        "h1",
        &format!(
            "table ip tp {{ chain in {{ type filter hook input priority 0; ip saddr {h2} drop; }}\n}}\n"
        ),
    );
    let mut expect = HashMap::new();
    for a in all(&lab) {
        for b in all(&lab) {
            if a != b {
                let cut = (a == "h1" && b == "h2") || (a == "h2" && b == "h1");
                expect.insert((a.clone(), b.clone()), !cut);
            }
        }
    }
    let opts =
        ProbeOpts { expect: Some(expect.clone()), deadline: Duration::from_secs(2), ..ProbeOpts::default() };
    let d = topo_probe::reach_detailed(&lab.plan, &req(&lab, Proto::Icmp), &opts).unwrap();
    let m = d.matrix();
    let mism: Vec<_> =
        m.pairs.iter().filter(|p| expect[&(p.from.clone(), p.to.clone())] != p.reached).collect();
    assert!(mism.is_empty(), "{mism:?}");
    // Reached pairs settle in their first round; cut pairs count as not reached after exactly
    // `attempts` (3) unanswered rounds, not after the deadline.
    for p in &d.pairs {
        let want = if expect[&(p.from.clone(), p.to.clone())] { 1 } else { 3 };
        assert_eq!(p.attempts, want, "{p:?}");
    }
    // Three rounds, not rounds until the deadline (2 s would allow more).
    assert_eq!(d.rounds, 3);
    assert_eq!(m.get("h1", "h2").unwrap().reason.as_deref(), Some("timeout"));

    // UDP is one-way: h1 -> h2 is delivered, h2 -> h1 is not.
    let u = topo_probe::reach(
        &lab.plan,
        &ReachRequest {
            from: vec!["h1".into(), "h2".into()],
            to: vec!["h1".into(), "h2".into()],
            proto: Proto::Udp(7950),
        },
        &ProbeOpts::with_deadline(Duration::from_millis(500)),
    )
    .unwrap();
    assert!(u.get("h1", "h2").unwrap().reached);
    assert!(!u.get("h2", "h1").unwrap().reached);

    // A wrong expectation (h1 must not reach h3) is reported as a mismatch after the deadline.
    let mut wrong = expect;
    wrong.insert(("h1".into(), "h3".into()), false);
    let opts =
        ProbeOpts { expect: Some(wrong), deadline: Duration::from_millis(400), ..ProbeOpts::default() };
    let m = topo_probe::reach(&lab.plan, &req(&lab, Proto::Icmp), &opts).unwrap();
    assert!(m.get("h1", "h3").unwrap().reached);
}

#[test]
fn nat_check_positive_and_negative() {
    if !require_root("probe::nat") {
        return;
    }
    let opts = ProbeOpts::with_deadline(Duration::from_secs(2));
    let plain = TestLab::nat(&unique_lab("pn"), false).unwrap();
    let r = topo_probe::nat(&plain.plan, "a", "b", &opts).unwrap();
    assert_eq!(r.sent_src, "10.1.0.2".parse::<std::net::Ipv4Addr>().unwrap());
    assert!(r.nat_free(), "{r:?}");

    let masq = TestLab::nat(&unique_lab("pm"), true).unwrap();
    let r = topo_probe::nat(&masq.plan, "a", "b", &opts).unwrap();
    assert_eq!(r.sent_src, "10.1.0.2".parse::<std::net::Ipv4Addr>().unwrap());
    assert_eq!(r.observed_src, Some("10.2.0.1".parse().unwrap()), "{r:?}");
    assert!(!r.nat_free());
    // The matrix with UDP sees the same rewrite. A longer deadline: it bounds only unanswered
    // probes, and under CI load the UDP responder in b once took longer than 2 s to answer
    // (the pair then counted as unreached, with no rewrite to see).
    let d = topo_probe::reach_detailed(
        &masq.plan,
        &ReachRequest { from: vec!["a".into()], to: vec!["b".into()], proto: Proto::Udp(7951) },
        &ProbeOpts::with_deadline(Duration::from_secs(10)),
    )
    .unwrap();
    assert_eq!(d.nat_violations(&masq.plan).len(), 1, "{d:?}");
}

#[test]
fn path_through_the_chain() {
    if !require_root("probe::path") {
        return;
    }
    let lab = TestLab::chain(&unique_lab("pc"), 3).unwrap();
    let p = topo_probe::path(&lab.plan, "a", "b", &ProbeOpts::with_deadline(Duration::from_secs(3))).unwrap();
    assert!(p.delivered, "{p:?}");
    let nodes: Vec<Option<&str>> = p.hops.iter().map(|h| h.node.as_deref()).collect();
    assert_eq!(nodes, [Some("r1"), Some("r2"), Some("r3"), Some("b")], "{p:?}");
    let back =
        topo_probe::path(&lab.plan, "b", "r1", &ProbeOpts::with_deadline(Duration::from_secs(3))).unwrap();
    let nodes: Vec<Option<&str>> = back.hops.iter().map(|h| h.node.as_deref()).collect();
    assert_eq!(nodes, [Some("r3"), Some("r2"), Some("r1")], "{back:?}");
    // No route from r2 towards an address outside the lab: unreachable, not delivered.
    let m = topo_probe::reach(
        &lab.plan,
        &ReachRequest { from: vec!["a".into()], to: vec!["b".into(), "r3".into()], proto: Proto::Icmp },
        &ProbeOpts::default(),
    )
    .unwrap();
    assert!(m.pairs.iter().all(|p| p.reached), "{m:?}");
}

/// An `nft -i` session inside a namespace: commands take effect within about a millisecond,
/// without a process start per change. Each change is followed by a listing of the `tc` table's
/// `on` set, whose output proves nft has applied it (nft handles its input in order).
struct NftShell(std::process::Child, std::io::BufReader<std::process::ChildStdout>);

impl NftShell {
    fn new(ns: &str) -> Self {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "nft", "-i"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        NftShell(child, out)
    }
    /// Send `line` and wait until nft has applied it: (sent, applied-by) instants.
    fn apply(&mut self, line: &str) -> (Instant, Instant) {
        use std::io::BufRead;
        let stdin = self.0.stdin.as_mut().unwrap();
        let sent = Instant::now();
        stdin.write_all(format!("{line}\nlist set ip tc on\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
        let mut l = String::new();
        loop {
            l.clear();
            assert!(self.1.read_line(&mut l).unwrap() > 0, "nft -i ended");
            if l.trim_end() == "}" {
                return (sent, Instant::now());
            }
        }
    }
}

impl Drop for NftShell {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn converge_measures_a_known_300ms_outage() {
    if !require_root("probe::converge") {
        return;
    }
    let lab = TestLab::lan(&unique_lab("pv"), 3, false).unwrap();
    let h1 = lab.plan.node("h1").unwrap().primary_address().unwrap();
    // Drop h1's packets at h2's ingress while a flag element is present in a set.
    nft(
        &lab,
        "h2",
        "table ip tc { set on { type ipv4_addr; }\n chain in { type filter hook input priority 0; ip saddr @on drop; }\n}\n",
    );
    let mut shell = NftShell::new(lab.ns("h2"));
    // Warm the session up so its first command is not slower than the second.
    shell.apply("list tables");
    let shell = std::sync::Arc::new(std::sync::Mutex::new(shell));
    // The same outage seen by every stream kind: ICMP echo, UDP echoed by topo's listener in
    // h2, TCP connects accepted by it.
    for proto in [Proto::Icmp, Proto::Udp(7970), Proto::Tcp(7971)] {
        known_outage(&lab, &shell, h1, proto);
    }
}

fn known_outage(
    lab: &TestLab,
    shell: &std::sync::Arc<std::sync::Mutex<NftShell>>,
    h1: std::net::Ipv4Addr,
    proto: Proto,
) {
    let on = format!("add element ip tc on {{ {h1} }}");
    let off = format!("delete element ip tc on {{ {h1} }}");
    let mut req = ConvergeRequest::new(vec![
        Flow { from: "h1".into(), to: "h2".into() },
        Flow { from: "h3".into(), to: "h2".into() },
    ]);
    req.proto = proto;
    req.timeout = Duration::from_secs(10);
    req.quiet = Duration::from_millis(600);
    req.loss_timeout = Duration::from_millis(200);
    let tmp = std::env::temp_dir();
    let sh = shell.clone();
    let mut timer = None;
    let mut on_at = None;
    let report = topo_probe::converge(&lab.plan, &tmp, &req, &mut || {
        let (on_sent, on_done) = sh.lock().unwrap().apply(&on);
        on_at = Some((on_sent, on_done));
        let sh2 = sh.clone();
        let off = off.clone();
        timer = Some(std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300).saturating_sub(on_sent.elapsed()));
            sh2.lock().unwrap().apply(&off)
        }));
        Ok(())
    })
    .unwrap_or_else(|e| panic!("{proto}: {e}"));
    let (off_sent, off_done) = timer.unwrap().join().unwrap();
    let (on_sent, on_done) = on_at.unwrap();
    // The outage really injected lies between these bounds (300 ms plus how late the scheduler
    // ran the timer and nft on this machine); the measurement must land within ±5 ms of them.
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (lo, hi) = (ms(off_sent.duration_since(on_done)), ms(off_done.duration_since(on_sent)));
    let json = serde_json::to_string_pretty(&report).unwrap();
    assert_eq!(report.proto, proto);
    let f = &report.flows[0];
    let outage = f.outage_ms.unwrap_or_else(|| panic!("{proto}: no outage measured: {json}"));
    eprintln!("{proto}: measured outage {outage:.1} ms, {} lost; injected {lo:.1}..{hi:.1} ms", f.lost);
    assert!(
        (lo - 5.0..=hi + 5.0).contains(&outage),
        "{proto}: outage {outage} ms, injected {lo:.1}..{hi:.1} ms (±5): {json}"
    );
    assert!(f.converged && f.stable_ms.unwrap() > f.last_loss_ms.unwrap(), "{proto}: {json}");
    // One probe per millisecond.
    assert!((lo - 6.0..=hi + 6.0).contains(&(f.lost as f64)), "{proto}: {json}");
    // The other flow is untouched.
    let g = &report.flows[1];
    assert_eq!((g.lost, g.outage_ms), (0, None), "{proto}: {json}");
    assert!(g.converged);
    assert!(report.timeline.windows(2).all(|w| w[0].t_ms() <= w[1].t_ms()));
}

#[test]
fn converge_without_an_answering_port_is_not_flowing() {
    if !require_root("probe::converge_refused") {
        return;
    }
    // Something else holds the UDP port in b but never answers: no echo comes back, so the
    // stream does not work before the fault and nothing is measured.
    let lab = TestLab::nat(&unique_lab("pf"), false).unwrap();
    let mut hold = Command::new("ip")
        .args(["netns", "exec", lab.ns("b"), "python3", "-c"])
        .arg("import socket,time; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('',7972)); print('up',flush=True); time.sleep(30)")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the port is bound.
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(hold.stdout.take().unwrap()), &mut line)
        .unwrap();
    assert_eq!(line.trim(), "up");
    let mut req = ConvergeRequest::new(vec![Flow { from: "a".into(), to: "b".into() }]);
    req.proto = Proto::Udp(7972);
    req.timeout = Duration::from_millis(800);
    let r = topo_probe::converge(&lab.plan, std::path::Path::new("/tmp"), &req, &mut || Ok(()));
    let _ = hold.kill();
    let _ = hold.wait();
    match r {
        Err(topo_probe::ProbeError::NotFlowing(msg)) => assert!(msg.contains("a->b"), "{msg}"),
        other => panic!("expected NotFlowing, got {other:?}"),
    }
}

#[test]
fn converge_sees_route_changes() {
    if !require_root("probe::converge_routes") {
        return;
    }
    let lab = TestLab::chain(&unique_lab("pr"), 1).unwrap();
    let mut req = ConvergeRequest::new(vec![Flow { from: "a".into(), to: "b".into() }]);
    req.timeout = Duration::from_secs(5);
    req.stable = 20;
    req.loss_timeout = Duration::from_millis(100);
    let ns = lab.ns("r1").to_owned();
    let report = topo_probe::converge(&lab.plan, std::path::Path::new("/tmp"), &req, &mut || {
        // Replace r1's forwarding for b's subnet with a blackhole, then put it back.
        let run = |c: &str| {
            let st = Command::new("ip")
                .args(["-n", &ns, "route"])
                .args(c.split(' '))
                .status()
                .map_err(|e| e.to_string())?;
            if st.success() {
                Ok(())
            } else {
                Err(format!("ip route {c} failed"))
            }
        };
        run("add blackhole 10.9.1.2/32")?;
        std::thread::sleep(Duration::from_millis(100));
        run("del blackhole 10.9.1.2/32")
    })
    .unwrap();
    let json = serde_json::to_string_pretty(&report).unwrap();
    let routes: Vec<_> = report
        .timeline
        .iter()
        .filter_map(|e| match e {
            topo_lab::TimelineEvent::Route { node, action, dst, .. } => {
                Some((node.clone(), action.clone(), dst.clone()))
            }
            _ => None,
        })
        .collect();
    assert!(routes.contains(&("r1".into(), "add".into(), "10.9.1.2/32".into())), "{json}");
    assert!(routes.contains(&("r1".into(), "del".into(), "10.9.1.2/32".into())), "{json}");
    let f = &report.flows[0];
    let outage = f.outage_ms.unwrap_or_else(|| panic!("{json}"));
    assert!((60.0..200.0).contains(&outage), "{json}");
}

#[test]
fn responders_answer_and_are_stopped_by_pid() {
    if !require_root("probe::responders") {
        return;
    }
    // The example binary `responder` is built by `cargo test` next to the test binaries.
    let exe = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("examples/responder");
    assert!(exe.exists(), "{} missing: run `cargo test -p topo-probe` (it builds examples)", exe.display());
    let lab = TestLab::nat(&unique_lab("ps"), true).unwrap();
    let state = tempfile_dir();
    let mut opts = ResponderOpts::new(exe);
    opts.port = 7960;
    let started = topo_probe::start_responders(&lab.plan, &state, &opts).unwrap();
    assert_eq!(started.len(), 3);
    let pids: Vec<u32> = started.iter().map(|s| s.1).collect();
    // With the port held by responders, UDP and TCP checks rely on their answers.
    for proto in [Proto::Udp(7960), Proto::Tcp(7960)] {
        let d = topo_probe::reach_detailed(&lab.plan, &req(&lab, proto), &ProbeOpts::default()).unwrap();
        assert!(d.pairs.iter().all(|p| p.reached), "{proto}: {:?}", d.pairs);
        if proto == Proto::Udp(7960) {
            let ab = d.pairs.iter().find(|p| p.from == "a" && p.to == "b").unwrap();
            assert_eq!(ab.observed.map(|o| *o.ip()), Some("10.2.0.1".parse().unwrap()), "masqueraded");
        }
    }
    topo_probe::stop_responders(&state).unwrap();
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}/cmdline")).exists()
                || std::fs::read(format!("/proc/{pid}/cmdline")).unwrap().is_empty(),
            "responder {pid} still runs"
        );
    }
    assert_eq!(std::fs::read_dir(state.join("pids")).unwrap().count(), 0);
    let _ = std::fs::remove_dir_all(&state);
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(unique_lab("tprstate"));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn addressless_destination_is_a_pair_result_not_an_error() {
    if !require_root("probe::addressless") {
        return;
    }
    let lab = TestLab::lan(&unique_lab("pa"), 3, false).unwrap();
    let mut plan = lab.plan.clone();
    for i in &mut plan.nodes[2].interfaces {
        i.addresses.clear();
    }
    let names = all(&lab);
    let d = topo_probe::reach_detailed(
        &plan,
        &ReachRequest { from: names.clone(), to: names, proto: Proto::Icmp },
        &ProbeOpts::default(),
    )
    .unwrap();
    let h13 = d.pairs.iter().find(|p| p.from == "h1" && p.to == "h3").unwrap();
    assert!(!h13.reached && h13.attempts == 0, "{h13:?}");
    assert!(h13.reason.as_deref().unwrap_or_default().contains("no IPv4 address"), "{h13:?}");
    assert!(d.pairs.iter().find(|p| p.from == "h1" && p.to == "h2").unwrap().reached);
    assert!(d.pairs.iter().find(|p| p.from == "h3" && p.to == "h1").unwrap().reached, "h3 still sends");
}

/// Permanent entries (`ip neigh` lines with PERMANENT) in a node's namespace.
fn permanent_neighbours(lab: &TestLab, node: &str) -> usize {
    let out = lab.sh(node, "ip -4 neigh show nud permanent").unwrap();
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.trim().is_empty()).count()
}

#[test]
fn big_lan_gets_permanent_neighbours_for_the_run_only() {
    if !require_root("probe::big_lan_neighbours") {
        return;
    }
    // 70 hosts: all pairs need 70 * 69 = 4830 neighbour entries, far beyond the host-wide
    // gc_thresh3 (1024) that dynamic ARP entries are limited to.
    let lab = TestLab::lan(&unique_lab("pn"), 70, false).unwrap();
    assert_eq!(permanent_neighbours(&lab, "h1"), 0);
    let d = topo_probe::reach_detailed(&lab.plan, &req(&lab, Proto::Icmp), &ProbeOpts::default()).unwrap();
    let bad: Vec<_> = d.pairs.iter().filter(|p| !p.reached).take(5).collect();
    assert!(
        bad.is_empty(),
        "{} of {} pairs unreached, e.g. {bad:?}",
        d.pairs.iter().filter(|p| !p.reached).count(),
        d.pairs.len()
    );
    assert_eq!(d.pairs.len(), 4830);
    assert_eq!(d.neighbours_installed, 4830, "every source gets one entry per peer");
    // Removed after the run: the lab is left as it was.
    for n in ["h1", "h35", "h70"] {
        assert_eq!(permanent_neighbours(&lab, n), 0, "{n} kept entries");
    }
    // One source needs 2 * 69 entries (its own and the replies'): under the budget of 256, so
    // none are installed.
    let small = ReachRequest { from: vec!["h1".into()], to: all(&lab), proto: Proto::Icmp };
    let d = topo_probe::reach_detailed(&lab.plan, &small, &ProbeOpts::default()).unwrap();
    assert!(d.pairs.iter().all(|p| p.reached), "{:?}", d.pairs.iter().find(|p| !p.reached));
    assert_eq!(d.neighbours_installed, 0);
}

#[test]
fn existing_permanent_neighbours_are_kept() {
    if !require_root("probe::existing_neighbours") {
        return;
    }
    // A lab that installed its own permanent entries: the engine adds nothing and removes
    // nothing.
    let lab = TestLab::lan(&unique_lab("pk"), 40, true).unwrap();
    assert_eq!(permanent_neighbours(&lab, "h7"), 39);
    let d = topo_probe::reach_detailed(&lab.plan, &req(&lab, Proto::Icmp), &ProbeOpts::default()).unwrap();
    assert!(d.pairs.iter().all(|p| p.reached));
    assert_eq!(d.neighbours_installed, 0);
    assert_eq!(permanent_neighbours(&lab, "h7"), 39);
}
