//! `topo validate FILE...`: parse and check topology files, including the checks that need
//! address allocation (the plan is computed and thrown away).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use topo_spec::{Diagnostics, Topology};

use crate::exit_code;

/// Spec checks, then the plan's (pool exhaustion and the like), against the same source.
fn check(path: &Path) -> Result<Topology, Diagnostics> {
    let (topology, source) = topo_spec::load_with_source(path)?;
    match topo_plan::compile(&topology) {
        Ok(_) => Ok(topology),
        Err(items) => Err(Diagnostics { source, items }),
    }
}

pub fn run(files: &[PathBuf], json: bool) -> i32 {
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut all = Vec::new();
    let mut invalid = 0usize;
    for f in files {
        match check(f) {
            Ok(t) => {
                tracing::info!(file = %f.display(), nodes = t.nodes.len(), links = t.links.len(), "valid");
                if !json {
                    eprintln!("{}: ok ({} nodes, {} links)", f.display(), t.nodes.len(), t.links.len());
                }
            }
            Err(diags) => {
                invalid += 1;
                if json {
                    if let serde_json::Value::Array(items) = topo_spec::to_json(&diags) {
                        all.extend(items);
                    }
                } else {
                    eprint!("{}", topo_spec::render(&diags, color));
                }
            }
        }
    }
    if json {
        let mut out = std::io::stdout().lock();
        let text = serde_json::to_string_pretty(&serde_json::Value::Array(all)).unwrap_or_default();
        let _ = writeln!(out, "{text}");
    }
    if invalid == 0 {
        exit_code::OK
    } else {
        exit_code::INVALID_INPUT
    }
}
