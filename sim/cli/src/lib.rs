//! The `topo` command line, as a library so integration tests and benches can call it.

pub mod args;
pub mod commands;
pub mod exit_code;
pub mod observability;
