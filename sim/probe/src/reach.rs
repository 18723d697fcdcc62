//! The reachability matrix: rounds of probes over all selected pairs, driven by one async loop.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use topo_lab::{PairOutcome, Proto, ReachMatrix, ReachRequest};
use topo_plan::Plan;

use crate::sys::{self, Icmp};
use crate::{neigh, node, ns_thread_for, primary, runtime_mt, token, ProbeError, ProbeOpts};

/// A pair's outcome with what the engine saw on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairDetail {
    pub from: String,
    pub to: String,
    pub to_addr: Ipv4Addr,
    pub reached: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Source address and port the probe left with (UDP, TCP), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent: Option<SocketAddrV4>,
    /// Source address and port topo's listener in the destination observed (UDP, TCP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<SocketAddrV4>,
    /// Rounds this pair was probed in.
    pub attempts: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReachDetail {
    pub proto: Proto,
    pub pairs: Vec<PairDetail>,
    pub probes_sent: u64,
    pub elapsed_ms: u64,
    /// Probe rounds run (a round probes every pair not yet settled).
    #[serde(default)]
    pub rounds: u32,
    /// Time before the first probe: namespaces, sockets, neighbour entries.
    #[serde(default)]
    pub setup_ms: u64,
    /// Permanent neighbour entries installed for this run (and removed after it); see
    /// [`crate::neigh`].
    #[serde(default)]
    pub neighbours_installed: usize,
}

impl ReachDetail {
    pub fn matrix(&self) -> ReachMatrix {
        ReachMatrix {
            proto: self.proto,
            pairs: self
                .pairs
                .iter()
                .map(|p| PairOutcome {
                    from: p.from.clone(),
                    to: p.to.clone(),
                    to_addr: p.to_addr,
                    reached: p.reached,
                    reason: p.reason.clone(),
                })
                .collect(),
        }
    }

    /// Reached pairs whose destination saw another source than the sender has: the source
    /// address is not one of the sender's, or the port differs from the one it sent from. As
    /// (from, to, observed). Pairs without an observation (ICMP) are not judged.
    pub fn nat_violations(&self, plan: &Plan) -> Vec<(String, String, SocketAddrV4)> {
        let mut out = Vec::new();
        for p in self.pairs.iter().filter(|p| p.reached) {
            let Some(obs) = p.observed else { continue };
            let own = plan.node(&p.from).is_some_and(|n| n.addresses().any(|a| a == *obs.ip()));
            let port_ok = p.sent.is_none_or(|s| s.port() == obs.port());
            if !own || !port_ok {
                out.push((p.from.clone(), p.to.clone(), obs));
            }
        }
        out
    }
}

/// All-pairs (or selected) reachability. Pairs with `from == to` are skipped.
pub fn reach(plan: &Plan, req: &ReachRequest, opts: &ProbeOpts) -> Result<ReachMatrix, ProbeError> {
    reach_detailed(plan, req, opts).map(|d| d.matrix())
}

const MAGIC: &[u8; 4] = b"TOPO";
const TAG_LEN: usize = 20;
const NO_PAIR: u32 = u32::MAX;

fn encode_tag(token: u32, si: usize, di: usize, attempt: u32) -> [u8; TAG_LEN] {
    let mut b = [0u8; TAG_LEN];
    b[..4].copy_from_slice(MAGIC);
    b[4..8].copy_from_slice(&token.to_be_bytes());
    b[8..12].copy_from_slice(&(si as u32).to_be_bytes());
    b[12..16].copy_from_slice(&(di as u32).to_be_bytes());
    b[16..20].copy_from_slice(&attempt.to_be_bytes());
    b
}

/// (si, di, attempt) of a tag carrying `token`.
fn decode_tag(b: &[u8], token: u32) -> Option<(usize, usize, u32)> {
    if b.len() < TAG_LEN || &b[..4] != MAGIC {
        return None;
    }
    let u = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    (u(4) == token).then(|| (u(8) as usize, u(12) as usize, u(16)))
}

/// Reply of the topo responder to a UDP datagram: `TOPO <ip>:<port>\n` then the datagram.
pub(crate) fn parse_responder_echo(b: &[u8]) -> Option<(SocketAddrV4, &[u8])> {
    let nl = b.iter().position(|c| *c == b'\n')?;
    let line = std::str::from_utf8(&b[..nl]).ok()?;
    let addr = line.strip_prefix("TOPO ")?.trim().parse().ok()?;
    Some((addr, &b[nl + 1..]))
}

