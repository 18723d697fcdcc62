//! `topo test` as users run it: exit codes, the JSON and JUnit outputs, and that a malformed
//! scenario builds no lab. The model runs need no root; the kernel run does.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn topo(args: &[&str]) -> (i32, String, String, u32) {
    let child = Command::new(env!("CARGO_BIN_EXE_topo"))
        .args(args)
        .current_dir(root())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        pid,
    )
}

/// Namespaces a `topo test` process with this pid created (its labs are `sc<pid>x<n>`).
fn namespaces_of_run(pid: u32) -> Vec<String> {
    let prefix = format!("topo-sc{}x", pid % 100_000);
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

fn count_elements(xml: &str, name: &[u8]) -> usize {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut n = 0;
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e))
                if e.name().as_ref() == name =>
            {
                n += 1;
            }
            Ok(quick_xml::events::Event::Eof) => return n,
            Ok(_) => {}
            Err(e) => panic!("invalid JUnit XML: {e}\n{xml}"),
        }
    }
}

#[test]
fn a_failing_scenario_exits_1_with_the_pair_in_json_and_junit() {
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("out.xml");
    let (code, stdout, stderr, _) = topo(&[
        "test",
        "--backend",
        "model",
        "--seed",
        "77",
        "--json",
        "--junit",
        junit.to_str().unwrap(),
        "fixtures/scenario/failing.yaml",
        "scenarios/lan-partition.yaml",
    ]);
    assert_eq!(code, 1, "{stderr}");
    // Live lines on stderr name the failing pair.
    assert!(stderr.contains("client -> server: expected to reach"), "{stderr}");
    let run: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(run["seed"], 77);
    assert_eq!(run["scenarios"][0]["outcome"], "failed");
    assert_eq!(run["scenarios"][1]["outcome"], "passed");
    let step = &run["scenarios"][0]["steps"][2];
    assert_eq!(step["outcome"], "fail");
    assert_eq!(step["data"]["mismatches"][0].as_str().unwrap().split(':').next(), Some("client -> server"));
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(count_elements(&xml, b"testsuite"), 2);
    assert_eq!(count_elements(&xml, b"failure"), 1);
    let steps: usize =
        run["scenarios"].as_array().unwrap().iter().map(|s| s["steps"].as_array().unwrap().len()).sum();
    assert_eq!(count_elements(&xml, b"testcase"), steps);
}

#[test]
fn the_suite_passes_on_the_model_with_a_table() {
    let (code, stdout, stderr, _) = topo(&["test", "--backend", "model", "-j", "2"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.starts_with("SCENARIO"), "{stdout}");
    assert!(stdout.contains("lan-partition") && stdout.contains("triangle-ospf-converge"), "{stdout}");
    assert!(stderr.contains("seed "), "the run prints its seed: {stderr}");
}

#[test]
fn a_malformed_scenario_exits_3_and_builds_no_lab() {
    // A valid scenario next to a broken one: nothing runs at all.
    let (code, stdout, stderr, pid) = topo(&[
        "test",
        "--backend",
        "model",
        "scenarios/lan-partition.yaml",
        "fixtures/scenario/bad-steps.yaml",
    ]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("bad-steps.yaml:6:5"), "spanned: {stderr}");
    assert!(!stderr.contains("=== lan-partition"), "no scenario ran: {stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(namespaces_of_run(pid).is_empty());
    let (code, _, stderr, _) = topo(&["test", "--backend", "model", "fixtures/scenario/malformed.yaml"]);
    assert_eq!(code, 3);
    assert!(stderr.contains("malformed.yaml:4:1"), "{stderr}");
    let (code, _, _, _) = topo(&["test", "no/such/dir"]);
    assert_eq!(code, 3);
}

#[test]
fn kernel_failure_exits_1_and_leaves_no_namespaces() {
    if !topo_lab::testkit::require_root("kernel_failure_exits_1_and_leaves_no_namespaces") {
        return;
    }
    let (code, stdout, stderr, pid) = topo(&["test", "fixtures/scenario/failing.yaml"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(stdout.contains("client -> server"), "{stdout}");
    assert_eq!(namespaces_of_run(pid), Vec::<String>::new(), "namespaces left behind");
    let labs: Vec<String> = std::fs::read_dir("/run/topo")
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned())).collect())
        .unwrap_or_default();
    let mine = format!("sc{}x", pid % 100_000);
    assert!(!labs.iter().any(|l| l.starts_with(&mine)), "state left behind: {labs:?}");
}
