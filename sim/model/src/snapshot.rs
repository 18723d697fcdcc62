//! Frozen snapshots: a normalized, stable text form of a design (plan summary) and of what the
//! network does in each step (forwarding tables, reachability matrix, paths), for golden files.
//!
//! Stable across runs: maps are sorted, lists are in a defined order, nothing depends on time
//! or randomness. The per-step part can be captured from any [`Lab`] (model or kernel), so a
//! frozen design can be checked against both; forwarding tables are filled in by the model.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use topo_lab::{
    BackendKind, Fault, FaultState, Lab, LabError, PairOutcome, Proto, ReachMatrix, ReachRequest,
};
use topo_plan::{Attachment, Plan};

use crate::{Model, ModelLab, Route};

/// Bumped when the snapshot layout changes.
pub const SNAPSHOT_FORMAT: u32 = 1;

/// Up to this many pairs the matrix lists every pair; beyond, only the failures.
pub const MAX_LISTED_PAIRS: usize = 2500;
/// Paths are recorded for all pairs when the plan has at most this many nodes.
pub const MAX_PATH_NODES: usize = 30;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub format: u32,
    pub lab: String,
    /// The topology (or scenario) file the snapshot was frozen from, as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Set when frozen from a scenario (its `name:`); `source` is then the scenario file and
    /// `verify` recomputes the steps from the scenario, not from the recorded faults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
    pub plan: Vec<NodeSummary>,
    pub steps: Vec<StepSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSummary {
    pub name: String,
    pub kind: String,
    pub forwards: bool,
    /// `eth0 10.0.0.2/24 (network lan)`, `eth1 10.9.0.1/30 (link r2)`.
    pub interfaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loopbacks: Vec<String>,
    /// Routes the plan installs (`to via dev metric`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ospf: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub masquerade: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepSnapshot {
    pub name: String,
    /// Faults applied in this step, in order (their text form is the serde form).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<String>,
    /// Forwarding table per node, `ip route`-like lines. Empty when the backend can't tell.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub routes: BTreeMap<String, Vec<String>>,
    pub reach: ReachSummary,
    /// `a -> b` → `r1 10.1.0.1, r3 10.13.0.2, b 10.3.0.10` (or the failure).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub paths: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReachSummary {
    pub proto: String,
    pub pairs: usize,
    pub reached: usize,
    /// `a -> b: ok` / `a -> b: <why not>`; only the failures when there are many pairs.
    pub lines: Vec<String>,
}

