//! FRR processes: directories, start, stop, garbage collection.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read as _};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::{chown, Gid, Group, Pid, Uid, User};
use topo_netns::Netns;
use topo_plan::{NodePlan, Plan};
use topo_spec::RoutingDaemon;

use crate::{DaemonError, StartedProcess};

/// Where the FRR daemons are installed (Debian's `frr` package).
pub const FRR_BIN_DIR: &str = "/usr/lib/frr";
/// FRR's compiled-in run directory; each node gets `<root>/<pathspace>/`.
pub const FRR_RUN_ROOT: &str = "/var/run/frr";
/// FRR's configuration directory; each node gets `<root>/<pathspace>/`.
pub const FRR_ETC_ROOT: &str = "/etc/frr";
/// File in both per-node directories naming the lab, so [`gc_lab`] can find them by lab name.
const MARKER: &str = "topo-lab";
/// Daemons topo knows how to start, in start order (zebra first: the others connect to it).
const DAEMONS: &[&str] = &["zebra", "staticd", "bfdd", "ospfd"];
/// How long a daemon may take to daemonize (its parent exits once the config is loaded).
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// FRR daemons take 0.5–1.5 s to exit after SIGTERM.
const TERM_GRACE: Duration = Duration::from_secs(4);
const KILL_GRACE: Duration = Duration::from_secs(2);
/// Nodes started at once by [`start_nodes`].
pub const PARALLEL_STARTS: usize = 8;
/// `sun_path` is 108 bytes including the NUL.
const MAX_SOCKET_PATH: usize = 107;

/// The directories of one router's FRR instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrrPaths {
    /// FRR pathspace (`vtysh -N <pathspace>`): `topo-<lab>_<node>` with dots replaced.
    pub pathspace: String,
    /// Config files (`/etc/frr/<pathspace>/`).
    pub etc: PathBuf,
    /// Run directory (`/var/run/frr/<pathspace>/`): pid files, sockets, logs. Inside the
    /// daemons' mount namespaces it is mounted over `/var/run/frr`.
    pub run: PathBuf,
}

impl FrrPaths {
    pub fn new(plan: &Plan, node: &NodePlan) -> FrrPaths {
        let pathspace = pathspace(plan, &node.name);
        FrrPaths {
            etc: Path::new(FRR_ETC_ROOT).join(&pathspace),
            run: Path::new(FRR_RUN_ROOT).join(&pathspace),
            pathspace,
        }
    }

    /// The vty socket of one daemon, as seen from the host.
    pub fn vty_socket(&self, daemon: &str) -> PathBuf {
        self.run.join(format!("{daemon}.vty"))
    }

    pub fn pid_file(&self, daemon: &str) -> PathBuf {
        self.run.join(format!("{daemon}.pid"))
    }

    pub fn log_file(&self, daemon: &str) -> PathBuf {
        self.run.join(format!("{daemon}.log"))
    }
}

/// FRR pathspace of a node: `topo-<lab>_<node>` (lab names can't contain `_`, so two labs never
/// share a pathspace). FRR refuses dots in pathspaces, so dots in node
/// names become underscores; should that make two nodes collide, the node index is appended.
pub fn pathspace(plan: &Plan, node: &str) -> String {
    let clean = |n: &str| n.replace('.', "_");
    let mine = clean(node);
    let collides = plan.nodes.iter().any(|n| n.name != node && clean(&n.name) == mine);
    match (collides, plan.node_index(node)) {
        (true, Some(i)) => format!("topo-{}_{mine}-{i}", plan.lab),
        _ => format!("topo-{}_{mine}", plan.lab),
    }
}

/// The argv that runs `vtysh` against a node's daemons (`vtysh -N <pathspace>`), or `None` when
/// the node runs no FRR. Extra arguments (e.g. `-c 'show ip route'`) go after it. The kernel
/// backend's `exec` uses it to make a bare `topo exec r1 vtysh ...` work.
pub fn vtysh_argv(plan: &Plan, node: &str) -> Option<Vec<String>> {
    let n = plan.node(node)?;
    let r = n.routing.as_ref()?;
    if r.daemon != RoutingDaemon::Frr || r.configs.is_empty() {
        return None;
    }
    Some(vec!["vtysh".to_owned(), "-N".to_owned(), pathspace(plan, node)])
}

