//! `topo test`: run scenario files against a backend. Live per-step lines on stderr, a summary
//! table (or `--json` with every measurement) on stdout, JUnit XML on request.
//!
//! Every scenario is loaded and checked before any lab is built: one malformed file stops the
//! run with its diagnostics (exit 3). Each scenario gets its own lab with a unique name and is
//! torn down afterwards, also on failure and on Ctrl-C (unless `--keep-on-failure`).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, ValueEnum};
use topo_lab::BackendKind;
use topo_scenario::{
    junit, live_line, run_all, summary_table, Backend, Event, LabInstance, RunOpts, RunReport, Scenario,
    ScenarioOutcome,
};

use crate::exit_code;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    /// Network namespaces (root).
    Kernel,
    /// The pure simulation: no root; timing and exec steps are n/a.
    Model,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Scenario files, or directories to search for `*.yaml` (default: `scenarios/`).
    pub paths: Vec<PathBuf>,
    /// Where scenarios run.
    #[arg(long, value_enum, default_value = "kernel")]
    pub backend: BackendArg,
    /// Run this many scenarios at once (each in its own lab).
    #[arg(short = 'j', long = "jobs", value_name = "N", default_value_t = 1)]
    pub jobs: usize,
    /// Seed of random steps (printed by every run; the same seed replays the same choices).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Leave the lab of a failed scenario up and print how to enter it.
    #[arg(long)]
    pub keep_on_failure: bool,
    /// Write a JUnit XML report (one testcase per step) to FILE.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Print the full report as JSON on stdout (every measurement) instead of the table.
    #[arg(long)]
    pub json: bool,
}

struct ModelBackend;

impl Backend for ModelBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Model
    }

    fn up(&self, s: &Scenario) -> Result<LabInstance, String> {
        Ok(LabInstance {
            lab: Box::new(topo_model::ModelLab::new(s.plan.clone())),
            teardown: Box::new(|| Ok(())),
            enter_hint: format!(
                "the model lab exists only in memory; explore the same network with `topo sim {}`",
                s.topology_path.display()
            ),
        })
    }
}

struct KernelBackend;

impl Backend for KernelBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Kernel
    }

    fn up(&self, s: &Scenario) -> Result<LabInstance, String> {
        let lab = s.plan.lab.clone();
        let source =
            topo_kernel::SourceInfo { path: Some(s.topology_path.clone()), text: s.topology_text.clone() };
        // `up` rolls back by itself when it fails or is interrupted.
        topo_kernel::up(&s.plan, &source, &topo_kernel::UpOpts::default()).map_err(|e| e.to_string())?;
        let handle = match topo_kernel::KernelLab::open_lab(&lab) {
            Ok(h) => h,
            Err(e) => {
                let down =
                    topo_kernel::down(&lab).err().map(|d| format!("; teardown: {d}")).unwrap_or_default();
                return Err(format!("{e}{down}"));
            }
        };
        let name = lab.clone();
        Ok(LabInstance {
            lab: Box::new(handle),
            teardown: Box::new(move || topo_kernel::down(&name).map(|_| ()).map_err(|e| e.to_string())),
            enter_hint: format!("topo shell --lab {lab} NODE   (remove it with `topo down {lab}`)"),
        })
    }
}

fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// A fresh seed small enough to type back (`--seed N`).
fn fresh_seed() -> u64 {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let mixed = (nanos as u64) ^ (u64::from(std::process::id()) << 20);
    mixed % 1_000_000_000
}

