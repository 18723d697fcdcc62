//! Partition apply/heal time for labs of 100 and 500 nodes: topo's way (one atomic nftnl batch
//! per namespace, namespaces in parallel) against the Blockade-style baseline measured in the
//! same run (one `nft` process per node via `ip netns exec`). Needs root; prints a table.
//!
//! `cargo bench -p topo-chaos --bench chaos` (set `CHAOS_BENCH_SIZES=100,500` to choose).

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use topo_lab::{Fault, FaultState};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The baseline: one `ip netns exec <ns> nft -f -` per node, sequentially, like Blockade's one
/// iptables process per rule.
fn baseline(lab: &support::TestLab, state: &FaultState, heal: bool) -> Duration {
    let t = Instant::now();
    for n in &lab.plan.nodes {
        let mut srcs: Vec<String> = Vec::new();
        for (from, to) in &state.drops {
            if *to == n.name {
                srcs.extend(lab.plan.node(from).unwrap().addresses().map(|a| a.to_string()));
            }
        }
        let script = if heal {
            "delete table inet topob\n".to_owned()
        } else if srcs.is_empty() {
            continue;
        } else {
            format!(
                "table inet topob {{\n set drop4 {{ type ipv4_addr; elements = {{ {} }} }}\n chain input {{ type filter hook input priority -10; policy accept; ip saddr @drop4 counter drop; }}\n}}\n",
                srcs.join(", ")
            )
        };
        let mut c = Command::new("ip")
            .args(["netns", "exec", &n.netns, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
        c.wait().unwrap();
    }
    t.elapsed()
}

fn main() {
    if !topo_lab::testkit::require_root("bench chaos") {
        return;
    }
    let sizes: Vec<usize> = std::env::var("CHAOS_BENCH_SIZES")
        .unwrap_or_else(|_| "100,500".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    println!(
        "| nodes | topo apply | topo heal | baseline apply | baseline heal | apply ratio | heal ratio |"
    );
    println!("|---|---|---|---|---|---|---|");
    for n in sizes {
        let lab = support::TestLab::up("cb", &support::lan_yaml(n));
        let half: Vec<String> = lab.plan.nodes.iter().take(n / 2).map(|x| x.name.clone()).collect();
        let mut parted = FaultState::default();
        parted.apply(&lab.plan, &Fault::Partition { groups: vec![half] }).unwrap();
        let clear = FaultState::default();
        let (mut apply, mut heal) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            let t = Instant::now();
            topo_chaos::enforce(&lab.plan, &lab.state_dir, &clear, &parted).unwrap();
            apply.push(t.elapsed());
            let t = Instant::now();
            topo_chaos::enforce(&lab.plan, &lab.state_dir, &parted, &clear).unwrap();
            heal.push(t.elapsed());
        }
        let (mut bapply, mut bheal) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            bapply.push(baseline(&lab, &parted, false));
            bheal.push(baseline(&lab, &parted, true));
        }
        let (a, h, ba, bh) = (median(apply), median(heal), median(bapply), median(bheal));
        println!(
            "| {n} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1}x | {:.1}x |",
            ms(a),
            ms(h),
            ms(ba),
            ms(bh),
            ms(ba) / ms(a),
            ms(bh) / ms(h)
        );
    }
}
