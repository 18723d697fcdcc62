//! The userspace delayer: topo's own impairment path for kernels without netem. It binds one
//! NFQUEUE over nfnetlink_queue (pure netlink, no libnetfilter_queue), and gives each queued
//! packet a late ACCEPT verdict from a timer heap: delay ± uniform jitter; `reorder` percent of
//! packets get their verdict at once (jumping the queue, as netem's reorder does); `duplicate`
//! percent are additionally re-sent as a copy through a raw socket (IPv4 only).
//!
//! The queue rule carries `--queue-bypass` semantics, so when this process dies traffic keeps
//! flowing undelayed. It is started by [`crate::impair`] inside the receiving node's namespace
//! as `topo __delayer ...`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Write};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::nl::{attrs, messages, Msg, Socket, NLMSG_ERROR, NLM_F_ACK, NLM_F_REQUEST};

const NFNL_SUBSYS_QUEUE: u16 = 3;
const NFQNL_MSG_PACKET: u16 = 0;
const NFQNL_MSG_VERDICT: u16 = 1;
const NFQNL_MSG_CONFIG: u16 = 2;
const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQA_CFG_QUEUE_MAXLEN: u16 = 3;
const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NFQA_PAYLOAD: u16 = 10;
const NFQNL_CFG_CMD_BIND: u8 = 1;
const NFQNL_COPY_PACKET: u8 = 2;
const NF_ACCEPT: u32 = 1;

/// Parameters of one delayer; parts per million for the probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DelayerSpec {
    pub delay_us: u64,
    pub jitter_us: u64,
    pub duplicate_ppm: u32,
    pub reorder_ppm: u32,
}

impl DelayerSpec {
    pub fn to_args(&self, queue: u16) -> Vec<String> {
        vec![
            "__delayer".into(),
            format!("--queue={queue}"),
            format!("--delay-us={}", self.delay_us),
            format!("--jitter-us={}", self.jitter_us),
            format!("--duplicate-ppm={}", self.duplicate_ppm),
            format!("--reorder-ppm={}", self.reorder_ppm),
        ]
    }

    /// Parse the arguments after `__delayer`.
    pub fn parse(args: &[String]) -> Result<(u16, DelayerSpec), String> {
        let mut queue = None;
        let mut s = DelayerSpec { delay_us: 0, jitter_us: 0, duplicate_ppm: 0, reorder_ppm: 0 };
        for a in args {
            let (k, v) = a.split_once('=').ok_or_else(|| format!("bad delayer argument {a:?}"))?;
            let n: u64 = v.parse().map_err(|_| format!("bad number in {a:?}"))?;
            match k {
                "--queue" => queue = Some(u16::try_from(n).map_err(|_| format!("queue out of range: {n}"))?),
                "--delay-us" => s.delay_us = n,
                "--jitter-us" => s.jitter_us = n,
                "--duplicate-ppm" => s.duplicate_ppm = n.min(1_000_000) as u32,
                "--reorder-ppm" => s.reorder_ppm = n.min(1_000_000) as u32,
                _ => return Err(format!("unknown delayer argument {k}")),
            }
        }
        Ok((queue.ok_or("missing --queue")?, s))
    }
}

struct Pending {
    id: u32,
    dup: Option<Vec<u8>>,
}

