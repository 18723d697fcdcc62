//! `topo check`: assertions on live traffic in a kernel lab — the reachability matrix (with
//! expectations derived from the model), NAT-free delivery, hop paths and convergence time —
//! plus the hidden `__responder` entry point of the per-node responder process.
//!
//! Exit codes: 0 when every assertion holds, 1 (ASSERTION_FAILED) on a mismatch, 2 on bad
//! arguments, 4 when the lab cannot be opened or probed.

use std::collections::HashMap;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use topo_lab::{ConvergeRequest, Flow, Lab, Proto, ReachRequest};
use topo_probe::{PairDetail, ProbeOpts};

use crate::exit_code;

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(subcommand)]
    pub what: CheckCmd,
}

#[derive(Debug, Subcommand)]
pub enum CheckCmd {
    /// The reachability matrix of the selected pairs (all by default). With --expect, mismatches
    /// are listed pair by pair and the exit code is 1.
    Reach(ReachArgs),
    /// Does B see the source address and port A sent from? Exit 1 when something rewrote it.
    Nat(NatArgs),
    /// The hop list from A to B by TTL-limited probes; --via asserts the routers in order.
    Path(PathArgs),
    /// Inject a fault while probe streams run; report outage and time to stable per flow.
    Converge(ConvergeArgs),
}

