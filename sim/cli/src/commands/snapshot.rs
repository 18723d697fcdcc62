//! `topo snapshot freeze FILE [--out DIR]` and `topo snapshot verify [FILE|DIR] [--update]`:
//! golden files of what the model (or, with `--backend kernel`, a live lab) says a design or a
//! scenario does.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use topo_lab::Fault;
use topo_model::snapshot::{
    diff, freeze_lab, freeze_plan, outcomes_only, recompute, recorded_steps, Snapshot,
};
use topo_plan::Plan;
use topo_scenario::{Step, StepKind};

use super::test::BackendArg;
use crate::exit_code;

/// Where snapshots live by default.
pub const DEFAULT_DIR: &str = "fixtures/snapshots";

#[derive(Debug, Subcommand)]
pub enum SnapshotCmd {
    /// Freeze a topology: plan summary, forwarding tables, ICMP matrix and paths, as
    /// normalized JSON in DIR/<lab>.json.
    ///
    /// A scenario file (one with `steps:`) is frozen into DIR/scenario-<name>.json: the plan and
    /// the state after each of its fault steps, in order.
    Freeze {
        /// A topology or scenario file.
        file: PathBuf,
        #[arg(long, default_value = DEFAULT_DIR)]
        out: PathBuf,
        /// Print the snapshot on stdout instead of writing it.
        #[arg(long)]
        stdout: bool,
        /// `kernel`: measure a live lab (root) instead of asking the model; forwarding tables
        /// are then left out (only the model knows them).
        #[arg(long, value_enum, default_value = "model")]
        backend: BackendArg,
        /// With `--backend kernel`: use this lab, which is up, instead of building a throwaway one.
        #[arg(long)]
        lab: Option<String>,
    },
    /// Recompute snapshots from their source files and show what changed (exit 1 if anything did).
    Verify {
        /// A snapshot file or a directory of them.
        #[arg(default_value = DEFAULT_DIR)]
        path: PathBuf,
        /// Rewrite the snapshots that differ (after review).
        #[arg(long)]
        update: bool,
        /// Print the per-file verdicts as JSON.
        #[arg(long)]
        json: bool,
        /// `kernel`: compare against a fresh live lab (root): which pairs reach and the successful
        /// paths; forwarding tables and the reasons of failures are not compared.
        #[arg(long, value_enum, default_value = "model")]
        backend: BackendArg,
    },
}

pub fn run(cmd: SnapshotCmd) -> i32 {
    match cmd {
        SnapshotCmd::Freeze { file, out, stdout, backend, lab } => {
            freeze(&file, &out, stdout, backend, lab.as_deref())
        }
        SnapshotCmd::Verify { path, update, json, backend } => {
            if update && backend == BackendArg::Kernel {
                eprintln!("error: --update rewrites golden files from the model; drop --backend kernel");
                return exit_code::USAGE;
            }
            verify(&path, update, json, backend)
        }
    }
}

/// What a snapshot is taken of: a plan, its design name, and the fault steps after the
/// initial state (none for a plain topology).
struct Source {
    plan: Plan,
    /// The topology's own `name:` (the plan may carry a throwaway lab name).
    name: String,
    /// The scenario's `name:` when the file is a scenario.
    scenario: Option<String>,
    steps: Vec<(String, Vec<Fault>)>,
}

/// A scenario has a top-level `steps:`; a topology does not.
fn is_scenario(text: &str) -> bool {
    text.lines().any(|l| l.starts_with("steps:"))
}

/// Load a topology or scenario file. `lab`: compile under this lab name (kernel labs need a
/// unique one); `None` keeps the topology's own.
fn load_source(file: &Path, lab: Option<&str>) -> Result<Source, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    if is_scenario(&text) {
        let s = topo_scenario::load_str(file, &text, lab.unwrap_or("snapshot")).map_err(|d| {
            format!("{}: invalid scenario:\n{}", file.display(), topo_spec::render(&d, false))
        })?;
        let mut steps = Vec::new();
        fault_steps(&s.steps, "", &mut steps);
        return Ok(Source { plan: s.plan, name: s.original_lab, scenario: Some(s.name), steps });
    }
    let render = |d| format!("{}: invalid:\n{}", file.display(), topo_spec::render(&d, false));
    let display = file.display().to_string();
    let mut topo = topo_spec::parse_str(&display, &text).map_err(render)?;
    let name = topo.name.clone();
    if let Some(lab) = lab {
        lab.clone_into(&mut topo.name);
    }
    // Full pipeline (expand, validate, compile) for the diagnostics; then the renamed compile.
    let plan = topo_plan::plan_str(&display, &text).map_err(render)?;
    let plan = if lab.is_some() {
        topo_plan::compile(&topo).map_err(|d| format!("{}: cannot compile: {d:?}", file.display()))?
    } else {
        plan
    };
    Ok(Source { plan, name, scenario: None, steps: Vec::new() })
}

