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

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
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
    // Enough cycles that stale partition generations get collected (every KEEP_STALE + 1
    // changes of a namespace): the max column shows those rounds.
    let cycles: usize = std::env::var("CHAOS_BENCH_CYCLES").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    println!("load average at start: {}", load());
    println!(
        "| nodes | topo apply (median / max) | topo replace | topo heal | baseline apply | baseline heal | apply ratio | heal ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for n in sizes {
        let lab = support::TestLab::up("cb", &support::lan_yaml(n));
        let names: Vec<String> = lab.plan.nodes.iter().map(|x| x.name.clone()).collect();
        let part = |groups: Vec<Vec<String>>| {
            let mut s = FaultState::default();
            s.apply(&lab.plan, &Fault::Partition { groups }).unwrap();
            s
        };
        // Two halves; then a different split (every other node), which replaces it.
        let parted = part(vec![names[..n / 2].to_vec()]);
        let other = part(vec![names.iter().step_by(2).cloned().collect()]);
        let clear = FaultState::default();
        let (mut apply, mut replace, mut heal) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..cycles {
            let t = Instant::now();
            topo_chaos::enforce(&lab.plan, &lab.state_dir, &clear, &parted).unwrap();
            apply.push(t.elapsed());
            let t = Instant::now();
            topo_chaos::enforce(&lab.plan, &lab.state_dir, &parted, &other).unwrap();
            replace.push(t.elapsed());
            let t = Instant::now();
            topo_chaos::enforce(&lab.plan, &lab.state_dir, &other, &clear).unwrap();
            heal.push(t.elapsed());
            if std::env::var_os("CHAOS_BENCH_VERBOSE").is_some() {
                let last = |v: &[Duration]| ms(v[v.len() - 1]);
                eprintln!(
                    "cycle: apply {:.1} replace {:.1} heal {:.1} ms",
                    last(&apply),
                    last(&replace),
                    last(&heal)
                );
            }
        }
        let (mut bapply, mut bheal) = (Vec::new(), Vec::new());
        // CHAOS_BENCH_BASELINE=0 skips the (slow) baseline, e.g. when profiling.
        let baseline_runs = if std::env::var("CHAOS_BENCH_BASELINE").as_deref() == Ok("0") { 1 } else { 3 };
        for _ in 0..baseline_runs {
            if baseline_runs == 1 {
                bapply.push(Duration::ZERO);
                bheal.push(Duration::ZERO);
                continue;
            }
            bapply.push(baseline(&lab, &parted, false));
            bheal.push(baseline(&lab, &parted, true));
        }
        let mx = |v: &[Duration]| ms(*v.iter().max().unwrap());
        let (am, rm, hm) = (mx(&apply), mx(&replace), mx(&heal));
        let (a, r, h, ba, bh) = (median(apply), median(replace), median(heal), median(bapply), median(bheal));
        println!(
            "| {n} | {:.1} / {am:.1} ms | {:.1} / {rm:.1} ms | {:.1} / {hm:.1} ms | {:.1} ms | {:.1} ms | {:.1}x | {:.1}x |",
            ms(a),
            ms(r),
            ms(h),
            ms(ba),
            ms(bh),
            ms(ba) / ms(a),
            ms(bh) / ms(h)
        );
    }
    println!("load average at end: {}", load());
}