#[derive(Debug, Args)]
pub struct LabOpt {
    /// Lab name or topology file (default: the only lab that is up).
    #[arg(long, value_name = "LAB|FILE")]
    pub lab: Option<String>,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReachArgs {
    #[command(flatten)]
    pub lab: LabOpt,
    /// Source nodes: comma list of names, patterns, groups or label=value (default: all).
    #[arg(long, value_name = "SEL")]
    pub from: Option<String>,
    /// Destination nodes (default: all).
    #[arg(long, value_name = "SEL")]
    pub to: Option<String>,
    /// icmp (round trip), udp[:PORT] (one way, seen by topo's listener), tcp[:PORT] (connect).
    #[arg(long, default_value = "icmp")]
    pub proto: String,
    /// `auto`: what the model predicts for the topology and the active faults; or a JSON file
    /// with `pairs: [{from, to, reached}]` (e.g. an earlier `--json` output).
    #[arg(long, value_name = "auto|FILE")]
    pub expect: Option<String>,
    /// Also fail pairs whose receiver saw another source address/port than the sender's
    /// (ICMP matrices get an extra UDP pass for this).
    #[arg(long)]
    pub nat_free: bool,
    /// Keep re-probing pairs that disagree with the expectation this long (routing is
    /// eventually consistent). A pair counts as not reached after 3 unanswered rounds (waiting
    /// 100, 200, 400 ms), so without --expect, and for pairs expected cut, a run takes about
    /// 0.7 s more than its probes.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub deadline: Duration,
}

#[derive(Debug, Args)]
pub struct NatArgs {
    #[command(flatten)]
    pub lab: LabOpt,
    pub a: String,
    pub b: String,
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub deadline: Duration,
}

#[derive(Debug, Args)]
pub struct PathArgs {
    #[command(flatten)]
    pub lab: LabOpt,
    pub a: String,
    pub b: String,
    /// Expected routers between A and B, in order (comma list).
    #[arg(long, value_name = "R1,R2")]
    pub via: Option<String>,
    /// Trace again until the path is delivered (along --via, if given) or this much time has passed.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub deadline: Duration,
}

#[derive(Debug, Args)]
pub struct ConvergeArgs {
    #[command(flatten)]
    pub lab: LabOpt,
    /// A probe stream FROM->TO (repeatable).
    #[arg(long, value_name = "A->B", required = true)]
    pub flow: Vec<String>,
    /// The fault to inject, e.g. 'link down r1 r2', 'partition a b', 'node stop r2'.
    #[arg(long)]
    pub fault: String,
    /// Stream kind: icmp (echo), udp[:PORT] (datagrams echoed by topo's listener in the
    /// destination, or by a topo responder holding the port), tcp[:PORT] (one new connection
    /// per probe; a probe succeeds when the handshake completes). Each probe is a round trip.
    #[arg(long, default_value = "icmp")]
    pub proto: String,
    /// Time between probes of one flow.
    #[arg(long, default_value = "1ms", value_parser = parse_duration)]
    pub interval: Duration,
    /// Give up waiting for stability this long after the fault.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// K: consecutive successes after the last loss that count as stable.
    #[arg(long, default_value_t = 50)]
    pub stable: u32,
    /// A flow without loss for this long after the fault is reported unaffected.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub quiet: Duration,
}

/// `250us`, `1ms`, `1.5s`, `2m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let v: f64 = num.parse().map_err(|_| format!("{s:?}: expected a duration like 500ms, 5s, 1m"))?;
    let secs = match unit {
        "us" | "µs" => v / 1e6,
        "ms" => v / 1e3,
        "s" => v,
        "m" => v * 60.0,
        _ => return Err(format!("{s:?}: give a unit (us, ms, s, m)")),
    };
    if !secs.is_finite() || !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("{s:?}: out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn fail(msg: impl std::fmt::Display, code: i32) -> i32 {
    eprintln!("error: {msg}");
    code
}

fn open(lab: &LabOpt) -> Result<topo_kernel::KernelLab, i32> {
    let name = topo_kernel::resolve_lab(lab.lab.as_deref()).map_err(|e| fail(e, exit_code::LAB_ERROR))?;
    topo_kernel::KernelLab::open_lab(&name).map_err(|e| {
        let code = if e.is_locked() { exit_code::LOCKED } else { exit_code::LAB_ERROR };
        fail(e, code)
    })
}

fn probe_fail(e: topo_probe::ProbeError) -> i32 {
    let code = match e {
        topo_probe::ProbeError::UnknownNode(_) | topo_probe::ProbeError::Invalid(_) => exit_code::USAGE,
        topo_probe::ProbeError::NotFlowing(_) => exit_code::ASSERTION_FAILED,
        _ => exit_code::LAB_ERROR,
    };
    fail(e, code)
}

pub fn run(args: &CheckArgs) -> i32 {
    match &args.what {
        CheckCmd::Reach(a) => reach(a),
        CheckCmd::Nat(a) => nat(a),
        CheckCmd::Path(a) => path(a),
        CheckCmd::Converge(a) => converge(a),
    }
}

/// The hidden `topo __responder --port N`: serve probes in the current namespace until killed.
pub fn responder(port: u16) -> i32 {
    match topo_probe::run_responder(port) {
        Ok(()) => exit_code::OK,
        Err(e) => fail(format!("responder on port {port}: {e}"), exit_code::LAB_ERROR),
    }
}

#[derive(Debug, Deserialize)]
struct ExpectFile {
    pairs: Vec<ExpectPair>,
}

#[derive(Debug, Deserialize)]
struct ExpectPair {
    from: String,
    to: String,
    reached: bool,
}

#[derive(Debug, Serialize)]
struct Mismatch {
    from: String,
    to: String,
    expected: bool,
    reached: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

#[derive(Debug, Serialize)]
struct ReachOutput<'a> {
    lab: &'a str,
    proto: Proto,
    ok: bool,
    /// Where the expectation came from: none, auto (model), or a file.
    expect: &'a str,
    elapsed_ms: u64,
    probes_sent: u64,
    /// Probe rounds (a pair counts as not reached after 3 unanswered ones).
    rounds: u32,
    /// Permanent neighbour entries installed for this run and removed after it (big LANs).
    neighbours_installed: usize,
    pairs: &'a [PairDetail],
    mismatches: Vec<Mismatch>,
    /// Pairs whose receiver saw another source than the sender's (with --nat-free).
    nat: Vec<NatViolation>,
}

#[derive(Debug, Serialize)]
struct NatViolation {
    from: String,
    to: String,
    observed: std::net::SocketAddrV4,
}

fn reach(a: &ReachArgs) -> i32 {
    let proto: Proto = match a.proto.parse() {
        Ok(p) => p,
        Err(e) => return fail(e, exit_code::USAGE),
    };
    let lab = match open(&a.lab) {
        Ok(l) => l,
        Err(c) => return c,
    };
    let plan = lab.plan();
    let sel = |s: &Option<String>| -> Result<Vec<String>, i32> {
        match s {
            None => Ok(plan.nodes.iter().map(|n| n.name.clone()).collect()),
            Some(s) => topo_lab::select::select_list(plan, s).map_err(|e| fail(e, exit_code::USAGE)),
        }
    };
    let (from, to) = match (sel(&a.from), sel(&a.to)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(c), _) | (_, Err(c)) => return c,
    };
    let req = ReachRequest { from, to, proto };
    let expect: Option<HashMap<(String, String), bool>> = match a.expect.as_deref() {
        None => None,
        Some("auto") => match topo_model::reach_matrix(plan, lab.faults(), &req) {
            Ok(m) => Some(m.pairs.into_iter().map(|p| ((p.from, p.to), p.reached)).collect()),
            Err(e) => return fail(format!("model: {e}"), exit_code::LAB_ERROR),
        },
        Some(file) => {
            let text = match std::fs::read_to_string(file) {
                Ok(t) => t,
                Err(e) => return fail(format!("read {file}: {e}"), exit_code::USAGE),
            };
            match serde_json::from_str::<ExpectFile>(&text) {
                Ok(f) => Some(f.pairs.into_iter().map(|p| ((p.from, p.to), p.reached)).collect()),
                Err(e) => {
                    return fail(
                        format!("{file}: expected JSON with pairs: [{{from, to, reached}}]: {e}"),
                        exit_code::INVALID_INPUT,
                    )
                }
            }
        }
    };
    let opts = ProbeOpts { deadline: a.deadline, expect: expect.clone(), ..ProbeOpts::default() };
    let detail = match topo_probe::reach_detailed(plan, &req, &opts) {
        Ok(d) => d,
        Err(e) => return probe_fail(e),
    };
    let mut mismatches = Vec::new();
    if let Some(exp) = &expect {
        for p in &detail.pairs {
            if let Some(&e) = exp.get(&(p.from.clone(), p.to.clone())) {
                if e != p.reached {
                    mismatches.push(Mismatch {
                        from: p.from.clone(),
                        to: p.to.clone(),
                        expected: e,
                        reached: p.reached,
                        reason: p.reason.clone(),
                    });
                }
            }
        }
    }
    let mut nat = Vec::new();
    if a.nat_free {
        let observed = if proto == Proto::Icmp {
            let udp = ReachRequest { proto: Proto::Udp(topo_lab::probe::DEFAULT_PROBE_PORT), ..req.clone() };
            match topo_probe::reach_detailed(
                plan,
                &udp,
                &ProbeOpts { deadline: a.deadline, ..ProbeOpts::default() },
            ) {
                Ok(d) => d,
                Err(e) => return probe_fail(e),
            }
        } else {
            detail.clone()
        };
        nat = observed
            .nat_violations(plan)
            .into_iter()
            .map(|(from, to, observed)| NatViolation { from, to, observed })
            .collect();
    }
    let ok = mismatches.is_empty() && nat.is_empty();
    if a.lab.json {
        let out = ReachOutput {
            lab: lab.name(),
            proto,
            ok,
            expect: match a.expect.as_deref() {
                None => "none",
                Some("auto") => "auto",
                Some(_) => "file",
            },
            elapsed_ms: detail.elapsed_ms,
            probes_sent: detail.probes_sent,
            rounds: detail.rounds,
            neighbours_installed: detail.neighbours_installed,
            pairs: &detail.pairs,
            mismatches,
            nat,
        };
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        print_matrix(&req, &detail.pairs, expect.as_ref());
        let reached = detail.pairs.iter().filter(|p| p.reached).count();
        println!(
            "{proto}: {reached}/{} pairs reached in {} ms ({} probes, {} rounds)",
            detail.pairs.len(),
            detail.elapsed_ms,
            detail.probes_sent,
            detail.rounds
        );
        if detail.neighbours_installed > 0 {
            println!(
                "({} permanent neighbour entries installed for the run and removed after it: the \
                 host-wide ARP table could not hold this many pairs)",
                detail.neighbours_installed
            );
        }
        for m in &mismatches {
            println!(
                "MISMATCH {} -> {}: expected {}, got {}{}",
                m.from,
                m.to,
                if m.expected { "reach" } else { "no reach" },
                if m.reached { "reach" } else { "no reach" },
                m.reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default()
            );
        }
        for n in &nat {
            println!("NAT {} -> {}: receiver saw {}", n.from, n.to, n.observed);
        }
        if expect.is_some() || a.nat_free {
            println!("{}", if ok { "OK" } else { "FAILED" });
        }
    }
    if ok {
        exit_code::OK
    } else {
        exit_code::ASSERTION_FAILED
    }
}

