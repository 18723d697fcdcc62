//! `topo check` end to end through the `topo` binary on kernel labs: the matrix against the
//! model's expectation (also under a partition, and a failing expectation file), NAT-free
//! delivery, hop paths with `--via`, and convergence on the OSPF triangle after `link down` and
//! after a silent `link cut`, with route changes on the timeline. Root only (skips otherwise;
//! fails under CI=true). The OSPF part also needs FRR.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use topo_lab::testkit::{require_root, unique_lab};

fn topo() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_topo"));
    c.env_remove("TOPO_LOG");
    c
}

fn run(args: &[&str]) -> Output {
    topo().args(args).stdin(Stdio::null()).output().expect("run topo")
}

fn show(out: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn code(args: &[&str]) -> (i32, String) {
    let out = run(args);
    (out.status.code().unwrap_or(-1), show(&out))
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(out.status.success(), "topo {args:?} failed ({}):\n{}", out.status, show(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Guard(String, std::path::PathBuf);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = run(&["down", &self.0]);
        let _ = std::fs::remove_file(&self.1);
    }
}

/// An example topology under a unique lab name, written to a temp file.
fn example(file: &str, prefix: &str) -> (String, std::path::PathBuf) {
    let lab = unique_lab(prefix);
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies").join(file))
        .expect("example topology");
    let first = text.lines().find(|l| l.starts_with("name:")).expect("name line").to_owned();
    let text = text.replacen(&first, &format!("name: {lab}"), 1);
    let path = std::env::temp_dir().join(format!("{lab}.yaml"));
    std::fs::write(&path, text).expect("write topology");
    (lab, path)
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("bad JSON ({e}):\n{text}"))
}

#[test]
fn check_reach_nat_path_on_static_triangle() {
    if !require_root("probe_cli::static_triangle") {
        return;
    }
    let (lab, file) = example("triangle-static.yaml", "pt");
    let _g = Guard(lab.clone(), file.clone());
    ok(&["up", file.to_str().expect("utf-8 path")]);

    let out = json(&ok(&["check", "reach", "--lab", &lab, "--expect", "auto", "--json"]));
    assert_eq!(out["ok"], true);
    assert_eq!(out["pairs"].as_array().map(Vec::len), Some(30));
    assert!(out["pairs"].as_array().into_iter().flatten().all(|p| p["reached"] == true), "{out}");

    // Under a partition, the model expects the cut pairs to fail and the probes agree.
    ok(&["partition", "--lab", &lab, "h1,r1"]);
    let text = ok(&["check", "reach", "--lab", &lab, "--expect", "auto", "--deadline", "3s", "--json"]);
    let part = json(&text);
    assert_eq!(part["ok"], true, "{part}");
    let cut = part["pairs"].as_array().into_iter().flatten().filter(|p| p["reached"] == false).count();
    assert_eq!(cut, 16, "h1,r1 against the other four, both ways: {part}");
    let expect = std::env::temp_dir().join(format!("{lab}-expect.json"));
    std::fs::write(&expect, &text).expect("write expectation");
    ok(&["heal", "--lab", &lab]);
    // After healing, the partitioned expectation no longer holds: 16 mismatches, exit 1.
    let (c, out) = code(&[
        "check",
        "reach",
        "--lab",
        &lab,
        "--expect",
        expect.to_str().expect("utf-8"),
        "--deadline",
        "1s",
    ]);
    let _ = std::fs::remove_file(&expect);
    assert_eq!(c, 1, "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("MISMATCH")).count(), 16, "{out}");

    // UDP with --nat-free: nothing rewrites sources in this lab.
    ok(&["check", "reach", "--lab", &lab, "--proto", "udp", "--nat-free", "--expect", "auto"]);
    let nat = json(&ok(&["check", "nat", "--lab", &lab, "h1", "h3", "--json"]));
    assert_eq!(nat["ok"], true);
    assert_eq!(nat["sent_src"], nat["observed_src"]);

    let path = json(&ok(&["check", "path", "--lab", &lab, "h1", "h3", "--via", "r1,r3", "--json"]));
    assert_eq!(path["routers"], serde_json::json!(["r1", "r3"]), "{path}");
    let (c, out) = code(&["check", "path", "--lab", &lab, "h1", "h3", "--via", "r1,r2,r3"]);
    assert_eq!(c, 1, "{out}");
    // A --via that never holds is traced again until the deadline, then fails.
    let out =
        run(&["check", "path", "--lab", &lab, "h1", "h3", "--via", "r1,r2,r3", "--deadline", "1s", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let p = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(p["ok"], false, "{p}");
    assert!(p["attempts"].as_u64().unwrap_or(0) >= 2, "expected retries within the deadline: {p}");
    let (c, out) = code(&["check", "path", "--lab", &lab, "h1", "nosuch"]);
    assert_eq!(c, 2, "{out}");
}

#[test]
fn converge_on_ospf_triangle_link_down_and_silent_cut() {
    if !require_root("probe_cli::ospf_converge") {
        return;
    }
    if !Path::new("/usr/lib/frr/ospfd").exists() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "FRR is not installed (CI=true)");
        eprintln!("SKIP probe_cli::ospf_converge: FRR is not installed");
        return;
    }
    let (lab, file) = example("triangle.yaml", "po");
    let _g = Guard(lab.clone(), file.clone());
    ok(&["up", file.to_str().expect("utf-8 path")]);
    ok(&["check", "reach", "--lab", &lab, "--expect", "auto", "--deadline", "10s"]);
    // h3 -> h1 goes r3 -> r2 -> r1 (r3's side of the r3-r1 link costs 50). Taking r2-r3 down
    // reroutes it over r3-r1: carrier loss is seen at once, so the outage is short.
    assert!(path_becomes(&lab, "h3", "h1", &["r3", "r2", "r1"]), "h3->h1 never went via r2");
    let args = "--flow h3->h1 --flow h2->h1 --fault-is-next --timeout 20s --json";
    let mut argv = vec!["check", "converge", "--lab", &lab];
    argv.extend(args.split(' ').filter(|a| *a != "--fault-is-next"));
    argv.extend(["--fault", "link down r2 r3"]);
    let rep = json(&ok(&argv));
    let f = &rep["flows"][0];
    assert_eq!(f["converged"], true, "{rep}");
    let outage = f["outage_ms"].as_f64().unwrap_or(0.0);
    eprintln!("link down r2 r3: h3->h1 outage {outage:.1} ms, stable at {} ms", f["stable_ms"]);
    assert!(outage < 3000.0, "link down should reroute in well under the dead interval: {rep}");
    assert_eq!(rep["flows"][1]["lost"], 0, "h2->h1 does not use r2-r3: {rep}");
    let routes_on_r3 = rep["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["event"] == "route" && e["node"] == "r3")
        .count();
    assert!(routes_on_r3 > 0, "r3's routes changed: {rep}");
    let path = json(&ok(&["check", "path", "--lab", &lab, "h3", "h1", "--json"]));
    assert_eq!(path["routers"], serde_json::json!(["r3", "r1"]), "{path}");
    ok(&["link", "up", "--lab", &lab, "r2", "r3"]);
    ok(&["check", "reach", "--lab", &lab, "--expect", "auto", "--deadline", "15s"]);
    // Wait until traffic is back on r2-r3 before cutting it silently.
    assert!(path_becomes(&lab, "h3", "h1", &["r3", "r2", "r1"]), "OSPF did not move h3->h1 back to r2-r3");
    // A silent cut keeps carrier up: only the dead interval (3 s) notices.
    let mut argv = vec!["check", "converge", "--lab", &lab, "--flow", "h3->h1", "--timeout", "30s", "--json"];
    argv.extend(["--fault", "link cut r2 r3"]);
    let rep = json(&ok(&argv));
    let f = &rep["flows"][0];
    assert_eq!(f["converged"], true, "{rep}");
    let outage = f["outage_ms"].as_f64().unwrap_or(0.0);
    eprintln!("link cut r2 r3: h3->h1 outage {outage:.1} ms, stable at {} ms", f["stable_ms"]);
    assert!((1500.0..8000.0).contains(&outage), "outage should be about the 3 s dead interval: {rep}");
}

/// Whether the routers between `a` and `b` become `want` within 20 s (OSPF settles a little after
/// `up` reports convergence): `check path --via` traces again until it matches or its deadline passes.
fn path_becomes(lab: &str, a: &str, b: &str, want: &[&str]) -> bool {
    let via = want.join(",");
    let (c, out) = code(&["check", "path", "--lab", lab, a, b, "--via", &via, "--deadline", "20s", "--json"]);
    if c != 0 {
        eprintln!("last path {a}->{b}: {out}");
    }
    c == 0
}

/// A generated topology: `n` hosts on one LAN.
fn big_lan(prefix: &str, n: usize) -> (String, std::path::PathBuf) {
    let lab = unique_lab(prefix);
    let text = format!(
        "name: {lab}\nnetworks:\n  lan:\n    subnet: 10.77.0.0/24\nnodes:\n  h{{1..{n}}}:\n    interfaces: [lan]\n"
    );
    let path = std::env::temp_dir().join(format!("{lab}.yaml"));
    std::fs::write(&path, text).expect("write topology");
    (lab, path)
}

#[test]
fn check_reach_on_a_lan_bigger_than_the_neighbour_table() {
    if !require_root("probe_cli::big_lan") {
        return;
    }
    // 72 hosts: 72 * 71 = 5112 pairs, each needing a neighbour entry at both ends — five times
    // the host-wide gc_thresh3 (1024) that ARP-learned entries are limited to.
    let (lab, file) = big_lan("pb", 72);
    let _g = Guard(lab.clone(), file.clone());
    ok(&["up", file.to_str().expect("utf-8 path")]);
    let out = json(&ok(&["check", "reach", "--lab", &lab, "--expect", "auto", "--json"]));
    assert_eq!(out["ok"], true, "mismatches: {}", out["mismatches"]);
    let pairs = out["pairs"].as_array().expect("pairs");
    assert_eq!(pairs.len(), 72 * 71);
    let unreached = pairs.iter().filter(|p| p["reached"] != true).count();
    assert_eq!(unreached, 0, "first: {:?}", pairs.iter().find(|p| p["reached"] != true));
    let installed = out["neighbours_installed"].as_u64().unwrap_or(0);
    assert!(installed > 1024, "permanent entries were installed: {installed}");
    // ... for the run only: the lab's tables are as before.
    let ns = format!("topo-{lab}.h1");
    let o =
        Command::new("ip").args(["-n", &ns, "-4", "neigh", "show", "nud", "permanent"]).output().expect("ip");
    assert!(String::from_utf8_lossy(&o.stdout).trim().is_empty(), "{}", String::from_utf8_lossy(&o.stdout));
    // The table output says so too.
    let text = ok(&["check", "reach", "--lab", &lab]);
    assert!(text.contains("5112/5112 pairs reached"), "{text}");
    assert!(text.contains("permanent neighbour entries installed"), "{text}");
}

#[test]
fn converge_udp_and_tcp_streams_on_ospf_triangle() {
    if !require_root("probe_cli::converge_udp_tcp") {
        return;
    }
    if !Path::new("/usr/lib/frr/ospfd").exists() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "FRR is not installed (CI=true)");
        eprintln!("SKIP probe_cli::converge_udp_tcp: FRR is not installed");
        return;
    }
    let (lab, file) = example("triangle.yaml", "pu");
    let _g = Guard(lab.clone(), file.clone());
    ok(&["up", file.to_str().expect("utf-8 path")]);
    for (proto, port) in [("udp", 7980), ("tcp", 7981)] {
        // h3 -> h1 runs r3 -> r2 -> r1; taking r2-r3 down moves it to r3-r1.
        assert!(path_becomes(&lab, "h3", "h1", &["r3", "r2", "r1"]), "{proto}: h3->h1 not via r2");
        let p = format!("{proto}:{port}");
        let argv = [
            "check",
            "converge",
            "--lab",
            &lab,
            "--proto",
            &p,
            "--flow",
            "h3->h1",
            "--flow",
            "h2->h1",
            "--timeout",
            "20s",
            "--json",
            "--fault",
            "link down r2 r3",
        ];
        let rep = json(&ok(&argv));
        assert_eq!(rep["proto"]["proto"], proto, "{rep}");
        assert_eq!(rep["proto"]["port"], port, "{rep}");
        let f = &rep["flows"][0];
        assert_eq!(f["converged"], true, "{rep}");
        let outage = f["outage_ms"].as_f64().unwrap_or(0.0);
        eprintln!("{p}: link down r2 r3: h3->h1 outage {outage:.1} ms, lost {}", f["lost"]);
        assert!(outage > 0.0 && outage < 3000.0, "{p}: a short reroute: {rep}");
        assert_eq!(rep["flows"][1]["lost"], 0, "{p}: h2->h1 does not use r2-r3: {rep}");
        ok(&["link", "up", "--lab", &lab, "r2", "r3"]);
    }
}
