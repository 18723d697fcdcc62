//! [`KernelLab`]: a running kernel lab behind the [`topo_lab::Lab`] trait.

use std::process::Command;
use std::time::Duration;

use topo_lab::{
    BackendKind, ExecOutput, Fault, FaultState, Lab, LabError, NatResult, PathResult, ReachMatrix,
    ReachRequest,
};
use topo_plan::Plan;

use crate::state::StateDir;
use crate::{resolve_lab, KernelError, DEFAULT_LOCK_WAIT};

/// An open handle on a lab that is up. Cheap: it holds the plan and fault state read from the
/// state directory, not the lock (methods that change the lab take the lock themselves).
#[derive(Debug)]
pub struct KernelLab {
    state: StateDir,
    plan: Plan,
    faults: FaultState,
}

impl KernelLab {
    /// Open a lab by name or topology file (see [`resolve_lab`]). Waits while another topo
    /// process holds the lock (e.g. `up` still building), then reads the plan and faults.
    pub fn open(lab_or_file: &str) -> Result<KernelLab, KernelError> {
        let lab = resolve_lab(Some(lab_or_file))?;
        Self::open_lab(&lab)
    }

    /// Open a lab by its exact name.
    pub fn open_lab(lab: &str) -> Result<KernelLab, KernelError> {
        let state = StateDir::new(lab);
        if !state.exists() {
            return Err(KernelError::NotUp(lab.to_owned()));
        }
        let _lock = state.lock(DEFAULT_LOCK_WAIT, false)?;
        let meta = state.read_meta()?;
        if meta.phase != crate::state::Phase::Up {
            return Err(KernelError::State {
                lab: lab.to_owned(),
                msg: format!("it is not up (phase {:?})", meta.phase),
            });
        }
        let plan = state.read_plan()?;
        let faults = state.read_faults()?;
        Ok(KernelLab { state, plan, faults })
    }

    pub fn name(&self) -> &str {
        &self.state.lab
    }

    /// The lab's state directory (`/run/topo/<lab>`), passed to the chaos/probe/daemon crates.
    pub fn state_dir(&self) -> &std::path::Path {
        &self.state.dir
    }

    pub fn state(&self) -> &StateDir {
        &self.state
    }

    /// Build a `Command` that runs `argv` inside `node` (network + UTS namespace, /etc/netns files).
    pub fn command(&self, node: &str, argv: &[String]) -> Result<Command, KernelError> {
        let n = self
            .plan
            .node(node)
            .ok_or_else(|| KernelError::Invalid(format!("lab {} has no node {node:?}", self.name())))?;
        let (prog, args) =
            argv.split_first().ok_or_else(|| KernelError::Invalid("no command given".into()))?;
        let ns = topo_netns::Netns::open(&n.netns)?;
        let uts = self.state.uts_path(node);
        let mut cmd = Command::new(prog);
        cmd.args(args);
        topo_netns::command_in(&mut cmd, &ns, uts.exists().then_some(uts.as_path()))
            .map_err(|e| KernelError::io(format!("prepare command in {node}"), e))?;
        Ok(cmd)
    }

    fn not_wired(what: &str) -> LabError {
        LabError::Backend(format!("{what}: not wired yet"))
    }
}

impl Lab for KernelLab {
    fn backend(&self) -> BackendKind {
        BackendKind::Kernel
    }

    fn plan(&self) -> &Plan {
        &self.plan
    }

    fn faults(&self) -> &FaultState {
        &self.faults
    }

    fn apply(&mut self, fault: &Fault) -> Result<(), LabError> {
        let _ = fault;
        Err(Self::not_wired("apply (topo-chaos)"))
    }

    fn wait_converged(&mut self, timeout: Duration) -> Result<(), LabError> {
        let _ = timeout;
        Err(Self::not_wired("wait_converged (topo-daemons)"))
    }

    fn reach(&mut self, req: &ReachRequest) -> Result<ReachMatrix, LabError> {
        let _ = req;
        Err(Self::not_wired("reach (topo-probe)"))
    }

    fn path(&mut self, from: &str, to: &str) -> Result<PathResult, LabError> {
        let _ = (from, to);
        Err(Self::not_wired("path (topo-probe)"))
    }

    fn nat(&mut self, from: &str, to: &str) -> Result<NatResult, LabError> {
        let _ = (from, to);
        Err(Self::not_wired("nat (topo-probe)"))
    }

    fn exec(&mut self, node: &str, argv: &[String]) -> Result<ExecOutput, LabError> {
        let mut cmd = self.command(node, argv)?;
        let out = cmd.output().map_err(|e| LabError::Backend(format!("run {:?} in {node}: {e}", argv[0])))?;
        Ok(ExecOutput {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}
