//! Validate a topology file and print the diagnostics (a debugging aid; the CLI is `topo validate`).
fn main() {
    for arg in std::env::args().skip(1) {
        match topo_spec::load(std::path::Path::new(&arg)) {
            Ok(t) => println!("{arg}: ok ({} nodes, {} links)", t.nodes.len(), t.links.len()),
            Err(d) => print!("{}", topo_spec::render(&d, false)),
        }
    }
}