impl Snapshot {
    /// The normalized text (pretty JSON, trailing newline).
    pub fn to_text(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    pub fn from_text(text: &str) -> Result<Self, LabError> {
        serde_json::from_str(text).map_err(|e| LabError::Invalid(format!("not a topo snapshot: {e}")))
    }
}

/// The design part of a snapshot.
pub fn summarize_plan(plan: &Plan) -> Vec<NodeSummary> {
    plan.nodes
        .iter()
        .map(|n| NodeSummary {
            name: n.name.clone(),
            kind: format!("{:?}", n.kind).to_lowercase(),
            forwards: n.sysctls.get("net.ipv4.ip_forward").is_some_and(|v| v.trim() == "1"),
            interfaces: n
                .interfaces
                .iter()
                .map(|i| {
                    let addrs: Vec<String> = i.addresses.iter().map(ToString::to_string).collect();
                    let addrs = if i.dhcp { "dhcp".to_owned() } else { addrs.join(" ") };
                    let att = match &i.attachment {
                        Attachment::Network { network, .. } => format!("network {network}"),
                        Attachment::Link { peer_node, .. } => format!("link {peer_node}"),
                    };
                    format!("{} {addrs} ({att})", i.name)
                })
                .collect(),
            loopbacks: n.loopbacks.iter().map(ToString::to_string).collect(),
            routes: n
                .routes
                .iter()
                .map(|r| {
                    let metric = r.metric.map(|m| format!(" metric {m}")).unwrap_or_default();
                    format!("{} via {} dev {}{metric}", r.to, r.via, r.dev)
                })
                .collect(),
            ospf: n.routing.as_ref().and_then(|r| r.ospf.as_ref()).map(|o| {
                let ifs: Vec<String> = o
                    .interfaces
                    .iter()
                    .map(|i| format!("{}:{}{}", i.iface, i.cost, if i.passive { ":passive" } else { "" }))
                    .collect();
                format!("router-id {} {}", o.router_id, ifs.join(" "))
            }),
            masquerade: n.masquerade.clone(),
        })
        .collect()
}

/// A forwarding table as `ip route`-like lines.
pub fn route_lines(routes: &[Route]) -> Vec<String> {
    routes
        .iter()
        .map(|r| {
            let via = r.via.map(|v| format!(" via {v}")).unwrap_or_default();
            format!("{}{via} dev {} metric {} {}", r.to, r.dev, r.metric, r.origin)
        })
        .collect()
}

/// Capture one step from any lab: the ICMP matrix over all nodes and, for small plans, the
/// path of every pair. `routes` comes from the model when the caller has one.
pub fn capture(
    lab: &mut dyn Lab,
    name: &str,
    faults: &[Fault],
    routes: BTreeMap<String, Vec<String>>,
) -> Result<StepSnapshot, LabError> {
    let names: Vec<String> = lab.plan().nodes.iter().map(|n| n.name.clone()).collect();
    // The model is deterministic: only a live lab needs another look at lossy links.
    let lossy = lab.backend() != BackendKind::Model && partial_loss(lab.plan(), lab.faults());
    let mut m = lab.reach(&ReachRequest { from: names.clone(), to: names.clone(), proto: Proto::Icmp })?;
    if lossy {
        retry_unreached(lab, &mut m)?;
    }
    let reached = m.pairs.iter().filter(|p| p.reached).count();
    let listed = m.pairs.len() <= MAX_LISTED_PAIRS;
    let lines = m
        .pairs
        .iter()
        .filter(|p| listed || !p.reached)
        .map(|p| {
            let what = if p.reached {
                "ok".to_owned()
            } else {
                p.reason.clone().unwrap_or_else(|| "unreached".into())
            };
            format!("{} -> {}: {what}", p.from, p.to)
        })
        .collect();
    let mut paths = BTreeMap::new();
    let reached_pairs: std::collections::BTreeSet<(&str, &str)> =
        m.pairs.iter().filter(|p| p.reached).map(|p| (p.from.as_str(), p.to.as_str())).collect();
    if names.len() <= MAX_PATH_NODES {
        for a in &names {
            for b in &names {
                if a == b {
                    continue;
                }
                let mut p = lab.path(a, b)?;
                // A trace over a lossy link can lose its probes although the pair reaches
                // (the trace of a pair that does not reach fails anyway: not retried).
                for _ in 0..LOSSY_ROUNDS {
                    if !lossy || p.delivered || !reached_pairs.contains(&(a.as_str(), b.as_str())) {
                        break;
                    }
                    p = lab.path(a, b)?;
                }
                let hops: Vec<String> = p
                    .hops
                    .iter()
                    .map(|h| format!("{} {}", h.node.as_deref().unwrap_or("?"), h.addr))
                    .collect();
                let mut text = hops.join(", ");
                if let Some(r) = &p.reason {
                    text = if text.is_empty() { format!("FAIL: {r}") } else { format!("{text}; FAIL: {r}") };
                }
                paths.insert(format!("{a} -> {b}"), text);
            }
        }
    }
    Ok(StepSnapshot {
        name: name.to_owned(),
        faults: faults.iter().map(fault_text).collect(),
        routes,
        reach: ReachSummary { proto: m.proto.to_string(), pairs: m.pairs.len(), reached, lines },
        paths,
    })
}

/// [`capture`] on the model. A big plan's matrix is taken in the compact form
/// ([`Model::reach_compact`]): the snapshot lists only the failures then and no paths, so the
/// strings of a million reaching pairs are never built. Small plans take the generic capture.
fn capture_model(
    lab: &mut ModelLab,
    name: &str,
    faults: &[Fault],
    routes: BTreeMap<String, Vec<String>>,
) -> Result<StepSnapshot, LabError> {
    let n = lab.plan().nodes.len();
    if n <= MAX_PATH_NODES || n * (n - 1) <= MAX_LISTED_PAIRS {
        return capture(lab, name, faults, routes);
    }
    let req = crate::all_pairs(lab.plan(), Proto::Icmp);
    let m = lab.model().reach_compact(&req)?;
    let lines = m
        .pairs
        .iter()
        .filter(|p| !p.reached())
        .map(|p| {
            let why = m.reason(p).unwrap_or_else(|| "unreached".into());
            format!("{} -> {}: {why}", m.from_name(p), m.to_name(p))
        })
        .collect();
    Ok(StepSnapshot {
        name: name.to_owned(),
        faults: faults.iter().map(fault_text).collect(),
        routes,
        reach: ReachSummary { proto: m.proto.to_string(), pairs: m.pairs.len(), reached: m.reached(), lines },
        paths: BTreeMap::new(),
    })
}

/// Extra measurement rounds for pairs that failed while some link loses part of its packets.
const LOSSY_ROUNDS: usize = 6;

/// Does any link lose some, but not all, of its packets (planned or as a runtime fault)?
fn partial_loss(plan: &Plan, faults: &FaultState) -> bool {
    let partial = |i: &topo_spec::Impairment| i.loss.is_some_and(|l| l > 0.0 && l < 100.0);
    faults.impairments.values().any(partial)
        || plan.links.iter().any(|l| partial(&l.impair_ab) || partial(&l.impair_ba))
}

/// Partial loss does not make a pair unreachable (the model's contract: traffic gets through,
/// only some of it is lost), but one measurement of a live lab can lose every probe of a pair.
/// Re-measure the failed pairs a few times; a pair reaches when any round got through.
fn retry_unreached(lab: &mut dyn Lab, m: &mut ReachMatrix) -> Result<(), LabError> {
    for _ in 0..LOSSY_ROUNDS {
        let failed: Vec<usize> = (0..m.pairs.len()).filter(|&i| !m.pairs[i].reached).collect();
        if failed.is_empty() {
            return Ok(());
        }
        let mut from: Vec<String> = failed.iter().map(|&i| m.pairs[i].from.clone()).collect();
        let mut to: Vec<String> = failed.iter().map(|&i| m.pairs[i].to.clone()).collect();
        from.sort();
        from.dedup();
        to.sort();
        to.dedup();
        let again = lab.reach(&ReachRequest { from, to, proto: m.proto })?;
        let reached: BTreeMap<(&str, &str), &PairOutcome> =
            again.pairs.iter().filter(|p| p.reached).map(|p| ((p.from.as_str(), p.to.as_str()), p)).collect();
        for &i in &failed {
            if let Some(&p) = reached.get(&(m.pairs[i].from.as_str(), m.pairs[i].to.as_str())) {
                m.pairs[i] = p.clone();
            }
        }
    }
    Ok(())
}

fn fault_text(f: &Fault) -> String {
    serde_json::to_string(f).unwrap_or_default()
}

/// Routes of every node as snapshot lines.
pub fn model_routes(model: &Model) -> BTreeMap<String, Vec<String>> {
    model.all_routes().into_iter().map(|(n, r)| (n, route_lines(&r))).collect()
}

/// Freeze a plan on the model: the initial state, then each named step's faults applied in
/// order (cumulatively, as a scenario does).
pub fn freeze_plan(
    plan: &Plan,
    source: Option<&str>,
    steps: &[(String, Vec<Fault>)],
) -> Result<Snapshot, LabError> {
    let mut lab = ModelLab::new(plan.clone());
    let mut out = Vec::with_capacity(steps.len() + 1);
    let routes = model_routes(lab.model());
    out.push(capture_model(&mut lab, "initial", &[], routes)?);
    for (name, faults) in steps {
        for f in faults {
            lab.apply(f)?;
        }
        let routes = model_routes(lab.model());
        out.push(capture_model(&mut lab, name, faults, routes)?);
    }
    Ok(Snapshot {
        format: SNAPSHOT_FORMAT,
        lab: plan.lab.clone(),
        source: source.map(str::to_owned),
        scenario: None,
        plan: summarize_plan(plan),
        steps: out,
    })
}

/// Freeze from any live lab (the kernel): the same steps as [`freeze_plan`], faults applied
/// through the lab. `lab_name` replaces the lab's own (unique, throwaway) name so the result
/// compares equal to the model's snapshot of the same design. Forwarding tables are left
/// empty: only the model fills them in (see [`without_routes`]).
pub fn freeze_lab(
    lab: &mut dyn Lab,
    lab_name: &str,
    source: Option<&str>,
    steps: &[(String, Vec<Fault>)],
) -> Result<Snapshot, LabError> {
    let mut out = Vec::with_capacity(steps.len() + 1);
    settle(lab, "initial")?;
    out.push(capture(lab, "initial", &[], BTreeMap::new())?);
    for (name, faults) in steps {
        for f in faults {
            lab.apply(f)?;
        }
        settle(lab, name)?;
        out.push(capture(lab, name, faults, BTreeMap::new())?);
    }
    Ok(Snapshot {
        format: SNAPSHOT_FORMAT,
        lab: lab_name.to_owned(),
        source: source.map(str::to_owned),
        scenario: None,
        plan: summarize_plan(lab.plan()),
        steps: out,
    })
}

/// Does any node run a routing protocol (whose state a live lab must converge to)?
fn has_dynamic_routing(plan: &Plan) -> bool {
    plan.nodes.iter().any(|n| n.routing.as_ref().is_some_and(|r| r.ospf.is_some()))
}

/// Before measuring a step on a live lab with routing daemons, wait until routing has
/// converged to the state the faults imply (the model is that state by construction): a
/// capture taken while OSPF still reroutes measures a transient, not the design.
fn settle(lab: &mut dyn Lab, step: &str) -> Result<(), LabError> {
    if !has_dynamic_routing(lab.plan()) {
        return Ok(());
    }
    let timeout = lab.plan().converge_timeout();
    lab.wait_converged(timeout).map_err(|e| {
        LabError::Backend(format!(
            "step {step:?}: routing did not converge within {}s: {e}",
            timeout.as_secs()
        ))
    })
}

/// The snapshot without the model-only part (per-step forwarding tables), i.e. what a kernel
/// lab can be compared on.
#[must_use]
pub fn without_routes(snap: &Snapshot) -> Snapshot {
    let mut s = snap.clone();
    for step in &mut s.steps {
        step.routes.clear();
    }
    s
}

/// The part a live lab and the model must agree on: no forwarding tables, and failures
/// without their explanation (the model says *why* a pair fails, "partition" or "no route on
/// r1"; a probe only sees a timeout or an errno, and a failed trace stops at different hops).
/// The path of a pair that does not reach is reduced to `FAIL` too: the model's path is the
/// forward path even when replies are dropped (one-way faults), while a TTL trace needs the
/// replies. Reached counts, which pairs reach, and the paths of reaching pairs are kept.
#[must_use]
pub fn outcomes_only(snap: &Snapshot) -> Snapshot {
    let mut s = without_routes(snap);
    for step in &mut s.steps {
        let mut unreached = std::collections::BTreeSet::new();
        for line in &mut step.reach.lines {
            if let Some((pair, what)) = line.split_once(": ") {
                if what != "ok" {
                    unreached.insert(pair.to_owned());
                    *line = format!("{pair}: unreached");
                }
            }
        }
        for (pair, text) in &mut step.paths {
            if text.contains("FAIL") || unreached.contains(pair) {
                "FAIL".clone_into(text);
            }
        }
    }
    s
}

/// The fault steps a snapshot recorded (all steps but the initial one), parsed back.
pub fn recorded_steps(old: &Snapshot) -> Result<Vec<(String, Vec<Fault>)>, String> {
    let mut steps = Vec::new();
    for s in old.steps.iter().skip(1) {
        let faults: Vec<Fault> = s
            .faults
            .iter()
            .map(|f| serde_json::from_str(f).map_err(|e| format!("step {:?}: bad fault {f}: {e}", s.name)))
            .collect::<Result<_, _>>()?;
        steps.push((s.name.clone(), faults));
    }
    Ok(steps)
}

/// Recompute a snapshot from its own source file (resolved against `base` when relative) and
/// its recorded fault steps, for verification.
pub fn recompute(old: &Snapshot, base: &std::path::Path) -> Result<Snapshot, String> {
    let source = old.source.as_deref().ok_or("the snapshot names no source file")?;
    let plan = topo_plan::plan_file(&base.join(source)).map_err(|d| format!("{source}: invalid:\n{d}"))?;
    let steps = recorded_steps(old)?;
    freeze_plan(&plan, Some(source), &steps).map_err(|e| e.to_string())
}

/// A unified-style diff of two snapshot texts (3 lines of context), or `None` when equal.
pub fn diff(expected: &str, actual: &str, expected_name: &str, actual_name: &str) -> Option<String> {
    if expected == actual {
        return None;
    }
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    let ops = line_ops(&a, &b);
    let mut out = format!("--- {expected_name}\n+++ {actual_name}\n");
    // Group changes with their context into hunks.
    const CONTEXT: usize = 3;
    let changed: Vec<usize> =
        ops.iter().enumerate().filter(|(_, o)| !matches!(o, Op::Same(..))).map(|(i, _)| i).collect();
    let mut k = 0;
    while k < changed.len() {
        let start = changed[k].saturating_sub(CONTEXT);
        let mut end = changed[k];
        while k < changed.len() && changed[k] <= end + 2 * CONTEXT + 1 {
            end = changed[k];
            k += 1;
        }
        let end = (end + CONTEXT + 1).min(ops.len());
        let (la, lb) = ops[..start].iter().fold((0, 0), |(x, y), o| match o {
            Op::Same(..) => (x + 1, y + 1),
            Op::Del(_) => (x + 1, y),
            Op::Add(_) => (x, y + 1),
        });
        let (na, nb) = ops[start..end].iter().fold((0, 0), |(x, y), o| match o {
            Op::Same(..) => (x + 1, y + 1),
            Op::Del(_) => (x + 1, y),
            Op::Add(_) => (x, y + 1),
        });
        let _ = writeln!(out, "@@ -{},{na} +{},{nb} @@", la + 1, lb + 1);
        for o in &ops[start..end] {
            let _ = match o {
                Op::Same(l) => writeln!(out, " {l}"),
                Op::Del(l) => writeln!(out, "-{l}"),
                Op::Add(l) => writeln!(out, "+{l}"),
            };
        }
    }
    Some(out)
}

#[derive(Debug)]
enum Op<'a> {
    Same(&'a str),
    Del(&'a str),
    Add(&'a str),
}

/// Line edit script: common prefix and suffix, then an LCS of the middle (or, when that would
/// be too large to compute, the whole middle as removed then added).
#[allow(clippy::many_single_char_names)]
fn line_ops<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<Op<'a>> {
    let pre = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suf = a[pre..].iter().rev().zip(b[pre..].iter().rev()).take_while(|(x, y)| x == y).count();
    let (ma, mb) = (&a[pre..a.len() - suf], &b[pre..b.len() - suf]);
    let mut ops: Vec<Op<'a>> = a[..pre].iter().map(|l| Op::Same(l)).collect();
    if ma.len().saturating_mul(mb.len()) > 16_000_000 {
        ops.extend(ma.iter().map(|l| Op::Del(l)));
        ops.extend(mb.iter().map(|l| Op::Add(l)));
    } else {
        // lcs[i][j] = LCS length of ma[i..] and mb[j..].
        let w = mb.len() + 1;
        let mut lcs = vec![0u32; (ma.len() + 1) * w];
        for i in (0..ma.len()).rev() {
            for j in (0..mb.len()).rev() {
                lcs[i * w + j] = if ma[i] == mb[j] {
                    lcs[(i + 1) * w + j + 1] + 1
                } else {
                    lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < ma.len() && j < mb.len() {
            if ma[i] == mb[j] {
                ops.push(Op::Same(ma[i]));
                i += 1;
                j += 1;
            } else if lcs[(i + 1) * w + j] >= lcs[i * w + j + 1] {
                ops.push(Op::Del(ma[i]));
                i += 1;
            } else {
                ops.push(Op::Add(mb[j]));
                j += 1;
            }
        }
        ops.extend(ma[i..].iter().map(|l| Op::Del(l)));
        ops.extend(mb[j..].iter().map(|l| Op::Add(l)));
    }
    ops.extend(a[a.len() - suf..].iter().map(|l| Op::Same(l)));
    ops
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use topo_lab::{Fault, Lab};

    use super::{capture, capture_model, diff};
    use crate::testplan::PlanBuilder;
    use crate::ModelLab;

    #[test]
    fn big_plans_capture_the_same_step_through_the_compact_matrix() {
        // 60 hosts: 3540 pairs, past both the listing and the path limits.
        let mut b = PlanBuilder::new("big");
        for i in 0..60 {
            let name = format!("h{i}");
            b.host(&name).attach(&name, "lan", &format!("10.0.0.{}/24", i + 2));
        }
        let mut lab = ModelLab::new(b.build());
        let cut = Fault::Partition { groups: vec![vec!["h3".into(), "h41".into()]] };
        lab.apply(&cut).expect("partition");
        let generic = capture(&mut lab, "cut", std::slice::from_ref(&cut), BTreeMap::new()).expect("capture");
        let compact =
            capture_model(&mut lab, "cut", std::slice::from_ref(&cut), BTreeMap::new()).expect("capture");
        assert_eq!(compact, generic);
        assert_eq!(generic.reach.pairs, 60 * 59);
        assert_eq!(generic.reach.lines.len(), 2 * 2 * 58, "both members are cut from the 58 others");
        assert!(generic.reach.lines.iter().all(|l| l.contains("partition")), "{:?}", generic.reach.lines);
    }

    #[test]
    fn diff_shows_changed_lines_with_context() {
        let a = "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n";
        let b = "1\n2\n3\n4\nfive\n6\n7\n8\n9\n10\n11\n";
        let d = diff(a, b, "expected", "actual").expect("differs");
        assert_eq!(
            d,
            "--- expected\n+++ actual\n@@ -2,9 +2,10 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n 9\n 10\n+11\n"
        );
        assert_eq!(diff(a, a, "x", "y"), None);
    }
}
