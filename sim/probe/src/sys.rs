//! Socket plumbing std does not offer: raw ICMP sockets with a type filter, TTL, route-change
//! netlink sockets, interface names by index, and a dedicated thread that opens sockets inside
//! any namespace.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::{mpsc, Arc};
use std::thread;

use nix::sched::{setns, CloneFlags};

/// `ICMP_FILTER` option of raw ICMP sockets (linux/icmp.h), at level `SOL_RAW`.
const ICMP_FILTER: libc::c_int = 1;
const SOL_RAW: libc::c_int = 255;
/// Receive buffer asked for probe sockets: replies to thousands of probes may queue at once.
pub const PROBE_RCVBUF: usize = 8 << 20;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn setsockopt<T>(fd: BorrowedFd<'_>, level: libc::c_int, name: libc::c_int, val: &T) -> io::Result<()> {
    // SAFETY: `val` points to a live T and we pass its exact size.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(val).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    })
    .map(drop)
}

fn new_socket(domain: libc::c_int, ty: libc::c_int, proto: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) has no pointer arguments; the new fd is owned right away.
    let fd = cvt(unsafe { libc::socket(domain, ty | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, proto) })?;
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Grow the receive buffer (root may exceed `rmem_max` with `SO_RCVBUFFORCE`).
pub fn set_rcvbuf(fd: BorrowedFd<'_>, bytes: usize) {
    let v = bytes as libc::c_int;
    if setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &v).is_err() {
        let _ = setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &v);
    }
}

/// A raw ICMP socket in the calling thread's namespace that only receives echo replies,
/// destination-unreachable and time-exceeded messages (not the echo requests other nodes send
/// us). Raw rather than ping sockets: no `ping_group_range` change inside the node.
pub fn raw_icmp_socket() -> io::Result<OwnedFd> {
    let fd = new_socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP)?;
    // A set bit filters that type out.
    let mask: u32 = !((1 << 0) | (1 << 3) | (1 << 11));
    setsockopt(fd.as_fd_b(), SOL_RAW, ICMP_FILTER, &mask)?;
    // Don't-fragment: small probes never need fragmenting, and DF lets the kernel skip the
    // shared IP-ID generator (about a tenth of the per-probe cost in a profile).
    setsockopt(fd.as_fd_b(), libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, &libc::IP_PMTUDISC_DO)?;
    set_rcvbuf(fd.as_fd_b(), PROBE_RCVBUF);
    Ok(fd)
}

trait AsFdB {
    fn as_fd_b(&self) -> BorrowedFd<'_>;
}
impl AsFdB for OwnedFd {
    fn as_fd_b(&self) -> BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(self)
    }
}

