//! [`ModelLab`]: the model behind the [`topo_lab::Lab`] trait.

use std::collections::BTreeSet;
use std::time::Duration;

use topo_lab::{
    BackendKind, ExecOutput, Fault, FaultState, Lab, LabError, NatResult, PathResult, ReachMatrix,
    ReachRequest,
};
use topo_plan::Plan;

use crate::model::Model;

/// A "lab" that exists only as a computation: faults update the state and the forwarding
/// tables are recomputed; probes walk packets through them.
#[derive(Debug, Clone)]
pub struct ModelLab {
    plan: Plan,
    faults: FaultState,
    /// Nodes whose processes were killed (`NodeKill`), until `NodeStart` restarts them.
    killed: BTreeSet<String>,
    model: Model,
}

impl ModelLab {
    pub fn new(plan: Plan) -> Self {
        Self::with_faults(plan, FaultState::default())
    }

    /// Start from an existing fault state (e.g. the one a kernel lab recorded).
    pub fn with_faults(plan: Plan, faults: FaultState) -> Self {
        let killed = BTreeSet::new();
        let model = Model::with_killed(&plan, &faults, &killed);
        ModelLab { plan, faults, killed, model }
    }

    /// The current evaluated model (forwarding tables, walks).
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Nodes killed and not restarted since.
    pub fn killed(&self) -> &BTreeSet<String> {
        &self.killed
    }
}

impl Lab for ModelLab {
    fn backend(&self) -> BackendKind {
        BackendKind::Model
    }

    fn plan(&self) -> &Plan {
        &self.plan
    }

    fn faults(&self) -> &FaultState {
        &self.faults
    }

    fn apply(&mut self, fault: &Fault) -> Result<(), LabError> {
        self.faults.apply(&self.plan, fault)?;
        match fault {
            Fault::NodeKill { node } => {
                self.killed.insert(node.clone());
            }
            // A started node comes back with its daemons (the kernel backend restarts them).
            Fault::NodeStart { node } => {
                self.killed.remove(node);
            }
            _ => {}
        }
        self.model = Model::with_killed(&self.plan, &self.faults, &self.killed);
        Ok(())
    }

    /// The model is always converged.
    fn wait_converged(&mut self, _timeout: Duration) -> Result<(), LabError> {
        Ok(())
    }

    fn reach(&mut self, req: &ReachRequest) -> Result<ReachMatrix, LabError> {
        self.model.reach(req)
    }

    fn path(&mut self, from: &str, to: &str) -> Result<PathResult, LabError> {
        self.model.path(from, to)
    }

    fn nat(&mut self, from: &str, to: &str) -> Result<NatResult, LabError> {
        self.model.nat(from, to)
    }

    fn exec(&mut self, node: &str, argv: &[String]) -> Result<ExecOutput, LabError> {
        let _ = node;
        Err(LabError::NotApplicable { backend: BackendKind::Model, what: format!("exec {}", argv.join(" ")) })
    }
}
