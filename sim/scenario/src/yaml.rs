//! Scenario files are read with topo-spec's YAML tree (exact byte spans, duplicate keys,
//! one document), so scenario errors point at `file:line:col` exactly like topology errors.

use topo_spec::tree::{parse_document, DocKind};
pub use topo_spec::tree::{LineIndex, Map, Scalar, Y};
use topo_spec::Diagnostic;

const SCENARIO: DocKind = DocKind {
    name: "scenario",
    expected: "expected `name:`, `topology:`, `steps:`",
    anchor_help: "use a `repeat:` block to run steps more than once",
};

/// Parse a scenario's YAML text. The top level must be a mapping.
pub fn parse(text: &str) -> Result<Map, Diagnostic> {
    parse_document(text, &SCENARIO).map_err(|d| *d)
}
