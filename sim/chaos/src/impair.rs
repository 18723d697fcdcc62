//! Impairment back ends: netem when the kernel has it; otherwise tbf for rate (both through the
//! `tc` binary — a documented shortcut, qdisc netlink encoding is not worth it here), nftables
//! `numgen` for loss (see [`crate::nft`]) and the userspace [`crate::delayer`] for delay,
//! jitter, duplication and reordering.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use topo_spec::Impairment;

use crate::delayer::DelayerSpec;
use crate::ChaosError;

/// A root qdisc on a sender's interface.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Qdisc {
    /// Everything in one netem qdisc (kernels that have it).
    Netem(Impairment),
    /// Token bucket at this many bits per second.
    Tbf(u64),
}

fn tc(netns: &str, args: &[String]) -> Result<(), String> {
    let out = Command::new("tc")
        .arg("-n")
        .arg(netns)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run tc (install iproute2): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("tc -n {netns} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Does this kernel have netem? Probed once per process by adding a netem qdisc to `lo` of a
/// lab namespace (harmless: removed right away). `TOPO_NETEM=0` forces the fallback path.
pub fn netem_available(scratch_netns: &str) -> bool {
    static NETEM: OnceLock<bool> = OnceLock::new();
    *NETEM.get_or_init(|| {
        if std::env::var("TOPO_NETEM").as_deref() == Ok("0") {
            return false;
        }
        let add = ["qdisc", "add", "dev", "lo", "root", "handle", "7ff0:", "netem", "delay", "1ms"];
        let ok = tc(scratch_netns, &add.map(String::from)).is_ok();
        if ok {
            let _ = tc(scratch_netns, &["qdisc", "del", "dev", "lo", "root"].map(String::from));
        }
        tracing::debug!(netem = ok, "probed netem support");
        ok
    })
}

fn pct(v: f64) -> String {
    format!("{v}%")
}

/// Burst for a token bucket: 4 ms worth of bytes, at least two full frames.
fn burst_bytes(rate: u64) -> u64 {
    (rate / 8 / 250).max(3028)
}

/// Replace (or, with `None`, remove) the root qdisc of `dev`.
pub fn set_qdisc(netns: &str, dev: &str, q: Option<&Qdisc>) -> Result<(), String> {
    let mut args: Vec<String> = vec!["qdisc".into()];
    match q {
        None => {
            args.extend(["del", "dev", dev, "root"].map(String::from));
            return match tc(netns, &args) {
                // Nothing to delete is fine (the default qdisc is back already).
                Err(e)
                    if e.contains("No such file")
                        || e.contains("Cannot delete qdisc with handle of zero") =>
                {
                    Ok(())
                }
                r => r,
            };
        }
        Some(Qdisc::Tbf(rate)) => {
            args.extend(["replace", "dev", dev, "root", "tbf"].map(String::from));
            args.extend([
                "rate".into(),
                format!("{rate}bit"),
                "burst".into(),
                format!("{}b", burst_bytes(*rate)),
                "latency".into(),
                "50ms".into(),
            ]);
        }
        Some(Qdisc::Netem(imp)) => {
            args.extend(["replace", "dev", dev, "root", "netem", "limit", "10000"].map(String::from));
            if let Some(d) = imp.delay {
                args.extend(["delay".into(), format!("{}us", d.as_micros())]);
                if let Some(j) = imp.jitter {
                    args.push(format!("{}us", j.as_micros()));
                }
            }
            if let Some(l) = imp.loss {
                args.extend(["loss".into(), pct(l)]);
            }
            if let Some(d) = imp.duplicate {
                args.extend(["duplicate".into(), pct(d)]);
            }
            if let Some(r) = imp.reorder {
                args.extend(["reorder".into(), pct(r)]);
            }
            if let Some(r) = imp.rate {
                args.extend(["rate".into(), format!("{r}bit")]);
            }
        }
    }
    tc(netns, &args)
}

/// The `topo` executable as the running program knows it (see [`set_topo_bin`]).
static TOPO_BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Called by the `topo` binary with its own path, so the delayer is found whatever name the
/// executable was installed or copied under. The first call wins.
pub fn set_topo_bin(path: PathBuf) {
    let _ = TOPO_BIN.set(path);
}

/// The program that runs `__delayer`: `$TOPO_BIN`, else what [`set_topo_bin`] was given, else
/// this executable when it is `topo`, else a `topo` next to it (or one directory up, where cargo
/// puts binaries relative to tests).
pub fn topo_bin() -> Result<PathBuf, ChaosError> {
    if let Some(p) = std::env::var_os("TOPO_BIN") {
        return Ok(PathBuf::from(p));
    }
    if let Some(p) = TOPO_BIN.get() {
        return Ok(p.clone());
    }
    let exe = std::env::current_exe().map_err(|e| ChaosError::Delayer(format!("current_exe: {e}")))?;
    if exe.file_name().is_some_and(|n| n == "topo") {
        return Ok(exe);
    }
    for dir in exe.ancestors().skip(1).take(2) {
        let cand = dir.join("topo");
        if cand.is_file() {
            return Ok(cand);
        }
    }
    Err(ChaosError::Delayer(
        "cannot find the topo binary to run the delayer; set TOPO_BIN=/path/to/topo".into(),
    ))
}

pub fn delayer_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("chaos")
}

fn pid_file(state_dir: &Path, netns: &str, queue: u16) -> PathBuf {
    delayer_dir(state_dir).join(format!("delayer-{netns}-{queue}.pid"))
}

/// Is `pid` one of our delayers (guards against PID reuse)?
pub fn is_delayer(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == b"__delayer"))
}

