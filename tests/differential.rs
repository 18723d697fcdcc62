//! The differential check (issue 7): the model is only worth what this proves.
//!
//! Small random topologies (2–4 LANs and p2p links, 3–8 nodes, routers with static routes and a
//! minority with OSPF via FRR) are generated as YAML text, brought up on the kernel, and put
//! through a random fault sequence (partitions incl. overlapping ones, one-way drops, heal,
//! link down/up, link cut/restore, node stop/start). After `up` and after every fault the
//! model's all-pairs matrix (ICMP and UDP) must equal the one measured with real packets, pair by
//! pair. A failure prints the topology, the faults and every mismatching pair with both verdicts
//! and the model's reason.
//!
//! - `differential` (proptest): CI-sized, `TOPO_DIFF_CASES` cases (default 14),
//!   `TOPO_DIFF_OSPF_PCT` percent of them with OSPF (default 15).
//! - `differential_survey` (ignored): the long run; it does not stop at the first disagreement
//!   but counts them and prints the agreement rate (`TOPO_DIFF_CASES`, default 1000).
//! - `fixture_*`: the disagreements found so far, kept in fixtures/differential/ and replayed.
//!
//! Root only (skips otherwise; fails under CI=true).

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use topo_kernel::{KernelLab, SourceInfo, UpOpts};
use topo_lab::probe::DEFAULT_PROBE_PORT;
use topo_lab::testkit::{require_root, unique_lab};
use topo_lab::{Lab, Proto, ReachMatrix};
use topo_model::ModelLab;
use topo_plan::Plan;

/// One generated case: topology text (with `name: LAB` as its first line) and faults as text.
#[derive(Debug, Clone)]
struct Case {
    yaml: String,
    faults: Vec<String>,
    ospf: bool,
}

const LAB_PLACEHOLDER: &str = "LAB";

