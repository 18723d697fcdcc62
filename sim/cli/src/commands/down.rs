//! `topo down [LAB|FILE]`: tear a lab down, leaving nothing behind.

use std::time::Duration;

use crate::commands::up::{fail, need_root};
use crate::exit_code;

#[derive(Debug, clap::Args)]
pub struct DownArgs {
    /// Lab name or topology file (default: the only lab that is up).
    pub lab: Option<String>,
    /// Seconds to wait for another topo process holding the lab's lock.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub wait: u64,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &DownArgs) -> i32 {
    if let Err(code) = need_root("down") {
        return code;
    }
    // Ctrl-C must not leave a half-removed lab: teardown runs to the end once started.
    let _ = topo_kernel::interrupt::install();
    let lab = match topo_kernel::resolve_lab(args.lab.as_deref()) {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
    match topo_kernel::down_with(&lab, Duration::from_secs(args.wait)) {
        Ok(r) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else {
                println!(
                    "lab {} down: {} namespaces removed, {} processes stopped in {:.3} s",
                    r.lab,
                    r.namespaces,
                    r.processes_killed,
                    r.elapsed.as_secs_f64()
                );
            }
            exit_code::OK
        }
        Err(e) => fail(&e),
    }
}