/// Rewrite a command to run inside `node` so that a bare `vtysh ...` talks to the node's own FRR
/// daemons (adds `-N <pathspace>` unless the caller chose `-N` or `--vty_socket`). Any other
/// command is returned unchanged. The kernel backend's `exec` and `shell` pass argv through it.
pub fn exec_argv(plan: &Plan, node: &str, argv: &[String]) -> Vec<String> {
    let is_vtysh = argv.first().is_some_and(|p| Path::new(p).file_name().is_some_and(|f| f == "vtysh"));
    let chose = argv.iter().skip(1).any(|a| {
        a == "-N" || a.starts_with("--pathspace") || a.starts_with("--vty_socket") || a.starts_with("-N")
    });
    match vtysh_argv(plan, node) {
        Some(base) if is_vtysh && !chose => {
            let mut out = vec![argv[0].clone()];
            out.extend(base.into_iter().skip(1));
            out.extend(argv.iter().skip(1).cloned());
            out
        }
        _ => argv.to_vec(),
    }
}

fn frr_ids() -> Result<(Uid, Gid), String> {
    let user = User::from_name("frr").ok().flatten().ok_or("user frr does not exist (install `frr`)")?;
    let group = Group::from_name("frr").ok().flatten().ok_or("group frr does not exist (install `frr`)")?;
    Ok((user.uid, group.gid))
}

/// The daemons to start for a node, in start order, checked against what topo supports.
fn daemons_of(node: &NodePlan) -> Result<Vec<&'static str>, DaemonError> {
    let unsupported = |what: String| DaemonError::Unsupported { node: node.name.clone(), what };
    let Some(routing) = &node.routing else { return Ok(Vec::new()) };
    if routing.daemon != RoutingDaemon::Frr {
        return Err(unsupported(format!(
            "routing daemon {:?} is not supported by the kernel backend yet (use `frr`)",
            routing.daemon
        )));
    }
    for file in routing.configs.keys() {
        let known = file.strip_suffix(".conf").is_some_and(|d| DAEMONS.contains(&d));
        if !known {
            return Err(unsupported(format!("no FRR daemon for config file {file:?}")));
        }
    }
    let list: Vec<&'static str> =
        DAEMONS.iter().copied().filter(|d| routing.configs.contains_key(&format!("{d}.conf"))).collect();
    if !list.is_empty() && !list.contains(&"zebra") {
        return Err(unsupported("the plan has FRR configs but no zebra.conf".into()));
    }
    Ok(list)
}

