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
