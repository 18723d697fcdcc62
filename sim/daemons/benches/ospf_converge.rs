//! OSPF triangle on real FRR (root): start -> converged, and reroute after a link failure.
//! Prints figures; the baseline (same timers without the fast SPF/LSA throttles, and with
//! `TOPO_BENCH_SLOW=1` FRR's default 10/40 s timers) is measured in the same run.
//!
//! `cargo bench -p topo-daemons --bench ospf_converge` (TOPO_BENCH_RUNS=N, default 5).

use std::time::{Duration, Instant};

use topo_daemons::testkit::{triangle, TestLab};
use topo_lab::FaultState;
use topo_plan::Plan;

fn retime(mut plan: Plan, hello: u32, dead: u32, fast: bool, bfd: bool) -> Plan {
    for n in &mut plan.nodes {
        let Some(o) = n.routing.as_mut().and_then(|r| r.ospf.as_mut()) else { continue };
        o.hello_interval = hello;
        o.dead_interval = dead;
        o.fast = fast;
        o.bfd = bfd;
        let o = o.clone();
        let configs = topo_plan::daemons::render_frr(n, &o);
        if let Some(r) = n.routing.as_mut() {
            r.configs = configs;
        }
    }
    plan
}

/// Name, plan for a lab name, silent cut (else carrier down), runs.
type Config = (&'static str, Box<dyn Fn(&str) -> Plan>, bool, usize);

struct Run {
    start: Duration,
    converged: Duration,
    reroute: Option<Duration>,
    stop: Duration,
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn stats(mut v: Vec<Duration>) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.sort();
    format!("{} / {} / {}", ms(v[0]), ms(v[v.len() / 2]), ms(v[v.len() - 1]))
}

/// One lab: start, converge, then break r1-r2 (carrier down, or a silent cut with `cut`) and
/// time until both r1 and r2 route each other's loopback via r3.
fn run(name: &str, plan: Plan, cut: bool, timeout: Duration) -> Result<Run, String> {
    let lab = TestLab::build(plan).map_err(|e| format!("{name}: build: {e}"))?;
    let t0 = Instant::now();
    lab.start_daemons().map_err(|e| format!("{name}: start: {e}"))?;
    let start = t0.elapsed();
    topo_daemons::wait_converged_with(&lab.plan, &FaultState::default(), timeout)
        .map_err(|e| format!("{name}: {e}"))?;
    let converged = t0.elapsed();
    let breaker = if cut {
        "nft add table netdev cut && nft add chain netdev cut in \
         '{ type filter hook ingress device IF priority 0; policy drop; }'"
    } else {
        "ip link set IF down"
    };
    let t1 = Instant::now();
    let (ok1, o1) = lab.sh("r1", &breaker.replace("IF", "eth-r2"));
    let (ok2, o2) = if cut { lab.sh("r2", &breaker.replace("IF", "eth-r1")) } else { (true, String::new()) };
    if !ok1 || !ok2 {
        return Err(format!("{name}: break link: {o1}{o2}"));
    }
    let via_r3 = |node: &str, lo: &str, gw: &str| lab.route(node, lo) == Some(Some(gw.parse().expect("ip")));
    let mut reroute = None;
    while t1.elapsed() < Duration::from_secs(30) {
        if via_r3("r1", "10.255.0.2/32", "10.0.13.2") && via_r3("r2", "10.255.0.1/32", "10.0.23.2") {
            reroute = Some(t1.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let t2 = Instant::now();
    topo_daemons::stop_lab(&lab.plan, &lab.state_dir).map_err(|e| format!("{name}: stop: {e:?}"))?;
    let stop = t2.elapsed();
    Ok(Run { start, converged, reroute, stop })
}

fn main() {
    let root = std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0")));
    if !root || !std::path::Path::new("/usr/lib/frr/ospfd").exists() {
        eprintln!("SKIP ospf_converge: needs root and FRR");
        return;
    }
    let runs: usize = std::env::var("TOPO_BENCH_RUNS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let mut configs: Vec<Config> = vec![
        (
            "hello 1/dead 3 + fast throttles",
            Box::new(|l: &str| retime(triangle(l, true, false), 1, 3, true, false)),
            false,
            runs,
        ),
        (
            "  same + BFD 50 ms x 3 (silent cut)",
            Box::new(|l: &str| retime(triangle(l, true, true), 1, 3, true, true)),
            true,
            runs,
        ),
        (
            "baseline: hello 1/dead 3, default throttles",
            Box::new(|l: &str| retime(triangle(l, true, false), 1, 3, false, false)),
            false,
            runs.min(3),
        ),
    ];
    if std::env::var("TOPO_BENCH_SLOW").is_ok() {
        configs.push((
            "baseline: FRR defaults hello 10/dead 40",
            Box::new(|l: &str| retime(triangle(l, false, false), 10, 40, false, false)),
            false,
            1,
        ));
    }
    println!(
        "OSPF triangle on FRR 8.4 (3 routers, p2p links, a host LAN each); {runs} runs; min / median / max"
    );
    println!(
        "{:<46} {:>22} {:>28} {:>28} {:>10}",
        "config", "start daemons", "start -> converged", "reroute after link failure", "stop"
    );
    let mut fast_median = None;
    for (i, (name, make, cut, n)) in configs.iter().enumerate() {
        let mut res = Vec::new();
        for k in 0..*n {
            let lab = format!("bo{}x{i}{k}", std::process::id() % 10_000);
            match run(name, make(&lab), *cut, Duration::from_secs(120)) {
                Ok(r) => res.push(r),
                Err(e) => eprintln!("{e}"),
            }
        }
        let conv: Vec<Duration> = res.iter().map(|r| r.converged).collect();
        let mut sorted = conv.clone();
        sorted.sort();
        let median = sorted.get(sorted.len() / 2).copied();
        if i == 0 {
            fast_median = median;
        }
        println!(
            "{:<46} {:>22} {:>28} {:>28} {:>10}",
            name,
            stats(res.iter().map(|r| r.start).collect()),
            stats(conv),
            stats(res.iter().filter_map(|r| r.reroute).collect()),
            stats(res.iter().map(|r| r.stop).collect()).split(" / ").nth(1).unwrap_or("-"),
        );
        if let (Some(f), Some(m), true) = (fast_median, median, i > 0 && name.starts_with("baseline")) {
            println!(
                "{:<46} {:.1}x slower to converge than the fast config",
                "",
                m.as_secs_f64() / f.as_secs_f64()
            );
        }
    }
    println!("target: start -> converged <= 2 s with fast timers");
}
