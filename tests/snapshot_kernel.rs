//! `topo snapshot freeze --backend kernel` takes the same normalized form as the model: for the
//! static examples, the kernel snapshot equals the committed model snapshot byte for byte once
//! the model-only part (per-step forwarding tables) is dropped. The throwaway lab's name must
//! not leak into the output, and no namespace may be left behind.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Instant;

use topo_model::snapshot::{without_routes, Snapshot};

fn kernel_freeze(topology: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(env!("CARGO_BIN_EXE_topo"))
        .current_dir(root)
        .args(["snapshot", "freeze", "--backend", "kernel", "--stdout", topology])
        .output()
        .expect("run topo");
    assert!(
        out.status.success(),
        "topo snapshot freeze --backend kernel {topology} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn check(topology: &str, frozen: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join(frozen)).expect("committed snapshot");
    let model = Snapshot::from_text(&text).expect("parse committed snapshot");
    let kernel = kernel_freeze(topology);
    let parsed = Snapshot::from_text(&kernel).expect("kernel output is a snapshot");
    // The lab name is the design's, not the throwaway one (`sc<pid>x<n>`).
    assert_eq!(parsed.lab, model.lab);
    assert!(parsed.steps.iter().all(|s| s.routes.is_empty()), "kernel snapshot has no routes");
    let expected = without_routes(&model).to_text();
    assert!(
        expected == kernel,
        "kernel snapshot of {topology} differs from {frozen}:\n{}",
        topo_model::snapshot::diff(&expected, &kernel, frozen, "kernel").unwrap_or_default()
    );
}

#[test]
fn kernel_snapshot_of_lan_equals_model_snapshot() {
    if !topo_lab::testkit::require_root("kernel_snapshot_of_lan_equals_model_snapshot") {
        return;
    }
    check("topologies/lan.yaml", "fixtures/snapshots/lan.json");
}

#[test]
fn kernel_snapshot_of_triangle_equals_model_snapshot() {
    if !topo_lab::testkit::require_root("kernel_snapshot_of_triangle_equals_model_snapshot") {
        return;
    }
    check("topologies/triangle-static.yaml", "fixtures/snapshots/triangle-static.json");
}

/// `verify --backend kernel` replays a scenario's fault steps on a fresh lab and agrees with
/// the model on which pairs reach after each step.
#[test]
fn kernel_verify_of_partition_scenario_agrees() {
    if !topo_lab::testkit::require_root("kernel_verify_of_partition_scenario_agrees") {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(env!("CARGO_BIN_EXE_topo"))
        .current_dir(root)
        .args(["snapshot", "verify", "--backend", "kernel", "fixtures/snapshots/scenario-lan-partition.json"])
        .output()
        .expect("run topo");
    assert!(
        out.status.success(),
        "verify --backend kernel failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Child `topo` processes of one test and the labs they may leave behind when they die before
/// their own teardown: on drop (also when the test fails), children still running are killed
/// by PID and every lab named after one of them (`sc<pid>x<n>`, topo-scenario's unique name)
/// is taken down.
#[derive(Default)]
struct Children {
    pids: Mutex<Vec<u32>>,
}

impl Children {
    fn run(&self, mut cmd: Command) -> std::io::Result<std::process::Output> {
        let child: Child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
        if let Ok(mut p) = self.pids.lock() {
            p.push(child.id());
        }
        child.wait_with_output()
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        let pids = self.pids.lock().map(|p| p.clone()).unwrap_or_default();
        for pid in &pids {
            // Only our own children; a finished one is reaped already, so `kill` just fails.
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).stderr(Stdio::null()).status();
        }
        let prefixes: Vec<String> = pids.iter().map(|p| format!("sc{}x", p % 100_000)).collect();
        for lab in topo_kernel::list_labs().unwrap_or_default() {
            if prefixes.iter().any(|p| lab.lab.starts_with(p.as_str())) {
                if let Err(e) = topo_kernel::down(&lab.lab) {
                    eprintln!("cleanup: topo down {}: {e}", lab.lab);
                }
            }
        }
    }
}

/// Every committed snapshot (example topologies and scenarios) verified on a fresh kernel
/// lab: `topo snapshot verify --backend kernel FILE` must find the same outcomes as the model
/// (which pairs reach, the paths of reaching pairs) after every step — for OSPF labs only once
/// routing has reconverged after the step's faults. Files run in a few parallel processes
/// (`TOPO_SNAPSHOT_JOBS`, default 3): most of the time goes to probe timeouts of unreached pairs.
#[test]
fn kernel_verify_of_every_snapshot_agrees() {
    if !topo_lab::testkit::require_root("kernel_verify_of_every_snapshot_agrees") {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("fixtures/snapshots"))
        .expect("fixtures/snapshots")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "expected the committed snapshots, found {}", files.len());
    let jobs: usize =
        std::env::var("TOPO_SNAPSHOT_JOBS").ok().and_then(|v| v.parse().ok()).unwrap_or(3).max(1);
    let children = Children::default();
    let queue = Mutex::new(files.clone());
    type Verdicts = Vec<(PathBuf, Result<f64, String>)>;
    let results: Mutex<Verdicts> = Mutex::default();
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                // The guard is dropped inside `and_then`: other workers are not blocked.
                while let Some(file) = queue.lock().ok().and_then(|mut q| q.pop()) {
                    let rel = file.strip_prefix(root).unwrap_or(&file).to_path_buf();
                    let mut cmd = Command::new(env!("CARGO_BIN_EXE_topo"));
                    cmd.current_dir(root).args(["snapshot", "verify", "--backend", "kernel"]).arg(&rel);
                    let t0 = Instant::now();
                    let verdict = match children.run(cmd) {
                        Ok(out) if out.status.success() => Ok(t0.elapsed().as_secs_f64()),
                        Ok(out) => Err(format!(
                            "exit {:?}\n{}{}",
                            out.status.code(),
                            String::from_utf8_lossy(&out.stdout),
                            String::from_utf8_lossy(&out.stderr)
                        )),
                        Err(e) => Err(format!("cannot run topo: {e}")),
                    };
                    if let Ok(mut r) = results.lock() {
                        r.push((rel, verdict));
                    }
                }
            });
        }
    });
    let mut results = results.lock().map(|r| r.clone()).unwrap_or_default();
    results.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(results.len(), files.len(), "every snapshot was verified");
    let mut failures = String::new();
    for (file, v) in &results {
        match v {
            Ok(secs) => eprintln!("{}: same on the kernel ({secs:.1} s)", file.display()),
            Err(e) => {
                let _ = write!(failures, "\n== {}: {e}", file.display());
            }
        }
    }
    assert!(failures.is_empty(), "kernel verify disagrees with the model:{failures}");
}
