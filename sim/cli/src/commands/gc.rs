//! `topo gc`: remove what crashed or killed topo processes left behind, for every lab.

use crate::commands::up::need_root;
use crate::exit_code;

#[derive(Debug, clap::Args)]
pub struct GcArgs {
    /// Only these labs (default: every lab with residue). Labs that are up, or in use by another
    /// topo process, are never touched.
    pub labs: Vec<String>,
    /// Print what was removed as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &GcArgs) -> i32 {
    if let Err(code) = need_root("gc") {
        return code;
    }
    let only = (!args.labs.is_empty()).then_some(args.labs.as_slice());
    let r = match topo_kernel::gc_labs(only) {
        Ok(r) => r,
        Err(e) => return crate::commands::up::fail(&e),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
    } else if r.labs.is_empty() {
        println!("nothing to clean");
    } else {
        println!(
            "cleaned {} lab(s) ({}): {} namespaces, {} processes, {} /etc/netns dirs, {} UTS mounts, {} state dirs",
            r.labs.len(),
            r.labs.join(", "),
            r.namespaces.len(),
            r.processes.len(),
            r.etc_dirs.len(),
            r.uts_mounts.len(),
            r.state_dirs.len()
        );
    }
    for e in &r.errors {
        eprintln!("error: {e}");
    }
    if r.errors.is_empty() {
        exit_code::OK
    } else {
        exit_code::LAB_ERROR
    }
}
