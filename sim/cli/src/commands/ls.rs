//! `topo ls`: labs on this machine.

use crate::exit_code;

#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// Print the labs as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &LsArgs) -> i32 {
    let labs = match topo_kernel::list_labs() {
        Ok(l) => l,
        Err(e) => return crate::commands::up::fail(&e),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&labs).unwrap_or_default());
        return exit_code::OK;
    }
    if labs.is_empty() {
        eprintln!("no labs (start one with `topo up FILE`)");
        return exit_code::OK;
    }
    let w = labs.iter().map(|l| l.lab.len()).max().unwrap_or(3).max(3);
    println!("{:w$}  {:8}  {:>5}  SOURCE", "LAB", "PHASE", "NODES");
    for l in &labs {
        let src = l.source.as_ref().map_or_else(|| "-".into(), |p| p.display().to_string());
        println!("{:w$}  {:8}  {:>5}  {src}", l.lab, l.phase, l.nodes);
    }
    exit_code::OK
}
