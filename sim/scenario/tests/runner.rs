//! Runner behaviour without root: the model backend (real spec → plan → model pipeline) and
//! a test double that pretends to be the kernel (it delegates probes to the model, runs
//! `exec` as an echo, and counts teardowns).

#![allow(clippy::unwrap_used, clippy::many_single_char_names)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use topo_lab::{
    BackendKind, ConvergeReport, ConvergeRequest, ExecOutput, Fault, FaultState, FlowReport, Lab, LabError,
    NatResult, PathResult, ReachMatrix, ReachRequest,
};
use topo_model::ModelLab;
use topo_plan::Plan;
use topo_scenario::report::StepOutcome;
use topo_scenario::{
    junit, load, load_str, run_all, run_scenario, Backend, Event, LabInstance, RunOpts, RunReport, Scenario,
    ScenarioOutcome, ScenarioReport,
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct ModelBackend;

impl Backend for ModelBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Model
    }
    fn up(&self, s: &Scenario) -> Result<LabInstance, String> {
        Ok(LabInstance {
            lab: Box::new(ModelLab::new(s.plan.clone())),
            teardown: Box::new(|| Ok(())),
            enter_hint: String::new(),
        })
    }
}

/// Pretends to be the kernel: probes come from the model, `exec` echoes, teardowns are counted.
#[derive(Default)]
struct FakeKernel {
    ups: AtomicUsize,
    teardowns: Arc<AtomicUsize>,
    /// `exec` in this node panics (a backend bug) — teardown must still happen.
    panic_node: Option<String>,
    /// Every fault applied, in order, across labs.
    applied: Arc<Mutex<Vec<Fault>>>,
    /// Teardown reports an error (e.g. a namespace that would not go away).
    teardown_fails: bool,
}

struct FakeLab {
    inner: ModelLab,
    panic_node: Option<String>,
    applied: Arc<Mutex<Vec<Fault>>>,
    /// What `ip -br addr` prints; changes when the node is started "with new addresses".
    stops: usize,
}

impl Lab for FakeLab {
    fn backend(&self) -> BackendKind {
        BackendKind::Kernel
    }
    fn plan(&self) -> &Plan {
        self.inner.plan()
    }
    fn faults(&self) -> &FaultState {
        self.inner.faults()
    }
    fn apply(&mut self, fault: &Fault) -> Result<(), LabError> {
        self.applied.lock().unwrap().push(fault.clone());
        if matches!(fault, Fault::NodeStop { .. }) {
            self.stops += 1;
        }
        self.inner.apply(fault)
    }
    fn wait_converged(&mut self, _t: Duration) -> Result<(), LabError> {
        Ok(())
    }
    fn reach(&mut self, req: &ReachRequest) -> Result<ReachMatrix, LabError> {
        self.inner.reach(req)
    }
    fn path(&mut self, from: &str, to: &str) -> Result<PathResult, LabError> {
        self.inner.path(from, to)
    }
    fn nat(&mut self, from: &str, to: &str) -> Result<NatResult, LabError> {
        self.inner.nat(from, to)
    }
    fn converge(&mut self, req: &ConvergeRequest, fault: &Fault) -> Result<ConvergeReport, LabError> {
        // A fixed 300 ms outage per flow, so `max:` bounds can be checked on both sides.
        self.apply(fault)?;
        let flows = req
            .flows
            .iter()
            .map(|f| FlowReport {
                from: f.from.clone(),
                to: f.to.clone(),
                sent: 1000,
                lost: 300,
                first_loss_ms: Some(0.5),
                last_loss_ms: Some(299.5),
                outage_ms: Some(300.0),
                recovered_ms: Some(300.5),
                stable_ms: Some(350.0),
                converged: f.to != "observer",
            })
            .collect();
        Ok(ConvergeReport {
            proto: req.proto,
            interval_ms: 1.0,
            stable: req.stable,
            flows,
            timeline: Vec::new(),
            ended_ms: 1000.0,
        })
    }
    fn exec(&mut self, node: &str, argv: &[String]) -> Result<ExecOutput, LabError> {
        assert!(self.panic_node.as_deref() != Some(node), "backend bug in {node}");
        let cmd = argv.join(" ");
        let stdout = if cmd.contains("addr") {
            format!("eth0 UP 10.0.0.{}\n", self.stops)
        } else {
            format!("{cmd}\n")
        };
        Ok(ExecOutput { code: i32::from(cmd.contains("false")), stdout, stderr: String::new() })
    }
}

