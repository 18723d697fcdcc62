//! Kernel lab bring-up and teardown: `topo up` / `topo down` of single-LAN labs with N hosts,
//! against a baseline built with `ip -batch` (one batch for the root and fabric namespaces, one
//! `ip -n NS -batch` per node) measured in the same run. Prints both, the ratio, and topo's peak
//! RSS. Needs root; run with `cargo bench --bench kernel_up` (`KERNEL_BENCH_N=100,500`,
//! `KERNEL_BENCH_REPS=3` to change sizes and repetitions; the median is reported).
//!
//! Both sides are whole processes timed from the outside: `topo` includes parsing and planning
//! the file; the baseline includes every `ip` process it starts. The last columns are the share
//! of CPU time the hypervisor took away during topo's runs (steal, from /proc/stat; on a VM
//! whose host is busy, wall times rise with it) and the 1-minute load average before and after
//! each size.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    // cargo bench passes --bench; nothing else to parse.
    if !topo_lab::testkit::require_root("bench kernel_up") {
        return;
    }
    let sizes: Vec<usize> = std::env::var("KERNEL_BENCH_N").ok().map_or_else(
        || vec![100, 500, 1000],
        |s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect(),
    );
    let reps: usize =
        std::env::var("KERNEL_BENCH_REPS").ok().and_then(|s| s.parse().ok()).unwrap_or(3).max(1);
    let topo = topo_exe();
    println!("kernel lab up+down, single LAN of N hosts; median of {reps} run(s); times in seconds");
    println!(
        "{:>5} | {:>8} {:>8} {:>8} | {:>8} {:>8} {:>8} | {:>7} | {:>9} | {:>5} | {:>9}",
        "N", "topo up", "down", "total", "ip up", "down", "total", "speedup", "topo RSS", "steal", "load 1m"
    );
    for n in sizes {
        let load_before = load_avg();
        let mut topo_runs = Vec::new();
        let mut base_runs = Vec::new();
        let mut rss = 0u64;
        let (mut stolen, mut total) = (0u64, 0u64);
        for _ in 0..reps {
            let before = netns_alive();
            let t0 = cpu_times();
            let (up, down, r) = run_topo(&topo, n);
            let t1 = cpu_times();
            stolen += t1.0.saturating_sub(t0.0);
            total += t1.1.saturating_sub(t0.1);
            rss = rss.max(r);
            topo_runs.push((up, down));
            settle(before);
            let before = netns_alive();
            base_runs.push(run_baseline(n));
            settle(before);
        }
        let (tu, td) = median(&topo_runs);
        let (bu, bd) = median(&base_runs);
        let (tt, bt) = (tu + td, bu + bd);
        println!(
            "{n:>5} | {:>8.3} {:>8.3} {:>8.3} | {:>8.3} {:>8.3} {:>8.3} | {:>6.1}x | {:>6.1} MB | {:>4.0}% | {load_before}->{}",
            tu.as_secs_f64(),
            td.as_secs_f64(),
            tt.as_secs_f64(),
            bu.as_secs_f64(),
            bd.as_secs_f64(),
            bt.as_secs_f64(),
            bt.as_secs_f64() / tt.as_secs_f64(),
            rss as f64 / 1024.0,
            100.0 * stolen as f64 / total.max(1) as f64,
            load_avg()
        );
        let _ = std::io::stdout().flush();
    }
}

/// (steal, all) CPU time of the machine so far, in clock ticks, from the `cpu` line of /proc/stat
/// (user nice system idle iowait irq softirq steal ...).
fn cpu_times() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = text
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|x| x.parse().ok())
        .collect();
    (fields.get(7).copied().unwrap_or(0), fields.iter().sum())
}

/// The 1-minute load average (the machine is shared: figures are only comparable at a like load).
fn load_avg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// The release `topo` next to this bench binary (cargo builds it for benches), else debug.
fn topo_exe() -> PathBuf {
    if let Some(p) = option_env!("CARGO_BIN_EXE_topo") {
        return PathBuf::from(p);
    }
    let me = std::env::current_exe().expect("current exe");
    me.parent().and_then(Path::parent).map(|d| d.join("topo")).expect("topo binary")
}