#[derive(Debug)]
enum Ev {
    Reply {
        pair: u32,
        attempt: u32,
        sent: Option<SocketAddrV4>,
        observed: Option<SocketAddrV4>,
    },
    Error {
        pair: u32,
        attempt: u32,
        text: String,
    },
    /// A TCP listener saw this pair's connection come from `observed`.
    Observed {
        pair: u32,
        observed: SocketAddrV4,
    },
}

/// Shared lookup tables for receiver tasks.
struct Index {
    ndst: usize,
    /// Dense (si, di) -> pair index, `NO_PAIR` for skipped pairs.
    pair_of: Vec<u32>,
    /// Destination address -> di.
    dst_by_addr: HashMap<Ipv4Addr, usize>,
}

impl Index {
    fn pair(&self, si: usize, di: usize) -> Option<u32> {
        if di >= self.ndst {
            return None;
        }
        self.pair_of.get(si * self.ndst + di).copied().filter(|p| *p != NO_PAIR)
    }
}

struct Run {
    pairs: Vec<(usize, usize)>,
    /// Expected outcome; `None`: no expectation (a snapshot: reached on the first answer, not
    /// reached after `max_attempts` unanswered rounds).
    expect: Vec<Option<bool>>,
    settled: Vec<bool>,
    result: Vec<bool>,
    reason: Vec<Option<String>>,
    attempts: Vec<u32>,
    /// Consecutive rounds without an answer.
    fails: Vec<u32>,
    any_reply: Vec<bool>,
    sent: Vec<Option<SocketAddrV4>>,
    observed: Vec<Option<SocketAddrV4>>,
    max_attempts: u32,
    // Per round:
    got: Vec<bool>,
    /// A reply to an earlier round arrived during this one (slow, but there).
    late: Vec<bool>,
    err: Vec<Option<String>>,
    round: u32,
    answered: usize,
    probes_sent: u64,
}

impl Run {
    fn reply(&mut self, p: usize, attempt: u32) {
        self.any_reply[p] = true;
        if attempt == self.round {
            if !self.got[p] && self.err[p].is_none() {
                self.answered += 1;
            }
            self.got[p] = true;
        } else {
            self.late[p] = true;
        }
    }

    fn on(&mut self, ev: Ev) {
        match ev {
            Ev::Reply { pair, attempt, sent, observed } => {
                let p = pair as usize;
                if sent.is_some() {
                    self.sent[p] = sent;
                }
                if observed.is_some() {
                    self.observed[p] = observed;
                }
                self.reply(p, attempt);
            }
            Ev::Error { pair, attempt, text } => {
                let p = pair as usize;
                if attempt == self.round && !self.got[p] && self.err[p].is_none() {
                    self.answered += 1;
                    self.err[p] = Some(text);
                }
            }
            Ev::Observed { pair, observed } => self.observed[pair as usize] = Some(observed),
        }
    }

    fn start_round(&mut self) -> Vec<usize> {
        self.round += 1;
        self.answered = 0;
        let todo: Vec<usize> = (0..self.pairs.len()).filter(|p| !self.settled[*p]).collect();
        if todo.is_empty() {
            // Nothing left: this is no round.
            self.round -= 1;
        }
        for &p in &todo {
            self.got[p] = false;
            self.late[p] = false;
            self.err[p] = None;
            self.attempts[p] += 1;
        }
        todo
    }

    fn settle(&mut self, todo: &[usize]) {
        for &p in todo {
            // Pairs not expected to be cut also count answers to earlier rounds.
            let reached = self.got[p] || self.late[p] || (self.expect[p] != Some(false) && self.any_reply[p]);
            self.result[p] = reached;
            self.reason[p] =
                if reached { None } else { Some(self.err[p].take().unwrap_or_else(|| "timeout".into())) };
            self.fails[p] = if reached { 0 } else { self.fails[p] + 1 };
            let enough = self.fails[p] >= self.max_attempts;
            self.settled[p] = match self.expect[p] {
                None => reached || enough,
                Some(true) => reached,
                Some(false) => !reached && enough,
            };
        }
    }

    /// Another round? Unsettled pairs always get `max_attempts` rounds; after that, only
    /// while the deadline allows (pairs that disagree with their expectation).
    fn more(&self, start: Instant, opts: &ProbeOpts) -> bool {
        self.round < self.max_attempts || !deadline_passed(start, opts)
    }
}

