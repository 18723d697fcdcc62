//! The reachability matrix: rounds of probes over all selected pairs, driven by one async loop.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use topo_lab::{PairOutcome, Proto, ReachMatrix, ReachRequest};
use topo_plan::Plan;

use crate::sys::{self, Icmp};
use crate::{node, ns_thread_for, primary, runtime_mt, token, ProbeError, ProbeOpts};

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
    expect: Vec<bool>,
    settled: Vec<bool>,
    result: Vec<bool>,
    reason: Vec<Option<String>>,
    attempts: Vec<u32>,
    any_reply: Vec<bool>,
    sent: Vec<Option<SocketAddrV4>>,
    observed: Vec<Option<SocketAddrV4>>,
    // Per round:
    got: Vec<bool>,
    err: Vec<Option<String>>,
    round: u32,
    answered: usize,
    probes_sent: u64,
}

impl Run {
    fn on(&mut self, ev: Ev) {
        match ev {
            Ev::Reply { pair, attempt, sent, observed } => {
                let p = pair as usize;
                self.any_reply[p] = true;
                if sent.is_some() {
                    self.sent[p] = sent;
                }
                if observed.is_some() {
                    self.observed[p] = observed;
                }
                if attempt == self.round && !self.got[p] && self.err[p].is_none() {
                    self.answered += 1;
                }
                if attempt == self.round {
                    self.got[p] = true;
                }
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
        for &p in &todo {
            self.got[p] = false;
            self.err[p] = None;
            self.attempts[p] += 1;
        }
        todo
    }

    fn settle(&mut self, todo: &[usize]) {
        for &p in todo {
            let reached = self.got[p] || (self.expect[p] && self.any_reply[p]);
            self.result[p] = reached;
            self.reason[p] =
                if reached { None } else { Some(self.err[p].take().unwrap_or_else(|| "timeout".into())) };
            if reached == self.expect[p] {
                self.settled[p] = true;
            }
        }
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
    let expect: Vec<bool> = pairs
        .iter()
        .map(|&(si, di)| {
            opts.expect
                .as_ref()
                .and_then(|e| e.get(&(req.from[si].clone(), req.to[di].clone())))
                .copied()
                .unwrap_or(true)
        })
        .collect();
    let n = pairs.len();
    let mut run = Run {
        pairs,
        expect,
        settled: vec![false; n],
        result: vec![false; n],
        reason: vec![None; n],
        attempts: vec![0; n],
        any_reply: vec![false; n],
        sent: vec![None; n],
        observed: vec![None; n],
        got: vec![false; n],
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
    // Namespace thread: sources first (index si), then destinations (nsrc + di).
    let mut ns_names: Vec<&str> = req.from.iter().map(String::as_str).collect();
    ns_names.extend(req.to.iter().map(String::as_str));
    let nst = ns_thread_for(plan, &ns_names)?;
    if n > 0 {
        let rt = runtime_mt()?;
        match req.proto {
            Proto::Icmp => rt.block_on(icmp(&nst, &mut run, &index, &dst_addr, nsrc, opts))?,
            Proto::Udp(port) => rt.block_on(udp(&nst, &mut run, &index, &dst_addr, nsrc, port, opts))?,
            Proto::Tcp(port) => rt.block_on(tcp(&nst, &mut run, &index, &dst_addr, nsrc, port, opts))?,
        }
    }
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
    Ok(ReachDetail {
        proto: req.proto,
        pairs: out,
        probes_sent: run.probes_sent,
        elapsed_ms: started.elapsed().as_millis() as u64,
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

async fn icmp(
    nst: &sys::NsThread,
    run: &mut Run,
    index: &Arc<Index>,
    dst_addr: &[Ipv4Addr],
    nsrc: usize,
    opts: &ProbeOpts,
) -> Result<(), ProbeError> {
    let tok = token();
    let id = tok as u16;
    let mut socks: Vec<Arc<AsyncFd<OwnedFd>>> = Vec::with_capacity(nsrc);
    for si in 0..nsrc {
        let fd = nst
            .run_async(si, sys::raw_icmp_socket)
            .await
            .map_err(|e| ProbeError::io("open ICMP socket", e))?;
        socks.push(Arc::new(sys::async_fd(fd).map_err(|e| ProbeError::io("register ICMP socket", e))?));
    }
    let socks = Arc::new(socks);
    let replies = Arc::new(AtomicUsize::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<Ev>>();
    let mut tasks = Vec::new();
    for (si, s) in socks.iter().enumerate() {
        let (s, tx, index, replies) = (s.clone(), tx.clone(), index.clone(), replies.clone());
        tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            loop {
                let Ok(mut guard) = s.readable().await else { return };
                let mut evs = Vec::new();
                loop {
                    match sys::recv(s.get_ref().as_fd(), &mut buf) {
                        Ok(len) => {
                            if let Some(ev) = icmp_event(&buf[..len], tok, id, si, &index) {
                                evs.push(ev);
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            guard.clear_ready();
                            break;
                        }
                        Err(_) => break,
                    }
                }
                replies.fetch_add(evs.len(), Ordering::Relaxed);
                if !evs.is_empty() && tx.send(evs).is_err() {
                    return;
                }
            }
        }));
    }
    drop(tx);
    let start = Instant::now();
    let dst_addr: Arc<Vec<Ipv4Addr>> = Arc::new(dst_addr.to_vec());
    // The kernel does a probe's whole round trip (veth, bridge, reply) inside the sender's
    // sendto call, so sending is spread over one task per core.
    let workers = std::thread::available_parallelism().map_or(1, std::num::NonZero::get).clamp(1, 4);
    loop {
        let todo = run.start_round();
        if todo.is_empty() {
            break;
        }
        let round = run.round;
        let mut parts: Vec<Vec<(usize, usize, usize)>> = vec![Vec::new(); workers];
        for &p in &todo {
            let (si, di) = run.pairs[p];
            parts[si % workers].push((p, si, di));
        }
        let mut senders = Vec::new();
        for part in parts.into_iter().filter(|p| !p.is_empty()) {
            let (socks, dst_addr, replies) = (socks.clone(), dst_addr.clone(), replies.clone());
            let max_in_flight = opts.max_in_flight.max(1);
            senders.push(tokio::spawn(async move {
                let mut pkt = Vec::with_capacity(64);
                let mut errors = Vec::new();
                let mut sent = 0usize;
                let base = replies.load(Ordering::Relaxed);
                for (p, si, di) in part {
                    sys::build_echo(&mut pkt, id, round as u16, &encode_tag(tok, si, di, round));
                    let fd = socks[si].get_ref().as_fd();
                    let mut tries = 0;
                    loop {
                        match sys::send_to(fd, &pkt, dst_addr[di]) {
                            Ok(_) => {
                                sent += 1;
                                break;
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock && tries < 100 => {
                                tries += 1;
                                tokio::task::yield_now().await;
                            }
                            Err(e) => {
                                // e.g. ENETUNREACH when the node has no route: an answer in itself.
                                errors.push(Ev::Error {
                                    pair: p as u32,
                                    attempt: round,
                                    text: format!("send: {e}"),
                                });
                                break;
                            }
                        }
                    }
                    // Bound what waits in receive buffers; let the receivers run now and then.
                    let mut waited = 0;
                    while sent.saturating_sub(replies.load(Ordering::Relaxed).saturating_sub(base))
                        >= max_in_flight
                        && waited < 1000
                    {
                        waited += 1;
                        tokio::task::yield_now().await;
                    }
                    if sent % 128 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                (sent, errors)
            }));
        }
        let mut sent_round = 0usize;
        for s in senders {
            let (sent, errors) =
                s.await.map_err(|e| ProbeError::Invalid(format!("probe sender failed: {e}")))?;
            sent_round += sent;
            for e in errors {
                run.on(e);
            }
            drain_ready(run, &mut rx);
        }
        run.probes_sent += sent_round as u64;
        let until = tokio::time::Instant::now() + round_timeout(opts, round);
        wait_round(run, &mut rx, todo.len(), until).await;
        run.settle(&todo);
        // Always one retry of what failed, even when a big first round used up the deadline.
        if deadline_passed(start, opts) && run.round >= 2 {
            break;
        }
    }
    for t in tasks {
        t.abort();
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
    nsrc: usize,
    port: u16,
    opts: &ProbeOpts,
) -> Result<(), ProbeError> {
    let tok = token();
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<Ev>>();
    let mut tasks = Vec::new();
    let mut senders = Vec::with_capacity(nsrc);
    for si in 0..nsrc {
        let s = nst.run_async(si, udp_sender).await.map_err(|e| ProbeError::io("open UDP socket", e))?;
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
            .run_async(nsrc + di, move || udp_listener(port))
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
        // Always one retry of what failed, even when a big first round used up the deadline.
        if deadline_passed(start, opts) && run.round >= 2 {
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
    nsrc: usize,
    port: u16,
    opts: &ProbeOpts,
) -> Result<(), ProbeError> {
    let tok = token();
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<Ev>>();
    let mut tasks = Vec::new();
    for di in 0..dst_addr.len() {
        let l = nst
            .run_async(nsrc + di, move || tcp_listener(port))
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
                    .run_async(si, move || (0..count).map(|_| tokio::net::TcpSocket::new_v4()).collect())
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
        // Always one retry of what failed, even when a big first round used up the deadline.
        if deadline_passed(start, opts) && run.round >= 2 {
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
