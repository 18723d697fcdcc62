//! Scenario files: YAML → [`Scenario`], strictly (unknown keys are errors) and with every
//! problem reported at once, at its `file:line:col`.
//!
//! Loading happens in three stages: the header (`name`, `topology`, `overrides`, `requires`),
//! then the topology (parsed by topo-spec and compiled by topo-plan under a unique lab name),
//! then the steps, whose node selectors are resolved against the compiled plan — so a typo in
//! a node name is reported before any lab is built.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use topo_lab::select::select_list;
use topo_lab::{BackendKind, Fault, LinkRef, Proto};
use topo_plan::Plan;
use topo_spec::{Diagnostic, Diagnostics, Impairment, SourceFile, Span};

use crate::ast::{
    ConvergeStep, ExecStep, NatStep, PathStep, ReachExpect, ReachStep, Scenario, StdoutExpect, Step, StepKind,
};
use crate::yaml::{self, LineIndex, Map, Scalar, Y};

/// Default deadline of assertions that retry (reach, nat_free, path).
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);
/// Default timeout of `wait: converged`.
pub const DEFAULT_CONVERGE_WAIT: Duration = Duration::from_secs(60);

const TOP_KEYS: &[&str] = &["name", "description", "topology", "overrides", "requires", "steps"];

/// Read and load a scenario file; `lab` is the unique lab name its plan is compiled with.
pub fn load(path: &Path, lab: &str) -> Result<Scenario, Diagnostics> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        single(
            path,
            "",
            Diagnostic {
                code: "topo::io",
                message: format!("cannot read scenario {}: {e}", path.display()),
                span: None,
                label: String::new(),
                help: Some("check the path".into()),
                related: Vec::new(),
            },
        )
    })?;
    load_str(path, &text, lab)
}

/// Load a scenario from text. `path` locates a relative `topology:` path and names the file
/// in diagnostics.
pub fn load_str(path: &Path, text: &str, lab: &str) -> Result<Scenario, Diagnostics> {
    let header = parse_header(path, text)?;
    let (topology_path, topology_text, plan, original_lab) = load_topology(path, text, &header, lab)?;
    let steps = parse_steps(path, text, &header.root, &plan)?;
    Ok(Scenario {
        name: header.name,
        path: path.to_owned(),
        topology_path,
        topology_text,
        original_lab,
        plan,
        requires: header.requires,
        steps,
    })
}

/// Load a scenario against a ready plan, ignoring its `topology:` (tests, and callers that
/// compiled the topology themselves).
pub fn load_with_plan(path: &Path, text: &str, plan: Plan) -> Result<Scenario, Diagnostics> {
    let header = parse_header(path, text)?;
    let steps = parse_steps(path, text, &header.root, &plan)?;
    Ok(Scenario {
        name: header.name,
        path: path.to_owned(),
        topology_path: path.to_owned(),
        topology_text: String::new(),
        original_lab: plan.lab.clone(),
        plan,
        requires: header.requires,
        steps,
    })
}

fn single(path: &Path, text: &str, d: Diagnostic) -> Diagnostics {
    Diagnostics { source: SourceFile::new(path.display().to_string(), text), items: vec![d] }
}

fn diags(path: &Path, text: &str, items: Vec<Diagnostic>) -> Diagnostics {
    Diagnostics { source: SourceFile::new(path.display().to_string(), text), items }
}

struct Header {
    root: Map,
    name: String,
    requires: Vec<BackendKind>,
    topology: Option<Y>,
    /// `(counter prefix, count, span of the key)`.
    counters: Vec<(String, i64, Span)>,
}

fn parse_header(path: &Path, text: &str) -> Result<Header, Diagnostics> {
    let root = yaml::parse(text).map_err(|d| single(path, text, d))?;
    let mut out = Vec::new();
    check_keys(&root, TOP_KEYS, "scenario", &mut out);
    let name = match root.get("name") {
        Some(Y::Scalar(s)) if !s.s.trim().is_empty() => s.s.trim().to_owned(),
        Some(other) => {
            out.push(expected(other, "a scenario name"));
            String::new()
        }
        None => path.file_stem().map_or_else(|| "scenario".to_owned(), |s| s.to_string_lossy().into_owned()),
    };
    if let Some(d) = root.get("description") {
        if !matches!(d, Y::Scalar(_)) {
            out.push(expected(d, "a text"));
        }
    }
    let mut requires = Vec::new();
    if let Some(r) = root.get("requires") {
        let items: Vec<&Y> = match r {
            Y::Seq(items, _) => items.iter().collect(),
            other => vec![other],
        };
        for item in items {
            match item {
                Y::Scalar(s) if s.s == "kernel" => requires.push(BackendKind::Kernel),
                Y::Scalar(s) if s.s == "model" => requires.push(BackendKind::Model),
                other => out.push(expected(other, "a backend: `kernel` or `model`")),
            }
        }
    }
    let topology = root.get("topology").cloned();
    match &topology {
        None => out.push(
            Diagnostic::new("topo::missing-key", root.span, "the scenario has no `topology:`")
                .label("scenario starts here")
                .help("add `topology: ../topologies/lan.yaml` (relative to this file) or an inline topology mapping"),
        ),
        Some(Y::Scalar(s)) if s.s.trim().is_empty() => out.push(expected(topology.as_ref().unwrap_or_else(|| unreachable!()), "a topology path or mapping")),
        Some(Y::Scalar(_) | Y::Map(_)) => {}
        Some(other) => out.push(expected(other, "a topology path or an inline topology mapping")),
    }
    let mut counters = Vec::new();
    if let Some(o) = root.get("overrides") {
        match o {
            Y::Map(m) => {
                check_keys(m, &["counters"], "overrides", &mut out);
                match m.get("counters") {
                    Some(Y::Map(c)) => {
                        for (k, v) in &c.entries {
                            match v {
                                Y::Scalar(s) => match s.s.trim().parse::<i64>() {
                                    Ok(n) if (1..=10_000).contains(&n) => {
                                        counters.push((k.s.clone(), n, k.span));
                                    }
                                    _ => out.push(expected(v, "a count from 1 to 10000")),
                                },
                                other => out.push(expected(other, "a count from 1 to 10000")),
                            }
                        }
                    }
                    Some(other) => {
                        out.push(expected(other, "a mapping of counter prefix to count, e.g. `web-: 3`"));
                    }
                    None => {}
                }
            }
            other => out.push(expected(other, "a mapping (e.g. `counters: {web-: 3}`)")),
        }
    }
    match root.get("steps") {
        None => out.push(
            Diagnostic::new("topo::missing-key", root.span, "the scenario has no `steps:`")
                .label("scenario starts here")
                .help("add `steps:` with a list such as `- up`, `- reach: {expect: auto}`"),
        ),
        Some(Y::Seq(..)) => {}
        Some(other) => out.push(expected(other, "a list of steps")),
    }
    if !out.is_empty() {
        return Err(diags(path, text, out));
    }
    Ok(Header { root, name, requires, topology, counters })
}

