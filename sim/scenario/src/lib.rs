//! `topo-scenario`: scenario files (a topology plus a schedule of faults, waits and
//! assertions) and the runner behind `topo test`.
//!
//! The runner talks to labs only through the [`topo_lab::Lab`] trait, so the same scenario
//! runs on the kernel backend and on the model; steps a backend cannot do are reported as
//! "n/a", never faked. See docs/scenarios.md for the format.

// Parsers here work on short-lived YAML values (`y`, `m`, `v`, `s`) in long match arms, and
// return the project's Diagnostic (large, but created only on the error path).
#![allow(
    clippy::many_single_char_names,
    clippy::result_large_err,
    clippy::single_match_else,
    clippy::match_wildcard_for_single_variants
)]

pub mod ast;
pub mod fault_text;
pub mod parse;
pub mod report;
pub mod run;
mod yaml;

pub use ast::{Scenario, Step, StepKind};
pub use parse::{load, load_str, load_with_plan};
pub use report::{
    junit, live_line, summary_table, RunReport, ScenarioOutcome, ScenarioReport, StepOutcome, StepReport,
};
pub use run::{run_all, run_scenario, Backend, Event, LabInstance, RunOpts};

/// A lab name unique to this process (short: kernel object names derive from it).
pub fn unique_lab_name() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("sc{}x{n}", std::process::id() % 100_000)
}

/// Files a `topo test` argument names: the file itself, or every `*.yaml`/`*.yml` below a
/// directory (sorted, so runs are in a stable order).
pub fn collect_files(paths: &[std::path::PathBuf]) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found = Vec::new();
            walk(p, &mut found)?;
            found.sort();
            out.extend(found);
        } else if p.exists() {
            out.push(p.clone());
        } else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{}: no such file or directory", p.display()),
            ));
        }
    }
    Ok(out)
}

fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
    Ok(())
}
