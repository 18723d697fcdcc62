//! Taking labs away: `down` (one lab, from its state), rollback of a failed `up` (the same
//! code), and `gc` (every topo lab's residue, from names alone). Teardown never stops at the
//! first error: it goes on and reports them all.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use topo_plan::Plan;

use crate::state::{JournalEntry, Phase, StateDir};
use crate::{hooks, DownReport, GcReport, KernelError, DEFAULT_LOCK_WAIT, NETNS_PREFIX, STATE_ROOT};

/// Threads deleting namespaces at once (their unmounts mostly wait; see `delete_many`).
const DELETE_THREADS: usize = 16;
/// How long processes get to exit after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);
const KILL_GRACE: Duration = Duration::from_secs(2);

pub fn fabric_netns(lab: &str) -> String {
    format!("{NETNS_PREFIX}{lab}")
}

pub fn node_netns_prefix(lab: &str) -> String {
    format!("{NETNS_PREFIX}{lab}.")
}

/// Does a namespace (or `/etc/netns` entry) name belong to `lab`?
fn belongs(name: &str, lab: &str) -> bool {
    name == fabric_netns(lab) || name.starts_with(&node_netns_prefix(lab))
}

/// The lab a topo object name belongs to: `topo-<lab>` or `topo-<lab>.<node>`.
pub fn lab_of(name: &str) -> Option<&str> {
    let rest = name.strip_prefix(NETNS_PREFIX)?;
    let lab = rest.split('.').next()?;
    (!lab.is_empty()).then_some(lab)
}

/// Named namespaces of `lab` that exist now.
pub fn lab_netns_by_name(lab: &str) -> Vec<String> {
    topo_netns::list().unwrap_or_default().into_iter().filter(|n| belongs(n, lab)).collect()
}