/// Parse the topology (from its file or inline), apply overrides, rename the lab, compile.
fn load_topology(
    path: &Path,
    text: &str,
    header: &Header,
    lab: &str,
) -> Result<(PathBuf, String, Plan, String), Diagnostics> {
    let Some(topology) = &header.topology else { unreachable!("checked by parse_header") };
    let (topo_path, display, raw, inline) = match topology {
        Y::Scalar(s) => {
            let rel = PathBuf::from(s.s.trim());
            let full = if rel.is_absolute() {
                rel
            } else {
                path.parent().unwrap_or_else(|| Path::new(".")).join(rel)
            };
            let raw = std::fs::read_to_string(&full).map_err(|e| {
                single(
                    path,
                    text,
                    Diagnostic::new(
                        "topo::io",
                        s.span,
                        format!("cannot read topology {}: {e}", full.display()),
                    )
                    .label("this file")
                    .help("topology paths are relative to the scenario file"),
                )
            })?;
            (full.clone(), full.display().to_string(), raw, false)
        }
        y => {
            // Hand topo-spec the scenario text with everything outside the inline mapping
            // blanked: spans in its diagnostics then point into the scenario file unchanged.
            let start = y.start();
            let end = header
                .root
                .entries
                .iter()
                .map(|(k, _)| k.span.offset)
                .filter(|&o| o > start)
                .min()
                .map_or(text.len(), |o| LineIndex::new(text).line_start(o));
            (path.to_owned(), path.display().to_string(), blank_outside(text, start, end), true)
        }
    };
    let overridden = apply_counter_overrides(&raw, &header.counters).map_err(|d| single(path, text, d))?;
    let mut topo = topo_spec::parse_str(&display, &overridden).map_err(|mut d| {
        if inline {
            d.source = SourceFile::new(display.clone(), text);
        }
        d
    })?;
    let original = std::mem::replace(&mut topo.name, lab.to_owned());
    let plan = topo_plan::compile(&topo).map_err(|items| Diagnostics {
        source: SourceFile::new(display.clone(), if inline { text } else { &overridden }),
        items,
    })?;
    Ok((topo_path, overridden, plan, original))
}

fn blank_outside(text: &str, start: usize, end: usize) -> String {
    text.char_indices()
        .map(
            |(i, c)| {
                if (start..end).contains(&i) || c == '\n' {
                    c.to_string()
                } else {
                    " ".repeat(c.len_utf8())
                }
            },
        )
        .collect()
}

/// Rewrite every counter range `PREFIX{a..b}` of the given prefixes to `PREFIX{a..a+n-1}`.
/// A narrower range is padded with spaces inside the braces so later spans stay exact.
pub fn apply_counter_overrides(text: &str, counters: &[(String, i64, Span)]) -> Result<String, Diagnostic> {
    if counters.is_empty() {
        return Ok(text.to_owned());
    }
    let re = regex::Regex::new(r"([A-Za-z0-9_.\-]*)\{\s*(\d+)\s*\.\.\s*(\d+)\s*\}")
        .unwrap_or_else(|_| unreachable!());
    let mut used = vec![false; counters.len()];
    let mut found: BTreeSet<String> = BTreeSet::new();
    let out = re.replace_all(text, |c: &regex::Captures<'_>| {
        let prefix = &c[1];
        let whole = &c[0];
        found.insert(prefix.to_owned());
        let Some(i) = counters.iter().position(|(p, _, _)| p == prefix) else { return whole.to_owned() };
        used[i] = true;
        let start: i64 = c[2].parse().unwrap_or(0);
        let new = format!("{prefix}{{{}..{}", start, start + counters[i].1 - 1);
        let pad = whole.len().saturating_sub(new.len() + 1);
        format!("{new}{}}}", " ".repeat(pad))
    });
    if let Some(i) = used.iter().position(|u| !u) {
        let (p, _, span) = &counters[i];
        let known: Vec<String> = found.iter().map(|f| format!("`{f}`")).collect();
        return Err(Diagnostic::new(
            "topo::unknown-counter",
            *span,
            format!("the topology has no counter range named `{p}{{a..b}}`"),
        )
        .label("no such counter")
        .help(if known.is_empty() {
            "the topology has no counter ranges".to_owned()
        } else {
            format!("counters are keyed by the text before `{{`: {}", known.join(", "))
        }));
    }
    Ok(out.into_owned())
}

fn parse_steps(path: &Path, text: &str, root: &Map, plan: &Plan) -> Result<Vec<Step>, Diagnostics> {
    let Some(Y::Seq(items, _)) = root.get("steps") else { unreachable!("checked by parse_header") };
    let mut p = StepParser { plan, text, diags: Vec::new(), captures: BTreeSet::new() };
    let mut steps: Vec<Step> = items.iter().filter_map(|y| p.step(y, 0)).collect();
    // `up` at most once, before any step that needs the lab; implicit when absent.
    let ups: Vec<usize> =
        steps.iter().enumerate().filter(|(_, s)| matches!(s.kind, StepKind::Up)).map(|(i, _)| i).collect();
    if ups.len() > 1 {
        p.diags.push(
            Diagnostic::new("topo::scenario", steps[ups[1]].span, "`up` is given twice")
                .label("second `up`")
                .related(steps[ups[0]].span, "first `up`"),
        );
    }
    if let Some(&u) = ups.first() {
        if let Some(s) = steps[..u].iter().find(|s| !matches!(s.kind, StepKind::Sleep(_))) {
            p.diags.push(
                Diagnostic::new(
                    "topo::scenario",
                    s.span,
                    "this step needs the lab, which is built by a later `up`",
                )
                .label("before `up`")
                .related(steps[u].span, "`up` is here")
                .help("move `up` before it (or drop `up`: it is implicit at the start)"),
            );
        }
    } else {
        steps.insert(0, Step { span: root.span, label: "up".into(), kind: StepKind::Up });
    }
    if p.diags.is_empty() {
        Ok(steps)
    } else {
        Err(diags(path, text, p.diags))
    }
}

struct StepParser<'p> {
    plan: &'p Plan,
    /// The scenario text, to point at one selector inside a longer scalar.
    text: &'p str,
    diags: Vec<Diagnostic>,
    /// Names captured by earlier `exec` steps, in document order.
    captures: BTreeSet<String>,
}

const STEP_KEYS: &[&str] = &[
    "up",
    "wait",
    "partition",
    "oneway",
    "drop",
    "heal",
    "link",
    "node",
    "impair",
    "impair_clear",
    "random_partition",
    "reach",
    "nat_free",
    "path",
    "converge",
    "exec",
    "repeat",
    "parallel",
];