impl Backend for FakeKernel {
    fn kind(&self) -> BackendKind {
        BackendKind::Kernel
    }
    fn up(&self, s: &Scenario) -> Result<LabInstance, String> {
        self.ups.fetch_add(1, Ordering::SeqCst);
        let t = Arc::clone(&self.teardowns);
        let fails = self.teardown_fails;
        Ok(LabInstance {
            lab: Box::new(FakeLab {
                inner: ModelLab::new(s.plan.clone()),
                panic_node: self.panic_node.clone(),
                applied: Arc::clone(&self.applied),
                stops: 0,
            }),
            teardown: Box::new(move || {
                t.fetch_add(1, Ordering::SeqCst);
                if fails {
                    Err("netns topo-x.client: device or resource busy".to_owned())
                } else {
                    Ok(())
                }
            }),
            enter_hint: format!("topo shell --lab {} NODE", s.plan.lab),
        })
    }
}

fn opts<'a>(cancel: &'a AtomicBool, events: &'a (dyn Fn(&Event<'_>) + Sync), seed: u64) -> RunOpts<'a> {
    RunOpts { seed, keep_on_failure: false, cancel, events, retry_interval: Duration::from_millis(20) }
}

fn quiet(_: &Event<'_>) {}

/// A scenario on the example LAN, written next to the topologies so the relative path works.
fn lan_scenario(steps: &str) -> Scenario {
    let text = format!("name: t\ntopology: lan.yaml\nsteps:\n{steps}");
    load_str(&root().join("topologies/t.yaml"), &text, &topo_scenario::unique_lab_name())
        .unwrap_or_else(|d| panic!("{d}"))
}

fn run(s: &Scenario, b: &dyn Backend) -> ScenarioReport {
    let cancel = AtomicBool::new(false);
    run_scenario(s, b, &opts(&cancel, &quiet, 1))
}

#[test]
fn the_suite_loads_and_passes_on_the_model() {
    // Every scenario of the regression suite parses and resolves; those not limited to the
    // kernel pass on the model, with kernel-only steps reported as n/a.
    let files = topo_scenario::collect_files(&[root().join("scenarios")]).unwrap();
    assert!(files.len() >= 8, "the suite has {} files", files.len());
    let scenarios: Vec<Scenario> = files
        .iter()
        .map(|f| load(f, &topo_scenario::unique_lab_name()).unwrap_or_else(|d| panic!("{d}")))
        .collect();
    let cancel = AtomicBool::new(false);
    let reports = run_all(&scenarios, &ModelBackend, &opts(&cancel, &quiet, 42), 2);
    assert_eq!(reports.len(), scenarios.len());
    for r in &reports {
        assert!(
            matches!(r.outcome, ScenarioOutcome::Passed | ScenarioOutcome::NotApplicable),
            "{} on the model: {:?}\n{}",
            r.name,
            r.outcome,
            r.steps.iter().map(|s| topo_scenario::live_line(&r.name, s)).collect::<Vec<_>>().join("\n")
        );
    }
    // exec and converge have no model answer: n/a, never a pass.
    let nodes = reports.iter().find(|r| r.name == "triangle-nodes").unwrap();
    assert!(nodes
        .steps
        .iter()
        .filter(|s| s.label.starts_with("exec"))
        .all(|s| s.outcome == StepOutcome::NotApplicable));
    let conv = reports.iter().find(|r| r.name == "triangle-ospf-converge").unwrap();
    let c = conv.steps.iter().find(|s| s.label.starts_with("converge")).unwrap();
    assert_eq!(c.outcome, StepOutcome::NotApplicable);
}

#[test]
fn a_failing_assertion_fails_the_scenario_and_names_the_pair() {
    let s = lan_scenario(
        "  - partition: \"client observer,server\"\n  - reach: {expect: [client -> server, server -> observer]}\n  - heal\n",
    );
    let r = run(&s, &ModelBackend);
    assert_eq!(r.outcome, ScenarioOutcome::Failed);
    let failed = r.first_problem().unwrap();
    assert_eq!(failed.outcome, StepOutcome::Fail);
    let msg = failed.message.as_deref().unwrap();
    assert!(msg.contains("client -> server: expected to reach"), "{msg}");
    assert!(!msg.contains("server -> observer"), "a pair that matched is not listed: {msg}");
    assert_eq!(failed.data["mismatches"].as_array().unwrap().len(), 1);
    // Steps after the failure are skipped, not run.
    assert_eq!(r.steps.last().unwrap().outcome, StepOutcome::Skipped);
}

#[test]
fn negative_expectations_fail_when_traffic_flows() {
    let s = lan_scenario("  - reach: {expect: [client -/-> server], deadline: 100ms}\n");
    let b = FakeKernel::default();
    let r = run(&s, &b);
    assert_eq!(r.outcome, ScenarioOutcome::Failed);
    let f = r.first_problem().unwrap();
    assert!(f.message.as_deref().unwrap().contains("client -/-> server: expected no reach"));
    // A kernel-like backend is retried until the deadline (eventual consistency).
    let attempts: u32 = f.figures["attempts"].parse().unwrap();
    assert!(attempts >= 2, "retried {attempts} times");
}

#[test]
fn teardown_happens_after_failure_and_panic_but_not_with_keep_on_failure() {
    let s = lan_scenario("  - reach: {expect: none, deadline: 50ms}\n  - heal\n");
    let b = FakeKernel::default();
    let r = run(&s, &b);
    assert_eq!(r.outcome, ScenarioOutcome::Failed);
    assert_eq!((b.ups.load(Ordering::SeqCst), b.teardowns.load(Ordering::SeqCst)), (1, 1));
    assert!(r.kept.is_none());

    // A backend that panics mid-step: reported as an error, lab still torn down.
    let s2 = lan_scenario("  - exec: {node: client, cmd: hostname}\n");
    let b2 = FakeKernel { panic_node: Some("client".into()), ..FakeKernel::default() };
    let r2 = run(&s2, &b2);
    assert_eq!(r2.outcome, ScenarioOutcome::Error);
    assert!(r2.first_problem().unwrap().message.as_deref().unwrap().contains("panicked"));
    assert_eq!(b2.teardowns.load(Ordering::SeqCst), 1);

    // --keep-on-failure: no teardown, and the report says how to enter the lab.
    let b3 = FakeKernel::default();
    let cancel = AtomicBool::new(false);
    let o = RunOpts { keep_on_failure: true, ..opts(&cancel, &quiet, 1) };
    let r3 = run_scenario(&s, &b3, &o);
    assert_eq!(b3.teardowns.load(Ordering::SeqCst), 0);
    assert_eq!(r3.kept.as_deref(), Some(format!("topo shell --lab {} NODE", s.plan.lab).as_str()));
}

#[test]
fn interruption_stops_before_the_next_step_and_tears_down() {
    let s = lan_scenario("  - heal\n  - reach: {expect: all}\n  - heal\n");
    let b = FakeKernel::default();
    let cancel = AtomicBool::new(false);
    // The "Ctrl-C" arrives while step 2 runs.
    let events = |e: &Event<'_>| {
        if let Event::StepFinished { step, .. } = e {
            if step.id == "2" {
                cancel.store(true, Ordering::SeqCst);
            }
        }
    };
    let r = run_scenario(&s, &b, &opts(&cancel, &events, 1));
    assert_eq!(r.outcome, ScenarioOutcome::Interrupted);
    assert_eq!(
        r.steps.iter().map(|s| s.outcome).collect::<Vec<_>>()[2..],
        [StepOutcome::Skipped, StepOutcome::Skipped]
    );
    assert_eq!(b.teardowns.load(Ordering::SeqCst), 1);
}