fn env_num(var: &str, default: u32) -> u32 {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Build a random case from a seed. `ospf`: routers run OSPF (most of them; the rest static).
fn generate(seed: u64, ospf: bool) -> Case {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let routers = rng.gen_range(1..=3usize);
    let hosts = rng.gen_range(3usize.saturating_sub(routers).max(1)..=(8 - routers).min(5));
    let router = |i: usize| format!("r{}", i + 1);
    let host = |i: usize| format!("h{}", i + 1);
    let all: Vec<String> = (0..routers).map(router).chain((0..hosts).map(host)).collect();

    // Segments: 2–4 in total, at least one LAN (hosts live on LANs).
    let total = rng.gen_range(2..=4usize);
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    for a in 0..all.len() {
        for b in a + 1..all.len() {
            // Mostly router-router links; a few to hosts.
            if a < routers && b < routers || rng.gen_bool(0.1) {
                pairs.push((a, b));
            }
        }
    }
    pairs.shuffle(&mut rng);
    let max_links = pairs.len().min(total - 1);
    let n_links = if max_links == 0 { 0 } else { rng.gen_range(0..=max_links) };
    let links: Vec<(usize, usize)> = pairs.into_iter().take(n_links).collect();
    let lans = total - n_links;

    // LAN membership: node index -> (lan, explicit address or auto).
    let mut lan_members: Vec<Vec<usize>> = vec![Vec::new(); lans];
    for h in 0..hosts {
        lan_members[rng.gen_range(0..lans)].push(routers + h);
        if rng.gen_bool(0.1) {
            let l = rng.gen_range(0..lans);
            if !lan_members[l].contains(&(routers + h)) {
                lan_members[l].push(routers + h);
            }
        }
    }
    for r in 0..routers {
        for members in &mut lan_members {
            if rng.gen_bool(0.5) {
                members.push(r);
            }
        }
        let on_link = links.iter().any(|&(a, b)| a == r || b == r);
        if !on_link && !lan_members.iter().any(|m| m.contains(&r)) {
            lan_members[rng.gen_range(0..lans)].push(r);
        }
    }
    // Routers first on each LAN, so the first router listed holds the gateway (.1).
    for m in &mut lan_members {
        m.sort_unstable();
    }
    let lan_addr = |lan: usize, members: &[usize], node: usize| -> Option<String> {
        if node >= routers {
            return None;
        }
        let first_router = members.iter().copied().find(|&n| n < routers);
        Some(if first_router == Some(node) {
            format!("10.{}.0.1", lan + 1)
        } else {
            format!("10.{}.0.{}", lan + 1, 10 + node)
        })
    };
    let link_addr = |k: usize, end: usize| format!("10.254.0.{}", k * 4 + 1 + end);

    // Known neighbour addresses per node (for static routes) and subnets.
    let mut subnets: Vec<String> = (0..lans).map(|l| format!("10.{}.0.0/24", l + 1)).collect();
    subnets.extend((0..links.len()).map(|k| format!("10.254.0.{}/30", k * 4)));
    let mut neighbours: Vec<Vec<String>> = vec![Vec::new(); all.len()];
    let mut connected: Vec<Vec<usize>> = vec![Vec::new(); all.len()]; // indices into subnets
    for (l, m) in lan_members.iter().enumerate() {
        for &n in m {
            connected[n].push(l);
            for &o in m {
                if o != n {
                    if let Some(a) = lan_addr(l, m, o) {
                        neighbours[n].push(a);
                    }
                }
            }
        }
    }
    for (k, &(a, b)) in links.iter().enumerate() {
        connected[a].push(lans + k);
        connected[b].push(lans + k);
        neighbours[a].push(link_addr(k, 1));
        neighbours[b].push(link_addr(k, 0));
    }

    let ospf_router: Vec<bool> = (0..routers).map(|_| ospf && rng.gen_bool(0.85)).collect();
    let mut y = String::new();
    let _ = writeln!(y, "name: {LAB_PLACEHOLDER}");
    let _ = writeln!(y, "networks:");
    for l in 0..lans {
        let _ = writeln!(y, "  lan{}: {{subnet: 10.{}.0.0/24}}", l + 1, l + 1);
    }
    let _ = writeln!(y, "nodes:");
    for (n, name) in all.iter().enumerate() {
        let _ = writeln!(y, "  {name}:");
        if n < routers {
            let _ = writeln!(y, "    kind: router");
            if ospf_router[n] {
                let _ =
                    writeln!(y, "    routing: {{ospf: {{fast: true, hello_interval: 1, dead_interval: 3}}}}");
            }
        }
        let ifs: Vec<String> = lan_members
            .iter()
            .enumerate()
            .filter(|(_, m)| m.contains(&n))
            .map(|(l, m)| match lan_addr(l, m, n) {
                Some(a) => format!("{{network: lan{}, address: {a}}}", l + 1),
                None => format!("lan{}", l + 1),
            })
            .collect();
        let _ = writeln!(y, "    interfaces: [{}]", ifs.join(", "));
        // Static routes: routers without OSPF, sometimes wrong or looping on purpose.
        if n < routers && !ospf_router[n] && !neighbours[n].is_empty() {
            let mut routes = Vec::new();
            for (s, prefix) in subnets.iter().enumerate() {
                if !connected[n].contains(&s) && rng.gen_bool(0.6) {
                    let via = neighbours[n].choose(&mut rng).cloned().unwrap_or_default();
                    routes.push(format!("{{to: {prefix}, via: {via}}}"));
                }
            }
            if rng.gen_bool(0.2) {
                let via = neighbours[n].choose(&mut rng).cloned().unwrap_or_default();
                routes.push(format!("{{to: default, via: {via}}}"));
            }
            if !routes.is_empty() {
                let _ = writeln!(y, "    routes:");
                for r in routes {
                    let _ = writeln!(y, "      - {r}");
                }
            }
        }
    }
    if !links.is_empty() {
        let _ = writeln!(y, "links:");
        for (k, &(a, b)) in links.iter().enumerate() {
            let _ = writeln!(y, "  - endpoints:");
            let _ = writeln!(y, "      - {{node: {}, address: {}}}", all[a], link_addr(k, 0));
            let _ = writeln!(y, "      - {{node: {}, address: {}}}", all[b], link_addr(k, 1));
            let _ = writeln!(y, "    subnet: 10.254.0.{}/30", k * 4);
        }
    }

    // Link references as the fault text names them.
    let mut link_refs: Vec<String> = links.iter().map(|&(a, b)| format!("{} {}", all[a], all[b])).collect();
    for (l, m) in lan_members.iter().enumerate() {
        for &n in m {
            link_refs.push(format!("{} lan{}", all[n], l + 1));
        }
    }
    let subset = |rng: &mut ChaCha8Rng| -> Vec<String> {
        let k = rng.gen_range(1..=all.len().div_ceil(2));
        all.choose_multiple(rng, k).cloned().collect()
    };
    let mut faults = Vec::new();
    let (mut down, mut cut, mut stopped): (Vec<String>, Vec<String>, Vec<String>) = Default::default();
    for _ in 0..rng.gen_range(1..=4) {
        let f = match rng.gen_range(0..10) {
            0 | 1 => {
                let groups: Vec<String> =
                    (0..rng.gen_range(1..=3)).map(|_| subset(&mut rng).join(",")).collect();
                format!("partition {}", groups.join(" "))
            }
            2 => format!("oneway {}->{}", subset(&mut rng).join(","), subset(&mut rng).join(",")),
            3 => "heal".to_owned(),
            4 | 5 if !down.is_empty() && rng.gen_bool(0.5) => {
                let l = down.swap_remove(rng.gen_range(0..down.len()));
                format!("link up {l}")
            }
            4 | 5 => {
                let l = link_refs.choose(&mut rng).cloned().unwrap_or_default();
                down.push(l.clone());
                format!("link down {l}")
            }
            6 | 7 if !cut.is_empty() && rng.gen_bool(0.5) => {
                let l = cut.swap_remove(rng.gen_range(0..cut.len()));
                format!("link restore {l}")
            }
            6 | 7 => {
                let l = link_refs.choose(&mut rng).cloned().unwrap_or_default();
                cut.push(l.clone());
                format!("link cut {l}")
            }
            _ if !stopped.is_empty() && rng.gen_bool(0.5) => {
                let n = stopped.swap_remove(rng.gen_range(0..stopped.len()));
                format!("node start {n}")
            }
            _ => {
                let n = all.choose(&mut rng).cloned().unwrap_or_default();
                stopped.push(n.clone());
                format!("node stop {n}")
            }
        };
        faults.push(f);
    }
    Case { yaml: y, faults, ospf: ospf_router.iter().any(|&o| o) }
}

/// Tears the lab down even when the test fails.
struct Down(String);
impl Drop for Down {
    fn drop(&mut self) {
        if let Err(e) = topo_kernel::down(&self.0) {
            eprintln!("down {}: {e}", self.0);
        }
    }
}

fn describe(case: &Case) -> String {
    let mut s = format!("topology:\n{}faults:\n", case.yaml);
    for f in &case.faults {
        let _ = writeln!(s, "  - {f}");
    }
    s
}

fn verdict(m: &ReachMatrix, from: &str, to: &str) -> String {
    match m.get(from, to) {
        Some(p) if p.reached => "reached".to_owned(),
        Some(p) => format!("unreached ({})", p.reason.as_deref().unwrap_or("no reason")),
        None => "missing".to_owned(),
    }
}

/// Compare the model with the kernel for every pair and both protocols; returns mismatch lines.
/// Pairs the model marks ECMP-dependent ([`topo_model::Model::ecmp_dependent`]) accept either
/// kernel outcome; they are printed and counted in `excused` (excused, compared), so the excuse
/// stays visible.
fn compare(
    kernel: &KernelLab,
    model: &mut ModelLab,
    step: &str,
    deadline: Duration,
    excused: &mut (usize, usize),
) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for proto in [Proto::Icmp, Proto::Udp(DEFAULT_PROBE_PORT)] {
        let req = topo_model::all_pairs(kernel.plan(), proto);
        let expected = model.reach(&req).map_err(|e| format!("model reach: {e}"))?;
        let ecmp = model.model().ecmp_dependent(&req).map_err(|e| format!("model ecmp: {e}"))?;
        let opts = topo_probe::ProbeOpts::with_deadline(deadline).expecting(&expected);
        let measured =
            topo_probe::reach(kernel.plan(), &req, &opts).map_err(|e| format!("kernel reach: {e}"))?;
        for (from, to) in &ecmp {
            eprintln!(
                "  [{step}] {proto} {from} -> {to}: ECMP-dependent, either accepted (model {} | kernel {})",
                verdict(&expected, from, to),
                verdict(&measured, from, to)
            );
        }
        excused.0 += ecmp.len();
        excused.1 += expected.pairs.len();
        for (from, to, _, _) in measured.mismatches(&expected) {
            if ecmp.contains(&(from.clone(), to.clone())) {
                continue;
            }
            out.push(format!(
                "  [{step}] {proto} {from} -> {to}: model {} | kernel {}",
                verdict(&expected, &from, &to),
                verdict(&measured, &from, &to)
            ));
        }
    }
    Ok(out)
}