pub fn reach_detailed(plan: &Plan, req: &ReachRequest, opts: &ProbeOpts) -> Result<ReachDetail, ProbeError> {
    let started = Instant::now();
    for n in req.from.iter().chain(&req.to) {
        node(plan, n)?;
    }
    let mut dst_addr = Vec::with_capacity(req.to.len());
    for d in &req.to {
        // Addressless destinations (DHCP-only) are reported per pair, not as an error.
        dst_addr.push(primary(node(plan, d)?).unwrap_or(Ipv4Addr::UNSPECIFIED));
    }
    let (nsrc, ndst) = (req.from.len(), req.to.len());
    let mut pair_of = vec![NO_PAIR; nsrc * ndst];
    let mut pairs = Vec::new();
    for (si, s) in req.from.iter().enumerate() {
        for (di, d) in req.to.iter().enumerate() {
            if s != d {
                pair_of[si * ndst + di] = pairs.len() as u32;
                pairs.push((si, di));
            }
        }
    }
    // Expectations by index (no per-pair allocation); pairs the map lacks: expected reached.
    let mut expect: Vec<Option<bool>> = vec![opts.expect.as_ref().map(|_| true); pairs.len()];
    if let Some(e) = &opts.expect {
        fn by_name(names: &[String]) -> HashMap<&str, Vec<usize>> {
            let mut m: HashMap<&str, Vec<usize>> = HashMap::new();
            for (i, n) in names.iter().enumerate() {
                m.entry(n.as_str()).or_default().push(i);
            }
            m
        }
        let (src_ix, dst_ix) = (by_name(&req.from), by_name(&req.to));
        for ((a, b), v) in e {
            for &si in src_ix.get(a.as_str()).into_iter().flatten() {
                for &di in dst_ix.get(b.as_str()).into_iter().flatten() {
                    if pair_of[si * ndst + di] != NO_PAIR {
                        expect[pair_of[si * ndst + di] as usize] = Some(*v);
                    }
                }
            }
        }
    }
    let n = pairs.len();
    let mut run = Run {
        pairs,
        expect,
        settled: vec![false; n],
        result: vec![false; n],
        reason: vec![None; n],
        attempts: vec![0; n],
        fails: vec![0; n],
        any_reply: vec![false; n],
        sent: vec![None; n],
        observed: vec![None; n],
        max_attempts: opts.attempts.max(1),
        got: vec![false; n],
        late: vec![false; n],
        err: vec![None; n],
        round: 0,
        answered: 0,
        probes_sent: 0,
    };
    for (p, &(_, di)) in run.pairs.iter().enumerate() {
        if dst_addr[di].is_unspecified() {
            run.settled[p] = true;
            run.reason[p] = Some("the destination has no IPv4 address in the plan".into());
        }
    }
    let index = Arc::new(Index {
        ndst,
        pair_of,
        dst_by_addr: dst_addr.iter().enumerate().map(|(i, a)| (*a, i)).collect(),
    });
    // Namespace thread: every node once (sources and destinations overlap).
    let mut ns_names: Vec<&str> = Vec::new();
    let mut pos: HashMap<&str, usize> = HashMap::new();
    let mut ns = NsMap { src: Vec::with_capacity(nsrc), dst: Vec::with_capacity(ndst) };
    for (list, out) in [(&req.from, &mut ns.src), (&req.to, &mut ns.dst)] {
        for name in list {
            let i = *pos.entry(name.as_str()).or_insert_with(|| {
                ns_names.push(name.as_str());
                ns_names.len() - 1
            });
            out.push(i);
        }
    }
    let nst = ns_thread_for(plan, &ns_names)?;
    let (mut neigh_added, mut setup_ms) = (0, 0);
    if n > 0 {
        let installed = if opts.static_neighbours {
            let nodes: Vec<&topo_plan::NodePlan> =
                ns_names.iter().map(|name| node(plan, name)).collect::<Result<_, _>>()?;
            let ns_of: Vec<usize> = (0..nodes.len()).collect();
            let need = neigh::needed(
                &nodes,
                run.pairs.iter().map(|&(si, di)| (ns.src[si], ns.dst[di], dst_addr[di])),
            );
            let t = Instant::now();
            let r = neigh::install(&nst, &nodes, &ns_of, need)?;
            tracing::debug!(elapsed = ?t.elapsed(), "neighbour step");
            r
        } else {
            None
        };
        neigh_added = installed.as_ref().map_or(0, |i| i.added);
        setup_ms = started.elapsed().as_millis() as u64;
        let res = match req.proto {
            Proto::Icmp => icmp(&nst, &mut run, &index, &dst_addr, &ns, opts),
            Proto::Udp(port) => runtime_mt()
                .and_then(|rt| rt.block_on(udp(&nst, &mut run, &index, &dst_addr, &ns, port, opts))),
            Proto::Tcp(port) => runtime_mt()
                .and_then(|rt| rt.block_on(tcp(&nst, &mut run, &index, &dst_addr, &ns, port, opts))),
        };
        if let Some(i) = installed {
            i.remove();
        }
        res?;
    }
    let probed_at = started.elapsed();
    // Emit sorted by (from, to) without comparing pairs: walk sources and destinations in
    // name order (pair indices are dense in (si, di)).
    let mut src_order: Vec<usize> = (0..nsrc).collect();
    src_order.sort_by(|a, b| req.from[*a].cmp(&req.from[*b]));
    let mut dst_order: Vec<usize> = (0..ndst).collect();
    dst_order.sort_by(|a, b| req.to[*a].cmp(&req.to[*b]));
    let mut out: Vec<PairDetail> = Vec::with_capacity(run.pairs.len());
    for &si in &src_order {
        for &di in &dst_order {
            let Some(p) = index.pair(si, di) else { continue };
            let p = p as usize;
            out.push(PairDetail {
                from: req.from[si].clone(),
                to: req.to[di].clone(),
                to_addr: dst_addr[di],
                reached: run.result[p],
                reason: run.reason[p].take(),
                sent: run.sent[p],
                observed: run.observed[p],
                attempts: run.attempts[p],
            });
        }
    }
    tracing::debug!(setup_ms, probed = ?probed_at, total = ?started.elapsed(), rounds = run.round, "reach phases");
    Ok(ReachDetail {
        proto: req.proto,
        pairs: out,
        probes_sent: run.probes_sent,
        elapsed_ms: started.elapsed().as_millis() as u64,
        rounds: run.round,
        setup_ms,
        neighbours_installed: neigh_added,
    })
}