fn random_groups_of(r: &ScenarioReport) -> Vec<serde_json::Value> {
    r.steps
        .iter()
        .filter(|s| s.label.starts_with("random_partition"))
        .map(|s| s.data["groups"].clone())
        .collect()
}

#[test]
fn seeded_replay_gives_identical_fault_choices() {
    let steps = "  - random_partition: {groups: 2}\n  - heal\n  - random_partition: {groups: 2}\n  - reach: {expect: auto}\n";
    let s = lan_scenario(steps);
    let run_seed = |seed: u64| {
        let b = FakeKernel::default();
        let cancel = AtomicBool::new(false);
        let r = run_scenario(&s, &b, &opts(&cancel, &quiet, seed));
        assert_eq!(r.seed, seed);
        let applied = b.applied.lock().unwrap().clone();
        (random_groups_of(&r), applied)
    };
    let (g1, a1) = run_seed(12345);
    let (g2, a2) = run_seed(12345);
    assert_eq!(g1, g2, "same seed, same groups");
    assert_eq!(a1, a2, "same seed, same faults applied");
    assert_eq!(g1.len(), 2);
    // Over many seeds the choice really depends on the seed (not a constant).
    let distinct: std::collections::BTreeSet<String> =
        (0..20u64).map(|seed| format!("{:?}", run_seed(seed).0)).collect();
    assert!(distinct.len() > 1, "the seed changes the choice");
    // Every node is in exactly one group and no group is empty.
    for seed in 0..50u64 {
        let nodes: Vec<String> = ["a", "b", "c", "d", "e"].iter().map(|s| (*s).to_owned()).collect();
        let g = topo_scenario::run::random_groups(&nodes, 3, seed);
        assert_eq!(g.len(), 3);
        assert!(g.iter().all(|x| !x.is_empty()));
        let mut all: Vec<String> = g.concat();
        all.sort();
        assert_eq!(all, nodes);
        assert_eq!(g, topo_scenario::run::random_groups(&nodes, 3, seed));
    }
}

