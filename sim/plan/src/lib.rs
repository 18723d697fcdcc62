//! `topo-plan`: the provisioning engine. Turns a validated [`topo_spec::Topology`] into a
//! [`Plan`]: address allocation (IPAM), kernel object names, MACs, routes and sysctls.
//! Pure and deterministic.

pub mod daemons;
pub mod types;

pub use types::*;

use topo_spec::{Diagnostic, Topology};

/// Compile a validated topology into a plan. Errors (e.g. an exhausted address pool) carry
/// spans into the topology file.
pub fn compile(topology: &Topology) -> Result<Plan, Vec<Diagnostic>> {
    let _ = topology;
    todo!("topo-plan compiler")
}

/// Load, validate and compile a topology file in one step.
pub fn plan_file(path: &std::path::Path) -> Result<Plan, topo_spec::Diagnostics> {
    let topology = topo_spec::load(path)?;
    compile(&topology).map_err(|items| topo_spec::Diagnostics {
        source: topo_spec::SourceFile::new(
            path.display().to_string(),
            std::fs::read_to_string(path).unwrap_or_default(),
        ),
        items,
    })
}