/// Start the routing daemons of `node` inside its namespace: zebra first (waiting for its zserv
/// socket), then the others. Returns the started processes, which are also recorded under
/// `<state_dir>/pids/`. Nodes without routing start nothing. On failure, whatever this call
/// started is stopped again. Calling it again for a node whose daemons died restarts them.
pub fn start_node(plan: &Plan, node: &str, state_dir: &Path) -> Result<Vec<StartedProcess>, DaemonError> {
    let n = plan.node(node).ok_or_else(|| DaemonError::UnknownNode(node.to_owned()))?;
    let daemons = daemons_of(n)?;
    if daemons.is_empty() {
        return Ok(Vec::new());
    }
    let configs = &n.routing.as_ref().expect("daemons_of checked routing").configs;
    for d in &daemons {
        let bin = Path::new(FRR_BIN_DIR).join(d);
        if !bin.exists() {
            return Err(DaemonError::NotInstalled(bin));
        }
    }
    let paths = FrrPaths::new(plan, n);
    let longest = paths.vty_socket("zebra").as_os_str().len();
    if longest > MAX_SOCKET_PATH {
        return Err(DaemonError::Unsupported {
            node: node.to_owned(),
            what: format!(
                "FRR socket path {} is too long for a unix socket; use a shorter lab or node name",
                paths.vty_socket("zebra").display()
            ),
        });
    }
    let running = live_daemons(&paths);
    if !running.is_empty() {
        let list: Vec<String> = running.iter().map(|(d, p)| format!("{d} (pid {p})")).collect();
        return Err(DaemonError::Start {
            node: node.to_owned(),
            daemon: "frr".into(),
            detail: format!(
                "already running in {}: {}; run `topo down` (or `topo gc`) first",
                paths.run.display(),
                list.join(", ")
            ),
        });
    }
    prepare_dirs(plan, n, &paths, configs)?;
    forget_dead_records(state_dir, node);
    let netns = Netns::open(&n.netns)?;
    let uts = state_dir.join("uts").join(node);
    let uts = uts.exists().then_some(uts);
    let mut started: Vec<StartedProcess> = Vec::new();
    let res = (|| -> Result<(), DaemonError> {
        for d in daemons {
            let pid = spawn_daemon(n, &paths, &netns, uts.as_deref(), d)?;
            let p = StartedProcess { pid, node: node.to_owned(), daemon: d.to_owned() };
            started.push(p.clone());
            record_pid(state_dir, &paths, &p)?;
            if d == "zebra" {
                wait_for_file(&paths.run.join("zserv.api"), Duration::from_secs(5)).map_err(|()| {
                    DaemonError::Start {
                        node: node.to_owned(),
                        daemon: "zebra".into(),
                        detail: format!("zserv.api did not appear in {}", paths.run.display()),
                    }
                })?;
            }
        }
        Ok(())
    })();
    if let Err(e) = res {
        // Leave nothing half-started behind (also a daemon whose pid we never learned); the
        // caller reports `e`.
        let mut procs: Vec<(StartedProcess, FrrPaths)> =
            started.iter().map(|p| (p.clone(), paths.clone())).collect();
        for (daemon, pid) in live_daemons(&paths) {
            if !procs.iter().any(|(p, _)| p.pid == pid) {
                procs.push((StartedProcess { pid, node: node.to_owned(), daemon }, paths.clone()));
            }
        }
        let _ = stop_pids(&procs);
        for (p, _) in &procs {
            let _ = fs::remove_file(state_dir.join("pids").join(p.pid.to_string()));
        }
        return Err(e);
    }
    tracing::debug!(node, pathspace = %paths.pathspace, "FRR started");
    Ok(started)
}

