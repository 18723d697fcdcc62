//! Model backend speed: the full reachability matrix of 1000-node topologies.
//! Target (issue 7): ≤ 1 s for 999,000 pairs. Figures go to docs/benchmarks.md ("Model").
//! `matrix` is the shared `ReachMatrix` (two node-name `String`s per pair), `compact-matrix`
//! the same verdicts as node indices and failure codes (`Model::reach_compact`).

use criterion::{criterion_group, criterion_main, Criterion};
use topo_lab::{FaultState, Proto};
use topo_model::testplan::PlanBuilder;
use topo_model::{all_pairs, Model};
use topo_plan::{Plan, RouteOrigin};

/// One LAN of `n` hosts.
pub fn lan(n: usize) -> Plan {
    let mut b = PlanBuilder::new("benchlan");
    for i in 0..n {
        let name = format!("h{i}");
        let a = i + 2;
        b.host(&name).attach(&name, "lan", &format!("10.0.{}.{}/16", a / 256, a % 256));
    }
    b.build()
}

/// `routers` OSPF routers in a ring, each with a LAN of `hosts` hosts behind it.
pub fn ring(routers: usize, hosts: usize) -> Plan {
    let mut b = PlanBuilder::new("benchring");
    for r in 0..routers {
        let name = format!("r{r}");
        b.router(&name).attach(&name, &format!("lan{r}"), &format!("10.{}.{}.1/24", 1 + r / 256, r % 256));
    }
    for r in 0..routers {
        let next = (r + 1) % routers;
        b.link(
            &format!("r{r}"),
            &format!("172.16.{}.{}/30", r / 64, (r % 64) * 4 + 1),
            &format!("r{next}"),
            &format!("172.16.{}.{}/30", r / 64, (r % 64) * 4 + 2),
        );
    }
    for r in 0..routers {
        let name = format!("r{r}");
        b.ospf(&name).ospf_passive(&name, &format!("lan{r}"));
        for h in 0..hosts {
            let host = format!("h{r}x{h}");
            b.host(&host).attach(
                &host,
                &format!("lan{r}"),
                &format!("10.{}.{}.{}/24", 1 + r / 256, r % 256, h + 10),
            );
            b.route_full(
                &host,
                "default",
                &format!("10.{}.{}.1", 1 + r / 256, r % 256),
                None,
                RouteOrigin::Gateway,
            );
        }
    }
    b.build()
}

/// Process CPU time (user + system) from /proc/self/stat, in seconds (10 ms resolution).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest.split_whitespace().skip(11).take(2).filter_map(|x| x.parse().ok()).collect();
    f.iter().sum::<u64>() as f64 / 100.0
}

/// Wall and CPU time of a few matrix runs, printed next to the machine load: on a shared
/// machine the wall time says more about the neighbours than about the model.
fn cpu_report(name: &str, what: &str, req: &topo_lab::ReachRequest, run: &dyn Fn()) {
    const RUNS: u32 = 5;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let (c0, t0) = (cpu_seconds(), std::time::Instant::now());
    for _ in 0..RUNS {
        run();
    }
    let wall = t0.elapsed().as_secs_f64() / f64::from(RUNS);
    let cpu = (cpu_seconds() - c0) / f64::from(RUNS);
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    eprintln!(
        "{name}: {what} of {} pairs: wall {:.0} ms, CPU {:.0} ms over {threads} threads (load avg {})",
        req.from.len() * (req.to.len() - 1),
        wall * 1e3,
        cpu * 1e3,
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("model");
    g.sample_size(10);
    for (name, plan) in [("lan-1000", lan(1000)), ("ospf-ring-40x24", ring(40, 24))] {
        let faults = FaultState::default();
        assert_eq!(plan.nodes.len(), 1000);
        let req = all_pairs(&plan, Proto::Icmp);
        let model = Model::new(&plan, &faults);
        let m = model.reach(&req).expect("reach");
        assert_eq!(m.pairs.len(), 999_000);
        assert!(m.pairs.iter().all(|p| p.reached), "{name}: the benchmark topology must be fully reachable");
        let compact = model.reach_compact(&req).expect("reach_compact");
        assert_eq!(compact.pairs.len(), 999_000);
        assert_eq!(compact.reached(), 999_000);
        drop(compact);
        // ReachMatrix (the Lab result: names as Strings) and the compact form (indices).
        cpu_report(name, "matrix", &req, &|| drop(std::hint::black_box(model.reach(&req).expect("reach"))));
        cpu_report(name, "compact matrix", &req, &|| {
            drop(std::hint::black_box(model.reach_compact(&req).expect("reach_compact")));
        });
        g.bench_function(format!("{name}/build"), |b| b.iter(|| Model::new(&plan, &faults)));
        g.bench_function(format!("{name}/matrix-icmp-999000"), |b| {
            b.iter(|| model.reach(&req).expect("reach"));
        });
        g.bench_function(format!("{name}/compact-matrix-icmp-999000"), |b| {
            b.iter(|| model.reach_compact(&req).expect("reach_compact"));
        });
        g.bench_function(format!("{name}/build+matrix"), |b| {
            b.iter(|| Model::new(&plan, &faults).reach(&req).expect("reach"));
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
