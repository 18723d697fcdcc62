//! The example topologies and valid fixtures parse and validate.

use std::path::{Path, PathBuf};

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn examples_validate() {
    let files = yaml_files(&root().join("topologies"));
    assert!(files.len() >= 4, "expected the example topologies, found {files:?}");
    for f in files {
        if let Err(d) = topo_spec::load(&f) {
            panic!("{} is invalid:\n{}", f.display(), topo_spec::render(&d, false));
        }
    }
}

/// Complete topologies shown in docs/topology.md (yaml blocks that start with `name:`) validate.
#[test]
fn documented_topologies_validate() {
    let doc = std::fs::read_to_string(root().join("docs/topology.md")).expect("docs/topology.md");
    let mut checked = 0;
    for block in doc.split("```yaml\n").skip(1) {
        let Some((yaml, _)) = block.split_once("```") else { continue };
        if !yaml.starts_with("name:") {
            continue;
        }
        if let Err(d) = topo_spec::parse_str("docs/topology.md", yaml) {
            panic!("a documented topology is invalid:\n{yaml}\n{}", topo_spec::render(&d, false));
        }
        checked += 1;
    }
    assert!(checked >= 1, "no complete topology found in docs/topology.md");
}

/// docs/topology.schema.json is `topo schema` output, kept in the repository for editors;
/// it must match the code (`TOPO_BLESS=1` rewrites it).
#[test]
fn committed_schema_is_current() {
    let path = root().join("docs/topology.schema.json");
    let current = serde_json::to_string_pretty(&topo_spec::schema::json_schema()).expect("json") + "\n";
    if std::env::var_os("TOPO_BLESS").is_some() {
        std::fs::write(&path, &current).expect("write schema");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == current,
        "docs/topology.schema.json is stale; run TOPO_BLESS=1 cargo test -p topo-spec"
    );
}
