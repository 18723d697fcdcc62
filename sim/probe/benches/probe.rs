//! All-pairs ICMP reachability on one LAN: topo's in-process engine (on the fresh lab, where it
//! installs permanent neighbour entries itself, and with the lab's own entries present) against
//! the naive baseline
//! (sequential `ip netns exec NS ping -c1 -W1 ADDR` on a sample of pairs, extrapolated) and
//! fping per namespace (all namespaces in parallel, if fping is installed), measured in the same
//! run on the same lab.
//!
//! Root only. `cargo bench -p topo-probe --bench probe [-- 100 500]` (sizes; default 100 500).
//! Env: `PROBE_BENCH_RUNS` (topo runs per size, default 5), `PROBE_BENCH_SAMPLE` (naive
//! baseline pairs, default 40).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use topo_lab::{Proto, ReachRequest};
use topo_probe::testlab::TestLab;
use topo_probe::ProbeOpts;

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let sizes: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() { vec![100, 500] } else { sizes };
    if !topo_lab::testkit::require_root("bench probe") {
        return;
    }
    let runs = env_num("PROBE_BENCH_RUNS", 5).max(1);
    let sample = env_num("PROBE_BENCH_SAMPLE", 40).max(1);
    // PROBE_BENCH_BASELINES=0: topo only (for profiling).
    let baselines = env_num("PROBE_BENCH_BASELINES", 1) != 0;
    let have_fping = baselines && Command::new("fping").arg("-v").output().is_ok();
    println!(
        "all-pairs ICMP on one LAN ({} cores)",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    for n in sizes {
        let t = Instant::now();
        // Built without neighbour entries: the first runs are `topo check reach` on a fresh lab,
        // where the engine installs permanent entries itself and removes them afterwards.
        let lab = TestLab::lan(&topo_lab::testkit::unique_lab("pb"), n, false).expect("build bench lab");
        let build = t.elapsed();
        let names: Vec<String> = lab.plan.nodes.iter().map(|x| x.name.clone()).collect();
        let pairs = n * (n - 1);
        let req = ReachRequest { from: names.clone(), to: names.clone(), proto: Proto::Icmp };
        let mut fresh = Vec::new();
        let mut installed = 0;
        for _ in 0..runs {
            let t = Instant::now();
            let d = topo_probe::reach_detailed(
                &lab.plan,
                &req,
                &ProbeOpts::with_deadline(Duration::from_secs(30)),
            )
            .expect("reach");
            fresh.push(t.elapsed());
            let bad = d.pairs.iter().filter(|p| !p.reached).count();
            assert_eq!(bad, 0, "{bad} of {pairs} pairs unreached (fresh lab)");
            installed = d.neighbours_installed;
        }
        fresh.sort();
        // Then the lab gets its own permanent entries (as the baselines need: ARP cannot resolve
        // this many pairs): the engine finds them present and installs nothing.
        lab.install_static_neighbours().expect("static neighbour entries");
        let mut times = Vec::new();
        let mut probes = 0;
        for _ in 0..runs {
            let t = Instant::now();
            // A generous deadline: a probe lost to a full buffer is retried, not reported.
            let opts = ProbeOpts::with_deadline(Duration::from_secs(30));
            let d = topo_probe::reach_detailed(&lab.plan, &req, &opts).expect("reach");
            times.push(t.elapsed());
            let bad = d.pairs.iter().filter(|p| !p.reached).count();
            assert_eq!(bad, 0, "{bad} of {pairs} pairs unreached");
            probes = d.probes_sent;
            if std::env::var_os("PROBE_BENCH_VERBOSE").is_some() {
                eprintln!(
                    "    run: {:.3} s, setup {} ms, {} rounds, {} probes, {} neighbour entries installed",
                    times.last().map_or(0.0, Duration::as_secs_f64),
                    d.setup_ms,
                    d.rounds,
                    d.probes_sent,
                    d.neighbours_installed
                );
            }
        }
        times.sort();
        let (best, median) = (times[0], times[times.len() / 2]);
        // The probing alone: the neighbour step (an existence check of every entry) switched off.
        let mut bare = Vec::new();
        for _ in 0..runs {
            let opts =
                ProbeOpts { static_neighbours: false, ..ProbeOpts::with_deadline(Duration::from_secs(30)) };
            let t = Instant::now();
            let d = topo_probe::reach_detailed(&lab.plan, &req, &opts).expect("reach");
            bare.push(t.elapsed());
            assert!(d.pairs.iter().all(|p| p.reached), "pairs unreached (neighbour step off)");
        }
        bare.sort();
        // What the fabric's br_netfilter hooks cost (a profile puts ~20 % of the round trip in
        // br_nf_*): the same probing with bridge-nf-call-* off in this lab's fabric namespace.
        let fabric = &lab.plan.fabric.netns;
        let nf_off = Command::new("ip")
            .args(["netns", "exec", fabric, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0"])
            .args(["net.bridge.bridge-nf-call-ip6tables=0", "net.bridge.bridge-nf-call-arptables=0"])
            .status()
            .is_ok_and(|s| s.success());
        let mut no_brnf = Vec::new();
        for _ in 0..runs.min(3) {
            if !nf_off {
                break;
            }
            let opts =
                ProbeOpts { static_neighbours: false, ..ProbeOpts::with_deadline(Duration::from_secs(30)) };
            let t = Instant::now();
            let d = topo_probe::reach_detailed(&lab.plan, &req, &opts).expect("reach");
            no_brnf.push(t.elapsed());
            assert!(d.pairs.iter().all(|p| p.reached), "pairs unreached (br_netfilter off)");
        }
        no_brnf.sort();
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

        // Naive baseline: a sample of pairs, spread over the matrix.
        let step = (pairs / sample).max(1);
        let mut sampled = 0;
        let t = Instant::now();
        let mut i = 0;
        while baselines && sampled < sample && i < pairs {
            let (s, d) = (i / (n - 1), i % (n - 1));
            let d = if d >= s { d + 1 } else { d };
            let addr = lab.plan.nodes[d].primary_address().expect("address").to_string();
            let ok = Command::new("ip")
                .args(["netns", "exec", &lab.plan.nodes[s].netns, "ping", "-c1", "-W1", "-q", &addr])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "baseline ping {} -> {addr} failed", names[s]);
            sampled += 1;
            i += step;
        }
        let naive = t.elapsed().mul_f64(pairs as f64 / sampled.max(1) as f64);

        let fping = have_fping.then(|| {
            let t = Instant::now();
            let children: Vec<_> = lab
                .plan
                .nodes
                .iter()
                .map(|src| {
                    let targets: Vec<String> = lab
                        .plan
                        .nodes
                        .iter()
                        .filter(|d| d.name != src.name)
                        .map(|d| d.primary_address().expect("address").to_string())
                        .collect();
                    Command::new("ip")
                        .args(["netns", "exec", &src.netns, "fping", "-q", "-r", "1", "-t", "500", "-i", "1"])
                        .args(&targets)
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                        .expect("spawn fping")
                })
                .collect();
            let mut failed = 0;
            for mut c in children {
                if !c.wait().is_ok_and(|s| s.success()) {
                    failed += 1;
                }
            }
            (t.elapsed(), failed)
        });

        println!(
            "\nN = {n} nodes, {pairs} pairs (lab built in {:.2} s; load average {})",
            build.as_secs_f64(),
            load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
        );
        println!(
            "  topo, entries present      best {:>8.3} s   median {:>8.3} s   ({runs} runs, {probes} probes in the last)",
            best.as_secs_f64(),
            median.as_secs_f64()
        );
        println!(
            "  topo, probing only         best {:>8.3} s   median {:>8.3} s   (neighbour step off)",
            bare[0].as_secs_f64(),
            bare[bare.len() / 2].as_secs_f64()
        );
        match no_brnf.first() {
            Some(b) => println!(
                "  probing, br_netfilter off  best {:>8.3} s   median {:>8.3} s   (bridge-nf-call-* = 0 in the fabric namespace)",
                b.as_secs_f64(),
                no_brnf[no_brnf.len() / 2].as_secs_f64()
            ),
            None => println!("  probing, br_netfilter off  (not measured: no bridge-nf-call sysctl in the fabric namespace)"),
        }
        println!(
            "  topo, fresh lab            best {:>8.3} s   median {:>8.3} s   ({installed} permanent neighbour entries installed and removed per run)",
            fresh[0].as_secs_f64(),
            fresh[fresh.len() / 2].as_secs_f64()
        );
        println!(
            "  naive ip netns exec ping   {:>8.3} s extrapolated from {sampled} sequential pairs  -> topo is {:.0}x faster",
            naive.as_secs_f64(),
            ratio(naive, median)
        );
        match fping {
            Some((t, failed)) => println!(
                "  fping per namespace        {:>8.3} s ({n} fping processes in parallel, {failed} reported loss)  -> topo is {:.1}x faster",
                t.as_secs_f64(),
                ratio(t, median)
            ),
            None => println!("  fping per namespace        (fping not installed)"),
        }
        let t = Instant::now();
        drop(lab);
        println!("  lab removed in {:.2} s", t.elapsed().as_secs_f64());
    }
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}
