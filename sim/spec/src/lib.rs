//! `topo-spec`: the topology format. Parse YAML with source positions, expand counters and
//! templates, and validate, reporting every problem at once with its span.
//!
//! Pure: no I/O besides what the caller passes in, no root, no kernel.
//! The format is documented in `docs/topology.md`.

// `match` with a `None` arm that reports an error reads better than `if let ... else` here.
#![allow(clippy::single_match_else, clippy::many_single_char_names)]

pub mod diag;
mod expand;
pub mod ir;
mod parse;
mod render;
pub mod schema;
pub mod tree;
mod validate;
mod values;

pub use diag::{Diagnostic, Diagnostics, SourceFile};
pub use ir::*;
pub use render::{render, render_short, to_json};

use std::collections::HashSet;
use std::path::Path;

/// Longest lab name (kernel object names derive from it).
pub const MAX_LAB_NAME: usize = parse::MAX_LAB_NAME;
/// Longest node, network and group name (a DNS label).
pub const MAX_NAME: usize = parse::MAX_NAME;

/// Parse, expand and validate a topology from text. `path` is used in diagnostics only.
pub fn parse_str(path: &str, text: &str) -> Result<Topology, Diagnostics> {
    let source = || SourceFile::new(path, text);
    let root = tree::parse(text).map_err(|d| Diagnostics { source: source(), items: vec![*d] })?;
    let parse::Parsed { mut topology, nodes, links, mut diags } = parse::parse(&root);
    validate::validate(&mut topology, &nodes, &links, &mut diags);
    if diags.is_empty() {
        return Ok(topology);
    }
    // Templates apply one definition to many nodes; report each problem once.
    let mut seen = HashSet::new();
    diags.retain(|d| seen.insert((d.code, d.span.map(|s| (s.offset, s.len)), d.message.clone())));
    diags.sort_by_key(|d| d.span.map_or((0, 0), |s| (s.offset, s.len)));
    Err(Diagnostics { source: source(), items: diags })
}

/// Read and parse a topology file.
pub fn load(path: &Path) -> Result<Topology, Diagnostics> {
    load_with_source(path).map(|(t, _)| t)
}

/// Read and parse a topology file, and also return its text (for rendering later errors,
/// e.g. from the plan, against the same source).
pub fn load_with_source(path: &Path) -> Result<(Topology, SourceFile), Diagnostics> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| Diagnostics {
        source: SourceFile::new(shown.clone(), ""),
        items: vec![Diagnostic {
            code: "topo::io",
            message: format!("cannot read {shown}: {e}"),
            span: None,
            label: String::new(),
            help: Some("check the path".into()),
            related: Vec::new(),
        }],
    })?;
    let topology = parse_str(&shown, &text)?;
    Ok((topology, SourceFile::new(shown, text)))
}
