//! The runner on the kernel backend (root): real namespaces, real probes. A failing assertion
//! fails the scenario and names the pair, and the lab is gone afterwards — namespaces and
//! state directory — whether the scenario passed or failed.

#![allow(clippy::unwrap_used, clippy::many_single_char_names)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use topo_lab::testkit::{require_root, unique_lab};
use topo_lab::BackendKind;
use topo_scenario::report::StepOutcome;
use topo_scenario::{
    load, load_str, run_scenario, Backend, Event, LabInstance, RunOpts, Scenario, ScenarioOutcome,
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The same backend `topo test --backend kernel` uses (kept small here: up, open, down).
struct Kernel;

impl Backend for Kernel {
    fn kind(&self) -> BackendKind {
        BackendKind::Kernel
    }
    fn up(&self, s: &Scenario) -> Result<LabInstance, String> {
        let lab = s.plan.lab.clone();
        let source =
            topo_kernel::SourceInfo { path: Some(s.topology_path.clone()), text: s.topology_text.clone() };
        topo_kernel::up(&s.plan, &source, &topo_kernel::UpOpts::default()).map_err(|e| e.to_string())?;
        let handle = topo_kernel::KernelLab::open_lab(&lab).map_err(|e| {
            let _ = topo_kernel::down(&lab);
            e.to_string()
        })?;
        let name = lab.clone();
        Ok(LabInstance {
            lab: Box::new(handle),
            teardown: Box::new(move || topo_kernel::down(&name).map(|_| ()).map_err(|e| e.to_string())),
            enter_hint: format!("topo shell --lab {lab} NODE"),
        })
    }
}

/// Takes the lab down if the test panics before the runner could.
struct Guard(String);

impl Drop for Guard {
    fn drop(&mut self) {
        if Path::new(topo_kernel::STATE_ROOT).join(&self.0).exists() {
            let _ = topo_kernel::down(&self.0);
        }
    }
}

fn namespaces_of(lab: &str) -> Vec<String> {
    let prefix = format!("topo-{lab}");
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .filter(|n| *n == prefix || n.starts_with(&format!("{prefix}.")))
                .collect()
        })
        .unwrap_or_default()
}

fn print(e: &Event<'_>) {
    if let Event::StepFinished { scenario, step } = e {
        eprintln!("{}", topo_scenario::live_line(&scenario.name, step));
    }
}

fn run(s: &Scenario) -> topo_scenario::ScenarioReport {
    let cancel = AtomicBool::new(false);
    let opts = RunOpts {
        seed: 5,
        keep_on_failure: false,
        cancel: &cancel,
        events: &print,
        retry_interval: Duration::from_millis(100),
    };
    run_scenario(s, &Kernel, &opts)
}

#[test]
fn kernel_failing_assertion_names_the_pair_and_tears_down() {
    if !require_root("kernel_failing_assertion_names_the_pair_and_tears_down") {
        return;
    }
    let lab = unique_lab("sk");
    let _guard = Guard(lab.clone());
    let text = "name: kfail\ntopology: lan.yaml\nsteps:\n  - up\n  - partition: \"client server,observer\"\n  - reach: {expect: [server -> observer, client -> server], deadline: 1s}\n  - heal\n";
    let s = load_str(&root().join("topologies/kfail.yaml"), text, &lab).unwrap();
    let r = run(&s);
    assert_eq!(r.outcome, ScenarioOutcome::Failed, "{:?}", r.first_problem());
    let f = r.first_problem().unwrap();
    assert_eq!(f.outcome, StepOutcome::Fail);
    let msg = f.message.as_deref().unwrap();
    assert!(msg.contains("client -> server"), "{msg}");
    assert!(!msg.contains("server -> observer"), "{msg}");
    assert_eq!(r.steps.last().unwrap().outcome, StepOutcome::Skipped);
    assert!(r.teardown_errors.is_empty(), "{:?}", r.teardown_errors);
    assert_eq!(namespaces_of(&lab), Vec::<String>::new(), "namespaces left behind");
    assert!(!Path::new(topo_kernel::STATE_ROOT).join(&lab).exists(), "state directory left behind");
}

#[test]
fn kernel_lan_partition_scenario_passes_and_leaves_nothing() {
    if !require_root("kernel_lan_partition_scenario_passes_and_leaves_nothing") {
        return;
    }
    let lab = unique_lab("sk");
    let _guard = Guard(lab.clone());
    let s = load(&root().join("scenarios/lan-partition.yaml"), &lab).unwrap();
    let r = run(&s);
    assert_eq!(r.outcome, ScenarioOutcome::Passed, "{:?}", r.first_problem());
    assert_eq!(namespaces_of(&lab), Vec::<String>::new());
}

/// The whole regression suite on the kernel (CI runs it through `topo test`; this is the same
/// run from `cargo test -- --ignored`, for working on the runner without the CLI).
#[test]
#[ignore = "minutes long; CI runs the suite through `topo test scenarios/`"]
fn kernel_full_suite() {
    if !require_root("kernel_full_suite") {
        return;
    }
    // TOPO_SUITE_FILTER=lan,multi runs only the files whose path contains one of the words.
    let filter = std::env::var("TOPO_SUITE_FILTER").unwrap_or_default();
    let files = topo_scenario::collect_files(&[root().join("scenarios")]).unwrap();
    let scenarios: Vec<Scenario> = files
        .iter()
        .filter(|f| filter.split(',').any(|w| f.to_string_lossy().contains(w)))
        .map(|f| load(f, &unique_lab("sk")).unwrap())
        .collect();
    let guards: Vec<Guard> = scenarios.iter().map(|s| Guard(s.plan.lab.clone())).collect();
    let cancel = AtomicBool::new(false);
    let opts = RunOpts {
        seed: 5,
        keep_on_failure: false,
        cancel: &cancel,
        events: &print,
        retry_interval: Duration::from_millis(200),
    };
    let reports = topo_scenario::run_all(&scenarios, &Kernel, &opts, 1);
    let run = topo_scenario::RunReport { seed: 5, backend: BackendKind::Kernel, scenarios: reports };
    println!("{}", topo_scenario::summary_table(&run));
    drop(guards);
    assert!(run.passed());
}
