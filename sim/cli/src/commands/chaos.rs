//! Fault commands: `partition`, `heal` (alias `join`), `link`, `node`, `impair`, and the hidden
//! `__delayer` entry point of the userspace impairment process. Every fault goes through
//! `KernelLab::apply`, which journals it (faults.json, events.jsonl) and enforces it.

use std::time::Duration;

use clap::{Args, ValueEnum};
use rand::Rng;
use topo_lab::{Fault, FaultState, Lab, LinkRef};
use topo_plan::{Attachment, Plan};
use topo_spec::Impairment;

use crate::exit_code;

#[derive(Debug, Args)]
pub struct LabArg {
    /// Lab name or topology file (default: the only lab that is up).
    #[arg(long, value_name = "LAB|FILE")]
    pub lab: Option<String>,
    /// Print the resulting fault state as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PartitionArgs {
    #[command(flatten)]
    pub lab: LabArg,
    /// Groups of nodes, each a comma list of names, patterns (`web-*`), group names or
    /// `label=value`. Nodes not named form one more group. Groups may overlap.
    #[arg(value_name = "GROUP")]
    pub groups: Vec<String>,
    /// One-way cut `A->B`: A's traffic to B is dropped, B's to A still flows (comma lists allowed).
    #[arg(long, value_name = "A->B")]
    pub oneway: Vec<String>,
    /// Directed drop `FROM->TO` (Jepsen's grudge; comma lists allowed). Same as --oneway.
    #[arg(long = "drop", value_name = "FROM->TO")]
    pub drops: Vec<String>,
    /// A random partition (2 or 3 groups); reproducible with --seed, which is printed.
    #[arg(long)]
    pub random: bool,
    #[arg(long, requires = "random")]
    pub seed: Option<u64>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LinkAction {
    /// Carrier loss on both ends (cable pulled).
    Down,
    Up,
    /// Silent loss, carrier stays up (broken switch).
    Cut,
    Restore,
}

#[derive(Debug, Args)]
pub struct LinkArgs {
    #[command(flatten)]
    pub lab: LabArg,
    pub action: LinkAction,
    /// A node.
    pub a: String,
    /// The node at the other end of a link, or a network `a` is attached to.
    pub b: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum NodeAction {
    /// SIGKILL every process in the node (links stay up).
    Kill,
    /// SIGSTOP every process in the node.
    Pause,
    /// SIGCONT every process in the node.
    Resume,
    /// All interfaces down (off the network).
    Stop,
    /// Interfaces up again with the same addresses, MACs and routes.
    Start,
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    #[command(flatten)]
    pub lab: LabArg,
    pub action: NodeAction,
    pub node: String,
}

#[derive(Debug, Args)]
pub struct ImpairArgs {
    #[command(flatten)]
    pub lab: LabArg,
    /// One end of a point-to-point link.
    pub a: Option<String>,
    /// The other end.
    pub b: Option<String>,
    /// Added one-way delay, e.g. `50ms`.
    #[arg(long, value_parser = parse_duration)]
    pub delay: Option<Duration>,
    /// Uniform jitter around the delay, e.g. `5ms`.
    #[arg(long, value_parser = parse_duration)]
    pub jitter: Option<Duration>,
    /// Random loss, e.g. `2%`.
    #[arg(long, value_parser = parse_percent)]
    pub loss: Option<f64>,
    #[arg(long, value_parser = parse_percent)]
    pub duplicate: Option<f64>,
    /// Share of packets sent without the delay (jumping ahead), e.g. `10%`.
    #[arg(long, value_parser = parse_percent)]
    pub reorder: Option<f64>,
    /// Rate limit, e.g. `10mbit`.
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<u64>,
    /// Only this direction, `A->B` (default: both directions).
    #[arg(long, value_name = "A->B")]
    pub dir: Option<String>,
    /// Remove runtime impairments (of the link A B, or of every link); the topology file's
    /// own impairments stay.
    #[arg(long)]
    pub clear: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else {
        return Err("a duration with a unit: `250us`, `50ms`, `1.5s`".into());
    };
    let v: f64 = num.trim().parse().map_err(|_| format!("bad duration {s:?}"))?;
    if !(0.0..=3600.0).contains(&(v * mult)) {
        return Err("a duration between 0 and 1h".into());
    }
    Ok(Duration::from_secs_f64(v * mult))
}

fn parse_percent(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .strip_suffix('%')
        .ok_or("a percentage such as `2%`")?
        .trim()
        .parse()
        .map_err(|_| format!("bad percentage {s:?}"))?;
    if (0.0..=100.0).contains(&v) {
        Ok(v)
    } else {
        Err("a percentage between 0% and 100%".into())
    }
}

fn parse_rate(s: &str) -> Result<u64, String> {
    let l = s.trim().to_ascii_lowercase();
    let (num, mult) = [("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3), ("bit", 1.0)]
        .iter()
        .find_map(|(u, m)| l.strip_suffix(u).map(|n| (n.to_owned(), *m)))
        .ok_or("a rate such as `512kbit`, `10mbit`, `1gbit` (bits per second)")?;
    let v: f64 = num.trim().parse().map_err(|_| format!("bad rate {s:?}"))?;
    let bits = v * mult;
    if (1000.0..=1e12).contains(&bits) {
        Ok(bits as u64)
    } else {
        Err("a rate between 1kbit and 1000gbit".into())
    }
}

fn fail(msg: impl std::fmt::Display, code: i32) -> i32 {
    eprintln!("error: {msg}");
    code
}

fn open(lab: &LabArg) -> Result<topo_kernel::KernelLab, i32> {
    let name = topo_kernel::resolve_lab(lab.lab.as_deref()).map_err(|e| fail(e, exit_code::LAB_ERROR))?;
    topo_kernel::KernelLab::open_lab(&name).map_err(|e| {
        let code = if e.is_locked() { exit_code::LOCKED } else { exit_code::LAB_ERROR };
        fail(e, code)
    })
}

fn apply_and_print(lab: &mut topo_kernel::KernelLab, faults: &[Fault], args: &LabArg, summary: &str) -> i32 {
    for f in faults {
        if let Err(e) = lab.apply(f) {
            let code = match e {
                topo_lab::LabError::UnknownNode(_) | topo_lab::LabError::Invalid(_) => exit_code::USAGE,
                _ => exit_code::LAB_ERROR,
            };
            return fail(e, code);
        }
    }
    print_state(lab.faults(), args.json, summary);
    exit_code::OK
}

fn print_state(state: &FaultState, json: bool, summary: &str) {
    if json {
        println!("{}", serde_json::to_string_pretty(state).unwrap_or_default());
        return;
    }
    if !summary.is_empty() {
        println!("{summary}");
    }
    if let Some(groups) = &state.partition {
        for (i, g) in groups.iter().enumerate() {
            println!("group {}: {}", i + 1, g.join(" "));
        }
    }
    let extra: Vec<String> = state
        .drops
        .iter()
        .filter(|(f, t)| {
            state
                .partition
                .as_ref()
                .is_none_or(|groups| groups.iter().any(|g| g.contains(f) && g.contains(t)))
        })
        .map(|(f, t)| format!("{f}->{t}"))
        .collect();
    if !extra.is_empty() {
        println!("one-way drops: {}", extra.join(" "));
    }
}

fn sel(plan: &Plan, list: &str) -> Result<Vec<String>, i32> {
    topo_lab::select::select_list(plan, list).map_err(|e| fail(e, exit_code::USAGE))
}

fn directed(plan: &Plan, spec: &str) -> Result<Fault, i32> {
    let (from, to) = spec
        .split_once("->")
        .ok_or_else(|| fail(format!("{spec:?}: expected FROM->TO, e.g. a->b or a,b->c"), exit_code::USAGE))?;
    Ok(Fault::Drop { from: sel(plan, from)?, to: sel(plan, to)? })
}

pub fn partition(args: &PartitionArgs) -> i32 {
    let mut lab = match open(&args.lab) {
        Ok(l) => l,
        Err(c) => return c,
    };
    let plan = lab.plan().clone();
    let mut faults = Vec::new();
    let mut summary = String::new();
    if args.random {
        let seed = args.seed.unwrap_or_else(|| rand::thread_rng().gen());
        summary = format!("seed {seed}");
        faults.push(Fault::Partition { groups: topo_chaos::random_partition(&plan, seed) });
    } else if !args.groups.is_empty() {
        let mut groups = Vec::new();
        for g in &args.groups {
            match sel(&plan, g) {
                Ok(v) => groups.push(v),
                Err(c) => return c,
            }
        }
        faults.push(Fault::Partition { groups });
    }
    for d in args.oneway.iter().chain(&args.drops) {
        match directed(&plan, d) {
            Ok(f) => faults.push(f),
            Err(c) => return c,
        }
    }
    if faults.is_empty() {
        return fail(
            "give groups, --oneway A->B, --drop FROM->TO or --random (use `topo heal` to undo)",
            exit_code::USAGE,
        );
    }
    apply_and_print(&mut lab, &faults, &args.lab, &summary)
}

pub fn heal(args: &LabArg) -> i32 {
    let mut lab = match open(args) {
        Ok(l) => l,
        Err(c) => return c,
    };
    apply_and_print(&mut lab, &[Fault::Heal], args, "healed: every node reaches every other")
}

fn link_ref(plan: &Plan, a: &str, b: &str) -> Result<LinkRef, i32> {
    if plan.links.iter().any(|l| (l.a.node == a && l.b.node == b) || (l.a.node == b && l.b.node == a)) {
        return Ok(LinkRef::P2p { a: a.to_owned(), b: b.to_owned() });
    }
    let on_net = plan.node(a).is_some_and(|n| {
        n.interfaces
            .iter()
            .any(|i| matches!(&i.attachment, Attachment::Network { network, .. } if network == b))
    });
    if on_net {
        return Ok(LinkRef::Lan { node: a.to_owned(), network: b.to_owned() });
    }
    Err(fail(
        format!("no link between {a} and {b}, and {a} is not attached to a network {b}"),
        exit_code::USAGE,
    ))
}

pub fn link(args: &LinkArgs) -> i32 {
    let mut lab = match open(&args.lab) {
        Ok(l) => l,
        Err(c) => return c,
    };
    let link = match link_ref(lab.plan(), &args.a, &args.b) {
        Ok(l) => l,
        Err(c) => return c,
    };
    let f = match args.action {
        LinkAction::Down => Fault::LinkDown { link },
        LinkAction::Up => Fault::LinkUp { link },
        LinkAction::Cut => Fault::LinkCut { link },
        LinkAction::Restore => Fault::LinkRestore { link },
    };
    let what = format!("link {} {} {:?}", args.a, args.b, args.action).to_lowercase();
    apply_and_print(&mut lab, &[f], &args.lab, &what)
}

pub fn node(args: &NodeArgs) -> i32 {
    let mut lab = match open(&args.lab) {
        Ok(l) => l,
        Err(c) => return c,
    };
    let node = args.node.clone();
    let f = match args.action {
        NodeAction::Kill => Fault::NodeKill { node },
        NodeAction::Pause => Fault::NodePause { node },
        NodeAction::Resume => Fault::NodeResume { node },
        NodeAction::Stop => Fault::NodeStop { node },
        NodeAction::Start => Fault::NodeStart { node },
    };
    let what = format!("node {} {:?}", args.node, args.action).to_lowercase();
    apply_and_print(&mut lab, &[f], &args.lab, &what)
}

pub fn impair(args: &ImpairArgs) -> i32 {
    let mut lab = match open(&args.lab) {
        Ok(l) => l,
        Err(c) => return c,
    };
    let fault = if args.clear {
        match (&args.a, &args.b) {
            (Some(a), Some(b)) => Fault::ImpairClear { link: Some((a.clone(), b.clone())) },
            (None, None) => Fault::ImpairClear { link: None },
            _ => return fail("--clear takes both ends of a link or none", exit_code::USAGE),
        }
    } else {
        let (Some(a), Some(b)) = (&args.a, &args.b) else {
            return fail("name the link: topo impair A B --delay 50ms ...", exit_code::USAGE);
        };
        let from = match &args.dir {
            None => None,
            Some(dir) => match dir.split_once("->") {
                Some((src, dst)) if (src == a && dst == b) || (src == b && dst == a) => Some(src.to_owned()),
                _ => return fail(format!("--dir {dir}: expected {a}->{b} or {b}->{a}"), exit_code::USAGE),
            },
        };
        let impairment = Impairment {
            delay: args.delay,
            jitter: args.jitter,
            loss: args.loss,
            duplicate: args.duplicate,
            reorder: args.reorder,
            rate: args.rate,
        };
        if impairment.is_none() {
            return fail(
                "give at least one of --delay --jitter --loss --duplicate --reorder --rate, or --clear",
                exit_code::USAGE,
            );
        }
        if impairment.jitter.is_some() && impairment.delay.is_none() {
            return fail("--jitter needs --delay", exit_code::USAGE);
        }
        Fault::Impair { a: a.clone(), b: b.clone(), from, impairment }
    };
    let mut code = apply_and_print(&mut lab, &[fault], &args.lab, "");
    if code == exit_code::OK && !args.lab.json {
        for ((s, r), imp) in &lab.faults().impairments {
            println!("{s}->{r}: {}", describe(imp));
        }
        code = exit_code::OK;
    }
    code
}

fn describe(i: &Impairment) -> String {
    let mut parts = Vec::new();
    if let Some(d) = i.delay {
        parts.push(format!("delay {d:?}"));
    }
    if let Some(j) = i.jitter {
        parts.push(format!("jitter {j:?}"));
    }
    if let Some(l) = i.loss {
        parts.push(format!("loss {l}%"));
    }
    if let Some(d) = i.duplicate {
        parts.push(format!("duplicate {d}%"));
    }
    if let Some(r) = i.reorder {
        parts.push(format!("reorder {r}%"));
    }
    if let Some(r) = i.rate {
        parts.push(format!("rate {r}bit/s"));
    }
    parts.join(", ")
}

/// `topo __delayer ...` (hidden): the userspace impairment process.
pub fn delayer(args: &[String]) -> i32 {
    topo_chaos::delayer_main(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_parsers() {
        assert_eq!(parse_duration("50ms").unwrap(), Duration::from_millis(50));
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert!(parse_duration("50").is_err());
        assert!((parse_percent("2.5%").unwrap() - 2.5).abs() < 1e-9);
        assert!(parse_percent("101%").is_err());
        assert_eq!(parse_rate("10mbit").unwrap(), 10_000_000);
        assert!(parse_rate("10mbps").is_err());
    }
}
