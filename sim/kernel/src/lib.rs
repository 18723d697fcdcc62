//! `topo-kernel`: the kernel backend. Builds a [`Plan`] as Linux network namespaces (one per
//! node plus a per-lab fabric namespace holding the bridges), veth pairs, addresses, routes,
//! sysctls, UTS namespaces and `/etc/netns` files; tears it down again; finds and removes the
//! residue of any lab (`gc`); reports status. [`KernelLab`] implements [`topo_lab::Lab`] by
//! composing the chaos, probe and daemon crates.
//!
//! Nothing is ever created in the host's root namespace.

// The kernel-side crates are the only ones allowed `unsafe` (each block has a SAFETY note).
#![allow(unsafe_code)]

mod build;
mod error;
mod hooks;
pub mod interrupt;
mod lab;
mod netlink;
pub mod state;
mod status;
mod teardown;

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
pub use topo_plan::Plan;

pub use error::KernelError;
pub use lab::KernelLab;
pub use state::StateDir;

/// Where lab state directories live.
pub const STATE_ROOT: &str = "/run/topo";
/// Every kernel object topo names starts with this (namespaces `topo-<lab>`, `topo-<lab>.<node>`).
pub const NETNS_PREFIX: &str = "topo-";
/// How long a command waits for another topo process holding the lab's lock, by default.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(30);

/// State directory of a lab.
pub fn state_dir(lab: &str) -> PathBuf {
    Path::new(STATE_ROOT).join(lab)
}

/// The topology source a lab is built from; its hash decides whether `up` is a no-op.
#[derive(Debug, Clone)]
pub struct SourceInfo {
    /// The file, when the topology came from one.
    pub path: Option<PathBuf>,
    pub text: String,
}

impl SourceInfo {
    pub fn from_file(path: &Path) -> io::Result<Self> {
        Ok(Self { path: Some(path.to_owned()), text: std::fs::read_to_string(path)? })
    }

    /// SHA-256 of the text, hex.
    pub fn hash(&self) -> String {
        let d = Sha256::digest(self.text.as_bytes());
        d.iter().fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }
}

/// Progress notifications of `up`/`down`, for a progress bar or log lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// A phase starts; `total` steps follow (0 when it has no steps).
    Phase { name: &'static str, total: u64 },
    /// `n` more steps of the current phase are done.
    Advance(u64),
}

pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

#[derive(Clone)]
pub struct UpOpts {
    /// How long to wait for another topo process holding the lab's lock.
    pub lock_wait: Duration,
    pub progress: Option<ProgressFn>,
    /// Start a probe responder process in every node, running this executable (the `topo`
    /// binary, which has the hidden responder subcommand). Off by default: the probe engine
    /// listens by itself; responders serve applications' ports and long-lived checks.
    pub responder_exe: Option<PathBuf>,
}

impl Default for UpOpts {
    fn default() -> Self {
        Self { lock_wait: DEFAULT_LOCK_WAIT, progress: None, responder_exe: None }
    }
}

impl std::fmt::Debug for UpOpts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpOpts").field("lock_wait", &self.lock_wait).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpReport {
    pub lab: String,
    pub nodes: usize,
    pub links: usize,
    pub networks: usize,
    /// The lab was already up from the same source: nothing was done.
    pub unchanged: bool,
    pub elapsed: Duration,
    /// Peak resident memory of this process so far (VmHWM), in KiB, when known.
    pub peak_rss_kib: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DownReport {
    pub lab: String,
    pub namespaces: usize,
    pub processes_killed: usize,
    pub elapsed: Duration,
    /// Peak resident memory of this process so far (VmHWM), in KiB, when known.
    pub peak_rss_kib: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GcReport {
    /// Labs whose residue was found.
    pub labs: Vec<String>,
    pub namespaces: Vec<String>,
    pub processes: Vec<i32>,
    pub etc_dirs: Vec<PathBuf>,
    pub state_dirs: Vec<PathBuf>,
    pub uts_mounts: Vec<PathBuf>,
    /// Problems met; gc went on after each.
    pub errors: Vec<String>,
}

impl GcReport {
    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty()
            && self.processes.is_empty()
            && self.etc_dirs.is_empty()
            && self.state_dirs.is_empty()
            && self.uts_mounts.is_empty()
    }
}