/// Start the daemons of several nodes concurrently (a thread per node, at most
/// [`PARALLEL_STARTS`] at a time). Use it for nodes that don't depend on each other (e.g. all
/// routers of a `start_order` level): FRR spends most of its start-up time waiting, so three
/// routers start in about the time of one. On failure, everything this call started is stopped
/// again and the first error is returned.
pub fn start_nodes(
    plan: &Plan,
    nodes: &[&str],
    state_dir: &Path,
) -> Result<Vec<StartedProcess>, DaemonError> {
    let mut started: Vec<StartedProcess> = Vec::new();
    let mut first_error: Option<DaemonError> = None;
    for chunk in nodes.chunks(PARALLEL_STARTS) {
        let results: Vec<Result<Vec<StartedProcess>, DaemonError>> = thread::scope(|s| {
            let handles: Vec<_> =
                chunk.iter().map(|node| s.spawn(move || start_node(plan, node, state_dir))).collect();
            handles
                .into_iter()
                .zip(chunk)
                .map(|(h, node)| {
                    h.join().unwrap_or_else(|_| {
                        Err(DaemonError::Start {
                            node: (*node).to_owned(),
                            daemon: "frr".into(),
                            detail: "the starting thread panicked".into(),
                        })
                    })
                })
                .collect()
        });
        for r in results {
            match r {
                Ok(p) => started.extend(p),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if first_error.is_some() {
            break;
        }
    }
    match first_error {
        None => Ok(started),
        Some(e) => {
            let procs: Vec<(StartedProcess, FrrPaths)> = started
                .iter()
                .filter_map(|p| plan.node(&p.node).map(|n| (p.clone(), FrrPaths::new(plan, n))))
                .collect();
            let _ = stop_pids(&procs);
            for p in &started {
                let _ = fs::remove_file(state_dir.join("pids").join(p.pid.to_string()));
            }
            Err(e)
        }
    }
}

fn prepare_dirs(
    plan: &Plan,
    n: &NodePlan,
    paths: &FrrPaths,
    configs: &std::collections::BTreeMap<String, String>,
) -> Result<(), DaemonError> {
    let node = n.name.as_str();
    let (uid, gid) = frr_ids().map_err(|e| DaemonError::Start {
        node: node.to_owned(),
        daemon: "frr".into(),
        detail: e,
    })?;
    let io = |op: String| move |e: io::Error| DaemonError::io(node, op, e);
    // A stale directory from a crashed run: nothing in it is alive (checked by the caller).
    for dir in [&paths.run, &paths.etc] {
        remove_dir(dir).map_err(io(format!("remove stale {}", dir.display())))?;
    }
    fs::create_dir_all(FRR_RUN_ROOT).map_err(io(format!("create {FRR_RUN_ROOT}")))?;
    for dir in [&paths.run, &paths.etc] {
        fs::create_dir(dir).map_err(io(format!("create {}", dir.display())))?;
        fs::write(dir.join(MARKER), format!("{}\n", plan.lab))
            .map_err(io(format!("write {}", dir.join(MARKER).display())))?;
        // The daemons drop privileges to frr:frr and write pid files and sockets here.
        chown(dir.as_path(), Some(uid), Some(gid)).map_err(|e| {
            DaemonError::io(node, format!("chown frr:frr {}", dir.display()), io::Error::from(e))
        })?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
            .map_err(io(format!("chmod {}", dir.display())))?;
    }
    let mut files: Vec<(String, String)> = configs.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    // vtysh -N reads it and warns when it is missing.
    files.push(("vtysh.conf".into(), format!("! vtysh for node {node}: `vtysh -N {}`\n", paths.pathspace)));
    for (name, text) in files {
        let path = paths.etc.join(&name);
        fs::write(&path, text).map_err(io(format!("write {}", path.display())))?;
        chown(path.as_path(), Some(uid), Some(gid)).map_err(|e| {
            DaemonError::io(node, format!("chown frr:frr {}", path.display()), io::Error::from(e))
        })?;
    }
    Ok(())
}

/// Start one daemon with `-d` and return its pid. FRR's daemonizing parent exits only after the
/// child has read its config and opened its sockets, so a zero exit means "ready".
fn spawn_daemon(
    n: &NodePlan,
    paths: &FrrPaths,
    netns: &Netns,
    uts: Option<&Path>,
    daemon: &str,
) -> Result<i32, DaemonError> {
    let node = n.name.as_str();
    let fail =
        |detail: String| DaemonError::Start { node: node.to_owned(), daemon: daemon.to_owned(), detail };
    // Paths as the daemon sees them: its /var/run/frr is the node's run directory.
    let inner = Path::new(FRR_RUN_ROOT);
    let out_path = paths.run.join(format!("{daemon}.out"));
    let out =
        fs::File::create(&out_path).map_err(|e| DaemonError::io(node, "create daemon output file", e))?;
    let err = out.try_clone().map_err(|e| DaemonError::io(node, "dup output file", e))?;
    let mut cmd = Command::new(Path::new(FRR_BIN_DIR).join(daemon));
    cmd.arg("-d")
        .arg("-f")
        .arg(paths.etc.join(format!("{daemon}.conf")))
        .arg("-i")
        .arg(inner.join(format!("{daemon}.pid")))
        .arg("--vty_socket")
        .arg(inner)
        .args(["-A", "127.0.0.1", "-P", "0"])
        .arg("--log")
        .arg(format!("file:{}", inner.join(format!("{daemon}.log")).display()));
    cmd.arg("-z").arg(inner.join("zserv.api"));
    if daemon == "bfdd" {
        cmd.arg("--bfdctl").arg(inner.join("bfdd.sock"));
    }
    cmd.stdin(Stdio::null()).stdout(out).stderr(err).current_dir("/");
    topo_netns::command_in(&mut cmd, netns, uts)
        .map_err(|e| DaemonError::io(node, "prepare namespace entry", e))?;
    bind_run_dir(&mut cmd, &paths.run).map_err(|e| DaemonError::io(node, "prepare run directory bind", e))?;
    let mut child = cmd.spawn().map_err(|e| fail(format!("spawn {daemon}: {e}")))?;
    let deadline = Instant::now() + START_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(2)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!(
                    "did not finish starting within {} s{}",
                    START_TIMEOUT.as_secs(),
                    diagnostics(paths, daemon)
                )));
            }
            Err(e) => return Err(fail(format!("wait: {e}"))),
        }
    };
    if !status.success() {
        return Err(fail(format!("exited with {status}{}", diagnostics(paths, daemon))));
    }
    let pid = read_pid(&paths.pid_file(daemon)).ok_or_else(|| {
        fail(format!("no pid in {}{}", paths.pid_file(daemon).display(), diagnostics(paths, daemon)))
    })?;
    if !alive(pid) {
        return Err(fail(format!("pid {pid} exited right after start{}", diagnostics(paths, daemon))));
    }
    Ok(pid)
}