/// A grid for small matrices (`#` reached, `.` not, ` ` self; `!` marks a mismatch), else
/// the unreached pairs.
fn print_matrix(req: &ReachRequest, pairs: &[PairDetail], expect: Option<&HashMap<(String, String), bool>>) {
    let by: HashMap<(&str, &str), &PairDetail> =
        pairs.iter().map(|p| ((p.from.as_str(), p.to.as_str()), p)).collect();
    if req.to.len() <= 40 && req.from.len() <= 200 {
        let width = req.from.iter().map(String::len).max().unwrap_or(0);
        // Column headers written vertically keep the grid narrow.
        let height = req.to.iter().map(String::len).max().unwrap_or(0);
        for row in 0..height {
            let line: String =
                req.to.iter().map(|t| t.chars().nth(row).unwrap_or(' ')).flat_map(|c| [c, ' ']).collect();
            println!("{:width$}  {}", "", line.trim_end());
        }
        for f in &req.from {
            let cells: String = req
                .to
                .iter()
                .flat_map(|t| {
                    let c = match by.get(&(f.as_str(), t.as_str())) {
                        None => ' ',
                        Some(p) => {
                            let exp = expect.and_then(|e| e.get(&(p.from.clone(), p.to.clone())));
                            match (p.reached, exp) {
                                (r, Some(&e)) if r != e => '!',
                                (true, _) => '#',
                                (false, _) => '.',
                            }
                        }
                    };
                    [c, ' ']
                })
                .collect();
            println!("{f:width$}  {}", cells.trim_end());
        }
    } else {
        for p in pairs.iter().filter(|p| !p.reached) {
            println!(
                "{} -> {} ({}): {}",
                p.from,
                p.to,
                p.to_addr,
                p.reason.as_deref().unwrap_or("not reached")
            );
        }
    }
}