/// One line of `topo ls`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabSummary {
    pub lab: String,
    /// `up`, `building`, `down`, or `broken` when the state cannot be read.
    pub phase: String,
    pub nodes: usize,
    pub source: Option<PathBuf>,
    pub created: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabStatus {
    pub lab: String,
    pub phase: String,
    pub source: Option<PathBuf>,
    pub nodes: Vec<NodeStatus>,
    pub faults: topo_lab::FaultState,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub name: String,
    pub netns: String,
    /// The namespace exists.
    pub present: bool,
    pub interfaces: Vec<IfaceStatus>,
    /// Processes running in the node's network namespace.
    pub processes: usize,
    /// Daemon health as reported by the daemon layer (empty when the node runs none).
    pub daemons: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IfaceStatus {
    pub name: String,
    pub mac: String,
    pub mtu: u32,
    /// Operational state as the kernel reports it (`up`, `down`, `lowerlayerdown`, ...).
    pub oper: String,
    pub admin_up: bool,
    pub addresses: Vec<String>,
}

pub use build::up;
pub use status::status;
pub use teardown::{down, down_with, gc, gc_labs};

/// Labs with a state directory on this machine, sorted by name.
pub fn list_labs() -> Result<Vec<LabSummary>, KernelError> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(STATE_ROOT) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(KernelError::io(format!("read {STATE_ROOT}"), e)),
    };
    for e in rd.flatten() {
        if !e.path().is_dir() {
            continue;
        }
        let lab = e.file_name().to_string_lossy().into_owned();
        let sd = StateDir::new(&lab);
        let (phase, source, created) = match sd.read_meta() {
            Ok(m) => (
                serde_json::to_value(m.phase)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                m.source_path,
                Some(m.created),
            ),
            Err(_) => ("broken".to_owned(), None, None),
        };
        let nodes = sd.read_plan().map_or(0, |p| p.nodes.len());
        out.push(LabSummary { lab, phase, nodes, source, created });
    }
    out.sort_by(|a, b| a.lab.cmp(&b.lab));
    Ok(out)
}

/// Name a lab from a command-line argument: a lab name, or a topology file (matched against the
/// file each lab was built from, else parsed for its name). With no argument, the only lab up.
pub fn resolve_lab(arg: Option<&str>) -> Result<String, KernelError> {
    let Some(arg) = arg else {
        let labs = list_labs()?;
        return match labs.len() {
            0 => Err(KernelError::NoLab),
            1 => Ok(labs[0].lab.clone()),
            _ => Err(KernelError::Ambiguous(labs.into_iter().map(|l| l.lab).collect())),
        };
    };
    let path = Path::new(arg);
    let looks_like_file = arg.contains('/')
        || Path::new(arg)
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"));
    if path.is_file() || looks_like_file {
        if let Ok(canon) = path.canonicalize() {
            for l in list_labs()? {
                if l.source.as_deref() == Some(canon.as_path()) {
                    return Ok(l.lab);
                }
            }
        }
        if !path.is_file() {
            return Err(KernelError::Invalid(format!("{arg}: no such topology file")));
        }
        let plan = topo_plan::plan_file(path).map_err(|d| KernelError::Spec(Box::new(d)))?;
        return Ok(plan.lab);
    }
    validate_lab_name(arg)?;
    Ok(arg.to_owned())
}

/// Lab names become parts of kernel object and file names: a DNS label.
pub fn validate_lab_name(name: &str) -> Result<(), KernelError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(KernelError::Invalid(format!(
            "{name:?} is not a lab name (letters, digits and '-', at most 63) nor an existing topology file"
        )))
    }
}

/// Is the effective user root? (Building labs needs CAP_NET_ADMIN and CAP_SYS_ADMIN.)
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Peak resident set size of this process (VmHWM from /proc/self/status), in KiB.
pub fn peak_rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
