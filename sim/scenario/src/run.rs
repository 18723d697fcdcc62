//! The runner: brings a lab up through a [`Backend`], runs the steps through the
//! [`topo_lab::Lab`] trait only, and always tears down (also on failure, panic and Ctrl-C).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use topo_lab::{BackendKind, ConvergeRequest, Fault, Flow, Lab, LabError, ReachMatrix, ReachRequest};

use crate::ast::{
    ConvergeStep, ExecStep, NatStep, PathStep, ReachExpect, ReachStep, Scenario, StdoutExpect, Step, StepKind,
};
use crate::report::{ScenarioOutcome, ScenarioReport, StepOutcome, StepReport};

/// A lab brought up for one scenario, and how to take it down again.
pub struct LabInstance {
    pub lab: Box<dyn Lab>,
    /// Called after `lab` is dropped (so a backend may hold the lab's lock in its handle).
    pub teardown: Box<dyn FnOnce() -> Result<(), String>>,
    /// How a user enters the lab when it is kept (`topo shell --lab L NODE`).
    pub enter_hint: String,
}

/// Builds labs for scenarios: the kernel (`topo_kernel::up`/`down`) or the model.
pub trait Backend: Sync {
    fn kind(&self) -> BackendKind;
    /// Bring up `scenario.plan` (already compiled under a unique lab name).
    fn up(&self, scenario: &Scenario) -> Result<LabInstance, String>;
}

/// What the runner reports while it goes.
#[derive(Debug)]
pub enum Event<'e> {
    ScenarioStarted { scenario: &'e Scenario, backend: BackendKind, seed: u64 },
    StepFinished { scenario: &'e Scenario, step: &'e StepReport },
    ScenarioFinished { report: &'e ScenarioReport },
}

pub struct RunOpts<'a> {
    /// Seed for random steps without their own `seed:`.
    pub seed: u64,
    /// Leave a failed scenario's lab up (its report says how to enter it).
    pub keep_on_failure: bool,
    /// Set by the Ctrl-C handler: stop before the next step, then tear down.
    pub cancel: &'a AtomicBool,
    pub events: &'a (dyn Fn(&Event<'_>) + Sync),
    /// Poll interval of assertions that retry until their deadline.
    pub retry_interval: Duration,
}

impl std::fmt::Debug for RunOpts<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOpts")
            .field("seed", &self.seed)
            .field("keep_on_failure", &self.keep_on_failure)
            .finish()
    }
}

/// Run several scenarios, `jobs` at a time (each in its own lab, on its own thread).
/// Reports come back in the order of `scenarios`.
pub fn run_all(
    scenarios: &[Scenario],
    backend: &dyn Backend,
    opts: &RunOpts<'_>,
    jobs: usize,
) -> Vec<ScenarioReport> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<ScenarioReport>>> = Mutex::new(vec![None; scenarios.len()]);
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, scenarios.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(sc) = scenarios.get(i) else { break };
                let r = run_scenario(sc, backend, opts);
                if let Ok(mut v) = results.lock() {
                    v[i] = Some(r);
                }
            });
        }
    });
    results.into_inner().unwrap_or_default().into_iter().flatten().collect()
}

