//! The kernel lab end to end, through the `topo` binary: up/down of every example topology,
//! ping across a LAN and across routers, hostnames and name resolution, two labs with the same
//! node names, invalid input, the host left untouched, and SIGKILL of `topo up` at random points
//! followed by `topo gc` leaving nothing behind. Root only (skips otherwise; fails under CI=true).

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use topo_lab::testkit::{require_root, unique_lab};

mod support;
use support::{ok, run, topo};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A copy of a topology file with its lab renamed, so tests never share kernel names.
fn renamed(src: &Path, lab: &str) -> PathBuf {
    let text = std::fs::read_to_string(src).expect("read topology");
    let mut found = false;
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            if !found && l.starts_with("name:") {
                found = true;
                format!("name: {lab}")
            } else {
                l.to_owned()
            }
        })
        .collect();
    assert!(found, "{} has no top-level name:", src.display());
    let dir = std::env::temp_dir().join("topo-kernel-tests");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(format!("{lab}.yaml"));
    std::fs::write(&path, out.join("\n") + "\n").expect("write topology");
    path
}

/// Tears the lab down even when the test fails.
struct Guard(String);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = run(&["down", &self.0]);
        let _ = run(&["gc", &self.0]);
    }
}

fn belongs(name: &str, lab: &str) -> bool {
    name == format!("topo-{lab}") || name.starts_with(&format!("topo-{lab}."))
}

/// Everything of `lab` still on the machine; empty means no residue.
fn residue(lab: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inodes = HashSet::new();
    for n in topo_netns::list().unwrap_or_default().into_iter().filter(|n| belongs(n, lab)) {
        if let Ok(m) = std::fs::metadata(topo_netns::path_of(&n)) {
            inodes.insert(m.ino());
        }
        out.push(format!("namespace {n}"));
    }
    if let Ok(rd) = std::fs::read_dir("/etc/netns") {
        for e in rd.flatten() {
            if belongs(&e.file_name().to_string_lossy(), lab) {
                out.push(format!("{}", e.path().display()));
            }
        }
    }
    let state = Path::new("/run/topo").join(lab);
    let lock = Path::new("/run/topo").join(format!("{lab}.lock"));
    for p in [&state, &lock] {
        if p.exists() {
            out.push(format!("{}", p.display()));
        }
    }
    // Mounts on the state directory (its tmpfs) and under it (UTS files).
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let (under, on) = (format!(" {}/", state.display()), format!(" {} ", state.display()));
    for l in mounts.lines().filter(|l| l.contains(&under) || l.contains(&on)) {
        out.push(format!("mount {l}"));
    }
    if !inodes.is_empty() {
        for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
            if let Ok(m) = std::fs::metadata(e.path().join("ns/net")) {
                if inodes.contains(&m.ino()) {
                    out.push(format!("process {}", e.file_name().to_string_lossy()));
                }
            }
        }
    }
    out
}

fn status_json(lab: &str) -> serde_json::Value {
    serde_json::from_str(&ok(&["status", lab, "--json"])).expect("status JSON")
}