#[test]
fn an_explicit_seed_overrides_the_run_seed() {
    let s = lan_scenario("  - random_partition: {seed: 9, groups: 2}\n");
    let b = ModelBackend;
    let cancel = AtomicBool::new(false);
    let a = run_scenario(&s, &b, &opts(&cancel, &quiet, 1));
    let c = run_scenario(&s, &b, &opts(&cancel, &quiet, 2));
    assert_eq!(random_groups_of(&a), random_groups_of(&c));
    assert_eq!(a.steps[1].figures["seed"], "9");
}

#[test]
fn junit_output_is_valid_xml_with_one_testcase_per_step() {
    let s = lan_scenario(
        "  - partition: \"client observer,server\"\n  - reach: {expect: [client -> server]}\n  - exec: {node: client, cmd: \"echo '<&>\"}\n",
    );
    let b = ModelBackend;
    let ok = lan_scenario("  - reach: {expect: all}\n  - exec: {node: client, cmd: true}\n");
    let reports = vec![run(&s, &b), run(&ok, &b)];
    let run = RunReport { seed: 7, backend: BackendKind::Model, scenarios: reports };
    let xml = junit(&run);

    let mut reader = quick_xml::Reader::from_str(&xml);
    let mut testcases = 0;
    let mut failures = Vec::new();
    let mut skipped = 0;
    let mut suites = 0;
    let mut in_failure = false;
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e)) => {
                match e.name().as_ref() {
                    b"testcase" => testcases += 1,
                    b"testsuite" => suites += 1,
                    b"skipped" => skipped += 1,
                    b"failure" => in_failure = true,
                    _ => {}
                }
            }
            Ok(quick_xml::events::Event::Text(t)) if in_failure => {
                failures.push(t.unescape().unwrap().into_owned());
                in_failure = false;
            }
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("invalid XML at {}: {e}\n{xml}", reader.buffer_position()),
        }
    }
    let steps: usize = run.scenarios.iter().map(|s| s.steps.len()).sum();
    assert_eq!(suites, 2);
    assert_eq!(testcases, steps);
    assert_eq!(failures.len(), 1);
    assert!(failures[0].contains("client -> server"), "{}", failures[0]);
    // The skipped exec after the failure plus the n/a exec of the passing scenario.
    assert_eq!(skipped, 2);
    // JSON round-trips with every measurement.
    let json = serde_json::to_string(&run).unwrap();
    let back: RunReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, run);
}