/// Run one scenario. Never panics because of a step; always tears the lab down unless
/// `keep_on_failure` applies.
pub fn run_scenario(scenario: &Scenario, backend: &dyn Backend, opts: &RunOpts<'_>) -> ScenarioReport {
    let kind = backend.kind();
    (opts.events)(&Event::ScenarioStarted { scenario, backend: kind, seed: opts.seed });
    let start = Instant::now();
    let mut report = ScenarioReport {
        name: scenario.name.clone(),
        file: scenario.path.display().to_string(),
        backend: kind,
        lab: scenario.plan.lab.clone(),
        seed: opts.seed,
        outcome: ScenarioOutcome::Passed,
        duration_ms: 0.0,
        steps: Vec::new(),
        teardown_errors: Vec::new(),
        kept: None,
    };
    if !scenario.requires.is_empty() && !scenario.requires.contains(&kind) {
        let need: Vec<String> = scenario.requires.iter().map(ToString::to_string).collect();
        report.outcome = ScenarioOutcome::NotApplicable;
        report.steps.push(StepReport {
            id: "0".into(),
            label: format!("requires {}", need.join(" or ")),
            kind: "setup".into(),
            outcome: StepOutcome::NotApplicable,
            start_ms: 0.0,
            duration_ms: 0.0,
            message: Some(format!(
                "the scenario requires the {} backend; this run uses {kind}",
                need.join(" or ")
            )),
            figures: BTreeMap::new(),
            data: serde_json::Value::Null,
        });
        (opts.events)(&Event::ScenarioFinished { report: &report });
        return report;
    }
    let mut r = Runner {
        scenario,
        backend,
        opts,
        start,
        lab: None,
        teardown: None,
        enter_hint: String::new(),
        killed: BTreeSet::new(),
        captures: BTreeMap::new(),
        reports: Vec::new(),
        stop: None,
    };
    for (i, step) in scenario.steps.iter().enumerate() {
        let id = (i + 1).to_string();
        if r.stop.is_some() || r.cancelled() {
            r.skip(&id, step);
        } else {
            r.run_step(&id, step);
        }
    }
    let interrupted = r.cancelled();
    let failed = r.stop.is_some();
    let keep = failed && opts.keep_on_failure && r.lab.is_some() && !interrupted;
    if keep {
        report.kept = Some(r.enter_hint.clone());
        // Forget the teardown on purpose: the user asked for the lab to stay.
        r.teardown = None;
        r.lab = None;
    } else {
        report.teardown_errors = r.teardown_now();
    }
    report.steps = std::mem::take(&mut r.reports);
    report.outcome = if interrupted {
        ScenarioOutcome::Interrupted
    } else if report.steps.iter().any(|s| s.outcome == StepOutcome::Fail) {
        ScenarioOutcome::Failed
    } else if report.steps.iter().any(|s| s.outcome == StepOutcome::Error)
        || !report.teardown_errors.is_empty()
    {
        ScenarioOutcome::Error
    } else {
        ScenarioOutcome::Passed
    };
    report.duration_ms = ms(start.elapsed());
    (opts.events)(&Event::ScenarioFinished { report: &report });
    report
}

/// Milliseconds, rounded to the microsecond (short, stable JSON).
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1000.0
}

/// The seed a random step uses: its own, or one derived from the run seed and its position,
/// so `--seed N` replays every random choice of every scenario.
pub fn step_seed(run_seed: u64, step_id: &str) -> u64 {
    // FNV-1a over the id, mixed with the run seed through splitmix64.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in step_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut z = run_seed ^ h;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Split `nodes` into `groups` non-empty groups, reproducibly from `seed`.
pub fn random_groups(nodes: &[String], groups: usize, seed: u64) -> Vec<Vec<String>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut shuffled = nodes.to_vec();
    shuffled.shuffle(&mut rng);
    let groups = groups.clamp(1, shuffled.len().max(1));
    let mut out: Vec<Vec<String>> = vec![Vec::new(); groups];
    for (i, n) in shuffled.into_iter().enumerate() {
        let g = if i < groups { i } else { rng.gen_range(0..groups) };
        out[g].push(n);
    }
    for g in &mut out {
        g.sort();
    }
    out.sort();
    out
}

struct Runner<'r> {
    scenario: &'r Scenario,
    backend: &'r dyn Backend,
    opts: &'r RunOpts<'r>,
    start: Instant,
    lab: Option<Box<dyn Lab>>,
    teardown: Option<Box<dyn FnOnce() -> Result<(), String>>>,
    enter_hint: String,
    /// Nodes killed and not started since (the model needs them for `expect: auto`).
    killed: BTreeSet<String>,
    captures: BTreeMap<String, Option<String>>,
    reports: Vec<StepReport>,
    /// Id of the step that failed; later steps are skipped.
    stop: Option<String>,
}

impl Drop for Runner<'_> {
    fn drop(&mut self) {
        // Reached with a teardown pending only when unwinding: still take the lab down.
        let _ = self.teardown_now();
    }
}

/// Result of one leaf step before timing is added.
struct Done {
    outcome: StepOutcome,
    message: Option<String>,
    figures: BTreeMap<String, String>,
    data: serde_json::Value,
}

impl Done {
    fn pass() -> Self {
        Done {
            outcome: StepOutcome::Pass,
            message: None,
            figures: BTreeMap::new(),
            data: serde_json::Value::Null,
        }
    }