/// Every planned interface exists, is up and carries its planned addresses and MAC.
fn assert_matches_plan(lab: &str, plan: &topo_plan::Plan) {
    let st = status_json(lab);
    let nodes = st["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), plan.nodes.len());
    for (n, s) in plan.nodes.iter().zip(nodes) {
        assert_eq!(s["name"], n.name.as_str());
        assert_eq!(s["present"], true, "{} missing", n.name);
        let ifaces = s["interfaces"].as_array().expect("interfaces");
        for i in &n.interfaces {
            let got = ifaces
                .iter()
                .find(|x| x["name"] == i.name.as_str())
                .unwrap_or_else(|| panic!("{}:{} missing in {ifaces:?}", n.name, i.name));
            assert_eq!(got["admin_up"], true, "{}:{}", n.name, i.name);
            assert_eq!(got["mac"], i.mac.to_string().as_str(), "{}:{}", n.name, i.name);
            assert_eq!(got["mtu"], i.mtu, "{}:{}", n.name, i.name);
            let addrs: Vec<&str> =
                got["addresses"].as_array().expect("addresses").iter().filter_map(|a| a.as_str()).collect();
            for a in &i.addresses {
                assert!(
                    addrs.contains(&a.to_string().as_str()),
                    "{}:{} lacks {a}: {addrs:?}",
                    n.name,
                    i.name
                );
            }
        }
    }
}

fn ping(lab: &str, node: &str, addr: &str) -> bool {
    run(&["exec", "--lab", lab, node, "--", "ping", "-c", "3", "-i", "0.2", "-W", "2", addr]).status.success()
}

#[test]
fn every_example_topology_up_down() {
    if !require_root("kernel_lab::every_example_topology_up_down") {
        return;
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("topologies"))
        .expect("topologies/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for f in files {
        let lab = unique_lab("ex");
        let path = renamed(&f, &lab);
        let plan = topo_plan::plan_file(&path).unwrap_or_else(|d| panic!("{}: {d}", f.display()));
        let _g = Guard(lab.clone());
        let out = ok(&["up", path.to_str().unwrap()]);
        assert!(out.contains(&format!("lab {lab} up")), "{out}");
        assert_matches_plan(&lab, &plan);
        // Unchanged file: a no-op.
        assert!(ok(&["up", path.to_str().unwrap()]).contains("already up"));
        ok(&["down", path.to_str().unwrap()]);
        assert_eq!(residue(&lab), Vec::<String>::new(), "{}", f.display());
    }
}

#[test]
fn lan_ping_hostname_and_names() {
    if !require_root("kernel_lab::lan_ping_hostname_and_names") {
        return;
    }
    let lab = unique_lab("ln");
    let path = renamed(&repo().join("topologies/lan.yaml"), &lab);
    let _g = Guard(lab.clone());
    ok(&["up", path.to_str().unwrap()]);
    assert!(ping(&lab, "client", "10.0.0.10"), "client -> server on the LAN");
    assert_eq!(ok(&["exec", "--lab", &lab, "client", "--", "hostname"]).trim(), "client");
    assert_eq!(ok(&["exec", "--lab", &lab, "server", "--", "hostname"]).trim(), "server");
    let hosts = ok(&["exec", "--lab", &lab, "client", "--", "getent", "hosts", "server"]);
    assert!(hosts.starts_with("10.0.0.10"), "{hosts}");
    // By name, through the node's /etc/hosts.
    assert!(ping(&lab, "observer", "server"));
    // exec exits with the command's code.
    assert_eq!(run(&["exec", "--lab", &lab, "client", "--", "sh", "-c", "exit 7"]).status.code(), Some(7));
    ok(&["down", &lab]);
    assert_eq!(residue(&lab), Vec::<String>::new());
}

#[test]
fn routed_triangle_and_untouched_host() {
    if !require_root("kernel_lab::routed_triangle_and_untouched_host") {
        return;
    }
    let before = host_state();
    let lab = unique_lab("tr");
    let path = renamed(&repo().join("topologies/triangle-static.yaml"), &lab);
    let _g = Guard(lab.clone());
    ok(&["up", path.to_str().unwrap()]);
    for (from, to) in [("h1", "10.2.0.2"), ("h1", "10.3.0.2"), ("h2", "10.3.0.2"), ("h3", "10.1.0.2")] {
        assert!(ping(&lab, from, to), "{from} -> {to} across the routers");
    }
    assert_eq!(ok(&["exec", "--lab", &lab, "r1", "--", "cat", "/proc/sys/net/ipv4/ip_forward"]).trim(), "1");
    let ls: serde_json::Value = serde_json::from_str(&ok(&["ls", "--json"])).unwrap();
    assert!(ls.as_array().unwrap().iter().any(|l| l["lab"] == lab.as_str() && l["phase"] == "up"));
    ok(&["down", &lab]);
    assert_eq!(residue(&lab), Vec::<String>::new());
    assert_eq!(host_state(), before, "the root namespace changed");
}

/// Root-namespace links, addresses, routes and nft ruleset, minus fields that change by
/// themselves (address lifetimes).
fn host_state() -> Vec<String> {
    let mut out = Vec::new();
    for args in [&["-j", "link"][..], &["-j", "addr"], &["-j", "route"], &["-j", "-6", "route"]] {
        let o = Command::new("ip").args(args).output().expect("ip");
        let mut v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        strip(&mut v, &["valid_life_time", "preferred_life_time", "expires"]);
        out.push(v.to_string());
    }
    if let Ok(o) = Command::new("nft").args(["-j", "list", "ruleset"]).output() {
        let mut v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        strip(&mut v, &["handle"]);
        out.push(v.to_string());
    }
    out
}

fn strip(v: &mut serde_json::Value, keys: &[&str]) {
    match v {
        serde_json::Value::Object(o) => {
            for k in keys {
                o.remove(*k);
            }
            o.values_mut().for_each(|x| strip(x, keys));
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(|x| strip(x, keys)),
        _ => {}
    }
}

#[test]
fn two_labs_with_the_same_node_names() {
    if !require_root("kernel_lab::two_labs_with_the_same_node_names") {
        return;
    }
    let a = unique_lab("twa");
    let b = unique_lab("twb");
    let pa = renamed(&repo().join("topologies/lan.yaml"), &a);
    let pb = renamed(&repo().join("topologies/lan.yaml"), &b);
    let _ga = Guard(a.clone());
    let _gb = Guard(b.clone());
    ok(&["up", pa.to_str().unwrap()]);
    ok(&["up", pb.to_str().unwrap()]);
    for lab in [&a, &b] {
        assert!(ping(lab, "client", "10.0.0.10"), "{lab}: client -> server");
        assert_eq!(ok(&["exec", "--lab", lab, "client", "--", "hostname"]).trim(), "client");
    }
    // Taking one down leaves the other working.
    ok(&["down", &a]);
    assert_eq!(residue(&a), Vec::<String>::new());
    assert!(ping(&b, "client", "10.0.0.10"));
    ok(&["down", &b]);
    assert_eq!(residue(&b), Vec::<String>::new());
}

#[test]
fn invalid_file_builds_nothing() {
    if !require_root("kernel_lab::invalid_file_builds_nothing") {
        return;
    }
    let lab = unique_lab("bad");
    let dir = std::env::temp_dir().join("topo-kernel-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{lab}.yaml"));
    std::fs::write(&path, format!("name: {lab}\nnodes:\n  a:\n    interfaces: [nowhere]\n")).unwrap();
    let out = run(&["up", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stderr).is_empty(), "diagnostics on stderr");
    assert_eq!(residue(&lab), Vec::<String>::new());
}

#[test]
fn second_up_of_a_changed_file_is_refused() {
    if !require_root("kernel_lab::second_up_of_a_changed_file_is_refused") {
        return;
    }
    let lab = unique_lab("ch");
    let path = renamed(&repo().join("topologies/lan.yaml"), &lab);
    let _g = Guard(lab.clone());
    ok(&["up", path.to_str().unwrap()]);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("# edited\n");
    std::fs::write(&path, text).unwrap();
    let out = run(&["up", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("topo down"));
    ok(&["down", &lab]);
    assert_eq!(residue(&lab), Vec::<String>::new());
}

#[test]
fn gc_removes_orphans_without_state() {
    if !require_root("kernel_lab::gc_removes_orphans_without_state") {
        return;
    }
    let lab = unique_lab("or");
    let path = renamed(&repo().join("topologies/lan.yaml"), &lab);
    let _g = Guard(lab.clone());
    ok(&["up", path.to_str().unwrap()]);
    // A process inside a node, then the state directory is lost (corrupt state).
    let mut sleeper = topo()
        .args(["exec", "--lab", &lab, "client", "--", "sleep", "60"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !residue(&lab).iter().any(|r| r.starts_with("process")) {
        assert!(Instant::now() < deadline, "sleep never showed up in the node");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::write(Path::new("/run/topo").join(&lab).join("state.json"), "{not json").unwrap();
    let out = ok(&["gc", &lab, "--json"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(report["labs"].as_array().unwrap().iter().any(|l| l == lab.as_str()), "{out}");
    assert_eq!(residue(&lab), Vec::<String>::new());
    let _ = sleeper.wait();
    // Idempotent: nothing left to do.
    let again: serde_json::Value = serde_json::from_str(&ok(&["gc", &lab, "--json"])).unwrap();
    assert!(again["labs"].as_array().unwrap().is_empty(), "{again}");
}

/// A lab's lock file without its state directory (an `up` killed between taking the lock and
/// making the directory): gc leaves it while a process holds it, and removes it once nobody
/// does.
#[test]
fn gc_removes_a_stale_lock_file_but_not_a_held_one() {
    if !require_root("kernel_lab::gc_removes_a_stale_lock_file_but_not_a_held_one") {
        return;
    }
    let lab = unique_lab("lk");
    let _g = Guard(lab.clone());
    std::fs::create_dir_all("/run/topo").unwrap();
    let lock = Path::new("/run/topo").join(format!("{lab}.lock"));
    let file = std::fs::File::create(&lock).unwrap();
    let held = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).expect("flock");
    let out = ok(&["gc", &lab, "--json"]);
    assert!(lock.exists(), "gc removed a lock file a live process holds: {out}");
    drop(held);
    let out = ok(&["gc", &lab, "--json"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(report["labs"].as_array().unwrap().iter().any(|l| l == lab.as_str()), "{out}");
    assert_eq!(residue(&lab), Vec::<String>::new());
}

/// `ip -j -d link show` of a namespace: (name, operstate, bridge port state).
fn links_of(ns: &str) -> Vec<(String, String, Option<String>)> {
    let out = Command::new("ip").args(["-j", "-d", "-n", ns, "link", "show"]).output().expect("ip");
    let links: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j output");
    links
        .as_array()
        .expect("a list")
        .iter()
        .map(|l| {
            (
                l["ifname"].as_str().unwrap_or_default().to_owned(),
                l["operstate"].as_str().unwrap_or_default().to_owned(),
                l["linkinfo"]["info_slave_data"]["state"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// When `up` returns, every link already carries traffic: node interfaces are operationally up
/// and LAN ports forward. The kernel switches carriers on asynchronously; point-to-point veths
/// whose two ends had the same interface index were switched on up to a second late, so a
/// ping right after `up` lost its first ARP request.
#[test]
fn links_carry_traffic_when_up_returns() {
    if !require_root("kernel_lab::links_carry_traffic_when_up_returns") {
        return;
    }
    for (i, file) in ["topologies/triangle-static.yaml", "topologies/multi-dc-static.yaml"].iter().enumerate()
    {
        let lab = unique_lab(&format!("lr{i}"));
        let path = renamed(&repo().join(file), &lab);
        let _g = Guard(lab.clone());
        ok(&["up", path.to_str().unwrap()]);
        let mut not_ready = Vec::new();
        for ns in topo_netns::list().unwrap_or_default().into_iter().filter(|n| belongs(n, &lab)) {
            let fabric = ns == format!("topo-{lab}");
            for (name, oper, port) in links_of(&ns) {
                let ready = if fabric {
                    port.as_deref().is_none_or(|s| s == "forwarding")
                } else {
                    name == "lo" || oper == "UP"
                };
                if !ready {
                    not_ready.push(format!("{ns}:{name} {oper} {port:?}"));
                }
            }
        }
        assert!(not_ready.is_empty(), "{file}: not ready when up returned: {not_ready:?}");
        ok(&["down", &lab]);
    }
}

/// A LAN of `n` hosts and a router, as a topology file.
fn lan_file(lab: &str, n: usize) -> PathBuf {
    let y = format!(
        "name: {lab}\nnetworks:\n  lan: {{subnet: 10.9.0.0/16}}\nnodes:\n  gw: {{kind: router, interfaces: [lan]}}\n  h{{1..{n}}}:\n    interfaces: [lan]\n"
    );
    let dir = std::env::temp_dir().join("topo-kernel-tests");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(format!("{lab}.yaml"));
    std::fs::write(&path, y).expect("write topology");
    path
}

#[test]
fn sigkill_during_up_then_gc_leaves_nothing() {
    if !require_root("kernel_lab::sigkill_during_up_then_gc_leaves_nothing") {
        return;
    }
    let lab = unique_lab("k");
    let path = lan_file(&lab, 40);
    let _g = Guard(lab.clone());
    // How long a whole `up` takes here (the fastest of three), to spread the kill points over it.
    let mut full = Duration::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        ok(&["up", path.to_str().unwrap()]);
        full = full.min(t.elapsed());
        ok(&["down", &lab]);
    }
    let measured = full;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x7090_c0de);
    let (mut mid_way, mut finished) = (0, 0);
    // At least 20 kills must land during `up`; a kill that comes too late shortens the window.
    for run_no in 0..80 {
        if mid_way >= 20 {
            break;
        }
        let delay = full.mul_f64(rng.gen_range(0.0..0.9));
        let mut child = topo()
            .args(["up", path.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        let out = run(&["gc", &lab]);
        assert!(out.status.success(), "run {run_no}: gc failed: {}", String::from_utf8_lossy(&out.stderr));
        if status.success() {
            // The kill came after `up` finished: the lab is healthy and gc leaves it alone.
            finished += 1;
            full = full.mul_f64(0.8);
            ok(&["down", &lab]);
        } else {
            mid_way += 1;
            // A kill after the state was complete leaves a healthy lab too.
            if Path::new("/run/topo").join(&lab).exists() && run(&["status", &lab]).status.success() {
                let st = status_json(&lab);
                if st["phase"] == "up" {
                    ok(&["down", &lab]);
                }
            }
        }
        assert_eq!(residue(&lab), Vec::<String>::new(), "run {run_no} (killed after {delay:?})");
    }
    eprintln!(
        "SIGKILL runs: {mid_way} killed during up, {finished} after it finished (full up {measured:?})"
    );
    assert!(mid_way >= 20, "too few kills landed during up ({mid_way}, {finished} came after it finished)");
}

#[test]
fn ctrl_c_during_up_rolls_back() {
    if !require_root("kernel_lab::ctrl_c_during_up_rolls_back") {
        return;
    }
    let lab = unique_lab("ci");
    let path = lan_file(&lab, 150);
    let _g = Guard(lab.clone());
    let mut child = topo()
        .args(["up", path.to_str().unwrap()])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Interrupt once building has started (the journal exists).
    let journal = Path::new("/run/topo").join(&lab).join("journal");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !journal.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let sent = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let status = child.wait().unwrap();
    if status.success() {
        // It finished before the signal: nothing to roll back; take it down.
        ok(&["down", &lab]);
    } else {
        assert_eq!(status.code(), Some(130), "Ctrl-C exits 130");
    }
    assert_eq!(residue(&lab), Vec::<String>::new());
}