/// The scenario's fault steps in written order: `repeat` blocks unrolled, `parallel` branches
/// one after the other, a `converge` step's fault included (it stays applied). A random
/// partition is included only with a fixed `seed:` (otherwise the groups depend on the run).
fn fault_steps(steps: &[Step], prefix: &str, out: &mut Vec<(String, Vec<Fault>)>) {
    for s in steps {
        let label = format!("{prefix}{}", s.label);
        match &s.kind {
            StepKind::Fault(f) => out.push((label, f.clone())),
            StepKind::Converge(c) => out.push((label, vec![c.fault.clone()])),
            StepKind::RandomPartition { seed: Some(seed), nodes, groups } => {
                let g = topo_scenario::run::random_groups(nodes, *groups, *seed);
                out.push((label, vec![Fault::Partition { groups: g }]));
            }
            StepKind::Repeat { times, steps } => {
                for i in 1..=*times {
                    fault_steps(steps, &format!("{prefix}repeat {i}/{times}: "), out);
                }
            }
            StepKind::Parallel(branches) => {
                for (i, b) in branches.iter().enumerate() {
                    fault_steps(b, &format!("{prefix}parallel branch {}: ", i + 1), out);
                }
            }
            _ => {}
        }
    }
}

/// Take the snapshot of `src` on the model.
fn freeze_model(src: &Source, source: &str) -> Result<Snapshot, String> {
    let mut snap = freeze_plan(&src.plan, Some(source), &src.steps).map_err(|e| e.to_string())?;
    snap.lab.clone_from(&src.name);
    snap.scenario.clone_from(&src.scenario);
    Ok(snap)
}

/// Take the snapshot of `file` on a live kernel lab: `lab` if given (it must be up), else a
/// throwaway lab brought up now and always torn down. `steps` replaces the file's own fault
/// steps.
fn freeze_kernel(
    file: &Path,
    source: &str,
    lab: Option<&str>,
    steps: Option<Vec<(String, Vec<Fault>)>>,
) -> Result<Snapshot, String> {
    if !topo_kernel::is_root() {
        return Err("the kernel backend needs root (network namespaces); run with sudo".into());
    }
    if let Some(lab) = lab {
        let mut src = load_source(file, None)?;
        if let Some(steps) = steps {
            src.steps = steps;
        }
        let mut handle = topo_kernel::KernelLab::open_lab(lab).map_err(|e| e.to_string())?;
        return snapshot_live(&mut handle, &src, source);
    }
    let unique = topo_scenario::unique_lab_name();
    let mut src = load_source(file, Some(&unique))?;
    if let Some(steps) = steps {
        src.steps = steps;
    }
    let info = topo_kernel::SourceInfo::from_file(file).map_err(|e| format!("{}: {e}", file.display()))?;
    tracing::info!(lab = %unique, "bringing up a throwaway lab");
    // `up` rolls back by itself when it fails.
    topo_kernel::up(&src.plan, &info, &topo_kernel::UpOpts::default()).map_err(|e| e.to_string())?;
    let result = topo_kernel::KernelLab::open_lab(&unique)
        .map_err(|e| e.to_string())
        .and_then(|mut h| snapshot_live(&mut h, &src, source));
    let down = topo_kernel::down(&unique).map_err(|e| format!("teardown of lab {unique}: {e}"));
    match (result, down) {
        (Ok(s), Ok(_)) => Ok(s),
        (Ok(_), Err(d)) => Err(d),
        (Err(e), Ok(_)) => Err(e),
        (Err(e), Err(d)) => Err(format!("{e}; {d}")),
    }
}

fn snapshot_live(lab: &mut dyn topo_lab::Lab, src: &Source, source: &str) -> Result<Snapshot, String> {
    let mut snap = freeze_lab(lab, &src.name, Some(source), &src.steps).map_err(|e| e.to_string())?;
    snap.scenario.clone_from(&src.scenario);
    Ok(snap)
}