#[test]
fn malformed_scenarios_are_spanned_errors_and_build_no_lab() {
    let path = root().join("fixtures/scenario/malformed.yaml");
    let err = load(&path, "x").unwrap_err();
    let text = err.to_string();
    // Unknown top-level key, unknown step, an unknown node and a bad duration — all at once.
    assert!(text.contains(":4:1: unknown key `stpes`") || text.contains("stpes"), "{text}");
    let lines: Vec<(u32, u32)> = err.items.iter().filter_map(|d| d.span.map(|s| (s.line, s.col))).collect();
    assert!(!err.items.is_empty() && lines.iter().all(|(l, c)| *l >= 1 && *c >= 1), "{text}");

    let bad_steps = root().join("fixtures/scenario/bad-steps.yaml");
    let err = load(&bad_steps, "x").unwrap_err();
    let msgs: Vec<String> = err.items.iter().map(ToString::to_string).collect();
    let joined = msgs.join("\n");
    assert!(joined.contains("unknown step `partitoin`"), "{joined}");
    assert!(joined.contains("clinet"), "{joined}");
    // The span points at the one bad selector inside the quoted group string.
    let typo = err.items.iter().find(|d| d.message.contains("clinet")).unwrap();
    assert_eq!(typo.span.map(|s| (s.line, s.col, s.len)), Some((7, 17, 6)));
    assert!(typo.help.as_deref().unwrap().contains("client"));
    assert!(joined.contains("expected a duration"), "{joined}");
    assert!(joined.contains("unknown key `expct`"), "{joined}");
    assert!(err.items.iter().all(|d| d.span.is_some()), "{joined}");
    let rendered = topo_spec::render(&err, false);
    assert!(rendered.contains("bad-steps.yaml"), "{rendered}");

    // Loading is all-or-nothing and happens before any lab: the backend is never asked.
    let b = FakeKernel::default();
    let loaded: Result<Vec<Scenario>, _> =
        [&bad_steps].iter().map(|p| load(p, &topo_scenario::unique_lab_name())).collect();
    assert!(loaded.is_err());
    assert_eq!(b.ups.load(Ordering::SeqCst), 0);
}

#[test]
fn inline_topologies_and_counter_overrides() {
    let path = root().join("fixtures/scenario/inline.yaml");
    let s = load(&path, "inl").unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(s.original_lab, "inline-demo");
    assert_eq!(s.plan.lab, "inl");
    // `web-{1..4}` overridden to 2.
    let names: Vec<&str> = s.plan.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["web-1", "web-2", "db"]);
    let r = run(&s, &ModelBackend);
    assert_eq!(r.outcome, ScenarioOutcome::Passed, "{:?}", r.first_problem());

    // A topology error inside an inline topology points into the scenario file.
    let bad = "name: x\ntopology:\n  name: bad\n  nodes:\n    a: {interfaces: [nosuchnet]}\nsteps: [up]\n";
    let err = load_str(&root().join("fixtures/scenario/x.yaml"), bad, "x").unwrap_err();
    let d = &err.items[0];
    assert_eq!(d.span.map(|s| s.line), Some(5), "{err}");
    assert_eq!(&*err.source.text, bad);

    // An override naming no counter is an error at the override.
    let bad = "topology: ../../topologies/lan.yaml\noverrides: {counters: {web-: 2}}\nsteps: [up]\n";
    let err = load_str(&root().join("fixtures/scenario/x.yaml"), bad, "x").unwrap_err();
    assert!(err.to_string().contains("no counter range named `web-{a..b}`"), "{err}");
    assert_eq!(err.items[0].span.map(|s| (s.line, s.col)), Some((2, 24)));
}

