//! The state directory of a lab, `/run/topo/<lab>/`: recorded plan and source, the write-ahead
//! journal of kernel objects, fault state and the audit log; and its lock, `/run/topo/<lab>.lock`.
//!
//! `up` mounts a small tmpfs of the lab's own on the directory (as `/run` is on most systems):
//! where `/run` is a disk filesystem, creating and deleting the state files cost milliseconds
//! per lab (inode allocation, and block discards on delete where the filesystem is mounted with
//! `discard`). The lock lives beside the directory, so it is the same file before and after the
//! mount.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use topo_lab::FaultState;
use topo_plan::Plan;

use crate::{KernelError, STATE_ROOT};

/// Paths inside one lab's state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    pub lab: String,
    pub dir: PathBuf,
}

/// What `state.json` records about a lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabMeta {
    pub lab: String,
    /// `building` while `up` runs, `up` once it has finished, `down` while it is torn down.
    pub phase: Phase,
    /// SHA-256 of the topology source, hex.
    pub source_hash: String,
    /// The topology file `up` was given, canonicalized, if it came from a file.
    pub source_path: Option<PathBuf>,
    /// Seconds since the epoch when `up` started.
    pub created: u64,
    pub plan_version: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Building,
    Up,
    Down,
}

/// One object of the write-ahead journal, recorded before it is created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum JournalEntry {
    /// A named network namespace (`/run/netns/<name>`); deleting it removes its interfaces.
    Netns { name: String },
    /// A persisted UTS namespace file.
    Uts { path: PathBuf },
    /// A per-namespace `/etc/netns/<netns>` entry (a directory, or a link to one).
    Etc { path: PathBuf },
    /// A process topo started.
    Pid { pid: i32, node: String, what: String },
}

impl StateDir {
    pub fn new(lab: &str) -> Self {
        Self { lab: lab.to_owned(), dir: Path::new(STATE_ROOT).join(lab) }
    }

    pub fn exists(&self) -> bool {
        self.dir.is_dir()
    }

    pub fn lock_path(&self) -> PathBuf {
        Path::new(STATE_ROOT).join(format!("{}.lock", self.lab))
    }
    pub fn plan_path(&self) -> PathBuf {
        self.dir.join("plan.json")
    }
    pub fn meta_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    pub fn source_path(&self) -> PathBuf {
        self.dir.join("source.yaml")
    }
    pub fn journal_path(&self) -> PathBuf {
        self.dir.join("journal")
    }
    pub fn faults_path(&self) -> PathBuf {
        self.dir.join("faults.json")
    }
    pub fn events_path(&self) -> PathBuf {
        self.dir.join("events.jsonl")
    }
    pub fn uts_dir(&self) -> PathBuf {
        self.dir.join("uts")
    }
    pub fn uts_path(&self, node: &str) -> PathBuf {
        self.uts_dir().join(node)
    }
    /// The `hosts` and `resolv.conf` every `/etc/netns/<netns>` of the lab links to.
    pub fn etc_dir(&self) -> PathBuf {
        self.dir.join("etc")
    }
    pub fn nodes_dir(&self) -> PathBuf {
        self.dir.join("nodes")
    }
    pub fn pids_dir(&self) -> PathBuf {
        self.dir.join("pids")
    }

    /// Create the state directory with a tmpfs of its own on it (under the lock, by `up`). Where
    /// no tmpfs can be mounted, the plain directory serves.
    pub fn create(&self) -> Result<(), KernelError> {
        fs::create_dir_all(&self.dir)
            .map_err(|e| KernelError::io(format!("create {}", self.dir.display()), e))?;
        if is_mount_point(&self.dir) {
            return Ok(());
        }
        if let Err(e) = nix::mount::mount(
            Some("topo-state"),
            &self.dir,
            Some("tmpfs"),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            Some("mode=0755"),
        ) {
            tracing::debug!(dir = %self.dir.display(), error = %e, "no tmpfs for the state directory");
        }
        Ok(())
    }

