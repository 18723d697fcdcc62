//! `topo-plan`: the provisioning engine. Turns a validated [`topo_spec::Topology`] into a
//! [`Plan`]: address allocation (IPAM), kernel object names, MACs, routes and sysctls.
//! Pure and deterministic.

pub mod types;

pub use types::*;