/// In the child (after `command_in` gave it a private mount namespace), mount the node's run
/// directory over `/var/run/frr`.
fn bind_run_dir(cmd: &mut Command, run: &Path) -> io::Result<()> {
    let src = CString::new(run.as_os_str().as_encoded_bytes()).map_err(io::Error::other)?;
    let dst = CString::new(FRR_RUN_ROOT).map_err(io::Error::other)?;
    // SAFETY: runs in the child between fork and exec, after command_in's closure (which
    // unshared the mount namespace and made it a slave, so nothing propagates to the host). It
    // only calls mount(2) with CStrings prepared before the fork; no allocation, no locks.
    unsafe {
        cmd.pre_exec(move || {
            if libc::mount(src.as_ptr(), dst.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(())
}

/// The daemon's own output and the end of its log, for error messages.
fn diagnostics(paths: &FrrPaths, daemon: &str) -> String {
    let mut s = String::new();
    for (what, path) in [("output", paths.run.join(format!("{daemon}.out"))), ("log", paths.log_file(daemon))]
    {
        let text = tail(&path, 12);
        if !text.trim().is_empty() {
            let _ =
                write!(s, "\n  {what} ({}):\n    {}", path.display(), text.trim().replace('\n', "\n    "));
        }
    }
    s
}

fn tail(path: &Path, lines: usize) -> String {
    let mut text = String::new();
    if let Ok(mut f) = fs::File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn wait_for_file(path: &Path, timeout: Duration) -> Result<(), ()> {
    let deadline = Instant::now() + timeout;
    while !path.exists() {
        if Instant::now() >= deadline {
            return Err(());
        }
        thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Is `pid` a live process (not a zombie)?
pub(crate) fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesized command name, which may contain spaces.
        Ok(stat) => {
            stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'))
        }
        Err(_) => false,
    }
}

/// Is `pid` an FRR daemon of this node (guards against pid reuse)? Its command line names the
/// node's config directory.
fn is_ours(pid: i32, paths: &FrrPaths) -> bool {
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let needle = format!("{}/", paths.etc.display());
    cmdline.split(|&b| b == 0).any(|arg| arg.starts_with(needle.as_bytes()))
}

/// Live FRR daemons of a node, found through the pid files in its run directory.
pub(crate) fn live_daemons(paths: &FrrPaths) -> Vec<(String, i32)> {
    let mut out = Vec::new();
    for d in DAEMONS {
        if let Some(pid) = read_pid(&paths.pid_file(d)) {
            if alive(pid) && is_ours(pid, paths) {
                out.push(((*d).to_owned(), pid));
            }
        }
    }
    out
}

/// Record a started daemon under `<state_dir>/pids/<pid>`: the node name, then a description.
fn record_pid(state_dir: &Path, paths: &FrrPaths, p: &StartedProcess) -> Result<(), DaemonError> {
    let dir = state_dir.join("pids");
    fs::create_dir_all(&dir).map_err(|e| DaemonError::io(&p.node, format!("create {}", dir.display()), e))?;
    let path = dir.join(p.pid.to_string());
    fs::write(&path, format!("{} frr-{} {}\n", p.node, p.daemon, paths.pathspace))
        .map_err(|e| DaemonError::io(&p.node, format!("write {}", path.display()), e))
}

/// Drop pid records of this node's FRR daemons that are no longer alive (before a restart).
fn forget_dead_records(state_dir: &Path, node: &str) {
    for (pid, rec_node, _) in pid_records(state_dir) {
        if rec_node == node && !alive(pid) {
            let _ = fs::remove_file(state_dir.join("pids").join(pid.to_string()));
        }
    }
}

/// FRR entries under `<state_dir>/pids/`: (pid, node, daemon).
fn pid_records(state_dir: &Path) -> Vec<(i32, String, String)> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(state_dir.join("pids")) else { return out };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(text) = fs::read_to_string(e.path()) else { continue };
        let mut words = text.split_whitespace();
        let (Some(node), Some(desc)) = (words.next(), words.next()) else { continue };
        if let Some(daemon) = desc.strip_prefix("frr-") {
            out.push((pid, node.to_owned(), daemon.to_owned()));
        }
    }
    out
}

/// SIGTERM every process, wait (they take up to ~1.5 s), SIGKILL what is left. Processes that
/// fail the ownership check (pid reused) are skipped.
fn stop_pids(procs: &[(StartedProcess, FrrPaths)]) -> Vec<DaemonError> {
    let targets: Vec<&(StartedProcess, FrrPaths)> =
        procs.iter().filter(|(p, paths)| alive(p.pid) && is_ours(p.pid, paths)).collect();
    for (p, _) in &targets {
        let _ = kill(Pid::from_raw(p.pid), Signal::SIGTERM);
    }
    let wait_all = |grace: Duration| {
        let deadline = Instant::now() + grace;
        loop {
            let left: Vec<&&(StartedProcess, FrrPaths)> =
                targets.iter().filter(|(p, _)| alive(p.pid)).collect();
            if left.is_empty() || Instant::now() >= deadline {
                return left.into_iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
            }
            thread::sleep(Duration::from_millis(10));
        }
    };
    let left = wait_all(TERM_GRACE);
    if left.is_empty() {
        return Vec::new();
    }
    for p in &left {
        tracing::warn!(node = %p.node, daemon = %p.daemon, pid = p.pid, "no exit after SIGTERM; sending SIGKILL");
        let _ = kill(Pid::from_raw(p.pid), Signal::SIGKILL);
    }
    wait_all(KILL_GRACE)
        .into_iter()
        .map(|p| DaemonError::Stop { node: p.node, daemon: p.daemon, pid: p.pid })
        .collect()
}

/// Stop every routing daemon of the lab (SIGTERM, then SIGKILL after a grace period; all
/// routers at once) and remove their pid records and FRR directories. Collects all errors.
pub fn stop_lab(plan: &Plan, state_dir: &Path) -> Result<(), Vec<DaemonError>> {
    let mut procs: Vec<(StartedProcess, FrrPaths)> = Vec::new();
    let mut dirs: Vec<FrrPaths> = Vec::new();
    let records = pid_records(state_dir);
    for n in &plan.nodes {
        if n.routing.is_none() {
            continue;
        }
        let paths = FrrPaths::new(plan, n);
        let mut seen: BTreeSet<i32> = BTreeSet::new();
        for (daemon, pid) in live_daemons(&paths) {
            seen.insert(pid);
            procs.push((StartedProcess { pid, node: n.name.clone(), daemon }, paths.clone()));
        }
        for (pid, node, daemon) in &records {
            if *node == n.name && seen.insert(*pid) {
                procs.push((
                    StartedProcess { pid: *pid, node: node.clone(), daemon: daemon.clone() },
                    paths.clone(),
                ));
            }
        }
        dirs.push(paths);
    }
    let mut errors = stop_pids(&procs);
    let stuck: BTreeSet<i32> = errors
        .iter()
        .filter_map(|e| match e {
            DaemonError::Stop { pid, .. } => Some(*pid),
            _ => None,
        })
        .collect();
    for (pid, node, _) in &records {
        if !stuck.contains(pid) {
            let path = state_dir.join("pids").join(pid.to_string());
            if let Err(e) = remove_file(&path) {
                errors.push(DaemonError::io(node, format!("remove {}", path.display()), e));
            }
        }
    }
    for paths in &dirs {
        if procs.iter().any(|(p, pp)| pp == paths && stuck.contains(&p.pid)) {
            continue; // keep the directory of a daemon we could not stop: gc retries
        }
        for dir in [&paths.run, &paths.etc] {
            if let Err(e) = remove_dir(dir) {
                errors.push(DaemonError::io(&paths.pathspace, format!("remove {}", dir.display()), e));
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// What [`gc_lab`] found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GcOutcome {
    pub killed: Vec<i32>,
    pub removed: Vec<PathBuf>,
    pub errors: Vec<String>,
}

/// Lab names that have FRR directories left (from their marker files), for `topo gc`.
pub fn labs_with_residue() -> Vec<String> {
    let mut labs = BTreeSet::new();
    for root in [FRR_RUN_ROOT, FRR_ETC_ROOT] {
        for dir in topo_dirs(root) {
            if let Ok(lab) = fs::read_to_string(dir.join(MARKER)) {
                labs.insert(lab.trim().to_owned());
            }
        }
    }
    labs.into_iter().collect()
}

fn topo_dirs(root: &str) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(root) else { return Vec::new() };
    let mut out: Vec<PathBuf> = rd
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("topo-"))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// Stop and remove a lab's FRR residue without its plan or state dir: the FRR directories whose
/// marker names `lab`, and the daemons whose pid files are in them.
pub fn gc_lab(lab: &str) -> GcOutcome {
    let mut out = GcOutcome::default();
    let mut procs: Vec<(StartedProcess, FrrPaths)> = Vec::new();
    let mut spaces: BTreeSet<String> = BTreeSet::new();
    for root in [FRR_RUN_ROOT, FRR_ETC_ROOT] {
        for dir in topo_dirs(root) {
            let owner = fs::read_to_string(dir.join(MARKER)).unwrap_or_default();
            if owner.trim() == lab {
                if let Some(name) = dir.file_name() {
                    spaces.insert(name.to_string_lossy().into_owned());
                }
            }
        }
    }
    for ps in &spaces {
        let paths = FrrPaths {
            pathspace: ps.clone(),
            etc: Path::new(FRR_ETC_ROOT).join(ps),
            run: Path::new(FRR_RUN_ROOT).join(ps),
        };
        for (daemon, pid) in live_daemons(&paths) {
            procs.push((StartedProcess { pid, node: ps.clone(), daemon }, paths.clone()));
        }
    }
    out.killed = procs.iter().map(|(p, _)| p.pid).collect();
    let errors = stop_pids(&procs);
    out.errors.extend(errors.iter().map(ToString::to_string));
    for ps in &spaces {
        for root in [FRR_RUN_ROOT, FRR_ETC_ROOT] {
            let dir = Path::new(root).join(ps);
            if !dir.exists() {
                continue;
            }
            match remove_dir(&dir) {
                Ok(()) => out.removed.push(dir),
                Err(e) => out.errors.push(format!("remove {}: {e}", dir.display())),
            }
        }
    }
    out
}

fn remove_dir(dir: &Path) -> io::Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn remove_file(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::triangle;

    fn argv(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn pathspaces_have_no_dots_and_stay_unique() {
        let mut plan = triangle("lab1", true, false);
        assert_eq!(pathspace(&plan, "r1"), "topo-lab1_r1");
        plan.nodes[0].name = "a.b".into();
        plan.nodes[1].name = "a_b".into();
        assert_eq!(pathspace(&plan, "a.b"), "topo-lab1_a_b-0");
        assert_eq!(pathspace(&plan, "a_b"), "topo-lab1_a_b-1");
    }

    #[test]
    fn vtysh_in_a_router_gets_its_pathspace() {
        let plan = triangle("lab1", true, false);
        assert_eq!(
            exec_argv(&plan, "r2", &argv(&["vtysh", "-c", "show ip route"])),
            argv(&["vtysh", "-N", "topo-lab1_r2", "-c", "show ip route"])
        );
        // An explicit choice, other programs and nodes without FRR are left alone.
        let explicit = argv(&["/usr/bin/vtysh", "-N", "other"]);
        assert_eq!(exec_argv(&plan, "r2", &explicit), explicit);
        let ping = argv(&["ping", "-c1", "10.0.0.1"]);
        assert_eq!(exec_argv(&plan, "r2", &ping), ping);
        assert_eq!(exec_argv(&plan, "h1", &argv(&["vtysh"])), argv(&["vtysh"]));
    }
}