fn round_timeout(opts: &ProbeOpts, round: u32) -> Duration {
    opts.attempt_timeout * (1u32 << (round.saturating_sub(1)).min(3))
}

/// Drain events until the round is fully answered or `timeout` passes without completion.
async fn wait_round(
    run: &mut Run,
    rx: &mut mpsc::UnboundedReceiver<Vec<Ev>>,
    expected: usize,
    until: tokio::time::Instant,
) {
    while run.answered < expected {
        match tokio::time::timeout_at(until, rx.recv()).await {
            Ok(Some(evs)) => evs.into_iter().for_each(|e| run.on(e)),
            Ok(None) | Err(_) => break,
        }
    }
}

fn drain_ready(run: &mut Run, rx: &mut mpsc::UnboundedReceiver<Vec<Ev>>) {
    while let Ok(evs) = rx.try_recv() {
        for e in evs {
            run.on(e);
        }
    }
}

fn deadline_passed(start: Instant, opts: &ProbeOpts) -> bool {
    start.elapsed() >= opts.deadline
}

/// Where each source and destination lives in the namespace thread (each node opened once).
struct NsMap {
    src: Vec<usize>,
    dst: Vec<usize>,
}

/// Probes per `sendmmsg` / replies per `recvmmsg`.
const BATCH: usize = sys::MMSG_BATCH;

/// One source's share of a round: (pair, destination index).
type SrcWork = Vec<(u32, u32)>;

/// What a sending thread saw: replies as (pair, attempt), and errors.
#[derive(Default)]
struct Seen {
    replies: Vec<(u32, u32)>,
    errors: Vec<Ev>,
}

/// Receive buffers of one thread.
struct RecvBufs {
    bufs: Box<[[u8; 256]; sys::MMSG_BATCH]>,
    lens: [usize; sys::MMSG_BATCH],
}

impl RecvBufs {
    fn new() -> Self {
        RecvBufs { bufs: Box::new([[0u8; 256]; sys::MMSG_BATCH]), lens: [0; sys::MMSG_BATCH] }
    }
}

