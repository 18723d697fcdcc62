//! `topo-spec`: the topology format. Parse YAML with source positions, expand counters and
//! templates, and validate, reporting every problem at once with its span.
//!
//! Pure: no I/O besides what the caller passes in, no root, no kernel.

pub mod diag;
pub mod ir;

pub use diag::{Diagnostic, Diagnostics, SourceFile};
pub use ir::*;
