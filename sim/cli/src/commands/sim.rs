//! `topo sim FILE [--fault SPEC]... [reach|path A B|nat A B|routes [NODE]] [--json]`: answer
//! on the model backend — no root, no namespaces.

use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use tabled::builder::Builder;
use tabled::settings::Style;
use topo_lab::{Lab, LabError, Proto, ReachMatrix, ReachRequest};
use topo_model::ModelLab;
use topo_plan::Plan;

use crate::exit_code;

#[derive(Debug, Args)]
pub struct SimArgs {
    /// Topology file.
    pub file: PathBuf,
    /// Apply a fault first (repeatable, in order): 'partition a,b c', 'oneway a->b', 'heal',
    /// 'link down|up|cut|restore A B', 'link down NODE NETWORK', 'node stop|start|kill|pause|resume N',
    /// 'impair A B loss=100% dir=A->B'.
    #[arg(long = "fault", value_name = "SPEC", global = true)]
    pub faults: Vec<String>,
    /// Print JSON on stdout instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to ask (default: the all-pairs ICMP reachability matrix).
    #[command(subcommand)]
    pub query: Option<SimQuery>,
}

#[derive(Debug, Subcommand)]
pub enum SimQuery {
    /// Reachability matrix between node selections.
    Reach {
        /// Source nodes (comma-separated selectors: names, globs, groups, label=value). Default: all.
        #[arg(long)]
        from: Option<String>,
        /// Destination nodes. Default: all.
        #[arg(long)]
        to: Option<String>,
        /// icmp, udp[:PORT] or tcp[:PORT].
        #[arg(long, default_value = "icmp")]
        proto: String,
    },
    /// Hop path from A to B's primary address (like traceroute).
    Path { a: String, b: String },
    /// Source address B observes for traffic from A (NAT check).
    Nat { a: String, b: String },
    /// Forwarding tables (one node, or all).
    Routes { node: Option<String> },
}

/// Load a topology file into a plan, printing diagnostics on failure.
pub(crate) fn load_plan(file: &Path) -> Result<Plan, i32> {
    topo_plan::plan_file(file).map_err(|diags| {
        let color =
            std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
        eprint!("{}", topo_spec::render(&diags, color));
        exit_code::INVALID_INPUT
    })
}

fn usage_error(e: &LabError) -> i32 {
    eprintln!("error: {e}");
    match e {
        LabError::UnknownNode(_) | LabError::Invalid(_) => exit_code::USAGE,
        _ => exit_code::LAB_ERROR,
    }
}