/// Read everything queued on a source's socket (without blocking).
fn drain_icmp(
    fd: std::os::fd::BorrowedFd<'_>,
    si: usize,
    (tok, id): (u32, u16),
    index: &Index,
    rb: &mut RecvBufs,
    seen: &mut Seen,
) {
    loop {
        let Ok(n) = sys::recv_many(fd, &mut rb.bufs, &mut rb.lens) else { return };
        for (b, &len) in rb.bufs.iter().zip(&rb.lens).take(n) {
            match icmp_event(&b[..len], tok, id, si, index) {
                Some(Ev::Reply { pair, attempt, .. }) => seen.replies.push((pair, attempt)),
                Some(e) => seen.errors.push(e),
                None => {}
            }
        }
        if n < sys::MMSG_BATCH {
            return;
        }
    }
}

/// ICMP echo over raw sockets, without an async runtime: the kernel carries a probe's whole
/// round trip (veth, bridge, the destination's reply) inside the sender's `sendmmsg`, so one
/// thread per core sends each source's probes in batches and reads that source's replies
/// right after (they are already queued); whatever the kernel deferred is collected with
/// `poll` at the end of the round.
fn icmp(
    nst: &sys::NsThread,
    run: &mut Run,
    index: &Index,
    dst_addr: &[Ipv4Addr],
    ns: &NsMap,
    opts: &ProbeOpts,
) -> Result<(), ProbeError> {
    let tok = token();
    let id = tok as u16;
    let nsrc = ns.src.len();
    let socks: Vec<OwnedFd> = nst
        .run_each(ns.src.clone(), |_| sys::raw_icmp_socket())
        .map_err(|e| ProbeError::io("open ICMP sockets", e))?
        .into_iter()
        .collect::<io::Result<_>>()
        .map_err(|e| ProbeError::io("open ICMP socket", e))?;
    let start = Instant::now();
    let workers = std::thread::available_parallelism().map_or(1, std::num::NonZero::get).clamp(1, 4);
    let mut work: Vec<SrcWork> = vec![Vec::new(); nsrc];
    loop {
        let todo = run.start_round();
        if todo.is_empty() {
            break;
        }
        let round = run.round;
        for w in &mut work {
            w.clear();
        }
        for &p in &todo {
            let (si, di) = run.pairs[p];
            work[si].push((p as u32, di as u32));
        }
        let (work_ref, socks_ref, npairs) = (&work, &socks, todo.len());
        let results: Vec<(usize, Seen)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..workers)
                .map(|w| {
                    s.spawn(move || {
                        let mut seen = Seen::default();
                        seen.replies.reserve(npairs / workers + 1024);
                        let mut rb = RecvBufs::new();
                        let mut sent = 0usize;
                        let mut pkts = [[0u8; 8 + TAG_LEN]; BATCH];
                        let mut addrs = Vec::with_capacity(BATCH);
                        for si in (w..nsrc).step_by(workers) {
                            let fd = socks_ref[si].as_fd();
                            for chunk in work_ref[si].chunks(BATCH) {
                                addrs.clear();
                                for (pkt, &(_, di)) in pkts.iter_mut().zip(chunk) {
                                    sys::write_echo(
                                        pkt,
                                        id,
                                        round as u16,
                                        &encode_tag(tok, si, di as usize, round),
                                    );
                                    addrs.push(dst_addr[di as usize]);
                                }
                                let mut done = 0;
                                let mut stalls = 0;
                                while done < chunk.len() {
                                    let (n, err) =
                                        sys::send_many(fd, &pkts[done..chunk.len()], &addrs[done..]);
                                    done += n;
                                    sent += n;
                                    match err {
                                        None => {}
                                        Some(e) if e.kind() == io::ErrorKind::WouldBlock && stalls < 1000 => {
                                            // The send buffer is full: make room by reading.
                                            stalls += 1;
                                            drain_icmp(fd, si, (tok, id), index, &mut rb, &mut seen);
                                            std::thread::yield_now();
                                        }
                                        Some(e) => {
                                            // e.g. ENETUNREACH (no route): an answer in itself.
                                            seen.errors.push(Ev::Error {
                                                pair: chunk[done].0,
                                                attempt: round,
                                                text: format!("send: {e}"),
                                            });
                                            done += 1;
                                        }
                                    }
                                }
                                drain_icmp(fd, si, (tok, id), index, &mut rb, &mut seen);
                            }
                        }
                        (sent, seen)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
        });
        for (sent, seen) in results {
            run.probes_sent += sent as u64;
            for (p, a) in seen.replies {
                run.reply(p as usize, a);
            }
            for e in seen.errors {
                run.on(e);
            }
        }
        // Replies the kernel deferred (softirq on another core, a loaded machine).
        let until = Instant::now() + round_timeout(opts, round);
        // Only sources with unanswered probes matter.
        let mut open = vec![false; nsrc];
        for &p in &todo {
            if !run.got[p] && run.err[p].is_none() {
                open[run.pairs[p].0] = true;
            }
        }
        let fds: Vec<(usize, std::os::fd::BorrowedFd<'_>)> =
            (0..nsrc).filter(|si| open[*si]).map(|si| (si, socks[si].as_fd())).collect();
        while run.answered < todo.len() {
            let now = Instant::now();
            if now >= until {
                break;
            }
            let only: Vec<std::os::fd::BorrowedFd<'_>> = fds.iter().map(|(_, f)| *f).collect();
            let ready = sys::poll_readable(&only, until - now).map_err(|e| ProbeError::io("poll", e))?;
            let mut seen = Seen::default();
            let mut rb = RecvBufs::new();
            for k in ready {
                let (si, fd) = fds[k];
                drain_icmp(fd, si, (tok, id), index, &mut rb, &mut seen);
            }
            for (p, a) in seen.replies {
                run.reply(p as usize, a);
            }
            for e in seen.errors {
                run.on(e);
            }
        }
        run.settle(&todo);
        if !run.more(start, opts) {
            break;
        }
    }
    Ok(())
}

fn icmp_event(pkt: &[u8], tok: u32, id: u16, si: usize, index: &Index) -> Option<Ev> {
    match sys::parse_icmp(pkt)? {
        Icmp::EchoReply { id: rid, payload, .. } if rid == id => {
            let (psi, di, attempt) = decode_tag(payload, tok)?;
            (psi == si).then_some(())?;
            Some(Ev::Reply { pair: index.pair(si, di)?, attempt, sent: None, observed: None })
        }
        Icmp::Error { from, kind, code, orig_dst, id: rid, seq, .. } if rid == id => {
            let di = *index.dst_by_addr.get(&orig_dst)?;
            Some(Ev::Error {
                pair: index.pair(si, di)?,
                attempt: u32::from(seq),
                text: format!("{} (from {from})", sys::icmp_error_text(kind, code)),
            })
        }
        _ => None,
    }
}

/// A UDP listener bound to `0.0.0.0:port` in the calling thread's namespace; `None` when the
/// port is taken (e.g. by a topo responder, which echoes instead).
fn udp_listener(port: u16) -> io::Result<Option<std::net::UdpSocket>> {
    match std::net::UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)) {
        Ok(s) => {
            s.set_nonblocking(true)?;
            sys::set_rcvbuf(s.as_fd(), sys::PROBE_RCVBUF);
            Ok(Some(s))
        }
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Ok(None),
        Err(e) => Err(e),
    }
}