/// Run one case on both backends. `Err` carries the full failure report.
fn run_case(case: &Case) -> Result<(), String> {
    let name = unique_lab("df");
    let text = case.yaml.replacen(&format!("name: {LAB_PLACEHOLDER}"), &format!("name: {name}"), 1);
    let topo = topo_spec::parse_str("differential.yaml", &text)
        .map_err(|d| format!("generated topology does not parse: {d}\n{}", describe(case)))?;
    let plan: Plan = topo_plan::compile(&topo)
        .map_err(|d| format!("generated topology does not plan: {d:?}\n{}", describe(case)))?;
    let guard = Down(name.clone());
    topo_kernel::up(&plan, &SourceInfo { path: None, text }, &UpOpts::default())
        .map_err(|e| format!("up failed: {e}\n{}", describe(case)))?;
    let mut kernel = KernelLab::open_lab(&name).map_err(|e| format!("open: {e}"))?;
    let mut model = ModelLab::new(plan.clone());
    let dynamic = topo_daemons::has_routing(&plan);
    let deadline = if dynamic { Duration::from_secs(8) } else { Duration::from_millis(1500) };
    let mut notes = Vec::new();
    if dynamic {
        if let Err(e) = kernel.wait_converged(topo_daemons::default_converge_timeout(&plan)) {
            notes.push(format!("  (after up: not converged: {e})"));
        }
    }
    let mut excused = (0, 0);
    let mut mismatches = compare(&kernel, &mut model, "up", deadline, &mut excused)?;
    for (i, text) in case.faults.iter().enumerate() {
        let fault =
            topo_lab::fault_text::parse_fault(&plan, text).map_err(|e| format!("fault {text:?}: {e}"))?;
        model.apply(&fault).map_err(|e| format!("model apply {text:?}: {e}"))?;
        kernel.apply(&fault).map_err(|e| format!("kernel apply {text:?}: {e}\n{}", describe(case)))?;
        if dynamic {
            if let Err(e) = kernel.wait_converged(Duration::from_secs(15)) {
                notes.push(format!("  (after fault {}: not converged: {e})", i + 1));
            }
        }
        let step = format!("{} {text}", i + 1);
        mismatches.extend(compare(&kernel, &mut model, &step, deadline, &mut excused)?);
    }
    drop(guard);
    if excused.0 > 0 {
        eprintln!(
            "{} of {} pair verdict(s) excused as ECMP-dependent (all steps, both protocols)",
            excused.0, excused.1
        );
    }
    if mismatches.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "model and kernel disagree on {} pair(s)\n{}mismatches:\n{}\n{}",
            mismatches.len(),
            describe(case),
            mismatches.join("\n"),
            notes.join("\n")
        ))
    }
}

