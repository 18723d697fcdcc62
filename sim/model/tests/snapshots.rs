//! Frozen snapshots: stable text, steps, and the committed fixtures still match the model.

use std::path::{Path, PathBuf};

use topo_lab::{Fault, LinkRef};
use topo_model::snapshot::{diff, freeze_plan, recompute, Snapshot};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn freezing_is_stable_and_records_each_step() {
    let plan = topo_plan::plan_file(&root().join("topologies/triangle.yaml")).expect("plan");
    let steps = vec![
        (
            "cut r1-r2".to_owned(),
            vec![Fault::LinkCut { link: LinkRef::P2p { a: "r1".into(), b: "r2".into() } }],
        ),
        ("stop r3".to_owned(), vec![Fault::NodeStop { node: "r3".into() }]),
    ];
    let a = freeze_plan(&plan, Some("topologies/triangle.yaml"), &steps).expect("freeze").to_text();
    let b = freeze_plan(&plan, Some("topologies/triangle.yaml"), &steps).expect("freeze").to_text();
    assert_eq!(a, b, "same input, same bytes");
    let snap = Snapshot::from_text(&a).expect("parses back");
    assert_eq!(snap.steps.len(), 3);
    assert_eq!(snap.steps[0].reach.reached, 30);
    assert_eq!(snap.steps[1].reach.reached, 30, "OSPF reroutes around the cut");
    assert_eq!(snap.steps[1].paths["h1 -> h2"], "r1 10.1.0.1, r3 10.255.0.4, r2 10.255.0.2, h2 10.2.0.2");
    assert!(snap.steps[2].reach.reached < 30, "r3 and h3 are gone");
    assert!(
        snap.steps[2].routes["r1"].iter().all(|r| !r.contains("10.3.0.0/24")),
        "{:?}",
        snap.steps[2].routes["r1"]
    );
    // Steps replay from the recorded faults.
    let again = recompute(&snap, &root()).expect("recompute");
    assert_eq!(again.to_text(), a);
}

#[test]
fn committed_snapshots_match_the_model() {
    let dir = root().join("fixtures/snapshots");
    let mut checked = 0;
    for e in std::fs::read_dir(&dir).expect("fixtures/snapshots") {
        let path = e.expect("entry").path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let old = Snapshot::from_text(&text).expect("snapshot");
        if old.scenario.is_some() {
            // Scenario snapshots need the scenario parser (topo-scenario, above this crate);
            // `topo snapshot verify` checks them, in CI and in tests/snapshot_kernel.rs.
            continue;
        }
        let new = recompute(&old, &root()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if let Some(d) = diff(&text, &new.to_text(), &path.display().to_string(), "now") {
            panic!("snapshot changed; review and run `topo snapshot verify --update`:\n{d}");
        }
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} snapshots");
}