/// Register a socket with the current tokio reactor.
pub fn async_fd(fd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd is a valid open descriptor that it keeps open (and always returns the
    // same raw fd for) until the AsyncFd owning it is dropped.
    unsafe { tokio::io::unix::AsyncFd::register(fd) }.map_err(Into::into)
}

pub fn set_ttl(fd: BorrowedFd<'_>, ttl: u8) -> io::Result<()> {
    setsockopt(fd, libc::IPPROTO_IP, libc::IP_TTL, &libc::c_int::from(ttl))
}

fn sockaddr_in(addr: Ipv4Addr, port: u16) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
    let mut sa: libc::sockaddr_in = unsafe { zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_port = port.to_be();
    sa.sin_addr.s_addr = u32::from(addr).to_be();
    sa
}

/// Send one datagram (raw: an ICMP message) to `addr`. `WouldBlock` when the buffer is full.
pub fn send_to(fd: BorrowedFd<'_>, buf: &[u8], addr: Ipv4Addr) -> io::Result<usize> {
    let sa = sockaddr_in(addr, 0);
    // SAFETY: buf and sa are live for the call, lengths are exact.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
            std::ptr::from_ref(&sa).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Receive one datagram without blocking.
pub fn recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is live and writable for its length.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Datagrams per `sendmmsg` / `recvmmsg` call in [`send_many`] and [`recv_many`].
pub const MMSG_BATCH: usize = 64;

/// Send `pkts` (one datagram each, to the matching address) with as few `sendmmsg` calls as
/// the kernel allows (no allocation). Returns how many were sent before the first failing
/// one, and that failure (`WouldBlock` when the send buffer is full), if any.
pub fn send_many<const N: usize>(
    fd: BorrowedFd<'_>,
    pkts: &[[u8; N]],
    addrs: &[Ipv4Addr],
) -> (usize, Option<io::Error>) {
    let n = pkts.len().min(addrs.len()).min(MMSG_BATCH);
    let mut sas = [sockaddr_in(Ipv4Addr::UNSPECIFIED, 0); MMSG_BATCH];
    // SAFETY: iovec and mmsghdr are plain old data; all-zero is valid.
    let mut iovs: [libc::iovec; MMSG_BATCH] = unsafe { zeroed() };
    // SAFETY: as above.
    let mut msgs: [libc::mmsghdr; MMSG_BATCH] = unsafe { zeroed() };
    for i in 0..n {
        sas[i] = sockaddr_in(addrs[i], 0);
        iovs[i] = libc::iovec { iov_base: pkts[i].as_ptr().cast_mut().cast(), iov_len: N };
        msgs[i].msg_hdr.msg_name = std::ptr::from_mut(&mut sas[i]).cast();
        msgs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        msgs[i].msg_hdr.msg_iov = std::ptr::from_mut(&mut iovs[i]);
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    let mut done = 0;
    while done < n {
        // SAFETY: msgs[done..n] point into sas and iovs (alive until return), whose buffers
        // (the caller's packets, only read) outlive the call; the count is exact.
        let r = unsafe {
            libc::sendmmsg(
                fd.as_raw_fd(),
                msgs.as_mut_ptr().add(done),
                (n - done) as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if r < 0 {
            return (done, Some(io::Error::last_os_error()));
        }
        if r == 0 {
            break;
        }
        done += r as usize;
    }
    (done, None)
}

/// Receive up to [`MMSG_BATCH`] datagrams without blocking (one `recvmmsg`) into `bufs`;
/// returns how many, with their lengths in `lens` (`WouldBlock` when none is queued).
pub fn recv_many(
    fd: BorrowedFd<'_>,
    bufs: &mut [[u8; 256]; MMSG_BATCH],
    lens: &mut [usize; MMSG_BATCH],
) -> io::Result<usize> {
    // SAFETY: iovec and mmsghdr are plain old data; all-zero is valid.
    let mut iovs: [libc::iovec; MMSG_BATCH] = unsafe { zeroed() };
    // SAFETY: as above.
    let mut msgs: [libc::mmsghdr; MMSG_BATCH] = unsafe { zeroed() };
    for (i, b) in bufs.iter_mut().enumerate() {
        iovs[i] = libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: b.len() };
        msgs[i].msg_hdr.msg_iov = std::ptr::from_mut(&mut iovs[i]);
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: every mmsghdr points to one live iovec over a live, writable buffer; no name or
    // control buffers; the count is exact.
    let r = unsafe {
        libc::recvmmsg(
            fd.as_raw_fd(),
            msgs.as_mut_ptr(),
            MMSG_BATCH as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let r = r as usize;
    for i in 0..r {
        lens[i] = (msgs[i].msg_len as usize).min(256);
    }
    Ok(r)
}

/// Wait until one of `fds` is readable or `timeout` passes; returns the indices of the
/// readable ones (empty on timeout).
pub fn poll_readable(fds: &[BorrowedFd<'_>], timeout: std::time::Duration) -> io::Result<Vec<usize>> {
    let mut pfds: Vec<libc::pollfd> =
        fds.iter().map(|f| libc::pollfd { fd: f.as_raw_fd(), events: libc::POLLIN, revents: 0 }).collect();
    let ms = libc::c_int::try_from(timeout.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
    // SAFETY: pfds is a live array of exactly pfds.len() pollfd structs.
    let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted { Ok(Vec::new()) } else { Err(e) };
    }
    Ok(pfds.iter().enumerate().filter(|(_, p)| p.revents != 0).map(|(i, _)| i).collect())
}

/// Internet checksum (RFC 1071).
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        sum += u32::from(*b) << 8;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Write an ICMP echo request into `out` (cleared first).
pub fn build_echo(out: &mut Vec<u8>, id: u16, seq: u16, payload: &[u8]) {
    out.clear();
    out.extend_from_slice(&[8, 0, 0, 0]);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(payload);
    let c = checksum(out);
    out[2..4].copy_from_slice(&c.to_be_bytes());
}

/// Write an ICMP echo request with a payload of exactly `N - 8` bytes into `out`.
pub fn write_echo<const N: usize>(out: &mut [u8; N], id: u16, seq: u16, payload: &[u8]) {
    out[..4].copy_from_slice(&[8, 0, 0, 0]);
    out[4..6].copy_from_slice(&id.to_be_bytes());
    out[6..8].copy_from_slice(&seq.to_be_bytes());
    let n = payload.len().min(N - 8);
    out[8..8 + n].copy_from_slice(&payload[..n]);
    let c = checksum(&out[..]);
    out[2..4].copy_from_slice(&c.to_be_bytes());
}

/// An ICMP message as received on a raw socket (IP header included).
#[derive(Debug, PartialEq, Eq)]
pub enum Icmp<'a> {
    EchoReply {
        from: Ipv4Addr,
        id: u16,
        seq: u16,
        payload: &'a [u8],
    },
    /// Time exceeded (11) or destination unreachable (3) about one of our echo requests.
    Error {
        from: Ipv4Addr,
        kind: u8,
        code: u8,
        orig_dst: Ipv4Addr,
        id: u16,
        seq: u16,
        payload: &'a [u8],
    },
}

pub fn parse_icmp(pkt: &[u8]) -> Option<Icmp<'_>> {
    let ihl = usize::from(*pkt.first()? & 0x0f) * 4;
    if pkt.len() < ihl + 8 || ihl < 20 {
        return None;
    }
    let from = Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]);
    let icmp = &pkt[ihl..];
    let (kind, code) = (icmp[0], icmp[1]);
    match kind {
        0 => Some(Icmp::EchoReply {
            from,
            id: u16::from_be_bytes([icmp[4], icmp[5]]),
            seq: u16::from_be_bytes([icmp[6], icmp[7]]),
            payload: &icmp[8..],
        }),
        3 | 11 => {
            // The quoted original datagram: its IP header, then (at least) 8 bytes of our echo.
            let inner = &icmp[8..];
            let ihl2 = usize::from(*inner.first()? & 0x0f) * 4;
            if inner.len() < ihl2 + 8 || ihl2 < 20 || inner[9] != 1 || inner[ihl2] != 8 {
                return None;
            }
            let orig_dst = Ipv4Addr::new(inner[16], inner[17], inner[18], inner[19]);
            let e = &inner[ihl2..];
            Some(Icmp::Error {
                from,
                kind,
                code,
                orig_dst,
                id: u16::from_be_bytes([e[4], e[5]]),
                seq: u16::from_be_bytes([e[6], e[7]]),
                payload: &e[8..],
            })
        }
        _ => None,
    }
}

/// Human words for an ICMP error.
pub fn icmp_error_text(kind: u8, code: u8) -> &'static str {
    match (kind, code) {
        (11, _) => "ttl exceeded",
        (3, 0) => "network unreachable",
        (3, 1) => "host unreachable",
        (3, 3) => "port unreachable",
        (3, 9 | 10 | 13) => "administratively prohibited",
        (3, _) => "destination unreachable",
        _ => "icmp error",
    }
}

/// A netlink socket subscribed to IPv4 route changes (RTNLGRP_IPV4_ROUTE) of the calling
/// thread's namespace.
pub fn route_monitor_socket() -> io::Result<OwnedFd> {
    let fd = new_socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE)?;
    // SAFETY: sockaddr_nl is plain old data; all-zero is valid.
    let mut sa: libc::sockaddr_nl = unsafe { zeroed() };
    sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    sa.nl_groups = libc::RTMGRP_IPV4_ROUTE as u32;
    // SAFETY: sa is live and its size is exact.
    cvt(unsafe {
        libc::bind(fd.as_raw_fd(), std::ptr::from_ref(&sa).cast(), size_of::<libc::sockaddr_nl>() as u32)
    })?;
    set_rcvbuf(fd.as_fd_b(), 4 << 20);
    Ok(fd)
}

/// One route change parsed from a netlink message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteChange {
    pub added: bool,
    pub dst: ipnet::Ipv4Net,
    pub via: Option<Ipv4Addr>,
    pub oif: Option<u32>,
    pub table: u32,
    pub protocol: u8,
}

/// Parse every RTM_NEWROUTE / RTM_DELROUTE in a netlink datagram.
pub fn parse_route_changes(buf: &[u8]) -> Vec<RouteChange> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 16 <= buf.len() {
        let len = u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
        let ty = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
        if len < 16 || off + len > buf.len() {
            break;
        }
        let msg = &buf[off + 16..off + len];
        if (ty == libc::RTM_NEWROUTE || ty == libc::RTM_DELROUTE) && msg.len() >= 12 && msg[0] == 2 {
            let dst_len = msg[1];
            let mut rc = RouteChange {
                added: ty == libc::RTM_NEWROUTE,
                dst: ipnet::Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 0).unwrap_or_default(),
                via: None,
                oif: None,
                table: u32::from(msg[4]),
                protocol: msg[5],
            };
            let mut dst = Ipv4Addr::UNSPECIFIED;
            let mut a = 12;
            while a + 4 <= msg.len() {
                let alen = usize::from(u16::from_ne_bytes([msg[a], msg[a + 1]]));
                let aty = u16::from_ne_bytes([msg[a + 2], msg[a + 3]]);
                if alen < 4 || a + alen > msg.len() {
                    break;
                }
                let v = &msg[a + 4..a + alen];
                let v4 = |v: &[u8]| (v.len() >= 4).then(|| Ipv4Addr::new(v[0], v[1], v[2], v[3]));
                let u32v = |v: &[u8]| (v.len() >= 4).then(|| u32::from_ne_bytes([v[0], v[1], v[2], v[3]]));
                match aty {
                    libc::RTA_DST => dst = v4(v).unwrap_or(dst),
                    libc::RTA_GATEWAY => rc.via = v4(v),
                    libc::RTA_OIF => rc.oif = u32v(v),
                    libc::RTA_TABLE => rc.table = u32v(v).unwrap_or(rc.table),
                    _ => {}
                }
                a += (alen + 3) & !3;
            }
            if let Ok(net) = ipnet::Ipv4Net::new(dst, dst_len) {
                rc.dst = net;
                out.push(rc);
            }
        }
        off += (len + 3) & !3;
    }
    out
}