fn lab_etc_by_name(lab: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(topo_netns::ETC_NETNS_DIR) {
        for e in rd.flatten() {
            if belongs(&e.file_name().to_string_lossy(), lab) {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// Mount points under `dir` (UTS namespace files), from the mount table.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else { return Vec::new() };
    let mut out: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir) && p != dir)
        .collect();
    out.sort();
    out.dedup();
    out
}

fn unescape_mountinfo(s: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo.
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Inodes of the named namespaces that exist (stat follows the bind mount to the nsfs inode).
/// A name that is not mounted (a half-built lab) stats as its disk file, whose inode number
/// means nothing in `/proc/*/ns/net`: only inodes on the namespace filesystem count.
fn netns_inodes(names: &BTreeSet<String>) -> HashSet<u64> {
    let Ok(nsfs) = fs::metadata("/proc/self/ns/net").map(|m| m.dev()) else { return HashSet::new() };
    names
        .iter()
        .filter_map(|n| fs::metadata(topo_netns::path_of(n)).ok())
        .filter(|m| m.dev() == nsfs)
        .map(|m| m.ino())
        .collect()
}

/// PIDs of processes whose network namespace is one of `inodes`: one pass over /proc.
pub(crate) fn pids_in(inodes: &HashSet<u64>) -> Vec<i32> {
    let mut out = Vec::new();
    if inodes.is_empty() {
        return out;
    }
    let me = std::process::id() as i32;
    let Ok(rd) = fs::read_dir("/proc") else { return out };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        if let Ok(md) = fs::metadata(format!("/proc/{pid}/ns/net")) {
            if inodes.contains(&md.ino()) {
                out.push(pid);
            }
        }
    }
    out.sort_unstable();
    out
}

/// SIGTERM, wait, SIGKILL: every process inside the given namespaces. Returns how many there were.
fn kill_in(inodes: &HashSet<u64>, errors: &mut Vec<String>) -> usize {
    let pids = pids_in(inodes);
    if pids.is_empty() {
        return 0;
    }
    let still = |pids: &[i32]| -> Vec<i32> {
        pids.iter()
            .copied()
            .filter(|p| fs::metadata(format!("/proc/{p}/ns/net")).is_ok_and(|m| inodes.contains(&m.ino())))
            .collect()
    };
    for &p in &pids {
        let _ = kill(Pid::from_raw(p), Signal::SIGTERM);
    }
    let mut left = wait_gone(&pids, TERM_GRACE, &still);
    if !left.is_empty() {
        for &p in &left {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
        left = wait_gone(&left, KILL_GRACE, &still);
        for p in &left {
            errors.push(format!("process {p} survived SIGKILL"));
        }
    }
    pids.len()
}

fn wait_gone(pids: &[i32], limit: Duration, still: &dyn Fn(&[i32]) -> Vec<i32>) -> Vec<i32> {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(1);
    loop {
        let left = still(pids);
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Remove everything of the lab that `sd`, `plan` and the names on the machine point at.
/// Used by `down`, by the rollback of `up`, and by `gc`. Returns every error met.
pub(crate) fn teardown(sd: &StateDir, plan: Option<&Plan>, report: &mut DownReport) -> Vec<String> {
    let lab = sd.lab.as_str();
    let t = Instant::now();
    let lap =
        |what: &str| tracing::debug!(lab, phase = what, ms = t.elapsed().as_secs_f64() * 1e3, "teardown");
    let mut errors = Vec::new();
    let journal = match sd.read_journal() {
        Ok(j) => j,
        Err(e) => {
            errors.push(e.to_string());
            Vec::new()
        }
    };
    let mut netns: BTreeSet<String> = lab_netns_by_name(lab).into_iter().collect();
    let mut uts: BTreeSet<PathBuf> = mounts_under(&sd.dir).into_iter().collect();
    let mut etc: BTreeSet<PathBuf> = lab_etc_by_name(lab).into_iter().collect();
    for e in journal {
        match e {
            JournalEntry::Netns { name } if belongs(&name, lab) => {
                netns.insert(name);
            }
            JournalEntry::Uts { path } if path.starts_with(&sd.dir) => {
                uts.insert(path);
            }
            JournalEntry::Etc { path }
                if path.file_name().is_some_and(|f| belongs(&f.to_string_lossy(), lab)) =>
            {
                etc.insert(path);
            }
            _ => {}
        }
    }
    if let Some(plan) = plan {
        if plan.lab == lab {
            errors.extend(hooks::stop(plan, &sd.dir));
        }
    }
    // The /etc/netns directories live on a disk filesystem and are independent of the rest:
    // remove them on another thread meanwhile.
    let etc_errors = std::thread::scope(|s| {
        let etc_job = s.spawn(|| remove_dirs(&etc));
        teardown_kernel(&netns, &uts, report, &mut errors, &lap);
        etc_job.join().unwrap_or_else(|_| vec!["/etc/netns cleanup panicked".to_owned()])
    });
    errors.extend(etc_errors);
    lap("etc");
    // The state tmpfs goes in one (lazy) unmount; what is left is the empty directory under it
    // (or, without a tmpfs, the files themselves). The lock file last: it is held until the end.
    if crate::state::is_mount_point(&sd.dir) {
        match nix::mount::umount2(sd.dir.as_path(), nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::Error::EINVAL | nix::Error::ENOENT) => {}
            Err(e) => errors.push(format!("unmount {}: {e}", sd.dir.display())),
        }
    }
    for (path, dir) in [(&sd.dir, true), (&sd.lock_path(), false)] {
        match if dir { fs::remove_dir_all(path) } else { fs::remove_file(path) } {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => errors.push(format!("remove {}: {e}", path.display())),
        }
    }
    lap("state");
    errors
}

fn remove_dirs(dirs: &BTreeSet<PathBuf>) -> Vec<String> {
    let mut errors = Vec::new();
    for d in dirs {
        match fs::remove_dir_all(d) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => errors.push(format!("remove {}: {e}", d.display())),
        }
    }
    errors
}

/// Processes, namespaces and UTS files of a lab.
fn teardown_kernel(
    netns: &BTreeSet<String>,
    uts: &BTreeSet<PathBuf>,
    report: &mut DownReport,
    errors: &mut Vec<String>,
    lap: &dyn Fn(&str),
) {
    // Processes first: a namespace with a process in it outlives its name.
    let inodes = netns_inodes(netns);
    report.processes_killed += kill_in(&inodes, errors);
    lap("processes");
    // Each unmount waits for an RCU grace period; on many threads the waits overlap.
    let names: Vec<String> = netns.iter().cloned().collect();
    let (deleted, errs) = topo_netns::delete_many(&names, DELETE_THREADS);
    report.namespaces += deleted;
    errors.extend(errs.into_iter().map(|e| e.to_string()));
    lap("namespaces");
    // The lab's UTS tmpfs goes with all the namespace files on it in one (lazy) unmount; files
    // outside it (or without it) one by one.
    let mut detached: Vec<&Path> = Vec::new();
    for p in uts.iter().filter(|p| p.is_dir()) {
        match nix::mount::umount2(p.as_path(), nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) => detached.push(p),
            Err(nix::Error::EINVAL | nix::Error::ENOENT) => {}
            Err(e) => errors.push(format!("unmount {}: {e}", p.display())),
        }
    }
    for p in uts.iter().filter(|p| !detached.iter().any(|d| p.starts_with(d))) {
        if p.is_dir() {
            continue; // an unmounted directory: removed with the state directory
        }
        if let Err(e) = topo_netns::remove_ns_file(p) {
            errors.push(format!("remove UTS namespace {}: {e}", p.display()));
        }
    }
    lap("uts");
}

/// Tear a lab down, collecting every error. Without a state directory it still removes whatever
/// carries the lab's name.
pub fn down(lab: &str) -> Result<DownReport, KernelError> {
    down_with(lab, DEFAULT_LOCK_WAIT)
}

pub fn down_with(lab: &str, lock_wait: Duration) -> Result<DownReport, KernelError> {
    let start = Instant::now();
    crate::validate_lab_name(lab)?;
    let sd = StateDir::new(lab);
    let mut report = DownReport { lab: lab.to_owned(), ..Default::default() };
    let (_lock, plan) = if sd.exists() {
        let lock = sd.lock(lock_wait, false)?;
        let plan = sd.read_plan().ok();
        if let Ok(mut meta) = sd.read_meta() {
            meta.phase = Phase::Down;
            let _ = sd.write_meta(&meta);
        }
        (Some(lock), plan)
    } else {
        if lab_netns_by_name(lab).is_empty() && lab_etc_by_name(lab).is_empty() {
            return Err(KernelError::NotUp(lab.to_owned()));
        }
        (None, None)
    };
    let mut errors = teardown(&sd, plan.as_ref(), &mut report);
    errors.extend(hooks::gc_lab(lab));
    report.elapsed = start.elapsed();
    report.peak_rss_kib = crate::peak_rss_kib();
    if errors.is_empty() {
        Ok(report)
    } else {
        Err(KernelError::Teardown { lab: lab.to_owned(), errors })
    }
}

/// Labs that left anything on this machine: namespaces, /etc/netns entries, state directories.
fn labs_with_residue() -> BTreeSet<String> {
    let mut labs = BTreeSet::new();
    for n in topo_netns::list().unwrap_or_default() {
        if let Some(l) = lab_of(&n) {
            labs.insert(l.to_owned());
        }
    }
    if let Ok(rd) = fs::read_dir(topo_netns::ETC_NETNS_DIR) {
        for e in rd.flatten() {
            if let Some(l) = lab_of(&e.file_name().to_string_lossy()) {
                labs.insert(l.to_owned());
            }
        }
    }
    if let Ok(rd) = fs::read_dir(STATE_ROOT) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            // `<lab>.lock` beside `<lab>/` (lab names have no dots).
            labs.insert(name.strip_suffix(".lock").map_or(name.clone(), str::to_owned));
        }
    }
    labs.extend(hooks::labs_with_residue());
    for m in mounts_under(Path::new(STATE_ROOT)) {
        if let Some(l) = m.strip_prefix(STATE_ROOT).ok().and_then(|r| r.iter().next()) {
            labs.insert(l.to_string_lossy().into_owned());
        }
    }
    labs
}

