//! Rough timing of parse + validate on generated labs (`cargo run --release -p topo-spec
//! --example scale -- 1000 5000`). The criterion bench of the whole pipeline lives in benches/.
use std::fmt::Write as _;
use std::time::Instant;

fn generate(nodes: usize) -> String {
    let nets = nodes.div_ceil(200);
    let mut y = String::from("name: scale\nnetworks:\n");
    for n in 0..nets {
        let _ = writeln!(y, "  net{n}: {{subnet: 10.{}.{}.0/24}}", n / 256, n % 256);
    }
    y.push_str("groups:\n  app: {labels: {tier: app}}\nnodes:\n");
    for i in 0..nodes {
        let net = i % nets;
        let host = 10 + i / nets;
        let _ = writeln!(
            y,
            "  n{i}:\n    group: app\n    interfaces: [{{network: net{net}, address: 10.{}.{}.{host}}}]\n    labels: {{idx: \"{i}\"}}",
            net / 256,
            net % 256
        );
        if i > 0 {
            let _ = writeln!(y, "    depends_on: [n{}]", i - 1);
        }
    }
    y.push_str("links:\n");
    for i in 1..nodes / 2 {
        let _ = writeln!(y, "  - endpoints: [n{}, n{i}]\n    impair: {{delay: 5ms}}", i - 1);
    }
    y
}

fn main() {
    for arg in std::env::args().skip(1) {
        let Ok(n) = arg.parse::<usize>() else { continue };
        let text = generate(n);
        let start = Instant::now();
        let runs = 5;
        for _ in 0..runs {
            match topo_spec::parse_str("scale.yaml", &text) {
                Ok(t) => assert_eq!(t.nodes.len(), n),
                Err(d) => panic!("{}", topo_spec::render(&d, false)),
            }
        }
        let start_yaml = Instant::now();
        for _ in 0..runs {
            let _ = marked_yaml::parse_yaml(0, &text);
        }
        let yaml_ms = start_yaml.elapsed().as_secs_f64() * 1000.0 / f64::from(runs);
        println!("{n} nodes: YAML alone {yaml_ms:.2} ms");
        println!(
            "{n} nodes: {:.2} ms per parse+validate",
            start.elapsed().as_secs_f64() * 1000.0 / f64::from(runs)
        );
    }
}