/// Network namespaces allocated in the kernel (the `net_namespace` slab), including deleted ones
/// the kernel has not cleaned up yet.
fn netns_alive() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/slabinfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("net_namespace "))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Let the kernel finish tearing down the namespaces of the last run (it does that
/// asynchronously, and 1000 of them take it 2–3 s) before the next measurement: wait until the
/// count is back near what it was before the run (other processes on the machine make and
/// remove namespaces too), at most 20 s; without the count, a fixed pause.
fn settle(before: Option<u64>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    match before {
        Some(b) => {
            while netns_alive().is_some_and(|n| n > b + 64) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        None => std::thread::sleep(Duration::from_secs(3)),
    }
}

fn median(runs: &[(Duration, Duration)]) -> (Duration, Duration) {
    let mut v = runs.to_vec();
    v.sort_by_key(|(u, d)| *u + *d);
    v[v.len() / 2]
}

fn lab_file(lab: &str, n: usize) -> PathBuf {
    let y = format!(
        "name: {lab}\nnetworks:\n  lan: {{subnet: 10.128.0.0/16}}\nnodes:\n  h{{1..{n}}}:\n    interfaces: [lan]\n"
    );
    let path = std::env::temp_dir().join(format!("{lab}.yaml"));
    std::fs::write(&path, y).expect("write topology");
    path
}

/// Wall time of a child process, and its stdout.
fn timed(cmd: &mut Command) -> (Duration, String) {
    let t = Instant::now();
    let out = cmd.stdin(Stdio::null()).stderr(Stdio::inherit()).output().expect("spawn");
    let elapsed = t.elapsed();
    assert!(out.status.success(), "{cmd:?} failed: {}", out.status);
    (elapsed, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `peak_rss_kib` from topo's JSON report (its own VmHWM at the end of the command).
fn rss_of(json: &str) -> u64 {
    serde_json::from_str::<serde_json::Value>(json).ok().and_then(|v| v["peak_rss_kib"].as_u64()).unwrap_or(0)
}

fn run_topo(topo: &Path, n: usize) -> (Duration, Duration, u64) {
    let lab = format!("kb{n}x{}", std::process::id() % 100_000);
    let file = lab_file(&lab, n);
    let (up, out_up) = timed(Command::new(topo).arg("up").arg(&file).arg("--json"));
    let (down, out_down) = timed(Command::new(topo).args(["down", &lab, "--json"]));
    let _ = std::fs::remove_file(file);
    (up, down, rss_of(&out_up).max(rss_of(&out_down)))
}

/// The same lab with iproute2 batches: root batch (namespaces, veths created in place),
/// fabric batch (bridge, enslave, up), one batch per node (address, links up).
fn run_baseline(n: usize) -> (Duration, Duration) {
    let p = format!("bl{}", std::process::id() % 100_000);
    let sw = format!("{p}-sw");
    let dir = std::env::temp_dir().join(format!("{p}-batches"));
    std::fs::create_dir_all(&dir).expect("batch dir");
    let mut root = format!("netns add {sw}\n");
    let mut fabric = String::from("link add br0 type bridge\nlink set br0 up\n");
    for i in 1..=n {
        let _ = writeln!(root, "netns add {p}-h{i}");
        let _ = writeln!(root, "link add eth0 netns {p}-h{i} type veth peer name p{i} netns {sw}");
        let _ = writeln!(fabric, "link set p{i} master br0 up");
    }
    let node = |i: usize| {
        let a = 10u32 << 24 | 128 << 16 | (i as u32 + 1);
        format!(
            "addr add {}.{}.{}.{}/16 dev eth0\nlink set eth0 up\nlink set lo up\n",
            a >> 24,
            (a >> 16) & 255,
            (a >> 8) & 255,
            a & 255
        )
    };
    let mut del = format!("netns del {sw}\n");
    for i in 1..=n {
        let _ = writeln!(del, "netns del {p}-h{i}");
    }
    let write = |name: &str, text: &str| {
        let f = dir.join(name);
        std::fs::write(&f, text).expect("write batch");
        f
    };
    let root_f = write("root", &root);
    let fabric_f = write("fabric", &fabric);
    let node_files: Vec<PathBuf> = (1..=n).map(|i| write(&format!("h{i}"), &node(i))).collect();
    let del_f = write("del", &del);

    let t = Instant::now();
    timed(Command::new("ip").arg("-batch").arg(&root_f));
    timed(Command::new("ip").args(["-n", &sw, "-batch"]).arg(&fabric_f));
    for (i, f) in node_files.iter().enumerate() {
        timed(Command::new("ip").args(["-n", &format!("{p}-h{}", i + 1), "-batch"]).arg(f));
    }
    let up = t.elapsed();
    let t = Instant::now();
    timed(Command::new("ip").arg("-batch").arg(&del_f));
    let down = t.elapsed();
    let _ = std::fs::remove_dir_all(&dir);
    (up, down)
}