    fn with(outcome: StepOutcome, message: impl Into<String>) -> Self {
        Done { message: Some(message.into()), ..Done { outcome, ..Done::pass() } }
    }

    fn lab_error(e: &LabError) -> Self {
        match e {
            LabError::NotApplicable { .. } => Done::with(StepOutcome::NotApplicable, e.to_string()),
            _ => Done::with(StepOutcome::Error, e.to_string()),
        }
    }

    fn fig(mut self, k: &str, v: impl ToString) -> Self {
        self.figures.insert(k.to_owned(), v.to_string());
        self
    }
}

fn kind_word(k: &StepKind) -> &'static str {
    match k {
        StepKind::Up => "setup",
        StepKind::WaitConverged { .. } | StepKind::Sleep(_) => "wait",
        StepKind::Fault(_) | StepKind::RandomPartition { .. } => "fault",
        StepKind::Exec(_) => "exec",
        StepKind::Repeat { .. } | StepKind::Parallel(_) => "block",
        _ => "assert",
    }
}

impl Runner<'_> {
    fn cancelled(&self) -> bool {
        self.opts.cancel.load(Ordering::SeqCst)
    }

    fn teardown_now(&mut self) -> Vec<String> {
        // Drop the handle first: a backend's handle may hold the lab lock that down needs.
        self.lab = None;
        match self.teardown.take() {
            Some(t) => match catch_unwind(AssertUnwindSafe(t)) {
                Ok(Ok(())) => Vec::new(),
                Ok(Err(e)) => vec![e],
                Err(_) => vec!["teardown panicked".to_owned()],
            },
            None => Vec::new(),
        }
    }

    fn push(&mut self, id: &str, step: &Step, started: Instant, done: Done) {
        let r = StepReport {
            id: id.to_owned(),
            label: step.label.clone(),
            kind: kind_word(&step.kind).to_owned(),
            outcome: done.outcome,
            start_ms: ms(started.duration_since(self.start)),
            duration_ms: ms(started.elapsed()),
            message: done.message,
            figures: done.figures,
            data: done.data,
        };
        if matches!(r.outcome, StepOutcome::Fail | StepOutcome::Error) && self.stop.is_none() {
            self.stop = Some(id.to_owned());
        }
        (self.opts.events)(&Event::StepFinished { scenario: self.scenario, step: &r });
        self.reports.push(r);
    }

    fn skip(&mut self, id: &str, step: &Step) {
        let why = if self.cancelled() {
            "interrupted".to_owned()
        } else {
            format!("not run: step {} failed", self.stop.as_deref().unwrap_or("?"))
        };
        let r = StepReport {
            id: id.to_owned(),
            label: step.label.clone(),
            kind: kind_word(&step.kind).to_owned(),
            outcome: StepOutcome::Skipped,
            start_ms: ms(self.start.elapsed()),
            duration_ms: 0.0,
            message: Some(why),
            figures: BTreeMap::new(),
            data: serde_json::Value::Null,
        };
        (self.opts.events)(&Event::StepFinished { scenario: self.scenario, step: &r });
        self.reports.push(r);
    }

    fn run_step(&mut self, id: &str, step: &Step) {
        match &step.kind {
            StepKind::Repeat { times, steps } => {
                for k in 1..=*times {
                    for (j, s) in steps.iter().enumerate() {
                        let sid = format!("{id}#{k}.{}", j + 1);
                        if self.stop.is_some() || self.cancelled() {
                            self.skip(&sid, s);
                        } else {
                            self.run_step(&sid, s);
                        }
                    }
                    if self.stop.is_some() || self.cancelled() {
                        break;
                    }
                }
            }
            StepKind::Parallel(branches) => self.run_parallel(id, branches),
            _ => {
                let started = Instant::now();
                let done = match catch_unwind(AssertUnwindSafe(|| self.leaf(id, step))) {
                    Ok(d) => d,
                    Err(p) => {
                        let msg = p
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                            .unwrap_or_default();
                        Done::with(StepOutcome::Error, format!("panicked: {msg}"))
                    }
                };
                self.push(id, step, started, done);
            }
        }
    }

    /// Branches interleave on this thread: each lab call runs whole, and a branch's `wait`
    /// lets the other branches go on meanwhile. Deterministic: at equal readiness the
    /// lower branch goes first.
    fn run_parallel(&mut self, id: &str, branches: &[Vec<Step>]) {
        let mut queues: Vec<VecDeque<(String, &Step)>> = branches
            .iter()
            .enumerate()
            .map(|(b, steps)| {
                let letter = char::from(b'a' + (b % 26) as u8);
                steps.iter().enumerate().map(|(j, s)| (format!("{id}{letter}.{}", j + 1), s)).collect()
            })
            .collect();
        let now = Instant::now();
        let mut ready: Vec<Instant> = vec![now; queues.len()];
        // A sleeping branch: (id, step, started) reported when its timer fires.
        let mut sleeping: Vec<Option<(String, &Step, Instant)>> = vec![None; queues.len()];
        loop {
            let next = (0..queues.len())
                .filter(|&b| !queues[b].is_empty() || sleeping[b].is_some())
                .min_by_key(|&b| (ready[b], b));
            let Some(b) = next else { break };
            if !self.sleep_until(ready[b]) || self.stop.is_some() {
                break;
            }
            if let Some((sid, s, started)) = sleeping[b].take() {
                self.push(&sid, s, started, Done::pass());
                ready[b] = Instant::now();
                continue;
            }
            let Some((sid, s)) = queues[b].pop_front() else { continue };
            if let StepKind::Sleep(d) = s.kind {
                let started = Instant::now();
                sleeping[b] = Some((sid, s, started));
                ready[b] = started + d;
            } else {
                self.run_step(&sid, s);
                ready[b] = Instant::now();
            }
        }
        for b in 0..queues.len() {
            if let Some((sid, s, _)) = sleeping[b].take() {
                self.skip(&sid, s);
            }
            while let Some((sid, s)) = queues[b].pop_front() {
                self.skip(&sid, s);
            }
        }
    }

    /// Sleep until `t` unless cancelled (returns false then).
    fn sleep_until(&self, t: Instant) -> bool {
        loop {
            if self.cancelled() {
                return false;
            }
            let now = Instant::now();
            if now >= t {
                return true;
            }
            std::thread::sleep((t - now).min(Duration::from_millis(50)));
        }
    }

    fn lab(&mut self) -> Result<&mut Box<dyn Lab>, Done> {
        self.lab
            .as_mut()
            .ok_or_else(|| Done::with(StepOutcome::Error, "the lab is not up (no `up` step ran)"))
    }

    fn leaf(&mut self, id: &str, step: &Step) -> Done {
        let r = match &step.kind {
            StepKind::Up => self.up(),
            StepKind::Sleep(d) => {
                if self.sleep_until(Instant::now() + *d) {
                    Ok(Done::pass())
                } else {
                    Ok(Done::with(StepOutcome::Skipped, "interrupted"))
                }
            }
            StepKind::WaitConverged { timeout } => {
                let t = *timeout;
                self.lab().map(|lab| match lab.wait_converged(t) {
                    Ok(()) => Done::pass(),
                    Err(e) => Done::lab_error(&e),
                })
            }
            StepKind::Fault(faults) => self.faults(faults),
            StepKind::RandomPartition { seed, nodes, groups } => {
                let seed = seed.unwrap_or_else(|| step_seed(self.opts.seed, id));
                let g = random_groups(nodes, *groups, seed);
                let shown: Vec<String> = g.iter().map(|x| x.join(",")).collect();
                let d = self.faults(&[Fault::Partition { groups: g.clone() }]);
                d.map(|d| {
                    let mut d = d.fig("seed", seed).fig("groups", shown.join(" | "));
                    d.data = json!({ "seed": seed, "groups": g });
                    d
                })
            }
            StepKind::Reach(r) => self.reach(r),
            StepKind::NatFree(n) => self.nat(n),
            StepKind::Path(p) => self.path(p),
            StepKind::Converge(c) => self.converge(c),
            StepKind::Exec(e) => self.exec(e),
            StepKind::Repeat { .. } | StepKind::Parallel(_) => {
                Ok(Done::with(StepOutcome::Error, "not a leaf step"))
            }
        };
        r.unwrap_or_else(|d| d)
    }

    fn up(&mut self) -> Result<Done, Done> {
        if self.lab.is_some() {
            return Err(Done::with(StepOutcome::Error, "the lab is already up"));
        }
        match self.backend.up(self.scenario) {
            Ok(inst) => {
                self.lab = Some(inst.lab);
                self.teardown = Some(inst.teardown);
                self.enter_hint = inst.enter_hint;
                Ok(Done::pass()
                    .fig("lab", &self.scenario.plan.lab)
                    .fig("nodes", self.scenario.plan.nodes.len()))
            }
            Err(e) => Err(Done::with(StepOutcome::Error, format!("could not bring the lab up: {e}"))),
        }
    }

    fn faults(&mut self, faults: &[Fault]) -> Result<Done, Done> {
        let lab = self.lab()?;
        for f in faults {
            if let Err(e) = lab.apply(f) {
                return Err(Done::lab_error(&e));
            }
        }
        self.track(faults);
        let mut d = Done::pass();
        d.data = json!({ "faults": faults });
        Ok(d)
    }

    /// Remember what the model needs besides the fault state (killed nodes).
    fn track(&mut self, faults: &[Fault]) {
        for f in faults {
            match f {
                Fault::NodeKill { node } => {
                    self.killed.insert(node.clone());
                }
                Fault::NodeStart { node } => {
                    self.killed.remove(node);
                }
                _ => {}
            }
        }
    }

    /// Expected outcomes of the pairs a reach step checks.
    fn expected(&mut self, r: &ReachStep, req: &ReachRequest) -> Result<Vec<(String, String, bool)>, Done> {
        let pairs = || {
            r.from
                .iter()
                .flat_map(|f| r.to.iter().filter(move |t| *t != f).map(move |t| (f.clone(), t.clone())))
                .collect::<Vec<_>>()
        };
        Ok(match &r.expect {
            ReachExpect::All => pairs().into_iter().map(|(a, b)| (a, b, true)).collect(),
            ReachExpect::None => pairs().into_iter().map(|(a, b)| (a, b, false)).collect(),
            ReachExpect::Pairs(p) => p.clone(),
            ReachExpect::Auto => {
                // The model is the reference for "auto": the plan under the lab's current faults.
                let Some(lab) = self.lab.as_ref() else {
                    return Err(Done::with(StepOutcome::Error, "the lab is not up (no `up` step ran)"));
                };
                let model = topo_model::Model::with_killed(lab.plan(), lab.faults(), &self.killed);
                let m = model.reach(req).map_err(|e| {
                    Done::with(StepOutcome::Error, format!("cannot derive the expected matrix: {e}"))
                })?;
                m.pairs.into_iter().map(|p| (p.from, p.to, p.reached)).collect()
            }
        })
    }

    fn deterministic(&self) -> bool {
        self.lab.as_ref().is_some_and(|l| l.backend() == BackendKind::Model)
    }

    fn reach(&mut self, r: &ReachStep) -> Result<Done, Done> {
        let req = ReachRequest { from: r.from.clone(), to: r.to.clone(), proto: r.proto };
        let expected = self.expected(r, &req)?;
        let deadline = Instant::now() + r.deadline;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let matrix = self.lab()?.reach(&req).map_err(|e| Done::lab_error(&e))?;
            let bad = mismatches(&matrix, &expected);
            let done =
                bad.is_empty() || self.deterministic() || Instant::now() >= deadline || self.cancelled();
            if done {
                let reached = matrix.pairs.iter().filter(|p| p.reached).count();
                let mut d = if bad.is_empty() {
                    Done::pass()
                } else {
                    let mut msg =
                        format!("{} of {} pairs differ from the expectation:", bad.len(), expected.len());
                    for line in &bad {
                        msg.push_str("\n  ");
                        msg.push_str(line);
                    }
                    Done::with(StepOutcome::Fail, msg)
                };
                d = d.fig("pairs", expected.len()).fig("reached", reached).fig("attempts", attempts);
                if !bad.is_empty() {
                    d = d.fig("mismatches", bad.len());
                }
                d.data = json!({
                    "request": req,
                    "expected": expected.iter().map(|(a, b, e)| json!({"from": a, "to": b, "reached": e})).collect::<Vec<_>>(),
                    "matrix": matrix,
                    "mismatches": bad,
                    "attempts": attempts,
                });
                return Ok(d);
            }
            self.sleep_until(Instant::now() + self.opts.retry_interval);
        }
    }

    fn nat(&mut self, n: &NatStep) -> Result<Done, Done> {
        let deadline = Instant::now() + n.deadline;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let mut results = Vec::new();
            let mut bad = Vec::new();
            for f in &n.from {
                for t in n.to.iter().filter(|t| *t != f) {
                    let res = self.lab()?.nat(f, t).map_err(|e| Done::lab_error(&e))?;
                    let free = res.nat_free();
                    if free != n.expect_nat_free {
                        let seen =
                            res.observed_src.map_or_else(|| "nothing arrived".to_owned(), |a| format!("{a}"));
                        bad.push(if n.expect_nat_free {
                            format!("{f} -> {t}: sent from {}, {t} saw {seen}", res.sent_src)
                        } else {
                            format!(
                                "{f} -> {t}: expected translation, but {t} saw the original {}",
                                res.sent_src
                            )
                        });
                    }
                    results.push(res);
                }
            }
            if bad.is_empty() || self.deterministic() || Instant::now() >= deadline || self.cancelled() {
                let mut d = if bad.is_empty() {
                    Done::pass()
                } else {
                    Done::with(StepOutcome::Fail, format!("{} pairs:\n  {}", bad.len(), bad.join("\n  ")))
                };
                d = d.fig("pairs", results.len()).fig("attempts", attempts);
                d.data = json!({ "results": results, "mismatches": bad, "attempts": attempts });
                return Ok(d);
            }
            self.sleep_until(Instant::now() + self.opts.retry_interval);
        }
    }

    fn path(&mut self, p: &PathStep) -> Result<Done, Done> {
        let deadline = Instant::now() + p.deadline;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let res = self.lab()?.path(&p.from, &p.to).map_err(|e| Done::lab_error(&e))?;
            // Hops are the routers, then the destination when delivered.
            let mut names: Vec<String> =
                res.hops.iter().map(|h| h.node.clone().unwrap_or_else(|| h.addr.to_string())).collect();
            if res.delivered && names.last() == Some(&p.to) {
                names.pop();
            }
            let ok = res.delivered && names == p.via;
            if ok || self.deterministic() || Instant::now() >= deadline || self.cancelled() {
                let mut d = if ok {
                    Done::pass()
                } else if res.delivered {
                    Done::with(
                        StepOutcome::Fail,
                        format!(
                            "{} -> {} went via [{}], expected [{}]",
                            p.from,
                            p.to,
                            names.join(", "),
                            p.via.join(", ")
                        ),
                    )
                } else {
                    Done::with(
                        StepOutcome::Fail,
                        format!(
                            "{} -> {} was not delivered ({}) after [{}]",
                            p.from,
                            p.to,
                            res.reason.as_deref().unwrap_or("no reply"),
                            names.join(", ")
                        ),
                    )
                };
                d = d.fig("hops", names.join(">")).fig("attempts", attempts);
                d.data = json!({ "result": res, "via": names, "expected_via": p.via, "attempts": attempts });
                return Ok(d);
            }
            self.sleep_until(Instant::now() + self.opts.retry_interval);
        }
    }

    fn converge(&mut self, c: &ConvergeStep) -> Result<Done, Done> {
        let flows: Vec<Flow> = c.flows.iter().map(|(a, b)| Flow { from: a.clone(), to: b.clone() }).collect();
        let mut req = ConvergeRequest::new(flows);
        req.interval = c.interval;
        req.timeout = c.timeout;
        req.proto = c.proto;
        let result = self.lab()?.converge(&req, &c.fault);
        let report = match result {
            Ok(r) => r,
            // The measurement is n/a (the model has no clock), but the fault is part of the
            // schedule: inject it so later steps see the same network on every backend.
            Err(e @ LabError::NotApplicable { .. }) => return self.not_measured(&c.fault, &e),
            Err(e) => return Err(Done::lab_error(&e)),
        };
        self.track(std::slice::from_ref(&c.fault));
        let mut problems = Vec::new();
        let mut worst: Option<f64> = None;
        for f in &report.flows {
            if let Some(o) = f.outage_ms {
                worst = Some(worst.map_or(o, |w: f64| w.max(o)));
            }
            if !f.converged {
                problems.push(format!(
                    "{}->{}: not stable within {} (lost {} of {})",
                    f.from,
                    f.to,
                    crate::parse::fmt_dur(c.timeout),
                    f.lost,
                    f.sent
                ));
            }
            if let (Some(max), Some(o)) = (c.max, f.outage_ms) {
                if o > max.as_secs_f64() * 1000.0 {
                    problems.push(format!(
                        "{}->{}: outage {o:.1}ms exceeds max {}",
                        f.from,
                        f.to,
                        crate::parse::fmt_dur(max)
                    ));
                }
            }
        }
        let mut d = if problems.is_empty() {
            Done::pass()
        } else {
            Done::with(StepOutcome::Fail, problems.join("\n"))
        };
        d = d.fig("outage", worst.map_or_else(|| "none".to_owned(), |w| format!("{w:.1}ms")));
        for f in &report.flows {
            if let Some(st) = f.stable_ms {
                d = d.fig(&format!("stable {}->{}", f.from, f.to), format!("{st:.1}ms"));
            }
        }
        d.data =
            json!({ "request": req, "report": report, "max_ms": c.max.map(|m| m.as_secs_f64() * 1000.0) });
        Ok(d)
    }

    fn not_measured(&mut self, fault: &Fault, e: &LabError) -> Result<Done, Done> {
        let mut d = self.faults(std::slice::from_ref(fault))?;
        d.outcome = StepOutcome::NotApplicable;
        d.message = Some(format!(
            "{e}; the fault `{}` was applied without measuring",
            crate::fault_text::describe(fault)
        ));
        Ok(d)
    }

    fn exec(&mut self, e: &ExecStep) -> Result<Done, Done> {
        let lab = self.lab()?;
        let out = match lab.exec(&e.node, &e.argv) {
            Ok(o) => o,
            Err(err) => {
                if let Some(c) = &e.capture {
                    self.captures.insert(c.clone(), None);
                }
                return Err(Done::lab_error(&err));
            }
        };
        if let Some(c) = &e.capture {
            self.captures.insert(c.clone(), Some(out.stdout.clone()));
        }
        let mut problems = Vec::new();
        if let Some(code) = e.expect_code {
            if out.code != code {
                problems.push(format!("exit code {} (expected {code})", out.code));
            }
        }
        match &e.expect_stdout {
            Some(StdoutExpect::Contains(s)) if !out.stdout.contains(s.as_str()) => {
                problems.push(format!("stdout does not contain {s:?}"));
            }
            Some(StdoutExpect::Regex(re)) if !re.is_match(&out.stdout) => {
                problems.push(format!("stdout does not match /{re}/"));
            }
            None | Some(StdoutExpect::Contains(_) | StdoutExpect::Regex(_)) => {}
            Some(StdoutExpect::SameAs(name)) => match self.captures.get(name) {
                Some(Some(prev)) if *prev == out.stdout => {}
                Some(Some(prev)) => problems.push(format!(
                    "stdout differs from capture `{name}`:\n--- {name}\n{}\n--- now\n{}",
                    prev.trim_end(),
                    out.stdout.trim_end()
                )),
                _ => {
                    return Err(Done::with(
                        StepOutcome::NotApplicable,
                        format!("capture `{name}` was not taken (its exec step did not run on this backend)"),
                    ))
                }
            },
        }
        let mut d = if problems.is_empty() {
            Done::pass()
        } else {
            let mut msg = format!("{} in {}: {}", e.argv.join(" "), e.node, problems.join("; "));
            if !out.stderr.trim().is_empty() {
                msg.push_str("\nstderr: ");
                msg.push_str(out.stderr.trim_end());
            }
            Done::with(StepOutcome::Fail, msg)
        };
        d = d.fig("code", out.code);
        d.data = json!({ "node": e.node, "argv": e.argv, "output": out });
        Ok(d)
    }
}

/// Human lines for pairs whose outcome differs from the expectation.
fn mismatches(m: &ReachMatrix, expected: &[(String, String, bool)]) -> Vec<String> {
    let mut out = Vec::new();
    for (f, t, e) in expected {
        let got = m.get(f, t);
        let reached = got.is_some_and(|p| p.reached);
        if reached != *e {
            out.push(if *e {
                let why = got.and_then(|p| p.reason.clone()).unwrap_or_else(|| "not probed".into());
                format!("{f} -> {t}: expected to reach, did not ({why})")
            } else {
                format!("{f} -/-> {t}: expected no reach, but it reached")
            });
        }
    }
    out
}
