//! `topo-lab`: the seam between what users ask (faults, probes, assertions, scenarios) and
//! the backends that answer — the kernel (`topo-kernel`) and the pure model (`topo-model`).

pub mod converge;
pub mod fault;
pub mod fault_text;
pub mod probe;
pub mod select;
pub mod testkit;

use std::time::Duration;

pub use converge::{ConvergeReport, ConvergeRequest, Flow, FlowReport, TimelineEvent};
pub use fault::{Fault, FaultState, LinkRef};
pub use probe::{Hop, NatResult, PairOutcome, PathResult, Proto, ReachMatrix, ReachRequest};
use serde::{Deserialize, Serialize};
use topo_plan::Plan;

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("unknown node or selector {0:?}")]
    UnknownNode(String),
    #[error("{0}")]
    Invalid(String),
    /// The backend cannot answer this (e.g. convergence time on the model).
    #[error("not applicable on the {backend} backend: {what}")]
    NotApplicable { backend: BackendKind, what: String },
    #[error("{0}")]
    Backend(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Kernel,
    Model,
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackendKind::Kernel => "kernel",
            BackendKind::Model => "model",
        })
    }
}

/// Output of a command run inside a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// A running lab, whichever backend holds it. Scenarios, chaos commands and assertions only
/// talk to this trait.
pub trait Lab {
    fn backend(&self) -> BackendKind;
    fn plan(&self) -> &Plan;
    fn faults(&self) -> &FaultState;
    /// Apply a fault (or its inverse: heal, link up, node start...).
    fn apply(&mut self, fault: &Fault) -> Result<(), LabError>;
    /// Wait until routing has converged (daemons report a stable state) or fail after `timeout`.
    fn wait_converged(&mut self, timeout: Duration) -> Result<(), LabError>;
    fn reach(&mut self, req: &ReachRequest) -> Result<ReachMatrix, LabError>;
    fn path(&mut self, from: &str, to: &str) -> Result<PathResult, LabError>;
    fn nat(&mut self, from: &str, to: &str) -> Result<NatResult, LabError>;
    fn exec(&mut self, node: &str, argv: &[String]) -> Result<ExecOutput, LabError>;
    /// Measure convergence: start the probe streams of `req`, inject `fault` while they run
    /// (and keep it applied), and report per flow the outage and the time to stable.
    /// Backends without a clock (the model) keep this default: not applicable.
    fn converge(&mut self, req: &ConvergeRequest, fault: &Fault) -> Result<ConvergeReport, LabError> {
        let _ = (req, fault);
        Err(LabError::NotApplicable { backend: self.backend(), what: "convergence measurement".to_owned() })
    }
}
