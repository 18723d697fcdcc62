//! Helpers shared by the CLI tests that drive the `topo` binary (included with `mod support;`).

use std::process::{Command, Output, Stdio};

/// The `topo` binary under test, without inherited log settings.
pub fn topo() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_topo"));
    c.env_remove("TOPO_LOG");
    c
}

/// Run `topo ARGS` to completion.
pub fn run(args: &[&str]) -> Output {
    topo().args(args).stdin(Stdio::null()).output().expect("run topo")
}

/// Run `topo ARGS`, assert it succeeded, and return its stdout.
pub fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "topo {args:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
