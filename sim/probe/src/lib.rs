//! `topo-probe`: assertions on live traffic in a kernel lab (overview in `docs/probes.md`).
//!
//! For every node involved, the probe sockets are opened inside the node's namespace on one
//! dedicated thread ([`sys::NsThread`], which `setns`es between namespaces). ICMP matrices are
//! then driven by one plain thread per core (`sendmmsg`/`recvmmsg` per source: the kernel runs
//! a probe's round trip inside the send call); UDP and TCP matrices and convergence streams by
//! a tokio loop. No process and no thread per pair.
//!
//! Semantics (see [`topo_lab::Proto`]): ICMP and TCP succeed on a round trip; UDP succeeds when
//! the datagram is seen by topo's listener in the destination (one way), which also records the
//! source address and port it observed (the NAT check). Convergence streams are round trips for
//! every protocol.
//!
//! Retries: a pair is reached on its first answer and not reached after [`ProbeOpts::attempts`]
//! unanswered rounds in a row. Pairs that disagree with an expectation are re-probed until the
//! deadline (routing is eventually consistent). Big LANs get permanent neighbour entries for
//! the run ([`neigh`]).

// The kernel-side crates are the only ones allowed `unsafe` (each block has a SAFETY note).
#![allow(unsafe_code)]

mod converge;
mod nat;
pub mod neigh;
mod path;
mod reach;
pub mod responder;
pub mod sys;
#[doc(hidden)]
pub mod testlab;

use std::collections::HashMap;
use std::io;
use std::net::Ipv4Addr;
use std::time::Duration;

pub use converge::converge;
pub use nat::nat;
pub use path::path;
pub use reach::{reach, reach_detailed, PairDetail, ReachDetail};
pub use responder::{gc_responders, run_responder, start_responders, stop_responders, ResponderOpts};
use topo_lab::LabError;
use topo_plan::{NodePlan, Plan};

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("unknown node {0:?}")]
    UnknownNode(String),
    #[error("node {0} has no IPv4 address to probe")]
    NoAddress(String),
    #[error(transparent)]
    Netns(#[from] topo_netns::NetnsError),
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("{0}")]
    Invalid(String),
    #[error("fault injection failed: {0}")]
    Inject(String),
    /// A convergence flow did not work before the fault: nothing to measure.
    #[error("{0}")]
    NotFlowing(String),
}

impl ProbeError {
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        ProbeError::Io { what: what.into(), source }
    }
}

impl From<ProbeError> for LabError {
    fn from(e: ProbeError) -> Self {
        match e {
            ProbeError::UnknownNode(n) => LabError::UnknownNode(n),
            ProbeError::Invalid(s) => LabError::Invalid(s),
            other => LabError::Backend(other.to_string()),
        }
    }
}

/// How hard to try.
///
/// A pair counts as *not reached* only after `attempts` rounds in a row without an answer
/// (each round waits `attempt_timeout`, doubling per round up to 8x: 100 + 200 + 400 ms by
/// default), so one lost probe never makes a reachable pair look cut. A pair counts as
/// *reached* on its first answer.
#[derive(Debug, Clone)]
pub struct ProbeOpts {
    /// Keep re-probing pairs that disagree with `expect` this long (routing is eventually
    /// consistent). Without an expectation every pair gets `attempts` rounds at most.
    pub deadline: Duration,
    /// Wait for replies of one round this long after its last probe (doubles each round, up to
    /// 8x). A round that gets every reply ends at once.
    pub attempt_timeout: Duration,
    /// Consecutive unanswered rounds after which a pair counts as not reached (at least 1).
    pub attempts: u32,
    /// Probes sent but not yet answered, at most (UDP; ICMP drains each source's replies
    /// right after sending its batch).
    pub max_in_flight: usize,
    /// Expected outcome per (from, to). Pairs expected unreachable are re-probed while they are
    /// reached; pairs expected reachable while they are not. Missing pairs: expected reachable.
    pub expect: Option<HashMap<(String, String), bool>>,
    /// Pre-install permanent neighbour entries for LAN pairs when the run would otherwise need
    /// more dynamic ones than the host-wide neighbour table comfortably holds (see
    /// [`neigh`]). On by default.
    pub static_neighbours: bool,
}

impl Default for ProbeOpts {
    fn default() -> Self {
        ProbeOpts {
            deadline: Duration::from_secs(5),
            attempt_timeout: Duration::from_millis(100),
            attempts: 3,
            max_in_flight: 4096,
            expect: None,
            static_neighbours: true,
        }
    }
}

impl ProbeOpts {
    pub fn with_deadline(deadline: Duration) -> Self {
        ProbeOpts { deadline, ..ProbeOpts::default() }
    }

    pub fn expecting(mut self, matrix: &topo_lab::ReachMatrix) -> Self {
        self.expect =
            Some(matrix.pairs.iter().map(|p| ((p.from.clone(), p.to.clone()), p.reached)).collect());
        self
    }
}

pub(crate) fn node<'p>(plan: &'p Plan, name: &str) -> Result<&'p NodePlan, ProbeError> {
    plan.node(name).ok_or_else(|| ProbeError::UnknownNode(name.to_owned()))
}

pub(crate) fn primary(n: &NodePlan) -> Result<Ipv4Addr, ProbeError> {
    n.primary_address().ok_or_else(|| ProbeError::NoAddress(n.name.clone()))
}

/// Which node owns an address (interfaces and loopbacks).
pub(crate) fn owner_of(plan: &Plan, addr: Ipv4Addr) -> Option<String> {
    plan.nodes.iter().find(|n| n.addresses().any(|a| a == addr)).map(|n| n.name.clone())
}

/// Open the namespaces of `names` (by node name) and start a namespace thread for them.
pub(crate) fn ns_thread_for(plan: &Plan, names: &[&str]) -> Result<sys::NsThread, ProbeError> {
    let mut fds = Vec::with_capacity(names.len());
    for n in names {
        let ns = topo_netns::Netns::open(&node(plan, n)?.netns)?;
        let fd = ns
            .fd()
            .try_clone_to_owned()
            .map_err(|e| ProbeError::io(format!("dup namespace fd of {n}"), e))?;
        fds.push(fd);
    }
    sys::NsThread::new(fds).map_err(|e| ProbeError::io("start namespace thread", e))
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, ProbeError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ProbeError::io("start async runtime", e))
}

/// A runtime with one worker per core (at most 4), for engines that spread sending.
pub(crate) fn runtime_mt() -> Result<tokio::runtime::Runtime, ProbeError> {
    let n = std::thread::available_parallelism().map_or(1, std::num::NonZero::get).clamp(1, 4);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(n)
        .thread_name("topo-probe")
        .enable_all()
        .build()
        .map_err(|e| ProbeError::io("start async runtime", e))
}

/// A random non-zero token identifying one probe run (replies of other runs are ignored).
pub(crate) fn token() -> u32 {
    rand::random::<u32>() | 1
}