/// Remove the residue of every topo lab that is not healthy: no state, unreadable state, or an
/// `up`/`down` that died half-way. Labs that are up, or whose lock another topo holds, are left
/// alone. Idempotent; does nothing when nothing is there.
pub fn gc() -> Result<GcReport, KernelError> {
    gc_labs(None)
}

/// [`gc`] restricted to the named labs (all labs when `None`).
pub fn gc_labs(only: Option<&[String]>) -> Result<GcReport, KernelError> {
    let mut report = GcReport::default();
    for lab in labs_with_residue() {
        if only.is_some_and(|o| !o.contains(&lab)) {
            continue;
        }
        if crate::validate_lab_name(&lab).is_err() {
            report.errors.push(format!("{STATE_ROOT}/{lab}: not a lab name; left alone"));
            continue;
        }
        let sd = StateDir::new(&lab);
        let mut _lock = None;
        let mut plan = None;
        if sd.exists() || sd.lock_path().exists() {
            // Also a lock file without a directory: an `up` holds it before it makes the
            // directory.
            match sd.lock(Duration::ZERO, true) {
                Ok(l) => _lock = Some(l),
                Err(KernelError::Locked { .. }) => continue, // in use by a live topo process
                Err(e) => {
                    report.errors.push(e.to_string());
                    continue;
                }
            }
            let healthy =
                sd.read_meta().is_ok_and(|m| m.phase == Phase::Up) && topo_netns::exists(&fabric_netns(&lab));
            plan = sd.read_plan().ok();
            if healthy && plan.is_some() {
                continue;
            }
        }
        // Record what is there before removing it.
        let names = lab_netns_by_name(&lab);
        let inodes = netns_inodes(&names.iter().cloned().collect());
        report.processes.extend(pids_in(&inodes));
        report.namespaces.extend(names);
        report.etc_dirs.extend(lab_etc_by_name(&lab));
        report.uts_mounts.extend(mounts_under(&sd.dir));
        if sd.exists() {
            report.state_dirs.push(sd.dir.clone());
        }
        if sd.lock_path().exists() {
            report.state_dirs.push(sd.lock_path());
        }
        let mut down = DownReport::default();
        report.errors.extend(teardown(&sd, plan.as_ref(), &mut down));
        report.errors.extend(hooks::gc_lab(&lab));
        report.labs.push(lab);
    }
    Ok(report)
}
