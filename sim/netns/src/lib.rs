//! `topo-netns`: the syscall seam for network namespaces.
//!
//! Named namespaces follow the iproute2 convention (a bind mount of the namespace under
//! `/run/netns/<name>`), so `ip netns exec` and friends see topo's labs. Code runs inside a
//! namespace only on a dedicated OS thread ([`Netns::run`], [`Netns::spawn`]); never on an async
//! worker, because `setns` changes the calling thread for good. Sockets and netlink handles
//! opened there stay bound to the namespace and may then be used from any thread.

// The kernel-side crates are the only ones allowed `unsafe` (each block has a SAFETY note).
#![allow(unsafe_code)]

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

/// Where named network namespaces live (iproute2's convention).
pub const NETNS_DIR: &str = "/run/netns";
/// Per-namespace `/etc` overrides applied by [`command_in`] (iproute2's convention).
pub const ETC_NETNS_DIR: &str = "/etc/netns";

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("network namespace {name}: {op}: {source}")]
    Sys { name: String, op: &'static str, source: io::Error },
    #[error("network namespace {0} already exists")]
    Exists(String),
    #[error("network namespace {0} does not exist")]
    Missing(String),
    #[error("thread running in network namespace {0} panicked")]
    Panicked(String),
}

impl NetnsError {
    fn sys(name: &str, op: &'static str, source: impl Into<io::Error>) -> Self {
        NetnsError::Sys { name: name.to_owned(), op, source: source.into() }
    }
}

fn nix_io(e: nix::Error) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// An open handle on a named network namespace. Holding the fd keeps the namespace alive even if
/// its name is deleted meanwhile.
#[derive(Debug)]
pub struct Netns {
    name: String,
    fd: OwnedFd,
}

impl Netns {
    /// Create a named namespace, like `ip netns add`. Fails if the name exists.
    pub fn create(name: &str) -> Result<Netns, NetnsError> {
        ensure_netns_dir().map_err(|e| NetnsError::sys(name, "prepare /run/netns", e))?;
        let path = path_of(name);
        // Exclusive creation: the name is our lock against another creator.
        match make_mount_point(&path, None) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(NetnsError::Exists(name.into()))
            }
            Err(e) => return Err(NetnsError::sys(name, "create mount point", e)),
        }
        let target = path.clone();
        let res = thread::Builder::new()
            .name(format!("netns-new-{name}"))
            .spawn(move || -> io::Result<()> {
                // A fresh thread: unshare affects only it, and it exits right after.
                unshare(CloneFlags::CLONE_NEWNET).map_err(nix_io)?;
                mount(Some("/proc/thread-self/ns/net"), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
                    .map_err(nix_io)
            })
            .map_err(|e| NetnsError::sys(name, "spawn thread", e))?
            .join();
        match res {
            Ok(Ok(())) => Netns::open(name),
            Ok(Err(e)) => {
                let _ = std::fs::remove_file(&path);
                Err(NetnsError::sys(name, "unshare and bind mount", e))
            }
            Err(_) => {
                let _ = std::fs::remove_file(&path);
                Err(NetnsError::Panicked(name.into()))
            }
        }
    }

    /// Open an existing named namespace.
    pub fn open(name: &str) -> Result<Netns, NetnsError> {
        let f = File::open(path_of(name)).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                NetnsError::Missing(name.into())
            } else {
                NetnsError::sys(name, "open", e)
            }
        })?;
        Ok(Netns { name: name.to_owned(), fd: f.into() })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Inode of the namespace, which identifies it in `/proc/<pid>/ns/net`.
    pub fn inode(&self) -> io::Result<u64> {
        Ok(File::from(self.fd.try_clone()?).metadata()?.ino())
    }

    /// Run `f` on a new OS thread that has entered this namespace, and wait for it.
    pub fn run<F, R>(&self, f: F) -> Result<R, NetnsError>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        thread::scope(|s| {
            let h = thread::Builder::new()
                .name(format!("netns-{}", self.name))
                .spawn_scoped(s, || {
                    setns(self.fd.as_fd(), CloneFlags::CLONE_NEWNET).map(|()| f()).map_err(nix_io)
                })
                .map_err(|e| NetnsError::sys(&self.name, "spawn thread", e))?;
            match h.join() {
                Ok(Ok(r)) => Ok(r),
                Ok(Err(e)) => Err(NetnsError::sys(&self.name, "setns", e)),
                Err(_) => Err(NetnsError::Panicked(self.name.clone())),
            }
        })
    }

    /// Start a long-lived OS thread inside this namespace (e.g. a worker serving requests).
    pub fn spawn<F, R>(&self, f: F) -> Result<thread::JoinHandle<Result<R, io::Error>>, NetnsError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let fd = self.fd.try_clone().map_err(|e| NetnsError::sys(&self.name, "dup fd", e))?;
        thread::Builder::new()
            .name(format!("netns-{}", self.name))
            .spawn(move || {
                setns(fd.as_fd(), CloneFlags::CLONE_NEWNET).map_err(nix_io)?;
                Ok(f())
            })
            .map_err(|e| NetnsError::sys(&self.name, "spawn thread", e))
    }
}