impl StepParser<'_> {
    fn err(&mut self, d: Diagnostic) -> Option<()> {
        self.diags.push(d);
        None
    }

    fn step(&mut self, y: &Y, depth: usize) -> Option<Step> {
        let (key, value): (&Scalar, Option<&Y>) = match y {
            Y::Scalar(s) => (s, None),
            Y::Map(m) if m.entries.len() == 1 => (&m.entries[0].0, Some(&m.entries[0].1)),
            Y::Map(m) => {
                self.err(
                    Diagnostic::new("topo::scenario", m.span, "a step is a mapping with exactly one key")
                        .label(format!("{} keys here", m.entries.len()))
                        .help("write each step as its own list item (`- partition: ...`, `- heal`)"),
                )?;
                return None;
            }
            other => {
                self.err(expected(other, "a step such as `up`, `heal` or `reach: {...}`"))?;
                return None;
            }
        };
        let span = key.span;
        let step = |label: String, kind: StepKind| Some(Step { span, label, kind });
        let bare = |this: &mut Self, name: &str| -> Option<()> {
            match value {
                None => Some(()),
                Some(v) if v.is_null() => Some(()),
                Some(v) => this.err(expected(v, &format!("nothing: `{name}` takes no arguments"))),
            }
        };
        let need = |this: &mut Self| -> Option<&Y> {
            if let Some(v) = value.filter(|v| !v.is_null()) {
                Some(v)
            } else {
                this.err(
                    Diagnostic::new("topo::scenario", span, format!("`{}` needs arguments", key.s))
                        .label("nothing given")
                        .help("see docs/scenarios.md for the form of each step"),
                );
                None
            }
        };
        match key.s.as_str() {
            "up" => {
                bare(self, "up")?;
                if depth > 0 {
                    self.err(
                        Diagnostic::new("topo::scenario", span, "`up` must be a top-level step")
                            .label("inside a block"),
                    )?;
                }
                step("up".into(), StepKind::Up)
            }
            "heal" => {
                bare(self, "heal")?;
                step("heal".into(), StepKind::Fault(vec![Fault::Heal]))
            }
            "impair_clear" => match value.filter(|v| !v.is_null()) {
                None => step(
                    "impair_clear (all links)".into(),
                    StepKind::Fault(vec![Fault::ImpairClear { link: None }]),
                ),
                Some(v) => {
                    let (a, b) = self.p2p_pair(v)?;
                    step(
                        format!("impair_clear {a} {b}"),
                        StepKind::Fault(vec![Fault::ImpairClear { link: Some((a, b)) }]),
                    )
                }
            },
            "wait" => {
                let v = need(self)?;
                self.wait(v, span)
            }
            "partition" => {
                let v = need(self)?;
                let groups = self.groups(v)?;
                let label = format!(
                    "partition {}",
                    groups.iter().map(|g| g.join(",")).collect::<Vec<_>>().join(" | ")
                );
                step(label, StepKind::Fault(vec![Fault::Partition { groups }]))
            }
            "oneway" => {
                let v = need(self)?;
                let lines: Vec<&Y> = match v {
                    Y::Seq(items, _) => items.iter().collect(),
                    other => vec![other],
                };
                let mut faults = Vec::new();
                let mut labels = Vec::new();
                for l in lines {
                    let (from, to) = self.arrow(l)?;
                    labels.push(format!("{}->{}", from.join(","), to.join(",")));
                    faults.push(Fault::Drop { from, to });
                }
                step(format!("oneway {}", labels.join(" ")), StepKind::Fault(faults))
            }
            "drop" => {
                let v = need(self)?;
                let m = self.map(v, &["from", "to"])?;
                let from = self.req_nodes(&m, "from", span)?;
                let to = self.req_nodes(&m, "to", span)?;
                step(
                    format!("drop {} -> {}", from.join(","), to.join(",")),
                    StepKind::Fault(vec![Fault::Drop { from, to }]),
                )
            }
            "link" => {
                let v = need(self)?;
                self.link(v, span)
            }
            "node" => {
                let v = need(self)?;
                self.node_fault(v, span)
            }
            "impair" => {
                let v = need(self)?;
                self.impair(v, span)
            }
            "random_partition" => self.random_partition(value.filter(|v| !v.is_null()), span),
            "reach" => self.reach(value.filter(|v| !v.is_null()), span),
            "nat_free" => {
                let v = need(self)?;
                self.nat_free(v, span)
            }
            "path" => {
                let v = need(self)?;
                self.path(v, span)
            }
            "converge" => {
                let v = need(self)?;
                self.converge(v, span)
            }
            "exec" => {
                let v = need(self)?;
                self.exec(v, span)
            }
            "repeat" => {
                let v = need(self)?;
                let m = self.map(v, &["times", "steps"])?;
                let times = match m.get("times") {
                    Some(Y::Scalar(s)) => match s.s.trim().parse::<u32>() {
                        Ok(n) if (1..=10_000).contains(&n) => n,
                        _ => {
                            self.err(expected(&Y::Scalar(s.clone()), "a count from 1 to 10000"))?;
                            return None;
                        }
                    },
                    Some(other) => {
                        self.err(expected(other, "a count from 1 to 10000"))?;
                        return None;
                    }
                    None => {
                        self.err(missing(span, "repeat", "times"))?;
                        return None;
                    }
                };
                let steps = match m.get("steps") {
                    Some(Y::Seq(items, _)) => items.iter().filter_map(|i| self.step(i, depth + 1)).collect(),
                    Some(other) => {
                        self.err(expected(other, "a list of steps"))?;
                        return None;
                    }
                    None => {
                        self.err(missing(span, "repeat", "steps"))?;
                        return None;
                    }
                };
                step(format!("repeat {times}x"), StepKind::Repeat { times, steps })
            }
            "parallel" => {
                let Y::Seq(items, _) = need(self)? else {
                    self.err(expected(value?, "a list of branches (each a step or a list of steps)"))?;
                    return None;
                };
                let mut branches = Vec::new();
                for item in items {
                    let branch: Vec<Step> = match item {
                        Y::Seq(steps, _) => steps.iter().filter_map(|s| self.step(s, depth + 1)).collect(),
                        one => self.step(one, depth + 1).into_iter().collect(),
                    };
                    branches.push(branch);
                }
                step(format!("parallel ({} branches)", branches.len()), StepKind::Parallel(branches))
            }
            other => {
                let mut d = Diagnostic::new("topo::unknown-step", span, format!("unknown step `{other}`"))
                    .label("not a step");
                d = match suggest(other, STEP_KEYS.iter().copied()) {
                    Some(s) => d.help(format!("did you mean `{s}`?")),
                    None => d.help(format!("steps are: {}", STEP_KEYS.join(", "))),
                };
                self.err(d)?;
                None
            }
        }
    }

    fn map(&mut self, y: &Y, keys: &[&str]) -> Option<Map> {
        match y {
            Y::Map(m) => {
                let before = self.diags.len();
                check_keys(m, keys, "step", &mut self.diags);
                (self.diags.len() == before).then(|| m.clone())
            }
            other => {
                self.err(expected(other, &format!("a mapping with {}", keys.join(", "))))?;
                None
            }
        }
    }

    /// A selector list: `"a,b,web-*"` or a YAML list of selectors.
    fn nodes(&mut self, y: &Y) -> Option<Vec<String>> {
        let parts: Vec<&Scalar> = match y {
            Y::Scalar(s) => vec![s],
            Y::Seq(items, _) => {
                let mut v = Vec::new();
                for i in items {
                    match i {
                        Y::Scalar(s) => v.push(s),
                        other => {
                            self.err(expected(other, "a node name or selector"))?;
                        }
                    }
                }
                v
            }
            other => {
                self.err(expected(other, "node names or selectors (`a,b`, `web-*`, a group name)"))?;
                return None;
            }
        };
        let mut out: Vec<String> = Vec::new();
        for s in parts {
            match select_list(self.plan, &s.s) {
                Ok(names) => {
                    for n in names {
                        if !out.contains(&n) {
                            out.push(n);
                        }
                    }
                }
                Err(e) => {
                    let bad = match &e {
                        topo_lab::LabError::UnknownNode(sel) => sel.clone(),
                        _ => s.s.trim().to_owned(),
                    };
                    let mut d =
                        Diagnostic::new("topo::unknown-node", self.narrow(s.span, &bad), format!("{e}"))
                            .label("matches no node");
                    if let Some(sug) = suggest(&bad, self.plan.nodes.iter().map(|n| n.name.as_str())) {
                        d = d.help(format!("did you mean `{sug}`?"));
                    }
                    self.err(d)?;
                }
            }
        }
        Some(out)
    }

    /// The span of `part` inside the scalar at `span` (a selector in `"a,b c"`), else `span`.
    fn narrow(&self, span: Span, part: &str) -> Span {
        let end = (span.offset + span.len).min(self.text.len());
        let Some(within) = self.text.get(span.offset..end) else { return span };
        match within.find(part) {
            Some(i) if !part.is_empty() => Span {
                offset: span.offset + i,
                len: part.len(),
                line: span.line,
                col: span.col + within[..i].chars().count() as u32,
            },
            _ => span,
        }
    }

    fn one_node(&mut self, y: &Y) -> Option<String> {
        let nodes = self.nodes(y)?;
        if nodes.len() == 1 {
            nodes.into_iter().next()
        } else {
            self.err(
                Diagnostic::new(
                    "topo::scenario",
                    y.span(),
                    format!("expected one node, this selects {}", nodes.len()),
                )
                .label("more than one node"),
            )?;
            None
        }
    }

    fn req_nodes(&mut self, m: &Map, key: &str, span: Span) -> Option<Vec<String>> {
        match m.get(key) {
            Some(y) => self.nodes(y),
            None => {
                self.err(missing(span, "this step", key))?;
                None
            }
        }
    }

    fn opt_nodes(&mut self, m: &Map, key: &str) -> Option<Vec<String>> {
        match m.get(key) {
            Some(y) => self.nodes(y),
            None => Some(self.plan.nodes.iter().map(|n| n.name.clone()).collect()),
        }
    }

    /// The `proto` key of a step (ICMP when absent).
    fn proto_at(&mut self, m: &Map) -> Option<Proto> {
        match m.get("proto") {
            None => Some(Proto::Icmp),
            Some(Y::Scalar(s)) => match s.s.trim().parse::<Proto>() {
                Ok(p) => Some(p),
                Err(e) => self
                    .err(Diagnostic::new("topo::bad-value", s.span, e).label("unknown protocol"))
                    .map(|()| Proto::Icmp),
            },
            Some(other) => self.err(expected(other, "icmp, udp[:PORT] or tcp[:PORT]")).map(|()| Proto::Icmp),
        }
    }

    fn duration_at(&mut self, m: &Map, key: &str, default: Duration) -> Option<Duration> {
        match m.get(key) {
            None => Some(default),
            Some(y) => self.duration(y),
        }
    }

    fn duration(&mut self, y: &Y) -> Option<Duration> {
        match y {
            Y::Scalar(s) => match parse_duration(&s.s) {
                Ok(d) => Some(d),
                Err(form) => {
                    self.err(
                        Diagnostic::new("topo::bad-value", s.span, format!("expected {form}")).label("here"),
                    )?;
                    None
                }
            },
            other => {
                self.err(expected(other, "a duration such as `500ms` or `2s`"))?;
                None
            }
        }
    }

    /// `a->b` with selector lists on both sides.
    fn arrow(&mut self, y: &Y) -> Option<(Vec<String>, Vec<String>)> {
        let Y::Scalar(s) = y else {
            self.err(expected(y, "a direction `a->b`"))?;
            return None;
        };
        let Some((a, b)) = s.s.split_once("->") else {
            self.err(expected(y, "a direction `a->b` (selectors allowed on both sides)"))?;
            return None;
        };
        let sub = |t: &str| Y::Scalar(Scalar { s: t.trim().to_owned(), span: s.span, plain: true });
        let from = self.nodes(&sub(a))?;
        let to = self.nodes(&sub(b))?;
        Some((from, to))
    }

    /// `"a,b c"` (groups by spaces, members by commas) or `[[a, b], [c]]` / `["a,b", c]`.
    fn groups(&mut self, y: &Y) -> Option<Vec<Vec<String>>> {
        match y {
            Y::Scalar(s) => {
                let mut out = Vec::new();
                for g in s.s.split_whitespace() {
                    out.push(self.nodes(&Y::Scalar(Scalar {
                        s: g.to_owned(),
                        span: s.span,
                        plain: true,
                    }))?);
                }
                if out.is_empty() {
                    self.err(expected(y, "groups such as `a,b c`"))?;
                }
                Some(out)
            }
            Y::Seq(items, _) if !items.is_empty() => {
                let mut out = Vec::new();
                for g in items {
                    out.push(self.nodes(g)?);
                }
                Some(out)
            }
            other => {
                self.err(expected(other, "groups: `\"a,b c\"` or `[[a, b], [c]]`"))?;
                None
            }
        }
    }

    fn wait(&mut self, v: &Y, span: Span) -> Option<Step> {
        match v {
            Y::Scalar(s) if s.s.trim() == "converged" => Some(Step {
                span,
                label: "wait converged".into(),
                kind: StepKind::WaitConverged { timeout: DEFAULT_CONVERGE_WAIT },
            }),
            Y::Scalar(s) => {
                let d = self.duration(&Y::Scalar(s.clone()))?;
                Some(Step { span, label: format!("wait {}", fmt_dur(d)), kind: StepKind::Sleep(d) })
            }
            Y::Map(_) => {
                let m = self.map(v, &["converged"])?;
                let timeout = self.duration_at(&m, "converged", DEFAULT_CONVERGE_WAIT)?;
                Some(Step {
                    span,
                    label: format!("wait converged (timeout {})", fmt_dur(timeout)),
                    kind: StepKind::WaitConverged { timeout },
                })
            }
            other => {
                self.err(expected(other, "`converged`, `{converged: 30s}` or a duration such as `2s`"))?;
                None
            }
        }
    }

    /// Two ends of a p2p link (`[a, b]` or `"a b"`), checked against the plan.
    fn p2p_pair(&mut self, y: &Y) -> Option<(String, String)> {
        let (a, b, span) = self.two(y)?;
        let a = self.one_node(&Y::Scalar(Scalar { s: a, span, plain: true }))?;
        let b = self.one_node(&Y::Scalar(Scalar { s: b, span, plain: true }))?;
        if !self.has_link(&a, &b) {
            self.err(
                Diagnostic::new(
                    "topo::no-link",
                    span,
                    format!("there is no point-to-point link between {a} and {b}"),
                )
                .label("no such link"),
            )?;
        }
        Some((a, b))
    }

    fn two(&mut self, y: &Y) -> Option<(String, String, Span)> {
        let parts: Vec<String> = match y {
            Y::Scalar(s) => s.s.split_whitespace().map(str::to_owned).collect(),
            Y::Seq(items, _) => items
                .iter()
                .map(|i| match i {
                    Y::Scalar(s) => s.s.trim().to_owned(),
                    _ => String::new(),
                })
                .collect(),
            _ => Vec::new(),
        };
        if parts.len() == 2 && parts.iter().all(|p| !p.is_empty()) {
            let mut it = parts.into_iter();
            Some((it.next()?, it.next()?, y.span()))
        } else {
            self.err(expected(y, "two names: `[a, b]`"))?;
            None
        }
    }

    fn has_link(&self, a: &str, b: &str) -> bool {
        self.plan.links.iter().any(|l| (l.a.node == a && l.b.node == b) || (l.a.node == b && l.b.node == a))
    }

    fn link(&mut self, v: &Y, span: Span) -> Option<Step> {
        let Y::Map(_) = v else {
            self.err(expected(v, "`{down|up|cut|restore: [a, b]}`"))?;
            return None;
        };
        let m = self.map(v, &["down", "up", "cut", "restore"])?;
        if m.entries.len() != 1 {
            self.err(
                Diagnostic::new("topo::scenario", v.span(), "give exactly one of down, up, cut, restore")
                    .label("here"),
            )?;
        }
        let (action, target) = (&m.entries[0].0.s, &m.entries[0].1);
        let (a, b, tspan) = self.two(target)?;
        let a = self.one_node(&Y::Scalar(Scalar { s: a, span: tspan, plain: true }))?;
        let network = self.plan.fabric.bridges.iter().any(|br| br.network == b);
        let link = if self.plan.node(&b).is_some() && self.has_link(&a, &b) {
            LinkRef::P2p { a: a.clone(), b: b.clone() }
        } else if network {
            let attached = self.plan.node(&a).is_some_and(|n| {
                n.interfaces.iter().any(|i| {
                    matches!(&i.attachment, topo_plan::Attachment::Network { network, .. } if *network == b)
                })
            });
            if !attached {
                self.err(
                    Diagnostic::new("topo::no-link", tspan, format!("{a} is not attached to network {b}"))
                        .label("no such attachment"),
                )?;
            }
            LinkRef::Lan { node: a.clone(), network: b.clone() }
        } else {
            self.err(
                Diagnostic::new("topo::no-link", tspan, format!("there is no link between {a} and {b}"))
                    .label("no such link")
                    .help("name the two ends of a point-to-point link, or a node and a network it is attached to"),
            )?;
            return None;
        };
        let fault = match action.as_str() {
            "down" => Fault::LinkDown { link },
            "up" => Fault::LinkUp { link },
            "cut" => Fault::LinkCut { link },
            _ => Fault::LinkRestore { link },
        };
        Some(Step { span, label: format!("link {action} {a} {b}"), kind: StepKind::Fault(vec![fault]) })
    }

    fn node_fault(&mut self, v: &Y, span: Span) -> Option<Step> {
        let Y::Map(_) = v else {
            self.err(expected(v, "`{kill|pause|resume|stop|start: NODE}`"))?;
            return None;
        };
        let m = self.map(v, &["kill", "pause", "resume", "stop", "start"])?;
        if m.entries.len() != 1 {
            self.err(
                Diagnostic::new(
                    "topo::scenario",
                    v.span(),
                    "give exactly one of kill, pause, resume, stop, start",
                )
                .label("here"),
            )?;
        }
        let (action, target) = (m.entries[0].0.s.clone(), m.entries[0].1.clone());
        let nodes = self.nodes(&target)?;
        let faults = nodes
            .iter()
            .map(|n| {
                let node = n.clone();
                match action.as_str() {
                    "kill" => Fault::NodeKill { node },
                    "pause" => Fault::NodePause { node },
                    "resume" => Fault::NodeResume { node },
                    "stop" => Fault::NodeStop { node },
                    _ => Fault::NodeStart { node },
                }
            })
            .collect();
        Some(Step {
            span,
            label: format!("node {action} {}", nodes.join(",")),
            kind: StepKind::Fault(faults),
        })
    }

    fn impair(&mut self, v: &Y, span: Span) -> Option<Step> {
        let m = self.map(v, &["link", "dir", "delay", "jitter", "loss", "duplicate", "reorder", "rate"])?;
        let Some(link) = m.get("link") else {
            self.err(missing(span, "impair", "link"))?;
            return None;
        };
        let (a, b) = self.p2p_pair(link)?;
        let from = match m.get("dir") {
            None => None,
            Some(d) => {
                let (f, t) = self.arrow(d)?;
                let ok =
                    f.len() == 1 && t.len() == 1 && ((f[0] == a && t[0] == b) || (f[0] == b && t[0] == a));
                if !ok {
                    self.err(
                        Diagnostic::new(
                            "topo::scenario",
                            d.span(),
                            format!("the direction must be {a}->{b} or {b}->{a}"),
                        )
                        .label("not a direction of this link"),
                    )?;
                }
                Some(f[0].clone())
            }
        };
        let mut imp = Impairment::default();
        let mut parts = Vec::new();
        for (k, val) in &m.entries {
            let Y::Scalar(s) = val else {
                if k.s != "link" {
                    self.err(expected(val, "a value"))?;
                }
                continue;
            };
            let r: Result<(), String> = match k.s.as_str() {
                "delay" => parse_duration(&s.s).map(|d| imp.delay = Some(d)),
                "jitter" => parse_duration(&s.s).map(|d| imp.jitter = Some(d)),
                "loss" => parse_percent(&s.s).map(|p| imp.loss = Some(p)),
                "duplicate" => parse_percent(&s.s).map(|p| imp.duplicate = Some(p)),
                "reorder" => parse_percent(&s.s).map(|p| imp.reorder = Some(p)),
                "rate" => parse_rate(&s.s).map(|r| imp.rate = Some(r)),
                _ => continue,
            };
            match r {
                Ok(()) => parts.push(format!("{}={}", k.s, s.s.trim())),
                Err(form) => {
                    self.err(
                        Diagnostic::new("topo::bad-value", s.span, format!("expected {form}")).label("here"),
                    )?;
                }
            }
        }
        if imp.is_none() {
            self.err(
                Diagnostic::new("topo::scenario", span, "`impair` sets nothing")
                    .label("no impairment")
                    .help("give at least one of delay, jitter, loss, duplicate, reorder, rate (use `impair_clear` to clear)"),
            )?;
        }
        let dir = match &from {
            Some(f) if *f == a => format!("{a}->{b}"),
            Some(_) => format!("{b}->{a}"),
            None => format!("{a}<->{b}"),
        };
        Some(Step {
            span,
            label: format!("impair {dir} {}", parts.join(" ")),
            kind: StepKind::Fault(vec![Fault::Impair { a, b, from, impairment: imp }]),
        })
    }

    fn random_partition(&mut self, v: Option<&Y>, span: Span) -> Option<Step> {
        let (seed, nodes, groups) = match v {
            None => (None, self.plan.nodes.iter().map(|n| n.name.clone()).collect::<Vec<_>>(), 2),
            Some(v) => {
                let m = self.map(v, &["seed", "nodes", "groups"])?;
                let seed = match m.get("seed") {
                    None => None,
                    Some(Y::Scalar(s)) if s.s.trim().parse::<u64>().is_ok() => s.s.trim().parse::<u64>().ok(),
                    Some(other) => {
                        self.err(expected(other, "a seed (a whole number)"))?;
                        None
                    }
                };
                let nodes = self.opt_nodes(&m, "nodes")?;
                let groups = match m.get("groups") {
                    None => 2,
                    Some(Y::Scalar(s)) if s.s.trim().parse::<usize>().is_ok_and(|g| g >= 2) => {
                        s.s.trim().parse::<usize>().unwrap_or(2)
                    }
                    Some(other) => {
                        self.err(expected(other, "a number of groups, at least 2"))?;
                        2
                    }
                };
                (seed, nodes, groups)
            }
        };
        if nodes.len() < groups {
            self.err(
                Diagnostic::new(
                    "topo::scenario",
                    span,
                    format!("{} nodes cannot form {groups} groups", nodes.len()),
                )
                .label("too few nodes"),
            )?;
        }
        let label = match seed {
            Some(s) => format!("random_partition {groups} groups (seed {s})"),
            None => format!("random_partition {groups} groups"),
        };
        Some(Step { span, label, kind: StepKind::RandomPartition { seed, nodes, groups } })
    }

    fn reach(&mut self, v: Option<&Y>, span: Span) -> Option<Step> {
        let empty = Map { entries: Vec::new(), span };
        let m = match v {
            None => empty,
            Some(v) => self.map(v, &["from", "to", "proto", "expect", "deadline"])?,
        };
        let proto = self.proto_at(&m)?;
        let deadline = self.duration_at(&m, "deadline", DEFAULT_DEADLINE)?;
        let expect = match m.get("expect") {
            None => ReachExpect::Auto,
            Some(Y::Scalar(s)) => match s.s.trim() {
                "auto" => ReachExpect::Auto,
                "all" => ReachExpect::All,
                "none" => ReachExpect::None,
                _ => {
                    self.err(expected(
                        &Y::Scalar(s.clone()),
                        "`auto`, `all`, `none` or a list of `a -> b` / `a -/-> b`",
                    ))?;
                    return None;
                }
            },
            Some(Y::Seq(lines, _)) => {
                let mut pairs = Vec::new();
                for l in lines {
                    let Y::Scalar(s) = l else {
                        self.err(expected(l, "a line `a -> b` or `a -/-> b`"))?;
                        continue;
                    };
                    let (a, b, reached) = if let Some((a, b)) = s.s.split_once("-/->") {
                        (a, b, false)
                    } else if let Some((a, b)) = s.s.split_once("->") {
                        (a, b, true)
                    } else {
                        self.err(expected(l, "a line `a -> b` (reaches) or `a -/-> b` (must not reach)"))?;
                        continue;
                    };
                    let sub =
                        |t: &str| Y::Scalar(Scalar { s: t.trim().to_owned(), span: s.span, plain: true });
                    let from = self.nodes(&sub(a))?;
                    let to = self.nodes(&sub(b))?;
                    for f in &from {
                        for t in &to {
                            if f != t {
                                pairs.retain(|(pf, pt, _): &(String, String, bool)| !(pf == f && pt == t));
                                pairs.push((f.clone(), t.clone(), reached));
                            }
                        }
                    }
                }
                ReachExpect::Pairs(pairs)
            }
            Some(other) => {
                self.err(expected(other, "`auto`, `all`, `none` or a list of `a -> b` / `a -/-> b`"))?;
                return None;
            }
        };
        let (from, to) = match (&expect, m.get("from"), m.get("to")) {
            (ReachExpect::Pairs(pairs), None, None) => {
                let mut f: Vec<String> = Vec::new();
                let mut t: Vec<String> = Vec::new();
                for (a, b, _) in pairs {
                    if !f.contains(a) {
                        f.push(a.clone());
                    }
                    if !t.contains(b) {
                        t.push(b.clone());
                    }
                }
                (f, t)
            }
            _ => (self.opt_nodes(&m, "from")?, self.opt_nodes(&m, "to")?),
        };
        let what = match &expect {
            ReachExpect::Auto => "auto".to_owned(),
            ReachExpect::All => "all".to_owned(),
            ReachExpect::None => "none".to_owned(),
            ReachExpect::Pairs(p) => format!("{} pairs", p.len()),
        };
        Some(Step {
            span,
            label: format!("reach {proto} {}x{} expect {what}", from.len(), to.len()),
            kind: StepKind::Reach(ReachStep { from, to, proto, expect, deadline }),
        })
    }

    fn nat_free(&mut self, v: &Y, span: Span) -> Option<Step> {
        let m = self.map(v, &["from", "to", "expect", "deadline"])?;
        let from = self.req_nodes(&m, "from", span)?;
        let to = self.req_nodes(&m, "to", span)?;
        let expect_nat_free = match m.get("expect") {
            None => true,
            Some(Y::Scalar(s)) if s.s.trim() == "true" => true,
            Some(Y::Scalar(s)) if s.s.trim() == "false" => false,
            Some(other) => {
                self.err(expected(other, "`true` (no NAT on the way) or `false` (translated)"))?;
                true
            }
        };
        let deadline = self.duration_at(&m, "deadline", DEFAULT_DEADLINE)?;
        let neg = if expect_nat_free { "" } else { " (expect NAT)" };
        Some(Step {
            span,
            label: format!("nat_free {} -> {}{neg}", from.join(","), to.join(",")),
            kind: StepKind::NatFree(NatStep { from, to, expect_nat_free, deadline }),
        })
    }

    fn path(&mut self, v: &Y, span: Span) -> Option<Step> {
        let m = self.map(v, &["from", "to", "via", "deadline"])?;
        let from = self.req_one(&m, "from", span)?;
        let to = self.req_one(&m, "to", span)?;
        let via = match m.get("via") {
            None => {
                self.err(missing(span, "path", "via"))?;
                return None;
            }
            Some(Y::Seq(items, _)) if items.is_empty() => Vec::new(),
            Some(y) => {
                let mut out = Vec::new();
                let items: Vec<Y> = match y {
                    Y::Seq(items, _) => items.clone(),
                    other => vec![other.clone()],
                };
                for i in &items {
                    out.push(self.one_node(i)?);
                }
                out
            }
        };
        let deadline = self.duration_at(&m, "deadline", DEFAULT_DEADLINE)?;
        Some(Step {
            span,
            label: format!("path {from} -> {to} via [{}]", via.join(", ")),
            kind: StepKind::Path(PathStep { from, to, via, deadline }),
        })
    }

    fn req_one(&mut self, m: &Map, key: &str, span: Span) -> Option<String> {
        match m.get(key) {
            Some(y) => self.one_node(y),
            None => {
                self.err(missing(span, "this step", key))?;
                None
            }
        }
    }

    fn converge(&mut self, v: &Y, span: Span) -> Option<Step> {
        let m = self.map(v, &["flows", "fault", "max", "interval", "timeout", "proto"])?;
        let proto = self.proto_at(&m)?;
        let flows_y = match m.get("flows") {
            Some(y) => y.clone(),
            None => {
                self.err(missing(span, "converge", "flows"))?;
                return None;
            }
        };
        let lines: Vec<Y> = match flows_y {
            Y::Seq(items, _) => items,
            other => vec![other],
        };
        let mut flows = Vec::new();
        for l in &lines {
            let (f, t) = self.arrow(l)?;
            for a in &f {
                for b in &t {
                    if a != b {
                        flows.push((a.clone(), b.clone()));
                    }
                }
            }
        }
        let fault = match m.get("fault") {
            None => {
                self.err(missing(span, "converge", "fault"))?;
                return None;
            }
            Some(Y::Scalar(s)) => match crate::fault_text::parse(self.plan, &s.s) {
                Ok(f) => f,
                Err(e) => {
                    self.err(Diagnostic::new("topo::bad-fault", s.span, e).label("not a fault").help(
                        "write the fault as on the command line, e.g. `link cut r1 r2`, `node stop r2`, `partition a b`",
                    ))?;
                    return None;
                }
            },
            Some(y @ Y::Map(_)) => {
                let step = self.step(y, 1)?;
                match step.kind {
                    StepKind::Fault(mut f) if f.len() == 1 => f.remove(0),
                    _ => {
                        self.err(expected(y, "one fault, e.g. `{link: {cut: [r1, r2]}}`"))?;
                        return None;
                    }
                }
            }
            Some(other) => {
                self.err(expected(other, "a fault such as `link cut r1 r2`"))?;
                return None;
            }
        };
        let max = match m.get("max") {
            None => None,
            Some(y) => Some(self.duration(y)?),
        };
        let interval = self.duration_at(&m, "interval", Duration::from_millis(1))?;
        if interval.is_zero() {
            self.err(expected(m.get("interval")?, "an interval above zero"))?;
        }
        let timeout = self.duration_at(&m, "timeout", Duration::from_secs(30))?;
        let flows_label: Vec<String> = flows.iter().map(|(a, b)| format!("{a}->{b}")).collect();
        let max_label = max.map(|d| format!(" (max {})", fmt_dur(d))).unwrap_or_default();
        Some(Step {
            span,
            label: format!(
                "converge {} after {}{max_label}",
                flows_label.join(","),
                crate::fault_text::describe(&fault)
            ),
            kind: StepKind::Converge(ConvergeStep { flows, fault, max, interval, timeout, proto }),
        })
    }

    fn exec(&mut self, v: &Y, span: Span) -> Option<Step> {
        let m = self.map(v, &["node", "cmd", "expect_code", "expect_stdout", "capture"])?;
        let node = self.req_one(&m, "node", span)?;
        let argv: Vec<String> = match m.get("cmd") {
            Some(Y::Scalar(s)) if !s.s.trim().is_empty() => vec!["sh".into(), "-c".into(), s.s.clone()],
            Some(Y::Seq(items, _)) if !items.is_empty() => {
                let mut out = Vec::new();
                for i in items {
                    match i {
                        Y::Scalar(s) => out.push(s.s.clone()),
                        other => {
                            self.err(expected(other, "a command argument"))?;
                        }
                    }
                }
                out
            }
            Some(other) => {
                self.err(expected(other, "a command: a shell line or a list of arguments"))?;
                return None;
            }
            None => {
                self.err(missing(span, "exec", "cmd"))?;
                return None;
            }
        };
        let expect_code = match m.get("expect_code") {
            None => Some(0),
            Some(Y::Scalar(s)) if s.s.trim() == "any" => None,
            Some(Y::Scalar(s)) if s.s.trim().parse::<i32>().is_ok() => s.s.trim().parse::<i32>().ok(),
            Some(other) => {
                self.err(expected(other, "an exit code (a number) or `any`"))?;
                None
            }
        };
        let expect_stdout = match m.get("expect_stdout") {
            None => None,
            Some(Y::Scalar(s)) => {
                let t = s.s.as_str();
                if t.len() >= 2 && t.starts_with('/') && t.ends_with('/') {
                    Some(self.regex(&t[1..t.len() - 1], s.span)?)
                } else {
                    Some(StdoutExpect::Contains(t.to_owned()))
                }
            }
            Some(y @ Y::Map(_)) => {
                let em = self.map(y, &["contains", "regex", "same_as"])?;
                match em.entries.first() {
                    Some((k, Y::Scalar(s))) if em.entries.len() == 1 => match k.s.as_str() {
                        "contains" => Some(StdoutExpect::Contains(s.s.clone())),
                        "regex" => Some(self.regex(&s.s, s.span)?),
                        _ => {
                            if !self.captures.contains(s.s.trim()) {
                                self.err(
                                    Diagnostic::new(
                                        "topo::scenario",
                                        s.span,
                                        format!("no earlier `exec` step captures `{}`", s.s.trim()),
                                    )
                                    .label("unknown capture")
                                    .help("add `capture: NAME` to an earlier exec step"),
                                )?;
                            }
                            Some(StdoutExpect::SameAs(s.s.trim().to_owned()))
                        }
                    },
                    _ => {
                        self.err(expected(y, "one of `contains: TEXT`, `regex: RE`, `same_as: CAPTURE`"))?;
                        None
                    }
                }
            }
            Some(other) => {
                self.err(expected(other, "a substring, `/regex/`, or `{same_as: CAPTURE}`"))?;
                None
            }
        };
        let capture = match m.get("capture") {
            None => None,
            Some(Y::Scalar(s)) if !s.s.trim().is_empty() => {
                self.captures.insert(s.s.trim().to_owned());
                Some(s.s.trim().to_owned())
            }
            Some(other) => {
                self.err(expected(other, "a name for the captured output"))?;
                None
            }
        };
        let shown = if argv.len() == 3 && argv[0] == "sh" && argv[1] == "-c" {
            argv[2].clone()
        } else {
            argv.join(" ")
        };
        Some(Step {
            span,
            label: format!("exec {node}: {shown}"),
            kind: StepKind::Exec(ExecStep { node, argv, expect_code, expect_stdout, capture }),
        })
    }

    fn regex(&mut self, re: &str, span: Span) -> Option<StdoutExpect> {
        match regex::Regex::new(re) {
            Ok(r) => Some(StdoutExpect::Regex(r)),
            Err(e) => {
                self.err(
                    Diagnostic::new("topo::bad-value", span, format!("invalid regular expression: {e}"))
                        .label("here"),
                )?;
                None
            }
        }
    }
}