fn udp_sender() -> io::Result<std::net::UdpSocket> {
    let s = std::net::UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
    s.set_nonblocking(true)?;
    sys::set_rcvbuf(s.as_fd(), sys::PROBE_RCVBUF);
    Ok(s)
}

async fn udp(
    nst: &sys::NsThread,
    run: &mut Run,
    index: &Arc<Index>,
    dst_addr: &[Ipv4Addr],
    ns: &NsMap,
    port: u16,
    opts: &ProbeOpts,
) -> Result<(), ProbeError> {
    let tok = token();
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<Ev>>();
    let mut tasks = Vec::new();
    let mut senders = Vec::with_capacity(ns.src.len());
    for si in 0..ns.src.len() {
        let s =
            nst.run_async(ns.src[si], udp_sender).await.map_err(|e| ProbeError::io("open UDP socket", e))?;
        let local = match s.local_addr() {
            Ok(std::net::SocketAddr::V4(a)) => a.port(),
            _ => 0,
        };
        let s = Arc::new(
            tokio::net::UdpSocket::from_std(s).map_err(|e| ProbeError::io("register UDP socket", e))?,
        );
        // Echoes from topo responders (destinations whose port was taken).
        let (rs, tx, index) = (s.clone(), tx.clone(), index.clone());
        tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((len, _)) = rs.recv_from(&mut buf).await {
                let Some((observed, tag)) = parse_responder_echo(&buf[..len]) else { continue };
                let Some((psi, di, attempt)) = decode_tag(tag, tok) else { continue };
                let Some(pair) = index.pair(psi, di).filter(|_| psi == si) else { continue };
                let sent = Some(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, local));
                if tx.send(vec![Ev::Reply { pair, attempt, sent, observed: Some(observed) }]).is_err() {
                    return;
                }
            }
        }));
        senders.push((s, local));
    }
    for di in 0..dst_addr.len() {
        let l = nst
            .run_async(ns.dst[di], move || udp_listener(port))
            .await
            .map_err(|e| ProbeError::io(format!("listen on UDP port {port}"), e))?;
        let Some(l) = l else {
            tracing::debug!(di, port, "UDP port taken in destination; relying on responder echoes");
            continue;
        };
        let l = tokio::net::UdpSocket::from_std(l).map_err(|e| ProbeError::io("register UDP listener", e))?;
        let (tx, index) = (tx.clone(), index.clone());
        tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((len, from)) = l.recv_from(&mut buf).await {
                let std::net::SocketAddr::V4(from) = from else { continue };
                let Some((si, pdi, attempt)) = decode_tag(&buf[..len], tok) else { continue };
                let Some(pair) = index.pair(si, pdi).filter(|_| pdi == di) else { continue };
                if tx.send(vec![Ev::Reply { pair, attempt, sent: None, observed: Some(from) }]).is_err() {
                    return;
                }
            }
        }));
    }
    drop(tx);
    let start = Instant::now();
    for (p, &(si, _)) in run.pairs.iter().enumerate() {
        run.sent[p] = Some(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, senders[si].1));
    }
    loop {
        let todo = run.start_round();
        if todo.is_empty() {
            break;
        }
        let round = run.round;
        let mut sent_round = 0usize;
        for &p in &todo {
            let (si, di) = run.pairs[p];
            let tag = encode_tag(tok, si, di, round);
            let to = SocketAddrV4::new(dst_addr[di], port);
            let mut tries = 0;
            loop {
                match senders[si].0.try_send_to(&tag, to.into()) {
                    Ok(_) => {
                        sent_round += 1;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock && tries < 100 => {
                        tries += 1;
                        tokio::task::yield_now().await;
                        drain_ready(run, &mut rx);
                    }
                    Err(e) => {
                        run.on(Ev::Error { pair: p as u32, attempt: round, text: format!("send: {e}") });
                        break;
                    }
                }
            }
            if sent_round - run.answered.min(sent_round) >= opts.max_in_flight {
                let until = tokio::time::Instant::now() + round_timeout(opts, round);
                let target = run.answered + opts.max_in_flight / 2;
                wait_round(run, &mut rx, target.min(todo.len()), until).await;
            } else if sent_round % 256 == 0 {
                drain_ready(run, &mut rx);
            }
        }
        run.probes_sent += sent_round as u64;
        let until = tokio::time::Instant::now() + round_timeout(opts, round);
        wait_round(run, &mut rx, todo.len(), until).await;
        run.settle(&todo);
        if !run.more(start, opts) {
            break;
        }
    }
    for t in tasks {
        t.abort();
    }
    Ok(())
}

