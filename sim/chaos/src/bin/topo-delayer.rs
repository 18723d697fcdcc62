//! Standalone entry point of the userspace delayer (`topo-delayer __delayer --queue=N ...`), the
//! same code the `topo` binary runs as `topo __delayer`. Useful where the `topo` binary is not
//! built (this crate's tests) or to run a delayer by hand.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = match args.first().map(String::as_str) {
        Some("__delayer") => &args[1..],
        _ => &args[..],
    };
    std::process::exit(topo_chaos::delayer_main(rest));
}