/// Interface names by index, read through an `AF_INET` socket of the node's namespace (the
/// ioctl answers for the namespace the socket lives in).
pub fn ifname(inet_fd: BorrowedFd<'_>, index: u32) -> Option<String> {
    // SAFETY: ifreq is plain old data; all-zero is valid.
    let mut req: libc::ifreq = unsafe { zeroed() };
    req.ifr_ifru.ifru_ifindex = index as libc::c_int;
    // SAFETY: SIOCGIFNAME reads ifr_ifindex and writes ifr_name inside `req`, which is live.
    let r = unsafe { libc::ioctl(inet_fd.as_raw_fd(), libc::SIOCGIFNAME, std::ptr::from_mut(&mut req)) };
    if r < 0 {
        return None;
    }
    let name: Vec<u8> = req.ifr_name.iter().take_while(|c| **c != 0).map(|c| *c as u8).collect();
    String::from_utf8(name).ok()
}

/// A plain `NETLINK_ROUTE` socket (requests and their answers) in the calling thread's namespace.
pub fn netlink_route_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) has no pointer arguments; the new fd is owned right away. Blocking:
    // requests are answered at once, and SO_RCVTIMEO bounds a wait that never ends.
    let fd = cvt(unsafe {
        libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE)
    })?;
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let tv = libc::timeval { tv_sec: 5, tv_usec: 0 };
    setsockopt(fd.as_fd_b(), libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)?;
    // Errors without a copy of the request, and a big buffer: a batch of errors must not be dropped.
    let one: libc::c_int = 1;
    let _ = setsockopt(fd.as_fd_b(), libc::SOL_NETLINK, libc::NETLINK_CAP_ACK, &one);
    set_rcvbuf(fd.as_fd_b(), 4 << 20);
    Ok(fd)
}

