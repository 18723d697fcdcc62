//! `topo-daemons`: routing daemons (FRR: zebra, ospfd, bfdd) as real processes inside lab nodes.
//!
//! Per router the plan carries the rendered config files ([`topo_plan::RoutingPlan::configs`]).
//! [`start_node`] writes them to `/etc/frr/<pathspace>/` and starts one FRR daemon per file
//! inside the node's network namespace. Each daemon also gets a private mount namespace in
//! which `/var/run/frr` is the node's own `/var/run/frr/<pathspace>/`, so nothing FRR keeps in
//! its run directory (pid files, vty and zserv sockets, `ospfd-gr.json`, the bfdd control
//! socket) is shared between routers or labs. From the host, `vtysh -N <pathspace>` reaches a
//! node's daemons. [`wait_converged`] polls every router until OSPF has converged; [`stop_lab`]
//! and [`gc_lab`] stop the daemons by PID and remove their directories.

// Spawning a daemon binds its run directory in a private mount namespace (pre_exec).
#![allow(unsafe_code)]

mod converge;
pub mod expect;
pub mod fib;
mod frr;
#[doc(hidden)]
pub mod testkit;
pub mod vty;

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use topo_lab::FaultState;
use topo_plan::Plan;

pub use converge::{health, DaemonHealth, DaemonStatus};
pub use frr::{
    exec_argv, gc_lab, labs_with_residue, pathspace, start_node, start_nodes, stop_lab, vtysh_argv, FrrPaths,
    GcOutcome, FRR_BIN_DIR, FRR_ETC_ROOT, FRR_RUN_ROOT,
};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("node {0:?} is not in the plan")]
    UnknownNode(String),
    #[error("node {node}: {what}")]
    Unsupported { node: String, what: String },
    #[error("FRR is not installed: {0} is missing (install the `frr` package)")]
    NotInstalled(PathBuf),
    #[error("node {node}: {op}: {source}")]
    Io { node: String, op: String, source: io::Error },
    #[error("node {node}: {daemon} failed to start: {detail}")]
    Start { node: String, daemon: String, detail: String },
    #[error("node {node}: {daemon} (pid {pid}) is still running after SIGKILL")]
    Stop { node: String, daemon: String, pid: i32 },
    #[error("routing did not converge within {}:\n{detail}", fmt_secs(*timeout))]
    NotConverged { timeout: Duration, detail: String },
    #[error("waiting for routing to converge was cancelled")]
    Cancelled,
    #[error("lab state: {0}")]
    State(String),
    #[error(transparent)]
    Netns(#[from] topo_netns::NetnsError),
}

fn fmt_secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

impl DaemonError {
    pub(crate) fn io(node: &str, op: impl Into<String>, source: io::Error) -> Self {
        DaemonError::Io { node: node.to_owned(), op: op.into(), source }
    }
}

/// A daemon process started by [`start_node`]. It is also recorded under `<state_dir>/pids/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartedProcess {
    pub pid: i32,
    pub node: String,
    /// FRR daemon name: `zebra`, `ospfd`, `bfdd`, ...
    pub daemon: String,
}

/// Wait until routing in the lab has converged, taking the lab's current faults
/// (`<state_dir>/faults.json`, if present) into account: adjacencies over links that are down
/// or cut, or between nodes that drop each other's traffic, are not expected, and neither are
/// routes that only such adjacencies could carry. Fails after `timeout` with a message that
/// names, per router, the neighbors, routes and BFD sessions it is missing.
pub fn wait_converged(plan: &Plan, state_dir: &Path, timeout: Duration) -> Result<(), DaemonError> {
    let faults = read_faults(state_dir)?;
    wait_converged_with(plan, &faults, timeout)
}

/// [`wait_converged`] with an explicit fault state (the kernel lab passes the one it holds).
pub fn wait_converged_with(plan: &Plan, faults: &FaultState, timeout: Duration) -> Result<(), DaemonError> {
    converge::wait(plan, faults, timeout, &|| false)
}

/// [`wait_converged`] that gives up early with [`DaemonError::Cancelled`] as soon as `cancelled`
/// returns true (checked every poll, i.e. every ~20 ms): for `up`, which must stay responsive
/// to Ctrl-C during a wait of up to [`default_converge_timeout`].
pub fn wait_converged_cancellable(
    plan: &Plan,
    state_dir: &Path,
    timeout: Duration,
    cancelled: &dyn Fn() -> bool,
) -> Result<(), DaemonError> {
    let faults = read_faults(state_dir)?;
    converge::wait(plan, &faults, timeout, cancelled)
}

/// The lab's current fault state, or none when `faults.json` doesn't exist.
pub fn read_faults(state_dir: &Path) -> Result<FaultState, DaemonError> {
    let path = state_dir.join("faults.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| DaemonError::State(format!("{}: {e} (fix or delete the file)", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(FaultState::default()),
        Err(e) => Err(DaemonError::State(format!("{}: {e}", path.display()))),
    }
}

/// A sensible deadline for [`wait_converged`] right after `up`: [`Plan::converge_timeout`].
pub fn default_converge_timeout(plan: &Plan) -> Duration {
    plan.converge_timeout()
}

/// Does any node of the plan run routing daemons?
pub fn has_routing(plan: &Plan) -> bool {
    plan.nodes.iter().any(|n| n.routing.as_ref().is_some_and(|r| !r.configs.is_empty()))
}
