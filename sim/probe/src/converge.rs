//! Convergence measurement: probe streams (default 1 kHz per flow) run before, during and after
//! a fault; route changes are watched over netlink in the flow ends and routers; everything is
//! put on one monotonic timeline anchored at the injection.
//!
//! The measurement runs on its own thread (a tokio loop owning every socket) while the caller's
//! thread calls `inject`, so probes keep flowing while the fault is applied.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::{mpsc as smpsc, Arc};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use topo_lab::{ConvergeReport, ConvergeRequest, FlowReport, Proto, TimelineEvent};
use topo_plan::Plan;
use topo_spec::NodeKind;

use crate::sys::{self, Icmp};
use crate::{node, ns_thread_for, primary, runtime, token, ProbeError};

/// Measure how the flows of `req` live through the fault that `inject` applies.
///
/// Steps: open sockets in every namespace; start the streams; wait until each flow has `stable`
/// consecutive successes (else the flow did not work before the fault: error); call `inject` on
/// this thread while the streams run; then run until every flow is stable again after its last
/// loss (or was never disturbed for `quiet`), or `timeout` passes.
pub fn converge(
    plan: &Plan,
    state_dir: &Path,
    req: &ConvergeRequest,
    inject: &mut dyn FnMut() -> Result<(), String>,
) -> Result<ConvergeReport, ProbeError> {
    tracing::debug!(state_dir = %state_dir.display(), flows = req.flows.len(), "converge");
    if req.flows.is_empty() {
        return Err(ProbeError::Invalid("no flow to measure: give at least one FROM->TO".into()));
    }
    if req.interval.is_zero() || req.stable == 0 {
        return Err(ProbeError::Invalid("interval and stable count must be positive".into()));
    }
    let mut dsts = Vec::new();
    for f in &req.flows {
        node(plan, &f.from)?;
        dsts.push(primary(node(plan, &f.to)?)?);
    }
    let mut watch: Vec<String> = if req.watch.is_empty() {
        let mut w: Vec<String> = Vec::new();
        for f in &req.flows {
            w.push(f.from.clone());
            w.push(f.to.clone());
        }
        w.extend(
            plan.nodes
                .iter()
                .filter(|n| n.kind == NodeKind::Router || n.routing.is_some())
                .map(|n| n.name.clone()),
        );
        w
    } else {
        req.watch.clone()
    };
    let mut seen = std::collections::HashSet::new();
    watch.retain(|w| seen.insert(w.clone()));
    for w in &watch {
        node(plan, w)?;
    }
    // Namespace thread: flow sources (i), watched nodes (nf + i), flow destinations (nf + nw + i).
    let (nf, nw) = (req.flows.len(), watch.len());
    let mut names: Vec<&str> = req.flows.iter().map(|f| f.from.as_str()).collect();
    names.extend(watch.iter().map(String::as_str));
    names.extend(req.flows.iter().map(|f| f.to.as_str()));
    let nst = Arc::new(ns_thread_for(plan, &names)?);
    let mut flow_socks = Vec::new();
    let mut listeners = Vec::new();
    for (i, f) in req.flows.iter().enumerate() {
        let sock = match req.proto {
            Proto::Icmp => FlowSock::Icmp(
                nst.run(i, sys::raw_icmp_socket)
                    .map_err(|e| ProbeError::io(format!("{}: ICMP socket", f.from), e))?,
            ),
            Proto::Udp(_) => FlowSock::Udp(
                nst.run(i, || {
                    let s = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
                    s.set_nonblocking(true)?;
                    sys::set_rcvbuf(s.as_fd(), sys::PROBE_RCVBUF);
                    Ok(s)
                })
                .map_err(|e| ProbeError::io(format!("{}: UDP socket", f.from), e))?,
            ),
            Proto::Tcp(_) => {
                raise_fd_limit();
                FlowSock::Tcp(
                    nst.run(i, || tcp_sockets(TCP_POOL))
                        .map_err(|e| ProbeError::io(format!("{}: TCP sockets", f.from), e))?,
                )
            }
        };
        flow_socks.push(sock);
        // The destination answers with topo's in-process listener when the port is free; when
        // it is taken (a topo responder, an application), that one answers.
        let what = req_proto_port(req);
        if let Some(l) = nst
            .run(nf + nw + i, move || listener(what))
            .map_err(|e| ProbeError::io(format!("{}: listen on port", f.to), e))?
        {
            listeners.push(l);
        }
    }
    let mut monitors = Vec::new();
    for (i, w) in watch.iter().enumerate() {
        let pair = nst
            .run(nf + i, || Ok((sys::route_monitor_socket()?, sys::inet_dgram_socket()?)))
            .map_err(|e| ProbeError::io(format!("{w}: route monitor"), e))?;
        monitors.push((w.clone(), pair.0, pair.1));
    }

    let (ready_tx, ready_rx) = smpsc::channel::<Result<(), ProbeError>>();
    let (go_tx, go_rx) = oneshot::channel::<Option<(Instant, Instant)>>();
    let rt = runtime()?;
    let io = FlowIo { socks: flow_socks, listeners, nst: nst.clone() };
    std::thread::scope(|s| {
        let measure = s.spawn(|| rt.block_on(measure(req, &dsts, io, monitors, ready_tx, go_rx)));
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = go_tx.send(None);
                let _ = measure.join();
                return Err(e);
            }
            Err(_) => {
                return match measure.join() {
                    Ok(Err(e)) => Err(e),
                    _ => Err(ProbeError::Invalid("measurement thread ended early".into())),
                };
            }
        }
        let t0 = Instant::now();
        let r = inject();
        let t1 = Instant::now();
        if let Err(e) = r {
            let _ = go_tx.send(None);
            let _ = measure.join();
            return Err(ProbeError::Inject(e));
        }
        let _ = go_tx.send(Some((t0, t1)));
        measure.join().map_err(|_| ProbeError::Invalid("measurement thread panicked".into()))?
    })
}

