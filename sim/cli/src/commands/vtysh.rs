//! `topo vtysh [--lab L] NODE [-c CMD]... [-- VTYSH-ARGS...]`: FRR's vtysh on one router's own
//! daemons. Every router runs its FRR instance in a separate pathspace (`vtysh -N
//! topo-<lab>_<node>`); this picks the right one. The long form is
//! `topo exec NODE vtysh -N <pathspace> ...`.

use std::os::unix::process::ExitStatusExt;

use topo_lab::Lab as _;

use crate::exit_code;

#[derive(Debug, clap::Args)]
pub struct VtyshArgs {
    /// Lab name or topology file (default: the only lab that is up).
    #[arg(long)]
    pub lab: Option<String>,
    /// The router whose daemons to talk to.
    pub node: String,
    /// A command to run, e.g. -c 'show ip ospf neighbor' (repeatable, run in order). Without
    /// any, an interactive vtysh session.
    #[arg(short = 'c', long = "command", value_name = "CMD")]
    pub commands: Vec<String>,
    /// Further vtysh arguments, after `--` (e.g. `-- -d ospfd` to talk to ospfd only).
    #[arg(last = true)]
    pub extra: Vec<String>,
}

pub fn run(args: &VtyshArgs) -> i32 {
    if let Err(code) = crate::commands::up::need_root("vtysh") {
        return code;
    }
    let lab = match topo_kernel::resolve_lab(args.lab.as_deref())
        .and_then(|l| topo_kernel::KernelLab::open_lab(&l))
    {
        Ok(l) => l,
        Err(e) => return crate::commands::up::fail(&e),
    };
    let plan = lab.plan();
    let Some(node) = plan.node(&args.node) else {
        let names: Vec<&str> =
            plan.nodes.iter().filter(|n| n.routing.is_some()).map(|n| n.name.as_str()).collect();
        eprintln!("error: lab {} has no node {:?} (routers: {})", lab.name(), args.node, names.join(", "));
        return exit_code::USAGE;
    };
    let Some(mut argv) = topo_daemons::vtysh_argv(plan, &node.name) else {
        eprintln!(
            "error: node {} runs no FRR daemons (give it `routing: {{daemon: frr, ospf: ...}}` in the topology)",
            node.name
        );
        return exit_code::USAGE;
    };
    argv.extend(args.extra.iter().cloned());
    for c in &args.commands {
        argv.push("-c".into());
        argv.push(c.clone());
    }
    // Inside the node like `topo exec`: the sockets are in the filesystem, but this keeps the
    // node's hostname and /etc files for anything vtysh prints or resolves.
    let mut cmd = match lab.command(&node.name, &argv) {
        Ok(c) => c,
        Err(e) => return crate::commands::up::fail(&e),
    };
    cmd.env("TOPO_LAB", lab.name()).env("TOPO_NODE", &node.name);
    match cmd.status() {
        Ok(st) => st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("error: vtysh not found: install FRR (the `frr` package)");
            127
        }
        Err(e) => {
            eprintln!("error: run vtysh for {}: {e}", node.name);
            127
        }
    }
}