#[test]
fn exec_captures_compare_output_across_steps() {
    let s = lan_scenario(
        "  - exec: {node: server, cmd: ip -br addr, capture: before}\n  - node: {stop: server}\n  - node: {start: server}\n  - exec: {node: server, cmd: ip -br addr, expect_stdout: {same_as: before}}\n",
    );
    let r = run(&s, &FakeKernel::default());
    // The double changes its "addresses" on every stop: the comparison must catch it.
    assert_eq!(r.outcome, ScenarioOutcome::Failed);
    let m = r.first_problem().unwrap().message.clone().unwrap();
    assert!(m.contains("differs from capture `before`"), "{m}");

    let s = lan_scenario(
        "  - exec: {node: client, cmd: false, expect_code: 1}\n  - exec: {node: client, cmd: [echo, hello], expect_stdout: \"/^ec.o h/\"}\n  - exec: {node: client, cmd: [echo, hi], expect_stdout: nope}\n",
    );
    let r = run(&s, &FakeKernel::default());
    assert_eq!(
        r.steps.iter().map(|s| s.outcome).collect::<Vec<_>>(),
        [StepOutcome::Pass, StepOutcome::Pass, StepOutcome::Pass, StepOutcome::Fail]
    );
}

#[test]
fn requires_and_not_applicable_steps() {
    let text = "topology: lan.yaml\nrequires: kernel\nsteps: [up, heal]\n";
    let s = load_str(&root().join("topologies/t.yaml"), text, "x").unwrap();
    let r = run(&s, &ModelBackend);
    assert_eq!(r.outcome, ScenarioOutcome::NotApplicable);
    let s = lan_scenario(
        "  - wait: converged\n  - exec: {node: client, cmd: hostname}\n  - reach: {expect: all}\n",
    );
    let r = run(&s, &ModelBackend);
    assert_eq!(r.outcome, ScenarioOutcome::Passed);
    assert_eq!(r.count(StepOutcome::NotApplicable), 1);
    assert!(r.steps[2].message.as_deref().unwrap().contains("not applicable on the model"));
}

#[test]
fn parallel_branches_interleave_and_repeat_runs_each_iteration() {
    let s = lan_scenario(
        "  - parallel:\n      - - wait: 200ms\n        - oneway: client->server\n      - - partition: \"client server\"\n        - heal\n  - repeat:\n      times: 2\n      steps: [heal, {reach: {expect: all}}]\n",
    );
    let b = FakeKernel::default();
    let r = run(&s, &b);
    assert_eq!(r.outcome, ScenarioOutcome::Passed, "{:?}", r.first_problem());
    let ids: Vec<&str> = r.steps.iter().map(|s| s.id.as_str()).collect();
    // Branch b runs while branch a sleeps; a's fault comes last.
    assert_eq!(ids, ["1", "2b.1", "2b.2", "2a.1", "2a.2", "3#1.1", "3#1.2", "3#2.1", "3#2.2"]);
    let applied = b.applied.lock().unwrap().clone();
    assert!(matches!(applied[0], Fault::Partition { .. }));
    assert!(matches!(applied[2], Fault::Drop { .. }));
}

#[test]
fn converge_checks_every_flow_against_max_and_applies_the_fault() {
    let s = lan_scenario(
        "  - converge: {flows: [client->server], fault: node stop observer, max: 500ms, proto: udp}\n  - converge: {flows: [client->server, server->client], fault: {node: {start: observer}}, max: 200ms}\n",
    );
    let b = FakeKernel::default();
    let r = run(&s, &b);
    assert_eq!(r.steps[1].outcome, StepOutcome::Pass);
    assert_eq!(r.steps[1].figures["outage"], "300.0ms");
    assert_eq!(r.steps[1].data["request"]["proto"]["proto"], "udp");
    assert_eq!(r.steps[2].data["request"]["proto"]["proto"], "icmp");
    assert_eq!(r.steps[2].outcome, StepOutcome::Fail);
    let m = r.steps[2].message.clone().unwrap();
    assert!(m.contains("client->server: outage 300.0ms exceeds max 200ms"), "{m}");
    assert!(m.contains("server->client"), "{m}");
    assert_eq!(
        *b.applied.lock().unwrap(),
        [Fault::NodeStop { node: "observer".into() }, Fault::NodeStart { node: "observer".into() }]
    );
    // A flow that never stabilises fails even without a bound.
    let s = lan_scenario("  - converge: {flows: [client->observer], fault: heal}\n");
    let r = run(&s, &FakeKernel::default());
    assert!(r.steps[1].message.as_deref().unwrap().contains("not stable"), "{:?}", r.steps[1]);

    // On the model the measurement is n/a, but the fault still happens.
    let s = lan_scenario("  - converge: {flows: [client->server], fault: node stop server, max: 1s}\n  - reach: {expect: [client -/-> server]}\n");
    let r = run(&s, &ModelBackend);
    assert_eq!(r.steps[1].outcome, StepOutcome::NotApplicable);
    assert_eq!(r.outcome, ScenarioOutcome::Passed, "{:?}", r.first_problem());
}