/// TCP sockets kept ready per flow (created in the source's namespace ahead of use).
const TCP_POOL: usize = 256;

fn req_proto_port(req: &ConvergeRequest) -> Option<(bool, u16)> {
    match req.proto {
        Proto::Icmp => None,
        Proto::Udp(p) => Some((false, p)),
        Proto::Tcp(p) => Some((true, p)),
    }
}

enum Listener {
    Udp(std::net::UdpSocket),
    Tcp(std::net::TcpListener),
}

/// A listener on the flow's port in the calling thread's namespace; `None` for ICMP or when
/// the port is taken.
fn listener(what: Option<(bool, u16)>) -> io::Result<Option<Listener>> {
    let any = std::net::SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
    let r = match what {
        None => return Ok(None),
        Some((false, port)) => std::net::UdpSocket::bind(std::net::SocketAddrV4::new(*any.ip(), port))
            .and_then(|s| {
                s.set_nonblocking(true)?;
                sys::set_rcvbuf(s.as_fd(), sys::PROBE_RCVBUF);
                Ok(Listener::Udp(s))
            }),
        Some((true, port)) => std::net::TcpListener::bind(std::net::SocketAddrV4::new(*any.ip(), port))
            .and_then(|l| {
                l.set_nonblocking(true)?;
                Ok(Listener::Tcp(l))
            }),
    };
    match r {
        Ok(l) => Ok(Some(l)),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Ok(None),
        Err(e) => Err(e),
    }
}

/// Fresh TCP sockets of the calling thread's namespace, closing with RST (no TIME_WAIT pile-up
/// at a thousand connections per second).
fn tcp_sockets(n: usize) -> io::Result<Vec<tokio::net::TcpSocket>> {
    (0..n)
        .map(|_| {
            let s = tokio::net::TcpSocket::new_v4()?;
            s.set_zero_linger()?;
            Ok(s)
        })
        .collect()
}

/// TCP flows hold a descriptor per connect in flight (up to loss_timeout / interval per flow):
/// lift the soft descriptor limit to the hard one.
fn raise_fd_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit read/write one live rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, std::ptr::from_mut(&mut lim)) == 0
            && lim.rlim_cur < lim.rlim_max
        {
            lim.rlim_cur = lim.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, std::ptr::from_ref(&lim));
        }
    }
}