/// A TCP listener on `0.0.0.0:port` in the calling thread's namespace; `None` when the port is
/// already served (by a responder or an application: connecting is what counts).
fn tcp_listener(port: u16) -> io::Result<Option<std::net::TcpListener>> {
    match std::net::TcpListener::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)) {
        Ok(l) => {
            l.set_nonblocking(true)?;
            Ok(Some(l))
        }
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Ok(None),
        Err(e) => Err(e),
    }
}

async fn tcp(
    nst: &sys::NsThread,
    run: &mut Run,
    index: &Arc<Index>,
    dst_addr: &[Ipv4Addr],
    ns: &NsMap,
    port: u16,
    opts: &ProbeOpts,
) -> Result<(), ProbeError> {
    let tok = token();
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<Ev>>();
    let mut tasks = Vec::new();
    for di in 0..dst_addr.len() {
        let l = nst
            .run_async(ns.dst[di], move || tcp_listener(port))
            .await
            .map_err(|e| ProbeError::io(format!("listen on TCP port {port}"), e))?;
        let Some(l) = l else { continue };
        let l =
            tokio::net::TcpListener::from_std(l).map_err(|e| ProbeError::io("register TCP listener", e))?;
        let (tx, index) = (tx.clone(), index.clone());
        tasks.push(tokio::spawn(async move {
            while let Ok((mut conn, from)) = l.accept().await {
                let std::net::SocketAddr::V4(from) = from else { continue };
                let (tx, index) = (tx.clone(), index.clone());
                tokio::spawn(async move {
                    let mut tag = [0u8; TAG_LEN];
                    let read = tokio::time::timeout(Duration::from_secs(2), conn.read_exact(&mut tag)).await;
                    if let Ok(Ok(_)) = read {
                        if let Some((si, pdi, _)) = decode_tag(&tag, tok) {
                            if let Some(pair) = index.pair(si, pdi).filter(|_| pdi == di) {
                                let _ = tx.send(vec![Ev::Observed { pair, observed: from }]);
                            }
                        }
                    }
                });
            }
        }));
    }
    drop(tx);
    let start = Instant::now();
    // Each pair holds up to two descriptors while in flight; stay well under the fd limit.
    let batch = opts.max_in_flight.clamp(1, 2048);
    loop {
        let todo = run.start_round();
        if todo.is_empty() {
            break;
        }
        let round = run.round;
        let timeout = round_timeout(opts, round).max(Duration::from_millis(200));
        for chunk in todo.chunks(batch) {
            // Sockets are created in their source namespace, one job per source.
            let mut by_src: HashMap<usize, Vec<usize>> = HashMap::new();
            for &p in chunk {
                by_src.entry(run.pairs[p].0).or_default().push(p);
            }
            let mut conns = FuturesUnordered::new();
            for (si, ps) in by_src {
                let count = ps.len();
                let socks = nst
                    .run_async(ns.src[si], move || {
                        (0..count).map(|_| tokio::net::TcpSocket::new_v4()).collect()
                    })
                    .await
                    .map_err(|e| ProbeError::io("open TCP socket", e))?;
                for (p, sock) in ps.into_iter().zip::<Vec<tokio::net::TcpSocket>>(socks) {
                    let di = run.pairs[p].1;
                    let to = SocketAddrV4::new(dst_addr[di], port);
                    let tag = encode_tag(tok, si, di, round);
                    conns.push(async move {
                        let r = tokio::time::timeout(timeout, async {
                            let mut s = sock.connect(to.into()).await?;
                            let local = s.local_addr()?;
                            // Best effort: the tag lets the listener report what it observed.
                            let _ = s.write_all(&tag).await;
                            Ok::<_, io::Error>(local)
                        })
                        .await;
                        (p, r)
                    });
                }
            }
            run.probes_sent += chunk.len() as u64;
            while let Some((p, r)) = conns.next().await {
                let ev = match r {
                    Ok(Ok(std::net::SocketAddr::V4(local))) => {
                        Ev::Reply { pair: p as u32, attempt: round, sent: Some(local), observed: None }
                    }
                    Ok(Ok(_)) => Ev::Reply { pair: p as u32, attempt: round, sent: None, observed: None },
                    Ok(Err(e)) => Ev::Error { pair: p as u32, attempt: round, text: e.to_string() },
                    Err(_) => continue,
                };
                run.on(ev);
            }
        }
        // Give listeners a moment to report what they observed.
        let until = tokio::time::Instant::now() + Duration::from_millis(20);
        while let Ok(Some(evs)) = tokio::time::timeout_at(until, rx.recv()).await {
            for e in evs {
                run.on(e);
            }
        }
        run.settle(&todo);
        if !run.more(start, opts) {
            break;
        }
    }
    drain_ready(run, &mut rx);
    for t in tasks {
        t.abort();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_roundtrip_and_reject_foreign_tokens() {
        let t = encode_tag(77, 3, 9, 2);
        assert_eq!(decode_tag(&t, 77), Some((3, 9, 2)));
        assert_eq!(decode_tag(&t, 78), None);
        assert_eq!(decode_tag(&t[..10], 77), None);
    }

    #[test]
    fn responder_echo_parses() {
        let mut b = b"TOPO 10.0.0.7:4242\n".to_vec();
        b.extend_from_slice(b"rest");
        let (a, rest) = parse_responder_echo(&b).unwrap();
        assert_eq!(a, "10.0.0.7:4242".parse().unwrap());
        assert_eq!(rest, b"rest");
        assert!(parse_responder_echo(b"hello\n").is_none());
    }
}
