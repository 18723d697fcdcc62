//! Model backend speed: the full reachability matrix of 1000-node topologies.
//! Target (issue 7): ≤ 1 s for 999,000 pairs. Figures go to docs/benchmarks.md ("Model").

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
        g.bench_function(format!("{name}/build"), |b| b.iter(|| Model::new(&plan, &faults)));
        g.bench_function(format!("{name}/matrix-icmp-999000"), |b| {
            b.iter(|| model.reach(&req).expect("reach"));
        });
        g.bench_function(format!("{name}/build+matrix"), |b| {
            b.iter(|| Model::new(&plan, &faults).reach(&req).expect("reach"));
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