fn print_json<T: serde::Serialize>(v: &T) {
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

fn print(text: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

pub fn run(args: SimArgs) -> i32 {
    let plan = match load_plan(&args.file) {
        Ok(p) => p,
        Err(code) => return code,
    };
    match run_on(plan, &args) {
        Ok(()) => exit_code::OK,
        Err(e) => usage_error(&e),
    }
}

/// The command on an already loaded plan (tests call this directly).
pub fn run_on(plan: Plan, args: &SimArgs) -> Result<(), LabError> {
    let mut lab = ModelLab::new(plan);
    for spec in &args.faults {
        let fault = topo_lab::fault_text::parse_fault(lab.plan(), spec)?;
        lab.apply(&fault)?;
    }
    let default_query = SimQuery::Reach { from: None, to: None, proto: "icmp".into() };
    let query = args.query.as_ref().unwrap_or(&default_query);
    match query {
        SimQuery::Reach { from, to, proto } => {
            let proto: Proto = proto.parse().map_err(LabError::Invalid)?;
            let all = || lab.plan().nodes.iter().map(|n| n.name.clone()).collect::<Vec<_>>();
            let sel = |s: &Option<String>| match s {
                Some(s) => topo_lab::select::select_list(lab.plan(), s),
                None => Ok(all()),
            };
            let req = ReachRequest { from: sel(from)?, to: sel(to)?, proto };
            let m = lab.reach(&req)?;
            if args.json {
                print_json(&m);
            } else {
                print(&render_matrix(&req, &m));
            }
        }
        SimQuery::Path { a, b } => {
            let p = lab.path(&one(&lab, a)?, &one(&lab, b)?)?;
            if args.json {
                print_json(&p);
            } else {
                let mut t = Builder::default();
                t.push_record(["#", "node", "address"]);
                for (i, h) in p.hops.iter().enumerate() {
                    t.push_record([
                        (i + 1).to_string(),
                        h.node.clone().unwrap_or_else(|| "?".into()),
                        h.addr.to_string(),
                    ]);
                }
                print(&t.build().with(Style::rounded()).to_string());
                match &p.reason {
                    None => print(&format!("{} → {}: delivered in {} hops", p.from, p.to, p.hops.len())),
                    Some(r) => print(&format!("{} → {}: NOT delivered: {r}", p.from, p.to)),
                }
            }
        }
        SimQuery::Nat { a, b } => {
            let r = lab.nat(&one(&lab, a)?, &one(&lab, b)?)?;
            if args.json {
                print_json(&serde_json::json!({ "result": r, "nat_free": r.nat_free() }));
            } else {
                let seen = r.observed_src.map_or_else(|| "nothing arrived".to_owned(), |a| a.to_string());
                let verdict = if r.nat_free() { "NAT-free" } else { "NOT NAT-free" };
                print(&format!(
                    "{} → {}: sent from {}, {} observed {seen}: {verdict}",
                    r.from, r.to, r.sent_src, r.to
                ));
            }
        }
        SimQuery::Routes { node } => {
            let model = lab.model();
            let nodes: Vec<String> = match node {
                Some(sel) => topo_lab::select::select_list(lab.plan(), sel)?,
                None => lab.plan().nodes.iter().map(|n| n.name.clone()).collect(),
            };
            let mut all = std::collections::BTreeMap::new();
            for n in &nodes {
                all.insert(n.clone(), model.routes(n)?);
            }
            if args.json {
                print_json(&all);
            } else {
                let mut t = Builder::default();
                t.push_record(["node", "to", "via", "dev", "metric", "origin"]);
                for n in &nodes {
                    for r in &all[n] {
                        t.push_record([
                            n.clone(),
                            r.to.to_string(),
                            r.via.map(|v| v.to_string()).unwrap_or_default(),
                            r.dev.clone(),
                            r.metric.to_string(),
                            r.origin.to_string(),
                        ]);
                    }
                }
                print(&t.build().with(Style::rounded()).to_string());
            }
        }
    }
    Ok(())
}

fn one(lab: &ModelLab, sel: &str) -> Result<String, LabError> {
    let v = topo_lab::select::select(lab.plan(), sel)?;
    match v.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(LabError::Invalid(format!("{sel:?} matches {} nodes; name exactly one", v.len()))),
    }
}

/// Largest destination count drawn as a grid; beyond it only the failures are listed.
const GRID_MAX: usize = 24;

fn render_matrix(req: &ReachRequest, m: &ReachMatrix) -> String {
    let mut out = String::new();
    if req.to.len() <= GRID_MAX && req.from.len() <= 200 {
        let mut t = Builder::default();
        let mut head = vec![format!("from \\ to ({})", m.proto)];
        head.extend(req.to.iter().cloned());
        t.push_record(head);
        for f in &req.from {
            let mut row = vec![f.clone()];
            for to in &req.to {
                row.push(match m.get(f, to) {
                    None => "·".into(),
                    Some(p) if p.reached => "ok".into(),
                    Some(_) => "--".into(),
                });
            }
            t.push_record(row);
        }
        out.push_str(&t.build().with(Style::rounded()).to_string());
        out.push('\n');
    }
    let failed: Vec<_> = m.pairs.iter().filter(|p| !p.reached).collect();
    if !failed.is_empty() {
        let mut t = Builder::default();
        t.push_record(["from", "to", "address", "why"]);
        for p in &failed {
            t.push_record([
                p.from.clone(),
                p.to.clone(),
                p.to_addr.to_string(),
                p.reason.clone().unwrap_or_default(),
            ]);
        }
        out.push_str(&t.build().with(Style::rounded()).to_string());
        out.push('\n');
    }
    let _ = write!(out, "{}/{} pairs reached ({})", m.pairs.len() - failed.len(), m.pairs.len(), m.proto);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(faults: &[&str], query: Option<SimQuery>) -> SimArgs {
        SimArgs {
            file: PathBuf::from("unused.yaml"),
            faults: faults.iter().map(|f| (*f).to_owned()).collect(),
            json: true,
            query,
        }
    }

    fn plan() -> Plan {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        topo_plan::plan_file(&root.join("topologies/triangle.yaml")).expect("example topology")
    }

    #[test]
    fn answers_every_query_and_rejects_bad_input() {
        let p = plan();
        for q in [
            None,
            Some(SimQuery::Reach {
                from: Some("h*".into()),
                to: Some("r1,r2".into()),
                proto: "udp:53".into(),
            }),
            Some(SimQuery::Path { a: "h1".into(), b: "h3".into() }),
            Some(SimQuery::Nat { a: "h1".into(), b: "h3".into() }),
            Some(SimQuery::Routes { node: Some("r1".into()) }),
        ] {
            run_on(p.clone(), &args(&["link cut r1 r2", "partition h1 h2"], q)).expect("query answers");
        }
        let bad =
            |faults: &[&str], q: Option<SimQuery>| run_on(plan(), &args(faults, q)).expect_err("must fail");
        assert!(matches!(bad(&["link melt r1 r2"], None), LabError::Invalid(_)));
        assert!(matches!(bad(&["node stop nobody"], None), LabError::UnknownNode(_)));
        assert!(matches!(
            bad(&[], Some(SimQuery::Path { a: "h*".into(), b: "h1".into() })),
            LabError::Invalid(_)
        ));
        let proto = Some(SimQuery::Reach { from: None, to: None, proto: "sctp".into() });
        assert!(matches!(bad(&[], proto), LabError::Invalid(_)));
    }

    #[test]
    fn matrix_table_lists_failures_with_reasons() {
        let mut lab = ModelLab::new(plan());
        lab.apply(&topo_lab::Fault::NodeStop { node: "r3".into() }).expect("stop");
        let names: Vec<String> = lab.plan().nodes.iter().map(|n| n.name.clone()).collect();
        let req = ReachRequest { from: names.clone(), to: names, proto: Proto::Icmp };
        let m = lab.reach(&req).expect("reach");
        let text = render_matrix(&req, &m);
        assert!(text.contains("from \\ to (icmp)"), "{text}");
        assert!(text.contains("h1   │ h3"), "{text}");
        let reached = m.pairs.iter().filter(|p| p.reached).count();
        assert!(text.ends_with(&format!("{reached}/30 pairs reached (icmp)")), "{text}");
    }
}