fn nat(a: &NatArgs) -> i32 {
    let lab = match open(&a.lab) {
        Ok(l) => l,
        Err(c) => return c,
    };
    let r = match topo_probe::nat(lab.plan(), &a.a, &a.b, &ProbeOpts::with_deadline(a.deadline)) {
        Ok(r) => r,
        Err(e) => return probe_fail(e),
    };
    let ok = r.nat_free();
    if a.lab.json {
        #[derive(Serialize)]
        struct Out<'a> {
            ok: bool,
            #[serde(flatten)]
            result: &'a topo_lab::NatResult,
        }
        println!("{}", serde_json::to_string_pretty(&Out { ok, result: &r }).unwrap_or_default());
    } else {
        let port = |p: Option<u16>| p.map(|p| format!(":{p}")).unwrap_or_default();
        let seen = match r.observed_src {
            Some(ip) => format!("{ip}{}", port(r.observed_port)),
            None => "nothing (not delivered)".into(),
        };
        println!(
            "{} -> {}: sent from {}{}, {} saw {seen}",
            r.from,
            r.to,
            r.sent_src,
            port(r.sent_port),
            r.to
        );
        println!(
            "{}",
            if ok { "OK: NAT-free" } else { "FAILED: the source was rewritten or nothing arrived" }
        );
    }
    if ok {
        exit_code::OK
    } else {
        exit_code::ASSERTION_FAILED
    }
}

/// The routers of a traced path: every hop but the destination (`*` for a silent hop).
fn routers_of(r: &topo_lab::PathResult) -> Vec<String> {
    r.hops
        .iter()
        .take(if r.delivered { r.hops.len().saturating_sub(1) } else { r.hops.len() })
        .map(|h| {
            h.node.clone().unwrap_or_else(|| {
                if h.addr.is_unspecified() {
                    "*".into()
                } else {
                    h.addr.to_string()
                }
            })
        })
        .collect()
}

