//! A loaded scenario: the compiled plan and the steps, with every node selector already
//! resolved against the plan (so a typo is a spanned error before any lab is built).

use std::path::PathBuf;
use std::time::Duration;

use topo_lab::{BackendKind, Fault, Proto};
use topo_plan::Plan;
use topo_spec::Span;

#[derive(Debug, Clone)]
pub struct Scenario {
    /// `name:` of the scenario file (defaults to the file stem).
    pub name: String,
    /// The scenario file as given.
    pub path: PathBuf,
    /// Where the topology came from: a file path, or the scenario file for an inline topology.
    pub topology_path: PathBuf,
    /// Text of the topology as it was parsed (after overrides).
    pub topology_text: String,
    /// The topology's own `name:` before the runner replaced it with a unique lab name.
    pub original_lab: String,
    /// Compiled with the unique lab name (`plan.lab`).
    pub plan: Plan,
    /// Backends this scenario can run on (`requires:`); empty means all.
    pub requires: Vec<BackendKind>,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone)]
pub struct Step {
    /// Where the step is written (for messages).
    pub span: Span,
    /// Short human description, e.g. `partition a,b | c`.
    pub label: String,
    pub kind: StepKind,
}

#[derive(Debug, Clone)]
pub enum StepKind {
    /// Build the lab (implicit at the start when the scenario has no `up` step).
    Up,
    WaitConverged {
        timeout: Duration,
    },
    /// A plain pause; prefer assertions with deadlines.
    Sleep(Duration),
    /// One or more faults applied in order (a selector may name several nodes).
    Fault(Vec<Fault>),
    /// A reproducible random partition of `nodes` into `groups` groups.
    RandomPartition {
        seed: Option<u64>,
        nodes: Vec<String>,
        groups: usize,
    },
    Reach(ReachStep),
    NatFree(NatStep),
    Path(PathStep),
    Converge(ConvergeStep),
    Exec(ExecStep),
    Repeat {
        times: u32,
        steps: Vec<Step>,
    },
    /// Branches that interleave: each lab call is atomic, sleeps overlap.
    Parallel(Vec<Vec<Step>>),
}

impl StepKind {
    /// Assertions are what fail a scenario with "assertion failed" rather than an error.
    pub fn is_assertion(&self) -> bool {
        matches!(
            self,
            StepKind::Reach(_)
                | StepKind::NatFree(_)
                | StepKind::Path(_)
                | StepKind::Converge(_)
                | StepKind::Exec(_)
        )
    }
}

#[derive(Debug, Clone)]
pub struct ReachStep {
    pub from: Vec<String>,
    pub to: Vec<String>,
    pub proto: Proto,
    pub expect: ReachExpect,
    /// Retry until the matrix matches or this passes (routing is eventually consistent).
    pub deadline: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReachExpect {
    /// Derived from the plan and the active faults (the model's prediction).
    Auto,
    All,
    None,
    /// Explicit directed pairs: `(from, to, reached)`; only these are checked.
    Pairs(Vec<(String, String, bool)>),
}

#[derive(Debug, Clone)]
pub struct NatStep {
    pub from: Vec<String>,
    pub to: Vec<String>,
    /// `true`: every pair must be NAT-free; `false`: every pair must be translated.
    pub expect_nat_free: bool,
    pub deadline: Duration,
}

#[derive(Debug, Clone)]
pub struct PathStep {
    pub from: String,
    pub to: String,
    /// Routers expected in order (the destination itself is not listed).
    pub via: Vec<String>,
    pub deadline: Duration,
}

#[derive(Debug, Clone)]
pub struct ConvergeStep {
    pub flows: Vec<(String, String)>,
    pub fault: Fault,
    /// Fail when any flow's outage exceeds this.
    pub max: Option<Duration>,
    pub interval: Duration,
    pub timeout: Duration,
    /// Probe protocol of the streams (ICMP by default).
    pub proto: Proto,
}

#[derive(Debug, Clone)]
pub struct ExecStep {
    pub node: String,
    pub argv: Vec<String>,
    /// `None`: any exit code passes.
    pub expect_code: Option<i32>,
    pub expect_stdout: Option<StdoutExpect>,
    /// Remember stdout under this name (for `expect_stdout: {same_as: NAME}` later).
    pub capture: Option<String>,
}

#[derive(Debug, Clone)]
pub enum StdoutExpect {
    Contains(String),
    Regex(regex::Regex),
    /// Equal to the stdout captured earlier under this name.
    SameAs(String),
}
