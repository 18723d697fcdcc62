//! `topo exec NODE -- CMD...` and `topo shell NODE`: run inside a node (network and UTS
//! namespace, the node's /etc/hosts and resolv.conf), like `ip netns exec`.

use std::os::unix::process::ExitStatusExt;

use crate::exit_code;

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// Lab name or topology file (default: the only lab that is up).
    #[arg(long)]
    pub lab: Option<String>,
    /// The node to run in.
    pub node: String,
    /// The command and its arguments (after `--`).
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct ShellArgs {
    /// Lab name or topology file (default: the only lab that is up).
    #[arg(long)]
    pub lab: Option<String>,
    /// The node to open a shell in.
    pub node: String,
}

pub fn exec(args: &ExecArgs) -> i32 {
    run_in(args.lab.as_deref(), &args.node, &args.command)
}

pub fn shell(args: &ShellArgs) -> i32 {
    let sh = std::env::var("SHELL").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "/bin/bash".into());
    run_in(args.lab.as_deref(), &args.node, &[sh])
}

fn run_in(lab: Option<&str>, node: &str, argv: &[String]) -> i32 {
    if let Err(code) = crate::commands::up::need_root("exec") {
        return code;
    }
    let lab = match topo_kernel::resolve_lab(lab).and_then(|l| topo_kernel::KernelLab::open_lab(&l)) {
        Ok(l) => l,
        Err(e) => return crate::commands::up::fail(&e),
    };
    let mut cmd = match lab.command(node, argv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return exit_code::USAGE;
        }
    };
    cmd.env("TOPO_LAB", lab.name()).env("TOPO_NODE", node);
    match cmd.status() {
        Ok(st) => st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0)),
        Err(e) => {
            eprintln!("error: run {:?} in {node}: {e}", argv[0]);
            127
        }
    }
}
