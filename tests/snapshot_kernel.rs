//! `topo snapshot freeze --backend kernel` takes the same normalized form as the model: for the
//! static examples, the kernel snapshot equals the committed model snapshot byte for byte once
//! the model-only part (per-step forwarding tables) is dropped. The throwaway lab's name must
//! not leak into the output, and no namespace may be left behind.

use std::path::Path;
use std::process::Command;

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