fn case_strategy(ospf_pct: u32) -> impl Strategy<Value = Case> {
    (any::<u64>(), 0..100u32).prop_map(move |(seed, p)| generate(seed, p < ospf_pct))
}

proptest! {
    // Each case is a real lab (~1–3 s static, more with FRR): shrinking would rebuild labs for
    // minutes, and the failure report already lists everything needed to replay the case.
    #![proptest_config(Config {
        cases: env_num("TOPO_DIFF_CASES", 14),
        max_shrink_iters: 0,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..Config::default()
    })]
    #[test]
    fn differential(case in case_strategy(env_num("TOPO_DIFF_OSPF_PCT", 15))) {
        if !require_root("differential") {
            return Ok(());
        }
        if case.ospf && !frr_installed() {
            return Ok(());
        }
        if let Err(report) = run_case(&case) {
            prop_assert!(false, "{}", report);
        }
    }
}

fn frr_installed() -> bool {
    Path::new("/usr/lib/frr/ospfd").exists()
}

/// The long run: counts agreement instead of stopping at the first disagreement.
#[test]
#[ignore = "long run: TOPO_DIFF_CASES=1000 cargo test --test differential -- --ignored"]
fn differential_survey() {
    if !require_root("differential_survey") {
        return;
    }
    let cases = env_num("TOPO_DIFF_CASES", 1000);
    let ospf_pct = env_num("TOPO_DIFF_OSPF_PCT", 10);
    let strategy = case_strategy(ospf_pct);
    let mut seeds = match std::env::var("TOPO_DIFF_SEED").ok().and_then(|s| s.parse().ok()) {
        Some(s) => ChaCha8Rng::seed_from_u64(s),
        None => ChaCha8Rng::from_entropy(),
    };
    let t0 = Instant::now();
    let (mut agreed, mut ospf, mut pairs_failed) = (0u32, 0u32, Vec::new());
    for i in 0..cases {
        let seed: [u8; 32] = seeds.gen();
        let case = seeded_case(&strategy, seed);
        if case.ospf && !frr_installed() {
            continue;
        }
        ospf += u32::from(case.ospf);
        match run_case(&case) {
            Ok(()) => agreed += 1,
            Err(report) => {
                // The seed line replays the case in the proptest (with the same
                // TOPO_DIFF_OSPF_PCT) when added to tests/differential.proptest-regressions.
                eprintln!("=== case {i}: DISAGREEMENT (regression seed: {})\n{report}", seed_line(&seed));
                pairs_failed.push(report);
            }
        }
        if (i + 1) % 25 == 0 {
            eprintln!("survey: {} cases, {agreed} agree, {:?}", i + 1, t0.elapsed());
        }
    }
    eprintln!(
        "survey done: {cases} cases ({ospf} with OSPF), {agreed} agree, {} disagree, {:?}",
        pairs_failed.len(),
        t0.elapsed()
    );
    assert!(pairs_failed.is_empty(), "{} disagreements:\n{}", pairs_failed.len(), pairs_failed.join("\n"));
}