/// Index of interface `name` in the calling thread's namespace.
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name).map_err(|_| io::Error::other("interface name with NUL"))?;
    // SAFETY: c is a live NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(i)
    }
}

/// Send one buffer of netlink messages to the kernel (blocking).
pub fn nl_send(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<()> {
    // SAFETY: sockaddr_nl is plain old data; all-zero (pid 0 = the kernel) is valid.
    let mut sa: libc::sockaddr_nl = unsafe { zeroed() };
    sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: buf and sa are live for the call, lengths are exact.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            0,
            std::ptr::from_ref(&sa).cast(),
            size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Receive one netlink datagram (blocking).
pub fn nl_recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is live and writable for its length.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

pub fn inet_dgram_socket() -> io::Result<OwnedFd> {
    new_socket(libc::AF_INET, libc::SOCK_DGRAM, 0)
}

type Job = Box<dyn FnOnce() + Send>;

/// A dedicated OS thread that runs closures inside any of a set of namespaces: it `setns`es
/// before each job (about a microsecond), so sockets for hundreds of nodes are opened without a
/// thread per node, and never on an async worker. Sockets stay bound to the namespace they were
/// created in and are then driven from the async loop.
pub struct NsThread {
    tx: Option<mpsc::Sender<Job>>,
    handle: Option<thread::JoinHandle<()>>,
    ns: Vec<Arc<OwnedFd>>,
}

impl NsThread {
    /// `ns`: the namespaces jobs may run in, by index.
    pub fn new(ns: Vec<OwnedFd>) -> io::Result<NsThread> {
        let (tx, rx) = mpsc::channel::<Job>();
        let handle = thread::Builder::new().name("topo-probe-ns".into()).spawn(move || {
            while let Ok(job) = rx.recv() {
                job();
            }
        })?;
        Ok(NsThread { tx: Some(tx), handle: Some(handle), ns: ns.into_iter().map(Arc::new).collect() })
    }

    fn submit<T, F>(&self, ns: usize, f: F) -> tokio::sync::oneshot::Receiver<io::Result<T>>
    where
        T: Send + 'static,
        F: FnOnce() -> io::Result<T> + Send + 'static,
    {
        let (otx, orx) = tokio::sync::oneshot::channel();
        let fd = self.ns.get(ns).cloned();
        let job: Job = Box::new(move || {
            let r = match fd {
                None => Err(io::Error::other("namespace index out of range")),
                Some(fd) => setns(fd.as_fd_b(), CloneFlags::CLONE_NEWNET)
                    .map_err(|e| io::Error::from_raw_os_error(e as i32))
                    .and_then(|()| f()),
            };
            let _ = otx.send(r);
        });
        if let Some(tx) = &self.tx {
            let _ = tx.send(job);
        }
        orx
    }

    /// Run `f` once inside each namespace of `ns` (in order) as one job: one hand-off for
    /// hundreds of namespaces. Blocking; not for async contexts.
    pub fn run_each<T, F>(&self, ns: Vec<usize>, f: F) -> io::Result<Vec<io::Result<T>>>
    where
        T: Send + 'static,
        F: Fn(usize) -> io::Result<T> + Send + 'static,
    {
        let fds: Vec<Option<Arc<OwnedFd>>> = ns.iter().map(|i| self.ns.get(*i).cloned()).collect();
        let (otx, orx) = mpsc::channel();
        let job: Job = Box::new(move || {
            let out: Vec<io::Result<T>> = fds
                .into_iter()
                .zip(ns)
                .map(|(fd, i)| match fd {
                    None => Err(io::Error::other("namespace index out of range")),
                    Some(fd) => setns(fd.as_fd_b(), CloneFlags::CLONE_NEWNET)
                        .map_err(|e| io::Error::from_raw_os_error(e as i32))
                        .and_then(|()| f(i)),
                })
                .collect();
            let _ = otx.send(out);
        });
        if let Some(tx) = &self.tx {
            let _ = tx.send(job);
        }
        orx.recv().map_err(|_| io::Error::other("namespace thread died"))
    }

    /// Run `f` inside namespace `ns` and wait (blocking; not for async contexts).
    pub fn run<T, F>(&self, ns: usize, f: F) -> io::Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> io::Result<T> + Send + 'static,
    {
        self.submit(ns, f).blocking_recv().map_err(|_| io::Error::other("namespace thread died"))?
    }

    /// Run `f` inside namespace `ns` from async code.
    pub async fn run_async<T, F>(&self, ns: usize, f: F) -> io::Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> io::Result<T> + Send + 'static,
    {
        self.submit(ns, f).await.map_err(|_| io::Error::other("namespace thread died"))?
    }
}

impl Drop for NsThread {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_echo_verifies() {
        let mut b = Vec::new();
        build_echo(&mut b, 0x1234, 7, b"hello world");
        assert_eq!(checksum(&b), 0);
        assert_eq!(&b[4..8], &[0x12, 0x34, 0, 7]);
    }

    #[test]
    fn parses_reply_and_time_exceeded() {
        let mut echo = Vec::new();
        build_echo(&mut echo, 9, 3, b"pay");
        let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 0, 2, 10, 0, 0, 1];
        let mut reply = echo.clone();
        reply[0] = 0;
        let mut pkt = ip.clone();
        pkt.extend_from_slice(&reply);
        assert_eq!(
            parse_icmp(&pkt),
            Some(Icmp::EchoReply { from: Ipv4Addr::new(10, 0, 0, 2), id: 9, seq: 3, payload: b"pay" })
        );
        // Time exceeded from 10.0.0.254 quoting our request to 10.9.9.9.
        let inner_ip = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 10, 0, 0, 1, 10, 9, 9, 9];
        ip[12..16].copy_from_slice(&[10, 0, 0, 254]);
        let mut te = ip.clone();
        te.extend_from_slice(&[11, 0, 0, 0, 0, 0, 0, 0]);
        te.extend_from_slice(&inner_ip);
        te.extend_from_slice(&echo);
        match parse_icmp(&te) {
            Some(Icmp::Error { from, kind: 11, orig_dst, id: 9, seq: 3, .. }) => {
                assert_eq!(from, Ipv4Addr::new(10, 0, 0, 254));
                assert_eq!(orig_dst, Ipv4Addr::new(10, 9, 9, 9));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_route_messages() {
        // RTM_NEWROUTE for 10.1.2.0/24 via 10.0.0.1 dev 3, table main, proto 188.
        let mut msg = vec![2u8, 24, 0, 0, 254, 188, 0, 1, 0, 0, 0, 0];
        let attr = |ty: u16, v: &[u8]| {
            let mut a = ((4 + v.len()) as u16).to_ne_bytes().to_vec();
            a.extend_from_slice(&ty.to_ne_bytes());
            a.extend_from_slice(v);
            a
        };
        msg.extend(attr(libc::RTA_DST, &[10, 1, 2, 0]));
        msg.extend(attr(libc::RTA_GATEWAY, &[10, 0, 0, 1]));
        msg.extend(attr(libc::RTA_OIF, &3u32.to_ne_bytes()));
        let mut nl = ((16 + msg.len()) as u32).to_ne_bytes().to_vec();
        nl.extend_from_slice(&libc::RTM_NEWROUTE.to_ne_bytes());
        nl.extend_from_slice(&[0; 10]);
        nl.extend(msg);
        let rc = parse_route_changes(&nl);
        assert_eq!(rc.len(), 1);
        assert!(rc[0].added);
        assert_eq!(rc[0].dst.to_string(), "10.1.2.0/24");
        assert_eq!(rc[0].via, Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(rc[0].oif, Some(3));
        assert_eq!((rc[0].table, rc[0].protocol), (254, 188));
    }
}
