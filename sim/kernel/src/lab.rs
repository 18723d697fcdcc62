//! [`KernelLab`]: a running kernel lab behind the [`topo_lab::Lab`] trait.

use std::process::Command;
use std::time::Duration;

use topo_lab::{
    BackendKind, ConvergeReport, ConvergeRequest, ExecOutput, Fault, FaultState, Lab, LabError, NatResult,
    PathResult, ReachMatrix, ReachRequest,
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
        // `vtysh` inside a router must find that router's own daemons (their sockets live in a
        // per-router directory): topo-daemons adds the right pathspace argument.
        let argv = topo_daemons::exec_argv(&self.plan, node, argv);
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
        // Under the lock, from the journaled state: another topo process may have changed it.
        let _lock = self.state.lock(DEFAULT_LOCK_WAIT, false)?;
        let old = self.state.read_faults()?;
        let mut new = old.clone();
        new.apply(&self.plan, fault)?;
        let res = topo_chaos::apply_fault(&self.plan, &self.state.dir, &old, &new, fault);
        let result = match &res {
            Ok(()) => "ok".to_owned(),
            Err(e) => format!("error: {e}"),
        };
        // The kernel may be half-way after an error; the state we aimed at is the best record.
        self.state.write_faults(&new)?;
        self.faults = new;
        self.state.append_event(&event(fault, &result))?;
        res.map_err(|e| LabError::Backend(e.to_string()))
    }

    fn wait_converged(&mut self, timeout: Duration) -> Result<(), LabError> {
        topo_daemons::wait_converged_with(&self.plan, &self.faults, timeout)
            .map_err(|e| LabError::Backend(e.to_string()))
    }

    fn reach(&mut self, req: &ReachRequest) -> Result<ReachMatrix, LabError> {
        Ok(topo_probe::reach(&self.plan, req, &topo_probe::ProbeOpts::default())?)
    }

    fn path(&mut self, from: &str, to: &str) -> Result<PathResult, LabError> {
        Ok(topo_probe::path(&self.plan, from, to, &topo_probe::ProbeOpts::default())?)
    }

    fn nat(&mut self, from: &str, to: &str) -> Result<NatResult, LabError> {
        Ok(topo_probe::nat(&self.plan, from, to, &topo_probe::ProbeOpts::default())?)
    }

    fn converge(&mut self, req: &ConvergeRequest, fault: &Fault) -> Result<ConvergeReport, LabError> {
        let plan = self.plan.clone();
        let dir = self.state.dir.clone();
        let mut inject = || self.apply(fault).map_err(|e| e.to_string());
        Ok(topo_probe::converge(&plan, &dir, req, &mut inject)?)
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

/// One line of `events.jsonl`: when, which fault, the nodes it names, and how it went.
fn event(fault: &Fault, result: &str) -> serde_json::Value {
    let detail = serde_json::to_value(fault).unwrap_or(serde_json::Value::Null);
    let kind = detail.get("fault").and_then(|v| v.as_str()).unwrap_or("fault").to_owned();
    let mut targets = Vec::new();
    collect_strings(&detail, &mut targets);
    targets.sort();
    targets.dedup();
    serde_json::json!({
        "timestamp": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        "fault": kind,
        "targets": targets.join(","),
        "detail": detail,
        "result": result,
    })
}

fn collect_strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        serde_json::Value::Object(o) => {
            o.iter()
                .filter(|(k, _)| *k != "kind" && *k != "fault")
                .for_each(|(_, x)| collect_strings(x, out));
        }
        _ => {}
    }
}