/// Path of a named namespace's mount point.
pub fn path_of(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Does a named namespace exist?
pub fn exists(name: &str) -> bool {
    path_of(name).exists()
}

/// Names of all named namespaces, sorted.
pub fn list() -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    match std::fs::read_dir(NETNS_DIR) {
        Ok(rd) => {
            for e in rd {
                out.push(e?.file_name().to_string_lossy().into_owned());
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    out.sort();
    Ok(out)
}

/// Remove a named namespace, like `ip netns del`. The kernel frees it (and its interfaces) once
/// no process and no open fd refers to it. Missing names are not an error.
pub fn delete(name: &str) -> Result<(), NetnsError> {
    let path = path_of(name);
    match umount2(&path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL | nix::Error::ENOENT) => {}
        Err(e) => return Err(NetnsError::sys(name, "unmount", nix_io(e))),
    }
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(NetnsError::sys(name, "remove mount point", e)),
    }
}

/// Create the file a namespace is bind-mounted on, failing with `AlreadyExists` if `path` exists
/// (the name is the creator's lock).
///
/// With an `anchor` (an existing, not yet mounted file in the same directory), the new name is a
/// hard link to it instead of a new inode. Mount points are names, not inodes, so every link can
/// carry its own namespace; what it saves is inode allocation, which on a disk filesystem such as
/// ext4 without a journal scans past every recently deleted inode of the group and so grows with
/// the churn of earlier labs. Unlinking a hard link frees no inode either. Falls back to a new
/// file when the link cannot be made (another filesystem, too many links, anchor gone).
pub fn make_mount_point(path: &Path, anchor: Option<&Path>) -> io::Result<()> {
    if let Some(anchor) = anchor {
        // linkat without AT_SYMLINK_FOLLOW links the anchor itself, whatever it is.
        match nix::unistd::linkat(None, anchor, None, path, nix::fcntl::AtFlags::empty()) {
            Ok(()) => return Ok(()),
            Err(nix::Error::EEXIST) => return Err(io::Error::from(io::ErrorKind::AlreadyExists)),
            Err(e) => tracing::debug!(path = %path.display(), error = %e, "hard link failed; new file"),
        }
    }
    std::fs::OpenOptions::new().write(true).create_new(true).open(path).map(drop)
}

/// Create a network namespace on the calling thread and bind-mount it on `path` (an existing
/// file, see [`make_mount_point`]). The calling thread stays inside the new namespace: call it
/// on a thread of your own (e.g. one that then writes sysctls or opens sockets there). Returns
/// an fd of the namespace.
pub fn unshare_net_onto(path: &Path) -> io::Result<OwnedFd> {
    unshare(CloneFlags::CLONE_NEWNET).map_err(nix_io)?;
    mount(Some("/proc/thread-self/ns/net"), path, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(nix_io)?;
    Ok(File::open("/proc/thread-self/ns/net")?.into())
}

/// Delete many named namespaces like [`delete`], on up to `threads` threads at once: each
/// unmount waits for an RCU grace period, and waits of concurrent unmounts overlap. Returns the
/// number deleted and every error.
pub fn delete_many(names: &[String], threads: usize) -> (usize, Vec<NetnsError>) {
    fn delete_all(names: &[String]) -> (usize, Vec<NetnsError>) {
        let mut errors = Vec::new();
        let mut done = 0;
        for n in names {
            match delete(n) {
                Ok(()) => done += 1,
                Err(e) => errors.push(e),
            }
        }
        (done, errors)
    }
    let threads = threads.clamp(1, 64).min(names.len().max(1));
    let chunk = names.len().div_ceil(threads).max(1);
    thread::scope(|s| {
        let jobs: Vec<_> = names
            .chunks(chunk)
            .map(|part| {
                (part, thread::Builder::new().name("netns-del".into()).spawn_scoped(s, || delete_all(part)))
            })
            .collect();
        let mut done = 0;
        let mut errors = Vec::new();
        for (part, job) in jobs {
            // A thread that could not be spawned: its share is done here.
            let (d, e) = job.map_or_else(
                |_| delete_all(part),
                |h| {
                    h.join().unwrap_or_else(|_| {
                        (0, part.iter().map(|n| NetnsError::Panicked(n.clone())).collect())
                    })
                },
            );
            done += d;
            errors.extend(e);
        }
        (done, errors)
    })
}

/// `/run/netns` must be a shared mount so namespaces created later show up in mount namespaces
/// that were copied earlier (iproute2 does the same). Idempotent.
pub fn ensure_netns_dir() -> io::Result<()> {
    std::fs::create_dir_all(NETNS_DIR)?;
    let shared = MsFlags::MS_SHARED | MsFlags::MS_REC;
    match mount(None::<&str>, NETNS_DIR, Some("none"), shared, None::<&str>) {
        Ok(()) => Ok(()),
        Err(nix::Error::EINVAL) => {
            mount(Some(NETNS_DIR), NETNS_DIR, Some("none"), MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
                .map_err(nix_io)?;
            mount(None::<&str>, NETNS_DIR, Some("none"), shared, None::<&str>).map_err(nix_io)
        }
        Err(e) => Err(nix_io(e)),
    }
}

/// Create a persistent UTS namespace with `hostname`, bind-mounted at `path` (a file that is
/// created). Each node gets one so `hostname` inside the node prints its name.
pub fn create_uts(path: &Path, hostname: &str) -> io::Result<()> {
    std::fs::OpenOptions::new().write(true).create(true).truncate(false).open(path)?;
    let target = path.to_owned();
    let hostname = hostname.to_owned();
    thread::Builder::new()
        .name("uts-new".into())
        .spawn(move || -> io::Result<()> {
            unshare(CloneFlags::CLONE_NEWUTS).map_err(nix_io)?;
            nix::unistd::sethostname(&hostname).map_err(nix_io)?;
            mount(Some("/proc/thread-self/ns/uts"), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
                .map_err(nix_io)
        })?
        .join()
        .map_err(|_| io::Error::other("UTS namespace thread panicked"))?
}

/// Unmount and remove a persisted namespace file (UTS or other). Missing is not an error.
pub fn remove_ns_file(path: &Path) -> io::Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL | nix::Error::ENOENT) => {}
        Err(e) => return Err(nix_io(e)),
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Write a sysctl (dotted key, e.g. `net.ipv4.ip_forward`) in the calling thread's namespace.
/// Call it inside [`Netns::run`]; `/proc/sys/net` resolves against the thread's namespace.
pub fn write_sysctl(key: &str, value: &str) -> io::Result<()> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    std::fs::write(&path, value).map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))
}