enum FlowSock {
    Icmp(OwnedFd),
    Udp(std::net::UdpSocket),
    Tcp(Vec<tokio::net::TcpSocket>),
}

struct FlowIo {
    socks: Vec<FlowSock>,
    listeners: Vec<Listener>,
    nst: Arc<sys::NsThread>,
}

/// A flow's sending side inside the runtime.
enum Sender {
    Icmp(Arc<tokio::io::unix::AsyncFd<OwnedFd>>),
    Udp(Arc<tokio::net::UdpSocket>),
    Tcp { pool: Vec<tokio::net::TcpSocket>, refilling: bool },
}

/// Probe payload: token, flow, sequence number.
fn stream_payload(tok: u32, flow: usize, seq: usize) -> [u8; 12] {
    let mut p = [0u8; 12];
    p[..4].copy_from_slice(&tok.to_be_bytes());
    p[4..8].copy_from_slice(&(flow as u32).to_be_bytes());
    p[8..].copy_from_slice(&(seq as u32).to_be_bytes());
    p
}

/// (flow, seq) of a payload carrying `tok`.
fn parse_stream_payload(p: &[u8], tok: u32) -> Option<(usize, usize)> {
    if p.len() < 12 || p[..4] != tok.to_be_bytes() {
        return None;
    }
    let f = u32::from_be_bytes([p[4], p[5], p[6], p[7]]) as usize;
    let seq = u32::from_be_bytes([p[8], p[9], p[10], p[11]]) as usize;
    Some((f, seq))
}

struct FlowState {
    sent: Vec<Instant>,
    recv: Vec<Option<Instant>>,
    /// Probes below this index are decided (replied, or lost after `loss_timeout`).
    decided: usize,
    consec: u32,
    lost: u64,
    after: u64,
    first_loss: Option<usize>,
    last_loss: Option<usize>,
    recovered: Option<usize>,
    stable: Option<Instant>,
}

impl FlowState {
    fn new() -> Self {
        FlowState {
            sent: Vec::new(),
            recv: Vec::new(),
            decided: 0,
            consec: 0,
            lost: 0,
            after: 0,
            first_loss: None,
            last_loss: None,
            recovered: None,
            stable: None,
        }
    }

    /// Advance over newly decided probes. `t0`: injection time (None before it).
    fn advance(&mut self, now: Instant, loss_timeout: Duration, t0: Option<Instant>, k: u32) {
        while self.decided < self.sent.len() {
            let i = self.decided;
            let ok = self.recv[i].is_some();
            if !ok && now.duration_since(self.sent[i]) < loss_timeout {
                break;
            }
            self.decided += 1;
            let after = t0.is_some_and(|t| self.sent[i] >= t);
            if after {
                self.after += 1;
            }
            if ok {
                self.consec += 1;
                if after && self.consec == 1 && self.last_loss.is_some() {
                    self.recovered = Some(i);
                }
                if after && self.consec == k && self.last_loss.is_some() {
                    self.stable = self.recv[i];
                }
            } else {
                self.consec = 0;
                if after {
                    self.lost += 1;
                    self.first_loss.get_or_insert(i);
                    self.last_loss = Some(i);
                    self.stable = None;
                    self.recovered = None;
                }
            }
        }
    }

    fn done(&self, t0: Instant, quiet: Duration, k: u32) -> bool {
        if self.last_loss.is_some() {
            self.stable.is_some()
        } else {
            // Unaffected only once the decided probes (not merely the clock) cover `quiet`.
            let covered = self
                .decided
                .checked_sub(1)
                .is_some_and(|i| self.sent[i] >= t0 && self.sent[i].duration_since(t0) >= quiet);
            covered && self.consec >= k
        }
    }
}

enum Msg {
    Reply {
        flow: usize,
        seq: usize,
        at: Instant,
    },
    /// Fresh TCP sockets for a flow's pool.
    Pool {
        flow: usize,
        socks: Vec<tokio::net::TcpSocket>,
    },
    Route {
        at: Instant,
        node: String,
        change: sys::RouteChange,
        dev: Option<String>,
    },
}