    /// Take the lab's lock (`create`: for a lab that may not exist yet; else a lab without a
    /// state directory is not up). Waits up to `wait`.
    pub fn lock(&self, wait: Duration, create: bool) -> Result<LabLock, KernelError> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(2);
        loop {
            if create {
                fs::create_dir_all(STATE_ROOT)
                    .map_err(|e| KernelError::io(format!("create {STATE_ROOT}"), e))?;
            } else if !self.exists() {
                return Err(KernelError::NotUp(self.lab.clone()));
            }
            let path = self.lock_path();
            let file =
                match OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path) {
                    Ok(f) => f,
                    // STATE_ROOT vanished under us: look again.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(KernelError::io(format!("open {}", path.display()), e)),
                };
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => {
                    // A `down` may have removed the lock file after we opened it: a lock on an
                    // unlinked file protects nothing, so check it is still the live one.
                    let same = match (lock.metadata(), fs::metadata(&path)) {
                        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                        _ => false,
                    };
                    if same {
                        return Ok(LabLock { _lock: lock });
                    }
                }
                Err((_, nix::Error::EWOULDBLOCK)) => {}
                Err((_, e)) => {
                    return Err(KernelError::io(format!("flock {}", path.display()), io::Error::from(e)))
                }
            }
            let waited = start.elapsed();
            if waited >= wait {
                return Err(KernelError::Locked { lab: self.lab.clone(), waited });
            }
            std::thread::sleep(pause.min(wait.saturating_sub(waited)));
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    pub fn read_meta(&self) -> Result<LabMeta, KernelError> {
        let text = fs::read_to_string(self.meta_path()).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                KernelError::NotUp(self.lab.clone())
            } else {
                KernelError::io(format!("read {}", self.meta_path().display()), e)
            }
        })?;
        serde_json::from_str(&text)
            .map_err(|e| KernelError::State { lab: self.lab.clone(), msg: format!("state.json: {e}") })
    }

    pub fn write_meta(&self, meta: &LabMeta) -> Result<(), KernelError> {
        let text = serde_json::to_string_pretty(meta).map_err(|e| KernelError::Backend(e.to_string()))?;
        write_atomic(&self.meta_path(), text.as_bytes())
    }

    pub fn read_plan(&self) -> Result<Plan, KernelError> {
        let text = fs::read_to_string(self.plan_path()).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                KernelError::NotUp(self.lab.clone())
            } else {
                KernelError::io(format!("read {}", self.plan_path().display()), e)
            }
        })?;
        serde_json::from_str(&text)
            .map_err(|e| KernelError::State { lab: self.lab.clone(), msg: format!("plan.json: {e}") })
    }

    pub fn write_plan(&self, plan: &Plan) -> Result<(), KernelError> {
        write_atomic(&self.plan_path(), plan.to_json().as_bytes())
    }

    /// The current fault state; a lab without `faults.json` has none.
    pub fn read_faults(&self) -> Result<FaultState, KernelError> {
        match fs::read_to_string(self.faults_path()) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| KernelError::State { lab: self.lab.clone(), msg: format!("faults.json: {e}") }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(FaultState::default()),
            Err(e) => Err(KernelError::io(format!("read {}", self.faults_path().display()), e)),
        }
    }

    pub fn write_faults(&self, faults: &FaultState) -> Result<(), KernelError> {
        let text = serde_json::to_string_pretty(faults).map_err(|e| KernelError::Backend(e.to_string()))?;
        write_atomic(&self.faults_path(), text.as_bytes())
    }

    /// Append one JSON line to `events.jsonl`.
    pub fn append_event(&self, event: &serde_json::Value) -> Result<(), KernelError> {
        let path = self.events_path();
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| KernelError::io(format!("open {}", path.display()), e))?;
        let mut line = event.to_string();
        line.push('\n');
        f.write_all(line.as_bytes()).map_err(|e| KernelError::io(format!("write {}", path.display()), e))
    }

    /// Open the journal for appending (created if missing).
    pub fn journal(&self) -> Result<Journal, KernelError> {
        let path = self.journal_path();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| KernelError::io(format!("open {}", path.display()), e))?;
        Ok(Journal { file, path })
    }

    /// Every journal entry recorded so far. Unparsable lines (a write cut by SIGKILL) are skipped.
    pub fn read_journal(&self) -> Result<Vec<JournalEntry>, KernelError> {
        read_journal(&self.journal_path())
    }
}

pub(crate) fn read_journal(path: &Path) -> Result<Vec<JournalEntry>, KernelError> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(KernelError::io(format!("open {}", path.display()), e)),
    };
    let mut out = Vec::new();
    for line in BufReader::new(f).lines() {
        let line = line.map_err(|e| KernelError::io(format!("read {}", path.display()), e))?;
        if let Ok(entry) = serde_json::from_str::<JournalEntry>(&line) {
            out.push(entry);
        }
    }
    Ok(out)
}

/// The held lock of a lab; released on drop (and by the kernel if the process dies).
#[derive(Debug)]
pub struct LabLock {
    _lock: Flock<File>,
}

/// Append-only write-ahead log. Entries are written (one `write` per batch) before the objects
/// they name are created, so a SIGKILL at any point leaves a record of everything that may exist.
#[derive(Debug)]
pub struct Journal {
    file: File,
    path: PathBuf,
}

impl Journal {
    pub fn record(&mut self, entries: &[JournalEntry]) -> Result<(), KernelError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut buf = String::with_capacity(entries.len() * 64);
        for e in entries {
            buf.push_str(&serde_json::to_string(e).map_err(|e| KernelError::Backend(e.to_string()))?);
            buf.push('\n');
        }
        self.file
            .write_all(buf.as_bytes())
            .map_err(|e| KernelError::io(format!("write {}", self.path.display()), e))
    }
}

/// Write a file via a temporary name and rename, so readers never see half a file.
/// Is `dir` the mount point of a mount (a different device from its parent's, or the same
/// device's root)?
pub fn is_mount_point(dir: &Path) -> bool {
    let (Ok(m), Some(Ok(pm))) = (fs::metadata(dir), dir.parent().map(fs::metadata)) else { return false };
    m.dev() != pm.dev() || m.ino() == pm.ino()
}

pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), KernelError> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, data).map_err(|e| KernelError::io(format!("write {}", tmp.display()), e))?;
    fs::rename(&tmp, path).map_err(|e| KernelError::io(format!("rename to {}", path.display()), e))
}