/// Write several sysctls in the calling thread's namespace, in order; one result per key.
///
/// `/proc/sys/net/<x>` exists once per network namespace under the same parent, so looking up
/// `<x>` compares against the entries of every namespace on the machine (a cost that grows with
/// their number). Each such directory is looked up once here (e.g. `ipv6` for both
/// `net.ipv6.conf.all.disable_ipv6` and `net.ipv6.conf.default.disable_ipv6`) and the keys below
/// it are opened relative to it.
pub fn write_sysctls<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<io::Result<()>> {
    let mut dirs: Vec<(String, Option<File>)> = Vec::new();
    pairs
        .into_iter()
        .map(|(key, value)| {
            let Some((top, rest)) = key.strip_prefix("net.").and_then(|r| r.split_once('.')) else {
                return write_sysctl(key, value);
            };
            let i = dirs.iter().position(|(t, _)| t == top).unwrap_or_else(|| {
                dirs.push((top.to_owned(), File::open(format!("/proc/sys/net/{top}")).ok()));
                dirs.len() - 1
            });
            let dir = &dirs[i].1;
            let Some(dir) = dir else { return write_sysctl(key, value) };
            let rel = rest.replace('.', "/");
            let write = || -> io::Result<()> {
                let fd = nix::fcntl::openat(
                    Some(dir.as_raw_fd()),
                    rel.as_str(),
                    nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )
                .map_err(nix_io)?;
                // SAFETY: openat returned a new fd that nothing else owns.
                let mut f = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
                std::io::Write::write_all(&mut f, value.as_bytes())
            };
            write().map_err(|e| io::Error::new(e.kind(), format!("/proc/sys/net/{top}/{rel}: {e}")))
        })
        .collect()
}