async fn measure(
    req: &ConvergeRequest,
    dsts: &[Ipv4Addr],
    io: FlowIo,
    monitors: Vec<(String, OwnedFd, OwnedFd)>,
    ready: smpsc::Sender<Result<(), ProbeError>>,
    mut go: oneshot::Receiver<Option<(Instant, Instant)>>,
) -> Result<ConvergeReport, ProbeError> {
    let tok = token();
    let id = tok as u16;
    let k = req.stable;
    let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
    let mut socks: Vec<Sender> = Vec::new();
    let mut tasks = Vec::new();
    let FlowIo { socks: flow_socks, listeners, nst } = io;
    for (flow, sock) in flow_socks.into_iter().enumerate() {
        let tx = tx.clone();
        match sock {
            FlowSock::Icmp(fd) => {
                let afd = Arc::new(sys::async_fd(fd).map_err(|e| ProbeError::io("register ICMP socket", e))?);
                socks.push(Sender::Icmp(afd.clone()));
                tasks.push(tokio::spawn(async move {
                    let mut buf = vec![0u8; 2048];
                    loop {
                        let Ok(mut guard) = afd.readable().await else { return };
                        loop {
                            match sys::recv(afd.get_ref().as_fd(), &mut buf) {
                                Ok(len) => {
                                    let at = Instant::now();
                                    let Some(Icmp::EchoReply { id: rid, payload, .. }) =
                                        sys::parse_icmp(&buf[..len])
                                    else {
                                        continue;
                                    };
                                    let Some((f, seq)) =
                                        parse_stream_payload(payload, tok).filter(|_| rid == id)
                                    else {
                                        continue;
                                    };
                                    if f == flow && tx.send(Msg::Reply { flow, seq, at }).is_err() {
                                        return;
                                    }
                                }
                                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                                    guard.clear_ready();
                                    break;
                                }
                                Err(_) => return,
                            }
                        }
                    }
                }));
            }
            FlowSock::Udp(s) => {
                let s = Arc::new(
                    tokio::net::UdpSocket::from_std(s)
                        .map_err(|e| ProbeError::io("register UDP socket", e))?,
                );
                socks.push(Sender::Udp(s.clone()));
                tasks.push(tokio::spawn(async move {
                    let mut buf = vec![0u8; 2048];
                    // Echoes: `TOPO <observed source>` then the probe (topo's listener or responder).
                    while let Ok(len) = s.recv(&mut buf).await {
                        let at = Instant::now();
                        let Some((_, p)) = crate::reach::parse_responder_echo(&buf[..len]) else { continue };
                        let Some((f, seq)) = parse_stream_payload(p, tok) else { continue };
                        if f == flow && tx.send(Msg::Reply { flow, seq, at }).is_err() {
                            return;
                        }
                    }
                }));
            }
            FlowSock::Tcp(pool) => socks.push(Sender::Tcp { pool, refilling: false }),
        }
    }
    for l in listeners {
        match l {
            Listener::Udp(l) => {
                let l = tokio::net::UdpSocket::from_std(l)
                    .map_err(|e| ProbeError::io("register UDP listener", e))?;
                tasks.push(tokio::spawn(async move {
                    let mut buf = vec![0u8; 2048];
                    while let Ok((len, peer)) = l.recv_from(&mut buf).await {
                        let mut out = format!("TOPO {peer}\n").into_bytes();
                        out.extend_from_slice(&buf[..len.min(1024)]);
                        let _ = l.try_send_to(&out, peer);
                    }
                }));
            }
            Listener::Tcp(l) => {
                let l = tokio::net::TcpListener::from_std(l)
                    .map_err(|e| ProbeError::io("register TCP listener", e))?;
                // A completed handshake is the answer; the connection is dropped at once.
                tasks.push(tokio::spawn(async move { while l.accept().await.is_ok() {} }));
            }
        }
    }
    for (name, nl, inet) in monitors {
        let afd = sys::async_fd(nl).map_err(|e| ProbeError::io("register netlink socket", e))?;
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            loop {
                let Ok(mut guard) = afd.readable().await else { return };
                loop {
                    match sys::recv(afd.get_ref().as_fd(), &mut buf) {
                        Ok(len) => {
                            let at = Instant::now();
                            for change in sys::parse_route_changes(&buf[..len]) {
                                // Local and broadcast routes (table 255) are address bookkeeping.
                                if change.table == 255 {
                                    continue;
                                }
                                let dev = change.oif.map(|i| {
                                    sys::ifname(inet.as_fd(), i).unwrap_or_else(|| format!("if{i}"))
                                });
                                if tx.send(Msg::Route { at, node: name.clone(), change, dev }).is_err() {
                                    return;
                                }
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            guard.clear_ready();
                            break;
                        }
                        // ENOBUFS: the kernel dropped notifications; keep listening.
                        Err(_) => break,
                    }
                }
            }
        }));
    }
    // `tx` stays alive: TCP connects and pool refills report through it.

    let mut flows: Vec<FlowState> = req.flows.iter().map(|_| FlowState::new()).collect();
    let mut routes: Vec<(Instant, String, sys::RouteChange, Option<String>)> = Vec::new();
    let mut ticker = tokio::time::interval(req.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut eval = tokio::time::interval(Duration::from_millis(5));
    let started = Instant::now();
    let mut pkt = Vec::with_capacity(64);
    let port = match req.proto {
        Proto::Icmp => 0,
        Proto::Udp(p) | Proto::Tcp(p) => p,
    };
    let mut ready = Some(ready);
    let mut injected: Option<(Instant, Instant)> = None;
    let mut ended: Option<Instant> = None;
    while ended.is_none() {
        tokio::select! {
            _ = ticker.tick() => {
                for (f, st) in flows.iter_mut().enumerate() {
                    let seq = st.sent.len();
                    let payload = stream_payload(tok, f, seq);
                    // A failed send (no route right now) is a lost probe like any other.
                    match &mut socks[f] {
                        Sender::Icmp(s) => {
                            sys::build_echo(&mut pkt, id, seq as u16, &payload);
                            let _ = sys::send_to(s.get_ref().as_fd(), &pkt, dsts[f]);
                        }
                        Sender::Udp(s) => {
                            let _ = s.try_send_to(&payload, SocketAddrV4::new(dsts[f], port).into());
                        }
                        Sender::Tcp { pool, refilling } => {
                            // No socket ready is our shortfall, not the network's: skip the
                            // tick instead of counting a loss.
                            let Some(sock) = pool.pop() else { continue };
                            if pool.len() < TCP_POOL / 2 && !*refilling {
                                *refilling = true;
                                let (nst, tx) = (nst.clone(), tx.clone());
                                tokio::spawn(async move {
                                    if let Ok(socks) = nst.run_async(f, || tcp_sockets(TCP_POOL)).await {
                                        let _ = tx.send(Msg::Pool { flow: f, socks });
                                    }
                                });
                            }
                            let (tx, to, wait) = (tx.clone(), SocketAddrV4::new(dsts[f], port), req.loss_timeout);
                            tokio::spawn(async move {
                                if let Ok(Ok(conn)) = tokio::time::timeout(wait, sock.connect(to.into())).await {
                                    let at = Instant::now();
                                    drop(conn);
                                    let _ = tx.send(Msg::Reply { flow: f, seq, at });
                                }
                            });
                        }
                    }
                    st.sent.push(Instant::now());
                    st.recv.push(None);
                }
            }
            m = rx.recv() => match m {
                Some(Msg::Reply { flow, seq, at }) => {
                    if let Some(r) = flows.get_mut(flow).and_then(|f| f.recv.get_mut(seq)) {
                        r.get_or_insert(at);
                    }
                }
                Some(Msg::Route { at, node, change, dev }) => routes.push((at, node, change, dev)),
                Some(Msg::Pool { flow, socks: more }) => {
                    if let Some(Sender::Tcp { pool, refilling }) = socks.get_mut(flow) {
                        pool.extend(more);
                        *refilling = false;
                    }
                }
                None => {}
            },
            g = &mut go, if injected.is_none() && ready.is_none() => match g {
                Ok(Some(t)) => injected = Some(t),
                _ => ended = Some(Instant::now()),
            },
            _ = eval.tick() => {
                let now = Instant::now();
                let t0 = injected.map(|t| t.0);
                for st in &mut flows {
                    st.advance(now, req.loss_timeout, t0, k);
                }
                if let Some(tx) = &ready {
                    if flows.iter().all(|f| f.consec >= k) {
                        let _ = tx.send(Ok(()));
                        ready = None;
                    } else if now.duration_since(started) >= req.timeout {
                        let bad: Vec<String> = req.flows.iter().zip(&flows)
                            .filter(|(_, st)| st.consec < k).map(|(f, _)| f.to_string()).collect();
                        let _ = tx.send(Err(ProbeError::NotFlowing(format!(
                            "flows {} do not work before the fault (no {k} consecutive replies within {:?})",
                            bad.join(", "), req.timeout))));
                        ready = None;
                        ended = Some(now);
                    }
                }
                if let Some((t0, _)) = injected {
                    if flows.iter().all(|f| f.done(t0, req.quiet, k)) || now.duration_since(t0) >= req.timeout {
                        ended = Some(now);
                    }
                }
            }
        }
    }
    for t in tasks {
        t.abort();
    }
    let Some((t0, t1)) = injected else {
        return Err(ProbeError::Invalid("the measurement ended before the fault was injected".into()));
    };
    let end = ended.unwrap_or_else(Instant::now);
    let ms = |t: Instant| -> f64 {
        if t >= t0 {
            t.duration_since(t0).as_secs_f64() * 1000.0
        } else {
            -(t0.duration_since(t).as_secs_f64() * 1000.0)
        }
    };
    let interval_ms = req.interval.as_secs_f64() * 1000.0;
    let mut timeline = vec![TimelineEvent::Inject { t_ms: 0.0, duration_ms: ms(t1) }];
    let mut reports = Vec::new();
    for (f, st) in req.flows.iter().zip(&flows) {
        let name = f.to_string();
        let at = |i: Option<usize>| i.map(|i| ms(st.sent[i]));
        let first = at(st.first_loss);
        let last = at(st.last_loss);
        let outage = match (first, last) {
            (Some(a), Some(b)) => Some(b - a + interval_ms),
            _ => None,
        };
        let stable_ms = st.stable.map(ms);
        let converged = if st.last_loss.is_some() { st.stable.is_some() } else { st.consec >= k };
        if let Some(t) = first {
            timeline.push(TimelineEvent::FirstLoss { t_ms: t, flow: name.clone() });
        }
        if let Some(t) = last {
            timeline.push(TimelineEvent::LastLoss { t_ms: t, flow: name.clone() });
        }
        if let Some(t) = at(st.recovered) {
            timeline.push(TimelineEvent::Recovered { t_ms: t, flow: name.clone() });
        }
        if let Some(t) = stable_ms {
            timeline.push(TimelineEvent::Stable { t_ms: t, flow: name.clone() });
        }
        reports.push(FlowReport {
            from: f.from.clone(),
            to: f.to.clone(),
            sent: st.after,
            lost: st.lost,
            first_loss_ms: first,
            last_loss_ms: last,
            outage_ms: outage,
            recovered_ms: at(st.recovered),
            stable_ms,
            converged,
        });
    }
    for (at, node, c, dev) in routes {
        timeline.push(TimelineEvent::Route {
            t_ms: ms(at),
            node,
            action: if c.added { "add".into() } else { "del".into() },
            dst: c.dst.to_string(),
            via: c.via,
            dev,
            protocol: c.protocol,
        });
    }
    timeline.sort_by(|a, b| a.t_ms().total_cmp(&b.t_ms()));
    Ok(ConvergeReport {
        proto: req.proto,
        interval_ms,
        stable: k,
        flows: reports,
        timeline,
        ended_ms: ms(end),
    })
}