fn freeze(file: &Path, out: &Path, stdout: bool, backend: BackendArg, lab: Option<&str>) -> i32 {
    let source = file.display().to_string();
    let result = match backend {
        BackendArg::Model => load_source(file, None).and_then(|src| freeze_model(&src, &source)),
        BackendArg::Kernel => freeze_kernel(file, &source, lab, None),
    };
    let snap = match result {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return exit_code::LAB_ERROR;
        }
    };
    if stdout {
        let _ = write!(std::io::stdout().lock(), "{}", snap.to_text());
        return exit_code::OK;
    }
    let stem = match &snap.scenario {
        Some(name) => format!("scenario-{name}"),
        None => snap.lab.clone(),
    };
    let target = out.join(format!("{stem}.json"));
    if let Err(e) = std::fs::create_dir_all(out).and_then(|()| std::fs::write(&target, snap.to_text())) {
        eprintln!("error: cannot write {}: {e}", target.display());
        return exit_code::LAB_ERROR;
    }
    eprintln!("froze {} into {}", file.display(), target.display());
    exit_code::OK
}

fn snapshot_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if path.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(path)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        v.sort();
        Ok(v)
    } else {
        Ok(vec![path.to_owned()])
    }
}

/// Recompute a frozen snapshot now: scenarios from the scenario file (so edits to it show),
/// topologies from their file and recorded fault steps. On the kernel, both sides are reduced to
/// [`outcomes_only`] (no forwarding tables, failures without their reason) before comparing. Returns (expected text, actual text).
fn recompute_any(old: &Snapshot, backend: BackendArg) -> Result<(String, String), String> {
    let source = old.source.as_deref().ok_or("the snapshot names no source file")?;
    match backend {
        BackendArg::Model if old.scenario.is_some() => {
            let src = load_source(Path::new(source), None)?;
            Ok((old.to_text(), freeze_model(&src, source)?.to_text()))
        }
        BackendArg::Model => Ok((old.to_text(), recompute(old, Path::new("."))?.to_text())),
        BackendArg::Kernel => {
            // A topology snapshot's steps are the recorded ones: replay them on the fresh lab.
            let steps = if old.scenario.is_none() { Some(recorded_steps(old)?) } else { None };
            let new = freeze_kernel(Path::new(source), source, None, steps)?;
            Ok((outcomes_only(old).to_text(), outcomes_only(&new).to_text()))
        }
    }
}

fn verify(path: &Path, update: bool, json: bool, backend: BackendArg) -> i32 {
    let files = match snapshot_files(path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", path.display());
            return exit_code::INVALID_INPUT;
        }
    };
    let mut verdicts = Vec::new();
    let (mut differ, mut broken) = (0usize, 0usize);
    for f in &files {
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{}: cannot read: {e}", f.display());
                broken += 1;
                verdicts.push(serde_json::json!({"file": f.display().to_string(), "status": "error", "error": e.to_string()}));
                continue;
            }
        };
        let result = Snapshot::from_text(&text)
            .map_err(|e| e.to_string())
            .and_then(|old| recompute_any(&old, backend));
        let (text, new) = match result {
            Ok(pair) => pair,
            Err(e) => {
                eprintln!("{}: {e}", f.display());
                broken += 1;
                verdicts.push(
                    serde_json::json!({"file": f.display().to_string(), "status": "error", "error": e}),
                );
                continue;
            }
        };
        let status = match diff(&text, &new, &format!("{} (frozen)", f.display()), "now") {
            None => "same",
            Some(d) => {
                if !json {
                    let _ = write!(std::io::stdout().lock(), "{d}");
                }
                if update {
                    if let Err(e) = std::fs::write(f, &new) {
                        eprintln!("{}: cannot rewrite: {e}", f.display());
                        broken += 1;
                        "error"
                    } else {
                        eprintln!("{}: updated", f.display());
                        "updated"
                    }
                } else {
                    differ += 1;
                    "differs"
                }
            }
        };
        verdicts.push(serde_json::json!({"file": f.display().to_string(), "status": status}));
    }
    if json {
        let text = serde_json::to_string_pretty(&verdicts).unwrap_or_default();
        let _ = writeln!(std::io::stdout().lock(), "{text}");
    } else {
        eprintln!("{} snapshot(s): {differ} differ, {broken} could not be checked", files.len());
    }
    if broken > 0 {
        exit_code::INVALID_INPUT
    } else if differ > 0 {
        exit_code::ASSERTION_FAILED
    } else {
        exit_code::OK
    }
}
