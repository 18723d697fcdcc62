//! `topo-spec`: the topology format. Parse YAML with source positions, expand counters and
//! templates, and validate, reporting every problem at once with its span.
//!
//! Pure: no I/O besides what the caller passes in, no root, no kernel.

pub mod diag;
pub mod ir;

pub use diag::{Diagnostic, Diagnostics, SourceFile};
pub use ir::*;

use std::path::Path;

/// Parse, expand and validate a topology from text. `path` is used in diagnostics only.
/// (Implementation in progress: see issue "Foundation".)
pub fn parse_str(path: &str, text: &str) -> Result<Topology, Diagnostics> {
    let _ = (path, text);
    todo!("topo-spec parser")
}

/// Read and parse a topology file.
pub fn load(path: &Path) -> Result<Topology, Diagnostics> {
    let text = std::fs::read_to_string(path).map_err(|e| Diagnostics {
        source: SourceFile::new(path.display().to_string(), ""),
        items: vec![Diagnostic {
            code: "topo::io",
            message: format!("cannot read {}: {e}", path.display()),
            span: None,
            label: String::new(),
            help: Some("check the path".into()),
            related: Vec::new(),
        }],
    })?;
    parse_str(&path.display().to_string(), &text)
}