/// Start a delayer for `queue` inside `netns`, record its pid, and wait until it has bound the
/// queue (so delay applies from the moment the rule appears).
pub fn start_delayer(
    state_dir: &Path,
    netns: &str,
    queue: u16,
    spec: &DelayerSpec,
) -> Result<i32, ChaosError> {
    let dir = delayer_dir(state_dir);
    std::fs::create_dir_all(&dir)
        .map_err(|e| ChaosError::Delayer(format!("create {}: {e}", dir.display())))?;
    let log = std::fs::File::create(dir.join(format!("delayer-{netns}-{queue}.log")))
        .map_err(|e| ChaosError::Delayer(format!("delayer log: {e}")))?;
    let ns = topo_netns::Netns::open(netns)?;
    let mut cmd = Command::new(topo_bin()?);
    cmd.args(spec.to_args(queue)).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log);
    // Its own process group: Ctrl-C on the CLI must not take the impairment down with it.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    topo_netns::command_in(&mut cmd, &ns, None).map_err(|e| ChaosError::Delayer(format!("prepare: {e}")))?;
    let mut child = cmd.spawn().map_err(|e| ChaosError::Delayer(format!("spawn delayer: {e}")))?;
    let pid = child.id() as i32;
    std::fs::write(pid_file(state_dir, netns, queue), format!("{pid}\n"))
        .map_err(|e| ChaosError::Delayer(format!("record delayer pid: {e}")))?;
    let Some(out) = child.stdout.take() else {
        return Err(ChaosError::Delayer("delayer has no stdout".into()));
    };
    // Reap it in the background if it exits while we are still alive (no zombies in tests).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(out).read_line(&mut line);
        let _ = tx.send(line);
        let _ = child.wait();
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(l) if l.trim() == "ready" => Ok(pid),
        _ => {
            kill_pid(pid);
            let _ = std::fs::remove_file(pid_file(state_dir, netns, queue));
            let log =
                std::fs::read_to_string(dir.join(format!("delayer-{netns}-{queue}.log"))).unwrap_or_default();
            Err(ChaosError::Delayer(format!(
                "delayer for queue {queue} in {netns} did not start: {}",
                log.trim()
            )))
        }
    }
}

fn kill_pid(pid: i32) {
    if pid > 1 && is_delayer(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
}

/// Pid of the recorded delayer for (netns, queue), if it is still running.
pub fn running_delayer(state_dir: &Path, netns: &str, queue: u16) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pid_file(state_dir, netns, queue)).ok()?.trim().parse().ok()?;
    is_delayer(pid).then_some(pid)
}

pub fn stop_delayer(state_dir: &Path, netns: &str, queue: u16) {
    if let Some(pid) = running_delayer(state_dir, netns, queue) {
        kill_pid(pid);
    }
    let _ = std::fs::remove_file(pid_file(state_dir, netns, queue));
}

/// Kill every delayer recorded under `state_dir` (down, clear).
pub fn stop_all_delayers(state_dir: &Path) {
    let Ok(rd) = std::fs::read_dir(delayer_dir(state_dir)) else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let is_pid_file = Path::new(&name).extension().is_some_and(|x| x == "pid");
        if name.starts_with("delayer-") && is_pid_file {
            if let Some(pid) =
                std::fs::read_to_string(e.path()).ok().and_then(|s| s.trim().parse::<i32>().ok())
            {
                kill_pid(pid);
            }
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Kill delayers found by namespace only (gc without a state dir).
pub fn kill_delayers_in(inode: u64) {
    for pid in topo_netns::pids_in_netns(inode) {
        kill_pid(pid);
    }
}
