//! `topo status [LAB|FILE]`: nodes, interfaces, addresses, link state, processes and faults.

use crate::exit_code;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Lab name or topology file (default: the only lab that is up).
    pub lab: Option<String>,
    /// Print the status as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &StatusArgs) -> i32 {
    let lab = match topo_kernel::resolve_lab(args.lab.as_deref()) {
        Ok(l) => l,
        Err(e) => return crate::commands::up::fail(&e),
    };
    let st = match topo_kernel::status(&lab) {
        Ok(s) => s,
        Err(e) => return crate::commands::up::fail(&e),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&st).unwrap_or_default());
        return exit_code::OK;
    }
    let src = st.source.as_ref().map_or_else(|| "-".into(), |p| p.display().to_string());
    println!("lab {} ({}), from {src}", st.lab, st.phase);
    let nw = st.nodes.iter().map(|n| n.name.len()).max().unwrap_or(4).max(4);
    println!(
        "{:nw$}  {:6}  {:6}  {:17}  {:>5}  {:5}  ADDRESSES",
        "NODE", "IFACE", "STATE", "MAC", "MTU", "PROCS"
    );
    for n in &st.nodes {
        if !n.present {
            println!("{:nw$}  (namespace {} is missing)", n.name, n.netns);
            continue;
        }
        let mut first = true;
        for i in n.interfaces.iter().filter(|i| i.name != "lo" || !addresses_beyond_localhost(i).is_empty()) {
            let (name, procs) =
                if first { (n.name.as_str(), n.processes.to_string()) } else { ("", String::new()) };
            first = false;
            let state = if i.admin_up { i.oper.as_str() } else { "admin-down" };
            let addrs = if i.name == "lo" { addresses_beyond_localhost(i) } else { i.addresses.clone() };
            println!(
                "{name:nw$}  {:6}  {:6}  {:17}  {:>5}  {procs:5}  {}",
                i.name,
                state,
                i.mac,
                i.mtu,
                addrs.join(" ")
            );
        }
        if first {
            println!("{:nw$}  {:6}  {:6}  {:17}  {:>5}  {:5}", n.name, "-", "-", "-", "-", n.processes);
        }
        for d in &n.daemons {
            println!("{:nw$}  daemon: {d}", "");
        }
    }
    if st.faults.is_clear() {
        println!("faults: none");
    } else {
        println!("faults: {}", serde_json::to_string(&st.faults).unwrap_or_default());
    }
    exit_code::OK
}

fn addresses_beyond_localhost(i: &topo_kernel::IfaceStatus) -> Vec<String> {
    i.addresses.iter().filter(|a| !a.starts_with("127.") && a.as_str() != "::1/128").cloned().collect()
}