fn config(sock: &mut Socket, queue: u16, attr: u16, data: &[u8]) -> io::Result<()> {
    // nfgenmsg: family AF_UNSPEC, version 0, res_id = queue number (big endian)
    let q = queue.to_be_bytes();
    let hdr = [libc::AF_UNSPEC as u8, 0, q[0], q[1]];
    let mut m = Msg::new((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, &hdr);
    m.attr(attr, data);
    sock.request(&mut m)
}

fn verdict(sock: &Socket, queue: u16, id: u32) -> io::Result<()> {
    let q = queue.to_be_bytes();
    let hdr = [libc::AF_UNSPEC as u8, 0, q[0], q[1]];
    let mut m = Msg::new((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_VERDICT, NLM_F_REQUEST, &hdr);
    let mut v = Vec::with_capacity(8);
    v.extend_from_slice(&NF_ACCEPT.to_be_bytes());
    v.extend_from_slice(&id.to_be_bytes());
    m.attr(NFQA_VERDICT_HDR, &v);
    sock.send(m.finish(0))
}

/// Send an IPv4 packet copy as is (IPPROTO_RAW implies IP_HDRINCL).
fn send_copy(raw: i32, pkt: &[u8]) {
    if pkt.len() < 20 || pkt[0] >> 4 != 4 {
        return;
    }
    // SAFETY: sendto with a zero-initialised sockaddr_in filled with the packet's destination and
    // a live slice; errors are ignored (a lost duplicate is still a realistic outcome).
    unsafe {
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as u16;
        sa.sin_addr.s_addr = u32::from_ne_bytes([pkt[16], pkt[17], pkt[18], pkt[19]]);
        libc::sendto(
            raw,
            pkt.as_ptr().cast(),
            pkt.len(),
            0,
            std::ptr::from_ref(&sa).cast(),
            size_of::<libc::sockaddr_in>() as u32,
        );
    }
}

/// Entry point of `topo __delayer`; returns the process exit code.
pub fn main(args: &[String]) -> i32 {
    match run(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("topo delayer: {e}");
            1
        }
    }
}

fn run(args: &[String]) -> io::Result<()> {
    let (queue, spec) = DelayerSpec::parse(args).map_err(io::Error::other)?;
    // SAFETY: ignoring SIGPIPE only changes how a closed stdout is reported (EPIPE, not death).
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let mut sock = Socket::open(libc::NETLINK_NETFILTER)?;
    sock.set_rcvbuf(16 << 20);
    // Bind the queue, copy whole packets (needed for duplicates), allow a deep queue: with
    // 100 ms of delay at line rate the kernel would otherwise drop.
    config(&mut sock, queue, NFQA_CFG_CMD, &[NFQNL_CFG_CMD_BIND, 0, 0, 0])
        .map_err(|e| io::Error::new(e.kind(), format!("bind NFQUEUE {queue}: {e}")))?;
    let copy_range: u32 = if spec.duplicate_ppm > 0 { 0xffff } else { 64 };
    let mut params = copy_range.to_be_bytes().to_vec();
    params.push(NFQNL_COPY_PACKET);
    config(&mut sock, queue, NFQA_CFG_PARAMS, &params)?;
    config(&mut sock, queue, NFQA_CFG_QUEUE_MAXLEN, &20_000u32.to_be_bytes())?;

    // SAFETY: a raw IPv4 socket for duplicates; the fd is closed at process exit.
    let raw = if spec.duplicate_ppm > 0 {
        unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::IPPROTO_RAW) }
    } else {
        -1
    };

    {
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "ready");
        let _ = out.flush();
    }

    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let seed = u64::from(std::process::id()) ^ nanos;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15);
    let start = Instant::now();
    let mut heap: BinaryHeap<Reverse<(u64, u64, u32)>> = BinaryHeap::new();
    let mut dups: std::collections::HashMap<u64, Vec<u8>> = std::collections::HashMap::new();
    let mut seqno: u64 = 0;
    let mut buf = vec![0u8; 1 << 18];
    let now_us = |start: Instant| start.elapsed().as_micros() as u64;
    loop {
        // Release everything that is due.
        let now = now_us(start);
        while let Some(Reverse((due, n, id))) = heap.peek().copied() {
            if due > now {
                break;
            }
            heap.pop();
            verdict(&sock, queue, id)?;
            if let Some(p) = dups.remove(&n) {
                send_copy(raw, &p);
            }
        }
        let timeout = heap.peek().map(|Reverse((due, _, _))| Duration::from_micros(due.saturating_sub(now)));
        let mut pfd = libc::pollfd { fd: sock.raw_fd(), events: libc::POLLIN, revents: 0 };
        let ts = timeout.map(|d| libc::timespec {
            tv_sec: d.as_secs() as libc::time_t,
            tv_nsec: libc::c_long::from(d.subsec_nanos() as i32),
        });
        // SAFETY: ppoll on one live pollfd; the timespec (if any) lives across the call.
        let rc = unsafe {
            libc::ppoll(
                &raw mut pfd,
                1,
                ts.as_ref().map_or(std::ptr::null(), std::ptr::from_ref),
                std::ptr::null(),
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if rc == 0 || pfd.revents & libc::POLLIN == 0 {
            continue;
        }
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            // The kernel dropped notifications for a full socket buffer: keep going.
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let arrived = now_us(start);
        for m in messages(&buf[..n]) {
            if m.ty == NLMSG_ERROR
                || m.ty != ((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET)
                || m.payload.len() < 4
            {
                continue;
            }
            let mut p = Pending { id: 0, dup: None };
            let mut have_id = false;
            for (ty, v) in attrs(&m.payload[4..]) {
                match ty {
                    NFQA_PACKET_HDR if v.len() >= 4 => {
                        p.id = u32::from_be_bytes([v[0], v[1], v[2], v[3]]);
                        have_id = true;
                    }
                    NFQA_PAYLOAD if spec.duplicate_ppm > 0 => p.dup = Some(v.to_vec()),
                    _ => {}
                }
            }
            if !have_id {
                continue;
            }
            let dup = spec.duplicate_ppm > 0 && rng.gen_range(0..1_000_000) < spec.duplicate_ppm;
            if spec.reorder_ppm > 0 && rng.gen_range(0..1_000_000) < spec.reorder_ppm {
                verdict(&sock, queue, p.id)?;
                if dup {
                    if let Some(d) = &p.dup {
                        send_copy(raw, d);
                    }
                }
                continue;
            }
            let mut d = spec.delay_us as i64;
            if spec.jitter_us > 0 {
                let j = spec.jitter_us as i64;
                d += rng.gen_range(-j..=j);
            }
            let due = arrived + d.max(0) as u64;
            seqno += 1;
            if dup {
                if let Some(b) = p.dup.take() {
                    dups.insert(seqno, b);
                }
            }
            heap.push(Reverse((due, seqno, p.id)));
        }
    }
}