fn check_keys(m: &Map, allowed: &[&str], what: &str, out: &mut Vec<Diagnostic>) {
    for (k, _) in &m.entries {
        if !allowed.contains(&k.s.as_str()) {
            let mut d =
                Diagnostic::new("topo::unknown-key", k.span, format!("unknown key `{}` in {what}", k.s))
                    .label("unknown key");
            d = match suggest(&k.s, allowed.iter().copied()) {
                Some(s) => d.help(format!("did you mean `{s}`?")),
                None => d.help(format!("allowed keys: {}", allowed.join(", "))),
            };
            out.push(d);
        }
    }
}

fn expected(y: &Y, what: &str) -> Diagnostic {
    Diagnostic::new("topo::bad-value", y.span(), format!("expected {what}, found {}", y.kind_name()))
        .label("here")
}

fn missing(span: Span, what: &str, key: &str) -> Diagnostic {
    Diagnostic::new("topo::missing-key", span, format!("{what} needs `{key}:`"))
        .label(format!("`{key}` missing"))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn suggest<'a>(s: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (s.len() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(s, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `250us`, `50ms`, `1.5s`, `2m`: the unit is required.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    const FORM: &str = "a duration with a unit: `250us`, `50ms`, `1.5s`, `2m`";
    let s = s.trim();
    let end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(end);
    let v: f64 = num.parse().map_err(|_| FORM.to_owned())?;
    let secs = match unit.trim() {
        "us" | "µs" => v / 1e6,
        "ms" => v / 1e3,
        "s" => v,
        "m" | "min" => v * 60.0,
        "" => return Err(format!("{FORM} (the unit is missing)")),
        u => return Err(format!("{FORM} (unknown unit `{u}`)")),
    };
    if !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("{FORM}, at most one day"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `5%`, `0.5%` (0 to 100).
pub fn parse_percent(s: &str) -> Result<f64, String> {
    const FORM: &str = "a percentage from 0% to 100%, such as `5%`";
    let v: f64 = s.trim().strip_suffix('%').ok_or(FORM)?.trim().parse().map_err(|_| FORM.to_owned())?;
    if (0.0..=100.0).contains(&v) {
        Ok(v)
    } else {
        Err(FORM.to_owned())
    }
}

/// `512kbit`, `10mbit`, `1gbit` in bits per second.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    const FORM: &str = "a rate such as `512kbit`, `10mbit`, `1gbit`";
    let s = s.trim().to_ascii_lowercase();
    let end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(end);
    let v: f64 = num.parse().map_err(|_| FORM.to_owned())?;
    let mult = match unit {
        "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        _ => return Err(FORM.to_owned()),
    };
    let bits = v * mult;
    if (1.0..=1e12).contains(&bits) {
        Ok(bits as u64)
    } else {
        Err(FORM.to_owned())
    }
}

/// `1.5s`, `250ms`, `40us`.
pub fn fmt_dur(d: Duration) -> String {
    let us = d.as_micros();
    if us >= 1_000_000 && us % 1000 == 0 {
        format!("{}s", d.as_secs_f64())
    } else if us >= 1000 && us % 1000 == 0 {
        format!("{}ms", us / 1000)
    } else if us >= 1000 {
        format!("{:.3}ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{us}us")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_forms() {
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("5").unwrap_err().contains("unit is missing"));
        assert!(parse_duration("5 parsecs").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("2d").is_err());
        assert_eq!(parse_percent("2.5%"), Ok(2.5));
        assert!(parse_percent("2.5").is_err());
        assert!(parse_percent("101%").is_err());
        assert_eq!(parse_rate("10mbit"), Ok(10_000_000));
        assert!(parse_rate("10mbps").is_err());
        assert_eq!(fmt_dur(Duration::from_millis(500)), "500ms");
        assert_eq!(fmt_dur(Duration::from_secs(6)), "6s");
    }

    #[test]
    fn counter_overrides_keep_offsets_when_narrowing() {
        let text = "nodes:\n  web-{1..12}: {}\n  db: {}\nlinks: [[web-{1..12}, db]]\n";
        let out = apply_counter_overrides(text, &[("web-".into(), 3, Span::default())]).unwrap();
        assert_eq!(out, "nodes:\n  web-{1..3 }: {}\n  db: {}\nlinks: [[web-{1..3 }, db]]\n");
        assert_eq!(out.len(), text.len());
        assert_eq!(out.find("db"), text.find("db"));
        // Widening works too (later offsets shift).
        let out = apply_counter_overrides("a-{1..2}", &[("a-".into(), 20, Span::default())]).unwrap();
        assert_eq!(out, "a-{1..20}");
        // `myweb-` is a different counter than `web-`.
        let err =
            apply_counter_overrides("myweb-{1..3}", &[("web-".into(), 2, Span::default())]).unwrap_err();
        assert!(err.help.unwrap().contains("`myweb-`"));
    }
}