/// Read a sysctl in the calling thread's namespace.
pub fn read_sysctl(key: &str) -> io::Result<String> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    Ok(std::fs::read_to_string(path)?.trim().to_owned())
}

/// PIDs of every process whose network namespace has the given inode (found via
/// `/proc/*/ns/net`), sorted. Used to find what runs inside a lab node.
pub fn pids_in_netns(inode: u64) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else { return out };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if let Ok(md) = std::fs::metadata(format!("/proc/{pid}/ns/net")) {
            if md.ino() == inode {
                out.push(pid);
            }
        }
    }
    out.sort_unstable();
    out
}

/// Prepare `cmd` to run inside a node the way `ip netns exec` does: join the network namespace
/// (and the UTS namespace at `uts`, if given), get a private mount namespace, bind-mount
/// `/etc/netns/<netns>/*` over `/etc/*`, and mount a fresh `/sys` so `/sys/class/net` shows the
/// node's interfaces.
pub fn command_in(cmd: &mut Command, netns: &Netns, uts: Option<&Path>) -> io::Result<()> {
    let net_fd = netns.fd.try_clone()?;
    let uts_fd: Option<OwnedFd> = match uts {
        Some(p) => Some(File::open(p)?.into()),
        None => None,
    };
    // Everything the child needs is prepared here: after fork only async-signal-safe calls.
    let mut binds: Vec<(CString, CString)> = Vec::new();
    let etc = Path::new(ETC_NETNS_DIR).join(netns.name());
    if let Ok(rd) = std::fs::read_dir(&etc) {
        for e in rd.flatten() {
            let src = e.path();
            let dst = Path::new("/etc").join(e.file_name());
            if dst.exists() {
                binds.push((cstr(&src)?, cstr(&dst)?));
            }
        }
    }
    let root = c"/";
    let sys = c"/sys";
    let sysfs = c"sysfs";
    let netns_name = CString::new(netns.name()).map_err(io::Error::other)?;
    // SAFETY: the closure runs in the child between fork and exec. It only calls setns, unshare,
    // mount and umount2 through libc with pointers to CStrings and fds prepared before the fork;
    // it allocates nothing and touches no lock.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(net_fd.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            if let Some(fd) = &uts_fd {
                if libc::setns(fd.as_raw_fd(), libc::CLONE_NEWUTS) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(io::Error::last_os_error());
            }
            // Keep our mounts from propagating back to the host.
            if libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_SLAVE | libc::MS_REC,
                std::ptr::null(),
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            for (src, dst) in &binds {
                // Best effort, like iproute2: a failed bind leaves the host file visible.
                libc::mount(src.as_ptr(), dst.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null());
            }
            libc::umount2(sys.as_ptr(), libc::MNT_DETACH);
            libc::mount(netns_name.as_ptr(), sys.as_ptr(), sysfs.as_ptr(), 0, std::ptr::null());
            Ok(())
        });
    }
    Ok(())
}

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_encoded_bytes()).map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_run_delete() {
        if !topo_lab::testkit::require_root("netns::create_run_delete") {
            return;
        }
        let name = topo_lab::testkit::unique_lab("tnsa");
        let ns = Netns::create(&name).expect("create");
        let _guard = Cleanup(name.clone(), PathBuf::new());
        assert!(exists(&name));
        assert!(matches!(Netns::create(&name), Err(NetnsError::Exists(_))));
        // A sysctl written inside the namespace is seen there and leaves the host's value alone.
        let host_before = read_sysctl("net.ipv4.ip_forward").unwrap();
        let flipped = if host_before == "1" { "0" } else { "1" };
        ns.run(|| write_sysctl("net.ipv4.ip_forward", flipped)).unwrap().unwrap();
        assert_eq!(ns.run(|| read_sysctl("net.ipv4.ip_forward")).unwrap().unwrap(), flipped);
        assert_eq!(read_sysctl("net.ipv4.ip_forward").unwrap(), host_before);
        // A new namespace has only lo (/proc/thread-self/net follows the thread's namespace).
        let ifaces = ns.run(|| std::fs::read_to_string("/proc/thread-self/net/dev")).unwrap().unwrap();
        let names: Vec<&str> =
            ifaces.lines().skip(2).filter_map(|l| l.split(':').next()).map(str::trim).collect();
        assert_eq!(names, ["lo"]);
        let inode = ns.inode().unwrap();
        assert!(pids_in_netns(inode).is_empty());
        drop(ns);
        delete(&name).unwrap();
        assert!(!exists(&name));
        delete(&name).unwrap();
    }

    #[test]
    fn command_in_sees_namespace_and_hostname() {
        if !topo_lab::testkit::require_root("netns::command_in") {
            return;
        }
        let name = topo_lab::testkit::unique_lab("tnsb");
        let ns = Netns::create(&name).expect("create");
        let uts = std::env::temp_dir().join(format!("{name}.uts"));
        let guard = Cleanup(name.clone(), uts.clone());
        create_uts(&uts, "node-x").unwrap();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "hostname; ls /sys/class/net"]);
        command_in(&mut cmd, &ns, Some(&uts)).unwrap();
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines, ["node-x", "lo"], "{text}");
        drop(guard);
        assert!(!exists(&name));
    }

    #[test]
    fn write_sysctls_relative_to_net_in_the_thread_namespace() {
        if !topo_lab::testkit::require_root("netns::write_sysctls") {
            return;
        }
        let name = topo_lab::testkit::unique_lab("tnsd");
        let ns = Netns::create(&name).expect("create");
        let _guard = Cleanup(name.clone(), PathBuf::new());
        let host = read_sysctl("net.ipv6.conf.default.disable_ipv6").unwrap();
        let want = if host == "1" { "0" } else { "1" };
        let results = ns
            .run(|| {
                write_sysctls([
                    ("net.ipv6.conf.default.disable_ipv6", want),
                    ("net.ipv4.conf.nosuchdev.forwarding", "1"),
                    ("net.ipv4.ip_forward", "1"),
                ])
            })
            .unwrap();
        assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
        let missing = results[1].as_ref().unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        assert!(missing.to_string().contains("nosuchdev"), "{missing}");
        assert_eq!(ns.run(|| read_sysctl("net.ipv6.conf.default.disable_ipv6")).unwrap().unwrap(), want);
        assert_eq!(ns.run(|| read_sysctl("net.ipv4.ip_forward")).unwrap().unwrap(), "1");
        assert_eq!(read_sysctl("net.ipv6.conf.default.disable_ipv6").unwrap(), host, "host untouched");
    }

    #[test]
    fn hard_linked_mount_points_carry_distinct_namespaces() {
        if !topo_lab::testkit::require_root("netns::hard_linked_mount_points") {
            return;
        }
        ensure_netns_dir().unwrap();
        let base = topo_lab::testkit::unique_lab("tnsc");
        let names: Vec<String> = (0..5).map(|i| format!("{base}-{i}")).collect();
        let _guards: Vec<Cleanup> = names.iter().map(|n| Cleanup(n.clone(), PathBuf::new())).collect();
        let anchor = path_of(&names[0]);
        make_mount_point(&anchor, None).unwrap();
        for n in &names[1..] {
            make_mount_point(&path_of(n), Some(&anchor)).unwrap();
        }
        // The names share one inode (no new inodes) ...
        let md = std::fs::metadata(&anchor).unwrap();
        assert_eq!(md.nlink(), 5);
        // ... and a name that exists is refused, linked or not.
        let again = make_mount_point(&path_of(&names[1]), Some(&anchor)).unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(make_mount_point(&anchor, None).unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        // Each name gets a namespace of its own (the anchor last, as topo-kernel does).
        let mut inodes = std::collections::HashSet::new();
        for n in names[1..].iter().chain([&names[0]]) {
            let path = path_of(n);
            let fd = thread::scope(|s| s.spawn(|| unshare_net_onto(&path)).join().unwrap()).unwrap();
            let ino = File::from(fd).metadata().unwrap().ino();
            assert_eq!(std::fs::metadata(&path).unwrap().ino(), ino, "{n} shows its namespace");
            inodes.insert(ino);
            Netns::open(n).unwrap();
        }
        assert_eq!(inodes.len(), 5, "five distinct namespaces");
        // A missing anchor falls back to a new file.
        let lone = format!("{base}-x");
        let _g = Cleanup(lone.clone(), PathBuf::new());
        make_mount_point(&path_of(&lone), Some(&path_of(&format!("{base}-none")))).unwrap();
        assert!(exists(&lone));
        // All gone at once, the missing one included.
        let mut all = names.clone();
        all.push(lone);
        all.push(format!("{base}-none"));
        let (deleted, errors) = delete_many(&all, 3);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(deleted, all.len());
        for n in &all {
            assert!(!exists(n), "{n} still there");
        }
    }

    struct Cleanup(String, PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            if !self.1.as_os_str().is_empty() {
                let _ = remove_ns_file(&self.1);
            }
            let _ = delete(&self.0);
        }
    }
}
