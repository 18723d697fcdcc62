//! `topo snapshot freeze FILE [--out DIR]` and `topo snapshot verify [FILE|DIR] [--update]`:
//! golden files of what the model says a design does.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use topo_model::snapshot::{diff, freeze_plan, recompute, Snapshot};

use crate::exit_code;

/// Where snapshots live by default.
pub const DEFAULT_DIR: &str = "fixtures/snapshots";

#[derive(Debug, Subcommand)]
pub enum SnapshotCmd {
    /// Freeze a topology: plan summary, forwarding tables, ICMP matrix and paths, as
    /// normalized JSON in DIR/<lab>.json.
    Freeze {
        file: PathBuf,
        #[arg(long, default_value = DEFAULT_DIR)]
        out: PathBuf,
        /// Print the snapshot on stdout instead of writing it.
        #[arg(long)]
        stdout: bool,
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
    },
}

pub fn run(cmd: SnapshotCmd) -> i32 {
    match cmd {
        SnapshotCmd::Freeze { file, out, stdout } => freeze(&file, &out, stdout),
        SnapshotCmd::Verify { path, update, json } => verify(&path, update, json),
    }
}

fn freeze(file: &Path, out: &Path, stdout: bool) -> i32 {
    let plan = match super::sim::load_plan(file) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let snap = match freeze_plan(&plan, Some(&file.display().to_string()), &[]) {
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
    let target = out.join(format!("{}.json", plan.lab));
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

fn verify(path: &Path, update: bool, json: bool) -> i32 {
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
            .and_then(|old| recompute(&old, Path::new(".")));
        let new = match result {
            Ok(n) => n.to_text(),
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
