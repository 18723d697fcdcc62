//! `topo validate` and `topo schema` as a user runs them: the built binary, exit codes,
//! diagnostics on stderr with `file:line:col`, JSON on stdout.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn topo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_topo"))
        .args(args)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .output()
        .expect("run topo")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn valid_files_exit_zero() {
    let out = topo(&["validate", "topologies/lan.yaml", "topologies/multi-dc.yaml"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("topologies/lan.yaml: ok"), "{stderr}");
    assert!(stderr.contains("topologies/multi-dc.yaml: ok"), "{stderr}");
}

#[test]
fn every_example_topology_validates() {
    let mut files: Vec<String> = std::fs::read_dir(root().join("topologies"))
        .expect("topologies/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| p.strip_prefix(root()).unwrap_or(&p).display().to_string())
        .collect();
    files.sort();
    let mut args = vec!["validate"];
    args.extend(files.iter().map(String::as_str));
    let out = topo(&args);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
}

#[test]
fn invalid_file_exits_three_with_located_diagnostics() {
    let file = "fixtures/topology/invalid/duplicate-address.yaml";
    let out = topo(&["validate", "topologies/lan.yaml", file]);
    assert_eq!(out.status.code(), Some(3), "one invalid file makes the whole run fail");
    let stderr = text(&out.stderr);
    // file:line:col of the second use of 10.0.0.10, the snippet and the hint.
    assert!(stderr.contains(&format!("{file}:10:42")), "no file:line:col in:\n{stderr}");
    assert!(stderr.contains("address 10.0.0.10 is used twice"), "{stderr}");
    assert!(stderr.contains("help:"), "{stderr}");
    assert!(stderr.contains("error[topo::duplicate-address]"), "{stderr}");
    assert!(out.stdout.is_empty(), "diagnostics go to stderr, stdout stays clean");
}

#[test]
fn json_diagnostics_on_stdout() {
    let file = "fixtures/topology/invalid/dependency-cycle.yaml";
    let out = topo(&["validate", "--json", file]);
    assert_eq!(out.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    let items = v.as_array().expect("a JSON array");
    assert!(!items.is_empty());
    for item in items {
        assert_eq!(item["file"], file);
        assert!(item["span"]["line"].as_u64().is_some_and(|l| l >= 1), "{item}");
    }
    assert!(items.iter().any(|i| i["code"] == "topo::dependency-cycle"));

    let ok = topo(&["validate", "--json", "topologies/lan.yaml"]);
    assert_eq!(ok.status.code(), Some(0));
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&ok.stdout).expect("JSON"), serde_json::json!([]));
}

#[test]
fn validate_includes_plan_checks() {
    let file = "fixtures/topology/plan-invalid/pool-exhausted.yaml";
    let out = topo(&["validate", file]);
    assert_eq!(out.status.code(), Some(3), "stderr: {}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("error[topo::pool-exhausted]"), "{stderr}");
    assert!(stderr.contains(&format!("{file}:")), "{stderr}");
}

/// Snapshot of `topo validate` on files only the plan rejects (address allocation):
/// `fixtures/topology/plan-invalid/<name>.yaml` against `<name>.stderr`; `TOPO_BLESS=1` rewrites.
#[test]
fn plan_invalid_fixtures_match_their_snapshots() {
    let dir = root().join("fixtures/topology/plan-invalid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("plan-invalid fixtures")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 2);
    let mut failures = Vec::new();
    for f in files {
        let name = f.file_stem().and_then(|s| s.to_str()).expect("name").to_owned();
        let shown = format!("fixtures/topology/plan-invalid/{name}.yaml");
        let out = topo(&["validate", &shown]);
        let stderr = text(&out.stderr);
        if out.status.code() != Some(3) || !stderr.contains(&format!("error[topo::{name}]")) {
            failures.push(format!(
                "{shown}: expected exit 3 and a topo::{name} error, got {:?}:\n{stderr}",
                out.status
            ));
            continue;
        }
        let expected_path = f.with_extension("stderr");
        if std::env::var_os("TOPO_BLESS").is_some() {
            std::fs::write(&expected_path, &stderr).expect("write snapshot");
        } else if std::fs::read_to_string(&expected_path).unwrap_or_default() != stderr {
            failures.push(format!(
                "{shown}: output differs from {name}.stderr (TOPO_BLESS=1 to update):\n{stderr}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn missing_file_is_invalid_input() {
    let out = topo(&["validate", "does/not/exist.yaml"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("cannot read does/not/exist.yaml"));
}

#[test]
fn schema_describes_the_format() {
    let out = topo(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("schema is JSON");
    assert_eq!(v["type"], "object");
    assert_eq!(v["additionalProperties"], false);
    for key in ["name", "networks", "nodes", "links", "defaults", "groups", "pools"] {
        assert!(v["properties"].get(key).is_some(), "schema lacks `{key}`");
    }
    let node = &v["properties"]["nodes"]["additionalProperties"]["anyOf"][0];
    assert!(node["properties"].get("depends_on").is_some());
    assert!(Path::new(env!("CARGO_BIN_EXE_topo")).exists());
}