fn path(a: &PathArgs) -> i32 {
    let lab = match open(&a.lab) {
        Ok(l) => l,
        Err(c) => return c,
    };
    let want: Option<Vec<String>> =
        a.via.as_ref().map(|v| v.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect());
    // Routing is eventually consistent (OSPF after a fault): trace again until the path is delivered
    // along --via or the deadline passes, as the scenario `path` step does.
    let end = std::time::Instant::now() + a.deadline;
    let mut attempts = 0u32;
    let (r, routers, via_ok) = loop {
        attempts += 1;
        let left = end.saturating_duration_since(std::time::Instant::now()).max(Duration::from_millis(200));
        let r = match topo_probe::path(lab.plan(), &a.a, &a.b, &ProbeOpts::with_deadline(left)) {
            Ok(r) => r,
            Err(e) => return probe_fail(e),
        };
        let routers = routers_of(&r);
        let via_ok = want.as_ref().is_none_or(|w| *w == routers);
        if (r.delivered && via_ok) || std::time::Instant::now() >= end {
            break (r, routers, via_ok);
        }
        std::thread::sleep(
            Duration::from_millis(100).min(end.saturating_duration_since(std::time::Instant::now())),
        );
    };
    let ok = r.delivered && via_ok;
    if a.lab.json {
        #[derive(Serialize)]
        struct Out<'a> {
            ok: bool,
            attempts: u32,
            routers: &'a [String],
            #[serde(skip_serializing_if = "Option::is_none")]
            expected_via: Option<&'a Vec<String>>,
            #[serde(flatten)]
            result: &'a topo_lab::PathResult,
        }
        let out = Out { ok, attempts, routers: &routers, expected_via: want.as_ref(), result: &r };
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        for (i, h) in r.hops.iter().enumerate() {
            let addr = if h.addr.is_unspecified() { "*".to_owned() } else { h.addr.to_string() };
            println!("{:>2}  {addr:<15}  {}", i + 1, h.node.as_deref().unwrap_or("?"));
        }
        if let Some(reason) = &r.reason {
            println!("not delivered: {reason}");
        }
        if let Some(w) = &want {
            if !via_ok {
                println!("FAILED: expected via {}, got via {}", w.join(","), routers.join(","));
            }
        }
        println!("{}", if ok { "OK" } else { "FAILED" });
    }
    if ok {
        exit_code::OK
    } else {
        exit_code::ASSERTION_FAILED
    }
}

fn converge(a: &ConvergeArgs) -> i32 {
    let mut lab = match open(&a.lab) {
        Ok(l) => l,
        Err(c) => return c,
    };
    let plan = lab.plan().clone();
    let mut flows = Vec::new();
    for f in &a.flow {
        match f.parse::<Flow>() {
            Ok(f) => flows.push(f),
            Err(e) => return fail(e, exit_code::USAGE),
        }
    }
    let fault = match topo_lab::fault_text::parse_fault(&plan, &a.fault) {
        Ok(f) => f,
        Err(e) => return fail(e, exit_code::USAGE),
    };
    let proto: Proto = match a.proto.parse() {
        Ok(p) => p,
        Err(e) => return fail(e, exit_code::USAGE),
    };
    let mut req = ConvergeRequest::new(flows);
    req.proto = proto;
    req.interval = a.interval;
    req.timeout = a.timeout;
    req.stable = a.stable;
    req.quiet = a.quiet;
    let state_dir = lab.state_dir().to_path_buf();
    let report = match topo_probe::converge(&plan, &state_dir, &req, &mut || {
        lab.apply(&fault).map_err(|e| e.to_string())
    }) {
        Ok(r) => r,
        Err(e) => return probe_fail(e),
    };
    let ok = report.all_converged();
    if a.lab.json {
        println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    } else {
        let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
        println!("{} streams, one probe per {} ms per flow", report.proto, report.interval_ms);
        println!(
            "{:<20} {:>7} {:>6} {:>10} {:>10} {:>10} {:>10}  state",
            "flow", "sent", "lost", "first_ms", "last_ms", "outage_ms", "stable_ms"
        );
        for f in &report.flows {
            println!(
                "{:<20} {:>7} {:>6} {:>10} {:>10} {:>10} {:>10}  {}",
                format!("{}->{}", f.from, f.to),
                f.sent,
                f.lost,
                ms(f.first_loss_ms),
                ms(f.last_loss_ms),
                ms(f.outage_ms),
                ms(f.stable_ms),
                match (f.converged, f.lost) {
                    (true, 0) => "unaffected",
                    (true, _) => "recovered",
                    (false, _) => "NOT STABLE",
                }
            );
        }
        let routes: Vec<_> =
            report.timeline.iter().filter(|e| matches!(e, topo_lab::TimelineEvent::Route { .. })).collect();
        if !routes.is_empty() {
            println!("route changes:");
            for e in routes {
                if let topo_lab::TimelineEvent::Route { t_ms, node, action, dst, via, dev, .. } = e {
                    let via = via.map(|v| format!(" via {v}")).unwrap_or_default();
                    let dev = dev.as_ref().map(|d| format!(" dev {d}")).unwrap_or_default();
                    println!("  {t_ms:>9.1} ms  {node:<12} {action} {dst}{via}{dev}");
                }
            }
        }
    }
    if ok {
        exit_code::OK
    } else {
        exit_code::ASSERTION_FAILED
    }
}
