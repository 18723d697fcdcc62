//! Snapshot test of every diagnostic: each `fixtures/topology/invalid/<name>.yaml` is rendered
//! (no color, ASCII) and compared with `<name>.stderr`. `TOPO_BLESS=1 cargo test -p topo-spec`
//! rewrites the expected files. Valid fixtures must parse.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

/// Every code the spec stage can emit; each must be exercised by some invalid fixture.
const CODES: &[&str] = &[
    "topo::yaml",
    "topo::duplicate-key",
    "topo::unknown-key",
    "topo::unsupported",
    "topo::missing-key",
    "topo::type",
    "topo::invalid-value",
    "topo::invalid-name",
    "topo::counter",
    "topo::duplicate-name",
    "topo::unknown-reference",
    "topo::subnet-overlap",
    "topo::address-outside-subnet",
    "topo::reserved-address",
    "topo::gateway-address",
    "topo::duplicate-address",
    "topo::interface-name",
    "topo::duplicate-interface",
    "topo::dependency-cycle",
    "topo::impairment-range",
    "topo::routing-on-host",
    "topo::unknown-attachment",
    "topo::ambiguous-attachment",
    "topo::unreachable-gateway",
];

#[test]
fn invalid_fixtures_match_their_snapshots() {
    let bless = std::env::var_os("TOPO_BLESS").is_some();
    let dir = root().join("fixtures/topology/invalid");
    let mut seen_codes = BTreeSet::new();
    let mut failures = Vec::new();
    let files = yaml_files(&dir);
    assert!(files.len() >= 20, "expected the invalid fixtures, found {}", files.len());
    for f in files {
        let name = f.file_stem().and_then(|s| s.to_str()).expect("utf-8 name").to_owned();
        let text = std::fs::read_to_string(&f).expect("read fixture");
        let shown = format!("fixtures/topology/invalid/{name}.yaml");
        let Err(diags) = topo_spec::parse_str(&shown, &text) else {
            failures.push(format!("{shown}: expected errors, but it is valid"));
            continue;
        };
        for d in &diags.items {
            seen_codes.insert(d.code);
            let s = d.span.expect("every spec diagnostic has a span");
            assert!(s.offset + s.len <= text.len(), "{shown}: span {s:?} outside the file");
            assert!(s.line >= 1 && s.col >= 1, "{shown}: span {s:?} not 1-based");
        }
        // The fixture name says which diagnostic it is about.
        let expected_code = format!("topo::{name}");
        if CODES.contains(&expected_code.as_str()) {
            assert!(
                diags.items.iter().any(|d| d.code == expected_code),
                "{shown}: no {expected_code} diagnostic among {:?}",
                diags.items.iter().map(|d| d.code).collect::<Vec<_>>()
            );
        }
        let rendered = topo_spec::render(&diags, false);
        let stderr_path = f.with_extension("stderr");
        if bless {
            std::fs::write(&stderr_path, &rendered).expect("write snapshot");
            continue;
        }
        let expected = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        if expected != rendered {
            failures.push(format!(
                "{shown}: rendered diagnostics differ from {name}.stderr (TOPO_BLESS=1 to update)\n--- expected\n{expected}\n--- actual\n{rendered}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let missing: Vec<&&str> = CODES.iter().filter(|c| !seen_codes.contains(**c)).collect();
    assert!(missing.is_empty(), "no fixture exercises {missing:?}");
}

#[test]
fn valid_fixtures_parse() {
    let files = yaml_files(&root().join("fixtures/topology/valid"));
    assert!(!files.is_empty());
    for f in files {
        if let Err(d) = topo_spec::load(&f) {
            panic!("{} is invalid:\n{}", f.display(), topo_spec::render(&d, false));
        }
    }
}