pub fn run(args: &TestArgs) -> i32 {
    let paths = if args.paths.is_empty() { vec![PathBuf::from("scenarios")] } else { args.paths.clone() };
    let files = match topo_scenario::collect_files(&paths) {
        Ok(f) if f.is_empty() => {
            eprintln!("topo test: no scenario files (*.yaml) in {}", show_paths(&paths));
            return exit_code::INVALID_INPUT;
        }
        Ok(f) => f,
        Err(e) => {
            eprintln!("topo test: {e}");
            return exit_code::INVALID_INPUT;
        }
    };

    // Load everything first: a malformed scenario builds no lab at all.
    let color = std::io::stderr().is_terminal();
    let mut scenarios = Vec::new();
    let mut invalid = 0;
    for f in &files {
        match topo_scenario::load(f, &topo_scenario::unique_lab_name()) {
            Ok(s) => scenarios.push(s),
            Err(d) => {
                eprint!("{}", topo_spec::render(&d, color));
                invalid += 1;
            }
        }
    }
    if invalid > 0 {
        eprintln!("topo test: {invalid} of {} scenario files are invalid; nothing was run", files.len());
        return exit_code::INVALID_INPUT;
    }

    let backend_kind = match args.backend {
        BackendArg::Kernel => BackendKind::Kernel,
        BackendArg::Model => BackendKind::Model,
    };
    if backend_kind == BackendKind::Kernel && effective_uid() != Some(0) {
        eprintln!("topo test: the kernel backend needs root (network namespaces); run with sudo, or use --backend model");
        return exit_code::NEED_ROOT;
    }
    let backend: &dyn Backend = match backend_kind {
        BackendKind::Kernel => &KernelBackend,
        BackendKind::Model => &ModelBackend,
    };
    let seed = args.seed.unwrap_or_else(fresh_seed);
    eprintln!(
        "topo test: {} scenario(s) on the {backend_kind} backend, seed {seed} (replay with --seed {seed})",
        scenarios.len()
    );

    // Ctrl-C / SIGTERM set the kernel crate's flag (so a running `up` rolls back too); a
    // watcher carries it to the runner, which stops before the next step and tears down.
    if let Err(e) = topo_kernel::interrupt::install() {
        tracing::warn!("cannot install the Ctrl-C handler: {e}");
    }
    let cancel = AtomicBool::new(false);
    let finished = AtomicBool::new(false);
    let events = |e: &Event<'_>| match e {
        Event::ScenarioStarted { scenario, backend, .. } => {
            eprintln!(
                "=== {} ({}, lab {}, {backend})",
                scenario.name,
                scenario.path.display(),
                scenario.plan.lab
            );
        }
        Event::StepFinished { scenario, step } => eprintln!("{}", live_line(&scenario.name, step)),
        Event::ScenarioFinished { report } => {
            eprintln!(
                "=== {}: {} in {:.2}s",
                report.name,
                report.outcome.word(),
                report.duration_ms / 1000.0
            );
            for t in &report.teardown_errors {
                eprintln!("    teardown: {t}");
            }
            if let Some(k) = &report.kept {
                eprintln!("    the lab is kept for debugging: {k}");
            }
        }
    };
    let opts = RunOpts {
        seed,
        keep_on_failure: args.keep_on_failure,
        cancel: &cancel,
        events: &events,
        retry_interval: Duration::from_millis(200),
    };
    let reports = std::thread::scope(|s| {
        s.spawn(|| {
            while !finished.load(Ordering::SeqCst) {
                if topo_kernel::interrupt::requested() && !cancel.swap(true, Ordering::SeqCst) {
                    eprintln!("topo test: interrupted; finishing the current step, then tearing down");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let r = run_all(&scenarios, backend, &opts, args.jobs.max(1));
        finished.store(true, Ordering::SeqCst);
        r
    });
    let run = RunReport { seed, backend: backend_kind, scenarios: reports };

    let mut code = exit_code_of(&run);
    if let Some(path) = &args.junit {
        match std::fs::write(path, junit(&run)) {
            Ok(()) => eprintln!("topo test: JUnit report written to {}", path.display()),
            Err(e) => {
                eprintln!("topo test: cannot write the JUnit report {}: {e}", path.display());
                if code == exit_code::OK {
                    code = exit_code::LAB_ERROR;
                }
            }
        }
    }
    if args.json {
        match serde_json::to_string_pretty(&run) {
            Ok(j) => println!("{j}"),
            Err(e) => eprintln!("topo test: cannot render JSON: {e}"),
        }
    } else {
        print!("{}", summary_table(&run));
    }
    code
}

fn show_paths(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// 130 when interrupted, 1 when an assertion failed, 4 when a lab could not be built or
/// changed (or torn down), else 0.
pub fn exit_code_of(run: &RunReport) -> i32 {
    let any = |o: ScenarioOutcome| run.scenarios.iter().any(|s| s.outcome == o);
    if any(ScenarioOutcome::Interrupted) {
        exit_code::INTERRUPTED
    } else if any(ScenarioOutcome::Failed) {
        exit_code::ASSERTION_FAILED
    } else if any(ScenarioOutcome::Error) {
        exit_code::LAB_ERROR
    } else {
        exit_code::OK
    }
}
