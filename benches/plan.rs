//! Parse + validate + plan of generated topologies with 10, 100, 1000 and 5000 nodes
//! (issue 2 target: 1000 nodes ≤ 50 ms on the 2-core CI machine). Figures: docs/benchmarks.md.
//!
//! `cargo bench --bench plan` runs everything; `cargo bench --bench plan -- full/1000` one size.
//! Two groups: `full` (YAML text -> Plan: topo_spec::parse_str then topo_plan::compile) and
//! `compile` (the plan compiler alone, on the already parsed topology).

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

/// A lab shaped like real ones: one LAN per 250 nodes (each behind a router that holds the
/// gateway), the routers in a chain of point-to-point links, every fifth host with a static
/// address, and a few static routes and labels, so every part of the compiler has work to do.
fn topology_yaml(nodes: usize) -> String {
    let lans = nodes.div_ceil(250).max(1);
    let mut y = String::with_capacity(nodes * 120);
    y.push_str("name: bench\n\nnetworks:\n");
    for l in 0..lans {
        let _ = writeln!(y, "  lan{l}: {{subnet: 10.{}.{}.0/22}}", l / 64, (l % 64) * 4);
    }
    y.push_str("\nnodes:\n");
    for l in 0..lans {
        let _ = writeln!(y, "  r{l}:\n    kind: router\n    interfaces: [lan{l}]");
    }
    let hosts = nodes.saturating_sub(lans);
    for h in 0..hosts {
        let l = h % lans;
        if h % 5 == 0 {
            let idx = 100 + h / lans;
            let _ = writeln!(
                y,
                "  h{h}:\n    interfaces:\n      - {{network: lan{l}, address: 10.{}.{}.{}}}\n    labels: {{tier: app}}",
                l / 64,
                (l % 64) * 4 + idx / 256,
                idx % 256
            );
        } else {
            let _ = writeln!(y, "  h{h}: {{interfaces: [lan{l}]}}");
        }
    }
    if lans > 1 {
        y.push_str("\nlinks:\n");
        for l in 0..lans - 1 {
            let _ = writeln!(y, "  - endpoints: [{{node: r{l}}}, {{node: r{}}}]", l + 1);
        }
    }
    y
}

fn bench_plan(c: &mut Criterion) {
    let mut full = c.benchmark_group("full");
    for n in [10usize, 100, 1000, 5000] {
        let text = topology_yaml(n);
        // Fail loudly (not in the timing loop) if the generated file is not valid.
        if let Err(e) = topo_plan::plan_str("bench.yaml", &text) {
            panic!("generated topology with {n} nodes is invalid:\n{e}");
        }
        if n >= 1000 {
            full.sample_size(10).measurement_time(Duration::from_secs(3));
        } else {
            full.sample_size(30).measurement_time(Duration::from_secs(2));
        }
        full.bench_with_input(BenchmarkId::from_parameter(n), &text, |b, text| {
            b.iter(|| topo_plan::plan_str("bench.yaml", black_box(text)).map(|p| p.nodes.len()));
        });
    }
    full.finish();

    let mut compile = c.benchmark_group("compile");
    for n in [10usize, 100, 1000, 5000] {
        let text = topology_yaml(n);
        let Ok(topology) = topo_spec::parse_str("bench.yaml", &text) else { continue };
        compile.sample_size(if n >= 1000 { 10 } else { 30 }).measurement_time(Duration::from_secs(2));
        compile.bench_with_input(BenchmarkId::from_parameter(n), &topology, |b, t| {
            b.iter(|| topo_plan::compile(black_box(t)).map(|p| p.nodes.len()));
        });
    }
    compile.finish();
}

criterion_group!(benches, bench_plan);
criterion_main!(benches);