#[test]
fn fault_states_with_impairments_round_trip_through_json() {
    // The kernel journals FaultState as JSON (faults.json); impairments are keyed by a pair.
    let mut st = FaultState::default();
    st.impairments.insert(
        ("r1".into(), "r2".into()),
        topo_spec::Impairment { delay: Some(Duration::from_millis(50)), ..Default::default() },
    );
    let json = serde_json::to_string(&st).unwrap();
    let back: FaultState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, st);
    // State files written before impairments existed have an empty map.
    let old = r#"{"partition":null,"drops":[],"links_down":[],"links_cut":[],"nodes_stopped":[],"nodes_paused":[],"impairments":{}}"#;
    let back: FaultState = serde_json::from_str(old).unwrap();
    assert!(back.impairments.is_empty(), "{old}");
}

#[test]
fn a_failed_teardown_is_an_error_in_the_report_and_in_junit() {
    let s = lan_scenario("  - reach: {expect: all}\n");
    let b = FakeKernel { teardown_fails: true, ..FakeKernel::default() };
    let r = run(&s, &b);
    assert_eq!(r.outcome, ScenarioOutcome::Error);
    assert_eq!(r.teardown_errors, ["netns topo-x.client: device or resource busy"]);
    let run = RunReport { seed: 1, backend: BackendKind::Kernel, scenarios: vec![r] };
    assert!(!run.passed());
    let xml = junit(&run);
    // Every suite's `tests` attribute matches its testcases; the teardown is one of them.
    let mut reader = quick_xml::Reader::from_str(&xml);
    let (mut declared, mut cases, mut errors) = (0usize, 0usize, 0usize);
    loop {
        match reader.read_event().unwrap() {
            quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e) => {
                match e.name().as_ref() {
                    b"testsuite" => {
                        let t = e.try_get_attribute("tests").unwrap().unwrap();
                        declared = std::str::from_utf8(&t.value).unwrap().parse().unwrap();
                    }
                    b"testcase" => cases += 1,
                    b"error" => errors += 1,
                    _ => {}
                }
            }
            quick_xml::events::Event::Eof => break,
            _ => {}
        }
    }
    assert_eq!((declared, cases, errors), (3, 3, 1), "{xml}");
    assert!(xml.contains("device or resource busy"));
}

#[test]
fn nat_is_detected_behind_a_masquerading_router_on_the_model() {
    let s = load(&root().join("scenarios/nat-masquerade.yaml"), "natx").unwrap_or_else(|d| panic!("{d}"));
    let r = run(&s, &ModelBackend);
    assert_eq!(r.outcome, ScenarioOutcome::Passed, "{:?}", r.first_problem());
    // Expecting no NAT across the masquerade fails, naming what the receiver saw.
    let text = std::fs::read_to_string(root().join("scenarios/nat-masquerade.yaml")).unwrap().replace(
        "nat_free: {from: client, to: server, expect: false}",
        "nat_free: {from: client, to: server}",
    );
    let s = load_str(&root().join("fixtures/scenario/nat2.yaml"), &text, "natx").unwrap();
    let r = run(&s, &ModelBackend);
    let f = r.first_problem().unwrap();
    assert_eq!(f.outcome, StepOutcome::Fail);
    let m = f.message.as_deref().unwrap();
    assert!(m.contains("client -> server: sent from 10.20.0.2, server saw 192.168.50.1"), "{m}");
}