/// The case the proptest generates from a persisted seed (proptest's ChaCha test RNG).
fn seeded_case(strategy: &impl Strategy<Value = Case>, seed: [u8; 32]) -> Case {
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    strategy.new_tree(&mut runner).expect("generate").current()
}

/// A seed as proptest persists it (`cc <hex>`).
fn seed_line(seed: &[u8; 32]) -> String {
    let mut s = "cc ".to_owned();
    for b in seed {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A kept case: `fixtures/differential/<name>.yaml` is the topology (its `name:` is replaced)
/// with the faults as `# fault: ...` comment lines. `sysctls` (a YAML flow mapping) is added to
/// every node, to undo a fix and show the fixture still catches the bug.
fn fixture_case(fixture: &str, sysctls: Option<&str>) -> Case {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/differential").join(format!("{fixture}.yaml"));
    let text = std::fs::read_to_string(&path).expect("fixture");
    let faults: Vec<String> =
        text.lines().filter_map(|l| l.strip_prefix("# fault: ")).map(str::to_owned).collect();
    let mut in_nodes = false;
    let mut yaml = String::new();
    for l in text.lines() {
        if !l.starts_with(' ') {
            in_nodes = l == "nodes:";
        }
        if l.starts_with("name:") {
            let _ = writeln!(yaml, "name: {LAB_PLACEHOLDER}");
            continue;
        }
        let _ = writeln!(yaml, "{l}");
        let node_line = in_nodes && l.starts_with("  ") && !l.starts_with("   ") && l.ends_with(':');
        if let (true, Some(sc)) = (node_line, sysctls) {
            let _ = writeln!(yaml, "    sysctls: {sc}");
        }
    }
    let ospf = yaml.contains("ospf");
    Case { yaml, faults, ospf }
}

fn replay(fixture: &str) {
    if !require_root(fixture) {
        return;
    }
    let case = fixture_case(fixture, None);
    if case.ospf && !frr_installed() {
        return;
    }
    if let Err(report) = run_case(&case) {
        panic!("{fixture}: {report}");
    }
}

/// With the fix undone through user sysctls (they override the plan's), the fixture must
/// disagree again, on the pair that showed the bug. Works for kernel behaviour the model does
/// not read from the plan (redirects); a sysctl the model reads (ip_forward) moves both.
fn replay_unfixed(fixture: &str, sysctls: &str, pair: &str) {
    if !require_root(fixture) {
        return;
    }
    let case = fixture_case(fixture, Some(sysctls));
    assert!(case.yaml.contains("sysctls"), "{}", case.yaml);
    let report = run_case(&case).expect_err("with the fix undone the kernel must disagree");
    assert!(report.contains(pair), "{report}");
}

#[test]
fn generator_is_deterministic_and_valid() {
    // Unprivileged: every generated case parses, plans, and its faults parse against the plan.
    for seed in 0..300u64 {
        let case = generate(seed, seed % 3 == 0);
        assert_eq!(case.yaml, generate(seed, seed % 3 == 0).yaml);
        let text = case.yaml.replacen("name: LAB", "name: gen", 1);
        let topo = topo_spec::parse_str("gen.yaml", &text).unwrap_or_else(|d| panic!("{d}\n{text}"));
        let plan = topo_plan::compile(&topo).unwrap_or_else(|d| panic!("{d:?}\n{text}"));
        assert!((3..=8).contains(&plan.nodes.len()), "{text}");
        for f in &case.faults {
            topo_lab::fault_text::parse_fault(&plan, f).unwrap_or_else(|e| panic!("{f}: {e}\n{text}"));
        }
    }
}

#[test]
fn fixture_host_does_not_forward() {
    replay("host-does-not-forward");
}

#[test]
fn fixture_down_interface_address_stays_local() {
    replay("down-interface-address-stays-local");
}

/// How the seeds in tests/differential.proptest-regressions were found: proptest seeds
/// whose cases (at the default 15 % OSPF) exercise the bugs the survey found, decided on the
/// model alone. Host forwarding: the UDP matrices differ when hosts are made to forward. Down
/// addresses: a probe reaches a running node whose primary address sits on a downed interface.
#[test]
#[ignore = "tool: TOPO_DIFF_SEARCH=N cargo test --test differential find_regression_seeds -- --ignored"]
fn find_regression_seeds() {
    let strategy = case_strategy(15);
    let (mut forwards, mut down_local) = (None, None);
    for i in 0..u64::from(env_num("TOPO_DIFF_SEARCH", 5000)) {
        let seed: [u8; 32] = ChaCha8Rng::seed_from_u64(i).gen();
        let case = seeded_case(&strategy, seed);
        if case.ospf {
            continue;
        }
        let text = case.yaml.replacen("name: LAB", "name: gen", 1);
        let topo = topo_spec::parse_str("gen.yaml", &text).expect("parse");
        let plan = topo_plan::compile(&topo).expect("plan");
        let mut forwarding = plan.clone();
        for n in &mut forwarding.nodes {
            n.sysctls.insert("net.ipv4.ip_forward".into(), "1".into());
        }
        let faults: Vec<_> =
            case.faults.iter().map(|f| topo_lab::fault_text::parse_fault(&plan, f).expect("fault")).collect();
        let (mut a, mut b) = (ModelLab::new(plan.clone()), ModelLab::new(forwarding));
        let req = topo_model::all_pairs(&plan, Proto::Udp(DEFAULT_PROBE_PORT));
        let mut steps = vec![None];
        steps.extend(faults.iter().map(Some));
        for f in steps {
            if let Some(f) = f {
                a.apply(f).expect("apply");
                b.apply(f).expect("apply");
            }
            let (ma, mb) = (a.reach(&req).expect("reach"), b.reach(&req).expect("reach"));
            if forwards.is_none() && !mb.mismatches(&ma).is_empty() {
                forwards = Some((seed_line(&seed), describe(&case)));
            }
            let st = a.faults().clone();
            for n in &plan.nodes {
                let Some(primary) = n.primary_address() else { continue };
                let down = n.interfaces.iter().any(|i| {
                    i.addresses.iter().any(|x| x.addr() == primary)
                        && match &i.attachment {
                            topo_plan::Attachment::Network { network, .. } => {
                                st.links_down.contains(&topo_lab::LinkRef::Lan {
                                    node: n.name.clone(),
                                    network: network.clone(),
                                })
                            }
                            topo_plan::Attachment::Link { .. } => false,
                        }
                });
                let reached = ma.pairs.iter().any(|p| p.to == n.name && p.reached);
                if down && reached && !st.nodes_stopped.contains(&n.name) && down_local.is_none() {
                    down_local = Some((seed_line(&seed), describe(&case)));
                }
            }
        }
        if forwards.is_some() && down_local.is_some() {
            break;
        }
    }
    for (what, found) in [("host forwarding", forwards), ("down address stays local", down_local)] {
        match found {
            Some((line, case)) => eprintln!("{what}: {line}\n{case}"),
            None => eprintln!("{what}: none found"),
        }
    }
}

#[test]
fn fixture_no_icmp_redirects() {
    replay("no-icmp-redirects");
}

#[test]
fn fixture_no_icmp_redirects_detects_redirects() {
    let on = r#"{net.ipv4.conf.all.send_redirects: "1", net.ipv4.conf.default.send_redirects: "1"}"#;
    replay_unfixed("no-icmp-redirects", on, "icmp h3 -> h1");
}

#[test]
fn fixture_ospf_no_carrier_not_advertised() {
    replay("ospf-no-carrier");
}

/// An ECMP route with one silently broken branch: whether a pair reaches depends on the
/// kernel's per-boot flow hash, which the model does not know. The model marks those pairs
/// ECMP-dependent (either outcome accepted); every other pair must still match.
#[test]
fn fixture_ecmp_hash_decides_reachability() {
    replay("ecmp-hash-decides");
}
